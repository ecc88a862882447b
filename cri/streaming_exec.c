/* Kubernetes remote-command protocol (exec and attach) over SPDY or WebSocket.
 *
 * Channels: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize. Over SPDY each is a client-opened
 * stream named by its "streamType" header (stdin, stdout, stderr, error, resize); over WebSocket
 * each binary message starts with the channel byte, and v5 adds message [255, ch] = "the client
 * closed channel ch" (stdin EOF). The error channel carries, at the end, nothing (v1-v3 success),
 * the error text (v1-v3 failure), or a JSON metav1.Status (v4, v5): Success, or Failure with
 * reason NonZeroExitCode and details.causes [{reason: ExitCode, message: "<code>"}]. Resize
 * carries JSON objects {"Width": w, "Height": h}. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "streaming_internal.h"
#include "util.h"

enum rc_channel { CH_STDIN = 0, CH_STDOUT = 1, CH_STDERR = 2, CH_ERROR = 3, CH_RESIZE = 4, CH_N = 5 };
#define WS_CLOSE_SIGNAL 255
#define DRAIN_AFTER_EXIT_MS 2000
#define MAX_RESIZE_BUF 4096

static const char *const channel_names[CH_N] = { "stdin", "stdout", "stderr", "error", "resize" };

struct exec_session {
	struct vgpu_streaming *srv;
	struct stream_conn *c;
	const struct stream_request *req;
	const char *id; /* container id, for messages */
	int version;
	bool spdy;
	struct spdy_session sp;
	struct spdy_stream *ch[CH_N];
	bool want[CH_N];
	struct vgpu_stream_proc proc;
	bool started;
	struct spdy_buf stdin_buf;
	bool stdin_eof;
	struct spdy_buf resize_buf;
	bool exited;
	bool protocol_error;
};

static int exec_send(struct exec_session *es, enum rc_channel ch, const void *data, size_t len, bool fin)
{
	if (es->spdy) {
		if (!es->ch[ch])
			return 0;
		return spdy_session_send(&es->sp, es->ch[ch], data, len, fin);
	}
	if (len == 0)
		return 0;
	uint8_t *msg = malloc(len + 1);
	if (!msg)
		return -ENOMEM;
	msg[0] = (uint8_t)ch;
	memcpy(msg + 1, data, len);
	int r = conn_write(es->c, msg, len + 1);
	free(msg);
	return r;
}

static void apply_resize(struct exec_session *es)
{
	if (!es->started)
		return; /* kept until the process exists */
	/* the objects are flat: each ends at its '}' */
	while (es->resize_buf.len > 0) {
		uint8_t *end = memchr(es->resize_buf.data, '}', es->resize_buf.len);
		if (!end)
			break;
		size_t n = (size_t)(end - es->resize_buf.data) + 1;
		char *text = strndup((const char *)es->resize_buf.data, n);
		json_object *o = text ? json_tokener_parse(text) : NULL;
		free(text);
		spdy_buf_consume(&es->resize_buf, n);
		json_object *w, *h;
		if (!o || !json_object_object_get_ex(o, "Width", &w) || !json_object_object_get_ex(o, "Height", &h)) {
			vgpu_log(VGPU_LOG_WARN, "streaming: container %s: ignoring malformed resize message", es->id);
		} else if (es->req->exec.tty && es->srv->backend.resize) {
			int64_t wv = json_object_get_int64(w), hv = json_object_get_int64(h);
			struct vgpu_err err = { 0 };
			if (wv > 0 && wv <= UINT16_MAX && hv > 0 && hv <= UINT16_MAX &&
			    es->srv->backend.resize(es->srv->backend.ctx, &es->proc, (uint16_t)wv, (uint16_t)hv, &err) < 0)
				vgpu_log(VGPU_LOG_WARN, "streaming: container %s: resize: %s", es->id, err.msg);
		}
		json_object_put(o);
	}
	if (es->resize_buf.len > MAX_RESIZE_BUF)
		es->resize_buf.len = 0;
}

