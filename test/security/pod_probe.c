/* pod_probe: the attacker's tool that the pod attack suite (test_attacks_*.py) runs inside
 * containers started through CRI. Each mode tries one thing and prints what happened, one
 * "KEY value" line per fact, so the test asserts the concrete outcome; the tool itself judges
 * nothing except where it says so (gpu-thief, gpu-owner exit 1 when isolation broke).
 *
 *   pod_probe connect PATH...        unix connect() to each path: "CONNECT PATH OK|<errno name>"
 *   pod_probe abstract NAME...       the same for abstract socket names
 *   pod_probe hello PATH             IDM hello on a broker socket: "POD_ID <id the broker gave>"
 *   pod_probe gpu-owner PATH FLAG    allocates and fills 1 MiB, makes a stream and an event,
 *                                    prints "OWNER <ptr> <stream> <event>", waits for file FLAG,
 *                                    then checks its data and handles: "OWNER INTACT"
 *   pod_probe gpu-thief PATH PTR STREAM EVENT
 *                                    uses another pod's pointer and handles plus forged ones on
 *                                    its own channel: "THIEF HELD <checks>" or "THIEF BROKE ..."
 *   pod_probe gpu-garbage PATH SECONDS   garbage on the request ring, truncated messages, and
 *                                    connect/disconnect, in a loop: "GARBAGE <cycles>"
 *   pod_probe fork MAX               forks sleeping children until fork fails or MAX:
 *                                    "FORKED <n> <errno name>", then kills them
 *   pod_probe flood BYTES            one line of BYTES bytes (no newline until the end) on stdout
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "idm.h"

enum { OK = 0, INVALID_VALUE = 1, INVALID_HANDLE = 400, DEAD = -1 };

static const char *errno_name(int e)
{
    switch (e) {
    case 0: return "OK";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ENOTDIR: return "ENOTDIR";
    case EAGAIN: return "EAGAIN";
    case ELOOP: return "ELOOP";
    case EROFS: return "EROFS";
    default: return strerror(e);
    }
}

static int try_connect(const char *name, size_t len)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    const char *slash = len > 0 && name[0] != '\0' ? strrchr(name, '/') : NULL;
    if (len >= sizeof a.sun_path && slash != NULL) {
        /* too long for sun_path: connect relative to the directory (cd there first) */
        char dir[4096];
        if ((size_t)(slash - name) >= sizeof dir)
            return ENAMETOOLONG;
        memcpy(dir, name, (size_t)(slash - name));
        dir[slash - name] = '\0';
        if (chdir(dir[0] ? dir : "/") < 0)
            return errno;
        int e = try_connect(slash + 1, strlen(slash + 1));
        if (chdir("/") < 0)
            return errno;
        return e;
    }
    if (len >= sizeof a.sun_path)
        return ENAMETOOLONG;
    memcpy(a.sun_path, name, len);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int r = connect(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
    int e = r < 0 ? errno : 0;
    close(fd);
    return e;
}

/* One request on a raw channel; the CUresult, or DEAD. rep gets rep_size bytes of the reply body. */
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
    size_t avail = hdr.len - sizeof hdr - sizeof r;
    if (rep)
        memcpy(rep, (const uint8_t *)m + sizeof hdr + sizeof r, rep_size < avail ? rep_size : avail);
    idm_client_release(ch, &hdr);
    return r.result;
}

static struct idm_chan *open_chan(const char *path, bool hello)
{
    struct idm_chan *ch;
    struct idm_err err = { 0 };
    if (idm_local_connect(path, &ch, &err) < 0) {
        printf("CONNECT_FAILED %s\n", err.msg);
        exit(2);
    }
    if (hello) {
        struct idm_hello_req h = { IDM_PROTO_VERSION, (uint32_t)getpid() };
        struct idm_hello_rep hr;
        if (call(ch, IDM_OP_HELLO, 0, &h, sizeof h, NULL, 0, &hr, sizeof hr) != OK) {
            printf("HELLO_FAILED\n");
            exit(2);
        }
    }
    return ch;
}

