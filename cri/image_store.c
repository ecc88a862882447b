/* The content-addressed image store under <state_dir>/images:
 *
 *   blobs/sha256/<hex>     verified content (manifests, configs, compressed layers), by digest
 *   layers/<hex>/          one unpacked layer (overlayfs lower dir form), by compressed digest
 *   records/<hex>.json     one image record per config digest (the image id)
 *   tmp/                   downloads and unpacks in progress; emptied at open
 *
 * Content reaches blobs/ and layers/ only complete and verified (written under tmp/, fsync'd or
 * syncfs'd, then renamed into place), and a record is written (atomically) only after all the
 * content it names is in place, so a crash at any point leaves no record pointing to missing
 * content; orphaned complete content is reused by the next pull. Record JSON:
 *   {"schema":1,"id":"sha256:..","repo_tags":[..],"repo_digests":[..],"manifest_digest":"..",
 *    "config_digest":"..","layers":[{"digest":"..","media_type":"..","size":N}],"size":N,
 *    "user":"..","annotations":{"k":"v"},"pulled_ns":N}
 * (annotations: the ImageSpec annotations of the last pull that brought any). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_internal.h"
#include "log.h"
#include "util.h"

#define RECORD_MAX (1u << 20)

static const char *hex_of(const char *digest)
{
	return digest + 7;
}

char *vgpu_image_blob_path(const struct vgpu_image_store *s, const char *digest)
{
	return vgpu_asprintf("%s/%s", s->blobs_dir, hex_of(digest));
}

char *vgpu_image_layer_path(const struct vgpu_image_store *s, const char *digest)
{
	return vgpu_asprintf("%s/%s", s->layers_dir, hex_of(digest));
}

char *vgpu_image_tmp_path(struct vgpu_image_store *s, const char *what)
{
	pthread_mutex_lock(&s->lock);
	uint64_t n = ++s->tmp_counter;
	pthread_mutex_unlock(&s->lock);
	return vgpu_asprintf("%s/%s-%d-%llu", s->tmp_dir, what, (int)getpid(), (unsigned long long)n);
}

char *vgpu_image_erofs_path(struct vgpu_image_store *s, const char *image_id)
{
	if (!vgpu_digest_valid(image_id))
		return NULL;
	return vgpu_asprintf("%s/%s.erofs", s->erofs_dir, hex_of(image_id));
}

char *vgpu_image_erofs_tmp(struct vgpu_image_store *s)
{
	return vgpu_image_tmp_path(s, "erofs");
}

/* Unlinks erofs disk images whose image has no record (removed, or a build finished after its
 * image was removed). Called with s->lock held, or before the store is shared. */
static size_t erofs_collect_locked(struct vgpu_image_store *s)
{
	size_t n = 0;
	DIR *d = opendir(s->erofs_dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.')
			continue;
		bool used = false;
		for (size_t i = 0; i < s->n_records && !used; i++)
			used = len == 64 + 6 && !strncmp(de->d_name, hex_of(s->records[i]->id), 64) &&
			       !strcmp(de->d_name + 64, ".erofs");
		if (used)
			continue;
		_cleanup_free_ char *p = vgpu_asprintf("%s/%s", s->erofs_dir, de->d_name);
		if (unlink(p) == 0)
			n++;
	}
	if (d)
		closedir(d);
	return n;
}

/* ---- records on disk ---- */

static int record_write(struct vgpu_image_store *s, const struct vgpu_image_record *rec, struct vgpu_err *err)
{
	_cleanup_free_ char *json = vgpu_image_record_to_json(rec);
	_cleanup_free_ char *path = vgpu_asprintf("%s/%s.json", s->records_dir, hex_of(rec->id));
	return vgpu_write_file_atomic(path, json, strlen(json), 0600, err);
}

static bool path_exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