static void on_channel_data(struct exec_session *es, enum rc_channel ch, const uint8_t *data, size_t len, bool fin)
{
	if (ch == CH_STDIN) {
		if (!es->stdin_eof && len && spdy_buf_append(&es->stdin_buf, data, len) < 0)
			es->protocol_error = true;
		if (fin)
			es->stdin_eof = true;
	} else if (ch == CH_RESIZE) {
		if (es->resize_buf.len + len > MAX_RESIZE_BUF)
			es->resize_buf.len = 0; /* garbage without '}': drop it */
		if (len && spdy_buf_append(&es->resize_buf, data, len) < 0)
			es->protocol_error = true;
		apply_resize(es);
	}
	/* data on stdout/stderr/error from the client: ignored, as kubelet does */
}

/* ---- SPDY callbacks ---- */

static int spdy_on_stream(void *arg, struct spdy_stream *st)
{
	struct exec_session *es = arg;
	for (int i = 0; i < CH_N; i++) {
		if (!st->type || strcmp(st->type, channel_names[i]) != 0)
			continue;
		if (es->ch[i]) {
			vgpu_log(VGPU_LOG_WARN, "streaming: container %s: duplicate %s stream", es->id, st->type);
			return -EEXIST;
		}
		es->ch[i] = st;
		st->user = (void *)(intptr_t)i;
		return 0;
	}
	vgpu_log(VGPU_LOG_WARN, "streaming: container %s: unknown stream type %s", es->id,
		 st->type ? st->type : "(none)");
	return -EINVAL;
}

static void spdy_on_data(void *arg, struct spdy_stream *st, const uint8_t *data, size_t len, bool fin)
{
	struct exec_session *es = arg;
	for (int i = 0; i < CH_N; i++)
		if (es->ch[i] == st)
			on_channel_data(es, (enum rc_channel)i, data, len, fin);
}

static void spdy_on_reset(void *arg, struct spdy_stream *st)
{
	struct exec_session *es = arg;
	if (es->ch[CH_STDIN] == st)
		es->stdin_eof = true;
}

/* ---- WebSocket messages ---- */

static void ws_on_message(void *arg, const uint8_t *data, size_t len)
{
	struct exec_session *es = arg;
	if (len == 0)
		return;
	if (data[0] == WS_CLOSE_SIGNAL && es->version >= RC_V5) {
		if (len >= 2 && data[1] == CH_STDIN)
			es->stdin_eof = true;
		return;
	}
	if (data[0] >= CH_N) {
		vgpu_log(VGPU_LOG_WARN, "streaming: container %s: message for unknown channel %u", es->id, data[0]);
		return;
	}
	on_channel_data(es, (enum rc_channel)data[0], data + 1, len - 1, false);
}

/* ---- the session ---- */

static bool streams_ready(const struct exec_session *es)
{
	for (int i = 0; i < CH_N; i++)
		if (es->want[i] && !es->ch[i])
			return false;
	return true;
}

static char *status_json(int exit_code, const char *failure)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "metadata", json_object_new_object());
	if (!failure && exit_code == 0) {
		json_object_object_add(o, "status", json_object_new_string("Success"));
	} else {
		json_object_object_add(o, "status", json_object_new_string("Failure"));
		if (failure) {
			json_object_object_add(o, "message", json_object_new_string(failure));
			json_object_object_add(o, "reason", json_object_new_string("InternalError"));
		} else {
			char msg[128], code[16];
			snprintf(msg, sizeof(msg), "command terminated with non-zero exit code: exit status %d", exit_code);
			snprintf(code, sizeof(code), "%d", exit_code);
			json_object_object_add(o, "message", json_object_new_string(msg));
			json_object_object_add(o, "reason", json_object_new_string("NonZeroExitCode"));
			json_object *cause = json_object_new_object();
			json_object_object_add(cause, "reason", json_object_new_string("ExitCode"));
			json_object_object_add(cause, "message", json_object_new_string(code));
			json_object *causes = json_object_new_array();
			json_object_array_add(causes, cause);
			json_object *details = json_object_new_object();
			json_object_object_add(details, "causes", causes);
			json_object_object_add(o, "details", details);
		}
	}
	char *s = vgpu_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

