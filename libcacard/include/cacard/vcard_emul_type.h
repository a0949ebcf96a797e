/* vcac libcacard-compatible API: card emulation types. */
#ifndef VCARD_EMUL_TYPE_H
#define VCARD_EMUL_TYPE_H 1

#include "vcardt.h"
#include "vreadert.h"

typedef enum {
    VCARD_EMUL_NONE = 0,
    VCARD_EMUL_CAC,
    VCARD_EMUL_PASSTHRU
} VCardEmulType;

VCardStatus vcard_init(VReader *vreader, VCard *vcard, VCardEmulType type,
                       const char *params, unsigned char * const *cert,
                       int cert_len[], VCardKey *key[], int cert_count);
VCardEmulType vcard_emul_type_select(VReader *vreader);
VCardEmulType vcard_emul_type_from_string(const char *type_string);

#endif
