//! Host PKCS#11 tokens mirrored as CACs (feature `pkcs11`).
//!
//! A [`Module`] is a PKCS#11 library (`libsofthsm2.so`, `opensc-pkcs11.so`,
//! a vendor's middleware) loaded at run time. Each token becomes a
//! [`cac::Card`] with one PKI applet per X.509 certificate that has a
//! private key with the same `CKA_ID`. The keys never leave the token:
//!
//! * SIGN / DECRYPT runs on the token through a [`KeyHandle`]: the raw RSA
//!   operation with `CKM_RSA_X_509` when the token offers it; otherwise a
//!   PKCS#1 type-1 block (`00 01 FF… 00 DigestInfo`) is unpadded and its
//!   payload signed with `CKM_RSA_PKCS`, and any other block is refused
//!   (`6A 80`). EC P-256 keys sign with `CKM_ECDSA` (DER result).
//! * VERIFY logs in to the token (a [`SecurityEnvironment`]): the PIN
//!   counter and blocking are the token's. `CKR_PIN_INCORRECT` answers
//!   `63 Cx` and `CKR_PIN_LOCKED` `69 83`; `x` comes from the token's
//!   flags (`CKF_USER_PIN_FINAL_TRY` → 1, `CKF_USER_PIN_COUNT_LOW` → 2,
//!   otherwise 3: PKCS#11 does not say how many tries a token allows).
//!   Power-off, reset and removal log out.
//! * Private key objects are looked up again for every operation, since
//!   some modules (softhsm) invalidate handles at logout.
//!
//! ```text
//!  Module::open(lib) ── slots ──► Watcher::poll ──► ReaderSet bays
//!                                   │ token appears: load_token → Card
//!                                   │ token gone:    remove_card
//!  Card ── SIGN ──► TokenKey ──► C_Sign / C_Decrypt on the token
//!       └─ VERIFY ─► TokenLogin ─► C_Login / C_Logout
//! ```
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use vcac_sources::pkcs11::{Module, Selection, Watcher};
//!
//! let module = Module::open("/usr/lib/softhsm/libsofthsm2.so".as_ref(), Duration::from_secs(10))?;
//! let set = vreader::ReaderSet::new();
//! let bay = set.add_reader("token 0")?;
//! let mut watcher = Watcher::new(module, Selection::Removable, vec![bay]);
//! for change in watcher.poll(&set)? {
//!     println!("{change}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cac::keys::{KeyAlgorithm, KeyError, KeyHandle};
use cac::security::{INS_CHANGE_REFERENCE_DATA, INS_RESET_RETRY_COUNTER, INS_VERIFY};
use cac::{Card, CommandView, Identity, Pin, PinPolicy, SecurityEnvironment, Status};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rand_core::CryptoRng;
use vreader::{ReaderId, ReaderSet};
use zeroize::Zeroizing;

/// Most tries `63 Cx` reports for a token that has not seen a wrong PIN
/// (PKCS#11 does not tell the real limit).
pub const NOMINAL_TRIES: u8 = 3;

/// Errors of the PKCS#11 source. Each names the module or token.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pkcs11Error {
    /// The module could not be loaded or initialised.
    Load {
        /// The module path.
        module: PathBuf,
        /// Why.
        reason: String,
    },
    /// A PKCS#11 call failed.
    Call {
        /// Which token or call.
        what: String,
        /// The module's answer.
        reason: String,
    },
    /// The token holds no certificate with a matching private key.
    NoIdentities {
        /// The token label.
        token: String,
    },
}

impl fmt::Display for Pkcs11Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkcs11Error::Load { module, reason } => {
                write!(f, "PKCS#11 module {}: {reason}", module.display())
            }
            Pkcs11Error::Call { what, reason } => write!(f, "{what}: {reason}"),
            Pkcs11Error::NoIdentities { token } => write!(
                f,
                "token \"{token}\": no X.509 certificate with a private key of the same CKA_ID"
            ),
        }
    }
}

impl std::error::Error for Pkcs11Error {}

fn call_error(what: impl Into<String>) -> impl FnOnce(CkError) -> Pkcs11Error {
    let what = what.into();
    move |e| Pkcs11Error::Call {
        what,
        reason: e.to_string(),
    }
}

/// A loaded and initialised PKCS#11 module. Cheap to clone.
#[derive(Clone)]
pub struct Module {
    ctx: Pkcs11,
    path: Arc<Path>,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Module({})", self.path.display())
    }
}

/// A slot of a module and the token in it, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotSummary {
    /// The module's slot ID.
    pub id: u64,
    /// The slot description.
    pub description: String,
    /// `CKF_REMOVABLE_DEVICE`.
    pub removable: bool,
    /// `CKF_HW_SLOT`: a hardware slot (NSS's `PK11_IsHW`).
    pub hardware: bool,
    /// `CKF_TOKEN_PRESENT`, initialised or not.
    pub token_present: bool,
    /// The token, when one is present and initialised.
    pub token: Option<TokenSummary>,
}

/// Who a token is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenSummary {
    /// Label (trailing blanks removed).
    pub label: String,
    /// Serial number.
    pub serial: String,
}

