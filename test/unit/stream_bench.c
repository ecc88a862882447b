/* vgpu-stream-bench: the streaming server's own cost, without a Python client in the way. Starts
 * the server in-process with the host TEST BACKEND, then as a SPDY client (our codec, cri/spdy.c;
 * the protocol itself is checked by an independent client in test_streaming.py) measures
 *   - exec round trip: mint token, upgrade, streams, `true` runs, status received;
 *   - port-forward throughput to a local sink/source (upload, download) over loopback.
 * Usage: vgpu-stream-bench [EXECS] [MIB] */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "spdy.h"
#include "streaming.h"
#include "streaming_test_backend.h"
#include "util.h"

#define DIE(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

struct client {
	int fd;
	struct spdy_zctx z;
	struct spdy_buf in;
	uint32_t next_id;
};

static void xsend(int fd, const void *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0)
			DIE("send: %s", strerror(errno));
		p = (const char *)p + w;
		n -= (size_t)w;
	}
}

static void client_open(struct client *c, const char *url, const char *proto)
{
	unsigned port;
	char path[256];
	if (sscanf(url, "http://127.0.0.1:%u%255s", &port, path) != 2)
		DIE("bad url %s", url);
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		DIE("connect: %s", strerror(errno));
	char req[512];
	int n = snprintf(req, sizeof(req), "POST %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
			 "X-Stream-Protocol-Version: %s\r\n\r\n", path, proto);
	xsend(c->fd, req, (size_t)n);
	memset(&c->in, 0, sizeof(c->in));
	char buf[4096];
	for (;;) {
		ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
		if (r <= 0)
			DIE("handshake: connection closed");
		spdy_buf_append(&c->in, buf, (size_t)r);
		uint8_t *end = memmem(c->in.data, c->in.len, "\r\n\r\n", 4);
		if (end) {
			if (memcmp(c->in.data, "HTTP/1.1 101", 12) != 0)
				DIE("no upgrade");
			spdy_buf_consume(&c->in, (size_t)(end + 4 - c->in.data));
			break;
		}
	}
	struct vgpu_err err;
	if (spdy_zctx_init(&c->z, &err) < 0)
		DIE("%s", err.msg);
	c->next_id = 1;
}

static void client_close(struct client *c)
{
	close(c->fd);
	spdy_zctx_fini(&c->z);
	spdy_buf_free(&c->in);
}

static uint32_t open_stream(struct client *c, const char *type, const char *port, const char *rid)
{
	struct spdy_headers h = { 0 };
	spdy_headers_add(&h, "streamtype", type);
	if (port)
		spdy_headers_add(&h, "port", port);
	if (rid)
		spdy_headers_add(&h, "requestid", rid);
	struct spdy_buf b = { 0 };
	uint32_t id = c->next_id;
	c->next_id += 2;
	spdy_put_syn_stream(&b, &c->z, id, 0, 0, 0, &h);
	xsend(c->fd, b.data, b.len);
	spdy_buf_free(&b);
	spdy_headers_free(&h);
	return id;
}

/* Read frames until stream `until` gets FIN; counts data bytes of stream `count` (0 = none). */
static size_t read_until_fin(struct client *c, uint32_t until, uint32_t count)
{
	size_t total = 0;
	struct vgpu_err err;
	for (;;) {
		size_t off = 0;
		bool done = false;
		while (!done) {
			struct spdy_frame f;
			ssize_t n = spdy_frame_parse(c->in.data + off, c->in.len - off, SPDY_MAX_LENGTH, &f, &err);
			if (n < 0)
				DIE("%s", err.msg);
			if (n == 0)
				break;
			off += (size_t)n;
			if (f.control && f.type == SPDY_SYN_REPLY) {
				struct spdy_headers h;
				spdy_headers_decode(&c->z, f.data, f.data_len, &h, &err);
				spdy_headers_free(&h);
			}
			if (!f.control && f.stream_id == count)
				total += f.data_len;
			if (!f.control && f.stream_id == until && (f.flags & SPDY_FLAG_FIN))
				done = true;
		}
		spdy_buf_consume(&c->in, off);
		if (done)
			return total;
		char buf[1 << 16];
		ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
		if (r <= 0)
			DIE("connection closed early");
		spdy_buf_append(&c->in, buf, (size_t)r);
	}
}

