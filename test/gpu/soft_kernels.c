/* soft_kernels.c: host versions of kernels.cu / kernels2.cu for the `soft` TEST DEVICE.
 * Each runs the whole grid on the calling thread; device pointers are translated (and checked)
 * with broker_soft_ptr, so a bad pointer fails the kernel with ILLEGAL_ADDRESS as on a GPU. */
#include "soft_kernels.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

#include "broker.h"

#define ILLEGAL_ADDRESS 700

static uint64_t u64p(void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static int i32p(void *p)
{
    int v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint64_t threads(const struct broker_soft_launch *l)
{
    return (uint64_t)l->grid[0] * l->grid[1] * l->grid[2] * l->block[0] * l->block[1] *
           l->block[2];
}

static int vec_add(const struct broker_soft_launch *l)
{
    int n = i32p(l->params[3]);
    uint64_t cover = threads(l);
    if (n <= 0)
        return 0;
    if ((uint64_t)n > cover)
        n = (int)cover;
    float *a = broker_soft_ptr(l->ctx, u64p(l->params[0]), (uint64_t)n * 4);
    float *b = broker_soft_ptr(l->ctx, u64p(l->params[1]), (uint64_t)n * 4);
    float *c = broker_soft_ptr(l->ctx, u64p(l->params[2]), (uint64_t)n * 4);
    if (!a || !b || !c)
        return ILLEGAL_ADDRESS;
    for (int i = 0; i < n; i++)
        c[i] = a[i] + b[i];
    return 0;
}

static int matmul_tiled(const struct broker_soft_launch *l)
{
    int n = i32p(l->params[3]);
    if (n <= 0)
        return 0;
    uint64_t bytes = (uint64_t)n * n * 4;
    float *A = broker_soft_ptr(l->ctx, u64p(l->params[0]), bytes);
    float *B = broker_soft_ptr(l->ctx, u64p(l->params[1]), bytes);
    float *C = broker_soft_ptr(l->ctx, u64p(l->params[2]), bytes);
    if (!A || !B || !C)
        return ILLEGAL_ADDRESS;
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n; c++) {
            float acc = 0;
            for (int k = 0; k < n; k++)
                acc += A[r * n + k] * B[k * n + c];
            C[r * n + c] = acc;
        }
    return 0;
}

static int many_params(const struct broker_soft_launch *l)
{
    char c;
    short s;
    int i;
    long long ll;
    float f;
    double d;
    unsigned char u8;
    unsigned long long u64;
    memcpy(&c, l->params[0], 1);
    memcpy(&s, l->params[1], 2);
    memcpy(&i, l->params[2], 4);
    memcpy(&ll, l->params[3], 8);
    memcpy(&f, l->params[4], 4);
    memcpy(&d, l->params[5], 8);
    int *oi = broker_soft_ptr(l->ctx, u64p(l->params[6]), 6 * sizeof(int));
    double *od = broker_soft_ptr(l->ctx, u64p(l->params[7]), 3 * sizeof(double));
    memcpy(&u8, l->params[8], 1);
    memcpy(&u64, l->params[9], 8);
    if (!oi || !od)
        return ILLEGAL_ADDRESS;
    oi[0] = c;
    oi[1] = s;
    oi[2] = i;
    oi[3] = (int)(ll >> 32);
    oi[4] = (int)(ll & 0xffffffff);
    oi[5] = u8;
    od[0] = f;
    od[1] = d;
    od[2] = (double)u64;
    return 0;
}

static int empty_kernel(const struct broker_soft_launch *l) { return 0; }

static int fault_kernel(const struct broker_soft_launch *l)
{
    int *p = broker_soft_ptr(l->ctx, u64p(l->params[0]), sizeof(int));
    if (p == NULL)
        return ILLEGAL_ADDRESS;
    *p = 42;
    return 0;
}

static int bump_counter(const struct broker_soft_launch *l) { return 0; }

static int scale(const struct broker_soft_launch *l)
{
    float a;
    int n = i32p(l->params[2]);
    memcpy(&a, l->params[1], 4);
    if (n <= 0)
        return 0;
    float *x = broker_soft_ptr(l->ctx, u64p(l->params[0]), (uint64_t)n * 4);
    if (!x)
        return ILLEGAL_ADDRESS;
    for (int i = 0; i < n; i++)
        x[i] *= a;
    return 0;
}

/* vgpu_spin(cycles, done): busy-waits cycles/1000 microseconds on the calling thread (the whole
 * grid at once), then counts the launch in *done. */
static int vgpu_spin(const struct broker_soft_launch *l)
{
    uint64_t cycles = u64p(l->params[0]);
    uint32_t *done = broker_soft_ptr(l->ctx, u64p(l->params[1]), sizeof *done);
    if (done == NULL)
        return ILLEGAL_ADDRESS;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t ns = cycles, el;
    do {
        clock_gettime(CLOCK_MONOTONIC, &t);
        el = (uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)t.tv_nsec - (uint64_t)t0.tv_nsec;
    } while (el < ns);
    (*done)++;
    return 0;
}

int soft_kernels_register(void)
{
    static const uint32_t p_vec[] = { 8, 8, 8, 4 };
    static const uint32_t p_many[] = { 1, 2, 4, 8, 4, 8, 8, 8, 1, 8 };
    static const uint32_t p_ptr[] = { 8 };
    static const uint32_t p_int[] = { 4 };
    static const uint32_t p_scale[] = { 8, 4, 4 };
    static const uint32_t p_ptr2[] = { 8, 8 };
    int rc = 0;
    rc |= broker_soft_register("vec_add", vec_add, 4, p_vec);
    rc |= broker_soft_register("matmul_tiled", matmul_tiled, 4, p_vec);
    rc |= broker_soft_register("many_params", many_params, 10, p_many);
    rc |= broker_soft_register("empty_kernel", empty_kernel, 0, NULL);
    rc |= broker_soft_register("fault_kernel", fault_kernel, 1, p_ptr);
    rc |= broker_soft_register("bump_counter", bump_counter, 1, p_int);
    rc |= broker_soft_register("scale", scale, 3, p_scale);
    rc |= broker_soft_register("vgpu_spin", vgpu_spin, 2, p_ptr2);
    return rc;
}
