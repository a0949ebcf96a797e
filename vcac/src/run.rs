//! `vcac run`: a private pcscd with the cards plugged in, for one command.
//!
//! ```text
//!  vcac run ──spawn──► setpriv --pdeathsig TERM unshare [--user --map-root-user] --mount
//!     │                   sh: mount --bind TMP/run /run/pcscd; exec pcscd -f -c TMP/conf
//!     │                        └─ vpcd listens on free ports P, P+1 (readers "vcac 00 00", "vcac 00 01")
//!     ├─ vpcd::serve threads ──TCP──► P, P+1       (the cards, in-process)
//!     ├─ pcsc (PCSCLITE_CSOCK_NAME=TMP/run/pcscd.comm): wait until every card is present
//!     └─ spawn COMMAND with PCSCLITE_CSOCK_NAME, VCAC_READER, VCAC_READERS; exit with its status
//! ```
//!
//! pcscd 1.9.9 (Debian 12) creates its socket at the compiled-in
//! `/run/pcscd/pcscd.comm` (only clients read `PCSCLITE_CSOCK_NAME`) and
//! refuses to start when that socket exists, so the private pcscd runs in
//! its own mount namespace where our temporary directory is bind-mounted
//! on `/run/pcscd`: the socket is then `TMP/run/pcscd.comm` for everyone
//! else. Root gets the namespace directly; other users through an
//! unprivileged user namespace (`unshare --user --map-root-user`). The
//! machine's own pcscd is never touched.
//!
//! One pcscd holds at most two vpcd cards: vsmartcard's driver keys its
//! state by slot number only, so a second `reader.conf` entry (another
//! port) aliases the first one's slots — one card would show up in two
//! readers.

use std::ffi::{CString, OsString};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccid::vpcd;
use vreader::ReaderSet;

use crate::record;

/// vsmartcard's pcscd driver.
const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

/// Options of `vcac run`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// A card directory or a recording; repeat for more cards. Default:
    /// the embedded default card.
    #[arg(long = "card", value_name = "DIR|RECORDING")]
    cards: Vec<PathBuf>,
    /// Readers announced to COMMAND in VCAC_READERS (1 or 2; default:
    /// one per card). pcscd always has vpcd's two readers, "vcac 00 00"
    /// and "vcac 00 01"; cards fill them in order, the rest stay empty.
    #[arg(long, value_name = "N")]
    readers: Option<usize>,
    /// Record every exchange of card 0 to FILE (card i to FILE.i).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Keep PINs in the recording.
    #[arg(long, requires = "record")]
    record_secrets: bool,
    /// Seconds to wait for pcscd and the cards.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    timeout: u64,
    /// Key backend for the cards' private keys.
    #[arg(long, value_enum, default_value_t = crate::Backend::Rustcrypto)]
    backend: crate::Backend,
    /// The command to run (after `--`).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

/// Finds a program on PATH (and in the sbin directories, where pcscd
/// lives but a user's PATH may not look).
fn which(program: &str, extra: &[&str]) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Checks the peers, naming the Debian packages that provide them.
fn require_peers() -> Result<PathBuf, String> {
    let pcscd = which("pcscd", &["/usr/sbin", "/sbin"]);
    let vpcd = Path::new(VPCD_DRIVER).is_file();
    let mut missing = Vec::new();
    if pcscd.is_none() {
        missing.push("pcscd (Debian package `pcscd`)");
    }
    if !vpcd {
        missing.push("vsmartcard's vpcd driver (Debian package `vsmartcard-vpcd`)");
    }
    if which("unshare", &[]).is_none() {
        missing.push("unshare (Debian package `util-linux`)");
    }
    match pcscd {
        Some(p) if missing.is_empty() => Ok(p),
        _ => Err(format!(
            "missing {}: apt-get install pcscd vsmartcard-vpcd",
            missing.join(", ")
        )),
    }
}

