/* broker.c: pods, the worker pool and channel lifecycles.
 *
 * All listeners and channels sit in one epoll set with EPOLLONESHOT, so each channel is served
 * by one worker at a time and in order. A channel's own small epoll set holds its doorbell and
 * its socket (hang-up = the client is gone: its GPU objects are freed). A worker serving a
 * channel drains its ring, spins briefly for more, then sets the "consumer sleeping" flag and
 * re-arms the channel; it gives the channel up after a time slice so that others get served. */
#include "handles.h"
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define SLICE_NS 2000000ull /* give a busy channel up after 2 ms */
#define XEN_MAX_CHANNELS 16u   /* open channels of one xen pod (each maps ~1 MiB of its pages) */
#define XEN_REFUSED_LOGGED 16u /* refused offers of a xen pod logged one by one, then every 1000th */
#define BATCH 256

static struct pod *find_pod_locked(struct broker *b, const char *id)
{
    for (struct pod *p = b->pods; p != NULL; p = p->next)
        if (strcmp(p->id, id) == 0)
            return p;
    return NULL;
}

static bool pod_listed_locked(struct broker *b, struct pod *pod)
{
    for (struct pod *p = b->pods; p != NULL; p = p->next)
        if (p == pod)
            return true;
    return false;
}

static void channel_destroy(struct channel *c)
{
    struct broker *b = c->b;
    struct pod *pod = c->pod;
    (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, c->epfd, NULL);
    /* Unlisted first, so that broker_pod_remove no longer rings its (soon closed) doorbell. */
    pthread_mutex_lock(&pod->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        pod->channels = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pod->destroying++;
    pthread_mutex_unlock(&pod->lock);
    if (pod->ctx != NULL)
        (void)b->be.ops->ctx_bind(&b->be, pod->ctx);
    broker_channel_release_objects(c);
    if (c->rings_registered)
        (void)b->be.ops->host_unregister(&b->be, pod->ctx, c->ic->shm + c->ic->hello.req_off);
    broker_flush_stats(c);
    ht_fini(&c->ht);
    at_fini(&c->at);
    free(c->scratch);
    broker_stage_drop(c);
    close(c->epfd);
    idm_chan_close(c->ic);
    idm_log(IDM_LOG_DEBUG, "pod %s: channel %llu closed", pod->id, (unsigned long long)c->id);
    pthread_mutex_lock(&pod->lock);
    pod->destroying--;
    pod->usage.channels--;
    /* A context that hit a sticky fault is unusable: rebuild it once nobody uses it. */
    if (pod->usage.channels == 0 && pod->ctx_poisoned && b->child) {
        /* A sticky GPU fault poisons every context of the process: let the parent restart it. */
        idm_log(IDM_LOG_WARN, "pod %s: GPU context faulted; restarting the pod process", pod->id);
        atomic_store(&b->need_restart, 1);
    } else if (pod->usage.channels == 0 && pod->ctx_poisoned && pod->ctx != NULL) {
        idm_log(IDM_LOG_WARN, "pod %s: GPU context faulted; recreating it", pod->id);
        b->be.ops->ctx_destroy(&b->be, pod->ctx);
        pod->ctx = NULL;
        pod->ctx_poisoned = false;
    }
    pthread_cond_broadcast(&pod->cond);
    pthread_mutex_unlock(&pod->lock);
    free(c);
}

static int rearm(struct broker *b, struct channel *c)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = &c->tag };
    return epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->epfd, &ev);
}

/* Returns true if the channel must be closed. */
static bool drain_inner(struct channel *c)
{
    struct epoll_event evs[3];
    int n = epoll_wait(c->epfd, evs, 3, 0);
    for (int i = 0; i < n; i++) {
        if (c->ic->sock_fd >= 0 && evs[i].data.fd == c->ic->sock_fd) {
            if (evs[i].events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR))
                return true;
        } else if (c->ic->evt_fd >= 0 && evs[i].data.fd == c->ic->evt_fd) {
            if (c->ic->ops->event != NULL && c->ic->ops->event(c->ic) < 0)
                return true; /* the peer process is gone */
        } else {
            uint64_t v;
            if (read(c->ic->efd_wait, &v, sizeof v) < 0 && errno != EAGAIN)
                return true;
        }
    }
    return atomic_load(&c->closing) != 0;
}

