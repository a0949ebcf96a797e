//! `VCard`: a reference-counted card, either the emulated [`cac::Card`]
//! or one a C program assembles from applet callbacks.
//!
//! Locking: `engine` serialises everything that talks to the card
//! (transmit, power); `meta` guards the C-visible bookkeeping (applets,
//! selections, buffer response, ATR hook) and is never held while a C
//! callback runs, so callbacks may call the `vcard_*` accessors.

use core::ffi::{c_int, c_uchar, c_void};
use core::ptr;
use std::sync::{Arc, Mutex};

use cac::keys::KeyHandle;

use crate::apdu::{
    self, apdu_bytes, free_buffer_response, response_bytes, response_with_status, SW_GENERAL,
};
use crate::reader::VReader;
use crate::types::{
    Status7816, VCardAPDU, VCardAppletPrivateFreeFn, VCardBufferResponse, VCardEmulFreeFn,
    VCardEmulType, VCardGetAtrFn, VCardPower, VCardProcessApduFn, VCardResetAppletFn,
    VCardResponse, VCardStatus, VCardType, MAX_CHANNEL, VCARD_DONE, VCARD_FAIL, VCARD_NEXT,
    VCARD_POWER_ON, VCARD_VM,
};
use crate::{c_slice, copy_out, guard, lock};

/// The ATR of a card without its own: `3B 89 00` + "VCARD_NSS".
pub const DEFAULT_ATR: [u8; 12] = *b"\x3B\x89\x00VCARD_NSS";

/// An opaque `VCardKey`: a private key handle.
pub struct VCardKey {
    pub(crate) handle: Arc<dyn KeyHandle>,
}

/// An opaque `VCardApplet` of a C-assembled card.
pub struct VCardApplet {
    process: Option<VCardProcessApduFn>,
    reset: Option<VCardResetAppletFn>,
    aid: Vec<u8>,
    private: *mut c_void,
    private_free: Option<VCardAppletPrivateFreeFn>,
}

impl Drop for VCardApplet {
    fn drop(&mut self) {
        if let Some(free) = self.private_free {
            if !self.private.is_null() {
                // SAFETY: the C caller handed us this private pointer with
                // this destructor (vcard_set_applet_private).
                unsafe { free(self.private) };
            }
        }
    }
}

/// What answers the card's APDUs.
pub(crate) enum Engine {
    /// A C-assembled card: its applet callbacks.
    Applets,
    /// The emulated CAC.
    Cac(Box<cac::Card>),
    /// A card answered elsewhere (PC/SC passthrough: a real card in the
    /// host's pcscd). A fault is `VCARD_FAIL`.
    #[cfg(feature = "pcsc")]
    Relay(Box<dyn vreader::VirtualCard>),
}

struct Meta {
    card_type: VCardType,
    applets: Vec<*mut VCardApplet>,
    current: [*mut VCardApplet; MAX_CHANNEL],
    buffer: *mut VCardBufferResponse,
    get_atr: Option<VCardGetAtrFn>,
    emul: *mut c_void,
    emul_free: Option<VCardEmulFreeFn>,
}

// SAFETY: the raw pointers are owned by the card (applets, buffer) or are
// opaque C data the caller attached to it; all access goes through the
// Mutex that holds them.
unsafe impl Send for Meta {}

/// An opaque `VCard`. C holds it as a counted reference (`Arc`).
pub struct VCard {
    engine: Mutex<Engine>,
    meta: Mutex<Meta>,
    /// The PIN has a retry counter to report (a vcac card directory); NSS
    /// cards and C-assembled ones have none (login count -1).
    counts_tries: bool,
}

impl Drop for VCard {
    fn drop(&mut self) {
        let meta = self.meta.get_mut().unwrap_or_else(|p| p.into_inner());
        for applet in meta.applets.drain(..) {
            // SAFETY: applets added to the card are owned by it.
            drop(unsafe { Box::from_raw(applet) });
        }
        // SAFETY: the buffer response belongs to the card.
        unsafe { free_buffer_response(meta.buffer) };
        if let Some(free) = meta.emul_free {
            if !meta.emul.is_null() {
                // SAFETY: the private pointer and its destructor came
                // together from vcard_new.
                unsafe { free(meta.emul) };
            }
        }
    }
}

impl VCard {
    fn with_engine(
        engine: Engine,
        emul: *mut c_void,
        emul_free: Option<VCardEmulFreeFn>,
        counts_tries: bool,
    ) -> Arc<VCard> {
        Arc::new(VCard {
            counts_tries,
            engine: Mutex::new(engine),
            meta: Mutex::new(Meta {
                card_type: VCARD_VM,
                applets: Vec::new(),
                current: [ptr::null_mut(); MAX_CHANNEL],
                buffer: ptr::null_mut(),
                get_atr: None,
                emul,
                emul_free,
            }),
        })
    }

