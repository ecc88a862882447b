/* compute_share: keeps the GPU busy with kernels of known length during a time window shared
 * with other instances (one per pod), and counts how many finished in the window. Run in two
 * pods with different compute shares, the counts show how the broker split GPU time.
 *   compute_share START_MS SECONDS [SPIN_CYCLES]
 * START_MS: CLOCK_REALTIME milliseconds at which the window opens (all instances get the same);
 * SPIN_CYCLES: length of one kernel in clock cycles (default 1000000: ~0.5 ms on an H100/H200;
 * on the soft TEST DEVICE one cycle is one nanosecond). Output (stdout):
 *   compute_share: kernels=<finished in window> seconds=<window> per_s=<rate> sms=<n>
 *   compute_share: OK */
#include <stdint.h>
#include <time.h>

#include "gpu_test.h"

#define BATCH 4

static double now_s(clockid_t clk)
{
    struct timespec t;
    clock_gettime(clk, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s START_MS SECONDS [SPIN_CYCLES]\n", argv[0]);
        return 2;
    }
    double start = (double)strtoll(argv[1], NULL, 10) / 1e3, secs = atof(argv[2]);
    long long cycles = argc > 3 ? atoll(argv[3]) : 1000000;
    EXPECT(secs > 0 && secs < 3600 && cycles > 0);
    test_init();
    CUdevice dev;
    int sms = 0;
    CHECK(cuCtxGetDevice(&dev));
    CHECK(cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
    CUmodule m = load_kernels(2);
    CUfunction f;
    CHECK(cuModuleGetFunction(&f, m, "vgpu_spin"));
    CUdeviceptr done;
    CHECK(cuMemAlloc(&done, sizeof(uint32_t)));
    CHECK(cuMemsetD32(done, 0, 1));
    void *params[] = { &cycles, &done };
    /* one wave that fills every SM: the GPU is busy for the whole kernel */
    unsigned grid = (unsigned)(sms > 0 ? sms : 1) * 4;

    while (now_s(CLOCK_REALTIME) < start)
        ;
    double t0 = now_s(CLOCK_MONOTONIC), end = t0 + secs;
    long launched = 0, in_window = 0;
    while (now_s(CLOCK_MONOTONIC) < end) {
        for (int i = 0; i < BATCH; i++)
            CHECK(cuLaunchKernel(f, grid, 1, 1, 128, 1, 1, 0, NULL, params, NULL));
        launched += BATCH;
        CHECK(cuCtxSynchronize());
        if (now_s(CLOCK_MONOTONIC) <= end)
            in_window += BATCH;
    }
    uint32_t counted = 0;
    CHECK(cuMemcpyDtoH(&counted, done, sizeof counted));
    EXPECT(counted == (uint32_t)launched); /* every launch ran once */
    CHECK(cuMemFree(done));
    CHECK(cuModuleUnload(m));
    printf("compute_share: kernels=%ld seconds=%.3f per_s=%.1f sms=%d\n", in_window, secs,
           (double)in_window / secs, sms);
    printf("compute_share: OK\n");
    return 0;
}
