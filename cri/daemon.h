/* The daemon's top-level state, handed to every RPC handler. Each service area keeps its own state
 * behind an opaque pointer with its own lock; this struct itself is written only at start-up and
 * shutdown (single-threaded), except the fields marked otherwise. */
#ifndef VGPU_DAEMON_H
#define VGPU_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>

#include "config.h"

struct vgpu_image_store;   /* cri/image_store.c */
struct vgpu_pod_manager;   /* cri/sandbox.c, cri/container.c */
struct vgpu_streaming;     /* cri/streaming.c: Exec/Attach/PortForward server */
struct vgpu_gpu;           /* cri/gpu.c: broker and GPU pods */
struct vgpu_metrics_http;  /* cri/metrics_http.c: Prometheus endpoint */

struct vgpu_daemon {
	struct vgpu_config *cfg;
	long long start_wall_ns;

	/* UpdateRuntimeConfig: guarded by lock */
	pthread_mutex_t lock;
	char *pod_cidr;

	struct vgpu_image_store *images;
	struct vgpu_pod_manager *pods;
	struct vgpu_streaming *streaming; /* NULL until started */
	struct vgpu_gpu *gpu;
	struct vgpu_metrics_http *metrics_http;

	atomic_bool shutting_down;
};

#endif

#ifndef VGPU_DAEMON_FUNCS
#define VGPU_DAEMON_FUNCS
/* Open every service's state (stores, pods) under cfg's directories. */
int vgpu_daemon_init(struct vgpu_daemon *d, struct vgpu_config *cfg, struct vgpu_err *err);
/* Close what init opened, in reverse order. */
void vgpu_daemon_fini(struct vgpu_daemon *d);
#endif
