/* Internals of the streaming server shared by its files: the server state and token cache
 * (streaming.c), one upgraded connection and its transports, raw SPDY or WebSocket
 * (streaming_conn.c), SPDY sessions and streams over a connection (streaming_spdy.c), and the
 * remote-command and port-forward protocols (streaming_exec.c, streaming_portforward.c). */
#ifndef VGPU_STREAMING_INTERNAL_H
#define VGPU_STREAMING_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spdy.h"
#include "streaming.h"

struct MHD_Daemon;
struct MHD_UpgradeResponseHandle;

enum stream_kind {
	STREAM_EXEC,
	STREAM_ATTACH,
	STREAM_PORTFORWARD,
};

/* What a token stands for; owned by the token, then by the session that consumed it. */
struct stream_request {
	enum stream_kind kind;
	struct vgpu_stream_exec_req exec; /* exec, attach */
	char *sandbox_id;                 /* portforward */
};
void stream_request_free(struct stream_request *r);

struct stream_token;
struct stream_session;

struct vgpu_streaming {
	struct MHD_Daemon *mhd;
	int listen_fd;
	char *base_url;
	struct vgpu_stream_backend backend;
	long long token_ttl_ns;
	long long create_timeout_ms;
	size_t max_tokens;
	int stop_fd; /* eventfd, readable once vgpu_streaming_stop began; sessions poll it */

	pthread_mutex_t lock; /* guards everything below */
	pthread_cond_t sessions_cond;
	struct stream_token *tokens;
	size_t n_tokens;
	struct stream_session *sessions;
	size_t n_sessions;
	bool stopping;
};

/* Transports of an upgraded connection. */
enum conn_transport {
	TRANSPORT_SPDY,       /* HTTP Upgrade: SPDY/3.1, raw SPDY frames on the socket */
	TRANSPORT_WEBSOCKET,  /* RFC 6455, binary messages with a channel byte */
	TRANSPORT_WS_TUNNEL,  /* WebSocket whose binary messages carry a SPDY byte stream */
};

/* One upgraded connection; used by its session thread only. */
struct stream_conn {
	struct vgpu_streaming *srv;
	int fd; /* non-blocking; closed through MHD */
	enum conn_transport transport;
	void *ws; /* wslay_event_context_ptr */
	struct spdy_buf in;  /* SPDY bytes received, not yet parsed */
	struct spdy_buf out; /* raw bytes not yet written (SPDY transport) */
	struct spdy_buf pre; /* WebSocket bytes that came with the HTTP request, read before the socket */
	bool peer_closed;    /* EOF, reset, or WebSocket close from the client */
	bool failed;         /* fatal transport error */
	/* WebSocket messages (TRANSPORT_WEBSOCKET), delivered whole */
	void (*on_message)(void *arg, const uint8_t *data, size_t len);
	void *on_message_arg;
};

int conn_init(struct stream_conn *c, struct vgpu_streaming *srv, int fd, enum conn_transport t,
	      const char *extra_in, size_t extra_len, struct vgpu_err *err);
void conn_fini(struct stream_conn *c);
/* SPDY transports: queue bytes. WebSocket: queue one binary message. */
int conn_write(struct stream_conn *c, const void *data, size_t len);
/* Bytes queued and not yet written. */
size_t conn_pending(const struct stream_conn *c);
/* Write what the socket takes now. */
int conn_flush(struct stream_conn *c);
bool conn_want_write(const struct stream_conn *c);
/* Read what is there: SPDY bytes go to c->in, WebSocket messages to on_message. */
int conn_read(struct stream_conn *c);
/* WebSocket: bytes that came with the upgrade request wait to be read (poll would not tell). */
bool conn_has_early_data(const struct stream_conn *c);
/* Flush (bounded by timeout_ms), send a WebSocket close, shut down and drain the socket, so the
 * client reads everything before it sees the end. */
void conn_finish(struct stream_conn *c, int timeout_ms);

/* SPDY streams opened by the client. */
struct spdy_stream {
	uint32_t id;
	char *type;       /* streamtype header */
	char *port;       /* port header (port-forward) */
	char *request_id; /* requestid header (port-forward) */
	bool remote_fin, local_fin, reset;
	void *user;
	struct spdy_stream *next;
};

struct spdy_session {
	struct stream_conn *conn;
	struct spdy_zctx z;
	struct spdy_stream *streams;
	uint32_t last_id;
	bool goaway_received;
	/* new stream: return < 0 to refuse it (RST_STREAM REFUSED) */
	int (*on_stream)(void *arg, struct spdy_stream *st);
	/* data (fin: the client half-closed); reset: RST_STREAM from the client */
	void (*on_data)(void *arg, struct spdy_stream *st, const uint8_t *data, size_t len, bool fin);
	void (*on_reset)(void *arg, struct spdy_stream *st);
	void *arg;
};

int spdy_session_init(struct spdy_session *s, struct stream_conn *c, struct vgpu_err *err);
void spdy_session_fini(struct spdy_session *s);
/* Parse and dispatch the frames in conn->in. Protocol errors queue GOAWAY and return -EPROTO. */
int spdy_session_process(struct spdy_session *s, struct vgpu_err *err);
/* Send data on a stream (split into frames); fin half-closes our side. */
int spdy_session_send(struct spdy_session *s, struct spdy_stream *st, const void *data, size_t len, bool fin);
int spdy_session_reset(struct spdy_session *s, struct spdy_stream *st, uint32_t status);
void spdy_session_goaway(struct spdy_session *s, uint32_t status);

/* Sessions: run on their own thread, return when done (the conn is finished by the caller). */
void stream_exec_run(struct vgpu_streaming *srv, struct stream_conn *c, struct stream_request *req,
		     int version);
void stream_portforward_run(struct vgpu_streaming *srv, struct stream_conn *c, struct stream_request *req);

/* remote-command protocol versions (1 = channel.k8s.io ... 5 = v5.channel.k8s.io) */
#define RC_V1 1
#define RC_V4 4
#define RC_V5 5

/* Poll helper: true when stop_fd is readable. */
bool streaming_stopping(struct vgpu_streaming *srv);

#define STREAM_CHUNK (32u << 10)         /* bytes read from a process or socket at once */
#define STREAM_HIGH_WATER (1u << 20)     /* stop reading sources while this much is queued */
#define STREAM_MAX_FRAME (1u << 20)      /* largest SPDY frame accepted from a client */

#endif
