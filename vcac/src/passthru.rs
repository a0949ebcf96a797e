//! `vcac passthru`: the cards go to QEMU's `ccid-card-passthru` over
//! VSCard (what libcacard's `vscclient` did).

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cac::keys::KeyBackend;
use ccid::vscard::connect;
use signal_hook::consts::{SIGUSR1, SIGUSR2};
use vcac_sources::{dir as card_dir, embedded};
use vreader::{ReaderError, ReaderId, ReaderSet};

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
    /// A card directory (card.toml, certificates, keys); repeat for more
    /// cards (QEMU takes one per ccid-card-passthru device). Default: the
    /// embedded default card.
    #[arg(long = "card", value_name = "DIR")]
    cards: Vec<PathBuf>,
    /// Do not read commands from standard input.
    #[arg(long)]
    no_stdin: bool,
    /// Key backend for the cards' private keys.
    #[arg(long, value_enum, default_value_t = crate::Backend::Rustcrypto)]
    backend: crate::Backend,
}

const HELP: &str =
    "commands: remove [N] | insert [N] | list | exit   (N: reader number, default 0)";

/// Where the VSCard host is.
enum Peer {
    Connect(String),
    Listen(TcpListener),
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    let peer = match (&args.connect, &args.listen) {
        (Some(addr), _) => {
            addr.to_socket_addrs()
                .map_err(|e| format!("--connect {addr}: {e}"))?;
            Peer::Connect(addr.clone())
        }
        (None, Some(addr)) => {
            Peer::Listen(TcpListener::bind(addr).map_err(|e| format!("--listen {addr}: {e}"))?)
        }
        (None, None) => return Err("--connect or --listen is required".into()),
    };

    let stop = crate::stop_on_signals()?;

    // Before anything slow, so an early SIGUSR1 cannot kill the process.
    let mut signals = signal_hook::iterator::Signals::new([SIGUSR1, SIGUSR2])
        .map_err(|e| format!("cannot install signal handler: {e}"))?;

    let set = Arc::new(ReaderSet::new());
    let mut stdout = std::io::stdout().lock();
    let backend = crate::key_backend(args.backend)?;
    let loaded = load_cards(&args.cards, backend.as_ref())?;
    for (i, (label, card, pin)) in loaded.into_iter().enumerate() {
        let serial: String = card.card_id().iter().map(|b| format!("{b:02X}")).collect();
        let reader = set
            .add_reader(&format!("vcac passthru {i}"))
            .map_err(|e| e.to_string())?;
        set.insert_card(reader, card).map_err(|e| e.to_string())?;
        let _ = writeln!(
            stdout,
            "vcac: reader {} holds {label} (serial {serial}); PIN {pin}",
            reader.0
        );
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

    let signal_handle = signals.handle();
    let signal_thread = {
        let set = Arc::clone(&set);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let insert = sig == SIGUSR2;
                    for r in set.list() {
                        let result = if insert {
                            set.force_insert(r.id)
                        } else {
                            set.force_remove(r.id)
                        };
                        match result {
                            Ok(()) => log::info!(
                                "reader {}: card {}",
                                r.id.0,
                                if insert { "inserted" } else { "removed" }
                            ),
                            Err(e) => log::info!("{e}"),
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?
    };

    if !args.no_stdin {
        let set = Arc::clone(&set);
        let stop = Arc::clone(&stop);
        // Not joined: it may sit in a blocking read of stdin at exit.
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || read_commands(&set, &stop))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
    }

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

type Loaded = (String, cac::Card, String);

fn load_cards(dirs: &[PathBuf], backend: &dyn KeyBackend) -> Result<Vec<Loaded>, String> {
    if dirs.is_empty() {
        let card = embedded::default_card(backend, rand_core::UnwrapErr(getrandom::SysRng))
            .map_err(|e| format!("embedded default card: {e}"))?;
        return Ok(vec![(
            "the embedded default card".to_owned(),
            card,
            certs_fixtures::default_card::PIN.to_owned(),
        )]);
    }
    dirs.iter()
        .map(|dir| {
            let card = card_dir::load(dir, backend, rand_core::UnwrapErr(getrandom::SysRng))
                .map_err(|e| e.to_string())?;
            let pin = card_dir::pin_of(dir).unwrap_or_else(|| "?".into());
            Ok((format!("card {}", dir.display()), card, pin))
        })
        .collect()
}

/// A command typed on standard input.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Remove(u32),
    Insert(u32),
    List,
    Exit,
    Help,
    Bad(String),
}

fn parse_command(line: &str) -> Option<Command> {
    let mut words = line.split_whitespace();
    let verb = words.next()?;
    let reader = match words.next() {
        None => Ok(0),
        Some(n) => n
            .parse::<u32>()
            .map_err(|_| format!("bad reader number \"{n}\"")),
    };
    if words.next().is_some() {
        return Some(Command::Bad("too many words".into()));
    }
    Some(match (verb, reader) {
        ("remove", Ok(n)) => Command::Remove(n),
        ("insert", Ok(n)) => Command::Insert(n),
        ("remove" | "insert", Err(e)) => Command::Bad(e),
        ("list", _) => Command::List,
        ("exit" | "quit", _) => Command::Exit,
        ("help" | "?", _) => Command::Help,
        (other, _) => Command::Bad(format!("unknown command \"{other}\"")),
    })
}

fn read_commands(set: &ReaderSet, stop: &AtomicBool) {
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        // Bounded: a line longer than this is not a command.
        match stdin.lock().take(1024).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = match parse_command(&line) {
            None => continue,
            Some(Command::Remove(n)) => outcome(set.force_remove(ReaderId(n)), n, "removed"),
            Some(Command::Insert(n)) => outcome(set.force_insert(ReaderId(n)), n, "inserted"),
            Some(Command::List) => set
                .list()
                .iter()
                .map(|r| {
                    format!(
                        "{:3} {} {}",
                        r.id.0,
                        if r.card_present {
                            "CARD_PRESENT"
                        } else {
                            "            "
                        },
                        r.name
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Some(Command::Exit) => {
                stop.store(true, Ordering::Relaxed);
                "exiting".into()
            }
            Some(Command::Help) => HELP.into(),
            Some(Command::Bad(e)) => format!("{e}; {HELP}"),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{reply}");
        let _ = out.flush();
        if stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

fn outcome(result: Result<(), ReaderError>, n: u32, what: &str) -> String {
    match result {
        Ok(()) => format!("reader {n}: card {what}"),
        Err(e) => format!("reader {n}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_command("remove\n"), Some(Command::Remove(0)));
        assert_eq!(parse_command("  insert 2 "), Some(Command::Insert(2)));
        assert_eq!(parse_command("list"), Some(Command::List));
        assert_eq!(parse_command("quit"), Some(Command::Exit));
        assert_eq!(parse_command(""), None);
        assert!(matches!(parse_command("remove x"), Some(Command::Bad(_))));
        assert!(matches!(parse_command("remove 1 2"), Some(Command::Bad(_))));
        assert!(matches!(parse_command("eject"), Some(Command::Bad(_))));
    }
}
