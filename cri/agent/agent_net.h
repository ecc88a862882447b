/* The pod network inside the guest (vgpu-agent, NET_CONFIG): the interface the daemon joined to the
 * pod's network namespace in the driver domain gets the pod's addresses, routes and MTU. */
#ifndef VGPU_AGENT_NET_H
#define VGPU_AGENT_NET_H

#include "agent_proto.h"

#define AGENT_NET_MSG_MAX 512
#define AGENT_NET_IFNAME_MAX 16

struct agent_net_env {
	const char *sys_net;      /* "/sys/class/net" */
	const char *resolv_conf;  /* "/etc/resolv.conf"; NULL: never written */
};

/* Wait for the interface with nc->mac (its name into ifname), then configure it; 0 or -errno with
 * msg saying what failed. */
int agent_net_configure(const struct agent_net_env *env, const struct agent_net_config *nc, char *ifname,
			char *msg);
/* Bring the guest's "lo" up (the kernel leaves it down); 0 or -errno. */
int agent_net_loopback_up(void);

#endif
