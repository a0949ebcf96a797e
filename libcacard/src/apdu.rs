//! `VCardAPDU`, `VCardResponse` and `VCardBufferResponse`: the structs a
//! C applet sees, with libcacard's framing and allocation rules.

use core::ffi::{c_int, c_uchar, c_ushort, c_void};
use core::ptr;

use crate::card::VCard;
use crate::types::{
    Status7816, VCardAPDU, VCardBufferResponse, VCardResponse, VCARD_7816_ISO,
    VCARD_7816_PROPRIETARY, VCARD_7816_PTS, VCARD_7816_RFU, VCARD_MALLOC, VCARD_MALLOC_DATA,
    VCARD_MALLOC_STRUCT, VCARD_STATIC,
};
use crate::{c_alloc, c_copy, c_free, c_slice, guard};

/// `67 00`.
pub const SW_WRONG_LENGTH: Status7816 = 0x6700;
/// `6F 00`: also what a response that cannot be allocated becomes.
pub const SW_GENERAL: Status7816 = 0x6F00;
/// `65 81`: memory failure.
pub const SW_MEMORY_FAILURE: Status7816 = 0x6581;

/// Where the parts of a command APDU are (ISO 7816-3 cases, libcacard's
/// rules: an `Lc`/`Le` mismatch is `67 00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Lc (0 without data).
    pub lc: usize,
    /// Le, with a zero Le meaning 256 (short) or 65536 (extended); 0 when
    /// absent.
    pub le: usize,
    /// Offset of the data, when there is some.
    pub body: Option<usize>,
}

/// Splits a raw command into header, data and Le, or returns the status
/// word libcacard answers (`67 00`).
pub fn frame(raw: &[u8]) -> Result<Frame, Status7816> {
    let len = raw.len();
    let p3 = match raw {
        [_, _, _, _] => {
            return Ok(Frame {
                lc: 0,
                le: 0,
                body: None,
            })
        }
        [_, _, _, _, p3, ..] => usize::from(*p3),
        _ => return Err(SW_WRONG_LENGTH),
    };
    if len == 5 {
        return Ok(Frame {
            lc: 0,
            le: if p3 == 0 { 256 } else { p3 },
            body: None,
        });
    }
    if p3 != 0 {
        let le = match len.checked_sub(5 + p3) {
            Some(0) => 0,
            Some(1) => match raw.get(5 + p3) {
                Some(0) | None => 256,
                Some(b) => usize::from(*b),
            },
            _ => return Err(SW_WRONG_LENGTH),
        };
        return Ok(Frame {
            lc: p3,
            le,
            body: Some(5),
        });
    }
    // Extended length: 00 HI LO.
    let (Some(hi), Some(lo)) = (raw.get(5), raw.get(6)) else {
        return Err(SW_WRONG_LENGTH);
    };
    let n = usize::from(*hi) << 8 | usize::from(*lo);
    if len == 7 {
        return Ok(Frame {
            lc: 0,
            le: if n == 0 { 65536 } else { n },
            body: None,
        });
    }
    if n == 0 {
        return Err(SW_WRONG_LENGTH);
    }
    let le = match len.checked_sub(7 + n) {
        Some(0) => 0,
        Some(2) => {
            let (Some(h), Some(l)) = (raw.get(7 + n), raw.get(8 + n)) else {
                return Err(SW_WRONG_LENGTH);
            };
            match usize::from(*h) << 8 | usize::from(*l) {
                0 => 65536,
                v => v,
            }
        }
        _ => return Err(SW_WRONG_LENGTH),
    };
    Ok(Frame {
        lc: n,
        le,
        body: Some(7),
    })
}

/// What libcacard decodes from CLA: (channel, secure messaging bits,
/// `VCardAPDUType`).
pub fn decode_class(cla: u8) -> (c_int, c_int, u32) {
    match cla >> 4 {
        0x0 | 0x8 | 0x9 | 0xA => (
            c_int::from(cla & 0x03),
            c_int::from(cla & 0x0E),
            VCARD_7816_ISO,
        ),
        0xB | 0xC => (0, 0, VCARD_7816_ISO),
        0x1..=0x7 => (0, 0, VCARD_7816_RFU),
        _ if cla == 0xFF => (0, 0, VCARD_7816_PTS),
        _ => (0, 0, VCARD_7816_PROPRIETARY),
    }
}

