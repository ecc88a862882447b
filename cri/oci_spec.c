/* OCI config.json generation (see oci_spec.h). Defaults follow containerd's CRI plugin: the same
 * default capabilities, masked and read-only paths and mounts, so that pods behave as on other
 * Kubernetes runtimes. */
#include "oci_spec.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "image.h"
#include "util.h"

#define J_STR(s) json_object_new_string(s)

static const char *const default_caps[] = {
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
	"CAP_AUDIT_WRITE", NULL,
};

static const char *const all_caps[] = {
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE", NULL,
};

static const char *const default_masked[] = {
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
	"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	NULL,
};

static const char *const default_readonly[] = {
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL,
};

/* Syscalls the runtime-default seccomp profile refuses (EPERM). A deny-list of kernel-wide and
 * namespace-escaping operations, not docker's allow-list: documented in docs/pods.md. */
static const char *const seccomp_denied[] = {
	"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
	"finit_module", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
	"kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "move_pages",
	"name_to_handle_at", "nfsservctl", "open_by_handle_at", "perf_event_open", "personality", "pivot_root",
	"process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl", "reboot", "request_key",
	"set_mempolicy", "setns", "settimeofday", "stime", "swapoff", "swapon", "sysfs", "_sysctl", "umount",
	"umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old", "fsopen", "fsconfig",
	"fsmount", "fspick", "move_mount", "open_tree", NULL,
};

static json_object *strv_json(const char *const *v)
{
	json_object *a = json_object_new_array();
	for (size_t i = 0; v && v[i]; i++)
		json_object_array_add(a, J_STR(v[i]));
	return a;
}

static bool json_array_has(json_object *a, const char *s)
{
	for (size_t i = 0; i < json_object_array_length(a); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(a, i)), s) == 0)
			return true;
	return false;
}

/* "NET_ADMIN", "CAP_NET_ADMIN" or "ALL" -> canonical "CAP_NET_ADMIN"; NULL if unknown. */
static const char *cap_name(const char *in)
{
	const char *bare = strncasecmp(in, "CAP_", 4) == 0 ? in + 4 : in;
	for (size_t i = 0; all_caps[i]; i++)
		if (strcasecmp(all_caps[i] + 4, bare) == 0)
			return all_caps[i];
	return NULL;
}

static int build_caps(const Runtime__V1__LinuxContainerSecurityContext *sc, bool privileged, json_object **out,
		      struct vgpu_err *err)
{
	json_object *set = strv_json(privileged ? all_caps : default_caps);
	const Runtime__V1__Capability *c = sc ? sc->capabilities : NULL;
	for (size_t i = 0; !privileged && c && i < c->n_add_capabilities; i++) {
		if (strcasecmp(c->add_capabilities[i], "ALL") == 0) {
			json_object_put(set);
			set = strv_json(all_caps);
			continue;
		}
		const char *n = cap_name(c->add_capabilities[i]);
		if (!n) {
			json_object_put(set);
			return vgpu_err_set(err, -EINVAL, "unknown capability '%s' in add_capabilities",
					    c->add_capabilities[i]);
		}
		if (!json_array_has(set, n))
			json_object_array_add(set, J_STR(n));
	}
	for (size_t i = 0; !privileged && c && i < c->n_drop_capabilities; i++) {
		bool all = strcasecmp(c->drop_capabilities[i], "ALL") == 0;
		const char *n = all ? NULL : cap_name(c->drop_capabilities[i]);
		if (!all && !n) {
			json_object_put(set);
			return vgpu_err_set(err, -EINVAL, "unknown capability '%s' in drop_capabilities",
					    c->drop_capabilities[i]);
		}
		json_object *kept = json_object_new_array();
		for (size_t j = 0; j < json_object_array_length(set); j++) {
			const char *s = json_object_get_string(json_object_array_get_idx(set, j));
			if (!all && strcmp(s, n) != 0)
				json_object_array_add(kept, J_STR(s));
		}
		/* Explicit adds survive "drop ALL" (Kubernetes semantics: drop ALL, add X). */
		for (size_t k = 0; all && k < c->n_add_capabilities; k++) {
			const char *a = cap_name(c->add_capabilities[k]);
			if (a && !json_array_has(kept, a))
				json_object_array_add(kept, J_STR(a));
		}
		json_object_put(set);
		set = kept;
	}
	json_object *caps = json_object_new_object();
	json_object_object_add(caps, "bounding", json_object_get(set));
	json_object_object_add(caps, "effective", json_object_get(set));
	json_object_object_add(caps, "permitted", json_object_get(set));
	json_object *ambient = json_object_new_array();
	for (size_t i = 0; c && i < c->n_add_ambient_capabilities; i++) {
		const char *n = cap_name(c->add_ambient_capabilities[i]);
		if (!n || !json_array_has(set, n)) {
			json_object_put(set);
			json_object_put(caps);
			json_object_put(ambient);
			return vgpu_err_set(err, -EINVAL, "ambient capability '%s' is unknown or not in the bounding set",
					    c->add_ambient_capabilities[i]);
		}
		json_object_array_add(ambient, J_STR(n));
	}
	if (json_object_array_length(ambient)) {
		json_object_object_add(caps, "inheritable", json_object_get(ambient));
		json_object_object_add(caps, "ambient", ambient);
	} else {
		json_object_put(ambient);
	}
	json_object_put(set);
	*out = caps;
	return 0;
}

