/* dispatch_module.c: modules and their functions. An image comes inline in MODULE_LOAD or, when
 * it does not fit in one message (cuBLAS's images are several MiB, the Xen transport's messages
 * 256 KiB), in MODULE_STAGE chunks the broker copies into memory of its own before the load: the
 * JIT never parses memory the client can still write. A load creates a handle per function and
 * answers with as many functions (name, parameter layout) as fit in one reply; MODULE_FUNCS
 * gives the rest. */
#include "handles.h"
#include "internal.h"
#include "vgpu_cuda.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct bmod {
    void *be;
    uint32_t nfunc;
    uint64_t *funcs;
    uint64_t *globals;
    uint32_t nglobals, capglobals;
};

static struct backend *BE(struct channel *c) { return &c->b->be; }
static void *CTX(struct channel *c) { return c->pod->ctx; }

void broker_free_func(struct bfunc *f)
{
    if (f == NULL)
        return;
    free(f->name);
    free(f->params);
    free(f->argv);
    free(f);
}

void broker_free_module(struct channel *c, struct bmod *m, bool unload)
{
    for (uint32_t i = 0; i < m->nfunc; i++)
        broker_free_func(ht_remove(&c->ht, m->funcs[i], OBJ_FUNC));
    for (uint32_t i = 0; i < m->nglobals; i++)
        (void)at_remove(&c->at, m->globals[i], RANGE_GLOBAL, NULL);
    if (unload && m->be != NULL)
        (void)BE(c)->ops->module_unload(BE(c), CTX(c), m->be);
    free(m->funcs);
    free(m->globals);
    free(m);
}

void broker_stage_drop(struct channel *c)
{
    free(c->stage);
    c->stage = NULL;
    c->stage_cap = c->stage_len = c->stage_total = 0;
}

/* MODULE_STAGE: one chunk, in order. A chunk out of order, past the announced size or over the
 * limit drops what was staged (the load that follows fails). */
static int op_stage(struct channel *c, const struct idm_module_stage_req *r, const uint8_t *payload,
                    size_t payload_max)
{
    if (r->len > payload_max)
        return -EPROTO;
    if (r->off == 0)
        broker_stage_drop(c);
    if (r->total == 0 || r->total > IDM_MODULE_STAGE_MAX || r->off != c->stage_len ||
        (r->off != 0 && r->total != c->stage_total) || r->len > r->total - r->off) {
        broker_stage_drop(c);
        return CUDA_ERROR_INVALID_VALUE;
    }
    c->stage_total = r->total;
    uint64_t need = r->off + r->len + 1; /* + a NUL: PTX text is parsed as a string */
    if (need > c->stage_cap) {
        uint64_t cap = c->stage_cap * 2 > need ? c->stage_cap * 2 : need;
        if (cap < (1u << 20))
            cap = 1u << 20;
        if (cap > r->total + 1)
            cap = r->total + 1;
        void *p = realloc(c->stage, cap);
        if (p == NULL) {
            broker_stage_drop(c);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        c->stage = p;
        c->stage_cap = cap;
    }
    memcpy(c->stage + r->off, payload, r->len);
    c->stage_len += r->len;
    return CUDA_SUCCESS;
}

/* Function handles for what the backend found; names kept for MODULE_FUNCS. */
static int make_funcs(struct channel *c, struct bmod *m, struct be_func_info *fi, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        if (strlen(fi[i].name) > IDM_FUNC_NAME_MAX)
            return CUDA_ERROR_INVALID_IMAGE;
        struct bfunc *f = calloc(1, sizeof *f);
        if (f == NULL)
            return CUDA_ERROR_OUT_OF_MEMORY;
        f->be = fi[i].fn;
        f->nparams = fi[i].nparams;
        f->params = fi[i].params;
        fi[i].params = NULL;
        f->name = strdup(fi[i].name);
        f->argv = calloc(f->nparams ? f->nparams : 1, sizeof(void *));
        for (uint32_t k = 0; k < f->nparams; k++)
            if (f->params[k].offset + f->params[k].size > f->param_size)
                f->param_size = f->params[k].offset + f->params[k].size;
        uint64_t h = f->argv != NULL && f->name != NULL ? ht_insert(&c->ht, OBJ_FUNC, f) : 0;
        if (h == 0) {
            broker_free_func(f);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        m->funcs[m->nfunc++] = h;
    }
    return CUDA_SUCCESS;
}

/* Writes struct idm_module_rep and the functions from first on that fit in cap bytes. */
static int write_funcs(struct channel *c, uint64_t mh, const struct bmod *m, uint32_t first,
                       uint8_t *body, size_t cap, size_t *len)
{
    if (first > m->nfunc)
        return CUDA_ERROR_INVALID_VALUE;
    size_t off = sizeof(struct idm_module_rep);
    uint32_t i = first;
    for (; i < m->nfunc; i++) {
        const struct bfunc *f = ht_get(&c->ht, m->funcs[i], OBJ_FUNC);
        if (f == NULL)
            return CUDA_ERROR_UNKNOWN;
        size_t namelen = strlen(f->name), padded = (namelen + 7) & ~(size_t)7;
        size_t plen = (size_t)f->nparams * sizeof *f->params;
        if (off + sizeof(struct idm_func_desc) + padded + plen > cap)
            break;
        struct idm_func_desc d = { m->funcs[i], f->nparams, (uint32_t)namelen };
        memcpy(body + off, &d, sizeof d);
        off += sizeof d;
        memset(body + off, 0, padded);
        memcpy(body + off, f->name, namelen);
        off += padded;
        memcpy(body + off, f->params, plen);
        off += plen;
    }
    if (i == first && first < m->nfunc)
        return CUDA_ERROR_OUT_OF_MEMORY; /* one function's entry is bigger than a message */
    struct idm_module_rep r = { mh, m->nfunc, i - first };
    memcpy(body, &r, sizeof r);
    *len = off;
    return CUDA_SUCCESS;
}

static int op_module_load(struct channel *c, const struct idm_module_load_req *r,
                          const uint8_t *payload, size_t payload_max, uint8_t *body, size_t cap,
                          size_t *len)
{
    uint64_t n = r->len;
    uint8_t *img;
    if (r->staged) {
        if (r->staged != 1 || n == 0 || c->stage_len != n || c->stage_total != n) {
            broker_stage_drop(c);
            return CUDA_ERROR_INVALID_VALUE;
        }
        img = c->stage;
    } else {
        if (n > payload_max)
            return -EPROTO;
        if (n == 0)
            return CUDA_ERROR_INVALID_IMAGE;
        img = broker_scratch(c, n + 1);
        if (img == NULL)
            return CUDA_ERROR_OUT_OF_MEMORY;
        memcpy(img, payload, n); /* private copy: the JIT must not parse client-writable memory */
    }
    img[n] = 0;
    struct bmod *m = calloc(1, sizeof *m);
    int rc = m != NULL ? BE(c)->ops->module_load(BE(c), CTX(c), img, n, &m->be)
                       : CUDA_ERROR_OUT_OF_MEMORY;
    if (r->staged)
        broker_stage_drop(c);
    if (m == NULL)
        return rc;
    struct be_func_info *fi = NULL;
    uint32_t nf = 0;
    if (rc == CUDA_SUCCESS)
        rc = BE(c)->ops->module_functions(BE(c), CTX(c), m->be, &fi, &nf);
    if (rc == CUDA_SUCCESS && (m->funcs = calloc(nf ? nf : 1, sizeof *m->funcs)) == NULL)
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS)
        rc = make_funcs(c, m, fi, nf);
    be_funcs_free(fi, nf);
    uint64_t h = rc == CUDA_SUCCESS ? ht_insert(&c->ht, OBJ_MODULE, m) : 0;
    if (h == 0) {
        broker_free_module(c, m, true);
        return rc != CUDA_SUCCESS ? rc : CUDA_ERROR_OUT_OF_MEMORY;
    }
    rc = write_funcs(c, h, m, 0, body, cap, len);
    if (rc != CUDA_SUCCESS)
        broker_free_module(c, ht_remove(&c->ht, h, OBJ_MODULE), true);
    return rc;
}

