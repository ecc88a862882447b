/* Container and pod stats from cgroups (v1: cpuacct + memory hierarchies; v2: the unified one) and
 * the writable layer's disk use. CPU nanocores come from the previous sample of the same container
 * (kubelet polls), so the first call reports cumulative usage only. Containers of xen pods run in
 * their pod's guest: their cgroup counters come from the agent (CTR_STATS), fetched before mgr->lock
 * is taken, so a slow guest never holds up other calls. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_proto.h"
#include "daemon.h"
#include "log.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "util.h"
#include "xen_container.h"

struct cg_sample {
	bool have_cpu, have_mem;
	unsigned long long cpu_ns;
	unsigned long long mem_usage, working_set, rss, limit, pgfault, pgmajfault;
};

static bool read_ull(const char *path, unsigned long long *out)
{
	_cleanup_free_ char *text = NULL;
	if (vgpu_read_file(path, 4096, &text, NULL, NULL) < 0)
		return false;
	if (strncmp(text, "max", 3) == 0) {
		*out = 0;
		return true;
	}
	char *end;
	*out = strtoull(text, &end, 10);
	return end != text;
}

/* Value of "key N" in a flat-keyed file (memory.stat, cpu.stat). */
static bool read_key(const char *path, const char *key, unsigned long long *out)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return false;
	char line[256];
	size_t klen = strlen(key);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
			*out = strtoull(line + klen + 1, NULL, 10);
			return true;
		}
	return false;
}

static void sample_cgroup(bool v2, const char *rel, struct cg_sample *s)
{
	memset(s, 0, sizeof(*s));
	unsigned long long inactive = 0, v;
	if (v2) {
		_cleanup_free_ char *base = vgpu_asprintf("/sys/fs/cgroup%s", rel);
		_cleanup_free_ char *cpu = vgpu_asprintf("%s/cpu.stat", base);
		_cleanup_free_ char *cur = vgpu_asprintf("%s/memory.current", base);
		_cleanup_free_ char *stat = vgpu_asprintf("%s/memory.stat", base);
		_cleanup_free_ char *max = vgpu_asprintf("%s/memory.max", base);
		if (read_key(cpu, "usage_usec", &v)) {
			s->have_cpu = true;
			s->cpu_ns = v * 1000;
		}
		if (read_ull(cur, &s->mem_usage)) {
			s->have_mem = true;
			read_key(stat, "inactive_file", &inactive);
			read_key(stat, "anon", &s->rss);
			read_key(stat, "pgfault", &s->pgfault);
			read_key(stat, "pgmajfault", &s->pgmajfault);
			read_ull(max, &s->limit);
		}
	} else {
		_cleanup_free_ char *cpu = vgpu_asprintf("/sys/fs/cgroup/cpuacct%s/cpuacct.usage", rel);
		_cleanup_free_ char *cpu2 = vgpu_asprintf("/sys/fs/cgroup/cpu,cpuacct%s/cpuacct.usage", rel);
		_cleanup_free_ char *mem = vgpu_asprintf("/sys/fs/cgroup/memory%s", rel);
		_cleanup_free_ char *usage = vgpu_asprintf("%s/memory.usage_in_bytes", mem);
		_cleanup_free_ char *stat = vgpu_asprintf("%s/memory.stat", mem);
		_cleanup_free_ char *limit = vgpu_asprintf("%s/memory.limit_in_bytes", mem);
		s->have_cpu = read_ull(cpu, &s->cpu_ns) || read_ull(cpu2, &s->cpu_ns);
		if (read_ull(usage, &s->mem_usage)) {
			s->have_mem = true;
			read_key(stat, "total_inactive_file", &inactive);
			read_key(stat, "total_rss", &s->rss);
			read_key(stat, "total_pgfault", &s->pgfault);
			read_key(stat, "total_pgmajfault", &s->pgmajfault);
			read_ull(limit, &s->limit);
			if (s->limit >= (1ULL << 62))
				s->limit = 0; /* "unlimited" */
		}
	}
	s->working_set = s->mem_usage > inactive ? s->mem_usage - inactive : 0;
}

/* ---- xen containers: samples from the guests, fetched outside mgr->lock ---- */

struct xen_samples {
	struct vgpu_container **c;      /* referenced */
	struct cg_sample *s;
	size_t n;
};

