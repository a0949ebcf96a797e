//! `vcac script`: every line form and directive against the in-process
//! card and through a private pcscd (`vcac run -- vcac script --reader`),
//! failures with line numbers, scriptor files, JUnit XML that parses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::{Command, Output};

use vcac_tests::{require_peers, vcac_bin, OPENSC_PKCS11, VPCD_DRIVER};

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn vcac(args: &[&str]) -> Output {
    Command::new(vcac_bin()).args(args).output().unwrap()
}

/// Every line form; all assertions hold on the default card, in process
/// and through pcscd.
const ALL_FORMS: &str = "\
# every line form vcac script knows
expect-atr 3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34
expect-atr 3B 7A XX *
00 A4 04 00 07 A0 00 00 01 16 DB 00 00 => 6F 0B 84 07 A0 00 00 01 16 DB 00 A5 00 90 00
00A4040007A000000116DB00 => 61 0D
00 C0 00 00 0D => 6F XX 84 07 * 90 00   # GET RESPONSE, not automatic
00 C0 00 00 0D => 6A 88
00 A4 04 00 07 \\
   A0 00 00 00 79 01 00 00 => * 90 00
00 20 00 00 => 63 C3
00 20 00 00 08 31 32 33 34 35 36 37 38 => 90 00
00 20 00 00 => 90 00
reset
00 20 00 00 => 63 C3
00 20 00 00 08 3132333435363738 => 90 00
power-off
power-on
00 20 00 00 => 63 C3
00 84 00 00 08 => XX XX XX XX XX XX XX XX 90 00
00 A4 04 00 07 A0 00 00 01 16 DB 00 00
exit
00 00 00 00 => 90 00
";

const ALL_FORMS_PASSED: usize = 14;

const HOTPLUG: &str = "\
remove
insert
expect-atr 3B 7A *
00 A4 04 00 07 A0 00 00 01 16 DB 00 00 => * 90 00
";

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_owned()
}

fn assert_xml_parses(path: &Path) {
    let o = Command::new("python3")
        .args([
            "-c",
            "import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])",
        ])
        .arg(path)
        .output()
        .expect("python3 (install python3)");
    assert!(
        o.status.success(),
        "{}: {}",
        path.display(),
        text(&o.stderr)
    );
}

#[test]
fn every_line_form_in_process() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write(tmp.path(), "all.script", ALL_FORMS);
    let junit = tmp.path().join("all.xml");
    let o = vcac(&["script", &script, "--junit", junit.to_str().unwrap()]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(
        out.ends_with(&format!("\n{ALL_FORMS_PASSED} passed, 0 failed\n")),
        "{out}"
    );
    // The transcript shows each exchange, and exit stopped before the last line.
    assert!(
        out.contains("> 00 A4 04 00 07 A0 00 00 01 16 DB 00\n< 61 0D\n"),
        "{out}"
    );
    assert!(out.contains("> POWER-OFF\n> POWER-ON\n< 3B 7A 18"), "{out}");
    assert!(out.contains("> EXIT\n"), "{out}");
    assert!(!out.contains("> 00 00 00 00"), "{out}");
    assert_xml_parses(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), ALL_FORMS_PASSED);
    assert!(
        xml.contains("name=\"line 5: 00 A4 04 00 07 A0 00 00 01 16 DB 00 =&gt; 61 0D\""),
        "{xml}"
    );

    let hot = write(tmp.path(), "hot.script", HOTPLUG);
    let o = vcac(&["script", &hot]);
    assert!(o.status.success(), "{}", text(&o.stdout));
    assert!(text(&o.stdout).ends_with("2 passed, 0 failed\n"));
}

