/* idm.h: the IDM protocol between libvgpu.so (client) and the broker (server), and its transports.
 *
 * A channel is two single-producer single-consumer rings in one shared memory area (requests
 * client->broker, replies broker->client) plus a doorbell each way. Messages are framed with a
 * length, an operation id and a sequence number; the operation table (idm_ops.h) gives each
 * operation's fixed request/reply layout and whether it is asynchronous. The transport (local:
 * unix socket + memfd + eventfds; later Xen: granted pages + event channel) only maps the shared
 * area and rings/waits on doorbells; everything above it is transport-independent. */
#ifndef IDM_H
#define IDM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors and logging (one convention for idm/ and broker/) ---- */

/* Functions return 0 or a negative errno-style code and fill an optional idm_err. */
struct idm_err {
    int code;
    char msg[256];
};

/* Sets err (if non-NULL) to code and a formatted message; returns code. */
int idm_err_set(struct idm_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

enum idm_log_level { IDM_LOG_ERROR = 0, IDM_LOG_WARN = 1, IDM_LOG_INFO = 2, IDM_LOG_DEBUG = 3 };
typedef void (*idm_log_fn)(int level, const char *msg);
/* Replaces the log sink (default: stderr, level from $VGPU_LOG_LEVEL, default INFO). */
void idm_set_log_fn(idm_log_fn fn);
void idm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- protocol ---- */

#define IDM_MAGIC 0x4d444956u /* "VIDM" */
#define IDM_PROTO_VERSION 3u
#define IDM_ATTR_MAX 256
#define IDM_POD_ID_MAX 64
#define IDM_NAME_MAX 256

/* Frame header of every message on a ring; len counts the header, is a multiple of 16. */
struct idm_msg {
    uint32_t len;
    uint16_t op;
    uint16_t flags;
    uint64_t seq;
};
#define IDM_MSG_ALIGN 16u
#define IDM_F_REPLY 0x1u /* set on replies (broker->client) */
#define IDM_F_SYNC 0x2u  /* on an async op: the client waits for a reply (sync variant) */
#define IDM_F_MASK 0x3u

/* Every reply body starts with this. result is a CUresult. */
struct idm_rep {
    int32_t result;
    uint32_t pad;
};

/* Request / reply bodies (after struct idm_msg). All little-endian host layout, explicit padding. */
struct idm_hello_req { uint32_t version; uint32_t pid; };
struct idm_hello_rep { uint32_t version; uint32_t pad; };
struct idm_empty { uint64_t unused; };
struct idm_mem_alloc_req { uint64_t size; };
struct idm_mem_alloc_rep { uint64_t dptr; };
struct idm_dptr_req { uint64_t dptr; };
struct idm_mem_info_rep { uint64_t free_bytes; uint64_t total_bytes; };
struct idm_mem_range_rep { uint64_t base; uint64_t size; };
/* HTOD: payload of len bytes follows. */
struct idm_htod_req { uint64_t dst; uint64_t stream; uint64_t len; uint64_t pad; }; /* payload 16-aligned */
/* DTOH: reply carries idm_dtoh_rep then len bytes. */
struct idm_dtoh_req { uint64_t src; uint64_t stream; uint64_t len; };
struct idm_dtoh_rep { uint64_t len; };
struct idm_dtod_req { uint64_t dst; uint64_t src; uint64_t len; uint64_t stream; };
struct idm_memset_req { uint64_t dst; uint64_t count; uint64_t stream; uint32_t value; uint32_t elem; };
/* HOST_REG: the client sends the segment's memfd on the socket just before this message. */
struct idm_host_reg_req { uint64_t size; };
struct idm_handle_rep { uint64_t handle; };
struct idm_handle_req { uint64_t handle; };
#define IDM_SEG_HTOD 0u
#define IDM_SEG_DTOH 1u
struct idm_seg_copy_req {
    uint64_t seg; uint64_t seg_off; uint64_t dptr; uint64_t len; uint64_t stream;
    uint32_t dir; uint32_t pad;
};
/* MODULE_LOAD: the image inline (payload = len bytes, staged 0) or, when it does not fit in one
 * message, sent before in MODULE_STAGE chunks (staged 1: the broker loads what it staged, which
 * must be exactly len bytes). Reply: idm_module_rep then nrep of the module's nfunc functions,
 * each idm_func_desc, then namelen bytes (padded to 8), then nparams idm_param_desc; when nrep <
 * nfunc the rest come with MODULE_FUNCS (a reply holds at most one message). */
struct idm_module_load_req { uint64_t len; uint32_t staged; uint32_t pad; };
struct idm_module_rep { uint64_t module; uint32_t nfunc; uint32_t nrep; };
/* MODULE_STAGE (asynchronous): bytes [off, off + len) of an image of total bytes, payload len
 * bytes. off 0 starts a new image (dropping one not loaded); chunks come in order; the broker
 * copies them into memory of its own (up to IDM_MODULE_STAGE_MAX) and drops them at the load. */
struct idm_module_stage_req { uint64_t total; uint64_t off; uint64_t len; uint64_t pad; };
#define IDM_MODULE_STAGE_MAX (512ull << 20)
/* MODULE_FUNCS: a loaded module's functions from index first on, as in the MODULE_LOAD reply. */
struct idm_module_funcs_req { uint64_t module; uint32_t first; uint32_t pad; };
#define IDM_FUNC_NAME_MAX 4096u
struct idm_func_desc { uint64_t handle; uint32_t nparams; uint32_t namelen; };
struct idm_param_desc { uint32_t offset; uint32_t size; };
struct idm_module_global_req { uint64_t module; uint32_t namelen; uint32_t pad; };
struct idm_module_global_rep { uint64_t dptr; uint64_t size; };
struct idm_func_attr_req { uint64_t func; int32_t attr; int32_t value; };
struct idm_func_attr_rep { int32_t value; uint32_t pad; };
/* LAUNCH: payload = parameter buffer (param_len bytes, laid out per the function's params). */
struct idm_launch_req {
    uint64_t func; uint64_t stream;
    uint32_t grid[3]; uint32_t block[3];
    uint32_t shmem; uint32_t param_len;
};
struct idm_stream_create_req { uint32_t flags; int32_t priority; };
struct idm_stream_event_req { uint64_t stream; uint64_t event; uint32_t flags; uint32_t pad; };
struct idm_event_create_req { uint32_t flags; uint32_t pad; };
struct idm_event_pair_req { uint64_t start; uint64_t end; };
struct idm_elapsed_rep { float ms; uint32_t pad; };
/* Stream-ordered memory: MEM_ALLOC_ASYNC takes a size, MEM_FREE_ASYNC a device pointer. */
struct idm_mem_async_req { uint64_t value; uint64_t stream; };
/* POOL_ATTR (the device's default pool) and CTX_LIMIT: which attribute / limit, get or set. */
struct idm_attr_req { uint32_t which; uint32_t set; uint64_t value; };
struct idm_u64_rep { uint64_t value; };
#define IDM_OCC_BLOCKS 0u       /* cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags */
#define IDM_OCC_DYN_SMEM 1u     /* cuOccupancyAvailableDynamicSMemPerBlock */
#define IDM_OCC_CLUSTERS 2u     /* cuOccupancyMaxActiveClusters */
#define IDM_OCC_CLUSTER_SIZE 3u /* cuOccupancyMaxPotentialClusterSize */
struct idm_occupancy_req {
    uint64_t func; uint64_t dyn_smem;
    uint32_t kind; uint32_t flags; int32_t block_size; int32_t num_blocks;
    uint32_t grid[3]; uint32_t block[3]; uint32_t shmem;
    uint32_t cluster[3]; uint32_t cluster_policy; uint32_t pad;
};
#define IDM_CAP_BEGIN 0u
#define IDM_CAP_END 1u
#define IDM_CAP_STATUS 2u
struct idm_capture_req { uint64_t stream; uint32_t kind; uint32_t mode; };
struct idm_capture_rep { uint64_t graph; uint64_t id; uint32_t status; uint32_t pad; };
#define IDM_GRAPH_INSTANTIATE 0u
#define IDM_GRAPH_DESTROY 1u
#define IDM_GRAPH_EXEC_DESTROY 2u
#define IDM_GRAPH_NODE_COUNT 3u
struct idm_graph_req { uint64_t handle; uint64_t flags; uint32_t kind; uint32_t pad; };
struct idm_graph_launch_req { uint64_t exec; uint64_t stream; };
/* LAUNCH_EX: a launch with attributes (cuLaunchKernelEx): value attributes only (cluster shape,
 * scheduling policy, programmatic serialization, priority, ...: see dispatch_ext.c). */
#define IDM_LAUNCH_ATTRS 6
struct idm_launch_attr { int32_t id; uint32_t pad; uint8_t value[64]; };
struct idm_launch_ex_req {
    struct idm_launch_req base; /* first: the LAUNCH code reads it */
    uint32_t nattrs; uint32_t pad;
    struct idm_launch_attr attrs[IDM_LAUNCH_ATTRS];
};
/* TENSOR_MAP: a Hopper TMA descriptor (CUtensorMap, 128 bytes) encoded by the broker's driver
 * for an address of the pod's own memory. */
#define IDM_TMAP_TILED 0u
#define IDM_TMAP_IM2COL 1u
#define IDM_TMAP_REPLACE 2u
struct idm_tensor_map_req {
    uint32_t kind; uint32_t dtype; uint32_t rank; uint32_t interleave;
    uint32_t swizzle; uint32_t l2promo; uint32_t oobfill; uint32_t channels_per_pixel;
    uint32_t pixels_per_column; uint32_t pad;
    uint64_t address;
    uint64_t dims[5]; uint64_t strides[4];
    uint32_t box[5]; uint32_t elem_strides[5];
    int32_t lower[3]; int32_t upper[3];
    uint8_t map[128]; /* IDM_TMAP_REPLACE: the descriptor to change */
};
struct idm_tensor_map_rep { uint8_t map[128]; };

/* The operation table: X(NAME, id, request struct, reply struct, async, has_payload).
 * async ops get no reply unless IDM_F_SYNC; has_payload: the request carries bytes after its body. */
#define IDM_OPS(X)                                                                          \
    X(PAD, 0, idm_empty, idm_empty, 1, 1)                                                   \
    X(HELLO, 1, idm_hello_req, idm_hello_rep, 0, 0)                                         \
    X(CTX_SYNC, 2, idm_empty, idm_empty, 0, 0)                                              \
    X(MEM_ALLOC, 3, idm_mem_alloc_req, idm_mem_alloc_rep, 0, 0)                             \
    X(MEM_FREE, 4, idm_dptr_req, idm_empty, 0, 0)                                           \
    X(MEM_GET_INFO, 5, idm_empty, idm_mem_info_rep, 0, 0)                                   \
    X(MEM_RANGE, 6, idm_dptr_req, idm_mem_range_rep, 0, 0)                                  \
    X(HTOD, 7, idm_htod_req, idm_empty, 1, 1)                                               \
    X(DTOH, 8, idm_dtoh_req, idm_dtoh_rep, 0, 0)                                            \
    X(DTOD, 9, idm_dtod_req, idm_empty, 1, 0)                                               \
    X(MEMSET, 10, idm_memset_req, idm_empty, 1, 0)                                          \
    X(HOST_REG, 11, idm_host_reg_req, idm_handle_rep, 0, 0)                                 \
    X(HOST_UNREG, 12, idm_handle_req, idm_empty, 0, 0)                                      \
    X(SEG_COPY, 13, idm_seg_copy_req, idm_empty, 1, 0)                                      \
    X(MODULE_LOAD, 14, idm_module_load_req, idm_module_rep, 0, 1)                           \
    X(MODULE_UNLOAD, 15, idm_handle_req, idm_empty, 0, 0)                                   \
    X(MODULE_GLOBAL, 16, idm_module_global_req, idm_module_global_rep, 0, 1)                \
    X(FUNC_GET_ATTR, 17, idm_func_attr_req, idm_func_attr_rep, 0, 0)                        \
    X(FUNC_SET_ATTR, 18, idm_func_attr_req, idm_empty, 0, 0)                                \
    X(LAUNCH, 19, idm_launch_req, idm_empty, 1, 1)                                          \
    X(STREAM_CREATE, 20, idm_stream_create_req, idm_handle_rep, 0, 0)                       \
    X(STREAM_DESTROY, 21, idm_handle_req, idm_empty, 0, 0)                                  \
    X(STREAM_QUERY, 22, idm_handle_req, idm_empty, 0, 0)                                    \
    X(STREAM_SYNC, 23, idm_handle_req, idm_empty, 0, 0)                                     \
    X(STREAM_WAIT_EVENT, 24, idm_stream_event_req, idm_empty, 1, 0)                         \
    X(EVENT_CREATE, 25, idm_event_create_req, idm_handle_rep, 0, 0)                         \
    X(EVENT_DESTROY, 26, idm_handle_req, idm_empty, 0, 0)                                   \
    X(EVENT_RECORD, 27, idm_stream_event_req, idm_empty, 1, 0)                              \
    X(EVENT_QUERY, 28, idm_handle_req, idm_empty, 0, 0)                                     \
    X(EVENT_SYNC, 29, idm_handle_req, idm_empty, 0, 0)                                      \
    X(EVENT_ELAPSED, 30, idm_event_pair_req, idm_elapsed_rep, 0, 0)                         \
    X(MEM_ALLOC_ASYNC, 31, idm_mem_async_req, idm_mem_alloc_rep, 0, 0)                      \
    X(MEM_FREE_ASYNC, 32, idm_mem_async_req, idm_empty, 1, 0)                               \
    X(POOL_ATTR, 33, idm_attr_req, idm_u64_rep, 0, 0)                                       \
    X(CTX_LIMIT, 34, idm_attr_req, idm_u64_rep, 0, 0)                                       \
    X(OCCUPANCY, 35, idm_occupancy_req, idm_u64_rep, 0, 0)                                  \
    X(CAPTURE, 36, idm_capture_req, idm_capture_rep, 0, 0)                                  \
    X(GRAPH, 37, idm_graph_req, idm_u64_rep, 0, 0)                                          \
    X(GRAPH_LAUNCH, 38, idm_graph_launch_req, idm_empty, 1, 0)                              \
    X(LAUNCH_EX, 39, idm_launch_ex_req, idm_empty, 1, 1)                                    \
    X(TENSOR_MAP, 40, idm_tensor_map_req, idm_tensor_map_rep, 0, 0)                         \
    X(MODULE_STAGE, 41, idm_module_stage_req, idm_empty, 1, 1)                              \
    X(MODULE_FUNCS, 42, idm_module_funcs_req, idm_module_rep, 0, 0)

enum idm_op {
#define IDM_X_ENUM(name, id, rq, rp, as, pl) IDM_OP_##name = id,
    IDM_OPS(IDM_X_ENUM)
#undef IDM_X_ENUM
    IDM_OP_COUNT
};

struct idm_op_info {
    const char *name;
    uint32_t req_size; /* fixed body size after struct idm_msg */
    uint32_t rep_size; /* fixed body size after struct idm_msg + struct idm_rep */
    bool async;
    bool has_payload;
};
/* NULL for an unknown op id. */
const struct idm_op_info *idm_op_lookup(uint32_t op);

/* Broker -> client at connect (over the transport, before any ring traffic). */
struct idm_hello {
    uint32_t magic;
    uint32_t version;        /* protocol version the broker speaks */
    char pod_id[IDM_POD_ID_MAX]; /* identity assigned by the broker from the socket */
    uint64_t channel_id;
    uint64_t quota_bytes;    /* GPU memory quota (0: none) */
    uint32_t compute_share;  /* percent, informational */
    uint32_t soft_device;    /* 1: the broker runs the `soft` TEST DEVICE, not a GPU */
    uint64_t shm_size, req_off, req_size, rep_off, rep_size;
    uint32_t max_msg;        /* largest message either way */
    int32_t driver_version;
    uint64_t total_mem;
    char device_name[IDM_NAME_MAX];
    uint8_t uuid[16];
    int32_t attrs[IDM_ATTR_MAX];
    uint8_t attr_valid[IDM_ATTR_MAX];
};

/* ---- rings ---- */

/* Shared control block of one ring; each index on its own cache line. head is written by the
 * producer only, tail by the consumer only; neither side trusts the other's value. */
struct idm_ring_ctl {
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) _Atomic uint64_t tail;
    _Alignas(64) _Atomic uint32_t consumer_sleeping; /* consumer will block: ring its doorbell */
    _Atomic uint32_t producer_waiting;               /* producer waits for space */
};

