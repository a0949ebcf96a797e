/* QEMU 7.2 ccid-card-emulated's calls, in its order and threads: realize
 * (options, init, event + apdu threads), the event thread's handling,
 * APDUs with a 270-byte buffer, unrealize (queue LAST, join), re-plug
 * (options again, replay). */
#include <pthread.h>
#include "common.h"

static VReader *held;
static unsigned char atr[40];
static int atr_len = -1;
static int events_seen;
static char event_log[256];

static void *event_thread(void *arg) {
    (void)arg;
    for (;;) {
        VEvent *ev = vevent_wait_next_vevent();
        if (ev == NULL || ev->type == VEVENT_LAST) {
            /* QEMU does not delete LAST; the test does, to stay leak-free. */
            vevent_delete(ev);
            break;
        }
        events_seen++;
        switch (ev->type) {
        case VEVENT_READER_INSERT:
            strcat(event_log, "RI:");
            strcat(event_log, vreader_get_name(ev->reader));
            strcat(event_log, ev->card ? "+card;" : ";");
            if (held) vreader_free(held);
            held = vreader_reference(ev->reader);
            break;
        case VEVENT_CARD_INSERT:
            strcat(event_log, "CI");
            strcat(event_log, ev->card ? "+card;" : ";");
            if (!held) held = vreader_reference(ev->reader);
            CHECK(ev->reader == held);
            atr_len = 40;
            vreader_power_on(ev->reader, atr, &atr_len);
            CHECK(atr_len <= 40);
            break;
        case VEVENT_CARD_REMOVE:
            strcat(event_log, "CR;");
            break;
        case VEVENT_READER_REMOVE:
            strcat(event_log, "RR;");
            vreader_free(held);
            held = NULL;
            break;
        default:
            break;
        }
        vevent_delete(ev);
    }
    return NULL;
}

static void realize_events(void) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, event_thread, NULL) == 0);
    /* Unrealize: the main thread queues LAST and joins. Give the thread
     * the queued events first (they were queued before it existed). */
    struct timespec d = {0, 200 * 1000 * 1000};
    nanosleep(&d, NULL);
    vevent_queue_vevent(vevent_new(VEVENT_LAST, NULL, NULL));
    CHECK(pthread_join(t, NULL) == 0);
}

int main(void) {
    char opts[200];
    qemu_options(opts, sizeof opts, "Virtual Reader");
    VCardEmulOptions *o = vcard_emul_options(opts);
    CHECK(o != NULL);
    printf("init %d\n", (int)vcard_emul_init(o));
    realize_events();
    printf("events %s\n", event_log);
    print_hex("atr", atr, atr_len);

    /* ccid/apdu thread traffic: 270-byte buffer. */
    xfr(held, "select.ccc", "00A4040007A0000001 16DB00", 270, NULL);
    xfr(held, "get_response", "00C000000D", 270, NULL);
    xfr(held, "get_response.none", "00C0000000", 270, NULL);
    xfr(held, "select.unknown", "00A4040005A000000308", 270, NULL);
    xfr(held, "select.case1", "00A40400", 270, NULL);
    xfr(held, "short.3", "00A404", 270, NULL);
    xfr(held, "short.0", "", 270, NULL);
    xfr(held, "lc_mismatch", "00A4040007A000000116", 270, NULL);
    xfr(held, "select.pki0", "00A4040007A0000000790100", 270, NULL);
    xfr(held, "ins_ff", "00FF0000", 270, NULL);
    xfr(held, "verify.status", "0020000000", 270, NULL);
    xfr(held, "select.ccc.le", "00A4040007A000000116DB0000", 270, NULL);
    xfr(held, "trunc.3", "00A4040007A000000116DB0000", 3, NULL);
    xfr(held, "trunc.0", "00A4040007A000000116DB0000", 0, NULL);

    /* device_del, device_add: options again, then replay instead of init. */
    event_log[0] = 0;
    o = vcard_emul_options(opts);
    CHECK(o != NULL);
    vcard_emul_replay_insertion_events();
    VReader *before = held;
    held = NULL;
    realize_events();
    printf("replay.events %s\n", event_log);
    printf("replay.same_reader %d\n", held == before);
    xfr(held, "replay.select.ccc", "00A4040007A000000116DB0000", 270, NULL);
    printf("init.again %d\n", (int)vcard_emul_init(o));
    vreader_free(before);
    vreader_free(held);
    return 0;
}
