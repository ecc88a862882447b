/* pod_process.c: serving each pod from its own process.
 *
 * A sticky GPU fault (a kernel's illegal address, say) poisons every CUDA context of the
 * process it happens in, and new contexts cannot be created there any more: measured on an H200
 * with driver 580 (docs/bench/gpu.md). So the fault domain is the process, and for the `cuda`
 * backend each pod is served by a child process that owns the pod's socket (created and kept by
 * the parent, so it survives restarts), its CUDA context and its worker threads. The parent
 * restarts a child that exits after a fault; usage counters come back through a shared page. */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#define EXIT_RESTART 75

/* Written by the child under a sequence lock, read by the parent. */
struct shared_usage {
    _Atomic uint32_t seq;
    _Atomic uint32_t ready;
    struct broker_usage u;
};

/* Parent-side state of one pod; fields guarded by pproc.lock. */
struct ppod {
    char id[IDM_POD_ID_MAX];
    char *path;     /* the socket, or "xen domain N" */
    int listen_fd;  /* -1 for a xen pod */
    int64_t xen_domid; /* -1: a local pod */
    uint64_t quota;
    unsigned share;
    int slot; /* in pproc.sched */
    pid_t pid;
    int pipe_w; /* closing it tells the child to shut down */
    struct shared_usage *sh;
    struct broker_usage base; /* counters of earlier (restarted) children */
    unsigned restarts;
    struct ppod *next;
};

struct pproc {
    pthread_mutex_t lock; /* guards pods and every ppod */
    struct ppod *pods;
    pthread_t supervisor;
    _Atomic int stop;
    struct broker_config cfg;
    char *backend, *libcuda;
    _Atomic int supervisor_up;
    struct sched *sched; /* compute shares, shared with every pod process */
};

static void publish(struct shared_usage *sh, const struct broker_usage *u)
{
    atomic_fetch_add(&sh->seq, 1);
    atomic_thread_fence(memory_order_seq_cst);
    memcpy(&sh->u, u, sizeof *u);
    atomic_thread_fence(memory_order_seq_cst);
    atomic_fetch_add(&sh->seq, 1);
}

static void read_shared(struct shared_usage *sh, struct broker_usage *u)
{
    for (;;) {
        uint32_t s1 = atomic_load(&sh->seq);
        atomic_thread_fence(memory_order_seq_cst);
        memcpy(u, &sh->u, sizeof *u);
        atomic_thread_fence(memory_order_seq_cst);
        if (!(s1 & 1) && atomic_load(&sh->seq) == s1)
            return;
        sched_yield();
    }
}

/* The child keeps only stdio, the pod's socket and its shutdown pipe. */
static void close_other_fds(int keep1, int keep2)
{
    int fds[1024], n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 1024) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd > 2 && fd != keep1 && fd != keep2 && fd != dirfd(d))
            fds[n++] = fd;
    }
    closedir(d);
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

static void __attribute__((noreturn)) child_main(struct pproc *pp, struct ppod *p, int pipe_r)
{
    close_other_fds(p->listen_fd, pipe_r);
    signal(SIGPIPE, SIG_IGN);
    struct broker_config cfg = pp->cfg;
    cfg.pod_processes = -1;
    broker_t *b;
    struct idm_err err = { 0 };
    broker_sched_slot_set_pid(pp->sched, p->slot, getpid());
    if (broker_inproc_create(&cfg, pp->sched, &b, &err) < 0) {
        idm_log(IDM_LOG_ERROR, "pod %s process: %s", p->id, err.msg);
        _exit(70);
    }
    b->child = true;
    int rc = p->xen_domid >= 0
                 ? broker_inproc_pod_add_xen(b, p->id, (uint32_t)p->xen_domid, p->slot, p->quota,
                                             p->share, &err)
                 : broker_inproc_pod_add(b, p->id, p->path, p->listen_fd, p->slot, p->quota,
                                         p->share, &err);
    if (rc < 0) {
        idm_log(IDM_LOG_ERROR, "pod %s process: %s", p->id, err.msg);
        _exit(71);
    }
    struct broker_usage u;
    for (;;) {
        if (broker_inproc_pod_usage(b, p->id, &u, NULL) == 0)
            publish(p->sh, &u);
        atomic_store(&p->sh->ready, 1);
        if (atomic_load(&b->need_restart)) {
            u.mem_in_use = 0; /* the process exit frees the GPU state */
            u.channels = 0;
            publish(p->sh, &u);
            _exit(EXIT_RESTART);
        }
        struct pollfd pfd = { .fd = pipe_r, .events = POLLIN };
        if (poll(&pfd, 1, 100) > 0)
            break; /* the parent closed the pipe (removal) or died */
    }
    if (broker_inproc_pod_remove(b, p->id, &u, NULL) == 0) {
        u.channels = 0;
        publish(p->sh, &u);
    }
    broker_inproc_destroy(b);
    /* _exit: the parent's atexit handlers and stdio buffers are not ours to run. */
#if defined(__SANITIZE_ADDRESS__)
    if (__lsan_do_recoverable_leak_check() != 0)
        _exit(72);
#endif
    _exit(0);
}

