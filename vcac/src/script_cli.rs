//! `vcac script`: runs an APDU script against an in-process card or a
//! PC/SC reader; `--from-recording` turns a recording into a script.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vcac_sources::recording::{self, Recording};
use vreader::{ReaderId, ReaderSet};

use crate::record::{self, Sink};
use crate::script::{self, spaced, Target};

/// Options of `vcac script`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").args(["card", "reader"])))]
pub(crate) struct Args {
    /// The script (`-` for standard input). Not with --from-recording.
    #[arg(value_name = "FILE", required_unless_present = "from_recording")]
    file: Option<PathBuf>,
    /// Run against this card in-process (a card directory or a
    /// recording); default: the embedded default card.
    #[arg(long, value_name = "DIR|RECORDING")]
    card: Option<PathBuf>,
    /// Run against a PC/SC reader instead (exact name, or the first
    /// reader whose name starts with NAME).
    #[arg(long, value_name = "NAME")]
    reader: Option<String>,
    /// Write a JUnit XML report (one testcase per assertion).
    #[arg(long, value_name = "OUT.xml")]
    junit: Option<PathBuf>,
    /// Record every exchange (apdu4j format; PINs masked).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Keep PINs in the recording.
    #[arg(long, requires = "record")]
    record_secrets: bool,
    /// Print a script with expectations made from this recording, and exit.
    #[arg(long, value_name = "RECORDING", conflicts_with_all = ["file", "card", "reader", "junit", "record"])]
    from_recording: Option<PathBuf>,
    /// Key backend for the card's private keys (in-process card).
    #[arg(long, value_enum, default_value_t = crate::Backend::Rustcrypto)]
    backend: crate::Backend,
}

/// The in-process target: one reader of a `ReaderSet`.
struct InProcess {
    set: ReaderSet,
    reader: ReaderId,
}

impl Target for InProcess {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, String> {
        let mut r = Vec::new();
        self.set
            .transmit(self.reader, command, &mut r)
            .map_err(|e| e.to_string())?;
        Ok(r)
    }
    fn reset(&mut self) -> Result<Vec<u8>, String> {
        self.set.reset(self.reader).map_err(|e| e.to_string())
    }
    fn power_off(&mut self) -> Result<(), String> {
        self.set.power_off(self.reader).map_err(|e| e.to_string())
    }
    fn power_on(&mut self) -> Result<Vec<u8>, String> {
        self.set.power_on(self.reader).map_err(|e| e.to_string())
    }
    fn atr(&mut self) -> Result<Vec<u8>, String> {
        self.set.atr(self.reader).map_err(|e| e.to_string())
    }
    fn remove(&mut self) -> Result<(), String> {
        self.set
            .force_remove(self.reader)
            .map_err(|e| e.to_string())
    }
    fn insert(&mut self) -> Result<(), String> {
        self.set
            .force_insert(self.reader)
            .map_err(|e| e.to_string())?;
        self.set
            .power_on(self.reader)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// A PC/SC reader (pcscd, any card). `remove`/`insert` wait for someone
/// (or something) to take the card out / put it in.
struct Pcsc {
    ctx: pcsc::Context,
    reader: CString,
    card: Option<pcsc::Card>,
    sink: Option<Sink>,
}

/// How long `remove`/`insert` wait for the card to go or come.
const HOTPLUG_WAIT: Duration = Duration::from_secs(30);

impl Pcsc {
    fn open(name: &str) -> Result<Pcsc, String> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User)
            .map_err(|e| format!("cannot reach pcscd: {e}"))?;
        let readers = ctx
            .list_readers_owned()
            .map_err(|e| format!("cannot list PC/SC readers: {e}"))?;
        let names: Vec<String> = readers
            .iter()
            .map(|r| r.to_string_lossy().into_owned())
            .collect();
        let pick = names
            .iter()
            .position(|n| n == name)
            .or_else(|| names.iter().position(|n| n.starts_with(name)))
            .and_then(|i| readers.get(i).cloned())
            .ok_or_else(|| format!("--reader {name}: no such reader (readers: {names:?})"))?;
        let mut p = Pcsc {
            ctx,
            reader: pick,
            card: None,
            sink: None,
        };
        p.connect()?;
        Ok(p)
    }

