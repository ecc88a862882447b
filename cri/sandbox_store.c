/* Pod manager objects and their persistence (see sandbox_store.h): reference-counted sandboxes and
 * containers in two lists under one lock, meta.json (json-c) beside the config.pb each object was
 * created from, and protobuf helpers shared by the RPC files. */
#include "sandbox_store.h"
#include "xen_container.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

void vgpu_new_id(char out[VGPU_ID_LEN + 1])
{
	unsigned char raw[VGPU_ID_LEN / 2];
	size_t got = 0;
	while (got < sizeof(raw)) {
		ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
		if (n < 0 && errno != EINTR)
			abort();
		if (n > 0)
			got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

void *vgpu_pb_clone(const void *msg)
{
	if (!msg)
		return NULL;
	const ProtobufCMessage *m = msg;
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		abort();
	protobuf_c_message_pack(m, buf);
	ProtobufCMessage *copy = protobuf_c_message_unpack(m->descriptor, NULL, len, buf);
	free(buf);
	if (!copy)
		abort();
	return copy;
}

struct pb_kv {
	ProtobufCMessage base;
	char *key;
	char *value;
};

void *vgpu_pb_map_copy(const ProtobufCMessageDescriptor *entry_desc, void *const *src, size_t n)
{
	if (!n)
		return NULL;
	struct pb_kv **out = vgpu_calloc(n, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		const struct pb_kv *s = src[i];
		struct pb_kv *e = vgpu_calloc(1, entry_desc->sizeof_message);
		protobuf_c_message_init(entry_desc, e);
		e->key = vgpu_strdup(s->key);
		e->value = vgpu_strdup(s->value);
		out[i] = e;
	}
	return out;
}

bool vgpu_labels_match(void *const *labels, size_t n_labels, void *const *selector, size_t n_selector)
{
	for (size_t i = 0; i < n_selector; i++) {
		const struct pb_kv *want = selector[i];
		bool found = false;
		for (size_t j = 0; j < n_labels && !found; j++) {
			const struct pb_kv *have = labels[j];
			found = strcmp(have->key, want->key) == 0 && strcmp(have->value, want->value) == 0;
		}
		if (!found)
			return false;
	}
	return true;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP || flag == FTW_D)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

int vgpu_pods_rm_tree(const char *path)
{
	if (access(path, F_OK) < 0)
		return 0;
	if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0)
		return -errno;
	return access(path, F_OK) == 0 ? -ENOTEMPTY : 0;
}

/* Whether a /proc/<pid>/cmdline (NUL-separated) is `exe ... flag value ...` (exe NULL: any). */
static bool cmdline_tagged(const char *cmd, size_t len, const char *exe, const char *flag, const char *value)
{
	if (exe && strcmp(cmd, exe) != 0)
		return false;
	const char *prev = NULL;
	for (size_t off = strlen(cmd) + 1; off < len;) {
		const char *arg = cmd + off;
		if (prev && strcmp(prev, flag) == 0 && strcmp(arg, value) == 0)
			return true;
		prev = arg;
		off += strnlen(arg, len - off) + 1;
	}
	return false;
}

/* Send sig (0: only count) to every live process `exe ... flag value ...`; how many there were. */
static size_t signal_helpers(const char *exe, const char *flag, const char *value, int sig)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 1 || pid == (long)getpid())
			continue;
		_cleanup_free_ char *path = vgpu_asprintf("/proc/%ld/cmdline", pid), *cmd = NULL;
		size_t len = 0;
		if (vgpu_read_file(path, 1 << 16, &cmd, &len, NULL) < 0 || len == 0) /* zombies have none */
			continue;
		if (cmdline_tagged(cmd, len, exe, flag, value) && kill((pid_t)pid, sig) == 0)
			n++;
	}
	closedir(d);
	return n;
}

size_t vgpu_pods_kill_helpers(const char *exe, const char *flag, const char *value)
{
	size_t total = 0;
	for (int i = 0; i < 200; i++) {
		size_t n = signal_helpers(exe, flag, value, SIGKILL);
		if (n == 0)
			break;
		total += n;
		usleep(10000);
	}
	return total;
}

bool vgpu_pods_wait_helpers(const char *exe, const char *flag, const char *value, int timeout_ms)
{
	for (int waited = 0; signal_helpers(exe, flag, value, 0) > 0; waited += 10) {
		if (waited >= timeout_ms)
			return false;
		usleep(10000);
	}
	return true;
}

/* ---- objects ---- */

