/* CRI sandbox handlers of the runc handler: a pod is a set of namespaces held by an infra process
 * (vgpu-pause), a /dev/shm tmpfs, resolv.conf/hostname/hosts files, and a cgroup parent for its
 * containers. The infra process makes the network namespace with loopback up; CNI (cni_pod.h)
 * pins it and adds the pod's interfaces in setup_sandbox when a CNI config is present. */
#include "sandbox.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cni_pod.h"
#include "container.h"
#include "daemon.h"
#include "log.h"
#include "sandbox_store.h"
#include "util.h"
#include "xen_domain.h"
#include "xen_sandbox.h"

#define NAME_MAX_LEN 253
#define SHM_OPTIONS "mode=1777,size=65536k"

static const Runtime__V1__NamespaceOption *pod_ns_options(const Runtime__V1__PodSandboxConfig *cfg)
{
	if (cfg->linux && cfg->linux->security_context)
		return cfg->linux->security_context->namespace_options;
	return NULL;
}

static int check_str(const char *what, const char *s, size_t max, bool required, struct vgpu_err *err)
{
	size_t len = s ? strlen(s) : 0;
	if (required && len == 0)
		return vgpu_err_set(err, -EINVAL, "%s is required", what);
	if (len > max)
		return vgpu_err_set(err, -EINVAL, "%s is too long (%zu bytes, at most %zu)", what, len, max);
	return 0;
}

/* Sysctls a pod may set: those namespaced by the net or IPC namespaces it owns. */
static int check_sysctls(const Runtime__V1__PodSandboxConfig *cfg, bool host_net, bool host_ipc, struct vgpu_err *err)
{
	if (!cfg->linux)
		return 0;
	for (size_t i = 0; i < cfg->linux->n_sysctls; i++) {
		const char *k = cfg->linux->sysctls[i]->key, *v = cfg->linux->sysctls[i]->value;
		bool net = strncmp(k, "net.", 4) == 0;
		bool ipc = strncmp(k, "kernel.shm", 10) == 0 || strncmp(k, "kernel.msg", 10) == 0 ||
			   strcmp(k, "kernel.sem") == 0 || strncmp(k, "fs.mqueue.", 10) == 0;
		if ((!net && !ipc) || strchr(k, '/') || strstr(k, "..") || strlen(k) > 200 || strlen(v) > 200 ||
		    strchr(v, '\n'))
			return vgpu_err_set(err, -EINVAL, "sysctl %.200s: not a namespaced sysctl this runtime can set", k);
		if ((net && host_net) || (ipc && host_ipc))
			return vgpu_err_set(err, -EINVAL, "sysctl %s: not allowed with the host's %s namespace", k,
					    net ? "network" : "IPC");
	}
	return 0;
}

