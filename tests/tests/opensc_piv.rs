//! The PIV applet through the real pcscd + vpcd, driven by OpenSC and
//! yubico-piv-tool; the dual profile's driver choice; persistence across
//! restarts and `kill -9`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vcac_tests::{openssl, pem_to_der, public_key_of, require_peers, PcscEnv};

const PIN: &str = "123456";

/// `vcac provision --profile PROFILE --out DIR ARGS…` (the same binary the
/// tests serve with).
fn provision(dir: &Path, profile: &str, extra: &[&str]) {
    let mut args = vec![
        "provision",
        "--profile",
        profile,
        "--seed",
        "15",
        "--out",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = Command::new(vcac_tests::vcac_bin())
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn serve(env: &mut PcscEnv, dir: &Path) {
    env.spawn_vcac(&["serve", "--card", dir.to_str().unwrap()]);
    env.wait_for_card(0);
}

/// Waits until pcscd sees reader 0 empty (after vcac stopped).
fn wait_for_no_card(env: &mut PcscEnv) {
    env.wait_until(Duration::from_secs(30), "the card to go", |env| {
        let out = env.run("opensc-tool", &["-l"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == ["0", "No"])
    });
}

/// Starts `vcac serve --card DIR` again once the previous one is gone.
fn restart(env: &mut PcscEnv, dir: &Path) {
    wait_for_no_card(env);
    serve(env, dir);
}

fn piv_card(env: &mut PcscEnv, extra: &[&str]) -> PathBuf {
    let dir = env.dir().join("piv");
    provision(&dir, "piv", extra);
    serve(env, &dir);
    dir
}

/// Certificates `01`..`04` read back through PKCS#11 equal `id0.pem`…
fn assert_piv_certificates(env: &PcscEnv, dir: &Path) {
    for i in 0..4 {
        let out = env.dir().join(format!("piv-read-{i}.der"));
        let id = format!("{:02X}", i + 1);
        env.pkcs11(&[
            "--read-object",
            "--type",
            "cert",
            "--id",
            &id,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(
            std::fs::read(&out).unwrap(),
            pem_to_der(&dir.join(format!("id{i}.pem"))),
            "certificate {id}"
        );
    }
}

/// Signs with ECDSA (`--signature-format openssl`: DER) and verifies with
/// openssl against `cert`.
fn assert_ecdsa_verifies(env: &PcscEnv, id: &str, digest: &str, cert: &Path) {
    let input = env.dir().join(format!("ec-{id}.in"));
    let sig = env.dir().join(format!("ec-{id}.sig"));
    let key = env.dir().join(format!("ec-{id}.pub"));
    std::fs::write(&input, b"vcac PIV ECDSA").unwrap();
    let mechanism = format!("ECDSA-{}", digest.to_ascii_uppercase());
    env.pkcs11(&[
        "--login",
        "--pin",
        PIN,
        "--sign",
        "-m",
        &mechanism,
        "--signature-format",
        "openssl",
        "--id",
        id,
        "-i",
        input.to_str().unwrap(),
        "-o",
        sig.to_str().unwrap(),
    ]);
    public_key_of(cert, &key);
    let v = openssl(&[
        "dgst",
        &format!("-{digest}"),
        "-verify",
        key.to_str().unwrap(),
        "-signature",
        sig.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "Verified OK");
}

#[test]
fn opensc_binds_piv_dumps_reads_and_signs() {
    let mut env = PcscEnv::vpcd();
    // 9E as P-384 so that a P-384 key with digitalSignature is on the card.
    let dir = piv_card(&mut env, &["--key-type", "3=p384"]);

    let name = env.ok("opensc-tool", &["-r", "0", "-n"]);
    assert_eq!(name.trim(), "Personal Identity Verification Card");

    let dump = env.ok("pkcs15-tool", &["--dump"]);
    assert_eq!(dump.matches("X.509 Certificate [").count(), 4, "{dump}");
    for label in [
        "Certificate for PIV Authentication",
        "Certificate for Digital Signature",
        "Certificate for Key Management",
        "Certificate for Card Authentication",
    ] {
        assert!(dump.contains(&format!("X.509 {label}")), "{label}\n{dump}");
    }
    assert_piv_certificates(&env, &dir);

    // RSA-2048 on 9A, ECDSA P-256 on 9C (PIN Always), P-384 on 9E.
    env.assert_signature_verifies(PIN, "01", &dir.join("id0.pem"), b"vcac PIV RSA");
    assert_ecdsa_verifies(&env, "02", "sha256", &dir.join("id1.pem"));
    assert_ecdsa_verifies(&env, "04", "sha384", &dir.join("id3.pem"));

    let test = env.pkcs11(&["--test", "--login", "--pin", PIN]);
    assert!(test.contains("No errors"), "{test}");
}

#[test]
fn ecdh_on_the_key_management_key_matches_openssl() {
    let mut env = PcscEnv::vpcd();
    let dir = piv_card(&mut env, &[]);
    let peer_key = env.dir().join("peer.key");
    let peer_spki = env.dir().join("peer.spki.der");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-out",
        peer_key.to_str().unwrap(),
    ]);
    openssl(&[
        "pkey",
        "-in",
        peer_key.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        peer_spki.to_str().unwrap(),
    ]);
    let card_secret = env.dir().join("card.secret");
    env.pkcs11(&[
        "--login",
        "--pin",
        PIN,
        "--derive",
        "-m",
        "ECDH1-DERIVE",
        "--id",
        "03",
        "-i",
        peer_spki.to_str().unwrap(),
        "-o",
        card_secret.to_str().unwrap(),
    ]);
    let card_public = env.dir().join("id2.pub");
    public_key_of(&dir.join("id2.pem"), &card_public);
    let want = openssl(&[
        "pkeyutl",
        "-derive",
        "-inkey",
        peer_key.to_str().unwrap(),
        "-peerkey",
        card_public.to_str().unwrap(),
    ])
    .stdout;
    assert_eq!(want.len(), 48);
    assert_eq!(std::fs::read(&card_secret).unwrap(), want);
}

#[test]
fn wrong_pin_shows_tries_left_and_the_puk_unblocks() {
    let mut env = PcscEnv::vpcd();
    piv_card(&mut env, &[]);
    for left in [2, 1] {
        let out = env.run(
            "pkcs15-tool",
            &["--change-pin", "--pin", "999999", "--new-pin", "654321"],
        );
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("PIN code incorrect; tries left: {left}")),
            "{text}"
        );
    }
    let out = env.run(
        "pkcs15-tool",
        &["--change-pin", "--pin", "999999", "--new-pin", "654321"],
    );
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    // Now blocked: the right PIN is refused.
    let out = env.run(
        "pkcs11-tool",
        &[
            "--module",
            vcac_tests::OPENSC_PKCS11,
            "--login",
            "--pin",
            PIN,
            "--list-objects",
        ],
    );
    assert!(!out.status.success());
    env.ok(
        "pkcs15-tool",
        &["--unblock-pin", "--puk", "12345678", "--new-pin", PIN],
    );
    let objects = env.pkcs11(&[
        "--login",
        "--pin",
        PIN,
        "--list-objects",
        "--type",
        "privkey",
    ]);
    assert!(objects.contains("Private Key Object"), "{objects}");
}

/// `yubico-piv-tool -r Virtual ARGS`, which must succeed.
fn ykpiv(env: &PcscEnv, args: &[&str]) -> String {
    let mut all = vec!["-r", "Virtual"];
    all.extend_from_slice(args);
    env.ok("yubico-piv-tool", &all)
}

/// `opensc-tool -s APDU…`, output of the last APDU's response.
fn apdus(env: &PcscEnv, list: &[&str]) -> String {
    let mut args = vec!["-r", "0"];
    for a in list {
        args.extend(["-s", a]);
    }
    env.ok("opensc-tool", &args)
}

#[test]
fn yubico_piv_tool_generates_imports_and_it_all_persists() {
    require_peers(&["yubico-piv-tool"]);
    let mut env = PcscEnv::vpcd();
    let dir = piv_card(&mut env, &[]);

    let status = ykpiv(&env, &["-a", "status"]);
    assert!(status.contains("PIN tries left:\t3"), "{status}");
    assert!(
        status.contains("RSA2048") && status.contains("ECCP256"),
        "{status}"
    );
    let cert = env.dir().join("9a.pem");
    ykpiv(
        &env,
        &[
            "-a",
            "read-certificate",
            "-s",
            "9a",
            "-o",
            cert.to_str().unwrap(),
        ],
    );
    assert_eq!(pem_to_der(&cert), pem_to_der(&dir.join("id0.pem")));

    // Generate ECCP256 in 9A with the default management key.
    let public = env.dir().join("9a-new.pub");
    ykpiv(
        &env,
        &[
            "-a",
            "generate",
            "-s",
            "9a",
            "-A",
            "ECCP256",
            "-o",
            public.to_str().unwrap(),
        ],
    );
    assert!(
        dir.join("piv-9A.key").exists(),
        "the generated key is on disk"
    );

    // A certificate for it: a throw-away CA signs the new public key.
    let ca_key = env.dir().join("ca2.key");
    let ca_cert = env.dir().join("ca2.pem");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        ca_key.to_str().unwrap(),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        ca_key.to_str().unwrap(),
        "-subj",
        "/CN=vcac test CA 2",
        "-days",
        "30",
        "-out",
        ca_cert.to_str().unwrap(),
    ]);
    let new_cert = env.dir().join("9a-new.pem");
    openssl(&[
        "x509",
        "-new",
        "-force_pubkey",
        public.to_str().unwrap(),
        "-subj",
        "/CN=PIV GENERATED",
        "-CA",
        ca_cert.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-days",
        "30",
        "-out",
        new_cert.to_str().unwrap(),
    ]);
    ykpiv(
        &env,
        &[
            "-a",
            "import-certificate",
            "-s",
            "9a",
            "-i",
            new_cert.to_str().unwrap(),
        ],
    );
    assert!(dir.join("piv-obj-5FC105.bin").exists());
    // OpenSC signs with the generated key.
    assert_ecdsa_verifies(&env, "01", "sha256", &new_cert);

    // RSA-2048 in 9E; change the PIN.
    let rsa_public = env.dir().join("9e-new.pub");
    ykpiv(
        &env,
        &[
            "-a",
            "generate",
            "-s",
            "9e",
            "-A",
            "RSA2048",
            "-o",
            rsa_public.to_str().unwrap(),
        ],
    );
    ykpiv(&env, &["-a", "change-pin", "-P", PIN, "-N", "24681357"]);

    // Restart vcac serve: key, certificate and PIN survived.
    let pid = env.vcac_pid(0);
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    env.wait_vcac_exit(0, Duration::from_secs(10));
    restart(&mut env, &dir);
    let again = env.dir().join("9a-again.pem");
    ykpiv(
        &env,
        &[
            "-a",
            "read-certificate",
            "-s",
            "9a",
            "-o",
            again.to_str().unwrap(),
        ],
    );
    assert_eq!(pem_to_der(&again), pem_to_der(&new_cert));
    let out = apdus(
        &env,
        &[
            "00 A4 04 00 05 A0 00 00 03 08",
            "00 20 00 80 08 32 34 36 38 31 33 35 37",
            "00 47 00 9E 05 AC 03 80 01 11",
        ],
    );
    // The new PIN verifies; GENERATE without the management key is refused.
    assert!(out.contains("SW1=0x90, SW2=0x00"), "{out}");
    assert!(out.contains("SW1=0x69, SW2=0x82"), "{out}");

    // kill -9 right after an import: the directory still loads.
    ykpiv(
        &env,
        &[
            "-a",
            "import-certificate",
            "-s",
            "9c",
            "-i",
            new_cert.to_str().unwrap(),
        ],
    );
    let pid = env.vcac_pid(1);
    Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    env.wait_vcac_exit(1, Duration::from_secs(10));
    let inspect = Command::new(vcac_tests::vcac_bin())
        .args(["inspect", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "{}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(text.contains("piv-obj-5FC10A.bin"), "{text}");
    assert!(
        text.contains("PIV slot 9A (key generated on the card"),
        "{text}"
    );
    restart(&mut env, &dir);
    let c = env.dir().join("9c-again.pem");
    ykpiv(
        &env,
        &[
            "-a",
            "read-certificate",
            "-s",
            "9c",
            "-o",
            c.to_str().unwrap(),
        ],
    );
    assert_eq!(pem_to_der(&c), pem_to_der(&new_cert));
}

#[test]
fn dual_profile_binds_piv_by_default_and_cac_when_forced() {
    let mut env = PcscEnv::vpcd();
    let dir = env.dir().join("dual");
    provision(&dir, "dual", &["--key-type", "rsa2048"]);
    serve(&mut env, &dir);
    let name = env.ok("opensc-tool", &["-r", "0", "-n"]);
    assert_eq!(name.trim(), "Personal Identity Verification Card");
    assert_piv_certificates(&env, &dir);

    let forced = env
        .command("opensc-tool")
        .args(["-r", "0", "-n"])
        .env("OPENSC_DRIVER", "cac")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&forced.stdout).trim(),
        "Common Access Card (CAC)"
    );
    for i in 0..4 {
        let out = env.dir().join(format!("cac-read-{i}.der"));
        let id = format!("{:04X}", i + 1);
        let o = env
            .command("pkcs11-tool")
            .args([
                "--module",
                vcac_tests::OPENSC_PKCS11,
                "--read-object",
                "--type",
                "cert",
                "--id",
                &id,
                "-o",
            ])
            .arg(&out)
            .env("OPENSC_DRIVER", "cac")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            pem_to_der(&dir.join(format!("id{i}.pem"))),
            "CAC certificate {id}"
        );
    }
}

