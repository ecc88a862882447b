/* Copy-in volumes in the guest: the agent's side of VOL_PUT and VOL_GET (format in agent_proto.h). A volume is
 * a directory <root>/<key>/ written from the daemon's record stream, relative to a directory fd
 * with openat/O_NOFOLLOW only, so nothing received can write outside it. No Xen: unit-tested on
 * the host against a temp dir (test/unit/agent_vol_test.c). */
#ifndef VGPU_AGENT_VOL_H
#define VGPU_AGENT_VOL_H

#include <stddef.h>
#include <stdint.h>

#include "agent_proto.h"

#define AGENT_VOL_ROOT "/run/vgpu-agent/vol"
#define AGENT_VOL_MSG_MAX 256

/* A stream being received (BEGIN .. END); the buffer is owned (agent_vol_pending_free). */
struct agent_vol_pending {
	int active;
	char key[AGENT_MAX_ID_LEN + 1];
	uint32_t flags;
	struct agent_buf stream;
};

/* One VOL_PUT chunk; at END the stream is applied to root_fd (the volumes' directory). 0 or a
 * negative errno with msg set (on success msg says when an existing volume was kept). */
int agent_vol_put(struct agent_vol_pending *p, int root_fd, const struct agent_vol_put *put,
		  char msg[AGENT_VOL_MSG_MAX]);
void agent_vol_pending_free(struct agent_vol_pending *p);

/* Write the volume key from a whole stream: a new volume is built beside it and renamed into
 * place; an existing one is kept unless AGENT_VOL_REPLACE, in which case new top-level entries
 * are moved in first, existing ones swapped atomically (RENAME_EXCHANGE, so a `..data` symlink
 * switches at once), then entries no longer present are removed; an AGENT_VOL_ISFILE volume's
 * file is rewritten in place. */
int agent_vol_apply(int root_fd, const char *key, uint32_t flags, const uint8_t *stream, size_t len,
		    char msg[AGENT_VOL_MSG_MAX]);

/* VOL_GET: the content of the FILE volume key (<root>/<key>/file) into out (appended), at most
 * AGENT_VOL_GET_MAX bytes; *flags gets AGENT_VOL_GET_TRUNCATED when the file is longer (the first
 * AGENT_VOL_GET_MAX bytes are taken). Opened relative to root_fd with O_NOFOLLOW at each step: a
 * symlink planted in place of the volume or its file is refused (-ELOOP), never followed; anything
 * but a regular file is -EINVAL. 0 or a negative errno with msg set. */
int agent_vol_get(int root_fd, const char *key, struct agent_buf *out, uint32_t *flags, char msg[AGENT_VOL_MSG_MAX]);

#endif
