/* PodSandboxStatus and ListPodSandbox: read-only views of the pod manager's sandboxes. */
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "cni_pod.h"
#include "daemon.h"
#include "sandbox.h"
#include "sandbox_store.h"
#include "util.h"
#include "xen_sandbox.h"

Runtime__V1__PodSandboxStatus *vgpu_sandbox_status_locked(struct vgpu_sandbox *s)
{
	vgpu_sandbox_refresh_locked(s);
	Runtime__V1__PodSandboxStatus *st = vgpu_calloc(1, sizeof(*st));
	runtime__v1__pod_sandbox_status__init(st);
	st->id = vgpu_strdup(s->id);
	st->metadata = vgpu_pb_clone(s->config->metadata);
	st->state = s->state;
	st->created_at = s->created_at;
	st->network = vgpu_calloc(1, sizeof(*st->network));
	runtime__v1__pod_sandbox_network_status__init(st->network);
	st->network->ip = vgpu_strdup(""); /* loopback only until CNI */
	st->linux = vgpu_calloc(1, sizeof(*st->linux));
	runtime__v1__linux_pod_sandbox_status__init(st->linux);
	st->linux->namespaces = vgpu_calloc(1, sizeof(*st->linux->namespaces));
	runtime__v1__namespace__init(st->linux->namespaces);
	const Runtime__V1__PodSandboxConfig *cfg = s->config;
	if (cfg->linux && cfg->linux->security_context && cfg->linux->security_context->namespace_options) {
		st->linux->namespaces->options = vgpu_pb_clone(cfg->linux->security_context->namespace_options);
	} else {
		st->linux->namespaces->options = vgpu_calloc(1, sizeof(Runtime__V1__NamespaceOption));
		runtime__v1__namespace_option__init(st->linux->namespaces->options);
	}
	st->n_labels = cfg->n_labels;
	st->labels = vgpu_pb_map_copy(&runtime__v1__pod_sandbox_status__labels_entry__descriptor,
				      (void *const *)cfg->labels, cfg->n_labels);
	st->n_annotations = cfg->n_annotations;
	st->annotations = vgpu_pb_map_copy(&runtime__v1__pod_sandbox_status__annotations_entry__descriptor,
					   (void *const *)cfg->annotations, cfg->n_annotations);
	st->runtime_handler = vgpu_strdup(s->handler);
	return st;
}

static char *verbose_info(struct vgpu_sandbox *s)
{
	json_object *o = json_object_new_object();
	if (!s->xen_domain)
		json_object_object_add(o, "pid", json_object_new_int(s->infra_pid));
	json_object_object_add(o, "runtimeHandler", json_object_new_string(s->handler));
	if (!s->xen_domain) {
		json_object_object_add(o, "cgroupParent", json_object_new_string(s->cgroup_parent));
		json_object_object_add(o, "shm", json_object_new_string(s->shm_path ? s->shm_path : ""));
	}
	json_object_object_add(o, "stateDir", json_object_new_string(s->dir));
	if (s->xen_domain) {
		json_object *x = json_object_new_object();
		json_object_object_add(x, "domain", json_object_new_string(s->xen_domain));
		json_object_object_add(x, "domid", json_object_new_int64(s->xen_domid));
		_cleanup_free_ char *console = vgpu_asprintf("%s/console.log", s->dir);
		json_object_object_add(x, "consoleLog", json_object_new_string(console));
		if (s->xen_vif_mac) { /* the pod network: the vif joined to eth0 in the pod's netns */
			_cleanup_free_ char *vif = vgpu_asprintf("vif%u.0", s->xen_domid);
			json_object_object_add(x, "vif", json_object_new_string(vif));
			json_object_object_add(x, "vifMac", json_object_new_string(s->xen_vif_mac));
		}
		json_object_object_add(o, "xen", x);
	}
	if (s->xen_domain) { /* a domU: no infra process, shm or namespaces on this host */
		char *text = vgpu_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
		return text;
	}
	json_object *ns = json_object_new_object();
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)s->infra_pid);
	json_object_object_add(ns, "network", json_object_new_string(s->host_net ? "host" : path));
	json_object_object_add(ns, "ipc", json_object_new_string(s->host_ipc ? "host" : "pod"));
	json_object_object_add(ns, "pid", json_object_new_string(s->host_pid ? "host" : s->share_pid ? "pod" : "container"));
	json_object_object_add(o, "namespaces", ns);
	char *text = vgpu_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return text;
}

