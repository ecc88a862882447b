/* OCI spec generation (cri/oci_spec.c): command merge, env, user resolution inside the rootfs,
 * mounts, namespaces, capabilities, security options, resources and the errors for bad configs. */
#include <check.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "oci_spec.h"
#include "util.h"

static char rootfs[] = "/tmp/oci-spec-test-XXXXXX";
static Runtime__V1__ContainerConfig cc;
static Runtime__V1__ContainerMetadata md;
static Runtime__V1__ImageSpec image;
static Runtime__V1__LinuxContainerConfig lcc;
static Runtime__V1__LinuxContainerSecurityContext sc;
static Runtime__V1__LinuxContainerResources res;
static struct vgpu_image_config img;

static void write_file(const char *rel, const char *text)
{
	char *p = vgpu_asprintf("%s/%s", rootfs, rel);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	free(p);
}

static void setup(void)
{
	strcpy(rootfs, "/tmp/oci-spec-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(rootfs));
	char *etc = vgpu_asprintf("%s/etc", rootfs);
	ck_assert_int_eq(mkdir(etc, 0755), 0);
	free(etc);
	write_file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n"
				 "broken line\nnobody:x:65534:65534::/:/bin/false\n");
	write_file("etc/group", "root:x:0:\napp:x:1001:\nvideo:x:44:app,other\naudio:x:29:other\n");
	runtime__v1__container_config__init(&cc);
	runtime__v1__container_metadata__init(&md);
	runtime__v1__image_spec__init(&image);
	runtime__v1__linux_container_config__init(&lcc);
	runtime__v1__linux_container_security_context__init(&sc);
	runtime__v1__linux_container_resources__init(&res);
	md.name = "c";
	image.image = "busybox";
	cc.metadata = &md;
	cc.image = &image;
	cc.linux = &lcc;
	lcc.security_context = &sc;
	lcc.resources = &res;
	static char *ep[] = { "/entry", NULL }, *cmd[] = { "img-arg", NULL }, *env[] = { "PATH=/bin", "A=img", NULL };
	img = (struct vgpu_image_config){ .entrypoint = ep, .cmd = cmd, .env = env, .working_dir = "/work", .user = "" };
}

static void teardown(void)
{
	char *cmd = vgpu_asprintf("rm -rf %s", rootfs);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
}

static json_object *gen(const struct vgpu_oci_input *extra)
{
	struct vgpu_oci_input in = { .container = &cc, .image = &img, .rootfs = rootfs, .cgroups_path = "/pod/c" };
	if (extra)
		in = *extra;
	char *json = NULL;
	struct vgpu_err err = { 0 };
	int r = vgpu_oci_spec_generate(&in, &json, &err);
	ck_assert_msg(r == 0, "generate: %s", err.msg);
	json_object *o = json_tokener_parse(json);
	ck_assert_ptr_nonnull(o);
	free(json);
	return o;
}

static int gen_err(struct vgpu_err *err)
{
	struct vgpu_oci_input in = { .container = &cc, .image = &img, .rootfs = rootfs };
	char *json = NULL;
	int r = vgpu_oci_spec_generate(&in, &json, err);
	ck_assert_ptr_null(json);
	return r;
}

static json_object *at(json_object *o, const char *path)
{
	char *copy = vgpu_strdup(path), *save = NULL;
	for (char *k = strtok_r(copy, ".", &save); k && o; k = strtok_r(NULL, ".", &save)) {
		if (json_object_is_type(o, json_type_array))
			o = json_object_array_get_idx(o, (size_t)atoi(k));
		else if (!json_object_object_get_ex(o, k, &o))
			o = NULL;
	}
	free(copy);
	return o;
}

static const char *str_at(json_object *o, const char *path)
{
	json_object *v = at(o, path);
	return v ? json_object_get_string(v) : NULL;
}

static bool array_has(json_object *a, const char *s)
{
	for (size_t i = 0; a && i < json_object_array_length(a); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(a, i)), s) == 0)
			return true;
	return false;
}

