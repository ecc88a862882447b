/* Socket preparation: directory mode, single-instance lock, stale socket replaced, non-sockets kept. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "socket.h"
#include "util.h"

static char tmpdir[64];
static char sock[128];
static struct vgpu_err err;

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vgpu-sock-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(sock, sizeof(sock), "%s/run/sub/cri.sock", tmpdir);
	vgpu_err_clear(&err);
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static void make_socket_file(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	close(fd); /* a socket file nobody listens on: stale */
}

START_TEST(creates_parent_0700)
{
	int lock = -1;
	ck_assert_msg(vgpu_socket_prepare(sock, &lock, &err) == 0, "%s", err.msg);
	ck_assert_int_ge(lock, 0);
	struct stat st;
	char dir[160];
	snprintf(dir, sizeof(dir), "%s/run/sub", tmpdir);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	ck_assert_int_eq(fcntl(lock, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	close(lock);
}
END_TEST

START_TEST(second_instance_refused)
{
	int lock = -1, lock2 = -1;
	ck_assert_int_eq(vgpu_socket_prepare(sock, &lock, &err), 0);
	/* flock locks belong to the open file description: a second open in another process conflicts. */
	pid_t pid = fork();
	if (pid == 0) {
		struct vgpu_err e2;
		int r = vgpu_socket_prepare(sock, &lock2, &e2);
		_exit(r == -EBUSY && strstr(e2.msg, "already serving") ? 0 : 1);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(lock);
	/* once released, the next instance gets it */
	ck_assert_int_eq(vgpu_socket_prepare(sock, &lock2, &err), 0);
	close(lock2);
}
END_TEST

START_TEST(stale_socket_replaced)
{
	int lock = -1;
	ck_assert_int_eq(vgpu_socket_prepare(sock, &lock, &err), 0);
	close(lock);
	make_socket_file(sock);
	ck_assert_int_eq(access(sock, F_OK), 0);
	ck_assert_msg(vgpu_socket_prepare(sock, &lock, &err) == 0, "%s", err.msg);
	ck_assert_int_eq(access(sock, F_OK), -1);
	close(lock);
}
END_TEST

START_TEST(regular_file_not_removed)
{
	int lock = -1;
	ck_assert_int_eq(vgpu_socket_prepare(sock, &lock, &err), 0);
	close(lock);
	int fd = open(sock, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(vgpu_socket_prepare(sock, &lock, &err), -EEXIST);
	ck_assert_int_eq(access(sock, F_OK), 0);
	ck_assert_int_eq(lock, -1);
}
END_TEST

START_TEST(relative_path_rejected)
{
	int lock = -1;
	ck_assert_int_eq(vgpu_socket_prepare("rel/cri.sock", &lock, &err), -EINVAL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("socket");
	const TTest *tests[] = { creates_parent_0700, second_instance_refused, stale_socket_replaced,
				 regular_file_not_removed, relative_path_rejected };
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		TCase *tc = tcase_create(tests[i]->name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_add_test(tc, tests[i]);
		suite_add_tcase(s, tc);
	}
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
