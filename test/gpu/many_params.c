/* many_params: a kernel with ten parameters of mixed sizes and alignments, passed both as
 * kernelParams and as one packed buffer (CU_LAUNCH_PARAM_BUFFER_POINTER). */
#include "gpu_test.h"

static void check(CUdeviceptr oi, CUdeviceptr od)
{
    int hi[6];
    double hd[3];
    CHECK(cuMemcpyDtoH(hi, oi, sizeof hi));
    CHECK(cuMemcpyDtoH(hd, od, sizeof hd));
    EXPECT(hi[0] == -7 && hi[1] == -1234 && hi[2] == 123456789);
    EXPECT(hi[3] == 0x01234567 && hi[4] == (int)0x89abcdef && hi[5] == 250);
    EXPECT(hd[0] == 1.5 && hd[1] == -2.25e10 && hd[2] == 18446744073709551616.0);
}

int main(void)
{
    test_init();
    CUmodule mod = load_kernels(1);
    CUfunction f;
    CHECK(cuModuleGetFunction(&f, mod, "many_params"));
    size_t offs[10], sizes[10];
    for (int i = 0; i < 10; i++) {
        CHECK(cuFuncGetParamInfo(f, (size_t)i, &offs[i], &sizes[i]));
        fprintf(stderr, "param %d: offset %zu size %zu\n", i, offs[i], sizes[i]);
    }
    EXPECT(cuFuncGetParamInfo(f, 10, &offs[0], &sizes[0]) != CUDA_SUCCESS);
    CUdeviceptr oi, od;
    CHECK(cuMemAlloc(&oi, 6 * sizeof(int)));
    CHECK(cuMemAlloc(&od, 3 * sizeof(double)));
    char c = -7;
    short s = -1234;
    int i = 123456789;
    long long ll = 0x0123456789abcdefLL;
    float fl = 1.5f;
    double d = -2.25e10;
    unsigned char u8 = 250;
    unsigned long long u64 = 0xffffffffffffffffULL;
    void *args[] = { &c, &s, &i, &ll, &fl, &d, &oi, &od, &u8, &u64 };
    CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL));
    check(oi, od);

    CHECK(cuMemsetD8(oi, 0, 6 * sizeof(int)));
    unsigned char buf[128];
    memset(buf, 0, sizeof buf);
    for (int k = 0; k < 10; k++)
        memcpy(buf + offs[k], args[k], sizes[k]);
    size_t bsize = offs[9] + sizes[9];
    void *extra[] = { CU_LAUNCH_PARAM_BUFFER_POINTER, buf, CU_LAUNCH_PARAM_BUFFER_SIZE, &bsize,
                      CU_LAUNCH_PARAM_END };
    CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, extra));
    check(oi, od);
    CHECK(cuModuleUnload(mod));
    CHECK(cuMemFree(oi));
    CHECK(cuMemFree(od));
    printf("many_params: OK\n");
    return 0;
}