static const char *env_value_key_end(const char *kv)
{
	const char *eq = strchr(kv, '=');
	return eq ? eq : kv + strlen(kv);
}

/* Add or replace KEY=value in env. */
static void env_set(json_object *env, const char *kv)
{
	size_t klen = (size_t)(env_value_key_end(kv) - kv);
	for (size_t i = 0; i < json_object_array_length(env); i++) {
		const char *cur = json_object_get_string(json_object_array_get_idx(env, i));
		if (strncmp(cur, kv, klen) == 0 && (cur[klen] == '=' || cur[klen] == '\0')) {
			json_object_array_put_idx(env, i, J_STR(kv));
			return;
		}
	}
	json_object_array_add(env, J_STR(kv));
}

static bool env_has(json_object *env, const char *key)
{
	size_t klen = strlen(key);
	for (size_t i = 0; i < json_object_array_length(env); i++) {
		const char *cur = json_object_get_string(json_object_array_get_idx(env, i));
		if (strncmp(cur, key, klen) == 0 && cur[klen] == '=')
			return true;
	}
	return false;
}

/* A runtime injection: LD_LIBRARY_PATH goes in front of the container's own (the injected library
 * must win, the container's dirs still work); anything else is set. */
static void env_inject(json_object *env, const char *kv)
{
	static const char ld[] = "LD_LIBRARY_PATH=";
	if (strncmp(kv, ld, sizeof(ld) - 1) == 0) {
		for (size_t i = 0; i < json_object_array_length(env); i++) {
			const char *cur = json_object_get_string(json_object_array_get_idx(env, i));
			if (strncmp(cur, ld, sizeof(ld) - 1) != 0 || !cur[sizeof(ld) - 1])
				continue;
			_cleanup_free_ char *merged = vgpu_asprintf("%s:%s", kv, cur + sizeof(ld) - 1);
			json_object_array_put_idx(env, i, J_STR(merged));
			return;
		}
	}
	env_set(env, kv);
}

