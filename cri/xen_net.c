/* The pod network of xen pods (see xen_net.h): the pod's netns and CNI as for runc pods, the vif
 * moved into the netns and joined to CNI's eth0 by tc redirects (rtnetlink, no `ip`/`tc` tools), the
 * vif's hotplug-status written in xenstore, and the agent's NET_CONFIG from the CNI result. */
#include "xen_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>
#include <xenstore.h>

#include "cni_pod.h"
#include "log.h"
#include "util.h"

#define VIF_WAIT_MS 30000
#define NL_BUF 4096

/* ---- a few rtnetlink requests ---- */

struct nl_req {
	struct nlmsghdr *h;
	char buf[NL_BUF];
};

static void nl_init(struct nl_req *q, uint16_t type, uint16_t flags, const void *body, size_t body_len)
{
	memset(q->buf, 0, sizeof(q->buf));
	q->h = (struct nlmsghdr *)q->buf;
	q->h->nlmsg_len = NLMSG_LENGTH(body_len);
	q->h->nlmsg_type = type;
	q->h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	memcpy(NLMSG_DATA(q->h), body, body_len);
}

/* Append an attribute (the buffer is sized for the few small messages made here). */
static struct rtattr *nl_put(struct nl_req *q, uint16_t type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)(q->buf + NLMSG_ALIGN(q->h->nlmsg_len));
	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(a), data, len);
	q->h->nlmsg_len = NLMSG_ALIGN(q->h->nlmsg_len) + RTA_ALIGN(a->rta_len);
	return a;
}

static struct rtattr *nl_nest(struct nl_req *q, uint16_t type)
{
	return nl_put(q, type, NULL, 0);
}

static void nl_end(struct nl_req *q, struct rtattr *nest)
{
	nest->rta_len = (unsigned short)(q->buf + q->h->nlmsg_len - (char *)nest);
}

