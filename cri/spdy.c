/* SPDY/3.1 frame codec and zlib header-block compression (see spdy.h for the wire format). */
#include "spdy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The SPDY/3 header compression dictionary: length-prefixed common header names and values
 * followed by common value text (SPDY/3 draft, section 2.6.10.1). */
const char spdy_dictionary[] =
	"\0\0\0\7" "options" "\0\0\0\4" "head" "\0\0\0\4" "post" "\0\0\0\3" "put" "\0\0\0\6" "delete"
	"\0\0\0\5" "trace" "\0\0\0\6" "accept" "\0\0\0\16" "accept-charset" "\0\0\0\17" "accept-encoding"
	"\0\0\0\17" "accept-language" "\0\0\0\15" "accept-ranges" "\0\0\0\3" "age" "\0\0\0\5" "allow"
	"\0\0\0\15" "authorization" "\0\0\0\15" "cache-control" "\0\0\0\12" "connection"
	"\0\0\0\14" "content-base" "\0\0\0\20" "content-encoding" "\0\0\0\20" "content-language"
	"\0\0\0\16" "content-length" "\0\0\0\20" "content-location" "\0\0\0\13" "content-md5"
	"\0\0\0\15" "content-range" "\0\0\0\14" "content-type" "\0\0\0\4" "date" "\0\0\0\4" "etag"
	"\0\0\0\6" "expect" "\0\0\0\7" "expires" "\0\0\0\4" "from" "\0\0\0\4" "host" "\0\0\0\10" "if-match"
	"\0\0\0\21" "if-modified-since" "\0\0\0\15" "if-none-match" "\0\0\0\10" "if-range"
	"\0\0\0\23" "if-unmodified-since" "\0\0\0\15" "last-modified" "\0\0\0\10" "location"
	"\0\0\0\14" "max-forwards" "\0\0\0\6" "pragma" "\0\0\0\22" "proxy-authenticate"
	"\0\0\0\23" "proxy-authorization" "\0\0\0\5" "range" "\0\0\0\7" "referer" "\0\0\0\13" "retry-after"
	"\0\0\0\6" "server" "\0\0\0\2" "te" "\0\0\0\7" "trailer" "\0\0\0\21" "transfer-encoding"
	"\0\0\0\7" "upgrade" "\0\0\0\12" "user-agent" "\0\0\0\4" "vary" "\0\0\0\3" "via"
	"\0\0\0\7" "warning" "\0\0\0\20" "www-authenticate" "\0\0\0\6" "method" "\0\0\0\3" "get"
	"\0\0\0\6" "status" "\0\0\0\6" "200 OK" "\0\0\0\7" "version" "\0\0\0\10" "HTTP/1.1"
	"\0\0\0\3" "url" "\0\0\0\6" "public" "\0\0\0\12" "set-cookie" "\0\0\0\12" "keep-alive"
	"\0\0\0\6" "origin"
	"100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
	"203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Una"
	"uthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service"
	" UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, "
	"Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,applicat"
	"ion/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf"
	"-8charset=iso-8859-1,utf-,*,enq=0."
	;

const size_t spdy_dictionary_len = sizeof(spdy_dictionary) - 1;

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int spdy_buf_append(struct spdy_buf *b, const void *data, size_t len)
{
	size_t need;
	if (__builtin_add_overflow(b->len, len, &need))
		return -ENOMEM;
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < need) {
			if (__builtin_mul_overflow(cap, 2, &cap))
				return -ENOMEM;
		}
		uint8_t *n = realloc(b->data, cap);
		if (!n)
			return -ENOMEM;
		b->data = n;
		b->cap = cap;
	}
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len = need;
	return 0;
}