/* Process up to BATCH messages. 0: idle or progressed, 1: parked, <0: close. */
static int process(struct channel *c, bool *progress)
{
    struct idm_chan *ic = c->ic;
    for (int i = 0; i < BATCH; i++) {
        struct idm_msg hdr;
        const uint8_t *msg;
        int rc = idm_ring_peek(&ic->rx, ic->max_msg, &hdr, &msg);
        if (rc == -EAGAIN)
            return 0;
        if (rc < 0)
            return rc;
        rc = broker_dispatch(c, &hdr, msg);
        if (rc != 0)
            return rc;
        idm_ring_consume(&ic->rx, &hdr);
        *progress = true;
    }
    return 0;
}

static void serve_channel(struct broker *b, struct channel *c)
{
    struct idm_chan *ic = c->ic;
    struct idm_shm_hdr *sh = ic->hdr;
    if (drain_inner(c) || c->pod->ctx == NULL) {
        channel_destroy(c);
        return;
    }
    if (b->be.ops->ctx_bind(&b->be, c->pod->ctx) != 0) {
        channel_destroy(c);
        return;
    }
    uint64_t start = idm_now_ns(), last = start, spin = idm_spin_ns();
    atomic_store(&sh->req.consumer_sleeping, 0);
    atomic_store(&sh->rep.producer_waiting, 0);
    for (;;) {
        bool progress = false;
        int rc = process(c, &progress);
        if (rc < 0) {
            idm_log(IDM_LOG_WARN, "pod %s: channel %llu: protocol error, closing it", c->pod->id,
                    (unsigned long long)c->id);
            channel_destroy(c);
            return;
        }
        if (progress) {
            atomic_thread_fence(memory_order_seq_cst);
            if (atomic_load(&sh->req.producer_waiting))
                (void)ic->ops->notify(ic);
            last = idm_now_ns();
        }
        if (atomic_load(&c->closing)) {
            channel_destroy(c);
            return;
        }
        uint64_t now = progress ? last : idm_now_ns();
        if (rc == 0 && now - start > SLICE_NS && !idm_ring_empty(&ic->rx)) {
            broker_flush_stats(c);
            uint64_t one = 1; /* still busy: requeue behind the other channels */
            if (write(ic->efd_wait, &one, sizeof one) < 0 && errno != EAGAIN)
                idm_log(IDM_LOG_WARN, "pod %s: requeue: %s", c->pod->id, strerror(errno));
            break;
        }
        if (rc == 1 || (!progress && now - last > spin)) {
            /* go to sleep: flag, re-check, re-arm (the client rings when it sees the flag) */
            if (rc == 1)
                atomic_store(&sh->rep.producer_waiting, 1);
            atomic_store(&sh->req.consumer_sleeping, 1);
            bool more = rc == 1 ? false : !idm_ring_empty(&ic->rx);
            if (rc == 1) {
                struct idm_msg h;
                const uint8_t *m;
                more = idm_ring_peek(&ic->rx, ic->max_msg, &h, &m) == 0 &&
                       idm_ring_free(&ic->tx) >= (int64_t)(2 * (uint64_t)ic->max_msg);
            }
            if (!more) {
                broker_flush_stats(c);
                break;
            }
            atomic_store(&sh->req.consumer_sleeping, 0);
            atomic_store(&sh->rep.producer_waiting, 0);
            continue;
        }
        if (!progress)
            idm_cpu_relax();
    }
    if (rearm(b, c) < 0) {
        idm_log(IDM_LOG_ERROR, "pod %s: re-arm channel: %s", c->pod->id, strerror(errno));
        channel_destroy(c);
    }
}

