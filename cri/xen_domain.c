/* Domain lifecycle through libxenlight: open a libxl context, create (and unpause) a domU from a
 * spec, list, find by name, destroy. libxl's messages go to vgpu_log; the last error message of
 * the calling thread is carried into struct vgpu_err so that callers see why libxl failed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxl_utils.h>
#include <xentoollog.h>

#include "log.h"
#include "util.h"
#include "xen_domain.h"

/* Xen's DOMID_FIRST_RESERVED (xen/xen.h): ids from here on are DOMID_SELF, DOMID_IO, ... */
#define VGPU_XEN_DOMID_FIRST_RESERVED 0x7FF0U

struct vgpu_xen {
	xentoollog_logger logger;  /* first: libxl hands this pointer back to our callbacks */
	libxl_ctx *ctx;            /* thread-safe (libxl locks internally) */
	char *consoled_log_dir;    /* immutable after open */
};

/* The last libxl error message logged on this thread, for vgpu_err. */
static __thread char libxl_last_error[512];

static void logger_vmessage(xentoollog_logger *logger, xentoollog_level level, int errnoval,
			    const char *context, const char *format, va_list al)
{
	char msg[512];
	enum vgpu_log_level ours;

	vsnprintf(msg, sizeof(msg), format, al);
	if (level >= XTL_ERROR) {
		ours = VGPU_LOG_ERROR;
		snprintf(libxl_last_error, sizeof(libxl_last_error), "%s%s%s", msg, errnoval >= 0 ? ": " : "",
			 errnoval >= 0 ? strerror(errnoval) : "");
	} else if (level >= XTL_WARN) {
		ours = VGPU_LOG_WARN;
	} else if (level >= XTL_INFO) {
		ours = VGPU_LOG_INFO;
	} else {
		ours = VGPU_LOG_DEBUG;
	}
	if (level < XTL_DETAIL && vgpu_log_get_level() < VGPU_LOG_DEBUG)
		return; /* libxl's debug output is very chatty */
	vgpu_log(ours, "libxl%s%s: %s%s%s", context ? " " : "", context ? context : "", msg,
		 errnoval >= 0 ? ": " : "", errnoval >= 0 ? strerror(errnoval) : "");
}

static void logger_progress(xentoollog_logger *logger, const char *context, const char *doing_what, int percent,
			    unsigned long done, unsigned long total)
{
}

static void logger_destroy(xentoollog_logger *logger)
{
}

/* rc from libxl -> our code, with libxl's own message when it logged one. */
static int libxl_fail(struct vgpu_err *err, int libxl_rc, const char *what)
{
	return vgpu_err_set(err, vgpu_xen_errno(libxl_rc), "%s: libxl error %d (%s)%s%s", what, libxl_rc,
			    libxl_error_to_string(libxl_rc) ? libxl_error_to_string(libxl_rc) : "?",
			    libxl_last_error[0] ? ": " : "", libxl_last_error);
}

/* A daemon has children of its own (runc, monitors): libxl must reap only the ones it forked
 * (hotplug scripts, save helper) and must not own SIGCHLD. */
static const libxl_childproc_hooks childproc_hooks = {
	.chldowner = libxl_sigchld_owner_libxl_always_selective_reap,
};

int vgpu_xen_open(struct vgpu_xen **out, const char *consoled_log_dir, struct vgpu_err *err)
{
	struct vgpu_xen *xen;
	int rc;

	*out = NULL;
	if (access("/proc/xen/capabilities", R_OK) != 0 && access("/dev/xen/privcmd", R_OK) != 0)
		return vgpu_err_set(err, -ENODEV, "xen: not running on Xen (no /proc/xen, no /dev/xen/privcmd)");
	xen = vgpu_calloc(1, sizeof(*xen));
	xen->logger.vmessage = logger_vmessage;
	xen->logger.progress = logger_progress;
	xen->logger.destroy = logger_destroy;
	xen->consoled_log_dir = vgpu_strdup(consoled_log_dir ? consoled_log_dir : VGPU_XEN_CONSOLED_LOG_DIR);
	libxl_last_error[0] = '\0';
	rc = libxl_ctx_alloc(&xen->ctx, LIBXL_VERSION, 0, &xen->logger);
	if (rc) {
		/* without a hypervisor interface libxl can do nothing: report "no device" */
		(void)libxl_fail(err, rc, "xen: libxl_ctx_alloc");
		vgpu_err_prefix(err, "xen unavailable");
		rc = -ENODEV;
		if (err)
			err->code = rc;
		free(xen->consoled_log_dir);
		free(xen);
		return rc;
	}
	libxl_childproc_setmode(xen->ctx, &childproc_hooks, NULL);
	*out = xen;
	return 0;
}

