/* procaddr.c: cuGetProcAddress / cuGetProcAddress_v2 answer with the shim's own entry points
 * (so programs built with the CUDA runtime, which look every driver function up this way, reach
 * the shim too), and stubs for common functions the shim does not implement: they return
 * CUDA_ERROR_NOT_SUPPORTED and log their name once. */
#include "shim.h"

#include <stdbool.h>
#include <string.h>

/* Stubs. Their arguments are ignored; the System V calling convention makes that safe. */
#define STUBS(X)                                                                               \
    X(cuMemAllocManaged) X(cuPointerGetAttribute) X(cuPointerGetAttributes) \
    X(cuMemAllocPitch_v2) X(cuMemcpy2D_v2) X(cuMemcpy2DAsync_v2) X(cuMemcpy3D_v2) \
    X(cuMemcpy3DAsync_v2) X(cuMemHostGetDevicePointer_v2) X(cuMemHostGetFlags) \
    X(cuCtxGetCacheConfig) X(cuCtxSetCacheConfig) X(cuIpcGetMemHandle) \
    X(cuIpcOpenMemHandle_v2) X(cuIpcCloseMemHandle) X(cuDeviceGetPCIBusId) \
    X(cuDeviceGetByPCIBusId) X(cuDeviceCanAccessPeer) X(cuCtxEnablePeerAccess) \
    X(cuGraphCreate) X(cuStreamAddCallback) X(cuLaunchHostFunc) \
    X(cuOccupancyMaxPotentialBlockSize) X(cuMemAddressReserve) X(cuMemCreate) X(cuMemMap) \
    X(cuMemPoolCreate) X(cuModuleGetTexRef) X(cuLaunchCooperativeKernel) \
    X(cuGreenCtxCreate) X(cuGreenCtxDestroy) X(cuGreenCtxStreamCreate) X(cuCtxFromGreenCtx) \
    X(cuCtxGetDevResource) X(cuDeviceGetDevResource) X(cuDevResourceGenerateDesc) \
    X(cuDevSmResourceSplitByCount) X(cuMemAddressFree) X(cuMemRelease) X(cuMemSetAccess) \
    X(cuMemUnmap) X(cuMemGetAllocationGranularity) X(cuMemExportToShareableHandle) \
    X(cuMemImportFromShareableHandle) X(cuMemGetAllocationPropertiesFromHandle) \
    X(cuMemRetainAllocationHandle) X(cuMulticastCreate) X(cuMulticastAddDevice) \
    X(cuMulticastBindMem) X(cuMulticastUnbind) X(cuStreamWriteValue32) X(cuLinkAddData_v2) \
    X(cuCtxDisablePeerAccess) X(cuGraphExecKernelNodeSetParams) X(cuGraphInstantiate) \
    X(cuGraphKernelNodeGetParams) X(cuGraphNodeGetType) X(cuLinkAddFile_v2) X(cuLinkComplete) \
    X(cuLinkCreate_v2) X(cuLinkDestroy) X(cuMemPrefetchAsync) X(cuStreamBatchMemOp) \
    X(cuStreamWaitValue32)

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
CUresult cuCtxGetDevice_v2(CUdevice *, CUcontext);
CUresult cuCtxSynchronize_v2(CUcontext);
CUresult cuDeviceGetUuid_v2(CUuuid *, CUdevice);
CUresult cuEventElapsedTime_v2(float *, CUevent, CUevent);
CUresult cuDevicePrimaryCtxRelease(CUdevice);
CUresult cuDevicePrimaryCtxReset(CUdevice);
CUresult cuGetExportTable(const void **, const CUuuid *);
CUresult cuLibraryGetGlobal(CUdeviceptr *, size_t *, CUlibrary, const char *);
CUresult cuModuleGetLoadingMode(int *);
CUresult cuKernelGetAttribute(int *, CUfunction_attribute, CUkernel, CUdevice);
CUresult cuKernelSetAttribute(CUfunction_attribute, int, CUkernel, CUdevice);
CUresult cuCtxGetStreamPriorityRange(int *, int *);
CUresult cuMemAllocAsync(CUdeviceptr *, size_t, CUstream);
CUresult cuMemFreeAsync(CUdeviceptr, CUstream);
CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *, CUdevice);
CUresult cuDeviceGetMemPool(CUmemoryPool *, CUdevice);
CUresult cuMemPoolSetAttribute(CUmemoryPool, int, void *);
CUresult cuMemPoolGetAttribute(CUmemoryPool, int, void *);
CUresult cuCtxGetLimit(size_t *, int);
CUresult cuCtxSetLimit(int, size_t);
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *, CUfunction, int, size_t);
CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *, CUfunction, int, size_t,
                                                              unsigned int);
