/* agent-check: the daemon's side of the vgpu-agent protocol, for the QEMU test bed. Connects to
 * the agent of domain DOMID, expects HELLO, then PING, an EXEC with output and exit code, a bad
 * header (the agent must answer ERROR and drop the channel), reconnects, and asks for POWEROFF.
 *   agent-check DOMID [WAIT_SECONDS]
 * Prints "AGENT-..." lines; exit 0 only if every step matched.
 *   agent-check DOMID WAIT_SECONDS sh CMD
 * only runs CMD with /bin/sh in the guest, as root outside any container (what a container that
 * broke out into the guest could do; scenario vol), prints "AGENT-SH exit=.. stdout=.. stderr=.."
 * and exits 0 if CMD did. The daemon must not hold the agent's channel meanwhile. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libxenvchan.h>

#include "agent/agent_proto.h"

static uint8_t payload[AGENT_MAX_PAYLOAD];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct libxenvchan *connect_agent(int domid, double wait_s)
{
	char path[128];
	double t0 = now_s();
	struct libxenvchan *ch;

	snprintf(path, sizeof(path), "/local/domain/%d/%s", domid, AGENT_VCHAN_PATH);
	while (!(ch = libxenvchan_client_init(NULL, domid, path))) {
		if (now_s() - t0 > wait_s)
			return NULL;
		usleep(100 * 1000);
	}
	ch->blocking = 1;
	printf("AGENT connected to %s after %.2f s\n", path, now_s() - t0);
	return ch;
}

static int recv_full(struct libxenvchan *ch, void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		size_t n = len - done < 16384 ? len - done : 16384;
		if (libxenvchan_recv(ch, (char *)buf + done, n) != (int)n)
			return -EPIPE;
		done += n;
	}
	return 0;
}

static int send_msg(struct libxenvchan *ch, uint16_t type, uint32_t id, const struct agent_buf *b)
{
	struct agent_hdr hdr = { .type = type, .id = id, .len = b ? (uint32_t)b->len : 0 };
	uint8_t raw[AGENT_HDR_SIZE];

	agent_hdr_encode(raw, &hdr);
	if (libxenvchan_send(ch, raw, sizeof(raw)) != (int)sizeof(raw))
		return -EPIPE;
	for (size_t done = 0; b && done < b->len;) {
		size_t n = b->len - done < 16384 ? b->len - done : 16384;
		if (libxenvchan_send(ch, b->data + done, n) != (int)n)
			return -EPIPE;
		done += n;
	}
	return 0;
}

static int recv_msg(struct libxenvchan *ch, struct agent_hdr *hdr)
{
	uint8_t raw[AGENT_HDR_SIZE];

	if (recv_full(ch, raw, sizeof(raw)) < 0 || agent_hdr_decode(raw, hdr) < 0)
		return -EPROTO;
	return recv_full(ch, payload, hdr->len);
}

#define CHECK(cond, ...)                                      \
	do {                                                  \
		if (!(cond)) {                                \
			printf("AGENT-FAIL " __VA_ARGS__);    \
			printf("\n");                         \
			return 1;                             \
		}                                             \
	} while (0)

int main(int argc, char **argv)
{
	static const char *const cmd[] = { "/bin/sh", "-c", "echo hello from $(uname -r); echo oops >&2; exit 3", NULL };
	struct agent_buf b = { 0 };
	struct agent_reader r;
	struct agent_hdr hdr;
	const char *s, *e;
	size_t sl, el;
	uint32_t u;
	double t0;
	struct libxenvchan *ch;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		return 2;
	int domid = atoi(argv[1]);
	double wait_s = argc > 2 ? atof(argv[2]) : 120;

	CHECK((ch = connect_agent(domid, wait_s)) != NULL, "no agent vchan in domain %d", domid);
	CHECK(recv_msg(ch, &hdr) == 0 && hdr.type == AGENT_MSG_HELLO, "no HELLO");
	r = (struct agent_reader){ payload, hdr.len };
	CHECK(agent_get_str(&r, &s, &sl) == 0 && agent_get_u32(&r, &u) == 0, "bad HELLO");
	printf("AGENT-HELLO version=%.*s proto=%u\n", (int)sl, s, u);
	if (argc > 4 && strcmp(argv[3], "sh") == 0) {
		const char *const sh[] = { "/bin/sh", "-c", argv[4], NULL };
		CHECK(agent_exec_encode(&b, sh, 30000) == 0, "encode exec");
		CHECK(send_msg(ch, AGENT_MSG_EXEC, 2, &b) == 0 && recv_msg(ch, &hdr) == 0, "exec");
		agent_buf_free(&b);
		CHECK(hdr.type == AGENT_MSG_EXEC_RESULT && hdr.id == 2, "want EXEC_RESULT id 2, got type %u", hdr.type);
		r = (struct agent_reader){ payload, hdr.len };
		CHECK(agent_get_u32(&r, &u) == 0 && agent_get_str(&r, &s, &sl) == 0 && agent_get_str(&r, &e, &el) == 0,
		      "bad EXEC_RESULT");
		printf("AGENT-SH exit=%d stdout='%.*s' stderr='%.*s'\n", (int32_t)u, (int)sl, s, (int)el, e);
		libxenvchan_close(ch);
		return (int32_t)u == 0 ? 0 : 1;
	}

	t0 = now_s();
	CHECK(send_msg(ch, AGENT_MSG_PING, 1, NULL) == 0 && recv_msg(ch, &hdr) == 0, "ping");
	CHECK(hdr.type == AGENT_MSG_PONG && hdr.id == 1, "want PONG id 1, got type %u id %u", hdr.type, hdr.id);
	printf("AGENT-PING-OK rtt_ms=%.1f\n", (now_s() - t0) * 1000);

	t0 = now_s();
	CHECK(agent_exec_encode(&b, cmd, 10000) == 0, "encode exec");
	CHECK(send_msg(ch, AGENT_MSG_EXEC, 2, &b) == 0 && recv_msg(ch, &hdr) == 0, "exec");
	agent_buf_free(&b);
	CHECK(hdr.type == AGENT_MSG_EXEC_RESULT && hdr.id == 2, "want EXEC_RESULT id 2, got type %u", hdr.type);
	r = (struct agent_reader){ payload, hdr.len };
	CHECK(agent_get_u32(&r, &u) == 0 && agent_get_str(&r, &s, &sl) == 0 && agent_get_str(&r, &e, &el) == 0,
	      "bad EXEC_RESULT");
	printf("AGENT-EXEC exit=%d stdout='%.*s' stderr='%.*s' ms=%.0f\n", (int32_t)u, (int)(sl ? sl - 1 : 0), s, (int)(el ? el - 1 : 0), e,
	       (now_s() - t0) * 1000);
	CHECK((int32_t)u == 3 && sl > 11 && memcmp(s, "hello from ", 11) == 0 && el == 5 && memcmp(e, "oops\n", 5) == 0,
	      "unexpected EXEC result");
	printf("AGENT-EXEC-OK\n");

	/* garbage: the agent answers ERROR and drops the channel, then offers a new one */
	CHECK(libxenvchan_send(ch, "GARBAGE-GARBAGE!", 16) == 16, "send garbage");
	CHECK(recv_msg(ch, &hdr) == 0 && hdr.type == AGENT_MSG_ERROR, "want ERROR after garbage, got %u", hdr.type);
	printf("AGENT-GARBAGE-REJECTED\n");
	libxenvchan_close(ch);
	sleep(1);
	CHECK((ch = connect_agent(domid, 30)) != NULL, "agent did not offer a new channel");
	CHECK(recv_msg(ch, &hdr) == 0 && hdr.type == AGENT_MSG_HELLO, "no HELLO after reconnect");
	printf("AGENT-RECONNECT-OK\n");

	CHECK(send_msg(ch, AGENT_MSG_POWEROFF, 3, NULL) == 0, "poweroff");
	printf("AGENT-POWEROFF-SENT\n");
	sleep(1);
	libxenvchan_close(ch);
	return 0;
}
