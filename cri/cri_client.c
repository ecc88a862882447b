/* cri_client.c: one unary CRI call over gRPC core (see cri_client.h). */
#include "cri_client.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

ProtobufCMessage *vgpu_cri_unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
				 const ProtobufCMessageDescriptor *reply_desc, int timeout_s, int *status_out,
				 char **details_out)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(timeout_s, GPR_TIMESPAN));
	grpc_slice m = grpc_slice_from_static_string(method);
	grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline, NULL);
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		abort();
	protobuf_c_message_pack(req, buf);
	grpc_slice s = grpc_slice_new(buf, len, free);
	grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	grpc_metadata_array initial, trailing;
	grpc_metadata_array_init(&initial);
	grpc_metadata_array_init(&trailing);
	grpc_byte_buffer *recv = NULL;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[6];
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
	ops[5].data.recv_status_on_client.status = &status;
	ops[5].data.recv_status_on_client.status_details = &details;
	ProtobufCMessage *reply = NULL;
	char *msg = NULL;
	if (grpc_call_start_batch(call, ops, 6, &ops, NULL) == GRPC_CALL_OK) {
		grpc_completion_queue_pluck(cq, &ops, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (status != GRPC_STATUS_OK) {
			char *d = grpc_slice_to_c_string(details);
			msg = strdup(d);
			gpr_free(d);
		} else if (recv) {
			grpc_byte_buffer_reader r;
			if (grpc_byte_buffer_reader_init(&r, recv)) {
				grpc_slice all = grpc_byte_buffer_reader_readall(&r);
				reply = protobuf_c_message_unpack(reply_desc, NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
				grpc_slice_unref(all);
				grpc_byte_buffer_reader_destroy(&r);
			}
		}
		if (status == GRPC_STATUS_OK && !reply)
			msg = strdup("undecodable reply");
	} else {
		msg = strdup("cannot start the call");
	}
	if (recv)
		grpc_byte_buffer_destroy(recv);
	grpc_byte_buffer_destroy(send);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&initial);
	grpc_metadata_array_destroy(&trailing);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	if (status_out)
		*status_out = (int)status;
	if (details_out)
		*details_out = msg;
	else
		free(msg);
	return reply;
}