static int channel_create(struct broker *b, struct pod *pod, struct idm_chan *ic)
{
    struct channel *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    c->tag.kind = TAG_CHANNEL;
    c->tag.ptr = c;
    c->b = b;
    c->pod = pod;
    c->ic = ic;
    c->id = ic->hello.channel_id;
    ht_init(&c->ht);
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e1 = { .events = EPOLLIN, .data.fd = ic->efd_wait };
    struct epoll_event e2 = { .events = EPOLLRDHUP, .data.fd = ic->sock_fd };
    struct epoll_event e3 = { .events = EPOLLIN, .data.fd = ic->evt_fd };
    struct epoll_event outer = { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = &c->tag };
    /* local: doorbell + socket (hang-up); xen: doorbell (kicks) + event channel */
    if (c->epfd < 0 || epoll_ctl(c->epfd, EPOLL_CTL_ADD, ic->efd_wait, &e1) < 0 ||
        (ic->sock_fd >= 0 && epoll_ctl(c->epfd, EPOLL_CTL_ADD, ic->sock_fd, &e2) < 0) ||
        (ic->evt_fd >= 0 && epoll_ctl(c->epfd, EPOLL_CTL_ADD, ic->evt_fd, &e3) < 0)) {
        int e = -errno;
        if (c->epfd >= 0)
            close(c->epfd);
        idm_chan_close(ic);
        free(c);
        return e;
    }
    /* Rings are pinned for the GPU so that copies staged in them are DMA. */
    if (b->be.ops->ctx_bind(&b->be, pod->ctx) == 0 &&
        b->be.ops->host_register(&b->be, pod->ctx, ic->shm + ic->hello.req_off,
                                 ic->hello.req_size + ic->hello.rep_size) == 0)
        c->rings_registered = true;
    /* The caller holds pod->lock, so no worker can close the channel before it is listed. */
    c->next = pod->channels;
    if (pod->channels)
        pod->channels->prev = c;
    pod->channels = c;
    pod->usage.channels++;
    pod->usage.channels_total++;
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->epfd, &outer) < 0) {
        int e = -errno;
        idm_log(IDM_LOG_ERROR, "pod %s: epoll add channel: %s", pod->id, strerror(errno));
        pod->channels = c->next;
        if (c->next)
            c->next->prev = NULL;
        pod->usage.channels--;
        if (c->rings_registered)
            (void)b->be.ops->host_unregister(&b->be, pod->ctx, ic->shm + ic->hello.req_off);
        ht_fini(&c->ht);
        close(c->epfd);
        idm_chan_close(ic);
        free(c);
        return e;
    }
    idm_log(IDM_LOG_DEBUG, "pod %s: channel %llu open", pod->id, (unsigned long long)c->id);
    return 0;
}

static void serve_listener(struct broker *b, struct pod *pod)
{
    pthread_rwlock_rdlock(&b->pods_lock);
    if (!pod_listed_locked(b, pod)) {
        pthread_rwlock_unlock(&b->pods_lock);
        return;
    }
    pthread_mutex_lock(&pod->lock);
    /* a xen pod's offers were all read when its watch fired: take them all (bounded) */
    int batch = pod->xen != NULL ? IDM_XEN_ENTRIES_MAX + 1 : 16;
    for (int i = 0; i < batch && !pod->closing; i++) {
        struct idm_err err = { 0 };
        if (pod->ctx == NULL) {
            int r = b->be.ops->ctx_create(&b->be, &pod->ctx);
            if (r != 0) {
                idm_log(IDM_LOG_ERROR, "pod %s: create GPU context: CUresult %d", pod->id, r);
                pod->ctx = NULL;
            }
        }
        struct idm_hello h = b->dev;
        snprintf(h.pod_id, sizeof h.pod_id, "%s", pod->id);
        h.channel_id = atomic_fetch_add(&b->next_channel_id, 1);
        h.quota_bytes = pod->quota_bytes;
        h.compute_share = pod->compute_share;
        struct idm_chan *ic;
        int rc = pod->xen != NULL ? idm_xen_accept(pod->xen, &h, &ic, &err)
                                  : idm_local_accept(pod->listen_fd, &h, &ic, &err);
        if (rc == -EAGAIN)
            break;
        if (rc < 0 && pod->xen != NULL) {
            /* a guest's bad offer costs only that offer; a flood of them is not a log flood */
            if (pod->xen_refused++ < XEN_REFUSED_LOGGED || pod->xen_refused % 1000 == 0)
                idm_log(IDM_LOG_WARN, "pod %s: %s (%llu offers refused so far)", pod->id, err.msg,
                        (unsigned long long)pod->xen_refused);
            continue;
        }
        if (rc < 0) {
            idm_log(IDM_LOG_WARN, "pod %s: %s", pod->id, err.msg);
            break;
        }
        if (pod->xen != NULL && pod->usage.channels >= XEN_MAX_CHANNELS) {
            /* each channel maps pages and holds an event channel in dom0: bounded per pod */
            if (pod->xen_refused++ < XEN_REFUSED_LOGGED || pod->xen_refused % 1000 == 0)
                idm_log(IDM_LOG_WARN, "pod %s: channel refused: already %u channels (the most for a "
                        "xen pod)", pod->id, XEN_MAX_CHANNELS);
            idm_chan_close(ic);
            continue;
        }
        if (pod->ctx == NULL)
            idm_chan_close(ic);
        else if (channel_create(b, pod, ic) < 0)
            idm_log(IDM_LOG_WARN, "pod %s: cannot set up channel", pod->id);
    }
    if (!pod->closing) {
        struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = &pod->ltag };
        if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, pod->listen_fd, &ev) < 0)
            idm_log(IDM_LOG_ERROR, "pod %s: re-arm listener: %s", pod->id, strerror(errno));
    }
    pthread_mutex_unlock(&pod->lock);
    pthread_rwlock_unlock(&b->pods_lock);
}

