/* libxl config generation for the xen handler (cri/xen_config.c): specs become the
 * libxl_domain_config that libxl_domain_create_new takes; bad specs are refused with a message
 * naming the field; libxl error codes and domain states map to ours. No Xen needed. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "xen_domain.h"

#include <libxl_utils.h>

static libxl_domain_config cfg;
static struct vgpu_err err;
static struct vgpu_xen_disk disks[2];
static struct vgpu_xen_vif vifs[2];
static struct vgpu_xen_domain_spec spec;

static void setup(void)
{
	vgpu_err_clear(&err);
	memset(&cfg, 0, sizeof(cfg));
	disks[0] = (struct vgpu_xen_disk){ .path = "/dev/loop0", .vdev = "xvda", .writable = false };
	disks[1] = (struct vgpu_xen_disk){ .path = "/dev/vg/pod-rw", .vdev = "xvdb", .writable = true };
	vifs[0] = (struct vgpu_xen_vif){ .bridge = "xenbr0", .mac = "00:16:3e:0a:0b:0c" };
	vifs[1] = (struct vgpu_xen_vif){ 0 };
	spec = (struct vgpu_xen_domain_spec){
		.name = "pod-3f2a9c",
		.type = VGPU_XEN_GUEST_PV,
		.memory_mb = 256,
		.vcpus = 2,
		.kernel = "/usr/lib/vgpu-cri/guest/vmlinux.gz",
		.initrd = "/usr/lib/vgpu-cri/guest/initrd.img",
		.cmdline = "console=hvc0 rdinit=/init",
	};
	libxl_domain_config_init(&cfg);
}

static void teardown(void)
{
	libxl_domain_config_dispose(&cfg);
}

/* build into the fixture's cfg (disposing the previous one) */
static int build(void)
{
	libxl_domain_config_dispose(&cfg);
	vgpu_err_clear(&err);
	return vgpu_xen_config_build(&spec, &cfg, &err);
}

static int popcount_bitmap(const libxl_bitmap *b)
{
	int n = 0;
	for (uint32_t i = 0; i < b->size; i++)
		n += __builtin_popcount(b->map[i]);
	return n;
}

START_TEST(pv_spec_becomes_libxl_config)
{
	ck_assert_int_eq(build(), 0);
	ck_assert_int_eq(cfg.c_info.type, LIBXL_DOMAIN_TYPE_PV);
	ck_assert_str_eq(cfg.c_info.name, "pod-3f2a9c");
	ck_assert_int_eq(cfg.b_info.type, LIBXL_DOMAIN_TYPE_PV);
	ck_assert_uint_eq(cfg.b_info.max_memkb, 256 * 1024);
	ck_assert_uint_eq(cfg.b_info.target_memkb, 256 * 1024);
	ck_assert_int_eq(cfg.b_info.max_vcpus, 2);
	ck_assert_int_eq(popcount_bitmap(&cfg.b_info.avail_vcpus), 2);
	ck_assert(libxl_bitmap_test(&cfg.b_info.avail_vcpus, 0));
	ck_assert(libxl_bitmap_test(&cfg.b_info.avail_vcpus, 1));
	ck_assert_str_eq(cfg.b_info.kernel, "/usr/lib/vgpu-cri/guest/vmlinux.gz");
	ck_assert_str_eq(cfg.b_info.ramdisk, "/usr/lib/vgpu-cri/guest/initrd.img");
	ck_assert_str_eq(cfg.b_info.cmdline, "console=hvc0 rdinit=/init");
	ck_assert_int_eq(cfg.num_disks, 0);
	ck_assert_int_eq(cfg.num_nics, 0);
}
END_TEST

START_TEST(shutdown_actions_end_the_pod_but_keep_crashes)
{
	ck_assert_int_eq(build(), 0);
	ck_assert_int_eq(cfg.on_poweroff, LIBXL_ACTION_ON_SHUTDOWN_DESTROY);
	ck_assert_int_eq(cfg.on_reboot, LIBXL_ACTION_ON_SHUTDOWN_DESTROY);
	ck_assert_int_eq(cfg.on_crash, LIBXL_ACTION_ON_SHUTDOWN_PRESERVE);
}
END_TEST

