/* gRPC C core server for the CRI services (see grpc_server.h).
 *
 * Threads: `fast_workers` threads poll the fast completion queue (quick RPCs and unknown methods),
 * `workers` threads poll the slow one (RPCs that may block), so a slow handler never delays
 * Version or Status. A server-streaming RPC gets a thread of its own with a private completion
 * queue for its sends. Every unary call goes through two completions on its queue: the request
 * arriving (we re-arm a request for the same method at once, then run the handler on this thread)
 * and the reply batch finishing (we free the call). */
#include "grpc_server.h"

#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

#include "cri-api.pb-c.h"
#include "daemon.h"
#include "log.h"
#include "rpc.h"
#include "util.h"

#define REQUESTS_PER_METHOD 2
#define MAX_STREAMS 64

struct method {
	const struct vgpu_rpc *rpc;
	const ProtobufCMethodDescriptor *desc;
	char *path; /* "/runtime.v1.RuntimeService/Version" */
	void *tag;  /* from grpc_server_register_method */
};

enum call_phase { PHASE_REQUESTED, PHASE_REPLYING };

struct call {
	struct vgpu_grpc_server *srv;
	struct method *m; /* NULL: unknown method */
	enum call_phase phase;
	grpc_completion_queue *cq;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_call_details details; /* unknown methods only */
	grpc_byte_buffer *payload;
	grpc_byte_buffer *reply;
	grpc_slice status_details;
	grpc_status_code status;
	int cancelled;
	long long start_ns;
};

struct vgpu_grpc_server {
	struct vgpu_daemon *d;
	grpc_server *server;
	grpc_completion_queue *fast_cq;
	grpc_completion_queue *slow_cq;
	struct method *methods;
	size_t n_methods;
	pthread_t *threads;
	size_t n_threads;
	atomic_bool stopping;
	atomic_int open_streams;

	/* shutdown notification: guarded by lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool shutdown_done;
	int streams_running; /* stream threads not yet finished */
	int in_flight;       /* calls that arrived and have not finished */
};

static char shutdown_tag;

static grpc_status_code status_from_errno(int code)
{
	switch (-code) {
	case ENOENT:
		return GRPC_STATUS_NOT_FOUND;
	case EINVAL:
	case ENAMETOOLONG:
	case E2BIG:
		return GRPC_STATUS_INVALID_ARGUMENT;
	case EEXIST:
		return GRPC_STATUS_ALREADY_EXISTS;
	case EBUSY:
	case ESTALE:
	case ENODEV: /* e.g. a GPU pod on a node without a GPU backend */
	case ENOTCONN: /* a xen pod whose domain is not there to talk to */
		return GRPC_STATUS_FAILED_PRECONDITION;
	case ENOSYS:
	case EOPNOTSUPP:
		return GRPC_STATUS_UNIMPLEMENTED;
	case EACCES:
	case EPERM:
		return GRPC_STATUS_PERMISSION_DENIED;
	case ETIMEDOUT:
		return GRPC_STATUS_DEADLINE_EXCEEDED;
	case ENOMEM:
	case ENOSPC:
	case EDQUOT:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case EAGAIN:
	case ECONNREFUSED:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return GRPC_STATUS_UNAVAILABLE;
	case ECANCELED:
		return GRPC_STATUS_CANCELLED;
	default:
		return GRPC_STATUS_INTERNAL;
	}
}

static const char *status_name(grpc_status_code c)
{
	static const char *const names[] = { "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
					     "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
					     "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
					     "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED" };
	return (unsigned)c < sizeof(names) / sizeof(names[0]) ? names[c] : "?";
}

static grpc_completion_queue *cq_for(struct vgpu_grpc_server *s, const struct method *m)
{
	return m && m->rpc->cls != VGPU_RPC_FAST ? s->slow_cq : s->fast_cq;
}

