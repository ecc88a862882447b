/* backend_cuda.c: the real GPU, through libcuda.so.1 opened with dlopen at run time (no link-time
 * dependency, so the broker builds on machines without CUDA). One CUDA context per pod; workers
 * bind it with cuCtxSetCurrent before serving a channel of that pod. */
#include "backend.h"
#define VGPU_CUDA_NO_API_MACROS
#include "vgpu_cuda.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* X(name in struct, exported ABI symbol, return, args) */
#define CUDA_FNS(X)                                                                            \
    X(init, "cuInit", (unsigned))                                                              \
    X(driver_version, "cuDriverGetVersion", (int *))                                           \
    X(device_get, "cuDeviceGet", (CUdevice *, int))                                            \
    X(device_name, "cuDeviceGetName", (char *, int, CUdevice))                                 \
    X(device_uuid, "cuDeviceGetUuid", (CUuuid *, CUdevice))                                    \
    X(device_mem, "cuDeviceTotalMem_v2", (size_t *, CUdevice))                                 \
    X(device_attr, "cuDeviceGetAttribute", (int *, int, CUdevice))                             \
    X(ctx_create, "cuCtxCreate_v2", (CUcontext *, unsigned, CUdevice))                         \
    X(ctx_destroy, "cuCtxDestroy_v2", (CUcontext))                                             \
    X(ctx_set, "cuCtxSetCurrent", (CUcontext))                                                 \
    X(ctx_pop, "cuCtxPopCurrent_v2", (CUcontext *))                                            \
    X(ctx_sync, "cuCtxSynchronize", (void))                                                    \
    X(mem_alloc, "cuMemAlloc_v2", (CUdeviceptr *, size_t))                                     \
    X(mem_free, "cuMemFree_v2", (CUdeviceptr))                                                 \
    X(mem_info, "cuMemGetInfo_v2", (size_t *, size_t *))                                       \
    X(htod, "cuMemcpyHtoD_v2", (CUdeviceptr, const void *, size_t))                            \
    X(dtoh, "cuMemcpyDtoH_v2", (void *, CUdeviceptr, size_t))                                  \
    X(htod_async, "cuMemcpyHtoDAsync_v2", (CUdeviceptr, const void *, size_t, CUstream))       \
    X(dtoh_async, "cuMemcpyDtoHAsync_v2", (void *, CUdeviceptr, size_t, CUstream))             \
    X(dtod_async, "cuMemcpyDtoDAsync_v2", (CUdeviceptr, CUdeviceptr, size_t, CUstream))        \
    X(memset8, "cuMemsetD8Async", (CUdeviceptr, unsigned char, size_t, CUstream))              \
    X(memset16, "cuMemsetD16Async", (CUdeviceptr, unsigned short, size_t, CUstream))           \
    X(memset32, "cuMemsetD32Async", (CUdeviceptr, unsigned int, size_t, CUstream))             \
    X(host_register, "cuMemHostRegister_v2", (void *, size_t, unsigned))                       \
    X(host_unregister, "cuMemHostUnregister", (void *))                                        \
    X(module_load, "cuModuleLoadData", (CUmodule *, const void *))                             \
    X(module_unload, "cuModuleUnload", (CUmodule))                                             \
    X(module_fcount, "cuModuleGetFunctionCount", (unsigned *, CUmodule))                       \
    X(module_fenum, "cuModuleEnumerateFunctions", (CUfunction *, unsigned, CUmodule))          \
    X(module_global, "cuModuleGetGlobal_v2", (CUdeviceptr *, size_t *, CUmodule, const char *)) \
    X(func_name, "cuFuncGetName", (const char **, CUfunction))                                 \
    X(func_param, "cuFuncGetParamInfo", (CUfunction, size_t, size_t *, size_t *))              \
    X(func_get_attr, "cuFuncGetAttribute", (int *, int, CUfunction))                           \
    X(func_set_attr, "cuFuncSetAttribute", (CUfunction, int, int))                             \
    X(launch, "cuLaunchKernel", (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, \
                                 unsigned, unsigned, CUstream, void **, void **))              \
    X(stream_create, "cuStreamCreateWithPriority", (CUstream *, unsigned, int))                \
    X(stream_destroy, "cuStreamDestroy_v2", (CUstream))                                        \
    X(stream_query, "cuStreamQuery", (CUstream))                                               \
    X(stream_sync, "cuStreamSynchronize", (CUstream))                                          \
    X(stream_wait_event, "cuStreamWaitEvent", (CUstream, CUevent, unsigned))                   \
    X(event_create, "cuEventCreate", (CUevent *, unsigned))                                    \
    X(event_destroy, "cuEventDestroy_v2", (CUevent))                                           \
    X(event_record, "cuEventRecord", (CUevent, CUstream))                                      \
    X(event_query, "cuEventQuery", (CUevent))                                                  \
    X(event_sync, "cuEventSynchronize", (CUevent))                                             \
    X(event_elapsed, "cuEventElapsedTime", (float *, CUevent, CUevent))

