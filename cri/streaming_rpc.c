/* CRI Exec, Attach and PortForward: validate the request and return a one-time URL on the
 * streaming server (streaming.c); the work happens when the client connects there. */
#include <errno.h>
#include <stdlib.h>

#include "cri-api.pb-c.h"
#include "daemon.h"
#include "streaming.h"
#include "util.h"

#define EXEC_MAX_ARGS 240

static int need_server(struct vgpu_daemon *d, struct vgpu_err *err)
{
	if (!d->streaming)
		return vgpu_err_set(err, -EAGAIN, "streaming server is not running");
	return 0;
}

int vgpu_rpc_exec(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
		  struct vgpu_err *err)
{
	const Runtime__V1__ExecRequest *req = (const Runtime__V1__ExecRequest *)req_msg;
	int r = need_server(d, err);
	if (r < 0)
		return r;
	if (req->n_cmd > EXEC_MAX_ARGS)
		return vgpu_err_set(err, -EINVAL, "exec %.80s: %zu arguments (max %d)", req->container_id, req->n_cmd,
				    EXEC_MAX_ARGS);
	char **cmd = vgpu_calloc(req->n_cmd + 1, sizeof(char *));
	for (size_t i = 0; i < req->n_cmd; i++)
		cmd[i] = req->cmd[i];
	struct vgpu_stream_exec_req er = {
		.container_id = req->container_id,
		.cmd = cmd,
		.tty = req->tty,
		.want_stdin = req->stdin,
		.want_stdout = req->stdout,
		.want_stderr = req->stderr,
	};
	char *url = NULL;
	r = vgpu_streaming_mint_exec(d->streaming, &er, false, &url, err);
	free(cmd);
	if (r < 0)
		return r;
	Runtime__V1__ExecResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__exec_response__init(out);
	out->url = url;
	*resp = &out->base;
	return 0;
}

int vgpu_rpc_attach(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
		    struct vgpu_err *err)
{
	const Runtime__V1__AttachRequest *req = (const Runtime__V1__AttachRequest *)req_msg;
	int r = need_server(d, err);
	if (r < 0)
		return r;
	struct vgpu_stream_exec_req er = {
		.container_id = req->container_id,
		.tty = req->tty,
		.want_stdin = req->stdin,
		.want_stdout = req->stdout,
		.want_stderr = req->stderr,
	};
	char *url = NULL;
	r = vgpu_streaming_mint_exec(d->streaming, &er, true, &url, err);
	if (r < 0)
		return r;
	Runtime__V1__AttachResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__attach_response__init(out);
	out->url = url;
	*resp = &out->base;
	return 0;
}

int vgpu_rpc_port_forward(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			  struct vgpu_err *err)
{
	const Runtime__V1__PortForwardRequest *req = (const Runtime__V1__PortForwardRequest *)req_msg;
	int r = need_server(d, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < req->n_port; i++)
		if (req->port[i] < 1 || req->port[i] > 65535)
			return vgpu_err_set(err, -EINVAL, "portforward %.80s: invalid port %d", req->pod_sandbox_id,
					    req->port[i]);
	char *url = NULL;
	r = vgpu_streaming_mint_port_forward(d->streaming, req->pod_sandbox_id, &url, err);
	if (r < 0)
		return r;
	Runtime__V1__PortForwardResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__port_forward_response__init(out);
	out->url = url;
	*resp = &out->base;
	return 0;
}

int vgpu_streaming_daemon_start(struct vgpu_daemon *d, const struct vgpu_stream_backend *backend,
				struct vgpu_err *err)
{
	struct vgpu_streaming_opts opts = { .address = d->cfg->streaming_address };
	int r = vgpu_streaming_start(&opts, backend, &d->streaming, err);
	if (r < 0)
		return vgpu_err_prefix(err, "streaming server");
	return 0;
}

void vgpu_streaming_daemon_stop(struct vgpu_daemon *d)
{
	vgpu_streaming_stop(d->streaming);
	d->streaming = NULL;
}
