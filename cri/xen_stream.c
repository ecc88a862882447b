/* Exec/Attach sessions of containers in xen pods and port-forward connections into them (see
 * xen_stream.h): the control request, the session's own vchan to the guest, and the pump thread
 * between that vchan and the session's pipes (port-forward: a socket pair). The pump never blocks:
 * the vchan and every fd are non-blocking, and it polls them with a timeout, so finish can always
 * join it in bounded time. */
#include "xen_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libxenvchan.h>
#include <xenstore.h>
#include <xentoollog.h>

#include "agent/agent_proto.h"
#include "log.h"
#include "sandbox_store.h"
#include "util.h"
#include "xen_agent.h"
#include "xen_sandbox.h"

#define OPEN_TIMEOUT_MS 60000LL      /* the agent forks the stream child and waits for its vchan */
#define PF_OPEN_TIMEOUT_MS 15000LL   /* port-forward: the streaming session waits for it */
#define CONNECT_TIMEOUT_MS 10000LL   /* its xenstore keys exist before the agent answers */
#define PENDING_MAX (256u << 10)     /* output the session has not taken yet, per stream */
#define POLL_MS 500
#define DOMAIN_CHECK_NS (1000LL * 1000000LL)
#define MAX_STREAMS 64u              /* each maps 33 guest pages and has a thread (port-forward too) */

static atomic_uint live_streams;

struct vgpu_xen_stream {
	char id[VGPU_ID_LEN + 1];     /* container id (port-forward: the pod's), for messages */
	uint32_t domid;
	bool attach;
	/* port-forward: in_fd and out_fd[0] are two descriptors of our end of the socket pair whose
	 * other end is the streaming session's connection; the thread is detached and frees xs */
	bool portfwd;
	uint16_t port;
	bool out_close_due;           /* STDOUT_CLOSE came: half-close once pending[0] is written */
	bool out_shut;
	char guest_err[160];          /* the guest's STDERR text: why the connection failed */
	struct libxenvchan *ch;       /* pump thread's */
	struct xs_handle *xs;         /* pump thread's: is the domain still there? */
	pthread_t thread;
	int wake[2];                  /* finish and resize wake the pump */
	/* the pump's ends of the session's pipes (-1 once closed) */
	int in_fd;                    /* the client's stdin, read here */
	int out_fd[2];                /* stdout, stderr written here */
	int exit_wr;                  /* closed when the session should see the end */
	struct agent_buf pending[2];  /* output not written into out_fd yet */
	size_t pending_off[2];
	uint8_t rx[AGENT_HDR_SIZE + AGENT_STREAM_MAX_DATA];
	size_t rx_len;
	bool stdin_close_due;         /* in_fd reached EOF: STDIN_CLOSE still to send */
	long long last_rx, last_tx, next_domain_check;
	/* the pump's outcome, read by finish after the join */
	bool got_exit;
	int exit_code;
	char why[256];                /* why the session ended without an exit code */
	pthread_mutex_t lock;         /* guards stop, kill, resize_*: set by finish and resize */
	bool stop, kill;
	bool resize_due;
	uint16_t width, height;
};

static xentoollog_logger *quiet_logger;
static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;

