/* gpu_sched.c: compute shares (see gpu_sched.h): turns on the GPU, weighted by share over busy time. */
#include "gpu_sched.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "idm.h"

/* One pod. Every field guarded by sched.lock; inflight and last_exit are also changed without it
 * by the lock-free path of a pod alone (see broker_sched_enter). */
struct sched_slot {
    bool used;
    unsigned share;   /* 1..100 */
    pid_t pid;        /* the process whose keeper drains this pod */
    unsigned waiting; /* its threads waiting for a turn */
    _Atomic unsigned inflight; /* its operations between enter and exit */
    uint64_t vtime;   /* charged ns * 100 / share */
    _Atomic uint64_t last_exit; /* end of its last operation (coarse clock) */
    struct sched_stats st;
};

/* The shared table. Every field guarded by lock (process-shared, robust), except wake.
 * Waiting is a futex on wake, not a pthread condition variable: glibc's process-shared condvars
 * keep per-waiter state inside the shared memory, and a pod process that dies while waiting (a
 * GPU fault, kill -9) leaves it inconsistent: broadcast and destroy then hang (seen here). */
struct sched {
    pthread_mutex_t lock;
    _Atomic uint32_t wake; /* bumped by every broadcast */
    _Atomic int owner;       /* slot that has the turn, -1: none */
    _Atomic bool draining;   /* the owner's keeper is draining it */
    uint64_t turn_start;     /* when the owner got the turn */
    uint64_t turn_contended; /* when another pod first waited during this turn, 0: not yet */
    uint64_t turn_gen;       /* bumped at every take and release */
    _Atomic unsigned total_waiting; /* sum of slot.waiting */
    int hi;                  /* slots [0, hi) may be used */
    struct sched_slot slot[SCHED_SLOTS];
};

static void lock(struct sched *s)
{
    if (pthread_mutex_lock(&s->lock) == EOWNERDEAD)
        (void)pthread_mutex_consistent(&s->lock); /* a pod process died holding it */
}

static void unlock(struct sched *s) { (void)pthread_mutex_unlock(&s->lock); }

static void broadcast(struct sched *s)
{
    atomic_fetch_add(&s->wake, 1);
    (void)syscall(SYS_futex, &s->wake, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Called and returns with the lock held; a broadcast after the unlock is not missed (the futex
 * word has changed, so FUTEX_WAIT returns at once). */
static void wait_until(struct sched *s, uint64_t deadline_ns)
{
    uint32_t seen = atomic_load(&s->wake);
    uint64_t now = idm_now_ns();
    uint64_t rel = deadline_ns > now ? deadline_ns - now : 0;
    struct timespec ts = { (time_t)(rel / 1000000000ull), (long)(rel % 1000000000ull) };
    unlock(s);
    (void)syscall(SYS_futex, &s->wake, FUTEX_WAIT, seen, &ts, NULL, 0);
    lock(s);
}

int broker_sched_create(struct sched **out)
{
    struct sched *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED)
        return -errno;
    pthread_mutexattr_t ma;
    int e = pthread_mutexattr_init(&ma);
    if (e == 0 && (e = pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED)) == 0 &&
        (e = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST)) == 0)
        e = pthread_mutex_init(&s->lock, &ma);
    (void)pthread_mutexattr_destroy(&ma);
    if (e != 0) {
        munmap(s, sizeof *s);
        return -e;
    }
    s->owner = -1;
    *out = s;
    return 0;
}

void broker_sched_destroy(struct sched *s)
{
    if (s == NULL)
        return;
    munmap(s, sizeof *s); /* holds no kernel object; a robust mutex needs no destroy */
}

int broker_sched_slot_alloc(struct sched *s, unsigned share, pid_t pid)
{
    lock(s);
    int i = 0;
    while (i < SCHED_SLOTS && s->slot[i].used)
        i++;
    if (i == SCHED_SLOTS) {
        unlock(s);
        return -ENOSPC;
    }
    memset(&s->slot[i], 0, sizeof s->slot[i]);
    s->slot[i].used = true;
    s->slot[i].share = share == 0 || share > 100 ? 100 : share;
    s->slot[i].pid = pid;
    if (i >= s->hi)
        s->hi = i + 1;
    unlock(s);
    return i;
}

void broker_sched_slot_set_pid(struct sched *s, int slot, pid_t pid)
{
    lock(s);
    s->slot[slot].pid = pid;
    unlock(s);
}

