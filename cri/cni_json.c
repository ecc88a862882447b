/* The JSON side of CNI: config files into a normalized network list, the runtime config and the
 * per-plugin stdin config (capabilities filtered per plugin), results and error results parsed.
 * Formats per the CNI spec 1.0.0 (and 0.3.x/0.4.0, whose "ips" carry a "version"). */
#include "cni_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "util.h"

static const char *const supported_versions[] = { "0.3.0", "0.3.1", "0.4.0", "1.0.0", NULL };

bool vgpu_cni_version_supported(const char *version)
{
	for (size_t i = 0; version && supported_versions[i]; i++)
		if (strcmp(version, supported_versions[i]) == 0)
			return true;
	return false;
}

bool vgpu_cni_is_config_file(const char *name)
{
	const char *dot = strrchr(name, '.');
	if (name[0] == '.' || !dot)
		return false;
	return strcmp(dot, ".conf") == 0 || strcmp(dot, ".conflist") == 0 || strcmp(dot, ".json") == 0;
}

static const char *get_str(json_object *o, const char *key)
{
	json_object *v;
	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* Network names as the spec allows: alphanumerics, '_', '.', '-'. */
static bool valid_network_name(const char *s)
{
	if (!s || !*s || strlen(s) > 128)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
			return false;
	return true;
}

static bool valid_plugin_type(const char *s)
{
	return s && *s && strlen(s) <= 255 && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int check_list(const char *file, json_object *list, struct vgpu_err *err)
{
	const char *name = get_str(list, "name"), *version = get_str(list, "cniVersion");
	if (!valid_network_name(name))
		return vgpu_err_set(err, -EINVAL, "CNI config %s: \"name\" missing or not a valid network name", file);
	if (!version)
		return vgpu_err_set(err, -EINVAL, "CNI config %s: \"cniVersion\" missing", file);
	if (!vgpu_cni_version_supported(version))
		return vgpu_err_set(err, -EINVAL, "CNI config %s: cniVersion %.32s is not supported (0.3.0 .. 1.0.0)", file,
				    version);
	json_object *plugins;
	if (!json_object_object_get_ex(list, "plugins", &plugins) || !json_object_is_type(plugins, json_type_array) ||
	    json_object_array_length(plugins) == 0)
		return vgpu_err_set(err, -EINVAL, "CNI config %s: \"plugins\" missing or empty", file);
	for (size_t i = 0; i < json_object_array_length(plugins); i++) {
		json_object *p = json_object_array_get_idx(plugins, i);
		if (!json_object_is_type(p, json_type_object))
			return vgpu_err_set(err, -EINVAL, "CNI config %s: plugins[%zu] is not an object", file, i);
		if (!valid_plugin_type(get_str(p, "type")))
			return vgpu_err_set(err, -EINVAL, "CNI config %s: plugins[%zu]: \"type\" missing or not a plain name",
					    file, i);
	}
	return 0;
}

int vgpu_cni_parse_config(const char *file, const char *text, json_object **out, struct vgpu_err *err)
{
	enum json_tokener_error jerr;
	json_object *o = json_tokener_parse_verbose(text, &jerr);
	if (!o)
		return vgpu_err_set(err, -EINVAL, "CNI config %s: not JSON: %s", file, json_tokener_error_desc(jerr));
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return vgpu_err_set(err, -EINVAL, "CNI config %s: not a JSON object", file);
	}
	json_object *plugins;
	if (!json_object_object_get_ex(o, "plugins", &plugins)) {
		/* A single plugin's config: its name and cniVersion become the list's. */
		json_object *list = json_object_new_object();
		json_object *v;
		if (json_object_object_get_ex(o, "name", &v))
			json_object_object_add(list, "name", json_object_get(v));
		if (json_object_object_get_ex(o, "cniVersion", &v))
			json_object_object_add(list, "cniVersion", json_object_get(v));
		json_object *arr = json_object_new_array();
		json_object_array_add(arr, o);
		json_object_object_add(list, "plugins", arr);
		o = list;
	}
	int r = check_list(file, o, err);
	if (r < 0) {
		json_object_put(o);
		return r;
	}
	*out = o;
	return 0;
}

static json_object *strv_array(const char *const *v)
{
	json_object *a = json_object_new_array();
	for (size_t i = 0; v && v[i]; i++)
		json_object_array_add(a, json_object_new_string(v[i]));
	return a;
}

static json_object *port_mappings(const struct vgpu_cni_pod *pod)
{
	json_object *a = json_object_new_array();
	for (size_t i = 0; i < pod->n_ports; i++) {
		const struct vgpu_cni_port_mapping *p = &pod->ports[i];
		if (p->host_port <= 0)
			continue;
		char proto[8] = "tcp";
		if (p->protocol && *p->protocol) {
			snprintf(proto, sizeof(proto), "%s", p->protocol);
			for (char *c = proto; *c; c++)
				*c = (char)tolower((unsigned char)*c);
		}
		json_object *m = json_object_new_object();
		json_object_object_add(m, "hostPort", json_object_new_int(p->host_port));
		json_object_object_add(m, "containerPort", json_object_new_int(p->container_port));
		json_object_object_add(m, "protocol", json_object_new_string(proto));
		if (p->host_ip && *p->host_ip)
			json_object_object_add(m, "hostIP", json_object_new_string(p->host_ip));
		json_object_array_add(a, m);
	}
	return a;
}

json_object *vgpu_cni_runtime_config(const struct vgpu_cni_pod *pod)
{
	json_object *rc = json_object_new_object();
	json_object *ports = port_mappings(pod);
	if (json_object_array_length(ports) > 0)
		json_object_object_add(rc, "portMappings", ports);
	else
		json_object_put(ports);
	const struct vgpu_cni_bandwidth *bw = pod->bandwidth;
	if (bw && (bw->ingress_rate || bw->egress_rate)) {
		json_object *b = json_object_new_object();
		if (bw->ingress_rate) {
			json_object_object_add(b, "ingressRate", json_object_new_uint64(bw->ingress_rate));
			json_object_object_add(b, "ingressBurst", json_object_new_uint64(bw->ingress_burst));
		}
		if (bw->egress_rate) {
			json_object_object_add(b, "egressRate", json_object_new_uint64(bw->egress_rate));
			json_object_object_add(b, "egressBurst", json_object_new_uint64(bw->egress_burst));
		}
		json_object_object_add(rc, "bandwidth", b);
	}
	if ((pod->dns_servers && pod->dns_servers[0]) || (pod->dns_searches && pod->dns_searches[0]) ||
	    (pod->dns_options && pod->dns_options[0])) {
		json_object *d = json_object_new_object();
		json_object_object_add(d, "servers", strv_array(pod->dns_servers));
		json_object_object_add(d, "searches", strv_array(pod->dns_searches));
		json_object_object_add(d, "options", strv_array(pod->dns_options));
		json_object_object_add(rc, "dns", d);
	}
	return rc;
}

static json_object *deep_copy(json_object *o)
{
	json_object *c = NULL;
	if (json_object_deep_copy(o, &c, NULL) < 0)
		abort(); /* only out of memory */
	return c;
}

json_object *vgpu_cni_plugin_config(json_object *list, size_t index, json_object *runtime_config,
				    json_object *prev_result)
{
	json_object *plugins = NULL;
	json_object_object_get_ex(list, "plugins", &plugins);
	json_object *conf = deep_copy(json_object_array_get_idx(plugins, index));
	json_object_object_add(conf, "name", json_object_new_string(get_str(list, "name")));
	json_object_object_add(conf, "cniVersion", json_object_new_string(get_str(list, "cniVersion")));
	/* Only what the plugin asked for: a plugin given a capability it does not know may fail. */
	json_object_object_del(conf, "runtimeConfig");
	json_object *caps, *rc = json_object_new_object();
	if (runtime_config && json_object_object_get_ex(conf, "capabilities", &caps) &&
	    json_object_is_type(caps, json_type_object)) {
		json_object_object_foreach(caps, key, val)
		{
			json_object *data;
			if (json_object_get_boolean(val) && json_object_object_get_ex(runtime_config, key, &data))
				json_object_object_add(rc, key, deep_copy(data));
		}
	}
	if (json_object_object_length(rc) > 0)
		json_object_object_add(conf, "runtimeConfig", rc);
	else
		json_object_put(rc);
	json_object_object_del(conf, "prevResult");
	if (prev_result)
		json_object_object_add(conf, "prevResult", deep_copy(prev_result));
	return conf;
}

static char *strip_prefix(const char *cidr)
{
	char *ip = vgpu_strdup(cidr);
	char *slash = strchr(ip, '/');
	if (slash)
		*slash = '\0';
	return ip;
}

static void add_ip(struct vgpu_cni_result *out, const char *address, const char *gateway, int iface)
{
	out->ips = realloc(out->ips, (out->n_ips + 1) * sizeof(*out->ips));
	if (!out->ips)
		abort();
	struct vgpu_cni_ip *ip = &out->ips[out->n_ips++];
	ip->address = vgpu_strdup(address);
	ip->ip = strip_prefix(address);
	ip->gateway = vgpu_strdup(gateway ? gateway : "");
	ip->interface = iface;
	ip->ipv6 = strchr(address, ':') != NULL;
}

static int parse_ips(const char *network, json_object *ips, struct vgpu_cni_result *out, struct vgpu_err *err)
{
	if (!json_object_is_type(ips, json_type_array))
		return vgpu_err_set(err, -EINVAL, "CNI network %s: result \"ips\" is not an array", network);
	for (size_t i = 0; i < json_object_array_length(ips); i++) {
		json_object *e = json_object_array_get_idx(ips, i), *idx;
		const char *addr = json_object_is_type(e, json_type_object) ? get_str(e, "address") : NULL;
		if (!addr)
			return vgpu_err_set(err, -EINVAL, "CNI network %s: result ips[%zu] has no address", network, i);
		int iface = -1;
		if (json_object_object_get_ex(e, "interface", &idx) && json_object_is_type(idx, json_type_int)) {
			int64_t v = json_object_get_int64(idx);
			if (v < 0 || (size_t)v >= out->n_interfaces)
				return vgpu_err_set(err, -EINVAL, "CNI network %s: result ips[%zu].interface %lld out of range",
						    network, i, (long long)v);
			iface = (int)v;
		}
		add_ip(out, addr, get_str(e, "gateway"), iface);
	}
	return 0;
}

static void parse_interfaces(json_object *ifs, struct vgpu_cni_result *out)
{
	if (!json_object_is_type(ifs, json_type_array))
		return;
	size_t n = json_object_array_length(ifs);
	out->interfaces = vgpu_calloc(n, sizeof(*out->interfaces));
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(ifs, i);
		const char *name = json_object_is_type(e, json_type_object) ? get_str(e, "name") : NULL;
		out->interfaces[i].name = vgpu_strdup(name);
		out->interfaces[i].mac = vgpu_strdup(name ? get_str(e, "mac") : "");
		out->interfaces[i].sandbox = vgpu_strdup(name ? get_str(e, "sandbox") : "");
	}
	out->n_interfaces = n;
}

