/* The protocol between the daemon (driver domain) and vgpu-agent (PID 1 in a pod's domU), carried
 * over a libxenvchan whose server is the agent (the guest grants the ring pages; the daemon maps
 * them), at xenstore path /local/domain/<guest>/data/vgpu-agent. Shared by the agent and the
 * daemon: no libc beyond memory and strings, no Xen, so it is unit-tested in normal CI.
 *
 * Wire format, every integer little-endian:
 *   header (16 bytes): u32 magic "VGA1" (0x31414756), u16 type, u16 flags (0), u32 id, u32 len
 *   payload: len bytes, len <= AGENT_MAX_PAYLOAD
 * A request carries an id chosen by the daemon; the reply (or AGENT_MSG_ERROR) carries the same id.
 * Payload fields: u32, i32 and strings (u32 byte length + bytes, no NUL on the wire).
 *   HELLO        agent -> daemon, id 0, once the vchan is up: str agent_version, u32 proto_version
 *   PING / PONG  empty
 *   EXEC         u32 timeout_ms, u32 argc (1..AGENT_MAX_ARGS), argc x str   (ExecSync skeleton)
 *   EXEC_RESULT  i32 exit_code (-signal if killed), str stdout, str stderr
 *   POWEROFF     empty; the agent syncs and powers the domain off
 *   ERROR        i32 negative errno, str message
 */
#ifndef VGPU_AGENT_PROTO_H
#define VGPU_AGENT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define AGENT_MAGIC 0x31414756u /* "VGA1" */
#define AGENT_PROTO_VERSION 1u
#define AGENT_HDR_SIZE 16u
#define AGENT_MAX_PAYLOAD (1u << 20)
#define AGENT_MAX_ARGS 256u
#define AGENT_VCHAN_PATH "data/vgpu-agent" /* relative to the guest's /local/domain/<id> */

enum agent_msg_type {
	AGENT_MSG_HELLO = 1,
	AGENT_MSG_PING = 2,
	AGENT_MSG_PONG = 3,
	AGENT_MSG_EXEC = 4,
	AGENT_MSG_EXEC_RESULT = 5,
	AGENT_MSG_POWEROFF = 6,
	AGENT_MSG_ERROR = 7,
};

struct agent_hdr {
	uint16_t type;
	uint16_t flags;
	uint32_t id;
	uint32_t len;
};

/* A growable output buffer; data is malloc'd and owned by the buffer (agent_buf_free). */
struct agent_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

/* A bounds-checked reader over a payload (borrowed). */
struct agent_reader {
	const uint8_t *p;
	size_t left;
};

void agent_hdr_encode(uint8_t out[AGENT_HDR_SIZE], const struct agent_hdr *hdr);
/* -EPROTO for a bad magic or flags, -EMSGSIZE for len > AGENT_MAX_PAYLOAD, -EINVAL for a type
 * outside the enum. */
int agent_hdr_decode(const uint8_t in[AGENT_HDR_SIZE], struct agent_hdr *hdr);

/* Append helpers return 0 or -ENOMEM / -EMSGSIZE (payload would exceed AGENT_MAX_PAYLOAD). */
int agent_put_u32(struct agent_buf *b, uint32_t v);
int agent_put_str(struct agent_buf *b, const char *s, size_t len);
void agent_buf_free(struct agent_buf *b);

/* Readers return 0 or -EPROTO when the payload is too short or a length runs past its end. A
 * string is returned as a pointer into the payload plus its length (not NUL-terminated). */
int agent_get_u32(struct agent_reader *r, uint32_t *v);
int agent_get_str(struct agent_reader *r, const char **s, size_t *len);

/* EXEC: encode argv (NULL-terminated); decode into a malloc'd NULL-terminated argv of malloc'd
 * NUL-terminated strings (free with agent_argv_free). Strings containing NUL are -EPROTO. */
int agent_exec_encode(struct agent_buf *b, const char *const *argv, uint32_t timeout_ms);
int agent_exec_decode(const uint8_t *payload, size_t len, char ***argv_out, uint32_t *timeout_ms);
void agent_argv_free(char **argv);

/* EXEC_RESULT */
int agent_exec_result_encode(struct agent_buf *b, int32_t exit_code, const void *out, size_t out_len,
			     const void *err, size_t err_len);

#endif
