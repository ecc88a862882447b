/* fuzz_image_ref: image references and registry auth challenges (cri/image_ref.c).
 *
 * The first input byte picks what the rest is: an image reference (vgpu_image_ref_parse, then the
 * promise that its canonical string parses back to the same reference), a WWW-Authenticate header
 * (vgpu_auth_challenge_parse: a parsed challenge has a scheme, "basic" or "bearer" in lower case),
 * or a host checked against an insecure-registry list (vgpu_registry_host_listed). */
#include <ctype.h>

#include "fuzz_common.h"
#include "image_internal.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	vgpu_log_set_level(VGPU_LOG_ERROR);
	return 0;
}

static void check_ref(const char *s)
{
	struct vgpu_image_ref ref, again;
	struct vgpu_err err = { 0 };
	if (vgpu_image_ref_parse(s, &ref, &err) < 0) {
		FUZZ_CHECK(err.msg[0] != '\0');
		return;
	}
	FUZZ_CHECK(ref.domain && ref.path && (ref.tag || ref.digest));
	FUZZ_CHECK(!ref.digest || vgpu_digest_valid(ref.digest));
	char *canon = vgpu_image_ref_string(&ref);
	char *name = vgpu_image_ref_name(&ref);
	FUZZ_CHECK(strncmp(canon, name, strlen(name)) == 0);
	FUZZ_CHECK(vgpu_image_ref_host(&ref) != NULL);
	/* the canonical form is a fixed point */
	if (vgpu_image_ref_parse(canon, &again, &err) < 0) {
		fprintf(stderr, "'%s' -> '%s' does not parse: %s\n", s, canon, err.msg);
		abort();
	}
	FUZZ_CHECK(fuzz_streq(ref.domain, again.domain) && fuzz_streq(ref.path, again.path));
	FUZZ_CHECK(fuzz_streq(ref.tag, again.tag));
	if (!ref.tag)
		FUZZ_CHECK(fuzz_streq(ref.digest, again.digest));
	char *canon2 = vgpu_image_ref_string(&again);
	FUZZ_CHECK(strcmp(canon, canon2) == 0);
	free(canon2);
	free(canon);
	free(name);
	vgpu_image_ref_free(&again);
	vgpu_image_ref_free(&ref);
}

static void check_challenge(const char *s)
{
	struct vgpu_auth_challenge c;
	struct vgpu_err err = { 0 };
	memset(&c, 0, sizeof c);
	if (vgpu_auth_challenge_parse(s, &c, &err) == 0) {
		FUZZ_CHECK(c.scheme != NULL);
		for (const char *p = c.scheme; *p; p++)
			FUZZ_CHECK(!isupper((unsigned char)*p));
	}
	vgpu_auth_challenge_free(&c);
}

static void check_host(const char *s)
{
	/* "list entry\nhost": one entry, one host */
	char *nl = strchr(s, '\n');
	if (nl == NULL)
		return;
	*nl = '\0';
	char *list[] = { (char *)s, "127.0.0.1:5000", "registry.local", NULL };
	bool listed = vgpu_registry_host_listed(list, nl + 1);
	if (strcmp(s, nl + 1) == 0)
		FUZZ_CHECK(listed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *s = fuzz_cstr(data + 1, size - 1);
	switch (data[0] % 3) {
	case 0:
		check_ref(s);
		FUZZ_CHECK(vgpu_digest_valid(s) == (strlen(s) == 71 && !strncmp(s, "sha256:", 7) &&
						    strspn(s + 7, "0123456789abcdef") == 64));
		(void)vgpu_image_id_like(s);
		break;
	case 1:
		check_challenge(s);
		break;
	default:
		check_host(s);
		break;
	}
	free(s);
	return 0;
}
