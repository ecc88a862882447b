/* procaddr.c: cuGetProcAddress / cuGetProcAddress_v2 answer with the shim's own entry points
 * (so programs built with the CUDA runtime, which look every driver function up this way, reach
 * the shim too), and stubs for common functions the shim does not implement: they return
 * CUDA_ERROR_NOT_SUPPORTED and log their name once. */
#include "shim.h"

#include <string.h>

/* Stubs. Their arguments are ignored; the System V calling convention makes that safe. */
#define STUBS(X)                                                                               \
    X(cuGetExportTable) X(cuMemAllocManaged) X(cuPointerGetAttribute) X(cuPointerGetAttributes) \
    X(cuMemAllocPitch_v2) X(cuMemcpy2D_v2) X(cuMemcpy2DAsync_v2) X(cuMemcpy3D_v2)              \
    X(cuMemcpy3DAsync_v2) X(cuMemHostGetDevicePointer_v2) X(cuMemHostGetFlags)                 \
    X(cuCtxGetLimit) X(cuCtxSetLimit) X(cuCtxGetCacheConfig) X(cuCtxSetCacheConfig)           \
    X(cuIpcGetMemHandle) X(cuIpcOpenMemHandle_v2) X(cuIpcCloseMemHandle)                      \
    X(cuDeviceGetPCIBusId) X(cuDeviceGetByPCIBusId) X(cuDeviceCanAccessPeer)                  \
    X(cuCtxEnablePeerAccess) X(cuStreamBeginCapture_v2) X(cuStreamEndCapture)                 \
    X(cuStreamIsCapturing) X(cuGraphCreate) X(cuGraphLaunch) X(cuGraphInstantiateWithFlags)   \
    X(cuStreamAddCallback) X(cuLaunchHostFunc) X(cuOccupancyMaxActiveBlocksPerMultiprocessor) \
    X(cuOccupancyMaxPotentialBlockSize) X(cuMemAddressReserve) X(cuMemCreate) X(cuMemMap)     \
    X(cuMemPoolCreate) X(cuMemAllocAsync) X(cuMemFreeAsync) X(cuModuleGetTexRef)              \
    X(cuLaunchCooperativeKernel) X(cuDeviceGetDefaultMemPool) X(cuDeviceGetMemPool)

#define X(name)                                                                                \
    SHIM_API CUresult name(void)                                                               \
    {                                                                                          \
        shim_unsupported(#name);                                                               \
        return CUDA_ERROR_NOT_SUPPORTED;                                                       \
    }
STUBS(X)
#undef X

/* Declared in the other files of the shim (all exported). */
CUresult cuDeviceComputeCapability(int *, int *, CUdevice);
CUresult cuDevicePrimaryCtxReset_v2(CUdevice);
CUresult cuDevicePrimaryCtxGetState(CUdevice, unsigned int *, int *);
CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice, unsigned int);
CUresult cuCtxGetFlags(unsigned int *);
CUresult cuCtxGetApiVersion(CUcontext, unsigned int *);
CUresult cuCtxCreate_v3(CUcontext *, void *, int, unsigned int, CUdevice);
CUresult cuMemcpy(CUdeviceptr, CUdeviceptr, size_t);
CUresult cuMemcpyAsync(CUdeviceptr, CUdeviceptr, size_t, CUstream);
CUresult cuModuleLoad(CUmodule *, const char *);
CUresult cuModuleGetFunctionCount(unsigned int *, CUmodule);
CUresult cuLibraryGetModule(CUmodule *, CUlibrary);
CUresult cuFuncGetName(const char **, CUfunction);
CUresult cuFuncSetCacheConfig(CUfunction, CUfunc_cache);
CUresult cuEventRecordWithFlags(CUevent, CUstream, unsigned int);
CUresult cuGetProcAddress(const char *, void **, int, cuuint64_t);

struct proc {
    const char *name;
    void *fn;
};