/* Layout of the start of the shared area. */
struct idm_shm_hdr {
    uint32_t magic;
    uint32_t version;
    struct idm_ring_ctl req; /* client -> broker */
    struct idm_ring_ctl rep; /* broker -> client */
};

/* One side's private view of a ring. pos is this side's own index (never re-read from shared
 * memory); size is a power of two. */
struct idm_ring {
    struct idm_ring_ctl *ctl;
    uint8_t *data;
    uint64_t size;
    uint64_t pos;
    uint64_t pending; /* producer: bytes reserved but not yet committed */
    uint64_t peer;    /* last value read of the other side's index (saves cache misses) */
};

void idm_ring_init(struct idm_ring *r, struct idm_ring_ctl *ctl, void *data, uint64_t size);
/* Producer: reserve len bytes (rounded up to 16) for one message; returns where to write the
 * struct idm_msg and body, or NULL if there is no room now. Inserts a PAD message at the wrap. */
void *idm_ring_reserve(struct idm_ring *r, size_t len);
/* Producer: publish everything reserved. */
void idm_ring_commit(struct idm_ring *r);
/* Producer: free bytes now (may read the consumer's tail); -1 if the tail is corrupt. */
int64_t idm_ring_free(struct idm_ring *r);
/* Consumer: next message, validated (length, alignment, bounds, PAD skipped). Copies its header
 * into *hdr and returns a pointer to the whole message in the ring. 0 ok, -EAGAIN empty,
 * -EPROTO corrupt (the channel must be closed). */