static void request_call(struct vgpu_grpc_server *s, struct method *m)
{
	if (atomic_load(&s->stopping))
		return;
	struct call *c = vgpu_calloc(1, sizeof(*c));
	c->srv = s;
	c->m = m;
	c->phase = PHASE_REQUESTED;
	c->cq = cq_for(s, m);
	grpc_metadata_array_init(&c->md);
	grpc_call_error e;
	if (m && m->rpc->cls == VGPU_RPC_STREAM) {
		/* Streams get a private queue for their sends; the arrival is notified on the slow one. */
		c->cq = grpc_completion_queue_create_for_pluck(NULL);
		e = grpc_server_request_registered_call(s->server, m->tag, &c->call, &c->deadline, &c->md, &c->payload,
							c->cq, s->slow_cq, c);
	} else if (m) {
		e = grpc_server_request_registered_call(s->server, m->tag, &c->call, &c->deadline, &c->md, &c->payload,
							c->cq, c->cq, c);
	} else {
		grpc_call_details_init(&c->details);
		e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, c->cq, c->cq, c);
	}
	if (e != GRPC_CALL_OK) {
		vgpu_log(VGPU_LOG_ERROR, "grpc: cannot request calls for %s: error %d", m ? m->path : "unknown methods",
			 (int)e);
		grpc_metadata_array_destroy(&c->md);
		if (!m)
			grpc_call_details_destroy(&c->details);
		free(c);
	}
}

static void call_free(struct call *c)
{
	if (c->call)
		grpc_call_unref(c->call);
	grpc_metadata_array_destroy(&c->md);
	if (!c->m)
		grpc_call_details_destroy(&c->details);
	if (c->payload)
		grpc_byte_buffer_destroy(c->payload);
	if (c->reply)
		grpc_byte_buffer_destroy(c->reply);
	if (c->phase == PHASE_REPLYING)
		grpc_slice_unref(c->status_details);
	if (c->m && c->m->rpc->cls == VGPU_RPC_STREAM && c->cq) {
		grpc_completion_queue_shutdown(c->cq);
		while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(c->cq);
	}
	free(c);
}

static grpc_byte_buffer *pack_message(const ProtobufCMessage *msg)
{
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return NULL;
	protobuf_c_message_pack(msg, buf);
	grpc_slice slice = grpc_slice_new(buf, len, free);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
	grpc_slice_unref(slice);
	return bb;
}

/* Decode the request payload; NULL with err filled when it is missing or malformed. */
static ProtobufCMessage *unpack_request(const struct method *m, grpc_byte_buffer *payload, struct vgpu_err *err)
{
	if (!payload) {
		vgpu_err_set(err, -EINVAL, "%s: no request message", m->rpc->method);
		return NULL;
	}
	grpc_byte_buffer_reader reader;
	if (!grpc_byte_buffer_reader_init(&reader, payload)) {
		vgpu_err_set(err, -EINVAL, "%s: unreadable request message", m->rpc->method);
		return NULL;
	}
	grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
	grpc_byte_buffer_reader_destroy(&reader);
	ProtobufCMessage *req = protobuf_c_message_unpack(m->desc->input, NULL, GRPC_SLICE_LENGTH(all),
							   GRPC_SLICE_START_PTR(all));
	if (!req)
		vgpu_err_set(err, -EINVAL, "%s: malformed request message (%zu bytes)", m->rpc->method,
			     (size_t)GRPC_SLICE_LENGTH(all));
	grpc_slice_unref(all);
	return req;
}

