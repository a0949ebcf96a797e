/* Hardware mode, the cases of libcacard's hwtests (v2.8.0,
 * tests/hwtests.c): an NSS database whose pkcs11.txt lists SoftHSM2
 * (slots.removable = true), options use_hw=removable. Readers and events
 * after init (/list: two readers, the token's and the free slot's),
 * /check-login-count, /login, /sign, /sign-bad-data, /get-response,
 * /sign-logout-sign. Every answer is printed in full; the harness
 * compares them with Debian's libcacard on the same database and checks
 * the signatures with openssl.
 *
 * Environment: CACARD_DB (common.h), HW_PIN (ASCII, default 77777777),
 * HW_BITS (key size, default 1024), HW_REMOVAL=1: after the cases, print
 * "removal.ready", read one line from stdin (the harness deletes the
 * token meanwhile) and report the events that follow within 20 s. */
#include <unistd.h>
#include <time.h>
#include "common.h"

static int bits(void) { return atoi(env_or("HW_BITS", "1024")); }

/* The PKCS#1 type-1 block of the key size: 00 01 FF.. 00, a SHA-256
 * DigestInfo prefix and 32 bytes 00..1F. */
static void type1_block(unsigned char *b, int k) {
    static const unsigned char prefix[] = {0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60,
                                           0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                           0x01, 0x05, 0x00, 0x04, 0x20};
    int payload = (int)sizeof prefix + 32;
    b[0] = 0x00;
    b[1] = 0x01;
    memset(b + 2, 0xFF, (size_t)(k - 3 - payload));
    b[k - payload - 1] = 0x00;
    memcpy(b + k - payload, prefix, sizeof prefix);
    for (int i = 0; i < 32; i++) b[k - 32 + i] = (unsigned char)i;
}

/* SIGN/DECRYPT of `block` (k bytes) in one APDU, then GET RESPONSE;
 * prints TAG.sig when a whole signature comes back. */
static void sign_block(VReader *r, const char *tag, const unsigned char *block, int k) {
    unsigned char cmd[600], out[600];
    char key[80];
    memcpy(cmd, "\x80\x42\x00\x00", 4);
    cmd[4] = (unsigned char)k; /* 1024-bit: 0x80; 2048 needs chaining */
    memcpy(cmd + 5, block, (size_t)k);
    snprintf(key, sizeof key, "%s.sign", tag);
    int n = xfr_raw(r, key, cmd, 5 + k, out);
    if (n == 2 && out[0] == 0x61) {
        char le[16];
        snprintf(le, sizeof le, "00C00000%02X", out[1]);
        snprintf(key, sizeof key, "%s.get_response", tag);
        n = xfr(r, key, le, 270, out);
        if (n == k + 2) {
            snprintf(key, sizeof key, "%s.sig", tag);
            print_hex(key, out, k);
        }
    }
}

static void sign(VReader *r, const char *tag) {
    unsigned char block[512];
    type1_block(block, bits() / 8);
    sign_block(r, tag, block, bits() / 8);
}

/* The same block in two chained parts (P1=80, then P1=00). */
static void sign_chained(VReader *r, const char *tag) {
    unsigned char block[512], cmd[600], out[600];
    char key[80];
    int k = bits() / 8, half = k / 2;
    type1_block(block, k);
    memcpy(cmd, "\x80\x42\x80\x00", 4);
    cmd[4] = (unsigned char)half;
    memcpy(cmd + 5, block, (size_t)half);
    snprintf(key, sizeof key, "%s.chain1", tag);
    xfr_raw(r, key, cmd, 5 + half, NULL);
    memcpy(cmd, "\x80\x42\x00\x00", 4);
    cmd[4] = (unsigned char)(k - half);
    memcpy(cmd + 5, block + half, (size_t)(k - half));
    snprintf(key, sizeof key, "%s.chain2", tag);
    xfr_raw(r, key, cmd, 5 + k - half, out);
    snprintf(key, sizeof key, "%s.get_response", tag);
    int n = xfr(r, key, "00C0000000", 270, out);
    if (n == k + 2) {
        snprintf(key, sizeof key, "%s.sig", tag);
        print_hex(key, out, k);
    }
}

static void login(VReader *r, const char *key, const char *pin) {
    char hex[64] = "0020000008";
    size_t n = strlen(pin);
    CHECK(n <= 8);
    for (size_t i = 0; i < 8; i++)
        snprintf(hex + 10 + 2 * i, 3, "%02X", i < n ? (unsigned char)pin[i] : 0xFF);
    x(r, key, hex);
}

static const char *type_name(VEventType t) {
    switch (t) {
    case VEVENT_READER_INSERT: return "RI";
    case VEVENT_READER_REMOVE: return "RR";
    case VEVENT_CARD_INSERT: return "CI";
    case VEVENT_CARD_REMOVE: return "CR";
    default: return "??";
    }
}

