//! The virtual PIN pad through the real CCID driver: pcscd +
//! `libccidtwin.so` driving `vcac ccid-serial --reader GemPCPinPad
//! --pinpad …`. libccid offers FEATURE_VERIFY_PIN_DIRECT /
//! MODIFY_PIN_DIRECT, OpenSC (`enable_pinpad = true`) reports a protected
//! authentication path, and `pkcs11-tool --login` without `--pin` signs —
//! or, with `--pinpad deny`, fails as a cancelled PIN entry without
//! costing a try.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use vcac_tests::{openssl, public_key_of, write_default_card, PcscEnv, ReaderConf, OPENSC_PKCS11};

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn start(pinpad: &str) -> (PcscEnv, PathBuf) {
    let link = std::env::temp_dir().join(format!(
        "vcac-pinpad-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let card = std::env::temp_dir().join(format!("{}-card", link.display()));
    write_default_card(&card);
    let env = PcscEnv::start_with(
        &[ReaderConf::CcidTwin {
            device: link.clone(),
            reader: "GemPCPinPad".into(),
        }],
        |pre| {
            pre.spawn_vcac(&[
                "ccid-serial",
                "--link",
                link.to_str().unwrap(),
                "--reader",
                "GemPCPinPad",
                "--card",
                card.to_str().unwrap(),
                "--pinpad",
                pinpad,
            ]);
            pre.wait_for_path(&link, Duration::from_secs(60));
        },
    );
    let conf = env.dir().join("opensc-pinpad.conf");
    std::fs::write(
        &conf,
        "app default {\n  reader_driver pcsc { enable_pinpad = true; }\n  \
         framework pkcs15 { use_file_caching = false; }\n}\n",
    )
    .unwrap();
    (env, card)
}

/// `pkcs11-tool ARGS` with OpenSC's PIN pad support on.
fn pkcs11_pinpad(env: &PcscEnv, args: &[&str]) -> std::process::Output {
    env.command("pkcs11-tool")
        .env("OPENSC_CONF", env.dir().join("opensc-pinpad.conf"))
        .arg("--module")
        .arg(OPENSC_PKCS11)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sign_args<'a>(input: &'a Path, sig: &'a Path) -> Vec<&'a str> {
    vec![
        "--login",
        "--sign",
        "-m",
        "SHA256-RSA-PKCS",
        "--id",
        "0001",
        "-i",
        input.to_str().unwrap(),
        "-o",
        sig.to_str().unwrap(),
    ]
}

#[test]
fn pkcs11_login_without_pin_signs_through_the_pinpad() {
    let (mut env, card) = start("auto");
    env.wait_for_card(0);
    let slots = pkcs11_pinpad(&env, &["-L"]);
    assert!(
        text(&slots).contains("PIN pad present"),
        "OpenSC sees no PIN pad:\n{}\n--- pcscd\n{}",
        text(&slots),
        env.pcscd_log()
    );
    let input = env.dir().join("data");
    let sig = env.dir().join("sig");
    std::fs::write(&input, b"signed with the PIN from the PIN pad").unwrap();
    let out = pkcs11_pinpad(&env, &sign_args(&input, &sig));
    assert!(
        out.status.success(),
        "pkcs11-tool --login (PIN pad) --sign:\n{}\n--- vcac\n{}\n--- pcscd\n{}",
        text(&out),
        env.vcac_log(0),
        env.pcscd_log()
    );
    let key = env.dir().join("pub.pem");
    public_key_of(&card.join("id0.pem"), &key);
    let v = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        key.to_str().unwrap(),
        "-signature",
        sig.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "Verified OK");
}

#[test]
fn a_cancelled_pinpad_entry_fails_the_login_cleanly() {
    let (mut env, _card) = start("deny");
    env.wait_for_card(0);
    let input = env.dir().join("data");
    let sig = env.dir().join("sig");
    std::fs::write(&input, b"never signed").unwrap();
    let out = pkcs11_pinpad(&env, &sign_args(&input, &sig));
    assert!(
        !out.status.success(),
        "the login succeeded:\n{}",
        text(&out)
    );
    assert!(
        text(&out).contains("CKR_FUNCTION_CANCELED"),
        "not a cancelled PIN entry:\n{}",
        text(&out)
    );
    // No try was spent: the card still takes its PIN (3 tries left), and
    // the reader keeps working.
    let status = env.run(
        "opensc-tool",
        &[
            "-r",
            "0",
            "-s",
            "00A4040007A0000000790100",
            "-s",
            "00200000",
        ],
    );
    assert!(
        text(&status).contains("SW1=0x63, SW2=0xC3"),
        "{}",
        text(&status)
    );
}
