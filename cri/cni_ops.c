/* ADD and DEL of a pod: the plugins of the network list run in order (ADD, results chained
 * through prevResult) or in reverse (DEL), each with the CNI environment and its stdin config;
 * what DEL needs is cached on disk before the first plugin runs.
 *
 * Cache file state_dir/cni/<sandbox id>.json (written atomically before the first plugin runs and
 * again with the result; removed when DEL succeeded):
 *   {"version": 1, "id": "...", "ifname": "eth0", "netns": "/run/...", "cniArgs": "IgnoreUnknown=1;...",
 *    "list": {normalized network list}, "runtimeConfig": {...}, "delCount": N,
 *    "result": {final result} | null}
 * delCount: how many plugins (from the first) DEL must run: all of them, except after a failed ADD
 * whose roll-back did not finish, when the plugin that failed (already given its DEL) is left out. */
#include "cni.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cni_internal.h"
#include "log.h"
#include "util.h"

extern char **environ;

#define CACHE_VERSION 1
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* One invocation's fixed inputs. */
struct cni_call {
	const char *id, *netns, *ifname, *cni_args;
	json_object *list, *runtime_config;
	size_t del_count; /* plugins 0..del_count-1 need a DEL */
};

/* Environment of a plugin: the daemon's (minus any CNI_ variables), PATH for the tools plugins
 * run (iptables, ip), the CNI variables. */
static char **plugin_env(struct vgpu_cni *c, const char *command, const struct cni_call *call)
{
	size_t n = 0;
	while (environ && environ[n])
		n++;
	char **env = vgpu_calloc(n + 8, sizeof(char *));
	size_t k = 0;
	bool have_path = false;
	for (size_t i = 0; i < n; i++) {
		if (strncmp(environ[i], "CNI_", 4) == 0)
			continue;
		have_path |= strncmp(environ[i], "PATH=", 5) == 0;
		env[k++] = vgpu_strdup(environ[i]);
	}
	if (!have_path)
		env[k++] = vgpu_strdup("PATH=" DEFAULT_PATH);
	env[k++] = vgpu_asprintf("CNI_COMMAND=%s", command);
	env[k++] = vgpu_asprintf("CNI_CONTAINERID=%s", call->id);
	env[k++] = vgpu_asprintf("CNI_NETNS=%s", call->netns);
	env[k++] = vgpu_asprintf("CNI_IFNAME=%s", call->ifname);
	env[k++] = vgpu_asprintf("CNI_ARGS=%s", call->cni_args);
	env[k++] = vgpu_asprintf("CNI_PATH=%s", c->cni_path);
	return env;
}

/* Run plugin i of the list with command; on ADD success *result is the parsed stdout (NULL when
 * the plugin printed nothing). */
