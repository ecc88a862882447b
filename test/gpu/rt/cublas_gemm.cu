// cublas_gemm: cuBLAS SGEMM and HGEMM (fp16 in, fp32 accumulate via cublasGemmEx) checked
// against a CPU reference.
#include <cmath>
#include <vector>
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include "rt_check.h"
#define CB_CHECK(call)                                                                        \
    do {                                                                                      \
        cublasStatus_t s_ = (call);                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                    \
            fprintf(stderr, "%s:%d: %s = %d\n", __FILE__, __LINE__, #call, (int)s_);          \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

int main()
{
    const int n = 384;
    std::vector<float> a(n * n), b(n * n), c(n * n), ref(n * n);
    for (int i = 0; i < n * n; i++) {
        a[i] = (float)((i * 3) % 17) / 17.0f - 0.5f;
        b[i] = (float)((i * 11) % 19) / 19.0f - 0.5f;
    }
    for (int i = 0; i < n; i++) // column-major: C(i,j) = sum_k A(i,k) B(k,j)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++)
                s += (double)a[k * n + i] * b[j * n + k];
            ref[j * n + i] = (float)s;
        }
    cublasHandle_t h;
    CB_CHECK(cublasCreate(&h));
#ifdef VGPU_CUBLAS_WORKSPACE // diagnostic build: a workspace of our own, as PyTorch sets one
    void *ws;
    RT_CHECK(cudaMalloc(&ws, 32 << 20));
    CB_CHECK(cublasSetWorkspace(h, ws, 32 << 20));
#endif
    float *da, *db, *dc, one = 1.0f, zero = 0.0f;
    RT_CHECK(cudaMalloc(&da, n * n * 4));
    RT_CHECK(cudaMalloc(&db, n * n * 4));
    RT_CHECK(cudaMalloc(&dc, n * n * 4));
    RT_CHECK(cudaMemcpy(da, a.data(), n * n * 4, cudaMemcpyHostToDevice));
    RT_CHECK(cudaMemcpy(db, b.data(), n * n * 4, cudaMemcpyHostToDevice));
    CB_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, da, n, db, n, &zero, dc, n));
    RT_CHECK(cudaMemcpy(c.data(), dc, n * n * 4, cudaMemcpyDeviceToHost));
    double worst = 0;
    for (int i = 0; i < n * n; i++)
        worst = fmax(worst, fabs(c[i] - ref[i]));
    RT_EXPECT(worst < 1e-2);
    printf("cublas_gemm: SGEMM max error %.2e\n", worst);

    std::vector<__half> ha(n * n), hb(n * n);
    for (int i = 0; i < n * n; i++) {
        ha[i] = __float2half(a[i]);
        hb[i] = __float2half(b[i]);
    }
    __half *dha, *dhb;
    RT_CHECK(cudaMalloc(&dha, n * n * 2));
    RT_CHECK(cudaMalloc(&dhb, n * n * 2));
    RT_CHECK(cudaMemcpy(dha, ha.data(), n * n * 2, cudaMemcpyHostToDevice));
    RT_CHECK(cudaMemcpy(dhb, hb.data(), n * n * 2, cudaMemcpyHostToDevice));
    CB_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, dha, CUDA_R_16F, n, dhb, CUDA_R_16F, n,
                          &zero, dc, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    RT_CHECK(cudaMemcpy(c.data(), dc, n * n * 4, cudaMemcpyDeviceToHost));
    worst = 0;
    for (int i = 0; i < n * n; i++)
        worst = fmax(worst, fabs(c[i] - ref[i]));
    RT_EXPECT(worst < 0.1); // fp16 inputs
    printf("cublas_gemm: HGEMM max error %.2e\n", worst);
    CB_CHECK(cublasDestroy(h));
    RT_CHECK(cudaFree(da));
    RT_CHECK(cudaFree(db));
    RT_CHECK(cudaFree(dc));
    RT_CHECK(cudaFree(dha));
    RT_CHECK(cudaFree(dhb));
    printf("cublas_gemm: OK\n");
    return 0;
}
