/* Encoding and decoding of the daemon <-> vgpu-agent messages (format in agent_proto.h). Every
 * length that comes off the wire is checked against what is left of its buffer before use. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent_proto.h"

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void agent_hdr_encode(uint8_t out[AGENT_HDR_SIZE], const struct agent_hdr *hdr)
{
	put_le32(out, AGENT_MAGIC);
	out[4] = (uint8_t)hdr->type;
	out[5] = (uint8_t)(hdr->type >> 8);
	out[6] = (uint8_t)hdr->flags;
	out[7] = (uint8_t)(hdr->flags >> 8);
	put_le32(out + 8, hdr->id);
	put_le32(out + 12, hdr->len);
}

int agent_hdr_decode(const uint8_t in[AGENT_HDR_SIZE], struct agent_hdr *hdr)
{
	if (get_le32(in) != AGENT_MAGIC)
		return -EPROTO;
	hdr->type = (uint16_t)(in[4] | in[5] << 8);
	hdr->flags = (uint16_t)(in[6] | in[7] << 8);
	hdr->id = get_le32(in + 8);
	hdr->len = get_le32(in + 12);
	if (hdr->flags != 0)
		return -EPROTO;
	if (hdr->len > AGENT_MAX_PAYLOAD)
		return -EMSGSIZE;
	if ((hdr->type < AGENT_MSG_HELLO || hdr->type > AGENT_MSG_LAST) &&
	    (hdr->type < AGENT_MSG_STREAM_FIRST || hdr->type > AGENT_MSG_STREAM_LAST))
		return -EINVAL;
	return 0;
}

int agent_buf_reserve(struct agent_buf *b, size_t more, size_t max)
{
	size_t need, cap;
	uint8_t *data;

	if (__builtin_add_overflow(b->len, more, &need) || need > max)
		return -EMSGSIZE;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	data = realloc(b->data, cap);
	if (!data)
		return -ENOMEM;
	b->data = data;
	b->cap = cap;
	return 0;
}

int agent_put_u32(struct agent_buf *b, uint32_t v)
{
	int rc = agent_buf_reserve(b, 4, AGENT_MAX_PAYLOAD);

	if (rc < 0)
		return rc;
	put_le32(b->data + b->len, v);
	b->len += 4;
	return 0;
}

int agent_put_str(struct agent_buf *b, const char *s, size_t len)
{
	int rc;

	if (len > AGENT_MAX_PAYLOAD)
		return -EMSGSIZE;
	rc = agent_buf_reserve(b, 4 + len, AGENT_MAX_PAYLOAD);
	if (rc < 0)
		return rc;
	put_le32(b->data + b->len, (uint32_t)len);
	if (len)
		memcpy(b->data + b->len + 4, s, len);
	b->len += 4 + len;
	return 0;
}

int agent_put_bytes(struct agent_buf *b, const void *p, size_t len)
{
	int rc = agent_buf_reserve(b, len, AGENT_MAX_PAYLOAD);

	if (rc < 0)
		return rc;
	if (len)
		memcpy(b->data + b->len, p, len);
	b->len += len;
	return 0;
}

void agent_buf_free(struct agent_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int agent_get_u32(struct agent_reader *r, uint32_t *v)
{
	if (r->left < 4)
		return -EPROTO;
	*v = get_le32(r->p);
	r->p += 4;
	r->left -= 4;
	return 0;
}

int agent_get_str(struct agent_reader *r, const char **s, size_t *len)
{
	uint32_t n;

	if (agent_get_u32(r, &n) < 0 || n > r->left)
		return -EPROTO;
	*s = (const char *)r->p;
	*len = n;
	r->p += n;
	r->left -= n;
	return 0;
}

int agent_exec_encode(struct agent_buf *b, const char *const *argv, uint32_t timeout_ms)
{
	size_t argc = 0;
	int rc;

	while (argv[argc])
		argc++;
	if (argc == 0 || argc > AGENT_MAX_ARGS)
		return -EINVAL;
	rc = agent_put_u32(b, timeout_ms);
	if (rc == 0)
		rc = agent_put_u32(b, (uint32_t)argc);
	for (size_t i = 0; rc == 0 && i < argc; i++)
		rc = agent_put_str(b, argv[i], strlen(argv[i]));
	return rc;
}

void agent_argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **a = argv; *a; a++)
		free(*a);
	free(argv);
}

int agent_exec_decode(const uint8_t *payload, size_t len, char ***argv_out, uint32_t *timeout_ms)
{
	struct agent_reader r = { payload, len };
	uint32_t argc;
	char **argv;

	*argv_out = NULL;
	if (agent_get_u32(&r, timeout_ms) < 0 || agent_get_u32(&r, &argc) < 0)
		return -EPROTO;
	/* each argument takes at least its 4-byte length: bounds argc by the payload, too */
	if (argc == 0 || argc > AGENT_MAX_ARGS || argc > r.left / 4)
		return -EPROTO;
	argv = calloc((size_t)argc + 1, sizeof(*argv));
	if (!argv)
		return -ENOMEM;
	for (uint32_t i = 0; i < argc; i++) {
		const char *s;
		size_t n;
		if (agent_get_str(&r, &s, &n) < 0 || memchr(s, '\0', n)) {
			agent_argv_free(argv);
			return -EPROTO;
		}
		argv[i] = strndup(s, n);
		if (!argv[i]) {
			agent_argv_free(argv);
			return -ENOMEM;
		}
	}
	if (r.left != 0) {
		agent_argv_free(argv);
		return -EPROTO;
	}
	*argv_out = argv;
	return 0;
}

