/* What containers get from the image store: an image's config (entrypoint, cmd, env, working
 * dir, user) and a rootfs made from its layers, an overlayfs (layers as lower dirs plus a
 * writable upper dir) or, where overlay cannot be mounted, a copy with the whiteouts applied. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "image_internal.h"
#include "log.h"
#include "util.h"

#define CONFIG_MAX (16u << 20)
#define MOUNT_DATA_MAX 4000 /* overlay's options must fit in one page */

void vgpu_image_config_free(struct vgpu_image_config *cfg)
{
	if (!cfg)
		return;
	vgpu_strv_free(cfg->entrypoint);
	vgpu_strv_free(cfg->cmd);
	vgpu_strv_free(cfg->env);
	free(cfg->working_dir);
	free(cfg->user);
	memset(cfg, 0, sizeof(*cfg));
}

static char **json_strv(json_object *o, const char *key)
{
	json_object *a;
	size_t n = 0;
	if (o && json_object_object_get_ex(o, key, &a) && json_object_is_type(a, json_type_array))
		n = json_object_array_length(a);
	else
		a = NULL;
	char **v = vgpu_calloc(n + 1, sizeof(char *));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(a, i);
		if (json_object_is_type(e, json_type_string))
			v[k++] = vgpu_strdup(json_object_get_string(e));
	}
	return v;
}

static char *json_str(json_object *o, const char *key)
{
	json_object *v;
	if (o && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return vgpu_strdup(json_object_get_string(v));
	return vgpu_strdup("");
}

int vgpu_image_config_parse(const char *json, struct vgpu_image_config *cfg, struct vgpu_err *err)
{
	memset(cfg, 0, sizeof(*cfg));
	json_object *o = json_tokener_parse(json);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return vgpu_err_set(err, -EINVAL, "image config is not a JSON object");
	}
	json_object *c = NULL;
	if (!json_object_object_get_ex(o, "config", &c) || !json_object_is_type(c, json_type_object))
		c = NULL;
	cfg->entrypoint = json_strv(c, "Entrypoint");
	cfg->cmd = json_strv(c, "Cmd");
	cfg->env = json_strv(c, "Env");
	cfg->working_dir = json_str(c, "WorkingDir");
	cfg->user = json_str(c, "User");
	json_object_put(o);
	return 0;
}

int vgpu_image_lookup(struct vgpu_image_store *s, const char *image, char **image_id,
		      struct vgpu_image_config *cfg, struct vgpu_err *err)
{
	struct vgpu_image_record *rec = NULL;
	int r = vgpu_image_store_get(s, image, &rec, err);
	if (r < 0)
		return r;
	if (cfg) {
		_cleanup_free_ char *json = NULL;
		r = vgpu_image_store_read_blob(s, rec->config_digest, CONFIG_MAX, &json, NULL, err);
		if (r == 0)
			r = vgpu_image_config_parse(json, cfg, err);
		if (r < 0) {
			vgpu_err_prefix(err, "image %s", rec->id);
			vgpu_image_record_free(rec);
			return r;
		}
	}
	if (image_id)
		*image_id = vgpu_strdup(rec->id);
	vgpu_image_record_free(rec);
	return 0;
}

/* ---- copy fallback ---- */

static bool is_whiteout(const struct stat *st)
{
	return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0);
}

static bool is_opaque(int dirfd)
{
	char v[2] = { 0 };
	return fgetxattr(dirfd, "trusted.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y';
}

/* File capabilities and user xattrs travel with the copy; overlay's markers do not. */
static void copy_xattrs(int in, int out)
{
	char names[4096], value[4096];
	ssize_t n = flistxattr(in, names, sizeof(names));
	for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(names + off) + 1) {
		const char *name = names + off;
		if (!strncmp(name, "trusted.overlay.", 16))
			continue;
		ssize_t len = fgetxattr(in, name, value, sizeof(value));
		if (len >= 0 && fsetxattr(out, name, value, (size_t)len, 0) < 0)
			vgpu_log(VGPU_LOG_DEBUG, "rootfs copy: xattr %s: %s", name, strerror(errno));
	}
}

