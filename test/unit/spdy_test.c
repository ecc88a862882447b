/* SPDY/3.1 codec: dictionary, frame parsing and building, header compression across blocks,
 * malformed input rejected with clear errors. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "spdy.h"

static struct vgpu_err err;

START_TEST(dictionary_is_spdy3)
{
	ck_assert_uint_eq(spdy_dictionary_len, 1423);
	uLong a = adler32(0L, Z_NULL, 0);
	a = adler32(a, (const Bytef *)spdy_dictionary, (uInt)spdy_dictionary_len);
	ck_assert_uint_eq(a, 0xe3c6a7c2u);
}
END_TEST

START_TEST(data_frame_roundtrip_and_partial)
{
	struct spdy_buf b = { 0 };
	ck_assert_int_eq(spdy_put_data(&b, 5, SPDY_FLAG_FIN, "hello", 5), 0);
	ck_assert_uint_eq(b.len, 13);
	const uint8_t want[8] = { 0, 0, 0, 5, 1, 0, 0, 5 };
	ck_assert_mem_eq(b.data, want, 8);
	struct spdy_frame f;
	for (size_t i = 0; i < b.len; i++)
		ck_assert_int_eq(spdy_frame_parse(b.data, i, 1 << 20, &f, &err), 0);
	ck_assert_int_eq(spdy_frame_parse(b.data, b.len, 1 << 20, &f, &err), 13);
	ck_assert(!f.control);
	ck_assert_uint_eq(f.stream_id, 5);
	ck_assert_uint_eq(f.flags, SPDY_FLAG_FIN);
	ck_assert_uint_eq(f.data_len, 5);
	ck_assert_mem_eq(f.data, "hello", 5);
	ck_assert_int_eq(spdy_put_data(&b, 0, 0, "x", 1), -EINVAL);
	spdy_buf_free(&b);
}
END_TEST

START_TEST(control_frames_roundtrip)
{
	struct spdy_buf b = { 0 };
	ck_assert_int_eq(spdy_put_rst_stream(&b, 7, SPDY_RST_CANCEL), 0);
	ck_assert_int_eq(spdy_put_goaway(&b, 9, SPDY_GOAWAY_PROTOCOL_ERROR), 0);
	ck_assert_int_eq(spdy_put_ping(&b, 42), 0);
	ck_assert_int_eq(spdy_put_window_update(&b, 3, 65536), 0);
	uint32_t ids[2] = { 4, 7 }, vals[2] = { 100, 65536 };
	ck_assert_int_eq(spdy_put_settings(&b, 2, ids, vals), 0);
	const uint8_t rst_hdr[8] = { 0x80, 3, 0, 3, 0, 0, 0, 8 };
	ck_assert_mem_eq(b.data, rst_hdr, 8);
	struct spdy_frame f;
	size_t off = 0;
	ssize_t n = spdy_frame_parse(b.data + off, b.len - off, 1 << 20, &f, &err);
	ck_assert_int_eq(n, 16);
	ck_assert(f.control && f.type == SPDY_RST_STREAM && f.stream_id == 7 && f.status == SPDY_RST_CANCEL);
	off += (size_t)n;
	n = spdy_frame_parse(b.data + off, b.len - off, 1 << 20, &f, &err);
	ck_assert(n == 16 && f.type == SPDY_GOAWAY && f.stream_id == 9 && f.status == 1);
	off += (size_t)n;
	n = spdy_frame_parse(b.data + off, b.len - off, 1 << 20, &f, &err);
	ck_assert(n == 12 && f.type == SPDY_PING && f.ping_id == 42);
	off += (size_t)n;
	n = spdy_frame_parse(b.data + off, b.len - off, 1 << 20, &f, &err);
	ck_assert(n == 16 && f.type == SPDY_WINDOW_UPDATE && f.stream_id == 3 && f.delta == 65536);
	off += (size_t)n;
	n = spdy_frame_parse(b.data + off, b.len - off, 1 << 20, &f, &err);
	ck_assert(n == 28 && f.type == SPDY_SETTINGS && f.data_len == 16);
	off += (size_t)n;
	ck_assert_uint_eq(off, b.len);
	spdy_buf_free(&b);
}
END_TEST

/* Client and server compression contexts: several header blocks in a row share one zlib stream
 * per direction, as SPDY requires. */