/// `n` base ports P with P and P + 1 both free (vpcd listens on all
/// addresses), all distinct. The listeners are dropped on return; a
/// port taken in between makes pcscd miss a reader, and the caller
/// retries.
fn free_port_pairs(n: usize) -> Result<Vec<u16>, String> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    let mut tries = 0;
    while ports.len() < n {
        tries += 1;
        if tries > 200 {
            return Err("cannot find free TCP ports for vpcd".into());
        }
        let a = TcpListener::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
        let p = a.local_addr().map_err(|e| e.to_string())?.port();
        let Some(next) = p.checked_add(1) else {
            continue;
        };
        if let Ok(b) = TcpListener::bind(("0.0.0.0", next)) {
            ports.push(p);
            held.push(a);
            held.push(b);
        }
    }
    Ok(ports)
}

/// The private pcscd, its files, and the card threads; everything stops
/// and goes away on drop.
struct Private {
    pcscd: Option<Child>,
    stop_cards: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl Private {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("pcscd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines
            .get(lines.len().saturating_sub(20)..)
            .unwrap_or_default()
            .join("\n")
    }

    fn stop_pcscd(&mut self) {
        if let Some(mut child) = self.pcscd.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.stop_cards.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.stop_pcscd();
    }
}

/// Starts pcscd with `pairs` vpcd entries on `ports`.
fn start_pcscd(pcscd: &Path, ports: &[u16]) -> Result<Private, String> {
    let dir = tempfile::Builder::new()
        .prefix("vcac-run-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let conf = dir.path().join("reader.conf.d");
    let run = dir.path().join("run");
    for d in [&conf, &run] {
        std::fs::create_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    for (k, port) in ports.iter().enumerate() {
        std::fs::write(
            conf.join(format!("vcac{k}")),
            format!(
                "FRIENDLYNAME \"vcac\"\nDEVICENAME /dev/null:0x{port:04X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:04X}\n"
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
    }
    let log = std::fs::File::create(dir.path().join("pcscd.log")).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    // /run/pcscd must exist as a mount point: root makes it (as the
    // distribution would); a user namespace mounts a tmpfs on /run first.
    let script = "[ -d /run/pcscd ] || mkdir -p /run/pcscd 2>/dev/null || \
                  { mount -t tmpfs vcac /run && mkdir /run/pcscd; } && \
                  mount --bind \"$1\" /run/pcscd && exec \"$3\" -f -c \"$2\"";
    let root = nix::unistd::geteuid().is_root();
    let mut cmd = if which("setpriv", &[]).is_some() {
        // pcscd goes when vcac dies, even by SIGKILL.
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "TERM", "--", "unshare"]);
        c
    } else {
        Command::new("unshare")
    };
    if !root {
        cmd.args(["--user", "--map-root-user"]);
    }
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(&run)
    .arg(&conf)
    .arg(pcscd)
    .env_remove("PCSCLITE_CSOCK_NAME")
    .stdin(Stdio::null())
    .stdout(log)
    .stderr(log2);
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start pcscd with unshare: {e}"))?;
    Ok(Private {
        pcscd: Some(child),
        stop_cards: Arc::new(AtomicBool::new(false)),
        threads: Vec::new(),
        dir,
    })
}

/// Cards one pcscd can hold through vpcd (see the module docs).
const MAX_CARDS: usize = 2;

/// The reader name pcscd gives vpcd slot `i`.
fn reader_name(i: usize) -> String {
    format!("vcac 00 {i:02X}")
}

/// Polls until pcscd lists every reader; `Err(true)` = retry with other
/// ports (a reader is missing), `Err(false)` = give up.
fn wait_for_readers(
    private: &mut Private,
    names: &[String],
    timeout: Duration,
    signal: &AtomicUsize,
) -> Result<pcsc::Context, (bool, String)> {
    let start = Instant::now();
    let mut listed_some = None;
    loop {
        if signal.load(Ordering::Relaxed) != 0 {
            return Err((false, "interrupted".into()));
        }
        if let Some(child) = &mut private.pcscd {
            if let Ok(Some(status)) = child.try_wait() {
                return Err((
                    false,
                    format!(
                        "the private pcscd exited ({status}) while starting{}:\n{}",
                        if nix::unistd::geteuid().is_root() {
                            ""
                        } else {
                            " (as a normal user it needs unprivileged user namespaces: \
                             sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)"
                        },
                        private.log_tail()
                    ),
                ));
            }
        }
        if let Ok(ctx) = pcsc::Context::establish(pcsc::Scope::User) {
            if let Ok(readers) = ctx.list_readers_owned() {
                let got: Vec<String> = readers
                    .iter()
                    .map(|r| r.to_string_lossy().into_owned())
                    .collect();
                if names.iter().all(|n| got.contains(n)) {
                    return Ok(ctx);
                }
                listed_some.get_or_insert_with(Instant::now);
            }
        }
        // Readers appear together at start-up; one missing 2 s after the
        // first answer lost its port.
        if listed_some.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            return Err((
                true,
                format!("pcscd did not create every reader:\n{}", private.log_tail()),
            ));
        }
        if start.elapsed() > timeout {
            return Err((
                false,
                format!(
                    "pcscd did not answer within {timeout:?}:\n{}",
                    private.log_tail()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until every reader in `names` shows a card.
fn wait_for_cards(
    ctx: &pcsc::Context,
    names: &[String],
    timeout: Duration,
    signal: &AtomicUsize,
) -> Result<(), String> {
    let mut states = names
        .iter()
        .map(|n| {
            CString::new(n.as_str())
                .map(|c| pcsc::ReaderState::new(c, pcsc::State::UNAWARE))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    loop {
        match ctx.get_status_change(Duration::from_millis(50), &mut states) {
            Ok(()) | Err(pcsc::Error::Timeout) => {}
            Err(e) => return Err(format!("pcscd: {e}")),
        }
        if states
            .iter()
            .all(|s| s.event_state().contains(pcsc::State::PRESENT))
        {
            return Ok(());
        }
        for s in &mut states {
            s.sync_current_state();
        }
        if signal.load(Ordering::Relaxed) != 0 {
            return Err("interrupted".into());
        }
        if start.elapsed() > timeout {
            let missing: Vec<&str> = states
                .iter()
                .filter(|s| !s.event_state().contains(pcsc::State::PRESENT))
                .map(|s| s.name().to_str().unwrap_or("?"))
                .collect();
            return Err(format!("no card in {missing:?} after {timeout:?}"));
        }
    }
}

fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xFF).unwrap_or(1),
        (None, Some(s)) => u8::try_from((128 + s) & 0xFF).unwrap_or(1),
        _ => 1,
    }
}

fn send(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Runs `vcac run`; the command's exit status.
pub(crate) fn run(args: Args) -> Result<u8, String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let signal = Arc::new(AtomicUsize::new(0));
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        let n = usize::try_from(sig).unwrap_or(usize::MAX);
        signal_hook::flag::register_usize(sig, Arc::clone(&signal), n)
            .map_err(|e| format!("cannot install signal handler: {e}"))?;
    }
    let pcscd = require_peers()?;
    let Some((program, program_args)) = args.command.split_first() else {
        return Err("no COMMAND given (vcac run [OPTIONS] -- COMMAND [ARGS...])".into());
    };
    let program_str = program.to_string_lossy();
    let program_path =
        which(&program_str, &[]).ok_or_else(|| format!("{program_str}: command not found"))?;

    let backend = crate::key_backend(args.backend)?;
    let cards = record::load_cards(&args.cards, backend.as_ref())?;
    let mut cards = record::wrap_for_recording(cards, args.record.as_deref(), args.record_secrets)?;
    if cards.len() > MAX_CARDS {
        return Err(format!(
            "{} cards: one pcscd holds at most {MAX_CARDS} vpcd cards \
             (start another `vcac run` for more)",
            cards.len()
        ));
    }
    let readers = args.readers.unwrap_or(cards.len());
    if !(1..=MAX_CARDS).contains(&readers) {
        return Err(format!(
            "--readers {readers}: vpcd gives pcscd 1 or 2 readers"
        ));
    }
    let pairs = 1;
    let all_names: Vec<String> = (0..MAX_CARDS).map(reader_name).collect();
    let announced = all_names
        .get(..readers.max(cards.len()))
        .unwrap_or_default()
        .join("\n");
    let card_names: Vec<String> = all_names.iter().take(cards.len()).cloned().collect();
    let timeout = Duration::from_secs(args.timeout);
    let started = Instant::now();

    let mut attempt = 0;
    let (mut private, ctx, ports) = loop {
        attempt += 1;
        let ports = free_port_pairs(pairs)?;
        let mut private = start_pcscd(&pcscd, &ports)?;
        let socket = private.dir.path().join("run").join("pcscd.comm");
        // Our own libpcsclite (the readiness checks) and the command's
        // find the private pcscd here. Set before any thread starts.
        std::env::set_var("PCSCLITE_CSOCK_NAME", &socket);
        match wait_for_readers(&mut private, &all_names, timeout, &signal) {
            Ok(ctx) => break (private, ctx, ports),
            Err((true, why)) if attempt < 3 => {
                log::warn!("{why}; retrying with other ports");
            }
            Err((_, why)) => return Err(why),
        }
    };
    if let Some(child) = &private.pcscd {
        log::debug!(
            "private pcscd (pid {}) at {}",
            child.id(),
            private.dir.path().join("run/pcscd.comm").display()
        );
    }

    let set = ReaderSet::new();
    let mut replays = Vec::new();
    for (i, l) in cards.drain(..).enumerate() {
        let port = ports
            .get(i / 2)
            .map(|p| p + u16::try_from(i % 2).unwrap_or(0))
            .ok_or("internal: no port for a card")?;
        let reader = set
            .add_reader(&format!("vcac run {i}"))
            .map_err(|e| e.to_string())?;
        if let Some(log) = l.replay {
            replays.push((l.label.clone(), log));
        }
        eprintln!(
            "vcac run: {} in reader \"{}\"{}{}",
            l.label,
            all_names.get(i).map_or("?", String::as_str),
            l.serial
                .map(|s| format!(", serial {s}"))
                .unwrap_or_default(),
            l.pin.map(|p| format!(", PIN {p}")).unwrap_or_default()
        );
        set.insert_card(reader, l.card).map_err(|e| e.to_string())?;
        let handle = set.handle(reader).map_err(|e| e.to_string())?;
        let stop = Arc::clone(&private.stop_cards);
        let addr = format!("127.0.0.1:{port}");
        let t = std::thread::Builder::new()
            .name(format!("vpcd {addr}"))
            .spawn(move || {
                if let Err(e) = vpcd::serve(&addr, &handle, &stop) {
                    log::error!("{}: {e}", handle.name());
                }
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        private.threads.push(t);
    }
    wait_for_cards(&ctx, &card_names, timeout, &signal)?;
    drop(ctx);
    let socket = private.dir.path().join("run").join("pcscd.comm");
    eprintln!(
        "vcac run: pcscd ready in {} ms (PCSCLITE_CSOCK_NAME={})",
        started.elapsed().as_millis(),
        socket.display()
    );

    let mut cmd = if which("setpriv", &[]).is_some() {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "TERM", "--"]).arg(&program_path);
        c
    } else {
        Command::new(&program_path)
    };
    cmd.args(program_args)
        .env("PCSCLITE_CSOCK_NAME", &socket)
        .env("VCAC_READER", card_names.first().map_or("", String::as_str))
        .env("VCAC_READERS", announced);
    let mut child = cmd.spawn().map_err(|e| format!("{program_str}: {e}"))?;
    let mut forwarded_at: Option<Instant> = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {program_str}: {e}")),
        }
        let sig = signal.swap(0, Ordering::Relaxed);
        if sig != 0 {
            let s = i32::try_from(sig)
                .ok()
                .and_then(|s| nix::sys::signal::Signal::try_from(s).ok())
                .unwrap_or(nix::sys::signal::Signal::SIGTERM);
            send(child.id(), s);
            forwarded_at.get_or_insert_with(Instant::now);
        }
        if forwarded_at.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
            send(child.id(), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(private);
    let code = exit_code(status);
    if !replays.is_empty() {
        if let Err(e) = record::replay_verdict(&replays) {
            eprintln!("vcac run: {e}");
            return Ok(if code == 0 { 1 } else { code });
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn port_pairs_are_distinct_and_free() {
        let ports = free_port_pairs(3).unwrap();
        assert_eq!(ports.len(), 3);
        for p in &ports {
            TcpListener::bind(("0.0.0.0", *p)).unwrap();
            TcpListener::bind(("0.0.0.0", p + 1)).unwrap();
        }
        let mut all: Vec<u16> = ports.iter().flat_map(|p| [*p, p + 1]).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn names_and_exit_codes() {
        assert_eq!(reader_name(0), "vcac 00 00");
        assert_eq!(reader_name(1), "vcac 00 01");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }
}