static int htod(struct idm_chan *ch, uint64_t dst, const void *data, size_t len)
{
    struct idm_htod_req r = { dst, 0, len, 0 };
    return call(ch, IDM_OP_HTOD, IDM_F_SYNC, &r, sizeof r, data, len, NULL, 0);
}

static int dtoh(struct idm_chan *ch, uint64_t src, void *out, size_t len)
{
    struct idm_dtoh_req r = { src, 0, len };
    uint8_t rep[8 + 4096];
    if (len > 4096)
        return DEAD;
    int rc = call(ch, IDM_OP_DTOH, 0, &r, sizeof r, NULL, 0, rep, 8 + len);
    if (rc == OK && out)
        memcpy(out, rep + 8, len);
    return rc;
}

static uint64_t new_handle(struct idm_chan *ch, uint16_t op)
{
    struct idm_stream_create_req r = { 0, 0 };
    struct idm_handle_rep rep = { 0 };
    if (call(ch, op, 0, &r, sizeof r, NULL, 0, &rep, sizeof rep) != OK) {
        printf("HANDLE_FAILED %u\n", op);
        exit(2);
    }
    return rep.handle;
}

static int handle_op(struct idm_chan *ch, uint16_t op, uint64_t h)
{
    struct idm_handle_req r = { h };
    return call(ch, op, 0, &r, sizeof r, NULL, 0, NULL, 0);
}

#define OWNER_BYTES 4096u

static int gpu_owner(const char *path, const char *flag)
{
    struct idm_chan *ch = open_chan(path, true);
    struct idm_mem_alloc_req ar = { 1u << 20 };
    struct idm_mem_alloc_rep arep = { 0 };
    if (call(ch, IDM_OP_MEM_ALLOC, 0, &ar, sizeof ar, NULL, 0, &arep, sizeof arep) != OK)
        return printf("OWNER ALLOC_FAILED\n"), 1;
    uint8_t pattern[OWNER_BYTES], back[OWNER_BYTES];
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (uint8_t)(i * 7 + 3);
    if (htod(ch, arep.dptr, pattern, sizeof pattern) != OK)
        return printf("OWNER HTOD_FAILED\n"), 1;
    uint64_t hs = new_handle(ch, IDM_OP_STREAM_CREATE), he = new_handle(ch, IDM_OP_EVENT_CREATE);
    printf("OWNER 0x%llx 0x%llx 0x%llx\n", (unsigned long long)arep.dptr, (unsigned long long)hs,
           (unsigned long long)he);
    fflush(stdout);
    for (int i = 0; i < 6000 && access(flag, F_OK) != 0; i++)
        usleep(50000);
    int rc = dtoh(ch, arep.dptr, back, sizeof back);
    if (rc != OK || memcmp(back, pattern, sizeof back) != 0)
        return printf("OWNER DATA_CHANGED rc=%d\n", rc), 1;
    if (handle_op(ch, IDM_OP_STREAM_SYNC, hs) != OK || handle_op(ch, IDM_OP_EVENT_DESTROY, he) != OK ||
        handle_op(ch, IDM_OP_STREAM_DESTROY, hs) != OK)
        return printf("OWNER HANDLES_LOST\n"), 1;
    struct idm_dptr_req f = { arep.dptr };
    if (call(ch, IDM_OP_MEM_FREE, 0, &f, sizeof f, NULL, 0, NULL, 0) != OK)
        return printf("OWNER FREE_FAILED\n"), 1;
    printf("OWNER INTACT\n");
    idm_chan_close(ch);
    return 0;
}

static int checks, broken;

static void expect(int got, int want, const char *what, unsigned long long value)
{
    checks++;
    if (got != want) {
        broken++;
        printf("THIEF BROKE %s 0x%llx: result %d, expected %d\n", what, value, got, want);
    }
}