/* Run the handler; fills c->reply or c->status + message. */
static void serve_unary(struct call *c, char *msg, size_t msg_len)
{
	struct vgpu_err err;
	vgpu_err_clear(&err);
	int r;
	if (!c->m) {
		char *method = grpc_slice_to_c_string(c->details.method);
		r = vgpu_err_set(&err, -ENOSYS, "unknown method %s", method);
		gpr_free(method);
	} else if (!c->m->rpc->fn) {
		r = vgpu_err_set(&err, -ENOSYS, "%s is not implemented by vgpu-cri yet", c->m->rpc->method);
	} else {
		ProtobufCMessage *req = unpack_request(c->m, c->payload, &err);
		ProtobufCMessage *resp = NULL;
		r = req ? c->m->rpc->fn(c->srv->d, req, &resp, &err) : err.code;
		if (req)
			protobuf_c_message_free_unpacked(req, NULL);
		if (r == 0 && !resp)
			r = vgpu_err_set(&err, -EIO, "%s: handler returned no response", c->m->rpc->method);
		if (r == 0) {
			c->reply = pack_message(resp);
			if (!c->reply)
				r = vgpu_err_set(&err, -ENOMEM, "%s: cannot encode response", c->m->rpc->method);
		} else if (resp) {
			protobuf_c_message_free_unpacked(resp, NULL);
			resp = NULL;
		}
		if (resp)
			protobuf_c_message_free_unpacked(resp, NULL);
	}
	if (r < 0 && err.code == 0)
		vgpu_err_set(&err, r, "%s failed", c->m ? c->m->rpc->method : "call");
	c->status = r == 0 ? GRPC_STATUS_OK : status_from_errno(r);
	snprintf(msg, msg_len, "%s", r == 0 ? "" : err.msg);
}

static void start_reply(struct call *c)
{
	char msg[VGPU_ERR_MSG_MAX];
	serve_unary(c, msg, sizeof(msg));
	c->phase = PHASE_REPLYING;
	c->status_details = grpc_slice_from_copied_string(msg);

	grpc_op ops[4];
	memset(ops, 0, sizeof(ops));
	size_t n = 0;
	ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (c->reply) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n++].data.send_message.send_message = c->reply;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = c->status;
	ops[n++].data.send_status_from_server.status_details = &c->status_details;
	ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
	grpc_call_error e = grpc_call_start_batch(c->call, ops, n, c, NULL);
	if (e != GRPC_CALL_OK) {
		vgpu_log(VGPU_LOG_ERROR, "grpc: cannot send reply: error %d", (int)e);
		call_free(c);
	}
}