impl Module {
    /// Loads the module at `path` and calls `C_Initialize` (OS locking).
    /// Loading and initialisation must finish within `timeout`: a module
    /// that hangs is abandoned with an error. A bare file name (no `/`,
    /// as NSS databases often list `p11-kit-proxy.so`) is searched for
    /// the way the dynamic loader searches.
    pub fn open(path: &Path, timeout: Duration) -> Result<Module, Pkcs11Error> {
        let fail = |reason: String| Pkcs11Error::Load {
            module: path.to_path_buf(),
            reason,
        };
        let bare =
            path.components().count() == 1 && !path.as_os_str().is_empty() && !path.has_root();
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(fail("not a file".into())),
            Err(_) if bare => {}
            Err(e) => return Err(fail(e.to_string())),
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("pkcs11 open".into())
            .spawn(move || {
                let result = Pkcs11::new(&owned)
                    .map_err(|e| match e {
                        CkError::LibraryLoading(e) => format!("cannot load: {e}"),
                        CkError::MissingSymbol(s) => {
                            format!("not a PKCS#11 module (no {s})")
                        }
                        other => format!("not a usable PKCS#11 module: {other}"),
                    })
                    .and_then(|ctx| {
                        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
                        {
                            Ok(())
                            | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {
                                Ok(ctx)
                            }
                            Err(e) => Err(format!("C_Initialize failed: {e}")),
                        }
                    });
                let _ = tx.send(result);
            })
            .map_err(|e| fail(format!("cannot start a thread: {e}")))?;
        match rx.recv_timeout(timeout) {
            Ok(Ok(ctx)) => Ok(Module {
                ctx,
                path: Arc::from(path),
            }),
            Ok(Err(reason)) => Err(fail(reason)),
            Err(_) => Err(fail(format!(
                "loading and C_Initialize did not finish within {timeout:?}"
            ))),
        }
    }

    /// `C_Finalize` then `C_Initialize`: some modules (softhsm) learn of
    /// tokens created by other processes only at initialisation. Every
    /// session of the module ends.
    pub fn reinitialize(&self) -> Result<(), Pkcs11Error> {
        let what = || Pkcs11Error::Load {
            module: self.path.to_path_buf(),
            reason: String::new(),
        };
        let _ = self.ctx.clone().finalize();
        self.ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| match what() {
                Pkcs11Error::Load { module, .. } => Pkcs11Error::Load {
                    module,
                    reason: format!("C_Initialize failed: {e}"),
                },
                other => other,
            })
    }

    /// The module's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn slot(&self, id: u64) -> Result<Slot, Pkcs11Error> {
        self.ctx
            .get_all_slots()
            .map_err(call_error("C_GetSlotList"))?
            .into_iter()
            .find(|s| s.id() == id)
            .ok_or_else(|| Pkcs11Error::Call {
                what: format!("slot {id}"),
                reason: "no such slot".into(),
            })
    }

    /// Every slot, with its token (rescans: tokens come and go).
    pub fn slots(&self) -> Result<Vec<SlotSummary>, Pkcs11Error> {
        let slots = self
            .ctx
            .get_all_slots()
            .map_err(call_error("C_GetSlotList"))?;
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            let info = match self.ctx.get_slot_info(slot) {
                Ok(i) => i,
                // A slot that vanished between the two calls.
                Err(_) => continue,
            };
            let token = if info.token_present() {
                self.ctx
                    .get_token_info(slot)
                    .ok()
                    .filter(|t| t.token_initialized())
                    .map(|t| TokenSummary {
                        label: t.label().trim_end().to_owned(),
                        serial: t.serial_number().trim_end().to_owned(),
                    })
            } else {
                None
            };
            out.push(SlotSummary {
                id: slot.id(),
                description: info.slot_description().trim_end().to_owned(),
                removable: info.removable_device(),
                hardware: info.hardware_slot(),
                token_present: info.token_present(),
                token,
            });
        }
        Ok(out)
    }
}

/// Which mechanisms a token offers for its private keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Mechanisms {
    raw_sign: bool,
    raw_decrypt: bool,
    pkcs_sign: bool,
    ecdsa: bool,
}

impl Mechanisms {
    fn of(ctx: &Pkcs11, slot: Slot) -> Mechanisms {
        // C_GetMechanismInfo per mechanism (CKR_MECHANISM_INVALID when
        // absent): the full list would carry vendor mechanisms.
        let info = |m: MechanismType| ctx.get_mechanism_info(slot, m).ok();
        let raw = info(MechanismType::RSA_X_509);
        let pkcs = info(MechanismType::RSA_PKCS);
        let ec = info(MechanismType::ECDSA);
        Mechanisms {
            raw_sign: raw.as_ref().is_some_and(|i| i.sign()),
            raw_decrypt: raw.as_ref().is_some_and(|i| i.decrypt()),
            pkcs_sign: pkcs.as_ref().is_some_and(|i| i.sign()),
            ecdsa: ec.as_ref().is_some_and(|i| i.sign()),
        }
    }
}

/// The PIN state a token shows in its flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinFlags {
    /// `CKF_USER_PIN_COUNT_LOW` (or `CKF_SO_PIN_COUNT_LOW`).
    pub count_low: bool,
    /// `CKF_USER_PIN_FINAL_TRY`.
    pub final_try: bool,
    /// `CKF_USER_PIN_LOCKED`.
    pub locked: bool,
}

impl PinFlags {
    /// Tries left as `63 Cx` reports them.
    pub fn tries_left(self) -> u8 {
        if self.locked {
            0
        } else if self.final_try {
            1
        } else if self.count_low {
            NOMINAL_TRIES - 1
        } else {
            NOMINAL_TRIES
        }
    }

    /// The status of a failed or unverified PIN: `69 83` when locked,
    /// else `63 Cx`.
    pub fn status(self) -> Status {
        match self.tries_left() {
            0 => Status::AuthBlocked,
            tries_left => Status::VerifyFailed { tries_left },
        }
    }
}

/// The status word for a failed `C_Login` / `C_SetPIN` / `C_InitPIN`:
/// a wrong PIN `63 Cx` (count from the token's flags after the attempt),
/// a locked one `69 83`, a PIN the token cannot take `6A 80`, anything
/// else (token removed, module failure) `64 00`.
pub fn login_failure_status(error: &CkError, flags_after: PinFlags) -> Status {
    match error {
        CkError::Pkcs11(RvError::PinIncorrect, _) => match flags_after.status() {
            // The token says the PIN is wrong; it is not blocked unless
            // it says so (a locked flag alone would already answer 69 83).
            Status::AuthBlocked => Status::AuthBlocked,
            s => s,
        },
        CkError::Pkcs11(RvError::PinLocked | RvError::PinExpired, _) => Status::AuthBlocked,
        CkError::Pkcs11(RvError::PinLenRange | RvError::PinInvalid, _) => Status::IncorrectData,
        CkError::Pkcs11(RvError::UserPinNotInitialized, _) => Status::ConditionsNotSatisfied,
        _ => Status::ExecutionError,
    }
}

