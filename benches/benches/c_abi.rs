//! vcac's drop-in `libcacard.so.0` against Debian's libcacard 2.8, both
//! driven by the same C program (`benches/c/libcacard_bench.c`, compiled
//! once with the system `cc` against vcac's headers) on the same NSS
//! database, the library chosen with `LD_LIBRARY_PATH`:
//!
//! ```text
//!   cargo bench -p vcac-benches --bench c_abi
//! ```
//!
//! 1. ns per APDU over OpenSC's bind transcript (`data/opensc-bind-apdus.txt`
//!    less its key operations) replayed through `vreader_xfr_bytes`;
//! 2. RSA-2048 SIGN through PKI applet 0 (VERIFY once, then SIGN 42
//!    chained T=0 style and GET RESPONSE), ms per signature;
//! 3. init-to-ATR: `vcard_emul_options` + `vcard_emul_init` + the first
//!    CARD_INSERT event + `vreader_power_on`, µs, one fresh process per
//!    sample.
//!
//! For 1 and 2 one long-lived harness process per library takes commands
//! on stdin, so the two alternate round by round; for 3 the processes
//! alternate. Medians over the rounds. It builds the release `.so` itself
//! (`cargo build -p libcacard --release`) and the NSS database with
//! `certutil` (three self-signed RSA-2048 identities `cert1..3`).
//!
//! A missing peer (cc, certutil, Debian's `libcacard.so.0`) is a failure,
//! never a skip. Run without `--bench` (as `cargo test --benches` does) it
//! does everything with tiny counts. Missed targets are reported, not
//! failed: the figures are measurements, not a test.
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};

/// Debian's library (package libcacard0).
const DEBIAN_LIB: &str = "/usr/lib/x86_64-linux-gnu/libcacard.so.0";
/// The certificate nicknames, in PKI applet order.
const CERTS: &str = "cert1,cert2,cert3";

/// How long and how often to measure.
struct Scale {
    rounds: usize,
    bind_ms: u32,
    signs: u32,
    init_samples: usize,
}

