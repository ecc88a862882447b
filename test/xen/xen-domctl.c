/* xen-domctl: drives cri/xen_domain.c (the code the `xen` runtime handler uses) from the QEMU test
 * bed's dom0 scenarios. Every line it prints starts with "XENCTL " so scenarios grep for it.
 *   xen-domctl list
 *   xen-domctl find NAME                  (exit 3 if not found)
 *   xen-domctl create NAME --kernel K [--initrd I] [--cmdline C] [--memory MB] [--vcpus N] [--pvh]
 *              [--disk PATH:VDEV:rw|ro]... [--vif BRIDGE[:MAC]]... [--console-log PATH]
 *   xen-domctl destroy NAME
 *   xen-domctl wait-state NAME STATE SECONDS   (running|shutdown|gone)
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"
#include "xen_domain.h"

static double ms_since(long long t0)
{
	return (double)(vgpu_now_ns() - t0) / 1e6;
}

static int cmd_list(struct vgpu_xen *xen)
{
	_cleanup_free_ struct vgpu_xen_domain_info *infos = NULL;
	struct vgpu_err err = { 0 };
	size_t n;

	if (vgpu_xen_domain_list(xen, &infos, &n, &err) < 0) {
		printf("XENCTL list failed: %s\n", err.msg);
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		printf("XENCTL dom %u name=%s state=%s mem_kb=%llu vcpus=%u\n", infos[i].domid, infos[i].name,
		       vgpu_xen_state_name(infos[i].state), (unsigned long long)infos[i].memory_kb,
		       infos[i].vcpus_online);
	printf("XENCTL domains=%zu\n", n);
	return 0;
}

static int cmd_find(struct vgpu_xen *xen, const char *name)
{
	struct vgpu_xen_domain_info info;
	struct vgpu_err err = { 0 };
	int rc = vgpu_xen_domain_find(xen, name, &info, &err);

	if (rc == -ENOENT) {
		printf("XENCTL not-found %s\n", name);
		return 3;
	}
	if (rc < 0) {
		printf("XENCTL find failed: %s\n", err.msg);
		return 1;
	}
	printf("XENCTL found %s domid=%u state=%s\n", name, info.domid, vgpu_xen_state_name(info.state));
	return 0;
}

/* "PATH:VDEV:rw" */
static int parse_disk(char *arg, struct vgpu_xen_disk *disk)
{
	char *vdev = strchr(arg, ':'), *mode;

	*disk = (struct vgpu_xen_disk){ 0 };
	if (!vdev)
		return -EINVAL;
	*vdev++ = '\0';
	mode = strchr(vdev, ':');
	if (mode)
		*mode++ = '\0';
	disk->path = arg;
	disk->vdev = vdev;
	disk->writable = mode && strcmp(mode, "rw") == 0;
	return 0;
}

/* "BRIDGE[:MAC]": the MAC itself has ':' so split at the first one only */
static void parse_vif(char *arg, struct vgpu_xen_vif *vif)
{
	char *mac = strchr(arg, ':');

	*vif = (struct vgpu_xen_vif){ 0 };
	if (mac)
		*mac++ = '\0';
	vif->bridge = arg[0] ? arg : NULL;
	vif->mac = mac;
}

