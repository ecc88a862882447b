/* The pod manager's life: open (load state, reconcile with what runs after a daemon restart), the
 * exit watcher thread (inotify on state_dir/exits, where every vgpu-monitor renames its exit file
 * into place) and GetContainerEvents subscribers. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "container.h"
#include "daemon.h"
#include "log.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "util.h"
#include "xen_container.h"
#include "xen_sandbox.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define EVENT_QUEUE_MAX 1024

struct vgpu_event_sub {
	struct vgpu_event_sub *next;
	pthread_cond_t cond;
	Runtime__V1__ContainerEventResponse **queue; /* mgr->lock */
	size_t n;
	bool overflowed;
};

/* Helpers live beside the daemon binary (build dir, or the install's bin dir); VGPU_HELPER_DIR
 * overrides for tests that run from elsewhere. */
static char *helper_path(const char *name)
{
	const char *env = getenv("VGPU_HELPER_DIR");
	if (env && *env)
		return vgpu_asprintf("%s/%s", env, name);
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			char *p = vgpu_asprintf("%s/%s", exe, name);
			if (access(p, X_OK) == 0)
				return p;
			free(p);
		}
	}
	return vgpu_asprintf("/usr/lib/vgpu-cri/%s", name);
}

static const struct vgpu_handler_config *runc_handler(const struct vgpu_config *cfg)
{
	for (size_t i = 0; i < cfg->n_handlers; i++)
		if (strcmp(cfg->handlers[i].type, "runc") == 0)
			return &cfg->handlers[i];
	return NULL;
}

/* Reconcile a loaded container with reality (mgr->lock not held; single-threaded at open). */
static void recover_container(struct vgpu_pod_manager *m, struct vgpu_container *c)
{
	if (c->xen) { /* in a guest: the pump asks its agent (a gone domain makes it exited there) */
		pthread_mutex_lock(&m->lock);
		bool changed = vgpu_container_check_exit_locked(m, c);
		pthread_mutex_unlock(&m->lock);
		vgpu_xen_container_recover(m, c);
		if (changed)
			(void)vgpu_container_save(m, c, NULL);
		return;
	}
	pthread_mutex_lock(&m->lock);
	bool changed = vgpu_container_check_exit_locked(m, c);
	bool live = c->state != RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
	bool monitor_alive = live && vgpu_proc_alive(c->monitor_pid, c->monitor_start);
	pthread_mutex_unlock(&m->lock);
	if (live && !monitor_alive) {
		pthread_mutex_lock(&m->lock);
		/* The monitor may have finished between the two checks. */
		if (!vgpu_container_check_exit_locked(m, c)) {
			c->state = RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
			c->exit_code = 255;
			c->finished_at = vgpu_wall_ns();
			free(c->reason);
			c->reason = vgpu_strdup("Unknown");
			free(c->message);
			c->message = vgpu_strdup("the container's monitor was gone after a daemon restart");
			vgpu_log(VGPU_LOG_WARN, "container %s: monitor %d gone, marking exited", c->id, (int)c->monitor_pid);
		}
		pthread_mutex_unlock(&m->lock);
		changed = true;
	} else if (live && c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED) {
		/* The daemon may have died between `runc start` and saving RUNNING. */
		char st[32];
		if (vgpu_runc_state(&m->runc, c->id, st, sizeof(st), NULL) == 0 && strcmp(st, "running") == 0) {
			pthread_mutex_lock(&m->lock);
			c->state = RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING;
			c->started_at = vgpu_wall_ns();
			pthread_mutex_unlock(&m->lock);
			changed = true;
		}
	}
	struct vgpu_err err = { 0 };
	if (changed && vgpu_container_save(m, c, &err) < 0)
		vgpu_log(VGPU_LOG_WARN, "container %s: %s", c->id, err.msg);
}

/* The broker lives in the daemon: a GPU pod that is still ready gets its channel back on a fresh
 * socket at the same path (its containers' bind mount of the socket dir sees it; processes that
 * had a channel lost it with the old daemon). */