    /// A card around the emulated CAC; `counts_tries` when its PIN has a
    /// retry counter (`vcard_emul_get_login_count` reports it).
    pub(crate) fn from_cac(card: cac::Card, counts_tries: bool) -> Arc<VCard> {
        VCard::with_engine(
            Engine::Cac(Box::new(card)),
            ptr::null_mut(),
            None,
            counts_tries,
        )
    }

    /// A card whose APDUs another card answers (passthrough).
    #[cfg(feature = "pcsc")]
    pub(crate) fn from_relay(card: Box<dyn vreader::VirtualCard>) -> Arc<VCard> {
        VCard::with_engine(Engine::Relay(card), ptr::null_mut(), None, false)
    }

    /// Hands a reference to C.
    pub(crate) fn into_c(card: Arc<VCard>) -> *mut VCard {
        Arc::into_raw(card).cast_mut()
    }

    /// A new counted reference to a card C holds, or `None` for NULL.
    ///
    /// # Safety
    /// `p` is NULL or a live card pointer from this library.
    pub(crate) unsafe fn from_c(p: *const VCard) -> Option<Arc<VCard>> {
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` came from Arc::into_raw and holds a reference.
        unsafe {
            Arc::increment_strong_count(p);
            Some(Arc::from_raw(p))
        }
    }

    fn as_c(self: &Arc<Self>) -> *mut VCard {
        Arc::as_ptr(self).cast_mut()
    }

    /// Replaces the buffer response (freeing the old one).
    pub(crate) fn replace_buffer_response(&self, new: *mut VCardBufferResponse) {
        let old = core::mem::replace(&mut lock(&self.meta).buffer, new);
        if old != new {
            // SAFETY: the old buffer belonged to the card.
            unsafe { free_buffer_response(old) };
        }
    }

    /// Runs one command: appends the response APDU to `out`. `false` is
    /// `VCARD_FAIL` from an applet (nothing appended).
    pub(crate) fn transmit(self: &Arc<Self>, command: &[u8], out: &mut Vec<u8>) -> bool {
        let mut engine = lock(&self.engine);
        if let Engine::Cac(card) = &mut *engine {
            // libcacard frames the command before any card sees it.
            match apdu::frame(command) {
                Ok(_) => card.transmit(command, out),
                Err(sw) => out.extend_from_slice(&sw.to_be_bytes()),
            }
            return true;
        }
        #[cfg(feature = "pcsc")]
        if let Engine::Relay(card) = &mut *engine {
            // The real card judges its commands; libcacard's framing is
            // not applied to what passes through.
            return card.transmit(command, out).is_ok();
        }
        let apdu = match apdu::new_apdu(command) {
            Ok(apdu) => apdu,
            Err(sw) => {
                out.extend_from_slice(&sw.to_be_bytes());
                return true;
            }
        };
        // SAFETY: `apdu` was just built; the engine lock serialises callers.
        let (status, response) = unsafe { self.process_applets(apdu) };
        // SAFETY: built by new_apdu.
        unsafe { apdu::vcard_apdu_delete(apdu) };
        let ok = status != VCARD_FAIL && !response.is_null();
        if ok {
            // SAFETY: applets return responses laid out by this library's rules.
            if let Some(bytes) = unsafe { response_bytes(response) } {
                out.extend_from_slice(bytes);
            }
        }
        // SAFETY: the response is ours to free now.
        unsafe { apdu::vcard_response_delete(response) };
        ok
    }

    /// libcacard's APDU routing for a C-assembled card: GET RESPONSE from
    /// the buffer response, then the channel's applet, then SELECT by AID.
    ///
    /// # Safety
    /// `apdu` is a valid APDU.
    unsafe fn process_applets(
        self: &Arc<Self>,
        apdu: *mut VCardAPDU,
    ) -> (VCardStatus, *mut VCardResponse) {
        // SAFETY: per the contract.
        let raw = unsafe { apdu_bytes(apdu) }.unwrap_or_default();
        let (ins, p1) = (
            raw.get(1).copied().unwrap_or(0),
            raw.get(2).copied().unwrap_or(0),
        );
        // SAFETY: per the contract.
        let (channel, le) = unsafe { ((*apdu).a_channel, (*apdu).a_Le) };
        // Any command but GET RESPONSE drops the pending response; GET
        // RESPONSE goes to the current applet first, like every command,
        // and is served from the buffer only when the applet passes.
        if ins != INS_GET_RESPONSE {
            self.replace_buffer_response(ptr::null_mut());
        }
        let Some(channel) = usize::try_from(channel).ok().filter(|c| *c < MAX_CHANNEL) else {
            return (VCARD_DONE, response_with_status(&[], 0x6881));
        };
        let current = lock(&self.meta)
            .current
            .get(channel)
            .copied()
            .unwrap_or(ptr::null_mut());
        // SAFETY: a selected applet stays alive while the card does.
        if let Some(process) = unsafe { current.as_ref() }.and_then(|a| a.process) {
            let mut response = ptr::null_mut();
            // SAFETY: a C callback with the arguments its type promises.
            let status = unsafe { process(self.as_c(), apdu, &mut response) };
            if status != VCARD_NEXT {
                return (status, response);
            }
            // SAFETY: a NEXT applet's stray response is ours to drop.
            unsafe { apdu::vcard_response_delete(response) };
        }
        if ins == INS_GET_RESPONSE {
            if let Some(r) = self.serve_buffer(le) {
                return (VCARD_DONE, r);
            }
        }
        if ins == INS_SELECT && p1 == 0x04 {
            // SAFETY: per the contract.
            let (body, lc) = unsafe { ((*apdu).a_body, (*apdu).a_Lc) };
            // SAFETY: a_body holds a_Lc bytes of the copied command.
            let aid = unsafe { c_slice(body, lc) }.unwrap_or_default();
            let found = self.find_applet(aid);
            if found.is_null() {
                return (VCARD_DONE, response_with_status(&[], 0x6A82));
            }
            if let Some(slot) = lock(&self.meta).current.get_mut(channel) {
                *slot = found;
            }
            // The newly selected applet is reset on its channel.
            // SAFETY: applets on the card's list are live.
            if let Some(reset) = unsafe { found.as_ref() }.and_then(|a| a.reset) {
                // SAFETY: C callback with its documented arguments; no
                // lock is held.
                unsafe { reset(self.as_c(), channel as c_int) };
            }
            let mut fci = vec![0x6F, (aid.len() + 4) as u8, 0x84, aid.len() as u8];
            fci.extend_from_slice(aid);
            fci.extend_from_slice(&[0xA5, 0x00]);
            // SAFETY: the card pointer is live (we hold a reference).
            let r = unsafe {
                apdu::vcard_response_new(self.as_c(), fci.as_ptr(), fci.len() as c_int, le, 0x9000)
            };
            return (VCARD_DONE, r);
        }
        let sw = if ins == INS_GET_RESPONSE {
            0x6A88
        } else {
            0x6900
        };
        (VCARD_DONE, response_with_status(&[], sw))
    }

    /// GET RESPONSE from the buffer response, if there is one.
    fn serve_buffer(&self, le: c_int) -> Option<*mut VCardResponse> {
        let mut meta = lock(&self.meta);
        // SAFETY: the buffer response belongs to the card.
        let b = unsafe { meta.buffer.as_mut() }?;
        let left = usize::try_from(b.len).unwrap_or(0);
        let want = match usize::try_from(le).unwrap_or(0) {
            0 => 256,
            n => n,
        };
        let n = left.min(want);
        // SAFETY: `current` points at `len` bytes inside the buffer.
        let chunk = unsafe { c_slice(b.current, n as c_int) }
            .unwrap_or_default()
            .to_vec();
        let rest = left - n;
        // SAFETY: advancing within the buffer (n <= len).
        b.current = unsafe { b.current.add(n) };
        b.len = rest as c_int;
        if rest == 0 {
            let done = core::mem::replace(&mut meta.buffer, ptr::null_mut());
            // SAFETY: it belonged to the card and is now detached.
            unsafe { free_buffer_response(done) };
        }
        drop(meta);
        let sw = if rest == 0 {
            0x9000
        } else {
            0x6100 | if rest >= 256 { 0 } else { rest as u16 }
        };
        Some(response_with_status(&chunk, sw))
    }

    fn find_applet(&self, aid: &[u8]) -> *mut VCardApplet {
        let meta = lock(&self.meta);
        meta.applets
            .iter()
            .copied()
            // SAFETY: applets on the list are owned by the card.
            .find(|a| unsafe { a.as_ref() }.is_some_and(|a| a.aid == aid))
            .unwrap_or(ptr::null_mut())
    }

    /// Power on (cold reset) or off: clears selections and any pending
    /// response; the CAC engine resets its session.
    pub(crate) fn reset(&self, power: VCardPower) {
        {
            let mut meta = lock(&self.meta);
            meta.current = [ptr::null_mut(); MAX_CHANNEL];
        }
        self.replace_buffer_response(ptr::null_mut());
        match &mut *lock(&self.engine) {
            Engine::Cac(card) => {
                if power == VCARD_POWER_ON {
                    card.power_on();
                } else {
                    card.power_off();
                }
            }
            #[cfg(feature = "pcsc")]
            Engine::Relay(card) => {
                if power == VCARD_POWER_ON {
                    let _ = card.power_on();
                } else {
                    card.power_off();
                }
            }
            Engine::Applets => {}
        }
    }

    /// The ATR: the card's hook, else the CAC's, else [`DEFAULT_ATR`].
    pub(crate) fn atr(self: &Arc<Self>) -> Vec<u8> {
        let hook = lock(&self.meta).get_atr;
        if let Some(hook) = hook {
            let mut buf = [0u8; 64];
            let mut len = buf.len() as c_int;
            // SAFETY: a C callback with a 64-byte buffer and its length.
            unsafe { hook(self.as_c(), buf.as_mut_ptr(), &mut len) };
            let n = usize::try_from(len).unwrap_or(0).min(buf.len());
            return buf.get(..n).unwrap_or_default().to_vec();
        }
        match &*lock(&self.engine) {
            Engine::Cac(card) => card.atr().as_bytes().to_vec(),
            #[cfg(feature = "pcsc")]
            Engine::Relay(card) => card.atr().unwrap_or_default(),
            Engine::Applets => DEFAULT_ATR.to_vec(),
        }
    }

    /// Runs `f` on the emulated CAC, if this is one.
    pub(crate) fn with_cac<T>(&self, f: impl FnOnce(&mut cac::Card) -> T) -> Option<T> {
        match &mut *lock(&self.engine) {
            Engine::Cac(card) => Some(f(card)),
            _ => None,
        }
    }

    fn set_engine(&self, engine: Engine) {
        *lock(&self.engine) = engine;
    }
}

const INS_SELECT: u8 = 0xA4;
const INS_GET_RESPONSE: u8 = 0xC0;

/// Borrow a card C passed in.
///
/// # Safety
/// `p` is NULL or a live card from this library.
unsafe fn card_ref<'a>(p: *const VCard) -> Option<&'a VCard> {
    // SAFETY: per the contract.
    unsafe { p.as_ref() }
}

/// A new card with no applets (type `VCARD_VM`), holding `emul_private`
/// (freed with `private_free`, if not NULL, when the card goes).
///
/// Ownership: the caller holds one reference; release it with
/// [`vcard_free`]. NULL only if the library panicked.
///
/// # Safety
/// `private_free`, if given, may be called once with `emul_private`.
#[no_mangle]
pub unsafe extern "C" fn vcard_new(
    emul_private: *mut c_void,
    private_free: Option<VCardEmulFreeFn>,
) -> *mut VCard {
    guard(ptr::null_mut(), || {
        VCard::into_c(VCard::with_engine(
            Engine::Applets,
            emul_private,
            private_free,
            false,
        ))
    })
}

/// Adds a reference to `card` and returns it (NULL for NULL).
///
/// Ownership: release the new reference with [`vcard_free`].
///
/// # Safety
/// `card` is NULL or a live card.
#[no_mangle]
pub unsafe extern "C" fn vcard_reference(card: *mut VCard) -> *mut VCard {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        unsafe { VCard::from_c(card) }.map_or(ptr::null_mut(), VCard::into_c)
    })
}

/// Drops one reference; the last one frees the card, its applets, its
/// buffer response and its private data. NULL is a no-op.
///
/// # Safety
/// `card` is NULL or a reference the caller owns, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn vcard_free(card: *mut VCard) {
    guard((), || {
        if !card.is_null() {
            // SAFETY: the caller gives up a reference it owned.
            drop(unsafe { Arc::from_raw(card.cast_const()) });
        }
    })
}

/// A new applet answering APDUs with `applet_process_function` (may be
/// NULL: the applet then only takes part in SELECT), reset with
/// `applet_reset_function`, identified by a copy of `aid`. NULL for a NULL
/// `aid` with a positive length or a negative length.
///
/// Ownership: the caller owns the applet until [`vcard_add_applet`] gives
/// it to a card; otherwise free it with [`vcard_delete_applet`].
///
/// # Safety
/// `aid` points to `aid_len` readable bytes; the callbacks have the C
/// signatures their types name.
#[no_mangle]
pub unsafe extern "C" fn vcard_new_applet(
    applet_process_function: Option<VCardProcessApduFn>,
    applet_reset_function: Option<VCardResetAppletFn>,
    aid: *const c_uchar,
    aid_len: c_int,
) -> *mut VCardApplet {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        let Some(aid) = (unsafe { c_slice(aid, aid_len) }) else {
            return ptr::null_mut();
        };
        Box::into_raw(Box::new(VCardApplet {
            process: applet_process_function,
            reset: applet_reset_function,
            aid: aid.to_vec(),
            private: ptr::null_mut(),
            private_free: None,
        }))
    })
}

/// Frees an applet that was not added to a card (and its private data).
/// NULL is a no-op.
///
/// # Safety
/// `applet` is NULL or from [`vcard_new_applet`], not on any card.
#[no_mangle]
pub unsafe extern "C" fn vcard_delete_applet(applet: *mut VCardApplet) {
    guard((), || {
        if !applet.is_null() {
            // SAFETY: the caller owns the applet.
            drop(unsafe { Box::from_raw(applet) });
        }
    })
}

/// Attaches private data to an applet, freed with `private_free` (if not
/// NULL) when the applet goes. A previous private pointer is freed first.
///
/// # Safety
/// `applet` is NULL or a live applet.
#[no_mangle]
pub unsafe extern "C" fn vcard_set_applet_private(
    applet: *mut VCardApplet,
    private: *mut c_void,
    private_free: Option<VCardAppletPrivateFreeFn>,
) {
    guard((), || {
        // SAFETY: per the contract.
        let Some(a) = (unsafe { applet.as_mut() }) else {
            return;
        };
        if let Some(free) = a.private_free {
            if !a.private.is_null() && a.private != private {
                // SAFETY: the old pointer was handed over with this destructor.
                unsafe { free(a.private) };
            }
        }
        a.private = private;
        a.private_free = private_free;
    })
}

/// Sets the card's `VCardType`. NULL is a no-op.
///
/// # Safety
/// `card` is NULL or a live card.
#[no_mangle]
pub unsafe extern "C" fn vcard_set_type(card: *mut VCard, card_type: VCardType) {
    guard((), || {
        // SAFETY: per the contract.
        if let Some(c) = unsafe { card_ref(card) } {
            lock(&c.meta).card_type = card_type;
        }
    })
}

/// The card's `VCardType` (`VCARD_VM` for NULL).
///
/// # Safety
/// `card` is NULL or a live card.
#[no_mangle]
pub unsafe extern "C" fn vcard_get_type(card: *mut VCard) -> VCardType {
    guard(VCARD_VM, || {
        // SAFETY: per the contract.
        unsafe { card_ref(card) }.map_or(VCARD_VM, |c| lock(&c.meta).card_type)
    })
}

/// Gives `applet` to `card` (the card frees it). `VCARD_DONE`, or
/// `VCARD_FAIL` for NULL arguments.
///
/// # Safety
/// `card` is NULL or a live card; `applet` is NULL or an applet the
/// caller owns.
#[no_mangle]
pub unsafe extern "C" fn vcard_add_applet(
    card: *mut VCard,
    applet: *mut VCardApplet,
) -> VCardStatus {
    guard(VCARD_FAIL, || {
        // SAFETY: per the contract.
        match unsafe { card_ref(card) } {
            Some(c) if !applet.is_null() => {
                lock(&c.meta).applets.push(applet);
                VCARD_DONE
            }
            _ => VCARD_FAIL,
        }
    })
}

/// The card's applet with this AID, or NULL.
///
/// Ownership: the card keeps the applet.
///
/// # Safety
/// `card` is NULL or a live card; `aid` points to `aid_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn vcard_find_applet(
    card: *mut VCard,
    aid: *const c_uchar,
    aid_len: c_int,
) -> *mut VCardApplet {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        match (unsafe { card_ref(card) }, unsafe { c_slice(aid, aid_len) }) {
            (Some(c), Some(aid)) => c.find_applet(aid),
            _ => ptr::null_mut(),
        }
    })
}

