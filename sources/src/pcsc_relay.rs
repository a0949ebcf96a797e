//! A real card in the host's pcscd, relayed as a [`vreader::VirtualCard`]
//! (feature `pcsc`).
//!
//! [`RelayCard`] forwards every command APDU to a named reader of a pcscd
//! and returns the card's answer unchanged; it reports the real card's
//! ATR. [`Watcher`] follows the reader with `SCardGetStatusChange` and
//! turns the real card's insertion and removal into a card inserted into
//! or removed from a virtual reader.
//!
//! ```text
//!  guest / pcscd ──► vreader slot ──► RelayCard ──channel──► worker thread
//!                                                            │ SCardBeginTransaction
//!                                                            │ SCardTransmit …
//!  host pcscd ◄──────────────────────────────────────────────┘ SCardEndTransaction
//!  Watcher: SCardGetStatusChange(reader) ──► insert_card / remove_card
//! ```
//!
//! * The card is opened in shared mode; a transaction is held while a
//!   multi-APDU sequence is in progress (an answer `61 xx` or `6C xx`, a
//!   command with the ISO chaining bit, a CAC SIGN chunk `42 80`) and
//!   released when the sequence ends or after [`RelayOptions::idle_release`]
//!   without a command.
//! * Nothing is ever sent twice: a command that failed in transit is
//!   answered with a [`CardFault`] (the virtual reader then reads as
//!   removed), never retried — a VERIFY in particular.
//! * PIN data (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER) is
//!   masked in every log line, at every level ([`describe_command`]).
//! * A reader that disappears makes the card fault; the watcher removes
//!   the virtual card and inserts a fresh one when the reader and a card
//!   are back.
//!
//! libpcsclite reads `PCSCLITE_CSOCK_NAME` once per process: to relay
//! from a pcscd other than the default one, set it before the first PC/SC
//! call ([`use_pcscd_socket`]).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use vcac_sources::pcsc_relay::{RelayOptions, Watcher};
//!
//! let set = vreader::ReaderSet::new();
//! let bay = set.add_reader("relay 0")?;
//! let stop = AtomicBool::new(false);
//! let mut watcher = Watcher::new("Yubico YubiKey CCID 00 00", bay, RelayOptions::default());
//! watcher.run(&set, &stop, |event| println!("{event}"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use std::ffi::CString;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use pcsc::{
    Context, Disposition, Error as PcscError, Protocols, ReaderState, Scope, ShareMode, State,
};
use vreader::{CardFault, ReaderId, ReaderSet, VirtualCard};

/// Points libpcsclite at the pcscd socket `path` (`PCSCLITE_CSOCK_NAME`).
/// Call it before any PC/SC use and before other threads start: the
/// library reads the variable once.
pub fn use_pcscd_socket(path: &Path) {
    std::env::set_var("PCSCLITE_CSOCK_NAME", path);
}

/// Timings of the relay.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// Longest wait for the real card's answer to one command.
    pub apdu_timeout: Duration,
    /// A transaction held for a multi-APDU sequence is released after this
    /// long without a command.
    pub idle_release: Duration,
    /// How long one `SCardGetStatusChange` waits (the watcher's tick).
    pub poll: Duration,
}

impl Default for RelayOptions {
    fn default() -> RelayOptions {
        RelayOptions {
            apdu_timeout: Duration::from_secs(60),
            idle_release: Duration::from_secs(2),
            poll: Duration::from_millis(250),
        }
    }
}

/// Errors of opening a relayed card.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayError {
    /// No PC/SC service (pcscd not running or not reachable).
    Service(String),
    /// The reader or its card could not be opened.
    Connect {
        /// The reader.
        reader: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayError::Service(m) => write!(f, "PC/SC service: {m}"),
            RelayError::Connect { reader, reason } => write!(f, "reader \"{reader}\": {reason}"),
        }
    }
}

impl std::error::Error for RelayError {}

/// True for VERIFY (`20`/`21`), CHANGE REFERENCE DATA (`24`) and RESET
/// RETRY COUNTER (`2C`): commands whose data is a PIN or PUK.
pub fn carries_pin(apdu: &[u8]) -> bool {
    matches!(apdu.get(1), Some(0x20 | 0x21 | 0x24 | 0x2C))
}

