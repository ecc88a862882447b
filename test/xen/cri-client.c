/* cri-client: a tiny CRI client over gRPC core for the Xen test bed's dom0 (python is too heavy for
 * its initramfs). One RPC per invocation, results as "CRI ..." lines for the scenario to check.
 *   cri-client [-s SOCKET] [-t TIMEOUT_S] version
 *   cri-client ... run-pod NAME HANDLER [MEMORY_BYTES]      -> "CRI pod <id>"
 *   cri-client ... status ID                                -> "CRI status <id> <STATE> handler=... info=<json>"
 *   cri-client ... list                                     -> "CRI list n=<count>" + "CRI item <id> <STATE> <name>"
 *   cri-client ... stop ID | remove ID                      -> "CRI stopped <id>" | "CRI removed <id>"
 * Exit 0 on OK; on a gRPC error prints "CRI error <method> code=<n> <details>" and exits 10 + code. */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cri-api.pb-c.h"
#include "cri_client.h"

static int timeout_s = 300;
static int last_status;

static ProtobufCMessage *unary(grpc_channel *ch, const char *method, const ProtobufCMessage *req,
			       const ProtobufCMessageDescriptor *reply_desc)
{
	int status;
	char *details = NULL;
	ProtobufCMessage *reply = vgpu_cri_unary(ch, method, req, reply_desc, timeout_s, &status, &details);
	last_status = status;
	if (!reply && status != 0)
		printf("CRI error %s code=%d %s\n", method, status, details ? details : "");
	else if (!reply)
		printf("CRI error %s %s\n", method, details ? details : "undecodable reply");
	free(details);
	return reply;
}

#define RT "/runtime.v1.RuntimeService/"

static const char *state_name(Runtime__V1__PodSandboxState st)
{
	return st == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY ? "READY" : "NOTREADY";
}

