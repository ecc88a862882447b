/* Internals of the image store, shared by image_ref.c (references, digests, auth challenges),
 * image_registry.c (OCI distribution client, libcurl), image_unpack.c (layer extraction,
 * libarchive), image_pull.c, image_store.c (records on disk), image_rootfs.c and
 * image_service.c (CRI handlers). Not for use outside the image files. */
#ifndef VGPU_IMAGE_INTERNAL_H
#define VGPU_IMAGE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "image.h"

/* ---- references (image_ref.c) ---- */

/* A normalized reference: domain "docker.io", path "library/busybox", tag "latest" (NULL when
 * only a digest was given), digest "sha256:<hex>" (NULL unless given). All malloc'd. */
struct vgpu_image_ref {
	char *domain;
	char *path;
	char *tag;
	char *digest;
};

/* Parse and normalize like docker/containerd: "busybox" -> docker.io/library/busybox:latest.
 * -EINVAL with a message for anything malformed (upper case repository, bad tag or digest). */
int vgpu_image_ref_parse(const char *s, struct vgpu_image_ref *ref, struct vgpu_err *err);
void vgpu_image_ref_free(struct vgpu_image_ref *ref);
/* "domain/path" */
char *vgpu_image_ref_name(const struct vgpu_image_ref *ref);
/* "domain/path:tag", or "domain/path@digest" when there is no tag; with both, the tag form. */
char *vgpu_image_ref_string(const struct vgpu_image_ref *ref);
/* Host to connect to: docker.io is served by registry-1.docker.io. */
const char *vgpu_image_ref_host(const struct vgpu_image_ref *ref);

/* "sha256:" + 64 lower-case hex digits. */
bool vgpu_digest_valid(const char *digest);
/* "sha256:<hex>" or a bare 64-hex id. */
bool vgpu_image_id_like(const char *s);

/* A WWW-Authenticate challenge: scheme "basic" or "bearer" (lower-cased), params may be NULL. */
struct vgpu_auth_challenge {
	char *scheme;
	char *realm;
	char *service;
	char *scope;
};
int vgpu_auth_challenge_parse(const char *header, struct vgpu_auth_challenge *c, struct vgpu_err *err);
void vgpu_auth_challenge_free(struct vgpu_auth_challenge *c);

/* Whether host ("h" or "h:port") is listed (as "h" or "h:port") in the NULL-terminated list. */
bool vgpu_registry_host_listed(char *const *list, const char *host);

/* ---- sha256 (image_registry.c, OpenSSL) ---- */
struct vgpu_sha256;
struct vgpu_sha256 *vgpu_sha256_new(void);
void vgpu_sha256_update(struct vgpu_sha256 *h, const void *data, size_t len);
/* Writes "sha256:<hex>" (72 bytes with NUL) and frees h. */
void vgpu_sha256_final(struct vgpu_sha256 *h, char out[72]);
void vgpu_sha256_buf(const void *data, size_t len, char out[72]);
/* Digest of a file's content; -errno if it cannot be read. */
int vgpu_sha256_file(const char *path, char out[72], uint64_t *size);

/* ---- registry client (image_registry.c) ---- */

#define VGPU_MANIFEST_MAX (4u << 20)   /* as containerd: larger manifests are refused */

struct vgpu_registry_auth {
	const char *username;
	const char *password;
	const char *identity_token;   /* OAuth refresh token */
	const char *registry_token;   /* bearer token to use as is */
};

struct vgpu_registry;

/* Called at most every few hundred ms while a blob streams. */
typedef void (*vgpu_progress_fn)(void *ctx, const char *digest, uint64_t done, uint64_t total);

/* A session with one repository. Usable from several threads at once. Copies what it needs. */
int vgpu_registry_open(const struct vgpu_config *cfg, const struct vgpu_image_ref *ref,
		       const struct vgpu_registry_auth *auth, struct vgpu_registry **out, struct vgpu_err *err);
void vgpu_registry_close(struct vgpu_registry *r);

/* GET a manifest by tag or digest (at most VGPU_MANIFEST_MAX bytes). *digest gets the sha256 of
 * the body; when reference is a digest it must match (-EBADMSG otherwise). */
