/* cni_tool: drives the CNI module from the command line for test/integration/test_cni.py (real
 * plugins, real namespaces), without the daemon. Each call is a fresh process, as after a restart.
 *
 * Usage: cni_tool --conf-dir D --bin-dir B [--bin-dir B2...] --state-dir S COMMAND ARGS...
 *   ready                          prints "ready" or why not; exit 1 when not ready
 *   netns-create PATH | netns-remove PATH | netns-exists PATH
 *   add ID NETNS [--port HOSTIP:HOSTPORT:CONTAINERPORT/PROTO]... prints the result as JSON
 *   del ID [NETNS]
 *   cached ID                      prints the cached result as JSON
 * Errors: "error CODE: message" on stderr, exit 1. */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni.h"
#include "config.h"
#include "util.h"

#define MAX_PORTS 16

static int fail(const struct vgpu_err *err)
{
	fprintf(stderr, "error %d: %s\n", err->code, err->msg);
	return 1;
}

static void print_result(const struct vgpu_cni_result *r)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "network", json_object_new_string(r->network));
	json_object_object_add(o, "cniVersion", json_object_new_string(r->cni_version));
	json_object_object_add(o, "ip", json_object_new_string(vgpu_cni_result_primary_ip(r)));
	json_object *ips = json_object_new_array();
	for (size_t i = 0; i < r->n_ips; i++)
		json_object_array_add(ips, json_object_new_string(r->ips[i].address));
	json_object_object_add(o, "ips", ips);
	json_object *ifs = json_object_new_array();
	for (size_t i = 0; i < r->n_interfaces; i++) {
		json_object *e = json_object_new_object();
		json_object_object_add(e, "name", json_object_new_string(r->interfaces[i].name));
		json_object_object_add(e, "sandbox", json_object_new_string(r->interfaces[i].sandbox));
		json_object_array_add(ifs, e);
	}
	json_object_object_add(o, "interfaces", ifs);
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/* HOSTIP:HOSTPORT:CONTAINERPORT/PROTO, HOSTIP may be empty. */
static int parse_port(char *spec, struct vgpu_cni_port_mapping *p)
{
	char *slash = strchr(spec, '/');
	p->protocol = "tcp";
	if (slash) {
		*slash = '\0';
		p->protocol = slash + 1;
	}
	char *c1 = strchr(spec, ':');
	char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c1 || !c2)
		return -1;
	*c1 = *c2 = '\0';
	p->host_ip = spec;
	p->host_port = atoi(c1 + 1);
	p->container_port = atoi(c2 + 1);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: cni_tool --conf-dir D --bin-dir B --state-dir S ready|netns-create|netns-remove|"
			"netns-exists|add|del|cached ...\n");
	return 2;
}

static int run(struct vgpu_cni *cni, int argc, char **argv)
{
	struct vgpu_err err = { 0 };
	const char *cmd = argv[0];
	if (strcmp(cmd, "ready") == 0) {
		char *msg = NULL;
		bool ok = vgpu_cni_ready(cni, &msg);
		printf("%s\n", ok ? "ready" : msg);
		free(msg);
		return ok ? 0 : 1;
	}
	if (argc < 2)
		return usage();
	if (strcmp(cmd, "netns-create") == 0)
		return vgpu_netns_create(argv[1], &err) < 0 ? fail(&err) : 0;
	if (strcmp(cmd, "netns-remove") == 0)
		return vgpu_netns_remove(argv[1], &err) < 0 ? fail(&err) : 0;
	if (strcmp(cmd, "netns-exists") == 0)
		return vgpu_netns_exists(argv[1]) ? 0 : 1;
	struct vgpu_cni_result r;
	if (strcmp(cmd, "cached") == 0) {
		if (vgpu_cni_cached_result(cni, argv[1], &r, &err) < 0)
			return fail(&err);
		print_result(&r);
		vgpu_cni_result_free(&r);
		return 0;
	}
	struct vgpu_cni_port_mapping ports[MAX_PORTS];
	struct vgpu_cni_pod pod = { .id = argv[1], .netns = argc > 2 && argv[2][0] != '-' ? argv[2] : NULL,
				    .namespace_ = "default" };
	char name[160];
	snprintf(name, sizeof(name), "pod-%.100s", argv[1]);
	pod.name = name;
	pod.uid = argv[1];
	pod.ports = ports;
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc && pod.n_ports < MAX_PORTS) {
			if (parse_port(argv[++i], &ports[pod.n_ports++]) < 0)
				return usage();
		}
	if (strcmp(cmd, "add") == 0) {
		if (vgpu_cni_add(cni, &pod, &r, &err) < 0)
			return fail(&err);
		print_result(&r);
		vgpu_cni_result_free(&r);
		return 0;
	}
	if (strcmp(cmd, "del") == 0)
		return vgpu_cni_del(cni, &pod, &err) < 0 ? fail(&err) : 0;
	return usage();
}

int main(int argc, char **argv)
{
	struct vgpu_config cfg;
	vgpu_config_defaults(&cfg);
	char *bins[8] = { NULL };
	size_t n_bins = 0;
	int i = 1;
	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--conf-dir") == 0) {
			free(cfg.cni_conf_dir);
			cfg.cni_conf_dir = vgpu_strdup(argv[i + 1]);
		} else if (strcmp(argv[i], "--state-dir") == 0) {
			free(cfg.state_dir);
			cfg.state_dir = vgpu_strdup(argv[i + 1]);
		} else if (strcmp(argv[i], "--bin-dir") == 0 && n_bins < 7) {
			bins[n_bins++] = argv[i + 1];
		} else {
			return usage();
		}
	}
	if (i >= argc)
		return usage();
	if (n_bins) {
		vgpu_strv_free(cfg.cni_bin_dirs);
		cfg.cni_bin_dirs = vgpu_calloc(n_bins + 1, sizeof(char *));
		for (size_t k = 0; k < n_bins; k++)
			cfg.cni_bin_dirs[k] = vgpu_strdup(bins[k]);
	}
	struct vgpu_cni *cni = NULL;
	struct vgpu_err err = { 0 };
	int rc;
	if (vgpu_cni_open(&cfg, &cni, &err) < 0)
		rc = fail(&err);
	else
		rc = run(cni, argc - i, argv + i);
	vgpu_cni_close(cni);
	vgpu_config_free(&cfg);
	return rc;
}
