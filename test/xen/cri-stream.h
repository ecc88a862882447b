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

#endif
