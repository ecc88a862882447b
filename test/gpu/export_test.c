/* export_test: what the CUDA runtime, cuBLAS and PyTorch ask of libvgpu.so beyond the core
 * Driver API, through the shim against a broker (the soft TEST DEVICE in CI, the real GPU on the
 * device machine): the export tables (sizes, per-context storage, hooks, the context check, the
 * driver check value against an independent computation, unknown slots and tables), and the
 * operations behind them: stream-ordered memory, pool attributes, limits, occupancy, launches
 * with attributes, TMA descriptors, capture. The refusals are attacks: pointers the pod does not
 * own, limits that would reserve memory outside the quota, attributes holding pointers. */
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "darkhash.h"
#include "gpu_test.h"

CUresult cuGetExportTable(const void **table, const CUuuid *id);
CUresult cuDevicePrimaryCtxReset(CUdevice);
CUresult cuMemAllocAsync(CUdeviceptr *, size_t, CUstream);
CUresult cuMemFreeAsync(CUdeviceptr, CUstream);
CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *, CUdevice);
CUresult cuMemPoolSetAttribute(CUmemoryPool, int, void *);
CUresult cuMemPoolGetAttribute(CUmemoryPool, int, void *);
CUresult cuCtxGetLimit(size_t *, int);
CUresult cuCtxSetLimit(int, size_t);
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *, CUfunction, int, size_t);
CUresult cuTensorMapEncodeTiled(void *, int, uint32_t, void *, const uint64_t *, const uint64_t *,
                                const uint32_t *, const uint32_t *, int, int, int, int);
CUresult cuStreamIsCapturing(CUstream, int *);
CUresult cuStreamBeginCapture(CUstream);
CUresult cuStreamEndCapture(CUstream, CUgraph *);
CUresult cuGraphDestroy(CUgraph);
CUresult cuFuncGetAttribute(int *, int, CUfunction);
CUresult cuFuncSetAttribute(CUfunction, int, int);

static const uint8_t uuid_cudart[16] = { 0x6b, 0xd5, 0xfb, 0x6c, 0x5b, 0xf4, 0xe7, 0x4a,
                                         0x89, 0x87, 0xd9, 0x39, 0x12, 0xfd, 0x9d, 0xf9 };
static const uint8_t uuid_hooks[16] = { 0xa0, 0x94, 0x79, 0x8c, 0x2e, 0x74, 0x2e, 0x74,
                                        0x93, 0xf2, 0x08, 0x00, 0x20, 0x0c, 0x0a, 0x66 };
static const uint8_t uuid_cls[16] = { 0xc6, 0x93, 0x33, 0x6e, 0x11, 0x21, 0xdf, 0x11,
                                      0xa8, 0xc3, 0x68, 0xf3, 0x55, 0xd8, 0x95, 0x93 };
static const uint8_t uuid_ctxchk[16] = { 0x26, 0x3e, 0x88, 0x60, 0x7c, 0xd2, 0x61, 0x43,
                                         0x92, 0xf6, 0xbb, 0xd5, 0x00, 0x6d, 0xfa, 0x7e };
static const uint8_t uuid_check[16] = { 0xd4, 0x08, 0x20, 0x55, 0xbd, 0xe6, 0x70, 0x4b,
                                        0x8d, 0x34, 0xba, 0x12, 0x3c, 0x66, 0xe1, 0xf2 };

static const uint8_t uuid_cublas[16] = { 0x21, 0x31, 0x8c, 0x60, 0x97, 0x14, 0x32, 0x48,
                                         0x8c, 0xa6, 0x41, 0xff, 0x73, 0x24, 0xc8, 0xf2 };

static void *const *table(const uint8_t uuid[16])
{
    const void *t = NULL;
    CUuuid id;
    memcpy(id.bytes, uuid, 16);
    CHECK(cuGetExportTable(&t, &id));
    EXPECT(t != NULL);
    return (void *const *)t;
}

static int dtor_calls;
static void cls_dtor(CUcontext ctx, void *key, void *value)
{
    (void)ctx;
    (void)key;
    (void)value;
    dtor_calls++;
}

