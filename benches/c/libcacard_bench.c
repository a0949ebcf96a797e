/* The C side of the `c_abi` bench (benches/benches/c_abi.rs): one program,
 * compiled once against vcac's headers, run against Debian's libcacard.so.0
 * or vcac's drop-in (chosen with LD_LIBRARY_PATH). It only calls the public
 * libcacard 2.8 API, the way QEMU's ccid-card-emulated does.
 *
 *   libcacard_bench init DB CERTS
 *       one sample of init-to-ATR: vcard_emul_options + vcard_emul_init +
 *       the first CARD_INSERT event + vreader_power_on; prints
 *       "init_us <µs>" and "atr <hex>". One sample per process: the library
 *       initialises once per process.
 *
 *   libcacard_bench serve DB CERTS BINDFILE
 *       initialises once, then answers commands on stdin, one per line,
 *       so that the driver can alternate two of these processes (one per
 *       library) round by round:
 *         "bind MS"   replays BINDFILE (one command APDU in hex a line)
 *                     through vreader_xfr_bytes for at least MS ms;
 *                     prints "bind <ns per APDU> <APDUs sent>"
 *         "sign N"    N RSA-2048 signatures through PKI applet 0 (SIGN 42
 *                     chained T=0 style, GET RESPONSE); prints
 *                     "sign <ms per signature>"
 *         "quit"
 *       Before the first command it prints "lib <path>" (the library that
 *       really answers, from dladdr), the ATR,  the status-word summary of
 *       one replay ("sw <9000> <61xx> <other>"), checks one login and one
 *       signature ("login ok"), then prints "ready".
 *
 * Any broken invariant prints a reason to stderr and exits 1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libcacard.h>

#define DIE(...) do { fprintf(stderr, "libcacard_bench: " __VA_ARGS__); \
    fputc('\n', stderr); exit(1); } while (0)

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The options string QEMU 7.2 builds for backend=certificates. */
static VCardEmulOptions *options(const char *db, const char *certs) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "db=\"%s\" use_hw=no soft=(,Virtual Reader,CAC,,%s)", db, certs);
    return vcard_emul_options(buf);
}

/* Init, then the event loop until the first CARD_INSERT, whose reader is
 * powered on; returns that reader (a reference the caller keeps). */
static VReader *init_to_atr(const char *db, const char *certs, unsigned char *atr, int *atr_len) {
    VCardEmulOptions *opts = options(db, certs);
    if (!opts) DIE("vcard_emul_options rejected db=%s certs=%s", db, certs);
    if (vcard_emul_init(opts) != VCARD_EMUL_OK) DIE("vcard_emul_init failed on %s", db);
    for (;;) {
        VEvent *ev = vevent_wait_next_vevent();
        if (!ev) DIE("event queue ended before CARD_INSERT");
        if (ev->type == VEVENT_CARD_INSERT) {
            VReader *r = vreader_reference(ev->reader);
            vreader_power_on(r, atr, atr_len);
            vevent_delete(ev);
            return r;
        }
        if (ev->type == VEVENT_LAST) DIE("VEVENT_LAST before CARD_INSERT");
        vevent_delete(ev);
    }
}

static int unhex(const char *s, unsigned char *out, int room) {
    int n = 0;
    while (s[0] && s[1] && s[0] != '\n' && s[0] != ' ' && n < room) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1) DIE("not hex: %s", s);
        out[n++] = (unsigned char)v;
        s += 2;
    }
    return n;
}

/* The bind transcript: every command APDU, packed one after the other. */
struct apdus {
    unsigned char *bytes;
    int *lens;
    int count;
};

static struct apdus load(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) DIE("cannot open %s", path);
    struct apdus a = {malloc(1 << 20), malloc(sizeof(int) * 8192), 0};
    int used = 0;
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        if (a.count == 8192 || used + 300 > (1 << 20)) DIE("%s is too long", path);
        int n = unhex(line, a.bytes + used, 300);
        if (n == 0) continue;
        a.lens[a.count++] = n;
        used += n;
    }
    fclose(f);
    if (a.count == 0) DIE("%s holds no APDUs", path);
    return a;
}

static unsigned char rsp[65540];

/* One exchange; the response (data + SW) is in rsp, its length returned. */
static int xfr(VReader *r, unsigned char *cmd, int len) {
    int n = (int)sizeof rsp;
    if (vreader_xfr_bytes(r, cmd, len, rsp, &n) != VREADER_OK) DIE("vreader_xfr_bytes: no card");
    return n;
}

static int sw(int n) { return n >= 2 ? rsp[n - 2] << 8 | rsp[n - 1] : -1; }

/* Replays the transcript once; counts status words if `counts`. */
static void replay(VReader *r, const struct apdus *a, int *counts) {
    unsigned char *p = a->bytes;
    for (int i = 0; i < a->count; i++) {
        int n = xfr(r, p, a->lens[i]);
        if (counts) {
            int s = sw(n);
            counts[s == 0x9000 ? 0 : (s >> 8) == 0x61 ? 1 : 2]++;
        }
        p += a->lens[i];
    }
}

