/* Pods of the `xen` runtime handler (internal to cri/): each pod is a PV domU made through
 * libxenlight (xen_domain.h) whose PID 1 is vgpu-agent, reached over a vchan (xen_agent.h).
 * sandbox.c calls in here for the parts that differ from the runc handler; everything else (ids,
 * metadata reservation, config.pb/meta.json, the RPCs' shapes) is shared. On a host that is not a
 * Xen control domain, xen pods are refused with -ENODEV (FAILED_PRECONDITION) and the rest of the
 * daemon works as before. */
#ifndef VGPU_XEN_SANDBOX_H
#define VGPU_XEN_SANDBOX_H

#include <stdbool.h>

#include "sandbox_store.h"
#include "xen_agent.h"

struct vgpu_xen;

struct vgpu_xen_pods;

/* At pod manager open, before loading: a libxl context when a xen handler is configured and this
 * is a Xen control domain, else the reason why not (never fails). Sets m->xen. */
void vgpu_xen_pods_open(struct vgpu_pod_manager *m);
void vgpu_xen_pods_close(struct vgpu_pod_manager *m);

/* The libxl handle, or NULL when xen pods are not available. */
struct vgpu_xen *vgpu_xen_pods_handle(struct vgpu_pod_manager *m);

/* RunPodSandbox with a xen handler: 0 if xen pods can run here, else -ENODEV saying why. */
int vgpu_xen_pods_available(struct vgpu_pod_manager *m, struct vgpu_err *err);

/* Create s's domain (s->xen_domain set by the caller; sizes from the pod's linux resources or the
 * handler), link its console log, save its domid, and wait for the agent's HELLO. On failure the
 * domain is destroyed before returning. */
int vgpu_xen_pod_start(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_err *err);

/* Destroy s's domain (gone already = success); the pod becomes NOTREADY (caller saves). */
int vgpu_xen_pod_stop(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_err *err);

/* Destroy every domain that belongs to sandbox id (by its name prefix): removal, and the
 * leftovers of an interrupted RunPodSandbox. */
void vgpu_xen_pod_release(struct vgpu_pod_manager *m, const char *id);

/* A READY pod whose domain is gone, shut down or replaced becomes NOTREADY (mgr->lock not held). */
void vgpu_xen_pod_refresh(struct vgpu_pod_manager *m, struct vgpu_sandbox *s);

/* The same for every live xen pod (ListPodSandbox). */
void vgpu_xen_pods_refresh_all(struct vgpu_pod_manager *m);

/* After a daemon restart (single-threaded load): find s's domain by name and reattach (domid may
 * be the same or not), or mark the pod NOTREADY. */
void vgpu_xen_pod_recover(struct vgpu_pod_manager *m, struct vgpu_sandbox *s);

/* After loading: destroy pod domains (our name form) that no sandbox record owns. */
void vgpu_xen_pods_sweep(struct vgpu_pod_manager *m);

/* Run op with the pod's agent connection (connected on demand, kept, one caller at a time).
 * -ENOTCONN when the pod is not ready (no domain to talk to). */
typedef int (*vgpu_xen_agent_op)(struct vgpu_xen_agent *a, void *arg, struct vgpu_err *err);
int vgpu_xen_pod_agent_op(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, vgpu_xen_agent_op op, void *arg,
			  struct vgpu_err *err);

/* PING the agent of every ready pod whose connection was idle for idle_ns: the agent takes a long
 * silence for a daemon that died and offers its channel afresh. */
void vgpu_xen_pods_keepalive(struct vgpu_pod_manager *m, long long idle_ns);

/* Run a command in the pod's guest through the agent (outside any container). */
int vgpu_xen_pod_exec(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, const char *const *argv,
		      uint32_t timeout_ms, struct vgpu_xen_exec_result *res, struct vgpu_err *err);

#endif
