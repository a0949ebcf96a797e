//! `--record FILE`: every exchange of a card written in apdu4j's dump
//! format (see `vcac_sources::recording`), PIN bytes masked unless
//! `--record-secrets`; and the replaying card behind `vcac replay` and
//! `--card RECORDING`.
//!
//! Recording wraps the card itself ([`RecordingCard`] is a
//! `vreader::VirtualCard`), so every transport that reaches the card —
//! vpcd, VSCard, CCID, in-process scripts — is recorded the same way.
//! `vcac script --reader` records through [`Sink`] directly.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cac::keys::KeyBackend;
use vcac_sources::recording::{self, Mismatch, Recording, Replayer};
use vcac_sources::{dir as card_dir, embedded};
use vreader::{CardFault, VirtualCard};

/// Where exchanges go.
pub(crate) struct Sink {
    out: BufWriter<File>,
    secrets: bool,
    path: PathBuf,
    failed: bool,
}

impl Sink {
    /// Creates `path` and writes the headers.
    pub(crate) fn create(path: &Path, atr: &[u8], secrets: bool) -> Result<Sink, String> {
        let file = File::create(path).map_err(|e| format!("--record {}: {e}", path.display()))?;
        let mut sink = Sink {
            out: BufWriter::new(file),
            secrets,
            path: path.to_owned(),
            failed: false,
        };
        let generator = concat!("vcac ", env!("CARGO_PKG_VERSION"));
        sink.write(&recording::header(generator, atr, !secrets));
        Ok(sink)
    }

    fn write(&mut self, text: &str) {
        let result = self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush());
        if let Err(e) = result {
            if !self.failed {
                log::error!("--record {}: {e}; recording stops", self.path.display());
            }
            self.failed = true;
        }
    }

    /// Records one exchange.
    pub(crate) fn exchange(&mut self, command: &[u8], response: &[u8]) {
        if !self.failed {
            let lines = recording::exchange_lines(command, response, self.secrets);
            self.write(&lines);
        }
    }
}

/// A card whose every exchange is recorded.
pub(crate) struct RecordingCard {
    inner: Box<dyn VirtualCard>,
    sink: Sink,
}

impl RecordingCard {
    /// Wraps `inner`, recording to `path`.
    pub(crate) fn new(
        inner: Box<dyn VirtualCard>,
        path: &Path,
        secrets: bool,
    ) -> Result<RecordingCard, String> {
        let atr = inner
            .atr()
            .map_err(|e| format!("--record: the card has no ATR: {e}"))?;
        Ok(RecordingCard {
            sink: Sink::create(path, &atr, secrets)?,
            inner,
        })
    }
}

impl VirtualCard for RecordingCard {
    fn atr(&self) -> Result<Vec<u8>, CardFault> {
        self.inner.atr()
    }
    fn power_on(&mut self) -> Result<Vec<u8>, CardFault> {
        self.inner.power_on()
    }
    fn reset(&mut self) -> Result<Vec<u8>, CardFault> {
        self.inner.reset()
    }
    fn power_off(&mut self) {
        self.inner.power_off();
    }
    fn transmit(&mut self, command: &[u8], response: &mut Vec<u8>) -> Result<(), CardFault> {
        let before = response.len();
        self.inner.transmit(command, response)?;
        self.sink
            .exchange(command, response.get(before..).unwrap_or_default());
        Ok(())
    }
}

/// What a replay saw, shared with whoever reports it.
#[derive(Debug, Default)]
pub(crate) struct ReplayLog {
    /// Commands answered from the recording.
    pub(crate) matched: usize,
    /// Commands that differed (answered `6F 00`).
    pub(crate) mismatches: Vec<Mismatch>,
    /// Exchanges in the recording.
    pub(crate) total: usize,
}

/// A card that answers from a recording; a differing command gets
/// `6F 00` and is logged.
pub(crate) struct ReplayCard {
    replayer: Replayer,
    log: Arc<Mutex<ReplayLog>>,
}

