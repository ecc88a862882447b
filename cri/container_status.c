/* ContainerStatus and ListContainers: read-only views of the pod manager's containers. */
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "container.h"
#include "daemon.h"
#include "sandbox_store.h"
#include "util.h"
#include "xen_container.h"

static Runtime__V1__ImageSpec *image_spec(const struct vgpu_container *c)
{
	Runtime__V1__ImageSpec *spec;
	if (c->config->image) {
		spec = vgpu_pb_clone(c->config->image);
	} else { /* a damaged config.pb on disk: report the image by id only */
		spec = vgpu_calloc(1, sizeof(*spec));
		runtime__v1__image_spec__init(spec);
		spec->image = vgpu_strdup("");
		spec->user_specified_image = vgpu_strdup("");
		spec->runtime_handler = vgpu_strdup("");
	}
	if (spec->image_ref != protobuf_c_empty_string) /* unpacked defaults point at a shared "" */
		free(spec->image_ref);
	spec->image_ref = vgpu_strdup(c->image_id);
	return spec;
}

Runtime__V1__ContainerStatus *vgpu_container_status_locked(struct vgpu_container *c)
{
	const Runtime__V1__ContainerConfig *cfg = c->config;
	Runtime__V1__ContainerStatus *st = vgpu_calloc(1, sizeof(*st));
	runtime__v1__container_status__init(st);
	st->id = vgpu_strdup(c->id);
	st->metadata = vgpu_pb_clone(cfg->metadata);
	st->state = c->state;
	st->created_at = c->created_at;
	st->started_at = c->started_at;
	st->finished_at = c->finished_at;
	st->exit_code = c->exit_code;
	st->image = image_spec(c);
	st->image_ref = vgpu_strdup(c->image_id);
	st->image_id = vgpu_strdup(c->image_id);
	st->reason = vgpu_strdup(c->reason);
	st->message = vgpu_strdup(c->message);
	st->n_labels = cfg->n_labels;
	st->labels = vgpu_pb_map_copy(&runtime__v1__container_status__labels_entry__descriptor,
				      (void *const *)cfg->labels, cfg->n_labels);
	st->n_annotations = cfg->n_annotations;
	st->annotations = vgpu_pb_map_copy(&runtime__v1__container_status__annotations_entry__descriptor,
					   (void *const *)cfg->annotations, cfg->n_annotations);
	if (cfg->n_mounts) {
		st->mounts = vgpu_calloc(cfg->n_mounts, sizeof(*st->mounts));
		for (size_t i = 0; i < cfg->n_mounts; i++)
			st->mounts[i] = vgpu_pb_clone(cfg->mounts[i]);
		st->n_mounts = cfg->n_mounts;
	}
	st->log_path = vgpu_strdup(c->log_path);
	if (c->resources) {
		st->resources = vgpu_calloc(1, sizeof(*st->resources));
		runtime__v1__container_resources__init(st->resources);
		st->resources->linux = vgpu_pb_clone(c->resources);
	}
	st->stop_signal = cfg->stop_signal;
	return st;
}

static char *verbose_info(struct vgpu_container *c)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "sandboxID", json_object_new_string(c->sandbox_id));
	json_object_object_add(o, "pid", json_object_new_int(c->pid));
	json_object_object_add(o, "monitorPid", json_object_new_int(c->monitor_pid));
	json_object_object_add(o, "bundle", json_object_new_string(c->dir));
	json_object_object_add(o, "cgroupsPath", json_object_new_string(c->cgroups_path));
	if (c->xen) /* runs in the pod's domain, from this disk */
		json_object_object_add(o, "xenImageDisk", json_object_new_string(c->xen->vdev));
	_cleanup_free_ char *spec_path = vgpu_asprintf("%s/config.json", c->dir);
	json_object *spec = json_object_from_file(spec_path);
	if (spec)
		json_object_object_add(o, "runtimeSpec", spec);
	char *text = vgpu_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return text;
}

int vgpu_rpc_container_status(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			      struct vgpu_err *err)
{
	const Runtime__V1__ContainerStatusRequest *req = (const Runtime__V1__ContainerStatusRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	struct vgpu_container *c;
	int r = vgpu_container_get(m, req->container_id, &c, err);
	if (r < 0)
		return r;
	if (c->xen) /* the guest's latest: state, exit, log records */
		vgpu_xen_container_sync(m, c);
	Runtime__V1__ContainerStatusResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__container_status_response__init(out);
	pthread_mutex_lock(&m->lock);
	vgpu_container_check_exit_locked(m, c);
	out->status = vgpu_container_status_locked(c);
	pthread_mutex_unlock(&m->lock);
	if (req->verbose) {
		out->n_info = 1;
		out->info = vgpu_calloc(1, sizeof(*out->info));
		out->info[0] = vgpu_calloc(1, sizeof(*out->info[0]));
		runtime__v1__container_status_response__info_entry__init(out->info[0]);
		out->info[0]->key = vgpu_strdup("info");
		out->info[0]->value = verbose_info(c);
	}
	vgpu_container_put(m, c);
	*resp = &out->base;
	return 0;
}

static bool container_matches(const struct vgpu_container *c, const Runtime__V1__ContainerFilter *f)
{
	if (!f)
		return vgpu_container_match(c, NULL, NULL, -1, NULL, 0);
	return vgpu_container_match(c, f->id, f->pod_sandbox_id, f->state ? (int)f->state->state : -1,
				    (void *const *)f->label_selector, f->n_label_selector);
}

int vgpu_rpc_list_containers(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
			     struct vgpu_err *err)
{
	(void)err;
	const Runtime__V1__ListContainersRequest *req = (const Runtime__V1__ListContainersRequest *)req_msg;
	struct vgpu_pod_manager *m = vgpu_pods(d);
	Runtime__V1__ListContainersResponse *out = vgpu_calloc(1, sizeof(*out));
	runtime__v1__list_containers_response__init(out);
	pthread_mutex_lock(&m->lock);
	size_t n = 0;
	for (struct vgpu_container *c = m->containers; c; c = c->next)
		n++;
	out->containers = vgpu_calloc(n + 1, sizeof(*out->containers));
	for (struct vgpu_container *c = m->containers; c; c = c->next) {
		vgpu_container_check_exit_locked(m, c);
		if (!container_matches(c, req->filter))
			continue;
		Runtime__V1__Container *x = vgpu_calloc(1, sizeof(*x));
		runtime__v1__container__init(x);
		x->id = vgpu_strdup(c->id);
		x->pod_sandbox_id = vgpu_strdup(c->sandbox_id);
		x->metadata = vgpu_pb_clone(c->config->metadata);
		x->image = image_spec(c);
		x->image_ref = vgpu_strdup(c->image_id);
		x->image_id = vgpu_strdup(c->image_id);
		x->state = c->state;
		x->created_at = c->created_at;
		x->n_labels = c->config->n_labels;
		x->labels = vgpu_pb_map_copy(&runtime__v1__container__labels_entry__descriptor,
					     (void *const *)c->config->labels, c->config->n_labels);
		x->n_annotations = c->config->n_annotations;
		x->annotations = vgpu_pb_map_copy(&runtime__v1__container__annotations_entry__descriptor,
						  (void *const *)c->config->annotations, c->config->n_annotations);
		out->containers[out->n_containers++] = x;
	}
	pthread_mutex_unlock(&m->lock);
	*resp = &out->base;
	return 0;
}