static void sample_from_agent(const struct agent_ctr_stats *a, struct cg_sample *s)
{
	memset(s, 0, sizeof(*s));
	s->have_cpu = a->flags & AGENT_STATS_CPU;
	s->have_mem = a->flags & AGENT_STATS_MEM;
	s->cpu_ns = a->cpu_usage_usec * 1000;
	s->mem_usage = a->memory_current;
	s->working_set = a->memory_current > a->inactive_file ? a->memory_current - a->inactive_file : 0;
	s->rss = a->anon;
	s->limit = a->memory_max;
	s->pgfault = a->pgfault;
	s->pgmajfault = a->pgmajfault;
}

/* Running xen containers that match (one id, or one pod's, or all when both are NULL). For a
 * single container (id), an agent error other than "pod not ready" is the call's error. */
static int xen_samples_fetch(struct vgpu_pod_manager *m, const char *id, const char *sandbox_id,
			     struct xen_samples *xs, struct vgpu_err *err)
{
	memset(xs, 0, sizeof(*xs));
	pthread_mutex_lock(&m->lock);
	size_t n = 0;
	for (struct vgpu_container *c = m->containers; c; c = c->next)
		n++;
	xs->c = vgpu_calloc(n + 1, sizeof(*xs->c));
	xs->s = vgpu_calloc(n + 1, sizeof(*xs->s));
	for (struct vgpu_container *c = m->containers; c; c = c->next) {
		if (!c->xen || c->phase != VGPU_PHASE_LIVE || c->state != RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING ||
		    (id && strcmp(c->id, id) != 0) || (sandbox_id && strcmp(c->sandbox_id, sandbox_id) != 0))
			continue;
		c->refs++;
		xs->c[xs->n++] = c;
	}
	pthread_mutex_unlock(&m->lock);
	int r = 0;
	for (size_t i = 0; i < xs->n; i++) {
		struct agent_ctr_stats a;
		struct vgpu_err aerr = { 0 };
		int ar = vgpu_xen_container_stats(m, xs->c[i], &a, &aerr);
		if (ar == 0) {
			sample_from_agent(&a, &xs->s[i]);
		} else if (ar != -ENOTCONN && ar != -ENOENT) {
			vgpu_log(VGPU_LOG_DEBUG, "stats: %s", aerr.msg);
			if (id && r == 0)
				r = vgpu_err_set(err, ar, "%s", aerr.msg);
		}
	}
	return r;
}

static const struct cg_sample *xen_sample_of(const struct xen_samples *xs, const struct vgpu_container *c)
{
	static const struct cg_sample none;
	for (size_t i = 0; xs && i < xs->n; i++)
		if (xs->c[i] == c)
			return &xs->s[i];
	return &none; /* not running: no cgroup in the guest */
}

static void xen_samples_free(struct vgpu_pod_manager *m, struct xen_samples *xs)
{
	for (size_t i = 0; i < xs->n; i++)
		vgpu_container_put(m, xs->c[i]);
	free(xs->c);
	free(xs->s);
	memset(xs, 0, sizeof(*xs));
}

bool vgpu_cgroup_oom_killed(bool v2, const char *rel)
{
	unsigned long long kills = 0;
	_cleanup_free_ char *path = v2 ? vgpu_asprintf("/sys/fs/cgroup%s/memory.events", rel)
				       : vgpu_asprintf("/sys/fs/cgroup/memory%s/memory.oom_control", rel);
	return read_key(path, "oom_kill", &kills) && kills > 0;
}

static Runtime__V1__UInt64Value *u64(unsigned long long v)
{
	Runtime__V1__UInt64Value *x = vgpu_calloc(1, sizeof(*x));
	runtime__v1__uint64_value__init(x);
	x->value = v;
	return x;
}

static Runtime__V1__CpuUsage *cpu_usage(const struct cg_sample *s, long long ts, unsigned long long *last_cpu,
					long long *last_ts)
{
	Runtime__V1__CpuUsage *cpu = vgpu_calloc(1, sizeof(*cpu));
	runtime__v1__cpu_usage__init(cpu);
	cpu->timestamp = ts;
	cpu->usage_core_nano_seconds = u64(s->cpu_ns);
	if (last_ts && *last_ts && ts > *last_ts && s->cpu_ns >= *last_cpu)
		cpu->usage_nano_cores = u64((s->cpu_ns - *last_cpu) * 1000000000ULL / (unsigned long long)(ts - *last_ts));
	if (last_ts) {
		*last_cpu = s->cpu_ns;
		*last_ts = ts;
	}
	return cpu;
}