    fn connect(&mut self) -> Result<(), String> {
        let card = self
            .ctx
            .connect(&self.reader, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
            .map_err(|e| format!("connect to {:?}: {e}", self.reader))?;
        self.card = Some(card);
        Ok(())
    }

    fn card(&mut self) -> Result<&mut pcsc::Card, String> {
        self.card
            .as_mut()
            .ok_or_else(|| "no connection to the card (powered off or removed)".to_owned())
    }

    fn wait_for(&mut self, present: bool) -> Result<(), String> {
        let start = Instant::now();
        let mut states = [pcsc::ReaderState::new(
            self.reader.clone(),
            pcsc::State::UNAWARE,
        )];
        loop {
            self.ctx
                .get_status_change(Duration::from_millis(500), &mut states)
                .or_else(|e| match e {
                    pcsc::Error::Timeout => Ok(()),
                    e => Err(e.to_string()),
                })?;
            let [state] = &mut states;
            if state.event_state().contains(pcsc::State::PRESENT) == present {
                return Ok(());
            }
            state.sync_current_state();
            if start.elapsed() > HOTPLUG_WAIT {
                return Err(format!(
                    "the card was not {} within {HOTPLUG_WAIT:?}",
                    if present { "inserted" } else { "removed" }
                ));
            }
        }
    }
}

impl Target for Pcsc {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let resp = self
            .card()?
            .transmit(command, &mut buf)
            .map_err(|e| format!("transmit: {e}"))?
            .to_vec();
        if let Some(s) = &mut self.sink {
            s.exchange(command, &resp);
        }
        Ok(resp)
    }
    fn reset(&mut self) -> Result<Vec<u8>, String> {
        self.card()?
            .reconnect(
                pcsc::ShareMode::Shared,
                pcsc::Protocols::ANY,
                pcsc::Disposition::ResetCard,
            )
            .map_err(|e| format!("reset: {e}"))?;
        self.atr()
    }
    fn power_off(&mut self) -> Result<(), String> {
        if let Some(card) = self.card.take() {
            card.disconnect(pcsc::Disposition::UnpowerCard)
                .map_err(|(_, e)| format!("power-off: {e}"))?;
        }
        Ok(())
    }
    fn power_on(&mut self) -> Result<Vec<u8>, String> {
        if self.card.is_none() {
            self.connect()?;
        }
        self.atr()
    }
    fn atr(&mut self) -> Result<Vec<u8>, String> {
        let s = self
            .card()?
            .status2_owned()
            .map_err(|e| format!("status: {e}"))?;
        Ok(s.atr().to_vec())
    }
    fn remove(&mut self) -> Result<(), String> {
        if let Some(card) = self.card.take() {
            let _ = card.disconnect(pcsc::Disposition::LeaveCard);
        }
        self.wait_for(false)
    }
    fn insert(&mut self) -> Result<(), String> {
        self.wait_for(true)?;
        self.connect()
    }
}

/// `--from-recording`: one `command => response` line per exchange.
fn from_recording(path: &Path) -> Result<(), String> {
    let text = record::read_bounded(path, recording::MAX_RECORDING)?;
    let rec = Recording::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = format!(
        "# From the recording {} ({} exchanges)\nexpect-atr {}\n",
        path.display(),
        rec.exchanges.len(),
        spaced(&rec.atr)
    );
    if rec.masked {
        out.push_str(
            "# PIN bytes were masked in the recording: put the real PIN into the VERIFY lines\n",
        );
    }
    for x in &rec.exchanges {
        out.push_str(&format!(
            "{} => {}\n",
            spaced(&x.command),
            spaced(&x.response)
        ));
    }
    print!("{out}");
    Ok(())
}

/// Runs `vcac script`; `Ok(false)` when an assertion failed.
pub(crate) fn run(args: Args) -> Result<bool, String> {
    if let Some(rec) = &args.from_recording {
        return from_recording(rec).map(|()| true);
    }
    let file = args.file.as_deref().ok_or("a script FILE is required")?;
    let (text, suite) = if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(std::io::stdin(), script::MAX_SCRIPT),
            &mut s,
        )
        .map_err(|e| format!("standard input: {e}"))?;
        (s, "stdin".to_owned())
    } else {
        (
            record::read_bounded(file, script::MAX_SCRIPT)?,
            file.display().to_string(),
        )
    };
    let lines = script::parse(&text).map_err(|e| format!("{suite}: {e}"))?;

    let mut replays = Vec::new();
    let mut target: Box<dyn Target> = match &args.reader {
        Some(name) => {
            let mut p = Pcsc::open(name)?;
            if let Some(path) = &args.record {
                let atr = p.atr()?;
                p.sink = Some(Sink::create(path, &atr, args.record_secrets)?);
            }
            Box::new(p)
        }
        None => {
            let backend = crate::key_backend(args.backend)?;
            let sources: Vec<PathBuf> = args.card.iter().cloned().collect();
            let cards = record::load_cards(&sources, backend.as_ref())?;
            let cards =
                record::wrap_for_recording(cards, args.record.as_deref(), args.record_secrets)?;
            let set = ReaderSet::new();
            let reader = set.add_reader("vcac script").map_err(|e| e.to_string())?;
            for l in cards {
                if let Some(log) = l.replay {
                    replays.push((l.label.clone(), log));
                }
                set.insert_card(reader, l.card).map_err(|e| e.to_string())?;
            }
            set.power_on(reader).map_err(|e| e.to_string())?;
            Box::new(InProcess { set, reader })
        }
    };
    let report = script::run(&lines, target.as_mut(), &mut std::io::stdout().lock());
    drop(target);
    if let Some(out) = &args.junit {
        std::fs::write(out, script::junit(&suite, &report))
            .map_err(|e| format!("--junit {}: {e}", out.display()))?;
    }
    // A replayed card reports commands that left the recording's path.
    let replay_ok = replays.is_empty() || record::replay_verdict(&replays).is_ok();
    Ok(report.failed() == 0 && replay_ok)
}
