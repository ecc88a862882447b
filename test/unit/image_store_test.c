/* The image store without a registry: records written, found by every kind of name, reloaded
 * after a restart (and ignored when their content is missing), shared content kept until its
 * last image goes, idempotent removal, and container rootfs (overlay and copy) with whiteouts. */
#include <archive.h>
#include <archive_entry.h>
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_internal.h"
#include "util.h"

static char tmpdir[64];
static struct vgpu_config cfg;
static struct vgpu_image_store *store;

static void setup(void)
{
	strcpy(tmpdir, "/tmp/vgpu-store-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	vgpu_config_defaults(&cfg);
	free(cfg.state_dir);
	cfg.state_dir = vgpu_asprintf("%s/state", tmpdir);
	struct vgpu_err err = { 0 };
	ck_assert_msg(vgpu_image_store_open(&cfg, &store, &err) == 0, "%s", err.msg);
}

static void teardown(void)
{
	vgpu_image_store_close(store);
	store = NULL;
	_cleanup_free_ char *c = vgpu_asprintf("%s/c", tmpdir);
	vgpu_image_unmount_rootfs(c, NULL);
	vgpu_rm_rf(tmpdir, NULL);
	vgpu_config_free(&cfg);
}

/* A layer from "name=content" files; "name=" with a ".wh." base is a whiteout. Stored as blob
 * and unpacked; returns the digest. */
static char *make_layer(const char *const *files)
{
	_cleanup_free_ char *tar = vgpu_asprintf("%s/l.tar", tmpdir);
	struct archive *w = archive_write_new();
	archive_write_set_format_pax_restricted(w);
	ck_assert_int_eq(archive_write_open_filename(w, tar), ARCHIVE_OK);
	for (size_t i = 0; files[i]; i++) {
		_cleanup_free_ char *name = vgpu_strdup(files[i]);
		char *eq = strchr(name, '=');
		const char *data = "";
		struct archive_entry *e = archive_entry_new();
		if (eq) {
			*eq = '\0';
			data = eq + 1;
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_perm(e, 0644);
			archive_entry_set_size(e, (la_int64_t)strlen(data));
		} else {
			archive_entry_set_filetype(e, AE_IFDIR);
			archive_entry_set_perm(e, 0755);
		}
		archive_entry_set_pathname(e, name);
		ck_assert_int_eq(archive_write_header(w, e), ARCHIVE_OK);
		if (*data)
			archive_write_data(w, data, strlen(data));
		archive_entry_free(e);
	}
	archive_write_close(w);
	archive_write_free(w);
	char digest[72];
	ck_assert_int_eq(vgpu_sha256_file(tar, digest, NULL), 0);
	_cleanup_free_ char *blob = vgpu_image_blob_path(store, digest);
	ck_assert_int_eq(rename(tar, blob), 0);
	_cleanup_free_ char *dir = vgpu_image_layer_path(store, digest);
	if (access(dir, F_OK) != 0) {
		ck_assert_int_eq(mkdir(dir, 0755), 0);
		struct vgpu_err err = { 0 };
		ck_assert_msg(vgpu_layer_unpack(blob, dir, NULL, &err) == 0, "%s", err.msg);
	}
	return vgpu_strdup(digest);
}

static char *put_blob(const char *text)
{
	char digest[72];
	vgpu_sha256_buf(text, strlen(text), digest);
	_cleanup_free_ char *p = vgpu_image_blob_path(store, digest);
	ck_assert_int_eq(vgpu_write_file_atomic(p, text, strlen(text), 0600, NULL), 0);
	return vgpu_strdup(digest);
}

/* An image with the given layers, tagged name:tag; returns its id. */
static char *make_image(const char *tag, const char *user, char **layers, size_t n)
{
	_cleanup_free_ char *cfgjson = vgpu_asprintf(
		"{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"User\":\"%s\",\"Env\":[\"PATH=/bin\",\"A=%s\"],"
		"\"Entrypoint\":[\"/bin/sh\"],\"Cmd\":[\"-c\",\"true\"],\"WorkingDir\":\"/w\"}}",
		user, tag);
	struct vgpu_image_record *rec = vgpu_calloc(1, sizeof(*rec));
	rec->config_digest = put_blob(cfgjson);
	rec->id = vgpu_strdup(rec->config_digest);
	_cleanup_free_ char *manifest = vgpu_asprintf("{\"manifest\":\"%s\"}", tag);
	rec->manifest_digest = put_blob(manifest);
	rec->repo_tags = vgpu_calloc(2, sizeof(char *));
	rec->repo_tags[0] = vgpu_asprintf("127.0.0.1:5000/test/img:%s", tag);
	rec->repo_digests = vgpu_calloc(2, sizeof(char *));
	rec->repo_digests[0] = vgpu_asprintf("127.0.0.1:5000/test/img@%s", rec->manifest_digest);
	rec->n_layers = n;
	rec->layers = vgpu_calloc(n, sizeof(*rec->layers));
	for (size_t i = 0; i < n; i++) {
		rec->layers[i].digest = vgpu_strdup(layers[i]);
		rec->layers[i].media_type = vgpu_strdup("application/vnd.oci.image.layer.v1.tar");
		rec->layers[i].size = 100;
	}
	rec->user = vgpu_strdup(user);
	char *id = vgpu_strdup(rec->id);
	struct vgpu_err err = { 0 };
	ck_assert_msg(vgpu_image_store_commit(store, rec, &err) == 0, "%s", err.msg);
	return id;
}

static void reopen(void)
{
	vgpu_image_store_close(store);
	struct vgpu_err err = { 0 };
	ck_assert_msg(vgpu_image_store_open(&cfg, &store, &err) == 0, "%s", err.msg);
}

static bool exists(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0;
}

START_TEST(lookup_by_every_name)
{
	const char *files[] = { "bin/", "bin/sh=x", NULL };
	_cleanup_free_ char *l = make_layer(files);
	char *layers[] = { l };
	_cleanup_free_ char *id = make_image("1", "1000:1000", layers, 1);
	struct vgpu_image_config c;
	_cleanup_free_ char *got = NULL, *got2 = NULL;
	struct vgpu_err err = { 0 };
	ck_assert_msg(vgpu_image_lookup(store, "127.0.0.1:5000/test/img:1", &got, &c, &err) == 0, "%s", err.msg);
	ck_assert_str_eq(got, id);
	ck_assert_str_eq(c.entrypoint[0], "/bin/sh");
	ck_assert_ptr_null(c.entrypoint[1]);
	ck_assert_str_eq(c.cmd[0], "-c");
	ck_assert_str_eq(c.cmd[1], "true");
	ck_assert_str_eq(c.env[1], "A=1");
	ck_assert_str_eq(c.working_dir, "/w");
	ck_assert_str_eq(c.user, "1000:1000");
	vgpu_image_config_free(&c);
	ck_assert_int_eq(vgpu_image_lookup(store, id, NULL, NULL, &err), 0);
	ck_assert_int_eq(vgpu_image_lookup(store, id + 7, NULL, NULL, &err), 0);
	/* short ids as crictl shows them */
	_cleanup_free_ char *short_id = strndup(id + 7, 12), *short_sha = strndup(id, 7 + 13);
	ck_assert_int_eq(vgpu_image_lookup(store, short_id, &got2, NULL, &err), 0);
	ck_assert_str_eq(got2, id);
	ck_assert_int_eq(vgpu_image_lookup(store, short_sha, NULL, NULL, &err), 0);
	_cleanup_free_ char *too_short = strndup(id + 7, 11);
	ck_assert_int_eq(vgpu_image_lookup(store, too_short, NULL, NULL, &err), -ENOENT);
	struct vgpu_image_record *rec = NULL;
	ck_assert_int_eq(vgpu_image_store_get(store, id, &rec, &err), 0);
	_cleanup_free_ char *bydigest = vgpu_strdup(rec->repo_digests[0]);
	vgpu_image_record_free(rec);
	ck_assert_int_eq(vgpu_image_lookup(store, bydigest, NULL, NULL, &err), 0);
	ck_assert_int_eq(vgpu_image_lookup(store, "127.0.0.1:5000/test/img:2", NULL, NULL, &err), -ENOENT);
	ck_assert_int_eq(vgpu_image_lookup(store, "busybox", NULL, NULL, &err), -ENOENT);
	ck_assert_int_eq(vgpu_image_lookup(store, "Bad:Name", NULL, NULL, &err), -EINVAL);
}
END_TEST

START_TEST(tags_move_and_survive_restart)
{
	const char *f1[] = { "a=1", NULL }, *f2[] = { "a=2", NULL };
	_cleanup_free_ char *l1 = make_layer(f1), *l2 = make_layer(f2);
	char *layers1[] = { l1 }, *layers2[] = { l2 };
	_cleanup_free_ char *id1 = make_image("t", "", layers1, 1);
	/* same tag, new content: the tag moves, the old image stays (untagged) */
	struct vgpu_image_record *rec = NULL;
	_cleanup_free_ char *id2 = make_image("u", "", layers2, 1);
	ck_assert_int_eq(vgpu_image_store_get(store, id2, &rec, NULL), 0);
	free(rec->repo_tags[0]);
	rec->repo_tags[0] = vgpu_strdup("127.0.0.1:5000/test/img:t");
	ck_assert_int_eq(vgpu_image_store_commit(store, rec, NULL), 0);
	reopen();
	struct vgpu_image_record **all = NULL;
	size_t n = 0;
	ck_assert_int_eq(vgpu_image_store_list(store, &all, &n), 0);
	ck_assert_int_eq(n, 2);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(all[i]->id, id1))
			ck_assert_ptr_null(all[i]->repo_tags[0]);
		else
			ck_assert_int_eq(all[i]->repo_tags[0] && all[i]->repo_tags[1] ? 2 : 1, 2);
		vgpu_image_record_free(all[i]);
	}
	free(all);
	_cleanup_free_ char *got = NULL;
	ck_assert_int_eq(vgpu_image_lookup(store, "127.0.0.1:5000/test/img:t", &got, NULL, NULL), 0);
	ck_assert_str_eq(got, id2);
}
END_TEST

