//! `VReader`: a reference-counted reader, the process-wide reader list,
//! and the transmit path.

use core::ffi::{c_char, c_int, c_uchar, c_void, CStr};
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};
use std::ffi::CString;
use std::sync::{Arc, Mutex};

use crate::card::VCard;
use crate::event::queue_event;
use crate::types::{
    VReaderEmulFreeFn, VReaderId, VReaderStatus, UNDEFINED_READER_ID, VCARD_POWER_OFF,
    VCARD_POWER_ON, VEVENT_CARD_INSERT, VEVENT_CARD_REMOVE, VEVENT_READER_INSERT,
    VEVENT_READER_REMOVE, VREADER_NO_CARD, VREADER_OK, VREADER_OUT_OF_MEMORY,
};
use crate::{c_slice, copy_out, guard, lock};

/// An opaque `VReader`. C holds it as a counted reference (`Arc`).
pub struct VReader {
    name: CString,
    id: AtomicU32,
    card: Mutex<Option<Arc<VCard>>>,
    /// The emulator's card for this reader, re-inserted by
    /// `vcard_emul_force_card_insert` (soft readers only).
    pub(crate) emul_card: Mutex<Option<Arc<VCard>>>,
    emul: *mut c_void,
    emul_free: Option<VReaderEmulFreeFn>,
}

// SAFETY: `emul` is opaque C data the caller attached to the reader; the
// library never dereferences it, it only hands it back and frees it once
// (in Drop). Everything else is Send + Sync.
unsafe impl Send for VReader {}
// SAFETY: as above; shared access never touches `emul`'s target.
unsafe impl Sync for VReader {}

impl Drop for VReader {
    fn drop(&mut self) {
        if let Some(free) = self.emul_free {
            if !self.emul.is_null() {
                // SAFETY: the pointer and its destructor came together
                // from vreader_new.
                unsafe { free(self.emul) };
            }
        }
    }
}

