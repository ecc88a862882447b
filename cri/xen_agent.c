/* vchan client to vgpu-agent (see xen_agent.h): non-blocking libxenvchan reads and writes, waiting on
 * the channel's event channel fd with poll() against a deadline. */
#include "xen_agent.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxenvchan.h>
#include <pthread.h>
#include <xentoollog.h>

#include "agent/agent_proto.h"
#include "log.h"
#include "util.h"

/* After the channel is mapped, HELLO must follow quickly; if not, the mapping was of a channel the
 * agent is just tearing down (a previous client went), and we connect again. */
#define HELLO_WAIT_MS 3000

struct vgpu_xen_agent {
	struct libxenvchan *ch;
	uint32_t domid;
	uint32_t next_id;
	bool broken;      /* a channel error: the stream may be out of step, reconnect */
	uint8_t *payload; /* AGENT_MAX_PAYLOAD bytes: the last message received */
};

/* libxenvchan's retries while the guest boots would otherwise print an error every 100 ms */
static xentoollog_logger *quiet_logger;
static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;

static void make_quiet_logger(void)
{
	quiet_logger = (xentoollog_logger *)xtl_createlogger_stdiostream(stderr, XTL_CRITICAL, 0);
}

static long long ms_left(long long deadline_ns)
{
	long long left = (deadline_ns - vgpu_now_ns()) / 1000000;
	return left > 0 ? left : 0;
}

/* Wait for the peer to signal (data, space or close); -ETIMEDOUT at the deadline. */
static int wait_event(struct vgpu_xen_agent *a, long long deadline_ns)
{
	struct pollfd pfd = { .fd = libxenvchan_fd_for_select(a->ch), .events = POLLIN };
	for (;;) {
		long long left = ms_left(deadline_ns);
		if (left == 0)
			return -ETIMEDOUT;
		int n = poll(&pfd, 1, left > 1000 ? 1000 : (int)left);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0) {
			libxenvchan_wait(a->ch); /* consume the notification (readable: does not block) */
			return 0;
		}
		if (!libxenvchan_is_open(a->ch))
			return -EPIPE;
	}
}

/* Moves len bytes through the vchan (in 16 KiB steps), waiting on its event channel until the
 * deadline; -EPIPE when the guest's side is gone. */
static int xfer_full(struct vgpu_xen_agent *a, void *buf, size_t len, bool writing, long long deadline_ns)
{
	for (size_t done = 0; done < len;) {
		size_t want = len - done > 16384 ? 16384 : len - done;
		int n = writing ? libxenvchan_write(a->ch, (const char *)buf + done, want)
				: libxenvchan_read(a->ch, (char *)buf + done, want);
		if (n < 0)
			return -EPIPE;
		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (!libxenvchan_is_open(a->ch))
			return -EPIPE;
		int r = wait_event(a, deadline_ns);
		if (r < 0)
			return r;
	}
	return 0;
}

static int read_full(struct vgpu_xen_agent *a, void *buf, size_t len, long long deadline_ns)
{
	return xfer_full(a, buf, len, false, deadline_ns);
}

static int write_full(struct vgpu_xen_agent *a, const void *buf, size_t len, long long deadline_ns)
{
	return xfer_full(a, (void *)buf, len, true, deadline_ns);
}

static int send_msg(struct vgpu_xen_agent *a, uint16_t type, uint32_t id, const struct agent_buf *b,
		    long long deadline_ns)
{
	struct agent_hdr hdr = { .type = type, .id = id, .len = b ? (uint32_t)b->len : 0 };
	uint8_t raw[AGENT_HDR_SIZE];
	agent_hdr_encode(raw, &hdr);
	int r = write_full(a, raw, sizeof(raw), deadline_ns);
	if (r == 0 && b && b->len)
		r = write_full(a, b->data, b->len, deadline_ns);
	return r;
}

/* Next message into a->payload. */
static int recv_msg(struct vgpu_xen_agent *a, struct agent_hdr *hdr, long long deadline_ns)
{
	uint8_t raw[AGENT_HDR_SIZE];
	int r = read_full(a, raw, sizeof(raw), deadline_ns);
	if (r < 0)
		return r;
	if (agent_hdr_decode(raw, hdr) < 0)
		return -EPROTO;
	return read_full(a, a->payload, hdr->len, deadline_ns);
}

