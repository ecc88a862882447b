/* vgpu-agent (skeleton): PID 1 of a pod's domU. Sets up the guest (proc, sys, dev, the Xen grant
 * and event channel drivers), then serves the daemon over a vchan at AGENT_VCHAN_PATH: HELLO on
 * connect, PING, EXEC (run a command, return exit code and output: the ExecSync path), POWEROFF.
 * When the daemon goes away the agent offers a fresh vchan, so a restarted daemon can reattach.
 * Built static (no libraries in the guest). Containers through runc come later. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libxenvchan.h>

#include "agent_proto.h"

#define AGENT_VERSION "0.1-skeleton"
#define AGENT_CHUNK 16384            /* below the 64 KiB ring: libxenvchan_recv wants size <= ring */
#define AGENT_MAX_OUTPUT (256u << 10) /* per stream of an EXEC; the rest is dropped */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("vgpu-agent: ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	va_end(ap);
}

static void setup_pid1(void)
{
	static const char *const modules[] = { "xen-evtchn", "xen-gntdev", "xen-gntalloc", "xen-privcmd", "xenfs",
					       "xen-blkfront", "xen-netfront" };
	char path[128];

	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++) {
		snprintf(path, sizeof(path), "/lib/modules/%s.ko", modules[i]);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* built into this kernel, or not needed */
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			say("load %s: %s", modules[i], strerror(errno));
		close(fd);
	}
	mkdir("/proc/xen", 0755);
	if (mount("xenfs", "/proc/xen", "xenfs", 0, NULL) < 0 && errno != EBUSY)
		say("mount xenfs: %s", strerror(errno));
}

static int recv_full(struct libxenvchan *ch, void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		size_t n = len - done < AGENT_CHUNK ? len - done : AGENT_CHUNK;
		if (libxenvchan_recv(ch, (char *)buf + done, n) != (int)n)
			return -EPIPE;
		done += n;
	}
	return 0;
}

static int send_full(struct libxenvchan *ch, const void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		size_t n = len - done < AGENT_CHUNK ? len - done : AGENT_CHUNK;
		if (libxenvchan_send(ch, (const char *)buf + done, n) != (int)n)
			return -EPIPE;
		done += n;
	}
	return 0;
}

static int send_msg(struct libxenvchan *ch, uint16_t type, uint32_t id, const struct agent_buf *payload)
{
	struct agent_hdr hdr = { .type = type, .id = id, .len = payload ? (uint32_t)payload->len : 0 };
	uint8_t raw[AGENT_HDR_SIZE];
	int rc;

	agent_hdr_encode(raw, &hdr);
	rc = send_full(ch, raw, sizeof(raw));
	if (rc == 0 && payload && payload->len)
		rc = send_full(ch, payload->data, payload->len);
	return rc;
}

static int send_error(struct libxenvchan *ch, uint32_t id, int code, const char *msg)
{
	struct agent_buf b = { 0 };
	int rc = agent_put_u32(&b, (uint32_t)code);

	if (rc == 0)
		rc = agent_put_str(&b, msg, strlen(msg));
	if (rc == 0)
		rc = send_msg(ch, AGENT_MSG_ERROR, id, &b);
	agent_buf_free(&b);
	return rc;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Drain one pipe end into out (up to AGENT_MAX_OUTPUT); returns 1 at EOF. */
static int drain(int fd, struct agent_buf *out)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));

	if (n <= 0)
		return n == 0 || errno != EINTR;
	if (out->len < AGENT_MAX_OUTPUT) {
		size_t keep = (size_t)n;
		if (keep > AGENT_MAX_OUTPUT - out->len)
			keep = AGENT_MAX_OUTPUT - out->len;
		if (out->len + keep > out->cap) {
			uint8_t *grown = realloc(out->data, out->len + keep);
			if (!grown)
				return 0; /* drop output rather than fail the command */
			out->data = grown;
			out->cap = out->len + keep;
		}
		memcpy(out->data + out->len, tmp, keep);
		out->len += keep;
	}
	return 0;
}

/* Run argv with stdout/stderr captured, killed after timeout_ms (0 = none). */
static int run_exec(char **argv, uint32_t timeout_ms, int32_t *exit_code, struct agent_buf *out,
		    struct agent_buf *err)
{
	int po[2], pe[2], status = 0, open_fds = 2;
	double deadline = now_s() + timeout_ms / 1000.0;
	pid_t pid;

