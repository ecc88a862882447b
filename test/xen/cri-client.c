/* cri-client: a tiny CRI client over gRPC core for the Xen test bed's dom0 (python is too heavy for
 * its initramfs). One RPC per invocation, results as "CRI ..." lines for the scenario to check.
 *   cri-client [-s SOCKET] [-t TIMEOUT_S] version
 *   cri-client ... run-pod NAME HANDLER [MEMORY_BYTES]      -> "CRI pod <id>"
 *   cri-client ... status ID                                -> "CRI status <id> <STATE> handler=... ip=<ip> info=<json>"
 *   cri-client ... list                                     -> "CRI list n=<count>" + "CRI item <id> <STATE> <name>"
 *   cri-client ... stop ID | remove ID                      -> "CRI stopped <id>" | "CRI removed <id>"
 *   cri-client ... pull IMAGE                               -> "CRI image <ref>"
 *   cri-client ... create POD NAME IMAGE [CMD...]           -> "CRI container <id>" (log NAME/0.log)
 *   cri-client ... start CID | cstop CID TIMEOUT_S | cremove CID -> "CRI started|cstopped|cremoved <cid>"
 *   cri-client ... cstatus CID                              -> "CRI cstatus <cid> <STATE> exit=<n> reason=<r> log=<path>"
 *   cri-client ... clist                                    -> "CRI clist n=<count>" + "CRI citem <cid> <STATE> <name>"
 *   cri-client ... exec CID TIMEOUT_S CMD...                -> "CRI exec exit=<n> stdout=<text> stderr=<text>"
 *   cri-client ... cstats CID | lstats | pstats POD         -> "CRI cstats <cid> cpu_ns=.. nano_cores=.. mem_usage=.. ..."
 *   cri-client ... update CID MEMORY_BYTES                  -> "CRI updated <cid>" (UpdateContainerResources)
 *   cri-client ... stream exec|attach CID [opts] [CMD...]   -> "CRI stream exit=<n> stdout=.. stderr=.." (cmd_stream)
 *   cri-client ... portforward POD PORT                     -> "CRI portforward <url>"
 *   cri-client ... pf POD PORT [opts]                       -> "CRI pf conn=<k> bytes=<n> .." (cmd_pf)
 * Env: CRI_GPU_MEMORY=<quantity> makes run-pod a GPU pod (vgpu.io/gpu=true, vgpu.io/gpu-memory);
 * CRI_ENV="K=V K=V" adds environment to create (CRI_STDIN, CRI_STDIN_ONCE, CRI_TTY: its flags); CRI_MOUNTS="HOST:CTR[:ro][:hostToContainer|:bidirectional] ..."
 * its mounts; status also prints the pod's "gpu" info as gpu=<json>.
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
#include "cri-stream.h"

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
	/* a GPU pod (scenario gpu): annotations as kubelet passes them */
	const char *gpu_mem = getenv("CRI_GPU_MEMORY");
	Runtime__V1__PodSandboxConfig__AnnotationsEntry ann[2] = {
		RUNTIME__V1__POD_SANDBOX_CONFIG__ANNOTATIONS_ENTRY__INIT,
		RUNTIME__V1__POD_SANDBOX_CONFIG__ANNOTATIONS_ENTRY__INIT };
	Runtime__V1__PodSandboxConfig__AnnotationsEntry *annp[2] = { &ann[0], &ann[1] };
	if (gpu_mem && *gpu_mem) {
		ann[0].key = "vgpu.io/gpu";
		ann[0].value = "true";
		ann[1].key = "vgpu.io/gpu-memory";
		ann[1].value = (char *)gpu_mem;
		cfg.annotations = annp;
		cfg.n_annotations = 2;
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
	const char *info = "", *gpu = NULL;
	for (size_t i = 0; i < r->n_info; i++) {
		if (strcmp(r->info[i]->key, "info") == 0)
			info = r->info[i]->value;
		else if (strcmp(r->info[i]->key, "gpu") == 0)
			gpu = r->info[i]->value;
	}
	if (gpu)
		printf("CRI gpu %s %s\n", r->status->id, gpu);
	printf("CRI status %s %s handler=%s ip=%s info=%s\n", r->status->id, state_name(r->status->state),
	       r->status->runtime_handler, r->status->network && r->status->network->ip ? r->status->network->ip : "",
	       info);
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

#define IS "/runtime.v1.ImageService/"

static const char *ctr_state_name(Runtime__V1__ContainerState st)
{
	switch (st) {
	case RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED: return "CREATED";
	case RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING: return "RUNNING";
	case RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED: return "EXITED";
	default: return "UNKNOWN";
	}
}

static int cmd_pull(grpc_channel *ch, const char *image)
{
	Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
	Runtime__V1__PullImageRequest req = RUNTIME__V1__PULL_IMAGE_REQUEST__INIT;
	spec.image = (char *)image;
	req.image = &spec;
	Runtime__V1__PullImageResponse *r = (Runtime__V1__PullImageResponse *)unary(
		ch, IS "PullImage", &req.base, &runtime__v1__pull_image_response__descriptor);
	if (!r)
		return 1;
	printf("CRI image %s\n", r->image_ref);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int cmd_create(grpc_channel *ch, const char *pod, const char *name, const char *image, int n_cmd, char **cmd)
{
	Runtime__V1__ContainerMetadata md = RUNTIME__V1__CONTAINER_METADATA__INIT;
	Runtime__V1__ImageSpec spec = RUNTIME__V1__IMAGE_SPEC__INIT;
	Runtime__V1__ContainerConfig cfg = RUNTIME__V1__CONTAINER_CONFIG__INIT;
	Runtime__V1__CreateContainerRequest req = RUNTIME__V1__CREATE_CONTAINER_REQUEST__INIT;
	char log_path[300];
	snprintf(log_path, sizeof(log_path), "%s/0.log", name);
	md.name = (char *)name;
	spec.image = (char *)image;
	cfg.metadata = &md;
	cfg.image = &spec;
	cfg.log_path = log_path;
	if (n_cmd > 0) {
		cfg.command = cmd;
		cfg.n_command = (size_t)n_cmd;
	}
	/* CRI_ENV="K=V K=V": the container's environment */
	Runtime__V1__KeyValue kv[16], *kvp[16];
	char envbuf[1024] = "";
	const char *env = getenv("CRI_ENV");
	if (env)
		snprintf(envbuf, sizeof(envbuf), "%s", env);
	size_t n_env = 0;
	for (char *save = NULL, *tok = strtok_r(envbuf, " ", &save); tok && n_env < 16; tok = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(tok, '=');
		if (!eq)
			continue;
		*eq = '\0';
		runtime__v1__key_value__init(&kv[n_env]);
		kv[n_env].key = tok;
		kv[n_env].value.data = (uint8_t *)(eq + 1);
		kv[n_env].value.len = strlen(eq + 1);
		kvp[n_env] = &kv[n_env];
		n_env++;
	}
	cfg.envs = kvp;
	cfg.n_envs = n_env;
	/* CRI_MOUNTS="HOST:CTR[:ro][:hostToContainer|:bidirectional] ...": the container's mounts */
	Runtime__V1__Mount mnt[16], *mntp[16];
	char mntbuf[2048] = "";
	const char *mounts = getenv("CRI_MOUNTS");
	if (mounts)
		snprintf(mntbuf, sizeof(mntbuf), "%s", mounts);
	size_t n_mnt = 0;
	for (char *save = NULL, *tok = strtok_r(mntbuf, " ", &save); tok && n_mnt < 16; tok = strtok_r(NULL, " ", &save)) {
		char *ctr = strchr(tok, ':');
		if (!ctr)
			continue;
		*ctr++ = '\0';
		runtime__v1__mount__init(&mnt[n_mnt]);
		mnt[n_mnt].host_path = tok;
		mnt[n_mnt].container_path = ctr;
		for (char *opt = strchr(ctr, ':'); opt; opt = strchr(opt, ':')) {
			*opt++ = '\0';
			if (strncmp(opt, "ro", 2) == 0 && (opt[2] == ':' || !opt[2]))
				mnt[n_mnt].readonly = 1;
			else if (strncmp(opt, "hostToContainer", 15) == 0)
				mnt[n_mnt].propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER;
			else if (strncmp(opt, "bidirectional", 13) == 0)
				mnt[n_mnt].propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL;
		}
		mntp[n_mnt] = &mnt[n_mnt];
		n_mnt++;
	}
	cfg.mounts = mntp;
	cfg.n_mounts = n_mnt;
	/* CRI_STDIN=1 (and CRI_STDIN_ONCE=1): a container attach sessions can write to */
	cfg.stdin = getenv("CRI_STDIN") != NULL;
	cfg.stdin_once = getenv("CRI_STDIN_ONCE") != NULL;
	cfg.tty = getenv("CRI_TTY") != NULL; /* CRI_TTY=1: a container with a terminal */
	req.pod_sandbox_id = (char *)pod;
	req.config = &cfg;
	Runtime__V1__CreateContainerResponse *r = (Runtime__V1__CreateContainerResponse *)unary(
		ch, RT "CreateContainer", &req.base, &runtime__v1__create_container_response__descriptor);
	if (!r)
		return 1;
	printf("CRI container %s\n", r->container_id);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int cmd_start(grpc_channel *ch, const char *id)
{
	Runtime__V1__StartContainerRequest req = RUNTIME__V1__START_CONTAINER_REQUEST__INIT;
	req.container_id = (char *)id;
	ProtobufCMessage *r = unary(ch, RT "StartContainer", &req.base, &runtime__v1__start_container_response__descriptor);
	if (!r)
		return 1;
	printf("CRI started %s\n", id);
	protobuf_c_message_free_unpacked(r, NULL);
	return 0;
}

static int cmd_cstop(grpc_channel *ch, const char *id, const char *timeout)
{
	Runtime__V1__StopContainerRequest req = RUNTIME__V1__STOP_CONTAINER_REQUEST__INIT;
	req.container_id = (char *)id;
	req.timeout = atoll(timeout);
	ProtobufCMessage *r = unary(ch, RT "StopContainer", &req.base, &runtime__v1__stop_container_response__descriptor);
	if (!r)
		return 1;
	printf("CRI cstopped %s\n", id);
	protobuf_c_message_free_unpacked(r, NULL);
	return 0;
}

static int cmd_cremove(grpc_channel *ch, const char *id)
{
	Runtime__V1__RemoveContainerRequest req = RUNTIME__V1__REMOVE_CONTAINER_REQUEST__INIT;
	req.container_id = (char *)id;
	ProtobufCMessage *r =
		unary(ch, RT "RemoveContainer", &req.base, &runtime__v1__remove_container_response__descriptor);
	if (!r)
		return 1;
	printf("CRI cremoved %s\n", id);
	protobuf_c_message_free_unpacked(r, NULL);
	return 0;
}

static int cmd_cstatus(grpc_channel *ch, const char *id)
{
	Runtime__V1__ContainerStatusRequest req = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
	req.container_id = (char *)id;
	Runtime__V1__ContainerStatusResponse *r = (Runtime__V1__ContainerStatusResponse *)unary(
		ch, RT "ContainerStatus", &req.base, &runtime__v1__container_status_response__descriptor);
	if (!r)
		return 1;
	printf("CRI cstatus %s %s exit=%d reason=%s log=%s\n", r->status->id, ctr_state_name(r->status->state),
	       r->status->exit_code, r->status->reason, r->status->log_path);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int cmd_clist(grpc_channel *ch)
{
	Runtime__V1__ListContainersRequest req = RUNTIME__V1__LIST_CONTAINERS_REQUEST__INIT;
	Runtime__V1__ListContainersResponse *r = (Runtime__V1__ListContainersResponse *)unary(
		ch, RT "ListContainers", &req.base, &runtime__v1__list_containers_response__descriptor);
	if (!r)
		return 1;
	printf("CRI clist n=%zu\n", r->n_containers);
	for (size_t i = 0; i < r->n_containers; i++)
		printf("CRI citem %s %s %s\n", r->containers[i]->id, ctr_state_name(r->containers[i]->state),
		       r->containers[i]->metadata->name);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static unsigned long long u64v(const Runtime__V1__UInt64Value *v)
{
	return v ? (unsigned long long)v->value : 0;
}

static void print_ctr_stats(const Runtime__V1__ContainerStats *st)
{
	printf("CRI cstats %s cpu_ns=%llu nano_cores=%llu mem_usage=%llu mem_ws=%llu mem_avail=%llu\n", st->attributes->id,
	       st->cpu ? u64v(st->cpu->usage_core_nano_seconds) : 0, st->cpu ? u64v(st->cpu->usage_nano_cores) : 0,
	       st->memory ? u64v(st->memory->usage_bytes) : 0, st->memory ? u64v(st->memory->working_set_bytes) : 0,
	       st->memory ? u64v(st->memory->available_bytes) : 0);
}

static int cmd_cstats(grpc_channel *ch, const char *id)
{
	Runtime__V1__ContainerStatsRequest req = RUNTIME__V1__CONTAINER_STATS_REQUEST__INIT;
	req.container_id = (char *)id;
	Runtime__V1__ContainerStatsResponse *r = (Runtime__V1__ContainerStatsResponse *)unary(
		ch, RT "ContainerStats", &req.base, &runtime__v1__container_stats_response__descriptor);
	if (!r)
		return 1;
	print_ctr_stats(r->stats);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int cmd_lstats(grpc_channel *ch)
{
	Runtime__V1__ListContainerStatsRequest req = RUNTIME__V1__LIST_CONTAINER_STATS_REQUEST__INIT;
	Runtime__V1__ListContainerStatsResponse *r = (Runtime__V1__ListContainerStatsResponse *)unary(
		ch, RT "ListContainerStats", &req.base, &runtime__v1__list_container_stats_response__descriptor);
	if (!r)
		return 1;
	printf("CRI lstats n=%zu\n", r->n_stats);
	for (size_t i = 0; i < r->n_stats; i++)
		print_ctr_stats(r->stats[i]);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int cmd_pstats(grpc_channel *ch, const char *id)
{
	Runtime__V1__PodSandboxStatsRequest req = RUNTIME__V1__POD_SANDBOX_STATS_REQUEST__INIT;
	req.pod_sandbox_id = (char *)id;
	Runtime__V1__PodSandboxStatsResponse *r = (Runtime__V1__PodSandboxStatsResponse *)unary(
		ch, RT "PodSandboxStats", &req.base, &runtime__v1__pod_sandbox_stats_response__descriptor);
	if (!r)
		return 1;
	const Runtime__V1__LinuxPodSandboxStats *lx = r->stats->linux;
	printf("CRI pstats %s cpu_ns=%llu mem_ws=%llu containers=%zu\n", r->stats->attributes->id,
	       lx && lx->cpu ? u64v(lx->cpu->usage_core_nano_seconds) : 0,
	       lx && lx->memory ? u64v(lx->memory->working_set_bytes) : 0, lx ? lx->n_containers : 0);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

static int cmd_update(grpc_channel *ch, const char *id, const char *memory)
{
	Runtime__V1__LinuxContainerResources res = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
	Runtime__V1__UpdateContainerResourcesRequest req = RUNTIME__V1__UPDATE_CONTAINER_RESOURCES_REQUEST__INIT;
	res.memory_limit_in_bytes = strtoll(memory, NULL, 10);
	req.container_id = (char *)id;
	req.linux = &res;
	ProtobufCMessage *r = unary(ch, RT "UpdateContainerResources", &req.base,
				    &runtime__v1__update_container_resources_response__descriptor);
	if (!r)
		return 1;
	printf("CRI updated %s\n", id);
	protobuf_c_message_free_unpacked(r, NULL);
	return 0;
}

/* Output on one line: newlines as \n */
static void print_escaped(const char *label, const uint8_t *p, size_t n)
{
	printf(" %s=", label);
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n')
			fputs("\\n", stdout);
		else if (p[i] >= 32 && p[i] < 127)
			putchar(p[i]);
		else
			printf("\\x%02x", p[i]);
	}
}

static int cmd_exec(grpc_channel *ch, const char *id, const char *timeout, int n_cmd, char **cmd)
{
	Runtime__V1__ExecSyncRequest req = RUNTIME__V1__EXEC_SYNC_REQUEST__INIT;
	req.container_id = (char *)id;
	req.timeout = atoll(timeout);
	req.cmd = cmd;
	req.n_cmd = (size_t)n_cmd;
	Runtime__V1__ExecSyncResponse *r = (Runtime__V1__ExecSyncResponse *)unary(
		ch, RT "ExecSync", &req.base, &runtime__v1__exec_sync_response__descriptor);
	if (!r)
		return 1;
	printf("CRI exec exit=%d", r->exit_code);
	print_escaped("stdout", r->stdout.data, r->stdout.len);
	print_escaped("stderr", r->stderr.data, r->stderr.len);
	putchar('\n');
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* stream exec|attach CID [-T] [-S] [-E] [-i TEXT] [-d MS] [-c] [-r WxH] [-l TEXT] [-w S] [CMD...]:
 * Exec/Attach, then the session over WebSocket (cri-stream.c). -T tty, -S stdin, -E no stderr,
 * -i stdin text (implies -S), -d delay before it, -c close stdin after it, -r a resize first,
 * -l leave once stdout contains TEXT, -w session timeout. */
static int cmd_stream(grpc_channel *ch, int n, char **a)
{
	struct cri_stream_opts o = { .timeout_s = 120 };
	bool attach = strcmp(a[0], "attach") == 0, tty = false, want_stdin = false, want_stderr = true;
	int i = 2;
	for (; i < n && a[i][0] == '-' && a[i][1] && !a[i][2]; i++) {
		char f = a[i][1];
		const char *v = i + 1 < n ? a[i + 1] : NULL;
		if (f == 'T')
			tty = true, want_stderr = false;
		else if (f == 'S')
			want_stdin = true;
		else if (f == 'E')
			want_stderr = false;
		else if (f == 'c')
			o.close_stdin = want_stdin = true;
		else if (v && f == 'i')
			o.stdin_text = v, want_stdin = true, i++;
		else if (v && f == 'd')
			o.stdin_delay_ms = atoi(v), i++;
		else if (v && f == 'r')
			sscanf(v, "%dx%d", &o.width, &o.height), i++;
		else if (v && f == 'l')
			o.leave_after = v, i++;
		else if (v && f == 'w')
			o.timeout_s = atoi(v), i++;
		else
			return 2;
	}
	char *url = NULL;
	if (attach) {
		Runtime__V1__AttachRequest req = RUNTIME__V1__ATTACH_REQUEST__INIT;
		req.container_id = a[1];
		req.stdin = want_stdin;
		req.tty = tty;
		req.stdout = true;
		req.stderr = want_stderr;
		Runtime__V1__AttachResponse *r = (Runtime__V1__AttachResponse *)unary(
			ch, RT "Attach", &req.base, &runtime__v1__attach_response__descriptor);
		if (!r)
			return 1;
		url = strdup(r->url);
		protobuf_c_message_free_unpacked(&r->base, NULL);
	} else {
		Runtime__V1__ExecRequest req = RUNTIME__V1__EXEC_REQUEST__INIT;
		req.container_id = a[1];
		req.cmd = a + i;
		req.n_cmd = (size_t)(n - i);
		req.stdin = want_stdin;
		req.tty = tty;
		req.stdout = true;
		req.stderr = want_stderr;
		Runtime__V1__ExecResponse *r = (Runtime__V1__ExecResponse *)unary(
			ch, RT "Exec", &req.base, &runtime__v1__exec_response__descriptor);
		if (!r)
			return 1;
		url = strdup(r->url);
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
	int rc = url ? cri_stream_run(url, &o) : 1;
	free(url);
	return rc;
}

/* PortForward's URL (malloc'd), or NULL. */
static char *port_forward_url(grpc_channel *ch, const char *pod, const char *port)
{
	Runtime__V1__PortForwardRequest req = RUNTIME__V1__PORT_FORWARD_REQUEST__INIT;
	int32_t p = atoi(port);
	req.pod_sandbox_id = (char *)pod;
	req.port = &p;
	req.n_port = 1;
	Runtime__V1__PortForwardResponse *r = (Runtime__V1__PortForwardResponse *)unary(
		ch, RT "PortForward", &req.base, &runtime__v1__port_forward_response__descriptor);
	if (!r)
		return NULL;
	char *url = strdup(r->url);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return url;
}

static int cmd_port_forward(grpc_channel *ch, const char *pod, const char *port)
{
	char *url = port_forward_url(ch, pod, port);
	if (!url)
		return 1;
	printf("CRI portforward %s\n", url);
	free(url);
	return 0;
}

/* pf POD PORT [-n CONNS] [-i FILE] [-o PREFIX] [-H] [-w S]: PortForward, then CONNS connections to
 * PORT at once over the session (cri-stream.c): FILE sent on each then half-closed (-H without
 * -i: never half-closed), what comes back into PREFIX.<k>, -w the session's timeout. */
static int cmd_pf(grpc_channel *ch, int n, char **a)
{
	struct cri_pf_opts o = { .port = atoi(a[1]), .conns = 1, .timeout_s = 120 };
	for (int i = 2; i < n; i++) {
		const char *v = i + 1 < n ? a[i + 1] : NULL;
		if (strcmp(a[i], "-H") == 0)
			o.hold = true;
		else if (v && strcmp(a[i], "-n") == 0)
			o.conns = atoi(v), i++;
		else if (v && strcmp(a[i], "-i") == 0)
			o.in_file = v, i++;
		else if (v && strcmp(a[i], "-o") == 0)
			o.out_prefix = v, i++;
		else if (v && strcmp(a[i], "-w") == 0)
			o.timeout_s = atoi(v), i++;
		else
			return 2;
	}
	char *url = port_forward_url(ch, a[0], a[1]);
	int rc = url ? cri_pf_run(url, &o) : 1;
	free(url);
	return rc;
}

int main(int argc, char **argv)
{
	const char *sock = "/run/vgpu-cri/vgpu-cri.sock";
	int opt;
	while ((opt = getopt(argc, argv, "+s:t:")) != -1) {
		if (opt == 's')
			sock = optarg;
		else if (opt == 't')
			timeout_s = atoi(optarg);
		else
			return 2;
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: cri-client [-s socket] [-t timeout_s] version|run-pod|status|list|stop|remove|"
				"pull|create|start|cstop|cremove|cstatus|clist|exec|cstats|lstats|pstats|update ...\n");
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
	else if (strcmp(cmd, "pull") == 0 && n == 1)
		rc = cmd_pull(ch, a[0]);
	else if (strcmp(cmd, "create") == 0 && n >= 3)
		rc = cmd_create(ch, a[0], a[1], a[2], n - 3, a + 3);
	else if (strcmp(cmd, "start") == 0 && n == 1)
		rc = cmd_start(ch, a[0]);
	else if (strcmp(cmd, "cstop") == 0 && n == 2)
		rc = cmd_cstop(ch, a[0], a[1]);
	else if (strcmp(cmd, "cremove") == 0 && n == 1)
		rc = cmd_cremove(ch, a[0]);
	else if (strcmp(cmd, "cstatus") == 0 && n == 1)
		rc = cmd_cstatus(ch, a[0]);
	else if (strcmp(cmd, "clist") == 0)
		rc = cmd_clist(ch);
	else if (strcmp(cmd, "cstats") == 0 && n == 1)
		rc = cmd_cstats(ch, a[0]);
	else if (strcmp(cmd, "lstats") == 0)
		rc = cmd_lstats(ch);
	else if (strcmp(cmd, "pstats") == 0 && n == 1)
		rc = cmd_pstats(ch, a[0]);
	else if (strcmp(cmd, "update") == 0 && n == 2)
		rc = cmd_update(ch, a[0], a[1]);
	else if (strcmp(cmd, "exec") == 0 && n >= 3)
		rc = cmd_exec(ch, a[0], a[1], n - 2, a + 2);
	else if (strcmp(cmd, "stream") == 0 && n >= 2 && (strcmp(a[0], "exec") == 0 || strcmp(a[0], "attach") == 0))
		rc = cmd_stream(ch, n, a);
	else if (strcmp(cmd, "portforward") == 0 && n == 2)
		rc = cmd_port_forward(ch, a[0], a[1]);
	else if (strcmp(cmd, "pf") == 0 && n >= 2)
		rc = cmd_pf(ch, n, a);
	else
		fprintf(stderr, "cri-client: bad command or arguments: %s\n", cmd);
	if (rc == 1 && last_status > 0)
		rc = 10 + last_status;
	grpc_channel_destroy(ch);
	grpc_shutdown();
	return rc;
}