/// Makes `applet` (NULL: none) current on `channel` and resets it. Out of
/// range channels and a NULL card are ignored.
///
/// # Safety
/// `card` is NULL or a live card; `applet` NULL or one of its applets.
#[no_mangle]
pub unsafe extern "C" fn vcard_select_applet(
    card: *mut VCard,
    channel: c_int,
    applet: *mut VCardApplet,
) {
    guard((), || {
        // SAFETY: per the contract.
        let Some(c) = (unsafe { card_ref(card) }) else {
            return;
        };
        let Some(slot_index) = usize::try_from(channel).ok().filter(|c| *c < MAX_CHANNEL) else {
            return;
        };
        if let Some(slot) = lock(&c.meta).current.get_mut(slot_index) {
            *slot = applet;
        }
        // SAFETY: per the contract the applet is live.
        if let Some(reset) = unsafe { applet.as_ref() }.and_then(|a| a.reset) {
            // SAFETY: C callback with its documented arguments.
            unsafe { reset(card, channel) };
        }
    })
}

/// The private data of the applet current on `channel`, or NULL.
///
/// Ownership: the applet keeps it.
///
/// # Safety
/// `card` is NULL or a live card.
#[no_mangle]
pub unsafe extern "C" fn vcard_get_current_applet_private(
    card: *mut VCard,
    channel: c_int,
) -> *mut c_void {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        let Some(c) = (unsafe { card_ref(card) }) else {
            return ptr::null_mut();
        };
        let Some(i) = usize::try_from(channel).ok() else {
            return ptr::null_mut();
        };
        let applet = lock(&c.meta)
            .current
            .get(i)
            .copied()
            .unwrap_or(ptr::null_mut());
        // SAFETY: current applets are live.
        unsafe { applet.as_ref() }.map_or(ptr::null_mut(), |a| a.private)
    })
}

