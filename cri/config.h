/* Daemon configuration: /etc/vgpu-cri/config.yaml parsed with libyaml into a typed struct. The
 * schema (keys, types, limits, defaults, documentation) is one table in config.c; adding a setting
 * means adding a field here and one row there. Unknown keys and wrong types are errors that name
 * file:line:column and the key. */
#ifndef VGPU_CONFIG_H
#define VGPU_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "err.h"

#define VGPU_DEFAULT_CONFIG_PATH "/etc/vgpu-cri/config.yaml"
#define VGPU_MAX_HANDLERS 8

/* One CRI runtime handler (what a RuntimeClass's `handler` names). */
struct vgpu_handler_config {
	char *name;          /* map key in runtime_handlers */
	char *type;          /* "runc" or "xen" */
	char *runtime_path;  /* OCI runtime binary (runc handler; runc inside the guest for xen) */
	char *runtime_root;  /* --root for the OCI runtime's state */
	/* xen handler */
	char *guest_kernel;
	char *guest_initrd;
	long long guest_memory_mb;
	long long guest_vcpus;
	char *guest_cmdline;
	long long agent_timeout_s;   /* RunPodSandbox: wait for the agent's HELLO */
	/* GPU defaults for pods of this handler (annotations override) */
	char *gpu_memory_default;  /* e.g. "4Gi"; empty = no quota beyond the card */
	long long gpu_compute_default; /* percent 1..100 */
	long long pids_limit;        /* pids cgroup limit of each container; 0 = none */
};

struct vgpu_config {
	char *path;            /* file it was loaded from, or "(defaults)" */
	char *socket_path;
	char *state_dir;
	char *run_dir;         /* volatile state (sockets, bundles) */
	char *log_level;
	long long grpc_workers;       /* threads serving lifecycle/pull RPCs */
	long long grpc_fast_workers;  /* threads reserved for quick RPCs (Version, Status, lists) */
	long long shutdown_timeout_s; /* bound on in-flight calls after SIGTERM */
	char *cgroup_driver;          /* "cgroupfs" or "systemd" */
	char *default_runtime_handler;

	/* images */
	char **insecure_registries;   /* NULL-terminated; hosts[:port] pulled over plain HTTP */
	long long max_concurrent_downloads;

	/* networking */
	char *cni_conf_dir;
	char **cni_bin_dirs;

	/* streaming server (Exec/Attach/PortForward) */
	char *streaming_address;

	/* GPU broker */
	char *gpu_backend;            /* "auto", "cuda", "soft" (software test device), "none" */
	long long gpu_broker_workers;
	char *gpu_pod_processes;      /* "auto" (cuda: on, soft: off), "on", "off" */
	char *gpu_shim_path;          /* libvgpu.so on the host, bind-mounted into GPU containers */
	char *metrics_address;        /* Prometheus /metrics, "" = off */

	size_t n_handlers;
	struct vgpu_handler_config handlers[VGPU_MAX_HANDLERS];
};

/* Fill cfg with the documented defaults. */
void vgpu_config_defaults(struct vgpu_config *cfg);

/* Load path over the defaults. A missing file is an error unless missing_ok (then defaults).
 * Errors: -EINVAL with "file:line:column: key: message". */
int vgpu_config_load(struct vgpu_config *cfg, const char *path, bool missing_ok, struct vgpu_err *err);

/* Parse YAML text (name is used in messages) over the defaults already in cfg. */
int vgpu_config_parse(struct vgpu_config *cfg, const char *name, const char *text, size_t len,
		      struct vgpu_err *err);

/* Look up a handler by name; NULL if none. */
const struct vgpu_handler_config *vgpu_config_handler(const struct vgpu_config *cfg, const char *name);

/* Print a complete, commented YAML config with the values in cfg (defaults for --print-default-config). */
void vgpu_config_print(const struct vgpu_config *cfg, FILE *out);

/* The config as a JSON object (for Status verbose); malloc'd. */
char *vgpu_config_to_json(const struct vgpu_config *cfg);

void vgpu_config_free(struct vgpu_config *cfg);

#endif
