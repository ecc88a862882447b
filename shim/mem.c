/* mem.c: device memory, copies and memsets, pinned host memory.
 * Small copies travel inline in the ring; large pageable ones are cut in SHIM_CHUNK pieces that
 * the broker copies to the GPU while the next piece is being written (HtoD), or that it writes
 * into the reply ring while we copy the previous one out (DtoH, a few requests in flight).
 * Pinned host memory is a sealed memfd shared with the broker, which registers it with the GPU:
 * copies from/to it carry no data through the ring (DMA, truly asynchronous). */
#include "shim.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>


#define DTOH_DEPTH 3

/* Bulk copies into and out of the ring are cut between this thread and a few helpers: one
 * core's memcpy is slower than the DMA behind it. */
#define COPY_PAR_MIN (1u << 20)
#define COPY_HELPERS_MAX 7

static struct {
    pthread_mutex_t lock;
    pthread_cond_t go, done;
    unsigned gen, pending, nhelpers;
    uint8_t *dst;
    const uint8_t *src;
    size_t n, part;
    pid_t pid;
} pc = { .lock = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
         .done = PTHREAD_COND_INITIALIZER };
static pthread_once_t pc_once = PTHREAD_ONCE_INIT;

static void *copy_helper(void *arg)
{
    unsigned idx = (unsigned)(uintptr_t)arg, seen = 0;
    pthread_mutex_lock(&pc.lock);
    for (;;) {
        while (pc.gen == seen)
            pthread_cond_wait(&pc.go, &pc.lock);
        seen = pc.gen;
        size_t off = pc.part * (idx + 1);
        size_t len = off >= pc.n ? 0 : (pc.n - off < pc.part ? pc.n - off : pc.part);
        uint8_t *d = pc.dst + off;
        const uint8_t *s = pc.src + off;
        pthread_mutex_unlock(&pc.lock);
        if (len > 0)
            memcpy(d, s, len);
        pthread_mutex_lock(&pc.lock);
        if (--pc.pending == 0)
            pthread_cond_signal(&pc.done);
    }
    return NULL;
}

static void copy_start(void)
{
    const char *e = getenv("VGPU_COPY_THREADS");
    unsigned want = e ? (unsigned)atoi(e) : 4;
    want = want > 0 ? want - 1 : 0;
    if (want > COPY_HELPERS_MAX)
        want = COPY_HELPERS_MAX;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (unsigned i = 0; i < want; i++) {
        pthread_t t;
        if (pthread_create(&t, &attr, copy_helper, (void *)(uintptr_t)i) != 0)
            break;
        pc.nhelpers++;
    }
    pthread_attr_destroy(&attr);
    pc.pid = getpid();
}

/* Called with shim.lock held (one bulk copy at a time). */
static void copy_bulk(uint8_t *dst, const uint8_t *src, size_t n)
{
    if (n < COPY_PAR_MIN) {
        memcpy(dst, src, n);
        return;
    }
    pthread_once(&pc_once, copy_start);
    if (pc.nhelpers == 0 || pc.pid != getpid()) { /* none, or a forked child */
        memcpy(dst, src, n);
        return;
    }
    pthread_mutex_lock(&pc.lock);
    pc.dst = dst;
    pc.src = src;
    pc.n = n;
    pc.part = ((n / (pc.nhelpers + 1)) + 63) & ~(size_t)63;
    pc.pending = pc.nhelpers;
    pc.gen++;
    pthread_cond_broadcast(&pc.go);
    pthread_mutex_unlock(&pc.lock);
    memcpy(dst, src, pc.part < n ? pc.part : n);
    pthread_mutex_lock(&pc.lock);
    while (pc.pending > 0)
        pthread_cond_wait(&pc.done, &pc.lock);
    pthread_mutex_unlock(&pc.lock);
}

SHIM_API CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    NEED_INIT();
    if (dptr == NULL || bytesize == 0)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_mem_alloc_req req = { bytesize };
    struct idm_mem_alloc_rep rep = { 0 };
    CUresult r = shim_call(IDM_OP_MEM_ALLOC, &req, sizeof req, NULL, 0, &rep, sizeof rep);
    if (r == CUDA_SUCCESS)
        *dptr = rep.dptr;
    return r;
}