static int run_plugin(struct vgpu_cni *c, const char *command, const struct cni_call *call, size_t i,
		      json_object *prev_result, json_object **result, struct vgpu_err *err)
{
	const char *type;
	vgpu_cni_list_plugin(call->list, i, &type);
	_cleanup_free_ char *path = vgpu_cni_find_plugin(c, type);
	if (!path)
		return vgpu_err_set(err, -ENETUNREACH, "CNI network %s: plugin '%s' not found in %s",
				    vgpu_cni_list_name(call->list), type, c->cni_path);
	json_object *conf = vgpu_cni_plugin_config(call->list, i, call->runtime_config, prev_result);
	_cleanup_free_ char *stdin_text = vgpu_strdup(json_object_to_json_string_ext(conf, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(conf);
	_cleanup_strv_ char **env = plugin_env(c, command, call);
	struct vgpu_cni_run run;
	long long t0 = vgpu_now_ns();
	int r = vgpu_cni_exec(path, env, stdin_text, VGPU_CNI_TIMEOUT_MS, &run, err);
	if (r < 0)
		return vgpu_err_prefix(err, "CNI network %s: plugin %s %s", vgpu_cni_list_name(call->list), type, command);
	vgpu_log(VGPU_LOG_DEBUG, "sandbox %s: CNI %s %s: status %d in %lld ms", call->id, type, command, run.status,
		 (vgpu_now_ns() - t0) / 1000000LL);
	if (!WIFEXITED(run.status) || WEXITSTATUS(run.status) != 0) {
		char why[768];
		vgpu_cni_describe_failure(run.out, run.errout, run.status, why, sizeof(why));
		r = vgpu_err_set(err, -EIO, "CNI network %s: plugin %s %s failed: %s", vgpu_cni_list_name(call->list), type,
				 command, why);
	} else if (result) {
		*result = NULL;
		const char *p = run.out;
		while (isspace((unsigned char)*p))
			p++;
		if (*p) {
			*result = json_tokener_parse(p);
			if (!*result || !json_object_is_type(*result, json_type_object)) {
				json_object_put(*result);
				*result = NULL;
				r = vgpu_err_set(err, -EIO, "CNI network %s: plugin %s %s: result is not a JSON object",
						 vgpu_cni_list_name(call->list), type, command);
			}
		}
	}
	vgpu_cni_run_free(&run);
	return r;
}

static bool valid_id(const char *s)
{
	if (!s || !*s || s[0] == '.' || strlen(s) > 128)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
			return false;
	return true;
}

/* CNI_ARGS values are separated by ';' and '=': refuse values that carry either. */
static bool valid_arg(const char *s)
{
	return s && !strpbrk(s, ";=\n") && strlen(s) <= 253;
}

static char *cache_path(struct vgpu_cni *c, const char *id)
{
	return vgpu_asprintf("%s/%s.json", c->cache_dir, id);
}

static int save_cache(struct vgpu_cni *c, const struct cni_call *call, json_object *result, struct vgpu_err *err)
{
	int r = vgpu_mkdir_p(c->cache_dir, 0700, err);
	if (r < 0)
		return r;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "version", json_object_new_int(CACHE_VERSION));
	json_object_object_add(o, "id", json_object_new_string(call->id));
	json_object_object_add(o, "ifname", json_object_new_string(call->ifname));
	json_object_object_add(o, "netns", json_object_new_string(call->netns));
	json_object_object_add(o, "cniArgs", json_object_new_string(call->cni_args));
	json_object_object_add(o, "list", json_object_get(call->list));
	json_object_object_add(o, "runtimeConfig", json_object_get(call->runtime_config));
	json_object_object_add(o, "delCount", json_object_new_int64((int64_t)call->del_count));
	json_object_object_add(o, "result", result ? json_object_get(result) : NULL);
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);
	_cleanup_free_ char *path = cache_path(c, call->id);
	r = vgpu_write_file_atomic(path, text, strlen(text), 0600, err);
	json_object_put(o);
	return r;
}

/* The cache entry of id: 0 and *out, -ENOENT when there is none, other errors for a bad one. */
static int load_cache(struct vgpu_cni *c, const char *id, json_object **out, struct vgpu_err *err)
{
	_cleanup_free_ char *path = cache_path(c, id), *text = NULL;
	int r = vgpu_read_file(path, 16u << 20, &text, NULL, err);
	if (r < 0)
		return r;
	json_object *o = json_tokener_parse(text), *v;
	if (!o || !json_object_object_get_ex(o, "list", &v) || !json_object_is_type(v, json_type_object) ||
	    !json_object_object_get_ex(o, "version", &v) || json_object_get_int(v) != CACHE_VERSION) {
		json_object_put(o);
		return vgpu_err_set(err, -EINVAL, "CNI cache %s: not a cache entry of this version", path);
	}
	*out = o;
	return 0;
}

static const char *obj_str(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
												   : "";
}

/* 0.3.x configs do not give DEL a prevResult. */
static bool del_takes_prev_result(json_object *list)
{
	const char *v = vgpu_cni_list_version(list);
	return strcmp(v, "0.3.0") != 0 && strcmp(v, "0.3.1") != 0;
}

/* DEL plugins last..0 in reverse; all are tried, the first error is returned. An error of plugin
 * `tolerate` (the one whose ADD just failed, whose config may be what is broken) is only logged. */
static int del_plugins(struct vgpu_cni *c, const struct cni_call *call, size_t last, json_object *prev_result,
		       size_t tolerate, struct vgpu_err *err)
{
	int first = 0;
	if (!del_takes_prev_result(call->list))
		prev_result = NULL;
	for (size_t i = last + 1; i-- > 0;) {
		struct vgpu_err e = { 0 };
		int r = run_plugin(c, "DEL", call, i, prev_result, NULL, &e);
		if (r < 0) {
			vgpu_log(VGPU_LOG_WARN, "sandbox %s: %s", call->id, e.msg);
			if (first == 0 && i != tolerate)
				first = vgpu_err_set(err, r, "%s", e.msg);
		}
	}
	return first;
}

/* A netns path that is gone (infra process died, namespace removed) is passed to DEL as "". */
static const char *live_netns(const char *path)
{
	return path && *path && vgpu_netns_exists(path) ? path : "";
}