START_TEST(pvh_and_optional_fields)
{
	spec.type = VGPU_XEN_GUEST_PVH;
	spec.initrd = NULL;
	spec.cmdline = NULL;
	spec.vcpus = 9;
	ck_assert_int_eq(build(), 0);
	ck_assert_int_eq(cfg.c_info.type, LIBXL_DOMAIN_TYPE_PVH);
	ck_assert_int_eq(cfg.b_info.type, LIBXL_DOMAIN_TYPE_PVH);
	ck_assert_ptr_null(cfg.b_info.ramdisk);
	ck_assert_ptr_null(cfg.b_info.cmdline);
	ck_assert_uint_eq(cfg.b_info.avail_vcpus.size, 2);
	ck_assert_int_eq(popcount_bitmap(&cfg.b_info.avail_vcpus), 9);
	ck_assert(libxl_bitmap_test(&cfg.b_info.avail_vcpus, 8));
	ck_assert(!libxl_bitmap_test(&cfg.b_info.avail_vcpus, 9));
}
END_TEST

START_TEST(disks_are_blkback_raw_with_mode)
{
	spec.disks = disks;
	spec.n_disks = 2;
	ck_assert_int_eq(build(), 0);
	ck_assert_int_eq(cfg.num_disks, 2);
	ck_assert_str_eq(cfg.disks[0].pdev_path, "/dev/loop0");
	ck_assert_str_eq(cfg.disks[0].vdev, "xvda");
	ck_assert_int_eq(cfg.disks[0].readwrite, 0);
	ck_assert_int_eq(cfg.disks[0].backend, LIBXL_DISK_BACKEND_PHY);
	ck_assert_int_eq(cfg.disks[0].format, LIBXL_DISK_FORMAT_RAW);
	ck_assert_int_eq(cfg.disks[0].backend_domid, 0);
	ck_assert_str_eq(cfg.disks[1].vdev, "xvdb");
	ck_assert_int_eq(cfg.disks[1].readwrite, 1);
}
END_TEST

START_TEST(vifs_carry_bridge_and_mac)
{
	static const libxl_mac want = { 0x00, 0x16, 0x3e, 0x0a, 0x0b, 0x0c }, zero = { 0 };

	spec.vifs = vifs;
	spec.n_vifs = 2;
	ck_assert_int_eq(build(), 0);
	ck_assert_int_eq(cfg.num_nics, 2);
	ck_assert_int_eq(cfg.nics[0].nictype, LIBXL_NIC_TYPE_VIF);
	ck_assert_str_eq(cfg.nics[0].bridge, "xenbr0");
	ck_assert_mem_eq(cfg.nics[0].mac, want, 6);
	ck_assert_int_eq(cfg.nics[0].devid, 0);
	/* unset fields are left to libxl's defaults: random mac, default bridge and script */
	ck_assert_ptr_null(cfg.nics[1].bridge);
	ck_assert_ptr_null(cfg.nics[1].script);
	ck_assert_mem_eq(cfg.nics[1].mac, zero, 6);
	ck_assert_int_eq(cfg.nics[1].devid, 1);
}
END_TEST

static void expect_invalid(const char *field)
{
	ck_assert_int_eq(build(), -EINVAL);
	ck_assert_int_eq(err.code, -EINVAL);
	ck_assert_msg(strstr(err.msg, field) != NULL, "message '%s' does not name '%s'", err.msg, field);
	/* the config stays disposable (teardown disposes it) and holds nothing */
	ck_assert_ptr_null(cfg.c_info.name);
}

START_TEST(bad_names_are_refused)
{
	static const char *const bad[] = { "", "pod a", "pod/a", "12345", "p\"q", "pöd",
		"0123456789012345678901234567890123456789012345678901234567890123" /* 64 */ };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		spec.name = bad[i];
		expect_invalid("name");
	}
	spec.name = NULL;
	expect_invalid("name");
	spec.name = "p12345678901234567890123456789012345678901234567890123456789012"; /* 63 */
	ck_assert_int_eq(build(), 0);
	spec.name = "k8s_pod.default-1";
	ck_assert_int_eq(build(), 0);
}
END_TEST