impl VReader {
    /// A reader named `name` (not in the list yet).
    pub(crate) fn new(
        name: &[u8],
        emul: *mut c_void,
        emul_free: Option<VReaderEmulFreeFn>,
    ) -> Arc<VReader> {
        let name = CString::new(
            name.iter()
                .copied()
                .take_while(|b| *b != 0)
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default();
        Arc::new(VReader {
            name,
            id: AtomicU32::new(UNDEFINED_READER_ID),
            card: Mutex::new(None),
            emul_card: Mutex::new(None),
            emul,
            emul_free,
        })
    }

    /// Hands a reference to C.
    pub(crate) fn into_c(r: Arc<VReader>) -> *mut VReader {
        Arc::into_raw(r).cast_mut()
    }

    /// A new counted reference to a reader C holds, or `None` for NULL.
    ///
    /// # Safety
    /// `p` is NULL or a live reader pointer from this library.
    pub(crate) unsafe fn from_c(p: *const VReader) -> Option<Arc<VReader>> {
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` came from Arc::into_raw and holds a reference.
        unsafe {
            Arc::increment_strong_count(p);
            Some(Arc::from_raw(p))
        }
    }

    /// The reader's name as given.
    pub(crate) fn name(&self) -> &CStr {
        &self.name
    }

    /// The card inside, if any.
    pub(crate) fn card(&self) -> Option<Arc<VCard>> {
        lock(&self.card).clone()
    }

    /// Replaces the card (None = removal) and queues CARD_INSERT /
    /// CARD_REMOVE.
    pub(crate) fn insert_card(self: &Arc<Self>, card: Option<Arc<VCard>>) {
        let mut slot = lock(&self.card);
        *slot = card.clone();
        // Queued under the slot lock so events follow the state order.
        match card {
            Some(c) => queue_event(VEVENT_CARD_INSERT, Some(self.clone()), Some(c)),
            None => queue_event(VEVENT_CARD_REMOVE, Some(self.clone()), None),
        }
    }

    /// Queues the event matching the current state.
    pub(crate) fn queue_card_event(self: &Arc<Self>) {
        let slot = lock(&self.card);
        match &*slot {
            Some(c) => queue_event(VEVENT_CARD_INSERT, Some(self.clone()), Some(c.clone())),
            None => queue_event(VEVENT_CARD_REMOVE, Some(self.clone()), None),
        }
    }
}

/// The process-wide reader list, in insertion order.
static READERS: Mutex<Vec<Arc<VReader>>> = Mutex::new(Vec::new());

/// Adds a reader to the list and queues READER_INSERT.
pub(crate) fn add_reader(reader: &Arc<VReader>) {
    let mut list = lock(&READERS);
    list.push(reader.clone());
    queue_event(VEVENT_READER_INSERT, Some(reader.clone()), None);
}

/// A copy of the list.
pub(crate) fn readers() -> Vec<Arc<VReader>> {
    lock(&READERS).clone()
}

/// Empties the list (`vreader_init`).
pub(crate) fn clear_readers() {
    let old = core::mem::take(&mut *lock(&READERS));
    drop(old);
}

/// Borrow a reader C passed in.
///
/// # Safety
/// `p` is NULL or a live reader from this library.
unsafe fn reader_ref<'a>(p: *const VReader) -> Option<&'a VReader> {
    // SAFETY: per the contract.
    unsafe { p.as_ref() }
}

/// A new reader named `reader_name` (copied; NULL gives an empty name),
/// with id `0xFFFFFFFF`, no card, not in the reader list, holding
/// `emul_private` (freed with `private_free`, if not NULL, when the last
/// reference goes).
///
/// Ownership: the caller holds one reference; release it with
/// [`vreader_free`].
///
/// # Safety
/// `reader_name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vreader_new(
    reader_name: *const c_char,
    emul_private: *mut c_void,
    private_free: Option<VReaderEmulFreeFn>,
) -> *mut VReader {
    guard(ptr::null_mut(), || {
        let name = if reader_name.is_null() {
            &[][..]
        } else {
            // SAFETY: per the contract.
            unsafe { CStr::from_ptr(reader_name) }.to_bytes()
        };
        VReader::into_c(VReader::new(name, emul_private, private_free))
    })
}

/// Adds a reference and returns `reader` (NULL for NULL).
///
/// Ownership: release the new reference with [`vreader_free`].
///
/// # Safety
/// `reader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_reference(reader: *mut VReader) -> *mut VReader {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        unsafe { VReader::from_c(reader) }.map_or(ptr::null_mut(), VReader::into_c)
    })
}

/// Drops one reference; the last one frees the reader (its card
/// reference and its private data). NULL is a no-op.
///
/// # Safety
/// `reader` is NULL or a reference the caller owns, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn vreader_free(reader: *mut VReader) {
    guard((), || {
        if !reader.is_null() {
            // SAFETY: the caller gives up a reference it owned.
            drop(unsafe { Arc::from_raw(reader.cast_const()) });
        }
    })
}

/// The private pointer given to [`vreader_new`] (NULL for NULL).
///
/// Ownership: the reader keeps it.
///
/// # Safety
/// `reader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_get_private(reader: *mut VReader) -> *mut c_void {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        unsafe { reader_ref(reader) }.map_or(ptr::null_mut(), |r| r.emul)
    })
}

/// `VREADER_OK` (0) when a card is inserted, `VREADER_NO_CARD` otherwise
/// (also for NULL).
///
/// # Safety
/// `reader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_card_is_present(reader: *mut VReader) -> VReaderStatus {
    guard(VREADER_NO_CARD, || {
        // SAFETY: per the contract.
        match unsafe { reader_ref(reader) }.and_then(VReader::card) {
            Some(_) => VREADER_OK,
            None => VREADER_NO_CARD,
        }
    })
}

/// Queues CARD_INSERT (card present) or CARD_REMOVE (none) for `reader`.
/// NULL is a no-op.
///
/// # Safety
/// `reader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_queue_card_event(reader: *mut VReader) {
    guard((), || {
        // SAFETY: per the contract.
        if let Some(r) = unsafe { VReader::from_c(reader) } {
            r.queue_card_event();
        }
    })
}

