/* The `xen` runtime handler's pod life cycle (see xen_sandbox.h): a domU per pod through libxl,
 * vgpu-agent's HELLO as the readiness signal, domains found again by name after a restart.
 * Domains are always looked up by name before they are destroyed, so a domid that Xen has reused
 * for another guest is never touched. */
#include "xen_sandbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "log.h"
#include "util.h"
#include "xen_domain.h"
#include "xen_net.h"

#define AGENT_LOCKS 64
#define EXEC_CONNECT_MS 10000
#define NET_CONFIG_MS 90000     /* the agent waits for netfront's device and runs `ip` (TCG: slow) */

/* The agent serves one client at a time, so each pod has one long-lived connection, kept in the
 * slot of its domid's stripe; callers hold the slot's lock while they use it (requests of one pod
 * are serialized; replies are matched by id). A connection that had a channel error is closed and
 * the next caller connects again. */
struct agent_slot {
	pthread_mutex_t lock;
	struct vgpu_xen_agent *a;       /* lock; NULL: not connected */
	long long last_used_ns;         /* lock */
};

struct vgpu_xen_pods {
	struct vgpu_xen *xen;           /* NULL: xen pods are refused (why says why); immutable */
	char why[VGPU_ERR_MSG_MAX];
	struct agent_slot slots[AGENT_LOCKS];
};

static bool any_xen_handler(const struct vgpu_config *cfg)
{
	for (size_t i = 0; i < cfg->n_handlers; i++)
		if (strcmp(cfg->handlers[i].type, "xen") == 0)
			return true;
	return false;
}

void vgpu_xen_pods_open(struct vgpu_pod_manager *m)
{
	struct vgpu_xen_pods *x = vgpu_calloc(1, sizeof(*x));
	for (int i = 0; i < AGENT_LOCKS; i++)
		pthread_mutex_init(&x->slots[i].lock, NULL);
	m->xen = x;
	if (!any_xen_handler(m->d->cfg)) {
		snprintf(x->why, sizeof(x->why), "no handler of type xen is configured");
		return;
	}
	struct vgpu_err err = { 0 };
	if (vgpu_xen_open(&x->xen, NULL, &err) < 0) {
		snprintf(x->why, sizeof(x->why), "%s", err.msg);
		vgpu_log(VGPU_LOG_INFO, "xen pods disabled: %s", err.msg);
		return;
	}
	vgpu_log(VGPU_LOG_INFO, "xen pods: libxl ready");
}

void vgpu_xen_pods_close(struct vgpu_pod_manager *m)
{
	struct vgpu_xen_pods *x = m->xen;
	if (!x)
		return;
	/* closing tells each agent that we went (a crashed daemon is noticed by the agent's idle limit) */
	for (int i = 0; i < AGENT_LOCKS; i++) {
		vgpu_xen_agent_close(x->slots[i].a);
		pthread_mutex_destroy(&x->slots[i].lock);
	}
	vgpu_xen_close(x->xen);
	free(x);
	m->xen = NULL;
}

struct vgpu_xen *vgpu_xen_pods_handle(struct vgpu_pod_manager *m)
{
	return m->xen ? m->xen->xen : NULL;
}

int vgpu_xen_pods_available(struct vgpu_pod_manager *m, struct vgpu_err *err)
{
	struct vgpu_xen_pods *x = m->xen;
	if (x && x->xen)
		return 0;
	return vgpu_err_set(err, -ENODEV, "xen pods need a Xen control domain (dom0 or a driver domain) and this host "
			    "is not one: %s", x ? x->why : "not initialised");
}

static struct agent_slot *slot_of(struct vgpu_xen_pods *x, uint32_t domid)
{
	return &x->slots[domid % AGENT_LOCKS];
}

/* Lock domid's slot and make sure it holds a connection to domid's agent. On error the slot is
 * unlocked; on success the caller calls agent_release. */
