/* The daemon <-> vgpu-monitor attach protocol (cri/monitor/attach_proto.c): encoding round trips,
 * every malformed packet refused, and descriptors passed, counted and closed as documented. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "monitor/attach_proto.h"

static int open_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			n++;
	return n;
}

START_TEST(test_roundtrip)
{
	uint8_t buf[VGPU_ATTACH_MSG_MAX];
	struct vgpu_attach_msg in = { .type = VGPU_ATTACH_REPLY, .a = EINVAL, .b = VGPU_ATTACH_TTY | VGPU_ATTACH_HAS_STDIN };
	strcpy(in.text, "no stdin here");
	size_t n = vgpu_attach_encode(buf, &in);
	ck_assert_uint_eq(n, VGPU_ATTACH_HDR_SIZE + strlen("no stdin here"));
	/* little-endian on the wire, whatever the host */
	ck_assert_uint_eq(buf[0], 'V');
	ck_assert_uint_eq(buf[3], '1');
	ck_assert_uint_eq(buf[4], VGPU_ATTACH_REPLY);
	ck_assert_uint_eq(buf[8], EINVAL);
	struct vgpu_attach_msg out;
	ck_assert_int_eq(vgpu_attach_decode(buf, n, &out), 0);
	ck_assert_uint_eq(out.type, VGPU_ATTACH_REPLY);
	ck_assert_uint_eq(out.a, EINVAL);
	ck_assert_uint_eq(out.b, VGPU_ATTACH_TTY | VGPU_ATTACH_HAS_STDIN);
	ck_assert_str_eq(out.text, "no stdin here");
	struct vgpu_attach_msg rs = { .type = VGPU_ATTACH_RESIZE, .a = 65535, .b = 1 };
	n = vgpu_attach_encode(buf, &rs);
	ck_assert_int_eq(vgpu_attach_decode(buf, n, &out), 0);
	ck_assert_uint_eq(out.a, 65535);
	ck_assert_uint_eq(out.b, 1);
	/* a text longer than the limit is cut, not overflowed */
	struct vgpu_attach_msg longer = { .type = VGPU_ATTACH_REPLY, .a = 1 };
	memset(longer.text, 'x', VGPU_ATTACH_TEXT_MAX);
	n = vgpu_attach_encode(buf, &longer);
	ck_assert_uint_eq(n, VGPU_ATTACH_MSG_MAX);
	ck_assert_int_eq(vgpu_attach_decode(buf, n, &out), 0);
	ck_assert_uint_eq(strlen(out.text), VGPU_ATTACH_TEXT_MAX);
}
END_TEST

static int decode_modified(const struct vgpu_attach_msg *m, size_t off, uint8_t value, long len_delta)
{
	uint8_t buf[VGPU_ATTACH_MSG_MAX + 8] = { 0 };
	size_t n = vgpu_attach_encode(buf, m);
	if (off < n)
		buf[off] = value;
	struct vgpu_attach_msg out;
	return vgpu_attach_decode(buf, (size_t)((long)n + len_delta), &out);
}

