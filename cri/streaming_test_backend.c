/* TEST BACKEND (see streaming_test_backend.h): host processes instead of containers. */
#include "streaming_test_backend.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "util.h"

struct test_proc {
	pid_t pid;
};

struct test_container {
	char *id;
	pid_t pid;
	int stdin_w, stdout_r, stderr_r;
	struct test_container *next;
};

static pthread_mutex_t containers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct test_container *containers;

static int test_check(void *ctx, const char *kind, const char *id, struct vgpu_err *err)
{
	(void)ctx;
	if (strcmp(id, "missing") == 0)
		return vgpu_err_set(err, -ENOENT, "%s: container %s not found", kind, id);
	if (strcmp(id, "stopped") == 0)
		return vgpu_err_set(err, -EBUSY, "%s: container %s is not running", kind, id);
	return 0;
}

static int open_pty(int *master, int *slave, struct vgpu_err *err)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (m < 0)
		return vgpu_err_errno(err, errno, "test backend: posix_openpt");
	char name[64];
	if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof(name)) != 0) {
		int e = errno;
		close(m);
		return vgpu_err_errno(err, e, "test backend: pty setup");
	}
	int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s < 0) {
		int e = errno;
		close(m);
		return vgpu_err_errno(err, e, "test backend: open %s", name);
	}
	*master = m;
	*slave = s;
	return 0;
}

static void close_all(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static int test_exec_start(void *ctx, const struct vgpu_stream_exec_req *req, struct vgpu_stream_proc *proc,
			   struct vgpu_err *err)
{
	(void)ctx;
	/* child ends [0..2], parent ends [3..5] */
	int fds[6] = { -1, -1, -1, -1, -1, -1 };
	int r = 0;
	if (req->tty) {
		r = open_pty(&fds[3], &fds[0], err);
		if (r < 0)
			return r;
		fds[1] = fds[2] = fds[0];
	} else {
		int p[2];
		if (req->want_stdin) {
			if (pipe2(p, O_CLOEXEC) < 0)
				goto fail_errno;
			fds[0] = p[0];
			fds[3] = p[1];
		}
		if (req->want_stdout) {
			if (pipe2(p, O_CLOEXEC) < 0)
				goto fail_errno;
			fds[1] = p[1];
			fds[4] = p[0];
		}
		if (req->want_stderr) {
			if (pipe2(p, O_CLOEXEC) < 0)
				goto fail_errno;
			fds[2] = p[1];
			fds[5] = p[0];
		}
	}
	pid_t pid = fork();
	if (pid < 0)
		goto fail_errno;
	if (pid == 0) {
		setsid();
		int devnull = open("/dev/null", O_RDWR);
		if (req->tty)
			ioctl(fds[0], TIOCSCTTY, 0);
		for (int i = 0; i < 3; i++)
			dup2(fds[i] >= 0 ? fds[i] : devnull, i);
		execvp(req->cmd[0], req->cmd);
		_exit(127);
	}
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		int e = errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		errno = e;
		goto fail_errno;
	}
	if (req->tty) {
		close(fds[0]);
		proc->stdin_fd = req->want_stdin ? fds[3] : -1;
		proc->stdout_fd = fds[3];
		proc->stderr_fd = -1;
	} else {
		close_all(fds, 3);
		proc->stdin_fd = fds[3];
		proc->stdout_fd = fds[4];
		proc->stderr_fd = fds[5];
	}
	proc->exit_fd = pidfd;
	struct test_proc *tp = vgpu_calloc(1, sizeof(*tp));
	tp->pid = pid;
	proc->handle = tp;
	return 0;
fail_errno:
	r = vgpu_err_errno(err, errno, "test backend: exec %s", req->cmd[0]);
	if (req->tty)
		fds[1] = fds[2] = -1;
	close_all(fds, 6);
	return r;
}

