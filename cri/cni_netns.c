/* Named network namespaces: a namespace bind-mounted on a file (as `ip netns add` does, without the
 * shared /run/netns mount), so it outlives every process in it and DEL can still enter it. A new
 * namespace is made in a short-lived thread: unshare(CLONE_NEWNET) changes only the calling thread,
 * and that thread ends right after, so no other thread of the daemon ever runs in it. */
#include "cni.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

bool vgpu_netns_exists(const char *path)
{
	struct statfs sf;
	return path && *path && statfs(path, &sf) == 0 && (unsigned long)sf.f_type == (unsigned long)NSFS_MAGIC;
}

static int loopback_up(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	int r = ioctl(fd, SIOCGIFFLAGS, &ifr);
	if (r == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		r = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	r = r < 0 ? -errno : 0;
	close(fd);
	return r;
}

/* An empty file to mount on; -EEXIST if path already holds a namespace. */
static int mount_point(const char *path, struct vgpu_err *err)
{
	if (vgpu_netns_exists(path))
		return vgpu_err_set(err, -EEXIST, "netns %s: already exists", path);
	_cleanup_free_ char *dir = vgpu_strdup(path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return vgpu_err_set(err, -EINVAL, "netns %s: not an absolute path below a directory", path);
	*slash = '\0';
	int r = vgpu_mkdir_p(dir, 0711, err);
	if (r < 0)
		return r;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
	if (fd < 0)
		return vgpu_err_errno(err, errno, "netns %s: create mount point", path);
	return 0;
}

struct create_job {
	const char *path;
	int code;
	const char *what;
};

static void *create_thread(void *arg)
{
	struct create_job *job = arg;
	job->what = "unshare";
	if (unshare(CLONE_NEWNET) < 0) {
		job->code = -errno;
		return NULL;
	}
	job->what = "bring up lo";
	int r = loopback_up();
	if (r < 0) {
		job->code = r;
		return NULL;
	}
	char self[64];
	snprintf(self, sizeof(self), "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
	job->what = "bind mount";
	job->code = mount(self, job->path, NULL, MS_BIND, NULL) < 0 ? -errno : 0;
	return NULL;
}

int vgpu_netns_create(const char *path, struct vgpu_err *err)
{
	int r = mount_point(path, err);
	if (r < 0)
		return r;
	struct create_job job = { .path = path };
	pthread_t t;
	r = pthread_create(&t, NULL, create_thread, &job);
	if (r != 0) {
		unlink(path);
		return vgpu_err_errno(err, r, "netns %s: thread", path);
	}
	r = pthread_join(t, NULL);
	if (r != 0)
		return vgpu_err_errno(err, r, "netns %s: join", path);
	if (job.code < 0) {
		unlink(path);
		return vgpu_err_errno(err, job.code, "netns %s: %s", path, job.what);
	}
	return 0;
}

int vgpu_netns_pin(pid_t pid, const char *path, struct vgpu_err *err)
{
	if (pid <= 0)
		return vgpu_err_set(err, -EINVAL, "netns %s: bad pid %d", path, (int)pid);
	int r = mount_point(path, err);
	if (r < 0)
		return r;
	char src[64];
	snprintf(src, sizeof(src), "/proc/%d/ns/net", (int)pid);
	if (mount(src, path, NULL, MS_BIND, NULL) < 0) {
		int e = errno;
		unlink(path);
		return vgpu_err_errno(err, e, "netns %s: bind %s", path, src);
	}
	return 0;
}

int vgpu_netns_remove(const char *path, struct vgpu_err *err)
{
	if (!path || !*path)
		return 0;
	/* Stacked mounts (a pin over a pin) come off one by one. */
	for (int i = 0; i < 16 && vgpu_netns_exists(path); i++)
		if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL)
			return vgpu_err_errno(err, errno, "netns %s: unmount", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return vgpu_err_errno(err, errno, "netns %s: remove", path);
	return 0;
}