int idm_ring_peek(struct idm_ring *r, uint32_t max_msg, struct idm_msg *hdr, const uint8_t **msg);
/* Consumer: release the message returned by the last peek. */
void idm_ring_consume(struct idm_ring *r, const struct idm_msg *hdr);
bool idm_ring_empty(struct idm_ring *r);

/* ---- channels and transports ---- */

struct idm_chan;

/* What a transport provides: ring the peer's doorbell; wait on ours (timeout_ms < 0: forever;
 * returns 0 woken, -ETIMEDOUT, -EPIPE peer gone). */
struct idm_transport_ops {
    const char *name;
    int (*notify)(struct idm_chan *ch);
    int (*wait)(struct idm_chan *ch, int timeout_ms);
    void (*close)(struct idm_chan *ch);
    /* Optional (NULL for local): consume what arrived on evt_fd; -EPIPE when the peer is gone. */
    int (*event)(struct idm_chan *ch);
};

enum idm_role { IDM_ROLE_BROKER = 0, IDM_ROLE_CLIENT = 1 };

struct idm_chan {
    const struct idm_transport_ops *ops;
    enum idm_role role;
    struct idm_hello hello;
    uint8_t *shm;
    size_t shm_size;
    struct idm_shm_hdr *hdr;
    struct idm_ring tx; /* rings this side produces into */
    struct idm_ring rx; /* ... and consumes from */
    uint32_t max_msg;
    uint64_t next_seq;  /* client: next request seq; broker: expected request seq */
    /* local transport */
    int sock_fd;        /* the connection on the pod's socket */
    int efd_wait;       /* our doorbell */
    int efd_notify;     /* the peer's doorbell */
    int shm_fd;
    /* Xen transport (xen_guest.c / xen_host.c): the event channel's fd (-1 otherwise; the broker
     * polls it beside efd_wait and calls ops->event when it is readable) and private state. */
    int evt_fd;
    void *xen;
};

