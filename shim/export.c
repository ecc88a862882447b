/* export.c: cuGetExportTable, the driver's private tables that the CUDA runtime (libcudart,
 * static or shared), cuBLAS and PyTorch ask for by UUID. Which tables and slots they use was
 * measured on CUDA 13 with the pass-through driver (test/gpu/passthru, docs/cuda-compat.md).
 * Slots about contexts and modules are answered from the shim's own state or by its Driver API
 * entry points (so modules still go to the broker in one message); the runtime's driver check is
 * computed (darkhash.c); every other slot is a function that logs its table and index once and
 * fails with CUDA_ERROR_NOT_SUPPORTED. $VGPU_SHIM_TRACE=1 logs the first calls of every slot. */
#include "shim.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "darkhash.h"

#define CU_DEVICE_ATTRIBUTE_PCI_BUS_ID 33
#define CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID 34
#define CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID 50

/* The tables, in the order of enum below; `slots` counts the size word where there is one. */
enum { T_F8CF, T_CUDART, T_HOOKS, T_TLS, T_CLS, T_CTXCHK, T_CHECK, T_69A2, T_2131, T_1734, T_COUNT };
static const struct {
    const char *name;
    uint8_t uuid[16];
    unsigned slots;
    bool size_word;
} table_info[T_COUNT] = {
    [T_F8CF] = { "f8cff951", { 0xf8, 0xcf, 0xf9, 0x51, 0x21, 0x46, 0x8b, 0x4e, 0xb9, 0xe2, 0xfb,
                               0x46, 0x9e, 0x7c, 0x0d, 0xd9 }, 3, true },
    [T_CUDART] = { "6bd5fb6c (runtime interface)", { 0x6b, 0xd5, 0xfb, 0x6c, 0x5b, 0xf4, 0xe7, 0x4a,
                                                     0x89, 0x87, 0xd9, 0x39, 0x12, 0xfd, 0x9d, 0xf9 },
                   13, true },
    [T_HOOKS] = { "a094798c (tools hooks)", { 0xa0, 0x94, 0x79, 0x8c, 0x2e, 0x74, 0x2e, 0x74, 0x93,
                                              0xf2, 0x08, 0x00, 0x20, 0x0c, 0x0a, 0x66 }, 7, true },
    [T_TLS] = { "42d85a81 (tools TLS)", { 0x42, 0xd8, 0x5a, 0x81, 0x23, 0xf6, 0xcb, 0x47, 0x82, 0x98,
                                          0xf6, 0xe7, 0x8a, 0x3a, 0xec, 0xdc }, 3, true },
    [T_CLS] = { "c693336e (context storage)", { 0xc6, 0x93, 0x33, 0x6e, 0x11, 0x21, 0xdf, 0x11,
                                                0xa8, 0xc3, 0x68, 0xf3, 0x55, 0xd8, 0x95, 0x93 },
                3, false },
    [T_CTXCHK] = { "263e8860 (context check)", { 0x26, 0x3e, 0x88, 0x60, 0x7c, 0xd2, 0x61, 0x43,
                                                 0x92, 0xf6, 0xbb, 0xd5, 0x00, 0x6d, 0xfa, 0x7e },
                   15, true },
    [T_CHECK] = { "d4082055 (driver check)", { 0xd4, 0x08, 0x20, 0x55, 0xbd, 0xe6, 0x70, 0x4b, 0x8d,
                                               0x34, 0xba, 0x12, 0x3c, 0x66, 0xe1, 0xf2 }, 3, true },
    [T_69A2] = { "69a28e9f", { 0x69, 0xa2, 0x8e, 0x9f, 0x24, 0x49, 0x8b, 0x47, 0xb0, 0x30, 0xc5,
                               0xda, 0x33, 0x0e, 0xa4, 0xe9 }, 34, true },
    /* cuBLAS's, first argument the context */
    [T_2131] = { "21318c60 (cuBLAS)", { 0x21, 0x31, 0x8c, 0x60, 0x97, 0x14, 0x32, 0x48, 0x8c,
                                        0xa6, 0x41, 0xff, 0x73, 0x24, 0xc8, 0xf2 }, 93, true },
    [T_1734] = { "1734dc26 (cuBLAS)", { 0x17, 0x34, 0xdc, 0x26, 0x80, 0x0d, 0x47, 0x45, 0x87,
                                        0x26, 0xc0, 0xf1, 0xe7, 0xdd, 0x8b, 0xca }, 17, true },
};
#define MAX_SLOTS 96

