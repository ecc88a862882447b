/* passthru.c: an investigation tool for the device machine, not part of the product. Built as a
 * libcuda.so.1 that forwards every driver function to the real driver (stubs from gen-stubs.sh)
 * and records what the CUDA runtime, cuBLAS and PyTorch ask for: every cuGetProcAddress name and
 * version, every cuGetExportTable UUID, which slots of each export table are called and with
 * which arguments (each code pointer of a table is replaced by a counting trampoline, tramp.S),
 * and how often each driver function is called (directly or through cuGetProcAddress). The
 * report is written at exit to $VGPU_PT_LOG (default stderr).
 * VGPU_PT_INPLACE=1: the trampolines are written into the driver's own tables (made writable),
 * so the tables keep their addresses (the runtime's driver check covers addresses, see
 * shim/darkhash.h); table d4082055 must then be skipped (its slot's address is checked too).
 * Env: VGPU_REAL_LIBCUDA: the real driver (default /usr/lib/x86_64-linux-gnu/libcuda.so.1);
 * VGPU_PT_SKIP: tables not to wrap (returned as the driver gave them): "all", or a comma-separated
 * list of the first 8 hex digits of their UUIDs, or "allbut:" and such a list.
 * VGPU_PT_WATCH: slots to watch call by call, "21318c60:51,1734dc26:13" (at most 8): each call is
 * logged at once to stderr with its arguments, its result, and 64 bytes at each argument that is a
 * readable address, before and after the call; cuMemAlloc_v2/cuMemFree_v2 calls are logged in the
 * same sequence. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

typedef int CUresult;
typedef struct { unsigned char b[16]; } uuid_t16;

#define HIDDEN __attribute__((visibility("hidden")))
extern const char *pt_names[] HIDDEN;
extern void *pt_real[] HIDDEN;
extern char pt_tramps[] HIDDEN;
extern unsigned long pt_calls[] HIDDEN;

#define PT_TRAMPS 4096
#define MAX_TABLES 64
#define MAX_SLOTS 256
#define MAX_PROCS 4096

static void *real_lib;
static CUresult (*real_gpa)(const char *, void **, int, uint64_t, int *);
static CUresult (*real_gpa_old)(const char *, void **, int, uint64_t);
static CUresult (*real_get)(const void **, const uuid_t16 *);
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

struct table {
    uuid_t16 id;
    const void *orig;
    void **copy;
    unsigned nslots, first_tramp;
    unsigned long requests;
    int inplace;
};
static struct table tables[MAX_TABLES];
static unsigned ntables, next_tramp;
static void *tramp_target[PT_TRAMPS];
static _Atomic unsigned long tramp_hits[PT_TRAMPS];
#define PT_KEEP 4 /* calls whose arguments are kept, per slot */
static uint64_t tramp_args[PT_TRAMPS][PT_KEEP][6];

struct proc { char name[96]; int version; uint64_t flags; unsigned long n; int found; };
static struct proc procs[MAX_PROCS];
static unsigned nprocs;

/* saved: rax, r9, r8, rcx, rdx, rsi, rdi as tramp.S pushed them. */
HIDDEN void *pt_slot_hit(unsigned i, const uint64_t *saved);
void *pt_slot_hit(unsigned i, const uint64_t *saved)
{
    unsigned long n = atomic_fetch_add(&tramp_hits[i], 1);
    if (n < PT_KEEP) {
        static const int reg[6] = { 6, 5, 4, 3, 2, 1 }; /* rdi rsi rdx rcx r8 r9 */
        for (int k = 0; k < 6; k++)
            tramp_args[i][n][k] = saved[reg[k]];
    }
    return tramp_target[i];
}

