//! `vcac ccid-serial`: the CCID reader on a pty for libccid's serial
//! driver.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use ccid::device::{CcidDevice, DeviceConfig};
use ccid::serial::{self, Pty, ReaderType, ServeOptions, Twin};
use vcac_sources::{dir as card_dir, embedded};
use vreader::ReaderSet;

/// Where libccid's serial driver lives on Debian.
const LIBCCIDTWIN: &str = "/usr/lib/pcsc/drivers/serial/libccidtwin.so";

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Create this symlink to the pty; put it in reader.conf's DEVICENAME
    /// (`DEVICENAME PATH:GemPCTwin`).
    #[arg(long, value_name = "PATH")]
    link: PathBuf,
    /// A card directory (card.toml, certificates, keys); repeat to fill
    /// the second slot of a SEC1210. Default: the embedded default card.
    #[arg(long = "card", value_name = "DIR")]
    cards: Vec<PathBuf>,
    /// The reader libccid is told about (reader.conf's DEVICENAME suffix):
    /// GemPCTwin (1 slot), GemPCPinPad (1 slot, PIN pad: use with
    /// --pinpad), SEC1210URT (1 slot) or SEC1210 (2 slots).
    /// Whether commands are echoed follows the driver's open probe
    /// (libccid before 1.7 drives SEC1210URT as a GemPC Twin).
    #[arg(long, value_name = "TYPE", default_value = "GemPCTwin",
          value_parser = clap::builder::TypedValueParser::try_map(
              clap::builder::PossibleValuesParser::new(["GemPCTwin", "GemPCPinPad", "SEC1210URT", "SEC1210"]),
              |s: String| s.parse::<ReaderType>()))]
    reader: ReaderType,
    /// Milliseconds between the time-request bytes sent while a card
    /// operation runs.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    tick_ms: u64,
    /// Delay every card operation by this many milliseconds (simulates a
    /// slow card, to test host timeouts and time requests).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    card_delay_ms: u64,
    /// Key backend for the cards' private keys.
    #[arg(long, value_enum, default_value_t = crate::Backend::Rustcrypto)]
    backend: crate::Backend,
    /// A virtual PIN pad for PC_to_RDR_Secure (libccid offers it with
    /// --reader GemPCPinPad): PINs from card.toml (auto), the terminal
    /// (stdin), or a user who cancels (deny) or types nothing (timeout).
    #[arg(long, value_enum, value_name = "SOURCE")]
    pinpad: Option<crate::usbredir::PinpadMode>,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    let stop = crate::stop_on_signals()?;
    let slots = args.reader.slots();
    if args.cards.len() > slots {
        return Err(format!(
            "{} has {slots} slot(s); {} cards given",
            args.reader,
            args.cards.len()
        ));
    }
    if args.tick_ms == 0 {
        return Err("--tick-ms must be at least 1".into());
    }

    let backend = crate::key_backend(args.backend)?;
    let set = ReaderSet::new();
    let readers = (0..slots)
        .map(|i| set.add_reader(&format!("vcac ccid slot {i}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut described = Vec::new();
    let mut pins = Vec::new();
    if args.cards.is_empty() {
        pins.push(certs_fixtures::default_card::PIN.to_owned());
        let card =
            embedded::default_card(backend.as_ref(), rand_core::UnwrapErr(getrandom::SysRng))
                .map_err(|e| format!("embedded default card: {e}"))?;
        described.push(format!(
            "slot 0: the embedded default card (serial {}), PIN {}",
            hex(card.card_id()),
            certs_fixtures::default_card::PIN
        ));
        let first = *readers.first().ok_or("a reader has at least one slot")?;
        set.insert_card(first, card).map_err(|e| e.to_string())?;
    }
    for (dir, &reader) in args.cards.iter().zip(&readers) {
        let card = card_dir::load(
            dir,
            backend.as_ref(),
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .map_err(|e| e.to_string())?;
        let pin = card_dir::pin_of(dir).unwrap_or_else(|| "?".into());
        pins.push(pin.clone());
        described.push(format!(
            "slot {}: card {} (serial {}), PIN {pin}",
            reader.0,
            dir.display(),
            hex(card.card_id())
        ));
        set.insert_card(reader, card).map_err(|e| e.to_string())?;
    }

    if args.reader.pinpad() && args.pinpad.is_none() {
        log::warn!(
            "--reader {}: libccid will offer a PIN pad; without --pinpad it answers \
             PC_to_RDR_Secure \"not supported\"",
            args.reader
        );
    }
    let config = DeviceConfig {
        pinpad: crate::usbredir::pinpad(args.pinpad, pins),
        ..DeviceConfig::gempc_twin()
    };
    let mut device = CcidDevice::new(config, &set, &readers).map_err(|e| e.to_string())?;
    let mut pty = Pty::open().map_err(|e| format!("cannot open a pty: {e}"))?;
    pty.link(&args.link)
        .map_err(|e| format!("--link {}: {e}", args.link.display()))?;

    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "vcac: CCID reader {} on {} (linked at {}); reader.conf: DEVICENAME {}:{} LIBPATH {LIBCCIDTWIN}",
        args.reader,
        pty.path().display(),
        args.link.display(),
        args.link.display(),
        args.reader
    );
    for d in &described {
        let _ = writeln!(stdout, "vcac: {d}");
    }
    let _ = writeln!(stdout, "vcac: press Ctrl-C to stop");
    let _ = stdout.flush();
    drop(stdout);

    let options = ServeOptions {
        tick: Duration::from_millis(args.tick_ms),
        card_delay: Duration::from_millis(args.card_delay_ms),
        ..ServeOptions::default()
    };
    let mut twin = Twin::new(args.reader);
    serial::serve(&pty, &mut device, &mut twin, &options, &stop)
        .map_err(|e| format!("{}: {e}", pty.path().display()))?;
    drop(pty);
    log::info!("stopped");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