/* Layout defaults (bytes). Rings must be powers of two. */
#define IDM_REQ_RING_SIZE (16u << 20)
#define IDM_REP_RING_SIZE (16u << 20)
#define IDM_MAX_MSG (4u << 20)

/* Local transport, broker side. */
int idm_local_listen(const char *path, int *fd_out, struct idm_err *err);
/* Accepts one pending connection on lfd (non-blocking); -EAGAIN if none. hello is completed with
 * the layout and sent with the fds. */
int idm_local_accept(int lfd, const struct idm_hello *hello, struct idm_chan **out,
                     struct idm_err *err);
/* Local transport, client side: connect to the pod socket, receive hello and fds, map rings. */
int idm_local_connect(const char *path, struct idm_chan **out, struct idm_err *err);
/* Client: send a file descriptor (a host memory segment) on the channel's socket. */
int idm_local_send_fd(struct idm_chan *ch, int fd, struct idm_err *err);
/* Broker: receive one fd sent with idm_local_send_fd (non-blocking); -EAGAIN if none. */
int idm_local_recv_fd(struct idm_chan *ch, int *fd_out);
/* Closes fds, unmaps, frees. NULL is fine. */
void idm_chan_close(struct idm_chan *ch);

/* ---- Xen transport (xen_proto.c, xen_guest.c, xen_host.c) ----
 *
 * The guest (shim) allocates IDM_XEN_PAGES pages, grants them to dom0 (gntalloc), opens an
 * unbound event channel for dom0 and writes ONE xenstore record under its own domain path,
 * data/vgpu/<name> = "v=1 port=<evtchn> pages=<n> refs=<r0>,<r1>,...". The broker watches that
 * directory of the pod's domain (the domid is the pod's identity), reads and removes the record,
 * maps the grants, binds the event channel, writes the hello into page 1 and sets the control
 * block's state to READY. Page 0 holds struct idm_shm_hdr and, at IDM_XEN_CTL_OFF, the control
 * block; the rings follow page 1. A process's death clears ctl.alive (gntalloc unmap notify) and
 * rings the event channel; the broker marks ctl.state CLOSED when it drops the channel. */
