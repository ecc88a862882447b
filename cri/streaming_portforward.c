/* Kubernetes port-forward protocol (portforward.k8s.io) over SPDY, raw or tunnelled in
 * WebSocket binary messages (subprotocol SPDY/3.1+portforward.k8s.io, crictl's websocket
 * transport). Per forwarded connection the client opens two streams with the same "port" and
 * "requestID" headers: streamType "error" (we write an error text, then FIN) and "data" (the
 * bytes both ways). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "streaming_internal.h"
#include "util.h"

#define PF_MAX_PAIRS 64

struct pf_pair {
	char key[64];
	uint16_t port;
	struct spdy_stream *data, *error;
	int fd; /* connection to the pod's port, -1 before connecting and after closing */
	struct spdy_buf to_target;
	bool client_eof, target_eof, shut_wr, done;
	long long created_ns;
	struct pf_pair *next;
};

struct pf_session {
	struct vgpu_streaming *srv;
	struct stream_conn *c;
	const char *sandbox_id;
	struct spdy_session sp;
	struct pf_pair *pairs;
	size_t n_pairs;
	bool fatal;
};

static struct pf_pair *pair_for(struct pf_session *ps, struct spdy_stream *st)
{
	for (struct pf_pair *p = ps->pairs; p; p = p->next)
		if (p->data == st || p->error == st)
			return p;
	return NULL;
}

static void pair_fail(struct pf_session *ps, struct pf_pair *p, const char *msg)
{
	vgpu_log(VGPU_LOG_WARN, "streaming: pod %s: port %u: %s", ps->sandbox_id, p->port, msg);
	if (p->error && !p->error->local_fin)
		spdy_session_send(&ps->sp, p->error, msg, strlen(msg), true);
	if (p->data && !p->data->local_fin)
		spdy_session_send(&ps->sp, p->data, NULL, 0, true);
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	p->done = true;
}

