/* The daemon <-> vgpu-monitor attach protocol: message encoding and fd passing (attach_proto.h). */
#include "attach_proto.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t vgpu_attach_encode(uint8_t buf[VGPU_ATTACH_MSG_MAX], const struct vgpu_attach_msg *m)
{
	size_t tlen = strnlen(m->text, VGPU_ATTACH_TEXT_MAX);
	put32(buf, VGPU_ATTACH_MAGIC);
	put16(buf + 4, m->type);
	put16(buf + 6, (uint16_t)tlen);
	put32(buf + 8, m->a);
	put32(buf + 12, m->b);
	memcpy(buf + VGPU_ATTACH_HDR_SIZE, m->text, tlen);
	return VGPU_ATTACH_HDR_SIZE + tlen;
}

int vgpu_attach_decode(const uint8_t *buf, size_t len, struct vgpu_attach_msg *m)
{
	memset(m, 0, sizeof(*m));
	if (len < VGPU_ATTACH_HDR_SIZE || get32(buf) != VGPU_ATTACH_MAGIC)
		return -EBADMSG;
	size_t tlen = get16(buf + 6);
	if (tlen > VGPU_ATTACH_TEXT_MAX || len != VGPU_ATTACH_HDR_SIZE + tlen)
		return -EBADMSG;
	m->type = get16(buf + 4);
	m->a = get32(buf + 8);
	m->b = get32(buf + 12);
	memcpy(m->text, buf + VGPU_ATTACH_HDR_SIZE, tlen);
	m->text[tlen] = '\0';
	if (memchr(m->text, '\0', tlen))
		return -EBADMSG;
	const uint32_t streams = VGPU_ATTACH_STDIN | VGPU_ATTACH_STDOUT | VGPU_ATTACH_STDERR;
	const uint32_t modes = VGPU_ATTACH_TTY | VGPU_ATTACH_HAS_STDIN | VGPU_ATTACH_STDIN_ONCE;
	switch (m->type) {
	case VGPU_ATTACH_HELLO:
		return m->a == 0 || (m->a & ~streams) || m->b || tlen ? -EBADMSG : 0;
	case VGPU_ATTACH_REPLY:
		return (m->b & ~modes) ? -EBADMSG : 0;
	case VGPU_ATTACH_RESIZE:
		return m->a < 1 || m->a > UINT16_MAX || m->b < 1 || m->b > UINT16_MAX || tlen ? -EBADMSG : 0;
	default:
		return -EBADMSG;
	}
}

size_t vgpu_attach_hello_fds(uint32_t streams)
{
	return (size_t)!!(streams & VGPU_ATTACH_STDIN) + !!(streams & VGPU_ATTACH_STDOUT) +
	       !!(streams & VGPU_ATTACH_STDERR);
}

int vgpu_attach_send(int sock, const struct vgpu_attach_msg *m, const int *fds, size_t nfds)
{
	if (nfds > VGPU_ATTACH_MAX_FDS)
		return -EINVAL;
	uint8_t buf[VGPU_ATTACH_MSG_MAX];
	struct iovec iov = { .iov_base = buf, .iov_len = vgpu_attach_encode(buf, m) };
	union {
		char buf[CMSG_SPACE(sizeof(int) * VGPU_ATTACH_MAX_FDS)];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds) {
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	ssize_t n;
	do
		n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (size_t)n == iov.iov_len ? 0 : -EIO;
}

ssize_t vgpu_recv_fds(int sock, void *buf, size_t len, int *fds, size_t max_fds, size_t *nfds)
{
	struct iovec iov = { .iov_base = buf, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			     .msg_controllen = sizeof(ctl.buf) };
	*nfds = 0;
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	size_t kept = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (kept < max_fds)
				fds[kept++] = fd;
			else
				close(fd);
		}
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (size_t i = 0; i < kept; i++)
			close(fds[i]);
		return -EBADMSG;
	}
	*nfds = kept;
	return n;
}

int vgpu_console_recv(int listen_fd, int timeout_ms)
{
	struct pollfd p = { .fd = listen_fd, .events = POLLIN };
	if (poll(&p, 1, timeout_ms) <= 0)
		return -ETIMEDOUT;
	int conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0)
		return -errno;
	char name[4096]; /* runc sends the pty's name with it */
	int master = -1;
	size_t nfds = 0;
	ssize_t n = vgpu_recv_fds(conn, name, sizeof(name), &master, 1, &nfds);
	close(conn);
	return n < 0 ? (int)n : nfds == 1 ? master : -EBADMSG;
}

int vgpu_attach_recv(int sock, struct vgpu_attach_msg *m, int *fds, size_t max_fds, size_t *nfds)
{
	uint8_t buf[VGPU_ATTACH_MSG_MAX + 1];
	ssize_t n = vgpu_recv_fds(sock, buf, sizeof(buf), fds, max_fds, nfds);
	if (n < 0)
		return (int)n;
	int r = n == 0 ? -EPIPE : vgpu_attach_decode(buf, (size_t)n, m);
	if (r < 0) {
		for (size_t i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
	}
	return r;
}
