/* Internal to agent_ctr.c, agent_shepherd.c and agent_stream.c: the container's shepherd process
 * and the small helpers these files use. Not part of the agent's request interface (agent_ctr.h). */
#ifndef VGPU_AGENT_SHEPHERD_H
#define VGPU_AGENT_SHEPHERD_H

#include <stddef.h>
#include <stdint.h>

#include "agent_ctr.h"

/* Runs in the shepherd (the agent's child, forked at CTR_CREATE for the bundle dir): runc create,
 * then the container's output as CRI log records into <dir>/log, then the exit file <dir>/exit
 * once the container exited and its output is all in the log. Reports "OK <pid>" or "ERR <why>"
 * on sync_fd; never returns. */
void agent_shepherd_run(const struct agent_ctr_env *env, const char *id, const char *dir, int sync_fd)
	__attribute__((noreturn));

/* A container with a terminal (AGENT_TTY_ANNOTATION): a copy of its pty master, from the
 * shepherd's AGENT_TTY_SOCKET in the bundle dir (nonblocking, O_CLOEXEC); -EPIPE when the
 * terminal is gone (the container exited), other -errno. */
int agent_tty_connect(const char *dir);

/* Formats an error message into msg (cap bytes) and returns code (the agent's request handlers'
 * way of failing with a reason). */
int agent_fail(char *msg, size_t cap, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
uint64_t agent_ctr_wall_ns(void);   /* CLOCK_REALTIME in ns */
double agent_ctr_mono_s(void);      /* CLOCK_MONOTONIC in s */
/* Reads fd into buf until EOF, an error, timeout_ms or cap - 1 bytes; NUL-terminates; the length. */
size_t agent_ctr_read_for(int fd, char *buf, size_t cap, int timeout_ms);
/* Small text file into buf (NUL-terminated); -errno. */
int agent_ctr_read_small(const char *path, char *buf, size_t n);
/* Atomic small write: <path>.tmp + rename; -errno. */
int agent_ctr_write_small(const char *path, const char *text);

#endif
