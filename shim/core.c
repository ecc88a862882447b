/* core.c: libvgpu.so, the process's libcuda.so.1. Connection to the broker (at cuInit, through
 * the pod socket named by $VGPU_SOCKET), the request/reply plumbing, error strings, device
 * queries answered from the hello's attribute table, and the emulated context stack (every
 * context of the process maps onto the pod's one GPU context in the broker). */
#include "shim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct shim_state shim = { .lock = PTHREAD_MUTEX_INITIALIZER };
bool shim_inited;
bool shim_trace;
static CUresult init_result = CUDA_ERROR_NOT_INITIALIZED;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

#define DEFAULT_SOCKET "/run/vgpu/vgpu.sock"

void shim_unsupported(const char *fn)
{
    static char seen[64][64];
    static unsigned nseen;
    pthread_mutex_lock(&shim.lock);
    for (unsigned i = 0; i < nseen; i++)
        if (strcmp(seen[i], fn) == 0) {
            pthread_mutex_unlock(&shim.lock);
            return;
        }
    if (nseen < 64)
        snprintf(seen[nseen++], sizeof seen[0], "%s", fn);
    pthread_mutex_unlock(&shim.lock);
    idm_log(IDM_LOG_WARN, "libvgpu: %s is not supported (CUDA_ERROR_NOT_SUPPORTED)", fn);
}

static void do_init(void)
{
    const char *t = getenv("VGPU_SHIM_TRACE");
    shim_trace = t != NULL && *t != '\0' && strcmp(t, "0") != 0;
    const char *path = getenv("VGPU_SOCKET");
    const char *transport = getenv("VGPU_TRANSPORT");
    struct idm_err err = { 0 };
    if (path == NULL)
        path = DEFAULT_SOCKET;
    /* xen pods: granted pages + event channel to the broker in dom0 (no fd passing) */
    shim.xen = transport != NULL && strcmp(transport, "xen") == 0;
    const char *plain = getenv("VGPU_SHIM_PLAIN_HOST");
    shim.plain_host = shim.xen || (plain != NULL && strcmp(plain, "1") == 0);
    int crc = shim.xen ? idm_xen_connect(getenv("VGPU_XEN_DIR"), 0, &shim.ch, &err)
                       : idm_local_connect(path, &shim.ch, &err);
    if (crc < 0) {
        idm_log(IDM_LOG_ERROR, "libvgpu: %s", err.msg);
        init_result = CUDA_ERROR_NO_DEVICE;
        return;
    }
    shim_inited = true;
    struct idm_hello_req req = { IDM_PROTO_VERSION, (uint32_t)getpid() };
    struct idm_hello_rep rep;
    CUresult r = shim_call(IDM_OP_HELLO, &req, sizeof req, NULL, 0, &rep, sizeof rep);
    if (r != CUDA_SUCCESS) {
        idm_log(IDM_LOG_ERROR, "libvgpu: broker refused hello (CUresult %d)", r);
        shim_inited = false;
        init_result = CUDA_ERROR_NO_DEVICE;
        return;
    }
    if (shim.ch->hello.soft_device)
        idm_log(IDM_LOG_WARN, "libvgpu: the broker serves the SOFT TEST DEVICE, not a GPU");
    init_result = CUDA_SUCCESS;
}

SHIM_API CUresult cuInit(unsigned int flags)
{
    pthread_once(&init_once, do_init);
    return init_result;
}

CUresult shim_ready(void)
{
    return shim_inited ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
}

uint64_t shim_stream(CUstream s)
{
    if (s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD)
        return 0;
    return (uint64_t)(uintptr_t)s;
}

/* $VGPU_SHIM_STATS=1: replies waited for, per operation, printed at exit (where a program's
 * time goes: each is a round trip to the broker). */
static _Atomic unsigned long stat_waited[IDM_OP_COUNT];

__attribute__((destructor)) static void print_stats(void)
{
    const char *e = getenv("VGPU_SHIM_STATS");
    if (e == NULL || strcmp(e, "1") != 0)
        return;
    for (unsigned op = 0; op < IDM_OP_COUNT; op++)
        if (stat_waited[op] > 0) {
            const struct idm_op_info *info = idm_op_lookup(op);
            fprintf(stderr, "libvgpu stats: %-16s replies waited for %8lu\n", info ? info->name : "?",
                    stat_waited[op]);
        }
}

