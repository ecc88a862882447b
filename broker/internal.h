/* internal.h: broker internals shared by broker.c (pods, workers, channel lifecycle) and
 * dispatch.c (serving IDM operations: handle tables, pointer checks, quotas). */
#ifndef BROKER_INTERNAL_H
#define BROKER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "backend.h"
#include "broker.h"
#include "gpu_sched.h"

enum tag_kind { TAG_WAKE = 1, TAG_LISTENER, TAG_CHANNEL };

/* epoll data points at one of these; kind says what ptr is. */
struct ev_tag {
    int kind;
    void *ptr;
};

enum obj_type {
    OBJ_NONE = 0, OBJ_STREAM, OBJ_EVENT, OBJ_MODULE, OBJ_FUNC, OBJ_SEG, OBJ_GRAPH, OBJ_GRAPH_EXEC
};

struct hentry {
    void *obj;
    uint32_t gen;
    uint16_t type;
    uint32_t next_free;
};

/* Per-channel opaque handles: salt(16) | generation(16) | index+1 (32). */
struct htable {
    struct hentry *e;
    uint32_t cap, free_head, count;
    uint16_t salt;
};

enum { RANGE_ALLOC = 1, RANGE_GLOBAL = 2 };
struct arange {
    uint64_t base, size;
    int kind;
};
/* The channel's device memory: allocations and module globals, sorted by base. */
struct atable {
    struct arange *r;
    size_t n, cap;
};

struct pod {
    struct ev_tag ltag;
    struct broker *b;
    char id[IDM_POD_ID_MAX];
    char *socket_path;
    int listen_fd;
    uint64_t quota_bytes;
    unsigned compute_share;
    int slot;        /* in broker.sched */
    bool slot_owned; /* allocated here (in-process broker), freed on removal */
    /* lock guards: ctx, ctx_poisoned, usage, channels, destroying, closing */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void *ctx;
    bool ctx_poisoned;
    bool closing;
    struct broker_usage usage;
    struct channel *channels;
    unsigned destroying; /* channels unlisted but still being torn down */
    bool owns_socket;    /* unlink socket_path on removal */
    struct idm_xen_listener *xen; /* xen pods: channel offers of this domain (listen_fd is its fd) */
    uint64_t xen_refused;         /* offers refused (bad, or over the channel cap); under lock */
    struct pod *next; /* guarded by broker.pods_lock */
};

struct chan_stats {
    uint64_t calls, errors, launches, busy_ns, bytes_htod, bytes_dtoh;
};

/* A channel is served by one worker at a time (EPOLLONESHOT); only that worker touches the
 * fields below except closing (atomic) and next/prev (pod->lock). */
struct channel {
    struct ev_tag tag;
    struct broker *b;
    struct pod *pod;
    struct idm_chan *ic;
    int epfd; /* inner epoll: our doorbell + the socket */
    _Atomic int closing;
    uint64_t id;
    struct htable ht;
    struct atable at;
    int32_t deferred_err;
    bool hello_done;
    bool rings_registered;
    uint8_t *scratch;
    size_t scratch_cap;
    uint8_t *stage; /* MODULE_STAGE: the image being sent in chunks (dispatch_module.c) */
    uint64_t stage_cap, stage_len, stage_total;
    struct chan_stats st;
    struct channel *next, *prev;
};

struct broker {
    struct backend be;
    unsigned nworkers;
    pthread_t *workers;
    int epfd;
    int wake_fd;
    struct ev_tag wake_tag;
    _Atomic int stop;
    _Atomic uint64_t next_channel_id;
    struct idm_hello dev; /* device part of every hello */
    pthread_rwlock_t pods_lock; /* guards pods list */
    struct pod *pods;
    bool child;                 /* this is a pod process (pod_process.c) */
    _Atomic int need_restart;   /* child: the pod's GPU state faulted; exit and be restarted */
    struct pproc *pp;           /* process-per-pod mode: the parent's state (else NULL) */
    struct sched *sched;        /* compute shares: shared by every serving process */
    bool sched_owned;
    pthread_t keeper;           /* the turn keeper of this process (gpu_sched.h) */
    bool keeper_up;
};

