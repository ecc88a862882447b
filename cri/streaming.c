/* The streaming server: listening socket and HTTP (libmicrohttpd), the one-time token cache, the
 * protocol negotiation of the upgrade request, and one thread per upgraded connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "streaming_internal.h"
#include "util.h"

#define TOKEN_BYTES 16
#define TOKEN_LEN (TOKEN_BYTES * 2)

struct stream_token {
	char id[TOKEN_LEN + 1];
	long long expires_ns;
	struct stream_request *req; /* NULL once used (kept until expiry to say "already used") */
	struct stream_token *next;
};

struct stream_session {
	pthread_t thread;
	struct vgpu_streaming *srv;
	struct stream_conn conn;
	struct MHD_UpgradeResponseHandle *urh;
	struct stream_request *req;
	int version;
	struct stream_session *next;
};

/* State of one HTTP request between the access handler and the upgrade handler; freed by the
 * request-completed callback. */
struct pending_upgrade {
	struct stream_request *req;
	enum conn_transport transport;
	int version;
};

void stream_request_free(struct stream_request *r)
{
	if (!r)
		return;
	free(r->exec.container_id);
	vgpu_strv_free(r->exec.cmd);
	free(r->sandbox_id);
	free(r);
}

bool streaming_stopping(struct vgpu_streaming *srv)
{
	pthread_mutex_lock(&srv->lock);
	bool s = srv->stopping;
	pthread_mutex_unlock(&srv->lock);
	return s;
}

/* ---- token cache ---- */

static void tokens_expire_locked(struct vgpu_streaming *s, long long now)
{
	struct stream_token **pp = &s->tokens;
	while (*pp) {
		struct stream_token *t = *pp;
		if (t->expires_ns <= now) {
			*pp = t->next;
			stream_request_free(t->req);
			free(t);
			s->n_tokens--;
		} else {
			pp = &t->next;
		}
	}
}

static int token_mint(struct vgpu_streaming *s, struct stream_request *req, char **url, struct vgpu_err *err)
{
	static const char *paths[] = { "exec", "attach", "portforward" };
	uint8_t rnd[TOKEN_BYTES];
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		stream_request_free(req);
		return vgpu_err_errno(err, errno, "streaming: getrandom");
	}
	struct stream_token *t = vgpu_calloc(1, sizeof(*t));
	for (size_t i = 0; i < TOKEN_BYTES; i++)
		snprintf(t->id + 2 * i, 3, "%02x", rnd[i]);
	t->req = req;
	long long now = vgpu_now_ns();
	t->expires_ns = now + s->token_ttl_ns;
	pthread_mutex_lock(&s->lock);
	tokens_expire_locked(s, now);
	if (s->n_tokens >= s->max_tokens) {
		pthread_mutex_unlock(&s->lock);
		stream_request_free(req);
		free(t);
		return vgpu_err_set(err, -ENOSPC, "streaming: too many outstanding tokens (%zu)", s->max_tokens);
	}
	t->next = s->tokens;
	s->tokens = t;
	s->n_tokens++;
	pthread_mutex_unlock(&s->lock);
	*url = vgpu_asprintf("%s/%s/%s", s->base_url, paths[req->kind], t->id);
	return 0;
}

/* Take the request of a token (one time). Returns NULL with a message for the client. */
static struct stream_request *token_take(struct vgpu_streaming *s, const char *id, enum stream_kind kind,
					 const char **why)
{
	struct stream_request *req = NULL;
	long long now = vgpu_now_ns();
	pthread_mutex_lock(&s->lock);
	*why = "unknown or expired streaming token";
	for (struct stream_token *t = s->tokens; t; t = t->next) {
		if (strcmp(t->id, id) != 0)
			continue;
		if (t->expires_ns <= now)
			*why = "streaming token expired";
		else if (!t->req)
			*why = "streaming token already used";
		else if (t->req->kind != kind)
			*why = "streaming token is for another operation";
		else
			req = steal_pointer(&t->req);
		break;
	}
	tokens_expire_locked(s, now);
	pthread_mutex_unlock(&s->lock);
	return req;
}

/* ---- request validation and minting ---- */

static char **strv_dup(char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	char **out = vgpu_calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		out[i] = vgpu_strdup(v[i]);
	return out;
}

