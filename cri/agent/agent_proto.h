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
 * Containers in the guest (the agent runs them with runc, agent_ctr.c). Every request starts with
 * str container_id (1..AGENT_MAX_ID_LEN of [A-Za-z0-9_.-]):
 *   CTR_CREATE   + str rootfs_dev (absolute guest path of the read-only image disk), str oci_spec_json
 *   CTR_START    -
 *   CTR_STOP     + u32 signal (1..64), u32 timeout_ms (then SIGKILL)
 *   CTR_STATUS   -
 *   CTR_LOGS     + u64 offset, u32 max_bytes (1..AGENT_MAX_LOG_CHUNK): the container's CRI log records
 *   CTR_EXEC     + the EXEC layout (u32 timeout_ms, u32 argc, argv): run in the container (ExecSync)
 *   CTR_REMOVE   -   (kill if still running, runc delete, unmount the rootfs: the disk may go)
 *   CTR_STATS    -   (the container's cgroup in the guest: /sys/fs/cgroup/vgpu/<id>)
 *   CTR_UPDATE   + str resources_json (OCI linux.resources, cgroup v2): `runc update --resources`
 * Replies: OK (empty) to CREATE, START, STOP and REMOVE; CTR_STATE to STATUS; CTR_LOG_DATA to LOGS;
 * EXEC_RESULT to CTR_EXEC; CTR_STATS_DATA to CTR_STATS; OK to CTR_UPDATE; ERROR to any of them.
 *   CTR_STATS_DATA u32 flags (1: cpu read, 2: memory read), u64 cpu_usage_usec, u64 memory_current,
 *                u64 memory_max (0: no limit), u64 inactive_file, u64 anon, u64 pgfault, u64 pgmajfault
 * The pod network (the daemon ran CNI for the pod's netns in the driver domain and joined the vif to
 * it; the guest's interface gets what CNI gave the pod):
 *   NET_CONFIG   str mac ("xx:xx:xx:xx:xx:xx": finds the guest interface), u32 mtu (0: leave),
 *                u32 n_addrs (1..AGENT_MAX_NET_ITEMS), n x str cidr ("10.88.0.5/24", "fd00::5/64"),
 *                u32 n_routes (0..AGENT_MAX_NET_ITEMS), n x (str dst cidr, str gateway or ""),
 *                str resolv_conf (written to the guest's /etc/resolv.conf when not empty). Reply OK.
 *   CTR_STATE    u32 state (AGENT_CTR_*), i32 pid, i32 exit_code, u64 started_ns, u64 finished_ns
 *   CTR_LOG_DATA u64 next_offset, u32 eof (1: exited and everything read), str data
 * u64: two u32, low word first.
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
#define AGENT_MAX_ID_LEN 128u
#define AGENT_MAX_LOG_CHUNK (512u << 10)
#define AGENT_MAX_NET_ITEMS 16u
#define AGENT_MAX_ADDR_LEN 64u      /* "ffff:...:ffff/128" with room to spare */
#define AGENT_MAX_RESOLV_LEN 4096u

enum agent_msg_type {
	AGENT_MSG_HELLO = 1,
	AGENT_MSG_PING = 2,
	AGENT_MSG_PONG = 3,
	AGENT_MSG_EXEC = 4,
	AGENT_MSG_EXEC_RESULT = 5,
	AGENT_MSG_POWEROFF = 6,
	AGENT_MSG_ERROR = 7,
	AGENT_MSG_OK = 8,
	AGENT_MSG_CTR_CREATE = 9,
	AGENT_MSG_CTR_START = 10,
	AGENT_MSG_CTR_STOP = 11,
	AGENT_MSG_CTR_STATUS = 12,
	AGENT_MSG_CTR_STATE = 13,
	AGENT_MSG_CTR_LOGS = 14,
	AGENT_MSG_CTR_LOG_DATA = 15,
	AGENT_MSG_CTR_EXEC = 16,
	AGENT_MSG_CTR_REMOVE = 17,
	/* the pod network and container stats/resources (issue 8's networking part) */
	AGENT_MSG_NET_CONFIG = 18,
	AGENT_MSG_CTR_STATS = 19,
	AGENT_MSG_CTR_STATS_DATA = 20,
	AGENT_MSG_CTR_UPDATE = 21,
	/* copy-in volumes (agent_vol.c) */
	AGENT_MSG_VOL_PUT = 22,
	AGENT_MSG_VOL_GET = 23, /* request and reply (write-back of writable file mounts) */
	AGENT_MSG_LAST = AGENT_MSG_VOL_GET,
};

enum agent_ctr_state_code {
	AGENT_CTR_CREATED = 0,
	AGENT_CTR_RUNNING = 1,
	AGENT_CTR_EXITED = 2,
	AGENT_CTR_UNKNOWN = 3,
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
/* Raw bytes, no length prefix (text built in a buffer, e.g. log records). */
int agent_put_bytes(struct agent_buf *b, const void *p, size_t len);
void agent_buf_free(struct agent_buf *b);
/* Room for more bytes, the buffer growing by doubling up to max in all: 0, -EMSGSIZE, -ENOMEM. */
int agent_buf_reserve(struct agent_buf *b, size_t more, size_t max);

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

int agent_put_u64(struct agent_buf *b, uint64_t v);
int agent_get_u64(struct agent_reader *r, uint64_t *v);

/* Whether type is a container request (CTR_CREATE ... CTR_UPDATE; the numbers are not contiguous). */
int agent_msg_is_ctr_request(uint16_t type);
/* A container request (type CTR_*). Decoded strings and argv are malloc'd, NUL-terminated and
 * owned by the struct (agent_ctr_req_free); for encoding they are borrowed. */
struct agent_ctr_req {
	uint16_t type;
	char *id;
	char *rootfs_dev, *spec_json;  /* CREATE; spec_json: the resources JSON for UPDATE */
	uint32_t signal;               /* STOP */
	uint32_t timeout_ms;           /* STOP, EXEC */
	uint64_t offset;               /* LOGS */
	uint32_t max_bytes;            /* LOGS */
	char **argv;                   /* EXEC, NULL-terminated */
};
/* -EINVAL for a request that breaks the rules above (the daemon's bug, caught before sending). */
int agent_ctr_req_encode(struct agent_buf *b, const struct agent_ctr_req *req);
/* -EPROTO for anything malformed, out of range or with trailing bytes; *out is zeroed on error. */
int agent_ctr_req_decode(uint16_t type, const uint8_t *payload, size_t len, struct agent_ctr_req *out);
void agent_ctr_req_free(struct agent_ctr_req *req);

struct agent_ctr_state {
	uint32_t state;  /* enum agent_ctr_state_code */
	int32_t pid;
	int32_t exit_code;
	uint64_t started_ns, finished_ns;
};
int agent_ctr_state_encode(struct agent_buf *b, const struct agent_ctr_state *st);
int agent_ctr_state_decode(const uint8_t *payload, size_t len, struct agent_ctr_state *out);

/* CTR_LOG_DATA; decoded data points into the payload (borrowed). */
struct agent_ctr_log_data {
	uint64_t next_offset;
	uint32_t eof;
	const uint8_t *data;
	size_t len;
};
int agent_ctr_log_data_encode(struct agent_buf *b, const struct agent_ctr_log_data *d);
int agent_ctr_log_data_decode(const uint8_t *payload, size_t len, struct agent_ctr_log_data *out);

/* CTR_STATS_DATA */
#define AGENT_STATS_CPU 1u
#define AGENT_STATS_MEM 2u
struct agent_ctr_stats {
	uint32_t flags;  /* AGENT_STATS_* */
	uint64_t cpu_usage_usec, memory_current, memory_max, inactive_file, anon, pgfault, pgmajfault;
};
int agent_ctr_stats_encode(struct agent_buf *b, const struct agent_ctr_stats *st);
int agent_ctr_stats_decode(const uint8_t *payload, size_t len, struct agent_ctr_stats *out);

/* NET_CONFIG. Decoded strings are malloc'd, NUL-terminated and owned by the struct
 * (agent_net_config_free); for encoding they are borrowed. Addresses and routes are checked to be
 * plain IPv4/IPv6 text (digits, hex, '.', ':', one '/prefix'), so the agent may hand them to `ip`. */
struct agent_net_route {
	char *dst;  /* cidr */
	char *gw;   /* address or "" (a link route) */
};
struct agent_net_config {
	char *mac;
	uint32_t mtu;
	char *addrs[AGENT_MAX_NET_ITEMS];
	uint32_t n_addrs;
	struct agent_net_route routes[AGENT_MAX_NET_ITEMS];
	uint32_t n_routes;
	char *resolv_conf;
};
/* -EINVAL for a config that breaks the rules above. */
int agent_net_config_encode(struct agent_buf *b, const struct agent_net_config *nc);
/* -EPROTO for anything malformed; *out is zeroed on error. */
int agent_net_config_decode(const uint8_t *payload, size_t len, struct agent_net_config *out);
void agent_net_config_free(struct agent_net_config *nc);
/* Pure checks, exported for the daemon and tests: an address ("10.0.0.1", "fd00::1"), a cidr
 * (address + "/N", N within the family's bits), a MAC "xx:xx:xx:xx:xx:xx". */
int agent_net_addr_ok(const char *s, int want_prefix);
int agent_net_mac_ok(const char *s);

/* ---- Interactive streams (Exec/Attach of the CRI streaming server; agent_stream.c) ----
 * Op numbers from 32 up (18-31 belong to the network/stats work). On the control channel:
 *   CTR_EXEC_STREAM   str container_id, u32 flags (AGENT_STREAM_*), u32 argc (1..AGENT_MAX_ARGS),
 *                     argc x str (no NUL)
 *   CTR_ATTACH_STREAM str container_id, u32 flags (AGENT_STREAM_TTY exactly when the container
 *                     was created with a terminal; the agent refuses a mismatch with EINVAL)
 *   STREAM_OPENED     reply to both: str path ("data/vgpu-stream-<n>", relative to the guest's
 *                     /local/domain/<id>): a fresh vchan the agent serves for this one stream (a
 *                     child of the agent); the process starts once the daemon has connected.
 * On a stream's own vchan, the same 16-byte header (id 0), payload <= AGENT_STREAM_MAX_DATA:
 *   daemon -> agent: STREAM_STDIN data (1..max), STREAM_STDIN_CLOSE -, STREAM_RESIZE u32 width,
 *                    u32 height (1..65535; tty sessions: the pty's size, attach: the container's
 *                    terminal), STREAM_KILL - (kill the process and end), KEEPALIVE -
 *   agent -> daemon: STREAM_STDOUT / STREAM_STDERR data (1..max), STREAM_EXIT i32 exit code (128+N
 *                    for signal N; attach: 0, the container exited), KEEPALIVE -
 * Either side sends KEEPALIVE after 2 s without sending anything; a side silent for
 * AGENT_STREAM_SILENCE_MS is taken as gone. Anything else on a stream vchan ends that stream.
 * Port-forward (CRI PortForward into the pod; ops 43 and up):
 *   POD_PORTFWD_STREAM u32 port (1..65535), nothing else. The agent connects to 127.0.0.1:port in
 *                     the guest's network namespace (the pod's: its containers share it) before it
 *                     answers: STREAM_OPENED, or ERROR with the connect's errno and text. On the
 *                     stream vchan the connection's bytes are STDIN (to the port) and STDOUT (from
 *                     it); STDIN_CLOSE half-closes towards the port, STREAM_STDOUT_CLOSE (guest ->
 *                     daemon, empty) says the port's side half-closed; EXIT 0 once both directions
 *                     ended, or a STDERR text and EXIT errno (1..255) when the connection failed.
 *                     KILL or the daemon's close drop the connection. */
#define AGENT_STREAM_MAX_DATA 16384u
#define AGENT_STREAM_PATH_PREFIX "data/vgpu-stream-"
#define AGENT_STREAM_PATH_MAX 48u
#define AGENT_STREAM_KEEPALIVE_MS 2000
#define AGENT_STREAM_SILENCE_MS 15000
#define AGENT_STREAM_STDIN 1u
#define AGENT_STREAM_STDOUT 2u
#define AGENT_STREAM_STDERR 4u
#define AGENT_STREAM_TTY 8u

enum agent_stream_msg_type {
	AGENT_MSG_STREAM_FIRST = 32,
	AGENT_MSG_CTR_EXEC_STREAM = 32,
	AGENT_MSG_CTR_ATTACH_STREAM = 33,
	AGENT_MSG_STREAM_OPENED = 34,
	AGENT_MSG_STREAM_STDIN = 35,
	AGENT_MSG_STREAM_STDIN_CLOSE = 36,
	AGENT_MSG_STREAM_STDOUT = 37,
	AGENT_MSG_STREAM_STDERR = 38,
	AGENT_MSG_STREAM_RESIZE = 39,
	AGENT_MSG_STREAM_EXIT = 40,
	AGENT_MSG_STREAM_KILL = 41,
	AGENT_MSG_STREAM_KEEPALIVE = 42,
	AGENT_MSG_POD_PORTFWD_STREAM = 43,
	AGENT_MSG_STREAM_STDOUT_CLOSE = 44,
	AGENT_MSG_STREAM_LAST = 44,
};

/* CTR_EXEC_STREAM / CTR_ATTACH_STREAM / POD_PORTFWD_STREAM. Decoded strings are malloc'd and
 * owned by the struct (agent_stream_req_free); for encoding they are borrowed. */
struct agent_stream_req {
	uint16_t type;
	char *id;        /* not for port-forward */
	uint32_t flags;  /* AGENT_STREAM_*; at least one of STDIN/STDOUT/STDERR; TTY excludes STDERR;
			    0 for port-forward */
	char **argv;     /* exec only, NULL-terminated */
	uint32_t port;   /* port-forward only: 1..65535 */
};
/* -EINVAL for a request that breaks the rules above. */
int agent_stream_req_encode(struct agent_buf *b, const struct agent_stream_req *req);
/* -EPROTO for anything malformed; *out is zeroed on error. */
int agent_stream_req_decode(uint16_t type, const uint8_t *payload, size_t len, struct agent_stream_req *out);
void agent_stream_req_free(struct agent_stream_req *req);
/* STREAM_OPENED: path must be AGENT_STREAM_PATH_PREFIX + 1..10 digits. decode copies it into
 * path (NUL-terminated, AGENT_STREAM_PATH_MAX bytes). */
int agent_stream_opened_encode(struct agent_buf *b, const char *path);
int agent_stream_opened_decode(const uint8_t *payload, size_t len, char path[AGENT_STREAM_PATH_MAX]);
/* Is hdr a frame that may come on a stream vchan from the guest (from_guest) or from the daemon?
 * Checks the type's direction and its payload length; 0 or -EPROTO. */
int agent_stream_frame_check(const struct agent_hdr *hdr, int from_guest);
/* The fixed payloads of RESIZE and EXIT (buf: 8 and 4 bytes). */
void agent_stream_resize_encode(uint8_t buf[8], uint32_t width, uint32_t height);
int agent_stream_resize_decode(const uint8_t *payload, size_t len, uint32_t *width, uint32_t *height);
void agent_stream_exit_encode(uint8_t buf[4], int32_t code);
int agent_stream_exit_decode(const uint8_t *payload, size_t len, int32_t *code);

/* ---- Copy-in volumes (CRI mounts of xen containers; the daemon's cri/xen_vol.c, agent_vol.c) ----
 *   VOL_PUT (22)  str key (1..AGENT_MAX_ID_LEN of [A-Za-z0-9_-], the first alphanumeric), u32 flags
 *                 (AGENT_VOL_*), str chunk (0..AGENT_VOL_CHUNK bytes of the volume's record stream).
 *                 Reply OK (ERROR when END fails). A stream is BEGIN ... END in consecutive
 *                 requests of one connection; BEGIN drops an unfinished stream, END applies it to
 *                 /run/vgpu-agent/vol/<key>/ (a volume that exists is kept unless REPLACE).
 * The record stream, records back to back, parents before their children:
 *   u32 type (AGENT_VOL_DIR/FILE/LINK), u32 mode (permission bits, & 0777 applied), u32 path_len,
 *   path (relative: components of 1..255 bytes, no "", ".", "..", NUL, no leading or double '/'),
 *   u32 data_len, data (a file's content or a symlink's target; 0 for a directory).
 * A FILE volume (AGENT_VOL_ISFILE) is one FILE record named "file": its content is rewritten in place
 * on REPLACE (a bind-mounted file keeps its inode). */
#define AGENT_VOL_BEGIN 1u
#define AGENT_VOL_END 2u
#define AGENT_VOL_REPLACE 4u
#define AGENT_VOL_ISFILE 8u
#define AGENT_VOL_FLAGS_ALL 15u
#define AGENT_VOL_CHUNK (512u << 10)
#define AGENT_VOL_MAX_BYTES (8u << 20)    /* file contents of one volume */
#define AGENT_VOL_MAX_ENTRIES 1024u
#define AGENT_VOL_MAX_PATH 4096u
#define AGENT_VOL_MAX_DEPTH 32u
#define AGENT_VOL_MAX_STREAM (AGENT_VOL_MAX_BYTES + AGENT_VOL_MAX_ENTRIES * (16u + 2u * AGENT_VOL_MAX_PATH))
#define AGENT_VOL_DIR 1u
#define AGENT_VOL_FILE 2u
#define AGENT_VOL_LINK 3u
#define AGENT_VOL_FILE_NAME "file"

/* VOL_PUT; a decoded key is copied (NUL-terminated), the chunk points into the payload. */
struct agent_vol_put {
	char key[AGENT_MAX_ID_LEN + 1];
	uint32_t flags;
	const uint8_t *data;
	size_t len;
};
int agent_vol_key_ok(const char *key, size_t len);
/* -EINVAL for a bad key, flags or chunk size. */
int agent_vol_put_encode(struct agent_buf *b, const char *key, uint32_t flags, const void *data, size_t len);
/* -EPROTO for anything malformed or trailing bytes. */
int agent_vol_put_decode(const uint8_t *payload, size_t len, struct agent_vol_put *out);

/* One record of a volume's stream; path and data point into the stream (path not NUL-terminated). */
struct agent_vol_rec {
	uint32_t type, mode;
	const char *path;
	size_t path_len;
	const uint8_t *data;
	size_t data_len;
};
/* Is path a valid relative record path (rules above)? */
int agent_vol_path_ok(const char *path, size_t len);
/* Append a record to a stream buffer: grows without the payload cap, up to AGENT_VOL_MAX_STREAM
 * (-EMSGSIZE); -EINVAL for a bad type or path. */
int agent_vol_rec_put(struct agent_buf *b, const struct agent_vol_rec *rec);
/* The next record: 1 and *out, 0 at the end, -EPROTO for a malformed record (bad type, path,
 * a directory with data, a link target empty or with NUL, lengths past the end). */
int agent_vol_rec_next(struct agent_reader *r, struct agent_vol_rec *out);

/* ---- Write-back of writable single-file mounts (kubelet's termination message) ----
 *   VOL_GET (23)  daemon -> agent: str key (as VOL_PUT's) of a FILE volume.
 *                 agent -> daemon, the reply, same type: u32 flags (AGENT_VOL_GET_TRUNCATED: the
 *                 guest's file is longer than AGENT_VOL_GET_MAX and data is its first
 *                 AGENT_VOL_GET_MAX bytes), str data (0..AGENT_VOL_GET_MAX bytes). ERROR when the
 *                 volume's file is missing, a symlink or not a regular file.
 * The daemon writes data over the mount's host file once the container has exited (xen_vol.h). */
#define AGENT_VOL_GET_MAX (64u << 10)
#define AGENT_VOL_GET_TRUNCATED 1u
struct agent_vol_data {
	uint32_t flags;
	const uint8_t *data; /* into the payload */
	size_t len;
};
/* -EINVAL for a bad key. */
int agent_vol_get_encode(struct agent_buf *b, const char *key);
/* key gets a copy (NUL-terminated); -EPROTO for a bad key or trailing bytes. */
int agent_vol_get_decode(const uint8_t *payload, size_t len, char key[AGENT_MAX_ID_LEN + 1]);
/* -EINVAL for unknown flags, len > AGENT_VOL_GET_MAX, or TRUNCATED with len != AGENT_VOL_GET_MAX. */
int agent_vol_data_encode(struct agent_buf *b, uint32_t flags, const void *data, size_t len);
/* -EPROTO for any truncation, trailing bytes, unknown flags, data over AGENT_VOL_GET_MAX, or TRUNCATED
 * with less than AGENT_VOL_GET_MAX bytes. */
int agent_vol_data_decode(const uint8_t *payload, size_t len, struct agent_vol_data *out);

#endif
