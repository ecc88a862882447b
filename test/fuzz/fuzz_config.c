/* fuzz_config: the daemon's config parser (cri/config.c, libyaml document walk over the schema
 * table). Any input either parses or fails with a "name:line:column" message; a config that
 * parses is printed (vgpu_config_print, as --print-default-config does), and that text must parse
 * again to the same JSON (vgpu_config_to_json, as Status verbose shows it). */
#include <errno.h>

#include "config.h"
#include "fuzz_common.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	vgpu_log_set_level(VGPU_LOG_ERROR);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vgpu_config cfg, again;
	struct vgpu_err err = { 0 };
	vgpu_config_defaults(&cfg);
	int r = vgpu_config_parse(&cfg, "fuzz.yaml", (const char *)data, size, &err);
	if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM);
		FUZZ_CHECK(strncmp(err.msg, "fuzz.yaml", 9) == 0);
		vgpu_config_free(&cfg);
		return 0;
	}
	char *json = vgpu_config_to_json(&cfg);
	FUZZ_CHECK(json != NULL);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	FUZZ_CHECK(f != NULL);
	vgpu_config_print(&cfg, f);
	FUZZ_CHECK(fclose(f) == 0);
	vgpu_config_defaults(&again);
	r = vgpu_config_parse(&again, "fuzz.yaml", text, len, &err);
	if (r < 0) {
		fprintf(stderr, "printed config does not parse: %s\n---\n%s---\n", err.msg, text);
		abort();
	}
	char *json2 = vgpu_config_to_json(&again);
	if (strcmp(json, json2) != 0) {
		fprintf(stderr, "printed config parses differently:\n%s\n%s\n", json, json2);
		abort();
	}
	free(json2);
	free(json);
	free(text);
	vgpu_config_free(&again);
	vgpu_config_free(&cfg);
	return 0;
}
