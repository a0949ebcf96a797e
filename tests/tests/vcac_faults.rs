//! `[faults]` in `card.toml`, seen by a PC/SC client through a real
//! pcscd: `vcac run --card DIR -- vcac script --reader "vcac 00 00"`.
//! The Nth command of an INS gets the configured status word, every
//! response waits `latency_ms`, and the card is gone after
//! `remove_after` APDUs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use vcac_tests::{require_peers, vcac_bin, VPCD_DRIVER};

const SELECT_CCC: &str = "00A4040007A000000116DB00";

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// A one-identity card in `dir` with `faults` appended to its card.toml.
fn card_with(dir: &Path, faults: &str) {
    let o = Command::new(vcac_bin())
        .args([
            "provision",
            "--seed",
            "4",
            "--identities",
            "1",
            "--ca-key-type",
            "p256",
            "--out",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "provision: {}", text(&o.stderr));
    let toml = dir.join("card.toml");
    let mut t = std::fs::read_to_string(&toml).unwrap();
    t.push_str(faults);
    std::fs::write(&toml, t).unwrap();
}

/// Runs `script` through pcscd against the card in `dir`; the script's
/// output and how long `vcac script` itself took.
fn script_through_pcscd(dir: &Path, work: &Path, script: &str) -> (Output, Duration) {
    let file = work.join("faults.script");
    std::fs::write(&file, script).unwrap();
    let timing = work.join("elapsed-ns");
    let inner = "start=$(date +%s%N); \"$VCAC\" script --reader \"$VCAC_READER\" \"$1\"; rc=$?; \
         echo $(( $(date +%s%N) - start )) > \"$2\"; exit $rc";
    let o = Command::new(vcac_bin())
        .arg("run")
        .arg("--card")
        .arg(dir)
        .args(["--", "sh", "-c", inner, "sh"])
        .arg(&file)
        .arg(&timing)
        .env("VCAC", vcac_bin())
        .output()
        .unwrap();
    let ns: u64 = std::fs::read_to_string(&timing)
        .unwrap_or_else(|_| panic!("no timing: {}{}", text(&o.stdout), text(&o.stderr)))
        .trim()
        .parse()
        .unwrap();
    (o, Duration::from_nanos(ns))
}

fn peers() {
    require_peers(&["pcscd", "unshare", "setpriv", VPCD_DRIVER]);
}

#[test]
fn the_nth_command_of_an_ins_gets_the_status_word() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let card = tmp.path().join("card");
    card_with(
        &card,
        "\n[faults]\n[[faults.status]]\nins = \"A4\"\nnth = 3\nsw = \"6F00\"\n\
         [[faults.status]]\nins = \"CA\"\nnth = 1\nsw = \"6A 88\"\n",
    );
    let script = format!(
        "{SELECT_CCC} => 61 0D\n{SELECT_CCC} => 61 0D\n{SELECT_CCC} => 6F 00\n{SELECT_CCC} => 61 0D\n\
         00A4040007A000000003000000 => 6F 0B * 90 00\n00CA9F7F00 => 6A 88\n00CA9F7F00 => 9F 7F 2A * 90 00\n"
    );
    let (o, _) = script_through_pcscd(&card, tmp.path(), &script);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.trim_end().ends_with("7 passed, 0 failed"), "{out}");

    // Without the fault the third SELECT is answered normally: the same
    // expectations fail exactly there.
    let plain = tmp.path().join("plain");
    card_with(&plain, "");
    let (o, _) = script_through_pcscd(&plain, tmp.path(), &script);
    let out = text(&o.stdout);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("line 3: FAILED"), "{out}");
    assert!(out.contains("line 6: FAILED"), "{out}");
    assert!(out.trim_end().ends_with("5 passed, 2 failed"), "{out}");
}

#[test]
fn every_response_waits_the_latency() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let script = format!("{SELECT_CCC} => 61 0D\n").repeat(10);
    let slow = tmp.path().join("slow");
    card_with(&slow, "\n[faults]\nlatency_ms = 150\n");
    let (o, elapsed) = script_through_pcscd(&slow, tmp.path(), &script);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        elapsed >= Duration::from_millis(10 * 150),
        "10 APDUs at 150 ms took {elapsed:?}"
    );
    let fast = tmp.path().join("fast");
    card_with(&fast, "");
    let (o, quick) = script_through_pcscd(&fast, tmp.path(), &script);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert!(
        quick < Duration::from_millis(1000),
        "without [faults] 10 APDUs took {quick:?}"
    );
}

#[test]
fn the_card_is_removed_after_n_apdus() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let card = tmp.path().join("card");
    card_with(&card, "\n[faults]\nremove_after = 3\n");
    // Three APDUs are answered; then pcscd sees the card go (`remove`
    // waits for that, failing after 30 s).
    let (o, elapsed) = script_through_pcscd(
        &card,
        tmp.path(),
        &format!("{SELECT_CCC} => 61 0D\n{SELECT_CCC} => 61 0D\n{SELECT_CCC} => 61 0D\nremove\n"),
    );
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.trim_end().ends_with("3 passed, 0 failed"), "{out}");
    assert!(
        elapsed < Duration::from_secs(10),
        "removal noticed after {elapsed:?}"
    );

    // A fourth APDU does not reach a card.
    let (o, _) = script_through_pcscd(
        &card,
        tmp.path(),
        &format!("{SELECT_CCC} => 61 0D\n{SELECT_CCC} => 61 0D\n{SELECT_CCC} => 61 0D\n{SELECT_CCC} => 61 0D\n"),
    );
    let out = text(&o.stdout);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("line 4: FAILED"), "{out}{}", text(&o.stderr));
    assert!(out.trim_end().ends_with("3 passed, 1 failed"), "{out}");
}
