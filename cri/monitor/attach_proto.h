/* The attach protocol between the daemon (streaming server, container_stream.c) and a container's
 * vgpu-monitor: how an Attach session gets the container's live stdio. Shared by both programs:
 * plain C and sockets, no daemon libraries, so it is unit-tested on its own (attach_proto_test.c).
 *
 * Transport: a SOCK_SEQPACKET unix socket the monitor listens on, `<bundle dir>/attach` (mode 0600,
 * outside the container's rootfs), reached as /proc/self/fd/<dirfd>/attach because the bundle path
 * may be longer than sun_path. One message per packet, every integer little-endian:
 *   u32 magic "VAT1" (0x31544156), u16 type, u16 text length (<= VGPU_ATTACH_TEXT_MAX), u32 a, u32 b,
 *   then the text (no NUL on the wire).
 *   HELLO  client -> monitor, first message: a = streams wanted (VGPU_ATTACH_STDIN/STDOUT/STDERR);
 *          with SCM_RIGHTS, in this order, the read end of a pipe the monitor reads the client's
 *          stdin from (STDIN), the write ends of pipes it writes the container's stdout (STDOUT)
 *          and stderr (STDERR) to. The client keeps the other ends.
 *   REPLY  monitor -> client: a = 0 or a positive errno (text says why); b = the container's stdio
 *          (VGPU_ATTACH_TTY, VGPU_ATTACH_HAS_STDIN, VGPU_ATTACH_STDIN_ONCE).
 *   RESIZE client -> monitor: a = columns, b = rows (1..65535); TIOCSWINSZ on the container's pty.
 * The client detaches by closing the socket; the monitor closes it (and the client's pipes) when
 * the container has exited and its output is written out. */
#ifndef VGPU_ATTACH_PROTO_H
#define VGPU_ATTACH_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VGPU_ATTACH_MAGIC 0x31544156u /* "VAT1" */
#define VGPU_ATTACH_HDR_SIZE 16u
#define VGPU_ATTACH_TEXT_MAX 256u
#define VGPU_ATTACH_MSG_MAX (VGPU_ATTACH_HDR_SIZE + VGPU_ATTACH_TEXT_MAX)
#define VGPU_ATTACH_MAX_FDS 3u
#define VGPU_ATTACH_SOCKET "attach" /* in the bundle directory */

enum vgpu_attach_type {
	VGPU_ATTACH_HELLO = 1,
	VGPU_ATTACH_REPLY = 2,
	VGPU_ATTACH_RESIZE = 3,
};

/* HELLO a: the streams a client wants */
#define VGPU_ATTACH_STDIN 1u
#define VGPU_ATTACH_STDOUT 2u
#define VGPU_ATTACH_STDERR 4u
/* REPLY b: how the container was created */
#define VGPU_ATTACH_TTY 1u
#define VGPU_ATTACH_HAS_STDIN 2u
#define VGPU_ATTACH_STDIN_ONCE 4u

struct vgpu_attach_msg {
	uint16_t type;
	uint32_t a, b;
	char text[VGPU_ATTACH_TEXT_MAX + 1]; /* NUL-terminated */
};

/* Encode m into buf (at least VGPU_ATTACH_MSG_MAX bytes); a longer text is cut. Returns the size. */
size_t vgpu_attach_encode(uint8_t buf[VGPU_ATTACH_MSG_MAX], const struct vgpu_attach_msg *m);
/* Decode one packet: 0, or -EBADMSG (bad magic, unknown type, lengths that do not match, a resize
 * outside 1..65535, HELLO/REPLY flags we do not know). */
int vgpu_attach_decode(const uint8_t *buf, size_t len, struct vgpu_attach_msg *m);
/* Number of fds a HELLO with these stream flags carries. */
size_t vgpu_attach_hello_fds(uint32_t streams);

/* Send one message with nfds (<= VGPU_ATTACH_MAX_FDS) descriptors. 0 or -errno. */
int vgpu_attach_send(int sock, const struct vgpu_attach_msg *m, const int *fds, size_t nfds);
/* Receive one message (blocking unless sock is non-blocking). Received fds are O_CLOEXEC; up to
 * max_fds are stored in fds (*nfds set), any beyond are closed. 0, -EPIPE at EOF, -EBADMSG for a
 * malformed or truncated packet (its fds closed), or -errno. */
int vgpu_attach_recv(int sock, struct vgpu_attach_msg *m, int *fds, size_t max_fds, size_t *nfds);

/* Receives one message on sock: at most len bytes into buf and up to max_fds (<= 16) descriptors
 * (SCM_RIGHTS, close-on-exec; any more are closed). Returns the bytes received (0: the peer
 * closed) or -errno; -EBADMSG, with the descriptors closed, when the data or descriptors were cut. */
ssize_t vgpu_recv_fds(int sock, void *buf, size_t len, int *fds, size_t max_fds, size_t *nfds);
/* runc's --console-socket: waits up to timeout_ms for runc's connection on listen_fd and returns
 * the pty master it sends (-ETIMEDOUT, -EBADMSG or -errno). Used by the monitor (runc pods) and
 * the guest agent's shepherd (xen pods). */
int vgpu_console_recv(int listen_fd, int timeout_ms);

#endif
