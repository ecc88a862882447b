/* xen_gpu.c: GPU pods on the xen handler, the container side. The shim in the container talks to
 * the broker in dom0 over pages it grants and an event channel (idm.h, Xen transport), so the
 * container needs the guest's Xen device nodes and VGPU_TRANSPORT=xen instead of a socket. The
 * device numbers are the guest kernel's (misc devices, major 10, minors given at load time), which
 * dom0 cannot know: the nodes are bind-mounted from the guest's /dev and the cgroup allows
 * character major 10. The pod is its own VM, so that rule opens nothing of dom0. */
#include "xen_gpu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *const xen_nodes[] = { "/dev/xen/evtchn", "/dev/xen/gntalloc", "/dev/xen/xenbus" };
#define XEN_MISC_MAJOR 10

int vgpu_xen_gpu_inject(struct vgpu_gpu *g, const char *sandbox_id, const char *rootfs, struct vgpu_oci_input *in,
			struct vgpu_xen_gpu_inject *out, struct vgpu_err *err)
{
	memset(out, 0, sizeof(*out));
	int r = vgpu_gpu_injection(g, sandbox_id, &out->inj, err);
	if (r < 0)
		return vgpu_err_prefix(err, "GPU pod %s", sandbox_id);
	if (!out->inj.xen) {
		vgpu_xen_gpu_inject_free(out);
		return vgpu_err_set(err, -EINVAL, "GPU pod %s: not registered as a xen pod", sandbox_id);
	}
	out->image_libcuda = vgpu_gpu_image_libcuda(rootfs);
	size_t n = 1;
	for (size_t i = 0; out->image_libcuda[i]; i++)
		n++;
	out->binds = vgpu_calloc(n, sizeof(*out->binds));
	out->binds[0] = (struct vgpu_oci_bind){ .source = out->inj.shim_path,
						.destination = VGPU_CONTAINER_SHIM_DIR "/libcuda.so.1" };
	for (size_t i = 0; out->image_libcuda[i]; i++)
		out->binds[1 + i] = (struct vgpu_oci_bind){ .source = out->inj.shim_path,
							    .destination = out->image_libcuda[i] };
	in->binds = out->binds;
	in->n_binds = n;
	in->env = out->inj.env;
	return 0;
}

void vgpu_xen_gpu_inject_free(struct vgpu_xen_gpu_inject *x)
{
	vgpu_gpu_injection_free(&x->inj);
	vgpu_strv_free(x->image_libcuda);
	free(x->binds);
	memset(x, 0, sizeof(*x));
}

int vgpu_xen_gpu_spec_devices(json_object *spec, struct vgpu_err *err)
{
	json_object *mounts, *lx, *res, *devs;
	if (!json_object_object_get_ex(spec, "mounts", &mounts) || !json_object_object_get_ex(spec, "linux", &lx) ||
	    !json_object_object_get_ex(lx, "resources", &res) || !json_object_object_get_ex(res, "devices", &devs))
		return vgpu_err_set(err, -EIO, "generated spec lacks mounts or linux.resources.devices");
	for (size_t i = 0; i < sizeof(xen_nodes) / sizeof(xen_nodes[0]); i++) {
		json_object *m = json_object_new_object(), *opts = json_object_new_array();
		json_object_object_add(m, "destination", json_object_new_string(xen_nodes[i]));
		json_object_object_add(m, "type", json_object_new_string("bind"));
		json_object_object_add(m, "source", json_object_new_string(xen_nodes[i]));
		json_object_array_add(opts, json_object_new_string("bind"));
		json_object_array_add(opts, json_object_new_string("rw"));
		json_object_array_add(opts, json_object_new_string("nosuid"));
		json_object_array_add(opts, json_object_new_string("noexec"));
		json_object_object_add(m, "options", opts);
		json_object_array_add(mounts, m);
	}
	json_object *rule = json_object_new_object();
	json_object_object_add(rule, "allow", json_object_new_boolean(1));
	json_object_object_add(rule, "type", json_object_new_string("c"));
	json_object_object_add(rule, "major", json_object_new_int64(XEN_MISC_MAJOR));
	json_object_object_add(rule, "access", json_object_new_string("rw"));
	json_object_array_add(devs, rule);
	return 0;
}