impl ReplayCard {
    /// Reads and parses a recording file (bounded size).
    pub(crate) fn load(path: &Path) -> Result<(ReplayCard, Arc<Mutex<ReplayLog>>), String> {
        let text = read_bounded(path, recording::MAX_RECORDING)?;
        let rec = Recording::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let log = Arc::new(Mutex::new(ReplayLog {
            total: rec.exchanges.len(),
            ..ReplayLog::default()
        }));
        Ok((
            ReplayCard {
                replayer: Replayer::new(rec),
                log: Arc::clone(&log),
            },
            log,
        ))
    }
}

/// Reads a UTF-8 text file of at most `max` bytes.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    if meta.len() > max {
        return Err(format!(
            "{}: {} bytes is larger than the {max} byte limit",
            path.display(),
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", path.display()))
}

impl VirtualCard for ReplayCard {
    fn atr(&self) -> Result<Vec<u8>, CardFault> {
        Ok(self.replayer.atr().to_vec())
    }
    fn power_on(&mut self) -> Result<Vec<u8>, CardFault> {
        Ok(self.replayer.atr().to_vec())
    }
    fn reset(&mut self) -> Result<Vec<u8>, CardFault> {
        Ok(self.replayer.atr().to_vec())
    }
    fn power_off(&mut self) {}
    fn transmit(&mut self, command: &[u8], response: &mut Vec<u8>) -> Result<(), CardFault> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        match self.replayer.answer(command) {
            Ok(r) => {
                response.extend_from_slice(r);
                log.matched += 1;
            }
            Err(m) => {
                log::error!("replay: {m}; answering 6F00");
                response.extend_from_slice(&[0x6F, 0x00]);
                log.mismatches.push(m);
            }
        }
        Ok(())
    }
}

/// A loaded card, with what to tell the user about it.
pub(crate) struct Loaded {
    /// "the embedded default card", "card DIR", "recording FILE".
    pub(crate) label: String,
    /// The card (already wrapped for recording if asked).
    pub(crate) card: Box<dyn VirtualCard>,
    /// Its serial (hex), if it is an emulated CAC.
    pub(crate) serial: Option<String>,
    /// Its PIN, if known.
    pub(crate) pin: Option<String>,
    /// For a recording: what the replay saw.
    pub(crate) replay: Option<Arc<Mutex<ReplayLog>>>,
}

/// Loads `--card` sources: none = the embedded default card; a directory
/// = a card directory; a file = a recording to replay.
pub(crate) fn load_cards(
    sources: &[PathBuf],
    backend: &dyn KeyBackend,
) -> Result<Vec<Loaded>, String> {
    let hex = |b: &[u8]| recording::encode_hex(b);
    if sources.is_empty() {
        let card = embedded::default_card(backend, rand_core::UnwrapErr(getrandom::SysRng))
            .map_err(|e| format!("embedded default card: {e}"))?;
        return Ok(vec![Loaded {
            label: "the embedded default card".into(),
            serial: Some(hex(card.card_id())),
            card: Box::new(card),
            pin: Some(embedded::PIN.to_owned()),
            replay: None,
        }]);
    }
    sources
        .iter()
        .map(|src| {
            if src.is_file() {
                let (card, log) = ReplayCard::load(src)?;
                Ok(Loaded {
                    label: format!("recording {}", src.display()),
                    card: Box::new(card),
                    serial: None,
                    pin: None,
                    replay: Some(log),
                })
            } else {
                let (card, serial) = load_dir(src, backend)?;
                Ok(Loaded {
                    label: format!("card {}", src.display()),
                    serial: Some(serial),
                    card,
                    pin: card_dir::pin_of(src),
                    replay: None,
                })
            }
        })
        .collect()
}

/// Loads a card directory — PKCS#12 passwords not named in `card.toml`
/// asked on the terminal — and applies its `[faults]`. Returns the card
/// and its serial (hex).
pub(crate) fn load_dir(
    dir: &Path,
    backend: &dyn KeyBackend,
) -> Result<(Box<dyn VirtualCard>, String), String> {
    let mut ask =
        |p: &Path| crate::import::ask_password(&format!("Password for {}: ", p.display()));
    let card = card_dir::load_asking(
        dir,
        backend,
        rand_core::UnwrapErr(getrandom::SysRng),
        &mut ask,
    )
    .map_err(|e| e.to_string())?;
    let serial = recording::encode_hex(card.card_id());
    let toml_path = dir.join("card.toml");
    let toml = read_bounded(&toml_path, card_dir::MAX_FILE)?;
    let card = vcac_sources::faults::wrap_from_toml(Box::new(card), &toml)
        .map_err(|e| format!("{}: {e}", toml_path.display()))?;
    Ok((card, serial))
}