/* SELECT PKI applet 0, VERIFY (any PIN opens an empty-password DB). */
static void login(VReader *r) {
    unsigned char select[] = {0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00};
    int n = xfr(r, select, sizeof select);
    if ((sw(n) >> 8) == 0x61) {
        unsigned char gr[] = {0x00, 0xC0, 0x00, 0x00, rsp[n - 1]};
        n = xfr(r, gr, sizeof gr);
    }
    if (sw(n) != 0x9000) DIE("SELECT PKI 0: %04X", sw(n));
    unsigned char verify[] = {0x00, 0x20, 0x00, 0x00, 0x08, '1', '2', '3', '4', '5', '6', '7', '8'};
    n = xfr(r, verify, sizeof verify);
    if (sw(n) != 0x9000) DIE("VERIFY: %04X", sw(n));
}

/* The SIGN chain of a 256-byte PKCS#1 block as OpenSC sends it under T=0:
 * 240 bytes with P1=80, 16 with P1=00 and no Le, then GET RESPONSE. */
static unsigned char sign1[5 + 240], sign2[5 + 16];
static unsigned char get_response[] = {0x00, 0xC0, 0x00, 0x00, 0x00};

static void make_sign(void) {
    unsigned char block[256];
    memset(block, 0xFF, sizeof block);
    block[0] = 0x00;
    block[1] = 0x01;
    block[256 - 21] = 0x00;
    memset(block + 256 - 20, 0x42, 20);
    unsigned char h1[] = {0x00, 0x42, 0x80, 0x00, 240}, h2[] = {0x00, 0x42, 0x00, 0x00, 16};
    memcpy(sign1, h1, 5);
    memcpy(sign1 + 5, block, 240);
    memcpy(sign2, h2, 5);
    memcpy(sign2 + 5, block + 240, 16);
}

/* One signature; checks every step when `check`. */
static void sign(VReader *r, int check) {
    int n = xfr(r, sign1, sizeof sign1);
    if (check && sw(n) != 0x9000) DIE("SIGN chunk 1: %04X", sw(n));
    n = xfr(r, sign2, sizeof sign2);
    if (check && sw(n) != 0x6100) DIE("SIGN chunk 2: %04X", sw(n));
    n = xfr(r, get_response, sizeof get_response);
    if (check && (n != 258 || sw(n) != 0x9000)) DIE("GET RESPONSE: %d bytes, %04X", n, sw(n));
}

static void print_atr(const unsigned char *atr, int len) {
    printf("atr ");
    for (int i = 0; i < len; i++) printf("%02X", atr[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    unsigned char atr[40];
    int atr_len = sizeof atr;
    if (argc == 4 && strcmp(argv[1], "init") == 0) {
        double t = now_ns();
        VReader *r = init_to_atr(argv[2], argv[3], atr, &atr_len);
        double us = (now_ns() - t) / 1e3;
        if (atr_len <= 0 || atr_len > 40) DIE("bad ATR length %d", atr_len);
        printf("init_us %.1f\n", us);
        print_atr(atr, atr_len);
        vreader_free(r);
        return 0;
    }
    if (argc != 5 || strcmp(argv[1], "serve") != 0)
        DIE("usage: libcacard_bench init DB CERTS | serve DB CERTS BINDFILE");
    struct apdus bind = load(argv[4]);
    Dl_info info;
    if (!dladdr((void *)vcard_emul_init, &info) || !info.dli_fname) DIE("dladdr failed");
    printf("lib %s\n", info.dli_fname);
    VReader *r = init_to_atr(argv[2], argv[3], atr, &atr_len);
    print_atr(atr, atr_len);
    int counts[3] = {0, 0, 0};
    replay(r, &bind, counts);
    printf("sw %d %d %d\n", counts[0], counts[1], counts[2]);
    make_sign();
    login(r);
    sign(r, 1);
    printf("login ok\nready\n");
    fflush(stdout);

    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        long arg = 0;
        if (sscanf(line, "bind %ld", &arg) == 1) {
            double budget = (double)arg * 1e6, t = now_ns(), e;
            long sent = 0;
            do {
                replay(r, &bind, NULL);
                sent += bind.count;
                e = now_ns() - t;
            } while (e < budget);
            printf("bind %.2f %ld\n", e / (double)sent, sent);
        } else if (sscanf(line, "sign %ld", &arg) == 1 && arg > 0) {
            double t = now_ns();
            for (long i = 0; i < arg; i++) sign(r, 0);
            double e = now_ns() - t;
            sign(r, 1); /* the card still signs correctly */
            printf("sign %.4f\n", e / (double)arg / 1e6);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            DIE("unknown command: %s", line);
        }
        fflush(stdout);
    }
    vreader_free(r);
    return 0;
}
