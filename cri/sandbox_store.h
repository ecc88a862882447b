/* The pod manager's state (internal to cri/): sandboxes and containers of the runc handler, their
 * persistence under state_dir, the exit watcher that learns of container exits from the monitors'
 * exit files, and container events. sandbox.c, container*.c and stats.c serve the RPCs over it.
 *
 * On-disk layout (every file written atomically):
 *   state_dir/sandboxes/<id>/config.pb    PodSandboxConfig, protobuf, written once
 *   state_dir/sandboxes/<id>/meta.json    handler, state, infra pid, cgroup parent, GPU request, ...
 *   state_dir/sandboxes/<id>/{resolv.conf,hostname,hosts}   bind-mounted into containers
 *   state_dir/containers/<id>/config.pb   ContainerConfig, protobuf, written once
 *   state_dir/containers/<id>/meta.json   state, times, exit code, pids, image, paths
 *   state_dir/containers/<id>/config.json the OCI bundle's spec; rootfs, upper, work beside it
 *   state_dir/exits/<id>                  exit file written by vgpu-monitor (see monitor.c)
 *   run_dir/sandboxes/<id>/shm            the pod's /dev/shm (tmpfs mount)
 *   run_dir/gpu/<id>/vgpu.sock            a GPU pod's broker socket (gpu.c), bound on /run/vgpu
 */
#ifndef VGPU_SANDBOX_STORE_H
#define VGPU_SANDBOX_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

#include "cri-api.pb-c.h"
#include "daemon.h"
#include "err.h"
#include "gpu.h"
#include "runc.h"

#define VGPU_ID_LEN 64

enum vgpu_obj_phase {
	VGPU_PHASE_CREATING = 0, /* reserved by a Create/Run in progress: hidden from lists */
	VGPU_PHASE_LIVE = 1,
	VGPU_PHASE_REMOVED = 2,  /* unlinked; freed when the last reference goes */
};

struct vgpu_sandbox {
	struct vgpu_sandbox *next;        /* mgr->lock */
	int refs;                         /* mgr->lock */
	pthread_mutex_t op_lock;          /* serializes Stop/Remove and container creation */
	pthread_mutex_t persist_lock;     /* orders meta.json writes */
	char id[VGPU_ID_LEN + 1];
	/* immutable after creation */
	Runtime__V1__PodSandboxConfig *config;
	char *handler;
	long long created_at;
	char *dir;                        /* state_dir/sandboxes/<id> */
	char *run_dir;                    /* run_dir/sandboxes/<id> */
	char *shm_path;                   /* bound on /dev/shm of containers */
	char *cgroup_parent;              /* where containers' cgroups go */
	bool own_cgroup_parent;           /* we made it (no parent given): removed with the pod */
	bool host_net, host_ipc, host_pid, share_pid;
	struct vgpu_gpu_request gpu;      /* gpu.enabled: a GPU pod (re-added to the broker on recovery) */
	char *xen_domain;                 /* xen handler: the pod's domain name (xen_sandbox.h); NULL for runc */
	/* mgr->lock */
	enum vgpu_obj_phase phase;
	Runtime__V1__PodSandboxState state;
	pid_t infra_pid;
	unsigned long long infra_start;
	uint32_t xen_domid;               /* xen handler: 0 while the pod has no domain */
	char *xen_vif_mac;                /* xen handler: the pod network's vif (its guest MAC), NULL: none */
};

