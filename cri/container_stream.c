/* The streaming server's backend for the runc handler (see container_stream.h, streaming.h).
 *
 * Exec runs `runc exec --pid-file F ID CMD...` in the foreground, so that runc's own exit status is
 * the process's (runc maps a signal to 128+signal) and a pidfd of runc tells the session when it
 * ends. Without a tty runc hands our pipes straight to the process. With a tty we do not use
 * --console-socket: runc accepts it only together with --detach, and a detached exec's process
 * would be reparented away from us, its exit status lost. Instead runc runs with `-t` on the slave
 * side of a pty of ours: runc copies between that slave (which it puts in raw mode) and the
 * container's own pty, and copies the slave's window size to the container's pty on SIGWINCH, which
 * resize sends it after setting the size on our master.
 *
 * PortForward connects to 127.0.0.1:PORT from a short-lived thread that has joined the pod's
 * network namespace (setns is per thread; the socket keeps its namespace after the thread ends).
 * In a xen pod the loopback is the guest's: the agent connects there and the connection reaches
 * the session as one end of a socket pair (xen_stream.c).
 *
 * Attach connects to the container monitor's attach socket (<bundle>/attach, protocol in
 * monitor/attach_proto.h) and hands it pipes: the monitor writes the container's output into them
 * and reads stdin from them, so the session sees plain pipes as with exec. The connection itself
 * is the session's exit_fd: the monitor closes it when the container has exited. Resizes go to the
 * monitor, which sets the size on the container's pty. */
#include "container_stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "cni_pod.h"
#include "daemon.h"
#include "log.h"
#include "monitor/attach_proto.h"
#include "runc.h"
#include "sandbox_store.h"
#include "util.h"
#include "xen_stream.h"

#define EXEC_MAX_ARGS 240
#define PIDFILE_WAIT_MS 2000
#define ATTACH_REPLY_MS 5000

/* proc->handle is one of these, owned by the session until finish. */
enum proc_kind { PROC_EXEC, PROC_ATTACH, PROC_XEN };

/* An exec or attach of a container in a xen pod (xen_stream.c). */
struct xen_proc {
	enum proc_kind kind;
	struct vgpu_xen_stream *xs;
};

/* A running exec. */
struct exec_proc {
	enum proc_kind kind;
	pid_t runc_pid;
	char pidfile[4096]; /* where runc writes the exec'd process's host pid */
};

/* An attach: ctl is the monitor connection, also proc->exit_fd (closed by the session, not here). */
struct attach_proc {
	enum proc_kind kind;
	int ctl;
};

static enum proc_kind handle_kind(const void *handle)
{
	return *(const enum proc_kind *)handle; /* the first member of both */
}

