/* TEST BACKEND for the streaming server: runs exec'd commands as plain host processes and
 * forwards ports to 127.0.0.1 on the host. For tests and benchmarks only; never linked into the
 * daemon (it is not in vgpu_core). "Containers" for attach are host processes started with
 * vgpu_stream_test_backend_add_container. */
#ifndef VGPU_STREAMING_TEST_BACKEND_H
#define VGPU_STREAMING_TEST_BACKEND_H

#include "streaming.h"

/* Fill b with the host test backend. Container ids "missing" (-ENOENT) and "stopped" (-EBUSY)
 * are refused by check, to test the RPC errors. */
void vgpu_stream_test_backend_init(struct vgpu_stream_backend *b);
/* Start argv as the attachable "container" id (stdin, stdout, stderr pipes kept by the backend). */
int vgpu_stream_test_backend_add_container(const char *id, char *const argv[], struct vgpu_err *err);
/* Kill and reap every test container. */
void vgpu_stream_test_backend_cleanup(void);

#endif