static bool others_waiting(const struct sched *s, int slot)
{
    return s->total_waiting > s->slot[slot].waiting;
}

/* The turn is charged from its start, but at most from one slice before another pod started
 * waiting (a pod alone is not charged for having been alone). */
static uint64_t charge_from(const struct sched *s)
{
    uint64_t from = s->turn_start;
    if (s->turn_contended > SCHED_SLICE_NS && s->turn_contended - SCHED_SLICE_NS > from)
        from = s->turn_contended - SCHED_SLICE_NS;
    return from;
}

/* When the owner's turn ends: never while no other pod waits; else once the owner's virtual
 * time, with this turn charged, reaches the least one of the waiting pods (so a pod with three
 * times the share keeps the GPU three times as long), and not before one slice nor after
 * SCHED_MAX_SLICES. */
static uint64_t turn_end(const struct sched *s)
{
    if (!others_waiting(s, s->owner))
        return UINT64_MAX;
    const struct sched_slot *o = &s->slot[s->owner];
    uint64_t vmin = UINT64_MAX;
    for (int i = 0; i < s->hi; i++)
        if (i != s->owner && s->slot[i].used && s->slot[i].waiting > 0 && s->slot[i].vtime < vmin)
            vmin = s->slot[i].vtime;
    uint64_t len = vmin > o->vtime ? (vmin - o->vtime) / 100 * o->share : 0;
    if (len < SCHED_SLICE_NS)
        len = SCHED_SLICE_NS;
    if (len > SCHED_MAX_SLICES * SCHED_SLICE_NS)
        len = SCHED_MAX_SLICES * SCHED_SLICE_NS;
    return charge_from(s) + len;
}

/* Ends the owner's turn and charges it. */
static void release(struct sched *s, uint64_t now)
{
    struct sched_slot *o = &s->slot[s->owner];
    uint64_t from = charge_from(s);
    uint64_t charged = now > from ? now - from : 0;
    o->vtime += charged * 100 / o->share;
    o->st.turn_ns += charged;
    s->owner = -1;
    s->draining = false;
    s->turn_gen++;
    broadcast(s);
}

void broker_sched_slot_reset(struct sched *s, int slot)
{
    lock(s);
    struct sched_slot *sl = &s->slot[slot];
    s->total_waiting -= sl->waiting;
    sl->waiting = 0;
    sl->inflight = 0;
    if (s->owner == slot)
        release(s, idm_now_ns());
    broadcast(s);
    unlock(s);
}

void broker_sched_slot_free(struct sched *s, int slot)
{
    broker_sched_slot_reset(s, slot);
    lock(s);
    s->slot[slot].used = false;
    unlock(s);
}

void broker_sched_slot_stats(struct sched *s, int slot, struct sched_stats *out)
{
    lock(s);
    *out = s->slot[slot].st;
    unlock(s);
}

/* The waiting pod with the least virtual time (ties: the lowest slot). */
static int pick(const struct sched *s)
{
    int best = -1;
    for (int i = 0; i < s->hi; i++)
        if (s->slot[i].used && s->slot[i].waiting > 0 &&
            (best < 0 || s->slot[i].vtime < s->slot[best].vtime))
            best = i;
    return best;
}

/* A pod that becomes active after an idle spell does not bring credit from it: its virtual time
 * starts no lower than the least one of the pods already active. Gaps shorter than
 * SCHED_IDLE_NS (a synchronize between launches, a descheduled client) are not idleness. */
static void activate(struct sched *s, int slot)
{
    bool found = false;
    uint64_t vmin = 0;
    for (int i = 0; i < s->hi; i++) {
        const struct sched_slot *o = &s->slot[i];
        if (i == slot || !o->used || (o->waiting == 0 && o->inflight == 0 && s->owner != i))
            continue;
        if (!found || o->vtime < vmin)
            vmin = o->vtime;
        found = true;
    }
    if (found && s->slot[slot].vtime < vmin)
        s->slot[slot].vtime = vmin;
}

static bool turn_over(const struct sched *s, uint64_t now) { return now >= turn_end(s); }

static uint64_t coarse_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

