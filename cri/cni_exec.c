/* Running one CNI plugin: posix_spawn (safe in the threaded daemon) with the CNI environment, the
 * config on stdin from a memfd (no pipe to block on or SIGPIPE from), stdout and stderr captured
 * up to a limit, a deadline after which the plugin is killed. */
#include "cni_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

struct capture {
	int fd;
	char *buf;
	size_t len, cap;
	bool truncated;
};

static int stdin_memfd(const char *data, struct vgpu_err *err)
{
	int fd = memfd_create("cni-stdin", MFD_CLOEXEC);
	if (fd < 0)
		return vgpu_err_errno(err, errno, "memfd for plugin stdin");
	size_t len = strlen(data), off = 0;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			return vgpu_err_errno(err, e, "write plugin stdin");
		}
		off += (size_t)n;
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		int e = errno;
		close(fd);
		return vgpu_err_errno(err, e, "rewind plugin stdin");
	}
	return fd;
}

/* Read what is there: 1 data, 0 nothing now, -1 end of stream (EOF or error). */
static int capture_read(struct capture *c)
{
	char tmp[16384];
	ssize_t n = read(c->fd, tmp, sizeof(tmp));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0)
		return -1;
	size_t want = (size_t)n;
	if (c->len + want > VGPU_CNI_MAX_OUTPUT) {
		want = VGPU_CNI_MAX_OUTPUT - c->len;
		c->truncated = true;
	}
	if (c->len + want + 1 > c->cap) {
		size_t ncap = c->cap ? c->cap : 16384;
		while (ncap < c->len + want + 1)
			ncap *= 2;
		char *nb = realloc(c->buf, ncap);
		if (!nb)
			abort();
		c->buf = nb;
		c->cap = ncap;
	}
	memcpy(c->buf + c->len, tmp, want);
	c->len += want;
	c->buf[c->len] = '\0';
	return 1;
}

/* After the plugin exited: take what is left in the pipe without waiting for an EOF that a child
 * of the plugin holding the pipe open would delay. */
static void capture_drain(struct capture *c)
{
	if (fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0)
		return;
	while (capture_read(c) > 0)
		;
}

static int spawn(const char *path, char *const env[], int in_fd, int out_fd, int err_fd, pid_t *pid,
		 struct vgpu_err *err)
{
	posix_spawn_file_actions_t fa;
	int r = posix_spawn_file_actions_init(&fa);
	if (r != 0)
		return vgpu_err_errno(err, r, "spawn %s", path);
	if ((r = posix_spawn_file_actions_adddup2(&fa, in_fd, 0)) == 0 &&
	    (r = posix_spawn_file_actions_adddup2(&fa, out_fd, 1)) == 0 &&
	    (r = posix_spawn_file_actions_adddup2(&fa, err_fd, 2)) == 0) {
		char *argv[] = { (char *)path, NULL };
		posix_spawnattr_t attr;
		if ((r = posix_spawnattr_init(&attr)) == 0) {
			/* The daemon ignores SIGPIPE; the plugin must not inherit that. */
			sigset_t def;
			sigemptyset(&def);
			sigaddset(&def, SIGPIPE);
			posix_spawnattr_setsigdefault(&attr, &def);
			sigset_t none;
			sigemptyset(&none);
			posix_spawnattr_setsigmask(&attr, &none);
			posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
			r = posix_spawn(pid, path, &fa, &attr, argv, env);
			posix_spawnattr_destroy(&attr);
		}
	}
	posix_spawn_file_actions_destroy(&fa);
	return r != 0 ? vgpu_err_errno(err, r, "spawn %s", path) : 0;
}

/* Collect stdout/stderr until both close or the plugin exits, within the deadline. Returns false
 * when the deadline passed. */
static bool collect(pid_t pid, struct capture *cap, long long deadline)
{
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	bool open_out = true, open_err = true, in_time = true;
	while (open_out || open_err) {
		long long left_ms = (deadline - vgpu_now_ns()) / 1000000LL;
		if (left_ms <= 0) {
			in_time = false;
			break;
		}
		struct pollfd p[3] = { { open_out ? cap[0].fd : -1, POLLIN, 0 },
				       { open_err ? cap[1].fd : -1, POLLIN, 0 },
				       { pidfd, POLLIN, 0 } };
		int n = poll(p, 3, left_ms > 1000 ? 1000 : (int)left_ms);
		if (n < 0 && errno != EINTR) {
			in_time = false;
			break;
		}
		if (n <= 0)
			continue;
		if (p[0].revents)
			open_out = capture_read(&cap[0]) >= 0;
		if (p[1].revents)
			open_err = capture_read(&cap[1]) >= 0;
		if (p[2].revents) {
			if (open_out)
				capture_drain(&cap[0]);
			if (open_err)
				capture_drain(&cap[1]);
			break;
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	return in_time;
}

/* Reap pid, waiting until deadline; kill it when it is still there then. Returns false if killed. */
static bool reap(pid_t pid, long long deadline, int *status)
{
	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			return true;
		if (vgpu_now_ns() >= deadline)
			break;
		usleep(2000);
	}
	kill(pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
	return false;
}

int vgpu_cni_exec(const char *path, char *const env[], const char *stdin_data, long long timeout_ms,
		  struct vgpu_cni_run *run, struct vgpu_err *err)
{
	memset(run, 0, sizeof(*run));
	_cleanup_close_ int in_fd = stdin_memfd(stdin_data, err);
	if (in_fd < 0)
		return in_fd;
	int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 };
	if (pipe2(out_pipe, O_CLOEXEC) < 0)
		return vgpu_err_errno(err, errno, "pipe for %s", path);
	if (pipe2(err_pipe, O_CLOEXEC) < 0) {
		int e = errno;
		close(out_pipe[0]);
		close(out_pipe[1]);
		return vgpu_err_errno(err, e, "pipe for %s", path);
	}
	pid_t pid = -1;
	long long deadline = vgpu_now_ns() + timeout_ms * 1000000LL;
	int r = spawn(path, env, in_fd, out_pipe[1], err_pipe[1], &pid, err);
	close(out_pipe[1]);
	close(err_pipe[1]);
	struct capture cap[2] = { { .fd = out_pipe[0] }, { .fd = err_pipe[0] } };
	if (r == 0) {
		bool in_time = collect(pid, cap, deadline);
		/* A plugin that closed its output is about to exit: give it a moment. */
		if (!reap(pid, in_time ? deadline : 0, &run->status) || !in_time)
			r = vgpu_err_set(err, -ETIMEDOUT, "%s: killed after %lld ms", path, timeout_ms);
	}
	close(out_pipe[0]);
	close(err_pipe[0]);
	run->out = cap[0].buf ? cap[0].buf : vgpu_strdup("");
	run->errout = cap[1].buf ? cap[1].buf : vgpu_strdup("");
	if (r < 0)
		vgpu_cni_run_free(run);
	return r;
}

void vgpu_cni_run_free(struct vgpu_cni_run *run)
{
	free(run->out);
	free(run->errout);
	run->out = run->errout = NULL;
}
