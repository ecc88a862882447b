/* PullImage's work: resolve a reference to a manifest (an index resolved to the node's platform),
 * fetch the config and the layers (several at once, each verified while it streams), unpack each
 * layer once, then record the image. Downloads and unpacks of one digest are shared between
 * concurrent pulls (vgpu_inflight_*); content already stored is not fetched again. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_internal.h"
#include "log.h"
#include "util.h"

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define CONFIG_MAX (16u << 20)
#define LAYERS_MAX 256

#if defined(__x86_64__)
#define NODE_ARCH "amd64"
#elif defined(__aarch64__)
#define NODE_ARCH "arm64"
#else
#define NODE_ARCH "unknown"
#endif

/* Progress of one pull, logged at most once a second. lock guards all fields. */
struct progress {
	pthread_mutex_t lock;
	const char *ref;
	long long start_ns, last_log_ns;
	uint64_t total, done_before; /* bytes of all layers; of completed downloads */
	size_t n;
	char **digests;
	uint64_t *done;
};

static void on_progress(void *ctx, const char *digest, uint64_t done, uint64_t total)
{
	struct progress *p = ctx;
	pthread_mutex_lock(&p->lock);
	uint64_t sum = 0;
	for (size_t i = 0; i < p->n; i++) {
		if (!strcmp(p->digests[i], digest))
			p->done[i] = done;
		sum += p->done[i];
	}
	long long now = vgpu_now_ns();
	if (now - p->last_log_ns >= 1000000000LL) {
		p->last_log_ns = now;
		double secs = (double)(now - p->start_ns) / 1e9;
		vgpu_log(VGPU_LOG_INFO, "pull %s: layer %.19s.. %.1f/%.1f MiB; all layers %.1f/%.1f MiB, %.1f MiB/s",
			 p->ref, digest, done / 1048576.0, total / 1048576.0, sum / 1048576.0, p->total / 1048576.0,
			 secs > 0 ? sum / 1048576.0 / secs : 0.0);
	}
	pthread_mutex_unlock(&p->lock);
}

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

/* Make sure blob digest (size bytes) is in blobs/: download it unless present. */
static int ensure_blob(struct vgpu_image_store *s, struct vgpu_registry *reg, const char *digest, uint64_t size,
		       struct progress *prog, struct vgpu_err *err)
{
	_cleanup_free_ char *path = vgpu_image_blob_path(s, digest);
	struct stat st;
	if (stat(path, &st) == 0 && (uint64_t)st.st_size == size)
		return 0;
	_cleanup_free_ char *key = vgpu_asprintf("blob:%s", digest);
	int r = vgpu_inflight_begin(s, key, err);
	if (r <= 0)
		return r;
	if (stat(path, &st) == 0 && (uint64_t)st.st_size == size) {
		vgpu_inflight_end(s, key, 0, NULL);
		return 0;
	}
	_cleanup_free_ char *tmp = vgpu_image_tmp_path(s, "blob");
	int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = vgpu_err_errno(err, errno, "create %s", tmp);
	} else {
		r = vgpu_registry_get_blob(reg, digest, size, fd, prog ? on_progress : NULL, prog, err);
		if (r == 0 && fsync(fd) < 0)
			r = vgpu_err_errno(err, errno, "fsync %s", tmp);
		close(fd);
		if (r == 0 && rename(tmp, path) < 0)
			r = vgpu_err_errno(err, errno, "rename %s", tmp);
		if (r == 0)
			fsync_dir(s->blobs_dir);
		if (r < 0)
			unlink(tmp);
	}
	vgpu_inflight_end(s, key, r, err);
	return r;
}