CUresult cuOccupancyAvailableDynamicSMemPerBlock(size_t *, CUfunction, int, int);
CUresult cuOccupancyMaxActiveClusters(int *, CUfunction, const CUlaunchConfig *);
CUresult cuOccupancyMaxPotentialClusterSize(int *, CUfunction, const CUlaunchConfig *);
CUresult cuStreamBeginCapture(CUstream);
CUresult cuStreamBeginCapture_v2(CUstream, int);
CUresult cuStreamEndCapture(CUstream, CUgraph *);
CUresult cuStreamIsCapturing(CUstream, int *);
CUresult cuStreamGetCaptureInfo_v2(CUstream, int *, uint64_t *, CUgraph *, const void **, size_t *);
CUresult cuStreamGetCaptureInfo_v3(CUstream, int *, uint64_t *, CUgraph *, const void **,
                                   const void **, size_t *);
CUresult cuGraphInstantiateWithFlags(CUgraphExec *, CUgraph, unsigned long long);
CUresult cuGraphDestroy(CUgraph);
CUresult cuGraphExecDestroy(CUgraphExec);
CUresult cuGraphGetNodes(CUgraph, void **, size_t *);
CUresult cuGraphLaunch(CUgraphExec, CUstream);
CUresult cuKernelGetLibrary(CUlibrary *, CUkernel);
CUresult cuStreamGetCtx(CUstream, CUcontext *);
CUresult cuThreadExchangeStreamCaptureMode(int *);
CUresult cuTensorMapEncodeTiled(void *, int, uint32_t, void *, const uint64_t *, const uint64_t *,
                                const uint32_t *, const uint32_t *, int, int, int, int);
CUresult cuTensorMapEncodeIm2col(void *, int, uint32_t, void *, const uint64_t *,
                                 const uint64_t *, const int *, const int *, uint32_t, uint32_t,
                                 const uint32_t *, int, int, int, int);
CUresult cuTensorMapReplaceAddress(void *, void *);

/* Names whose answer depends on the version asked: ABI variants and late additions, as the
 * real driver answers them (generated from its answers; see the header). */
struct proc_version {
    const char *name;
    int since;
    const char *symbol; /* NULL: not found from `since` on */
};
static const struct proc_version proc_versions[] = {
#include "procaddr_versions.h"
};

struct proc {
    const char *name;
    void *fn;
};