/// A PKCS#11 error for logs: the call and the CKR name.
fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("{function}: {rv:?}"),
        other => other.to_string(),
    }
}

/// True for errors that mean the session is gone (token removed, module
/// restarted).
fn session_lost(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::DeviceError,
            _
        )
    )
}

/// The token behind one card: a session (reopened when lost) and the login.
struct TokenState {
    ctx: Pkcs11,
    slot: Slot,
    label: String,
    session: Option<Session>,
    logged_in: bool,
    mechanisms: Mechanisms,
}

impl TokenState {
    fn session(&mut self) -> Result<&Session, CkError> {
        if self.session.is_none() {
            let s = match self.ctx.open_rw_session(self.slot) {
                Ok(s) => s,
                Err(_) => self.ctx.open_ro_session(self.slot)?,
            };
            self.logged_in = false;
            self.session = Some(s);
        }
        self.session.as_ref().ok_or(CkError::NotSupported)
    }

    /// Notes a failure: a lost session is dropped (and with it the login).
    fn note(&mut self, error: &CkError) {
        if session_lost(error) {
            log::info!(
                "token \"{}\": session lost ({})",
                self.label,
                describe(error)
            );
            self.session = None;
            self.logged_in = false;
        } else if matches!(error, CkError::Pkcs11(RvError::UserNotLoggedIn, _)) {
            self.logged_in = false;
        }
    }

    fn flags(&self, so: bool) -> PinFlags {
        match self.ctx.get_token_info(self.slot) {
            Ok(t) if so => PinFlags {
                count_low: t.so_pin_count_low(),
                final_try: t.so_pin_final_try(),
                locked: t.so_pin_locked(),
            },
            Ok(t) => PinFlags {
                count_low: t.user_pin_count_low(),
                final_try: t.user_pin_final_try(),
                locked: t.user_pin_locked(),
            },
            Err(_) => PinFlags::default(),
        }
    }

    fn logout(&mut self) {
        if self.logged_in {
            if let Some(s) = &self.session {
                if let Err(e) = s.logout() {
                    log::debug!("token \"{}\": C_Logout: {e}", self.label);
                }
            }
            self.logged_in = false;
        }
    }

    /// Logs the user in with `pin` (after logging out, so a wrong PIN is
    /// never taken for a session that was already logged in).
    fn login(&mut self, pin: &AuthPin, user: UserType) -> Result<(), Status> {
        self.logout();
        let result = match self.session() {
            Ok(s) => s.login(user, Some(pin)),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                self.logged_in = matches!(user, UserType::User);
                Ok(())
            }
            Err(e) => {
                self.note(&e);
                let so = matches!(user, UserType::So);
                let status = login_failure_status(&e, self.flags(so));
                log::info!(
                    "token \"{}\": login failed ({}): {:04X}",
                    self.label,
                    describe(&e),
                    status.sw()
                );
                Err(status)
            }
        }
    }
}

type Shared = Arc<Mutex<TokenState>>;

fn lock(token: &Shared) -> MutexGuard<'_, TokenState> {
    token.lock().unwrap_or_else(|p| p.into_inner())
}

/// The PIN of a CAC PIN block (FF padding removed), as the token's text.
fn pin_text(block: &[u8]) -> Result<Zeroizing<String>, Status> {
    if block.len() != cac::pin::PIN_BLOCK_LEN {
        return Err(Status::WrongLength);
    }
    let len = block.iter().take_while(|b| **b != 0xFF).count();
    let (pin, pad) = block.split_at(len);
    if pin.is_empty() || pad.iter().any(|b| *b != 0xFF) {
        return Err(Status::IncorrectData);
    }
    let text = std::str::from_utf8(pin).map_err(|_| Status::IncorrectData)?;
    Ok(Zeroizing::new(text.to_owned()))
}

fn pin_of_block(block: &[u8]) -> Result<AuthPin, Status> {
    pin_text(block).map(|t| AuthPin::from(t.as_str()))
}

/// VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER on a token's
/// login (the card-global [`SecurityEnvironment`] of a token's card).
///
/// | command | on the token |
/// |---|---|
/// | VERIFY with a PIN block | `C_Logout`, `C_Login(CKU_USER)` |
/// | VERIFY without data | `90 00` when logged in, else `63 Cx` / `69 83` from the flags |
/// | CHANGE REFERENCE DATA | `C_Login` with the old PIN, `C_SetPIN`; stays logged in |
/// | RESET RETRY COUNTER P1 `00` | `C_Login(CKU_SO)` with the PUK block as SO PIN, `C_InitPIN`, `C_Logout`; P1 `01` (unblock without a new PIN) `6A 81` |
pub struct TokenLogin {
    token: Shared,
}

impl fmt::Debug for TokenLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenLogin(\"{}\")", lock(&self.token).label)
    }
}

impl TokenLogin {
    fn verify(&self, cmd: &CommandView<'_>) -> Result<(), Status> {
        if (cmd.p1(), cmd.p2()) != (0x00, 0x00) {
            return Err(Status::IncorrectP1P2);
        }
        let mut t = lock(&self.token);
        if cmd.data().is_empty() {
            return if t.logged_in {
                Ok(())
            } else {
                Err(t.flags(false).status())
            };
        }
        let pin = pin_of_block(cmd.data())?;
        t.login(&pin, UserType::User)
    }

