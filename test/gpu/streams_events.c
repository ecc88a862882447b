/* streams_events: streams (flags, priority, query, sync, wait on event, destroy), events
 * (record, query, sync, elapsed time, destroy), the CUDA 12 library API, cuLaunchKernelEx,
 * a second module, and a module global. */
#include "gpu_test.h"

int main(void)
{
    test_init();
    const int n = 1 << 16;
    size_t bytes = (size_t)n * sizeof(float);
    float *h = malloc(bytes);
    EXPECT(h != NULL);
    for (int i = 0; i < n; i++)
        h[i] = (float)i;
    CUstream s1, s2;
    CHECK(cuStreamCreate(&s1, CU_STREAM_NON_BLOCKING));
    CHECK(cuStreamCreateWithPriority(&s2, CU_STREAM_DEFAULT, 0));
    CUevent e0, e1, done1;
    CHECK(cuEventCreate(&e0, CU_EVENT_DEFAULT));
    CHECK(cuEventCreate(&e1, CU_EVENT_DEFAULT));
    CHECK(cuEventCreate(&done1, CU_EVENT_DISABLE_TIMING));

    /* library API for module 1, classic module API for module 2 */
    char *ptx1 = read_file(kernels_path(1)), *ptx2 = read_file(kernels_path(2));
    CUlibrary lib;
    CUkernel kadd;
    CUfunction fadd, fscale;
    CUmodule m2;
    CHECK(cuLibraryLoadData(&lib, ptx1, NULL, NULL, 0, NULL, NULL, 0));
    CHECK(cuLibraryGetKernel(&kadd, lib, "vec_add"));
    CHECK(cuKernelGetFunction(&fadd, kadd));
    CHECK(cuModuleLoadDataEx(&m2, ptx2, 0, NULL, NULL));
    CHECK(cuModuleGetFunction(&fscale, m2, "scale"));

    CUdeviceptr x, y, z;
    CHECK(cuMemAlloc(&x, bytes));
    CHECK(cuMemAlloc(&y, bytes));
    CHECK(cuMemAlloc(&z, bytes));
    CHECK(cuEventRecord(e0, s1));
    CHECK(cuMemcpyHtoDAsync(x, h, bytes, s1));
    CHECK(cuMemcpyHtoDAsync(y, h, bytes, s1));
    float two = 2.0f;
    int nn = n;
    void *sargs[] = { &x, &two, &nn };
    CHECK(cuLaunchKernel(fscale, (unsigned)(n / 256), 1, 1, 256, 1, 1, 0, s1, sargs, NULL));
    CHECK(cuEventRecord(done1, s1));
    /* s2 waits for s1's work, then z = x + y = 3 h */
    CHECK(cuStreamWaitEvent(s2, done1, 0));
    void *aargs[] = { &x, &y, &z, &nn };
    CUlaunchConfig cfg = { (unsigned)(n / 256), 1, 1, 256, 1, 1, 0, s2, NULL, 0 };
    CHECK(cuLaunchKernelEx(&cfg, fadd, aargs, NULL));
    CHECK(cuEventRecord(e1, s2));
    CHECK(cuStreamSynchronize(s2));
    CHECK(cuEventSynchronize(e1));
    CHECK(cuEventQuery(e1));
    CHECK(cuStreamQuery(s1));
    float ms = -1;
    CHECK(cuEventElapsedTime(&ms, e0, e1));
    fprintf(stderr, "elapsed %.3f ms\n", ms);
    EXPECT(ms >= 0);
    EXPECT(cuEventElapsedTime(&ms, e0, done1) != CUDA_SUCCESS); /* no timing on done1 */
    float *out = malloc(bytes);
    EXPECT(out != NULL);
    CHECK(cuMemcpyDtoHAsync(out, z, bytes, s2));
    CHECK(cuStreamSynchronize(s2));
    for (int i = 0; i < n; i++)
        if (out[i] != 3.0f * h[i]) {
            fprintf(stderr, "mismatch at %d: %f\n", i, out[i]);
            return 1;
        }

    /* a module global (not offered by the soft test device) */
    CUmodule m1;
    CHECK(cuLibraryGetModule(&m1, lib));
    CUdeviceptr g;
    size_t gsize;
    CUresult gr = cuModuleGetGlobal(&g, &gsize, m1, "dev_counter");
    if (gr == CUDA_SUCCESS) {
        EXPECT(gsize == sizeof(int));
        CHECK(cuMemsetD32(g, 5, 1));
        int v = 0;
        CHECK(cuMemcpyDtoH(&v, g, sizeof v));
        EXPECT(v == 5);
    } else {
        fprintf(stderr, "module globals not available (CUresult %d): soft device?\n", gr);
    }

    CHECK(cuEventDestroy(e0));
    CHECK(cuEventDestroy(e1));
    CHECK(cuEventDestroy(done1));
    CHECK(cuStreamDestroy(s1));
    CHECK(cuStreamDestroy(s2));
    CHECK(cuLibraryUnload(lib));
    CHECK(cuModuleUnload(m2));
    CHECK(cuMemFree(x));
    CHECK(cuMemFree(y));
    CHECK(cuMemFree(z));
    free(h);
    free(out);
    free(ptx1);
    free(ptx2);
    printf("streams_events: OK\n");
    return 0;
}