static int build_env(const struct vgpu_oci_input *in, json_object **out, struct vgpu_err *err)
{
	json_object *env = json_object_new_array();
	for (size_t i = 0; in->image && in->image->env && in->image->env[i]; i++)
		env_set(env, in->image->env[i]);
	const Runtime__V1__ContainerConfig *c = in->container;
	for (size_t i = 0; i < c->n_envs; i++) {
		const char *k = c->envs[i]->key;
		if (!k || !*k || strchr(k, '=')) {
			json_object_put(env);
			return vgpu_err_set(err, -EINVAL, "env #%zu: invalid name '%s'", i, k ? k : "");
		}
		const ProtobufCBinaryData *v = &c->envs[i]->value;
		if (v->len > (1 << 20) || (v->len && memchr(v->data, '\0', v->len))) {
			json_object_put(env);
			return vgpu_err_set(err, -EINVAL, "env %s: value too long or contains NUL", k);
		}
		_cleanup_free_ char *kv = vgpu_asprintf("%s=%.*s", k, (int)v->len, v->len ? (const char *)v->data : "");
		env_set(env, kv);
	}
	if (!env_has(env, "PATH"))
		env_set(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	if (c->tty && !env_has(env, "TERM")) /* as containerd and cri-o do for a terminal */
		env_set(env, "TERM=xterm");
	if (in->hostname && *in->hostname && !env_has(env, "HOSTNAME")) {
		_cleanup_free_ char *kv = vgpu_asprintf("HOSTNAME=%s", in->hostname);
		env_set(env, kv);
	}
	for (size_t i = 0; in->env && in->env[i]; i++)
		env_inject(env, in->env[i]);
	*out = env;
	return 0;
}

int vgpu_oci_process_args(const Runtime__V1__ContainerConfig *c, const struct vgpu_image_config *image,
			  char ***argv, struct vgpu_err *err)
{
	char *const *entry = NULL, *const *args = NULL;
	size_t n_entry = 0, n_args = 0;
	if (c->n_command) {
		entry = c->command;
		n_entry = c->n_command;
	} else if (image && image->entrypoint) {
		entry = image->entrypoint;
		while (entry[n_entry])
			n_entry++;
	}
	if (c->n_args) {
		args = c->args;
		n_args = c->n_args;
	} else if (!c->n_command && image && image->cmd) {
		args = image->cmd;
		while (args[n_args])
			n_args++;
	}
	if (n_entry + n_args == 0)
		return vgpu_err_set(err, -EINVAL, "no command specified (neither the container config nor the image has one)");
	char **v = vgpu_calloc(n_entry + n_args + 1, sizeof(char *));
	for (size_t i = 0; i < n_entry; i++)
		v[i] = vgpu_strdup(entry[i]);
	for (size_t i = 0; i < n_args; i++)
		v[n_entry + i] = vgpu_strdup(args[i]);
	*argv = v;
	return 0;
}

static json_object *mount_obj(const char *dest, const char *type, const char *source, const char *const *opts)
{
	json_object *m = json_object_new_object();
	json_object_object_add(m, "destination", J_STR(dest));
	json_object_object_add(m, "type", J_STR(type));
	json_object_object_add(m, "source", J_STR(source));
	json_object_object_add(m, "options", strv_json(opts));
	return m;
}

static bool user_mount_at(const Runtime__V1__ContainerConfig *c, const char *dest)
{
	for (size_t i = 0; i < c->n_mounts; i++)
		if (c->mounts[i]->container_path && strcmp(c->mounts[i]->container_path, dest) == 0)
			return true;
	return false;
}

static void add_default_mount(json_object *mounts, const Runtime__V1__ContainerConfig *c, json_object *m)
{
	const char *dest = json_object_get_string(json_object_object_get(m, "destination"));
	if (user_mount_at(c, dest))
		json_object_put(m);
	else
		json_object_array_add(mounts, m);
}

static void add_bind(json_object *mounts, const Runtime__V1__ContainerConfig *c, const char *dest, const char *src,
		     bool ro)
{
	const char *rw[] = { "rbind", "rprivate", "rw", NULL };
	const char *rdonly[] = { "rbind", "rprivate", "ro", NULL };
	if (src)
		add_default_mount(mounts, c, mount_obj(dest, "bind", src, ro ? rdonly : rw));
}

static int build_user_mounts(const Runtime__V1__ContainerConfig *c, json_object *mounts, struct vgpu_err *err)
{
	for (size_t i = 0; i < c->n_mounts; i++) {
		const Runtime__V1__Mount *m = c->mounts[i];
		if (!m->container_path || m->container_path[0] != '/')
			return vgpu_err_set(err, -EINVAL, "mount #%zu: container_path '%s' is not absolute", i,
					    m->container_path ? m->container_path : "");
		if (m->image && m->image->image && *m->image->image)
			return vgpu_err_set(err, -EINVAL, "mount %s: image volumes are not supported", m->container_path);
		if (!m->host_path || m->host_path[0] != '/')
			return vgpu_err_set(err, -EINVAL, "mount %s: host_path '%s' is not absolute", m->container_path,
					    m->host_path ? m->host_path : "");
		struct stat st;
		if (stat(m->host_path, &st) < 0)
			return vgpu_err_errno(err, errno, "mount %s: host_path %s", m->container_path, m->host_path);
		if (m->n_uidmappings || m->n_gidmappings)
			return vgpu_err_set(err, -EINVAL, "mount %s: id-mapped mounts are not supported", m->container_path);
		const char *opts[6];
		size_t n = 0;
		opts[n++] = "rbind";
		switch (m->propagation) {
		case RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER:
			opts[n++] = "rslave";
			break;
		case RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL:
			opts[n++] = "rshared";
			break;
		default:
			opts[n++] = "rprivate";
		}
		opts[n++] = m->readonly ? "ro" : "rw";
		if (m->recursive_read_only) {
			if (!m->readonly)
				return vgpu_err_set(err, -EINVAL, "mount %s: recursive_read_only needs readonly",
						    m->container_path);
			opts[n++] = "rro";
		}
		opts[n] = NULL;
		json_object_array_add(mounts, mount_obj(m->container_path, "bind", m->host_path, opts));
	}
	return 0;
}

static json_object *build_mounts(const struct vgpu_oci_input *in, bool privileged, bool ro_rootfs)
{
	const Runtime__V1__ContainerConfig *c = in->container;
	json_object *mounts = json_object_new_array();
	const char *proc[] = { "nosuid", "noexec", "nodev", NULL };
	const char *dev[] = { "nosuid", "strictatime", "mode=755", "size=65536k", NULL };
	const char *pts[] = { "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5", NULL };
	const char *mq[] = { "nosuid", "noexec", "nodev", NULL };
	const char *sys[] = { "nosuid", "noexec", "nodev", privileged ? "rw" : "ro", NULL };
	const char *cg[] = { "nosuid", "noexec", "nodev", "relatime", privileged ? "rw" : "ro", NULL };
	const char *shm[] = { "nosuid", "noexec", "nodev", "mode=1777", "size=65536k", NULL };
	add_default_mount(mounts, c, mount_obj("/proc", "proc", "proc", proc));
	add_default_mount(mounts, c, mount_obj("/dev", "tmpfs", "tmpfs", dev));
	add_default_mount(mounts, c, mount_obj("/dev/pts", "devpts", "devpts", pts));
	add_default_mount(mounts, c, mount_obj("/dev/mqueue", "mqueue", "mqueue", mq));
	add_default_mount(mounts, c, mount_obj("/sys", "sysfs", "sysfs", sys));
	add_default_mount(mounts, c, mount_obj("/sys/fs/cgroup", "cgroup", "cgroup", cg));
	if (in->shm_path)
		add_bind(mounts, c, "/dev/shm", in->shm_path, false);
	else
		add_default_mount(mounts, c, mount_obj("/dev/shm", "tmpfs", "shm", shm));
	add_bind(mounts, c, "/etc/hosts", in->hosts_path, ro_rootfs);
	add_bind(mounts, c, "/etc/resolv.conf", in->resolv_path, ro_rootfs);
	add_bind(mounts, c, "/etc/hostname", in->hostname_path, ro_rootfs);
	add_bind(mounts, c, "/dev/termination-log", in->termination_log_path, false);
	return mounts;
}

static json_object *ns_obj(const char *type, const char *path)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "type", J_STR(type));
	if (path)
		json_object_object_add(o, "path", J_STR(path));
	return o;
}

