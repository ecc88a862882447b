/* The pod network of `xen` pods (internal to cri/). CNI runs in the driver domain exactly as for a
 * runc pod, for a network namespace the daemon makes and pins (<run_dir>/netns/<id>): the plugins'
 * eth0 in it gets the pod's IP. The domain gets one vif whose backend (vif<domid>.0) no bridge script
 * touches: the daemon moves it into the pod's netns and joins it to eth0 with tc (an ingress qdisc
 * on each and a matchall filter redirecting every frame to the other, as VM runtimes do), and the
 * guest's interface has eth0's MAC, so what the CNI network sends to the pod's MAC reaches the
 * guest and the guest's replies leave through eth0. vgpu-agent puts the CNI result's addresses and
 * routes on the guest's interface (NET_CONFIG). Teardown is the runc pods' (CNI DEL, netns removed):
 * the vif goes with the domain, the tc state with the interfaces. */
#ifndef VGPU_XEN_NET_H
#define VGPU_XEN_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/agent_proto.h"
#include "cni.h"
#include "config.h"
#include "cri-api.pb-c.h"
#include "err.h"

/* The no-op hotplug script the pod's vif is created with: the daemon does the attaching and then
 * writes hotplug-status itself (netback waits for it before it connects). */
#define VGPU_XEN_VIF_SCRIPT "/bin/true"

struct vgpu_xen_pod_net {
	bool enabled;                   /* false: loopback only (no CNI config, or host network) */
	char mac[18];                   /* eth0's in the pod netns: the guest interface's MAC */
	unsigned int mtu;
	char *netns;                    /* <run_dir>/netns/<id> */
	struct vgpu_cni_result result;  /* CNI ADD's */
	char *route_dst[AGENT_MAX_NET_ITEMS], *route_gw[AGENT_MAX_NET_ITEMS]; /* from result.json; gw may be "" */
	size_t n_routes;
};

/* The routes of a CNI result's JSON into net (those the agent can take; others are skipped with a
 * warning). Pure; exposed for the unit test. */
void vgpu_xen_net_parse_routes(struct vgpu_xen_pod_net *net, const char *result_json);

/* Before the domain exists: the pod's netns, CNI ADD, eth0's MAC and MTU. No usable CNI config:
 * net->enabled stays false (a warning, as for runc pods). On failure nothing is left. */
int vgpu_xen_net_setup(const struct vgpu_config *cfg, const char *id, const Runtime__V1__PodSandboxConfig *pod,
		       struct vgpu_xen_pod_net *net, struct vgpu_err *err);

/* After the domain is created: vif<domid>.0 into the netns, up, eth0's MTU, the tc redirects both
 * ways, then hotplug-status "connected" in the vif's backend xenstore directory. */
int vgpu_xen_net_attach(const struct vgpu_xen_pod_net *net, uint32_t domid, struct vgpu_err *err);

/* NET_CONFIG for the agent from the CNI result (borrowed pointers into net and resolv_conf; valid
 * while they are). -EINVAL when the result has no address the guest can take. Pure. */
int vgpu_xen_net_agent_config(const struct vgpu_xen_pod_net *net, const char *resolv_conf,
			      struct agent_net_config *nc, struct vgpu_err *err);

void vgpu_xen_net_free(struct vgpu_xen_pod_net *net);

#endif