/// Parses a raw command APDU into a new `VCardAPDU`.
///
/// Returns NULL and stores the status word (`67 00` for a malformed
/// command) in `*status` when it cannot be parsed; NULL `raw_apdu` with a
/// positive `len`, or a negative `len`, is `67 00` too; a NULL `status` is
/// allowed.
///
/// Ownership: the caller owns the returned APDU (a copy of the bytes) and
/// frees it with [`vcard_apdu_delete`].
///
/// # Safety
/// `raw_apdu` points to `len` readable bytes; `status` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn vcard_apdu_new(
    raw_apdu: *mut c_uchar,
    len: c_int,
    status: *mut c_ushort,
) -> *mut VCardAPDU {
    guard(ptr::null_mut(), || {
        let set = |sw: Status7816| {
            if !status.is_null() {
                // SAFETY: `status` is writable per the contract.
                unsafe { *status = sw };
            }
        };
        // SAFETY: per the contract.
        let Some(raw) = (unsafe { c_slice(raw_apdu, len) }) else {
            set(SW_WRONG_LENGTH);
            return ptr::null_mut();
        };
        match new_apdu(raw) {
            Ok(apdu) => {
                set(0x9000);
                apdu
            }
            Err(sw) => {
                set(sw);
                ptr::null_mut()
            }
        }
    })
}

/// A malloc'ed `VCardAPDU` for `raw`.
pub(crate) fn new_apdu(raw: &[u8]) -> Result<*mut VCardAPDU, Status7816> {
    let f = frame(raw)?;
    let cla = raw.first().copied().unwrap_or(0);
    let (channel, sm, gen) = decode_class(cla);
    let data = c_copy(raw);
    if data.is_null() {
        return Err(SW_MEMORY_FAILURE);
    }
    let apdu = c_alloc(core::mem::size_of::<VCardAPDU>()).cast::<VCardAPDU>();
    if apdu.is_null() {
        // SAFETY: `data` came from c_copy.
        unsafe { c_free(data.cast()) };
        return Err(SW_MEMORY_FAILURE);
    }
    let value = VCardAPDU {
        a_len: raw.len() as c_int,
        a_Lc: f.lc as c_int,
        a_Le: f.le as c_int,
        a_body: f.body.map_or(ptr::null_mut(), |o| {
            // SAFETY: the body offset lies inside the copied command.
            unsafe { data.add(o) }
        }),
        a_channel: channel,
        a_secure_messaging: sm,
        a_type: c_int::from(cla & 0xF0),
        a_gen_type: gen,
        a_data: data,
    };
    // SAFETY: `apdu` is a fresh allocation of the struct's size and
    // malloc's alignment suffices for it.
    unsafe { apdu.write(value) };
    Ok(apdu)
}

/// Frees an APDU from [`vcard_apdu_new`]. NULL is a no-op.
///
/// # Safety
/// `apdu` is NULL or an APDU from `vcard_apdu_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn vcard_apdu_delete(apdu: *mut VCardAPDU) {
    guard((), || {
        if apdu.is_null() {
            return;
        }
        // SAFETY: per the contract, `apdu` and its data are ours to free.
        unsafe {
            c_free((*apdu).a_data.cast());
            c_free(apdu.cast());
        }
    })
}

/// The raw bytes of an APDU.
///
/// # Safety
/// `apdu` is a valid `VCardAPDU` whose `a_data` holds `a_len` bytes.
pub(crate) unsafe fn apdu_bytes<'a>(apdu: *const VCardAPDU) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    unsafe { c_slice((*apdu).a_data, (*apdu).a_len) }
}

/// A malloc'ed response: `data`, then SW1 SW2.
pub(crate) fn response_with_status(data: &[u8], sw: Status7816) -> *mut VCardResponse {
    let mut bytes = Vec::with_capacity(data.len() + 2);
    bytes.extend_from_slice(data);
    bytes.extend_from_slice(&sw.to_be_bytes());
    let r = response_raw(&bytes, data.len());
    if !r.is_null() {
        // SAFETY: `r` was just built.
        unsafe { set_status(r, sw) };
    }
    r
}

/// A malloc'ed response holding `bytes` (`data_len` of them data).
fn response_raw(bytes: &[u8], data_len: usize) -> *mut VCardResponse {
    let data = c_copy(bytes);
    if data.is_null() {
        return status_only(SW_MEMORY_FAILURE);
    }
    let r = c_alloc(core::mem::size_of::<VCardResponse>()).cast::<VCardResponse>();
    if r.is_null() {
        // SAFETY: `data` came from c_copy.
        unsafe { c_free(data.cast()) };
        return ptr::null_mut();
    }
    // SAFETY: fresh allocation of the struct's size.
    unsafe {
        r.write(VCardResponse {
            b_data: data,
            b_status: 0,
            b_sw1: 0,
            b_sw2: 0,
            b_len: data_len as c_int,
            b_total_len: bytes.len() as c_int,
            b_type: VCARD_MALLOC,
        })
    };
    r
}

