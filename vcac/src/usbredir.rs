//! `vcac usbredir`: our CCID reader on the guest's own USB bus, through
//! QEMU's `-device usb-redir` (no usb-ccid, no smart-card code in QEMU).
//! Also home of the `--pinpad` sources `vcac ccid-serial` shares.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::console::Peer;
use ccid::device::{
    pinpad::{Deny, FixedPins, NoEntry},
    CcidDevice, DeviceConfig, PinEntry, PinEntryError, PinOperation, PinPad, PinSource, MAX_SLOTS,
};
use ccid::usbredir::{tcp, DataPath};
use signal_hook::consts::{SIGUSR1, SIGUSR2};
use vcac_sources::{dir as card_dir, embedded};
use vreader::{ReaderId, ReaderSet};

/// Where `--pinpad` takes PINs from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PinpadMode {
    /// The card's own PIN (card.toml), typed for the user.
    Auto,
    /// Prompt on the terminal (/dev/tty), without echo.
    Stdin,
    /// A user who presses Cancel (CCID bError EF).
    Deny,
    /// A user who types nothing (CCID bError F0).
    Timeout,
}

/// Asks on the controlling terminal with echo off.
struct TerminalPin {
    lock: Mutex<()>,
}

impl TerminalPin {
    fn ask(prompt: &str) -> Result<String, PinEntryError> {
        let mut tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map_err(|_| PinEntryError::Cancelled)?;
        let stty = |arg: &str| {
            std::fs::File::open("/dev/tty").ok().map(|t| {
                std::process::Command::new("stty")
                    .arg(arg)
                    .stdin(t)
                    .status()
            })
        };
        let _ = stty("-echo");
        let _ = write!(tty, "{prompt}");
        let _ = tty.flush();
        let mut line = String::new();
        let read = std::io::BufReader::new(&mut tty)
            .take(64)
            .read_line(&mut line);
        let _ = stty("echo");
        let _ = writeln!(tty);
        match read {
            Ok(0) | Err(_) => Err(PinEntryError::Cancelled),
            Ok(_) => {
                let pin = line.trim_end_matches(['\r', '\n']).to_owned();
                if pin.is_empty() {
                    Err(PinEntryError::Cancelled)
                } else {
                    Ok(pin)
                }
            }
        }
    }
}

impl PinSource for TerminalPin {
    fn pin(
        &self,
        slot: u8,
        operation: PinOperation,
        _timeout_s: u8,
    ) -> Result<PinEntry, PinEntryError> {
        let _one_at_a_time = self.lock.lock();
        match operation {
            PinOperation::Verify => Ok(PinEntry {
                pin: Self::ask(&format!("vcac pinpad, slot {slot}: PIN (empty cancels): "))?,
                new_pin: None,
            }),
            PinOperation::Modify => {
                let pin = Self::ask(&format!("vcac pinpad, slot {slot}: current PIN: "))?;
                let new_pin = Self::ask(&format!("vcac pinpad, slot {slot}: new PIN: "))?;
                Ok(PinEntry {
                    pin,
                    new_pin: Some(new_pin),
                })
            }
        }
    }
}

/// The PIN pad for `mode`; `pins` are the cards' PINs by slot (for auto).
pub(crate) fn pinpad(mode: Option<PinpadMode>, pins: Vec<String>) -> Option<PinPad> {
    Some(match mode? {
        PinpadMode::Auto => PinPad::new(FixedPins(pins)),
        PinpadMode::Stdin => PinPad::new(TerminalPin {
            lock: Mutex::new(()),
        }),
        PinpadMode::Deny => PinPad::new(Deny),
        PinpadMode::Timeout => PinPad::new(NoEntry),
    })
}

