/* Prometheus endpoint (see metrics_http.h). GET /metrics only; everything else 404/405. */
#include "metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "gpu.h"
#include "log.h"
#include "util.h"

struct vgpu_metrics_http {
	struct MHD_Daemon *mhd;
	struct vgpu_daemon *d;
	int port;
};

int vgpu_metrics_parse_address(const char *addr, struct sockaddr_storage *out, struct vgpu_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *colon = strrchr(addr, ':');
	if (!colon || colon == addr || strlen(addr) > 64)
		return vgpu_err_set(err, -EINVAL, "metrics address '%s': expected host:port", addr);
	char host[72];
	size_t hlen = (size_t)(colon - addr);
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	char *end = NULL;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port < 0 || port > 65535)
		return vgpu_err_set(err, -EINVAL, "metrics address '%s': bad port", addr);
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	struct sockaddr_in *v4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127)
			return vgpu_err_set(err, -EINVAL, "metrics address '%s': only loopback addresses are served", addr);
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		return 0;
	}
	if (hlen > 2 && host[0] == '[' && host[hlen - 1] == ']') {
		host[hlen - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &v6->sin6_addr) == 1) {
			if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr))
				return vgpu_err_set(err, -EINVAL, "metrics address '%s': only loopback addresses are served",
						    addr);
			v6->sin6_family = AF_INET6;
			v6->sin6_port = htons((uint16_t)port);
			return 0;
		}
	}
	return vgpu_err_set(err, -EINVAL, "metrics address '%s': host must be a loopback IP address", addr);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			      const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct vgpu_metrics_http *m = cls;
	struct MHD_Response *resp;
	unsigned status;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		static const char msg[] = "method not allowed\n";
		resp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (strcmp(url, "/metrics") != 0) {
		static const char msg[] = "not found: vgpu-cri serves /metrics\n";
		resp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_NOT_FOUND;
	} else {
		char *text = vgpu_gpu_prometheus_text(m->d->gpu);
		resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
		MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
		status = MHD_HTTP_OK;
	}
	if (!resp)
		return MHD_NO;
	enum MHD_Result r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

int vgpu_metrics_http_start(struct vgpu_daemon *d, struct vgpu_metrics_http **out, struct vgpu_err *err)
{
	*out = NULL;
	const char *addr = d->cfg->metrics_address;
	if (!addr || !*addr)
		return 0;
	struct sockaddr_storage sa;
	int r = vgpu_metrics_parse_address(addr, &sa, err);
	if (r < 0)
		return r;
	struct vgpu_metrics_http *m = vgpu_calloc(1, sizeof(*m));
	m->d = d;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (sa.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	m->mhd = MHD_start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				  MHD_OPTION_CONNECTION_LIMIT, 16U, MHD_OPTION_CONNECTION_TIMEOUT, 10U, MHD_OPTION_END);
	if (!m->mhd) {
		free(m);
		return vgpu_err_set(err, -EADDRINUSE, "metrics endpoint: cannot listen on %s", addr);
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
	m->port = info ? info->port : 0;
	vgpu_log(VGPU_LOG_INFO, "Prometheus metrics on http://%s/metrics (port %d)", addr, m->port);
	*out = m;
	return 0;
}

int vgpu_metrics_http_port(const struct vgpu_metrics_http *m)
{
	return m ? m->port : 0;
}

void vgpu_metrics_http_stop(struct vgpu_metrics_http *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->mhd);
	free(m);
}