	if (pipe2(po, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(pe, O_CLOEXEC) < 0) {
		close(po[0]);
		close(po[1]);
		return -errno;
	}
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		execvp(argv[0], argv);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	struct pollfd fds[2] = { { .fd = po[0], .events = POLLIN }, { .fd = pe[0], .events = POLLIN } };
	while (open_fds > 0) {
		if (timeout_ms && now_s() > deadline) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(fds, 2, 100) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP)) &&
			    drain(fds[i].fd, i == 0 ? out : err)) {
				close(fds[i].fd);
				fds[i].fd = -1;
				open_fds--;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (fds[i].fd >= 0)
			close(fds[i].fd);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	*exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
	return 0;
}

static int handle_exec(struct libxenvchan *ch, uint32_t id, const uint8_t *payload, size_t len)
{
	struct agent_buf out = { 0 }, err = { 0 }, reply = { 0 };
	char **argv = NULL;
	uint32_t timeout_ms;
	int32_t code = 0;
	int rc = agent_exec_decode(payload, len, &argv, &timeout_ms);

	if (rc < 0)
		return send_error(ch, id, rc, "bad EXEC payload");
	rc = run_exec(argv, timeout_ms, &code, &out, &err);
	say("exec %s: exit %d", argv[0], code);
	agent_argv_free(argv);
	if (rc < 0)
		return send_error(ch, id, rc, "cannot start command");
	rc = agent_exec_result_encode(&reply, code, out.data, out.len, err.data, err.len);
	if (rc == 0)
		rc = send_msg(ch, AGENT_MSG_EXEC_RESULT, id, &reply);
	agent_buf_free(&out);
	agent_buf_free(&err);
	agent_buf_free(&reply);
	return rc;
}

/* Serve one connected daemon until it goes away or breaks the protocol. */
static void serve(struct libxenvchan *ch)
{
	static uint8_t payload[AGENT_MAX_PAYLOAD];
	struct agent_buf hello = { 0 };
	uint8_t raw[AGENT_HDR_SIZE];
	struct agent_hdr hdr;

	if (agent_put_str(&hello, AGENT_VERSION, strlen(AGENT_VERSION)) == 0 &&
	    agent_put_u32(&hello, AGENT_PROTO_VERSION) == 0)
		(void)send_msg(ch, AGENT_MSG_HELLO, 0, &hello);
	agent_buf_free(&hello);
	for (;;) {
		if (recv_full(ch, raw, sizeof(raw)) < 0)
			return;
		int rc = agent_hdr_decode(raw, &hdr);
		if (rc < 0) {
			/* the stream is out of step: say why and drop the connection */
			say("bad header from daemon (%s): closing the channel", strerror(-rc));
			(void)send_error(ch, 0, rc, "bad header");
			return;
		}
		if (recv_full(ch, payload, hdr.len) < 0)
			return;
		switch (hdr.type) {
		case AGENT_MSG_PING:
			rc = send_msg(ch, AGENT_MSG_PONG, hdr.id, NULL);
			break;
		case AGENT_MSG_EXEC:
			rc = handle_exec(ch, hdr.id, payload, hdr.len);
			break;
		case AGENT_MSG_POWEROFF:
			say("poweroff requested");
			sync();
			reboot(RB_POWER_OFF);
			rc = -errno;
			break;
		default:
			rc = send_error(ch, hdr.id, -EOPNOTSUPP, "unexpected message type");
			break;
		}
		if (rc < 0)
			return;
	}
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getpid() == 1)
		setup_pid1();
	signal(SIGPIPE, SIG_IGN);
	say("%s starting, vchan at %s", AGENT_VERSION, AGENT_VCHAN_PATH);
	for (;;) {
		struct libxenvchan *ch = libxenvchan_server_init(NULL, 0, AGENT_VCHAN_PATH, 65536, 65536);
		if (!ch) {
			say("vchan server: %s; retrying", strerror(errno));
			sleep(1);
			continue;
		}
		ch->blocking = 1;
		while (libxenvchan_is_open(ch) == 2) /* waiting for the daemon */
			libxenvchan_wait(ch);
		say("daemon connected");
		serve(ch);
		libxenvchan_close(ch);
		say("daemon gone; offering a new channel");
		/* reap anything left over (PID 1 inherits orphans) */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}
