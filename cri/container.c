/* CRI container life cycle on the runc handler: CreateContainer builds the rootfs (image store) and
 * the OCI bundle, then starts a vgpu-monitor that runs `runc create` and stays with the container;
 * Start/Stop/Remove drive runc; exits arrive through the monitor's exit file (sandbox_manager.c). */
#include "container.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "image.h"
#include "log.h"
#include "oci_spec.h"
#include "sandbox_store.h"
#include "util.h"
#include "xen_container.h"

#define MONITOR_SYNC_TIMEOUT_MS 30000
#define KILL_WAIT_MS 10000

static int validate(const Runtime__V1__CreateContainerRequest *req, struct vgpu_err *err)
{
	const Runtime__V1__ContainerConfig *c = req->config;
	if (!c || !c->metadata || !c->metadata->name || !*c->metadata->name)
		return vgpu_err_set(err, -EINVAL, "container config with metadata.name is required");
	if (strlen(c->metadata->name) > 253)
		return vgpu_err_set(err, -EINVAL, "container name '%.64s...' is too long (at most 253)", c->metadata->name);
	if (!c->image || !c->image->image || !*c->image->image)
		return vgpu_err_set(err, -EINVAL, "container %s: image is required", c->metadata->name);
	if (c->log_path && (strlen(c->log_path) > 4096 || c->log_path[0] == '/' || strstr(c->log_path, "..")))
		return vgpu_err_set(err, -EINVAL, "container %s: log_path '%.100s' must be relative to the pod's log directory",
				    c->metadata->name, c->log_path);
	return 0;
}

static bool ns_mode(const Runtime__V1__ContainerConfig *c, const struct vgpu_sandbox *s, Runtime__V1__NamespaceMode *pid,
		    const char **target)
{
	const Runtime__V1__NamespaceOption *o =
		c->linux && c->linux->security_context ? c->linux->security_context->namespace_options : NULL;
	*target = o ? o->target_id : NULL;
	if (o) {
		*pid = o->pid;
		return true;
	}
	*pid = s->host_pid ? RUNTIME__V1__NAMESPACE_MODE__NODE
	       : s->share_pid ? RUNTIME__V1__NAMESPACE_MODE__POD
			      : RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
	return false;
}

/* Namespace paths of the sandbox and the pid namespace the container asks for. */
static int fill_namespaces(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, const Runtime__V1__ContainerConfig *c,
			   struct vgpu_oci_input *in, char paths[4][64], struct vgpu_err *err)
{
	pthread_mutex_lock(&m->lock);
	pid_t infra = s->infra_pid;
	pthread_mutex_unlock(&m->lock);
	snprintf(paths[0], 64, "/proc/%d/ns/net", (int)infra);
	snprintf(paths[1], 64, "/proc/%d/ns/ipc", (int)infra);
	snprintf(paths[2], 64, "/proc/%d/ns/uts", (int)infra);
	in->net = (struct vgpu_oci_ns){ .path = s->host_net ? NULL : paths[0], .host = s->host_net };
	in->ipc = (struct vgpu_oci_ns){ .path = s->host_ipc ? NULL : paths[1], .host = s->host_ipc };
	in->uts = (struct vgpu_oci_ns){ .path = s->host_net ? NULL : paths[2], .host = s->host_net };
	Runtime__V1__NamespaceMode pid;
	const char *target;
	ns_mode(c, s, &pid, &target);
	switch (pid) {
	case RUNTIME__V1__NAMESPACE_MODE__NODE:
		in->pid = (struct vgpu_oci_ns){ .host = true };
		break;
	case RUNTIME__V1__NAMESPACE_MODE__POD:
		if (!s->share_pid)
			return vgpu_err_set(err, -EINVAL, "pid namespace POD asked in sandbox %s, which has none to share", s->id);
		snprintf(paths[3], 64, "/proc/%d/ns/pid", (int)infra);
		in->pid = (struct vgpu_oci_ns){ .path = paths[3] };
		break;
	case RUNTIME__V1__NAMESPACE_MODE__TARGET: {
		struct vgpu_container *t;
		int r = vgpu_container_get(m, target, &t, err);
		if (r < 0)
			return vgpu_err_prefix(err, "pid namespace target");
		pthread_mutex_lock(&m->lock);
		snprintf(paths[3], 64, "/proc/%d/ns/pid", (int)t->pid);
		bool running = t->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
		pthread_mutex_unlock(&m->lock);
		vgpu_container_put(m, t);
		if (!running)
			return vgpu_err_set(err, -EBUSY, "pid namespace target %s is not running", target);
		in->pid = (struct vgpu_oci_ns){ .path = paths[3] };
		break;
	}
	default:
		in->pid = (struct vgpu_oci_ns){ 0 };
	}
	return 0;
}