/// A command APDU for a log line: hex, with the data of PIN commands
/// replaced by their length (`00200000 08 <8 bytes masked>`).
pub fn describe_command(apdu: &[u8]) -> String {
    if carries_pin(apdu) && apdu.len() > 5 {
        let (header, _) = apdu.split_at(4);
        format!("{} <{} bytes masked>", hex(header), apdu.len() - 4)
    } else {
        hex(apdu)
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// True when the command and its answer leave a multi-APDU sequence open,
/// so the transaction should be kept for the next command.
pub fn sequence_continues(command: &[u8], response: &[u8]) -> bool {
    let Some((sw1, _)) = response
        .len()
        .checked_sub(2)
        .and_then(|i| response.get(i..))
        .and_then(|sw| sw.split_first())
    else {
        return false;
    };
    let sw1 = *sw1;
    let ok = sw1 == 0x90 || sw1 == 0x61;
    match command {
        _ if sw1 == 0x61 || sw1 == 0x6C => true,
        // ISO command chaining (first interindustry CLA, bit 5).
        [cla, ..] if *cla & 0x80 == 0 && *cla & 0x10 != 0 && ok => true,
        // CAC SIGN / DECRYPT chunk with more to follow.
        [_, 0x42, 0x80, ..] if ok => true,
        _ => false,
    }
}

enum Job {
    Apdu(Vec<u8>, SyncSender<Result<Vec<u8>, CardFault>>),
    Reset(SyncSender<Result<Vec<u8>, CardFault>>),
    EndTransaction,
}

/// A real card behind a pcscd reader, as a [`VirtualCard`].
pub struct RelayCard {
    reader: String,
    atr: Vec<u8>,
    jobs: SyncSender<Job>,
    alive: Arc<AtomicBool>,
    timeout: Duration,
}

impl fmt::Debug for RelayCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelayCard(\"{}\", ATR {})", self.reader, hex(&self.atr))
    }
}

/// Errors after which the card is gone for good (until the watcher sees a
/// card again).
fn fatal(e: PcscError) -> bool {
    matches!(
        e,
        PcscError::RemovedCard
            | PcscError::NoSmartcard
            | PcscError::UnknownReader
            | PcscError::ReaderUnavailable
            | PcscError::NoService
            | PcscError::ServiceStopped
            | PcscError::InvalidHandle
            | PcscError::CommError
            | PcscError::UnresponsiveCard
            | PcscError::UnpoweredCard
            | PcscError::Shutdown
    )
}

impl RelayCard {
    /// Opens the card in `reader` (shared mode, T=0 or T=1) and starts its
    /// worker thread.
    pub fn connect(reader: &str, options: &RelayOptions) -> Result<RelayCard, RelayError> {
        let name = CString::new(reader).map_err(|_| RelayError::Connect {
            reader: reader.to_owned(),
            reason: "the name contains a NUL byte".into(),
        })?;
        let fail = |e: PcscError| RelayError::Connect {
            reader: reader.to_owned(),
            reason: e.to_string(),
        };
        let ctx =
            Context::establish(Scope::User).map_err(|e| RelayError::Service(e.to_string()))?;
        let card = ctx
            .connect(&name, ShareMode::Shared, Protocols::ANY)
            .map_err(fail)?;
        let atr = card.status2_owned().map_err(fail)?.atr().to_vec();
        let (jobs, rx) = mpsc::sync_channel(1);
        let alive = Arc::new(AtomicBool::new(true));
        let worker = Worker {
            _ctx: ctx,
            card,
            reader: reader.to_owned(),
            alive: Arc::clone(&alive),
            idle: options.idle_release,
            buf: vec![0; pcsc::MAX_BUFFER_SIZE_EXTENDED],
        };
        std::thread::Builder::new()
            .name(format!("relay {reader}"))
            .spawn(move || worker.run(rx))
            .map_err(|e| RelayError::Connect {
                reader: reader.to_owned(),
                reason: format!("cannot start a thread: {e}"),
            })?;
        log::info!("relay \"{reader}\": card connected, ATR {}", hex(&atr));
        Ok(RelayCard {
            reader: reader.to_owned(),
            atr,
            jobs,
            alive,
            timeout: options.apdu_timeout,
        })
    }