static void test_tables(CUcontext ctx)
{
    /* lookups: NULL arguments and unknown tables are refused */
    const void *t = (const void *)1;
    CUuuid unknown = { { 1, 2, 3, 4 } };
    EXPECT(cuGetExportTable(NULL, &unknown) == CUDA_ERROR_INVALID_VALUE);
    EXPECT(cuGetExportTable(&t, NULL) == CUDA_ERROR_INVALID_VALUE);
    EXPECT(cuGetExportTable(&t, &unknown) != CUDA_SUCCESS && t == NULL);

    void *const *rt = table(uuid_cudart);
    EXPECT((uintptr_t)rt[0] == 13 * sizeof(void *));
    EXPECT(table(uuid_cudart) == rt); /* the same table every time: its address is checked */
    CUcontext primary = NULL;
    CHECK(((CUresult(*)(CUcontext *, CUdevice))rt[2])(&primary, 0));
    EXPECT(primary == ctx);
    /* a slot nobody is known to call fails cleanly */
    EXPECT(((CUresult(*)(void))rt[11])() == CUDA_ERROR_NOT_SUPPORTED);

    void *const *hooks = table(uuid_hooks);
    void *space = NULL;
    size_t n = 0;
    ((void (*)(void **, size_t *))hooks[2])(&space, &n);
    EXPECT(space != NULL && n >= 1024);
    EXPECT(((uintptr_t *)space)[0] == 0 && ((uintptr_t *)space)[n - 1] == 0);

    /* per-context storage: as the driver answers (test/gpu/passthru/dark_probe.c) */
    void *const *cls = table(uuid_cls);
    CUresult (*put)(CUcontext, void *, void *, void *) = (CUresult(*)(CUcontext, void *, void *, void *))cls[0];
    CUresult (*rem)(CUcontext, void *) = (CUresult(*)(CUcontext, void *))cls[1];
    CUresult (*get)(void **, CUcontext, void *) = (CUresult(*)(void **, CUcontext, void *))cls[2];
    static int key, value, key2;
    void *out = (void *)0x1234;
    EXPECT(get(&out, NULL, &key) == CUDA_ERROR_INVALID_HANDLE && out == (void *)0x1234);
    CHECK(put(NULL, &key, &value, (void *)cls_dtor));
    CHECK(get(&out, NULL, &key));
    EXPECT(out == &value);
    CHECK(get(&out, ctx, &key)); /* NULL meant the current context */
    EXPECT(out == &value);
    CHECK(rem(ctx, &key));
    EXPECT(get(&out, ctx, &key) == CUDA_ERROR_INVALID_HANDLE);
    EXPECT(dtor_calls == 0);
    CHECK(put(ctx, &key2, &value, (void *)cls_dtor));
    CHECK(cuDevicePrimaryCtxReset(0)); /* a reset runs the runtime's destructors */
    EXPECT(dtor_calls == 1 && get(&out, ctx, &key2) == CUDA_ERROR_INVALID_HANDLE);

    void *const *chk = table(uuid_ctxchk);
    uint64_t a = ~0ull, b = ~0ull;
    CHECK(((CUresult(*)(CUcontext, void *, void *))chk[2])(ctx, &a, &b));
    EXPECT((uint32_t)a == 0 && b == ~0ull);
}