/// The reader's name, or NULL for NULL.
///
/// Ownership: the reader keeps the string (valid while the caller holds
/// a reference).
///
/// # Safety
/// `reader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_get_name(reader: *mut VReader) -> *const c_char {
    guard(ptr::null(), || {
        // SAFETY: per the contract.
        unsafe { reader_ref(reader) }.map_or(ptr::null(), |r| r.name.as_ptr())
    })
}

/// The reader's id (`0xFFFFFFFF` until set, and for NULL).
///
/// # Safety
/// `reader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_get_id(reader: *mut VReader) -> VReaderId {
    guard(UNDEFINED_READER_ID, || {
        // SAFETY: per the contract.
        unsafe { reader_ref(reader) }.map_or(UNDEFINED_READER_ID, |r| r.id.load(Ordering::SeqCst))
    })
}

/// Sets the reader's id. `VREADER_OK`, or `VREADER_NO_CARD` for NULL.
///
/// # Safety
/// `reader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_set_id(reader: *mut VReader, id: VReaderId) -> VReaderStatus {
    guard(VREADER_NO_CARD, || {
        // SAFETY: per the contract.
        match unsafe { reader_ref(reader) } {
            Some(r) => {
                r.id.store(id, Ordering::SeqCst);
                VREADER_OK
            }
            None => VREADER_NO_CARD,
        }
    })
}

/// Powers the card on (cold reset) and copies its ATR to `atr` (at most
/// `*len` bytes; `*len` becomes the count). `VREADER_NO_CARD` without a
/// card (or for a NULL reader), leaving `*len` untouched. NULL `atr` or
/// `len`: the card is powered on and nothing is copied.
///
/// # Safety
/// `reader` NULL or live; `atr` has room for `*len` bytes; `len` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn vreader_power_on(
    reader: *mut VReader,
    atr: *mut c_uchar,
    len: *mut c_int,
) -> VReaderStatus {
    guard(VREADER_NO_CARD, || {
        // SAFETY: per the contract.
        let Some(card) = unsafe { reader_ref(reader) }.and_then(VReader::card) else {
            return VREADER_NO_CARD;
        };
        card.reset(VCARD_POWER_ON);
        let bytes = card.atr();
        if !len.is_null() {
            // SAFETY: per the contract.
            unsafe { copy_out(&bytes, atr, len) };
        }
        VREADER_OK
    })
}

/// Powers the card off (ends its session). `VREADER_NO_CARD` without a
/// card or for NULL.
///
/// # Safety
/// `reader` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_power_off(reader: *mut VReader) -> VReaderStatus {
    guard(VREADER_NO_CARD, || {
        // SAFETY: per the contract.
        match unsafe { reader_ref(reader) }.and_then(VReader::card) {
            Some(card) => {
                card.reset(VCARD_POWER_OFF);
                VREADER_OK
            }
            None => VREADER_NO_CARD,
        }
    })
}