struct vgpu_sandbox *vgpu_sandbox_alloc(void)
{
	struct vgpu_sandbox *s = vgpu_calloc(1, sizeof(*s));
	pthread_mutex_init(&s->op_lock, NULL);
	pthread_mutex_init(&s->persist_lock, NULL);
	s->refs = 1;
	s->state = RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
	return s;
}

struct vgpu_container *vgpu_container_alloc(void)
{
	struct vgpu_container *c = vgpu_calloc(1, sizeof(*c));
	pthread_mutex_init(&c->op_lock, NULL);
	pthread_mutex_init(&c->persist_lock, NULL);
	c->refs = 1;
	c->state = RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED;
	return c;
}

static void sandbox_free(struct vgpu_sandbox *s)
{
	if (s->config)
		protobuf_c_message_free_unpacked(&s->config->base, NULL);
	free(s->handler);
	free(s->xen_domain);
	free(s->xen_vif_mac);
	free(s->dir);
	free(s->run_dir);
	free(s->shm_path);
	free(s->cgroup_parent);
	pthread_mutex_destroy(&s->op_lock);
	pthread_mutex_destroy(&s->persist_lock);
	free(s);
}

static void container_free(struct vgpu_container *c)
{
	if (c->config)
		protobuf_c_message_free_unpacked(&c->config->base, NULL);
	if (c->resources)
		protobuf_c_message_free_unpacked(&c->resources->base, NULL);
	free(c->image_id);
	free(c->log_path);
	free(c->dir);
	free(c->cgroups_path);
	free(c->reason);
	free(c->message);
	vgpu_xen_ctr_free(c->xen);
	pthread_mutex_destroy(&c->op_lock);
	pthread_mutex_destroy(&c->persist_lock);
	free(c);
}

void vgpu_sandbox_link(struct vgpu_pod_manager *m, struct vgpu_sandbox *s)
{
	pthread_mutex_lock(&m->lock);
	s->refs++; /* the list's reference */
	s->next = m->sandboxes;
	m->sandboxes = s;
	pthread_mutex_unlock(&m->lock);
}

void vgpu_container_link(struct vgpu_pod_manager *m, struct vgpu_container *c)
{
	pthread_mutex_lock(&m->lock);
	c->refs++;
	c->next = m->containers;
	m->containers = c;
	pthread_mutex_unlock(&m->lock);
}

void vgpu_sandbox_unlink(struct vgpu_pod_manager *m, struct vgpu_sandbox *s)
{
	pthread_mutex_lock(&m->lock);
	for (struct vgpu_sandbox **p = &m->sandboxes; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			s->phase = VGPU_PHASE_REMOVED;
			s->refs--;
			break;
		}
	pthread_mutex_unlock(&m->lock);
}

void vgpu_container_unlink(struct vgpu_pod_manager *m, struct vgpu_container *c)
{
	pthread_mutex_lock(&m->lock);
	for (struct vgpu_container **p = &m->containers; *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			c->phase = VGPU_PHASE_REMOVED;
			c->refs--;
			break;
		}
	pthread_cond_broadcast(&m->changed);
	pthread_mutex_unlock(&m->lock);
}

void vgpu_sandbox_put(struct vgpu_pod_manager *m, struct vgpu_sandbox *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&m->lock);
	bool last = --s->refs == 0;
	pthread_mutex_unlock(&m->lock);
	if (last)
		sandbox_free(s);
}

void vgpu_container_put(struct vgpu_pod_manager *m, struct vgpu_container *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&m->lock);
	bool last = --c->refs == 0;
	pthread_mutex_unlock(&m->lock);
	if (last)
		container_free(c);
}

/* Exact id, else a unique prefix. */
#define FIND_BY_ID(type, list, id, out)                                                   \
	do {                                                                              \
		size_t len_ = strlen(id);                                                 \
		int matches_ = 0;                                                         \
		for (type *o_ = (list); o_; o_ = o_->next) {                              \
			if (o_->phase != VGPU_PHASE_LIVE || strncmp(o_->id, id, len_) != 0) \
				continue;                                                 \
			if (len_ == VGPU_ID_LEN) {                                        \
				(out) = o_;                                               \
				matches_ = 1;                                             \
				break;                                                    \
			}                                                                 \
			(out) = o_;                                                       \
			matches_++;                                                       \
		}                                                                         \
		if (matches_ != 1)                                                        \
			(out) = NULL;                                                     \
	} while (0)

