/* The CRI socket's path: parent directory (created 0700), single-instance lock, stale socket
 * removal. The gRPC server binds the socket itself; this prepares the ground. */
#ifndef VGPU_SOCKET_H
#define VGPU_SOCKET_H

#include "err.h"

/* Create the parent directory (0700 when created), take an exclusive lock on "<path>.lock" and
 * remove a stale socket at path. On success *lock_fd holds the lock until closed (keep it open for
 * the daemon's lifetime). -EBUSY when another instance holds the lock; -EEXIST when path exists
 * and is not a socket (never deleted). */
int vgpu_socket_prepare(const char *path, int *lock_fd, struct vgpu_err *err);

#endif