struct vgpu_container {
	struct vgpu_container *next;      /* mgr->lock */
	int refs;                         /* mgr->lock */
	pthread_mutex_t op_lock;          /* serializes lifecycle calls on this container */
	pthread_mutex_t persist_lock;
	char id[VGPU_ID_LEN + 1];
	char sandbox_id[VGPU_ID_LEN + 1];
	/* immutable after creation */
	Runtime__V1__ContainerConfig *config;
	char *image_id;                   /* "sha256:..." */
	char *log_path;                   /* "" = no log */
	char *dir;                        /* state_dir/containers/<id>: bundle */
	char *cgroups_path;
	long long created_at;
	/* mgr->lock */
	enum vgpu_obj_phase phase;
	Runtime__V1__ContainerState state;
	long long started_at, finished_at;
	int exit_code;
	char *reason, *message;
	pid_t pid, monitor_pid;
	unsigned long long pid_start, monitor_start;
	Runtime__V1__LinuxContainerResources *resources; /* current (UpdateContainerResources) */
	struct vgpu_xen_ctr *xen;         /* xen pods' containers (xen_container.h), else NULL; set once
					   * during creation under mgr->lock, then immutable */
	unsigned long long last_cpu_ns;   /* stats sample for nanocores */
	long long last_cpu_ts;
};

struct vgpu_event_sub;
struct vgpu_xen_pods;
struct vgpu_xen_pump;
struct vgpu_xen_ctr;

struct vgpu_pod_manager {
	struct vgpu_daemon *d;
	pthread_mutex_t lock;             /* guards the lists and the fields marked mgr->lock */
	pthread_cond_t changed;           /* broadcast when a container's state changes */
	struct vgpu_sandbox *sandboxes;
	struct vgpu_container *containers;
	struct vgpu_event_sub *subs;      /* lock */
	/* immutable after open */
	char *sandbox_dir, *container_dir, *exit_dir, *run_sandbox_dir, *tmp_dir;
	char *monitor_path, *pause_path;
	bool cgroup_v2;
	struct vgpu_runc runc;
	int inotify_fd, stop_fd;
	pthread_t watcher;
	bool watcher_started;
	struct vgpu_xen_pods *xen;        /* xen handler state (xen_sandbox.c); set at open */
	struct vgpu_xen_pump *xen_pump;   /* xen containers' log/exit pump (xen_container.c) or NULL */
};

static inline struct vgpu_pod_manager *vgpu_pods(struct vgpu_daemon *d)
{
	return d->pods;
}

/* SIGKILL every process whose command line is `exe ... flag value ...` (a vgpu-pause or vgpu-monitor
 * the daemon started for an object whose creation a crash interrupted; exe NULL: any program), until
 * none is left (at most ~2 s); zombies are dead already. Returns how many were killed. */
size_t vgpu_pods_kill_helpers(const char *exe, const char *flag, const char *value);
/* Wait until no process `exe ... flag value ...` is left; false after timeout_ms. */
bool vgpu_pods_wait_helpers(const char *exe, const char *flag, const char *value, int timeout_ms);

/* New random 64-hex id. */
void vgpu_new_id(char out[VGPU_ID_LEN + 1]);

/* Lookups take a reference (release with *_put); -ENOENT with a message naming the id otherwise.
 * Full ids, or an unambiguous prefix. CREATING and REMOVED objects are not found. */
int vgpu_sandbox_get(struct vgpu_pod_manager *m, const char *id, struct vgpu_sandbox **out, struct vgpu_err *err);
void vgpu_sandbox_put(struct vgpu_pod_manager *m, struct vgpu_sandbox *s);
int vgpu_container_get(struct vgpu_pod_manager *m, const char *id, struct vgpu_container **out,
		       struct vgpu_err *err);
void vgpu_container_put(struct vgpu_pod_manager *m, struct vgpu_container *c);

/* Link a new object (phase CREATING, one reference held by the caller). */
void vgpu_sandbox_link(struct vgpu_pod_manager *m, struct vgpu_sandbox *s);
void vgpu_container_link(struct vgpu_pod_manager *m, struct vgpu_container *c);
/* Unlink (phase REMOVED); the caller's reference stays until put. */
void vgpu_sandbox_unlink(struct vgpu_pod_manager *m, struct vgpu_sandbox *s);
void vgpu_container_unlink(struct vgpu_pod_manager *m, struct vgpu_container *c);
struct vgpu_sandbox *vgpu_sandbox_alloc(void);
struct vgpu_container *vgpu_container_alloc(void);

