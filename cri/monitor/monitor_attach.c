/* vgpu-monitor's attach server (see monitor_attach.h and, for the wire format, attach_proto.h).
 *
 * Clients hand us pipes (SCM_RIGHTS in their HELLO): we write the container's output into them and
 * read their stdin from them, so the daemon's streaming session sees plain pipes. Output is
 * written without blocking; what a pipe does not take is queued per client, and a client whose
 * queue would pass ATTACH_CLIENT_BACKLOG is detached rather than slowing the container or the log.
 * Stdin of every client goes through one bounded buffer into the container's stdin, read from the
 * clients only while there is room (backpressure reaches the clients). stdin_once: when the first
 * client that brought stdin ends it (EOF) or detaches, the container's stdin is closed after the
 * buffered bytes are written (without a tty the process reads EOF; with a tty no more input is
 * forwarded: a terminal's EOF is a ^D the user types, and closing the pty would end the output). */
#include "monitor_attach.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "attach_proto.h"

#define STDIN_BUF (64u << 10)

struct obuf {
	uint8_t *data;
	size_t len, cap;
};

struct attach_client {
	int ctl;        /* the client's SEQPACKET connection */
	int in_fd;      /* read end of the client's stdin pipe, -1 = none */
	int out_fd[2];  /* write ends for stdout, stderr; -1 = not wanted */
	struct obuf q[2];
	bool greeted;   /* HELLO handled */
	bool had_stdin; /* brought stdin that has not ended yet */
	bool dead;      /* to be dropped at the end of this round */
	int pidx[4];    /* pollfd index of ctl, in_fd, out_fd[0], out_fd[1]; -1 = not polled */
};

struct attach_server {
	int listen_fd, dirfd;
	struct attach_config cfg;
	bool has_stdin;   /* the container was created with stdin */
	bool stdin_done;  /* stdin_once: closed (or closing) for good */
	bool close_stdin; /* close cfg.ctr_stdin once in_len is 0 */
	uint8_t in[STDIN_BUF];
	size_t in_len;
	struct attach_client *clients[ATTACH_MAX_CLIENTS];
	int pidx_listen, pidx_stdin;
};

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int sock_path(int dirfd, struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	int n = snprintf(a->sun_path, sizeof(a->sun_path), "/proc/self/fd/%d/%s", dirfd, VGPU_ATTACH_SOCKET);
	return n > 0 && (size_t)n < sizeof(a->sun_path) ? 0 : -ENAMETOOLONG;
}

int attach_open(int dirfd, const struct attach_config *cfg, struct attach_server **out)
{
	struct attach_server *s = calloc(1, sizeof(*s));
	int r = 0;
	if (!s) {
		r = -ENOMEM;
		goto fail;
	}
	s->cfg = *cfg;
	s->dirfd = dirfd;
	s->has_stdin = cfg->ctr_stdin >= 0;
	s->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->listen_fd < 0) {
		r = -errno;
		goto fail;
	}
	struct sockaddr_un a;
	if ((r = sock_path(dirfd, &a)) < 0)
		goto fail;
	if (unlinkat(dirfd, VGPU_ATTACH_SOCKET, 0) < 0 && errno != ENOENT) {
		r = -errno;
		goto fail;
	}
	/* created 0600 (umask), never a moment with wider permissions */
	mode_t old = umask(0177);
	int b = bind(s->listen_fd, (struct sockaddr *)&a, sizeof(a));
	int e = errno;
	umask(old);
	if (b < 0 || listen(s->listen_fd, 16) < 0) {
		r = b < 0 ? -e : -errno;
		goto fail;
	}
	if (s->cfg.ctr_stdin >= 0)
		set_nonblock(s->cfg.ctr_stdin);
	*out = s;
	return 0;
fail:
	if (s) {
		close_fd(&s->listen_fd);
		free(s);
	}
	int fds[] = { dirfd, cfg->ctr_stdin, cfg->pty };
	for (size_t i = 0; i < 3; i++)
		close_fd(&fds[i]);
	return r;
}

/* ---- stdin ---- */

