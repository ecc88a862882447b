/* OCI runtime spec (config.json) generation from a CRI ContainerConfig, its PodSandboxConfig and the
 * image config. Pure: it reads only the container's rootfs (/etc/passwd, /etc/group) and the host
 * paths it is told about, and knows nothing of where the container will run, so the runc handler on
 * the host and the xen handler's agent inside a guest both use it. */
#ifndef VGPU_OCI_SPEC_H
#define VGPU_OCI_SPEC_H

#include <stdbool.h>
#include <sys/types.h>

#include "cri-api.pb-c.h"
#include "err.h"

struct vgpu_image_config;

/* How the container joins the pod's namespaces: a path to join (/proc/<infra>/ns/net), or
 * host (no namespace of its own: hostNetwork etc.), or neither (a new namespace). */
struct vgpu_oci_ns {
	const char *path;
	bool host;
};

/* A read-only bind mount added by the runtime itself (GPU pods: the shim and the broker socket). */
struct vgpu_oci_bind {
	const char *source;      /* host path */
	const char *destination; /* container path */
};

struct vgpu_oci_input {
	const Runtime__V1__ContainerConfig *container; /* required */
	const Runtime__V1__PodSandboxConfig *pod;      /* may be NULL */
	const struct vgpu_image_config *image;        /* may be NULL (no defaults from an image) */
	const char *rootfs;          /* absolute path of the prepared rootfs */
	const char *cgroups_path;    /* linux.cgroupsPath; NULL or "" = none */
	bool cgroup_v2;              /* unified hierarchy: cgroup namespace, unified resources */
	struct vgpu_oci_ns net, ipc, uts, pid;
	const char *hostname;        /* pod hostname (for HOSTNAME=) */
	/* Files of the pod bind-mounted into the container; NULL = not mounted. */
	const char *hosts_path, *resolv_path, *hostname_path;
	const char *shm_path;        /* the pod's /dev/shm; NULL = a private tmpfs */
	const char *termination_log_path; /* bound on /dev/termination-log unless a mount targets it */
	/* Runtime injections (GPU pods, gpu.h): read-only binds mounted after all others, so that they
	 * win over image files and user mounts; env "K=V" set last, except that LD_LIBRARY_PATH is
	 * prepended to the container's own. */
	const struct vgpu_oci_bind *binds;
	size_t n_binds;
	char *const *env;        /* NULL-terminated; NULL = none */
	long long pids_limit;    /* linux.resources.pids.limit (the handler's pids_limit); 0 = none */
};

/* Generate config.json. Returns 0 and a malloc'd JSON text in *json, or -EINVAL with a message that
 * names the offending field (bad mount, unknown user, absurd resource value, no command...). */
int vgpu_oci_spec_generate(const struct vgpu_oci_input *in, char **json, struct vgpu_err *err);

/* The process arguments: CRI command/args merged with the image entrypoint/cmd (Kubernetes rules:
 * command replaces the entrypoint and, with it, the image cmd). Returns a malloc'd NULL-terminated
 * vector, or -EINVAL when it would be empty. */
int vgpu_oci_process_args(const Runtime__V1__ContainerConfig *c, const struct vgpu_image_config *image,
			  char ***argv, struct vgpu_err *err);

/* Resolve the container user: security context run_as_user/run_as_group/run_as_username, else the
 * image's user ("name", "uid", "name:group", "uid:gid"), names looked up in rootfs /etc/passwd and
 * /etc/group (resolved inside the rootfs: symlinks cannot leave it). additional gets a malloc'd array
 * of supplementary gids (group memberships of the user plus supplemental_groups). */
struct vgpu_oci_user {
	uid_t uid;
	gid_t gid;
	gid_t *additional;
	size_t n_additional;
};
int vgpu_oci_resolve_user(const char *rootfs, const Runtime__V1__LinuxContainerSecurityContext *sc,
			  const char *image_user, struct vgpu_oci_user *user, struct vgpu_err *err);

/* Check CRI resources for absurd values (-EINVAL naming the field). */
int vgpu_oci_check_resources(const Runtime__V1__LinuxContainerResources *r, struct vgpu_err *err);

/* OCI linux.resources JSON for `runc update --resources` (UpdateContainerResources). */
int vgpu_oci_resources_json(const Runtime__V1__LinuxContainerResources *r, bool cgroup_v2, char **json,
			    struct vgpu_err *err);

#endif
