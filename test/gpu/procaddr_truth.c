/* procaddr_truth: what the real driver answers to cuGetProcAddress, for the table test of
 * libvgpu.so (test/unit/procaddr_test.c). Reads "name version" lines (test/gpu/procaddr-queries.txt:
 * every name and version the CUDA 13 runtime asked for, plus 12000 and 13000 for each) and prints
 * "name version symbol" with the exported symbol the answer is (dladdr), or NOT_FOUND.
 * Runs on the device machine: procaddr_truth [LIBCUDA] < queries > test/gpu/procaddr-cuda13.txt */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>

typedef int (*gpa_fn)(const char *, void **, int, uint64_t, int *);

int main(int argc, char **argv)
{
    void *lib = dlopen(argc > 1 ? argv[1] : "libcuda.so.1", RTLD_NOW);
    if (lib == NULL) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    gpa_fn gpa = (gpa_fn)dlsym(lib, "cuGetProcAddress_v2");
    int (*init)(unsigned) = (int (*)(unsigned))dlsym(lib, "cuInit");
    if (gpa == NULL || init == NULL || init(0) != 0) {
        fprintf(stderr, "no cuGetProcAddress_v2 or cuInit failed\n");
        return 1;
    }
    char name[128];
    int version;
    while (scanf("%127s %d", name, &version) == 2) {
        void *p = NULL;
        int status = 0;
        Dl_info di;
        if (gpa(name, &p, version, 0, &status) != 0 || p == NULL)
            printf("%s %d NOT_FOUND\n", name, version);
        else if (dladdr(p, &di) && di.dli_sname != NULL && di.dli_saddr == p)
            printf("%s %d %s\n", name, version, di.dli_sname);
        else
            printf("%s %d UNNAMED\n", name, version);
    }
    return 0;
}
