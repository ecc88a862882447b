/* SPDY/3.1 framing and header compression, as Kubernetes' streaming protocols use them (kubelet,
 * crictl and kubectl speak SPDY/3.1 through moby/spdystream). A codec only: it parses and builds
 * frames and (de)compresses header blocks; sessions, streams and sockets live in streaming_*.c.
 *
 * Wire format (all integers big-endian):
 *   control frame: |1|version:15|type:16| |flags:8|length:24| |payload: length bytes|
 *   data frame:    |0|stream-id:31|       |flags:8|length:24| |data: length bytes|
 *   SYN_STREAM:    |X|stream-id:31| |X|assoc-stream-id:31| |pri:3|unused:5|slot:8| header block
 *   SYN_REPLY, HEADERS: |X|stream-id:31| header block
 *   RST_STREAM:    |X|stream-id:31| |status:32|
 *   SETTINGS:      |entries:32| entries * (|flags:8|id:24| |value:32|)
 *   PING:          |id:32|
 *   GOAWAY:        |X|last-good-stream-id:31| |status:32|
 *   WINDOW_UPDATE: |X|stream-id:31| |X|delta:31|
 *   header block (before compression): |count:32| count * (|len:32|name| |len:32|value|), values may
 *   hold several values separated by NUL. Each direction of a session has one zlib stream, seeded
 *   with the SPDY/3 dictionary, each block ended with Z_SYNC_FLUSH. */
#ifndef VGPU_SPDY_H
#define VGPU_SPDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <zlib.h>

#include "err.h"

#define SPDY_VERSION 3
#define SPDY_HEADER_LEN 8
#define SPDY_MAX_LENGTH 0xffffffu /* 24-bit length field */
#define SPDY_MAX_STREAM_ID 0x7fffffffu

enum spdy_type {
	SPDY_SYN_STREAM = 1,
	SPDY_SYN_REPLY = 2,
	SPDY_RST_STREAM = 3,
	SPDY_SETTINGS = 4,
	SPDY_PING = 6,
	SPDY_GOAWAY = 7,
	SPDY_HEADERS = 8,
	SPDY_WINDOW_UPDATE = 9,
};

#define SPDY_FLAG_FIN 0x01
#define SPDY_FLAG_UNIDIRECTIONAL 0x02

/* RST_STREAM status codes */
enum spdy_rst_status {
	SPDY_RST_PROTOCOL_ERROR = 1,
	SPDY_RST_INVALID_STREAM = 2,
	SPDY_RST_REFUSED_STREAM = 3,
	SPDY_RST_CANCEL = 5,
	SPDY_RST_INTERNAL_ERROR = 6,
	SPDY_RST_STREAM_IN_USE = 8,
	SPDY_RST_STREAM_ALREADY_CLOSED = 9,
};

/* GOAWAY status codes */
enum spdy_goaway_status {
	SPDY_GOAWAY_OK = 0,
	SPDY_GOAWAY_PROTOCOL_ERROR = 1,
	SPDY_GOAWAY_INTERNAL_ERROR = 2,
};

/* The SPDY/3 zlib dictionary (1423 bytes). */
extern const char spdy_dictionary[];
extern const size_t spdy_dictionary_len;

/* A growable byte buffer; frames are appended to it. */
struct spdy_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};
int spdy_buf_append(struct spdy_buf *b, const void *data, size_t len);
/* Drop the first n bytes. */
void spdy_buf_consume(struct spdy_buf *b, size_t n);
void spdy_buf_free(struct spdy_buf *b);

/* One parsed frame. Pointers point into the buffer given to spdy_frame_parse. */
struct spdy_frame {
	bool control;
	uint16_t version;     /* control frames */
	uint16_t type;        /* control frames: enum spdy_type (unknown types are passed up) */
	uint8_t flags;
	uint32_t length;      /* payload length */
	uint32_t stream_id;   /* data, SYN_*, RST_STREAM, HEADERS, WINDOW_UPDATE; GOAWAY: last good id */
	uint32_t assoc_id;    /* SYN_STREAM */
	uint8_t priority;     /* SYN_STREAM */
	uint32_t status;      /* RST_STREAM, GOAWAY */
	uint32_t ping_id;     /* PING */
	uint32_t delta;       /* WINDOW_UPDATE */
	const uint8_t *data;  /* data frame: the data; SYN_STREAM/SYN_REPLY/HEADERS: the compressed
				 header block; SETTINGS: the entries; else NULL */
	size_t data_len;
};

/* Parse one frame from the front of buf. Returns the number of bytes it takes (> 0), 0 when buf
 * holds no complete frame yet, or -EPROTO for a malformed one (err says why; the session must
 * end with GOAWAY PROTOCOL_ERROR). Frames longer than max_len are -EMSGSIZE. */
ssize_t spdy_frame_parse(const uint8_t *buf, size_t len, size_t max_len, struct spdy_frame *f,
			 struct vgpu_err *err);

/* Decoded header block: names lower-case; value_lens[i] counts NUL separators. */
struct spdy_headers {
	size_t n;
	char **names;
	char **values;      /* each NUL-terminated after value_lens[i] bytes */
	size_t *value_lens;
};
/* First value of header name (case-insensitive), or NULL. */
const char *spdy_headers_get(const struct spdy_headers *h, const char *name);
/* Append a header (copies); returns 0 or -ENOMEM. */
int spdy_headers_add(struct spdy_headers *h, const char *name, const char *value);
void spdy_headers_free(struct spdy_headers *h);

/* Per-session header compression state: one inflate (peer -> us) and one deflate (us -> peer). */
struct spdy_zctx {
	z_stream inflate;
	z_stream deflate;
	bool inflate_ok, deflate_ok;
};
int spdy_zctx_init(struct spdy_zctx *z, struct vgpu_err *err);
void spdy_zctx_fini(struct spdy_zctx *z);

#define SPDY_MAX_HEADER_BLOCK (256u << 10) /* decompressed bytes accepted per block */
#define SPDY_MAX_HEADERS 256

/* Decompress and decode one header block. -EPROTO on malformed input (the zlib stream is then
 * unusable: the session must end). */
int spdy_headers_decode(struct spdy_zctx *z, const uint8_t *block, size_t len, struct spdy_headers *out,
			struct vgpu_err *err);

/* Frame builders: append one complete frame to out. Return 0, -EINVAL (id/length out of range) or
 * -ENOMEM. Header blocks are compressed with z's deflate stream. */
int spdy_put_data(struct spdy_buf *out, uint32_t stream_id, uint8_t flags, const void *data, size_t len);
int spdy_put_syn_stream(struct spdy_buf *out, struct spdy_zctx *z, uint32_t stream_id, uint32_t assoc_id,
			uint8_t priority, uint8_t flags, const struct spdy_headers *h);
int spdy_put_syn_reply(struct spdy_buf *out, struct spdy_zctx *z, uint32_t stream_id, uint8_t flags,
		       const struct spdy_headers *h);
int spdy_put_rst_stream(struct spdy_buf *out, uint32_t stream_id, uint32_t status);
int spdy_put_ping(struct spdy_buf *out, uint32_t id);
int spdy_put_goaway(struct spdy_buf *out, uint32_t last_good_id, uint32_t status);
int spdy_put_window_update(struct spdy_buf *out, uint32_t stream_id, uint32_t delta);
/* SETTINGS with one entry per (id, value) pair, flags 0. */
int spdy_put_settings(struct spdy_buf *out, size_t n, const uint32_t *ids, const uint32_t *values);

#endif