static int spawn(struct pproc *pp, struct ppod *p, struct idm_err *err)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return idm_err_set(err, -errno, "pod %s: pipe: %s", p->id, strerror(errno));
    atomic_store(&p->sh->ready, 0);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return idm_err_set(err, -e, "pod %s: fork: %s", p->id, strerror(e));
    }
    if (pid == 0)
        child_main(pp, p, fds[0]);
    close(fds[0]);
    p->pid = pid;
    p->pipe_w = fds[1];
    return 0;
}

static void accumulate(struct broker_usage *base, const struct broker_usage *u)
{
    base->launches += u->launches;
    base->busy_ns += u->busy_ns;
    base->bytes_htod += u->bytes_htod;
    base->bytes_dtoh += u->bytes_dtoh;
    base->calls += u->calls;
    base->errors += u->errors;
    base->channels_total += u->channels_total;
    if (u->mem_peak > base->mem_peak)
        base->mem_peak = u->mem_peak;
}

/* Restarts pod processes that exited on their own (after a GPU fault, or a crash). */
static void *supervisor_main(void *arg)
{
    struct pproc *pp = arg;
    atomic_store(&pp->supervisor_up, 1);
    while (!atomic_load(&pp->stop)) {
        usleep(50000);
        pthread_mutex_lock(&pp->lock);
        for (struct ppod *p = pp->pods; p != NULL; p = p->next) {
            int st;
            if (p->pid <= 0 || waitpid(p->pid, &st, WNOHANG) != p->pid)
                continue;
            struct broker_usage u;
            read_shared(p->sh, &u);
            accumulate(&p->base, &u);
            memset(&u, 0, sizeof u);
            publish(p->sh, &u);
            close(p->pipe_w);
            p->pid = -1;
            p->restarts++;
            broker_sched_slot_reset(pp->sched, p->slot); /* it may have died in its turn */
            idm_log(IDM_LOG_WARN, "pod %s: pod process exited (%s %d); restarting it (restart %u)",
                    p->id, WIFEXITED(st) ? "status" : "signal",
                    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), p->restarts);
            struct idm_err err = { 0 };
            if (spawn(pp, p, &err) < 0)
                idm_log(IDM_LOG_ERROR, "%s", err.msg);
        }
        pthread_mutex_unlock(&pp->lock);
    }
    return NULL;
}

int broker_pp_create(const struct broker_config *cfg, broker_t **out, struct idm_err *err)
{
    struct broker *b = calloc(1, sizeof *b);
    struct pproc *pp = calloc(1, sizeof *pp);
    if (b == NULL || pp == NULL) {
        free(b);
        free(pp);
        return idm_err_set(err, -ENOMEM, "broker: out of memory");
    }
    pp->cfg = *cfg;
    pp->backend = strdup(cfg->backend ? cfg->backend : "cuda");
    pp->libcuda = cfg->libcuda ? strdup(cfg->libcuda) : NULL;
    pp->cfg.backend = pp->backend;
    pp->cfg.libcuda = pp->libcuda;
    pthread_mutex_init(&pp->lock, NULL);
    b->pp = pp;
    int e = -broker_sched_create(&pp->sched);
    if (e == 0)
        e = pthread_create(&pp->supervisor, NULL, supervisor_main, pp);
    if (e != 0) {
        broker_sched_destroy(pp->sched);
        free(pp->backend);
        free(pp->libcuda);
        free(pp);
        free(b);
        return idm_err_set(err, -e, "broker: pthread_create: %s", strerror(e));
    }
    /* Pod processes are forked without exec: no fork may race with this thread's start-up
     * (its first allocations), or a child can inherit a held allocator lock (seen with ASan). */
    while (!atomic_load(&pp->supervisor_up))
        usleep(1000);
    idm_log(IDM_LOG_INFO, "broker: backend %s, one process per pod", pp->backend);
    *out = b;
    return 0;
}