void spdy_buf_consume(struct spdy_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void spdy_buf_free(struct spdy_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* Minimum payload length of each control frame type we interpret. */
static size_t control_min_len(uint16_t type)
{
	switch (type) {
	case SPDY_SYN_STREAM:
		return 10;
	case SPDY_SYN_REPLY:
	case SPDY_HEADERS:
	case SPDY_SETTINGS:
	case SPDY_PING:
		return 4;
	case SPDY_RST_STREAM:
	case SPDY_GOAWAY:
	case SPDY_WINDOW_UPDATE:
		return 8;
	default:
		return 0;
	}
}

static int parse_control(const uint8_t *p, struct spdy_frame *f, struct vgpu_err *err)
{
	if (f->version != SPDY_VERSION)
		return vgpu_err_set(err, -EPROTO, "spdy: control frame version %u, want 3", f->version);
	if (f->length < control_min_len(f->type))
		return vgpu_err_set(err, -EPROTO, "spdy: control frame type %u too short (%u bytes)", f->type,
				    f->length);
	switch (f->type) {
	case SPDY_SYN_STREAM:
		f->stream_id = get32(p) & SPDY_MAX_STREAM_ID;
		f->assoc_id = get32(p + 4) & SPDY_MAX_STREAM_ID;
		f->priority = p[8] >> 5;
		f->data = p + 10;
		f->data_len = f->length - 10;
		break;
	case SPDY_SYN_REPLY:
	case SPDY_HEADERS:
		f->stream_id = get32(p) & SPDY_MAX_STREAM_ID;
		f->data = p + 4;
		f->data_len = f->length - 4;
		break;
	case SPDY_RST_STREAM:
	case SPDY_GOAWAY:
		f->stream_id = get32(p) & SPDY_MAX_STREAM_ID;
		f->status = get32(p + 4);
		break;
	case SPDY_SETTINGS: {
		uint32_t n = get32(p);
		if (n > (f->length - 4) / 8 || (size_t)n * 8 != f->length - 4)
			return vgpu_err_set(err, -EPROTO, "spdy: SETTINGS with %u entries in %u bytes", n, f->length);
		f->data = p + 4;
		f->data_len = f->length - 4;
		break;
	}
	case SPDY_PING:
		if (f->length != 4)
			return vgpu_err_set(err, -EPROTO, "spdy: PING of %u bytes", f->length);
		f->ping_id = get32(p);
		break;
	case SPDY_WINDOW_UPDATE:
		f->stream_id = get32(p) & SPDY_MAX_STREAM_ID;
		f->delta = get32(p + 4) & 0x7fffffffu;
		if (f->delta == 0)
			return vgpu_err_set(err, -EPROTO, "spdy: WINDOW_UPDATE with delta 0");
		break;
	default:
		/* unknown control types are ignored by the session (SPDY/3 2.2.1) */
		break;
	}
	if ((f->type == SPDY_SYN_STREAM || f->type == SPDY_SYN_REPLY || f->type == SPDY_RST_STREAM ||
	     f->type == SPDY_HEADERS) && f->stream_id == 0)
		return vgpu_err_set(err, -EPROTO, "spdy: control frame type %u for stream 0", f->type);
	return 0;
}

ssize_t spdy_frame_parse(const uint8_t *buf, size_t len, size_t max_len, struct spdy_frame *f,
			 struct vgpu_err *err)
{
	if (len < SPDY_HEADER_LEN)
		return 0;
	memset(f, 0, sizeof(*f));
	uint32_t w0 = get32(buf), w1 = get32(buf + 4);
	f->control = (w0 & 0x80000000u) != 0;
	f->flags = (uint8_t)(w1 >> 24);
	f->length = w1 & SPDY_MAX_LENGTH;
	if (f->length > max_len)
		return vgpu_err_set(err, -EMSGSIZE, "spdy: frame of %u bytes exceeds the limit of %zu", f->length,
				    max_len);
	if (len - SPDY_HEADER_LEN < f->length)
		return 0;
	const uint8_t *p = buf + SPDY_HEADER_LEN;
	if (f->control) {
		f->version = (uint16_t)((w0 >> 16) & 0x7fff);
		f->type = (uint16_t)(w0 & 0xffff);
		int r = parse_control(p, f, err);
		if (r < 0)
			return r;
	} else {
		f->stream_id = w0 & SPDY_MAX_STREAM_ID;
		if (f->stream_id == 0)
			return vgpu_err_set(err, -EPROTO, "spdy: data frame for stream 0");
		f->data = p;
		f->data_len = f->length;
	}
	return (ssize_t)(SPDY_HEADER_LEN + f->length);
}

const char *spdy_headers_get(const struct spdy_headers *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcasecmp(h->names[i], name) == 0)
			return h->values[i];
	return NULL;
}

static int headers_add_n(struct spdy_headers *h, const char *name, size_t name_len, const char *value,
			 size_t value_len)
{
	if (h->n >= SPDY_MAX_HEADERS)
		return -E2BIG;
	char **names = realloc(h->names, (h->n + 1) * sizeof(char *));
	if (!names)
		return -ENOMEM;
	h->names = names;
	char **values = realloc(h->values, (h->n + 1) * sizeof(char *));
	if (!values)
		return -ENOMEM;
	h->values = values;
	size_t *lens = realloc(h->value_lens, (h->n + 1) * sizeof(size_t));
	if (!lens)
		return -ENOMEM;
	h->value_lens = lens;
	char *n = strndup(name, name_len);
	char *v = malloc(value_len + 1);
	if (!n || !v) {
		free(n);
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < name_len; i++)
		n[i] = (char)((n[i] >= 'A' && n[i] <= 'Z') ? n[i] + 32 : n[i]);
	memcpy(v, value, value_len);
	v[value_len] = '\0';
	h->names[h->n] = n;
	h->values[h->n] = v;
	h->value_lens[h->n] = value_len;
	h->n++;
	return 0;
}

int spdy_headers_add(struct spdy_headers *h, const char *name, const char *value)
{
	return headers_add_n(h, name, strlen(name), value, strlen(value));
}

void spdy_headers_free(struct spdy_headers *h)
{
	for (size_t i = 0; i < h->n; i++) {
		free(h->names[i]);
		free(h->values[i]);
	}
	free(h->names);
	free(h->values);
	free(h->value_lens);
	memset(h, 0, sizeof(*h));
}

int spdy_zctx_init(struct spdy_zctx *z, struct vgpu_err *err)
{
	memset(z, 0, sizeof(*z));
	if (inflateInit(&z->inflate) != Z_OK)
		return vgpu_err_set(err, -ENOMEM, "spdy: inflateInit failed");
	z->inflate_ok = true;
	if (deflateInit(&z->deflate, Z_DEFAULT_COMPRESSION) != Z_OK) {
		spdy_zctx_fini(z);
		return vgpu_err_set(err, -ENOMEM, "spdy: deflateInit failed");
	}
	z->deflate_ok = true;
	if (deflateSetDictionary(&z->deflate, (const Bytef *)spdy_dictionary, (uInt)spdy_dictionary_len) != Z_OK) {
		spdy_zctx_fini(z);
		return vgpu_err_set(err, -EINVAL, "spdy: deflateSetDictionary failed");
	}
	return 0;
}

void spdy_zctx_fini(struct spdy_zctx *z)
{
	if (z->inflate_ok)
		inflateEnd(&z->inflate);
	if (z->deflate_ok)
		deflateEnd(&z->deflate);
	z->inflate_ok = z->deflate_ok = false;
}

/* Inflate a whole block (ended by the sender's Z_SYNC_FLUSH) into out, at most max bytes. */
static int inflate_block(z_stream *zs, const uint8_t *in, size_t len, struct spdy_buf *out, size_t max,
			 struct vgpu_err *err)
{
	if (len > UINT32_MAX)
		return vgpu_err_set(err, -EPROTO, "spdy: header block too long");
	zs->next_in = (Bytef *)in;
	zs->avail_in = (uInt)len;
	uint8_t chunk[4096];
	for (;;) {
		zs->next_out = chunk;
		zs->avail_out = sizeof(chunk);
		int zr = inflate(zs, Z_SYNC_FLUSH);
		if (zr == Z_NEED_DICT) {
			if (inflateSetDictionary(zs, (const Bytef *)spdy_dictionary, (uInt)spdy_dictionary_len) != Z_OK)
				return vgpu_err_set(err, -EPROTO, "spdy: header block wants an unknown dictionary");
			continue;
		}
		if (zr != Z_OK && zr != Z_BUF_ERROR)
			return vgpu_err_set(err, -EPROTO, "spdy: header block does not inflate (zlib %d)", zr);
		size_t got = sizeof(chunk) - zs->avail_out;
		if (out->len + got > max)
			return vgpu_err_set(err, -EPROTO, "spdy: header block inflates beyond %zu bytes", max);
		if (spdy_buf_append(out, chunk, got) < 0)
			return vgpu_err_set(err, -ENOMEM, "spdy: out of memory");
		if (zs->avail_in == 0 && zs->avail_out != 0)
			return 0;
		if (zr == Z_BUF_ERROR && got == 0)
			return 0;
	}
}

int spdy_headers_decode(struct spdy_zctx *z, const uint8_t *block, size_t len, struct spdy_headers *out,
			struct vgpu_err *err)
{
	memset(out, 0, sizeof(*out));
	struct spdy_buf raw = { 0 };
	int r = inflate_block(&z->inflate, block, len, &raw, SPDY_MAX_HEADER_BLOCK, err);
	if (r < 0)
		goto fail;
	const uint8_t *p = raw.data;
	size_t left = raw.len;
	r = vgpu_err_set(err, -EPROTO, "spdy: truncated header block");
	if (left < 4)
		goto fail;
	uint32_t count = get32(p);
	p += 4;
	left -= 4;
	if (count > SPDY_MAX_HEADERS) {
		r = vgpu_err_set(err, -EPROTO, "spdy: %u headers in one block (max %d)", count, SPDY_MAX_HEADERS);
		goto fail;
	}
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *field[2];
		uint32_t flen[2];
		for (int k = 0; k < 2; k++) {
			if (left < 4) {
				r = vgpu_err_set(err, -EPROTO, "spdy: truncated header block");
				goto fail;
			}
			flen[k] = get32(p);
			p += 4;
			left -= 4;
			if (flen[k] > left) {
				r = vgpu_err_set(err, -EPROTO, "spdy: header length %u beyond the block", flen[k]);
				goto fail;
			}
			field[k] = p;
			p += flen[k];
			left -= flen[k];
		}
		if (flen[0] == 0 || memchr(field[0], '\0', flen[0])) {
			r = vgpu_err_set(err, -EPROTO, "spdy: empty or invalid header name");
			goto fail;
		}
		r = headers_add_n(out, (const char *)field[0], flen[0], (const char *)field[1], flen[1]);
		if (r < 0) {
			r = vgpu_err_set(err, r, "spdy: cannot store header");
			goto fail;
		}
	}
	spdy_buf_free(&raw);
	vgpu_err_clear(err);
	return 0;
fail:
	spdy_buf_free(&raw);
	spdy_headers_free(out);
	return r;
}

