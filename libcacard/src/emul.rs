//! The emulator entry points: options, init, events replay, force
//! remove / insert.

use core::ffi::{c_char, CStr};
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::card::VCard;
use crate::options::{self, EmulType, Options, UseHw};
use crate::reader::{self, VReader};
use crate::soft::Source;
use crate::types::{
    VCardEmulError, VCardEmulType, VCARD_EMUL_FAIL, VCARD_EMUL_INIT_ALREADY_INITED, VCARD_EMUL_OK,
};
use crate::{guard, lock};

/// An opaque `VCardEmulOptions`: always the library's own storage.
pub struct VCardEmulOptions {
    parsed: Mutex<Options>,
}

/// The storage `vcard_emul_options` fills and returns, like libcacard's
/// static struct: reset on every call, never freed.
static OPTIONS: VCardEmulOptions = VCardEmulOptions {
    parsed: Mutex::new(Options {
        db: None,
        soft: Vec::new(),
        use_hw: UseHw::Yes,
        hw_type: EmulType::Cac,
        hw_params: None,
    }),
};

static INITED: AtomicBool = AtomicBool::new(false);

/// Parses an options string (grammar: the [`options`] module).
///
/// Returns NULL when the string is invalid (a message goes to stderr) or
/// NULL; otherwise a pointer to storage the library owns, reset by every
/// call: the caller never frees it and passes it to [`vcard_emul_init`].
///
/// # Safety
/// `args` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_options(args: *const c_char) -> *mut VCardEmulOptions {
    guard(ptr::null_mut(), || {
        let mut stored = lock(&OPTIONS.parsed);
        *stored = Options::default();
        if args.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: per the contract.
        let bytes = unsafe { CStr::from_ptr(args) }.to_bytes();
        match options::parse(bytes) {
            Ok(o) => {
                *stored = o;
                ptr::addr_of!(OPTIONS).cast_mut()
            }
            Err(e) => {
                eprintln!("Error: {e}.");
                ptr::null_mut()
            }
        }
    })
}

/// Starts the emulator, once per process.
///
/// `options` is NULL (defaults: database `/etc/pki/nssdb`, hardware
/// tokens) or what [`vcard_emul_options`] returned. For each soft reader
/// the reader is added (READER_INSERT) and, if at least one of its
/// certificates is found, its card inserted (CARD_INSERT) — both queued
/// before this returns.
///
/// * `VCARD_EMUL_INIT_ALREADY_INITED` on every call after the first, even
///   if the first failed.
/// * `VCARD_EMUL_FAIL` when the database cannot be opened, when
///   `use_hw=no` and no soft card was built, when the database's
///   `pkcs11.txt` cannot be read, or for a pointer that is not the
///   library's options.
/// * `VCARD_EMUL_OK` otherwise. Hardware mode (`use_hw` not `no`) then
///   mirrors the slots of the PKCS#11 modules `pkcs11.txt` lists as
///   readers ([`crate::hw`]); zero readers (no `pkcs11.txt`, no removable
///   slot) is still OK, as in libcacard.
///
/// # Safety
/// `options` is NULL or from `vcard_emul_options`.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_init(options: *const VCardEmulOptions) -> VCardEmulError {
    guard(VCARD_EMUL_FAIL, || {
        if INITED.swap(true, Ordering::SeqCst) {
            return VCARD_EMUL_INIT_ALREADY_INITED;
        }
        let opts = if options.is_null() {
            Options::default()
        } else if ptr::eq(options, &OPTIONS) {
            lock(&OPTIONS.parsed).clone()
        } else {
            eprintln!("libcacard: vcard_emul_init: options not from vcard_emul_options");
            return VCARD_EMUL_FAIL;
        };
        init(&opts)
    })
}

fn init(opts: &Options) -> VCardEmulError {
    reader::clear_readers();
    crate::event::vevent_queue_init();
    if opts.use_hw != UseHw::No && opts.hw_type == EmulType::Passthru {
        return passthru(opts);
    }
    let spec = opts.db.as_deref().unwrap_or(options::DEFAULT_DB);
    let source = match Source::open(spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("libcacard: cannot open database {spec}: {e}");
            return VCARD_EMUL_FAIL;
        }
    };
    let mut cards = 0;
    for soft in &opts.soft {
        if !source.has_slot(&soft.slot) {
            eprintln!(
                "libcacard: no slot named \"{}\"; reader \"{}\" skipped",
                soft.slot, soft.name
            );
            continue;
        }
        let r = VReader::new(soft.name.as_bytes(), ptr::null_mut(), None);
        reader::add_reader(&r);
        if soft.card_type != EmulType::Cac {
            eprintln!(
                "libcacard: reader \"{}\": only CAC soft cards are supported",
                soft.name
            );
            continue;
        }
        match source.card(&soft.certs) {
            Ok(Some(card)) => {
                let card = VCard::from_cac(card, source.counts_tries());
                *lock(&r.emul_card) = Some(card.clone());
                r.insert_card(Some(card));
                cards += 1;
            }
            Ok(None) => {
                eprintln!(
                    "libcacard: reader \"{}\": none of its certificates was found",
                    soft.name
                )
            }
            Err(e) => eprintln!("libcacard: reader \"{}\": {e}", soft.name),
        }
    }
    if opts.use_hw == UseHw::No {
        return if cards == 0 {
            VCARD_EMUL_FAIL
        } else {
            VCARD_EMUL_OK
        };
    }
    let dir = Path::new(spec.strip_prefix("sql:").unwrap_or(spec));
    match crate::hw::start_tokens(dir, opts.use_hw) {
        Ok(()) => VCARD_EMUL_OK,
        Err(e) => {
            eprintln!("libcacard: cannot read the module list: {e}");
            VCARD_EMUL_FAIL
        }
    }
}