int agent_exec_result_encode(struct agent_buf *b, int32_t exit_code, const void *out, size_t out_len,
			     const void *err, size_t err_len)
{
	int rc = agent_put_u32(b, (uint32_t)exit_code);

	if (rc == 0)
		rc = agent_put_str(b, out, out_len);
	if (rc == 0)
		rc = agent_put_str(b, err, err_len);
	return rc;
}

int agent_put_u64(struct agent_buf *b, uint64_t v)
{
	int rc = agent_put_u32(b, (uint32_t)v);

	return rc ? rc : agent_put_u32(b, (uint32_t)(v >> 32));
}

int agent_get_u64(struct agent_reader *r, uint64_t *v)
{
	uint32_t lo, hi;

	if (agent_get_u32(r, &lo) < 0 || agent_get_u32(r, &hi) < 0)
		return -EPROTO;
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

/* Container ids name directories in the guest: a plain name, never a path. */
static int id_ok(const char *id, size_t len)
{
	if (len == 0 || len > AGENT_MAX_ID_LEN || (len <= 2 && id[0] == '.'))
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
		      c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

static int put_cstr(struct agent_buf *b, const char *s)
{
	return agent_put_str(b, s, strlen(s));
}

/* A string without NUL, malloc'd and NUL-terminated. */
static int get_cstr(struct agent_reader *r, char **out)
{
	const char *s;
	size_t n;

	if (agent_get_str(r, &s, &n) < 0 || memchr(s, '\0', n))
		return -EPROTO;
	*out = strndup(s, n);
	return *out ? 0 : -ENOMEM;
}

int agent_ctr_req_encode(struct agent_buf *b, const struct agent_ctr_req *req)
{
	int rc;

	if (!req->id || !id_ok(req->id, strlen(req->id)))
		return -EINVAL;
	rc = put_cstr(b, req->id);
	if (rc < 0)
		return rc;
	switch (req->type) {
	case AGENT_MSG_CTR_CREATE:
		if (!req->rootfs_dev || req->rootfs_dev[0] != '/' || !req->spec_json || !req->spec_json[0])
			return -EINVAL;
		rc = put_cstr(b, req->rootfs_dev);
		return rc ? rc : put_cstr(b, req->spec_json);
	case AGENT_MSG_CTR_START:
	case AGENT_MSG_CTR_STATUS:
	case AGENT_MSG_CTR_REMOVE:
	case AGENT_MSG_CTR_STATS:
		return 0;
	case AGENT_MSG_CTR_UPDATE:
		if (!req->spec_json || !req->spec_json[0])
			return -EINVAL;
		return put_cstr(b, req->spec_json);
	case AGENT_MSG_CTR_STOP:
		if (req->signal < 1 || req->signal > 64)
			return -EINVAL;
		rc = agent_put_u32(b, req->signal);
		return rc ? rc : agent_put_u32(b, req->timeout_ms);
	case AGENT_MSG_CTR_LOGS:
		if (req->max_bytes < 1 || req->max_bytes > AGENT_MAX_LOG_CHUNK)
			return -EINVAL;
		rc = agent_put_u64(b, req->offset);
		return rc ? rc : agent_put_u32(b, req->max_bytes);
	case AGENT_MSG_CTR_EXEC:
		if (!req->argv)
			return -EINVAL;
		return agent_exec_encode(b, (const char *const *)req->argv, req->timeout_ms);
	default:
		return -EINVAL;
	}
}

void agent_ctr_req_free(struct agent_ctr_req *req)
{
	free(req->id);
	free(req->rootfs_dev);
	free(req->spec_json);
	agent_argv_free(req->argv);
	memset(req, 0, sizeof(*req));
}

int agent_msg_is_ctr_request(uint16_t type)
{
	switch (type) {
	case AGENT_MSG_CTR_CREATE:
	case AGENT_MSG_CTR_START:
	case AGENT_MSG_CTR_STOP:
	case AGENT_MSG_CTR_STATUS:
	case AGENT_MSG_CTR_LOGS:
	case AGENT_MSG_CTR_EXEC:
	case AGENT_MSG_CTR_REMOVE:
	case AGENT_MSG_CTR_STATS:
	case AGENT_MSG_CTR_UPDATE:
		return 1;
	default:
		return 0;
	}
}

int agent_ctr_req_decode(uint16_t type, const uint8_t *payload, size_t len, struct agent_ctr_req *out)
{
	struct agent_reader r = { payload, len };
	int rc;

	memset(out, 0, sizeof(*out));
	out->type = type;
	if (!agent_msg_is_ctr_request(type))
		return -EPROTO;
	rc = get_cstr(&r, &out->id);
	if (rc == 0 && !id_ok(out->id, strlen(out->id)))
		rc = -EPROTO;
	if (rc == 0) {
		switch (type) {
		case AGENT_MSG_CTR_CREATE:
			rc = get_cstr(&r, &out->rootfs_dev);
			if (rc == 0 && out->rootfs_dev[0] != '/')
				rc = -EPROTO;
			if (rc == 0)
				rc = get_cstr(&r, &out->spec_json);
			if (rc == 0 && !out->spec_json[0])
				rc = -EPROTO;
			break;
		case AGENT_MSG_CTR_STOP:
			if (agent_get_u32(&r, &out->signal) < 0 || agent_get_u32(&r, &out->timeout_ms) < 0 ||
			    out->signal < 1 || out->signal > 64)
				rc = -EPROTO;
			break;
		case AGENT_MSG_CTR_LOGS:
			if (agent_get_u64(&r, &out->offset) < 0 || agent_get_u32(&r, &out->max_bytes) < 0 ||
			    out->max_bytes < 1 || out->max_bytes > AGENT_MAX_LOG_CHUNK)
				rc = -EPROTO;
			break;
		case AGENT_MSG_CTR_UPDATE:
			rc = get_cstr(&r, &out->spec_json);
			if (rc == 0 && !out->spec_json[0])
				rc = -EPROTO;
			break;
		case AGENT_MSG_CTR_EXEC:
			rc = agent_exec_decode(r.p, r.left, &out->argv, &out->timeout_ms);
			r.left = 0; /* agent_exec_decode refuses trailing bytes itself */
			break;
		default:
			break;
		}
	}
	if (rc == 0 && r.left != 0)
		rc = -EPROTO;
	if (rc < 0) {
		agent_ctr_req_free(out);
		out->type = type;
	}
	return rc;
}

int agent_ctr_state_encode(struct agent_buf *b, const struct agent_ctr_state *st)
{
	int rc = agent_put_u32(b, st->state);

	if (rc == 0)
		rc = agent_put_u32(b, (uint32_t)st->pid);
	if (rc == 0)
		rc = agent_put_u32(b, (uint32_t)st->exit_code);
	if (rc == 0)
		rc = agent_put_u64(b, st->started_ns);
	if (rc == 0)
		rc = agent_put_u64(b, st->finished_ns);
	return rc;
}

int agent_ctr_state_decode(const uint8_t *payload, size_t len, struct agent_ctr_state *out)
{
	struct agent_reader r = { payload, len };
	uint32_t pid, code;

	memset(out, 0, sizeof(*out));
	if (agent_get_u32(&r, &out->state) < 0 || agent_get_u32(&r, &pid) < 0 || agent_get_u32(&r, &code) < 0 ||
	    agent_get_u64(&r, &out->started_ns) < 0 || agent_get_u64(&r, &out->finished_ns) < 0 || r.left != 0 ||
	    out->state > AGENT_CTR_UNKNOWN)
		return -EPROTO;
	out->pid = (int32_t)pid;
	out->exit_code = (int32_t)code;
	return 0;
}

int agent_ctr_log_data_encode(struct agent_buf *b, const struct agent_ctr_log_data *d)
{
	int rc = agent_put_u64(b, d->next_offset);

	if (rc == 0)
		rc = agent_put_u32(b, d->eof ? 1u : 0u);
	if (rc == 0)
		rc = agent_put_str(b, (const char *)d->data, d->len);
	return rc;
}

int agent_ctr_log_data_decode(const uint8_t *payload, size_t len, struct agent_ctr_log_data *out)
{
	struct agent_reader r = { payload, len };
	const char *data;

	memset(out, 0, sizeof(*out));
	if (agent_get_u64(&r, &out->next_offset) < 0 || agent_get_u32(&r, &out->eof) < 0 || out->eof > 1 ||
	    agent_get_str(&r, &data, &out->len) < 0 || r.left != 0)
		return -EPROTO;
	out->data = (const uint8_t *)data;
	return 0;
}

int agent_ctr_stats_encode(struct agent_buf *b, const struct agent_ctr_stats *st)
{
	const uint64_t v[] = { st->cpu_usage_usec, st->memory_current, st->memory_max, st->inactive_file,
			       st->anon, st->pgfault, st->pgmajfault };
	int rc = agent_put_u32(b, st->flags);

	for (size_t i = 0; rc == 0 && i < sizeof(v) / sizeof(v[0]); i++)
		rc = agent_put_u64(b, v[i]);
	return rc;
}

int agent_ctr_stats_decode(const uint8_t *payload, size_t len, struct agent_ctr_stats *out)
{
	struct agent_reader r = { payload, len };
	uint64_t *v[] = { &out->cpu_usage_usec, &out->memory_current, &out->memory_max, &out->inactive_file,
			  &out->anon, &out->pgfault, &out->pgmajfault };

	memset(out, 0, sizeof(*out));
	if (agent_get_u32(&r, &out->flags) < 0 || (out->flags & ~(AGENT_STATS_CPU | AGENT_STATS_MEM)))
		return -EPROTO;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (agent_get_u64(&r, v[i]) < 0)
			return -EPROTO;
	if (r.left != 0) {
		memset(out, 0, sizeof(*out));
		return -EPROTO;
	}
	return 0;
}

/* ---- NET_CONFIG ---- */

static int ipv4_ok(const char *s, size_t len)
{
	int parts = 0;
	size_t i = 0;

	while (i < len) {
		unsigned v = 0;
		size_t digits = 0;
		while (i < len && s[i] >= '0' && s[i] <= '9' && digits < 4) {
			v = v * 10 + (unsigned)(s[i++] - '0');
			digits++;
		}
		if (digits == 0 || digits > 3 || v > 255 || (digits > 1 && s[i - digits] == '0'))
			return 0;
		parts++;
		if (i == len)
			break;
		if (s[i++] != '.' || i == len)
			return 0;
	}
	return parts == 4;
}

/* Loose but safe: hex digits, ':' (at least two) and an optional dotted IPv4 tail. */
static int ipv6_ok(const char *s, size_t len)
{
	size_t colons = 0;

	if (len < 2 || len > 45)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == ':')
			colons++;
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.'))
			return 0;
	}
	return colons >= 2 && colons <= 7 && !strstr(s, ":::");
}