static int put_header(struct spdy_buf *out, uint8_t flags, uint32_t len, uint16_t type)
{
	uint8_t h[8];
	put32(h, 0x80000000u | ((uint32_t)SPDY_VERSION << 16) | type);
	put32(h + 4, ((uint32_t)flags << 24) | len);
	return spdy_buf_append(out, h, sizeof(h));
}

/* Encode and compress h into block. */
static int encode_headers(struct spdy_zctx *z, const struct spdy_headers *h, struct spdy_buf *block)
{
	struct spdy_buf raw = { 0 };
	uint8_t n[4];
	int r;
	put32(n, (uint32_t)h->n);
	r = spdy_buf_append(&raw, n, 4);
	for (size_t i = 0; r == 0 && i < h->n; i++) {
		size_t nl = strlen(h->names[i]), vl = h->value_lens ? h->value_lens[i] : strlen(h->values[i]);
		if (nl > SPDY_MAX_LENGTH || vl > SPDY_MAX_LENGTH) {
			r = -EINVAL;
			break;
		}
		put32(n, (uint32_t)nl);
		r = spdy_buf_append(&raw, n, 4);
		if (r == 0)
			r = spdy_buf_append(&raw, h->names[i], nl);
		put32(n, (uint32_t)vl);
		if (r == 0)
			r = spdy_buf_append(&raw, n, 4);
		if (r == 0)
			r = spdy_buf_append(&raw, h->values[i], vl);
	}
	if (r < 0)
		goto out;
	z_stream *zs = &z->deflate;
	zs->next_in = raw.data;
	zs->avail_in = (uInt)raw.len;
	uint8_t chunk[4096];
	do {
		zs->next_out = chunk;
		zs->avail_out = sizeof(chunk);
		if (deflate(zs, Z_SYNC_FLUSH) == Z_STREAM_ERROR) {
			r = -EINVAL;
			goto out;
		}
		r = spdy_buf_append(block, chunk, sizeof(chunk) - zs->avail_out);
		if (r < 0)
			goto out;
	} while (zs->avail_out == 0);
out:
	spdy_buf_free(&raw);
	return r;
}

