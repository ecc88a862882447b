/* Configuration file parsing (see config.h). The schema below is the single source of truth for
 * keys, types, limits, defaults and their documentation: the parser, --print-default-config and
 * the JSON shown by Status(verbose) all walk it. */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util.h"

#define MAX_CONFIG_BYTES (1024 * 1024)

enum field_type { F_STR, F_INT, F_ENUM, F_STRLIST, F_SECTION, F_HANDLERS };

struct field {
	const char *key;
	enum field_type type;
	size_t offset;              /* into vgpu_config or vgpu_handler_config */
	long long min, max;         /* F_INT */
	const char *const *choices; /* F_ENUM, NULL-terminated */
	const struct field *sub;    /* F_SECTION: fields of the same struct, nested in YAML */
	const char *doc;
};

static const char *const log_levels[] = { "error", "warn", "info", "debug", NULL };
static const char *const cgroup_drivers[] = { "cgroupfs", "systemd", NULL };
static const char *const gpu_backends[] = { "auto", "cuda", "soft", "none", NULL };
static const char *const gpu_pod_process_modes[] = { "auto", "on", "off", NULL };
static const char *const handler_types[] = { "runc", "xen", NULL };

#define C(field) offsetof(struct vgpu_config, field)
#define H(field) offsetof(struct vgpu_handler_config, field)

static const struct field grpc_fields[] = {
	{ "workers", F_INT, C(grpc_workers), 1, 256, NULL, NULL,
	  "threads serving RPCs that may block (pulls, pod and container lifecycle)" },
	{ "fast_workers", F_INT, C(grpc_fast_workers), 1, 64, NULL, NULL,
	  "threads reserved for quick RPCs (Version, Status, lists), so a slow call never blocks them" },
	{ "shutdown_timeout_s", F_INT, C(shutdown_timeout_s), 0, 3600, NULL, NULL,
	  "on SIGTERM/SIGINT: seconds in-flight calls may take before they are cancelled" },
	{ 0 },
};

static const struct field image_fields[] = {
	{ "insecure_registries", F_STRLIST, C(insecure_registries), 0, 0, NULL, NULL,
	  "registries (host or host:port) pulled over plain HTTP; all others need HTTPS" },
	{ "max_concurrent_downloads", F_INT, C(max_concurrent_downloads), 1, 64, NULL, NULL,
	  "layer downloads in parallel per pull" },
	{ 0 },
};

static const struct field cni_fields[] = {
	{ "conf_dir", F_STR, C(cni_conf_dir), 0, 0, NULL, NULL, "CNI network configuration lists" },
	{ "bin_dirs", F_STRLIST, C(cni_bin_dirs), 0, 0, NULL, NULL, "directories searched for CNI plugins" },
	{ 0 },
};

static const struct field streaming_fields[] = {
	{ "address", F_STR, C(streaming_address), 0, 0, NULL, NULL,
	  "Exec/Attach/PortForward server address (host:port; port 0 = random)" },
	{ 0 },
};

static const struct field gpu_fields[] = {
	{ "backend", F_ENUM, C(gpu_backend), 0, 0, gpu_backends, NULL,
	  "auto = cuda if a GPU is present, else GPU pods are refused; soft = software TEST device (CI, demo)" },
	{ "broker_workers", F_INT, C(gpu_broker_workers), 1, 256, NULL, NULL, "broker worker threads" },
	{ "pod_processes", F_ENUM, C(gpu_pod_processes), 0, 0, gpu_pod_process_modes, NULL,
	  "a broker process per GPU pod (its GPU fault domain): auto = on for cuda, off for soft" },
	{ "shim_path", F_STR, C(gpu_shim_path), 0, 0, NULL, NULL,
	  "libvgpu.so, given to GPU containers as libcuda.so.1" },
	{ "metrics_address", F_STR, C(metrics_address), 0, 0, NULL, NULL,
	  "Prometheus /metrics listen address (loopback host:port); empty = off" },
	{ 0 },
};

