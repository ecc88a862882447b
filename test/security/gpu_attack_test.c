/* gpu_attack_test: attacks on the GPU path's isolation rules, speaking raw IDM to an in-process
 * broker (backend $VGPU_TEST_BACKEND: soft by default, cuda on the device machine).
 * Each test must fail to break a rule of docs/gpu-path.md ("Security model"): foreign and forged
 * handles, pointers outside the pod's allocations, overflowing sizes, garbage and truncated
 * messages, a client that stops reading replies, a client killed mid-call, 1000
 * connect/disconnect cycles with no leaked fds or memory, and a kernel given another pod's
 * pointer (on a pod of its own, C: the fault poisons that pod's context). Exit status 0: all held. */
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
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "soft_kernels.h"

enum {
    OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_HANDLE = 400, NOT_FOUND = 500,
    ILLEGAL_ADDRESS = 700, LAUNCH_FAILED = 719, DEAD = -1
};

static broker_t *the_broker;
static char dir[64], path_a[128], path_b[128], path_c[128];
static const char *backend;
#define QUOTA_B (1ull << 30)

#define FAIL(...)                                                                              \
    do {                                                                                       \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
        fprintf(stderr, __VA_ARGS__);                                                          \
        fprintf(stderr, "\n");                                                                 \
        exit(1);                                                                               \
    } while (0)
