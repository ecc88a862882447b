/* matmul: a tiled matrix product on the device, checked against a CPU reference. */
#include "gpu_test.h"

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 256;
    test_init();
    size_t bytes = (size_t)n * n * sizeof(float);
    float *A = malloc(bytes), *B = malloc(bytes), *C = malloc(bytes), *R = malloc(bytes);
    EXPECT(A && B && C && R);
    srand(42);
    for (int i = 0; i < n * n; i++) {
        A[i] = (float)(rand() % 17 - 8) / 8.0f;
        B[i] = (float)(rand() % 13 - 6) / 4.0f;
    }
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n; c++) {
            double acc = 0;
            for (int k = 0; k < n; k++)
                acc += (double)A[r * n + k] * B[k * n + c];
            R[r * n + c] = (float)acc;
        }
    CUdeviceptr dA, dB, dC;
    CHECK(cuMemAlloc(&dA, bytes));
    CHECK(cuMemAlloc(&dB, bytes));
    CHECK(cuMemAlloc(&dC, bytes));
    CHECK(cuMemcpyHtoD(dA, A, bytes));
    CHECK(cuMemcpyHtoD(dB, B, bytes));
    CUmodule mod = load_kernels(1);
    CUfunction f;
    CHECK(cuModuleGetFunction(&f, mod, "matmul_tiled"));
    void *args[] = { &dA, &dB, &dC, &n };
    unsigned g = (unsigned)((n + 15) / 16);
    CHECK(cuLaunchKernel(f, g, g, 1, 16, 16, 1, 0, NULL, args, NULL));
    CHECK(cuMemcpyDtoH(C, dC, bytes));
    double maxerr = 0;
    for (int i = 0; i < n * n; i++) {
        double e = fabs((double)C[i] - R[i]);
        if (e > maxerr)
            maxerr = e;
    }
    fprintf(stderr, "matmul %dx%d: max abs error %g\n", n, n, maxerr);
    EXPECT(maxerr < 1e-3);
    CHECK(cuModuleUnload(mod));
    CHECK(cuMemFree(dA));
    CHECK(cuMemFree(dB));
    CHECK(cuMemFree(dC));
    free(A);
    free(B);
    free(C);
    free(R);
    printf("matmul: OK\n");
    return 0;
}