/// The applet's AID (and its length in `*aid_len`, if not NULL), or NULL.
///
/// Ownership: the applet keeps the bytes.
///
/// # Safety
/// `applet` is NULL or live; `aid_len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn vcard_applet_get_aid(
    applet: *mut VCardApplet,
    aid_len: *mut c_int,
) -> *mut c_uchar {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        let Some(a) = (unsafe { applet.as_mut() }) else {
            return ptr::null_mut();
        };
        if !aid_len.is_null() {
            // SAFETY: per the contract.
            unsafe { *aid_len = a.aid.len() as c_int };
        }
        a.aid.as_mut_ptr()
    })
}

/// Runs the current applet of the APDU's channel. `VCARD_NEXT` when no
/// applet is current or it has no process function; `VCARD_FAIL` for
/// NULL arguments.
///
/// # Safety
/// `card` is NULL or live; `apdu` NULL or valid; `response` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn vcard_process_applet_apdu(
    card: *mut VCard,
    apdu: *mut VCardAPDU,
    response: *mut *mut VCardResponse,
) -> VCardStatus {
    guard(VCARD_FAIL, || {
        // SAFETY: per the contract.
        let (Some(c), false, false) = (
            unsafe { card_ref(card) },
            apdu.is_null(),
            response.is_null(),
        ) else {
            return VCARD_FAIL;
        };
        // SAFETY: per the contract.
        let channel = unsafe { (*apdu).a_channel };
        let applet = usize::try_from(channel)
            .ok()
            .and_then(|i| lock(&c.meta).current.get(i).copied())
            .unwrap_or(ptr::null_mut());
        // SAFETY: current applets are live.
        match unsafe { applet.as_ref() }.and_then(|a| a.process) {
            // SAFETY: C callback with the caller's arguments.
            Some(process) => unsafe { process(card, apdu, response) },
            None => VCARD_NEXT,
        }
    })
}