static json_object *mount_at(json_object *spec, const char *dest)
{
	json_object *mounts = at(spec, "mounts");
	for (size_t i = 0; i < json_object_array_length(mounts); i++) {
		json_object *m = json_object_array_get_idx(mounts, i);
		if (strcmp(str_at(m, "destination"), dest) == 0)
			return m;
	}
	return NULL;
}

START_TEST(test_args_merge)
{
	char **argv = NULL;
	ck_assert_int_eq(vgpu_oci_process_args(&cc, &img, &argv, NULL), 0);
	ck_assert_str_eq(argv[0], "/entry");
	ck_assert_str_eq(argv[1], "img-arg");
	ck_assert_ptr_null(argv[2]);
	vgpu_strv_free(argv);
	char *args[] = { "x", "y" };
	cc.args = args;
	cc.n_args = 2;
	ck_assert_int_eq(vgpu_oci_process_args(&cc, &img, &argv, NULL), 0);
	ck_assert_str_eq(argv[0], "/entry");
	ck_assert_str_eq(argv[1], "x");
	ck_assert_str_eq(argv[2], "y");
	vgpu_strv_free(argv);
	/* command replaces the entrypoint and, with it, the image's cmd */
	char *command[] = { "/bin/sh" };
	cc.command = command;
	cc.n_command = 1;
	cc.n_args = 0;
	ck_assert_int_eq(vgpu_oci_process_args(&cc, &img, &argv, NULL), 0);
	ck_assert_str_eq(argv[0], "/bin/sh");
	ck_assert_ptr_null(argv[1]);
	vgpu_strv_free(argv);
	struct vgpu_image_config empty = { 0 };
	cc.n_command = 0;
	struct vgpu_err err = { 0 };
	ck_assert_int_eq(vgpu_oci_process_args(&cc, &empty, &argv, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "no command"));
}
END_TEST

START_TEST(test_env_and_cwd)
{
	Runtime__V1__KeyValue kv1 = RUNTIME__V1__KEY_VALUE__INIT, kv2 = RUNTIME__V1__KEY_VALUE__INIT;
	kv1.key = "A";
	kv1.value = (ProtobufCBinaryData){ 3, (uint8_t *)"cri" };
	kv2.key = "B";
	kv2.value = (ProtobufCBinaryData){ 0, NULL };
	Runtime__V1__KeyValue *kvs[] = { &kv1, &kv2 };
	cc.envs = kvs;
	cc.n_envs = 2;
	struct vgpu_oci_input in = { .container = &cc, .image = &img, .rootfs = rootfs, .hostname = "podhost" };
	json_object *spec = gen(&in);
	json_object *env = at(spec, "process.env");
	ck_assert(array_has(env, "PATH=/bin"));
	ck_assert(array_has(env, "A=cri"));
	ck_assert(!array_has(env, "A=img"));
	ck_assert(array_has(env, "B="));
	ck_assert(array_has(env, "HOSTNAME=podhost"));
	ck_assert_str_eq(str_at(spec, "process.cwd"), "/work");
	ck_assert_str_eq(str_at(spec, "root.path"), rootfs);
	ck_assert_str_eq(str_at(spec, "hostname"), "podhost");
	json_object_put(spec);
	cc.working_dir = "relative";
	struct vgpu_err err = { 0 };
	ck_assert_int_eq(gen_err(&err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "working_dir"));
	cc.working_dir = "";
	kv1.key = "BAD=KEY";
	ck_assert_int_eq(gen_err(&err), -EINVAL);
}
END_TEST