static int channel_err(struct vgpu_xen_agent *a, struct vgpu_err *err, int r, const char *what)
{
	const char *why = r == -ETIMEDOUT ? "no answer in time"
			  : r == -EPIPE	  ? "channel closed"
			  : r == -EPROTO   ? "protocol error"
					   : strerror(-r);
	a->broken = true;
	return vgpu_err_set(err, r, "agent of domain %u: %s: %s", a->domid, what, why);
}

/* The agent's ERROR reply as our error. */
static int agent_error(struct vgpu_xen_agent *a, const struct agent_hdr *hdr, struct vgpu_err *err, const char *what)
{
	struct agent_reader rd = { a->payload, hdr->len };
	uint32_t code = 0;
	const char *msg = "";
	size_t msg_len = 0;
	if (agent_get_u32(&rd, &code) < 0 || agent_get_str(&rd, &msg, &msg_len) < 0)
		return channel_err(a, err, -EPROTO, what);
	int c = (int32_t)code < 0 ? (int32_t)code : -EIO;
	return vgpu_err_set(err, c, "agent of domain %u: %s: %.*s", a->domid, what, (int)(msg_len > 512 ? 512 : msg_len),
			    msg);
}

static void agent_free(struct vgpu_xen_agent *a)
{
	if (a->ch)
		libxenvchan_close(a->ch);
	free(a->payload);
	free(a);
}

int vgpu_xen_agent_connect(uint32_t domid, long long timeout_ms, struct vgpu_xen_agent **out, char *version,
			   size_t version_len, struct vgpu_err *err)
{
	long long t0 = vgpu_now_ns(), deadline = t0 + timeout_ms * 1000000LL;
	char path[128];
	int last = -ETIMEDOUT, attempts = 0;
	snprintf(path, sizeof(path), "/local/domain/%u/%s", domid, AGENT_VCHAN_PATH);
	*out = NULL;
	pthread_once(&quiet_once, make_quiet_logger);
	while (vgpu_now_ns() < deadline) {
		struct libxenvchan *ch = libxenvchan_client_init(quiet_logger, (int)domid, path);
		if (!ch) { /* the agent has not offered its channel yet */
			usleep(100 * 1000);
			continue;
		}
		attempts++;
		ch->blocking = 0;
		struct vgpu_xen_agent *a = vgpu_calloc(1, sizeof(*a));
		a->ch = ch;
		a->domid = domid;
		a->next_id = 1;
		a->payload = vgpu_calloc(1, AGENT_MAX_PAYLOAD);
		struct agent_hdr hdr;
		long long hello_deadline = vgpu_now_ns() + HELLO_WAIT_MS * 1000000LL;
		if (hello_deadline > deadline)
			hello_deadline = deadline;
		int r = recv_msg(a, &hdr, hello_deadline);
		if (r == 0 && hdr.type != AGENT_MSG_HELLO)
			r = -EPROTO;
		struct agent_reader rd = { a->payload, r == 0 ? hdr.len : 0 };
		const char *v = "";
		size_t vlen = 0;
		uint32_t proto = 0;
		if (r == 0 && (agent_get_str(&rd, &v, &vlen) < 0 || agent_get_u32(&rd, &proto) < 0))
			r = -EPROTO;
		if (r == 0 && proto != AGENT_PROTO_VERSION) {
			r = vgpu_err_set(err, -EPROTO, "agent of domain %u speaks protocol %u, we speak %u", domid, proto,
					 AGENT_PROTO_VERSION);
			agent_free(a);
			return r;
		}
		if (r == 0) {
			if (version && version_len)
				snprintf(version, version_len, "%.*s", (int)(vlen < version_len ? vlen : version_len - 1), v);
			vgpu_log(VGPU_LOG_DEBUG, "domain %u: agent %.*s connected after %lld ms (%d attempts)", domid,
				 (int)(vlen > 64 ? 64 : vlen), v, (vgpu_now_ns() - t0) / 1000000, attempts);
			*out = a;
			return 0;
		}
		last = r;
		agent_free(a);
		if (r == -EPROTO) /* the guest wrote garbage where HELLO belongs: it is broken, not slow */
			return vgpu_err_set(err, -EPROTO, "agent of domain %u: garbage instead of HELLO after %lld ms",
					    domid, (vgpu_now_ns() - t0) / 1000000);
		usleep(100 * 1000);
	}
	return vgpu_err_set(err, -ETIMEDOUT, "agent of domain %u: no HELLO within %lld ms (%d channel attempts, last: %s)",
			    domid, timeout_ms, attempts, attempts ? strerror(-last) : "no channel offered");
}