static int copy_file(int sfd_dir, int dfd_dir, const char *name, const struct stat *st)
{
	int in = openat(sfd_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return -errno;
	int out = openat(dfd_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		int e = -errno;
		close(in);
		return e;
	}
	int r = 0;
	off_t left = st->st_size;
	while (left > 0) {
		ssize_t n = sendfile(out, in, NULL, (size_t)left);
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		left -= n;
	}
	if (r == 0 && fchown(out, st->st_uid, st->st_gid) < 0 && errno != EPERM)
		r = -errno;
	if (r == 0 && fchmod(out, st->st_mode & 07777) < 0)
		r = -errno;
	if (r == 0)
		copy_xattrs(in, out);
	struct timespec ts[2] = { st->st_atim, st->st_mtim };
	if (r == 0)
		futimens(out, ts);
	close(in);
	close(out);
	return r;
}

static int copy_layer(int src, int dst);

/* Copy one entry of a layer over dst: whiteouts delete, opaque dirs replace, dirs merge. */
static int copy_entry(int src, int dst, const char *name)
{
	struct stat st, dst_st;
	if (fstatat(src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	bool dst_exists = fstatat(dst, name, &dst_st, AT_SYMLINK_NOFOLLOW) == 0;
	if (is_whiteout(&st))
		return vgpu_rm_rf_at(dst, name);
	int r = 0;
	if (S_ISDIR(st.st_mode)) {
		int sd = openat(src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sd < 0)
			return -errno;
		if (dst_exists && (!S_ISDIR(dst_st.st_mode) || is_opaque(sd)))
			r = vgpu_rm_rf_at(dst, name);
		if (r == 0 && mkdirat(dst, name, st.st_mode & 07777) < 0 && errno != EEXIST)
			r = -errno;
		int dd = r == 0 ? openat(dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
		if (r == 0 && dd < 0)
			r = -errno;
		if (r == 0 && fchown(dd, st.st_uid, st.st_gid) < 0 && errno != EPERM)
			r = -errno;
		if (r == 0 && fchmod(dd, st.st_mode & 07777) < 0)
			r = -errno;
		if (r == 0)
			r = copy_layer(sd, dd);
		if (dd >= 0)
			close(dd);
		close(sd);
		return r;
	}
	if (dst_exists && (r = vgpu_rm_rf_at(dst, name)) < 0)
		return r;
	if (S_ISREG(st.st_mode))
		return copy_file(src, dst, name, &st);
	if (S_ISLNK(st.st_mode)) {
		char target[4096];
		ssize_t n = readlinkat(src, name, target, sizeof(target) - 1);
		if (n < 0)
			return -errno;
		target[n] = '\0';
		if (symlinkat(target, dst, name) < 0)
			return -errno;
	} else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)) {
		if (mknodat(dst, name, st.st_mode, st.st_rdev) < 0)
			return -errno;
	} else {
		return 0; /* sockets: nothing to copy */
	}
	if (fchownat(dst, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0 && errno != EPERM)
		return -errno;
	return 0;
}

/* Copy layer tree src over dst as overlay would show it. */
static int copy_layer(int src, int dst)
{
	int sdup = fcntl(src, F_DUPFD_CLOEXEC, 0);
	if (sdup < 0)
		return -errno;
	DIR *d = fdopendir(sdup);
	if (!d) {
		close(sdup);
		return -errno;
	}
	int r = 0;
	struct dirent *de;
	while (r == 0 && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			r = copy_entry(src, dst, de->d_name);
	}
	closedir(d);
	return r;
}

static int copy_rootfs(struct vgpu_image_store *s, const struct vgpu_image_record *rec, const char *rootfs,
		       struct vgpu_err *err)
{
	int dst = open(rootfs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dst < 0)
		return vgpu_err_errno(err, errno, "open %s", rootfs);
	int r = 0;
	for (size_t i = 0; i < rec->n_layers && r == 0; i++) {
		_cleanup_free_ char *lp = vgpu_image_layer_path(s, rec->layers[i].digest);
		int src = open(lp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (src < 0) {
			r = vgpu_err_errno(err, errno, "open layer %s", lp);
			break;
		}
		r = copy_layer(src, dst);
		close(src);
		if (r < 0)
			vgpu_err_errno(err, -r, "copy layer %s into %s", rec->layers[i].digest, rootfs);
	}
	close(dst);
	return r;
}

/* ---- mount ---- */

static bool is_mountpoint(const char *path)
{
	struct stat a, b;
	_cleanup_free_ char *parent = vgpu_asprintf("%s/..", path);
	return stat(path, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

static int make_rootfs(struct vgpu_image_store *s, const char *image_id, const char *dir, bool overlay,
		       char **rootfs_path, struct vgpu_err *err)
{
	struct vgpu_image_record *rec = NULL;
	int r = vgpu_image_store_get(s, image_id, &rec, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *rootfs = vgpu_asprintf("%s/rootfs", dir);
	_cleanup_free_ char *upper = vgpu_asprintf("%s/upper", dir);
	_cleanup_free_ char *work = vgpu_asprintf("%s/work", dir);
	_cleanup_free_ char *empty = vgpu_asprintf("%s/empty", dir);
	_cleanup_free_ char *data = NULL;
	if ((r = vgpu_mkdir_p(rootfs, 0755, err)) < 0 || (r = vgpu_mkdir_p(upper, 0755, err)) < 0 ||
	    (r = vgpu_mkdir_p(work, 0700, err)) < 0)
		goto out;
	if (is_mountpoint(rootfs))
		goto done;
	size_t cap = 64 + strlen(upper) + strlen(work) + strlen(empty);
	for (size_t i = 0; i < rec->n_layers; i++)
		cap += strlen(s->layers_dir) + 80;
	data = vgpu_calloc(1, cap);
	strcpy(data, "lowerdir=");
	if (rec->n_layers == 0) {
		if ((r = vgpu_mkdir_p(empty, 0755, err)) < 0)
			goto out;
		strcat(data, empty);
	}
	for (size_t i = rec->n_layers; i-- > 0;) {
		_cleanup_free_ char *lp = vgpu_image_layer_path(s, rec->layers[i].digest);
		strcat(data, lp);
		if (i > 0)
			strcat(data, ":");
	}
	strcat(data, ",upperdir=");
	strcat(data, upper);
	strcat(data, ",workdir=");
	strcat(data, work);
	int mount_errno = overlay ? E2BIG : ENOTSUP;
	if (overlay && strlen(data) < MOUNT_DATA_MAX) {
		if (mount("overlay", rootfs, "overlay", 0, data) == 0)
			goto done;
		mount_errno = errno;
	}
	if (overlay)
		vgpu_log(VGPU_LOG_INFO, "image %s: overlay mount on %s failed (%s): copying the layers instead", rec->id,
		 rootfs, strerror(mount_errno));
	r = copy_rootfs(s, rec, rootfs, err);
	if (r < 0)
		goto out;
done:
	*rootfs_path = steal_pointer(&rootfs);
	r = 0;
out:
	if (r < 0)
		vgpu_err_prefix(err, "rootfs of image %s in %s", rec->id, dir);
	vgpu_image_record_free(rec);
	return r;
}

int vgpu_image_mount_rootfs(struct vgpu_image_store *s, const char *image_id, const char *dir,
			    char **rootfs_path, struct vgpu_err *err)
{
	return make_rootfs(s, image_id, dir, true, rootfs_path, err);
}

int vgpu_image_copy_rootfs(struct vgpu_image_store *s, const char *image_id, const char *dir, char **rootfs_path,
			   struct vgpu_err *err)
{
	return make_rootfs(s, image_id, dir, false, rootfs_path, err);
}

int vgpu_image_unmount_rootfs(const char *dir, struct vgpu_err *err)
{
	_cleanup_free_ char *rootfs = vgpu_asprintf("%s/rootfs", dir);
	if (umount2(rootfs, UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT) {
		if (errno != EBUSY || umount2(rootfs, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
			return vgpu_err_errno(err, errno, "unmount %s", rootfs);
	}
	const char *parts[] = { "rootfs", "upper", "work", "empty" };
	for (size_t i = 0; i < 4; i++) {
		_cleanup_free_ char *p = vgpu_asprintf("%s/%s", dir, parts[i]);
		int r = vgpu_rm_rf(p, err);
		if (r < 0)
			return r;
	}
	return 0;
}