/* Make sure layer digest is unpacked in layers/ (its blob must be stored). */
static int ensure_layer(struct vgpu_image_store *s, const char *digest, uint64_t *unpacked, struct vgpu_err *err)
{
	_cleanup_free_ char *path = vgpu_image_layer_path(s, digest);
	struct stat st;
	if (stat(path, &st) == 0)
		return 0;
	_cleanup_free_ char *key = vgpu_asprintf("layer:%s", digest);
	int r = vgpu_inflight_begin(s, key, err);
	if (r <= 0)
		return r;
	if (stat(path, &st) == 0) {
		vgpu_inflight_end(s, key, 0, NULL);
		return 0;
	}
	_cleanup_free_ char *tmp = vgpu_image_tmp_path(s, "layer");
	_cleanup_free_ char *blob = vgpu_image_blob_path(s, digest);
	if (mkdir(tmp, 0755) < 0) {
		r = vgpu_err_errno(err, errno, "mkdir %s", tmp);
	} else {
		long long t0 = vgpu_now_ns();
		r = vgpu_layer_unpack(blob, tmp, unpacked, err);
		if (r < 0)
			vgpu_err_prefix(err, "layer %s", digest);
		long long t1 = vgpu_now_ns();
		if (r == 0) {
			/* the tree's content must be on disk before its name says it is complete */
			int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd < 0 || syncfs(fd) < 0)
				r = vgpu_err_errno(err, errno, "sync %s", tmp);
			if (fd >= 0)
				close(fd);
		}
		if (r == 0 && rename(tmp, path) < 0)
			r = vgpu_err_errno(err, errno, "rename %s", tmp);
		if (r == 0) {
			fsync_dir(s->layers_dir);
			vgpu_log(VGPU_LOG_DEBUG, "layer %s: unpacked %.1f MiB in %lld ms, synced in %lld ms", digest,
				 (unpacked ? *unpacked : 0) / 1048576.0, (t1 - t0) / 1000000, (vgpu_now_ns() - t1) / 1000000);
		}
		if (r < 0) {
			struct vgpu_err e2 = { 0 };
			vgpu_rm_rf(tmp, &e2);
		}
	}
	vgpu_inflight_end(s, key, r, err);
	return r;
}

