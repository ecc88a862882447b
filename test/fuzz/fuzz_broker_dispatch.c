/* fuzz_broker_dispatch: the broker's request validation (broker/dispatch.c) against the `soft`
 * TEST DEVICE, fed a fuzzed stream of IDM messages through a real local channel.
 *
 * Once per process: a broker struct with the soft backend (no worker threads), a pod socket in a
 * temp dir, and one channel accepted on it (idm_local_accept / idm_local_connect: real memfd,
 * eventfds and socket, so HOST_REG receives real file descriptors). The ring data areas are then
 * swapped for heap blocks of the same size so that ASan sees every access past a ring.
 * Per input: fresh rings (indices reset), a fresh pod GPU context and a fresh `struct channel`; the
 * input's records become requests written by the client side, served as broker.c's worker does
 * (peek, broker_dispatch, consume), with the client reading replies. At the end the channel is
 * released as channel_destroy does and the harness checks that the pod's accounting and the soft
 * device are back to zero; LeakSanitizer checks everything else was freed.
 *
 * Input: byte 0 options (bit 0: no automatic HELLO first), then records:
 *   u8 op (mod 40; 31..37 are unknown ops, 38 corrupts the reply ring's tail, 39 does nothing),
 *   u8 ctl (bits 0-1: flags, 2: wrong seq, 3: leave replies unread, 4: send a memfd first,
 *           5: memfd without F_SEAL_SHRINK, 6: an undefined flag bit, 7: no handle substitution),
 *   u16 body length, body. Handles are random per channel, so a u64 in a body of the form
 *   0xfffffff0_XXXXXXXi stands for "remembered value i (a handle or device pointer from an earlier
 *   reply) + XXXXXXX". */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "handles.h"
#include "internal.h"
#include "vgpu_cuda.h"

#define CHECK(cond)                                                                              \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "fuzz_broker_dispatch: check failed: %s (line %d)\n", #cond, \
				__LINE__);                                                       \
			abort();                                                                 \
		}                                                                                \
	} while (0)

#define QUOTA (4ull << 20)
#define MAX_RECORDS 64
#define MAX_SEG (1u << 20)

static struct broker *B;
static struct idm_chan *broker_ic, *client_ic;
static uint8_t *req_area, *rep_area;
static char tmpdir[] = "/tmp/fuzz-broker-XXXXXX";
static char sock_path[128];

/* ---- soft test kernels ---- */

static int k_store(const struct broker_soft_launch *l)
{
	uint64_t dptr;
	uint32_t v;
	memcpy(&dptr, l->params[0], sizeof dptr);
	memcpy(&v, l->params[1], sizeof v);
	void *p = broker_soft_ptr(l->ctx, dptr, sizeof v);
	if (p == NULL)
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	memcpy(p, &v, sizeof v);
	return CUDA_SUCCESS;
}

static int k_nop(const struct broker_soft_launch *l) { return CUDA_SUCCESS; }

/* ---- one-time setup ---- */

static void *connect_thread(void *arg)
{
	struct idm_err err = { 0 };
	if (idm_local_connect(sock_path, &client_ic, &err) < 0) {
		fprintf(stderr, "fuzz_broker_dispatch: connect: %s\n", err.msg);
		abort();
	}
	return NULL;
}