static void *sink_main(void *arg)
{
	int lfd = *(int *)arg;
	static char blk[1 << 16];
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			return NULL;
		char mode;
		if (recv(fd, &mode, 1, MSG_WAITALL) != 1) {
			close(fd);
			continue;
		}
		if (mode == 'd') { /* discard */
			while (recv(fd, blk, sizeof(blk), 0) > 0)
				;
		} else { /* source: 8-byte count of bytes follows */
			unsigned long long n;
			if (recv(fd, &n, sizeof(n), MSG_WAITALL) == sizeof(n))
				for (unsigned long long s = 0; s < n; s += sizeof(blk))
					xsend(fd, blk, n - s < sizeof(blk) ? n - s : sizeof(blk));
		}
		close(fd);
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	int execs = argc > 1 ? atoi(argv[1]) : 200;
	unsigned long long mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 1024;
	signal(SIGPIPE, SIG_IGN);
	vgpu_log_set_level(VGPU_LOG_WARN);
	struct vgpu_stream_backend backend;
	vgpu_stream_test_backend_init(&backend);
	struct vgpu_streaming_opts o = { .address = "127.0.0.1:0" };
	struct vgpu_streaming *s;
	struct vgpu_err err;
	if (vgpu_streaming_start(&o, &backend, &s, &err) < 0)
		DIE("%s", err.msg);
	static char *cmd_true[] = { "true", NULL };
	double *lat = calloc((size_t)execs, sizeof(double));
	for (int i = 0; i < execs; i++) {
		long long t0 = vgpu_now_ns();
		struct vgpu_stream_exec_req r = { .container_id = "bench", .cmd = cmd_true, .want_stdout = true };
		char *url;
		if (vgpu_streaming_mint_exec(s, &r, false, &url, &err) < 0)
			DIE("%s", err.msg);
		struct client c;
		client_open(&c, url, "v4.channel.k8s.io");
		uint32_t e = open_stream(&c, "error", NULL, NULL);
		open_stream(&c, "stdout", NULL, NULL);
		read_until_fin(&c, e, 0);
		client_close(&c);
		free(url);
		lat[i] = (double)(vgpu_now_ns() - t0) / 1e6;
	}
	qsort(lat, (size_t)execs, sizeof(double), cmp_double);
	printf("exec true round trip (spdy, in-process C client) n=%d: median %.2f ms, p90 %.2f ms, p99 %.2f ms\n",
	       execs, lat[execs / 2], lat[execs * 9 / 10], lat[execs * 99 / 100]);
	free(lat);

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof(a);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 8) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
		DIE("sink: %s", strerror(errno));
	pthread_t sink;
	pthread_create(&sink, NULL, sink_main, &lfd);
	char port[16];
	snprintf(port, sizeof(port), "%u", ntohs(a.sin_port));
	char *url;
	if (vgpu_streaming_mint_port_forward(s, "bench", &url, &err) < 0)
		DIE("%s", err.msg);
	struct client c;
	client_open(&c, url, "portforward.k8s.io");
	free(url);
	/* upload */
	uint32_t e = open_stream(&c, "error", port, "0");
	uint32_t d = open_stream(&c, "data", port, "0");
	static char blk[32768];
	struct spdy_buf b = { 0 };
	spdy_put_data(&b, d, 0, "d", 1);
	xsend(c.fd, b.data, b.len);
	long long t0 = vgpu_now_ns();
	for (unsigned long long i = 0; i < mib * 32; i++) {
		b.len = 0;
		spdy_put_data(&b, d, 0, blk, sizeof(blk));
		xsend(c.fd, b.data, b.len);
	}
	b.len = 0;
	spdy_put_data(&b, d, SPDY_FLAG_FIN, NULL, 0);
	xsend(c.fd, b.data, b.len);
	read_until_fin(&c, d, 0);
	double up = (double)mib / ((double)(vgpu_now_ns() - t0) / 1e9);
	(void)e;
	/* download */
	e = open_stream(&c, "error", port, "1");
	d = open_stream(&c, "data", port, "1");
	unsigned long long want = mib << 20;
	char hdr[9] = { 's' };
	memcpy(hdr + 1, &want, 8);
	b.len = 0;
	spdy_put_data(&b, d, SPDY_FLAG_FIN, hdr, sizeof(hdr));
	xsend(c.fd, b.data, b.len);
	t0 = vgpu_now_ns();
	size_t got = read_until_fin(&c, d, d);
	double down = (double)mib / ((double)(vgpu_now_ns() - t0) / 1e9);
	if (got != want)
		DIE("download: %zu of %llu bytes", got, want);
	spdy_buf_free(&b);
	client_close(&c);
	printf("port-forward (spdy, in-process C client) %llu MiB: upload %.0f MiB/s, download %.0f MiB/s\n", mib, up, down);
	shutdown(lfd, SHUT_RDWR);
	close(lfd);
	pthread_join(sink, NULL);
	vgpu_streaming_stop(s);
	return 0;
}
