/* The guest side of copy-in volumes (cri/agent/agent_vol.c), run against a temp dir on the host:
 * trees are written as received, an existing volume is kept or swapped in as asked, and nothing
 * received (a symlink then a path through it, a bad key, too many entries, a chunk without its
 * BEGIN) writes outside the volume directory; the write-back read (VOL_GET) follows no symlink the
 * container may have planted and is capped. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent_vol.h"

static char root[PATH_MAX], outside[PATH_MAX];
static int root_fd = -1;

static void rm_rf(const char *path)
{
	char cmd[PATH_MAX + 32];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	ck_assert_int_eq(system(cmd), 0);
}

static void setup(void)
{
	snprintf(root, sizeof(root), "/tmp/agent_vol_test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(outside, sizeof(outside), "/tmp/agent_vol_out.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(outside));
	root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(root_fd, 0);
}

static void teardown(void)
{
	close(root_fd);
	rm_rf(root);
	rm_rf(outside);
}

static void rec(struct agent_buf *b, uint32_t type, uint32_t mode, const char *path, const char *data)
{
	struct agent_vol_rec r = { .type = type, .mode = mode, .path = path, .path_len = strlen(path),
				   .data = (const uint8_t *)data, .data_len = data ? strlen(data) : 0 };
	ck_assert_int_eq(agent_vol_rec_put(b, &r), 0);
}

static void raw_rec(struct agent_buf *b, uint32_t type, const char *path, const char *data)
{
	ck_assert_int_eq(agent_put_u32(b, type), 0);
	ck_assert_int_eq(agent_put_u32(b, 0644), 0);
	ck_assert_int_eq(agent_put_str(b, path, strlen(path)), 0);
	ck_assert_int_eq(agent_put_str(b, data, strlen(data)), 0);
}

static char *slurp(const char *rel)
{
	static char buf[256];
	char path[PATH_MAX * 2];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static int apply(uint32_t flags, const struct agent_buf *b, char *msg)
{
	return agent_vol_apply(root_fd, "v1", flags, b->data, b->len, msg);
}

START_TEST(tree_is_written)
{
	struct agent_buf b = { 0 };
	char msg[AGENT_VOL_MSG_MAX], link[64] = "";
	struct stat st;

	rec(&b, AGENT_VOL_DIR, 0750, "d", NULL);
	rec(&b, AGENT_VOL_FILE, 0640, "d/f", "content");
	rec(&b, AGENT_VOL_LINK, 0777, "l", "/etc/passwd");
	rec(&b, AGENT_VOL_FILE, 0600, "empty", "");
	ck_assert_int_eq(apply(0, &b, msg), 0);
	ck_assert_str_eq(slurp("v1/d/f"), "content");
	ck_assert_str_eq(slurp("v1/empty"), "");
	ck_assert_int_eq(fstatat(root_fd, "v1/d", &st, 0), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0750);
	ck_assert_int_eq(fstatat(root_fd, "v1/d/f", &st, 0), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0640);
	/* a symlink stays a symlink (the container resolves it in its own root) */
	ck_assert_int_eq(readlinkat(root_fd, "v1/l", link, sizeof(link) - 1), 11);
	ck_assert_str_eq(link, "/etc/passwd");
	/* no staging left behind */
	ck_assert_int_ne(fstatat(root_fd, ".new-v1", &st, AT_SYMLINK_NOFOLLOW), 0);
	agent_buf_free(&b);
}
END_TEST

