/* xen-idm-attack: a hostile guest for the Xen transport of idm/ (run in a container of a GPU pod
 * on the xen handler, scenario `gpu`). Static, no Xen library: the guest side of idm/.
 *   xen-idm-attack ok       open a channel, HELLO, print the hello's pod id and device
 *   xen-idm-attack garbage  open a channel, HELLO, then scribble on the request ring and publish a
 *                           head index far past it; succeed when the broker closes the channel
 *   xen-idm-attack hang     open a channel, HELLO, fill the request ring with synchronous requests
 *                           and never read a reply; then only wait on the channel until the broker
 *                           ends it (CLOSED, or its epoch in xenstore changed: a daemon crash)
 *   xen-idm-attack xsjunk   write malformed channel offers into xenstore (bad format, wrong page
 *                           count, grants never given, a name that is not ours to use, a flood)
 *   xen-idm-attack many N   open N channels at once and keep them: the broker's per-pod cap holds
 * Markers on stdout: "XEN-ATTACK <mode> ..." */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "idm.h"

static int hello(struct idm_chan *ch)
{
	uint64_t seq;
	struct idm_hello_req *req = idm_client_begin(ch, IDM_OP_HELLO, 0, 0, &seq);
	if (req == NULL)
		return -1;
	req->version = IDM_PROTO_VERSION;
	req->pid = (uint32_t)getpid();
	if (idm_client_send(ch) < 0)
		return -1;
	struct idm_msg h;
	const struct idm_msg *rep = idm_client_wait_reply(ch, seq, &h);
	if (rep == NULL)
		return -1;
	idm_client_release(ch, &h);
	return 0;
}

static struct idm_chan *open_channel(const char *mode)
{
	struct idm_err err = { 0 };
	struct idm_chan *ch = NULL;
	uint64_t t0 = idm_now_ns();
	if (idm_xen_connect(NULL, 30000, &ch, &err) < 0) {
		printf("XEN-ATTACK %s: connect failed: %s\n", mode, err.msg);
		exit(2);
	}
	if (hello(ch) < 0) {
		printf("XEN-ATTACK %s: no HELLO reply\n", mode);
		exit(2);
	}
	printf("XEN-ATTACK %s: channel open pod=%s device='%s' soft=%u connect_ms=%.1f\n", mode,
		   ch->hello.pod_id, ch->hello.device_name, ch->hello.soft_device,
		   (double)(idm_now_ns() - t0) / 1e6);
	fflush(stdout);
	return ch;
}

static int do_garbage(void)
{
	struct idm_chan *ch = open_channel("garbage");
	/* random bytes over the whole request ring, then a head far beyond it */
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, ch->tx.data, ch->tx.size) != (ssize_t)ch->tx.size) {
		printf("XEN-ATTACK garbage: /dev/urandom: %s\n", strerror(errno));
		return 2;
	}
	close(fd);
	atomic_store(&ch->tx.ctl->head, ch->tx.pos + 3 * ch->tx.size + 5);
	(void)ch->ops->notify(ch);
	uint64_t t0 = idm_now_ns();
	for (;;) {
		int rc = ch->ops->wait(ch, 1000);
		if (rc == -EPIPE) {
			printf("XEN-ATTACK garbage: channel closed by the broker after %.1f ms\n",
				   (double)(idm_now_ns() - t0) / 1e6);
			return 0;
		}
		(void)ch->ops->notify(ch);
		if (idm_now_ns() - t0 > 60ull * 1000000000ull) {
			printf("XEN-ATTACK garbage: channel still open after 60 s\n");
			return 1;
		}
	}
}

static __attribute__((noreturn)) void do_hang(void)
{
	struct idm_chan *ch = open_channel("hang");
	unsigned n = 0;
	for (;;) {
		struct idm_msg *m = idm_ring_reserve(&ch->tx, sizeof(struct idm_msg) + sizeof(struct idm_empty));
		if (m == NULL)
			break;
		m->len = (uint32_t)idm_align(sizeof(struct idm_msg) + sizeof(struct idm_empty));
		m->op = IDM_OP_CTX_SYNC;
		m->flags = 0;
		m->seq = ch->next_seq++;
		n++;
	}
	idm_ring_commit(&ch->tx);
	(void)ch->ops->notify(ch);
	printf("XEN-ATTACK hang: %u requests queued, never reading a reply\n", n);
	fflush(stdout);
	uint64_t t0 = idm_now_ns();
	for (;;) {
		if (ch->ops->wait(ch, 1000) == -EPIPE) {
			struct timespec now;
			clock_gettime(CLOCK_REALTIME, &now);
			printf("XEN-ATTACK hang: the broker ended the channel after %.1f s (at %lld.%03ld)\n",
				   (double)(idm_now_ns() - t0) / 1e9, (long long)now.tv_sec, now.tv_nsec / 1000000);
			exit(0);
		}
	}
}