static void quiet_log(int level, const char *msg) {}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	idm_set_log_fn(quiet_log);
	uint32_t store_params[] = { 8, 4 };
	CHECK(broker_soft_register("fz_store", k_store, 2, store_params) == 0);
	CHECK(broker_soft_register("fz_nop", k_nop, 0, NULL) == 0);
	B = calloc(1, sizeof *B);
	CHECK(B != NULL);
	B->be.ops = &broker_backend_soft;
	B->epfd = B->wake_fd = -1;
	struct broker_config cfg = { .backend = "soft", .pod_processes = -1 };
	struct idm_err err = { 0 };
	CHECK(B->be.ops->init(&B->be, &cfg, &err) == 0);
	CHECK(B->be.ops->device_info(&B->be, &B->dev) == 0);
	B->dev.soft_device = 1;

	CHECK(mkdtemp(tmpdir) != NULL);
	snprintf(sock_path, sizeof sock_path, "%s/gpu.sock", tmpdir);
	int lfd;
	CHECK(idm_local_listen(sock_path, &lfd, &err) == 0);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, connect_thread, NULL) == 0);
	struct idm_hello h = B->dev;
	snprintf(h.pod_id, sizeof h.pod_id, "fuzzpod");
	h.channel_id = 1;
	h.quota_bytes = QUOTA;
	int rc;
	while ((rc = idm_local_accept(lfd, &h, &broker_ic, &err)) == -EAGAIN)
		usleep(1000);
	CHECK(rc == 0);
	CHECK(pthread_join(t, NULL) == 0);
	close(lfd);
	unlink(sock_path);
	rmdir(tmpdir);
	/* heap-backed ring data (both sides see the same blocks), for ASan */
	req_area = malloc(broker_ic->hello.req_size);
	rep_area = malloc(broker_ic->hello.rep_size);
	CHECK(req_area != NULL && rep_area != NULL);
	return 0;
}

/* ---- per input ---- */

struct input {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct input *in, size_t bytes)
{
	uint64_t v = 0;
	for (size_t i = 0; i < bytes && in->n > 0; i++) {
		v |= (uint64_t)*in->p++ << (8 * i);
		in->n--;
	}
	return v;
}

struct harness {
	struct channel *c;
	uint64_t saved[16];
	unsigned nsaved;
	bool closed;
	bool corrupt; /* the client corrupted its reply ring: its replies may be garbage */
	uint64_t client_seq;
};

static void remember(struct harness *h, uint64_t v)
{
	h->saved[h->nsaved++ % 16] = v;
}

static void reset_rings(void)
{
	struct idm_hello *hl = &broker_ic->hello;
	struct idm_shm_hdr *sh = broker_ic->hdr;
	atomic_store(&sh->req.head, 0);
	atomic_store(&sh->req.tail, 0);
	atomic_store(&sh->rep.head, 0);
	atomic_store(&sh->rep.tail, 0);
	atomic_store(&sh->req.consumer_sleeping, 0);
	atomic_store(&sh->rep.consumer_sleeping, 0);
	atomic_store(&sh->req.producer_waiting, 0);
	atomic_store(&sh->rep.producer_waiting, 0);
	idm_ring_init(&broker_ic->rx, &sh->req, req_area, hl->req_size);
	idm_ring_init(&broker_ic->tx, &sh->rep, rep_area, hl->rep_size);
	idm_ring_init(&client_ic->tx, &client_ic->hdr->req, req_area, hl->req_size);
	idm_ring_init(&client_ic->rx, &client_ic->hdr->rep, rep_area, hl->rep_size);
	broker_ic->next_seq = 0;
	client_ic->next_seq = 0;
}