/* Needed only by the runtime-API, cuBLAS and PyTorch paths (dispatch_ext.c): a driver without
 * one of them still serves everything else (the operation answers CUDA_ERROR_NOT_SUPPORTED). */
#define CUDA_EXT_FNS(X)                                                                        \
    X(mem_alloc_async, "cuMemAllocAsync", (CUdeviceptr *, size_t, CUstream))                   \
    X(mem_free_async, "cuMemFreeAsync", (CUdeviceptr, CUstream))                               \
    X(default_pool, "cuDeviceGetDefaultMemPool", (void **, CUdevice))                          \
    X(pool_set, "cuMemPoolSetAttribute", (void *, int, void *))                                \
    X(pool_get, "cuMemPoolGetAttribute", (void *, int, void *))                                \
    X(limit_get, "cuCtxGetLimit", (size_t *, int))                                             \
    X(limit_set, "cuCtxSetLimit", (int, size_t))                                               \
    X(occ_blocks, "cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags",                      \
      (int *, CUfunction, int, size_t, unsigned))                                              \
    X(occ_smem, "cuOccupancyAvailableDynamicSMemPerBlock", (size_t *, CUfunction, int, int))   \
    X(occ_clusters, "cuOccupancyMaxActiveClusters", (int *, CUfunction, const CUlaunchConfig *)) \
    X(occ_cluster_size, "cuOccupancyMaxPotentialClusterSize",                                  \
      (int *, CUfunction, const CUlaunchConfig *))                                             \
    X(capture_begin, "cuStreamBeginCapture_v2", (CUstream, int))                               \
    X(capture_end, "cuStreamEndCapture", (CUstream, void **))                                  \
    X(capture_info, "cuStreamGetCaptureInfo_v2",                                               \
      (CUstream, int *, uint64_t *, void **, const void **, size_t *))                         \
    X(graph_instantiate, "cuGraphInstantiateWithFlags", (void **, void *, unsigned long long)) \
    X(graph_destroy, "cuGraphDestroy", (void *))                                               \
    X(graph_exec_destroy, "cuGraphExecDestroy", (void *))                                      \
    X(graph_nodes, "cuGraphGetNodes", (void *, void **, size_t *))                             \
    X(graph_launch, "cuGraphLaunch", (void *, CUstream))                                       \
    X(launch_ex, "cuLaunchKernelEx", (const CUlaunchConfig *, CUfunction, void **, void **))   \
    X(tmap_tiled, "cuTensorMapEncodeTiled",                                                    \
      (void *, int, uint32_t, void *, const uint64_t *, const uint64_t *, const uint32_t *,    \
       const uint32_t *, int, int, int, int))                                                  \
    X(tmap_im2col, "cuTensorMapEncodeIm2col",                                                  \
      (void *, int, uint32_t, void *, const uint64_t *, const uint64_t *, const int *,         \
       const int *, uint32_t, uint32_t, const uint32_t *, int, int, int, int))                 \
    X(tmap_replace, "cuTensorMapReplaceAddress", (void *, void *))                            \
    X(func_load, "cuFuncLoad", (CUfunction))

