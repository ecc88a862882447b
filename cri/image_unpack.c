/* Layer extraction: a layer tar (plain, gzip or zstd, detected by libarchive) unpacked into its
 * own directory, in the form overlayfs reads as a lower layer: whiteouts ".wh.name" become char
 * devices 0:0, ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory. Every path is
 * resolved component by component from the layer directory with O_NOFOLLOW, so nothing in a
 * layer (".." entries, symlinks to "/" or "..", hard links out of the tree) can make us write
 * outside it; offending entries fail the unpack. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "image_internal.h"
#include "log.h"
#include "util.h"

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"
#define OPAQUE_XATTR "trusted.overlay.opaque"

static const char *const layer_media_types[] = {
	"application/vnd.oci.image.layer.v1.tar",
	"application/vnd.oci.image.layer.v1.tar+gzip",
	"application/vnd.oci.image.layer.v1.tar+zstd",
	"application/vnd.docker.image.rootfs.diff.tar.gzip",
	"application/vnd.oci.image.layer.nondistributable.v1.tar",
	"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
	"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
	NULL,
};

bool vgpu_layer_media_type_known(const char *media_type)
{
	for (const char *const *p = layer_media_types; *p; p++)
		if (!strcmp(*p, media_type))
			return true;
	return false;
}

int vgpu_rm_rf_at(int parent_fd, const char *name)
{
	if (unlinkat(parent_fd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = -errno;
		close(fd);
		return e;
	}
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		int rr = vgpu_rm_rf_at(dirfd(d), de->d_name);
		if (rr < 0 && r == 0)
			r = rr;
	}
	closedir(d);
	if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
		r = -errno;
	return r;
}

int vgpu_rm_rf(const char *path, struct vgpu_err *err)
{
	_cleanup_free_ char *a = vgpu_strdup(path), *b = vgpu_strdup(path);
	const char *dir = dirname(a), *base = basename(b);
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 : vgpu_err_errno(err, errno, "remove %s", path);
	int r = vgpu_rm_rf_at(dfd, base);
	if (r < 0)
		return vgpu_err_errno(err, -r, "remove %s", path);
	return 0;
}

struct unpack {
	int root_fd;           /* the layer directory */
	char *parent_path;     /* cache: the last parent directory resolved ... */
	int parent_fd;         /* ... and an O_PATH fd on it */
	uint64_t bytes;
	char *buf;
};

/* "./a//b/" -> "a/b"; "" for the root; -EINVAL for ".." anywhere. Leading '/' is dropped: paths
 * in a layer are relative to its root whatever they look like. */
static int clean_path(const char *in, char **out)
{
	size_t n = strlen(in);
	char *res = vgpu_calloc(1, n + 1);
	size_t len = 0;
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		const char *s = p;
		while (*p && *p != '/')
			p++;
		size_t cl = (size_t)(p - s);
		if (cl == 0 || (cl == 1 && s[0] == '.'))
			continue;
		if (cl == 2 && s[0] == '.' && s[1] == '.') {
			free(res);
			return -EINVAL;
		}
		if (len)
			res[len++] = '/';
		memcpy(res + len, s, cl);
		len += cl;
	}
	res[len] = '\0';
	*out = res;
	return 0;
}

/* Resolve dir (clean, relative) under the root without following any symlink, creating missing
 * directories when create. Returns an O_PATH fd owned by u (do not close). */
static int open_dir(struct unpack *u, const char *dir, bool create, int *fd_out)
{
	*fd_out = -1;
	if (u->parent_path && !strcmp(u->parent_path, dir)) {
		*fd_out = u->parent_fd;
		return 0;
	}
	int cur = openat(u->root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return errno ? -errno : -EIO;
	_cleanup_free_ char *copy = vgpu_strdup(dir);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		int next = openat(cur, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(cur, c, 0755) < 0 && errno != EEXIST) {
				int e = -errno;
				close(cur);
				return e;
			}
			next = openat(cur, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		int e = errno ? -errno : -EIO;
		close(cur);
		if (next < 0)
			return e == -ELOOP ? -ENOTDIR : e;
		cur = next;
	}
	if (u->parent_fd >= 0)
		close(u->parent_fd);
	free(u->parent_path);
	u->parent_path = vgpu_strdup(dir);
	u->parent_fd = cur;
	*fd_out = cur;
	return 0;
}

/* Split a clean path into its parent's fd and its last component. */
static int open_parent(struct unpack *u, const char *path, bool create, int *pfd, const char **base)
{
	const char *slash = strrchr(path, '/');
	_cleanup_free_ char *dir = slash ? strndup(path, (size_t)(slash - path)) : vgpu_strdup("");
	*base = slash ? slash + 1 : path;
	if (!dir)
		return -ENOMEM;
	return open_dir(u, dir, create, pfd);
}

/* Make room for a new non-directory entry called name. */
static int remove_existing(int pfd, const char *name)
{
	return vgpu_rm_rf_at(pfd, name);
}

static void set_xattrs_fd(int fd, struct archive_entry *e, const char *path)
{
	const char *name;
	const void *value;
	size_t size;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
		/* trusted.* (overlay's own markers) and SELinux labels are not the layer's to set */
		if (!strncmp(name, "trusted.", 8) || !strcmp(name, "security.selinux"))
			continue;
		if (fsetxattr(fd, name, value, size, 0) < 0)
			vgpu_log(VGPU_LOG_DEBUG, "unpack %s: xattr %s: %s", path, name, strerror(errno));
	}
}

