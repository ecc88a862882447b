/* bench: driver-API latency and bandwidth figures. Run once on the real libcuda.so.1 and once
 * through libvgpu.so; test/gpu/bench-compare.py prints the two side by side with ratios.
 *   bench [--quick] [--clients N]     prints "RESULT <name> <value> <unit>" lines */
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gpu_test.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int quick;
#define ITERS(n) (quick ? (n) / 20 : (n))

static void result(const char *name, double v, const char *unit)
{
    printf("RESULT %s %.4g %s\n", name, v, unit);
    fflush(stdout);
}

static double bw(CUdeviceptr d, void *h, size_t bytes, int htod)
{
    int reps = quick ? 2 : 5;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t = now_s();
        if (htod)
            CHECK(cuMemcpyHtoD(d, h, bytes));
        else
            CHECK(cuMemcpyDtoH(h, d, bytes));
        t = now_s() - t;
        double gbs = (double)bytes / t / 1e9;
        if (gbs > best)
            best = gbs;
    }
    return best;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void clients(int n)
{
    int pfd[2], gfd[2];
    EXPECT(pipe(pfd) == 0 && pipe(gfd) == 0);
    const int calls = ITERS(20000);
    for (int c = 0; c < n; c++) {
        if (fork() == 0) {
            close(pfd[0]);
            close(gfd[1]);
            test_init();
            CUdeviceptr d;
            int v = 1;
            CHECK(cuMemAlloc(&d, 4));
            CHECK(cuMemcpyHtoD(d, &v, 4));
            char go;
            EXPECT(read(gfd[0], &go, 1) == 1);
            double *lat = malloc(sizeof(double) * (size_t)calls);
            for (int i = 0; i < calls; i++) {
                double t = now_s();
                CHECK(cuMemcpyHtoD(d, &v, 4));
                lat[i] = now_s() - t;
            }
            qsort(lat, (size_t)calls, sizeof(double), cmp_double);
            double p99 = lat[(int)(calls * 0.99)];
            EXPECT(write(pfd[1], &p99, sizeof p99) == sizeof p99);
            _exit(0);
        }
    }
    close(pfd[1]);
    close(gfd[0]);
    sleep(2); /* let every client connect and warm up */
    double t = now_s();
    char go[64] = { 0 };
    EXPECT(write(gfd[1], go, (size_t)n) == n);
    double worst = 0, sum = 0;
    for (int c = 0; c < n; c++) {
        double p99;
        EXPECT(read(pfd[0], &p99, sizeof p99) == sizeof p99);
        sum += p99;
        if (p99 > worst)
            worst = p99;
    }
    t = now_s() - t;
    for (int c = 0; c < n; c++)
        wait(NULL);
    result("clients8_calls_per_s", (double)calls * n / t, "calls/s");
    result("clients8_p99_mean_us", sum / n * 1e6, "us");
    result("clients8_p99_worst_us", worst * 1e6, "us");
}

int main(int argc, char **argv)
{
    int nclients = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--clients") == 0 && i + 1 < argc)
            nclients = atoi(argv[++i]);
    }
    if (nclients > 0) {
        clients(nclients);
        return 0;
    }
    test_init();
    CUmodule mod = load_kernels(1);
    CUfunction fe;
    CHECK(cuModuleGetFunction(&fe, mod, "empty_kernel"));
    CUstream s;
    CHECK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));

    int n = ITERS(20000);
    for (int i = 0; i < 1000; i++)
        CHECK(cuCtxSynchronize());
    double t = now_s();
    for (int i = 0; i < n; i++)
        CHECK(cuCtxSynchronize());
    result("idle_ctx_sync_us", (now_s() - t) / n * 1e6, "us");

    n = ITERS(10000);
    for (int i = 0; i < 100; i++) {
        CHECK(cuLaunchKernel(fe, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL));
        CHECK(cuStreamSynchronize(s));
    }
    t = now_s();
    for (int i = 0; i < n; i++) {
        CHECK(cuLaunchKernel(fe, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL));
        CHECK(cuStreamSynchronize(s));
    }
    result("launch_sync_us", (now_s() - t) / n * 1e6, "us");

    n = ITERS(200000);
    t = now_s();
    for (int i = 0; i < n; i++)
        CHECK(cuLaunchKernel(fe, 1, 1, 1, 32, 1, 1, 0, s, NULL, NULL));
    double issue = now_s() - t;
    CHECK(cuStreamSynchronize(s));
    double total = now_s() - t;
    result("async_launch_per_s", n / total, "launches/s");
    result("async_launch_issue_per_s", n / issue, "launches/s");

    CUdeviceptr d4;
    int v = 7;
    CHECK(cuMemAlloc(&d4, 4));
    n = ITERS(20000);
    for (int i = 0; i < 100; i++)
        CHECK(cuMemcpyHtoD(d4, &v, 4));
    t = now_s();
    for (int i = 0; i < n; i++)
        CHECK(cuMemcpyHtoD(d4, &v, 4));
    result("htod_4B_us", (now_s() - t) / n * 1e6, "us");
    t = now_s();
    for (int i = 0; i < n; i++)
        CHECK(cuMemcpyDtoH(&v, d4, 4));
    result("dtoh_4B_us", (now_s() - t) / n * 1e6, "us");
    EXPECT(v == 7);

    size_t big = (quick ? 32u : 256u) << 20;
    CUdeviceptr db;
    CHECK(cuMemAlloc(&db, big));
    void *pinned, *pageable = malloc(big);
    EXPECT(pageable != NULL);
    memset(pageable, 1, big);
    CHECK(cuMemAllocHost(&pinned, big));
    memset(pinned, 1, big);
    result("htod_256MiB_pinned_GBps", bw(db, pinned, big, 1), "GB/s");
    result("htod_256MiB_pageable_GBps", bw(db, pageable, big, 1), "GB/s");
    result("dtoh_256MiB_pinned_GBps", bw(db, pinned, big, 0), "GB/s");
    result("dtoh_256MiB_pageable_GBps", bw(db, pageable, big, 0), "GB/s");
    CHECK(cuMemFreeHost(pinned));
    free(pageable);
    CHECK(cuMemFree(db));
    CHECK(cuMemFree(d4));
    CHECK(cuStreamDestroy(s));
    CHECK(cuModuleUnload(mod));
    return 0;
}
