/* dispatch.c: serving one IDM request. Every request is copied out of shared memory before it
 * is decoded (the client can change the ring under us), every handle is looked up in the
 * channel's own table, and every device pointer of a copy, memset, free or range query must lie
 * inside one of the channel's own allocations. Malformed messages close the channel (negative
 * return); bad arguments are CUDA errors in the reply, or deferred to the next synchronizing
 * call for asynchronous operations, as CUDA does. */
#include "handles.h"
#include "internal.h"
#include "vgpu_cuda.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define REP_HDR (sizeof(struct idm_msg) + sizeof(struct idm_rep))
#define MAX_HOST_SEG (64ull << 30)
#define SMALL_COPY 65536

struct bseg {
    uint8_t *p;
    uint64_t size;
};

union req {
    struct idm_hello_req hello;
    struct idm_mem_alloc_req alloc;
    struct idm_dptr_req dptr;
    struct idm_htod_req htod;
    struct idm_dtoh_req dtoh;
    struct idm_dtod_req dtod;
    struct idm_memset_req memset;
    struct idm_host_reg_req hreg;
    struct idm_handle_req h;
    struct idm_seg_copy_req seg;
    struct idm_module_load_req ml;
    struct idm_module_stage_req ms;
    struct idm_module_funcs_req mf;
    struct idm_module_global_req mg;
    struct idm_func_attr_req fa;
    struct idm_launch_req launch;
    struct idm_stream_create_req sc;
    struct idm_stream_event_req se;
    struct idm_event_create_req ec;
    struct idm_event_pair_req ep;
    struct idm_mem_async_req ma;
    struct idm_attr_req attr;
    struct idm_occupancy_req occ;
    struct idm_capture_req cap;
    struct idm_graph_req graph;
    struct idm_graph_launch_req gl;
    struct idm_launch_ex_req launch_ex;
    struct idm_tensor_map_req tmap;
};

bool broker_sticky_error(int e)
{
    return e == CUDA_ERROR_ILLEGAL_ADDRESS || e == CUDA_ERROR_LAUNCH_FAILED ||
           (e >= 714 && e <= 718) || e == CUDA_ERROR_UNKNOWN;
}

static struct backend *BE(struct channel *c) { return &c->b->be; }
static void *CTX(struct channel *c) { return c->pod->ctx; }

