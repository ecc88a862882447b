/* Containers of `xen` pods (internal to cri/): vgpu-agent runs them with runc inside the pod's
 * domU (cri/agent/agent_ctr.c). The daemon makes the container's OCI spec (oci_spec.c, the guest's
 * namespaces as the pod's), an erofs image of the image's rootfs on a read-only loop device that is
 * hot-added to the domain as a disk, and asks the agent to create/start/stop/remove; a pump thread
 * copies the container's CRI log records from the agent into log_path and learns of exits, which
 * it records as an exit file in exit_dir like vgpu-monitor does, so the runc handler's exit
 * machinery (wait, events, ContainerStatus) serves both handlers. container.c calls in here where
 * the handlers differ. */
#ifndef VGPU_XEN_CONTAINER_H
#define VGPU_XEN_CONTAINER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct vgpu_pod_manager;
struct vgpu_sandbox;
struct vgpu_container;
struct vgpu_image_config;
struct vgpu_proc_result;
struct agent_ctr_stats;
struct vgpu_xen_vol;

/* Per container of a xen pod (c->xen; NULL for runc containers). */
struct vgpu_xen_ctr {
	char vdev[8];            /* the image disk in the guest (xvdb..); immutable after create */
	pthread_mutex_t lock;    /* serializes syncs with the agent; guards the fields below */
	uint64_t log_offset;     /* bytes of the agent's log already in log_path */
	bool log_done;           /* exited, every record copied, exit recorded */
	struct vgpu_xen_vol *vols; /* its copy-in mounts (xen_vol.h), n_vols of them */
	size_t n_vols;
	bool vols_known;         /* vols built (at create, or from the config after a restart) */
};

struct vgpu_xen_ctr *vgpu_xen_ctr_new(const char *vdev);
void vgpu_xen_ctr_free(struct vgpu_xen_ctr *x);

/* CreateContainer's work for a xen pod (c linked, CREATING, meta saved): rootfs image, disk,
 * spec, agent CTR_CREATE. On failure everything made here is undone. */
int vgpu_xen_container_create(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_container *c,
			      const struct vgpu_image_config *img, struct vgpu_err *err);
int vgpu_xen_container_start(struct vgpu_pod_manager *m, struct vgpu_container *c, struct vgpu_err *err);
/* Signal, wait timeout_s, SIGKILL (in the guest), then record the exit. Idempotent. */
int vgpu_xen_container_stop(struct vgpu_pod_manager *m, struct vgpu_container *c, int sig, long long timeout_s,
			    struct vgpu_err *err);
/* Remove the container in the guest, its disk, the exit file and its directory (best effort:
 * a pod whose domain is gone has nothing left in the guest). */
void vgpu_xen_container_cleanup(struct vgpu_pod_manager *m, struct vgpu_container *c);
/* ExecSync through the agent (runc exec in the guest). */
int vgpu_xen_container_exec(struct vgpu_pod_manager *m, struct vgpu_container *c, char *const *argv,
			    long long timeout_ms, struct vgpu_proc_result *res, struct vgpu_err *err);
/* The container's cgroup counters in the guest (CTR_STATS). -ENOTCONN: its pod is not ready. */
int vgpu_xen_container_stats(struct vgpu_pod_manager *m, struct vgpu_container *c, struct agent_ctr_stats *st,
			     struct vgpu_err *err);
/* UpdateContainerResources: the OCI linux.resources JSON (cgroup v2: the guest's) through
 * `runc update` in the guest (CTR_UPDATE). */
int vgpu_xen_container_update(struct vgpu_pod_manager *m, struct vgpu_container *c, const char *resources_json,
			      struct vgpu_err *err);
/* Copy new log records and learn the state from the agent; records an exit (mgr->lock not held). */
void vgpu_xen_container_sync(struct vgpu_pod_manager *m, struct vgpu_container *c);
/* After a daemon restart: resume the log copy where log_path ends. */
void vgpu_xen_container_recover(struct vgpu_pod_manager *m, struct vgpu_container *c);

/* Copy-in mounts: re-send the read-only ones whose host content changed (the pump, every 10 s). */
void vgpu_xen_container_vol_refresh(struct vgpu_pod_manager *m, struct vgpu_container *c);

/* The pump thread (log copies, exits, agent keepalive), when xen pods are available. */
void vgpu_xen_pump_start(struct vgpu_pod_manager *m);
void vgpu_xen_pump_stop(struct vgpu_pod_manager *m);

#endif
