/* Containers inside the guest (vgpu-agent): each runs through runc with a bundle under
 * AGENT_CTR_ROOT/<id>/, its rootfs an overlay of the read-only image disk (erofs) and a tmpfs upper
 * layer. A shepherd process per container (a child of the agent, child subreaper) runs `runc
 * create`, turns the container's stdout/stderr into CRI log records and writes the exit status
 * (agent_shepherd.c).
 *
 * Files of a container, AGENT_CTR_ROOT/<id>/:
 *   config.json   the OCI spec the daemon sent (root.path "rootfs", relative to the bundle)
 *   image/        the image disk, erofs, read-only;  rw/ tmpfs with upper/ and work/
 *   rootfs/       overlay(image, rw/upper)
 *   log           CRI log records (agent_log.h); CTR_LOGS reads it by offset
 *   pid           the container's init pid (runc --pid-file)
 *   started       wall-clock ns of `runc start`
 *   exit          "<exit code> <finished wall ns>\n" written by the shepherd once the container
 *                 exited and its output is all in the log (exit code 128+N when killed by signal N)
 * Everything here returns 0 or a negative errno and fills msg (a short reason for the daemon). */
#ifndef VGPU_AGENT_CTR_H
#define VGPU_AGENT_CTR_H

#include <stddef.h>
#include <stdint.h>

#include "agent_proto.h"

#define AGENT_CTR_ROOT "/run/vgpu-agent/ctr"
#define AGENT_CTR_MSG_MAX 512

struct agent_ctr_env {
	const char *root;    /* AGENT_CTR_ROOT; tests point it elsewhere */
	const char *runc;    /* runc binary */
	const char *runc_root;
	const char *cgroup_root;  /* the guest's cgroup2 mount; NULL: /sys/fs/cgroup */
};

int agent_ctr_create(const struct agent_ctr_env *env, const struct agent_ctr_req *req, char *msg);
int agent_ctr_start(const struct agent_ctr_env *env, const char *id, char *msg);
int agent_ctr_stop(const struct agent_ctr_env *env, const char *id, uint32_t signal, uint32_t timeout_ms, char *msg);
int agent_ctr_status(const struct agent_ctr_env *env, const char *id, struct agent_ctr_state *st, char *msg);
/* Up to max_bytes of the log from offset into out (appended); *eof when the container exited and
 * nothing is left past what was read. */
int agent_ctr_logs(const struct agent_ctr_env *env, const char *id, uint64_t offset, uint32_t max_bytes,
		   struct agent_buf *out, uint64_t *next_offset, uint32_t *eof, char *msg);
int agent_ctr_remove(const struct agent_ctr_env *env, const char *id, char *msg);
/* The container's cgroup (cgroup2, <cgroup_root>/vgpu/<id>: the daemon's cgroupsPath): cpu.stat,
 * memory.current, memory.max, memory.stat. A cgroup that is not there (not started, exited) gives
 * flags 0, not an error. */
int agent_ctr_stats(const struct agent_ctr_env *env, const char *id, struct agent_ctr_stats *st, char *msg);
/* `runc update --resources <bundle>/resources.json` with resources_json (OCI linux.resources). */
int agent_ctr_update(const struct agent_ctr_env *env, const char *id, const char *resources_json, char *msg);

/* Parse an exit file's text; -EINVAL for anything else (pure, unit-tested). */
int agent_ctr_parse_exit(const char *text, int32_t *code, uint64_t *finished_ns);

/* Run argv with stdout/stderr captured (each up to AGENT_MAX_OUTPUT, the rest dropped), killed after
 * timeout_ms (0: none). exit_code: the status, -N when killed by signal N. */
#define AGENT_MAX_OUTPUT (256u << 10)
int agent_run(char *const *argv, uint32_t timeout_ms, int32_t *exit_code, struct agent_buf *out,
	      struct agent_buf *err);

#endif