START_TEST(test_user_resolution)
{
	struct vgpu_oci_user u;
	struct vgpu_err err = { 0 };
	ck_assert_int_eq(vgpu_oci_resolve_user(rootfs, NULL, "app", &u, &err), 0);
	ck_assert_int_eq(u.uid, 1000);
	ck_assert_int_eq(u.gid, 1001);
	ck_assert_int_eq(u.n_additional, 1);
	ck_assert_int_eq(u.additional[0], 44); /* video lists app */
	free(u.additional);
	ck_assert_int_eq(vgpu_oci_resolve_user(rootfs, NULL, "1000:audio", &u, &err), 0);
	ck_assert_int_eq(u.uid, 1000);
	ck_assert_int_eq(u.gid, 29);
	free(u.additional);
	ck_assert_int_eq(vgpu_oci_resolve_user(rootfs, NULL, "4242:4343", &u, &err), 0);
	ck_assert_int_eq(u.uid, 4242);
	ck_assert_int_eq(u.gid, 4343);
	free(u.additional);
	ck_assert_int_eq(vgpu_oci_resolve_user(rootfs, NULL, "ghost", &u, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "ghost"));
	ck_assert_int_eq(vgpu_oci_resolve_user(rootfs, NULL, "app:nogroup", &u, &err), -EINVAL);
	/* security context wins over the image */
	Runtime__V1__Int64Value uid = RUNTIME__V1__INT64_VALUE__INIT, gid = RUNTIME__V1__INT64_VALUE__INIT;
	uid.value = 65534;
	sc.run_as_user = &uid;
	int64_t groups[] = { 5, 44 };
	sc.supplemental_groups = groups;
	sc.n_supplemental_groups = 2;
	ck_assert_int_eq(vgpu_oci_resolve_user(rootfs, &sc, "app", &u, &err), 0);
	ck_assert_int_eq(u.uid, 65534);
	ck_assert_int_eq(u.gid, 65534);
	ck_assert_int_eq(u.n_additional, 2);
	free(u.additional);
	gid.value = 7;
	sc.run_as_group = &gid;
	ck_assert_int_eq(vgpu_oci_resolve_user(rootfs, &sc, NULL, &u, &err), 0);
	ck_assert_int_eq(u.gid, 7);
	free(u.additional);
	uid.value = -1;
	ck_assert_int_eq(vgpu_oci_resolve_user(rootfs, &sc, NULL, &u, &err), -EINVAL);
	sc.run_as_user = NULL;
	sc.run_as_group = NULL;
	sc.run_as_username = "app";
	sc.n_supplemental_groups = 0;
	ck_assert_int_eq(vgpu_oci_resolve_user(rootfs, &sc, NULL, &u, &err), 0);
	ck_assert_int_eq(u.uid, 1000);
	free(u.additional);
}
END_TEST

START_TEST(test_passwd_symlink_stays_in_rootfs)
{
	/* An image whose /etc/passwd points at the host's file must not read the host's. */
	char *host = vgpu_asprintf("%s.host-passwd", rootfs);
	FILE *f = fopen(host, "w");
	fputs("evil:x:4444:4444::/:/bin/sh\n", f);
	fclose(f);
	char *pw = vgpu_asprintf("%s/etc/passwd", rootfs);
	unlink(pw);
	ck_assert_int_eq(symlink(host, pw), 0);
	struct vgpu_oci_user u;
	struct vgpu_err err = { 0 };
	ck_assert_int_eq(vgpu_oci_resolve_user(rootfs, NULL, "evil", &u, &err), -EINVAL);
	unlink(host);
	free(host);
	free(pw);
}
END_TEST

