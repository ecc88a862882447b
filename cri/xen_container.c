/* Containers of xen pods, run by vgpu-agent in the pod's domU (see xen_container.h). */
#include "xen_container.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <linux/loop.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "image.h"
#include "log.h"
#include "oci_spec.h"
#include "runc.h"
#include "sandbox_store.h"
#include "util.h"
#include "xen_domain.h"
#include "xen_gpu.h"
#include "xen_sandbox.h"
#include "xen_vol.h"

#define CREATE_TIMEOUT_MS 180000LL   /* agent: wait for the disk, mount, runc create (TCG: slow) */
#define START_TIMEOUT_MS 90000LL
#define REMOVE_TIMEOUT_MS 60000LL
#define STOP_SLACK_MS 40000LL        /* on top of the stop timeout: SIGKILL and the round trip */
#define EXIT_SETTLE_MS 15000LL       /* after a stop, until the exit and last records are in */
#define LOG_CHUNK (256u << 10)
#define LOG_CHUNKS_PER_SYNC 8
#define PUMP_PERIOD_MS 1000
#define KEEPALIVE_IDLE_NS (15LL * 1000000000LL)
#define MKFS_TIMEOUT_MS 300000LL
#define LOOP_ATTEMPTS 8
#define VOL_TIMEOUT_MS 60000LL       /* per 512 KiB chunk of a copy-in mount */
#define VOL_CHECK_NS (10LL * 1000000000LL)
#define VOL_GET_TIMEOUT_MS 10000LL   /* one write-back read (at most 64 KiB) */

struct vgpu_xen_ctr *vgpu_xen_ctr_new(const char *vdev)
{
	struct vgpu_xen_ctr *x = vgpu_calloc(1, sizeof(*x));
	snprintf(x->vdev, sizeof(x->vdev), "%s", vdev);
	pthread_mutex_init(&x->lock, NULL);
	return x;
}

void vgpu_xen_ctr_free(struct vgpu_xen_ctr *x)
{
	if (!x)
		return;
	pthread_mutex_destroy(&x->lock);
	vgpu_xen_vols_free(x->vols, x->n_vols);
	free(x);
}

/* ---- talking to the agent ---- */

struct ctr_arg {
	struct agent_ctr_req req;
	long long timeout_ms;
};

static int ctr_op(struct vgpu_xen_agent *a, void *arg, struct vgpu_err *err)
{
	struct ctr_arg *x = arg;
	return vgpu_xen_agent_ctr(a, &x->req, x->timeout_ms, err);
}

/* One request about c in its pod's guest. -ENOTCONN: the pod is not ready; -ENOENT: no pod. */
static int agent_request(struct vgpu_pod_manager *m, struct vgpu_container *c, vgpu_xen_agent_op op, void *arg,
			 struct vgpu_err *err)
{
	struct vgpu_sandbox *s;
	int r = vgpu_sandbox_get(m, c->sandbox_id, &s, NULL);
	if (r < 0)
		return vgpu_err_set(err, -ENOTCONN, "container %s: its sandbox %s is gone", c->id, c->sandbox_id);
	r = vgpu_xen_pod_agent_op(m, s, op, arg, err);
	vgpu_sandbox_put(m, s);
	if (r < 0)
		vgpu_err_prefix(err, "container %s", c->id);
	return r;
}

static int simple_request(struct vgpu_pod_manager *m, struct vgpu_container *c, uint16_t type, long long timeout_ms,
			  struct vgpu_err *err)
{
	struct ctr_arg x = { .req = { .type = type, .id = c->id }, .timeout_ms = timeout_ms };
	return agent_request(m, c, ctr_op, &x, err);
}

/* ---- exits ---- */

/* Record an exit the way vgpu-monitor does (exit_dir/<id>), then apply it. */
static void record_exit(struct vgpu_pod_manager *m, struct vgpu_container *c, int exit_code, long long finished_ns)
{
	char text[128];
	_cleanup_free_ char *path = vgpu_asprintf("%s/%s", m->exit_dir, c->id);
	int n = snprintf(text, sizeof(text), "{\"exit_code\": %d, \"signal\": 0, \"finished_at\": %lld}\n", exit_code,
			 finished_ns > 0 ? finished_ns : vgpu_wall_ns());
	struct vgpu_err err = { 0 };
	if (vgpu_pods_write_file(path, text, (size_t)n, 0600, true, &err) < 0) {
		vgpu_log(VGPU_LOG_WARN, "container %s: %s", c->id, err.msg);
		return;
	}
	pthread_mutex_lock(&m->lock);
	bool now = vgpu_container_check_exit_locked(m, c);
	pthread_mutex_unlock(&m->lock);
	if (now && vgpu_container_save(m, c, &err) < 0)
		vgpu_log(VGPU_LOG_WARN, "container %s: %s", c->id, err.msg);
}

