/* darkhash.h (internal to the shim, also linked by tests): the answer to the CUDA runtime's
 * driver check, export table d4082055 slot 1. The runtime asks the driver for a 16-byte value
 * computed from facts both sides know (versions, process and thread ids, where the driver's
 * tables live, every device's UUID and PCI location) and compares it with its own computation;
 * a mismatch makes every runtime call fail with cudaErrorIntegrityCheckFailed (103). The value is
 * an HMAC (RFC 2104) over MD2 (RFC 1319, 16-byte blocks) with a fixed key; the layout below was
 * measured against the real CUDA 13 driver (test/gpu/integrity_truth.c). */
#ifndef SHIM_DARKHASH_H
#define SHIM_DARKHASH_H

#include <stddef.h>
#include <stdint.h>

struct shim_md2 {
    uint8_t x[48];   /* state: x[0..16) is the digest */
    uint8_t sum[16]; /* running checksum */
    uint8_t n;       /* bytes in the current block */
    uint8_t last;    /* last checksum byte */
};

void shim_md2_init(struct shim_md2 *m);
void shim_md2_update(struct shim_md2 *m, const void *data, size_t len);
void shim_md2_final(struct shim_md2 *m, uint8_t digest[16]);

struct shim_check_dev {
    uint8_t uuid[16];
    uint32_t pci_domain, pci_bus, pci_device;
};

struct shim_check_in {
    uint32_t driver_version; /* what cuDriverGetVersion answers */
    uint32_t rt_version;     /* first argument of the slot */
    uint32_t pid, tid;       /* getpid(); the low 32 bits of pthread_self() */
    uint64_t cudart_table;   /* address of table 6bd5fb6c as cuGetExportTable answered it */
    uint64_t check_table;    /* address of table d4082055 */
    uint64_t check_fn;       /* address of the function in slot 1 of d4082055 */
    uint64_t timestamp;      /* second argument: Unix seconds */
};

void shim_check_value(const struct shim_check_in *in, const struct shim_check_dev *devs,
                      unsigned ndev, uint8_t out[16]);

#endif
