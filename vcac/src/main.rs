//! `vcac`: the command-line tool. It serves virtual CAC cards to pcscd
//! (vpcd), QEMU (VSCard) and libccid's serial driver, and provisions the
//! test identities they carry. The work is done by the `cac`, `vreader`,
//! `ccid` and `vcac-sources` libraries; this crate parses arguments, sets
//! up logging and signals, and drives them.
#![forbid(unsafe_code)]

mod ccid_serial;
mod console;
mod hostcards;
mod import;
mod inspect;
mod nss;
mod passthru;
mod piv_sign;
mod provision;
mod record;
mod run;
mod script;
mod script_cli;
mod serve;
mod usbredir;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// `vcac --version`: the version and the key backends compiled in.
const VERSION: &str = if cfg!(feature = "openssl") {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (key backends: rustcrypto, openssl)"
    )
} else {
    concat!(env!("CARGO_PKG_VERSION"), " (key backends: rustcrypto)")
};

/// vcac: software CAC smart cards for pcscd, QEMU guests and CI.
///
/// Serves virtual cards backed by certificate files to pcscd (through
/// vsmartcard's vpcd), to QEMU's ccid-card-passthru (VSCard) and to
/// libccid's serial driver, and provisions deterministic test identities.
/// Without --card, every command uses the embedded default card (three
/// RSA-2048 identities, PIN 12345678).
#[derive(Parser, Debug)]
#[command(name = "vcac", version = VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Plug virtual cards into pcscd through vsmartcard's vpcd driver.
    ///
    /// Without --card, serves the embedded default card (three RSA-2048
    /// identities, PIN 12345678). Card N goes to vpcd slot (--slot + N),
    /// i.e. port (vpcd port + slot). Stops cleanly on Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Create a card directory: CA, identities, keys and card.toml.
    Provision(provision::ProvisionArgs),
    /// Create a card directory from PKCS#12 files (.p12, .pfx).
    ///
    /// One identity per file, in order (id0, id1, …): the certificate
    /// becomes idN.pem, the key idN.key (mode 0600). The password comes
    /// from --password-env VAR, else a no-echo prompt on a terminal, else
    /// it is empty.
    Import(import::ImportArgs),
    /// Print a short summary of a card directory.
    Inspect(InspectArgs),
    /// Plug virtual cards into QEMU's ccid-card-passthru over VSCard.
    ///
    /// Connects to QEMU's `-chardev socket,server=on,...` (reconnecting
    /// while QEMU restarts), or with --listen waits for QEMU to connect.
    /// Without --card, uses the embedded default card
    /// (PIN 12345678). Standard input takes `remove [N]`, `insert [N]`,
    /// `list`, `exit`; SIGUSR1 removes the cards, SIGUSR2 inserts them;
    /// Ctrl-C or SIGTERM removes them from the guest and exits.
    #[command(name = "passthru")]
    Passthru(passthru::Args),
    /// Serve a CCID reader on a pty for libccid's serial driver.
    ///
    /// Opens a pseudo-terminal, symlinks it at --link and speaks the GemPC
    /// Twin serial protocol, so pcscd with `DEVICENAME LINK:GemPCTwin` and
    /// `LIBPATH .../serial/libccidtwin.so` reaches the card through the
    /// real CCID driver. Without --card, uses the embedded default card
    /// (PIN 12345678). Stops cleanly on Ctrl-C or SIGTERM.
    #[command(name = "ccid-serial")]
    CcidSerial(ccid_serial::Args),
    /// Put a USB CCID reader on a QEMU guest's USB bus (usb-redir).
    ///
    /// Speaks usbredir to QEMU's `-device usb-redir,chardev=...` (no
    /// usb-ccid needed): the guest's own USB stack, pcscd and libccid see
    /// a reader with one slot per card. Reconnects while QEMU restarts.
    /// Without --card, uses the embedded default card (PIN 12345678).
    /// Standard input takes `remove [N]`, `insert [N]`, `list`, `unplug`,
    /// `plug`, `exit`; SIGUSR1 removes the cards, SIGUSR2 inserts them;
    /// Ctrl-C or SIGTERM unplugs the reader and exits.
    #[command(name = "usbredir")]
    Usbredir(usbredir::Args),
    /// Run an APDU script against a card, with expectations.
    ///
    /// In-process (the embedded default card, or --card DIR|RECORDING; no
    /// pcscd) or against any PC/SC reader (--reader NAME, real cards too).
    /// Lines: `CMD` (send, print), `CMD => EXPECTED` (XX any byte, `*` any
    /// bytes before the SW), reset, power-off, power-on, expect-atr HEX,
    /// remove, insert, exit, # comments. scriptor files run unchanged.
    /// Ends with `N passed, M failed`; exit status 1 on any failure.
    Script(script_cli::Args),
    /// Run a command with a private pcscd that holds the cards.
    ///
    /// Starts its own pcscd (own config, own socket, free vpcd ports, in a
    /// private mount namespace; the machine's pcscd is not touched), plugs
    /// the cards in, waits until pcscd sees them, runs COMMAND with
    /// PCSCLITE_CSOCK_NAME, VCAC_READER and VCAC_READERS set, tears
    /// everything down and exits with COMMAND's status.
    Run(run::Args),
    /// Serve a recording (from --record) as a card to pcscd via vpcd.
    ///
    /// Strict: a command that differs from the recorded one is answered
    /// 6F 00 and logged with the expected and the received bytes; on exit
    /// (Ctrl-C, SIGTERM) the run is summarised, exit status 1 if any
    /// command differed.
    Replay(ReplayArgs),
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// The recording (apdu4j format: `# ATR:` header, then command and
    /// response lines).
    file: PathBuf,
    /// Address of pcscd's vpcd driver for slot 0.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:35963")]
    vpcd: String,
    /// vpcd slot (port + N).
    #[arg(long, value_name = "N", default_value_t = 0)]
    slot: u16,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// A card directory (card.toml, certificates, keys) or a recording
    /// to replay; repeat for more cards. Default: the embedded default card.
    #[arg(long = "card", value_name = "DIR|RECORDING")]
    cards: Vec<PathBuf>,
    /// Address of pcscd's vpcd driver for slot 0.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:35963")]
    vpcd: String,
    /// vpcd slot of the first card (slot N listens on port + N).
    #[arg(long, value_name = "N", default_value_t = 0)]
    slot: u16,
    /// Key backend for the cards' private keys.
    #[arg(long, value_enum, default_value_t = crate::Backend::Rustcrypto)]
    backend: crate::Backend,
    /// Record every exchange of card 0 to FILE (card i to FILE.i), in
    /// apdu4j's format; PIN bytes masked.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Keep PINs in the recording.
    #[arg(long, requires = "record")]
    record_secrets: bool,
    /// Host cards: PKCS#11 tokens, a relayed PC/SC card.
    #[command(flatten)]
    host: hostcards::HostArgs,
    /// An NSS database's certificates as one card.
    #[command(flatten)]
    nss: nss::NssArgs,
}