static Runtime__V1__MemoryUsage *memory_usage(const struct cg_sample *s, long long ts)
{
	Runtime__V1__MemoryUsage *mem = vgpu_calloc(1, sizeof(*mem));
	runtime__v1__memory_usage__init(mem);
	mem->timestamp = ts;
	mem->working_set_bytes = u64(s->working_set);
	mem->usage_bytes = u64(s->mem_usage);
	mem->rss_bytes = u64(s->rss);
	mem->page_faults = u64(s->pgfault);
	mem->major_page_faults = u64(s->pgmajfault);
	if (s->limit)
		mem->available_bytes = u64(s->limit > s->working_set ? s->limit - s->working_set : 0);
	return mem;
}

static __thread unsigned long long du_bytes, du_inodes;

static int du_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	du_bytes += (unsigned long long)st->st_blocks * 512ULL;
	du_inodes++;
	return 0;
}

static Runtime__V1__FilesystemUsage *writable_layer(struct vgpu_pod_manager *m, const struct vgpu_container *c, long long ts)
{
	Runtime__V1__FilesystemUsage *fs = vgpu_calloc(1, sizeof(*fs));
	runtime__v1__filesystem_usage__init(fs);
	fs->timestamp = ts;
	fs->fs_id = vgpu_calloc(1, sizeof(*fs->fs_id));
	runtime__v1__filesystem_identifier__init(fs->fs_id);
	fs->fs_id->mountpoint = vgpu_strdup(m->d->cfg->state_dir);
	_cleanup_free_ char *upper = vgpu_asprintf("%s/upper", c->dir);
	du_bytes = du_inodes = 0;
	if (nftw(upper, du_entry, 16, FTW_PHYS | FTW_MOUNT) < 0)
		du_bytes = du_inodes = 0;
	fs->used_bytes = u64(du_bytes);
	fs->inodes_used = u64(du_inodes);
	return fs;
}

static Runtime__V1__ContainerAttributes *container_attrs(const struct vgpu_container *c)
{
	Runtime__V1__ContainerAttributes *a = vgpu_calloc(1, sizeof(*a));
	runtime__v1__container_attributes__init(a);
	a->id = vgpu_strdup(c->id);
	a->metadata = vgpu_pb_clone(c->config->metadata);
	a->n_labels = c->config->n_labels;
	a->labels = vgpu_pb_map_copy(&runtime__v1__container_attributes__labels_entry__descriptor,
				     (void *const *)c->config->labels, c->config->n_labels);
	a->n_annotations = c->config->n_annotations;
	a->annotations = vgpu_pb_map_copy(&runtime__v1__container_attributes__annotations_entry__descriptor,
					  (void *const *)c->config->annotations, c->config->n_annotations);
	return a;
}

/* Writable-layer sizes walk a directory tree: done after mgr->lock is released, on containers
 * kept alive by a reference taken under the lock. */
struct du_job {
	Runtime__V1__ContainerStats *st;
	struct vgpu_container *c;
	long long ts;
};
struct du_jobs {
	struct du_job *v;
	size_t n, cap;
};

static void du_jobs_run(struct vgpu_pod_manager *m, struct du_jobs *jobs)
{
	for (size_t i = 0; i < jobs->n; i++) {
		jobs->v[i].st->writable_layer = writable_layer(m, jobs->v[i].c, jobs->v[i].ts);
		vgpu_container_put(m, jobs->v[i].c);
	}
	free(jobs->v);
	jobs->v = NULL;
	jobs->n = jobs->cap = 0;
}

/* mgr->lock held (for the sample fields); reads small cgroup files only; the writable layer is
 * queued on jobs. */