impl Scale {
    fn new(full: bool) -> Scale {
        if full {
            Scale {
                rounds: 11,
                bind_ms: 150,
                signs: 20,
                init_samples: 21,
            }
        } else {
            Scale {
                rounds: 1,
                bind_ms: 5,
                signs: 2,
                init_samples: 1,
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Ours,
    Debian,
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = Scale::new(full);
    require("cc", "gcc");
    require("certutil", "libnss3-tools");
    assert!(
        Path::new(DEBIAN_LIB).is_file(),
        "{DEBIAN_LIB} not found: apt-get install libcacard0"
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ours_dir = build_ours(dir);
    let bench = compile_harness(dir, &ours_dir);
    let db = format!("sql:{}", make_nss_db(dir).display());
    let bind_file = dir.join("bind.txt");
    let bind = vcac_benches::bind_commands();
    let text: String = bind.iter().map(|c| hex(c) + "\n").collect();
    std::fs::write(&bind_file, text).unwrap();

    println!("# libcacard.so.0: vcac's drop-in vs Debian's, same C harness\n");
    println!("{}", machine());

    // --- 1 and 2: one serving process per library, alternating ----------
    let mut ours = Harness::start(&bench, Side::Ours, &ours_dir, &db, &bind_file);
    let mut debian = Harness::start(&bench, Side::Debian, &ours_dir, &db, &bind_file);
    for h in [&ours, &debian] {
        println!("{:?}: {}", h.side, h.banner.join("; "));
    }
    let (mut bind_ours, mut bind_debian) = (Vec::new(), Vec::new());
    let (mut sign_ours, mut sign_debian) = (Vec::new(), Vec::new());
    for round in 0..scale.rounds {
        // Alternate which side goes first, too.
        let order: [&mut Harness; 2] = if round % 2 == 0 {
            [&mut ours, &mut debian]
        } else {
            [&mut debian, &mut ours]
        };
        for h in order {
            let b = h.ask(&format!("bind {}", scale.bind_ms), "bind");
            let s = h.ask(&format!("sign {}", scale.signs), "sign");
            match h.side {
                Side::Ours => {
                    bind_ours.push(b);
                    sign_ours.push(s);
                }
                Side::Debian => {
                    bind_debian.push(b);
                    sign_debian.push(s);
                }
            }
        }
    }
    ours.quit();
    debian.quit();

    // --- 3: init to ATR, a fresh process per sample, alternating --------
    let (mut init_ours, mut init_debian) = (Vec::new(), Vec::new());
    for i in 0..scale.init_samples {
        let sides = if i % 2 == 0 {
            [Side::Ours, Side::Debian]
        } else {
            [Side::Debian, Side::Ours]
        };
        for side in sides {
            let us = init_sample(&bench, side, &ours_dir, &db);
            match side {
                Side::Ours => init_ours.push(us),
                Side::Debian => init_debian.push(us),
            }
        }
    }

    let (bo, bd) = (median(&mut bind_ours), median(&mut bind_debian));
    let (so, sd) = (median(&mut sign_ours), median(&mut sign_debian));
    let (io, id) = (median(&mut init_ours), median(&mut init_debian));
    let rows = [
        (
            format!(
                "OpenSC bind transcript through vreader_xfr_bytes ({} APDUs, no key operations), ns/APDU",
                bind.len()
            ),
            format!("{bo:.0}"),
            format!("{bd:.0}"),
            bd / bo,
            "fewer",
            20.0,
        ),
        (
            "RSA-2048 SIGN through PKI applet 0 (42 chained + GET RESPONSE), ms/sign".into(),
            format!("{so:.3}"),
            format!("{sd:.3}"),
            sd / so,
            "faster",
            1.3,
        ),
        (
            "init to ATR (options + init + first CARD_INSERT + power on), µs".into(),
            format!("{io:.0}"),
            format!("{id:.0}"),
            id / io,
            "faster",
            10.0,
        ),
    ];
    println!(
        "\n{} rounds (bind {} ms, {} signatures per side per round), {} init samples per side; medians\n",
        scale.rounds, scale.bind_ms, scale.signs, scale.init_samples
    );
    println!("| measurement | vcac libcacard.so.0 | Debian libcacard 2.8 | ratio | target | met |");
    println!("|---|---:|---:|---:|---|---|");
    let mut missed = Vec::new();
    for (what, o, d, ratio, word, target) in &rows {
        let met = ratio >= target;
        if !met {
            missed.push(what.as_str());
        }
        println!(
            "| {what} | {o} | {d} | {ratio:.1}× {word} | ≥ {target}× {word} | {} |",
            if met { "yes" } else { "no" }
        );
    }
    if missed.is_empty() {
        println!("\nEvery target met.");
    } else {
        println!("\nTargets missed in this run: {missed:?}");
    }
    println!("{}", machine());
    if !full {
        println!(
            "(quick mode, as under `cargo test --benches`: this checks that everything runs; \
             `cargo bench` measures.)"
        );
    }
}

/// Fails with a clear message unless `prog` is on the PATH.
fn require(prog: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{prog} not found: apt-get install {package}");
}

fn check(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds the release cdylib and puts it in `dir/ours` as `libcacard.so.0`
/// (and `libcacard.so` for the linker); returns that directory.
fn build_ours(dir: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    check(
        Command::new(cargo)
            .args(["build", "-p", "libcacard", "--release"])
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    );
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    };
    let so = target.join("release/libcacard.so");
    assert!(so.is_file(), "{} was not built", so.display());
    let ours = dir.join("ours");
    std::fs::create_dir(&ours).unwrap();
    std::fs::copy(&so, ours.join("libcacard.so.0")).unwrap();
    std::os::unix::fs::symlink("libcacard.so.0", ours.join("libcacard.so")).unwrap();
    ours
}

/// Compiles the harness once, against vcac's headers, linked by soname
/// (`libcacard.so.0`): the library is chosen at run time.
fn compile_harness(dir: &Path, ours: &Path) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join("libcacard_bench");
    check(
        Command::new("cc")
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&out)
            .arg(manifest.join("c/libcacard_bench.c"))
            .arg("-I")
            .arg(manifest.join("../libcacard/include/cacard"))
            .arg("-L")
            .arg(ours)
            .arg("-lcacard"),
    );
    out
}

/// An empty-password NSS sql: database with three self-signed RSA-2048
/// identities `cert1..3` (`certutil -N`, `certutil -S -x`).
fn make_nss_db(dir: &Path) -> PathBuf {
    let db = dir.join("nssdb");
    std::fs::create_dir(&db).unwrap();
    let spec = format!("sql:{}", db.display());
    check(Command::new("certutil").args(["-N", "-d", &spec, "--empty-password"]));
    let noise = dir.join("noise");
    // Key-generation noise for certutil: any bytes do for a benchmark.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let bytes: Vec<u8> = (0..256)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(&noise, bytes).unwrap();
    for (i, name) in CERTS.split(',').enumerate() {
        check(
            Command::new("certutil")
                .args(["-S", "-d", &spec, "-x", "-t", "CT,CT,CT", "-k", "rsa"])
                .args(["-g", "2048", "-s", &format!("CN={name}"), "-n", name])
                .args(["-m", &(101 + i).to_string(), "-v", "120", "-z"])
                .arg(&noise),
        );
    }
    db
}

/// The harness command against one side's library.
fn harness_command(bench: &Path, side: Side, ours: &Path) -> Command {
    let mut c = Command::new(bench);
    match side {
        Side::Ours => c.env("LD_LIBRARY_PATH", ours),
        Side::Debian => c.env_remove("LD_LIBRARY_PATH"),
    };
    c.env_remove("G_MESSAGES_DEBUG");
    c
}

/// Where the library must come from, as the harness's dladdr reports it.
fn expected_lib(side: Side, ours: &Path) -> PathBuf {
    match side {
        Side::Ours => ours.join("libcacard.so.0"),
        Side::Debian => PathBuf::from(DEBIAN_LIB),
    }
}

/// One long-lived `libcacard_bench serve` process.
struct Harness {
    side: Side,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// What it printed before "ready" (library, ATR, status words).
    banner: Vec<String>,
}

impl Harness {
    fn start(bench: &Path, side: Side, ours: &Path, db: &str, bind: &Path) -> Harness {
        let mut child = harness_command(bench, side, ours)
            .args(["serve", db, CERTS])
            .arg(bind)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut banner = Vec::new();
        loop {
            let mut line = String::new();
            let n = stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "{side:?} harness exited before ready: {banner:?}");
            let line = line.trim_end().to_owned();
            if line == "ready" {
                break;
            }
            banner.push(line);
        }
        let lib = banner
            .iter()
            .find_map(|l| l.strip_prefix("lib "))
            .expect("harness names its library");
        assert_eq!(
            std::fs::canonicalize(lib).unwrap(),
            std::fs::canonicalize(expected_lib(side, ours)).unwrap(),
            "{side:?}: the harness loaded the wrong library"
        );
        Harness {
            side,
            child,
            stdin,
            stdout,
            banner,
        }
    }

    /// Sends one command; returns the first number of the answer line,
    /// which must start with `tag`.
    fn ask(&mut self, cmd: &str, tag: &str) -> f64 {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "{:?} harness died on {cmd:?}", self.side);
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some(tag), "answer to {cmd:?}: {line:?}");
        words.next().unwrap().parse().unwrap()
    }

    fn quit(mut self) {
        writeln!(self.stdin, "quit").unwrap();
        drop(self.stdin);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{:?} harness: {status}", self.side);
    }
}

/// One init-to-ATR sample in a fresh process; µs.
fn init_sample(bench: &Path, side: Side, ours: &Path, db: &str) -> f64 {
    let out = check(harness_command(bench, side, ours).args(["init", db, CERTS]));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("atr 3B7A18000073667465206364313434"),
        "{side:?}: not the CAC ATR: {text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("init_us "))
        .expect("init_us line")
        .parse()
        .unwrap()
}

fn median(v: &mut [f64]) -> f64 {
    assert!(!v.is_empty());
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "machine: {model}, {cpus} CPUs, load average {}",
        load.join(" ")
    )
}