static json_object *build_namespaces(const struct vgpu_oci_input *in)
{
	json_object *ns = json_object_new_array();
	json_object_array_add(ns, ns_obj("mount", NULL));
	const struct {
		const char *type;
		const struct vgpu_oci_ns *ns;
	} kinds[] = { { "pid", &in->pid }, { "ipc", &in->ipc }, { "uts", &in->uts }, { "network", &in->net } };
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!kinds[i].ns->host)
			json_object_array_add(ns, ns_obj(kinds[i].type, kinds[i].ns->path));
	if (in->cgroup_v2)
		json_object_array_add(ns, ns_obj("cgroup", NULL));
	return ns;
}

static int add_devices(const Runtime__V1__ContainerConfig *c, json_object *linux_devs, json_object *cg_devs,
		       struct vgpu_err *err)
{
	for (size_t i = 0; i < c->n_devices; i++) {
		const Runtime__V1__Device *d = c->devices[i];
		struct stat st;
		if (!d->host_path || stat(d->host_path, &st) < 0)
			return vgpu_err_errno(err, d->host_path ? errno : EINVAL, "device #%zu: host_path %s", i,
					      d->host_path ? d->host_path : "(none)");
		if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
			return vgpu_err_set(err, -EINVAL, "device %s: not a character or block device", d->host_path);
		const char *dest = d->container_path && *d->container_path ? d->container_path : d->host_path;
		if (dest[0] != '/')
			return vgpu_err_set(err, -EINVAL, "device %s: container_path '%s' is not absolute", d->host_path,
					    dest);
		const char *perms = d->permissions && *d->permissions ? d->permissions : "rwm";
		if (strspn(perms, "rwm") != strlen(perms))
			return vgpu_err_set(err, -EINVAL, "device %s: bad permissions '%s'", d->host_path, perms);
		const char *type = S_ISCHR(st.st_mode) ? "c" : "b";
		json_object *ld = json_object_new_object();
		json_object_object_add(ld, "path", J_STR(dest));
		json_object_object_add(ld, "type", J_STR(type));
		json_object_object_add(ld, "major", json_object_new_int64(major(st.st_rdev)));
		json_object_object_add(ld, "minor", json_object_new_int64(minor(st.st_rdev)));
		json_object_object_add(ld, "fileMode", json_object_new_int(st.st_mode & 0777));
		json_object_object_add(ld, "uid", json_object_new_int(0));
		json_object_object_add(ld, "gid", json_object_new_int(0));
		json_object_array_add(linux_devs, ld);
		json_object *cd = json_object_new_object();
		json_object_object_add(cd, "allow", json_object_new_boolean(1));
		json_object_object_add(cd, "type", J_STR(type));
		json_object_object_add(cd, "major", json_object_new_int64(major(st.st_rdev)));
		json_object_object_add(cd, "minor", json_object_new_int64(minor(st.st_rdev)));
		json_object_object_add(cd, "access", J_STR(perms));
		json_object_array_add(cg_devs, cd);
	}
	return 0;
}

