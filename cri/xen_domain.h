/* Xen domUs for the `xen` runtime handler, through libxenlight's C API (never by running `xl`).
 * xen_config.c turns a small spec (name, memory, vCPUs, kernel, initrd, cmdline, disks, vifs) into a
 * libxl_domain_config without touching Xen, so it is unit-tested anywhere; xen_domain.c creates,
 * lists, finds and destroys domains on a host running Xen (dom0 or a driver domain). */
#ifndef VGPU_XEN_DOMAIN_H
#define VGPU_XEN_DOMAIN_H

#define LIBXL_API_VERSION 0x041400

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libxl.h>

#include "config.h"
#include "err.h"

#define VGPU_XEN_NAME_MAX 63            /* domain names: [A-Za-z0-9_.-], 1..63 chars */
#define VGPU_XEN_MIN_MEMORY_MB 32ULL
#define VGPU_XEN_MAX_MEMORY_MB (1ULL << 20)
#define VGPU_XEN_MAX_VCPUS 128U
#define VGPU_XEN_MAX_DISKS 26
#define VGPU_XEN_MAX_VIFS 8
/* Where xenconsoled --log=guest writes each guest's console (guest-<name>.log). */
#define VGPU_XEN_CONSOLED_LOG_DIR "/var/log/xen/console"

enum vgpu_xen_guest_type {
	VGPU_XEN_GUEST_PV = 0,  /* works everywhere Xen runs, also nested under QEMU TCG */
	VGPU_XEN_GUEST_PVH,     /* needs HAP (VT-x/EPT or AMD-V/NPT) on the host */
};

struct vgpu_xen_disk {
	const char *path;  /* in the driver domain: a block device or a raw image file */
	const char *vdev;  /* in the guest: xvda, xvdb, ... */
	bool writable;
};

struct vgpu_xen_vif {
	const char *bridge;  /* NULL: libxl's default (xenbr0) */
	const char *mac;     /* "00:16:3e:12:34:56"; NULL: libxl picks a random 00:16:3e:... */
	const char *script;  /* hotplug script; NULL: libxl's default (vif-bridge) */
};

/* What a domU is made of. All pointers are borrowed: the caller keeps them valid during the call
 * that takes the spec; nothing in here is freed by vgpu_xen_*. */
struct vgpu_xen_domain_spec {
	const char *name;
	enum vgpu_xen_guest_type type;
	unsigned long long memory_mb;
	unsigned int vcpus;
	const char *kernel;   /* absolute path in the driver domain (ELF, gzipped ELF or bzImage) */
	const char *initrd;   /* absolute path or NULL */
	const char *cmdline;  /* guest kernel command line or NULL */
	const struct vgpu_xen_disk *disks;
	size_t n_disks;
	const struct vgpu_xen_vif *vifs;
	size_t n_vifs;
	/* If set, after create this path is a symlink to the guest's console log that xenconsoled
	 * writes (<consoled_log_dir>/guest-<name>.log), so each pod has its own console log that
	 * outlives the daemon process and the domain. */
	const char *console_log;
};

/* Fill spec from a `xen` handler's config (kernel, initrd, memory, vCPUs); name and the rest are
 * left to the caller. Borrowed pointers into handler. */
void vgpu_xen_spec_from_handler(struct vgpu_xen_domain_spec *spec, const struct vgpu_handler_config *handler);

/* Pod domains are named "vgpu-<first 12 hex of the sandbox id>-<pod name>" (the pod name reduced
 * to [A-Za-z0-9_.-] and cut to fit 63 characters): readable in `xl list`, and the prefix alone
 * finds a pod's domain after a daemon restart or an interrupted RunPodSandbox. */
#define VGPU_XEN_POD_PREFIX "vgpu-"
#define VGPU_XEN_POD_ID_CHARS 12
/* Memory the guest kernel and agent need on top of the pod's memory limit. */
#define VGPU_XEN_GUEST_OVERHEAD_MB 64ULL
void vgpu_xen_pod_domain_name(char out[VGPU_XEN_NAME_MAX + 1], const char *sandbox_id, const char *pod_name);
/* Whether a domain name has the pod form; if so, the id prefix it carries. */
bool vgpu_xen_pod_domain_match(const char *domain_name, char id_prefix[VGPU_XEN_POD_ID_CHARS + 1]);
/* Size a pod's domain from its linux resources: memory = limit (rounded up to MiB) + overhead,
 * vCPUs = ceil(quota / period); values <= 0 keep what spec has (the handler's defaults). */
