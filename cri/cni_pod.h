/* Pod networking of the runc handler on top of cni.h: what RunPodSandbox, StopPodSandbox,
 * RemovePodSandbox and PodSandboxStatus call. The pod's network namespace (made by its infra
 * process) is pinned at <run_dir>/netns/<sandbox id> so that it outlives the infra process until
 * DEL has run inside it; everything DEL needs comes from the CNI cache, so teardown needs only the
 * id. hostNetwork pods skip all of this (the caller checks). */
#ifndef VGPU_CNI_POD_H
#define VGPU_CNI_POD_H

#include <sys/types.h>

#include "cni.h"
#include "config.h"
#include "cri-api.pb-c.h"
#include "err.h"

/* The pinned netns path of a pod: <run_dir>/netns/<id> (malloc'd). */
char *vgpu_pod_netns_path(const struct vgpu_config *cfg, const char *id);

/* RunPodSandbox, once infra_pid holds the pod's network namespace: pin it and ADD the pod with
 * its port mappings, DNS config and kubernetes.io/{ingress,egress}-bandwidth annotations. On
 * failure nothing is left behind (CNI rolled back, netns unpinned) and err carries the plugin's
 * message. out may be NULL; else the caller frees it with vgpu_cni_result_free. */
int vgpu_pod_network_setup(const struct vgpu_config *cfg, const char *id, pid_t infra_pid,
			   const Runtime__V1__PodSandboxConfig *pod, struct vgpu_cni_result *out,
			   struct vgpu_err *err);

/* The same for a namespace already pinned at vgpu_pod_netns_path (the xen handler makes one with
 * vgpu_netns_create, no process in it): ADD only; on failure the netns is removed too. */
int vgpu_pod_network_add(const struct vgpu_config *cfg, const char *id, const Runtime__V1__PodSandboxConfig *pod,
			 struct vgpu_cni_result *out, struct vgpu_err *err);

/* StopPodSandbox, RemovePodSandbox, clean-up of an interrupted RunPodSandbox: DEL and unpin.
 * Idempotent and cheap when there is nothing (hostNetwork pod, already torn down). When DEL
 * fails the netns stays pinned, so a retry still runs DEL inside it. */
int vgpu_pod_network_teardown(const struct vgpu_config *cfg, const char *id, struct vgpu_err *err);

/* PodSandboxStatus: the pod's addresses from the CNI cache: *ip the primary one ("" if none),
 * *additional the others (NULL-terminated, possibly empty). Both malloc'd. */
void vgpu_pod_network_ips(const struct vgpu_config *cfg, const char *id, char **ip, char ***additional);

/* PodSandboxStatus: fill st->ip and st->additional_ips from vgpu_pod_network_ips (st->ip is
 * replaced). Reads a small file: call it without holding locks others wait on. */
void vgpu_pod_network_status(const struct vgpu_config *cfg, const char *id, Runtime__V1__PodSandboxNetworkStatus *st);

/* A Kubernetes bandwidth quantity ("10M", "1Gi", "500k", "100") in bits per second; -EINVAL for
 * anything else. */
int vgpu_parse_bandwidth(const char *text, uint64_t *bits_per_s);

#endif