static int write_file(struct unpack *u, struct archive *a, int pfd, const char *name, struct archive_entry *e,
		      const char *path)
{
	int fd = openat(pfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = 0;
	const void *block;
	size_t size;
	la_int64_t offset;
	for (;;) {
		int ar = archive_read_data_block(a, &block, &size, &offset);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar != ARCHIVE_OK) {
			r = -EBADMSG;
			vgpu_log(VGPU_LOG_WARN, "unpack %s: %s", path, archive_error_string(a));
			break;
		}
		const char *p = block;
		while (size > 0) {
			ssize_t w = pwrite(fd, p, size, offset);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				r = -errno;
				break;
			}
			p += w;
			size -= (size_t)w;
			offset += w;
		}
		if (r < 0)
			break;
	}
	la_int64_t want = archive_entry_size(e);
	if (r == 0 && want > 0 && ftruncate(fd, want) < 0)
		r = -errno;
	if (r == 0) {
		if (fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0 && errno != EPERM)
			r = -errno;
		if (r == 0 && fchmod(fd, archive_entry_perm(e)) < 0)
			r = -errno;
		set_xattrs_fd(fd, e, path);
		struct timespec ts[2] = { { archive_entry_mtime(e), archive_entry_mtime_nsec(e) },
					  { archive_entry_mtime(e), archive_entry_mtime_nsec(e) } };
		if (r == 0 && futimens(fd, ts) < 0)
			r = -errno;
	}
	if (want > 0)
		u->bytes += (uint64_t)want;
	close(fd);
	return r;
}

static int make_dir(int pfd, const char *name, struct archive_entry *e, const char *path)
{
	struct stat st;
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
		int r = remove_existing(pfd, name);
		if (r < 0)
			return r;
	}
	if (mkdirat(pfd, name, 0755) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = 0;
	if (fchown(fd, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e)) < 0 && errno != EPERM)
		r = -errno;
	if (r == 0 && fchmod(fd, archive_entry_perm(e)) < 0)
		r = -errno;
	set_xattrs_fd(fd, e, path);
	close(fd);
	return r;
}

static int whiteout(struct unpack *u, int pfd, const char *base, const char *path)
{
	if (!strcmp(base, WH_OPAQUE)) {
		int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		int r = fsetxattr(fd, OPAQUE_XATTR, "y", 1, 0) < 0 ? -errno : 0;
		close(fd);
		return r;
	}
	const char *target = base + strlen(WH_PREFIX);
	if (!*target || !strcmp(target, ".") || !strcmp(target, "..") || !strncmp(target, WH_PREFIX, 4))
		return 0; /* other .wh..wh.* markers (aufs plinks etc.) mean nothing to overlay */
	int r = remove_existing(pfd, target);
	if (r < 0)
		return r;
	if (mknodat(pfd, target, S_IFCHR | 0000, makedev(0, 0)) < 0)
		return -errno;
	(void)u;
	(void)path;
	return 0;
}

