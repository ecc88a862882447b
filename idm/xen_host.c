/* xen_host.c: the Xen transport, broker side (dom0 or a driver domain). Watches the pod domain's
 * data/vgpu directory in xenstore; each record there is one channel offer: it is read, removed,
 * parsed strictly, its grants mapped and its event channel bound. The pod is the domid whose path
 * is watched and whose grants are mapped, never anything the guest writes. Built with
 * libxenstore/libxengnttab/libxenevtchn when CMake finds them (VGPU_HAVE_XEN_HOST); without them
 * (the GPU machine's VGPU_GPU_ONLY build) every entry point answers -ENOTSUP. */
#include "idm.h"
#include "idm_internal.h"

#include <errno.h>
#include <stdlib.h>

#ifndef VGPU_HAVE_XEN_HOST

int idm_xen_listen(uint32_t domid, struct idm_xen_listener **out, struct idm_err *err)
{
    return idm_err_set(err, -ENOTSUP, "xen transport: built without the Xen libraries");
}

int idm_xen_listener_fd(const struct idm_xen_listener *l)
{
    return -1;
}

int idm_xen_accept(struct idm_xen_listener *l, const struct idm_hello *hello, struct idm_chan **out,
                   struct idm_err *err)
{
    return idm_err_set(err, -ENOTSUP, "xen transport: built without the Xen libraries");
}

void idm_xen_listener_close(struct idm_xen_listener *l)
{
}

#else

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>
#include <xenevtchn.h>
#include <xengnttab.h>
#include <xenstore.h>

/* Owned by the broker's pod; used by one worker at a time (EPOLLONESHOT on its fd). */
struct idm_xen_listener {
    struct xs_handle *xs;
    uint32_t domid;
    char dir[64];   /* /local/domain/<domid>/data/vgpu */
    char epoch_path[64]; /* /local/domain/<domid>/data/vgpu-broker */
    char token[48];
    bool scan;      /* the watch fired: the directory must be read again */
    char **names;   /* entries of the last scan not handled yet */
    unsigned nnames, next;
};

/* Private state of a broker-side channel. */
struct xen_host {
    xengnttab_handle *gt;
    xenevtchn_handle *xce;
    uint32_t domid;
    evtchn_port_t local_port;
    bool bound;
    struct idm_xen_ctl *ctl;
    void *notify_map; /* page 0 again, with the unmap notify on ctl.broker_alive */
};

int idm_xen_listen(uint32_t domid, struct idm_xen_listener **out, struct idm_err *err)
{
    if (domid == 0 || domid >= 0x7ff0)
        return idm_err_set(err, -EINVAL, "xen transport: domid %u is not a guest", domid);
    struct idm_xen_listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return idm_err_set(err, -ENOMEM, "xen transport: out of memory");
    l->domid = domid;
    snprintf(l->dir, sizeof l->dir, "/local/domain/%u/" IDM_XEN_DIR, domid);
    snprintf(l->token, sizeof l->token, "vgpu-idm-%u", domid);
    l->xs = xs_open(0);
    if (l->xs == NULL) {
        int e = errno ? errno : EIO;
        free(l);
        return idm_err_set(err, -e, "xen transport: xenstore: %s", strerror(e));
    }
    /* Anything a previous broker left there is stale: its channels died with it. A new epoch
     * tells the guest's clients of that broker that it is gone. */
    (void)xs_rm(l->xs, XBT_NULL, l->dir);
    snprintf(l->epoch_path, sizeof l->epoch_path, "/local/domain/%u/" IDM_XEN_EPOCH, domid);
    uint64_t epoch = 0;
    if (getrandom(&epoch, sizeof epoch, 0) != sizeof epoch)
        epoch = idm_now_ns();
    char ev[32];
    snprintf(ev, sizeof ev, "%016llx", (unsigned long long)epoch);
    if (!xs_write(l->xs, XBT_NULL, l->epoch_path, ev, (unsigned)strlen(ev)))
        idm_log(IDM_LOG_WARN, "xen transport: domain %u: cannot publish the broker epoch: %s", domid,
                strerror(errno));
    if (!xs_watch(l->xs, l->dir, l->token)) {
        int e = errno ? errno : EIO;
        xs_close(l->xs);
        free(l);
        return idm_err_set(err, -e, "xen transport: watch %s: %s", "data/vgpu", strerror(e));
    }
    l->scan = true;
    *out = l;
    return 0;
}

int idm_xen_listener_fd(const struct idm_xen_listener *l)
{
    return xs_fileno(l->xs);
}

static void free_names(struct idm_xen_listener *l)
{
    free(l->names);
    l->names = NULL;
    l->nnames = l->next = 0;
}

void idm_xen_listener_close(struct idm_xen_listener *l)
{
    if (l == NULL)
        return;
    (void)xs_unwatch(l->xs, l->dir, l->token);
    (void)xs_rm(l->xs, XBT_NULL, l->dir);
    (void)xs_rm(l->xs, XBT_NULL, l->epoch_path);
    free_names(l);
    xs_close(l->xs);
    free(l);
}