static const struct field handler_fields[] = {
	{ "type", F_ENUM, H(type), 0, 0, handler_types, NULL, "runc (namespaces on the host) or xen (a domU per pod)" },
	{ "runtime_path", F_STR, H(runtime_path), 0, 0, NULL, NULL, "OCI runtime binary" },
	{ "runtime_root", F_STR, H(runtime_root), 0, 0, NULL, NULL, "OCI runtime state directory (--root)" },
	{ "guest_kernel", F_STR, H(guest_kernel), 0, 0, NULL, NULL, "xen: guest kernel" },
	{ "guest_initrd", F_STR, H(guest_initrd), 0, 0, NULL, NULL, "xen: guest initramfs with vgpu-agent" },
	{ "guest_memory_mb", F_INT, H(guest_memory_mb), 32, 1 << 20, NULL, NULL, "xen: domU memory" },
	{ "guest_vcpus", F_INT, H(guest_vcpus), 1, 128, NULL, NULL, "xen: domU vCPUs" },
	{ "guest_cmdline", F_STR, H(guest_cmdline), 0, 0, NULL, NULL,
	  "xen: guest kernel command line (the initramfs must start vgpu-agent as PID 1)" },
	{ "agent_timeout_s", F_INT, H(agent_timeout_s), 1, 3600, NULL, NULL,
	  "xen: seconds RunPodSandbox waits for the guest agent's HELLO after creating the domU" },
	{ "gpu_memory_default", F_STR, H(gpu_memory_default), 0, 0, NULL, NULL,
	  "GPU memory quota for GPU pods without vgpu.io/gpu-memory (e.g. 4Gi); empty = whole card" },
	{ "gpu_compute_default", F_INT, H(gpu_compute_default), 1, 100, NULL, NULL,
	  "compute share in percent for GPU pods without vgpu.io/gpu-compute" },
	{ "pids_limit", F_INT, H(pids_limit), 0, 4194304, NULL, NULL,
	  "most processes and threads a container may have (its pids cgroup); 0 = no limit" },
	{ 0 },
};

static const struct field top_fields[] = {
	{ "socket", F_STR, C(socket_path), 0, 0, NULL, NULL, "CRI gRPC unix socket (kubelet --container-runtime-endpoint)" },
	{ "state_dir", F_STR, C(state_dir), 0, 0, NULL, NULL, "persistent state: pods, containers, images" },
	{ "run_dir", F_STR, C(run_dir), 0, 0, NULL, NULL, "volatile state: sockets, bundles" },
	{ "log_level", F_ENUM, C(log_level), 0, 0, log_levels, NULL, "error, warn, info or debug (debug logs every RPC with its duration)" },
	{ "cgroup_driver", F_ENUM, C(cgroup_driver), 0, 0, cgroup_drivers, NULL, "must match kubelet's --cgroup-driver" },
	{ "default_runtime_handler", F_STR, C(default_runtime_handler), 0, 0, NULL, NULL,
	  "handler for pods whose RuntimeClass names none" },
	{ "grpc", F_SECTION, 0, 0, 0, NULL, grpc_fields, "gRPC server" },
	{ "images", F_SECTION, 0, 0, 0, NULL, image_fields, "image pulls" },
	{ "cni", F_SECTION, 0, 0, 0, NULL, cni_fields, "pod networking" },
	{ "streaming", F_SECTION, 0, 0, 0, NULL, streaming_fields, "streaming server" },
	{ "gpu", F_SECTION, 0, 0, 0, NULL, gpu_fields, "GPU broker" },
	{ "runtime_handlers", F_HANDLERS, 0, 0, 0, NULL, handler_fields,
	  "CRI runtime handlers by name (a RuntimeClass's handler); replaces the default set when given" },
	{ 0 },
};

static char **strv_dup(const char *const *v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	char **r = vgpu_calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		r[i] = vgpu_strdup(v[i]);
	return r;
}

static void set_str(char **slot, const char *value)
{
	free(*slot);
	*slot = vgpu_strdup(value);
}

static void handler_defaults(struct vgpu_handler_config *h, const char *name, const char *type)
{
	set_str(&h->name, name);
	set_str(&h->type, type);
	set_str(&h->runtime_path, "/usr/sbin/runc");
	set_str(&h->runtime_root, strcmp(type, "xen") == 0 ? "/run/vgpu-cri/guest-runc" : "/run/vgpu-cri/runc");
	set_str(&h->guest_kernel, "/usr/lib/vgpu-cri/guest/vmlinuz");
	set_str(&h->guest_initrd, "/usr/lib/vgpu-cri/guest/initrd.img");
	h->guest_memory_mb = 256;
	h->guest_vcpus = 1;
	set_str(&h->guest_cmdline, "console=hvc0 quiet");
	h->agent_timeout_s = 60;
	set_str(&h->gpu_memory_default, "");
	h->gpu_compute_default = 100;
	h->pids_limit = 4096;
}