static int gpu_thief(const char *path, uint64_t ptr, uint64_t hs, uint64_t he)
{
    struct idm_chan *ch = open_chan(path, true);
    uint8_t buf[64] = { 0x41 };
    /* the other pod's pointer, and addresses around it */
    uint64_t ptrs[] = { ptr, ptr + 16, ptr + 4095, ptr - 1, 0, 16 };
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) {
        uint64_t p = ptrs[i];
        expect(htod(ch, p, buf, 16), INVALID_VALUE, "htod", p);
        expect(dtoh(ch, p, NULL, 16), INVALID_VALUE, "dtoh", p);
        struct idm_memset_req ms = { p & ~3ull, 4, 0, 0x41414141, 4 };
        expect(call(ch, IDM_OP_MEMSET, IDM_F_SYNC, &ms, sizeof ms, NULL, 0, NULL, 0), INVALID_VALUE, "memset", p);
        struct idm_dptr_req f = { p };
        expect(call(ch, IDM_OP_MEM_FREE, 0, &f, sizeof f, NULL, 0, NULL, 0), INVALID_VALUE, "free", p);
    }
    struct idm_dtod_req dd = { ptr, ptr + 64, 16, 0 };
    expect(call(ch, IDM_OP_DTOD, IDM_F_SYNC, &dd, sizeof dd, NULL, 0, NULL, 0), INVALID_VALUE, "dtod", ptr);
    /* Each pod has its own device address space (its own context): an allocation of this pod may
     * get the very same number as the other pod's pointer, and then it is this pod's memory. The
     * owner checks afterwards that its data did not change. */
    struct idm_mem_alloc_req ar = { 4096 };
    struct idm_mem_alloc_rep own = { 0 };
    expect(call(ch, IDM_OP_MEM_ALLOC, 0, &ar, sizeof ar, NULL, 0, &own, sizeof own), OK, "own alloc", 0);
    memset(buf, 0x41, sizeof buf);
    expect(htod(ch, own.dptr, buf, sizeof buf), OK, "own htod", own.dptr);
    printf("THIEF OWN 0x%llx\n", (unsigned long long)own.dptr);
    /* the other pod's handles and forged ones */
    uint64_t mine = new_handle(ch, IDM_OP_STREAM_CREATE);
    uint64_t handles[] = { hs, he, hs + 1, he ^ 1, mine ^ (1ull << 48), mine + (1ull << 32), 1, 0x4141414141414141ull };
    for (size_t i = 0; i < sizeof handles / sizeof handles[0]; i++) {
        uint64_t h = handles[i];
        expect(handle_op(ch, IDM_OP_STREAM_SYNC, h), INVALID_HANDLE, "stream sync", h);
        expect(handle_op(ch, IDM_OP_STREAM_DESTROY, h), INVALID_HANDLE, "stream destroy", h);
        expect(handle_op(ch, IDM_OP_EVENT_SYNC, h), INVALID_HANDLE, "event sync", h);
        expect(handle_op(ch, IDM_OP_EVENT_DESTROY, h), INVALID_HANDLE, "event destroy", h);
        expect(handle_op(ch, IDM_OP_MODULE_UNLOAD, h), INVALID_HANDLE, "module unload", h);
        struct idm_launch_req l = { h, 0, { 1, 1, 1 }, { 1, 1, 1 }, 0, 0 };
        expect(call(ch, IDM_OP_LAUNCH, IDM_F_SYNC, &l, sizeof l, NULL, 0, NULL, 0), INVALID_HANDLE, "launch", h);
    }
    expect(handle_op(ch, IDM_OP_STREAM_DESTROY, mine), OK, "own stream", mine);
    idm_chan_close(ch);
    printf("THIEF %s %d\n", broken ? "BROKE" : "HELD", checks);
    return broken ? 1 : 0;
}

