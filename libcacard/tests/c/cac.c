/* The card as libcacard's own test suite (v2.8.0, tests/libcacard.c) sees
 * it, row by row of its table: applets (CCC, ACA, PKI, GP, MS PnP, the
 * empty / passthrough / ACF applets), GET RESPONSE, login, chained and
 * extended SIGN, invalid APDUs, the ATR across a power cycle. Every
 * answer is printed in full; the harness compares them with Debian's
 * libcacard on the same NSS database.
 *
 * Environment: CACARD_DB, CACARD_CERTS (common.h), CACARD_PIN (hex of the
 * VERIFY data, default FF×6 as the test suite sends). */
#include "common.h"

/* The 256-byte PKCS#1 type-1 block SIGN is given: 00 01 FF.. 00 payload,
 * the payload a SHA-256 DigestInfo prefix and 32 bytes 00..1F. */
static void type1_block(unsigned char *b) {
    static const unsigned char prefix[] = {0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60,
                                           0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                           0x01, 0x05, 0x00, 0x04, 0x20};
    int payload = (int)sizeof prefix + 32;
    b[0] = 0x00;
    b[1] = 0x01;
    memset(b + 2, 0xFF, 256 - 3 - payload);
    b[256 - payload - 1] = 0x00;
    memcpy(b + 256 - payload, prefix, sizeof prefix);
    for (int i = 0; i < 32; i++) b[256 - 32 + i] = (unsigned char)i;
}

static void sign(VReader *r, const char *tag) {
    unsigned char block[256], cmd[300], out[300];
    char key[64];
    type1_block(block);
    /* Chained: P1=80 with the first half, P1=00 with the rest. */
    memcpy(cmd, "\x80\x42\x80\x00\x80", 5);
    memcpy(cmd + 5, block, 128);
    snprintf(key, sizeof key, "%s.chain1", tag);
    xfr_raw(r, key, cmd, 133, NULL);
    memcpy(cmd, "\x80\x42\x00\x00\x80", 5);
    memcpy(cmd + 5, block + 128, 128);
    snprintf(key, sizeof key, "%s.chain2", tag);
    xfr_raw(r, key, cmd, 133, NULL);
    snprintf(key, sizeof key, "%s.get_response", tag);
    int n = xfr(r, key, "00C0000000", 270, out);
    if (n == 258) { char k[64]; snprintf(k, sizeof k, "%s.sig", tag); print_hex(k, out, 256); }
}