static void flush_stdin(struct attach_server *s)
{
	while (s->in_len && s->cfg.ctr_stdin >= 0) {
		ssize_t n = write(s->cfg.ctr_stdin, s->in, s->in_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) { /* the container closed its stdin: nothing more goes there */
			close_fd(&s->cfg.ctr_stdin);
			break;
		}
		memmove(s->in, s->in + n, s->in_len - (size_t)n);
		s->in_len -= (size_t)n;
	}
	if (s->cfg.ctr_stdin < 0)
		s->in_len = 0;
	if (s->close_stdin && s->in_len == 0)
		close_fd(&s->cfg.ctr_stdin);
}

/* A client's stdin ended (EOF or detach). */
static void stdin_finished(struct attach_server *s, struct attach_client *c)
{
	close_fd(&c->in_fd);
	if (!c->had_stdin)
		return;
	c->had_stdin = false;
	if (s->cfg.stdin_once && !s->stdin_done) {
		s->stdin_done = true;
		s->close_stdin = true;
		flush_stdin(s);
	}
}

/* One read of a client's stdin into the container's; false when nothing more comes now (EAGAIN,
 * no room, or the client's stdin ended). */
static bool read_client_stdin(struct attach_server *s, struct attach_client *c)
{
	uint8_t discard[4096];
	bool forward = s->cfg.ctr_stdin >= 0;
	uint8_t *dst = forward ? s->in + s->in_len : discard;
	size_t room = forward ? sizeof(s->in) - s->in_len : sizeof(discard);
	if (room == 0)
		return false;
	ssize_t n = read(c->in_fd, dst, room);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return false;
	if (n <= 0) {
		stdin_finished(s, c);
		return false;
	}
	if (forward) {
		s->in_len += (size_t)n;
		flush_stdin(s);
	}
	return true;
}

/* ---- clients ---- */

static void drop_client(struct attach_server *s, size_t slot)
{
	struct attach_client *c = s->clients[slot];
	/* what the client wrote before it detached still goes to the container (as far as the
	 * buffer takes it now) */
	while (c->in_fd >= 0 && read_client_stdin(s, c))
		;
	stdin_finished(s, c);
	close_fd(&c->ctl);
	for (int i = 0; i < 2; i++) {
		close_fd(&c->out_fd[i]);
		free(c->q[i].data);
	}
	free(c);
	s->clients[slot] = NULL;
}

static void reply(struct attach_client *c, uint32_t error, uint32_t modes, const char *text)
{
	struct vgpu_attach_msg m = { .type = VGPU_ATTACH_REPLY, .a = error, .b = modes };
	snprintf(m.text, sizeof(m.text), "%s", text);
	if (vgpu_attach_send(c->ctl, &m, NULL, 0) < 0)
		c->dead = true;
}

static void hello(struct attach_server *s, struct attach_client *c, const struct vgpu_attach_msg *m, int *fds,
		  size_t nfds)
{
	uint32_t modes = (s->cfg.tty ? VGPU_ATTACH_TTY : 0) | (s->has_stdin ? VGPU_ATTACH_HAS_STDIN : 0) |
			 (s->cfg.stdin_once ? VGPU_ATTACH_STDIN_ONCE : 0);
	const char *bad = NULL;
	if (m->type != VGPU_ATTACH_HELLO)
		bad = "expected HELLO";
	else if (nfds != vgpu_attach_hello_fds(m->a))
		bad = "HELLO: wrong number of descriptors";
	else if ((m->a & VGPU_ATTACH_STDIN) && !s->has_stdin)
		bad = "the container was not created with stdin";
	else if ((m->a & VGPU_ATTACH_STDERR) && s->cfg.tty)
		bad = "a tty container has no separate stderr";
	if (bad) {
		for (size_t i = 0; i < nfds; i++)
			close(fds[i]);
		reply(c, EINVAL, modes, bad);
		c->dead = true;
		return;
	}
	size_t i = 0;
	if (m->a & VGPU_ATTACH_STDIN)
		c->in_fd = fds[i++];
	if (m->a & VGPU_ATTACH_STDOUT)
		c->out_fd[0] = fds[i++];
	if (m->a & VGPU_ATTACH_STDERR)
		c->out_fd[1] = fds[i++];
	for (size_t k = 0; k < nfds; k++)
		set_nonblock(fds[k]);
	c->had_stdin = c->in_fd >= 0;
	if (c->had_stdin && (s->stdin_done || s->cfg.ctr_stdin < 0)) {
		/* stdin_once already used (or the container closed its stdin): this client's input
		 * goes nowhere, and it sees that as EPIPE */
		c->had_stdin = false;
		close_fd(&c->in_fd);
	}
	c->greeted = true;
	reply(c, 0, modes, "");
}