static void finish_call(struct call *c)
{
	double ms = (double)(vgpu_now_ns() - c->start_ns) / 1e6;
	const char *path = c->m ? c->m->path : "(unknown method)";
	if (c->status == GRPC_STATUS_INTERNAL)
		vgpu_log(VGPU_LOG_ERROR, "rpc %s %s %.3f ms: %.*s", path, status_name(c->status), ms,
			 (int)GRPC_SLICE_LENGTH(c->status_details), (const char *)GRPC_SLICE_START_PTR(c->status_details));
	else
		vgpu_log(VGPU_LOG_DEBUG, "rpc %s %s %.3f ms%s%.*s", path, status_name(c->status), ms,
			 c->status ? ": " : "", (int)GRPC_SLICE_LENGTH(c->status_details),
			 (const char *)GRPC_SLICE_START_PTR(c->status_details));
	struct vgpu_grpc_server *s = c->srv;
	call_free(c);
	pthread_mutex_lock(&s->lock);
	if (--s->in_flight == 0)
		pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* ---- server streaming ---- */

struct vgpu_stream {
	struct call *c;
	bool metadata_sent;
	bool closed; /* RECV_CLOSE_ON_SERVER completed: client gone or cancelled */
	int cancelled;
	char close_tag;
	char send_tag;
};

static void stream_poll_close(struct vgpu_stream *s)
{
	if (s->closed)
		return;
	grpc_event ev = grpc_completion_queue_pluck(s->c->cq, &s->close_tag, gpr_time_0(GPR_CLOCK_REALTIME), NULL);
	if (ev.type == GRPC_OP_COMPLETE)
		s->closed = true;
}

bool vgpu_stream_done(struct vgpu_stream *s)
{
	stream_poll_close(s);
	return s->closed || atomic_load(&s->c->srv->stopping);
}

static int stream_batch(struct vgpu_stream *s, grpc_op *ops, size_t n)
{
	if (grpc_call_start_batch(s->c->call, ops, n, &s->send_tag, NULL) != GRPC_CALL_OK)
		return -EPIPE;
	grpc_event ev = grpc_completion_queue_pluck(s->c->cq, &s->send_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	return ev.type == GRPC_OP_COMPLETE && ev.success ? 0 : -EPIPE;
}

int vgpu_stream_send(struct vgpu_stream *s, const ProtobufCMessage *msg)
{
	if (vgpu_stream_done(s))
		return -EPIPE;
	grpc_byte_buffer *bb = pack_message(msg);
	if (!bb)
		return -ENOMEM;
	grpc_op ops[2];
	memset(ops, 0, sizeof(ops));
	size_t n = 0;
	if (!s->metadata_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		s->metadata_sent = true;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = bb;
	int r = stream_batch(s, ops, n);
	grpc_byte_buffer_destroy(bb);
	return r;
}

static void *stream_thread(void *arg)
{
	struct call *c = arg;
	struct vgpu_grpc_server *srv = c->srv;
	struct vgpu_stream s = { .c = c };
	grpc_op op;
	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &s.cancelled;
	bool close_armed = grpc_call_start_batch(c->call, &op, 1, &s.close_tag, NULL) == GRPC_CALL_OK;
	if (!close_armed)
		s.closed = true;

	struct vgpu_err err;
	vgpu_err_clear(&err);
	int r;
	if (!c->m->rpc->stream_fn) {
		r = vgpu_err_set(&err, -ENOSYS, "%s is not implemented by vgpu-cri yet", c->m->rpc->method);
	} else if (atomic_fetch_add(&srv->open_streams, 1) >= MAX_STREAMS) {
		r = vgpu_err_set(&err, -EAGAIN, "%s: too many open streams (%d)", c->m->rpc->method, MAX_STREAMS);
		atomic_fetch_sub(&srv->open_streams, 1);
	} else {
		ProtobufCMessage *req = unpack_request(c->m, c->payload, &err);
		r = req ? c->m->rpc->stream_fn(srv->d, req, &s, &err) : err.code;
		if (req)
			protobuf_c_message_free_unpacked(req, NULL);
		atomic_fetch_sub(&srv->open_streams, 1);
	}
	c->status = r == 0 ? GRPC_STATUS_OK : status_from_errno(r);
	c->phase = PHASE_REPLYING;
	c->status_details = grpc_slice_from_copied_string(r == 0 ? "" : err.msg);
	grpc_op ops[2];
	memset(ops, 0, sizeof(ops));
	size_t n = 0;
	if (!s.metadata_sent)
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = c->status;
	ops[n++].data.send_status_from_server.status_details = &c->status_details;
	stream_batch(&s, ops, n);
	if (close_armed && !s.closed)
		grpc_completion_queue_pluck(c->cq, &s.close_tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	finish_call(c);

	pthread_mutex_lock(&srv->lock);
	srv->streams_running--;
	pthread_cond_broadcast(&srv->cond);
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

static void start_stream(struct call *c)
{
	struct vgpu_grpc_server *srv = c->srv;
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&srv->lock);
	srv->streams_running++;
	pthread_mutex_unlock(&srv->lock);
	if (pthread_create(&t, &attr, stream_thread, c) != 0) {
		vgpu_log(VGPU_LOG_ERROR, "grpc: cannot start a thread for %s", c->m->path);
		pthread_mutex_lock(&srv->lock);
		srv->streams_running--;
		pthread_mutex_unlock(&srv->lock);
		grpc_call_cancel_with_status(c->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "no thread for stream", NULL);
		call_free(c);
	}
	pthread_attr_destroy(&attr);
}

/* ---- worker threads ---- */

static void *worker(void *arg)
{
	struct vgpu_grpc_server *s = ((void **)arg)[0];
	grpc_completion_queue *cq = ((void **)arg)[1];
	free(arg);
	for (;;) {
		grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		if (ev.tag == &shutdown_tag) {
			pthread_mutex_lock(&s->lock);
			s->shutdown_done = true;
			pthread_cond_broadcast(&s->cond);
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		struct call *c = ev.tag;
		if (c->phase == PHASE_REPLYING) {
			finish_call(c);
			continue;
		}
		if (!ev.success) { /* the server is shutting down: the request was cancelled */
			call_free(c);
			continue;
		}
		c->start_ns = vgpu_now_ns();
		pthread_mutex_lock(&s->lock);
		s->in_flight++;
		pthread_mutex_unlock(&s->lock);
		request_call(s, c->m);
		if (c->m && c->m->rpc->cls == VGPU_RPC_STREAM)
			start_stream(c);
		else
			start_reply(c);
	}
	return NULL;
}

static const ProtobufCServiceDescriptor *service_desc(const char *service)
{
	if (strcmp(service, "RuntimeService") == 0)
		return &runtime__v1__runtime_service__descriptor;
	if (strcmp(service, "ImageService") == 0)
		return &runtime__v1__image_service__descriptor;
	return NULL;
}

static int register_methods(struct vgpu_grpc_server *s, struct vgpu_err *err)
{
	s->n_methods = vgpu_rpc_table_len;
	s->methods = vgpu_calloc(s->n_methods, sizeof(*s->methods));
	for (size_t i = 0; i < s->n_methods; i++) {
		struct method *m = &s->methods[i];
		m->rpc = &vgpu_rpc_table[i];
		const ProtobufCServiceDescriptor *sd = service_desc(m->rpc->service);
		m->desc = sd ? protobuf_c_service_descriptor_get_method_by_name(sd, m->rpc->method) : NULL;
		if (!m->desc)
			return vgpu_err_set(err, -EINVAL, "rpc table: %s/%s is not in the proto", m->rpc->service,
					    m->rpc->method);
		m->path = vgpu_asprintf("/%s/%s", sd->name, m->rpc->method);
		m->tag = grpc_server_register_method(s->server, m->path, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
		if (!m->tag)
			return vgpu_err_set(err, -EINVAL, "grpc: cannot register %s", m->path);
	}
	return 0;
}

static void start_thread(struct vgpu_grpc_server *s, grpc_completion_queue *cq)
{
	void **arg = vgpu_calloc(2, sizeof(void *));
	arg[0] = s;
	arg[1] = cq;
	if (pthread_create(&s->threads[s->n_threads], NULL, worker, arg) != 0)
		abort(); /* start-up only: without threads there is no server */
	s->n_threads++;
}

static void server_free(struct vgpu_grpc_server *s)
{
	for (size_t i = 0; i < s->n_methods; i++)
		free(s->methods[i].path);
	free(s->methods);
	free(s->threads);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

int vgpu_grpc_server_start(struct vgpu_daemon *d, struct vgpu_grpc_server **out, struct vgpu_err *err)
{
	grpc_init();
	struct vgpu_grpc_server *s = vgpu_calloc(1, sizeof(*s));
	s->d = d;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);

	grpc_arg args[1];
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer = 16 * 1024 * 1024;
	grpc_channel_args channel_args = { .num_args = 1, .args = args };
	s->server = grpc_server_create(&channel_args, NULL);
	s->fast_cq = grpc_completion_queue_create_for_next(NULL);
	s->slow_cq = grpc_completion_queue_create_for_next(NULL);
	grpc_server_register_completion_queue(s->server, s->fast_cq, NULL);
	grpc_server_register_completion_queue(s->server, s->slow_cq, NULL);

	int r = register_methods(s, err);
	if (r == 0) {
		char *addr = vgpu_asprintf("unix:%s", d->cfg->socket_path);
		grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
		int port = grpc_server_add_http2_port(s->server, addr, creds);
		grpc_server_credentials_release(creds);
		if (!port)
			r = vgpu_err_set(err, -EADDRINUSE, "grpc: cannot listen on %s", addr);
		free(addr);
	}
	if (r < 0) {
		grpc_server_destroy(s->server);
		grpc_completion_queue_shutdown(s->fast_cq);
		grpc_completion_queue_shutdown(s->slow_cq);
		while (grpc_completion_queue_next(s->fast_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
		while (grpc_completion_queue_next(s->slow_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
		grpc_completion_queue_destroy(s->fast_cq);
		grpc_completion_queue_destroy(s->slow_cq);
		server_free(s);
		grpc_shutdown();
		return r;
	}
	grpc_server_start(s->server);
	if (chmod(d->cfg->socket_path, 0660) < 0)
		vgpu_log(VGPU_LOG_WARN, "chmod %s: %s", d->cfg->socket_path, strerror(errno));

	for (size_t i = 0; i < s->n_methods; i++)
		for (int k = 0; k < REQUESTS_PER_METHOD; k++)
			request_call(s, &s->methods[i]);
	request_call(s, NULL);

	s->threads = vgpu_calloc((size_t)(d->cfg->grpc_workers + d->cfg->grpc_fast_workers), sizeof(pthread_t));
	for (long long i = 0; i < d->cfg->grpc_fast_workers; i++)
		start_thread(s, s->fast_cq);
	for (long long i = 0; i < d->cfg->grpc_workers; i++)
		start_thread(s, s->slow_cq);
	vgpu_log(VGPU_LOG_INFO, "serving CRI on unix://%s (%lld workers, %lld fast workers)", d->cfg->socket_path,
		 d->cfg->grpc_workers, d->cfg->grpc_fast_workers);
	*out = s;
	return 0;
}

/* Wait until *flag (under s->lock) is true, or in_flight is 0 when flag is NULL. */
static bool wait_for(struct vgpu_grpc_server *s, const bool *flag, long long timeout_s)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_s;
	pthread_mutex_lock(&s->lock);
	while (flag ? !*flag : s->in_flight > 0) {
		if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT)
			break;
	}
	bool done = flag ? *flag : s->in_flight == 0;
	pthread_mutex_unlock(&s->lock);
	return done;
}

bool vgpu_grpc_server_stop(struct vgpu_grpc_server *s, long long timeout_s)
{
	if (!s)
		return true;
	atomic_store(&s->stopping, true);
	grpc_server_shutdown_and_notify(s->server, s->fast_cq, &shutdown_tag);
	/* New calls are refused now; give the ones in flight their time, then cancel what is left
	 * (that also closes idle client connections, which would otherwise hold the shutdown). */
	if (!wait_for(s, NULL, timeout_s))
		vgpu_log(VGPU_LOG_WARN, "in-flight calls still running after %llds: cancelling them", timeout_s);
	grpc_server_cancel_all_calls(s->server);
	/* Cancelled calls count as done for gRPC, but a handler blocked in a system call still runs
	 * and will touch its call and queue when it returns: do not free those under it. */
	bool done = wait_for(s, &s->shutdown_done, 2);
	if (!wait_for(s, NULL, 2) || !done) {
		pthread_mutex_lock(&s->lock);
		int left = s->in_flight;
		pthread_mutex_unlock(&s->lock);
		vgpu_log(VGPU_LOG_ERROR, "%d call(s) did not finish after cancellation; leaving them", left);
		return false;
	}
	/* Stream threads notice `stopping` or their cancelled call and end. */
	pthread_mutex_lock(&s->lock);
	while (s->streams_running > 0)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	grpc_server_destroy(s->server);
	grpc_completion_queue_shutdown(s->fast_cq);
	grpc_completion_queue_shutdown(s->slow_cq);
	for (size_t i = 0; i < s->n_threads; i++)
		pthread_join(s->threads[i], NULL);
	grpc_completion_queue_destroy(s->fast_cq);
	grpc_completion_queue_destroy(s->slow_cq);
	server_free(s);
	grpc_shutdown();
	vgpu_log(VGPU_LOG_INFO, "gRPC server stopped");
	return true;
}
