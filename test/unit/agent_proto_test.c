/* The daemon <-> vgpu-agent wire protocol (cri/agent/agent_proto.c): headers and EXEC payloads
 * round-trip; every malformed input (bad magic, oversize lengths, truncation, lengths that run
 * past the payload, NUL inside strings) is refused, never read past. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_proto.h"

START_TEST(header_round_trip)
{
	struct agent_hdr in = { .type = AGENT_MSG_EXEC, .id = 0xdeadbeef, .len = 1234 }, out;
	uint8_t raw[AGENT_HDR_SIZE];

	agent_hdr_encode(raw, &in);
	ck_assert_mem_eq(raw, "VGA1", 4); /* little-endian magic reads as text */
	ck_assert_int_eq(agent_hdr_decode(raw, &out), 0);
	ck_assert_uint_eq(out.type, AGENT_MSG_EXEC);
	ck_assert_uint_eq(out.id, 0xdeadbeef);
	ck_assert_uint_eq(out.len, 1234);
}
END_TEST

START_TEST(bad_headers_are_refused)
{
	struct agent_hdr h = { .type = AGENT_MSG_PING, .len = 0 }, out;
	uint8_t raw[AGENT_HDR_SIZE];

	ck_assert_int_eq(agent_hdr_decode((const uint8_t *)"GARBAGE-GARBAGE!", &out), -EPROTO);
	h.len = AGENT_MAX_PAYLOAD + 1;
	agent_hdr_encode(raw, &h);
	ck_assert_int_eq(agent_hdr_decode(raw, &out), -EMSGSIZE);
	h.len = AGENT_MAX_PAYLOAD;
	agent_hdr_encode(raw, &h);
	ck_assert_int_eq(agent_hdr_decode(raw, &out), 0);
	h.len = 0;
	h.type = 0;
	agent_hdr_encode(raw, &h);
	ck_assert_int_eq(agent_hdr_decode(raw, &out), -EINVAL);
	h.type = AGENT_MSG_ERROR + 1;
	agent_hdr_encode(raw, &h);
	ck_assert_int_eq(agent_hdr_decode(raw, &out), -EINVAL);
	h.type = AGENT_MSG_PING;
	h.flags = 1;
	agent_hdr_encode(raw, &h);
	ck_assert_int_eq(agent_hdr_decode(raw, &out), -EPROTO);
}
END_TEST

START_TEST(exec_round_trip)
{
	static const char *const argv[] = { "/bin/sh", "-c", "echo hi", "", NULL };
	struct agent_buf b = { 0 };
	char **got = NULL;
	uint32_t timeout = 0;

	ck_assert_int_eq(agent_exec_encode(&b, argv, 5000), 0);
	ck_assert_int_eq(agent_exec_decode(b.data, b.len, &got, &timeout), 0);
	ck_assert_uint_eq(timeout, 5000);
	for (int i = 0; argv[i]; i++)
		ck_assert_str_eq(got[i], argv[i]);
	ck_assert_ptr_null(got[4]);
	agent_argv_free(got);
	agent_buf_free(&b);
}
END_TEST

START_TEST(exec_refuses_empty_and_too_many_args)
{
	static const char *const none[] = { NULL };
	struct agent_buf b = { 0 };
	const char **many = calloc(AGENT_MAX_ARGS + 2, sizeof(*many));

	ck_assert_int_eq(agent_exec_encode(&b, none, 0), -EINVAL);
	for (unsigned int i = 0; i <= AGENT_MAX_ARGS; i++)
		many[i] = "x";
	ck_assert_int_eq(agent_exec_encode(&b, many, 0), -EINVAL);
	free(many);
	agent_buf_free(&b);
}
END_TEST

