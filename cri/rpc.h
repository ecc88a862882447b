/* The contract between the gRPC plumbing (grpc_server.c) and the CRI service code: every RPC of
 * RuntimeService and ImageService is one row in the table in rpc_table.c, naming a plain C
 * handler. The plumbing decodes the request, calls the handler, encodes the reply or maps the
 * error to a gRPC status; handlers know nothing about gRPC.
 *
 * Handler rules:
 * - Signature: int fn(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
 *   struct vgpu_err *err). Cast req/resp to the RPC's types (Runtime__V1__FooRequest etc.).
 * - On success return 0 and set *resp to a heap-allocated response whose every string, bytes
 *   field, sub-message and repeated array is malloc'd, because the plumbing frees it with
 *   protobuf_c_message_free_unpacked(resp, NULL).
 * - On failure return a negative errno-style code and fill err (vgpu_err_set); the code becomes
 *   the gRPC status: -ENOENT NOT_FOUND, -EINVAL INVALID_ARGUMENT, -EEXIST ALREADY_EXISTS,
 *   -EBUSY/-ESTALE/-ENODEV FAILED_PRECONDITION, -ENOSYS UNIMPLEMENTED, -EACCES/-EPERM PERMISSION_DENIED,
 *   -ETIMEDOUT DEADLINE_EXCEEDED, -ENOMEM/-ENOSPC RESOURCE_EXHAUSTED, -EAGAIN/-ECONNREFUSED
 *   UNAVAILABLE, -ECANCELED CANCELLED, anything else INTERNAL.
 * - Handlers run concurrently on pool threads: guard shared state with the service's own locks. */
#ifndef VGPU_RPC_H
#define VGPU_RPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "err.h"

struct vgpu_daemon;

typedef int (*vgpu_rpc_fn)(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			   struct vgpu_err *err);

/* For server-streaming RPCs: send one message on the stream; blocks until it is written.
 * Returns 0, or -EPIPE once the client has gone (the handler should return then). */
struct vgpu_stream;
int vgpu_stream_send(struct vgpu_stream *s, const ProtobufCMessage *msg);
/* True once the client cancelled or the daemon is shutting down. */
bool vgpu_stream_done(struct vgpu_stream *s);

typedef int (*vgpu_stream_fn)(struct vgpu_daemon *d, const ProtobufCMessage *req, struct vgpu_stream *s,
			      struct vgpu_err *err);

enum vgpu_rpc_class {
	VGPU_RPC_FAST,   /* quick and read-only: served by the reserved fast threads */
	VGPU_RPC_SLOW,   /* may block (pulls, lifecycle): served by the worker pool */
	VGPU_RPC_STREAM, /* server streaming: one dedicated thread per open stream */
};

struct vgpu_rpc {
	const char *service;  /* "RuntimeService" or "ImageService" */
	const char *method;   /* "Version", ... */
	enum vgpu_rpc_class cls;
	vgpu_rpc_fn fn;       /* NULL = UNIMPLEMENTED (for unary) */
	vgpu_stream_fn stream_fn; /* for VGPU_RPC_STREAM; NULL = UNIMPLEMENTED */
};

/* The table; its descriptors are looked up in the protobuf-c service descriptors by name. */
extern const struct vgpu_rpc vgpu_rpc_table[];
extern const size_t vgpu_rpc_table_len;

#endif
