/* The pure parts of idm/'s Xen transport (idm/xen_proto.c), without Xen: the xenstore channel
 * record a guest writes (format round trip; every malformed, truncated, oversized or out-of-bounds
 * record refused: the broker maps grants only from a record that passed), entry names, and the
 * xenstore wire messages (struct idm_xs_hdr + payload) the guest side encodes and decodes. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm.h"

static struct idm_xen_record *sample(void)
{
	struct idm_xen_record *r = calloc(1, sizeof *r);
	r->port = 17;
	r->npages = IDM_XEN_PAGES;
	for (uint32_t i = 0; i < IDM_XEN_PAGES; i++)
		r->refs[i] = 8 + i * 3;
	return r;
}

static char *format(const struct idm_xen_record *r)
{
	char *buf = malloc(IDM_XEN_RECORD_MAX + 1);
	int n = idm_xen_record_format(r, buf, IDM_XEN_RECORD_MAX + 1);
	ck_assert_int_gt(n, 0);
	ck_assert_uint_eq(strlen(buf), (size_t)n);
	return buf;
}

static int parse(const char *s)
{
	struct idm_xen_record *r = calloc(1, sizeof *r);
	int rc = idm_xen_record_parse(s, strlen(s), r);
	free(r);
	return rc;
}

START_TEST(record_round_trip)
{
	struct idm_xen_record *in = sample(), *out = calloc(1, sizeof *out);
	char *s = format(in);
	ck_assert_int_eq(strncmp(s, "v=1 port=17 pages=", 18), 0);
	ck_assert_int_eq(idm_xen_record_parse(s, strlen(s), out), 0);
	ck_assert_uint_eq(out->port, 17);
	ck_assert_uint_eq(out->npages, IDM_XEN_PAGES);
	ck_assert_mem_eq(out->refs, in->refs, IDM_XEN_PAGES * sizeof(uint32_t));
	free(s);
	free(in);
	free(out);
}
END_TEST

START_TEST(record_every_truncation_refused)
{
	struct idm_xen_record *in = sample(), *out = calloc(1, sizeof *out);
	char *s = format(in);
	/* cut anywhere before the last ref's first digit (a cut inside the last number is just
	 * another well-formed record with a different last ref) */
	size_t last = (size_t)(strrchr(s, ',') - s) + 1;
	for (size_t n = 0; n <= last; n++)
		ck_assert_msg(idm_xen_record_parse(s, n, out) == -EINVAL, "prefix of %zu bytes accepted", n);
	free(s);
	free(in);
	free(out);
}
END_TEST

/* A record with the sample's refs but text replaced/added at the given place. */
static char *variant(const char *prefix, const char *refs_tail)
{
	struct idm_xen_record *in = sample();
	char *s = format(in);
	char *refs = strstr(s, " refs=") + 6;
	char *out = malloc(strlen(s) + 256);
	snprintf(out, strlen(s) + 256, "%s%s%s", prefix, refs, refs_tail);
	free(s);
	free(in);
	return out;
}

START_TEST(record_malformed_refused)
{
	char pages[32];
	snprintf(pages, sizeof pages, "%u", IDM_XEN_PAGES);
	const struct {
		const char *prefix, *tail;
	} bad[] = {
		{ "v=2 port=17 pages=%s refs=", "" },          /* unknown version */
		{ "v=1 port=0 pages=%s refs=", "" },           /* no event channel */
		{ "v=1 port=017 pages=%s refs=", "" },         /* leading zero */
		{ "v=1 port=+17 pages=%s refs=", "" },         /* sign */
		{ "v=1 port=-1 pages=%s refs=", "" },
		{ "v=1 port=4294967296 pages=%s refs=", "" },  /* overflows u32 */
		{ "v=1  port=17 pages=%s refs=", "" },         /* extra space */
		{ "v=1 port=17 pages=%s refs=", "," },         /* trailing comma */
		{ "v=1 port=17 pages=%s refs=", ",5" },        /* one ref too many */
		{ "v=1 port=17 pages=%s refs=", " " },         /* trailing byte */
		{ "v=1 port=17 pages=%s refs=", "\n" },
		{ "V=1 port=17 pages=%s refs=", "" },
		{ "v=1 port=17 pages=%s refs= ", "" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char prefix[128];
		snprintf(prefix, sizeof prefix, bad[i].prefix, pages);
		char *s = variant(prefix, bad[i].tail);
		ck_assert_msg(parse(s) == -EINVAL, "accepted: %.80s...", s);
		free(s);
	}
	/* page counts other than the fixed layout, however well formed */
	const char *counts[] = { "0", "1", "3", "4294967295", "4294967296", "99999999999" };
	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
		char prefix[128];
		snprintf(prefix, sizeof prefix, "v=1 port=17 pages=%s refs=", counts[i]);
		char *s = variant(prefix, "");
		ck_assert_msg(parse(s) == -EINVAL, "pages=%s accepted", counts[i]);
		free(s);
	}
	ck_assert_int_eq(parse("v=1 port=17 pages=2 refs=1,2"), -EINVAL);
	ck_assert_int_eq(parse(""), -EINVAL);
	ck_assert_int_eq(parse("garbage"), -EINVAL);
}
END_TEST