static int container_running(struct vgpu_pod_manager *m, const char *id, struct vgpu_err *err)
{
	struct vgpu_container *c;
	int r = vgpu_container_get(m, id, &c, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	vgpu_container_check_exit_locked(m, c);
	bool running = c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
	pthread_mutex_unlock(&m->lock);
	vgpu_container_put(m, c);
	if (!running)
		return vgpu_err_set(err, -EBUSY, "container %s is not running", id);
	return 0;
}

/* Check that the sandbox is ready and (fd not NULL) open its network namespace (-1 in *fd for a
 * hostNetwork pod, and for a xen pod: *xen set). */
static int sandbox_netns(struct vgpu_daemon *d, const char *id, int *fd, bool *xen_out, struct vgpu_err *err)
{
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_sandbox *s;
	int r = vgpu_sandbox_get(m, id, &s, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	vgpu_sandbox_refresh_locked(s);
	bool ready = s->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY;
	bool xen = s->xen_domain != NULL;
	pid_t infra = s->infra_pid;
	bool host_net = s->host_net;
	char sid[VGPU_ID_LEN + 1];
	memcpy(sid, s->id, sizeof(sid));
	pthread_mutex_unlock(&m->lock);
	vgpu_sandbox_put(m, s);
	if (!ready)
		return vgpu_err_set(err, -EBUSY, "pod sandbox %s is not ready", sid);
	if (xen_out)
		*xen_out = xen;
	if (fd == NULL)
		return 0;
	*fd = -1;
	if (host_net || xen) /* a xen pod's loopback is the guest's: its agent connects there */
		return 0;
	/* The pinned namespace (CNI pods) outlives the infra process; /proc/PID/ns/net otherwise. */
	_cleanup_free_ char *pinned = vgpu_pod_netns_path(d->cfg, sid);
	char proc_path[64];
	snprintf(proc_path, sizeof(proc_path), "/proc/%d/ns/net", (int)infra);
	int nfd = open(pinned, O_RDONLY | O_CLOEXEC);
	if (nfd < 0)
		nfd = open(proc_path, O_RDONLY | O_CLOEXEC);
	if (nfd < 0)
		return vgpu_err_errno(err, errno, "pod sandbox %s: open network namespace %s", sid, proc_path);
	*fd = nfd;
	return 0;
}

/* Is id a container of a xen pod? Its streams go through the pod's agent (xen_stream.c). */
static bool is_xen_container(struct vgpu_pod_manager *m, const char *id)
{
	struct vgpu_container *c;
	if (vgpu_container_get(m, id, &c, NULL) < 0)
		return false;
	bool xen = c->xen != NULL; /* set once at creation */
	vgpu_container_put(m, c);
	return xen;
}

static int xen_start(struct vgpu_pod_manager *m, const struct vgpu_stream_exec_req *req, bool attach,
		     struct vgpu_stream_proc *proc, struct vgpu_err *err)
{
	struct vgpu_container *c;
	int r = vgpu_container_get(m, req->container_id, &c, err);
	if (r < 0)
		return r;
	struct vgpu_xen_stream *xs = NULL;
	r = vgpu_xen_stream_start(m, c, req, attach, proc, &xs, err);
	vgpu_container_put(m, c);
	if (r < 0)
		return r;
	struct xen_proc *xp = vgpu_calloc(1, sizeof(*xp));
	xp->kind = PROC_XEN;
	xp->xs = xs;
	proc->handle = xp;
	return 0;
}

static int stream_check(void *ctx, const char *kind, const char *id, struct vgpu_err *err)
{
	struct vgpu_daemon *d = ctx;
	if (strcmp(kind, "portforward") == 0)
		return sandbox_netns(d, id, NULL, NULL, err);
	return container_running(vgpu_pods(d), id, err);
}

static int open_pty(int *master, int *slave, struct vgpu_err *err)
{
	int mfd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (mfd < 0)
		return vgpu_err_errno(err, errno, "exec: posix_openpt");
	char name[64];
	if (grantpt(mfd) < 0 || unlockpt(mfd) < 0 || ptsname_r(mfd, name, sizeof(name)) != 0) {
		int e = errno;
		close(mfd);
		return vgpu_err_errno(err, e, "exec: pty setup");
	}
	int sfd = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (sfd < 0) {
		int e = errno;
		close(mfd);
		return vgpu_err_errno(err, e, "exec: open %s", name);
	}
	*master = mfd;
	*slave = sfd;
	return 0;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0) {
			close(fds[i]);
			fds[i] = -1;
		}
}

/* fds[0..2]: the child's stdin/stdout/stderr; fds[3..5]: our ends (stdin writer, stdout and stderr
 * readers). With a tty fds[0..2] are the pty slave and fds[3] = fds[4] the master. */
static int make_stdio(const struct vgpu_stream_exec_req *req, int fds[6], struct vgpu_err *err)
{
	if (req->tty) {
		int r = open_pty(&fds[4], &fds[0], err);
		if (r < 0)
			return r;
		return 0;
	}
	int p[2];
	if (req->want_stdin) {
		if (pipe2(p, O_CLOEXEC) < 0)
			return vgpu_err_errno(err, errno, "exec: pipe");
		fds[0] = p[0];
		fds[3] = p[1];
	}
	if (req->want_stdout) {
		if (pipe2(p, O_CLOEXEC) < 0)
			return vgpu_err_errno(err, errno, "exec: pipe");
		fds[4] = p[0];
		fds[1] = p[1];
	}
	if (req->want_stderr) {
		if (pipe2(p, O_CLOEXEC) < 0)
			return vgpu_err_errno(err, errno, "exec: pipe");
		fds[5] = p[0];
		fds[2] = p[1];
	}
	return 0;
}

static int stream_exec_start(void *ctx, const struct vgpu_stream_exec_req *req, struct vgpu_stream_proc *proc,
			     struct vgpu_err *err)
{
	struct vgpu_daemon *d = ctx;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	size_t n_cmd = 0;
	while (req->cmd && req->cmd[n_cmd])
		n_cmd++;
	if (n_cmd == 0 || n_cmd > EXEC_MAX_ARGS)
		return vgpu_err_set(err, -EINVAL, "container %.80s: exec: %zu arguments (1..%d)", req->container_id,
				    n_cmd, EXEC_MAX_ARGS);
	int r = container_running(m, req->container_id, err);
	if (r < 0)
		return r;
	if (is_xen_container(m, req->container_id))
		return xen_start(m, req, false, proc, err);
	struct exec_proc *ep = vgpu_calloc(1, sizeof(*ep));
	ep->kind = PROC_EXEC;
	static _Atomic unsigned long long seq;
	snprintf(ep->pidfile, sizeof(ep->pidfile), "%s/stream-exec-%d-%llu.pid", m->tmp_dir, (int)getpid(), ++seq);
	char **argv = vgpu_calloc(n_cmd + 10, sizeof(char *));
	size_t n = 0;
	argv[n++] = (char *)m->runc.path;
	argv[n++] = "--root";
	argv[n++] = (char *)m->runc.root;
	argv[n++] = "exec";
	argv[n++] = "--pid-file";
	argv[n++] = ep->pidfile;
	if (req->tty)
		argv[n++] = "--tty";
	argv[n++] = req->container_id;
	for (size_t i = 0; i < n_cmd; i++)
		argv[n++] = req->cmd[i];
	argv[n] = NULL;

	int fds[6] = { -1, -1, -1, -1, -1, -1 };
	int pidfd = -1;
	r = make_stdio(req, fds, err);
	pid_t pid = -1;
	if (r == 0) {
		int *child = fds;
		pid = req->tty ? vgpu_proc_spawn_stdio(argv, child[0], child[0], child[0], err)
			       : vgpu_proc_spawn_stdio(argv, child[0], child[1], child[2], err);
		if (pid < 0)
			r = (int)pid;
	}
	free(argv);
	if (r == 0) {
		pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (pidfd < 0) {
			r = vgpu_err_errno(err, errno, "container %s: exec: pidfd_open", req->container_id);
			kill(pid, SIGKILL);
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
	}
	close_fds(fds, 3); /* the child's ends: ours are closed so EOF comes when it exits */
	if (r < 0) {
		close_fds(fds + 3, 3);
		unlink(ep->pidfile);
		free(ep);
		return vgpu_err_prefix(err, "container %s: exec", req->container_id);
	}
	ep->runc_pid = pid;
	if (req->tty) {
		proc->stdout_fd = fds[4];
		proc->stdin_fd = req->want_stdin ? fcntl(fds[4], F_DUPFD_CLOEXEC, 0) : -1;
		proc->stderr_fd = -1;
	} else {
		proc->stdin_fd = fds[3];
		proc->stdout_fd = fds[4];
		proc->stderr_fd = fds[5];
	}
	proc->exit_fd = pidfd;
	proc->handle = ep;
	vgpu_log(VGPU_LOG_DEBUG, "container %s: exec '%.100s'%s (runc pid %d)", req->container_id, req->cmd[0],
		 req->tty ? " with tty" : "", (int)pid);
	return 0;
}

static int stream_resize(void *ctx, struct vgpu_stream_proc *proc, uint16_t width, uint16_t height,
			 struct vgpu_err *err)
{
	(void)ctx;
	struct exec_proc *ep = proc->handle;
	if (ep && handle_kind(ep) == PROC_XEN)
		return vgpu_xen_stream_resize(((struct xen_proc *)proc->handle)->xs, width, height, err);
	if (ep && handle_kind(ep) == PROC_ATTACH) {
		struct vgpu_attach_msg msg = { .type = VGPU_ATTACH_RESIZE, .a = width, .b = height };
		int r = vgpu_attach_send(((struct attach_proc *)proc->handle)->ctl, &msg, NULL, 0);
		return r < 0 ? vgpu_err_errno(err, -r, "attach: resize: send to the monitor") : 0;
	}
	struct winsize ws = { .ws_row = height, .ws_col = width };
	if (!ep || proc->stdout_fd < 0 || ioctl(proc->stdout_fd, TIOCSWINSZ, &ws) < 0)
		return vgpu_err_errno(err, ep ? errno : EINVAL, "exec: resize (TIOCSWINSZ)");
	/* runc copies our pty's size to the container's pty when it gets SIGWINCH. Our pty is not
	 * runc's controlling terminal, so the kernel does not send it. */
	if (kill(ep->runc_pid, SIGWINCH) < 0 && errno != ESRCH)
		return vgpu_err_errno(err, errno, "exec: resize: signal runc %d", (int)ep->runc_pid);
	return 0;
}

/* The exec'd process's host pid from runc's pid file, waiting a little for runc to write it. */
static pid_t exec_pid(struct exec_proc *ep)
{
	for (int i = 0; i < PIDFILE_WAIT_MS / 10; i++) {
		_cleanup_free_ char *text = NULL;
		if (vgpu_read_file(ep->pidfile, 64, &text, NULL, NULL) == 0) {
			long pid = strtol(text, NULL, 10);
			if (pid > 1)
				return (pid_t)pid;
		}
		siginfo_t si = { 0 };
		if (waitid(P_PID, (id_t)ep->runc_pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid != 0)
			return -1; /* runc is gone (or failed): nothing of ours to kill */
		usleep(10000);
	}
	return -1;
}

static int stream_finish(void *ctx, struct vgpu_stream_proc *proc, bool kill_it, int *exit_code,
			 struct vgpu_err *err)
{
	(void)ctx;
	struct exec_proc *ep = proc->handle;
	proc->handle = NULL;
	if (ep && handle_kind(ep) == PROC_XEN) {
		struct xen_proc *xp = (struct xen_proc *)ep;
		int r = vgpu_xen_stream_finish(xp->xs, kill_it, exit_code, err);
		free(xp);
		return r;
	}
	if (!ep || handle_kind(ep) == PROC_ATTACH) {
		/* detach: the session closes our end of the monitor connection and the pipes */
		free(ep);
		*exit_code = 0;
		return 0;
	}
	if (kill_it) {
		/* SIGKILL cannot be forwarded by runc: kill the process itself, then runc. */
		pid_t target = exec_pid(ep);
		if (target > 1)
			kill(target, SIGKILL);
		kill(ep->runc_pid, SIGKILL);
	}
	int status = 0;
	pid_t w;
	do
		w = waitpid(ep->runc_pid, &status, 0);
	while (w < 0 && errno == EINTR);
	int e = errno;
	unlink(ep->pidfile);
	pid_t runc_pid = ep->runc_pid;
	free(ep);
	if (w < 0)
		return vgpu_err_errno(err, e, "exec: waitpid runc %d", (int)runc_pid);
	*exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return 0;
}

/* How a running container was created, for attach. *dir is malloc'd (the bundle directory). */
static int attach_info(struct vgpu_pod_manager *m, const char *id, bool *tty, bool *has_stdin, char **dir,
		       struct vgpu_err *err)
{
	struct vgpu_container *c;
	int r = vgpu_container_get(m, id, &c, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	vgpu_container_check_exit_locked(m, c);
	bool running = c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
	pthread_mutex_unlock(&m->lock);
	/* config and dir are immutable after creation */
	*tty = c->config->tty;
	*has_stdin = c->config->stdin;
	if (dir)
		*dir = vgpu_strdup(c->dir);
	if (!running)
		r = vgpu_err_set(err, -EBUSY, "container %s is not running", c->id);
	vgpu_container_put(m, c);
	if (r < 0 && dir) {
		free(*dir);
		*dir = NULL;
	}
	return r;
}

static int attach_validate(const struct vgpu_stream_exec_req *req, bool tty, bool has_stdin, struct vgpu_err *err)
{
	if (req->want_stdin && !has_stdin)
		return vgpu_err_set(err, -EINVAL, "attach %.80s: stdin requested, but the container was created without stdin",
				    req->container_id);
	if (req->tty != tty)
		return vgpu_err_set(err, -EINVAL, "attach %.80s: tty=%s requested, but the container was created with tty=%s",
				    req->container_id, req->tty ? "true" : "false", tty ? "true" : "false");
	return 0;
}

static int stream_attach_check(void *ctx, const struct vgpu_stream_exec_req *req, struct vgpu_err *err)
{
	bool tty, has_stdin;
	int r = attach_info(vgpu_pods(ctx), req->container_id, &tty, &has_stdin, NULL, err);
	return r < 0 ? r : attach_validate(req, tty, has_stdin, err);
}

/* Connect to the monitor's attach socket in dir (through /proc/self/fd: dir may be longer than
 * sun_path allows). */
static int attach_connect(const char *id, const char *dir, struct vgpu_err *err)
{
	_cleanup_close_ int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return vgpu_err_errno(err, errno, "container %s: attach: open %s", id, dir);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "/proc/self/fd/%d/%s", dirfd, VGPU_ATTACH_SOCKET);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vgpu_err_errno(err, errno, "container %s: attach: socket", id);
	int r;
	do
		r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		int e = errno;
		close(fd);
		if (e == ENOENT || e == ECONNREFUSED)
			return vgpu_err_set(err, -EBUSY, "container %s: attach: its monitor serves no attach socket "
					    "(the container is exiting, or was started by an older vgpu-cri)", id);
		return vgpu_err_errno(err, e, "container %s: attach: connect to the monitor", id);
	}
	return fd;
}

/* Send HELLO with the monitor's ends of our pipes and read its REPLY. */
static int attach_handshake(const char *id, int ctl, uint32_t streams, const int *fds, size_t nfds,
			    struct vgpu_err *err)
{
	struct vgpu_attach_msg msg = { .type = VGPU_ATTACH_HELLO, .a = streams };
	int r = vgpu_attach_send(ctl, &msg, fds, nfds);
	if (r < 0)
		return vgpu_err_errno(err, -r, "container %s: attach: send to the monitor", id);
	struct pollfd p = { .fd = ctl, .events = POLLIN };
	do
		r = poll(&p, 1, ATTACH_REPLY_MS);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return vgpu_err_set(err, -ETIMEDOUT, "container %s: attach: no answer from the monitor", id);
	size_t n = 0;
	r = vgpu_attach_recv(ctl, &msg, NULL, 0, &n);
	if (r == -EPIPE)
		return vgpu_err_set(err, -EBUSY, "container %s: attach: the monitor closed the connection "
				    "(the container exited)", id);
	if (r < 0 || msg.type != VGPU_ATTACH_REPLY)
		return vgpu_err_errno(err, r < 0 ? -r : EPROTO, "container %s: attach: bad answer from the monitor", id);
	if (msg.a)
		return vgpu_err_set(err, -(int)(msg.a < 4096 ? msg.a : EPROTO), "container %s: attach: %s", id, msg.text);
	return 0;
}

static int stream_attach_start(void *ctx, const struct vgpu_stream_exec_req *req, struct vgpu_stream_proc *proc,
			       struct vgpu_err *err)
{
	struct vgpu_pod_manager *m = vgpu_pods(ctx);
	bool tty, has_stdin;
	_cleanup_free_ char *dir = NULL;
	int r = attach_info(m, req->container_id, &tty, &has_stdin, &dir, err);
	if (r < 0 || (r = attach_validate(req, tty, has_stdin, err)) < 0)
		return r;
	if (is_xen_container(m, req->container_id))
		return xen_start(m, req, true, proc, err);
	int ctl = attach_connect(req->container_id, dir, err);
	if (ctl < 0)
		return ctl;
	/* ours[i] stays here (stdin writer, stdout/stderr readers), theirs[i] goes to the monitor */
	int ours[3] = { -1, -1, -1 }, theirs[3] = { -1, -1, -1 };
	bool want[3] = { req->want_stdin, req->want_stdout, req->want_stderr && !tty };
	uint32_t bits[3] = { VGPU_ATTACH_STDIN, VGPU_ATTACH_STDOUT, VGPU_ATTACH_STDERR };
	uint32_t streams = 0;
	size_t n = 0;
	for (int i = 0; i < 3 && r == 0; i++) {
		int p[2];
		if (!want[i])
			continue;
		if (pipe2(p, O_CLOEXEC) < 0) {
			r = vgpu_err_errno(err, errno, "container %s: attach: pipe", req->container_id);
			break;
		}
		ours[i] = i == 0 ? p[1] : p[0];
		theirs[n++] = i == 0 ? p[0] : p[1];
		streams |= bits[i];
	}
	if (r == 0)
		r = attach_handshake(req->container_id, ctl, streams, theirs, n, err);
	close_fds(theirs, 3); /* the monitor has its copies */
	if (r < 0) {
		close_fds(ours, 3);
		close(ctl);
		return r;
	}
	struct attach_proc *ap = vgpu_calloc(1, sizeof(*ap));
	ap->kind = PROC_ATTACH;
	ap->ctl = ctl;
	proc->stdin_fd = ours[0];
	proc->stdout_fd = ours[1];
	proc->stderr_fd = ours[2];
	proc->exit_fd = ctl;
	proc->handle = ap;
	vgpu_log(VGPU_LOG_DEBUG, "container %s: attached (stdin=%d stdout=%d stderr=%d tty=%d)", req->container_id,
		 req->want_stdin, req->want_stdout, req->want_stderr && !tty, tty);
	return 0;
}

struct pf_job {
	int netns_fd;
	uint16_t port;
	int fd;
	int error;
	const char *step;
};

static void *pf_thread(void *arg)
{
	struct pf_job *job = arg;
	if (job->netns_fd >= 0 && setns(job->netns_fd, CLONE_NEWNET) < 0) {
		job->error = errno;
		job->step = "setns";
		return NULL;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		job->error = errno;
		job->step = "socket";
		return NULL;
	}
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(job->port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int r;
	do
		r = connect(fd, (struct sockaddr *)&a, sizeof(a));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		job->error = errno;
		job->step = "connect";
		close(fd);
		return NULL;
	}
	job->fd = fd;
	return NULL;
}

static int stream_port_forward(void *ctx, const char *sandbox_id, uint16_t port, int *fd_out, struct vgpu_err *err)
{
	struct vgpu_daemon *d = ctx;
	_cleanup_close_ int nsfd = -1;
	bool xen = false;
	int r = sandbox_netns(d, sandbox_id, &nsfd, &xen, err);
	if (r < 0)
		return r;
	if (xen)
		return vgpu_xen_stream_port_forward(vgpu_pods(d), sandbox_id, port, fd_out, err);
	struct pf_job job = { .netns_fd = nsfd, .port = port, .fd = -1 };
	pthread_t t;
	r = pthread_create(&t, NULL, pf_thread, &job);
	if (r)
		return vgpu_err_errno(err, r, "pod %.80s: portforward: thread", sandbox_id);
	r = pthread_join(t, NULL);
	if (r)
		return vgpu_err_errno(err, r, "pod %.80s: portforward: join", sandbox_id);
	if (job.fd < 0)
		return vgpu_err_errno(err, job.error, "pod %.80s: portforward: %s 127.0.0.1:%u", sandbox_id, job.step,
				      (unsigned)port);
	*fd_out = job.fd;
	return 0;
}

void vgpu_pods_stream_backend(struct vgpu_daemon *d, struct vgpu_stream_backend *b)
{
	*b = (struct vgpu_stream_backend){
		.ctx = d,
		.check = stream_check,
		.exec_start = stream_exec_start,
		.attach_check = stream_attach_check,
		.attach_start = stream_attach_start,
		.resize = stream_resize,
		.finish = stream_finish,
		.port_forward = stream_port_forward,
	};
}
