//! Keys and PIN through the real client stack: OpenSC signs, decrypts and
//! passes `pkcs11-tool --test` against the virtual CAC served to pcscd
//! through vpcd, with each key backend.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use vcac_tests::{openssl, public_key_of, vcac_bin, PcscEnv, OPENSC_PKCS11};

const PIN: &str = "24681357";
const PUK: &str = "13572468";

/// Provisions a card directory with the binary; returns its path.
fn provision(env: &PcscEnv, name: &str, extra: &[&str]) -> PathBuf {
    let dir = env.dir().join(name);
    let mut args = vec![
        "provision",
        "--out",
        dir.to_str().unwrap(),
        "--seed",
        "3",
        "--pin",
        PIN,
        "--puk",
        PUK,
    ];
    args.extend_from_slice(extra);
    let out = Command::new(vcac_bin()).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn serve(env: &mut PcscEnv, dir: &Path, backend: &str) {
    env.spawn_vcac(&[
        "serve",
        "--card",
        dir.to_str().unwrap(),
        "--backend",
        backend,
    ]);
    env.wait_for_card(0);
}

/// The three checks of issue 3 for one backend: --test, sign, decrypt.
fn sign_decrypt_and_self_test(backend: &str) {
    let mut env = PcscEnv::vpcd();
    let dir = provision(&env, "card", &[]);
    serve(&mut env, &dir, backend);

    let test = env.pkcs11(&["--test", "--login", "--pin", PIN]);
    assert!(test.contains("No errors"), "{test}");

    // SIGN with the ID key; openssl verifies against id0.pem.
    let sig =
        env.assert_signature_verifies(PIN, "0001", &dir.join("id0.pem"), b"the quick brown fox");
    assert_eq!(sig.len(), 256);
    let data = env.dir().join("data");
    std::fs::write(&data, b"the quick brown fox").unwrap();

    // openssl encrypts to id2.pem; the card decrypts (raw block, host unpads).
    let pub2 = env.dir().join("pub2.pem");
    public_key_of(&dir.join("id2.pem"), &pub2);
    let ct = env.dir().join("ct");
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        pub2.to_str().unwrap(),
        "-in",
        data.to_str().unwrap(),
        "-out",
        ct.to_str().unwrap(),
    ]);
    let pt = env.dir().join("pt");
    env.pkcs11(&[
        "--login",
        "--pin",
        PIN,
        "--decrypt",
        "-m",
        "RSA-PKCS",
        "--id",
        "0003",
        "-i",
        ct.to_str().unwrap(),
        "-o",
        pt.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&pt).unwrap(), b"the quick brown fox");
}

#[test]
fn rustcrypto_backend_signs_decrypts_and_passes_pkcs11_tool_test() {
    sign_decrypt_and_self_test("rustcrypto");
}

#[test]
fn openssl_backend_signs_decrypts_and_passes_pkcs11_tool_test() {
    sign_decrypt_and_self_test("openssl");
}

#[test]
fn rsa3072_keys_sign_through_opensc() {
    let mut env = PcscEnv::vpcd();
    let dir = provision(
        &env,
        "card3072",
        &["--key-type", "rsa3072", "--identities", "1"],
    );
    serve(&mut env, &dir, "rustcrypto");
    let sig = env.assert_signature_verifies(PIN, "0001", &dir.join("id0.pem"), b"3072");
    assert_eq!(sig.len(), 384);
}

#[test]
fn wrong_pin_reports_tries_left_and_a_blocked_pin_stays_blocked_until_unblocked() {
    let mut env = PcscEnv::vpcd();
    let dir = provision(&env, "card", &[]);
    serve(&mut env, &dir, "rustcrypto");

    // A wrong PIN says how many tries are left.
    let out = env.run(
        "pkcs15-tool",
        &["--change-pin", "--pin", "00000000", "--new-pin", "11111111"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PIN code incorrect; tries left: 2"), "{err}");
    // The raw status word agrees.
    let raw = env.ok("opensc-tool", &["-r", "0", "-s", "00200000"]);
    assert!(raw.contains("SW1=0x63, SW2=0xC2"), "{raw}");

    // Two more wrong PINs block it.
    for _ in 0..2 {
        let out = env.run("pkcs15-tool", &["--verify-pin", "--pin", "00000000"]);
        assert!(!out.status.success());
    }
    let blocked = |env: &PcscEnv| {
        let out = env.run("pkcs15-tool", &["--verify-pin", "--pin", PIN]);
        assert!(
            !out.status.success(),
            "the right PIN must not work while blocked"
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains("Authentication method blocked"), "{err}");
    };
    blocked(&env);
    // Still blocked after a card reset and for PKCS#11 logins.
    env.ok("opensc-tool", &["-r", "0", "--reset"]);
    blocked(&env);
    let login = env.run(
        "pkcs11-tool",
        &["--module", OPENSC_PKCS11, "--login", "--pin", PIN, "-O"],
    );
    assert!(!login.status.success());
    assert!(
        String::from_utf8_lossy(&login.stderr).contains("CKR_PIN_LOCKED"),
        "{login:?}"
    );

    // A wrong PUK reports its tries; the right one unblocks with a new PIN.
    let out = env.run(
        "pkcs15-tool",
        &[
            "--unblock-pin",
            "--puk",
            "99999999",
            "--new-pin",
            "55555555",
        ],
    );
    assert!(!out.status.success());
    blocked(&env);
    env.ok(
        "pkcs15-tool",
        &["--unblock-pin", "--puk", PUK, "--new-pin", "55555555"],
    );
    env.ok("pkcs15-tool", &["--verify-pin", "--pin", "55555555"]);
    let test = env.pkcs11(&["--login", "--pin", "55555555", "-O"]);
    assert!(test.contains("Certificate Object"), "{test}");
}