static int check_range(struct channel *c, uint64_t p, uint64_t len)
{
    return at_find(&c->at, p, len) != NULL ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

int broker_get_stream(struct channel *c, uint64_t h, void **s)
{
    *s = NULL;
    if (h == 0)
        return CUDA_SUCCESS;
    *s = ht_get(&c->ht, h, OBJ_STREAM);
    return *s != NULL ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

uint8_t *broker_scratch(struct channel *c, size_t n)
{
    if (n + 16 > c->scratch_cap) {
        size_t cap = n + 16 > 4096 ? n + 16 : 4096;
        void *p = realloc(c->scratch, cap);
        if (p == NULL)
            return NULL;
        c->scratch = p;
        c->scratch_cap = cap;
    }
    return c->scratch;
}

int broker_quota_take(struct pod *pod, uint64_t size)
{
    uint64_t total;
    pthread_mutex_lock(&pod->lock);
    if (__builtin_add_overflow(pod->usage.mem_in_use, size, &total) ||
        (pod->quota_bytes != 0 && total > pod->quota_bytes)) {
        pthread_mutex_unlock(&pod->lock);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    pod->usage.mem_in_use = total;
    if (total > pod->usage.mem_peak)
        pod->usage.mem_peak = total;
    pthread_mutex_unlock(&pod->lock);
    return CUDA_SUCCESS;
}

void broker_quota_give(struct pod *pod, uint64_t size)
{
    pthread_mutex_lock(&pod->lock);
    pod->usage.mem_in_use -= size;
    pthread_mutex_unlock(&pod->lock);
}

static int op_mem_alloc(struct channel *c, uint64_t size, struct idm_mem_alloc_rep *rep)
{
    if (size == 0)
        return CUDA_ERROR_INVALID_VALUE;
    int rc = broker_quota_take(c->pod, size);
    if (rc != CUDA_SUCCESS)
        return rc;
    uint64_t dptr = 0;
    rc = BE(c)->ops->mem_alloc(BE(c), CTX(c), size, &dptr);
    if (rc == CUDA_SUCCESS && at_insert(&c->at, dptr, size, RANGE_ALLOC) < 0) {
        (void)BE(c)->ops->mem_free(BE(c), CTX(c), dptr);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (rc != CUDA_SUCCESS) {
        broker_quota_give(c->pod, size);
        return rc;
    }
    rep->dptr = dptr;
    return CUDA_SUCCESS;
}

static int op_mem_free(struct channel *c, uint64_t dptr)
{
    uint64_t size;
    if (!at_remove(&c->at, dptr, RANGE_ALLOC, &size))
        return CUDA_ERROR_INVALID_VALUE;
    int rc = BE(c)->ops->mem_free(BE(c), CTX(c), dptr);
    broker_quota_give(c->pod, size);
    return rc;
}

static int op_mem_info(struct channel *c, struct idm_mem_info_rep *rep)
{
    uint64_t f = 0, t = 0;
    int rc = BE(c)->ops->mem_info(BE(c), CTX(c), &f, &t);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (c->pod->quota_bytes != 0) {
        pthread_mutex_lock(&c->pod->lock);
        uint64_t left = c->pod->quota_bytes - c->pod->usage.mem_in_use;
        pthread_mutex_unlock(&c->pod->lock);
        t = c->pod->quota_bytes;
        f = left < f ? left : f;
    }
    rep->free_bytes = f;
    rep->total_bytes = t;
    return CUDA_SUCCESS;
}

/* Launch attributes that carry only values (no pointer, event or graph handle) may pass:
 * cooperative, synchronization policy, cluster dimension and scheduling policy, programmatic
 * stream serialization, priority, memory sync domain (map), preferred cluster dimension, shared
 * memory carveout. Attribute 0 is "ignore". */
static bool launch_attr_allowed(int32_t id)
{
    return id == 0 || id == 2 || id == 3 || id == 4 || id == 5 || id == 6 || id == 8 ||
           id == 9 || id == 10 || id == 11 || id == 14;
}

static int op_launch(struct channel *c, uint16_t op, const union req *u, const uint8_t *payload,
                     size_t payload_max)
{
    const struct idm_launch_req *l = &u->launch;
    if (l->param_len > payload_max)
        return -EPROTO;
    struct bfunc *f = ht_get(&c->ht, l->func, OBJ_FUNC);
    if (f == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    if (l->param_len != f->param_size)
        return CUDA_ERROR_INVALID_VALUE;
    uint32_t nattrs = op == IDM_OP_LAUNCH_EX ? u->launch_ex.nattrs : 0;
    if (nattrs > IDM_LAUNCH_ATTRS)
        return CUDA_ERROR_INVALID_VALUE;
    for (uint32_t i = 0; i < nattrs; i++)
        if (!launch_attr_allowed(u->launch_ex.attrs[i].id))
            return CUDA_ERROR_NOT_SUPPORTED;
    void *s;
    int rc = broker_get_stream(c, l->stream, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    uint8_t *buf = broker_scratch(c, l->param_len);
    if (buf == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    memcpy(buf, payload, l->param_len);
    for (uint32_t i = 0; i < f->nparams; i++)
        f->argv[i] = buf + f->params[i].offset;
    c->st.launches++;
    if (nattrs > 0 && BE(c)->ops->launch_ex != NULL)
        return BE(c)->ops->launch_ex(BE(c), CTX(c), f->be, l->grid, l->block, l->shmem, s,
                                     f->argv, u->launch_ex.attrs, nattrs);
    return BE(c)->ops->launch(BE(c), CTX(c), f->be, l->grid, l->block, l->shmem, s, f->argv);
}

static int op_host_reg(struct channel *c, uint64_t size, struct idm_handle_rep *rep)
{
    int fd;
    if (idm_local_recv_fd(c->ic, &fd) < 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);
    /* The client must not be able to shrink the segment under our mapping (SIGBUS). */
    if (size == 0 || size > MAX_HOST_SEG || seals < 0 || !(seals & F_SEAL_SHRINK) ||
        fstat(fd, &st) < 0 || (uint64_t)st.st_size < size) {
        close(fd);
        return CUDA_ERROR_INVALID_VALUE;
    }
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return CUDA_ERROR_OUT_OF_MEMORY;
    struct bseg *s = calloc(1, sizeof *s);
    int rc = s ? BE(c)->ops->host_register(BE(c), CTX(c), p, size) : CUDA_ERROR_OUT_OF_MEMORY;
    uint64_t h = 0;
    if (rc == CUDA_SUCCESS) {
        s->p = p;
        s->size = size;
        h = ht_insert(&c->ht, OBJ_SEG, s);
        if (h == 0) {
            (void)BE(c)->ops->host_unregister(BE(c), CTX(c), p);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    if (rc != CUDA_SUCCESS) {
        free(s);
        munmap(p, size);
        return rc;
    }
    rep->handle = h;
    return CUDA_SUCCESS;
}

static void free_seg(struct channel *c, struct bseg *s)
{
    (void)BE(c)->ops->host_unregister(BE(c), CTX(c), s->p);
    munmap(s->p, s->size);
    free(s);
}

static int op_seg_copy(struct channel *c, const struct idm_seg_copy_req *r, bool wait)
{
    struct bseg *s = ht_get(&c->ht, r->seg, OBJ_SEG);
    if (s == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    void *st;
    int rc = broker_get_stream(c, r->stream, &st);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (r->len == 0)
        return CUDA_SUCCESS;
    if (r->seg_off >= s->size || r->len > s->size - r->seg_off ||
        check_range(c, r->dptr, r->len) != CUDA_SUCCESS)
        return CUDA_ERROR_INVALID_VALUE;
    if (r->dir == IDM_SEG_HTOD) {
        c->st.bytes_htod += r->len;
        return BE(c)->ops->htod(BE(c), CTX(c), r->dptr, s->p + r->seg_off, r->len, st, wait);
    }
    if (r->dir == IDM_SEG_DTOH) {
        c->st.bytes_dtoh += r->len;
        return BE(c)->ops->dtoh(BE(c), CTX(c), s->p + r->seg_off, r->dptr, r->len, st, wait);
    }
    return CUDA_ERROR_INVALID_VALUE;
}

static int op_memset(struct channel *c, const struct idm_memset_req *r)
{
    uint64_t bytes;
    void *s;
    if (r->elem != 1 && r->elem != 2 && r->elem != 4)
        return CUDA_ERROR_INVALID_VALUE;
    if (__builtin_mul_overflow(r->count, (uint64_t)r->elem, &bytes))
        return CUDA_ERROR_INVALID_VALUE;
    int rc = broker_get_stream(c, r->stream, &s);
    if (rc != CUDA_SUCCESS || bytes == 0)
        return rc;
    if (check_range(c, r->dst, bytes) != CUDA_SUCCESS || r->dst % r->elem != 0)
        return CUDA_ERROR_INVALID_VALUE;
    return BE(c)->ops->memset(BE(c), CTX(c), r->dst, r->value, r->elem, r->count, s);
}

static int op_new_handle(struct channel *c, int type, void *obj, int rc, struct idm_handle_rep *rep)
{
    if (rc != CUDA_SUCCESS)
        return rc;
    rep->handle = ht_insert(&c->ht, type, obj);
    if (rep->handle == 0) {
        if (type == OBJ_STREAM)
            (void)BE(c)->ops->stream_destroy(BE(c), CTX(c), obj);
        else
            (void)BE(c)->ops->event_destroy(BE(c), CTX(c), obj);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    return CUDA_SUCCESS;
}

/* Hello, memory and copies. Returns a CUresult, or negative: protocol violation. */
static int handle_mem(struct channel *c, const struct idm_msg *hdr, const union req *u,
                      const uint8_t *payload, size_t payload_max, uint8_t *body, size_t cap,
                      size_t *rlen)
{
    struct backend *be = BE(c);
    void *ctx = CTX(c), *s;
    int rc;
    switch (hdr->op) {
    case IDM_OP_HELLO:
        ((struct idm_hello_rep *)body)->version = IDM_PROTO_VERSION;
        if (u->hello.version != IDM_PROTO_VERSION)
            return CUDA_ERROR_NOT_SUPPORTED;
        c->hello_done = true;
        return CUDA_SUCCESS;
    case IDM_OP_CTX_SYNC:
        return be->ops->ctx_sync(be, ctx);
    case IDM_OP_MEM_ALLOC:
        return op_mem_alloc(c, u->alloc.size, (struct idm_mem_alloc_rep *)body);
    case IDM_OP_MEM_FREE:
        return op_mem_free(c, u->dptr.dptr);
    case IDM_OP_MEM_GET_INFO:
        return op_mem_info(c, (struct idm_mem_info_rep *)body);
    case IDM_OP_MEM_RANGE: {
        const struct arange *r = at_find(&c->at, u->dptr.dptr, 1);
        if (r == NULL)
            return CUDA_ERROR_NOT_FOUND;
        ((struct idm_mem_range_rep *)body)->base = r->base;
        ((struct idm_mem_range_rep *)body)->size = r->size;
        return CUDA_SUCCESS;
    }
    case IDM_OP_HTOD:
        if (u->htod.len > payload_max)
            return -EPROTO;
        if ((rc = broker_get_stream(c, u->htod.stream, &s)) != CUDA_SUCCESS || u->htod.len == 0)
            return rc;
        if (check_range(c, u->htod.dst, u->htod.len) != CUDA_SUCCESS)
            return CUDA_ERROR_INVALID_VALUE;
        c->st.bytes_htod += u->htod.len;
        if (u->htod.len <= SMALL_COPY) {
            /* Small copies: from private pageable memory the driver takes its fast path
             * (measured: faster than a synchronous copy from the pinned ring). */
            uint8_t *buf = broker_scratch(c, u->htod.len);
            if (buf == NULL)
                return CUDA_ERROR_OUT_OF_MEMORY;
            memcpy(buf, payload, u->htod.len);
            payload = buf;
        }
        return be->ops->htod(be, ctx, u->htod.dst, payload, u->htod.len, s, true);
    case IDM_OP_DTOH:
        if (u->dtoh.len > cap - sizeof(struct idm_dtoh_rep))
            return CUDA_ERROR_INVALID_VALUE;
        if ((rc = broker_get_stream(c, u->dtoh.stream, &s)) != CUDA_SUCCESS)
            return rc;
        if (u->dtoh.len > 0 && check_range(c, u->dtoh.src, u->dtoh.len) != CUDA_SUCCESS)
            return CUDA_ERROR_INVALID_VALUE;
        if (u->dtoh.len > 0 &&
            (rc = be->ops->dtoh(be, ctx, body + sizeof(struct idm_dtoh_rep), u->dtoh.src,
                                u->dtoh.len, s, true)) != CUDA_SUCCESS)
            return rc;
        ((struct idm_dtoh_rep *)body)->len = u->dtoh.len;
        *rlen = sizeof(struct idm_dtoh_rep) + u->dtoh.len;
        c->st.bytes_dtoh += u->dtoh.len;
        return CUDA_SUCCESS;
    case IDM_OP_DTOD:
        if ((rc = broker_get_stream(c, u->dtod.stream, &s)) != CUDA_SUCCESS || u->dtod.len == 0)
            return rc;
        if (check_range(c, u->dtod.dst, u->dtod.len) != CUDA_SUCCESS ||
            check_range(c, u->dtod.src, u->dtod.len) != CUDA_SUCCESS)
            return CUDA_ERROR_INVALID_VALUE;
        return be->ops->dtod(be, ctx, u->dtod.dst, u->dtod.src, u->dtod.len, s);
    case IDM_OP_MEMSET:
        return op_memset(c, &u->memset);
    case IDM_OP_HOST_REG:
        return op_host_reg(c, u->hreg.size, (struct idm_handle_rep *)body);
    case IDM_OP_HOST_UNREG: {
        struct bseg *sg = ht_remove(&c->ht, u->h.handle, OBJ_SEG);
        if (sg == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        rc = be->ops->ctx_sync(be, ctx); /* no DMA in flight when it is unmapped */
        free_seg(c, sg);
        return rc;
    }
    case IDM_OP_SEG_COPY:
        return op_seg_copy(c, &u->seg, (hdr->flags & IDM_F_SYNC) != 0);
    default:
        return -EPROTO;
    }
}

/* Modules, functions, launches, streams and events. Same return convention. */
static int handle_exec(struct channel *c, const struct idm_msg *hdr, const union req *u,
                       const uint8_t *payload, size_t payload_max, uint8_t *body, size_t cap,
                       size_t *rlen)
{
    struct backend *be = BE(c);
    void *ctx = CTX(c), *s, *e, *e2;
    int rc;
    switch (hdr->op) {
    case IDM_OP_FUNC_GET_ATTR:
    case IDM_OP_FUNC_SET_ATTR: {
        struct bfunc *f = ht_get(&c->ht, u->fa.func, OBJ_FUNC);
        if (f == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        if (hdr->op == IDM_OP_FUNC_SET_ATTR)
            return be->ops->func_set_attr(be, ctx, f->be, u->fa.attr, u->fa.value);
        int v = 0;
        rc = be->ops->func_get_attr(be, ctx, f->be, u->fa.attr, &v);
        ((struct idm_func_attr_rep *)body)->value = v;
        return rc;
    }
    case IDM_OP_LAUNCH:
    case IDM_OP_LAUNCH_EX:
        return op_launch(c, hdr->op, u, payload, payload_max);
    case IDM_OP_STREAM_CREATE:
        rc = be->ops->stream_create(be, ctx, u->sc.flags, u->sc.priority, &s);
        return op_new_handle(c, OBJ_STREAM, s, rc, (struct idm_handle_rep *)body);
    case IDM_OP_STREAM_DESTROY:
        if ((s = ht_remove(&c->ht, u->h.handle, OBJ_STREAM)) == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        return be->ops->stream_destroy(be, ctx, s);
    case IDM_OP_STREAM_QUERY:
    case IDM_OP_STREAM_SYNC:
        if ((rc = broker_get_stream(c, u->h.handle, &s)) != CUDA_SUCCESS)
            return rc;
        return hdr->op == IDM_OP_STREAM_SYNC ? be->ops->stream_sync(be, ctx, s)
                                             : be->ops->stream_query(be, ctx, s);
    case IDM_OP_STREAM_WAIT_EVENT:
        if ((rc = broker_get_stream(c, u->se.stream, &s)) != CUDA_SUCCESS)
            return rc;
        if ((e = ht_get(&c->ht, u->se.event, OBJ_EVENT)) == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        return be->ops->stream_wait_event(be, ctx, s, e, u->se.flags);
    case IDM_OP_EVENT_CREATE:
        rc = be->ops->event_create(be, ctx, u->ec.flags, &e);
        return op_new_handle(c, OBJ_EVENT, e, rc, (struct idm_handle_rep *)body);
    case IDM_OP_EVENT_DESTROY:
        if ((e = ht_remove(&c->ht, u->h.handle, OBJ_EVENT)) == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        return be->ops->event_destroy(be, ctx, e);
    case IDM_OP_EVENT_RECORD:
        if ((rc = broker_get_stream(c, u->se.stream, &s)) != CUDA_SUCCESS)
            return rc;
        if ((e = ht_get(&c->ht, u->se.event, OBJ_EVENT)) == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        return be->ops->event_record(be, ctx, e, s);
    case IDM_OP_EVENT_QUERY:
    case IDM_OP_EVENT_SYNC:
        if ((e = ht_get(&c->ht, u->h.handle, OBJ_EVENT)) == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        return hdr->op == IDM_OP_EVENT_SYNC ? be->ops->event_sync(be, ctx, e)
                                            : be->ops->event_query(be, ctx, e);
    case IDM_OP_EVENT_ELAPSED: {
        e = ht_get(&c->ht, u->ep.start, OBJ_EVENT);
        e2 = ht_get(&c->ht, u->ep.end, OBJ_EVENT);
        if (e == NULL || e2 == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        float ms = 0;
        rc = be->ops->event_elapsed(be, ctx, e, e2, &ms);
        ((struct idm_elapsed_rep *)body)->ms = ms;
        return rc;
    }
    default:
        return -EPROTO;
    }
}

static int handle(struct channel *c, const struct idm_msg *hdr, const union req *u,
                  const uint8_t *payload, size_t payload_max, uint8_t *body, size_t cap,
                  size_t *rlen)
{
    if (hdr->op <= IDM_OP_SEG_COPY)
        return handle_mem(c, hdr, u, payload, payload_max, body, cap, rlen);
    if ((hdr->op >= IDM_OP_MODULE_LOAD && hdr->op <= IDM_OP_MODULE_GLOBAL) ||
        hdr->op == IDM_OP_MODULE_STAGE || hdr->op == IDM_OP_MODULE_FUNCS)
        return broker_dispatch_module(c, hdr->op, u, payload, payload_max, body, cap, rlen);
    if (hdr->op >= IDM_OP_MEM_ALLOC_ASYNC && hdr->op != IDM_OP_LAUNCH_EX)
        return broker_dispatch_ext(c, hdr->op, u, body);
    return handle_exec(c, hdr, u, payload, payload_max, body, cap, rlen);
}

/* Operations that put work on the GPU: each waits for its pod's turn (compute shares). */
static bool submits_gpu_work(uint16_t op)
{
    return op == IDM_OP_LAUNCH || op == IDM_OP_HTOD || op == IDM_OP_DTOH || op == IDM_OP_DTOD ||
           op == IDM_OP_MEMSET || op == IDM_OP_SEG_COPY || op == IDM_OP_GRAPH_LAUNCH ||
           op == IDM_OP_LAUNCH_EX;
}

static bool waits_on_gpu(uint16_t op)
{
    return op == IDM_OP_CTX_SYNC || op == IDM_OP_STREAM_SYNC || op == IDM_OP_EVENT_SYNC ||
           op == IDM_OP_HTOD || op == IDM_OP_DTOH;
}

int broker_dispatch(struct channel *c, const struct idm_msg *hdr, const uint8_t *msg)
{
    struct idm_chan *ic = c->ic;
    const struct idm_op_info *info = idm_op_lookup(hdr->op);
    if (info == NULL || (hdr->flags & ~IDM_F_MASK) || (hdr->flags & IDM_F_REPLY) ||
        hdr->seq != ic->next_seq)
        return -EPROTO;
    size_t body_len = hdr->len - sizeof *hdr;
    if (body_len < info->req_size || (!c->hello_done && hdr->op != IDM_OP_HELLO))
        return -EPROTO;
    union req u;
    memcpy(&u, msg + sizeof *hdr, info->req_size);
    const uint8_t *payload = msg + sizeof *hdr + info->req_size;
    size_t payload_max = body_len - info->req_size;
    bool want_reply = !info->async || (hdr->flags & IDM_F_SYNC);
    size_t need = 0;
    if (want_reply) {
        need = REP_HDR + info->rep_size;
        if (hdr->op == IDM_OP_MODULE_LOAD || hdr->op == IDM_OP_MODULE_FUNCS)
            need = ic->max_msg;
        else if (hdr->op == IDM_OP_DTOH && u.dtoh.len <= ic->max_msg - need)
            need += u.dtoh.len;
        int64_t f = idm_ring_free(&ic->tx);
        if (f < 0)
            return -EPROTO; /* the client corrupted the reply ring's tail */
        if ((uint64_t)f < 2 * (uint64_t)idm_align(need))
            return 1; /* park until the client reads its replies */
    }
    ic->next_seq++;
    uint8_t *rp = NULL, *body;
    uint8_t dummy[64];
    size_t rlen = info->rep_size, cap = sizeof dummy, bound = 0;
    if (want_reply) {
        bound = idm_align(need);
        rp = idm_ring_reserve(&ic->tx, bound);
        if (rp == NULL)
            return -EPROTO;
        body = rp + REP_HDR;
        cap = bound - REP_HDR;
    } else {
        body = dummy;
    }
    memset(body, 0, info->rep_size);
    struct sched *sched = submits_gpu_work(hdr->op) ? c->b->sched : NULL;
    if (sched != NULL)
        broker_sched_enter(sched, c->pod->slot);
    uint64_t t0 = waits_on_gpu(hdr->op) || BE(c)->ops->is_soft ? idm_now_ns() : 0;
    int rc = handle(c, hdr, &u, payload, payload_max, body, cap, &rlen);
    if (rc == CUDA_SUCCESS && info->async && (hdr->flags & IDM_F_SYNC) &&
        hdr->op != IDM_OP_HTOD && hdr->op != IDM_OP_SEG_COPY && hdr->op != IDM_OP_MODULE_STAGE) {
        /* the synchronous variant of an asynchronous operation: done when we reply */
        void *s = NULL;
        uint64_t sh = hdr->op == IDM_OP_DTOD             ? u.dtod.stream
                      : hdr->op == IDM_OP_MEMSET         ? u.memset.stream
                      : hdr->op == IDM_OP_LAUNCH         ? u.launch.stream
                      : hdr->op == IDM_OP_LAUNCH_EX      ? u.launch.stream
                      : hdr->op == IDM_OP_GRAPH_LAUNCH   ? u.gl.stream
                      : hdr->op == IDM_OP_MEM_FREE_ASYNC ? u.ma.stream
                                                         : u.se.stream;
        if (t0 == 0)
            t0 = idm_now_ns();
        rc = broker_get_stream(c, sh, &s);
        if (rc == CUDA_SUCCESS)
            rc = BE(c)->ops->stream_sync(BE(c), CTX(c), s);
    }
    if (sched != NULL)
        broker_sched_exit(sched, c->pod->slot);
    if (t0 != 0)
        c->st.busy_ns += idm_now_ns() - t0;
    if (rc < 0) {
        if (want_reply)
            ic->tx.pending = 0; /* drop the reservation: the channel is closing */
        return rc;
    }
    c->st.calls++;
    if (rc != CUDA_SUCCESS) {
        c->st.errors++;
        if (broker_sticky_error(rc)) {
            pthread_mutex_lock(&c->pod->lock);
            c->pod->ctx_poisoned = true;
            pthread_mutex_unlock(&c->pod->lock);
        }
    }
    if (!want_reply) {
        if (rc != CUDA_SUCCESS && c->deferred_err == 0)
            c->deferred_err = rc;
        return 0;
    }
    if (rc == CUDA_SUCCESS && c->deferred_err != 0) {
        rc = c->deferred_err; /* an earlier asynchronous operation failed */
        c->deferred_err = 0;
    }
    if (rc != CUDA_SUCCESS)
        rlen = info->rep_size;
    size_t len = idm_align(REP_HDR + rlen);
    ic->tx.pending -= bound - len;
    struct idm_msg m = { (uint32_t)len, hdr->op, IDM_F_REPLY, hdr->seq };
    struct idm_rep r = { rc, 0 };
    memcpy(rp, &m, sizeof m);
    memcpy(rp + sizeof m, &r, sizeof r);
    idm_ring_commit(&ic->tx);
    if (atomic_load(&ic->tx.ctl->consumer_sleeping))
        (void)ic->ops->notify(ic);
    return 0;
}

void broker_flush_stats(struct channel *c)
{
    struct broker_usage *u = &c->pod->usage;
    pthread_mutex_lock(&c->pod->lock);
    u->calls += c->st.calls;
    u->errors += c->st.errors;
    u->launches += c->st.launches;
    u->busy_ns += c->st.busy_ns;
    u->bytes_htod += c->st.bytes_htod;
    u->bytes_dtoh += c->st.bytes_dtoh;
    pthread_mutex_unlock(&c->pod->lock);
    memset(&c->st, 0, sizeof c->st);
}

void broker_channel_release_objects(struct channel *c)
{
    struct backend *be = BE(c);
    void *ctx = CTX(c);
    if (ctx == NULL)
        return;
    (void)be->ops->ctx_sync(be, ctx); /* nothing of this channel in flight any more */
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < c->ht.cap; i++) {
            struct hentry *e = &c->ht.e[i];
            if (e->type == OBJ_NONE)
                continue;
            uint64_t h = ((uint64_t)c->ht.salt << 48) | ((uint64_t)e->gen << 32) | (i + 1);
            if (pass == 0 && e->type == OBJ_MODULE) {
                broker_free_module(c, ht_remove(&c->ht, h, OBJ_MODULE), true);
            } else if (pass == 1) {
                int type = e->type;
                void *obj = ht_remove(&c->ht, h, type);
                if (type == OBJ_STREAM)
                    (void)be->ops->stream_destroy(be, ctx, obj);
                else if (type == OBJ_EVENT)
                    (void)be->ops->event_destroy(be, ctx, obj);
                else if (type == OBJ_SEG)
                    free_seg(c, obj);
                else if (type == OBJ_FUNC)
                    broker_free_func(obj);
                else if (type == OBJ_GRAPH && be->ops->graph_destroy != NULL)
                    (void)be->ops->graph_destroy(be, ctx, obj);
                else if (type == OBJ_GRAPH_EXEC && be->ops->graph_exec_destroy != NULL)
                    (void)be->ops->graph_exec_destroy(be, ctx, obj);
            }
        }
    }
    uint64_t freed = 0;
    for (size_t i = 0; i < c->at.n; i++) {
        if (c->at.r[i].kind != RANGE_ALLOC)
            continue;
        (void)be->ops->mem_free(be, ctx, c->at.r[i].base);
        freed += c->at.r[i].size;
    }
    c->at.n = 0;
    pthread_mutex_lock(&c->pod->lock);
    c->pod->usage.mem_in_use -= freed;
    pthread_mutex_unlock(&c->pod->lock);
}