/// Processes an APDU the way `vreader_xfr_bytes` does: the emulated CAC
/// answers, or (for a C-assembled card) GET RESPONSE from the buffer
/// response, the current applet, then SELECT by AID. Stores a response in
/// `*response` (always, unless `VCARD_FAIL` is returned).
///
/// Ownership: the caller owns `*response`; free it with
/// `vcard_response_delete`.
///
/// # Safety
/// `card` is NULL or live; `apdu` NULL or valid; `response` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn vcard_process_apdu(
    card: *mut VCard,
    apdu: *mut VCardAPDU,
    response: *mut *mut VCardResponse,
) -> VCardStatus {
    guard(VCARD_FAIL, || {
        if apdu.is_null() || response.is_null() {
            return VCARD_FAIL;
        }
        // SAFETY: per the contract.
        let Some(c) = (unsafe { VCard::from_c(card) }) else {
            return VCARD_FAIL;
        };
        // SAFETY: per the contract.
        let raw = unsafe { apdu_bytes(apdu) }.unwrap_or_default().to_vec();
        let answer = c.with_cac(|cac| cac.transmit_vec(&raw));
        let (status, r) = match answer {
            Some(bytes) => {
                // SAFETY: `bytes` is a live vector.
                let r = unsafe {
                    apdu::vcard_response_new_data(bytes.as_ptr(), bytes.len() as c_int - 2)
                };
                let (sw1, sw2) = (
                    bytes
                        .get(bytes.len().wrapping_sub(2))
                        .copied()
                        .unwrap_or(0x6F),
                    bytes.last().copied().unwrap_or(0),
                );
                // SAFETY: `r` is NULL or fresh.
                unsafe { apdu::vcard_response_set_status_bytes(r, sw1, sw2) };
                (VCARD_DONE, r)
            }
            // SAFETY: `apdu` is valid per the contract.
            None => unsafe { c.process_applets(apdu) },
        };
        // SAFETY: per the contract.
        unsafe { *response = r };
        status
    })
}

