/* xen_guest.c: the Xen transport, guest side (libvgpu.so in a container of a xen pod). Talks to
 * the guest kernel's /dev/xen/gntalloc, /dev/xen/evtchn and /dev/xen/xenbus directly (ioctls and
 * the xenstore wire protocol), so that the shim needs no Xen library in the container. The ioctl
 * numbers and layouts are the kernel UAPI's (include/uapi/xen/gntalloc.h, evtchn.h). */
#include "idm.h"
#include "idm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

/* gntalloc: allocate pages granted to a domain, free them, ask for a notification at unmap */
struct xg_alloc_gref {
    uint16_t domid;
    uint16_t flags;
    uint32_t count;
    uint64_t index;
    uint32_t gref_ids[1]; /* count entries come back */
};
struct xg_dealloc_gref {
    uint64_t index;
    uint32_t count;
};
struct xg_unmap_notify {
    uint64_t index;
    uint32_t action;
    uint32_t event_channel_port;
};
#define XG_GNTALLOC_ALLOC _IOC(_IOC_NONE, 'G', 5, sizeof(struct xg_alloc_gref))
#define XG_GNTALLOC_DEALLOC _IOC(_IOC_NONE, 'G', 6, sizeof(struct xg_dealloc_gref))
#define XG_GNTALLOC_UNMAP_NOTIFY _IOC(_IOC_NONE, 'G', 7, sizeof(struct xg_unmap_notify))
#define XG_GNTALLOC_WRITABLE 1u
#define XG_NOTIFY_CLEAR_BYTE 0x1u
#define XG_NOTIFY_SEND_EVENT 0x2u

/* evtchn: an unbound port for a remote domain (the ioctl returns the port), notify */
struct xg_evtchn_port {
    uint32_t port; /* remote_domain for BIND_UNBOUND */
};
#define XG_EVTCHN_BIND_UNBOUND _IOC(_IOC_NONE, 'E', 2, sizeof(struct xg_evtchn_port))
#define XG_EVTCHN_NOTIFY _IOC(_IOC_NONE, 'E', 4, sizeof(struct xg_evtchn_port))

#define CONNECT_TIMEOUT_MS 10000

/* Private state of a guest channel. */
struct xen_guest {
    int gnt_fd;
    int xs_fd;
    uint32_t port;
    uint64_t index;
    uint32_t req_id;
    struct idm_xen_ctl *ctl;
    char key[IDM_XEN_NAME_MAX + 64];
    char epoch[40];     /* the broker's epoch at connect ("" if it published none) */
    unsigned idle_waits; /* waits in a row that timed out */
};

#define EPOCH_CHECK_WAITS 5 /* check the broker's epoch after this many idle waits (~5 s) */

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* ---- xenstore over /dev/xen/xenbus ---- */