START_TEST(test_malformed)
{
	struct vgpu_attach_msg hello = { .type = VGPU_ATTACH_HELLO, .a = VGPU_ATTACH_STDOUT };
	ck_assert_int_eq(decode_modified(&hello, 99, 0, 0), 0);
	ck_assert_int_eq(decode_modified(&hello, 0, 'X', 0), -EBADMSG);   /* magic */
	ck_assert_int_eq(decode_modified(&hello, 4, 99, 0), -EBADMSG);    /* unknown type */
	ck_assert_int_eq(decode_modified(&hello, 99, 0, -1), -EBADMSG);   /* truncated header */
	ck_assert_int_eq(decode_modified(&hello, 99, 0, 1), -EBADMSG);    /* trailing byte */
	ck_assert_int_eq(decode_modified(&hello, 6, 4, 0), -EBADMSG);     /* text length beyond the packet */
	ck_assert_int_eq(decode_modified(&hello, 7, 2, 0), -EBADMSG);     /* text length over the limit */
	ck_assert_int_eq(decode_modified(&hello, 8, 0, 0), -EBADMSG);     /* HELLO with no stream */
	ck_assert_int_eq(decode_modified(&hello, 8, 8, 0), -EBADMSG);     /* unknown stream bit */
	ck_assert_int_eq(decode_modified(&hello, 12, 1, 0), -EBADMSG);    /* b must be 0 */
	struct vgpu_attach_msg rs = { .type = VGPU_ATTACH_RESIZE, .a = 80, .b = 24 };
	ck_assert_int_eq(decode_modified(&rs, 99, 0, 0), 0);
	ck_assert_int_eq(decode_modified(&rs, 8, 0, 0), -EBADMSG);        /* width 0 */
	ck_assert_int_eq(decode_modified(&rs, 14, 1, 0), -EBADMSG);       /* height > 65535 */
	struct vgpu_attach_msg rp = { .type = VGPU_ATTACH_REPLY };
	ck_assert_int_eq(decode_modified(&rp, 12, 8, 0), -EBADMSG);       /* unknown mode bit */
	/* a NUL inside the text */
	struct vgpu_attach_msg t = { .type = VGPU_ATTACH_REPLY, .a = 1 };
	strcpy(t.text, "abc");
	ck_assert_int_eq(decode_modified(&t, VGPU_ATTACH_HDR_SIZE + 1, 0, 0), -EBADMSG);
	ck_assert_uint_eq(vgpu_attach_hello_fds(VGPU_ATTACH_STDIN | VGPU_ATTACH_STDERR), 2);
	ck_assert_uint_eq(vgpu_attach_hello_fds(VGPU_ATTACH_STDIN | VGPU_ATTACH_STDOUT | VGPU_ATTACH_STDERR), 3);
}
END_TEST

START_TEST(test_fd_passing)
{
	int before = open_fds();
	int sp[2], p[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	struct vgpu_attach_msg hello = { .type = VGPU_ATTACH_HELLO, .a = VGPU_ATTACH_STDOUT };
	ck_assert_int_eq(vgpu_attach_send(sp[0], &hello, &p[1], 1), 0);
	close(p[1]);
	struct vgpu_attach_msg got;
	int fds[3];
	size_t n = 9;
	ck_assert_int_eq(vgpu_attach_recv(sp[1], &got, fds, 3, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(got.a, VGPU_ATTACH_STDOUT);
	ck_assert_int_eq(fcntl(fds[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	/* the received descriptor is the pipe's write end */
	ck_assert_int_eq(write(fds[0], "hi", 2), 2);
	char buf[4];
	ck_assert_int_eq(read(p[0], buf, sizeof(buf)), 2);
	close(fds[0]);
	/* more fds than the receiver takes: the rest are closed, not leaked */
	int three[3] = { p[0], p[0], p[0] };
	ck_assert_int_eq(vgpu_attach_send(sp[0], &hello, three, 3), 0);
	ck_assert_int_eq(vgpu_attach_recv(sp[1], &got, fds, 0, &n), 0);
	ck_assert_uint_eq(n, 0);
	/* a malformed packet: error, and its fds closed */
	uint8_t junk[20] = { 1, 2, 3 };
	ck_assert_int_eq(send(sp[0], junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	ck_assert_int_eq(vgpu_attach_recv(sp[1], &got, fds, 3, &n), -EBADMSG);
	/* too many fds to send */
	int four[4] = { p[0], p[0], p[0], p[0] };
	ck_assert_int_eq(vgpu_attach_send(sp[0], &hello, four, 4), -EINVAL);
	close(p[0]);
	/* EOF */
	close(sp[0]);
	ck_assert_int_eq(vgpu_attach_recv(sp[1], &got, fds, 3, &n), -EPIPE);
	close(sp[1]);
	ck_assert_int_eq(open_fds(), before);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("attach_proto");
	struct {
		const char *name;
		const TTest *fn;
	} cases[] = {
		{ "roundtrip", test_roundtrip },
		{ "malformed", test_malformed },
		{ "fd_passing", test_fd_passing },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_test(tc, cases[i].fn);
		suite_add_tcase(s, tc);
	}
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