void vgpu_xen_close(struct vgpu_xen *xen)
{
	if (!xen)
		return;
	libxl_ctx_free(xen->ctx);
	free(xen->consoled_log_dir);
	free(xen);
}

static int link_console_log(struct vgpu_xen *xen, const char *name, const char *link_path, struct vgpu_err *err)
{
	_cleanup_free_ char *target = vgpu_xen_consoled_log_path(xen->consoled_log_dir, name);

	if (unlink(link_path) < 0 && errno != ENOENT)
		return vgpu_err_errno(err, errno, "domain %s: remove old console log %s", name, link_path);
	if (symlink(target, link_path) < 0)
		return vgpu_err_errno(err, errno, "domain %s: console log link %s -> %s", name, link_path, target);
	return 0;
}

int vgpu_xen_domain_create(struct vgpu_xen *xen, const struct vgpu_xen_domain_spec *spec, uint32_t *domid_out,
			   struct vgpu_err *err)
{
	libxl_domain_config config;
	struct vgpu_xen_domain_info existing;
	uint32_t domid = INVALID_DOMID;
	long long t0 = vgpu_now_ns();
	int rc;

	rc = vgpu_xen_config_build(spec, &config, err);
	if (rc < 0)
		goto out;
	rc = vgpu_xen_domain_find(xen, spec->name, &existing, NULL);
	if (rc == 0) {
		rc = vgpu_err_set(err, -EEXIST, "domain %s: exists (domid %u, %s)", spec->name, existing.domid,
				  vgpu_xen_state_name(existing.state));
		goto out;
	}
	libxl_last_error[0] = '\0';
	rc = libxl_domain_create_new(xen->ctx, &config, &domid, NULL, NULL);
	if (rc) {
		rc = libxl_fail(err, rc, "domain create");
		vgpu_err_prefix(err, "domain %s", spec->name);
		goto out;
	}
	rc = libxl_domain_unpause(xen->ctx, domid, NULL);
	if (rc) {
		rc = libxl_fail(err, rc, "unpause");
		vgpu_err_prefix(err, "domain %s (domid %u)", spec->name, domid);
		(void)libxl_domain_destroy(xen->ctx, domid, NULL);
		goto out;
	}
	if (spec->console_log) {
		/* the domain runs; a missing log link is reported but does not kill the pod */
		struct vgpu_err link_err = { 0 };
		if (link_console_log(xen, spec->name, spec->console_log, &link_err) < 0)
			vgpu_log(VGPU_LOG_WARN, "%s", link_err.msg);
	}
	vgpu_log(VGPU_LOG_INFO, "domain %s: created domid %u (%s, %llu MiB, %u vcpus) in %lld ms", spec->name, domid,
		 spec->type == VGPU_XEN_GUEST_PVH ? "pvh" : "pv", spec->memory_mb, spec->vcpus,
		 (vgpu_now_ns() - t0) / 1000000);
	*domid_out = domid;
	rc = 0;
out:
	libxl_domain_config_dispose(&config);
	return rc;
}

int vgpu_xen_domain_destroy(struct vgpu_xen *xen, uint32_t domid, struct vgpu_err *err)
{
	libxl_dominfo info;
	long long t0 = vgpu_now_ns();
	int rc;

	if (domid == 0 || domid >= VGPU_XEN_DOMID_FIRST_RESERVED)
		return vgpu_err_set(err, -EINVAL, "domain destroy: refusing domid %u", domid);
	libxl_dominfo_init(&info);
	rc = libxl_domain_info(xen->ctx, &info, domid);
	libxl_dominfo_dispose(&info);
	if (rc == ERROR_DOMAIN_NOTFOUND)
		return vgpu_err_set(err, -ENOENT, "domain %u: not found", domid);
	libxl_last_error[0] = '\0';
	rc = libxl_domain_destroy(xen->ctx, domid, NULL);
	if (rc) {
		rc = libxl_fail(err, rc, "destroy");
		vgpu_err_prefix(err, "domain %u", domid);
		return rc;
	}
	vgpu_log(VGPU_LOG_INFO, "domain %u: destroyed in %lld ms", domid, (vgpu_now_ns() - t0) / 1000000);
	return 0;
}