/// `openssl cms -verify` of `cms` (DER) against `ca`, `content` detached
/// when given; `Ok(())` on "Verification successful", else the error text.
fn cms_verify(cms: &Path, content: Option<&Path>, ca: &Path) -> Result<(), String> {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "cms", "-verify", "-inform", "DER", "-binary", "-purpose", "any",
    ])
    .arg("-in")
    .arg(cms)
    .arg("-CAfile")
    .arg(ca)
    .args(["-out", "/dev/null"]);
    if let Some(c) = content {
        cmd.arg("-content").arg(c);
    }
    let o = cmd.output().expect("run openssl (install openssl)");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() && err.contains("Verification successful") {
        Ok(())
    } else {
        Err(err)
    }
}

#[test]
fn opensc_reads_the_signed_chuid_and_security_object_and_openssl_verifies_them() {
    let mut env = PcscEnv::vpcd();
    let dir = piv_card(&mut env, &[]);
    let ca = dir.join("ca.pem");
    let read = |env: &PcscEnv, oid: &str, name: &str| {
        let out = env.dir().join(name);
        env.ok(
            "pkcs15-tool",
            &["--read-data-object", oid, "-o", out.to_str().unwrap()],
        );
        std::fs::read(out).unwrap()
    };
    // Containers 3000 (CHUID) and 9000 (Security Object), byte for byte
    // what provisioning signed.
    let chuid = read(&env, "2.16.840.1.101.3.7.2.48.0", "chuid.bin");
    assert_eq!(
        chuid,
        std::fs::read(dir.join("piv-obj-5FC102.bin")).unwrap()
    );
    let so = read(&env, "2.16.840.1.101.3.7.2.144.0", "so.bin");
    assert_eq!(so, std::fs::read(dir.join("piv-obj-5FC106.bin")).unwrap());

    let signature = env.dir().join("chuid.cms");
    let content = env.dir().join("chuid.content");
    std::fs::write(&signature, cac::piv::chuid_signature(&chuid).unwrap()).unwrap();
    std::fs::write(&content, cac::piv::chuid_signed_content(&chuid).unwrap()).unwrap();
    cms_verify(&signature, Some(&content), &ca).unwrap();
    let mut tampered = cac::piv::chuid_signed_content(&chuid).unwrap();
    // The last byte of the expiry date ("…1230" → "…1231").
    *tampered.last_mut().unwrap() ^= 0x01;
    std::fs::write(&content, &tampered).unwrap();
    let err = cms_verify(&signature, Some(&content), &ca).unwrap_err();
    assert!(err.contains("content verify error"), "{err}");

    let (_, lds) = cac::piv::parse_security_object(&so).unwrap();
    let lds_file = env.dir().join("so.cms");
    std::fs::write(&lds_file, lds).unwrap();
    cms_verify(&lds_file, None, &ca).unwrap();
}
