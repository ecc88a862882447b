/* Containers inside the guest through runc (see agent_ctr.h); the shepherd process that watches
 * each one is agent_shepherd.c. */
#include "agent_ctr.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent_shepherd.h"

#define CREATE_SYNC_MS 120000   /* runc create under TCG takes seconds; bounded all the same */
#define DEVICE_WAIT_MS 30000    /* the hot-added disk's node appears after blkfront connects */
#define KILL_WAIT_MS 10000

int agent_fail(char *msg, size_t cap, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, cap, fmt, ap);
	va_end(ap);
	return code;
}

#define fail(msg, code, ...) agent_fail(msg, AGENT_CTR_MSG_MAX, code, __VA_ARGS__)

uint64_t agent_ctr_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

size_t agent_ctr_read_for(int fd, char *buf, size_t cap, int timeout_ms)
{
	double deadline = agent_ctr_mono_s() + timeout_ms / 1000.0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t len = 0;

	while (len < cap - 1) {
		int left = (int)((deadline - agent_ctr_mono_s()) * 1000);
		if (left <= 0 || poll(&p, 1, left) == 0)
			break;
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return len;
}

double agent_ctr_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void path_of(char *out, size_t n, const struct agent_ctr_env *env, const char *id, const char *leaf)
{
	snprintf(out, n, "%s/%s%s%s", env->root, id, leaf ? "/" : "", leaf ? leaf : "");
}

/* Small text file into buf (NUL-terminated); -errno. */
int agent_ctr_read_small(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got;

	if (fd < 0)
		return -errno;
	got = read(fd, buf, n - 1);
	close(fd);
	if (got < 0)
		return -EIO;
	buf[got] = '\0';
	return 0;
}

/* Atomic small write: temp + rename. */
int agent_ctr_write_small(const char *path, const char *text)
{
	char tmp[700];
	int fd;
	size_t len = strlen(text);

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, text, len) != (ssize_t)len) {
		close(fd);
		unlink(tmp);
		return -EIO;
	}
	close(fd);
	return rename(tmp, path) < 0 ? -errno : 0;
}

int agent_ctr_parse_exit(const char *text, int32_t *code, uint64_t *finished_ns)
{
	char *end;
	long c;
	unsigned long long f;

	if (*text != '-' && (*text < '0' || *text > '9'))
		return -EINVAL;
	errno = 0;
	c = strtol(text, &end, 10);
	if (errno || end == text || *end != ' ' || c < -255 || c > 255)
		return -EINVAL;
	text = end + 1;
	if (*text < '0' || *text > '9')
		return -EINVAL;
	f = strtoull(text, &end, 10);
	if (errno || (*end != '\n' && *end != '\0') || (*end == '\n' && end[1] != '\0'))
		return -EINVAL;
	*code = (int32_t)c;
	*finished_ns = f;
	return 0;
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
		(void)agent_put_bytes(out, tmp, keep); /* out of memory: drop output, not the command */
	}
	return 0;
}

int agent_run(char *const *argv, uint32_t timeout_ms, int32_t *exit_code, struct agent_buf *out,
	      struct agent_buf *err)
{
	int po[2], pe[2], status = 0, open_fds = 2;
	double deadline = agent_ctr_mono_s() + timeout_ms / 1000.0;
	pid_t pid;

