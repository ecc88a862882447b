/* dispatch_ext.c: the operations the CUDA runtime, cuBLAS and PyTorch need beyond the core set:
 * stream-ordered allocation (counted against the pod's quota and range-checked like cuMemAlloc),
 * the default memory pool's attributes, context limits, occupancy queries, stream capture and
 * graphs. Graphs and executable graphs are channel handles like streams; capture always runs in
 * relaxed mode, because a pod's requests may be served by different worker threads and the
 * stricter modes tie a capture to the thread that began it. */
#include "handles.h"
#include "internal.h"
#include "vgpu_cuda.h"

#include <errno.h>

/* Pool attributes (cuMemPoolSetAttribute): 1-3 are int, 4-8 are 64-bit; only 1-4 may be set. */
#define POOL_ATTR_MAX 8
#define POOL_ATTR_LAST_SETTABLE 4
/* Context limits may all be read (the driver answers the ones it does not know: CUDA 13 has
 * 0..9). Setting one reserves GPU memory outside the
 * pod's quota (stack per resident thread, printf FIFO, malloc heap) or touches the shared L2,
 * so only these may be set, up to these values: stack size, printf FIFO, malloc heap, L2 fetch
 * granularity. Other limits: CUDA_ERROR_NOT_PERMITTED. */
#define CTX_LIMIT_MAX 31
#define CTX_LIMIT_SETTABLE 6
static const uint64_t ctx_limit_set_max[CTX_LIMIT_SETTABLE + 1] = {
    [0] = 64u << 10, [1] = 64u << 20, [2] = 256u << 20, [5] = 128,
};
#define POOL_ATTR_RELEASE_THRESHOLD 4

static struct backend *BE(struct channel *c) { return &c->b->be; }
static void *CTX(struct channel *c) { return c->pod->ctx; }