struct cuda_be {
    void *lib;
    CUdevice dev;
#define X(n, sym, args) CUresult(*n) args;
    CUDA_FNS(X)
    CUDA_EXT_FNS(X)
#undef X
};

#define CB(be) ((struct cuda_be *)(be)->priv)

static int cuda_init(struct backend *be, const struct broker_config *cfg, struct idm_err *err)
{
    const char *path = cfg->libcuda ? cfg->libcuda : "libcuda.so.1";
    struct cuda_be *c = calloc(1, sizeof *c);
    if (c == NULL)
        return idm_err_set(err, -ENOMEM, "backend cuda: out of memory");
    c->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (c->lib == NULL) {
        int rc = idm_err_set(err, -ENOENT, "backend cuda: dlopen %s: %s", path, dlerror());
        free(c);
        return rc;
    }
    /* dlsym returns void*; go through a union to keep -Wpedantic quiet about fn pointers. */
#define X(n, sym, args)                                                                        \
    {                                                                                          \
        void *p = dlsym(c->lib, sym);                                                          \
        if (p == NULL && strcmp(sym, "cuEventElapsedTime") == 0)                               \
            p = dlsym(c->lib, "cuEventElapsedTime_v2");                                        \
        if (p == NULL) {                                                                       \
            int rc = idm_err_set(err, -ENOENT, "backend cuda: %s: no symbol %s", path, sym);   \
            dlclose(c->lib);                                                                   \
            free(c);                                                                           \
            return rc;                                                                         \
        }                                                                                      \
        memcpy(&c->n, &p, sizeof p);                                                           \
    }
    CUDA_FNS(X)
#undef X
#define X(n, sym, args)                                                                        \
    {                                                                                          \
        void *p = dlsym(c->lib, sym);                                                          \
        memcpy(&c->n, &p, sizeof p);                                                           \
    }
    CUDA_EXT_FNS(X)
#undef X
    CUresult r = c->init(0);
    if (r == CUDA_SUCCESS)
        r = c->device_get(&c->dev, cfg->device);
    if (r != CUDA_SUCCESS) {
        dlclose(c->lib);
        free(c);
        return idm_err_set(err, -ENODEV, "backend cuda: cuInit/cuDeviceGet(%d): CUresult %d",
                           cfg->device, r);
    }
    be->priv = c;
    idm_log(IDM_LOG_INFO, "backend cuda: %s, device %d", path, cfg->device);
    return 0;
}

static void cuda_fini(struct backend *be)
{
    struct cuda_be *c = CB(be);
    if (c == NULL)
        return;
    dlclose(c->lib);
    free(c);
}

static int cuda_device_info(struct backend *be, struct idm_hello *h)
{
    struct cuda_be *c = CB(be);
    size_t mem = 0;
    int v = 0;
    CUresult r = c->device_name(h->device_name, (int)sizeof h->device_name - 1, c->dev);
    if (r == CUDA_SUCCESS)
        r = c->device_uuid((CUuuid *)h->uuid, c->dev);
    if (r == CUDA_SUCCESS)
        r = c->device_mem(&mem, c->dev);
    if (r == CUDA_SUCCESS)
        r = c->driver_version(&v);
    h->total_mem = mem;
    h->driver_version = v;
    for (int a = 1; r == CUDA_SUCCESS && a < IDM_ATTR_MAX; a++) {
        int val = 0;
        if (c->device_attr(&val, a, c->dev) == CUDA_SUCCESS) {
            h->attrs[a] = val;
            h->attr_valid[a] = 1;
        }
    }
    return r;
}

static int cuda_ctx_create(struct backend *be, void **out)
{
    struct cuda_be *c = CB(be);
    CUcontext ctx, popped;
    CUresult r = c->ctx_create(&ctx, CU_CTX_SCHED_AUTO, c->dev);
    if (r != CUDA_SUCCESS)
        return r;
    r = c->ctx_pop(&popped);
    if (r != CUDA_SUCCESS) {
        (void)c->ctx_destroy(ctx);
        return r;
    }
    *out = ctx;
    return CUDA_SUCCESS;
}