START_TEST(record_with_missing_content_ignored)
{
	const char *f1[] = { "a=1", NULL };
	_cleanup_free_ char *l1 = make_layer(f1);
	char *layers[] = { l1 };
	_cleanup_free_ char *id = make_image("1", "", layers, 1);
	_cleanup_free_ char *dir = vgpu_image_layer_path(store, l1);
	ck_assert_int_eq(vgpu_rm_rf(dir, NULL), 0);
	reopen();
	ck_assert_int_eq(vgpu_image_lookup(store, id, NULL, NULL, NULL), -ENOENT);
}
END_TEST

START_TEST(remove_keeps_shared_content)
{
	const char *base[] = { "base=b", NULL }, *top1[] = { "one=1", NULL }, *top2[] = { "two=2", NULL };
	_cleanup_free_ char *lb = make_layer(base), *l1 = make_layer(top1), *l2 = make_layer(top2);
	char *layers1[] = { lb, l1 }, *layers2[] = { lb, l2 };
	_cleanup_free_ char *id1 = make_image("1", "", layers1, 2);
	_cleanup_free_ char *id2 = make_image("2", "", layers2, 2);
	_cleanup_free_ char *pb = vgpu_image_layer_path(store, lb), *p1 = vgpu_image_layer_path(store, l1),
			    *p2 = vgpu_image_layer_path(store, l2), *b1 = vgpu_image_blob_path(store, l1),
			    *c1 = vgpu_image_blob_path(store, id1);
	struct vgpu_err err = { 0 };
	ck_assert_int_eq(vgpu_image_store_remove(store, "127.0.0.1:5000/test/img:1", &err), 0);
	ck_assert(exists(pb));
	ck_assert(!exists(p1));
	ck_assert(!exists(b1));
	ck_assert(!exists(c1));
	ck_assert(exists(p2));
	ck_assert_int_eq(vgpu_image_lookup(store, id1, NULL, NULL, NULL), -ENOENT);
	/* idempotent, by any name */
	ck_assert_int_eq(vgpu_image_store_remove(store, "127.0.0.1:5000/test/img:1", &err), 0);
	ck_assert_int_eq(vgpu_image_store_remove(store, id1, &err), 0);
	ck_assert_int_eq(vgpu_image_store_remove(store, id2, &err), 0);
	ck_assert(!exists(pb));
	reopen();
	struct vgpu_image_record **all = NULL;
	size_t n = 9;
	vgpu_image_store_list(store, &all, &n);
	ck_assert_int_eq(n, 0);
	free(all);
	uint64_t bytes = 0, inodes = 0;
	ck_assert_int_eq(vgpu_image_store_usage(store, &bytes, &inodes, &err), 0);
	ck_assert_int_gt(inodes, 0);
}
END_TEST