static void client_ctl(struct attach_server *s, struct attach_client *c)
{
	struct vgpu_attach_msg m;
	int fds[VGPU_ATTACH_MAX_FDS];
	size_t nfds = 0;
	int r = vgpu_attach_recv(c->ctl, &m, fds, c->greeted ? 0 : VGPU_ATTACH_MAX_FDS, &nfds);
	if (r == -EAGAIN || r == -EINTR)
		return;
	if (r < 0) { /* detached (EOF), or garbage */
		c->dead = true;
		return;
	}
	if (!c->greeted) {
		hello(s, c, &m, fds, nfds);
		return;
	}
	if (m.type == VGPU_ATTACH_RESIZE && s->cfg.pty >= 0) {
		struct winsize ws = { .ws_col = (unsigned short)m.a, .ws_row = (unsigned short)m.b };
		ioctl(s->cfg.pty, TIOCSWINSZ, &ws); /* the kernel signals the foreground group */
	}
	/* anything else from a greeted client (a second HELLO, a REPLY) is ignored */
}

static int obuf_append(struct obuf *q, const uint8_t *data, size_t len)
{
	if (q->len + len > ATTACH_CLIENT_BACKLOG)
		return -ENOBUFS;
	if (q->len + len > q->cap) {
		size_t cap = q->cap ? q->cap : 65536;
		while (cap < q->len + len)
			cap *= 2;
		uint8_t *d = realloc(q->data, cap);
		if (!d)
			return -ENOMEM;
		q->data = d;
		q->cap = cap;
	}
	memcpy(q->data + q->len, data, len);
	q->len += len;
	return 0;
}

/* Write what the pipe takes from the queue; false when the client is gone. */
static bool flush_queue(int fd, struct obuf *q)
{
	while (q->len) {
		ssize_t n = write(fd, q->data, q->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		if (n <= 0)
			return false;
		memmove(q->data, q->data + n, q->len - (size_t)n);
		q->len -= (size_t)n;
	}
	return true;
}

void attach_output(struct attach_server *s, int stream, const void *data, size_t len)
{
	if (!s || stream < 0 || stream > 1)
		return;
	for (size_t i = 0; i < ATTACH_MAX_CLIENTS; i++) {
		struct attach_client *c = s->clients[i];
		if (!c || c->dead || !c->greeted || c->out_fd[stream] < 0)
			continue;
		struct obuf *q = &c->q[stream];
		const uint8_t *p = data;
		size_t left = len;
		if (q->len == 0) {
			ssize_t n;
			do
				n = write(c->out_fd[stream], p, left);
			while (n < 0 && errno == EINTR);
			if (n < 0 && errno != EAGAIN) {
				c->dead = true; /* the client closed its end */
				continue;
			}
			if (n > 0) {
				p += n;
				left -= (size_t)n;
			}
		}
		if (left && obuf_append(q, p, left) < 0)
			c->dead = true; /* too far behind: detach it rather than lose output silently */
	}
	for (size_t i = 0; i < ATTACH_MAX_CLIENTS; i++)
		if (s->clients[i] && s->clients[i]->dead)
			drop_client(s, i);
}

static void accept_clients(struct attach_server *s)
{
	for (;;) {
		size_t slot = 0;
		while (slot < ATTACH_MAX_CLIENTS && s->clients[slot])
			slot++;
		if (slot == ATTACH_MAX_CLIENTS)
			return;
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		struct attach_client *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			return;
		}
		*c = (struct attach_client){ .ctl = fd, .in_fd = -1, .out_fd = { -1, -1 }, .pidx = { -1, -1, -1, -1 } };
		s->clients[slot] = c;
	}
}

static int add_poll(struct pollfd *p, size_t *n, size_t max, int fd, short events)
{
	if (fd < 0 || *n >= max)
		return -1;
	p[*n] = (struct pollfd){ .fd = fd, .events = events };
	return (int)(*n)++;
}