/* ---- manifests ---- */

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int jdesc(json_object *o, const char **digest, const char **media_type, uint64_t *size)
{
	json_object *v;
	*digest = jstr(o, "digest");
	*media_type = jstr(o, "mediaType");
	if (!vgpu_digest_valid(*digest) || !*media_type || !json_object_object_get_ex(o, "size", &v) ||
	    !json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
		return -EINVAL;
	*size = (uint64_t)json_object_get_int64(v);
	return 0;
}

/* The manifest's media type: its mediaType field, else the Content-Type. */
static const char *manifest_type(json_object *o, const char *content_type)
{
	const char *mt = jstr(o, "mediaType");
	if (mt)
		return mt;
	json_object *v;
	if (json_object_object_get_ex(o, "manifests", &v))
		return MT_OCI_INDEX;
	return content_type;
}

/* Pick the linux/<node arch> manifest of an index. */
static int pick_platform(json_object *index, const char **digest, struct vgpu_err *err)
{
	json_object *ms;
	if (!json_object_object_get_ex(index, "manifests", &ms) || !json_object_is_type(ms, json_type_array))
		return vgpu_err_set(err, -EINVAL, "index without manifests");
	for (size_t i = 0; i < json_object_array_length(ms); i++) {
		json_object *m = json_object_array_get_idx(ms, i), *plat;
		if (!json_object_object_get_ex(m, "platform", &plat))
			continue;
		const char *os = jstr(plat, "os"), *arch = jstr(plat, "architecture");
		if (os && arch && !strcmp(os, "linux") && !strcmp(arch, NODE_ARCH)) {
			*digest = jstr(m, "digest");
			if (!vgpu_digest_valid(*digest))
				return vgpu_err_set(err, -EINVAL, "index entry %zu: invalid digest", i);
			return 0;
		}
	}
	return vgpu_err_set(err, -ENOENT, "no manifest for platform linux/%s in the index", NODE_ARCH);
}

struct manifest {
	json_object *json;
	char digest[72];
	char *body;
	size_t len;
	const char *config_digest;
	uint64_t config_size;
	size_t n_layers;
	struct vgpu_image_layer layers[LAYERS_MAX]; /* strings point into json */
};

static int parse_manifest(struct manifest *m, struct vgpu_err *err)
{
	json_object *cfg, *layers;
	const char *cmt;
	if (!json_object_object_get_ex(m->json, "config", &cfg) ||
	    jdesc(cfg, &m->config_digest, &cmt, &m->config_size) < 0)
		return vgpu_err_set(err, -EINVAL, "manifest %s: missing or malformed config descriptor", m->digest);
	if (strcmp(cmt, MT_OCI_CONFIG) && strcmp(cmt, MT_DOCKER_CONFIG))
		return vgpu_err_set(err, -EINVAL, "manifest %s: unknown config media type '%s'", m->digest, cmt);
	if (m->config_size > CONFIG_MAX)
		return vgpu_err_set(err, -EFBIG, "manifest %s: config of %llu bytes is too large", m->digest,
				    (unsigned long long)m->config_size);
	if (!json_object_object_get_ex(m->json, "layers", &layers) || !json_object_is_type(layers, json_type_array))
		return vgpu_err_set(err, -EINVAL, "manifest %s: no layers", m->digest);
	m->n_layers = json_object_array_length(layers);
	if (m->n_layers > LAYERS_MAX)
		return vgpu_err_set(err, -EINVAL, "manifest %s: %zu layers, at most %d", m->digest, m->n_layers,
				    LAYERS_MAX);
	for (size_t i = 0; i < m->n_layers; i++) {
		const char *d, *mt;
		uint64_t size;
		if (jdesc(json_object_array_get_idx(layers, i), &d, &mt, &size) < 0)
			return vgpu_err_set(err, -EINVAL, "manifest %s: layer %zu: malformed descriptor", m->digest, i);
		if (!vgpu_layer_media_type_known(mt))
			return vgpu_err_set(err, -EINVAL, "manifest %s: layer %s: unknown media type '%s'", m->digest, d,
					    mt);
		m->layers[i].digest = (char *)d;
		m->layers[i].media_type = (char *)mt;
		m->layers[i].size = size;
	}
	return 0;
}

/* m->body as fetched with Content-Type ct: 0 for an image manifest (parsed into m), 1 for an index
 * (index_ok) with *next set to the node's platform's manifest digest (pointing into m->json). */
static int parse_body(struct manifest *m, const char *ct, bool index_ok, const char **next, struct vgpu_err *err)
{
	json_object_put(m->json);
	m->json = json_tokener_parse(m->body);
	if (!m->json || !json_object_is_type(m->json, json_type_object))
		return vgpu_err_set(err, -EINVAL, "manifest %s: not a JSON object", m->digest);
	const char *mt = manifest_type(m->json, ct);
	if (!strcmp(mt, MT_OCI_MANIFEST) || !strcmp(mt, MT_DOCKER_MANIFEST))
		return parse_manifest(m, err);
	if (!index_ok || (strcmp(mt, MT_OCI_INDEX) && strcmp(mt, MT_DOCKER_LIST)))
		return vgpu_err_set(err, -EINVAL, "manifest %s: unsupported media type '%s'", m->digest, mt);
	int r = pick_platform(m->json, next, err);
	if (r < 0) {
		vgpu_err_prefix(err, "index %s", m->digest);
		return r;
	}
	return 1;
}

int vgpu_image_manifest_check(const char *body, const char *content_type, bool index_ok, char next[72],
			      size_t *n_layers, struct vgpu_err *err)
{
	struct manifest *m = vgpu_calloc(1, sizeof(*m));
	m->body = vgpu_strdup(body);
	vgpu_sha256_buf(body, strlen(body), m->digest);
	const char *ref = NULL;
	int r = parse_body(m, content_type, index_ok, &ref, err);
	if (r == 1)
		snprintf(next, 72, "%s", ref);
	if (r == 0 && n_layers)
		*n_layers = m->n_layers;
	json_object_put(m->json);
	free(m->body);
	free(m);
	return r;
}

/* Fetch the manifest reference names; resolve an index to the node's platform. On success
 * m->json is the image manifest and repo_digest the digest the reference resolved to. */
static int resolve(struct vgpu_registry *reg, const struct vgpu_image_ref *ref, struct manifest *m,
		   char repo_digest[72], struct vgpu_err *err)
{
	const char *reference = ref->digest ? ref->digest : ref->tag;
	for (int depth = 0; depth < 2; depth++) {
		_cleanup_free_ char *ct = NULL;
		free(m->body);
		m->body = NULL;
		int r = vgpu_registry_get_manifest(reg, reference, &m->body, &m->len, &ct, m->digest, err);
		if (r < 0)
			return r;
		if (depth == 0)
			memcpy(repo_digest, m->digest, 72);
		r = parse_body(m, ct, depth == 0, &reference, err);
		if (r <= 0)
			return r;
		/* reference points into m->json, which the next round replaces: keep a copy */
		static __thread char ref_copy[72];
		snprintf(ref_copy, sizeof(ref_copy), "%s", reference);
		reference = ref_copy;
	}
	return vgpu_err_set(err, -EINVAL, "nested image index");
}

static int store_bytes(struct vgpu_image_store *s, const char *digest, const char *data, size_t len,
		       struct vgpu_err *err)
{
	_cleanup_free_ char *path = vgpu_image_blob_path(s, digest);
	struct stat st;
	if (stat(path, &st) == 0 && (uint64_t)st.st_size == len)
		return 0;
	return vgpu_write_file_atomic(path, data, len, 0600, err);
}

/* ---- layers, several at once ---- */

struct layer_job {
	struct vgpu_image_store *s;
	struct vgpu_registry *reg;
	struct manifest *m;
	struct progress *prog;
	atomic_size_t next;
	pthread_mutex_t lock;  /* guards the fields below */
	int result;
	struct vgpu_err err;
	uint64_t unpacked;
};

static void *layer_worker(void *arg)
{
	struct layer_job *j = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->m->n_layers)
			break;
		pthread_mutex_lock(&j->lock);
		bool failed = j->result < 0;
		pthread_mutex_unlock(&j->lock);
		if (failed)
			break;
		struct vgpu_err e = { 0 };
		const struct vgpu_image_layer *l = &j->m->layers[i];
		uint64_t bytes = 0;
		int r = ensure_blob(j->s, j->reg, l->digest, l->size, j->prog, &e);
		if (r == 0)
			r = ensure_layer(j->s, l->digest, &bytes, &e);
		pthread_mutex_lock(&j->lock);
		j->unpacked += bytes;
		if (r < 0 && j->result == 0) {
			j->result = r;
			j->err = e;
		}
		pthread_mutex_unlock(&j->lock);
	}
	return NULL;
}

