/* Image references (normalization as docker/containerd do it), digests, registry host lists and
 * WWW-Authenticate challenge parsing. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "image_internal.h"
#include "util.h"

static void check_ref(const char *in, const char *domain, const char *path, const char *tag, const char *digest)
{
	struct vgpu_image_ref ref;
	struct vgpu_err err = { 0 };
	int r = vgpu_image_ref_parse(in, &ref, &err);
	ck_assert_msg(r == 0, "%s: %s", in, err.msg);
	ck_assert_str_eq(ref.domain, domain);
	ck_assert_str_eq(ref.path, path);
	if (tag)
		ck_assert_str_eq(ref.tag, tag);
	else
		ck_assert_ptr_null(ref.tag);
	if (digest)
		ck_assert_str_eq(ref.digest, digest);
	else
		ck_assert_ptr_null(ref.digest);
	vgpu_image_ref_free(&ref);
}

static void check_bad(const char *in)
{
	struct vgpu_image_ref ref;
	struct vgpu_err err = { 0 };
	int r = vgpu_image_ref_parse(in, &ref, &err);
	ck_assert_msg(r == -EINVAL, "%s: accepted", in);
	ck_assert_msg(strlen(err.msg) > 0, "%s: no message", in);
}

#define D64 "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

START_TEST(short_names_go_to_docker_hub_library)
{
	check_ref("busybox", "docker.io", "library/busybox", "latest", NULL);
	check_ref("busybox:1.36", "docker.io", "library/busybox", "1.36", NULL);
	check_ref("library/busybox", "docker.io", "library/busybox", "latest", NULL);
	check_ref("docker.io/busybox", "docker.io", "library/busybox", "latest", NULL);
	check_ref("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", NULL);
	check_ref("user/app:v1", "docker.io", "user/app", "v1", NULL);
}
END_TEST

START_TEST(registries_with_ports_and_paths)
{
	check_ref("127.0.0.1:5000/x/y:tag", "127.0.0.1:5000", "x/y", "tag", NULL);
	check_ref("localhost/app", "localhost", "app", "latest", NULL);
	check_ref("localhost:5000/app", "localhost:5000", "app", "latest", NULL);
	check_ref("quay.io/a/b/c:1.0-rc_1", "quay.io", "a/b/c", "1.0-rc_1", NULL);
	check_ref("registry.k8s.io/pause:3.9", "registry.k8s.io", "pause", "3.9", NULL);
	check_ref("my-reg.example.com:443/a__b/c-d.e", "my-reg.example.com:443", "a__b/c-d.e", "latest", NULL);
}
END_TEST

START_TEST(digests)
{
	check_ref("busybox@" D64, "docker.io", "library/busybox", NULL, D64);
	check_ref("127.0.0.1:5000/x@" D64, "127.0.0.1:5000", "x", NULL, D64);
	check_ref("busybox:1@" D64, "docker.io", "library/busybox", "1", D64);
	ck_assert(vgpu_digest_valid(D64));
	ck_assert(!vgpu_digest_valid("sha256:0123"));
	ck_assert(!vgpu_digest_valid("sha512:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
	ck_assert(!vgpu_digest_valid("sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
	ck_assert(vgpu_image_id_like(D64));
	ck_assert(vgpu_image_id_like(D64 + 7));
	ck_assert(!vgpu_image_id_like("busybox"));
}
END_TEST

START_TEST(strings)
{
	struct vgpu_image_ref ref;
	ck_assert_int_eq(vgpu_image_ref_parse("busybox", &ref, NULL), 0);
	_cleanup_free_ char *s = vgpu_image_ref_string(&ref);
	_cleanup_free_ char *n = vgpu_image_ref_name(&ref);
	ck_assert_str_eq(s, "docker.io/library/busybox:latest");
	ck_assert_str_eq(n, "docker.io/library/busybox");
	ck_assert_str_eq(vgpu_image_ref_host(&ref), "registry-1.docker.io");
	vgpu_image_ref_free(&ref);
	ck_assert_int_eq(vgpu_image_ref_parse("127.0.0.1:5000/x@" D64, &ref, NULL), 0);
	_cleanup_free_ char *s2 = vgpu_image_ref_string(&ref);
	ck_assert_str_eq(s2, "127.0.0.1:5000/x@" D64);
	ck_assert_str_eq(vgpu_image_ref_host(&ref), "127.0.0.1:5000");
	vgpu_image_ref_free(&ref);
}
END_TEST

START_TEST(malformed)
{
	check_bad("");
	check_bad("Busybox");
	check_bad("docker.io/Library/busybox");
	check_bad("busybox:");
	check_bad("busybox:-bad");
	check_bad("busybox:a/b");
	check_bad("busybox@sha256:abc");
	check_bad("busybox@md5:0123456789abcdef0123456789abcdef");
	check_bad("a//b");
	check_bad("/busybox");
	check_bad("busybox/");
	check_bad("bad_.name");
	check_bad("host:99999999/x");
	check_bad("-host.com/x");
	check_bad("ho st/x");
	check_bad(D64 + 7); /* an id, not a reference */
	char longtag[200];
	memset(longtag, 'a', sizeof(longtag) - 1);
	longtag[sizeof(longtag) - 1] = '\0';
	_cleanup_free_ char *lt = vgpu_asprintf("busybox:%s", longtag);
	check_bad(lt);
}
END_TEST