/* The driver check: the shim's value equals one computed here from the shim's public answers. */
static void test_check_value(void)
{
    void *const *check = table(uuid_check);
    CUresult (*fn)(uint32_t, uint64_t, uint8_t *) = (CUresult(*)(uint32_t, uint64_t, uint8_t *))check[1];
    int drv = 0, dom = 0, bus = 0, devno = 0;
    CUuuid u;
    CHECK(cuDriverGetVersion(&drv));
    CHECK(cuDeviceGetUuid(&u, 0));
    CHECK(cuDeviceGetAttribute(&dom, 50, 0));
    CHECK(cuDeviceGetAttribute(&bus, 33, 0));
    CHECK(cuDeviceGetAttribute(&devno, 34, 0));
    struct shim_check_dev dev = { { 0 }, (uint32_t)dom, (uint32_t)bus, (uint32_t)devno };
    memcpy(dev.uuid, u.bytes, 16);
    const uint32_t versions[] = { 13000, 13001, 13002, 12090, 13005 };
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        uint8_t got[16], want[16];
        struct shim_check_in in = { (uint32_t)drv, versions[i], (uint32_t)getpid(),
                                    (uint32_t)pthread_self(), (uintptr_t)table(uuid_cudart),
                                    (uintptr_t)check, (uintptr_t)fn, 1795900000u + i };
        CHECK(fn(versions[i], in.timestamp, got));
        shim_check_value(&in, &dev, 1, want);
        EXPECT(memcmp(got, want, 16) == 0);
    }
    /* a different timestamp gives a different value: the check is not a constant */
    uint8_t v1[16], v2[16];
    CHECK(fn(13002, 1, v1));
    CHECK(fn(13002, 2, v2));
    EXPECT(memcmp(v1, v2, 16) != 0);
}

/* Stream-ordered memory, pool attributes and limits, with the refusals that keep the quota. */
static void test_memory_and_limits(void)
{
    CUstream s;
    CHECK(cuStreamCreate(&s, 0));
    CUdeviceptr p = 0;
    CHECK(cuMemAllocAsync(&p, 1 << 20, s));
    CHECK(cuMemsetD8Async(p, 0x5a, 1 << 20, s));
    uint8_t host[16];
    CHECK(cuMemcpyDtoHAsync(host, p + 4096, sizeof host, s));
    CHECK(cuStreamSynchronize(s));
    EXPECT(host[0] == 0x5a && host[15] == 0x5a);
    CHECK(cuMemFreeAsync(p, s));
    CHECK(cuStreamSynchronize(s));
    /* freeing it again, or a pointer never allocated: refused at the next synchronization */
    CHECK(cuMemFreeAsync(p, s));
    EXPECT(cuStreamSynchronize(s) == CUDA_ERROR_INVALID_VALUE);

    CUmemoryPool pool;
    CHECK(cuDeviceGetDefaultMemPool(&pool, 0));
    uint64_t threshold = 1 << 20, back = 0;
    CHECK(cuMemPoolSetAttribute(pool, 4, &threshold));
    CHECK(cuMemPoolGetAttribute(pool, 4, &back));
    EXPECT(back == threshold); /* pod A has no quota */
    EXPECT(cuMemPoolSetAttribute((CUmemoryPool)&threshold, 4, &threshold) ==
           CUDA_ERROR_INVALID_HANDLE);

    size_t v = 0;
    CHECK(cuCtxGetLimit(&v, 0));
    EXPECT(v > 0);
    CHECK(cuCtxSetLimit(0, 4096));
    CHECK(cuCtxGetLimit(&v, 0));
    EXPECT(v >= 4096);
    EXPECT(cuCtxSetLimit(2, (size_t)1 << 30) == CUDA_ERROR_INVALID_VALUE); /* 1 GiB heap */
    EXPECT(cuCtxSetLimit(6, 1) == CUDA_ERROR_NOT_PERMITTED);             /* persisting L2 */
    EXPECT(cuCtxGetLimit(&v, 99) == CUDA_ERROR_UNSUPPORTED_LIMIT);
    EXPECT(cuCtxSetLimit(9, 1) == CUDA_ERROR_NOT_PERMITTED); /* limits past 6: read-only */
    CHECK(cuStreamDestroy(s));
}

