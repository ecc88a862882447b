/* Helpers shared by the daemon's modules (see util.h). */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void vgpu_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}

void vgpu_fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

void vgpu_strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

char *vgpu_strdup(const char *s)
{
	char *r = strdup(s ? s : "");
	if (!r)
		abort();
	return r;
}

char *vgpu_asprintf(const char *fmt, ...)
{
	char *r = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&r, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	return r;
}

void *vgpu_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		abort();
	return p;
}

int vgpu_mkdir_p(const char *path, mode_t mode, struct vgpu_err *err)
{
	if (!path || !*path)
		return vgpu_err_set(err, -EINVAL, "mkdir: empty path");
	_cleanup_free_ char *copy = vgpu_strdup(path);
	size_t len = strlen(copy);
	for (size_t i = 1; i <= len; i++) {
		if (copy[i] != '/' && copy[i] != '\0')
			continue;
		char saved = copy[i];
		copy[i] = '\0';
		if (mkdir(copy, mode) < 0 && errno != EEXIST)
			return vgpu_err_errno(err, errno, "mkdir %s", copy);
		copy[i] = saved;
	}
	struct stat st;
	if (stat(path, &st) < 0)
		return vgpu_err_errno(err, errno, "stat %s", path);
	if (!S_ISDIR(st.st_mode))
		return vgpu_err_set(err, -ENOTDIR, "%s exists and is not a directory", path);
	return 0;
}

int vgpu_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int vgpu_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			   struct vgpu_err *err)
{
	_cleanup_free_ char *tmp = vgpu_asprintf("%s.tmp.XXXXXX", path);
	_cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return vgpu_err_errno(err, errno, "create temp file for %s", path);
	int r = vgpu_write_all(fd, data, len);
	if (r == 0 && fchmod(fd, mode) < 0)
		r = -errno;
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return vgpu_err_errno(err, r, "write %s", path);
	}
	_cleanup_free_ char *dir_copy = vgpu_strdup(path);
	_cleanup_close_ int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);
	return 0;
}

int vgpu_read_file(const char *path, size_t max_len, char **out, size_t *out_len, struct vgpu_err *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vgpu_err_errno(err, errno, "open %s", path);
	size_t cap = 4096, len = 0;
	_cleanup_free_ char *buf = malloc(cap + 1);
	if (!buf)
		return vgpu_err_set(err, -ENOMEM, "read %s: out of memory", path);
	for (;;) {
		if (len == cap) {
			if (cap >= max_len)
				return vgpu_err_set(err, -EFBIG, "read %s: larger than %zu bytes", path, max_len);
			cap = cap * 2 > max_len ? max_len : cap * 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb)
				return vgpu_err_set(err, -ENOMEM, "read %s: out of memory", path);
			buf = nb;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return vgpu_err_errno(err, errno, "read %s", path);
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (out_len)
		*out_len = len;
	*out = steal_pointer(&buf);
	return 0;
}

long long vgpu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long long vgpu_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
