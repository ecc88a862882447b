/* Small helpers used across the daemon: cleanup attributes for locals (as crun and systemd do),
 * atomic file writes, directory creation. */
#ifndef VGPU_UTIL_H
#define VGPU_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "err.h"

static inline void vgpu_freep(void *p)
{
	free(*(void **)p);
}
void vgpu_closep(int *fd);
void vgpu_fclosep(FILE **f);
/* Frees a NULL-terminated array of strings and the array itself. */
void vgpu_strv_free(char **v);
static inline void vgpu_strv_freep(char ***v)
{
	vgpu_strv_free(*v);
}

#define _cleanup_free_ __attribute__((cleanup(vgpu_freep)))
#define _cleanup_close_ __attribute__((cleanup(vgpu_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(vgpu_fclosep)))
#define _cleanup_strv_ __attribute__((cleanup(vgpu_strv_freep)))

/* Take ownership out of a cleanup-managed local: returns the pointer and sets the local to NULL. */
#define steal_pointer(pp)                          \
	({                                         \
		__typeof__(*(pp)) _tmp = *(pp);    \
		*(pp) = NULL;                      \
		_tmp;                              \
	})
#define steal_fd(fdp)                  \
	({                             \
		int _tmp = *(fdp);     \
		*(fdp) = -1;           \
		_tmp;                  \
	})

/* Like strdup/asprintf but abort()s on allocation failure: used only where a failed small
 * allocation leaves no sane way on (the daemon cannot report anything without memory). */
char *vgpu_strdup(const char *s);
char *vgpu_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *vgpu_calloc(size_t n, size_t size);

/* mkdir -p with mode for every directory it creates. */
int vgpu_mkdir_p(const char *path, mode_t mode, struct vgpu_err *err);

/* write(2) until all len bytes are written (EINTR retried). 0 or -errno. */
int vgpu_write_all(int fd, const void *data, size_t len);

/* Write data to path atomically: temp file in the same directory, fsync, rename, fsync of the
 * directory. Readers see the old or the new content, never a mix, also after a crash. */
int vgpu_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
			   struct vgpu_err *err);

/* Read a whole file (at most max_len bytes, else -EFBIG) into a NUL-terminated malloc'd buffer. */
int vgpu_read_file(const char *path, size_t max_len, char **out, size_t *out_len, struct vgpu_err *err);

/* Monotonic clock in nanoseconds. */
long long vgpu_now_ns(void);
/* Wall clock in nanoseconds since the epoch (CRI timestamps). */
long long vgpu_wall_ns(void);

#endif