static int cmd_version(grpc_channel *ch)
{
	Runtime__V1__VersionRequest req = RUNTIME__V1__VERSION_REQUEST__INIT;
	Runtime__V1__VersionResponse *r = (Runtime__V1__VersionResponse *)unary(
		ch, RT "Version", &req.base, &runtime__v1__version_response__descriptor);
	if (!r)
		return 1;
	printf("CRI version %s %s\n", r->runtime_name, r->runtime_version);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int cmd_run_pod(grpc_channel *ch, const char *name, const char *handler, const char *memory)
{
	Runtime__V1__PodSandboxMetadata md = RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
	Runtime__V1__PodSandboxConfig cfg = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
	Runtime__V1__LinuxPodSandboxConfig lx = RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__INIT;
	Runtime__V1__LinuxContainerResources res = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
	Runtime__V1__RunPodSandboxRequest req = RUNTIME__V1__RUN_POD_SANDBOX_REQUEST__INIT;
	char uid[128];
	snprintf(uid, sizeof(uid), "uid-%s", name);
	md.name = (char *)name;
	md.namespace_ = "xen-test";
	md.uid = uid;
	cfg.metadata = &md;
	cfg.hostname = (char *)name;
	cfg.log_directory = "/var/log/pods/xen-test";
	if (memory) {
		res.memory_limit_in_bytes = strtoll(memory, NULL, 10);
		lx.resources = &res;
		cfg.linux = &lx;
	}
	req.config = &cfg;
	req.runtime_handler = (char *)handler;
	Runtime__V1__RunPodSandboxResponse *r = (Runtime__V1__RunPodSandboxResponse *)unary(
		ch, RT "RunPodSandbox", &req.base, &runtime__v1__run_pod_sandbox_response__descriptor);
	if (!r)
		return 1;
	printf("CRI pod %s\n", r->pod_sandbox_id);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int cmd_status(grpc_channel *ch, const char *id)
{
	Runtime__V1__PodSandboxStatusRequest req = RUNTIME__V1__POD_SANDBOX_STATUS_REQUEST__INIT;
	req.pod_sandbox_id = (char *)id;
	req.verbose = 1;
	Runtime__V1__PodSandboxStatusResponse *r = (Runtime__V1__PodSandboxStatusResponse *)unary(
		ch, RT "PodSandboxStatus", &req.base, &runtime__v1__pod_sandbox_status_response__descriptor);
	if (!r)
		return 1;
	const char *info = "";
	for (size_t i = 0; i < r->n_info; i++)
		if (strcmp(r->info[i]->key, "info") == 0)
			info = r->info[i]->value;
	printf("CRI status %s %s handler=%s info=%s\n", r->status->id, state_name(r->status->state),
	       r->status->runtime_handler, info);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int cmd_list(grpc_channel *ch)
{
	Runtime__V1__ListPodSandboxRequest req = RUNTIME__V1__LIST_POD_SANDBOX_REQUEST__INIT;
	Runtime__V1__ListPodSandboxResponse *r = (Runtime__V1__ListPodSandboxResponse *)unary(
		ch, RT "ListPodSandbox", &req.base, &runtime__v1__list_pod_sandbox_response__descriptor);
	if (!r)
		return 1;
	printf("CRI list n=%zu\n", r->n_items);
	for (size_t i = 0; i < r->n_items; i++)
		printf("CRI item %s %s %s/%s handler=%s\n", r->items[i]->id, state_name(r->items[i]->state),
		       r->items[i]->metadata->namespace_, r->items[i]->metadata->name, r->items[i]->runtime_handler);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int cmd_stop(grpc_channel *ch, const char *id)
{
	Runtime__V1__StopPodSandboxRequest req = RUNTIME__V1__STOP_POD_SANDBOX_REQUEST__INIT;
	req.pod_sandbox_id = (char *)id;
	ProtobufCMessage *r = unary(ch, RT "StopPodSandbox", &req.base, &runtime__v1__stop_pod_sandbox_response__descriptor);
	if (!r)
		return 1;
	printf("CRI stopped %s\n", id);
	protobuf_c_message_free_unpacked(r, NULL);
	return 0;
}

static int cmd_remove(grpc_channel *ch, const char *id)
{
	Runtime__V1__RemovePodSandboxRequest req = RUNTIME__V1__REMOVE_POD_SANDBOX_REQUEST__INIT;
	req.pod_sandbox_id = (char *)id;
	ProtobufCMessage *r =
		unary(ch, RT "RemovePodSandbox", &req.base, &runtime__v1__remove_pod_sandbox_response__descriptor);
	if (!r)
		return 1;
	printf("CRI removed %s\n", id);
	protobuf_c_message_free_unpacked(r, NULL);
	return 0;
}

int main(int argc, char **argv)
{
	const char *sock = "/run/vgpu-cri/vgpu-cri.sock";
	int opt;
	while ((opt = getopt(argc, argv, "s:t:")) != -1) {
		if (opt == 's')
			sock = optarg;
		else if (opt == 't')
			timeout_s = atoi(optarg);
		else
			return 2;
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: cri-client [-s socket] [-t timeout_s] version|run-pod|status|list|stop|remove ...\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	grpc_init();
	char target[512];
	snprintf(target, sizeof(target), "unix://%s", sock);
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_channel *ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	const char *cmd = argv[optind];
	int n = argc - optind - 1;
	char **a = argv + optind + 1;
	int rc = 2;
	if (strcmp(cmd, "version") == 0)
		rc = cmd_version(ch);
	else if (strcmp(cmd, "run-pod") == 0 && n >= 2)
		rc = cmd_run_pod(ch, a[0], a[1], n >= 3 ? a[2] : NULL);
	else if (strcmp(cmd, "status") == 0 && n == 1)
		rc = cmd_status(ch, a[0]);
	else if (strcmp(cmd, "list") == 0)
		rc = cmd_list(ch);
	else if (strcmp(cmd, "stop") == 0 && n == 1)
		rc = cmd_stop(ch, a[0]);
	else if (strcmp(cmd, "remove") == 0 && n == 1)
		rc = cmd_remove(ch, a[0]);
	else
		fprintf(stderr, "cri-client: bad command or arguments: %s\n", cmd);
	if (rc == 1 && last_status > 0)
		rc = 10 + last_status;
	grpc_channel_destroy(ch);
	grpc_shutdown();
	return rc;
}