static void *worker_main(void *arg)
{
    struct broker *b = arg;
    while (!atomic_load(&b->stop)) {
        struct epoll_event ev;
        int n = epoll_wait(b->epfd, &ev, 1, -1);
        if (n <= 0)
            continue;
        struct ev_tag *t = ev.data.ptr;
        if (t->kind == TAG_LISTENER)
            serve_listener(b, t->ptr);
        else if (t->kind == TAG_CHANNEL)
            serve_channel(b, t->ptr);
    }
    return NULL;
}

int broker_create(const struct broker_config *cfg, broker_t **out, struct idm_err *err)
{
    bool cuda = cfg->backend == NULL || strcmp(cfg->backend, "cuda") == 0;
    if (cfg->pod_processes > 0 || (cfg->pod_processes == 0 && cuda))
        return broker_pp_create(cfg, out, err);
    return broker_inproc_create(cfg, NULL, out, err);
}

void broker_destroy(broker_t *b)
{
    if (b != NULL && b->pp != NULL)
        broker_pp_destroy(b);
    else
        broker_inproc_destroy(b);
}

int broker_pod_add(broker_t *b, const char *pod_id, const char *socket_path, uint64_t quota_bytes,
                   unsigned compute_share, struct idm_err *err)
{
    if (b->pp != NULL)
        return broker_pp_pod_add(b, pod_id, socket_path, quota_bytes, compute_share, err);
    return broker_inproc_pod_add(b, pod_id, socket_path, -1, -1, quota_bytes, compute_share, err);
}

int broker_pod_remove(broker_t *b, const char *pod_id, struct idm_err *err)
{
    if (b->pp != NULL)
        return broker_pp_pod_remove(b, pod_id, err);
    return broker_inproc_pod_remove(b, pod_id, NULL, err);
}

int broker_pod_usage(broker_t *b, const char *pod_id, struct broker_usage *out,
                     struct idm_err *err)
{
    if (b->pp != NULL)
        return broker_pp_pod_usage(b, pod_id, out, err);
    return broker_inproc_pod_usage(b, pod_id, out, err);
}

/* The keeper's drain: every GPU operation of the pod in that slot finished. */
static int drain_slot(void *arg, int slot)
{
    struct broker *b = arg;
    int rc = 0;
    pthread_rwlock_rdlock(&b->pods_lock);
    for (struct pod *p = b->pods; p != NULL; p = p->next) {
        if (p->slot != slot)
            continue;
        pthread_mutex_lock(&p->lock); /* the context is not rebuilt meanwhile */
        if (p->ctx != NULL && (rc = b->be.ops->ctx_bind(&b->be, p->ctx)) == 0)
            rc = b->be.ops->ctx_sync(&b->be, p->ctx);
        pthread_mutex_unlock(&p->lock);
        break;
    }
    pthread_rwlock_unlock(&b->pods_lock);
    return rc;
}

static void *keeper_main(void *arg)
{
    struct broker *b = arg;
    broker_sched_keeper(b->sched, drain_slot, b, &b->stop);
    return NULL;
}

