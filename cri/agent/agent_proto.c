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
	if (hdr->type < AGENT_MSG_HELLO || hdr->type > AGENT_MSG_ERROR)
		return -EINVAL;
	return 0;
}

static int buf_reserve(struct agent_buf *b, size_t more)
{
	size_t need, cap;
	uint8_t *data;

	if (__builtin_add_overflow(b->len, more, &need) || need > AGENT_MAX_PAYLOAD)
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
	int rc = buf_reserve(b, 4);

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
	rc = buf_reserve(b, 4 + len);
	if (rc < 0)
		return rc;
	put_le32(b->data + b->len, (uint32_t)len);
	if (len)
		memcpy(b->data + b->len + 4, s, len);
	b->len += 4 + len;
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
