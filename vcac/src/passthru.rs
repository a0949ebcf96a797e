//! `vcac passthru`: the cards go to QEMU's `ccid-card-passthru` over
//! VSCard (what libcacard's `vscclient` did).

use std::io::Write;
use std::path::PathBuf;

use std::sync::Arc;

use crate::console::Peer;
use ccid::vscard::connect;
use signal_hook::consts::{SIGUSR1, SIGUSR2};
use vreader::ReaderSet;

/// Options of `vcac passthru`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("host").required(true).args(["connect", "listen"])))]
pub(crate) struct Args {
    /// Address of QEMU's VSCard chardev when QEMU listens (`-chardev
    /// socket,server=on,wait=off,host=H,port=P,id=cc -device
    /// ccid-card-passthru,chardev=cc`); reconnects while QEMU restarts.
    #[arg(long, value_name = "HOST:PORT")]
    connect: Option<String>,
    /// Listen here and wait for QEMU to connect (`-chardev
    /// socket,host=H,port=P,reconnect=1,id=cc`, libvirt's
    /// `<source mode='connect'/>`).
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<String>,
    /// A card directory (card.toml, certificates, keys) or a recording to
    /// replay; repeat for more cards (QEMU takes one per
    /// ccid-card-passthru device). Default: the embedded default card.
    #[arg(long = "card", value_name = "DIR|RECORDING")]
    cards: Vec<PathBuf>,
    /// Record every exchange of card 0 to FILE (card i to FILE.i), in
    /// apdu4j's format; PIN bytes masked.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Keep PINs in the recording.
    #[arg(long, requires = "record")]
    record_secrets: bool,
    /// Do not read commands from standard input.
    #[arg(long)]
    no_stdin: bool,
    /// Key backend for the cards' private keys.
    #[arg(long, value_enum, default_value_t = crate::Backend::Rustcrypto)]
    backend: crate::Backend,
    /// Host cards: PKCS#11 tokens, a relayed PC/SC card.
    #[command(flatten)]
    host: crate::hostcards::HostArgs,
    /// An NSS database's certificates as one card.
    #[command(flatten)]
    nss: crate::nss::NssArgs,
}

impl Args {
    /// True when host cards (or an NSS database, whose PIN is its
    /// password) are asked for.
    pub(crate) fn host_cards(&self) -> bool {
        self.host.any() || self.nss.any()
    }
}

const HELP: &str =
    "commands: remove [N] | insert [N] | list | exit   (N: reader number, default 0)";

pub(crate) fn run(args: Args) -> Result<(), String> {
    let peer = Peer::from_args(&args.connect, &args.listen)?;

    let stop = crate::stop_on_signals()?;

    // Before anything slow, so an early SIGUSR1 cannot kill the process.
    let signals = signal_hook::iterator::Signals::new([SIGUSR1, SIGUSR2])
        .map_err(|e| format!("cannot install signal handler: {e}"))?;

    let set = Arc::new(ReaderSet::new());
    let mut stdout = std::io::stdout().lock();
    let backend = crate::key_backend(args.backend)?;
    // Host cards or an NSS database alone: no embedded default card beside them.
    let loaded = if args.cards.is_empty() && (args.host.any() || args.nss.any()) {
        Vec::new()
    } else {
        crate::record::load_cards(&args.cards, backend.as_ref())?
    };
    let mut loaded =
        crate::record::wrap_for_recording(loaded, args.record.as_deref(), args.record_secrets)?;
    let nss_backend = crate::key_backend(args.backend)?.into();
    if let Some((label, card, pin)) = crate::nss::load(&args.nss, nss_backend, &mut stdout)? {
        loaded.push(crate::record::Loaded {
            serial: Some(card.card_id().iter().map(|b| format!("{b:02X}")).collect()),
            label,
            card: Box::new(card),
            pin: Some(pin),
            replay: None,
        });
    }
    for (i, l) in loaded.into_iter().enumerate() {
        let reader = set
            .add_reader(&format!("vcac passthru {i}"))
            .map_err(|e| e.to_string())?;
        set.insert_card(reader, l.card).map_err(|e| e.to_string())?;
        let serial = l
            .serial
            .map(|s| format!(" (serial {s})"))
            .unwrap_or_default();
        let pin = l.pin.map(|p| format!("; PIN {p}")).unwrap_or_default();
        let _ = writeln!(
            stdout,
            "vcac: reader {} holds {}{serial}{pin}",
            reader.0, l.label
        );
    }
    let first = set.list().len();
    let host_readers = crate::hostcards::start(
        &args.host,
        &set,
        |i| format!("vcac passthru {}", first + i),
        &stop,
    )?;
    for (what, reader) in host_readers {
        let _ = writeln!(stdout, "vcac: reader {} holds {what}", reader.0);
    }
    let how = match &peer {
        Peer::Connect(addr) => format!("connecting to the VSCard host at {addr}"),
        Peer::Listen(l) => match l.local_addr() {
            Ok(a) => format!("waiting for a VSCard host on {a}"),
            Err(e) => return Err(format!("--listen: {e}")),
        },
    };
    let _ = writeln!(
        stdout,
        "vcac: {how}; {HELP}; SIGUSR1 removes the cards, SIGUSR2 inserts them; Ctrl-C stops"
    );
    let _ = stdout.flush();
    drop(stdout);

    let (signal_handle, signal_thread) = crate::console::start(
        &set,
        &stop,
        signals,
        crate::console::Console {
            unit: "reader",
            help: HELP,
            exit_reply: "exiting",
            plugged: None,
        },
        !args.no_stdin,
    )?;

    let result = match peer {
        Peer::Connect(addr) => {
            connect::run(&addr, &set, &stop).map_err(|e| format!("--connect {addr}: {e}"))
        }
        Peer::Listen(listener) => {
            connect::listen(listener, &set, &stop).map_err(|e| format!("--listen: {e}"))
        }
    };
    signal_handle.close();
    let _ = signal_thread.join();
    result?;
    log::info!("stopped");
    Ok(())
}
