/* vcac libcacard-compatible API: card types shared by the other headers.
 * Written for the vcac drop-in libcacard.so.0 (MIT OR Apache-2.0). */
#ifndef VCARDT_H
#define VCARDT_H 1

#include <assert.h>

#ifndef MIN
#define MIN(x, y) ((x) > (y) ? (y) : (x))
#define MAX(x, y) ((x) > (y) ? (x) : (y))
#endif

/* Bit for vcard_set_compat (declared, not exported by 2.8). */
#define VCARD_COMPAT_WINDOWS 0x01

/* Opaque handles: only pointers cross the API. */
typedef struct VCardStruct VCard;
typedef struct VCardAPDUStruct VCardAPDU;
typedef struct VCardResponseStruct VCardResponse;
typedef struct VCardBufferResponseStruct VCardBufferResponse;
typedef struct VCardAppletStruct VCardApplet;
typedef struct VCardAppletPrivateStruct VCardAppletPrivate;
typedef struct VCardKeyStruct VCardKey;
typedef struct VCardEmulStruct VCardEmul;

/* Logical channels a card tracks. */
#define MAX_CHANNEL 4

/* Result of an applet step: answered, pass to the next handler, or failed. */
typedef enum {
    VCARD_DONE,
    VCARD_NEXT,
    VCARD_FAIL
} VCardStatus;

typedef enum {
    VCARD_FILE_SYSTEM,
    VCARD_VM,
    VCARD_DIRECT
} VCardType;

typedef enum {
    VCARD_POWER_ON,
    VCARD_POWER_OFF
} VCardPower;

/* Applet and card hooks. */
typedef VCardStatus (*VCardProcessAPDU)(VCard *card, VCardAPDU *apdu,
                                        VCardResponse **response);
typedef VCardStatus (*VCardResetApplet)(VCard *card, int channel);
typedef void (*VCardAppletPrivateFree)(VCardAppletPrivate *);
typedef void (*VCardEmulFree)(VCardEmul *);
typedef void (*VCardGetAtr)(VCard *, unsigned char *atr, int *atr_len);

/* Data waiting for GET RESPONSE: len bytes remain at current. */
struct VCardBufferResponseStruct {
    unsigned char *buffer;
    int buffer_len;
    unsigned char *current;
    int len;
};

#endif
