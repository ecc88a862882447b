/* vgpu-stream-testd: the streaming server with the host TEST BACKEND (streaming_test_backend.h),
 * driven over stdin/stdout by the integration tests and the benchmark. The CRI handlers
 * (vgpu_rpc_exec etc.) are called exactly as the gRPC plumbing calls them.
 *
 *   argv: [--token-ttl-ms N] [--create-timeout-ms N] [--http-timeout-s N] [--address HOST:PORT]
 *   prints "READY <base-url> <pid>" then answers one line per JSON command on stdin:
 *     {"op":"exec","id":"c1","cmd":["sh","-c","..."],"tty":false,"stdin":true,"stdout":true,"stderr":true}
 *     {"op":"attach","id":"c1",...}   {"op":"portforward","id":"pod1","ports":[8080]}
 *     {"op":"container","id":"c1","cmd":[...]}   (an attachable test "container")
 *     {"op":"sessions"}
 *   with "OK <url-or-value>" or "ERR <grpc-ish code> <message>". EOF on stdin stops the server. */
#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cri-api.pb-c.h"
#include "daemon.h"
#include "log.h"
#include "streaming.h"
#include "streaming_test_backend.h"
#include "util.h"

static bool get_bool(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

static const char *get_str(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "";
}

/* NULL-terminated copy of o[k] (array of strings); the strings belong to o. */
static char **get_strv(json_object *o, const char *k, size_t *n)
{
	json_object *v;
	*n = 0;
	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_array))
		return vgpu_calloc(1, sizeof(char *));
	*n = json_object_array_length(v);
	char **out = vgpu_calloc(*n + 1, sizeof(char *));
	for (size_t i = 0; i < *n; i++)
		out[i] = (char *)json_object_get_string(json_object_array_get_idx(v, i));
	return out;
}

static void reply_rpc(int r, ProtobufCMessage *resp, const char *url, struct vgpu_err *err)
{
	if (r < 0)
		printf("ERR %d %s\n", -r, err->msg);
	else
		printf("OK %s\n", url ? url : "");
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
}

static void handle(struct vgpu_daemon *d, json_object *o)
{
	const char *op = get_str(o, "op");
	struct vgpu_err err = { 0 };
	ProtobufCMessage *resp = NULL;
	size_t n = 0;
	int r;
	if (strcmp(op, "exec") == 0) {
		Runtime__V1__ExecRequest req = RUNTIME__V1__EXEC_REQUEST__INIT;
		req.container_id = (char *)get_str(o, "id");
		req.cmd = get_strv(o, "cmd", &n);
		req.n_cmd = n;
		req.tty = get_bool(o, "tty");
		req.stdin = get_bool(o, "stdin");
		req.stdout = get_bool(o, "stdout");
		req.stderr = get_bool(o, "stderr");
		r = vgpu_rpc_exec(d, &req.base, &resp, &err);
		reply_rpc(r, resp, r == 0 ? ((Runtime__V1__ExecResponse *)resp)->url : "", &err);
		free(req.cmd);
	} else if (strcmp(op, "attach") == 0) {
		Runtime__V1__AttachRequest req = RUNTIME__V1__ATTACH_REQUEST__INIT;
		req.container_id = (char *)get_str(o, "id");
		req.tty = get_bool(o, "tty");
		req.stdin = get_bool(o, "stdin");
		req.stdout = get_bool(o, "stdout");
		req.stderr = get_bool(o, "stderr");
		r = vgpu_rpc_attach(d, &req.base, &resp, &err);
		reply_rpc(r, resp, r == 0 ? ((Runtime__V1__AttachResponse *)resp)->url : "", &err);
	} else if (strcmp(op, "portforward") == 0) {
		Runtime__V1__PortForwardRequest req = RUNTIME__V1__PORT_FORWARD_REQUEST__INIT;
		req.pod_sandbox_id = (char *)get_str(o, "id");
		json_object *ports;
		int32_t port_buf[8];
		if (json_object_object_get_ex(o, "ports", &ports)) {
			for (size_t i = 0; i < json_object_array_length(ports) && i < 8; i++)
				port_buf[req.n_port++] = json_object_get_int(json_object_array_get_idx(ports, i));
			req.port = port_buf;
		}
		r = vgpu_rpc_port_forward(d, &req.base, &resp, &err);
		reply_rpc(r, resp, r == 0 ? ((Runtime__V1__PortForwardResponse *)resp)->url : "", &err);
	} else if (strcmp(op, "container") == 0) {
		char **cmd = get_strv(o, "cmd", &n);
		r = vgpu_stream_test_backend_add_container(get_str(o, "id"), cmd, &err);
		free(cmd);
		reply_rpc(r, NULL, "container", &err);
	} else if (strcmp(op, "sessions") == 0) {
		printf("OK %zu\n", vgpu_streaming_sessions(d->streaming));
	} else {
		printf("ERR %d unknown op %s\n", EINVAL, op);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct vgpu_streaming_opts opts = { .address = "127.0.0.1:0" };
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--token-ttl-ms") == 0)
			opts.token_ttl_ms = atoll(argv[i + 1]);
		else if (strcmp(argv[i], "--create-timeout-ms") == 0)
			opts.stream_create_timeout_ms = atoll(argv[i + 1]);
		else if (strcmp(argv[i], "--http-timeout-s") == 0)
			opts.http_timeout_s = (unsigned int)atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--address") == 0)
			opts.address = argv[i + 1];
	}
	signal(SIGPIPE, SIG_IGN);
	if (getenv("VGPU_STREAM_TESTD_DEBUG"))
		vgpu_log_set_level(VGPU_LOG_DEBUG);
	struct vgpu_stream_backend backend;
	vgpu_stream_test_backend_init(&backend);
	struct vgpu_daemon d;
	memset(&d, 0, sizeof(d));
	struct vgpu_err err = { 0 };
	if (vgpu_streaming_start(&opts, &backend, &d.streaming, &err) < 0) {
		fprintf(stderr, "stream_testd: %s\n", err.msg);
		return 1;
	}
	printf("READY %s %d\n", vgpu_streaming_base_url(d.streaming), (int)getpid());
	fflush(stdout);
	char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, stdin) > 0) {
		json_object *o = json_tokener_parse(line);
		if (!o) {
			printf("ERR %d bad json\n", EINVAL);
			fflush(stdout);
			continue;
		}
		handle(&d, o);
		json_object_put(o);
	}
	free(line);
	vgpu_streaming_stop(d.streaming);
	vgpu_stream_test_backend_cleanup();
	return 0;
}
