//! `vcac run -- true`: how long CI waits from starting `vcac run` to the
//! command having run and everything torn down (a private pcscd started,
//! the embedded default card plugged in and seen present, `true` run,
//! pcscd stopped). Target: under 1 s.
//!
//! The floor measured in the same run, alternating with `vcac run`, is a
//! bare pcscd started in the same kind of private mount namespace and
//! stopped again: the part of the figure that is pcscd's own start-up.
//!
//! ```sh
//! cargo bench -p vcac-benches --bench vcac_run     # as root
//! ```
//!
//! Under `cargo test --benches` it runs one round of each, as a smoke
//! test. It fails (never skips) without pcscd or vsmartcard-vpcd.
#![forbid(unsafe_code)]
// A bench driver: a failed setup step is a failed run, with its message.
#![allow(clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 9 } else { 1 };
    for (tool, package) in [("pcscd", "pcscd"), ("unshare", "util-linux")] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(found, "{tool} not found: apt-get install {package}");
    }
    assert!(
        Path::new("/usr/lib/pcsc/drivers/serial/libifdvpcd.so").exists(),
        "vpcd driver not found: apt-get install vsmartcard-vpcd"
    );
    let vcac = build_vcac();
    let mut ours = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..rounds {
        ours.push(time_vcac_run(&vcac));
        floor.push(time_bare_pcscd());
    }
    let (ours, floor) = (median(&mut ours), median(&mut floor));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("vcac run -- true, {rounds} alternating round(s), medians:");
    println!("| measurement | ms |");
    println!("|---|---:|");
    println!("| `vcac run -- true`, start to exit | {:.0} |", ms(ours));
    println!(
        "| floor: a bare pcscd in a private namespace, started and stopped | {:.0} |",
        ms(floor)
    );
    println!(
        "| ratio | {:.2}× the floor; target < 1000 ms: {} |",
        ms(ours) / ms(floor).max(1e-3),
        if ours < Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Builds `vcac` with this bench's profile (release under `cargo bench`,
/// debug for the smoke run of `cargo test --benches`) and returns its path.
fn build_vcac() -> PathBuf {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let release = !cfg!(debug_assertions);
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "-q", "-p", "vcac", "--bin", "vcac"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build -p vcac");
    assert!(status.success(), "cargo build -p vcac failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    target
        .join(if release { "release" } else { "debug" })
        .join("vcac")
}

fn time_vcac_run(vcac: &Path) -> Duration {
    let t = Instant::now();
    let out = Command::new(vcac)
        .args(["run", "--", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("start vcac run");
    let elapsed = t.elapsed();
    assert!(
        out.status.success(),
        "vcac run -- true failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// pcscd in its own mount namespace with a private /run/pcscd, until its
/// socket appears; then stopped.
fn time_bare_pcscd() -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    let conf = dir.path().join("reader.conf.d");
    std::fs::create_dir_all(&run).expect("mkdir run");
    std::fs::create_dir_all(&conf).expect("mkdir conf");
    let script = format!(
        "mkdir -p /run/pcscd && mount --bind {} /run/pcscd && exec pcscd -f -c {}",
        run.display(),
        conf.display()
    );
    let t = Instant::now();
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pcscd");
    let socket = run.join("pcscd.comm");
    while !socket.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "pcscd did not create its socket within 10 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    t.elapsed()
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}