/// Resets the card for power on (`VCARD_POWER_ON`) or off: selections
/// and any pending response are dropped; the emulated CAC also logs out.
/// NULL is a no-op.
///
/// # Safety
/// `card` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vcard_reset(card: *mut VCard, power: VCardPower) {
    guard((), || {
        // SAFETY: per the contract.
        if let Some(c) = unsafe { card_ref(card) } {
            c.reset(power);
        }
    })
}

/// Copies the card's ATR (at most `*atr_len` bytes) to `atr` and stores
/// the count in `*atr_len`. NULL arguments: nothing happens.
///
/// # Safety
/// `card` NULL or live; `atr` has room for `*atr_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn vcard_get_atr(card: *mut VCard, atr: *mut c_uchar, atr_len: *mut c_int) {
    guard((), || {
        // SAFETY: per the contract.
        let Some(c) = (unsafe { VCard::from_c(card) }) else {
            return;
        };
        if atr_len.is_null() {
            return;
        }
        let bytes = c.atr();
        // SAFETY: per the contract.
        unsafe { copy_out(&bytes, atr, atr_len) };
    })
}

/// Installs the function that produces the card's ATR (NULL: the
/// default).
///
/// # Safety
/// `card` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vcard_set_atr_func(card: *mut VCard, get_atr: Option<VCardGetAtrFn>) {
    guard((), || {
        // SAFETY: per the contract.
        if let Some(c) = unsafe { card_ref(card) } {
            lock(&c.meta).get_atr = get_atr;
        }
    })
}

