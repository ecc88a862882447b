/* GPU pods (see gpu.h): the in-process broker and the daemon's registry of GPU pods.
 * Locking: g->lock guards the pod list; broker calls are thread-safe and are made without it
 * except where a pod's add/remove must be atomic with the list. */
#include "gpu.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <linux/openat2.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "util.h"
#ifdef VGPU_SOFT_TEST_KERNELS
#include "soft_kernels.h" /* test/gpu: the soft TEST DEVICE's kernels */
#endif

struct gpu_pod {
	struct gpu_pod *next;
	char *sandbox_id;
	char *ns, *name, *uid;
	char *dir;     /* run_dir/gpu/<sandbox_id> */
	char *socket;  /* dir/vgpu.sock */
	struct vgpu_gpu_request req;
	bool running;  /* registered with the broker (cleared by stop) */
	bool xen;      /* a xen pod: channels come from domain `domid` over granted rings */
	uint32_t domid;
};

struct vgpu_gpu {
	broker_t *broker;      /* NULL: no GPU backend */
	char *backend;         /* "cuda", "soft", "none" */
	char *why_none;        /* reason GPU pods are refused */
	char *run_dir;
	char *shim_path;
	pthread_mutex_t lock;
	struct gpu_pod *pods;  /* guarded by lock */
};

int vgpu_quantity_parse(const char *s, uint64_t *out)
{
	if (!s || !*s || strlen(s) > 32)
		return -EINVAL;
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] < '0' || s[0] > '9')
		return -EINVAL;
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = { { "", 1 },
		      { "k", 1000ULL },
		      { "M", 1000000ULL },
		      { "G", 1000000000ULL },
		      { "T", 1000000000000ULL },
		      { "Ki", 1ULL << 10 },
		      { "Mi", 1ULL << 20 },
		      { "Gi", 1ULL << 30 },
		      { "Ti", 1ULL << 40 } };
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].suffix) != 0)
			continue;
		uint64_t r;
		if (__builtin_mul_overflow((uint64_t)v, units[i].mult, &r) || r == 0)
			return -EINVAL;
		*out = r;
		return 0;
	}
	return -EINVAL;
}

int vgpu_gpu_parse_request(const struct vgpu_handler_config *h, size_t n, const char *const *keys,
			   const char *const *values, struct vgpu_gpu_request *out, struct vgpu_err *err)
{
	memset(out, 0, sizeof(*out));
	out->compute_share = h ? (unsigned)h->gpu_compute_default : 100;
	const char *memory = h && h->gpu_memory_default && *h->gpu_memory_default ? h->gpu_memory_default : NULL;
	for (size_t i = 0; i < n; i++) {
		const char *k = keys[i], *v = values[i] ? values[i] : "";
		if (strcmp(k, VGPU_ANNOTATION_GPU) == 0) {
			if (strcmp(v, "true") == 0)
				out->enabled = true;
			else if (strcmp(v, "false") != 0)
				return vgpu_err_set(err, -EINVAL, "annotation %s: '%s' is not \"true\" or \"false\"", k, v);
		} else if (strcmp(k, VGPU_ANNOTATION_GPU_MEMORY) == 0) {
			memory = v;
			if (vgpu_quantity_parse(v, &out->quota_bytes) < 0)
				return vgpu_err_set(err, -EINVAL,
						    "annotation %s: '%s' is not a positive quantity such as 4Gi or 512Mi", k, v);
		} else if (strcmp(k, VGPU_ANNOTATION_GPU_COMPUTE) == 0) {
			char *end = NULL;
			errno = 0;
			long share = strtol(v, &end, 10);
			if (errno || end == v || *end || share < 1 || share > 100)
				return vgpu_err_set(err, -EINVAL, "annotation %s: '%s' is not a percentage 1..100", k, v);
			out->compute_share = (unsigned)share;
		}
	}
	if (memory && out->quota_bytes == 0 && vgpu_quantity_parse(memory, &out->quota_bytes) < 0)
		return vgpu_err_set(err, -EINVAL, "handler %s: gpu_memory_default '%s' is not a quantity",
				    h ? h->name : "?", memory);
	return 0;
}

#ifdef VGPU_SOFT_TEST_KERNELS
static int soft_kernels_rc = -1;
static void soft_kernels_once(void)
{
	soft_kernels_rc = soft_kernels_register();
}
#endif