/* The client reads every reply: checks its framing and remembers handles and pointers. */
static void drain_replies(struct harness *h)
{
	struct idm_msg hdr;
	const uint8_t *m;
	while (idm_ring_peek(&client_ic->rx, client_ic->max_msg, &hdr, &m) == 0) {
		if (h->corrupt) {
			idm_client_release(client_ic, &hdr);
			continue;
		}
		CHECK(hdr.flags == IDM_F_REPLY);
		CHECK(hdr.len >= sizeof(struct idm_msg) + sizeof(struct idm_rep));
		const struct idm_op_info *info = idm_op_lookup(hdr.op);
		CHECK(info != NULL);
		struct idm_rep rep;
		memcpy(&rep, m + sizeof hdr, sizeof rep);
		const uint8_t *body = m + sizeof hdr + sizeof rep;
		size_t blen = hdr.len - sizeof hdr - sizeof rep;
		CHECK(blen >= info->rep_size);
		uint64_t v;
		if (rep.result == CUDA_SUCCESS) {
			switch (hdr.op) {
			case IDM_OP_MEM_ALLOC:
			case IDM_OP_MEM_ALLOC_ASYNC:
			case IDM_OP_HOST_REG:
			case IDM_OP_STREAM_CREATE:
			case IDM_OP_EVENT_CREATE:
				memcpy(&v, body, sizeof v);
				remember(h, v);
				break;
			case IDM_OP_DTOH:
				memcpy(&v, body, sizeof v);
				CHECK(v <= blen - sizeof(struct idm_dtoh_rep));
				break;
			case IDM_OP_MODULE_LOAD:
			case IDM_OP_MODULE_FUNCS: {
				struct idm_module_rep mr;
				memcpy(&mr, body, sizeof mr);
				remember(h, mr.module);
				CHECK(mr.nrep <= mr.nfunc);
				size_t off = sizeof mr;
				for (uint32_t i = 0; i < mr.nrep; i++) {
					struct idm_func_desc d;
					CHECK(off + sizeof d <= blen);
					memcpy(&d, body + off, sizeof d);
					remember(h, d.handle);
					off += sizeof d + ((d.namelen + 7) & ~7u) +
					       (size_t)d.nparams * sizeof(struct idm_param_desc);
					CHECK(off <= blen);
				}
				break;
			}
			default:
				break;
			}
		}
		idm_client_release(client_ic, &hdr);
	}
}

/* Serve what is on the request ring, as broker.c's process() does. */
static void serve(struct harness *h)
{
	struct idm_chan *ic = broker_ic;
	for (int i = 0; i < 16 && !h->closed; i++) {
		struct idm_msg hdr;
		const uint8_t *msg;
		int rc = idm_ring_peek(&ic->rx, ic->max_msg, &hdr, &msg);
		if (rc == -EAGAIN)
			return;
		if (rc < 0) {
			h->closed = true;
			return;
		}
		rc = broker_dispatch(h->c, &hdr, msg);
		if (rc == 1) { /* parked on a full reply ring: the client reads, the worker retries */
			drain_replies(h);
			rc = broker_dispatch(h->c, &hdr, msg);
			/* still parked: only a client that corrupted its own ring gets here; the
			 * channel then waits for it forever, as the real worker does */
			CHECK(rc != 1 || h->corrupt);
		}
		if (rc != 0) {
			h->closed = true;
			return;
		}
		idm_ring_consume(&ic->rx, &hdr);
		CHECK(h->c->pod->usage.mem_in_use <= QUOTA);
	}
}

