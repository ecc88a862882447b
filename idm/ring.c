/* ring.c: single-producer single-consumer message rings in shared memory.
 *
 * Each side keeps its own index privately and only publishes it; the other side's index is read
 * from shared memory and validated on every use, because the peer may be hostile. Messages never
 * wrap: a PAD message fills the end of the ring when the next one does not fit. */
#include "idm.h"

#include <errno.h>
#include <string.h>

void idm_ring_init(struct idm_ring *r, struct idm_ring_ctl *ctl, void *data, uint64_t size)
{
    r->ctl = ctl;
    r->data = data;
    r->size = size;
    r->pos = 0;
    r->pending = 0;
    r->peer = 0;
}

int64_t idm_ring_free(struct idm_ring *r)
{
    uint64_t head = r->pos + r->pending;
    uint64_t tail = atomic_load_explicit(&r->ctl->tail, memory_order_acquire);
    uint64_t used = head - tail;
    if (used > r->size)
        return -1;
    r->peer = tail;
    return (int64_t)(r->size - used);
}

/* Free space from the cached tail; re-read only when that is not enough. */
static int64_t ring_free_cached(struct idm_ring *r, uint64_t want)
{
    uint64_t used = r->pos + r->pending - r->peer;
    if (used <= r->size && r->size - used >= want)
        return (int64_t)(r->size - used);
    return idm_ring_free(r);
}

void *idm_ring_reserve(struct idm_ring *r, size_t len)
{
    len = idm_align(len);
    if (len == 0 || len > r->size / 2)
        return NULL;
    uint64_t head = r->pos + r->pending;
    uint64_t off = head & (r->size - 1);
    uint64_t to_end = r->size - off;
    int64_t free_bytes = ring_free_cached(r, len > to_end ? to_end + len : len);
    if (free_bytes < 0)
        return NULL;
    if (len > to_end) {
        if ((uint64_t)free_bytes < to_end + len)
            return NULL;
        struct idm_msg pad = { .len = (uint32_t)to_end, .op = IDM_OP_PAD, .flags = 0, .seq = 0 };
        memcpy(r->data + off, &pad, sizeof pad);
        r->pending += to_end;
        off = 0;
    } else if ((uint64_t)free_bytes < len) {
        return NULL;
    }
    r->pending += len;
    return r->data + off;
}

void idm_ring_commit(struct idm_ring *r)
{
    r->pos += r->pending;
    r->pending = 0;
    atomic_store_explicit(&r->ctl->head, r->pos, memory_order_seq_cst);
}

bool idm_ring_empty(struct idm_ring *r)
{
    if (r->peer != r->pos)
        return false;
    r->peer = atomic_load_explicit(&r->ctl->head, memory_order_seq_cst);
    return r->peer == r->pos;
}

int idm_ring_peek(struct idm_ring *r, uint32_t max_msg, struct idm_msg *hdr, const uint8_t **msg)
{
    for (;;) {
        uint64_t head = r->peer;
        if (head == r->pos) /* re-read the producer's index only when we caught up with it */
            r->peer = head = atomic_load_explicit(&r->ctl->head, memory_order_acquire);
        uint64_t avail = head - r->pos;
        if (avail == 0)
            return -EAGAIN;
        if (avail > r->size || avail < sizeof *hdr)
            return -EPROTO;
        uint64_t off = r->pos & (r->size - 1);
        uint64_t to_end = r->size - off;
        memcpy(hdr, r->data + off, sizeof *hdr);
        if (hdr->len < sizeof *hdr || hdr->len % IDM_MSG_ALIGN != 0 || hdr->len > avail ||
            hdr->len > to_end)
            return -EPROTO;
        if (hdr->op == IDM_OP_PAD) {
            if (hdr->len != to_end)
                return -EPROTO;
            r->pos += hdr->len;
            atomic_store_explicit(&r->ctl->tail, r->pos, memory_order_release);
            continue;
        }
        if (hdr->len > max_msg)
            return -EPROTO;
        *msg = r->data + off;
        return 0;
    }
}

void idm_ring_consume(struct idm_ring *r, const struct idm_msg *hdr)
{
    r->pos += hdr->len;
    /* release only: whoever then checks the producer's waiting flag issues a full fence */
    atomic_store_explicit(&r->ctl->tail, r->pos, memory_order_release);
}
