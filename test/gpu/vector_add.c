/* vector_add: device queries, memory (pageable and pinned copies, memset, range and info
 * queries), cuGetProcAddress, and a vector add checked on the host. */
#include "gpu_test.h"

int main(void)
{
    test_init();
    int major = 0, minor = 0, sms = 0;
    CHECK(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0));
    CHECK(cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, 0));
    CHECK(cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, 0));
    fprintf(stderr, "cc %d.%d, %d SMs\n", major, minor, sms);
    EXPECT(major >= 1 && sms >= 1);

    /* cuGetProcAddress must hand out working entry points */
    CUresult (*alloc_fn)(CUdeviceptr *, size_t) = NULL;
    CUdriverProcAddressQueryResult st = -1;
    CHECK(cuGetProcAddress_v2("cuMemAlloc", (void **)&alloc_fn, 12000, 0, &st));
    EXPECT(alloc_fn != NULL && st == CU_GET_PROC_ADDRESS_SUCCESS);

    const int n = 3 << 20; /* 12 MiB per vector: several staging chunks */
    size_t bytes = (size_t)n * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    EXPECT(a && b && c);
    for (int i = 0; i < n; i++) {
        a[i] = (float)i;
        b[i] = (float)(2 * i) + 0.5f;
    }
    CUdeviceptr da, db, dc;
    CHECK(alloc_fn(&da, bytes));
    CHECK(cuMemAlloc(&db, bytes));
    CHECK(cuMemAlloc(&dc, bytes));
    size_t fr = 0, tot = 0;
    CHECK(cuMemGetInfo(&fr, &tot));
    EXPECT(tot > 0 && fr <= tot);
    CUdeviceptr base;
    size_t size;
    CHECK(cuMemGetAddressRange(&base, &size, db + 100));
    EXPECT(base == db && size >= bytes);

    CHECK(cuMemcpyHtoD(da, a, bytes));
    CHECK(cuMemcpyHtoDAsync(db, b, bytes, NULL));
    CHECK(cuMemsetD32(dc, 0xdeadbeef, (size_t)n));

    CUmodule mod = load_kernels(1);
    CUfunction f;
    CHECK(cuModuleGetFunction(&f, mod, "vec_add"));
    size_t off, psz;
    CHECK(cuFuncGetParamInfo(f, 3, &off, &psz));
    EXPECT(off == 24 && psz == 4);
    int nn = n;
    void *args[] = { &da, &db, &dc, &nn };
    CHECK(cuLaunchKernel(f, (unsigned)((n + 255) / 256), 1, 1, 256, 1, 1, 0, NULL, args, NULL));
    CHECK(cuCtxSynchronize());
    CHECK(cuMemcpyDtoH(c, dc, bytes));
    for (int i = 0; i < n; i++)
        if (c[i] != a[i] + b[i]) {
            fprintf(stderr, "mismatch at %d: %f != %f\n", i, c[i], a[i] + b[i]);
            return 1;
        }

    /* pinned host memory: zero-copy path through the shim */
    float *ph;
    CHECK(cuMemAllocHost((void **)&ph, bytes));
    CHECK(cuMemcpyDtoHAsync(ph, dc, bytes, NULL));
    CHECK(cuCtxSynchronize());
    EXPECT(memcmp(ph, c, bytes) == 0);
    for (int i = 0; i < n; i++)
        ph[i] = 1.0f;
    CHECK(cuMemcpyHtoD(da, ph, bytes));
    CHECK(cuMemcpyDtoD(db, da, bytes));
    CHECK(cuMemsetD8(dc, 0, bytes));
    CHECK(cuMemsetD16(dc, 0x3f80, 2)); /* low half of 1.0f = 0x3f800000 at bytes 2..3 */
    CHECK(cuMemcpyDtoH(c, db, 16));
    EXPECT(c[0] == 1.0f && c[3] == 1.0f);
    CHECK(cuMemFreeHost(ph));

    /* errors */
    EXPECT(cuMemFree(da + 4) != CUDA_SUCCESS);
    EXPECT(cuModuleGetFunction(&f, mod, "no_such_kernel") == CUDA_ERROR_NOT_FOUND);

    CHECK(cuModuleUnload(mod));
    CHECK(cuMemFree(da));
    CHECK(cuMemFree(db));
    CHECK(cuMemFree(dc));
    free(a);
    free(b);
    free(c);
    printf("vector_add: OK\n");
    return 0;
}