    /// False once the real card or its reader went away.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// A flag that turns false when the card goes away.
    pub fn alive_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.alive)
    }

    fn fault(&self, what: &str) -> CardFault {
        CardFault(format!("relayed reader \"{}\": {what}", self.reader))
    }

    fn ask(
        &self,
        job: impl FnOnce(SyncSender<Result<Vec<u8>, CardFault>>) -> Job,
    ) -> Result<Vec<u8>, CardFault> {
        if !self.is_alive() {
            return Err(self.fault("the card was removed"));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .send(job(tx))
            .map_err(|_| self.fault("the relay stopped"))?;
        match rx.recv_timeout(self.timeout) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                self.alive.store(false, Ordering::Relaxed);
                Err(self.fault(&format!("no answer within {:?}", self.timeout)))
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.fault("the relay stopped")),
        }
    }
}

impl VirtualCard for RelayCard {
    fn atr(&self) -> Result<Vec<u8>, CardFault> {
        if self.is_alive() {
            Ok(self.atr.clone())
        } else {
            Err(self.fault("the card was removed"))
        }
    }

    fn power_on(&mut self) -> Result<Vec<u8>, CardFault> {
        let atr = self.ask(Job::Reset)?;
        self.atr.clone_from(&atr);
        Ok(atr)
    }

    fn reset(&mut self) -> Result<Vec<u8>, CardFault> {
        self.power_on()
    }

    fn power_off(&mut self) {
        let _ = self.jobs.try_send(Job::EndTransaction);
    }

    fn transmit(&mut self, command: &[u8], response: &mut Vec<u8>) -> Result<(), CardFault> {
        let answer = self.ask(|tx| Job::Apdu(command.to_vec(), tx))?;
        response.extend_from_slice(&answer);
        Ok(())
    }
}

struct Worker {
    _ctx: Context,
    card: pcsc::Card,
    reader: String,
    alive: Arc<AtomicBool>,
    idle: Duration,
    buf: Vec<u8>,
}

impl Worker {
    fn lost(&self, e: PcscError) -> CardFault {
        if fatal(e) {
            self.alive.store(false, Ordering::Relaxed);
        }
        log::info!("relay \"{}\": {e}", self.reader);
        CardFault(format!("relayed reader \"{}\": {e}", self.reader))
    }

    fn run(mut self, jobs: Receiver<Job>) {
        let mut carried: Option<Job> = None;
        loop {
            let job = match carried.take() {
                Some(j) => j,
                None => match jobs.recv() {
                    Ok(j) => j,
                    Err(_) => return,
                },
            };
            match job {
                Job::EndTransaction => {}
                Job::Reset(reply) => {
                    let r = self.reset();
                    let _ = reply.send(r);
                }
                Job::Apdu(command, reply) => {
                    carried = self.sequence(command, reply, &jobs);
                }
            }
        }
    }

    fn reset(&mut self) -> Result<Vec<u8>, CardFault> {
        match self
            .card
            .reconnect(ShareMode::Shared, Protocols::ANY, Disposition::ResetCard)
        {
            Ok(()) => {}
            Err(e) if fatal(e) => return Err(self.lost(e)),
            // Another application holds the card (sharing violation): the
            // card stays as it is; the ATR does not change.
            Err(e) => log::info!("relay \"{}\": reset not done: {e}", self.reader),
        }
        match self.card.status2_owned() {
            Ok(s) => Ok(s.atr().to_vec()),
            Err(e) => Err(self.lost(e)),
        }
    }

