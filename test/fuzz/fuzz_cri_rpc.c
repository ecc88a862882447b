/* fuzz_cri_rpc: CRI request handling after protobuf decoding (cri/rpc_table.c handlers).
 *
 * First input byte: which RPC (low 5 bits, mod the list below) and on which daemon (bit 7); the
 * rest: the request's protobuf bytes, decoded with protobuf-c exactly as grpc_server.c does. A
 * request that decodes is passed to the handler of vgpu_rpc_table. Two daemons, each rooted in its
 * own temp dir, with an image store holding one image (a real config blob, no layers), a pod
 * manager and the GPU service with backend "none"; no gRPC server, no streaming or metrics
 * endpoint; every runtime handler's runtime_path is /bin/false, the CNI dirs are empty temp dirs:
 *  - "empty": no pod or container. Every RPC of the list may run: the ones that act on an object
 *    stop at its id lookup. Afterwards it must still hold no pod or container.
 *  - "populated": one NOTREADY pod (no infra process) with one EXITED container, with fixed ids
 *    (1111...1, 2222...2). Only the read-only RPCs run there (the others fall back to "empty").
 *    Afterwards it must still hold exactly that pod and that container.
 * Handler contract checked: 0 with a response of the RPC's output type that passes
 * protobuf_c_message_check and packs, or a negative errno with a message. The stored image must
 * still be there unless the RPC was RemoveImage (then it is stored again).
 *
 * Not fuzzed here: RunPodSandbox (creates namespaces, processes, mounts, CNI networking on the
 * host), PullImage (network), Exec/Attach/PortForward (need the streaming server), the streaming
 * RPCs (GetContainerEvents). */
#include <errno.h>
#include <unistd.h>

#include "config.h"
#include "daemon.h"
#include "fuzz_common.h"
#include "gpu.h"
#include "image.h"
#include "image_internal.h"
#include "log.h"
#include "rpc.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "util.h"
#include "cri-api.pb-c.h"

/* name, read-only (may run on the populated daemon) */
static const struct {
	const char *name;
	bool read_only;
} methods[] = {
	{ "Version", true },
	{ "Status", true },
	{ "RuntimeConfig", true },
	{ "UpdateRuntimeConfig", false },
	{ "ListPodSandbox", true },
	{ "PodSandboxStatus", true },
	{ "StopPodSandbox", false },
	{ "RemovePodSandbox", false },
	{ "ListContainers", true },
	{ "ContainerStatus", true },
	{ "CreateContainer", false },
	{ "StartContainer", false },
	{ "StopContainer", false },
	{ "RemoveContainer", false },
	{ "UpdateContainerResources", false },
	{ "ReopenContainerLog", false },
	{ "ExecSync", false },
	{ "ContainerStats", true },
	{ "ListContainerStats", true },
	{ "PodSandboxStats", true },
	{ "ListPodSandboxStats", true },
	{ "ListMetricDescriptors", true },
	{ "ListPodSandboxMetrics", true },
	{ "ListImages", true },
	{ "ImageStatus", true },
	{ "RemoveImage", false },
	{ "ImageFsInfo", true },
};
#define N_METHODS (sizeof methods / sizeof methods[0])

struct fuzz_method {
	const struct vgpu_rpc *rpc;
	const ProtobufCMethodDescriptor *desc;
};

struct instance {
	char workdir[256];
	struct vgpu_config cfg;
	struct vgpu_daemon d;
	char image_id[72];
	size_t n_sandboxes, n_containers; /* what it must hold */
};

static struct fuzz_method table[N_METHODS];
static struct instance empty, populated;

#define POD_ID "1111111111111111111111111111111111111111111111111111111111111111"
#define CTR_ID "2222222222222222222222222222222222222222222222222222222222222222"

/* The stored image: its config blob is real (ImageStatus verbose and CreateContainer read it). */
static const char image_config[] =
	"{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Entrypoint\":[\"/bin/sh\"],"
	"\"Cmd\":[\"-c\",\"true\"],\"Env\":[\"PATH=/bin\"],\"WorkingDir\":\"/\",\"User\":\"1000\"}}";