START_TEST(remove_collects_orphans_not_pins)
{
	/* content left by a killed pull (no record), and content a running pull has pinned */
	const char *fo[] = { "orphan=o", NULL }, *fp[] = { "pinned=p", NULL }, *fi[] = { "img=i", NULL };
	_cleanup_free_ char *lo = make_layer(fo), *lp = make_layer(fp), *li = make_layer(fi);
	char *layers[] = { li };
	_cleanup_free_ char *id = make_image("1", "", layers, 1);
	vgpu_image_store_pin(store, lp);
	_cleanup_free_ char *po = vgpu_image_layer_path(store, lo), *bo = vgpu_image_blob_path(store, lo),
			    *pp = vgpu_image_layer_path(store, lp), *bp = vgpu_image_blob_path(store, lp);
	ck_assert_int_eq(vgpu_image_store_remove(store, id, NULL), 0);
	ck_assert(!exists(po));
	ck_assert(!exists(bo));
	ck_assert(exists(pp));
	ck_assert(exists(bp));
	vgpu_image_store_unpin(store, lp);
}
END_TEST

static void put_file(const char *path, const char *text)
{
	struct vgpu_err err = { 0 };
	ck_assert_msg(vgpu_write_file_atomic(path, text, strlen(text), 0600, &err) == 0, "%s", err.msg);
}