static int put_with_headers(struct spdy_buf *out, struct spdy_zctx *z, uint16_t type, uint8_t flags,
			    const uint8_t *prefix, size_t prefix_len, const struct spdy_headers *h)
{
	struct spdy_buf block = { 0 };
	int r = encode_headers(z, h, &block);
	if (r == 0 && prefix_len + block.len > SPDY_MAX_LENGTH)
		r = -EINVAL;
	if (r == 0)
		r = put_header(out, flags, (uint32_t)(prefix_len + block.len), type);
	if (r == 0)
		r = spdy_buf_append(out, prefix, prefix_len);
	if (r == 0)
		r = spdy_buf_append(out, block.data, block.len);
	spdy_buf_free(&block);
	return r;
}

int spdy_put_data(struct spdy_buf *out, uint32_t stream_id, uint8_t flags, const void *data, size_t len)
{
	if (stream_id == 0 || stream_id > SPDY_MAX_STREAM_ID || len > SPDY_MAX_LENGTH)
		return -EINVAL;
	uint8_t h[8];
	put32(h, stream_id);
	put32(h + 4, ((uint32_t)flags << 24) | (uint32_t)len);
	int r = spdy_buf_append(out, h, sizeof(h));
	return r ? r : spdy_buf_append(out, data, len);
}