SHIM_API CUresult cuMemFree_v2(CUdeviceptr dptr)
{
    NEED_INIT();
    if (dptr == 0)
        return CUDA_SUCCESS;
    struct idm_dptr_req req = { dptr };
    return shim_call(IDM_OP_MEM_FREE, &req, sizeof req, NULL, 0, NULL, 0);
}

SHIM_API CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes)
{
    NEED_INIT();
    if (free_bytes == NULL || total_bytes == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_empty e = { 0 };
    struct idm_mem_info_rep rep = { 0 };
    CUresult r = shim_call(IDM_OP_MEM_GET_INFO, &e, sizeof e, NULL, 0, &rep, sizeof rep);
    if (r == CUDA_SUCCESS) {
        *free_bytes = rep.free_bytes;
        *total_bytes = rep.total_bytes;
    }
    return r;
}

SHIM_API CUresult cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
    NEED_INIT();
    struct idm_dptr_req req = { dptr };
    struct idm_mem_range_rep rep = { 0 };
    CUresult r = shim_call(IDM_OP_MEM_RANGE, &req, sizeof req, NULL, 0, &rep, sizeof rep);
    if (r == CUDA_SUCCESS) {
        if (pbase != NULL)
            *pbase = rep.base;
        if (psize != NULL)
            *psize = rep.size;
    }
    return r;
}

struct shim_seg *shim_find_seg_locked(const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)p;
    for (struct shim_seg *s = shim.segs; s != NULL; s = s->next) {
        if (s->handle == 0)
            continue; /* plain memory (Xen transport): copies take the staging path */
        uintptr_t b = (uintptr_t)s->p;
        if (a >= b && a - b < s->size && n <= s->size - (a - b))
            return s;
    }
    return NULL;
}

/* Copy between a pinned segment and the device: no data through the ring. */
static CUresult seg_copy_locked(struct shim_seg *s, const void *host, CUdeviceptr dptr, size_t n,
                                CUstream st, uint32_t dir, bool sync)
{
    struct idm_seg_copy_req req = { s->handle, (uint64_t)((uintptr_t)host - (uintptr_t)s->p),
                                    dptr, n, shim_stream(st), dir, 0 };
    uint64_t seq;
    uint8_t *body = idm_client_begin(shim.ch, IDM_OP_SEG_COPY, sync ? IDM_F_SYNC : 0, 0, &seq);
    if (body == NULL)
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    memcpy(body, &req, sizeof req);
    if (idm_client_send(shim.ch) < 0)
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    return sync ? shim_wait_locked(seq, NULL, 0, NULL, 0) : CUDA_SUCCESS;
}