static int op_module_global(struct channel *c, const struct idm_module_global_req *r,
                            const uint8_t *payload, size_t payload_max,
                            struct idm_module_global_rep *rep)
{
    char name[256];
    if (r->namelen > payload_max)
        return -EPROTO;
    if (r->namelen == 0 || r->namelen >= sizeof name)
        return CUDA_ERROR_INVALID_VALUE;
    struct bmod *m = ht_get(&c->ht, r->module, OBJ_MODULE);
    if (m == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    memcpy(name, payload, r->namelen);
    name[r->namelen] = 0;
    uint64_t dptr, size;
    int rc = BE(c)->ops->module_global(BE(c), CTX(c), m->be, name, &dptr, &size);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (at_find(&c->at, dptr, size ? size : 1) == NULL && size > 0) {
        if (m->nglobals == m->capglobals) {
            uint32_t ncap = m->capglobals ? m->capglobals * 2 : 4;
            void *p = realloc(m->globals, ncap * sizeof *m->globals);
            if (p == NULL)
                return CUDA_ERROR_OUT_OF_MEMORY;
            m->globals = p;
            m->capglobals = ncap;
        }
        if (at_insert(&c->at, dptr, size, RANGE_GLOBAL) < 0)
            return CUDA_ERROR_OUT_OF_MEMORY;
        m->globals[m->nglobals++] = dptr;
    }
    rep->dptr = dptr;
    rep->size = size;
    return CUDA_SUCCESS;
}

int broker_dispatch_module(struct channel *c, uint16_t op, const void *req, const uint8_t *payload,
                           size_t payload_max, uint8_t *body, size_t cap, size_t *rlen)
{
    switch (op) {
    case IDM_OP_MODULE_LOAD:
        return op_module_load(c, req, payload, payload_max, body, cap, rlen);
    case IDM_OP_MODULE_STAGE:
        return op_stage(c, req, payload, payload_max);
    case IDM_OP_MODULE_FUNCS: {
        const struct idm_module_funcs_req *r = req;
        const struct bmod *m = ht_get(&c->ht, r->module, OBJ_MODULE);
        if (m == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        return write_funcs(c, r->module, m, r->first, body, cap, rlen);
    }
    case IDM_OP_MODULE_UNLOAD: {
        const struct idm_handle_req *r = req;
        struct bmod *m = ht_remove(&c->ht, r->handle, OBJ_MODULE);
        if (m == NULL)
            return CUDA_ERROR_INVALID_HANDLE;
        int rc = BE(c)->ops->module_unload(BE(c), CTX(c), m->be);
        m->be = NULL;
        broker_free_module(c, m, false);
        return rc;
    }
    case IDM_OP_MODULE_GLOBAL:
        return op_module_global(c, req, payload, payload_max,
                                (struct idm_module_global_rep *)(void *)body);
    default:
        return -EPROTO;
    }
}
