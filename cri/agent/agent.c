/* vgpu-agent: PID 1 of a pod's domU. Sets up the guest (proc, sys, dev, cgroup2, the Xen grant and
 * event channel drivers, erofs and overlay), then serves the daemon over a vchan at
 * AGENT_VCHAN_PATH: HELLO on connect, PING, EXEC (a command in the guest), POWEROFF, and the
 * pod's containers through runc (CTR_*, agent_ctr.c). When the daemon goes away the agent offers a
 * fresh vchan, so a restarted daemon can reattach. Built static; runc and its libraries are the
 * only dynamic programs in the guest. */
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

#include "agent_ctr.h"
#include "agent_net.h"
#include "agent_proto.h"
#include "agent_stream.h"
#include "agent_vol.h"

#define AGENT_VERSION "0.2-runc"
#define AGENT_CHUNK 16384            /* below the 64 KiB ring: libxenvchan_recv wants size <= ring */
#define RUNC_PATH "/usr/sbin/runc"
#define RUNC_ROOT "/run/runc"

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
	/* in dependency order: erofs needs libcrc32c, which needs a crc32c implementation */
	static const char *const modules[] = { "xen-evtchn", "xen-gntdev",	 "xen-gntalloc", "xen-privcmd",
					       "xenfs",	     "xen-blkfront", "xen-netfront", "crc32c_generic",
					       "libcrc32c",  "erofs",	     "overlay" };
	char path[128];

	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++) {
		snprintf(path, sizeof(path), "/lib/modules/%s.ko", modules[i]);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue; /* built into this kernel, or not needed */
		/* GPU channels (idm/ Xen transport) grant 258 pages each: gntalloc's default of 1024
		 * pages in all would allow 3; 8192 leaves the broker's cap (16 per pod) the limit */
		const char *params = strcmp(modules[i], "xen-gntalloc") == 0 ? "limit=8192" : "";
		if (syscall(SYS_finit_module, fd, params, 0) < 0 && errno != EEXIST)
			say("load %s: %s", modules[i], strerror(errno));
		close(fd);
	}
	mkdir("/proc/xen", 0755);
	if (mount("xenfs", "/proc/xen", "xenfs", 0, NULL) < 0 && errno != EBUSY)
		say("mount xenfs: %s", strerror(errno));
	/* runc: cgroup v2 for the containers' limits, a tmpfs /run for its state and the bundles */
	mkdir("/sys/fs/cgroup", 0755);
	if (mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 && errno != EBUSY)
		say("mount cgroup2: %s", strerror(errno));
	mkdir("/run", 0755);
	if (mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0 && errno != EBUSY)
		say("mount /run: %s", strerror(errno));
	mkdir("/dev/pts", 0755);
	mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666");
	mkdir("/dev/shm", 01777);
	mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, NULL);
	/* every pod has a loopback (CNI's loopback plugin on runc pods): PortForward connects there */
	int rc = agent_net_loopback_up();
	if (rc < 0)
		say("loopback up: %s", strerror(-rc));
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