#define IDM_XEN_PAGE 4096u
#define IDM_XEN_RING_SIZE (512u << 10)
#define IDM_XEN_MAX_MSG (256u << 10)
#define IDM_XEN_PAGES (2u + 2u * (IDM_XEN_RING_SIZE / IDM_XEN_PAGE))
#define IDM_XEN_CTL_OFF 2048u
#define IDM_XEN_HELLO_OFF IDM_XEN_PAGE
#define IDM_XEN_RINGS_OFF (2u * IDM_XEN_PAGE)
#define IDM_XEN_STATE_WAIT 0u
#define IDM_XEN_STATE_READY 0x52454459u  /* "READY" enough: the broker wrote the hello */
#define IDM_XEN_STATE_CLOSED 0x434c4f53u /* the broker dropped the channel */
#define IDM_XEN_DIR "data/vgpu"          /* relative to /local/domain/<domid> */
/* Written by the broker when it starts serving the domain (a random epoch), removed when it stops:
 * a client whose reply is long in coming checks it, so a broker that died (its pages and event
 * channel simply vanish for the guest) or was replaced ends the client's channel. */
#define IDM_XEN_EPOCH "data/vgpu-broker"
#define IDM_XEN_NAME_MAX 32
#define IDM_XEN_RECORD_MAX 2048          /* xenstored's default entry size quota for a guest */
#define IDM_XEN_ENTRIES_MAX 64           /* entries looked at per watch event; the rest removed */

