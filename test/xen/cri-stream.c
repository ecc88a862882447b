/* cri-stream: a minimal WebSocket client of Kubernetes' remote-command protocol (v5.channel.k8s.io)
 * for the Xen test bed's dom0, which has no python (see cri-stream.h). Written from RFC 6455 and
 * the channel protocol in docs/streaming.md: messages are binary, the first byte the channel (0
 * stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize, 255 + ch: client closed ch). */
#include "cri-stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

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

/* Sends an HTTP upgrade request and reads up to the end of the 101 response; leftover bytes go
 * into in. what names the stream in the error line. */
static int upgrade(int fd, const char *req, size_t n, const char *what, struct growbuf *in)
{
	if (write_all(fd, req, n) < 0)
		return -1;
	char resp[4096];
	size_t len = 0;
	char *end = NULL;
	while (!end) {
		ssize_t r = len < sizeof(resp) - 1 ? read(fd, resp + len, sizeof(resp) - 1 - len) : -1;
		if (r <= 0)
			return -1;
		len += (size_t)r;
		resp[len] = '\0';
		end = strstr(resp, "\r\n\r\n");
	}
	if (strncmp(resp, "HTTP/1.1 101", 12) != 0) {
		printf("CRI %s error handshake: %.200s\n", what, resp);
		return -1;
	}
	size_t used = (size_t)(end + 4 - resp);
	return gb_add(in, resp + used, len - used);
}

/* The websocket upgrade of exec/attach. */
static int handshake(int fd, const char *path, const char *host, struct growbuf *in)
{
	char req[1024];
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
			 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
			 "Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
			 path, host);
	return upgrade(fd, req, (size_t)n, "stream", in);
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

/* ---- port-forward: portforward.k8s.io over raw SPDY/3.1 (HTTP Upgrade) ----
 * Frames (big-endian): control |0x8003|type:16|flags:8|len:24| payload; data |id:32|flags:8|len:24|.
 * SYN_STREAM (1): id, associated id 0, priority 0, slot 0, then the header block: a zlib stream (one
 * per session, each block ended by a sync flush) of |count:32| (|len:32|name| |len:32|value|)*.
 * Written without SPDY's preset dictionary: zlib's header then says so (no FDICT), which any
 * inflater accepts. Server control frames: SYN_REPLY (ignored), RST_STREAM, GOAWAY, PING (echoed). */

#define PF_MAX_CONNS 16
#define PF_CHUNK 16384

struct pf_conn {
	uint32_t err_id, data_id;
	int out_fd;
	size_t sent, received;
	bool fin_sent, data_end, err_end, printed;
	struct growbuf err;
};

static int put_be32(struct growbuf *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	return gb_add(b, x, 4);
}

static int pf_header(struct growbuf *raw, const char *name, const char *value)
{
	return put_be32(raw, (uint32_t)strlen(name)) || gb_add(raw, name, strlen(name)) ||
	       put_be32(raw, (uint32_t)strlen(value)) || gb_add(raw, value, strlen(value)) ? -1 : 0;
}

