/* backend_soft.c: the `soft` device, a TEST DOUBLE for CI machines without a GPU.
 *
 * *** This is not a GPU. *** Device memory is host memory behind fake device addresses, every
 * operation runs synchronously on the calling worker thread, and "kernels" are host functions
 * registered by the test suite (broker_soft_register), found by the names in a module image's
 * ".entry" lines. It exists so that the IDM protocol, the broker's handle tables, pointer checks,
 * quotas and cleanup run in CI. A kernel that touches memory outside the context's allocations
 * fails with CUDA_ERROR_ILLEGAL_ADDRESS, which then sticks to the context, as on a GPU. */
#include "backend.h"
#include "vgpu_cuda.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SOFT_TOTAL_MEM (16ull << 30)
#define SOFT_MAX_KERNELS 64
#define SOFT_MAX_PARAMS 64
#define SOFT_VA_BASE 0x200000000ull
#define SOFT_VA_GAP (1ull << 20) /* unmapped gap after each allocation */

struct soft_kernel {
    char name[128];
    broker_soft_kernel_fn fn;
    uint32_t nparams;
    struct idm_param_desc params[SOFT_MAX_PARAMS];
};

static struct soft_kernel kernels[SOFT_MAX_KERNELS];
static unsigned nkernels;

int broker_soft_register(const char *name, broker_soft_kernel_fn fn, unsigned nparams,
                         const uint32_t *param_sizes)
{
    if (name == NULL || fn == NULL || nparams > SOFT_MAX_PARAMS || strlen(name) >= 128)
        return -EINVAL;
    if (nkernels == SOFT_MAX_KERNELS)
        return -ENOMEM;
    struct soft_kernel *k = &kernels[nkernels];
    strcpy(k->name, name);
    k->fn = fn;
    k->nparams = nparams;
    uint32_t off = 0;
    for (unsigned i = 0; i < nparams; i++) {
        uint32_t sz = param_sizes[i], al = sz >= 8 ? 8 : sz >= 4 ? 4 : sz >= 2 ? 2 : 1;
        off = (off + al - 1) & ~(al - 1);
        k->params[i].offset = off;
        k->params[i].size = sz;
        off += sz;
    }
    nkernels++;
    return 0;
}

struct soft_alloc {
    uint64_t dptr, size;
    uint8_t *host;
};

/* One per pod. lock guards allocs/nalloc/cap/next_va; sticky is atomic. */
struct soft_ctx {
    pthread_mutex_t lock;
    struct soft_alloc *allocs;
    size_t nalloc, cap;
    uint64_t next_va;
    _Atomic int sticky;
    /* CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES as set in this context (kernels are
     * shared by all contexts, their attributes are not): lock */
    int dyn_smem[SOFT_MAX_KERNELS];
};

struct soft_event {
    uint64_t t_ns;
    bool recorded;
    bool timing;
};

struct soft_mod {
    uint32_t n;
    uint32_t idx[SOFT_MAX_KERNELS];
};

static _Atomic uint64_t soft_in_use;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int soft_init(struct backend *be, const struct broker_config *cfg, struct idm_err *err)
{
    idm_log(IDM_LOG_WARN, "backend soft: THIS IS A SOFTWARE TEST DEVICE, NOT A GPU "
                          "(%u test kernels registered)", nkernels);
    return 0;
}

static void soft_fini(struct backend *be) {}

static int soft_device_info(struct backend *be, struct idm_hello *h)
{
    snprintf(h->device_name, sizeof h->device_name, "vgpu soft TEST DEVICE (not a GPU)");
    memcpy(h->uuid, "vgpu-soft-device", 16);
    h->total_mem = SOFT_TOTAL_MEM;
    h->driver_version = 13000;
    static const struct { int a, v; } attrs[] = {
        { CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 1024 },
        { CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X, 1024 }, { CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y, 1024 },
        { CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z, 64 }, { CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X, 2147483647 },
        { CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y, 65535 }, { CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z, 65535 },
        { CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK, 49152 },
        { CU_DEVICE_ATTRIBUTE_WARP_SIZE, 32 }, { CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 1 },
        { CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, 1 },
        { CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 9 },
        { CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0 },
        { 33, 0 }, { 34, 0 }, { 50, 0 }, /* PCI bus, device, domain: the driver check reads them */
    };
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        h->attrs[attrs[i].a] = attrs[i].v;
        h->attr_valid[attrs[i].a] = 1;
    }
    return CUDA_SUCCESS;
}