static int agent_acquire(struct vgpu_xen_pods *x, uint32_t domid, long long connect_ms, struct vgpu_xen_agent **out,
			 char *version, size_t version_len, struct vgpu_err *err)
{
	struct agent_slot *sl = slot_of(x, domid);
	pthread_mutex_lock(&sl->lock);
	if (sl->a && vgpu_xen_agent_domid(sl->a) != domid) {
		vgpu_xen_agent_close(sl->a);
		sl->a = NULL;
	}
	if (!sl->a) {
		int r = vgpu_xen_agent_connect(domid, connect_ms, &sl->a, version, version_len, err);
		if (r < 0) {
			pthread_mutex_unlock(&sl->lock);
			return r;
		}
	}
	*out = sl->a;
	return 0;
}

static void agent_release(struct vgpu_xen_pods *x, uint32_t domid)
{
	struct agent_slot *sl = slot_of(x, domid);
	if (sl->a && vgpu_xen_agent_broken(sl->a)) {
		vgpu_xen_agent_close(sl->a);
		sl->a = NULL;
	}
	sl->last_used_ns = vgpu_now_ns();
	pthread_mutex_unlock(&sl->lock);
}

/* Drop the connection to domid's agent (its domain is about to go). */
static void agent_forget(struct vgpu_xen_pods *x, uint32_t domid)
{
	struct agent_slot *sl = slot_of(x, domid);
	pthread_mutex_lock(&sl->lock);
	if (sl->a && vgpu_xen_agent_domid(sl->a) == domid) {
		vgpu_xen_agent_close(sl->a);
		sl->a = NULL;
	}
	pthread_mutex_unlock(&sl->lock);
}

/* The live domain named s->xen_domain: 0 and *info, -ENOENT, or another error. */
static int find_domain(struct vgpu_xen_pods *x, const struct vgpu_sandbox *s, struct vgpu_xen_domain_info *info,
		       struct vgpu_err *err)
{
	return vgpu_xen_domain_find(x->xen, s->xen_domain, info, err);
}

/* NET_CONFIG: the CNI result's addresses and routes, the pod's resolv.conf (written by sandbox.c). */
static int send_net_config(struct vgpu_sandbox *s, const struct vgpu_xen_pod_net *net, struct vgpu_xen_agent *a,
			   struct vgpu_err *err)
{
	_cleanup_free_ char *path = vgpu_asprintf("%s/resolv.conf", s->dir), *resolv = NULL;
	if (vgpu_read_file(path, AGENT_MAX_RESOLV_LEN, &resolv, NULL, NULL) < 0)
		resolv = vgpu_strdup("");
	struct agent_net_config nc;
	int r = vgpu_xen_net_agent_config(net, resolv, &nc, err);
	if (r == 0)
		r = vgpu_xen_agent_net_config(a, &nc, NET_CONFIG_MS, err);
	if (r < 0)
		vgpu_err_prefix(err, "sandbox %s: pod network in the guest", s->id);
	return r;
}

/* CNI for the pod's netns in this domain, before the domain: its vif takes eth0's MAC. The caller's
 * cleanup of a failed RunPodSandbox (release_resources) DELs and removes the netns. */
static int pod_network_prepare(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_xen_pod_net *net,
			       struct vgpu_xen_vif *vif, struct vgpu_xen_domain_spec *spec, struct vgpu_err *err)
{
	if (s->host_net) {
		vgpu_log(VGPU_LOG_WARN, "sandbox %s: a xen pod cannot share the driver domain's network: loopback only",
			 s->id);
		return 0;
	}
	int r = vgpu_xen_net_setup(m->d->cfg, s->id, s->config, net, err); /* errors name the sandbox */
	if (r < 0)
		return r;
	if (net->enabled) {
		*vif = (struct vgpu_xen_vif){ .mac = net->mac, .script = VGPU_XEN_VIF_SCRIPT };
		spec->vifs = vif;
		spec->n_vifs = 1;
	}
	return 0;
}

/* The pod's network is up in the guest: the vif on record (meta.json, saved by the caller with the
 * READY pod) and the times in the log. */
