//! `vcac run`: a private pcscd per run, the real OpenSC inside it, ten in
//! parallel, and nothing left behind however the run ends.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vcac_tests::{require_peers, vcac_bin, OPENSC_PKCS11, VPCD_DRIVER};

fn peers() {
    require_peers(&[
        "pcscd",
        "unshare",
        "setpriv",
        "pkcs11-tool",
        OPENSC_PKCS11,
        VPCD_DRIVER,
    ]);
}

/// `vcac run ARGS`, with OpenSC's file cache off.
fn vcac_run(dir: &Path, args: &[&str]) -> Command {
    let conf = dir.join("opensc.conf");
    if !conf.exists() {
        std::fs::write(
            &conf,
            "app default {\n  framework pkcs15 { use_file_caching = false; }\n}\n",
        )
        .unwrap();
    }
    let mut c = Command::new(vcac_bin());
    c.arg("run").args(args).env("OPENSC_CONF", conf);
    c
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// Provisions a small card (one RSA-2048 identity, P-256 CA) fast.
fn provision(out: &Path, seed: u32) {
    let o = Command::new(vcac_bin())
        .args([
            "provision",
            "--seed",
            &seed.to_string(),
            "--identities",
            "1",
        ])
        .args(["--ca-key-type", "p256", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "provision: {}", text(&o.stderr));
}

/// The serial `vcac run` printed for its first card (upper-case hex).
fn printed_serial(stderr: &str) -> String {
    stderr
        .split(", serial ")
        .nth(1)
        .unwrap_or_else(|| panic!("no serial in {stderr}"))
        .split(|c: char| !c.is_ascii_hexdigit())
        .next()
        .unwrap()
        .to_owned()
}

/// The token serial pkcs11-tool -L shows for slot 0.
fn token_serial(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("serial num         : "))
        .unwrap_or_else(|| panic!("no token serial in {stdout}"))
        .trim()
        .to_owned()
}

fn must(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
}

#[test]
fn run_lists_the_provisioned_token_with_pkcs11_tool() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let d1 = tmp.path().join("d1");
    provision(&d1, 1);
    let o = vcac_run(tmp.path(), &["--card", d1.to_str().unwrap(), "--"])
        .args(["pkcs11-tool", "--module", OPENSC_PKCS11, "-L"])
        .output()
        .unwrap();
    must(&o, "vcac run -- pkcs11-tool -L");
    let out = text(&o.stdout);
    assert!(out.contains("Slot 0 (0x0): vcac 00 00\n"), "{out}");
    assert!(
        out.contains("token label        : DOE.JOHN.Q.1234567890"),
        "{out}"
    );
    assert!(
        out.contains("token manufacturer : Common Access Card"),
        "{out}"
    );
    let printed = printed_serial(&text(&o.stderr)).to_ascii_lowercase();
    let shown = token_serial(&out);
    assert_eq!(shown.len(), 16, "{out}");
    assert!(printed.ends_with(&shown), "{printed} vs {shown}");
}

#[test]
fn ten_parallel_runs_each_see_their_own_card() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=10).map(|n| tmp.path().join(format!("d{n}"))).collect();
    std::thread::scope(|s| {
        for (n, d) in dirs.iter().enumerate() {
            s.spawn(move || provision(d, u32::try_from(n).unwrap() + 1));
        }
    });
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            vcac_run(tmp.path(), &["--card", d.to_str().unwrap(), "--"])
                .args(["pkcs11-tool", "--module", OPENSC_PKCS11, "-L"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut seen = Vec::new();
    for c in children {
        let o = c.wait_with_output().unwrap();
        must(&o, "parallel vcac run");
        let printed = printed_serial(&text(&o.stderr)).to_ascii_lowercase();
        let shown = token_serial(&text(&o.stdout));
        assert!(printed.ends_with(&shown), "{printed} vs {shown}");
        seen.push(shown);
    }
    let mut distinct = seen.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "every run saw its own card: {seen:?}");
}

