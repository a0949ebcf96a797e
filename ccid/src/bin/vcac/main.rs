//! `vcac`: a virtual CAC smart card for pcscd, and the test identities to
//! put on it.
#![forbid(unsafe_code)]

mod inspect;
mod provision;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// A virtual CAC smart card: serve it to pcscd, provision its identities.
#[derive(Parser, Debug)]
#[command(name = "vcac", version, about, long_about = None)]
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vcac: {e}");
            ExitCode::FAILURE
        }
    }
}