static void cuda_ctx_destroy(struct backend *be, void *ctx)
{
    CUresult r = CB(be)->ctx_destroy(ctx);
    if (r != CUDA_SUCCESS)
        idm_log(IDM_LOG_WARN, "backend cuda: cuCtxDestroy: CUresult %d", r);
    (void)CB(be)->ctx_set(NULL);
}

static int cuda_ctx_bind(struct backend *be, void *ctx) { return CB(be)->ctx_set(ctx); }
static int cuda_ctx_sync(struct backend *be, void *ctx) { return CB(be)->ctx_sync(); }

static int cuda_mem_alloc(struct backend *be, void *ctx, uint64_t size, uint64_t *dptr)
{
    CUdeviceptr p;
    CUresult r = CB(be)->mem_alloc(&p, size);
    if (r == CUDA_SUCCESS)
        *dptr = p;
    return r;
}

static int cuda_mem_free(struct backend *be, void *ctx, uint64_t dptr)
{
    return CB(be)->mem_free(dptr);
}

static int cuda_mem_info(struct backend *be, void *ctx, uint64_t *free_bytes, uint64_t *total)
{
    size_t f, t;
    CUresult r = CB(be)->mem_info(&f, &t);
    *free_bytes = f;
    *total = t;
    return r;
}

static int cuda_htod(struct backend *be, void *ctx, uint64_t dst, const void *src, uint64_t n,
                     void *stream, bool wait)
{
    if (wait && stream == NULL)
        return CB(be)->htod(dst, src, n); /* one driver call for the common case */
    CUresult r = CB(be)->htod_async(dst, src, n, stream);
    if (r == CUDA_SUCCESS && wait)
        r = CB(be)->stream_sync(stream);
    return r;
}

static int cuda_dtoh(struct backend *be, void *ctx, void *dst, uint64_t src, uint64_t n,
                     void *stream, bool wait)
{
    if (wait && stream == NULL)
        return CB(be)->dtoh(dst, src, n);
    CUresult r = CB(be)->dtoh_async(dst, src, n, stream);
    if (r == CUDA_SUCCESS && wait)
        r = CB(be)->stream_sync(stream);
    return r;
}

static int cuda_dtod(struct backend *be, void *ctx, uint64_t dst, uint64_t src, uint64_t n,
                     void *stream)
{
    return CB(be)->dtod_async(dst, src, n, stream);
}