static bool valid_ifname(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 15 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (; *s; s++)
		if (*s == '/' || *s == ':' || isspace((unsigned char)*s))
			return false;
	return true;
}

static int check_pod(const struct vgpu_cni_pod *pod, bool need_netns, struct vgpu_err *err)
{
	if (!valid_id(pod->id))
		return vgpu_err_set(err, -EINVAL, "CNI: sandbox id '%.80s' is not a valid id", pod->id ? pod->id : "");
	if (need_netns && (!pod->netns || pod->netns[0] != '/'))
		return vgpu_err_set(err, -EINVAL, "sandbox %s: CNI: network namespace path is required", pod->id);
	if (pod->ifname && !valid_ifname(pod->ifname))
		return vgpu_err_set(err, -EINVAL, "sandbox %s: CNI: bad interface name '%.32s'", pod->id, pod->ifname);
	const char *args[] = { pod->namespace_, pod->name, pod->uid };
	for (size_t i = 0; i < 3; i++)
		if (args[i] && !valid_arg(args[i]))
			return vgpu_err_set(err, -EINVAL, "sandbox %s: CNI: pod namespace, name or uid '%.64s' has ';', '=' or is too long",
					    pod->id, args[i]);
	return 0;
}

/* Undo a failed ADD: DEL what ran (plugins 0..last, where last is the one that failed, which may
 * have done part of its work); the cache goes only when that worked. */
static void roll_back(struct vgpu_cni *c, const struct cni_call *call, size_t last, size_t failed,
		      json_object *prev_result)
{
	struct vgpu_err e = { 0 };
	if (del_plugins(c, call, last, prev_result, failed, &e) == 0) {
		_cleanup_free_ char *path = cache_path(c, call->id);
		if (unlink(path) < 0 && errno != ENOENT)
			vgpu_log(VGPU_LOG_WARN, "sandbox %s: remove %s: %s", call->id, path, strerror(errno));
		return;
	}
	vgpu_log(VGPU_LOG_ERROR, "sandbox %s: CNI: undoing a failed ADD failed too (kept for the next DEL): %s", call->id,
		 e.msg);
	if (failed != SIZE_MAX) {
		struct cni_call rest = *call;
		rest.del_count = failed;
		struct vgpu_err se = { 0 };
		if (save_cache(c, &rest, NULL, &se) < 0)
			vgpu_log(VGPU_LOG_ERROR, "sandbox %s: %s", call->id, se.msg);
	}
}

/* Run every plugin's ADD; *final is the last result. On failure, everything is rolled back. */
static int add_plugins(struct vgpu_cni *c, const struct cni_call *call, json_object **final, struct vgpu_err *err)
{
	json_object *prev = NULL;
	size_t n = vgpu_cni_list_len(call->list);
	for (size_t i = 0; i < n; i++) {
		json_object *res = NULL;
		int r = run_plugin(c, "ADD", call, i, prev, &res, err);
		if (r < 0) {
			roll_back(c, call, i, i, prev);
			json_object_put(prev);
			return r;
		}
		if (res) {
			json_object_put(prev);
			prev = res;
		}
	}
	if (!prev) {
		prev = json_object_new_object();
		json_object_object_add(prev, "cniVersion", json_object_new_string(vgpu_cni_list_version(call->list)));
	}
	*final = prev;
	return 0;
}