/* Report the outcome on the error channel and half-close every stream. */
static void send_outcome(struct exec_session *es, int exit_code, const char *failure)
{
	_cleanup_free_ char *msg = NULL;
	if (es->version >= RC_V4)
		msg = status_json(exit_code, failure);
	else if (failure)
		msg = vgpu_strdup(failure);
	else if (exit_code != 0)
		msg = vgpu_asprintf("command terminated with non-zero exit code: exit status %d", exit_code);
	if (es->spdy) {
		exec_send(es, CH_STDOUT, NULL, 0, true);
		exec_send(es, CH_STDERR, NULL, 0, true);
		exec_send(es, CH_ERROR, msg ? msg : "", msg ? strlen(msg) : 0, true);
		exec_send(es, CH_STDIN, NULL, 0, true);
		exec_send(es, CH_RESIZE, NULL, 0, true);
	} else if (msg) {
		exec_send(es, CH_ERROR, msg, strlen(msg), false);
	}
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void close_proc_fds(struct vgpu_stream_proc *p)
{
	if (p->stdin_fd == p->stdout_fd)
		p->stdin_fd = -1;
	close_fd(&p->stdin_fd);
	close_fd(&p->stdout_fd);
	close_fd(&p->stderr_fd);
	close_fd(&p->exit_fd);
}

/* Read one chunk of fd into channel ch; returns false at EOF (EIO on a tty master is EOF). */
static bool pump_output(struct exec_session *es, int *fd, enum rc_channel ch)
{
	uint8_t buf[STREAM_CHUNK];
	ssize_t n = read(*fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return true;
	if (n <= 0) {
		if (es->proc.stdin_fd == *fd) /* tty: one descriptor for both ways */
			es->proc.stdin_fd = -1;
		close_fd(fd);
		exec_send(es, ch, NULL, 0, true);
		return false;
	}
	if (exec_send(es, ch, buf, (size_t)n, false) < 0)
		es->protocol_error = true;
	return true;
}

static void pump_stdin(struct exec_session *es)
{
	if (es->proc.stdin_fd < 0)
		es->stdin_buf.len = 0; /* nowhere to go (not requested, or the process closed it) */
	while (es->stdin_buf.len > 0 && es->proc.stdin_fd >= 0) {
		ssize_t n = write(es->proc.stdin_fd, es->stdin_buf.data, es->stdin_buf.len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) { /* the process closed its stdin */
			es->stdin_buf.len = 0;
			break;
		}
		spdy_buf_consume(&es->stdin_buf, (size_t)n);
	}
	if (es->stdin_eof && es->stdin_buf.len == 0 && es->proc.stdin_fd >= 0 && es->proc.stdin_fd != es->proc.stdout_fd)
		close_fd(&es->proc.stdin_fd);
	/* a tty's stdin is the master: EOF is ^D typed by the user, nothing to close */
}

static int start_process(struct exec_session *es, char **failure)
{
	struct vgpu_err err = { 0 };
	const struct vgpu_stream_backend *b = &es->srv->backend;
	bool attach = es->req->kind == STREAM_ATTACH;
	int (*start)(void *, const struct vgpu_stream_exec_req *, struct vgpu_stream_proc *, struct vgpu_err *) =
		attach ? b->attach_start : b->exec_start;
	es->proc = (struct vgpu_stream_proc){ .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .exit_fd = -1 };
	if (!start) {
		*failure = vgpu_asprintf("%s is not supported by this runtime", attach ? "attach" : "exec");
		return -ENOSYS;
	}
	int r = start(b->ctx, &es->req->exec, &es->proc, &err);
	if (r < 0) {
		*failure = vgpu_asprintf("%s", err.msg);
		return r;
	}
	es->started = true;
	int fds[] = { es->proc.stdin_fd, es->proc.stdout_fd, es->proc.stderr_fd };
	for (size_t i = 0; i < 3; i++)
		if (fds[i] >= 0)
			fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
	vgpu_log(VGPU_LOG_INFO, "streaming: container %s: %s started (tty=%d)", es->id, attach ? "attach" : "exec",
		 es->req->exec.tty);
	return 0;
}

enum loop_end { END_DONE, END_CLIENT_GONE, END_STOPPED, END_TIMEOUT };

/* Fill the poll set for one round of exec_loop; returns the poll timeout (ms, -1 = none). */
static int exec_poll_setup(struct exec_session *es, struct pollfd p[6], long long deadline)
{
	bool backlog = conn_pending(es->c) > STREAM_HIGH_WATER;
	bool started = es->started;
	struct vgpu_stream_proc *pr = &es->proc;
	p[0] = (struct pollfd){ .fd = es->c->fd,
				.events = (short)((es->stdin_buf.len > STREAM_HIGH_WATER ? 0 : POLLIN) |
						  (conn_want_write(es->c) ? POLLOUT : 0)) };
	p[1] = (struct pollfd){ .fd = es->srv->stop_fd, .events = POLLIN };
	p[2] = (struct pollfd){ .fd = started && !backlog ? pr->stdout_fd : -1, .events = POLLIN };
	p[3] = (struct pollfd){ .fd = started && !backlog ? pr->stderr_fd : -1, .events = POLLIN };
	p[4] = (struct pollfd){ .fd = started && es->stdin_buf.len && pr->stdin_fd != pr->stdout_fd ? pr->stdin_fd : -1,
				.events = POLLOUT };
	p[5] = (struct pollfd){ .fd = started && !es->exited ? pr->exit_fd : -1, .events = POLLIN };
	int timeout = -1;
	if (deadline) {
		long long left = (deadline - vgpu_now_ns()) / 1000000LL;
		timeout = left < 0 ? 0 : (int)left + 1;
	}
	/* a tty's stdin shares the master, which is always writable in poll's eyes: retry soon */
	if (started && es->stdin_buf.len && pr->stdin_fd >= 0 && pr->stdin_fd == pr->stdout_fd)
		timeout = timeout < 0 || timeout > 10 ? 10 : timeout;
	return timeout;
}

/* Before the process starts: until the client's streams are there (END_DONE). After: until the
 * process exited and its outputs are drained (END_DONE). Or the client, or the server, stops. */
static enum loop_end exec_loop(struct exec_session *es)
{
	long long create_deadline = vgpu_now_ns() + es->srv->create_timeout_ms * 1000000LL;
	long long drain_deadline = 0;
	for (;;) {
		if (es->protocol_error)
			return END_CLIENT_GONE;
		if (!es->started && streams_ready(es))
			return END_DONE; /* the caller starts the process and calls again */
		if (es->started) {
			pump_stdin(es);
			bool outputs_open = es->proc.stdout_fd >= 0 || es->proc.stderr_fd >= 0;
			if ((es->exited || es->proc.exit_fd < 0) && !outputs_open)
				return END_DONE;
			if (drain_deadline && vgpu_now_ns() > drain_deadline)
				return END_DONE;
		}
		if (conn_flush(es->c) < 0)
			return END_CLIENT_GONE;
		struct pollfd p[6];
		int timeout = exec_poll_setup(es, p, es->started ? drain_deadline : create_deadline);
		int n = poll(p, 6, timeout);
		if (n < 0 && errno != EINTR)
			return END_CLIENT_GONE;
		if (n == 0 && !es->started)
			return END_TIMEOUT;
		if (n <= 0)
			continue;
		if (p[1].revents)
			return END_STOPPED;
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			struct vgpu_err err = { 0 };
			if (conn_read(es->c) < 0 || (es->spdy && spdy_session_process(&es->sp, &err) < 0) ||
			    es->c->peer_closed)
				return END_CLIENT_GONE;
		}
		if (p[2].revents)
			pump_output(es, &es->proc.stdout_fd, CH_STDOUT);
		if (p[3].revents)
			pump_output(es, &es->proc.stderr_fd, CH_STDERR);
		if (p[5].revents) {
			es->exited = true;
			drain_deadline = vgpu_now_ns() + DRAIN_AFTER_EXIT_MS * 1000000LL;
		}
	}
}

void stream_exec_run(struct vgpu_streaming *srv, struct stream_conn *c, struct stream_request *req, int version)
{
	struct exec_session es = { .srv = srv, .c = c, .req = req, .version = version, .id = req->exec.container_id };
	struct vgpu_err err = { 0 };
	_cleanup_free_ char *failure = NULL;
	sigset_t pipe_set;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_set, NULL); /* writes to a closed stdin pipe: EPIPE, no signal */
	es.spdy = c->transport == TRANSPORT_SPDY;
	if (es.spdy) {
		if (spdy_session_init(&es.sp, c, &err) < 0) {
			vgpu_log(VGPU_LOG_ERROR, "streaming: container %s: %s", es.id, err.msg);
			return;
		}
		es.sp.on_stream = spdy_on_stream;
		es.sp.on_data = spdy_on_data;
		es.sp.on_reset = spdy_on_reset;
		es.sp.arg = &es;
		es.want[CH_ERROR] = true;
		es.want[CH_STDIN] = req->exec.want_stdin;
		es.want[CH_STDOUT] = req->exec.want_stdout;
		es.want[CH_STDERR] = req->exec.want_stderr;
		es.want[CH_RESIZE] = req->exec.tty && version >= 3;
		/* frames that came with the upgrade request */
		if (c->in.len && spdy_session_process(&es.sp, &err) < 0)
			goto out;
	} else {
		c->on_message = ws_on_message;
		/* cleared before es goes out of scope (see out:) */
		c->on_message_arg = &es; // cppcheck-suppress autoVariables
		if (conn_has_early_data(c) && conn_read(c) < 0)
			goto out;
	}
	enum loop_end end = exec_loop(&es);
	if (end == END_TIMEOUT) {
		vgpu_log(VGPU_LOG_WARN, "streaming: container %s: timed out waiting for the client's streams", es.id);
		send_outcome(&es, 0, "timed out waiting for client to create streams");
		goto out;
	}
	if (end != END_DONE)
		goto out;
	if (start_process(&es, &failure) < 0) {
		vgpu_log(VGPU_LOG_WARN, "streaming: container %s: %s", es.id, failure);
		send_outcome(&es, 0, failure);
		goto out;
	}
	apply_resize(&es);
	end = exec_loop(&es);
	if (end == END_CLIENT_GONE && es.req->kind == STREAM_ATTACH)
		pump_stdin(&es); /* what a client sent just before it went away still reaches the container */
	bool kill = end != END_DONE && es.req->kind == STREAM_EXEC;
	int exit_code = 0;
	if (srv->backend.finish && srv->backend.finish(srv->backend.ctx, &es.proc, kill, &exit_code, &err) < 0) {
		vgpu_log(VGPU_LOG_WARN, "streaming: container %s: %s", es.id, err.msg);
		if (end == END_DONE)
			send_outcome(&es, 0, err.msg);
	} else if (end == END_DONE) {
		/* what the process wrote before it exited is already queued ahead of this */
		send_outcome(&es, es.req->kind == STREAM_EXEC ? exit_code : 0, NULL);
	}
	vgpu_log(VGPU_LOG_INFO, "streaming: container %s: %s ended (%s, exit code %d)", es.id,
		 es.req->kind == STREAM_EXEC ? "exec" : "attach",
		 end == END_DONE ? "done" : end == END_STOPPED ? "server stopping" : "client gone", exit_code);
	close_proc_fds(&es.proc);
out:
	if (es.spdy)
		spdy_session_fini(&es.sp);
	spdy_buf_free(&es.stdin_buf);
	spdy_buf_free(&es.resize_buf);
	c->on_message = NULL;
	c->on_message_arg = NULL;
}