    /// Runs one command, and the rest of its sequence, inside one
    /// transaction. Returns a job that arrived after the sequence ended.
    fn sequence(
        &mut self,
        command: Vec<u8>,
        reply: SyncSender<Result<Vec<u8>, CardFault>>,
        jobs: &Receiver<Job>,
    ) -> Option<Job> {
        for attempt in 0..2 {
            let err = match self.card.transaction2() {
                Ok(tx) => {
                    let link = Link {
                        reader: &self.reader,
                        alive: &self.alive,
                        idle: self.idle,
                    };
                    return link.sequence(&tx, &mut self.buf, command, reply, jobs);
                }
                Err((_, e)) => e,
            };
            if !(matches!(err, PcscError::ResetCard) && attempt == 0) {
                let _ = reply.send(Err(self.lost(err)));
                return None;
            }
            // Someone reset the card: acknowledge and try once more (the
            // command has not been sent).
            let _ = self
                .card
                .reconnect(ShareMode::Shared, Protocols::ANY, Disposition::LeaveCard);
        }
        let _ = reply.send(Err(self.lost(PcscError::ResetCard)));
        None
    }
}

/// What a transaction's sequence needs besides the card.
struct Link<'a> {
    reader: &'a str,
    alive: &'a AtomicBool,
    idle: Duration,
}

impl Link<'_> {
    fn sequence(
        &self,
        tx: &pcsc::Transaction<'_>,
        buf: &mut [u8],
        command: Vec<u8>,
        reply: SyncSender<Result<Vec<u8>, CardFault>>,
        jobs: &Receiver<Job>,
    ) -> Option<Job> {
        let reader = self.reader;
        let (mut command, mut reply) = (command, reply);
        loop {
            log::debug!("relay \"{reader}\" > {}", describe_command(&command));
            let (answer, more) = match tx.transmit(&command, buf) {
                // No status word: the card or its reader went away while
                // answering (vpcd hands out an empty answer then).
                Ok(r) if r.len() < 2 => {
                    log::info!(
                        "relay \"{reader}\": {} failed: answer without a status word ({})",
                        describe_command(&command),
                        hex(r)
                    );
                    (
                        Err(CardFault(format!(
                            "relayed reader \"{reader}\": the card gave no status word"
                        ))),
                        false,
                    )
                }
                Ok(r) => {
                    log::debug!("relay \"{reader}\" < {}", hex(r));
                    (Ok(r.to_vec()), sequence_continues(&command, r))
                }
                Err(e) => {
                    if fatal(e) {
                        self.alive.store(false, Ordering::Relaxed);
                    }
                    log::info!(
                        "relay \"{reader}\": {} failed: {e}",
                        describe_command(&command)
                    );
                    (
                        Err(CardFault(format!("relayed reader \"{reader}\": {e}"))),
                        false,
                    )
                }
            };
            let failed = answer.is_err();
            let _ = reply.send(answer);
            if failed || !more {
                return None;
            }
            match jobs.recv_timeout(self.idle) {
                Ok(Job::Apdu(c, r)) => {
                    command = c;
                    reply = r;
                }
                Ok(other) => return Some(other),
                Err(RecvTimeoutError::Timeout) => {
                    log::debug!("relay \"{reader}\": sequence idle, transaction released");
                    return None;
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }
}

/// What a [`Watcher`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayEvent {
    /// A card is in the host reader; it now sits in the virtual reader.
    Inserted {
        /// The real card's ATR.
        atr: Vec<u8>,
    },
    /// The relayed card left the virtual reader.
    Removed {
        /// Why.
        reason: String,
    },
    /// A card is there but could not be opened (reported once per state).
    ConnectFailed(String),
    /// The host reader does not exist (yet, or any more).
    ReaderMissing,
    /// pcscd is not reachable.
    ServiceUnavailable(String),
}

impl fmt::Display for RelayEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayEvent::Inserted { atr } => write!(f, "card inserted (ATR {})", hex(atr)),
            RelayEvent::Removed { reason } => write!(f, "card removed ({reason})"),
            RelayEvent::ConnectFailed(e) => write!(f, "card present but not usable: {e}"),
            RelayEvent::ReaderMissing => f.write_str("reader not present; waiting for it"),
            RelayEvent::ServiceUnavailable(e) => write!(f, "pcscd not reachable ({e}); retrying"),
        }
    }
}