START_TEST(resources_out_of_range_are_refused)
{
	spec.memory_mb = 31;
	expect_invalid("memory");
	spec.memory_mb = (1ULL << 20) + 1;
	expect_invalid("memory");
	spec.memory_mb = 32;
	spec.vcpus = 0;
	expect_invalid("vcpus");
	spec.vcpus = 129;
	expect_invalid("vcpus");
	spec.vcpus = 128;
	ck_assert_int_eq(build(), 0);
	spec.type = (enum vgpu_xen_guest_type)7;
	expect_invalid("guest type");
}
END_TEST

START_TEST(paths_must_be_absolute)
{
	spec.kernel = NULL;
	expect_invalid("kernel");
	spec.kernel = "vmlinuz";
	expect_invalid("kernel");
	spec.kernel = "/boot/vmlinuz";
	spec.initrd = "initrd.img";
	expect_invalid("initrd");
	spec.initrd = NULL;
	spec.cmdline = "console=hvc0\nroot=/dev/evil";
	expect_invalid("cmdline");
	spec.cmdline = NULL;
	spec.console_log = "pod.log";
	expect_invalid("console log");
}
END_TEST

START_TEST(bad_disks_are_refused)
{
	struct vgpu_xen_disk d[2] = { { .path = "/dev/loop0", .vdev = "xvda" }, { .path = "/dev/loop1", .vdev = "xvda" } };

	spec.disks = d;
	spec.n_disks = 2;
	expect_invalid("used twice");
	d[1].vdev = "sda";
	expect_invalid("vdev");
	d[1].vdev = "xvd";
	expect_invalid("vdev");
	d[1].vdev = "xvdb1";
	expect_invalid("vdev");
	d[1].vdev = "xvdb";
	d[1].path = "loop1";
	expect_invalid("path");
	d[1].path = "/dev/loop1,w";
	expect_invalid("path");
	d[1].path = "/dev/loop1";
	ck_assert_int_eq(build(), 0);
	spec.n_disks = VGPU_XEN_MAX_DISKS + 1;
	expect_invalid("disks");
}
END_TEST

START_TEST(bad_vifs_are_refused)
{
	struct vgpu_xen_vif v = { .mac = "00:16:3e:0a:0b" };

	spec.vifs = &v;
	spec.n_vifs = 1;
	expect_invalid("mac");
	v.mac = "01:16:3e:0a:0b:0c"; /* multicast */
	expect_invalid("mac");
	v.mac = "00-16-3e-0a-0b-0c";
	expect_invalid("mac");
	v.mac = "00:16:3e:0a:0b:0g";
	expect_invalid("mac");
	v.mac = "00:16:3E:0A:0B:0C";
	ck_assert_int_eq(build(), 0);
	v.bridge = "a-bridge-name-too-long";
	expect_invalid("bridge");
	v.bridge = "br/0";
	expect_invalid("bridge");
}
END_TEST

START_TEST(libxl_errors_map_to_errno)
{
	ck_assert_int_eq(vgpu_xen_errno(0), 0);
	ck_assert_int_eq(vgpu_xen_errno(ERROR_NOMEM), -ENOMEM);
	ck_assert_int_eq(vgpu_xen_errno(ERROR_INVAL), -EINVAL);
	ck_assert_int_eq(vgpu_xen_errno(ERROR_DOMAIN_NOTFOUND), -ENOENT);
	ck_assert_int_eq(vgpu_xen_errno(ERROR_DEVICE_EXISTS), -EEXIST);
	ck_assert_int_eq(vgpu_xen_errno(ERROR_TIMEDOUT), -ETIMEDOUT);
	ck_assert_int_eq(vgpu_xen_errno(ERROR_LOCK_FAIL), -EBUSY);
	ck_assert_int_eq(vgpu_xen_errno(ERROR_NOPARAVIRT), -EOPNOTSUPP);
	ck_assert_int_eq(vgpu_xen_errno(ERROR_FAIL), -EIO);
	ck_assert_int_eq(vgpu_xen_errno(-999), -EIO);
}
END_TEST

