/* GPU pods in the daemon: the in-process broker (broker/), which pods ask for a GPU (annotations
 * plus handler defaults), their broker sockets, what each container gets injected, and per-pod
 * usage for the CRI metrics RPCs, Prometheus and vgpuctl. */
#ifndef VGPU_GPU_H
#define VGPU_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "rpc.h"

#define VGPU_ANNOTATION_GPU "vgpu.io/gpu"
#define VGPU_ANNOTATION_GPU_MEMORY "vgpu.io/gpu-memory"
#define VGPU_ANNOTATION_GPU_COMPUTE "vgpu.io/gpu-compute"

/* Paths inside every container of a GPU pod. */
#define VGPU_CONTAINER_SHIM_DIR "/usr/lib/vgpu"
#define VGPU_CONTAINER_SOCKET_DIR "/run/vgpu"
#define VGPU_CONTAINER_SOCKET VGPU_CONTAINER_SOCKET_DIR "/vgpu.sock"

struct vgpu_gpu;

struct vgpu_gpu_request {
	bool enabled;
	uint64_t quota_bytes;   /* 0 = no quota beyond the card */
	unsigned compute_share; /* percent, 1..100 */
};

/* Parse "4Gi", "512Mi", "1G", "1500000" (Kubernetes quantity suffixes Ki Mi Gi Ti, k M G T, or
 * bytes). -EINVAL for anything else, for zero and on overflow. */
int vgpu_quantity_parse(const char *s, uint64_t *out);

/* The GPU request of a pod from its annotations (parallel key/value arrays) and its handler's
 * defaults. -EINVAL with a message naming the annotation for bad values. */
int vgpu_gpu_parse_request(const struct vgpu_handler_config *h, size_t n, const char *const *keys,
			   const char *const *values, struct vgpu_gpu_request *out, struct vgpu_err *err);

/* Start the broker per cfg->gpu_backend: "cuda" (fails without a GPU), "soft" (the software TEST
 * device), "auto" (cuda if it starts, else no GPU), "none". Without a GPU the rest of the
 * runtime works and GPU pods are refused with a clear error. Never fails for auto/none. */
int vgpu_gpu_open(const struct vgpu_config *cfg, struct vgpu_gpu **out, struct vgpu_err *err);
void vgpu_gpu_close(struct vgpu_gpu *g);
/* "cuda", "soft" or "none" (what actually runs). */
const char *vgpu_gpu_backend(const struct vgpu_gpu *g);

/* Give a sandbox its broker socket (run_dir/gpu/<sandbox_id>/vgpu.sock) and quota. The socket's
 * directory is what containers get bind-mounted at VGPU_CONTAINER_SOCKET_DIR. -ENODEV when no GPU
 * backend runs; -EEXIST if the sandbox is already registered. */
int vgpu_gpu_pod_add(struct vgpu_gpu *g, const char *sandbox_id, const char *pod_namespace, const char *pod_name,
		     const char *pod_uid, const struct vgpu_gpu_request *req, struct vgpu_err *err);
/* The same for a pod of the xen handler whose domain is domid: the broker takes channel offers
 * from that domain's xenstore path (granted rings, idm.h's Xen transport) instead of a socket. */
int vgpu_gpu_pod_add_xen(struct vgpu_gpu *g, const char *sandbox_id, const char *pod_namespace,
			 const char *pod_name, const char *pod_uid, const struct vgpu_gpu_request *req, uint32_t domid,
			 struct vgpu_err *err);
/* Close the pod's channels and free all its GPU objects (StopPodSandbox); idempotent. */
int vgpu_gpu_pod_stop(struct vgpu_gpu *g, const char *sandbox_id, struct vgpu_err *err);
/* Forget the pod and remove its socket directory (RemovePodSandbox); idempotent. */
int vgpu_gpu_pod_remove(struct vgpu_gpu *g, const char *sandbox_id, struct vgpu_err *err);

/* What a container of a GPU pod gets: bind mounts (host path -> container path, read-only) and env. */
/* Where the xen guest's initramfs keeps the shim (test/xen/build.sh; docs/deploy-xen.md). */
#define VGPU_XEN_GUEST_SHIM "/usr/lib/vgpu/libvgpu.so"

struct vgpu_gpu_injection {
	bool xen;           /* a xen pod: shim_path is a path in the guest, no socket_dir, env selects
			     * the Xen transport; the container also needs /dev/xen/{evtchn,gntalloc,xenbus} */
	char *socket_dir;   /* host dir -> VGPU_CONTAINER_SOCKET_DIR */
	char *shim_path;    /* host libvgpu.so -> VGPU_CONTAINER_SHIM_DIR/libcuda.so.1 (and over the image's libcuda.so.1) */
	char **env;         /* NULL-terminated "K=V" */
};
/* -ENOENT if the sandbox has no GPU. */
int vgpu_gpu_injection(struct vgpu_gpu *g, const char *sandbox_id, struct vgpu_gpu_injection *out,
		       struct vgpu_err *err);
void vgpu_gpu_injection_free(struct vgpu_gpu_injection *inj);
/* Container paths ("/usr/lib/x86_64-linux-gnu/libcuda.so.1", ...) of the image's own libcuda.so.1
 * in the usual library dirs of rootfs, each resolved inside rootfs (symlinks followed as if rootfs
 * were /, so none leads out of it) and a regular file; deduplicated. The shim is bind-mounted over
 * each. NULL-terminated, caller frees with vgpu_strv_free; empty when there are none. */
char **vgpu_gpu_image_libcuda(const char *rootfs);

/* One line of JSON with the pod's GPU quota and usage (PodSandboxStatus verbose info); NULL if none. */
char *vgpu_gpu_pod_info_json(struct vgpu_gpu *g, const char *sandbox_id);

/* Prometheus text exposition of every GPU pod's usage (malloc'd). */
char *vgpu_gpu_prometheus_text(struct vgpu_gpu *g);

/* CRI RPCs */
int vgpu_rpc_list_metric_descriptors(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
				     struct vgpu_err *err);
int vgpu_rpc_list_pod_sandbox_metrics(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
				      struct vgpu_err *err);

#endif