/// A malloc'ed status-only response whose data are its own SW bytes.
fn status_only(sw: Status7816) -> *mut VCardResponse {
    let r = c_alloc(core::mem::size_of::<VCardResponse>()).cast::<VCardResponse>();
    if r.is_null() {
        return ptr::null_mut();
    }
    let [sw1, sw2] = sw.to_be_bytes();
    // SAFETY: fresh allocation; `b_data` then points into the same struct.
    unsafe {
        r.write(VCardResponse {
            b_data: ptr::null_mut(),
            b_status: sw,
            b_sw1: sw1,
            b_sw2: sw2,
            b_len: 0,
            b_total_len: 2,
            b_type: VCARD_MALLOC_STRUCT,
        });
        (*r).b_data = ptr::addr_of_mut!((*r).b_sw1);
    }
    r
}

/// Sets the status word of a response, in its fields and after its data.
///
/// # Safety
/// `r` is a valid response whose `b_data` has room for `b_len + 2` bytes.
unsafe fn set_status(r: *mut VCardResponse, sw: Status7816) {
    let [sw1, sw2] = sw.to_be_bytes();
    // SAFETY: per the contract.
    unsafe {
        (*r).b_status = sw;
        (*r).b_sw1 = sw1;
        (*r).b_sw2 = sw2;
        if let Ok(n) = usize::try_from((*r).b_len) {
            if !(*r).b_data.is_null() && (*r).b_data != ptr::addr_of_mut!((*r).b_sw1) {
                *(*r).b_data.add(n) = sw1;
                *(*r).b_data.add(n + 1) = sw2;
            }
        }
    }
}

/// The bytes a response sends (`b_total_len` from `b_data`).
///
/// # Safety
/// `r` is a valid response.
pub(crate) unsafe fn response_bytes<'a>(r: *const VCardResponse) -> Option<&'a [u8]> {
    // SAFETY: per the contract.
    unsafe { c_slice((*r).b_data, (*r).b_total_len) }
}

fn new_response(card: *mut VCard, data: &[u8], le: c_int, sw: Status7816) -> *mut VCardResponse {
    let le = usize::try_from(le).unwrap_or(0);
    if data.len() <= le {
        return response_with_status(data, sw);
    }
    // More than Le: everything waits in the card's buffer response.
    // SAFETY: `card` is NULL or a card pointer per the callers' contracts.
    let Some(card) = (unsafe { card.as_ref() }) else {
        return ptr::null_mut();
    };
    let buffer = buffer_response_new(data);
    if buffer.is_null() {
        return status_only(SW_MEMORY_FAILURE);
    }
    card.replace_buffer_response(buffer);
    let left = if data.len() >= 256 {
        0
    } else {
        data.len() as u16
    };
    status_only(0x6100 | left)
}

/// A response carrying `len` bytes of `buf` and `status`. When the data
/// is longer than `Le`, all of it goes to the card's buffer response (for
/// GET RESPONSE, replacing any previous one) and the response is
/// `61 xx` — which needs `card`; with a NULL card that case returns NULL.
/// NULL `buf` with a positive `len`, or a negative `len`, returns NULL.
///
/// Ownership: the caller owns the response and frees it with
/// [`vcard_response_delete`] (a response returned from an applet callback
/// is freed by the library).
///
/// # Safety
/// `card` is NULL or a live card; `buf` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn vcard_response_new(
    card: *mut VCard,
    buf: *const c_uchar,
    len: c_int,
    le: c_int,
    status: Status7816,
) -> *mut VCardResponse {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        match unsafe { c_slice(buf, len) } {
            Some(data) => new_response(card, data, le, status),
            None => ptr::null_mut(),
        }
    })
}

/// [`vcard_response_new`] with the status word as two bytes.
///
/// # Safety
/// As for [`vcard_response_new`].
#[no_mangle]
pub unsafe extern "C" fn vcard_response_new_bytes(
    card: *mut VCard,
    buf: *mut c_uchar,
    len: c_int,
    le: c_int,
    sw1: c_uchar,
    sw2: c_uchar,
) -> *mut VCardResponse {
    // SAFETY: same contract.
    unsafe { vcard_response_new(card, buf, len, le, u16::from_be_bytes([sw1, sw2])) }
}

