/* The OCI distribution API client (libcurl): manifests and blobs of one repository, with
 * anonymous, HTTP basic and bearer-token (WWW-Authenticate challenge) authentication. Blobs are
 * verified (size and sha256) while they stream, so nothing unverified ever reaches the store. */
#include <curl/curl.h>
#include <errno.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "image_internal.h"
#include "log.h"
#include "util.h"

#define ERR_BODY_MAX 512
#define TOKEN_MAX (64u << 10)
#define CONNECT_TIMEOUT_S 30L
#define STALL_TIME_S 60L

/* ---- sha256 ---- */

struct vgpu_sha256 {
	EVP_MD_CTX *ctx;
};

struct vgpu_sha256 *vgpu_sha256_new(void)
{
	struct vgpu_sha256 *h = vgpu_calloc(1, sizeof(*h));
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1)
		abort();
	return h;
}

void vgpu_sha256_update(struct vgpu_sha256 *h, const void *data, size_t len)
{
	if (EVP_DigestUpdate(h->ctx, data, len) != 1)
		abort();
}

void vgpu_sha256_final(struct vgpu_sha256 *h, char out[72])
{
	unsigned char md[32];
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(h->ctx, md, &n) != 1 || n != 32)
		abort();
	memcpy(out, "sha256:", 7);
	for (int i = 0; i < 32; i++)
		snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void vgpu_sha256_buf(const void *data, size_t len, char out[72])
{
	struct vgpu_sha256 *h = vgpu_sha256_new();
	vgpu_sha256_update(h, data, len);
	vgpu_sha256_final(h, out);
}

int vgpu_sha256_file(const char *path, char out[72], uint64_t *size)
{
	FILE *f = fopen(path, "rbe");
	if (!f)
		return -errno;
	struct vgpu_sha256 *h = vgpu_sha256_new();
	static __thread char buf[1 << 16];
	uint64_t total = 0;
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		vgpu_sha256_update(h, buf, n);
		total += n;
	}
	int r = ferror(f) ? -EIO : 0;
	fclose(f);
	vgpu_sha256_final(h, out);
	if (size)
		*size = total;
	return r;
}

/* ---- session ---- */

/* lock guards bearer and use_basic; the rest is fixed after open. */
struct vgpu_registry {
	char *base;        /* "https://host/v2/path" */
	char *host;
	char *repo_path;
	char *username, *password, *identity_token;
	pthread_mutex_t lock;
	char *bearer;
	bool use_basic;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
		abort();
}

static char *dup_nonempty(const char *s)
{
	return s && *s ? vgpu_strdup(s) : NULL;
}

int vgpu_registry_open(const struct vgpu_config *cfg, const struct vgpu_image_ref *ref,
		       const struct vgpu_registry_auth *auth, struct vgpu_registry **out, struct vgpu_err *err)
{
	pthread_once(&curl_once, curl_init_once);
	struct vgpu_registry *r = vgpu_calloc(1, sizeof(*r));
	const char *host = vgpu_image_ref_host(ref);
	bool insecure = vgpu_registry_host_listed(cfg->insecure_registries, ref->domain) ||
			vgpu_registry_host_listed(cfg->insecure_registries, host);
	r->host = vgpu_strdup(host);
	r->repo_path = vgpu_strdup(ref->path);
	r->base = vgpu_asprintf("%s://%s/v2/%s", insecure ? "http" : "https", host, ref->path);
	if (pthread_mutex_init(&r->lock, NULL) != 0)
		abort();
	if (auth) {
		r->username = dup_nonempty(auth->username);
		r->password = dup_nonempty(auth->password);
		r->identity_token = dup_nonempty(auth->identity_token);
		r->bearer = dup_nonempty(auth->registry_token);
	}
	*out = r;
	(void)err;
	return 0;
}