/// The pending GET RESPONSE data, or NULL.
///
/// Ownership: the card keeps it (until the next command or
/// [`vcard_set_buffer_response`]).
///
/// # Safety
/// `card` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vcard_get_buffer_response(card: *mut VCard) -> *mut VCardBufferResponse {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        unsafe { card_ref(card) }.map_or(ptr::null_mut(), |c| lock(&c.meta).buffer)
    })
}

/// Replaces the pending GET RESPONSE data; the card owns `buffer` from now
/// on. As in libcacard the previous one is not freed: the caller fetched
/// it with [`vcard_get_buffer_response`] and frees it with
/// `vcard_buffer_response_delete`.
///
/// # Safety
/// `card` NULL or live; `buffer` NULL or from `vcard_buffer_response_new`.
#[no_mangle]
pub unsafe extern "C" fn vcard_set_buffer_response(
    card: *mut VCard,
    buffer: *mut VCardBufferResponse,
) {
    guard((), || {
        // SAFETY: per the contract.
        if let Some(c) = unsafe { card_ref(card) } {
            lock(&c.meta).buffer = buffer;
        }
    })
}

/// The private pointer given to [`vcard_new`] (NULL for NULL).
///
/// Ownership: the card keeps it.
///
/// # Safety
/// `card` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vcard_get_private(card: *mut VCard) -> *mut c_void {
    guard(ptr::null_mut(), || {
        // SAFETY: per the contract.
        unsafe { card_ref(card) }.map_or(ptr::null_mut(), |c| lock(&c.meta).emul)
    })
}

fn keys_from_c(key: *const *mut VCardKey, count: usize) -> Vec<Option<Arc<dyn KeyHandle>>> {
    (0..count)
        .map(|i| {
            if key.is_null() {
                return None;
            }
            // SAFETY: the caller's array has `count` entries.
            let k = unsafe { *key.add(i) };
            if k.is_null() {
                None
            } else {
                // SAFETY: the card adopts the key.
                Some(unsafe { Box::from_raw(k) }.handle)
            }
        })
        .collect()
}

/// Makes `card` a CAC card with `cert_count` certificates (`cert[i]`, DER,
/// `cert_len[i]` bytes) and their keys (`key[i]`, may be NULL: the
/// certificate then has no key). The card adopts the keys whatever the
/// outcome. Without a PIN source of its own the card behaves like
/// libcacard's password-less soft token: any VERIFY logs in. Returns
/// `VCARD_DONE`, or `VCARD_FAIL` (NULL card or certificates, no
/// certificate, a certificate the card cannot use).
///
/// # Safety
/// `cert` and `cert_len` have `cert_count` entries; `key` is NULL or has
/// `cert_count` entries, each NULL or a key from this library.
#[no_mangle]
pub unsafe extern "C" fn cac_card_init(
    reader: *mut VReader,
    card: *mut VCard,
    cert: *const *mut c_uchar,
    cert_len: *const c_int,
    key: *const *mut VCardKey,
    cert_count: c_int,
) -> VCardStatus {
    let _ = reader;
    guard(VCARD_FAIL, || {
        let count = usize::try_from(cert_count).unwrap_or(0);
        let keys = keys_from_c(key, count);
        // SAFETY: per the contract.
        let Some(c) = (unsafe { card_ref(card) }) else {
            return VCARD_FAIL;
        };
        if count == 0 || cert.is_null() || cert_len.is_null() {
            return VCARD_FAIL;
        }
        let mut identities = Vec::with_capacity(count);
        for (i, key) in keys.into_iter().enumerate() {
            // SAFETY: both arrays have `count` entries.
            let (p, n) = unsafe { (*cert.add(i), *cert_len.add(i)) };
            // SAFETY: entry i points to n bytes.
            let Some(der) = (unsafe { c_slice(p, n) }) else {
                return VCARD_FAIL;
            };
            identities.push((der.to_vec(), key));
        }
        match crate::soft::card_from_parts(identities) {
            Ok(cac) => {
                c.set_engine(Engine::Cac(Box::new(cac)));
                VCARD_DONE
            }
            Err(e) => {
                eprintln!("libcacard: cannot build a CAC card: {e}");
                VCARD_FAIL
            }
        }
    })
}

/// [`cac_card_init`] for `type` `VCARD_EMUL_CAC` (1); every other type
/// (PASSTHRU needs PC/SC, which this library does not use) is
/// `VCARD_FAIL`. `params` is ignored, as CAC ignores it.
///
/// # Safety
/// As for [`cac_card_init`].
#[no_mangle]
pub unsafe extern "C" fn vcard_init(
    vreader: *mut VReader,
    vcard: *mut VCard,
    card_type: VCardEmulType,
    params: *const core::ffi::c_char,
    cert: *const *mut c_uchar,
    cert_len: *const c_int,
    key: *const *mut VCardKey,
    cert_count: c_int,
) -> VCardStatus {
    let _ = params;
    if card_type != 1 {
        let count = usize::try_from(cert_count).unwrap_or(0);
        // The keys are adopted whatever the outcome.
        drop(guard(Vec::new(), || keys_from_c(key, count)));
        return VCARD_FAIL;
    }
    // SAFETY: same contract.
    unsafe { cac_card_init(vreader, vcard, cert, cert_len, key, cert_count) }
}

