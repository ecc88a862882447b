/* Pod networking through CNI plugins (spec 1.0.0; 0.3.x/0.4.0 configs and results accepted): the
 * network config list from cni.conf_dir (first file by name, reloaded when the directory changes),
 * plugins from cni.bin_dirs, ADD/DEL of a pod's network namespace, and the named network namespaces
 * that hold a pod's network while its infra process comes and goes. See docs/networking.md.
 *
 * What DEL needs (the config list used, the runtime config, the ADD result) is saved atomically in
 * state_dir/cni/<sandbox id>.json before the first plugin runs, so DEL works after a daemon restart
 * or a config change, and a crash in the middle of ADD is cleaned up by the next DEL. */
#ifndef VGPU_CNI_H
#define VGPU_CNI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "err.h"

struct vgpu_cni;

struct vgpu_cni_port_mapping {
	int32_t container_port;
	int32_t host_port;    /* <= 0: not a host port, not passed to plugins */
	const char *protocol; /* "tcp", "udp", "sctp" (any case); NULL = tcp */
	const char *host_ip;  /* NULL or "" = all addresses */
};

/* Traffic shaping as the bandwidth plugin takes it: rates in bits per second, bursts in bits;
 * 0 = not limited. */
struct vgpu_cni_bandwidth {
	uint64_t ingress_rate, ingress_burst;
	uint64_t egress_rate, egress_burst;
};

/* What ADD/DEL know about a pod. All strings are borrowed for the call. */
struct vgpu_cni_pod {
	const char *id;        /* sandbox id: CNI_CONTAINERID and K8S_POD_INFRA_CONTAINER_ID */
	const char *netns;     /* CNI_NETNS (e.g. from vgpu_netns_create) */
	const char *ifname;    /* NULL = "eth0" */
	const char *namespace_, *name, *uid; /* K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID */
	const struct vgpu_cni_port_mapping *ports;
	size_t n_ports;
	const struct vgpu_cni_bandwidth *bandwidth; /* NULL = none */
	const char *const *dns_servers, *const *dns_searches, *const *dns_options; /* NULL-terminated or NULL */
};

struct vgpu_cni_interface {
	char *name;
	char *mac;     /* "" when the plugin gave none */
	char *sandbox; /* netns path, "" for host-side interfaces */
};

struct vgpu_cni_ip {
	char *address;   /* CIDR as the plugin gave it: "10.88.0.5/16" */
	char *ip;        /* the address alone: "10.88.0.5" */
	char *gateway;   /* "" when none */
	int interface;   /* index into interfaces, -1 when not given */
	bool ipv6;
};

/* A parsed CNI result (every string owned; free with vgpu_cni_result_free). */
struct vgpu_cni_result {
	char *network;     /* the network list's name */
	char *cni_version;
	struct vgpu_cni_interface *interfaces;
	size_t n_interfaces;
	struct vgpu_cni_ip *ips;
	size_t n_ips;
	char *json;        /* the final plugin's result as it printed it */
};

/* Open CNI for the daemon: copies cfg's cni_conf_dir, cni_bin_dirs and state_dir (cache in
 * state_dir/cni, made on first ADD). A missing or empty config dir is not an error here (it is
 * "not ready"). The handle is thread-safe; free with vgpu_cni_close. */
int vgpu_cni_open(const struct vgpu_config *cfg, struct vgpu_cni **out, struct vgpu_err *err);
void vgpu_cni_close(struct vgpu_cni *cni);

/* Whether a usable network config list exists (it parses, every plugin it names is found in the
 * bin dirs). On false, *message (malloc'd, caller frees) says why, for Status' NetworkReady
 * condition; on true *message is NULL. message may be NULL. */
bool vgpu_cni_ready(struct vgpu_cni *cni, char **message);

/* The same for a config without an open handle (Status can use it as is). */
bool vgpu_cni_config_ready(const struct vgpu_config *cfg, char **message);

/* Name of the network list in use ("" when none); malloc'd. */
char *vgpu_cni_network_name(struct vgpu_cni *cni);

/* ADD the pod to the network: every plugin of the list in order, results chained. On failure
 * every plugin that ran is deleted again (reverse order) and err carries the plugin's msg and
 * details; nothing is left behind unless that DEL failed too (then the cache stays, and
 * vgpu_cni_del retries). out may be NULL; on success the caller frees it with
 * vgpu_cni_result_free. */
int vgpu_cni_add(struct vgpu_cni *cni, const struct vgpu_cni_pod *pod, struct vgpu_cni_result *out,
		 struct vgpu_err *err);

/* DEL the pod (reverse order) with what ADD used, as saved in the cache; without a cache entry,
 * with the current config list and pod's runtime config. Idempotent: a pod never added, or
 * already deleted, returns 0. A netns path that no longer exists is passed as an empty CNI_NETNS
 * (plugins then release what lives outside it: IPAM leases, host rules). The cache entry is
 * removed only when every plugin's DEL succeeded. pod->netns may be NULL (the cached one is used). */
int vgpu_cni_del(struct vgpu_cni *cni, const struct vgpu_cni_pod *pod, struct vgpu_err *err);

/* The cached ADD result of a pod (for PodSandboxStatus after a restart): -ENOENT when none. */
int vgpu_cni_cached_result(struct vgpu_cni *cni, const char *id, struct vgpu_cni_result *out, struct vgpu_err *err);

/* First IPv4 address of a result (else first IP), "" when none; borrowed from r. */
const char *vgpu_cni_result_primary_ip(const struct vgpu_cni_result *r);
void vgpu_cni_result_free(struct vgpu_cni_result *r);

/* Named network namespaces (cni_netns.c). A file at path with a network namespace bind-mounted on
 * it keeps the namespace alive without any process in it, so DEL can still enter it after the
 * pod's infra process died.
 *   create: a new namespace with loopback up (made in a short-lived thread, so no other thread of
 *           the daemon changes namespace); -EEXIST if path already holds one.
 *   pin:    bind the namespace of process pid (e.g. the pod's infra process) on path.
 *   remove: unmount and unlink; idempotent (a missing path is success).
 *   exists: path holds a network namespace mount. */
int vgpu_netns_create(const char *path, struct vgpu_err *err);
int vgpu_netns_pin(pid_t pid, const char *path, struct vgpu_err *err);
int vgpu_netns_remove(const char *path, struct vgpu_err *err);
bool vgpu_netns_exists(const char *path);

#endif
