/* GPU pods in the daemon: annotation parsing, quantities, the broker on the soft TEST device,
 * per-pod sockets, injection, usage in CRI/Prometheus form, metrics address checks. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu.h"
#include "metrics_http.h"
#include "util.h"

static struct vgpu_err err;

START_TEST(quantities)
{
	uint64_t v = 0;
	ck_assert_int_eq(vgpu_quantity_parse("4Gi", &v), 0);
	ck_assert_uint_eq(v, 4ULL << 30);
	ck_assert_int_eq(vgpu_quantity_parse("64Mi", &v), 0);
	ck_assert_uint_eq(v, 64ULL << 20);
	ck_assert_int_eq(vgpu_quantity_parse("1G", &v), 0);
	ck_assert_uint_eq(v, 1000000000ULL);
	ck_assert_int_eq(vgpu_quantity_parse("123", &v), 0);
	ck_assert_uint_eq(v, 123);
	const char *bad[] = { "", "0", "0Gi", "-1Gi", "+1", "4GB", "4gi", "1.5Gi", "Gi", "99999999999Ti",
			      "18446744073709551616", " 4Gi", "4Gi " };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(vgpu_quantity_parse(bad[i], &v) == -EINVAL, "accepted '%s'", bad[i]);
}
END_TEST

static struct vgpu_handler_config handler(const char *mem, long long share)
{
	struct vgpu_handler_config h = { .name = (char *)"runc", .gpu_memory_default = (char *)mem,
					 .gpu_compute_default = share };
	return h;
}

START_TEST(requests_from_annotations)
{
	struct vgpu_handler_config h = handler("", 100);
	struct vgpu_gpu_request req;
	const char *k1[] = { "other", VGPU_ANNOTATION_GPU, VGPU_ANNOTATION_GPU_MEMORY, VGPU_ANNOTATION_GPU_COMPUTE };
	const char *v1[] = { "x", "true", "64Mi", "50" };
	ck_assert_int_eq(vgpu_gpu_parse_request(&h, 4, k1, v1, &req, &err), 0);
	ck_assert(req.enabled);
	ck_assert_uint_eq(req.quota_bytes, 64ULL << 20);
	ck_assert_uint_eq(req.compute_share, 50);

	/* no annotation: no GPU; handler defaults fill the rest */
	struct vgpu_handler_config h2 = handler("1Gi", 25);
	ck_assert_int_eq(vgpu_gpu_parse_request(&h2, 0, NULL, NULL, &req, &err), 0);
	ck_assert(!req.enabled);
	const char *k2[] = { VGPU_ANNOTATION_GPU };
	const char *v2[] = { "true" };
	ck_assert_int_eq(vgpu_gpu_parse_request(&h2, 1, k2, v2, &req, &err), 0);
	ck_assert_uint_eq(req.quota_bytes, 1ULL << 30);
	ck_assert_uint_eq(req.compute_share, 25);
}
END_TEST

START_TEST(bad_annotations_are_invalid_argument)
{
	struct vgpu_handler_config h = handler("", 100);
	struct vgpu_gpu_request req;
	struct {
		const char *key, *value, *needle;
	} cases[] = {
		{ VGPU_ANNOTATION_GPU, "yes", VGPU_ANNOTATION_GPU },
		{ VGPU_ANNOTATION_GPU_MEMORY, "lots", VGPU_ANNOTATION_GPU_MEMORY },
		{ VGPU_ANNOTATION_GPU_MEMORY, "0", VGPU_ANNOTATION_GPU_MEMORY },
		{ VGPU_ANNOTATION_GPU_COMPUTE, "0", VGPU_ANNOTATION_GPU_COMPUTE },
		{ VGPU_ANNOTATION_GPU_COMPUTE, "101", VGPU_ANNOTATION_GPU_COMPUTE },
		{ VGPU_ANNOTATION_GPU_COMPUTE, "50%", VGPU_ANNOTATION_GPU_COMPUTE },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *k[] = { cases[i].key };
		const char *v[] = { cases[i].value };
		ck_assert_int_eq(vgpu_gpu_parse_request(&h, 1, k, v, &req, &err), -EINVAL);
		ck_assert_msg(strstr(err.msg, cases[i].needle) && strstr(err.msg, cases[i].value), "%s", err.msg);
	}
}
END_TEST

