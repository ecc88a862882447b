/* Spawning helper programs with captured output and a deadline, and the runc commands built on it
 * (see runc.h). posix_spawn (vfork-like in glibc) keeps spawning cheap from a big threaded daemon;
 * every fd of ours is O_CLOEXEC, so children see only what the file actions give them. */
#include "runc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

extern char **environ;

static int spawn_setup(posix_spawn_file_actions_t *fa, posix_spawnattr_t *attr, int in_fd, int out_fd,
		       int err_fd, int extra_fd)
{
	int r = posix_spawn_file_actions_init(fa);
	if (r)
		return -r;
	r = in_fd >= 0 ? posix_spawn_file_actions_adddup2(fa, in_fd, 0)
		       : posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
	if (!r)
		r = out_fd >= 0 ? posix_spawn_file_actions_adddup2(fa, out_fd, 1)
				: posix_spawn_file_actions_addopen(fa, 1, "/dev/null", O_WRONLY, 0);
	if (!r)
		r = err_fd >= 0 ? posix_spawn_file_actions_adddup2(fa, err_fd, 2)
				: posix_spawn_file_actions_addopen(fa, 2, "/dev/null", O_WRONLY, 0);
	if (!r && extra_fd >= 0)
		r = posix_spawn_file_actions_adddup2(fa, extra_fd, 3);
	if (!r)
		r = posix_spawnattr_init(attr);
	if (r) {
		posix_spawn_file_actions_destroy(fa);
		return -r;
	}
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	posix_spawnattr_setsigmask(attr, &none);
	posix_spawnattr_setsigdefault(attr, &all);
	posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	return 0;
}

/* dup2 onto the same number keeps O_CLOEXEC: make sure a passed fd is never already 3. */
static int fd_not_3(int fd, int *dup_out)
{
	*dup_out = -1;
	if (fd != 3)
		return fd;
	*dup_out = fcntl(fd, F_DUPFD_CLOEXEC, 10);
	return *dup_out;
}

static int do_spawn(pid_t *pid, char *const argv[], int in_fd, int out_fd, int err_fd, int extra_fd,
		    struct vgpu_err *err)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	_cleanup_close_ int extra_dup = -1;
	if (extra_fd >= 0) {
		extra_fd = fd_not_3(extra_fd, &extra_dup);
		if (extra_fd < 0)
			return vgpu_err_errno(err, errno, "dup fd for %s", argv[0]);
	}
	int r = spawn_setup(&fa, &attr, in_fd, out_fd, err_fd, extra_fd);
	if (r < 0)
		return vgpu_err_errno(err, -r, "spawn %s", argv[0]);
	r = posix_spawn(pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (r)
		return vgpu_err_errno(err, r, "spawn %s", argv[0]);
	return 0;
}

pid_t vgpu_proc_spawn(char *const argv[], int extra_fd, struct vgpu_err *err)
{
	pid_t pid;
	int r = do_spawn(&pid, argv, -1, -1, -1, extra_fd, err);
	return r < 0 ? r : pid;
}

pid_t vgpu_proc_spawn_stdio(char *const argv[], int in_fd, int out_fd, int err_fd, struct vgpu_err *err)
{
	pid_t pid;
	int r = do_spawn(&pid, argv, in_fd, out_fd, err_fd, -1, err);
	return r < 0 ? r : pid;
}

struct capture {
	int fd;
	char *buf;
	size_t len, cap, max;
	bool truncated;
};

static int capture_read(struct capture *c)
{
	char tmp[16384];
	ssize_t n = read(c->fd, tmp, sizeof(tmp));
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : -errno;
	if (n == 0)
		return 0;
	size_t keep = (size_t)n;
	if (c->len + keep > c->max) {
		keep = c->max - c->len;
		c->truncated = true;
	}
	if (keep) {
		if (c->len + keep + 1 > c->cap) {
			size_t cap = c->cap ? c->cap : 4096;
			while (cap < c->len + keep + 1)
				cap *= 2;
			char *nb = realloc(c->buf, cap);
			if (!nb)
				return -ENOMEM;
			c->buf = nb;
			c->cap = cap;
		}
		memcpy(c->buf + c->len, tmp, keep);
		c->len += keep;
	}
	return 1;
}

static void kill_pidfile(const char *path)
{
	_cleanup_free_ char *text = NULL;
	if (!path || vgpu_read_file(path, 64, &text, NULL, NULL) < 0)
		return;
	long pid = strtol(text, NULL, 10);
	if (pid > 1) {
		/* runc makes the exec'd process a session (and process group) leader: its background
		 * children are in that group and must not outlive the timed-out exec */
		kill(-(pid_t)pid, SIGKILL);
		kill((pid_t)pid, SIGKILL);
	}
}

