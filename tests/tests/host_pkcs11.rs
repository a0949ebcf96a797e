//! PKCS#11 tokens behind the virtual reader: SoftHSM2 tokens made the way
//! libcacard's hwtests make them (removable slots, keys generated in the
//! token, certificates written back), mirrored by `vcac serve --pkcs11`
//! into pcscd through vpcd, and judged by OpenSC's CAC driver.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use vcac_tests::softhsm::{KeySpec, Slot, TestToken, SOFTHSM};
use vcac_tests::{check, openssl, softhsm_conf, vcac_bin, PcscEnv};

const PIN: &str = "77777777";
const SO_PIN: &str = "87654321";
const LABEL: &str = "vcac token";

/// A SoftHSM2 configuration with its own token directory.
struct Hsm {
    dir: PathBuf,
    conf: PathBuf,
}

impl Hsm {
    /// `mechanisms`: the `slots.mechanisms` line (`ALL` for everything).
    fn new(dir: &Path, mechanisms: &str) -> Hsm {
        let conf = softhsm_conf(dir, &format!("slots.mechanisms = {mechanisms}\n"));
        Hsm {
            dir: dir.to_path_buf(),
            conf,
        }
    }

    /// The same token directory seen through another mechanism list.
    fn with_mechanisms(&self, name: &str, mechanisms: &str) -> Hsm {
        let conf = self.dir.join(name);
        let text = std::fs::read_to_string(&self.conf).unwrap();
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("slots.mechanisms") {
                    format!("slots.mechanisms = {mechanisms}")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&conf, text + "\n").unwrap();
        Hsm {
            dir: self.dir.clone(),
            conf,
        }
    }

    /// Initialises the token and puts `ids` key pairs (RSA-2048, generated
    /// in the token) with certificates issued by a test CA on it, and the
    /// CA's certificate without a key pair. Returns the key pairs'
    /// certificates' paths (DER), in CKA_ID order.
    fn make_token(&self, tag: &str, ids: &[&str]) -> Vec<PathBuf> {
        let token = TestToken {
            label: LABEL,
            so_pin: SO_PIN,
            pin: PIN,
            slot: Slot::Free,
            ca_subject: "/CN=vcac token test CA",
            keys: ids
                .iter()
                .map(|id| KeySpec {
                    id: (*id).to_owned(),
                    label: format!("key{id}"),
                    bits: 2048,
                    subject: format!("/CN=token user {tag} {id}"),
                    serial: 0x1000 + u32::from_str_radix(id, 16).unwrap(),
                })
                .collect(),
            // A certificate without a key pair (a CA on the token) is not mirrored.
            ca_object: Some(("ca", "CA")),
        };
        let issued = token.make(&self.conf, &self.dir.join(tag));
        issued.certs.into_iter().map(|c| c.der).collect()
    }