/* The xen handler's shared erofs disk of an image: one path per image id, malformed ids refused,
 * deleted with the image (not with another image), orphans and a build finished after the image
 * went are swept at the next removal or open. */
START_TEST(erofs_disk_follows_the_image)
{
	const char *f1[] = { "one=1", NULL }, *f2[] = { "two=2", NULL };
	_cleanup_free_ char *l1 = make_layer(f1), *l2 = make_layer(f2);
	char *layers1[] = { l1 }, *layers2[] = { l2 };
	_cleanup_free_ char *id1 = make_image("1", "", layers1, 1), *id2 = make_image("2", "", layers2, 1);
	ck_assert_ptr_null(vgpu_image_erofs_path(store, "sha256:../../etc"));
	ck_assert_ptr_null(vgpu_image_erofs_path(store, "busybox"));
	_cleanup_free_ char *e1 = vgpu_image_erofs_path(store, id1), *e2 = vgpu_image_erofs_path(store, id2);
	_cleanup_free_ char *tmp = vgpu_image_erofs_tmp(store);
	ck_assert_ptr_nonnull(e1);
	ck_assert_str_ne(e1, e2);
	put_file(tmp, "erofs of 1"); /* built in tmp/, renamed into place: same filesystem */
	ck_assert_int_eq(rename(tmp, e1), 0);
	put_file(e2, "erofs of 2");
	_cleanup_free_ char *orphan = vgpu_asprintf("%s/images/erofs/%064d.erofs", cfg.state_dir, 7);
	put_file(orphan, "no such image");
	ck_assert_int_eq(vgpu_image_store_remove(store, id1, NULL), 0);
	ck_assert(!exists(e1));
	ck_assert(!exists(orphan));
	ck_assert(exists(e2));
	put_file(e1, "a build that finished after its image was removed");
	reopen();
	ck_assert(!exists(e1));
	ck_assert(exists(e2));
	ck_assert_int_eq(vgpu_image_store_remove(store, id2, NULL), 0);
	ck_assert(!exists(e2));
}
END_TEST

