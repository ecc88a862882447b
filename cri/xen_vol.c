/* Copy-in mounts of xen containers: the host-side tree walk (see xen_vol.h). */
#include "xen_vol.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++) {
		h ^= b[i];
		h *= FNV_PRIME;
	}
	return h;
}

void vgpu_xen_vol_key(const char *host_path, char key[VGPU_XEN_VOL_KEY_LEN])
{
	snprintf(key, VGPU_XEN_VOL_KEY_LEN, "v%016llx",
		 (unsigned long long)fnv(FNV_OFFSET, host_path, strlen(host_path)));
}

char *vgpu_xen_vol_guest_path(const struct vgpu_xen_vol *v)
{
	return v->is_file ? vgpu_asprintf("%s/%s/%s", VGPU_XEN_VOL_GUEST_ROOT, v->key, AGENT_VOL_FILE_NAME)
			  : vgpu_asprintf("%s/%s", VGPU_XEN_VOL_GUEST_ROOT, v->key);
}

void vgpu_xen_vols_free(struct vgpu_xen_vol *vols, size_t n)
{
	for (size_t i = 0; vols && i < n; i++) {
		free(vols[i].host_path);
		free(vols[i].container_path);
	}
	free(vols);
}

struct walk {
	const char *host_path;
	struct agent_buf *stream; /* NULL: signature only */
	size_t entries, bytes;
	uint64_t sig;
};

static void sig_add(struct walk *w, const char *path, const struct stat *st, const char *link)
{
	uint64_t meta[4] = { st->st_mode, (uint64_t)st->st_size, (uint64_t)st->st_mtim.tv_sec,
			     (uint64_t)st->st_mtim.tv_nsec };
	w->sig = fnv(w->sig, path, strlen(path) + 1);
	w->sig = fnv(w->sig, meta, sizeof(meta));
	if (link)
		w->sig = fnv(w->sig, link, strlen(link) + 1);
}

static int count(struct walk *w, const char *path, size_t bytes, struct vgpu_err *err)
{
	if (++w->entries > AGENT_VOL_MAX_ENTRIES)
		return vgpu_err_set(err, -EINVAL, "host path %s: more than %u entries (the limit of a copy-in mount "
				    "in xen pods)", w->host_path, AGENT_VOL_MAX_ENTRIES);
	if (__builtin_add_overflow(w->bytes, bytes, &w->bytes) || w->bytes > AGENT_VOL_MAX_BYTES)
		return vgpu_err_set(err, -EINVAL, "host path %s: more than %u MiB of file contents at %s (the limit "
				    "of a copy-in mount in xen pods)", w->host_path, AGENT_VOL_MAX_BYTES >> 20, path);
	return 0;
}

/* Read a regular file of st.st_size bytes from fd into the stream as record path. */
static int put_file(struct walk *w, int fd, const char *path, const struct stat *st, struct vgpu_err *err)
{
	size_t size = (size_t)st->st_size;
	_cleanup_free_ uint8_t *data = size ? malloc(size) : NULL;
	if (size && !data)
		return vgpu_err_set(err, -ENOMEM, "host path %s: %s: out of memory", w->host_path, path);
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, data + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vgpu_err_errno(err, errno, "host path %s: read %s", w->host_path, path);
		if (n == 0)
			break; /* shrank meanwhile: what is there */
		got += (size_t)n;
	}
	struct agent_vol_rec rec = { .type = AGENT_VOL_FILE, .mode = st->st_mode & 0777, .path = path,
				     .path_len = strlen(path), .data = data, .data_len = got };
	int r = agent_vol_rec_put(w->stream, &rec);
	if (r < 0)
		return vgpu_err_set(err, r == -ENOMEM ? -ENOMEM : -EINVAL, "host path %s: %s: does not fit a copy-in "
				    "mount", w->host_path, path);
	return 0;
}

static int walk_dir(struct walk *w, int dfd, const char *prefix, unsigned depth, struct vgpu_err *err);

