/* Config parsing: good, bad and edge inputs; errors must name file:line:column and the key. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "util.h"

static struct vgpu_config cfg;
static struct vgpu_err err;

static void setup(void)
{
	vgpu_config_defaults(&cfg);
	vgpu_err_clear(&err);
}

static void teardown(void)
{
	vgpu_config_free(&cfg);
}

/* Each parse starts from the defaults, as the daemon does. */
static int parse(const char *text)
{
	vgpu_config_free(&cfg);
	vgpu_config_defaults(&cfg);
	return vgpu_config_parse(&cfg, "test.yaml", text, strlen(text), &err);
}

START_TEST(defaults_are_documented_values)
{
	ck_assert_str_eq(cfg.socket_path, "/run/vgpu-cri/vgpu-cri.sock");
	ck_assert_str_eq(cfg.state_dir, "/var/lib/vgpu-cri");
	ck_assert_str_eq(cfg.cgroup_driver, "cgroupfs");
	ck_assert_int_eq(cfg.grpc_workers, 8);
	ck_assert_int_eq(cfg.n_handlers, 2);
	ck_assert_ptr_nonnull(vgpu_config_handler(&cfg, "runc"));
	ck_assert_ptr_nonnull(vgpu_config_handler(&cfg, "xen"));
	ck_assert_ptr_null(vgpu_config_handler(&cfg, "kata"));
}
END_TEST

START_TEST(empty_file_keeps_defaults)
{
	ck_assert_int_eq(parse(""), 0);
	ck_assert_str_eq(cfg.log_level, "info");
	ck_assert_int_eq(parse("# only a comment\n"), 0);
	ck_assert_str_eq(cfg.path, "test.yaml");
}
END_TEST

START_TEST(good_config_sets_typed_values)
{
	const char *text = "socket: /tmp/x/cri.sock\n"
			   "log_level: debug\n"
			   "cgroup_driver: systemd\n"
			   "grpc:\n  workers: 3\n  fast_workers: 1\n  shutdown_timeout_s: 0\n"
			   "images:\n  insecure_registries: [\"10.0.0.1:5000\", reg.local]\n"
			   "gpu:\n  backend: soft\n"
			   "default_runtime_handler: vm\n"
			   "runtime_handlers:\n  vm:\n    type: xen\n    guest_memory_mb: 512\n  plain:\n    type: runc\n"
			   "    runtime_path: /usr/local/bin/runc\n";
	ck_assert_msg(parse(text) == 0, "%s", err.msg);
	ck_assert_str_eq(cfg.socket_path, "/tmp/x/cri.sock");
	ck_assert_str_eq(cfg.log_level, "debug");
	ck_assert_str_eq(cfg.cgroup_driver, "systemd");
	ck_assert_int_eq(cfg.grpc_workers, 3);
	ck_assert_int_eq(cfg.grpc_fast_workers, 1);
	ck_assert_int_eq(cfg.shutdown_timeout_s, 0);
	ck_assert_str_eq(cfg.insecure_registries[0], "10.0.0.1:5000");
	ck_assert_str_eq(cfg.insecure_registries[1], "reg.local");
	ck_assert_ptr_null(cfg.insecure_registries[2]);
	ck_assert_str_eq(cfg.gpu_backend, "soft");
	ck_assert_int_eq(cfg.n_handlers, 2);
	const struct vgpu_handler_config *vm = vgpu_config_handler(&cfg, "vm");
	ck_assert_ptr_nonnull(vm);
	ck_assert_str_eq(vm->type, "xen");
	ck_assert_int_eq(vm->guest_memory_mb, 512);
	ck_assert_int_eq(vm->guest_vcpus, 1); /* per-type default */
	ck_assert_str_eq(vgpu_config_handler(&cfg, "plain")->runtime_path, "/usr/local/bin/runc");
	ck_assert_ptr_null(vgpu_config_handler(&cfg, "runc")); /* the set was replaced */
}
END_TEST

START_TEST(unknown_key_names_file_line_column_key)
{
	ck_assert_int_eq(parse("log_level: info\ngrpc:\n  wrkers: 3\n"), -EINVAL);
	ck_assert_msg(strstr(err.msg, "test.yaml:3:3:") != NULL, "%s", err.msg);
	ck_assert_msg(strstr(err.msg, "grpc.wrkers") != NULL, "%s", err.msg);
	ck_assert_msg(strstr(err.msg, "unknown key") != NULL, "%s", err.msg);
}
END_TEST

