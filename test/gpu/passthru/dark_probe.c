/* dark_probe.c: an investigation tool for the device machine, not part of the product. Calls
 * slots of the real driver's export tables with poisoned output buffers and prints what the
 * driver writes and returns, so that the shim's answers (shim/export.c) can follow the driver:
 * 263e8860 slots 2 and 3, c693336e (per-context storage) put / get / remove, cuMemFree(0),
 * and 42d85a81 slot 2 (what cuBLAS asks: (out, id, arg)) for ids 0..0x50, each in a child
 * process (a wrong guess of the arguments may crash it).
 *   dark_probe REAL_LIBCUDA */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef int (*table_fn)(const void **, const uint8_t *);

static const uint8_t ctxchk_uuid[16] = { 0x26, 0x3e, 0x88, 0x60, 0x7c, 0xd2, 0x61, 0x43,
                                         0x92, 0xf6, 0xbb, 0xd5, 0x00, 0x6d, 0xfa, 0x7e };
static const uint8_t tls_uuid[16] = { 0x42, 0xd8, 0x5a, 0x81, 0x23, 0xf6, 0xcb, 0x47,
                                      0x82, 0x98, 0xf6, 0xe7, 0x8a, 0x3a, 0xec, 0xdc };
static const uint8_t cls_uuid[16] = { 0xc6, 0x93, 0x33, 0x6e, 0x11, 0x21, 0xdf, 0x11,
                                      0xa8, 0xc3, 0x68, 0xf3, 0x55, 0xd8, 0x95, 0x93 };

struct tls_arg {
    int (*q)(void *, uint64_t, uint64_t);
    uint64_t *out;
};

static void *tls_thread(void *p)
{
    struct tls_arg *a = p;
    (void)a->q(a->out, 0, 0);
    return NULL;
}

static void dtor(void *ctx, void *key, void *value)
{
    printf("cls destructor ctx %p key %p value %p\n", ctx, key, value);
}