int broker_inproc_create(const struct broker_config *cfg, struct sched *sched, broker_t **out,
                         struct idm_err *err)
{
    const struct backend_ops *ops;
    if (cfg->backend == NULL || strcmp(cfg->backend, "cuda") == 0)
        ops = &broker_backend_cuda;
    else if (strcmp(cfg->backend, "soft") == 0)
        ops = &broker_backend_soft;
    else
        return idm_err_set(err, -EINVAL, "broker: unknown backend '%s'", cfg->backend);
    struct broker *b = calloc(1, sizeof *b);
    if (b == NULL)
        return idm_err_set(err, -ENOMEM, "broker: out of memory");
    b->be.ops = ops;
    b->epfd = b->wake_fd = -1;
    atomic_store(&b->next_channel_id, 1);
    int rc = ops->init(&b->be, cfg, err);
    if (rc < 0) {
        free(b);
        return rc;
    }
    if (ops->device_info(&b->be, &b->dev) != 0)
        idm_log(IDM_LOG_WARN, "broker: device info incomplete");
    b->dev.soft_device = ops->is_soft;
    pthread_rwlock_init(&b->pods_lock, NULL);
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    b->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    b->wake_tag.kind = TAG_WAKE;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &b->wake_tag };
    if (b->epfd < 0 || b->wake_fd < 0 || epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->wake_fd, &ev) < 0) {
        rc = idm_err_set(err, -errno, "broker: epoll: %s", strerror(errno));
        goto fail;
    }
    b->sched = sched;
    if (sched == NULL) {
        if ((rc = broker_sched_create(&b->sched)) < 0) {
            idm_err_set(err, rc, "broker: scheduler table: %s", strerror(-rc));
            goto fail;
        }
        b->sched_owned = true;
    }
    int e = pthread_create(&b->keeper, NULL, keeper_main, b);
    if (e != 0) {
        rc = idm_err_set(err, -e, "broker: pthread_create: %s", strerror(e));
        goto fail;
    }
    b->keeper_up = true;
    b->nworkers = cfg->workers ? cfg->workers : 4;
    b->workers = calloc(b->nworkers, sizeof *b->workers);
    if (b->workers == NULL) {
        rc = idm_err_set(err, -ENOMEM, "broker: out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < b->nworkers; i++) {
        e = pthread_create(&b->workers[i], NULL, worker_main, b);
        if (e != 0) {
            rc = idm_err_set(err, -e, "broker: pthread_create: %s", strerror(e));
            b->nworkers = i;
            goto fail;
        }
    }
    idm_log(IDM_LOG_INFO, "broker: backend %s%s, device '%s', %u workers", ops->name,
            ops->is_soft ? " (SOFTWARE TEST DEVICE, NOT A GPU)" : "", b->dev.device_name,
            b->nworkers);
    *out = b;
    return 0;
fail:
    broker_inproc_destroy(b);
    return rc;
}

void broker_inproc_destroy(broker_t *b)
{
    if (b == NULL)
        return;
    for (;;) {
        pthread_rwlock_rdlock(&b->pods_lock);
        char id[IDM_POD_ID_MAX] = "";
        if (b->pods != NULL)
            snprintf(id, sizeof id, "%s", b->pods->id);
        pthread_rwlock_unlock(&b->pods_lock);
        if (id[0] == 0 || broker_inproc_pod_remove(b, id, NULL, NULL) < 0)
            break;
    }
    atomic_store(&b->stop, 1);
    uint64_t one = 1;
    if (b->wake_fd >= 0 && write(b->wake_fd, &one, sizeof one) < 0)
        idm_log(IDM_LOG_ERROR, "broker: wake workers: %s", strerror(errno));
    for (unsigned i = 0; i < b->nworkers; i++)
        pthread_join(b->workers[i], NULL);
    free(b->workers);
    if (b->keeper_up) {
        broker_sched_kick(b->sched);
        pthread_join(b->keeper, NULL);
    }
    if (b->sched_owned)
        broker_sched_destroy(b->sched);
    if (b->wake_fd >= 0)
        close(b->wake_fd);
    if (b->epfd >= 0)
        close(b->epfd);
    pthread_rwlock_destroy(&b->pods_lock);
    b->be.ops->fini(&b->be);
    free(b);
}

