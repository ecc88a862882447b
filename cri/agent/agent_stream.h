/* Interactive streams in the guest (vgpu-agent): Exec with stdin/tty and Attach of the CRI
 * streaming server reach a container through a vchan of their own, so that a long session never
 * sits on the agent's control channel (which serves one daemon request at a time).
 *
 * CTR_EXEC_STREAM / CTR_ATTACH_STREAM (agent_proto.h) fork a stream child of the agent that
 * offers a fresh vchan at data/vgpu-stream-<n>; the agent answers STREAM_OPENED with that path
 * once the child's xenstore keys are written. When the daemon has connected, the child starts the
 * process (exec: `runc exec --pid-file F [--tty] ID CMD...` on pipes, or on the slave of a pty of
 * the child's whose master it pumps; attach: the container's log records from their current end
 * and the container's stdin FIFO) and moves frames both ways until the process exited (EXIT with
 * its code), the daemon asked to KILL, closed the vchan, or went silent: then the exec'd process
 * is killed, the child exits and the vchan's keys go.
 *
 * POD_PORTFWD_STREAM (CRI PortForward) connects to 127.0.0.1:port in the agent's own network
 * namespace, which is the pod's (containers of xen pods share the guest's), before the child is
 * forked: a refused connection is the request's ERROR. The child relays the connection's bytes
 * (STDIN / STDOUT frames, half-closes both ways) and ends once both directions are closed, or with
 * a STDERR text and EXIT errno when a read or write on the connection fails.
 *
 * A container created with CRI `stdin` gets a FIFO <bundle>/stdin as its stdin (the shepherd,
 * agent_ctr.c, keeps a writer open so the container sees no EOF between attaches). With
 * `stdin_once`, the first attach that brought stdin and ends it makes <bundle>/stdin-closed; the
 * shepherd then drops its writer, so the container reads EOF. */
#ifndef VGPU_AGENT_STREAM_H
#define VGPU_AGENT_STREAM_H

#include "agent_ctr.h"
#include "agent_proto.h"

/* The markers the daemon puts into a container's OCI annotations (the agent parses no JSON: it
 * looks for the exact text, which JSON escaping cannot fake inside another string). */
#define AGENT_STDIN_ANNOTATION "\"io.vgpu-cri.stdin\":\"true\""
#define AGENT_STDIN_ONCE_ANNOTATION "\"io.vgpu-cri.stdin-once\":\"true\""
#define AGENT_TTY_ANNOTATION "\"io.vgpu-cri.tty\":\"true\""
/* A container with a terminal (CRI tty; the spec's process.terminal): runc makes the pty and
 * sends its master to the shepherd (--console-socket), which logs the pty's output as stdout and
 * hands a copy of the master to every attach session that connects to <bundle>/AGENT_TTY_SOCKET
 * (it writes the session's stdin into it and sets its window size; the kernel sends the
 * container SIGWINCH). Such a container has no stdin FIFO: <bundle>/AGENT_TTY_STDIN_FILE says it
 * was created with CRI stdin. An attach's tty flag must match <bundle>/AGENT_TTY_FILE. Several sessions at once all see the output (from the log) and all
 * type into the terminal, as on runc pods; stdin_once: after the first session with stdin ends,
 * later sessions' input is dropped (the terminal stays open: EOF on a terminal is a typed ^D). */
#define AGENT_TTY_SOCKET "tty.sock"
#define AGENT_TTY_FILE "tty"             /* <bundle>/tty: the container has a terminal */
#define AGENT_TTY_STDIN_FILE "tty-stdin"

/* In the agent (PID 1): check the container (port-forward: connect to the port), fork the stream
 * child, wait until it offers its vchan; path gets its xenstore path. 0 or -errno with msg
 * (AGENT_CTR_MSG_MAX). */
int agent_stream_open(const struct agent_ctr_env *env, const struct agent_stream_req *req,
		      char path[AGENT_STREAM_PATH_MAX], char *msg);

#endif