START_TEST(host_lists)
{
	char *list[] = { "127.0.0.1", "reg.local:5000", NULL };
	ck_assert(vgpu_registry_host_listed(list, "127.0.0.1"));
	ck_assert(vgpu_registry_host_listed(list, "127.0.0.1:5000"));
	ck_assert(vgpu_registry_host_listed(list, "reg.local:5000"));
	ck_assert(!vgpu_registry_host_listed(list, "reg.local"));
	ck_assert(!vgpu_registry_host_listed(list, "reg.local:5001"));
	ck_assert(!vgpu_registry_host_listed(list, "127.0.0.10"));
	ck_assert(!vgpu_registry_host_listed(NULL, "127.0.0.1"));
}
END_TEST

START_TEST(challenge_bearer)
{
	struct vgpu_auth_challenge c;
	struct vgpu_err err = { 0 };
	ck_assert_int_eq(vgpu_auth_challenge_parse(
				 "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
				 "scope=\"repository:library/busybox:pull\"",
				 &c, &err),
			 0);
	ck_assert_str_eq(c.scheme, "bearer");
	ck_assert_str_eq(c.realm, "https://auth.docker.io/token");
	ck_assert_str_eq(c.service, "registry.docker.io");
	ck_assert_str_eq(c.scope, "repository:library/busybox:pull");
	vgpu_auth_challenge_free(&c);

	/* token values, spaces, escapes, unknown params, case of names */
	ck_assert_int_eq(vgpu_auth_challenge_parse("bearer  Realm=http://h/t , Service=\"a\\\"b\", foo=bar", &c, &err),
			 0);
	ck_assert_str_eq(c.realm, "http://h/t");
	ck_assert_str_eq(c.service, "a\"b");
	ck_assert_ptr_null(c.scope);
	vgpu_auth_challenge_free(&c);
}
END_TEST

START_TEST(challenge_basic_and_bad)
{
	struct vgpu_auth_challenge c;
	struct vgpu_err err = { 0 };
	ck_assert_int_eq(vgpu_auth_challenge_parse("Basic realm=\"test-realm\"", &c, &err), 0);
	ck_assert_str_eq(c.scheme, "basic");
	ck_assert_str_eq(c.realm, "test-realm");
	vgpu_auth_challenge_free(&c);
	ck_assert_int_eq(vgpu_auth_challenge_parse("", &c, &err), -EINVAL);
	ck_assert_int_eq(vgpu_auth_challenge_parse("Bearer service=\"x\"", &c, &err), -EINVAL);
	ck_assert_int_eq(vgpu_auth_challenge_parse("Bearer realm=\"unterminated", &c, &err), -EINVAL);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("image_ref");
	struct {
		const char *name;
		const TTest *fn;
	} cases[] = {
		{ "short_names", short_names_go_to_docker_hub_library },
		{ "registries", registries_with_ports_and_paths },
		{ "digests", digests },
		{ "strings", strings },
		{ "malformed", malformed },
		{ "host_lists", host_lists },
		{ "challenge_bearer", challenge_bearer },
		{ "challenge_basic_and_bad", challenge_basic_and_bad },
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
