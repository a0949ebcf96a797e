/* Byte layout of the public structs and the enum values. */
#include <stddef.h>
#include "common.h"

#define P(name, value) printf("%s %ld\n", name, (long)(value))

int main(void) {
    P("sizeof.VEvent", sizeof(VEvent));
    P("offset.VEvent.next", offsetof(VEvent, next));
    P("offset.VEvent.type", offsetof(VEvent, type));
    P("offset.VEvent.reader", offsetof(VEvent, reader));
    P("offset.VEvent.card", offsetof(VEvent, card));
    P("sizeof.VEventType", sizeof(VEventType));
    P("sizeof.VCardBufferResponse", sizeof(VCardBufferResponse));
    P("offset.VCardBufferResponse.current", offsetof(VCardBufferResponse, current));
    P("offset.VCardBufferResponse.len", offsetof(VCardBufferResponse, len));
    P("sizeof.VCardResponse", sizeof(VCardResponse));
    P("offset.VCardResponse.b_status", offsetof(VCardResponse, b_status));
    P("offset.VCardResponse.b_sw2", offsetof(VCardResponse, b_sw2));
    P("offset.VCardResponse.b_len", offsetof(VCardResponse, b_len));
    P("offset.VCardResponse.b_total_len", offsetof(VCardResponse, b_total_len));
    P("offset.VCardResponse.b_type", offsetof(VCardResponse, b_type));
    P("sizeof.VCardAPDU", sizeof(VCardAPDU));
    P("offset.VCardAPDU.a_body", offsetof(VCardAPDU, a_body));
    P("offset.VCardAPDU.a_gen_type", offsetof(VCardAPDU, a_gen_type));
    P("offset.VCardAPDU.u", offsetof(VCardAPDU, u));
    P("sizeof.VCardAPDUHeader", sizeof(struct VCardAPDUHeader));
    P("sizeof.vreader_id_t", sizeof(vreader_id_t));
    P("sizeof.vcard_7816_status_t", sizeof(vcard_7816_status_t));
    P("sizeof.VSCMsgHeader", sizeof(VSCMsgHeader));
    P("enum.VEVENT_LAST", VEVENT_LAST);
    P("enum.VEVENT_CARD_REMOVE", VEVENT_CARD_REMOVE);
    P("enum.VREADER_OUT_OF_MEMORY", VREADER_OUT_OF_MEMORY);
    P("enum.VCARD_EMUL_INIT_ALREADY_INITED", VCARD_EMUL_INIT_ALREADY_INITED);
    P("enum.VCARD_EMUL_PASSTHRU", VCARD_EMUL_PASSTHRU);
    P("enum.VCARD_FAIL", VCARD_FAIL);
    P("enum.VCARD_DIRECT", VCARD_DIRECT);
    P("enum.VCARD_POWER_OFF", VCARD_POWER_OFF);
    P("enum.VCARD_STATIC", VCARD_STATIC);
    P("enum.VCARD_7816_PROPRIETARY", VCARD_7816_PROPRIETARY);
    P("const.MAX_CHANNEL", MAX_CHANNEL);
    P("const.VSCARD_MAGIC", VSCARD_MAGIC);
    P("const.VSCARD_VERSION", VSCARD_VERSION);
    P("const.VSC_FlushComplete", VSC_FlushComplete);
    P("const.VCARD7816_STATUS_ERROR_DATA_NOT_FOUND", VCARD7816_STATUS_ERROR_DATA_NOT_FOUND);
    P("const.CAC_GET_ACR", CAC_GET_ACR);
    /* The a_cla .. a_p2 macros read the raw header. */
    unsigned char raw[] = {0x80, 0xA4, 0x04, 0x0C, 0x02, 0x3F, 0x00};
    unsigned short st = 0;
    VCardAPDU *a = vcard_apdu_new(raw, sizeof raw, &st);
    CHECK(a != NULL);
    printf("apdu.header %02X%02X%02X%02X Lc=%d Le=%d body=%02X\n", a->a_cla, a->a_ins, a->a_p1,
           a->a_p2, a->a_Lc, a->a_Le, a->a_body[0]);
    vcard_apdu_delete(a);
    return 0;
}
