/* The card-construction API no Debian consumer uses but the ABI carries:
 * a card assembled from C applet callbacks (vcard_new, vcard_new_applet,
 * vcard_add_applet, vcard_set_applet_private), APDUs parsed with
 * vcard_apdu_new and run with vcard_process_apdu, responses built with the
 * vcard_response_* family, buffer responses and GET RESPONSE, and the same
 * card behind a reader (vreader_insert_card, vreader_xfr_bytes). No
 * vcard_emul_init: nothing here depends on a database. */
#include "common.h"

static int resets;
static int privates_freed;
static int emul_freed;

static const unsigned char AID_A[] = {0xF0, 0x01, 0x02, 0x03, 0x04};
static const unsigned char AID_B[] = {0xF0, 0x05, 0x06, 0x07, 0x08};

static VCardStatus process_a(VCard *card, VCardAPDU *apdu, VCardResponse **response) {
    static unsigned char big[300];
    for (int i = 0; i < 300; i++) big[i] = (unsigned char)i;
    switch (apdu->a_ins) {
    case 0x10:
        *response = vcard_response_new(card, (const unsigned char *)"hello", 5, apdu->a_Le,
                                       VCARD7816_STATUS_SUCCESS);
        return VCARD_DONE;
    case 0x11:
        *response = vcard_response_new(card, big, 300, apdu->a_Le, VCARD7816_STATUS_SUCCESS);
        return VCARD_DONE;
    case 0x12:
        return VCARD_NEXT;
    case 0x13:
        *response = vcard_response_new_status_bytes(0x6A, 0x81);
        return VCARD_DONE;
    case 0x14:
        return VCARD_FAIL;
    case 0x15: {
        VCardAppletPrivate *p = vcard_get_current_applet_private(card, apdu->a_channel);
        const char *s = p ? (const char *)p : "none";
        *response = vcard_response_new_data((const unsigned char *)s, (int)strlen(s));
        vcard_response_set_status_bytes(*response, 0x90, 0x00);
        return VCARD_DONE;
    }
    case 0x16: {
        /* Echo the body and the parsed header fields. */
        unsigned char out[280];
        int n = 0;
        out[n++] = (unsigned char)apdu->a_Lc;
        out[n++] = (unsigned char)apdu->a_Le;
        out[n++] = (unsigned char)apdu->a_channel;
        for (int i = 0; i < apdu->a_Lc && n < 270; i++) out[n++] = apdu->a_body[i];
        *response = vcard_response_new_bytes(card, out, n, apdu->a_Le, 0x90, 0x00);
        return VCARD_DONE;
    }
    default:
        *response = vcard_make_response(VCARD7816_STATUS_ERROR_INS_CODE_INVALID);
        return VCARD_DONE;
    }
}

static VCardStatus reset_a(VCard *card, int channel) {
    (void)card;
    (void)channel;
    resets++;
    return VCARD_DONE;
}

static void free_private(VCardAppletPrivate *p) {
    privates_freed++;
    free(p);
}

static void free_emul(VCardEmul *p) {
    emul_freed++;
    free(p);
}

static void print_response(const char *key, VCardStatus st, VCardResponse *r) {
    printf("%s %d:", key, (int)st);
    if (r) {
        for (int i = 0; i < r->b_len; i++) printf("%02X", r->b_data[i]);
        printf("/%02X%02X", r->b_sw1, r->b_sw2);
    } else {
        printf("NULL");
    }
    printf("\n");
}

/* vcard_apdu_new + vcard_process_apdu on `card`. */
static void process(VCard *card, const char *key, const char *hex) {
    unsigned char raw[300];
    int n = (int)unhex(hex, raw, sizeof raw);
    unsigned short status = 0;
    VCardAPDU *apdu = vcard_apdu_new(raw, n, &status);
    if (!apdu) {
        printf("%s apdu_new=NULL status=%04X\n", key, status);
        return;
    }
    VCardResponse *r = NULL;
    VCardStatus st = vcard_process_apdu(card, apdu, &r);
    print_response(key, st, st == VCARD_FAIL ? NULL : r);
    vcard_response_delete(r);
    vcard_apdu_delete(apdu);
}

static void atr_func(VCard *card, unsigned char *atr, int *len) {
    (void)card;
    static const unsigned char mine[] = {0x3B, 0x02, 0x14, 0x50};
    int n = *len < 4 ? *len : 4;
    memcpy(atr, mine, (size_t)n);
    *len = n;
}