    fn change(&self, cmd: &CommandView<'_>) -> Result<(), Status> {
        if !matches!(cmd.p1(), 0x00 | 0x01) || cmd.p2() != 0x00 {
            return Err(Status::IncorrectP1P2);
        }
        let (old, new) = cmd
            .data()
            .split_at_checked(cac::pin::PIN_BLOCK_LEN)
            .filter(|(_, new)| new.len() == cac::pin::PIN_BLOCK_LEN)
            .ok_or(Status::WrongLength)?;
        Pin::from_block(new).map_err(|_| Status::IncorrectData)?;
        let (old, new) = (pin_of_block(old)?, pin_of_block(new)?);
        let mut t = lock(&self.token);
        t.login(&old, UserType::User)?;
        let result = t.session().and_then(|s| s.set_pin(&old, &new));
        result.map_err(|e| {
            t.note(&e);
            login_failure_status(&e, t.flags(false))
        })
    }

    fn reset_retry_counter(&self, cmd: &CommandView<'_>) -> Result<(), Status> {
        if cmd.p2() != 0x00 {
            return Err(Status::IncorrectP1P2);
        }
        let data = cmd.data();
        match cmd.p1() {
            0x00 if data.len() == 2 * cac::pin::PIN_BLOCK_LEN => {}
            0x01 => return Err(Status::FunctionNotSupported),
            0x00 => return Err(Status::WrongLength),
            _ => return Err(Status::IncorrectP1P2),
        }
        let (puk, new) = data.split_at(cac::pin::PIN_BLOCK_LEN);
        Pin::from_block(new).map_err(|_| Status::IncorrectData)?;
        let (puk, new) = (pin_of_block(puk)?, pin_of_block(new)?);
        let mut t = lock(&self.token);
        t.login(&puk, UserType::So)?;
        let result = t.session().and_then(|s| s.init_pin(&new));
        if let Some(s) = &t.session {
            let _ = s.logout();
        }
        result.map_err(|e| {
            t.note(&e);
            Status::ExecutionError
        })
    }
}

impl SecurityEnvironment for TokenLogin {
    fn process(&mut self, cmd: &CommandView<'_>) -> Result<(), Status> {
        match cmd.ins() {
            INS_VERIFY => self.verify(cmd),
            INS_CHANGE_REFERENCE_DATA => self.change(cmd),
            INS_RESET_RETRY_COUNTER => self.reset_retry_counter(cmd),
            _ => Err(Status::InsNotSupported),
        }
    }

    fn is_verified(&self) -> bool {
        lock(&self.token).logged_in
    }

    fn tries_left(&self) -> u8 {
        lock(&self.token).flags(false).tries_left()
    }

    fn logout(&mut self) {
        lock(&self.token).logout();
    }
}

/// The payload of a PKCS#1 v1.5 type-1 block `00 01 FF…FF 00 payload`
/// (at least 8 `FF`), exactly as `CKM_RSA_PKCS` would pad it; `None` for
/// anything else.
pub fn type1_payload(block: &[u8]) -> Option<&[u8]> {
    let rest = block.strip_prefix(&[0x00, 0x01])?;
    let ff = rest.iter().take_while(|b| **b == 0xFF).count();
    if ff < 8 {
        return None;
    }
    let (_, rest) = rest.split_at(ff);
    rest.strip_prefix(&[0x00])
}

/// DER `ECDSA-Sig-Value` from the `r ‖ s` a token's `CKM_ECDSA` returns.
pub fn ecdsa_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = Vec::with_capacity(raw.len() + 8);
    for int in [r, s] {
        let zeros = int.iter().take_while(|b| **b == 0).count();
        let mut digits = int.get(zeros..).unwrap_or_default();
        if digits.is_empty() {
            digits = &[0];
        }
        let pad = digits.first().is_some_and(|b| b & 0x80 != 0);
        body.push(0x02);
        push_der_len(&mut body, digits.len() + usize::from(pad));
        if pad {
            body.push(0);
        }
        body.extend_from_slice(digits);
    }
    let mut out = vec![0x30];
    push_der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    Some(out)
}

fn push_der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let bytes = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
}

/// A private key on a token, found by `CKA_ID` for every operation.
pub struct TokenKey {
    token: Shared,
    id: Vec<u8>,
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
    /// The RSA modulus, big-endian without leading zeros (empty for EC).
    modulus: Vec<u8>,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenKey({} id {})",
            self.algorithm,
            self.id
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
        )
    }
}

fn key_error(e: &CkError) -> KeyError {
    match e {
        CkError::Pkcs11(RvError::DataInvalid | RvError::DataLenRange, _)
        | CkError::Pkcs11(RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange, _) => {
            KeyError::InvalidInput
        }
        other => KeyError::Backend(other.to_string()),
    }
}

impl TokenKey {
    fn find(&self, s: &Session) -> Result<Option<ObjectHandle>, CkError> {
        let found = s.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(self.id.clone()),
        ])?;
        Ok(found.into_iter().next())
    }

    fn rsa(
        &self,
        s: &Session,
        m: Mechanisms,
        key: ObjectHandle,
        input: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OpError> {
        let type1 = type1_payload(input);
        let raw = |sign: bool| {
            if sign {
                s.sign(&Mechanism::RsaX509, key, input)
            } else {
                s.decrypt(&Mechanism::RsaX509, key, input)
            }
        };
        let mut result = None;
        if m.raw_sign || m.raw_decrypt {
            // A type-1 block is a signature; prefer the key's sign right,
            // and try the other when the key refuses.
            let sign_first = (type1.is_some() && m.raw_sign) || !m.raw_decrypt;
            let r = match raw(sign_first) {
                Err(CkError::Pkcs11(
                    RvError::KeyFunctionNotPermitted
                    | RvError::KeyTypeInconsistent
                    | RvError::MechanismInvalid,
                    _,
                )) if m.raw_sign && m.raw_decrypt => raw(!sign_first),
                other => other,
            };
            match r {
                // Listed but refused (softhsm's slots.mechanisms filters
                // C_*Init, not C_GetMechanismInfo): as if not offered.
                Err(CkError::Pkcs11(
                    RvError::MechanismInvalid | RvError::FunctionNotSupported,
                    _,
                )) => log::debug!("{self:?}: the token refuses CKM_RSA_X_509"),
                other => result = Some(other),
            }
        }
        let result = match result {
            Some(r) => r,
            None => match (type1, m.pkcs_sign) {
                (Some(payload), true) => s.sign(&Mechanism::RsaPkcs, key, payload),
                _ => {
                    log::info!(
                        "{self:?}: the token offers no raw RSA and the block is not a PKCS#1 type-1 signature block"
                    );
                    return Err(OpError::Key(KeyError::InvalidInput));
                }
            },
        };
        result.map(Zeroizing::new).map_err(OpError::Token)
    }
}

