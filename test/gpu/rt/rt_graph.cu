// rt_graph: a CUDA graph captured from a stream (memset + two kernels + a copy back), instantiated
// once and replayed 20 times.
#include <vector>
#include "rt_check.h"

__global__ void inc(float *x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += 1.0f;
}
__global__ void twice(float *x, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] *= 2.0f;
}

int main()
{
    const int n = 1 << 16;
    float *d, *h;
    RT_CHECK(cudaMalloc(&d, n * sizeof(float)));
    RT_CHECK(cudaMallocHost(&h, n * sizeof(float)));
    cudaStream_t s;
    RT_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaGraph_t g;
    cudaGraphExec_t ge;
    RT_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    RT_CHECK(cudaMemsetAsync(d, 0, n * sizeof(float), s));
    inc<<<n / 256, 256, 0, s>>>(d, n);
    twice<<<n / 256, 256, 0, s>>>(d, n);
    RT_CHECK(cudaMemcpyAsync(h, d, n * sizeof(float), cudaMemcpyDeviceToHost, s));
    RT_CHECK(cudaStreamEndCapture(s, &g));
    size_t nodes = 0;
    RT_CHECK(cudaGraphGetNodes(g, nullptr, &nodes));
    RT_EXPECT(nodes == 4);
    RT_CHECK(cudaGraphInstantiate(&ge, g, 0));
    for (int r = 0; r < 20; r++) {
        h[r] = -1.0f;
        RT_CHECK(cudaGraphLaunch(ge, s));
        RT_CHECK(cudaStreamSynchronize(s));
        for (int i = 0; i < n; i++)
            RT_EXPECT(h[i] == 2.0f);
    }
    RT_CHECK(cudaGraphExecDestroy(ge));
    RT_CHECK(cudaGraphDestroy(g));
    RT_CHECK(cudaStreamDestroy(s));
    RT_CHECK(cudaFree(d));
    RT_CHECK(cudaFreeHost(h));
    printf("rt_graph: OK (%zu nodes, 20 replays)\n", nodes);
    return 0;
}