START_TEST(dominfo_flags_give_one_state)
{
	libxl_dominfo d;
	struct vgpu_xen_domain_info info;

	libxl_dominfo_init(&d);
	d.domid = 7;
	d.blocked = true;
	d.current_memkb = 262144;
	d.vcpu_online = 1;
	vgpu_xen_info_from_dominfo(&info, &d);
	ck_assert_uint_eq(info.domid, 7);
	ck_assert_int_eq(info.state, VGPU_XEN_STATE_RUNNING);
	ck_assert_int_eq(info.shutdown_reason, -1);
	ck_assert_uint_eq(info.memory_kb, 262144);
	d.paused = true;
	vgpu_xen_info_from_dominfo(&info, &d);
	ck_assert_int_eq(info.state, VGPU_XEN_STATE_PAUSED);
	d.shutdown = true;
	d.shutdown_reason = LIBXL_SHUTDOWN_REASON_POWEROFF;
	vgpu_xen_info_from_dominfo(&info, &d);
	ck_assert_int_eq(info.state, VGPU_XEN_STATE_SHUTDOWN);
	ck_assert_int_eq(info.shutdown_reason, LIBXL_SHUTDOWN_REASON_POWEROFF);
	d.dying = true;
	vgpu_xen_info_from_dominfo(&info, &d);
	ck_assert_int_eq(info.state, VGPU_XEN_STATE_DYING);
	ck_assert_str_eq(vgpu_xen_state_name(info.state), "dying");
	libxl_dominfo_dispose(&d);
}
END_TEST

START_TEST(handler_config_fills_spec)
{
	struct vgpu_config config;
	const struct vgpu_handler_config *handler;
	struct vgpu_xen_domain_spec s = { .name = "pod-x" };

	vgpu_config_defaults(&config);
	handler = vgpu_config_handler(&config, "xen");
	ck_assert_ptr_nonnull(handler);
	vgpu_xen_spec_from_handler(&s, handler);
	ck_assert_int_eq(s.type, VGPU_XEN_GUEST_PV);
	ck_assert_uint_eq(s.memory_mb, (unsigned long long)handler->guest_memory_mb);
	ck_assert_uint_eq(s.vcpus, (unsigned int)handler->guest_vcpus);
	ck_assert_ptr_eq(s.kernel, handler->guest_kernel);
	ck_assert_str_eq(s.cmdline, "console=hvc0 quiet");
	ck_assert_str_eq(s.name, "pod-x");
	vgpu_config_free(&config);
}
END_TEST

START_TEST(consoled_log_path)
{
	char *p = vgpu_xen_consoled_log_path(NULL, "pod-a");
	ck_assert_str_eq(p, "/var/log/xen/console/guest-pod-a.log");
	free(p);
	p = vgpu_xen_consoled_log_path("/tmp/c", "pod-b");
	ck_assert_str_eq(p, "/tmp/c/guest-pod-b.log");
	free(p);
}
END_TEST

START_TEST(open_without_xen_is_enodev)
{
	struct vgpu_xen *xen = (struct vgpu_xen *)&xen;

	if (access("/proc/xen/capabilities", R_OK) == 0)
		return; /* running on Xen: covered by test/xen/ */
	ck_assert_int_eq(vgpu_xen_open(&xen, NULL, &err), -ENODEV);
	ck_assert_ptr_null(xen);
	ck_assert(strstr(err.msg, "Xen") != NULL || strstr(err.msg, "xen") != NULL);
}
END_TEST

