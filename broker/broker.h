/* broker.h: the GPU broker. A fixed pool of worker threads serves the IDM channels of all pods;
 * each pod has its own socket, GPU context, quota and usage counters. Built to be embedded in the
 * daemon (cri/) and used standalone by test/gpu/broker_host.
 *
 * Errors: functions return 0 or a negative errno-style code and fill an optional struct idm_err.
 * Thread safety: every function may be called from any thread, concurrently. */
#ifndef BROKER_H
#define BROKER_H

#include <stdint.h>

#include "idm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct broker broker_t;

struct broker_config {
    const char *backend;  /* "cuda" (real GPU through dlopen of libcuda.so.1) or "soft" (TEST DEVICE) */
    unsigned workers;     /* worker threads; 0: 4 */
    int device;           /* GPU ordinal for `cuda` */
    const char *libcuda;  /* path for `cuda`; NULL: "libcuda.so.1" */
    /* > 0: serve each pod from its own process (a GPU fault such as an illegal address poisons
     * every CUDA context of a process, so a process per pod is the fault domain; the process
     * is restarted after a fault). < 0: all pods in this process. 0: per pod for `cuda`,
     * in-process for `soft`. */
    int pod_processes;
};

/* Per-pod usage, a snapshot. Times in nanoseconds. */
struct broker_usage {
    uint64_t mem_in_use;     /* bytes of GPU memory allocated now */
    uint64_t mem_peak;       /* high-water mark of mem_in_use */
    uint64_t quota_bytes;
    uint64_t launches;       /* kernel launches */
    uint64_t busy_ns;        /* time the broker waited on the GPU for this pod (see docs/gpu-path.md) */
    uint64_t bytes_htod;
    uint64_t bytes_dtoh;
    uint64_t calls;          /* IDM operations served */
    uint64_t errors;         /* operations that failed */
    uint64_t channels;       /* open channels now */
    uint64_t channels_total; /* channels accepted since the pod was added */
    uint64_t gpu_turn_ns;    /* GPU turns this pod had while other pods waited (compute shares) */
    uint64_t gpu_wait_ns;    /* time its operations waited for the GPU turn of another pod */
};

int broker_create(const struct broker_config *cfg, broker_t **out, struct idm_err *err);
/* Closes every pod (as broker_pod_remove), stops the workers, frees everything. NULL is fine. */
void broker_destroy(broker_t *b);

/* Adds a pod: creates its GPU context and listens on socket_path (created, mode 0666, replaced
 * if a stale socket is there). quota_bytes 0: no quota. compute_share: percent 1..100 (0: 100):
 * while several pods have GPU work queued, each gets GPU busy time in proportion to its share;
 * a pod alone gets the whole GPU (broker/gpu_sched.h). */
int broker_pod_add(broker_t *b, const char *pod_id, const char *socket_path, uint64_t quota_bytes,
                   unsigned compute_share, struct idm_err *err);
/* Adds a pod whose containers run in Xen domain domid (the `xen` handler): instead of a socket,
 * channels are offered through xenstore under /local/domain/<domid>/data/vgpu with granted pages
 * and an event channel (idm.h, Xen transport); the pod is that domid. In-process broker only
 * (-ENOTSUP with pod processes, or when built without the Xen libraries). */
int broker_pod_add_xen(broker_t *b, const char *pod_id, uint32_t domid, uint64_t quota_bytes,
                       unsigned compute_share, struct idm_err *err);
/* Removes a pod: stops listening (unlinks the socket), closes its channels, frees all its GPU
 * objects and its context. Returns when all of that is done. */
int broker_pod_remove(broker_t *b, const char *pod_id, struct idm_err *err);
int broker_pod_usage(broker_t *b, const char *pod_id, struct broker_usage *out,
                     struct idm_err *err);

/* `soft` backend only: a test kernel run as a host function. The soft device is a TEST DOUBLE
 * for CI machines without a GPU; its kernels are these registered functions, found by name when
 * a module image mentions ".entry <name>". */
struct broker_soft_launch {
    uint32_t grid[3], block[3];
    void **params;         /* one pointer per parameter, as cuLaunchKernel's kernelParams */
    void *ctx;             /* for broker_soft_ptr */
};
typedef int (*broker_soft_kernel_fn)(const struct broker_soft_launch *l);
/* Registers a kernel with its parameter sizes (offsets are packed with natural alignment).
 * Call before broker_create. Returns 0 or -EINVAL/-ENOMEM. */
int broker_soft_register(const char *name, broker_soft_kernel_fn fn, unsigned nparams,
                         const uint32_t *param_sizes);
/* Inside a soft kernel: host address of device range [dptr, dptr+len) of the pod, or NULL if it
 * is not inside one of the pod's allocations (the kernel then fails with ILLEGAL_ADDRESS). */
void *broker_soft_ptr(void *ctx, uint64_t dptr, uint64_t len);

#ifdef __cplusplus
}
#endif
#endif /* BROKER_H */