static void pair_connect(struct pf_session *ps, struct pf_pair *p)
{
	struct vgpu_err err = { 0 };
	const struct vgpu_stream_backend *b = &ps->srv->backend;
	int fd = -1;
	int r = b->port_forward ? b->port_forward(b->ctx, ps->sandbox_id, p->port, &fd, &err)
				: vgpu_err_set(&err, -ENOSYS, "port forwarding is not supported by this runtime");
	if (r < 0) {
		char msg[VGPU_ERR_MSG_MAX + 128];
		snprintf(msg, sizeof(msg), "error forwarding port %u to pod %s: %s", p->port, ps->sandbox_id, err.msg);
		pair_fail(ps, p, msg);
		return;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	p->fd = fd;
	vgpu_log(VGPU_LOG_DEBUG, "streaming: pod %s: forwarding port %u (request %s)", ps->sandbox_id, p->port, p->key);
}

static int pf_on_stream(void *arg, struct spdy_stream *st)
{
	struct pf_session *ps = arg;
	bool is_data = st->type && strcmp(st->type, "data") == 0;
	bool is_error = st->type && strcmp(st->type, "error") == 0;
	if (!is_data && !is_error) {
		vgpu_log(VGPU_LOG_WARN, "streaming: pod %s: unknown port-forward stream type %s", ps->sandbox_id,
			 st->type ? st->type : "(none)");
		return -EINVAL;
	}
	char *end = NULL;
	long port = st->port ? strtol(st->port, &end, 10) : 0;
	if (!st->port || *end || port < 1 || port > 65535) {
		vgpu_log(VGPU_LOG_WARN, "streaming: pod %s: port-forward stream with invalid port %s", ps->sandbox_id,
			 st->port ? st->port : "(none)");
		return -EINVAL;
	}
	char key[64];
	if (st->request_id)
		snprintf(key, sizeof(key), "%s", st->request_id);
	else /* old clients: the data stream follows its error stream */
		snprintf(key, sizeof(key), "#%u", is_data ? st->id - 2 : st->id);
	struct pf_pair *p;
	for (p = ps->pairs; p; p = p->next)
		if (!p->done && strcmp(p->key, key) == 0)
			break;
	if (!p) {
		if (ps->n_pairs >= PF_MAX_PAIRS)
			return -ENOSPC;
		p = vgpu_calloc(1, sizeof(*p));
		snprintf(p->key, sizeof(p->key), "%s", key);
		p->port = (uint16_t)port;
		p->fd = -1;
		p->created_ns = vgpu_now_ns();
		p->next = ps->pairs;
		ps->pairs = p;
		ps->n_pairs++;
	}
	if ((is_data ? p->data : p->error) || p->port != port)
		return -EEXIST;
	if (is_data)
		p->data = st;
	else
		p->error = st;
	return 0;
}

static void pf_on_data(void *arg, struct spdy_stream *st, const uint8_t *data, size_t len, bool fin)
{
	struct pf_session *ps = arg;
	struct pf_pair *p = pair_for(ps, st);
	if (!p || p->done || st != p->data)
		return; /* the error stream carries nothing from the client */
	if (len && spdy_buf_append(&p->to_target, data, len) < 0)
		ps->fatal = true;
	if (fin)
		p->client_eof = true;
}

static void pf_on_reset(void *arg, struct spdy_stream *st)
{
	struct pf_session *ps = arg;
	struct pf_pair *p = pair_for(ps, st);
	if (p && st == p->data && !p->done) {
		if (p->fd >= 0)
			close(p->fd);
		p->fd = -1;
		p->done = true;
	}
}

/* Move bytes for one pair; mark it done when both directions have ended. */
static void pair_pump(struct pf_session *ps, struct pf_pair *p, short revents)
{
	if (p->fd < 0)
		return;
	if ((revents & POLLOUT) || p->to_target.len) {
		while (p->to_target.len) {
			ssize_t n = send(p->fd, p->to_target.data, p->to_target.len, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0) {
				char msg[160];
				snprintf(msg, sizeof(msg), "error forwarding port %u: write: %s", p->port, strerror(errno));
				pair_fail(ps, p, msg);
				return;
			}
			spdy_buf_consume(&p->to_target, (size_t)n);
		}
	}
	if (p->client_eof && !p->to_target.len && !p->shut_wr) {
		shutdown(p->fd, SHUT_WR);
		p->shut_wr = true;
	}
	if ((revents & (POLLIN | POLLHUP | POLLERR)) && !p->target_eof) {
		uint8_t buf[STREAM_CHUNK];
		ssize_t n = recv(p->fd, buf, sizeof(buf), 0);
		if (n > 0) {
			if (spdy_session_send(&ps->sp, p->data, buf, (size_t)n, false) < 0)
				p->target_eof = true;
		} else if (n == 0) {
			p->target_eof = true;
			spdy_session_send(&ps->sp, p->data, NULL, 0, true);
		} else if (errno != EAGAIN && errno != EINTR) {
			char msg[160];
			snprintf(msg, sizeof(msg), "error forwarding port %u: read: %s", p->port, strerror(errno));
			pair_fail(ps, p, msg);
			return;
		}
	}
	if (p->target_eof && p->client_eof && !p->to_target.len) {
		close(p->fd);
		p->fd = -1;
		p->done = true;
		if (p->error && !p->error->local_fin)
			spdy_session_send(&ps->sp, p->error, NULL, 0, true);
	}
}

static void pairs_reap(struct pf_session *ps)
{
	long long now = vgpu_now_ns();
	for (struct pf_pair **pp = &ps->pairs; *pp;) {
		struct pf_pair *p = *pp;
		if (!p->done && (!p->data || !p->error) && now - p->created_ns > ps->srv->create_timeout_ms * 1000000LL) {
			pair_fail(ps, p, "timed out waiting for the other stream of the port-forward request");
			if (p->error)
				spdy_session_reset(&ps->sp, p->error, SPDY_RST_CANCEL);
			if (p->data)
				spdy_session_reset(&ps->sp, p->data, SPDY_RST_CANCEL);
		}
		if (p->done) {
			*pp = p->next;
			if (p->fd >= 0)
				close(p->fd);
			spdy_buf_free(&p->to_target);
			free(p);
			ps->n_pairs--;
		} else {
			pp = &p->next;
		}
	}
}

void stream_portforward_run(struct vgpu_streaming *srv, struct stream_conn *c, struct stream_request *req)
{
	struct pf_session ps = { .srv = srv, .c = c, .sandbox_id = req->sandbox_id };
	struct vgpu_err err = { 0 };
	if (spdy_session_init(&ps.sp, c, &err) < 0) {
		vgpu_log(VGPU_LOG_ERROR, "streaming: pod %s: %s", ps.sandbox_id, err.msg);
		return;
	}
	ps.sp.on_stream = pf_on_stream;
	ps.sp.on_data = pf_on_data;
	ps.sp.on_reset = pf_on_reset;
	ps.sp.arg = &ps;
	if (conn_has_early_data(c) && conn_read(c) < 0)
		goto out;
	if (c->in.len && spdy_session_process(&ps.sp, &err) < 0)
		goto out;
	for (;;) {
		for (struct pf_pair *p = ps.pairs; p; p = p->next)
			if (!p->done && p->fd < 0 && p->data && p->error)
				pair_connect(&ps, p);
		for (struct pf_pair *p = ps.pairs; p; p = p->next)
			if (!p->done && p->to_target.len)
				pair_pump(&ps, p, 0);
		pairs_reap(&ps);
		if (ps.fatal || conn_flush(c) < 0)
			break;
		bool backlog = conn_pending(c) > STREAM_HIGH_WATER;
		struct pollfd pfd[2 + PF_MAX_PAIRS];
		struct pf_pair *owner[2 + PF_MAX_PAIRS];
		size_t n = 0;
		size_t buffered = 0;
		for (struct pf_pair *p = ps.pairs; p; p = p->next)
			buffered += p->to_target.len;
		pfd[n++] = (struct pollfd){ .fd = c->fd,
					    .events = (short)((buffered > STREAM_HIGH_WATER ? 0 : POLLIN) |
							      (conn_want_write(c) ? POLLOUT : 0)) };
		pfd[n++] = (struct pollfd){ .fd = srv->stop_fd, .events = POLLIN };
		for (struct pf_pair *p = ps.pairs; p; p = p->next) {
			if (p->fd < 0)
				continue;
			short ev = (short)((p->target_eof || backlog ? 0 : POLLIN) | (p->to_target.len ? POLLOUT : 0));
			owner[n] = p;
			pfd[n++] = (struct pollfd){ .fd = p->fd, .events = ev };
		}
		int timeout = ps.n_pairs ? 1000 : -1; /* to time out unpaired streams */
		int pr = poll(pfd, (nfds_t)n, timeout);
		if (pr < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (conn_read(c) < 0 || c->peer_closed)
				break;
			if (spdy_session_process(&ps.sp, &err) < 0)
				break;
		}
		for (size_t i = 2; i < n; i++)
			if (pfd[i].revents && !owner[i]->done)
				pair_pump(&ps, owner[i], pfd[i].revents);
	}
out:
	for (struct pf_pair *p = ps.pairs; p; p = p->next)
		p->done = true;
	pairs_reap(&ps);
	spdy_session_fini(&ps.sp);
}