void vgpu_xen_agent_close(struct vgpu_xen_agent *a)
{
	if (a)
		agent_free(a);
}

/* Send a request and wait for its reply of type want (or ERROR). */
static int call(struct vgpu_xen_agent *a, uint16_t type, const struct agent_buf *b, uint16_t want,
		long long timeout_ms, struct agent_hdr *reply, struct vgpu_err *err, const char *what)
{
	long long deadline = vgpu_now_ns() + timeout_ms * 1000000LL;
	uint32_t id = a->next_id++;
	int r = send_msg(a, type, id, b, deadline);
	if (r < 0)
		return channel_err(a, err, r, what);
	for (;;) {
		if ((r = recv_msg(a, reply, deadline)) < 0)
			return channel_err(a, err, r, what);
		if (reply->id != id)
			continue; /* a late reply to an earlier request that timed out */
		if (reply->type == AGENT_MSG_ERROR)
			return agent_error(a, reply, err, what);
		if (reply->type != want)
			return channel_err(a, err, -EPROTO, what);
		return 0;
	}
}

int vgpu_xen_agent_ping(struct vgpu_xen_agent *a, long long timeout_ms, struct vgpu_err *err)
{
	struct agent_hdr reply;
	return call(a, AGENT_MSG_PING, NULL, AGENT_MSG_PONG, timeout_ms, &reply, err, "ping");
}

static char *dup_bytes(const char *p, size_t len)
{
	char *s = vgpu_calloc(1, len + 1);
	memcpy(s, p, len);
	return s;
}

int vgpu_xen_agent_exec(struct vgpu_xen_agent *a, const char *const *argv, uint32_t timeout_ms,
			struct vgpu_xen_exec_result *res, struct vgpu_err *err)
{
	struct agent_buf b = { 0 };
	struct agent_hdr reply;
	memset(res, 0, sizeof(*res));
	int r = agent_exec_encode(&b, argv, timeout_ms);
	if (r < 0) {
		agent_buf_free(&b);
		return vgpu_err_set(err, r == -EMSGSIZE ? -E2BIG : r, "agent of domain %u: exec: bad command", a->domid);
	}
	/* the agent kills the command at timeout_ms; allow for the round trip on top */
	long long wait_ms = (timeout_ms ? (long long)timeout_ms : 24LL * 3600 * 1000) + 10000;
	r = call(a, AGENT_MSG_EXEC, &b, AGENT_MSG_EXEC_RESULT, wait_ms, &reply, err, "exec");
	agent_buf_free(&b);
	if (r < 0)
		return r;
	struct agent_reader rd = { a->payload, reply.len };
	uint32_t code;
	const char *o, *e;
	size_t olen, elen;
	if (agent_get_u32(&rd, &code) < 0 || agent_get_str(&rd, &o, &olen) < 0 || agent_get_str(&rd, &e, &elen) < 0)
		return channel_err(a, err, -EPROTO, "exec result");
	res->exit_code = (int32_t)code;
	res->out = dup_bytes(o, olen);
	res->out_len = olen;
	res->errout = dup_bytes(e, elen);
	res->err_len = elen;
	return 0;
}

void vgpu_xen_exec_result_free(struct vgpu_xen_exec_result *res)
{
	free(res->out);
	free(res->errout);
	memset(res, 0, sizeof(*res));
}

int vgpu_xen_agent_poweroff(struct vgpu_xen_agent *a, struct vgpu_err *err)
{
	int r = send_msg(a, AGENT_MSG_POWEROFF, a->next_id++, NULL, vgpu_now_ns() + 5000LL * 1000000);
	return r < 0 ? channel_err(a, err, r, "poweroff") : 0;
}

bool vgpu_xen_agent_broken(const struct vgpu_xen_agent *a)
{
	return a->broken;
}

uint32_t vgpu_xen_agent_domid(const struct vgpu_xen_agent *a)
{
	return a->domid;
}

static const char *ctr_what(uint16_t type)
{
	switch (type) {
	case AGENT_MSG_CTR_CREATE: return "create container";
	case AGENT_MSG_CTR_START: return "start container";
	case AGENT_MSG_CTR_STOP: return "stop container";
	case AGENT_MSG_CTR_STATUS: return "container status";
	case AGENT_MSG_CTR_LOGS: return "container logs";
	case AGENT_MSG_CTR_EXEC: return "exec in container";
	case AGENT_MSG_CTR_REMOVE: return "remove container";
	case AGENT_MSG_CTR_STATS: return "container stats";
	case AGENT_MSG_CTR_UPDATE: return "update container resources";
	default: return "container request";
	}
}