START_TEST(symlinks_are_never_written_through)
{
	struct agent_buf b = { 0 };
	char msg[AGENT_VOL_MSG_MAX], path[PATH_MAX * 2];
	struct stat st;

	rec(&b, AGENT_VOL_LINK, 0777, "esc", outside);
	rec(&b, AGENT_VOL_FILE, 0644, "esc/pwned", "x");
	ck_assert_int_lt(apply(0, &b, msg), 0);
	ck_assert_ptr_nonnull(strstr(msg, "esc/pwned"));
	snprintf(path, sizeof(path), "%s/pwned", outside);
	ck_assert_int_ne(stat(path, &st), 0);
	ck_assert_int_ne(fstatat(root_fd, "v1", &st, 0), 0); /* nothing half-written either */
	agent_buf_free(&b);
	/* a relative escape the same way */
	rec(&b, AGENT_VOL_LINK, 0777, "up", "../..");
	rec(&b, AGENT_VOL_DIR, 0755, "up/x", NULL);
	ck_assert_int_lt(apply(0, &b, msg), 0);
	agent_buf_free(&b);
	/* a second record at the path of the first is refused (no overwrite through O_EXCL) */
	rec(&b, AGENT_VOL_LINK, 0777, "f", outside);
	rec(&b, AGENT_VOL_FILE, 0644, "f", "x");
	ck_assert_int_lt(apply(0, &b, msg), 0);
	agent_buf_free(&b);
	/* hand-made records that the encoder would refuse */
	const char *bad[] = { "/abs", "..", "a/../../x", NULL };
	for (size_t i = 0; bad[i]; i++) {
		raw_rec(&b, AGENT_VOL_FILE, bad[i], "x");
		ck_assert_int_eq(apply(0, &b, msg), -EPROTO);
		agent_buf_free(&b);
	}
	/* a bad key */
	ck_assert_int_eq(agent_vol_apply(root_fd, "../x", 0, NULL, 0, msg), -EINVAL);
	ck_assert_int_eq(agent_vol_apply(root_fd, ".new-v1", 0, NULL, 0, msg), -EINVAL);
}
END_TEST

START_TEST(existing_volume_is_kept_or_swapped)
{
	struct agent_buf b = { 0 };
	char msg[AGENT_VOL_MSG_MAX];
	struct stat st;

	/* kubelet's atomic writer: ..<ts>/k, ..data -> ..<ts>, k -> ..data/k */
	rec(&b, AGENT_VOL_DIR, 0755, "..2026_a", NULL);
	rec(&b, AGENT_VOL_FILE, 0644, "..2026_a/k", "one");
	rec(&b, AGENT_VOL_LINK, 0777, "..data", "..2026_a");
	rec(&b, AGENT_VOL_LINK, 0777, "k", "..data/k");
	ck_assert_int_eq(apply(AGENT_VOL_REPLACE, &b, msg), 0);
	ck_assert_str_eq(slurp("v1/k"), "one");
	agent_buf_free(&b);
	/* a writable volume that exists is not overwritten (another container's emptyDir) */
	rec(&b, AGENT_VOL_FILE, 0644, "k", "other");
	ck_assert_int_eq(apply(0, &b, msg), 0);
	ck_assert_ptr_nonnull(strstr(msg, "kept"));
	ck_assert_str_eq(slurp("v1/k"), "one");
	agent_buf_free(&b);
	/* the update: a new timestamped dir, ..data swapped, the old dir gone */
	rec(&b, AGENT_VOL_DIR, 0755, "..2026_b", NULL);
	rec(&b, AGENT_VOL_FILE, 0644, "..2026_b/k", "two");
	rec(&b, AGENT_VOL_FILE, 0644, "..2026_b/k2", "new key");
	rec(&b, AGENT_VOL_LINK, 0777, "..data", "..2026_b");
	rec(&b, AGENT_VOL_LINK, 0777, "k", "..data/k");
	rec(&b, AGENT_VOL_LINK, 0777, "k2", "..data/k2");
	ck_assert_int_eq(apply(AGENT_VOL_REPLACE, &b, msg), 0);
	ck_assert_str_eq(slurp("v1/k"), "two");
	ck_assert_str_eq(slurp("v1/k2"), "new key");
	ck_assert_int_ne(fstatat(root_fd, "v1/..2026_a", &st, AT_SYMLINK_NOFOLLOW), 0);
	ck_assert_int_ne(fstatat(root_fd, ".new-v1", &st, AT_SYMLINK_NOFOLLOW), 0);
	agent_buf_free(&b);
}
END_TEST

