/* CNI module: config loading and selection, result and error-result parsing (1.0.0, 0.4.0, older),
 * capability filtering, and ADD/DEL orchestration (chaining, roll-back, the DEL cache) against fake
 * plugins written as shell scripts. Real plugins are in test/integration/test_cni.py. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cni.h"
#include "cni_internal.h"
#include "cni_pod.h"
#include "util.h"

static char root[64];
static char conf_dir[128], bin_dir[128], state_dir[128], log_dir[128];
static struct vgpu_config cfg;
static struct vgpu_cni *cni;
static struct vgpu_err err;

static void write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ck_assert_int_eq(vgpu_write_file_atomic(path, text, strlen(text), mode, NULL), 0);
}

/* Fake plugin: logs "COMMAND type CONTAINERID NETNS IFNAME ARGS" to log/calls, its stdin to
 * log/<type>.<COMMAND>, and prints a result naming itself (ADD) or nothing (DEL). */
static void fake_plugin(const char *type, const char *ip)
{
	char script[2048];
	snprintf(script, sizeof(script),
		 "#!/bin/sh\n"
		 "in=$(cat)\n"
		 "echo \"$CNI_COMMAND %s $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_ARGS $CNI_PATH\" >> %s/calls\n"
		 "printf '%%s' \"$in\" > %s/%s.$CNI_COMMAND\n"
		 "[ \"$CNI_COMMAND\" = ADD ] || exit 0\n"
		 "echo '{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"'$CNI_NETNS'\"}],"
		 "\"ips\":[{\"address\":\"%s/16\",\"gateway\":\"10.88.0.1\",\"interface\":0}]}'\n",
		 type, log_dir, log_dir, type, ip);
	write_file(bin_dir, type, script, 0755);
}

/* Fake plugin whose ADD fails with a CNI error result (DEL succeeds). */
static void failing_plugin(const char *type)
{
	char script[1024];
	snprintf(script, sizeof(script),
		 "#!/bin/sh\n"
		 "cat > /dev/null\n"
		 "echo \"$CNI_COMMAND %s $CNI_CONTAINERID\" >> %s/calls\n"
		 "[ \"$CNI_COMMAND\" = ADD ] || exit 0\n"
		 "echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"failed to allocate\",\"details\":\"range 10.99.0.0/16 full\"}'\n"
		 "echo 'some log line' >&2\n"
		 "exit 1\n",
		 type, log_dir);
	write_file(bin_dir, type, script, 0755);
}

static char *read_log(const char *name)
{
	char path[512], *text = NULL;
	snprintf(path, sizeof(path), "%s/%s", log_dir, name);
	if (vgpu_read_file(path, 1 << 20, &text, NULL, NULL) < 0)
		return vgpu_strdup("");
	return text;
}