static void recover_gpu(struct vgpu_pod_manager *m, struct vgpu_sandbox *s)
{
	pthread_mutex_lock(&m->lock);
	bool ready = s->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY;
	pthread_mutex_unlock(&m->lock);
	if (!ready)
		return;
	const Runtime__V1__PodSandboxMetadata *md = s->config->metadata;
	struct vgpu_err err = { 0 };
	pthread_mutex_lock(&m->lock);
	uint32_t domid = s->xen_domid; /* xen pods: reattached by vgpu_xen_pod_recover */
	pthread_mutex_unlock(&m->lock);
	int r = s->xen_domain ? vgpu_gpu_pod_add_xen(m->d->gpu, s->id, md->namespace_, md->name, md->uid, &s->gpu,
						     domid, &err)
			      : vgpu_gpu_pod_add(m->d->gpu, s->id, md->namespace_, md->name, md->uid, &s->gpu, &err);
	if (r < 0)
		vgpu_log(VGPU_LOG_ERROR, "sandbox %s: GPU pod not recovered: %s", s->id, err.msg);
	else if (s->xen_domain)
		vgpu_log(VGPU_LOG_INFO, "sandbox %s: GPU pod recovered: channel offers of domain %u", s->id, domid);
	else
		vgpu_log(VGPU_LOG_INFO, "sandbox %s: GPU pod recovered on a fresh broker socket", s->id);
}

static void load_all(struct vgpu_pod_manager *m)
{
	DIR *dir = opendir(m->sandbox_dir);
	struct dirent *de;
	while (dir && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		bool creating;
		struct vgpu_sandbox *s = vgpu_sandbox_load(m, de->d_name, &creating);
		if (!s) {
			vgpu_log(VGPU_LOG_WARN, "sandbox %s: %s record: removing its leftovers", de->d_name,
				 creating ? "interrupted creation" : "incomplete");
			vgpu_sandbox_cleanup_id(m, de->d_name);
			continue;
		}
		if (s->xen_domain)
			vgpu_xen_pod_recover(m, s);
		pthread_mutex_lock(&m->lock);
		Runtime__V1__PodSandboxState before = s->state;
		vgpu_sandbox_refresh_locked(s);
		bool changed = before != s->state;
		s->next = m->sandboxes;
		m->sandboxes = s;
		pthread_mutex_unlock(&m->lock);
		if (changed)
			vgpu_sandbox_save(m, s, NULL);
		if (s->gpu.enabled)
			recover_gpu(m, s);
	}
	if (dir)
		closedir(dir);
	dir = opendir(m->container_dir);
	while (dir && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		bool creating;
		struct vgpu_container *c = vgpu_container_load(m, de->d_name, &creating);
		if (!c) {
			vgpu_log(VGPU_LOG_WARN, "container %s: %s record: removing its leftovers", de->d_name,
				 creating ? "interrupted creation" : "incomplete");
			_cleanup_free_ char *cdir = vgpu_asprintf("%s/%s", m->container_dir, de->d_name);
			vgpu_container_cleanup_interrupted(m, de->d_name, cdir);
			continue;
		}
		recover_container(m, c);
		pthread_mutex_lock(&m->lock);
		c->next = m->containers;
		m->containers = c;
		pthread_mutex_unlock(&m->lock);
	}
	if (dir)
		closedir(dir);
}

static void handle_exit_file(struct vgpu_pod_manager *m, const char *name)
{
	if (strlen(name) != VGPU_ID_LEN)
		return; /* temp files of the atomic write */
	struct vgpu_container *found = NULL;
	pthread_mutex_lock(&m->lock);
	for (struct vgpu_container *c = m->containers; c; c = c->next)
		if (strcmp(c->id, name) == 0 && vgpu_container_check_exit_locked(m, c)) {
			found = c;
			found->refs++;
			break;
		}
	pthread_mutex_unlock(&m->lock);
	if (found) {
		struct vgpu_err err = { 0 };
		if (vgpu_container_save(m, found, &err) < 0)
			vgpu_log(VGPU_LOG_WARN, "container %s: %s", found->id, err.msg);
		vgpu_container_put(m, found);
	}
}

static void *exit_watcher(void *arg)
{
	struct vgpu_pod_manager *m = arg;
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		struct pollfd pfd[2] = { { .fd = m->inotify_fd, .events = POLLIN }, { .fd = m->stop_fd, .events = POLLIN } };
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents)
			break;
		ssize_t n = read(m->inotify_fd, buf, sizeof(buf));
		if (n <= 0)
			continue;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			if (ev->len && (ev->mask & (IN_MOVED_TO | IN_CLOSE_WRITE)))
				handle_exit_file(m, ev->name);
			p += sizeof(*ev) + ev->len;
		}
	}
	return NULL;
}