impl KeyHandle for TokenKey {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn private_op(
        &self,
        input: &[u8],
        _rng: &mut dyn CryptoRng,
        out: &mut Vec<u8>,
    ) -> Result<(), KeyError> {
        let mut t = lock(&self.token);
        let m = t.mechanisms;
        let found = t.session().and_then(|s| Ok((self.find(s)?, s)));
        let (key, s) = match found {
            Ok((Some(key), s)) => (key, s),
            Ok((None, _)) => {
                return Err(KeyError::Backend(format!(
                    "{self:?}: no private key with this CKA_ID (not logged in?)"
                )))
            }
            Err(e) => {
                let err = KeyError::Backend(e.to_string());
                t.note(&e);
                return Err(err);
            }
        };
        let result = match self.algorithm {
            KeyAlgorithm::Rsa { .. } => {
                let k = self.algorithm.block_len();
                if input.len() != k {
                    return Err(KeyError::InvalidInput);
                }
                // Not an RSA input: refused here, the way the software
                // keys refuse it, rather than with whatever the token says.
                if self.modulus.len() == k && input >= self.modulus.as_slice() {
                    return Err(KeyError::InvalidInput);
                }
                self.rsa(s, m, key, input).and_then(|r| {
                    if r.len() > k {
                        return Err(OpError::Key(KeyError::Backend(
                            "result longer than the modulus".into(),
                        )));
                    }
                    out.resize(out.len() + (k - r.len()), 0);
                    out.extend_from_slice(&r);
                    Ok(())
                })
            }
            KeyAlgorithm::EcP256 => s
                .sign(&Mechanism::Ecdsa, key, input)
                .map_err(OpError::Token)
                .and_then(|raw| {
                    ecdsa_der(&raw)
                        .ok_or_else(|| OpError::Key(KeyError::Backend("bad ECDSA result".into())))
                })
                .map(|der| out.extend_from_slice(&der)),
            other => Err(OpError::Key(KeyError::Unsupported(other.to_string()))),
        };
        result.map_err(|e| match e {
            OpError::Key(k) => k,
            OpError::Token(e) => {
                log::info!("{self:?}: {}", describe(&e));
                t.note(&e);
                key_error(&e)
            }
        })
    }
}

/// A failed private-key operation: the token's error or ours.
enum OpError {
    Token(CkError),
    Key(KeyError),
}

/// The modulus of an RSA public key, big-endian without leading zeros.
fn rsa_modulus(spki: &spki::SubjectPublicKeyInfoOwned) -> Option<Vec<u8>> {
    use der::Decode;
    let key = pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(
        spki.subject_public_key.raw_bytes(),
    )
    .ok()?;
    let n = key.modulus.as_bytes();
    let zeros = n.iter().take_while(|b| **b == 0).count();
    n.get(zeros..).map(<[u8]>::to_vec)
}

/// The algorithm of a certificate's public key, if the card supports it.
fn algorithm_of(spki: &spki::SubjectPublicKeyInfoOwned) -> Result<KeyAlgorithm, String> {
    use der::Decode;
    const RSA: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
    const EC: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
    const P256: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    if spki.algorithm.oid == RSA {
        let key = pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::from_der(
            spki.subject_public_key.raw_bytes(),
        )
        .map_err(|e| format!("RSA public key: {e}"))?;
        let n = key.modulus.as_bytes();
        let zeros = n.iter().take_while(|b| **b == 0).count();
        let n = n.get(zeros..).unwrap_or_default();
        let top = n.first().copied().unwrap_or(0);
        let bits = n.len() * 8 - top.leading_zeros() as usize;
        match bits {
            1024 | 2048 | 3072 | 4096 => Ok(KeyAlgorithm::Rsa { bits: bits as u16 }),
            other => Err(format!("RSA-{other} is not a supported size")),
        }
    } else if spki.algorithm.oid == EC {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok());
        if curve == Some(P256) {
            Ok(KeyAlgorithm::EcP256)
        } else {
            Err("only the P-256 curve is supported".into())
        }
    } else {
        Err(format!(
            "public key algorithm {} is not supported",
            spki.algorithm.oid
        ))
    }
}

/// A card built from a token, and what went into it.
#[derive(Debug)]
pub struct TokenCard {
    /// The card (its security environment and keys are the token's).
    pub card: Card,
    /// The token.
    pub token: TokenSummary,
    /// `CKA_ID` and `CKA_LABEL` of each certificate, in PKI applet order.
    pub identities: Vec<(Vec<u8>, String)>,
}

