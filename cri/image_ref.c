/* Image references, digests and registry auth challenges: the string grammar of the OCI
 * distribution world, normalized the way docker and containerd do it. No I/O here. */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "image_internal.h"
#include "util.h"

#define NAME_MAX_LEN 255
#define TAG_MAX_LEN 128

static bool is_alnum_lower(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | "__" | "-"+ */
static bool path_component_valid(const char *p, size_t n)
{
	if (n == 0 || !is_alnum_lower(p[0]) || !is_alnum_lower(p[n - 1]))
		return false;
	for (size_t i = 0; i < n;) {
		if (is_alnum_lower(p[i])) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < n && !is_alnum_lower(p[j]))
			j++;
		size_t sep = j - i;
		bool ok = false;
		if (sep == 1 && (p[i] == '.' || p[i] == '_' || p[i] == '-'))
			ok = true;
		else if (sep == 2 && p[i] == '_' && p[i + 1] == '_')
			ok = true;
		else {
			ok = true;
			for (size_t k = i; k < j; k++)
				if (p[k] != '-')
					ok = false;
		}
		if (!ok)
			return false;
		i = j;
	}
	return true;
}

static bool path_valid(const char *path)
{
	const char *p = path;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (!path_component_valid(p, n))
			return false;
		if (!slash)
			return true;
		p = slash + 1;
	}
}

/* host labels [a-zA-Z0-9-] separated by '.', optional :port (digits) */
static bool domain_valid(const char *d)
{
	const char *colon = strchr(d, ':');
	size_t hostlen = colon ? (size_t)(colon - d) : strlen(d);
	if (hostlen == 0)
		return false;
	bool label_start = true;
	for (size_t i = 0; i < hostlen; i++) {
		char c = d[i];
		if (c == '.') {
			if (label_start || d[i - 1] == '-')
				return false;
			label_start = true;
			continue;
		}
		if (!isalnum((unsigned char)c) && c != '-')
			return false;
		if (label_start && c == '-')
			return false;
		label_start = false;
	}
	if (label_start || d[hostlen - 1] == '-')
		return false;
	if (colon) {
		const char *port = colon + 1;
		size_t n = strlen(port);
		if (n == 0 || n > 5)
			return false;
		for (size_t i = 0; i < n; i++)
			if (!isdigit((unsigned char)port[i]))
				return false;
	}
	return true;
}

static bool tag_valid(const char *t)
{
	size_t n = strlen(t);
	if (n == 0 || n > TAG_MAX_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = t[i];
		bool word = isalnum((unsigned char)c) || c == '_';
		if (!word && (i == 0 || (c != '.' && c != '-')))
			return false;
	}
	return true;
}

bool vgpu_digest_valid(const char *digest)
{
	if (!digest || strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71)
		return false;
	for (size_t i = 7; i < 71; i++)
		if (!((digest[i] >= '0' && digest[i] <= '9') || (digest[i] >= 'a' && digest[i] <= 'f')))
			return false;
	return true;
}

bool vgpu_image_id_like(const char *s)
{
	if (vgpu_digest_valid(s))
		return true;
	if (strlen(s) != 64)
		return false;
	_cleanup_free_ char *d = vgpu_asprintf("sha256:%s", s);
	return vgpu_digest_valid(d);
}

void vgpu_image_ref_free(struct vgpu_image_ref *ref)
{
	if (!ref)
		return;
	free(ref->domain);
	free(ref->path);
	free(ref->tag);
	free(ref->digest);
	memset(ref, 0, sizeof(*ref));
}

int vgpu_image_ref_parse(const char *s, struct vgpu_image_ref *ref, struct vgpu_err *err)
{
	memset(ref, 0, sizeof(*ref));
	if (!s || !*s)
		return vgpu_err_set(err, -EINVAL, "image reference is empty");
	if (strlen(s) > 1024)
		return vgpu_err_set(err, -EINVAL, "image reference too long");
	if (vgpu_image_id_like(s) && !strchr(s, '/'))
		return vgpu_err_set(err, -EINVAL, "%s: an image id, not a reference", s);
	_cleanup_free_ char *copy = vgpu_strdup(s);
	_cleanup_free_ char *digest = NULL, *tag = NULL, *domain = NULL, *path = NULL;

	char *at = strchr(copy, '@');
	if (at) {
		*at = '\0';
		digest = vgpu_strdup(at + 1);
		if (!vgpu_digest_valid(digest))
			return vgpu_err_set(err, -EINVAL, "%s: invalid digest (want sha256:<64 hex>)", s);
	}
	char *last_slash = strrchr(copy, '/');
	char *colon = strrchr(last_slash ? last_slash : copy, ':');
	if (colon) {
		*colon = '\0';
		tag = vgpu_strdup(colon + 1);
		if (!tag_valid(tag))
			return vgpu_err_set(err, -EINVAL, "%s: invalid tag '%s'", s, tag);
	}
	char *name = copy;
	if (!*name)
		return vgpu_err_set(err, -EINVAL, "%s: empty repository name", s);
	char *slash = strchr(name, '/');
	bool has_domain = false;
	if (slash) {
		*slash = '\0';
		bool upper = false;
		for (char *p = name; *p; p++)
			if (isupper((unsigned char)*p))
				upper = true;
		has_domain = strchr(name, '.') || strchr(name, ':') || !strcmp(name, "localhost") || upper;
		*slash = '/';
	}
	if (has_domain) {
		*slash = '\0';
		domain = vgpu_strdup(name);
		path = vgpu_strdup(slash + 1);
		if (!domain_valid(domain))
			return vgpu_err_set(err, -EINVAL, "%s: invalid registry host '%s'", s, domain);
	} else {
		domain = vgpu_strdup("docker.io");
		path = vgpu_strdup(name);
	}
	if (!strcmp(domain, "index.docker.io")) {
		free(domain);
		domain = vgpu_strdup("docker.io");
	}
	if (!strcmp(domain, "docker.io") && !strchr(path, '/')) {
		char *p = vgpu_asprintf("library/%s", path);
		free(path);
		path = p;
	}
	if (!path_valid(path))
		return vgpu_err_set(err, -EINVAL,
				    "%s: invalid repository name '%s' (lower case letters, digits, separators)", s,
				    path);
	if (strlen(domain) + 1 + strlen(path) > NAME_MAX_LEN)
		return vgpu_err_set(err, -EINVAL, "%s: repository name longer than %d", s, NAME_MAX_LEN);
	if (!tag && !digest)
		tag = vgpu_strdup("latest");
	ref->domain = steal_pointer(&domain);
	ref->path = steal_pointer(&path);
	ref->tag = steal_pointer(&tag);
	ref->digest = steal_pointer(&digest);
	return 0;
}

