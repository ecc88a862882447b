/* Layer unpacking: content and metadata, compression (gzip, zstd, none), whiteouts and opaque
 * dirs in overlay form, and every way a layer may try to write outside its directory. */
#include <archive.h>
#include <archive_entry.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "image_internal.h"
#include "util.h"

static char tmpdir[] = "/tmp/vgpu-unpack-test-XXXXXX";
static char *layer_dir, *outside, *tar_path;
static struct archive *w;

enum kind { K_FILE, K_DIR, K_SYMLINK, K_HARDLINK };

static void setup(void)
{
	strcpy(tmpdir, "/tmp/vgpu-unpack-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	layer_dir = vgpu_asprintf("%s/root/layer", tmpdir);
	outside = vgpu_asprintf("%s/root", tmpdir);
	tar_path = vgpu_asprintf("%s/layer.tar", tmpdir);
	ck_assert_int_eq(vgpu_mkdir_p(layer_dir, 0755, NULL), 0);
}

static void teardown(void)
{
	vgpu_rm_rf(tmpdir, NULL);
	free(layer_dir);
	free(outside);
	free(tar_path);
}

static void tar_begin(const char *filter)
{
	w = archive_write_new();
	ck_assert_int_eq(archive_write_set_format_pax_restricted(w), ARCHIVE_OK);
	if (!strcmp(filter, "gzip"))
		ck_assert_int_eq(archive_write_add_filter_gzip(w), ARCHIVE_OK);
	else if (!strcmp(filter, "zstd"))
		ck_assert_int_eq(archive_write_add_filter_zstd(w), ARCHIVE_OK);
	ck_assert_int_eq(archive_write_open_filename(w, tar_path), ARCHIVE_OK);
}

static void tar_add(enum kind k, const char *name, const char *data_or_target)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_mtime(e, 1700000000, 0);
	switch (k) {
	case K_FILE:
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0640);
		archive_entry_set_size(e, (la_int64_t)strlen(data_or_target ? data_or_target : ""));
		break;
	case K_DIR:
		archive_entry_set_filetype(e, AE_IFDIR);
		archive_entry_set_perm(e, 0750);
		break;
	case K_SYMLINK:
		archive_entry_set_filetype(e, AE_IFLNK);
		archive_entry_set_perm(e, 0777);
		archive_entry_set_symlink(e, data_or_target);
		break;
	case K_HARDLINK:
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_entry_set_hardlink(e, data_or_target);
		break;
	}
	ck_assert_int_eq(archive_write_header(w, e), ARCHIVE_OK);
	if (k == K_FILE && data_or_target && *data_or_target)
		ck_assert_int_eq(archive_write_data(w, data_or_target, strlen(data_or_target)),
				 (la_ssize_t)strlen(data_or_target));
	archive_entry_free(e);
}

static void tar_end(void)
{
	ck_assert_int_eq(archive_write_close(w), ARCHIVE_OK);
	archive_write_free(w);
}

static int unpack(struct vgpu_err *err)
{
	uint64_t bytes = 0;
	return vgpu_layer_unpack(tar_path, layer_dir, &bytes, err);
}

static char *read_in_layer(const char *rel)
{
	_cleanup_free_ char *p = vgpu_asprintf("%s/%s", layer_dir, rel);
	char *out = NULL;
	if (vgpu_read_file(p, 1 << 20, &out, NULL, NULL) < 0)
		return NULL;
	return out;
}

static bool exists_at(const char *dir, const char *rel)
{
	_cleanup_free_ char *p = vgpu_asprintf("%s/%s", dir, rel);
	struct stat st;
	return lstat(p, &st) == 0;
}

