/* exec.c: modules and libraries, functions and kernel launches, streams and events.
 * A module load returns, in one reply, every function with its parameter layout (the broker
 * reads it with cuFuncGetParamInfo), so cuLaunchKernel packs the parameters and writes the launch
 * to the ring without a round trip. */
#include "shim.h"

#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define FATBIN_WRAPPER_MAGIC 0x466243b1u
#define FATBIN_MAGIC 0xba55ed50u

/* Size of a module image: ELF cubin, fatbin (or its wrapper), or NUL-terminated PTX text. */
static size_t image_size(const void **image)
{
    const uint8_t *p = *image;
    uint32_t magic;
    memcpy(&magic, p, sizeof magic);
    if (magic == FATBIN_WRAPPER_MAGIC) {
        const void *data;
        memcpy(&data, p + 8, sizeof data);
        *image = data;
        return image_size(image);
    }
    if (magic == FATBIN_MAGIC) {
        uint16_t hsize;
        uint64_t fsize;
        memcpy(&hsize, p + 6, sizeof hsize);
        memcpy(&fsize, p + 8, sizeof fsize);
        return (size_t)hsize + fsize;
    }
    if (memcmp(p, ELFMAG, SELFMAG) == 0 && p[EI_CLASS] == ELFCLASS64) {
        Elf64_Ehdr eh;
        memcpy(&eh, p, sizeof eh);
        uint64_t end = eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize;
        uint64_t pend = eh.e_phoff + (uint64_t)eh.e_phnum * eh.e_phentsize;
        if (pend > end)
            end = pend;
        for (unsigned i = 0; i < eh.e_shnum; i++) {
            Elf64_Shdr sh;
            memcpy(&sh, p + eh.e_shoff + (uint64_t)i * eh.e_shentsize, sizeof sh);
            if (sh.sh_type != SHT_NOBITS && sh.sh_offset + sh.sh_size > end)
                end = sh.sh_offset + sh.sh_size;
        }
        return end;
    }
    return strlen((const char *)p) + 1;
}

static void fcache_drop(struct shim_func *f);

static void free_mod(struct shim_mod *m)
{
    for (uint32_t i = 0; i < m->nfunc; i++) {
        m->funcs[i].magic = 0;
        free(m->funcs[i].name);
        free(m->funcs[i].params);
        fcache_drop(&m->funcs[i]);
    }
    free(m->funcs);
    m->magic = 0;
    free(m);
}

/* Parses n function entries of a MODULE_LOAD or MODULE_FUNCS reply body (after struct
 * idm_module_rep) into m->funcs (room for every function of the module). */
static CUresult parse_funcs(struct shim_mod *m, const uint8_t *p, size_t len, uint32_t n,
                            uint32_t total)
{
    if (n > total - m->nfunc)
        return CUDA_ERROR_UNKNOWN;
    size_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct idm_func_desc d;
        if (len - off < sizeof d)
            return CUDA_ERROR_UNKNOWN;
        memcpy(&d, p + off, sizeof d);
        off += sizeof d;
        size_t nl = ((size_t)d.namelen + 7) & ~(size_t)7;
        size_t pl = (size_t)d.nparams * sizeof(struct idm_param_desc);
        if (d.namelen > IDM_FUNC_NAME_MAX || d.nparams > 65536 || len - off < nl + pl)
            return CUDA_ERROR_UNKNOWN;
        struct shim_func *f = &m->funcs[m->nfunc++];
        f->magic = SHIM_FUNC_MAGIC;
        f->handle = d.handle;
        f->mod = m;
        f->name = strndup((const char *)p + off, d.namelen);
        off += nl;
        f->nparams = d.nparams;
        f->params = calloc(d.nparams ? d.nparams : 1, sizeof *f->params);
        if (f->name == NULL || f->params == NULL)
            return CUDA_ERROR_OUT_OF_MEMORY;
        memcpy(f->params, p + off, pl);
        off += pl;
        for (uint32_t k = 0; k < f->nparams; k++) {
            uint64_t e = (uint64_t)f->params[k].offset + f->params[k].size;
            if (e > 32768)
                return CUDA_ERROR_UNKNOWN;
            if (e > f->param_size)
                f->param_size = (uint32_t)e;
        }
    }
    return CUDA_SUCCESS;
}

