/* handles.c: per-channel opaque handle tables and device-memory range tables. A handle is only
 * ever an index into the calling channel's own table, checked for type, generation and salt, so
 * a forged or foreign handle is an error and never reaches another pod's object. */
#include "handles.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

int ht_init(struct htable *t)
{
    memset(t, 0, sizeof *t);
    uint16_t salt = 0;
    if (getrandom(&salt, sizeof salt, GRND_NONBLOCK) != sizeof salt)
        salt = (uint16_t)(uintptr_t)t;
    t->salt = salt | 1;
    t->free_head = UINT32_MAX;
    return 0;
}

void ht_fini(struct htable *t)
{
    free(t->e);
    memset(t, 0, sizeof *t);
}

uint64_t ht_insert(struct htable *t, int type, void *obj)
{
    uint32_t idx;
    if (t->free_head != UINT32_MAX) {
        idx = t->free_head;
        t->free_head = t->e[idx].next_free;
    } else {
        if (t->cap == (1u << 24))
            return 0;
        uint32_t ncap = t->cap ? t->cap * 2 : 64;
        struct hentry *n = realloc(t->e, ncap * sizeof *n);
        if (n == NULL)
            return 0;
        memset(n + t->cap, 0, (ncap - t->cap) * sizeof *n);
        t->e = n;
        for (uint32_t i = ncap; i-- > t->cap + 1;) {
            n[i].next_free = t->free_head;
            t->free_head = i;
        }
        idx = t->cap;
        t->cap = ncap;
    }
    struct hentry *e = &t->e[idx];
    e->gen = (e->gen + 1) & 0xffff;
    if (e->gen == 0)
        e->gen = 1;
    e->type = (uint16_t)type;
    e->obj = obj;
    t->count++;
    return ((uint64_t)t->salt << 48) | ((uint64_t)e->gen << 32) | ((uint64_t)idx + 1);
}

static struct hentry *ht_find(struct htable *t, uint64_t h, int type)
{
    uint64_t low = h & 0xffffffffu;
    if (low == 0 || low > t->cap || (h >> 48) != t->salt)
        return NULL;
    struct hentry *e = &t->e[low - 1];
    if (e->type != type || e->gen != ((h >> 32) & 0xffff))
        return NULL;
    return e;
}

void *ht_get(struct htable *t, uint64_t h, int type)
{
    struct hentry *e = ht_find(t, h, type);
    return e ? e->obj : NULL;
}

void *ht_remove(struct htable *t, uint64_t h, int type)
{
    struct hentry *e = ht_find(t, h, type);
    if (e == NULL)
        return NULL;
    void *obj = e->obj;
    e->type = OBJ_NONE;
    e->obj = NULL;
    e->next_free = t->free_head;
    t->free_head = (uint32_t)(e - t->e);
    t->count--;
    return obj;
}

/* index of the first range with base > p */
static size_t at_upper(const struct atable *t, uint64_t p)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->r[mid].base <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int at_insert(struct atable *t, uint64_t base, uint64_t size, int kind)
{
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 32;
        void *n = realloc(t->r, ncap * sizeof *t->r);
        if (n == NULL)
            return -1;
        t->r = n;
        t->cap = ncap;
    }
    size_t i = at_upper(t, base);
    memmove(t->r + i + 1, t->r + i, (t->n - i) * sizeof *t->r);
    t->r[i] = (struct arange){ base, size, kind };
    t->n++;
    return 0;
}

const struct arange *at_find(const struct atable *t, uint64_t p, uint64_t len)
{
    size_t i = at_upper(t, p);
    if (i == 0)
        return NULL;
    const struct arange *r = &t->r[i - 1];
    uint64_t off = p - r->base;
    if (off >= r->size || len > r->size - off)
        return NULL;
    return r;
}

bool at_remove(struct atable *t, uint64_t base, int kind, uint64_t *size)
{
    size_t i = at_upper(t, base);
    if (i == 0 || t->r[i - 1].base != base || t->r[i - 1].kind != kind)
        return false;
    if (size != NULL)
        *size = t->r[i - 1].size;
    memmove(t->r + i - 1, t->r + i, (t->n - i) * sizeof *t->r);
    t->n--;
    return true;
}

void at_fini(struct atable *t)
{
    free(t->r);
    memset(t, 0, sizeof *t);
}