static int validate(struct vgpu_daemon *d, const Runtime__V1__RunPodSandboxRequest *req, struct vgpu_err *err)
{
	const Runtime__V1__PodSandboxConfig *cfg = req->config;
	if (!cfg || !cfg->metadata)
		return vgpu_err_set(err, -EINVAL, "pod sandbox config and its metadata are required");
	const Runtime__V1__PodSandboxMetadata *md = cfg->metadata;
	int r;
	if ((r = check_str("metadata.name", md->name, NAME_MAX_LEN, true, err)) < 0 ||
	    (r = check_str("metadata.namespace", md->namespace_, NAME_MAX_LEN, true, err)) < 0 ||
	    (r = check_str("metadata.uid", md->uid, NAME_MAX_LEN, true, err)) < 0 ||
	    (r = check_str("hostname", cfg->hostname, 64, false, err)) < 0 ||
	    (r = check_str("log_directory", cfg->log_directory, 4096, false, err)) < 0)
		return vgpu_err_prefix(err, "pod %s/%s", md->namespace_ ? md->namespace_ : "", md->name ? md->name : "");
	if (cfg->log_directory && *cfg->log_directory && cfg->log_directory[0] != '/')
		return vgpu_err_set(err, -EINVAL, "pod %s/%s: log_directory '%s' is not absolute", md->namespace_, md->name,
				    cfg->log_directory);
	if (cfg->linux && cfg->linux->cgroup_parent && *cfg->linux->cgroup_parent &&
	    (cfg->linux->cgroup_parent[0] != '/' || strstr(cfg->linux->cgroup_parent, "..") ||
	     strlen(cfg->linux->cgroup_parent) > 1024))
		return vgpu_err_set(err, -EINVAL, "pod %s/%s: cgroup_parent '%.100s' is not an absolute cgroupfs path",
				    md->namespace_, md->name, cfg->linux->cgroup_parent);
	if (strcmp(d->cfg->cgroup_driver, "cgroupfs") != 0)
		return vgpu_err_set(err, -EINVAL, "cgroup_driver '%s' is not supported by the runc handler yet (use cgroupfs)",
				    d->cfg->cgroup_driver);
	const Runtime__V1__NamespaceOption *ns = pod_ns_options(cfg);
	if (ns && ns->userns_options && ns->userns_options->mode != RUNTIME__V1__NAMESPACE_MODE__NODE)
		return vgpu_err_set(err, -EINVAL, "pod %s/%s: user namespaces are not supported", md->namespace_, md->name);
	if (ns && ns->pid == RUNTIME__V1__NAMESPACE_MODE__TARGET)
		return vgpu_err_set(err, -EINVAL, "pod %s/%s: pid namespace mode TARGET is for containers", md->namespace_,
				    md->name);
	for (size_t i = 0; i < cfg->n_labels; i++)
		if (strlen(cfg->labels[i]->key) > 4096 || strlen(cfg->labels[i]->value) > 65536)
			return vgpu_err_set(err, -EINVAL, "pod %s/%s: label '%.64s...' is too long", md->namespace_, md->name,
					    cfg->labels[i]->key);
	return 0;
}

/* The pod's GPU request from its annotations (vgpu.io/gpu*) and the handler's defaults. */
static int parse_gpu_request(const struct vgpu_handler_config *h, const Runtime__V1__PodSandboxConfig *cfg,
			     struct vgpu_gpu_request *out, struct vgpu_err *err)
{
	size_t n = cfg->n_annotations;
	_cleanup_free_ const char **keys = vgpu_calloc(n + 1, sizeof(char *));
	_cleanup_free_ const char **values = vgpu_calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		keys[i] = cfg->annotations[i]->key ? cfg->annotations[i]->key : "";
		values[i] = cfg->annotations[i]->value;
	}
	int r = vgpu_gpu_parse_request(h, n, keys, values, out, err);
	if (r < 0)
		return vgpu_err_prefix(err, "pod %s/%s", cfg->metadata->namespace_, cfg->metadata->name);
	return 0;
}

static int write_text(const char *dir, const char *name, const char *text, struct vgpu_err *err)
{
	_cleanup_free_ char *path = vgpu_asprintf("%s/%s", dir, name);
	return vgpu_pods_write_file(path, text, strlen(text), 0644, false, err);
}

static char *resolv_conf_text(const Runtime__V1__DNSConfig *dns)
{
	if (!dns || (!dns->n_servers && !dns->n_searches && !dns->n_options)) {
		char *host = NULL;
		if (vgpu_read_file("/etc/resolv.conf", 1 << 20, &host, NULL, NULL) == 0)
			return host;
		return vgpu_strdup("");
	}
	size_t cap = 64;
	for (size_t i = 0; i < dns->n_servers; i++)
		cap += strlen(dns->servers[i]) + 16;
	for (size_t i = 0; i < dns->n_searches; i++)
		cap += strlen(dns->searches[i]) + 2;
	for (size_t i = 0; i < dns->n_options; i++)
		cap += strlen(dns->options[i]) + 2;
	char *out = vgpu_calloc(1, cap + 32);
	for (size_t i = 0; i < dns->n_servers; i++)
		strcat(strcat(strcat(out, "nameserver "), dns->servers[i]), "\n");
	if (dns->n_searches) {
		strcat(out, "search");
		for (size_t i = 0; i < dns->n_searches; i++)
			strcat(strcat(out, " "), dns->searches[i]);
		strcat(out, "\n");
	}
	if (dns->n_options) {
		strcat(out, "options");
		for (size_t i = 0; i < dns->n_options; i++)
			strcat(strcat(out, " "), dns->options[i]);
		strcat(out, "\n");
	}
	return out;
}

