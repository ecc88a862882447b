/* shim.h (internal): state of libvgpu.so, the libcuda.so.1 replacement. One IDM channel per
 * process, opened by cuInit; shim.lock serialises use of the rings and the local tables. */
#ifndef SHIM_H
#define SHIM_H

#include <pthread.h>
#include <stdbool.h>

#include "idm.h"
#define VGPU_CUDA_NO_API_MACROS
#include "vgpu_cuda.h"

#define SHIM_API __attribute__((visibility("default")))
#define SHIM_FUNC_MAGIC 0x46554e43u
#define SHIM_MOD_MAGIC 0x4d4f4455u
#define SHIM_CTX_MAGIC 0x43545854u
#define SHIM_CHUNK (2u << 20) /* bulk copies are cut in pieces of this size */
/* The piece size for this channel: SHIM_CHUNK, or less when the channel's messages are smaller
 * (the Xen transport's rings are 512 KiB). */
#define SHIM_CHUNK_FOR(ch) ((ch)->max_msg >= SHIM_CHUNK + 4096u ? SHIM_CHUNK : (ch)->max_msg / 2u)

struct shim_mod;
struct shim_func {
    uint32_t magic;
    uint64_t handle;
    char *name;
    uint32_t nparams;
    uint32_t param_size;
    struct idm_param_desc *params;
    struct shim_mod *mod;
    struct shim_fcache *cache; /* answers of attribute and occupancy queries; fcache_lock */
    uint64_t cache_gen;        /* bumped by each attribute set; fcache_lock */
};

struct shim_mod {
    uint32_t magic;
    uint64_t handle;
    uint32_t nfunc;
    struct shim_func *funcs;
};

struct shim_seg {
    void *p;
    size_t size;
    uint64_t handle;
    struct shim_seg *next;
};

struct shim_ctx {
    uint32_t magic;
    bool primary;
    unsigned flags;
};

/* lock guards ch (its rings), dead, segs. */
struct shim_state {
    pthread_mutex_t lock;
    struct idm_chan *ch;
    bool dead;
    struct shim_seg *segs;
    bool xen; /* Xen transport: no fd passing, so no shared host segments (set once by cuInit) */
    /* No shared host segments: page-locked host memory is plain memory and copies go through the
     * rings (always on Xen; $VGPU_SHIM_PLAIN_HOST=1, a TEST KNOB, does the same on the local
     * transport so that a real GPU runs the Xen transport's host-memory path). */
    bool plain_host;
};

extern struct shim_state shim;
extern bool shim_inited;
extern bool shim_trace; /* $VGPU_SHIM_TRACE: log calls the broker refuses, export-table slots */

/* CUDA_ERROR_NOT_INITIALIZED unless cuInit succeeded. */
CUresult shim_ready(void);
#define NEED_INIT()                                                                            \
    do {                                                                                       \
        CUresult r_ = shim_ready();                                                            \
        if (r_ != CUDA_SUCCESS)                                                                \
            return r_;                                                                         \
    } while (0)
/* Synchronous call: request body (+ payload), waits; copies up to rep_size reply-body bytes. */
CUresult shim_call(uint16_t op, const void *req, size_t req_size, const void *payload,
                   size_t plen, void *rep, size_t rep_size);
/* Asynchronous call: written to the ring, no waiting. flags may add IDM_F_SYNC (then waits). */
CUresult shim_post(uint16_t op, uint16_t flags, const void *req, size_t req_size,
                   const void *payload, size_t plen);
/* With shim.lock held: write one request (no waiting); *seq is its sequence number. */
CUresult shim_post_locked(uint16_t op, uint16_t flags, const void *req, size_t req_size,
                          const void *payload, size_t plen, uint64_t *seq);
/* With shim.lock held: wait for the reply to seq, copy its body, release it. */
CUresult shim_wait_locked(uint64_t seq, void *rep, size_t rep_size, void *data, size_t data_len);
uint64_t shim_stream(CUstream s);
void shim_unsupported(const char *fn);
struct shim_seg *shim_find_seg_locked(const void *p, size_t n);
/* memcpy for bulk data, shared with helper threads when large; caller holds shim.lock. */
void shim_copy_bulk(void *dst, const void *src, size_t n);
/* A context is gone: drop the runtime's per-context storage, running its destructors. */
void shim_cls_context_gone(CUcontext ctx);
/* exec.c: a function's attribute and occupancy answers do not change until one of its attributes
 * is set, so they are kept per function (the runtime and PyTorch ask the same ones before
 * launches). op FUNC_GET_ATTR or OCCUPANCY, req its request body (the key). */
CUresult shim_func_query(struct shim_func *f, uint16_t op, const void *req, size_t req_size,
                         uint64_t *value);
/* export.c: the stream is destroyed: its record for cuBLAS (21318c60 slot 51) gets a new number. */
void shim_stream_obj_gone(CUstream stream);

#endif
