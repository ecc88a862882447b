/* CNI for pods, the handle and its config: which network config list is in use (the first usable
 * file in conf_dir by name, reloaded when the directory's files change), whether its plugins are
 * installed (Status' NetworkReady). ADD/DEL are in cni_ops.c, plugin runs in cni_exec.c, the JSON
 * formats in cni_json.c, network namespaces in cni_netns.c. */
#include "cni.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cni_internal.h"
#include "log.h"
#include "util.h"


int vgpu_cni_open(const struct vgpu_config *cfg, struct vgpu_cni **out, struct vgpu_err *err)
{
	if (!cfg->cni_conf_dir || !*cfg->cni_conf_dir || !cfg->cni_bin_dirs || !cfg->cni_bin_dirs[0])
		return vgpu_err_set(err, -EINVAL, "CNI: conf_dir and at least one bin dir are required");
	struct vgpu_cni *c = vgpu_calloc(1, sizeof(*c));
	int r = pthread_mutex_init(&c->lock, NULL);
	if (r != 0) {
		free(c);
		return vgpu_err_errno(err, r, "CNI: mutex");
	}
	c->conf_dir = vgpu_strdup(cfg->cni_conf_dir);
	c->cache_dir = vgpu_asprintf("%s/cni", cfg->state_dir);
	size_t n = 0, len = 1;
	while (cfg->cni_bin_dirs[n])
		len += strlen(cfg->cni_bin_dirs[n++]) + 1;
	c->bin_dirs = vgpu_calloc(n + 1, sizeof(char *));
	c->cni_path = vgpu_calloc(1, len);
	for (size_t i = 0; i < n; i++) {
		c->bin_dirs[i] = vgpu_strdup(cfg->cni_bin_dirs[i]);
		if (i)
			strcat(c->cni_path, ":");
		strcat(c->cni_path, cfg->cni_bin_dirs[i]);
	}
	*out = c;
	return 0;
}

void vgpu_cni_close(struct vgpu_cni *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c->conf_dir);
	free(c->cache_dir);
	vgpu_strv_free(c->bin_dirs);
	free(c->cni_path);
	free(c->fingerprint);
	free(c->list_json);
	free(c->list_file);
	free(c->not_ready);
	free(c);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted config file names in dir (NULL-terminated) and a fingerprint of them; NULL names when
 * the directory cannot be read (*why says so). */
