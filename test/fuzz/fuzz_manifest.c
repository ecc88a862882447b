/* fuzz_manifest: the JSON documents of a pull and of the image store.
 *
 * First byte: which document; the rest is its text. 0: a manifest or index body as a registry
 * serves it (vgpu_image_manifest_check, the checks resolve() makes in cri/image_pull.c), with a
 * Content-Type chosen by the second byte; an index must yield a valid digest. 1: an image config
 * (vgpu_image_config_parse, cri/image_rootfs.c): arrays NULL-terminated, strings never NULL.
 * 2: an image store record (vgpu_image_record_from_json, cri/image_record.c): a record that loads
 * must survive to_json -> from_json -> to_json unchanged. */
#include "fuzz_common.h"
#include "image_internal.h"
#include "log.h"

static const char *const content_types[] = {
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"",
	"application/json",
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	vgpu_log_set_level(VGPU_LOG_ERROR);
	return 0;
}

static void check_manifest(uint8_t sel, const char *body)
{
	char next[72] = "";
	size_t n_layers = 0;
	struct vgpu_err err = { 0 };
	const char *ct = content_types[(sel & 0x7f) % (sizeof content_types / sizeof content_types[0])];
	int r = vgpu_image_manifest_check(body, ct, sel & 0x80, next, &n_layers, &err);
	if (r == 1)
		FUZZ_CHECK((sel & 0x80) && vgpu_digest_valid(next));
	else if (r == 0)
		FUZZ_CHECK(n_layers <= 256);
	else
		FUZZ_CHECK(err.msg[0] != '\0');
}

static void check_strv(char **v)
{
	FUZZ_CHECK(v != NULL);
	for (size_t i = 0; v[i]; i++)
		(void)strlen(v[i]);
}

static void check_config(const char *text)
{
	struct vgpu_image_config c;
	if (vgpu_image_config_parse(text, &c, NULL) == 0) {
		check_strv(c.entrypoint);
		check_strv(c.cmd);
		check_strv(c.env);
		FUZZ_CHECK(c.working_dir != NULL && c.user != NULL);
	}
	vgpu_image_config_free(&c);
}

static void check_record(const char *text)
{
	struct vgpu_image_record *rec = NULL, *rec2 = NULL;
	struct vgpu_err err = { 0 };
	if (vgpu_image_record_from_json(text, &rec, &err) < 0)
		return;
	char *j1 = vgpu_image_record_to_json(rec);
	FUZZ_CHECK(j1 != NULL);
	if (vgpu_image_record_from_json(j1, &rec2, &err) < 0) {
		fprintf(stderr, "record does not load back: %s\n%s\n", err.msg, j1);
		abort();
	}
	char *j2 = vgpu_image_record_to_json(rec2);
	if (strcmp(j1, j2) != 0) {
		fprintf(stderr, "record changes on reload:\n%s\n%s\n", j1, j2);
		abort();
	}
	struct vgpu_image_record *dup = vgpu_image_record_dup(rec);
	char *j3 = vgpu_image_record_to_json(dup);
	FUZZ_CHECK(strcmp(j1, j3) == 0);
	free(j3);
	vgpu_image_record_free(dup);
	free(j2);
	free(j1);
	vgpu_image_record_free(rec2);
	vgpu_image_record_free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	char *text = fuzz_cstr(data + 2, size - 2);
	switch (data[0] % 3) {
	case 0:
		check_manifest(data[1], text);
		break;
	case 1:
		check_config(text);
		break;
	default:
		check_record(text);
		break;
	}
	free(text);
	return 0;
}