/// PC/SC passthrough: no database; soft readers are an error.
fn passthru(opts: &Options) -> VCardEmulError {
    if !opts.soft.is_empty() {
        eprintln!("libcacard: soft= readers cannot be combined with PC/SC passthrough");
        return VCARD_EMUL_FAIL;
    }
    #[cfg(feature = "pcsc")]
    {
        match crate::hw::start_passthru() {
            Ok(()) => VCARD_EMUL_OK,
            Err(e) => {
                eprintln!("libcacard: PC/SC passthrough: {e}");
                VCARD_EMUL_FAIL
            }
        }
    }
    #[cfg(not(feature = "pcsc"))]
    {
        eprintln!("libcacard: PC/SC passthrough is not built in (feature pcsc)");
        VCARD_EMUL_FAIL
    }
}

/// Ends the emulation session: hardware mode stops following its
/// modules' slots (within a second). The readers and cards stay as they
/// are. Always `VCARD_EMUL_OK`.
#[no_mangle]
pub extern "C" fn vcard_emul_finalize() -> VCardEmulError {
    guard((), crate::hw::stop);
    VCARD_EMUL_OK
}

/// Queues, for every reader in the list, CARD_INSERT if it holds a card
/// (CARD_REMOVE if not) — what a consumer that attaches late (QEMU's
/// second realize) needs. No READER_INSERT is queued.
#[no_mangle]
pub extern "C" fn vcard_emul_replay_insertion_events() {
    guard((), || {
        for r in reader::readers() {
            r.queue_card_event();
        }
    })
}

/// Takes the card out of a soft reader (queues CARD_REMOVE), keeping it
/// for [`vcard_emul_force_card_insert`]. `VCARD_EMUL_OK`, or
/// `VCARD_EMUL_FAIL` when the reader has no card (so a second removal
/// fails) or is NULL.
///
/// # Safety
/// `vreader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_force_card_remove(vreader: *mut VReader) -> VCardEmulError {
    guard(VCARD_EMUL_FAIL, || {
        // SAFETY: per the contract.
        let Some(r) = (unsafe { VReader::from_c(vreader) }) else {
            return VCARD_EMUL_FAIL;
        };
        if r.card().is_none() {
            return VCARD_EMUL_FAIL;
        }
        r.insert_card(None);
        VCARD_EMUL_OK
    })
}

/// Puts a soft reader's own card back (queues CARD_INSERT).
/// `VCARD_EMUL_OK`, or `VCARD_EMUL_FAIL` when a card is present (so a
/// second insertion fails), the reader has no card of the emulator's, or
/// is NULL.
///
/// # Safety
/// `vreader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_force_card_insert(vreader: *mut VReader) -> VCardEmulError {
    guard(VCARD_EMUL_FAIL, || {
        // SAFETY: per the contract.
        let Some(r) = (unsafe { VReader::from_c(vreader) }) else {
            return VCARD_EMUL_FAIL;
        };
        if r.card().is_some() {
            return VCARD_EMUL_FAIL;
        }
        let Some(card) = lock(&r.emul_card).clone() else {
            return VCARD_EMUL_FAIL;
        };
        r.insert_card(Some(card));
        VCARD_EMUL_OK
    })
}

/// Prints the options syntax to stderr.
#[no_mangle]
pub extern "C" fn vcard_emul_usage() {
    guard((), || eprint!("{}", options::USAGE))
}

/// `CAC` → `VCARD_EMUL_CAC` (1), `PASSTHRU` → `VCARD_EMUL_PASSTHRU` (2),
/// ignoring ASCII case; anything else (and NULL) → `VCARD_EMUL_NONE` (0).
///
/// # Safety
/// `type_string` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_type_from_string(type_string: *const c_char) -> VCardEmulType {
    guard(0, || {
        if type_string.is_null() {
            return 0;
        }
        // SAFETY: per the contract.
        EmulType::from_name(unsafe { CStr::from_ptr(type_string) }.to_bytes()).to_c()
    })
}

/// The card type of a reader: `VCARD_EMUL_CAC` for the emulator's soft
/// readers, `VCARD_EMUL_NONE` otherwise.
///
/// # Safety
/// `vreader` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn vcard_emul_type_select(vreader: *mut VReader) -> VCardEmulType {
    guard(0, || {
        // SAFETY: per the contract.
        let r: Option<Arc<VReader>> = unsafe { VReader::from_c(vreader) };
        match r {
            Some(r) if lock(&r.emul_card).is_some() => EmulType::Cac.to_c(),
            _ => EmulType::None.to_c(),
        }
    })
}