/* A record is usable only if everything it names is present. */
static bool record_complete(const struct vgpu_image_store *s, const struct vgpu_image_record *rec)
{
	_cleanup_free_ char *cfg = vgpu_image_blob_path(s, rec->config_digest);
	if (!path_exists(cfg))
		return false;
	for (size_t i = 0; i < rec->n_layers; i++) {
		_cleanup_free_ char *l = vgpu_image_layer_path(s, rec->layers[i].digest);
		if (!path_exists(l))
			return false;
	}
	return true;
}

static int load_records(struct vgpu_image_store *s, struct vgpu_err *err)
{
	DIR *d = opendir(s->records_dir);
	if (!d)
		return vgpu_err_errno(err, errno, "open %s", s->records_dir);
	struct dirent *de;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0)
			continue;
		_cleanup_free_ char *path = vgpu_asprintf("%s/%s", s->records_dir, de->d_name);
		if (strstr(de->d_name, ".tmp.")) {
			unlink(path);
			continue;
		}
		_cleanup_free_ char *text = NULL;
		struct vgpu_err e = { 0 };
		struct vgpu_image_record *rec = NULL;
		if (vgpu_read_file(path, RECORD_MAX, &text, NULL, &e) < 0 ||
		    vgpu_image_record_from_json(text, &rec, &e) < 0) {
			vgpu_log(VGPU_LOG_WARN, "image store: ignoring record %s: %s", path, e.msg);
			continue;
		}
		if (!record_complete(s, rec)) {
			vgpu_log(VGPU_LOG_WARN, "image %s: content missing, record ignored", rec->id);
			vgpu_image_record_free(rec);
			continue;
		}
		struct vgpu_image_record **nr = realloc(s->records, (s->n_records + 1) * sizeof(*nr));
		if (!nr)
			abort();
		s->records = nr;
		s->records[s->n_records++] = rec;
	}
	closedir(d);
	return 0;
}

/* Manifests and configs are written into blobs/ with vgpu_write_file_atomic (<hex>.tmp.XXXXXX, then
 * renamed): a crash in between leaves the temp file, which no record names and garbage collection
 * (valid digests only) never sees. */
static void remove_temp_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (!strstr(de->d_name, ".tmp."))
			continue;
		_cleanup_free_ char *path = vgpu_asprintf("%s/%s", dir, de->d_name);
		if (unlink(path) < 0)
			vgpu_log(VGPU_LOG_WARN, "image store: remove %s: %s", path, strerror(errno));
	}
	if (d)
		closedir(d);
}

int vgpu_image_store_open(const struct vgpu_config *cfg, struct vgpu_image_store **out, struct vgpu_err *err)
{
	struct vgpu_image_store *s = vgpu_calloc(1, sizeof(*s));
	s->cfg = cfg;
	s->root = vgpu_asprintf("%s/images", cfg->state_dir);
	s->blobs_dir = vgpu_asprintf("%s/blobs/sha256", s->root);
	s->layers_dir = vgpu_asprintf("%s/layers", s->root);
	s->records_dir = vgpu_asprintf("%s/records", s->root);
	s->tmp_dir = vgpu_asprintf("%s/tmp", s->root);
	s->erofs_dir = vgpu_asprintf("%s/erofs", s->root);
	if (pthread_mutex_init(&s->lock, NULL) != 0 || pthread_cond_init(&s->cond, NULL) != 0)
		abort();
	int r = 0;
	struct vgpu_err e = { 0 };
	if (vgpu_rm_rf(s->tmp_dir, &e) < 0)
		vgpu_log(VGPU_LOG_WARN, "image store: %s", e.msg);
	const char *dirs[] = { s->blobs_dir, s->layers_dir, s->records_dir, s->tmp_dir, s->erofs_dir };
	for (size_t i = 0; i < 5 && r == 0; i++)
		r = vgpu_mkdir_p(dirs[i], 0700, err);
	if (r == 0)
		remove_temp_files(s->blobs_dir);
	if (r == 0)
		r = load_records(s, err);
	if (r == 0)
		(void)erofs_collect_locked(s);
	if (r < 0) {
		vgpu_err_prefix(err, "image store %s", s->root);
		vgpu_image_store_close(s);
		return r;
	}
	vgpu_log(VGPU_LOG_INFO, "image store %s: %zu images", s->root, s->n_records);
	*out = s;
	return 0;
}

