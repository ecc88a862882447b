/* Image records: the in-memory struct and its JSON form on disk (the layout of the store is
 * documented in image_store.c), plus the small string-array helpers the image code shares. */
#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "image_internal.h"
#include "util.h"

size_t vgpu_image_strv_len(char **v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	return n;
}

bool vgpu_image_strv_contains(char **v, const char *s)
{
	for (size_t i = 0; v && v[i]; i++)
		if (!strcmp(v[i], s))
			return true;
	return false;
}

char **vgpu_image_strv_dup(char **v)
{
	size_t n = vgpu_image_strv_len(v);
	char **r = vgpu_calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		r[i] = vgpu_strdup(v[i]);
	return r;
}

void vgpu_image_strv_add(char ***v, const char *s)
{
	if (vgpu_image_strv_contains(*v, s))
		return;
	size_t n = vgpu_image_strv_len(*v);
	char **r = realloc(*v, (n + 2) * sizeof(char *));
	if (!r)
		abort();
	r[n] = vgpu_strdup(s);
	r[n + 1] = NULL;
	*v = r;
}

/* Append s (duplicates allowed). */
void vgpu_image_strv_push(char ***v, const char *s)
{
	size_t n = vgpu_image_strv_len(*v);
	char **r = realloc(*v, (n + 2) * sizeof(char *));
	if (!r)
		abort();
	r[n] = vgpu_strdup(s);
	r[n + 1] = NULL;
	*v = r;
}

/* Remove s from v; true if it was there. */
bool vgpu_image_strv_remove(char **v, const char *s)
{
	size_t n = vgpu_image_strv_len(v);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(v[i], s)) {
			free(v[i]);
			memmove(&v[i], &v[i + 1], (n - i) * sizeof(char *));
			return true;
		}
	}
	return false;
}

void vgpu_image_record_free(struct vgpu_image_record *rec)
{
	if (!rec)
		return;
	free(rec->id);
	vgpu_strv_free(rec->repo_tags);
	vgpu_strv_free(rec->repo_digests);
	free(rec->manifest_digest);
	free(rec->config_digest);
	for (size_t i = 0; i < rec->n_layers; i++) {
		free(rec->layers[i].digest);
		free(rec->layers[i].media_type);
	}
	free(rec->layers);
	free(rec->user);
	vgpu_strv_free(rec->annotations);
	free(rec);
}

struct vgpu_image_record *vgpu_image_record_dup(const struct vgpu_image_record *rec)
{
	struct vgpu_image_record *r = vgpu_calloc(1, sizeof(*r));
	r->id = vgpu_strdup(rec->id);
	r->repo_tags = vgpu_image_strv_dup(rec->repo_tags);
	r->repo_digests = vgpu_image_strv_dup(rec->repo_digests);
	r->manifest_digest = vgpu_strdup(rec->manifest_digest);
	r->config_digest = vgpu_strdup(rec->config_digest);
	r->n_layers = rec->n_layers;
	r->layers = vgpu_calloc(rec->n_layers, sizeof(*r->layers));
	for (size_t i = 0; i < rec->n_layers; i++) {
		r->layers[i].digest = vgpu_strdup(rec->layers[i].digest);
		r->layers[i].media_type = vgpu_strdup(rec->layers[i].media_type);
		r->layers[i].size = rec->layers[i].size;
	}
	r->size = rec->size;
	r->user = vgpu_strdup(rec->user);
	r->annotations = vgpu_image_strv_dup(rec->annotations);
	r->pulled_ns = rec->pulled_ns;
	return r;
}

static json_object *strv_to_json(char **v)
{
	json_object *a = json_object_new_array();
	for (size_t i = 0; v && v[i]; i++)
		json_object_array_add(a, json_object_new_string(v[i]));
	return a;
}