int agent_net_addr_ok(const char *s, int want_prefix)
{
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	int v4, bits = 0;

	if (strlen(s) > AGENT_MAX_ADDR_LEN || !want_prefix != !slash)
		return 0;
	v4 = memchr(s, ':', alen) == NULL;
	if (v4 ? !ipv4_ok(s, alen) : !ipv6_ok(s, alen))
		return 0;
	if (!slash)
		return 1;
	const char *p = slash + 1;
	if (!*p || strlen(p) > 3)
		return 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return 0;
		bits = bits * 10 + (*p - '0');
	}
	if (slash[1] == '0' && slash[2])
		return 0;
	return bits <= (v4 ? 32 : 128);
}

int agent_net_mac_ok(const char *s)
{
	if (strlen(s) != 17)
		return 0;
	for (int i = 0; i < 17; i++) {
		char c = s[i];
		if (i % 3 == 2) {
			if (c != ':')
				return 0;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
			return 0;
		}
	}
	return 1;
}

int agent_net_config_encode(struct agent_buf *b, const struct agent_net_config *nc)
{
	int rc;

	if (!nc->mac || !agent_net_mac_ok(nc->mac) || nc->n_addrs < 1 || nc->n_addrs > AGENT_MAX_NET_ITEMS ||
	    nc->n_routes > AGENT_MAX_NET_ITEMS || (nc->resolv_conf && strlen(nc->resolv_conf) > AGENT_MAX_RESOLV_LEN))
		return -EINVAL;
	for (uint32_t i = 0; i < nc->n_addrs; i++)
		if (!nc->addrs[i] || !agent_net_addr_ok(nc->addrs[i], 1))
			return -EINVAL;
	for (uint32_t i = 0; i < nc->n_routes; i++)
		if (!nc->routes[i].dst || !agent_net_addr_ok(nc->routes[i].dst, 1) ||
		    (nc->routes[i].gw && nc->routes[i].gw[0] && !agent_net_addr_ok(nc->routes[i].gw, 0)))
			return -EINVAL;
	rc = put_cstr(b, nc->mac);
	if (rc == 0)
		rc = agent_put_u32(b, nc->mtu);
	if (rc == 0)
		rc = agent_put_u32(b, nc->n_addrs);
	for (uint32_t i = 0; rc == 0 && i < nc->n_addrs; i++)
		rc = put_cstr(b, nc->addrs[i]);
	if (rc == 0)
		rc = agent_put_u32(b, nc->n_routes);
	for (uint32_t i = 0; rc == 0 && i < nc->n_routes; i++) {
		rc = put_cstr(b, nc->routes[i].dst);
		if (rc == 0)
			rc = put_cstr(b, nc->routes[i].gw ? nc->routes[i].gw : "");
	}
	if (rc == 0)
		rc = put_cstr(b, nc->resolv_conf ? nc->resolv_conf : "");
	return rc;
}