void vgpu_image_store_close(struct vgpu_image_store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_records; i++)
		vgpu_image_record_free(s->records[i]);
	free(s->records);
	vgpu_strv_free(s->pins);
	while (s->inflight) {
		struct vgpu_inflight *n = s->inflight->next;
		free(s->inflight->key);
		free(s->inflight);
		s->inflight = n;
	}
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s->root);
	free(s->blobs_dir);
	free(s->layers_dir);
	free(s->records_dir);
	free(s->tmp_dir);
	free(s->erofs_dir);
	free(s);
}

/* ---- in-flight content ---- */

int vgpu_inflight_begin(struct vgpu_image_store *s, const char *key, struct vgpu_err *err)
{
	pthread_mutex_lock(&s->lock);
	struct vgpu_inflight *f;
	for (f = s->inflight; f; f = f->next)
		if (!strcmp(f->key, key))
			break;
	if (!f) {
		f = vgpu_calloc(1, sizeof(*f));
		f->key = vgpu_strdup(key);
		f->next = s->inflight;
		s->inflight = f;
		pthread_mutex_unlock(&s->lock);
		return 1;
	}
	f->waiters++;
	while (!f->done)
		pthread_cond_wait(&s->cond, &s->lock);
	int r = f->result;
	if (r < 0)
		vgpu_err_set(err, r, "%s", f->msg);
	if (--f->waiters == 0) {
		for (struct vgpu_inflight **pp = &s->inflight; *pp; pp = &(*pp)->next) {
			if (*pp == f) {
				*pp = f->next;
				break;
			}
		}
		free(f->key);
		free(f);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

void vgpu_inflight_end(struct vgpu_image_store *s, const char *key, int result, const struct vgpu_err *err)
{
	pthread_mutex_lock(&s->lock);
	for (struct vgpu_inflight **pp = &s->inflight; *pp; pp = &(*pp)->next) {
		struct vgpu_inflight *f = *pp;
		if (f->done || strcmp(f->key, key) != 0)
			continue;
		if (f->waiters == 0) {
			*pp = f->next;
			free(f->key);
			free(f);
		} else {
			/* waiters free it; unlink now so that a later pull starts afresh */
			*pp = f->next;
			f->next = NULL;
			f->done = true;
			f->result = result;
			snprintf(f->msg, sizeof(f->msg), "%s", err && result < 0 ? err->msg : "");
			pthread_cond_broadcast(&s->cond);
		}
		break;
	}
	pthread_mutex_unlock(&s->lock);
}

/* ---- queries and updates ---- */

/* A short id as crictl shows it ("6f63358fde3d", at least 12 hex digits, "sha256:" optional)
 * naming exactly one image; NULL otherwise. A reference with that name wins over it. */
static struct vgpu_image_record *find_id_prefix(struct vgpu_image_store *s, const char *name)
{
	const char *hex = strncmp(name, "sha256:", 7) ? name : name + 7;
	size_t n = strlen(hex);
	if (n < 12 || n > 64 || strspn(hex, "0123456789abcdef") != n)
		return NULL;
	struct vgpu_image_record *found = NULL;
	for (size_t i = 0; i < s->n_records; i++) {
		if (strncmp(s->records[i]->id + 7, hex, n) != 0)
			continue;
		if (found)
			return NULL; /* ambiguous */
		found = s->records[i];
	}
	return found;
}

struct vgpu_image_record *vgpu_image_store_find_locked(struct vgpu_image_store *s, const char *name,
						       struct vgpu_err *err)
{
	if (vgpu_image_id_like(name)) {
		_cleanup_free_ char *id = strncmp(name, "sha256:", 7) ? vgpu_asprintf("sha256:%s", name)
								       : vgpu_strdup(name);
		for (size_t i = 0; i < s->n_records; i++)
			if (!strcmp(s->records[i]->id, id))
				return s->records[i];
		return NULL;
	}
	struct vgpu_image_record *by_prefix = find_id_prefix(s, name);
	struct vgpu_image_ref ref;
	if (vgpu_image_ref_parse(name, &ref, by_prefix ? NULL : err) < 0)
		return by_prefix;
	_cleanup_free_ char *n = vgpu_image_ref_name(&ref);
	_cleanup_free_ char *key = ref.digest ? vgpu_asprintf("%s@%s", n, ref.digest) : vgpu_image_ref_string(&ref);
	bool by_digest = ref.digest != NULL;
	vgpu_image_ref_free(&ref);
	for (size_t i = 0; i < s->n_records; i++) {
		char **v = by_digest ? s->records[i]->repo_digests : s->records[i]->repo_tags;
		if (vgpu_image_strv_contains(v, key))
			return s->records[i];
	}
	return by_prefix;
}

int vgpu_image_store_get(struct vgpu_image_store *s, const char *name, struct vgpu_image_record **out,
			 struct vgpu_err *err)
{
	struct vgpu_err e = { 0 };
	pthread_mutex_lock(&s->lock);
	struct vgpu_image_record *rec = vgpu_image_store_find_locked(s, name, &e);
	if (rec)
		*out = vgpu_image_record_dup(rec);
	pthread_mutex_unlock(&s->lock);
	if (rec)
		return 0;
	if (e.code < 0)
		return vgpu_err_set(err, e.code, "%s", e.msg);
	return vgpu_err_set(err, -ENOENT, "image %s not found", name);
}

int vgpu_image_store_list(struct vgpu_image_store *s, struct vgpu_image_record ***out, size_t *n)
{
	pthread_mutex_lock(&s->lock);
	struct vgpu_image_record **v = vgpu_calloc(s->n_records + 1, sizeof(*v));
	for (size_t i = 0; i < s->n_records; i++)
		v[i] = vgpu_image_record_dup(s->records[i]);
	*n = s->n_records;
	pthread_mutex_unlock(&s->lock);
	*out = v;
	return 0;
}

int vgpu_image_store_commit(struct vgpu_image_store *s, struct vgpu_image_record *rec, struct vgpu_err *err)
{
	int r = 0;
	pthread_mutex_lock(&s->lock);
	struct vgpu_image_record *cur = NULL;
	if (!record_complete(s, rec)) {
		/* a RemoveImage of another image sharing content ran between fetch and commit */
		pthread_mutex_unlock(&s->lock);
		r = vgpu_err_set(err, -EAGAIN, "image %s: content removed while pulling; pull again", rec->id);
		vgpu_image_record_free(rec);
		return r;
	}
	for (size_t i = 0; i < s->n_records; i++) {
		struct vgpu_image_record *o = s->records[i];
		if (!strcmp(o->id, rec->id)) {
			cur = o;
			continue;
		}
		/* a tag names one image: moving it here takes it from the other one */
		bool changed = false;
		for (size_t t = 0; rec->repo_tags[t]; t++)
			changed |= vgpu_image_strv_remove(o->repo_tags, rec->repo_tags[t]);
		if (changed && (r = record_write(s, o, err)) < 0) {
			vgpu_image_record_free(rec);
			goto out;
		}
	}
	if (cur) {
		bool changed = false;
		for (size_t t = 0; rec->repo_tags[t]; t++) {
			changed |= !vgpu_image_strv_contains(cur->repo_tags, rec->repo_tags[t]);
			vgpu_image_strv_add(&cur->repo_tags, rec->repo_tags[t]);
		}
		for (size_t t = 0; rec->repo_digests[t]; t++) {
			changed |= !vgpu_image_strv_contains(cur->repo_digests, rec->repo_digests[t]);
			vgpu_image_strv_add(&cur->repo_digests, rec->repo_digests[t]);
		}
		if (rec->annotations && rec->annotations[0]) {
			vgpu_strv_free(cur->annotations);
			cur->annotations = steal_pointer(&rec->annotations);
			changed = true;
		}
		if (changed)
			r = record_write(s, cur, err);
		vgpu_image_record_free(rec);
	} else {
		r = record_write(s, rec, err);
		if (r == 0) {
			struct vgpu_image_record **nr = realloc(s->records, (s->n_records + 1) * sizeof(*nr));
			if (!nr)
				abort();
			s->records = nr;
			s->records[s->n_records++] = rec;
		} else {
			vgpu_image_record_free(rec);
		}
	}
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Layer directories that a mounted overlay uses (lowerdir=...), from /proc/self/mountinfo. */
static bool layer_mounted(const char *mountinfo, const char *layer_path)
{
	if (!mountinfo)
		return false;
	size_t n = strlen(layer_path);
	for (const char *p = strstr(mountinfo, layer_path); p; p = strstr(p + 1, layer_path)) {
		char next = p[n];
		char prev = p > mountinfo ? p[-1] : ' ';
		if ((prev == '=' || prev == ':') && (next == ':' || next == ',' || next == ' ' || next == '\n'))
			return true;
	}
	return false;
}

static bool digest_used(struct vgpu_image_store *s, const char *digest)
{
	for (size_t i = 0; i < s->n_records; i++) {
		struct vgpu_image_record *o = s->records[i];
		if (!strcmp(o->config_digest, digest) || !strcmp(o->manifest_digest, digest))
			return true;
		for (size_t l = 0; l < o->n_layers; l++)
			if (!strcmp(o->layers[l].digest, digest))
				return true;
	}
	for (struct vgpu_inflight *f = s->inflight; f; f = f->next)
		if (strstr(f->key, digest))
			return true;
	for (size_t i = 0; s->pins && s->pins[i]; i++)
		if (!strcmp(s->pins[i], digest))
			return true;
	return false;
}

void vgpu_image_store_pin(struct vgpu_image_store *s, const char *digest)
{
	pthread_mutex_lock(&s->lock);
	size_t n = vgpu_image_strv_len(s->pins);
	char **np = realloc(s->pins, (n + 2) * sizeof(char *));
	if (!np)
		abort();
	np[n] = vgpu_strdup(digest);
	np[n + 1] = NULL;
	s->pins = np;
	pthread_mutex_unlock(&s->lock);
}

void vgpu_image_store_unpin(struct vgpu_image_store *s, const char *digest)
{
	pthread_mutex_lock(&s->lock);
	vgpu_image_strv_remove(s->pins, digest); /* one of possibly several pins */
	pthread_mutex_unlock(&s->lock);
}

/* Delete all content that no record uses, no pull has pinned or in flight, and (layers) no
 * mounted overlay uses: blob files now, layer trees moved to tmp/ (returned in *trash, for the
 * caller to delete after unlocking). This also collects what killed pulls left and layers kept
 * earlier because a container had them mounted. Returns how many layer trees are in *trash. */
static size_t collect_garbage_locked(struct vgpu_image_store *s, const char *mountinfo, char ***trash)
{
	size_t n_trash = 0, cap = 0;
	*trash = vgpu_calloc(1, sizeof(char *));
	const char *dirs[2] = { s->blobs_dir, s->layers_dir };
	for (int k = 0; k < 2; k++) {
		DIR *d = opendir(dirs[k]);
		if (!d)
			continue;
		struct dirent *de;
		while ((de = readdir(d))) {
			_cleanup_free_ char *digest = vgpu_asprintf("sha256:%s", de->d_name);
			if (!vgpu_digest_valid(digest) || digest_used(s, digest))
				continue;
			_cleanup_free_ char *p = vgpu_asprintf("%s/%s", dirs[k], de->d_name);
			if (k == 0) {
				unlink(p);
				continue;
			}
			if (layer_mounted(mountinfo, p))
				continue;
			char *t = vgpu_asprintf("%s/trash-%d-%llu", s->tmp_dir, (int)getpid(),
						(unsigned long long)++s->tmp_counter);
			if (rename(p, t) < 0) {
				free(t);
				continue;
			}
			if (n_trash + 1 >= cap) {
				cap = cap ? cap * 2 : 8;
				char **nt = realloc(*trash, (cap + 1) * sizeof(char *));
				if (!nt)
					abort();
				*trash = nt;
			}
			(*trash)[n_trash++] = t;
			(*trash)[n_trash] = NULL;
		}
		closedir(d);
	}
	return n_trash;
}

int vgpu_image_store_remove(struct vgpu_image_store *s, const char *name, struct vgpu_err *err)
{
	struct vgpu_err e = { 0 };
	_cleanup_free_ char *mountinfo = NULL;
	if (vgpu_read_file("/proc/self/mountinfo", 16u << 20, &mountinfo, NULL, &e) < 0)
		vgpu_log(VGPU_LOG_WARN, "image remove: %s", e.msg);
	pthread_mutex_lock(&s->lock);
	struct vgpu_image_record *rec = vgpu_image_store_find_locked(s, name, &e);
	if (!rec) {
		pthread_mutex_unlock(&s->lock);
		if (e.code == -EINVAL)
			return vgpu_err_set(err, e.code, "%s", e.msg);
		return 0; /* already gone: RemoveImage is idempotent */
	}
	_cleanup_free_ char *path = vgpu_asprintf("%s/%s.json", s->records_dir, hex_of(rec->id));
	if (unlink(path) < 0 && errno != ENOENT) {
		int r = vgpu_err_errno(err, errno, "remove image %s", rec->id);
		pthread_mutex_unlock(&s->lock);
		return r;
	}
	_cleanup_close_ int dfd = open(s->records_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		fsync(dfd);
	for (size_t i = 0; i < s->n_records; i++) {
		if (s->records[i] == rec) {
			memmove(&s->records[i], &s->records[i + 1], (s->n_records - i - 1) * sizeof(rec));
			s->n_records--;
			break;
		}
	}
	char **trash = NULL;
	size_t n_trash = collect_garbage_locked(s, mountinfo, &trash);
	(void)erofs_collect_locked(s);
	pthread_mutex_unlock(&s->lock);
	vgpu_log(VGPU_LOG_INFO, "image %s: removed (%zu layers deleted)", rec->id, n_trash);
	for (size_t i = 0; i < n_trash; i++)
		if (vgpu_rm_rf(trash[i], &e) < 0)
			vgpu_log(VGPU_LOG_WARN, "image %s: %s", rec->id, e.msg);
	vgpu_strv_free(trash);
	vgpu_image_record_free(rec);
	return 0;
}

static __thread uint64_t usage_bytes, usage_inodes;
static int usage_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	usage_bytes += (uint64_t)st->st_blocks * 512;
	usage_inodes++;
	return 0;
}

int vgpu_image_store_usage(struct vgpu_image_store *s, uint64_t *bytes, uint64_t *inodes, struct vgpu_err *err)
{
	usage_bytes = usage_inodes = 0;
	if (nftw(s->root, usage_cb, 32, FTW_PHYS | FTW_MOUNT) < 0)
		return vgpu_err_errno(err, errno, "walk %s", s->root);
	*bytes = usage_bytes;
	*inodes = usage_inodes;
	return 0;
}

int vgpu_image_store_read_blob(struct vgpu_image_store *s, const char *digest, size_t max, char **out,
			       size_t *len, struct vgpu_err *err)
{
	if (!vgpu_digest_valid(digest))
		return vgpu_err_set(err, -EINVAL, "invalid digest %s", digest);
	_cleanup_free_ char *path = vgpu_image_blob_path(s, digest);
	return vgpu_read_file(path, max, out, len, err);
}