int spdy_put_syn_stream(struct spdy_buf *out, struct spdy_zctx *z, uint32_t stream_id, uint32_t assoc_id,
			uint8_t priority, uint8_t flags, const struct spdy_headers *h)
{
	if (stream_id == 0 || stream_id > SPDY_MAX_STREAM_ID || assoc_id > SPDY_MAX_STREAM_ID)
		return -EINVAL;
	uint8_t p[10];
	put32(p, stream_id);
	put32(p + 4, assoc_id);
	p[8] = (uint8_t)((priority & 7) << 5);
	p[9] = 0;
	return put_with_headers(out, z, SPDY_SYN_STREAM, flags, p, sizeof(p), h);
}

int spdy_put_syn_reply(struct spdy_buf *out, struct spdy_zctx *z, uint32_t stream_id, uint8_t flags,
		       const struct spdy_headers *h)
{
	if (stream_id == 0 || stream_id > SPDY_MAX_STREAM_ID)
		return -EINVAL;
	uint8_t p[4];
	put32(p, stream_id);
	return put_with_headers(out, z, SPDY_SYN_REPLY, flags, p, sizeof(p), h);
}

static int put_two(struct spdy_buf *out, uint16_t type, uint32_t a, uint32_t b)
{
	uint8_t p[8];
	put32(p, a);
	put32(p + 4, b);
	int r = put_header(out, 0, 8, type);
	return r ? r : spdy_buf_append(out, p, 8);
}

int spdy_put_rst_stream(struct spdy_buf *out, uint32_t stream_id, uint32_t status)
{
	if (stream_id == 0 || stream_id > SPDY_MAX_STREAM_ID)
		return -EINVAL;
	return put_two(out, SPDY_RST_STREAM, stream_id, status);
}

int spdy_put_goaway(struct spdy_buf *out, uint32_t last_good_id, uint32_t status)
{
	if (last_good_id > SPDY_MAX_STREAM_ID)
		return -EINVAL;
	return put_two(out, SPDY_GOAWAY, last_good_id, status);
}

int spdy_put_window_update(struct spdy_buf *out, uint32_t stream_id, uint32_t delta)
{
	if (stream_id > SPDY_MAX_STREAM_ID || delta == 0 || delta > 0x7fffffffu)
		return -EINVAL;
	return put_two(out, SPDY_WINDOW_UPDATE, stream_id, delta);
}

int spdy_put_ping(struct spdy_buf *out, uint32_t id)
{
	uint8_t p[4];
	put32(p, id);
	int r = put_header(out, 0, 4, SPDY_PING);
	return r ? r : spdy_buf_append(out, p, 4);
}

int spdy_put_settings(struct spdy_buf *out, size_t n, const uint32_t *ids, const uint32_t *values)
{
	if (n > (SPDY_MAX_LENGTH - 4) / 8)
		return -EINVAL;
	uint8_t p[8];
	put32(p, (uint32_t)n);
	int r = put_header(out, 0, (uint32_t)(4 + 8 * n), SPDY_SETTINGS);
	if (r == 0)
		r = spdy_buf_append(out, p, 4);
	for (size_t i = 0; r == 0 && i < n; i++) {
		put32(p, ids[i] & 0xffffffu);
		put32(p + 4, values[i]);
		r = spdy_buf_append(out, p, 8);
	}
	return r;
}
