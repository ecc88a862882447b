/* backend.h (internal): the small interface between the broker and a GPU. Two implementations:
 * backend_cuda.c (real libcuda.so.1, dlopened) and backend_soft.c (a TEST DEVICE for CI).
 * Every function returns a CUresult. Objects (contexts, streams, ...) are opaque pointers.
 * The caller has bound the pod's context to the thread (ctx_bind) before any per-context call. */
#ifndef BROKER_BACKEND_H
#define BROKER_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "broker.h"

struct be_func_info {
    char *name;                     /* owned by the array */
    void *fn;
    uint32_t nparams;
    struct idm_param_desc *params;  /* owned by the array */
};

static inline void be_funcs_free(struct be_func_info *f, uint32_t n)
{
    for (uint32_t i = 0; f != NULL && i < n; i++) {
        free(f[i].name);
        free(f[i].params);
    }
    free(f);
}

struct backend;
struct backend_ops {
    const char *name;
    bool is_soft;
    int (*init)(struct backend *be, const struct broker_config *cfg, struct idm_err *err);
    void (*fini)(struct backend *be);
    int (*device_info)(struct backend *be, struct idm_hello *h);
    int (*ctx_create)(struct backend *be, void **ctx);
    void (*ctx_destroy)(struct backend *be, void *ctx);
    int (*ctx_bind)(struct backend *be, void *ctx);
    int (*ctx_sync)(struct backend *be, void *ctx);
    int (*mem_alloc)(struct backend *be, void *ctx, uint64_t size, uint64_t *dptr);
    int (*mem_free)(struct backend *be, void *ctx, uint64_t dptr);
    int (*mem_info)(struct backend *be, void *ctx, uint64_t *free_bytes, uint64_t *total);
    /* wait: the copy is complete (host buffer reusable) on return */
    int (*htod)(struct backend *be, void *ctx, uint64_t dst, const void *src, uint64_t n,
                void *stream, bool wait);
    int (*dtoh)(struct backend *be, void *ctx, void *dst, uint64_t src, uint64_t n, void *stream,
                bool wait);
    int (*dtod)(struct backend *be, void *ctx, uint64_t dst, uint64_t src, uint64_t n, void *stream);
    int (*memset)(struct backend *be, void *ctx, uint64_t dst, uint32_t value, uint32_t elem,
                  uint64_t count, void *stream);
    int (*host_register)(struct backend *be, void *ctx, void *p, uint64_t n);
    int (*host_unregister)(struct backend *be, void *ctx, void *p);
    int (*module_load)(struct backend *be, void *ctx, const void *image, uint64_t len, void **mod);
    int (*module_unload)(struct backend *be, void *ctx, void *mod);
    int (*module_functions)(struct backend *be, void *ctx, void *mod, struct be_func_info **out,
                            uint32_t *n);
    int (*module_global)(struct backend *be, void *ctx, void *mod, const char *name,
                         uint64_t *dptr, uint64_t *size);
    int (*func_get_attr)(struct backend *be, void *ctx, void *fn, int attr, int *value);
    int (*func_set_attr)(struct backend *be, void *ctx, void *fn, int attr, int value);
    int (*launch)(struct backend *be, void *ctx, void *fn, const uint32_t grid[3],
                  const uint32_t block[3], uint32_t shmem, void *stream, void **params);
    int (*stream_create)(struct backend *be, void *ctx, uint32_t flags, int prio, void **s);
    int (*stream_destroy)(struct backend *be, void *ctx, void *s);
    int (*stream_query)(struct backend *be, void *ctx, void *s);
    int (*stream_sync)(struct backend *be, void *ctx, void *s);
    int (*stream_wait_event)(struct backend *be, void *ctx, void *s, void *e, uint32_t flags);
    int (*event_create)(struct backend *be, void *ctx, uint32_t flags, void **e);
    int (*event_destroy)(struct backend *be, void *ctx, void *e);
    int (*event_record)(struct backend *be, void *ctx, void *e, void *s);
    int (*event_query)(struct backend *be, void *ctx, void *e);
    int (*event_sync)(struct backend *be, void *ctx, void *e);
    int (*event_elapsed)(struct backend *be, void *ctx, void *a, void *b, float *ms);
    /* Stream-ordered memory, the default pool's attributes, context limits (dispatch_ext.c).
     * Attribute values travel as 64 bits whatever the attribute's C type. */
    int (*mem_alloc_async)(struct backend *be, void *ctx, uint64_t size, void *stream,
                           uint64_t *dptr);
    int (*mem_free_async)(struct backend *be, void *ctx, uint64_t dptr, void *stream);
    int (*pool_attr)(struct backend *be, void *ctx, int attr, bool set, uint64_t *value);
    int (*ctx_limit)(struct backend *be, void *ctx, int limit, bool set, uint64_t *value);
    int (*occupancy)(struct backend *be, void *ctx, void *fn, const struct idm_occupancy_req *r,
                     uint64_t *value);
    /* Stream capture and graphs; capture always runs in relaxed mode (see dispatch_ext.c). */
    int (*capture_begin)(struct backend *be, void *ctx, void *stream);
    int (*capture_end)(struct backend *be, void *ctx, void *stream, void **graph);
    int (*capture_status)(struct backend *be, void *ctx, void *stream, uint32_t *status,
                          uint64_t *id);
    int (*graph_instantiate)(struct backend *be, void *ctx, void *graph, uint64_t flags,
                             void **exec);
    int (*graph_destroy)(struct backend *be, void *ctx, void *graph);
    int (*graph_exec_destroy)(struct backend *be, void *ctx, void *exec);
    int (*graph_node_count)(struct backend *be, void *ctx, void *graph, uint64_t *n);
    int (*graph_launch)(struct backend *be, void *ctx, void *exec, void *stream);
    /* A launch with checked value attributes (NULL: attributes are ignored). */
    int (*launch_ex)(struct backend *be, void *ctx, void *fn, const uint32_t grid[3],
                     const uint32_t block[3], uint32_t shmem, void *stream, void **params,
                     const struct idm_launch_attr *attrs, uint32_t nattrs);
    /* Encodes a TMA descriptor (the request's address already checked). */
    int (*tensor_map)(struct backend *be, void *ctx, const struct idm_tensor_map_req *r,
                      uint8_t map[128]);
};

struct backend {
    const struct backend_ops *ops;
    void *priv;
};

extern const struct backend_ops broker_backend_soft;
extern const struct backend_ops broker_backend_cuda;

#endif
