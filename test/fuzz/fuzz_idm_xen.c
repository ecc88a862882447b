/* fuzz_idm_xen: what a guest writes for the Xen transport of idm/ (idm/xen_proto.c), parsed by the
 * broker in dom0: the xenstore channel record, the entry name, and xenstore wire replies/headers.
 * The first input byte picks the parser. A record that parses must have exactly IDM_XEN_PAGES refs
 * and a non-zero port, and must format back to a record that parses to the same values. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm.h"

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz check failed: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t which = data[0] % 3;
	data++;
	size--;
	/* an exact-size heap copy: ASan sees any read past the guest's bytes */
	char *buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	if (which == 0) {
		static struct idm_xen_record rec, again;
		if (idm_xen_record_parse(buf, size, &rec) == 0) {
			check(rec.npages == IDM_XEN_PAGES && rec.port != 0, "parsed record in bounds");
			static char out[IDM_XEN_RECORD_MAX + 1];
			int n = idm_xen_record_format(&rec, out, sizeof out);
			check(n > 0 && (size_t)n == size && memcmp(out, buf, size) == 0, "record round trip");
			check(idm_xen_record_parse(out, (size_t)n, &again) == 0 &&
				      memcmp(&rec, &again, sizeof rec) == 0,
			      "re-parse");
		}
	} else if (which == 1) {
		if (idm_xen_name_valid(buf)) {
			size_t n = strlen(buf);
			check(n >= 1 && n <= IDM_XEN_NAME_MAX && strspn(buf, "abcdefghijklmnopqrstuvwxyz0123456789-") == n,
			      "valid name charset");
		}
	} else {
		struct idm_xs_hdr h;
		if (idm_xs_decode(data, size, &h) == 0)
			check(h.len <= IDM_XS_PAYLOAD_MAX && sizeof h + h.len <= size, "xs message in bounds");
	}
	free(buf);
	return 0;
}