CUresult shim_wait_locked(uint64_t seq, void *rep, size_t rep_size, void *data, size_t data_len)
{
    struct idm_msg hdr;
    const struct idm_msg *m = idm_client_wait_reply(shim.ch, seq, &hdr);
    if (m == NULL) {
        if (!shim.dead)
            idm_log(IDM_LOG_ERROR, "libvgpu: lost the broker");
        shim.dead = true;
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    }
    if (hdr.op < IDM_OP_COUNT)
        stat_waited[hdr.op]++;
    const uint8_t *p = (const uint8_t *)m + sizeof hdr;
    struct idm_rep r;
    memcpy(&r, p, sizeof r);
    size_t avail = hdr.len - sizeof hdr - sizeof r;
    if (rep != NULL && rep_size > 0)
        memcpy(rep, p + sizeof r, rep_size < avail ? rep_size : avail);
    if (data != NULL && r.result == CUDA_SUCCESS && avail >= rep_size &&
        data_len <= avail - rep_size)
        shim_copy_bulk(data, p + sizeof r + rep_size, data_len);
    idm_client_release(shim.ch, &hdr);
    return r.result;
}

CUresult shim_post_locked(uint16_t op, uint16_t flags, const void *req, size_t req_size,
                            const void *payload, size_t plen, uint64_t *seq)
{
    if (shim.dead)
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    uint8_t *body = idm_client_begin(shim.ch, op, flags, plen, seq);
    if (body == NULL)
        return shim.dead ? CUDA_ERROR_DEVICE_UNAVAILABLE : CUDA_ERROR_INVALID_VALUE;
    memcpy(body, req, req_size);
    if (plen > 0)
        memcpy(body + req_size, payload, plen);
    if (idm_client_send(shim.ch) < 0)
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    return CUDA_SUCCESS;
}

CUresult shim_call(uint16_t op, const void *req, size_t req_size, const void *payload,
                   size_t plen, void *rep, size_t rep_size)
{
    uint64_t seq;
    pthread_mutex_lock(&shim.lock);
    CUresult r = shim_post_locked(op, 0, req, req_size, payload, plen, &seq);
    if (r == CUDA_SUCCESS)
        r = shim_wait_locked(seq, rep, rep_size, NULL, 0);
    pthread_mutex_unlock(&shim.lock);
    if (r != CUDA_SUCCESS && shim_trace) {
        const struct idm_op_info *info = idm_op_lookup(op);
        idm_log(IDM_LOG_INFO, "libvgpu: %s answered CUresult %d", info ? info->name : "?", r);
    }
    return r;
}

CUresult shim_post(uint16_t op, uint16_t flags, const void *req, size_t req_size,
                   const void *payload, size_t plen)
{
    uint64_t seq;
    pthread_mutex_lock(&shim.lock);
    CUresult r = shim_post_locked(op, flags, req, req_size, payload, plen, &seq);
    if (r == CUDA_SUCCESS && (flags & IDM_F_SYNC))
        r = shim_wait_locked(seq, NULL, 0, NULL, 0);
    pthread_mutex_unlock(&shim.lock);
    return r;
}

/* ---- version, errors ---- */

