// kernels2.cu: a second module for the multiple-modules test.
extern "C" __global__ void scale(float *x, float a, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] *= a;
}

// Spins each thread for `cycles` clock cycles; block 0 counts finished launches in *done.
// Used by compute_share.c to saturate the GPU with work of known length.
extern "C" __global__ void vgpu_spin(long long cycles, unsigned int *done)
{
    long long t0 = clock64();
    while (clock64() - t0 < cycles) {
    }
    __syncthreads();
    if (threadIdx.x == 0 && blockIdx.x == 0)
        atomicAdd(done, 1u);
}