static CUresult htod(CUdeviceptr dst, const void *src, size_t n, CUstream st, bool sync)
{
    NEED_INIT();
    if (n == 0)
        return CUDA_SUCCESS;
    if (src == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = CUDA_SUCCESS;
    pthread_mutex_lock(&shim.lock);
    struct shim_seg *s = shim_find_seg_locked(src, n);
    if (s != NULL) {
        r = seg_copy_locked(s, src, dst, n, st, IDM_SEG_HTOD, sync);
        pthread_mutex_unlock(&shim.lock);
        return r;
    }
    uint64_t seq = 0;
    const size_t chunk = SHIM_CHUNK_FOR(shim.ch);
    for (size_t off = 0; off < n && r == CUDA_SUCCESS; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk;
        bool last = off + len == n;
        uint8_t *body = shim.dead ? NULL
                                  : idm_client_begin(shim.ch, IDM_OP_HTOD,
                                                     last && sync ? IDM_F_SYNC : 0, len, &seq);
        if (body == NULL) {
            r = CUDA_ERROR_DEVICE_UNAVAILABLE;
            break;
        }
        struct idm_htod_req req = { dst + off, shim_stream(st), len, 0 };
        memcpy(body, &req, sizeof req);
        copy_bulk(body + sizeof req, (const uint8_t *)src + off, len);
        if (idm_client_send(shim.ch) < 0)
            r = CUDA_ERROR_DEVICE_UNAVAILABLE;
    }
    if (r == CUDA_SUCCESS && sync)
        r = shim_wait_locked(seq, NULL, 0, NULL, 0);
    pthread_mutex_unlock(&shim.lock);
    return r;
}

static CUresult dtoh(void *dst, CUdeviceptr src, size_t n, CUstream st, bool sync)
{
    NEED_INIT();
    if (n == 0)
        return CUDA_SUCCESS;
    if (dst == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = CUDA_SUCCESS;
    pthread_mutex_lock(&shim.lock);
    struct shim_seg *s = shim_find_seg_locked(dst, n);
    if (s != NULL) {
        r = seg_copy_locked(s, dst, src, n, st, IDM_SEG_DTOH, sync);
        pthread_mutex_unlock(&shim.lock);
        return r;
    }
    /* Pageable destination: the data comes back in replies, so we wait (also for the async
     * variant: completing early is allowed). Up to DTOH_DEPTH pieces in flight. */
    uint64_t seqs[DTOH_DEPTH];
    size_t offs[DTOH_DEPTH], lens[DTOH_DEPTH];
    size_t sent = 0, done = 0;
    unsigned head = 0, tail = 0, inflight = 0;
    const size_t chunk = SHIM_CHUNK_FOR(shim.ch);
    while (done < n) {
        while (sent < n && inflight < DTOH_DEPTH && !shim.dead) {
            size_t len = n - sent < chunk ? n - sent : chunk;
            uint8_t *body = idm_client_begin(shim.ch, IDM_OP_DTOH, 0, 0, &seqs[head]);
            if (body == NULL) {
                shim.dead = true;
                break;
            }
            struct idm_dtoh_req req = { src + sent, shim_stream(st), len };
            memcpy(body, &req, sizeof req);
            (void)idm_client_send(shim.ch);
            offs[head] = sent;
            lens[head] = len;
            head = (head + 1) % DTOH_DEPTH;
            inflight++;
            sent += len;
        }
        if (inflight == 0) {
            r = CUDA_ERROR_DEVICE_UNAVAILABLE;
            break;
        }
        struct idm_dtoh_rep rep = { 0 };
        CUresult rr = shim_wait_locked(seqs[tail], &rep, sizeof rep,
                                       r == CUDA_SUCCESS ? (uint8_t *)dst + offs[tail] : NULL,
                                       lens[tail]);
        if (rr == CUDA_SUCCESS && rep.len != lens[tail])
            rr = CUDA_ERROR_UNKNOWN;
        if (r == CUDA_SUCCESS)
            r = rr;
        done += lens[tail];
        tail = (tail + 1) % DTOH_DEPTH;
        inflight--;
        if (rr == CUDA_ERROR_DEVICE_UNAVAILABLE)
            break;
    }
    pthread_mutex_unlock(&shim.lock);
    return r;
}

SHIM_API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n)
{
    return htod(dst, src, n, NULL, true);
}
SHIM_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t n, CUstream s)
{
    return htod(dst, src, n, s, false);
}
SHIM_API CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
    return dtoh(dst, src, n, NULL, true);
}
SHIM_API CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t n, CUstream s)
{
    return dtoh(dst, src, n, s, false);
}

static CUresult dtod(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s, bool sync)
{
    NEED_INIT();
    if (n == 0)
        return CUDA_SUCCESS;
    struct idm_dtod_req req = { dst, src, n, shim_stream(s) };
    return shim_post(IDM_OP_DTOD, sync ? IDM_F_SYNC : 0, &req, sizeof req, NULL, 0);
}

SHIM_API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    return dtod(dst, src, n, NULL, true);
}
SHIM_API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
    return dtod(dst, src, n, s, false);
}

/* Unified addressing: a pointer is device memory if the broker knows it as ours. */
static bool is_device(CUdeviceptr p)
{
    CUdeviceptr base;
    size_t size;
    return cuMemGetAddressRange_v2(&base, &size, p) == CUDA_SUCCESS;
}