/* The events queued so far, as "TYPE+card|TYPE(reader index);...". */
static void print_events(const char *key, VReader **readers, int n) {
    char line[2000] = "";
    VEvent *ev;
    while ((ev = vevent_get_next_vevent()) != NULL) {
        int idx = -1;
        for (int i = 0; i < n; i++)
            if (readers[i] == ev->reader) idx = i;
        char one[64];
        snprintf(one, sizeof one, "%s%s(%d);", type_name(ev->type), ev->card ? "+card" : "", idx);
        if (strlen(line) + strlen(one) < sizeof line) strcat(line, one);
        vevent_delete(ev);
    }
    printf("%s %s\n", key, line[0] ? line : "-");
}

int main(void) {
    char opts[600];
    snprintf(opts, sizeof opts, "db=\"%s\" use_hw=removable", env_or("CACARD_DB", "/etc/pki/nssdb"));
    VCardEmulOptions *o = vcard_emul_options(opts);
    CHECK(o != NULL);
    printf("init %d\n", (int)vcard_emul_init(o));

    /* /list */
    VReader *readers[16];
    int n = list_readers(readers, 16);
    printf("readers %d\n", n);
    VReader *r = NULL;
    for (int i = 0; i < n; i++) {
        char key[32];
        /* Slot IDs are SoftHSM's (derived from the token serial): the
         * harness checks the names, the transcript only their shape. */
        const char *name = vreader_get_name(readers[i]);
        snprintf(key, sizeof key, "reader%d.name", i);
        printf("%s %s\n", key, strncmp(name, "SoftHSM slot ID 0x", 18) == 0 ? "SoftHSM slot ID 0x.." : name);
        fprintf(stderr, "%s %s\n", key, name);
        snprintf(key, sizeof key, "reader%d.present", i);
        printf("%s %d\n", key, (int)vreader_card_is_present(readers[i]));
        if (!r && vreader_card_is_present(readers[i]) == VREADER_OK) r = readers[i];
    }
    print_events("events.init", readers, n);
    CHECK(r != NULL);

    unsigned char atr[40];
    int atr_len = 40;
    printf("power_on %d\n", (int)vreader_power_on(r, atr, &atr_len));
    print_hex("atr", atr, atr_len);

    /* /check-login-count (the hwtests' /msft-applet runs it again) */
    x(r, "login.status", "0020000000");
    x(r, "login.p1_01", "0020010000");

    /* /login, with a wrong PIN first */
    login(r, "login.wrong", "11111111");
    x(r, "login.status.after_wrong", "0020000000");
    login(r, "login.verify", env_or("HW_PIN", "77777777"));
    x(r, "login.status.after", "0020000000");

    /* /sign: PKI applet 1 (the first key), in one APDU and chained */
    x(r, "sign.pki0.select", "00A4040007A000000079010000");
    sign(r, "sign");
    sign_chained(r, "sign.chained");

    /* /sign-bad-data: blocks that are no PKCS#1 signature block: 9000 or
     * 6984, never a crash. All FF is larger than the modulus. */
    {
        unsigned char block[512];
        int k = bits() / 8;
        memset(block, 0xFF, sizeof block);
        sign_block(r, "sign_bad.ff", block, k);
        type1_block(block, k);
        block[1] = 0x02;
        sign_block(r, "sign_bad.type2", block, k);
        sign(r, "sign_bad.after");
    }

    /* /get-response */
    x(r, "pki0.read.no_le", "805200000201 02");
    x(r, "get_response.rb", "00C0000000");
    x(r, "get_response.none", "00C0000000");

    /* /sign-logout-sign: a power cycle logs out; softhsm invalidates
     * object handles at logout, so the key is looked up again. */
    vreader_power_off(r);
    atr_len = 40;
    printf("power_on.again %d\n", (int)vreader_power_on(r, atr, &atr_len));
    x(r, "relogin.status", "0020000000");
    x(r, "relogin.pki0.select", "00A4040007A000000079010000");
    sign(r, "relogin.nologin");
    login(r, "relogin.verify", env_or("HW_PIN", "77777777"));
    sign(r, "relogin");
    print_events("events.after", readers, n);

    if (atoi(env_or("HW_REMOVAL", "0")) == 1) {
        char line[16];
        printf("removal.ready\n");
        fflush(stdout);
        CHECK(fgets(line, sizeof line, stdin) != NULL);
        time_t start = time(NULL);
        int removed = 0;
        while (!removed && time(NULL) - start < 20) {
            VEvent *ev = vevent_get_next_vevent();
            if (!ev) { usleep(50000); continue; }
            if (ev->type == VEVENT_CARD_REMOVE && ev->reader == r) removed = 1;
            vevent_delete(ev);
        }
        printf("removal.event %s\n", removed ? "CR" : "none");
        printf("removal.present %d\n", (int)vreader_card_is_present(r));
        {
            /* No card: NO_CARD, the length untouched (so not printed). */
            unsigned char cmd[] = {0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00};
            unsigned char buf[300];
            int len = 270;
            VReaderStatus st = vreader_xfr_bytes(r, cmd, (int)sizeof cmd, buf, &len);
            printf("removal.xfr %d len %d\n", (int)st, len);
        }
    }

    for (int i = 0; i < n; i++) vreader_free(readers[i]);
    printf("finalize %d\n", (int)vcard_emul_finalize());
    return 0;
}
