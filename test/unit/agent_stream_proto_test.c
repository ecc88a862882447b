/* The interactive streams of the daemon <-> vgpu-agent protocol (cri/agent/agent_proto.c, ops
 * 32-44): CTR_EXEC_STREAM / CTR_ATTACH_STREAM (with a tty for exec, and for attach to a container
 * with a terminal) and POD_PORTFWD_STREAM round-trip; bad flags, ids, argv and every truncation
 * are refused; STREAM_OPENED paths and the stream vchan's frames are checked by direction and
 * length. Split from agent_proto_test.c. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_proto.h"

START_TEST(stream_requests_round_trip)
{
	char *argv[] = { "sh", "-c", "cat", NULL };
	struct agent_stream_req in = { .type = AGENT_MSG_CTR_EXEC_STREAM, .id = "ctr-1", .argv = argv,
				       .flags = AGENT_STREAM_STDIN | AGENT_STREAM_STDOUT | AGENT_STREAM_TTY }, got;
	struct agent_buf b = { 0 };

	ck_assert_int_eq(agent_stream_req_encode(&b, &in), 0);
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_EXEC_STREAM, b.data, b.len, &got), 0);
	ck_assert_str_eq(got.id, "ctr-1");
	ck_assert_uint_eq(got.flags, in.flags);
	for (int i = 0; argv[i]; i++)
		ck_assert_str_eq(got.argv[i], argv[i]);
	ck_assert_ptr_null(got.argv[3]);
	agent_stream_req_free(&got);
	/* every truncation and a trailing byte are refused */
	for (size_t n = 0; n < b.len; n++)
		ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_EXEC_STREAM, b.data, n, &got), -EPROTO);
	ck_assert_int_eq(agent_put_bytes(&b, "x", 1), 0);
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_EXEC_STREAM, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
	/* attach: no argv on the wire */
	struct agent_stream_req at = { .type = AGENT_MSG_CTR_ATTACH_STREAM, .id = "ctr-1",
				       .flags = AGENT_STREAM_STDIN | AGENT_STREAM_STDOUT | AGENT_STREAM_STDERR };
	ck_assert_int_eq(agent_stream_req_encode(&b, &at), 0);
	ck_assert_uint_eq(b.len, 4 + 5 + 4);
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_ATTACH_STREAM, b.data, b.len, &got), 0);
	ck_assert_ptr_null(got.argv);
	ck_assert_uint_eq(got.flags, at.flags);
	agent_stream_req_free(&got);
	agent_buf_free(&b);
	/* attach to a container with a terminal: tty without stderr */
	at.flags = AGENT_STREAM_STDIN | AGENT_STREAM_STDOUT | AGENT_STREAM_TTY;
	ck_assert_int_eq(agent_stream_req_encode(&b, &at), 0);
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_ATTACH_STREAM, b.data, b.len, &got), 0);
	ck_assert_uint_eq(got.flags, at.flags);
	agent_stream_req_free(&got);
	/* the wrong op for the payload */
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_EXEC, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
}
END_TEST

START_TEST(stream_requests_out_of_range_are_refused)
{
	char *argv[] = { "cat", NULL }, *none[] = { NULL };
	struct agent_buf b = { 0 };
	struct agent_stream_req r = { .type = AGENT_MSG_CTR_EXEC_STREAM, .id = "c", .argv = argv }, got;

	/* no stream, unknown flags, tty with stderr, argv on attach, no argv on exec, attach tty with stderr */
	ck_assert_int_eq(agent_stream_req_encode(&b, &r), -EINVAL);
	r.flags = AGENT_STREAM_STDOUT | 0x100;
	ck_assert_int_eq(agent_stream_req_encode(&b, &r), -EINVAL);
	r.flags = AGENT_STREAM_STDERR | AGENT_STREAM_TTY;
	ck_assert_int_eq(agent_stream_req_encode(&b, &r), -EINVAL);
	r.flags = AGENT_STREAM_STDOUT;
	r.argv = none;
	ck_assert_int_eq(agent_stream_req_encode(&b, &r), -EINVAL);
	r.argv = NULL;
	ck_assert_int_eq(agent_stream_req_encode(&b, &r), -EINVAL);
	r.type = AGENT_MSG_CTR_ATTACH_STREAM;
	r.argv = argv;
	ck_assert_int_eq(agent_stream_req_encode(&b, &r), -EINVAL);
	r.argv = NULL;
	r.flags = AGENT_STREAM_STDOUT | AGENT_STREAM_STDERR | AGENT_STREAM_TTY;
	ck_assert_int_eq(agent_stream_req_encode(&b, &r), -EINVAL);
	r.flags = AGENT_STREAM_STDOUT;
	r.id = "../x";
	ck_assert_int_eq(agent_stream_req_encode(&b, &r), -EINVAL);
	agent_buf_free(&b);
	/* the same from the wire: a path-like id, bad flags, argc 0, NUL in an argument */
	ck_assert_int_eq(agent_put_str(&b, "..", 2) || agent_put_u32(&b, AGENT_STREAM_STDOUT), 0);
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_ATTACH_STREAM, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
	ck_assert_int_eq(agent_put_str(&b, "c", 1) || agent_put_u32(&b, 0), 0);
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_ATTACH_STREAM, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
	ck_assert_int_eq(agent_put_str(&b, "c", 1) || agent_put_u32(&b, AGENT_STREAM_STDOUT) || agent_put_u32(&b, 0), 0);
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_EXEC_STREAM, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
	ck_assert_int_eq(agent_put_str(&b, "c", 1) || agent_put_u32(&b, AGENT_STREAM_STDOUT) || agent_put_u32(&b, 1) ||
				 agent_put_str(&b, "a\0b", 3),
			 0);
	b.data[b.len - 2] = 0;
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_EXEC_STREAM, b.data, b.len, &got), -EPROTO);
	/* argc larger than the payload could hold */
	agent_buf_free(&b);
	ck_assert_int_eq(agent_put_str(&b, "c", 1) || agent_put_u32(&b, AGENT_STREAM_STDOUT) || agent_put_u32(&b, 200), 0);
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_EXEC_STREAM, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
}
END_TEST

