/* The pod network inside the guest (NET_CONFIG, agent_proto.h): the daemon has run CNI for the pod
 * in the driver domain and joined the domain's vif to the pod's interface there; here the guest's
 * interface (found by the MAC the daemon gave the vif) gets the pod's addresses, routes and MTU,
 * through busybox `ip` (the values are checked by the decoder: plain addresses, never options). */
#include "agent_net.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent_ctr.h"
#include "agent_shepherd.h"

#define IFACE_WAIT_MS 30000  /* netfront's device appears once the backend is connected */

#define fail(msg, code, ...) agent_fail(msg, AGENT_NET_MSG_MAX, code, __VA_ARGS__)

/* The interface whose address is mac, into name (IFNAMSIZ); -ENOENT if none. */
static int iface_by_mac(const char *sys_net, const char *mac, char *name, size_t name_len)
{
	DIR *d = opendir(sys_net);
	struct dirent *e;
	int rc = -ENOENT;

	if (!d)
		return -errno;
	while (rc < 0 && (e = readdir(d))) {
		char path[512], text[64] = "";
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s/address", sys_net, e->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, text, sizeof(text) - 1);
		close(fd);
		if (n < 17)
			continue;
		text[17] = '\0';
		if (strcasecmp(text, mac) == 0) {
			snprintf(name, name_len, "%s", e->d_name);
			rc = 0;
		}
	}
	closedir(d);
	return rc;
}

/* Run `ip ARGS...`; on failure msg says which command and what ip printed. */
static int run_ip(char *msg, char *const *args)
{
	char *argv[16] = { "ip" };
	size_t n = 1;
	struct agent_buf out = { 0 }, err = { 0 };
	int32_t code = 0;

	for (size_t i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	int rc = agent_run(argv, 20000, &code, &out, &err);
	if (rc == 0 && code != 0) {
		size_t len = err.len > 200 ? 200 : err.len;
		while (len && err.data[len - 1] == '\n')
			len--;
		rc = fail(msg, -EIO, "ip %s %s: exit %d: %.*s", args[0], args[1] ? args[1] : "", code, (int)len,
			  err.data ? (const char *)err.data : "");
	} else if (rc < 0) {
		rc = fail(msg, rc, "ip: %s", strerror(-rc));
	}
	agent_buf_free(&out);
	agent_buf_free(&err);
	return rc;
}

static int write_resolv(const char *path, const char *text, char *msg)
{
	char tmp[600];
	size_t len = strlen(text);

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return fail(msg, -errno, "open %s: %s", tmp, strerror(errno));
	ssize_t n = write(fd, text, len);
	close(fd);
	if (n != (ssize_t)len || rename(tmp, path) < 0) {
		unlink(tmp);
		return fail(msg, -EIO, "write %s", path);
	}
	return 0;
}

int agent_net_loopback_up(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
	if (rc == 0 && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
	}
	rc = rc < 0 ? -errno : 0;
	close(fd);
	return rc;
}

int agent_net_configure(const struct agent_net_env *env, const struct agent_net_config *nc, char *ifname,
			char *msg)
{
	char mtu[16];
	double deadline = agent_ctr_mono_s() + IFACE_WAIT_MS / 1000.0;
	int rc;

	while ((rc = iface_by_mac(env->sys_net, nc->mac, ifname, AGENT_NET_IFNAME_MAX)) < 0) {
		if (agent_ctr_mono_s() > deadline)
			return fail(msg, -ENODEV, "no interface with MAC %s after %d ms", nc->mac, IFACE_WAIT_MS);
		usleep(100 * 1000);
	}
	char *lo_up[] = { "link", "set", "dev", "lo", "up", NULL };
	(void)run_ip(msg, lo_up);
	if (nc->mtu) {
		snprintf(mtu, sizeof(mtu), "%u", nc->mtu);
		char *set_mtu[] = { "link", "set", "dev", ifname, "mtu", mtu, NULL };
		if ((rc = run_ip(msg, set_mtu)) < 0)
			return rc;
	}
	/* a repeated NET_CONFIG (the daemon retried) starts from a clean interface */
	char *flush[] = { "addr", "flush", "dev", ifname, NULL };
	char *up[] = { "link", "set", "dev", ifname, "up", NULL };
	if ((rc = run_ip(msg, flush)) < 0 || (rc = run_ip(msg, up)) < 0)
		return rc;
	for (uint32_t i = 0; i < nc->n_addrs; i++) {
		char *add[] = { "addr", "add", nc->addrs[i], "dev", ifname, NULL };
		if ((rc = run_ip(msg, add)) < 0)
			return rc;
	}
	for (uint32_t i = 0; i < nc->n_routes; i++) {
		const struct agent_net_route *r = &nc->routes[i];
		char *via[] = { "route", "replace", r->dst, "via", r->gw, "dev", ifname, NULL };
		char *link[] = { "route", "replace", r->dst, "dev", ifname, NULL };
		if ((rc = run_ip(msg, r->gw[0] ? via : link)) < 0)
			return rc;
	}
	if (nc->resolv_conf[0] && env->resolv_conf && (rc = write_resolv(env->resolv_conf, nc->resolv_conf, msg)) < 0)
		return rc;
	return 0;
}
