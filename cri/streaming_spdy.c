/* SPDY/3.1 sessions on a streaming connection, server side: accepts the client's streams
 * (answering each SYN_STREAM with a SYN_REPLY, as spdystream waits for it), hands their data to
 * the protocol, answers PINGs, and ends the session with GOAWAY on protocol errors.
 *
 * Flow control: Kubernetes' SPDY peers (moby/spdystream) neither send nor need WINDOW_UPDATE, so
 * we neither enforce the peer's window nor send updates; backpressure is TCP's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "streaming_internal.h"
#include "util.h"

int spdy_session_init(struct spdy_session *s, struct stream_conn *c, struct vgpu_err *err)
{
	memset(s, 0, sizeof(*s));
	s->conn = c;
	return spdy_zctx_init(&s->z, err);
}

void spdy_session_fini(struct spdy_session *s)
{
	struct spdy_stream *st = s->streams;
	while (st) {
		struct spdy_stream *next = st->next;
		free(st->type);
		free(st->port);
		free(st->request_id);
		free(st);
		st = next;
	}
	s->streams = NULL;
	spdy_zctx_fini(&s->z);
}

static struct spdy_stream *find_stream(struct spdy_session *s, uint32_t id)
{
	for (struct spdy_stream *st = s->streams; st; st = st->next)
		if (st->id == id)
			return st;
	return NULL;
}

static int queue(struct spdy_session *s, struct spdy_buf *b)
{
	int r = conn_write(s->conn, b->data, b->len);
	spdy_buf_free(b);
	return r;
}

void spdy_session_goaway(struct spdy_session *s, uint32_t status)
{
	struct spdy_buf b = { 0 };
	if (spdy_put_goaway(&b, s->last_id, status) == 0)
		queue(s, &b);
	spdy_buf_free(&b);
}

int spdy_session_reset(struct spdy_session *s, struct spdy_stream *st, uint32_t status)
{
	struct spdy_buf b = { 0 };
	st->reset = true;
	st->local_fin = st->remote_fin = true;
	int r = spdy_put_rst_stream(&b, st->id, status);
	return r ? r : queue(s, &b);
}

int spdy_session_send(struct spdy_session *s, struct spdy_stream *st, const void *data, size_t len, bool fin)
{
	if (st->reset || st->local_fin)
		return -EPIPE;
	const uint8_t *p = data;
	do {
		size_t n = len > STREAM_CHUNK ? STREAM_CHUNK : len;
		bool last = n == len;
		struct spdy_buf b = { 0 };
		int r = spdy_put_data(&b, st->id, (last && fin) ? SPDY_FLAG_FIN : 0, p, n);
		if (r == 0)
			r = queue(s, &b);
		spdy_buf_free(&b);
		if (r < 0)
			return r;
		p += n;
		len -= n;
	} while (len > 0);
	if (fin)
		st->local_fin = true;
	return 0;
}

static int on_syn_stream(struct spdy_session *s, const struct spdy_frame *f, struct vgpu_err *err)
{
	struct spdy_headers h;
	int r = spdy_headers_decode(&s->z, f->data, f->data_len, &h, err);
	if (r < 0)
		return r;
	/* client-initiated streams are odd and increasing (SPDY/3 2.3.2) */
	if (f->stream_id % 2 == 0 || f->stream_id <= s->last_id) {
		spdy_headers_free(&h);
		return vgpu_err_set(err, -EPROTO, "spdy: bad stream id %u from client (last %u)", f->stream_id,
				    s->last_id);
	}
	s->last_id = f->stream_id;
	struct spdy_stream *st = vgpu_calloc(1, sizeof(*st));
	st->id = f->stream_id;
	const char *v;
	if ((v = spdy_headers_get(&h, "streamtype")))
		st->type = vgpu_strdup(v);
	if ((v = spdy_headers_get(&h, "port")))
		st->port = vgpu_strdup(v);
	if ((v = spdy_headers_get(&h, "requestid")))
		st->request_id = vgpu_strdup(v);
	st->remote_fin = (f->flags & SPDY_FLAG_FIN) != 0;
	spdy_headers_free(&h);
	st->next = s->streams;
	s->streams = st;
	struct spdy_buf b = { 0 };
	struct spdy_headers none = { 0 };
	if (s->on_stream(s->arg, st) < 0)
		return spdy_session_reset(s, st, SPDY_RST_REFUSED_STREAM);
	r = spdy_put_syn_reply(&b, &s->z, st->id, 0, &none);
	return r ? r : queue(s, &b);
}