START_TEST(file_volume_is_rewritten_in_place)
{
	struct agent_buf b = { 0 };
	char msg[AGENT_VOL_MSG_MAX];
	struct stat st1, st2;

	rec(&b, AGENT_VOL_FILE, 0644, AGENT_VOL_FILE_NAME, "127.0.0.1 localhost\n");
	ck_assert_int_eq(apply(AGENT_VOL_ISFILE | AGENT_VOL_REPLACE, &b, msg), 0);
	ck_assert_int_eq(fstatat(root_fd, "v1/file", &st1, 0), 0);
	agent_buf_free(&b);
	rec(&b, AGENT_VOL_FILE, 0644, AGENT_VOL_FILE_NAME, "10.0.0.1 changed\n");
	ck_assert_int_eq(apply(AGENT_VOL_ISFILE | AGENT_VOL_REPLACE, &b, msg), 0);
	ck_assert_int_eq(fstatat(root_fd, "v1/file", &st2, 0), 0);
	ck_assert_uint_eq(st1.st_ino, st2.st_ino); /* a bind mount of it sees the change */
	ck_assert_str_eq(slurp("v1/file"), "10.0.0.1 changed\n");
	agent_buf_free(&b);
	/* a file volume is exactly one FILE record named "file" */
	rec(&b, AGENT_VOL_DIR, 0755, "file", NULL);
	ck_assert_int_eq(agent_vol_apply(root_fd, "v2", AGENT_VOL_ISFILE, b.data, b.len, msg), -EPROTO);
	agent_buf_free(&b);
}
END_TEST

START_TEST(limits_and_chunks)
{
	struct agent_buf b = { 0 };
	char msg[AGENT_VOL_MSG_MAX], name[32];
	struct agent_vol_pending p = { 0 };
	struct stat st;

	for (unsigned i = 0; i <= AGENT_VOL_MAX_ENTRIES; i++) {
		snprintf(name, sizeof(name), "f%u", i);
		rec(&b, AGENT_VOL_FILE, 0644, name, "");
	}
	ck_assert_int_eq(apply(0, &b, msg), -EFBIG);
	ck_assert_int_ne(fstatat(root_fd, "v1", &st, 0), 0);
	agent_buf_free(&b);
	/* a stream in three chunks */
	rec(&b, AGENT_VOL_FILE, 0644, "a", "chunked content");
	struct agent_vol_put put = { .key = "v3", .flags = AGENT_VOL_BEGIN, .data = b.data, .len = 5 };
	ck_assert_int_eq(agent_vol_put(&p, root_fd, &put, msg), 0);
	put = (struct agent_vol_put){ .key = "v3", .data = b.data + 5, .len = 10 };
	ck_assert_int_eq(agent_vol_put(&p, root_fd, &put, msg), 0);
	put = (struct agent_vol_put){ .key = "v3", .flags = AGENT_VOL_END, .data = b.data + 15, .len = b.len - 15 };
	ck_assert_int_eq(agent_vol_put(&p, root_fd, &put, msg), 0);
	ck_assert_str_eq(slurp("v3/a"), "chunked content");
	/* a chunk without BEGIN, or of another volume, is refused */
	put = (struct agent_vol_put){ .key = "v4", .flags = AGENT_VOL_END, .data = b.data, .len = b.len };
	ck_assert_int_eq(agent_vol_put(&p, root_fd, &put, msg), -EPROTO);
	put = (struct agent_vol_put){ .key = "v4", .flags = AGENT_VOL_BEGIN, .data = b.data, .len = 3 };
	ck_assert_int_eq(agent_vol_put(&p, root_fd, &put, msg), 0);
	put = (struct agent_vol_put){ .key = "v5", .flags = AGENT_VOL_END, .data = b.data + 3, .len = b.len - 3 };
	ck_assert_int_eq(agent_vol_put(&p, root_fd, &put, msg), -EPROTO);
	agent_vol_pending_free(&p);
	agent_buf_free(&b);
}
END_TEST

/* VOL_GET reads a file volume's file relative to the volumes' directory: a symlink planted in place
 * of the file or of the volume is refused, never followed; a fifo or directory is no file; the
 * content is capped at AGENT_VOL_GET_MAX with TRUNCATED. */