static void store_image(struct instance *in)
{
	struct vgpu_err err = { 0 };
	vgpu_sha256_buf(image_config, strlen(image_config), in->image_id);
	char *blob = vgpu_image_blob_path(in->d.images, in->image_id);
	FUZZ_CHECK(vgpu_write_file_atomic(blob, image_config, strlen(image_config), 0644, &err) == 0);
	free(blob);
	struct vgpu_image_record *rec = vgpu_calloc(1, sizeof(*rec));
	rec->id = vgpu_strdup(in->image_id);
	rec->config_digest = vgpu_strdup(in->image_id);
	rec->manifest_digest =
		vgpu_strdup("sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	vgpu_image_strv_push(&rec->repo_tags, "docker.io/library/busybox:latest");
	vgpu_image_strv_push(&rec->repo_digests,
			     "docker.io/library/busybox@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
	rec->annotations = vgpu_calloc(1, sizeof(char *));
	rec->user = vgpu_strdup("1000");
	rec->size = 1234;
	if (vgpu_image_store_commit(in->d.images, rec, &err) < 0) {
		fprintf(stderr, "fuzz_cri_rpc: store image: %s\n", err.msg);
		abort();
	}
}

static void *map_entry(const ProtobufCMessageDescriptor *desc, const char *key, const char *value)
{
	/* every CRI map entry is { string key = 1; string value = 2; } */
	ProtobufCMessage *e = vgpu_calloc(1, desc->sizeof_message);
	protobuf_c_message_init(desc, e);
	char **fields = (char **)((char *)e + desc->fields[0].offset);
	*fields = vgpu_strdup(key);
	fields = (char **)((char *)e + desc->fields[1].offset);
	*fields = vgpu_strdup(value);
	return e;
}

/* One NOTREADY pod with one EXITED container, as the pod manager keeps them (saved and linked). */
static void add_pod(struct instance *in)
{
	struct vgpu_pod_manager *m = in->d.pods;
	struct vgpu_err err = { 0 };
	struct vgpu_sandbox *s = vgpu_sandbox_alloc();
	snprintf(s->id, sizeof s->id, "%s", POD_ID);
	Runtime__V1__PodSandboxConfig *pc = vgpu_calloc(1, sizeof(*pc));
	runtime__v1__pod_sandbox_config__init(pc);
	pc->metadata = vgpu_calloc(1, sizeof(*pc->metadata));
	runtime__v1__pod_sandbox_metadata__init(pc->metadata);
	pc->metadata->name = vgpu_strdup("web");
	pc->metadata->namespace_ = vgpu_strdup("default");
	pc->metadata->uid = vgpu_strdup("uid-1");
	pc->n_labels = 1;
	pc->labels = vgpu_calloc(1, sizeof(*pc->labels));
	pc->labels[0] = map_entry(&runtime__v1__pod_sandbox_config__labels_entry__descriptor, "app", "web");
	pc->log_directory = vgpu_asprintf("%s/logs", in->workdir);
	s->config = pc;
	s->handler = vgpu_strdup("runc");
	s->created_at = 1700000000000000000LL;
	s->dir = vgpu_asprintf("%s/%s", m->sandbox_dir, s->id);
	s->run_dir = vgpu_asprintf("%s/%s", m->run_sandbox_dir, s->id);
	s->shm_path = vgpu_asprintf("%s/shm", s->run_dir); /* as RunPodSandbox sets it (never mounted here) */
	s->cgroup_parent = vgpu_strdup("/vgpu-cri-fuzz/none");
	s->phase = VGPU_PHASE_LIVE;
	s->state = RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
	s->infra_pid = 0x3ffffff0; /* above any pid_max: never a real process */
	FUZZ_CHECK(vgpu_mkdir_p(s->dir, 0700, &err) == 0);
	FUZZ_CHECK(vgpu_sandbox_save_config(m, s, &err) == 0 && vgpu_sandbox_save(m, s, &err) == 0);
	vgpu_sandbox_link(m, s);

	struct vgpu_container *c = vgpu_container_alloc();
	snprintf(c->id, sizeof c->id, "%s", CTR_ID);
	memcpy(c->sandbox_id, s->id, sizeof c->sandbox_id);
	Runtime__V1__ContainerConfig *cc = vgpu_calloc(1, sizeof(*cc));
	runtime__v1__container_config__init(cc);
	cc->metadata = vgpu_calloc(1, sizeof(*cc->metadata));
	runtime__v1__container_metadata__init(cc->metadata);
	cc->metadata->name = vgpu_strdup("app");
	cc->image = vgpu_calloc(1, sizeof(*cc->image)); /* CreateContainer requires one */
	runtime__v1__image_spec__init(cc->image);
	cc->image->image = vgpu_strdup("busybox");
	cc->n_labels = 1;
	cc->labels = vgpu_calloc(1, sizeof(*cc->labels));
	cc->labels[0] = map_entry(&runtime__v1__container_config__labels_entry__descriptor, "tier", "front");
	c->config = cc;
	c->image_id = vgpu_strdup(in->image_id);
	c->log_path = vgpu_asprintf("%s/logs/app.log", in->workdir);
	c->dir = vgpu_asprintf("%s/%s", m->container_dir, c->id);
	c->cgroups_path = vgpu_strdup("/vgpu-cri-fuzz/none/ctr");
	c->created_at = s->created_at + 1;
	c->started_at = s->created_at + 2;
	c->finished_at = s->created_at + 3;
	c->exit_code = 3;
	c->reason = vgpu_strdup("Error");
	c->message = vgpu_strdup("exit status 3");
	c->phase = VGPU_PHASE_LIVE;
	c->state = RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
	FUZZ_CHECK(vgpu_mkdir_p(c->dir, 0700, &err) == 0);
	FUZZ_CHECK(vgpu_container_save_config(m, c, &err) == 0 && vgpu_container_save(m, c, &err) == 0);
	vgpu_container_link(m, c);
	vgpu_container_put(m, c); /* the lists hold them now */
	vgpu_sandbox_put(m, s);
	in->n_sandboxes = 1;
	in->n_containers = 1;
}

static void open_instance(struct instance *in, const char *name)
{
	const char *tmp = getenv("TMPDIR");
	snprintf(in->workdir, sizeof in->workdir, "%s/fuzz-cri-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
	FUZZ_CHECK(mkdtemp(in->workdir) != NULL);
	struct vgpu_config *cfg = &in->cfg;
	const char *w = in->workdir;
	vgpu_config_defaults(cfg);
	free(cfg->state_dir);
	free(cfg->run_dir);
	free(cfg->socket_path);
	free(cfg->gpu_backend);
	free(cfg->metrics_address);
	free(cfg->cni_conf_dir);
	vgpu_strv_free(cfg->cni_bin_dirs);
	cfg->state_dir = vgpu_asprintf("%s/state", w);
	cfg->run_dir = vgpu_asprintf("%s/run", w);
	cfg->socket_path = vgpu_asprintf("%s/run/vgpu-cri.sock", w);
	cfg->gpu_backend = vgpu_strdup("none");
	cfg->metrics_address = vgpu_strdup("");
	cfg->cni_conf_dir = vgpu_asprintf("%s/cni/net.d", w);
	cfg->cni_bin_dirs = vgpu_calloc(2, sizeof(char *));
	cfg->cni_bin_dirs[0] = vgpu_asprintf("%s/cni/bin", w);
	for (size_t i = 0; i < cfg->n_handlers; i++) {
		free(cfg->handlers[i].runtime_path);
		free(cfg->handlers[i].runtime_root);
		cfg->handlers[i].runtime_path = vgpu_strdup("/bin/false");
		cfg->handlers[i].runtime_root = vgpu_asprintf("%s/runtime-%zu", w, i);
	}
	struct vgpu_daemon *d = &in->d;
	struct vgpu_err err = { 0 };
	memset(d, 0, sizeof *d);
	d->cfg = cfg;
	d->start_wall_ns = vgpu_wall_ns();
	FUZZ_CHECK(pthread_mutex_init(&d->lock, NULL) == 0);
	FUZZ_CHECK(vgpu_mkdir_p(cfg->state_dir, 0700, &err) == 0);
	FUZZ_CHECK(vgpu_mkdir_p(cfg->run_dir, 0700, &err) == 0);
	FUZZ_CHECK(vgpu_mkdir_p(cfg->cni_conf_dir, 0700, &err) == 0);
	if (vgpu_image_store_open(cfg, &d->images, &err) < 0 || vgpu_gpu_open(cfg, &d->gpu, &err) < 0 ||
	    vgpu_pods_open(d, &err) < 0) {
		fprintf(stderr, "fuzz_cri_rpc: daemon state: %s\n", err.msg);
		abort();
	}
	store_image(in);
}

static void close_instance(struct instance *in)
{
	vgpu_pods_close(&in->d);
	vgpu_gpu_close(in->d.gpu);
	vgpu_image_store_close(in->d.images);
	free(in->d.pod_cidr);
	pthread_mutex_destroy(&in->d.lock);
	vgpu_config_free(&in->cfg);
	struct vgpu_err err = { 0 };
	(void)vgpu_rm_rf(in->workdir, &err);
}

static void cleanup(void)
{
	close_instance(&populated);
	close_instance(&empty);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	vgpu_log_set_level(VGPU_LOG_ERROR);
	open_instance(&empty, "empty");
	open_instance(&populated, "populated");
	add_pod(&populated);
	for (size_t i = 0; i < N_METHODS; i++) {
		for (size_t k = 0; k < vgpu_rpc_table_len; k++)
			if (!strcmp(vgpu_rpc_table[k].method, methods[i].name))
				table[i].rpc = &vgpu_rpc_table[k];
		FUZZ_CHECK(table[i].rpc != NULL && table[i].rpc->fn != NULL);
		const ProtobufCServiceDescriptor *sd = !strcmp(table[i].rpc->service, "ImageService")
							       ? &runtime__v1__image_service__descriptor
							       : &runtime__v1__runtime_service__descriptor;
		table[i].desc = protobuf_c_service_descriptor_get_method_by_name(sd, methods[i].name);
		FUZZ_CHECK(table[i].desc != NULL);
	}
	atexit(cleanup);
	return 0;
}

static void check_objects(const struct instance *in)
{
	size_t ns = 0, nc = 0;
	for (struct vgpu_sandbox *s = in->d.pods->sandboxes; s; s = s->next)
		ns++;
	for (struct vgpu_container *c = in->d.pods->containers; c; c = c->next)
		nc++;
	if (ns != in->n_sandboxes || nc != in->n_containers) {
		fprintf(stderr, "fuzz_cri_rpc: %zu pods, %zu containers; want %zu, %zu\n", ns, nc,
			in->n_sandboxes, in->n_containers);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t mi = (data[0] & 0x1f) % N_METHODS;
	const struct fuzz_method *m = &table[mi];
	struct instance *in = (data[0] & 0x80) && methods[mi].read_only ? &populated : &empty;
	ProtobufCMessage *req = protobuf_c_message_unpack(m->desc->input, NULL, size - 1, data + 1);
	if (req == NULL)
		return 0;
	ProtobufCMessage *resp = NULL;
	struct vgpu_err err = { 0 };
	int r = m->rpc->fn(&in->d, req, &resp, &err);
	protobuf_c_message_free_unpacked(req, NULL);
	if (r == 0) {
		FUZZ_CHECK(resp != NULL && resp->descriptor == m->desc->output);
		FUZZ_CHECK(protobuf_c_message_check(resp));
		size_t n = protobuf_c_message_get_packed_size(resp);
		uint8_t *buf = malloc(n ? n : 1);
		FUZZ_CHECK(buf != NULL && protobuf_c_message_pack(resp, buf) == n);
		free(buf);
		protobuf_c_message_free_unpacked(resp, NULL);
	} else {
		FUZZ_CHECK(r < 0 && r > -4096 && resp == NULL);
		if (err.msg[0] == '\0') {
			fprintf(stderr, "fuzz_cri_rpc: %s failed (%d) without a message\n", methods[mi].name, r);
			abort();
		}
	}
	check_objects(in);
	struct vgpu_image_record *rec = NULL;
	if (vgpu_image_store_get(in->d.images, in->image_id, &rec, NULL) < 0) {
		FUZZ_CHECK(!strcmp(methods[mi].name, "RemoveImage"));
		store_image(in);
	} else {
		vgpu_image_record_free(rec);
	}
	return 0;
}