static int on_frame(struct spdy_session *s, const struct spdy_frame *f, struct vgpu_err *err)
{
	if (!f->control) {
		struct spdy_stream *st = find_stream(s, f->stream_id);
		if (!st) {
			struct spdy_buf b = { 0 };
			if (spdy_put_rst_stream(&b, f->stream_id, SPDY_RST_INVALID_STREAM) == 0)
				queue(s, &b);
			spdy_buf_free(&b);
			return 0;
		}
		if (st->reset)
			return 0;
		if (st->remote_fin) {
			return spdy_session_reset(s, st, SPDY_RST_STREAM_ALREADY_CLOSED);
		}
		bool fin = (f->flags & SPDY_FLAG_FIN) != 0;
		if (fin)
			st->remote_fin = true;
		s->on_data(s->arg, st, f->data, f->data_len, fin);
		return 0;
	}
	switch (f->type) {
	case SPDY_SYN_STREAM:
		return on_syn_stream(s, f, err);
	case SPDY_RST_STREAM: {
		struct spdy_stream *st = find_stream(s, f->stream_id);
		if (st && !st->reset) {
			st->reset = true;
			st->local_fin = st->remote_fin = true;
			if (s->on_reset)
				s->on_reset(s->arg, st);
		}
		return 0;
	}
	case SPDY_PING: {
		struct spdy_buf b = { 0 };
		if (f->ping_id % 2 == 1) { /* the client's: echo it */
			int r = spdy_put_ping(&b, f->ping_id);
			return r ? r : queue(s, &b);
		}
		return 0;
	}
	case SPDY_GOAWAY:
		s->goaway_received = true;
		return 0;
	case SPDY_HEADERS: {
		/* must still go through the inflater to keep the zlib stream in step */
		struct spdy_headers h;
		int r = spdy_headers_decode(&s->z, f->data, f->data_len, &h, err);
		if (r == 0)
			spdy_headers_free(&h);
		return r;
	}
	case SPDY_SYN_REPLY:
		return vgpu_err_set(err, -EPROTO, "spdy: SYN_REPLY from client for stream %u", f->stream_id);
	default: /* SETTINGS, WINDOW_UPDATE, unknown: nothing to do */
		return 0;
	}
}

int spdy_session_process(struct spdy_session *s, struct vgpu_err *err)
{
	struct spdy_buf *in = &s->conn->in;
	size_t off = 0;
	int r = 0;
	while (off < in->len) {
		struct spdy_frame f;
		ssize_t n = spdy_frame_parse(in->data + off, in->len - off, STREAM_MAX_FRAME, &f, err);
		if (n == 0)
			break;
		if (n < 0) {
			r = (int)n;
			break;
		}
		r = on_frame(s, &f, err);
		off += (size_t)n;
		if (r < 0)
			break;
	}
	spdy_buf_consume(in, off);
	if (r < 0) {
		if (r == -EPROTO || r == -EMSGSIZE) {
			vgpu_log(VGPU_LOG_WARN, "streaming: %s", err->msg);
			spdy_session_goaway(s, SPDY_GOAWAY_PROTOCOL_ERROR);
			return -EPROTO;
		}
		spdy_session_goaway(s, SPDY_GOAWAY_INTERNAL_ERROR);
	}
	return r;
}