/* lower: a, b, d/x, e/f; upper: whiteout a, opaque d with d/y, new c */
static char *layered_image(void)
{
	const char *lower[] = { "a=a", "b=b", "d/", "d/x=x", "e/", "e/f=f", NULL };
	const char *upper[] = { ".wh.a=", "c=c", "d/", "d/.wh..wh..opq=", "d/y=y", NULL };
	_cleanup_free_ char *l0 = make_layer(lower), *l1 = make_layer(upper);
	char *layers[] = { l0, l1 };
	return make_image("layered", "", layers, 2);
}

static void check_merged(const char *rootfs)
{
	const char *present[] = { "b", "c", "d/y", "e/f" }, *absent[] = { "a", "d/x", ".wh.a" };
	for (size_t i = 0; i < 4; i++) {
		_cleanup_free_ char *p = vgpu_asprintf("%s/%s", rootfs, present[i]);
		ck_assert_msg(exists(p), "%s missing", present[i]);
	}
	for (size_t i = 0; i < 3; i++) {
		_cleanup_free_ char *p = vgpu_asprintf("%s/%s", rootfs, absent[i]);
		ck_assert_msg(!exists(p), "%s present", absent[i]);
	}
}

START_TEST(rootfs_overlay)
{
	_cleanup_free_ char *id = layered_image();
	_cleanup_free_ char *dir = vgpu_asprintf("%s/c", tmpdir);
	_cleanup_free_ char *rootfs = NULL;
	struct vgpu_err err = { 0 };
	ck_assert_msg(vgpu_image_mount_rootfs(store, id, dir, &rootfs, &err) == 0, "%s", err.msg);
	check_merged(rootfs);
	/* writes go to the upper dir, never to a layer */
	_cleanup_free_ char *nf = vgpu_asprintf("%s/new", rootfs);
	ck_assert_int_eq(vgpu_write_file_atomic(nf, "n", 1, 0644, NULL), 0);
	/* a mounted image's layers survive RemoveImage */
	ck_assert_int_eq(vgpu_image_store_remove(store, id, &err), 0);
	check_merged(rootfs);
	ck_assert_int_eq(vgpu_image_unmount_rootfs(dir, &err), 0);
	ck_assert(!exists(rootfs));
	ck_assert_int_eq(vgpu_image_unmount_rootfs(dir, &err), 0);
}
END_TEST

START_TEST(rootfs_copy)
{
	_cleanup_free_ char *id = layered_image();
	_cleanup_free_ char *dir = vgpu_asprintf("%s/c", tmpdir);
	_cleanup_free_ char *rootfs = NULL;
	struct vgpu_err err = { 0 };
	ck_assert_msg(vgpu_image_copy_rootfs(store, id, dir, &rootfs, &err) == 0, "%s", err.msg);
	check_merged(rootfs);
	ck_assert_int_eq(vgpu_image_unmount_rootfs(dir, &err), 0);
	ck_assert(!exists(rootfs));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("image_store");
	struct {
		const char *name;
		const TTest *fn;
	} cases[] = {
		{ "lookup", lookup_by_every_name },
		{ "tags_restart", tags_move_and_survive_restart },
		{ "missing_content", record_with_missing_content_ignored },
		{ "remove_shared", remove_keeps_shared_content },
		{ "remove_gc", remove_collects_orphans_not_pins },
		{ "erofs_disk", erofs_disk_follows_the_image },
		{ "rootfs_overlay", rootfs_overlay },
		{ "rootfs_copy", rootfs_copy },
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