static int hard_link(struct unpack *u, int pfd, const char *base, const char *target_raw, const char *path,
		     struct vgpu_err *err)
{
	_cleanup_free_ char *target = NULL;
	if (clean_path(target_raw, &target) < 0 || !*target)
		return vgpu_err_set(err, -EINVAL, "entry %s: hard link to '%s' leaves the layer", path, target_raw);
	/* pfd belongs to u's cache, which resolving the target replaces: keep our own */
	int own_pfd = openat(pfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (own_pfd < 0)
		return vgpu_err_errno(err, errno, "entry %s", path);
	int tpfd;
	const char *tbase;
	int r = open_parent(u, target, false, &tpfd, &tbase);
	if (r < 0) {
		close(own_pfd);
		return vgpu_err_errno(err, -r, "entry %s: hard link target '%s'", path, target_raw);
	}
	r = remove_existing(own_pfd, base);
	if (r == 0 && linkat(tpfd, tbase, own_pfd, base, 0) < 0)
		r = -errno;
	close(own_pfd);
	if (r < 0)
		return vgpu_err_errno(err, -r, "entry %s: hard link to '%s'", path, target_raw);
	return 0;
}

static int unpack_entry(struct unpack *u, struct archive *a, struct archive_entry *e, struct vgpu_err *err)
{
	const char *raw = archive_entry_pathname(e);
	if (!raw)
		return vgpu_err_set(err, -EINVAL, "entry without a name");
	_cleanup_free_ char *path = NULL;
	if (clean_path(raw, &path) < 0)
		return vgpu_err_set(err, -EINVAL, "entry '%s': path with '..' refused", raw);
	if (!*path)
		return 0; /* the root itself: its mode comes from the lower layers or defaults */
	int pfd;
	const char *base;
	int r = open_parent(u, path, true, &pfd, &base);
	if (r == -ENOTDIR)
		return vgpu_err_set(err, -EINVAL, "entry '%s': goes through a symlink or file (refused)", raw);
	if (r < 0)
		return vgpu_err_errno(err, -r, "entry '%s': parent directory", raw);

	if (!strncmp(base, WH_PREFIX, strlen(WH_PREFIX))) {
		r = whiteout(u, pfd, base, path);
		return r < 0 ? vgpu_err_errno(err, -r, "whiteout '%s'", raw) : 0;
	}
	const char *link = archive_entry_hardlink(e);
	if (link)
		return hard_link(u, pfd, base, link, raw, err);

	mode_t type = archive_entry_filetype(e);
	if (type == AE_IFDIR) {
		r = make_dir(pfd, base, e, path);
	} else if ((r = remove_existing(pfd, base)) < 0) {
		/* fall through to the error below */
	} else if (type == AE_IFREG) {
		r = write_file(u, a, pfd, base, e, path);
	} else if (type == AE_IFLNK) {
		const char *target = archive_entry_symlink(e);
		/* created as is, even absolute or with "..": never followed while unpacking, and
		 * only ever resolved inside the container's own root */
		if (symlinkat(target ? target : "", pfd, base) < 0)
			r = -errno;
		else if (fchownat(pfd, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
				  AT_SYMLINK_NOFOLLOW) < 0 && errno != EPERM)
			r = -errno;
	} else if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO) {
		if (mknodat(pfd, base, type | archive_entry_perm(e), archive_entry_rdev(e)) < 0)
			r = -errno;
		else if (fchownat(pfd, base, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
				  AT_SYMLINK_NOFOLLOW) < 0 && errno != EPERM)
			r = -errno;
	} else {
		vgpu_log(VGPU_LOG_DEBUG, "unpack: skipping '%s' of type 0%o", raw, (unsigned)type);
	}
	if (r < 0)
		return vgpu_err_errno(err, -r, "entry '%s'", raw);
	return 0;
}

int vgpu_layer_unpack(const char *blob_path, const char *dest_dir, uint64_t *bytes, struct vgpu_err *err)
{
	struct unpack u = { .root_fd = -1, .parent_fd = -1 };
	u.root_fd = open(dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (u.root_fd < 0)
		return vgpu_err_errno(err, errno, "open %s", dest_dir);
	struct archive *a = archive_read_new();
	if (!a) {
		close(u.root_fd);
		return vgpu_err_set(err, -ENOMEM, "archive_read_new failed");
	}
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_none(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	int r = 0;
	if (archive_read_open_filename(a, blob_path, 1 << 20) != ARCHIVE_OK) {
		r = vgpu_err_set(err, -EBADMSG, "open layer %s: %s", blob_path, archive_error_string(a));
	} else {
		struct archive_entry *e;
		for (;;) {
			int ar = archive_read_next_header(a, &e);
			if (ar == ARCHIVE_EOF)
				break;
			if (ar != ARCHIVE_OK && ar != ARCHIVE_WARN) {
				r = vgpu_err_set(err, -EBADMSG, "layer is not a valid tar: %s", archive_error_string(a));
				break;
			}
			r = unpack_entry(&u, a, e, err);
			if (r < 0)
				break;
		}
	}
	archive_read_free(a);
	if (u.parent_fd >= 0)
		close(u.parent_fd);
	free(u.parent_path);
	close(u.root_fd);
	if (r == 0 && bytes)
		*bytes = u.bytes;
	return r;
}
