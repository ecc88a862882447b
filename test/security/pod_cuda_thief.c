/* pod_cuda_thief: a CUDA driver-API program (through libvgpu.so in a GPU pod) that aims at another
 * pod's device pointer: copies to and from it, a free, and a kernel (vec_add) that reads it
 * (vec_add, "read") or writes it (fault_kernel, "write"). Every attempt must fail; a kernel touching the pointer must
 * end in CUDA_ERROR_ILLEGAL_ADDRESS. Prints "CUDA_THIEF HELD <mode>" or "CUDA_THIEF BROKE ...".
 * Usage: pod_cuda_thief PTR read|write   (kernels from $VGPU_KERNELS_PTX) */
#include <stdbool.h>

#include "gpu_test.h"

static int broken;

static void expect_fail(CUresult r, const char *what)
{
    if (r == CUDA_SUCCESS) {
        broken++;
        printf("CUDA_THIEF BROKE %s succeeded\n", what);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    CUdeviceptr foreign = (CUdeviceptr)strtoull(argv[1], NULL, 0);
    bool write_mode = strcmp(argv[2], "write") == 0;
    test_init();
    unsigned char buf[256];
    memset(buf, 0x5a, sizeof buf);
    expect_fail(cuMemcpyHtoD(foreign, buf, sizeof buf), "cuMemcpyHtoD");
    expect_fail(cuMemcpyDtoH(buf, foreign, sizeof buf), "cuMemcpyDtoH");
    expect_fail(cuMemsetD8(foreign, 0x5a, sizeof buf), "cuMemsetD8");
    CUdeviceptr base = 0;
    size_t size = 0;
    expect_fail(cuMemGetAddressRange(&base, &size, foreign), "cuMemGetAddressRange");
    CUmodule mod = load_kernels(1);
    CUfunction f;
    CHECK(cuModuleGetFunction(&f, mod, write_mode ? "fault_kernel" : "vec_add"));
    const int n = 256;
    expect_fail(cuMemcpyDtoD(foreign + 256, foreign, 64), "cuMemcpyDtoD");
    expect_fail(cuMemFree(foreign), "cuMemFree");
    /* No allocation of this pod before the kernel: each pod has its own device address space, so
     * one of its own could get the same number (and then be its own memory). */
    int nn = n;
    CUdeviceptr src = foreign;
    void *args_read[] = { &src, &src, &src, &nn }; /* vec_add: reads (and writes) the other pod's memory */
    void *args_write[] = { &src };                 /* fault_kernel: stores to its argument */
    CUresult r = cuLaunchKernel(f, 1, 1, 1, 256, 1, 1, 0, NULL, write_mode ? args_write : args_read, NULL);
    if (r == CUDA_SUCCESS)
        r = cuCtxSynchronize();
    printf("CUDA_THIEF kernel %s -> %d\n", argv[2], (int)r);
    if (r != CUDA_ERROR_ILLEGAL_ADDRESS && r != CUDA_ERROR_LAUNCH_FAILED) {
        broken++;
        printf("CUDA_THIEF BROKE kernel %s of the foreign pointer returned %d\n", argv[2], (int)r);
    }
    if (!broken)
        printf("CUDA_THIEF HELD %s\n", argv[2]);
    return broken ? 1 : 0;
}
