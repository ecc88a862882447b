/* graph.c: what the CUDA runtime, cuBLAS and PyTorch call beyond the core Driver API: stream-
 * ordered memory and the device's default pool, context limits, occupancy queries, stream
 * capture and graphs. Each is one IDM message to the broker (broker/dispatch_ext.c); graph
 * launches and asynchronous frees are written to the ring without waiting. */
#include "shim.h"

#include <string.h>

CUresult cuDevicePrimaryCtxRelease(CUdevice);

/* The device's one memory pool as the pod sees it: the broker's default pool. */
static struct { uint32_t magic; } default_pool = { 0x504f4f4cu };

static bool valid_pool(CUmemoryPool pool)
{
    return pool == (CUmemoryPool)&default_pool;
}

static CUresult u64_call(uint16_t op, const void *req, size_t req_size, uint64_t *value)
{
    NEED_INIT();
    struct idm_u64_rep rep = { 0 };
    CUresult r = shim_call(op, req, req_size, NULL, 0, &rep, sizeof rep);
    if (r == CUDA_SUCCESS && value != NULL)
        *value = rep.value;
    return r;
}

/* ---- stream-ordered memory ---- */

SHIM_API CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream s)
{
    NEED_INIT();
    if (dptr == NULL || bytesize == 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_mem_async_req req = { bytesize, shim_stream(s) };
    struct idm_mem_alloc_rep rep = { 0 };
    CUresult r = shim_call(IDM_OP_MEM_ALLOC_ASYNC, &req, sizeof req, NULL, 0, &rep, sizeof rep);
    if (r == CUDA_SUCCESS)
        *dptr = rep.dptr;
    return r;
}

SHIM_API CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream s)
{
    NEED_INIT();
    struct idm_mem_async_req req = { dptr, shim_stream(s) };
    return shim_post(IDM_OP_MEM_FREE_ASYNC, 0, &req, sizeof req, NULL, 0);
}

