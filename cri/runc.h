/* Running helper programs from the daemon: a generic spawn-and-capture with a deadline, and the
 * OCI runtime (runc) commands the runc handler uses. Independent of pods: the xen handler's guest
 * agent drives runc inside the guest with the same calls. */
#ifndef VGPU_RUNC_H
#define VGPU_RUNC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "err.h"

struct vgpu_proc_result {
	int status;        /* wait status (WIFEXITED/WEXITSTATUS...) */
	bool timed_out;    /* killed because the deadline passed */
	char *out;         /* captured stdout, NUL-terminated, malloc'd (owned by the result) */
	size_t out_len;
	char *errout;      /* captured stderr, same */
	size_t err_len;
	bool out_truncated, err_truncated;
};

struct vgpu_proc_opts {
	long long timeout_ms;     /* <= 0: no deadline */
	size_t max_output;        /* per stream; 0 = 1 MiB */
	const char *kill_pidfile; /* on timeout also SIGKILL the pid written in this file (runc exec) */
	int extra_fd;             /* >= 0: passed to the child as fd 3 */
};

/* Spawn argv[0] (absolute path) with stdin /dev/null, capture stdout/stderr, wait. Returns 0 when
 * the program ran (whatever its exit status, see res->status), negative when it could not be run. */
int vgpu_proc_run(char *const argv[], const struct vgpu_proc_opts *opts, struct vgpu_proc_result *res,
		  struct vgpu_err *err);
void vgpu_proc_result_free(struct vgpu_proc_result *res);

/* Spawn without waiting or capturing (stdin/stdout/stderr /dev/null, extra_fd as fd 3 when >= 0).
 * Returns the pid or a negative code. */
pid_t vgpu_proc_spawn(char *const argv[], int extra_fd, struct vgpu_err *err);
/* Spawn without waiting, with the given fds as stdin/stdout/stderr (-1: /dev/null; the same fd may
 * be given for several, e.g. a pty slave). The caller reaps the child. */
pid_t vgpu_proc_spawn_stdio(char *const argv[], int in_fd, int out_fd, int err_fd, struct vgpu_err *err);

/* Start time of pid (clock ticks since boot, /proc/PID/stat field 22); 0 when the process does not
 * exist or is a zombie. Used with the pid to tell a live process from a reused pid. */
unsigned long long vgpu_proc_start_time(pid_t pid);
bool vgpu_proc_alive(pid_t pid, unsigned long long start_time);

/* The OCI runtime binary and its state root. */
struct vgpu_runc {
	const char *path;
	const char *root;
};

int vgpu_runc_start(const struct vgpu_runc *rt, const char *id, struct vgpu_err *err);
/* Signal the container's init (all processes when all). -ESRCH when it is not running. */
int vgpu_runc_kill(const struct vgpu_runc *rt, const char *id, int sig, bool all, struct vgpu_err *err);
/* runc delete --force; a container runc does not know is not an error. */
int vgpu_runc_delete(const struct vgpu_runc *rt, const char *id, struct vgpu_err *err);
/* runc state: status ("created", "running", "stopped", ...) into status (size len); -ENOENT if unknown. */
int vgpu_runc_state(const struct vgpu_runc *rt, const char *id, char *status, size_t len, struct vgpu_err *err);
/* runc update --resources FILE (an OCI LinuxResources JSON). */
int vgpu_runc_update(const struct vgpu_runc *rt, const char *id, const char *resources_json,
		     struct vgpu_err *err);
/* runc exec of argv (NULL-terminated) in the container, output captured, timeout_ms honoured by
 * killing the exec'd process. tmp_dir holds the pid file. */
int vgpu_runc_exec(const struct vgpu_runc *rt, const char *id, char *const argv[], long long timeout_ms,
		   const char *tmp_dir, struct vgpu_proc_result *res, struct vgpu_err *err);

#endif