int vgpu_registry_get_manifest(struct vgpu_registry *r, const char *reference, char **body, size_t *len,
			       char **media_type, char digest[72], struct vgpu_err *err);

/* Stream a blob into fd, verifying size and digest as it arrives: -EBADMSG on mismatch. */
int vgpu_registry_get_blob(struct vgpu_registry *r, const char *digest, uint64_t size, int fd,
			   vgpu_progress_fn progress, void *ctx, struct vgpu_err *err);

/* ---- layers (image_unpack.c) ---- */

/* Known layer media types (OCI tar, tar+gzip, tar+zstd; Docker rootfs.diff.tar.gzip). */
bool vgpu_layer_media_type_known(const char *media_type);

/* Extract the layer blob at blob_path into dest_dir (existing, empty). Whiteouts become
 * overlayfs whiteouts (char device 0:0) and opaque dirs get trusted.overlay.opaque=y. Paths with
 * "..", hard links out of the layer and writes through symlinks are refused (-EINVAL); symlinks
 * are created as they are, never followed. *bytes gets the sum of regular file sizes. */
int vgpu_layer_unpack(const char *blob_path, const char *dest_dir, uint64_t *bytes, struct vgpu_err *err);

/* Remove a tree without following symlinks; missing is fine. */
int vgpu_rm_rf(const char *path, struct vgpu_err *err);
/* Remove a tree relative to dirfd (name is one component). */
int vgpu_rm_rf_at(int dirfd, const char *name);

/* ---- store (image_store.c) ---- */

struct vgpu_image_layer {
	char *digest;
	char *media_type;
	uint64_t size;
};

/* One stored image. The JSON form on disk is documented in image_store.c. */
struct vgpu_image_record {
	char *id;               /* "sha256:<hex>": the config digest */
	char **repo_tags;       /* NULL-terminated, "domain/path:tag" */
	char **repo_digests;    /* NULL-terminated, "domain/path@sha256:..." */
	char *manifest_digest;
	char *config_digest;
	size_t n_layers;
	struct vgpu_image_layer *layers;  /* bottom first */
	uint64_t size;          /* config + manifest + compressed layers, bytes */
	char *user;             /* config.User */
	char **annotations;     /* ImageSpec annotations of the last pull: key, value, key, ..., NULL */
	long long pulled_ns;
};

/* image_record.c */
void vgpu_image_record_free(struct vgpu_image_record *rec);
struct vgpu_image_record *vgpu_image_record_dup(const struct vgpu_image_record *rec);
/* JSON text (malloc'd) of a record, and back: -EINVAL for malformed input. */
char *vgpu_image_record_to_json(const struct vgpu_image_record *rec);
int vgpu_image_record_from_json(const char *text, struct vgpu_image_record **out, struct vgpu_err *err);

/* NULL-terminated string arrays (NULL counts as empty). add skips a value already there, push
 * does not; remove takes out the first equal value and says whether there was one. */
size_t vgpu_image_strv_len(char **v);
bool vgpu_image_strv_contains(char **v, const char *s);
char **vgpu_image_strv_dup(char **v);
void vgpu_image_strv_add(char ***v, const char *s);
void vgpu_image_strv_push(char ***v, const char *s);
bool vgpu_image_strv_remove(char **v, const char *s);

/* Content in flight: one download or unpack of a digest at a time; others wait for it. */
struct vgpu_inflight {
	char *key;
	int waiters;
	bool done;
	int result;
	char msg[VGPU_ERR_MSG_MAX];
	struct vgpu_inflight *next;
};

/* Guarded by lock: records, n_records, inflight, pins, tmp_counter. Paths and cfg are fixed after open. No network
 * or disk-heavy work happens under lock. */
struct vgpu_image_store {
	const struct vgpu_config *cfg;
	char *root;        /* state_dir/images */
	char *blobs_dir;   /* root/blobs/sha256 */
	char *layers_dir;  /* root/layers */
	char *records_dir; /* root/records */
	char *tmp_dir;     /* root/tmp */
	char *erofs_dir;   /* root/erofs: the xen handler's disk image of each image (<hex>.erofs) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct vgpu_image_record **records;
	size_t n_records;
	struct vgpu_inflight *inflight;
	char **pins;       /* digests a pull in progress needs (NULL-terminated, repeats allowed) */
	uint64_t tmp_counter;
};