/* Write path atomically (temp + rename); fsync'd only when durable (see sandbox_store.c). */
int vgpu_pods_write_file(const char *path, const void *data, size_t len, mode_t mode, bool durable,
			 struct vgpu_err *err);

/* Persist config.pb (once) and meta.json (whenever the state changes; durable unless CREATING). */
int vgpu_sandbox_save_config(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_err *err);
int vgpu_sandbox_save(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_err *err);
int vgpu_container_save_config(struct vgpu_pod_manager *m, struct vgpu_container *c, struct vgpu_err *err);
int vgpu_container_save(struct vgpu_pod_manager *m, struct vgpu_container *c, struct vgpu_err *err);

/* Refresh a sandbox's state from its infra process (mgr->lock held): READY -> NOTREADY when it died. */
void vgpu_sandbox_refresh_locked(struct vgpu_sandbox *s);

/* Apply the container's exit file if there is one (mgr->lock held). Returns true if it exited now. */
bool vgpu_container_check_exit_locked(struct vgpu_pod_manager *m, struct vgpu_container *c);

/* Wait (up to timeout_ms; < 0 forever) for the container to reach EXITED. Returns true if it did. */
bool vgpu_container_wait_exit(struct vgpu_pod_manager *m, struct vgpu_container *c, long long timeout_ms);

/* Events (GetContainerEvents): emit with mgr->lock held. */
void vgpu_event_emit_locked(struct vgpu_pod_manager *m, struct vgpu_container *c,
			    Runtime__V1__ContainerEventType type);

/* Response builders shared by the RPC files (mgr->lock held; results fully heap-allocated). */
Runtime__V1__PodSandboxStatus *vgpu_sandbox_status_locked(struct vgpu_sandbox *s);
Runtime__V1__ContainerStatus *vgpu_container_status_locked(struct vgpu_container *c);

/* Deep copy of any message (pack + unpack); NULL in, NULL out. */
void *vgpu_pb_clone(const void *msg);
/* Copy a map<string,string> (any entry type of that shape) into entries of entry_desc. */
void *vgpu_pb_map_copy(const ProtobufCMessageDescriptor *entry_desc, void *const *src, size_t n);
/* All selector entries present with equal values in the map. */
bool vgpu_labels_match(void *const *labels, size_t n_labels, void *const *selector, size_t n_selector);
/* A live container against the fields CRI's container filters share: id and sandbox id by prefix
 * (empty = any), state (-1 = any), label selector. */
bool vgpu_container_match(const struct vgpu_container *c, const char *id, const char *sandbox_id, int state,
			  void *const *selector, size_t n_selector);

/* Loading at start-up (sandbox_store.c): NULL for a missing or incomplete record (*creating
 * tells an interrupted creation, whose leftovers the caller removes). */
struct vgpu_sandbox *vgpu_sandbox_load(struct vgpu_pod_manager *m, const char *id, bool *creating);
struct vgpu_container *vgpu_container_load(struct vgpu_pod_manager *m, const char *id, bool *creating);

/* sandbox.c: release everything a sandbox holds (infra process, shm mount, cgroup parent, run and
 * state dirs); also for leftovers of an interrupted RunPodSandbox, known only by id. */
void vgpu_sandbox_cleanup(struct vgpu_pod_manager *m, struct vgpu_sandbox *s);
void vgpu_sandbox_cleanup_id(struct vgpu_pod_manager *m, const char *id);

/* stats.c: whether the kernel's OOM killer killed a process of the cgroup (rel: cgroupfs path). */
bool vgpu_cgroup_oom_killed(bool v2, const char *rel);

/* Remove a directory tree (no following of symlinks, stays on one file system). */
int vgpu_pods_rm_tree(const char *path);

#endif