static void setup(void)
{
	snprintf(root, sizeof(root), "/tmp/vgpu-cni-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(conf_dir, sizeof(conf_dir), "%s/conf", root);
	snprintf(bin_dir, sizeof(bin_dir), "%s/bin", root);
	snprintf(state_dir, sizeof(state_dir), "%s/state", root);
	snprintf(log_dir, sizeof(log_dir), "%s/log", root);
	ck_assert_int_eq(mkdir(conf_dir, 0755), 0);
	ck_assert_int_eq(mkdir(bin_dir, 0755), 0);
	ck_assert_int_eq(mkdir(log_dir, 0755), 0);
	vgpu_config_defaults(&cfg);
	free(cfg.cni_conf_dir);
	cfg.cni_conf_dir = vgpu_strdup(conf_dir);
	free(cfg.state_dir);
	cfg.state_dir = vgpu_strdup(state_dir);
	vgpu_strv_free(cfg.cni_bin_dirs);
	cfg.cni_bin_dirs = vgpu_calloc(3, sizeof(char *));
	cfg.cni_bin_dirs[0] = vgpu_asprintf("%s/none", root);
	cfg.cni_bin_dirs[1] = vgpu_strdup(bin_dir);
	ck_assert_int_eq(vgpu_cni_open(&cfg, &cni, &err), 0);
	vgpu_err_clear(&err);
}

static void teardown(void)
{
	vgpu_cni_close(cni);
	vgpu_config_free(&cfg);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", root);
}

static const char *list_text(const char *name, const char *plugins)
{
	static char buf[2048];
	snprintf(buf, sizeof(buf), "{\"cniVersion\":\"1.0.0\",\"name\":\"%s\",\"plugins\":[%s]}", name, plugins);
	return buf;
}

START_TEST(first_config_by_name_wins)
{
	fake_plugin("fake", "10.88.0.5");
	write_file(conf_dir, "20-b.conflist", list_text("netb", "{\"type\":\"fake\"}"), 0644);
	write_file(conf_dir, "10-a.conf", "{\"cniVersion\":\"0.4.0\",\"name\":\"neta\",\"type\":\"fake\"}", 0644);
	write_file(conf_dir, "05-ignored.txt", "not a config", 0644);
	char *name = vgpu_cni_network_name(cni);
	ck_assert_str_eq(name, "neta");
	free(name);
	char *msg = (char *)"x";
	ck_assert(vgpu_cni_ready(cni, &msg));
	ck_assert_ptr_null(msg);
}
END_TEST

START_TEST(invalid_configs_are_skipped_and_named)
{
	fake_plugin("fake", "10.88.0.5");
	write_file(conf_dir, "00-bad.conf", "{ not json", 0644);
	write_file(conf_dir, "01-noname.conflist", "{\"cniVersion\":\"1.0.0\",\"plugins\":[{\"type\":\"fake\"}]}", 0644);
	write_file(conf_dir, "02-version.conflist", "{\"cniVersion\":\"9.9.9\",\"name\":\"v\",\"plugins\":[{\"type\":\"fake\"}]}",
		   0644);
	write_file(conf_dir, "03-type.conflist", list_text("t", "{\"type\":\"../../bin/sh\"}"), 0644);
	write_file(conf_dir, "04-empty.conflist", list_text("e", ""), 0644);
	char *msg = NULL;
	ck_assert(!vgpu_cni_ready(cni, &msg));
	ck_assert_ptr_nonnull(strstr(msg, "00-bad.conf"));
	ck_assert_ptr_nonnull(strstr(msg, "not JSON"));
	free(msg);
	write_file(conf_dir, "50-good.conflist", list_text("good", "{\"type\":\"fake\"}"), 0644);
	ck_assert(vgpu_cni_ready(cni, NULL));
	char *name = vgpu_cni_network_name(cni);
	ck_assert_str_eq(name, "good");
	free(name);
}
END_TEST

START_TEST(no_config_is_not_ready)
{
	char *msg = NULL;
	ck_assert(!vgpu_cni_ready(cni, &msg));
	ck_assert_ptr_nonnull(strstr(msg, "no CNI network config in"));
	free(msg);
	struct vgpu_cni_pod pod = { .id = "abc", .netns = "/proc/self/ns/net" };
	ck_assert_int_eq(vgpu_cni_add(cni, &pod, NULL, &err), -ENETUNREACH);
	ck_assert_ptr_nonnull(strstr(err.msg, "sandbox abc: CNI: no CNI network config"));
	/* A missing directory too, also through the handle-less check. */
	free(cfg.cni_conf_dir);
	cfg.cni_conf_dir = vgpu_asprintf("%s/missing", root);
	ck_assert(!vgpu_cni_config_ready(&cfg, &msg));
	ck_assert_ptr_nonnull(strstr(msg, "cannot read CNI config directory"));
	free(msg);
}
END_TEST

START_TEST(missing_plugin_is_not_ready)
{
	fake_plugin("fake", "10.88.0.5");
	write_file(conf_dir, "10-a.conflist", list_text("a", "{\"type\":\"fake\"},{\"type\":\"nosuch\"}"), 0644);
	char *msg = NULL;
	ck_assert(!vgpu_cni_ready(cni, &msg));
	ck_assert_ptr_nonnull(strstr(msg, "plugin 'nosuch' not found in"));
	ck_assert_ptr_nonnull(strstr(msg, bin_dir));
	free(msg);
	/* ADD refuses before running anything. */
	struct vgpu_cni_pod pod = { .id = "abc", .netns = "/proc/self/ns/net" };
	ck_assert_int_eq(vgpu_cni_add(cni, &pod, NULL, &err), -ENETUNREACH);
	char *calls = read_log("calls");
	ck_assert_str_eq(calls, "");
	free(calls);
	/* A non-executable file is not a plugin. */
	write_file(bin_dir, "nosuch", "#!/bin/sh\n", 0644);
	ck_assert(!vgpu_cni_ready(cni, NULL));
	write_file(bin_dir, "nosuch", "#!/bin/sh\n", 0755);
	ck_assert(vgpu_cni_ready(cni, NULL));
}
END_TEST

START_TEST(config_reloads_when_dir_changes)
{
	fake_plugin("fake", "10.88.0.5");
	write_file(conf_dir, "10-a.conflist", list_text("first", "{\"type\":\"fake\"}"), 0644);
	char *name = vgpu_cni_network_name(cni);
	ck_assert_str_eq(name, "first");
	free(name);
	/* Rewritten in place (same name): the content counts, not only the directory. */
	write_file(conf_dir, "10-a.conflist", list_text("second", "{\"type\":\"fake\"}"), 0644);
	name = vgpu_cni_network_name(cni);
	ck_assert_str_eq(name, "second");
	free(name);
	write_file(conf_dir, "05-z.conflist", list_text("third", "{\"type\":\"fake\"}"), 0644);
	name = vgpu_cni_network_name(cni);
	ck_assert_str_eq(name, "third");
	free(name);
	char path[256];
	snprintf(path, sizeof(path), "%s/05-z.conflist", conf_dir);
	ck_assert_int_eq(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/10-a.conflist", conf_dir);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert(!vgpu_cni_ready(cni, NULL));
}
END_TEST

START_TEST(single_conf_becomes_list)
{
	json_object *list = NULL;
	ck_assert_int_eq(vgpu_cni_parse_config("x.conf", "{\"cniVersion\":\"0.3.1\",\"name\":\"n\",\"type\":\"bridge\",\"bridge\":\"cni0\"}",
					       &list, &err), 0);
	ck_assert_str_eq(vgpu_cni_list_name(list), "n");
	ck_assert_str_eq(vgpu_cni_list_version(list), "0.3.1");
	ck_assert_int_eq(vgpu_cni_list_len(list), 1);
	const char *type;
	json_object *p = vgpu_cni_list_plugin(list, 0, &type);
	ck_assert_str_eq(type, "bridge");
	json_object *v;
	ck_assert(json_object_object_get_ex(p, "bridge", &v));
	json_object_put(list);
	/* A .conf holding "plugins" is a list. */
	ck_assert_int_eq(vgpu_cni_parse_config("y.conf", list_text("l", "{\"type\":\"a\"},{\"type\":\"b\"}"), &list, &err), 0);
	ck_assert_int_eq(vgpu_cni_list_len(list), 2);
	json_object_put(list);
	ck_assert_int_eq(vgpu_cni_parse_config("z.conf", "[1,2]", &list, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "z.conf: not a JSON object"));
	ck_assert_int_eq(vgpu_cni_parse_config("w.conf", list_text("bad name!", "{\"type\":\"a\"}"), &list, &err), -EINVAL);
	ck_assert(!vgpu_cni_version_supported("1.1.5"));
	ck_assert(vgpu_cni_version_supported("0.4.0"));
}
END_TEST

START_TEST(result_1_0_0)
{
	const char *text = "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"cni0\",\"mac\":\"aa:bb:cc:dd:ee:ff\"},"
			   "{\"name\":\"veth1\",\"mac\":\"11:22:33:44:55:66\"},{\"name\":\"eth0\",\"mac\":\"de:ad:be:ef:00:01\","
			   "\"sandbox\":\"/run/netns/x\"}],\"ips\":[{\"address\":\"fd00::5/64\",\"interface\":2},"
			   "{\"address\":\"10.88.0.5/16\",\"gateway\":\"10.88.0.1\",\"interface\":2}],"
			   "\"routes\":[{\"dst\":\"0.0.0.0/0\"}],\"dns\":{}}";
	struct vgpu_cni_result r;
	ck_assert_int_eq(vgpu_cni_parse_result("net", text, &r, &err), 0);
	ck_assert_str_eq(r.network, "net");
	ck_assert_str_eq(r.cni_version, "1.0.0");
	ck_assert_int_eq(r.n_interfaces, 3);
	ck_assert_str_eq(r.interfaces[2].name, "eth0");
	ck_assert_str_eq(r.interfaces[2].sandbox, "/run/netns/x");
	ck_assert_str_eq(r.interfaces[0].sandbox, "");
	ck_assert_int_eq(r.n_ips, 2);
	ck_assert(r.ips[0].ipv6);
	ck_assert_str_eq(r.ips[0].ip, "fd00::5");
	ck_assert_str_eq(r.ips[1].address, "10.88.0.5/16");
	ck_assert_str_eq(r.ips[1].gateway, "10.88.0.1");
	ck_assert_int_eq(r.ips[1].interface, 2);
	/* IPv4 first for the pod's primary address. */
	ck_assert_str_eq(vgpu_cni_result_primary_ip(&r), "10.88.0.5");
	ck_assert_str_eq(r.json, text);
	vgpu_cni_result_free(&r);
}
END_TEST

START_TEST(result_0_4_0_and_older)
{
	const char *text = "{\"cniVersion\":\"0.4.0\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"/x\"}],"
			   "\"ips\":[{\"version\":\"4\",\"address\":\"10.22.0.9/24\",\"gateway\":\"10.22.0.1\",\"interface\":0}]}";
	struct vgpu_cni_result r;
	ck_assert_int_eq(vgpu_cni_parse_result("net", text, &r, &err), 0);
	ck_assert_str_eq(r.cni_version, "0.4.0");
	ck_assert_int_eq(r.n_ips, 1);
	ck_assert_str_eq(r.ips[0].ip, "10.22.0.9");
	ck_assert(!r.ips[0].ipv6);
	ck_assert_int_eq(r.ips[0].interface, 0);
	vgpu_cni_result_free(&r);
	ck_assert_int_eq(vgpu_cni_parse_result("net", "{\"cniVersion\":\"0.2.0\",\"ip4\":{\"ip\":\"10.1.2.3/16\"}}", &r, &err), 0);
	ck_assert_int_eq(r.n_ips, 1);
	ck_assert_str_eq(vgpu_cni_result_primary_ip(&r), "10.1.2.3");
	ck_assert_int_eq(r.ips[0].interface, -1);
	vgpu_cni_result_free(&r);
	/* An empty result (no IPs) is a result. */
	ck_assert_int_eq(vgpu_cni_parse_result("net", "{\"cniVersion\":\"1.0.0\"}", &r, &err), 0);
	ck_assert_str_eq(vgpu_cni_result_primary_ip(&r), "");
	vgpu_cni_result_free(&r);
}
END_TEST

START_TEST(bad_results_are_errors)
{
	struct vgpu_cni_result r;
	ck_assert_int_eq(vgpu_cni_parse_result("net", "garbage", &r, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "CNI network net: result is not a JSON object"));
	ck_assert_int_eq(vgpu_cni_parse_result("net", "{\"ips\":[{\"address\":\"1.2.3.4/8\",\"interface\":3}]}", &r, &err),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "interface 3 out of range"));
	ck_assert_int_eq(vgpu_cni_parse_result("net", "{\"ips\":[{\"gateway\":\"1.2.3.4\"}]}", &r, &err), -EINVAL);
	ck_assert_int_eq(vgpu_cni_parse_result("net", "{\"ips\":{}}", &r, &err), -EINVAL);
}
END_TEST

START_TEST(error_results_are_described)
{
	char buf[256];
	vgpu_cni_describe_failure("{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"invalid config\",\"details\":\"no subnet\"}",
				  "ignored", 1 << 8, buf, sizeof(buf));
	ck_assert_str_eq(buf, "invalid config (code 7): no subnet");
	vgpu_cni_describe_failure("{\"code\":100,\"msg\":\"plain\"}", "", 1 << 8, buf, sizeof(buf));
	ck_assert_str_eq(buf, "plain (code 100)");
	vgpu_cni_describe_failure("", "first\nlast line\n\n", 2 << 8, buf, sizeof(buf));
	ck_assert_str_eq(buf, "last line");
	vgpu_cni_describe_failure("", "", 3 << 8, buf, sizeof(buf));
	ck_assert_str_eq(buf, "exit status 3, no error message");
	vgpu_cni_describe_failure("not json", "", 9, buf, sizeof(buf));
	ck_assert_str_eq(buf, "killed by signal 9");
}
END_TEST

static const char *obj_get(json_object *o, const char *path1, const char *path2)
{
	json_object *a = NULL, *b = NULL;
	if (!json_object_object_get_ex(o, path1, &a))
		return NULL;
	if (!path2)
		return json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN);
	if (!json_object_object_get_ex(a, path2, &b))
		return NULL;
	return json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN);
}

