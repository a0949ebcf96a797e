/* Load and concurrency: force remove / insert cycles, many APDUs, and two
 * threads exchanging APDUs on one reader while a third powers it on.
 * Counts: STRESS_CYCLES (10000), STRESS_APDUS (100000), STRESS_THREADED
 * (20000 per thread). Every answer is checked. */
#include <pthread.h>
#include "common.h"

static VReader *reader;
static volatile int failures;

static const unsigned char SELECT_CCC[] = {0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00,
                                           0x01, 0x16, 0xDB, 0x00, 0x00};
static const unsigned char FCI[] = {0x6F, 0x0B, 0x84, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16,
                                    0xDB, 0x00, 0xA5, 0x00, 0x90, 0x00};

static int exchange_ok(void) {
    unsigned char buf[274];
    int len = sizeof buf;
    VReaderStatus st = vreader_xfr_bytes(reader, (unsigned char *)SELECT_CCC, sizeof SELECT_CCC, buf, &len);
    return st == VREADER_OK && len == (int)sizeof FCI && memcmp(buf, FCI, sizeof FCI) == 0;
}

static void *apdu_thread(void *arg) {
    long n = (long)arg;
    for (long i = 0; i < n; i++)
        if (!exchange_ok()) __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static void *power_thread(void *arg) {
    long n = (long)arg;
    static const unsigned char ATR[] = {0x3B, 0x7A, 0x18, 0x00, 0x00, 0x73, 0x66, 0x74,
                                        0x65, 0x20, 0x63, 0x64, 0x31, 0x34, 0x34};
    for (long i = 0; i < n; i++) {
        unsigned char atr[40];
        int len = 40;
        if (vreader_power_on(reader, atr, &len) != VREADER_OK || len != 15 || memcmp(atr, ATR, 15))
            __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

static void drain(void) {
    VEvent *ev;
    while ((ev = vevent_get_next_vevent()) != NULL) vevent_delete(ev);
}

int main(void) {
    long cycles = atol(env_or("STRESS_CYCLES", "10000"));
    long apdus = atol(env_or("STRESS_APDUS", "100000"));
    long threaded = atol(env_or("STRESS_THREADED", "20000"));
    char opts[200];
    qemu_options(opts, sizeof opts, "Stress Reader");
    CHECK(vcard_emul_init(vcard_emul_options(opts)) == VCARD_EMUL_OK);
    reader = vreader_get_reader_by_name("Stress Reader");
    CHECK(reader != NULL);
    drain();

    for (long i = 0; i < cycles; i++) {
        CHECK(vcard_emul_force_card_remove(reader) == VCARD_EMUL_OK);
        CHECK(vreader_card_is_present(reader) == VREADER_NO_CARD);
        CHECK(vcard_emul_force_card_insert(reader) == VCARD_EMUL_OK);
        VEvent *a = vevent_get_next_vevent(), *b = vevent_get_next_vevent();
        CHECK(a && b && a->type == VEVENT_CARD_REMOVE && b->type == VEVENT_CARD_INSERT);
        CHECK(a->reader == reader && b->reader == reader && b->card != NULL);
        vevent_delete(a);
        vevent_delete(b);
    }
    printf("cycles %ld\n", cycles);

    unsigned char atr[40];
    int len = 40;
    CHECK(vreader_power_on(reader, atr, &len) == VREADER_OK);
    for (long i = 0; i < apdus; i++) CHECK(exchange_ok());
    printf("apdus %ld\n", apdus);

    if (threaded > 0) {
        pthread_t t[3];
        CHECK(pthread_create(&t[0], NULL, apdu_thread, (void *)threaded) == 0);
        CHECK(pthread_create(&t[1], NULL, apdu_thread, (void *)threaded) == 0);
        CHECK(pthread_create(&t[2], NULL, power_thread, (void *)(threaded / 10)) == 0);
        for (int i = 0; i < 3; i++) CHECK(pthread_join(t[i], NULL) == 0);
    }
    printf("threaded %ld failures %d\n", threaded, failures);

    /* A reader freed by its last reference is gone: remove it from the
     * list, drop ours, and no getter finds it. */
    CHECK(vreader_remove_reader(reader) == VREADER_OK);
    drain();
    vreader_free(reader);
    printf("after_free %s\n", vreader_get_reader_by_name("Stress Reader") ? "found" : "gone");
    return failures ? 1 : 0;
}