void agent_net_config_free(struct agent_net_config *nc)
{
	free(nc->mac);
	for (uint32_t i = 0; i < AGENT_MAX_NET_ITEMS; i++) {
		free(nc->addrs[i]);
		free(nc->routes[i].dst);
		free(nc->routes[i].gw);
	}
	free(nc->resolv_conf);
	memset(nc, 0, sizeof(*nc));
}

static int net_config_read(struct agent_reader *r, struct agent_net_config *out)
{
	if (get_cstr(r, &out->mac) < 0 || !agent_net_mac_ok(out->mac) || agent_get_u32(r, &out->mtu) < 0 ||
	    out->mtu > 65535 || agent_get_u32(r, &out->n_addrs) < 0 || out->n_addrs < 1 ||
	    out->n_addrs > AGENT_MAX_NET_ITEMS)
		return -EPROTO;
	for (uint32_t i = 0; i < out->n_addrs; i++)
		if (get_cstr(r, &out->addrs[i]) < 0 || !agent_net_addr_ok(out->addrs[i], 1))
			return -EPROTO;
	if (agent_get_u32(r, &out->n_routes) < 0 || out->n_routes > AGENT_MAX_NET_ITEMS)
		return -EPROTO;
	for (uint32_t i = 0; i < out->n_routes; i++) {
		struct agent_net_route *rt = &out->routes[i];
		if (get_cstr(r, &rt->dst) < 0 || !agent_net_addr_ok(rt->dst, 1) || get_cstr(r, &rt->gw) < 0 ||
		    (rt->gw[0] && !agent_net_addr_ok(rt->gw, 0)))
			return -EPROTO;
	}
	if (get_cstr(r, &out->resolv_conf) < 0 || strlen(out->resolv_conf) > AGENT_MAX_RESOLV_LEN || r->left != 0)
		return -EPROTO;
	return 0;
}