/* The container cannot be asked any more (its pod's domain is gone): it is over. */
static void record_lost(struct vgpu_pod_manager *m, struct vgpu_container *c, const char *why)
{
	pthread_mutex_lock(&m->lock);
	bool exited = c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
	pthread_mutex_unlock(&m->lock);
	if (exited)
		return;
	vgpu_log(VGPU_LOG_WARN, "container %s: %s: marking exited", c->id, why);
	record_exit(m, c, 255, 0);
	pthread_mutex_lock(&m->lock);
	free(c->reason);
	c->reason = vgpu_strdup("Unknown");
	free(c->message);
	c->message = vgpu_strdup(why);
	pthread_mutex_unlock(&m->lock);
	(void)vgpu_container_save(m, c, NULL);
}

/* ---- log copy and state ---- */

struct sync_arg {
	struct vgpu_container *c;
	int log_fd;           /* -1: no log_path (records are read and dropped) */
	uint64_t offset;
	bool eof;
	struct agent_ctr_state st;
};

/* Writable single-file mounts (kubelet's termination-log) back to their host files, from the
 * guest's copies; errors are logged, the exit is recorded all the same. */
static void write_back(struct vgpu_xen_agent *a, struct vgpu_container *c)
{
	struct vgpu_xen_ctr *xc = c->xen;
	for (size_t i = 0; i < xc->n_vols; i++) {
		struct vgpu_xen_vol *v = &xc->vols[i];
		if (!vgpu_xen_vol_writes_back(v))
			continue;
		struct vgpu_err err = { 0 };
		struct agent_vol_data d;
		bool written = false;
		long long t0 = vgpu_now_ns();
		int r = vgpu_xen_agent_vol_get(a, v->key, VOL_GET_TIMEOUT_MS, &d, &err);
		if (r == 0 && (r = vgpu_xen_vol_write_back(v->host_path, d.data, d.len, &written, &err)) == 0)
			vgpu_log(VGPU_LOG_INFO, "container %s: mount %s: %s %s (%zu bytes%s, %.2f s)", c->id,
				 v->container_path, written ? "written back to" : "unchanged:", v->host_path, d.len,
				 d.flags & AGENT_VOL_GET_TRUNCATED ? ", the guest's first 64 KiB" : "",
				 (double)(vgpu_now_ns() - t0) / 1e9);
		else
			vgpu_log(VGPU_LOG_WARN, "container %s: mount %s: not written back: %s", c->id, v->container_path,
				 err.msg);
		if (r == -ETIMEDOUT || r == -EPIPE || r == -EPROTO)
			break; /* the channel is gone: the rest would fail alike */
	}
}

static int sync_op(struct vgpu_xen_agent *a, void *arg, struct vgpu_err *err)
{
	struct sync_arg *x = arg;
	for (int i = 0; i < LOG_CHUNKS_PER_SYNC; i++) {
		struct agent_ctr_log_data d;
		int r = vgpu_xen_agent_ctr_logs(a, x->c->id, x->offset, LOG_CHUNK, &d, err);
		if (r < 0)
			return r;
		if (d.len && x->log_fd >= 0) {
			for (size_t done = 0; done < d.len;) {
				ssize_t n = write(x->log_fd, d.data + done, d.len - done);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0)
					return vgpu_err_errno(err, errno, "container %s: write log %s", x->c->id, x->c->log_path);
				done += (size_t)n;
			}
		}
		x->offset = d.next_offset;
		x->eof = d.eof;
		if (d.eof || d.len < LOG_CHUNK)
			break;
	}
	int r = vgpu_xen_agent_ctr_status(a, x->c->id, &x->st, err);
	/* The write-back point: the exit becomes visible (exit_dir/<id>, then ContainerStatus EXITED,
	 * the exit event, StopContainer's return) only after this op returns, so kubelet, which reads
	 * the termination message from the host file once it sees the exit, always finds it there. */
	if (r == 0 && x->st.state == AGENT_CTR_EXITED && x->eof)
		write_back(a, x->c);
	return r;
}

/* After a restart the mounts' list comes from the config (content unknown). Under xc->lock. */
static void know_vols(struct vgpu_container *c)
{
	struct vgpu_xen_ctr *xc = c->xen;
	struct vgpu_err err = { 0 };
	if (xc->vols_known)
		return;
	if (vgpu_xen_vols_plan(c->config, &xc->vols, &xc->n_vols, NULL, &err) < 0)
		vgpu_log(VGPU_LOG_WARN, "container %s: %s", c->id, err.msg);
	xc->vols_known = true;
}