/// Sends `send_buf_len` bytes of command APDU and copies the response
/// (data, then SW1 SW2) to `receive_buf`: at most `*receive_buf_len`
/// bytes, silently truncated, the count stored in `*receive_buf_len`.
///
/// * `VREADER_OK` for every answer, including status words for malformed
///   commands (`67 00` for fewer than 4 bytes or an Lc that does not
///   match the data).
/// * `VREADER_NO_CARD` with `*receive_buf_len` untouched when there is no
///   card (or the reader is NULL, or `receive_buf_len` is NULL, or
///   `send_buf` is NULL with a positive length).
/// * `VREADER_NO_CARD` with `*receive_buf_len = 0` when a C applet
///   returns `VCARD_FAIL`.
///
/// Safe to call from several threads on the same reader: each exchange
/// runs whole, one at a time per card.
///
/// # Safety
/// `reader` NULL or live; `send_buf` has `send_buf_len` readable bytes;
/// `receive_buf` has room for `*receive_buf_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn vreader_xfr_bytes(
    reader: *mut VReader,
    send_buf: *mut c_uchar,
    send_buf_len: c_int,
    receive_buf: *mut c_uchar,
    receive_buf_len: *mut c_int,
) -> VReaderStatus {
    guard(VREADER_NO_CARD, || {
        if receive_buf_len.is_null() {
            return VREADER_NO_CARD;
        }
        // SAFETY: per the contract.
        let Some(reader) = (unsafe { reader_ref(reader) }) else {
            return VREADER_NO_CARD;
        };
        // SAFETY: per the contract.
        let Some(command) = (unsafe { c_slice(send_buf, send_buf_len) }) else {
            return VREADER_NO_CARD;
        };
        // The card slot stays locked while the card answers: an insert or
        // removal from another thread waits for the APDU in flight, as if
        // it came just after it. This saves cloning and dropping the
        // card's Arc: two of the six atomic read-modify-writes per APDU
        // that topped this function's own cost in a perf profile of the
        // bind replay. (A C applet callback calling the reader API on its
        // own reader would wait here; a re-entrant vreader_xfr_bytes
        // already waited on the card's engine lock before.)
        let slot = lock(&reader.card);
        let Some(card) = slot.as_ref() else {
            return VREADER_NO_CARD;
        };
        // One response buffer per thread, reused: no allocation per APDU
        // (measured: a malloc + free was ~7% of a replayed bind).
        RESPONSE.with(|cell| {
            let mut taken = cell.take();
            taken.clear();
            let ok = card.transmit(command, &mut taken);
            if ok {
                // SAFETY: per the contract.
                unsafe { copy_out(&taken, receive_buf, receive_buf_len) };
            } else {
                // SAFETY: checked non-NULL above.
                unsafe { *receive_buf_len = 0 };
            }
            // Keep the buffer for the next call unless it grew large
            // (a 64 KiB extended response is not worth pinning).
            if taken.capacity() <= 4096 {
                cell.set(taken);
            }
            if ok {
                VREADER_OK
            } else {
                VREADER_NO_CARD
            }
        })
    })
}

thread_local! {
    /// [`vreader_xfr_bytes`]'s response buffer (taken out while in use, so
    /// a re-entrant call from an applet callback just allocates its own).
    static RESPONSE: core::cell::Cell<Vec<u8>> = const { core::cell::Cell::new(Vec::new()) };
}

/// An opaque `VReaderList`: a snapshot of the reader list.
pub struct VReaderList {
    entries: Box<[VReaderListEntry]>,
}

/// An opaque `VReaderListEntry`.
pub struct VReaderListEntry {
    reader: Arc<VReader>,
    next: *mut VReaderListEntry,
}

/// A copy of the reader list (each entry holds a reference).
///
/// Ownership: the caller frees it with [`vreader_list_delete`]. NULL only
/// if the library panicked.
#[no_mangle]
pub extern "C" fn vreader_get_reader_list() -> *mut VReaderList {
    guard(ptr::null_mut(), || {
        let mut entries: Box<[VReaderListEntry]> = readers()
            .into_iter()
            .map(|reader| VReaderListEntry {
                reader,
                next: ptr::null_mut(),
            })
            .collect();
        let base = entries.as_mut_ptr();
        for i in 1..entries.len() {
            if let Some(prev) = entries.get_mut(i - 1) {
                // SAFETY: `i` is in bounds of the allocation `base` starts.
                prev.next = unsafe { base.add(i) };
            }
        }
        Box::into_raw(Box::new(VReaderList { entries }))
    })
}

/// Frees a list copy (dropping its references). NULL is a no-op.
///
/// # Safety
/// `list` is NULL or from [`vreader_get_reader_list`], not used afterwards
/// (nor its entries).
#[no_mangle]
pub unsafe extern "C" fn vreader_list_delete(list: *mut VReaderList) {
    guard((), || {
        if !list.is_null() {
            // SAFETY: the caller owns the list.
            drop(unsafe { Box::from_raw(list) });
        }
    })
}

/// The entry's reader, with a new reference (NULL for NULL).
///
/// Ownership: release it with [`vreader_free`].
///
/// # Safety
/// `entry` is NULL or an entry of a live list.
#[no_mangle]
pub unsafe extern "C" fn vreader_list_get_reader(entry: *mut VReaderListEntry) -> *mut VReader {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        unsafe { entry.as_ref() }.map_or(ptr::null_mut(), |e| VReader::into_c(e.reader.clone()))
    })
}

