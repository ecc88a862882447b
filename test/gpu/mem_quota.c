/* mem_quota: what a pod's GPU memory quota allows (test/integration/test_gpu_pods.py).
 *   mem_quota WANT_MIB [HOLD_S]
 * Prints cuMemGetInfo, allocates 16 MiB at a time until WANT_MIB or the first failure, copies one
 * MiB to each allocation, optionally holds everything for HOLD_S seconds (so that usage can be seen
 * from outside), frees it and exits 0 (1 on any other error). Output (stdout):
 *   meminfo free=<bytes> total=<bytes>
 *   allocated_mib=<n> result=<CUresult of the allocation that stopped it, 0 if none did>
 *   mem_quota: OK */
#include <unistd.h>

#include "gpu_test.h"

#define CHUNK_MIB 16

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s WANT_MIB [HOLD_S]\n", argv[0]);
        return 2;
    }
    long want = atol(argv[1]), hold = argc > 2 ? atol(argv[2]) : 0;
    EXPECT(want > 0 && want <= (1L << 20) && hold >= 0);
    test_init();
    size_t fr = 0, tot = 0;
    CHECK(cuMemGetInfo(&fr, &tot));
    printf("meminfo free=%zu total=%zu\n", fr, tot);
    fflush(stdout);
    size_t n_max = (size_t)(want + CHUNK_MIB - 1) / CHUNK_MIB, n = 0;
    CUdeviceptr *p = calloc(n_max, sizeof(*p));
    char *host = calloc(1, 1 << 20);
    EXPECT(p && host);
    CUresult stop = CUDA_SUCCESS;
    while (n < n_max) {
        stop = cuMemAlloc(&p[n], (size_t)CHUNK_MIB << 20);
        if (stop != CUDA_SUCCESS)
            break;
        CHECK(cuMemcpyHtoD(p[n], host, 1 << 20));
        n++;
    }
    printf("allocated_mib=%zu result=%d\n", n * CHUNK_MIB, (int)stop);
    fflush(stdout);
    if (hold)
        sleep((unsigned)hold);
    for (size_t i = 0; i < n; i++)
        CHECK(cuMemFree(p[i]));
    free(p);
    free(host);
    printf("mem_quota: OK\n");
    return 0;
}