/// A flag set by the first SIGINT or SIGTERM; a second one exits at once.
fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, String> {
    use std::sync::{atomic::AtomicBool, Arc};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop))
            .map_err(|e| format!("cannot install signal handler: {e}"))?;
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .map_err(|e| format!("cannot install signal handler: {e}"))?;
    }
    Ok(stop)
}

/// The key backends `--backend` offers.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// Pure Rust (RustCrypto `rsa` and `p256`), blinded, constant time.
    Rustcrypto,
    /// The system's OpenSSL libcrypto (needs a build with the `openssl`
    /// feature).
    Openssl,
}

/// The key backend named on the command line.
fn key_backend(backend: Backend) -> Result<Box<dyn cac::keys::KeyBackend>, String> {
    match backend {
        Backend::Rustcrypto => Ok(Box::new(cac::keys::RustCrypto)),
        #[cfg(feature = "openssl")]
        Backend::Openssl => Ok(Box::new(cac::keys::openssl::OpenSsl)),
        #[cfg(not(feature = "openssl"))]
        Backend::Openssl => Err(
            "--backend openssl: this vcac was built without the `openssl` feature \
             (cargo build --release --features openssl)"
                .into(),
        ),
    }
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// The card directory.
    dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    logger.format_timestamp_millis();
    // ccid::vpcd traces APDU bytes at debug level; a host card's PIN must
    // never reach a log, so host cards keep that trace off.
    let host_cards = match &cli.command {
        Command::Serve(a) => a.host.any() || a.nss.any(),
        Command::Passthru(a) => a.host_cards(),
        _ => false,
    };
    if host_cards {
        logger.filter_module("ccid::vpcd", log::LevelFilter::Info);
    }
    logger.init();
    let result = match cli.command {
        Command::Script(args) => {
            return match script_cli::run(args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("vcac: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Run(args) => {
            return match run::run(args) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("vcac run: {e}");
                    ExitCode::from(125)
                }
            }
        }
        Command::Replay(args) => serve::run(ServeArgs {
            cards: vec![args.file],
            vpcd: args.vpcd,
            slot: args.slot,
            backend: Backend::Rustcrypto,
            record: None,
            record_secrets: false,
            host: hostcards::HostArgs::default(),
            nss: nss::NssArgs::default(),
        }),
        Command::Serve(args) => serve::run(args),
        Command::Provision(args) => provision::run(args),
        Command::Import(args) => import::run(args),
        Command::Inspect(args) => inspect::run(&args.dir),
        Command::Passthru(args) => passthru::run(args),
        Command::CcidSerial(args) => ccid_serial::run(args),
        Command::Usbredir(args) => usbredir::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vcac: {e}");
            ExitCode::FAILURE
        }
    }
}