/// Builds a card from the token in slot `slot_id`: one PKI applet per
/// X.509 certificate with a private key of the same `CKA_ID` (ordered by
/// `CKA_ID`, at most 16). On a token that hides private keys until login,
/// a public key object with the `CKA_ID` stands for the key pair.
pub fn load_token(
    module: &Module,
    slot_id: u64,
    rng: impl CryptoRng + Send + 'static,
) -> Result<TokenCard, Pkcs11Error> {
    let slot = module.slot(slot_id)?;
    let ctx = &module.ctx;
    let info = ctx
        .get_token_info(slot)
        .map_err(call_error(format!("slot {slot_id}: C_GetTokenInfo")))?;
    let summary = TokenSummary {
        label: info.label().trim_end().to_owned(),
        serial: info.serial_number().trim_end().to_owned(),
    };
    let what = |call: &str| format!("token \"{}\": {call}", summary.label);
    let session = match ctx.open_rw_session(slot) {
        Ok(s) => s,
        Err(_) => ctx
            .open_ro_session(slot)
            .map_err(call_error(what("C_OpenSession")))?,
    };
    let ids_of = |class: ObjectClass| -> Result<BTreeSet<Vec<u8>>, Pkcs11Error> {
        let found = session
            .find_objects(&[Attribute::Class(class)])
            .map_err(call_error(what("C_FindObjects")))?;
        let mut ids = BTreeSet::new();
        for h in found {
            if let Ok(attrs) = session.get_attributes(h, &[AttributeType::Id]) {
                for a in attrs {
                    if let Attribute::Id(id) = a {
                        ids.insert(id);
                    }
                }
            }
        }
        Ok(ids)
    };
    let private_ids = ids_of(ObjectClass::PRIVATE_KEY)?;
    let public_ids = if info.login_required() {
        ids_of(ObjectClass::PUBLIC_KEY)?
    } else {
        BTreeSet::new()
    };
    let certs = session
        .find_objects(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
        ])
        .map_err(call_error(what("C_FindObjects")))?;
    let mut chosen = Vec::new();
    for h in certs {
        let attrs = session
            .get_attributes(
                h,
                &[
                    AttributeType::Id,
                    AttributeType::Value,
                    AttributeType::Label,
                ],
            )
            .map_err(call_error(what("C_GetAttributeValue")))?;
        let (mut id, mut value, mut label) = (None, None, String::new());
        for a in attrs {
            match a {
                Attribute::Id(v) => id = Some(v),
                Attribute::Value(v) => value = Some(v),
                Attribute::Label(v) => label = String::from_utf8_lossy(&v).into_owned(),
                _ => {}
            }
        }
        let (Some(id), Some(der)) = (id, value) else {
            continue;
        };
        if !private_ids.contains(&id) && !public_ids.contains(&id) {
            log::debug!("{}: certificate \"{label}\" has no key pair", what("scan"));
            continue;
        }
        chosen.push((id, label, der));
    }
    chosen.sort();
    chosen.truncate(cac::card::MAX_IDENTITIES);

    let token = Arc::new(Mutex::new(TokenState {
        ctx: ctx.clone(),
        slot,
        label: summary.label.clone(),
        session: Some(session),
        logged_in: false,
        mechanisms: Mechanisms::of(ctx, slot),
    }));
    let mechanisms = lock(&token).mechanisms;
    let mut builder = Card::builder(PinPolicy::new(Pin::new("00000000").map_err(|e| {
        Pkcs11Error::Call {
            what: what("PIN"),
            reason: e.to_string(),
        }
    })?))
    .security(Box::new(TokenLogin {
        token: Arc::clone(&token),
    }));
    let mut identities = Vec::new();
    for (id, label, der) in chosen {
        use der::{Decode, Encode};
        let parsed = match x509_cert::Certificate::from_der(&der) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("{}: certificate \"{label}\": {e}; skipped", what("scan"));
                continue;
            }
        };
        let spki = parsed.tbs_certificate().subject_public_key_info();
        let algorithm = match algorithm_of(spki) {
            Ok(KeyAlgorithm::EcP256) if !mechanisms.ecdsa => {
                log::warn!(
                    "{}: \"{label}\": the token has no CKM_ECDSA; skipped",
                    what("scan")
                );
                continue;
            }
            Ok(a) => a,
            Err(e) => {
                log::warn!("{}: certificate \"{label}\": {e}; skipped", what("scan"));
                continue;
            }
        };
        let Ok(spki_der) = spki.to_der() else {
            continue;
        };
        let key = TokenKey {
            token: Arc::clone(&token),
            id: id.clone(),
            algorithm,
            spki: spki_der,
            modulus: rsa_modulus(spki).unwrap_or_default(),
        };
        builder = builder.identity(Identity::new(der, Arc::new(key)));
        identities.push((id, label));
    }
    if identities.is_empty() {
        return Err(Pkcs11Error::NoIdentities {
            token: summary.label,
        });
    }
    let card = builder.build(rng).map_err(|e| Pkcs11Error::Call {
        what: what("building the card"),
        reason: e.to_string(),
    })?;
    Ok(TokenCard {
        card,
        token: summary,
        identities,
    })
}

/// Which tokens a [`Watcher`] mirrors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Tokens with this label (any slot).
    Label(String),
    /// The token in this slot ID.
    Slot(u64),
    /// Every token in a removable slot (`CKF_REMOVABLE_DEVICE`).
    Removable,
}

impl Selection {
    fn matches(&self, slot: &SlotSummary, token: &TokenSummary) -> bool {
        match self {
            Selection::Label(l) => &token.label == l,
            Selection::Slot(id) => slot.id == *id,
            Selection::Removable => slot.removable,
        }
    }
}

/// What one [`Watcher::poll`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A token's card went into a reader.
    Inserted {
        /// The reader.
        reader: ReaderId,
        /// The module's slot ID.
        slot: u64,
        /// The token.
        token: TokenSummary,
        /// Certificates mirrored.
        identities: usize,
    },
    /// A token left; its card was removed from the reader.
    Removed {
        /// The reader.
        reader: ReaderId,
        /// The module's slot ID.
        slot: u64,
        /// The token.
        token: TokenSummary,
    },
    /// A token matched but gives no card (reported once per appearance).
    Skipped {
        /// The module's slot ID.
        slot: u64,
        /// The token.
        token: TokenSummary,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Inserted {
                reader,
                slot,
                token,
                identities,
            } => write!(
                f,
                "token \"{}\" (serial {}, slot {slot}) inserted in reader {}: {identities} certificate(s)",
                token.label, token.serial, reader.0
            ),
            Change::Removed {
                reader,
                slot,
                token,
            } => write!(
                f,
                "token \"{}\" (slot {slot}) removed from reader {}",
                token.label, reader.0
            ),
            Change::Skipped {
                slot,
                token,
                reason,
            } => write!(f, "token \"{}\" (slot {slot}) skipped: {reason}", token.label),
        }
    }
}