/* The soft TEST DEVICE runs only kernels registered as host functions; the daemon registers the
 * test programs' kernels (test/gpu/soft_kernels.c) so that CI and the demo can run them in pods.
 * Registration is process-wide and must happen once, before broker_create. */
static int register_soft_test_kernels(struct vgpu_err *err)
{
#ifdef VGPU_SOFT_TEST_KERNELS
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, soft_kernels_once);
	if (soft_kernels_rc != 0)
		return vgpu_err_set(err, -EIO, "soft TEST DEVICE: cannot register its test kernels");
	vgpu_log(VGPU_LOG_INFO, "soft TEST DEVICE: test kernels of test/gpu registered");
#endif
	return 0;
}

static void broker_log_sink(int level, const char *msg)
{
	vgpu_log((enum vgpu_log_level)level, "broker: %s", msg);
}

int vgpu_gpu_open(const struct vgpu_config *cfg, struct vgpu_gpu **out, struct vgpu_err *err)
{
	struct vgpu_gpu *g = vgpu_calloc(1, sizeof(*g));
	pthread_mutex_init(&g->lock, NULL);
	g->run_dir = vgpu_asprintf("%s/gpu", cfg->run_dir);
	g->shim_path = vgpu_strdup(cfg->gpu_shim_path);
	idm_set_log_fn(broker_log_sink);
	const char *want = cfg->gpu_backend;
	if (strcmp(want, "none") == 0) {
		g->why_none = vgpu_strdup("the GPU is disabled in the config (gpu.backend: none)");
	} else {
		const char *backend = strcmp(want, "auto") == 0 ? "cuda" : want;
		struct broker_config bc = { .backend = backend, .workers = (unsigned)cfg->gpu_broker_workers };
		if (strcmp(cfg->gpu_pod_processes, "on") == 0)
			bc.pod_processes = 1;
		else if (strcmp(cfg->gpu_pod_processes, "off") == 0)
			bc.pod_processes = -1;
		if (strcmp(backend, "soft") == 0) {
			int kr = register_soft_test_kernels(err);
			if (kr < 0) {
				vgpu_gpu_close(g);
				return kr;
			}
		}
		struct idm_err ierr = { 0 };
		int r = broker_create(&bc, &g->broker, &ierr);
		if (r < 0) {
			g->broker = NULL;
			if (strcmp(want, "auto") != 0) {
				vgpu_gpu_close(g);
				return vgpu_err_set(err, r, "gpu backend %s: %s", want, ierr.msg);
			}
			g->why_none = vgpu_asprintf("no GPU: the cuda backend did not start (%s); set gpu.backend "
						    "to soft only for tests", ierr.msg);
		} else {
			g->backend = vgpu_strdup(backend);
		}
	}
	if (!g->backend) {
		g->backend = vgpu_strdup("none");
		vgpu_log(VGPU_LOG_WARN, "GPU pods will be refused: %s", g->why_none);
	} else if (strcmp(g->backend, "soft") == 0) {
		vgpu_log(VGPU_LOG_WARN, "GPU backend is the SOFT TEST DEVICE (a CPU emulation for CI, not a GPU)");
	} else {
		vgpu_log(VGPU_LOG_INFO, "GPU backend %s, %lld broker workers", g->backend, cfg->gpu_broker_workers);
	}
	*out = g;
	return 0;
}

static void pod_free(struct gpu_pod *p)
{
	free(p->sandbox_id);
	free(p->ns);
	free(p->name);
	free(p->uid);
	free(p->dir);
	free(p->socket);
	free(p);
}

void vgpu_gpu_close(struct vgpu_gpu *g)
{
	if (!g)
		return;
	broker_destroy(g->broker); /* closes every pod's channels */
	for (struct gpu_pod *p = g->pods, *next; p; p = next) {
		next = p->next;
		pod_free(p);
	}
	pthread_mutex_destroy(&g->lock);
	free(g->backend);
	free(g->why_none);
	free(g->run_dir);
	free(g->shim_path);
	free(g);
}

const char *vgpu_gpu_backend(const struct vgpu_gpu *g)
{
	return g ? g->backend : "none";
}

/* The broker knows a pod by an id shorter than a sandbox id (IDM_POD_ID_MAX, the IDM wire's
 * limit): the sandbox id's first BROKER_ID_LEN hex digits (128 random bits) name it. */
