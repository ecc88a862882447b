/* fuzz_idm_ring: IDM framing and rings (idm/ring.c, idm/proto.c) driven by a hostile peer.
 *
 * The input is a small program run against one ring whose producer and consumer share a control
 * block and a data area, as the broker and a pod do: the "peer" writes arbitrary control words
 * (head, tail) and arbitrary bytes into the data area, and the consumer peeks and consumes. Every
 * message idm_ring_peek accepts must lie inside the data area, be aligned, at least a header and at
 * most max_msg; idm_ring_reserve must hand out room inside the area; idm_ring_free must be -1 or at
 * most the ring size. The client helpers (idm_client_begin / wait_reply) run on the same ring with
 * a transport whose wait reports a vanished peer, so nothing blocks. The data area is a heap block
 * of exactly the ring size, so ASan catches any access past it. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm.h"

struct input {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct input *in, size_t bytes)
{
	uint64_t v = 0;
	for (size_t i = 0; i < bytes; i++) {
		uint8_t b = 0;
		if (in->n > 0) {
			b = *in->p++;
			in->n--;
		}
		v |= (uint64_t)b << (8 * i);
	}
	return v;
}

#define CHECK(cond)                                                                      \
	do {                                                                             \
		if (!(cond)) {                                                           \
			fprintf(stderr, "fuzz_idm_ring: check failed: %s (line %d)\n", #cond, \
				__LINE__);                                               \
			abort();                                                         \
		}                                                                        \
	} while (0)

static int fake_notify(struct idm_chan *ch) { return 0; }
static int fake_wait(struct idm_chan *ch, int timeout_ms) { return -EPIPE; }
static void fake_close(struct idm_chan *ch) {}
static const struct idm_transport_ops fake_ops = {
    .name = "fuzz", .notify = fake_notify, .wait = fake_wait, .close = fake_close,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* the client helpers spin this long before they sleep (here: before fake_wait fails) */
	setenv("VGPU_SPIN_NS", "1", 1);
	setenv("VGPU_LOG_LEVEL", "0", 1);
	return 0;
}