int vgpu_sandbox_get(struct vgpu_pod_manager *m, const char *id, struct vgpu_sandbox **out, struct vgpu_err *err)
{
	*out = NULL;
	if (!id || !*id)
		return vgpu_err_set(err, -EINVAL, "pod sandbox id is empty");
	struct vgpu_sandbox *found = NULL;
	pthread_mutex_lock(&m->lock);
	FIND_BY_ID(struct vgpu_sandbox, m->sandboxes, id, found);
	if (found)
		found->refs++;
	pthread_mutex_unlock(&m->lock);
	if (!found)
		return vgpu_err_set(err, -ENOENT, "pod sandbox %.80s not found", id);
	*out = found;
	return 0;
}

int vgpu_container_get(struct vgpu_pod_manager *m, const char *id, struct vgpu_container **out,
		       struct vgpu_err *err)
{
	*out = NULL;
	if (!id || !*id)
		return vgpu_err_set(err, -EINVAL, "container id is empty");
	struct vgpu_container *found = NULL;
	pthread_mutex_lock(&m->lock);
	FIND_BY_ID(struct vgpu_container, m->containers, id, found);
	if (found)
		found->refs++;
	pthread_mutex_unlock(&m->lock);
	if (!found)
		return vgpu_err_set(err, -ENOENT, "container %.80s not found", id);
	*out = found;
	return 0;
}

/* ---- persistence ---- */

/* Every record is replaced atomically (temp file + rename), which is all a daemon crash needs. Only
 * the write that makes a record LIVE (and later state changes) is fsync'd: on ext4 (data=ordered)
 * that commit also carries the files renamed into place before it, and what an OS crash loses of a
 * pod still CREATING is cleaned up at start-up anyway. This keeps RunPodSandbox and CreateContainer
 * to one synchronous disk flush each. */
int vgpu_pods_write_file(const char *path, const void *data, size_t len, mode_t mode, bool durable,
			 struct vgpu_err *err)
{
	if (durable)
		return vgpu_write_file_atomic(path, data, len, mode, err);
	_cleanup_free_ char *tmp = vgpu_asprintf("%s.tmp.XXXXXX", path);
	_cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return vgpu_err_errno(err, errno, "create temp file for %s", path);
	const char *p = data;
	size_t left = len;
	int r = 0;
	while (left && r == 0) {
		ssize_t n = write(fd, p, left);
		if (n < 0 && errno != EINTR)
			r = -errno;
		else if (n > 0) {
			p += n;
			left -= (size_t)n;
		}
	}
	if (r == 0 && fchmod(fd, mode) < 0)
		r = -errno;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		return vgpu_err_errno(err, -r, "write %s", path);
	}
	return 0;
}

static int save_pb(const char *dir, const char *name, const ProtobufCMessage *msg, struct vgpu_err *err)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	_cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return vgpu_err_set(err, -ENOMEM, "pack %s", name);
	protobuf_c_message_pack(msg, buf);
	_cleanup_free_ char *path = vgpu_asprintf("%s/%s", dir, name);
	return vgpu_pods_write_file(path, buf, len, 0600, false, err);
}

static void *load_pb(const char *dir, const char *name, const ProtobufCMessageDescriptor *desc)
{
	_cleanup_free_ char *path = vgpu_asprintf("%s/%s", dir, name);
	_cleanup_free_ char *buf = NULL;
	size_t len;
	if (vgpu_read_file(path, 64 << 20, &buf, &len, NULL) < 0)
		return NULL;
	return protobuf_c_message_unpack(desc, NULL, len, (const uint8_t *)buf);
}

static int save_json(const char *dir, json_object *o, bool durable, struct vgpu_err *err)
{
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
	_cleanup_free_ char *path = vgpu_asprintf("%s/meta.json", dir);
	return vgpu_pods_write_file(path, text, strlen(text), 0600, durable, err);
}

int vgpu_sandbox_save_config(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_err *err)
{
	(void)m;
	return save_pb(s->dir, "config.pb", &s->config->base, err);
}

int vgpu_container_save_config(struct vgpu_pod_manager *m, struct vgpu_container *c, struct vgpu_err *err)
{
	(void)m;
	int r = save_pb(c->dir, "config.pb", &c->config->base, err);
	if (r == 0 && c->resources)
		r = save_pb(c->dir, "resources.pb", &c->resources->base, err);
	return r;
}

