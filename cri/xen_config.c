/* libxl domain configuration from a vgpu_xen_domain_spec: validation and the libxl_domain_config
 * that libxl_domain_create_new takes. Pure: no Xen, no libxl_ctx (libxl's public structs are plain
 * malloc'd memory that libxl_*_dispose frees with free()), so it is unit-tested in normal CI. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "xen_domain.h"

void vgpu_xen_spec_from_handler(struct vgpu_xen_domain_spec *spec, const struct vgpu_handler_config *handler)
{
	spec->type = VGPU_XEN_GUEST_PV;
	spec->kernel = handler->guest_kernel;
	spec->initrd = handler->guest_initrd && handler->guest_initrd[0] ? handler->guest_initrd : NULL;
	spec->memory_mb = handler->guest_memory_mb > 0 ? (unsigned long long)handler->guest_memory_mb : 0;
	spec->vcpus = handler->guest_vcpus > 0 ? (unsigned int)handler->guest_vcpus : 0;
	spec->cmdline = handler->guest_cmdline && handler->guest_cmdline[0] ? handler->guest_cmdline : NULL;
}

void vgpu_xen_pod_domain_name(char out[VGPU_XEN_NAME_MAX + 1], const char *sandbox_id, const char *pod_name)
{
	size_t n = (size_t)snprintf(out, VGPU_XEN_NAME_MAX + 1, "%s%.*s-", VGPU_XEN_POD_PREFIX, VGPU_XEN_POD_ID_CHARS,
				    sandbox_id);

	/* the pod's name, reduced to the characters a domain name may hold, fills what is left */
	for (const char *p = pod_name ? pod_name : ""; *p && n < VGPU_XEN_NAME_MAX; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
			  c == '_' || c == '.';
		out[n++] = ok ? c : '_';
	}
	if (out[n - 1] == '-') /* no usable pod name: drop the separator */
		n--;
	out[n] = '\0';
}

bool vgpu_xen_pod_domain_match(const char *domain_name, char id_prefix[VGPU_XEN_POD_ID_CHARS + 1])
{
	size_t plen = strlen(VGPU_XEN_POD_PREFIX);

	if (strncmp(domain_name, VGPU_XEN_POD_PREFIX, plen) != 0)
		return false;
	const char *id = domain_name + plen;
	if (strspn(id, "0123456789abcdef") < VGPU_XEN_POD_ID_CHARS ||
	    (id[VGPU_XEN_POD_ID_CHARS] != '-' && id[VGPU_XEN_POD_ID_CHARS] != '\0'))
		return false;
	memcpy(id_prefix, id, VGPU_XEN_POD_ID_CHARS);
	id_prefix[VGPU_XEN_POD_ID_CHARS] = '\0';
	return true;
}

void vgpu_xen_pod_size(struct vgpu_xen_domain_spec *spec, long long memory_limit_bytes, long long cpu_quota,
		       long long cpu_period)
{
	if (memory_limit_bytes > 0) {
		unsigned long long mb = ((unsigned long long)memory_limit_bytes + (1ULL << 20) - 1) >> 20;
		mb += VGPU_XEN_GUEST_OVERHEAD_MB;
		spec->memory_mb = mb > VGPU_XEN_MAX_MEMORY_MB ? VGPU_XEN_MAX_MEMORY_MB : mb;
	}
	if (cpu_quota > 0 && cpu_period > 0) {
		unsigned long long v = ((unsigned long long)cpu_quota + (unsigned long long)cpu_period - 1) /
				       (unsigned long long)cpu_period;
		spec->vcpus = v > VGPU_XEN_MAX_VCPUS ? VGPU_XEN_MAX_VCPUS : (unsigned int)v;
	}
}

static bool name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > VGPU_XEN_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
			  c == '_' || c == '.';
		if (!ok)
			return false;
	}
	/* libxl and xl treat an all-digit name as a domid */
	return strspn(name, "0123456789") != len;
}

