//! End to end in a real guest: QEMU's `usb-ccid` + `ccid-card-passthru`,
//! `vcac passthru` on the VSCard chardev, and inside a Linux guest the
//! host's own pcscd + libccid + OpenSC reading a certificate and signing.
//!
//! The guest (Debian's kernel from `apt-get download`, an initramfs built
//! from this machine's binaries by `tests/qemu/build-guest.sh`) is cached
//! in `target/qemu-guest/` and rebuilt when the scripts or the packages it
//! copies change. Results come back on the serial console as
//! `@@VCAC <key> <value>` lines; the certificate must equal `id0.pem` byte
//! for byte and the signature must verify with openssl on the host.
//!
//! Software emulation (TCG) by default; `VCAC_QEMU_ACCEL=kvm` to try KVM.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vcac_tests::{pem_to_der, require_peers, vcac_bin, write_default_card, OPENSC_PKCS11};

/// The whole test must stay under 5 minutes; the guest run gets this.
const GUEST_TIMEOUT: Duration = Duration::from_secs(200);

/// APDUs in the in-guest round-trip measurement.
const RTT_APDUS: u32 = 200;

const CCID_DRIVER: &str = "/usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents/Linux/libccid.so";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"))
}

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn output(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the cached guest depends on: the build scripts, the versions of
/// the host packages copied into it, and the kernel package apt offers.
fn guest_fingerprint(scripts: &Path) -> String {
    let mut text = String::new();
    for f in ["build-guest.sh", "guest-init.sh"] {
        text.push_str(&std::fs::read_to_string(scripts.join(f)).unwrap());
    }
    text.push_str(&output(
        "dpkg-query",
        &[
            "-W",
            "-f",
            "${Package} ${Version}\n",
            "pcscd",
            "libccid",
            "opensc",
            "opensc-pkcs11",
            "libpcsclite1",
            "busybox-static",
        ],
    ));
    text.push_str(&output("apt-cache", &["depends", "linux-image-amd64"]));
    text.push_str(&std::env::var("VCAC_GUEST_KERNEL_DEB").unwrap_or_default());
    format!("{:016x}", fnv1a(text.as_bytes(), 0xcbf2_9ce4_8422_2325))
}

/// The guest's kernel and initramfs, built once and cached.
fn guest_image() -> (PathBuf, PathBuf, bool) {
    let scripts = workspace_root().join("tests/qemu");
    let dir = target_dir().join("qemu-guest");
    std::fs::create_dir_all(&dir).unwrap();
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initramfs.cpio");
    let stamp = dir.join("stamp");
    let want = guest_fingerprint(&scripts);
    let cached = kernel.exists()
        && initrd.exists()
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want);
    if !cached {
        let _ = std::fs::remove_file(&stamp);
        let out = Command::new("sh")
            .arg(scripts.join("build-guest.sh"))
            .arg(&dir)
            .output()
            .expect("run tests/qemu/build-guest.sh");
        assert!(
            out.status.success(),
            "building the guest failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
        std::fs::write(&stamp, &want).unwrap();
    }
    (kernel, initrd, cached)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the processes it holds when dropped (also on a failed assert).
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex: {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex: {s}")))
        .collect()
}

/// The `@@VCAC` lines of the serial console, as (key, value).
fn results(serial: &str) -> Vec<(String, String)> {
    serial
        .lines()
        .filter_map(|l| {
            let l = l.trim_end_matches('\r');
            let at = l.find("@@VCAC ")?;
            let rest = &l[at + 7..];
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn joined_hex(results: &[(String, String)], key: &str) -> Vec<u8> {
    let hex: String = results
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.trim())
        .collect();
    hex_decode(&hex)
}

fn one<'a>(results: &'a [(String, String)], key: &str, serial: &str) -> &'a str {
    results
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("the guest printed no \"{key}\":\n{serial}"))
}

#[test]
fn opensc_in_a_qemu_guest_reads_the_certificate_and_signs() {
    let started = Instant::now();
    require_peers(&[
        "qemu-system-x86_64",
        "apt-get",
        "dpkg-deb",
        "/bin/busybox",
        "pcscd",
        "opensc-tool",
        "pkcs11-tool",
        "openssl",
        OPENSC_PKCS11,
        CCID_DRIVER,
    ]);
    let qemu_version = output("qemu-system-x86_64", &["--version"]);
    let qemu_version = qemu_version.lines().next().unwrap_or_default().to_owned();

    let (kernel, initrd, cached) = guest_image();
    let image_ready = started.elapsed();
    let vcac = vcac_bin();
    let tmp = tempfile::tempdir().unwrap();
    let card_dir = tmp.path().join("card");
    write_default_card(&card_dir);

    let port = free_port();
    let accel = std::env::var("VCAC_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
    let boot = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc", "-accel", &accel, "-smp", "2", "-m", "512"])
        .args(["-usb", "-device", "usb-ccid"])
        .arg("-chardev")
        .arg(format!(
            "socket,server=on,wait=off,host=127.0.0.1,port={port},id=cc"
        ))
        .args(["-device", "ccid-card-passthru,chardev=cc"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet loglevel=1 panic=-1 vcac.pin=12345678 vcac.n={RTT_APDUS}"
        ))
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-x86_64");
    let serial = Arc::new(Mutex::new(String::new()));
    let reader = {
        let serial = Arc::clone(&serial);
        let stdout = qemu.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = Vec::new();
            while r
                .read_until(b'\n', &mut line)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                serial
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        })
    };
    let qemu_stderr = qemu.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(qemu_stderr), &mut s);
        s
    });

    let vcac_log = tmp.path().join("vcac.log");
    let log = std::fs::File::create(&vcac_log).unwrap();
    let passthru = Command::new(vcac)
        .args([
            "passthru",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--no-stdin",
        ])
        .arg("--card")
        .arg(&card_dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start vcac passthru");
    let mut procs = Procs(vec![qemu, passthru]);

    // The guest reboots (QEMU exits, -no-reboot) when it is done.
    let exit = loop {
        if let Some(status) = procs.0[0].try_wait().unwrap() {
            break status;
        }
        if boot.elapsed() > GUEST_TIMEOUT {
            let _ = procs.0[0].kill();
            panic!(
                "the guest did not finish within {GUEST_TIMEOUT:?}\n--- serial\n{}\n--- vcac\n{}",
                serial.lock().unwrap(),
                std::fs::read_to_string(&vcac_log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let guest_time = boot.elapsed();
    reader.join().unwrap();
    let qemu_stderr = stderr_reader.join().unwrap();
    let serial = serial.lock().unwrap().clone();
    let vcac_text = || std::fs::read_to_string(&vcac_log).unwrap_or_default();
    let r = results(&serial);
    let context = format!(
        "--- serial\n{serial}\n--- qemu stderr\n{qemu_stderr}\n--- vcac\n{}",
        vcac_text()
    );
    assert!(exit.success(), "qemu exited with {exit}\n{context}");
    if let Some((_, why)) = r.iter().find(|(k, _)| k == "fail") {
        panic!("the guest reports a failure: {why}\n{context}");
    }
    assert!(
        r.iter().any(|(k, _)| k == "ok"),
        "the guest did not finish\n{context}"
    );

    // OpenSC in the guest bound its CAC driver to our card behind QEMU's
    // reader.
    assert!(
        r.iter().any(|(k, v)| k == "readers"
            && v.contains("Yes")
            && v.contains("Gemalto Gemplus USB SmartCard Reader 433-Swap")),
        "{context}"
    );
    assert_eq!(
        one(&r, "atr", &serial),
        "3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34"
    );
    assert_eq!(one(&r, "name", &serial), "Common Access Card (CAC)");

    // The certificate read in the guest is the provisioned one.
    let cert = joined_hex(&r, "cert");
    let want = pem_to_der(&card_dir.join("id0.pem"));
    assert_eq!(
        cert, want,
        "certificate 0001 read in the guest differs from id0.pem"
    );

    // The guest's signature verifies on the host with id0.pem's key.
    let data = joined_hex(&r, "data");
    assert_eq!(data, b"vcac in a QEMU guest");
    let sig = joined_hex(&r, "sig");
    assert_eq!(sig.len(), 256, "RSA-2048 signature");
    std::fs::write(tmp.path().join("data"), &data).unwrap();
    std::fs::write(tmp.path().join("sig"), &sig).unwrap();
    let pubkey = Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(card_dir.join("id0.pem"))
        .output()
        .unwrap();
    assert!(pubkey.status.success());
    std::fs::write(tmp.path().join("pub.pem"), &pubkey.stdout).unwrap();
    let verify = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(tmp.path().join("pub.pem"))
        .arg("-signature")
        .arg(tmp.path().join("sig"))
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(
        verify.status.success() && String::from_utf8_lossy(&verify.stdout).contains("Verified OK"),
        "the guest's signature does not verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // The round trip: N extra APDUs, each answered; three measurements.
    let mut per_apdu_us = Vec::new();
    for (_, rtt) in r.iter().filter(|(k, _)| k == "rtt") {
        let field = |name: &str| -> String {
            rtt.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in \"{rtt}\""))
                .to_owned()
        };
        let n: u64 = field("n").parse().unwrap();
        let one_ns: u64 = field("one").parse().unwrap();
        let many_ns: u64 = field("many").parse().unwrap();
        assert_eq!(n, u64::from(RTT_APDUS));
        assert_eq!(field("answers").parse::<u64>().unwrap(), n + 1, "{rtt}");
        assert_eq!(field("sw"), "SW1=0x6A,SW2=0x82", "{rtt}");
        per_apdu_us.push(many_ns.saturating_sub(one_ns) as f64 / n as f64 / 1000.0);
    }
    assert_eq!(per_apdu_us.len(), 3, "{context}");
    per_apdu_us.sort_by(f64::total_cmp);

    // vcac registered with QEMU and announced the card; SIGTERM makes it
    // leave cleanly (QEMU is gone: it is reconnecting by now).
    let log = vcac_text();
    assert!(
        log.contains("registered with the host as reader 0"),
        "{log}"
    );
    assert!(
        log.contains("announced (ATR 3B7A18000073667465206364313434)"),
        "{log}"
    );
    let pid = procs.0[1].id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let stop = Instant::now();
    let status = loop {
        if let Some(s) = procs.0[1].try_wait().unwrap() {
            break s;
        }
        assert!(
            stop.elapsed() < Duration::from_secs(10),
            "vcac did not stop:\n{}",
            vcac_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success(),
        "vcac passthru exited with {status}:\n{}",
        vcac_text()
    );

    let phases: Vec<String> = r
        .iter()
        .filter(|(k, _)| k == "t")
        .map(|(_, v)| v.replace(' ', "="))
        .collect();
    println!(
        "qemu guest test: {qemu_version}, accel {accel}; guest image {} ({:.1} s); \
         guest run {:.1} s (guest uptime at phases: {}); total {:.1} s",
        if cached { "cached" } else { "built" },
        image_ready.as_secs_f64(),
        guest_time.as_secs_f64(),
        phases.join(" "),
        started.elapsed().as_secs_f64()
    );
    println!(
        "APDU round trip inside the guest (opensc-tool -s x {RTT_APDUS}, pcscd + libccid + USB + \
         QEMU usb-ccid + VSCard + vcac): best {:.0} µs, median {:.0} µs per APDU (runs: {})",
        per_apdu_us[0],
        per_apdu_us[1],
        per_apdu_us
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// QEMU without a guest (`-S`: devices realized, CPUs stopped): enough for
/// the chardev and `ccid-card-passthru` to speak VSCard. Its stdout carries
/// the device's debug lines (`debug=4`).
fn qemu_without_guest(chardev: &str, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new("qemu-system-x86_64")
        .args(["-S", "-machine", "pc", "-accel", "tcg", "-usb"])
        .args(["-device", "usb-ccid", "-chardev", chardev])
        .args(["-device", "ccid-card-passthru,chardev=cc,debug=4"])
        .args(["-display", "none", "-serial", "none", "-monitor", "none"])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start qemu-system-x86_64")
}

fn wait_for(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out waiting for {what}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `vcac passthru` in both socket roles follows QEMU through restarts; each
/// time QEMU's ccid-card-passthru accepts the ATR.
#[test]
fn vcac_passthru_follows_qemu_restarts_in_both_socket_roles() {
    require_peers(&["qemu-system-x86_64"]);
    let vcac = vcac_bin();
    let tmp = tempfile::tempdir().unwrap();
    for role in ["connect", "listen"] {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let chardev = if role == "connect" {
            format!("socket,server=on,wait=off,host=127.0.0.1,port={port},id=cc")
        } else {
            format!("socket,host=127.0.0.1,port={port},reconnect=1,id=cc")
        };
        let vcac_log = tmp.path().join(format!("vcac-{role}.log"));
        let log = std::fs::File::create(&vcac_log).unwrap();
        let child = Command::new(vcac)
            .args(["passthru", &format!("--{role}"), &addr, "--no-stdin"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut procs = Procs(vec![child]);
        let read_log = || std::fs::read_to_string(&vcac_log).unwrap_or_default();
        if role == "listen" {
            wait_for(
                "vcac to listen",
                Duration::from_secs(10),
                || read_log().contains("waiting for a VSCard host"),
                read_log,
            );
        } else {
            // QEMU is not there yet: vcac keeps trying.
            wait_for(
                "vcac to retry",
                Duration::from_secs(10),
                || read_log().contains("cannot reach"),
                read_log,
            );
        }
        for round in 1..=2 {
            let qemu_log = tmp.path().join(format!("qemu-{role}-{round}.log"));
            let qemu = qemu_without_guest(&chardev, &qemu_log);
            procs.0.push(qemu);
            let both = || {
                format!(
                    "--- vcac\n{}\n--- qemu\n{}",
                    read_log(),
                    std::fs::read_to_string(&qemu_log).unwrap_or_default()
                )
            };
            wait_for(
                &format!("{role} round {round}: the card announced to QEMU"),
                Duration::from_secs(20),
                || read_log().matches("card in reader #0 announced").count() == round,
                both,
            );
            wait_for(
                "QEMU to accept the ATR",
                Duration::from_secs(10),
                || {
                    std::fs::read_to_string(&qemu_log)
                        .unwrap_or_default()
                        .contains("atr passes check")
                },
                both,
            );
            let qemu_text = std::fs::read_to_string(&qemu_log).unwrap_or_default();
            assert!(!qemu_text.contains("ATR is inconsistent"), "{}", both());
            assert!(!qemu_text.contains("unexpected message"), "{}", both());
            // QEMU goes away.
            let mut qemu = procs.0.pop().unwrap();
            qemu.kill().unwrap();
            qemu.wait().unwrap();
            wait_for(
                "vcac to notice QEMU left",
                Duration::from_secs(10),
                || read_log().matches("closed the connection").count() == round,
                both,
            );
        }
        let pid = procs.0[0].id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let start = Instant::now();
        let status = loop {
            if let Some(s) = procs.0[0].try_wait().unwrap() {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{}", read_log());
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{}", read_log());
    }
}