/* Consumer: peek and consume up to max messages, checking what peek promises. */
static void consume_some(struct idm_ring *c, uint32_t max_msg, unsigned max)
{
	for (unsigned i = 0; i < max; i++) {
		struct idm_msg hdr;
		const uint8_t *msg = NULL;
		uint64_t pos0 = c->pos;
		int rc = idm_ring_peek(c, max_msg, &hdr, &msg);
		CHECK(rc == 0 || rc == -EAGAIN || rc == -EPROTO);
		/* PAD messages skipped by peek advance pos by whole, in-bounds PADs only */
		CHECK(c->pos - pos0 <= c->size);
		if (rc != 0)
			return;
		CHECK(hdr.len >= sizeof hdr && hdr.len % IDM_MSG_ALIGN == 0 && hdr.len <= max_msg);
		CHECK(hdr.op != IDM_OP_PAD);
		CHECK(msg >= c->data && (uint64_t)(msg - c->data) + hdr.len <= c->size);
		CHECK(memcmp(msg, &hdr, sizeof hdr) == 0);
		uint32_t sum = 0; /* touch every byte: out of the area is an ASan report */
		for (uint32_t k = 0; k < hdr.len; k++)
			sum += msg[k];
		(void)sum;
		(void)idm_op_lookup(hdr.op);
		idm_ring_consume(c, &hdr);
		CHECK(c->pos - pos0 >= hdr.len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	uint64_t ring_size = 1ull << (6 + (take(&in, 1) & 7)); /* 64 B .. 8 KiB */
	uint32_t max_msg = (uint32_t)take(&in, 2);
	struct idm_ring_ctl *ctl = aligned_alloc(64, sizeof *ctl);
	uint8_t *area = malloc(ring_size);
	CHECK(ctl != NULL && area != NULL);
	memset(ctl, 0, sizeof *ctl);
	memset(area, 0, ring_size);
	struct idm_shm_hdr fake_hdr; /* only for the client helpers' flag words */
	memset(&fake_hdr, 0, sizeof fake_hdr);

	struct idm_ring prod, cons;
	idm_ring_init(&prod, ctl, area, ring_size);
	idm_ring_init(&cons, ctl, area, ring_size);
	/* A client whose tx is the producer and whose rx is the consumer side of the same ring. */
	struct idm_chan ch;
	memset(&ch, 0, sizeof ch);
	ch.ops = &fake_ops;
	ch.role = IDM_ROLE_CLIENT;
	ch.max_msg = max_msg;
	ch.sock_fd = ch.efd_wait = ch.efd_notify = ch.shm_fd = -1;

	for (unsigned steps = 0; in.n > 0 && steps < 256; steps++) {
		switch (take(&in, 1) % 12) {
		case 0: /* the peer writes any producer index */
			atomic_store(&ctl->head, take(&in, 8));
			break;
		case 1: /* ... or one near the consumer */
			atomic_store(&ctl->head, cons.pos + take(&in, 2));
			break;
		case 2: { /* the peer writes bytes anywhere in the data area */
			uint64_t off = take(&in, 2) % ring_size;
			size_t n = (size_t)take(&in, 1);
			for (size_t k = 0; k < n && in.n > 0; k++)
				area[(off + k) % ring_size] = (uint8_t)take(&in, 1);
			break;
		}
		case 3: { /* a frame header where the consumer reads next */
			struct idm_msg m = { (uint32_t)take(&in, 4), (uint16_t)take(&in, 2),
					     (uint16_t)take(&in, 2), take(&in, 8) };
			uint64_t off = cons.pos & (ring_size - 1);
			if (ring_size - off >= sizeof m)
				memcpy(area + off, &m, sizeof m);
			break;
		}
		case 4:
			consume_some(&cons, max_msg, 1 + (unsigned)(take(&in, 1) & 7));
			break;
		case 5: { /* producer: reserve, fill, commit */
			size_t len = (size_t)take(&in, 2);
			uint8_t *p = idm_ring_reserve(&prod, len);
			if (p != NULL) {
				size_t alen = idm_align(len);
				CHECK(p >= area && (uint64_t)(p - area) + alen <= ring_size);
				struct idm_msg m = { (uint32_t)alen, (uint16_t)(1 + take(&in, 1) % 30), 0, 0 };
				memset(p, 0xa5, alen);
				memcpy(p, &m, sizeof m);
				idm_ring_commit(&prod);
			}
			break;
		}
		case 6: /* the peer writes any consumer index */
			atomic_store(&ctl->tail, take(&in, 8));
			break;
		case 7: {
			int64_t f = idm_ring_free(&prod);
			CHECK(f == -1 || (f >= 0 && (uint64_t)f <= ring_size));
			break;
		}
		case 8:
			(void)idm_ring_empty(&cons);
			break;
		case 9: { /* client: wait for a reply with a given seq, then release it */
			ch.rx = cons;
			ch.tx = prod;
			ch.hdr = &fake_hdr;
			ch.rx.ctl = ctl;
			ch.tx.ctl = ctl;
			struct idm_msg hdr;
			const struct idm_msg *rep = idm_client_wait_reply(&ch, take(&in, 1), &hdr);
			if (rep != NULL) {
				CHECK(hdr.flags & IDM_F_REPLY);
				CHECK(hdr.len >= sizeof(struct idm_msg) + sizeof(struct idm_rep));
				CHECK((const uint8_t *)rep >= area &&
				      (uint64_t)((const uint8_t *)rep - area) + hdr.len <= ring_size);
				idm_client_release(&ch, &hdr);
			}
			cons = ch.rx;
			break;
		}
		case 10: { /* client: begin a request of any op and payload, then send it */
			ch.rx = cons;
			ch.tx = prod;
			ch.rx.ctl = ctl;
			ch.tx.ctl = ctl;
			uint16_t op = (uint16_t)take(&in, 1);
			size_t payload = (size_t)take(&in, 2);
			/* a full ring makes begin wait; with our transport that wait fails at once */
			uint8_t *body = idm_client_begin(&ch, op, (uint16_t)(take(&in, 1) & 3), payload, NULL);
			if (body != NULL) {
				const struct idm_op_info *info = idm_op_lookup(op);
				CHECK(info != NULL);
				size_t n = info->req_size + payload;
				CHECK(body >= area && (uint64_t)(body - area) + n <= ring_size);
				memset(body, 0x5a, n);
				CHECK(idm_client_send(&ch) == 0);
			}
			prod = ch.tx;
			break;
		}
		case 11: {
			uint32_t op = (uint32_t)take(&in, 4);
			const struct idm_op_info *info = idm_op_lookup(op);
			if (info != NULL)
				CHECK(op > IDM_OP_PAD && op < IDM_OP_COUNT && info->name != NULL);
			break;
		}
		}
	}
	free(area);
	free(ctl);
	return 0;
}