/* Send a container request; the reply (of type want) is in a->payload. */
static int ctr_call(struct vgpu_xen_agent *a, const struct agent_ctr_req *req, uint16_t want, long long timeout_ms,
		    struct agent_hdr *reply, struct vgpu_err *err)
{
	struct agent_buf b = { 0 };
	int r = agent_ctr_req_encode(&b, req);
	if (r < 0) {
		agent_buf_free(&b);
		return vgpu_err_set(err, r == -EMSGSIZE ? -E2BIG : -EINVAL,
				    "agent of domain %u: %s %s: request does not fit the protocol", a->domid,
				    ctr_what(req->type), req->id ? req->id : "");
	}
	r = call(a, req->type, &b, want, timeout_ms, reply, err, ctr_what(req->type));
	agent_buf_free(&b);
	return r;
}

int vgpu_xen_agent_ctr(struct vgpu_xen_agent *a, const struct agent_ctr_req *req, long long timeout_ms,
		       struct vgpu_err *err)
{
	struct agent_hdr reply;
	return ctr_call(a, req, AGENT_MSG_OK, timeout_ms, &reply, err);
}

int vgpu_xen_agent_ctr_status(struct vgpu_xen_agent *a, const char *id, struct agent_ctr_state *st,
			      struct vgpu_err *err)
{
	struct agent_ctr_req req = { .type = AGENT_MSG_CTR_STATUS, .id = (char *)id };
	struct agent_hdr reply;
	int r = ctr_call(a, &req, AGENT_MSG_CTR_STATE, 10000, &reply, err);
	if (r == 0 && agent_ctr_state_decode(a->payload, reply.len, st) < 0)
		r = channel_err(a, err, -EPROTO, "container status reply");
	return r;
}

int vgpu_xen_agent_ctr_logs(struct vgpu_xen_agent *a, const char *id, uint64_t offset, uint32_t max_bytes,
			    struct agent_ctr_log_data *out, struct vgpu_err *err)
{
	struct agent_ctr_req req = { .type = AGENT_MSG_CTR_LOGS, .id = (char *)id, .offset = offset,
				     .max_bytes = max_bytes };
	struct agent_hdr reply;
	int r = ctr_call(a, &req, AGENT_MSG_CTR_LOG_DATA, 10000, &reply, err);
	if (r == 0 && (agent_ctr_log_data_decode(a->payload, reply.len, out) < 0 || out->len > max_bytes ||
		       out->next_offset != offset + out->len))
		r = channel_err(a, err, -EPROTO, "container logs reply");
	return r;
}

int vgpu_xen_agent_ctr_exec(struct vgpu_xen_agent *a, const char *id, char *const *argv, uint32_t timeout_ms,
			    struct vgpu_xen_exec_result *res, struct vgpu_err *err)
{
	struct agent_ctr_req req = { .type = AGENT_MSG_CTR_EXEC, .id = (char *)id, .timeout_ms = timeout_ms,
				     .argv = (char **)argv };
	struct agent_hdr reply;
	memset(res, 0, sizeof(*res));
	long long wait_ms = (timeout_ms ? (long long)timeout_ms : 24LL * 3600 * 1000) + 10000;
	int r = ctr_call(a, &req, AGENT_MSG_EXEC_RESULT, wait_ms, &reply, err);
	if (r < 0)
		return r;
	struct agent_reader rd = { a->payload, reply.len };
	uint32_t code;
	const char *o, *e;
	size_t olen, elen;
	if (agent_get_u32(&rd, &code) < 0 || agent_get_str(&rd, &o, &olen) < 0 || agent_get_str(&rd, &e, &elen) < 0 ||
	    rd.left != 0)
		return channel_err(a, err, -EPROTO, "exec result");
	res->exit_code = (int32_t)code;
	res->out = dup_bytes(o, olen);
	res->out_len = olen;
	res->errout = dup_bytes(e, elen);
	res->err_len = elen;
	return 0;
}