    fn delete_token(&self) {
        check(
            Command::new("softhsm2-util")
                .args(["--delete-token", "--token", LABEL])
                .env("SOFTHSM2_CONF", &self.conf),
        );
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `vcac ARGS` inside the environment's namespace with this SoftHSM2
/// configuration; killed on drop.
struct Vcac {
    child: Child,
    log: PathBuf,
}

impl Vcac {
    fn start(env: &PcscEnv, hsm: &Hsm, args: &[&str]) -> Vcac {
        let log = env.dir().join(format!(
            "vcac-pkcs11-{}.log",
            hsm.conf.file_name().unwrap().to_string_lossy()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let child = env
            .command(vcac_bin())
            .args(args)
            .env("SOFTHSM2_CONF", &hsm.conf)
            .env("RUST_LOG", "debug")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Vcac { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Vcac {
    fn drop(&mut self) {
        vcac_tests::terminate(&mut self.child, Duration::from_secs(3));
    }
}

fn card_in_reader(env: &PcscEnv, index: usize) -> bool {
    let out = env.run("opensc-tool", &["-l"]);
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        let w: Vec<_> = l.split_whitespace().collect();
        w.first() == Some(&index.to_string().as_str()) && w.get(1) == Some(&"Yes")
    })
}

fn wait_card(env: &mut PcscEnv, vcac: &Vcac, present: bool) {
    let start = Instant::now();
    while card_in_reader(env, 0) != present {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "card in reader 0 never became {}:\n--- vcac\n{}\n--- pcscd\n{}",
            if present { "present" } else { "absent" },
            vcac.log(),
            env.pcscd_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The certificate `id` read through OpenSC equals `der`.
fn read_back(env: &PcscEnv, id: &str, der: &Path) {
    let out = env.dir().join(format!("read-{id}.der"));
    env.pkcs11(&["--read-object", "--type", "cert", "--id", id, "-o", s(&out)]);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(der).unwrap(),
        "certificate {id} differs from {}",
        der.display()
    );
}

fn cert_pem(der: &Path) -> PathBuf {
    let pem = der.with_extension("pem");
    openssl(&["x509", "-inform", "DER", "-in", s(der), "-out", s(&pem)]);
    pem
}

#[test]
fn softhsm_token_is_a_cac_that_opensc_reads_signs_with_and_loses_on_removal() {
    let mut env = PcscEnv::vpcd();
    let hsm = Hsm::new(&env.dir().join("hsm"), "ALL");
    let certs = hsm.make_token("a", &["01", "02"]);
    let vcac = Vcac::start(
        &env,
        &hsm,
        &["serve", "--pkcs11", SOFTHSM, "--token", LABEL],
    );
    wait_card(&mut env, &vcac, true);

    assert_eq!(
        env.ok("opensc-tool", &["-r", "0", "-n"]).trim(),
        "Common Access Card (CAC)"
    );
    let dump = env.ok("pkcs15-tool", &["--dump"]);
    // Two key pairs, two PKI applets; the CA certificate without a key is not mirrored.
    assert_eq!(dump.matches("X.509 Certificate [").count(), 2, "{dump}");
    read_back(&env, "0001", &certs[0]);
    read_back(&env, "0002", &certs[1]);

    // The token signs (CKM_RSA_X_509 for the raw block); openssl verifies.
    let sig =
        env.assert_signature_verifies(PIN, "0001", &cert_pem(&certs[0]), b"signed on a token");
    assert_eq!(sig.len(), 256);
    env.assert_signature_verifies(
        PIN,
        "0002",
        &cert_pem(&certs[1]),
        b"and with the second key",
    );

    let test = env.pkcs11(&["--test", "--login", "--pin", PIN]);
    assert!(test.contains("No errors"), "{test}");

    // A wrong PIN: the token says no and OpenSC is told how many tries are left.
    let bad = env.run("pkcs15-tool", &["--verify-pin", "--pin", "11111111"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(!bad.status.success(), "{text}");
    assert!(text.contains("PIN code or key incorrect"), "{text}");
    // softhsm flags CKF_USER_PIN_COUNT_LOW after a failure: 63 C2.
    let log = vcac.log();
    assert!(log.contains("Login: PinIncorrect): 63C2"), "{log}");
    // The PIN status (VERIFY without data) on the wire says 2 tries left.
    let status = env.ok("opensc-tool", &["-r", "0", "-s", "00 20 00 00"]);
    assert!(status.contains("SW1=0x63, SW2=0xC2"), "{status}");
    // The PIN is never in the log (ccid's APDU trace is off for host cards).
    assert!(!vcac.log().contains("3131313131313131"), "{}", vcac.log());
    assert!(!vcac.log().contains("3737373737373737"), "{}", vcac.log());
    // The right PIN still works: softhsm counts but never locks.
    env.pkcs11(&["--login", "--pin", PIN, "-O"]);

    // Removing the token removes the card; a new token in its place is a new card.
    hsm.delete_token();
    wait_card(&mut env, &vcac, false);
    let certs = hsm.make_token("b", &["03"]);
    wait_card(&mut env, &vcac, true);
    read_back(&env, "0001", &certs[0]);
    env.assert_signature_verifies(PIN, "0001", &cert_pem(&certs[0]), b"the new token");
    let log = vcac.log();
    assert!(log.contains("removed from reader"), "{log}");
    assert_eq!(log.matches("inserted in reader").count(), 2, "{log}");
}

#[test]
fn without_raw_rsa_signatures_fall_back_to_pkcs1_and_decryption_fails_cleanly() {
    let mut env = PcscEnv::vpcd();
    let hsm = Hsm::new(&env.dir().join("hsm"), "ALL");
    let certs = hsm.make_token("c", &["01"]);
    // The same token, with CKM_RSA_X_509 withdrawn by the module.
    let no_raw = hsm.with_mechanisms("no-raw.conf", "CKM_RSA_PKCS");
    let vcac = Vcac::start(&env, &no_raw, &["serve", "--pkcs11", SOFTHSM]);
    wait_card(&mut env, &vcac, true);
    read_back(&env, "0001", &certs[0]);
    let pem = cert_pem(&certs[0]);
    // SHA256-RSA-PKCS: OpenSC pads to a type-1 block; vcac strips it and
    // the token signs the DigestInfo with CKM_RSA_PKCS.
    env.assert_signature_verifies(PIN, "0001", &pem, b"no raw RSA here");

    // A decryption needs raw RSA: a clean error status, no crash, the card stays.
    let pubkey = env.dir().join("pub.pem");
    vcac_tests::public_key_of(&pem, &pubkey);
    let (data, ct) = (env.dir().join("plain"), env.dir().join("ct"));
    std::fs::write(&data, b"secret").unwrap();
    openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        s(&pubkey),
        "-in",
        s(&data),
        "-out",
        s(&ct),
    ]);
    let out = env.run(
        "pkcs11-tool",
        &[
            "--module",
            vcac_tests::OPENSC_PKCS11,
            "--login",
            "--pin",
            PIN,
            "--decrypt",
            "-m",
            "RSA-PKCS",
            "--id",
            "0001",
            "-i",
            s(&ct),
        ],
    );
    assert!(!out.status.success(), "decrypted without raw RSA?");
    assert!(
        vcac.log().contains("not a PKCS#1 type-1 signature block"),
        "{}",
        vcac.log()
    );
    // The card still signs afterwards.
    env.assert_signature_verifies(PIN, "0001", &pem, b"still here");
}

#[test]
fn missing_and_foreign_modules_are_clear_errors_in_bounded_time() {
    let tmp = tempfile::tempdir().unwrap();
    let not_elf = tmp.path().join("module.so");
    std::fs::write(&not_elf, b"#!/bin/sh\necho not a library\n").unwrap();
    let cases: [(&str, &str); 3] = [
        ("/nonexistent/libpkcs11.so", "/nonexistent/libpkcs11.so"),
        (s(&not_elf), "cannot load"),
        ("/lib/x86_64-linux-gnu/libz.so.1", "not a PKCS#11 module"),
    ];
    for (module, expect) in cases {
        for cmd in [
            vec!["serve", "--pkcs11", module, "--vpcd", "127.0.0.1:1"],
            vec![
                "passthru",
                "--pkcs11",
                module,
                "--connect",
                "127.0.0.1:1",
                "--no-stdin",
            ],
        ] {
            let bin = vcac_bin();
            let start = Instant::now();
            let out = Command::new(bin).args(&cmd).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd:?} succeeded");
            assert!(
                stderr.contains(expect) && stderr.contains("PKCS#11 module"),
                "{cmd:?}: {stderr}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{cmd:?} took {:?}",
                start.elapsed()
            );
        }
    }
}