char *vgpu_image_blob_path(const struct vgpu_image_store *s, const char *digest);
char *vgpu_image_layer_path(const struct vgpu_image_store *s, const char *digest);
/* A fresh path under tmp/ (not created). */
char *vgpu_image_tmp_path(struct vgpu_image_store *s, const char *what);

/* Begin work on key: returns 1 if the caller must do it (then call vgpu_inflight_end), 0 if
 * someone else did it meanwhile and it succeeded, or that one's error. Called without lock. */
int vgpu_inflight_begin(struct vgpu_image_store *s, const char *key, struct vgpu_err *err);
void vgpu_inflight_end(struct vgpu_image_store *s, const char *key, int result, const struct vgpu_err *err);

/* Keep digest from garbage collection while a pull that needs it runs (counted). */
void vgpu_image_store_pin(struct vgpu_image_store *s, const char *digest);
void vgpu_image_store_unpin(struct vgpu_image_store *s, const char *digest);

/* Find an image by name (reference or id); with lock held. NULL if none. */
struct vgpu_image_record *vgpu_image_store_find_locked(struct vgpu_image_store *s, const char *name,
						       struct vgpu_err *err);
/* A deep copy of the record an image name resolves to: -ENOENT, -EINVAL. */
int vgpu_image_store_get(struct vgpu_image_store *s, const char *name, struct vgpu_image_record **out,
			 struct vgpu_err *err);
/* Deep copies of all records. */
int vgpu_image_store_list(struct vgpu_image_store *s, struct vgpu_image_record ***out, size_t *n);
/* Add or update the record for rec->id (merging tags and digests), moving its tags away from
 * other images; writes it atomically. Takes ownership of rec. */
int vgpu_image_store_commit(struct vgpu_image_store *s, struct vgpu_image_record *rec, struct vgpu_err *err);
/* Remove the image name resolves to, then all content no image uses (see image_store.c); 0 if
 * there is no such image. */
int vgpu_image_store_remove(struct vgpu_image_store *s, const char *name, struct vgpu_err *err);
/* Bytes and inodes used under root. */
int vgpu_image_store_usage(struct vgpu_image_store *s, uint64_t *bytes, uint64_t *inodes, struct vgpu_err *err);
/* Read a blob (at most max bytes). */
int vgpu_image_store_read_blob(struct vgpu_image_store *s, const char *digest, size_t max, char **out,
			       size_t *len, struct vgpu_err *err);
/* Parse config JSON into cfg. */
int vgpu_image_config_parse(const char *json, struct vgpu_image_config *cfg, struct vgpu_err *err);

/* ---- rootfs (image_rootfs.c) ---- */

/* vgpu_image_mount_rootfs without trying overlay: always the copy (tests, and where overlay is
 * known not to work). */
int vgpu_image_copy_rootfs(struct vgpu_image_store *s, const char *image_id, const char *dir, char **rootfs_path,
			   struct vgpu_err *err);

/* ---- pull (image_pull.c) ---- */

/* The manifest checks of a pull on one body (NUL-terminated) served with content_type, without a
 * registry (for test/fuzz): 0 for a valid image manifest (*n_layers set), 1 for an image index when
 * index_ok (next gets the digest of the node platform's manifest), else -EINVAL/-EFBIG/-ENOENT. */
int vgpu_image_manifest_check(const char *body, const char *content_type, bool index_ok, char next[72],
			      size_t *n_layers, struct vgpu_err *err);

/* Pull reference into the store; *image_id gets "sha256:<hex>". annotations (key, value, ...,
 * NULL; may be NULL) are the request's ImageSpec annotations, kept in the record. */
int vgpu_image_pull(struct vgpu_image_store *s, const char *reference, const struct vgpu_registry_auth *auth,
		    char **annotations, char **image_id, struct vgpu_err *err);

#endif