/* Launch attributes, occupancy, TMA descriptors, capture. */
static void test_launch_paths(int real_gpu)
{
    CUmodule mod = load_kernels(1);
    CUfunction f;
    CHECK(cuModuleGetFunction(&f, mod, "vec_add"));
    int blocks = 0;
    CHECK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, f, 256, 0));
    EXPECT(blocks >= 1 && blocks <= 32);
    /* the shim keeps attribute and occupancy answers per function: a set must show at once */
    int dyn0 = -1, dyn = -1, again = -1;
    CHECK(cuFuncGetAttribute(&dyn0, 8, f)); /* CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES */
    CHECK(cuFuncGetAttribute(&again, 8, f));
    EXPECT(dyn0 >= 0 && dyn0 != 4096 && again == dyn0); /* the GPU's default 48 KiB, soft 0 */
    CHECK(cuFuncSetAttribute(f, 8, 4096));
    CHECK(cuFuncGetAttribute(&dyn, 8, f));
    EXPECT(dyn == 4096);
    EXPECT(cuFuncSetAttribute(f, 8, 1 << 30) == CUDA_ERROR_INVALID_VALUE); /* errors still reach us */
    CHECK(cuFuncGetAttribute(&dyn, 8, f));
    EXPECT(dyn == 4096);
    CHECK(cuFuncSetAttribute(f, 8, dyn0));
    CHECK(cuFuncGetAttribute(&dyn, 8, f));
    EXPECT(dyn == dyn0);
    int blocks2 = 0;
    CHECK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks2, f, 256, 0));
    EXPECT(blocks2 == blocks);

    const int n = 1024;
    CUdeviceptr a, b, c;
    CHECK(cuMemAlloc(&a, n * sizeof(float)));
    CHECK(cuMemAlloc(&b, n * sizeof(float)));
    CHECK(cuMemAlloc(&c, n * sizeof(float)));
    CHECK(cuMemsetD32(a, 0x3f800000, n)); /* 1.0f */
    CHECK(cuMemsetD32(b, 0x40000000, n)); /* 2.0f */
    int nn = n;
    void *args[] = { &a, &b, &c, &nn };
    CUlaunchAttribute attr[2];
    memset(attr, 0, sizeof attr);
    attr[0].id = 8; /* priority: a value attribute */
    CUlaunchConfig cfg = { 4, 1, 1, 256, 1, 1, 0, NULL, attr, 1 };
    CHECK(cuLaunchKernelEx(&cfg, f, args, NULL));
    CHECK(cuCtxSynchronize());
    float out[4];
    CHECK(cuMemcpyDtoH(out, c, sizeof out));
    EXPECT(out[0] == 3.0f && out[3] == 3.0f);
    /* an access-policy window carries a pointer: refused (reported at the next synchronization) */
    attr[0].id = 1;
    CHECK(cuLaunchKernelEx(&cfg, f, args, NULL));
    EXPECT(cuCtxSynchronize() == CUDA_ERROR_NOT_SUPPORTED);

    /* a TMA descriptor only for the pod's own memory */
    _Alignas(64) uint8_t map[128];
    uint64_t dims[2] = { 32, 32 }, strides[1] = { 32 * sizeof(float) };
    uint32_t box[2] = { 8, 8 }, es[2] = { 1, 1 };
    EXPECT(cuTensorMapEncodeTiled(map, 7, 2, (void *)(uintptr_t)0x7f0000000000ull, dims, strides,
                                  box, es, 0, 0, 0, 0) == CUDA_ERROR_INVALID_VALUE);
    CUresult r = cuTensorMapEncodeTiled(map, 7 /* FLOAT32 */, 2, (void *)(uintptr_t)a, dims,
                                        strides, box, es, 0, 0, 0, 0);
    EXPECT(real_gpu ? r == CUDA_SUCCESS : r == CUDA_ERROR_NOT_SUPPORTED);

    CUstream s;
    CHECK(cuStreamCreate(&s, 0));
    int status = -1;
    CHECK(cuStreamIsCapturing(s, &status)); /* no capture open: the shim answers "none" */
    EXPECT(status == 0);
    r = cuStreamBeginCapture(s);
    if (real_gpu) { /* while a capture is open the broker answers */
        EXPECT(r == CUDA_SUCCESS);
        CHECK(cuStreamIsCapturing(s, &status));
        EXPECT(status == 1); /* CU_STREAM_CAPTURE_STATUS_ACTIVE */
        CUgraph g = NULL;
        CHECK(cuStreamEndCapture(s, &g));
        CHECK(cuGraphDestroy(g));
    } else { /* the soft device has no capture */
        EXPECT(r == CUDA_ERROR_NOT_SUPPORTED);
    }
    status = -1;
    CHECK(cuStreamIsCapturing(s, &status));
    EXPECT(status == 0);
    CHECK(cuStreamDestroy(s));
    CHECK(cuMemFree(a));
    CHECK(cuMemFree(b));
    CHECK(cuMemFree(c));
    CHECK(cuModuleUnload(mod));
}