int vgpu_cni_parse_result(const char *network, const char *text, struct vgpu_cni_result *out,
			  struct vgpu_err *err)
{
	memset(out, 0, sizeof(*out));
	enum json_tokener_error jerr;
	json_object *o = json_tokener_parse_verbose(text, &jerr);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return vgpu_err_set(err, -EINVAL, "CNI network %s: result is not a JSON object%s%s", network,
				    o ? "" : ": ", o ? "" : json_tokener_error_desc(jerr));
	}
	out->network = vgpu_strdup(network);
	out->cni_version = vgpu_strdup(get_str(o, "cniVersion"));
	out->json = vgpu_strdup(text);
	json_object *v;
	int r = 0;
	if (json_object_object_get_ex(o, "interfaces", &v))
		parse_interfaces(v, out);
	if (json_object_object_get_ex(o, "ips", &v))
		r = parse_ips(network, v, out, err);
	/* 0.1.0/0.2.0: "ip4": {"ip": "10.1.0.5/16", "gateway": ...}, "ip6" likewise. */
	const char *old_keys[] = { "ip4", "ip6" };
	for (size_t k = 0; r == 0 && k < 2; k++)
		if (json_object_object_get_ex(o, old_keys[k], &v) && json_object_is_type(v, json_type_object) &&
		    get_str(v, "ip"))
			add_ip(out, get_str(v, "ip"), get_str(v, "gateway"), -1);
	json_object_put(o);
	if (r < 0)
		vgpu_cni_result_free(out);
	return r;
}