#define EXPECT_EQ(got, want)                                                                   \
    do {                                                                                       \
        long long g_ = (long long)(got), w_ = (long long)(want);                               \
        if (g_ != w_)                                                                          \
            FAIL("%s = %lld, expected %lld", #got, g_, w_);                                    \
    } while (0)

/* One request; returns the CUresult, or DEAD if the channel is gone. */
static int call(struct idm_chan *ch, uint16_t op, uint16_t flags, const void *req, size_t rsz,
                const void *payload, size_t plen, void *rep, size_t rep_size)
{
    uint64_t seq;
    uint8_t *body = idm_client_begin(ch, op, flags, plen, &seq);
    if (body == NULL)
        return DEAD;
    memcpy(body, req, rsz);
    if (plen)
        memcpy(body + rsz, payload, plen);
    if (idm_client_send(ch) < 0)
        return DEAD;
    const struct idm_op_info *info = idm_op_lookup(op);
    if (info->async && !(flags & IDM_F_SYNC))
        return OK;
    struct idm_msg hdr;
    const struct idm_msg *m = idm_client_wait_reply(ch, seq, &hdr);
    if (m == NULL)
        return DEAD;
    struct idm_rep r;
    memcpy(&r, (const uint8_t *)m + sizeof hdr, sizeof r);
    if (rep)
        memcpy(rep, (const uint8_t *)m + sizeof hdr + sizeof r, rep_size);
    idm_client_release(ch, &hdr);
    return r.result;
}

static struct idm_chan *conn_raw(const char *path)
{
    struct idm_chan *ch;
    struct idm_err err = { 0 };
    if (idm_local_connect(path, &ch, &err) < 0)
        FAIL("connect: %s", err.msg);
    return ch;
}

static struct idm_chan *conn(const char *path)
{
    struct idm_chan *ch = conn_raw(path);
    struct idm_hello_req h = { IDM_PROTO_VERSION, (uint32_t)getpid() };
    struct idm_hello_rep hr;
    EXPECT_EQ(call(ch, IDM_OP_HELLO, 0, &h, sizeof h, NULL, 0, &hr, sizeof hr), OK);
    return ch;
}

static uint64_t alloc(struct idm_chan *ch, uint64_t size)
{
    struct idm_mem_alloc_req r = { size };
    struct idm_mem_alloc_rep rep = { 0 };
    EXPECT_EQ(call(ch, IDM_OP_MEM_ALLOC, 0, &r, sizeof r, NULL, 0, &rep, sizeof rep), OK);
    return rep.dptr;
}

static uint64_t new_handle(struct idm_chan *ch, uint16_t op)
{
    struct idm_stream_create_req r = { 0, 0 };
    struct idm_handle_rep rep = { 0 };
    EXPECT_EQ(call(ch, op, 0, &r, sizeof r, NULL, 0, &rep, sizeof rep), OK);
    return rep.handle;
}

static int handle_op(struct idm_chan *ch, uint16_t op, uint64_t h)
{
    struct idm_handle_req r = { h };
    return call(ch, op, 0, &r, sizeof r, NULL, 0, NULL, 0);
}

static int htod(struct idm_chan *ch, uint64_t dst, size_t len)
{
    uint8_t buf[64] = { 1, 2, 3, 4 };
    struct idm_htod_req r = { dst, 0, len, 0 };
    return call(ch, IDM_OP_HTOD, IDM_F_SYNC, &r, sizeof r, buf, len, NULL, 0);
}

static int dtoh(struct idm_chan *ch, uint64_t src, uint64_t len)
{
    struct idm_dtoh_req r = { src, 0, len };
    return call(ch, IDM_OP_DTOH, 0, &r, sizeof r, NULL, 0, NULL, 0);
}

static int dtod(struct idm_chan *ch, uint64_t dst, uint64_t src, uint64_t len)
{
    struct idm_dtod_req r = { dst, src, len, 0 };
    return call(ch, IDM_OP_DTOD, IDM_F_SYNC, &r, sizeof r, NULL, 0, NULL, 0);
}

static int memset32(struct idm_chan *ch, uint64_t dst, uint64_t count)
{
    struct idm_memset_req r = { dst, count, 0, 0x12345678, 4 };
    return call(ch, IDM_OP_MEMSET, IDM_F_SYNC, &r, sizeof r, NULL, 0, NULL, 0);
}

static struct broker_usage usage(const char *pod)
{
    struct broker_usage u;
    if (broker_pod_usage(the_broker, pod, &u, NULL) < 0)
        FAIL("usage %s", pod);
    return u;
}

/* Waits until the broker has closed the channel (its end of the socket hangs up). */
static bool closed_by_broker(struct idm_chan *ch)
{
    struct pollfd p = { .fd = ch->sock_fd, .events = POLLRDHUP };
    return poll(&p, 1, 5000) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

#define wait_channels(pod, n) wait_channels_at(pod, n, __LINE__)
static void wait_channels_at(const char *pod, uint64_t n, int line)
{
    for (int i = 0; i < 500 && usage(pod).channels != n; i++)
        usleep(10000);
    if (usage(pod).channels != n)
        FAIL("pod %s: %llu channels, expected %llu (from line %d)", pod,
             (unsigned long long)usage(pod).channels, (unsigned long long)n, line);
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void test_foreign_handles(void)
{
    struct idm_chan *a = conn(path_a), *a2 = conn(path_a), *b = conn(path_b);
    uint64_t hs = new_handle(a, IDM_OP_STREAM_CREATE), he = new_handle(a, IDM_OP_EVENT_CREATE);
    uint64_t pa = alloc(a, 4096);
    /* pod B, and even another channel of pod A, cannot use them */
    struct idm_chan *others[] = { b, a2 };
    for (int i = 0; i < 2; i++) {
        struct idm_chan *o = others[i];
        EXPECT_EQ(handle_op(o, IDM_OP_STREAM_SYNC, hs), INVALID_HANDLE);
        EXPECT_EQ(handle_op(o, IDM_OP_STREAM_DESTROY, hs), INVALID_HANDLE);
        EXPECT_EQ(handle_op(o, IDM_OP_EVENT_SYNC, he), INVALID_HANDLE);
        EXPECT_EQ(handle_op(o, IDM_OP_EVENT_DESTROY, he), INVALID_HANDLE);
        struct idm_dptr_req f = { pa };
        EXPECT_EQ(call(o, IDM_OP_MEM_FREE, 0, &f, sizeof f, NULL, 0, NULL, 0), INVALID_VALUE);
        EXPECT_EQ(call(o, IDM_OP_MEM_RANGE, 0, &f, sizeof f, NULL, 0, NULL, 0), NOT_FOUND);
        EXPECT_EQ(htod(o, pa, 4), INVALID_VALUE);
        EXPECT_EQ(dtoh(o, pa, 4), INVALID_VALUE);
        EXPECT_EQ(memset32(o, pa, 1), INVALID_VALUE);
    }
    /* the owner still can */
    EXPECT_EQ(handle_op(a, IDM_OP_STREAM_SYNC, hs), OK);
    EXPECT_EQ(handle_op(a, IDM_OP_EVENT_DESTROY, he), OK);
    EXPECT_EQ(handle_op(a, IDM_OP_EVENT_DESTROY, he), INVALID_HANDLE); /* stale */
    EXPECT_EQ(htod(a, pa, 4), OK);
    idm_chan_close(a);
    idm_chan_close(a2);
    idm_chan_close(b);
    printf("PASS foreign handles\n");
}

static void test_forged_handles(void)
{
    struct idm_chan *b = conn(path_b);
    uint64_t hs = new_handle(b, IDM_OP_STREAM_CREATE);
    uint64_t forged[] = { 1, 2, 3, 0xffffffffffffffffull, hs ^ 1, hs + (1ull << 32),
                          hs ^ (1ull << 48), hs + 1, 0x4141414141414141ull, hs & 0xffffffffull };
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        EXPECT_EQ(handle_op(b, IDM_OP_STREAM_SYNC, forged[i]), INVALID_HANDLE);
        EXPECT_EQ(handle_op(b, IDM_OP_EVENT_QUERY, forged[i]), INVALID_HANDLE);
        EXPECT_EQ(handle_op(b, IDM_OP_MODULE_UNLOAD, forged[i]), INVALID_HANDLE);
        EXPECT_EQ(handle_op(b, IDM_OP_HOST_UNREG, forged[i]), INVALID_HANDLE);
        struct idm_launch_req l = { forged[i], 0, { 1, 1, 1 }, { 1, 1, 1 }, 0, 0 };
        EXPECT_EQ(call(b, IDM_OP_LAUNCH, IDM_F_SYNC, &l, sizeof l, NULL, 0, NULL, 0),
                  INVALID_HANDLE);
    }
    /* a stream handle is not an event handle */
    EXPECT_EQ(handle_op(b, IDM_OP_EVENT_SYNC, hs), INVALID_HANDLE);
    /* a failed async launch surfaces at the next synchronizing call */
    struct idm_launch_req l = { 0x777, 0, { 1, 1, 1 }, { 1, 1, 1 }, 0, 0 };
    EXPECT_EQ(call(b, IDM_OP_LAUNCH, 0, &l, sizeof l, NULL, 0, NULL, 0), OK);
    struct idm_empty e = { 0 };
    EXPECT_EQ(call(b, IDM_OP_CTX_SYNC, 0, &e, sizeof e, NULL, 0, NULL, 0), INVALID_HANDLE);
    EXPECT_EQ(call(b, IDM_OP_CTX_SYNC, 0, &e, sizeof e, NULL, 0, NULL, 0), OK);
    idm_chan_close(b);
    printf("PASS forged handles\n");
}

static void test_pointers(void)
{
    struct idm_chan *a = conn(path_a), *b = conn(path_b);
    uint64_t pa = alloc(a, 4096), pb = alloc(b, 4096);
    EXPECT_EQ(htod(b, pb + 4092, 4), OK); /* control */
    uint64_t bad[] = { pb - 1, pb + 4093, pb + 4096, pb + 8192, pa, pa + 100, 0, 16 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        /* With a process per pod, pod A's pointer is just a number in pod B's address space:
         * if it happens to fall inside B's own allocation it is B's memory. */
        if (bad[i] + 8 > pb && bad[i] < pb + 4096 && (bad[i] == pa || bad[i] == pa + 100))
            continue;
        EXPECT_EQ(htod(b, bad[i], 4), INVALID_VALUE);
        EXPECT_EQ(dtoh(b, bad[i], 4), INVALID_VALUE);
        EXPECT_EQ(memset32(b, bad[i] & ~3ull, 2), INVALID_VALUE);
        EXPECT_EQ(dtod(b, bad[i], pb, 4), INVALID_VALUE);
        EXPECT_EQ(dtod(b, pb, bad[i], 4), INVALID_VALUE);
        struct idm_dptr_req f = { bad[i] };
        EXPECT_EQ(call(b, IDM_OP_MEM_FREE, 0, &f, sizeof f, NULL, 0, NULL, 0), INVALID_VALUE);
    }
    EXPECT_EQ(memset32(b, pb + 4000, 25), INVALID_VALUE); /* straddles the end */
    EXPECT_EQ(memset32(b, pb, 1024), OK);
    struct idm_dptr_req f = { pb + 16 };
    EXPECT_EQ(call(b, IDM_OP_MEM_FREE, 0, &f, sizeof f, NULL, 0, NULL, 0), INVALID_VALUE);
    f.dptr = pb;
    EXPECT_EQ(call(b, IDM_OP_MEM_FREE, 0, &f, sizeof f, NULL, 0, NULL, 0), OK);
    EXPECT_EQ(htod(b, pb, 4), INVALID_VALUE); /* freed */
    idm_chan_close(a);
    idm_chan_close(b);
    printf("PASS pointer checks\n");
}

static int make_seg(size_t size, bool seal)
{
    int fd = memfd_create("attack-seg", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0 ||
        (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0))
        FAIL("memfd");
    return fd;
}

static void test_sizes(void)
{
    struct idm_chan *b = conn(path_b);
    uint64_t pb = alloc(b, 4096);
    EXPECT_EQ(dtod(b, pb, pb, UINT64_MAX), INVALID_VALUE);
    EXPECT_EQ(dtod(b, pb + 8, pb, UINT64_MAX - 4), INVALID_VALUE);
    EXPECT_EQ(memset32(b, pb, 1ull << 62), INVALID_VALUE);
    EXPECT_EQ(memset32(b, pb + 8, (UINT64_MAX / 4) + 1), INVALID_VALUE);
    EXPECT_EQ(dtoh(b, pb, UINT64_MAX), INVALID_VALUE);
    EXPECT_EQ(dtoh(b, pb + 4, UINT64_MAX - 2), INVALID_VALUE);
    struct idm_mem_alloc_req ar = { UINT64_MAX };
    EXPECT_EQ(call(b, IDM_OP_MEM_ALLOC, 0, &ar, sizeof ar, NULL, 0, NULL, 0), OUT_OF_MEMORY);
    /* quota of pod B */
    struct idm_empty e = { 0 };
    struct idm_mem_info_rep mi = { 0 };
    EXPECT_EQ(call(b, IDM_OP_MEM_GET_INFO, 0, &e, sizeof e, NULL, 0, &mi, sizeof mi), OK);
    EXPECT_EQ(mi.total_bytes, QUOTA_B);
    ar.size = QUOTA_B;
    EXPECT_EQ(call(b, IDM_OP_MEM_ALLOC, 0, &ar, sizeof ar, NULL, 0, NULL, 0), OUT_OF_MEMORY);
    uint64_t big = alloc(b, QUOTA_B / 2);
    ar.size = QUOTA_B / 2;
    EXPECT_EQ(call(b, IDM_OP_MEM_ALLOC, 0, &ar, sizeof ar, NULL, 0, NULL, 0), OUT_OF_MEMORY);
    struct idm_dptr_req fr = { big };
    EXPECT_EQ(call(b, IDM_OP_MEM_FREE, 0, &fr, sizeof fr, NULL, 0, NULL, 0), OK);
    /* host segments: must be sealed memfds of the announced size; offsets checked */
    struct idm_host_reg_req hr = { 65536 };
    struct idm_handle_rep h = { 0 };
    EXPECT_EQ(call(b, IDM_OP_HOST_REG, 0, &hr, sizeof hr, NULL, 0, &h, sizeof h), INVALID_VALUE);
    int fd = make_seg(65536, false);
    EXPECT_EQ(idm_local_send_fd(b, fd, NULL), 0);
    EXPECT_EQ(call(b, IDM_OP_HOST_REG, 0, &hr, sizeof hr, NULL, 0, &h, sizeof h), INVALID_VALUE);
    close(fd);
    fd = make_seg(4096, true);
    EXPECT_EQ(idm_local_send_fd(b, fd, NULL), 0);
    EXPECT_EQ(call(b, IDM_OP_HOST_REG, 0, &hr, sizeof hr, NULL, 0, &h, sizeof h), INVALID_VALUE);
    close(fd);
    fd = make_seg(65536, true);
    EXPECT_EQ(idm_local_send_fd(b, fd, NULL), 0);
    EXPECT_EQ(call(b, IDM_OP_HOST_REG, 0, &hr, sizeof hr, NULL, 0, &h, sizeof h), OK);
    close(fd);
    struct idm_seg_copy_req sc = { h.handle, UINT64_MAX - 10, pb, 100, 0, IDM_SEG_HTOD, 0 };
    EXPECT_EQ(call(b, IDM_OP_SEG_COPY, IDM_F_SYNC, &sc, sizeof sc, NULL, 0, NULL, 0), INVALID_VALUE);
    sc.seg_off = 65536 - 8;
    sc.len = 16;
    EXPECT_EQ(call(b, IDM_OP_SEG_COPY, IDM_F_SYNC, &sc, sizeof sc, NULL, 0, NULL, 0), INVALID_VALUE);
    sc.seg_off = 0;
    sc.len = 8192; /* larger than the allocation */
    EXPECT_EQ(call(b, IDM_OP_SEG_COPY, IDM_F_SYNC, &sc, sizeof sc, NULL, 0, NULL, 0), INVALID_VALUE);
    sc.len = 4096;
    EXPECT_EQ(call(b, IDM_OP_SEG_COPY, IDM_F_SYNC, &sc, sizeof sc, NULL, 0, NULL, 0), OK);
    sc.dir = 7;
    EXPECT_EQ(call(b, IDM_OP_SEG_COPY, IDM_F_SYNC, &sc, sizeof sc, NULL, 0, NULL, 0), INVALID_VALUE);
    EXPECT_EQ(handle_op(b, IDM_OP_HOST_UNREG, h.handle), OK);
    /* an HTOD that claims more bytes than it carries is a protocol violation: channel closed */
    struct idm_htod_req lie = { pb, 0, 1 << 20, 0 };
    uint8_t small[16] = { 0 };
    EXPECT_EQ(call(b, IDM_OP_HTOD, IDM_F_SYNC, &lie, sizeof lie, small, sizeof small, NULL, 0), DEAD);
    idm_chan_close(b);
    printf("PASS sizes, overflows, quota, host segments\n");
}

/* Writes raw bytes as the next message(s) of the request ring and publishes head. */
static void raw_publish(struct idm_chan *ch, const void *bytes, size_t n, uint64_t head_advance)
{
    struct idm_ring *r = &ch->tx;
    uint64_t off = r->pos & (r->size - 1);
    memcpy(r->data + off, bytes, n);
    r->pos += head_advance;
    atomic_store(&r->ctl->head, r->pos);
    uint64_t one = 1;
    if (write(ch->efd_notify, &one, sizeof one) < 0)
        FAIL("doorbell");
}

static void expect_killed(struct idm_chan *ch, const char *what)
{
    if (!closed_by_broker(ch))
        FAIL("broker kept a channel after %s", what);
    idm_chan_close(ch);
}

/* Channels close asynchronously: start each test from a quiet broker. */
static void quiesce(void)
{
    wait_channels("A", 0);
    wait_channels("B", 0);
}

static void test_garbage(void)
{
    quiesce();
    uint64_t base = 0;
    struct idm_chan *ch;
    uint8_t junk[16384];
    srand(7);
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)rand();
    ch = conn(path_a);
    raw_publish(ch, junk, sizeof junk, sizeof junk);
    expect_killed(ch, "random bytes");

    struct idm_msg m = { 64, IDM_OP_MEM_GET_INFO, 0, 1 }; /* claims 64 bytes, 32 published */
    uint8_t buf[64] = { 0 };
    memcpy(buf, &m, sizeof m);
    ch = conn(path_a);
    raw_publish(ch, buf, 32, 32);
    expect_killed(ch, "a truncated message");

    struct idm_msg cases[] = {
        { 32, IDM_OP_MEM_GET_INFO, 0, 999 },         /* wrong sequence number */
        { 32, 200, 0, 1 },                          /* unknown operation */
        { 32, IDM_OP_MEM_GET_INFO, IDM_F_REPLY, 1 }, /* a reply flag on a request */
        { 24, IDM_OP_MEM_GET_INFO, 0, 1 },          /* unaligned length */
        { 16, IDM_OP_MEM_ALLOC, 0, 1 },             /* body shorter than the operation's */
        { 32, IDM_OP_PAD, 0, 1 },                   /* padding in the middle of the ring */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ch = conn(path_a);
        memset(buf, 0, sizeof buf);
        memcpy(buf, &cases[i], sizeof cases[i]);
        raw_publish(ch, buf, cases[i].len >= 16 ? cases[i].len : 16, cases[i].len);
        expect_killed(ch, "a malformed header");
    }
    /* an operation before the hello */
    ch = conn_raw(path_a);
    struct idm_mem_alloc_req ar = { 4096 };
    EXPECT_EQ(call(ch, IDM_OP_MEM_ALLOC, 0, &ar, sizeof ar, NULL, 0, NULL, 0), DEAD);
    idm_chan_close(ch);
    /* a producer index far beyond the ring */
    ch = conn(path_a);
    raw_publish(ch, buf, 0, 3 * ch->tx.size);
    expect_killed(ch, "a head index beyond the ring");
    /* a corrupted consumer index on the reply ring */
    ch = conn(path_a);
    atomic_store(&ch->rx.ctl->tail, 5 * ch->rx.size);
    struct idm_empty e = { 0 };
    EXPECT_EQ(call(ch, IDM_OP_MEM_GET_INFO, 0, &e, sizeof e, NULL, 0, NULL, 0), DEAD);
    idm_chan_close(ch);
    wait_channels("A", base);
    /* the pod is still served */
    ch = conn(path_a);
    alloc(ch, 4096);
    idm_chan_close(ch);
    printf("PASS garbage and truncated messages\n");
}

static void test_stop_reading(void)
{
    quiesce();
    uint64_t base = 0;
    struct idm_chan *s = conn(path_a);
    uint64_t p = alloc(s, 1 << 20);
    for (int i = 0; i < 64; i++) { /* 64 MiB of replies into a 16 MiB ring, never read */
        struct idm_dtoh_req r = { p, 0, 1 << 20 };
        uint8_t *body = idm_client_begin(s, IDM_OP_DTOH, 0, 0, NULL);
        if (body == NULL)
            FAIL("begin");
        memcpy(body, &r, sizeof r);
        idm_client_send(s);
    }
    usleep(100000);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct idm_chan *a = conn(path_a), *b = conn(path_b);
    struct idm_empty e = { 0 };
    for (int i = 0; i < 200; i++) {
        EXPECT_EQ(call(a, IDM_OP_CTX_SYNC, 0, &e, sizeof e, NULL, 0, NULL, 0), OK);
        EXPECT_EQ(call(b, IDM_OP_CTX_SYNC, 0, &e, sizeof e, NULL, 0, NULL, 0), OK);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (secs > 10)
        FAIL("other channels starved: %.1f s", secs);
    idm_chan_close(s);
    idm_chan_close(a);
    idm_chan_close(b);
    wait_channels("A", base);
    printf("PASS client that stops reading replies (others served in %.3f s)\n", secs);
}

static void test_killed_client(void)
{
    quiesce();
    struct broker_usage before = usage("A");
    pid_t pid = fork();
    if (pid == 0) {
        struct idm_chan *ch = conn(path_a);
        uint64_t p = alloc(ch, 64 << 20);
        static uint8_t chunk[1 << 20];
        for (int i = 0; i < 32; i++) {
            struct idm_htod_req r = { p + ((uint64_t)i << 20), 0, sizeof chunk, 0 };
            uint8_t *body = idm_client_begin(ch, IDM_OP_HTOD, 0, sizeof chunk, NULL);
            if (body == NULL)
                _exit(3);
            memcpy(body, &r, sizeof r);
            memcpy(body + sizeof r, chunk, sizeof chunk);
            idm_client_send(ch);
        }
        struct idm_empty e = { 0 };
        uint8_t *body = idm_client_begin(ch, IDM_OP_CTX_SYNC, 0, 0, NULL);
        memcpy(body, &e, sizeof e);
        idm_client_send(ch);
        raise(SIGKILL); /* mid-call */
        _exit(4);
    }
    int st;
    EXPECT_EQ(waitpid(pid, &st, 0), pid);
    if (!WIFSIGNALED(st))
        FAIL("child was not killed (status %d)", st);
    /* usage may be published late (pod processes): wait for the whole story */
    struct broker_usage after = usage("A");
    for (int i = 0; i < 500; i++) {
        after = usage("A");
        if (after.channels == before.channels && after.mem_in_use == before.mem_in_use &&
            after.channels_total > before.channels_total)
            break;
        usleep(10000);
    }
    EXPECT_EQ(after.channels, before.channels);
    EXPECT_EQ(after.mem_in_use, before.mem_in_use);
    if (after.mem_peak < before.mem_in_use + (64 << 20))
        FAIL("the killed client never allocated?");
    printf("PASS client killed mid-call (64 MiB freed)\n");
}

static void test_cycles(void)
{
    quiesce();
    struct idm_chan *probe = conn(path_a);
    struct idm_empty e = { 0 };
    struct idm_mem_info_rep before, after;
    EXPECT_EQ(call(probe, IDM_OP_MEM_GET_INFO, 0, &e, sizeof e, NULL, 0, &before, sizeof before), OK);
    wait_channels("A", 1); /* usage may be published late (pod processes) */
    struct broker_usage ub = usage("A");
    int fds = count_fds();
    for (int i = 0; i < 1000; i++) {
        struct idm_chan *ch = conn(path_a);
        alloc(ch, 1 << 20);
        new_handle(ch, IDM_OP_STREAM_CREATE);
        new_handle(ch, IDM_OP_EVENT_CREATE);
        idm_chan_close(ch);
    }
    wait_channels("A", ub.channels);
    /* with pod processes usage is a snapshot published every 100 ms: one taken between two
     * cycles already shows the channel count of the end; wait for the totals too */
    struct broker_usage ua = usage("A");
    for (int i = 0; i < 500 && (ua.channels_total < ub.channels_total + 1000 ||
                                ua.mem_in_use != ub.mem_in_use); i++) {
        usleep(10000);
        ua = usage("A");
    }
    EXPECT_EQ(ua.mem_in_use, ub.mem_in_use);
    EXPECT_EQ(ua.channels_total, ub.channels_total + 1000);
    EXPECT_EQ(call(probe, IDM_OP_MEM_GET_INFO, 0, &e, sizeof e, NULL, 0, &after, sizeof after), OK);
    if (strcmp(backend, "soft") == 0)
        EXPECT_EQ(after.free_bytes, before.free_bytes);
    else if (after.free_bytes + (64ull << 20) < before.free_bytes)
        FAIL("GPU memory leaked: free %llu -> %llu", (unsigned long long)before.free_bytes,
             (unsigned long long)after.free_bytes);
    EXPECT_EQ(count_fds(), fds);
    idm_chan_close(probe);
    printf("PASS 1000 connect/disconnect cycles (fds %d, GPU free %llu -> %llu)\n", fds,
           (unsigned long long)before.free_bytes, (unsigned long long)after.free_bytes);
}

/* Loads the test kernels (PTX) on ch; returns the handle of function name. */
static uint64_t load_function(struct idm_chan *ch, const char *name)
{
    const char *path = getenv("VGPU_KERNELS_PTX") ? getenv("VGPU_KERNELS_PTX") : VGPU_KERNELS_PTX;
    FILE *f = fopen(path, "rb");
    static char ptx[1 << 20];
    size_t n = f ? fread(ptx, 1, sizeof ptx - 1, f) : 0;
    if (f == NULL || n == 0)
        FAIL("cannot read %s", path);
    fclose(f);
    ptx[n++] = 0;
    struct idm_module_load_req r = { n, 0, 0 };
    uint64_t seq;
    uint8_t *body = idm_client_begin(ch, IDM_OP_MODULE_LOAD, 0, n, &seq);
    if (body == NULL)
        FAIL("module load: begin");
    memcpy(body, &r, sizeof r);
    memcpy(body + sizeof r, ptx, n);
    if (idm_client_send(ch) < 0)
        FAIL("module load: send");
    struct idm_msg hdr;
    const struct idm_msg *m = idm_client_wait_reply(ch, seq, &hdr);
    if (m == NULL)
        FAIL("module load: no reply");
    const uint8_t *p = (const uint8_t *)m + sizeof hdr, *end = (const uint8_t *)m + hdr.len;
    struct idm_rep res;
    struct idm_module_rep mr;
    memcpy(&res, p, sizeof res);
    memcpy(&mr, p + sizeof res, sizeof mr);
    EXPECT_EQ(res.result, OK);
    p += sizeof res + sizeof mr;
    uint64_t found = 0;
    for (uint32_t i = 0; i < mr.nfunc && p + sizeof(struct idm_func_desc) <= end; i++) {
        struct idm_func_desc fd;
        memcpy(&fd, p, sizeof fd);
        p += sizeof fd;
        if (fd.namelen == strlen(name) && p + fd.namelen <= end && memcmp(p, name, fd.namelen) == 0)
            found = fd.handle;
        p += (fd.namelen + 7u) & ~7u;
        p += (size_t)fd.nparams * sizeof(struct idm_param_desc);
    }
    idm_client_release(ch, &hdr);
    if (found == 0)
        FAIL("no function %s in %s", name, path);
    return found;
}

/* Module images too big for a message come in MODULE_STAGE chunks: order, sizes and the limit
 * are checked, what one channel staged is not another's, and the function list of a module comes
 * a reply at a time (MODULE_FUNCS) with its handles checked. */
static void test_staged_modules(void)
{
    quiesce();
    struct idm_chan *a = conn(path_a), *c = conn(path_c);
    uint8_t junk[64] = "junk", mrep[64];
    struct idm_module_stage_req st = { IDM_MODULE_STAGE_MAX + 1, 0, sizeof junk, 0 };
    EXPECT_EQ(call(a, IDM_OP_MODULE_STAGE, IDM_F_SYNC, &st, sizeof st, junk, sizeof junk, NULL, 0),
              INVALID_VALUE);
    st.total = 1000;
    EXPECT_EQ(call(a, IDM_OP_MODULE_STAGE, IDM_F_SYNC, &st, sizeof st, junk, sizeof junk, NULL, 0), OK);
    st.off = 128; /* a gap: what was staged is dropped */
    EXPECT_EQ(call(a, IDM_OP_MODULE_STAGE, IDM_F_SYNC, &st, sizeof st, junk, sizeof junk, NULL, 0),
              INVALID_VALUE);
    st.off = 64;
    EXPECT_EQ(call(a, IDM_OP_MODULE_STAGE, IDM_F_SYNC, &st, sizeof st, junk, sizeof junk, NULL, 0),
              INVALID_VALUE);
    struct idm_module_load_req ml = { 1000, 1, 0 };
    EXPECT_EQ(call(a, IDM_OP_MODULE_LOAD, 0, &ml, sizeof ml, NULL, 0, mrep, sizeof mrep), INVALID_VALUE);
    st.off = 0;
    EXPECT_EQ(call(a, IDM_OP_MODULE_STAGE, IDM_F_SYNC, &st, sizeof st, junk, sizeof junk, NULL, 0), OK);
    EXPECT_EQ(call(a, IDM_OP_MODULE_LOAD, 0, &ml, sizeof ml, NULL, 0, mrep, sizeof mrep),
              INVALID_VALUE); /* 64 of 1000 bytes staged */
    st.total = 64;
    EXPECT_EQ(call(a, IDM_OP_MODULE_STAGE, IDM_F_SYNC, &st, sizeof st, junk, sizeof junk, NULL, 0), OK);
    st.off = 64; /* past the announced size */
    EXPECT_EQ(call(a, IDM_OP_MODULE_STAGE, IDM_F_SYNC, &st, sizeof st, junk, sizeof junk, NULL, 0),
              INVALID_VALUE);
    /* pod C stages a whole image; pod A cannot load it */
    st.off = 0;
    EXPECT_EQ(call(c, IDM_OP_MODULE_STAGE, IDM_F_SYNC, &st, sizeof st, junk, sizeof junk, NULL, 0), OK);
    ml.len = 64;
    EXPECT_EQ(call(a, IDM_OP_MODULE_LOAD, 0, &ml, sizeof ml, NULL, 0, mrep, sizeof mrep), INVALID_VALUE);
    ml.staged = 2;
    EXPECT_EQ(call(c, IDM_OP_MODULE_LOAD, 0, &ml, sizeof ml, NULL, 0, mrep, sizeof mrep), INVALID_VALUE);
    ml.staged = 1; /* dropped by the refused load */
    EXPECT_EQ(call(c, IDM_OP_MODULE_LOAD, 0, &ml, sizeof ml, NULL, 0, mrep, sizeof mrep), INVALID_VALUE);
    EXPECT_EQ(call(c, IDM_OP_MODULE_STAGE, IDM_F_SYNC, &st, sizeof st, junk, sizeof junk, NULL, 0), OK);
    int rc = call(c, IDM_OP_MODULE_LOAD, 0, &ml, sizeof ml, NULL, 0, mrep, sizeof mrep);
    if (rc == OK || rc == DEAD)
        FAIL("a staged junk image loaded (%d)", rc);
    /* the test kernels staged in 3 chunks load; their functions page through MODULE_FUNCS */
    const char *path = getenv("VGPU_KERNELS_PTX") ? getenv("VGPU_KERNELS_PTX") : VGPU_KERNELS_PTX;
    FILE *f = fopen(path, "rb");
    static char ptx[1 << 20];
    size_t n = f ? fread(ptx, 1, sizeof ptx - 1, f) : 0;
    if (f == NULL || n < 3)
        FAIL("cannot read %s", path);
    fclose(f);
    ptx[n++] = 0;
    size_t step = (n / 3 + 15) & ~(size_t)15;
    for (size_t off = 0; off < n; off += step) {
        struct idm_module_stage_req s3 = { n, off, n - off < step ? n - off : step, 0 };
        EXPECT_EQ(call(a, IDM_OP_MODULE_STAGE, 0, &s3, sizeof s3, ptx + off, s3.len, NULL, 0), OK);
    }
    ml.len = n;
    struct idm_module_rep mr;
    EXPECT_EQ(call(a, IDM_OP_MODULE_LOAD, 0, &ml, sizeof ml, NULL, 0, &mr, sizeof mr), OK);
    if (mr.nfunc < 2 || mr.nrep != mr.nfunc)
        FAIL("staged load: %u functions, %u in the reply", mr.nfunc, mr.nrep);
    struct idm_module_funcs_req fq = { mr.module, 1, 0 };
    struct idm_module_rep pr;
    EXPECT_EQ(call(a, IDM_OP_MODULE_FUNCS, 0, &fq, sizeof fq, NULL, 0, &pr, sizeof pr), OK);
    if (pr.module != mr.module || pr.nfunc != mr.nfunc || pr.nrep != mr.nfunc - 1)
        FAIL("MODULE_FUNCS from 1: %u of %u", pr.nrep, pr.nfunc);
    fq.first = mr.nfunc;
    EXPECT_EQ(call(a, IDM_OP_MODULE_FUNCS, 0, &fq, sizeof fq, NULL, 0, &pr, sizeof pr), OK);
    EXPECT_EQ(pr.nrep, 0);
    fq.first = mr.nfunc + 1;
    EXPECT_EQ(call(a, IDM_OP_MODULE_FUNCS, 0, &fq, sizeof fq, NULL, 0, &pr, sizeof pr), INVALID_VALUE);
    fq.first = 0;
    EXPECT_EQ(call(c, IDM_OP_MODULE_FUNCS, 0, &fq, sizeof fq, NULL, 0, &pr, sizeof pr),
              INVALID_HANDLE); /* pod A's module */
    fq.module = mr.module ^ (1ull << 40);
    EXPECT_EQ(call(a, IDM_OP_MODULE_FUNCS, 0, &fq, sizeof fq, NULL, 0, &pr, sizeof pr), INVALID_HANDLE);
    /* a chunk claiming more bytes than it carries is a protocol violation: channel closed */
    struct idm_module_stage_req lie = { 1 << 20, 0, 1 << 20, 0 };
    EXPECT_EQ(call(c, IDM_OP_MODULE_STAGE, IDM_F_SYNC, &lie, sizeof lie, junk, sizeof junk, NULL, 0), DEAD);
    EXPECT_EQ(handle_op(a, IDM_OP_MODULE_UNLOAD, mr.module), OK);
    idm_chan_close(c);
    idm_chan_close(a);
    printf("PASS staged module images (%zu bytes in 3 chunks, %u functions)\n", n, mr.nfunc);
}

/* Kernels run in the pod's own context: pod C launches a kernel that stores to pod A's pointer.
 * It must fault (soft: ILLEGAL_ADDRESS; on a GPU the MMU of C's context, unless the number happens
 * to be C's own memory in a process of its own), pod A's data must not change, and A works on. */
static void test_kernel_pointers(void)
{
    quiesce();
    struct idm_chan *a = conn(path_a), *c = conn(path_c);
    uint64_t pa = alloc(a, 4096);
    uint8_t pattern[16] = { 9, 8, 7, 6, 5, 4, 3, 2, 1 }, back[8 + sizeof pattern];
    struct idm_htod_req hr = { pa, 0, sizeof pattern, 0 };
    EXPECT_EQ(call(a, IDM_OP_HTOD, IDM_F_SYNC, &hr, sizeof hr, pattern, sizeof pattern, NULL, 0), OK);
    uint64_t f = load_function(c, "fault_kernel");
    struct idm_launch_req l = { f, 0, { 1, 1, 1 }, { 1, 1, 1 }, 0, sizeof pa };
    int rc = call(c, IDM_OP_LAUNCH, IDM_F_SYNC, &l, sizeof l, &pa, sizeof pa, NULL, 0);
    if (strcmp(backend, "soft") == 0 || rc != OK) {
        if (rc != ILLEGAL_ADDRESS && rc != LAUNCH_FAILED)
            FAIL("a kernel storing to another pod's pointer returned %d", rc);
    }
    struct idm_dtoh_req dr = { pa, 0, sizeof pattern };
    EXPECT_EQ(call(a, IDM_OP_DTOH, 0, &dr, sizeof dr, NULL, 0, back, sizeof back), OK);
    if (memcmp(back + 8, pattern, sizeof pattern) != 0)
        FAIL("pod A's memory changed by pod C's kernel");
    struct idm_dptr_req fr = { pa };
    EXPECT_EQ(call(a, IDM_OP_MEM_FREE, 0, &fr, sizeof fr, NULL, 0, NULL, 0), OK);
    idm_chan_close(c);
    idm_chan_close(a);
    printf("PASS kernel with another pod's pointer (result %d, pod A intact)\n", rc);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    backend = getenv("VGPU_TEST_BACKEND") ? getenv("VGPU_TEST_BACKEND") : "soft";
    snprintf(dir, sizeof dir, "/tmp/vgpu-attack.XXXXXX");
    if (mkdtemp(dir) == NULL)
        FAIL("mkdtemp");
    snprintf(path_a, sizeof path_a, "%s/a.sock", dir);
    snprintf(path_b, sizeof path_b, "%s/b.sock", dir);
    snprintf(path_c, sizeof path_c, "%s/c.sock", dir);
    if (strcmp(backend, "soft") == 0 && soft_kernels_register() != 0)
        FAIL("soft kernels");
    struct broker_config cfg = { .backend = backend, .workers = 2 };
    if (getenv("VGPU_TEST_POD_PROCESSES") != NULL)
        cfg.pod_processes = atoi(getenv("VGPU_TEST_POD_PROCESSES"));
    struct idm_err err = { 0 };
    if (broker_create(&cfg, &the_broker, &err) < 0 ||
        broker_pod_add(the_broker, "A", path_a, 0, 100, &err) < 0 ||
        broker_pod_add(the_broker, "B", path_b, QUOTA_B, 50, &err) < 0 ||
        broker_pod_add(the_broker, "C", path_c, 0, 100, &err) < 0)
        FAIL("broker: %s", err.msg);
    test_foreign_handles();
    test_forged_handles();
    test_pointers();
    test_sizes();
    test_staged_modules();
    test_garbage();
    test_stop_reading();
    test_killed_client();
    test_cycles();
    test_kernel_pointers();
    quiesce();
    struct broker_usage ua = usage("A"), ub = usage("B");
    EXPECT_EQ(ua.channels, 0);
    EXPECT_EQ(ub.channels, 0);
    EXPECT_EQ(ua.mem_in_use, 0);
    EXPECT_EQ(ub.mem_in_use, 0);
    broker_destroy(the_broker);
    rmdir(dir);
    printf("gpu_attack_test (%s, pod processes %d): all attacks failed to break isolation\n", backend,
           cfg.pod_processes);
    return 0;
}
