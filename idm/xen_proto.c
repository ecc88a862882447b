/* xen_proto.c: the pure parts of the Xen transport, shared by the guest and the host side and
 * unit-tested without Xen: the xenstore channel record (format and strict parse), entry names,
 * and the xenstore wire messages (struct idm_xs_hdr + payload) that the guest speaks on
 * /dev/xen/xenbus. Everything parsed here comes from a guest and is treated as hostile. */
#include "idm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

_Static_assert(sizeof(struct idm_hello) <= IDM_XEN_PAGE, "the hello must fit in page 1");
_Static_assert(IDM_XEN_CTL_OFF >= sizeof(struct idm_shm_hdr), "ctl after the ring header");
_Static_assert(IDM_XEN_CTL_OFF + sizeof(struct idm_xen_ctl) <= IDM_XEN_PAGE, "ctl in page 0");
_Static_assert(IDM_XEN_MAX_MSG <= IDM_XEN_RING_SIZE / 2, "clients require max_msg <= ring/2");

bool idm_xen_name_valid(const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n == 0 || n > IDM_XEN_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

/* Parses a decimal uint32 at *p (no sign, no leading zero unless "0"); advances *p. */
static int parse_u32(const char **p, const char *end, uint32_t *out)
{
    const char *s = *p;
    if (s >= end || *s < '0' || *s > '9')
        return -EINVAL;
    if (*s == '0' && s + 1 < end && s[1] >= '0' && s[1] <= '9')
        return -EINVAL;
    uint64_t v = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return -EINVAL;
        s++;
    }
    *out = (uint32_t)v;
    *p = s;
    return 0;
}

static int expect(const char **p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
        return -EINVAL;
    *p += n;
    return 0;
}

int idm_xen_record_parse(const char *s, size_t len, struct idm_xen_record *out)
{
    if (s == NULL || len == 0 || len > IDM_XEN_RECORD_MAX || memchr(s, 0, len) != NULL)
        return -EINVAL;
    const char *p = s, *end = s + len;
    memset(out, 0, sizeof *out);
    if (expect(&p, end, "v=1 port=") < 0 || parse_u32(&p, end, &out->port) < 0 ||
        expect(&p, end, " pages=") < 0 || parse_u32(&p, end, &out->npages) < 0 ||
        expect(&p, end, " refs=") < 0)
        return -EINVAL;
    /* the layout is fixed: any other page count is refused before a single grant is mapped */
    if (out->npages != IDM_XEN_PAGES || out->port == 0)
        return -EINVAL;
    for (uint32_t i = 0; i < out->npages; i++) {
        if (i > 0 && expect(&p, end, ",") < 0)
            return -EINVAL;
        if (parse_u32(&p, end, &out->refs[i]) < 0)
            return -EINVAL;
    }
    return p == end ? 0 : -EINVAL;
}

int idm_xen_record_format(const struct idm_xen_record *r, char *buf, size_t cap)
{
    if (r->npages == 0 || r->npages > IDM_XEN_PAGES)
        return -EINVAL;
    int n = snprintf(buf, cap, "v=1 port=%u pages=%u refs=", r->port, r->npages);
    if (n < 0 || (size_t)n >= cap)
        return -ENOSPC;
    size_t len = (size_t)n;
    for (uint32_t i = 0; i < r->npages; i++) {
        n = snprintf(buf + len, cap - len, i ? ",%u" : "%u", r->refs[i]);
        if (n < 0 || (size_t)n >= cap - len)
            return -ENOSPC;
        len += (size_t)n;
    }
    return len > IDM_XEN_RECORD_MAX ? -ENOSPC : (int)len;
}

int idm_xs_encode(uint32_t type, uint32_t req_id, const char *const *parts, size_t nparts,
                  bool last_nul, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i] == NULL)
            return -EINVAL;
        size_t n = strlen(parts[i]) + (i + 1 < nparts || last_nul ? 1 : 0);
        if (__builtin_add_overflow(len, n, &len))
            return -ENOSPC;
    }
    if (len > IDM_XS_PAYLOAD_MAX || cap < sizeof(struct idm_xs_hdr) ||
        len > cap - sizeof(struct idm_xs_hdr))
        return -ENOSPC;
    struct idm_xs_hdr h = { type, req_id, 0, (uint32_t)len };
    memcpy(buf, &h, sizeof h);
    uint8_t *p = buf + sizeof h;
    for (size_t i = 0; i < nparts; i++) {
        size_t n = strlen(parts[i]) + (i + 1 < nparts || last_nul ? 1 : 0);
        memcpy(p, parts[i], n); /* includes the NUL when wanted */
        p += n;
    }
    return (int)(sizeof h + len);
}

int idm_xs_decode(const uint8_t *buf, size_t n, struct idm_xs_hdr *hdr)
{
    if (n < sizeof *hdr)
        return -EAGAIN;
    memcpy(hdr, buf, sizeof *hdr);
    if (hdr->len > IDM_XS_PAYLOAD_MAX)
        return -EPROTO;
    if (n - sizeof *hdr < hdr->len)
        return -EAGAIN;
    return 0;
}