int vgpu_oci_check_resources(const Runtime__V1__LinuxContainerResources *r, struct vgpu_err *err)
{
	if (!r)
		return 0;
	if (r->cpu_period != 0 && (r->cpu_period < 1000 || r->cpu_period > 1000000))
		return vgpu_err_set(err, -EINVAL, "cpu_period %lld out of range (1000..1000000 us)", (long long)r->cpu_period);
	if (r->cpu_quota != 0 && r->cpu_quota != -1 && (r->cpu_quota < 1000 || r->cpu_quota > (1LL << 40)))
		return vgpu_err_set(err, -EINVAL, "cpu_quota %lld out of range", (long long)r->cpu_quota);
	if (r->cpu_shares < 0 || r->cpu_shares > 262144)
		return vgpu_err_set(err, -EINVAL, "cpu_shares %lld out of range (0..262144)", (long long)r->cpu_shares);
	/* Below 4 MiB nothing starts (runc's own init does not fit); above 2^62 is no limit at all. */
	if (r->memory_limit_in_bytes != 0 &&
	    (r->memory_limit_in_bytes < (4LL << 20) || r->memory_limit_in_bytes > (1LL << 62)))
		return vgpu_err_set(err, -EINVAL, "memory_limit_in_bytes %lld out of range (4 MiB..2^62)",
				    (long long)r->memory_limit_in_bytes);
	if (r->memory_swap_limit_in_bytes != 0 && r->memory_swap_limit_in_bytes != -1 &&
	    (r->memory_swap_limit_in_bytes < r->memory_limit_in_bytes || r->memory_swap_limit_in_bytes > (1LL << 62)))
		return vgpu_err_set(err, -EINVAL, "memory_swap_limit_in_bytes %lld out of range",
				    (long long)r->memory_swap_limit_in_bytes);
	if (r->oom_score_adj < -1000 || r->oom_score_adj > 1000)
		return vgpu_err_set(err, -EINVAL, "oom_score_adj %lld out of range (-1000..1000)", (long long)r->oom_score_adj);
	const char *sets[2] = { r->cpuset_cpus, r->cpuset_mems };
	for (int i = 0; i < 2; i++)
		if (sets[i] && strspn(sets[i], "0123456789,-") != strlen(sets[i]))
			return vgpu_err_set(err, -EINVAL, "%s '%s' is not a cpu list", i ? "cpuset_mems" : "cpuset_cpus",
					    sets[i]);
	return 0;
}

