/* CRI pod config -> CNI (see cni_pod.h): port mappings, DNS, bandwidth annotations, the pinned
 * netns, and the pod's IPs for PodSandboxStatus. */
#include "cni_pod.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define INGRESS_ANNOTATION "kubernetes.io/ingress-bandwidth"
#define EGRESS_ANNOTATION "kubernetes.io/egress-bandwidth"

char *vgpu_pod_netns_path(const struct vgpu_config *cfg, const char *id)
{
	return vgpu_asprintf("%s/netns/%s", cfg->run_dir, id);
}

int vgpu_parse_bandwidth(const char *text, uint64_t *bits_per_s)
{
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = {
		{ "", 1 },
		{ "k", 1000ULL },
		{ "M", 1000000ULL },
		{ "G", 1000000000ULL },
		{ "T", 1000000000000ULL },
		{ "Ki", 1ULL << 10 },
		{ "Mi", 1ULL << 20 },
		{ "Gi", 1ULL << 30 },
		{ "Ti", 1ULL << 40 },
	};
	if (!text || !isdigit((unsigned char)text[0]))
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].suffix) == 0) {
			uint64_t out;
			if (__builtin_mul_overflow((uint64_t)v, units[i].mult, &out) || out == 0)
				return -EINVAL;
			*bits_per_s = out;
			return 0;
		}
	return -EINVAL;
}

static const char *annotation(const Runtime__V1__PodSandboxConfig *pod, const char *key)
{
	for (size_t i = 0; i < pod->n_annotations; i++)
		if (strcmp(pod->annotations[i]->key, key) == 0)
			return pod->annotations[i]->value;
	return NULL;
}

/* Bandwidth from the annotations kubelet understands; bursts unlimited as in other runtimes. */
static int bandwidth(const Runtime__V1__PodSandboxConfig *pod, struct vgpu_cni_bandwidth *bw, bool *set,
		     struct vgpu_err *err)
{
	const char *in = annotation(pod, INGRESS_ANNOTATION), *eg = annotation(pod, EGRESS_ANNOTATION);
	*set = in || eg;
	if (in && vgpu_parse_bandwidth(in, &bw->ingress_rate) < 0)
		return vgpu_err_set(err, -EINVAL, "annotation %s: '%.64s' is not a bandwidth", INGRESS_ANNOTATION, in);
	if (eg && vgpu_parse_bandwidth(eg, &bw->egress_rate) < 0)
		return vgpu_err_set(err, -EINVAL, "annotation %s: '%.64s' is not a bandwidth", EGRESS_ANNOTATION, eg);
	bw->ingress_burst = in ? UINT32_MAX : 0;
	bw->egress_burst = eg ? UINT32_MAX : 0;
	return 0;
}

static const char **strv_of(char **v, size_t n)
{
	const char **out = vgpu_calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		out[i] = v[i];
	return out;
}

static const char *protocol_name(Runtime__V1__Protocol p)
{
	return p == RUNTIME__V1__PROTOCOL__UDP ? "udp" : p == RUNTIME__V1__PROTOCOL__SCTP ? "sctp" : "tcp";
}

int vgpu_pod_network_setup(const struct vgpu_config *cfg, const char *id, pid_t infra_pid,
			   const Runtime__V1__PodSandboxConfig *pod, struct vgpu_cni_result *out,
			   struct vgpu_err *err)
{
	_cleanup_free_ char *netns = vgpu_pod_netns_path(cfg, id);
	int r = vgpu_netns_pin(infra_pid, netns, err);
	if (r < 0)
		return vgpu_err_prefix(err, "sandbox %s", id);
	return vgpu_pod_network_add(cfg, id, pod, out, err);
}

