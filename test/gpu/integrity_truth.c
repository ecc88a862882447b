/* integrity_truth.c (device machine): does the shim's answer to the runtime's driver check
 * (shim/darkhash.c) equal the real driver's? Loads the real libcuda.so.1, takes its export
 * tables 6bd5fb6c and d4082055, calls d4082055 slot 1 for several runtime versions and computes
 * the same value with shim_check_value() from the same facts (the driver's version, this process
 * and thread, the tables' addresses, every device's UUID and PCI location). Prints one line per
 * version and a vector line that test/unit/shim_darkhash_test.c keeps. Exit 0 only if all match.
 *   integrity_truth [REAL_LIBCUDA] */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "darkhash.h"

typedef int (*init_fn)(unsigned);
typedef int (*int_fn)(int *);
typedef int (*dev_fn)(int *, int);
typedef int (*uuid_fn)(uint8_t *, int);
typedef int (*attr_fn)(int *, int, int);
typedef int (*table_fn)(const void **, const uint8_t *);
typedef int (*check_fn)(uint32_t, uint64_t, uint8_t *);

static const uint8_t cudart_uuid[16] = { 0x6b, 0xd5, 0xfb, 0x6c, 0x5b, 0xf4, 0xe7, 0x4a,
                                         0x89, 0x87, 0xd9, 0x39, 0x12, 0xfd, 0x9d, 0xf9 };
static const uint8_t check_uuid[16] = { 0xd4, 0x08, 0x20, 0x55, 0xbd, 0xe6, 0x70, 0x4b,
                                        0x8d, 0x34, 0xba, 0x12, 0x3c, 0x66, 0xe1, 0xf2 };

static void hex(const char *label, const uint8_t *b, int n)
{
    printf("%s", label);
    for (int i = 0; i < n; i++)
        printf("%02x", b[i]);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "libcuda.so.1";
    void *lib = dlopen(path, RTLD_NOW);
    if (lib == NULL) {
        fprintf(stderr, "integrity_truth: %s\n", dlerror());
        return 2;
    }
    init_fn cu_init = (init_fn)dlsym(lib, "cuInit");
    int_fn drv_version = (int_fn)dlsym(lib, "cuDriverGetVersion");
    int_fn dev_count = (int_fn)dlsym(lib, "cuDeviceGetCount");
    uuid_fn dev_uuid = (uuid_fn)dlsym(lib, "cuDeviceGetUuid");
    attr_fn dev_attr = (attr_fn)dlsym(lib, "cuDeviceGetAttribute");
    table_fn get_table = (table_fn)dlsym(lib, "cuGetExportTable");
    if (!cu_init || !drv_version || !dev_count || !dev_uuid || !dev_attr || !get_table ||
        cu_init(0) != 0) {
        fprintf(stderr, "integrity_truth: driver symbols or cuInit failed\n");
        return 2;
    }
    int drv = 0, count = 0;
    const void *cudart = NULL, *check = NULL;
    if (drv_version(&drv) != 0 || dev_count(&count) != 0 || get_table(&cudart, cudart_uuid) != 0 ||
        get_table(&check, check_uuid) != 0 || count < 1) {
        fprintf(stderr, "integrity_truth: version/count/tables failed\n");
        return 2;
    }
    if (count > 8)
        count = 8;
    struct shim_check_dev devs[8];
    memset(devs, 0, sizeof devs);
    for (int d = 0; d < count; d++) {
        int dom = 0, bus = 0, devno = 0;
        if (dev_uuid(devs[d].uuid, d) != 0 || dev_attr(&dom, 50, d) != 0 ||
            dev_attr(&bus, 33, d) != 0 || dev_attr(&devno, 34, d) != 0) {
            fprintf(stderr, "integrity_truth: device %d queries failed\n", d);
            return 2;
        }
        devs[d].pci_domain = (uint32_t)dom;
        devs[d].pci_bus = (uint32_t)bus;
        devs[d].pci_device = (uint32_t)devno;
    }
    check_fn fn = ((check_fn const *)check)[1];
    uint32_t tid_candidates[2] = { (uint32_t)syscall(SYS_gettid), (uint32_t)pthread_self() };
    const char *tid_names[2] = { "gettid", "pthread_self" };
    uint32_t versions[] = { 13000, 13001, 13002, 12080, 13005, 13009 };
    uint64_t now = (uint64_t)time(NULL);
    int bad = 0;
    printf("driver %d devices %d pid %d gettid %u cudart %p check %p fn %p\n", drv, count,
           (int)getpid(), tid_candidates[0], cudart, check, (void *)fn);
    for (size_t v = 0; v < sizeof versions / sizeof versions[0]; v++) {
        uint8_t real[16] = { 0 }, mine[16];
        int r = fn(versions[v], now, real);
        const char *matched = NULL;
        uint32_t tid = 0;
        for (int k = 0; k < 2 && matched == NULL; k++) {
            struct shim_check_in in = { (uint32_t)drv, versions[v], (uint32_t)getpid(),
                                        tid_candidates[k], (uintptr_t)cudart, (uintptr_t)check,
                                        (uintptr_t)fn, now };
            shim_check_value(&in, devs, (unsigned)count, mine);
            if (memcmp(real, mine, 16) == 0) {
                matched = tid_names[k];
                tid = tid_candidates[k];
            }
        }
        printf("version %u rc %d", versions[v], r);
        hex(" driver ", real, 16);
        printf(" %s\n", matched ? matched : "MISMATCH");
        if (matched == NULL)
            bad++;
        if (versions[v] == 13002) { /* a vector for the CI test: all inputs and the answer */
            printf("vector drv=%d rt=%u pid=%d tid=%u cudart=%#" PRIxPTR " check=%#" PRIxPTR
                   " fn=%#" PRIxPTR " time=%" PRIu64 " pci=%u:%u:%u",
                   drv, versions[v], (int)getpid(), tid, (uintptr_t)cudart,
                   (uintptr_t)check, (uintptr_t)fn, now, devs[0].pci_domain, devs[0].pci_bus,
                   devs[0].pci_device);
            hex(" uuid=", devs[0].uuid, 16);
            hex(" answer=", real, 16);
            printf("\n");
        }
    }
    printf("%s\n", bad ? "INTEGRITY-TRUTH FAIL" : "INTEGRITY-TRUTH OK");
    return bad ? 1 : 0;
}
