/* Encoding and decoding of the copy-in volume messages (VOL_PUT and its record stream, VOL_GET; format in
 * agent_proto.h), apart from agent_proto.c for size. Shared by the daemon (cri/xen_vol.c) and the
 * agent (agent_vol.c); every length off the wire is checked before use. */
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


int agent_vol_key_ok(const char *key, size_t len)
{
	if (len == 0 || len > AGENT_MAX_ID_LEN)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = key[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '-' && c != '_')))
			return 0;
	}
	return 1;
}

int agent_vol_put_encode(struct agent_buf *b, const char *key, uint32_t flags, const void *data, size_t len)
{
	int rc;

	if (!key || !agent_vol_key_ok(key, strlen(key)) || (flags & ~AGENT_VOL_FLAGS_ALL) || len > AGENT_VOL_CHUNK)
		return -EINVAL;
	rc = agent_put_str(b, key, strlen(key));
	if (rc == 0)
		rc = agent_put_u32(b, flags);
	if (rc == 0)
		rc = agent_put_str(b, data, len);
	return rc;
}

int agent_vol_put_decode(const uint8_t *payload, size_t len, struct agent_vol_put *out)
{
	struct agent_reader r = { payload, len };
	const char *key, *data;
	size_t key_len, data_len;

	memset(out, 0, sizeof(*out));
	if (agent_get_str(&r, &key, &key_len) < 0 || !agent_vol_key_ok(key, key_len) ||
	    agent_get_u32(&r, &out->flags) < 0 || (out->flags & ~AGENT_VOL_FLAGS_ALL) ||
	    agent_get_str(&r, &data, &data_len) < 0 || data_len > AGENT_VOL_CHUNK || r.left != 0) {
		memset(out, 0, sizeof(*out));
		return -EPROTO;
	}
	memcpy(out->key, key, key_len);
	out->key[key_len] = '\0';
	out->data = (const uint8_t *)data;
	out->len = data_len;
	return 0;
}

int agent_vol_path_ok(const char *path, size_t len)
{
	size_t start = 0, depth = 0;

	if (len == 0 || len > AGENT_VOL_MAX_PATH || memchr(path, '\0', len))
		return 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		size_t n = i - start;
		if (n == 0 || n > 255 || (n == 1 && path[start] == '.') ||
		    (n == 2 && path[start] == '.' && path[start + 1] == '.'))
			return 0;
		if (++depth > AGENT_VOL_MAX_DEPTH)
			return 0;
		start = i + 1;
	}
	return 1;
}

int agent_vol_rec_put(struct agent_buf *b, const struct agent_vol_rec *rec)
{
	size_t more;
	uint8_t *p;
	int rc;

	if (rec->type < AGENT_VOL_DIR || rec->type > AGENT_VOL_LINK || !agent_vol_path_ok(rec->path, rec->path_len) ||
	    (rec->type == AGENT_VOL_DIR && rec->data_len) ||
	    (rec->type == AGENT_VOL_LINK && (rec->data_len == 0 || rec->data_len > AGENT_VOL_MAX_PATH)) ||
	    rec->data_len > AGENT_VOL_MAX_BYTES)
		return -EINVAL;
	more = 16 + rec->path_len + rec->data_len;
	rc = agent_buf_reserve(b, more, AGENT_VOL_MAX_STREAM);
	if (rc < 0)
		return rc;
	p = b->data + b->len;
	put_le32(p, rec->type);
	put_le32(p + 4, rec->mode & 07777u);
	put_le32(p + 8, (uint32_t)rec->path_len);
	memcpy(p + 12, rec->path, rec->path_len);
	p += 12 + rec->path_len;
	put_le32(p, (uint32_t)rec->data_len);
	if (rec->data_len)
		memcpy(p + 4, rec->data, rec->data_len);
	b->len += more;
	return 0;
}

int agent_vol_rec_next(struct agent_reader *r, struct agent_vol_rec *out)
{
	const char *path, *data;
	size_t path_len, data_len;

	memset(out, 0, sizeof(*out));
	if (r->left == 0)
		return 0;
	if (agent_get_u32(r, &out->type) < 0 || agent_get_u32(r, &out->mode) < 0 ||
	    agent_get_str(r, &path, &path_len) < 0 || agent_get_str(r, &data, &data_len) < 0)
		return -EPROTO;
	if (out->type < AGENT_VOL_DIR || out->type > AGENT_VOL_LINK || !agent_vol_path_ok(path, path_len) ||
	    (out->type == AGENT_VOL_DIR && data_len) || data_len > AGENT_VOL_MAX_BYTES ||
	    (out->type == AGENT_VOL_LINK &&
	     (data_len == 0 || data_len > AGENT_VOL_MAX_PATH || memchr(data, '\0', data_len))))
		return -EPROTO;
	out->mode &= 0777u;
	out->path = path;
	out->path_len = path_len;
	out->data = (const uint8_t *)data;
	out->data_len = data_len;
	return 1;
}

int agent_vol_get_encode(struct agent_buf *b, const char *key)
{
	if (!key || !agent_vol_key_ok(key, strlen(key)))
		return -EINVAL;
	return agent_put_str(b, key, strlen(key));
}

int agent_vol_get_decode(const uint8_t *payload, size_t len, char key[AGENT_MAX_ID_LEN + 1])
{
	struct agent_reader r = { payload, len };
	const char *k;
	size_t k_len;

	key[0] = '\0';
	if (agent_get_str(&r, &k, &k_len) < 0 || !agent_vol_key_ok(k, k_len) || r.left != 0)
		return -EPROTO;
	memcpy(key, k, k_len);
	key[k_len] = '\0';
	return 0;
}

static int vol_data_ok(uint32_t flags, size_t len)
{
	return !(flags & ~AGENT_VOL_GET_TRUNCATED) && len <= AGENT_VOL_GET_MAX &&
	       (!(flags & AGENT_VOL_GET_TRUNCATED) || len == AGENT_VOL_GET_MAX);
}

int agent_vol_data_encode(struct agent_buf *b, uint32_t flags, const void *data, size_t len)
{
	int rc;

	if (!vol_data_ok(flags, len))
		return -EINVAL;
	rc = agent_put_u32(b, flags);
	if (rc == 0)
		rc = agent_put_str(b, data, len);
	return rc;
}

int agent_vol_data_decode(const uint8_t *payload, size_t len, struct agent_vol_data *out)
{
	struct agent_reader r = { payload, len };
	const char *data;
	size_t data_len;

	memset(out, 0, sizeof(*out));
	if (agent_get_u32(&r, &out->flags) < 0 || agent_get_str(&r, &data, &data_len) < 0 || r.left != 0 ||
	    !vol_data_ok(out->flags, data_len)) {
		memset(out, 0, sizeof(*out));
		return -EPROTO;
	}
	out->data = (const uint8_t *)data;
	out->len = data_len;
	return 0;
}