void broker_sched_enter(struct sched *s, int slot)
{
    struct sched_slot *fs = &s->slot[slot];
    /* Lock-free path: the owner while nobody waits. Sequentially consistent: if a waiter comes
     * after our second check, whoever decides to end the turn sees our inflight first. */
    if (atomic_load(&s->owner) == slot && atomic_load(&s->total_waiting) == 0 &&
        !atomic_load(&s->draining)) {
        atomic_fetch_add(&fs->inflight, 1);
        if (atomic_load(&s->total_waiting) == 0 && atomic_load(&s->owner) == slot &&
            !atomic_load(&s->draining))
            return;
        atomic_fetch_sub(&fs->inflight, 1); /* the slow path below broadcasts */
    }
    lock(s);
    struct sched_slot *sl = &s->slot[slot];
    uint64_t now = idm_now_ns(), t0 = now;
    if (s->owner == slot && !s->draining && !turn_over(s, now)) {
        if (!others_waiting(s, slot) && now - s->turn_start >= SCHED_SLICE_NS)
            s->turn_start = now; /* alone: the turn renews */
        sl->inflight++;
        unlock(s);
        return;
    }
    if (s->owner != slot && sl->waiting == 0 && sl->inflight == 0 &&
        now >= atomic_load(&sl->last_exit) + SCHED_IDLE_NS)
        activate(s, slot);
    sl->waiting++;
    s->total_waiting++;
    if (s->owner >= 0 && s->owner != slot && s->turn_contended == 0)
        s->turn_contended = now;
    broadcast(s); /* the owner's keeper may have to act */
    for (;;) {
        now = idm_now_ns();
        if (s->owner < 0) {
            if (pick(s) == slot) {
                s->owner = slot;
                s->draining = false;
                s->turn_start = now;
                s->turn_contended = others_waiting(s, slot) ? now : 0;
                s->turn_gen++;
                sl->st.turns++;
                break;
            }
            broadcast(s);
            wait_until(s, now + SCHED_SLICE_NS);
        } else if (s->owner == slot) {
            if (!s->draining && !turn_over(s, now))
                break;
            wait_until(s, now + SCHED_SLICE_NS);
        } else if (now - s->turn_start >= SCHED_MAX_TURN_NS) {
            idm_log(IDM_LOG_WARN, "broker: GPU turn of slot %d not drained after %llu ms; passing over it",
                    s->owner, (unsigned long long)((now - s->turn_start) / 1000000));
            release(s, now);
        } else {
            uint64_t d = s->turn_start + SCHED_MAX_TURN_NS;
            wait_until(s, d < now + SCHED_SLICE_NS ? d : now + SCHED_SLICE_NS);
        }
    }
    sl->waiting--;
    s->total_waiting--;
    sl->inflight++;
    sl->st.wait_ns += now - t0;
    unlock(s);
}

void broker_sched_exit(struct sched *s, int slot)
{
    struct sched_slot *sl = &s->slot[slot];
    unsigned left = atomic_fetch_sub(&sl->inflight, 1) - 1;
    atomic_store(&sl->last_exit, coarse_now_ns());
    if (left != 0 || atomic_load(&s->total_waiting) == 0)
        return; /* nobody waits for this pod to go idle */
    lock(s);
    if (s->owner == slot && atomic_load(&sl->inflight) == 0 && others_waiting(s, slot))
        broadcast(s);
    unlock(s);
}

void broker_sched_kick(struct sched *s)
{
    lock(s);
    broadcast(s);
    unlock(s);
}

void broker_sched_keeper(struct sched *s, sched_drain_fn drain, void *arg, _Atomic int *stop)
{
    pid_t me = getpid();
    lock(s);
    while (!atomic_load(stop)) {
        uint64_t now = idm_now_ns(), deadline = now + 100000000ull;
        int o = s->owner;
        bool mine = o >= 0 && s->slot[o].pid == me && !s->draining && others_waiting(s, o);
        uint64_t end = mine ? turn_end(s) : UINT64_MAX;
        if (mine && now >= end && s->slot[o].inflight == 0) {
            s->draining = true; /* the owner's new operations wait */
            uint64_t gen = s->turn_gen;
            unlock(s);
            int rc = drain(arg, o);
            if (rc != 0)
                idm_log(IDM_LOG_WARN, "broker: draining slot %d for the next turn: CUresult %d", o, rc);
            lock(s);
            if (s->turn_gen == gen && s->owner == o)
                release(s, idm_now_ns());
            continue;
        }
        if (mine && end > now && end < deadline)
            deadline = end;
        wait_until(s, deadline);
    }
    unlock(s);
}