/* ---- malformed offers: raw xenstore writes through /dev/xen/xenbus ---- */

static int xs_fd = -1;

static int xs_write(const char *path, const char *value)
{
	static uint8_t buf[sizeof(struct idm_xs_hdr) + IDM_XS_PAYLOAD_MAX];
	static uint32_t id;
	const char *parts[2] = { path, value };
	int n = idm_xs_encode(IDM_XS_WRITE, ++id, parts, 2, false, buf, sizeof buf);
	if (n < 0 || write(xs_fd, buf, (size_t)n) != n)
		return -1;
	size_t got = 0;
	struct idm_xs_hdr h;
	for (;;) {
		ssize_t r = read(xs_fd, buf + got, sizeof buf - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
		if (idm_xs_decode(buf, got, &h) == 0)
			break;
	}
	return h.type == IDM_XS_ERROR ? -1 : 0;
}

static int do_xsjunk(void)
{
	xs_fd = open("/dev/xen/xenbus", O_RDWR | O_CLOEXEC);
	if (xs_fd < 0) {
		printf("XEN-ATTACK xsjunk: /dev/xen/xenbus: %s\n", strerror(errno));
		return 2;
	}
	char pages[16];
	snprintf(pages, sizeof pages, "%u", IDM_XEN_PAGES);
	/* well formed, but grants that were never given to dom0 */
	char *bogus = malloc(IDM_XEN_RECORD_MAX + 1);
	struct idm_xen_record *r = calloc(1, sizeof *r);
	r->port = 1;
	r->npages = IDM_XEN_PAGES;
	for (unsigned i = 0; i < IDM_XEN_PAGES; i++)
		r->refs[i] = 30000 + i;
	if (idm_xen_record_format(r, bogus, IDM_XEN_RECORD_MAX + 1) < 0)
		return 2;
	char wrong_count[64];
	snprintf(wrong_count, sizeof wrong_count, "v=1 port=5 pages=100000 refs=1,2,3");
	const struct {
		const char *name, *value;
	} junk[] = {
		{ "junk-format", "hello dom0, map this" },
		{ "junk-count", wrong_count },
		{ "junk-zero", "v=1 port=5 pages=0 refs=" },
		{ "junk-sign", "v=1 port=-5 pages=2 refs=-1,-2" },
		{ "junk-grants", bogus },
		{ "Junk-Name", "v=1" },
	};
	int written = 0;
	for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
		char path[128];
		snprintf(path, sizeof path, IDM_XEN_DIR "/%s", junk[i].name);
		written += xs_write(path, junk[i].value) == 0;
	}
	/* a flood of offers at once */
	for (int i = 0; i < 100; i++) {
		char path[128];
		snprintf(path, sizeof path, IDM_XEN_DIR "/flood-%d", i);
		written += xs_write(path, "v=1 flood") == 0;
	}
	printf("XEN-ATTACK xsjunk: %d malformed offers written\n", written);
	free(bogus);
	free(r);
	return written > 0 ? 0 : 1;
}

static int do_many(int n)
{
	struct idm_chan **chs = calloc((size_t)n, sizeof *chs);
	int opened = 0, refused = 0;
	for (int i = 0; i < n; i++) {
		struct idm_err err = { 0 };
		if (idm_xen_connect(NULL, 30000, &chs[i], &err) < 0) {
			printf("XEN-ATTACK many: channel %d: %s\n", i, err.msg);
			refused++;
			continue;
		}
		if (hello(chs[i]) < 0) {
			refused++;
			idm_chan_close(chs[i]);
			chs[i] = NULL;
			continue;
		}
		opened++;
	}
	printf("XEN-ATTACK many: opened=%d refused=%d\n", opened, refused);
	for (int i = 0; i < n; i++)
		idm_chan_close(chs[i]);
	free(chs);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *mode = argc > 1 ? argv[1] : "ok";
	if (strcmp(mode, "garbage") == 0)
		return do_garbage();
	if (strcmp(mode, "hang") == 0)
		do_hang();
	if (strcmp(mode, "xsjunk") == 0)
		return do_xsjunk();
	if (strcmp(mode, "many") == 0)
		return do_many(argc > 2 ? atoi(argv[2]) : 20);
	struct idm_chan *ch = open_channel("ok");
	idm_chan_close(ch);
	return 0;
}