int vgpu_cni_add(struct vgpu_cni *c, const struct vgpu_cni_pod *pod, struct vgpu_cni_result *out,
		 struct vgpu_err *err)
{
	if (out)
		memset(out, 0, sizeof(*out));
	int r = check_pod(pod, true, err);
	if (r < 0)
		return r;
	json_object *list = NULL;
	if ((r = vgpu_cni_current_list(c, &list, err)) < 0 || (r = vgpu_cni_check_plugins(c, list, err)) < 0) {
		json_object_put(list);
		return vgpu_err_prefix(err, "sandbox %s", pod->id);
	}
	_cleanup_free_ char *cni_args = vgpu_asprintf(
		"IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s",
		pod->namespace_ ? pod->namespace_ : "", pod->name ? pod->name : "", pod->id, pod->uid ? pod->uid : "");
	struct cni_call call = { .id = pod->id, .netns = pod->netns, .ifname = pod->ifname ? pod->ifname : "eth0",
				 .cni_args = cni_args, .list = list, .runtime_config = vgpu_cni_runtime_config(pod),
				 .del_count = vgpu_cni_list_len(list) };
	json_object *final = NULL;
	struct vgpu_cni_result parsed = { 0 };
	r = save_cache(c, &call, NULL, err);
	if (r == 0)
		r = add_plugins(c, &call, &final, err);
	if (r == 0) {
		const char *text = json_object_to_json_string_ext(final, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
		if ((r = vgpu_cni_parse_result(vgpu_cni_list_name(list), text, &parsed, err)) == 0)
			r = save_cache(c, &call, final, err);
		if (r < 0)
			roll_back(c, &call, vgpu_cni_list_len(list) - 1, SIZE_MAX, final);
	}
	if (r == 0) {
		vgpu_log(VGPU_LOG_INFO, "sandbox %s: CNI network %s: added %s, ip %s", pod->id, parsed.network, call.ifname,
			 vgpu_cni_result_primary_ip(&parsed));
		if (out)
			*out = parsed;
		else
			vgpu_cni_result_free(&parsed);
	} else {
		vgpu_err_prefix(err, "sandbox %s", pod->id);
	}
	json_object_put(final);
	json_object_put(call.runtime_config);
	json_object_put(list);
	return r;
}

int vgpu_cni_del(struct vgpu_cni *c, const struct vgpu_cni_pod *pod, struct vgpu_err *err)
{
	int r = check_pod(pod, false, err);
	if (r < 0)
		return r;
	json_object *cache = NULL;
	struct vgpu_err e = { 0 };
	r = load_cache(c, pod->id, &cache, &e);
	if (r == -ENOENT) {
		vgpu_log(VGPU_LOG_DEBUG, "sandbox %s: CNI: nothing to delete", pod->id);
		return 0;
	}
	if (r < 0)
		return vgpu_err_set(err, r, "sandbox %s: %s", pod->id, e.msg);
	json_object *list = NULL, *rc = NULL, *result = NULL;
	json_object_object_get_ex(cache, "list", &list);
	json_object_object_get_ex(cache, "runtimeConfig", &rc);
	json_object_object_get_ex(cache, "result", &result);
	const char *netns = pod->netns && *pod->netns ? pod->netns : obj_str(cache, "netns");
	struct cni_call call = { .id = pod->id, .netns = live_netns(netns), .ifname = obj_str(cache, "ifname"),
				 .cni_args = obj_str(cache, "cniArgs"), .list = list, .runtime_config = rc };
	if (!*call.ifname)
		call.ifname = "eth0";
	json_object *count;
	size_t n = vgpu_cni_list_len(list);
	if (json_object_object_get_ex(cache, "delCount", &count) && json_object_get_int64(count) >= 0 &&
	    (uint64_t)json_object_get_int64(count) < n)
		n = (size_t)json_object_get_int64(count);
	call.del_count = n;
	r = n ? del_plugins(c, &call, n - 1, json_object_is_type(result, json_type_object) ? result : NULL, SIZE_MAX, err)
	      : 0;
	if (r == 0) {
		_cleanup_free_ char *path = cache_path(c, pod->id);
		if (unlink(path) < 0 && errno != ENOENT)
			r = vgpu_err_errno(err, errno, "sandbox %s: CNI: remove %s", pod->id, path);
		else
			vgpu_log(VGPU_LOG_INFO, "sandbox %s: CNI network %s: deleted", pod->id, vgpu_cni_list_name(list));
	} else {
		vgpu_err_prefix(err, "sandbox %s", pod->id);
	}
	json_object_put(cache);
	return r;
}

int vgpu_cni_cached_result(struct vgpu_cni *c, const char *id, struct vgpu_cni_result *out, struct vgpu_err *err)
{
	memset(out, 0, sizeof(*out));
	if (!valid_id(id))
		return vgpu_err_set(err, -EINVAL, "CNI: sandbox id '%.80s' is not a valid id", id ? id : "");
	json_object *cache = NULL, *list = NULL, *result = NULL;
	int r = load_cache(c, id, &cache, err);
	if (r < 0)
		return r;
	json_object_object_get_ex(cache, "list", &list);
	if (!json_object_object_get_ex(cache, "result", &result) || !json_object_is_type(result, json_type_object))
		r = vgpu_err_set(err, -ENOENT, "sandbox %s: CNI: no result (ADD did not finish)", id);
	else
		r = vgpu_cni_parse_result(vgpu_cni_list_name(list),
					  json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), out, err);
	json_object_put(cache);
	return r;
}