#define BROKER_ID_LEN 32
static void broker_pod_id(const char *sandbox_id, char out[BROKER_ID_LEN + 1])
{
	snprintf(out, BROKER_ID_LEN + 1, "%s", sandbox_id);
}

static struct gpu_pod *find_locked(struct vgpu_gpu *g, const char *sandbox_id)
{
	for (struct gpu_pod *p = g->pods; p; p = p->next)
		if (strcmp(p->sandbox_id, sandbox_id) == 0)
			return p;
	return NULL;
}

static int pod_add(struct vgpu_gpu *g, const char *sandbox_id, const char *pod_namespace, const char *pod_name,
		   const char *pod_uid, const struct vgpu_gpu_request *req, int64_t xen_domid, struct vgpu_err *err);

int vgpu_gpu_pod_add(struct vgpu_gpu *g, const char *sandbox_id, const char *pod_namespace, const char *pod_name,
		     const char *pod_uid, const struct vgpu_gpu_request *req, struct vgpu_err *err)
{
	return pod_add(g, sandbox_id, pod_namespace, pod_name, pod_uid, req, -1, err);
}

int vgpu_gpu_pod_add_xen(struct vgpu_gpu *g, const char *sandbox_id, const char *pod_namespace,
			 const char *pod_name, const char *pod_uid, const struct vgpu_gpu_request *req, uint32_t domid,
			 struct vgpu_err *err)
{
	if (domid == 0)
		return vgpu_err_set(err, -EINVAL, "sandbox %s: GPU for a xen pod without a domain", sandbox_id);
	return pod_add(g, sandbox_id, pod_namespace, pod_name, pod_uid, req, domid, err);
}

static int pod_add(struct vgpu_gpu *g, const char *sandbox_id, const char *pod_namespace, const char *pod_name,
		   const char *pod_uid, const struct vgpu_gpu_request *req, int64_t xen_domid, struct vgpu_err *err)
{
	if (!g || !g->broker)
		return vgpu_err_set(err, -ENODEV, "pod asks for a GPU (%s) but %s", VGPU_ANNOTATION_GPU,
				    g && g->why_none ? g->why_none : "there is no GPU backend");
	struct gpu_pod *p = vgpu_calloc(1, sizeof(*p));
	p->sandbox_id = vgpu_strdup(sandbox_id);
	p->ns = vgpu_strdup(pod_namespace);
	p->name = vgpu_strdup(pod_name);
	p->uid = vgpu_strdup(pod_uid);
	p->req = *req;
	p->dir = vgpu_asprintf("%s/%s", g->run_dir, sandbox_id);
	p->socket = vgpu_asprintf("%s/vgpu.sock", p->dir);
	p->xen = xen_domid >= 0;
	p->domid = p->xen ? (uint32_t)xen_domid : 0;
	int r = p->xen ? 0 : vgpu_mkdir_p(p->dir, 0755, err);
	if (r < 0) {
		pod_free(p);
		return vgpu_err_prefix(err, "sandbox %s: GPU socket dir", sandbox_id);
	}
	pthread_mutex_lock(&g->lock);
	if (find_locked(g, sandbox_id)) {
		pthread_mutex_unlock(&g->lock);
		pod_free(p);
		return vgpu_err_set(err, -EEXIST, "sandbox %s already has a GPU", sandbox_id);
	}
	struct idm_err ierr = { 0 };
	char bid[BROKER_ID_LEN + 1];
	broker_pod_id(sandbox_id, bid);
	r = p->xen ? broker_pod_add_xen(g->broker, bid, p->domid, req->quota_bytes, req->compute_share, &ierr)
		   : broker_pod_add(g->broker, bid, p->socket, req->quota_bytes, req->compute_share, &ierr);
	if (r < 0) {
		pthread_mutex_unlock(&g->lock);
		if (!p->xen)
			rmdir(p->dir);
		pod_free(p);
		return vgpu_err_set(err, r, "sandbox %s: broker: %s", sandbox_id, ierr.msg);
	}
	p->running = true;
	p->next = g->pods;
	g->pods = p;
	pthread_mutex_unlock(&g->lock);
	if (xen_domid >= 0)
		vgpu_log(VGPU_LOG_INFO, "sandbox %s: GPU on %s, quota %llu bytes, compute share %u%%, channels from "
			 "domain %u over granted rings", sandbox_id, g->backend, (unsigned long long)req->quota_bytes,
			 req->compute_share, (unsigned)xen_domid);
	else
		vgpu_log(VGPU_LOG_INFO, "sandbox %s: GPU on %s, quota %llu bytes, compute share %u%%, socket %s",
			 sandbox_id, g->backend, (unsigned long long)req->quota_bytes, req->compute_share, p->socket);
	return 0;
}