/* One request, its reply; the reply's payload (if out) NUL-terminated, cut to out_cap. */
static int xs_request_out(struct xen_guest *g, uint32_t type, const char *const *parts,
                          size_t nparts, bool last_nul, char *out, size_t out_cap)
{
    uint8_t buf[sizeof(struct idm_xs_hdr) + IDM_XS_PAYLOAD_MAX];
    uint32_t id = ++g->req_id;
    int n = idm_xs_encode(type, id, parts, nparts, last_nul, buf, sizeof buf);
    if (n < 0)
        return n;
    if (write(g->xs_fd, buf, (size_t)n) != n)
        return -EIO;
    /* the reply (no watches are set on this handle, so nothing else arrives) */
    size_t got = 0;
    struct idm_xs_hdr h;
    for (;;) {
        ssize_t r = read(g->xs_fd, buf + got, sizeof buf - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -EIO;
        got += (size_t)r;
        int d = idm_xs_decode(buf, got, &h);
        if (d == 0)
            break;
        if (d != -EAGAIN)
            return d;
    }
    if (h.req_id != id)
        return -EPROTO;
    if (h.type == IDM_XS_ERROR)
        return -ENOENT;
    if (out != NULL && out_cap > 0) {
        size_t take = h.len < out_cap - 1 ? h.len : out_cap - 1;
        memcpy(out, buf + sizeof h, take);
        out[take] = '\0';
    }
    return 0;
}

static int xs_request(struct xen_guest *g, uint32_t type, const char *const *parts, size_t nparts,
                      bool last_nul)
{
    return xs_request_out(g, type, parts, nparts, last_nul, NULL, 0);
}

static int xs_read_epoch(struct xen_guest *g, char *out, size_t cap)
{
    const char *parts[1] = { IDM_XEN_EPOCH };
    return xs_request_out(g, IDM_XS_READ, parts, 1, true, out, cap);
}

static int xs_write(struct xen_guest *g, const char *path, const char *value)
{
    const char *parts[2] = { path, value };
    return xs_request(g, IDM_XS_WRITE, parts, 2, false);
}

static void xs_rm(struct xen_guest *g, const char *path)
{
    const char *parts[1] = { path };
    (void)xs_request(g, IDM_XS_RM, parts, 1, true);
}

/* ---- transport ops ---- */

static int guest_notify(struct idm_chan *ch)
{
    struct xen_guest *g = ch->xen;
    struct xg_evtchn_port n = { g->port };
    return ioctl(ch->evt_fd, XG_EVTCHN_NOTIFY, &n) < 0 ? -errno : 0;
}

/* Reads pending ports and unmasks them (the kernel masks a port when it delivers it). */
static void drain_evtchn(int fd)
{
    uint32_t ports[16];
    ssize_t n = read(fd, ports, sizeof ports);
    if (n > 0 && write(fd, ports, (size_t)n) < 0)
        idm_log(IDM_LOG_DEBUG, "xen: unmask event channel: %s", strerror(errno));
}

/* The broker closed the channel, or its process is gone (the unmap notify cleared the byte). */
static bool broker_gone(const struct xen_guest *g)
{
    uint32_t st = atomic_load(&g->ctl->state);
    return st == IDM_XEN_STATE_CLOSED ||
           (st == IDM_XEN_STATE_READY && atomic_load(&g->ctl->broker_alive) == 0);
}

static int guest_wait(struct idm_chan *ch, int timeout_ms)
{
    struct xen_guest *g = ch->xen;
    if (broker_gone(g))
        return -EPIPE;
    struct pollfd pfd = { .fd = ch->evt_fd, .events = POLLIN };
    int n = poll(&pfd, 1, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    if (n > 0)
        drain_evtchn(ch->evt_fd);
    if (broker_gone(g))
        return -EPIPE;
    if (n > 0) {
        g->idle_waits = 0;
        return 0;
    }
    /* Long silence: is our broker still there? A dead one cannot mark the channel CLOSED. */
    if (++g->idle_waits >= EPOCH_CHECK_WAITS && g->epoch[0] != '\0' && g->xs_fd >= 0) {
        g->idle_waits = 0;
        char now[sizeof g->epoch];
        if (xs_read_epoch(g, now, sizeof now) < 0 || strcmp(now, g->epoch) != 0)
            return -EPIPE;
    }
    return -ETIMEDOUT;
}

static void guest_close(struct idm_chan *ch)
{
    struct xen_guest *g = ch->xen;
    if (g == NULL)
        return;
    if (ch->shm != NULL) {
        munmap(ch->shm, ch->shm_size);
        ch->shm = NULL;
    }
    if (g->gnt_fd >= 0) {
        /* the pages go when both the mapping and the allocation are gone; the unmap notify then
         * clears ctl.alive and rings the broker */
        struct xg_dealloc_gref d = { g->index, IDM_XEN_PAGES };
        (void)ioctl(g->gnt_fd, XG_GNTALLOC_DEALLOC, &d);
    }
    close_fd(&g->gnt_fd);
    close_fd(&g->xs_fd);
    close_fd(&ch->evt_fd);
    free(g);
    ch->xen = NULL;
}

static const struct idm_transport_ops guest_ops = {
    .name = "xen-guest", .notify = guest_notify, .wait = guest_wait, .close = guest_close,
};

/* ---- connect ---- */

static int open_dev(const char *path, struct idm_err *err, int *fd)
{
    *fd = open(path, O_RDWR | O_CLOEXEC);
    if (*fd < 0)
        return idm_err_set(err, -errno, "xen: open %s: %s", path, strerror(errno));
    return 0;
}

static int grant_pages(struct idm_chan *ch, struct xen_guest *g, struct idm_xen_record *rec,
                       struct idm_err *err)
{
    size_t sz = offsetof(struct xg_alloc_gref, gref_ids) + IDM_XEN_PAGES * sizeof(uint32_t);
    struct xg_alloc_gref *a = calloc(1, sz < sizeof *a ? sizeof *a : sz);
    if (a == NULL)
        return idm_err_set(err, -ENOMEM, "xen: out of memory");
    a->domid = 0; /* the broker runs in dom0 */
    a->flags = XG_GNTALLOC_WRITABLE;
    a->count = IDM_XEN_PAGES;
    if (ioctl(g->gnt_fd, XG_GNTALLOC_ALLOC, a) < 0) {
        int e = errno;
        free(a);
        return idm_err_set(err, -e, "xen: grant %u pages to dom0: %s", IDM_XEN_PAGES, strerror(e));
    }
    g->index = a->index;
    memcpy(rec->refs, a->gref_ids, IDM_XEN_PAGES * sizeof(uint32_t));
    free(a);
    rec->npages = IDM_XEN_PAGES;
    size_t size = (size_t)IDM_XEN_PAGES * IDM_XEN_PAGE;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, g->gnt_fd, (off_t)g->index);
    if (p == MAP_FAILED) {
        int e = errno;
        struct xg_dealloc_gref d = { g->index, IDM_XEN_PAGES };
        (void)ioctl(g->gnt_fd, XG_GNTALLOC_DEALLOC, &d);
        close_fd(&g->gnt_fd); /* nothing of it is mapped: no notify can fire */
        return idm_err_set(err, -e, "xen: map granted pages: %s", strerror(e));
    }
    ch->shm = p;
    ch->shm_size = size;
    g->ctl = (struct idm_xen_ctl *)(ch->shm + IDM_XEN_CTL_OFF);
    atomic_store(&g->ctl->alive, 1);
    struct xg_unmap_notify n = { g->index + IDM_XEN_CTL_OFF + offsetof(struct idm_xen_ctl, alive),
                                 XG_NOTIFY_CLEAR_BYTE | XG_NOTIFY_SEND_EVENT, g->port };
    if (ioctl(g->gnt_fd, XG_GNTALLOC_UNMAP_NOTIFY, &n) < 0)
        return idm_err_set(err, -errno, "xen: unmap notify: %s", strerror(errno));
    return 0;
}

/* The broker wrote the hello: copy it and check the layout against what we granted. */
static int take_hello(struct idm_chan *ch, struct idm_err *err)
{
    struct idm_hello *h = &ch->hello;
    memcpy(h, ch->shm + IDM_XEN_HELLO_OFF, sizeof *h);
    if (h->magic != IDM_MAGIC || h->version != IDM_PROTO_VERSION)
        return idm_err_set(err, -EPROTO, "xen: bad hello (version %u, want %u)", h->version,
                           IDM_PROTO_VERSION);
    if (h->shm_size != ch->shm_size || h->req_off < IDM_XEN_RINGS_OFF ||
        h->req_off + h->req_size > h->rep_off || h->rep_off + h->rep_size > h->shm_size ||
        h->req_size == 0 || h->rep_size == 0 || (h->req_size & (h->req_size - 1)) ||
        (h->rep_size & (h->rep_size - 1)) || h->max_msg > h->req_size / 2 ||
        h->max_msg > h->rep_size / 2)
        return idm_err_set(err, -EPROTO, "xen: bad channel layout in the hello");
    h->pod_id[IDM_POD_ID_MAX - 1] = 0;
    h->device_name[IDM_NAME_MAX - 1] = 0;
    return 0;
}

static int wait_ready(struct idm_chan *ch, struct xen_guest *g, int timeout_ms, struct idm_err *err)
{
    uint64_t deadline = idm_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        uint32_t st = atomic_load(&g->ctl->state);
        if (st == IDM_XEN_STATE_READY)
            return 0;
        if (st == IDM_XEN_STATE_CLOSED)
            return idm_err_set(err, -ECONNREFUSED, "xen: the broker refused the channel");
        uint64_t now = idm_now_ns();
        if (now >= deadline)
            return idm_err_set(err, -ETIMEDOUT, "xen: no answer from the broker in %d ms "
                               "(is this a GPU pod?)", timeout_ms);
        struct pollfd pfd = { .fd = ch->evt_fd, .events = POLLIN };
        if (poll(&pfd, 1, 100) > 0)
            drain_evtchn(ch->evt_fd);
    }
}