static void make_quiet_logger(void)
{
	quiet_logger = (xentoollog_logger *)xtl_createlogger_stdiostream(stderr, XTL_CRITICAL, 0);
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void set_nonblock(int fd)
{
	if (fd >= 0)
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* ---- frames ---- */

/* One frame if the ring has room for all of it now; -EAGAIN otherwise, -EPIPE when closed. */
static int try_send(struct vgpu_xen_stream *xs, uint16_t type, const void *data, size_t len)
{
	struct agent_hdr hdr = { .type = type, .len = (uint32_t)len };
	uint8_t raw[AGENT_HDR_SIZE];
	if (!libxenvchan_is_open(xs->ch))
		return -EPIPE;
	if (libxenvchan_buffer_space(xs->ch) < (int)(AGENT_HDR_SIZE + len))
		return -EAGAIN;
	agent_hdr_encode(raw, &hdr);
	if (libxenvchan_write(xs->ch, (const char *)raw, sizeof(raw)) != (int)sizeof(raw) ||
	    (len && libxenvchan_write(xs->ch, data, len) != (int)len))
		return -EPIPE;
	xs->last_tx = vgpu_now_ns();
	return 0;
}

static void set_why(struct vgpu_xen_stream *xs, const char *why)
{
	if (!xs->why[0])
		snprintf(xs->why, sizeof(xs->why), "%s", why);
}

/* One frame from the guest (checked by the caller). */
static int handle_frame(struct vgpu_xen_stream *xs, const struct agent_hdr *hdr, const uint8_t *payload)
{
	int32_t code;
	switch (hdr->type) {
	case AGENT_MSG_STREAM_STDERR:
		if (xs->portfwd) {
			snprintf(xs->guest_err, sizeof(xs->guest_err), "%.*s", (int)(hdr->len < 150 ? hdr->len : 150),
				 (const char *)payload);
			return 0;
		}
		/* fall through */
	case AGENT_MSG_STREAM_STDOUT: {
		int i = hdr->type == AGENT_MSG_STREAM_STDERR;
		if (xs->out_fd[i] >= 0 && agent_put_bytes(&xs->pending[i], payload, hdr->len) < 0)
			return -ENOMEM;
		return 0;
	}
	case AGENT_MSG_STREAM_EXIT:
		if (agent_stream_exit_decode(payload, hdr->len, &code) < 0)
			return -EPROTO;
		xs->got_exit = true;
		xs->exit_code = code;
		return 0;
	case AGENT_MSG_STREAM_STDOUT_CLOSE:
		if (!xs->portfwd)
			return -EPROTO;
		xs->out_close_due = true;
		return 0;
	default: /* KEEPALIVE */
		return 0;
	}
}

/* Whole frames from the vchan while the session keeps up with the output. */
static int pump_in(struct vgpu_xen_stream *xs)
{
	while (!xs->got_exit && xs->pending[0].len < PENDING_MAX && xs->pending[1].len < PENDING_MAX) {
		size_t need = AGENT_HDR_SIZE;
		struct agent_hdr hdr;
		if (xs->rx_len >= AGENT_HDR_SIZE) {
			if (agent_hdr_decode(xs->rx, &hdr) < 0 || agent_stream_frame_check(&hdr, 1) < 0)
				return -EPROTO;
			need += hdr.len;
		}
		if (xs->rx_len < need) {
			int n = libxenvchan_read(xs->ch, (char *)xs->rx + xs->rx_len, need - xs->rx_len);
			if (n < 0)
				return -EPIPE;
			if (n == 0)
				return 0;
			xs->rx_len += (size_t)n;
			xs->last_rx = vgpu_now_ns();
			continue;
		}
		xs->rx_len = 0;
		int r = handle_frame(xs, &hdr, xs->rx + AGENT_HDR_SIZE);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Pending output into the session's pipes. */
static void pump_out(struct vgpu_xen_stream *xs)
{
	for (int i = 0; i < 2; i++) {
		struct agent_buf *b = &xs->pending[i];
		while (xs->out_fd[i] >= 0 && xs->pending_off[i] < b->len) {
			ssize_t n = write(xs->out_fd[i], b->data + xs->pending_off[i], b->len - xs->pending_off[i]);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				break;
			if (n < 0) { /* the session closed its end: nobody wants this output */
				close_fd(&xs->out_fd[i]);
				break;
			}
			xs->pending_off[i] += (size_t)n;
		}
		if (xs->pending_off[i] >= b->len || xs->out_fd[i] < 0) {
			b->len = 0;
			xs->pending_off[i] = 0;
		}
	}
	if (xs->out_close_due && !xs->out_shut && xs->pending[0].len == 0 && xs->out_fd[0] >= 0) {
		(void)shutdown(xs->out_fd[0], SHUT_WR); /* the client's side sees the port's EOF */
		xs->out_shut = true;
	}
}

/* Port-forward: has the streaming session closed its connection (not just half-closed it)? */
static bool pf_client_gone(struct vgpu_xen_stream *xs, short revents)
{
	if (xs->out_fd[0] < 0) /* a write failed: nobody reads */
		return true;
	/* HUP: both directions of our end shut; before we half-closed ours, only the session's close
	 * does that (after it, the session's half-close too: then in_fd reads to its EOF as usual) */
	return (revents & (POLLHUP | POLLERR)) && !xs->out_shut;
}

/* The client's stdin into frames while the ring has room. */
static int pump_stdin(struct vgpu_xen_stream *xs, short revents)
{
	if (xs->in_fd >= 0 && (revents & (POLLIN | POLLHUP | POLLERR))) {
		uint8_t buf[AGENT_STREAM_MAX_DATA];
		int space = libxenvchan_buffer_space(xs->ch) - (int)AGENT_HDR_SIZE;
		ssize_t n = space > 0 ? read(xs->in_fd, buf, (size_t)space < sizeof(buf) ? (size_t)space : sizeof(buf)) : -2;
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
			close_fd(&xs->in_fd);
			xs->stdin_close_due = true;
		} else if (n > 0 && try_send(xs, AGENT_MSG_STREAM_STDIN, buf, (size_t)n) < 0) {
			return -EPIPE;
		}
	}
	if (xs->stdin_close_due && try_send(xs, AGENT_MSG_STREAM_STDIN_CLOSE, NULL, 0) == 0)
		xs->stdin_close_due = false;
	return 0;
}

/* Is the guest still there? (a destroyed domain leaves the vchan looking open) */
static bool domain_gone(struct vgpu_xen_stream *xs)
{
	long long now = vgpu_now_ns();
	if (now < xs->next_domain_check || !xs->xs)
		return false;
	xs->next_domain_check = now + DOMAIN_CHECK_NS;
	char path[64];
	unsigned int len = 0;
	snprintf(path, sizeof(path), "/local/domain/%u/name", xs->domid);
	char *v = xs_read(xs->xs, XBT_NULL, path, &len);
	if (v) {
		free(v);
		return false;
	}
	return errno == ENOENT;
}

/* ---- the pump thread ---- */

/* What finish and resize asked for. Returns true when the session is over (stop). */
static bool take_requests(struct vgpu_xen_stream *xs)
{
	uint8_t drain[64];
	while (read(xs->wake[0], drain, sizeof(drain)) > 0)
		;
	pthread_mutex_lock(&xs->lock);
	bool stop = xs->stop, kill = xs->kill, resize = xs->resize_due;
	uint16_t w = xs->width, h = xs->height;
	pthread_mutex_unlock(&xs->lock);
	if (stop) {
		if (kill && !xs->got_exit)
			(void)try_send(xs, AGENT_MSG_STREAM_KILL, NULL, 0); /* closing says the same */
		return true;
	}
	if (resize) {
		uint8_t raw[8];
		agent_stream_resize_encode(raw, w, h);
		if (try_send(xs, AGENT_MSG_STREAM_RESIZE, raw, sizeof(raw)) == 0) {
			pthread_mutex_lock(&xs->lock);
			xs->resize_due = xs->width != w || xs->height != h; /* a newer one came meanwhile */
			pthread_mutex_unlock(&xs->lock);
		}
	}
	return false;
}

/* Is the guest side gone (closed, silent, domain destroyed)? Sets why. */
static bool guest_gone(struct vgpu_xen_stream *xs)
{
	if (!libxenvchan_is_open(xs->ch) && libxenvchan_data_ready(xs->ch) == 0) {
		set_why(xs, "the guest closed the stream without an exit status (agent or guest gone)");
		return true;
	}
	if (vgpu_now_ns() - xs->last_rx > AGENT_STREAM_SILENCE_MS * 1000000LL) {
		set_why(xs, "no sign of the guest on the stream for 15 s");
		return true;
	}
	if (domain_gone(xs)) {
		set_why(xs, "the pod's domain is gone");
		return true;
	}
	return false;
}

/* One round; true when the pump is done. */
static bool pump_round(struct vgpu_xen_stream *xs, struct pollfd p[5])
{
	if (p[0].revents)
		libxenvchan_wait(xs->ch); /* consume the notification (readable: does not block) */
	if (take_requests(xs))
		return true;
	int r = pump_in(xs);
	if (r < 0) {
		set_why(xs, r == -EPROTO ? "garbage on the stream channel" : "the stream channel broke");
		return true;
	}
	pump_out(xs);
	if (xs->got_exit && xs->pending[0].len == 0 && xs->pending[1].len == 0)
		return true; /* all output handed over: the session may see the end */
	if (pump_stdin(xs, p[2].revents) < 0 || (!xs->got_exit && guest_gone(xs))) {
		set_why(xs, "the stream channel broke");
		return true;
	}
	if (xs->portfwd && !xs->got_exit && pf_client_gone(xs, p[3].revents)) {
		(void)try_send(xs, AGENT_MSG_STREAM_KILL, NULL, 0); /* closing says the same */
		set_why(xs, "the client closed the connection");
		return true;
	}
	if (vgpu_now_ns() - xs->last_tx > AGENT_STREAM_KEEPALIVE_MS * 1000000LL)
		(void)try_send(xs, AGENT_MSG_STREAM_KEEPALIVE, NULL, 0);
	return false;
}

static void pf_done(struct vgpu_xen_stream *xs);

static void *pump_thread(void *arg)
{
	struct vgpu_xen_stream *xs = arg;
	sigset_t pipe_set;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, NULL); /* a session that closed its pipe: EPIPE, no signal */
	xs->last_rx = xs->last_tx = vgpu_now_ns();
	struct pollfd p[5] = { { .fd = -1 } };
	for (;;) {
		if (pump_round(xs, p))
			break;
		bool room = libxenvchan_buffer_space(xs->ch) > (int)AGENT_HDR_SIZE;
		p[0] = (struct pollfd){ .fd = libxenvchan_fd_for_select(xs->ch), .events = POLLIN };
		p[1] = (struct pollfd){ .fd = xs->wake[0], .events = POLLIN };
		p[2] = (struct pollfd){ .fd = room ? xs->in_fd : -1, .events = POLLIN };
		/* port-forward: for the HUP of the session's close too, until we half-closed ours (then
		 * there is nothing more to write, and a HUP would stay) */
		bool watch = xs->portfwd ? !xs->out_shut : xs->pending[0].len > 0;
		p[3] = (struct pollfd){ .fd = watch ? xs->out_fd[0] : -1, .events = xs->pending[0].len ? POLLOUT : 0 };
		p[4] = (struct pollfd){ .fd = xs->pending[1].len ? xs->out_fd[1] : -1, .events = POLLOUT };
		/* waiting for ring space gives no event of its own: look again soon */
		int timeout = (!room && xs->in_fd >= 0) || xs->stdin_close_due || xs->rx_len ? 20 : POLL_MS;
		if (poll(p, 5, timeout) < 0 && errno != EINTR) {
			set_why(xs, "poll failed");
			break;
		}
	}
	/* the session sees EOF on the outputs, then the end on exit_fd */
	close_fd(&xs->out_fd[0]);
	close_fd(&xs->out_fd[1]);
	close_fd(&xs->in_fd);
	close_fd(&xs->exit_wr);
	libxenvchan_close(xs->ch); /* unmaps the guest's pages: a destroyed domain can go */
	xs->ch = NULL;
	if (xs->portfwd)
		pf_done(xs);
	return NULL;
}

/* ---- the backend operations ---- */

struct open_arg {
	const struct agent_stream_req *req;
	long long timeout_ms;
	char path[AGENT_STREAM_PATH_MAX];
};

static int open_op(struct vgpu_xen_agent *a, void *arg, struct vgpu_err *err)
{
	struct open_arg *o = arg;
	return vgpu_xen_agent_stream_open(a, o->req, o->timeout_ms, o->path, err);
}

/* Ask the agent of sandbox_id's domain for the session's vchan; *domid: the pod's domain. */
static int request_stream(struct vgpu_pod_manager *m, const char *sandbox_id, const struct agent_stream_req *sr,
			  uint32_t *domid, char path[AGENT_STREAM_PATH_MAX], struct vgpu_err *err)
{
	struct vgpu_sandbox *s;
	if (vgpu_sandbox_get(m, sandbox_id, &s, NULL) < 0)
		return vgpu_err_set(err, -EBUSY, "pod sandbox %s is gone", sandbox_id);
	pthread_mutex_lock(&m->lock);
	*domid = s->xen_domid;
	pthread_mutex_unlock(&m->lock);
	struct open_arg o = { .req = sr,
			      .timeout_ms = sr->type == AGENT_MSG_POD_PORTFWD_STREAM ? PF_OPEN_TIMEOUT_MS : OPEN_TIMEOUT_MS };
	int r = vgpu_xen_pod_agent_op(m, s, open_op, &o, err);
	vgpu_sandbox_put(m, s);
	if (r == -ENOTCONN) /* the pod is not ready: FAILED_PRECONDITION, as for a stopped runc pod */
		r = -EBUSY;
	if (r == 0)
		memcpy(path, o.path, AGENT_STREAM_PATH_MAX);
	return r;
}

static int connect_stream(struct vgpu_xen_stream *xs, const char *path, struct vgpu_err *err)
{
	char full[128];
	snprintf(full, sizeof(full), "/local/domain/%u/%s", xs->domid, path);
	pthread_once(&quiet_once, make_quiet_logger);
	long long deadline = vgpu_now_ns() + CONNECT_TIMEOUT_MS * 1000000LL;
	while (!(xs->ch = libxenvchan_client_init(quiet_logger, (int)xs->domid, full))) {
		if (vgpu_now_ns() > deadline)
			return vgpu_err_set(err, -ETIMEDOUT, "%s %s: cannot connect to the stream at %s",
					    xs->portfwd ? "pod" : "container", xs->id, full);
		usleep(50 * 1000);
	}
	xs->ch->blocking = 0;
	return 0;
}

/* The session's pipes: ours (read/write ends of the pump) and proc's. */
static int make_pipes(struct vgpu_xen_stream *xs, const struct vgpu_stream_exec_req *req, struct vgpu_stream_proc *proc,
		      struct vgpu_err *err)
{
	int p[2];
	bool want[3] = { req->want_stdin, req->want_stdout, req->want_stderr && !req->tty };
	for (int i = 0; i < 3; i++) {
		if (!want[i])
			continue;
		if (pipe2(p, O_CLOEXEC) < 0)
			return vgpu_err_errno(err, errno, "container %s: pipe", xs->id);
		if (i == 0) {
			xs->in_fd = p[0];
			proc->stdin_fd = p[1];
		} else {
			xs->out_fd[i - 1] = p[1];
			*(i == 1 ? &proc->stdout_fd : &proc->stderr_fd) = p[0];
		}
	}
	if (pipe2(p, O_CLOEXEC) < 0)
		return vgpu_err_errno(err, errno, "container %s: pipe", xs->id);
	proc->exit_fd = p[0];
	xs->exit_wr = p[1];
	if (pipe2(xs->wake, O_CLOEXEC | O_NONBLOCK) < 0)
		return vgpu_err_errno(err, errno, "container %s: pipe", xs->id);
	set_nonblock(xs->in_fd);
	set_nonblock(xs->out_fd[0]);
	set_nonblock(xs->out_fd[1]);
	return 0;
}

static void stream_free(struct vgpu_xen_stream *xs)
{
	close_fd(&xs->in_fd);
	close_fd(&xs->out_fd[0]);
	close_fd(&xs->out_fd[1]);
	close_fd(&xs->exit_wr);
	close_fd(&xs->wake[0]);
	close_fd(&xs->wake[1]);
	if (xs->ch)
		libxenvchan_close(xs->ch);
	if (xs->xs)
		xs_close(xs->xs);
	agent_buf_free(&xs->pending[0]);
	agent_buf_free(&xs->pending[1]);
	pthread_mutex_destroy(&xs->lock);
	free(xs);
}

static void proc_close(struct vgpu_stream_proc *proc)
{
	close_fd(&proc->stdin_fd);
	close_fd(&proc->stdout_fd);
	close_fd(&proc->stderr_fd);
	close_fd(&proc->exit_fd);
}

int vgpu_xen_stream_start(struct vgpu_pod_manager *m, struct vgpu_container *c, const struct vgpu_stream_exec_req *req,
			  bool attach, struct vgpu_stream_proc *proc, struct vgpu_xen_stream **out, struct vgpu_err *err)
{
	struct agent_stream_req sr = { .type = attach ? AGENT_MSG_CTR_ATTACH_STREAM : AGENT_MSG_CTR_EXEC_STREAM,
				       .id = c->id, .argv = attach ? NULL : req->cmd };
	sr.flags = (req->want_stdin ? AGENT_STREAM_STDIN : 0) | (req->want_stdout ? AGENT_STREAM_STDOUT : 0) |
		   (req->want_stderr && !req->tty ? AGENT_STREAM_STDERR : 0) | (req->tty ? AGENT_STREAM_TTY : 0);
	char path[AGENT_STREAM_PATH_MAX];
	uint32_t domid = 0;
	long long t0 = vgpu_now_ns();
	if (atomic_fetch_add(&live_streams, 1) >= MAX_STREAMS) {
		atomic_fetch_sub(&live_streams, 1);
		return vgpu_err_set(err, -ENOSPC, "container %s: %u exec/attach sessions into xen pods are open already",
				    c->id, MAX_STREAMS);
	}
	int r = request_stream(m, c->sandbox_id, &sr, &domid, path, err);
	if (r < 0) {
		atomic_fetch_sub(&live_streams, 1);
		return vgpu_err_prefix(err, "container %s: %s", c->id, attach ? "attach" : "exec");
	}
	struct vgpu_xen_stream *xs = vgpu_calloc(1, sizeof(*xs));
	snprintf(xs->id, sizeof(xs->id), "%s", c->id);
	xs->domid = domid;
	xs->attach = attach;
	xs->in_fd = xs->out_fd[0] = xs->out_fd[1] = xs->exit_wr = xs->wake[0] = xs->wake[1] = -1;
	pthread_mutex_init(&xs->lock, NULL);
	r = connect_stream(xs, path, err);
	if (r == 0)
		r = make_pipes(xs, req, proc, err);
	if (r == 0) {
		xs->xs = xs_open(XS_OPEN_READONLY);
		if (!xs->xs) /* the silence timeout still bounds a dead guest */
			vgpu_log(VGPU_LOG_WARN, "container %s: stream: xs_open: %s", xs->id, strerror(errno));
		int e = pthread_create(&xs->thread, NULL, pump_thread, xs);
		if (e)
			r = vgpu_err_errno(err, e, "container %s: stream thread", xs->id);
	}
	if (r < 0) {
		proc_close(proc);
		stream_free(xs);
		atomic_fetch_sub(&live_streams, 1);
		return r;
	}
	vgpu_log(VGPU_LOG_INFO, "container %s: %s stream to domain %u at %s (tty=%d) open after %.2f s", c->id,
		 attach ? "attach" : "exec", domid, path, req->tty, (double)(vgpu_now_ns() - t0) / 1e9);
	*out = xs;
	return 0;
}

int vgpu_xen_stream_resize(struct vgpu_xen_stream *xs, uint16_t width, uint16_t height, struct vgpu_err *err)
{
	(void)err;
	pthread_mutex_lock(&xs->lock);
	xs->width = width;
	xs->height = height;
	xs->resize_due = true;
	pthread_mutex_unlock(&xs->lock);
	if (write(xs->wake[1], "r", 1) < 0 && errno != EAGAIN) {
		/* a full wake pipe has the pump awake already */
	}
	return 0;
}

int vgpu_xen_stream_finish(struct vgpu_xen_stream *xs, bool kill, int *exit_code, struct vgpu_err *err)
{
	pthread_mutex_lock(&xs->lock);
	xs->stop = true;
	xs->kill = kill;
	pthread_mutex_unlock(&xs->lock);
	if (write(xs->wake[1], "s", 1) < 0 && errno != EAGAIN) {
		/* as in resize */
	}
	int e = pthread_join(xs->thread, NULL);
	int r = 0;
	*exit_code = 0;
	if (e) {
		r = vgpu_err_errno(err, e, "container %s: join stream thread", xs->id);
	} else if (xs->got_exit) {
		*exit_code = xs->attach ? 0 : xs->exit_code;
	} else if (xs->why[0]) {
		r = vgpu_err_set(err, -EPIPE, "%s: %s", xs->attach ? "attach" : "exec", xs->why);
	} else if (kill && !xs->attach) {
		*exit_code = 137; /* the guest kills it (SIGKILL) */
	}
	if (e == 0)
		atomic_fetch_sub(&live_streams, 1);
	vgpu_log(VGPU_LOG_INFO, "container %s: %s stream to domain %u closed (%s; %u streams left)", xs->id,
		 xs->attach ? "attach" : "exec", xs->domid,
		 xs->got_exit ? "exited" : xs->why[0] ? xs->why : kill ? "killed" : "detached", vgpu_xen_streams_live());
	if (e == 0)
		stream_free(xs);
	return r;
}

unsigned int vgpu_xen_streams_live(void)
{
	return atomic_load(&live_streams);
}

/* ---- port-forward ---- */

/* The end of a port-forward's pump thread (detached): nobody else holds xs. */
static void pf_done(struct vgpu_xen_stream *xs)
{
	const char *how = xs->got_exit ? (xs->exit_code ? xs->guest_err : "both sides closed") : xs->why;
	atomic_fetch_sub(&live_streams, 1);
	vgpu_log(xs->got_exit && xs->exit_code ? VGPU_LOG_WARN : VGPU_LOG_INFO,
		 "pod %s: port-forward to port %u in domain %u closed (%s; %u streams left)", xs->id, xs->port, xs->domid,
		 how[0] ? how : "connection failed in the guest", vgpu_xen_streams_live());
	stream_free(xs);
}

int vgpu_xen_stream_port_forward(struct vgpu_pod_manager *m, const char *sandbox_id, uint16_t port, int *fd_out,
				 struct vgpu_err *err)
{
	struct agent_stream_req sr = { .type = AGENT_MSG_POD_PORTFWD_STREAM, .port = port };
	char path[AGENT_STREAM_PATH_MAX];
	uint32_t domid = 0;
	long long t0 = vgpu_now_ns();
	if (atomic_fetch_add(&live_streams, 1) >= MAX_STREAMS) {
		atomic_fetch_sub(&live_streams, 1);
		return vgpu_err_set(err, -ENOSPC, "pod %s: %u exec/attach/port-forward sessions into xen pods are open "
				    "already", sandbox_id, MAX_STREAMS);
	}
	int r = request_stream(m, sandbox_id, &sr, &domid, path, err);
	if (r < 0) { /* the streaming session names the pod and the port */
		atomic_fetch_sub(&live_streams, 1);
		return r;
	}
	struct vgpu_xen_stream *xs = vgpu_calloc(1, sizeof(*xs));
	snprintf(xs->id, sizeof(xs->id), "%s", sandbox_id);
	xs->domid = domid;
	xs->portfwd = true;
	xs->port = port;
	xs->in_fd = xs->out_fd[0] = xs->out_fd[1] = xs->exit_wr = xs->wake[0] = xs->wake[1] = -1;
	pthread_mutex_init(&xs->lock, NULL);
	int sp[2] = { -1, -1 };
	r = connect_stream(xs, path, err);
	if (r == 0 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		r = vgpu_err_errno(err, errno, "pod %s: port-forward: socketpair", sandbox_id);
	if (r == 0) {
		xs->out_fd[0] = sp[0];
		xs->in_fd = fcntl(sp[0], F_DUPFD_CLOEXEC, 0);
		if (xs->in_fd < 0)
			r = vgpu_err_errno(err, errno, "pod %s: port-forward: dup", sandbox_id);
		set_nonblock(sp[0]); /* both descriptors: one open file */
	}
	if (r == 0) {
		xs->xs = xs_open(XS_OPEN_READONLY);
		if (!xs->xs)
			vgpu_log(VGPU_LOG_WARN, "pod %s: port-forward: xs_open: %s", sandbox_id, strerror(errno));
		pthread_attr_t attr;
		pthread_t t; /* not xs->thread: the thread may have freed xs when pthread_create returns */
		int e = pthread_attr_init(&attr);
		if (e == 0) {
			e = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
			if (e == 0)
				e = pthread_create(&t, &attr, pump_thread, xs);
			pthread_attr_destroy(&attr);
		}
		if (e)
			r = vgpu_err_errno(err, e, "pod %s: port-forward: thread", sandbox_id);
	}
	if (r < 0) {
		if (sp[1] >= 0)
			close(sp[1]);
		stream_free(xs); /* closes sp[0] and its duplicate */
		atomic_fetch_sub(&live_streams, 1);
		return r;
	}
	vgpu_log(VGPU_LOG_INFO, "pod %s: port-forward to port %u in domain %u at %s open after %.2f s", sandbox_id, port,
		 domid, path, (double)(vgpu_now_ns() - t0) / 1e9);
	*fd_out = sp[1];
	return 0;
}