#[test]
fn exit_status_and_environment_of_the_command() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let o = vcac_run(tmp.path(), &["--readers", "2", "--"])
        .args([
            "sh",
            "-c",
            "echo \"$VCAC_READER|$VCAC_READERS\"; test -S \"$PCSCLITE_CSOCK_NAME\" && exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "vcac 00 00|vcac 00 00\nvcac 00 01\n");
    let o = vcac_run(tmp.path(), &["--", "no-such-command-xyz"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).contains("no-such-command-xyz: command not found"));
    let o = vcac_run(tmp.path(), &["--readers", "3", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(text(&o.stderr).contains("--readers 3: vpcd gives pcscd 1 or 2 readers"));
    let o = vcac_run(tmp.path(), &["--card", "/nonexistent", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        text(&o.stderr).contains("/nonexistent"),
        "{}",
        text(&o.stderr)
    );
}

/// A `vcac run -- sleep 1000` in the background, with what it started.
struct Started {
    vcac: std::process::Child,
    log: PathBuf,
    pcscd: u32,
    sleep: u32,
    socket: PathBuf,
    port: u16,
}

fn start_sleeping(dir: &Path) -> Started {
    let log = dir.join(format!("run{}.log", rand_suffix()));
    let f = std::fs::File::create(&log).unwrap();
    let vcac = vcac_run(dir, &["--", "sleep", "1000"])
        .env("RUST_LOG", "debug")
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.contains("pcscd ready") {
            break t;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "vcac run did not start:\n{t}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let after = |key: &str| -> String {
        text.split(key)
            .nth(1)
            .unwrap_or_else(|| panic!("no {key:?} in {text}"))
            .split(|c: char| c.is_whitespace() || c == ')')
            .next()
            .unwrap()
            .to_owned()
    };
    let pcscd = after("private pcscd (pid ").parse().unwrap();
    let socket = PathBuf::from(after("PCSCLITE_CSOCK_NAME="));
    let port = after("connected to vpcd at 127.0.0.1:").parse().unwrap();
    // The sleep: a child of vcac (possibly still becoming `sleep`).
    let sleep = loop {
        let kids = children_of(vcac.id());
        if let Some(k) = kids
            .into_iter()
            .find(|k| comm(*k).as_deref() == Some("sleep"))
        {
            break k;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no sleep child");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(socket.exists(), "{}", socket.display());
    Started {
        vcac,
        log,
        pcscd,
        sleep,
        socket,
        port,
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    out
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn wait_gone(pid: u32, what: &str) {
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} (pid {pid}) is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_nothing_left(s: &Started) {
    wait_gone(s.pcscd, "pcscd");
    wait_gone(s.sleep, "the command");
    assert!(!s.socket.exists(), "{} left behind", s.socket.display());
    let tmp = s.socket.parent().unwrap().parent().unwrap();
    assert!(!tmp.exists(), "{} left behind", tmp.display());
    std::net::TcpListener::bind(("0.0.0.0", s.port))
        .unwrap_or_else(|e| panic!("vpcd port {} still in use: {e}", s.port));
}

fn kill(pid: u32, sig: &str) {
    assert!(Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

#[test]
fn sigterm_to_vcac_run_tears_everything_down() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let mut s = start_sleeping(tmp.path());
    assert!(alive(s.pcscd) && alive(s.sleep));
    kill(s.vcac.id(), "-TERM");
    let status = s.vcac.wait().unwrap();
    // The command got the SIGTERM: 128 + 15.
    assert_eq!(
        status.code(),
        Some(143),
        "{}",
        std::fs::read_to_string(&s.log).unwrap()
    );
    assert_nothing_left(&s);
}

#[test]
fn sigint_to_vcac_run_tears_everything_down() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let mut s = start_sleeping(tmp.path());
    kill(s.vcac.id(), "-INT");
    assert_eq!(s.vcac.wait().unwrap().code(), Some(130));
    assert_nothing_left(&s);
}

#[test]
fn sigkill_of_the_command_ends_the_run_with_its_status() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let mut s = start_sleeping(tmp.path());
    kill(s.sleep, "-KILL");
    let status = s.vcac.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(137),
        "{}",
        std::fs::read_to_string(&s.log).unwrap()
    );
    assert_nothing_left(&s);
}

#[test]
fn sigkill_of_vcac_run_takes_pcscd_and_the_command_along() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let mut s = start_sleeping(tmp.path());
    kill(s.vcac.id(), "-KILL");
    let _ = s.vcac.wait();
    // PR_SET_PDEATHSIG (setpriv): both get SIGTERM when vcac dies. Only
    // the temporary directory stays (nobody is left to remove it).
    wait_gone(s.pcscd, "pcscd");
    wait_gone(s.sleep, "the command");
    let start = Instant::now();
    while std::net::TcpListener::bind(("0.0.0.0", s.port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "port {} still in use",
            s.port
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir_all(s.socket.parent().unwrap().parent().unwrap());
}

/// Start-up time of `vcac run -- true` (the figure the README reports);
/// fails above 3 s, far beyond the < 1 s target, to catch regressions on
/// a loaded machine without flaking.
#[test]
fn startup_time_of_vcac_run_true() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let o = vcac_run(tmp.path(), &["--", "true"]).output().unwrap();
        must(&o, "vcac run -- true");
        times.push(t.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    eprintln!("vcac run -- true: median {median:?} over 5 runs ({times:?})");
    assert!(median < Duration::from_secs(3), "{times:?}");
}
