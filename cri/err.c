/* Error values with context messages (see err.h). */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int set_v(struct vgpu_err *err, int code, const char *suffix, const char *fmt, va_list ap)
{
	if (code > 0)
		code = -code;
	if (!err)
		return code;
	err->code = code;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	if (suffix) {
		size_t len = strlen(err->msg);
		snprintf(err->msg + len, sizeof(err->msg) - len, ": %s", suffix);
	}
	return code;
}

int vgpu_err_set(struct vgpu_err *err, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	code = set_v(err, code, NULL, fmt, ap);
	va_end(ap);
	return code;
}

int vgpu_err_errno(struct vgpu_err *err, int errno_value, const char *fmt, ...)
{
	char buf[128];
	const char *s = strerror_r(errno_value < 0 ? -errno_value : errno_value, buf, sizeof(buf));
	va_list ap;
	va_start(ap, fmt);
	int code = set_v(err, errno_value, s, fmt, ap);
	va_end(ap);
	return code;
}

int vgpu_err_prefix(struct vgpu_err *err, const char *fmt, ...)
{
	if (!err)
		return 0;
	char prefix[VGPU_ERR_MSG_MAX];
	char old[VGPU_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
	return err->code;
}

void vgpu_err_clear(struct vgpu_err *err)
{
	if (err) {
		err->code = 0;
		err->msg[0] = '\0';
	}
}