int vgpu_xen_agent_ctr_stats(struct vgpu_xen_agent *a, const char *id, struct agent_ctr_stats *st,
			     long long timeout_ms, struct vgpu_err *err)
{
	struct agent_ctr_req req = { .type = AGENT_MSG_CTR_STATS, .id = (char *)id };
	struct agent_hdr reply;
	int r = ctr_call(a, &req, AGENT_MSG_CTR_STATS_DATA, timeout_ms, &reply, err);
	if (r == 0 && agent_ctr_stats_decode(a->payload, reply.len, st) < 0)
		r = channel_err(a, err, -EPROTO, "container stats reply");
	return r;
}

int vgpu_xen_agent_net_config(struct vgpu_xen_agent *a, const struct agent_net_config *nc, long long timeout_ms,
			      struct vgpu_err *err)
{
	struct agent_buf b = { 0 };
	struct agent_hdr reply;
	int r = agent_net_config_encode(&b, nc);
	if (r < 0) {
		agent_buf_free(&b);
		return vgpu_err_set(err, r == -EMSGSIZE ? -E2BIG : -EINVAL,
				    "agent of domain %u: network config does not fit the protocol", a->domid);
	}
	r = call(a, AGENT_MSG_NET_CONFIG, &b, AGENT_MSG_OK, timeout_ms, &reply, err, "network config");
	agent_buf_free(&b);
	return r;
}

int vgpu_xen_agent_stream_open(struct vgpu_xen_agent *a, const struct agent_stream_req *req, long long timeout_ms,
			       char path[AGENT_STREAM_PATH_MAX], struct vgpu_err *err)
{
	struct agent_buf b = { 0 };
	struct agent_hdr reply;
	const char *what = req->type == AGENT_MSG_CTR_EXEC_STREAM ? "exec stream"
			   : req->type == AGENT_MSG_CTR_ATTACH_STREAM ? "attach stream" : "port-forward stream";
	int r = agent_stream_req_encode(&b, req);
	if (r < 0) {
		agent_buf_free(&b);
		return vgpu_err_set(err, r == -EMSGSIZE ? -E2BIG : -EINVAL, "agent of domain %u: %s %s: request does "
				    "not fit the protocol", a->domid, what, req->id ? req->id : "");
	}
	r = call(a, req->type, &b, AGENT_MSG_STREAM_OPENED, timeout_ms, &reply, err, what);
	agent_buf_free(&b);
	if (r == 0 && agent_stream_opened_decode(a->payload, reply.len, path) < 0)
		r = channel_err(a, err, -EPROTO, "stream reply");
	return r;
}

int vgpu_xen_agent_vol_put(struct vgpu_xen_agent *a, const char *key, uint32_t flags, const void *stream, size_t len,
			   long long timeout_ms, struct vgpu_err *err)
{
	const uint8_t *p = stream;
	size_t done = 0;
	do {
		size_t n = len - done > AGENT_VOL_CHUNK ? AGENT_VOL_CHUNK : len - done;
		uint32_t f = flags & (AGENT_VOL_REPLACE | AGENT_VOL_ISFILE);
		if (done == 0)
			f |= AGENT_VOL_BEGIN;
		if (done + n == len)
			f |= AGENT_VOL_END;
		struct agent_buf b = { 0 };
		int r = agent_vol_put_encode(&b, key, f, p + done, n);
		if (r < 0) {
			agent_buf_free(&b);
			return vgpu_err_set(err, -EINVAL, "agent of domain %u: volume %s: chunk does not fit the protocol",
					    a->domid, key);
		}
		struct agent_hdr reply;
		r = call(a, AGENT_MSG_VOL_PUT, &b, AGENT_MSG_OK, timeout_ms, &reply, err, "copy volume");
		agent_buf_free(&b);
		if (r < 0)
			return r;
		done += n;
	} while (done < len);
	return 0;
}

int vgpu_xen_agent_vol_get(struct vgpu_xen_agent *a, const char *key, long long timeout_ms, struct agent_vol_data *out,
			   struct vgpu_err *err)
{
	struct agent_buf b = { 0 };
	struct agent_hdr reply;
	memset(out, 0, sizeof(*out));
	int r = agent_vol_get_encode(&b, key);
	if (r < 0) {
		agent_buf_free(&b);
		return vgpu_err_set(err, -EINVAL, "agent of domain %u: volume %s: bad key", a->domid, key);
	}
	r = call(a, AGENT_MSG_VOL_GET, &b, AGENT_MSG_VOL_GET, timeout_ms, &reply, err, "read volume back");
	agent_buf_free(&b);
	if (r == 0 && agent_vol_data_decode(a->payload, reply.len, out) < 0)
		r = channel_err(a, err, -EPROTO, "volume reply");
	return r;
}