#define P(n) { #n, (void *)n }
/* By exported symbol: the versioned name the driver would answer (procaddr_versions.h). */
#define PV(n, f) { #f, (void *)f }
static const struct proc procs[] = {
    P(cuInit), P(cuDriverGetVersion), P(cuGetErrorString), P(cuGetErrorName),
    P(cuGetProcAddress), P(cuGetProcAddress_v2), P(cuGetExportTable), P(cuCtxCreate_v2), P(cuCtxCreate_v3),
    P(cuCtxCreate_v4), P(cuCtxGetDevice_v2), P(cuCtxSynchronize_v2),
    P(cuDeviceGetUuid_v2), P(cuEventElapsedTime_v2), P(cuDevicePrimaryCtxRelease),
    P(cuDevicePrimaryCtxReset),
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
    P(cuKernelGetFunction), P(cuLibraryGetGlobal), P(cuModuleGetLoadingMode),
    P(cuKernelGetAttribute), P(cuKernelSetAttribute), P(cuCtxGetStreamPriorityRange),
    P(cuMemAllocAsync), P(cuMemFreeAsync), P(cuDeviceGetDefaultMemPool), P(cuDeviceGetMemPool),
    P(cuMemPoolSetAttribute), P(cuMemPoolGetAttribute), P(cuCtxGetLimit), P(cuCtxSetLimit),
    P(cuOccupancyMaxActiveBlocksPerMultiprocessor),
    P(cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags),
    P(cuOccupancyAvailableDynamicSMemPerBlock), P(cuOccupancyMaxActiveClusters),
    P(cuOccupancyMaxPotentialClusterSize), P(cuStreamBeginCapture), P(cuStreamBeginCapture_v2),
    P(cuStreamEndCapture), P(cuStreamIsCapturing), P(cuStreamGetCaptureInfo_v2),
    P(cuStreamGetCaptureInfo_v3), P(cuGraphInstantiateWithFlags), P(cuGraphDestroy),
    P(cuGraphExecDestroy), P(cuGraphGetNodes), P(cuGraphLaunch), P(cuKernelGetLibrary), P(cuStreamGetCtx),
    P(cuThreadExchangeStreamCaptureMode),
    P(cuTensorMapEncodeTiled), P(cuTensorMapEncodeIm2col), P(cuTensorMapReplaceAddress),
    P(cuFuncGetParamInfo), P(cuFuncGetName), P(cuFuncGetAttribute),
    P(cuFuncSetAttribute), P(cuFuncSetCacheConfig), P(cuLaunchKernel), P(cuLaunchKernelEx),
    P(cuStreamCreate), P(cuStreamCreateWithPriority), P(cuStreamQuery), P(cuStreamSynchronize),
    P(cuStreamWaitEvent), PV(cuStreamDestroy, cuStreamDestroy_v2),
    P(cuEventCreate), P(cuEventRecord), P(cuEventRecordWithFlags), P(cuEventQuery),
    P(cuEventSynchronize), P(cuEventElapsedTime), PV(cuEventDestroy, cuEventDestroy_v2),
#define X(n) P(n),
    STUBS(X)
#undef X
};

/* The exported symbol that answers `name` at `version`: the newest variant not newer than the
 * version for a versioned name (NULL if the name did not exist yet), else the name itself. */
static const char *versioned_symbol(const char *name, int version)
{
    const char *sym = name;
    bool versioned = false;
    int best = -1;
    for (size_t i = 0; i < sizeof proc_versions / sizeof proc_versions[0]; i++) {
        if (strcmp(proc_versions[i].name, name) != 0)
            continue;
        versioned = true;
        if (proc_versions[i].since <= version && proc_versions[i].since > best) {
            best = proc_versions[i].since;
            sym = proc_versions[i].symbol;
        }
    }
    return versioned && best < 0 ? NULL : sym;
}

SHIM_API CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion,
                                      cuuint64_t flags, CUdriverProcAddressQueryResult *status)
{
    (void)flags;
    if (symbol == NULL || pfn == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *pfn = NULL;
    const char *sym = versioned_symbol(symbol, cudaVersion);
    for (size_t i = 0; sym != NULL && i < sizeof procs / sizeof procs[0]; i++)
        if (strcmp(procs[i].name, sym) == 0) {
            *pfn = procs[i].fn;
            break;
        }
    if (status != NULL)
        *status = *pfn ? CU_GET_PROC_ADDRESS_SUCCESS
                  : sym == NULL ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
                                : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    return *pfn ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

SHIM_API CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion,
                                   cuuint64_t flags)
{
    return cuGetProcAddress_v2(symbol, pfn, cudaVersion, flags, NULL);
}
