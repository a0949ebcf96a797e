/* vcac libcacard-compatible API: cards and applets. */
#ifndef VCARD_H
#define VCARD_H 1

#include <stddef.h>
#include "vcardt.h"

/* GET RESPONSE buffers. */
VCardBufferResponse *vcard_buffer_response_new(const unsigned char *buffer, int size);
void vcard_buffer_response_delete(VCardBufferResponse *buffer_response);

void vcard_reset(VCard *card, VCardPower power);

/* Applets: owned by the caller until vcard_add_applet. */
VCardApplet *vcard_new_applet(VCardProcessAPDU applet_process_function,
                              VCardResetApplet applet_reset_function,
                              const unsigned char *aid, int aid_len);
void vcard_delete_applet(VCardApplet *applet);
void vcard_set_applet_private(VCardApplet *applet, VCardAppletPrivate *_private,
                              VCardAppletPrivateFree private_free);
void vcard_set_type(VCard *card, VCardType type);
VCardStatus vcard_add_applet(VCard *card, VCardApplet *applet);
VCardApplet *vcard_find_applet(VCard *card, const unsigned char *aid, int aid_len);
void vcard_select_applet(VCard *card, int channel, VCardApplet *applet);
VCardAppletPrivate *vcard_get_current_applet_private(VCard *card, int channel);
unsigned char *vcard_applet_get_aid(VCardApplet *applet, int *aid_len);
VCardStatus vcard_process_applet_apdu(VCard *card, VCardAPDU *apdu,
                                      VCardResponse **response);

/* Cards: reference counted (vcard_new gives one reference). */
VCard *vcard_new(VCardEmul *_private, VCardEmulFree private_free);
VCard *vcard_reference(VCard *);
void vcard_free(VCard *);
void vcard_get_atr(VCard *card, unsigned char *atr, int *atr_len);
void vcard_set_atr_func(VCard *card, VCardGetAtr vcard_get_atr);
VCardBufferResponse *vcard_get_buffer_response(VCard *card);
void vcard_set_buffer_response(VCard *card, VCardBufferResponse *buffer);
VCardType vcard_get_type(VCard *card);
VCardEmul *vcard_get_private(VCard *card);

/* Declared by libcacard 2.8 but not exported by it (nor by this library). */
int vcard_get_login_count(VCard *card);
void vcard_set_compat(VCard *card, unsigned int set);
void vcard_set_serial(VCard *card, unsigned char *serial, size_t len);
unsigned char *vcard_get_serial(VCard *card, int *len);

#endif