int agent_net_config_decode(const uint8_t *payload, size_t len, struct agent_net_config *out)
{
	struct agent_reader r = { payload, len };
	int rc;

	memset(out, 0, sizeof(*out));
	rc = net_config_read(&r, out);
	if (rc < 0)
		agent_net_config_free(out);
	return rc;
}

/* ---- interactive streams (CTR_EXEC_STREAM, CTR_ATTACH_STREAM, POD_PORTFWD_STREAM, the stream vchan's
 * frames) ---- */

/* The same rules for exec and attach (attach: tty only to a container with a terminal, the agent checks). */
static int stream_flags_ok(uint32_t flags)
{
	const uint32_t io = AGENT_STREAM_STDIN | AGENT_STREAM_STDOUT | AGENT_STREAM_STDERR;

	if ((flags & ~(io | AGENT_STREAM_TTY)) || !(flags & io))
		return 0;
	return !((flags & AGENT_STREAM_TTY) && (flags & AGENT_STREAM_STDERR));
}

int agent_stream_req_encode(struct agent_buf *b, const struct agent_stream_req *req)
{
	int rc;

	if (req->type == AGENT_MSG_POD_PORTFWD_STREAM)
		return req->port >= 1 && req->port <= 65535 && !req->id && !req->flags && !req->argv
			       ? agent_put_u32(b, req->port) : -EINVAL;
	if ((req->type != AGENT_MSG_CTR_EXEC_STREAM && req->type != AGENT_MSG_CTR_ATTACH_STREAM) || !req->id ||
	    !id_ok(req->id, strlen(req->id)) || !stream_flags_ok(req->flags) ||
	    (req->type == AGENT_MSG_CTR_EXEC_STREAM) != (req->argv != NULL))
		return -EINVAL;
	rc = put_cstr(b, req->id);
	if (rc == 0)
		rc = agent_put_u32(b, req->flags);
	if (rc < 0 || req->type == AGENT_MSG_CTR_ATTACH_STREAM)
		return rc;
	size_t argc = 0;
	while (req->argv[argc])
		argc++;
	if (argc == 0 || argc > AGENT_MAX_ARGS)
		return -EINVAL;
	rc = agent_put_u32(b, (uint32_t)argc);
	for (size_t i = 0; rc == 0 && i < argc; i++)
		rc = put_cstr(b, req->argv[i]);
	return rc;
}

