/* The driver-domain side of copy-in mounts (cri/xen_vol.c): a host tree is read into the record
 * stream with its symlinks as symlinks (a link out of the tree never leaks its target's content),
 * special files and trees over the limits are refused with the limit named, the signature follows
 * kubelet's atomic updates, the mount checks refuse what cannot be copied, a stream written by
 * the agent's writer (agent_vol.c) gives back the same tree, and the write-back of a writable file
 * mount replaces only a regular host file, atomically, capped, never through a symlink. */
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
#include "xen_vol.h"

static char dir[PATH_MAX];

static void rm_rf(const char *path)
{
	char cmd[PATH_MAX + 32];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	ck_assert_int_eq(system(cmd), 0);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/xen_vol_test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	rm_rf(dir);
}

static char *at(const char *rel)
{
	static char bufs[4][PATH_MAX * 2];
	static int k;
	char *p = bufs[k++ % 4];
	snprintf(p, PATH_MAX * 2, "%s/%s", dir, rel);
	return p;
}

static void put(const char *rel, const char *text)
{
	FILE *f = fopen(at(rel), "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

/* kubelet's atomic writer layout under rel */
static void configmap(const char *rel, const char *ts, const char *value)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/%s", rel, ts);
	ck_assert_int_eq(mkdir(at(p), 0755), 0);
	snprintf(p, sizeof(p), "%s/%s/key", rel, ts);
	put(p, value);
	snprintf(p, sizeof(p), "%s/..data_tmp", rel);
	ck_assert_int_eq(symlink(ts, at(p)), 0);
	char q[PATH_MAX];
	snprintf(q, sizeof(q), "%s/..data", rel);
	ck_assert_int_eq(rename(at(p), at(q)), 0);
	snprintf(p, sizeof(p), "%s/key", rel);
	(void)symlink("..data/key", at(p));
}

START_TEST(tree_with_symlinks)
{
	struct agent_buf s = { 0 };
	struct vgpu_err err = { 0 };
	bool is_file = true;
	uint64_t sig = 0;

	ck_assert_int_eq(mkdir(at("cm"), 0755), 0);
	configmap("cm", "..2026_a", "one");
	ck_assert_int_eq(symlink("/etc/passwd", at("cm/leak")), 0);
	ck_assert_int_eq(vgpu_xen_vol_read(at("cm"), &s, &is_file, &sig, &err), 0);
	ck_assert(!is_file);
	ck_assert_uint_ne(sig, 0);
	/* the link's target is in the stream, its content is not */
	ck_assert_ptr_null(memmem(s.data, s.len, "root:", 5));
	ck_assert_ptr_nonnull(memmem(s.data, s.len, "/etc/passwd", 11));
	/* written by the agent's writer, the tree comes back the same */
	int root = open(dir, O_RDONLY | O_DIRECTORY);
	char msg[AGENT_VOL_MSG_MAX], link[64] = "";
	ck_assert_int_eq(agent_vol_apply(root, "vout", AGENT_VOL_REPLACE, s.data, s.len, msg), 0);
	FILE *f = fopen(at("vout/key"), "r");
	ck_assert_ptr_nonnull(f);
	char buf[16] = "";
	ck_assert_ptr_nonnull(fgets(buf, sizeof(buf), f));
	fclose(f);
	ck_assert_str_eq(buf, "one");
	ck_assert_int_gt(readlinkat(root, "vout/leak", link, sizeof(link) - 1), 0);
	ck_assert_str_eq(link, "/etc/passwd");
	close(root);
	agent_buf_free(&s);
	/* the path itself may be a symlink (resolved once) */
	ck_assert_int_eq(symlink(at("cm"), at("cm-link")), 0);
	uint64_t sig2 = 0;
	ck_assert_int_eq(vgpu_xen_vol_read(at("cm-link"), NULL, &is_file, &sig2, &err), 0);
	ck_assert_uint_eq(sig, sig2);
}
END_TEST

START_TEST(signature_follows_updates)
{
	struct vgpu_err err = { 0 };
	bool is_file;
	uint64_t a, b, c;

	ck_assert_int_eq(mkdir(at("cm"), 0755), 0);
	configmap("cm", "..2026_a", "one");
	ck_assert_int_eq(vgpu_xen_vol_read(at("cm"), NULL, &is_file, &a, &err), 0);
	ck_assert_int_eq(vgpu_xen_vol_read(at("cm"), NULL, &is_file, &b, &err), 0);
	ck_assert_uint_eq(a, b);
	configmap("cm", "..2026_b", "two");
	rm_rf(at("cm/..2026_a"));
	ck_assert_int_eq(vgpu_xen_vol_read(at("cm"), NULL, &is_file, &c, &err), 0);
	ck_assert_uint_ne(a, c);
	/* a single file */
	put("hosts", "127.0.0.1 localhost\n");
	struct agent_buf s = { 0 };
	ck_assert_int_eq(vgpu_xen_vol_read(at("hosts"), &s, &is_file, &a, &err), 0);
	ck_assert(is_file);
	ck_assert_ptr_nonnull(memmem(s.data, s.len, "localhost", 9));
	agent_buf_free(&s);
}
END_TEST

START_TEST(special_files_and_limits)
{
	struct agent_buf s = { 0 };
	struct vgpu_err err = { 0 };
	bool is_file;
	uint64_t sig;

	ck_assert_int_eq(mkdir(at("d"), 0755), 0);
	ck_assert_int_eq(mkfifo(at("d/fifo"), 0644), 0);
	ck_assert_int_eq(vgpu_xen_vol_read(at("d"), &s, &is_file, &sig, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "fifo"));
	agent_buf_free(&s);
	vgpu_err_clear(&err);
	ck_assert_int_eq(vgpu_xen_vol_read(at("d/fifo"), &s, &is_file, &sig, &err), -EINVAL);
	vgpu_err_clear(&err);
	ck_assert_int_eq(vgpu_xen_vol_read("/dev/null", &s, &is_file, &sig, &err), -EINVAL);
	vgpu_err_clear(&err);
	ck_assert_int_eq(vgpu_xen_vol_read(at("nothing"), &s, &is_file, &sig, &err), -ENOENT);
	vgpu_err_clear(&err);
	agent_buf_free(&s);
	/* 8 MiB + 1 byte */
	ck_assert_int_eq(mkdir(at("big"), 0755), 0);
	int fd = open(at("big/blob"), O_WRONLY | O_CREAT, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)AGENT_VOL_MAX_BYTES + 1), 0);
	close(fd);
	ck_assert_int_eq(vgpu_xen_vol_read(at("big"), &s, &is_file, &sig, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "8 MiB"));
	vgpu_err_clear(&err);
	ck_assert_int_eq(vgpu_xen_vol_read(at("big/blob"), &s, &is_file, &sig, &err), -EINVAL);
	vgpu_err_clear(&err);
	agent_buf_free(&s);
	/* exactly 8 MiB is fine */
	ck_assert_int_eq(truncate(at("big/blob"), (off_t)AGENT_VOL_MAX_BYTES), 0);
	ck_assert_int_eq(vgpu_xen_vol_read(at("big"), &s, &is_file, &sig, &err), 0);
	agent_buf_free(&s);
	/* 1025 entries */
	ck_assert_int_eq(mkdir(at("many"), 0755), 0);
	for (unsigned i = 0; i <= AGENT_VOL_MAX_ENTRIES; i++) {
		char name[32];
		snprintf(name, sizeof(name), "many/f%u", i);
		put(name, "");
	}
	ck_assert_int_eq(vgpu_xen_vol_read(at("many"), &s, &is_file, &sig, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "1024 entries"));
	agent_buf_free(&s);
}
END_TEST