static int check_dns(const Runtime__V1__DNSConfig *dns, struct vgpu_err *err)
{
	if (!dns)
		return 0;
	char **lists[3] = { dns->servers, dns->searches, dns->options };
	size_t ns[3] = { dns->n_servers, dns->n_searches, dns->n_options };
	for (int l = 0; l < 3; l++) {
		if (ns[l] > 64)
			return vgpu_err_set(err, -EINVAL, "dns_config: too many entries (%zu)", ns[l]);
		for (size_t i = 0; i < ns[l]; i++)
			if (strlen(lists[l][i]) > 256 || strpbrk(lists[l][i], "\n \t"))
				return vgpu_err_set(err, -EINVAL, "dns_config: bad entry '%.64s'", lists[l][i]);
	}
	return 0;
}

static int write_pod_files(struct vgpu_sandbox *s, const char *hostname, struct vgpu_err *err)
{
	int r = check_dns(s->config->dns_config, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *resolv = resolv_conf_text(s->config->dns_config);
	_cleanup_free_ char *hn = vgpu_asprintf("%s\n", hostname);
	_cleanup_free_ char *hosts = vgpu_asprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
						   "127.0.1.1\t%s\n", hostname);
	if ((r = write_text(s->dir, "resolv.conf", resolv, err)) < 0 || (r = write_text(s->dir, "hostname", hn, err)) < 0 ||
	    (r = write_text(s->dir, "hosts", hosts, err)) < 0)
		return r;
	return 0;
}

/* Start vgpu-pause; fills s->infra_pid/infra_start. */
static int start_infra(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, const char *hostname, struct vgpu_err *err)
{
	char *argv[160];
	size_t n = 0;
	argv[n++] = m->pause_path;
	argv[n++] = "--id";
	argv[n++] = s->id;
	if (!s->host_net) {
		argv[n++] = "--net";
		argv[n++] = "--uts";
		argv[n++] = "--hostname";
		argv[n++] = (char *)hostname;
	}
	if (!s->host_ipc)
		argv[n++] = "--ipc";
	if (s->share_pid)
		argv[n++] = "--pid";
	_cleanup_free_ char **kv = NULL;
	const Runtime__V1__LinuxPodSandboxConfig *lx = s->config->linux;
	size_t n_sysctls = lx ? lx->n_sysctls : 0;
	if (n_sysctls > 64)
		return vgpu_err_set(err, -EINVAL, "sandbox %s: too many sysctls (%zu, at most 64)", s->id, n_sysctls);
	kv = vgpu_calloc(n_sysctls + 1, sizeof(char *));
	for (size_t i = 0; i < n_sysctls; i++) {
		kv[i] = vgpu_asprintf("%s=%s", lx->sysctls[i]->key, lx->sysctls[i]->value);
		argv[n++] = "--sysctl";
		argv[n++] = kv[i];
	}
	argv[n] = NULL;
	struct vgpu_proc_opts opts = { .timeout_ms = 10000, .extra_fd = -1 };
	struct vgpu_proc_result res;
	int r = vgpu_proc_run(argv, &opts, &res, err);
	if (r == 0 && (!WIFEXITED(res.status) || WEXITSTATUS(res.status) != 0))
		r = vgpu_err_set(err, -EIO, "infra process: %s", res.err_len ? res.errout : "failed");
	pid_t pid = r == 0 ? (pid_t)strtol(res.out, NULL, 10) : 0;
	if (r == 0 && pid <= 1)
		r = vgpu_err_set(err, -EIO, "infra process: no pid reported");
	if (r == 0) {
		s->infra_pid = pid;
		s->infra_start = vgpu_proc_start_time(pid);
	}
	for (size_t i = 0; i < n_sysctls; i++)
		free(kv[i]);
	vgpu_proc_result_free(&res);
	return r < 0 ? vgpu_err_prefix(err, "sandbox %s", s->id) : 0;
}

