/* two_threads: two threads, each with its own stream, launching and checking work at once. */
#include <pthread.h>

#include "gpu_test.h"

static CUcontext ctx;
static CUfunction fn_add;

static void *run(void *arg)
{
    int id = (int)(long)arg;
    CHECK(cuCtxSetCurrent(ctx));
    const int n = 1 << 18;
    size_t bytes = (size_t)n * sizeof(float);
    float *a = malloc(bytes), *c = malloc(bytes);
    EXPECT(a && c);
    CUstream s;
    CHECK(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    CUdeviceptr da, dc;
    CHECK(cuMemAlloc(&da, bytes));
    CHECK(cuMemAlloc(&dc, bytes));
    for (int iter = 0; iter < 20; iter++) {
        for (int i = 0; i < n; i++)
            a[i] = (float)(i % 1000 + id * 10000 + iter);
        CHECK(cuMemcpyHtoDAsync(da, a, bytes, s));
        int nn = n;
        void *args[] = { &da, &da, &dc, &nn };
        CHECK(cuLaunchKernel(fn_add, (unsigned)(n / 256), 1, 1, 256, 1, 1, 0, s, args, NULL));
        CHECK(cuMemcpyDtoHAsync(c, dc, bytes, s));
        CHECK(cuStreamSynchronize(s));
        for (int i = 0; i < n; i++)
            if (c[i] != 2 * a[i]) {
                fprintf(stderr, "thread %d iter %d mismatch at %d\n", id, iter, i);
                exit(1);
            }
    }
    CHECK(cuMemFree(da));
    CHECK(cuMemFree(dc));
    CHECK(cuStreamDestroy(s));
    free(a);
    free(c);
    return NULL;
}

int main(void)
{
    ctx = test_init();
    CUmodule mod = load_kernels(1);
    CHECK(cuModuleGetFunction(&fn_add, mod, "vec_add"));
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        EXPECT(pthread_create(&t[i], NULL, run, (void *)i) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK(cuModuleUnload(mod));
    printf("two_threads: OK\n");
    return 0;
}