void vgpu_registry_close(struct vgpu_registry *r)
{
	if (!r)
		return;
	free(r->base);
	free(r->host);
	free(r->repo_path);
	free(r->username);
	if (r->password)
		explicit_bzero(r->password, strlen(r->password));
	free(r->password);
	free(r->identity_token);
	free(r->bearer);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* ---- one HTTP exchange ---- */

enum sink_kind { SINK_MEMORY, SINK_BLOB };

struct xfer {
	CURL *curl;
	enum sink_kind kind;
	long status;      /* of the last response seen */
	/* memory sink */
	char *buf;
	size_t len, cap, max;
	/* blob sink */
	int fd;
	struct vgpu_sha256 *hash;
	uint64_t expect_size;
	const char *digest;
	vgpu_progress_fn progress;
	void *progress_ctx;
	long long last_progress_ns;
	/* error body of a non-2xx answer */
	char errbody[ERR_BODY_MAX + 1];
	size_t errlen;
	/* headers of the final response */
	char *content_type;
	char *www_auth;
	/* why the write callback aborted */
	int abort_code;
	char abort_msg[256];
};

/* The status of the response being received now (after redirects, the final one's). */
static long status_of(struct xfer *x)
{
	long st = 0;
	curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &st);
	x->status = st;
	return st;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct xfer *x = ctx;
	size_t n = size * nmemb;
	long st = status_of(x);
	if (st < 200 || st >= 300) {
		size_t room = ERR_BODY_MAX - x->errlen;
		size_t take = n < room ? n : room;
		memcpy(x->errbody + x->errlen, data, take);
		x->errlen += take;
		x->errbody[x->errlen] = '\0';
		return n;
	}
	if (x->kind == SINK_MEMORY) {
		size_t need;
		if (__builtin_add_overflow(x->len, n, &need) || need > x->max) {
			x->abort_code = -EFBIG;
			snprintf(x->abort_msg, sizeof(x->abort_msg), "larger than %zu bytes", x->max);
			return 0;
		}
		if (need > x->cap) {
			size_t cap = x->cap ? x->cap : 16384;
			while (cap < need)
				cap *= 2;
			char *nb = realloc(x->buf, cap + 1);
			if (!nb) {
				x->abort_code = -ENOMEM;
				snprintf(x->abort_msg, sizeof(x->abort_msg), "out of memory");
				return 0;
			}
			x->buf = nb;
			x->cap = cap;
		}
		memcpy(x->buf + x->len, data, n);
		x->len = need;
		x->buf[x->len] = '\0';
		return n;
	}
	uint64_t total = (uint64_t)x->len + n;
	if (total > x->expect_size) {
		x->abort_code = -EBADMSG;
		snprintf(x->abort_msg, sizeof(x->abort_msg), "more data than the %llu bytes the manifest says",
			 (unsigned long long)x->expect_size);
		return 0;
	}
	vgpu_sha256_update(x->hash, data, n);
	for (size_t off = 0; off < n;) {
		ssize_t w = write(x->fd, data + off, n - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			x->abort_code = -errno;
			snprintf(x->abort_msg, sizeof(x->abort_msg), "write: %s", strerror(errno));
			return 0;
		}
		off += (size_t)w;
	}
	x->len = (size_t)total;
	if (x->progress) {
		long long now = vgpu_now_ns();
		if (now - x->last_progress_ns > 200000000LL || total == x->expect_size) {
			x->last_progress_ns = now;
			x->progress(x->progress_ctx, x->digest, total, x->expect_size);
		}
	}
	return n;
}

static char *header_value(const char *line, size_t n, const char *name)
{
	size_t nl = strlen(name);
	if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return NULL;
	const char *v = line + nl + 1;
	const char *end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	return strndup(v, (size_t)(end - v));
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct xfer *x = ctx;
	size_t n = size * nmemb;
	if (n >= 5 && !strncmp(data, "HTTP/", 5)) {
		/* a new response (after a redirect): forget the previous one's headers */
		free(x->content_type);
		free(x->www_auth);
		x->content_type = x->www_auth = NULL;
		return n;
	}
	char *v;
	if ((v = header_value(data, n, "content-type"))) {
		free(x->content_type);
		x->content_type = v;
	} else if ((v = header_value(data, n, "www-authenticate"))) {
		free(x->www_auth);
		x->www_auth = v;
	}
	return n;
}