static int pf_syn_stream(z_stream *z, struct growbuf *out, uint32_t id, const char *type, int port, int req)
{
	struct growbuf raw = { 0 };
	char port_s[16], req_s[16];
	uint8_t zbuf[1024];
	snprintf(port_s, sizeof(port_s), "%d", port);
	snprintf(req_s, sizeof(req_s), "%d", req);
	int r = put_be32(&raw, 3) || pf_header(&raw, "streamtype", type) || pf_header(&raw, "port", port_s) ||
			pf_header(&raw, "requestid", req_s) ? -1 : 0;
	z->next_in = raw.p;
	z->avail_in = (uInt)raw.len;
	z->next_out = zbuf;
	z->avail_out = sizeof(zbuf);
	if (r == 0 && (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in != 0))
		r = -1;
	free(raw.p);
	if (r < 0)
		return -1;
	size_t zlen = sizeof(zbuf) - z->avail_out, len = 10 + zlen;
	uint8_t hdr[18] = { 0x80, 0x03, 0, 1, 0, (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };
	hdr[8] = (uint8_t)(id >> 24), hdr[9] = (uint8_t)(id >> 16), hdr[10] = (uint8_t)(id >> 8), hdr[11] = (uint8_t)id;
	return gb_add(out, hdr, 18) || gb_add(out, zbuf, zlen) ? -1 : 0;
}

static int pf_data(struct growbuf *out, uint32_t id, const void *data, size_t n, bool fin)
{
	uint8_t hdr[8] = { (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id,
			   fin ? 1 : 0, (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
	return gb_add(out, hdr, 8) || (n && gb_add(out, data, n)) ? -1 : 0;
}

static struct pf_conn *pf_find(struct pf_conn *c, int n, uint32_t id)
{
	for (int i = 0; i < n; i++)
		if (c[i].err_id == id || c[i].data_id == id)
			return &c[i];
	return NULL;
}

/* Whole frames from in; -1 on a protocol error or GOAWAY. */
static int pf_parse(struct growbuf *in, struct growbuf *out, struct pf_conn *c, int n)
{
	while (in->len >= 8) {
		uint8_t *p = in->p;
		uint32_t len = (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
		if (in->len < 8 + (size_t)len)
			return 0;
		bool fin = p[4] & 1;
		uint32_t id = ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]) & 0x7fffffffu;
		if (p[0] & 0x80) {
			int type = p[2] << 8 | p[3];
			uint32_t sid = len >= 4 ? ((uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11]) &
							  0x7fffffffu : 0;
			struct pf_conn *k = pf_find(c, n, sid);
			if (type == 7) /* GOAWAY */
				return -1;
			if (type == 6 && (gb_add(out, p, 8 + (size_t)len) < 0)) /* PING: echo */
				return -1;
			if (k && (type == 3 || (type == 2 && fin))) { /* RST_STREAM, SYN_REPLY with FIN */
				bool *end = sid == k->err_id ? &k->err_end : &k->data_end;
				*end = true;
			}
		} else {
			struct pf_conn *k = pf_find(c, n, id);
			if (k && id == k->data_id) {
				k->received += len;
				if (k->out_fd >= 0 && len && write_all(k->out_fd, p + 8, len) < 0)
					return -1;
				k->data_end = k->data_end || fin;
			} else if (k) {
				if (gb_add(&k->err, p + 8, len) < 0)
					return -1;
				k->err_end = k->err_end || fin;
			}
		}
		memmove(in->p, in->p + 8 + len, in->len - 8 - len);
		in->len -= 8 + (size_t)len;
	}
	return 0;
}

/* The SPDY upgrade of port-forward; leftover bytes into in. */
static int pf_handshake(int fd, const char *path, const char *host, struct growbuf *in)
{
	char req[1024];
	int n = snprintf(req, sizeof(req),
			 "POST %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
			 "X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n", path, host);
	return upgrade(fd, req, (size_t)n, "pf", in);
}

/* Queue more of the input on every connection while little is queued (all in one round robin). */
static int pf_feed(struct growbuf *out, struct pf_conn *c, int n, const struct growbuf *input, bool have_input,
		   bool hold)
{
	for (int i = 0; i < n && out->len < 4 * PF_CHUNK; i++) {
		if (c[i].fin_sent || (!c[i].data_end && !have_input && hold))
			continue;
		if (c[i].data_end) { /* the port closed: close ours too (what kubectl does) */
			if (pf_data(out, c[i].data_id, NULL, 0, true) < 0)
				return -1;
			c[i].fin_sent = true;
			continue;
		}
		size_t k = have_input ? input->len - c[i].sent : 0;
		k = k > PF_CHUNK ? PF_CHUNK : k;
		bool fin = c[i].sent + k == (have_input ? input->len : 0);
		if (pf_data(out, c[i].data_id, have_input ? input->p + c[i].sent : NULL, k, fin) < 0)
			return -1;
		c[i].sent += k;
		c[i].fin_sent = fin;
	}
	return 0;
}

int cri_pf_run(const char *url, const struct cri_pf_opts *o)
{
	struct pf_conn c[PF_MAX_CONNS];
	struct growbuf in = { 0 }, out = { 0 }, input = { 0 };
	char path[512], host[64];
	int n = o->conns < 1 ? 1 : o->conns > PF_MAX_CONNS ? PF_MAX_CONNS : o->conns, rc = 1;
	z_stream z = { 0 };
	double t0 = now_s();
	memset(c, 0, sizeof(c));
	if (deflateInit(&z, Z_DEFAULT_COMPRESSION) != Z_OK)
		return 1;
	int fd = connect_url(url, path, sizeof(path), host, sizeof(host));
	if (fd < 0) {
		printf("CRI pf error cannot connect to %s\n", url);
		goto out;
	}
	if (o->in_file) {
		FILE *f = fopen(o->in_file, "rb");
		uint8_t buf[65536];
		size_t k;
		while (f && (k = fread(buf, 1, sizeof(buf), f)) > 0)
			if (gb_add(&input, buf, k) < 0)
				break;
		if (!f || ferror(f)) {
			printf("CRI pf error cannot read %s\n", o->in_file);
			if (f)
				fclose(f);
			goto out;
		}
		fclose(f);
	}
	if (pf_handshake(fd, path, host, &in) < 0)
		goto out;
	for (int i = 0; i < n; i++) {
		c[i].err_id = 1 + 4 * (uint32_t)i;
		c[i].data_id = 3 + 4 * (uint32_t)i;
		c[i].out_fd = -1;
		if (o->out_prefix) {
			char name[512];
			snprintf(name, sizeof(name), "%s.%d", o->out_prefix, i);
			c[i].out_fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		}
		if (pf_syn_stream(&z, &out, c[i].err_id, "error", o->port, i) < 0 ||
		    pf_syn_stream(&z, &out, c[i].data_id, "data", o->port, i) < 0)
			goto out;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	double deadline = t0 + (o->timeout_s > 0 ? o->timeout_s : 120);
	for (int done = 0; done < n;) {
		if (pf_feed(&out, c, n, &input, o->in_file != NULL, o->hold) < 0)
			goto out;
		struct pollfd p = { .fd = fd, .events = POLLIN | (out.len ? POLLOUT : 0) };
		int left = (int)((deadline - now_s()) * 1000);
		if (left <= 0 || poll(&p, 1, left > 500 ? 500 : left) < 0) {
			if (left > 0 && errno == EINTR)
				continue;
			printf("CRI pf error timeout after %.2f s:", now_s() - t0);
			for (int i = 0; i < n; i++)
				printf(" conn=%d sent=%zu received=%zu data_end=%d err_end=%d", i, c[i].sent, c[i].received,
				       c[i].data_end, c[i].err_end);
			putchar('\n');
			goto out;
		}
		if ((p.revents & POLLOUT) && out.len) {
			ssize_t w = write(fd, out.p, out.len);
			if (w < 0 && errno != EAGAIN && errno != EINTR)
				goto out;
			if (w > 0) {
				memmove(out.p, out.p + w, out.len - (size_t)w);
				out.len -= (size_t)w;
			}
		}
		if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
			uint8_t buf[65536];
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				printf("CRI pf error the server closed the connection\n");
				goto out;
			}
			if (r > 0 && (gb_add(&in, buf, (size_t)r) < 0 || pf_parse(&in, &out, c, n) < 0)) {
				printf("CRI pf error bad frame or GOAWAY\n");
				goto out;
			}
		}
		for (int i = 0; i < n; i++) {
			if (c[i].printed || !c[i].data_end || !c[i].err_end)
				continue;
			printf("CRI pf conn=%d bytes=%zu secs=%.2f", i, c[i].received, now_s() - t0);
			print_escaped("error", c[i].err.p, c[i].err.len);
			putchar('\n');
			c[i].printed = true;
			done++;
		}
	}
	printf("CRI pf done conns=%d secs=%.2f\n", n, now_s() - t0);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	deflateEnd(&z);
	for (int i = 0; i < n; i++) {
		if (c[i].out_fd >= 0)
			close(c[i].out_fd);
		free(c[i].err.p);
	}
	free(in.p);
	free(out.p);
	free(input.p);
	return rc;
}
