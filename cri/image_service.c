/* CRI ImageService: the RPC handlers. They translate between protobuf messages and the image
 * store (image_store.c, image_pull.c); all the work and all the locking is there. */
#include <errno.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "cri-api.pb-c.h"
#include "daemon.h"
#include "image_internal.h"
#include "image_service.h"
#include "log.h"
#include "util.h"

#define CONFIG_MAX (16u << 20)

static int store_of(struct vgpu_daemon *d, struct vgpu_image_store **s, struct vgpu_err *err)
{
	*s = d->images;
	if (!*s)
		return vgpu_err_set(err, -EAGAIN, "image store is not open");
	return 0;
}

static const char *spec_image(const Runtime__V1__ImageSpec *spec)
{
	return spec && spec->image ? spec->image : "";
}

static char **strv_copy(char **v, size_t *n)
{
	size_t k = 0;
	while (v && v[k])
		k++;
	*n = k;
	if (k == 0)
		return NULL;
	char **r = vgpu_calloc(k, sizeof(char *));
	for (size_t i = 0; i < k; i++)
		r[i] = vgpu_strdup(v[i]);
	return r;
}

/* "1000", "1000:1000" -> uid; "name", "name:group" -> username. */
static void set_user(Runtime__V1__Image *img, const char *user)
{
	_cleanup_free_ char *u = vgpu_strdup(user ? user : "");
	char *colon = strchr(u, ':');
	if (colon)
		*colon = '\0';
	if (!*u)
		return;
	char *end = NULL;
	errno = 0;
	long long v = strtoll(u, &end, 10);
	if (errno == 0 && end && !*end && v >= 0) {
		img->uid = vgpu_calloc(1, sizeof(*img->uid));
		runtime__v1__int64_value__init(img->uid);
		img->uid->value = v;
	} else {
		free(img->username);
		img->username = vgpu_strdup(u);
	}
}

static Runtime__V1__Image *image_msg(const struct vgpu_image_record *rec)
{
	Runtime__V1__Image *img = vgpu_calloc(1, sizeof(*img));
	runtime__v1__image__init(img);
	img->id = vgpu_strdup(rec->id);
	img->repo_tags = strv_copy(rec->repo_tags, &img->n_repo_tags);
	img->repo_digests = strv_copy(rec->repo_digests, &img->n_repo_digests);
	img->size = rec->size;
	img->username = vgpu_strdup("");
	set_user(img, rec->user);
	img->spec = vgpu_calloc(1, sizeof(*img->spec));
	runtime__v1__image_spec__init(img->spec);
	img->spec->image = vgpu_strdup(rec->id);
	size_t n_ann = 0;
	while (rec->annotations && rec->annotations[n_ann] && rec->annotations[n_ann + 1])
		n_ann += 2;
	if (n_ann) {
		img->spec->annotations = vgpu_calloc(n_ann / 2, sizeof(*img->spec->annotations));
		for (size_t i = 0; i < n_ann; i += 2) {
			Runtime__V1__ImageSpec__AnnotationsEntry *e = vgpu_calloc(1, sizeof(*e));
			runtime__v1__image_spec__annotations_entry__init(e);
			e->key = vgpu_strdup(rec->annotations[i]);
			e->value = vgpu_strdup(rec->annotations[i + 1]);
			img->spec->annotations[img->spec->n_annotations++] = e;
		}
	}
	img->spec->user_specified_image = vgpu_strdup("");
	img->spec->runtime_handler = vgpu_strdup("");
	img->spec->image_ref = vgpu_strdup("");
	return img;
}

/* AuthConfig.auth is base64("user:password"), as in docker's config.json. */
static int decode_auth(const char *auth, char **user, char **pass, struct vgpu_err *err)
{
	size_t n = strlen(auth);
	_cleanup_free_ unsigned char *out = vgpu_calloc(1, n + 4);
	int len = EVP_DecodeBlock(out, (const unsigned char *)auth, (int)n);
	if (len < 0)
		return vgpu_err_set(err, -EINVAL, "auth: not base64");
	while (len > 0 && out[len - 1] == '\0' && n > 0 && auth[n - 1] == '=') /* padding */
		len--;
	out[len] = '\0';
	char *colon = strchr((char *)out, ':');
	if (!colon)
		return vgpu_err_set(err, -EINVAL, "auth: want base64 of user:password");
	*colon = '\0';
	*user = vgpu_strdup((char *)out);
	*pass = vgpu_strdup(colon + 1);
	explicit_bzero(out, n);
	return 0;
}

