/* Shared helpers of the C tests: they print "key value" lines that the
 * Rust harness (tests/c_abi.rs) compares with its expectations, and abort
 * (exit 1) on a broken invariant that holds for every implementation. */
#ifndef VCAC_TEST_COMMON_H
#define VCAC_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libcacard.h>

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)

static inline const char *env_or(const char *name, const char *dflt) {
    const char *v = getenv(name);
    return v ? v : dflt;
}

static inline size_t unhex(const char *hex, unsigned char *out, size_t room) {
    size_t n = 0;
    while (hex[0] && hex[1] && n < room) {
        if (hex[0] == ' ') { hex++; continue; }
        unsigned v;
        CHECK(sscanf(hex, "%2x", &v) == 1);
        out[n++] = (unsigned char)v;
        hex += 2;
    }
    return n;
}

static inline void print_hex(const char *key, const unsigned char *b, int n) {
    printf("%s ", key);
    for (int i = 0; i < n; i++) printf("%02X", b[i]);
    if (n == 0) printf("-");
    printf("\n");
}

/* One exchange of `n` raw bytes with a receive buffer of `room` bytes (at
 * most 300); prints "key STATUS:RESPONSEHEX", copies the response to `out`
 * (when not NULL) and returns its length. */
static inline int xfr_bytes(VReader *r, const char *key, const unsigned char *cmd, int n,
                            int room, unsigned char *out) {
    unsigned char buf[300];
    int len = room;
    VReaderStatus st = vreader_xfr_bytes(r, (unsigned char *)cmd, n, buf, &len);
    printf("%s %d:", key, (int)st);
    for (int i = 0; i < len; i++) printf("%02X", buf[i]);
    printf("\n");
    if (out) memcpy(out, buf, len > 0 ? (size_t)len : 0);
    return len;
}

/* xfr_bytes with the command given in hex. */
static inline int xfr(VReader *r, const char *key, const char *cmd_hex, int room,
                      unsigned char *out) {
    unsigned char cmd[300];
    int n = (int)unhex(cmd_hex, cmd, sizeof cmd);
    return xfr_bytes(r, key, cmd, n, room, out);
}

/* Raw bytes with QEMU's 270-byte receive buffer. */
static inline int xfr_raw(VReader *r, const char *key, const unsigned char *cmd, int n,
                          unsigned char *out) {
    return xfr_bytes(r, key, cmd, n, 270, out);
}

/* A hex command with QEMU's 270-byte receive buffer, response not kept. */
static inline void x(VReader *r, const char *key, const char *hex) {
    xfr(r, key, hex, 270, NULL);
}

/* Up to `room` readers of vreader_get_reader_list(), in its order. */
static inline int list_readers(VReader **out, int room) {
    int n = 0;
    VReaderList *list = vreader_get_reader_list();
    for (VReaderListEntry *e = vreader_list_get_first(list); e && n < room; e = vreader_list_get_next(e))
        out[n++] = vreader_list_get_reader(e);
    vreader_list_delete(list);
    return n;
}

/* The options string QEMU's ccid-card-emulated builds. */
static inline void qemu_options(char *buf, size_t size, const char *reader) {
    snprintf(buf, size, "db=\"%s\" use_hw=no soft=(,%s,CAC,,%s)",
             env_or("CACARD_DB", "/etc/pki/nssdb"), reader,
             env_or("CACARD_CERTS", "cert1,cert2,cert3"));
}

#endif