/* ---- watched slots: C wrappers that see results and memory (VGPU_PT_WATCH) ---- */
#define PT_WATCH 8
typedef uint64_t (*slot6_fn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
static slot6_fn watch_real[PT_WATCH];
static char watch_name[PT_WATCH][24];
static unsigned nwatch;
static _Atomic unsigned long watch_seq;

static void dump_mem(const char *when, int k, uint64_t a)
{
    unsigned char buf[64];
    struct iovec local = { buf, sizeof buf }, remote = { (void *)a, sizeof buf };
    if (a < 4096 || process_vm_readv(getpid(), &local, 1, &remote, 1, 0) != (ssize_t)sizeof buf)
        return;
    const uint64_t *q = (const uint64_t *)buf;
    fprintf(stderr, "PTW     %s arg%d @%#lx: %#lx %#lx %#lx %#lx %#lx %#lx %#lx %#lx\n", when, k,
            (unsigned long)a, (unsigned long)q[0], (unsigned long)q[1], (unsigned long)q[2],
            (unsigned long)q[3], (unsigned long)q[4], (unsigned long)q[5], (unsigned long)q[6],
            (unsigned long)q[7]);
}

static uint64_t watch_call(unsigned w, const void *caller, uint64_t a0, uint64_t a1, uint64_t a2,
                           uint64_t a3, uint64_t a4, uint64_t a5)
{
    uint64_t a[6] = { a0, a1, a2, a3, a4, a5 };
    unsigned long seq = atomic_fetch_add(&watch_seq, 1);
    Dl_info di = { 0 };
    int known = dladdr(caller, &di) != 0 && di.dli_fname != NULL;
    fprintf(stderr, "PTW %lu %s call from %s+%#lx args %#lx %#lx %#lx %#lx %#lx %#lx\n", seq,
            watch_name[w], known ? di.dli_fname : "?",
            known ? (unsigned long)((uintptr_t)caller - (uintptr_t)di.dli_fbase) : 0ul,
            (unsigned long)a0, (unsigned long)a1, (unsigned long)a2, (unsigned long)a3,
            (unsigned long)a4, (unsigned long)a5);
    for (int k = 0; k < 6; k++)
        dump_mem("before", k, a[k]);
    uint64_t rc = watch_real[w](a0, a1, a2, a3, a4, a5);
    fprintf(stderr, "PTW %lu %s returned %#lx\n", seq, watch_name[w], (unsigned long)rc);
    for (int k = 0; k < 6; k++)
        dump_mem("after", k, a[k]);
    return rc;
}

#define PT_WATCH_FN(n)                                                                              \
    static uint64_t watch_##n(uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,      \
                              uint64_t a5)                                                          \
    {                                                                                               \
        return watch_call(n, __builtin_return_address(0), a0, a1, a2, a3, a4, a5);                  \
    }
PT_WATCH_FN(0) PT_WATCH_FN(1) PT_WATCH_FN(2) PT_WATCH_FN(3)
PT_WATCH_FN(4) PT_WATCH_FN(5) PT_WATCH_FN(6) PT_WATCH_FN(7)
static slot6_fn const watch_fns[PT_WATCH] = { watch_0, watch_1, watch_2, watch_3,
                                              watch_4, watch_5, watch_6, watch_7 };

/* The watch wrapper for table hex's slot s, or NULL when it is not watched. */
static void *watch_slot(const char *hex, unsigned s, void *real)
{
    const char *w = getenv("VGPU_PT_WATCH");
    char key[24];
    snprintf(key, sizeof key, "%s:%u", hex, s);
    size_t kl = strlen(key);
    for (const char *p = w; p != NULL && *p != '\0'; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, key, kl) == 0 && (p[kl] == ',' || p[kl] == '\0') && nwatch < PT_WATCH) {
            watch_real[nwatch] = (slot6_fn)real;
            snprintf(watch_name[nwatch], sizeof watch_name[nwatch], "%s", key);
            return (void *)watch_fns[nwatch++];
        }
    return NULL;
}

static CUresult (*real_alloc)(uint64_t *, size_t);
static CUresult (*real_free)(uint64_t);