static bool closed_by_broker(struct idm_chan *ch)
{
    struct pollfd p = { .fd = ch->sock_fd, .events = POLLRDHUP };
    return poll(&p, 1, 5000) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

static void raw_publish(struct idm_chan *ch, const void *bytes, size_t n, uint64_t advance)
{
    struct idm_ring *r = &ch->tx;
    memcpy(r->data + (r->pos & (r->size - 1)), bytes, n);
    r->pos += advance;
    atomic_store(&r->ctl->head, r->pos);
    uint64_t one = 1;
    if (write(ch->efd_notify, &one, sizeof one) < 0)
        perror("doorbell");
}

static int gpu_garbage(const char *path, int seconds)
{
    static uint8_t junk[65536];
    unsigned seed = (unsigned)getpid();
    time_t end = time(NULL) + seconds;
    long cycles = 0, kept = 0;
    while (time(NULL) < end) {
        for (size_t i = 0; i < sizeof junk; i++)
            junk[i] = (uint8_t)rand_r(&seed);
        struct idm_chan *ch = open_chan(path, cycles % 2 == 0);
        switch (cycles % 4) {
        case 0: /* random bytes after the hello */
            raw_publish(ch, junk, sizeof junk, sizeof junk);
            break;
        case 1: { /* a truncated header before the hello */
            struct idm_msg m = { 4096, IDM_OP_MEM_ALLOC, 0, 1 };
            raw_publish(ch, &m, sizeof m, 32);
            break;
        }
        case 2: /* a producer index far beyond the ring */
            raw_publish(ch, junk, 0, 5 * ch->tx.size + 48);
            break;
        default: /* connect and leave without a word */
            break;
        }
        if (cycles % 4 != 3 && !closed_by_broker(ch))
            kept++;
        idm_chan_close(ch);
        cycles++;
    }
    printf("GARBAGE %ld kept_open %ld\n", cycles, kept);
    return 0;
}

static int fork_until(long max)
{
    pid_t *kids = calloc((size_t)max, sizeof *kids);
    long n = 0;
    int e = 0;
    if (kids == NULL)
        return 2;
    while (n < max) {
        pid_t p = fork();
        if (p < 0) {
            e = errno;
            break;
        }
        if (p == 0) {
            pause();
            _exit(0);
        }
        kids[n++] = p;
    }
    printf("FORKED %ld %s\n", n, errno_name(e));
    fflush(stdout);
    sleep(2);
    for (long i = 0; i < n; i++)
        kill(kids[i], SIGKILL);
    for (long i = 0; i < n; i++)
        waitpid(kids[i], NULL, 0);
    printf("REAPED %ld\n", n);
    return 0;
}

static int flood(unsigned long long bytes)
{
    static char chunk[1 << 16];
    memset(chunk, 'a', sizeof chunk);
    while (bytes > 0) {
        size_t n = bytes < sizeof chunk ? (size_t)bytes : sizeof chunk;
        ssize_t w = write(1, chunk, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return 1;
        bytes -= (unsigned long long)w;
    }
    return write(1, "\nFLOOD DONE\n", 12) == 12 ? 0 : 1;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    idm_set_log_fn(NULL);
    if (argc >= 3 && strcmp(argv[1], "connect") == 0) {
        for (int i = 2; i < argc; i++)
            printf("CONNECT %s %s\n", argv[i], errno_name(try_connect(argv[i], strlen(argv[i]))));
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "abstract") == 0) {
        for (int i = 2; i < argc; i++) {
            char name[108] = { 0 };
            size_t len = strlen(argv[i]);
            if (len + 1 > sizeof name)
                return 2;
            memcpy(name + 1, argv[i], len);
            printf("ABSTRACT %s %s\n", argv[i], errno_name(try_connect(name, len + 1)));
        }
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "hello") == 0) {
        struct idm_chan *ch = open_chan(argv[2], true);
        printf("POD_ID %s\n", ch->hello.pod_id);
        idm_chan_close(ch);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "gpu-owner") == 0)
        return gpu_owner(argv[2], argv[3]);
    if (argc == 6 && strcmp(argv[1], "gpu-thief") == 0)
        return gpu_thief(argv[2], strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0),
                         strtoull(argv[5], NULL, 0));
    if (argc == 4 && strcmp(argv[1], "gpu-garbage") == 0)
        return gpu_garbage(argv[2], atoi(argv[3]));
    if (argc == 3 && strcmp(argv[1], "fork") == 0)
        return fork_until(atol(argv[2]));
    if (argc == 3 && strcmp(argv[1], "flood") == 0)
        return flood(strtoull(argv[2], NULL, 0));
    fprintf(stderr, "usage: see the header of pod_probe.c\n");
    return 2;
}