START_TEST(mount_checks)
{
	Runtime__V1__Mount m1 = RUNTIME__V1__MOUNT__INIT, *mp[1] = { &m1 };
	Runtime__V1__ContainerConfig cfg = RUNTIME__V1__CONTAINER_CONFIG__INIT;
	struct vgpu_xen_vol *vols;
	struct agent_buf *streams;
	struct vgpu_err err = { 0 };
	size_t n;

	put("hosts", "127.0.0.1 localhost\n");
	cfg.mounts = mp;
	cfg.n_mounts = 1;
	m1.host_path = at("hosts");
	m1.container_path = "/etc/hosts";
	m1.readonly = 1;
	ck_assert_int_eq(vgpu_xen_vols_plan(&cfg, &vols, &n, &streams, &err), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert(vols[0].is_file && vols[0].readonly);
	char *src = vgpu_xen_vol_guest_path(&vols[0]);
	ck_assert_str_eq(src + strlen(src) - 5, "/file");
	ck_assert_uint_eq(vgpu_xen_vol_flags(&vols[0]), AGENT_VOL_REPLACE | AGENT_VOL_ISFILE);
	free(src);
	/* two mounts of the same host path share a key */
	char key[VGPU_XEN_VOL_KEY_LEN];
	vgpu_xen_vol_key(at("hosts"), key);
	ck_assert_str_eq(key, vols[0].key);
	ck_assert_int_eq(agent_vol_key_ok(key, strlen(key)), 1);
	agent_buf_free(&streams[0]);
	free(streams);
	vgpu_xen_vols_free(vols, n);
	m1.propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL;
	ck_assert_int_eq(vgpu_xen_vols_plan(&cfg, &vols, &n, &streams, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "propagation"));
	vgpu_err_clear(&err);
	m1.propagation = RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE;
	m1.host_path = "relative";
	ck_assert_int_eq(vgpu_xen_vols_plan(&cfg, &vols, &n, &streams, &err), -EINVAL);
	vgpu_err_clear(&err);
	m1.host_path = at("missing");
	ck_assert_int_eq(vgpu_xen_vols_plan(&cfg, &vols, &n, &streams, &err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err.msg, "mount /etc/hosts"));
}
END_TEST

static char *slurp_at(const char *rel, size_t *len)
{
	static char buf[AGENT_VOL_GET_MAX + 16];
	int fd = open(at(rel), O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	ck_assert_int_ge(n, 0);
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = (size_t)n;
	return buf;
}

static size_t entries(void)
{
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "ls -a '%s' | wc -l", dir);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	unsigned n = 0;
	ck_assert_int_eq(fscanf(p, "%u", &n), 1);
	pclose(p);
	return n - 2;
}

/* The write-back of a writable file mount: the host file is replaced by rename (a reader holding
 * the old file sees the old content whole, the path the new), mode kept, no temp file left; the
 * same content writes nothing. */
START_TEST(write_back_replaces_atomically)
{
	struct vgpu_err err = { 0 };
	struct stat before, after;
	bool written = false;

	put("termination-log", "");
	ck_assert_int_eq(chmod(at("termination-log"), 04640), 0);
	ck_assert_int_eq(stat(at("termination-log"), &before), 0);
	int old = open(at("termination-log"), O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(old, 0);
	ck_assert_int_eq(vgpu_xen_vol_write_back(at("termination-log"), "bye from xen", 12, &written, &err), 0);
	ck_assert(written);
	ck_assert_str_eq(slurp_at("termination-log", NULL), "bye from xen");
	ck_assert_int_eq(stat(at("termination-log"), &after), 0);
	ck_assert_uint_ne(after.st_ino, before.st_ino);
	ck_assert_uint_eq(after.st_mode & 07777, 0640); /* setuid dropped */
	char b;
	ck_assert_int_eq(read(old, &b, 1), 0); /* the old inode is untouched: still empty */
	close(old);
	ck_assert_uint_eq(entries(), 1);
	/* unchanged: nothing written, same inode */
	ck_assert_int_eq(vgpu_xen_vol_write_back(at("termination-log"), "bye from xen", 12, &written, &err), 0);
	ck_assert(!written);
	ck_assert_int_eq(stat(at("termination-log"), &before), 0);
	ck_assert_uint_eq(after.st_ino, before.st_ino);
	/* exactly the cap is fine, more is refused and leaves the file as it was */
	char *big = calloc(1, AGENT_VOL_GET_MAX + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, 'x', AGENT_VOL_GET_MAX + 1);
	ck_assert_int_eq(vgpu_xen_vol_write_back(at("termination-log"), big, AGENT_VOL_GET_MAX, &written, &err), 0);
	size_t len = 0;
	(void)slurp_at("termination-log", &len);
	ck_assert_uint_eq(len, AGENT_VOL_GET_MAX);
	ck_assert_int_eq(vgpu_xen_vol_write_back(at("termination-log"), "y", 1, &written, &err), 0);
	ck_assert_int_eq(vgpu_xen_vol_write_back(at("termination-log"), big, AGENT_VOL_GET_MAX + 1, &written, &err),
			 -EFBIG);
	ck_assert(!written);
	ck_assert_str_eq(slurp_at("termination-log", NULL), "y");
	free(big);
	ck_assert_uint_eq(entries(), 1);
}
END_TEST

/* Only an existing regular file is written: a symlink in its place is refused and its target left
 * alone, a directory or a missing path is refused and nothing is created. */
START_TEST(write_back_refuses_symlink_and_others)
{
	struct vgpu_err err = { 0 };
	bool written = true;

	put("secret", "SECRET");
	ck_assert_int_eq(symlink(at("secret"), at("termination-log")), 0);
	ck_assert_int_eq(vgpu_xen_vol_write_back(at("termination-log"), "evil", 4, &written, &err), -ELOOP);
	ck_assert(!written);
	ck_assert_ptr_nonnull(strstr(err.msg, "symlink"));
	ck_assert_str_eq(slurp_at("secret", NULL), "SECRET");
	struct stat st;
	ck_assert_int_eq(lstat(at("termination-log"), &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	ck_assert_int_eq(mkdir(at("d"), 0755), 0);
	ck_assert_int_eq(vgpu_xen_vol_write_back(at("d"), "x", 1, &written, &err), -EINVAL);
	ck_assert_int_eq(mkfifo(at("fifo"), 0600), 0);
	ck_assert_int_eq(vgpu_xen_vol_write_back(at("fifo"), "x", 1, &written, &err), -EINVAL);
	ck_assert_int_eq(vgpu_xen_vol_write_back(at("missing"), "x", 1, &written, &err), -ENOENT);
	ck_assert_int_ne(access(at("missing"), F_OK), 0);
	ck_assert_int_eq(vgpu_xen_vol_write_back("relative/x", "x", 1, &written, &err), -EINVAL);
	ck_assert_int_eq(vgpu_xen_vol_write_back(at("d/"), "x", 1, &written, &err), -EINVAL);
	ck_assert_uint_eq(entries(), 4); /* secret, termination-log, d, fifo: no temp file */
	/* which mounts are written back: writable single files only */
	struct vgpu_xen_vol v = { .readonly = false, .is_file = true };
	ck_assert(vgpu_xen_vol_writes_back(&v));
	v.readonly = true;
	ck_assert(!vgpu_xen_vol_writes_back(&v));
	v = (struct vgpu_xen_vol){ .readonly = false, .is_file = false };
	ck_assert(!vgpu_xen_vol_writes_back(&v));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("xen_vol");
	struct {
		const char *name;
		const TTest *test;
	} cases[] = {
		{ "tree_symlinks", tree_with_symlinks },
		{ "signature", signature_follows_updates },
		{ "special_limits", special_files_and_limits },
		{ "mount_checks", mount_checks },
		{ "write_back_atomic", write_back_replaces_atomically },
		{ "write_back_refusals", write_back_refuses_symlink_and_others },
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
