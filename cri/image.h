/* The image store as other parts of the daemon see it: open/close at start-up and shutdown, look
 * up a stored image and its config, and build a container rootfs from its layers. The CRI
 * ImageService handlers are in image_service.h; pulling and the on-disk format are internal
 * (image_internal.h). */
#ifndef VGPU_IMAGE_H
#define VGPU_IMAGE_H

#include "config.h"
#include "err.h"

struct vgpu_image_store;

/* The parts of an image's config that a container starts from. Arrays are NULL-terminated and
 * never NULL after a successful vgpu_image_lookup (possibly empty); strings are "" when unset.
 * Owned by the caller; release with vgpu_image_config_free. */
struct vgpu_image_config {
	char **entrypoint;
	char **cmd;
	char **env;          /* "KEY=value" */
	char *working_dir;
	char *user;          /* as in the image: "", "1000", "1000:1000", "nobody", ... */
};

/* Open (creating if needed) the store under cfg->state_dir/images and load its records. Removes
 * leftovers of interrupted pulls. The store keeps a pointer to cfg, which must outlive it. */
int vgpu_image_store_open(const struct vgpu_config *cfg, struct vgpu_image_store **out, struct vgpu_err *err);
void vgpu_image_store_close(struct vgpu_image_store *s);

/* The xen handler's read-only disk of an image: an erofs image of its merged rootfs, one per image,
 * shared by all its containers, under images/erofs/ until the image is removed (garbage collection
 * unlinks it with the record; a loop device attached to it keeps the file until detached).
 * vgpu_image_erofs_path: where it is (or goes), NULL for a malformed id; vgpu_image_erofs_tmp: a
 * fresh path on the same filesystem to build it in, then rename(2) into place. */
char *vgpu_image_erofs_path(struct vgpu_image_store *s, const char *image_id);
char *vgpu_image_erofs_tmp(struct vgpu_image_store *s);

/* Find a stored image by reference ("busybox", "docker.io/library/busybox:1.36",
 * "127.0.0.1:5000/x@sha256:..."), or id ("sha256:<hex>" or "<hex>"). On success *image_id (if not
 * NULL) gets the malloc'd id "sha256:<hex>" and *cfg (if not NULL) the image's config.
 * -ENOENT if no such image is stored, -EINVAL for a malformed reference. */
int vgpu_image_lookup(struct vgpu_image_store *s, const char *image, char **image_id,
		      struct vgpu_image_config *cfg, struct vgpu_err *err);

/* Make a container rootfs from the image's layers under dir (created if missing): an overlayfs
 * mounted on dir/rootfs with the layers as lower dirs and dir/upper, dir/work as the writable
 * part; where overlay cannot be mounted (no overlay, not privileged, too many layers), a copy of
 * the layers in dir/rootfs. *rootfs_path gets the malloc'd path dir/rootfs. RemoveImage keeps the
 * layers of every mounted overlay (it reads /proc/self/mountinfo), also across daemon restarts. */
int vgpu_image_mount_rootfs(struct vgpu_image_store *s, const char *image_id, const char *dir,
			    char **rootfs_path, struct vgpu_err *err);

/* Undo vgpu_image_mount_rootfs: unmount dir/rootfs if it is a mount, then delete dir/rootfs,
 * dir/upper and dir/work (the container's writable state); dir itself stays. Idempotent:
 * missing parts are fine. */
int vgpu_image_unmount_rootfs(const char *dir, struct vgpu_err *err);

void vgpu_image_config_free(struct vgpu_image_config *cfg);

#endif
