/* vcac libcacard-compatible API, umbrella header. Unlike libcacard's own,
 * it needs no GLib: the API uses only C types. */
#ifndef LIBCACARD_H
#define LIBCACARD_H

#ifdef __cplusplus
extern "C" {
#endif

#define __LIBCACARD_H_INSIDE__

#include "cac.h"
#include "card_7816.h"
#include "card_7816t.h"
#include "eventt.h"
#include "vcard_emul.h"
#include "vcard_emul_type.h"
#include "vcard.h"
#include "vcardt.h"
#include "vevent.h"
#include "vreader.h"
#include "vreadert.h"
#include "vscard_common.h"

#ifdef __cplusplus
}
#endif

#endif
