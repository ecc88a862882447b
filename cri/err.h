/* Error convention of the daemon: functions return 0 or a negative errno-style code and fill an
 * optional struct vgpu_err with a message that carries context. grpc_server.c maps codes to gRPC
 * status codes in one place (ENOENT -> NOT_FOUND, EINVAL -> INVALID_ARGUMENT, ...). */
#ifndef VGPU_ERR_H
#define VGPU_ERR_H

#include <stddef.h>

#define VGPU_ERR_MSG_MAX 1024

struct vgpu_err {
	int code;                    /* negative errno-style code, 0 = no error */
	char msg[VGPU_ERR_MSG_MAX];  /* human readable, with context */
};

/* Set err (if not NULL) to code and a formatted message; returns code (negative), so callers can
 * write `return vgpu_err_set(err, -EINVAL, "bad %s", x);`. A positive code is negated. */
int vgpu_err_set(struct vgpu_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like vgpu_err_set, with ": strerror(errno_value)" appended. */
int vgpu_err_errno(struct vgpu_err *err, int errno_value, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepend "prefix: " to an existing message (for adding context while unwinding). Returns err->code. */
int vgpu_err_prefix(struct vgpu_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void vgpu_err_clear(struct vgpu_err *err);

#endif
