/* Pods of the runc handler: the pod manager's life cycle (open with recovery after a restart,
 * close) and the CRI RuntimeService handlers for sandboxes, containers, exec, logs, stats and events.
 * The manager's internals are in sandbox_store.h. */
#ifndef VGPU_SANDBOX_H
#define VGPU_SANDBOX_H

#include "rpc.h"

struct vgpu_daemon;

/* Load every pod and container from state_dir, reconcile with what still runs (infra processes,
 * monitors, exit files written while the daemon was down) and start the exit watcher.
 * Needs d->cfg (and d->images for creating containers). Sets d->pods. */
int vgpu_pods_open(struct vgpu_daemon *d, struct vgpu_err *err);
/* Stop the watcher and free the state; pods and containers keep running. */
void vgpu_pods_close(struct vgpu_daemon *d);

/* sandbox.c */
int vgpu_rpc_run_pod_sandbox(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			     struct vgpu_err *err);
int vgpu_rpc_stop_pod_sandbox(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			      struct vgpu_err *err);
int vgpu_rpc_remove_pod_sandbox(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
				struct vgpu_err *err);
int vgpu_rpc_pod_sandbox_status(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
				struct vgpu_err *err);
int vgpu_rpc_list_pod_sandbox(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			      struct vgpu_err *err);

/* stats.c */
int vgpu_rpc_container_stats(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			     struct vgpu_err *err);
int vgpu_rpc_list_container_stats(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
				  struct vgpu_err *err);
int vgpu_rpc_pod_sandbox_stats(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			       struct vgpu_err *err);
int vgpu_rpc_list_pod_sandbox_stats(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
				    struct vgpu_err *err);

/* sandbox_manager.c */
int vgpu_rpc_get_container_events(struct vgpu_daemon *d, const ProtobufCMessage *req, struct vgpu_stream *s,
				  struct vgpu_err *err);

#endif
