/* The gRPC plumbing: a gRPC C core server on the CRI unix socket that serves the RPC table in
 * rpc_table.c. It knows nothing about pods: it decodes, calls a handler, encodes. */
#ifndef VGPU_GRPC_SERVER_H
#define VGPU_GRPC_SERVER_H

#include <stdbool.h>

#include "err.h"

struct vgpu_daemon;
struct vgpu_grpc_server;

/* Bind the socket in d->cfg, start the worker threads and serve. */
int vgpu_grpc_server_start(struct vgpu_daemon *d, struct vgpu_grpc_server **out, struct vgpu_err *err);

/* Stop accepting calls, let in-flight calls finish for up to timeout_s seconds, cancel what is
 * left, join all threads and free the server. Returns false when a handler is still stuck after
 * the cancellation (the server is then left as it is: the caller should exit without freeing
 * state those handlers may still use). */
bool vgpu_grpc_server_stop(struct vgpu_grpc_server *s, long long timeout_s);

#endif