START_TEST(test_namespaces_and_pod_files)
{
	struct vgpu_oci_input in = {
		.container = &cc, .image = &img, .rootfs = rootfs,
		.net = { .path = "/proc/10/ns/net" }, .ipc = { .path = "/proc/10/ns/ipc" },
		.uts = { .path = "/proc/10/ns/uts" }, .pid = { 0 },
		.hostname = "h", .hosts_path = "/s/hosts", .resolv_path = "/s/resolv.conf",
		.hostname_path = "/s/hostname", .shm_path = "/r/shm", .termination_log_path = "/c/term",
	};
	json_object *spec = gen(&in);
	json_object *ns = at(spec, "linux.namespaces");
	bool seen_pid = false, seen_net = false;
	for (size_t i = 0; i < json_object_array_length(ns); i++) {
		json_object *n = json_object_array_get_idx(ns, i);
		const char *t = str_at(n, "type");
		if (!strcmp(t, "pid")) {
			seen_pid = true;
			ck_assert_ptr_null(at(n, "path"));
		}
		if (!strcmp(t, "network")) {
			seen_net = true;
			ck_assert_str_eq(str_at(n, "path"), "/proc/10/ns/net");
		}
		ck_assert_str_ne(t, "cgroup"); /* v1 */
	}
	ck_assert(seen_pid && seen_net);
	ck_assert_ptr_null(at(spec, "hostname")); /* joins the pod's UTS namespace */
	ck_assert_str_eq(str_at(mount_at(spec, "/etc/resolv.conf"), "source"), "/s/resolv.conf");
	ck_assert_str_eq(str_at(mount_at(spec, "/etc/hosts"), "source"), "/s/hosts");
	ck_assert_str_eq(str_at(mount_at(spec, "/dev/shm"), "source"), "/r/shm");
	ck_assert_str_eq(str_at(mount_at(spec, "/dev/termination-log"), "source"), "/c/term");
	ck_assert_str_eq(str_at(mount_at(spec, "/proc"), "type"), "proc");
	json_object_put(spec);
	in.net = (struct vgpu_oci_ns){ .host = true };
	in.pid = (struct vgpu_oci_ns){ .host = true };
	in.cgroup_v2 = true;
	spec = gen(&in);
	ns = at(spec, "linux.namespaces");
	bool seen_cgroup = false;
	for (size_t i = 0; i < json_object_array_length(ns); i++) {
		const char *t = str_at(json_object_array_get_idx(ns, i), "type");
		ck_assert_str_ne(t, "network");
		ck_assert_str_ne(t, "pid");
		seen_cgroup |= !strcmp(t, "cgroup");
	}
	ck_assert(seen_cgroup);
	json_object_put(spec);
}
END_TEST

START_TEST(test_user_mounts)
{
	Runtime__V1__Mount m1 = RUNTIME__V1__MOUNT__INIT, m2 = RUNTIME__V1__MOUNT__INIT;
	m1.container_path = "/data";
	m1.host_path = rootfs;
	m1.readonly = true;
	m1.propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER;
	m2.container_path = "/etc/hosts"; /* kubelet's own /etc/hosts replaces the pod's */
	m2.host_path = "/etc/hosts";
	Runtime__V1__Mount *ms[] = { &m1, &m2 };
	cc.mounts = ms;
	cc.n_mounts = 2;
	struct vgpu_oci_input in = { .container = &cc, .image = &img, .rootfs = rootfs, .hosts_path = "/s/hosts" };
	json_object *spec = gen(&in);
	json_object *d = mount_at(spec, "/data");
	ck_assert_ptr_nonnull(d);
	ck_assert(array_has(at(d, "options"), "ro"));
	ck_assert(array_has(at(d, "options"), "rslave"));
	ck_assert(array_has(at(d, "options"), "rbind"));
	ck_assert_str_eq(str_at(mount_at(spec, "/etc/hosts"), "source"), "/etc/hosts");
	json_object_put(spec);
	struct vgpu_err err = { 0 };
	m1.host_path = "/does/not/exist";
	ck_assert_int_eq(gen_err(&err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, "/does/not/exist"));
	m1.host_path = "relative";
	ck_assert_int_eq(gen_err(&err), -EINVAL);
	m1.host_path = rootfs;
	m1.container_path = "data";
	ck_assert_int_eq(gen_err(&err), -EINVAL);
}
END_TEST

START_TEST(test_devices)
{
	Runtime__V1__Device dev = RUNTIME__V1__DEVICE__INIT;
	dev.host_path = "/dev/null";
	dev.container_path = "/dev/mynull";
	dev.permissions = "rw";
	Runtime__V1__Device *ds[] = { &dev };
	cc.devices = ds;
	cc.n_devices = 1;
	json_object *spec = gen(NULL);
	ck_assert_str_eq(str_at(spec, "linux.devices.0.path"), "/dev/mynull");
	ck_assert_str_eq(str_at(spec, "linux.devices.0.type"), "c");
	ck_assert_int_eq(json_object_get_int(at(spec, "linux.devices.0.major")), 1);
	ck_assert_int_eq(json_object_get_int(at(spec, "linux.devices.0.minor")), 3);
	ck_assert(!json_object_get_boolean(at(spec, "linux.resources.devices.0.allow")));
	ck_assert_str_eq(str_at(spec, "linux.resources.devices.1.access"), "rw");
	json_object_put(spec);
	struct vgpu_err err = { 0 };
	dev.host_path = "/etc/passwd";
	ck_assert_int_eq(gen_err(&err), -EINVAL);
	dev.host_path = "/dev/nope";
	ck_assert_int_eq(gen_err(&err), -ENOENT);
}
END_TEST