SHIM_API CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *pool, CUdevice dev)
{
    NEED_INIT();
    if (pool == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    *pool = (CUmemoryPool)&default_pool;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuDeviceGetMemPool(CUmemoryPool *pool, CUdevice dev)
{
    return cuDeviceGetDefaultMemPool(pool, dev);
}

/* Attributes 1-3 are int, 4-8 64-bit (CUmemPool_attribute). */
static CUresult pool_attr(CUmemoryPool pool, int attr, void *value, bool set)
{
    if (!valid_pool(pool))
        return CUDA_ERROR_INVALID_HANDLE;
    if (value == NULL || attr < 1 || attr > 8)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_attr_req req = { (uint32_t)attr, set, 0 };
    if (set) {
        if (attr <= 3) {
            int v;
            memcpy(&v, value, sizeof v);
            req.value = (uint64_t)(int64_t)v;
        } else {
            memcpy(&req.value, value, sizeof req.value);
        }
    }
    uint64_t out = 0;
    CUresult r = u64_call(IDM_OP_POOL_ATTR, &req, sizeof req, &out);
    if (r == CUDA_SUCCESS && !set) {
        if (attr <= 3) {
            int v = (int)out;
            memcpy(value, &v, sizeof v);
        } else {
            memcpy(value, &out, sizeof out);
        }
    }
    return r;
}

SHIM_API CUresult cuMemPoolSetAttribute(CUmemoryPool pool, int attr, void *value)
{
    return pool_attr(pool, attr, value, true);
}

SHIM_API CUresult cuMemPoolGetAttribute(CUmemoryPool pool, int attr, void *value)
{
    return pool_attr(pool, attr, value, false);
}

/* ---- context limits ---- */

SHIM_API CUresult cuCtxGetLimit(size_t *value, int limit)
{
    if (value == NULL || limit < 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_attr_req req = { (uint32_t)limit, 0, 0 };
    uint64_t v = 0;
    CUresult r = u64_call(IDM_OP_CTX_LIMIT, &req, sizeof req, &v);
    if (r == CUDA_SUCCESS)
        *value = v;
    return r;
}

SHIM_API CUresult cuCtxSetLimit(int limit, size_t value)
{
    if (limit < 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_attr_req req = { (uint32_t)limit, 1, value };
    return u64_call(IDM_OP_CTX_LIMIT, &req, sizeof req, NULL);
}

/* ---- occupancy ---- */

static CUresult occupancy(struct idm_occupancy_req *req, CUfunction f, uint64_t *value)
{
    struct shim_func *fn = (struct shim_func *)f;
    if (fn == NULL || fn->magic != SHIM_FUNC_MAGIC)
        return CUDA_ERROR_INVALID_HANDLE;
    req->func = fn->handle;
    return shim_func_query(fn, IDM_OP_OCCUPANCY, req, sizeof *req, value);
}

SHIM_API CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *n, CUfunction f,
                                                                      int block_size,
                                                                      size_t dyn_smem,
                                                                      unsigned int flags)
{
    if (n == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_occupancy_req req = { .kind = IDM_OCC_BLOCKS, .flags = flags,
                                     .block_size = block_size, .dyn_smem = dyn_smem };
    uint64_t v = 0;
    CUresult r = occupancy(&req, f, &v);
    if (r == CUDA_SUCCESS)
        *n = (int)v;
    return r;
}

SHIM_API CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *n, CUfunction f, int block_size,
                                                              size_t dyn_smem)
{
    return cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(n, f, block_size, dyn_smem, 0);
}

SHIM_API CUresult cuOccupancyAvailableDynamicSMemPerBlock(size_t *bytes, CUfunction f,
                                                          int num_blocks, int block_size)
{
    if (bytes == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_occupancy_req req = { .kind = IDM_OCC_DYN_SMEM, .num_blocks = num_blocks,
                                     .block_size = block_size };
    uint64_t v = 0;
    CUresult r = occupancy(&req, f, &v);
    if (r == CUDA_SUCCESS)
        *bytes = v;
    return r;
}

/* The cluster queries read the grid, block, shared memory and the cluster attributes. */
static CUresult cluster_query(uint32_t kind, int *out, CUfunction f, const CUlaunchConfig *c)
{
    if (out == NULL || c == NULL || (c->numAttrs > 0 && c->attrs == NULL))
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_occupancy_req req = {
        .kind = kind,
        .grid = { c->gridDimX, c->gridDimY, c->gridDimZ },
        .block = { c->blockDimX, c->blockDimY, c->blockDimZ },
        .shmem = c->sharedMemBytes,
    };
    for (unsigned i = 0; i < c->numAttrs; i++) {
        if (c->attrs[i].id == 4) /* CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION */
            memcpy(req.cluster, c->attrs[i].value, sizeof req.cluster);
        else if (c->attrs[i].id == 5) /* ..._CLUSTER_SCHEDULING_POLICY_PREFERENCE */
            memcpy(&req.cluster_policy, c->attrs[i].value, sizeof req.cluster_policy);
    }
    uint64_t v = 0;
    CUresult r = occupancy(&req, f, &v);
    if (r == CUDA_SUCCESS)
        *out = (int)v;
    return r;
}

SHIM_API CUresult cuOccupancyMaxActiveClusters(int *n, CUfunction f, const CUlaunchConfig *c)
{
    return cluster_query(IDM_OCC_CLUSTERS, n, f, c);
}

SHIM_API CUresult cuOccupancyMaxPotentialClusterSize(int *n, CUfunction f, const CUlaunchConfig *c)
{
    return cluster_query(IDM_OCC_CLUSTER_SIZE, n, f, c);
}

/* ---- stream capture and graphs ---- */

/* Captures begun in this process and not ended. While there are none, every stream's capture
 * status is "none" and the shim answers status queries itself (PyTorch asks before most
 * allocations); otherwise the broker answers. A capture that ends in an unexpected way leaves
 * the count up: the broker then answers, which is only slower. */
static _Atomic int captures_open;
#define STATUS_NONE 0                   /* CU_STREAM_CAPTURE_STATUS_NONE */
#define ERROR_CAPTURE_INVALIDATED 901   /* CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: ended too */

static CUresult capture(uint32_t kind, CUstream s, struct idm_capture_rep *rep)
{
    NEED_INIT();
    if (kind == IDM_CAP_STATUS && atomic_load(&captures_open) == 0) {
        memset(rep, 0, sizeof *rep);
        rep->status = STATUS_NONE;
        return CUDA_SUCCESS;
    }
    struct idm_capture_req req = { shim_stream(s), kind, 0 };
    if (kind == IDM_CAP_BEGIN) /* counted first: a status asked meanwhile goes to the broker */
        atomic_fetch_add(&captures_open, 1);
    CUresult r = shim_call(IDM_OP_CAPTURE, &req, sizeof req, NULL, 0, rep, sizeof *rep);
    if ((kind == IDM_CAP_BEGIN && r != CUDA_SUCCESS) ||
        (kind == IDM_CAP_END && (r == CUDA_SUCCESS || r == ERROR_CAPTURE_INVALIDATED)))
        atomic_fetch_sub(&captures_open, 1);
    return r;
}

SHIM_API CUresult cuStreamBeginCapture_v2(CUstream s, int mode)
{
    (void)mode; /* the broker captures in relaxed mode (broker/dispatch_ext.c) */
    struct idm_capture_rep rep;
    return capture(IDM_CAP_BEGIN, s, &rep);
}

SHIM_API CUresult cuStreamBeginCapture(CUstream s)
{
    return cuStreamBeginCapture_v2(s, 0);
}

SHIM_API CUresult cuStreamEndCapture(CUstream s, CUgraph *graph)
{
    if (graph == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_capture_rep rep = { 0 };
    CUresult r = capture(IDM_CAP_END, s, &rep);
    if (r == CUDA_SUCCESS)
        *graph = (CUgraph)(uintptr_t)rep.graph;
    return r;
}

SHIM_API CUresult cuStreamIsCapturing(CUstream s, int *status)
{
    if (status == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_capture_rep rep = { 0 };
    CUresult r = capture(IDM_CAP_STATUS, s, &rep);
    if (r == CUDA_SUCCESS)
        *status = (int)rep.status;
    return r;
}

/* The capture's graph and dependency list stay in the broker: they are reported as absent. */
SHIM_API CUresult cuStreamGetCaptureInfo_v2(CUstream s, int *status, uint64_t *id, CUgraph *graph,
                                            const void **deps, size_t *ndeps)
{
    struct idm_capture_rep rep = { 0 };
    CUresult r = capture(IDM_CAP_STATUS, s, &rep);
    if (r != CUDA_SUCCESS)
        return r;
    if (status != NULL)
        *status = (int)rep.status;
    if (id != NULL)
        *id = rep.id;
    if (graph != NULL)
        *graph = NULL;
    if (deps != NULL)
        *deps = NULL;
    if (ndeps != NULL)
        *ndeps = 0;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuStreamGetCaptureInfo_v3(CUstream s, int *status, uint64_t *id, CUgraph *graph,
                                            const void **deps, const void **edges, size_t *ndeps)
{
    if (edges != NULL)
        *edges = NULL;
    return cuStreamGetCaptureInfo_v2(s, status, id, graph, deps, ndeps);
}

/* The capture mode only decides which calls a strict capture forbids; the broker captures in
 * relaxed mode, so the mode is kept per thread and reported back, as the driver does. */
static __thread int capture_mode;

SHIM_API CUresult cuThreadExchangeStreamCaptureMode(int *mode)
{
    if (mode == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    int old = capture_mode;
    capture_mode = *mode;
    *mode = old;
    return CUDA_SUCCESS;
}

/* Every stream of the process belongs to the pod's one context. */
SHIM_API CUresult cuStreamGetCtx(CUstream s, CUcontext *ctx)
{
    (void)s;
    NEED_INIT();
    if (ctx == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = cuCtxGetCurrent(ctx);
    if (r == CUDA_SUCCESS && *ctx == NULL && (r = cuDevicePrimaryCtxRetain(ctx, 0)) == CUDA_SUCCESS)
        (void)cuDevicePrimaryCtxRelease(0); /* only its handle is wanted: no reference kept */
    return r;
}

static CUresult graph_call(uint32_t kind, uint64_t handle, uint64_t flags, uint64_t *value)
{
    struct idm_graph_req req = { handle, flags, kind, 0 };
    return u64_call(IDM_OP_GRAPH, &req, sizeof req, value);
}

SHIM_API CUresult cuGraphInstantiateWithFlags(CUgraphExec *exec, CUgraph graph,
                                              unsigned long long flags)
{
    if (exec == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t h = 0;
    CUresult r = graph_call(IDM_GRAPH_INSTANTIATE, (uint64_t)(uintptr_t)graph, flags, &h);
    if (r == CUDA_SUCCESS)
        *exec = (CUgraphExec)(uintptr_t)h;
    return r;
}

SHIM_API CUresult cuGraphDestroy(CUgraph graph)
{
    return graph_call(IDM_GRAPH_DESTROY, (uint64_t)(uintptr_t)graph, 0, NULL);
}

SHIM_API CUresult cuGraphExecDestroy(CUgraphExec exec)
{
    return graph_call(IDM_GRAPH_EXEC_DESTROY, (uint64_t)(uintptr_t)exec, 0, NULL);
}

/* Node handles would be broker objects: only the count is answered. */
SHIM_API CUresult cuGraphGetNodes(CUgraph graph, void **nodes, size_t *count)
{
    if (count == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (nodes != NULL) {
        shim_unsupported("cuGraphGetNodes (node handles)");
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    uint64_t n = 0;
    CUresult r = graph_call(IDM_GRAPH_NODE_COUNT, (uint64_t)(uintptr_t)graph, 0, &n);
    if (r == CUDA_SUCCESS)
        *count = n;
    return r;
}

SHIM_API CUresult cuGraphLaunch(CUgraphExec exec, CUstream s)
{
    NEED_INIT();
    struct idm_graph_launch_req req = { (uint64_t)(uintptr_t)exec, shim_stream(s) };
    return shim_post(IDM_OP_GRAPH_LAUNCH, 0, &req, sizeof req, NULL, 0);
}

/* ---- Hopper TMA descriptors: encoded by the broker's driver (the format is the driver's) ---- */

static CUresult tensor_map(struct idm_tensor_map_req *req, void *map)
{
    NEED_INIT();
    if (map == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_tensor_map_rep rep;
    CUresult r = shim_call(IDM_OP_TENSOR_MAP, req, sizeof *req, NULL, 0, &rep, sizeof rep);
    if (r == CUDA_SUCCESS)
        memcpy(map, rep.map, sizeof rep.map);
    return r;
}

/* Copies what every encoding has: the element type and layout options, then the shape arrays
 * (rank checked first). */
static CUresult tensor_shape(struct idm_tensor_map_req *req, uint32_t kind, int dtype,
                             const int opts[4], uint32_t rank, void *address,
                             const uint64_t *dims, const uint64_t *strides,
                             const uint32_t *elem_strides)
{
    req->kind = kind;
    req->dtype = (uint32_t)dtype;
    req->interleave = (uint32_t)opts[0];
    req->swizzle = (uint32_t)opts[1];
    req->l2promo = (uint32_t)opts[2];
    req->oobfill = (uint32_t)opts[3];
    if (rank < 1 || rank > 5 || dims == NULL || elem_strides == NULL ||
        (rank > 1 && strides == NULL))
        return CUDA_ERROR_INVALID_VALUE;
    req->rank = rank;
    req->address = (uint64_t)(uintptr_t)address;
    memcpy(req->dims, dims, rank * sizeof *dims);
    if (rank > 1)
        memcpy(req->strides, strides, (rank - 1) * sizeof *strides);
    memcpy(req->elem_strides, elem_strides, rank * sizeof *elem_strides);
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuTensorMapEncodeTiled(void *map, int dtype, uint32_t rank, void *address,
                                         const uint64_t *dims, const uint64_t *strides,
                                         const uint32_t *box, const uint32_t *elem_strides,
                                         int interleave, int swizzle, int l2promo, int oobfill)
{
    struct idm_tensor_map_req req;
    memset(&req, 0, sizeof req);
    const int opts[4] = { interleave, swizzle, l2promo, oobfill };
    CUresult r = tensor_shape(&req, IDM_TMAP_TILED, dtype, opts, rank, address, dims, strides,
                              elem_strides);
    if (r != CUDA_SUCCESS || box == NULL)
        return r != CUDA_SUCCESS ? r : CUDA_ERROR_INVALID_VALUE;
    memcpy(req.box, box, rank * sizeof *box);
    return tensor_map(&req, map);
}

SHIM_API CUresult cuTensorMapEncodeIm2col(void *map, int dtype, uint32_t rank, void *address,
                                          const uint64_t *dims, const uint64_t *strides,
                                          const int *lower, const int *upper,
                                          uint32_t channels_per_pixel, uint32_t pixels_per_column,
                                          const uint32_t *elem_strides, int interleave,
                                          int swizzle, int l2promo, int oobfill)
{
    struct idm_tensor_map_req req;
    memset(&req, 0, sizeof req);
    const int opts[4] = { interleave, swizzle, l2promo, oobfill };
    CUresult r = tensor_shape(&req, IDM_TMAP_IM2COL, dtype, opts, rank, address, dims, strides,
                              elem_strides);
    if (r != CUDA_SUCCESS || rank < 3 || lower == NULL || upper == NULL)
        return r != CUDA_SUCCESS ? r : CUDA_ERROR_INVALID_VALUE;
    req.channels_per_pixel = channels_per_pixel;
    req.pixels_per_column = pixels_per_column;
    memcpy(req.lower, lower, (rank - 2) * sizeof *lower);
    memcpy(req.upper, upper, (rank - 2) * sizeof *upper);
    return tensor_map(&req, map);
}

SHIM_API CUresult cuTensorMapReplaceAddress(void *map, void *address)
{
    struct idm_tensor_map_req req;
    memset(&req, 0, sizeof req);
    if (map == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    req.kind = IDM_TMAP_REPLACE;
    req.address = (uint64_t)(uintptr_t)address;
    memcpy(req.map, map, sizeof req.map);
    return tensor_map(&req, map);
}