static int pod_add(broker_t *b, const char *pod_id, const char *socket_path, int listen_fd,
                   int slot, int64_t xen_domid, uint64_t quota_bytes, unsigned compute_share,
                   struct idm_err *err);

int broker_inproc_pod_add(broker_t *b, const char *pod_id, const char *socket_path, int listen_fd,
                          int slot, uint64_t quota_bytes, unsigned compute_share,
                          struct idm_err *err)
{
    return pod_add(b, pod_id, socket_path, listen_fd, slot, -1, quota_bytes, compute_share, err);
}

int broker_pod_add_xen(broker_t *b, const char *pod_id, uint32_t domid, uint64_t quota_bytes,
                       unsigned compute_share, struct idm_err *err)
{
    if (b->pp != NULL)
        return broker_pp_pod_add_xen(b, pod_id, domid, quota_bytes, compute_share, err);
    return broker_inproc_pod_add_xen(b, pod_id, domid, -1, quota_bytes, compute_share, err);
}

int broker_inproc_pod_add_xen(broker_t *b, const char *pod_id, uint32_t domid, int slot,
                              uint64_t quota_bytes, unsigned compute_share, struct idm_err *err)
{
    char where[64];
    snprintf(where, sizeof where, "xen domain %u", domid);
    return pod_add(b, pod_id, where, -1, slot, domid, quota_bytes, compute_share, err);
}

static int pod_add(broker_t *b, const char *pod_id, const char *socket_path, int listen_fd,
                   int slot, int64_t xen_domid, uint64_t quota_bytes, unsigned compute_share,
                   struct idm_err *err)
{
    if (pod_id == NULL || pod_id[0] == 0 || strlen(pod_id) >= IDM_POD_ID_MAX)
        return idm_err_set(err, -EINVAL, "pod add: bad pod id");
    struct pod *pod = calloc(1, sizeof *pod);
    if (pod == NULL || (pod->socket_path = strdup(socket_path)) == NULL) {
        free(pod);
        return idm_err_set(err, -ENOMEM, "pod %s: out of memory", pod_id);
    }
    snprintf(pod->id, sizeof pod->id, "%s", pod_id);
    pod->b = b;
    pod->ltag.kind = TAG_LISTENER;
    pod->ltag.ptr = pod;
    pod->quota_bytes = quota_bytes;
    pod->usage.quota_bytes = quota_bytes;
    pod->compute_share = compute_share;
    pthread_mutex_init(&pod->lock, NULL);
    pthread_cond_init(&pod->cond, NULL);
    pod->slot = slot;
    int rc, r;
    if (slot < 0) {
        pod->slot = broker_sched_slot_alloc(b->sched, compute_share, getpid());
        if (pod->slot < 0) {
            rc = idm_err_set(err, pod->slot, "pod %s: no scheduler slot left (%d pods)", pod_id,
                             SCHED_SLOTS);
            goto fail;
        }
        pod->slot_owned = true;
    }
    if ((r = b->be.ops->ctx_create(&b->be, &pod->ctx)) != 0) {
        rc = idm_err_set(err, -EIO, "pod %s: create GPU context: CUresult %d", pod_id, r);
        goto fail;
    }
    pthread_rwlock_wrlock(&b->pods_lock);
    if (find_pod_locked(b, pod_id) != NULL) {
        pthread_rwlock_unlock(&b->pods_lock);
        rc = idm_err_set(err, -EEXIST, "pod %s: already added", pod_id);
        goto fail;
    }
    pod->owns_socket = listen_fd < 0 && xen_domid < 0;
    if (xen_domid >= 0) {
        rc = idm_xen_listen((uint32_t)xen_domid, &pod->xen, err);
        if (rc == 0)
            pod->listen_fd = idm_xen_listener_fd(pod->xen);
    } else if (listen_fd >= 0) {
        pod->listen_fd = listen_fd;
        rc = 0;
    } else {
        rc = idm_local_listen(socket_path, &pod->listen_fd, err);
    }
    struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.ptr = &pod->ltag };
    if (rc == 0 && epoll_ctl(b->epfd, EPOLL_CTL_ADD, pod->listen_fd, &ev) < 0) {
        rc = idm_err_set(err, -errno, "pod %s: epoll: %s", pod_id, strerror(errno));
        if (pod->xen != NULL) {
            idm_xen_listener_close(pod->xen);
            pod->xen = NULL;
        } else if (pod->owns_socket) {
            close(pod->listen_fd);
            unlink(socket_path);
        }
    }
    if (rc < 0) {
        pthread_rwlock_unlock(&b->pods_lock);
        goto fail;
    }
    pod->next = b->pods;
    b->pods = pod;
    pthread_rwlock_unlock(&b->pods_lock);
    idm_log(IDM_LOG_INFO, "pod %s: serving on %s (quota %llu bytes, compute share %u%%)", pod_id,
            socket_path, (unsigned long long)quota_bytes, compute_share);
    return 0;