int vgpu_xen_domain_list(struct vgpu_xen *xen, struct vgpu_xen_domain_info **out, size_t *n_out,
			 struct vgpu_err *err)
{
	libxl_dominfo *list;
	struct vgpu_xen_domain_info *infos;
	int n = 0;

	*out = NULL;
	*n_out = 0;
	libxl_last_error[0] = '\0';
	list = libxl_list_domain(xen->ctx, &n);
	if (!list)
		return vgpu_err_set(err, -EIO, "list domains: libxl_list_domain failed%s%s",
				    libxl_last_error[0] ? ": " : "", libxl_last_error);
	infos = vgpu_calloc((size_t)n ? (size_t)n : 1, sizeof(*infos));
	for (int i = 0; i < n; i++) {
		char *name = libxl_domid_to_name(xen->ctx, list[i].domid);
		vgpu_xen_info_from_dominfo(&infos[i], &list[i]);
		/* a dying domain may have lost its xenstore name already */
		snprintf(infos[i].name, sizeof(infos[i].name), "%s", name ? name : "");
		free(name);
	}
	libxl_dominfo_list_free(list, n);
	*out = infos;
	*n_out = (size_t)n;
	return 0;
}

int vgpu_xen_domain_find(struct vgpu_xen *xen, const char *name, struct vgpu_xen_domain_info *out,
			 struct vgpu_err *err)
{
	_cleanup_free_ struct vgpu_xen_domain_info *infos = NULL;
	size_t n;
	int rc;

	rc = vgpu_xen_domain_list(xen, &infos, &n, err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(infos[i].name, name) == 0) {
			*out = infos[i];
			return 0;
		}
	}
	return vgpu_err_set(err, -ENOENT, "domain %s: not found", name);
}

static void disk_fill(libxl_device_disk *disk, const char *path, const char *vdev, bool writable)
{
	libxl_device_disk_init(disk);
	disk->backend_domid = 0;
	disk->pdev_path = path ? vgpu_strdup(path) : NULL;
	disk->vdev = vgpu_strdup(vdev);
	disk->backend = LIBXL_DISK_BACKEND_PHY;
	disk->format = LIBXL_DISK_FORMAT_RAW;
	disk->readwrite = writable ? 1 : 0;
}

int vgpu_xen_disk_add(struct vgpu_xen *xen, uint32_t domid, const struct vgpu_xen_disk *d, struct vgpu_err *err)
{
	libxl_device_disk disk;
	disk_fill(&disk, d->path, d->vdev, d->writable);
	libxl_last_error[0] = '\0';
	int rc = libxl_device_disk_add(xen->ctx, domid, &disk, NULL); /* synchronous: runs the hotplug script */
	libxl_device_disk_dispose(&disk);
	if (rc)
		return libxl_fail(err, rc, "xen: add disk");
	return 0;
}

int vgpu_xen_disk_remove(struct vgpu_xen *xen, uint32_t domid, const char *vdev, struct vgpu_err *err)
{
	libxl_device_disk disk;
	libxl_device_disk_init(&disk);
	libxl_last_error[0] = '\0';
	int rc = libxl_vdev_to_device_disk(xen->ctx, domid, vdev, &disk);
	if (rc) {
		libxl_device_disk_dispose(&disk);
		return vgpu_err_set(err, -ENOENT, "xen: domain %u has no disk %s", domid, vdev);
	}
	rc = libxl_device_disk_remove(xen->ctx, domid, &disk, NULL);
	libxl_device_disk_dispose(&disk);
	if (rc)
		return libxl_fail(err, rc, "xen: remove disk");
	return 0;
}
