/* soft_kernels.h: registers the test kernels with the `soft` TEST DEVICE. */
#ifndef SOFT_KERNELS_H
#define SOFT_KERNELS_H
int soft_kernels_register(void);
#endif