/// Options of `vcac usbredir`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("peer").required(true).args(["connect", "listen"])))]
pub(crate) struct Args {
    /// Address of QEMU's usb-redir chardev when QEMU listens (`-chardev
    /// socket,server=on,wait=off,host=H,port=P,id=ur -device
    /// usb-redir,chardev=ur`); reconnects while QEMU restarts.
    #[arg(long, value_name = "HOST:PORT")]
    connect: Option<String>,
    /// Listen here and wait for QEMU to connect (`-chardev
    /// socket,host=H,port=P,reconnect=1,id=ur`).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// A card directory (card.toml, certificates, keys); repeat for more
    /// cards, one slot each. Default: the embedded default card.
    #[arg(long = "card", value_name = "DIR")]
    cards: Vec<PathBuf>,
    /// Slots of the reader (1-8; default: one per card). Slots beyond the
    /// cards start empty.
    #[arg(long, value_name = "N")]
    slots: Option<usize>,
    /// A virtual PIN pad (bPINSupport: verify + modify): PINs from the
    /// card's card.toml (auto), the terminal (stdin), or a user who
    /// cancels (deny) or types nothing (timeout).
    #[arg(long, value_enum, value_name = "SOURCE")]
    pinpad: Option<PinpadMode>,
    /// Do not read commands from standard input.
    #[arg(long)]
    no_stdin: bool,
    /// The reader's USB VID:PID (hex). The default, 08E6:4433, is in
    /// libccid's list (QEMU's usb-ccid uses it too).
    #[arg(long, value_name = "VVVV:PPPP", default_value = "08E6:4433", value_parser = parse_vid_pid)]
    vid_pid: (u16, u16),
    /// How the reader's data endpoints are described to QEMU. interrupt
    /// (the default): QEMU completes the guest's transfers at once from
    /// data vcac pushes as soon as the card answers, as fast as QEMU's own
    /// usb-ccid. bulk: as the USB descriptors say; every transfer waits
    /// for a socket round trip (for a usbredir peer other than QEMU's).
    /// The guest sees bulk endpoints either way.
    #[arg(long, value_enum, value_name = "PATH", default_value_t = DataPathArg::Interrupt)]
    data_path: DataPathArg,
    /// Key backend for the cards' private keys.
    #[arg(long, value_enum, default_value_t = crate::Backend::Rustcrypto)]
    backend: crate::Backend,
}

/// `--data-path`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum DataPathArg {
    /// Interrupt endpoints in ep_info: QEMU completes transfers itself.
    Interrupt,
    /// Bulk endpoints in ep_info, as in the descriptors.
    Bulk,
}

fn parse_vid_pid(s: &str) -> Result<(u16, u16), String> {
    let (v, p) = s
        .split_once(':')
        .ok_or_else(|| format!("\"{s}\": expected VVVV:PPPP"))?;
    let hex = |x: &str| {
        u16::from_str_radix(x, 16).map_err(|_| format!("\"{x}\" is not a 16-bit hex number"))
    };
    Ok((hex(v)?, hex(p)?))
}

const HELP: &str =
    "commands: remove [N] | insert [N] | list | unplug | plug | exit   (N: slot, default 0)";

