/* xen_gpu.h: what a container of a GPU pod on the xen handler gets in its OCI spec (the guest's
 * shim as libcuda.so.1, the Xen transport's device nodes, the env selecting it). */
#ifndef VGPU_XEN_GPU_H
#define VGPU_XEN_GPU_H

#include <json-c/json.h>

#include "err.h"
#include "gpu.h"
#include "oci_spec.h"

/* Fills in->binds/n_binds/env for the container of sandbox_id (its image rootfs in dom0 at rootfs:
 * the shim also goes over the image's own libcuda.so.1). Everything allocated lands in *inj and
 * *binds; free with vgpu_xen_gpu_inject_free. */
struct vgpu_xen_gpu_inject {
	struct vgpu_gpu_injection inj;
	char **image_libcuda;
	struct vgpu_oci_bind *binds;
};
int vgpu_xen_gpu_inject(struct vgpu_gpu *g, const char *sandbox_id, const char *rootfs, struct vgpu_oci_input *in,
			struct vgpu_xen_gpu_inject *out, struct vgpu_err *err);
void vgpu_xen_gpu_inject_free(struct vgpu_xen_gpu_inject *x);
/* Adds to a generated spec the guest's /dev/xen/{evtchn,gntalloc,xenbus} (bind mounts of the
 * guest's nodes) and the cgroup rule that lets the container open them. */
int vgpu_xen_gpu_spec_devices(json_object *spec, struct vgpu_err *err);

#endif
