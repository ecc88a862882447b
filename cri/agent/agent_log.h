/* CRI log records for containers in the guest (the format kubelet reads, the same as vgpu-monitor
 * writes on the runc handler): "<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\n". A complete
 * line is one F record; a partial line (no newline yet) becomes a P record when it is flushed: it
 * filled the line buffer, nothing more came for a while, or the stream ended. Pure: no I/O, so it
 * is unit-tested in normal CI (test/unit/agent_log_test.c). */
#ifndef VGPU_AGENT_LOG_H
#define VGPU_AGENT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_proto.h"

#define AGENT_LOG_LINE_MAX 16384u  /* a longer line is cut into P records of this size */
#define AGENT_LOG_TS_LEN 48        /* "2026-11-28T23:37:02.123456789Z" + NUL, with room */

/* One stream's bytes not yet written as records. */
struct agent_log_stream {
	const char *name;                 /* "stdout" or "stderr" (borrowed) */
	uint8_t pending[AGENT_LOG_LINE_MAX];
	size_t len;
};

/* RFC3339Nano in UTC with all nine digits (kubelet's parser accepts it; it sorts as text). */
void agent_log_timestamp(char out[AGENT_LOG_TS_LEN], uint64_t wall_ns);

/* Take data into the stream and append a record for every complete line to out (with timestamp
 * wall_ns); a full line buffer is written as a P record. 0 or -ENOMEM/-EMSGSIZE from out. */
int agent_log_feed(struct agent_log_stream *st, const uint8_t *data, size_t len, uint64_t wall_ns,
		   struct agent_buf *out);

/* Write what is pending as a P record (nothing if nothing is pending). */
int agent_log_flush(struct agent_log_stream *st, uint64_t wall_ns, struct agent_buf *out);

#endif