/* A local pod (socket_path) or a xen pod (xen_domid >= 0: the child watches that domain's offers
 * itself, so its grant mappings and GPU state die with it). */
static int pp_add(broker_t *b, const char *pod_id, const char *socket_path, int64_t xen_domid,
                  uint64_t quota_bytes, unsigned compute_share, struct idm_err *err)
{
    struct pproc *pp = b->pp;
    if (pod_id == NULL || pod_id[0] == 0 || strlen(pod_id) >= IDM_POD_ID_MAX)
        return idm_err_set(err, -EINVAL, "pod add: bad pod id");
    struct ppod *p = calloc(1, sizeof *p);
    if (p == NULL || (p->path = strdup(socket_path)) == NULL) {
        free(p);
        return idm_err_set(err, -ENOMEM, "pod %s: out of memory", pod_id);
    }
    p->xen_domid = xen_domid;
    p->listen_fd = -1;
    snprintf(p->id, sizeof p->id, "%s", pod_id);
    p->quota = quota_bytes;
    p->share = compute_share;
    p->pid = -1;
    p->slot = -1;
    p->sh = mmap(NULL, sizeof *p->sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int rc;
    if (p->sh == MAP_FAILED) {
        p->sh = NULL;
        rc = idm_err_set(err, -ENOMEM, "pod %s: mmap: %s", pod_id, strerror(errno));
        goto fail;
    }
    if ((p->slot = broker_sched_slot_alloc(pp->sched, compute_share, -1)) < 0) {
        rc = idm_err_set(err, p->slot, "pod %s: no scheduler slot left (%d pods)", pod_id,
                         SCHED_SLOTS);
        goto fail;
    }
    pthread_mutex_lock(&pp->lock);
    for (struct ppod *q = pp->pods; q != NULL; q = q->next)
        if (strcmp(q->id, pod_id) == 0) {
            pthread_mutex_unlock(&pp->lock);
            rc = idm_err_set(err, -EEXIST, "pod %s: already added", pod_id);
            goto fail;
        }
    rc = xen_domid >= 0 ? 0 : idm_local_listen(socket_path, &p->listen_fd, err);
    if (rc == 0 && (rc = spawn(pp, p, err)) < 0 && xen_domid < 0) {
        close(p->listen_fd);
        unlink(socket_path);
    }
    if (rc < 0) {
        pthread_mutex_unlock(&pp->lock);
        goto fail;
    }
    p->next = pp->pods;
    pp->pods = p;
    pthread_mutex_unlock(&pp->lock);
    /* Wait until the pod process serves (its GPU context exists), or failed. */
    for (int i = 0; i < 6000 && !atomic_load(&p->sh->ready); i++) {
        pthread_mutex_lock(&pp->lock);
        pid_t pid = p->pid;
        int st;
        bool died = pid > 0 && waitpid(pid, &st, WNOHANG) == pid;
        if (died)
            p->pid = -1;
        pthread_mutex_unlock(&pp->lock);
        if (died) {
            (void)broker_pp_pod_remove(b, pod_id, NULL);
            return idm_err_set(err, -EIO, "pod %s: pod process failed to start (status %d)",
                               pod_id, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        }
        usleep(10000);
    }
    idm_log(IDM_LOG_INFO, "pod %s: serving on %s from process %d (quota %llu bytes)", pod_id,
            socket_path, (int)p->pid, (unsigned long long)quota_bytes);
    return 0;
fail:
    if (p->slot >= 0)
        broker_sched_slot_free(pp->sched, p->slot);
    if (p->sh != NULL)
        munmap(p->sh, sizeof *p->sh);
    free(p->path);
    free(p);
    return rc;
}

int broker_pp_pod_add(broker_t *b, const char *pod_id, const char *socket_path,
                      uint64_t quota_bytes, unsigned compute_share, struct idm_err *err)
{
    return pp_add(b, pod_id, socket_path, -1, quota_bytes, compute_share, err);
}

int broker_pp_pod_add_xen(broker_t *b, const char *pod_id, uint32_t domid, uint64_t quota_bytes,
                          unsigned compute_share, struct idm_err *err)
{
    char where[64];
    snprintf(where, sizeof where, "xen domain %u", domid);
    return pp_add(b, pod_id, where, domid, quota_bytes, compute_share, err);
}

int broker_pp_pod_remove(broker_t *b, const char *pod_id, struct idm_err *err)
{
    struct pproc *pp = b->pp;
    pthread_mutex_lock(&pp->lock);
    struct ppod **pq = &pp->pods;
    while (*pq != NULL && strcmp((*pq)->id, pod_id) != 0)
        pq = &(*pq)->next;
    struct ppod *p = *pq;
    if (p == NULL) {
        pthread_mutex_unlock(&pp->lock);
        return idm_err_set(err, -ENOENT, "pod %s: not found", pod_id);
    }
    *pq = p->next;
    pthread_mutex_unlock(&pp->lock);
    if (p->pid > 0) {
        close(p->pipe_w); /* the child removes the pod (frees its GPU objects) and exits */
        int st = 0;
        pid_t r = 0;
        for (int i = 0; i < 1000 && (r = waitpid(p->pid, &st, WNOHANG)) == 0; i++)
            usleep(10000);
        if (r == 0) {
            idm_log(IDM_LOG_WARN, "pod %s: pod process did not stop; killing it", pod_id);
            kill(p->pid, SIGKILL);
            (void)waitpid(p->pid, &st, 0);
        }
    }
    if (p->listen_fd >= 0) {
        close(p->listen_fd);
        (void)unlink(p->path);
    }
    broker_sched_slot_free(pp->sched, p->slot);
    idm_log(IDM_LOG_INFO, "pod %s: removed (%u restarts)", pod_id, p->restarts);
    munmap(p->sh, sizeof *p->sh);
    free(p->path);
    free(p);
    return 0;
}

int broker_pp_pod_usage(broker_t *b, const char *pod_id, struct broker_usage *out,
                        struct idm_err *err)
{
    struct pproc *pp = b->pp;
    pthread_mutex_lock(&pp->lock);
    struct ppod *p = pp->pods;
    while (p != NULL && strcmp(p->id, pod_id) != 0)
        p = p->next;
    if (p == NULL) {
        pthread_mutex_unlock(&pp->lock);
        return idm_err_set(err, -ENOENT, "pod %s: not found", pod_id);
    }
    struct broker_usage u;
    read_shared(p->sh, &u);
    *out = u;
    accumulate(out, &p->base);
    out->quota_bytes = p->quota;
    struct sched_stats st; /* the slot outlives restarts: its counters are the totals */
    broker_sched_slot_stats(pp->sched, p->slot, &st);
    out->gpu_turn_ns = st.turn_ns;
    out->gpu_wait_ns = st.wait_ns;
    pthread_mutex_unlock(&pp->lock);
    return 0;
}

void broker_pp_destroy(broker_t *b)
{
    struct pproc *pp = b->pp;
    for (;;) {
        pthread_mutex_lock(&pp->lock);
        char id[IDM_POD_ID_MAX] = "";
        if (pp->pods != NULL)
            snprintf(id, sizeof id, "%s", pp->pods->id);
        pthread_mutex_unlock(&pp->lock);
        if (id[0] == 0 || broker_pp_pod_remove(b, id, NULL) < 0)
            break;
    }
    atomic_store(&pp->stop, 1);
    pthread_join(pp->supervisor, NULL);
    pthread_mutex_destroy(&pp->lock);
    broker_sched_destroy(pp->sched);
    free(pp->backend);
    free(pp->libcuda);
    free(pp);
    free(b);
}