static int handle_exec(struct libxenvchan *ch, uint32_t id, const uint8_t *payload, size_t len)
{
	struct agent_buf out = { 0 }, err = { 0 }, reply = { 0 };
	char **argv = NULL;
	uint32_t timeout_ms;
	int32_t code = 0;
	int rc = agent_exec_decode(payload, len, &argv, &timeout_ms);

	if (rc < 0)
		return send_error(ch, id, rc, "bad EXEC payload");
	rc = agent_run(argv, timeout_ms, &code, &out, &err);
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

static const struct agent_ctr_env ctr_env = { .root = AGENT_CTR_ROOT, .runc = RUNC_PATH, .runc_root = RUNC_ROOT };

/* Run a container in the container (runc exec): the ExecSync path for containers. */
static int ctr_exec(struct libxenvchan *ch, uint32_t id, const struct agent_ctr_req *req)
{
	struct agent_buf out = { 0 }, err = { 0 }, reply = { 0 };
	struct agent_ctr_state st;
	char msg[AGENT_CTR_MSG_MAX];
	size_t argc = 0;
	int32_t code = 0;
	int rc = agent_ctr_status(&ctr_env, req->id, &st, msg);

	if (rc < 0)
		return send_error(ch, id, rc, msg);
	if (st.state != AGENT_CTR_RUNNING)
		return send_error(ch, id, -EBUSY, "container is not running");
	while (req->argv[argc])
		argc++;
	char **argv = calloc(argc + 6, sizeof(*argv));
	if (!argv)
		return send_error(ch, id, -ENOMEM, "out of memory");
	argv[0] = RUNC_PATH;
	argv[1] = "--root";
	argv[2] = RUNC_ROOT;
	argv[3] = "exec";
	argv[4] = req->id;
	memcpy(argv + 5, req->argv, argc * sizeof(*argv));
	rc = agent_run(argv, req->timeout_ms, &code, &out, &err);
	free(argv);
	if (rc < 0)
		return send_error(ch, id, rc, "cannot start runc exec");
	rc = agent_exec_result_encode(&reply, code, out.data, out.len, err.data, err.len);
	if (rc == 0)
		rc = send_msg(ch, AGENT_MSG_EXEC_RESULT, id, &reply);
	agent_buf_free(&out);
	agent_buf_free(&err);
	agent_buf_free(&reply);
	return rc;
}

/* One container request: decode, run, reply (OK, CTR_STATE, CTR_LOG_DATA, EXEC_RESULT or ERROR). */
static int handle_ctr(struct libxenvchan *ch, const struct agent_hdr *hdr, const uint8_t *payload)
{
	struct agent_ctr_req req;
	struct agent_buf reply = { 0 };
	char msg[AGENT_CTR_MSG_MAX] = "";
	uint16_t type = AGENT_MSG_OK;
	int rc = agent_ctr_req_decode(hdr->type, payload, hdr->len, &req);

	if (rc < 0)
		return send_error(ch, hdr->id, rc, "malformed container request");
	switch (hdr->type) {
	case AGENT_MSG_CTR_CREATE:
		rc = agent_ctr_create(&ctr_env, &req, msg);
		say("container %s: create on %s: %s", req.id, req.rootfs_dev, rc < 0 ? msg : "ok");
		break;
	case AGENT_MSG_CTR_START:
		rc = agent_ctr_start(&ctr_env, req.id, msg);
		say("container %s: start: %s", req.id, rc < 0 ? msg : "ok");
		break;
	case AGENT_MSG_CTR_STOP:
		rc = agent_ctr_stop(&ctr_env, req.id, req.signal, req.timeout_ms, msg);
		say("container %s: stop: %s", req.id, rc < 0 ? msg : "ok");
		break;
	case AGENT_MSG_CTR_REMOVE:
		rc = agent_ctr_remove(&ctr_env, req.id, msg);
		say("container %s: remove: %s", req.id, rc < 0 ? msg : "ok");
		break;
	case AGENT_MSG_CTR_STATUS: {
		struct agent_ctr_state st;
		rc = agent_ctr_status(&ctr_env, req.id, &st, msg);
		if (rc == 0) {
			type = AGENT_MSG_CTR_STATE;
			rc = agent_ctr_state_encode(&reply, &st);
		}
		break;
	}
	case AGENT_MSG_CTR_LOGS: {
		struct agent_buf data = { 0 };
		struct agent_ctr_log_data d = { 0 };
		rc = agent_ctr_logs(&ctr_env, req.id, req.offset, req.max_bytes, &data, &d.next_offset, &d.eof, msg);
		if (rc == 0) {
			d.data = data.data;
			d.len = data.len;
			type = AGENT_MSG_CTR_LOG_DATA;
			rc = agent_ctr_log_data_encode(&reply, &d);
		}
		agent_buf_free(&data);
		break;
	}
	case AGENT_MSG_CTR_EXEC:
		rc = ctr_exec(ch, hdr->id, &req);
		agent_ctr_req_free(&req);
		return rc;
	case AGENT_MSG_CTR_STATS: {
		struct agent_ctr_stats st;
		rc = agent_ctr_stats(&ctr_env, req.id, &st, msg);
		if (rc == 0) {
			type = AGENT_MSG_CTR_STATS_DATA;
			rc = agent_ctr_stats_encode(&reply, &st);
		}
		break;
	}
	case AGENT_MSG_CTR_UPDATE:
		rc = agent_ctr_update(&ctr_env, req.id, req.spec_json, msg);
		say("container %s: update: %s", req.id, rc < 0 ? msg : "ok");
		break;
	default:
		rc = -EOPNOTSUPP;
		snprintf(msg, sizeof(msg), "unexpected message type");
	}
	agent_ctr_req_free(&req);
	if (rc < 0) {
		agent_buf_free(&reply);
		return send_error(ch, hdr->id, rc, msg[0] ? msg : strerror(-rc));
	}
	rc = send_msg(ch, type, hdr->id, &reply);
	agent_buf_free(&reply);
	return rc;
}

/* CTR_EXEC_STREAM / CTR_ATTACH_STREAM: a child of ours offers the session its own vchan
 * (agent_stream.c); the reply says where. */
static int handle_stream(struct libxenvchan *ch, const struct agent_hdr *hdr, const uint8_t *payload)
{
	struct agent_stream_req req;
	struct agent_buf reply = { 0 };
	char msg[AGENT_CTR_MSG_MAX] = "", path[AGENT_STREAM_PATH_MAX];
	int rc = agent_stream_req_decode(hdr->type, payload, hdr->len, &req);

	if (rc < 0)
		return send_error(ch, hdr->id, rc, "malformed stream request");
	rc = agent_stream_open(&ctr_env, &req, path, msg);
	if (req.type == AGENT_MSG_POD_PORTFWD_STREAM)
		say("port-forward to port %u: %s", req.port, rc < 0 ? msg : path);
	else
		say("container %s: %s stream: %s", req.id, req.type == AGENT_MSG_CTR_EXEC_STREAM ? "exec" : "attach",
		    rc < 0 ? msg : path);
	agent_stream_req_free(&req);
	if (rc < 0)
		return send_error(ch, hdr->id, rc, msg);
	rc = agent_stream_opened_encode(&reply, path);
	if (rc == 0)
		rc = send_msg(ch, AGENT_MSG_STREAM_OPENED, hdr->id, &reply);
	agent_buf_free(&reply);
	return rc;
}

/* NET_CONFIG: the pod's addresses and routes on the interface with the vif's MAC. */
static int handle_net(struct libxenvchan *ch, uint32_t id, const uint8_t *payload, size_t len)
{
	static const struct agent_net_env net_env = { .sys_net = "/sys/class/net", .resolv_conf = "/etc/resolv.conf" };
	struct agent_net_config nc;
	char msg[AGENT_NET_MSG_MAX] = "", ifname[AGENT_NET_IFNAME_MAX] = "";
	int rc = agent_net_config_decode(payload, len, &nc);

	if (rc < 0)
		return send_error(ch, id, rc, "malformed network config");
	rc = agent_net_configure(&net_env, &nc, ifname, msg);
	say("network: %s %s (%u routes) on %s: %s", nc.mac, nc.addrs[0], nc.n_routes, ifname[0] ? ifname : "?",
	    rc < 0 ? msg : "ok");
	agent_net_config_free(&nc);
	if (rc < 0)
		return send_error(ch, id, rc, msg);
	return send_msg(ch, AGENT_MSG_OK, id, NULL);
}

/* The volumes' directory, opened once (-errno). */
static int vol_root(void)
{
	static int root_fd = -1;

	if (root_fd < 0) {
		(void)mkdir("/run/vgpu-agent", 0755);
		(void)mkdir(AGENT_VOL_ROOT, 0755);
		root_fd = open(AGENT_VOL_ROOT, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (root_fd < 0)
			return -errno;
	}
	return root_fd;
}

/* VOL_PUT: a chunk of a copy-in volume's record stream (agent_vol.c); END writes the volume. */
static int handle_vol(struct libxenvchan *ch, uint32_t id, const uint8_t *payload, size_t len)
{
	static struct agent_vol_pending pending;
	struct agent_vol_put put;
	char msg[AGENT_VOL_MSG_MAX];
	int rc = agent_vol_put_decode(payload, len, &put);
	int root_fd = vol_root();

	if (rc < 0)
		return send_error(ch, id, rc, "malformed volume chunk");
	if (root_fd < 0)
		return send_error(ch, id, root_fd, "cannot open " AGENT_VOL_ROOT);
	rc = agent_vol_put(&pending, root_fd, &put, msg);
	if (put.flags & AGENT_VOL_END || rc < 0)
		say("volume %s: %s", put.key, rc < 0 || msg[0] ? msg : "written");
	if (rc < 0)
		return send_error(ch, id, rc, msg);
	return send_msg(ch, AGENT_MSG_OK, id, NULL);
}

/* VOL_GET: a writable file volume's content for the daemon to write back (agent_vol.c: the volume's
 * file is opened without following a symlink the container may have planted). */
static int handle_vol_get(struct libxenvchan *ch, uint32_t id, const uint8_t *payload, size_t len)
{
	char key[AGENT_MAX_ID_LEN + 1], msg[AGENT_VOL_MSG_MAX];
	struct agent_buf data = { 0 }, reply = { 0 };
	uint32_t flags = 0;
	int root_fd = vol_root();
	int rc = agent_vol_get_decode(payload, len, key);

	if (rc < 0)
		return send_error(ch, id, rc, "malformed volume request");
	if (root_fd < 0)
		return send_error(ch, id, root_fd, "cannot open " AGENT_VOL_ROOT);
	rc = agent_vol_get(root_fd, key, &data, &flags, msg);
	if (rc == 0)
		rc = agent_vol_data_encode(&reply, flags, data.data, data.len);
	say("volume %s: write-back read: %s", key, rc < 0 ? (msg[0] ? msg : strerror(-rc)) : "ok");
	if (rc == 0)
		rc = send_msg(ch, AGENT_MSG_VOL_GET, id, &reply);
	else
		rc = send_error(ch, id, rc, msg[0] ? msg : "cannot read the volume");
	agent_buf_free(&data);
	agent_buf_free(&reply);
	return rc;
}

/* Wait for the next message. A daemon that died without closing the channel (a crash) leaves it
 * looking open forever; the daemon keeps a live connection busy (log polls, PINGs every few
 * seconds), so silence for IDLE_MS means it is gone and the channel is offered afresh. */
#define IDLE_MS 60000
static int daemon_alive(struct libxenvchan *ch)
{
	struct pollfd p = { .fd = libxenvchan_fd_for_select(ch), .events = POLLIN };
	struct timespec t0, now;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (libxenvchan_data_ready(ch) == 0) {
		if (!libxenvchan_is_open(ch))
			return 0;
		/* by the clock, not by poll timeouts: events without data (a client mapping the stale
		 * channel, say) must not keep it alive */
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 >= IDLE_MS) {
			say("no message from the daemon for %d s: closing the channel", IDLE_MS / 1000);
			return 0;
		}
		int n = poll(&p, 1, 1000);
		if (n < 0 && errno != EINTR)
			return 0;
		if (n > 0)
			libxenvchan_wait(ch); /* consume the notification */
	}
	return 1;
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
		if (!daemon_alive(ch))
			return;
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
		case AGENT_MSG_NET_CONFIG:
			rc = handle_net(ch, hdr.id, payload, hdr.len);
			break;
		case AGENT_MSG_VOL_PUT:
			rc = handle_vol(ch, hdr.id, payload, hdr.len);
			break;
		case AGENT_MSG_VOL_GET:
			rc = handle_vol_get(ch, hdr.id, payload, hdr.len);
			break;
		case AGENT_MSG_CTR_EXEC_STREAM:
		case AGENT_MSG_CTR_ATTACH_STREAM:
		case AGENT_MSG_POD_PORTFWD_STREAM:
			rc = handle_stream(ch, &hdr, payload);
			break;
		case AGENT_MSG_POWEROFF:
			say("poweroff requested");
			sync();
			reboot(RB_POWER_OFF);
			rc = -errno;
			break;
		default:
			rc = agent_msg_is_ctr_request(hdr.type) ? handle_ctr(ch, &hdr, payload)
								 : send_error(ch, hdr.id, -EOPNOTSUPP, "unexpected message type");
			break;
		}
		/* shepherds of exited containers (PID 1 also inherits orphans) */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
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
	setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
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