/// Follows one host reader and keeps a virtual reader ("bay") holding a
/// [`RelayCard`] exactly while the host reader holds a card.
pub struct Watcher {
    reader: String,
    bay: ReaderId,
    options: RelayOptions,
    current: Option<Arc<AtomicBool>>,
    last: Option<RelayEvent>,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Watcher(\"{}\" → reader {})", self.reader, self.bay.0)
    }
}

impl Watcher {
    /// A watcher relaying host reader `reader` into `bay`.
    pub fn new(reader: &str, bay: ReaderId, options: RelayOptions) -> Watcher {
        Watcher {
            reader: reader.to_owned(),
            bay,
            options,
            current: None,
            last: None,
        }
    }

    fn report(&mut self, event: RelayEvent, report: &mut impl FnMut(&RelayEvent)) {
        let repeat = matches!(
            (&self.last, &event),
            (Some(RelayEvent::ReaderMissing), RelayEvent::ReaderMissing)
                | (
                    Some(RelayEvent::ServiceUnavailable(_)),
                    RelayEvent::ServiceUnavailable(_)
                )
                | (
                    Some(RelayEvent::ConnectFailed(_)),
                    RelayEvent::ConnectFailed(_)
                )
        );
        if !repeat {
            report(&event);
        }
        self.last = Some(event);
    }

    fn remove(&mut self, set: &ReaderSet, reason: &str, report: &mut impl FnMut(&RelayEvent)) {
        if self.current.take().is_some() {
            let _ = set.remove_card(self.bay);
            self.report(
                RelayEvent::Removed {
                    reason: reason.to_owned(),
                },
                report,
            );
        }
    }

    fn insert(&mut self, set: &ReaderSet, report: &mut impl FnMut(&RelayEvent)) {
        match RelayCard::connect(&self.reader, &self.options) {
            Ok(card) => {
                let atr = card.atr.clone();
                let alive = card.alive_flag();
                match set.insert_card(self.bay, Box::new(card) as Box<dyn VirtualCard>) {
                    Ok(()) => {
                        self.current = Some(alive);
                        self.report(RelayEvent::Inserted { atr }, report);
                    }
                    Err(e) => self.report(RelayEvent::ConnectFailed(e.to_string()), report),
                }
            }
            Err(e) => self.report(RelayEvent::ConnectFailed(e.to_string()), report),
        }
    }