START_TEST(test_capabilities_and_security)
{
	Runtime__V1__Capability caps = RUNTIME__V1__CAPABILITY__INIT;
	char *add[] = { "NET_ADMIN", "CAP_SYS_TIME" }, *drop[] = { "KILL" };
	caps.add_capabilities = add;
	caps.n_add_capabilities = 2;
	caps.drop_capabilities = drop;
	caps.n_drop_capabilities = 1;
	sc.capabilities = &caps;
	sc.no_new_privs = true;
	sc.readonly_rootfs = true;
	Runtime__V1__SecurityProfile seccomp = RUNTIME__V1__SECURITY_PROFILE__INIT;
	seccomp.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__RuntimeDefault;
	sc.seccomp = &seccomp;
	json_object *spec = gen(NULL);
	json_object *bounding = at(spec, "process.capabilities.bounding");
	ck_assert(array_has(bounding, "CAP_NET_ADMIN"));
	ck_assert(array_has(bounding, "CAP_SYS_TIME"));
	ck_assert(array_has(bounding, "CAP_CHOWN"));
	ck_assert(!array_has(bounding, "CAP_KILL"));
	ck_assert(!array_has(bounding, "CAP_SYS_ADMIN"));
	ck_assert(json_object_get_boolean(at(spec, "process.noNewPrivileges")));
	ck_assert(json_object_get_boolean(at(spec, "root.readonly")));
	ck_assert_str_eq(str_at(spec, "linux.seccomp.defaultAction"), "SCMP_ACT_ALLOW");
	ck_assert(array_has(at(spec, "linux.seccomp.syscalls.0.names"), "kexec_load"));
	ck_assert(array_has(at(spec, "linux.maskedPaths"), "/proc/kcore"));
	ck_assert(array_has(at(spec, "linux.readonlyPaths"), "/proc/sys"));
	json_object_put(spec);
	/* drop ALL keeps explicit adds */
	char *all[] = { "ALL" };
	caps.drop_capabilities = all;
	seccomp.profile_type = RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined;
	spec = gen(NULL);
	bounding = at(spec, "process.capabilities.bounding");
	ck_assert_int_eq(json_object_array_length(bounding), 2);
	ck_assert_ptr_null(at(spec, "linux.seccomp"));
	json_object_put(spec);
	struct vgpu_err err = { 0 };
	char *bad[] = { "FLY" };
	caps.add_capabilities = bad;
	caps.n_add_capabilities = 1;
	ck_assert_int_eq(gen_err(&err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "FLY"));
	caps.n_add_capabilities = 0;
	/* privileged needs a privileged pod */
	sc.privileged = true;
	ck_assert_int_eq(gen_err(&err), -EINVAL);
	Runtime__V1__PodSandboxConfig pod = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
	Runtime__V1__LinuxPodSandboxConfig lp = RUNTIME__V1__LINUX_POD_SANDBOX_CONFIG__INIT;
	Runtime__V1__LinuxSandboxSecurityContext psc = RUNTIME__V1__LINUX_SANDBOX_SECURITY_CONTEXT__INIT;
	psc.privileged = true;
	lp.security_context = &psc;
	pod.linux = &lp;
	struct vgpu_oci_input in = { .container = &cc, .pod = &pod, .image = &img, .rootfs = rootfs };
	spec = gen(&in);
	ck_assert(array_has(at(spec, "process.capabilities.bounding"), "CAP_SYS_ADMIN"));
	ck_assert_ptr_null(at(spec, "linux.maskedPaths"));
	ck_assert(json_object_get_boolean(at(spec, "linux.resources.devices.0.allow")));
	json_object_put(spec);
}
END_TEST