char *vgpu_image_ref_name(const struct vgpu_image_ref *ref)
{
	return vgpu_asprintf("%s/%s", ref->domain, ref->path);
}

char *vgpu_image_ref_string(const struct vgpu_image_ref *ref)
{
	if (ref->tag)
		return vgpu_asprintf("%s/%s:%s", ref->domain, ref->path, ref->tag);
	return vgpu_asprintf("%s/%s@%s", ref->domain, ref->path, ref->digest);
}

const char *vgpu_image_ref_host(const struct vgpu_image_ref *ref)
{
	return strcmp(ref->domain, "docker.io") ? ref->domain : "registry-1.docker.io";
}

bool vgpu_registry_host_listed(char *const *list, const char *host)
{
	if (!list)
		return false;
	const char *colon = strrchr(host, ':');
	size_t hostlen = colon ? (size_t)(colon - host) : strlen(host);
	for (char *const *p = list; *p; p++) {
		if (!strcmp(*p, host))
			return true;
		if (!strchr(*p, ':') && strlen(*p) == hostlen && !strncmp(*p, host, hostlen))
			return true;
	}
	return false;
}

void vgpu_auth_challenge_free(struct vgpu_auth_challenge *c)
{
	if (!c)
		return;
	free(c->scheme);
	free(c->realm);
	free(c->service);
	free(c->scope);
	memset(c, 0, sizeof(*c));
}

/* One name=value parameter at *pp (value quoted with \-escapes, or a token). Returns 1 and
 * advances *pp, 0 at the start of another challenge or the end, -EINVAL if malformed. */
static int challenge_param(const char **pp, const char **key, size_t *keylen, char **value)
{
	const char *p = *pp;
	while (*p == ' ' || *p == '\t' || *p == ',')
		p++;
	if (!*p)
		return 0;
	*key = p;
	while (*p && *p != '=' && *p != ' ' && *p != ',')
		p++;
	*keylen = (size_t)(p - *key);
	if (*p != '=')
		return 0; /* "Basic realm=.., Bearer ..": a second challenge; only the first is used */
	p++;
	char *val = vgpu_calloc(1, strlen(p) + 1);
	size_t n = 0;
	if (*p == '"') {
		p++;
		while (*p && *p != '"') {
			if (*p == '\\' && p[1])
				p++;
			val[n++] = *p++;
		}
		if (*p != '"') {
			free(val);
			return -EINVAL;
		}
		p++;
	} else {
		while (*p && *p != ',' && *p != ' ')
			val[n++] = *p++;
	}
	*value = val;
	*pp = p;
	return 1;
}

/* WWW-Authenticate: Bearer realm="https://auth/token",service="registry",scope="repository:x:pull" */
int vgpu_auth_challenge_parse(const char *header, struct vgpu_auth_challenge *c, struct vgpu_err *err)
{
	memset(c, 0, sizeof(*c));
	const char *p = header;
	while (*p == ' ' || *p == '\t')
		p++;
	const char *start = p;
	while (*p && *p != ' ' && *p != '\t' && *p != ',')
		p++;
	if (p == start)
		return vgpu_err_set(err, -EINVAL, "empty authentication challenge");
	c->scheme = strndup(start, (size_t)(p - start));
	if (!c->scheme)
		abort();
	for (char *q = c->scheme; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	const char *key;
	size_t keylen;
	char *val;
	int r;
	while ((r = challenge_param(&p, &key, &keylen, &val)) > 0) {
		char **slot = NULL;
		if (keylen == 5 && !strncasecmp(key, "realm", 5))
			slot = &c->realm;
		else if (keylen == 7 && !strncasecmp(key, "service", 7))
			slot = &c->service;
		else if (keylen == 5 && !strncasecmp(key, "scope", 5))
			slot = &c->scope;
		if (slot) {
			free(*slot);
			*slot = val;
		} else {
			free(val);
		}
	}
	if (r < 0) {
		vgpu_auth_challenge_free(c);
		return vgpu_err_set(err, -EINVAL, "unterminated quoted value in challenge '%s'", header);
	}
	if (!strcmp(c->scheme, "bearer") && (!c->realm || !*c->realm)) {
		vgpu_auth_challenge_free(c);
		return vgpu_err_set(err, -EINVAL, "bearer challenge without realm: '%s'", header);
	}
	return 0;
}
