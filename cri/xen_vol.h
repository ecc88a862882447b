/* Copy-in mounts of xen containers (internal to cri/): a xen guest shares no filesystem with the
 * driver domain, so each CRI mount's host path (a file or a directory tree) is read here into the
 * record stream of agent_proto.h and written by vgpu-agent under /run/vgpu-agent/vol/<key>/ in the
 * guest, where the container bind-mounts it. Read-only mounts are re-sent when their content
 * changes (kubelet's configMap/secret/token updates); a writable mount of a single file (kubelet's
 * termination-log) is written back to its host file once the container exited (VOL_GET);
 * writable directories (emptyDir) never are. */
#ifndef VGPU_XEN_VOL_H
#define VGPU_XEN_VOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "agent/agent_proto.h"
#include "cri-api.pb-c.h"
#include "err.h"

#define VGPU_XEN_VOL_GUEST_ROOT "/run/vgpu-agent/vol"
#define VGPU_XEN_VOL_KEY_LEN 18 /* "v" + 16 hex digits + NUL */

/* One copy-in mount of a container. Strings owned (vgpu_xen_vols_free). */
struct vgpu_xen_vol {
	char key[VGPU_XEN_VOL_KEY_LEN]; /* from the host path: containers of a pod share a volume */
	char *host_path;
	char *container_path;
	bool readonly;
	bool is_file;                   /* a single file (bound as <key>/file) */
	uint64_t sig;                   /* signature of the content last sent; 0: not sent yet */
};

/* The guest directory name of a host path's volume. */
void vgpu_xen_vol_key(const char *host_path, char key[VGPU_XEN_VOL_KEY_LEN]);

/* Read host_path (a regular file or a directory tree; the path itself may be a symlink, symlinks
 * inside the tree are copied as symlinks and never followed; anything else is -EINVAL) into
 * *stream (records appended; agent_buf_free) with the limits of agent_proto.h (AGENT_VOL_MAX_BYTES
 * of contents, AGENT_VOL_MAX_ENTRIES entries, AGENT_VOL_MAX_DEPTH levels: -EINVAL naming the
 * limit). stream NULL: only the signature (metadata, nothing read). */
int vgpu_xen_vol_read(const char *host_path, struct agent_buf *stream, bool *is_file, uint64_t *sig,
		      struct vgpu_err *err);

/* The source of the bind in the guest (malloc'd). */
char *vgpu_xen_vol_guest_path(const struct vgpu_xen_vol *v);

void vgpu_xen_vols_free(struct vgpu_xen_vol *vols, size_t n);

/* The copy-in mounts of a container config: every mount checked (absolute paths, private
 * propagation: -EINVAL; image volumes, id-mapped mounts: -EOPNOTSUPP). With streams (an array of
 * n agent_bufs, malloc'd, the caller frees each and the array), every host path is read now and
 * each vol's sig set; without, only the list (sig 0: content never sent). */
int vgpu_xen_vols_plan(const Runtime__V1__ContainerConfig *cfg, struct vgpu_xen_vol **vols_out, size_t *n_out,
		       struct agent_buf **streams, struct vgpu_err *err);

/* Append the bind mounts of vols to the OCI spec's "mounts" (the guest's volume directories). */
void vgpu_xen_vols_spec(json_object *spec, const struct vgpu_xen_vol *vols, size_t n);

/* VOL_PUT flags for v. */
uint32_t vgpu_xen_vol_flags(const struct vgpu_xen_vol *v);

/* Is v written back when its container exits? A writable mount of a single regular file
 * (kubelet's termination-log); directories (emptyDir, hostPath dirs) never are. */
bool vgpu_xen_vol_writes_back(const struct vgpu_xen_vol *v);

/* Write data (the guest's copy, at most AGENT_VOL_GET_MAX bytes: -EFBIG) over host_path, which
 * must exist as a regular file: its last component is opened with O_NOFOLLOW (a symlink is
 * -ELOOP, never followed; anything but a regular file -EINVAL). Atomic: a temp file in the same
 * directory (the old file's permission bits without setuid/setgid, and its owner), fsync, then
 * rename over host_path only if host_path is
 * still the inode that was checked, so a reader sees the old or the new content, never a part.
 * Same content as now: nothing is written (*written false). */
int vgpu_xen_vol_write_back(const char *host_path, const void *data, size_t len, bool *written,
			    struct vgpu_err *err);

#endif