static int make_dirs(struct vgpu_pod_manager *m, struct vgpu_err *err)
{
	const char *dirs[] = { m->sandbox_dir, m->container_dir, m->exit_dir, m->run_sandbox_dir, m->tmp_dir };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		int r = vgpu_mkdir_p(dirs[i], 0700, err);
		if (r < 0)
			return r;
	}
	return vgpu_mkdir_p(m->runc.root, 0700, err);
}

int vgpu_pods_open(struct vgpu_daemon *d, struct vgpu_err *err)
{
	const struct vgpu_config *cfg = d->cfg;
	struct vgpu_pod_manager *m = vgpu_calloc(1, sizeof(*m));
	m->d = d;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->changed, NULL);
	m->inotify_fd = m->stop_fd = -1;
	m->sandbox_dir = vgpu_asprintf("%s/sandboxes", cfg->state_dir);
	m->container_dir = vgpu_asprintf("%s/containers", cfg->state_dir);
	m->exit_dir = vgpu_asprintf("%s/exits", cfg->state_dir);
	m->run_sandbox_dir = vgpu_asprintf("%s/sandboxes", cfg->run_dir);
	m->tmp_dir = vgpu_asprintf("%s/tmp", cfg->run_dir);
	m->monitor_path = helper_path("vgpu-monitor");
	m->pause_path = helper_path("vgpu-pause");
	const struct vgpu_handler_config *h = runc_handler(cfg);
	m->runc.path = h ? h->runtime_path : "/usr/sbin/runc";
	m->runc.root = h ? h->runtime_root : "/run/vgpu-cri/runc";
	struct statfs sfs;
	m->cgroup_v2 = statfs("/sys/fs/cgroup", &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC;
	d->pods = m;
	int r = make_dirs(m, err);
	if (r < 0)
		goto fail;
	/* Watch before loading: an exit between the scan and the watch would otherwise be missed. */
	m->inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	m->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (m->inotify_fd < 0 || m->stop_fd < 0 ||
	    inotify_add_watch(m->inotify_fd, m->exit_dir, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		r = vgpu_err_errno(err, errno, "watch %s", m->exit_dir);
		goto fail;
	}
	vgpu_xen_pods_open(m);
	load_all(m);
	vgpu_xen_pods_sweep(m);
	if ((r = pthread_create(&m->watcher, NULL, exit_watcher, m)) != 0) {
		r = vgpu_err_errno(err, r, "start the exit watcher");
		goto fail;
	}
	m->watcher_started = true;
	vgpu_xen_pump_start(m);
	size_t ns = 0, nc = 0;
	for (struct vgpu_sandbox *s = m->sandboxes; s; s = s->next)
		ns++;
	for (struct vgpu_container *c = m->containers; c; c = c->next)
		nc++;
	vgpu_log(VGPU_LOG_INFO, "pods: %zu sandboxes, %zu containers loaded; cgroup %s; runc %s", ns, nc,
		 m->cgroup_v2 ? "v2" : "v1", m->runc.path);
	return 0;
fail:
	vgpu_pods_close(d);
	return vgpu_err_prefix(err, "pods");
}

void vgpu_pods_close(struct vgpu_daemon *d)
{
	struct vgpu_pod_manager *m = d->pods;
	if (!m)
		return;
	vgpu_xen_pump_stop(m);
	if (m->watcher_started) {
		uint64_t one = 1;
		if (write(m->stop_fd, &one, sizeof(one)) == sizeof(one))
			pthread_join(m->watcher, NULL);
	}
	if (m->inotify_fd >= 0)
		close(m->inotify_fd);
	if (m->stop_fd >= 0)
		close(m->stop_fd);
	/* Event streams still open hold no references; they see shutting_down and leave. */
	while (m->sandboxes) {
		struct vgpu_sandbox *s = m->sandboxes;
		m->sandboxes = s->next;
		s->next = NULL;
		vgpu_sandbox_put(m, s);
	}
	while (m->containers) {
		struct vgpu_container *c = m->containers;
		m->containers = c->next;
		c->next = NULL;
		vgpu_container_put(m, c);
	}
	free(m->sandbox_dir);
	free(m->container_dir);
	free(m->exit_dir);
	free(m->run_sandbox_dir);
	free(m->tmp_dir);
	free(m->monitor_path);
	free(m->pause_path);
	vgpu_xen_pods_close(m);
	pthread_cond_destroy(&m->changed);
	pthread_mutex_destroy(&m->lock);
	free(m);
	d->pods = NULL;
}

/* ---- events ---- */

void vgpu_event_emit_locked(struct vgpu_pod_manager *m, struct vgpu_container *c,
			    Runtime__V1__ContainerEventType type)
{
	if (!m->subs)
		return;
	struct vgpu_sandbox *sb = NULL;
	for (struct vgpu_sandbox *s = m->sandboxes; s; s = s->next)
		if (strcmp(s->id, c->sandbox_id) == 0)
			sb = s;
	for (struct vgpu_event_sub *sub = m->subs; sub; sub = sub->next) {
		if (sub->n >= EVENT_QUEUE_MAX) {
			sub->overflowed = true;
			continue;
		}
		Runtime__V1__ContainerEventResponse *ev = vgpu_calloc(1, sizeof(*ev));
		runtime__v1__container_event_response__init(ev);
		ev->container_id = vgpu_strdup(c->id);
		ev->container_event_type = type;
		ev->created_at = vgpu_wall_ns();
		if (sb)
			ev->pod_sandbox_status = vgpu_sandbox_status_locked(sb);
		if (type != RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_DELETED_EVENT) {
			ev->n_containers_statuses = 1;
			ev->containers_statuses = vgpu_calloc(1, sizeof(*ev->containers_statuses));
			ev->containers_statuses[0] = vgpu_container_status_locked(c);
		}
		Runtime__V1__ContainerEventResponse **q = realloc(sub->queue, (sub->n + 1) * sizeof(*q));
		if (!q)
			abort();
		sub->queue = q;
		q[sub->n++] = ev;
		pthread_cond_signal(&sub->cond);
	}
}

int vgpu_rpc_get_container_events(struct vgpu_daemon *d, const ProtobufCMessage *req, struct vgpu_stream *stream,
				  struct vgpu_err *err)
{
	(void)req;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_event_sub *sub = vgpu_calloc(1, sizeof(*sub));
	pthread_cond_init(&sub->cond, NULL);
	pthread_mutex_lock(&m->lock);
	sub->next = m->subs;
	m->subs = sub;
	int r = 0;
	while (r == 0) {
		while (sub->n == 0 && !sub->overflowed) {
			pthread_mutex_unlock(&m->lock);
			bool done = vgpu_stream_done(stream) || atomic_load(&d->shutting_down);
			pthread_mutex_lock(&m->lock);
			if (done)
				break;
			long long until = vgpu_wall_ns() + 200000000LL;
			struct timespec ts = { .tv_sec = until / 1000000000LL, .tv_nsec = until % 1000000000LL };
			pthread_cond_timedwait(&sub->cond, &m->lock, &ts);
		}
		if (sub->overflowed) {
			r = vgpu_err_set(err, -ENOSPC, "container events: client too slow, %d events queued", EVENT_QUEUE_MAX);
			break;
		}
		if (sub->n == 0)
			break; /* client gone or shutting down */
		Runtime__V1__ContainerEventResponse **batch = sub->queue;
		size_t n = sub->n;
		sub->queue = NULL;
		sub->n = 0;
		pthread_mutex_unlock(&m->lock);
		for (size_t i = 0; i < n; i++) {
			if (r == 0 && vgpu_stream_send(stream, &batch[i]->base) < 0)
				r = 1;
			protobuf_c_message_free_unpacked(&batch[i]->base, NULL);
		}
		free(batch);
		pthread_mutex_lock(&m->lock);
	}
	for (struct vgpu_event_sub **p = &m->subs; *p; p = &(*p)->next)
		if (*p == sub) {
			*p = sub->next;
			break;
		}
	pthread_mutex_unlock(&m->lock);
	for (size_t i = 0; i < sub->n; i++)
		protobuf_c_message_free_unpacked(&sub->queue[i]->base, NULL);
	free(sub->queue);
	pthread_cond_destroy(&sub->cond);
	free(sub);
	return r < 0 ? r : 0;
}
