/* idm_internal.h: what idm/'s transports share and nothing outside idm/ may use. */
#ifndef IDM_INTERNAL_H
#define IDM_INTERNAL_H

#include "idm.h"

/* Points ch->hdr, tx and rx at the shared area per ch->hello (role decides which ring is tx). */
void idm_chan_map_rings(struct idm_chan *ch);

#endif
