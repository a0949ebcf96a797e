/* spice-gtk 0.42's calls: init from a worker, readers through the list
 * API, events polled with the non-blocking getter, ids, 274-byte APDU
 * buffers, force remove / insert. */
#include "common.h"

static void drain(const char *key) {
    char log[256] = "";
    VEvent *ev;
    while ((ev = vevent_get_next_vevent()) != NULL) {
        static const char *names[] = {"RI", "RR", "CI", "CR", "LAST"};
        strcat(log, ev->type <= VEVENT_LAST ? names[ev->type] : "?");
        if (ev->type == VEVENT_READER_INSERT) {
            strcat(log, ":");
            strcat(log, vreader_get_name(ev->reader));
        }
        strcat(log, ev->card ? "+card;" : ";");
        vevent_delete(ev);
    }
    printf("%s %s\n", key, log[0] ? log : "-");
}

int main(void) {
    char opts[200];
    qemu_options(opts, sizeof opts, "Spice Software Smartcard");
    VCardEmulOptions *o = vcard_emul_options(opts);
    CHECK(o != NULL);
    printf("init %d\n", (int)vcard_emul_init(o));
    printf("init.again %d\n", (int)vcard_emul_init(o));

    int count = 0;
    VReader *soft = NULL;
    VReaderList *list = vreader_get_reader_list();
    for (VReaderListEntry *e = vreader_list_get_first(list); e; e = vreader_list_get_next(e)) {
        VReader *r = vreader_list_get_reader(e);
        count++;
        printf("list.name %s\n", vreader_get_name(r));
        printf("list.present %d\n", (int)vreader_card_is_present(r));
        if (!soft) soft = vreader_reference(r);
        vreader_free(r);
    }
    vreader_list_delete(list);
    printf("list.count %d\n", count);
    CHECK(soft != NULL);
    drain("events.init");
    printf("empty_queue %s\n", vevent_get_next_vevent() == NULL ? "NULL" : "event");

    printf("id.initial %u\n", vreader_get_id(soft));
    printf("by_id.undefined %s\n", vreader_get_reader_by_id((vreader_id_t)-1) ? "reader" : "NULL");
    printf("set_id %d\n", (int)vreader_set_id(soft, 0));
    printf("id.now %u\n", vreader_get_id(soft));
    VReader *r0 = vreader_get_reader_by_id(0);
    printf("by_id.0 %s\n", r0 == soft ? "same" : "other");
    vreader_free(r0);
    VReader *rn = vreader_get_reader_by_name("Spice Software Smartcard");
    printf("by_name %s\n", rn == soft ? "same" : "other");
    vreader_free(rn);
    printf("by_name.missing %s\n", vreader_get_reader_by_name("nope") ? "reader" : "NULL");

    unsigned char atr[40];
    int len = 40;
    printf("power_on %d\n", (int)vreader_power_on(soft, atr, &len));
    print_hex("atr", atr, len);
    len = 5;
    vreader_power_on(soft, atr, &len);
    print_hex("atr.short", atr, len);
    xfr(soft, "select.ccc", "00A4040007A000000116DB00", 274, NULL);
    xfr(soft, "get_response", "00C0000000", 274, NULL);

    printf("remove %d\n", (int)vcard_emul_force_card_remove(soft));
    printf("remove.again %d\n", (int)vcard_emul_force_card_remove(soft));
    printf("present.after_remove %d\n", (int)vreader_card_is_present(soft));
    drain("events.remove");
    unsigned char buf[274];
    len = 274;
    printf("xfr.no_card %d len=%d\n",
           (int)vreader_xfr_bytes(soft, (unsigned char *)"\x00\xA4\x04\x00", 4, buf, &len), len);
    len = 33;
    printf("power_on.no_card %d len=%d\n", (int)vreader_power_on(soft, atr, &len), len);
    printf("insert %d\n", (int)vcard_emul_force_card_insert(soft));
    printf("insert.again %d\n", (int)vcard_emul_force_card_insert(soft));
    printf("present.after_insert %d\n", (int)vreader_card_is_present(soft));
    drain("events.insert");
    len = 40;
    vreader_power_on(soft, atr, &len);
    xfr(soft, "select.ccc.after_insert", "00A4040007A000000116DB0000", 274, NULL);

    /* NULL-safety the reference documents. */
    printf("null.get_name %s\n", vreader_get_name(NULL) ? "name" : "NULL");
    printf("null.get_id %u\n", vreader_get_id(NULL));
    printf("null.set_id %d\n", (int)vreader_set_id(NULL, 3));
    printf("null.reference %s\n", vreader_reference(NULL) ? "reader" : "NULL");
    vreader_free(NULL);
    vcard_free(NULL);

    printf("remove_reader %d\n", (int)vreader_remove_reader(soft));
    drain("events.remove_reader");
    printf("by_id.after_remove %s\n", vreader_get_reader_by_id(0) ? "reader" : "NULL");
    printf("finalize %d\n", (int)vcard_emul_finalize());
    vreader_free(soft);
    return 0;
}