static void handler_free(struct vgpu_handler_config *h)
{
	free(h->name);
	free(h->type);
	free(h->runtime_path);
	free(h->runtime_root);
	free(h->guest_kernel);
	free(h->guest_initrd);
	free(h->guest_cmdline);
	free(h->gpu_memory_default);
	memset(h, 0, sizeof(*h));
}

void vgpu_config_defaults(struct vgpu_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->path = vgpu_strdup("(defaults)");
	cfg->socket_path = vgpu_strdup("/run/vgpu-cri/vgpu-cri.sock");
	cfg->state_dir = vgpu_strdup("/var/lib/vgpu-cri");
	cfg->run_dir = vgpu_strdup("/run/vgpu-cri");
	cfg->log_level = vgpu_strdup("info");
	cfg->grpc_workers = 8;
	cfg->grpc_fast_workers = 2;
	cfg->shutdown_timeout_s = 10;
	cfg->cgroup_driver = vgpu_strdup("cgroupfs");
	cfg->default_runtime_handler = vgpu_strdup("runc");
	cfg->insecure_registries = strv_dup((const char *const[]){ "127.0.0.1", "localhost", NULL });
	cfg->max_concurrent_downloads = 3;
	cfg->cni_conf_dir = vgpu_strdup("/etc/cni/net.d");
	cfg->cni_bin_dirs = strv_dup((const char *const[]){ "/opt/cni/bin", "/usr/lib/cni", NULL });
	cfg->streaming_address = vgpu_strdup("127.0.0.1:0");
	cfg->gpu_backend = vgpu_strdup("auto");
	cfg->gpu_broker_workers = 4;
	cfg->gpu_pod_processes = vgpu_strdup("auto");
	cfg->gpu_shim_path = vgpu_strdup("/usr/local/lib/vgpu-cri/libvgpu.so");
	cfg->metrics_address = vgpu_strdup("");
	cfg->n_handlers = 2;
	handler_defaults(&cfg->handlers[0], "runc", "runc");
	handler_defaults(&cfg->handlers[1], "xen", "xen");
}

static void free_fields(void *base, const struct field *fields)
{
	for (const struct field *f = fields; f->key; f++) {
		void *slot = (char *)base + f->offset;
		switch (f->type) {
		case F_STR:
		case F_ENUM:
			free(*(char **)slot);
			*(char **)slot = NULL;
			break;
		case F_STRLIST:
			vgpu_strv_free(*(char ***)slot);
			*(char ***)slot = NULL;
			break;
		case F_SECTION:
			free_fields(base, f->sub);
			break;
		default:
			break;
		}
	}
}

void vgpu_config_free(struct vgpu_config *cfg)
{
	if (!cfg)
		return;
	free_fields(cfg, top_fields);
	for (size_t i = 0; i < cfg->n_handlers; i++)
		handler_free(&cfg->handlers[i]);
	free(cfg->path);
	memset(cfg, 0, sizeof(*cfg));
}

const struct vgpu_handler_config *vgpu_config_handler(const struct vgpu_config *cfg, const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < cfg->n_handlers; i++)
		if (strcmp(cfg->handlers[i].name, name) == 0)
			return &cfg->handlers[i];
	return NULL;
}

/* ---- parsing ---- */

struct parse_ctx {
	yaml_document_t *doc;
	const char *name;
	struct vgpu_err *err;
};

static int node_err(struct parse_ctx *ctx, const yaml_node_t *node, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int node_err(struct parse_ctx *ctx, const yaml_node_t *node, const char *key, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return vgpu_err_set(ctx->err, -EINVAL, "%s:%zu:%zu: key '%s': %s", ctx->name,
			    node->start_mark.line + 1, node->start_mark.column + 1, key, msg);
}

static const char *scalar(const yaml_node_t *node)
{
	return (const char *)node->data.scalar.value;
}

static int parse_int(struct parse_ctx *ctx, const yaml_node_t *node, const char *key, const struct field *f,
		     long long *out)
{
	if (node->type != YAML_SCALAR_NODE)
		return node_err(ctx, node, key, "expected an integer");
	const char *s = scalar(node);
	char *end = NULL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end != '\0')
		return node_err(ctx, node, key, "expected an integer, got '%s'", s);
	if (v < f->min || v > f->max)
		return node_err(ctx, node, key, "%lld is out of range %lld..%lld", v, f->min, f->max);
	*out = v;
	return 0;
}