int idm_xen_connect(const char *dir, int timeout_ms, struct idm_chan **out, struct idm_err *err)
{
    if (dir == NULL)
        dir = IDM_XEN_DIR;
    if (timeout_ms <= 0)
        timeout_ms = CONNECT_TIMEOUT_MS;
    struct idm_chan *ch = calloc(1, sizeof *ch);
    struct xen_guest *g = calloc(1, sizeof *g);
    if (ch == NULL || g == NULL) {
        free(ch);
        free(g);
        return idm_err_set(err, -ENOMEM, "xen: out of memory");
    }
    ch->ops = &guest_ops;
    ch->role = IDM_ROLE_CLIENT;
    ch->sock_fd = ch->efd_wait = ch->efd_notify = ch->shm_fd = ch->evt_fd = -1;
    ch->xen = g;
    g->gnt_fd = g->xs_fd = -1;
    int rc;
    if ((rc = open_dev("/dev/xen/evtchn", err, &ch->evt_fd)) < 0 ||
        (rc = open_dev("/dev/xen/gntalloc", err, &g->gnt_fd)) < 0 ||
        (rc = open_dev("/dev/xen/xenbus", err, &g->xs_fd)) < 0)
        goto fail;
    struct xg_evtchn_port b = { 0 }; /* remote domain 0 */
    int port = ioctl(ch->evt_fd, XG_EVTCHN_BIND_UNBOUND, &b);
    if (port <= 0) {
        rc = idm_err_set(err, port < 0 ? -errno : -EIO, "xen: event channel: %s",
                         port < 0 ? strerror(errno) : "port 0");
        goto fail;
    }
    g->port = (uint32_t)port;
    (void)fcntl(ch->evt_fd, F_SETFL, O_NONBLOCK);
    struct idm_xen_record *rec = calloc(1, sizeof *rec);
    char *text = malloc(IDM_XEN_RECORD_MAX + 1);
    if (rec == NULL || text == NULL) {
        free(rec);
        free(text);
        rc = idm_err_set(err, -ENOMEM, "xen: out of memory");
        goto fail;
    }
    rec->port = g->port;
    rc = grant_pages(ch, g, rec, err);
    int n = rc < 0 ? rc : idm_xen_record_format(rec, text, IDM_XEN_RECORD_MAX + 1);
    free(rec);
    if (rc < 0 || n < 0) {
        free(text);
        rc = rc < 0 ? rc : idm_err_set(err, n, "xen: grant references do not fit a record");
        goto fail;
    }
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
        rnd = (uint32_t)idm_now_ns();
    snprintf(g->key, sizeof g->key, "%s/c%x-%x", dir, (unsigned)getpid(), rnd);
    rc = xs_write(g, g->key, text);
    free(text);
    if (rc < 0) {
        rc = idm_err_set(err, rc, "xen: write xenstore %s: %s", g->key, strerror(-rc));
        goto fail;
    }
    rc = wait_ready(ch, g, timeout_ms, err);
    if (rc == 0)
        rc = take_hello(ch, err);
    if (rc < 0) {
        xs_rm(g, g->key); /* the broker removes it when it takes it; never there: we do */
        goto fail;
    }
    /* kept open: the broker's epoch is checked when replies are long in coming */
    if (xs_read_epoch(g, g->epoch, sizeof g->epoch) < 0)
        g->epoch[0] = '\0';
    idm_chan_map_rings(ch);
    *out = ch;
    return 0;
fail:
    idm_chan_close(ch);
    return rc;
}