static int fetch_layers(struct vgpu_image_store *s, struct vgpu_registry *reg, struct manifest *m,
			struct progress *prog, uint64_t *unpacked, struct vgpu_err *err)
{
	struct layer_job j = { .s = s, .reg = reg, .m = m, .prog = prog };
	if (pthread_mutex_init(&j.lock, NULL) != 0)
		abort();
	size_t n = (size_t)(s->cfg->max_concurrent_downloads > 0 ? s->cfg->max_concurrent_downloads : 1);
	if (n > m->n_layers)
		n = m->n_layers;
	pthread_t th[64];
	size_t started = 0;
	for (size_t i = 1; i < n && i < 64; i++) {
		if (pthread_create(&th[started], NULL, layer_worker, &j) != 0)
			break;
		started++;
	}
	layer_worker(&j);
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&j.lock);
	*unpacked = j.unpacked;
	if (j.result < 0)
		return vgpu_err_set(err, j.result, "%s", j.err.msg);
	return 0;
}

static struct vgpu_image_record *make_record(const struct vgpu_image_ref *ref, const struct manifest *m,
					     const char *repo_digest, const char *config_json, char **annotations)
{
	struct vgpu_image_record *rec = vgpu_calloc(1, sizeof(*rec));
	rec->id = vgpu_strdup(m->config_digest);
	rec->config_digest = vgpu_strdup(m->config_digest);
	rec->manifest_digest = vgpu_strdup(m->digest);
	_cleanup_free_ char *name = vgpu_image_ref_name(ref);
	rec->repo_tags = vgpu_calloc(2, sizeof(char *));
	if (ref->tag)
		rec->repo_tags[0] = vgpu_asprintf("%s:%s", name, ref->tag);
	rec->repo_digests = vgpu_calloc(2, sizeof(char *));
	rec->repo_digests[0] = vgpu_asprintf("%s@%s", name, repo_digest);
	rec->n_layers = m->n_layers;
	rec->layers = vgpu_calloc(m->n_layers, sizeof(*rec->layers));
	rec->size = m->config_size + m->len;
	for (size_t i = 0; i < m->n_layers; i++) {
		rec->layers[i].digest = vgpu_strdup(m->layers[i].digest);
		rec->layers[i].media_type = vgpu_strdup(m->layers[i].media_type);
		rec->layers[i].size = m->layers[i].size;
		rec->size += m->layers[i].size;
	}
	struct vgpu_image_config c = { 0 };
	rec->user = vgpu_image_config_parse(config_json, &c, NULL) == 0 ? vgpu_strdup(c.user) : vgpu_strdup("");
	vgpu_image_config_free(&c);
	rec->annotations = vgpu_image_strv_dup(annotations);
	rec->pulled_ns = vgpu_wall_ns();
	return rec;
}