static void xfer_reset(struct xfer *x)
{
	x->status = 0;
	x->len = 0;
	x->errlen = 0;
	x->errbody[0] = '\0';
	x->abort_code = 0;
	free(x->content_type);
	free(x->www_auth);
	x->content_type = x->www_auth = NULL;
}

static int curl_code_to_errno(CURLcode c)
{
	switch (c) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_PARTIAL_FILE:
		return -EBADMSG;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* Sockets must not leak into the processes the daemon starts (runc, CNI plugins) mid-pull. */
static curl_socket_t open_socket(void *ctx, curlsocktype purpose, struct curl_sockaddr *addr)
{
	(void)ctx;
	(void)purpose;
	return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

/* Perform a GET (or a POST of form when not NULL) with the given Authorization header value. */
static int perform(struct xfer *x, const char *url, const char *accept, const char *authz, const char *form,
		   struct vgpu_err *err)
{
	xfer_reset(x);
	CURL *c = x->curl;
	curl_easy_reset(c);
	struct curl_slist *hdrs = NULL;
	_cleanup_free_ char *accept_h = accept ? vgpu_asprintf("Accept: %s", accept) : NULL;
	_cleanup_free_ char *auth_h = authz ? vgpu_asprintf("Authorization: %s", authz) : NULL;
	if (accept_h)
		hdrs = curl_slist_append(hdrs, accept_h);
	if (auth_h)
		hdrs = curl_slist_append(hdrs, auth_h);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, STALL_TIME_S);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "vgpu-cri/0.1");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
	if (form)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
	CURLcode rc = curl_easy_perform(c);
	curl_slist_free_all(hdrs);
	if (x->abort_code)
		return vgpu_err_set(err, x->abort_code, "GET %s: %s", url, x->abort_msg);
	if (rc != CURLE_OK)
		return vgpu_err_set(err, curl_code_to_errno(rc), "GET %s: %s", url, curl_easy_strerror(rc));
	status_of(x);
	return 0;
}

static int http_status_error(struct xfer *x, const char *url, struct vgpu_err *err)
{
	int code = -EIO;
	if (x->status == 404)
		code = -ENOENT;
	else if (x->status == 401 || x->status == 403)
		code = -EACCES;
	else if (x->status == 429 || x->status == 503)
		code = -EAGAIN;
	for (size_t i = 0; i < x->errlen; i++)
		if (x->errbody[i] == '\n' || x->errbody[i] == '\r')
			x->errbody[i] = ' ';
	return vgpu_err_set(err, code, "GET %s: HTTP %ld %s", url, x->status, x->errbody);
}

static char *basic_header(const char *user, const char *pass)
{
	_cleanup_free_ char *plain = vgpu_asprintf("%s:%s", user ? user : "", pass ? pass : "");
	size_t n = strlen(plain);
	char *out = vgpu_calloc(1, 4 * ((n + 2) / 3) + 8);
	memcpy(out, "Basic ", 6);
	EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)plain, (int)n);
	explicit_bzero(plain, n);
	return out;
}