static json_object *resources_obj(const Runtime__V1__LinuxContainerResources *r, bool cgroup_v2)
{
	json_object *res = json_object_new_object();
	if (!r)
		return res;
	json_object *cpu = json_object_new_object();
	if (r->cpu_shares)
		json_object_object_add(cpu, "shares", json_object_new_int64(r->cpu_shares));
	if (r->cpu_quota)
		json_object_object_add(cpu, "quota", json_object_new_int64(r->cpu_quota));
	if (r->cpu_period)
		json_object_object_add(cpu, "period", json_object_new_int64(r->cpu_period));
	if (r->cpuset_cpus && *r->cpuset_cpus)
		json_object_object_add(cpu, "cpus", J_STR(r->cpuset_cpus));
	if (r->cpuset_mems && *r->cpuset_mems)
		json_object_object_add(cpu, "mems", J_STR(r->cpuset_mems));
	json_object_object_add(res, "cpu", cpu);
	json_object *mem = json_object_new_object();
	if (r->memory_limit_in_bytes)
		json_object_object_add(mem, "limit", json_object_new_int64(r->memory_limit_in_bytes));
	if (r->memory_swap_limit_in_bytes)
		json_object_object_add(mem, "swap", json_object_new_int64(r->memory_swap_limit_in_bytes));
	json_object_object_add(res, "memory", mem);
	if (r->n_hugepage_limits) {
		json_object *hp = json_object_new_array();
		for (size_t i = 0; i < r->n_hugepage_limits; i++) {
			json_object *h = json_object_new_object();
			json_object_object_add(h, "pageSize", J_STR(r->hugepage_limits[i]->page_size));
			json_object_object_add(h, "limit", json_object_new_int64((int64_t)r->hugepage_limits[i]->limit));
			json_object_array_add(hp, h);
		}
		json_object_object_add(res, "hugepageLimits", hp);
	}
	if (cgroup_v2 && r->n_unified) {
		json_object *u = json_object_new_object();
		for (size_t i = 0; i < r->n_unified; i++)
			json_object_object_add(u, r->unified[i]->key, J_STR(r->unified[i]->value));
		json_object_object_add(res, "unified", u);
	}
	return res;
}

int vgpu_oci_resources_json(const Runtime__V1__LinuxContainerResources *r, bool cgroup_v2, char **json,
			    struct vgpu_err *err)
{
	int rc = vgpu_oci_check_resources(r, err);
	if (rc < 0)
		return rc;
	json_object *o = resources_obj(r, cgroup_v2);
	*json = vgpu_strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return 0;
}

static int build_seccomp(const Runtime__V1__SecurityProfile *p, json_object **out, struct vgpu_err *err)
{
	*out = NULL;
	if (!p || p->profile_type == RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Unconfined)
		return 0;
	if (p->profile_type == RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost) {
		if (!p->localhost_ref || p->localhost_ref[0] != '/')
			return vgpu_err_set(err, -EINVAL, "seccomp localhost profile '%s' is not an absolute path",
					    p->localhost_ref ? p->localhost_ref : "");
		json_object *prof = json_object_from_file(p->localhost_ref);
		if (!prof)
			return vgpu_err_set(err, -EINVAL, "seccomp profile %s: not readable JSON", p->localhost_ref);
		*out = prof;
		return 0;
	}
	json_object *prof = json_object_new_object();
	json_object_object_add(prof, "defaultAction", J_STR("SCMP_ACT_ALLOW"));
	json_object *syscalls = json_object_new_array();
	json_object *rule = json_object_new_object();
	json_object_object_add(rule, "names", strv_json(seccomp_denied));
	json_object_object_add(rule, "action", J_STR("SCMP_ACT_ERRNO"));
	json_object_object_add(rule, "errnoRet", json_object_new_int(EPERM));
	json_object_array_add(syscalls, rule);
	json_object_object_add(prof, "syscalls", syscalls);
	*out = prof;
	return 0;
}

