/* vcac libcacard-compatible API: the VSCard wire records (QEMU
 * ccid-card-passthru, spice). No library function uses them. Field byte
 * order is the transport's (big-endian on the wire). */
#ifndef VSCARD_COMMON_H
#define VSCARD_COMMON_H

#include <stdint.h>

#define VERSION_MAJOR_BITS 11
#define VERSION_MIDDLE_BITS 11
#define VERSION_MINOR_BITS 10

#define MAKE_VERSION(major, middle, minor) \
     ((major  << (VERSION_MINOR_BITS + VERSION_MIDDLE_BITS)) \
      | (middle << VERSION_MINOR_BITS) \
      | (minor))

#define VSCARD_VERSION MAKE_VERSION(0, 0, 2)

typedef enum VSCMsgType {
    VSC_Init = 1,
    VSC_Error,
    VSC_ReaderAdd,
    VSC_ReaderRemove,
    VSC_ATR,
    VSC_CardRemove,
    VSC_APDU,
    VSC_Flush,
    VSC_FlushComplete
} VSCMsgType;

typedef enum VSCErrorCode {
    VSC_SUCCESS = 0,
    VSC_GENERAL_ERROR = 1,
    VSC_CANNOT_ADD_MORE_READERS,
    VSC_CARD_ALREAY_INSERTED,
} VSCErrorCode;

#define VSCARD_UNDEFINED_READER_ID  0xffffffff
#define VSCARD_MINIMAL_READER_ID    0

/* The four bytes "VSCD" as a host-order constant. */
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define VSCARD_MAGIC_CONST(f) \
    (((uint32_t)(f)[0] << 24) | ((uint32_t)(f)[1] << 16) | ((uint32_t)(f)[2] << 8) | (uint32_t)(f)[3])
#else
#define VSCARD_MAGIC_CONST(f) \
    ((uint32_t)(f)[0] | ((uint32_t)(f)[1] << 8) | ((uint32_t)(f)[2] << 16) | ((uint32_t)(f)[3] << 24))
#endif
#define VSCARD_MAGIC VSCARD_MAGIC_CONST("VSCD")

/* Every message: type, reader id, payload length, payload. */
typedef struct VSCMsgHeader {
    uint32_t type;
    uint32_t reader_id;
    uint32_t length;
    uint8_t data[0];
} VSCMsgHeader;

/* VSC_Init: magic, version, capabilities. */
typedef struct VSCMsgInit {
    uint32_t magic;
    uint32_t version;
    uint32_t capabilities[1];
} VSCMsgInit;

/* VSC_Error: an acknowledgement or error code. */
typedef struct VSCMsgError {
    uint32_t code;
} VSCMsgError;

/* VSC_ReaderAdd: the reader name. */
typedef struct VSCMsgReaderAdd {
    uint8_t name[0];
} VSCMsgReaderAdd;

typedef struct VSCMsgReaderRemove {
} VSCMsgReaderRemove;

/* VSC_ATR: the card's ATR. */
typedef struct VSCMsgATR {
    uint8_t atr[0];
} VSCMsgATR;

typedef struct VSCMsgCardRemove {
} VSCMsgCardRemove;

/* VSC_APDU: a command or response APDU. */
typedef struct VSCMsgAPDU {
    uint8_t data[0];
} VSCMsgAPDU;

typedef struct VSCMsgFlush {
} VSCMsgFlush;

typedef struct VSCMsgFlushComplete {
} VSCMsgFlushComplete;

#endif