/* ---- channel ops ---- */

static int host_notify(struct idm_chan *ch)
{
    struct xen_host *x = ch->xen;
    return xenevtchn_notify(x->xce, x->local_port) < 0 ? -errno : 0;
}

static int host_event(struct idm_chan *ch)
{
    struct xen_host *x = ch->xen;
    for (int i = 0; i < 64; i++) {
        xenevtchn_port_or_error_t p = xenevtchn_pending(x->xce);
        if (p < 0)
            break; /* EAGAIN: none left */
        (void)xenevtchn_unmask(x->xce, (evtchn_port_t)p);
    }
    /* cleared by the guest kernel when the process's mapping goes (exit, crash, kill -9) */
    return atomic_load(&x->ctl->alive) == 0 ? -EPIPE : 0;
}

static int host_wait(struct idm_chan *ch, int timeout_ms)
{
    struct pollfd pfd = { .fd = ch->evt_fd, .events = POLLIN };
    int n = poll(&pfd, 1, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int rc = host_event(ch);
    return rc < 0 ? rc : n == 0 ? -ETIMEDOUT : 0;
}

static void host_close(struct idm_chan *ch)
{
    struct xen_host *x = ch->xen;
    if (x == NULL)
        return;
    if (ch->shm != NULL) {
        atomic_store(&x->ctl->state, IDM_XEN_STATE_CLOSED);
        if (x->bound)
            (void)xenevtchn_notify(x->xce, x->local_port);
        if (x->notify_map != NULL)
            (void)xengnttab_unmap(x->gt, x->notify_map, 1);
        x->notify_map = NULL;
        (void)xengnttab_unmap(x->gt, ch->shm, IDM_XEN_PAGES);
        ch->shm = NULL;
    }
    if (x->bound)
        (void)xenevtchn_unbind(x->xce, x->local_port);
    if (x->xce != NULL)
        xenevtchn_close(x->xce);
    if (x->gt != NULL)
        xengnttab_close(x->gt);
    if (ch->efd_wait >= 0)
        close(ch->efd_wait);
    ch->efd_wait = ch->evt_fd = -1;
    free(x);
    ch->xen = NULL;
}

static const struct idm_transport_ops host_ops = {
    .name = "xen-host", .notify = host_notify, .wait = host_wait, .close = host_close,
    .event = host_event,
};

/* ---- accept ---- */

static int map_channel(struct idm_xen_listener *l, struct idm_xen_record *rec,
                       const struct idm_hello *hello, struct idm_chan *ch, struct idm_err *err)
{
    struct xen_host *x = ch->xen;
    x->gt = xengnttab_open(NULL, 0);
    x->xce = xenevtchn_open(NULL, 0);
    if (x->gt == NULL || x->xce == NULL)
        return idm_err_set(err, -errno, "open gnttab/evtchn: %s", strerror(errno));
    void *p = xengnttab_map_domain_grant_refs(x->gt, rec->npages, l->domid, rec->refs,
                                              PROT_READ | PROT_WRITE);
    if (p == NULL)
        return idm_err_set(err, -EINVAL, "map %u grants: %s", rec->npages, strerror(errno));
    ch->shm = p;
    ch->shm_size = (size_t)rec->npages * IDM_XEN_PAGE;
    x->ctl = (struct idm_xen_ctl *)(ch->shm + IDM_XEN_CTL_OFF);
    if (atomic_load(&x->ctl->alive) != 1)
        return idm_err_set(err, -EPROTO, "the offering process is gone (alive byte not set)");
    xenevtchn_port_or_error_t lp = xenevtchn_bind_interdomain(x->xce, l->domid, rec->port);
    if (lp < 0)
        return idm_err_set(err, -EINVAL, "bind event channel %u: %s", rec->port, strerror(errno));
    x->local_port = (evtchn_port_t)lp;
    x->bound = true;
    /* If this process dies, its mappings go and the kernel clears broker_alive and rings the guest:
     * a client waiting for a reply then ends at once, even if no daemon ever comes back. */
    atomic_store(&x->ctl->broker_alive, 1);
    x->notify_map = xengnttab_map_grant_ref_notify(
        x->gt, l->domid, rec->refs[0], PROT_READ | PROT_WRITE,
        IDM_XEN_CTL_OFF + (uint32_t)offsetof(struct idm_xen_ctl, broker_alive), x->local_port);
    if (x->notify_map == NULL)
        return idm_err_set(err, -EINVAL, "map page 0 with an unmap notify: %s", strerror(errno));
    ch->evt_fd = xenevtchn_fd(x->xce);
    int fl = fcntl(ch->evt_fd, F_GETFL);
    if (fl < 0 || fcntl(ch->evt_fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return idm_err_set(err, -errno, "event channel fd: %s", strerror(errno));
    ch->efd_wait = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ch->efd_wait < 0)
        return idm_err_set(err, -errno, "eventfd: %s", strerror(errno));
    struct idm_hello *h = &ch->hello;
    *h = *hello;
    h->magic = IDM_MAGIC;
    h->version = IDM_PROTO_VERSION;
    h->req_off = IDM_XEN_RINGS_OFF;
    h->req_size = IDM_XEN_RING_SIZE;
    h->rep_off = h->req_off + h->req_size;
    h->rep_size = IDM_XEN_RING_SIZE;
    h->shm_size = ch->shm_size;
    h->max_msg = IDM_XEN_MAX_MSG;
    /* The header is ours to initialise; the guest may rewrite it later, the ring code re-checks
     * every index it reads. */
    memset(ch->shm, 0, sizeof(struct idm_shm_hdr));
    ch->hdr = (struct idm_shm_hdr *)ch->shm;
    ch->hdr->magic = IDM_MAGIC;
    ch->hdr->version = IDM_PROTO_VERSION;
    atomic_store(&ch->hdr->req.consumer_sleeping, 1);
    memcpy(ch->shm + IDM_XEN_HELLO_OFF, h, sizeof *h);
    atomic_thread_fence(memory_order_seq_cst);
    atomic_store(&x->ctl->state, IDM_XEN_STATE_READY);
    (void)xenevtchn_notify(x->xce, x->local_port);
    idm_chan_map_rings(ch);
    return 0;
}

/* Reads and removes one entry; 0 with a channel, or an error for a bad entry. */
static int take_entry(struct idm_xen_listener *l, const char *name, const struct idm_hello *hello,
                      struct idm_chan **out, struct idm_err *err)
{
    size_t plen = strlen(l->dir) + strlen(name) + 2;
    char *path = malloc(plen);
    if (path == NULL)
        return idm_err_set(err, -ENOMEM, "out of memory");
    snprintf(path, plen, "%s/%s", l->dir, name);
    bool good_name = idm_xen_name_valid(name);
    unsigned len = 0;
    char *val = good_name ? xs_read(l->xs, XBT_NULL, path, &len) : NULL;
    (void)xs_rm(l->xs, XBT_NULL, path); /* one offer, one look: never read twice */
    free(path);
    if (!good_name)
        return idm_err_set(err, -EINVAL, "domain %u: channel offer with a bad name", l->domid);
    if (val == NULL)
        return idm_err_set(err, -ENOENT, "domain %u: offer %s vanished", l->domid, name);
    struct idm_xen_record *rec = calloc(1, sizeof *rec);
    if (rec == NULL) {
        free(val);
        return idm_err_set(err, -ENOMEM, "out of memory");
    }
    int rc = idm_xen_record_parse(val, len, rec);
    free(val);
    if (rc < 0) {
        free(rec);
        return idm_err_set(err, rc, "domain %u: offer %s: malformed record", l->domid, name);
    }
    struct idm_chan *ch = calloc(1, sizeof *ch);
    struct xen_host *x = calloc(1, sizeof *x);
    if (ch == NULL || x == NULL) {
        free(ch);
        free(x);
        free(rec);
        return idm_err_set(err, -ENOMEM, "out of memory");
    }
    ch->ops = &host_ops;
    ch->role = IDM_ROLE_BROKER;
    ch->sock_fd = ch->efd_wait = ch->efd_notify = ch->shm_fd = ch->evt_fd = -1;
    ch->xen = x;
    x->domid = l->domid;
    struct idm_err merr = { 0 };
    rc = map_channel(l, rec, hello, ch, &merr);
    free(rec);
    if (rc < 0) {
        idm_chan_close(ch);
        return idm_err_set(err, rc, "domain %u: offer %s: %s", l->domid, name, merr.msg);
    }
    *out = ch;
    return 0;
}

int idm_xen_accept(struct idm_xen_listener *l, const struct idm_hello *hello, struct idm_chan **out,
                   struct idm_err *err)
{
    char **ev;
    while ((ev = xs_check_watch(l->xs)) != NULL) {
        free(ev);
        l->scan = true;
    }
    if (l->next >= l->nnames) {
        free_names(l);
        if (!l->scan)
            return -EAGAIN;
        l->scan = false;
        unsigned n = 0;
        l->names = xs_directory(l->xs, XBT_NULL, l->dir, &n);
        if (l->names == NULL)
            return -EAGAIN; /* no directory (yet) */
        l->nnames = n;
        if (n > IDM_XEN_ENTRIES_MAX) {
            /* a flood: the surplus is dropped unread (each removal fires the watch again) */
            for (unsigned i = IDM_XEN_ENTRIES_MAX; i < n; i++) {
                size_t plen = strlen(l->dir) + strlen(l->names[i]) + 2;
                char *path = malloc(plen);
                if (path == NULL)
                    continue;
                snprintf(path, plen, "%s/%s", l->dir, l->names[i]);
                (void)xs_rm(l->xs, XBT_NULL, path);
                free(path);
            }
            l->nnames = IDM_XEN_ENTRIES_MAX;
            idm_log(IDM_LOG_WARN, "domain %u: %u channel offers at once; %u dropped", l->domid, n,
                    n - IDM_XEN_ENTRIES_MAX);
        }
    }
    if (l->next >= l->nnames)
        return -EAGAIN;
    return take_entry(l, l->names[l->next++], hello, out, err);
}

#endif