void vgpu_xen_pod_size(struct vgpu_xen_domain_spec *spec, long long memory_limit_bytes, long long cpu_quota,
		       long long cpu_period);

/* Check a spec: -EINVAL with a message that names the field. */
int vgpu_xen_spec_validate(const struct vgpu_xen_domain_spec *spec, struct vgpu_err *err);

/* Build the libxl config for spec into *out (initialised here, also on error). The caller always
 * disposes it with libxl_domain_config_dispose(). Needs no Xen and no libxl_ctx. */
int vgpu_xen_config_build(const struct vgpu_xen_domain_spec *spec, libxl_domain_config *out,
			  struct vgpu_err *err);

/* Map a libxl error code (ERROR_*) to a negative errno-style code of our convention. */
int vgpu_xen_errno(int libxl_rc);

/* xenconsoled's console log for a domain name: "<dir>/guest-<name>.log", malloc'd. */
char *vgpu_xen_consoled_log_path(const char *dir, const char *name);

enum vgpu_xen_domain_state {
	VGPU_XEN_STATE_RUNNING = 0,  /* running or blocked (idle guest) */
	VGPU_XEN_STATE_PAUSED,
	VGPU_XEN_STATE_SHUTDOWN,     /* guest shut down (poweroff, crash, ...), still allocated */
	VGPU_XEN_STATE_DYING,        /* being torn down by Xen */
};

struct vgpu_xen_domain_info {
	uint32_t domid;
	char name[VGPU_XEN_NAME_MAX + 1];
	enum vgpu_xen_domain_state state;
	int shutdown_reason;  /* libxl_shutdown_reason when state is SHUTDOWN, else -1 */
	uint64_t memory_kb;
	unsigned int vcpus_online;
	uint64_t cpu_time_ns;
};

const char *vgpu_xen_state_name(enum vgpu_xen_domain_state state);
/* Fill info (except the name) from libxl's dominfo: pure, unit-tested. */
void vgpu_xen_info_from_dominfo(struct vgpu_xen_domain_info *info, const libxl_dominfo *dominfo);

/* ---- lifecycle on a Xen host (xen_domain.c) ---- */

/* A libxl context plus our logger. libxl contexts are thread-safe: one per daemon. */
struct vgpu_xen;

/* consoled_log_dir: where xenconsoled writes guest logs (NULL: VGPU_XEN_CONSOLED_LOG_DIR).
 * Fails with -ENODEV when this is not a Xen control domain (no privcmd/xenstore). */
int vgpu_xen_open(struct vgpu_xen **out, const char *consoled_log_dir, struct vgpu_err *err);
void vgpu_xen_close(struct vgpu_xen *xen);

/* Create and unpause a domU. -EEXIST if a domain of that name exists. On failure libxl has
 * already torn down whatever it had built. */
int vgpu_xen_domain_create(struct vgpu_xen *xen, const struct vgpu_xen_domain_spec *spec, uint32_t *domid_out,
			   struct vgpu_err *err);

/* Destroy a domain and its devices (backends, xenstore paths). -ENOENT if it does not exist. */
int vgpu_xen_domain_destroy(struct vgpu_xen *xen, uint32_t domid, struct vgpu_err *err);

/* All domains (dom0 included), malloc'd array in *out (caller frees). */
int vgpu_xen_domain_list(struct vgpu_xen *xen, struct vgpu_xen_domain_info **out, size_t *n_out,
			 struct vgpu_err *err);

/* Hot-add a disk (blkback, physical device: a block device such as a loop device) to a running
 * domain; synchronous, the `block` hotplug script included. */
int vgpu_xen_disk_add(struct vgpu_xen *xen, uint32_t domid, const struct vgpu_xen_disk *disk, struct vgpu_err *err);
/* Remove the disk at vdev (the guest must have let go of it); -ENOENT if there is none. */
int vgpu_xen_disk_remove(struct vgpu_xen *xen, uint32_t domid, const char *vdev, struct vgpu_err *err);

/* Find a domain by name: 0 and *out filled, or -ENOENT. */
int vgpu_xen_domain_find(struct vgpu_xen *xen, const char *name, struct vgpu_xen_domain_info *out,
			 struct vgpu_err *err);

#endif