int main(void) {
    char opts[400];
    qemu_options(opts, sizeof opts, "Test");
    VCardEmulOptions *o = vcard_emul_options(opts);
    CHECK(o != NULL);
    printf("init %d\n", (int)vcard_emul_init(o));
    VReader *r = vreader_get_reader_by_name("Test");
    CHECK(r != NULL);
    unsigned char atr[40];
    int atr_len = 40;
    printf("power_on %d\n", (int)vreader_power_on(r, atr, &atr_len));
    print_hex("atr", atr, atr_len);

    /* /libcacard/xfer, /select-coid */
    x(r, "xfer.missing", "00A4040007A0000000FFFFFF");
    x(r, "ccc.select", "00A4040007A000000116DB0000");
    x(r, "ccc.oid", "00A4020002DB00");
    x(r, "ccc.oid.wrong", "00A4020002DB01");
    x(r, "acf.select", "00A4040007A00000011630 0000");
    x(r, "acf.oid.3000", "00A40200023000");
    x(r, "acf.oid.9000", "00A40200029000");
    x(r, "acf.oid.9090", "00A40200029090");

    /* /cac-ccc */
    x(r, "ccc.select2", "00A4040007A000000116DB0000");
    x(r, "ccc.props.short", "8056010001");
    x(r, "ccc.props", "8056010000");
    x(r, "ccc.props.le_long", "80560100FF");
    x(r, "ccc.tlen", "805200000201 02");
    x(r, "ccc.t", "80520002020140");
    x(r, "ccc.vlen", "80520000020202");
    x(r, "ccc.v", "805200020202F0");
    x(r, "ccc.get_acr", "804C000000");

    /* /cac-pki: applet 1 */
    x(r, "pki1.select", "00A4040007A000000079010100");
    x(r, "pki1.props.short", "8056010001");
    x(r, "pki1.props", "8056010000");
    x(r, "pki1.props.long", "8056400000");
    x(r, "pki1.props.tags", "80560200020151 00");
    x(r, "pki1.props.tag_unknown", "805602000177 00");
    x(r, "pki1.tlen", "80520000020102");
    x(r, "pki1.t", "80520002020108");
    x(r, "pki1.vlen", "80520000020202");
    x(r, "pki1.v.head", "80520002020210");
    x(r, "pki1.update_buffer", "8058000002 0102");

    /* /get-response */
    x(r, "pki1.read.no_le", "805200000201 02");
    x(r, "get_response.rb", "00C0000000");
    x(r, "get_response.none", "00C0000000");

    /* /cac-aca (the vcac card: …79 10 00; libcacard: …79 03 00). A failed
     * SELECT keeps the current applet on the vcac card and deselects it on
     * libcacard: either way the ACA is selected after both. */
    x(r, "aca.select.1000", "00A4040007A000000079100000");
    x(r, "aca.select.0300", "00A4040007A000000079030000");
    x(r, "aca.props", "8056010000");
    const char *acr[] = {"00", "01", "10", "11", "12", "20", "21", "40", "50", "60", "61"};
    for (size_t i = 0; i < sizeof acr / sizeof *acr; i++) {
        char key[32], cmd[32];
        snprintf(key, sizeof key, "aca.acr.%s", acr[i]);
        snprintf(cmd, sizeof cmd, "804C%s0000", acr[i]);
        x(r, key, cmd);
    }
    x(r, "aca.acr.01.data", "804C01000101");
    x(r, "aca.acr.p2", "804C000100");
    x(r, "aca.acr.bad_p1", "804C770000");

    /* /gp-applet, /msft-applet */
    x(r, "gp.select", "00A4040007A000000003000000");
    x(r, "gp.cplc", "80CA9F7F00");
    x(r, "gp.cplc.00", "00CA9F7F00");
    x(r, "msft.select", "00A404000BA0000003974349445F010000");
    x(r, "msft.cardid", "00CA7F6800");

    /* /empty-applets, /passthrough-applet */
    x(r, "empty.02FB", "00A4040007A00000007902FB00");
    x(r, "empty.02F0", "00A4040007A00000007902F000");
    x(r, "passthru.0200", "00A4040007A0000000790200 00");

    /* /invalid-* */
    x(r, "inv.pki0.select", "00A4040007A000000079010000");
    x(r, "inv.props.p1", "8056000000");
    x(r, "inv.props.p2", "8056010100");
    x(r, "inv.props.data", "805602000100");
    x(r, "inv.select.oid_empty", "00A40200");
    x(r, "inv.select.oid_7", "00A4020007A0000000790100");
    x(r, "inv.rb.lc", "8052000001 01");
    x(r, "inv.rb.type", "80520000020302");
    x(r, "inv.rb.offset", "8052FFFF020102");
    x(r, "inv.ins_ff", "00FF0000");
    x(r, "inv.cla_ff", "FFA4040007A000000116DB00");
    {
        /* GET CHALLENGE: random bytes (vcac) or 6D 00 (libcacard): print
         * the length and the status word only. */
        unsigned char cmd[] = {0x00, 0x84, 0x00, 0x00, 0x08}, buf[300];
        int len = 270;
        VReaderStatus st = vreader_xfr_bytes(r, cmd, 5, buf, &len);
        CHECK(len >= 2);
        printf("inv.get_challenge %d:len=%d,sw=%02X%02X\n", (int)st, len, buf[len - 2], buf[len - 1]);
    }

    /* /check-login-count, /login, /sign */
    x(r, "login.status", "0020000000");
    x(r, "login.p1_01", "0020010000");
    x(r, "sign.pki0.select", "00A4040007A000000079010000");
    sign(r, "sign.nologin");
    char verify[100];
    snprintf(verify, sizeof verify, "00200000%02X%s",
             (unsigned)(strlen(env_or("CACARD_PIN", "FFFFFFFFFFFF")) / 2),
             env_or("CACARD_PIN", "FFFFFFFFFFFF"));
    x(r, "login.verify", verify);
    x(r, "login.status.after", "0020000000");
    x(r, "login.wrong", "00200000083030303030303030");
    x(r, "login.status.after_wrong", "0020000000");
    x(r, "login.verify2", verify);
    sign(r, "sign");
    /* One extended APDU with the whole block. */
    {
        unsigned char block[256], cmd[300];
        type1_block(block);
        memcpy(cmd, "\x80\x42\x00\x00\x00\x01\x00", 7);
        memcpy(cmd + 7, block, 256);
        xfr_raw(r, "sign.extended", cmd, 263, NULL);
        x(r, "sign.extended.get_response", "00C0000000");
    }

    /* /get-atr, and the login across a power cycle */
    vreader_power_off(r);
    atr_len = 40;
    printf("power_on.again %d\n", (int)vreader_power_on(r, atr, &atr_len));
    print_hex("atr.again", atr, atr_len);
    x(r, "login.status.after_cycle", "0020000000");

    vreader_free(r);
    return 0;
}