static int parse_fields(struct parse_ctx *ctx, const yaml_node_t *map, void *base, const struct field *fields,
			const char *prefix);

static int parse_strlist(struct parse_ctx *ctx, const yaml_node_t *node, const char *key, char ***out)
{
	if (node->type != YAML_SEQUENCE_NODE)
		return node_err(ctx, node, key, "expected a list of strings");
	size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	char **v = vgpu_calloc(n + 1, sizeof(char *));
	size_t i = 0;
	for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(ctx->doc, *it);
		if (!item || item->type != YAML_SCALAR_NODE) {
			vgpu_strv_free(v);
			return node_err(ctx, item ? item : node, key, "list items must be strings");
		}
		v[i++] = vgpu_strdup(scalar(item));
	}
	vgpu_strv_free(*out);
	*out = v;
	return 0;
}

static int parse_handlers(struct parse_ctx *ctx, const yaml_node_t *node, const char *key, struct vgpu_config *cfg)
{
	if (node->type != YAML_MAPPING_NODE)
		return node_err(ctx, node, key, "expected a mapping of handler name to settings");
	for (size_t i = 0; i < cfg->n_handlers; i++)
		handler_free(&cfg->handlers[i]);
	cfg->n_handlers = 0;
	for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(ctx->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(ctx->doc, p->value);
		if (!k || !v || k->type != YAML_SCALAR_NODE || !*scalar(k))
			return node_err(ctx, k ? k : node, key, "handler names must be non-empty strings");
		char full[256];
		snprintf(full, sizeof(full), "%s.%s", key, scalar(k));
		if (vgpu_config_handler(cfg, scalar(k)))
			return node_err(ctx, k, full, "duplicate handler");
		if (cfg->n_handlers == VGPU_MAX_HANDLERS)
			return node_err(ctx, k, full, "at most %d handlers", VGPU_MAX_HANDLERS);
		if (v->type != YAML_MAPPING_NODE)
			return node_err(ctx, v, full, "expected a mapping with at least 'type'");
		/* The type decides the defaults, so find it first. */
		const char *type = NULL;
		for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
			yaml_node_t *qk = yaml_document_get_node(ctx->doc, q->key);
			yaml_node_t *qv = yaml_document_get_node(ctx->doc, q->value);
			if (qk && qv && qk->type == YAML_SCALAR_NODE && strcmp(scalar(qk), "type") == 0 &&
			    qv->type == YAML_SCALAR_NODE)
				type = scalar(qv);
		}
		if (!type)
			return node_err(ctx, v, full, "missing 'type' (runc or xen)");
		struct vgpu_handler_config *h = &cfg->handlers[cfg->n_handlers++];
		handler_defaults(h, scalar(k), strcmp(type, "xen") == 0 ? "xen" : "runc");
		int r = parse_fields(ctx, v, h, handler_fields, full);
		if (r < 0)
			return r;
	}
	return 0;
}

static int parse_value(struct parse_ctx *ctx, const yaml_node_t *v, void *base, const struct field *f,
		       const char *full)
{
	void *slot = (char *)base + f->offset;
	switch (f->type) {
	case F_STR:
		if (v->type != YAML_SCALAR_NODE)
			return node_err(ctx, v, full, "expected a string");
		set_str((char **)slot, scalar(v));
		return 0;
	case F_ENUM:
		if (v->type != YAML_SCALAR_NODE)
			return node_err(ctx, v, full, "expected a string");
		for (const char *const *c = f->choices; *c; c++)
			if (strcmp(*c, scalar(v)) == 0) {
				set_str((char **)slot, scalar(v));
				return 0;
			}
		return node_err(ctx, v, full, "'%s' is not one of the allowed values", scalar(v));
	case F_INT:
		return parse_int(ctx, v, full, f, (long long *)slot);
	case F_STRLIST:
		return parse_strlist(ctx, v, full, (char ***)slot);
	case F_SECTION:
		if (v->type != YAML_MAPPING_NODE)
			return node_err(ctx, v, full, "expected a mapping");
		return parse_fields(ctx, v, base, f->sub, full);
	case F_HANDLERS:
		return parse_handlers(ctx, v, full, base);
	}
	return node_err(ctx, v, full, "internal: unknown field type");
}

