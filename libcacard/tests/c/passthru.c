/* PC/SC passthrough (options "passthru", or "hw_type=PASSTHRU" last): the
 * host pcscd's readers become readers of the same names, their cards
 * relayed. Run inside a private pcscd's namespace by
 * tests/tests/host_libcacard_passthru.rs, with a vcac CAC in the first
 * vpcd reader; the harness compares our transcript with Debian's
 * libcacard and checks the signature with openssl.
 *
 * Environment: PT_OPTIONS (default "passthru"), PT_READER (the reader
 * holding the card), PT_PIN (ASCII PIN, at most 8). */
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#include "common.h"

static const char *type_name(VEventType t) {
    switch (t) {
    case VEVENT_READER_INSERT: return "RI";
    case VEVENT_READER_REMOVE: return "RR";
    case VEVENT_CARD_INSERT: return "CI";
    case VEVENT_CARD_REMOVE: return "CR";
    default: return "??";
    }
}

int main(void) {
    VCardEmulOptions *o = vcard_emul_options(env_or("PT_OPTIONS", "passthru"));
    CHECK(o != NULL);
    printf("init %d\n", (int)vcard_emul_init(o));

    /* libcacard adds the readers from its PC/SC thread: collect events
     * (by reader name) until a card is in PT_READER and 2 s pass quietly,
     * at most 10 s. */
    char line[1000] = "";
    int quiet = 0, card_seen = 0;
    for (int waited = 0; waited < 200 && !(card_seen && quiet >= 40); waited++) {
        VEvent *ev = vevent_get_next_vevent();
        if (!ev) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
            quiet++;
            continue;
        }
        quiet = 0;
        const char *name = ev->reader ? vreader_get_name(ev->reader) : "-";
        if (ev->type == VEVENT_CARD_INSERT && strcmp(name, env_or("PT_READER", "")) == 0)
            card_seen = 1;
        char one[160];
        snprintf(one, sizeof one, "%s%s(%s);", type_name(ev->type), ev->card ? "+card" : "", name);
        if (strlen(line) + strlen(one) < sizeof line) strcat(line, one);
        vevent_delete(ev);
    }
    printf("events %s\n", line[0] ? line : "-");

    VReader *readers[16];
    int n = list_readers(readers, 16);
    printf("readers %d\n", n);
    VReader *r = NULL;
    for (int i = 0; i < n; i++) {
        printf("reader%d.name %s\n", i, vreader_get_name(readers[i]));
        printf("reader%d.present %d\n", i, (int)vreader_card_is_present(readers[i]));
        if (strcmp(vreader_get_name(readers[i]), env_or("PT_READER", "")) == 0) r = readers[i];
    }
    CHECK(r != NULL);

    unsigned char atr[40];
    int atr_len = 40;
    printf("power_on %d\n", (int)vreader_power_on(r, atr, &atr_len));
    print_hex("atr", atr, atr_len);
    xfr(r, "select.pki0", "00A4040007A000000079010000", 270, NULL);
    xfr(r, "select.get_response", "00C000000D", 270, NULL);
    xfr(r, "verify.status", "0020000000", 270, NULL);
    {
        char hex[64] = "0020000008";
        const char *pin = env_or("PT_PIN", "");
        size_t len = strlen(pin);
        CHECK(len <= 8);
        for (size_t i = 0; i < 8; i++)
            snprintf(hex + 10 + 2 * i, 3, "%02X", i < len ? (unsigned char)pin[i] : 0xFF);
        xfr(r, "verify", hex, 270, NULL);
    }
    /* A chained SIGN of a 256-byte PKCS#1 type-1 block (SHA-256
     * DigestInfo of bytes 00..1F). */
    {
        static const unsigned char prefix[] = {0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60,
                                               0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                               0x01, 0x05, 0x00, 0x04, 0x20};
        unsigned char b[256], cmd[300], out[300];
        int payload = (int)sizeof prefix + 32;
        b[0] = 0x00;
        b[1] = 0x01;
        memset(b + 2, 0xFF, (size_t)(256 - 3 - payload));
        b[256 - payload - 1] = 0x00;
        memcpy(b + 256 - payload, prefix, sizeof prefix);
        for (int i = 0; i < 32; i++) b[256 - 32 + i] = (unsigned char)i;
        memcpy(cmd, "\x80\x42\x80\x00\x80", 5);
        memcpy(cmd + 5, b, 128);
        xfr_raw(r, "sign.chain1", cmd, 133, NULL);
        memcpy(cmd, "\x80\x42\x00\x00\x80", 5);
        memcpy(cmd + 5, b + 128, 128);
        xfr_raw(r, "sign.chain2", cmd, 133, NULL);
        int got = xfr(r, "sign.get_response", "00C0000000", 270, out);
        if (got == 258) print_hex("sign.sig", out, 256);
    }
    if (atoi(env_or("PT_REMOVAL", "0")) == 1) {
        /* The harness takes the host card away, then sends a line. */
        char buf[16];
        printf("removal.ready\n");
        fflush(stdout);
        CHECK(fgets(buf, sizeof buf, stdin) != NULL);
        int removed = 0;
        for (int waited = 0; waited < 200 && !removed; waited++) {
            VEvent *ev = vevent_get_next_vevent();
            if (!ev) {
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
                continue;
            }
            if (ev->type == VEVENT_CARD_REMOVE && ev->reader == r) removed = 1;
            vevent_delete(ev);
        }
        printf("removal.event %s\n", removed ? "CR" : "none");
        printf("removal.present %d\n", (int)vreader_card_is_present(r));
    }
    for (int i = 0; i < n; i++) vreader_free(readers[i]);
    return 0;
}
