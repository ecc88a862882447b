/* Version, Status, RuntimeConfig and UpdateRuntimeConfig: what kubelet asks the runtime about
 * itself. */
#include "runtime_service.h"

#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "cni.h"
#include "cri-api.pb-c.h"
#include "daemon.h"
#include "log.h"
#include "util.h"

#ifndef VGPU_VERSION
#define VGPU_VERSION "0.0.0"
#endif

int vgpu_rpc_version(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
		     struct vgpu_err *err)
{
	Runtime__V1__VersionResponse *r = vgpu_calloc(1, sizeof(*r));
	runtime__v1__version_response__init(r);
	/* `version` is the version of the kubelet runtime API, per the CRI comments. */
	r->version = vgpu_strdup("0.1.0");
	r->runtime_name = vgpu_strdup(VGPU_RUNTIME_NAME);
	r->runtime_version = vgpu_strdup(VGPU_VERSION);
	r->runtime_api_version = vgpu_strdup(VGPU_RUNTIME_API_VERSION);
	*resp = &r->base;
	return 0;
}

bool vgpu_network_ready(const struct vgpu_config *cfg, char **message)
{
	return vgpu_cni_config_ready(cfg, message);
}

static Runtime__V1__RuntimeCondition *condition(const char *type, bool status, const char *reason, char *message)
{
	Runtime__V1__RuntimeCondition *c = vgpu_calloc(1, sizeof(*c));
	runtime__v1__runtime_condition__init(c);
	c->type = vgpu_strdup(type);
	c->status = status;
	c->reason = vgpu_strdup(reason);
	c->message = message ? message : vgpu_strdup("");
	return c;
}

static Runtime__V1__StatusResponse__InfoEntry *info_entry(const char *key, char *value)
{
	Runtime__V1__StatusResponse__InfoEntry *e = vgpu_calloc(1, sizeof(*e));
	runtime__v1__status_response__info_entry__init(e);
	e->key = vgpu_strdup(key);
	e->value = value;
	return e;
}

int vgpu_rpc_status(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
		    struct vgpu_err *err)
{
	const Runtime__V1__StatusRequest *req = (const Runtime__V1__StatusRequest *)req_msg;
	Runtime__V1__StatusResponse *r = vgpu_calloc(1, sizeof(*r));
	runtime__v1__status_response__init(r);

	r->status = vgpu_calloc(1, sizeof(*r->status));
	runtime__v1__runtime_status__init(r->status);
	r->status->n_conditions = 2;
	r->status->conditions = vgpu_calloc(2, sizeof(*r->status->conditions));
	r->status->conditions[0] = condition("RuntimeReady", true, "", NULL);
	char *net_msg = NULL;
	bool net_ready = vgpu_network_ready(d->cfg, &net_msg);
	r->status->conditions[1] = condition("NetworkReady", net_ready, net_ready ? "" : "NetworkPluginNotReady", net_msg);

	r->n_runtime_handlers = d->cfg->n_handlers;
	r->runtime_handlers = vgpu_calloc(d->cfg->n_handlers, sizeof(*r->runtime_handlers));
	for (size_t i = 0; i < d->cfg->n_handlers; i++) {
		Runtime__V1__RuntimeHandler *h = vgpu_calloc(1, sizeof(*h));
		runtime__v1__runtime_handler__init(h);
		h->name = vgpu_strdup(d->cfg->handlers[i].name);
		h->features = vgpu_calloc(1, sizeof(*h->features));
		runtime__v1__runtime_handler_features__init(h->features);
		r->runtime_handlers[i] = h;
	}
	r->features = vgpu_calloc(1, sizeof(*r->features));
	runtime__v1__runtime_features__init(r->features);

	if (req->verbose) {
		r->n_info = 2;
		r->info = vgpu_calloc(2, sizeof(*r->info));
		r->info[0] = info_entry("config", vgpu_config_to_json(d->cfg));
		if (pthread_mutex_lock(&d->lock) != 0)
			abort();
		json_object *cidr = json_object_new_string(d->pod_cidr ? d->pod_cidr : "");
		pthread_mutex_unlock(&d->lock);
		/* crictl info parses every info value as JSON, so even a plain string is JSON-quoted. */
		r->info[1] = info_entry("podCIDR", vgpu_strdup(json_object_to_json_string_ext(
							     cidr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)));
		json_object_put(cidr);
	}
	*resp = &r->base;
	return 0;
}

int vgpu_rpc_runtime_config(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			    struct vgpu_err *err)
{
	Runtime__V1__RuntimeConfigResponse *r = vgpu_calloc(1, sizeof(*r));
	runtime__v1__runtime_config_response__init(r);
	r->linux = vgpu_calloc(1, sizeof(*r->linux));
	runtime__v1__linux_runtime_configuration__init(r->linux);
	r->linux->cgroup_driver = strcmp(d->cfg->cgroup_driver, "systemd") == 0 ? RUNTIME__V1__CGROUP_DRIVER__SYSTEMD
										 : RUNTIME__V1__CGROUP_DRIVER__CGROUPFS;
	*resp = &r->base;
	return 0;
}

int vgpu_rpc_update_runtime_config(struct vgpu_daemon *d, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
				   struct vgpu_err *err)
{
	const Runtime__V1__UpdateRuntimeConfigRequest *req = (const Runtime__V1__UpdateRuntimeConfigRequest *)req_msg;
	const char *cidr = "";
	if (req->runtime_config && req->runtime_config->network_config && req->runtime_config->network_config->pod_cidr)
		cidr = req->runtime_config->network_config->pod_cidr;
	if (strlen(cidr) > 128)
		return vgpu_err_set(err, -EINVAL, "UpdateRuntimeConfig: pod_cidr longer than 128 bytes");
	for (const char *p = cidr; *p; p++)
		if (!strchr("0123456789abcdefABCDEF.:/,", *p))
			return vgpu_err_set(err, -EINVAL, "UpdateRuntimeConfig: pod_cidr '%s' is not a CIDR list", cidr);
	if (pthread_mutex_lock(&d->lock) != 0)
		abort();
	char *old = d->pod_cidr;
	d->pod_cidr = vgpu_strdup(cidr);
	pthread_mutex_unlock(&d->lock);
	if (!old || strcmp(old, cidr) != 0)
		vgpu_log(VGPU_LOG_INFO, "pod CIDR set to '%s'", cidr);
	free(old);
	Runtime__V1__UpdateRuntimeConfigResponse *r = vgpu_calloc(1, sizeof(*r));
	runtime__v1__update_runtime_config_response__init(r);
	*resp = &r->base;
	return 0;
}