static void pod_network_done(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, const struct vgpu_xen_pod_net *net,
			     uint32_t domid, long long cni_ns, long long attach_ns, long long configure_ns)
{
	pthread_mutex_lock(&m->lock);
	free(s->xen_vif_mac);
	s->xen_vif_mac = vgpu_strdup(net->mac);
	pthread_mutex_unlock(&m->lock);
	vgpu_log(VGPU_LOG_INFO, "sandbox %s: pod network %s: %s on vif%u.0 (MAC %s, MTU %u) joined to eth0 in %s: "
		 "netns + CNI ADD %lld ms, vif joined %lld ms after create, guest configured %lld ms after the agent's "
		 "HELLO", s->id, net->result.network, vgpu_cni_result_primary_ip(&net->result), domid, net->mac, net->mtu,
		 net->netns, cni_ns / 1000000, attach_ns / 1000000, configure_ns / 1000000);
}

int vgpu_xen_pod_start(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_err *err)
{
	struct vgpu_xen_pods *x = m->xen;
	int r = vgpu_xen_pods_available(m, err);
	if (r < 0)
		return r;
	const struct vgpu_handler_config *h = vgpu_config_handler(m->d->cfg, s->handler);
	if (!h)
		return vgpu_err_set(err, -EINVAL, "sandbox %s: handler %s is gone", s->id, s->handler);
	struct vgpu_xen_domain_spec spec = { 0 };
	vgpu_xen_spec_from_handler(&spec, h);
	spec.name = s->xen_domain;
	const Runtime__V1__LinuxPodSandboxConfig *lx = s->config->linux;
	if (lx && lx->resources)
		vgpu_xen_pod_size(&spec, lx->resources->memory_limit_in_bytes, lx->resources->cpu_quota,
				  lx->resources->cpu_period);
	_cleanup_free_ char *console = vgpu_asprintf("%s/console.log", s->dir);
	spec.console_log = console;
	struct vgpu_xen_pod_net net = { 0 };
	struct vgpu_xen_vif vif = { 0 };
	long long t_cni = vgpu_now_ns();
	if ((r = pod_network_prepare(m, s, &net, &vif, &spec, err)) < 0)
		return r;
	uint32_t domid = 0;
	long long t0 = vgpu_now_ns();
	t_cni = t0 - t_cni;
	if ((r = vgpu_xen_domain_create(x->xen, &spec, &domid, err)) < 0) {
		vgpu_err_prefix(err, "sandbox %s", s->id);
		vgpu_xen_net_free(&net);
		return r;
	}
	long long t_created = vgpu_now_ns(), t_net = 0, t_hello = 0;
	pthread_mutex_lock(&m->lock);
	s->xen_domid = domid;
	pthread_mutex_unlock(&m->lock);
	r = vgpu_sandbox_save(m, s, err); /* still `creating`: start-up would destroy it by name */
	if (r == 0 && net.enabled) {
		r = vgpu_xen_net_attach(&net, domid, err);
		t_net = vgpu_now_ns();
		if (r < 0)
			vgpu_err_prefix(err, "sandbox %s: pod network", s->id);
	}
	char version[64] = "";
	if (r == 0) {
		struct vgpu_xen_agent *a = NULL;
		agent_forget(x, domid); /* a connection to an earlier domain of that id */
		r = agent_acquire(x, domid, h->agent_timeout_s * 1000, &a, version, sizeof(version), err);
		t_hello = vgpu_now_ns();
		if (r == 0) {
			if (net.enabled)
				r = send_net_config(s, &net, a, err);
			agent_release(x, domid); /* kept: the pod's connection from now on */
		} else {
			/* the pod's own link goes with the pod; xenconsoled's file stays for a post-mortem */
			_cleanup_free_ char *guest_log = vgpu_xen_consoled_log_path(NULL, s->xen_domain);
			vgpu_err_prefix(err, "sandbox %s: domain %s (console: %s)", s->id, s->xen_domain, guest_log);
		}
	}
	if (r < 0) {
		struct vgpu_err derr = { 0 };
		agent_forget(x, domid);
		if (vgpu_xen_domain_destroy(x->xen, domid, &derr) < 0)
			vgpu_log(VGPU_LOG_WARN, "sandbox %s: %s", s->id, derr.msg);
		pthread_mutex_lock(&m->lock);
		s->xen_domid = 0;
		pthread_mutex_unlock(&m->lock);
		vgpu_xen_net_free(&net);
		return r;
	}
	vgpu_log(VGPU_LOG_INFO, "sandbox %s: domain %s domid %u (%llu MiB, %u vcpus) created in %lld ms, agent %s up "
		 "%lld ms later", s->id, s->xen_domain, domid, spec.memory_mb, spec.vcpus, (t_created - t0) / 1000000,
		 version, (t_hello - t_created) / 1000000);
	if (net.enabled)
		pod_network_done(m, s, &net, domid, t_cni, t_net - t_created, vgpu_now_ns() - t_hello);
	vgpu_xen_net_free(&net);
	return 0;
}

