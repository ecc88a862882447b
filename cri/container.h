/* CRI container handlers of the runc handler: create/start/stop/remove/status/list/update
 * (container.c), ExecSync and ReopenContainerLog (container_exec.c). */
#ifndef VGPU_CONTAINER_H
#define VGPU_CONTAINER_H

#include "rpc.h"

struct vgpu_daemon;
struct vgpu_pod_manager;
struct vgpu_container;

int vgpu_rpc_create_container(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			      struct vgpu_err *err);
int vgpu_rpc_start_container(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			     struct vgpu_err *err);
int vgpu_rpc_stop_container(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			    struct vgpu_err *err);
int vgpu_rpc_remove_container(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			      struct vgpu_err *err);
int vgpu_rpc_container_status(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			      struct vgpu_err *err);
int vgpu_rpc_list_containers(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			     struct vgpu_err *err);
int vgpu_rpc_update_container_resources(struct vgpu_daemon *d, const ProtobufCMessage *req,
					ProtobufCMessage **resp, struct vgpu_err *err);
int vgpu_rpc_exec_sync(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       struct vgpu_err *err);
int vgpu_rpc_reopen_container_log(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
				  struct vgpu_err *err);

/* Internal to the pod manager. */
/* Stop a container: signal, wait timeout_s, SIGKILL, wait. Idempotent. */
int vgpu_container_stop(struct vgpu_pod_manager *m, struct vgpu_container *c, long long timeout_s,
			struct vgpu_err *err);
/* Stop (forcibly) and remove every trace of a container, then unlink it. */
int vgpu_container_remove(struct vgpu_pod_manager *m, struct vgpu_container *c, struct vgpu_err *err);
/* Remove what a container left on disk and in runc (runc state, rootfs mount, dirs, exit file). */
void vgpu_container_cleanup(struct vgpu_pod_manager *m, const char *id, const char *dir);
/* The same for a creation that did not finish (a failed CreateContainer, or one a daemon crash
 * interrupted): first kills the container's monitor and lets a `runc create` still running finish,
 * which would otherwise keep a container, or write files into its directory, after the cleanup. */
void vgpu_container_cleanup_interrupted(struct vgpu_pod_manager *m, const char *id, const char *dir);

#endif
