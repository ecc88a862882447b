/* handles.h (internal): per-channel handle and device-range tables. Not thread-safe: a channel
 * is served by one worker at a time. */
#ifndef BROKER_HANDLES_H
#define BROKER_HANDLES_H

#include "internal.h"

int ht_init(struct htable *t);
void ht_fini(struct htable *t);
/* 0 on failure (0 is never a valid handle) */
uint64_t ht_insert(struct htable *t, int type, void *obj);
void *ht_get(struct htable *t, uint64_t h, int type);
void *ht_remove(struct htable *t, uint64_t h, int type);

int at_insert(struct atable *t, uint64_t base, uint64_t size, int kind);
/* The range that holds all of [p, p+len), or NULL. Overflow-safe. */
const struct arange *at_find(const struct atable *t, uint64_t p, uint64_t len);
bool at_remove(struct atable *t, uint64_t base, int kind, uint64_t *size);
void at_fini(struct atable *t);

#endif