	if (pipe2(po, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(pe, O_CLOEXEC) < 0) {
		close(po[0]);
		close(po[1]);
		return -errno;
	}
	pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(po[0]);
		close(po[1]);
		close(pe[0]);
		close(pe[1]);
		return e;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull >= 0)
			dup2(devnull, 0);
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
		if (timeout_ms && agent_ctr_mono_s() > deadline) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(fds, 2, 100) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
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

/* Run a runc command; on failure msg gets runc's stderr (first line). */
static int runc(const struct agent_ctr_env *env, char *msg, uint32_t timeout_ms, char *const *args)
{
	char *argv[AGENT_MAX_ARGS + 8];
	struct agent_buf out = { 0 }, err = { 0 };
	int32_t code = 0;
	size_t n = 0;
	int rc;

	argv[n++] = (char *)env->runc;
	argv[n++] = "--root";
	argv[n++] = (char *)env->runc_root;
	for (size_t i = 0; args[i] && n < AGENT_MAX_ARGS + 6; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	rc = agent_run(argv, timeout_ms, &code, &out, &err);
	if (rc == 0 && code != 0) {
		size_t len = err.len;
		const char *text = err.data ? (const char *)err.data : "";
		const char *nl = len ? memchr(text, '\n', len) : NULL;
		if (nl)
			len = (size_t)(nl - text);
		rc = fail(msg, -EIO, "runc %s: exit %d: %.*s", args[0], code, (int)(len > 300 ? 300 : len), text);
	} else if (rc < 0) {
		rc = fail(msg, rc, "runc %s: %s", args[0], strerror(-rc));
	}
	agent_buf_free(&out);
	agent_buf_free(&err);
	return rc;
}

static bool exited(const struct agent_ctr_env *env, const char *id)
{
	char path[512];

	path_of(path, sizeof(path), env, id, "exit");
	return access(path, F_OK) == 0;
}

static bool wait_exited(const struct agent_ctr_env *env, const char *id, uint32_t timeout_ms)
{
	double deadline = agent_ctr_mono_s() + timeout_ms / 1000.0;

	for (;;) {
		if (exited(env, id))
			return true;
		if (agent_ctr_mono_s() > deadline)
			return false;
		usleep(50 * 1000);
	}
}

static int ctr_exists(const struct agent_ctr_env *env, const char *id, char *msg)
{
	char path[512];
	struct stat st;

	path_of(path, sizeof(path), env, id, NULL);
	if (stat(path, &st) < 0)
		return fail(msg, -ENOENT, "no container %s in the guest", id);
	return 0;
}

/* ---- requests ---- */

static void unmount_all(const char *dir)
{
	static const char *const leaves[] = { "rootfs", "rw", "image" };
	char path[600];

	for (size_t i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, leaves[i]);
		if (umount2(path, 0) < 0 && errno == EBUSY)
			umount2(path, MNT_DETACH);
	}
}

static int rm_tree(const char *path)
{
	struct stat st;
	int rc = 0;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;
		if (!d)
			return -errno;
		while ((e = readdir(d))) {
			char sub[1024];
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
			if (rm_tree(sub) < 0)
				rc = -EIO;
		}
		closedir(d);
		if (rmdir(path) < 0)
			rc = -errno;
	} else if (unlink(path) < 0) {
		rc = -errno;
	}
	return rc;
}

static int mount_rootfs(const char *dir, const char *dev, char *msg)
{
	char image[600], rw[600], upper[600], work[600], rootfs[600], opts[2048];
	double deadline = agent_ctr_mono_s() + DEVICE_WAIT_MS / 1000.0;

	snprintf(image, sizeof(image), "%s/image", dir);
	snprintf(rw, sizeof(rw), "%s/rw", dir);
	snprintf(upper, sizeof(upper), "%s/rw/upper", dir);
	snprintf(work, sizeof(work), "%s/rw/work", dir);
	snprintf(rootfs, sizeof(rootfs), "%s/rootfs", dir);
	if (mkdir(image, 0700) < 0 || mkdir(rw, 0700) < 0 || mkdir(rootfs, 0755) < 0)
		return fail(msg, -errno, "mkdir under %s: %s", dir, strerror(errno));
	while (access(dev, F_OK) < 0) {
		if (agent_ctr_mono_s() > deadline)
			return fail(msg, -ENODEV, "image disk %s did not appear in %d ms", dev, DEVICE_WAIT_MS);
		usleep(100 * 1000);
	}
	if (mount(dev, image, "erofs", MS_RDONLY | MS_NODEV | MS_NOSUID, NULL) < 0)
		return fail(msg, -errno, "mount %s (erofs, read-only): %s", dev, strerror(errno));
	if (mount("tmpfs", rw, "tmpfs", MS_NODEV | MS_NOSUID, "mode=0700") < 0)
		return fail(msg, -errno, "mount tmpfs for the writable layer: %s", strerror(errno));
	if (mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0)
		return fail(msg, -errno, "mkdir upper/work: %s", strerror(errno));
	snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", image, upper, work);
	if (mount("overlay", rootfs, "overlay", 0, opts) < 0)
		return fail(msg, -errno, "mount overlay: %s", strerror(errno));
	return 0;
}

