/* Runtime-level RPCs of RuntimeService: Version, Status, RuntimeConfig, UpdateRuntimeConfig. */
#ifndef VGPU_RUNTIME_SERVICE_H
#define VGPU_RUNTIME_SERVICE_H

#include "config.h"
#include "rpc.h"

#define VGPU_RUNTIME_NAME "vgpu-cri"
#define VGPU_RUNTIME_API_VERSION "v1"

int vgpu_rpc_version(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
		     struct vgpu_err *err);
int vgpu_rpc_status(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
		    struct vgpu_err *err);
int vgpu_rpc_runtime_config(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
			    struct vgpu_err *err);
int vgpu_rpc_update_runtime_config(struct vgpu_daemon *d, const ProtobufCMessage *req, ProtobufCMessage **resp,
				   struct vgpu_err *err);

/* Whether cni_conf_dir holds a network config (*.conf, *.conflist, *.json); reason/message filled
 * when not (static strings / malloc'd message). */
bool vgpu_network_ready(const struct vgpu_config *cfg, char **message);

#endif