static Runtime__V1__ContainerStats *container_stats_locked(struct vgpu_pod_manager *m, struct vgpu_container *c,
							   struct du_jobs *jobs, const struct xen_samples *xs)
{
	long long ts = vgpu_wall_ns();
	struct cg_sample s;
	if (c->xen)
		s = *xen_sample_of(xs, c);
	else
		sample_cgroup(m->cgroup_v2, c->cgroups_path, &s);
	Runtime__V1__ContainerStats *st = vgpu_calloc(1, sizeof(*st));
	runtime__v1__container_stats__init(st);
	st->attributes = container_attrs(c);
	st->cpu = cpu_usage(&s, ts, &c->last_cpu_ns, &c->last_cpu_ts);
	st->memory = memory_usage(&s, ts);
	if (jobs->n == jobs->cap) {
		jobs->cap = jobs->cap ? 2 * jobs->cap : 16;
		jobs->v = reallocarray(jobs->v, jobs->cap, sizeof(*jobs->v));
		if (!jobs->v)
			abort(); /* as vgpu_calloc */
	}
	c->refs++;
	jobs->v[jobs->n++] = (struct du_job){ st, c, ts };
	return st;
}

int vgpu_rpc_container_stats(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			     struct vgpu_err *err)
{
	const Runtime__V1__ContainerStatsRequest *req = (const Runtime__V1__ContainerStatsRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_container *c;
	int r = vgpu_container_get(m, req->container_id, &c, err);
	if (r < 0)
		return r;
	struct xen_samples xs = { 0 };
	if (c->xen && (r = xen_samples_fetch(m, c->id, NULL, &xs, err)) < 0) {
		xen_samples_free(m, &xs);
		vgpu_container_put(m, c);
		return r;
	}
	Runtime__V1__ContainerStatsResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__container_stats_response__init(out);
	struct du_jobs jobs = { 0 };
	pthread_mutex_lock(&m->lock);
	out->stats = container_stats_locked(m, c, &jobs, &xs);
	pthread_mutex_unlock(&m->lock);
	du_jobs_run(m, &jobs);
	xen_samples_free(m, &xs);
	vgpu_container_put(m, c);
	*resp = &out->base;
	return 0;
}

static bool stats_match(const struct vgpu_container *c, const Runtime__V1__ContainerStatsFilter *f)
{
	if (!f)
		return vgpu_container_match(c, NULL, NULL, -1, NULL, 0);
	return vgpu_container_match(c, f->id, f->pod_sandbox_id, -1, (void *const *)f->label_selector,
				    f->n_label_selector);
}

int vgpu_rpc_list_container_stats(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
				  struct vgpu_err *err)
{
	(void)err;
	const Runtime__V1__ListContainerStatsRequest *req = (const Runtime__V1__ListContainerStatsRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct xen_samples xs;
	(void)xen_samples_fetch(m, NULL, NULL, &xs, NULL);
	Runtime__V1__ListContainerStatsResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__list_container_stats_response__init(out);
	pthread_mutex_lock(&m->lock);
	size_t n = 0;
	for (struct vgpu_container *c = m->containers; c; c = c->next)
		n++;
	out->stats = vgpu_calloc(n + 1, sizeof(*out->stats));
	struct du_jobs jobs = { 0 };
	for (struct vgpu_container *c = m->containers; c; c = c->next)
		if (stats_match(c, req->filter))
			out->stats[out->n_stats++] = container_stats_locked(m, c, &jobs, &xs);
	pthread_mutex_unlock(&m->lock);
	du_jobs_run(m, &jobs);
	xen_samples_free(m, &xs);
	*resp = &out->base;
	return 0;
}

static Runtime__V1__PodSandboxStats *pod_stats_locked(struct vgpu_pod_manager *m, struct vgpu_sandbox *s,
						      struct du_jobs *jobs, const struct xen_samples *xs)
{
	long long ts = vgpu_wall_ns();
	Runtime__V1__PodSandboxStats *st = vgpu_calloc(1, sizeof(*st));
	runtime__v1__pod_sandbox_stats__init(st);
	st->attributes = vgpu_calloc(1, sizeof(*st->attributes));
	runtime__v1__pod_sandbox_attributes__init(st->attributes);
	st->attributes->id = vgpu_strdup(s->id);
	st->attributes->metadata = vgpu_pb_clone(s->config->metadata);
	st->attributes->n_labels = s->config->n_labels;
	st->attributes->labels = vgpu_pb_map_copy(&runtime__v1__pod_sandbox_attributes__labels_entry__descriptor,
						  (void *const *)s->config->labels, s->config->n_labels);
	st->attributes->n_annotations = s->config->n_annotations;
	st->attributes->annotations =
		vgpu_pb_map_copy(&runtime__v1__pod_sandbox_attributes__annotations_entry__descriptor,
				 (void *const *)s->config->annotations, s->config->n_annotations);
	st->linux = vgpu_calloc(1, sizeof(*st->linux));
	runtime__v1__linux_pod_sandbox_stats__init(st->linux);
	size_t n = 0;
	for (struct vgpu_container *c = m->containers; c; c = c->next)
		n += c->phase == VGPU_PHASE_LIVE && strcmp(c->sandbox_id, s->id) == 0;
	st->linux->containers = vgpu_calloc(n + 1, sizeof(*st->linux->containers));
	struct cg_sample sum = { 0 };
	for (struct vgpu_container *c = m->containers; c; c = c->next) {
		if (c->phase != VGPU_PHASE_LIVE || strcmp(c->sandbox_id, s->id) != 0)
			continue;
		Runtime__V1__ContainerStats *cs = container_stats_locked(m, c, jobs, xs);
		sum.cpu_ns += cs->cpu->usage_core_nano_seconds->value;
		sum.working_set += cs->memory->working_set_bytes->value;
		sum.mem_usage += cs->memory->usage_bytes->value;
		sum.rss += cs->memory->rss_bytes->value;
		st->linux->containers[st->linux->n_containers++] = cs;
	}
	/* The pod's cgroup holds exited containers' usage too; use it where it can be read. */
	struct cg_sample pod = { 0 };
	if (!s->xen_domain) /* a xen pod's containers are in its guest: their sum */
		sample_cgroup(m->cgroup_v2, s->cgroup_parent, &pod);
	if (!pod.have_cpu)
		pod.cpu_ns = sum.cpu_ns;
	if (!pod.have_mem) {
		pod.working_set = sum.working_set;
		pod.mem_usage = sum.mem_usage;
		pod.rss = sum.rss;
	}
	st->linux->cpu = cpu_usage(&pod, ts, NULL, NULL);
	st->linux->memory = memory_usage(&pod, ts);
	return st;
}

int vgpu_rpc_pod_sandbox_stats(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			       struct vgpu_err *err)
{
	const Runtime__V1__PodSandboxStatsRequest *req = (const Runtime__V1__PodSandboxStatsRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_sandbox *s;
	int r = vgpu_sandbox_get(m, req->pod_sandbox_id, &s, err);
	if (r < 0)
		return r;
	struct xen_samples xs = { 0 };
	if (s->xen_domain)
		(void)xen_samples_fetch(m, NULL, s->id, &xs, NULL);
	Runtime__V1__PodSandboxStatsResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__pod_sandbox_stats_response__init(out);
	struct du_jobs jobs = { 0 };
	pthread_mutex_lock(&m->lock);
	out->stats = pod_stats_locked(m, s, &jobs, &xs);
	pthread_mutex_unlock(&m->lock);
	du_jobs_run(m, &jobs);
	xen_samples_free(m, &xs);
	vgpu_sandbox_put(m, s);
	*resp = &out->base;
	return 0;
}

int vgpu_rpc_list_pod_sandbox_stats(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
				    struct vgpu_err *err)
{
	(void)err;
	const Runtime__V1__ListPodSandboxStatsRequest *req = (const Runtime__V1__ListPodSandboxStatsRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct xen_samples xs;
	(void)xen_samples_fetch(m, NULL, NULL, &xs, NULL);
	Runtime__V1__ListPodSandboxStatsResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__list_pod_sandbox_stats_response__init(out);
	pthread_mutex_lock(&m->lock);
	size_t n = 0;
	for (struct vgpu_sandbox *s = m->sandboxes; s; s = s->next)
		n++;
	out->stats = vgpu_calloc(n + 1, sizeof(*out->stats));
	const Runtime__V1__PodSandboxStatsFilter *f = req->filter;
	struct du_jobs jobs = { 0 };
	for (struct vgpu_sandbox *s = m->sandboxes; s; s = s->next) {
		if (s->phase != VGPU_PHASE_LIVE)
			continue;
		if (f && f->id && *f->id && strncmp(s->id, f->id, strlen(f->id)) != 0)
			continue;
		if (f && !vgpu_labels_match((void *const *)s->config->labels, s->config->n_labels,
					    (void *const *)f->label_selector, f->n_label_selector))
			continue;
		out->stats[out->n_stats++] = pod_stats_locked(m, s, &jobs, &xs);
	}
	pthread_mutex_unlock(&m->lock);
	du_jobs_run(m, &jobs);
	xen_samples_free(m, &xs);
	*resp = &out->base;
	return 0;
}