static char **scan_conf_dir(const char *dir, char **fingerprint, char **why)
{
	DIR *d = opendir(dir);
	if (!d) {
		*why = vgpu_asprintf("cannot read CNI config directory %s: %s", dir, strerror(errno));
		*fingerprint = vgpu_asprintf("error %d", errno);
		return NULL;
	}
	size_t n = 0, cap = 8;
	char **names = vgpu_calloc(cap + 1, sizeof(char *));
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!vgpu_cni_is_config_file(de->d_name))
			continue;
		if (n == cap) {
			cap *= 2;
			names = realloc(names, (cap + 1) * sizeof(char *));
			if (!names)
				abort();
		}
		names[n++] = vgpu_strdup(de->d_name);
		names[n] = NULL;
	}
	closedir(d);
	qsort(names, n, sizeof(char *), cmp_names);
	char *fp = vgpu_strdup("");
	for (size_t i = 0; i < n; i++) {
		_cleanup_free_ char *path = vgpu_asprintf("%s/%s", dir, names[i]);
		struct stat st;
		memset(&st, 0, sizeof(st));
		stat(path, &st);
		char *next = vgpu_asprintf("%s%s:%lld:%lld.%ld;", fp, names[i], (long long)st.st_size,
					   (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
		free(fp);
		fp = next;
	}
	*fingerprint = fp;
	return names;
}

/* Choose the first usable config by file name (lock held). Files that do not parse are skipped
 * with a warning, as other runtimes do, and named in the not-ready reason when none is usable. */
static void refresh_locked(struct vgpu_cni *c)
{
	_cleanup_free_ char *fp = NULL, *why = NULL;
	_cleanup_strv_ char **names = scan_conf_dir(c->conf_dir, &fp, &why);
	if (c->fingerprint && strcmp(c->fingerprint, fp) == 0)
		return;
	free(c->fingerprint);
	c->fingerprint = steal_pointer(&fp);
	free(c->list_json);
	free(c->list_file);
	free(c->not_ready);
	c->list_json = c->list_file = c->not_ready = NULL;
	if (!names) {
		c->not_ready = steal_pointer(&why);
		return;
	}
	struct vgpu_err first = { 0 };
	for (size_t i = 0; names[i]; i++) {
		_cleanup_free_ char *path = vgpu_asprintf("%s/%s", c->conf_dir, names[i]), *text = NULL;
		struct vgpu_err e = { 0 };
		json_object *list = NULL;
		if (vgpu_read_file(path, VGPU_CNI_MAX_CONFIG, &text, NULL, &e) == 0 &&
		    vgpu_cni_parse_config(path, text, &list, &e) == 0) {
			c->list_json = vgpu_strdup(json_object_to_json_string_ext(list, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
			c->list_file = steal_pointer(&path);
			json_object_put(list);
			vgpu_log(VGPU_LOG_INFO, "CNI: using network config %s", c->list_file);
			return;
		}
		vgpu_log(VGPU_LOG_WARN, "CNI: skipping %s", e.msg);
		if (!first.code)
			first = e;
	}
	if (first.code)
		c->not_ready = vgpu_asprintf("no usable CNI network config in %s (%s)", c->conf_dir, first.msg);
	else
		c->not_ready = vgpu_asprintf("no CNI network config in %s", c->conf_dir);
}

int vgpu_cni_current_list(struct vgpu_cni *c, json_object **out, struct vgpu_err *err)
{
	pthread_mutex_lock(&c->lock);
	refresh_locked(c);
	_cleanup_free_ char *text = c->list_json ? vgpu_strdup(c->list_json) : NULL;
	_cleanup_free_ char *why = c->not_ready ? vgpu_strdup(c->not_ready) : NULL;
	pthread_mutex_unlock(&c->lock);
	if (!text)
		return vgpu_err_set(err, -ENETUNREACH, "CNI: %s", why ? why : "no network config");
	*out = json_tokener_parse(text);
	return *out ? 0 : vgpu_err_set(err, -EIO, "CNI: reparse of the network list failed");
}

const char *vgpu_cni_list_name(json_object *list)
{
	json_object *v;
	return json_object_object_get_ex(list, "name", &v) ? json_object_get_string(v) : "";
}

const char *vgpu_cni_list_version(json_object *list)
{
	json_object *v;
	return json_object_object_get_ex(list, "cniVersion", &v) ? json_object_get_string(v) : "";
}

json_object *vgpu_cni_list_plugin(json_object *list, size_t i, const char **type)
{
	json_object *plugins, *t;
	json_object_object_get_ex(list, "plugins", &plugins);
	json_object *p = json_object_array_get_idx(plugins, i);
	*type = json_object_object_get_ex(p, "type", &t) ? json_object_get_string(t) : "";
	return p;
}

size_t vgpu_cni_list_len(json_object *list)
{
	json_object *plugins;
	return json_object_object_get_ex(list, "plugins", &plugins) ? json_object_array_length(plugins) : 0;
}

char *vgpu_cni_find_plugin(struct vgpu_cni *c, const char *type)
{
	for (size_t i = 0; c->bin_dirs[i]; i++) {
		char *path = vgpu_asprintf("%s/%s", c->bin_dirs[i], type);
		struct stat st;
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0)
			return path;
		free(path);
	}
	return NULL;
}

int vgpu_cni_check_plugins(struct vgpu_cni *c, json_object *list, struct vgpu_err *err)
{
	for (size_t i = 0; i < vgpu_cni_list_len(list); i++) {
		const char *type;
		vgpu_cni_list_plugin(list, i, &type);
		_cleanup_free_ char *path = vgpu_cni_find_plugin(c, type);
		if (!path)
			return vgpu_err_set(err, -ENETUNREACH, "CNI network %s: plugin '%s' not found in %s", vgpu_cni_list_name(list),
					    type, c->cni_path);
	}
	return 0;
}

bool vgpu_cni_ready(struct vgpu_cni *c, char **message)
{
	json_object *list = NULL;
	struct vgpu_err e = { 0 };
	int r = vgpu_cni_current_list(c, &list, &e);
	if (r == 0)
		r = vgpu_cni_check_plugins(c, list, &e);
	json_object_put(list);
	if (message)
		*message = r < 0 ? vgpu_strdup(e.msg) : NULL;
	return r == 0;
}

bool vgpu_cni_config_ready(const struct vgpu_config *cfg, char **message)
{
	struct vgpu_cni *c = NULL;
	struct vgpu_err e = { 0 };
	if (vgpu_cni_open(cfg, &c, &e) < 0) {
		if (message)
			*message = vgpu_strdup(e.msg);
		return false;
	}
	bool ok = vgpu_cni_ready(c, message);
	vgpu_cni_close(c);
	return ok;
}

char *vgpu_cni_network_name(struct vgpu_cni *c)
{
	json_object *list = NULL;
	if (vgpu_cni_current_list(c, &list, NULL) < 0)
		return vgpu_strdup("");
	char *name = vgpu_strdup(vgpu_cni_list_name(list));
	json_object_put(list);
	return name;
}