/// The recording file of card `i` for `--record FILE`: FILE for the first
/// card, FILE.1, FILE.2, … for the others.
pub(crate) fn record_path(base: &Path, i: usize) -> PathBuf {
    if i == 0 {
        base.to_owned()
    } else {
        let mut s = base.as_os_str().to_owned();
        s.push(format!(".{i}"));
        PathBuf::from(s)
    }
}

/// Wraps each card for recording when `--record` is given.
pub(crate) fn wrap_for_recording(
    cards: Vec<Loaded>,
    record: Option<&Path>,
    secrets: bool,
) -> Result<Vec<Loaded>, String> {
    let Some(base) = record else {
        return Ok(cards);
    };
    cards
        .into_iter()
        .enumerate()
        .map(|(i, mut l)| {
            let path = record_path(base, i);
            l.card = Box::new(RecordingCard::new(l.card, &path, secrets)?);
            log::info!("recording {} to {}", l.label, path.display());
            Ok(l)
        })
        .collect()
}

/// Summarises replays; `Err` when any command differed.
pub(crate) fn replay_verdict(logs: &[(String, Arc<Mutex<ReplayLog>>)]) -> Result<(), String> {
    let mut bad = 0;
    for (label, log) in logs {
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        eprintln!(
            "vcac: replay of {label}: {} of {} exchanges matched, {} commands differed",
            log.matched,
            log.total,
            log.mismatches.len()
        );
        for m in &log.mismatches {
            eprintln!("vcac:   {m}");
        }
        bad += log.mismatches.len();
    }
    if bad == 0 {
        Ok(())
    } else {
        Err(format!(
            "replay: {bad} command(s) differed from the recording"
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn recording_card_writes_masked_exchanges_and_replays_them() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rec.apdu");
        let card = embedded::default_card(
            &cac::keys::RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap();
        let mut rec: Box<dyn VirtualCard> =
            Box::new(RecordingCard::new(Box::new(card), &path, false).unwrap());
        rec.power_on().unwrap();
        let select = [
            0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00,
        ];
        let verify = [
            0x00, 0x20, 0x00, 0x00, 0x08, b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8',
        ];
        let mut r1 = Vec::new();
        rec.transmit(&select, &mut r1).unwrap();
        let mut r2 = Vec::new();
        rec.transmit(&verify, &mut r2).unwrap();
        assert_eq!(r2, [0x90, 0x00]);
        drop(rec);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("# ATR: 3B7A18000073667465206364313434\n# PROTOCOL: T=0\n"),
            "{text}"
        );
        assert!(
            text.contains("\n0020000008FFFFFFFFFFFFFFFF\n9000\n"),
            "{text}"
        );
        assert!(!text.contains("3132333435363738"), "PIN leaked: {text}");

        let (mut replay, log) = ReplayCard::load(&path).unwrap();
        assert_eq!(replay.power_on().unwrap(), cac::DEFAULT_ATR);
        let mut got = Vec::new();
        replay.transmit(&select, &mut got).unwrap();
        assert_eq!(got, r1);
        let mut got = Vec::new();
        replay.transmit(&select, &mut got).unwrap();
        assert_eq!(got, [0x6F, 0x00], "the recording expects VERIFY here");
        let mut got = Vec::new();
        replay.transmit(&verify, &mut got).unwrap();
        assert_eq!(got, [0x90, 0x00]);
        let log = log.lock().unwrap();
        assert_eq!((log.matched, log.mismatches.len(), log.total), (2, 1, 2));
    }

    #[test]
    fn record_paths() {
        assert_eq!(record_path(Path::new("a/r.apdu"), 0), Path::new("a/r.apdu"));
        assert_eq!(
            record_path(Path::new("a/r.apdu"), 2),
            Path::new("a/r.apdu.2")
        );
    }
}