START_TEST(record_bad_refs_refused)
{
	struct idm_xen_record *in = sample();
	char *s = format(in);
	char *last = strrchr(s, ',') + 1;
	/* a ref that overflows u32, one with a sign, a missing one between commas */
	const char *tails[] = { "4294967296", "-5", "", "0x10", "1 " };
	for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
		char *t = malloc(strlen(s) + 32);
		snprintf(t, strlen(s) + 32, "%.*s%s", (int)(last - s), s, tails[i]);
		ck_assert_msg(parse(t) == -EINVAL, "ref '%s' accepted", tails[i]);
		free(t);
	}
	/* a NUL inside, and an oversized record, are refused without parsing */
	struct idm_xen_record *r = calloc(1, sizeof *r);
	size_t len = strlen(s);
	s[10] = '\0';
	ck_assert_int_eq(idm_xen_record_parse(s, len, r), -EINVAL);
	char *big = malloc(IDM_XEN_RECORD_MAX + 2);
	memset(big, '1', IDM_XEN_RECORD_MAX + 1);
	big[IDM_XEN_RECORD_MAX + 1] = '\0';
	ck_assert_int_eq(idm_xen_record_parse(big, IDM_XEN_RECORD_MAX + 1, r), -EINVAL);
	ck_assert_int_eq(idm_xen_record_parse(NULL, 10, r), -EINVAL);
	free(big);
	free(r);
	free(s);
	free(in);
}
END_TEST

START_TEST(record_format_bounds)
{
	struct idm_xen_record *r = sample();
	char small[32];
	ck_assert_int_eq(idm_xen_record_format(r, small, sizeof small), -ENOSPC);
	r->npages = IDM_XEN_PAGES + 1;
	ck_assert_int_eq(idm_xen_record_format(r, small, sizeof small), -EINVAL);
	/* refs so large that the record exceeds xenstored's entry size: refused, not truncated */
	r->npages = IDM_XEN_PAGES;
	for (uint32_t i = 0; i < IDM_XEN_PAGES; i++)
		r->refs[i] = 4000000000u;
	char *buf = malloc(8192);
	ck_assert_int_eq(idm_xen_record_format(r, buf, 8192), -ENOSPC);
	free(buf);
	free(r);
}
END_TEST

START_TEST(names)
{
	ck_assert(idm_xen_name_valid("c1a-2b3c"));
	ck_assert(idm_xen_name_valid("0"));
	ck_assert(!idm_xen_name_valid(""));
	ck_assert(!idm_xen_name_valid(NULL));
	ck_assert(!idm_xen_name_valid("../x"));
	ck_assert(!idm_xen_name_valid("a/b"));
	ck_assert(!idm_xen_name_valid("Upper"));
	ck_assert(!idm_xen_name_valid("a b"));
	char longname[IDM_XEN_NAME_MAX + 2];
	memset(longname, 'a', sizeof longname);
	longname[IDM_XEN_NAME_MAX] = '\0';
	ck_assert(idm_xen_name_valid(longname));
	longname[IDM_XEN_NAME_MAX] = 'a';
	longname[IDM_XEN_NAME_MAX + 1] = '\0';
	ck_assert(!idm_xen_name_valid(longname));
}
END_TEST