START_TEST(wrong_types_are_rejected)
{
	ck_assert_int_eq(parse("grpc:\n  workers: many\n"), -EINVAL);
	ck_assert_msg(strstr(err.msg, "test.yaml:2:12:") && strstr(err.msg, "grpc.workers"), "%s", err.msg);
	ck_assert_int_eq(parse("grpc:\n  workers: 0\n"), -EINVAL);
	ck_assert_msg(strstr(err.msg, "out of range"), "%s", err.msg);
	ck_assert_int_eq(parse("grpc:\n  workers: 99999999999999999999999\n"), -EINVAL);
	ck_assert_int_eq(parse("grpc:\n  workers: 4x\n"), -EINVAL);
	ck_assert_int_eq(parse("socket: [a, b]\n"), -EINVAL);
	ck_assert_msg(strstr(err.msg, "test.yaml:1:9:") && strstr(err.msg, "'socket'"), "%s", err.msg);
	ck_assert_int_eq(parse("log_level: loud\n"), -EINVAL);
	ck_assert_int_eq(parse("images:\n  insecure_registries: 127.0.0.1\n"), -EINVAL);
	ck_assert_int_eq(parse("images:\n  insecure_registries: [[a]]\n"), -EINVAL);
	ck_assert_int_eq(parse("grpc: 3\n"), -EINVAL);
	ck_assert_int_eq(parse("- a\n- b\n"), -EINVAL);
}
END_TEST

START_TEST(handler_errors)
{
	ck_assert_int_eq(parse("runtime_handlers:\n  a:\n    runtime_path: /x\n"), -EINVAL);
	ck_assert_msg(strstr(err.msg, "missing 'type'"), "%s", err.msg);
	ck_assert_int_eq(parse("runtime_handlers:\n  a:\n    type: kvm\n"), -EINVAL);
	ck_assert_int_eq(parse("runtime_handlers:\n  a:\n    type: runc\n    colour: red\n"), -EINVAL);
	ck_assert_msg(strstr(err.msg, "runtime_handlers.a.colour"), "%s", err.msg);
	ck_assert_int_eq(parse("runtime_handlers: {}\n"), -EINVAL);
	ck_assert_int_eq(parse("default_runtime_handler: nope\n"), -EINVAL);
	ck_assert_msg(strstr(err.msg, "no handler named 'nope'"), "%s", err.msg);
}
END_TEST

START_TEST(invalid_yaml_and_paths)
{
	ck_assert_int_eq(parse("grpc:\n  workers: [1,\n"), -EINVAL);
	ck_assert_msg(strstr(err.msg, "test.yaml:") && strstr(err.msg, "invalid YAML"), "%s", err.msg);
	ck_assert_int_eq(parse("socket: relative.sock\n"), -EINVAL);
	ck_assert_int_eq(parse("log_level: info\nlog_level: debug\n"), -EINVAL);
	ck_assert_msg(strstr(err.msg, "duplicate key"), "%s", err.msg);
	char long_path[200];
	memset(long_path, 'a', sizeof(long_path));
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	char text[256];
	snprintf(text, sizeof(text), "socket: %s\n", long_path);
	ck_assert_int_eq(parse(text), -EINVAL);
}
END_TEST

START_TEST(missing_file)
{
	ck_assert_int_eq(vgpu_config_load(&cfg, "/nonexistent/vgpu.yaml", true, &err), 0);
	ck_assert_int_eq(vgpu_config_load(&cfg, "/nonexistent/vgpu.yaml", false, &err), -ENOENT);
	ck_assert_msg(strstr(err.msg, "/nonexistent/vgpu.yaml"), "%s", err.msg);
}
END_TEST

START_TEST(printed_default_config_parses_back)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	ck_assert_ptr_nonnull(f);
	vgpu_config_print(&cfg, f);
	fclose(f);
	struct vgpu_config again;
	vgpu_config_defaults(&again);
	free(again.socket_path);
	again.socket_path = vgpu_strdup("/changed");
	int r = vgpu_config_parse(&again, "printed", buf, len, &err);
	ck_assert_msg(r == 0, "%s", err.msg);
	ck_assert_str_eq(again.socket_path, cfg.socket_path);
	ck_assert_int_eq(again.n_handlers, cfg.n_handlers);
	ck_assert_str_eq(again.insecure_registries[1], "localhost");
	char *j1 = vgpu_config_to_json(&cfg);
	char *j2 = vgpu_config_to_json(&again);
	/* same values; only config_path differs */
	ck_assert_ptr_nonnull(strstr(j1, "\"socket\":\"/run/vgpu-cri/vgpu-cri.sock\""));
	ck_assert_int_eq(strncmp(j1, j2, (size_t)(strstr(j1, "config_path") - j1)), 0);
	free(j1);
	free(j2);
	vgpu_config_free(&again);
	free(buf);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "defaults", defaults_are_documented_values },
		{ "empty", empty_file_keeps_defaults },
		{ "good", good_config_sets_typed_values },
		{ "unknown_key", unknown_key_names_file_line_column_key },
		{ "wrong_types", wrong_types_are_rejected },
		{ "handlers", handler_errors },
		{ "invalid", invalid_yaml_and_paths },
		{ "missing_file", missing_file },
		{ "print_roundtrip", printed_default_config_parses_back },
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
	SRunner *sr = srunner_create(config_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