START_TEST(capabilities_are_filtered_per_plugin)
{
	json_object *list = NULL;
	ck_assert_int_eq(vgpu_cni_parse_config("c.conflist",
					       list_text("net", "{\"type\":\"bridge\",\"runtimeConfig\":{\"stale\":1}},"
								"{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true,\"bandwidth\":false}},"
								"{\"type\":\"bandwidth\",\"capabilities\":{\"bandwidth\":true,\"dns\":true}}"),
					       &list, &err), 0);
	struct vgpu_cni_port_mapping ports[] = {
		{ .container_port = 80, .host_port = 8080, .protocol = "TCP", .host_ip = "127.0.0.1" },
		{ .container_port = 53, .host_port = 0, .protocol = "UDP" }, /* no host port: not mapped */
		{ .container_port = 53, .host_port = 5353, .protocol = "UDP" },
	};
	struct vgpu_cni_bandwidth bw = { .ingress_rate = 1000000, .ingress_burst = 2000000 };
	struct vgpu_cni_pod pod = { .id = "x", .ports = ports, .n_ports = 3, .bandwidth = &bw };
	json_object *rc = vgpu_cni_runtime_config(&pod);
	ck_assert_str_eq(json_object_to_json_string_ext(rc, JSON_C_TO_STRING_PLAIN),
			 "{\"portMappings\":[{\"hostPort\":8080,\"containerPort\":80,\"protocol\":\"tcp\",\"hostIP\":\"127.0.0.1\"},"
			 "{\"hostPort\":5353,\"containerPort\":53,\"protocol\":\"udp\"}],"
			 "\"bandwidth\":{\"ingressRate\":1000000,\"ingressBurst\":2000000}}");
	json_object *prev = json_tokener_parse("{\"cniVersion\":\"1.0.0\",\"ips\":[]}");

	json_object *c0 = vgpu_cni_plugin_config(list, 0, rc, NULL);
	ck_assert_str_eq(obj_get(c0, "name", NULL), "\"net\"");
	ck_assert_str_eq(obj_get(c0, "cniVersion", NULL), "\"1.0.0\"");
	ck_assert_ptr_null(obj_get(c0, "runtimeConfig", NULL)); /* no capabilities: none, not even a stale one */
	ck_assert_ptr_null(obj_get(c0, "prevResult", NULL));
	json_object *c1 = vgpu_cni_plugin_config(list, 1, rc, prev);
	ck_assert_ptr_nonnull(obj_get(c1, "runtimeConfig", "portMappings"));
	ck_assert_ptr_null(obj_get(c1, "runtimeConfig", "bandwidth")); /* declared false */
	ck_assert_str_eq(obj_get(c1, "prevResult", NULL), "{\"cniVersion\":\"1.0.0\",\"ips\":[]}");
	json_object *c2 = vgpu_cni_plugin_config(list, 2, rc, prev);
	ck_assert_ptr_null(obj_get(c2, "runtimeConfig", "portMappings"));
	ck_assert_ptr_nonnull(obj_get(c2, "runtimeConfig", "bandwidth"));
	ck_assert_ptr_null(obj_get(c2, "runtimeConfig", "dns")); /* declared, but the pod has none */
	json_object_put(c0);
	json_object_put(c1);
	json_object_put(c2);

	const char *servers[] = { "10.96.0.10", NULL }, *searches[] = { "svc.cluster.local", NULL };
	struct vgpu_cni_pod pod2 = { .id = "y", .dns_servers = servers, .dns_searches = searches };
	json_object *rc2 = vgpu_cni_runtime_config(&pod2);
	ck_assert_str_eq(json_object_to_json_string_ext(rc2, JSON_C_TO_STRING_PLAIN),
			 "{\"dns\":{\"servers\":[\"10.96.0.10\"],\"searches\":[\"svc.cluster.local\"],\"options\":[]}}");
	json_object *c3 = vgpu_cni_plugin_config(list, 2, rc2, NULL);
	ck_assert_ptr_nonnull(obj_get(c3, "runtimeConfig", "dns"));
	json_object_put(c3);
	json_object_put(rc2);
	json_object_put(rc);
	json_object_put(prev);
	json_object_put(list);
}
END_TEST