static CUresult memcpy_any(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s, bool sync)
{
    NEED_INIT();
    bool dd = is_device(dst), sd = is_device(src);
    if (dd && sd)
        return dtod(dst, src, n, s, sync);
    if (dd)
        return htod(dst, (const void *)(uintptr_t)src, n, s, sync);
    if (sd)
        return dtoh((void *)(uintptr_t)dst, src, n, s, sync);
    if (n > 0)
        memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n)
{
    return memcpy_any(dst, src, n, NULL, true);
}
SHIM_API CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s)
{
    return memcpy_any(dst, src, n, s, false);
}

static CUresult memset_any(CUdeviceptr dst, uint32_t v, uint32_t elem, size_t count, CUstream s,
                           bool sync)
{
    NEED_INIT();
    struct idm_memset_req req = { dst, count, shim_stream(s), v, elem };
    return shim_post(IDM_OP_MEMSET, sync ? IDM_F_SYNC : 0, &req, sizeof req, NULL, 0);
}

SHIM_API CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n)
{
    return memset_any(d, v, 1, n, NULL, true);
}
SHIM_API CUresult cuMemsetD16_v2(CUdeviceptr d, unsigned short v, size_t n)
{
    return memset_any(d, v, 2, n, NULL, true);
}
SHIM_API CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned int v, size_t n)
{
    return memset_any(d, v, 4, n, NULL, true);
}
SHIM_API CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream s)
{
    return memset_any(d, v, 1, n, s, false);
}
SHIM_API CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, CUstream s)
{
    return memset_any(d, v, 2, n, s, false);
}
SHIM_API CUresult cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream s)
{
    return memset_any(d, v, 4, n, s, false);
}

/* ---- pinned host memory ---- */

/* Over the Xen transport no fd can reach the broker: "pinned" memory is plain memory of this
 * process (handle 0), and copies from/to it go inline through the rings (correct, not zero-copy). */