START_TEST(xs_encode_write)
{
	uint8_t buf[256];
	const char *parts[2] = { "data/vgpu/c1", "v=1" };
	int n = idm_xs_encode(IDM_XS_WRITE, 7, parts, 2, false, buf, sizeof buf);
	ck_assert_int_eq(n, (int)(sizeof(struct idm_xs_hdr) + 13 + 3));
	struct idm_xs_hdr h;
	ck_assert_int_eq(idm_xs_decode(buf, (size_t)n, &h), 0);
	ck_assert_uint_eq(h.type, IDM_XS_WRITE);
	ck_assert_uint_eq(h.req_id, 7);
	ck_assert_uint_eq(h.tx_id, 0);
	ck_assert_uint_eq(h.len, 16);
	ck_assert_mem_eq(buf + sizeof h, "data/vgpu/c1\0v=1", 16);
	/* RM: the path with its NUL */
	const char *rm[1] = { "data/vgpu/c1" };
	n = idm_xs_encode(IDM_XS_RM, 8, rm, 1, true, buf, sizeof buf);
	ck_assert_int_eq(n, (int)(sizeof h + 13));
	ck_assert_uint_eq(buf[n - 1], 0);
}
END_TEST

START_TEST(xs_encode_bounds)
{
	static uint8_t buf[sizeof(struct idm_xs_hdr) + 2 * IDM_XS_PAYLOAD_MAX];
	char *big = malloc(IDM_XS_PAYLOAD_MAX + 1);
	memset(big, 'x', IDM_XS_PAYLOAD_MAX);
	big[IDM_XS_PAYLOAD_MAX] = '\0';
	const char *parts[2] = { "p", big };
	ck_assert_int_eq(idm_xs_encode(IDM_XS_WRITE, 1, parts, 2, false, buf, sizeof buf), -ENOSPC);
	big[IDM_XS_PAYLOAD_MAX - 2] = '\0'; /* "p\0" + 4094 bytes: exactly the maximum */
	ck_assert_int_eq(idm_xs_encode(IDM_XS_WRITE, 1, parts, 2, false, buf, sizeof buf),
					 (int)(sizeof(struct idm_xs_hdr) + IDM_XS_PAYLOAD_MAX));
	ck_assert_int_eq(idm_xs_encode(IDM_XS_WRITE, 1, parts, 2, false, buf, 100), -ENOSPC);
	const char *null_part[1] = { NULL };
	ck_assert_int_eq(idm_xs_encode(IDM_XS_READ, 1, null_part, 1, true, buf, sizeof buf), -EINVAL);
	free(big);
}
END_TEST

START_TEST(xs_decode_partial_and_hostile)
{
	uint8_t buf[64] = { 0 };
	struct idm_xs_hdr h = { IDM_XS_READ, 3, 0, 5 };
	memcpy(buf, &h, sizeof h);
	memcpy(buf + sizeof h, "hello", 5);
	struct idm_xs_hdr out;
	for (size_t n = 0; n < sizeof h + 5; n++)
		ck_assert_int_eq(idm_xs_decode(buf, n, &out), -EAGAIN);
	ck_assert_int_eq(idm_xs_decode(buf, sizeof h + 5, &out), 0);
	ck_assert_uint_eq(out.len, 5);
	h.len = IDM_XS_PAYLOAD_MAX + 1;
	memcpy(buf, &h, sizeof h);
	ck_assert_int_eq(idm_xs_decode(buf, sizeof buf, &out), -EPROTO);
	h.len = UINT32_MAX;
	memcpy(buf, &h, sizeof h);
	ck_assert_int_eq(idm_xs_decode(buf, sizeof buf, &out), -EPROTO);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("idm_xen");
	TCase *rec = tcase_create("record");
	tcase_add_test(rec, record_round_trip);
	tcase_add_test(rec, record_every_truncation_refused);
	tcase_add_test(rec, record_malformed_refused);
	tcase_add_test(rec, record_bad_refs_refused);
	tcase_add_test(rec, record_format_bounds);
	tcase_add_test(rec, names);
	suite_add_tcase(s, rec);
	TCase *xs = tcase_create("xenstore_wire");
	tcase_add_test(xs, xs_encode_write);
	tcase_add_test(xs, xs_encode_bounds);
	tcase_add_test(xs, xs_decode_partial_and_hostile);
	suite_add_tcase(s, xs);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