START_TEST(headers_compress_across_blocks)
{
	struct spdy_zctx client, server;
	ck_assert_int_eq(spdy_zctx_init(&client, &err), 0);
	ck_assert_int_eq(spdy_zctx_init(&server, &err), 0);
	const char *types[] = { "error", "stdin", "stdout", "stderr" };
	struct spdy_buf b = { 0 };
	for (uint32_t i = 0; i < 4; i++) {
		struct spdy_headers h = { 0 };
		ck_assert_int_eq(spdy_headers_add(&h, "streamType", types[i]), 0);
		ck_assert_int_eq(spdy_headers_add(&h, "X-Long", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 0);
		ck_assert_int_eq(spdy_put_syn_stream(&b, &client, 1 + 2 * i, 0, 0, 0, &h), 0);
		spdy_headers_free(&h);
	}
	size_t off = 0;
	for (uint32_t i = 0; i < 4; i++) {
		struct spdy_frame f;
		ssize_t n = spdy_frame_parse(b.data + off, b.len - off, 1 << 20, &f, &err);
		ck_assert_int_gt(n, 0);
		off += (size_t)n;
		ck_assert(f.control && f.type == SPDY_SYN_STREAM && f.stream_id == 1 + 2 * i);
		struct spdy_headers h;
		ck_assert_msg(spdy_headers_decode(&server, f.data, f.data_len, &h, &err) == 0, "%s", err.msg);
		ck_assert_uint_eq(h.n, 2);
		ck_assert_str_eq(h.names[0], "streamtype"); /* names are lower-cased */
		ck_assert_str_eq(spdy_headers_get(&h, "StreamType"), types[i]);
		ck_assert_ptr_null(spdy_headers_get(&h, "port"));
		spdy_headers_free(&h);
	}
	/* and the reply direction */
	struct spdy_headers empty = { 0 };
	spdy_buf_free(&b);
	ck_assert_int_eq(spdy_put_syn_reply(&b, &server, 1, 0, &empty), 0);
	struct spdy_frame f;
	ck_assert_int_gt(spdy_frame_parse(b.data, b.len, 1 << 20, &f, &err), 0);
	struct spdy_headers h;
	ck_assert_int_eq(spdy_headers_decode(&client, f.data, f.data_len, &h, &err), 0);
	ck_assert_uint_eq(h.n, 0);
	spdy_headers_free(&h);
	spdy_buf_free(&b);
	spdy_zctx_fini(&client);
	spdy_zctx_fini(&server);
}
END_TEST

START_TEST(rejects_malformed_frames)
{
	struct spdy_frame f;
	/* control frame of version 2 */
	const uint8_t v2[] = { 0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1 };
	ck_assert_int_eq(spdy_frame_parse(v2, sizeof(v2), 1 << 20, &f, &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "version"));
	/* data frame on stream 0 */
	const uint8_t d0[] = { 0, 0, 0, 0, 0, 0, 0, 1, 'x' };
	ck_assert_int_eq(spdy_frame_parse(d0, sizeof(d0), 1 << 20, &f, &err), -EPROTO);
	/* RST_STREAM too short */
	const uint8_t rst[] = { 0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1 };
	ck_assert_int_eq(spdy_frame_parse(rst, sizeof(rst), 1 << 20, &f, &err), -EPROTO);
	/* SETTINGS claiming more entries than it holds */
	const uint8_t set[] = { 0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 1 };
	ck_assert_int_eq(spdy_frame_parse(set, sizeof(set), 1 << 20, &f, &err), -EPROTO);
	/* WINDOW_UPDATE with delta 0 */
	const uint8_t wu[] = { 0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0 };
	ck_assert_int_eq(spdy_frame_parse(wu, sizeof(wu), 1 << 20, &f, &err), -EPROTO);
	/* frame longer than the limit is refused from its header alone */
	const uint8_t big[] = { 0, 0, 0, 1, 0, 0xff, 0xff, 0xff };
	ck_assert_int_eq(spdy_frame_parse(big, sizeof(big), 1 << 20, &f, &err), -EMSGSIZE);
	/* unknown control type: parsed, left to the session to ignore */
	const uint8_t unk[] = { 0x80, 3, 0, 0x33, 0, 0, 0, 0 };
	ck_assert_int_eq(spdy_frame_parse(unk, sizeof(unk), 1 << 20, &f, &err), 8);
	ck_assert_uint_eq(f.type, 0x33);
}
END_TEST

static void deflate_raw(const void *raw, size_t len, uint8_t *out, size_t *out_len)
{
	z_stream zs = { 0 };
	ck_assert_int_eq(deflateInit(&zs, Z_DEFAULT_COMPRESSION), Z_OK);
	ck_assert_int_eq(deflateSetDictionary(&zs, (const Bytef *)spdy_dictionary, (uInt)spdy_dictionary_len), Z_OK);
	zs.next_in = (Bytef *)raw;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)*out_len;
	ck_assert_int_eq(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
	*out_len -= zs.avail_out;
	deflateEnd(&zs);
}

START_TEST(rejects_malformed_header_blocks)
{
	struct spdy_zctx z;
	struct spdy_headers h;
	/* not zlib at all */
	ck_assert_int_eq(spdy_zctx_init(&z, &err), 0);
	const uint8_t junk[] = "this is not a zlib stream";
	ck_assert_int_eq(spdy_headers_decode(&z, junk, sizeof(junk), &h, &err), -EPROTO);
	spdy_zctx_fini(&z);
	/* a name length that runs past the block */
	const uint8_t bad_len[] = { 0, 0, 0, 1, 0, 0, 0, 200, 'a', 'b' };
	uint8_t comp[1024];
	size_t clen = sizeof(comp);
	deflate_raw(bad_len, sizeof(bad_len), comp, &clen);
	ck_assert_int_eq(spdy_zctx_init(&z, &err), 0);
	ck_assert_int_eq(spdy_headers_decode(&z, comp, clen, &h, &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "beyond"));
	spdy_zctx_fini(&z);
	/* too many headers */
	const uint8_t many[] = { 0, 1, 0, 0 };
	clen = sizeof(comp);
	deflate_raw(many, sizeof(many), comp, &clen);
	ck_assert_int_eq(spdy_zctx_init(&z, &err), 0);
	ck_assert_int_eq(spdy_headers_decode(&z, comp, clen, &h, &err), -EPROTO);
	spdy_zctx_fini(&z);
	/* a block that inflates beyond the limit (zlib bomb) */
	size_t raw_len = SPDY_MAX_HEADER_BLOCK + 4096;
	uint8_t *raw = calloc(1, raw_len);
	uint8_t *bomb = malloc(raw_len);
	size_t blen = raw_len;
	deflate_raw(raw, raw_len, bomb, &blen);
	ck_assert_uint_lt(blen, 4096);
	ck_assert_int_eq(spdy_zctx_init(&z, &err), 0);
	ck_assert_int_eq(spdy_headers_decode(&z, bomb, blen, &h, &err), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err.msg, "inflates beyond"));
	spdy_zctx_fini(&z);
	free(raw);
	free(bomb);
}
END_TEST

static Suite *spdy_suite(void)
{
	Suite *s = suite_create("spdy");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "dictionary", dictionary_is_spdy3 },
		{ "data_frames", data_frame_roundtrip_and_partial },
		{ "control_frames", control_frames_roundtrip },
		{ "header_compression", headers_compress_across_blocks },
		{ "malformed_frames", rejects_malformed_frames },
		{ "malformed_header_blocks", rejects_malformed_header_blocks },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_test(tc, cases[i].test);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(spdy_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
