/* vcac libcacard-compatible API: reader types. */
#ifndef VREADERT_H
#define VREADERT_H 1

typedef enum {
    VREADER_OK = 0,        /* also: "a card is present" */
    VREADER_NO_CARD,
    VREADER_OUT_OF_MEMORY
} VReaderStatus;

/* A new reader's id is (vreader_id_t)-1 until vreader_set_id. */
typedef unsigned int vreader_id_t;
typedef struct VReaderStruct VReader;
typedef struct VReaderListStruct VReaderList;
typedef struct VReaderListEntryStruct VReaderListEntry;

typedef struct VReaderEmulStruct VReaderEmul;
typedef void (*VReaderEmulFree)(VReaderEmul *);

#endif