int agent_ctr_create(const struct agent_ctr_env *env, const struct agent_ctr_req *req, char *msg)
{
	char dir[512], spec[600], buf[AGENT_CTR_MSG_MAX];
	int sync[2], rc;
	size_t len;

	if (mkdir(env->root, 0700) < 0 && errno != EEXIST) {
		/* the parent may be missing: make it once */
		char parent[512];
		snprintf(parent, sizeof(parent), "%s", env->root);
		char *slash = strrchr(parent, '/');
		if (slash && slash != parent) {
			*slash = '\0';
			mkdir(parent, 0700);
		}
		if (mkdir(env->root, 0700) < 0 && errno != EEXIST)
			return fail(msg, -errno, "mkdir %s: %s", env->root, strerror(errno));
	}
	path_of(dir, sizeof(dir), env, req->id, NULL);
	if (mkdir(dir, 0700) < 0)
		return fail(msg, errno == EEXIST ? -EEXIST : -errno, "container %s: %s", req->id, strerror(errno));
	rc = mount_rootfs(dir, req->rootfs_dev, msg);
	if (rc == 0) {
		snprintf(spec, sizeof(spec), "%s/config.json", dir);
		rc = agent_ctr_write_small(spec, req->spec_json);
		if (rc < 0)
			fail(msg, rc, "write config.json: %s", strerror(-rc));
	}
	if (rc == 0 && pipe2(sync, O_CLOEXEC) < 0)
		rc = fail(msg, -errno, "pipe: %s", strerror(errno));
	if (rc < 0)
		goto undo;
	pid_t pid = fork();
	if (pid == 0) {
		close(sync[0]);
		agent_shepherd_run(env, req->id, dir, sync[1]);
	}
	close(sync[1]);
	if (pid < 0) {
		close(sync[0]);
		rc = fail(msg, -errno, "fork: %s", strerror(errno));
		goto undo;
	}
	len = agent_ctr_read_for(sync[0], buf, sizeof(buf), CREATE_SYNC_MS);
	close(sync[0]);
	if (strncmp(buf, "OK ", 3) == 0)
		return 0;
	kill(pid, SIGKILL);
	rc = fail(msg, -EIO, "container %s: %s", req->id, len ? (strncmp(buf, "ERR ", 4) == 0 ? buf + 4 : buf)
							       : "runc create did not finish in time");
	{
		char *del[] = { "delete", "--force", (char *)req->id, NULL };
		char ignored[AGENT_CTR_MSG_MAX];
		(void)runc(env, ignored, 30000, del);
	}
undo:
	unmount_all(dir);
	rm_tree(dir);
	return rc;
}

int agent_ctr_start(const struct agent_ctr_env *env, const char *id, char *msg)
{
	char path[512], text[32];
	char *args[] = { "start", (char *)id, NULL };
	int rc = ctr_exists(env, id, msg);

	if (rc < 0)
		return rc;
	path_of(path, sizeof(path), env, id, "started");
	if (access(path, F_OK) == 0)
		return fail(msg, -EBUSY, "container %s was started already", id);
	if (exited(env, id))
		return fail(msg, -EBUSY, "container %s has exited", id);
	uint64_t t = agent_ctr_wall_ns();
	rc = runc(env, msg, 60000, args);
	if (rc < 0)
		return rc;
	snprintf(text, sizeof(text), "%llu\n", (unsigned long long)t);
	return agent_ctr_write_small(path, text);
}