START_TEST(stream_opened_and_frames)
{
	struct agent_buf b = { 0 };
	char path[AGENT_STREAM_PATH_MAX];

	ck_assert_int_eq(agent_stream_opened_encode(&b, "data/vgpu-stream-17"), 0);
	ck_assert_int_eq(agent_stream_opened_decode(b.data, b.len, path), 0);
	ck_assert_str_eq(path, "data/vgpu-stream-17");
	for (size_t n = 0; n < b.len; n++)
		ck_assert_int_eq(agent_stream_opened_decode(b.data, n, path), -EPROTO);
	agent_buf_free(&b);
	/* only our own path form: never another domain's or a parent path */
	const char *bad[] = { "data/vgpu-stream-", "data/vgpu-stream-1/x", "/local/domain/0/data/vgpu-stream-1",
			      "data/vgpu-agent", "data/vgpu-stream-12345678901", "data/vgpu-stream-1a" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(agent_stream_opened_encode(&b, bad[i]), -EINVAL);
		ck_assert_int_eq(agent_put_str(&b, bad[i], strlen(bad[i])), 0);
		ck_assert_int_eq(agent_stream_opened_decode(b.data, b.len, path), -EPROTO);
		agent_buf_free(&b);
	}
	/* frames: direction and length */
	struct agent_hdr h = { .type = AGENT_MSG_STREAM_STDOUT, .len = AGENT_STREAM_MAX_DATA };
	ck_assert_int_eq(agent_stream_frame_check(&h, 1), 0);
	ck_assert_int_eq(agent_stream_frame_check(&h, 0), -EPROTO);
	h.len = AGENT_STREAM_MAX_DATA + 1;
	ck_assert_int_eq(agent_stream_frame_check(&h, 1), -EPROTO);
	h.len = 0;
	ck_assert_int_eq(agent_stream_frame_check(&h, 1), -EPROTO);
	h = (struct agent_hdr){ .type = AGENT_MSG_STREAM_STDIN, .len = 1 };
	ck_assert_int_eq(agent_stream_frame_check(&h, 0), 0);
	ck_assert_int_eq(agent_stream_frame_check(&h, 1), -EPROTO);
	h.id = 5;
	ck_assert_int_eq(agent_stream_frame_check(&h, 0), -EPROTO);
	h = (struct agent_hdr){ .type = AGENT_MSG_STREAM_RESIZE, .len = 8 };
	ck_assert_int_eq(agent_stream_frame_check(&h, 0), 0);
	h.len = 7;
	ck_assert_int_eq(agent_stream_frame_check(&h, 0), -EPROTO);
	h = (struct agent_hdr){ .type = AGENT_MSG_STREAM_EXIT, .len = 4 };
	ck_assert_int_eq(agent_stream_frame_check(&h, 1), 0);
	ck_assert_int_eq(agent_stream_frame_check(&h, 0), -EPROTO);
	h = (struct agent_hdr){ .type = AGENT_MSG_STREAM_KEEPALIVE, .len = 1 };
	ck_assert_int_eq(agent_stream_frame_check(&h, 1), -EPROTO);
	h = (struct agent_hdr){ .type = AGENT_MSG_CTR_EXEC, .len = 0 }; /* a control op on a stream */
	ck_assert_int_eq(agent_stream_frame_check(&h, 0), -EPROTO);
	/* fixed payloads */
	uint8_t raw[8];
	uint32_t w, hh;
	int32_t code;
	agent_stream_resize_encode(raw, 120, 40);
	ck_assert_int_eq(agent_stream_resize_decode(raw, 8, &w, &hh), 0);
	ck_assert_uint_eq(w, 120);
	ck_assert_uint_eq(hh, 40);
	ck_assert_int_eq(agent_stream_resize_decode(raw, 7, &w, &hh), -EPROTO);
	agent_stream_resize_encode(raw, 0, 40);
	ck_assert_int_eq(agent_stream_resize_decode(raw, 8, &w, &hh), -EPROTO);
	agent_stream_resize_encode(raw, 70000, 40);
	ck_assert_int_eq(agent_stream_resize_decode(raw, 8, &w, &hh), -EPROTO);
	agent_stream_exit_encode(raw, 137);
	ck_assert_int_eq(agent_stream_exit_decode(raw, 4, &code), 0);
	ck_assert_int_eq(code, 137);
	agent_stream_exit_encode(raw, -1);
	ck_assert_int_eq(agent_stream_exit_decode(raw, 4, &code), -EPROTO);
	ck_assert_int_eq(agent_stream_exit_decode(raw, 5, &code), -EPROTO);
}
END_TEST