struct Bay {
    reader: ReaderId,
    holds: Option<(u64, TokenSummary)>,
}

/// Turns a module's token insertions and removals into card insertions
/// and removals in a fixed set of readers ("bays"): a token that appears
/// takes the first empty bay, a token that leaves empties its bay. Drive
/// it with [`Watcher::poll`] (bounded polling: PKCS#11 slot events are
/// optional and softhsm has none) or [`Watcher::run`].
pub struct Watcher {
    module: Module,
    selection: Selection,
    bays: Vec<Bay>,
    /// Tokens that gave no card: when, and why (reported once per reason).
    skipped: std::collections::BTreeMap<(u64, TokenSummary), (std::time::Instant, String)>,
    last_reinit: Option<std::time::Instant>,
}

/// While no token is mirrored, the module is re-initialised this often so
/// that tokens it only finds at initialisation show up.
const REINIT_WHEN_IDLE: Duration = Duration::from_secs(2);

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("module", &self.module)
            .field("selection", &self.selection)
            .field("bays", &self.bays.len())
            .finish()
    }
}

impl Watcher {
    /// A watcher filling `readers` (empty readers of a set) with the
    /// tokens `selection` picks.
    pub fn new(module: Module, selection: Selection, readers: Vec<ReaderId>) -> Watcher {
        Watcher {
            module,
            selection,
            bays: readers
                .into_iter()
                .map(|reader| Bay {
                    reader,
                    holds: None,
                })
                .collect(),
            skipped: std::collections::BTreeMap::new(),
            last_reinit: None,
        }
    }

    /// Rescans the module's slots once and applies the differences.
    /// While no token is mirrored, the module is re-initialised every
    /// 2 s first (no session of it is open then), for modules such as
    /// softhsm that only see other processes' new tokens at
    /// `C_Initialize`.
    pub fn poll(&mut self, set: &ReaderSet) -> Result<Vec<Change>, Pkcs11Error> {
        if self.bays.iter().all(|b| b.holds.is_none()) {
            let due = self
                .last_reinit
                .is_none_or(|t| t.elapsed() >= REINIT_WHEN_IDLE);
            if due && self.last_reinit.is_some() {
                self.module.reinitialize()?;
            }
            if due {
                self.last_reinit = Some(std::time::Instant::now());
            }
        }
        let present: Vec<(u64, TokenSummary)> = self
            .module
            .slots()?
            .into_iter()
            .filter_map(|s| {
                let t = s.token.clone()?;
                self.selection.matches(&s, &t).then_some((s.id, t))
            })
            .collect();
        let mut changes = Vec::new();
        for bay in &mut self.bays {
            let Some(held) = &bay.holds else { continue };
            let still = present.contains(held) && set.card_present(bay.reader).unwrap_or(false);
            if !still {
                let (slot, token) = held.clone();
                let _ = set.remove_card(bay.reader);
                bay.holds = None;
                changes.push(Change::Removed {
                    reader: bay.reader,
                    slot,
                    token,
                });
            }
        }
        self.skipped.retain(|s, _| present.contains(s));
        for p in present {
            let retry_due = self
                .skipped
                .get(&p)
                .is_none_or(|(t, _)| t.elapsed() >= REINIT_WHEN_IDLE);
            if self.bays.iter().any(|b| b.holds.as_ref() == Some(&p)) || !retry_due {
                continue;
            }
            let (slot, token) = p.clone();
            let Some(bay) = self.bays.iter_mut().find(|b| b.holds.is_none()) else {
                Self::skip(&mut self.skipped, &mut changes, p, "no free reader".into());
                continue;
            };
            match load_token(&self.module, slot, rand_core::UnwrapErr(getrandom::SysRng)) {
                Ok(tc) => {
                    let identities = tc.identities.len();
                    match set.insert_card(bay.reader, tc.card) {
                        Ok(()) => {
                            bay.holds = Some(p);
                            changes.push(Change::Inserted {
                                reader: bay.reader,
                                slot,
                                token,
                                identities,
                            });
                        }
                        Err(e) => Self::skip(&mut self.skipped, &mut changes, p, e.to_string()),
                    }
                }
                // Retried every 2 s: a token may still be being provisioned.
                Err(e) => Self::skip(&mut self.skipped, &mut changes, p, e.to_string()),
            }
        }
        Ok(changes)
    }

    fn skip(
        skipped: &mut std::collections::BTreeMap<(u64, TokenSummary), (std::time::Instant, String)>,
        changes: &mut Vec<Change>,
        p: (u64, TokenSummary),
        reason: String,
    ) {
        let now = std::time::Instant::now();
        let repeat = skipped.get(&p).is_some_and(|(_, r)| *r == reason);
        if !repeat {
            changes.push(Change::Skipped {
                slot: p.0,
                token: p.1.clone(),
                reason: reason.clone(),
            });
        }
        skipped.insert(p, (now, reason));
    }

