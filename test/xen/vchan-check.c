/* vchan-check: proves grant sharing + event channels between two domains with libxenvchan.
 * The server grants the ring pages (gntalloc) and publishes them in xenstore; the client maps them
 * (gntdev) after retrying until the keys exist. The server streams BYTES of a known pattern; the
 * client answers with their checksum; the server prints VCHAN-OK when it matches.
 *   vchan-check server PEER_DOMID XS_PATH BYTES [MODE]
 *   vchan-check client PEER_DOMID XS_PATH BYTES [WAIT_SECONDS [MODE]]
 * MODE "block" (default): libxenvchan's blocking calls, one event-channel wait per ring's worth;
 * "spin": non-blocking calls, spinning up to SPIN_LIMIT empty polls before waiting on the event
 * channel (how the IDM rings are meant to wait), to compare the two under TCG.
 * Built static so the same binary runs in dom0 and in the guest initramfs. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libxenvchan.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define SPIN_LIMIT 20000

static int spin_mode;

/* Non-blocking read/write of exactly len bytes, spinning before sleeping on the event channel. */
static int xfer_spin(struct libxenvchan *ch, void *buf, size_t len, int writing)
{
	size_t done = 0;
	int idle = 0;

	while (done < len) {
		int n = writing ? libxenvchan_write(ch, (char *)buf + done, len - done)
				: libxenvchan_read(ch, (char *)buf + done, len - done);
		if (n < 0)
			return -1;
		if (n > 0) {
			done += (size_t)n;
			idle = 0;
		} else if (++idle > SPIN_LIMIT) {
			if (!libxenvchan_is_open(ch) || libxenvchan_wait(ch) < 0)
				return -1;
			idle = 0;
		}
	}
	return (int)len;
}

static int vsend(struct libxenvchan *ch, const void *buf, size_t len)
{
	return spin_mode ? xfer_spin(ch, (void *)buf, len, 1) : libxenvchan_send(ch, buf, len);
}

/* up to len bytes (at least one) */
static int vread(struct libxenvchan *ch, void *buf, size_t len)
{
	int idle = 0, n;

	if (!spin_mode)
		return libxenvchan_read(ch, buf, len);
	while ((n = libxenvchan_read(ch, buf, len)) == 0) {
		if (++idle > SPIN_LIMIT) {
			if (!libxenvchan_is_open(ch) || libxenvchan_wait(ch) < 0)
				return -1;
			idle = 0;
		}
	}
	return n;
}

static unsigned char pattern_byte(uint64_t offset)
{
	return (unsigned char)(offset * 131 + (offset >> 12));
}

static int run_server(int peer, const char *path, uint64_t total)
{
	static unsigned char buf[32768];
	char reply[64] = { 0 }, want[64];
	uint64_t sum = 0, sent = 0;
	size_t got = 0;
	struct libxenvchan *ch = libxenvchan_server_init(NULL, peer, path, 65536, 65536);
	double t0;

	if (!ch) {
		perror("VCHAN-FAIL server_init");
		return 1;
	}
	ch->blocking = !spin_mode;
	printf("VCHAN server listening peer=%d path=%s\n", peer, path);
	while (libxenvchan_is_open(ch) == 2) /* 2: waiting for the client */
		libxenvchan_wait(ch);
	t0 = now_s();
	while (sent < total) {
		size_t n = total - sent < sizeof(buf) ? (size_t)(total - sent) : sizeof(buf);
		for (size_t i = 0; i < n; i++) {
			buf[i] = pattern_byte(sent + i);
			sum += buf[i];
		}
		if (vsend(ch, buf, n) != (int)n) {
			perror("VCHAN-FAIL send");
			return 1;
		}
		sent += n;
	}
	while (got < sizeof(reply) - 1) {
		if (vread(ch, reply + got, 1) != 1)
			break;
		if (reply[got] == '\n') {
			reply[got] = '\0';
			break;
		}
		got++;
	}
	double secs = now_s() - t0;
	snprintf(want, sizeof(want), "SUM %" PRIu64, sum);
	printf("VCHAN server mode=%s sent=%" PRIu64 " in %.3f s (%.1f MB/s) reply='%s' want='%s'\n",
	       spin_mode ? "spin" : "block", sent, secs, (double)sent / secs / 1e6, reply, want);
	printf("%s server path=%s\n", strcmp(reply, want) == 0 ? "VCHAN-OK" : "VCHAN-FAIL", path);
	libxenvchan_close(ch);
	return strcmp(reply, want) == 0 ? 0 : 1;
}

static int run_client(int peer, const char *path, uint64_t total, double wait_s)
{
	static unsigned char buf[32768];
	char reply[64];
	uint64_t sum = 0, got = 0;
	struct libxenvchan *ch;
	double t0 = now_s();
	int len, bad = 0;

	/* the server may not have written its xenstore keys yet */
	while (!(ch = libxenvchan_client_init(NULL, peer, path))) {
		if (now_s() - t0 > wait_s) {
			printf("VCHAN-FAIL client: no server at %s after %.0f s\n", path, wait_s);
			return 1;
		}
		usleep(100 * 1000);
	}
	ch->blocking = !spin_mode;
	printf("VCHAN client connected peer=%d path=%s after %.2f s\n", peer, path, now_s() - t0);
	while (got < total) {
		int n = vread(ch, buf, sizeof(buf));
		if (n <= 0) {
			perror("VCHAN-FAIL read");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			bad += buf[i] != pattern_byte(got + (uint64_t)i);
			sum += buf[i];
		}
		got += (uint64_t)n;
	}
	len = snprintf(reply, sizeof(reply), "SUM %" PRIu64 "\n", sum);
	if (vsend(ch, reply, (size_t)len) != len) {
		perror("VCHAN-FAIL reply");
		return 1;
	}
	printf("VCHAN client got=%" PRIu64 " pattern_errors=%d\n", got, bad);
	sleep(1); /* let the server read the reply before the ring goes away */
	libxenvchan_close(ch);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 5) {
		fprintf(stderr, "usage: vchan-check server|client PEER XS_PATH BYTES [WAIT_SECONDS]\n");
		return 2;
	}
	int peer = atoi(argv[2]);
	uint64_t total = strtoull(argv[4], NULL, 10);
	if (strcmp(argv[1], "server") == 0) {
		spin_mode = argc > 5 && strcmp(argv[5], "spin") == 0;
		return run_server(peer, argv[3], total);
	}
	if (strcmp(argv[1], "client") == 0) {
		spin_mode = argc > 6 && strcmp(argv[6], "spin") == 0;
		return run_client(peer, argv[3], total, argc > 5 ? atof(argv[5]) : 120);
	}
	return 2;
}
