/* Streaming server without a client: start/stop, URL shape, request validation, one-time tokens
 * (limit, expiry) and RPCs answering UNIMPLEMENTED for a backend without the operation. The wire
 * protocols are tested in test/integration/test_streaming.py. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "streaming.h"
#include "streaming_test_backend.h"

static struct vgpu_err err;

static struct vgpu_streaming *start(long long ttl_ms, size_t max_tokens, bool empty_backend)
{
	struct vgpu_stream_backend b = { 0 };
	if (!empty_backend)
		vgpu_stream_test_backend_init(&b);
	struct vgpu_streaming_opts o = { .address = "127.0.0.1:0", .token_ttl_ms = ttl_ms, .max_tokens = max_tokens };
	struct vgpu_streaming *s = NULL;
	ck_assert_msg(vgpu_streaming_start(&o, &b, &s, &err) == 0, "%s", err.msg);
	return s;
}

static char *cmd_true[] = { "true", NULL };

START_TEST(url_shape)
{
	struct vgpu_streaming *s = start(0, 0, false);
	const char *base = vgpu_streaming_base_url(s);
	ck_assert_int_eq(strncmp(base, "http://127.0.0.1:", 17), 0);
	ck_assert_int_gt(atoi(base + 17), 0);
	struct vgpu_stream_exec_req r = { .container_id = "c1", .cmd = cmd_true, .want_stdout = true };
	char *url = NULL;
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, false, &url, &err), 0);
	ck_assert_int_eq(strncmp(url, base, strlen(base)), 0);
	ck_assert_int_eq(strncmp(url + strlen(base), "/exec/", 6), 0);
	ck_assert_uint_eq(strlen(url + strlen(base) + 6), 32);
	char *url2 = NULL;
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, false, &url2, &err), 0);
	ck_assert_str_ne(url, url2); /* tokens differ */
	free(url);
	free(url2);
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, true, &url, &err), 0);
	ck_assert_ptr_nonnull(strstr(url, "/attach/"));
	free(url);
	ck_assert_int_eq(vgpu_streaming_mint_port_forward(s, "pod", &url, &err), 0);
	ck_assert_ptr_nonnull(strstr(url, "/portforward/"));
	free(url);
	vgpu_streaming_stop(s);
}
END_TEST

START_TEST(validation)
{
	struct vgpu_streaming *s = start(0, 0, false);
	char *url = NULL;
	struct vgpu_stream_exec_req r = { .container_id = "c1", .cmd = cmd_true, .tty = true, .want_stdout = true,
					  .want_stderr = true };
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, false, &url, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "tty and stderr"));
	r = (struct vgpu_stream_exec_req){ .container_id = "c1", .cmd = cmd_true };
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, false, &url, &err), -EINVAL);
	r = (struct vgpu_stream_exec_req){ .container_id = "", .cmd = cmd_true, .want_stdout = true };
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, false, &url, &err), -EINVAL);
	r = (struct vgpu_stream_exec_req){ .container_id = "c1", .want_stdout = true };
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, false, &url, &err), -EINVAL);
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, true, &url, &err), 0); /* attach has no command */
	free(url);
	r = (struct vgpu_stream_exec_req){ .container_id = "missing", .cmd = cmd_true, .want_stdout = true };
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, false, &url, &err), -ENOENT);
	ck_assert_int_eq(vgpu_streaming_mint_port_forward(s, "", &url, &err), -EINVAL);
	vgpu_streaming_stop(s);
}
END_TEST

START_TEST(token_limit_and_expiry)
{
	struct vgpu_streaming *s = start(100, 3, false);
	struct vgpu_stream_exec_req r = { .container_id = "c1", .cmd = cmd_true, .want_stdout = true };
	char *url = NULL;
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, false, &url, &err), 0);
		free(url);
	}
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, false, &url, &err), -ENOSPC);
	ck_assert_ptr_nonnull(strstr(err.msg, "too many outstanding tokens"));
	usleep(150 * 1000); /* expired tokens no longer count */
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, false, &url, &err), 0);
	free(url);
	vgpu_streaming_stop(s);
}
END_TEST

START_TEST(backend_without_operations)
{
	struct vgpu_streaming *s = start(0, 0, true);
	struct vgpu_stream_exec_req r = { .container_id = "c1", .cmd = cmd_true, .want_stdout = true };
	char *url = NULL;
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, false, &url, &err), -ENOSYS);
	ck_assert_int_eq(vgpu_streaming_mint_exec(s, &r, true, &url, &err), -ENOSYS);
	ck_assert_int_eq(vgpu_streaming_mint_port_forward(s, "pod", &url, &err), -ENOSYS);
	vgpu_streaming_stop(s);
}
END_TEST

START_TEST(bad_address)
{
	struct vgpu_stream_backend b = { 0 };
	struct vgpu_streaming *s = NULL;
	struct vgpu_streaming_opts o = { .address = "no-port-here" };
	ck_assert_int_eq(vgpu_streaming_start(&o, &b, &s, &err), -EINVAL);
	o.address = "[::1:80";
	ck_assert_int_eq(vgpu_streaming_start(&o, &b, &s, &err), -EINVAL);
	o.address = "[::1]:0";
	if (vgpu_streaming_start(&o, &b, &s, &err) == 0) { /* where IPv6 loopback exists */
		ck_assert_int_eq(strncmp(vgpu_streaming_base_url(s), "http://[::1]:", 13), 0);
		vgpu_streaming_stop(s);
	}
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("streaming");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "url_shape", url_shape },
		{ "validation", validation },
		{ "token_limit_and_expiry", token_limit_and_expiry },
		{ "backend_without_operations", backend_without_operations },
		{ "bad_address", bad_address },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_test(tc, cases[i].test);
		suite_add_tcase(suite, tc);
	}
	SRunner *sr = srunner_create(suite);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