int vgpu_streaming_mint_exec(struct vgpu_streaming *s, const struct vgpu_stream_exec_req *in, bool attach,
			     char **url, struct vgpu_err *err)
{
	const char *op = attach ? "attach" : "exec";
	if (!in->container_id || !in->container_id[0])
		return vgpu_err_set(err, -EINVAL, "%s: missing required container_id", op);
	if (!attach && (!in->cmd || !in->cmd[0]))
		return vgpu_err_set(err, -EINVAL, "%s %.80s: missing command", op, in->container_id);
	if (in->tty && in->want_stderr)
		return vgpu_err_set(err, -EINVAL, "%s %.80s: tty and stderr cannot both be true", op,
				    in->container_id);
	if (!in->want_stdin && !in->want_stdout && !in->want_stderr)
		return vgpu_err_set(err, -EINVAL, "%s %.80s: one of stdin, stdout, or stderr must be set", op,
				    in->container_id);
	if (!(attach ? s->backend.attach_start : s->backend.exec_start) || !s->backend.finish)
		return vgpu_err_set(err, -ENOSYS, "%s %.80s: not supported by this runtime yet", op, in->container_id);
	if (s->backend.check) {
		int r = s->backend.check(s->backend.ctx, op, in->container_id, err);
		if (r < 0)
			return r;
	}
	if (attach && s->backend.attach_check) {
		int r = s->backend.attach_check(s->backend.ctx, in, err);
		if (r < 0)
			return r;
	}
	struct stream_request *req = vgpu_calloc(1, sizeof(*req));
	req->kind = attach ? STREAM_ATTACH : STREAM_EXEC;
	req->exec = *in;
	req->exec.container_id = vgpu_strdup(in->container_id);
	req->exec.cmd = attach ? NULL : strv_dup(in->cmd);
	return token_mint(s, req, url, err);
}

int vgpu_streaming_mint_port_forward(struct vgpu_streaming *s, const char *sandbox_id, char **url,
				     struct vgpu_err *err)
{
	if (!sandbox_id || !sandbox_id[0])
		return vgpu_err_set(err, -EINVAL, "portforward: missing required pod_sandbox_id");
	if (!s->backend.port_forward)
		return vgpu_err_set(err, -ENOSYS, "portforward %.80s: not supported by this runtime yet", sandbox_id);
	if (s->backend.check) {
		int r = s->backend.check(s->backend.ctx, "portforward", sandbox_id, err);
		if (r < 0)
			return r;
	}
	struct stream_request *req = vgpu_calloc(1, sizeof(*req));
	req->kind = STREAM_PORTFORWARD;
	req->sandbox_id = vgpu_strdup(sandbox_id);
	return token_mint(s, req, url, err);
}

/* ---- sessions ---- */

static void *session_main(void *arg)
{
	struct stream_session *ss = arg;
	struct vgpu_streaming *srv = ss->srv;
	if (ss->req->kind == STREAM_PORTFORWARD)
		stream_portforward_run(srv, &ss->conn, ss->req);
	else
		stream_exec_run(srv, &ss->conn, ss->req, ss->version);
	conn_finish(&ss->conn, streaming_stopping(srv) ? 200 : 30000);
	conn_fini(&ss->conn);
	if (MHD_upgrade_action(ss->urh, MHD_UPGRADE_ACTION_CLOSE) != MHD_YES)
		vgpu_log(VGPU_LOG_WARN, "streaming: closing upgraded connection failed");
	stream_request_free(ss->req);
	ss->req = NULL;
	pthread_mutex_lock(&srv->lock);
	for (struct stream_session **pp = &srv->sessions; *pp; pp = &(*pp)->next) {
		if (*pp == ss) {
			*pp = ss->next;
			break;
		}
	}
	srv->n_sessions--;
	pthread_cond_broadcast(&srv->sessions_cond);
	pthread_mutex_unlock(&srv->lock);
	free(ss);
	return NULL;
}

static void upgrade_handler(void *cls, struct MHD_Connection *connection, void *req_cls, const char *extra_in,
			    size_t extra_in_size, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	struct vgpu_streaming *srv = cls;
	struct pending_upgrade *pu = req_cls;
	struct vgpu_err err = { 0 };
	struct stream_session *ss = vgpu_calloc(1, sizeof(*ss));
	ss->srv = srv;
	ss->urh = urh;
	ss->version = pu->version;
	if (conn_init(&ss->conn, srv, sock, pu->transport, extra_in, extra_in_size, &err) < 0) {
		vgpu_log(VGPU_LOG_ERROR, "streaming: %s", err.msg);
		goto fail;
	}
	ss->req = steal_pointer(&pu->req);
	pthread_mutex_lock(&srv->lock);
	if (srv->stopping) {
		pthread_mutex_unlock(&srv->lock);
		goto fail_conn;
	}
	/* detached: session_main unlinks itself; stop waits on sessions_cond */
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int r = pthread_create(&ss->thread, &attr, session_main, ss);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		pthread_mutex_unlock(&srv->lock);
		vgpu_log(VGPU_LOG_ERROR, "streaming: cannot start session thread: %s", strerror(r));
		goto fail_conn;
	}
	ss->next = srv->sessions;
	srv->sessions = ss;
	srv->n_sessions++;
	pthread_mutex_unlock(&srv->lock);
	return;