/* broker.c: the in-process broker (also what runs inside each pod process) */
/* sched: the table of a parent (pod process), or NULL: a table of its own. */
int broker_inproc_create(const struct broker_config *cfg, struct sched *sched, broker_t **out,
                         struct idm_err *err);
void broker_inproc_destroy(broker_t *b);
/* listen_fd >= 0: serve that (inherited) socket, and leave the path alone on removal.
 * slot >= 0: the pod's slot in b->sched (allocated by the parent), -1: allocate one. */
int broker_inproc_pod_add(broker_t *b, const char *pod_id, const char *socket_path, int listen_fd,
                          int slot, uint64_t quota_bytes, unsigned compute_share,
                          struct idm_err *err);
/* A xen pod (channels offered by domain domid); slot as above. */
int broker_inproc_pod_add_xen(broker_t *b, const char *pod_id, uint32_t domid, int slot,
                              uint64_t quota_bytes, unsigned compute_share, struct idm_err *err);
int broker_inproc_pod_remove(broker_t *b, const char *pod_id, struct broker_usage *final_usage,
                             struct idm_err *err);
int broker_inproc_pod_usage(broker_t *b, const char *pod_id, struct broker_usage *out,
                            struct idm_err *err);

/* pod_process.c: one process per pod */
int broker_pp_create(const struct broker_config *cfg, broker_t **out, struct idm_err *err);
void broker_pp_destroy(broker_t *b);
int broker_pp_pod_add(broker_t *b, const char *pod_id, const char *socket_path,
                      uint64_t quota_bytes, unsigned compute_share, struct idm_err *err);
int broker_pp_pod_add_xen(broker_t *b, const char *pod_id, uint32_t domid, uint64_t quota_bytes,
                          unsigned compute_share, struct idm_err *err);
int broker_pp_pod_remove(broker_t *b, const char *pod_id, struct idm_err *err);
int broker_pp_pod_usage(broker_t *b, const char *pod_id, struct broker_usage *out,
                        struct idm_err *err);

/* dispatch.c */
/* Serves one message; 0 consumed, 1 parked (reply ring full: not consumed), <0 close channel. */
int broker_dispatch(struct channel *c, const struct idm_msg *hdr, const uint8_t *msg);
/* Frees every object of the channel on the GPU and its pod's accounting. */
void broker_channel_release_objects(struct channel *c);
void broker_flush_stats(struct channel *c);
bool broker_sticky_error(int cuerr);
/* A function handle's object (OBJ_FUNC). */
struct bfunc {
    void *be;
    uint32_t nparams;
    uint32_t param_size;
    struct idm_param_desc *params;
    void **argv;
    char *name;
};
/* dispatch.c helpers shared with dispatch_ext.c */
int broker_get_stream(struct channel *c, uint64_t h, void **s);
int broker_quota_take(struct pod *pod, uint64_t size);
void broker_quota_give(struct pod *pod, uint64_t size);
/* The channel's private buffer of at least n bytes (grown; valid until the next call). */
uint8_t *broker_scratch(struct channel *c, size_t n);
/* dispatch_module.c: MODULE_LOAD/UNLOAD/GLOBAL/STAGE/FUNCS (same convention as broker_dispatch's
 * handlers: a CUresult, or < 0 to close the channel). */
struct bmod;
int broker_dispatch_module(struct channel *c, uint16_t op, const void *req, const uint8_t *payload,
                           size_t payload_max, uint8_t *body, size_t cap, size_t *rlen);
void broker_free_module(struct channel *c, struct bmod *m, bool unload);
void broker_free_func(struct bfunc *f);
/* Drops a staged image (also when the channel closes). */
void broker_stage_drop(struct channel *c);
/* dispatch_ext.c: operations from MEM_ALLOC_ASYNC on; req points at the copied request body. */
int broker_dispatch_ext(struct channel *c, uint16_t op, const void *req, uint8_t *body);

#endif