#define ADD_STR(o, k, v) json_object_object_add(o, k, json_object_new_string((v) ? (v) : ""))
#define ADD_INT(o, k, v) json_object_object_add(o, k, json_object_new_int64((int64_t)(v)))
#define ADD_BOOL(o, k, v) json_object_object_add(o, k, json_object_new_boolean(v))

int vgpu_sandbox_save(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_err *err)
{
	pthread_mutex_lock(&s->persist_lock);
	json_object *o = json_object_new_object();
	ADD_STR(o, "id", s->id);
	ADD_STR(o, "handler", s->handler);
	ADD_INT(o, "created_at", s->created_at);
	ADD_STR(o, "run_dir", s->run_dir);
	ADD_STR(o, "shm_path", s->shm_path);
	ADD_STR(o, "cgroup_parent", s->cgroup_parent);
	ADD_BOOL(o, "own_cgroup_parent", s->own_cgroup_parent);
	ADD_BOOL(o, "host_net", s->host_net);
	ADD_BOOL(o, "host_ipc", s->host_ipc);
	ADD_BOOL(o, "host_pid", s->host_pid);
	ADD_BOOL(o, "share_pid", s->share_pid);
	if (s->xen_domain)
		ADD_STR(o, "xen_domain", s->xen_domain);
	if (s->gpu.enabled) {
		json_object *g = json_object_new_object();
		ADD_INT(g, "quota_bytes", s->gpu.quota_bytes);
		ADD_INT(g, "compute_share", s->gpu.compute_share);
		json_object_object_add(o, "gpu", g);
	}
	pthread_mutex_lock(&m->lock);
	bool creating = s->phase == VGPU_PHASE_CREATING;
	ADD_BOOL(o, "creating", creating);
	ADD_INT(o, "state", s->state);
	ADD_INT(o, "infra_pid", s->infra_pid);
	ADD_INT(o, "infra_start", s->infra_start);
	if (s->xen_domain)
		ADD_INT(o, "xen_domid", s->xen_domid);
	if (s->xen_vif_mac)
		ADD_STR(o, "xen_vif_mac", s->xen_vif_mac);
	pthread_mutex_unlock(&m->lock);
	int r = save_json(s->dir, o, !creating, err);
	json_object_put(o);
	pthread_mutex_unlock(&s->persist_lock);
	return r;
}

int vgpu_container_save(struct vgpu_pod_manager *m, struct vgpu_container *c, struct vgpu_err *err)
{
	pthread_mutex_lock(&c->persist_lock);
	json_object *o = json_object_new_object();
	ADD_STR(o, "id", c->id);
	ADD_STR(o, "sandbox_id", c->sandbox_id);
	ADD_STR(o, "image_id", c->image_id);
	ADD_STR(o, "log_path", c->log_path);
	ADD_STR(o, "cgroups_path", c->cgroups_path);
	ADD_INT(o, "created_at", c->created_at);
	pthread_mutex_lock(&m->lock);
	bool creating = c->phase == VGPU_PHASE_CREATING;
	ADD_BOOL(o, "creating", creating);
	ADD_INT(o, "state", c->state);
	ADD_INT(o, "started_at", c->started_at);
	ADD_INT(o, "finished_at", c->finished_at);
	ADD_INT(o, "exit_code", c->exit_code);
	ADD_STR(o, "reason", c->reason);
	ADD_STR(o, "message", c->message);
	ADD_INT(o, "pid", c->pid);
	ADD_INT(o, "pid_start", c->pid_start);
	ADD_INT(o, "monitor_pid", c->monitor_pid);
	ADD_INT(o, "monitor_start", c->monitor_start);
	if (c->xen)
		ADD_STR(o, "xen_vdev", c->xen->vdev);
	pthread_mutex_unlock(&m->lock);
	int r = save_json(c->dir, o, !creating, err);
	json_object_put(o);
	pthread_mutex_unlock(&c->persist_lock);
	return r;
}

static const char *j_str(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : "";
}

static long long j_int(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? (long long)json_object_get_int64(v) : 0;
}