static void kill_infra(pid_t pid, unsigned long long start)
{
	if (pid <= 1 || !vgpu_proc_alive(pid, start))
		return;
	kill(pid, SIGKILL);
	for (int i = 0; i < 200 && vgpu_proc_alive(pid, start); i++)
		usleep(5000);
}

static void cgroup_rmdir_all(struct vgpu_pod_manager *m, const char *rel)
{
	if (m->cgroup_v2) {
		_cleanup_free_ char *p = vgpu_asprintf("/sys/fs/cgroup%s", rel);
		rmdir(p);
		return;
	}
	const char *ctl[] = { "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory",
			      "net_cls", "net_prio", "perf_event", "pids", "rdma", "misc", "systemd", "unified",
			      "cpu,cpuacct", "net_cls,net_prio" };
	for (size_t i = 0; i < sizeof(ctl) / sizeof(ctl[0]); i++) {
		_cleanup_free_ char *p = vgpu_asprintf("/sys/fs/cgroup/%s%s", ctl[i], rel);
		rmdir(p);
	}
}

static void release_resources(struct vgpu_pod_manager *m, const char *id, pid_t infra_pid, unsigned long long infra_start,
			      const char *run_dir, const char *cgroup_parent, bool own_cgroup)
{
	kill_infra(infra_pid, infra_start);
	/* GPU first: a xen pod's granted ring pages are unmapped before its domain goes (a mapped
	 * page keeps a destroyed domain dying) */
	struct vgpu_err gpu_err = { 0 };
	if (vgpu_gpu_pod_remove(m->d->gpu, id, &gpu_err) < 0)
		vgpu_log(VGPU_LOG_WARN, "sandbox %s: GPU: %s", id, gpu_err.msg);
	vgpu_xen_pod_release(m, id); /* xen pods: the domain, found by name (a no-op without Xen) */
	struct vgpu_err net_err = { 0 };
	if (vgpu_pod_network_teardown(m->d->cfg, id, &net_err) < 0)
		vgpu_log(VGPU_LOG_WARN, "sandbox %s: network teardown: %s", id, net_err.msg);
	_cleanup_free_ char *shm = vgpu_asprintf("%s/%s/shm", m->run_sandbox_dir, id);
	if (umount2(shm, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		vgpu_log(VGPU_LOG_WARN, "sandbox %s: unmount %s: %s", id, shm, strerror(errno));
	if (run_dir && *run_dir)
		vgpu_pods_rm_tree(run_dir);
	if (own_cgroup && cgroup_parent && *cgroup_parent)
		cgroup_rmdir_all(m, cgroup_parent);
}

void vgpu_sandbox_cleanup(struct vgpu_pod_manager *m, struct vgpu_sandbox *s)
{
	pthread_mutex_lock(&m->lock);
	pid_t pid = s->infra_pid;
	unsigned long long start = s->infra_start;
	pthread_mutex_unlock(&m->lock);
	release_resources(m, s->id, pid, start, s->run_dir, s->cgroup_parent, s->own_cgroup_parent);
	int r = vgpu_pods_rm_tree(s->dir);
	if (r < 0)
		vgpu_log(VGPU_LOG_WARN, "sandbox %s: remove %s: %s", s->id, s->dir, strerror(-r));
}

void vgpu_sandbox_cleanup_id(struct vgpu_pod_manager *m, const char *id)
{
	_cleanup_free_ char *dir = vgpu_asprintf("%s/%s", m->sandbox_dir, id);
	_cleanup_free_ char *run = vgpu_asprintf("%s/%s", m->run_sandbox_dir, id);
	_cleanup_free_ char *cg = vgpu_asprintf("/vgpu-cri/%s", id);
	/* An interrupted creation saved meta.json with its infra pid once it had one. */
	_cleanup_free_ char *meta_path = vgpu_asprintf("%s/meta.json", dir), *meta = NULL;
	pid_t pid = 0;
	unsigned long long start = 0;
	if (vgpu_read_file(meta_path, 1 << 20, &meta, NULL, NULL) == 0) {
		const char *p = strstr(meta, "\"infra_pid\":");
		const char *q = strstr(meta, "\"infra_start\":");
		if (p && q) {
			pid = (pid_t)strtol(p + 12, NULL, 10);
			start = strtoull(q + 14, NULL, 10);
		}
	}
	/* The daemon may have died before it learnt the pid (vgpu-pause still running, or its holder's
	 * pid not saved yet): find them by the id in their command line. */
	size_t killed = vgpu_pods_kill_helpers(m->pause_path, "--id", id);
	if (killed)
		vgpu_log(VGPU_LOG_INFO, "sandbox %s: killed %zu infra process(es) of the interrupted creation", id, killed);
	release_resources(m, id, pid, start, run, cg, true);
	vgpu_pods_rm_tree(dir);
}

static bool same_metadata(const Runtime__V1__PodSandboxMetadata *a, const Runtime__V1__PodSandboxMetadata *b)
{
	return strcmp(a->name, b->name) == 0 && strcmp(a->namespace_, b->namespace_) == 0 && strcmp(a->uid, b->uid) == 0 &&
	       a->attempt == b->attempt;
}

/* Reserve the pod's metadata and link s (phase CREATING); -EEXIST if another pod has it. */
static int reserve(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_err *err)
{
	const Runtime__V1__PodSandboxMetadata *md = s->config->metadata;
	pthread_mutex_lock(&m->lock);
	for (struct vgpu_sandbox *o = m->sandboxes; o; o = o->next)
		if (o->phase != VGPU_PHASE_REMOVED && same_metadata(o->config->metadata, md)) {
			pthread_mutex_unlock(&m->lock);
			return vgpu_err_set(err, -EEXIST,
					    "pod %s/%s (uid %s, attempt %u) already exists as sandbox %s", md->namespace_,
					    md->name, md->uid, md->attempt, o->id);
		}
	s->refs++;
	s->next = m->sandboxes;
	m->sandboxes = s;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int setup_sandbox(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_err *err)
{
	const Runtime__V1__PodSandboxConfig *cfg = s->config;
	const char *hostname = cfg->hostname && *cfg->hostname ? cfg->hostname : cfg->metadata->name;
	_cleanup_free_ char *hn = vgpu_strdup(hostname);
	if (strlen(hn) > 63)
		hn[63] = '\0';
	int r = vgpu_mkdir_p(s->dir, 0700, err);
	if (r == 0)
		r = vgpu_sandbox_save_config(m, s, err);
	if (r == 0)
		r = vgpu_sandbox_save(m, s, err); /* creating: start-up cleans up if we die here */
	if (r == 0)
		r = write_pod_files(s, hn, err);
	if (r == 0)
		r = vgpu_mkdir_p(s->run_dir, 0700, err);
	if (r == 0 && !s->host_ipc && !s->xen_domain) {
		if ((r = vgpu_mkdir_p(s->shm_path, 0755, err)) == 0 &&
		    mount("shm", s->shm_path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, SHM_OPTIONS) < 0)
			r = vgpu_err_errno(err, errno, "sandbox %s: mount shm on %s", s->id, s->shm_path);
	}
	if (r == 0 && cfg->log_directory && *cfg->log_directory)
		r = vgpu_mkdir_p(cfg->log_directory, 0755, err);
	if (s->xen_domain) { /* the pod is a domU: no infra process, no namespaces on this host */
		if (r == 0)
			r = vgpu_xen_pod_start(m, s, err);
		/* GPU: channel offers from that domain over granted rings (idm.h, Xen transport) */
		if (r == 0 && s->gpu.enabled) {
			pthread_mutex_lock(&m->lock);
			uint32_t domid = s->xen_domid;
			pthread_mutex_unlock(&m->lock);
			r = vgpu_gpu_pod_add_xen(m->d->gpu, s->id, cfg->metadata->namespace_, cfg->metadata->name,
						 cfg->metadata->uid, &s->gpu, domid, err);
		}
		return r;
	}
	if (r == 0)
		r = start_infra(m, s, hn, err);
	/* CNI (cni_pod.h): pin the infra process's netns and ADD; DEL in stop_sandbox/release_resources.
	 * With no usable CNI config (Status says NetworkReady=false, so kubelet sends only hostNetwork
	 * pods) the pod keeps its loopback-only namespace. */
	if (r == 0 && !s->host_net) {
		r = vgpu_pod_network_setup(m->d->cfg, s->id, s->infra_pid, s->config, NULL, err);
		if (r == -ENETUNREACH) {
			vgpu_log(VGPU_LOG_WARN, "%s: pod gets loopback only", err ? err->msg : "network not ready");
			vgpu_err_clear(err);
			r = 0;
		}
	}
	/* Last, so that a failure above never leaves a broker channel; the caller's cleanup
	 * (release_resources) removes it if saving the pod fails after this. */
	if (r == 0 && s->gpu.enabled)
		r = vgpu_gpu_pod_add(m->d->gpu, s->id, cfg->metadata->namespace_, cfg->metadata->name, cfg->metadata->uid,
				     &s->gpu, err);
	return r;
}

int vgpu_rpc_run_pod_sandbox(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			     struct vgpu_err *err)
{
	const Runtime__V1__RunPodSandboxRequest *req = (const Runtime__V1__RunPodSandboxRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	int r = validate(d, req, err);
	if (r < 0)
		return r;
	const char *hname = req->runtime_handler && *req->runtime_handler ? req->runtime_handler
									  : d->cfg->default_runtime_handler;
	const struct vgpu_handler_config *h = vgpu_config_handler(d->cfg, hname);
	if (!h)
		return vgpu_err_set(err, -EINVAL, "pod %s/%s: unknown runtime handler '%.100s'",
				    req->config->metadata->namespace_, req->config->metadata->name, hname);
	bool xen = strcmp(h->type, "xen") == 0;
	if (!xen && strcmp(h->type, "runc") != 0)
		return vgpu_err_set(err, -EINVAL, "pod %s/%s: runtime handler '%s' (type %s) is not available in this build",
				    req->config->metadata->namespace_, req->config->metadata->name, hname, h->type);
	if (xen && (r = vgpu_xen_pods_available(m, err)) < 0) {
		vgpu_err_prefix(err, "pod %s/%s: runtime handler '%s'", req->config->metadata->namespace_,
				req->config->metadata->name, hname);
		return r;
	}
	struct vgpu_gpu_request gpu;
	if ((r = parse_gpu_request(h, req->config, &gpu, err)) < 0)
		return r;
	struct vgpu_sandbox *s = vgpu_sandbox_alloc();
	vgpu_new_id(s->id);
	s->gpu = gpu;
	s->config = vgpu_pb_clone(req->config);
	s->handler = vgpu_strdup(hname);
	s->created_at = vgpu_wall_ns();
	s->dir = vgpu_asprintf("%s/%s", m->sandbox_dir, s->id);
	s->run_dir = vgpu_asprintf("%s/%s", m->run_sandbox_dir, s->id);
	if (xen) {
		char name[VGPU_XEN_NAME_MAX + 1];
		vgpu_xen_pod_domain_name(name, s->id, s->config->metadata->name);
		s->xen_domain = vgpu_strdup(name);
	}
	const Runtime__V1__NamespaceOption *ns = pod_ns_options(s->config);
	s->host_net = ns && ns->network == RUNTIME__V1__NAMESPACE_MODE__NODE;
	s->host_ipc = ns && ns->ipc == RUNTIME__V1__NAMESPACE_MODE__NODE;
	s->host_pid = ns && ns->pid == RUNTIME__V1__NAMESPACE_MODE__NODE;
	s->share_pid = ns && ns->pid == RUNTIME__V1__NAMESPACE_MODE__POD;
	s->shm_path = s->host_ipc ? vgpu_strdup("/dev/shm") : vgpu_asprintf("%s/shm", s->run_dir);
	const char *parent = s->config->linux ? s->config->linux->cgroup_parent : NULL;
	s->own_cgroup_parent = !parent || !*parent;
	s->cgroup_parent = s->own_cgroup_parent ? vgpu_asprintf("/vgpu-cri/%s", s->id) : vgpu_strdup(parent);
	if ((r = check_sysctls(s->config, s->host_net, s->host_ipc, err)) < 0 || (r = reserve(m, s, err)) < 0) {
		vgpu_sandbox_put(m, s);
		return r;
	}
	r = setup_sandbox(m, s, err);
	if (r == 0) {
		pthread_mutex_lock(&m->lock);
		s->phase = VGPU_PHASE_LIVE;
		s->state = RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY;
		pthread_mutex_unlock(&m->lock);
		r = vgpu_sandbox_save(m, s, err);
	}
	if (r < 0) {
		vgpu_log(VGPU_LOG_WARN, "sandbox %s: run failed: %s", s->id, err ? err->msg : "");
		vgpu_sandbox_cleanup(m, s);
		vgpu_sandbox_unlink(m, s);
		vgpu_sandbox_put(m, s);
		return r;
	}
	if (s->xen_domain)
		vgpu_log(VGPU_LOG_INFO, "sandbox %s: pod %s/%s ready, domain %s", s->id, s->config->metadata->namespace_,
			 s->config->metadata->name, s->xen_domain);
	else
		vgpu_log(VGPU_LOG_INFO, "sandbox %s: pod %s/%s ready, infra pid %d", s->id,
			 s->config->metadata->namespace_, s->config->metadata->name, (int)s->infra_pid);
	Runtime__V1__RunPodSandboxResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__run_pod_sandbox_response__init(out);
	out->pod_sandbox_id = vgpu_strdup(s->id);
	vgpu_sandbox_put(m, s);
	*resp = &out->base;
	return 0;
}

/* References to the sandbox's containers, for stopping or removing them outside the lock. */
static struct vgpu_container **containers_of(struct vgpu_pod_manager *m, const char *sandbox_id, size_t *n)
{
	pthread_mutex_lock(&m->lock);
	size_t count = 0;
	for (struct vgpu_container *c = m->containers; c; c = c->next)
		count += strcmp(c->sandbox_id, sandbox_id) == 0;
	struct vgpu_container **v = vgpu_calloc(count + 1, sizeof(*v));
	size_t i = 0;
	for (struct vgpu_container *c = m->containers; c; c = c->next)
		if (strcmp(c->sandbox_id, sandbox_id) == 0) {
			c->refs++;
			v[i++] = c;
		}
	pthread_mutex_unlock(&m->lock);
	*n = i;
	return v;
}

static int stop_sandbox(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_err *err)
{
	size_t n;
	struct vgpu_container **cs = containers_of(m, s->id, &n);
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		struct vgpu_err cerr = { 0 };
		int cr = vgpu_container_stop(m, cs[i], 0, &cerr);
		if (cr < 0 && s->xen_domain) {
			/* a guest that does not answer must not keep its domain alive: destroying the
			 * domain ends the container, which is then reported exited */
			vgpu_log(VGPU_LOG_WARN, "sandbox %s: %s (the domain's destruction ends it)", s->id, cerr.msg);
			cr = 0;
		}
		if (cr < 0 && r == 0)
			r = vgpu_err_set(err, cr, "sandbox %s: %s", s->id, cerr.msg);
		vgpu_container_put(m, cs[i]);
	}
	free(cs);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	pid_t pid = s->infra_pid;
	unsigned long long start = s->infra_start;
	pthread_mutex_unlock(&m->lock);
	kill_infra(pid, start);
	if (vgpu_proc_alive(pid, start))
		return vgpu_err_set(err, -EIO, "sandbox %s: infra process %d does not die", s->id, (int)pid);
	pthread_mutex_lock(&m->lock);
	bool was_ready = s->state != RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
	pthread_mutex_unlock(&m->lock);
	/* a xen pod's GPU channels map pages of its domain: closed before the domain is destroyed */
	if (s->xen_domain && s->gpu.enabled && (r = vgpu_gpu_pod_stop(m->d->gpu, s->id, err)) < 0)
		return r;
	if (s->xen_domain && (r = vgpu_xen_pod_stop(m, s, err)) < 0) /* NOTREADY from its start */
		return r;
	/* Close the pod's broker channels and free its GPU objects (idempotent); the socket's
	 * directory stays until RemovePodSandbox. */
	if (s->gpu.enabled && (r = vgpu_gpu_pod_stop(m->d->gpu, s->id, err)) < 0)
		return r;
	if (!s->host_net && (r = vgpu_pod_network_teardown(m->d->cfg, s->id, err)) < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	bool changed = was_ready || s->state != RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
	s->state = RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
	pthread_mutex_unlock(&m->lock);
	if (changed) {
		vgpu_log(VGPU_LOG_INFO, "sandbox %s: stopped", s->id);
		return vgpu_sandbox_save(m, s, err);
	}
	return 0;
}

int vgpu_rpc_stop_pod_sandbox(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			      struct vgpu_err *err)
{
	const Runtime__V1__StopPodSandboxRequest *req = (const Runtime__V1__StopPodSandboxRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_sandbox *s;
	int r = vgpu_sandbox_get(m, req->pod_sandbox_id, &s, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&s->op_lock);
	r = stop_sandbox(m, s, err);
	pthread_mutex_unlock(&s->op_lock);
	vgpu_sandbox_put(m, s);
	if (r < 0)
		return r;
	Runtime__V1__StopPodSandboxResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__stop_pod_sandbox_response__init(out);
	*resp = &out->base;
	return 0;
}

int vgpu_rpc_remove_pod_sandbox(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
				struct vgpu_err *err)
{
	const Runtime__V1__RemovePodSandboxRequest *req = (const Runtime__V1__RemovePodSandboxRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_sandbox *s;
	struct vgpu_err lookup_err = { 0 };
	int r = vgpu_sandbox_get(m, req->pod_sandbox_id, &s, &lookup_err);
	if (r == -EINVAL)
		return vgpu_err_set(err, r, "%s", lookup_err.msg);
	if (r == 0) {
		/* Removal forcibly stops what still runs, then removes every container and the pod. */
		pthread_mutex_lock(&s->op_lock);
		r = stop_sandbox(m, s, err);
		size_t n = 0;
		struct vgpu_container **cs = r == 0 ? containers_of(m, s->id, &n) : NULL;
		for (size_t i = 0; i < n; i++) {
			if (r == 0)
				r = vgpu_container_remove(m, cs[i], err);
			vgpu_container_put(m, cs[i]);
		}
		free(cs);
		if (r == 0) {
			vgpu_sandbox_cleanup(m, s);
			vgpu_sandbox_unlink(m, s);
			vgpu_log(VGPU_LOG_INFO, "sandbox %s: removed", s->id);
		}
		pthread_mutex_unlock(&s->op_lock);
		vgpu_sandbox_put(m, s);
		if (r < 0)
			return r;
	}
	/* An unknown id is not an error: removal is idempotent (CRI). */
	Runtime__V1__RemovePodSandboxResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__remove_pod_sandbox_response__init(out);
	*resp = &out->base;
	return 0;
}
