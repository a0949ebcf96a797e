//! A private pcscd with vsmartcard's vpcd driver, in its own mount and
//! network namespace (so it never meets the machine's pcscd or another
//! test's), and the two cards it serves: ours through `ccid::vpcd::serve`,
//! and the floor, a minimal vpcd card that answers `90 00` to everything.
//!
//! ```text
//!   this process                         namespace (unshare -m -n)
//!   PC/SC client ── unix socket ──────► pcscd ── vpcd :35963 ◄── ccid::vpcd::serve ◄── ReaderHandle ◄── cac::Card
//!   (libpcsclite)  (bind-mounted dir)         └─ vpcd :35964 ◄── floor card (90 00)
//! ```
//!
//! The card threads join pcscd's network namespace with `setns`, so they
//! reach its loopback; the client reaches pcscd's socket through a
//! directory bind-mounted on the namespace's `/run/pcscd`.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// vsmartcard's pcscd driver.
pub(crate) const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
/// vpcd's first port; slot 1 listens on the next.
pub(crate) const PORT: u16 = 35963;
/// pcscd's name for the reader our card plugs into (slot 0).
pub(crate) const OUR_READER: &str = "Virtual PCD 00 00";
/// pcscd's name for the floor card's reader (slot 1).
pub(crate) const FLOOR_READER: &str = "Virtual PCD 00 01";

/// Fails unless running as root with the programs this needs.
pub(crate) fn require_peers() {
    let uid = Command::new("id").arg("-u").output().map(|o| o.stdout);
    assert_eq!(
        uid.as_deref()
            .map(|u| String::from_utf8_lossy(u).trim().to_owned())
            .ok()
            .as_deref(),
        Some("0"),
        "the pcscd + vpcd comparison starts a private pcscd with unshare and must run as root"
    );
    let mut missing = Vec::new();
    for prog in ["pcscd", "unshare", "ip", "mount"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {prog}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push(prog.to_owned());
        }
    }
    if !Path::new(VPCD_DRIVER).exists() {
        missing.push(VPCD_DRIVER.to_owned());
    }
    assert!(
        missing.is_empty(),
        "missing {missing:?}: apt-get install pcscd vsmartcard-vpcd iproute2 util-linux"
    );
}

/// The private pcscd. Killed (and its namespace gone) on drop.
pub(crate) struct PrivatePcscd {
    child: Child,
    dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl PrivatePcscd {
    /// Where pcscd's socket will be for a pcscd started in `dir`: set
    /// `PCSCLITE_CSOCK_NAME` to it at the start of `main`, before any
    /// other thread exists.
    pub(crate) fn socket_path(dir: &Path) -> PathBuf {
        dir.join("run").join("pcscd.comm")
    }

    /// Starts pcscd in `dir` (from `tempfile`) with one vpcd reader line
    /// (two slots), and waits until it lists the first.
    pub(crate) fn start(dir: tempfile::TempDir) -> PrivatePcscd {
        require_peers();
        assert_eq!(
            std::env::var_os("PCSCLITE_CSOCK_NAME").map(PathBuf::from),
            Some(Self::socket_path(dir.path())),
            "set PCSCLITE_CSOCK_NAME first"
        );
        let conf = dir.path().join("reader.conf.d");
        let run = dir.path().join("run");
        std::fs::create_dir(&conf).unwrap();
        std::fs::create_dir(&run).unwrap();
        std::fs::write(
            conf.join("vpcd"),
            format!(
                "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{PORT:04X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{PORT:04X}\n"
            ),
        )
        .unwrap();
        let log = File::create(dir.path().join("pcscd.log")).unwrap();
        let script = format!(
            "mkdir -p /run/pcscd && mount --bind {} /run/pcscd && ip link set lo up && exec pcscd -f -c {}",
            run.display(),
            conf.display()
        );
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pcscd with unshare");
        let mut env = PrivatePcscd {
            child,
            dir,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        let start = Instant::now();
        loop {
            if let Ok(ctx) = crate::pcsc::Context::establish() {
                if ctx
                    .readers()
                    .is_ok_and(|r| r.iter().any(|n| n == OUR_READER))
                {
                    break;
                }
            }
            if let Ok(Some(status)) = env.child.try_wait() {
                panic!("pcscd exited ({status}):\n{}", env.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "pcscd did not list \"{OUR_READER}\" within 15 s:\n{}",
                env.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        env
    }

    /// pcscd's output so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pcscd.log")).unwrap_or_default()
    }

    fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.child.id()))
    }

    /// Serves `reader`'s card on slot 0 with `ccid::vpcd::serve`, on a
    /// thread inside pcscd's network namespace.
    pub(crate) fn serve_ours(&mut self, reader: vreader::ReaderHandle) {
        let ns = File::open(self.netns()).unwrap();
        let stop = Arc::clone(&self.stop);
        self.threads.push(std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("join pcscd's network namespace");
            ccid::vpcd::serve(&format!("127.0.0.1:{PORT}"), &reader, &stop).expect("vpcd serve");
        }));
    }

    /// Serves the floor card on slot 1: it answers every APDU with
    /// `90 00` and the ATR request with `atr`, and does nothing else.
    pub(crate) fn serve_floor(&mut self, atr: Vec<u8>) {
        let ns = File::open(self.netns()).unwrap();
        let stop = Arc::clone(&self.stop);
        self.threads.push(std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("join pcscd's network namespace");
            let start = Instant::now();
            let stream = loop {
                match TcpStream::connect(("127.0.0.1", PORT + 1)) {
                    Ok(s) => break s,
                    Err(_) if start.elapsed() < Duration::from_secs(10) => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => panic!("floor card cannot reach vpcd: {e}"),
                }
            };
            floor_card(stream, &atr, &stop);
        }));
    }
}

/// The floor: the least a vpcd card can do per APDU. Same socket options
/// as `ccid::vpcd` (NODELAY; QUICKACK before each read), blocking reads.
fn floor_card(stream: TcpStream, atr: &[u8], stop: &AtomicBool) {
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let sock = socket2::SockRef::from(&stream);
    let mut payload = vec![0u8; 0x10000];
    let ok = [0x00, 0x02, 0x90, 0x00];
    let mut reply = Vec::with_capacity(64);
    while !stop.load(Ordering::Relaxed) {
        let _ = sock.set_quickack(true);
        let mut len = [0u8; 2];
        if read_fully(&stream, &mut len, stop).is_err() {
            return;
        }
        let n = usize::from(u16::from_be_bytes(len));
        let _ = sock.set_quickack(true);
        if read_fully(&stream, &mut payload[..n], stop).is_err() {
            return;
        }
        match &payload[..n] {
            [0x04] => {
                reply.clear();
                reply.extend_from_slice(&(atr.len() as u16).to_be_bytes());
                reply.extend_from_slice(atr);
                if (&stream).write_all(&reply).is_err() {
                    return;
                }
            }
            [_] => {}
            _ => {
                if (&stream).write_all(&ok).is_err() {
                    return;
                }
            }
        }
    }
}

fn read_fully(
    mut stream: &TcpStream,
    mut buf: &mut [u8],
    stop: &AtomicBool,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        match stream.read(buf) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && !stop.load(Ordering::Relaxed) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for PrivatePcscd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.child.kill();
        let _ = self.child.wait();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
