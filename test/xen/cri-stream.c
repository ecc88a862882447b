/* cri-stream: a minimal WebSocket client of Kubernetes' remote-command protocol (v5.channel.k8s.io)
 * for the Xen test bed's dom0, which has no python (see cri-stream.h). Written from RFC 6455 and
 * the channel protocol in docs/streaming.md: messages are binary, the first byte the channel (0
 * stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize, 255 + ch: client closed ch). */
#include "cri-stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_MSG (8u << 20)

struct growbuf {
	uint8_t *p;
	size_t len, cap;
};

static int gb_add(struct growbuf *b, const void *data, size_t n)
{
	if (b->len + n > MAX_MSG)
		return -1;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	return 0;
}

static void print_escaped(const char *label, const uint8_t *p, size_t n)
{
	printf(" %s=", label);
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n')
			fputs("\\n", stdout);
		else if (p[i] == '\r')
			fputs("\\r", stdout);
		else if (p[i] >= 32 && p[i] < 127)
			putchar(p[i]);
		else
			printf("\\x%02x", p[i]);
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_all(int fd, const void *p, size_t n)
{
	for (size_t done = 0; done < n;) {
		ssize_t w = write(fd, (const char *)p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		done += (size_t)w;
	}
	return 0;
}

/* One masked client frame. */
static int ws_send(int fd, int opcode, const void *data, size_t n)
{
	uint8_t hdr[14], mask[4] = { 0x12, 0x34, 0x56, 0x78 };
	size_t h = 0;
	hdr[h++] = (uint8_t)(0x80 | opcode);
	if (n < 126) {
		hdr[h++] = (uint8_t)(0x80 | n);
	} else if (n < 65536) {
		hdr[h++] = 0x80 | 126;
		hdr[h++] = (uint8_t)(n >> 8);
		hdr[h++] = (uint8_t)n;
	} else {
		hdr[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			hdr[h++] = (uint8_t)((uint64_t)n >> (8 * i));
	}
	memcpy(hdr + h, mask, 4);
	h += 4;
	uint8_t *buf = malloc(h + n);
	if (!buf)
		return -1;
	memcpy(buf, hdr, h);
	for (size_t i = 0; i < n; i++)
		buf[h + i] = ((const uint8_t *)data)[i] ^ mask[i % 4];
	int r = write_all(fd, buf, h + n);
	free(buf);
	return r;
}

static int send_channel(int fd, uint8_t ch, const void *data, size_t n)
{
	uint8_t *msg = malloc(n + 1);
	if (!msg)
		return -1;
	msg[0] = ch;
	memcpy(msg + 1, data, n);
	int r = ws_send(fd, 2, msg, n + 1);
	free(msg);
	return r;
}

static int connect_url(const char *url, char *path, size_t path_len, char *host, size_t host_len)
{
	unsigned a, b, c, d, port;
	int n = 0;
	if (sscanf(url, "http://%u.%u.%u.%u:%u%n", &a, &b, &c, &d, &port, &n) != 5 || url[n] != '/')
		return -1;
	snprintf(path, path_len, "%s", url + n);
	snprintf(host, host_len, "%u.%u.%u.%u:%u", a, b, c, d, port);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(a << 24 | b << 16 | c << 8 | d);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* The upgrade; leftover bytes after the response go into in. */
static int handshake(int fd, const char *path, const char *host, struct growbuf *in)
{
	char req[1024];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
			 "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
			 path, host);
	if (write_all(fd, req, (size_t)n) < 0)
		return -1;
	char resp[4096];
	size_t len = 0;
	char *end = NULL;
	while (!end) {
		if (len == sizeof(resp) - 1)
			return -1;
		ssize_t r = read(fd, resp + len, sizeof(resp) - 1 - len);
		if (r <= 0)
			return -1;
		len += (size_t)r;
		resp[len] = '\0';
		end = strstr(resp, "\r\n\r\n");
	}
	if (strncmp(resp, "HTTP/1.1 101", 12) != 0) {
		printf("CRI stream error handshake: %.200s\n", resp);
		return -1;
	}
	size_t used = (size_t)(end + 4 - resp);
	return gb_add(in, resp + used, len - used);
}

/* Decode C escapes of the command line's stdin text. */
static size_t unescape(const char *s, char *out)
{
	size_t n = 0;
	for (; *s; s++) {
		if (*s != '\\' || !s[1]) {
			out[n++] = *s;
			continue;
		}
		s++;
		if (*s == 'n')
			out[n++] = '\n';
		else if (*s == 'r')
			out[n++] = '\r';
		else if (*s == 't')
			out[n++] = '\t';
		else if (*s >= '0' && *s <= '7') {
			int v = 0;
			for (int i = 0; i < 3 && *s >= '0' && *s <= '7'; i++, s++)
				v = v * 8 + (*s - '0');
			s--;
			out[n++] = (char)v;
		} else
			out[n++] = *s;
	}
	return n;
}

struct session {
	int fd;
	struct growbuf in, msg, out[3]; /* out: stdout, stderr, status */
	int msg_op;
	bool closed;
};

/* Parse whole frames from s->in; complete messages go to their channel. -1: protocol error. */
static int parse_frames(struct session *s)
{
	for (;;) {
		uint8_t *p = s->in.p;
		size_t len = s->in.len, h = 2;
		if (len < 2)
			return 0;
		uint64_t n = p[1] & 0x7f;
		if (n == 126) {
			if (len < 4)
				return 0;
			n = (uint64_t)p[2] << 8 | p[3];
			h = 4;
		} else if (n == 127) {
			if (len < 10)
				return 0;
			n = 0;
			for (int i = 0; i < 8; i++)
				n = n << 8 | p[2 + i];
			h = 10;
		}
		if (p[1] & 0x80)
			h += 4; /* a server must not mask; tolerate it */
		if (n > MAX_MSG)
			return -1;
		if (len < h + n)
			return 0;
		if (p[1] & 0x80)
			for (uint64_t i = 0; i < n; i++)
				p[h + i] ^= p[h - 4 + i % 4];
		int op = p[0] & 0x0f;
		bool fin = p[0] & 0x80;
		if (op == 8) {
			s->closed = true;
		} else if (op == 9) {
			ws_send(s->fd, 10, p + h, (size_t)n);
		} else if (op == 0 || op == 1 || op == 2) {
			if (op)
				s->msg_op = op, s->msg.len = 0;
			if (gb_add(&s->msg, p + h, (size_t)n) < 0)
				return -1;
			if (fin && s->msg.len >= 1 && s->msg.p[0] >= 1 && s->msg.p[0] <= 3 &&
			    gb_add(&s->out[s->msg.p[0] - 1], s->msg.p + 1, s->msg.len - 1) < 0)
				return -1;
		}
		memmove(s->in.p, s->in.p + h + n, len - h - (size_t)n);
		s->in.len -= h + (size_t)n;
	}
}

static bool contains(const struct growbuf *b, const char *text)
{
	size_t n = strlen(text);
	for (size_t i = 0; n && i + n <= b->len; i++)
		if (memcmp(b->p + i, text, n) == 0)
			return true;
	return false;
}

/* Exit code from the v5 status: Success = 0, NonZeroExitCode's cause, else -1. */
static int status_code(const struct growbuf *st)
{
	char text[4096];
	size_t n = st->len < sizeof(text) - 1 ? st->len : sizeof(text) - 1;
	memcpy(text, st->p ? (const char *)st->p : "", n);
	text[n] = '\0';
	if (strstr(text, "\"status\":\"Success\""))
		return 0;
	const char *c = strstr(text, "\"reason\":\"ExitCode\",\"message\":\"");
	return c ? atoi(c + strlen("\"reason\":\"ExitCode\",\"message\":\"")) : -1;
}

static int send_opening(int fd, const struct cri_stream_opts *o)
{
	if (o->width > 0) {
		char msg[64];
		int n = snprintf(msg, sizeof(msg), "{\"Width\":%d,\"Height\":%d}", o->width, o->height);
		if (send_channel(fd, 4, msg, (size_t)n) < 0)
			return -1;
	}
	if (o->stdin_text) {
		char *text = malloc(strlen(o->stdin_text) + 1);
		if (!text)
			return -1;
		size_t n = unescape(o->stdin_text, text);
		if (o->stdin_delay_ms)
			usleep((useconds_t)o->stdin_delay_ms * 1000);
		int r = send_channel(fd, 0, text, n);
		free(text);
		if (r < 0)
			return -1;
	}
	if (o->close_stdin) {
		uint8_t sig[2] = { 255, 0 };
		if (ws_send(fd, 2, sig, 2) < 0)
			return -1;
	}
	return 0;
}

int cri_stream_run(const char *url, const struct cri_stream_opts *o)
{
	struct session s = { .fd = -1 };
	char path[512], host[64];
	int rc = 1;
	s.fd = connect_url(url, path, sizeof(path), host, sizeof(host));
	if (s.fd < 0) {
		printf("CRI stream error cannot connect to %s\n", url);
		return 1;
	}
	if (handshake(s.fd, path, host, &s.in) < 0 || send_opening(s.fd, o) < 0)
		goto out;
	double deadline = now_s() + (o->timeout_s > 0 ? o->timeout_s : 120);
	bool eof = false;
	while (!s.closed && !eof) {
		if (parse_frames(&s) < 0) {
			printf("CRI stream error bad frame\n");
			goto out;
		}
		if (o->leave_after && contains(&s.out[0], o->leave_after)) {
			printf("CRI stream left");
			print_escaped("stdout", s.out[0].p, s.out[0].len);
			putchar('\n');
			rc = 0;
			goto out; /* dropped without a close frame, like a client that vanished */
		}
		if (s.closed)
			break;
		int left = (int)((deadline - now_s()) * 1000);
		struct pollfd p = { .fd = s.fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, left) == 0) {
			printf("CRI stream error timeout");
			print_escaped("stdout", s.out[0].p, s.out[0].len);
			putchar('\n');
			goto out;
		}
		uint8_t buf[16384];
		ssize_t n = read(s.fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			eof = true;
		else if (gb_add(&s.in, buf, (size_t)n) < 0)
			goto out;
	}
	(void)parse_frames(&s);
	int code = status_code(&s.out[2]);
	printf("CRI stream exit=%d", code);
	print_escaped("stdout", s.out[0].p, s.out[0].len);
	print_escaped("stderr", s.out[1].p, s.out[1].len);
	if (code < 0)
		print_escaped("status", s.out[2].p, s.out[2].len);
	putchar('\n');
	rc = 0;
out:
	close(s.fd);
	free(s.in.p);
	free(s.msg.p);
	for (int i = 0; i < 3; i++)
		free(s.out[i].p);
	return rc;
}