void vgpu_xen_container_sync(struct vgpu_pod_manager *m, struct vgpu_container *c)
{
	struct vgpu_xen_ctr *xc = c->xen;
	pthread_mutex_lock(&xc->lock);
	if (xc->log_done) {
		pthread_mutex_unlock(&xc->lock);
		return;
	}
	know_vols(c);
	struct sync_arg x = { .c = c, .log_fd = -1, .offset = xc->log_offset };
	if (*c->log_path)
		x.log_fd = open(c->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	struct vgpu_err err = { 0 };
	int r = agent_request(m, c, sync_op, &x, &err);
	if (x.log_fd >= 0)
		close(x.log_fd);
	xc->log_offset = x.offset;
	if (r == 0 && x.st.state == AGENT_CTR_EXITED && x.eof) {
		record_exit(m, c, x.st.exit_code, (long long)x.st.finished_ns);
		xc->log_done = true;
	} else if (r == -ENOTCONN || r == -ENOENT) {
		record_lost(m, c, err.msg);
		xc->log_done = true;
	} else if (r < 0) {
		vgpu_log(VGPU_LOG_DEBUG, "%s", err.msg);
	}
	pthread_mutex_unlock(&xc->lock);
}

void vgpu_xen_container_recover(struct vgpu_pod_manager *m, struct vgpu_container *c)
{
	(void)m;
	struct stat st;
	/* the log file holds exactly the agent's bytes copied so far. Not persisted: after a log
	 * rotation (ReopenContainerLog) and then a restart, the rotated part is copied again. */
	if (*c->log_path && stat(c->log_path, &st) == 0)
		c->xen->log_offset = (uint64_t)st.st_size;
	c->xen->log_done = c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
}

/* ---- copy-in mounts ---- */

struct vol_arg {
	struct vgpu_xen_vol *vols;  /* borrowed */
	size_t n;
	struct agent_buf *streams;  /* n record streams (an empty directory: len 0) */
};

static int vol_op(struct vgpu_xen_agent *a, void *arg, struct vgpu_err *err)
{
	struct vol_arg *x = arg;
	for (size_t i = 0; i < x->n; i++) {
		int r = vgpu_xen_agent_vol_put(a, x->vols[i].key, vgpu_xen_vol_flags(&x->vols[i]), x->streams[i].data,
					       x->streams[i].len, VOL_TIMEOUT_MS, err);
		if (r < 0)
			return vgpu_err_prefix(err, "mount %s", x->vols[i].container_path);
	}
	return 0;
}

void vgpu_xen_container_vol_refresh(struct vgpu_pod_manager *m, struct vgpu_container *c)
{
	struct vgpu_xen_ctr *xc = c->xen;
	struct vgpu_err err = { 0 };
	pthread_mutex_lock(&xc->lock);
	if (!xc->log_done)
		know_vols(c);
	for (size_t i = 0; i < xc->n_vols && !xc->log_done; i++) {
		struct vgpu_xen_vol *v = &xc->vols[i];
		bool is_file;
		uint64_t sig;
		if (!v->readonly)
			continue; /* writable: the guest's copy is the live one (files: written back at exit) */
		vgpu_err_clear(&err);
		if (vgpu_xen_vol_read(v->host_path, NULL, &is_file, &sig, &err) < 0 || sig == v->sig ||
		    is_file != v->is_file)
			continue; /* a host path that went away or changed kind keeps the last copy */
		struct agent_buf stream = { 0 };
		uint64_t read_sig;
		if (vgpu_xen_vol_read(v->host_path, &stream, &is_file, &read_sig, &err) == 0 && is_file == v->is_file) {
			struct vgpu_xen_vol one = *v;
			struct vol_arg x = { .vols = &one, .n = 1, .streams = &stream };
			one.sig = read_sig;
			if (agent_request(m, c, vol_op, &x, &err) == 0) {
				vgpu_log(VGPU_LOG_INFO, "container %s: mount %s: %s changed, copied again (%zu bytes)", c->id,
					 v->container_path, v->host_path, stream.len);
				v->sig = read_sig;
			}
		}
		if (err.msg[0])
			vgpu_log(VGPU_LOG_WARN, "container %s: mount %s: %s", c->id, v->container_path, err.msg);
		agent_buf_free(&stream);
	}
	pthread_mutex_unlock(&xc->lock);
}

/* ---- create ---- */

/* The spec for the guest: the pod is the domain, so the container shares its network, IPC and
 * UTS namespaces (and its pid namespace when the pod shares one); nothing of dom0 is mounted. */
static int make_spec(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_container *c,
		     const struct vgpu_image_config *img, const char *rootfs, char **json_out, struct vgpu_err *err)
{
	const Runtime__V1__ContainerConfig *cfg = c->config;
	/* CRI mounts are copy-in volumes in the guest (xen_vol.h), bound below; oci_spec.c sees none */
	Runtime__V1__ContainerConfig bare = *cfg;
	bare.n_mounts = 0;
	bare.mounts = NULL;
	const Runtime__V1__NamespaceOption *o =
		cfg->linux && cfg->linux->security_context ? cfg->linux->security_context->namespace_options : NULL;
	Runtime__V1__NamespaceMode pid = o ? o->pid
				     : s->host_pid || s->share_pid ? RUNTIME__V1__NAMESPACE_MODE__POD
								   : RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
	if (pid == RUNTIME__V1__NAMESPACE_MODE__TARGET)
		return vgpu_err_set(err, -EOPNOTSUPP, "container %s: pid namespace TARGET is not supported in xen pods",
				    cfg->metadata->name);
	_cleanup_free_ char *cgroup = vgpu_asprintf("/vgpu/%s", c->id);
	struct vgpu_oci_input in = {
		.container = &bare, .pod = s->config, .image = img, .rootfs = rootfs,
		.cgroups_path = cgroup, .cgroup_v2 = true,
		.net = { .host = true }, .ipc = { .host = true }, .uts = { .host = true },
		.pid = { .host = pid != RUNTIME__V1__NAMESPACE_MODE__CONTAINER },
		.hostname = s->config->hostname,
	};
	const struct vgpu_handler_config *h = vgpu_config_handler(m->d->cfg, s->handler);
	in.pids_limit = h ? h->pids_limit : 0;
	/* GPU pods: the guest's shim as libcuda.so.1 and the Xen transport (xen_gpu.c) */
	struct vgpu_xen_gpu_inject gpu = { 0 };
	if (s->gpu.enabled && vgpu_xen_gpu_inject(m->d->gpu, s->id, rootfs, &in, &gpu, err) < 0)
		return vgpu_err_prefix(err, "container %s", cfg->metadata->name);
	_cleanup_free_ char *json = NULL;
	int r = vgpu_oci_spec_generate(&in, &json, err);
	vgpu_xen_gpu_inject_free(&gpu);
	if (r < 0)
		return vgpu_err_prefix(err, "container %s", cfg->metadata->name);
	/* the bundle in the guest has the rootfs beside config.json */
	json_object *spec = json_tokener_parse(json), *root;
	if (!spec || !json_object_object_get_ex(spec, "root", &root)) {
		json_object_put(spec);
		return vgpu_err_set(err, -EIO, "container %s: generated spec has no root", c->id);
	}
	json_object_object_add(root, "path", json_object_new_string("rootfs"));
	vgpu_xen_vols_spec(spec, c->xen->vols, c->xen->n_vols);
	/* CRI stdin/stdin_once/tty for the agent, which gives such a container a stdin FIFO that attach
	 * sessions write into, or a terminal (cri/agent/agent_stream.h); ours override any the pod brought */
	json_object *ann;
	if (!json_object_object_get_ex(spec, "annotations", &ann) || !json_object_is_type(ann, json_type_object)) {
		ann = json_object_new_object();
		json_object_object_add(spec, "annotations", ann);
	}
	json_object_object_add(ann, "io.vgpu-cri.stdin", json_object_new_string(cfg->stdin ? "true" : "false"));
	json_object_object_add(ann, "io.vgpu-cri.stdin-once", json_object_new_string(cfg->stdin_once ? "true" : "false"));
	/* the spec's process.terminal as the agent looks for it: runc gets --console-socket */
	json_object_object_add(ann, "io.vgpu-cri.tty", json_object_new_string(cfg->tty ? "true" : "false"));
	if (s->gpu.enabled && (r = vgpu_xen_gpu_spec_devices(spec, err)) < 0) {
		json_object_put(spec);
		return vgpu_err_prefix(err, "container %s", cfg->metadata->name);
	}
	*json_out = vgpu_strdup(json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(spec);
	return 0;
}

static const char *mkfs_erofs_path(void)
{
	static const char *const paths[] = { "/usr/bin/mkfs.erofs", "/usr/sbin/mkfs.erofs", "/bin/mkfs.erofs",
					     "/sbin/mkfs.erofs" };
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (access(paths[i], X_OK) == 0)
			return paths[i];
	return NULL;
}

/* An erofs image of the container's rootfs (the image's layers merged). */
static int make_image(struct vgpu_container *c, const char *rootfs, const char *image, struct vgpu_err *err)
{
	const char *mkfs = mkfs_erofs_path();
	if (!mkfs)
		return vgpu_err_set(err, -ENOENT, "container %s: mkfs.erofs not found (install erofs-utils in the driver "
				    "domain)", c->id);
	char *argv[] = { (char *)mkfs, (char *)image, (char *)rootfs, NULL };
	struct vgpu_proc_opts opts = { .timeout_ms = MKFS_TIMEOUT_MS, .extra_fd = -1 };
	struct vgpu_proc_result res;
	int r = vgpu_proc_run(argv, &opts, &res, err);
	if (r < 0)
		return vgpu_err_prefix(err, "container %s: mkfs.erofs", c->id);
	if (res.timed_out || !WIFEXITED(res.status) || WEXITSTATUS(res.status) != 0) {
		res.errout[strcspn(res.errout, "\n")] = '\0';
		r = vgpu_err_set(err, -EIO, "container %s: mkfs.erofs %s: %s%s", c->id, image,
				 res.timed_out ? "timed out " : "failed ", res.errout);
	}
	vgpu_proc_result_free(&res);
	return r;
}

/* The image's erofs disk, shared by all its containers (image.h): built from this container's
 * rootfs mount the first time, into a temporary file renamed into place (two containers building
 * it at once both succeed; the content is the same). *built tells which. */
static int shared_image(struct vgpu_pod_manager *m, struct vgpu_container *c, const char *rootfs, char **image,
			bool *built, struct vgpu_err *err)
{
	*built = false;
	*image = vgpu_image_erofs_path(m->d->images, c->image_id);
	if (!*image)
		return vgpu_err_set(err, -EINVAL, "container %s: malformed image id %s", c->id, c->image_id);
	struct stat st;
	if (stat(*image, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
		return 0;
	_cleanup_free_ char *tmp = vgpu_image_erofs_tmp(m->d->images);
	int r = make_image(c, rootfs, tmp, err);
	if (r == 0 && rename(tmp, *image) < 0)
		r = vgpu_err_errno(err, errno, "container %s: rename %s to %s", c->id, tmp, *image);
	if (r < 0)
		unlink(tmp);
	*built = r == 0;
	return r;
}

/* A read-only loop device on image that goes away by itself once nothing holds it (autoclear):
 * after blkback lets go, at disk removal or domain destruction. Returns its fd (the caller closes
 * it once blkback has it open) and its path. */
static int loop_attach(const char *image, char *dev, size_t dev_len, struct vgpu_err *err)
{
	_cleanup_close_ int img = open(image, O_RDONLY | O_CLOEXEC);
	if (img < 0)
		return vgpu_err_errno(err, errno, "open %s", image);
	_cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return vgpu_err_errno(err, errno, "open /dev/loop-control");
	for (int attempt = 0; attempt < LOOP_ATTEMPTS; attempt++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			return vgpu_err_errno(err, errno, "LOOP_CTL_GET_FREE");
		snprintf(dev, dev_len, "/dev/loop%d", n);
		int fd = open(dev, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return vgpu_err_errno(err, errno, "open %s", dev);
		struct loop_config lc = { .fd = (uint32_t)img };
		lc.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
		snprintf((char *)lc.info.lo_file_name, sizeof(lc.info.lo_file_name), "%s", image);
		if (ioctl(fd, LOOP_CONFIGURE, &lc) == 0)
			return fd;
		int e = errno;
		close(fd);
		if (e != EBUSY) /* EBUSY: someone took it between GET_FREE and CONFIGURE */
			return vgpu_err_errno(err, e, "LOOP_CONFIGURE %s", dev);
	}
	return vgpu_err_set(err, -EBUSY, "no free loop device after %d attempts", LOOP_ATTEMPTS);
}

/* The first of xvdb..xvdz no other container of the pod uses (mgr->lock held). */
static int pick_vdev_locked(struct vgpu_pod_manager *m, const char *sandbox_id, char out[8])
{
	for (char l = 'b'; l <= 'z'; l++) {
		snprintf(out, 8, "xvd%c", l);
		bool used = false;
		for (struct vgpu_container *o = m->containers; o && !used; o = o->next)
			used = o->xen && o->phase != VGPU_PHASE_REMOVED && strcmp(o->sandbox_id, sandbox_id) == 0 &&
			       strcmp(o->xen->vdev, out) == 0;
		if (!used)
			return 0;
	}
	return -ENOSPC;
}

static int create_in_guest(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_container *c,
			   const struct vgpu_image_config *img, struct vgpu_xen *xen, uint32_t domid, const char *vdev,
			   struct vol_arg *va, long long t0, struct vgpu_err *err);

int vgpu_xen_container_create(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_container *c,
			      const struct vgpu_image_config *img, struct vgpu_err *err)
{
	struct vgpu_xen *xen = vgpu_xen_pods_handle(m);
	if (!xen)
		return vgpu_xen_pods_available(m, err);
	char vdev[8];
	pthread_mutex_lock(&m->lock);
	int r = pick_vdev_locked(m, s->id, vdev);
	if (r == 0)
		c->xen = vgpu_xen_ctr_new(vdev);
	uint32_t domid = s->xen_domid;
	pthread_mutex_unlock(&m->lock);
	if (r < 0)
		return vgpu_err_set(err, -ENOSPC, "sandbox %s: no free disk slot for another container (xvdb..xvdz)", s->id);
	if ((r = vgpu_container_save(m, c, err)) < 0) /* the vdev is on record before the disk exists */
		return r;
	long long t0 = vgpu_now_ns();
	struct vol_arg va = { 0 };
	if ((r = vgpu_xen_vols_plan(c->config, &va.vols, &va.n, &va.streams, err)) < 0)
		return vgpu_err_prefix(err, "container %s", c->config->metadata->name);
	pthread_mutex_lock(&c->xen->lock);
	c->xen->vols = va.vols;
	c->xen->n_vols = va.n;
	c->xen->vols_known = true;
	pthread_mutex_unlock(&c->xen->lock);
	r = create_in_guest(m, s, c, img, xen, domid, vdev, &va, t0, err);
	for (size_t i = 0; i < va.n; i++)
		agent_buf_free(&va.streams[i]);
	free(va.streams);
	return r;
}

static int create_in_guest(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_container *c,
			   const struct vgpu_image_config *img, struct vgpu_xen *xen, uint32_t domid, const char *vdev,
			   struct vol_arg *va, long long t0, struct vgpu_err *err)
{
	int r;
	_cleanup_free_ char *rootfs = NULL;
	_cleanup_free_ char *spec = NULL;
	_cleanup_free_ char *image = NULL;
	bool built = false;
	if ((r = vgpu_image_mount_rootfs(m->d->images, c->image_id, c->dir, &rootfs, err)) < 0)
		return r;
	r = make_spec(m, s, c, img, rootfs, &spec, err);
	if (r == 0) { /* a copy for ContainerStatus(verbose); the guest gets its own */
		_cleanup_free_ char *copy = vgpu_asprintf("%s/config.json", c->dir);
		r = vgpu_pods_write_file(copy, spec, strlen(spec), 0600, false, err);
	}
	if (r == 0)
		r = shared_image(m, c, rootfs, &image, &built, err);
	struct vgpu_err uerr = { 0 };
	if (vgpu_image_unmount_rootfs(c->dir, &uerr) < 0)
		vgpu_log(VGPU_LOG_WARN, "container %s: %s", c->id, uerr.msg);
	if (r < 0)
		return r;
	long long t1 = vgpu_now_ns();
	char dev[64];
	int loop_fd = loop_attach(image, dev, sizeof(dev), err);
	if (loop_fd < 0)
		return vgpu_err_prefix(err, "container %s: image disk", c->id);
	struct vgpu_xen_disk disk = { .path = dev, .vdev = vdev, .writable = false };
	r = vgpu_xen_disk_add(xen, domid, &disk, err);
	close(loop_fd); /* blkback holds it now (or nothing does, and autoclear frees it) */
	if (r < 0)
		return vgpu_err_prefix(err, "container %s: disk %s as %s of domain %u", c->id, dev, vdev, domid);
	long long t2 = vgpu_now_ns();
	if (va->n && (r = agent_request(m, c, vol_op, va, err)) < 0)
		return r;
	long long t3 = vgpu_now_ns();
	_cleanup_free_ char *guest_dev = vgpu_asprintf("/dev/%s", vdev);
	struct ctr_arg x = { .req = { .type = AGENT_MSG_CTR_CREATE, .id = c->id, .rootfs_dev = guest_dev,
				      .spec_json = spec },
			     .timeout_ms = CREATE_TIMEOUT_MS };
	r = agent_request(m, c, ctr_op, &x, err);
	if (r < 0)
		return r;
	vgpu_log(VGPU_LOG_INFO, "container %s: in domain %u: image %s %.1f s, disk %s on %s %.1f s, %zu mounts copied "
		 "%.1f s, agent create %.1f s", c->id, domid, built ? "built" : "shared", (double)(t1 - t0) / 1e9, dev,
		 vdev, (double)(t2 - t1) / 1e9,
		 va->n, (double)(t3 - t2) / 1e9, (double)(vgpu_now_ns() - t3) / 1e9);
	return 0;
}

/* ---- start, stop, exec, remove ---- */

int vgpu_xen_container_start(struct vgpu_pod_manager *m, struct vgpu_container *c, struct vgpu_err *err)
{
	return simple_request(m, c, AGENT_MSG_CTR_START, START_TIMEOUT_MS, err);
}

int vgpu_xen_container_stop(struct vgpu_pod_manager *m, struct vgpu_container *c, int sig, long long timeout_s,
			    struct vgpu_err *err)
{
	long long timeout_ms = timeout_s > 0 ? timeout_s * 1000 : 0;
	if (timeout_ms > 24LL * 3600 * 1000)
		timeout_ms = 24LL * 3600 * 1000;
	struct ctr_arg x = { .req = { .type = AGENT_MSG_CTR_STOP, .id = c->id,
				      .signal = timeout_ms > 0 ? (uint32_t)sig : SIGKILL,
				      .timeout_ms = (uint32_t)timeout_ms },
			     .timeout_ms = timeout_ms + STOP_SLACK_MS };
	struct vgpu_err aerr = { 0 };
	int r = agent_request(m, c, ctr_op, &x, &aerr);
	if (r == -ENOTCONN || r == -ENOENT) { /* nothing left to stop */
		record_lost(m, c, aerr.msg[0] ? aerr.msg : "its pod is gone");
		return 0;
	}
	if (r < 0)
		return vgpu_err_set(err, r, "%s", aerr.msg);
	/* the agent answered once the exit file was there; the last records follow within seconds */
	long long deadline = vgpu_now_ns() + EXIT_SETTLE_MS * 1000000LL;
	for (;;) {
		vgpu_xen_container_sync(m, c);
		pthread_mutex_lock(&m->lock);
		bool exited = c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
		pthread_mutex_unlock(&m->lock);
		if (exited)
			return 0;
		if (vgpu_now_ns() > deadline)
			return vgpu_err_set(err, -ETIMEDOUT, "container %s: stopped in the guest, but its exit was not "
					    "reported within %lld s", c->id, EXIT_SETTLE_MS / 1000);
		usleep(200 * 1000);
	}
}

struct exec_arg {
	const char *id;
	char *const *argv;
	uint32_t timeout_ms;
	struct vgpu_xen_exec_result res;
};

static int exec_op(struct vgpu_xen_agent *a, void *arg, struct vgpu_err *err)
{
	struct exec_arg *x = arg;
	return vgpu_xen_agent_ctr_exec(a, x->id, x->argv, x->timeout_ms, &x->res, err);
}

int vgpu_xen_container_exec(struct vgpu_pod_manager *m, struct vgpu_container *c, char *const *argv,
			    long long timeout_ms, struct vgpu_proc_result *res, struct vgpu_err *err)
{
	struct exec_arg x = { .id = c->id, .argv = argv, .timeout_ms = timeout_ms > 0 ? (uint32_t)timeout_ms : 0 };
	memset(res, 0, sizeof(*res));
	int r = agent_request(m, c, exec_op, &x, err);
	if (r < 0)
		return r;
	/* the agent reports -N for a runc exec it killed at the deadline (or that a signal killed) */
	if (x.res.exit_code < 0) {
		res->timed_out = x.timeout_ms > 0;
		res->status = -x.res.exit_code & 0x7f;
	} else {
		res->status = (x.res.exit_code & 0xff) << 8;
	}
	res->out = steal_pointer(&x.res.out);
	res->out_len = x.res.out_len;
	res->errout = steal_pointer(&x.res.errout);
	res->err_len = x.res.err_len;
	return 0;
}

/* ---- stats and resources ---- */

#define STATS_TIMEOUT_MS 10000LL
#define UPDATE_TIMEOUT_MS 60000LL

struct stats_arg {
	const char *id;
	struct agent_ctr_stats *st;
};

static int stats_op(struct vgpu_xen_agent *a, void *arg, struct vgpu_err *err)
{
	struct stats_arg *x = arg;
	return vgpu_xen_agent_ctr_stats(a, x->id, x->st, STATS_TIMEOUT_MS, err);
}

/* agent_request after a look at the pod's domain: a domain that went away behind our back makes
 * the pod NOTREADY (-ENOTCONN at once) instead of costing the request's timeout on a dead channel. */
static int checked_request(struct vgpu_pod_manager *m, struct vgpu_container *c, vgpu_xen_agent_op op, void *arg,
			   struct vgpu_err *err)
{
	struct vgpu_sandbox *s;
	if (vgpu_sandbox_get(m, c->sandbox_id, &s, NULL) == 0) {
		vgpu_xen_pod_refresh(m, s);
		vgpu_sandbox_put(m, s);
	}
	return agent_request(m, c, op, arg, err);
}

int vgpu_xen_container_stats(struct vgpu_pod_manager *m, struct vgpu_container *c, struct agent_ctr_stats *st,
			     struct vgpu_err *err)
{
	struct stats_arg x = { .id = c->id, .st = st };
	memset(st, 0, sizeof(*st));
	return checked_request(m, c, stats_op, &x, err);
}

int vgpu_xen_container_update(struct vgpu_pod_manager *m, struct vgpu_container *c, const char *resources_json,
			      struct vgpu_err *err)
{
	struct ctr_arg x = { .req = { .type = AGENT_MSG_CTR_UPDATE, .id = c->id, .spec_json = (char *)resources_json },
			     .timeout_ms = UPDATE_TIMEOUT_MS };
	return checked_request(m, c, ctr_op, &x, err);
}

void vgpu_xen_container_cleanup(struct vgpu_pod_manager *m, struct vgpu_container *c)
{
	struct vgpu_err err = { 0 };
	int r = simple_request(m, c, AGENT_MSG_CTR_REMOVE, REMOVE_TIMEOUT_MS, &err);
	if (r < 0 && r != -ENOTCONN && r != -ENOENT)
		vgpu_log(VGPU_LOG_WARN, "%s", err.msg);
	struct vgpu_xen *xen = vgpu_xen_pods_handle(m);
	struct vgpu_sandbox *s;
	if (xen && c->xen && vgpu_sandbox_get(m, c->sandbox_id, &s, NULL) == 0) {
		pthread_mutex_lock(&m->lock);
		uint32_t domid = s->xen_domid;
		pthread_mutex_unlock(&m->lock);
		vgpu_sandbox_put(m, s);
		/* the guest has unmounted it: blkback lets go and the loop device clears itself */
		vgpu_err_clear(&err);
		if (domid && (r = vgpu_xen_disk_remove(xen, domid, c->xen->vdev, &err)) < 0 && r != -ENOENT)
			vgpu_log(VGPU_LOG_WARN, "container %s: %s", c->id, err.msg);
	}
	vgpu_err_clear(&err);
	if (vgpu_image_unmount_rootfs(c->dir, &err) < 0)
		vgpu_log(VGPU_LOG_WARN, "container %s: %s", c->id, err.msg);
	_cleanup_free_ char *exit_file = vgpu_asprintf("%s/%s", m->exit_dir, c->id);
	unlink(exit_file);
	r = vgpu_pods_rm_tree(c->dir);
	if (r < 0)
		vgpu_log(VGPU_LOG_WARN, "container %s: remove %s: %s", c->id, c->dir, strerror(-r));
}

/* ---- the pump ---- */

struct vgpu_xen_pump {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;             /* lock */
	long long vol_check_ns; /* the pump thread's own: last copy-in mount check */
};

static void pump_round(struct vgpu_pod_manager *m)
{
	/* a pod whose domain went away is NOTREADY first, so its containers are marked exited at once
	 * instead of costing an agent timeout each */
	vgpu_xen_pods_refresh_all(m);
	size_t n = 0, i = 0;
	pthread_mutex_lock(&m->lock);
	for (struct vgpu_container *c = m->containers; c; c = c->next)
		n += c->xen != NULL;
	struct vgpu_container **v = vgpu_calloc(n + 1, sizeof(*v));
	for (struct vgpu_container *c = m->containers; c && i < n; c = c->next)
		if (c->xen && c->phase == VGPU_PHASE_LIVE) {
			c->refs++;
			v[i++] = c;
		}
	pthread_mutex_unlock(&m->lock);
	bool vols = vgpu_now_ns() - m->xen_pump->vol_check_ns >= VOL_CHECK_NS;
	if (vols)
		m->xen_pump->vol_check_ns = vgpu_now_ns();
	for (size_t k = 0; k < i; k++) {
		vgpu_xen_container_sync(m, v[k]);
		if (vols)
			vgpu_xen_container_vol_refresh(m, v[k]);
		vgpu_container_put(m, v[k]);
	}
	free(v);
	vgpu_xen_pods_keepalive(m, KEEPALIVE_IDLE_NS);
}

static void *pump_main(void *arg)
{
	struct vgpu_pod_manager *m = arg;
	struct vgpu_xen_pump *p = m->xen_pump;
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		pthread_mutex_unlock(&p->lock);
		pump_round(m);
		pthread_mutex_lock(&p->lock);
		long long until = vgpu_wall_ns() + PUMP_PERIOD_MS * 1000000LL;
		struct timespec ts = { .tv_sec = until / 1000000000LL, .tv_nsec = until % 1000000000LL };
		if (!p->stop)
			pthread_cond_timedwait(&p->wake, &p->lock, &ts);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void vgpu_xen_pump_start(struct vgpu_pod_manager *m)
{
	if (!vgpu_xen_pods_handle(m))
		return;
	struct vgpu_xen_pump *p = vgpu_calloc(1, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	m->xen_pump = p;
	int r = pthread_create(&p->thread, NULL, pump_main, m);
	if (r != 0) {
		vgpu_log(VGPU_LOG_ERROR, "xen pods: no log pump thread: %s", strerror(r));
		pthread_cond_destroy(&p->wake);
		pthread_mutex_destroy(&p->lock);
		free(p);
		m->xen_pump = NULL;
	}
}

void vgpu_xen_pump_stop(struct vgpu_pod_manager *m)
{
	struct vgpu_xen_pump *p = m->xen_pump;
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p);
	m->xen_pump = NULL;
}