int vgpu_gpu_pod_stop(struct vgpu_gpu *g, const char *sandbox_id, struct vgpu_err *err)
{
	if (!g || !g->broker)
		return 0;
	pthread_mutex_lock(&g->lock);
	struct gpu_pod *p = find_locked(g, sandbox_id);
	bool running = p && p->running;
	if (p)
		p->running = false;
	pthread_mutex_unlock(&g->lock);
	if (!running)
		return 0;
	struct idm_err ierr = { 0 };
	char bid[BROKER_ID_LEN + 1];
	broker_pod_id(sandbox_id, bid);
	int r = broker_pod_remove(g->broker, bid, &ierr);
	if (r < 0 && r != -ENOENT)
		return vgpu_err_set(err, r, "sandbox %s: freeing GPU state: %s", sandbox_id, ierr.msg);
	vgpu_log(VGPU_LOG_INFO, "sandbox %s: GPU channels closed and GPU memory freed", sandbox_id);
	return 0;
}

int vgpu_gpu_pod_remove(struct vgpu_gpu *g, const char *sandbox_id, struct vgpu_err *err)
{
	if (!g)
		return 0;
	int r = vgpu_gpu_pod_stop(g, sandbox_id, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&g->lock);
	struct gpu_pod **pp = &g->pods, *p = NULL;
	while (*pp && strcmp((*pp)->sandbox_id, sandbox_id) != 0)
		pp = &(*pp)->next;
	if (*pp) {
		p = *pp;
		*pp = p->next;
	}
	pthread_mutex_unlock(&g->lock);
	_cleanup_free_ char *dir = vgpu_asprintf("%s/%s", g->run_dir, sandbox_id);
	_cleanup_free_ char *sock = vgpu_asprintf("%s/vgpu.sock", dir);
	if (unlink(sock) < 0 && errno != ENOENT)
		vgpu_log(VGPU_LOG_WARN, "sandbox %s: remove %s: %s", sandbox_id, sock, strerror(errno));
	if (rmdir(dir) < 0 && errno != ENOENT)
		vgpu_log(VGPU_LOG_WARN, "sandbox %s: remove %s: %s", sandbox_id, dir, strerror(errno));
	if (p)
		pod_free(p);
	return 0;
}

int vgpu_gpu_injection(struct vgpu_gpu *g, const char *sandbox_id, struct vgpu_gpu_injection *out,
		       struct vgpu_err *err)
{
	memset(out, 0, sizeof(*out));
	if (!g)
		return vgpu_err_set(err, -ENOENT, "sandbox %s has no GPU", sandbox_id);
	pthread_mutex_lock(&g->lock);
	struct gpu_pod *p = find_locked(g, sandbox_id);
	bool xen = p && p->xen;
	if (p && !xen) {
		out->socket_dir = vgpu_strdup(p->dir);
		out->shim_path = vgpu_strdup(g->shim_path);
	}
	pthread_mutex_unlock(&g->lock);
	if (!p)
		return vgpu_err_set(err, -ENOENT, "sandbox %s has no GPU", sandbox_id);
	if (xen) { /* the shim of the guest's initramfs; the transport is granted pages, not a socket */
		out->xen = true;
		out->shim_path = vgpu_strdup(VGPU_XEN_GUEST_SHIM);
		out->env = vgpu_calloc(4, sizeof(char *));
		out->env[0] = vgpu_strdup("VGPU_TRANSPORT=xen");
		out->env[1] = vgpu_strdup("LD_LIBRARY_PATH=" VGPU_CONTAINER_SHIM_DIR);
		out->env[2] = vgpu_strdup("NVIDIA_VISIBLE_DEVICES=void");
		return 0;
	}
	if (access(out->shim_path, R_OK) < 0) {
		int e = errno;
		vgpu_gpu_injection_free(out);
		return vgpu_err_errno(err, e, "GPU shim %s (gpu.shim_path)", g->shim_path);
	}
	out->env = vgpu_calloc(4, sizeof(char *));
	out->env[0] = vgpu_strdup("VGPU_SOCKET=" VGPU_CONTAINER_SOCKET);
	out->env[1] = vgpu_strdup("LD_LIBRARY_PATH=" VGPU_CONTAINER_SHIM_DIR);
	out->env[2] = vgpu_strdup("NVIDIA_VISIBLE_DEVICES=void");
	return 0;
}

