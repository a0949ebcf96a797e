//! Hardware mode (`use_hw=yes|removable`, `vcard_emul_init(NULL)`): the
//! PKCS#11 modules an NSS database lists in its `pkcs11.txt`, loaded
//! through `vcac_sources::pkcs11`, their slots mirrored as readers.
//!
//! What libcacard 2.8 does, and so what this does:
//!
//! * every module of the list except NSS's own softoken (the entry
//!   flagged `internal`) is loaded; one that cannot be loaded is skipped
//!   with a message, the others still count;
//! * every removable slot (`use_hw=removable`), or every removable
//!   hardware slot (`CKF_HW_SLOT`, `use_hw=yes`), becomes a reader named
//!   after the slot description, except coolkey's phantom `E-Gate 0 0`;
//! * per slot, in module order then slot order: READER_INSERT, then for a
//!   slot with a token CARD_INSERT when the token has a certificate with
//!   a key pair, else CARD_REMOVE (libcacard inserts its NULL card);
//! * one thread per module follows the slots (polling once a second: a
//!   bounded wait, which works for modules without `C_WaitForSlotEvent`):
//!   a token that leaves is CARD_REMOVE, one that arrives is CARD_INSERT
//!   (or CARD_REMOVE when it gives no card), a new slot is a new reader;
//! * no `pkcs11.txt` in the database: no modules, zero readers, and
//!   `vcard_emul_init` still succeeds (as NSS does).
//!
//! Differences (each pinned by `tests/c_abi.rs` against libcacard 2.8.0):
//! a certificate without a private key of the same `CKA_ID` is not
//! mirrored (libcacard mirrors every certificate object; such an applet
//! could never sign), and PKI applets follow `CKA_ID` order (libcacard:
//! the token's object order); VERIFY, SIGN and bad-input answers are the
//! `vcac_sources::pkcs11` card's (`63 Cx` from the token's PIN flags,
//! `69 82`, `6A 80`); a token that leaves is noticed even when the module
//! reports no slot event (SoftHSM); `parameters=` is not passed to the
//! module (`C_Initialize` gets no reserved argument). A module listed
//! twice is loaded once, as NSS does.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use vcac_sources::pkcs11::{self, Module, SlotSummary, TokenSummary};

use crate::card::VCard;
use crate::options::UseHw;
use crate::reader::{self, VReader};

/// Largest `pkcs11.txt` read (NSS writes a few hundred bytes per module).
pub(crate) const MAX_MODULE_LIST: u64 = 1 << 20;
/// Most modules loaded from one list.
pub(crate) const MAX_MODULES: usize = 32;
/// Most readers hardware mode creates, over all modules.
pub(crate) const MAX_READERS: usize = 64;
/// Longest a module may take to load and initialise.
const MODULE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest init waits for one module's first slot scan.
const SCAN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a module's slots are looked at again.
const POLL: Duration = Duration::from_secs(1);

/// The slot libcacard skips (coolkey's emulated reader).
const BAD_SLOT: &str = "E-Gate 0 0";

/// One module entry of `pkcs11.txt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleEntry {
    /// `name=`.
    pub name: String,
    /// `library=` (empty for NSS's internal module).
    pub library: String,
    /// `parameters=`.
    pub parameters: String,
    /// The `Flags=` list of `NSS=`, lower-cased.
    pub flags: Vec<String>,
}

impl ModuleEntry {
    /// True for entries that are not token modules to load: NSS's
    /// softoken (`internal`), module databases (`moduleDB`,
    /// `moduleDBOnly`), and entries without a library.
    pub fn is_internal(&self) -> bool {
        self.library.is_empty()
            || self
                .flags
                .iter()
                .any(|f| matches!(f.as_str(), "internal" | "moduledb" | "moduledbonly"))
    }
}

/// A value with one pair of matching quotes removed.
fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