pub(crate) fn run(args: Args) -> Result<(), String> {
    let peer = Peer::from_args(&args.connect, &args.listen)?;
    let stop = crate::stop_on_signals()?;
    let signals = signal_hook::iterator::Signals::new([SIGUSR1, SIGUSR2])
        .map_err(|e| format!("cannot install signal handler: {e}"))?;

    let card_count = args.cards.len().max(1);
    let slots = args.slots.unwrap_or(card_count);
    if slots == 0 || slots > MAX_SLOTS {
        return Err(format!(
            "--slots {slots}: a reader has 1 to {MAX_SLOTS} slots"
        ));
    }
    if card_count > slots {
        return Err(format!("{card_count} cards do not fit {slots} slot(s)"));
    }
    let backend = crate::key_backend(args.backend)?;
    let set = Arc::new(ReaderSet::new());
    let readers = (0..slots)
        .map(|i| set.add_reader(&format!("vcac usbredir slot {i}")))
        .collect::<Result<Vec<ReaderId>, _>>()
        .map_err(|e| e.to_string())?;
    let mut pins = Vec::new();
    let mut stdout = std::io::stdout().lock();
    if args.cards.is_empty() {
        let card =
            embedded::default_card(backend.as_ref(), rand_core::UnwrapErr(getrandom::SysRng))
                .map_err(|e| format!("embedded default card: {e}"))?;
        let pin = certs_fixtures::default_card::PIN.to_owned();
        let _ = writeln!(
            stdout,
            "vcac: slot 0 holds the embedded default card (serial {}); PIN {pin}",
            hex(card.card_id())
        );
        pins.push(pin);
        let first = *readers.first().ok_or("no slot")?;
        set.insert_card(first, card).map_err(|e| e.to_string())?;
    }
    for (dir, &reader) in args.cards.iter().zip(&readers) {
        let card = card_dir::load(
            dir,
            backend.as_ref(),
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .map_err(|e| e.to_string())?;
        let pin = card_dir::pin_of(dir).unwrap_or_default();
        let _ = writeln!(
            stdout,
            "vcac: slot {} holds card {} (serial {}); PIN {pin}",
            reader.0,
            dir.display(),
            hex(card.card_id())
        );
        pins.push(pin);
        set.insert_card(reader, card).map_err(|e| e.to_string())?;
    }
    let (vendor_id, product_id) = args.vid_pid;
    let config = DeviceConfig {
        vendor_id,
        product_id,
        device_release: 0x0100,
        product: "vcac usbredir CCID".into(),
        serial_number: "0001".into(),
        pinpad: pinpad(args.pinpad, pins),
        ..DeviceConfig::default()
    };
    config
        .validate(readers.len())
        .map_err(|e| format!("reader: {e}"))?;
    let how = match &peer {
        Peer::Connect(addr) => format!("connecting to QEMU's usb-redir at {addr}"),
        Peer::Listen(l) => match l.local_addr() {
            Ok(a) => format!("waiting for QEMU's usb-redir on {a}"),
            Err(e) => return Err(format!("--listen: {e}")),
        },
    };
    let _ = writeln!(
        stdout,
        "vcac: USB CCID reader {vendor_id:04X}:{product_id:04X}, {slots} slot(s){}; {how}; {HELP}; \
         SIGUSR1 removes the cards, SIGUSR2 inserts them; Ctrl-C unplugs and stops",
        if config.pinpad.is_some() {
            ", PIN pad"
        } else {
            ""
        }
    );
    let _ = stdout.flush();
    drop(stdout);

    // `unplug` / `plug` on standard input; the session follows it.
    let plugged = Arc::new(AtomicBool::new(true));
    let (signal_handle, signal_thread) = crate::console::start(
        &set,
        &stop,
        signals,
        crate::console::Console {
            unit: "slot",
            help: HELP,
            exit_reply: "unplugging and exiting",
            plugged: Some(Arc::clone(&plugged)),
        },
        !args.no_stdin,
    )?;

    let make_device = || CcidDevice::new(config.clone(), &set, &readers);
    let options = tcp::Options {
        data_path: match args.data_path {
            DataPathArg::Interrupt => DataPath::Interrupt,
            DataPathArg::Bulk => DataPath::Bulk,
        },
        plugged: Some(plugged),
        ..tcp::Options::default()
    };
    let result = match peer {
        Peer::Connect(addr) => tcp::connect(&addr, make_device, &stop, &options)
            .map_err(|e| format!("--connect {addr}: {e}")),
        Peer::Listen(listener) => tcp::listen(listener, make_device, &stop, &options)
            .map_err(|e| format!("--listen: {e}")),
    };
    signal_handle.close();
    let _ = signal_thread.join();
    result?;
    log::info!("stopped");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vid_pid() {
        assert_eq!(parse_vid_pid("08E6:4433"), Ok((0x08E6, 0x4433)));
        assert_eq!(parse_vid_pid("1050:0407"), Ok((0x1050, 0x0407)));
        assert!(parse_vid_pid("08E6").is_err());
        assert!(parse_vid_pid("08E6:XYZ").is_err());
    }
}
