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
	h.type = AGENT_MSG_CTR_REMOVE; /* the last type there is */
	agent_hdr_encode(raw, &h);
	ck_assert_int_eq(agent_hdr_decode(raw, &out), 0);
	h.type = AGENT_MSG_LAST + 1;
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

/* Encode req, decode it back as type; every strict prefix of the payload must be refused. */
static void ctr_round_trip(const struct agent_ctr_req *req, struct agent_ctr_req *got)
{
	struct agent_buf b = { 0 };

	ck_assert_int_eq(agent_ctr_req_encode(&b, req), 0);
	for (size_t cut = 0; cut < b.len; cut++) {
		struct agent_ctr_req part;
		ck_assert_int_eq(agent_ctr_req_decode(req->type, b.data, cut, &part), -EPROTO);
		ck_assert_ptr_null(part.id);
	}
	ck_assert_int_eq(agent_ctr_req_decode(req->type, b.data, b.len, got), 0);
	/* one byte too many is refused, too */
	ck_assert_int_eq(agent_put_u32(&b, 0), 0);
	struct agent_ctr_req extra;
	ck_assert_int_eq(agent_ctr_req_decode(req->type, b.data, b.len - 3, &extra), -EPROTO);
	agent_buf_free(&b);
}

START_TEST(container_requests_round_trip)
{
	static const char *const argv[] = { "cat", "/etc/hostname", NULL };
	const char *id = "3f2a0c9e11aa";
	struct agent_ctr_req req = { .type = AGENT_MSG_CTR_CREATE, .id = (char *)id, .rootfs_dev = "/dev/xvdb",
				     .spec_json = "{\"ociVersion\":\"1.0.2\"}" },
			     got;

	ctr_round_trip(&req, &got);
	ck_assert_str_eq(got.id, id);
	ck_assert_str_eq(got.rootfs_dev, "/dev/xvdb");
	ck_assert_str_eq(got.spec_json, req.spec_json);
	agent_ctr_req_free(&got);

	req = (struct agent_ctr_req){ .type = AGENT_MSG_CTR_START, .id = (char *)id };
	ctr_round_trip(&req, &got);
	ck_assert_str_eq(got.id, id);
	agent_ctr_req_free(&got);

	req = (struct agent_ctr_req){ .type = AGENT_MSG_CTR_REMOVE, .id = (char *)id };
	ctr_round_trip(&req, &got);
	ck_assert_str_eq(got.id, id);
	agent_ctr_req_free(&got);

	req = (struct agent_ctr_req){ .type = AGENT_MSG_CTR_STOP, .id = (char *)id, .signal = 15, .timeout_ms = 30000 };
	ctr_round_trip(&req, &got);
	ck_assert_uint_eq(got.signal, 15);
	ck_assert_uint_eq(got.timeout_ms, 30000);
	agent_ctr_req_free(&got);

	req = (struct agent_ctr_req){ .type = AGENT_MSG_CTR_LOGS, .id = (char *)id, .offset = 0x100000002ULL,
				      .max_bytes = 4096 };
	ctr_round_trip(&req, &got);
	ck_assert_uint_eq(got.offset, 0x100000002ULL);
	ck_assert_uint_eq(got.max_bytes, 4096);
	agent_ctr_req_free(&got);

	req = (struct agent_ctr_req){ .type = AGENT_MSG_CTR_EXEC, .id = (char *)id, .timeout_ms = 7,
				      .argv = (char **)argv };
	ctr_round_trip(&req, &got);
	ck_assert_uint_eq(got.timeout_ms, 7);
	ck_assert_str_eq(got.argv[0], "cat");
	ck_assert_str_eq(got.argv[1], "/etc/hostname");
	ck_assert_ptr_null(got.argv[2]);
	agent_ctr_req_free(&got);
}
END_TEST