static int parse_fields(struct parse_ctx *ctx, const yaml_node_t *map, void *base, const struct field *fields,
			const char *prefix)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(ctx->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(ctx->doc, p->value);
		if (!k || !v)
			return vgpu_err_set(ctx->err, -EINVAL, "%s: malformed mapping", ctx->name);
		if (k->type != YAML_SCALAR_NODE)
			return node_err(ctx, k, prefix ? prefix : "(top level)", "keys must be strings");
		char full[256];
		if (prefix)
			snprintf(full, sizeof(full), "%s.%s", prefix, scalar(k));
		else
			snprintf(full, sizeof(full), "%s", scalar(k));
		const struct field *f = fields;
		while (f->key && strcmp(f->key, scalar(k)) != 0)
			f++;
		if (!f->key)
			return node_err(ctx, k, full, "unknown key");
		for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *qk = yaml_document_get_node(ctx->doc, q->key);
			if (qk && qk->type == YAML_SCALAR_NODE && strcmp(scalar(qk), scalar(k)) == 0)
				return node_err(ctx, k, full, "duplicate key");
		}
		int r = parse_value(ctx, v, base, f, full);
		if (r < 0)
			return r;
	}
	return 0;
}

static int check_config(const struct vgpu_config *cfg, const char *name, struct vgpu_err *err)
{
	if (cfg->socket_path[0] != '/')
		return vgpu_err_set(err, -EINVAL, "%s: key 'socket': must be an absolute path", name);
	if (strlen(cfg->socket_path) >= 100)
		return vgpu_err_set(err, -EINVAL, "%s: key 'socket': path longer than 99 bytes", name);
	if (cfg->state_dir[0] != '/')
		return vgpu_err_set(err, -EINVAL, "%s: key 'state_dir': must be an absolute path", name);
	if (cfg->run_dir[0] != '/')
		return vgpu_err_set(err, -EINVAL, "%s: key 'run_dir': must be an absolute path", name);
	if (cfg->n_handlers == 0)
		return vgpu_err_set(err, -EINVAL, "%s: key 'runtime_handlers': at least one handler is needed", name);
	if (!vgpu_config_handler(cfg, cfg->default_runtime_handler))
		return vgpu_err_set(err, -EINVAL, "%s: key 'default_runtime_handler': no handler named '%s'", name,
				    cfg->default_runtime_handler);
	return 0;
}

int vgpu_config_parse(struct vgpu_config *cfg, const char *name, const char *text, size_t len,
		      struct vgpu_err *err)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&parser))
		return vgpu_err_set(err, -ENOMEM, "%s: cannot initialize YAML parser", name);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		int r = vgpu_err_set(err, -EINVAL, "%s:%zu:%zu: invalid YAML: %s", name,
				     parser.problem_mark.line + 1, parser.problem_mark.column + 1,
				     parser.problem ? parser.problem : "syntax error");
		yaml_parser_delete(&parser);
		return r;
	}
	int r = 0;
	struct parse_ctx ctx = { .doc = &doc, .name = name, .err = err };
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (root) { /* an empty file means all defaults */
		if (root->type == YAML_SCALAR_NODE && scalar(root)[0] == '\0')
			r = 0;
		else if (root->type != YAML_MAPPING_NODE)
			r = node_err(&ctx, root, "(top level)", "expected a mapping of settings");
		else
			r = parse_fields(&ctx, root, cfg, top_fields, NULL);
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (r == 0)
		r = check_config(cfg, name, err);
	if (r == 0) {
		free(cfg->path);
		cfg->path = vgpu_strdup(name);
	}
	return r;
}

int vgpu_config_load(struct vgpu_config *cfg, const char *path, bool missing_ok, struct vgpu_err *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r = vgpu_read_file(path, MAX_CONFIG_BYTES, &text, &len, err);
	if (r == -ENOENT && missing_ok)
		return 0;
	if (r < 0)
		return vgpu_err_prefix(err, "config");
	return vgpu_config_parse(cfg, path, text, len, err);
}

/* ---- printing ---- */

/* Length of the UTF-8 sequence at p (its code point in *cp), or 0 if it is malformed. */
static size_t utf8_decode(const unsigned char *p, uint32_t *cp)
{
	size_t n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3
		 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
	if (n == 0)
		return 0;
	*cp = n == 1 ? p[0] : p[0] & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (p[i] & 0x3f);
	}
	return n;
}