/* While a pull runs, RemoveImage's garbage collection must leave its content alone. */
static void pin_all(struct vgpu_image_store *s, const struct manifest *m, bool pin)
{
	void (*fn)(struct vgpu_image_store *, const char *) = pin ? vgpu_image_store_pin : vgpu_image_store_unpin;
	fn(s, m->digest);
	fn(s, m->config_digest);
	for (size_t i = 0; i < m->n_layers; i++)
		fn(s, m->layers[i].digest);
}

int vgpu_image_pull(struct vgpu_image_store *s, const char *reference, const struct vgpu_registry_auth *auth,
		    char **annotations, char **image_id, struct vgpu_err *err)
{
	struct vgpu_image_ref ref;
	int r = vgpu_image_ref_parse(reference, &ref, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *refstr = vgpu_image_ref_string(&ref);
	long long t0 = vgpu_now_ns();
	struct vgpu_registry *reg = NULL;
	struct manifest m = { 0 };
	struct progress prog = { .ref = refstr, .start_ns = t0, .last_log_ns = t0 };
	_cleanup_free_ char *config_json = NULL;
	char repo_digest[72] = "";
	uint64_t unpacked = 0;
	if (pthread_mutex_init(&prog.lock, NULL) != 0)
		abort();
	r = vgpu_registry_open(s->cfg, &ref, auth, &reg, err);
	if (r == 0)
		r = resolve(reg, &ref, &m, repo_digest, err);
	bool pinned = r == 0;
	if (pinned)
		pin_all(s, &m, true);
	if (r == 0)
		r = ensure_blob(s, reg, m.config_digest, m.config_size, NULL, err);
	if (r == 0)
		r = vgpu_image_store_read_blob(s, m.config_digest, CONFIG_MAX, &config_json, NULL, err);
	if (r == 0 && m.n_layers > 0) {
		prog.n = m.n_layers;
		prog.digests = vgpu_calloc(m.n_layers, sizeof(char *));
		prog.done = vgpu_calloc(m.n_layers, sizeof(uint64_t));
		for (size_t i = 0; i < m.n_layers; i++) {
			prog.digests[i] = m.layers[i].digest;
			prog.total += m.layers[i].size;
		}
		r = fetch_layers(s, reg, &m, &prog, &unpacked, err);
	}
	if (r == 0)
		r = store_bytes(s, m.digest, m.body, m.len, err);
	if (r == 0) {
		struct vgpu_image_record *rec = make_record(&ref, &m, repo_digest, config_json, annotations);
		*image_id = vgpu_strdup(rec->id);
		r = vgpu_image_store_commit(s, rec, err);
		if (r < 0) {
			free(*image_id);
			*image_id = NULL;
		}
	}
	if (pinned)
		pin_all(s, &m, false);
	long long ms = (vgpu_now_ns() - t0) / 1000000;
	if (r == 0)
		vgpu_log(VGPU_LOG_INFO, "pull %s: image %s, %zu layers, %.1f MiB unpacked now, %lld ms", refstr,
			 *image_id, m.n_layers, unpacked / 1048576.0, ms);
	else
		vgpu_err_prefix(err, "pull %s", refstr);
	free(prog.digests);
	free(prog.done);
	pthread_mutex_destroy(&prog.lock);
	json_object_put(m.json);
	free(m.body);
	vgpu_registry_close(reg);
	vgpu_image_ref_free(&ref);
	return r;
}