START_TEST(exec_decode_refuses_malformed_payloads)
{
	static const char *const argv[] = { "ls", "-l", NULL };
	struct agent_buf b = { 0 };
	char **got = (char **)&got;
	uint32_t timeout;

	ck_assert_int_eq(agent_exec_encode(&b, argv, 1), 0);
	/* every truncation fails, none reads past the end (ASan checks) */
	for (size_t len = 0; len < b.len; len++) {
		ck_assert_int_eq(agent_exec_decode(b.data, len, &got, &timeout), -EPROTO);
		ck_assert_ptr_null(got);
	}
	/* trailing bytes */
	ck_assert_int_eq(agent_put_u32(&b, 7), 0);
	ck_assert_int_eq(agent_exec_decode(b.data, b.len, &got, &timeout), -EPROTO);
	agent_buf_free(&b);

	/* argc larger than the payload could hold */
	ck_assert_int_eq(agent_put_u32(&b, 0), 0);
	ck_assert_int_eq(agent_put_u32(&b, 200), 0);
	ck_assert_int_eq(agent_put_str(&b, "a", 1), 0);
	ck_assert_int_eq(agent_exec_decode(b.data, b.len, &got, &timeout), -EPROTO);
	agent_buf_free(&b);

	/* a string length that runs past the payload */
	ck_assert_int_eq(agent_put_u32(&b, 0), 0);
	ck_assert_int_eq(agent_put_u32(&b, 1), 0);
	ck_assert_int_eq(agent_put_u32(&b, 0xfffffff0u), 0);
	ck_assert_int_eq(agent_exec_decode(b.data, b.len, &got, &timeout), -EPROTO);
	agent_buf_free(&b);

	/* NUL inside an argument */
	ck_assert_int_eq(agent_put_u32(&b, 0), 0);
	ck_assert_int_eq(agent_put_u32(&b, 1), 0);
	ck_assert_int_eq(agent_put_str(&b, "a\0b", 3), 0);
	ck_assert_int_eq(agent_exec_decode(b.data, b.len, &got, &timeout), -EPROTO);
	agent_buf_free(&b);
}
END_TEST

START_TEST(payload_size_is_bounded)
{
	struct agent_buf b = { 0 };
	char *big = calloc(1, AGENT_MAX_PAYLOAD);

	ck_assert_int_eq(agent_put_str(&b, big, AGENT_MAX_PAYLOAD - 4), 0);
	ck_assert_uint_eq(b.len, AGENT_MAX_PAYLOAD);
	ck_assert_int_eq(agent_put_u32(&b, 1), -EMSGSIZE);
	ck_assert_uint_eq(b.len, AGENT_MAX_PAYLOAD);
	free(big);
	agent_buf_free(&b);
}
END_TEST

START_TEST(exec_result_layout)
{
	struct agent_buf b = { 0 };
	struct agent_reader r;
	uint32_t code;
	const char *s;
	size_t n;

	ck_assert_int_eq(agent_exec_result_encode(&b, -9, "out", 3, NULL, 0), 0);
	r = (struct agent_reader){ b.data, b.len };
	ck_assert_int_eq(agent_get_u32(&r, &code), 0);
	ck_assert_int_eq((int32_t)code, -9);
	ck_assert_int_eq(agent_get_str(&r, &s, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_mem_eq(s, "out", 3);
	ck_assert_int_eq(agent_get_str(&r, &s, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_uint_eq(r.left, 0);
	ck_assert_int_eq(agent_get_u32(&r, &code), -EPROTO);
	agent_buf_free(&b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("agent_proto");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "header_round_trip", header_round_trip },
		{ "bad_headers", bad_headers_are_refused },
		{ "exec_round_trip", exec_round_trip },
		{ "exec_arg_count", exec_refuses_empty_and_too_many_args },
		{ "exec_malformed", exec_decode_refuses_malformed_payloads },
		{ "payload_bound", payload_size_is_bounded },
		{ "exec_result", exec_result_layout },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_test(tc, cases[i].test);
		suite_add_tcase(s, tc);
	}
	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