/* Send and wait for the kernel's ACK; -errno from it. */
static int nl_talk(int fd, struct nl_req *q)
{
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	static __thread uint32_t seq;
	q->h->nlmsg_seq = ++seq;
	if (sendto(fd, q->h, q->h->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
		return -errno;
	char reply[NL_BUF];
	for (;;) {
		ssize_t n = recv(fd, reply, sizeof(reply), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (struct nlmsghdr *h = (struct nlmsghdr *)reply; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != q->h->nlmsg_seq || h->nlmsg_type != NLMSG_ERROR)
				continue;
			const struct nlmsgerr *e = NLMSG_DATA(h);
			return e->error;
		}
	}
}

static int nl_open(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	struct timeval tv = { .tv_sec = 10 };
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Up, MTU (0: leave), or move to the namespace of netns_fd (>= 0). */
static int link_set(int fd, int ifindex, bool up, unsigned int mtu, int netns_fd)
{
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = ifindex };
	if (up) {
		ifi.ifi_flags = IFF_UP;
		ifi.ifi_change = IFF_UP;
	}
	struct nl_req q;
	nl_init(&q, RTM_NEWLINK, 0, &ifi, sizeof(ifi));
	if (mtu) {
		uint32_t v = mtu;
		nl_put(&q, IFLA_MTU, &v, sizeof(v));
	}
	if (netns_fd >= 0) {
		uint32_t v = (uint32_t)netns_fd;
		nl_put(&q, IFLA_NET_NS_FD, &v, sizeof(v));
	}
	return nl_talk(fd, &q);
}

static int ingress_qdisc_add(int fd, int ifindex)
{
	struct tcmsg t = { .tcm_family = AF_UNSPEC, .tcm_ifindex = ifindex, .tcm_handle = TC_H_MAKE(TC_H_INGRESS, 0),
			   .tcm_parent = TC_H_INGRESS };
	struct nl_req q;
	nl_init(&q, RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, &t, sizeof(t));
	nl_put(&q, TCA_KIND, "ingress", sizeof("ingress"));
	return nl_talk(fd, &q);
}

/* Every frame arriving on from leaves through to: matchall + mirred egress redirect. */
static int redirect_add(int fd, int from, int to)
{
	struct tcmsg t = { .tcm_family = AF_UNSPEC, .tcm_ifindex = from, .tcm_parent = TC_H_MAKE(TC_H_INGRESS, 0),
			   .tcm_info = TC_H_MAKE(1u << 16, htons(ETH_P_ALL)) };
	struct nl_req q;
	nl_init(&q, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, &t, sizeof(t));
	nl_put(&q, TCA_KIND, "matchall", sizeof("matchall"));
	struct rtattr *opts = nl_nest(&q, TCA_OPTIONS);
	struct rtattr *acts = nl_nest(&q, TCA_MATCHALL_ACT);
	struct rtattr *act = nl_nest(&q, 1); /* the first action */
	nl_put(&q, TCA_ACT_KIND, "mirred", sizeof("mirred"));
	struct rtattr *aopts = nl_nest(&q, TCA_ACT_OPTIONS);
	struct tc_mirred m = { .action = TC_ACT_STOLEN, .eaction = TCA_EGRESS_REDIR, .ifindex = (uint32_t)to };
	nl_put(&q, TCA_MIRRED_PARMS, &m, sizeof(m));
	nl_end(&q, aopts);
	nl_end(&q, act);
	nl_end(&q, acts);
	nl_end(&q, opts);
	return nl_talk(fd, &q);
}

/* ---- work inside the pod's netns (a short-lived thread: setns changes only the calling thread) ---- */

struct ns_job {
	const char *netns;
	int (*fn)(struct ns_job *job);
	int code;
	const char *what;
	/* inputs and outputs of the jobs below */
	const char *vif;
	char mac[18];
	unsigned int mtu;
};

static void *ns_thread(void *arg)
{
	struct ns_job *job = arg;
	int fd = open(job->netns, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		job->code = -errno;
		job->what = "enter the pod's netns";
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	close(fd);
	job->code = job->fn(job);
	return NULL;
}

static int in_netns(struct ns_job *job, struct vgpu_err *err)
{
	pthread_t t;
	int r = pthread_create(&t, NULL, ns_thread, job);
	if (r != 0)
		return vgpu_err_errno(err, r, "netns %s: thread", job->netns);
	pthread_join(t, NULL);
	if (job->code < 0)
		return vgpu_err_errno(err, job->code, "netns %s: %s", job->netns, job->what ? job->what : "");
	return 0;
}

/* eth0's MAC and MTU. */
static int read_eth0(struct ns_job *job)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	job->what = "read eth0's MAC and MTU";
	if (fd < 0)
		return -errno;
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "eth0");
	int r = ioctl(fd, SIOCGIFHWADDR, &ifr) < 0 ? -errno : 0;
	if (r == 0) {
		const unsigned char *a = (const unsigned char *)ifr.ifr_hwaddr.sa_data;
		snprintf(job->mac, sizeof(job->mac), "%02x:%02x:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3], a[4], a[5]);
		r = ioctl(fd, SIOCGIFMTU, &ifr) < 0 ? -errno : 0;
		job->mtu = r == 0 && ifr.ifr_mtu > 0 ? (unsigned int)ifr.ifr_mtu : 0;
	}
	close(fd);
	return r;
}

/* The vif (already moved in) up with eth0's MTU, and the redirects both ways. */
static int join_vif(struct ns_job *job)
{
	int fd = nl_open();
	job->what = "netlink socket";
	if (fd < 0)
		return fd;
	int vif = (int)if_nametoindex(job->vif), eth = (int)if_nametoindex("eth0"), r;
	job->what = "find eth0 and the vif";
	if (!vif || !eth) {
		close(fd);
		return -ENODEV;
	}
	if ((r = link_set(fd, vif, true, job->mtu, -1)) < 0)
		job->what = "vif up";
	else if ((r = ingress_qdisc_add(fd, eth)) < 0 && r != -EEXIST)
		job->what = "ingress qdisc on eth0 (kernel module sch_ingress)";
	else if ((r = ingress_qdisc_add(fd, vif)) < 0)
		job->what = "ingress qdisc on the vif (kernel module sch_ingress)";
	else if ((r = redirect_add(fd, eth, vif)) < 0)
		job->what = "redirect eth0 -> vif (kernel modules cls_matchall, act_mirred)";
	else if ((r = redirect_add(fd, vif, eth)) < 0)
		job->what = "redirect vif -> eth0";
	close(fd);
	return r;
}

/* ---- the pod's network ---- */

int vgpu_xen_net_setup(const struct vgpu_config *cfg, const char *id, const Runtime__V1__PodSandboxConfig *pod,
		       struct vgpu_xen_pod_net *net, struct vgpu_err *err)
{
	memset(net, 0, sizeof(*net));
	net->netns = vgpu_pod_netns_path(cfg, id);
	int r = vgpu_netns_create(net->netns, err);
	if (r == 0)
		r = vgpu_pod_network_add(cfg, id, pod, &net->result, err); /* removes the netns on failure */
	if (r == -ENETUNREACH) {
		vgpu_log(VGPU_LOG_WARN, "%s: pod gets loopback only", err ? err->msg : "network not ready");
		vgpu_err_clear(err);
		return 0;
	}
	if (r < 0)
		return r;
	struct ns_job job = { .netns = net->netns, .fn = read_eth0 };
	if ((r = in_netns(&job, err)) < 0) {
		struct vgpu_err derr = { 0 };
		if (vgpu_pod_network_teardown(cfg, id, &derr) < 0)
			vgpu_log(VGPU_LOG_WARN, "sandbox %s: %s", id, derr.msg);
		vgpu_err_prefix(err, "sandbox %s", id);
		return r;
	}
	snprintf(net->mac, sizeof(net->mac), "%s", job.mac);
	net->mtu = job.mtu;
	vgpu_xen_net_parse_routes(net, net->result.json);
	net->enabled = true;
	return 0;
}

static int hotplug_connected(uint32_t domid, struct vgpu_err *err)
{
	char path[128];
	snprintf(path, sizeof(path), "/local/domain/0/backend/vif/%u/0/hotplug-status", domid);
	struct xs_handle *xs = xs_open(0);
	if (!xs)
		return vgpu_err_errno(err, errno, "xenstore: open");
	bool ok = xs_write(xs, XBT_NULL, path, "connected", strlen("connected"));
	int e = errno;
	xs_close(xs);
	return ok ? 0 : vgpu_err_errno(err, e, "xenstore: write %s", path);
}

int vgpu_xen_net_attach(const struct vgpu_xen_pod_net *net, uint32_t domid, struct vgpu_err *err)
{
	char vif[IF_NAMESIZE];
	snprintf(vif, sizeof(vif), "vif%u.0", domid);
	/* netback makes the device when it sees the backend (before libxl's create returns) */
	long long deadline = vgpu_now_ns() + VIF_WAIT_MS * 1000000LL;
	int ifindex;
	while (!(ifindex = (int)if_nametoindex(vif))) {
		if (vgpu_now_ns() > deadline)
			return vgpu_err_set(err, -ENODEV, "domain %u: no %s in the driver domain after %d ms", domid, vif,
					    VIF_WAIT_MS);
		usleep(100 * 1000);
	}
	_cleanup_close_ int ns_fd = open(net->netns, O_RDONLY | O_CLOEXEC);
	if (ns_fd < 0)
		return vgpu_err_errno(err, errno, "open %s", net->netns);
	int fd = nl_open();
	if (fd < 0)
		return vgpu_err_errno(err, fd, "netlink socket");
	int r = link_set(fd, ifindex, false, 0, ns_fd);
	close(fd);
	if (r < 0)
		return vgpu_err_errno(err, r, "domain %u: move %s into %s", domid, vif, net->netns);
	struct ns_job job = { .netns = net->netns, .fn = join_vif, .vif = vif, .mtu = net->mtu };
	if ((r = in_netns(&job, err)) < 0) {
		vgpu_err_prefix(err, "domain %u: %s", domid, vif);
		return r;
	}
	return hotplug_connected(domid, err);
}

int vgpu_xen_net_agent_config(const struct vgpu_xen_pod_net *net, const char *resolv_conf,
			      struct agent_net_config *nc, struct vgpu_err *err)
{
	memset(nc, 0, sizeof(*nc));
	nc->mac = (char *)net->mac;
	nc->mtu = net->mtu;
	nc->resolv_conf = (char *)(resolv_conf ? resolv_conf : "");
	const char *gw4 = "", *gw6 = "";
	for (size_t i = 0; i < net->result.n_ips && nc->n_addrs < AGENT_MAX_NET_ITEMS; i++) {
		const struct vgpu_cni_ip *ip = &net->result.ips[i];
		/* only the pod's own interface's addresses (plugins may list host-side ones) */
		if (ip->interface >= 0 && (size_t)ip->interface < net->result.n_interfaces &&
		    !net->result.interfaces[ip->interface].sandbox[0])
			continue;
		if (!agent_net_addr_ok(ip->address, 1))
			continue;
		nc->addrs[nc->n_addrs++] = ip->address;
		if (ip->gateway[0] && !*(ip->ipv6 ? gw6 : gw4))
			*(ip->ipv6 ? &gw6 : &gw4) = ip->gateway;
	}
	if (nc->n_addrs == 0)
		return vgpu_err_set(err, -EINVAL, "CNI network %s gave the pod no address", net->result.network);
	/* the result's routes, their gateway defaulting to the address's (CNI spec); without any,
	 * a default route through the gateway */
	for (size_t i = 0; i < net->n_routes; i++) {
		const char *d = net->route_dst[i], *g = net->route_gw[i];
		if (!g[0])
			g = strchr(d, ':') ? gw6 : gw4;
		nc->routes[nc->n_routes].dst = (char *)d;
		nc->routes[nc->n_routes++].gw = (char *)g;
	}
	if (nc->n_routes == 0 && gw4[0]) {
		nc->routes[0].dst = "0.0.0.0/0";
		nc->routes[0].gw = (char *)gw4;
		nc->n_routes = 1;
	}
	return 0;
}

void vgpu_xen_net_parse_routes(struct vgpu_xen_pod_net *net, const char *result_json)
{
	json_object *res = result_json ? json_tokener_parse(result_json) : NULL, *routes = NULL;
	if (res && json_object_object_get_ex(res, "routes", &routes) && json_object_is_type(routes, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(routes); i++) {
			json_object *rt = json_object_array_get_idx(routes, i), *dst = NULL, *gw = NULL;
			const char *d = json_object_object_get_ex(rt, "dst", &dst) && json_object_is_type(dst, json_type_string)
						? json_object_get_string(dst)
						: "";
			const char *g = json_object_object_get_ex(rt, "gw", &gw) && json_object_is_type(gw, json_type_string)
						? json_object_get_string(gw)
						: "";
			if (!agent_net_addr_ok(d, 1) || (g[0] && !agent_net_addr_ok(g, 0)) ||
			    net->n_routes == AGENT_MAX_NET_ITEMS) {
				vgpu_log(VGPU_LOG_WARN, "CNI route %zu (%.64s via %.64s) not passed to the guest", i, d, g);
				continue;
			}
			net->route_dst[net->n_routes] = vgpu_strdup(d);
			net->route_gw[net->n_routes++] = vgpu_strdup(g);
		}
	}
	json_object_put(res);
}

void vgpu_xen_net_free(struct vgpu_xen_pod_net *net)
{
	for (size_t i = 0; i < net->n_routes; i++) {
		free(net->route_dst[i]);
		free(net->route_gw[i]);
	}
	free(net->netns);
	vgpu_cni_result_free(&net->result);
	memset(net, 0, sizeof(*net));
}