struct idm_xen_ctl {
    _Atomic uint32_t state; /* written by the broker */
    uint32_t pad;
    _Alignas(64) _Atomic uint8_t alive; /* 1 while the guest process maps the pages */
    /* 1 while the broker's process maps page 0: set before READY; the broker maps page 0 a second
     * time with a gntdev unmap notify on this byte and its event channel, so when that process
     * dies (its mappings go with it) the byte is cleared and the guest woken. */
    _Alignas(64) _Atomic uint8_t broker_alive;
};

/* A parsed record; refs point into the caller's array. */
struct idm_xen_record {
    uint32_t port;
    uint32_t npages;
    uint32_t refs[IDM_XEN_PAGES];
};
/* Strict parse of a record (exact format, decimal without leading zeros or signs, npages must be
 * IDM_XEN_PAGES and match the number of refs, len <= IDM_XEN_RECORD_MAX, no trailing bytes).
 * 0 or -EINVAL. */
int idm_xen_record_parse(const char *s, size_t len, struct idm_xen_record *out);
/* Formats a record; returns its length or -ENOSPC. */
int idm_xen_record_format(const struct idm_xen_record *r, char *buf, size_t cap);
/* A channel entry name: 1..IDM_XEN_NAME_MAX of [a-z0-9-]. */
bool idm_xen_name_valid(const char *name);