/* For $VGPU_SHIM_STATS (written under shim.lock). */
static uint64_t stat_images, stat_staged, stat_image_max, stat_func_pages;

__attribute__((destructor)) static void print_module_stats(void)
{
    const char *e = getenv("VGPU_SHIM_STATS");
    if (e == NULL || strcmp(e, "1") != 0 || stat_images == 0)
        return;
    fprintf(stderr, "libvgpu stats: module images %lu (staged in chunks %lu, largest %lu bytes), "
            "extra function-list replies %lu\n", (unsigned long)stat_images,
            (unsigned long)stat_staged, (unsigned long)stat_image_max,
            (unsigned long)stat_func_pages);
}

/* With shim.lock held: MODULE_LOAD of the image, inline or (too big for a message) staged in
 * chunks first; the reply (at most cap bytes) lands in rep. The chunks and the load are written
 * under one hold of the lock, so two threads' images never interleave. */
static CUresult load_locked(const void *image, size_t len, uint8_t *rep, size_t cap)
{
    struct idm_module_load_req req = { len, 0, 0 };
    size_t chunk = (shim.ch->max_msg - sizeof(struct idm_msg) -
                    sizeof(struct idm_module_stage_req) - 64) & ~(size_t)15;
    uint64_t seq;
    CUresult r = CUDA_SUCCESS;
    stat_images++;
    if (len > stat_image_max)
        stat_image_max = len;
    if (len + 256 > shim.ch->max_msg) {
        req.staged = 1;
        stat_staged++;
        for (size_t off = 0; off < len && r == CUDA_SUCCESS; off += chunk) {
            size_t n = len - off < chunk ? len - off : chunk;
            struct idm_module_stage_req sr = { len, off, n, 0 };
            r = shim_post_locked(IDM_OP_MODULE_STAGE, 0, &sr, sizeof sr,
                                 (const uint8_t *)image + off, n, &seq);
        }
    }
    if (r == CUDA_SUCCESS)
        r = shim_post_locked(IDM_OP_MODULE_LOAD, 0, &req, sizeof req, req.staged ? NULL : image,
                             req.staged ? 0 : len, &seq);
    if (r == CUDA_SUCCESS)
        r = shim_wait_locked(seq, rep, cap, NULL, 0);
    return r;
}

static CUresult load(struct shim_mod **out, const void *image)
{
    NEED_INIT();
    if (out == NULL || image == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    size_t len = image_size(&image);
    if (len == 0)
        return CUDA_ERROR_INVALID_IMAGE;
    if (len > IDM_MODULE_STAGE_MAX)
        return CUDA_ERROR_OUT_OF_MEMORY;
    struct shim_mod *m = calloc(1, sizeof *m);
    uint8_t *rep = malloc(shim.ch->max_msg);
    if (m == NULL || rep == NULL) {
        free(m);
        free(rep);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    size_t cap = shim.ch->max_msg - sizeof(struct idm_msg) - sizeof(struct idm_rep);
    pthread_mutex_lock(&shim.lock);
    CUresult r = load_locked(image, len, rep, cap);
    pthread_mutex_unlock(&shim.lock);
    struct idm_module_rep mr = { 0 };
    if (r == CUDA_SUCCESS) {
        memcpy(&mr, rep, sizeof mr);
        m->magic = SHIM_MOD_MAGIC;
        m->handle = mr.module;
        m->funcs = calloc(mr.nfunc ? mr.nfunc : 1, sizeof *m->funcs);
        r = m->funcs == NULL ? CUDA_ERROR_OUT_OF_MEMORY
                             : parse_funcs(m, rep + sizeof mr, cap - sizeof mr, mr.nrep, mr.nfunc);
    }
    /* The rest of the functions, a reply at a time. */
    while (r == CUDA_SUCCESS && m->nfunc < mr.nfunc) {
        struct idm_module_funcs_req fr = { m->handle, m->nfunc, 0 };
        struct idm_module_rep pr;
        r = shim_call(IDM_OP_MODULE_FUNCS, &fr, sizeof fr, NULL, 0, rep, cap);
        pthread_mutex_lock(&shim.lock);
        stat_func_pages++;
        pthread_mutex_unlock(&shim.lock);
        if (r != CUDA_SUCCESS)
            break;
        memcpy(&pr, rep, sizeof pr);
        r = pr.module != m->handle || pr.nfunc != mr.nfunc || pr.nrep == 0
                ? CUDA_ERROR_UNKNOWN
                : parse_funcs(m, rep + sizeof pr, cap - sizeof pr, pr.nrep, mr.nfunc);
    }
    if (r != CUDA_SUCCESS && m->magic == SHIM_MOD_MAGIC) {
        struct idm_handle_req u = { m->handle };
        (void)shim_call(IDM_OP_MODULE_UNLOAD, &u, sizeof u, NULL, 0, NULL, 0);
        free_mod(m);
    } else if (r != CUDA_SUCCESS) {
        free(m);
    }
    free(rep);
    if (r == CUDA_SUCCESS)
        *out = m;
    return r;
}

static struct shim_mod *get_mod(void *h)
{
    struct shim_mod *m = h;
    return m != NULL && m->magic == SHIM_MOD_MAGIC ? m : NULL;
}

static struct shim_func *get_func(void *h)
{
    struct shim_func *f = h;
    return f != NULL && f->magic == SHIM_FUNC_MAGIC ? f : NULL;
}

SHIM_API CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
    return load((struct shim_mod **)module, image);
}

SHIM_API CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int n,
                                     CUjit_option *o, void **v)
{
    return load((struct shim_mod **)module, image);
}

