// rt_vector_add: vector add with the CUDA runtime API (cudaMalloc, cudaMemcpy, <<<>>>).
#include <vector>
#include "rt_check.h"

__global__ void add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        c[i] = a[i] + b[i];
}

int main()
{
    const int n = 1 << 22;
    std::vector<float> a(n), b(n), c(n);
    for (int i = 0; i < n; i++) {
        a[i] = (float)i;
        b[i] = 2.0f * (float)i;
    }
    float *da, *db, *dc;
    RT_CHECK(cudaMalloc(&da, n * sizeof(float)));
    RT_CHECK(cudaMalloc(&db, n * sizeof(float)));
    RT_CHECK(cudaMalloc(&dc, n * sizeof(float)));
    RT_CHECK(cudaMemcpy(da, a.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    RT_CHECK(cudaMemcpy(db, b.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    add<<<(n + 255) / 256, 256>>>(da, db, dc, n);
    RT_CHECK(cudaGetLastError());
    RT_CHECK(cudaMemcpy(c.data(), dc, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        RT_EXPECT(c[i] == 3.0f * (float)i);
    RT_CHECK(cudaFree(da));
    RT_CHECK(cudaFree(db));
    RT_CHECK(cudaFree(dc));
    printf("rt_vector_add: OK\n");
    return 0;
}