static int cuda_memset(struct backend *be, void *ctx, uint64_t dst, uint32_t value, uint32_t elem,
                       uint64_t count, void *stream)
{
    switch (elem) {
    case 1: return CB(be)->memset8(dst, (unsigned char)value, count, stream);
    case 2: return CB(be)->memset16(dst, (unsigned short)value, count, stream);
    case 4: return CB(be)->memset32(dst, value, count, stream);
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

static int cuda_host_register(struct backend *be, void *ctx, void *p, uint64_t n)
{
    return CB(be)->host_register(p, n, 1 /* CU_MEMHOSTREGISTER_PORTABLE */);
}

static int cuda_host_unregister(struct backend *be, void *ctx, void *p)
{
    return CB(be)->host_unregister(p);
}

static int cuda_module_load(struct backend *be, void *ctx, const void *image, uint64_t len,
                            void **mod)
{
    CUmodule m;
    CUresult r = CB(be)->module_load(&m, image);
    if (r == CUDA_SUCCESS)
        *mod = m;
    return r;
}

static int cuda_module_unload(struct backend *be, void *ctx, void *mod)
{
    return CB(be)->module_unload(mod);
}

static int cuda_module_functions(struct backend *be, void *ctx, void *mod,
                                 struct be_func_info **out, uint32_t *nout)
{
    struct cuda_be *c = CB(be);
    unsigned n = 0;
    CUresult r = c->module_fcount(&n, mod);
    if (r != CUDA_SUCCESS)
        return r;
    CUfunction *fns = calloc(n ? n : 1, sizeof *fns);
    struct be_func_info *f = calloc(n ? n : 1, sizeof *f);
    if (fns == NULL || f == NULL) {
        free(fns);
        free(f);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    r = c->module_fenum(fns, n, mod);
    for (unsigned i = 0; r == CUDA_SUCCESS && i < n; i++) {
        const char *name = NULL;
        f[i].fn = fns[i];
        r = c->func_name(&name, fns[i]);
        if (r != CUDA_SUCCESS)
            break;
        f[i].name = strdup(name);
        uint32_t cap = 8;
        f[i].params = calloc(cap, sizeof *f[i].params);
        if (f[i].name == NULL || f[i].params == NULL) {
            r = CUDA_ERROR_OUT_OF_MEMORY;
            break;
        }
        for (size_t k = 0;; k++) {
            size_t off, sz;
            if (c->func_param(fns[i], k, &off, &sz) != CUDA_SUCCESS)
                break; /* past the last parameter */
            if (k == cap) {
                void *np = realloc(f[i].params, 2 * cap * sizeof *f[i].params);
                if (np == NULL) {
                    r = CUDA_ERROR_OUT_OF_MEMORY;
                    break;
                }
                f[i].params = np;
                cap *= 2;
            }
            f[i].params[k] = (struct idm_param_desc){ (uint32_t)off, (uint32_t)sz };
            f[i].nparams = (uint32_t)k + 1;
        }
    }
    free(fns);
    if (r != CUDA_SUCCESS) {
        be_funcs_free(f, n);
        return r;
    }
    *out = f;
    *nout = n;
    return CUDA_SUCCESS;
}

static int cuda_module_global(struct backend *be, void *ctx, void *mod, const char *name,
                              uint64_t *dptr, uint64_t *size)
{
    CUdeviceptr p;
    size_t sz;
    CUresult r = CB(be)->module_global(&p, &sz, mod, name);
    if (r == CUDA_SUCCESS) {
        *dptr = p;
        *size = sz;
    }
    return r;
}

/* With lazy loading (CUDA 12.2+ default) a function's attributes need the function loaded. */
#define CUDA_ERROR_FUNCTION_NOT_LOADED 913

static int cuda_func_get_attr(struct backend *be, void *ctx, void *fn, int attr, int *value)
{
    CUresult r = CB(be)->func_get_attr(value, attr, fn);
    if (r == CUDA_ERROR_FUNCTION_NOT_LOADED && CB(be)->func_load != NULL &&
        CB(be)->func_load(fn) == CUDA_SUCCESS)
        r = CB(be)->func_get_attr(value, attr, fn);
    return r;
}

static int cuda_func_set_attr(struct backend *be, void *ctx, void *fn, int attr, int value)
{
    CUresult r = CB(be)->func_set_attr(fn, attr, value);
    if (r == CUDA_ERROR_FUNCTION_NOT_LOADED && CB(be)->func_load != NULL &&
        CB(be)->func_load(fn) == CUDA_SUCCESS)
        r = CB(be)->func_set_attr(fn, attr, value);
    return r;
}

static int cuda_launch(struct backend *be, void *ctx, void *fn, const uint32_t g[3],
                       const uint32_t b[3], uint32_t shmem, void *stream, void **params)
{
    return CB(be)->launch(fn, g[0], g[1], g[2], b[0], b[1], b[2], shmem, stream, params, NULL);
}

static int cuda_stream_create(struct backend *be, void *ctx, uint32_t flags, int prio, void **s)
{
    CUstream st;
    CUresult r = CB(be)->stream_create(&st, flags, prio);
    if (r == CUDA_SUCCESS)
        *s = st;
    return r;
}

static int cuda_stream_destroy(struct backend *be, void *ctx, void *s)
{
    return CB(be)->stream_destroy(s);
}
static int cuda_stream_query(struct backend *be, void *ctx, void *s)
{
    return CB(be)->stream_query(s);
}
static int cuda_stream_sync(struct backend *be, void *ctx, void *s)
{
    return CB(be)->stream_sync(s);
}
static int cuda_stream_wait_event(struct backend *be, void *ctx, void *s, void *e, uint32_t fl)
{
    return CB(be)->stream_wait_event(s, e, fl);
}

static int cuda_event_create(struct backend *be, void *ctx, uint32_t flags, void **e)
{
    CUevent ev;
    CUresult r = CB(be)->event_create(&ev, flags);
    if (r == CUDA_SUCCESS)
        *e = ev;
    return r;
}

static int cuda_event_destroy(struct backend *be, void *ctx, void *e)
{
    return CB(be)->event_destroy(e);
}
static int cuda_event_record(struct backend *be, void *ctx, void *e, void *s)
{
    return CB(be)->event_record(e, s);
}
static int cuda_event_query(struct backend *be, void *ctx, void *e)
{
    return CB(be)->event_query(e);
}
static int cuda_event_sync(struct backend *be, void *ctx, void *e)
{
    return CB(be)->event_sync(e);
}
static int cuda_event_elapsed(struct backend *be, void *ctx, void *a, void *b, float *ms)
{
    return CB(be)->event_elapsed(ms, a, b);
}

/* ---- dispatch_ext.c's operations; each checks its optional symbol ---- */

#define NEED(fn)                                                                               \
    do {                                                                                       \
        if (CB(be)->fn == NULL)                                                                \
            return CUDA_ERROR_NOT_SUPPORTED;                                                   \
    } while (0)

static int cuda_mem_alloc_async(struct backend *be, void *ctx, uint64_t size, void *stream,
                                uint64_t *dptr)
{
    NEED(mem_alloc_async);
    CUdeviceptr p = 0;
    CUresult r = CB(be)->mem_alloc_async(&p, size, stream);
    *dptr = p;
    return r;
}

static int cuda_mem_free_async(struct backend *be, void *ctx, uint64_t dptr, void *stream)
{
    NEED(mem_free_async);
    return CB(be)->mem_free_async(dptr, stream);
}

static int cuda_pool_attr(struct backend *be, void *ctx, int attr, bool set, uint64_t *value)
{
    NEED(default_pool);
    NEED(pool_set);
    NEED(pool_get);
    void *pool = NULL;
    CUresult r = CB(be)->default_pool(&pool, CB(be)->dev);
    if (r != CUDA_SUCCESS)
        return r;
    if (attr <= 3) { /* int attributes */
        int v = (int)*value;
        r = set ? CB(be)->pool_set(pool, attr, &v) : CB(be)->pool_get(pool, attr, &v);
        *value = (uint64_t)v;
        return r;
    }
    uint64_t v = *value;
    r = set ? CB(be)->pool_set(pool, attr, &v) : CB(be)->pool_get(pool, attr, &v);
    *value = v;
    return r;
}

static int cuda_ctx_limit(struct backend *be, void *ctx, int limit, bool set, uint64_t *value)
{
    NEED(limit_get);
    NEED(limit_set);
    if (set)
        return CB(be)->limit_set(limit, *value);
    size_t v = 0;
    CUresult r = CB(be)->limit_get(&v, limit);
    *value = v;
    return r;
}

/* The launch configuration of a cluster query: grid, block, shared memory and the cluster's
 * shape and scheduling policy (the only attributes these queries read). */
static void occ_config(const struct idm_occupancy_req *q, CUlaunchConfig *cfg,
                       CUlaunchAttribute attrs[2])
{
    memset(cfg, 0, sizeof *cfg);
    memset(attrs, 0, 2 * sizeof *attrs);
    cfg->gridDimX = q->grid[0];
    cfg->gridDimY = q->grid[1];
    cfg->gridDimZ = q->grid[2];
    cfg->blockDimX = q->block[0];
    cfg->blockDimY = q->block[1];
    cfg->blockDimZ = q->block[2];
    cfg->sharedMemBytes = q->shmem;
    cfg->attrs = attrs;
    if (q->cluster[0] != 0) {
        attrs[cfg->numAttrs].id = 4; /* CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION */
        memcpy(attrs[cfg->numAttrs].value, q->cluster, sizeof q->cluster);
        cfg->numAttrs++;
    }
    if (q->cluster_policy != 0) {
        attrs[cfg->numAttrs].id = 5; /* CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE */
        memcpy(attrs[cfg->numAttrs].value, &q->cluster_policy, sizeof q->cluster_policy);
        cfg->numAttrs++;
    }
}

static int cuda_occupancy(struct backend *be, void *ctx, void *fn,
                          const struct idm_occupancy_req *q, uint64_t *value)
{
    struct cuda_be *c = CB(be);
    CUlaunchConfig cfg;
    CUlaunchAttribute attrs[2];
    int n = 0;
    size_t bytes = 0;
    CUresult r;
    switch (q->kind) {
    case IDM_OCC_BLOCKS:
        NEED(occ_blocks);
        if (c->func_load != NULL)
            (void)c->func_load(fn); /* lazy loading: the queries need the function loaded */
        r = c->occ_blocks(&n, fn, q->block_size, q->dyn_smem, q->flags);
        *value = (uint64_t)n;
        return r;
    case IDM_OCC_DYN_SMEM:
        NEED(occ_smem);
        if (c->func_load != NULL)
            (void)c->func_load(fn);
        r = c->occ_smem(&bytes, fn, q->num_blocks, q->block_size);
        *value = bytes;
        return r;
    case IDM_OCC_CLUSTERS:
    case IDM_OCC_CLUSTER_SIZE:
        NEED(occ_clusters);
        NEED(occ_cluster_size);
        if (c->func_load != NULL)
            (void)c->func_load(fn);
        occ_config(q, &cfg, attrs);
        r = q->kind == IDM_OCC_CLUSTERS ? c->occ_clusters(&n, fn, &cfg)
                                        : c->occ_cluster_size(&n, fn, &cfg);
        *value = (uint64_t)n;
        return r;
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}

static int cuda_capture_begin(struct backend *be, void *ctx, void *stream)
{
    NEED(capture_begin);
    return CB(be)->capture_begin(stream, 2 /* CU_STREAM_CAPTURE_MODE_RELAXED */);
}

static int cuda_capture_end(struct backend *be, void *ctx, void *stream, void **graph)
{
    NEED(capture_end);
    return CB(be)->capture_end(stream, graph);
}

static int cuda_capture_status(struct backend *be, void *ctx, void *stream, uint32_t *status,
                               uint64_t *id)
{
    NEED(capture_info);
    int st = 0;
    uint64_t cid = 0;
    CUresult r = CB(be)->capture_info(stream, &st, &cid, NULL, NULL, NULL);
    *status = (uint32_t)st;
    *id = cid;
    return r;
}

static int cuda_graph_instantiate(struct backend *be, void *ctx, void *graph, uint64_t flags,
                                  void **exec)
{
    NEED(graph_instantiate);
    return CB(be)->graph_instantiate(exec, graph, flags);
}

static int cuda_graph_destroy(struct backend *be, void *ctx, void *graph)
{
    NEED(graph_destroy);
    return CB(be)->graph_destroy(graph);
}

static int cuda_graph_exec_destroy(struct backend *be, void *ctx, void *exec)
{
    NEED(graph_exec_destroy);
    return CB(be)->graph_exec_destroy(exec);
}

static int cuda_graph_node_count(struct backend *be, void *ctx, void *graph, uint64_t *n)
{
    NEED(graph_nodes);
    size_t count = 0;
    CUresult r = CB(be)->graph_nodes(graph, NULL, &count);
    *n = count;
    return r;
}

static int cuda_graph_launch(struct backend *be, void *ctx, void *exec, void *stream)
{
    NEED(graph_launch);
    return CB(be)->graph_launch(exec, stream);
}

static int cuda_launch_ex(struct backend *be, void *ctx, void *fn, const uint32_t grid[3],
                          const uint32_t block[3], uint32_t shmem, void *stream, void **params,
                          const struct idm_launch_attr *attrs, uint32_t nattrs)
{
    NEED(launch_ex);
    CUlaunchAttribute a[IDM_LAUNCH_ATTRS];
    CUlaunchConfig cfg = { grid[0], grid[1], grid[2], block[0], block[1], block[2], shmem,
                           stream, a, nattrs };
    for (uint32_t i = 0; i < nattrs && i < IDM_LAUNCH_ATTRS; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].id = attrs[i].id;
        memcpy(a[i].value, attrs[i].value, sizeof a[i].value);
    }
    return CB(be)->launch_ex(&cfg, fn, params, NULL);
}

/* 128-byte, 64-byte-aligned CUtensorMap */
struct tmap {
    _Alignas(64) uint8_t b[128];
};

static int cuda_tensor_map(struct backend *be, void *ctx, const struct idm_tensor_map_req *r,
                           uint8_t map[128])
{
    struct cuda_be *c = CB(be);
    struct tmap m;
    CUresult rc;
    void *addr = (void *)(uintptr_t)r->address;
    switch (r->kind) {
    case IDM_TMAP_TILED:
        NEED(tmap_tiled);
        rc = c->tmap_tiled(&m, (int)r->dtype, r->rank, addr, r->dims, r->strides, r->box,
                           r->elem_strides, (int)r->interleave, (int)r->swizzle, (int)r->l2promo,
                           (int)r->oobfill);
        break;
    case IDM_TMAP_IM2COL:
        NEED(tmap_im2col);
        rc = c->tmap_im2col(&m, (int)r->dtype, r->rank, addr, r->dims, r->strides, r->lower,
                            r->upper, r->channels_per_pixel, r->pixels_per_column,
                            r->elem_strides, (int)r->interleave, (int)r->swizzle,
                            (int)r->l2promo, (int)r->oobfill);
        break;
    default:
        NEED(tmap_replace);
        memcpy(m.b, r->map, sizeof m.b);
        rc = c->tmap_replace(&m, addr);
        break;
    }
    if (rc == CUDA_SUCCESS)
        memcpy(map, m.b, sizeof m.b);
    return rc;
}

const struct backend_ops broker_backend_cuda = {
    .name = "cuda",
    .is_soft = false,
    .init = cuda_init,
    .fini = cuda_fini,
    .device_info = cuda_device_info,
    .ctx_create = cuda_ctx_create,
    .ctx_destroy = cuda_ctx_destroy,
    .ctx_bind = cuda_ctx_bind,
    .ctx_sync = cuda_ctx_sync,
    .mem_alloc = cuda_mem_alloc,
    .mem_free = cuda_mem_free,
    .mem_info = cuda_mem_info,
    .htod = cuda_htod,
    .dtoh = cuda_dtoh,
    .dtod = cuda_dtod,
    .memset = cuda_memset,
    .host_register = cuda_host_register,
    .host_unregister = cuda_host_unregister,
    .module_load = cuda_module_load,
    .module_unload = cuda_module_unload,
    .module_functions = cuda_module_functions,
    .module_global = cuda_module_global,
    .func_get_attr = cuda_func_get_attr,
    .func_set_attr = cuda_func_set_attr,
    .launch = cuda_launch,
    .stream_create = cuda_stream_create,
    .stream_destroy = cuda_stream_destroy,
    .stream_query = cuda_stream_query,
    .stream_sync = cuda_stream_sync,
    .stream_wait_event = cuda_stream_wait_event,
    .event_create = cuda_event_create,
    .event_destroy = cuda_event_destroy,
    .event_record = cuda_event_record,
    .event_query = cuda_event_query,
    .event_sync = cuda_event_sync,
    .event_elapsed = cuda_event_elapsed,
    .mem_alloc_async = cuda_mem_alloc_async,
    .mem_free_async = cuda_mem_free_async,
    .pool_attr = cuda_pool_attr,
    .ctx_limit = cuda_ctx_limit,
    .occupancy = cuda_occupancy,
    .capture_begin = cuda_capture_begin,
    .capture_end = cuda_capture_end,
    .capture_status = cuda_capture_status,
    .graph_instantiate = cuda_graph_instantiate,
    .graph_destroy = cuda_graph_destroy,
    .graph_exec_destroy = cuda_graph_exec_destroy,
    .graph_node_count = cuda_graph_node_count,
    .graph_launch = cuda_graph_launch,
    .launch_ex = cuda_launch_ex,
    .tensor_map = cuda_tensor_map,
};