/// A response with no data, only `sw1 sw2`.
///
/// Ownership: freed with [`vcard_response_delete`]. NULL only when out of
/// memory.
#[no_mangle]
pub extern "C" fn vcard_response_new_status_bytes(
    sw1: c_uchar,
    sw2: c_uchar,
) -> *mut VCardResponse {
    guard(ptr::null_mut(), || {
        status_only(u16::from_be_bytes([sw1, sw2]))
    })
}

/// A response with no data and `status`; if it cannot be allocated, a
/// static `65 81` response (which [`vcard_response_delete`] leaves alone).
///
/// Ownership: freed with [`vcard_response_delete`].
#[no_mangle]
pub extern "C" fn vcard_make_response(status: Status7816) -> *mut VCardResponse {
    guard(ptr::null_mut(), || {
        let r = status_only(status);
        if r.is_null() {
            return MEMORY_FAILURE.0.get();
        }
        r
    })
}

/// The response `vcard_make_response` falls back to. It is `VCARD_STATIC`:
/// deleting it does nothing, and nothing writes to it.
struct StaticResponse(core::cell::UnsafeCell<VCardResponse>);
// SAFETY: the static response is never written after initialisation
// (vcard_response_delete skips VCARD_STATIC, and setting its status is
// refused), so sharing it between threads is sound.
unsafe impl Sync for StaticResponse {}
static MEMORY_FAILURE: StaticResponse =
    StaticResponse(core::cell::UnsafeCell::new(VCardResponse {
        b_data: MEMORY_FAILURE_BYTES.as_ptr().cast_mut(),
        b_status: SW_MEMORY_FAILURE,
        b_sw1: 0x65,
        b_sw2: 0x81,
        b_len: 0,
        b_total_len: 2,
        b_type: VCARD_STATIC,
    }));
static MEMORY_FAILURE_BYTES: [u8; 2] = [0x65, 0x81];

/// A response holding `len` bytes of `buf` verbatim (the caller already
/// appended a status word, or sets one with
/// [`vcard_response_set_status_bytes`]); two zero bytes follow the data.
/// NULL for NULL `buf` with a positive `len`, or a negative `len`.
///
/// Ownership: freed with [`vcard_response_delete`].
///
/// # Safety
/// `buf` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn vcard_response_new_data(
    buf: *const c_uchar,
    len: c_int,
) -> *mut VCardResponse {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        let Some(data) = (unsafe { c_slice(buf, len) }) else {
            return ptr::null_mut();
        };
        let mut bytes = data.to_vec();
        bytes.extend_from_slice(&[0, 0]);
        response_raw(&bytes, data.len())
    })
}

/// Sets a response's status word. NULL and static responses are left
/// alone.
///
/// # Safety
/// `response` is NULL or a response from this library (or one laid out
/// the same way, with room for the status after its data).
#[no_mangle]
pub unsafe extern "C" fn vcard_response_set_status_bytes(
    response: *mut VCardResponse,
    sw1: c_uchar,
    sw2: c_uchar,
) {
    guard((), || {
        // SAFETY: per the contract.
        if response.is_null() || unsafe { (*response).b_type } == VCARD_STATIC {
            return;
        }
        // SAFETY: per the contract.
        unsafe { set_status(response, u16::from_be_bytes([sw1, sw2])) }
    })
}

/// Frees a response according to its `b_type` (static ones are left
/// alone). NULL is a no-op.
///
/// # Safety
/// `response` is NULL or a response from this library (or malloc'ed as
/// its `b_type` says), not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn vcard_response_delete(response: *mut VCardResponse) {
    guard((), || {
        if response.is_null() {
            return;
        }
        // SAFETY: per the contract, the parts its b_type names are ours to free.
        unsafe {
            match (*response).b_type {
                VCARD_MALLOC => {
                    c_free((*response).b_data.cast());
                    c_free(response.cast());
                }
                VCARD_MALLOC_DATA => c_free((*response).b_data.cast()),
                VCARD_MALLOC_STRUCT => c_free(response.cast()),
                _ => {}
            }
        }
    })
}

pub(crate) fn buffer_response_new(data: &[u8]) -> *mut VCardBufferResponse {
    let buffer = c_copy(data);
    if buffer.is_null() {
        return ptr::null_mut();
    }
    let b = c_alloc(core::mem::size_of::<VCardBufferResponse>()).cast::<VCardBufferResponse>();
    if b.is_null() {
        // SAFETY: from c_copy.
        unsafe { c_free(buffer.cast()) };
        return ptr::null_mut();
    }
    // SAFETY: fresh allocation of the struct's size.
    unsafe {
        b.write(VCardBufferResponse {
            buffer,
            buffer_len: data.len() as c_int,
            current: buffer,
            len: data.len() as c_int,
        })
    };
    b
}