#[test]
fn a_failing_expectation_names_its_line_and_fails_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write(
        tmp.path(),
        "fail.script",
        "# two checks, the second wrong\n00 20 00 00 => 63 C3\n\n00 20 00 00 => 63 C2\n00 20 00 00 => 63 XX\n",
    );
    let junit = tmp.path().join("fail & <x>.xml");
    let o = vcac(&["script", &script, "--junit", junit.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(
        out.contains("line 4: FAILED: 00 20 00 00 => 63 C2\n  expected 63 C2\n  got      63 C3\n"),
        "{out}"
    );
    assert!(out.ends_with("\n2 passed, 1 failed\n"), "{out}");
    assert_xml_parses(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(
        xml.contains("<failure message=\"expected 63 C2\">"),
        "{xml}"
    );

    // A malformed script: exit status 2, the line and the reason.
    let bad = write(tmp.path(), "bad.script", "reset\n00 A4 04 00 => 90 0G\n");
    let o = vcac(&["script", &bad]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr)
            .contains("bad.script: line 2: expected response: \"0G\" is neither a hex byte nor XX"),
        "{}",
        text(&o.stderr)
    );
}

/// A scriptor file (pcsc-tools' format: hex without spaces, reset, exit).
const SCRIPTOR: &str = "\
# a pcsc-tools scriptor file
reset
00 A4 04 00 07 A0 00 00 01 16 DB 00 00
00A4040007A000000079010000
00 20 00 00
exit
";

#[test]
fn a_scriptor_file_runs_unchanged_and_matches_scriptor_itself() {
    require_peers(&["pcscd", "unshare", "scriptor", VPCD_DRIVER, OPENSC_PKCS11]);
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "plain.scriptor", SCRIPTOR);
    let o = vcac(&["script", &file]);
    assert!(o.status.success(), "{}", text(&o.stdout));
    let ours = text(&o.stdout);
    assert!(ours.ends_with("\n0 passed, 0 failed\n"), "{ours}");
    assert!(ours.contains("> 00 20 00 00\n< 63 C3\n"), "{ours}");

    // The real scriptor, through pcscd, gets the same answers.
    let o = Command::new(vcac_bin())
        .args(["run", "--", "scriptor", "-r", "vcac 00 00", &file])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let theirs = text(&o.stdout);
    assert!(
        theirs.contains("< 6F 0B 84 07 A0 00 00 01 16 DB 00 A5 00 90 00 : Normal processing."),
        "{theirs}"
    );
    assert!(
        theirs.contains("< 63 C3 : State of non-volatile memory changed. Counter: 0x3"),
        "{theirs}"
    );
}

#[test]
fn every_line_form_through_pcscd() {
    require_peers(&["pcscd", "unshare", VPCD_DRIVER]);
    let tmp = tempfile::tempdir().unwrap();
    let script = write(tmp.path(), "all.script", ALL_FORMS);
    let junit = tmp.path().join("pcsc.xml");
    let o = Command::new(vcac_bin())
        .args([
            "run",
            "--",
            vcac_bin().to_str().unwrap(),
            "script",
            "--reader",
            "vcac 00 00",
        ])
        .args([&script, "--junit", junit.to_str().unwrap()])
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(
        out.ends_with(&format!("\n{ALL_FORMS_PASSED} passed, 0 failed\n")),
        "{out}"
    );
    assert_xml_parses(&junit);

    // A failure through pcscd fails `vcac run` too (its status is the command's).
    let fail = write(tmp.path(), "fail.script", "00 20 00 00 => 90 00\n");
    let o = Command::new(vcac_bin())
        .args([
            "run",
            "--",
            vcac_bin().to_str().unwrap(),
            "script",
            "--reader",
            "vcac",
            &fail,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("line 1: FAILED"));

    // An unknown reader is a clear error.
    let o = Command::new(vcac_bin())
        .args([
            "run",
            "--",
            vcac_bin().to_str().unwrap(),
            "script",
            "--reader",
            "nope",
            &fail,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("--reader nope: no such reader"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn recorded_script_session_becomes_a_script_that_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let script = write(tmp.path(), "all.script", ALL_FORMS);
    let rec = tmp.path().join("session.apdu");
    let o = vcac(&["script", &script, "--record", rec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stdout));
    let recording = std::fs::read_to_string(&rec).unwrap();
    assert!(recording.starts_with("# Generated by vcac "), "{recording}");
    assert!(recording.contains("\n# ATR: 3B7A18000073667465206364313434\n# PROTOCOL: T=0\n"));
    assert!(
        recording.contains("\n0020000008FFFFFFFFFFFFFFFF\n9000\n"),
        "{recording}"
    );
    assert!(
        !recording.contains("3132333435363738"),
        "PIN in the recording"
    );

    let o = vcac(&["script", "--from-recording", rec.to_str().unwrap()]);
    assert!(o.status.success());
    let generated = text(&o.stdout);
    assert!(
        generated.contains("00 A4 04 00 07 A0 00 00 01 16 DB 00 => 61 0D\n"),
        "{generated}"
    );
    // Against the recording itself it passes, except GET CHALLENGE's random bytes
    // are whatever was recorded: replaying the recording returns them.
    let gen = write(tmp.path(), "gen.script", &generated);
    let o = vcac(&["script", &gen, "--card", rec.to_str().unwrap()]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    let n = recording.lines().filter(|l| !l.starts_with('#')).count() / 2;
    assert!(
        out.ends_with(&format!("\n{} passed, 0 failed\n", n + 1)),
        "{out}"
    );

    // Strict: a different sequence against the recording fails.
    let other = write(tmp.path(), "other.script", "00 CA 9F 7F 00\n");
    let o = vcac(&["script", &other, "--card", rec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("< 6F 00\n"));
    assert!(
        text(&o.stderr)
            .contains("exchange 1 (line 5): expected 00A4040007A000000116DB0000, got 00CA9F7F00"),
        "{}",
        text(&o.stderr)
    );
}