START_TEST(write_back_read_refuses_symlinks)
{
	struct agent_buf out = { 0 };
	char msg[AGENT_VOL_MSG_MAX], path[PATH_MAX * 2];
	uint32_t flags = 99;

	ck_assert_int_eq(mkdirat(root_fd, "v1", 0755), 0);
	snprintf(path, sizeof(path), "%s/v1/file", root);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("bye from xen", f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(agent_vol_get(root_fd, "v1", &out, &flags, msg), 0);
	ck_assert_uint_eq(flags, 0);
	ck_assert_uint_eq(out.len, 12);
	ck_assert_mem_eq(out.data, "bye from xen", 12);
	agent_buf_free(&out);
	/* the container replaced its file with a symlink to a secret: refused */
	char secret[PATH_MAX * 2];
	snprintf(secret, sizeof(secret), "%s/shadow", outside);
	f = fopen(secret, "w");
	ck_assert_ptr_nonnull(f);
	fputs("root:SECRET", f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(symlink(secret, path), 0);
	ck_assert_int_eq(agent_vol_get(root_fd, "v1", &out, &flags, msg), -ELOOP);
	ck_assert_uint_eq(out.len, 0);
	ck_assert_ptr_nonnull(strstr(msg, "symlink"));
	/* the volume directory itself a symlink to a directory holding a "file" */
	snprintf(path, sizeof(path), "%s/file", outside);
	ck_assert_int_eq(symlink(secret, path), 0); /* a link there, too: never reached */
	snprintf(path, sizeof(path), "%s/v2", root);
	ck_assert_int_eq(symlink(outside, path), 0);
	ck_assert_int_eq(agent_vol_get(root_fd, "v2", &out, &flags, msg), -ELOOP);
	ck_assert_uint_eq(out.len, 0);
	/* a fifo (no hang) or a directory in place of the file; no volume; a bad key */
	ck_assert_int_eq(mkdirat(root_fd, "v3", 0755), 0);
	snprintf(path, sizeof(path), "%s/v3/file", root);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	ck_assert_int_eq(agent_vol_get(root_fd, "v3", &out, &flags, msg), -EINVAL);
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	ck_assert_int_eq(agent_vol_get(root_fd, "v3", &out, &flags, msg), -EINVAL);
	ck_assert_int_eq(agent_vol_get(root_fd, "v9", &out, &flags, msg), -ENOENT);
	ck_assert_int_eq(agent_vol_get(root_fd, "../x", &out, &flags, msg), -EINVAL);
	ck_assert_uint_eq(out.len, 0);
}
END_TEST

START_TEST(write_back_read_is_capped)
{
	struct agent_buf out = { 0 };
	char msg[AGENT_VOL_MSG_MAX], path[PATH_MAX * 2];
	uint32_t flags = 0;
	size_t sizes[] = { AGENT_VOL_GET_MAX, AGENT_VOL_GET_MAX + 1, 3 * AGENT_VOL_GET_MAX };

	ck_assert_int_eq(mkdirat(root_fd, "v1", 0755), 0);
	snprintf(path, sizeof(path), "%s/v1/file", root);
	for (size_t i = 0; i < 3; i++) {
		FILE *f = fopen(path, "w");
		ck_assert_ptr_nonnull(f);
		for (size_t k = 0; k < sizes[i]; k++)
			fputc('a' + (int)(k % 26), f);
		ck_assert_int_eq(fclose(f), 0);
		ck_assert_int_eq(agent_vol_get(root_fd, "v1", &out, &flags, msg), 0);
		ck_assert_uint_eq(out.len, AGENT_VOL_GET_MAX);
		ck_assert_uint_eq(flags, i == 0 ? 0 : AGENT_VOL_GET_TRUNCATED);
		ck_assert_int_eq(out.data[AGENT_VOL_GET_MAX - 1], 'a' + (int)((AGENT_VOL_GET_MAX - 1) % 26));
		/* what the agent sends is what the daemon's decoder accepts */
		struct agent_buf reply = { 0 };
		struct agent_vol_data d;
		ck_assert_int_eq(agent_vol_data_encode(&reply, flags, out.data, out.len), 0);
		ck_assert_int_eq(agent_vol_data_decode(reply.data, reply.len, &d), 0);
		agent_buf_free(&reply);
		agent_buf_free(&out);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("agent_vol");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "tree", tree_is_written },
		{ "no_escape", symlinks_are_never_written_through },
		{ "keep_or_swap", existing_volume_is_kept_or_swapped },
		{ "file_in_place", file_volume_is_rewritten_in_place },
		{ "limits_chunks", limits_and_chunks },
		{ "write_back_symlinks", write_back_read_refuses_symlinks },
		{ "write_back_cap", write_back_read_is_capped },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_add_test(tc, cases[i].test);
		suite_add_tcase(s, tc);
	}
	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