/// The first entry, or NULL (empty list, or NULL).
///
/// Ownership: the list keeps its entries.
///
/// # Safety
/// `list` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_list_get_first(list: *mut VReaderList) -> *mut VReaderListEntry {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        match unsafe { list.as_mut() } {
            Some(l) if !l.entries.is_empty() => l.entries.as_mut_ptr(),
            _ => ptr::null_mut(),
        }
    })
}

/// The entry after `current`, or NULL at the end (or for NULL).
///
/// # Safety
/// `current` is NULL or an entry of a live list.
#[no_mangle]
pub unsafe extern "C" fn vreader_list_get_next(
    current: *mut VReaderListEntry,
) -> *mut VReaderListEntry {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        unsafe { current.as_ref() }.map_or(ptr::null_mut(), |e| e.next)
    })
}

/// The listed reader with this id, with a new reference; NULL if none (and
/// always for `0xFFFFFFFF`).
///
/// Ownership: release it with [`vreader_free`].
#[no_mangle]
pub extern "C" fn vreader_get_reader_by_id(id: VReaderId) -> *mut VReader {
    guard(ptr::null_mut(), || {
        if id == UNDEFINED_READER_ID {
            return ptr::null_mut();
        }
        readers()
            .into_iter()
            .find(|r| r.id.load(Ordering::SeqCst) == id)
            .map_or(ptr::null_mut(), VReader::into_c)
    })
}

/// The listed reader with this name, with a new reference; NULL if none
/// (or for NULL).
///
/// Ownership: release it with [`vreader_free`].
///
/// # Safety
/// `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn vreader_get_reader_by_name(name: *const c_char) -> *mut VReader {
    guard(ptr::null_mut(), || {
        if name.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: per the contract.
        let name = unsafe { CStr::from_ptr(name) };
        readers()
            .into_iter()
            .find(|r| r.name() == name)
            .map_or(ptr::null_mut(), VReader::into_c)
    })
}

/// Empties the reader list (the list's references are dropped; readers
/// callers still hold stay valid).
#[no_mangle]
pub extern "C" fn vreader_init() {
    guard((), clear_readers)
}

/// Appends `reader` to the list (the list takes its own reference) and
/// queues READER_INSERT. `VREADER_OK`, or `VREADER_OUT_OF_MEMORY` for
/// NULL.
///
/// # Safety
/// `reader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_add_reader(reader: *mut VReader) -> VReaderStatus {
    guard(VREADER_OUT_OF_MEMORY, || {
        // SAFETY: per the contract.
        match unsafe { VReader::from_c(reader) } {
            Some(r) => {
                add_reader(&r);
                VREADER_OK
            }
            None => VREADER_OUT_OF_MEMORY,
        }
    })
}

/// Unlinks `reader` from the list (dropping the list's reference) and
/// queues READER_REMOVE. `VREADER_OK`; `VREADER_NO_CARD` for NULL.
///
/// # Safety
/// `reader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_remove_reader(reader: *mut VReader) -> VReaderStatus {
    guard(VREADER_NO_CARD, || {
        // SAFETY: per the contract.
        let Some(r) = (unsafe { VReader::from_c(reader) }) else {
            return VREADER_NO_CARD;
        };
        let mut list = lock(&READERS);
        let before = list.len();
        list.retain(|x| !Arc::ptr_eq(x, &r));
        if list.len() != before {
            queue_event(VEVENT_READER_REMOVE, Some(r.clone()), None);
        }
        VREADER_OK
    })
}

/// Puts `card` in the reader (replacing any card; NULL removes it) and
/// queues CARD_INSERT(reader, card) or CARD_REMOVE(reader). The reader
/// takes its own reference to the card. `VREADER_OK`; `VREADER_NO_CARD`
/// for a NULL reader.
///
/// # Safety
/// `reader` NULL or live; `card` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vreader_insert_card(
    reader: *mut VReader,
    card: *mut VCard,
) -> VReaderStatus {
    guard(VREADER_NO_CARD, || {
        // SAFETY: per the contract.
        let Some(r) = (unsafe { VReader::from_c(reader) }) else {
            return VREADER_NO_CARD;
        };
        // SAFETY: per the contract.
        r.insert_card(unsafe { VCard::from_c(card) });
        VREADER_OK
    })
}