START_TEST(pod_domain_names)
{
	const char *id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char name[VGPU_XEN_NAME_MAX + 1], prefix[VGPU_XEN_POD_ID_CHARS + 1];
	struct vgpu_xen_domain_spec s = { .type = VGPU_XEN_GUEST_PV, .memory_mb = 128, .vcpus = 1,
					  .kernel = "/k" };

	vgpu_xen_pod_domain_name(name, id, "web-1");
	ck_assert_str_eq(name, "vgpu-0123456789ab-web-1");
	/* characters a domain name cannot hold become '_'; the name is valid for libxl */
	vgpu_xen_pod_domain_name(name, id, "a b/c:d");
	ck_assert_str_eq(name, "vgpu-0123456789ab-a_b_c_d");
	s.name = name;
	ck_assert_int_eq(vgpu_xen_spec_validate(&s, &err), 0);
	/* long pod names are cut to 63 characters */
	vgpu_xen_pod_domain_name(name, id, "x123456789x123456789x123456789x123456789x123456789x123456789x123456789");
	ck_assert_uint_eq(strlen(name), VGPU_XEN_NAME_MAX);
	ck_assert_int_eq(vgpu_xen_spec_validate(&s, &err), 0);
	vgpu_xen_pod_domain_name(name, id, "");
	ck_assert_str_eq(name, "vgpu-0123456789ab");
	/* the prefix finds the pod again; other names are not ours */
	ck_assert(vgpu_xen_pod_domain_match("vgpu-0123456789ab-web-1", prefix));
	ck_assert_str_eq(prefix, "0123456789ab");
	ck_assert(vgpu_xen_pod_domain_match("vgpu-0123456789ab", prefix));
	ck_assert(!vgpu_xen_pod_domain_match("Domain-0", prefix));
	ck_assert(!vgpu_xen_pod_domain_match("vgpu-0123456789aX-web", prefix));
	ck_assert(!vgpu_xen_pod_domain_match("vgpu-0123456789a", prefix));
	ck_assert(!vgpu_xen_pod_domain_match("vgpu-0123456789abc-web", prefix));
}
END_TEST

START_TEST(pod_sizes_from_resources)
{
	struct vgpu_xen_domain_spec s = { .memory_mb = 256, .vcpus = 1 };

	vgpu_xen_pod_size(&s, 0, 0, 0); /* nothing asked: the handler's defaults stay */
	ck_assert_uint_eq(s.memory_mb, 256);
	ck_assert_uint_eq(s.vcpus, 1);
	vgpu_xen_pod_size(&s, 100LL << 20, 150000, 100000);
	ck_assert_uint_eq(s.memory_mb, 100 + VGPU_XEN_GUEST_OVERHEAD_MB);
	ck_assert_uint_eq(s.vcpus, 2); /* 1.5 CPUs round up */
	vgpu_xen_pod_size(&s, (100LL << 20) + 1, -1, 100000);
	ck_assert_uint_eq(s.memory_mb, 101 + VGPU_XEN_GUEST_OVERHEAD_MB);
	ck_assert_uint_eq(s.vcpus, 2);
	vgpu_xen_pod_size(&s, 1LL << 62, 1000LL * 100000, 100000);
	ck_assert_uint_eq(s.memory_mb, VGPU_XEN_MAX_MEMORY_MB);
	ck_assert_uint_eq(s.vcpus, VGPU_XEN_MAX_VCPUS);
}
END_TEST

static Suite *xen_config_suite(void)
{
	Suite *s = suite_create("xen_config");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "pv_config", pv_spec_becomes_libxl_config },
		{ "shutdown_actions", shutdown_actions_end_the_pod_but_keep_crashes },
		{ "pvh_optional", pvh_and_optional_fields },
		{ "disks", disks_are_blkback_raw_with_mode },
		{ "vifs", vifs_carry_bridge_and_mac },
		{ "bad_names", bad_names_are_refused },
		{ "bad_resources", resources_out_of_range_are_refused },
		{ "bad_paths", paths_must_be_absolute },
		{ "bad_disks", bad_disks_are_refused },
		{ "bad_vifs", bad_vifs_are_refused },
		{ "errno_map", libxl_errors_map_to_errno },
		{ "dominfo_state", dominfo_flags_give_one_state },
		{ "from_handler", handler_config_fills_spec },
		{ "consoled_log", consoled_log_path },
		{ "open_no_xen", open_without_xen_is_enodev },
		{ "pod_names", pod_domain_names },
		{ "pod_sizes", pod_sizes_from_resources },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_add_test(tc, cases[i].test);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	SRunner *runner = srunner_create(xen_config_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