/// A buffer response holding a copy of `size` bytes of `buffer`. NULL for
/// NULL `buffer` with a positive size, or a negative size.
///
/// Ownership: freed with [`vcard_buffer_response_delete`], or handed to a
/// card with `vcard_set_buffer_response` (the card then frees it).
///
/// # Safety
/// `buffer` points to `size` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn vcard_buffer_response_new(
    buffer: *const c_uchar,
    size: c_int,
) -> *mut VCardBufferResponse {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        match unsafe { c_slice(buffer, size) } {
            Some(data) => buffer_response_new(data),
            None => ptr::null_mut(),
        }
    })
}

/// Frees a buffer response. NULL is a no-op.
///
/// # Safety
/// `buffer_response` is NULL or from [`vcard_buffer_response_new`] and not
/// held by a card.
#[no_mangle]
pub unsafe extern "C" fn vcard_buffer_response_delete(buffer_response: *mut VCardBufferResponse) {
    guard((), || {
        // SAFETY: per the contract.
        unsafe { free_buffer_response(buffer_response) }
    })
}

/// # Safety
/// `b` is NULL or an unshared buffer response from this library.
pub(crate) unsafe fn free_buffer_response(b: *mut VCardBufferResponse) {
    if b.is_null() {
        return;
    }
    // SAFETY: per the contract.
    unsafe {
        c_free((*b).buffer.cast::<c_void>());
        c_free(b.cast());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(
            frame(&[0, 0xA4, 4, 0]),
            Ok(Frame {
                lc: 0,
                le: 0,
                body: None
            })
        );
        assert_eq!(
            frame(&[0, 0xA4, 4, 0, 0]),
            Ok(Frame {
                lc: 0,
                le: 256,
                body: None
            })
        );
        assert_eq!(
            frame(&[0, 0xA4, 4, 0, 7]),
            Ok(Frame {
                lc: 0,
                le: 7,
                body: None
            })
        );
        assert_eq!(
            frame(&[0, 0xA4, 4, 0, 2, 1, 2]),
            Ok(Frame {
                lc: 2,
                le: 0,
                body: Some(5)
            })
        );
        assert_eq!(
            frame(&[0, 0xA4, 4, 0, 2, 1, 2, 0]),
            Ok(Frame {
                lc: 2,
                le: 256,
                body: Some(5)
            })
        );
        assert_eq!(frame(&[0, 0xA4, 4, 0, 2, 1]), Err(SW_WRONG_LENGTH));
        assert_eq!(frame(&[0, 0xA4, 4, 0, 2, 1, 2, 3, 4]), Err(SW_WRONG_LENGTH));
        assert_eq!(frame(&[0, 0xA4, 4]), Err(SW_WRONG_LENGTH));
        assert_eq!(frame(&[]), Err(SW_WRONG_LENGTH));
        assert_eq!(frame(&[0, 0xA4, 4, 0, 0, 0]), Err(SW_WRONG_LENGTH));
        assert_eq!(
            frame(&[0, 0xA4, 4, 0, 0, 0, 0]),
            Ok(Frame {
                lc: 0,
                le: 65536,
                body: None
            })
        );
        assert_eq!(
            frame(&[0, 0xA4, 4, 0, 0, 0, 2, 1, 2]),
            Ok(Frame {
                lc: 2,
                le: 0,
                body: Some(7)
            })
        );
        assert_eq!(
            frame(&[0, 0xA4, 4, 0, 0, 0, 2, 1, 2, 0, 0]),
            Ok(Frame {
                lc: 2,
                le: 65536,
                body: Some(7)
            })
        );
        assert_eq!(
            frame(&[0, 0xA4, 4, 0, 0, 0, 2, 1, 2, 0]),
            Err(SW_WRONG_LENGTH)
        );
    }

    #[test]
    fn classes() {
        assert_eq!(decode_class(0x00), (0, 0, VCARD_7816_ISO));
        assert_eq!(decode_class(0x0E), (2, 0x0E, VCARD_7816_ISO));
        assert_eq!(decode_class(0x83), (3, 2, VCARD_7816_ISO));
        assert_eq!(decode_class(0xB7), (0, 0, VCARD_7816_ISO));
        assert_eq!(decode_class(0x10), (0, 0, VCARD_7816_RFU));
        assert_eq!(decode_class(0xD0), (0, 0, VCARD_7816_PROPRIETARY));
        assert_eq!(decode_class(0xFF), (0, 0, VCARD_7816_PTS));
    }
}