int vgpu_proc_run(char *const argv[], const struct vgpu_proc_opts *opts, struct vgpu_proc_result *res,
		  struct vgpu_err *err)
{
	memset(res, 0, sizeof(*res));
	int outp[2], errp[2];
	if (pipe2(outp, O_CLOEXEC) < 0)
		return vgpu_err_errno(err, errno, "pipe for %s", argv[0]);
	if (pipe2(errp, O_CLOEXEC) < 0) {
		int e = errno;
		close(outp[0]);
		close(outp[1]);
		return vgpu_err_errno(err, e, "pipe for %s", argv[0]);
	}
	pid_t pid;
	int r = do_spawn(&pid, argv, -1, outp[1], errp[1], opts ? opts->extra_fd : -1, err);
	close(outp[1]);
	close(errp[1]);
	if (r < 0) {
		close(outp[0]);
		close(errp[0]);
		return r;
	}
	size_t max = opts && opts->max_output ? opts->max_output : 1 << 20;
	struct capture cap[2] = { { .fd = outp[0], .max = max }, { .fd = errp[0], .max = max } };
	long long deadline = opts && opts->timeout_ms > 0 ? vgpu_now_ns() + opts->timeout_ms * 1000000LL : 0;
	int open_streams = 2;
	while (open_streams > 0) {
		struct pollfd pfd[2];
		nfds_t n = 0;
		int idx[2];
		for (int i = 0; i < 2; i++)
			if (cap[i].fd >= 0) {
				pfd[n] = (struct pollfd){ .fd = cap[i].fd, .events = POLLIN };
				idx[n++] = i;
			}
		int wait_ms = -1;
		if (deadline) {
			long long left = (deadline - vgpu_now_ns()) / 1000000LL;
			wait_ms = left < 0 ? 0 : (int)(left > 1000000 ? 1000000 : left);
		}
		int pr = poll(pfd, n, wait_ms);
		if (pr < 0 && errno != EINTR)
			break;
		if (pr == 0 && deadline && vgpu_now_ns() >= deadline) {
			res->timed_out = true;
			kill_pidfile(opts->kill_pidfile);
			kill(pid, SIGKILL);
			break;
		}
		for (nfds_t j = 0; pr > 0 && j < n; j++) {
			if (!(pfd[j].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			struct capture *c = &cap[idx[j]];
			int cr = capture_read(c);
			if (cr <= 0) {
				close(c->fd);
				c->fd = -1;
				open_streams--;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (cap[i].fd >= 0)
			close(cap[i].fd);
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			status = 255 << 8;
			break;
		}
	}
	res->status = status;
	res->out = cap[0].buf ? cap[0].buf : vgpu_strdup("");
	res->out[cap[0].len] = '\0';
	res->out_len = cap[0].len;
	res->out_truncated = cap[0].truncated;
	res->errout = cap[1].buf ? cap[1].buf : vgpu_strdup("");
	res->errout[cap[1].len] = '\0';
	res->err_len = cap[1].len;
	res->err_truncated = cap[1].truncated;
	return 0;
}

void vgpu_proc_result_free(struct vgpu_proc_result *res)
{
	free(res->out);
	free(res->errout);
	res->out = res->errout = NULL;
}

unsigned long long vgpu_proc_start_time(pid_t pid)
{
	if (pid <= 0)
		return 0;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	_cleanup_free_ char *text = NULL;
	if (vgpu_read_file(path, 4096, &text, NULL, NULL) < 0)
		return 0;
	char *p = strrchr(text, ')'); /* comm may contain spaces and parens */
	if (!p || p[1] != ' ')
		return 0;
	p += 2;
	if (*p == 'Z' || *p == 'X')
		return 0;
	/* after ")": field 3 is state; start time is field 22 */
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return 0;
		p++;
	}
	return strtoull(p, NULL, 10);
}

bool vgpu_proc_alive(pid_t pid, unsigned long long start_time)
{
	unsigned long long now = vgpu_proc_start_time(pid);
	return now != 0 && (start_time == 0 || now == start_time);
}

/* Trim runc's stderr to its last line for messages. */
static const char *last_line(char *text)
{
	size_t len = strlen(text);
	while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
		text[--len] = '\0';
	char *nl = strrchr(text, '\n');
	return nl ? nl + 1 : text;
}

static int runc_cmd(const struct vgpu_runc *rt, const char *what, const char *id, char *const args[],
		    long long timeout_ms, struct vgpu_proc_result *res, struct vgpu_err *err)
{
	char *argv[32];
	size_t n = 0;
	argv[n++] = (char *)rt->path;
	argv[n++] = "--root";
	argv[n++] = (char *)rt->root;
	for (size_t i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	struct vgpu_proc_opts opts = { .timeout_ms = timeout_ms, .extra_fd = -1 };
	int r = vgpu_proc_run(argv, &opts, res, err);
	if (r < 0)
		return vgpu_err_prefix(err, "container %s: runc %s", id, what);
	if (res->timed_out)
		return vgpu_err_set(err, -ETIMEDOUT, "container %s: runc %s: timed out", id, what);
	if (!WIFEXITED(res->status) || WEXITSTATUS(res->status) != 0)
		return vgpu_err_set(err, -EIO, "container %s: runc %s: %s", id, what, last_line(res->errout));
	return 0;
}

#define RUNC_TIMEOUT_MS 30000

int vgpu_runc_start(const struct vgpu_runc *rt, const char *id, struct vgpu_err *err)
{
	struct vgpu_proc_result res;
	char *args[] = { "start", (char *)id, NULL };
	int r = runc_cmd(rt, "start", id, args, RUNC_TIMEOUT_MS, &res, err);
	vgpu_proc_result_free(&res);
	return r;
}

int vgpu_runc_kill(const struct vgpu_runc *rt, const char *id, int sig, bool all, struct vgpu_err *err)
{
	struct vgpu_proc_result res;
	char signame[16];
	snprintf(signame, sizeof(signame), "%d", sig);
	char *args_all[] = { "kill", "--all", (char *)id, signame, NULL };
	char *args_one[] = { "kill", (char *)id, signame, NULL };
	int r = runc_cmd(rt, "kill", id, all ? args_all : args_one, RUNC_TIMEOUT_MS, &res, err);
	if (r == -EIO && (strstr(res.errout, "not running") || strstr(res.errout, "does not exist") ||
			  strstr(res.errout, "process already finished")))
		r = vgpu_err_set(err, -ESRCH, "container %s: not running", id);
	vgpu_proc_result_free(&res);
	return r;
}

int vgpu_runc_delete(const struct vgpu_runc *rt, const char *id, struct vgpu_err *err)
{
	struct vgpu_proc_result res;
	char *args[] = { "delete", "--force", (char *)id, NULL };
	int r = runc_cmd(rt, "delete", id, args, RUNC_TIMEOUT_MS, &res, err);
	if (r == -EIO && strstr(res.errout, "does not exist")) {
		vgpu_err_clear(err);
		r = 0;
	}
	vgpu_proc_result_free(&res);
	return r;
}

int vgpu_runc_state(const struct vgpu_runc *rt, const char *id, char *status, size_t len, struct vgpu_err *err)
{
	struct vgpu_proc_result res;
	char *args[] = { "state", (char *)id, NULL };
	int r = runc_cmd(rt, "state", id, args, RUNC_TIMEOUT_MS, &res, err);
	if (r == -EIO && strstr(res.errout, "does not exist"))
		r = vgpu_err_set(err, -ENOENT, "container %s: unknown to runc", id);
	if (r == 0) {
		/* "status": "running" */
		const char *p = strstr(res.out, "\"status\"");
		const char *q = p ? strchr(p + 8, '"') : NULL;
		const char *e = q ? strchr(q + 1, '"') : NULL;
		if (!e || (size_t)(e - q - 1) >= len)
			r = vgpu_err_set(err, -EIO, "container %s: runc state: no status", id);
		else {
			memcpy(status, q + 1, (size_t)(e - q - 1));
			status[e - q - 1] = '\0';
		}
	}
	vgpu_proc_result_free(&res);
	return r;
}

int vgpu_runc_update(const struct vgpu_runc *rt, const char *id, const char *resources_json, struct vgpu_err *err)
{
	struct vgpu_proc_result res;
	char *args[] = { "update", "--resources", (char *)resources_json, (char *)id, NULL };
	int r = runc_cmd(rt, "update", id, args, RUNC_TIMEOUT_MS, &res, err);
	vgpu_proc_result_free(&res);
	return r;
}

int vgpu_runc_exec(const struct vgpu_runc *rt, const char *id, char *const argv[], long long timeout_ms,
		   const char *tmp_dir, struct vgpu_proc_result *res, struct vgpu_err *err)
{
	char pidfile[4096];
	static _Atomic unsigned long long seq;
	snprintf(pidfile, sizeof(pidfile), "%s/exec-%d-%llu.pid", tmp_dir, (int)getpid(), ++seq);
	char *full[256];
	size_t n = 0;
	full[n++] = (char *)rt->path;
	full[n++] = "--root";
	full[n++] = (char *)rt->root;
	full[n++] = "exec";
	full[n++] = "--pid-file";
	full[n++] = pidfile;
	full[n++] = (char *)id;
	for (size_t i = 0; argv[i]; i++) {
		if (n >= 255)
			return vgpu_err_set(err, -EINVAL, "container %s: exec: too many arguments", id);
		full[n++] = argv[i];
	}
	full[n] = NULL;
	struct vgpu_proc_opts opts = {
		.timeout_ms = timeout_ms, .max_output = 16 << 20, .kill_pidfile = pidfile, .extra_fd = -1
	};
	int r = vgpu_proc_run(full, &opts, res, err);
	unlink(pidfile);
	if (r < 0)
		return vgpu_err_prefix(err, "container %s: exec", id);
	return 0;
}
