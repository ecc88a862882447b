/* passthru.c: an investigation tool for the device machine, not part of the product. Built as a
 * libcuda.so.1 that forwards every driver function to the real driver (stubs from gen-stubs.sh)
 * and records what the CUDA runtime, cuBLAS and PyTorch ask for: every cuGetProcAddress name and
 * version, every cuGetExportTable UUID, and which slots of each export table are called (each
 * code pointer of a table is replaced by a counting trampoline, tramp.S). The report is written
 * at exit to $VGPU_PT_LOG (default stderr).
 * Env: VGPU_REAL_LIBCUDA: the real driver (default /usr/lib/x86_64-linux-gnu/libcuda.so.1);
 * VGPU_PT_SKIP: tables not to wrap (returned as the driver gave them): "all", or a comma-separated
 * list of the first 8 hex digits of their UUIDs, or "allbut:" and such a list. */
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
#include <unistd.h>

typedef int CUresult;
typedef struct { unsigned char b[16]; } uuid_t16;

#define HIDDEN __attribute__((visibility("hidden")))
extern const char *pt_names[] HIDDEN;
extern void *pt_real[] HIDDEN;
extern char pt_tramps[] HIDDEN;

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
};
static struct table tables[MAX_TABLES];
static unsigned ntables, next_tramp;
static void *tramp_target[PT_TRAMPS];
static _Atomic unsigned long tramp_hits[PT_TRAMPS];

struct proc { char name[96]; int version; uint64_t flags; unsigned long n; int found; };
static struct proc procs[MAX_PROCS];
static unsigned nprocs;

HIDDEN void *pt_slot_hit(unsigned i);
void *pt_slot_hit(unsigned i)
{
    atomic_fetch_add(&tramp_hits[i], 1);
    return tramp_target[i];
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
                tramp_target[next_tramp] = (void *)v[s];
                t->copy[s] = pt_tramps + 16 * next_tramp;
            }
            next_tramp++;
        }
    }
    if (t != NULL) {
        t->requests++;
        if (t->first_tramp != next_tramp) /* at least one slot wrapped */
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
        fprintf(f, "\n");
    }
    for (unsigned i = 0; i < nprocs; i++)
        fprintf(f, "proc %s v%d flags %llu n %lu %s\n", procs[i].name, procs[i].version,
                (unsigned long long)procs[i].flags, procs[i].n, procs[i].found ? "found" : "NOT-FOUND");
    if (f != stderr)
        fclose(f);
}