int vgpu_xen_pod_stop(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, struct vgpu_err *err)
{
	struct vgpu_xen_pods *x = m->xen;
	pthread_mutex_lock(&m->lock);
	uint32_t domid = s->xen_domid;
	pthread_mutex_unlock(&m->lock);
	if (!x || !x->xen) {
		/* Without libxl there is nothing this daemon can destroy; a domain left behind is destroyed
		 * by the orphan sweep of the next start on Xen (its pod record is gone by then). */
		if (domid != 0)
			vgpu_log(VGPU_LOG_WARN, "sandbox %s: domain %s (domid %u) cannot be destroyed: %s", s->id,
				 s->xen_domain, domid, x ? x->why : "xen pods not initialised");
		pthread_mutex_lock(&m->lock);
		s->xen_domid = 0;
		pthread_mutex_unlock(&m->lock);
		return 0;
	}
	/* Our mapping of the guest's vchan pages would keep a destroyed domain a zombie (dying,
	 * never freed): let go of the connection before anything else. */
	if (domid != 0)
		agent_forget(x, domid);
	/* not ready from here on: the pump's check must not take the destruction for a domain that
	 * went away behind our back */
	pthread_mutex_lock(&m->lock);
	s->state = RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
	pthread_mutex_unlock(&m->lock);
	struct vgpu_xen_domain_info info;
	int r = find_domain(x, s, &info, err);
	if (r == 0) {
		agent_forget(x, info.domid);
		r = vgpu_xen_domain_destroy(x->xen, info.domid, err);
		if (r == 0)
			vgpu_log(VGPU_LOG_INFO, "sandbox %s: domain %s (domid %u) destroyed", s->id, s->xen_domain, info.domid);
	}
	if (r == -ENOENT) {
		vgpu_err_clear(err);
		r = 0;
	}
	if (r < 0) {
		vgpu_err_prefix(err, "sandbox %s", s->id);
		return r;
	}
	pthread_mutex_lock(&m->lock);
	s->xen_domid = 0;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

void vgpu_xen_pod_release(struct vgpu_pod_manager *m, const char *id)
{
	struct vgpu_xen_pods *x = m->xen;
	if (!x || !x->xen)
		return;
	_cleanup_free_ struct vgpu_xen_domain_info *infos = NULL;
	size_t n = 0;
	struct vgpu_err err = { 0 };
	if (vgpu_xen_domain_list(x->xen, &infos, &n, &err) < 0) {
		vgpu_log(VGPU_LOG_WARN, "sandbox %s: %s", id, err.msg);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char prefix[VGPU_XEN_POD_ID_CHARS + 1];
		if (!vgpu_xen_pod_domain_match(infos[i].name, prefix) || strncmp(prefix, id, VGPU_XEN_POD_ID_CHARS) != 0)
			continue;
		agent_forget(x, infos[i].domid);
		if (vgpu_xen_domain_destroy(x->xen, infos[i].domid, &err) < 0)
			vgpu_log(VGPU_LOG_WARN, "sandbox %s: %s", id, err.msg);
		else
			vgpu_log(VGPU_LOG_INFO, "sandbox %s: domain %s (domid %u) destroyed", id, infos[i].name,
				 infos[i].domid);
	}
}

/* Compare s with its domain; returns true if the record changed. */
static bool reconcile(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, bool at_start)
{
	struct vgpu_xen_pods *x = m->xen;
	pthread_mutex_lock(&m->lock);
	bool ready = s->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY;
	uint32_t domid = s->xen_domid;
	pthread_mutex_unlock(&m->lock);
	if (!ready)
		return false;
	const char *why = NULL;
	struct vgpu_xen_domain_info info;
	struct vgpu_err err = { 0 };
	int r = x && x->xen ? find_domain(x, s, &info, &err) : -ENODEV;
	if (r == -ENODEV)
		why = "Xen is not available to this daemon";
	else if (r == -ENOENT)
		why = "its domain is gone";
	else if (r < 0)
		return false; /* libxl trouble: keep what we know, say so */
	else if (info.state == VGPU_XEN_STATE_SHUTDOWN || info.state == VGPU_XEN_STATE_DYING)
		why = "its domain shut down";
	pthread_mutex_lock(&m->lock);
	if (why) {
		s->state = RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY;
	} else {
		s->xen_domid = info.domid;
	}
	pthread_mutex_unlock(&m->lock);
	if (why) {
		vgpu_log(VGPU_LOG_WARN, "sandbox %s: domain %s: %s: not ready", s->id, s->xen_domain, why);
		if (x && x->xen && domid != 0)
			agent_forget(x, domid); /* a kept mapping would leave the domain a zombie */
		/* libxl does not act on on_poweroff: a shut-down guest is ours to destroy */
		if (r == 0)
			agent_forget(x, info.domid);
		if (r == 0 && vgpu_xen_domain_destroy(x->xen, info.domid, &err) < 0)
			vgpu_log(VGPU_LOG_WARN, "sandbox %s: %s", s->id, err.msg);
		return true;
	}
	if (at_start)
		vgpu_log(VGPU_LOG_INFO, "sandbox %s: reattached to domain %s (domid %u)", s->id, s->xen_domain, info.domid);
	return info.domid != domid;
}

void vgpu_xen_pod_refresh(struct vgpu_pod_manager *m, struct vgpu_sandbox *s)
{
	if (reconcile(m, s, false))
		(void)vgpu_sandbox_save(m, s, NULL);
}

void vgpu_xen_pods_refresh_all(struct vgpu_pod_manager *m)
{
	struct vgpu_xen_pods *x = m->xen;
	if (!x || !x->xen)
		return;
	size_t n = 0, i = 0;
	pthread_mutex_lock(&m->lock);
	for (struct vgpu_sandbox *s = m->sandboxes; s; s = s->next)
		n += s->xen_domain && s->phase == VGPU_PHASE_LIVE;
	struct vgpu_sandbox **v = vgpu_calloc(n + 1, sizeof(*v));
	for (struct vgpu_sandbox *s = m->sandboxes; s && i < n; s = s->next)
		if (s->xen_domain && s->phase == VGPU_PHASE_LIVE) {
			s->refs++;
			v[i++] = s;
		}
	pthread_mutex_unlock(&m->lock);
	for (size_t k = 0; k < i; k++) {
		vgpu_xen_pod_refresh(m, v[k]);
		vgpu_sandbox_put(m, v[k]);
	}
	free(v);
}

void vgpu_xen_pod_recover(struct vgpu_pod_manager *m, struct vgpu_sandbox *s)
{
	if (reconcile(m, s, true))
		(void)vgpu_sandbox_save(m, s, NULL);
}

void vgpu_xen_pods_sweep(struct vgpu_pod_manager *m)
{
	struct vgpu_xen_pods *x = m->xen;
	if (!x || !x->xen)
		return;
	_cleanup_free_ struct vgpu_xen_domain_info *infos = NULL;
	size_t n = 0;
	struct vgpu_err err = { 0 };
	if (vgpu_xen_domain_list(x->xen, &infos, &n, &err) < 0) {
		vgpu_log(VGPU_LOG_WARN, "xen pods: %s", err.msg);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		char prefix[VGPU_XEN_POD_ID_CHARS + 1];
		if (!vgpu_xen_pod_domain_match(infos[i].name, prefix))
			continue;
		bool owned = false;
		pthread_mutex_lock(&m->lock);
		for (struct vgpu_sandbox *s = m->sandboxes; s && !owned; s = s->next)
			owned = s->xen_domain && strcmp(s->xen_domain, infos[i].name) == 0;
		pthread_mutex_unlock(&m->lock);
		if (owned)
			continue;
		if (vgpu_xen_domain_destroy(x->xen, infos[i].domid, &err) < 0)
			vgpu_log(VGPU_LOG_WARN, "xen pods: orphan domain %s: %s", infos[i].name, err.msg);
		else
			vgpu_log(VGPU_LOG_WARN, "xen pods: destroyed domain %s (domid %u): no pod owns it", infos[i].name,
				 infos[i].domid);
	}
}

int vgpu_xen_pod_agent_op(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, vgpu_xen_agent_op op, void *arg,
			  struct vgpu_err *err)
{
	struct vgpu_xen_pods *x = m->xen;
	int r = vgpu_xen_pods_available(m, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&m->lock);
	uint32_t domid = s->xen_domid;
	bool ready = s->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY;
	pthread_mutex_unlock(&m->lock);
	if (!ready || domid == 0)
		return vgpu_err_set(err, -ENOTCONN, "sandbox %s is not ready", s->id);
	for (int attempt = 0;; attempt++) {
		struct vgpu_xen_agent *a = NULL;
		r = agent_acquire(x, domid, EXEC_CONNECT_MS, &a, NULL, 0, err);
		if (r == 0) {
			r = op(a, arg, err);
			agent_release(x, domid);
		}
		/* a kept connection the agent had closed (it restarts its channel after a silence):
		 * the request never reached it, so one fresh attempt is safe */
		if (r != -EPIPE || attempt == 1)
			break;
		vgpu_err_clear(err);
	}
	if (r < 0)
		vgpu_err_prefix(err, "sandbox %s", s->id);
	return r;
}

struct exec_arg {
	const char *const *argv;
	uint32_t timeout_ms;
	struct vgpu_xen_exec_result *res;
};

static int exec_op(struct vgpu_xen_agent *a, void *arg, struct vgpu_err *err)
{
	struct exec_arg *e = arg;
	return vgpu_xen_agent_exec(a, e->argv, e->timeout_ms, e->res, err);
}

int vgpu_xen_pod_exec(struct vgpu_pod_manager *m, struct vgpu_sandbox *s, const char *const *argv,
		      uint32_t timeout_ms, struct vgpu_xen_exec_result *res, struct vgpu_err *err)
{
	struct exec_arg e = { argv, timeout_ms, res };
	return vgpu_xen_pod_agent_op(m, s, exec_op, &e, err);
}

static int ping_op(struct vgpu_xen_agent *a, void *arg, struct vgpu_err *err)
{
	return vgpu_xen_agent_ping(a, 10000, err);
}

void vgpu_xen_pods_keepalive(struct vgpu_pod_manager *m, long long idle_ns)
{
	struct vgpu_xen_pods *x = m->xen;
	if (!x || !x->xen)
		return;
	size_t n = 0, i = 0;
	pthread_mutex_lock(&m->lock);
	for (struct vgpu_sandbox *s = m->sandboxes; s; s = s->next)
		n += s->xen_domain && s->phase == VGPU_PHASE_LIVE;
	struct vgpu_sandbox **v = vgpu_calloc(n + 1, sizeof(*v));
	for (struct vgpu_sandbox *s = m->sandboxes; s && i < n; s = s->next)
		if (s->xen_domain && s->phase == VGPU_PHASE_LIVE && s->xen_domid &&
		    s->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY) {
			s->refs++;
			v[i++] = s;
		}
	pthread_mutex_unlock(&m->lock);
	for (size_t k = 0; k < i; k++) {
		pthread_mutex_lock(&m->lock);
		uint32_t domid = v[k]->xen_domid;
		pthread_mutex_unlock(&m->lock);
		struct agent_slot *sl = slot_of(x, domid);
		pthread_mutex_lock(&sl->lock);
		bool idle = sl->a && vgpu_xen_agent_domid(sl->a) == domid && vgpu_now_ns() - sl->last_used_ns > idle_ns;
		pthread_mutex_unlock(&sl->lock);
		struct vgpu_err err = { 0 };
		if (idle && vgpu_xen_pod_agent_op(m, v[k], ping_op, NULL, &err) < 0)
			vgpu_log(VGPU_LOG_WARN, "%s", err.msg);
		vgpu_sandbox_put(m, v[k]);
	}
	free(v);
}