CUresult cuMemAlloc_v2(uint64_t *dptr, size_t size)
{
    CUresult rc = real_alloc(dptr, size);
    if (getenv("VGPU_PT_WATCH") != NULL)
        fprintf(stderr, "PTW %lu cuMemAlloc_v2 size %zu = %d dptr %#lx\n", atomic_fetch_add(&watch_seq, 1),
                size, rc, rc == 0 && dptr ? (unsigned long)*dptr : 0ul);
    return rc;
}

CUresult cuMemFree_v2(uint64_t dptr)
{
    CUresult rc = real_free(dptr);
    if (getenv("VGPU_PT_WATCH") != NULL)
        fprintf(stderr, "PTW %lu cuMemFree_v2 %#lx = %d\n", atomic_fetch_add(&watch_seq, 1), (unsigned long)dptr, rc);
    return rc;
}

/* The real driver's executable segments: only pointers into them are wrapped (a table may also
 * hold pointers to the driver's data). */
static uintptr_t code_lo[8], code_hi[8];
static int ncode;
static const char *real_path;

static int find_code(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    if (info->dlpi_name == NULL || strcmp(info->dlpi_name, real_path) != 0)
        return 0;
    for (int i = 0; i < info->dlpi_phnum && ncode < 8; i++)
        if (info->dlpi_phdr[i].p_type == PT_LOAD && (info->dlpi_phdr[i].p_flags & PF_X)) {
            code_lo[ncode] = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            code_hi[ncode] = code_lo[ncode] + info->dlpi_phdr[i].p_memsz;
            ncode++;
        }
    return 1;
}

static int is_driver_code(const void *p)
{
    for (int i = 0; i < ncode; i++)
        if ((uintptr_t)p >= code_lo[i] && (uintptr_t)p < code_hi[i])
            return 1;
    return 0;
}

__attribute__((constructor)) static void pt_init(void)
{
    const char *path = getenv("VGPU_REAL_LIBCUDA");
    if (path == NULL)
        path = "/usr/lib/x86_64-linux-gnu/libcuda.so.1";
    real_lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (real_lib == NULL) {
        fprintf(stderr, "passthru: %s\n", dlerror());
        abort();
    }
    real_path = path;
    dl_iterate_phdr(find_code, NULL);
    if (ncode == 0)
        fprintf(stderr, "passthru: no code segment found for %s: tables are not wrapped\n", path);
    for (int i = 0; pt_names[i] != NULL; i++)
        pt_real[i] = dlsym(real_lib, pt_names[i]);
    real_gpa = (CUresult(*)(const char *, void **, int, uint64_t, int *))dlsym(real_lib, "cuGetProcAddress_v2");
    real_gpa_old = (CUresult(*)(const char *, void **, int, uint64_t))dlsym(real_lib, "cuGetProcAddress");
    real_get = (CUresult(*)(const void **, const uuid_t16 *))dlsym(real_lib, "cuGetExportTable");
    real_alloc = (CUresult(*)(uint64_t *, size_t))dlsym(real_lib, "cuMemAlloc_v2");
    real_free = (CUresult(*)(uint64_t))dlsym(real_lib, "cuMemFree_v2");
}

/* The table's size: a leading byte count when it has one, else up to the first non-code entry. */
static unsigned table_slots(const void *t)
{
    const uintptr_t *v = t;
    if (v[0] > 0 && v[0] < MAX_SLOTS * 8 && v[0] % 8 == 0)
        return (unsigned)(v[0] / 8);
    unsigned n = 0;
    while (n < 64 && is_driver_code((const void *)v[n]))
        n++;
    return n;
}