static _Atomic unsigned trace_count[T_COUNT][MAX_SLOTS];

static void trace(unsigned t, unsigned slot, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void trace(unsigned t, unsigned slot, const char *fmt, ...)
{
    if (!shim_trace || atomic_fetch_add(&trace_count[t][slot], 1) >= 8)
        return;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    idm_log(IDM_LOG_INFO, "libvgpu: export table %.8s slot %u: %s", table_info[t].name, slot, buf);
}

/* ---- slots nobody is known to call: log once, fail ---- */

static _Atomic bool unknown_seen[T_COUNT][MAX_SLOTS];

/* The log names the library that called (NVML asks for table 69a28e9f, for instance: in a pod
 * it has no device of its own to manage, and the programs above go on without it). */
static CUresult unknown_slot(unsigned t, unsigned slot, const void *caller)
{
    if (!atomic_exchange(&unknown_seen[t][slot], true)) {
        Dl_info di = { 0 };
        const char *who = dladdr(caller, &di) != 0 && di.dli_fname != NULL ? di.dli_fname : "?";
        const char *base = strrchr(who, '/');
        idm_log(IDM_LOG_WARN,
                "libvgpu: export table %s slot %u (called from %s) is not supported "
                "(CUDA_ERROR_NOT_SUPPORTED)",
                table_info[t].name, slot, base != NULL ? base + 1 : who);
    }
    return CUDA_ERROR_NOT_SUPPORTED;
}

#define UNK(t, s)                                                                              \
    static CUresult unk_##t##_##s(void)                                                        \
    {                                                                                          \
        return unknown_slot(t, s, __builtin_return_address(0));                                \
    }
#define UNK_ROW(t) \
    UNK(t, 0) \
    UNK(t, 1) \
    UNK(t, 2) \
    UNK(t, 3) \
    UNK(t, 4) \
    UNK(t, 5) \
    UNK(t, 6) \
    UNK(t, 7) \
    UNK(t, 8) \
    UNK(t, 9) \
    UNK(t, 10) \
    UNK(t, 11) \
    UNK(t, 12) \
    UNK(t, 13) \
    UNK(t, 14) \
    UNK(t, 15) \
    UNK(t, 16) \
    UNK(t, 17) \
    UNK(t, 18) \
    UNK(t, 19) \
    UNK(t, 20) \
    UNK(t, 21) \
    UNK(t, 22) \
    UNK(t, 23) \
    UNK(t, 24) \
    UNK(t, 25) \
    UNK(t, 26) \
    UNK(t, 27) \
    UNK(t, 28) \
    UNK(t, 29) \
    UNK(t, 30) \
    UNK(t, 31) \
    UNK(t, 32) \
    UNK(t, 33) \
    UNK(t, 34) \
    UNK(t, 35) \
    UNK(t, 36) \
    UNK(t, 37) \
    UNK(t, 38) \
    UNK(t, 39) \
    UNK(t, 40) \
    UNK(t, 41) \
    UNK(t, 42) \
    UNK(t, 43) \
    UNK(t, 44) \
    UNK(t, 45) \
    UNK(t, 46) \
    UNK(t, 47) \
    UNK(t, 48) \
    UNK(t, 49) \
    UNK(t, 50) \
    UNK(t, 51) \
    UNK(t, 52) \
    UNK(t, 53) \
    UNK(t, 54) \
    UNK(t, 55) \
    UNK(t, 56) \
    UNK(t, 57) \
    UNK(t, 58) \
    UNK(t, 59) \
    UNK(t, 60) \
    UNK(t, 61) \
    UNK(t, 62) \
    UNK(t, 63) \
    UNK(t, 64) \
    UNK(t, 65) \
    UNK(t, 66) \
    UNK(t, 67) \
    UNK(t, 68) \
    UNK(t, 69) \
    UNK(t, 70) \
    UNK(t, 71) \
    UNK(t, 72) \
    UNK(t, 73) \
    UNK(t, 74) \
    UNK(t, 75) \
    UNK(t, 76) \
    UNK(t, 77) \
    UNK(t, 78) \
    UNK(t, 79) \
    UNK(t, 80) \
    UNK(t, 81) \
    UNK(t, 82) \
    UNK(t, 83) \
    UNK(t, 84) \
    UNK(t, 85) \
    UNK(t, 86) \
    UNK(t, 87) \
    UNK(t, 88) \
    UNK(t, 89) \
    UNK(t, 90) \
    UNK(t, 91) \
    UNK(t, 92) \
    UNK(t, 93) \
    UNK(t, 94) \
    UNK(t, 95)
UNK_ROW(T_F8CF)
UNK_ROW(T_CUDART)
UNK_ROW(T_HOOKS)
UNK_ROW(T_TLS)
UNK_ROW(T_CLS)
UNK_ROW(T_CTXCHK)
UNK_ROW(T_CHECK)
UNK_ROW(T_69A2)
UNK_ROW(T_2131)
UNK_ROW(T_1734)
#define UNK_PTRS(t)                                                                            \
    {\
        (void *)unk_##t##_0, (void *)unk_##t##_1, (void *)unk_##t##_2, (void *)unk_##t##_3, (void *)unk_##t##_4, (void *)unk_##t##_5, \
        (void *)unk_##t##_6, (void *)unk_##t##_7, (void *)unk_##t##_8, (void *)unk_##t##_9, (void *)unk_##t##_10, (void *)unk_##t##_11, \
        (void *)unk_##t##_12, (void *)unk_##t##_13, (void *)unk_##t##_14, (void *)unk_##t##_15, (void *)unk_##t##_16, (void *)unk_##t##_17, \
        (void *)unk_##t##_18, (void *)unk_##t##_19, (void *)unk_##t##_20, (void *)unk_##t##_21, (void *)unk_##t##_22, (void *)unk_##t##_23, \
        (void *)unk_##t##_24, (void *)unk_##t##_25, (void *)unk_##t##_26, (void *)unk_##t##_27, (void *)unk_##t##_28, (void *)unk_##t##_29, \
        (void *)unk_##t##_30, (void *)unk_##t##_31, (void *)unk_##t##_32, (void *)unk_##t##_33, (void *)unk_##t##_34, (void *)unk_##t##_35, \
        (void *)unk_##t##_36, (void *)unk_##t##_37, (void *)unk_##t##_38, (void *)unk_##t##_39, (void *)unk_##t##_40, (void *)unk_##t##_41, \
        (void *)unk_##t##_42, (void *)unk_##t##_43, (void *)unk_##t##_44, (void *)unk_##t##_45, (void *)unk_##t##_46, (void *)unk_##t##_47, \
        (void *)unk_##t##_48, (void *)unk_##t##_49, (void *)unk_##t##_50, (void *)unk_##t##_51, (void *)unk_##t##_52, (void *)unk_##t##_53, \
        (void *)unk_##t##_54, (void *)unk_##t##_55, (void *)unk_##t##_56, (void *)unk_##t##_57, (void *)unk_##t##_58, (void *)unk_##t##_59, \
        (void *)unk_##t##_60, (void *)unk_##t##_61, (void *)unk_##t##_62, (void *)unk_##t##_63, (void *)unk_##t##_64, (void *)unk_##t##_65, \
        (void *)unk_##t##_66, (void *)unk_##t##_67, (void *)unk_##t##_68, (void *)unk_##t##_69, (void *)unk_##t##_70, (void *)unk_##t##_71, \
        (void *)unk_##t##_72, (void *)unk_##t##_73, (void *)unk_##t##_74, (void *)unk_##t##_75, (void *)unk_##t##_76, (void *)unk_##t##_77, \
        (void *)unk_##t##_78, (void *)unk_##t##_79, (void *)unk_##t##_80, (void *)unk_##t##_81, (void *)unk_##t##_82, (void *)unk_##t##_83, \
        (void *)unk_##t##_84, (void *)unk_##t##_85, (void *)unk_##t##_86, (void *)unk_##t##_87, (void *)unk_##t##_88, (void *)unk_##t##_89, \
        (void *)unk_##t##_90, (void *)unk_##t##_91, (void *)unk_##t##_92, (void *)unk_##t##_93, (void *)unk_##t##_94, (void *)unk_##t##_95 \
    }
static void *const unknown_fns[T_COUNT][MAX_SLOTS] = {
    UNK_PTRS(T_F8CF), UNK_PTRS(T_CUDART), UNK_PTRS(T_HOOKS), UNK_PTRS(T_TLS),
    UNK_PTRS(T_CLS),  UNK_PTRS(T_CTXCHK), UNK_PTRS(T_CHECK), UNK_PTRS(T_69A2),
    UNK_PTRS(T_2131), UNK_PTRS(T_1734),
};

/* The tables themselves; filled once (fill_tables), then only read. */
static void *tables[T_COUNT][MAX_SLOTS];

/* ---- 6bd5fb6c: the runtime's module loading and primary context ---- */

/* slot 1: (CUmodule *, fatbin wrapper) */
static CUresult rt_module_from_wrapper(CUmodule *mod, const void *wrapper)
{
    trace(T_CUDART, 1, "module %p wrapper %p", (void *)mod, wrapper);
    return cuModuleLoadData(mod, wrapper);
}

/* slot 2: (CUcontext *, CUdevice): the device's primary context. */
static CUresult rt_primary_ctx(CUcontext *pctx, CUdevice dev)
{
    trace(T_CUDART, 2, "pctx %p dev %d", (void *)pctx, dev);
    return cuDevicePrimaryCtxRetain(pctx, dev);
}

/* slot 6: (CUmodule *, fatbin wrapper, ?, ?, flags) */
static CUresult rt_module_from_wrapper_ex(CUmodule *mod, const void *wrapper, void *a3, void *a4,
                                          unsigned a5)
{
    trace(T_CUDART, 6, "module %p wrapper %p %p %p %u", (void *)mod, wrapper, a3, a4, a5);
    return cuModuleLoadData(mod, wrapper);
}

/* slot 7: (uintptr_t): nothing to do */
static CUresult rt_slot7(uintptr_t a)
{
    trace(T_CUDART, 7, "%#lx", (unsigned long)a);
    return CUDA_SUCCESS;
}

/* slot 8: (fatbin, CUmodule *, ?, ?, flags) */
static CUresult rt_module_from_fatbin(const void *fatbin, CUmodule *mod, void *a3, void *a4,
                                      unsigned a5)
{
    trace(T_CUDART, 8, "fatbin %p module %p %p %p %u", fatbin, (void *)mod, a3, a4, a5);
    return cuModuleLoadData(mod, fatbin);
}

/* ---- a094798c: where tools hook the runtime's callbacks; no tools here: zeroed space ---- */

static uintptr_t hooks_space2[1024];
static uint8_t hooks_space6[64];

static void hooks_slot2(void **ptr, size_t *size)
{
    trace(T_HOOKS, 2, "%p %p", (void *)ptr, (void *)size);
    if (ptr != NULL)
        *ptr = hooks_space2;
    if (size != NULL)
        *size = sizeof hooks_space2 / sizeof hooks_space2[0];
}

static void hooks_slot6(void **ptr, size_t *size)
{
    trace(T_HOOKS, 6, "%p %p", (void *)ptr, (void *)size);
    if (ptr != NULL)
        *ptr = hooks_space6;
    if (size != NULL)
        *size = 14;
}

/* ---- c693336e: per-context storage of the runtime (its state for each context) ---- */

typedef void (*cls_dtor_t)(CUcontext, void *, void *);
struct cls_entry {
    CUcontext ctx;
    void *key, *value;
    cls_dtor_t dtor;
    struct cls_entry *next;
};
/* cls_lock guards cls_head. */
static pthread_mutex_t cls_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cls_entry *cls_head;

static CUcontext ctx_or_current(CUcontext ctx)
{
    if (ctx == NULL && cuCtxGetCurrent(&ctx) != CUDA_SUCCESS)
        return NULL;
    return ctx;
}

/* slot 0: (ctx, key, value, destructor) */
static CUresult cls_put(CUcontext ctx, void *key, void *value, cls_dtor_t dtor)
{
    trace(T_CLS, 0, "ctx %p key %p value %p", (void *)ctx, key, value);
    ctx = ctx_or_current(ctx);
    if (ctx == NULL)
        return CUDA_ERROR_INVALID_CONTEXT;
    pthread_mutex_lock(&cls_lock);
    struct cls_entry *e = cls_head;
    while (e != NULL && !(e->ctx == ctx && e->key == key))
        e = e->next;
    if (e == NULL && (e = calloc(1, sizeof *e)) != NULL) {
        e->ctx = ctx;
        e->key = key;
        e->next = cls_head;
        cls_head = e;
    }
    if (e != NULL) {
        e->value = value;
        e->dtor = dtor;
    }
    pthread_mutex_unlock(&cls_lock);
    return e != NULL ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

/* slot 1: (ctx, key): forget the entry */
static CUresult cls_remove(CUcontext ctx, void *key)
{
    trace(T_CLS, 1, "ctx %p key %p", (void *)ctx, key);
    ctx = ctx_or_current(ctx);
    pthread_mutex_lock(&cls_lock);
    for (struct cls_entry **pe = &cls_head; *pe != NULL; pe = &(*pe)->next)
        if ((*pe)->ctx == ctx && (*pe)->key == key) {
            struct cls_entry *e = *pe;
            *pe = e->next;
            free(e);
            break;
        }
    pthread_mutex_unlock(&cls_lock);
    return CUDA_SUCCESS;
}

/* slot 2: (void **value, ctx, key) */
static CUresult cls_get(void **value, CUcontext ctx, void *key)
{
    trace(T_CLS, 2, "out %p ctx %p key %p", (void *)value, (void *)ctx, key);
    if (value == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    ctx = ctx_or_current(ctx);
    if (ctx == NULL)
        return CUDA_ERROR_INVALID_CONTEXT;
    CUresult r = CUDA_ERROR_INVALID_HANDLE; /* as the driver answers a missing key */
    pthread_mutex_lock(&cls_lock);
    for (struct cls_entry *e = cls_head; e != NULL; e = e->next)
        if (e->ctx == ctx && e->key == key) {
            *value = e->value;
            r = CUDA_SUCCESS;
            break;
        }
    pthread_mutex_unlock(&cls_lock);
    return r;
}

void shim_cls_context_gone(CUcontext ctx)
{
    struct cls_entry *gone = NULL;
    pthread_mutex_lock(&cls_lock);
    for (struct cls_entry **pe = &cls_head; *pe != NULL;) {
        struct cls_entry *e = *pe;
        if (e->ctx == ctx) {
            *pe = e->next;
            e->next = gone;
            gone = e;
        } else {
            pe = &e->next;
        }
    }
    pthread_mutex_unlock(&cls_lock);
    while (gone != NULL) { /* destructors run without the lock: they may call back */
        struct cls_entry *e = gone;
        gone = e->next;
        if (e->dtor != NULL)
            e->dtor(ctx, e->key, e->value);
        free(e);
    }
}

/* ---- 42d85a81 slot 2 (cuBLAS): the calling thread's current context, as the driver answers
 * (its context handle is its internal object; 0 on a thread without one: dark_probe) ---- */

static CUresult tls_current_ctx(CUcontext *out)
{
    trace(T_TLS, 2, "%p", (void *)out);
    if (out == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    CUcontext c = NULL;
    if (cuCtxGetCurrent(&c) != CUDA_SUCCESS)
        c = NULL;
    *out = c;
    return CUDA_SUCCESS;
}

/* ---- 21318c60 slot 4 (cuBLAS): (ctx, uint64_t *out, ...): the driver writes 1 (dark_probe);
 * the meaning is not known yet: answered as measured, experimental ---- */

static CUresult cublas_slot4(CUcontext ctx, uint64_t *out)
{
    trace(T_2131, 4, "ctx %p out %p", (void *)ctx, (void *)out);
    if (out == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *out = 1;
    return CUDA_SUCCESS;
}

/* ---- 21318c60 slots 51 and 39 (cuBLAS's default workspace, kept per stream) ----
 * Watched on the real driver (test/gpu/rt/probe-watch.sh, docs/cuda-compat.md): cuBLAS calls
 * slot 51 as (ctx, stream, &obj) and gets a driver object for that stream (the NULL stream and
 * CU_STREAM_LEGACY give the same one; its third word is the context), then slot 39 as
 * (ctx, obj, &id) and gets a number for the stream (the driver answered 7 for the NULL stream;
 * the registers after the third argument differ run to run: not arguments). cuBLAS keys its
 * default workspace by it, so the number must stay the same for a stream and must not be
 * reused by a later stream at the same address: a destroyed stream's record gets a new number.
 * Records are our own, in the driver's layout for the words seen; they are kept for the life of
 * the process (the program may hold their addresses), at most STREAM_OBJ_MAX of them. */

struct stream_obj {
    uint64_t word0;    /* 1, as the driver's */
    uint64_t word1;
    CUcontext ctx;     /* third word: the context, as the driver's */
    uint64_t word3, word4;
    uint64_t word5;    /* 1, as the driver's */
    uint64_t word6, word7;
    CUstream stream;   /* ours from here on */
    uint64_t id;
    struct stream_obj *next;
};
#define STREAM_OBJ_MAX 4096
/* sobj_lock guards every record's stream and id, sobj_head, sobj_count, sobj_next_id. */
static pthread_mutex_t sobj_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stream_obj *sobj_head;
static unsigned sobj_count;
static uint64_t sobj_next_id = 1;

static CUresult cublas_slot51(CUcontext ctx, CUstream stream, struct stream_obj **out)
{
    trace(T_2131, 51, "ctx %p stream %p out %p", (void *)ctx, (void *)stream, (void *)out);
    if (out == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    ctx = ctx_or_current(ctx);
    if (ctx == NULL)
        return CUDA_ERROR_INVALID_CONTEXT;
    if (stream == CU_STREAM_LEGACY)
        stream = NULL;
    pthread_mutex_lock(&sobj_lock);
    struct stream_obj *o = sobj_head;
    while (o != NULL && !(o->ctx == ctx && o->stream == stream))
        o = o->next;
    if (o == NULL && sobj_count < STREAM_OBJ_MAX && (o = calloc(1, sizeof *o)) != NULL) {
        o->word0 = 1;
        o->word5 = 1;
        o->ctx = ctx;
        o->stream = stream;
        o->id = sobj_next_id++;
        o->next = sobj_head;
        sobj_head = o;
        sobj_count++;
    }
    pthread_mutex_unlock(&sobj_lock);
    if (o == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *out = o;
    return CUDA_SUCCESS;
}

static CUresult cublas_slot39(CUcontext ctx, const struct stream_obj *obj, uint64_t *id)
{
    trace(T_2131, 39, "ctx %p obj %p id %p", (void *)ctx, (const void *)obj, (void *)id);
    if (obj == NULL || id == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = CUDA_ERROR_INVALID_HANDLE;
    pthread_mutex_lock(&sobj_lock);
    for (struct stream_obj *o = sobj_head; o != NULL; o = o->next)
        if (o == obj) { /* only records we handed out */
            *id = o->id;
            r = CUDA_SUCCESS;
            break;
        }
    pthread_mutex_unlock(&sobj_lock);
    return r;
}

void shim_stream_obj_gone(CUstream stream)
{
    pthread_mutex_lock(&sobj_lock);
    for (struct stream_obj *o = sobj_head; o != NULL; o = o->next)
        if (o->stream == stream && stream != NULL)
            o->id = sobj_next_id++;
    pthread_mutex_unlock(&sobj_lock);
}

/* ---- 263e8860: context checks: no context of ours is a wrapped one ---- */

static CUresult ctxchk_slot2(CUcontext ctx, uint32_t *wrapped, void **inner)
{
    trace(T_CTXCHK, 2, "ctx %p %p %p", (void *)ctx, (void *)wrapped, (void *)inner);
    if (wrapped != NULL)
        *wrapped = 0;
    return CUDA_SUCCESS;
}

static uint32_t ctxchk_slot3(void)
{
    trace(T_CTXCHK, 3, "-");
    return 0;
}

/* ---- d4082055: the runtime's driver check ---- */

static CUresult check_slot1(uint32_t rt_version, uint64_t timestamp, uint8_t out[16])
{
    trace(T_CHECK, 1, "version %u time %lu", rt_version, (unsigned long)timestamp);
    if (out == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    int drv = 0, count = 0;
    CUresult r = cuDriverGetVersion(&drv);
    if (r == CUDA_SUCCESS)
        r = cuDeviceGetCount(&count);
    if (r != CUDA_SUCCESS)
        return r;
    struct shim_check_dev devs[4] = { 0 };
    if (count > 4)
        count = 4;
    for (int d = 0; d < count; d++) {
        CUuuid u;
        int dom = 0, bus = 0, dev = 0;
        if ((r = cuDeviceGetUuid(&u, d)) != CUDA_SUCCESS ||
            (r = cuDeviceGetAttribute(&dom, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, d)) != CUDA_SUCCESS ||
            (r = cuDeviceGetAttribute(&bus, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, d)) != CUDA_SUCCESS ||
            (r = cuDeviceGetAttribute(&dev, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, d)) != CUDA_SUCCESS)
            return r;
        memcpy(devs[d].uuid, u.bytes, 16);
        devs[d].pci_domain = (uint32_t)dom;
        devs[d].pci_bus = (uint32_t)bus;
        devs[d].pci_device = (uint32_t)dev;
    }
    struct shim_check_in in = {
        .driver_version = (uint32_t)drv,
        .rt_version = rt_version,
        .pid = (uint32_t)getpid(),
        .tid = (uint32_t)pthread_self(), /* measured: not gettid() */
        .cudart_table = (uintptr_t)tables[T_CUDART],
        .check_table = (uintptr_t)tables[T_CHECK],
        .check_fn = (uintptr_t)check_slot1,
        .timestamp = timestamp,
    };
    shim_check_value(&in, devs, (unsigned)count, out);
    return CUDA_SUCCESS;
}

/* ---- the tables ---- */

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void fill_tables(void)
{
    for (unsigned i = 0; i < T_COUNT; i++) {
        for (unsigned s = 0; s < table_info[i].slots; s++)
            tables[i][s] = unknown_fns[i][s];
        if (table_info[i].size_word)
            tables[i][0] = (void *)(uintptr_t)(table_info[i].slots * sizeof(void *));
    }
    tables[T_CUDART][1] = (void *)rt_module_from_wrapper;
    tables[T_CUDART][2] = (void *)rt_primary_ctx;
    tables[T_CUDART][6] = (void *)rt_module_from_wrapper_ex;
    tables[T_CUDART][7] = (void *)rt_slot7;
    tables[T_CUDART][8] = (void *)rt_module_from_fatbin;
    tables[T_HOOKS][2] = (void *)hooks_slot2;
    tables[T_HOOKS][6] = (void *)hooks_slot6;
    tables[T_CLS][0] = (void *)cls_put;
    tables[T_CLS][1] = (void *)cls_remove;
    tables[T_CLS][2] = (void *)cls_get;
    tables[T_TLS][2] = (void *)tls_current_ctx;
    tables[T_2131][4] = (void *)cublas_slot4;
    tables[T_2131][39] = (void *)cublas_slot39;
    tables[T_2131][51] = (void *)cublas_slot51;
    tables[T_CTXCHK][2] = (void *)ctxchk_slot2;
    tables[T_CTXCHK][3] = (void *)ctxchk_slot3;
    tables[T_CHECK][1] = (void *)check_slot1;
}

SHIM_API CUresult cuGetExportTable(const void **table, const CUuuid *id)
{
    if (table == NULL || id == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_once(&tables_once, fill_tables);
    for (unsigned i = 0; i < T_COUNT; i++)
        if (memcmp(table_info[i].uuid, id->bytes, 16) == 0) {
            *table = tables[i];
            return CUDA_SUCCESS;
        }
    static _Atomic unsigned logged;
    if (atomic_fetch_add(&logged, 1) < 16) {
        const uint8_t *b = (const uint8_t *)id->bytes;
        idm_log(IDM_LOG_WARN,
                "libvgpu: export table %02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x"
                "%02x%02x is not supported",
                b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
                b[13], b[14], b[15]);
    }
    *table = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}
