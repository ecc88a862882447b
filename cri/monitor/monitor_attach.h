/* vgpu-monitor's attach server (monitor_attach.c), internal to the monitor: serves the attach socket
 * (protocol in attach_proto.h), copies the container's output to every attached client, forwards
 * the clients' stdin to the container, applies resizes to its pty, and honours stdin_once. It never
 * blocks the container: a client that falls more than ATTACH_CLIENT_BACKLOG bytes behind is
 * detached. Single-threaded: driven by the monitor's poll loop. */
#ifndef VGPU_MONITOR_ATTACH_H
#define VGPU_MONITOR_ATTACH_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#define ATTACH_MAX_CLIENTS 32
#define ATTACH_CLIENT_BACKLOG (1u << 20)
/* pollfds attach_poll_fill may use: the listener, the container's stdin, 4 per client */
#define ATTACH_MAX_POLLFDS (2 + 4 * ATTACH_MAX_CLIENTS)

struct attach_config {
	bool tty, stdin_once;
	int ctr_stdin; /* the container's stdin (pipe write end, or a dup of the pty master); -1 = none */
	int pty;       /* the pty master for TIOCSWINSZ; -1 without tty */
};

struct attach_server;

/* Listen on <dirfd>/attach (mode 0600, an old socket there replaced). Takes ownership of the fds
 * in cfg (also on failure). Returns 0 or -errno. */
int attach_open(int dirfd, const struct attach_config *cfg, struct attach_server **out);
/* Fill p with what the server waits for; returns how many entries were used. */
size_t attach_poll_fill(struct attach_server *s, struct pollfd *p, size_t max);
/* Handle the results of poll() for the entries filled last. */
void attach_poll_handle(struct attach_server *s, const struct pollfd *p, size_t n);
/* Copy container output (stream 0 stdout, 1 stderr) to the clients that want it. */
void attach_output(struct attach_server *s, int stream, const void *data, size_t len);
/* The container is gone: write out what clients still have queued (up to timeout_ms), close every
 * client, the listener and the container's stdin, remove the socket, free s. */
void attach_close(struct attach_server *s, int timeout_ms);

#endif
