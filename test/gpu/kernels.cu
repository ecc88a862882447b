// kernels.cu: the test suite's GPU kernels. On the device machine nvcc turns this into
// kernels.ptx (see CMakeLists.txt); the committed kernels.ptx is that output. The `soft` test
// device runs host versions of the same kernels (soft_kernels.c), found by these names.
extern "C" {

__global__ void vec_add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        c[i] = a[i] + b[i];
}

#define TILE 16
__global__ void matmul_tiled(const float *A, const float *B, float *C, int n)
{
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE];
    int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
    float acc = 0.0f;
    for (int t = 0; t < (n + TILE - 1) / TILE; t++) {
        int ac = t * TILE + threadIdx.x, br = t * TILE + threadIdx.y;
        As[threadIdx.y][threadIdx.x] = (row < n && ac < n) ? A[row * n + ac] : 0.0f;
        Bs[threadIdx.y][threadIdx.x] = (br < n && col < n) ? B[br * n + col] : 0.0f;
        __syncthreads();
        for (int k = 0; k < TILE; k++)
            acc += As[threadIdx.y][k] * Bs[k][threadIdx.x];
        __syncthreads();
    }
    if (row < n && col < n)
        C[row * n + col] = acc;
}

__global__ void many_params(char c, short s, int i, long long ll, float f, double d, int *out_i,
                            double *out_d, unsigned char u8, unsigned long long u64)
{
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        out_i[0] = c;
        out_i[1] = s;
        out_i[2] = i;
        out_i[3] = (int)(ll >> 32);
        out_i[4] = (int)(ll & 0xffffffff);
        out_i[5] = u8;
        out_d[0] = f;
        out_d[1] = d;
        out_d[2] = (double)u64;
    }
}

__global__ void empty_kernel(void) {}

// Writes through a pointer the caller chose: given a bad one, the kernel faults.
__global__ void fault_kernel(int *p) { *p = 42; }

__device__ int dev_counter;
__global__ void bump_counter(int add) { atomicAdd(&dev_counter, add); }
}
