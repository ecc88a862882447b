/* procaddr_test: libvgpu.so's cuGetProcAddress against the real CUDA 13 driver's answers
 * (test/gpu/procaddr-cuda13.txt: every name and version the CUDA 13 runtime asks for, plus 12000
 * and 13000 for each, answered by the driver on the device machine via procaddr_truth.c).
 * For each line: where the driver answers symbol S and the shim exports S, the shim must answer
 * exactly its S (the same ABI); otherwise the shim must answer CUDA_ERROR_NOT_FOUND, never some
 * other function. Runs in CI: no GPU and no broker needed (lookups only).
 *   procaddr_test LIBVGPU TRUTH */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef int (*gpa_fn)(const char *, void **, int, uint64_t, int *);
typedef int (*gpa_old_fn)(const char *, void **, int, uint64_t);

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s LIBVGPU TRUTH\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    FILE *f = fopen(argv[2], "r");
    if (lib == NULL || f == NULL) {
        fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
        return 1;
    }
    gpa_fn gpa = (gpa_fn)dlsym(lib, "cuGetProcAddress_v2");
    gpa_old_fn gpa_old = (gpa_old_fn)dlsym(lib, "cuGetProcAddress");
    if (gpa == NULL || gpa_old == NULL) {
        fprintf(stderr, "the shim lacks cuGetProcAddress(_v2)\n");
        return 1;
    }
    char name[128], want[128];
    int version, lines = 0, found = 0, bad = 0;
    while (fscanf(f, "%127s %d %127s", name, &version, want) == 3) {
        lines++;
        void *p = (void *)1, *p_old = (void *)1;
        int status = -1;
        int rc = gpa(name, &p, version, 0, &status);
        int rc_old = gpa_old(name, &p_old, version, 0);
        void *ours = strcmp(want, "NOT_FOUND") == 0 ? NULL : dlsym(lib, want);
        if (ours != NULL) {
            if (rc != 0 || p != ours || status != 0) {
                printf("BAD %s %d: driver answers %s, the shim exports it, but answered rc %d %p (want %p)\n",
                       name, version, want, rc, p, ours);
                bad++;
            }
            found++;
        } else if (rc != 500 /* CUDA_ERROR_NOT_FOUND */ || p != NULL) {
            Dl_info di;
            printf("BAD %s %d: driver answers %s, the shim has no %s, but answered rc %d %s\n", name, version,
                   want, want, rc, p && dladdr(p, &di) && di.dli_sname ? di.dli_sname : "?");
            bad++;
        }
        if (rc_old != rc || p_old != p) {
            printf("BAD %s %d: the four-argument form answers differently\n", name, version);
            bad++;
        }
    }
    fclose(f);
    printf("procaddr_test: %d lookups, %d answered with the shim's function of the driver's ABI, "
           "%d wrong\n", lines, found, bad);
    if (lines < 1000 || found < 100)
        printf("procaddr_test: too few lines or answers: the truth file or the shim is broken\n");
    return bad == 0 && lines >= 1000 && found >= 100 ? 0 : 1;
}
