/* gpu_test.h: helpers for the CUDA driver-API test programs. They run unchanged against the real
 * libcuda.so.1 and against libvgpu.so (first in LD_LIBRARY_PATH). */
#ifndef GPU_TEST_H
#define GPU_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vgpu_cuda.h"

#define CHECK(call)                                                                            \
    do {                                                                                       \
        CUresult r_ = (call);                                                                  \
        if (r_ != CUDA_SUCCESS) {                                                              \
            const char *s_ = NULL;                                                             \
            cuGetErrorName(r_, &s_);                                                           \
            fprintf(stderr, "%s:%d: %s = %d (%s)\n", __FILE__, __LINE__, #call, r_,            \
                    s_ ? s_ : "?");                                                            \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

#define EXPECT(cond)                                                                           \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* Reads a whole file, NUL-terminated (PTX text). */
static inline char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(1);
    }
    buf[n] = 0;
    fclose(f);
    return buf;
}

static inline const char *kernels_path(int which)
{
    const char *e = getenv(which == 2 ? "VGPU_KERNELS2_PTX" : "VGPU_KERNELS_PTX");
    if (e != NULL)
        return e;
    return which == 2 ? VGPU_KERNELS2_PTX : VGPU_KERNELS_PTX;
}

/* cuInit + device 0 + primary context made current. */
static inline CUcontext test_init(void)
{
    CUdevice dev;
    CUcontext ctx;
    char name[256];
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, 0));
    CHECK(cuDeviceGetName(name, sizeof name, dev));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK(cuCtxSetCurrent(ctx));
    fprintf(stderr, "device: %s\n", name);
    return ctx;
}

static inline CUmodule load_kernels(int which)
{
    CUmodule m;
    char *ptx = read_file(kernels_path(which));
    CHECK(cuModuleLoadData(&m, ptx));
    free(ptx);
    return m;
}

#endif
