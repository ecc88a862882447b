/* cri_client.h: one unary CRI call over gRPC core, for the daemon's client programs (vgpuctl,
 * test/xen/cri-client). Not used by the daemon itself. */
#ifndef VGPU_CRI_CLIENT_H
#define VGPU_CRI_CLIENT_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

/* Calls method ("/runtime.v1.RuntimeService/Version", ...) with req and a deadline of
 * timeout_s. Returns the decoded reply (free with protobuf_c_message_free_unpacked) or NULL.
 * *status: the gRPC status code; *details (caller frees): the status message, or "undecodable
 * reply" when the status is OK but the reply is not a reply_desc. */
ProtobufCMessage *vgpu_cri_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
				 const ProtobufCMessageDescriptor *reply_desc, int timeout_s, int *status,
				 char **details);

#endif
