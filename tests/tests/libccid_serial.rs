//! OpenSC reads and uses the virtual CAC through pcscd, the unmodified
//! CCID driver (`libccidtwin.so`, libccid's serial build) and our CCID
//! device model on a pty (`vcac ccid-serial`).
//!
//! ```text
//!  opensc ── pcscd ── libccidtwin.so ── pty ── vcac ccid-serial: Twin framing ── CcidDevice ── card
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vcac_tests::{pem_to_der, write_default_card, PcscEnv, ReaderConf};

/// Starts `vcac ccid-serial --link LINK --reader READER EXTRA...` (EXTRA
/// from the environment's directory) and then pcscd with LINK in its
/// reader.conf. Returns the environment and LINK.
fn start(reader: &str, extra: impl FnOnce(&Path) -> Vec<String>) -> (PcscEnv, PathBuf) {
    // reader.conf is written before the hook runs, so the link's path is
    // chosen first: unique per test, outside the environment's directory.
    let link = std::env::temp_dir().join(format!(
        "vcac-ccid-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let env = PcscEnv::start_with(
        &[ReaderConf::CcidTwin {
            device: link.clone(),
            reader: reader.to_owned(),
        }],
        |pre| {
            let mut args = vec![
                "ccid-serial".to_owned(),
                "--link".to_owned(),
                link.display().to_string(),
                "--reader".to_owned(),
                reader.to_owned(),
            ];
            args.extend(extra(pre.dir()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            pre.spawn_vcac(&args);
            pre.wait_for_path(&link, Duration::from_secs(60));
        },
    );
    (env, link)
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn opensc_reads_and_signs_through_the_real_ccid_driver() {
    let (mut env, _link) = start("GemPCTwin", |_| Vec::new());
    env.wait_for_card(0);

    // libccid opened the reader: Escape 02 (firmware) and Escape 01 01 01
    // were answered through our framing, with echo.
    let log = env.pcscd_log();
    assert!(log.contains("Firmware: vcac CCID"), "{log}");
    assert!(!log.contains("Change card movement notification failed"));

    assert_eq!(
        env.ok("opensc-tool", &["-r", "0", "-n"]).trim(),
        "Common Access Card (CAC)"
    );
    assert_eq!(
        env.ok("opensc-tool", &["-r", "0", "-a"]).trim(),
        "3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34"
    );
    // The driver negotiated TA1 = 18 with a PPS, which the reader answered
    // for the card at TPDU level, then set the T=0 parameters.
    let vcac = env.vcac_log(0);
    assert!(vcac.contains("000000FF1018F7"), "{vcac}");
    assert!(vcac.contains("0000001800000A00"), "{vcac}");

    let dump = env.ok("pkcs15-tool", &["--dump"]);
    assert!(
        dump.contains("PKCS#15 Card [DOE.JOHN.Q.1234567890]"),
        "{dump}"
    );
    for label in [
        "CAC ID Certificate",
        "CAC Email Signature Certificate",
        "CAC Email Encryption Certificate",
    ] {
        assert!(
            dump.contains(&format!("X.509 Certificate [{label}]")),
            "{label}\n{dump}"
        );
    }
    let dir = env.dir().join("default");
    write_default_card(&dir);
    env.assert_certificates_read_back(&dir, 3);
    env.assert_signature_verifies(
        "12345678",
        "0001",
        &dir.join("id0.pem"),
        b"signed through libccid's serial driver",
    );
}

#[test]
fn a_t1_card_through_the_real_ccid_driver() {
    // With a T=1-only ATR libccid speaks T=1 blocks at TPDU level: IFSD
    // negotiation, chained I-blocks for the 256-byte signature input.
    let (mut env, _link) = start("GemPCTwin", |dir| {
        let card = dir.join("t1card");
        write_default_card(&card);
        let toml = std::fs::read_to_string(card.join("card.toml")).unwrap();
        let toml = toml.replace(
            "atr = \"3B7A18000073667465206364313434\"",
            "atr = \"3B800181\"",
        );
        std::fs::write(card.join("card.toml"), toml).unwrap();
        vec!["--card".into(), card.display().to_string()]
    });
    env.wait_for_card(0);
    assert_eq!(
        env.ok("opensc-tool", &["-r", "0", "-a"]).trim(),
        "3b:80:01:81"
    );
    assert_eq!(
        env.ok("opensc-tool", &["-r", "0", "-n"]).trim(),
        "Common Access Card (CAC)"
    );
    let vcac = env.vcac_log(0);
    // SetParameters T=1, then S(IFS request, 254).
    assert!(vcac.contains("0100001110004D002000"), "{vcac}");
    assert!(vcac.contains("00C101FE3E"), "{vcac}");
    let dir = env.dir().join("t1card");
    env.assert_certificates_read_back(&dir, 3);
    env.assert_signature_verifies(
        "12345678",
        "0001",
        &dir.join("id0.pem"),
        b"signed through libccid's serial driver",
    );
}

#[test]
fn sec1210_two_slots_without_echo() {
    // libccid 1.5 knows "SEC1210": two slots, no echo, Escape 06 on open.
    let (mut env, _link) = start("SEC1210", |dir| {
        let first = dir.join("first");
        write_default_card(&first);
        let second = dir.join("second");
        let out = Command::new(vcac_tests::vcac_bin())
            .args([
                "provision",
                "--out",
                second.to_str().unwrap(),
                "--seed",
                "7",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        vec![
            "--card".into(),
            first.display().to_string(),
            "--card".into(),
            second.display().to_string(),
        ]
    });
    env.wait_for_card(0);
    env.wait_for_card(1);
    let list = env.ok("opensc-tool", &["-l"]);
    assert!(list.contains("vcac serial 00 00"), "{list}");
    assert!(list.contains("vcac serial 00 01"), "{list}");
    for reader in ["0", "1"] {
        assert_eq!(
            env.ok("opensc-tool", &["-r", reader, "-n"]).trim(),
            "Common Access Card (CAC)"
        );
    }
    // Slot 1 holds the second card: its first certificate comes back.
    let pem = env.dir().join("slot1-id0.pem");
    env.ok(
        "pkcs15-tool",
        &[
            "--reader",
            "1",
            "--read-certificate",
            "0001",
            "-o",
            pem.to_str().unwrap(),
        ],
    );
    assert_eq!(
        pem_to_der(&pem),
        pem_to_der(&env.dir().join("second").join("id0.pem"))
    );
    assert_ne!(
        pem_to_der(&pem),
        pem_to_der(&env.dir().join("first").join("id0.pem"))
    );
    let vcac = env.vcac_log(0);
    assert!(vcac.contains("serial > 6B0100000000"), "{vcac}");
    // bSlot 1 reached the device.
    assert!(vcac.contains("serial > 620000000001"), "{vcac}");
}

#[test]
fn time_requests_while_a_slow_card_works() {
    // Every card operation takes 40 ms; a time request goes out every
    // 10 ms of it. The driver skips them and keeps waiting.
    let (mut env, _link) = start("GemPCTwin", |_| {
        vec![
            "--card-delay-ms".into(),
            "40".into(),
            "--tick-ms".into(),
            "10".into(),
        ]
    });
    env.wait_for_card(0);
    assert_eq!(
        env.ok("opensc-tool", &["-r", "0", "-n"]).trim(),
        "Common Access Card (CAC)"
    );
    let dir = env.dir().join("default");
    write_default_card(&dir);
    env.assert_signature_verifies(
        "12345678",
        "0001",
        &dir.join("id0.pem"),
        b"signed through libccid's serial driver",
    );
    let vcac = env.vcac_log(0);
    assert!(vcac.contains("time request sent"), "{vcac}");
}

#[test]
fn sec1210urt_works_with_the_installed_libccid_too() {
    // libccid 1.7+ drives SEC1210URT without echo; older versions (Debian
    // 12 has 1.5.2) do not know the name and drive it as a GemPC Twin,
    // echo included. Either way the reader follows the driver's probe.
    let (mut env, _link) = start("SEC1210URT", |_| Vec::new());
    env.wait_for_card(0);
    assert_eq!(
        env.ok("opensc-tool", &["-r", "0", "-n"]).trim(),
        "Common Access Card (CAC)"
    );
    let list = env.ok("opensc-tool", &["-l"]);
    assert!(!list.contains("vcac serial 00 01"), "one slot: {list}");
    let dir = env.dir().join("default");
    write_default_card(&dir);
    env.assert_certificates_read_back(&dir, 3);
}

/// Runs `opensc-tool -r 0` with `n` times `-s APDU` (one session) and
/// returns the wall time.
fn time_apdus(env: &PcscEnv, n: usize) -> Duration {
    // SELECT the CCC with P2 = 0C: case 3, answered 90 00, one round trip.
    let apdu = "00:A4:04:0C:07:A0:00:00:01:16:DB:00";
    let mut args = vec!["-r", "0"];
    for _ in 0..n {
        args.extend(["-s", apdu]);
    }
    let start = Instant::now();
    let out = env.ok("opensc-tool", &args);
    let elapsed = start.elapsed();
    assert_eq!(
        out.matches("Received (SW1=0x90, SW2=0x00)").count(),
        n,
        "{out}"
    );
    elapsed
}

#[test]
fn apdu_round_trip_latency_through_pcscd_libccid_and_the_pty() {
    // Per APDU: (time of 1 + n APDUs − time of 1 APDU) / n, in one
    // opensc-tool session each (the difference removes process start-up,
    // connection and card detection). Median of 5. Run alone
    // (--test-threads=1) for a number undisturbed by the other tests.
    let (mut env, _link) = start("GemPCTwin", |_| Vec::new());
    env.wait_for_card(0);
    let n = 2000;
    let mut samples: Vec<Duration> = (0..5)
        .map(|_| {
            let one = time_apdus(&env, 1);
            let many = time_apdus(&env, n + 1);
            many.saturating_sub(one) / n as u32
        })
        .collect();
    samples.sort();
    let median = samples[2];
    println!(
        "APDU round trip through OpenSC + pcscd + libccidtwin + pty + CCID device: {} µs \
         (median of 5 × {n} APDUs; samples {:?})",
        median.as_micros(),
        samples.iter().map(Duration::as_micros).collect::<Vec<_>>()
    );
    // ~70 µs on a developer machine; a stall (a lost time request, a
    // missed wake-up) would cost milliseconds.
    assert!(median < Duration::from_millis(5), "{median:?} per APDU");
}

#[test]
fn ccid_serial_stops_cleanly_and_removes_its_link() {
    let (mut env, link) = start("GemPCTwin", |_| Vec::new());
    env.wait_for_card(0);
    let log = env.vcac_log(0);
    assert!(log.contains("PIN 12345678"), "{log}");
    assert!(
        log.contains(&format!("DEVICENAME {}:GemPCTwin", link.display())),
        "{log}"
    );
    assert!(std::fs::read_link(&link).unwrap().starts_with("/dev/pts/"));
    let pid = env.vcac_pid(0).to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let status = env.wait_vcac_exit(0, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(env.vcac_log(0).contains("stopped"));
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "link left behind"
    );
}