CUresult cuGetExportTable(const void **out, const uuid_t16 *id)
{
    CUresult rc = real_get(out, id);
    if (rc != 0 || out == NULL || *out == NULL || id == NULL)
        return rc;
    pthread_mutex_lock(&lock);
    struct table *t = NULL;
    for (unsigned i = 0; i < ntables; i++)
        if (memcmp(&tables[i].id, id, 16) == 0 && tables[i].orig == *out)
            t = &tables[i];
    if (t == NULL && ntables < MAX_TABLES) {
        t = &tables[ntables++];
        t->id = *id;
        t->orig = *out;
        t->nslots = table_slots(*out);
        t->copy = calloc(t->nslots ? t->nslots : 1, sizeof(void *));
        for (unsigned s = 0; s < t->nslots; s++)
            t->copy[s] = (void *)((const uintptr_t *)*out)[s];
        t->first_tramp = next_tramp;
        const uintptr_t *v = *out;
        char hex[9];
        snprintf(hex, sizeof hex, "%02x%02x%02x%02x", id->b[0], id->b[1], id->b[2], id->b[3]);
        const char *skip = getenv("VGPU_PT_SKIP");
        bool skipped = skip != NULL && (strcmp(skip, "all") == 0 || strstr(skip, hex) != NULL);
        if (skip != NULL && strncmp(skip, "allbut:", 7) == 0)
            skipped = strstr(skip + 7, hex) == NULL;
        for (unsigned s = 0; s < t->nslots && !skipped; s++) {
            t->copy[s] = (void *)v[s];
            if (is_driver_code((void *)v[s]) && next_tramp < PT_TRAMPS) {
                void *w = watch_slot(hex, s, (void *)v[s]);
                tramp_target[next_tramp] = w != NULL ? w : (void *)v[s];
                t->copy[s] = pt_tramps + 16 * next_tramp;
            }
            next_tramp++;
        }
        const char *inplace = getenv("VGPU_PT_INPLACE");
        if (inplace != NULL && strcmp(inplace, "1") == 0 && !skipped) {
            long pg = sysconf(_SC_PAGESIZE);
            uintptr_t lo = (uintptr_t)v & ~(uintptr_t)(pg - 1);
            uintptr_t hi = ((uintptr_t)(v + t->nslots) + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1);
            if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE) == 0)
                memcpy((void *)v, t->copy, t->nslots * sizeof(void *));
            else
                perror("passthru: mprotect of an export table");
            t->inplace = 1;
        }
    }
    if (t != NULL) {
        t->requests++;
        if (t->first_tramp != next_tramp && !t->inplace) /* at least one slot wrapped */
            *out = t->copy;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

static void note_proc(const char *sym, int version, uint64_t flags, int found)
{
    pthread_mutex_lock(&lock);
    unsigned i = 0;
    while (i < nprocs && !(procs[i].version == version && strcmp(procs[i].name, sym) == 0))
        i++;
    if (i == nprocs && nprocs < MAX_PROCS) {
        snprintf(procs[i].name, sizeof procs[i].name, "%s", sym);
        procs[i].version = version;
        procs[i].flags = flags;
        procs[i].found = found;
        nprocs++;
    }
    if (i < nprocs)
        procs[i].n++;
    pthread_mutex_unlock(&lock);
}

CUresult cuGetProcAddress_v2(const char *sym, void **pfn, int version, uint64_t flags, int *status);
CUresult cuGetProcAddress(const char *sym, void **pfn, int version, uint64_t flags);

/* Our own entry points where the driver gave its own (the ABI of cuGetProcAddress depends on the
 * version asked: the five-argument _v2 from 12000 on). */
static void *wrap(const char *sym, int version, void *fn)
{
    if (fn == NULL)
        return fn;
    if (strcmp(sym, "cuGetExportTable") == 0)
        return (void *)cuGetExportTable;
    if (strcmp(sym, "cuGetProcAddress") == 0)
        return version >= 12000 ? (void *)cuGetProcAddress_v2 : (void *)cuGetProcAddress;
    /* the driver's function by its symbol name, then our counting stub of that name */
    Dl_info di;
    static void *self;
    if (self == NULL) {
        Dl_info me;
        if (dladdr((void *)wrap, &me) != 0 && me.dli_fname != NULL)
            self = dlopen(me.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    }
    if (self != NULL && dladdr(fn, &di) != 0 && di.dli_sname != NULL && di.dli_saddr == fn) {
        void *stub = dlsym(self, di.dli_sname);
        if (stub != NULL)
            return stub;
    }
    return fn;
}

CUresult cuGetProcAddress_v2(const char *sym, void **pfn, int version, uint64_t flags, int *status)
{
    CUresult rc = real_gpa(sym, pfn, version, flags, status);
    if (sym != NULL) {
        note_proc(sym, version, flags, rc == 0 && pfn && *pfn);
        if (rc == 0 && pfn != NULL)
            *pfn = wrap(sym, version, *pfn);
    }
    return rc;
}

CUresult cuGetProcAddress(const char *sym, void **pfn, int version, uint64_t flags)
{
    CUresult rc = real_gpa_old(sym, pfn, version, flags);
    if (sym != NULL) {
        note_proc(sym, version, flags, rc == 0 && pfn && *pfn);
        if (rc == 0 && pfn != NULL)
            *pfn = wrap(sym, version, *pfn);
    }
    return rc;
}

__attribute__((destructor)) static void pt_report(void)
{
    const char *path = getenv("VGPU_PT_LOG");
    FILE *f = path ? fopen(path, "a") : stderr;
    if (f == NULL)
        return;
    fprintf(f, "== passthru report: pid %d, %u export tables, %u cuGetProcAddress names\n", (int)getpid(), ntables, nprocs);
    for (unsigned i = 0; i < ntables; i++) {
        struct table *t = &tables[i];
        fprintf(f, "table ");
        for (int k = 0; k < 16; k++)
            fprintf(f, "%02x%s", t->id.b[k], k == 3 || k == 5 || k == 7 || k == 9 ? "-" : "");
        fprintf(f, " slots %u (header %s) requests %lu called:", t->nslots,
                ((const uintptr_t *)t->orig)[0] < MAX_SLOTS * 8 ? "size" : "none", t->requests);
        bool wrapped = i + 1 < ntables ? tables[i + 1].first_tramp != t->first_tramp
                                       : next_tramp != t->first_tramp;
        if (!wrapped)
            fprintf(f, " (not wrapped)");
        for (unsigned s = 0; s < t->nslots && wrapped; s++) {
            unsigned j = t->first_tramp + s;
            if (j < PT_TRAMPS && tramp_hits[j] > 0)
                fprintf(f, " %u:%lu", s, (unsigned long)tramp_hits[j]);
        }
        fprintf(f, "%s\n", t->inplace ? " (in place)" : "");
        for (unsigned s = 0; s < t->nslots && wrapped; s++) {
            unsigned j = t->first_tramp + s;
            for (unsigned long c = 0; j < PT_TRAMPS && c < tramp_hits[j] && c < PT_KEEP; c++)
                fprintf(f, "  slot %u call %lu args %#lx %#lx %#lx %#lx %#lx %#lx\n", s, c,
                        (unsigned long)tramp_args[j][c][0], (unsigned long)tramp_args[j][c][1],
                        (unsigned long)tramp_args[j][c][2], (unsigned long)tramp_args[j][c][3],
                        (unsigned long)tramp_args[j][c][4], (unsigned long)tramp_args[j][c][5]);
        }
    }
    for (int i = 0; pt_names[i] != NULL; i++)
        if (pt_calls[i] > 0)
            fprintf(f, "call %s %lu\n", pt_names[i], pt_calls[i]);
    for (unsigned i = 0; i < nprocs; i++)
        fprintf(f, "proc %s v%d flags %llu n %lu %s\n", procs[i].name, procs[i].version,
                (unsigned long long)procs[i].flags, procs[i].n, procs[i].found ? "found" : "NOT-FOUND");
    if (f != stderr)
        fclose(f);
}
