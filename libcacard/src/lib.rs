//! `libcacard.so.0` with libcacard 2.8's C ABI, over the vcac card.
//!
//! Debian's QEMU (`ccid-card-emulated`), spice-gtk and any other C program
//! built against libcacard 2.8 load this library instead of the NSS-based
//! C one: the same 78 exported functions, the same public structs byte
//! for byte, the same options string, events, reference counting and
//! buffer rules. It links neither NSS/NSPR nor GLib.
//!
//! ```text
//!  QEMU / spice-gtk / C tests
//!     │ vcard_emul_options ─► options::parse (pure Rust)
//!     │ vcard_emul_init ────► soft: a vcac card directory or an NSS sql: DB
//!     │                        hw:   the modules of DB/pkcs11.txt (PKCS#11
//!     │                              tokens), or the host's pcscd (passthru)
//!     │                        └► vcac_sources ─► cac::Card ─┐
//!     │ vevent_* ◄────────── one process-wide FIFO ◄─────────┤ (READER_INSERT,
//!     │                                                       │  CARD_INSERT…)
//!     │ vreader_power_on / vreader_xfr_bytes ─► VReader ─► VCard (Mutex)
//!     ▼                                           └► cac::Card::transmit
//!  bytes back (truncated to the caller's buffer)     or C applet callbacks
//! ```
//!
//! This crate translates; it does not decide. Card behaviour (applets,
//! PIN, GET RESPONSE, status words) is the `cac` crate's; a card a C
//! program assembles from applet callbacks (`vcard_new`,
//! `vcard_new_applet`, `vcard_add_applet`) routes APDUs through those
//! callbacks with libcacard's framing rules.
//!
//! Readers are not `vreader::ReaderSet` readers: libcacard's readers exist
//! before (and after) they are in the global list, take caller-chosen ids,
//! and events carry counted references to reader and card objects that
//! outlive a removal. Those semantics are this crate's object model
//! ([`reader`], [`event`]); what happens inside a card stays in `cac`.
//!
//! Every exported function catches panics (a panic becomes the function's
//! documented error value), checks every pointer for NULL, and states in
//! its documentation who owns what it returns and how to free it.
//!
//! # Example (the Rust side of what a C caller does)
//!
//! ```
//! use cacard::options::{parse, UseHw};
//! let o = parse(br#"db="/x" use_hw=no soft=(,Virtual Reader,CAC,,a,b,c)"#)?;
//! assert_eq!(o.use_hw, UseHw::No);
//! assert_eq!(o.soft[0].name, "Virtual Reader");
//! assert_eq!(o.soft[0].certs, ["a", "b", "c"]);
//! # Ok::<(), cacard::options::ParseError>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod apdu;
pub mod card;
pub mod emul;
pub mod event;
pub mod hw;
pub mod options;
pub mod reader;
mod soft;
pub mod types;

use core::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `on_panic`: no unwinding crosses into C.
pub(crate) fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// `malloc` from the C library: the public structs (responses, APDUs,
/// buffer responses) are allocated the way libcacard allocates them, so C
/// code that builds or frees them itself keeps working.
pub(crate) fn c_alloc(size: usize) -> *mut c_void {
    // SAFETY: malloc has no preconditions; a zero size still gets a
    // unique pointer (or NULL, which callers check).
    unsafe { libc::malloc(size.max(1)) }
}

/// `free` from the C library.
///
/// # Safety
/// `p` is NULL or came from [`c_alloc`] / C's `malloc`, and is not used
/// again.
pub(crate) unsafe fn c_free(p: *mut c_void) {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::free(p) }
}

/// A malloc'ed copy of `bytes` (NULL when out of memory).
pub(crate) fn c_copy(bytes: &[u8]) -> *mut u8 {
    let p = c_alloc(bytes.len()).cast::<u8>();
    if !p.is_null() {
        // SAFETY: `p` has room for `bytes.len()` bytes and does not overlap
        // `bytes` (it was just allocated).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    }
    p
}

/// The bytes at `p`, or `None` for a NULL pointer with a non-zero length
/// or a negative length. A zero length needs no pointer.
///
/// # Safety
/// A non-NULL `p` points to `len` readable bytes that stay valid and
/// unchanged for `'a`.
pub(crate) unsafe fn c_slice<'a>(p: *const u8, len: core::ffi::c_int) -> Option<&'a [u8]> {
    let len = usize::try_from(len).ok()?;
    if len == 0 {
        return Some(&[]);
    }
    if p.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    Some(unsafe { core::slice::from_raw_parts(p, len) })
}

/// Copies as much of `src` as fits into the caller's buffer `dst` of
/// `*len` bytes and stores the count in `*len` (libcacard's silent
/// truncation). A negative `*len` counts as 0.
///
/// # Safety
/// `len` points to a writable int; `dst` to at least `*len` writable bytes
/// (it may be NULL when `*len` is 0 or negative).
pub(crate) unsafe fn copy_out(src: &[u8], dst: *mut u8, len: *mut core::ffi::c_int) {
    // SAFETY: `len` is valid per the caller.
    let room = usize::try_from(unsafe { *len }).unwrap_or(0);
    let n = src.len().min(room);
    if n > 0 && !dst.is_null() {
        // SAFETY: `dst` has room for `room >= n` bytes per the caller.
        unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst, n) };
    }
    let n = if dst.is_null() { 0 } else { n };
    // SAFETY: as above; `n` fits an int because it is at most `*len`.
    unsafe { *len = n as core::ffi::c_int };
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here leaves the state valid at each step).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