static int walk_entry(struct walk *w, int dfd, const char *name, const char *prefix, unsigned depth,
		      struct vgpu_err *err)
{
	_cleanup_free_ char *path = *prefix ? vgpu_asprintf("%s/%s", prefix, name) : vgpu_strdup(name);
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return vgpu_err_errno(err, errno, "host path %s: %s", w->host_path, path);
	if (strlen(path) > AGENT_VOL_MAX_PATH || depth > AGENT_VOL_MAX_DEPTH)
		return vgpu_err_set(err, -EINVAL, "host path %s: %s: deeper than a copy-in mount allows", w->host_path,
				    path);
	int r;
	if (S_ISLNK(st.st_mode)) {
		char target[AGENT_VOL_MAX_PATH + 1];
		ssize_t n = readlinkat(dfd, name, target, sizeof(target));
		if (n < 0)
			return vgpu_err_errno(err, errno, "host path %s: readlink %s", w->host_path, path);
		if (n == 0 || (size_t)n > AGENT_VOL_MAX_PATH)
			return vgpu_err_set(err, -EINVAL, "host path %s: %s: symlink target too long", w->host_path, path);
		target[n] = '\0';
		sig_add(w, path, &st, target);
		if ((r = count(w, path, 0, err)) < 0)
			return r;
		struct agent_vol_rec rec = { .type = AGENT_VOL_LINK, .mode = 0777, .path = path, .path_len = strlen(path),
					     .data = (const uint8_t *)target, .data_len = (size_t)n };
		if (w->stream && (r = agent_vol_rec_put(w->stream, &rec)) < 0)
			return vgpu_err_set(err, -EINVAL, "host path %s: %s: does not fit a copy-in mount", w->host_path, path);
		return 0;
	}
	if (S_ISDIR(st.st_mode)) {
		sig_add(w, path, &st, NULL);
		if ((r = count(w, path, 0, err)) < 0)
			return r;
		struct agent_vol_rec rec = { .type = AGENT_VOL_DIR, .mode = st.st_mode & 0777, .path = path,
					     .path_len = strlen(path) };
		if (w->stream && (r = agent_vol_rec_put(w->stream, &rec)) < 0)
			return vgpu_err_set(err, -EINVAL, "host path %s: %s: does not fit a copy-in mount", w->host_path, path);
		_cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return vgpu_err_errno(err, errno, "host path %s: open %s", w->host_path, path);
		return walk_dir(w, fd, path, depth + 1, err);
	}
	if (!S_ISREG(st.st_mode))
		return vgpu_err_set(err, -EINVAL, "host path %s: %s is not a regular file, directory or symlink (devices, "
				    "sockets and fifos cannot be copied into a xen pod)", w->host_path, path);
	sig_add(w, path, &st, NULL);
	if ((r = count(w, path, (size_t)st.st_size, err)) < 0 || !w->stream)
		return r;
	_cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat now;
	if (fd < 0)
		return vgpu_err_errno(err, errno, "host path %s: open %s", w->host_path, path);
	if (fstat(fd, &now) < 0 || !S_ISREG(now.st_mode) || now.st_size != st.st_size)
		return vgpu_err_set(err, -EAGAIN, "host path %s: %s changed while being copied", w->host_path, path);
	return put_file(w, fd, path, &st, err);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of dfd in name order (a stable signature, parents before children). */
static int walk_dir(struct walk *w, int dfd, const char *prefix, unsigned depth, struct vgpu_err *err)
{
	int fd = dup(dfd);
	if (fd < 0)
		return vgpu_err_errno(err, errno, "host path %s: dup", w->host_path);
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return vgpu_err_errno(err, errno, "host path %s: read directory %s", w->host_path, *prefix ? prefix : ".");
	}
	char **names = NULL;
	size_t n = 0;
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n >= AGENT_VOL_MAX_ENTRIES) {
			r = vgpu_err_set(err, -EINVAL, "host path %s: more than %u entries (the limit of a copy-in mount "
					 "in xen pods)", w->host_path, AGENT_VOL_MAX_ENTRIES);
			break;
		}
		names = realloc(names, (n + 1) * sizeof(*names));
		if (!names)
			abort(); /* as vgpu_calloc does */
		names[n++] = vgpu_strdup(de->d_name);
	}
	closedir(d);
	if (r == 0)
		qsort(names, n, sizeof(*names), cmp_names);
	for (size_t i = 0; r == 0 && i < n; i++)
		r = walk_entry(w, dfd, names[i], prefix, depth, err);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return r;
}