static bool j_bool(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

static char *dup_or_null(const char *s)
{
	return s && *s ? vgpu_strdup(s) : NULL;
}

/* Load one sandbox directory; NULL (and *creating) for incomplete ones. */
struct vgpu_sandbox *vgpu_sandbox_load(struct vgpu_pod_manager *m, const char *id, bool *creating)
{
	_cleanup_free_ char *dir = vgpu_asprintf("%s/%s", m->sandbox_dir, id);
	_cleanup_free_ char *meta = vgpu_asprintf("%s/meta.json", dir);
	*creating = false;
	json_object *o = json_object_from_file(meta);
	if (!o)
		return NULL;
	Runtime__V1__PodSandboxConfig *cfg = load_pb(dir, "config.pb", &runtime__v1__pod_sandbox_config__descriptor);
	if (!cfg || strcmp(j_str(o, "id"), id) != 0 || j_bool(o, "creating")) {
		*creating = j_bool(o, "creating");
		if (cfg)
			protobuf_c_message_free_unpacked(&cfg->base, NULL);
		json_object_put(o);
		return NULL;
	}
	struct vgpu_sandbox *s = vgpu_sandbox_alloc();
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->config = cfg;
	s->dir = steal_pointer(&dir);
	s->handler = vgpu_strdup(j_str(o, "handler"));
	s->created_at = j_int(o, "created_at");
	s->run_dir = vgpu_strdup(j_str(o, "run_dir"));
	s->shm_path = dup_or_null(j_str(o, "shm_path"));
	s->cgroup_parent = vgpu_strdup(j_str(o, "cgroup_parent"));
	s->own_cgroup_parent = j_bool(o, "own_cgroup_parent");
	s->host_net = j_bool(o, "host_net");
	s->host_ipc = j_bool(o, "host_ipc");
	s->host_pid = j_bool(o, "host_pid");
	s->share_pid = j_bool(o, "share_pid");
	s->xen_domain = dup_or_null(j_str(o, "xen_domain"));
	s->xen_domid = (uint32_t)j_int(o, "xen_domid");
	s->xen_vif_mac = dup_or_null(j_str(o, "xen_vif_mac"));
	json_object *g;
	if (json_object_object_get_ex(o, "gpu", &g) && json_object_is_type(g, json_type_object)) {
		s->gpu.enabled = true;
		s->gpu.quota_bytes = (uint64_t)j_int(g, "quota_bytes");
		long long share = j_int(g, "compute_share");
		s->gpu.compute_share = share >= 1 && share <= 100 ? (unsigned)share : 100;
	}
	s->state = (Runtime__V1__PodSandboxState)j_int(o, "state");
	s->infra_pid = (pid_t)j_int(o, "infra_pid");
	s->infra_start = (unsigned long long)j_int(o, "infra_start");
	s->phase = VGPU_PHASE_LIVE;
	json_object_put(o);
	return s;
}

struct vgpu_container *vgpu_container_load(struct vgpu_pod_manager *m, const char *id, bool *creating)
{
	_cleanup_free_ char *dir = vgpu_asprintf("%s/%s", m->container_dir, id);
	_cleanup_free_ char *meta = vgpu_asprintf("%s/meta.json", dir);
	*creating = false;
	json_object *o = json_object_from_file(meta);
	if (!o)
		return NULL;
	Runtime__V1__ContainerConfig *cfg = load_pb(dir, "config.pb", &runtime__v1__container_config__descriptor);
	if (!cfg || strcmp(j_str(o, "id"), id) != 0 || j_bool(o, "creating")) {
		*creating = j_bool(o, "creating");
		if (cfg)
			protobuf_c_message_free_unpacked(&cfg->base, NULL);
		json_object_put(o);
		return NULL;
	}
	struct vgpu_container *c = vgpu_container_alloc();
	snprintf(c->id, sizeof(c->id), "%s", id);
	snprintf(c->sandbox_id, sizeof(c->sandbox_id), "%s", j_str(o, "sandbox_id"));
	c->config = cfg;
	c->resources = load_pb(dir, "resources.pb", &runtime__v1__linux_container_resources__descriptor);
	c->dir = steal_pointer(&dir);
	c->image_id = vgpu_strdup(j_str(o, "image_id"));
	c->log_path = vgpu_strdup(j_str(o, "log_path"));
	c->cgroups_path = vgpu_strdup(j_str(o, "cgroups_path"));
	c->created_at = j_int(o, "created_at");
	c->state = (Runtime__V1__ContainerState)j_int(o, "state");
	c->started_at = j_int(o, "started_at");
	c->finished_at = j_int(o, "finished_at");
	c->exit_code = (int)j_int(o, "exit_code");
	c->reason = dup_or_null(j_str(o, "reason"));
	c->message = dup_or_null(j_str(o, "message"));
	c->pid = (pid_t)j_int(o, "pid");
	c->pid_start = (unsigned long long)j_int(o, "pid_start");
	c->monitor_pid = (pid_t)j_int(o, "monitor_pid");
	c->monitor_start = (unsigned long long)j_int(o, "monitor_start");
	if (*j_str(o, "xen_vdev"))
		c->xen = vgpu_xen_ctr_new(j_str(o, "xen_vdev"));
	c->phase = VGPU_PHASE_LIVE;
	json_object_put(o);
	return c;
}

void vgpu_sandbox_refresh_locked(struct vgpu_sandbox *s)
{
	if (s->xen_domain)
		return; /* no infra process: the domain is checked by vgpu_xen_pod_refresh, outside the lock */
	if (s->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY && !vgpu_proc_alive(s->infra_pid, s->infra_start)) {
		vgpu_log(VGPU_LOG_WARN, "sandbox %s: infra process %d is gone: not ready", s->id, (int)s->infra_pid);
		s->state = RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
	}
}

bool vgpu_container_check_exit_locked(struct vgpu_pod_manager *m, struct vgpu_container *c)
{
	if (c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED || c->phase == VGPU_PHASE_REMOVED)
		return false;
	_cleanup_free_ char *path = vgpu_asprintf("%s/%s", m->exit_dir, c->id);
	json_object *o = json_object_from_file(path);
	if (!o)
		return false;
	c->exit_code = (int)j_int(o, "exit_code");
	c->finished_at = j_int(o, "finished_at");
	json_object_put(o);
	if (c->started_at == 0 || c->started_at > c->finished_at)
		c->started_at = c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING ? c->finished_at : 0;
	c->state = RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
	free(c->reason);
	/* The cgroup outlives the process until runc delete: it tells an OOM kill from a plain one. */
	bool oom = c->exit_code == 128 + 9 && vgpu_cgroup_oom_killed(m->cgroup_v2, c->cgroups_path);
	c->reason = vgpu_strdup(c->exit_code == 0 ? "Completed" : oom ? "OOMKilled" : "Error");
	vgpu_log(VGPU_LOG_INFO, "container %s: exited with code %d", c->id, c->exit_code);
	if (c->phase == VGPU_PHASE_LIVE)
		vgpu_event_emit_locked(m, c, RUNTIME__V1__CONTAINER_EVENT_TYPE__CONTAINER_STOPPED_EVENT);
	pthread_cond_broadcast(&m->changed);
	return true;
}

bool vgpu_container_wait_exit(struct vgpu_pod_manager *m, struct vgpu_container *c, long long timeout_ms)
{
	long long deadline = timeout_ms >= 0 ? vgpu_wall_ns() + timeout_ms * 1000000LL : 0;
	pthread_mutex_lock(&m->lock);
	while (c->state != RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED && c->phase != VGPU_PHASE_REMOVED) {
		/* The watcher normally wakes us; also re-check the exit file in case an event was lost,
		 * and give up on a container whose monitor is gone. */
		if (vgpu_container_check_exit_locked(m, c))
			break;
		if (c->monitor_pid && !vgpu_proc_alive(c->monitor_pid, c->monitor_start) &&
		    !vgpu_container_check_exit_locked(m, c)) {
			c->state = RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
			c->exit_code = 255;
			c->finished_at = vgpu_wall_ns();
			free(c->reason);
			c->reason = vgpu_strdup("Unknown");
			free(c->message);
			c->message = vgpu_strdup("the container's monitor exited without recording an exit status");
			break;
		}
		long long now = vgpu_wall_ns();
		if (deadline && now >= deadline)
			break;
		long long until = now + 100000000LL; /* re-check at least every 100 ms */
		if (deadline && deadline < until)
			until = deadline;
		struct timespec ts = { .tv_sec = until / 1000000000LL, .tv_nsec = until % 1000000000LL };
		pthread_cond_timedwait(&m->changed, &m->lock, &ts);
	}
	bool exited = c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED;
	pthread_mutex_unlock(&m->lock);
	return exited;
}

static bool prefix_match(const char *value, const char *prefix)
{
	return !prefix || !*prefix || strncmp(value, prefix, strlen(prefix)) == 0;
}

bool vgpu_container_match(const struct vgpu_container *c, const char *id, const char *sandbox_id, int state,
			  void *const *selector, size_t n_selector)
{
	if (c->phase != VGPU_PHASE_LIVE)
		return false;
	if (!prefix_match(c->id, id) || !prefix_match(c->sandbox_id, sandbox_id))
		return false;
	if (state >= 0 && (int)c->state != state)
		return false;
	return vgpu_labels_match((void *const *)c->config->labels, c->config->n_labels, selector, n_selector);
}