START_TEST(metrics_address_loopback_only)
{
	struct sockaddr_storage sa;
	ck_assert_int_eq(vgpu_metrics_parse_address("127.0.0.1:9464", &sa, &err), 0);
	ck_assert_int_eq(sa.ss_family, AF_INET);
	ck_assert_int_eq(vgpu_metrics_parse_address("[::1]:0", &sa, &err), 0);
	ck_assert_int_eq(sa.ss_family, AF_INET6);
	ck_assert_int_eq(vgpu_metrics_parse_address("localhost:1", &sa, &err), 0);
	const char *bad[] = { "0.0.0.0:9464", "10.1.2.3:80", "[::]:80", "127.0.0.1", "127.0.0.1:99999", ":80",
			      "example.com:80", "127.0.0.1:80x" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(vgpu_metrics_parse_address(bad[i], &sa, &err) == -EINVAL, "accepted %s", bad[i]);
}
END_TEST

static struct vgpu_config cfg;
static char tmpdir[64];

static void soft_setup(void)
{
	vgpu_config_defaults(&cfg);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vgpu-gpu-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	free(cfg.run_dir);
	cfg.run_dir = vgpu_strdup(tmpdir);
	free(cfg.gpu_shim_path);
	cfg.gpu_shim_path = vgpu_asprintf("%s/libvgpu.so", tmpdir);
	FILE *f = fopen(cfg.gpu_shim_path, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	vgpu_err_clear(&err);
}

static void soft_teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
	vgpu_config_free(&cfg);
}

START_TEST(no_backend_refuses_gpu_pods)
{
	free(cfg.gpu_backend);
	cfg.gpu_backend = vgpu_strdup("none");
	struct vgpu_gpu *g = NULL;
	ck_assert_int_eq(vgpu_gpu_open(&cfg, &g, &err), 0);
	ck_assert_str_eq(vgpu_gpu_backend(g), "none");
	struct vgpu_gpu_request req = { .enabled = true, .compute_share = 100 };
	ck_assert_int_eq(vgpu_gpu_pod_add(g, "sb1", "ns", "p", "u", &req, &err), -ENODEV);
	ck_assert_msg(strstr(err.msg, "GPU"), "%s", err.msg);
	/* auto on a machine without libcuda: no GPU, still no failure */
	vgpu_gpu_close(g);
	free(cfg.gpu_backend);
	cfg.gpu_backend = vgpu_strdup("auto");
	ck_assert_int_eq(vgpu_gpu_open(&cfg, &g, &err), 0);
	if (strcmp(vgpu_gpu_backend(g), "none") == 0)
		ck_assert_int_eq(vgpu_gpu_pod_add(g, "sb1", "ns", "p", "u", &req, &err), -ENODEV);
	vgpu_gpu_close(g);
}
END_TEST

START_TEST(soft_pod_lifecycle_and_metrics)
{
	free(cfg.gpu_backend);
	cfg.gpu_backend = vgpu_strdup("soft");
	struct vgpu_gpu *g = NULL;
	ck_assert_msg(vgpu_gpu_open(&cfg, &g, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(vgpu_gpu_backend(g), "soft");
	struct vgpu_gpu_request req = { .enabled = true, .quota_bytes = 64 << 20, .compute_share = 75 };
	ck_assert_msg(vgpu_gpu_pod_add(g, "sb1", "team-a", "trainer", "uid-1", &req, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(vgpu_gpu_pod_add(g, "sb1", "team-a", "trainer", "uid-1", &req, &err), -EEXIST);

	char sock[160];
	snprintf(sock, sizeof(sock), "%s/gpu/sb1/vgpu.sock", tmpdir);
	struct stat st;
	ck_assert_int_eq(stat(sock, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));

	struct vgpu_gpu_injection inj;
	ck_assert_msg(vgpu_gpu_injection(g, "sb1", &inj, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(inj.shim_path, cfg.gpu_shim_path);
	ck_assert_ptr_nonnull(strstr(inj.socket_dir, "/gpu/sb1"));
	ck_assert_str_eq(inj.env[0], "VGPU_SOCKET=" VGPU_CONTAINER_SOCKET);
	vgpu_gpu_injection_free(&inj);
	ck_assert_int_eq(vgpu_gpu_injection(g, "other", &inj, &err), -ENOENT);

	char *text = vgpu_gpu_prometheus_text(g);
	ck_assert_ptr_nonnull(strstr(text, "vgpu_gpu_backend{backend=\"soft\"} 1"));
	ck_assert_ptr_nonnull(strstr(text, "vgpu_gpu_memory_limit_bytes{namespace=\"team-a\",pod=\"trainer\",uid=\"uid-1\"} 67108864"));
	ck_assert_ptr_nonnull(strstr(text, "vgpu_gpu_compute_share_percent{namespace=\"team-a\",pod=\"trainer\",uid=\"uid-1\"} 75"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE vgpu_gpu_busy_seconds_total counter"));
	free(text);
	char *json = vgpu_gpu_pod_info_json(g, "sb1");
	ck_assert_ptr_nonnull(json);
	ck_assert_ptr_nonnull(strstr(json, "\"vgpu_gpu_memory_limit_bytes\":67108864"));
	free(json);

	/* stop: the broker forgets the pod (no metrics), the socket is gone; remove: the dir too */
	ck_assert_int_eq(vgpu_gpu_pod_stop(g, "sb1", &err), 0);
	ck_assert_int_eq(vgpu_gpu_pod_stop(g, "sb1", &err), 0);
	ck_assert_ptr_null(vgpu_gpu_pod_info_json(g, "sb1"));
	text = vgpu_gpu_prometheus_text(g);
	ck_assert_ptr_null(strstr(text, "trainer"));
	free(text);
	ck_assert_int_eq(vgpu_gpu_pod_remove(g, "sb1", &err), 0);
	ck_assert_int_eq(vgpu_gpu_pod_remove(g, "sb1", &err), 0);
	char dir[160];
	snprintf(dir, sizeof(dir), "%s/gpu/sb1", tmpdir);
	ck_assert_int_eq(access(dir, F_OK), -1);
	/* after remove the same sandbox id may be added again */
	ck_assert_int_eq(vgpu_gpu_pod_add(g, "sb1", "team-a", "trainer", "uid-1", &req, &err), 0);
	vgpu_gpu_close(g);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("gpu");
	TCase *tc = tcase_create("parsing");
	tcase_add_test(tc, quantities);
	tcase_add_test(tc, requests_from_annotations);
	tcase_add_test(tc, bad_annotations_are_invalid_argument);
	tcase_add_test(tc, metrics_address_loopback_only);
	suite_add_tcase(s, tc);
	tc = tcase_create("soft_device");
	tcase_add_checked_fixture(tc, soft_setup, soft_teardown);
	tcase_add_test(tc, no_backend_refuses_gpu_pods);
	tcase_add_test(tc, soft_pod_lifecycle_and_metrics);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