int main(void) {
    char *emul = malloc(8);
    CHECK(emul);
    strcpy(emul, "emul");
    VCard *card = vcard_new((VCardEmul *)emul, free_emul);
    CHECK(card);
    printf("type.initial %d\n", (int)vcard_get_type(card));
    vcard_set_type(card, VCARD_DIRECT);
    printf("type.set %d\n", (int)vcard_get_type(card));
    /* Back to VM: libcacard hands a DIRECT card's APDUs to a hook it never
     * sets (a NULL call). */
    vcard_set_type(card, VCARD_VM);
    printf("private %s\n", (char *)vcard_get_private(card));

    VCardApplet *a = vcard_new_applet(process_a, reset_a, AID_A, sizeof AID_A);
    VCardApplet *b = vcard_new_applet(NULL, NULL, AID_B, sizeof AID_B);
    CHECK(a && b);
    char *priv = malloc(16);
    CHECK(priv);
    strcpy(priv, "applet-a");
    vcard_set_applet_private(a, (VCardAppletPrivate *)priv, free_private);
    printf("add.a %d\n", (int)vcard_add_applet(card, a));
    printf("add.b %d\n", (int)vcard_add_applet(card, b));
    printf("find.a %s\n", vcard_find_applet(card, AID_A, sizeof AID_A) == a ? "a" : "other");
    printf("find.b %s\n", vcard_find_applet(card, AID_B, sizeof AID_B) == b ? "b" : "other");
    printf("find.missing %s\n", vcard_find_applet(card, AID_A, 3) ? "found" : "NULL");
    int aid_len = 0;
    unsigned char *aid = vcard_applet_get_aid(b, &aid_len);
    print_hex("aid.b", aid, aid_len);

    /* Nothing selected yet. */
    process(card, "none.ins10", "0010000000");
    process(card, "none.get_response", "00C0000000");
    /* SELECT by AID, then the applet's instructions. */
    process(card, "select.a", "00A4040005F001020304");
    process(card, "select.a.le", "00A4040005F00102030400");
    printf("current_private %s\n", (char *)vcard_get_current_applet_private(card, 0));
    process(card, "a.hello", "0010000000");
    process(card, "a.hello.le2", "0010000002");
    process(card, "a.hello.get_response", "00C0000003");
    process(card, "a.big", "0011000000");
    process(card, "a.big.get_response", "00C0000000");
    process(card, "a.big.get_response2", "00C0000000");
    process(card, "a.big.get_response3", "00C0000000");
    process(card, "a.next", "0012000000");
    process(card, "a.status", "0013000000");
    process(card, "a.fail", "0014000000");
    process(card, "a.private", "0015000000");
    process(card, "a.echo", "00160000031122330A");
    process(card, "a.echo.channel1", "0116000001AA");
    process(card, "a.unknown", "00EE000000");
    process(card, "select.missing", "00A4040003F00000");
    process(card, "after_missing", "0010000000");
    process(card, "select.b", "00A4040005F005060708");
    process(card, "b.ins10", "0010000000");
    /* Malformed APDUs never reach an applet. */
    process(card, "apdu.short", "0010");
    process(card, "apdu.lc_mismatch", "0010000005AABB");
    process(card, "apdu.cla_ff", "FF10000000");

    /* Buffer responses set from outside. */
    VCardBufferResponse *buf = vcard_buffer_response_new((const unsigned char *)"\x01\x02\x03\x04", 4);
    CHECK(buf);
    printf("buffer.len %d\n", buf->len);
    vcard_set_buffer_response(card, buf);
    printf("buffer.get %s\n", vcard_get_buffer_response(card) == buf ? "same" : "other");
    process(card, "buffer.get_response", "00C0000002");
    process(card, "buffer.get_response2", "00C0000000");
    printf("buffer.after %s\n", vcard_get_buffer_response(card) ? "set" : "NULL");

    /* Direct response constructors. */
    VCardResponse *r = vcard_make_response(VCARD7816_STATUS_ERROR_FILE_NOT_FOUND);
    print_response("make_response", VCARD_DONE, r);
    vcard_response_delete(r);
    r = vcard_response_new_status_bytes(0x63, 0xC1);
    print_response("status_bytes", VCARD_DONE, r);
    vcard_response_delete(r);

    /* The ATR: default, then the card's own function. */
    unsigned char atr[40];
    int atr_len = 40;
    vcard_get_atr(card, atr, &atr_len);
    print_hex("atr.default", atr, atr_len);
    vcard_set_atr_func(card, atr_func);
    atr_len = 40;
    vcard_get_atr(card, atr, &atr_len);
    print_hex("atr.func", atr, atr_len);

    /* The same card behind a reader. */
    VReader *reader = vreader_new("Applets", NULL, NULL);
    CHECK(reader);
    printf("insert %d\n", (int)vreader_insert_card(reader, card));
    printf("present %d\n", (int)vreader_card_is_present(reader));
    atr_len = 40;
    printf("power_on %d\n", (int)vreader_power_on(reader, atr, &atr_len));
    print_hex("reader.atr", atr, atr_len);
    printf("resets.after_power_on %d\n", resets);
    xfr(reader, "reader.select.a", "00A4040005F001020304", 270, NULL);
    xfr(reader, "reader.hello", "0010000000", 270, NULL);
    xfr(reader, "reader.big", "0011000000", 270, NULL);
    xfr(reader, "reader.big.get_response", "00C0000000", 270, NULL);
    xfr(reader, "reader.fail", "0014000000", 270, NULL);
    xfr(reader, "reader.short", "00", 270, NULL);
    printf("power_off %d\n", (int)vreader_power_off(reader));
    printf("remove %d\n", (int)vreader_insert_card(reader, NULL));
    printf("present.after %d\n", (int)vreader_card_is_present(reader));
    vreader_free(reader);
    /* Events queued by the insertion hold references: drain them. */
    VEvent *ev;
    int events = 0;
    while ((ev = vevent_get_next_vevent()) != NULL) {
        events++;
        vevent_delete(ev);
    }
    printf("events %d\n", events);

    printf("freed.before %d %d\n", privates_freed, emul_freed);
    vcard_free(card);
    printf("freed.after %d %d\n", privates_freed, emul_freed);
    return 0;
}