START_TEST(container_requests_out_of_range_are_refused)
{
	struct agent_buf b = { 0 };
	struct agent_ctr_req got;
	const char *bad_ids[] = { "", ".", "..", "a/b", "../x", "a b", NULL };

	/* the encoder refuses what the decoder would */
	for (const char **id = bad_ids; *id; id++) {
		struct agent_ctr_req req = { .type = AGENT_MSG_CTR_START, .id = (char *)*id };
		ck_assert_int_eq(agent_ctr_req_encode(&b, &req), -EINVAL);
		agent_buf_free(&b);
		/* and the decoder refuses them when a peer sends them anyway */
		ck_assert_int_eq(agent_put_str(&b, *id, strlen(*id)), 0);
		ck_assert_int_eq(agent_ctr_req_decode(AGENT_MSG_CTR_START, b.data, b.len, &got), -EPROTO);
		agent_buf_free(&b);
	}
	struct agent_ctr_req stop = { .type = AGENT_MSG_CTR_STOP, .id = "c1", .signal = 65 };
	ck_assert_int_eq(agent_ctr_req_encode(&b, &stop), -EINVAL);
	agent_buf_free(&b);
	ck_assert_int_eq(agent_put_str(&b, "c1", 2) || agent_put_u32(&b, 0) || agent_put_u32(&b, 1), 0);
	ck_assert_int_eq(agent_ctr_req_decode(AGENT_MSG_CTR_STOP, b.data, b.len, &got), -EPROTO); /* signal 0 */
	agent_buf_free(&b);
	ck_assert_int_eq(agent_put_str(&b, "c1", 2) || agent_put_u64(&b, 0) || agent_put_u32(&b, AGENT_MAX_LOG_CHUNK + 1),
			 0);
	ck_assert_int_eq(agent_ctr_req_decode(AGENT_MSG_CTR_LOGS, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
	/* CREATE: relative rootfs device, NUL inside the spec */
	ck_assert_int_eq(agent_put_str(&b, "c1", 2) || agent_put_str(&b, "dev/xvdb", 8) || agent_put_str(&b, "{}", 2), 0);
	ck_assert_int_eq(agent_ctr_req_decode(AGENT_MSG_CTR_CREATE, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
	ck_assert_int_eq(agent_put_str(&b, "c1", 2) || agent_put_str(&b, "/dev/xvdb", 9) || agent_put_str(&b, "{\0}", 3),
			 0);
	ck_assert_int_eq(agent_ctr_req_decode(AGENT_MSG_CTR_CREATE, b.data, b.len, &got), -EPROTO);
	/* a reply type is not a request */
	ck_assert_int_eq(agent_ctr_req_decode(AGENT_MSG_CTR_STATE, b.data, b.len, &got), -EPROTO);
	ck_assert_int_eq(agent_ctr_req_decode(AGENT_MSG_EXEC, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
}
END_TEST

START_TEST(container_replies_round_trip)
{
	struct agent_buf b = { 0 };
	struct agent_ctr_state st = { .state = AGENT_CTR_EXITED, .pid = 42, .exit_code = -9,
				      .started_ns = 1700000000123456789ULL, .finished_ns = 1700000001000000000ULL },
			       st2;

	ck_assert_int_eq(agent_ctr_state_encode(&b, &st), 0);
	for (size_t cut = 0; cut < b.len; cut++)
		ck_assert_int_eq(agent_ctr_state_decode(b.data, cut, &st2), -EPROTO);
	ck_assert_int_eq(agent_ctr_state_decode(b.data, b.len, &st2), 0);
	ck_assert_uint_eq(st2.state, AGENT_CTR_EXITED);
	ck_assert_int_eq(st2.pid, 42);
	ck_assert_int_eq(st2.exit_code, -9);
	ck_assert_uint_eq(st2.started_ns, st.started_ns);
	ck_assert_uint_eq(st2.finished_ns, st.finished_ns);
	b.data[0] = AGENT_CTR_UNKNOWN + 1; /* no such state */
	ck_assert_int_eq(agent_ctr_state_decode(b.data, b.len, &st2), -EPROTO);
	agent_buf_free(&b);

	struct agent_ctr_log_data d = { .next_offset = 77, .eof = 1, .data = (const uint8_t *)"2026 stdout F hi\n",
					.len = 17 },
				  d2;
	ck_assert_int_eq(agent_ctr_log_data_encode(&b, &d), 0);
	for (size_t cut = 0; cut < b.len; cut++)
		ck_assert_int_eq(agent_ctr_log_data_decode(b.data, cut, &d2), -EPROTO);
	ck_assert_int_eq(agent_ctr_log_data_decode(b.data, b.len, &d2), 0);
	ck_assert_uint_eq(d2.next_offset, 77);
	ck_assert_uint_eq(d2.eof, 1);
	ck_assert_uint_eq(d2.len, 17);
	ck_assert_mem_eq(d2.data, d.data, 17);
	b.data[8] = 2; /* eof is 0 or 1 */
	ck_assert_int_eq(agent_ctr_log_data_decode(b.data, b.len, &d2), -EPROTO);
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
		{ "ctr_requests", container_requests_round_trip },
		{ "ctr_bad_requests", container_requests_out_of_range_are_refused },
		{ "ctr_replies", container_replies_round_trip },
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
