/* The Prometheus text endpoint (/metrics) on a loopback address, served by libmicrohttpd. */
#ifndef VGPU_METRICS_HTTP_H
#define VGPU_METRICS_HTTP_H

#include <sys/socket.h>

#include "err.h"

struct vgpu_daemon;
struct vgpu_metrics_http;

/* Parse "127.0.0.1:9464" or "[::1]:9464"; only loopback hosts are accepted (-EINVAL otherwise). */
int vgpu_metrics_parse_address(const char *addr, struct sockaddr_storage *out, struct vgpu_err *err);

/* Start serving when d->cfg->metrics_address is set; *out stays NULL when it is empty. */
int vgpu_metrics_http_start(struct vgpu_daemon *d, struct vgpu_metrics_http **out, struct vgpu_err *err);
/* Port actually bound (for port 0). */
int vgpu_metrics_http_port(const struct vgpu_metrics_http *m);
void vgpu_metrics_http_stop(struct vgpu_metrics_http *m);

#endif
