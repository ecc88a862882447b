/* Exec and Attach of containers in xen pods, and PortForward into xen pods (internal to cri/): the streaming server's backend
 * (container_stream.c) hands the session plain pipes, exactly as for runc containers; behind them
 * a pump thread per session moves frames over a vchan of the session's own that the guest agent
 * offers on request (agent_stream.h: CTR_EXEC_STREAM / CTR_ATTACH_STREAM on the pod's control
 * connection, which is held only for that request). The session ends when the guest reports the
 * exit, and also, in bounded time, when the guest side closes, goes silent
 * (AGENT_STREAM_SILENCE_MS), writes garbage, or the domain disappears from xenstore (checked
 * every second): then the pipes reach EOF, exit_fd becomes readable and finish reports why. */
#ifndef VGPU_XEN_STREAM_H
#define VGPU_XEN_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "streaming.h"

struct vgpu_pod_manager;
struct vgpu_container;
struct vgpu_xen_stream;

/* Start req (exec, or attach when attach is set) for c (a container of a xen pod, running) and
 * fill proc's fds (stdin_fd write end, stdout_fd/stderr_fd read ends, exit_fd); *out is the
 * session's state, owned by the caller until vgpu_xen_stream_finish. */
int vgpu_xen_stream_start(struct vgpu_pod_manager *m, struct vgpu_container *c, const struct vgpu_stream_exec_req *req,
			  bool attach, struct vgpu_stream_proc *proc, struct vgpu_xen_stream **out, struct vgpu_err *err);
/* Ask the guest to set the tty's size (queued; the pump thread sends it). */
int vgpu_xen_stream_resize(struct vgpu_xen_stream *xs, uint16_t width, uint16_t height, struct vgpu_err *err);
/* End the session: with kill the guest kills the process (exec) or detaches (attach); join the
 * pump thread, close the vchan and the pump's ends of the pipes, free xs. *exit_code is the
 * process's (exec), 0 for attach; an error when the guest side went away without one. */
int vgpu_xen_stream_finish(struct vgpu_xen_stream *xs, bool kill, int *exit_code, struct vgpu_err *err);

/* PortForward into a xen pod: the guest's agent connects to 127.0.0.1:port in the pod (an error,
 * e.g. ECONNREFUSED with the guest's text, when it cannot); *fd_out is one end of a socket pair
 * (O_CLOEXEC, owned by the caller) that behaves as that connection: bytes both ways, shutdown
 * SHUT_WR reaches the port as EOF, the port's EOF reads as EOF. A detached pump thread relays the
 * other end over a vchan of its own and ends, freeing everything, when both directions ended, the
 * caller closed fd_out, or the guest went away (then fd_out reads EOF). Shares the cap of
 * sessions with exec/attach. */
int vgpu_xen_stream_port_forward(struct vgpu_pod_manager *m, const char *sandbox_id, uint16_t port, int *fd_out,
				 struct vgpu_err *err);

/* Sessions of xen containers and port-forward connections alive now (tests, logs). */
unsigned int vgpu_xen_streams_live(void);

#endif
