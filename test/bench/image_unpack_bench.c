/* Benchmark (not a test): unpack layer blobs (tar, tar+gzip, tar+zstd) with the daemon's own
 * vgpu_layer_unpack into temp dirs and print the rate. Used by images_bench.py; see
 * docs/bench/images.md.  Usage: image_unpack_bench TMPDIR BLOB... */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "image_internal.h"
#include "util.h"

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s TMPDIR BLOB...\n", argv[0]);
		return 2;
	}
	uint64_t total_bytes = 0, total_compressed = 0;
	long long total_ns = 0;
	for (int i = 2; i < argc; i++) {
		_cleanup_free_ char *dir = vgpu_asprintf("%s/unpack-bench-%d", argv[1], i);
		struct vgpu_err err = { 0 };
		vgpu_rm_rf(dir, NULL);
		if (mkdir(dir, 0755) < 0) {
			perror(dir);
			return 1;
		}
		struct stat st;
		if (stat(argv[i], &st) < 0) {
			perror(argv[i]);
			return 1;
		}
		uint64_t bytes = 0;
		long long t0 = vgpu_now_ns();
		if (vgpu_layer_unpack(argv[i], dir, &bytes, &err) < 0) {
			fprintf(stderr, "%s: %s\n", argv[i], err.msg);
			return 1;
		}
		long long ns = vgpu_now_ns() - t0;
		printf("layer %s: %.1f MiB compressed, %.1f MiB files, %.1f ms, %.1f MiB/s (of files)\n", argv[i],
		       (double)st.st_size / 1048576.0, (double)bytes / 1048576.0, (double)ns / 1e6,
		       (double)bytes / 1048576.0 / ((double)ns / 1e9));
		total_bytes += bytes;
		total_compressed += (uint64_t)st.st_size;
		total_ns += ns;
		vgpu_rm_rf(dir, NULL);
	}
	printf("unpack total: %.1f MiB compressed, %.1f MiB files, %.1f ms, %.1f MiB/s (of files, one thread)\n",
	       (double)total_compressed / 1048576.0, (double)total_bytes / 1048576.0, (double)total_ns / 1e6,
	       (double)total_bytes / 1048576.0 / ((double)total_ns / 1e9));
	return 0;
}
