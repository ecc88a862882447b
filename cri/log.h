/* Daemon logging: leveled, timestamped lines on stderr. Put the object's id in every message about
 * an object ("sandbox 3f2a..: stopped"). */
#ifndef VGPU_LOG_H
#define VGPU_LOG_H

enum vgpu_log_level {
	VGPU_LOG_ERROR = 0,
	VGPU_LOG_WARN = 1,
	VGPU_LOG_INFO = 2,
	VGPU_LOG_DEBUG = 3,
};

void vgpu_log_set_level(enum vgpu_log_level level);
enum vgpu_log_level vgpu_log_get_level(void);
/* Parse "error", "warn", "info", "debug"; returns -1 for anything else. */
int vgpu_log_level_parse(const char *name);
const char *vgpu_log_level_name(enum vgpu_log_level level);

void vgpu_log_write(enum vgpu_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define vgpu_log(level, ...)                                  \
	do {                                                  \
		if ((level) <= vgpu_log_get_level())          \
			vgpu_log_write((level), __VA_ARGS__); \
	} while (0)

#endif