/* Where images keep libcuda.so.1 (distribution multiarch dirs, CUDA and NVIDIA container layouts). */
static const char *const image_lib_dirs[] = {
	"usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib/x86_64-linux-gnu", "lib/aarch64-linux-gnu",
	"usr/lib64", "lib64", "usr/lib", "lib", "usr/local/cuda/lib64", "usr/local/cuda/compat",
	"usr/local/cuda/targets/x86_64-linux/lib", "usr/local/nvidia/lib64", "usr/local/nvidia/lib",
};

/* Container path of rel, resolved inside root (RESOLVE_IN_ROOT: a symlink cannot leave it), if it
 * is a regular file; NULL otherwise. */
static char *resolve_in_rootfs(int root, const char *real_root, const char *rel)
{
	struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
	_cleanup_close_ int fd = (int)syscall(SYS_openat2, root, rel, &how, sizeof(how));
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return NULL;
	char link[64], target[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0)
		return NULL;
	target[n] = '\0';
	size_t rl = strlen(real_root);
	if (strncmp(target, real_root, rl) != 0 || target[rl] != '/')
		return NULL; /* not inside the rootfs after all: never mount there */
	return vgpu_strdup(target + rl);
}

char **vgpu_gpu_image_libcuda(const char *rootfs)
{
	size_t n_dirs = sizeof(image_lib_dirs) / sizeof(image_lib_dirs[0]), n = 0;
	char **out = vgpu_calloc(n_dirs + 1, sizeof(char *));
	_cleanup_free_ char *real_root = realpath(rootfs, NULL);
	_cleanup_close_ int root = real_root ? open(real_root, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
	if (root < 0)
		return out;
	for (size_t i = 0; i < n_dirs; i++) {
		_cleanup_free_ char *rel = vgpu_asprintf("%s/libcuda.so.1", image_lib_dirs[i]);
		char *path = resolve_in_rootfs(root, real_root, rel);
		if (!path)
			continue;
		bool dup = false;
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(out[j], path) == 0;
		if (dup || strcmp(path, VGPU_CONTAINER_SHIM_DIR "/libcuda.so.1") == 0)
			free(path);
		else
			out[n++] = path;
	}
	return out;
}

void vgpu_gpu_injection_free(struct vgpu_gpu_injection *inj)
{
	free(inj->socket_dir);
	free(inj->shim_path);
	vgpu_strv_free(inj->env);
	memset(inj, 0, sizeof(*inj));
}

/* ---- usage ---- */

enum metric_kind { GAUGE, COUNTER };

struct metric_def {
	const char *name;
	const char *help;
	enum metric_kind kind;
	size_t offset; /* into struct broker_usage, or SIZE_MAX for compute share */
};

#define U(f) offsetof(struct broker_usage, f)
static const struct metric_def metric_defs[] = {
	{ "vgpu_gpu_memory_used_bytes", "GPU memory the pod has allocated now", GAUGE, U(mem_in_use) },
	{ "vgpu_gpu_memory_peak_bytes", "Highest GPU memory the pod has had allocated", GAUGE, U(mem_peak) },
	{ "vgpu_gpu_memory_limit_bytes", "The pod's GPU memory quota (0: the whole card)", GAUGE, U(quota_bytes) },
	{ "vgpu_gpu_compute_share_percent", "The pod's share of GPU time under contention", GAUGE, SIZE_MAX },
	{ "vgpu_gpu_kernel_launches_total", "Kernel launches", COUNTER, U(launches) },
	{ "vgpu_gpu_busy_nanoseconds_total", "GPU time spent on the pod's work, nanoseconds", COUNTER, U(busy_ns) },
	{ "vgpu_gpu_share_turn_nanoseconds_total", "GPU time the pod had while other pods waited (compute shares), nanoseconds", COUNTER, U(gpu_turn_ns) },
	{ "vgpu_gpu_share_wait_nanoseconds_total", "Time the pod's GPU work waited for other pods (compute shares), nanoseconds", COUNTER, U(gpu_wait_ns) },
	{ "vgpu_gpu_htod_bytes_total", "Bytes copied host to device", COUNTER, U(bytes_htod) },
	{ "vgpu_gpu_dtoh_bytes_total", "Bytes copied device to host", COUNTER, U(bytes_dtoh) },
	{ "vgpu_gpu_api_calls_total", "CUDA driver API calls served by the broker", COUNTER, U(calls) },
	{ "vgpu_gpu_api_errors_total", "CUDA driver API calls that failed", COUNTER, U(errors) },
	{ "vgpu_gpu_channels", "Open IDM channels (CUDA processes) of the pod", GAUGE, U(channels) },
};
#define N_METRICS (sizeof(metric_defs) / sizeof(metric_defs[0]))
static const char *const metric_labels[] = { "namespace", "pod", "uid" };

static uint64_t metric_value(const struct metric_def *m, const struct broker_usage *u, unsigned share)
{
	if (m->offset == SIZE_MAX)
		return share;
	uint64_t v;
	memcpy(&v, (const char *)u + m->offset, sizeof(v));
	return v;
}

struct pod_snapshot {
	char *sandbox_id, *ns, *name, *uid;
	unsigned share;
	struct broker_usage usage;
};

/* Usage of every running GPU pod; caller frees with free_snapshots. */
static size_t snapshot(struct vgpu_gpu *g, struct pod_snapshot **out)
{
	*out = NULL;
	if (!g || !g->broker)
		return 0;
	pthread_mutex_lock(&g->lock);
	size_t n = 0;
	for (struct gpu_pod *p = g->pods; p; p = p->next)
		n += p->running;
	struct pod_snapshot *s = vgpu_calloc(n, sizeof(*s));
	size_t i = 0;
	for (struct gpu_pod *p = g->pods; p; p = p->next) {
		if (!p->running)
			continue;
		s[i].sandbox_id = vgpu_strdup(p->sandbox_id);
		s[i].ns = vgpu_strdup(p->ns);
		s[i].name = vgpu_strdup(p->name);
		s[i].uid = vgpu_strdup(p->uid);
		s[i].share = p->req.compute_share;
		i++;
	}
	pthread_mutex_unlock(&g->lock);
	for (i = 0; i < n; i++) {
		char bid[BROKER_ID_LEN + 1];
		broker_pod_id(s[i].sandbox_id, bid);
		if (broker_pod_usage(g->broker, bid, &s[i].usage, NULL) < 0)
			memset(&s[i].usage, 0, sizeof(s[i].usage)); /* stopped meanwhile */
	}
	*out = s;
	return n;
}

static void free_snapshots(struct pod_snapshot *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(s[i].sandbox_id);
		free(s[i].ns);
		free(s[i].name);
		free(s[i].uid);
	}
	free(s);
}

