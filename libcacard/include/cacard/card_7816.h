/* vcac libcacard-compatible API: building responses and APDUs. */
#ifndef CARD_7816_H
#define CARD_7816_H 1

#include "card_7816t.h"
#include "vcardt.h"

/* Responses (free with vcard_response_delete). Data longer than Le goes
 * to the card's buffer response and the answer is 61 xx. */
VCardResponse *vcard_response_new(VCard *card, const unsigned char *buf, int len,
                                  int Le, vcard_7816_status_t status);
VCardResponse *vcard_response_new_bytes(VCard *card, unsigned char *buf,
                                        int len, int Le,
                                        unsigned char sw1, unsigned char sw2);
VCardResponse *vcard_response_new_status_bytes(unsigned char sw1,
                                               unsigned char sw2);
/* Never NULL: falls back to a static 65 81 response. */
VCardResponse *vcard_make_response(vcard_7816_status_t status);
VCardResponse *vcard_response_new_data(const unsigned char *buf, int len);
void vcard_response_set_status_bytes(VCardResponse *response,
                                     unsigned char sw1, unsigned char sw2);
void vcard_response_delete(VCardResponse *response);   /* NULL ok */

/* APDUs: NULL and *status set (67 00) when malformed. */
VCardAPDU *vcard_apdu_new(unsigned char *raw_apdu, int len,
                          unsigned short *status);
void vcard_apdu_delete(VCardAPDU *apdu);               /* NULL ok */

/* Route one APDU through the card; *response is set on success. */
VCardStatus vcard_process_apdu(VCard *card, VCardAPDU *apdu,
                               VCardResponse **response);

#endif