static int build_process(const struct vgpu_oci_input *in, const Runtime__V1__LinuxContainerSecurityContext *sc,
			 bool privileged, json_object **out, struct vgpu_err *err)
{
	const Runtime__V1__ContainerConfig *c = in->container;
	_cleanup_strv_ char **argv = NULL;
	int r = vgpu_oci_process_args(c, in->image, &argv, err);
	if (r < 0)
		return r;
	struct vgpu_oci_user user;
	r = vgpu_oci_resolve_user(in->rootfs, sc, in->image ? in->image->user : NULL, &user, err);
	if (r < 0)
		return r;
	json_object *env = NULL, *caps = NULL;
	if ((r = build_env(in, &env, err)) < 0 || (r = build_caps(sc, privileged, &caps, err)) < 0) {
		json_object_put(env);
		free(user.additional);
		return r;
	}
	json_object *p = json_object_new_object();
	/* with a terminal, runc makes the pty and sends its master to the monitor's console socket */
	json_object_object_add(p, "terminal", json_object_new_boolean(c->tty));
	json_object *u = json_object_new_object();
	json_object_object_add(u, "uid", json_object_new_int64(user.uid));
	json_object_object_add(u, "gid", json_object_new_int64(user.gid));
	if (user.n_additional) {
		json_object *g = json_object_new_array();
		for (size_t i = 0; i < user.n_additional; i++)
			json_object_array_add(g, json_object_new_int64(user.additional[i]));
		json_object_object_add(u, "additionalGids", g);
	}
	free(user.additional);
	json_object_object_add(p, "user", u);
	json_object_object_add(p, "args", strv_json((const char *const *)argv));
	json_object_object_add(p, "env", env);
	const char *cwd = c->working_dir && *c->working_dir ? c->working_dir
			  : in->image && in->image->working_dir && *in->image->working_dir ? in->image->working_dir
											   : "/";
	if (cwd[0] != '/') {
		json_object_put(p);
		json_object_put(caps);
		return vgpu_err_set(err, -EINVAL, "working_dir '%s' is not absolute", cwd);
	}
	json_object_object_add(p, "cwd", J_STR(cwd));
	json_object_object_add(p, "capabilities", caps);
	json_object_object_add(p, "noNewPrivileges", json_object_new_boolean(sc && sc->no_new_privs));
	const Runtime__V1__LinuxContainerResources *res = c->linux ? c->linux->resources : NULL;
	if (res && res->oom_score_adj)
		json_object_object_add(p, "oomScoreAdj", json_object_new_int((int)res->oom_score_adj));
	if (sc && sc->apparmor && sc->apparmor->profile_type == RUNTIME__V1__SECURITY_PROFILE__PROFILE_TYPE__Localhost &&
	    sc->apparmor->localhost_ref && *sc->apparmor->localhost_ref)
		json_object_object_add(p, "apparmorProfile", J_STR(sc->apparmor->localhost_ref));
	*out = p;
	return 0;
}

