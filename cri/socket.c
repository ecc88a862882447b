/* CRI socket preparation (see socket.h). The lock file, not a connect() probe, decides whether
 * another instance runs: a probe races with a daemon that is starting or stopping. */
#include "socket.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

int vgpu_socket_prepare(const char *path, int *lock_fd, struct vgpu_err *err)
{
	*lock_fd = -1;
	if (!path || path[0] != '/')
		return vgpu_err_set(err, -EINVAL, "socket path '%s' is not absolute", path ? path : "");
	_cleanup_free_ char *copy = vgpu_strdup(path);
	const char *dir = dirname(copy);
	int r = vgpu_mkdir_p(dir, 0700, err);
	if (r < 0)
		return vgpu_err_prefix(err, "socket directory");

	_cleanup_free_ char *lock_path = vgpu_asprintf("%s.lock", path);
	_cleanup_close_ int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return vgpu_err_errno(err, errno, "open lock file %s", lock_path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			return vgpu_err_set(err, -EBUSY,
					    "another vgpu-cri is already serving %s (lock %s is held); stop it first",
					    path, lock_path);
		return vgpu_err_errno(err, errno, "lock %s", lock_path);
	}

	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return vgpu_err_set(err, -EEXIST, "%s exists and is not a socket; refusing to remove it", path);
		if (unlink(path) < 0)
			return vgpu_err_errno(err, errno, "remove stale socket %s", path);
		vgpu_log(VGPU_LOG_INFO, "removed stale socket %s", path);
	} else if (errno != ENOENT) {
		return vgpu_err_errno(err, errno, "stat %s", path);
	}
	*lock_fd = steal_fd(&fd);
	return 0;
}