START_TEST(test_resources)
{
	res.cpu_shares = 512;
	res.cpu_quota = 50000;
	res.cpu_period = 100000;
	res.memory_limit_in_bytes = 64 << 20;
	res.oom_score_adj = 500;
	res.cpuset_cpus = "0-1";
	json_object *spec = gen(NULL);
	ck_assert_int_eq(json_object_get_int64(at(spec, "linux.resources.cpu.shares")), 512);
	ck_assert_int_eq(json_object_get_int64(at(spec, "linux.resources.cpu.quota")), 50000);
	ck_assert_int_eq(json_object_get_int64(at(spec, "linux.resources.memory.limit")), 64 << 20);
	ck_assert_str_eq(str_at(spec, "linux.resources.cpu.cpus"), "0-1");
	ck_assert_int_eq(json_object_get_int(at(spec, "process.oomScoreAdj")), 500);
	ck_assert_str_eq(str_at(spec, "linux.cgroupsPath"), "/pod/c");
	json_object_put(spec);
	struct {
		long long *field;
		long long value;
	} bad[] = {
		{ (long long *)&res.memory_limit_in_bytes, 1 },   { (long long *)&res.memory_limit_in_bytes, -2 },
		{ (long long *)&res.cpu_shares, 1LL << 40 },      { (long long *)&res.cpu_quota, 10 },
		{ (long long *)&res.cpu_period, 5 },              { (long long *)&res.oom_score_adj, -2000 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		long long saved = *bad[i].field;
		*bad[i].field = bad[i].value;
		struct vgpu_err err = { 0 };
		ck_assert_int_eq(vgpu_oci_check_resources(&res, &err), -EINVAL);
		ck_assert_int_eq(gen_err(&err), -EINVAL);
		*bad[i].field = saved;
	}
	char *json = NULL;
	ck_assert_int_eq(vgpu_oci_resources_json(&res, false, &json, NULL), 0);
	json_object *o = json_tokener_parse(json);
	ck_assert_int_eq(json_object_get_int64(at(o, "memory.limit")), 64 << 20);
	json_object_put(o);
	free(json);
}
END_TEST

/* tty: terminal true and TERM=xterm unless the image or config set one; no tty: terminal false. */
START_TEST(test_terminal)
{
	json_object *spec = gen(NULL);
	ck_assert(!json_object_get_boolean(at(spec, "process.terminal")));
	ck_assert_ptr_nonnull(at(spec, "process.terminal"));
	ck_assert(!array_has(at(spec, "process.env"), "TERM=xterm"));
	json_object_put(spec);
	cc.tty = true;
	cc.stdin = true;
	spec = gen(NULL);
	ck_assert(json_object_get_boolean(at(spec, "process.terminal")));
	ck_assert(array_has(at(spec, "process.env"), "TERM=xterm"));
	json_object_put(spec);
	Runtime__V1__KeyValue kv = RUNTIME__V1__KEY_VALUE__INIT;
	kv.key = "TERM";
	kv.value = (ProtobufCBinaryData){ 5, (uint8_t *)"vt100" };
	Runtime__V1__KeyValue *kvs[] = { &kv };
	cc.envs = kvs;
	cc.n_envs = 1;
	spec = gen(NULL);
	ck_assert(array_has(at(spec, "process.env"), "TERM=vt100"));
	ck_assert(!array_has(at(spec, "process.env"), "TERM=xterm"));
	json_object_put(spec);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("oci_spec");
	struct {
		const char *name;
		const TTest *fn;
	} cases[] = {
		{ "args_merge", test_args_merge },
		{ "env_and_cwd", test_env_and_cwd },
		{ "user_resolution", test_user_resolution },
		{ "passwd_symlink_stays_in_rootfs", test_passwd_symlink_stays_in_rootfs },
		{ "namespaces_and_pod_files", test_namespaces_and_pod_files },
		{ "user_mounts", test_user_mounts },
		{ "devices", test_devices },
		{ "capabilities_and_security", test_capabilities_and_security },
		{ "resources", test_resources },
		{ "terminal", test_terminal },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_add_test(tc, cases[i].fn);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