/* "xvd" followed by 1..3 lowercase letters (xvda .. xvdzz...), the PV disk namespace. */
static bool vdev_ok(const char *vdev)
{
	size_t letters;

	if (strncmp(vdev, "xvd", 3) != 0)
		return false;
	letters = strspn(vdev + 3, "abcdefghijklmnopqrstuvwxyz");
	return letters >= 1 && letters <= 3 && vdev[3 + letters] == '\0';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Exactly "xx:xx:xx:xx:xx:xx" in hex; a multicast address (low bit of the first octet) is refused. */
static int parse_mac(const char *text, libxl_mac mac)
{
	if (strlen(text) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int hi = hex_value(text[i * 3]), lo = hex_value(text[i * 3 + 1]);
		if (hi < 0 || lo < 0 || (i < 5 && text[i * 3 + 2] != ':'))
			return -EINVAL;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	if (mac[0] & 1)
		return -EINVAL;
	return 0;
}

static bool has_control_chars(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static int validate_devices(const struct vgpu_xen_domain_spec *spec, struct vgpu_err *err)
{
	libxl_mac mac = { 0 };

	if (spec->n_disks > VGPU_XEN_MAX_DISKS || (spec->n_disks && !spec->disks))
		return vgpu_err_set(err, -EINVAL, "domain %s: %zu disks (at most %d)", spec->name, spec->n_disks,
				    VGPU_XEN_MAX_DISKS);
	for (size_t i = 0; i < spec->n_disks; i++) {
		const struct vgpu_xen_disk *d = &spec->disks[i];
		if (!d->path || d->path[0] != '/' || has_control_chars(d->path) || strchr(d->path, ','))
			return vgpu_err_set(err, -EINVAL, "domain %s: disk %zu: path must be absolute, without ','",
					    spec->name, i);
		if (!d->vdev || !vdev_ok(d->vdev))
			return vgpu_err_set(err, -EINVAL, "domain %s: disk %zu: vdev '%s' is not xvd[a-z]", spec->name,
					    i, d->vdev ? d->vdev : "(null)");
		for (size_t j = 0; j < i; j++)
			if (strcmp(spec->disks[j].vdev, d->vdev) == 0)
				return vgpu_err_set(err, -EINVAL, "domain %s: disk %zu: vdev %s used twice",
						    spec->name, i, d->vdev);
	}
	if (spec->n_vifs > VGPU_XEN_MAX_VIFS || (spec->n_vifs && !spec->vifs))
		return vgpu_err_set(err, -EINVAL, "domain %s: %zu vifs (at most %d)", spec->name, spec->n_vifs,
				    VGPU_XEN_MAX_VIFS);
	for (size_t i = 0; i < spec->n_vifs; i++) {
		const struct vgpu_xen_vif *v = &spec->vifs[i];
		if (v->mac && parse_mac(v->mac, mac) < 0)
			return vgpu_err_set(err, -EINVAL, "domain %s: vif %zu: bad unicast mac '%s'", spec->name, i,
					    v->mac);
		if (v->bridge && (!v->bridge[0] || strlen(v->bridge) > 15 || strpbrk(v->bridge, "/ \t\n")))
			return vgpu_err_set(err, -EINVAL, "domain %s: vif %zu: bad bridge name '%s'", spec->name, i,
					    v->bridge);
		if (v->script && (!v->script[0] || has_control_chars(v->script)))
			return vgpu_err_set(err, -EINVAL, "domain %s: vif %zu: bad script", spec->name, i);
	}
	return 0;
}

int vgpu_xen_spec_validate(const struct vgpu_xen_domain_spec *spec, struct vgpu_err *err)
{
	if (!spec->name || !name_ok(spec->name))
		return vgpu_err_set(err, -EINVAL, "domain name '%s': want 1..%d of [A-Za-z0-9_.-], not all digits",
				    spec->name ? spec->name : "(null)", VGPU_XEN_NAME_MAX);
	if (spec->type != VGPU_XEN_GUEST_PV && spec->type != VGPU_XEN_GUEST_PVH)
		return vgpu_err_set(err, -EINVAL, "domain %s: unknown guest type %d", spec->name, (int)spec->type);
	if (spec->memory_mb < VGPU_XEN_MIN_MEMORY_MB || spec->memory_mb > VGPU_XEN_MAX_MEMORY_MB)
		return vgpu_err_set(err, -EINVAL, "domain %s: memory %llu MiB out of range %llu..%llu", spec->name,
				    spec->memory_mb, VGPU_XEN_MIN_MEMORY_MB, VGPU_XEN_MAX_MEMORY_MB);
	if (spec->vcpus < 1 || spec->vcpus > VGPU_XEN_MAX_VCPUS)
		return vgpu_err_set(err, -EINVAL, "domain %s: %u vcpus out of range 1..%u", spec->name, spec->vcpus,
				    VGPU_XEN_MAX_VCPUS);
	if (!spec->kernel || spec->kernel[0] != '/' || has_control_chars(spec->kernel))
		return vgpu_err_set(err, -EINVAL, "domain %s: kernel must be an absolute path", spec->name);
	if (spec->initrd && (spec->initrd[0] != '/' || has_control_chars(spec->initrd)))
		return vgpu_err_set(err, -EINVAL, "domain %s: initrd must be an absolute path", spec->name);
	if (spec->cmdline && has_control_chars(spec->cmdline))
		return vgpu_err_set(err, -EINVAL, "domain %s: control characters in cmdline", spec->name);
	if (spec->console_log && spec->console_log[0] != '/')
		return vgpu_err_set(err, -EINVAL, "domain %s: console log must be an absolute path", spec->name);
	return validate_devices(spec, err);
}

static char *dup_or_null(const char *s)
{
	return s ? vgpu_strdup(s) : NULL;
}

static void fill_disks(const struct vgpu_xen_domain_spec *spec, libxl_domain_config *out)
{
	if (!spec->n_disks)
		return;
	out->disks = vgpu_calloc(spec->n_disks, sizeof(*out->disks));
	for (size_t i = 0; i < spec->n_disks; i++) {
		libxl_device_disk *disk = &out->disks[out->num_disks++];
		libxl_device_disk_init(disk);
		disk->backend_domid = 0;
		disk->pdev_path = vgpu_strdup(spec->disks[i].path);
		disk->vdev = vgpu_strdup(spec->disks[i].vdev);
		/* blkback on a block device: no device model in the driver domain. Image files are
		 * attached through a loop device by the caller. */
		disk->backend = LIBXL_DISK_BACKEND_PHY;
		disk->format = LIBXL_DISK_FORMAT_RAW;
		disk->readwrite = spec->disks[i].writable ? 1 : 0;
	}
}

static void fill_nics(const struct vgpu_xen_domain_spec *spec, libxl_domain_config *out)
{
	if (!spec->n_vifs)
		return;
	out->nics = vgpu_calloc(spec->n_vifs, sizeof(*out->nics));
	for (size_t i = 0; i < spec->n_vifs; i++) {
		libxl_device_nic *nic = &out->nics[out->num_nics++];
		libxl_device_nic_init(nic);
		nic->backend_domid = 0;
		nic->devid = (libxl_devid)i;
		nic->nictype = LIBXL_NIC_TYPE_VIF;
		nic->bridge = dup_or_null(spec->vifs[i].bridge);
		nic->script = dup_or_null(spec->vifs[i].script);
		if (spec->vifs[i].mac)
			(void)parse_mac(spec->vifs[i].mac, nic->mac); /* validated */
	}
}

int vgpu_xen_config_build(const struct vgpu_xen_domain_spec *spec, libxl_domain_config *out,
			  struct vgpu_err *err)
{
	libxl_domain_type type;
	libxl_domain_build_info *b;
	int rc;

	libxl_domain_config_init(out);
	rc = vgpu_xen_spec_validate(spec, err);
	if (rc < 0)
		return rc;
	type = spec->type == VGPU_XEN_GUEST_PVH ? LIBXL_DOMAIN_TYPE_PVH : LIBXL_DOMAIN_TYPE_PV;

	out->c_info.type = type;
	out->c_info.name = vgpu_strdup(spec->name);

	b = &out->b_info;
	libxl_domain_build_info_init_type(b, type);
	b->max_vcpus = (int)spec->vcpus;
	/* libxl_bitmap_alloc wants a ctx; the bitmap is plain memory (size in bytes) that
	 * libxl_bitmap_dispose frees with free(). */
	b->avail_vcpus.size = (spec->vcpus + 7) / 8;
	b->avail_vcpus.map = vgpu_calloc(b->avail_vcpus.size, 1);
	for (unsigned int i = 0; i < spec->vcpus; i++)
		b->avail_vcpus.map[i / 8] |= (uint8_t)(1u << (i % 8));
	b->max_memkb = spec->memory_mb * 1024;
	b->target_memkb = b->max_memkb;
	b->kernel = vgpu_strdup(spec->kernel);
	b->ramdisk = dup_or_null(spec->initrd);
	b->cmdline = dup_or_null(spec->cmdline);

	/* Only acted on by whoever watches the domain (xl's monitor; for us the handler): a pod's guest
	 * that powers off or reboots is finished; a crashed one stays for inspection until Stop. */
	out->on_poweroff = LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
	out->on_reboot = LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
	out->on_watchdog = LIBXL_ACTION_ON_SHUTDOWN_DESTROY;
	out->on_crash = LIBXL_ACTION_ON_SHUTDOWN_PRESERVE;

	fill_disks(spec, out);
	fill_nics(spec, out);
	return 0;
}

int vgpu_xen_errno(int libxl_rc)
{
	switch (libxl_rc) {
	case 0:
		return 0;
	case ERROR_NOMEM:
		return -ENOMEM;
	case ERROR_INVAL:
	case ERROR_VNUMA_CONFIG_INVALID:
		return -EINVAL;
	case ERROR_DOMAIN_NOTFOUND:
	case ERROR_NOTFOUND:
	case ERROR_DOMAIN_DESTROYED:
		return -ENOENT;
	case ERROR_DEVICE_EXISTS:
		return -EEXIST;
	case ERROR_TIMEDOUT:
	case ERROR_GUEST_TIMEDOUT:
		return -ETIMEDOUT;
	case ERROR_NI:
	case ERROR_FEATURE_REMOVED:
	case ERROR_NOPARAVIRT:
		return -EOPNOTSUPP;
	case ERROR_LOCK_FAIL:
		return -EBUSY;
	case ERROR_ABORTED:
		return -ECANCELED;
	case ERROR_NOT_READY:
		return -EAGAIN;
	default:
		return -EIO;
	}
}

char *vgpu_xen_consoled_log_path(const char *dir, const char *name)
{
	return vgpu_asprintf("%s/guest-%s.log", dir ? dir : VGPU_XEN_CONSOLED_LOG_DIR, name);
}

const char *vgpu_xen_state_name(enum vgpu_xen_domain_state state)
{
	switch (state) {
	case VGPU_XEN_STATE_RUNNING:
		return "running";
	case VGPU_XEN_STATE_PAUSED:
		return "paused";
	case VGPU_XEN_STATE_SHUTDOWN:
		return "shutdown";
	case VGPU_XEN_STATE_DYING:
		return "dying";
	}
	return "unknown";
}

void vgpu_xen_info_from_dominfo(struct vgpu_xen_domain_info *info, const libxl_dominfo *d)
{
	info->domid = d->domid;
	/* dying wins over shutdown wins over paused: the order a domain goes through on its way out */
	if (d->dying)
		info->state = VGPU_XEN_STATE_DYING;
	else if (d->shutdown)
		info->state = VGPU_XEN_STATE_SHUTDOWN;
	else if (d->paused)
		info->state = VGPU_XEN_STATE_PAUSED;
	else
		info->state = VGPU_XEN_STATE_RUNNING;
	info->shutdown_reason = info->state == VGPU_XEN_STATE_SHUTDOWN ? (int)d->shutdown_reason : -1;
	info->memory_kb = d->current_memkb;
	info->vcpus_online = d->vcpu_online;
	info->cpu_time_ns = d->cpu_time;
}