static int test_attach_start(void *ctx, const struct vgpu_stream_exec_req *req, struct vgpu_stream_proc *proc,
			     struct vgpu_err *err)
{
	(void)ctx;
	pthread_mutex_lock(&containers_lock);
	struct test_container *c = containers;
	while (c && strcmp(c->id, req->container_id) != 0)
		c = c->next;
	int r = 0;
	if (!c) {
		r = vgpu_err_set(err, -ENOENT, "test backend: no container %s", req->container_id);
	} else {
		proc->stdin_fd = req->want_stdin ? fcntl(c->stdin_w, F_DUPFD_CLOEXEC, 0) : -1;
		proc->stdout_fd = req->want_stdout ? fcntl(c->stdout_r, F_DUPFD_CLOEXEC, 0) : -1;
		proc->stderr_fd = req->want_stderr ? fcntl(c->stderr_r, F_DUPFD_CLOEXEC, 0) : -1;
		proc->exit_fd = -1;
		proc->handle = NULL;
	}
	pthread_mutex_unlock(&containers_lock);
	return r;
}

static int test_resize(void *ctx, struct vgpu_stream_proc *proc, uint16_t width, uint16_t height,
		       struct vgpu_err *err)
{
	(void)ctx;
	struct winsize ws = { .ws_row = height, .ws_col = width };
	if (proc->stdout_fd < 0 || ioctl(proc->stdout_fd, TIOCSWINSZ, &ws) < 0)
		return vgpu_err_errno(err, errno, "test backend: TIOCSWINSZ");
	return 0;
}

static int test_finish(void *ctx, struct vgpu_stream_proc *proc, bool kill_it, int *exit_code,
		       struct vgpu_err *err)
{
	(void)ctx;
	struct test_proc *tp = proc->handle;
	proc->handle = NULL;
	if (!tp) { /* attach: detach */
		*exit_code = 0;
		return 0;
	}
	if (kill_it)
		kill(-tp->pid, SIGKILL); /* its process group (setsid in the child) */
	int status = 0;
	pid_t w;
	do
		w = waitpid(tp->pid, &status, 0);
	while (w < 0 && errno == EINTR);
	free(tp);
	if (w < 0)
		return vgpu_err_errno(err, errno, "test backend: waitpid");
	*exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	return 0;
}

static int test_port_forward(void *ctx, const char *sandbox_id, uint16_t port, int *fd_out, struct vgpu_err *err)
{
	(void)ctx;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vgpu_err_errno(err, errno, "test backend: socket");
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		int e = errno;
		close(fd);
		return vgpu_err_errno(err, e, "test backend: pod %s: connect to 127.0.0.1:%u", sandbox_id, port);
	}
	*fd_out = fd;
	return 0;
}

void vgpu_stream_test_backend_init(struct vgpu_stream_backend *b)
{
	*b = (struct vgpu_stream_backend){
		.ctx = NULL,
		.check = test_check,
		.exec_start = test_exec_start,
		.attach_start = test_attach_start,
		.resize = test_resize,
		.finish = test_finish,
		.port_forward = test_port_forward,
	};
}

int vgpu_stream_test_backend_add_container(const char *id, char *const argv[], struct vgpu_err *err)
{
	struct vgpu_stream_exec_req req = { .container_id = (char *)id, .cmd = (char **)argv,
					    .want_stdin = true, .want_stdout = true, .want_stderr = true };
	struct vgpu_stream_proc proc;
	int r = test_exec_start(NULL, &req, &proc, err);
	if (r < 0)
		return r;
	struct test_container *c = vgpu_calloc(1, sizeof(*c));
	c->id = vgpu_strdup(id);
	c->pid = ((struct test_proc *)proc.handle)->pid;
	free(proc.handle);
	close(proc.exit_fd);
	c->stdin_w = proc.stdin_fd;
	c->stdout_r = proc.stdout_fd;
	c->stderr_r = proc.stderr_fd;
	pthread_mutex_lock(&containers_lock);
	c->next = containers;
	containers = c;
	pthread_mutex_unlock(&containers_lock);
	return 0;
}

void vgpu_stream_test_backend_cleanup(void)
{
	pthread_mutex_lock(&containers_lock);
	while (containers) {
		struct test_container *c = containers;
		containers = c->next;
		kill(-c->pid, SIGKILL);
		waitpid(c->pid, NULL, 0);
		close(c->stdin_w);
		close(c->stdout_r);
		close(c->stderr_r);
		free(c->id);
		free(c);
	}
	pthread_mutex_unlock(&containers_lock);
}