int vgpu_rpc_pull_image(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			struct vgpu_err *err)
{
	const Runtime__V1__PullImageRequest *r = (const Runtime__V1__PullImageRequest *)req;
	struct vgpu_image_store *s;
	int rc = store_of(d, &s, err);
	if (rc < 0)
		return rc;
	const char *image = spec_image(r->image);
	if (!*image)
		return vgpu_err_set(err, -EINVAL, "PullImage: image is empty");
	struct vgpu_registry_auth auth = { 0 };
	_cleanup_free_ char *user = NULL, *pass = NULL;
	if (r->auth) {
		auth.username = r->auth->username;
		auth.password = r->auth->password;
		auth.identity_token = r->auth->identity_token;
		auth.registry_token = r->auth->registry_token;
		if ((!auth.username || !*auth.username) && r->auth->auth && *r->auth->auth) {
			rc = decode_auth(r->auth->auth, &user, &pass, err);
			if (rc < 0)
				return rc;
			auth.username = user;
			auth.password = pass;
		}
	}
	_cleanup_free_ char *id = NULL;
	_cleanup_strv_ char **annotations = vgpu_calloc(2 * r->image->n_annotations + 1, sizeof(char *));
	for (size_t i = 0; i < r->image->n_annotations; i++) {
		annotations[2 * i] = vgpu_strdup(r->image->annotations[i]->key);
		annotations[2 * i + 1] = vgpu_strdup(r->image->annotations[i]->value);
	}
	rc = vgpu_image_pull(s, image, &auth, annotations, &id, err);
	if (pass)
		explicit_bzero(pass, strlen(pass));
	if (rc < 0)
		return rc;
	Runtime__V1__PullImageResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__pull_image_response__init(out);
	out->image_ref = steal_pointer(&id);
	*resp = &out->base;
	return 0;
}

/* The verbose info of ImageStatus: {"id","manifestDigest","layers":[..],"imageSpec":<config>} */
static char *verbose_info(struct vgpu_image_store *s, const struct vgpu_image_record *rec)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "id", json_object_new_string(rec->id));
	json_object_object_add(o, "manifestDigest", json_object_new_string(rec->manifest_digest));
	json_object *layers = json_object_new_array();
	for (size_t i = 0; i < rec->n_layers; i++) {
		json_object *l = json_object_new_object();
		json_object_object_add(l, "digest", json_object_new_string(rec->layers[i].digest));
		json_object_object_add(l, "mediaType", json_object_new_string(rec->layers[i].media_type));
		json_object_object_add(l, "size", json_object_new_int64((int64_t)rec->layers[i].size));
		json_object_array_add(layers, l);
	}
	json_object_object_add(o, "layers", layers);
	json_object_object_add(o, "pulledAt", json_object_new_int64(rec->pulled_ns));
	_cleanup_free_ char *cfg = NULL;
	struct vgpu_err e = { 0 };
	if (vgpu_image_store_read_blob(s, rec->config_digest, CONFIG_MAX, &cfg, NULL, &e) == 0) {
		json_object *c = json_tokener_parse(cfg);
		if (c)
			json_object_object_add(o, "imageSpec", c);
	}
	char *r = vgpu_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return r;
}

