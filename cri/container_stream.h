/* The streaming server's backend for pods of the runc handler (container_stream.c): Exec through
 * `runc exec`, Attach through the container monitor's attach socket, PortForward through a socket
 * made in the pod's network namespace. */
#ifndef VGPU_CONTAINER_STREAM_H
#define VGPU_CONTAINER_STREAM_H

#include "streaming.h"

struct vgpu_daemon;

/* Fill *b with the pods backend; b->ctx is d, which must outlive the streaming server. */
void vgpu_pods_stream_backend(struct vgpu_daemon *d, struct vgpu_stream_backend *b);

#endif