static void send_memfd(struct input *in, const uint8_t *body, size_t blen, bool sealed)
{
	uint64_t want = 0;
	if (blen >= 8)
		memcpy(&want, body, 8);
	size_t size = want > 0 && want <= MAX_SEG ? (size_t)want : 4096;
	int fd = memfd_create("fuzz-seg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)size) == 0);
	if (sealed)
		CHECK(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
	struct idm_err err = { 0 };
	CHECK(idm_local_send_fd(client_ic, fd, &err) == 0);
	close(fd);
}

/* Client: write one request built from a record. */
static bool send_record(struct harness *h, struct input *in)
{
	unsigned op = (unsigned)(take(in, 1) % 40);
	unsigned ctl = (unsigned)take(in, 1);
	size_t blen = (size_t)take(in, 2);
	if (blen > in->n)
		blen = in->n;
	uint8_t body[65536 + 16];
	memset(body, 0, sizeof body);
	memcpy(body, in->p, blen);
	in->p += blen;
	in->n -= blen;
	if (op == 39)
		return true;
	if (op == 38) { /* a hostile client moves its reply ring's consumer index anywhere */
		uint64_t v;
		memcpy(&v, body, sizeof v);
		atomic_store(&client_ic->hdr->rep.tail, v);
		h->corrupt = true;
		return true;
	}
	if (!(ctl & 0x80) && h->nsaved > 0) {
		for (size_t off = 0; off + 8 <= blen; off += 8) {
			uint64_t v;
			memcpy(&v, body + off, 8);
			if ((v >> 32) == 0xfffffff0u) {
				v = h->saved[(v & 0xf) % (h->nsaved < 16 ? h->nsaved : 16)] + ((v >> 4) & 0xfffffff);
				memcpy(body + off, &v, 8);
			}
		}
	}
	if (ctl & 0x10)
		send_memfd(in, body, blen, !(ctl & 0x20));
	size_t total = idm_align(sizeof(struct idm_msg) + blen);
	uint8_t *p = idm_ring_reserve(&client_ic->tx, total);
	if (p == NULL)
		return false; /* request ring full: the broker parked; stop here */
	uint16_t flags = (uint16_t)((ctl & 3) | ((ctl & 0x40) ? 0x4 : 0));
	uint64_t seq = h->client_seq++ + ((ctl & 4) ? 1 : 0);
	struct idm_msg m = { (uint32_t)total, (uint16_t)op, flags, seq };
	memset(p, 0, total);
	memcpy(p, &m, sizeof m);
	memcpy(p + sizeof m, body, blen);
	idm_ring_commit(&client_ic->tx);
	return true;
}

static void release_channel(struct harness *h)
{
	struct channel *c = h->c;
	struct pod *pod = c->pod;
	uint64_t free_bytes = 0, total = 0;
	broker_channel_release_objects(c);
	broker_flush_stats(c);
	CHECK(pod->usage.mem_in_use == 0);
	CHECK(c->at.n == 0 && c->ht.count == 0);
	/* the soft device holds nothing of this pod any more */
	CHECK(B->be.ops->mem_info(&B->be, pod->ctx, &free_bytes, &total) == CUDA_SUCCESS);
	CHECK(free_bytes == total);
	ht_fini(&c->ht);
	at_fini(&c->at);
	free(c->scratch);
	B->be.ops->ctx_destroy(&B->be, pod->ctx);
	pthread_mutex_destroy(&pod->lock);
	pthread_cond_destroy(&pod->cond);
	free(pod);
	free(c);
	/* file descriptors sent but never taken by a HOST_REG */
	for (int i = 0; i < MAX_RECORDS * 2; i++) {
		int fd = -1;
		int rc = idm_local_recv_fd(broker_ic, &fd);
		if (rc == -EAGAIN)
			break;
		if (rc == 0)
			close(fd);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = { data, size };
	unsigned opts = (unsigned)take(&in, 1);
	reset_rings();

	struct pod *pod = calloc(1, sizeof *pod);
	struct channel *c = calloc(1, sizeof *c);
	CHECK(pod != NULL && c != NULL);
	snprintf(pod->id, sizeof pod->id, "fuzzpod");
	pod->b = B;
	pod->quota_bytes = QUOTA;
	pod->usage.quota_bytes = QUOTA;
	pthread_mutex_init(&pod->lock, NULL);
	pthread_cond_init(&pod->cond, NULL);
	CHECK(B->be.ops->ctx_create(&B->be, &pod->ctx) == CUDA_SUCCESS);
	c->b = B;
	c->pod = pod;
	c->ic = broker_ic;
	c->epfd = -1;
	c->id = 1;
	ht_init(&c->ht);

	struct harness h = { .c = c };
	if (!(opts & 1)) {
		struct idm_hello_req hello = { IDM_PROTO_VERSION, 1 };
		uint8_t *p = idm_ring_reserve(&client_ic->tx, 32);
		struct idm_msg m = { 32, IDM_OP_HELLO, 0, h.client_seq++ };
		memcpy(p, &m, sizeof m);
		memcpy(p + sizeof m, &hello, sizeof hello);
		idm_ring_commit(&client_ic->tx);
		serve(&h);
		drain_replies(&h);
	}
	for (int r = 0; r < MAX_RECORDS && in.n > 0 && !h.closed; r++) {
		unsigned ctl = in.n > 1 ? in.p[1] : 0;
		if (!send_record(&h, &in))
			break;
		serve(&h);
		if (!(ctl & 0x08))
			drain_replies(&h);
	}
	drain_replies(&h);
	release_channel(&h);
	return 0;
}