int vgpu_rpc_image_status(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			  struct vgpu_err *err)
{
	const Runtime__V1__ImageStatusRequest *r = (const Runtime__V1__ImageStatusRequest *)req;
	struct vgpu_image_store *s;
	int rc = store_of(d, &s, err);
	if (rc < 0)
		return rc;
	const char *image = spec_image(r->image);
	if (!*image)
		return vgpu_err_set(err, -EINVAL, "ImageStatus: image is empty");
	struct vgpu_image_record *rec = NULL;
	rc = vgpu_image_store_get(s, image, &rec, err);
	if (rc < 0 && rc != -ENOENT)
		return rc;
	Runtime__V1__ImageStatusResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__image_status_response__init(out);
	if (rec) {
		/* an image that is not there is an empty answer, not an error (kubelet relies on it) */
		out->image = image_msg(rec);
		if (r->verbose) {
			Runtime__V1__ImageStatusResponse__InfoEntry *e = vgpu_calloc(1, sizeof(*e));
			runtime__v1__image_status_response__info_entry__init(e);
			e->key = vgpu_strdup("info");
			e->value = verbose_info(s, rec);
			out->info = vgpu_calloc(1, sizeof(*out->info));
			out->info[0] = e;
			out->n_info = 1;
		}
		vgpu_image_record_free(rec);
	}
	*resp = &out->base;
	return 0;
}

int vgpu_rpc_list_images(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			 struct vgpu_err *err)
{
	const Runtime__V1__ListImagesRequest *r = (const Runtime__V1__ListImagesRequest *)req;
	struct vgpu_image_store *s;
	int rc = store_of(d, &s, err);
	if (rc < 0)
		return rc;
	const char *filter = r->filter ? spec_image(r->filter->image) : "";
	struct vgpu_image_record **recs = NULL;
	size_t n = 0;
	if (*filter) {
		struct vgpu_image_record *rec = NULL;
		rc = vgpu_image_store_get(s, filter, &rec, NULL);
		recs = vgpu_calloc(2, sizeof(*recs));
		if (rc == 0)
			recs[n++] = rec;
	} else {
		vgpu_image_store_list(s, &recs, &n);
	}
	Runtime__V1__ListImagesResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__list_images_response__init(out);
	if (n > 0) {
		out->images = vgpu_calloc(n, sizeof(*out->images));
		for (size_t i = 0; i < n; i++)
			out->images[i] = image_msg(recs[i]);
		out->n_images = n;
	}
	for (size_t i = 0; i < n; i++)
		vgpu_image_record_free(recs[i]);
	free(recs);
	*resp = &out->base;
	return 0;
}

int vgpu_rpc_remove_image(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			  struct vgpu_err *err)
{
	const Runtime__V1__RemoveImageRequest *r = (const Runtime__V1__RemoveImageRequest *)req;
	struct vgpu_image_store *s;
	int rc = store_of(d, &s, err);
	if (rc < 0)
		return rc;
	const char *image = spec_image(r->image);
	if (!*image)
		return vgpu_err_set(err, -EINVAL, "RemoveImage: image is empty");
	rc = vgpu_image_store_remove(s, image, err);
	if (rc < 0)
		return rc;
	Runtime__V1__RemoveImageResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__remove_image_response__init(out);
	*resp = &out->base;
	return 0;
}

static Runtime__V1__UInt64Value *u64(uint64_t v)
{
	Runtime__V1__UInt64Value *m = vgpu_calloc(1, sizeof(*m));
	runtime__v1__uint64_value__init(m);
	m->value = v;
	return m;
}

int vgpu_rpc_image_fs_info(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			   struct vgpu_err *err)
{
	struct vgpu_image_store *s;
	int rc = store_of(d, &s, err);
	if (rc < 0)
		return rc;
	uint64_t bytes = 0, inodes = 0;
	rc = vgpu_image_store_usage(s, &bytes, &inodes, err);
	if (rc < 0)
		return rc;
	Runtime__V1__FilesystemUsage *fu = vgpu_calloc(1, sizeof(*fu));
	runtime__v1__filesystem_usage__init(fu);
	fu->timestamp = vgpu_wall_ns();
	fu->fs_id = vgpu_calloc(1, sizeof(*fu->fs_id));
	runtime__v1__filesystem_identifier__init(fu->fs_id);
	fu->fs_id->mountpoint = vgpu_strdup(s->root);
	fu->used_bytes = u64(bytes);
	fu->inodes_used = u64(inodes);
	Runtime__V1__ImageFsInfoResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__image_fs_info_response__init(out);
	out->image_filesystems = vgpu_calloc(1, sizeof(*out->image_filesystems));
	out->image_filesystems[0] = fu;
	out->n_image_filesystems = 1;
	*resp = &out->base;
	(void)req;
	return 0;
}