static void plain_layer(const char *filter)
{
	tar_begin(filter);
	tar_add(K_DIR, "etc/", NULL);
	tar_add(K_FILE, "etc/hostname", "box\n");
	tar_add(K_FILE, "./usr/bin/tool", "#!/bin/sh\n"); /* parents not in the tar */
	tar_add(K_SYMLINK, "bin", "usr/bin");
	tar_add(K_SYMLINK, "abs", "/etc/hostname"); /* kept as is: resolved only in the container */
	tar_add(K_HARDLINK, "etc/hostname2", "etc/hostname");
	tar_add(K_FILE, "/rooted", "r"); /* leading '/' means the layer root */
	tar_end();
	struct vgpu_err err = { 0 };
	ck_assert_msg(unpack(&err) == 0, "%s", err.msg);
	_cleanup_free_ char *h = read_in_layer("etc/hostname");
	ck_assert_str_eq(h, "box\n");
	_cleanup_free_ char *t = read_in_layer("usr/bin/tool");
	ck_assert_str_eq(t, "#!/bin/sh\n");
	_cleanup_free_ char *r = read_in_layer("rooted");
	ck_assert_str_eq(r, "r");
	char target[256] = { 0 };
	_cleanup_free_ char *abs = vgpu_asprintf("%s/abs", layer_dir);
	ck_assert_int_gt(readlink(abs, target, sizeof(target) - 1), 0);
	ck_assert_str_eq(target, "/etc/hostname");
	struct stat a, b;
	_cleanup_free_ char *pa = vgpu_asprintf("%s/etc/hostname", layer_dir);
	_cleanup_free_ char *pb = vgpu_asprintf("%s/etc/hostname2", layer_dir);
	ck_assert_int_eq(stat(pa, &a), 0);
	ck_assert_int_eq(stat(pb, &b), 0);
	ck_assert_int_eq(a.st_ino, b.st_ino);
	ck_assert_int_eq(a.st_mode & 07777, 0640);
	ck_assert_int_eq(a.st_mtime, 1700000000);
	_cleanup_free_ char *pe = vgpu_asprintf("%s/etc", layer_dir);
	ck_assert_int_eq(stat(pe, &a), 0);
	ck_assert_int_eq(a.st_mode & 07777, 0750);
}

START_TEST(plain_tar)
{
	plain_layer("none");
}
END_TEST

START_TEST(gzip_tar)
{
	plain_layer("gzip");
}
END_TEST

START_TEST(zstd_tar)
{
	plain_layer("zstd");
}
END_TEST

START_TEST(whiteouts_become_overlay_form)
{
	tar_begin("gzip");
	tar_add(K_FILE, "keep", "k");
	tar_add(K_FILE, ".wh.gone", "");
	tar_add(K_DIR, "d", NULL);
	tar_add(K_FILE, "d/.wh..wh..opq", "");
	tar_add(K_FILE, "d/new", "n");
	tar_add(K_FILE, "sub/dir/.wh.x", ""); /* parents created on the way */
	tar_add(K_FILE, ".wh..wh.plnk", ""); /* aufs internals: ignored */
	tar_end();
	struct vgpu_err err = { 0 };
	ck_assert_msg(unpack(&err) == 0, "%s", err.msg);
	struct stat st;
	_cleanup_free_ char *gone = vgpu_asprintf("%s/gone", layer_dir);
	ck_assert_int_eq(lstat(gone, &st), 0);
	ck_assert(S_ISCHR(st.st_mode));
	ck_assert_int_eq(st.st_rdev, makedev(0, 0));
	_cleanup_free_ char *x = vgpu_asprintf("%s/sub/dir/x", layer_dir);
	ck_assert_int_eq(lstat(x, &st), 0);
	ck_assert(S_ISCHR(st.st_mode));
	_cleanup_free_ char *d = vgpu_asprintf("%s/d", layer_dir);
	char v[4] = { 0 };
	ck_assert_int_eq(getxattr(d, "trusted.overlay.opaque", v, sizeof(v)), 1);
	ck_assert_int_eq(v[0], 'y');
	ck_assert(exists_at(layer_dir, "d/new"));
	ck_assert(!exists_at(layer_dir, ".wh.gone"));
	ck_assert(!exists_at(layer_dir, "d/.wh..wh..opq"));
	ck_assert(!exists_at(layer_dir, ".wh..wh.plnk"));
}
END_TEST