/* A module image bigger than a message (cuBLAS's are ~8 MiB) goes through a host segment. */
static void test_big_module(void)
{
    char *ptx = read_file(kernels_path(1));
    size_t n = strlen(ptx), pad = 6u << 20;
    char *big = malloc(n + pad + 1);
    EXPECT(big != NULL);
    memcpy(big, ptx, n);
    for (size_t i = 0; i < pad; i += 8)
        memcpy(big + n + i, "// pad \n", 8);
    big[n + pad] = 0;
    CUmodule mod;
    CUfunction f;
    CHECK(cuModuleLoadData(&mod, big));
    CHECK(cuModuleGetFunction(&f, mod, "vec_add"));
    CHECK(cuModuleUnload(mod));
    free(big);
    free(ptx);
}

/* cuBLAS's per-stream records (21318c60 slots 51, 39): one record and one number per stream,
 * the NULL stream and CU_STREAM_LEGACY the same; a destroyed stream's number is not given again;
 * a forged record is refused. */
static void test_cublas_streams(CUcontext ctx)
{
    void *const *t = table(uuid_cublas);
    CUresult (*obj_of)(CUcontext, CUstream, void **) = (CUresult(*)(CUcontext, CUstream, void **))t[51];
    CUresult (*id_of)(CUcontext, const void *, uint64_t *) =
        (CUresult(*)(CUcontext, const void *, uint64_t *))t[39];
    void *o_null = NULL, *o_legacy = NULL, *o_s = NULL, *o_s2 = NULL;
    CHECK(obj_of(ctx, NULL, &o_null));
    CHECK(obj_of(ctx, CU_STREAM_LEGACY, &o_legacy));
    EXPECT(o_null != NULL && o_null == o_legacy);
    EXPECT(((CUcontext *)o_null)[2] == ctx); /* the third word, as the driver's */
    CUstream s;
    CHECK(cuStreamCreate(&s, 0));
    CHECK(obj_of(ctx, s, &o_s));
    CHECK(obj_of(NULL, s, &o_s2)); /* NULL: the current context */
    EXPECT(o_s != o_null && o_s == o_s2);
    uint64_t id_null = 0, id_s = 0, id_again = 0, id_after = 0;
    CHECK(id_of(ctx, o_null, &id_null));
    CHECK(id_of(ctx, o_s, &id_s));
    CHECK(id_of(ctx, o_s, &id_again));
    EXPECT(id_null != id_s && id_s == id_again);
    CHECK(cuStreamDestroy(s));
    CHECK(id_of(ctx, o_s, &id_after));
    EXPECT(id_after != id_s && id_after != id_null);
    uint64_t forged[16] = { 1, 0, (uint64_t)(uintptr_t)ctx, 0, 0, 1 }, id = 0;
    EXPECT(id_of(ctx, forged, &id) == CUDA_ERROR_INVALID_HANDLE && id == 0);
    EXPECT(obj_of(ctx, NULL, NULL) == CUDA_ERROR_INVALID_VALUE);
}

int main(void)
{
    CUcontext ctx = test_init();
    char name[256];
    CHECK(cuDeviceGetName(name, sizeof name, 0));
    int real_gpu = strstr(name, "SOFT") == NULL && strstr(name, "soft") == NULL;
    test_tables(ctx);
    test_cublas_streams(ctx);
    test_check_value();
    test_memory_and_limits();
    test_launch_paths(real_gpu);
    test_big_module();
    fprintf(stderr, "export_test: OK (%s)\n", real_gpu ? "real GPU" : "soft test device");
    return 0;
}
