/* The daemon's side of the vgpu-agent protocol (cri/agent/agent_proto.h): a vchan client to the
 * agent that runs as PID 1 in a pod's domU. One connection serves one caller at a time; the agent
 * serves one client at a time and offers a fresh channel when a client goes, so callers connect
 * per operation and hold the xen pods' agent lock meanwhile (xen_sandbox.c). Every wait has a
 * deadline: a guest that never answers costs a timeout, never a hung daemon thread. */
#ifndef VGPU_XEN_AGENT_H
#define VGPU_XEN_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/agent_proto.h"
#include "err.h"

struct vgpu_xen_agent;

/* Connect to the agent of domid and read its HELLO, retrying until timeout_ms has passed (the guest
 * may still be booting). version (may be NULL) gets the agent's version string. -ETIMEDOUT when no
 * HELLO came in time, -EPROTO for a wrong protocol version. */
int vgpu_xen_agent_connect(uint32_t domid, long long timeout_ms, struct vgpu_xen_agent **out, char *version,
			   size_t version_len, struct vgpu_err *err);
void vgpu_xen_agent_close(struct vgpu_xen_agent *a);

/* Round trip; -ETIMEDOUT, -EPIPE (channel gone), -EPROTO (garbage). */
int vgpu_xen_agent_ping(struct vgpu_xen_agent *a, long long timeout_ms, struct vgpu_err *err);

/* Run argv in the guest; exit code (-signal if killed), stdout and stderr (malloc'd, NUL-terminated
 * beyond their lengths; the caller frees). */
struct vgpu_xen_exec_result {
	int exit_code;
	char *out, *errout;
	size_t out_len, err_len;
};
int vgpu_xen_agent_exec(struct vgpu_xen_agent *a, const char *const *argv, uint32_t timeout_ms,
			struct vgpu_xen_exec_result *res, struct vgpu_err *err);
void vgpu_xen_exec_result_free(struct vgpu_xen_exec_result *res);

/* Ask the agent to power the domain off (no reply: the guest goes away). */
int vgpu_xen_agent_poweroff(struct vgpu_xen_agent *a, struct vgpu_err *err);

/* After a channel error (timeout, closed, garbage) the connection is out of step: close it. An
 * ERROR reply from the agent leaves it usable. */
bool vgpu_xen_agent_broken(const struct vgpu_xen_agent *a);
uint32_t vgpu_xen_agent_domid(const struct vgpu_xen_agent *a);

/* Containers in the guest (agent_proto.h): CREATE, START, STOP, REMOVE answer OK. Ids and
 * arguments are checked by the encoder (-EINVAL before anything is sent). */
int vgpu_xen_agent_ctr(struct vgpu_xen_agent *a, const struct agent_ctr_req *req, long long timeout_ms,
		       struct vgpu_err *err);
int vgpu_xen_agent_ctr_status(struct vgpu_xen_agent *a, const char *id, struct agent_ctr_state *st,
			      struct vgpu_err *err);
/* out->data points into the connection's buffer: valid until the next call on a. */
int vgpu_xen_agent_ctr_logs(struct vgpu_xen_agent *a, const char *id, uint64_t offset, uint32_t max_bytes,
			    struct agent_ctr_log_data *out, struct vgpu_err *err);
int vgpu_xen_agent_ctr_exec(struct vgpu_xen_agent *a, const char *id, char *const *argv, uint32_t timeout_ms,
			    struct vgpu_xen_exec_result *res, struct vgpu_err *err);

/* CTR_STATS: the container's cgroup counters in the guest. */
int vgpu_xen_agent_ctr_stats(struct vgpu_xen_agent *a, const char *id, struct agent_ctr_stats *st,
			     long long timeout_ms, struct vgpu_err *err);
/* NET_CONFIG: the pod's addresses, routes, MTU on the guest interface with nc->mac (-EINVAL for a
 * config the protocol refuses, before anything is sent). */
int vgpu_xen_agent_net_config(struct vgpu_xen_agent *a, const struct agent_net_config *nc, long long timeout_ms,
			      struct vgpu_err *err);

/* CTR_EXEC_STREAM / CTR_ATTACH_STREAM: the agent starts serving the session on a vchan of its
 * own; path gets its xenstore path relative to the guest's home (agent_proto.h). */
int vgpu_xen_agent_stream_open(struct vgpu_xen_agent *a, const struct agent_stream_req *req, long long timeout_ms,
			       char path[AGENT_STREAM_PATH_MAX], struct vgpu_err *err);

/* VOL_PUT: a copy-in volume's whole record stream (xen_vol.h), in chunks, BEGIN..END; flags
 * AGENT_VOL_REPLACE / AGENT_VOL_ISFILE. timeout_ms per chunk. */
int vgpu_xen_agent_vol_put(struct vgpu_xen_agent *a, const char *key, uint32_t flags, const void *stream, size_t len,
			   long long timeout_ms, struct vgpu_err *err);
/* VOL_GET: the guest's copy of the FILE volume key (at most AGENT_VOL_GET_MAX bytes, checked); out
 * points into the connection's buffer, valid until its next request. */
int vgpu_xen_agent_vol_get(struct vgpu_xen_agent *a, const char *key, long long timeout_ms, struct agent_vol_data *out,
			   struct vgpu_err *err);

#endif