START_TEST(dotdot_refused)
{
	tar_begin("none");
	tar_add(K_FILE, "ok", "1");
	tar_add(K_FILE, "../evil", "x");
	tar_end();
	struct vgpu_err err = { 0 };
	ck_assert_int_eq(unpack(&err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, ".."));
	ck_assert(!exists_at(outside, "evil"));

	tar_begin("none");
	tar_add(K_FILE, "a/../../evil2", "x");
	tar_end();
	ck_assert_int_eq(unpack(&err), -EINVAL);
	ck_assert(!exists_at(outside, "evil2"));
}
END_TEST

START_TEST(write_through_symlink_refused)
{
	/* an absolute symlink, and one to "..": writing through either would leave the layer */
	const char *targets[] = { "/", "..", outside };
	for (size_t i = 0; i < 3; i++) {
		vgpu_rm_rf(layer_dir, NULL);
		ck_assert_int_eq(vgpu_mkdir_p(layer_dir, 0755, NULL), 0);
		tar_begin("none");
		tar_add(K_SYMLINK, "link", targets[i]);
		tar_add(K_FILE, "link/escaped", "x");
		tar_end();
		struct vgpu_err err = { 0 };
		ck_assert_int_eq(unpack(&err), -EINVAL);
		ck_assert_ptr_nonnull(strstr(err.msg, "symlink"));
		ck_assert(!exists_at(outside, "escaped"));
		ck_assert(!exists_at("/", "escaped"));
	}
}
END_TEST

START_TEST(hardlink_out_of_tree_refused)
{
	_cleanup_free_ char *secret = vgpu_asprintf("%s/secret", outside);
	ck_assert_int_eq(vgpu_write_file_atomic(secret, "s", 1, 0600, NULL), 0);
	tar_begin("none");
	tar_add(K_HARDLINK, "h", "../secret");
	tar_end();
	struct vgpu_err err = { 0 };
	ck_assert_int_eq(unpack(&err), -EINVAL);
	ck_assert(!exists_at(layer_dir, "h"));

	/* an absolute target names a path inside the layer, which does not exist here */
	tar_begin("none");
	tar_add(K_HARDLINK, "h2", secret);
	tar_end();
	ck_assert_int_lt(unpack(&err), 0);
	ck_assert(!exists_at(layer_dir, "h2"));

	/* through a symlink to the outside */
	tar_begin("none");
	tar_add(K_SYMLINK, "out", outside);
	tar_add(K_HARDLINK, "h3", "out/secret");
	tar_end();
	ck_assert_int_lt(unpack(&err), 0);
	ck_assert(!exists_at(layer_dir, "h3"));
	struct stat st;
	ck_assert_int_eq(stat(secret, &st), 0);
	ck_assert_int_eq(st.st_nlink, 1);
}
END_TEST

START_TEST(not_a_tar)
{
	ck_assert_int_eq(vgpu_write_file_atomic(tar_path, "garbage, not a tar archive at all", 33, 0600, NULL), 0);
	struct vgpu_err err = { 0 };
	ck_assert_int_eq(unpack(&err), -EBADMSG);
}
END_TEST

START_TEST(media_types)
{
	ck_assert(vgpu_layer_media_type_known("application/vnd.oci.image.layer.v1.tar+gzip"));
	ck_assert(vgpu_layer_media_type_known("application/vnd.oci.image.layer.v1.tar+zstd"));
	ck_assert(vgpu_layer_media_type_known("application/vnd.oci.image.layer.v1.tar"));
	ck_assert(vgpu_layer_media_type_known("application/vnd.docker.image.rootfs.diff.tar.gzip"));
	ck_assert(!vgpu_layer_media_type_known("application/vnd.example.thing"));
	ck_assert(!vgpu_layer_media_type_known("application/vnd.oci.image.layer.v1.tar+bzip2"));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("image_unpack");
	struct {
		const char *name;
		const TTest *fn;
	} cases[] = {
		{ "plain_tar", plain_tar },
		{ "gzip_tar", gzip_tar },
		{ "zstd_tar", zstd_tar },
		{ "whiteouts", whiteouts_become_overlay_form },
		{ "dotdot", dotdot_refused },
		{ "symlink_escape", write_through_symlink_refused },
		{ "hardlink_escape", hardlink_out_of_tree_refused },
		{ "not_a_tar", not_a_tar },
		{ "media_types", media_types },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		TCase *tc = tcase_create(cases[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
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