char *vgpu_gpu_pod_info_json(struct vgpu_gpu *g, const char *sandbox_id)
{
	struct pod_snapshot *s;
	size_t n = snapshot(g, &s);
	char *r = NULL;
	for (size_t i = 0; i < n && !r; i++) {
		if (strcmp(s[i].sandbox_id, sandbox_id) != 0)
			continue;
		json_object *o = json_object_new_object();
		json_object_object_add(o, "backend", json_object_new_string(g->backend));
		for (size_t m = 0; m < N_METRICS; m++)
			json_object_object_add(o, metric_defs[m].name,
					       json_object_new_int64((int64_t)metric_value(&metric_defs[m], &s[i].usage, s[i].share)));
		r = vgpu_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	}
	free_snapshots(s, n);
	return r;
}

static void prom_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n') {
			fputs("\\n", f);
			continue;
		}
		fputc(*s, f);
	}
}

char *vgpu_gpu_prometheus_text(struct vgpu_gpu *g)
{
	struct pod_snapshot *s;
	size_t n = snapshot(g, &s);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		abort();
	fprintf(f, "# HELP vgpu_gpu_backend The GPU backend in use (soft = software test device)\n"
		   "# TYPE vgpu_gpu_backend gauge\nvgpu_gpu_backend{backend=\"%s\"} 1\n",
		g ? g->backend : "none");
	for (size_t m = 0; m < N_METRICS; m++) {
		const struct metric_def *d = &metric_defs[m];
		bool busy = d->offset == U(busy_ns);
		const char *name = busy ? "vgpu_gpu_busy_seconds_total" : d->name;
		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, busy ? "GPU time spent on the pod's work, seconds" : d->help,
			name, d->kind == GAUGE ? "gauge" : "counter");
		for (size_t i = 0; i < n; i++) {
			fprintf(f, "%s{namespace=\"", name);
			prom_escape(f, s[i].ns);
			fputs("\",pod=\"", f);
			prom_escape(f, s[i].name);
			fputs("\",uid=\"", f);
			prom_escape(f, s[i].uid);
			uint64_t v = metric_value(d, &s[i].usage, s[i].share);
			if (busy)
				fprintf(f, "\"} %.9f\n", (double)v / 1e9);
			else
				fprintf(f, "\"} %llu\n", (unsigned long long)v);
		}
	}
	fclose(f);
	free_snapshots(s, n);
	return buf;
}

