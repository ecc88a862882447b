/* cri-stream: the remote-command client of cri-client (test bed only): one WebSocket session
 * speaking v5.channel.k8s.io to the streaming URL that Exec or Attach returned. */
#ifndef CRI_STREAM_H
#define CRI_STREAM_H

#include <stdbool.h>

struct cri_stream_opts {
	const char *stdin_text;   /* sent on channel 0 (C escapes \n \r \t \\ \004 decoded); NULL: none */
	int stdin_delay_ms;       /* before sending it */
	bool close_stdin;         /* then the v5 "client closed stdin" signal */
	int width, height;        /* a resize sent first (0: none) */
	const char *leave_after;  /* drop the connection once stdout contains this */
	int timeout_s;            /* the whole session */
};

/* Prints "CRI stream exit=<n> stdout=<escaped> stderr=<escaped>" when the server ended the
 * session with a status (exit=-1 and the status text for a failure without an exit code), or
 * "CRI stream left stdout=<escaped>" when leave_after was seen. 0, or 1 on errors. */
int cri_stream_run(const char *url, const struct cri_stream_opts *o);

/* Port-forward (portforward.k8s.io over raw SPDY/3.1, as kubelet's clients speak it): conns
 * connections to port at once in one session, each an error and a data stream (requestID k). */
struct cri_pf_opts {
	int port;
	int conns;                /* 1..16 */
	const char *in_file;      /* sent on every connection, then a half-close; NULL: nothing */
	bool hold;                /* without in_file: never half-close (wait for the server's end) */
	const char *out_prefix;   /* connection k's bytes into <out_prefix>.<k>; NULL: not kept */
	int timeout_s;
};

/* Prints per connection "CRI pf conn=<k> bytes=<n> secs=<s> error=<escaped error stream>" once
 * both its streams ended, then "CRI pf done conns=<n> secs=<s>". 0, or 1 on errors (timeout: "CRI
 * pf error timeout ..."). */
int cri_pf_run(const char *url, const struct cri_pf_opts *o);

#endif