fail:
    if (pod->ctx != NULL)
        b->be.ops->ctx_destroy(&b->be, pod->ctx);
    if (pod->slot_owned)
        broker_sched_slot_free(b->sched, pod->slot);
    pthread_mutex_destroy(&pod->lock);
    pthread_cond_destroy(&pod->cond);
    free(pod->socket_path);
    free(pod);
    return rc;
}

int broker_inproc_pod_remove(broker_t *b, const char *pod_id, struct broker_usage *final_usage,
                             struct idm_err *err)
{
    pthread_rwlock_wrlock(&b->pods_lock);
    struct pod **pp = &b->pods;
    while (*pp != NULL && strcmp((*pp)->id, pod_id) != 0)
        pp = &(*pp)->next;
    struct pod *pod = *pp;
    if (pod == NULL) {
        pthread_rwlock_unlock(&b->pods_lock);
        return idm_err_set(err, -ENOENT, "pod %s: not found", pod_id);
    }
    *pp = pod->next;
    pthread_mutex_lock(&pod->lock);
    pod->closing = true;
    (void)epoll_ctl(b->epfd, EPOLL_CTL_DEL, pod->listen_fd, NULL);
    if (pod->xen != NULL) {
        idm_xen_listener_close(pod->xen); /* its fd was listen_fd */
        pod->xen = NULL;
    } else {
        close(pod->listen_fd);
    }
    if (pod->owns_socket)
        (void)unlink(pod->socket_path);
    pthread_rwlock_unlock(&b->pods_lock);
    for (struct channel *c = pod->channels; c != NULL; c = c->next) {
        atomic_store(&c->closing, 1);
        uint64_t one = 1;
        if (write(c->ic->efd_wait, &one, sizeof one) < 0 && errno != EAGAIN)
            idm_log(IDM_LOG_WARN, "pod %s: kick channel: %s", pod_id, strerror(errno));
    }
    while (pod->channels != NULL || pod->destroying > 0)
        pthread_cond_wait(&pod->cond, &pod->lock);
    if (final_usage != NULL)
        *final_usage = pod->usage;
    pthread_mutex_unlock(&pod->lock);
    if (pod->ctx != NULL && !(b->child && pod->ctx_poisoned))
        b->be.ops->ctx_destroy(&b->be, pod->ctx);
    if (pod->slot_owned)
        broker_sched_slot_free(b->sched, pod->slot);
    idm_log(IDM_LOG_INFO, "pod %s: removed (%llu channels served, %llu offers refused)", pod_id,
            (unsigned long long)pod->usage.channels_total, (unsigned long long)pod->xen_refused);
    pthread_mutex_destroy(&pod->lock);
    pthread_cond_destroy(&pod->cond);
    free(pod->socket_path);
    free(pod);
    return 0;
}

int broker_inproc_pod_usage(broker_t *b, const char *pod_id, struct broker_usage *out,
                            struct idm_err *err)
{
    pthread_rwlock_rdlock(&b->pods_lock);
    struct pod *pod = find_pod_locked(b, pod_id);
    if (pod == NULL) {
        pthread_rwlock_unlock(&b->pods_lock);
        return idm_err_set(err, -ENOENT, "pod %s: not found", pod_id);
    }
    pthread_mutex_lock(&pod->lock);
    *out = pod->usage;
    pthread_mutex_unlock(&pod->lock);
    struct sched_stats st;
    broker_sched_slot_stats(b->sched, pod->slot, &st);
    out->gpu_turn_ns = st.turn_ns;
    out->gpu_wait_ns = st.wait_ns;
    pthread_rwlock_unlock(&b->pods_lock);
    return 0;
}