int agent_ctr_stop(const struct agent_ctr_env *env, const char *id, uint32_t signal, uint32_t timeout_ms, char *msg)
{
	char sig[16];
	char *term[] = { "kill", (char *)id, sig, NULL };
	char *kill9[] = { "kill", (char *)id, "KILL", NULL };
	char ignored[AGENT_CTR_MSG_MAX];
	int rc = ctr_exists(env, id, msg);

	if (rc < 0)
		return rc;
	if (exited(env, id))
		return 0;
	if (timeout_ms > 0 && signal != SIGKILL) {
		snprintf(sig, sizeof(sig), "%u", signal);
		(void)runc(env, ignored, 30000, term); /* gone meanwhile: the exit file says so */
		if (wait_exited(env, id, timeout_ms))
			return 0;
	}
	(void)runc(env, ignored, 30000, kill9);
	if (wait_exited(env, id, KILL_WAIT_MS))
		return 0;
	return fail(msg, -ETIMEDOUT, "container %s did not exit after SIGKILL", id);
}

int agent_ctr_status(const struct agent_ctr_env *env, const char *id, struct agent_ctr_state *st, char *msg)
{
	char path[512], text[128];
	int rc = ctr_exists(env, id, msg);

	memset(st, 0, sizeof(*st));
	if (rc < 0)
		return rc;
	st->state = AGENT_CTR_CREATED;
	path_of(path, sizeof(path), env, id, "pid");
	if (agent_ctr_read_small(path, text, sizeof(text)) == 0)
		st->pid = atoi(text);
	path_of(path, sizeof(path), env, id, "started");
	if (agent_ctr_read_small(path, text, sizeof(text)) == 0) {
		st->started_ns = strtoull(text, NULL, 10);
		st->state = AGENT_CTR_RUNNING;
	}
	path_of(path, sizeof(path), env, id, "exit");
	if (agent_ctr_read_small(path, text, sizeof(text)) == 0) {
		if (agent_ctr_parse_exit(text, &st->exit_code, &st->finished_ns) < 0)
			st->state = AGENT_CTR_UNKNOWN;
		else
			st->state = AGENT_CTR_EXITED;
	}
	return 0;
}

int agent_ctr_logs(const struct agent_ctr_env *env, const char *id, uint64_t offset, uint32_t max_bytes,
		   struct agent_buf *out, uint64_t *next_offset, uint32_t *eof, char *msg)
{
	char path[512];
	struct stat st;
	int rc = ctr_exists(env, id, msg);

	*next_offset = offset;
	*eof = 0;
	if (rc < 0)
		return rc;
	/* the exit file is written after the last record: check it first */
	bool done = exited(env, id);
	path_of(path, sizeof(path), env, id, "log");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		*eof = done;
		return errno == ENOENT ? 0 : fail(msg, -errno, "open log: %s", strerror(errno));
	}
	if (fstat(fd, &st) < 0 || offset > (uint64_t)st.st_size) {
		close(fd);
		return fail(msg, -EINVAL, "log offset %llu is past the end", (unsigned long long)offset);
	}
	uint64_t avail = (uint64_t)st.st_size - offset;
	size_t want = avail < max_bytes ? (size_t)avail : max_bytes;
	size_t start = out->len;
	if (want) {
		uint8_t *tmp = malloc(want);
		ssize_t got = tmp ? pread(fd, tmp, want, (off_t)offset) : -1;
		if (got < 0)
			rc = fail(msg, tmp ? -EIO : -ENOMEM, "read log: %s", strerror(errno));
		else
			rc = agent_put_bytes(out, tmp, (size_t)got);
		free(tmp);
	}
	close(fd);
	if (rc < 0)
		return rc;
	*next_offset = offset + (out->len - start);
	*eof = done && *next_offset >= (uint64_t)st.st_size;
	return 0;
}