fail_conn:
	conn_fini(&ss->conn);
fail:
	stream_request_free(ss->req);
	free(ss);
	MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

/* ---- HTTP ---- */

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned int code, const char *msg,
				  const char *extra_header, const char *extra_value)
{
	char *body = vgpu_asprintf("%s\n", msg);
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close"); /* one request per token */
	if (extra_header)
		MHD_add_response_header(resp, extra_header, extra_value);
	enum MHD_Result r = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	return r;
}

struct proto_pick {
	const char *header;        /* the header holding the client's protocols */
	const char *const *server; /* in server preference order */
	int best;                  /* index into server, -1 none */
	bool any;                  /* client offered something */
	char offered[512];
};

/* Every value of the protocol header (repeated and/or comma-separated): pick the first one the
 * client offers that the server supports, as k8s.io/apimachinery's httpstream.Handshake does. */
static enum MHD_Result pick_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct proto_pick *p = cls;
	(void)kind;
	if (!value || !key || strcasecmp(key, p->header) != 0)
		return MHD_YES;
	char *dup = vgpu_strdup(value), *save = NULL;
	for (char *tok = strtok_r(dup, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		p->any = true;
		size_t used = strlen(p->offered);
		snprintf(p->offered + used, sizeof(p->offered) - used, "%s%s", used ? "," : "", tok);
		if (p->best >= 0)
			continue;
		for (int i = 0; p->server[i]; i++)
			if (strcmp(p->server[i], tok) == 0) {
				p->best = i;
				break;
			}
	}
	free(dup);
	return MHD_YES;
}

static const char *const rc_spdy_protocols[] = { "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
						 "channel.k8s.io", NULL };
static const int rc_spdy_versions[] = { 4, 3, 2, 1 };
static const char *const rc_ws_protocols[] = { "v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io", NULL };
static const int rc_ws_versions[] = { 5, 4, 1 };
static const char *const pf_spdy_protocols[] = { "portforward.k8s.io", NULL };
static const char *const pf_ws_protocols[] = { "SPDY/3.1+portforward.k8s.io", NULL };

static bool header_has_token(struct MHD_Connection *conn, const char *name, const char *token)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
	if (!v)
		return false;
	char *dup = vgpu_strdup(v), *save = NULL;
	bool found = false;
	for (char *tok = strtok_r(dup, ", \t", &save); tok && !found; tok = strtok_r(NULL, ", \t", &save))
		found = strcasecmp(tok, token) == 0;
	free(dup);
	return found;
}

static char *ws_accept_key(const char *key)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	char *cat = vgpu_asprintf("%s%s", key, guid);
	unsigned char digest[SHA_DIGEST_LENGTH];
	SHA1((const unsigned char *)cat, strlen(cat), digest);
	free(cat);
	char *out = vgpu_calloc(1, 4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
	return out;
}