/// The `Flags=` list inside an `NSS=` value.
fn nss_flags(v: &str) -> Vec<String> {
    v.split_ascii_whitespace()
        .find_map(|w| {
            w.get(..6)
                .filter(|k| k.eq_ignore_ascii_case("flags="))
                .and_then(|_| w.get(6..))
        })
        .map(|list| {
            list.split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

/// Parses NSS's `pkcs11.txt`: entries of `key=value` lines separated by
/// blank lines, `#` comments, values optionally quoted. Lines that are
/// not `library=`, `name=`, `parameters=` or `NSS=` are ignored, as are
/// entries without `library=` (NSS is as lenient: a garbled file loads
/// no module).
pub fn parse_module_list(text: &str) -> Vec<ModuleEntry> {
    let mut out = Vec::new();
    let mut cur: Option<ModuleEntry> = None;
    let empty = || ModuleEntry {
        name: String::new(),
        library: String::new(),
        parameters: String::new(),
        flags: Vec::new(),
    };
    let mut seen_library = false;
    for line in text.lines().map(str::trim).chain(core::iter::once("")) {
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if let Some(e) = cur.take() {
                if seen_library {
                    out.push(e);
                }
            }
            seen_library = false;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let e = cur.get_or_insert_with(empty);
        match key.trim() {
            "library" => {
                e.library = unquote(value).to_owned();
                seen_library = true;
            }
            "name" => e.name = unquote(value).to_owned(),
            "parameters" => e.parameters = unquote(value).to_owned(),
            "NSS" => e.flags = nss_flags(value),
            _ => {}
        }
    }
    out
}

/// Reads `DIR/pkcs11.txt`. A missing file is an empty list.
pub(crate) fn read_module_list(dir: &Path) -> Result<Vec<ModuleEntry>, String> {
    use std::io::Read;
    let path = dir.join("pkcs11.txt");
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_MODULE_LIST + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_MODULE_LIST {
        return Err(format!(
            "{}: larger than {MAX_MODULE_LIST} bytes",
            path.display()
        ));
    }
    Ok(parse_module_list(&String::from_utf8_lossy(&bytes)))
}

/// Set by `vcard_emul_finalize`: the module threads end.
static STOP: AtomicBool = AtomicBool::new(false);
/// Readers created so far (bounded by [`MAX_READERS`]).
static READERS_MADE: AtomicUsize = AtomicUsize::new(0);

/// Asks the module threads to stop (they end within one poll).
pub(crate) fn stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Which slots become readers.
fn selected(slot: &SlotSummary, use_hw: UseHw) -> bool {
    slot.removable && (use_hw == UseHw::Removable || slot.hardware) && slot.description != BAD_SLOT
}

/// A mirrored slot: its reader and what it holds.
struct Mirrored {
    id: u64,
    reader: Arc<VReader>,
    /// The token last seen (`None`: no token, or an uninitialised one).
    token: Option<TokenSummary>,
    present: bool,
}

/// One module's slots and readers.
struct Follower {
    module: Module,
    name: String,
    use_hw: UseHw,
    slots: Vec<Mirrored>,
    failing: bool,
}

impl Follower {
    /// The card of the token in `slot`, or `None` (no certificate with a
    /// key, or the token cannot be read).
    fn mirror(&self, slot: u64) -> Option<Arc<VCard>> {
        match pkcs11::load_token(&self.module, slot, rand_core::UnwrapErr(getrandom::SysRng)) {
            Ok(tc) => Some(VCard::from_cac(tc.card, true)),
            Err(e) => {
                eprintln!("libcacard: module \"{}\": {e}", self.name);
                None
            }
        }
    }

    /// Looks at the slots once and turns differences into events.
    fn scan(&mut self) {
        let slots = match self.module.slots() {
            Ok(s) => {
                self.failing = false;
                s
            }
            Err(e) => {
                if !self.failing {
                    eprintln!("libcacard: module \"{}\": {e}", self.name);
                }
                self.failing = true;
                return;
            }
        };
        for s in &slots {
            if !selected(s, self.use_hw) {
                continue;
            }
            let idx = match self.slots.iter().position(|m| m.id == s.id) {
                Some(i) => i,
                None => {
                    if READERS_MADE.fetch_add(1, Ordering::SeqCst) >= MAX_READERS {
                        READERS_MADE.fetch_sub(1, Ordering::SeqCst);
                        continue;
                    }
                    let r = VReader::new(s.description.as_bytes(), core::ptr::null_mut(), None);
                    reader::add_reader(&r);
                    self.slots.push(Mirrored {
                        id: s.id,
                        reader: r,
                        token: None,
                        present: false,
                    });
                    self.slots.len() - 1
                }
            };
            let (was_present, was_token) = match self.slots.get(idx) {
                Some(m) => (m.present, m.token.clone()),
                None => continue,
            };
            if was_present == s.token_present && was_token == s.token {
                continue;
            }
            let card = if s.token_present {
                s.token.as_ref().and_then(|_| self.mirror(s.id))
            } else {
                None
            };
            let Some(m) = self.slots.get_mut(idx) else {
                continue;
            };
            let had = m.reader.card().is_some();
            if had {
                m.reader.insert_card(None);
            }
            match card {
                Some(c) => m.reader.insert_card(Some(c)),
                // A token that gives no card: libcacard inserts its NULL
                // card, which reads as a removal.
                None if s.token_present && !had => m.reader.insert_card(None),
                None => {}
            }
            m.present = s.token_present;
            m.token = s.token.clone();
        }
        // Slots the module no longer lists lose their card.
        for m in &mut self.slots {
            if !slots.iter().any(|s| s.id == m.id) && m.present {
                if m.reader.card().is_some() {
                    m.reader.insert_card(None);
                }
                m.present = false;
                m.token = None;
            }
        }
    }

    fn run(mut self) {
        while !STOP.load(Ordering::SeqCst) {
            let mut left = POLL;
            let step = Duration::from_millis(100);
            while !left.is_zero() && !STOP.load(Ordering::SeqCst) {
                std::thread::sleep(left.min(step));
                left = left.saturating_sub(step);
            }
            if STOP.load(Ordering::SeqCst) {
                return;
            }
            self.scan();
        }
    }
}

/// Loads the modules `DIR/pkcs11.txt` lists and mirrors their slots.
/// Events for the slots present now are queued before this returns (a
/// module whose first scan takes longer than 10 s adds its readers
/// later). Only an unreadable module list is an error.
pub(crate) fn start_tokens(dir: &Path, use_hw: UseHw) -> Result<(), String> {
    STOP.store(false, Ordering::SeqCst);
    let entries = read_module_list(dir)?;
    let mut loaded: Vec<String> = Vec::new();
    for entry in entries.into_iter().filter(|e| !e.is_internal()) {
        if loaded.contains(&entry.library) {
            continue;
        }
        if loaded.len() >= MAX_MODULES {
            eprintln!(
                "libcacard: more than {MAX_MODULES} modules listed; \"{}\" and later ones skipped",
                entry.name
            );
            break;
        }
        loaded.push(entry.library.clone());
        if !entry.parameters.is_empty() {
            eprintln!(
                "libcacard: module \"{}\": parameters= is not passed to the module",
                entry.name
            );
        }
        let module = match Module::open(Path::new(&entry.library), MODULE_TIMEOUT) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("libcacard: module \"{}\" skipped: {e}", entry.name);
                continue;
            }
        };
        let follower = Follower {
            module,
            name: entry.name.clone(),
            use_hw,
            slots: Vec::new(),
            failing: false,
        };
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("cacard tokens".into())
            .spawn(move || {
                let mut f = follower;
                f.scan();
                let _ = done_tx.send(());
                f.run();
            });
        match spawned {
            Ok(_) => {
                if done_rx.recv_timeout(SCAN_TIMEOUT).is_err() {
                    eprintln!(
                        "libcacard: module \"{}\": no slot list within {SCAN_TIMEOUT:?}; its readers come later",
                        entry.name
                    );
                }
            }
            Err(e) => eprintln!(
                "libcacard: module \"{}\": cannot start a thread: {e}",
                entry.name
            ),
        }
    }
    Ok(())
}

/// PC/SC passthrough (`hw_type=PASSTHRU`, `passthru`): every reader of
/// the host's pcscd becomes a reader of the same name whose card is the
/// real one, its APDUs relayed unchanged (`vcac_sources::pcsc_relay`).
/// READER_INSERT per reader, then CARD_INSERT for those holding a card
/// and CARD_REMOVE for the others (libcacard's order), all queued before
/// this returns; a thread follows insertions and removals
/// with `SCardGetStatusChange` (1 s ticks). Readers plugged in later are
/// not added. No pcscd is an error.
#[cfg(feature = "pcsc")]
pub(crate) fn start_passthru() -> Result<(), String> {
    use pcsc_watch::Passthru;
    STOP.store(false, Ordering::SeqCst);
    let mut p = Passthru::open()?;
    p.scan(Duration::ZERO);
    std::thread::Builder::new()
        .name("cacard pcsc".into())
        .spawn(move || {
            while !STOP.load(Ordering::SeqCst) {
                p.scan(POLL);
            }
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    Ok(())
}

#[cfg(feature = "pcsc")]
mod pcsc_watch {
    use std::ffi::CString;
    use std::sync::Arc;
    use std::time::Duration;

    use pcsc::{Context, ReaderState, Scope, State};
    use vcac_sources::pcsc_relay::{RelayCard, RelayOptions};

    use crate::card::VCard;
    use crate::reader::{self, VReader};

    struct Relayed {
        reader: Arc<VReader>,
        alive: Option<Arc<std::sync::atomic::AtomicBool>>,
    }

    /// The host's readers and their mirrors.
    pub(super) struct Passthru {
        ctx: Context,
        states: Vec<ReaderState>,
        mirrors: Vec<Relayed>,
        /// Before the first scan: empty readers then queue CARD_REMOVE,
        /// as libcacard's first status pass does.
        first: bool,
    }

    impl Passthru {
        pub(super) fn open() -> Result<Passthru, String> {
            let ctx = Context::establish(Scope::User).map_err(|e| format!("PC/SC: {e}"))?;
            let names = match ctx.list_readers_owned() {
                Ok(n) => n,
                Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
                Err(e) => return Err(format!("PC/SC: listing readers: {e}")),
            };
            let mut states = Vec::new();
            let mut mirrors = Vec::new();
            for name in names.into_iter().take(super::MAX_READERS) {
                let r = VReader::new(name.as_bytes(), core::ptr::null_mut(), None);
                reader::add_reader(&r);
                states.push(ReaderState::new(name, State::UNAWARE));
                mirrors.push(Relayed {
                    reader: r,
                    alive: None,
                });
            }
            Ok(Passthru {
                ctx,
                states,
                mirrors,
                first: true,
            })
        }

        fn name(state: &ReaderState) -> String {
            state.name().to_string_lossy().into_owned()
        }

        /// Waits up to `wait` for a change and applies it.
        pub(super) fn scan(&mut self, wait: Duration) {
            if self.states.is_empty() {
                std::thread::sleep(wait);
                return;
            }
            match self.ctx.get_status_change(wait, &mut self.states) {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                Err(e) => {
                    for m in &mut self.mirrors {
                        if m.alive.take().is_some() {
                            m.reader.insert_card(None);
                        }
                    }
                    eprintln!("libcacard: PC/SC: {e}; retrying");
                    std::thread::sleep(wait.max(Duration::from_millis(500)));
                    if let Ok(c) = Context::establish(Scope::User) {
                        self.ctx = c;
                        for s in &mut self.states {
                            let name: CString = s.name().to_owned();
                            *s = ReaderState::new(name, State::UNAWARE);
                        }
                    }
                    return;
                }
            }
            for (state, m) in self.states.iter_mut().zip(&mut self.mirrors) {
                state.sync_current_state();
                let ev = state.event_state();
                let dead = m
                    .alive
                    .as_ref()
                    .is_some_and(|a| !a.load(std::sync::atomic::Ordering::Relaxed));
                let card_there = ev.contains(State::PRESENT)
                    && !ev.intersects(State::MUTE | State::UNKNOWN | State::UNAVAILABLE);
                if m.alive.is_some() && (dead || !card_there) {
                    m.alive = None;
                    m.reader.insert_card(None);
                }
                if card_there && m.alive.is_none() && !dead {
                    let name = Self::name(state);
                    match RelayCard::connect(&name, &RelayOptions::default()) {
                        Ok(card) => {
                            m.alive = Some(card.alive_flag());
                            m.reader
                                .insert_card(Some(VCard::from_relay(Box::new(card))));
                        }
                        Err(e) => eprintln!("libcacard: {e}"),
                    }
                }
                if self.first && m.alive.is_none() {
                    m.reader.insert_card(None);
                }
            }
            self.first = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODUTIL: &str = "library=\nname=NSS Internal PKCS #11 Module\n\
parameters=configdir='sql:db' certPrefix='' keyPrefix='' secmod='' flags= updatedir='' \n\
NSS=Flags=internal,critical trustOrder=75 cipherOrder=100 slotParams=(1={slotFlags=[ECC,RSA] askpw=any timeout=30})\n\
\n\
library=/usr/lib/softhsm/libsofthsm2.so\n\
name=SoftHSM PKCS#11\n\
\n\n";

    #[test]
    fn modutil_lists_parse_and_the_softoken_is_skipped() {
        let list = parse_module_list(MODUTIL);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "NSS Internal PKCS #11 Module");
        assert_eq!(list[0].library, "");
        assert_eq!(list[0].flags, ["internal", "critical"]);
        assert!(list[0].parameters.starts_with("configdir='sql:db'"));
        assert!(list[0].is_internal());
        assert_eq!(
            list[1],
            ModuleEntry {
                name: "SoftHSM PKCS#11".into(),
                library: "/usr/lib/softhsm/libsofthsm2.so".into(),
                parameters: String::new(),
                flags: Vec::new(),
            }
        );
        assert!(!list[1].is_internal());
    }

    #[test]
    fn lenient_like_nss() {
        // CRLF, indentation, quotes, comments, a last entry without a
        // blank line after it, unknown keys.
        let text = "# comment\r\n  library=\"/a b/x.so\"\r\n  name='X'\r\nfoo=bar\r\n\r\n\
library=/y.so\nNSS=trustOrder=1 flags=moduleDBOnly\n\nname=no library\n\nlibrary=/z.so";
        let list = parse_module_list(text);
        let libs: Vec<_> = list.iter().map(|e| e.library.as_str()).collect();
        assert_eq!(libs, ["/a b/x.so", "/y.so", "/z.so"]);
        assert_eq!(list[0].name, "X");
        assert!(list[1].is_internal(), "moduleDBOnly is not a token module");
        assert!(!list[2].is_internal());
        // Garbage: no module, no panic.
        assert!(parse_module_list("hello\n\u{1}\u{2}\nlibrary\n=\n").is_empty());
        assert!(parse_module_list("").is_empty());
        assert_eq!(parse_module_list("library=\"\n").len(), 1);
    }

    #[test]
    fn module_list_files() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read_module_list(tmp.path()).unwrap(), []);
        std::fs::write(tmp.path().join("pkcs11.txt"), MODUTIL).unwrap();
        assert_eq!(read_module_list(tmp.path()).unwrap().len(), 2);
        let big = vec![b'#'; MAX_MODULE_LIST as usize + 1];
        std::fs::write(tmp.path().join("pkcs11.txt"), big).unwrap();
        let e = read_module_list(tmp.path()).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
        std::fs::remove_file(tmp.path().join("pkcs11.txt")).unwrap();
        std::fs::create_dir(tmp.path().join("pkcs11.txt")).unwrap();
        assert!(read_module_list(tmp.path()).is_err());
    }

    #[test]
    fn slot_selection() {
        let slot = |removable, hardware, description: &str| SlotSummary {
            id: 1,
            description: description.into(),
            removable,
            hardware,
            token_present: true,
            token: None,
        };
        assert!(selected(&slot(true, true, "r"), UseHw::Yes));
        assert!(!selected(&slot(true, false, "r"), UseHw::Yes));
        assert!(selected(&slot(true, false, "r"), UseHw::Removable));
        assert!(!selected(&slot(false, true, "r"), UseHw::Removable));
        assert!(!selected(&slot(true, true, BAD_SLOT), UseHw::Removable));
    }
}
