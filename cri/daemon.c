/* Daemon state: opens and closes each service's state in order. Service areas add their open
 * and close calls in the marked places, in dependency order: images, then the GPU broker (pods
 * re-register their GPUs while they are recovered), then pods, then endpoints that read them. */
#include "daemon.h"

#include <errno.h>
#include <string.h>

#include "container_stream.h"
#include "gpu.h"
#include "image.h"
#include "log.h"
#include "metrics_http.h"
#include "sandbox.h"
#include "streaming.h"
#include "util.h"

int vgpu_daemon_init(struct vgpu_daemon *d, struct vgpu_config *cfg, struct vgpu_err *err)
{
	memset(d, 0, sizeof(*d));
	d->cfg = cfg;
	d->start_wall_ns = vgpu_wall_ns();
	if (pthread_mutex_init(&d->lock, NULL) != 0)
		return vgpu_err_set(err, -ENOMEM, "cannot create daemon lock");
	int r = vgpu_mkdir_p(cfg->state_dir, 0700, err);
	if (r == 0)
		r = vgpu_mkdir_p(cfg->run_dir, 0700, err);
	if (r < 0)
		return vgpu_err_prefix(err, "daemon directories");
	/* service init: images */
	r = vgpu_image_store_open(cfg, &d->images, err);
	if (r < 0)
		goto fail;
	/* service init: gpu */
	r = vgpu_gpu_open(cfg, &d->gpu, err);
	if (r < 0)
		goto fail;
	/* service init: pods */
	r = vgpu_pods_open(d, err);
	if (r < 0)
		goto fail;
	/* service init: endpoints */
	r = vgpu_metrics_http_start(d, &d->metrics_http, err);
	if (r < 0)
		goto fail;
	/* service init: streaming server (Exec/Attach/PortForward) over the pods backend
	 * (container_stream.c: runc exec, connect() in the pod's netns; no attach yet, so Attach
	 * answers UNIMPLEMENTED). */
	struct vgpu_stream_backend stream_backend;
	vgpu_pods_stream_backend(d, &stream_backend);
	r = vgpu_streaming_daemon_start(d, &stream_backend, err);
	if (r < 0)
		goto fail;
	return 0;
fail:
	vgpu_daemon_fini(d);
	return r;
}

void vgpu_daemon_fini(struct vgpu_daemon *d)
{
	/* service fini: endpoints */
	vgpu_streaming_daemon_stop(d); /* ends sessions before the pods they run in go */
	vgpu_metrics_http_stop(d->metrics_http);
	d->metrics_http = NULL;
	/* service fini: pods */
	if (d->pods)
		vgpu_pods_close(d);
	/* service fini: gpu */
	vgpu_gpu_close(d->gpu);
	d->gpu = NULL;
	/* service fini: images */
	vgpu_image_store_close(d->images);
	d->images = NULL;
	free(d->pod_cidr);
	d->pod_cidr = NULL;
	pthread_mutex_destroy(&d->lock);
}