/// Frees a key. NULL is a no-op.
///
/// # Safety
/// `key` is NULL or a key from this library not adopted by a card.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_delete_key(key: *mut VCardKey) {
    guard((), || {
        if !key.is_null() {
            // SAFETY: the caller owns the key.
            drop(unsafe { Box::from_raw(key) });
        }
    })
}

/// PIN tries left on an emulated CAC from a vcac card directory; -1 when
/// there is no counter (NSS cards: NSS keeps none, as in libcacard), for
/// NULL, and for cards assembled from C applets.
///
/// # Safety
/// `card` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_get_login_count(card: *mut VCard) -> c_int {
    guard(-1, || {
        // SAFETY: per the contract.
        unsafe { card_ref(card) }
            .filter(|c| c.counts_tries)
            .and_then(|c| c.with_cac(|cac| c_int::from(cac.pin_tries_left())))
            .unwrap_or(-1)
    })
}

/// Logs in with `pin` (`pin_len` bytes, `FF`-padded to 8 as a VERIFY
/// block); returns the card's status word (`90 00`, `63 Cx`, …). `6F 00`
/// for NULL arguments or a card without a PIN (assembled from C).
///
/// # Safety
/// `card` NULL or live; `pin` points to `pin_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_login(
    card: *mut VCard,
    pin: *mut c_uchar,
    pin_len: c_int,
) -> Status7816 {
    guard(SW_GENERAL, || {
        // SAFETY: per the contract.
        let (Some(c), Some(pin)) = (unsafe { card_ref(card) }, unsafe { c_slice(pin, pin_len) })
        else {
            return SW_GENERAL;
        };
        let mut block = pin.to_vec();
        if block.len() < 8 {
            block.resize(8, 0xFF);
        }
        let mut cmd = vec![0x00, 0x20, 0x00, 0x00, block.len() as u8];
        cmd.extend_from_slice(&block);
        c.with_cac(|cac| {
            let r = cac.transmit_vec(&cmd);
            match r.as_slice() {
                [.., a, b] => u16::from_be_bytes([*a, *b]),
                _ => SW_GENERAL,
            }
        })
        .unwrap_or(SW_GENERAL)
    })
}

/// The raw RSA private-key operation of `key` on `buffer` (in place;
/// `buffer_size` bytes, the modulus length). `90 00`; `69 82` when the
/// emulated card is not logged in; `69 84` for input the key refuses;
/// `6F 00` for NULL arguments or a backend failure.
///
/// # Safety
/// `card` NULL or live; `key` NULL or live; `buffer` has `buffer_size`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_rsa_op(
    card: *mut VCard,
    key: *mut VCardKey,
    buffer: *mut c_uchar,
    buffer_size: c_int,
) -> Status7816 {
    guard(SW_GENERAL, || {
        // SAFETY: per the contract.
        let (Some(k), Some(input)) = (unsafe { key.as_ref() }, unsafe {
            c_slice(buffer, buffer_size)
        }) else {
            return SW_GENERAL;
        };
        // SAFETY: per the contract.
        if let Some(c) = unsafe { card_ref(card) } {
            if c.with_cac(|cac| cac.is_verified()) == Some(false) {
                return 0x6982;
            }
        }
        let mut out = Vec::with_capacity(input.len());
        match k.handle.private_op(
            input,
            &mut rand_core::UnwrapErr(getrandom::SysRng),
            &mut out,
        ) {
            Ok(()) if out.len() == input.len() => {
                // SAFETY: `buffer` has `out.len()` writable bytes.
                unsafe { ptr::copy_nonoverlapping(out.as_ptr(), buffer, out.len()) };
                0x9000
            }
            Err(cac::keys::KeyError::InvalidInput) => 0x6984,
            _ => SW_GENERAL,
        }
    })
}

/// Power-cycle hook of the emulation layer: the emulated CAC ends its
/// session (logs out). NULL is a no-op.
///
/// # Safety
/// `card` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_reset(card: *mut VCard, power: VCardPower) {
    guard((), || {
        // SAFETY: per the contract.
        if let Some(c) = unsafe { card_ref(card) } {
            let _ = power;
            c.with_cac(|cac| cac.power_off());
        }
    })
}

/// Copies the emulation layer's default ATR, `3B 89 00` "VCARD_NSS" (at
/// most `*atr_len` bytes), storing the count in `*atr_len`.
///
/// # Safety
/// `atr` has room for `*atr_len` bytes; `atr_len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_get_atr(
    card: *mut VCard,
    atr: *mut c_uchar,
    atr_len: *mut c_int,
) {
    let _ = card;
    guard((), || {
        if !atr_len.is_null() {
            // SAFETY: per the contract.
            unsafe { copy_out(&DEFAULT_ATR, atr, atr_len) };
        }
    })
}
