//! The public C types of libcacard 2.8, byte for byte (x86-64 layouts are
//! checked at compile time and again from C in `tests/c/layout.c`).

use core::ffi::{c_int, c_uchar, c_uint, c_ushort};
use core::mem::{align_of, offset_of, size_of};

pub use crate::card::{VCard, VCardApplet, VCardKey};
pub use crate::reader::{VReader, VReaderList, VReaderListEntry};

/// `vreader_id_t`.
pub type VReaderId = c_uint;
/// `(vreader_id_t)-1`: a reader nobody has given an id yet.
pub const UNDEFINED_READER_ID: VReaderId = 0xFFFF_FFFF;

/// `vcard_7816_status_t`: SW1 in the high byte, SW2 in the low one.
pub type Status7816 = c_ushort;

/// `VReaderStatus`.
pub type VReaderStatus = c_uint;
/// `VREADER_OK`.
pub const VREADER_OK: VReaderStatus = 0;
/// `VREADER_NO_CARD`.
pub const VREADER_NO_CARD: VReaderStatus = 1;
/// `VREADER_OUT_OF_MEMORY`.
pub const VREADER_OUT_OF_MEMORY: VReaderStatus = 2;

/// `VCardEmulError`.
pub type VCardEmulError = c_uint;
/// `VCARD_EMUL_OK`.
pub const VCARD_EMUL_OK: VCardEmulError = 0;
/// `VCARD_EMUL_FAIL`.
pub const VCARD_EMUL_FAIL: VCardEmulError = 1;
/// `VCARD_EMUL_INIT_ALREADY_INITED`.
pub const VCARD_EMUL_INIT_ALREADY_INITED: VCardEmulError = 2;

/// `VCardStatus`.
pub type VCardStatus = c_uint;
/// `VCARD_DONE`.
pub const VCARD_DONE: VCardStatus = 0;
/// `VCARD_NEXT`.
pub const VCARD_NEXT: VCardStatus = 1;
/// `VCARD_FAIL`.
pub const VCARD_FAIL: VCardStatus = 2;

/// `VCardType`.
pub type VCardType = c_uint;
/// `VCARD_VM`, the type `vcard_new` gives.
pub const VCARD_VM: VCardType = 1;

/// `VCardPower`.
pub type VCardPower = c_uint;
/// `VCARD_POWER_ON`.
pub const VCARD_POWER_ON: VCardPower = 0;
/// `VCARD_POWER_OFF`.
pub const VCARD_POWER_OFF: VCardPower = 1;

/// `VCardEmulType`.
pub type VCardEmulType = c_uint;

/// `VEventType`.
pub type VEventType = c_uint;
/// `VEVENT_READER_INSERT`.
pub const VEVENT_READER_INSERT: VEventType = 0;
/// `VEVENT_READER_REMOVE`.
pub const VEVENT_READER_REMOVE: VEventType = 1;
/// `VEVENT_CARD_INSERT`.
pub const VEVENT_CARD_INSERT: VEventType = 2;
/// `VEVENT_CARD_REMOVE`.
pub const VEVENT_CARD_REMOVE: VEventType = 3;
/// `VEVENT_LAST`.
pub const VEVENT_LAST: VEventType = 4;

/// `VCardAPDUType`: ISO.
pub const VCARD_7816_ISO: c_uint = 0;
/// `VCardAPDUType`: reserved for future use (CLA 10..7F).
pub const VCARD_7816_RFU: c_uint = 1;
/// `VCardAPDUType`: PTS (CLA FF).
pub const VCARD_7816_PTS: c_uint = 2;
/// `VCardAPDUType`: proprietary (CLA D0..FE).
pub const VCARD_7816_PROPRIETARY: c_uint = 3;

/// `enum VCardResponseBufferType`: struct and data malloc'ed.
pub const VCARD_MALLOC: c_uint = 0;
/// Only the data is malloc'ed.
pub const VCARD_MALLOC_DATA: c_uint = 1;
/// Only the struct is malloc'ed (the data is its own status bytes).
pub const VCARD_MALLOC_STRUCT: c_uint = 2;
/// Nothing is malloc'ed (a static response).
pub const VCARD_STATIC: c_uint = 3;

/// `struct VEventStruct`. Consumers read its fields directly.
#[repr(C)]
#[derive(Debug)]
pub struct VEvent {
    /// Unused by consumers (NULL).
    pub next: *mut VEvent,
    /// What happened.
    pub event_type: VEventType,
    /// The reader (a reference the event holds), or NULL.
    pub reader: *mut VReader,
    /// The card (a reference the event holds), or NULL.
    pub card: *mut VCard,
}

