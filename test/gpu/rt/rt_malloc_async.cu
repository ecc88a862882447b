// rt_malloc_async: stream-ordered allocation (cudaMallocAsync / cudaFreeAsync, the default pool
// with a release threshold), a memset and a kernel on the same stream.
#include <vector>
#include "rt_check.h"

__global__ void iota(int *x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += i;
}

int main()
{
    const int n = 1 << 20;
    cudaStream_t s;
    RT_CHECK(cudaStreamCreate(&s));
    cudaMemPool_t pool;
    RT_CHECK(cudaDeviceGetDefaultMemPool(&pool, 0));
    unsigned long long thr = 64ull << 20;
    RT_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &thr));
    std::vector<int> h(n);
    for (int round = 0; round < 10; round++) {
        int *d;
        RT_CHECK(cudaMallocAsync(&d, n * sizeof(int), s));
        RT_CHECK(cudaMemsetAsync(d, 0, n * sizeof(int), s));
        iota<<<(n + 255) / 256, 256, 0, s>>>(d, n);
        RT_CHECK(cudaGetLastError());
        RT_CHECK(cudaMemcpyAsync(h.data(), d, n * sizeof(int), cudaMemcpyDeviceToHost, s));
        RT_CHECK(cudaFreeAsync(d, s));
        RT_CHECK(cudaStreamSynchronize(s));
        for (int i = 0; i < n; i++)
            RT_EXPECT(h[i] == i);
    }
    RT_CHECK(cudaStreamDestroy(s));
    printf("rt_malloc_async: OK\n");
    return 0;
}
