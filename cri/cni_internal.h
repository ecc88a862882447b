/* Internals of the CNI module shared by cni*.c and its unit test: config list parsing, the stdin
 * config each plugin gets, result parsing, plugin execution. Not for use outside cri/cni*.c. */
#ifndef VGPU_CNI_INTERNAL_H
#define VGPU_CNI_INTERNAL_H

#include <json-c/json.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "cni.h"
#include "err.h"

#define VGPU_CNI_MAX_CONFIG (1u << 20)  /* bytes of one config file */
#define VGPU_CNI_MAX_OUTPUT (4u << 20)  /* bytes of a plugin's stdout or stderr */
#define VGPU_CNI_TIMEOUT_MS 60000       /* one plugin invocation */

struct vgpu_cni {
	char *conf_dir, *cache_dir; /* immutable */
	char **bin_dirs;            /* immutable, NULL-terminated */
	char *cni_path;             /* bin_dirs joined with ':' (CNI_PATH) */
	pthread_mutex_t lock;       /* guards the fields below: the loaded list */
	char *fingerprint;          /* names, sizes and mtimes of the config files last loaded */
	char *list_json;            /* normalized list in use; NULL when none is usable */
	char *list_file;            /* the file it came from */
	char *not_ready;            /* why there is no list */
};

/* cni.c: the list in use (reloaded when conf_dir changed), parsed privately for the caller since
 * json-c objects are not shared across threads; -ENETUNREACH with the reason when there is none. */
int vgpu_cni_current_list(struct vgpu_cni *c, json_object **out, struct vgpu_err *err);
const char *vgpu_cni_list_name(json_object *list);
const char *vgpu_cni_list_version(json_object *list);
size_t vgpu_cni_list_len(json_object *list);
/* Plugin i of list (borrowed) and its type. */
json_object *vgpu_cni_list_plugin(json_object *list, size_t i, const char **type);
/* Full path of plugin type in the bin dirs (malloc'd); NULL if none is an executable file. */
char *vgpu_cni_find_plugin(struct vgpu_cni *c, const char *type);
/* Every plugin of list is installed, or -ENETUNREACH naming the first one missing. */
int vgpu_cni_check_plugins(struct vgpu_cni *c, json_object *list, struct vgpu_err *err);

/* Whether a CNI config version is one we speak (0.3.0, 0.3.1, 0.4.0, 1.0.0). */
bool vgpu_cni_version_supported(const char *version);

/* Whether name looks like a config file (.conf, .conflist, .json; not hidden). */
bool vgpu_cni_is_config_file(const char *name);

/* Parse one config file into a normalized list {"cniVersion","name","plugins":[...]}: a .conflist
 * as is, a single-plugin .conf/.json wrapped in a list of one (a .conf that holds a "plugins"
 * array is taken as a list). Checks name, version, that every plugin has a plain "type".
 * file is used in messages. *out is owned by the caller (json_object_put). */
int vgpu_cni_parse_config(const char *file, const char *text, json_object **out, struct vgpu_err *err);

/* The runtime config for a pod, every capability we have data for:
 * {"portMappings":[...], "bandwidth":{...}, "dns":{...}}. Owned by the caller. */
json_object *vgpu_cni_runtime_config(const struct vgpu_cni_pod *pod);

/* The stdin config for plugin index of list: the plugin's own config plus the list's name and
 * cniVersion, runtimeConfig holding only the capabilities the plugin declares (and we have),
 * prevResult when given. Owned by the caller. */
json_object *vgpu_cni_plugin_config(json_object *list, size_t index, json_object *runtime_config,
				    json_object *prev_result);

/* Parse a success result (1.0.0, 0.3.x/0.4.0 "ips" with "version", 0.1/0.2 "ip4"/"ip6") into out,
 * which takes a copy of text as out->json. */
int vgpu_cni_parse_result(const char *network, const char *text, struct vgpu_cni_result *out,
			  struct vgpu_err *err);

/* Describe a failed plugin run: the error result on stdout ("msg (code N): details") when there
 * is one, else the last line of stderr, else the exit status. Writes into buf. */
void vgpu_cni_describe_failure(const char *out, const char *errout, int status, char *buf, size_t len);

struct vgpu_cni_run {
	char *out;     /* stdout, NUL-terminated */
	char *errout;  /* stderr, NUL-terminated */
	int status;    /* waitpid status */
};

/* Run plugin path with env (NULL-terminated "K=V"), stdin_data on stdin; capture stdout/stderr;
 * kill it after timeout_ms. Returns 0 when it ran (whatever its exit status). */
int vgpu_cni_exec(const char *path, char *const env[], const char *stdin_data, long long timeout_ms,
		  struct vgpu_cni_run *run, struct vgpu_err *err);
void vgpu_cni_run_free(struct vgpu_cni_run *run);

#endif