static void print_scalar(FILE *out, const char *s)
{
	/* Quote everything that is not a plain word, so the output parses back to the same value. */
	bool plain = *s != '\0';
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      strchr("/._-", *p)))
			plain = false;
	if (plain) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		uint32_t cp;
		size_t n = utf8_decode(p, &cp);
		/* Escaped: what YAML refuses raw (C0 and C1 controls, BOM, U+FFFE/F) and line breaks
		 * (LF, CR, NEL, U+2028/9), which it folds inside quotes. */
		if (n == 0) { /* not UTF-8 (values from libyaml always are) */
			fprintf(out, "\\x%02x", *p);
			n = 1;
		} else if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
			fprintf(out, "\\x%02x", (unsigned)cp);
		else if (cp == 0x2028 || cp == 0x2029 || cp == 0xfeff || cp == 0xfffe || cp == 0xffff)
			fprintf(out, "\\u%04x", (unsigned)cp);
		else if (cp == '"' || cp == '\\')
			fprintf(out, "\\%c", (int)cp);
		else
			fwrite(p, 1, n, out);
		p += n;
	}
	fputc('"', out);
}

static void print_fields(FILE *out, const void *base, const struct field *fields, int indent);

static void print_handlers(FILE *out, const struct vgpu_config *cfg, int indent)
{
	for (size_t i = 0; i < cfg->n_handlers; i++) {
		fprintf(out, "%*s", indent, "");
		print_scalar(out, cfg->handlers[i].name);
		fputs(":\n", out);
		print_fields(out, &cfg->handlers[i], handler_fields, indent + 2);
	}
}

static void print_fields(FILE *out, const void *base, const struct field *fields, int indent)
{
	for (const struct field *f = fields; f->key; f++) {
		const void *slot = (const char *)base + f->offset;
		fprintf(out, "%*s# %s\n%*s%s:", indent, "", f->doc, indent, "", f->key);
		switch (f->type) {
		case F_STR:
		case F_ENUM:
			fputc(' ', out);
			print_scalar(out, *(char *const *)slot);
			fputc('\n', out);
			break;
		case F_INT:
			fprintf(out, " %lld\n", *(const long long *)slot);
			break;
		case F_STRLIST: {
			char *const *v = *(char **const *)slot;
			fputs(" [", out);
			for (size_t i = 0; v && v[i]; i++) {
				if (i)
					fputs(", ", out);
				print_scalar(out, v[i]);
			}
			fputs("]\n", out);
			break;
		}
		case F_SECTION:
			fputc('\n', out);
			print_fields(out, base, f->sub, indent + 2);
			break;
		case F_HANDLERS:
			fputc('\n', out);
			print_handlers(out, base, indent + 2);
			break;
		}
	}
}

void vgpu_config_print(const struct vgpu_config *cfg, FILE *out)
{
	fputs("# vgpu-cri configuration (/etc/vgpu-cri/config.yaml). Every key is optional; shown are the\n"
	      "# defaults. Unknown keys and wrong types stop the daemon with file:line:column.\n",
	      out);
	print_fields(out, cfg, top_fields, 0);
}

static void json_fields(json_object *obj, const void *base, const struct field *fields);

static void json_handlers(json_object *obj, const struct vgpu_config *cfg)
{
	for (size_t i = 0; i < cfg->n_handlers; i++) {
		json_object *h = json_object_new_object();
		json_fields(h, &cfg->handlers[i], handler_fields);
		json_object_object_add(obj, cfg->handlers[i].name, h);
	}
}

static void json_fields(json_object *obj, const void *base, const struct field *fields)
{
	for (const struct field *f = fields; f->key; f++) {
		const void *slot = (const char *)base + f->offset;
		json_object *v = NULL;
		switch (f->type) {
		case F_STR:
		case F_ENUM:
			v = json_object_new_string(*(char *const *)slot);
			break;
		case F_INT:
			v = json_object_new_int64(*(const long long *)slot);
			break;
		case F_STRLIST: {
			v = json_object_new_array();
			char *const *s = *(char **const *)slot;
			for (size_t i = 0; s && s[i]; i++)
				json_object_array_add(v, json_object_new_string(s[i]));
			break;
		}
		case F_SECTION:
			v = json_object_new_object();
			json_fields(v, base, f->sub);
			break;
		case F_HANDLERS:
			v = json_object_new_object();
			json_handlers(v, base);
			break;
		}
		json_object_object_add(obj, f->key, v);
	}
}

char *vgpu_config_to_json(const struct vgpu_config *cfg)
{
	json_object *obj = json_object_new_object();
	json_fields(obj, cfg, top_fields);
	json_object_object_add(obj, "config_path", json_object_new_string(cfg->path));
	char *r = vgpu_strdup(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(obj);
	return r;
}