    /// Polls every `interval` until `stop` is set, reporting each change
    /// to `report`. A failing scan is reported through `on_error` and
    /// retried at the next tick.
    pub fn run(
        &mut self,
        set: &ReaderSet,
        stop: &AtomicBool,
        interval: Duration,
        mut report: impl FnMut(&Change),
        mut on_error: impl FnMut(&Pkcs11Error),
    ) {
        while !stop.load(Ordering::Relaxed) {
            match self.poll(set) {
                Ok(changes) => changes.iter().for_each(&mut report),
                Err(e) => on_error(&e),
            }
            let step = Duration::from_millis(50);
            let mut left = interval;
            while !left.is_zero() && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(left.min(step));
                left = left.saturating_sub(step);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn type1_blocks_are_unpadded_exactly() {
        let digest_info = [0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86];
        let mut block = vec![0x00, 0x01];
        block.extend([0xFF; 10]);
        block.push(0x00);
        block.extend_from_slice(&digest_info);
        assert_eq!(type1_payload(&block), Some(&digest_info[..]));
        // An empty payload is still a type-1 block.
        let mut empty = vec![0x00, 0x01];
        empty.extend([0xFF; 8]);
        empty.push(0x00);
        assert_eq!(type1_payload(&empty), Some(&[][..]));

        // Fewer than 8 FF bytes, a type-2 block, a missing separator, a
        // non-FF padding byte, a block without the leading zero.
        let mut short = vec![0x00, 0x01];
        short.extend([0xFF; 7]);
        short.extend([0x00, 0xAA]);
        let mut type2 = block.clone();
        type2[1] = 0x02;
        let mut no_sep = vec![0x00, 0x01];
        no_sep.extend([0xFF; 20]);
        let mut bad_pad = block.clone();
        bad_pad[5] = 0xFE;
        for b in [short, type2, no_sep, block[1..].to_vec(), vec![]] {
            assert_eq!(type1_payload(&b), None, "{b:02X?}");
        }
        // A non-FF byte ends the padding; it is not the 00 separator.
        assert_eq!(type1_payload(&bad_pad), None);
    }

    #[test]
    fn ecdsa_signatures_become_der() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero
        raw[63] = 0x05; // s is small
        let der = ecdsa_der(&raw).unwrap();
        let mut want = vec![0x30, 0x26, 0x02, 0x21, 0x00, 0x80];
        want.extend([0u8; 31]);
        want.extend([0x02, 0x01, 0x05]);
        assert_eq!(der, want);
        assert_eq!(
            ecdsa_der(&[0u8; 4]).unwrap(),
            [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00]
        );
        assert_eq!(ecdsa_der(&[1, 2, 3]), None);
        assert_eq!(ecdsa_der(&[]), None);
        // Long form for a large integer pair.
        let big = vec![0x7F; 200];
        let der = ecdsa_der(&big).unwrap();
        assert_eq!(&der[..3], [0x30, 0x81, 0xCC]);
        assert_eq!(&der[3..6], [0x02, 0x64, 0x7F]);
    }

    fn ck(rv: RvError) -> CkError {
        CkError::Pkcs11(rv, Function::Login)
    }

    #[test]
    fn ckr_codes_map_to_status_words() {
        let none = PinFlags::default();
        let low = PinFlags {
            count_low: true,
            ..PinFlags::default()
        };
        let last = PinFlags {
            count_low: true,
            final_try: true,
            locked: false,
        };
        let locked = PinFlags {
            locked: true,
            ..PinFlags::default()
        };
        let sw = |e: RvError, f: PinFlags| login_failure_status(&ck(e), f).sw();
        assert_eq!(sw(RvError::PinIncorrect, none), 0x63C3);
        assert_eq!(sw(RvError::PinIncorrect, low), 0x63C2);
        assert_eq!(sw(RvError::PinIncorrect, last), 0x63C1);
        assert_eq!(sw(RvError::PinIncorrect, locked), 0x6983);
        assert_eq!(sw(RvError::PinLocked, none), 0x6983);
        assert_eq!(sw(RvError::PinLenRange, none), 0x6A80);
        assert_eq!(sw(RvError::PinInvalid, none), 0x6A80);
        assert_eq!(sw(RvError::UserPinNotInitialized, none), 0x6985);
        assert_eq!(sw(RvError::DeviceRemoved, none), 0x6400);
        assert_eq!(sw(RvError::GeneralError, none), 0x6400);
        // Status of an unverified PIN from the flags alone.
        assert_eq!(none.status().sw(), 0x63C3);
        assert_eq!(last.status().sw(), 0x63C1);
        assert_eq!(locked.status().sw(), 0x6983);
        assert_eq!(locked.tries_left(), 0);
    }

    #[test]
    fn pin_blocks_lose_their_padding() {
        assert_eq!(pin_text(b"1234\xFF\xFF\xFF\xFF").unwrap().as_str(), "1234");
        assert_eq!(pin_text(b"12345678").unwrap().as_str(), "12345678");
        assert_eq!(pin_text(b"1234").unwrap_err(), Status::WrongLength);
        assert_eq!(
            pin_text(b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF").unwrap_err(),
            Status::IncorrectData
        );
        assert_eq!(
            pin_text(b"12\xFF4\xFF\xFF\xFF\xFF").unwrap_err(),
            Status::IncorrectData
        );
        assert_eq!(
            pin_text(b"\xC3\x28\xFF\xFF\xFF\xFF\xFF\xFF").unwrap_err(),
            Status::IncorrectData
        );
    }

    #[test]
    fn missing_and_foreign_modules_fail_cleanly() {
        let e = Module::open(
            Path::new("/nonexistent/libnothing.so"),
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/libnothing.so"), "{e}");
        let tmp = tempfile::tempdir().unwrap();
        let fake = tmp.path().join("fake.so");
        std::fs::write(&fake, b"this is not an ELF library").unwrap();
        let e = Module::open(&fake, Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("cannot load"), "{e}");
        // A real shared library that is not a PKCS#11 module.
        let libz = Path::new("/lib/x86_64-linux-gnu/libz.so.1");
        let e = Module::open(libz, Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("not a PKCS#11 module"), "{e}");
        // A directory.
        let e = Module::open(tmp.path(), Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("not a file"), "{e}");
    }
}
