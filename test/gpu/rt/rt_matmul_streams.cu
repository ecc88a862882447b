// rt_matmul_streams: a tiled matmul split over two streams with events and timing (runtime API),
// checked against a CPU reference.
#include <cmath>
#include <cstring>
#include <vector>
#include "rt_check.h"

#define T 16
__global__ void matmul(const float *a, const float *b, float *c, int n, int row0)
{
    __shared__ float ta[T][T], tb[T][T];
    int r = row0 + blockIdx.y * T + threadIdx.y, col = blockIdx.x * T + threadIdx.x;
    float acc = 0;
    for (int k0 = 0; k0 < n; k0 += T) {
        ta[threadIdx.y][threadIdx.x] = a[r * n + k0 + threadIdx.x];
        tb[threadIdx.y][threadIdx.x] = b[(k0 + threadIdx.y) * n + col];
        __syncthreads();
        for (int k = 0; k < T; k++)
            acc += ta[threadIdx.y][k] * tb[k][threadIdx.x];
        __syncthreads();
    }
    c[r * n + col] = acc;
}

int main()
{
    const int n = 512, half = n / 2;
    std::vector<float> a(n * n), b(n * n), c(n * n), ref(n * n);
    for (int i = 0; i < n * n; i++) {
        a[i] = (float)((i * 7) % 13) / 13.0f;
        b[i] = (float)((i * 5) % 11) / 11.0f;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++)
                s += (double)a[i * n + k] * b[k * n + j];
            ref[i * n + j] = (float)s;
        }
    float *ha, *hc, *da, *db, *dc;
    RT_CHECK(cudaMallocHost(&ha, n * n * sizeof(float)));
    RT_CHECK(cudaMallocHost(&hc, n * n * sizeof(float)));
    memcpy(ha, a.data(), n * n * sizeof(float));
    RT_CHECK(cudaMalloc(&da, n * n * sizeof(float)));
    RT_CHECK(cudaMalloc(&db, n * n * sizeof(float)));
    RT_CHECK(cudaMalloc(&dc, n * n * sizeof(float)));
    cudaStream_t s[2];
    cudaEvent_t start, stop, b_ready;
    int lo, hi;
    RT_CHECK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
    RT_CHECK(cudaStreamCreateWithPriority(&s[0], cudaStreamNonBlocking, hi));
    RT_CHECK(cudaStreamCreateWithFlags(&s[1], cudaStreamNonBlocking));
    RT_CHECK(cudaEventCreate(&start));
    RT_CHECK(cudaEventCreate(&stop));
    RT_CHECK(cudaEventCreateWithFlags(&b_ready, cudaEventDisableTiming));
    RT_CHECK(cudaEventRecord(start, s[0]));
    RT_CHECK(cudaMemcpyAsync(db, b.data(), n * n * sizeof(float), cudaMemcpyHostToDevice, s[0]));
    RT_CHECK(cudaEventRecord(b_ready, s[0]));
    RT_CHECK(cudaStreamWaitEvent(s[1], b_ready, 0));
    for (int h = 0; h < 2; h++) {
        size_t off = (size_t)h * half * n;
        RT_CHECK(cudaMemcpyAsync(da + off, ha + off, half * n * sizeof(float), cudaMemcpyHostToDevice, s[h]));
        matmul<<<dim3(n / T, half / T), dim3(T, T), 0, s[h]>>>(da, db, dc, n, h * half);
        RT_CHECK(cudaGetLastError());
        RT_CHECK(cudaMemcpyAsync(hc + off, dc + off, half * n * sizeof(float), cudaMemcpyDeviceToHost, s[h]));
    }
    RT_CHECK(cudaStreamSynchronize(s[1]));
    RT_CHECK(cudaEventRecord(stop, s[0]));
    RT_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    RT_CHECK(cudaEventElapsedTime(&ms, start, stop));
    for (int i = 0; i < n * n; i++)
        RT_EXPECT(fabsf(hc[i] - ref[i]) <= 1e-3f * fmaxf(1.0f, fabsf(ref[i])));
    for (int h = 0; h < 2; h++)
        RT_CHECK(cudaStreamDestroy(s[h]));
    RT_CHECK(cudaEventDestroy(start));
    RT_CHECK(cudaEventDestroy(stop));
    RT_CHECK(cudaEventDestroy(b_ready));
    RT_CHECK(cudaFree(da));
    RT_CHECK(cudaFree(db));
    RT_CHECK(cudaFree(dc));
    RT_CHECK(cudaFreeHost(ha));
    RT_CHECK(cudaFreeHost(hc));
    printf("rt_matmul_streams: OK (%.3f ms)\n", ms);
    return 0;
}