static int build_linux(const struct vgpu_oci_input *in, const Runtime__V1__LinuxContainerSecurityContext *sc,
		       bool privileged, json_object **out, struct vgpu_err *err)
{
	const Runtime__V1__ContainerConfig *c = in->container;
	const Runtime__V1__LinuxContainerResources *res = c->linux ? c->linux->resources : NULL;
	int r = vgpu_oci_check_resources(res, err);
	if (r < 0)
		return r;
	json_object *lx = json_object_new_object();
	json_object *resources = resources_obj(res, in->cgroup_v2);
	if (in->pids_limit > 0) { /* a fork bomb in one container must not take the node's pids */
		json_object *pids = json_object_new_object();
		json_object_object_add(pids, "limit", json_object_new_int64(in->pids_limit));
		json_object_object_add(resources, "pids", pids);
	}
	json_object *cg_devs = json_object_new_array();
	json_object *deny = json_object_new_object();
	json_object_object_add(deny, "allow", json_object_new_boolean(privileged));
	json_object_object_add(deny, "access", J_STR("rwm"));
	json_object_array_add(cg_devs, deny);
	json_object *devs = json_object_new_array();
	json_object_object_add(resources, "devices", cg_devs);
	json_object_object_add(lx, "resources", resources);
	json_object_object_add(lx, "devices", devs);
	if ((r = add_devices(c, devs, cg_devs, err)) < 0) {
		json_object_put(lx);
		return r;
	}
	if (in->cgroups_path && *in->cgroups_path)
		json_object_object_add(lx, "cgroupsPath", J_STR(in->cgroups_path));
	json_object_object_add(lx, "namespaces", build_namespaces(in));
	if (!privileged) {
		bool have_masked = sc && sc->n_masked_paths, have_ro = sc && sc->n_readonly_paths;
		json_object_object_add(lx, "maskedPaths", have_masked ? strv_json((const char *const *)sc->masked_paths)
								      : strv_json(default_masked));
		json_object_object_add(lx, "readonlyPaths", have_ro ? strv_json((const char *const *)sc->readonly_paths)
								   : strv_json(default_readonly));
		json_object *seccomp;
		if ((r = build_seccomp(sc ? sc->seccomp : NULL, &seccomp, err)) < 0) {
			json_object_put(lx);
			return r;
		}
		if (seccomp)
			json_object_object_add(lx, "seccomp", seccomp);
	}
	*out = lx;
	return 0;
}

int vgpu_oci_spec_generate(const struct vgpu_oci_input *in, char **json, struct vgpu_err *err)
{
	const Runtime__V1__ContainerConfig *c = in->container;
	const Runtime__V1__LinuxContainerSecurityContext *sc = c->linux ? c->linux->security_context : NULL;
	bool privileged = sc && sc->privileged;
	if (privileged && !(in->pod && in->pod->linux && in->pod->linux->security_context &&
			    in->pod->linux->security_context->privileged))
		return vgpu_err_set(err, -EINVAL, "privileged container in a non-privileged pod");
	bool ro_rootfs = sc && sc->readonly_rootfs;
	json_object *spec = json_object_new_object();
	json_object_object_add(spec, "ociVersion", J_STR("1.0.2"));
	json_object *process = NULL, *lx = NULL;
	int r = build_process(in, sc, privileged, &process, err);
	if (r == 0)
		r = build_linux(in, sc, privileged, &lx, err);
	json_object *mounts = build_mounts(in, privileged, ro_rootfs);
	if (r == 0)
		r = build_user_mounts(c, mounts, err);
	const char *ro[] = { "rbind", "rprivate", "ro", "nosuid", "nodev", NULL };
	for (size_t i = 0; r == 0 && i < in->n_binds; i++)
		json_object_array_add(mounts, mount_obj(in->binds[i].destination, "bind", in->binds[i].source, ro));
	if (r < 0) {
		json_object_put(process);
		json_object_put(lx);
		json_object_put(mounts);
		json_object_put(spec);
		return r;
	}
	json_object_object_add(spec, "process", process);
	json_object *root = json_object_new_object();
	json_object_object_add(root, "path", J_STR(in->rootfs));
	json_object_object_add(root, "readonly", json_object_new_boolean(ro_rootfs));
	json_object_object_add(spec, "root", root);
	if (in->hostname && *in->hostname && !in->uts.host && !in->uts.path)
		json_object_object_add(spec, "hostname", J_STR(in->hostname));
	json_object_object_add(spec, "mounts", mounts);
	json_object_object_add(spec, "linux", lx);
	*json = vgpu_strdup(json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(spec);
	return 0;
}
