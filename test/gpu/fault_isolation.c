/* fault_isolation: pod A runs a kernel that faults (illegal address) while pod B keeps running
 * vector adds whose results must stay right; afterwards pod A works again (new process).
 * Needs the shim and a broker serving $VGPU_SOCKET_A and $VGPU_SOCKET_B. */
#include <sys/wait.h>
#include <unistd.h>

#include "gpu_test.h"

static int good_work(int iters)
{
    CUmodule mod = load_kernels(1);
    CUfunction f;
    CHECK(cuModuleGetFunction(&f, mod, "vec_add"));
    const int n = 1 << 16;
    size_t bytes = (size_t)n * sizeof(float);
    float *a = malloc(bytes), *c = malloc(bytes);
    CUdeviceptr da, dc;
    CHECK(cuMemAlloc(&da, bytes));
    CHECK(cuMemAlloc(&dc, bytes));
    for (int it = 0; it < iters; it++) {
        for (int i = 0; i < n; i++)
            a[i] = (float)(i + it);
        CHECK(cuMemcpyHtoD(da, a, bytes));
        int nn = n;
        void *args[] = { &da, &da, &dc, &nn };
        CHECK(cuLaunchKernel(f, (unsigned)(n / 256), 1, 1, 256, 1, 1, 0, NULL, args, NULL));
        CHECK(cuMemcpyDtoH(c, dc, bytes));
        for (int i = 0; i < n; i++)
            if (c[i] != 2 * a[i]) {
                fprintf(stderr, "pod B: wrong result at iter %d\n", it);
                return 1;
            }
        usleep(1000);
    }
    CHECK(cuMemFree(da));
    CHECK(cuMemFree(dc));
    CHECK(cuModuleUnload(mod));
    free(a);
    free(c);
    return 0;
}

static pid_t spawn_on_a(int fault)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    setenv("VGPU_SOCKET", getenv("VGPU_SOCKET_A"), 1);
    test_init();
    if (!fault)
        _exit(good_work(5));
    usleep(50000);
    CUmodule mod = load_kernels(1);
    CUfunction f;
    CHECK(cuModuleGetFunction(&f, mod, "fault_kernel"));
    CUdeviceptr bad = 0x10; /* not memory of this pod */
    void *args[] = { &bad };
    CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, args, NULL));
    CUresult r = cuCtxSynchronize();
    fprintf(stderr, "pod A: fault kernel -> CUresult %d\n", r);
    _exit(r == CUDA_ERROR_ILLEGAL_ADDRESS || r == CUDA_ERROR_LAUNCH_FAILED ? 0 : 1);
}

int main(void)
{
    if (getenv("VGPU_SOCKET_A") == NULL || getenv("VGPU_SOCKET_B") == NULL) {
        fprintf(stderr, "fault_isolation: needs VGPU_SOCKET_A and VGPU_SOCKET_B\n");
        return 1;
    }
    pid_t child = spawn_on_a(1);
    setenv("VGPU_SOCKET", getenv("VGPU_SOCKET_B"), 1);
    test_init();
    int rc = good_work(200);
    int st;
    EXPECT(waitpid(child, &st, 0) == child);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    rc |= good_work(5);
    child = spawn_on_a(0); /* pod A gets a fresh context */
    EXPECT(waitpid(child, &st, 0) == child);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (rc == 0)
        printf("fault_isolation: OK\n");
    return rc;
}