char *vgpu_image_record_to_json(const struct vgpu_image_record *rec)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "schema", json_object_new_int(1));
	json_object_object_add(o, "id", json_object_new_string(rec->id));
	json_object_object_add(o, "repo_tags", strv_to_json(rec->repo_tags));
	json_object_object_add(o, "repo_digests", strv_to_json(rec->repo_digests));
	json_object_object_add(o, "manifest_digest", json_object_new_string(rec->manifest_digest));
	json_object_object_add(o, "config_digest", json_object_new_string(rec->config_digest));
	json_object *layers = json_object_new_array();
	for (size_t i = 0; i < rec->n_layers; i++) {
		json_object *l = json_object_new_object();
		json_object_object_add(l, "digest", json_object_new_string(rec->layers[i].digest));
		json_object_object_add(l, "media_type", json_object_new_string(rec->layers[i].media_type));
		json_object_object_add(l, "size", json_object_new_int64((int64_t)rec->layers[i].size));
		json_object_array_add(layers, l);
	}
	json_object_object_add(o, "layers", layers);
	json_object_object_add(o, "size", json_object_new_int64((int64_t)rec->size));
	json_object_object_add(o, "user", json_object_new_string(rec->user ? rec->user : ""));
	json_object *ann = json_object_new_object();
	for (size_t i = 0; rec->annotations && rec->annotations[i] && rec->annotations[i + 1]; i += 2)
		json_object_object_add(ann, rec->annotations[i], json_object_new_string(rec->annotations[i + 1]));
	json_object_object_add(o, "annotations", ann);
	json_object_object_add(o, "pulled_ns", json_object_new_int64(rec->pulled_ns));
	char *s = vgpu_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static char **json_to_strv(json_object *o, const char *key)
{
	json_object *a;
	if (!json_object_object_get_ex(o, key, &a) || !json_object_is_type(a, json_type_array))
		return vgpu_calloc(1, sizeof(char *));
	size_t n = json_object_array_length(a);
	char **v = vgpu_calloc(n + 1, sizeof(char *));
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(a, i);
		if (json_object_is_type(e, json_type_string))
			v[k++] = vgpu_strdup(json_object_get_string(e));
	}
	return v;
}

int vgpu_image_record_from_json(const char *text, struct vgpu_image_record **out, struct vgpu_err *err)
{
	json_object *o = json_tokener_parse(text);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return vgpu_err_set(err, -EINVAL, "not a JSON object");
	}
	struct vgpu_image_record *rec = vgpu_calloc(1, sizeof(*rec));
	const char *id = jstr(o, "id"), *md = jstr(o, "manifest_digest"), *cd = jstr(o, "config_digest");
	json_object *layers = NULL, *v;
	int r = 0;
	if (!vgpu_digest_valid(id) || !vgpu_digest_valid(md) || !vgpu_digest_valid(cd) ||
	    !json_object_object_get_ex(o, "layers", &layers) || !json_object_is_type(layers, json_type_array)) {
		r = vgpu_err_set(err, -EINVAL, "missing or malformed fields");
		goto out;
	}
	rec->id = vgpu_strdup(id);
	rec->manifest_digest = vgpu_strdup(md);
	rec->config_digest = vgpu_strdup(cd);
	rec->repo_tags = json_to_strv(o, "repo_tags");
	rec->repo_digests = json_to_strv(o, "repo_digests");
	rec->user = vgpu_strdup(jstr(o, "user"));
	rec->annotations = vgpu_calloc(1, sizeof(char *));
	if (json_object_object_get_ex(o, "annotations", &v) && json_object_is_type(v, json_type_object)) {
		json_object_object_foreach(v, key, val)
		{
			if (json_object_is_type(val, json_type_string)) {
				vgpu_image_strv_push(&rec->annotations, key);
				vgpu_image_strv_push(&rec->annotations, json_object_get_string(val));
			}
		}
	}
	if (json_object_object_get_ex(o, "size", &v))
		rec->size = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "pulled_ns", &v))
		rec->pulled_ns = json_object_get_int64(v);
	rec->n_layers = json_object_array_length(layers);
	rec->layers = vgpu_calloc(rec->n_layers, sizeof(*rec->layers));
	for (size_t i = 0; i < rec->n_layers; i++) {
		json_object *l = json_object_array_get_idx(layers, i);
		const char *d = jstr(l, "digest"), *mt = jstr(l, "media_type");
		if (!vgpu_digest_valid(d) || !mt) {
			r = vgpu_err_set(err, -EINVAL, "layer %zu malformed", i);
			goto out;
		}
		rec->layers[i].digest = vgpu_strdup(d);
		rec->layers[i].media_type = vgpu_strdup(mt);
		if (json_object_object_get_ex(l, "size", &v))
			rec->layers[i].size = (uint64_t)json_object_get_int64(v);
	}
out:
	json_object_put(o);
	if (r < 0) {
		vgpu_image_record_free(rec);
		return r;
	}
	*out = rec;
	return 0;
}
