//! `--record` and `vcac replay`: an OpenSC `pkcs15-tool --dump` session
//! recorded, replayed to the same OpenSC command with the same output, and
//! a different command sequence reported in strict mode.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use vcac_tests::{require_peers, vcac_bin, PcscEnv, OPENSC_PKCS11, VPCD_DRIVER};

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn run(dir: &Path, args: &[&str]) -> Output {
    let conf = dir.join("opensc.conf");
    std::fs::write(
        &conf,
        "app default {\n  framework pkcs15 { use_file_caching = false; }\n}\n",
    )
    .unwrap();
    Command::new(vcac_bin())
        .arg("run")
        .args(args)
        .env("OPENSC_CONF", conf)
        .output()
        .unwrap()
}

#[test]
fn pkcs15_dump_recorded_with_serve_replays_with_the_same_output() {
    let mut env = PcscEnv::vpcd();
    let rec = env.dir().join("dump.apdu");
    env.spawn_vcac(&["serve", "--record", rec.to_str().unwrap()]);
    env.wait_for_card(0);
    let recorded = env.ok("pkcs15-tool", &["--dump"]);
    assert!(
        recorded.contains("PKCS#15 Card [DOE.JOHN.Q.1234567890]"),
        "{recorded}"
    );
    // A PIN check is recorded too, masked.
    env.ok("pkcs15-tool", &["--verify-pin", "--pin", "12345678"]);
    let pid = env.vcac_pid(0);
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(env.wait_vcac_exit(0, Duration::from_secs(10)).success());
    let recording = std::fs::read_to_string(&rec).unwrap();
    assert!(
        recording.contains("\n# ATR: 3B7A18000073667465206364313434\n"),
        "{recording}"
    );
    assert!(recording.contains("# MASKED: "), "{recording}");
    // (The certificates' CN contains the digits too: look at VERIFY lines.)
    let verifies: Vec<&str> = recording
        .lines()
        .filter(|l| l.starts_with("0020"))
        .collect();
    assert!(!verifies.is_empty(), "{recording}");
    for v in verifies {
        assert!(
            v == "0020000008FFFFFFFFFFFFFFFF" || v == "00200000",
            "PIN not masked: {v}"
        );
    }
    let exchanges = recording.lines().filter(|l| !l.starts_with('#')).count() / 2;
    assert!(exchanges > 20, "{recording}");

    // Replay into a fresh pcscd, as the recording started with one.
    let keep = tempfile::tempdir().unwrap();
    let rec = keep.path().join("dump.apdu");
    std::fs::write(&rec, &recording).unwrap();
    drop(env);
    let mut env = PcscEnv::vpcd();
    env.spawn_vcac(&["replay", rec.to_str().unwrap()]);
    env.wait_for_card(0);
    let o = env.run("pkcs15-tool", &["--dump"]);
    assert!(
        o.status.success(),
        "replayed dump failed:\n{}\n{}",
        text(&o.stderr),
        env.vcac_log(0)
    );
    let replayed = text(&o.stdout);
    assert_eq!(replayed, recorded);
    env.ok("pkcs15-tool", &["--verify-pin", "--pin", "12345678"]);
    let pid = env.vcac_pid(0);
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = env.wait_vcac_exit(0, Duration::from_secs(10));
    let log = env.vcac_log(0);
    assert!(status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "{exchanges} of {exchanges} exchanges matched, 0 commands differed"
        )),
        "{log}"
    );

    // Strict mode: another command sequence is answered 6F00 and reported.
    drop(env);
    let mut env = PcscEnv::vpcd();
    env.spawn_vcac(&["replay", rec.to_str().unwrap()]);
    env.wait_for_card(0);
    let script = keep.path().join("other.script");
    std::fs::write(&script, "00 CA 9F 7F 00 => 6F 00\n").unwrap();
    let o = env
        .command(vcac_bin())
        .args([
            "script",
            "--reader",
            "Virtual PCD 00 00",
            script.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let pid = env.vcac_pid(0);
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = env.wait_vcac_exit(0, Duration::from_secs(10));
    let log = env.vcac_log(0);
    assert!(!status.success(), "{log}");
    let first = recording.lines().find(|l| !l.starts_with('#')).unwrap();
    assert!(
        log.contains(&format!(
            "exchange 1 (line 5): expected {first}, got 00CA9F7F00"
        )),
        "{log}"
    );
    assert!(
        log.contains("1 command(s) differed from the recording"),
        "{log}"
    );
}

#[test]
fn vcac_run_records_and_replays_a_session() {
    require_peers(&[
        "pcscd",
        "unshare",
        "pkcs15-tool",
        OPENSC_PKCS11,
        VPCD_DRIVER,
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("run.apdu");
    let a = run(
        tmp.path(),
        &[
            "--record",
            rec.to_str().unwrap(),
            "--",
            "pkcs15-tool",
            "--dump",
        ],
    );
    assert!(a.status.success(), "{}", text(&a.stderr));
    let b = run(
        tmp.path(),
        &[
            "--card",
            rec.to_str().unwrap(),
            "--",
            "pkcs15-tool",
            "--dump",
        ],
    );
    assert!(b.status.success(), "{}", text(&b.stderr));
    assert_eq!(text(&b.stdout), text(&a.stdout));
    assert!(
        text(&b.stderr).contains(", 0 commands differed"),
        "{}",
        text(&b.stderr)
    );

    // A different sequence: the command itself succeeds, the run fails.
    let c = run(
        tmp.path(),
        &[
            "--card",
            rec.to_str().unwrap(),
            "--",
            "opensc-tool",
            "-r",
            "0",
            "-s",
            "00 84 00 00 08",
        ],
    );
    assert_eq!(c.status.code(), Some(1), "{}", text(&c.stderr));
    assert!(
        text(&c.stderr).contains("got 0084000008"),
        "{}",
        text(&c.stderr)
    );
}