    /// Follows the reader until `stop` is set. Each change is passed to
    /// `report` (repeated waiting states only once).
    pub fn run(&mut self, set: &ReaderSet, stop: &AtomicBool, mut report: impl FnMut(&RelayEvent)) {
        let Ok(name) = CString::new(self.reader.as_str()) else {
            self.report(RelayEvent::ReaderMissing, &mut report);
            return;
        };
        let mut ctx: Option<Context> = None;
        let mut state = ReaderState::new(name.clone(), State::UNAWARE);
        while !stop.load(Ordering::Relaxed) {
            if self
                .current
                .as_ref()
                .is_some_and(|alive| !alive.load(Ordering::Relaxed))
            {
                self.remove(set, "the card stopped answering", &mut report);
            }
            let c = match &ctx {
                Some(c) => c,
                None => match Context::establish(Scope::User) {
                    Ok(c) => {
                        state = ReaderState::new(name.clone(), State::UNAWARE);
                        ctx.insert(c)
                    }
                    Err(e) => {
                        self.remove(set, "pcscd went away", &mut report);
                        self.report(RelayEvent::ServiceUnavailable(e.to_string()), &mut report);
                        sleep_unless(stop, self.options.poll * 4);
                        continue;
                    }
                },
            };
            match c.get_status_change(self.options.poll, std::slice::from_mut(&mut state)) {
                Ok(()) | Err(PcscError::Timeout) => {}
                Err(PcscError::UnknownReader) => {
                    self.remove(set, "the reader disappeared", &mut report);
                    self.report(RelayEvent::ReaderMissing, &mut report);
                    state = ReaderState::new(name.clone(), State::UNAWARE);
                    sleep_unless(stop, self.options.poll);
                    continue;
                }
                Err(e) => {
                    self.remove(set, "pcscd went away", &mut report);
                    self.report(RelayEvent::ServiceUnavailable(e.to_string()), &mut report);
                    ctx = None;
                    sleep_unless(stop, self.options.poll * 4);
                    continue;
                }
            }
            state.sync_current_state();
            let ev = state.event_state();
            if ev.intersects(State::UNKNOWN | State::IGNORE | State::UNAVAILABLE) {
                self.remove(set, "the reader disappeared", &mut report);
                self.report(RelayEvent::ReaderMissing, &mut report);
                // Unknown names do not block: do not spin.
                sleep_unless(stop, self.options.poll);
            } else if ev.contains(State::PRESENT) && !ev.contains(State::MUTE) {
                if self.current.is_none() {
                    self.insert(set, &mut report);
                    if self.current.is_none() {
                        sleep_unless(stop, self.options.poll);
                    }
                }
            } else if ev.contains(State::EMPTY) || ev.contains(State::MUTE) {
                self.remove(set, "the card left the host reader", &mut report);
                self.last = None;
            }
        }
    }
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(50);
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(left.min(step));
        left = left.saturating_sub(step);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_data_is_masked_in_logs() {
        let verify = [
            0x00, 0x20, 0x00, 0x80, 0x08, b'1', b'2', b'3', b'4', b'5', b'6', 0xFF, 0xFF,
        ];
        let shown = describe_command(&verify);
        assert_eq!(shown, "00200080 <9 bytes masked>");
        assert!(!shown.contains("313233"), "{shown}");
        let change = [0x00, 0x24, 0x00, 0x00, 0x02, 0x39, 0x38];
        assert_eq!(describe_command(&change), "00240000 <3 bytes masked>");
        let reset = [0x00, 0x2C, 0x00, 0x00, 0x01, 0x42];
        assert_eq!(describe_command(&reset), "002C0000 <2 bytes masked>");
        // Status queries (no data) and other commands are shown whole.
        assert_eq!(describe_command(&[0x00, 0x20, 0x00, 0x00]), "00200000");
        assert_eq!(
            describe_command(&[0x00, 0xA4, 0x04, 0x00, 0x02, 0x31, 0x32]),
            "00A40400023132"
        );
        assert_eq!(describe_command(&[]), "");
    }

    #[test]
    fn sequences_keep_the_transaction() {
        let sign_more = [0x00, 0x42, 0x80, 0x00, 0x01, 0xAA];
        let sign_last = [0x00, 0x42, 0x00, 0x00, 0x01, 0xAA];
        assert!(sequence_continues(&sign_more, &[0x90, 0x00]));
        assert!(!sequence_continues(&sign_more, &[0x69, 0x82]));
        assert!(sequence_continues(&sign_last, &[0x61, 0x00]));
        assert!(!sequence_continues(&sign_last, &[0xDE, 0xAD, 0x90, 0x00]));
        assert!(sequence_continues(
            &[0x00, 0xB0, 0x00, 0x00, 0xFF],
            &[0x6C, 0x10]
        ));
        // ISO chaining bit on an interindustry CLA, not on a proprietary one.
        assert!(sequence_continues(
            &[0x10, 0xDB, 0x3F, 0xFF, 0x01, 0x00],
            &[0x90, 0x00]
        ));
        assert!(!sequence_continues(
            &[0x90, 0xDB, 0x3F, 0xFF, 0x01, 0x00],
            &[0x90, 0x00]
        ));
        assert!(!sequence_continues(
            &[0x00, 0xA4, 0x04, 0x00],
            &[0x90, 0x00]
        ));
        // A short or empty answer ends the sequence.
        assert!(!sequence_continues(&sign_more, &[0x90]));
        assert!(!sequence_continues(&sign_more, &[]));
    }

    #[test]
    fn missing_pcscd_is_a_clean_error() {
        // A socket path nobody listens on: libpcsclite reads the variable
        // once per process, and no other test here uses PC/SC.
        let tmp = std::env::temp_dir().join(format!("vcac-no-pcscd-{}", std::process::id()));
        use_pcscd_socket(&tmp);
        let e = RelayCard::connect("Nobody 00 00", &RelayOptions::default()).unwrap_err();
        assert!(matches!(e, RelayError::Service(_)), "{e}");
    }
}
