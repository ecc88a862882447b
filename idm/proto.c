/* proto.c: the IDM operation table, errors, logging, timing, and the client-side request/reply
 * helpers shared by the shim and the attack tests. */
#include "idm.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct idm_op_info op_table[IDM_OP_COUNT] = {
#define IDM_X_INFO(nm, id, rq, rp, as, pl) \
    [id] = { #nm, (uint32_t)sizeof(struct rq), (uint32_t)sizeof(struct rp), as, pl },
    IDM_OPS(IDM_X_INFO)
#undef IDM_X_INFO
};

const struct idm_op_info *idm_op_lookup(uint32_t op)
{
    if (op == IDM_OP_PAD || op >= IDM_OP_COUNT || op_table[op].name == NULL)
        return NULL;
    return &op_table[op];
}

int idm_err_set(struct idm_err *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static _Atomic(idm_log_fn) log_fn;
static int log_level = -1;

void idm_set_log_fn(idm_log_fn fn)
{
    atomic_store(&log_fn, fn);
}

void idm_log(int level, const char *fmt, ...)
{
    if (log_level < 0) {
        const char *s = getenv("VGPU_LOG_LEVEL");
        log_level = s != NULL ? atoi(s) : IDM_LOG_INFO;
    }
    if (level > log_level)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    idm_log_fn fn = atomic_load(&log_fn);
    if (fn != NULL) {
        fn(level, buf);
        return;
    }
    static const char *names[] = { "error", "warn", "info", "debug" };
    fprintf(stderr, "vgpu %s: %s\n", names[level < 0 || level > 3 ? 3 : level], buf);
}

uint64_t idm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t idm_spin_ns(void)
{
    static uint64_t spin;
    if (spin == 0) {
        const char *s = getenv("VGPU_SPIN_NS");
        uint64_t v = s != NULL ? strtoull(s, NULL, 10) : 0;
        spin = v > 0 ? v : 200000; /* 200 us */
    }
    return spin;
}

/* Waits until cond(ch) holds: spins for the budget, then sleeps on the doorbell after setting
 * *flag (Dekker-style: set flag, re-check, sleep; the peer checks the flag after publishing). */
static int client_wait(struct idm_chan *ch, _Atomic uint32_t *flag, bool (*cond)(struct idm_chan *))
{
    uint64_t start = idm_now_ns(), budget = idm_spin_ns();
    unsigned n = 0;
    while (!cond(ch)) {
        if ((++n & 63) == 0 && idm_now_ns() - start > budget) {
            atomic_store(flag, 1);
            atomic_thread_fence(memory_order_seq_cst);
            if (cond(ch)) {
                atomic_store(flag, 0);
                break;
            }
            int rc = ch->ops->wait(ch, 1000);
            atomic_store(flag, 0);
            if (rc == -EPIPE)
                return rc;
            start = idm_now_ns();
            continue;
        }
        idm_cpu_relax();
    }
    return 0;
}

static __thread size_t tls_want;

static bool has_space(struct idm_chan *ch)
{
    int64_t f = idm_ring_free(&ch->tx);
    /* room for the message plus a worst-case wrap pad */
    return f < 0 || (uint64_t)f >= tls_want * 2;
}

static bool has_reply(struct idm_chan *ch)
{
    return !idm_ring_empty(&ch->rx);
}

void *idm_client_begin(struct idm_chan *ch, uint16_t op, uint16_t flags, size_t payload_len,
                       uint64_t *seq_out)
{
    const struct idm_op_info *info = idm_op_lookup(op);
    size_t total;
    if (info == NULL ||
        __builtin_add_overflow(sizeof(struct idm_msg) + info->req_size, payload_len, &total) ||
        idm_align(total) == 0 || idm_align(total) > ch->max_msg)
        return NULL;
    uint8_t *p;
    while ((p = idm_ring_reserve(&ch->tx, total)) == NULL) {
        if (idm_ring_free(&ch->tx) < 0)
            return NULL;
        tls_want = idm_align(total);
        if (client_wait(ch, &ch->tx.ctl->producer_waiting, has_space) < 0)
            return NULL;
    }
    struct idm_msg m = { .len = (uint32_t)idm_align(total), .op = op, .flags = flags,
                         .seq = ch->next_seq++ };
    memcpy(p, &m, sizeof m);
    if (seq_out != NULL)
        *seq_out = m.seq;
    return p + sizeof m;
}

int idm_client_send(struct idm_chan *ch)
{
    idm_ring_commit(&ch->tx);
    if (atomic_load(&ch->tx.ctl->consumer_sleeping))
        return ch->ops->notify(ch);
    return 0;
}

const struct idm_msg *idm_client_wait_reply(struct idm_chan *ch, uint64_t seq, struct idm_msg *hdr)
{
    const uint8_t *msg;
    if (client_wait(ch, &ch->rx.ctl->consumer_sleeping, has_reply) < 0)
        return NULL;
    if (idm_ring_peek(&ch->rx, ch->max_msg, hdr, &msg) != 0)
        return NULL;
    if (!(hdr->flags & IDM_F_REPLY) || hdr->seq != seq ||
        hdr->len < sizeof(struct idm_msg) + sizeof(struct idm_rep))
        return NULL;
    return (const struct idm_msg *)msg;
}

void idm_client_release(struct idm_chan *ch, const struct idm_msg *hdr)
{
    idm_ring_consume(&ch->rx, hdr);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&ch->rx.ctl->producer_waiting))
        (void)ch->ops->notify(ch);
}