int main(int argc, char **argv)
{
    void *lib = dlopen(argc > 1 ? argv[1] : "libcuda.so.1", RTLD_NOW);
    if (lib == NULL)
        return 2;
    int (*cu_init)(unsigned) = (int (*)(unsigned))dlsym(lib, "cuInit");
    int (*retain)(void **, int) = (int (*)(void **, int))dlsym(lib, "cuDevicePrimaryCtxRetain");
    int (*set_cur)(void *) = (int (*)(void *))dlsym(lib, "cuCtxSetCurrent");
    int (*mem_free)(uint64_t) = (int (*)(uint64_t))dlsym(lib, "cuMemFree_v2");
    table_fn get_table = (table_fn)dlsym(lib, "cuGetExportTable");
    void *ctx = NULL;
    if (cu_init(0) != 0 || retain(&ctx, 0) != 0 || set_cur(ctx) != 0)
        return 2;
    printf("ctx %p\n", ctx);
    printf("cuMemFree(0) = %d\n", mem_free(0));

    const void *const *chk = NULL, *const *cls = NULL;
    if (get_table((const void **)&chk, ctxchk_uuid) != 0 ||
        get_table((const void **)&cls, cls_uuid) != 0)
        return 2;
    uint64_t a = 0xaaaaaaaaaaaaaaaaull, b = 0xbbbbbbbbbbbbbbbbull;
    int (*s2)(void *, void *, void *) = (int (*)(void *, void *, void *))chk[2];
    int r = s2(ctx, &a, &b);
    printf("263e8860 slot 2 (ctx, &a, &b) = %d a %#" PRIx64 " b %#" PRIx64 "\n", r, a, b);
    a = 0xaaaaaaaaaaaaaaaaull, b = 0xbbbbbbbbbbbbbbbbull;
    r = s2(NULL, &a, &b);
    printf("263e8860 slot 2 (NULL, &a, &b) = %d a %#" PRIx64 " b %#" PRIx64 "\n", r, a, b);
    int (*put)(void *, void *, void *, void *) = (int (*)(void *, void *, void *, void *))cls[0];
    int (*rem)(void *, void *) = (int (*)(void *, void *))cls[1];
    int (*get)(void **, void *, void *) = (int (*)(void **, void *, void *))cls[2];
    static int key1, value1;
    void *out = (void *)0x1234;
    r = get(&out, NULL, &key1);
    printf("cls get(missing) = %d out %p\n", r, out);
    r = put(NULL, &key1, &value1, (void *)dtor);
    printf("cls put(NULL ctx) = %d\n", r);
    out = NULL;
    r = get(&out, NULL, &key1);
    printf("cls get(NULL ctx) = %d out %p (value %p)\n", r, out, (void *)&value1);
    out = NULL;
    r = get(&out, ctx, &key1);
    printf("cls get(ctx) = %d out %p\n", r, out);
    r = rem(ctx, &key1);
    printf("cls remove(ctx, key) = %d\n", r);
    out = (void *)0x1234;
    r = get(&out, ctx, &key1);
    printf("cls get(after remove) = %d out %p\n", r, out);
    fflush(stdout);
    const void *const *tls = NULL;
    if (get_table((const void **)&tls, tls_uuid) == 0) {
        int (*q)(void *, uint64_t, uint64_t) = (int (*)(void *, uint64_t, uint64_t))tls[2];
        /* what the block it hands out holds, and whether another thread gets another one */
        uint64_t blk = 0;
        if (q(&blk, 0, 0) == 0 && blk != 0) {
            const uint64_t *w = (const uint64_t *)(uintptr_t)blk;
            printf("42d85a81 slot 2 block %#" PRIx64 ":", blk);
            for (int i = 0; i < 32; i++)
                printf(" %#" PRIx64, w[i]);
            printf("\n");
            pthread_t th;
            uint64_t other = 0;
            struct tls_arg ta = { q, &other };
            if (pthread_create(&th, NULL, tls_thread, &ta) == 0 && pthread_join(th, NULL) == 0)
                printf("42d85a81 slot 2 from another thread: %#" PRIx64 "\n", other);
        }
        /* cuBLAS's private tables, first argument the context (what slot 2 handed out) */
        static const uint8_t t21[16] = { 0x21, 0x31, 0x8c, 0x60, 0x97, 0x14, 0x32, 0x48,
                                         0x8c, 0xa6, 0x41, 0xff, 0x73, 0x24, 0xc8, 0xf2 };
        static const uint8_t t17[16] = { 0x17, 0x34, 0xdc, 0x26, 0x80, 0x0d, 0x47, 0x45,
                                         0x87, 0x26, 0xc0, 0xf1, 0xe7, 0xdd, 0x8b, 0xca };
        const void *const *tab[2] = { NULL, NULL };
        int t21ok = get_table((const void **)&tab[0], t21), t17ok = get_table((const void **)&tab[1], t17);
        printf("21318c60 rc %d size %#lx; 1734dc26 rc %d size %#lx\n", t21ok,
               tab[0] ? (unsigned long)(uintptr_t)tab[0][0] : 0ul, t17ok,
               tab[1] ? (unsigned long)(uintptr_t)tab[1][0] : 0ul);
        static const struct { int t, slot; } calls[] = { { 0, 4 }, { 0, 39 }, { 0, 51 }, { 1, 4 }, { 1, 13 } };
        for (size_t k = 0; k < sizeof calls / sizeof calls[0]; k++) {
            if (tab[calls[k].t] == NULL)
                continue;
            int (*fn)(void *, void *, void *, void *, uint64_t) =
                (int (*)(void *, void *, void *, void *, uint64_t))tab[calls[k].t][calls[k].slot];
            fflush(stdout);
            pid_t p = fork();
            if (p == 0) {
                uint64_t buf[8];
                memset(buf, 0xcc, sizeof buf);
                int rc = fn(ctx, buf, NULL, NULL, 0);
                printf("%s slot %d (ctx, buf, 0, 0, 0) = %d buf %#" PRIx64 " %#" PRIx64 " %#" PRIx64
                       " %#" PRIx64 "\n", calls[k].t ? "1734dc26" : "21318c60", calls[k].slot, rc,
                       buf[0], buf[1], buf[2], buf[3]);
                fflush(stdout);
                _exit(0);
            }
            int st = 0;
            waitpid(p, &st, 0);
            if (!WIFEXITED(st))
                printf("%s slot %d crashed (signal %d)\n", calls[k].t ? "1734dc26" : "21318c60",
                       calls[k].slot, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        }
        /* 21318c60 slot 51 as cuBLAS 13.1 calls it: (ctx, 0, out, 0, 8) */
        if (tab[0] != NULL) {
            int (*s51)(void *, uint64_t, void *, uint64_t, uint64_t) =
                (int (*)(void *, uint64_t, void *, uint64_t, uint64_t))tab[0][51];
            for (uint64_t a1 = 0; a1 <= 3; a1++) {
                fflush(stdout);
                pid_t p = fork();
                if (p == 0) {
                    uint64_t o[4];
                    memset(o, 0xcc, sizeof o);
                    int rc = s51(ctx, a1, o, 0, 8);
                    printf("21318c60 slot 51 (ctx, %" PRIu64 ", out, 0, 8) = %d out %#" PRIx64
                           " %#" PRIx64 "\n", a1, rc, o[0], o[1]);
                    /* is it one of the objects the public API hands out? */
                    int (*pool_of)(void **, int) = (int (*)(void **, int))dlsym(lib, "cuDeviceGetDefaultMemPool");
                    int (*cur_pool)(void **, int) = (int (*)(void **, int))dlsym(lib, "cuDeviceGetMemPool");
                    void *dp = NULL, *cp = NULL;
                    int r1 = pool_of ? pool_of(&dp, 0) : -1, r2 = cur_pool ? cur_pool(&cp, 0) : -1;
                    printf("  default mem pool %d %p, current mem pool %d %p\n", r1, dp, r2, cp);
                    fflush(stdout);
                    _exit(0);
                }
                int st = 0;
                waitpid(p, &st, 0);
                if (!WIFEXITED(st))
                    printf("21318c60 slot 51 (ctx, %" PRIu64 ", ...) crashed\n", a1);
            }
        }
        for (uint64_t id = 0; id <= 2; id++) {
            for (uint64_t arg = 0; arg <= 1; arg++) {
                pid_t p = fork();
                if (p == 0) {
                    uint64_t buf[8];
                    memset(buf, 0xcc, sizeof buf);
                    int rc = q(buf, id, arg);
                    printf("42d85a81 slot 2 (buf, %#" PRIx64 ", %" PRIu64 ") = %d buf %#" PRIx64
                           " %#" PRIx64 " %#" PRIx64 "\n", id, arg, rc, buf[0], buf[1], buf[2]);
                    fflush(stdout);
                    _exit(0);
                }
                int st = 0;
                waitpid(p, &st, 0);
                if (!WIFEXITED(st))
                    printf("42d85a81 slot 2 (buf, %#" PRIx64 ", %" PRIu64 ") crashed (signal %d)\n",
                           id, arg, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
            }
        }
        fflush(stdout);
    }
    uint64_t (*s3)(void *, uint64_t) = (uint64_t(*)(void *, uint64_t))chk[3];
    uint64_t big[16];
    memset(big, 0xcc, sizeof big);
    uint64_t r3 = s3(big, 0x40);
    printf("263e8860 slot 3 (buf, 0x40) = %#" PRIx64 " buf[0..3] %#" PRIx64 " %#" PRIx64
           " %#" PRIx64 " %#" PRIx64 "\n", r3, big[0], big[1], big[2], big[3]);

    return 0;
}