void agent_stream_req_free(struct agent_stream_req *req)
{
	free(req->id);
	agent_argv_free(req->argv);
	memset(req, 0, sizeof(*req));
}

static int stream_req_read(struct agent_reader *r, struct agent_stream_req *out)
{
	uint32_t argc;

	if (get_cstr(r, &out->id) < 0 || !id_ok(out->id, strlen(out->id)) || agent_get_u32(r, &out->flags) < 0 ||
	    !stream_flags_ok(out->flags))
		return -EPROTO;
	if (out->type == AGENT_MSG_CTR_ATTACH_STREAM)
		return r->left == 0 ? 0 : -EPROTO;
	if (agent_get_u32(r, &argc) < 0 || argc == 0 || argc > AGENT_MAX_ARGS || argc > r->left / 4)
		return -EPROTO;
	out->argv = calloc((size_t)argc + 1, sizeof(*out->argv));
	if (!out->argv)
		return -ENOMEM;
	for (uint32_t i = 0; i < argc; i++) {
		int rc = get_cstr(r, &out->argv[i]);
		if (rc < 0)
			return rc;
	}
	return r->left == 0 ? 0 : -EPROTO;
}

int agent_stream_req_decode(uint16_t type, const uint8_t *payload, size_t len, struct agent_stream_req *out)
{
	struct agent_reader r = { payload, len };
	int rc;

	memset(out, 0, sizeof(*out));
	if (type == AGENT_MSG_POD_PORTFWD_STREAM) {
		uint32_t port;
		if (agent_get_u32(&r, &port) < 0 || r.left != 0 || port < 1 || port > 65535)
			return -EPROTO;
		out->type = type;
		out->port = port;
		return 0;
	}
	if (type != AGENT_MSG_CTR_EXEC_STREAM && type != AGENT_MSG_CTR_ATTACH_STREAM)
		return -EPROTO;
	out->type = type;
	rc = stream_req_read(&r, out);
	if (rc < 0)
		agent_stream_req_free(out);
	return rc;
}

