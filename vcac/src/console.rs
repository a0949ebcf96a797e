//! The run-time commands `passthru` and `usbredir` take on standard input:
//! `remove [N]`, `insert [N]`, `list`, `exit`, `help` (and, for
//! `usbredir`, `unplug` / `plug`); and the QEMU peer both reach with
//! `--connect` or `--listen`.

use std::io::{BufRead, Read, Write};
use std::net::{TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use signal_hook::consts::SIGUSR2;
use signal_hook::iterator::{Handle, Signals};
use vreader::{ReaderError, ReaderId, ReaderSet};

/// Where QEMU is: dialled (`--connect HOST:PORT`) or awaited (`--listen
/// HOST:PORT`).
pub(crate) enum Peer {
    Connect(String),
    Listen(TcpListener),
}

impl Peer {
    /// From `--connect` (which wins) or `--listen`: the address must resolve,
    /// and the listening socket is bound now, so that a bad address fails
    /// before anything else starts.
    pub(crate) fn from_args(
        connect: &Option<String>,
        listen: &Option<String>,
    ) -> Result<Peer, String> {
        match (connect, listen) {
            (Some(addr), _) => {
                addr.to_socket_addrs()
                    .map_err(|e| format!("--connect {addr}: {e}"))?;
                Ok(Peer::Connect(addr.clone()))
            }
            (None, Some(addr)) => Ok(Peer::Listen(
                TcpListener::bind(addr).map_err(|e| format!("--listen {addr}: {e}"))?,
            )),
            (None, None) => Err("--connect or --listen is required".into()),
        }
    }
}

/// How one command names what it acts on, and what it says.
#[derive(Clone)]
pub(crate) struct Console {
    /// "reader" or "slot": in replies and errors.
    pub(crate) unit: &'static str,
    /// The help line.
    pub(crate) help: &'static str,
    /// The reply to `exit`.
    pub(crate) exit_reply: &'static str,
    /// Whether the USB device is plugged in, for `unplug` / `plug` (only
    /// where there is a USB device).
    pub(crate) plugged: Option<Arc<AtomicBool>>,
}

/// A command typed on standard input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Remove(u32),
    Insert(u32),
    List,
    Exit,
    Help,
    Unplug,
    Plug,
    Bad(String),
}

/// Parses one line; `None` for a blank one. N defaults to 0.
pub(crate) fn parse_command(line: &str, unit: &str) -> Option<Command> {
    let mut words = line.split_whitespace();
    let verb = words.next()?;
    let index = match words.next() {
        None => Ok(0),
        Some(n) => n
            .parse::<u32>()
            .map_err(|_| format!("bad {unit} number \"{n}\"")),
    };
    if words.next().is_some() {
        return Some(Command::Bad("too many words".into()));
    }
    Some(match (verb, index) {
        ("remove", Ok(n)) => Command::Remove(n),
        ("insert", Ok(n)) => Command::Insert(n),
        ("remove" | "insert", Err(e)) => Command::Bad(e),
        ("list", _) => Command::List,
        ("exit" | "quit", _) => Command::Exit,
        ("unplug", _) => Command::Unplug,
        ("plug", _) => Command::Plug,
        ("help" | "?", _) => Command::Help,
        (other, _) => Command::Bad(format!("unknown command \"{other}\"")),
    })
}

/// Answers commands from standard input until it closes or `exit` (which
/// sets `stop`).
pub(crate) fn read_commands(set: &ReaderSet, stop: &AtomicBool, console: &Console) {
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        // Bounded: a line longer than this is not a command.
        match stdin.lock().take(1024).read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let outcome = |result: Result<(), ReaderError>, n: u32, what: &str| match result {
            Ok(()) => format!("{} {n}: card {what}", console.unit),
            Err(e) => format!("{} {n}: {e}", console.unit),
        };
        let reply = match parse_command(&line, console.unit) {
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
                console.exit_reply.into()
            }
            Some(Command::Help) => console.help.into(),
            Some(c @ (Command::Unplug | Command::Plug)) => match &console.plugged {
                Some(plugged) => {
                    let plug = c == Command::Plug;
                    plugged.store(plug, Ordering::Relaxed);
                    if plug {
                        "reader plugged in".into()
                    } else {
                        "reader unplugged (the cards stay)".into()
                    }
                }
                None => format!("unknown command \"{}\"; {}", line.trim(), console.help),
            },
            Some(Command::Bad(e)) => format!("{e}; {}", console.help),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{reply}");
        let _ = out.flush();
        if stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// Starts the threads that drive the cards' presence at run time: SIGUSR1
/// removes every card and SIGUSR2 inserts them again, and (unless
/// `stdin` is false) commands typed on standard input. Returns the signal
/// iterator's handle (close it to end that thread) and the thread.
pub(crate) fn start(
    set: &Arc<ReaderSet>,
    stop: &Arc<AtomicBool>,
    mut signals: Signals,
    console: Console,
    stdin: bool,
) -> Result<(Handle, JoinHandle<()>), String> {
    let handle = signals.handle();
    let signal_thread = {
        let set = Arc::clone(set);
        let unit = console.unit;
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
                                "{} {}: card {}",
                                unit,
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
    if stdin {
        let set = Arc::clone(set);
        let stop = Arc::clone(stop);
        // Not joined: it may sit in a blocking read of stdin at exit.
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || read_commands(&set, &stop, &console))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
    }
    Ok((handle, signal_thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let p = |l| parse_command(l, "reader");
        assert_eq!(p("remove\n"), Some(Command::Remove(0)));
        assert_eq!(p("  insert 2 "), Some(Command::Insert(2)));
        assert_eq!(p("list"), Some(Command::List));
        assert_eq!(p("quit"), Some(Command::Exit));
        assert_eq!(p("exit"), Some(Command::Exit));
        assert_eq!(p("unplug"), Some(Command::Unplug));
        assert_eq!(p(" plug "), Some(Command::Plug));
        assert_eq!(p(""), None);
        assert_eq!(p("  "), None);
        assert_eq!(
            p("remove x"),
            Some(Command::Bad("bad reader number \"x\"".into()))
        );
        assert_eq!(
            parse_command("insert x", "slot"),
            Some(Command::Bad("bad slot number \"x\"".into()))
        );
        assert!(matches!(p("remove 1 2"), Some(Command::Bad(_))));
        assert!(matches!(p("eject"), Some(Command::Bad(_))));
    }
}