int vgpu_xen_vol_read(const char *host_path, struct agent_buf *stream, bool *is_file, uint64_t *sig,
		      struct vgpu_err *err)
{
	struct walk w = { .host_path = host_path, .stream = stream, .sig = FNV_OFFSET };
	struct stat st;
	/* the path itself is resolved (kubelet may hand a symlink); nothing under it is */
	if (stat(host_path, &st) < 0)
		return vgpu_err_errno(err, errno, "host path %s", host_path);
	if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
		return vgpu_err_set(err, -EINVAL, "host path %s is not a regular file or directory (devices, sockets and "
				    "fifos cannot be copied into a xen pod)", host_path);
	_cleanup_close_ int fd = open(host_path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat now;
	if (fd < 0)
		return vgpu_err_errno(err, errno, "host path %s", host_path);
	if (fstat(fd, &now) < 0 || (now.st_mode & S_IFMT) != (st.st_mode & S_IFMT))
		return vgpu_err_set(err, -EAGAIN, "host path %s changed while being opened", host_path);
	*is_file = S_ISREG(now.st_mode);
	int r;
	if (*is_file) {
		sig_add(&w, AGENT_VOL_FILE_NAME, &now, NULL);
		if ((r = count(&w, host_path, (size_t)now.st_size, err)) < 0)
			return r;
		if (stream && (r = put_file(&w, fd, AGENT_VOL_FILE_NAME, &now, err)) < 0)
			return r;
	} else if ((r = walk_dir(&w, fd, "", 1, err)) < 0) {
		return r;
	}
	*sig = w.sig ? w.sig : 1; /* 0 means "never sent" */
	return 0;
}

/* ---- a container's mounts ---- */

static int check_mount(const Runtime__V1__Mount *mt, size_t i, struct vgpu_err *err)
{
	if (!mt->container_path || mt->container_path[0] != '/')
		return vgpu_err_set(err, -EINVAL, "mount #%zu: container_path '%s' is not absolute", i,
				    mt->container_path ? mt->container_path : "");
	if (mt->image && mt->image->image && *mt->image->image)
		return vgpu_err_set(err, -EOPNOTSUPP, "mount %s: image volumes are not supported in xen pods",
				    mt->container_path);
	if (!mt->host_path || mt->host_path[0] != '/')
		return vgpu_err_set(err, -EINVAL, "mount %s: host_path '%s' is not absolute", mt->container_path,
				    mt->host_path ? mt->host_path : "");
	if (mt->n_uidmappings || mt->n_gidmappings)
		return vgpu_err_set(err, -EOPNOTSUPP, "mount %s: id-mapped mounts are not supported in xen pods",
				    mt->container_path);
	if (mt->propagation != RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE)
		return vgpu_err_set(err, -EINVAL, "mount %s: propagation %s is not supported in xen pods (mounts are "
				    "copied into the pod's domain: private only)", mt->container_path,
				    mt->propagation == RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL
					    ? "Bidirectional" : "HostToContainer");
	if (mt->recursive_read_only && !mt->readonly)
		return vgpu_err_set(err, -EINVAL, "mount %s: recursive_read_only needs readonly", mt->container_path);
	return 0;
}

int vgpu_xen_vols_plan(const Runtime__V1__ContainerConfig *cfg, struct vgpu_xen_vol **vols_out, size_t *n_out,
		       struct agent_buf **streams, struct vgpu_err *err)
{
	size_t n = cfg->n_mounts;
	struct vgpu_xen_vol *vols = vgpu_calloc(n + 1, sizeof(*vols));
	struct agent_buf *bufs = streams ? vgpu_calloc(n + 1, sizeof(*bufs)) : NULL;
	int r = 0;
	*vols_out = NULL;
	*n_out = 0;
	for (size_t i = 0; r == 0 && i < n; i++) {
		const Runtime__V1__Mount *mt = cfg->mounts[i];
		if ((r = check_mount(mt, i, err)) < 0)
			break;
		struct vgpu_xen_vol *v = &vols[i];
		vgpu_xen_vol_key(mt->host_path, v->key);
		v->host_path = vgpu_strdup(mt->host_path);
		v->container_path = vgpu_strdup(mt->container_path);
		v->readonly = mt->readonly;
		if (bufs) {
			r = vgpu_xen_vol_read(mt->host_path, &bufs[i], &v->is_file, &v->sig, err);
		} else {
			struct stat st; /* only the kind: the content goes at the next refresh */
			v->is_file = stat(mt->host_path, &st) == 0 && S_ISREG(st.st_mode);
		}
		if (r < 0)
			vgpu_err_prefix(err, "mount %s", mt->container_path);
	}
	if (r < 0) {
		for (size_t i = 0; bufs && i < n; i++)
			agent_buf_free(&bufs[i]);
		free(bufs);
		vgpu_xen_vols_free(vols, n);
		return r;
	}
	if (streams)
		*streams = bufs;
	*vols_out = vols;
	*n_out = n;
	return 0;
}

void vgpu_xen_vols_spec(json_object *spec, const struct vgpu_xen_vol *vols, size_t n)
{
	json_object *mounts;
	if (!json_object_object_get_ex(spec, "mounts", &mounts) || !json_object_is_type(mounts, json_type_array)) {
		mounts = json_object_new_array();
		json_object_object_add(spec, "mounts", mounts);
	}
	for (size_t i = 0; i < n; i++) {
		json_object *m = json_object_new_object(), *opts = json_object_new_array();
		json_object_object_add(m, "destination", json_object_new_string(vols[i].container_path));
		json_object_object_add(m, "type", json_object_new_string("bind"));
		_cleanup_free_ char *src = vgpu_xen_vol_guest_path(&vols[i]);
		json_object_object_add(m, "source", json_object_new_string(src));
		json_object_array_add(opts, json_object_new_string("rbind"));
		json_object_array_add(opts, json_object_new_string("rprivate"));
		json_object_array_add(opts, json_object_new_string(vols[i].readonly ? "ro" : "rw"));
		json_object_object_add(m, "options", opts);
		json_object_array_add(mounts, m);
	}
}

uint32_t vgpu_xen_vol_flags(const struct vgpu_xen_vol *v)
{
	return (v->readonly ? AGENT_VOL_REPLACE : 0) | (v->is_file ? AGENT_VOL_ISFILE : 0);
}

bool vgpu_xen_vol_writes_back(const struct vgpu_xen_vol *v)
{
	return !v->readonly && v->is_file;
}

/* Does fd (at offset 0) hold exactly data? */
static bool same_content(int fd, const uint8_t *data, size_t len)
{
	uint8_t buf[8192];
	size_t off = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return false;
		if (n == 0)
			return off == len;
		if ((size_t)n > len - off || memcmp(buf, data + off, (size_t)n) != 0)
			return false;
		off += (size_t)n;
	}
}