static int cmd_create(struct vgpu_xen *xen, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' }, { "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'c' }, { "memory", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'v' },   { "pvh", no_argument, NULL, 'p' },
		{ "disk", required_argument, NULL, 'd' },    { "vif", required_argument, NULL, 'n' },
		{ "console-log", required_argument, NULL, 'l' }, { NULL, 0, NULL, 0 },
	};
	struct vgpu_xen_disk disks[VGPU_XEN_MAX_DISKS];
	struct vgpu_xen_vif vifs[VGPU_XEN_MAX_VIFS];
	struct vgpu_xen_domain_spec spec = { .memory_mb = 128, .vcpus = 1, .disks = disks, .vifs = vifs };
	struct vgpu_err err = { 0 };
	uint32_t domid;
	long long t0;
	int c;

	if (argc < 2)
		return 2;
	spec.name = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'k': spec.kernel = optarg; break;
		case 'i': spec.initrd = optarg; break;
		case 'c': spec.cmdline = optarg; break;
		case 'm': spec.memory_mb = strtoull(optarg, NULL, 10); break;
		case 'v': spec.vcpus = (unsigned int)strtoul(optarg, NULL, 10); break;
		case 'p': spec.type = VGPU_XEN_GUEST_PVH; break;
		case 'l': spec.console_log = optarg; break;
		case 'd':
			if (spec.n_disks == VGPU_XEN_MAX_DISKS || parse_disk(optarg, &disks[spec.n_disks]) < 0)
				return 2;
			spec.n_disks++;
			break;
		case 'n':
			if (spec.n_vifs == VGPU_XEN_MAX_VIFS)
				return 2;
			parse_vif(optarg, &vifs[spec.n_vifs++]);
			break;
		default: return 2;
		}
	}
	t0 = vgpu_now_ns();
	if (vgpu_xen_domain_create(xen, &spec, &domid, &err) < 0) {
		printf("XENCTL create failed after %.0f ms: %s (code %d)\n", ms_since(t0), err.msg, err.code);
		return 1;
	}
	printf("XENCTL created %s domid=%u ms=%.0f\n", spec.name, domid, ms_since(t0));
	return 0;
}

static int cmd_destroy(struct vgpu_xen *xen, const char *name)
{
	struct vgpu_xen_domain_info info;
	struct vgpu_err err = { 0 };
	long long t0 = vgpu_now_ns();

	if (vgpu_xen_domain_find(xen, name, &info, &err) < 0) {
		printf("XENCTL destroy failed: %s\n", err.msg);
		return err.code == -ENOENT ? 3 : 1;
	}
	if (vgpu_xen_domain_destroy(xen, info.domid, &err) < 0) {
		printf("XENCTL destroy failed: %s\n", err.msg);
		return 1;
	}
	printf("XENCTL destroyed %s domid=%u ms=%.0f\n", name, info.domid, ms_since(t0));
	return 0;
}

static int cmd_wait_state(struct vgpu_xen *xen, const char *name, const char *want, double seconds)
{
	long long t0 = vgpu_now_ns();

	for (;;) {
		struct vgpu_xen_domain_info info;
		int rc = vgpu_xen_domain_find(xen, name, &info, NULL);
		const char *state = rc == -ENOENT ? "gone" : rc < 0 ? "error" : vgpu_xen_state_name(info.state);
		if (strcmp(state, want) == 0) {
			printf("XENCTL state %s=%s after ms=%.0f\n", name, state, ms_since(t0));
			return 0;
		}
		if (ms_since(t0) > seconds * 1000) {
			printf("XENCTL wait-state %s: still %s after %.0f s, wanted %s\n", name, state, seconds, want);
			return 1;
		}
		usleep(100 * 1000);
	}
}

int main(int argc, char **argv)
{
	struct vgpu_xen *xen = NULL;
	struct vgpu_err err = { 0 };
	int rc = 2;

	setvbuf(stdout, NULL, _IOLBF, 0);
	vgpu_log_set_level(getenv("XENCTL_DEBUG") ? VGPU_LOG_DEBUG : VGPU_LOG_INFO);
	if (argc < 2) {
		fprintf(stderr, "usage: xen-domctl list|find|create|destroy|wait-state ...\n");
		return 2;
	}
	if (vgpu_xen_open(&xen, getenv("XENCTL_CONSOLE_DIR"), &err) < 0) {
		printf("XENCTL open failed: %s (code %d)\n", err.msg, err.code);
		return 1;
	}
	if (strcmp(argv[1], "list") == 0)
		rc = cmd_list(xen);
	else if (strcmp(argv[1], "find") == 0 && argc == 3)
		rc = cmd_find(xen, argv[2]);
	else if (strcmp(argv[1], "create") == 0)
		rc = cmd_create(xen, argc - 1, argv + 1);
	else if (strcmp(argv[1], "destroy") == 0 && argc == 3)
		rc = cmd_destroy(xen, argv[2]);
	else if (strcmp(argv[1], "wait-state") == 0 && argc == 5)
		rc = cmd_wait_state(xen, argv[2], argv[3], atof(argv[4]));
	if (rc == 2)
		fprintf(stderr, "xen-domctl: bad arguments\n");
	vgpu_xen_close(xen);
	return rc;
}