static CUresult host_alloc_plain(void **pp, size_t size)
{
    struct shim_seg *s = calloc(1, sizeof *s);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s == NULL || p == MAP_FAILED) {
        if (p != MAP_FAILED)
            munmap(p, size);
        free(s);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    s->p = p;
    s->size = size;
    pthread_mutex_lock(&shim.lock);
    s->next = shim.segs;
    shim.segs = s;
    pthread_mutex_unlock(&shim.lock);
    *pp = p;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int flags)
{
    NEED_INIT();
    if (pp == NULL || bytesize == 0)
        return CUDA_ERROR_INVALID_VALUE;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), size = (bytesize + page - 1) & ~(page - 1);
    if (shim.plain_host)
        return host_alloc_plain(pp, size);
    int fd = memfd_create("vgpu-pinned", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return CUDA_ERROR_OUT_OF_MEMORY;
    void *p = MAP_FAILED;
    struct shim_seg *s = calloc(1, sizeof *s);
    if (s == NULL || ftruncate(fd, (off_t)size) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0 ||
        (p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        close(fd);
        free(s);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    struct idm_host_reg_req req = { size };
    struct idm_handle_rep rep = { 0 };
    uint64_t seq;
    CUresult r = CUDA_ERROR_DEVICE_UNAVAILABLE;
    pthread_mutex_lock(&shim.lock);
    /* The fd goes first on the socket; the broker takes it when it serves HOST_REG. */
    if (!shim.dead && idm_local_send_fd(shim.ch, fd, NULL) == 0) {
        uint8_t *body = idm_client_begin(shim.ch, IDM_OP_HOST_REG, 0, 0, &seq);
        if (body != NULL) {
            memcpy(body, &req, sizeof req);
            (void)idm_client_send(shim.ch);
            r = shim_wait_locked(seq, &rep, sizeof rep, NULL, 0);
        }
    }
    if (r == CUDA_SUCCESS) {
        s->p = p;
        s->size = size;
        s->handle = rep.handle;
        s->next = shim.segs;
        shim.segs = s;
    }
    pthread_mutex_unlock(&shim.lock);
    close(fd);
    if (r != CUDA_SUCCESS) {
        munmap(p, size);
        free(s);
        return r == CUDA_ERROR_INVALID_VALUE ? CUDA_ERROR_OUT_OF_MEMORY : r;
    }
    *pp = p;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuMemAllocHost_v2(void **pp, size_t bytesize)
{
    return cuMemHostAlloc(pp, bytesize, 0);
}

SHIM_API CUresult cuMemFreeHost(void *p)
{
    NEED_INIT();
    pthread_mutex_lock(&shim.lock);
    struct shim_seg **sp = &shim.segs;
    while (*sp != NULL && (*sp)->p != p)
        sp = &(*sp)->next;
    struct shim_seg *s = *sp;
    if (s != NULL)
        *sp = s->next;
    pthread_mutex_unlock(&shim.lock);
    if (s == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (s->handle == 0) { /* plain memory: the broker never knew it */
        munmap(s->p, s->size);
        free(s);
        return CUDA_SUCCESS;
    }
    struct idm_handle_req req = { s->handle };
    CUresult r = shim_call(IDM_OP_HOST_UNREG, &req, sizeof req, NULL, 0, NULL, 0);
    munmap(s->p, s->size);
    free(s);
    return r;
}

/* Memory the program allocated itself cannot be shared with the broker after the fact: it is
 * accepted, and copies from/to it go through the staging path (correct, not zero-copy). */
SHIM_API CUresult cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int flags)
{
    NEED_INIT();
    return p != NULL && bytesize > 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
SHIM_API CUresult cuMemHostRegister(void *p, size_t bytesize, unsigned int flags) __attribute__((alias("cuMemHostRegister_v2")));

SHIM_API CUresult cuMemHostUnregister(void *p)
{
    NEED_INIT();
    return p != NULL ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* per-thread-default-stream ABI variants: served on the legacy default stream */
#define ALIAS(ret, name, target, args) SHIM_API ret name args __attribute__((alias(#target)));
ALIAS(CUresult, cuMemcpyHtoD_v2_ptds, cuMemcpyHtoD_v2, (CUdeviceptr, const void *, size_t))
ALIAS(CUresult, cuMemcpyDtoH_v2_ptds, cuMemcpyDtoH_v2, (void *, CUdeviceptr, size_t))
ALIAS(CUresult, cuMemcpyDtoD_v2_ptds, cuMemcpyDtoD_v2, (CUdeviceptr, CUdeviceptr, size_t))
ALIAS(CUresult, cuMemcpyHtoDAsync_v2_ptsz, cuMemcpyHtoDAsync_v2, (CUdeviceptr, const void *, size_t, CUstream))
ALIAS(CUresult, cuMemcpyDtoHAsync_v2_ptsz, cuMemcpyDtoHAsync_v2, (void *, CUdeviceptr, size_t, CUstream))
ALIAS(CUresult, cuMemcpyDtoDAsync_v2_ptsz, cuMemcpyDtoDAsync_v2, (CUdeviceptr, CUdeviceptr, size_t, CUstream))
ALIAS(CUresult, cuMemcpy_ptds, cuMemcpy, (CUdeviceptr, CUdeviceptr, size_t))
ALIAS(CUresult, cuMemcpyAsync_ptsz, cuMemcpyAsync, (CUdeviceptr, CUdeviceptr, size_t, CUstream))
ALIAS(CUresult, cuMemsetD8_v2_ptds, cuMemsetD8_v2, (CUdeviceptr, unsigned char, size_t))
ALIAS(CUresult, cuMemsetD16_v2_ptds, cuMemsetD16_v2, (CUdeviceptr, unsigned short, size_t))
ALIAS(CUresult, cuMemsetD32_v2_ptds, cuMemsetD32_v2, (CUdeviceptr, unsigned int, size_t))
ALIAS(CUresult, cuMemsetD8Async_ptsz, cuMemsetD8Async, (CUdeviceptr, unsigned char, size_t, CUstream))
ALIAS(CUresult, cuMemsetD16Async_ptsz, cuMemsetD16Async, (CUdeviceptr, unsigned short, size_t, CUstream))
ALIAS(CUresult, cuMemsetD32Async_ptsz, cuMemsetD32Async, (CUdeviceptr, unsigned int, size_t, CUstream))

void shim_copy_bulk(void *dst, const void *src, size_t n)
{
    copy_bulk(dst, src, n);
}