static int soft_ctx_create(struct backend *be, void **out)
{
    struct soft_ctx *c = calloc(1, sizeof *c);
    if (c == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    c->next_va = SOFT_VA_BASE;
    *out = c;
    return CUDA_SUCCESS;
}

static void soft_ctx_destroy(struct backend *be, void *ctx)
{
    struct soft_ctx *c = ctx;
    for (size_t i = 0; i < c->nalloc; i++) {
        atomic_fetch_sub(&soft_in_use, c->allocs[i].size);
        free(c->allocs[i].host);
    }
    free(c->allocs);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static int soft_ctx_bind(struct backend *be, void *ctx) { return CUDA_SUCCESS; }

static int sticky(void *ctx)
{
    return atomic_load(&((struct soft_ctx *)ctx)->sticky);
}

static int soft_ctx_sync(struct backend *be, void *ctx) { return sticky(ctx); }

static int soft_mem_alloc(struct backend *be, void *ctx, uint64_t size, uint64_t *dptr)
{
    struct soft_ctx *c = ctx;
    if (sticky(ctx))
        return sticky(ctx);
    if (size == 0 || size > SOFT_TOTAL_MEM || atomic_load(&soft_in_use) + size > SOFT_TOTAL_MEM)
        return CUDA_ERROR_OUT_OF_MEMORY;
    uint8_t *host = calloc(1, size);
    if (host == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_lock(&c->lock);
    if (c->nalloc == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        void *n = realloc(c->allocs, ncap * sizeof *c->allocs);
        if (n == NULL) {
            pthread_mutex_unlock(&c->lock);
            free(host);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        c->allocs = n;
        c->cap = ncap;
    }
    uint64_t va = c->next_va;
    c->next_va += (size + SOFT_VA_GAP + 0xffff) & ~0xffffull;
    c->allocs[c->nalloc++] = (struct soft_alloc){ va, size, host };
    pthread_mutex_unlock(&c->lock);
    atomic_fetch_add(&soft_in_use, size);
    *dptr = va;
    return CUDA_SUCCESS;
}

static int soft_mem_free(struct backend *be, void *ctx, uint64_t dptr)
{
    struct soft_ctx *c = ctx;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->nalloc; i++) {
        if (c->allocs[i].dptr == dptr) {
            struct soft_alloc a = c->allocs[i];
            c->allocs[i] = c->allocs[--c->nalloc];
            pthread_mutex_unlock(&c->lock);
            atomic_fetch_sub(&soft_in_use, a.size);
            free(a.host);
            return CUDA_SUCCESS;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return CUDA_ERROR_INVALID_VALUE;
}

static int soft_mem_info(struct backend *be, void *ctx, uint64_t *free_bytes, uint64_t *total)
{
    *total = SOFT_TOTAL_MEM;
    *free_bytes = SOFT_TOTAL_MEM - atomic_load(&soft_in_use);
    return CUDA_SUCCESS;
}

void *broker_soft_ptr(void *ctx, uint64_t dptr, uint64_t len)
{
    struct soft_ctx *c = ctx;
    void *p = NULL;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->nalloc; i++) {
        struct soft_alloc *a = &c->allocs[i];
        if (dptr >= a->dptr && dptr - a->dptr < a->size && len <= a->size - (dptr - a->dptr)) {
            p = a->host + (dptr - a->dptr);
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return p;
}

static int soft_htod(struct backend *be, void *ctx, uint64_t dst, const void *src, uint64_t n,
                     void *stream, bool wait)
{
    if (sticky(ctx))
        return sticky(ctx);
    void *d = broker_soft_ptr(ctx, dst, n);
    if (d == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    memcpy(d, src, n);
    return CUDA_SUCCESS;
}

static int soft_dtoh(struct backend *be, void *ctx, void *dst, uint64_t src, uint64_t n,
                     void *stream, bool wait)
{
    if (sticky(ctx))
        return sticky(ctx);
    void *s = broker_soft_ptr(ctx, src, n);
    if (s == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    memcpy(dst, s, n);
    return CUDA_SUCCESS;
}

static int soft_dtod(struct backend *be, void *ctx, uint64_t dst, uint64_t src, uint64_t n,
                     void *stream)
{
    if (sticky(ctx))
        return sticky(ctx);
    void *d = broker_soft_ptr(ctx, dst, n), *s = broker_soft_ptr(ctx, src, n);
    if (d == NULL || s == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    memmove(d, s, n);
    return CUDA_SUCCESS;
}

static int soft_memset(struct backend *be, void *ctx, uint64_t dst, uint32_t value, uint32_t elem,
                       uint64_t count, void *stream)
{
    if (sticky(ctx))
        return sticky(ctx);
    uint8_t *d = broker_soft_ptr(ctx, dst, count * elem);
    if (d == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    for (uint64_t i = 0; i < count; i++)
        memcpy(d + i * elem, &value, elem); /* little-endian: low bytes of value */
    return CUDA_SUCCESS;
}

static int soft_host_register(struct backend *be, void *ctx, void *p, uint64_t n) { return 0; }
static int soft_host_unregister(struct backend *be, void *ctx, void *p) { return 0; }

static int soft_module_load(struct backend *be, void *ctx, const void *image, uint64_t len,
                            void **out)
{
    struct soft_mod *m = calloc(1, sizeof *m);
    if (m == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    const char *s = image;
    for (uint64_t i = 0; i + 7 < len; i++) {
        if (memcmp(s + i, ".entry", 6) != 0 || (s[i + 6] != ' ' && s[i + 6] != '\t'))
            continue;
        uint64_t j = i + 6;
        while (j < len && (s[j] == ' ' || s[j] == '\t'))
            j++;
        uint64_t start = j;
        while (j < len && (s[j] == '_' || (s[j] >= '0' && s[j] <= '9') ||
                           ((s[j] | 0x20) >= 'a' && (s[j] | 0x20) <= 'z')))
            j++;
        for (unsigned k = 0; k < nkernels && m->n < SOFT_MAX_KERNELS; k++) {
            if (strlen(kernels[k].name) == j - start &&
                memcmp(kernels[k].name, s + start, j - start) == 0)
                m->idx[m->n++] = k;
        }
    }
    if (m->n == 0) {
        free(m);
        return CUDA_ERROR_INVALID_IMAGE;
    }
    *out = m;
    return CUDA_SUCCESS;
}

static int soft_module_unload(struct backend *be, void *ctx, void *mod)
{
    free(mod);
    return CUDA_SUCCESS;
}

static int soft_module_functions(struct backend *be, void *ctx, void *mod,
                                 struct be_func_info **out, uint32_t *n)
{
    struct soft_mod *m = mod;
    struct be_func_info *f = calloc(m->n, sizeof *f);
    if (f == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    for (uint32_t i = 0; i < m->n; i++) {
        struct soft_kernel *k = &kernels[m->idx[i]];
        f[i].name = strdup(k->name);
        f[i].fn = k;
        f[i].nparams = k->nparams;
        f[i].params = calloc(k->nparams ? k->nparams : 1, sizeof *f[i].params);
        if (f[i].name == NULL || f[i].params == NULL) {
            be_funcs_free(f, m->n);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        memcpy(f[i].params, k->params, k->nparams * sizeof *f[i].params);
    }
    *out = f;
    *n = m->n;
    return CUDA_SUCCESS;
}

static int soft_module_global(struct backend *be, void *ctx, void *mod, const char *name,
                              uint64_t *dptr, uint64_t *size)
{
    return CUDA_ERROR_NOT_FOUND;
}

static int soft_func_get_attr(struct backend *be, void *ctx, void *fn, int attr, int *value)
{
    struct soft_ctx *c = ctx;
    *value = attr == CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK ? 1024 : 0;
    if (attr == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
        pthread_mutex_lock(&c->lock);
        *value = c->dyn_smem[(struct soft_kernel *)fn - kernels];
        pthread_mutex_unlock(&c->lock);
    }
    return CUDA_SUCCESS;
}

static int soft_func_set_attr(struct backend *be, void *ctx, void *fn, int attr, int value)
{
    struct soft_ctx *c = ctx;
    if (attr == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
        if (value < 0 || value > 48 * 1024) /* the soft device's shared memory per block */
            return CUDA_ERROR_INVALID_VALUE;
        pthread_mutex_lock(&c->lock);
        c->dyn_smem[(struct soft_kernel *)fn - kernels] = value;
        pthread_mutex_unlock(&c->lock);
    }
    return CUDA_SUCCESS;
}

static int soft_launch(struct backend *be, void *ctx, void *fn, const uint32_t grid[3],
                       const uint32_t block[3], uint32_t shmem, void *stream, void **params)
{
    struct soft_ctx *c = ctx;
    struct soft_kernel *k = fn;
    if (sticky(ctx))
        return sticky(ctx);
    for (int i = 0; i < 3; i++)
        if (grid[i] == 0 || block[i] == 0)
            return CUDA_ERROR_INVALID_VALUE;
    if ((uint64_t)block[0] * block[1] * block[2] > 1024)
        return CUDA_ERROR_INVALID_VALUE;
    struct broker_soft_launch l = { .params = params, .ctx = ctx };
    memcpy(l.grid, grid, sizeof l.grid);
    memcpy(l.block, block, sizeof l.block);
    int rc = k->fn(&l);
    if (rc == CUDA_ERROR_ILLEGAL_ADDRESS || rc == CUDA_ERROR_LAUNCH_FAILED) {
        atomic_store(&c->sticky, rc);
        return CUDA_SUCCESS; /* reported at the next synchronizing call, as on a GPU */
    }
    return rc;
}

static int soft_stream_create(struct backend *be, void *ctx, uint32_t flags, int prio, void **s)
{
    *s = malloc(1);
    return *s ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

static int soft_stream_destroy(struct backend *be, void *ctx, void *s)
{
    free(s);
    return CUDA_SUCCESS;
}

static int soft_stream_query(struct backend *be, void *ctx, void *s) { return sticky(ctx); }
static int soft_stream_sync(struct backend *be, void *ctx, void *s) { return sticky(ctx); }
static int soft_stream_wait_event(struct backend *be, void *ctx, void *s, void *e, uint32_t fl)
{
    return sticky(ctx);
}

static int soft_event_create(struct backend *be, void *ctx, uint32_t flags, void **e)
{
    struct soft_event *ev = calloc(1, sizeof *ev);
    if (ev == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    ev->timing = !(flags & CU_EVENT_DISABLE_TIMING);
    *e = ev;
    return CUDA_SUCCESS;
}

static int soft_event_destroy(struct backend *be, void *ctx, void *e)
{
    free(e);
    return CUDA_SUCCESS;
}

static int soft_event_record(struct backend *be, void *ctx, void *e, void *s)
{
    struct soft_event *ev = e;
    ev->t_ns = now_ns();
    ev->recorded = true;
    return sticky(ctx);
}

static int soft_event_query(struct backend *be, void *ctx, void *e) { return sticky(ctx); }
static int soft_event_sync(struct backend *be, void *ctx, void *e) { return sticky(ctx); }

static int soft_event_elapsed(struct backend *be, void *ctx, void *a, void *b, float *ms)
{
    struct soft_event *x = a, *y = b;
    if (!x->recorded || !y->recorded || !x->timing || !y->timing)
        return CUDA_ERROR_INVALID_HANDLE;
    *ms = (float)((double)((int64_t)(y->t_ns - x->t_ns)) / 1e6);
    return sticky(ctx);
}

/* ---- runtime-API extras: the soft device runs everything in order, so stream-ordered memory
 * is plain memory; limits and the pool's attributes are remembered; occupancy is a simple model
 * (2048 threads and 228 KiB of shared memory per multiprocessor). No capture or graphs. ---- */

static int soft_mem_alloc_async(struct backend *be, void *ctx, uint64_t size, void *stream,
                                uint64_t *dptr)
{
    (void)stream;
    return soft_mem_alloc(be, ctx, size, dptr);
}

static int soft_mem_free_async(struct backend *be, void *ctx, uint64_t dptr, void *stream)
{
    (void)stream;
    return soft_mem_free(be, ctx, dptr);
}

/* Guarded by the channel's serialisation: one worker serves a pod's channel at a time, and the
 * soft device serves one pod per broker in the tests that use these. */
static _Atomic uint64_t soft_pool_attrs[9];
static _Atomic uint64_t soft_limits[7] = { 1024, 1u << 20, 8u << 20, 2, 2048, 32, 0 };

static int soft_pool_attr(struct backend *be, void *ctx, int attr, bool set, uint64_t *value)
{
    (void)be;
    (void)ctx;
    if (attr < 1 || attr > 8)
        return CUDA_ERROR_INVALID_VALUE;
    if (set)
        soft_pool_attrs[attr] = *value;
    else
        *value = soft_pool_attrs[attr];
    return CUDA_SUCCESS;
}

static int soft_ctx_limit(struct backend *be, void *ctx, int limit, bool set, uint64_t *value)
{
    (void)be;
    (void)ctx;
    if (limit < 0 || limit > 6)
        return CUDA_ERROR_UNSUPPORTED_LIMIT; /* as a driver answers limits it does not know */
    if (set)
        soft_limits[limit] = *value;
    else
        *value = soft_limits[limit];
    return CUDA_SUCCESS;
}

static int soft_occupancy(struct backend *be, void *ctx, void *fn,
                          const struct idm_occupancy_req *q, uint64_t *value)
{
    (void)be;
    (void)ctx;
    (void)fn;
    const uint64_t smem = 228u << 10;
    switch (q->kind) {
    case IDM_OCC_BLOCKS:
        if (q->block_size <= 0 || q->block_size > 1024)
            return CUDA_ERROR_INVALID_VALUE;
        *value = 2048 / (uint64_t)q->block_size;
        if (q->dyn_smem > 0 && smem / q->dyn_smem < *value)
            *value = smem / q->dyn_smem;
        return CUDA_SUCCESS;
    case IDM_OCC_DYN_SMEM:
        if (q->num_blocks <= 0)
            return CUDA_ERROR_INVALID_VALUE;
        *value = smem / (uint64_t)q->num_blocks;
        return CUDA_SUCCESS;
    case IDM_OCC_CLUSTERS:
    case IDM_OCC_CLUSTER_SIZE:
        *value = q->kind == IDM_OCC_CLUSTERS ? 16 : 8;
        return CUDA_SUCCESS;
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}

const struct backend_ops broker_backend_soft = {
    .name = "soft",
    .is_soft = true,
    .init = soft_init,
    .fini = soft_fini,
    .device_info = soft_device_info,
    .ctx_create = soft_ctx_create,
    .ctx_destroy = soft_ctx_destroy,
    .ctx_bind = soft_ctx_bind,
    .ctx_sync = soft_ctx_sync,
    .mem_alloc = soft_mem_alloc,
    .mem_free = soft_mem_free,
    .mem_info = soft_mem_info,
    .htod = soft_htod,
    .dtoh = soft_dtoh,
    .dtod = soft_dtod,
    .memset = soft_memset,
    .host_register = soft_host_register,
    .host_unregister = soft_host_unregister,
    .module_load = soft_module_load,
    .module_unload = soft_module_unload,
    .module_functions = soft_module_functions,
    .module_global = soft_module_global,
    .func_get_attr = soft_func_get_attr,
    .func_set_attr = soft_func_set_attr,
    .launch = soft_launch,
    .stream_create = soft_stream_create,
    .stream_destroy = soft_stream_destroy,
    .stream_query = soft_stream_query,
    .stream_sync = soft_stream_sync,
    .stream_wait_event = soft_stream_wait_event,
    .event_create = soft_event_create,
    .event_destroy = soft_event_destroy,
    .event_record = soft_event_record,
    .event_query = soft_event_query,
    .event_sync = soft_event_sync,
    .event_elapsed = soft_event_elapsed,
    .mem_alloc_async = soft_mem_alloc_async,
    .mem_free_async = soft_mem_free_async,
    .pool_attr = soft_pool_attr,
    .ctx_limit = soft_ctx_limit,
    .occupancy = soft_occupancy,
};