void vgpu_cni_describe_failure(const char *out, const char *errout, int status, char *buf, size_t len)
{
	json_object *o = out ? json_tokener_parse(out) : NULL;
	const char *msg = o && json_object_is_type(o, json_type_object) ? get_str(o, "msg") : NULL;
	if (msg) {
		json_object *code;
		long long c = json_object_object_get_ex(o, "code", &code) ? json_object_get_int64(code) : 0;
		const char *details = get_str(o, "details");
		snprintf(buf, len, "%s (code %lld)%s%s", msg, c, details && *details ? ": " : "",
			 details && *details ? details : "");
	} else if (errout && *errout) {
		/* Last non-empty line of stderr. */
		size_t n = strlen(errout);
		while (n > 0 && (errout[n - 1] == '\n' || errout[n - 1] == '\r'))
			n--;
		size_t start = n;
		while (start > 0 && errout[start - 1] != '\n')
			start--;
		snprintf(buf, len, "%.*s", (int)(n - start), errout + start);
	} else if (WIFEXITED(status)) {
		snprintf(buf, len, "exit status %d, no error message", WEXITSTATUS(status));
	} else {
		snprintf(buf, len, "killed by signal %d", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	}
	json_object_put(o);
}

const char *vgpu_cni_result_primary_ip(const struct vgpu_cni_result *r)
{
	for (size_t i = 0; r && i < r->n_ips; i++)
		if (!r->ips[i].ipv6)
			return r->ips[i].ip;
	return r && r->n_ips ? r->ips[0].ip : "";
}

void vgpu_cni_result_free(struct vgpu_cni_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_interfaces; i++) {
		free(r->interfaces[i].name);
		free(r->interfaces[i].mac);
		free(r->interfaces[i].sandbox);
	}
	for (size_t i = 0; i < r->n_ips; i++) {
		free(r->ips[i].address);
		free(r->ips[i].ip);
		free(r->ips[i].gateway);
	}
	free(r->interfaces);
	free(r->ips);
	free(r->network);
	free(r->cni_version);
	free(r->json);
	memset(r, 0, sizeof(*r));
}