/* A new temp file beside the target, named after it (O_EXCL: never an existing one). */
static int make_temp(int dfd, const char *base, mode_t mode, char name[NAME_MAX + 1])
{
	static unsigned counter;
	for (int attempt = 0; attempt < 16; attempt++) {
		unsigned n = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
		snprintf(name, NAME_MAX + 1, ".%.200s.vgpu-wb-%d-%u", base, (int)getpid(), n);
		int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd >= 0 || errno != EEXIST)
			return fd < 0 ? -errno : fd;
	}
	return -EEXIST;
}

int vgpu_xen_vol_write_back(const char *host_path, const void *data, size_t len, bool *written,
			    struct vgpu_err *err)
{
	*written = false;
	if (len > AGENT_VOL_GET_MAX)
		return vgpu_err_set(err, -EFBIG, "host path %s: %zu bytes to write back, more than %u", host_path, len,
				    AGENT_VOL_GET_MAX);
	const char *slash = strrchr(host_path, '/');
	if (host_path[0] != '/' || !slash || !slash[1] || strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
		return vgpu_err_set(err, -EINVAL, "host path %s: not a file path", host_path);
	const char *base = slash + 1;
	_cleanup_free_ char *dir = slash == host_path ? vgpu_strdup("/")
						      : vgpu_asprintf("%.*s", (int)(slash - host_path), host_path);
	_cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return vgpu_err_errno(err, errno, "host path %s: open its directory", host_path);
	_cleanup_close_ int fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 && errno == ELOOP)
		return vgpu_err_set(err, -ELOOP, "host path %s is a symlink: not written back", host_path);
	if (fd < 0)
		return vgpu_err_errno(err, errno, "host path %s", host_path);
	if (fstat(fd, &st) < 0)
		return vgpu_err_errno(err, errno, "host path %s: stat", host_path);
	if (!S_ISREG(st.st_mode))
		return vgpu_err_set(err, -EINVAL, "host path %s is not a regular file: not written back", host_path);
	if ((size_t)st.st_size == len && same_content(fd, data, len))
		return 0;
	char tmp[NAME_MAX + 1];
	int tfd = make_temp(dfd, base, st.st_mode & 0777, tmp);
	if (tfd < 0)
		return vgpu_err_set(err, tfd, "host path %s: temp file: %s", host_path, strerror(-tfd));
	int r = 0;
	if (fchown(tfd, st.st_uid, st.st_gid) < 0 && errno != EPERM)
		r = -errno;
	if (r == 0 && fchmod(tfd, st.st_mode & 0777) < 0) /* setuid/setgid dropped: content from a guest */
		r = -errno;
	if (r == 0)
		r = vgpu_write_all(tfd, data, len);
	if (r == 0 && fsync(tfd) < 0)
		r = -errno;
	if (close(tfd) < 0 && r == 0)
		r = -errno;
	struct stat now;
	if (r == 0 && (fstatat(dfd, base, &now, AT_SYMLINK_NOFOLLOW) < 0 || now.st_dev != st.st_dev ||
		       now.st_ino != st.st_ino))
		r = -ESTALE; /* replaced meanwhile: leave whatever is there now */
	if (r == 0 && renameat(dfd, tmp, dfd, base) < 0)
		r = -errno;
	if (r < 0) {
		(void)unlinkat(dfd, tmp, 0);
		return vgpu_err_set(err, r, "host path %s: write back: %s", host_path, strerror(-r));
	}
	*written = true;
	return 0;
}
