/* One upgraded streaming connection and its transport: raw SPDY bytes on the socket, or
 * WebSocket (RFC 6455 framing by wslay) carrying either channel messages or a tunnelled SPDY
 * byte stream. Non-blocking; the session thread polls conn->fd. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "log.h"
#include "streaming_internal.h"
#include "util.h"

#define WS_MAX_MESSAGE (16u << 20)

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
	struct stream_conn *c = user;
	(void)flags;
	if (c->pre.len) {
		size_t n = len < c->pre.len ? len : c->pre.len;
		memcpy(buf, c->pre.data, n);
		spdy_buf_consume(&c->pre, n);
		return (ssize_t)n;
	}
	ssize_t n = recv(c->fd, buf, len, 0);
	if (n > 0)
		return n;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	c->peer_closed = true;
	wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
	struct stream_conn *c = user;
	(void)flags;
	ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
		wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
		return -1;
	}
	c->peer_closed = true;
	wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
	return -1;
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
	struct stream_conn *c = user;
	(void)ctx;
	if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
		c->peer_closed = true;
		return;
	}
	if (arg->opcode != WSLAY_BINARY_FRAME && arg->opcode != WSLAY_TEXT_FRAME)
		return; /* ping/pong: answered by wslay */
	if (c->transport == TRANSPORT_WS_TUNNEL) {
		if (spdy_buf_append(&c->in, arg->msg, arg->msg_length) < 0)
			c->failed = true;
	} else if (c->on_message) {
		c->on_message(c->on_message_arg, arg->msg, arg->msg_length);
	}
}

int conn_init(struct stream_conn *c, struct vgpu_streaming *srv, int fd, enum conn_transport t,
	      const char *extra_in, size_t extra_len, struct vgpu_err *err)
{
	memset(c, 0, sizeof(*c));
	c->srv = srv;
	c->fd = fd;
	c->transport = t;
	/* many small frames each way: Nagle plus delayed ACKs would add 40 ms stalls */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return vgpu_err_errno(err, errno, "streaming: set connection non-blocking");
	if (t == TRANSPORT_SPDY) {
		if (extra_len && spdy_buf_append(&c->in, extra_in, extra_len) < 0)
			return vgpu_err_set(err, -ENOMEM, "out of memory");
		return 0;
	}
	static const struct wslay_event_callbacks cbs = {
		.recv_callback = ws_recv_cb,
		.send_callback = ws_send_cb,
		.on_msg_recv_callback = ws_msg_cb,
	};
	wslay_event_context_ptr ws = NULL;
	if (wslay_event_context_server_init(&ws, &cbs, c) != 0)
		return vgpu_err_set(err, -ENOMEM, "streaming: websocket context");
	wslay_event_config_set_max_recv_msg_length(ws, WS_MAX_MESSAGE);
	c->ws = ws;
	/* a client may send its first frames as soon as it sees the 101, before we get the socket */
	if (extra_len && spdy_buf_append(&c->pre, extra_in, extra_len) < 0)
		return vgpu_err_set(err, -ENOMEM, "out of memory");
	return 0;
}

bool conn_has_early_data(const struct stream_conn *c)
{
	return c->pre.len > 0;
}

void conn_fini(struct stream_conn *c)
{
	if (c->ws)
		wslay_event_context_free(c->ws);
	c->ws = NULL;
	spdy_buf_free(&c->in);
	spdy_buf_free(&c->out);
	spdy_buf_free(&c->pre);
}

int conn_write(struct stream_conn *c, const void *data, size_t len)
{
	if (c->transport == TRANSPORT_SPDY)
		return spdy_buf_append(&c->out, data, len);
	struct wslay_event_msg msg = { .opcode = WSLAY_BINARY_FRAME, .msg = data, .msg_length = len };
	int r = wslay_event_queue_msg(c->ws, &msg);
	if (r == WSLAY_ERR_NOMEM)
		return -ENOMEM;
	return r == 0 ? 0 : -EPIPE;
}

size_t conn_pending(const struct stream_conn *c)
{
	if (c->transport == TRANSPORT_SPDY)
		return c->out.len;
	return wslay_event_get_queued_msg_length(c->ws);
}

bool conn_want_write(const struct stream_conn *c)
{
	if (c->transport == TRANSPORT_SPDY)
		return c->out.len > 0;
	return wslay_event_want_write(c->ws) != 0;
}

int conn_flush(struct stream_conn *c)
{
	if (c->peer_closed || c->failed)
		return -EPIPE;
	if (c->transport != TRANSPORT_SPDY) {
		int r = wslay_event_send(c->ws);
		if (r != 0 && r != WSLAY_ERR_WOULDBLOCK) {
			c->failed = true;
			return -EPIPE;
		}
		return 0;
	}
	while (c->out.len > 0) {
		ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			c->peer_closed = true;
			return -EPIPE;
		}
		spdy_buf_consume(&c->out, (size_t)n);
	}
	return 0;
}

int conn_read(struct stream_conn *c)
{
	if (c->transport != TRANSPORT_SPDY) {
		int r = wslay_event_recv(c->ws);
		if (r != 0) {
			if (!c->peer_closed)
				c->failed = true;
			return -EPIPE;
		}
		return c->failed ? -ENOMEM : 0;
	}
	uint8_t buf[STREAM_CHUNK];
	for (int i = 0; i < 8; i++) {
		ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
		if (n > 0) {
			if (spdy_buf_append(&c->in, buf, (size_t)n) < 0)
				return -ENOMEM;
			if ((size_t)n < sizeof(buf))
				return 0;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		c->peer_closed = true;
		return -EPIPE;
	}
	return 0;
}

void conn_finish(struct stream_conn *c, int timeout_ms)
{
	if (c->peer_closed || c->failed)
		return;
	long long deadline = vgpu_now_ns() + (long long)timeout_ms * 1000000LL;
	/* write what is queued, then half-close and wait for the client to close its side, so that
	 * our last bytes are not lost to a reset */
	bool shut = false;
	while (!c->peer_closed && !c->failed) {
		long long left = (deadline - vgpu_now_ns()) / 1000000LL;
		if (left <= 0)
			break;
		if (conn_flush(c) < 0)
			break;
		/* wslay sends control frames ahead of queued messages: close only once they are out */
		if (c->ws && !wslay_event_get_close_sent(c->ws) && wslay_event_get_queued_msg_count(c->ws) == 0) {
			wslay_event_queue_close(c->ws, WSLAY_CODE_NORMAL_CLOSURE, NULL, 0);
			continue;
		}
		if (!shut && !conn_want_write(c)) {
			shutdown(c->fd, SHUT_WR);
			shut = true;
			/* all sent: give the client a moment to close its side, no more */
			long long linger = vgpu_now_ns() + 2000 * 1000000LL;
			if (linger < deadline)
				deadline = linger;
			continue;
		}
		struct pollfd p = { .fd = c->fd, .events = (short)(POLLIN | (conn_want_write(c) && !shut ? POLLOUT : 0)) };
		if (poll(&p, 1, (int)left) <= 0)
			break;
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			uint8_t buf[4096];
			ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				break;
		}
	}
}