static int op_alloc_async(struct channel *c, const struct idm_mem_async_req *r,
                          struct idm_mem_alloc_rep *rep)
{
    void *s;
    int rc = broker_get_stream(c, r->stream, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (r->value == 0)
        return CUDA_ERROR_INVALID_VALUE;
    if ((rc = broker_quota_take(c->pod, r->value)) != CUDA_SUCCESS)
        return rc;
    uint64_t dptr = 0;
    rc = BE(c)->ops->mem_alloc_async(BE(c), CTX(c), r->value, s, &dptr);
    if (rc == CUDA_SUCCESS && at_insert(&c->at, dptr, r->value, RANGE_ALLOC) < 0) {
        (void)BE(c)->ops->mem_free_async(BE(c), CTX(c), dptr, s);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (rc != CUDA_SUCCESS) {
        broker_quota_give(c->pod, r->value);
        return rc;
    }
    rep->dptr = dptr;
    return CUDA_SUCCESS;
}

static int op_free_async(struct channel *c, const struct idm_mem_async_req *r)
{
    void *s;
    uint64_t size;
    int rc = broker_get_stream(c, r->stream, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (!at_remove(&c->at, r->value, RANGE_ALLOC, &size))
        return CUDA_ERROR_INVALID_VALUE;
    rc = BE(c)->ops->mem_free_async(BE(c), CTX(c), r->value, s);
    broker_quota_give(c->pod, size);
    return rc;
}

static int op_occupancy(struct channel *c, const struct idm_occupancy_req *r, uint64_t *value)
{
    struct bfunc *f = ht_get(&c->ht, r->func, OBJ_FUNC);
    if (f == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    if (r->kind > IDM_OCC_CLUSTER_SIZE)
        return CUDA_ERROR_INVALID_VALUE;
    return BE(c)->ops->occupancy(BE(c), CTX(c), f->be, r, value);
}

static int op_capture(struct channel *c, const struct idm_capture_req *r,
                      struct idm_capture_rep *rep)
{
    void *s, *graph = NULL;
    int rc = broker_get_stream(c, r->stream, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    switch (r->kind) {
    case IDM_CAP_BEGIN:
        if (s == NULL)
            return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
        return BE(c)->ops->capture_begin(BE(c), CTX(c), s);
    case IDM_CAP_END:
        if (s == NULL)
            return CUDA_ERROR_ILLEGAL_STATE;
        rc = BE(c)->ops->capture_end(BE(c), CTX(c), s, &graph);
        if (rc != CUDA_SUCCESS || graph == NULL)
            return rc;
        rep->graph = ht_insert(&c->ht, OBJ_GRAPH, graph);
        if (rep->graph == 0) {
            (void)BE(c)->ops->graph_destroy(BE(c), CTX(c), graph);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        return CUDA_SUCCESS;
    case IDM_CAP_STATUS:
        return BE(c)->ops->capture_status(BE(c), CTX(c), s, &rep->status, &rep->id);
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}

static int op_graph(struct channel *c, const struct idm_graph_req *r, uint64_t *value)
{
    void *obj;
    int rc;
    switch (r->kind) {
    case IDM_GRAPH_INSTANTIATE: {
        void *exec = NULL;
        if ((obj = ht_get(&c->ht, r->handle, OBJ_GRAPH)) == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        rc = BE(c)->ops->graph_instantiate(BE(c), CTX(c), obj, r->flags, &exec);
        if (rc != CUDA_SUCCESS)
            return rc;
        if ((*value = ht_insert(&c->ht, OBJ_GRAPH_EXEC, exec)) == 0) {
            (void)BE(c)->ops->graph_exec_destroy(BE(c), CTX(c), exec);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        return CUDA_SUCCESS;
    }
    case IDM_GRAPH_DESTROY:
        if ((obj = ht_remove(&c->ht, r->handle, OBJ_GRAPH)) == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        return BE(c)->ops->graph_destroy(BE(c), CTX(c), obj);
    case IDM_GRAPH_EXEC_DESTROY:
        if ((obj = ht_remove(&c->ht, r->handle, OBJ_GRAPH_EXEC)) == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        return BE(c)->ops->graph_exec_destroy(BE(c), CTX(c), obj);
    case IDM_GRAPH_NODE_COUNT:
        if ((obj = ht_get(&c->ht, r->handle, OBJ_GRAPH)) == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        return BE(c)->ops->graph_node_count(BE(c), CTX(c), obj, value);
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
}

static int op_graph_launch(struct channel *c, const struct idm_graph_launch_req *r)
{
    void *s, *exec = ht_get(&c->ht, r->exec, OBJ_GRAPH_EXEC);
    if (exec == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    int rc = broker_get_stream(c, r->stream, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    c->st.launches++;
    return BE(c)->ops->graph_launch(BE(c), CTX(c), exec, s);
}

static int op_tensor_map(struct channel *c, const struct idm_tensor_map_req *r,
                         struct idm_tensor_map_rep *rep)
{
    if (r->kind > IDM_TMAP_REPLACE || (r->kind != IDM_TMAP_REPLACE && (r->rank < 1 || r->rank > 5)))
        return CUDA_ERROR_INVALID_VALUE;
    /* The descriptor lets the GPU's copy engine reach the address: only the pod's own memory. */
    if (at_find(&c->at, r->address, 1) == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (BE(c)->ops->tensor_map == NULL)
        return CUDA_ERROR_NOT_SUPPORTED;
    return BE(c)->ops->tensor_map(BE(c), CTX(c), r, rep->map);
}

/* Every backend entry of this file may be missing (an older driver): NOT_SUPPORTED then. */
static bool have_ops(const struct backend_ops *o, uint16_t op)
{
    switch (op) {
    case IDM_OP_MEM_ALLOC_ASYNC:
    case IDM_OP_MEM_FREE_ASYNC:
        return o->mem_alloc_async != NULL && o->mem_free_async != NULL;
    case IDM_OP_POOL_ATTR:
        return o->pool_attr != NULL;
    case IDM_OP_CTX_LIMIT:
        return o->ctx_limit != NULL;
    case IDM_OP_OCCUPANCY:
        return o->occupancy != NULL;
    case IDM_OP_TENSOR_MAP:
        return true; /* checks its arguments first (op_tensor_map) */
    default: /* capture and graphs come as a set */
        return o->capture_begin != NULL && o->capture_end != NULL && o->capture_status != NULL &&
               o->graph_instantiate != NULL && o->graph_destroy != NULL &&
               o->graph_exec_destroy != NULL && o->graph_node_count != NULL &&
               o->graph_launch != NULL;
    }
}

int broker_dispatch_ext(struct channel *c, uint16_t op, const void *req, uint8_t *body)
{
    if (op > IDM_OP_TENSOR_MAP || op == IDM_OP_LAUNCH_EX)
        return -EPROTO;
    if (!have_ops(BE(c)->ops, op))
        return CUDA_ERROR_NOT_SUPPORTED;
    switch (op) {
    case IDM_OP_MEM_ALLOC_ASYNC:
        return op_alloc_async(c, req, (struct idm_mem_alloc_rep *)body);
    case IDM_OP_MEM_FREE_ASYNC:
        return op_free_async(c, req);
    case IDM_OP_POOL_ATTR: {
        const struct idm_attr_req *r = req;
        if (r->which < 1 || r->which > POOL_ATTR_MAX ||
            (r->set && r->which > POOL_ATTR_LAST_SETTABLE))
            return CUDA_ERROR_INVALID_VALUE;
        uint64_t v = r->value;
        /* Memory a pool keeps after frees is not in the pod's count: with a quota, nothing is
         * kept (the threshold stays 0), so the quota holds. */
        if (r->set && r->which == POOL_ATTR_RELEASE_THRESHOLD && c->pod->quota_bytes != 0)
            v = 0;
        int rc = BE(c)->ops->pool_attr(BE(c), CTX(c), (int)r->which, r->set != 0, &v);
        ((struct idm_u64_rep *)body)->value = v;
        return rc;
    }
    case IDM_OP_CTX_LIMIT: {
        const struct idm_attr_req *r = req;
        if (r->which > CTX_LIMIT_MAX)
            return CUDA_ERROR_UNSUPPORTED_LIMIT;
        if (r->set && (r->which > CTX_LIMIT_SETTABLE || ctx_limit_set_max[r->which] == 0))
            return CUDA_ERROR_NOT_PERMITTED;
        if (r->set && r->value > ctx_limit_set_max[r->which])
            return CUDA_ERROR_INVALID_VALUE;
        uint64_t v = r->value;
        int rc = BE(c)->ops->ctx_limit(BE(c), CTX(c), (int)r->which, r->set != 0, &v);
        ((struct idm_u64_rep *)body)->value = v;
        return rc;
    }
    case IDM_OP_OCCUPANCY:
        return op_occupancy(c, req, &((struct idm_u64_rep *)body)->value);
    case IDM_OP_CAPTURE:
        return op_capture(c, req, (struct idm_capture_rep *)body);
    case IDM_OP_GRAPH:
        return op_graph(c, req, &((struct idm_u64_rep *)body)->value);
    case IDM_OP_GRAPH_LAUNCH:
        return op_graph_launch(c, req);
    case IDM_OP_TENSOR_MAP:
        return op_tensor_map(c, req, (struct idm_tensor_map_rep *)body);
    default:
        return -EPROTO;
    }
}