int agent_ctr_remove(const struct agent_ctr_env *env, const char *id, char *msg)
{
	char dir[512];
	char *del[] = { "delete", "--force", (char *)id, NULL };
	char ignored[AGENT_CTR_MSG_MAX];
	int rc;

	path_of(dir, sizeof(dir), env, id, NULL);
	if (access(dir, F_OK) < 0)
		return 0; /* removed already */
	if (!exited(env, id)) {
		rc = agent_ctr_stop(env, id, SIGKILL, 0, msg);
		if (rc < 0)
			return rc;
	}
	(void)runc(env, ignored, 30000, del);
	unmount_all(dir);
	rc = rm_tree(dir);
	if (rc < 0)
		return fail(msg, rc, "remove %s: %s", dir, strerror(-rc));
	return 0;
}

/* "key N" of a flat-keyed cgroup file (cpu.stat, memory.stat). */
static int read_key(const char *path, const char *key, uint64_t *out)
{
	char text[8192];
	size_t klen = strlen(key);

	if (agent_ctr_read_small(path, text, sizeof(text)) < 0)
		return -ENOENT;
	for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
			*out = strtoull(line + klen + 1, NULL, 10);
			return 0;
		}
	}
	return -ENOENT;
}

/* A single number (or "max" = 0) file. */
static int read_u64(const char *path, uint64_t *out)
{
	char text[64];

	if (agent_ctr_read_small(path, text, sizeof(text)) < 0)
		return -ENOENT;
	if (strncmp(text, "max", 3) == 0) {
		*out = 0;
		return 0;
	}
	char *end;
	*out = strtoull(text, &end, 10);
	return end == text ? -EINVAL : 0;
}

int agent_ctr_stats(const struct agent_ctr_env *env, const char *id, struct agent_ctr_stats *st, char *msg)
{
	char base[512], path[600];
	int rc = ctr_exists(env, id, msg);

	memset(st, 0, sizeof(*st));
	if (rc < 0)
		return rc;
	snprintf(base, sizeof(base), "%s/vgpu/%s", env->cgroup_root ? env->cgroup_root : "/sys/fs/cgroup", id);
	snprintf(path, sizeof(path), "%s/cpu.stat", base);
	if (read_key(path, "usage_usec", &st->cpu_usage_usec) == 0)
		st->flags |= AGENT_STATS_CPU;
	snprintf(path, sizeof(path), "%s/memory.current", base);
	if (read_u64(path, &st->memory_current) == 0) {
		st->flags |= AGENT_STATS_MEM;
		snprintf(path, sizeof(path), "%s/memory.max", base);
		(void)read_u64(path, &st->memory_max);
		snprintf(path, sizeof(path), "%s/memory.stat", base);
		(void)read_key(path, "inactive_file", &st->inactive_file);
		(void)read_key(path, "anon", &st->anon);
		(void)read_key(path, "pgfault", &st->pgfault);
		(void)read_key(path, "pgmajfault", &st->pgmajfault);
	}
	return 0;
}

int agent_ctr_update(const struct agent_ctr_env *env, const char *id, const char *resources_json, char *msg)
{
	char path[600];
	int rc = ctr_exists(env, id, msg);

	if (rc < 0)
		return rc;
	if (exited(env, id))
		return fail(msg, -EBUSY, "container %s has exited", id);
	path_of(path, sizeof(path), env, id, "resources.json");
	rc = agent_ctr_write_small(path, resources_json);
	if (rc < 0)
		return fail(msg, rc, "write %s: %s", path, strerror(-rc));
	char *args[] = { "update", "--resources", path, (char *)id, NULL };
	return runc(env, msg, 60000, args);
}
