/* fuzz_layer_unpack: layer extraction (cri/image_unpack.c, libarchive): tar headers, gzip and zstd,
 * whiteouts, opaque dirs, symlinks, hard links, devices, paths with "..".
 *
 * Each input is written as a blob into a fresh directory under a per-process base directory and
 * unpacked into dest/ next to it; afterwards nothing may exist outside dest/ but the blob (no
 * escape through "..", symlinks or hard links), the blob must not have gained a hard link, and the
 * whole tree must be removable (vgpu_rm_rf). Everything is removed per input. Runs as root in CI,
 * so device nodes and ownership are really created, inside the temp dir only. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "image_internal.h"
#include "log.h"
#include "util.h"

static char base[256];

static void remove_base(void)
{
	struct vgpu_err err = { 0 };
	(void)vgpu_rm_rf(base, &err);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	vgpu_log_set_level(VGPU_LOG_ERROR);
	const char *tmp = getenv("TMPDIR");
	snprintf(base, sizeof base, "%s/fuzz-unpack-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	FUZZ_CHECK(mkdtemp(base) != NULL);
	char *sentinel = vgpu_asprintf("%s/sentinel", base);
	int fd = open(sentinel, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	FUZZ_CHECK(fd >= 0 && write(fd, "keep", 4) == 4);
	close(fd);
	free(sentinel);
	atexit(remove_base);
	return 0;
}

/* The names in dir, other than . and .., must be exactly want (NULL-terminated). */
static void expect_entries(const char *dir, const char *const *want)
{
	DIR *d = opendir(dir);
	FUZZ_CHECK(d != NULL);
	size_t n = 0, nwant = 0;
	while (want[nwant])
		nwant++;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		bool ok = false;
		for (size_t i = 0; i < nwant; i++)
			ok |= strcmp(e->d_name, want[i]) == 0;
		if (!ok) {
			fprintf(stderr, "fuzz_layer_unpack: unexpected '%s' in %s\n", e->d_name, dir);
			abort();
		}
		n++;
	}
	closedir(d);
	FUZZ_CHECK(n == nwant);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *root = vgpu_asprintf("%s/in-XXXXXX", base);
	FUZZ_CHECK(mkdtemp(root) != NULL);
	char *blob = vgpu_asprintf("%s/blob", root);
	char *dest = vgpu_asprintf("%s/dest", root);
	int fd = open(blob, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
	close(fd);
	FUZZ_CHECK(mkdir(dest, 0755) == 0);

	uint64_t bytes = 0;
	struct vgpu_err err = { 0 };
	int r = vgpu_layer_unpack(blob, dest, &bytes, &err);
	if (r < 0)
		FUZZ_CHECK(err.msg[0] != '\0');

	const char *in_root[] = { "blob", "dest", NULL };
	expect_entries(root, in_root);
	char *root_name = strrchr(root, '/') + 1;
	const char *in_base[] = { "sentinel", root_name, NULL };
	expect_entries(base, in_base);
	struct stat st;
	FUZZ_CHECK(lstat(blob, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
		   st.st_size == (off_t)size);

	FUZZ_CHECK(vgpu_rm_rf(root, &err) == 0);
	FUZZ_CHECK(lstat(root, &st) < 0);
	free(dest);
	free(blob);
	free(root);
	return 0;
}
