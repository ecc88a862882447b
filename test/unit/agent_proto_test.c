/* The daemon <-> vgpu-agent wire protocol (cri/agent/agent_proto.c): headers and EXEC payloads
 * round-trip; every malformed input (bad magic, oversize lengths, truncation, lengths that run
 * past the payload, NUL inside strings) is refused, never read past. Also the stats, resources
 * update and pod network messages (NET_CONFIG: only plain addresses ever reach the guest's `ip`).
 * The interactive streams' messages are in agent_stream_proto_test.c. */
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

START_TEST(stats_and_update_round_trip)
{
	struct agent_buf b = { 0 };
	struct agent_ctr_req req = { .type = AGENT_MSG_CTR_STATS, .id = "c1" }, got;

	ctr_round_trip(&req, &got);
	ck_assert_str_eq(got.id, "c1");
	agent_ctr_req_free(&got);
	req = (struct agent_ctr_req){ .type = AGENT_MSG_CTR_UPDATE, .id = "c1", .spec_json = "{\"memory\":{\"limit\":67108864}}" };
	ctr_round_trip(&req, &got);
	ck_assert_str_eq(got.spec_json, req.spec_json);
	agent_ctr_req_free(&got);
	/* UPDATE without resources */
	req.spec_json = "";
	ck_assert_int_eq(agent_ctr_req_encode(&b, &req), -EINVAL);
	agent_buf_free(&b);
	ck_assert_int_eq(agent_put_str(&b, "c1", 2) || agent_put_str(&b, "", 0), 0);
	ck_assert_int_eq(agent_ctr_req_decode(AGENT_MSG_CTR_UPDATE, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
	/* the reply types are not requests */
	ck_assert_int_eq(agent_put_str(&b, "c1", 2), 0);
	ck_assert_int_eq(agent_ctr_req_decode(AGENT_MSG_CTR_STATS_DATA, b.data, b.len, &got), -EPROTO);
	ck_assert_int_eq(agent_ctr_req_decode(AGENT_MSG_NET_CONFIG, b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);

	struct agent_ctr_stats st = { .flags = AGENT_STATS_CPU | AGENT_STATS_MEM, .cpu_usage_usec = 0x123456789ULL,
				      .memory_current = 5 << 20, .memory_max = 64 << 20, .inactive_file = 4096,
				      .anon = 1 << 20, .pgfault = 77, .pgmajfault = 3 },
			       st2;
	ck_assert_int_eq(agent_ctr_stats_encode(&b, &st), 0);
	ck_assert_uint_eq(b.len, 4 + 7 * 8);
	for (size_t cut = 0; cut < b.len; cut++)
		ck_assert_int_eq(agent_ctr_stats_decode(b.data, cut, &st2), -EPROTO);
	ck_assert_int_eq(agent_ctr_stats_decode(b.data, b.len, &st2), 0);
	ck_assert_uint_eq(st2.flags, st.flags);
	ck_assert_uint_eq(st2.cpu_usage_usec, st.cpu_usage_usec);
	ck_assert_uint_eq(st2.memory_current, st.memory_current);
	ck_assert_uint_eq(st2.memory_max, st.memory_max);
	ck_assert_uint_eq(st2.inactive_file, st.inactive_file);
	ck_assert_uint_eq(st2.anon, st.anon);
	ck_assert_uint_eq(st2.pgfault, st.pgfault);
	ck_assert_uint_eq(st2.pgmajfault, st.pgmajfault);
	b.data[0] = 4; /* an unknown flag */
	ck_assert_int_eq(agent_ctr_stats_decode(b.data, b.len, &st2), -EPROTO);
	b.data[0] = 3;
	ck_assert_int_eq(agent_put_u32(&b, 0), 0); /* a trailing word */
	ck_assert_int_eq(agent_ctr_stats_decode(b.data, b.len, &st2), -EPROTO);
	agent_buf_free(&b);
}
END_TEST

START_TEST(net_addresses_are_checked)
{
	const char *good_cidr[] = { "10.88.7.5/24", "0.0.0.0/0", "255.255.255.255/32", "fd00::5/64", "::/0",
				    "fe80::1:2:3:4/128", NULL };
	const char *bad_cidr[] = { "10.88.7.5", "10.88.7/24", "10.88.7.256/24", "10.88.7.5/33", "10.88.7.5/",
				   "010.1.1.1/8", "10.1.1.1/08", "-10.1.1.1/8", "fd00::5/129", "fd00:::5/64",
				   "10.1.1.1/24 dev x", "1.2.3.4.5/8", "", "/24", "abc/8", NULL };
	for (const char **a = good_cidr; *a; a++)
		ck_assert_msg(agent_net_addr_ok(*a, 1), "%s", *a);
	for (const char **a = bad_cidr; *a; a++)
		ck_assert_msg(!agent_net_addr_ok(*a, 1), "%s", *a);
	ck_assert(agent_net_addr_ok("10.88.7.1", 0));
	ck_assert(agent_net_addr_ok("fd00::1", 0));
	ck_assert(!agent_net_addr_ok("10.88.7.1/24", 0));
	ck_assert(!agent_net_addr_ok("via", 0));
	ck_assert(agent_net_mac_ok("0a:58:0A:58:07:05"));
	ck_assert(!agent_net_mac_ok("0a:58:0a:58:07"));
	ck_assert(!agent_net_mac_ok("0a-58-0a-58-07-05"));
	ck_assert(!agent_net_mac_ok("0a:58:0a:58:07:0g"));
}
END_TEST

START_TEST(net_config_round_trip)
{
	struct agent_buf b = { 0 };
	struct agent_net_config nc = { .mac = "0a:58:0a:58:07:05", .mtu = 1500, .n_addrs = 2, .n_routes = 2,
				       .resolv_conf = "nameserver 10.96.0.10\nsearch default.svc\n" },
				got;
	nc.addrs[0] = "10.88.7.5/24";
	nc.addrs[1] = "fd00::5/64";
	nc.routes[0] = (struct agent_net_route){ .dst = "0.0.0.0/0", .gw = "10.88.7.1" };
	nc.routes[1] = (struct agent_net_route){ .dst = "10.99.0.0/16", .gw = "" };
	ck_assert_int_eq(agent_net_config_encode(&b, &nc), 0);
	for (size_t cut = 0; cut < b.len; cut++)
		ck_assert_int_eq(agent_net_config_decode(b.data, cut, &got), -EPROTO);
	ck_assert_int_eq(agent_net_config_decode(b.data, b.len, &got), 0);
	ck_assert_str_eq(got.mac, nc.mac);
	ck_assert_uint_eq(got.mtu, 1500);
	ck_assert_uint_eq(got.n_addrs, 2);
	ck_assert_str_eq(got.addrs[1], "fd00::5/64");
	ck_assert_uint_eq(got.n_routes, 2);
	ck_assert_str_eq(got.routes[0].gw, "10.88.7.1");
	ck_assert_str_eq(got.routes[1].dst, "10.99.0.0/16");
	ck_assert_str_eq(got.routes[1].gw, "");
	ck_assert_str_eq(got.resolv_conf, nc.resolv_conf);
	agent_net_config_free(&got);
	ck_assert_int_eq(agent_put_u32(&b, 0), 0); /* a trailing word */
	ck_assert_int_eq(agent_net_config_decode(b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);

	/* the encoder refuses what the decoder would: no address, a bad one, a bad gateway or MAC */
	struct agent_net_config bad = nc;
	bad.n_addrs = 0;
	ck_assert_int_eq(agent_net_config_encode(&b, &bad), -EINVAL);
	bad = nc;
	bad.addrs[0] = "10.88.7.5";
	ck_assert_int_eq(agent_net_config_encode(&b, &bad), -EINVAL);
	bad = nc;
	bad.routes[0].gw = "-f";
	ck_assert_int_eq(agent_net_config_encode(&b, &bad), -EINVAL);
	bad = nc;
	bad.mac = "0a:58";
	ck_assert_int_eq(agent_net_config_encode(&b, &bad), -EINVAL);
	bad = nc;
	bad.n_routes = AGENT_MAX_NET_ITEMS + 1;
	ck_assert_int_eq(agent_net_config_encode(&b, &bad), -EINVAL);
	agent_buf_free(&b);
	/* and the decoder, when a peer sends them anyway: an option where an address belongs */
	ck_assert_int_eq(agent_put_str(&b, nc.mac, 17) || agent_put_u32(&b, 0) || agent_put_u32(&b, 1) ||
				 agent_put_str(&b, "-x", 2) || agent_put_u32(&b, 0) || agent_put_str(&b, "", 0),
			 0);
	ck_assert_int_eq(agent_net_config_decode(b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
	/* too many addresses, MTU out of range */
	ck_assert_int_eq(agent_put_str(&b, nc.mac, 17) || agent_put_u32(&b, 0) || agent_put_u32(&b, 1000), 0);
	ck_assert_int_eq(agent_net_config_decode(b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
	ck_assert_int_eq(agent_put_str(&b, nc.mac, 17) || agent_put_u32(&b, 70000) || agent_put_u32(&b, 1) ||
				 agent_put_str(&b, "10.0.0.2/8", 10) || agent_put_u32(&b, 0) || agent_put_str(&b, "", 0),
			 0);
	ck_assert_int_eq(agent_net_config_decode(b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
}
END_TEST

START_TEST(new_ops_do_not_collide)
{
	/* every message type is distinct and inside the header's accepted range */
	const uint16_t types[] = { AGENT_MSG_HELLO, AGENT_MSG_PING, AGENT_MSG_PONG, AGENT_MSG_EXEC,
				   AGENT_MSG_EXEC_RESULT, AGENT_MSG_POWEROFF, AGENT_MSG_ERROR, AGENT_MSG_OK,
				   AGENT_MSG_CTR_CREATE, AGENT_MSG_CTR_START, AGENT_MSG_CTR_STOP, AGENT_MSG_CTR_STATUS,
				   AGENT_MSG_CTR_STATE, AGENT_MSG_CTR_LOGS, AGENT_MSG_CTR_LOG_DATA, AGENT_MSG_CTR_EXEC,
				   AGENT_MSG_CTR_REMOVE, AGENT_MSG_NET_CONFIG, AGENT_MSG_CTR_STATS,
				   AGENT_MSG_CTR_STATS_DATA, AGENT_MSG_CTR_UPDATE, AGENT_MSG_CTR_EXEC_STREAM,
				   AGENT_MSG_CTR_ATTACH_STREAM, AGENT_MSG_STREAM_OPENED, AGENT_MSG_STREAM_STDIN,
				   AGENT_MSG_STREAM_STDIN_CLOSE, AGENT_MSG_STREAM_STDOUT, AGENT_MSG_STREAM_STDERR,
				   AGENT_MSG_STREAM_RESIZE, AGENT_MSG_STREAM_EXIT, AGENT_MSG_STREAM_KILL,
				   AGENT_MSG_STREAM_KEEPALIVE, AGENT_MSG_POD_PORTFWD_STREAM,
				   AGENT_MSG_STREAM_STDOUT_CLOSE, AGENT_MSG_VOL_PUT, AGENT_MSG_VOL_GET };
	size_t n = sizeof(types) / sizeof(types[0]);
	for (size_t i = 0; i < n; i++) {
		struct agent_hdr h = { .type = types[i] }, out;
		uint8_t raw[AGENT_HDR_SIZE];
		agent_hdr_encode(raw, &h);
		ck_assert_int_eq(agent_hdr_decode(raw, &out), 0);
		for (size_t j = 0; j < i; j++)
			ck_assert_uint_ne(types[i], types[j]);
	}
}
END_TEST

START_TEST(vol_put_round_trip)
{
	struct agent_buf b = { 0 };
	struct agent_vol_put got;

	ck_assert_int_eq(AGENT_MSG_VOL_PUT, 22);
	ck_assert_int_eq(agent_vol_put_encode(&b, "v0123abcd", AGENT_VOL_BEGIN | AGENT_VOL_REPLACE, "abc", 3), 0);
	ck_assert_int_eq(agent_vol_put_decode(b.data, b.len, &got), 0);
	ck_assert_str_eq(got.key, "v0123abcd");
	ck_assert_uint_eq(got.flags, AGENT_VOL_BEGIN | AGENT_VOL_REPLACE);
	ck_assert_uint_eq(got.len, 3);
	ck_assert_mem_eq(got.data, "abc", 3);
	/* every truncation and a trailing byte are refused */
	for (size_t cut = 0; cut < b.len; cut++)
		ck_assert_int_eq(agent_vol_put_decode(b.data, cut, &got), -EPROTO);
	ck_assert_int_eq(agent_put_u32(&b, 0), 0);
	ck_assert_int_eq(agent_vol_put_decode(b.data, b.len, &got), -EPROTO);
	agent_buf_free(&b);
	/* bad keys and flags are refused by both sides */
	const char *bad_keys[] = { "", "../x", "a/b", ".hidden", "-x", "a b", NULL };
	for (size_t i = 0; bad_keys[i]; i++) {
		ck_assert_int_eq(agent_vol_put_encode(&b, bad_keys[i], 0, "", 0), -EINVAL);
		agent_buf_free(&b);
		ck_assert_int_eq(agent_put_str(&b, bad_keys[i], strlen(bad_keys[i])), 0);
		ck_assert_int_eq(agent_put_u32(&b, 0), 0);
		ck_assert_int_eq(agent_put_str(&b, "", 0), 0);
		ck_assert_int_eq(agent_vol_put_decode(b.data, b.len, &got), -EPROTO);
		agent_buf_free(&b);
	}
	ck_assert_int_eq(agent_vol_put_encode(&b, "v1", 64, "", 0), -EINVAL);
	agent_buf_free(&b);
}
END_TEST

START_TEST(vol_records_are_checked)
{
	struct agent_buf b = { 0 };
	struct agent_vol_rec in = { .type = AGENT_VOL_DIR, .mode = 0755, .path = "d", .path_len = 1 }, out;
	struct agent_reader r;

	ck_assert_int_eq(agent_vol_rec_put(&b, &in), 0);
	in = (struct agent_vol_rec){ .type = AGENT_VOL_FILE, .mode = 04755, .path = "d/f", .path_len = 3,
				     .data = (const uint8_t *)"hi", .data_len = 2 };
	ck_assert_int_eq(agent_vol_rec_put(&b, &in), 0);
	in = (struct agent_vol_rec){ .type = AGENT_VOL_LINK, .path = "l", .path_len = 1,
				     .data = (const uint8_t *)"/etc/shadow", .data_len = 11 };
	ck_assert_int_eq(agent_vol_rec_put(&b, &in), 0);
	r = (struct agent_reader){ b.data, b.len };
	ck_assert_int_eq(agent_vol_rec_next(&r, &out), 1);
	ck_assert_uint_eq(out.type, AGENT_VOL_DIR);
	ck_assert_int_eq(agent_vol_rec_next(&r, &out), 1);
	ck_assert_uint_eq(out.mode, 0755); /* no setuid bits in the guest */
	ck_assert_mem_eq(out.data, "hi", 2);
	ck_assert_int_eq(agent_vol_rec_next(&r, &out), 1);
	ck_assert_uint_eq(out.type, AGENT_VOL_LINK);
	ck_assert_int_eq(agent_vol_rec_next(&r, &out), 0);
	/* a truncated stream ends in an error, never a read past it */
	for (size_t cut = 1; cut < 16; cut++) {
		r = (struct agent_reader){ b.data, cut };
		ck_assert_int_eq(agent_vol_rec_next(&r, &out), -EPROTO);
	}
	agent_buf_free(&b);
	/* paths: relative, no "", ".", "..", no double or trailing slash */
	const char *bad[] = { "/etc", "..", "a/../b", "a//b", "a/", ".", "a/./b", "", NULL };
	for (size_t i = 0; bad[i]; i++) {
		ck_assert_int_eq(agent_vol_path_ok(bad[i], strlen(bad[i])), 0);
		in = (struct agent_vol_rec){ .type = AGENT_VOL_DIR, .path = bad[i], .path_len = strlen(bad[i]) };
		ck_assert_int_eq(agent_vol_rec_put(&b, &in), -EINVAL);
		/* hand-made record with that path: refused by the reader */
		agent_buf_free(&b);
		ck_assert_int_eq(agent_put_u32(&b, AGENT_VOL_DIR), 0);
		ck_assert_int_eq(agent_put_u32(&b, 0755), 0);
		ck_assert_int_eq(agent_put_str(&b, bad[i], strlen(bad[i])), 0);
		ck_assert_int_eq(agent_put_str(&b, "", 0), 0);
		r = (struct agent_reader){ b.data, b.len };
		ck_assert_int_eq(agent_vol_rec_next(&r, &out), -EPROTO);
		agent_buf_free(&b);
	}
	ck_assert_int_eq(agent_vol_path_ok("..data", 6), 1);
	ck_assert_int_eq(agent_vol_path_ok("a/..2026_11_29/b", 16), 1);
	/* a directory with data, an empty link target, an unknown type */
	const uint32_t types[] = { AGENT_VOL_DIR, AGENT_VOL_LINK, 9 };
	const char *datas[] = { "x", "", "x" };
	for (size_t i = 0; i < 3; i++) {
		ck_assert_int_eq(agent_put_u32(&b, types[i]), 0);
		ck_assert_int_eq(agent_put_u32(&b, 0644), 0);
		ck_assert_int_eq(agent_put_str(&b, "n", 1), 0);
		ck_assert_int_eq(agent_put_str(&b, datas[i], strlen(datas[i])), 0);
		r = (struct agent_reader){ b.data, b.len };
		ck_assert_int_eq(agent_vol_rec_next(&r, &out), -EPROTO);
		agent_buf_free(&b);
	}
}
END_TEST

START_TEST(vol_get_round_trip)
{
	struct agent_buf b = { 0 };
	struct agent_vol_data d;
	char key[AGENT_MAX_ID_LEN + 1];

	ck_assert_int_eq(AGENT_MSG_VOL_GET, 23);
	ck_assert_int_eq(AGENT_MSG_LAST, AGENT_MSG_VOL_GET);
	/* the request: a key, nothing else */
	ck_assert_int_eq(agent_vol_get_encode(&b, "v00ff"), 0);
	ck_assert_int_eq(agent_vol_get_decode(b.data, b.len, key), 0);
	ck_assert_str_eq(key, "v00ff");
	for (size_t cut = 0; cut < b.len; cut++)
		ck_assert_int_eq(agent_vol_get_decode(b.data, cut, key), -EPROTO);
	ck_assert_int_eq(agent_put_u32(&b, 0), 0);
	ck_assert_int_eq(agent_vol_get_decode(b.data, b.len, key), -EPROTO);
	agent_buf_free(&b);
	ck_assert_int_eq(agent_vol_get_encode(&b, "../etc"), -EINVAL);
	ck_assert_int_eq(agent_put_str(&b, "../etc", 6), 0);
	ck_assert_int_eq(agent_vol_get_decode(b.data, b.len, key), -EPROTO);
	agent_buf_free(&b);
	/* the reply: flags and the data; every truncation and a trailing byte refused */
	ck_assert_int_eq(agent_vol_data_encode(&b, 0, "bye from xen", 12), 0);
	ck_assert_int_eq(agent_vol_data_decode(b.data, b.len, &d), 0);
	ck_assert_uint_eq(d.flags, 0);
	ck_assert_uint_eq(d.len, 12);
	ck_assert_mem_eq(d.data, "bye from xen", 12);
	for (size_t cut = 0; cut < b.len; cut++)
		ck_assert_int_eq(agent_vol_data_decode(b.data, cut, &d), -EPROTO);
	ck_assert_int_eq(agent_put_bytes(&b, "x", 1), 0);
	ck_assert_int_eq(agent_vol_data_decode(b.data, b.len, &d), -EPROTO);
	ck_assert_ptr_null(d.data);
	agent_buf_free(&b);
	/* empty is fine; exactly the cap with TRUNCATED is fine */
	ck_assert_int_eq(agent_vol_data_encode(&b, 0, "", 0), 0);
	ck_assert_int_eq(agent_vol_data_decode(b.data, b.len, &d), 0);
	ck_assert_uint_eq(d.len, 0);
	agent_buf_free(&b);
	uint8_t *big = calloc(1, AGENT_VOL_GET_MAX + 1);
	ck_assert_ptr_nonnull(big);
	ck_assert_int_eq(agent_vol_data_encode(&b, AGENT_VOL_GET_TRUNCATED, big, AGENT_VOL_GET_MAX), 0);
	ck_assert_int_eq(agent_vol_data_decode(b.data, b.len, &d), 0);
	ck_assert_uint_eq(d.len, AGENT_VOL_GET_MAX);
	ck_assert_uint_eq(d.flags, AGENT_VOL_GET_TRUNCATED);
	agent_buf_free(&b);
	/* oversize, TRUNCATED under the cap and unknown flags: refused by both sides */
	ck_assert_int_eq(agent_vol_data_encode(&b, 0, big, AGENT_VOL_GET_MAX + 1), -EINVAL);
	ck_assert_int_eq(agent_vol_data_encode(&b, AGENT_VOL_GET_TRUNCATED, big, 10), -EINVAL);
	ck_assert_int_eq(agent_vol_data_encode(&b, 2, big, 10), -EINVAL);
	agent_buf_free(&b);
	const struct {
		uint32_t flags;
		size_t len;
	} bad[] = { { 0, AGENT_VOL_GET_MAX + 1 }, { AGENT_VOL_GET_TRUNCATED, AGENT_VOL_GET_MAX + 1 },
		    { AGENT_VOL_GET_TRUNCATED, 10 }, { 2, 10 }, { 0x80000000u, 0 } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(agent_put_u32(&b, bad[i].flags), 0);
		ck_assert_int_eq(agent_put_str(&b, (const char *)big, bad[i].len), 0);
		ck_assert_int_eq(agent_vol_data_decode(b.data, b.len, &d), -EPROTO);
		agent_buf_free(&b);
	}
	/* a length field past the payload */
	ck_assert_int_eq(agent_put_u32(&b, 0), 0);
	ck_assert_int_eq(agent_put_u32(&b, 100), 0);
	ck_assert_int_eq(agent_put_bytes(&b, "short", 5), 0);
	ck_assert_int_eq(agent_vol_data_decode(b.data, b.len, &d), -EPROTO);
	agent_buf_free(&b);
	free(big);
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
		{ "stats_update", stats_and_update_round_trip },
		{ "net_addresses", net_addresses_are_checked },
		{ "net_config", net_config_round_trip },
		{ "op_numbers", new_ops_do_not_collide },
		{ "vol_put", vol_put_round_trip },
		{ "vol_records", vol_records_are_checked },
		{ "vol_get", vol_get_round_trip },
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