/* A GPU pod's container gets the shim as libcuda.so.1 in VGPU_CONTAINER_SHIM_DIR (on the loader
 * path through the injected LD_LIBRARY_PATH) and over each libcuda.so.1 of the image, and the pod's
 * broker socket dir; nothing else of the host (no /dev/nvidia*). Points into inj and image_libcuda. */
static struct vgpu_oci_bind *gpu_binds(const struct vgpu_gpu_injection *inj, char **image_libcuda, size_t *n)
{
	size_t count = 2;
	for (size_t i = 0; image_libcuda[i]; i++)
		count++;
	struct vgpu_oci_bind *b = vgpu_calloc(count, sizeof(*b));
	b[0] = (struct vgpu_oci_bind){ .source = inj->shim_path, .destination = VGPU_CONTAINER_SHIM_DIR "/libcuda.so.1" };
	b[1] = (struct vgpu_oci_bind){ .source = inj->socket_dir, .destination = VGPU_CONTAINER_SOCKET_DIR };
	for (size_t i = 0; image_libcuda[i]; i++)
		b[2 + i] = (struct vgpu_oci_bind){ .source = inj->shim_path, .destination = image_libcuda[i] };
	*n = count;
	return b;
}

static int write_spec(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_container *c,
		      const struct vgpu_image_config *img, const char *rootfs, struct vgpu_err *err)
{
	struct vgpu_oci_input in = {
		.container = c->config, .pod = s->config, .image = img, .rootfs = rootfs,
		.cgroups_path = c->cgroups_path, .cgroup_v2 = m->cgroup_v2,
	};
	char paths[4][64];
	int r = fill_namespaces(m, s, c->config, &in, paths, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *hostname_text = NULL;
	_cleanup_free_ char *hn_path = vgpu_asprintf("%s/hostname", s->dir);
	if (vgpu_read_file(hn_path, 4096, &hostname_text, NULL, NULL) == 0)
		hostname_text[strcspn(hostname_text, "\n")] = '\0';
	_cleanup_free_ char *hosts = vgpu_asprintf("%s/hosts", s->dir);
	_cleanup_free_ char *resolv = vgpu_asprintf("%s/resolv.conf", s->dir);
	_cleanup_free_ char *term = vgpu_asprintf("%s/termination-log", c->dir);
	r = vgpu_pods_write_file(term, "", 0, 0666, false, err);
	if (r < 0)
		return r;
	in.hostname = hostname_text;
	in.hosts_path = s->host_net ? "/etc/hosts" : hosts;
	in.resolv_path = resolv;
	in.hostname_path = s->host_net ? NULL : hn_path;
	in.shm_path = s->shm_path;
	in.termination_log_path = term;
	const struct vgpu_handler_config *h = vgpu_config_handler(m->d->cfg, s->handler);
	in.pids_limit = h ? h->pids_limit : 0;
	struct vgpu_gpu_injection inj = { 0 };
	_cleanup_strv_ char **image_libcuda = NULL;
	_cleanup_free_ struct vgpu_oci_bind *binds = NULL;
	if (s->gpu.enabled) {
		if ((r = vgpu_gpu_injection(m->d->gpu, s->id, &inj, err)) < 0)
			return vgpu_err_prefix(err, "GPU pod %s", s->id);
		image_libcuda = vgpu_gpu_image_libcuda(rootfs);
		binds = gpu_binds(&inj, image_libcuda, &in.n_binds);
		in.binds = binds;
		in.env = inj.env;
	}
	_cleanup_free_ char *json = NULL;
	r = vgpu_oci_spec_generate(&in, &json, err);
	vgpu_gpu_injection_free(&inj);
	if (r < 0)
		return r;
	_cleanup_free_ char *path = vgpu_asprintf("%s/config.json", c->dir);
	return vgpu_pods_write_file(path, json, strlen(json), 0600, false, err);
}

/* Start vgpu-monitor, which runs runc create; fills c->pid and c->monitor_pid. */
static int start_monitor(struct vgpu_pod_manager *m, struct vgpu_container *c, const char *logdir,
			 struct vgpu_err *err)
{
	int sync[2];
	if (pipe2(sync, O_CLOEXEC) < 0)
		return vgpu_err_errno(err, errno, "container %s: pipe", c->id);
	_cleanup_free_ char *exit_file = vgpu_asprintf("%s/%s", m->exit_dir, c->id);
	_cleanup_free_ char *pid_file = vgpu_asprintf("%s/container.pid", c->dir);
	_cleanup_free_ char *rt_log = vgpu_asprintf("%s/runc.log", c->dir);
	const char *log = c->log_path && *c->log_path ? c->log_path : "/dev/null";
	char *argv[32] = { m->monitor_path, "--id", c->id, "--runtime", (char *)m->runc.path, "--root", (char *)m->runc.root,
			   "--bundle", c->dir, "--log", (char *)log, "--exit-file", exit_file, "--pid-file", pid_file,
			   "--runtime-log", rt_log, NULL };
	size_t n = 17;
	if (*c->log_path && logdir && *logdir) { /* the monitor opens the log beneath it */
		argv[n++] = "--log-dir";
		argv[n++] = (char *)logdir;
	}
	/* stdio the monitor holds (a container without them gets the same command line as ever) */
	const Runtime__V1__ContainerConfig *cfg = c->config;
	if (cfg->tty) {
		argv[n++] = "--tty";
		argv[n++] = "1";
	}
	if (cfg->stdin) {
		argv[n++] = "--stdin";
		argv[n++] = "1";
	}
	if (cfg->stdin && cfg->stdin_once) {
		argv[n++] = "--stdin-once";
		argv[n++] = "1";
	}
	argv[n] = NULL;
	pid_t first = vgpu_proc_spawn(argv, sync[1], err);
	close(sync[1]);
	if (first < 0) {
		close(sync[0]);
		return vgpu_err_prefix(err, "container %s: monitor", c->id);
	}
	int st;
	while (waitpid(first, &st, 0) < 0 && errno == EINTR)
		;
	char buf[2048];
	size_t len = 0;
	long long deadline = vgpu_now_ns() + MONITOR_SYNC_TIMEOUT_MS * 1000000LL;
	for (;;) {
		struct pollfd p = { .fd = sync[0], .events = POLLIN };
		long long left = (deadline - vgpu_now_ns()) / 1000000LL;
		if (left <= 0 || poll(&p, 1, (int)left) == 0)
			break;
		ssize_t n = read(sync[0], buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof(buf) - 1)
			break;
	}
	close(sync[0]);
	buf[len] = '\0';
	int ctr = 0, mon = 0;
	if (sscanf(buf, "OK %d %d", &ctr, &mon) == 2 && ctr > 0 && mon > 0) {
		pthread_mutex_lock(&m->lock);
		c->pid = ctr;
		c->pid_start = vgpu_proc_start_time(ctr);
		c->monitor_pid = mon;
		c->monitor_start = vgpu_proc_start_time(mon);
		pthread_mutex_unlock(&m->lock);
		return 0;
	}
	buf[strcspn(buf, "\n")] = '\0';
	if (strncmp(buf, "ERR ", 4) == 0)
		return vgpu_err_set(err, -EIO, "container %s: create: %s", c->id, buf + 4);
	return vgpu_err_set(err, -EIO, "container %s: monitor reported nothing (%s)", c->id,
			    len ? buf : "no answer in time");
}

void vgpu_container_cleanup(struct vgpu_pod_manager *m, const char *id, const char *dir)
{
	struct vgpu_err err = { 0 };
	if (vgpu_runc_delete(&m->runc, id, &err) < 0)
		vgpu_log(VGPU_LOG_WARN, "%s", err.msg);
	if (vgpu_image_unmount_rootfs(dir, &err) < 0)
		vgpu_log(VGPU_LOG_WARN, "container %s: %s", id, err.msg);
	_cleanup_free_ char *exit_file = vgpu_asprintf("%s/%s", m->exit_dir, id);
	unlink(exit_file);
	int r = vgpu_pods_rm_tree(dir);
	if (r < 0)
		vgpu_log(VGPU_LOG_WARN, "container %s: remove %s: %s", id, dir, strerror(-r));
}

void vgpu_container_cleanup_interrupted(struct vgpu_pod_manager *m, const char *id, const char *dir)
{
	size_t killed = vgpu_pods_kill_helpers(m->monitor_path, "--id", id);
	if (killed)
		vgpu_log(VGPU_LOG_INFO, "container %s: killed the monitor of the unfinished creation", id);
	/* `runc create --bundle <dir>` the monitor started (through a wrapper, if runtime_path is one)
	 * goes on without it; killed half-way it could leave runc state that delete does not handle,
	 * so let it finish first. */
	if (!vgpu_pods_wait_helpers(NULL, "--bundle", dir, 10000)) {
		vgpu_log(VGPU_LOG_WARN, "container %s: runc create still running after 10 s: killing it", id);
		vgpu_pods_kill_helpers(NULL, "--bundle", dir);
	}
	vgpu_container_cleanup(m, id, dir);
}

/* Reserve the name in the sandbox and link c (CREATING). */
static int reserve(struct vgpu_pod_manager *m, struct vgpu_container *c, struct vgpu_err *err)
{
	const Runtime__V1__ContainerMetadata *md = c->config->metadata;
	pthread_mutex_lock(&m->lock);
	for (struct vgpu_container *o = m->containers; o; o = o->next)
		if (o->phase != VGPU_PHASE_REMOVED && strcmp(o->sandbox_id, c->sandbox_id) == 0 &&
		    strcmp(o->config->metadata->name, md->name) == 0 && o->config->metadata->attempt == md->attempt) {
			pthread_mutex_unlock(&m->lock);
			return vgpu_err_set(err, -EEXIST, "container %s (attempt %u) already exists in sandbox %s as %s",
					    md->name, md->attempt, c->sandbox_id, o->id);
		}
	c->refs++;
	c->next = m->containers;
	m->containers = c;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int create_in_sandbox(struct vgpu_daemon *d, struct vgpu_sandbox *s, struct vgpu_container *c,
			     struct vgpu_err *err)
{
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_image_config img = { 0 };
	_cleanup_free_ char *rootfs = NULL;
	int r = vgpu_image_lookup(d->images, c->config->image->image, &c->image_id, &img, err);
	if (r < 0)
		return vgpu_err_prefix(err, "container %s: image %s", c->config->metadata->name, c->config->image->image);
	if ((r = vgpu_mkdir_p(c->dir, 0700, err)) < 0 || (r = vgpu_container_save_config(m, c, err)) < 0 ||
	    (r = vgpu_container_save(m, c, err)) < 0)
		goto out;
	if (*c->log_path) {
		_cleanup_free_ char *dir = vgpu_strdup(c->log_path);
		*strrchr(dir, '/') = '\0';
		if ((r = vgpu_mkdir_p(dir, 0755, err)) < 0)
			goto out;
	}
	if (s->xen_domain) { /* in the pod's guest, through its agent */
		r = vgpu_xen_container_create(m, s, c, &img, err);
		goto out;
	}
	long long t0 = vgpu_now_ns();
	if ((r = vgpu_image_mount_rootfs(d->images, c->image_id, c->dir, &rootfs, err)) < 0)
		goto out;
	long long t1 = vgpu_now_ns();
	if ((r = write_spec(m, s, c, &img, rootfs, err)) < 0) {
		vgpu_err_prefix(err, "container %s", c->config->metadata->name);
		goto out;
	}
	long long t2 = vgpu_now_ns();
	r = start_monitor(m, c, s->config->log_directory, err);
	vgpu_log(VGPU_LOG_DEBUG, "container %s: rootfs %.1f ms, spec %.1f ms, monitor + runc create %.1f ms", c->id,
		 (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6, (double)(vgpu_now_ns() - t2) / 1e6);
out:
	vgpu_image_config_free(&img);
	return r;
}

int vgpu_rpc_create_container(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			      struct vgpu_err *err)
{
	const Runtime__V1__CreateContainerRequest *req = (const Runtime__V1__CreateContainerRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	int r = validate(req, err);
	if (r < 0)
		return r;
	struct vgpu_sandbox *s;
	if ((r = vgpu_sandbox_get(m, req->pod_sandbox_id, &s, err)) < 0)
		return r;
	pthread_mutex_lock(&s->op_lock); /* no Stop/Remove of the pod while we add to it */
	pthread_mutex_lock(&m->lock);
	vgpu_sandbox_refresh_locked(s);
	bool ready = s->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY && s->phase == VGPU_PHASE_LIVE;
	pthread_mutex_unlock(&m->lock);
	struct vgpu_container *c = NULL;
	if (!ready) {
		r = vgpu_err_set(err, -EBUSY, "sandbox %s is not ready", s->id);
		goto out;
	}
	c = vgpu_container_alloc();
	vgpu_new_id(c->id);
	snprintf(c->sandbox_id, sizeof(c->sandbox_id), "%s", s->id);
	c->config = vgpu_pb_clone(req->config);
	c->created_at = vgpu_wall_ns();
	c->dir = vgpu_asprintf("%s/%s", m->container_dir, c->id);
	c->cgroups_path = vgpu_asprintf("%s/%s", s->cgroup_parent, c->id);
	const char *logdir = s->config->log_directory;
	c->log_path = c->config->log_path && *c->config->log_path && logdir && *logdir
			      ? vgpu_asprintf("%s/%s", logdir, c->config->log_path)
			      : vgpu_strdup("");
	if (c->config->linux && c->config->linux->resources)
		c->resources = vgpu_pb_clone(c->config->linux->resources);
	if ((r = reserve(m, c, err)) < 0)
		goto out;
	r = create_in_sandbox(d, s, c, err);
	if (r == 0) {
		pthread_mutex_lock(&m->lock);
		c->phase = VGPU_PHASE_LIVE;
		vgpu_container_check_exit_locked(m, c); /* it may have died already */
		vgpu_event_emit_locked(m, c, RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_CREATED_EVENT);
		pthread_mutex_unlock(&m->lock);
		r = vgpu_container_save(m, c, err);
	}
	if (r < 0) {
		vgpu_log(VGPU_LOG_WARN, "container %s: create failed: %s", c->id, err ? err->msg : "");
		if (c->xen)
			vgpu_xen_container_cleanup(m, c);
		else
			vgpu_container_cleanup_interrupted(m, c->id, c->dir);
		vgpu_container_unlink(m, c);
	} else {
		vgpu_log(VGPU_LOG_INFO, "container %s: created %s in sandbox %s, pid %d", c->id, c->config->metadata->name,
			 s->id, (int)c->pid);
		Runtime__V1__CreateContainerResponse *out = vgpu_calloc(1, sizeof(*out));
		runtime__v1__create_container_response__init(out);
		out->container_id = vgpu_strdup(c->id);
		*resp = &out->base;
	}
out:
	pthread_mutex_unlock(&s->op_lock);
	vgpu_sandbox_put(m, s);
	vgpu_container_put(m, c);
	return r;
}

int vgpu_rpc_start_container(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			     struct vgpu_err *err)
{
	const Runtime__V1__StartContainerRequest *req = (const Runtime__V1__StartContainerRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_container *c;
	int r = vgpu_container_get(m, req->container_id, &c, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->op_lock);
	pthread_mutex_lock(&m->lock);
	vgpu_container_check_exit_locked(m, c);
	Runtime__V1__ContainerState state = c->state;
	pthread_mutex_unlock(&m->lock);
	if (state != RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED) {
		r = vgpu_err_set(err, -EBUSY, "container %s is %s, not created", c->id,
				 state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING ? "running" : "exited");
		goto out;
	}
	long long t0 = vgpu_wall_ns();
	if ((r = c->xen ? vgpu_xen_container_start(m, c, err) : vgpu_runc_start(&m->runc, c->id, err)) < 0)
		goto out;
	pthread_mutex_lock(&m->lock);
	c->started_at = t0;
	if (c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED) {
		c->state = RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
		vgpu_event_emit_locked(m, c, RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_STARTED_EVENT);
	}
	pthread_mutex_unlock(&m->lock);
	r = vgpu_container_save(m, c, err);
	vgpu_log(VGPU_LOG_INFO, "container %s: started", c->id);
out:
	pthread_mutex_unlock(&c->op_lock);
	vgpu_container_put(m, c);
	if (r == 0) {
		Runtime__V1__StartContainerResponse *out = vgpu_calloc(1, sizeof(*out));
		runtime__v1__start_container_response__init(out);
		*resp = &out->base;
	}
	return r;
}

static int stop_signal(const Runtime__V1__ContainerConfig *cfg)
{
	static const int map[] = {
		[RUNTIME__V1__SIGNAL__SIGABRT] = SIGABRT, [RUNTIME__V1__SIGNAL__SIGALRM] = SIGALRM,
		[RUNTIME__V1__SIGNAL__SIGHUP] = SIGHUP,   [RUNTIME__V1__SIGNAL__SIGINT] = SIGINT,
		[RUNTIME__V1__SIGNAL__SIGKILL] = SIGKILL, [RUNTIME__V1__SIGNAL__SIGQUIT] = SIGQUIT,
		[RUNTIME__V1__SIGNAL__SIGTERM] = SIGTERM, [RUNTIME__V1__SIGNAL__SIGUSR1] = SIGUSR1,
		[RUNTIME__V1__SIGNAL__SIGUSR2] = SIGUSR2, [RUNTIME__V1__SIGNAL__SIGPWR] = SIGPWR,
		[RUNTIME__V1__SIGNAL__SIGWINCH] = SIGWINCH,
	};
	int s = (int)cfg->stop_signal;
	if (s > 0 && (size_t)s < sizeof(map) / sizeof(map[0]) && map[s])
		return map[s];
	return SIGTERM;
}

int vgpu_container_stop(struct vgpu_pod_manager *m, struct vgpu_container *c, long long timeout_s,
			struct vgpu_err *err)
{
	pthread_mutex_lock(&m->lock);
	vgpu_container_check_exit_locked(m, c);
	bool exited = c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
	bool running = c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
	pthread_mutex_unlock(&m->lock);
	if (exited)
		return 0;
	if (c->xen)
		return vgpu_xen_container_stop(m, c, stop_signal(c->config), running ? timeout_s : 0, err);
	struct vgpu_sandbox *s = NULL;
	bool all = false;
	if (vgpu_sandbox_get(m, c->sandbox_id, &s, NULL) == 0) {
		all = s->share_pid || s->host_pid;
		vgpu_sandbox_put(m, s);
	}
	if (running && timeout_s > 0) {
		int r = vgpu_runc_kill(&m->runc, c->id, stop_signal(c->config), false, err);
		if (r < 0 && r != -ESRCH)
			return r;
		if (vgpu_container_wait_exit(m, c, timeout_s * 1000))
			return 0;
		vgpu_log(VGPU_LOG_INFO, "container %s: still running after %llds, killing", c->id, (long long)timeout_s);
	}
	int r = vgpu_runc_kill(&m->runc, c->id, SIGKILL, all, err);
	if (r < 0 && r != -ESRCH)
		return r;
	if (!vgpu_container_wait_exit(m, c, KILL_WAIT_MS))
		return vgpu_err_set(err, -ETIMEDOUT, "container %s: did not exit after SIGKILL", c->id);
	return 0; /* the exit watcher saves the state; the exit file is the record until then */
}

int vgpu_rpc_stop_container(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			    struct vgpu_err *err)
{
	const Runtime__V1__StopContainerRequest *req = (const Runtime__V1__StopContainerRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_container *c;
	int r = vgpu_container_get(m, req->container_id, &c, err);
	if (r < 0)
		return r;
	if (req->timeout < 0 || req->timeout > 86400 * 365)
		r = vgpu_err_set(err, -EINVAL, "container %s: stop timeout %lld out of range", c->id, (long long)req->timeout);
	if (r == 0) {
		pthread_mutex_lock(&c->op_lock);
		r = vgpu_container_stop(m, c, req->timeout, err);
		pthread_mutex_unlock(&c->op_lock);
	}
	vgpu_container_put(m, c);
	if (r == 0) {
		Runtime__V1__StopContainerResponse *out = vgpu_calloc(1, sizeof(*out));
		runtime__v1__stop_container_response__init(out);
		*resp = &out->base;
	}
	return r;
}

int vgpu_container_remove(struct vgpu_pod_manager *m, struct vgpu_container *c, struct vgpu_err *err)
{
	pthread_mutex_lock(&c->op_lock);
	int r = vgpu_container_stop(m, c, 0, err);
	if (r == 0) {
		if (c->xen)
			vgpu_xen_container_cleanup(m, c);
		else
			vgpu_container_cleanup(m, c->id, c->dir);
		pthread_mutex_lock(&m->lock);
		vgpu_event_emit_locked(m, c, RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_DELETED_EVENT);
		pthread_mutex_unlock(&m->lock);
		vgpu_container_unlink(m, c);
		vgpu_log(VGPU_LOG_INFO, "container %s: removed", c->id);
	}
	pthread_mutex_unlock(&c->op_lock);
	return r;
}

int vgpu_rpc_remove_container(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			      struct vgpu_err *err)
{
	const Runtime__V1__RemoveContainerRequest *req = (const Runtime__V1__RemoveContainerRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_container *c;
	struct vgpu_err lookup = { 0 };
	int r = vgpu_container_get(m, req->container_id, &c, &lookup);
	if (r == -EINVAL)
		return vgpu_err_set(err, r, "%s", lookup.msg);
	if (r == 0) {
		r = vgpu_container_remove(m, c, err);
		vgpu_container_put(m, c);
		if (r < 0)
			return r;
	}
	/* Removing an unknown container is not an error (CRI: idempotent). */
	Runtime__V1__RemoveContainerResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__remove_container_response__init(out);
	*resp = &out->base;
	return 0;
}

int vgpu_rpc_update_container_resources(struct vgpu_daemon *d, const ProtobufCMessage *req_msg,
					ProtobufCMessage **resp, struct vgpu_err *err)
{
	const Runtime__V1__UpdateContainerResourcesRequest *req =
		(const Runtime__V1__UpdateContainerResourcesRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_container *c;
	int r = vgpu_container_get(m, req->container_id, &c, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->op_lock);
	_cleanup_free_ char *json = NULL;
	_cleanup_free_ char *path = vgpu_asprintf("%s/resources.json", c->dir);
	if (!req->linux) {
		r = vgpu_err_set(err, -EINVAL, "container %s: no linux resources given", c->id);
		goto out;
	}
	/* a xen container's cgroup is the guest's (cgroup v2) */
	if ((r = vgpu_oci_resources_json(req->linux, c->xen ? true : m->cgroup_v2, &json, err)) < 0) {
		vgpu_err_prefix(err, "container %s", c->id);
		goto out;
	}
	pthread_mutex_lock(&m->lock);
	vgpu_container_check_exit_locked(m, c);
	bool exited = c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
	pthread_mutex_unlock(&m->lock);
	if (exited) {
		r = vgpu_err_set(err, -EBUSY, "container %s has exited", c->id);
		goto out;
	}
	if ((r = vgpu_pods_write_file(path, json, strlen(json), 0600, false, err)) < 0)
		goto out;
	r = c->xen ? vgpu_xen_container_update(m, c, json, err) : vgpu_runc_update(&m->runc, c->id, path, err);
	if (r < 0) /* a xen pod whose domain is gone: -ENOTCONN, FAILED_PRECONDITION */
		goto out;
	Runtime__V1__LinuxContainerResources *copy = vgpu_pb_clone(req->linux);
	pthread_mutex_lock(&m->lock);
	Runtime__V1__LinuxContainerResources *old = c->resources;
	c->resources = copy;
	pthread_mutex_unlock(&m->lock);
	if (old)
		protobuf_c_message_free_unpacked(&old->base, NULL);
	r = vgpu_container_save_config(m, c, err);
out:
	pthread_mutex_unlock(&c->op_lock);
	vgpu_container_put(m, c);
	if (r == 0) {
		Runtime__V1__UpdateContainerResourcesResponse *out = vgpu_calloc(1, sizeof(*out));
		runtime__v1__update_container_resources_response__init(out);
		*resp = &out->base;
	}
	return r;
}