/* xenstore wire protocol (docs: xen/include/public/io/xs_wire.h): a header then len bytes. */
struct idm_xs_hdr {
    uint32_t type;
    uint32_t req_id;
    uint32_t tx_id;
    uint32_t len;
};
#define IDM_XS_DIRECTORY 1u
#define IDM_XS_READ 2u
#define IDM_XS_WATCH 4u
#define IDM_XS_UNWATCH 5u
#define IDM_XS_WRITE 11u
#define IDM_XS_MKDIR 12u
#define IDM_XS_RM 13u
#define IDM_XS_WATCH_EVENT 15u
#define IDM_XS_ERROR 16u
#define IDM_XS_PAYLOAD_MAX 4096u
/* Encodes a request: header + the strings in parts, each followed by a NUL except the last when
 * last_nul is false (XS_WRITE's value). Returns the total length or -ENOSPC / -EINVAL. */
int idm_xs_encode(uint32_t type, uint32_t req_id, const char *const *parts, size_t nparts,
                  bool last_nul, uint8_t *buf, size_t cap);
/* Decodes a header at buf (n bytes available): 0 and *hdr when complete and sane (len <=
 * IDM_XS_PAYLOAD_MAX, n >= sizeof hdr + len), -EAGAIN when more bytes are needed, -EPROTO. */
int idm_xs_decode(const uint8_t *buf, size_t n, struct idm_xs_hdr *hdr);

/* Guest side (shim): connect through /dev/xen/{gntalloc,evtchn,xenbus}; no libxen libraries.
 * dir: the xenstore directory relative to the domain (NULL: IDM_XEN_DIR). */
int idm_xen_connect(const char *dir, int timeout_ms, struct idm_chan **out, struct idm_err *err);

/* Host side (broker in dom0): watches /local/domain/<domid>/data/vgpu. Without the Xen libraries
 * at build time these return -ENOTSUP. */
struct idm_xen_listener;
int idm_xen_listen(uint32_t domid, struct idm_xen_listener **out, struct idm_err *err);
/* The fd to poll for new records (readable when the watch fired). */
int idm_xen_listener_fd(const struct idm_xen_listener *l);
/* Accepts one pending record (non-blocking); -EAGAIN if none. A bad record is removed and
 * reported as an error; the caller goes on with the next one. */
int idm_xen_accept(struct idm_xen_listener *l, const struct idm_hello *hello, struct idm_chan **out,
                   struct idm_err *err);
/* Unwatches, removes the domain's data/vgpu directory, frees. NULL is fine. */
void idm_xen_listener_close(struct idm_xen_listener *l);

/* Spin budget before sleeping, in nanoseconds ($VGPU_SPIN_NS overrides). */
uint64_t idm_spin_ns(void);
uint64_t idm_now_ns(void);
static inline void idm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ---- client helpers (used by the shim and by tests that speak raw IDM) ---- */

/* Start a request: reserves header + body + payload_len, fills the header (op, seq, flags);
 * returns the body pointer (payload follows body) or NULL when the ring stays full (the call
 * waits for space, sleeping if needed). */
void *idm_client_begin(struct idm_chan *ch, uint16_t op, uint16_t flags, size_t payload_len,
                       uint64_t *seq_out);
/* Publish what begin reserved and ring the broker if it sleeps. */
int idm_client_send(struct idm_chan *ch);
/* Wait for the reply with this seq (replies come in order; earlier ones are an error). Returns
 * the reply message in the ring (release with idm_client_release) or NULL (peer gone/corrupt). */
const struct idm_msg *idm_client_wait_reply(struct idm_chan *ch, uint64_t seq, struct idm_msg *hdr);
void idm_client_release(struct idm_chan *ch, const struct idm_msg *hdr);

/* Round up to the message alignment, overflow-safe; 0 on overflow. */
static inline size_t idm_align(size_t n)
{
    size_t r;
    if (__builtin_add_overflow(n, (size_t)(IDM_MSG_ALIGN - 1), &r))
        return 0;
    return r & ~(size_t)(IDM_MSG_ALIGN - 1);
}

#ifdef __cplusplus
}
#endif
#endif /* IDM_H */