SHIM_API CUresult cuModuleLoadFatBinary(CUmodule *module, const void *fatCubin)
{
    return load((struct shim_mod **)module, fatCubin);
}

SHIM_API CUresult cuModuleLoad(CUmodule *module, const char *fname)
{
    NEED_INIT();
    FILE *f = fname ? fopen(fname, "rbe") : NULL;
    if (f == NULL)
        return CUDA_ERROR_FILE_NOT_FOUND;
    size_t cap = shim.ch->max_msg, n;
    char *buf = malloc(cap + 1);
    n = buf ? fread(buf, 1, cap, f) : 0;
    fclose(f);
    if (buf == NULL)
        return CUDA_ERROR_OUT_OF_MEMORY;
    buf[n] = 0;
    CUresult r = load((struct shim_mod **)module, buf);
    free(buf);
    return r;
}

SHIM_API CUresult cuModuleUnload(CUmodule hmod)
{
    NEED_INIT();
    struct shim_mod *m = get_mod(hmod);
    if (m == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    struct idm_handle_req req = { m->handle };
    CUresult r = shim_call(IDM_OP_MODULE_UNLOAD, &req, sizeof req, NULL, 0, NULL, 0);
    free_mod(m);
    return r;
}

SHIM_API CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
    NEED_INIT();
    struct shim_mod *m = get_mod(hmod);
    if (hfunc == NULL || name == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (m == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    for (uint32_t i = 0; i < m->nfunc; i++)
        if (strcmp(m->funcs[i].name, name) == 0) {
            *hfunc = (CUfunction)&m->funcs[i];
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_NOT_FOUND;
}

SHIM_API CUresult cuModuleGetFunctionCount(unsigned int *count, CUmodule hmod)
{
    NEED_INIT();
    struct shim_mod *m = get_mod(hmod);
    if (m == NULL || count == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *count = m->nfunc;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuModuleGetGlobal_v2(CUdeviceptr *dptr, size_t *bytes, CUmodule hmod,
                                       const char *name)
{
    NEED_INIT();
    struct shim_mod *m = get_mod(hmod);
    if (name == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    if (m == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    struct idm_module_global_req req = { m->handle, (uint32_t)strlen(name), 0 };
    struct idm_module_global_rep rep = { 0 };
    CUresult r = shim_call(IDM_OP_MODULE_GLOBAL, &req, sizeof req, name, req.namelen, &rep,
                           sizeof rep);
    if (r == CUDA_SUCCESS) {
        if (dptr != NULL)
            *dptr = rep.dptr;
        if (bytes != NULL)
            *bytes = rep.size;
    }
    return r;
}

/* The CUDA 12 library API maps onto modules: a CUlibrary is a module, a CUkernel a function. */
SHIM_API CUresult cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *jo,
                                    void **jv, unsigned int nj, CUlibraryOption *lo, void **lv,
                                    unsigned int nl)
{
    return load((struct shim_mod **)library, code);
}

SHIM_API CUresult cuLibraryUnload(CUlibrary library)
{
    return cuModuleUnload((CUmodule)library);
}

SHIM_API CUresult cuLibraryGetKernel(CUkernel *pKernel, CUlibrary library, const char *name)
{
    return cuModuleGetFunction((CUfunction *)pKernel, (CUmodule)library, name);
}

SHIM_API CUresult cuLibraryGetModule(CUmodule *pMod, CUlibrary library)
{
    NEED_INIT();
    if (pMod == NULL || get_mod(library) == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *pMod = (CUmodule)library;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuLibraryGetGlobal(CUdeviceptr *dptr, size_t *bytes, CUlibrary library,
                                     const char *name)
{
    return cuModuleGetGlobal_v2(dptr, bytes, (CUmodule)library, name);
}

/* A module is loaded whole, in one message (its kernel table comes back with it); the broker's
 * driver may still load it lazily on the GPU. The runtime behaves as on a native lazy driver. */
SHIM_API CUresult cuModuleGetLoadingMode(int *mode)
{
    if (mode == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *mode = 0x2; /* CU_MODULE_LAZY_LOADING */
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuKernelGetLibrary(CUlibrary *lib, CUkernel kernel)
{
    NEED_INIT();
    struct shim_func *f = get_func(kernel);
    if (lib == NULL || f == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *lib = (CUlibrary)f->mod;
    return CUDA_SUCCESS;
}

/* A kernel is its function on the pod's one device. */
SHIM_API CUresult cuKernelGetAttribute(int *pi, CUfunction_attribute attrib, CUkernel kernel,
                                       CUdevice dev)
{
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    return cuFuncGetAttribute(pi, attrib, (CUfunction)kernel);
}

SHIM_API CUresult cuKernelSetAttribute(CUfunction_attribute attrib, int value, CUkernel kernel,
                                       CUdevice dev)
{
    if (dev != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    return cuFuncSetAttribute((CUfunction)kernel, attrib, value);
}

SHIM_API CUresult cuKernelGetFunction(CUfunction *pFunc, CUkernel kernel)
{
    NEED_INIT();
    if (pFunc == NULL || get_func(kernel) == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *pFunc = (CUfunction)kernel;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuFuncGetParamInfo(CUfunction func, size_t idx, size_t *off, size_t *size)
{
    NEED_INIT();
    struct shim_func *f = get_func(func);
    if (f == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    if (idx >= f->nparams)
        return CUDA_ERROR_INVALID_VALUE;
    if (off != NULL)
        *off = f->params[idx].offset;
    if (size != NULL)
        *size = f->params[idx].size;
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuFuncGetName(const char **name, CUfunction func)
{
    NEED_INIT();
    struct shim_func *f = get_func(func);
    if (f == NULL || name == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    *name = f->name;
    return CUDA_SUCCESS;
}

/* ---- per-function answers (shim_func_query) ---- */

#define FCACHE_KEY 80 /* the largest request: struct idm_occupancy_req */
#define FCACHE_SLOTS 16
struct shim_fcache {
    struct {
        uint16_t op, len;
        uint8_t key[FCACHE_KEY];
        uint64_t value;
    } e[FCACHE_SLOTS];
    unsigned n, next;
};
_Static_assert(sizeof(struct idm_occupancy_req) <= FCACHE_KEY, "occupancy request fits the key");
/* fcache_lock guards every function's cache and cache_gen. Setting an attribute of a function
 * empties its cache (attributes such as the shared memory carveout change its other answers,
 * occupancy included); other functions' answers do not depend on it. */
static pthread_mutex_t fcache_lock = PTHREAD_MUTEX_INITIALIZER;

static bool fcache_find(const struct shim_func *f, uint16_t op, const void *req, size_t n, uint64_t *value)
{
    const struct shim_fcache *c = f->cache;
    if (c == NULL)
        return false;
    for (unsigned i = 0; i < c->n; i++)
        if (c->e[i].op == op && c->e[i].len == n && memcmp(c->e[i].key, req, n) == 0) {
            *value = c->e[i].value;
            return true;
        }
    return false;
}

static void fcache_drop(struct shim_func *f)
{
    pthread_mutex_lock(&fcache_lock);
    free(f->cache);
    f->cache = NULL;
    pthread_mutex_unlock(&fcache_lock);
}

CUresult shim_func_query(struct shim_func *f, uint16_t op, const void *req, size_t req_size,
                         uint64_t *value)
{
    if (req_size > FCACHE_KEY)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&fcache_lock);
    bool hit = fcache_find(f, op, req, req_size, value);
    uint64_t gen = f->cache_gen;
    pthread_mutex_unlock(&fcache_lock);
    if (hit)
        return CUDA_SUCCESS;
    CUresult r;
    if (op == IDM_OP_FUNC_GET_ATTR) {
        struct idm_func_attr_rep rep = { 0 };
        r = shim_call(op, req, req_size, NULL, 0, &rep, sizeof rep);
        *value = (uint32_t)rep.value;
    } else {
        struct idm_u64_rep rep = { 0 };
        r = shim_call(op, req, req_size, NULL, 0, &rep, sizeof rep);
        *value = rep.value;
    }
    if (r != CUDA_SUCCESS)
        return r; /* errors are not kept: asked again, answered again */
    pthread_mutex_lock(&fcache_lock);
    if (gen == f->cache_gen && f->magic == SHIM_FUNC_MAGIC) { /* no set meanwhile */
        struct shim_fcache *c = f->cache;
        if (c == NULL)
            c = f->cache = calloc(1, sizeof *c);
        if (c != NULL) {
            unsigned i = c->n < FCACHE_SLOTS ? c->n++ : c->next++ % FCACHE_SLOTS;
            c->e[i].op = op;
            c->e[i].len = (uint16_t)req_size;
            memcpy(c->e[i].key, req, req_size);
            c->e[i].value = *value;
        }
    }
    pthread_mutex_unlock(&fcache_lock);
    return CUDA_SUCCESS;
}

SHIM_API CUresult cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction func)
{
    NEED_INIT();
    struct shim_func *f = get_func(func);
    if (f == NULL || pi == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_func_attr_req req = { f->handle, attrib, 0 };
    uint64_t v = 0;
    CUresult r = shim_func_query(f, IDM_OP_FUNC_GET_ATTR, &req, sizeof req, &v);
    if (r == CUDA_SUCCESS)
        *pi = (int)(int32_t)(uint32_t)v;
    return r;
}

SHIM_API CUresult cuFuncSetAttribute(CUfunction func, CUfunction_attribute attrib, int value)
{
    NEED_INIT();
    struct shim_func *f = get_func(func);
    if (f == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    struct idm_func_attr_req req = { f->handle, attrib, value };
    pthread_mutex_lock(&fcache_lock); /* before the call: an answer fetched meanwhile is not kept */
    f->cache_gen++;
    if (f->cache != NULL)
        f->cache->n = f->cache->next = 0;
    pthread_mutex_unlock(&fcache_lock);
    return shim_call(IDM_OP_FUNC_SET_ATTR, &req, sizeof req, NULL, 0, NULL, 0);
}

SHIM_API CUresult cuFuncSetCacheConfig(CUfunction func, CUfunc_cache config)
{
    NEED_INIT();
    return get_func(func) != NULL ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

/* ex: the attributes of a cuLaunchKernelEx (NULL or none: a plain launch). */
static CUresult launch(struct shim_func *f, const uint32_t grid[3], const uint32_t block[3],
                       uint32_t shmem, CUstream st, void **params, void **extra,
                       const struct idm_launch_ex_req *ex)
{
    const void *buf = NULL;
    size_t buf_size = 0;
    if (params == NULL && extra != NULL) {
        for (size_t i = 0; extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
            if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER)
                buf = extra[i + 1];
            else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE)
                memcpy(&buf_size, extra[i + 1], sizeof buf_size);
            else
                return CUDA_ERROR_INVALID_VALUE;
        }
        if (buf == NULL || buf_size < f->param_size)
            return CUDA_ERROR_INVALID_VALUE;
    } else if (params == NULL && f->nparams > 0) {
        return CUDA_ERROR_INVALID_VALUE;
    }
    struct idm_launch_req req = { f->handle, shim_stream(st), { grid[0], grid[1], grid[2] },
                                  { block[0], block[1], block[2] }, shmem, f->param_size };
    uint16_t op = ex != NULL && ex->nattrs > 0 ? IDM_OP_LAUNCH_EX : IDM_OP_LAUNCH;
    size_t req_size = op == IDM_OP_LAUNCH_EX ? sizeof *ex : sizeof req;
    CUresult r = CUDA_SUCCESS;
    pthread_mutex_lock(&shim.lock);
    uint8_t *body = shim.dead ? NULL : idm_client_begin(shim.ch, op, 0, f->param_size, NULL);
    if (body == NULL) {
        r = CUDA_ERROR_DEVICE_UNAVAILABLE;
    } else {
        if (op == IDM_OP_LAUNCH_EX)
            memcpy(body, ex, sizeof *ex);
        memcpy(body, &req, sizeof req); /* the base of both requests */
        uint8_t *pb = body + req_size;
        if (buf != NULL) {
            memcpy(pb, buf, f->param_size);
        } else {
            memset(pb, 0, f->param_size);
            for (uint32_t i = 0; i < f->nparams; i++)
                memcpy(pb + f->params[i].offset, params[i], f->params[i].size);
        }
        if (idm_client_send(shim.ch) < 0)
            r = CUDA_ERROR_DEVICE_UNAVAILABLE;
    }
    pthread_mutex_unlock(&shim.lock);
    return r;
}

SHIM_API CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                 unsigned int bx, unsigned int by, unsigned int bz,
                                 unsigned int shmem, CUstream hStream, void **kernelParams,
                                 void **extra)
{
    NEED_INIT();
    struct shim_func *fn = get_func(f);
    if (fn == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    if (gx == 0 || gy == 0 || gz == 0 || bx == 0 || by == 0 || bz == 0)
        return CUDA_ERROR_INVALID_VALUE;
    const uint32_t grid[3] = { gx, gy, gz }, block[3] = { bx, by, bz };
    return launch(fn, grid, block, shmem, hStream, kernelParams, extra, NULL);
}

SHIM_API CUresult cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **kernelParams,
                                   void **extra)
{
    NEED_INIT();
    if (c == NULL || (c->numAttrs > 0 && c->attrs == NULL))
        return CUDA_ERROR_INVALID_VALUE;
    struct shim_func *fn = get_func(f);
    if (fn == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    if (c->gridDimX == 0 || c->gridDimY == 0 || c->gridDimZ == 0 || c->blockDimX == 0 ||
        c->blockDimY == 0 || c->blockDimZ == 0)
        return CUDA_ERROR_INVALID_VALUE;
    /* The attributes travel as values; the broker refuses those holding pointers or handles. */
    struct idm_launch_ex_req ex;
    memset(&ex, 0, sizeof ex);
    for (unsigned i = 0; i < c->numAttrs; i++) {
        if (c->attrs[i].id == 0)
            continue;
        if (ex.nattrs == IDM_LAUNCH_ATTRS)
            return CUDA_ERROR_NOT_SUPPORTED;
        ex.attrs[ex.nattrs].id = c->attrs[i].id;
        memcpy(ex.attrs[ex.nattrs].value, c->attrs[i].value, sizeof ex.attrs[0].value);
        ex.nattrs++;
    }
    const uint32_t grid[3] = { c->gridDimX, c->gridDimY, c->gridDimZ };
    const uint32_t block[3] = { c->blockDimX, c->blockDimY, c->blockDimZ };
    return launch(fn, grid, block, c->sharedMemBytes, c->hStream, kernelParams, extra, &ex);
}

/* ---- streams ---- */

SHIM_API CUresult cuStreamCreateWithPriority(CUstream *ph, unsigned int flags, int priority)
{
    NEED_INIT();
    if (ph == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_stream_create_req req = { flags, priority };
    struct idm_handle_rep rep = { 0 };
    CUresult r = shim_call(IDM_OP_STREAM_CREATE, &req, sizeof req, NULL, 0, &rep, sizeof rep);
    if (r == CUDA_SUCCESS)
        *ph = (CUstream)(uintptr_t)rep.handle;
    return r;
}

SHIM_API CUresult cuStreamCreate(CUstream *ph, unsigned int flags)
{
    return cuStreamCreateWithPriority(ph, flags, 0);
}

static CUresult handle_call(uint16_t op, uint64_t h)
{
    NEED_INIT();
    struct idm_handle_req req = { h };
    return shim_call(op, &req, sizeof req, NULL, 0, NULL, 0);
}

SHIM_API CUresult cuStreamDestroy_v2(CUstream s)
{
    if (shim_stream(s) == 0)
        return CUDA_ERROR_INVALID_HANDLE;
    CUresult r = handle_call(IDM_OP_STREAM_DESTROY, shim_stream(s));
    if (r == CUDA_SUCCESS)
        shim_stream_obj_gone(s);
    return r;
}
SHIM_API CUresult cuStreamDestroy(CUstream s) __attribute__((alias("cuStreamDestroy_v2")));

SHIM_API CUresult cuStreamQuery(CUstream s)
{
    return handle_call(IDM_OP_STREAM_QUERY, shim_stream(s));
}

SHIM_API CUresult cuStreamSynchronize(CUstream s)
{
    return handle_call(IDM_OP_STREAM_SYNC, shim_stream(s));
}

SHIM_API CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned int flags)
{
    NEED_INIT();
    struct idm_stream_event_req req = { shim_stream(s), (uint64_t)(uintptr_t)e, flags, 0 };
    return shim_post(IDM_OP_STREAM_WAIT_EVENT, 0, &req, sizeof req, NULL, 0);
}

/* ---- events ---- */

SHIM_API CUresult cuEventCreate(CUevent *ph, unsigned int flags)
{
    NEED_INIT();
    if (ph == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_event_create_req req = { flags, 0 };
    struct idm_handle_rep rep = { 0 };
    CUresult r = shim_call(IDM_OP_EVENT_CREATE, &req, sizeof req, NULL, 0, &rep, sizeof rep);
    if (r == CUDA_SUCCESS)
        *ph = (CUevent)(uintptr_t)rep.handle;
    return r;
}

SHIM_API CUresult cuEventRecord(CUevent e, CUstream s)
{
    NEED_INIT();
    if (e == NULL)
        return CUDA_ERROR_INVALID_HANDLE;
    struct idm_stream_event_req req = { shim_stream(s), (uint64_t)(uintptr_t)e, 0, 0 };
    return shim_post(IDM_OP_EVENT_RECORD, 0, &req, sizeof req, NULL, 0);
}

SHIM_API CUresult cuEventRecordWithFlags(CUevent e, CUstream s, unsigned int flags)
{
    return cuEventRecord(e, s);
}

SHIM_API CUresult cuEventQuery(CUevent e)
{
    return handle_call(IDM_OP_EVENT_QUERY, (uint64_t)(uintptr_t)e);
}

SHIM_API CUresult cuEventSynchronize(CUevent e)
{
    return handle_call(IDM_OP_EVENT_SYNC, (uint64_t)(uintptr_t)e);
}

SHIM_API CUresult cuEventDestroy_v2(CUevent e)
{
    return handle_call(IDM_OP_EVENT_DESTROY, (uint64_t)(uintptr_t)e);
}
SHIM_API CUresult cuEventDestroy(CUevent e) __attribute__((alias("cuEventDestroy_v2")));

SHIM_API CUresult cuEventElapsedTime(float *ms, CUevent a, CUevent b)
{
    NEED_INIT();
    if (ms == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    struct idm_event_pair_req req = { (uint64_t)(uintptr_t)a, (uint64_t)(uintptr_t)b };
    struct idm_elapsed_rep rep = { 0 };
    CUresult r = shim_call(IDM_OP_EVENT_ELAPSED, &req, sizeof req, NULL, 0, &rep, sizeof rep);
    if (r == CUDA_SUCCESS)
        *ms = rep.ms;
    return r;
}
SHIM_API CUresult cuEventElapsedTime_v2(float *ms, CUevent a, CUevent b) __attribute__((alias("cuEventElapsedTime")));

#define ALIAS(ret, name, target, args) SHIM_API ret name args __attribute__((alias(#target)));
ALIAS(CUresult, cuLaunchKernel_ptsz, cuLaunchKernel, (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream, void **, void **))
ALIAS(CUresult, cuLaunchKernelEx_ptsz, cuLaunchKernelEx, (const CUlaunchConfig *, CUfunction, void **, void **))
ALIAS(CUresult, cuStreamQuery_ptsz, cuStreamQuery, (CUstream))
ALIAS(CUresult, cuStreamSynchronize_ptsz, cuStreamSynchronize, (CUstream))
ALIAS(CUresult, cuStreamWaitEvent_ptsz, cuStreamWaitEvent, (CUstream, CUevent, unsigned))
ALIAS(CUresult, cuEventRecord_ptsz, cuEventRecord, (CUevent, CUstream))
ALIAS(CUresult, cuEventRecordWithFlags_ptsz, cuEventRecordWithFlags, (CUevent, CUstream, unsigned))