/* Answer a bearer challenge: ask the realm for a token (with our credentials if any). */
static int fetch_token(struct vgpu_registry *r, struct xfer *x, const struct vgpu_auth_challenge *ch,
		       struct vgpu_err *err)
{
	CURL *c = x->curl;
	_cleanup_free_ char *scope_default = vgpu_asprintf("repository:%s:pull", r->repo_path);
	const char *scope = ch->scope ? ch->scope : scope_default;
	char *svc_e = curl_easy_escape(c, ch->service ? ch->service : "", 0);
	char *scope_e = curl_easy_escape(c, scope, 0);
	if (!svc_e || !scope_e) {
		curl_free(svc_e);
		curl_free(scope_e);
		return vgpu_err_set(err, -ENOMEM, "out of memory");
	}
	_cleanup_free_ char *url = NULL, *form = NULL, *authz = NULL;
	if (r->identity_token) {
		char *tok_e = curl_easy_escape(c, r->identity_token, 0);
		url = vgpu_strdup(ch->realm);
		form = vgpu_asprintf("grant_type=refresh_token&refresh_token=%s&service=%s&scope=%s&client_id=vgpu-cri",
				     tok_e ? tok_e : "", svc_e, scope_e);
		curl_free(tok_e);
	} else {
		url = vgpu_asprintf("%s%sservice=%s&scope=%s", ch->realm, strchr(ch->realm, '?') ? "&" : "?", svc_e,
				    scope_e);
		if (r->username)
			authz = basic_header(r->username, r->password);
	}
	curl_free(svc_e);
	curl_free(scope_e);
	x->kind = SINK_MEMORY;
	x->max = TOKEN_MAX;
	int rc = perform(x, url, "application/json", authz, form, err);
	if (rc < 0) {
		vgpu_err_prefix(err, "token");
		return rc;
	}
	if (x->status != 200) {
		http_status_error(x, ch->realm, err);
		vgpu_err_prefix(err, "token");
		if (err)
			err->code = -EACCES;
		return -EACCES;
	}
	json_object *o = json_tokener_parse(x->buf ? x->buf : "");
	json_object *t = NULL;
	if (!o || (!json_object_object_get_ex(o, "token", &t) && !json_object_object_get_ex(o, "access_token", &t)) ||
	    !json_object_is_type(t, json_type_string)) {
		json_object_put(o);
		return vgpu_err_set(err, -EACCES, "token from %s: no token in the answer", ch->realm);
	}
	_cleanup_free_ char *bearer = vgpu_asprintf("Bearer %s", json_object_get_string(t));
	json_object_put(o);
	pthread_mutex_lock(&r->lock);
	free(r->bearer);
	r->bearer = steal_pointer(&bearer);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static char *current_authz(struct vgpu_registry *r)
{
	char *a = NULL;
	pthread_mutex_lock(&r->lock);
	if (r->bearer)
		a = strncmp(r->bearer, "Bearer ", 7) ? vgpu_asprintf("Bearer %s", r->bearer) : vgpu_strdup(r->bearer);
	else if (r->use_basic)
		a = basic_header(r->username, r->password);
	pthread_mutex_unlock(&r->lock);
	return a;
}

/* GET with authentication: on a 401, answer the challenge once and try again. */
static int get_authenticated(struct vgpu_registry *r, struct xfer *x, const char *url, const char *accept,
			     struct vgpu_err *err)
{
	for (int attempt = 0;; attempt++) {
		_cleanup_free_ char *authz = current_authz(r);
		/* a blob sink must start from scratch for each attempt */
		if (x->kind == SINK_BLOB && (ftruncate(x->fd, 0) < 0 || lseek(x->fd, 0, SEEK_SET) < 0))
			return vgpu_err_errno(err, errno, "truncate download file");
		enum sink_kind kind = x->kind;
		size_t max = x->max;
		int rc = perform(x, url, accept, authz, NULL, err);
		if (rc < 0)
			return rc;
		if (x->status != 401 || attempt > 0)
			break;
		if (!x->www_auth)
			return vgpu_err_set(err, -EACCES, "GET %s: 401 unauthorized without a challenge", url);
		struct vgpu_auth_challenge ch;
		rc = vgpu_auth_challenge_parse(x->www_auth, &ch, err);
		if (rc < 0) {
			vgpu_err_prefix(err, "GET %s", url);
			return rc;
		}
		if (!strcmp(ch.scheme, "bearer")) {
			rc = fetch_token(r, x, &ch, err);
		} else if (!strcmp(ch.scheme, "basic")) {
			if (!r->username)
				rc = vgpu_err_set(err, -EACCES, "GET %s: 401 unauthorized: registry wants credentials, none given",
						  url);
			pthread_mutex_lock(&r->lock);
			r->use_basic = true;
			pthread_mutex_unlock(&r->lock);
		} else {
			rc = vgpu_err_set(err, -EACCES, "GET %s: unsupported authentication scheme '%s'", url, ch.scheme);
		}
		vgpu_auth_challenge_free(&ch);
		if (rc < 0)
			return rc;
		x->kind = kind;
		x->max = max;
	}
	if (x->status == 401 || x->status == 403) {
		int code = http_status_error(x, url, err);
		vgpu_err_prefix(err, "%s", r->username ? "credentials refused" : "unauthorized (no credentials given)");
		return code;
	}
	if (x->status < 200 || x->status >= 300)
		return http_status_error(x, url, err);
	return 0;
}

static void xfer_done(struct xfer *x)
{
	free(x->buf);
	free(x->content_type);
	free(x->www_auth);
	if (x->curl)
		curl_easy_cleanup(x->curl);
}

static const char *MANIFEST_ACCEPT =
	"application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, "
	"application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

int vgpu_registry_get_manifest(struct vgpu_registry *r, const char *reference, char **body, size_t *len,
			       char **media_type, char digest[72], struct vgpu_err *err)
{
	struct xfer x = { .kind = SINK_MEMORY, .max = VGPU_MANIFEST_MAX, .fd = -1 };
	x.curl = curl_easy_init();
	if (!x.curl)
		return vgpu_err_set(err, -ENOMEM, "curl_easy_init failed");
	_cleanup_free_ char *url = vgpu_asprintf("%s/manifests/%s", r->base, reference);
	int rc = get_authenticated(r, &x, url, MANIFEST_ACCEPT, err);
	if (rc == -ENOENT)
		vgpu_err_prefix(err, "manifest %s not found", reference);
	else if (rc == -EFBIG)
		vgpu_err_prefix(err, "manifest too large");
	if (rc < 0) {
		xfer_done(&x);
		return rc;
	}
	vgpu_sha256_buf(x.buf ? x.buf : "", x.len, digest);
	if (vgpu_digest_valid(reference) && strcmp(reference, digest) != 0) {
		rc = vgpu_err_set(err, -EBADMSG, "manifest %s: digest mismatch: content has %s", reference, digest);
		xfer_done(&x);
		return rc;
	}
	char *ct = x.content_type ? vgpu_strdup(x.content_type) : vgpu_strdup("");
	char *semi = strchr(ct, ';');
	if (semi)
		*semi = '\0';
	*media_type = ct;
	*body = x.buf ? steal_pointer(&x.buf) : vgpu_strdup("");
	*len = x.len;
	xfer_done(&x);
	return 0;
}

int vgpu_registry_get_blob(struct vgpu_registry *r, const char *digest, uint64_t size, int fd,
			   vgpu_progress_fn progress, void *ctx, struct vgpu_err *err)
{
	struct xfer x = { .kind = SINK_BLOB, .fd = fd, .expect_size = size, .digest = digest,
			  .progress = progress, .progress_ctx = ctx };
	x.curl = curl_easy_init();
	if (!x.curl)
		return vgpu_err_set(err, -ENOMEM, "curl_easy_init failed");
	_cleanup_free_ char *url = vgpu_asprintf("%s/blobs/%s", r->base, digest);
	x.hash = vgpu_sha256_new();
	int rc = get_authenticated(r, &x, url, NULL, err);
	char got[72];
	vgpu_sha256_final(x.hash, got);
	x.hash = NULL;
	if (rc == 0 && x.len != size)
		rc = vgpu_err_set(err, -EBADMSG, "blob %s: size mismatch: got %zu bytes, manifest says %llu", digest,
				  x.len, (unsigned long long)size);
	else if (rc == 0 && strcmp(got, digest) != 0)
		rc = vgpu_err_set(err, -EBADMSG, "blob %s: digest mismatch: content has %s", digest, got);
	else if (rc < 0)
		vgpu_err_prefix(err, "blob %s", digest);
	xfer_done(&x);
	return rc;
}
