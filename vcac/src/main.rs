//! `vcac`: the command-line tool. It serves virtual CAC cards to pcscd
//! (vpcd), QEMU (VSCard) and libccid's serial driver, and provisions the
//! test identities they carry. The work is done by the `cac`, `vreader`,
//! `ccid` and `vcac-sources` libraries; this crate parses arguments, sets
//! up logging and signals, and drives them.
#![forbid(unsafe_code)]

mod ccid_serial;
mod inspect;
mod passthru;
mod provision;
mod serve;

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
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// A card directory (card.toml, certificates, keys); repeat for more
    /// cards. Default: the embedded default card.
    #[arg(long = "card", value_name = "DIR")]
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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Provision(args) => provision::run(args),
        Command::Inspect(args) => inspect::run(&args.dir),
        Command::Passthru(args) => passthru::run(args),
        Command::CcidSerial(args) => ccid_serial::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vcac: {e}");
            ExitCode::FAILURE
        }
    }
}