/// `struct VCardBufferResponseStruct`: data a GET RESPONSE will return.
#[repr(C)]
#[derive(Debug)]
pub struct VCardBufferResponse {
    /// The whole buffer (malloc'ed).
    pub buffer: *mut c_uchar,
    /// Its size.
    pub buffer_len: c_int,
    /// The next byte to return.
    pub current: *mut c_uchar,
    /// Bytes left from `current`.
    pub len: c_int,
}

/// `struct VCardResponseStruct`: `b_total_len` bytes at `b_data` are the
/// response APDU (`b_len` data bytes, then SW1 SW2).
#[repr(C)]
#[derive(Debug)]
pub struct VCardResponse {
    /// The response bytes.
    pub b_data: *mut c_uchar,
    /// The status word.
    pub b_status: Status7816,
    /// SW1.
    pub b_sw1: c_uchar,
    /// SW2.
    pub b_sw2: c_uchar,
    /// Data bytes (without the status word).
    pub b_len: c_int,
    /// All bytes.
    pub b_total_len: c_int,
    /// Which parts are malloc'ed (`VCARD_MALLOC`…`VCARD_STATIC`).
    pub b_type: c_uint,
}

/// `struct VCardAPDUStruct`: a parsed command APDU.
#[repr(C)]
#[allow(non_snake_case)] // the C field names
#[derive(Debug)]
pub struct VCardAPDU {
    /// Length of the whole command.
    pub a_len: c_int,
    /// Lc (0 without data).
    pub a_Lc: c_int,
    /// Le (0 without Le; 256 / 65536 for a zero Le).
    pub a_Le: c_int,
    /// The command data, or NULL.
    pub a_body: *mut c_uchar,
    /// Logical channel from CLA.
    pub a_channel: c_int,
    /// Secure-messaging bits from CLA.
    pub a_secure_messaging: c_int,
    /// CLA's high nibble.
    pub a_type: c_int,
    /// `VCardAPDUType`.
    pub a_gen_type: c_uint,
    /// The raw command (malloc'ed copy); `u.header` in C.
    pub a_data: *mut c_uchar,
}

/// `VCardProcessAPDU`.
pub type VCardProcessApduFn =
    unsafe extern "C" fn(*mut VCard, *mut VCardAPDU, *mut *mut VCardResponse) -> VCardStatus;
/// `VCardResetApplet`.
pub type VCardResetAppletFn = unsafe extern "C" fn(*mut VCard, c_int) -> VCardStatus;
/// `VCardAppletPrivateFree`.
pub type VCardAppletPrivateFreeFn = unsafe extern "C" fn(*mut core::ffi::c_void);
/// `VCardEmulFree`.
pub type VCardEmulFreeFn = unsafe extern "C" fn(*mut core::ffi::c_void);
/// `VReaderEmulFree`.
pub type VReaderEmulFreeFn = unsafe extern "C" fn(*mut core::ffi::c_void);
/// `VCardGetAtr`.
pub type VCardGetAtrFn = unsafe extern "C" fn(*mut VCard, *mut c_uchar, *mut c_int);

/// Logical channels (`MAX_CHANNEL`).
pub const MAX_CHANNEL: usize = 4;

// The layouts §1.4 of the ABI notes give for x86-64.
const _: () = {
    assert!(size_of::<VEvent>() == 32 && align_of::<VEvent>() == 8);
    assert!(offset_of!(VEvent, next) == 0);
    assert!(offset_of!(VEvent, event_type) == 8);
    assert!(offset_of!(VEvent, reader) == 16);
    assert!(offset_of!(VEvent, card) == 24);
    assert!(size_of::<VCardBufferResponse>() == 32);
    assert!(offset_of!(VCardBufferResponse, buffer_len) == 8);
    assert!(offset_of!(VCardBufferResponse, current) == 16);
    assert!(offset_of!(VCardBufferResponse, len) == 24);
    assert!(size_of::<VCardResponse>() == 24);
    assert!(offset_of!(VCardResponse, b_status) == 8);
    assert!(offset_of!(VCardResponse, b_sw1) == 10);
    assert!(offset_of!(VCardResponse, b_sw2) == 11);
    assert!(offset_of!(VCardResponse, b_len) == 12);
    assert!(offset_of!(VCardResponse, b_total_len) == 16);
    assert!(offset_of!(VCardResponse, b_type) == 20);
    assert!(size_of::<VCardAPDU>() == 48);
    assert!(offset_of!(VCardAPDU, a_Le) == 8);
    assert!(offset_of!(VCardAPDU, a_body) == 16);
    assert!(offset_of!(VCardAPDU, a_channel) == 24);
    assert!(offset_of!(VCardAPDU, a_secure_messaging) == 28);
    assert!(offset_of!(VCardAPDU, a_type) == 32);
    assert!(offset_of!(VCardAPDU, a_gen_type) == 36);
    assert!(offset_of!(VCardAPDU, a_data) == 40);
    assert!(size_of::<VReaderId>() == 4 && size_of::<Status7816>() == 2);
};