static enum MHD_Result handle_upgrade(struct vgpu_streaming *srv, struct MHD_Connection *conn,
				      struct pending_upgrade *pu)
{
	bool pf = pu->req->kind == STREAM_PORTFORWARD;
	bool ws = header_has_token(conn, MHD_HTTP_HEADER_UPGRADE, "websocket");
	bool spdy = header_has_token(conn, MHD_HTTP_HEADER_UPGRADE, "SPDY/3.1");
	if ((!ws && !spdy) || !header_has_token(conn, MHD_HTTP_HEADER_CONNECTION, "upgrade"))
		return reply_text(conn, MHD_HTTP_BAD_REQUEST,
				  "unable to upgrade: missing upgrade headers in request (want SPDY/3.1 or websocket)",
				  NULL, NULL);
	struct proto_pick pick = { .best = -1 };
	pick.header = ws ? "Sec-WebSocket-Protocol" : "X-Stream-Protocol-Version";
	pick.server = ws ? (pf ? pf_ws_protocols : rc_ws_protocols) : (pf ? pf_spdy_protocols : rc_spdy_protocols);
	MHD_get_connection_values(conn, MHD_HEADER_KIND, pick_iter, &pick);
	const char *chosen = NULL;
	if (pick.best >= 0) {
		chosen = pick.server[pick.best];
		pu->version = pf ? 0 : (ws ? rc_ws_versions : rc_spdy_versions)[pick.best];
	} else if (!pick.any && !ws && !pf) {
		pu->version = RC_V1; /* no header: the original protocol, as kubelet */
	} else if (!pick.any && !ws && pf) {
		pu->version = 0;
	} else {
		char msg[1024];
		snprintf(msg, sizeof(msg), "unable to upgrade: unable to negotiate protocol: client supports [%s]",
			 pick.offered);
		return reply_text(conn, MHD_HTTP_FORBIDDEN, msg, "X-Accepted-Stream-Protocol-Versions",
				  pick.server[0]);
	}
	_cleanup_free_ char *accept = NULL;
	if (ws) {
		const char *key = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Key");
		const char *ver = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-WebSocket-Version");
		if (!key || !ver || strcmp(ver, "13") != 0)
			return reply_text(conn, MHD_HTTP_BAD_REQUEST,
					  "unable to upgrade: websocket needs Sec-WebSocket-Key and version 13", NULL, NULL);
		accept = ws_accept_key(key);
		pu->transport = pf ? TRANSPORT_WS_TUNNEL : TRANSPORT_WEBSOCKET;
	} else {
		pu->transport = TRANSPORT_SPDY;
	}
	struct MHD_Response *resp = MHD_create_response_for_upgrade(upgrade_handler, srv);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_UPGRADE, ws ? "websocket" : "SPDY/3.1");
	/* "Connection: Upgrade" is added by libmicrohttpd itself */
	if (ws) {
		MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
		if (chosen)
			MHD_add_response_header(resp, "Sec-WebSocket-Protocol", chosen);
	} else if (chosen) {
		MHD_add_response_header(resp, "X-Stream-Protocol-Version", chosen);
	}
	enum MHD_Result r = MHD_queue_response(conn, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				      const char *version, const char *upload_data, size_t *upload_data_size,
				      void **req_cls)
{
	struct vgpu_streaming *srv = cls;
	(void)version;
	(void)upload_data;
	if (!*req_cls) {
		*req_cls = vgpu_calloc(1, sizeof(struct pending_upgrade));
		return MHD_YES;
	}
	struct pending_upgrade *pu = *req_cls;
	if (*upload_data_size) {
		*upload_data_size = 0; /* no body expected: ignore it */
		return MHD_YES;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed", NULL, NULL);
	static const struct {
		const char *prefix;
		enum stream_kind kind;
	} routes[] = { { "/exec/", STREAM_EXEC }, { "/attach/", STREAM_ATTACH }, { "/portforward/", STREAM_PORTFORWARD } };
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		size_t n = strlen(routes[i].prefix);
		if (strncmp(url, routes[i].prefix, n) != 0)
			continue;
		const char *why = NULL;
		pu->req = token_take(srv, url + n, routes[i].kind, &why);
		if (!pu->req) {
			vgpu_log(VGPU_LOG_INFO, "streaming: %s %s: %s", method, url, why);
			return reply_text(conn, MHD_HTTP_NOT_FOUND, why, NULL, NULL);
		}
		return handle_upgrade(srv, conn, pu);
	}
	return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found", NULL, NULL);
}

static void request_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			      enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)conn;
	(void)toe;
	struct pending_upgrade *pu = *req_cls;
	if (!pu)
		return;
	stream_request_free(pu->req);
	free(pu);
	*req_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	vgpu_log(VGPU_LOG_DEBUG, "streaming http: %s", msg);
}

/* ---- start / stop ---- */