int vgpu_pod_network_add(const struct vgpu_config *cfg, const char *id, const Runtime__V1__PodSandboxConfig *pod,
			 struct vgpu_cni_result *out, struct vgpu_err *err)
{
	_cleanup_free_ char *netns = vgpu_pod_netns_path(cfg, id);
	struct vgpu_cni_bandwidth bw = { 0 };
	bool have_bw;
	int r = bandwidth(pod, &bw, &have_bw, err);
	struct vgpu_cni *cni = NULL;
	if (r < 0)
		vgpu_err_prefix(err, "sandbox %s", id);
	else
		r = vgpu_cni_open(cfg, &cni, err);
	if (r < 0) {
		struct vgpu_err e = { 0 };
		if (vgpu_netns_remove(netns, &e) < 0)
			vgpu_log(VGPU_LOG_WARN, "sandbox %s: %s", id, e.msg);
		return r;
	}
	struct vgpu_cni_port_mapping *ports = vgpu_calloc(pod->n_port_mappings, sizeof(*ports));
	for (size_t i = 0; i < pod->n_port_mappings; i++) {
		const Runtime__V1__PortMapping *p = pod->port_mappings[i];
		ports[i] = (struct vgpu_cni_port_mapping){ .container_port = p->container_port, .host_port = p->host_port,
							   .protocol = protocol_name(p->protocol), .host_ip = p->host_ip };
	}
	const Runtime__V1__DNSConfig *dns = pod->dns_config;
	_cleanup_free_ const char **servers = dns ? strv_of(dns->servers, dns->n_servers) : NULL;
	_cleanup_free_ const char **searches = dns ? strv_of(dns->searches, dns->n_searches) : NULL;
	_cleanup_free_ const char **options = dns ? strv_of(dns->options, dns->n_options) : NULL;
	const Runtime__V1__PodSandboxMetadata *md = pod->metadata;
	struct vgpu_cni_pod cp = { .id = id, .netns = netns, .ifname = "eth0", .namespace_ = md ? md->namespace_ : NULL,
				   .name = md ? md->name : NULL, .uid = md ? md->uid : NULL, .ports = ports,
				   .n_ports = pod->n_port_mappings, .bandwidth = have_bw ? &bw : NULL,
				   .dns_servers = servers, .dns_searches = searches, .dns_options = options };
	r = vgpu_cni_add(cni, &cp, out, err);
	free(ports);
	vgpu_cni_close(cni);
	if (r < 0) {
		struct vgpu_err e = { 0 };
		if (vgpu_netns_remove(netns, &e) < 0)
			vgpu_log(VGPU_LOG_WARN, "sandbox %s: %s", id, e.msg);
	}
	return r;
}

int vgpu_pod_network_teardown(const struct vgpu_config *cfg, const char *id, struct vgpu_err *err)
{
	struct vgpu_cni *cni = NULL;
	int r = vgpu_cni_open(cfg, &cni, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *netns = vgpu_pod_netns_path(cfg, id);
	struct vgpu_cni_pod cp = { .id = id, .netns = netns };
	r = vgpu_cni_del(cni, &cp, err);
	vgpu_cni_close(cni);
	if (r == 0 && (r = vgpu_netns_remove(netns, err)) < 0)
		vgpu_err_prefix(err, "sandbox %s", id);
	return r;
}

void vgpu_pod_network_ips(const struct vgpu_config *cfg, const char *id, char **ip, char ***additional)
{
	struct vgpu_cni *cni = NULL;
	struct vgpu_cni_result res = { 0 };
	if (vgpu_cni_open(cfg, &cni, NULL) < 0 || vgpu_cni_cached_result(cni, id, &res, NULL) < 0) {
		vgpu_cni_close(cni);
		*ip = vgpu_strdup("");
		*additional = vgpu_calloc(1, sizeof(char *));
		return;
	}
	vgpu_cni_close(cni);
	const char *primary = vgpu_cni_result_primary_ip(&res);
	*ip = vgpu_strdup(primary);
	*additional = vgpu_calloc(res.n_ips + 1, sizeof(char *));
	size_t k = 0;
	for (size_t i = 0; i < res.n_ips; i++)
		if (res.ips[i].ip != primary)
			(*additional)[k++] = vgpu_strdup(res.ips[i].ip);
	vgpu_cni_result_free(&res);
}

void vgpu_pod_network_status(const struct vgpu_config *cfg, const char *id, Runtime__V1__PodSandboxNetworkStatus *st)
{
	char **more = NULL;
	free(st->ip);
	vgpu_pod_network_ips(cfg, id, &st->ip, &more);
	size_t n = 0;
	while (more[n])
		n++;
	st->additional_ips = vgpu_calloc(n + 1, sizeof(*st->additional_ips));
	st->n_additional_ips = n;
	for (size_t i = 0; i < n; i++) {
		Runtime__V1__PodIP *ip = vgpu_calloc(1, sizeof(*ip));
		runtime__v1__pod_ip__init(ip);
		ip->ip = more[i]; /* moved */
		st->additional_ips[i] = ip;
	}
	free(more);
}