/* info["gpu"]: the pod's GPU quota and usage from the broker, or its request once stopped. */
static void add_gpu_info(struct vgpu_daemon *d, struct vgpu_sandbox *s, Runtime__V1__PodSandboxStatusResponse *out)
{
	char *json = vgpu_gpu_pod_info_json(d->gpu, s->id);
	if (!json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "backend", json_object_new_string(vgpu_gpu_backend(d->gpu)));
		json_object_object_add(o, "active", json_object_new_boolean(0));
		json_object_object_add(o, "vgpu_gpu_memory_limit_bytes", json_object_new_int64((int64_t)s->gpu.quota_bytes));
		json_object_object_add(o, "vgpu_gpu_compute_share_percent", json_object_new_int64(s->gpu.compute_share));
		json = vgpu_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	}
	Runtime__V1__PodSandboxStatusResponse__InfoEntry *e = vgpu_calloc(1, sizeof(*e));
	runtime__v1__pod_sandbox_status_response__info_entry__init(e);
	e->key = vgpu_strdup("gpu");
	e->value = json;
	Runtime__V1__PodSandboxStatusResponse__InfoEntry **info = vgpu_calloc(out->n_info + 1, sizeof(*info));
	for (size_t i = 0; i < out->n_info; i++)
		info[i] = out->info[i];
	info[out->n_info] = e;
	free(out->info);
	out->info = info;
	out->n_info++;
}

int vgpu_rpc_pod_sandbox_status(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
				struct vgpu_err *err)
{
	const Runtime__V1__PodSandboxStatusRequest *req = (const Runtime__V1__PodSandboxStatusRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_sandbox *s;
	int r = vgpu_sandbox_get(m, req->pod_sandbox_id, &s, err);
	if (r < 0)
		return r;
	if (s->xen_domain) /* outside the lock: asks libxl */
		vgpu_xen_pod_refresh(m, s);
	Runtime__V1__PodSandboxStatusResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__pod_sandbox_status_response__init(out);
	pthread_mutex_lock(&m->lock);
	out->status = vgpu_sandbox_status_locked(s);
	if (req->verbose) {
		out->n_info = 1;
		out->info = vgpu_calloc(1, sizeof(*out->info));
		out->info[0] = vgpu_calloc(1, sizeof(*out->info[0]));
		runtime__v1__pod_sandbox_status_response__info_entry__init(out->info[0]);
		out->info[0]->key = vgpu_strdup("info");
		out->info[0]->value = verbose_info(s);
	}
	pthread_mutex_unlock(&m->lock);
	if (req->verbose && s->gpu.enabled) /* outside the lock: asks the broker */
		add_gpu_info(d, s, out);
	if (!s->host_net) /* outside the lock: reads the CNI cache */
		vgpu_pod_network_status(d->cfg, s->id, out->status->network);
	out->timestamp = vgpu_wall_ns();
	vgpu_sandbox_put(m, s);
	*resp = &out->base;
	return 0;
}

static bool sandbox_matches(struct vgpu_sandbox *s, const Runtime__V1__PodSandboxFilter *f)
{
	if (s->phase != VGPU_PHASE_LIVE)
		return false;
	if (!f)
		return true;
	if (f->id && *f->id && strncmp(s->id, f->id, strlen(f->id)) != 0)
		return false;
	if (f->state && f->state->state != s->state)
		return false;
	return vgpu_labels_match((void *const *)s->config->labels, s->config->n_labels, (void *const *)f->label_selector,
				 f->n_label_selector);
}

int vgpu_rpc_list_pod_sandbox(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			      struct vgpu_err *err)
{
	(void)err;
	const Runtime__V1__ListPodSandboxRequest *req = (const Runtime__V1__ListPodSandboxRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	vgpu_xen_pods_refresh_all(m); /* outside the lock: asks libxl (no-op without Xen) */
	Runtime__V1__ListPodSandboxResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__list_pod_sandbox_response__init(out);
	pthread_mutex_lock(&m->lock);
	size_t n = 0;
	for (struct vgpu_sandbox *s = m->sandboxes; s; s = s->next)
		n++;
	out->items = vgpu_calloc(n + 1, sizeof(*out->items));
	for (struct vgpu_sandbox *s = m->sandboxes; s; s = s->next) {
		vgpu_sandbox_refresh_locked(s);
		if (!sandbox_matches(s, req->filter))
			continue;
		Runtime__V1__PodSandbox *p = vgpu_calloc(1, sizeof(*p));
		runtime__v1__pod_sandbox__init(p);
		p->id = vgpu_strdup(s->id);
		p->metadata = vgpu_pb_clone(s->config->metadata);
		p->state = s->state;
		p->created_at = s->created_at;
		p->n_labels = s->config->n_labels;
		p->labels = vgpu_pb_map_copy(&runtime__v1__pod_sandbox__labels_entry__descriptor,
					     (void *const *)s->config->labels, s->config->n_labels);
		p->n_annotations = s->config->n_annotations;
		p->annotations = vgpu_pb_map_copy(&runtime__v1__pod_sandbox__annotations_entry__descriptor,
						  (void *const *)s->config->annotations, s->config->n_annotations);
		p->runtime_handler = vgpu_strdup(s->handler);
		out->items[out->n_items++] = p;
	}
	pthread_mutex_unlock(&m->lock);
	*resp = &out->base;
	return 0;
}