SHIM_API CUresult cuDriverGetVersion(int *version)
{
    if (version == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *version = shim_inited && shim.ch->hello.driver_version ? shim.ch->hello.driver_version : 13000;
    return CUDA_SUCCESS;
}

static const struct { int code; const char *name, *text; } errors[] = {
    { 0, "CUDA_SUCCESS", "no error" },
    { 1, "CUDA_ERROR_INVALID_VALUE", "invalid argument" },
    { 2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory" },
    { 3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error" },
    { 4, "CUDA_ERROR_DEINITIALIZED", "driver shutting down" },
    { 46, "CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable" },
    { 100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected" },
    { 101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal" },
    { 200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid" },
    { 201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context" },
    { 209, "CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device" },
    { 218, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed" },
    { 301, "CUDA_ERROR_FILE_NOT_FOUND", "file not found" },
    { 400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle" },
    { 500, "CUDA_ERROR_NOT_FOUND", "named symbol not found" },
    { 600, "CUDA_ERROR_NOT_READY", "device not ready" },
    { 700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered" },
    { 701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch" },
    { 719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure" },
    { 801, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported" },
    { 999, "CUDA_ERROR_UNKNOWN", "unknown error" },
};

static int find_error(CUresult e)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].code == e)
            return (int)i;
    return -1;
}

SHIM_API CUresult cuGetErrorString(CUresult error, const char **str)
{
    int i = find_error(error);
    if (str == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *str = i >= 0 ? errors[i].text : NULL;
    return i >= 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SHIM_API CUresult cuGetErrorName(CUresult error, const char **str)
{
    int i = find_error(error);
    if (str == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *str = i >= 0 ? errors[i].name : NULL;
    return i >= 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* ---- devices (answered locally from the hello) ---- */


SHIM_API CUresult cuDeviceGetCount(int *count)
{
    NEED_INIT();
    if (count == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *count = 1;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    NEED_INIT();
    if (device == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
    NEED_INIT();
    if (name == NULL || len <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    snprintf(name, (size_t)len, "%s", shim.ch->hello.device_name);
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
    NEED_INIT();
    if (uuid == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    memcpy(uuid->bytes, shim.ch->hello.uuid, 16);
    return CUDA_SUCCESS;
}
SHIM_API CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) __attribute__((alias("cuDeviceGetUuid")));

SHIM_API CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    NEED_INIT();
    if (bytes == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    const struct idm_hello *h = &shim.ch->hello;
    *bytes = h->quota_bytes != 0 && h->quota_bytes < h->total_mem ? h->quota_bytes : h->total_mem;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
    NEED_INIT();
    if (pi == NULL || attrib <= 0 || attrib >= IDM_ATTR_MAX || !shim.ch->hello.attr_valid[attrib])
        return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    *pi = shim.ch->hello.attrs[attrib];
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuDeviceComputeCapability(int *major, int *minor, CUdevice dev)
{
    NEED_INIT();
    if (major == NULL || minor == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *major = shim.ch->hello.attrs[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR];
    *minor = shim.ch->hello.attrs[CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR];
    return CUDA_SUCCESS;
}

/* ---- contexts: a per-thread stack of emulated contexts ---- */

static struct shim_ctx primary_ctx = { SHIM_CTX_MAGIC, true, 0 };
static int primary_refs;
#define CTX_STACK 16
static __thread struct shim_ctx *ctx_stack[CTX_STACK];
static __thread int ctx_depth;

static bool valid_ctx(CUcontext c)
{
    return c != NULL && ((struct shim_ctx *)c)->magic == SHIM_CTX_MAGIC;
}

SHIM_API CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    NEED_INIT();
    if (pctx == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    __atomic_add_fetch(&primary_refs, 1, __ATOMIC_SEQ_CST);
    *pctx = (CUcontext)&primary_ctx;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    NEED_INIT();
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    __atomic_sub_fetch(&primary_refs, 1, __ATOMIC_SEQ_CST);
    return CUDA_SUCCESS;
}
SHIM_API CUresult cuDevicePrimaryCtxRelease(CUdevice dev) __attribute__((alias("cuDevicePrimaryCtxRelease_v2")));

SHIM_API CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev)
{
    NEED_INIT();
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    shim_cls_context_gone((CUcontext)&primary_ctx);
    return CUDA_SUCCESS;
}
SHIM_API CUresult cuDevicePrimaryCtxReset(CUdevice dev) __attribute__((alias("cuDevicePrimaryCtxReset_v2")));

SHIM_API CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    NEED_INIT();
    if (flags == NULL || active == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *flags = primary_ctx.flags;
    *active = __atomic_load_n(&primary_refs, __ATOMIC_SEQ_CST) > 0;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags)
{
    NEED_INIT();
    primary_ctx.flags = flags;
    return CUDA_SUCCESS;
}
SHIM_API CUresult cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags) __attribute__((alias("cuDevicePrimaryCtxSetFlags_v2")));

SHIM_API CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
    NEED_INIT();
    if (!valid_ctx(ctx))
        return CUDA_ERROR_INVALID_CONTEXT;
    if (ctx_depth == CTX_STACK)
        return CUDA_ERROR_INVALID_VALUE;
    ctx_stack[ctx_depth++] = (struct shim_ctx *)ctx;
    return CUDA_SUCCESS;
}
SHIM_API CUresult cuCtxPushCurrent(CUcontext ctx) __attribute__((alias("cuCtxPushCurrent_v2")));

SHIM_API CUresult cuCtxPopCurrent_v2(CUcontext *pctx)
{
    NEED_INIT();
    if (ctx_depth == 0)
        return CUDA_ERROR_INVALID_CONTEXT;
    struct shim_ctx *c = ctx_stack[--ctx_depth];
    if (pctx != NULL)
        *pctx = (CUcontext)c;
    return CUDA_SUCCESS;
}
SHIM_API CUresult cuCtxPopCurrent(CUcontext *pctx) __attribute__((alias("cuCtxPopCurrent_v2")));

SHIM_API CUresult cuCtxSetCurrent(CUcontext ctx)
{
    NEED_INIT();
    if (ctx == NULL) {
        if (ctx_depth > 0)
            ctx_depth--;
        return CUDA_SUCCESS;
    }
    if (!valid_ctx(ctx))
        return CUDA_ERROR_INVALID_CONTEXT;
    if (ctx_depth == 0)
        ctx_depth = 1;
    ctx_stack[ctx_depth - 1] = (struct shim_ctx *)ctx;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuCtxGetCurrent(CUcontext *pctx)
{
    NEED_INIT();
    if (pctx == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *pctx = ctx_depth > 0 ? (CUcontext)ctx_stack[ctx_depth - 1] : NULL;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuCtxGetDevice(CUdevice *device)
{
    NEED_INIT();
    if (device == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (ctx_depth == 0)
        return CUDA_ERROR_INVALID_CONTEXT;
    *device = 0;
    return CUDA_SUCCESS;
}

/* Every GPU since Volta has the same stream priorities: 0 (least) to -5 (greatest). */
SHIM_API CUresult cuCtxGetStreamPriorityRange(int *least, int *greatest)
{
    NEED_INIT();
    if (least != NULL)
        *least = 0;
    if (greatest != NULL)
        *greatest = -5;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuCtxGetFlags(unsigned int *flags)
{
    NEED_INIT();
    if (flags == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *flags = ctx_depth > 0 ? ctx_stack[ctx_depth - 1]->flags : 0;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuCtxGetApiVersion(CUcontext ctx, unsigned int *version)
{
    NEED_INIT();
    if (version == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *version = 3020;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    NEED_INIT();
    if (pctx == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    struct shim_ctx *c = calloc(1, sizeof *c);
    if (c == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    c->magic = SHIM_CTX_MAGIC;
    c->flags = flags;
    CUresult r = cuCtxPushCurrent_v2((CUcontext)c);
    if (r != CUDA_SUCCESS) {
        free(c);
        return r;
    }
    *pctx = (CUcontext)c;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuCtxCreate_v3(CUcontext *pctx, void *params, int n, unsigned int flags,
                                 CUdevice dev)
{
    return cuCtxCreate_v2(pctx, flags, dev);
}

SHIM_API CUresult cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *params, unsigned int flags,
                                 CUdevice dev)
{
    return cuCtxCreate_v2(pctx, flags, dev);
}

SHIM_API CUresult cuCtxDestroy_v2(CUcontext ctx)
{
    NEED_INIT();
    if (!valid_ctx(ctx))
        return CUDA_ERROR_INVALID_CONTEXT;
    for (int i = 0; i < ctx_depth; i++)
        if (ctx_stack[i] == (struct shim_ctx *)ctx) {
            memmove(&ctx_stack[i], &ctx_stack[i + 1], (size_t)(ctx_depth - i - 1) * sizeof ctx);
            ctx_depth--;
            i--;
        }
    struct shim_ctx *c = (struct shim_ctx *)ctx;
    if (!c->primary) {
        shim_cls_context_gone(ctx);
        c->magic = 0;
        free(c);
    }
    return CUDA_SUCCESS;
}
SHIM_API CUresult cuCtxDestroy(CUcontext ctx) __attribute__((alias("cuCtxDestroy_v2")));

SHIM_API CUresult cuCtxSynchronize(void)
{
    NEED_INIT();
    struct idm_empty e = { 0 };
    return shim_call(IDM_OP_CTX_SYNC, &e, sizeof e, NULL, 0, NULL, 0);
}

/* CUDA 13: the context as an argument (NULL: the current one). Every context of a process is
 * the pod's one broker context, so the work is the same once the handle is checked. */
SHIM_API CUresult cuCtxSynchronize_v2(CUcontext ctx)
{
    NEED_INIT();
    if (ctx != NULL && !valid_ctx(ctx))
        return CUDA_ERROR_INVALID_CONTEXT;
    return cuCtxSynchronize();
}

SHIM_API CUresult cuCtxGetDevice_v2(CUdevice *device, CUcontext ctx)
{
    NEED_INIT();
    if (ctx == NULL)
        return cuCtxGetDevice(device);
    if (device == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (!valid_ctx(ctx))
        return CUDA_ERROR_INVALID_CONTEXT;
    *device = 0;
    return CUDA_SUCCESS;
}