#define P(n) { #n, (void *)n }
#define PV(n, f) { #n, (void *)f }
static const struct proc procs[] = {
    P(cuInit), P(cuDriverGetVersion), P(cuGetErrorString), P(cuGetErrorName),
    PV(cuGetProcAddress, cuGetProcAddress_v2),
    P(cuDeviceGet), P(cuDeviceGetCount), P(cuDeviceGetName), P(cuDeviceGetUuid),
    PV(cuDeviceTotalMem, cuDeviceTotalMem_v2), P(cuDeviceGetAttribute),
    P(cuDeviceComputeCapability),
    P(cuDevicePrimaryCtxRetain), PV(cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease_v2),
    PV(cuDevicePrimaryCtxReset, cuDevicePrimaryCtxReset_v2), P(cuDevicePrimaryCtxGetState),
    PV(cuDevicePrimaryCtxSetFlags, cuDevicePrimaryCtxSetFlags_v2),
    PV(cuCtxDestroy, cuCtxDestroy_v2), PV(cuCtxPushCurrent, cuCtxPushCurrent_v2),
    PV(cuCtxPopCurrent, cuCtxPopCurrent_v2), P(cuCtxSetCurrent), P(cuCtxGetCurrent),
    P(cuCtxGetDevice), P(cuCtxGetFlags), P(cuCtxGetApiVersion), P(cuCtxSynchronize),
    PV(cuMemAlloc, cuMemAlloc_v2), PV(cuMemFree, cuMemFree_v2), PV(cuMemGetInfo, cuMemGetInfo_v2),
    PV(cuMemGetAddressRange, cuMemGetAddressRange_v2), PV(cuMemAllocHost, cuMemAllocHost_v2),
    P(cuMemHostAlloc), P(cuMemFreeHost), PV(cuMemHostRegister, cuMemHostRegister_v2),
    P(cuMemHostUnregister), PV(cuMemcpyHtoD, cuMemcpyHtoD_v2), PV(cuMemcpyDtoH, cuMemcpyDtoH_v2),
    PV(cuMemcpyDtoD, cuMemcpyDtoD_v2), PV(cuMemcpyHtoDAsync, cuMemcpyHtoDAsync_v2),
    PV(cuMemcpyDtoHAsync, cuMemcpyDtoHAsync_v2), PV(cuMemcpyDtoDAsync, cuMemcpyDtoDAsync_v2),
    P(cuMemcpy), P(cuMemcpyAsync),
    PV(cuMemsetD8, cuMemsetD8_v2), PV(cuMemsetD16, cuMemsetD16_v2), PV(cuMemsetD32, cuMemsetD32_v2),
    P(cuMemsetD8Async), P(cuMemsetD16Async), P(cuMemsetD32Async),
    P(cuModuleLoad), P(cuModuleLoadData), P(cuModuleLoadDataEx), P(cuModuleLoadFatBinary),
    P(cuModuleUnload), P(cuModuleGetFunction), P(cuModuleGetFunctionCount),
    PV(cuModuleGetGlobal, cuModuleGetGlobal_v2),
    P(cuLibraryLoadData), P(cuLibraryUnload), P(cuLibraryGetKernel), P(cuLibraryGetModule),
    P(cuKernelGetFunction), P(cuFuncGetParamInfo), P(cuFuncGetName), P(cuFuncGetAttribute),
    P(cuFuncSetAttribute), P(cuFuncSetCacheConfig), P(cuLaunchKernel), P(cuLaunchKernelEx),
    P(cuStreamCreate), P(cuStreamCreateWithPriority), P(cuStreamQuery), P(cuStreamSynchronize),
    P(cuStreamWaitEvent), PV(cuStreamDestroy, cuStreamDestroy_v2),
    P(cuEventCreate), P(cuEventRecord), P(cuEventRecordWithFlags), P(cuEventQuery),
    P(cuEventSynchronize), P(cuEventElapsedTime), PV(cuEventDestroy, cuEventDestroy_v2),
#define X(n) P(n),
    STUBS(X)
#undef X
};

SHIM_API CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
                                      cuuint64_t flags, CUdriverProcAddressQueryResult *status)
{
    if (symbol == NULL || pfn == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *pfn = NULL;
    if (strcmp(symbol, "cuCtxCreate") == 0) {
        /* cuda.h 13 maps cuCtxCreate to the _v4 signature, 12 to _v2 */
        *pfn = cudaVersion >= 13000 ? (void *)cuCtxCreate_v4 : (void *)cuCtxCreate_v2;
    } else {
        for (size_t i = 0; i < sizeof procs / sizeof procs[0]; i++) {
            size_t n = strlen(procs[i].name);
            /* stubs are listed by ABI name: match "cuFoo" against "cuFoo_v2" too */
            if (strncmp(procs[i].name, symbol, strlen(symbol)) == 0 &&
                (procs[i].name[strlen(symbol)] == 0 ||
                 strcmp(procs[i].name + strlen(symbol), "_v2") == 0) &&
                n >= strlen(symbol)) {
                *pfn = procs[i].fn;
                break;
            }
        }
    }
    if (status != NULL)
        *status = *pfn ? CU_GET_PROC_ADDRESS_SUCCESS : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    return *pfn ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

SHIM_API CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion,
                                   cuuint64_t flags)
{
    return cuGetProcAddress_v2(symbol, pfn, cudaVersion, flags, NULL);
}