START_TEST(portfwd_request_and_frames)
{
	struct agent_buf b = { 0 };
	struct agent_stream_req in = { .type = AGENT_MSG_POD_PORTFWD_STREAM, .port = 8080 }, got;

	ck_assert_int_eq(AGENT_MSG_POD_PORTFWD_STREAM, 43);
	ck_assert_int_eq(AGENT_MSG_STREAM_LAST, AGENT_MSG_STREAM_STDOUT_CLOSE);
	ck_assert_int_eq(agent_stream_req_encode(&b, &in), 0);
	ck_assert_uint_eq(b.len, 4);
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_POD_PORTFWD_STREAM, b.data, b.len, &got), 0);
	ck_assert_uint_eq(got.type, AGENT_MSG_POD_PORTFWD_STREAM);
	ck_assert_uint_eq(got.port, 8080);
	ck_assert_ptr_null(got.id);
	ck_assert_ptr_null(got.argv);
	agent_stream_req_free(&got);
	/* every truncation and a trailing byte are refused */
	for (size_t n = 0; n < b.len; n++)
		ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_POD_PORTFWD_STREAM, b.data, n, &got), -EPROTO);
	ck_assert_int_eq(agent_put_bytes(&b, "", 1), 0);
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_POD_PORTFWD_STREAM, b.data, b.len, &got), -EPROTO);
	ck_assert_uint_eq(got.port, 0);
	ck_assert_uint_eq(got.type, 0);
	agent_buf_free(&b);
	/* ports 0 and above 65535 on either side; nothing of exec/attach along */
	const uint32_t bad_ports[] = { 0, 65536, 0xffffffffu };
	for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
		in.port = bad_ports[i];
		ck_assert_int_eq(agent_stream_req_encode(&b, &in), -EINVAL);
		agent_buf_free(&b);
		ck_assert_int_eq(agent_put_u32(&b, bad_ports[i]), 0);
		ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_POD_PORTFWD_STREAM, b.data, b.len, &got), -EPROTO);
		agent_buf_free(&b);
	}
	in.port = 65535;
	ck_assert_int_eq(agent_stream_req_encode(&b, &in), 0);
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_POD_PORTFWD_STREAM, b.data, b.len, &got), 0);
	ck_assert_uint_eq(got.port, 65535);
	/* the port payload is no exec or attach request, and exec's payload is no port */
	ck_assert_int_eq(agent_stream_req_decode(AGENT_MSG_CTR_ATTACH_STREAM, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
	in.port = 1;
	in.id = "c";
	ck_assert_int_eq(agent_stream_req_encode(&b, &in), -EINVAL);
	in.id = NULL;
	in.flags = AGENT_STREAM_STDIN;
	ck_assert_int_eq(agent_stream_req_encode(&b, &in), -EINVAL);
	agent_buf_free(&b);
	/* STDOUT_CLOSE: empty, from the guest only; the request op never on a stream vchan */
	struct agent_hdr h = { .type = AGENT_MSG_STREAM_STDOUT_CLOSE, .len = 0 };
	ck_assert_int_eq(agent_stream_frame_check(&h, 1), 0);
	ck_assert_int_eq(agent_stream_frame_check(&h, 0), -EPROTO);
	h.len = 1;
	ck_assert_int_eq(agent_stream_frame_check(&h, 1), -EPROTO);
	h = (struct agent_hdr){ .type = AGENT_MSG_POD_PORTFWD_STREAM, .len = 4 };
	ck_assert_int_eq(agent_stream_frame_check(&h, 0), -EPROTO);
	ck_assert_int_eq(agent_stream_frame_check(&h, 1), -EPROTO);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("agent_stream_proto");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "stream_requests", stream_requests_round_trip },
		{ "stream_bad_requests", stream_requests_out_of_range_are_refused },
		{ "stream_opened_frames", stream_opened_and_frames },
		{ "portfwd_request", portfwd_request_and_frames },
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