/* ---- CRI metrics RPCs ---- */

#include "cri-api.pb-c.h"
#include "daemon.h"

int vgpu_rpc_list_metric_descriptors(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
				     struct vgpu_err *err)
{
	Runtime__V1__ListMetricDescriptorsResponse *r = vgpu_calloc(1, sizeof(*r));
	runtime__v1__list_metric_descriptors_response__init(r);
	r->n_descriptors = N_METRICS;
	r->descriptors = vgpu_calloc(N_METRICS, sizeof(*r->descriptors));
	for (size_t m = 0; m < N_METRICS; m++) {
		Runtime__V1__MetricDescriptor *md = vgpu_calloc(1, sizeof(*md));
		runtime__v1__metric_descriptor__init(md);
		md->name = vgpu_strdup(metric_defs[m].name);
		md->help = vgpu_strdup(metric_defs[m].help);
		md->n_label_keys = 3;
		md->label_keys = vgpu_calloc(3, sizeof(char *));
		for (size_t k = 0; k < 3; k++)
			md->label_keys[k] = vgpu_strdup(metric_labels[k]);
		r->descriptors[m] = md;
	}
	*resp = &r->base;
	return 0;
}

int vgpu_rpc_list_pod_sandbox_metrics(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
				      struct vgpu_err *err)
{
	struct pod_snapshot *s;
	size_t n = snapshot(d->gpu, &s);
	int64_t now = (int64_t)vgpu_wall_ns();
	Runtime__V1__ListPodSandboxMetricsResponse *r = vgpu_calloc(1, sizeof(*r));
	runtime__v1__list_pod_sandbox_metrics_response__init(r);
	r->n_pod_metrics = n;
	r->pod_metrics = vgpu_calloc(n, sizeof(*r->pod_metrics));
	for (size_t i = 0; i < n; i++) {
		Runtime__V1__PodSandboxMetrics *pm = vgpu_calloc(1, sizeof(*pm));
		runtime__v1__pod_sandbox_metrics__init(pm);
		pm->pod_sandbox_id = vgpu_strdup(s[i].sandbox_id);
		pm->n_metrics = N_METRICS;
		pm->metrics = vgpu_calloc(N_METRICS, sizeof(*pm->metrics));
		for (size_t m = 0; m < N_METRICS; m++) {
			Runtime__V1__Metric *mt = vgpu_calloc(1, sizeof(*mt));
			runtime__v1__metric__init(mt);
			mt->name = vgpu_strdup(metric_defs[m].name);
			mt->timestamp = now;
			mt->metric_type = metric_defs[m].kind == GAUGE ? RUNTIME__V1__METRIC_TYPE__GAUGE
								       : RUNTIME__V1__METRIC_TYPE__COUNTER;
			mt->n_label_values = 3;
			mt->label_values = vgpu_calloc(3, sizeof(char *));
			mt->label_values[0] = vgpu_strdup(s[i].ns);
			mt->label_values[1] = vgpu_strdup(s[i].name);
			mt->label_values[2] = vgpu_strdup(s[i].uid);
			mt->value = vgpu_calloc(1, sizeof(*mt->value));
			runtime__v1__uint64_value__init(mt->value);
			mt->value->value = metric_value(&metric_defs[m], &s[i].usage, s[i].share);
			pm->metrics[m] = mt;
		}
		r->pod_metrics[i] = pm;
	}
	free_snapshots(s, n);
	*resp = &r->base;
	return 0;
}