static bool have_room(struct attach_server *s)
{
	for (size_t i = 0; i < ATTACH_MAX_CLIENTS; i++)
		if (!s->clients[i])
			return true;
	return false;
}

size_t attach_poll_fill(struct attach_server *s, struct pollfd *p, size_t max)
{
	size_t n = 0;
	s->pidx_listen = have_room(s) ? add_poll(p, &n, max, s->listen_fd, POLLIN) : -1;
	s->pidx_stdin = s->in_len ? add_poll(p, &n, max, s->cfg.ctr_stdin, POLLOUT) : -1;
	bool stdin_room = s->cfg.ctr_stdin < 0 || s->in_len < sizeof(s->in);
	for (size_t i = 0; i < ATTACH_MAX_CLIENTS; i++) {
		struct attach_client *c = s->clients[i];
		if (!c)
			continue;
		c->pidx[0] = add_poll(p, &n, max, c->ctl, POLLIN);
		c->pidx[1] = stdin_room ? add_poll(p, &n, max, c->in_fd, POLLIN) : -1;
		for (int k = 0; k < 2; k++)
			c->pidx[2 + k] = c->q[k].len ? add_poll(p, &n, max, c->out_fd[k], POLLOUT) : -1;
	}
	return n;
}

static bool fired(const struct pollfd *p, size_t n, int idx)
{
	return idx >= 0 && (size_t)idx < n && p[idx].revents;
}

void attach_poll_handle(struct attach_server *s, const struct pollfd *p, size_t n)
{
	if (fired(p, n, s->pidx_stdin))
		flush_stdin(s);
	for (size_t i = 0; i < ATTACH_MAX_CLIENTS; i++) {
		struct attach_client *c = s->clients[i];
		if (!c)
			continue;
		/* stdin before the control socket: a client's last input precedes its detach */
		if (!c->dead && c->in_fd >= 0 && fired(p, n, c->pidx[1]))
			read_client_stdin(s, c);
		if (!c->dead && fired(p, n, c->pidx[0]))
			client_ctl(s, c);
		for (int k = 0; k < 2; k++)
			if (!c->dead && fired(p, n, c->pidx[2 + k]) && !flush_queue(c->out_fd[k], &c->q[k]))
				c->dead = true;
	}
	for (size_t i = 0; i < ATTACH_MAX_CLIENTS; i++) {
		if (s->clients[i] && s->clients[i]->dead)
			drop_client(s, i);
		else if (s->clients[i])
			memset(s->clients[i]->pidx, 0xff, sizeof(s->clients[i]->pidx)); /* -1 */
	}
	/* new clients last: their pollfd indexes start at -1 until the next fill */
	if (fired(p, n, s->pidx_listen))
		accept_clients(s);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void attach_close(struct attach_server *s, int timeout_ms)
{
	if (!s)
		return;
	long long deadline = now_ms() + timeout_ms;
	for (;;) {
		struct pollfd p[2 * ATTACH_MAX_CLIENTS];
		struct obuf *qs[2 * ATTACH_MAX_CLIENTS];
		nfds_t n = 0;
		for (size_t i = 0; i < ATTACH_MAX_CLIENTS; i++)
			for (int k = 0; s->clients[i] && k < 2; k++)
				if (s->clients[i]->q[k].len && s->clients[i]->out_fd[k] >= 0) {
					qs[n] = &s->clients[i]->q[k];
					p[n++] = (struct pollfd){ .fd = s->clients[i]->out_fd[k], .events = POLLOUT };
				}
		long long left = deadline - now_ms();
		if (n == 0 || left <= 0 || poll(p, n, (int)left) <= 0)
			break;
		for (nfds_t i = 0; i < n; i++)
			if (p[i].revents && !flush_queue(p[i].fd, qs[i]))
				qs[i]->len = 0;
	}
	for (size_t i = 0; i < ATTACH_MAX_CLIENTS; i++)
		if (s->clients[i])
			drop_client(s, i);
	unlinkat(s->dirfd, VGPU_ATTACH_SOCKET, 0);
	close_fd(&s->listen_fd);
	close_fd(&s->dirfd);
	close_fd(&s->cfg.ctr_stdin);
	close_fd(&s->cfg.pty);
	free(s);
}