static int listen_on(const char *address, int *fd_out, char **base_url, struct vgpu_err *err)
{
	_cleanup_free_ char *host = NULL;
	const char *port;
	if (address[0] == '[') {
		const char *end = strchr(address, ']');
		if (!end || end[1] != ':')
			return vgpu_err_set(err, -EINVAL, "streaming_address %s: want [V6]:PORT", address);
		host = strndup(address + 1, (size_t)(end - address - 1));
		port = end + 2;
	} else {
		const char *colon = strrchr(address, ':');
		if (!colon)
			return vgpu_err_set(err, -EINVAL, "streaming_address %s: want HOST:PORT", address);
		host = strndup(address, (size_t)(colon - address));
		port = colon + 1;
	}
	if (!host)
		return vgpu_err_set(err, -ENOMEM, "out of memory");
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	int gr = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
	if (gr != 0)
		return vgpu_err_set(err, -EINVAL, "streaming_address %s: %s", address, gai_strerror(gr));
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		return vgpu_err_errno(err, errno, "streaming: socket");
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		int e = errno;
		freeaddrinfo(ai);
		close(fd);
		return vgpu_err_errno(err, e, "streaming: listen on %s", address);
	}
	freeaddrinfo(ai);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "";
	unsigned int bound_port = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof(ip));
			bound_port = ntohs(a6->sin6_port);
		} else {
			struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof(ip));
			bound_port = ntohs(a4->sin_port);
		}
	}
	bool v6 = ss.ss_family == AF_INET6;
	if (strcmp(ip, "0.0.0.0") == 0 || strcmp(ip, "::") == 0) {
		/* a wildcard address is no URL a client can use: advertise loopback */
		vgpu_log(VGPU_LOG_WARN, "streaming: listening on all addresses; URLs name loopback");
		snprintf(ip, sizeof(ip), "%s", v6 ? "::1" : "127.0.0.1");
	}
	*base_url = v6 ? vgpu_asprintf("http://[%s]:%u", ip, bound_port) : vgpu_asprintf("http://%s:%u", ip, bound_port);
	*fd_out = fd;
	return 0;
}

int vgpu_streaming_start(const struct vgpu_streaming_opts *opts, const struct vgpu_stream_backend *backend,
			 struct vgpu_streaming **out, struct vgpu_err *err)
{
	if (MHD_is_feature_supported(MHD_FEATURE_UPGRADE) != MHD_YES)
		return vgpu_err_set(err, -ENOSYS, "streaming: libmicrohttpd lacks HTTP upgrade support");
	struct vgpu_streaming *s = vgpu_calloc(1, sizeof(*s));
	s->backend = *backend;
	s->token_ttl_ns = (opts->token_ttl_ms > 0 ? opts->token_ttl_ms : 60000) * 1000000LL;
	s->create_timeout_ms = opts->stream_create_timeout_ms > 0 ? opts->stream_create_timeout_ms : 30000;
	s->max_tokens = opts->max_tokens ? opts->max_tokens : 1000;
	s->listen_fd = -1;
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0) {
		int e = errno;
		free(s);
		return vgpu_err_errno(err, e, "streaming: eventfd");
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->sessions_cond, NULL);
	int r = listen_on(opts->address && opts->address[0] ? opts->address : "127.0.0.1:0", &s->listen_fd,
			  &s->base_url, err);
	if (r < 0)
		goto fail;
	s->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC | MHD_ALLOW_UPGRADE |
					  MHD_USE_ERROR_LOG,
				  0, NULL, NULL, access_handler, s, MHD_OPTION_LISTEN_SOCKET, s->listen_fd,
				  MHD_OPTION_NOTIFY_COMPLETED, request_completed, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
				  s, MHD_OPTION_CONNECTION_TIMEOUT,
				  opts->http_timeout_s ? opts->http_timeout_s : 60u, MHD_OPTION_END);
	if (!s->mhd) {
		r = vgpu_err_set(err, -EIO, "streaming: cannot start the HTTP server on %s", s->base_url);
		goto fail;
	}
	vgpu_log(VGPU_LOG_INFO, "streaming: serving on %s", s->base_url);
	*out = s;
	return 0;
fail:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	close(s->stop_fd);
	free(s->base_url);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->sessions_cond);
	free(s);
	return r;
}

void vgpu_streaming_stop(struct vgpu_streaming *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	uint64_t one = 1;
	if (write(s->stop_fd, &one, sizeof(one)) < 0)
		vgpu_log(VGPU_LOG_WARN, "streaming: stop eventfd: %s", strerror(errno));
	while (s->n_sessions > 0)
		pthread_cond_wait(&s->sessions_cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	MHD_stop_daemon(s->mhd);
	close(s->listen_fd);
	tokens_expire_locked(s, LLONG_MAX);
	close(s->stop_fd);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->sessions_cond);
	free(s->base_url);
	free(s);
}

const char *vgpu_streaming_base_url(const struct vgpu_streaming *s)
{
	return s->base_url;
}

size_t vgpu_streaming_sessions(struct vgpu_streaming *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->n_sessions;
	pthread_mutex_unlock(&s->lock);
	return n;
}