static const char *const servers[] = { "10.96.0.10", NULL };

static struct vgpu_cni_pod test_pod(void)
{
	static const struct vgpu_cni_port_mapping ports[] = { { .container_port = 80, .host_port = 8080 } };
	struct vgpu_cni_pod pod = { .id = "sb1", .netns = "/var/run/netns/test", .namespace_ = "default",
				    .name = "web", .uid = "u-1", .ports = ports, .n_ports = 1, .dns_servers = servers };
	return pod;
}

START_TEST(add_chains_and_del_reverses)
{
	fake_plugin("first", "10.88.0.5");
	fake_plugin("second", "10.88.0.6");
	write_file(conf_dir, "10.conflist",
		   list_text("net", "{\"type\":\"first\"},{\"type\":\"second\",\"capabilities\":{\"portMappings\":true}}"), 0644);
	struct vgpu_cni_pod pod = test_pod();
	struct vgpu_cni_result r;
	ck_assert_msg(vgpu_cni_add(cni, &pod, &r, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(vgpu_cni_result_primary_ip(&r), "10.88.0.6"); /* the last plugin's result */
	ck_assert_str_eq(r.network, "net");
	vgpu_cni_result_free(&r);
	char *calls = read_log("calls");
	char expect[1024];
	const char *args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=u-1";
	snprintf(expect, sizeof(expect), "ADD first sb1 /var/run/netns/test eth0 %s %s/none:%s\n"
		 "ADD second sb1 /var/run/netns/test eth0 %s %s/none:%s\n", args, root, bin_dir, args, root, bin_dir);
	ck_assert_str_eq(calls, expect);
	free(calls);
	char *in1 = read_log("first.ADD"), *in2 = read_log("second.ADD");
	ck_assert_ptr_null(strstr(in1, "prevResult"));
	ck_assert_ptr_null(strstr(in1, "runtimeConfig"));
	ck_assert_ptr_nonnull(strstr(in2, "\"prevResult\":{\"cniVersion\":\"1.0.0\""));
	ck_assert_ptr_nonnull(strstr(in2, "10.88.0.5/16"));
	ck_assert_ptr_nonnull(strstr(in2, "\"runtimeConfig\":{\"portMappings\":[{\"hostPort\":8080,\"containerPort\":80"));
	free(in1);
	free(in2);
	/* The cached result serves status after a restart (a new handle). */
	vgpu_cni_close(cni);
	ck_assert_int_eq(vgpu_cni_open(&cfg, &cni, &err), 0);
	ck_assert_int_eq(vgpu_cni_cached_result(cni, "sb1", &r, &err), 0);
	ck_assert_str_eq(vgpu_cni_result_primary_ip(&r), "10.88.0.6");
	vgpu_cni_result_free(&r);

	/* DEL: reverse order, with the final result as prevResult, from the cache even though the
	 * config is gone now; the netns path no longer exists, so CNI_NETNS is empty. */
	char path[256];
	snprintf(path, sizeof(path), "%s/10.conflist", conf_dir);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(truncate(strcat(strcpy(path, log_dir), "/calls"), 0), 0);
	struct vgpu_cni_pod del = { .id = "sb1" };
	ck_assert_msg(vgpu_cni_del(cni, &del, &err) == 0, "%s", err.msg);
	calls = read_log("calls");
	snprintf(expect, sizeof(expect), "DEL second sb1  eth0 %s %s/none:%s\nDEL first sb1  eth0 %s %s/none:%s\n", args, root,
		 bin_dir, args, root, bin_dir);
	ck_assert_str_eq(calls, expect);
	free(calls);
	char *d2 = read_log("second.DEL");
	ck_assert_ptr_nonnull(strstr(d2, "\"prevResult\":{\"cniVersion\":\"1.0.0\""));
	ck_assert_ptr_nonnull(strstr(d2, "10.88.0.6/16"));
	ck_assert_ptr_nonnull(strstr(d2, "\"portMappings\""));
	free(d2);
	ck_assert_int_eq(vgpu_cni_cached_result(cni, "sb1", &r, &err), -ENOENT);
	/* Idempotent: nothing left to delete is success, and runs no plugin. */
	ck_assert_int_eq(truncate(path, 0), 0);
	ck_assert_int_eq(vgpu_cni_del(cni, &del, &err), 0);
	calls = read_log("calls");
	ck_assert_str_eq(calls, "");
	free(calls);
}
END_TEST

START_TEST(failed_add_is_rolled_back)
{
	fake_plugin("first", "10.88.0.5");
	failing_plugin("broken");
	fake_plugin("third", "10.88.0.7");
	write_file(conf_dir, "10.conflist", list_text("net", "{\"type\":\"first\"},{\"type\":\"broken\"},{\"type\":\"third\"}"),
		   0644);
	struct vgpu_cni_pod pod = test_pod();
	struct vgpu_cni_result r;
	ck_assert_int_eq(vgpu_cni_add(cni, &pod, &r, &err), -EIO);
	ck_assert_str_eq(err.msg, "sandbox sb1: CNI network net: plugin broken ADD failed: failed to allocate (code 11): "
				  "range 10.99.0.0/16 full");
	ck_assert_ptr_null(r.ips);
	char *calls = read_log("calls");
	/* The plugins that ran (the failing one included) are deleted in reverse; third never ran. */
	ck_assert_ptr_nonnull(strstr(calls, "ADD first"));
	char *rest = strstr(calls, "ADD broken sb1\n");
	ck_assert_ptr_nonnull(rest);
	ck_assert_ptr_nonnull(strstr(rest, "DEL broken sb1\nDEL first sb1"));
	ck_assert_ptr_null(strstr(calls, "third"));
	free(calls);
	/* Nothing cached: a later DEL has nothing to do. */
	ck_assert_int_eq(vgpu_cni_cached_result(cni, "sb1", &r, &err), -ENOENT);
	char path[256];
	snprintf(path, sizeof(path), "%s/cni/sb1.json", state_dir);
	ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

START_TEST(failed_rollback_keeps_cache_for_del)
{
	/* A plugin whose ADD works and whose DEL fails until a flag file exists, then one whose ADD
	 * fails (its own DEL failing is only logged: its config may be what is broken). */
	char script[1024];
	snprintf(script, sizeof(script),
		 "#!/bin/sh\ncat >/dev/null\necho \"$CNI_COMMAND stubborn\" >> %s/calls\n"
		 "[ \"$CNI_COMMAND\" = ADD ] && echo '{\"cniVersion\":\"1.0.0\"}' && exit 0\n"
		 "[ -e %s/ok ] && exit 0\necho '{\"code\":999,\"msg\":\"stuck\"}'\nexit 1\n",
		 log_dir, log_dir);
	write_file(bin_dir, "stubborn", script, 0755);
	write_file(bin_dir, "broken", "#!/bin/sh\ncat >/dev/null\necho '{\"code\":7,\"msg\":\"bad config\"}'\nexit 1\n", 0755);
	write_file(conf_dir, "10.conflist", list_text("net", "{\"type\":\"stubborn\"},{\"type\":\"broken\"}"), 0644);
	struct vgpu_cni_pod pod = test_pod();
	ck_assert_int_eq(vgpu_cni_add(cni, &pod, NULL, &err), -EIO);
	ck_assert_ptr_nonnull(strstr(err.msg, "plugin broken ADD failed: bad config (code 7)"));
	struct vgpu_cni_pod del = { .id = "sb1" };
	ck_assert_int_eq(vgpu_cni_del(cni, &del, &err), -EIO);
	ck_assert_ptr_nonnull(strstr(err.msg, "plugin stubborn DEL failed: stuck"));
	write_file(log_dir, "ok", "", 0644);
	ck_assert_int_eq(vgpu_cni_del(cni, &del, &err), 0);
	ck_assert_int_eq(vgpu_cni_del(cni, &del, &err), 0);
	char *calls = read_log("calls");
	ck_assert_str_eq(calls, "ADD stubborn\nDEL stubborn\nDEL stubborn\nDEL stubborn\n"); /* broken: not again */
	free(calls);
}
END_TEST

START_TEST(bad_pod_input_is_refused)
{
	fake_plugin("fake", "10.88.0.5");
	write_file(conf_dir, "10.conflist", list_text("net", "{\"type\":\"fake\"}"), 0644);
	struct vgpu_cni_pod pod = test_pod();
	pod.id = "../etc";
	ck_assert_int_eq(vgpu_cni_add(cni, &pod, NULL, &err), -EINVAL);
	pod = test_pod();
	pod.netns = NULL;
	ck_assert_int_eq(vgpu_cni_add(cni, &pod, NULL, &err), -EINVAL);
	pod = test_pod();
	pod.name = "a;K8S_POD_UID=evil";
	ck_assert_int_eq(vgpu_cni_add(cni, &pod, NULL, &err), -EINVAL);
	pod = test_pod();
	pod.ifname = "a/b";
	ck_assert_int_eq(vgpu_cni_add(cni, &pod, NULL, &err), -EINVAL);
	char *calls = read_log("calls");
	ck_assert_str_eq(calls, "");
	free(calls);
}
END_TEST

START_TEST(plugin_timeout_and_garbage)
{
	write_file(bin_dir, "garbage", "#!/bin/sh\ncat >/dev/null\necho 'this is not json'\n", 0755);
	write_file(conf_dir, "10.conflist", list_text("net", "{\"type\":\"garbage\"}"), 0644);
	struct vgpu_cni_pod pod = test_pod();
	ck_assert_int_eq(vgpu_cni_add(cni, &pod, NULL, &err), -EIO);
	ck_assert_ptr_nonnull(strstr(err.msg, "plugin garbage ADD: result is not a JSON object"));
	/* A plugin that exits but leaves a child holding stdout open does not hang ADD. */
	write_file(bin_dir, "garbage", "#!/bin/sh\ncat >/dev/null\n(sleep 3 &)\necho '{\"cniVersion\":\"1.0.0\"}'\n", 0755);
	long long t0 = vgpu_now_ns();
	ck_assert_msg(vgpu_cni_add(cni, &pod, NULL, &err) == 0, "%s", err.msg);
	ck_assert_int_lt(vgpu_now_ns() - t0, 10000000000LL);
	ck_assert_int_eq(vgpu_cni_del(cni, &pod, &err), 0);
	/* exec with a short deadline kills the plugin. */
	struct vgpu_cni_run run;
	char *env[] = { NULL };
	char path[256];
	snprintf(path, sizeof(path), "%s/slow", bin_dir);
	write_file(bin_dir, "slow", "#!/bin/sh\nexec sleep 30\n", 0755);
	t0 = vgpu_now_ns();
	ck_assert_int_eq(vgpu_cni_exec(path, env, "{}", 200, &run, &err), -ETIMEDOUT);
	ck_assert_int_lt(vgpu_now_ns() - t0, 5000000000LL);
}
END_TEST

START_TEST(bandwidth_quantities)
{
	uint64_t v = 0;
	ck_assert_int_eq(vgpu_parse_bandwidth("10M", &v), 0);
	ck_assert_uint_eq(v, 10000000ULL);
	ck_assert_int_eq(vgpu_parse_bandwidth("1Gi", &v), 0);
	ck_assert_uint_eq(v, 1ULL << 30);
	ck_assert_int_eq(vgpu_parse_bandwidth("500k", &v), 0);
	ck_assert_uint_eq(v, 500000ULL);
	ck_assert_int_eq(vgpu_parse_bandwidth("123", &v), 0);
	ck_assert_uint_eq(v, 123ULL);
	ck_assert_int_eq(vgpu_parse_bandwidth("10X", &v), -EINVAL);
	ck_assert_int_eq(vgpu_parse_bandwidth("-1M", &v), -EINVAL);
	ck_assert_int_eq(vgpu_parse_bandwidth("0", &v), -EINVAL);
	ck_assert_int_eq(vgpu_parse_bandwidth("99999999999999999999Ti", &v), -EINVAL);
	ck_assert_int_eq(vgpu_parse_bandwidth("", &v), -EINVAL);
}
END_TEST

/* The CRI glue: a PodSandboxConfig's ports, DNS, bandwidth annotations and metadata reach the
 * plugins; the netns is pinned for the pod's life and unpinned by teardown. Pins this process's
 * own namespace (the fake plugins never enter it); needs root for the bind mount. */
START_TEST(pod_config_reaches_plugins)
{
	if (geteuid() != 0)
		return;
	fake_plugin("fake", "10.88.0.9");
	write_file(conf_dir, "10.conflist",
		   list_text("net", "{\"type\":\"fake\",\"capabilities\":{\"portMappings\":true,\"dns\":true,\"bandwidth\":true}}"),
		   0644);
	free(cfg.run_dir);
	cfg.run_dir = vgpu_asprintf("%s/run", root);
	Runtime__V1__PodSandboxConfig pod = RUNTIME__V1__POD_SANDBOX_CONFIG__INIT;
	Runtime__V1__PodSandboxMetadata md = RUNTIME__V1__POD_SANDBOX_METADATA__INIT;
	md.name = "web";
	md.namespace_ = "prod";
	md.uid = "uid-7";
	pod.metadata = &md;
	Runtime__V1__PortMapping pm = RUNTIME__V1__PORT_MAPPING__INIT, *pms[] = { &pm };
	pm.protocol = RUNTIME__V1__PROTOCOL__UDP;
	pm.container_port = 53;
	pm.host_port = 5353;
	pm.host_ip = "127.0.0.1";
	pod.port_mappings = pms;
	pod.n_port_mappings = 1;
	Runtime__V1__DNSConfig dns = RUNTIME__V1__DNSCONFIG__INIT;
	char *srv[] = { "10.96.0.10" }, *opt[] = { "ndots:5" };
	dns.servers = srv;
	dns.n_servers = 1;
	dns.options = opt;
	dns.n_options = 1;
	pod.dns_config = &dns;
	Runtime__V1__PodSandboxConfig__AnnotationsEntry an = RUNTIME__V1__POD_SANDBOX_CONFIG__ANNOTATIONS_ENTRY__INIT,
							 *ans[] = { &an };
	an.key = "kubernetes.io/egress-bandwidth";
	an.value = "1M";
	pod.annotations = ans;
	pod.n_annotations = 1;
	struct vgpu_cni_result r;
	ck_assert_msg(vgpu_pod_network_setup(&cfg, "sb9", getpid(), &pod, &r, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(vgpu_cni_result_primary_ip(&r), "10.88.0.9");
	vgpu_cni_result_free(&r);
	char *netns = vgpu_pod_netns_path(&cfg, "sb9");
	ck_assert(vgpu_netns_exists(netns));
	char *in = read_log("fake.ADD"), *calls = read_log("calls");
	ck_assert_ptr_nonnull(strstr(in, "\"portMappings\":[{\"hostPort\":5353,\"containerPort\":53,\"protocol\":\"udp\",\"hostIP\":\"127.0.0.1\"}]"));
	ck_assert_ptr_nonnull(strstr(in, "\"dns\":{\"servers\":[\"10.96.0.10\"],\"searches\":[],\"options\":[\"ndots:5\"]}"));
	ck_assert_ptr_nonnull(strstr(in, "\"bandwidth\":{\"egressRate\":1000000,\"egressBurst\":4294967295}"));
	ck_assert_ptr_nonnull(strstr(calls, "K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb9;K8S_POD_UID=uid-7"));
	ck_assert_ptr_nonnull(strstr(calls, netns));
	free(in);
	free(calls);
	char *ip = NULL, **more = NULL;
	vgpu_pod_network_ips(&cfg, "sb9", &ip, &more);
	ck_assert_str_eq(ip, "10.88.0.9");
	ck_assert_ptr_null(more[0]);
	free(ip);
	vgpu_strv_free(more);
	ck_assert_msg(vgpu_pod_network_teardown(&cfg, "sb9", &err) == 0, "%s", err.msg);
	ck_assert(!vgpu_netns_exists(netns));
	ck_assert_int_eq(access(netns, F_OK), -1);
	ck_assert_int_eq(vgpu_pod_network_teardown(&cfg, "sb9", &err), 0);
	vgpu_pod_network_ips(&cfg, "sb9", &ip, &more);
	ck_assert_str_eq(ip, "");
	free(ip);
	vgpu_strv_free(more);
	/* A failed ADD unpins the netns again; a bad annotation fails before anything. */
	failing_plugin("fake");
	ck_assert_int_eq(vgpu_pod_network_setup(&cfg, "sb9", getpid(), &pod, NULL, &err), -EIO);
	ck_assert(!vgpu_netns_exists(netns));
	an.value = "lots";
	ck_assert_int_eq(vgpu_pod_network_setup(&cfg, "sb9", getpid(), &pod, NULL, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "kubernetes.io/egress-bandwidth: 'lots' is not a bandwidth"));
	free(netns);
}
END_TEST

static Suite *cni_suite(void)
{
	Suite *s = suite_create("cni");
	const struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "first_by_name", first_config_by_name_wins },
		{ "invalid_skipped", invalid_configs_are_skipped_and_named },
		{ "no_config", no_config_is_not_ready },
		{ "missing_plugin", missing_plugin_is_not_ready },
		{ "reload", config_reloads_when_dir_changes },
		{ "single_conf", single_conf_becomes_list },
		{ "result_1_0_0", result_1_0_0 },
		{ "result_0_4_0", result_0_4_0_and_older },
		{ "bad_results", bad_results_are_errors },
		{ "error_results", error_results_are_described },
		{ "capabilities", capabilities_are_filtered_per_plugin },
		{ "add_del", add_chains_and_del_reverses },
		{ "rollback", failed_add_is_rolled_back },
		{ "rollback_fails", failed_rollback_keeps_cache_for_del },
		{ "bad_input", bad_pod_input_is_refused },
		{ "timeout_garbage", plugin_timeout_and_garbage },
		{ "bandwidth", bandwidth_quantities },
		{ "pod_glue", pod_config_reaches_plugins },
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
	SRunner *sr = srunner_create(cni_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
