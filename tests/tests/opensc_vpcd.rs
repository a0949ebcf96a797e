//! OpenSC reads the virtual CAC through the real pcscd and vsmartcard's
//! vpcd driver.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use vcac_tests::{write_default_card, PcscEnv};

#[test]
fn opensc_binds_the_cac_driver_and_reads_the_default_card() {
    let mut env = PcscEnv::vpcd();
    env.spawn_vcac(&["serve"]);
    env.wait_for_card(0);

    // The CAC driver binds (not PIV, not the default driver).
    let name = env.ok("opensc-tool", &["-r", "0", "-n"]);
    assert_eq!(name.trim(), "Common Access Card (CAC)");
    let atr = env.ok("opensc-tool", &["-r", "0", "-a"]);
    assert_eq!(atr.trim(), "3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34");

    let dump = env.ok("pkcs15-tool", &["--dump"]);
    // Token label from the first certificate's CN.
    assert!(
        dump.contains("PKCS#15 Card [DOE.JOHN.Q.1234567890]"),
        "{dump}"
    );
    assert_eq!(dump.matches("X.509 Certificate [").count(), 3, "{dump}");
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

    // Card serial (from the CCC's CUID) is the one vcac printed.
    let serial = env.ok("opensc-tool", &["-r", "0", "--serial"]);
    let log = env.vcac_log(0);
    let printed = log
        .split("(serial ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .to_ascii_lowercase();
    let shown: String = serial
        .split_whitespace()
        .take_while(|w| w.len() == 2)
        .collect::<String>()
        .to_ascii_lowercase();
    assert_eq!(shown, printed, "{serial}");

    let dir = env.dir().join("default");
    write_default_card(&dir);
    env.assert_certificates_read_back(&dir, 3);
}

#[test]
fn t1_atr_and_compressed_certificates() {
    // With a T=1 ATR OpenSC sends Le; compressed certificates are inflated
    // by OpenSC and must still equal the provisioned DER.
    let mut env = PcscEnv::vpcd();
    let dir = env.dir().join("card");
    write_default_card(&dir);
    let toml = std::fs::read_to_string(dir.join("card.toml")).unwrap();
    let toml = toml
        .replace(
            "atr = \"3B7A18000073667465206364313434\"",
            "atr = \"3B800181\"",
        )
        .replace("key = \"id0.key\"", "key = \"id0.key\"\ncompress = true")
        .replace("key = \"id2.key\"", "key = \"id2.key\"\ncompress = true");
    std::fs::write(dir.join("card.toml"), toml).unwrap();
    env.spawn_vcac(&["serve", "--card", dir.to_str().unwrap()]);
    env.wait_for_card(0);
    let atr = env.ok("opensc-tool", &["-r", "0", "-a"]);
    assert_eq!(atr.trim(), "3b:80:01:81");
    assert_eq!(
        env.ok("opensc-tool", &["-r", "0", "-n"]).trim(),
        "Common Access Card (CAC)"
    );
    env.assert_certificates_read_back(&dir, 3);
}

#[test]
fn a_provisioned_directory_is_served_byte_identical() {
    let mut env = PcscEnv::vpcd();
    let dir = env.dir().join("d");
    let out = std::process::Command::new(vcac_tests::vcac_bin())
        .args([
            "provision",
            "--out",
            dir.to_str().unwrap(),
            "--seed",
            "7",
            "--pin",
            "24681357",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.spawn_vcac(&["serve", "--card", dir.to_str().unwrap()]);
    env.wait_for_card(0);
    env.assert_certificates_read_back(&dir, 3);
    // The provisioned PIN works, the default one does not.
    env.pkcs11(&["--login", "--pin", "24681357", "-O"]);
    let bad = env.run(
        "pkcs11-tool",
        &[
            "--module",
            vcac_tests::OPENSC_PKCS11,
            "--login",
            "--pin",
            "12345678",
            "-O",
        ],
    );
    assert!(!bad.status.success());
}

#[test]
fn serve_stops_cleanly_on_sigterm_and_pcscd_sees_the_removal() {
    let mut env = PcscEnv::vpcd();
    env.spawn_vcac(&["serve"]);
    env.wait_for_card(0);
    let log = env.vcac_log(0);
    assert!(log.contains("PIN 12345678"), "serve prints the PIN: {log}");
    let pid = env.vcac_pid(0).to_string();
    env.ok("kill", &["-TERM", &pid]);
    env.wait_until(
        std::time::Duration::from_secs(10),
        "the card to be removed",
        |env| {
            let out = env.run("opensc-tool", &["-l"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines().any(|l| l.starts_with("0    No"))
        },
    );
    let status = env.wait_vcac_exit(0, std::time::Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(env.vcac_log(0).contains("stopped"));
}

#[test]
fn two_cards_in_two_vpcd_slots_are_distinct_to_opensc() {
    let mut env = PcscEnv::vpcd();
    let mut dirs = Vec::new();
    for (name, seed) in [("a", "21"), ("b", "22")] {
        let dir = env.dir().join(name);
        let out = std::process::Command::new(vcac_tests::vcac_bin())
            .args([
                "provision",
                "--out",
                dir.to_str().unwrap(),
                "--seed",
                seed,
                "--name",
                &format!("CARD.{name}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dirs.push(dir);
    }
    env.spawn_vcac(&[
        "serve",
        "--card",
        dirs[0].to_str().unwrap(),
        "--card",
        dirs[1].to_str().unwrap(),
    ]);
    env.wait_for_card(0);
    env.wait_for_card(1);
    let serial = |r: &str| env.ok("opensc-tool", &["-r", r, "--serial"]);
    let (s0, s1) = (serial("0"), serial("1"));
    assert_ne!(s0, s1, "two cards must not share a serial");
    // Each slot's token carries its own card's certificates.
    let slots = env.pkcs11(&["-L"]);
    assert!(
        slots.contains("CARD.a") && slots.contains("CARD.b"),
        "{slots}"
    );
    for (slot, dir) in dirs.iter().enumerate() {
        env.assert_slot_certificates_read_back(Some(slot), dir, 3);
    }
}

#[test]
fn slot_option_picks_the_vpcd_slot() {
    let mut env = PcscEnv::vpcd();
    env.spawn_vcac(&["serve", "--slot", "1"]);
    env.wait_for_card(1);
    let list = env.ok("opensc-tool", &["-l"]);
    assert!(list.lines().any(|l| l.starts_with("0    No")), "{list}");
    assert!(env.vcac_log(0).contains("127.0.0.1:35964"));
}
