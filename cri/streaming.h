/* The streaming server behind Exec, Attach and PortForward: the RPCs mint a one-time token and
 * return http://ADDR/{exec,attach,portforward}/TOKEN; kubelet or crictl then connect there and
 * speak Kubernetes' remote-command or port-forward protocol over SPDY/3.1 (HTTP Upgrade) or
 * WebSocket. The protocol side knows nothing about containers: it runs processes and opens pod
 * connections through struct vgpu_stream_backend, which the pod code provides. See
 * docs/streaming.md. */
#ifndef VGPU_STREAMING_H
#define VGPU_STREAMING_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct vgpu_daemon;
struct vgpu_streaming;

/* What an Exec or Attach asked for (copied out of the CRI request into the token). */
struct vgpu_stream_exec_req {
	char *container_id;
	char **cmd;        /* NULL-terminated; NULL for attach */
	bool tty;
	bool want_stdin, want_stdout, want_stderr;
};

/* A started process (exec) or an attached container's stdio (attach), filled by the backend.
 * The session owns and closes every fd here when it ends (after calling backend->finish).
 * Unused fds are -1. With tty, the terminal's master side is stdout_fd, and stdin_fd may be the
 * same descriptor number or a dup of it. */
struct vgpu_stream_proc {
	int stdin_fd;   /* we write the client's stdin here (non-blocking is set by the session) */
	int stdout_fd;  /* we read the process's stdout (or the tty) from here */
	int stderr_fd;  /* we read the process's stderr from here */
	int exit_fd;    /* readable once the process has exited (e.g. a pidfd); -1 for attach */
	void *handle;   /* backend's own state for finish/resize */
};

/* The operations the streaming server needs from the runtime. All may run concurrently on
 * session threads; ctx is the backend's. Errors follow err.h (0 / -errno + message). */
struct vgpu_stream_backend {
	void *ctx;
	/* At RPC time (optional, NULL = accept): does the container (kind "exec"/"attach") or pod
	 * sandbox (kind "portforward") exist and is it in a state that allows the operation?
	 * -ENOENT: no such object; -EBUSY: not running. */
	int (*check)(void *ctx, const char *kind, const char *id, struct vgpu_err *err);
	/* At Attach RPC time, after check (optional): does the request fit how the container was
	 * created (stdin only if it has stdin, tty as its own)? -EINVAL otherwise. */
	int (*attach_check)(void *ctx, const struct vgpu_stream_exec_req *req, struct vgpu_err *err);
	/* Start req->cmd in container req->container_id with the requested stdio (a pty when
	 * req->tty). Returns immediately; proc->exit_fd must become readable when it exits. */
	int (*exec_start)(void *ctx, const struct vgpu_stream_exec_req *req, struct vgpu_stream_proc *proc,
			  struct vgpu_err *err);
	/* Attach to a running container's stdio as held by its monitor (stdin only if the container
	 * was created with stdin; stdin_once honoured by the monitor). exit_fd may be -1: the session
	 * then ends when the output fds reach EOF. */
	int (*attach_start)(void *ctx, const struct vgpu_stream_exec_req *req, struct vgpu_stream_proc *proc,
			    struct vgpu_err *err);
	/* Set the terminal size of a tty exec/attach. */
	int (*resize)(void *ctx, struct vgpu_stream_proc *proc, uint16_t width, uint16_t height,
		      struct vgpu_err *err);
	/* End an exec/attach: for exec, kill the process first when kill is set (the client went
	 * away), then reap it and store its exit code (128+signal when killed by a signal); for
	 * attach, detach. Frees proc->handle; must not close the fds in proc. */
	int (*finish)(void *ctx, struct vgpu_stream_proc *proc, bool kill, int *exit_code, struct vgpu_err *err);
	/* Connect to TCP port on 127.0.0.1 inside the pod sandbox's network namespace; *fd_out a
	 * connected stream socket the session owns. */
	int (*port_forward)(void *ctx, const char *sandbox_id, uint16_t port, int *fd_out, struct vgpu_err *err);
};

struct vgpu_streaming_opts {
	const char *address;       /* "HOST:PORT", "[V6]:PORT"; port 0 = pick one */
	long long token_ttl_ms;    /* 0 = 60000, as kubelet */
	long long stream_create_timeout_ms; /* waiting for the client's SPDY streams; 0 = 30000 */
	size_t max_tokens;         /* 0 = 1000 */
	unsigned int http_timeout_s; /* idle HTTP connections before the upgrade; 0 = 60 */
};

/* Start the server (its own threads). backend is copied; backend->ctx must outlive the server. */
int vgpu_streaming_start(const struct vgpu_streaming_opts *opts, const struct vgpu_stream_backend *backend,
			 struct vgpu_streaming **out, struct vgpu_err *err);
/* End every session (exec'd processes are killed, attaches detached), stop listening, free. */
void vgpu_streaming_stop(struct vgpu_streaming *s);
/* "http://127.0.0.1:PORT" (owned by s). */
const char *vgpu_streaming_base_url(const struct vgpu_streaming *s);
/* Number of live sessions (for tests and shutdown logging). */
size_t vgpu_streaming_sessions(struct vgpu_streaming *s);

/* Mint a one-time URL. Validates like kubelet (exec: container id and command set, tty excludes
 * stderr, at least one stream). *url is malloc'd. */
int vgpu_streaming_mint_exec(struct vgpu_streaming *s, const struct vgpu_stream_exec_req *req, bool attach,
			     char **url, struct vgpu_err *err);
int vgpu_streaming_mint_port_forward(struct vgpu_streaming *s, const char *sandbox_id, char **url,
				     struct vgpu_err *err);

/* Daemon glue: start the server on d->cfg->streaming_address with backend (whose NULL ops make
 * the matching RPCs answer UNIMPLEMENTED) and set d->streaming; stop it and clear the field. */
int vgpu_streaming_daemon_start(struct vgpu_daemon *d, const struct vgpu_stream_backend *backend,
				struct vgpu_err *err);
void vgpu_streaming_daemon_stop(struct vgpu_daemon *d);

/* CRI handlers (rpc.h). They use d->streaming; -EAGAIN (UNAVAILABLE) when it is not running. */
int vgpu_rpc_exec(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
		  struct vgpu_err *err);
int vgpu_rpc_attach(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
		    struct vgpu_err *err);
int vgpu_rpc_port_forward(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			  struct vgpu_err *err);

#endif