static int stream_path_ok(const char *s, size_t len)
{
	size_t plen = strlen(AGENT_STREAM_PATH_PREFIX);

	if (len <= plen || len > plen + 10 || memcmp(s, AGENT_STREAM_PATH_PREFIX, plen) != 0)
		return 0;
	for (size_t i = plen; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

int agent_stream_opened_encode(struct agent_buf *b, const char *path)
{
	if (!path || !stream_path_ok(path, strlen(path)))
		return -EINVAL;
	return put_cstr(b, path);
}

int agent_stream_opened_decode(const uint8_t *payload, size_t len, char path[AGENT_STREAM_PATH_MAX])
{
	struct agent_reader r = { payload, len };
	const char *s;
	size_t n;

	path[0] = '\0';
	if (agent_get_str(&r, &s, &n) < 0 || r.left != 0 || !stream_path_ok(s, n) || n >= AGENT_STREAM_PATH_MAX)
		return -EPROTO;
	memcpy(path, s, n);
	path[n] = '\0';
	return 0;
}

int agent_stream_frame_check(const struct agent_hdr *hdr, int from_guest)
{
	if (hdr->id != 0 || hdr->flags != 0)
		return -EPROTO;
	switch (hdr->type) {
	case AGENT_MSG_STREAM_KEEPALIVE:
		return hdr->len == 0 ? 0 : -EPROTO;
	case AGENT_MSG_STREAM_STDOUT:
	case AGENT_MSG_STREAM_STDERR:
		return from_guest && hdr->len >= 1 && hdr->len <= AGENT_STREAM_MAX_DATA ? 0 : -EPROTO;
	case AGENT_MSG_STREAM_EXIT:
		return from_guest && hdr->len == 4 ? 0 : -EPROTO;
	case AGENT_MSG_STREAM_STDOUT_CLOSE:
		return from_guest && hdr->len == 0 ? 0 : -EPROTO;
	case AGENT_MSG_STREAM_STDIN:
		return !from_guest && hdr->len >= 1 && hdr->len <= AGENT_STREAM_MAX_DATA ? 0 : -EPROTO;
	case AGENT_MSG_STREAM_STDIN_CLOSE:
	case AGENT_MSG_STREAM_KILL:
		return !from_guest && hdr->len == 0 ? 0 : -EPROTO;
	case AGENT_MSG_STREAM_RESIZE:
		return !from_guest && hdr->len == 8 ? 0 : -EPROTO;
	default:
		return -EPROTO;
	}
}

void agent_stream_resize_encode(uint8_t buf[8], uint32_t width, uint32_t height)
{
	put_le32(buf, width);
	put_le32(buf + 4, height);
}

int agent_stream_resize_decode(const uint8_t *payload, size_t len, uint32_t *width, uint32_t *height)
{
	if (len != 8)
		return -EPROTO;
	*width = get_le32(payload);
	*height = get_le32(payload + 4);
	if (*width < 1 || *width > 65535 || *height < 1 || *height > 65535)
		return -EPROTO;
	return 0;
}

void agent_stream_exit_encode(uint8_t buf[4], int32_t code)
{
	put_le32(buf, (uint32_t)code);
}

int agent_stream_exit_decode(const uint8_t *payload, size_t len, int32_t *code)
{
	if (len != 4)
		return -EPROTO;
	*code = (int32_t)get_le32(payload);
	return *code < 0 || *code > 255 ? -EPROTO : 0;
}
