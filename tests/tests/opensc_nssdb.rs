//! `vcac serve --nssdb DIR --cert NICK…`: an NSS database made with
//! `certutil` served as a CAC into a private pcscd through vpcd, and
//! judged by OpenSC: the certificates read back byte-identical to
//! `certutil -L -r`, signatures verify with openssl, and the PIN is the
//! database password (any PIN for an empty-password database).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use vcac_tests::{openssl, require_peers, PcscEnv};

/// The password of the second database. Eight characters: OpenSC's CAC
/// driver sends PINs of at most eight.
const PASSWORD: &str = "secret12";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn certutil(args: &[&str]) -> Vec<u8> {
    let out = Command::new("certutil")
        .args(args)
        .output()
        .expect("run certutil (install libnss3-tools)");
    assert!(
        out.status.success(),
        "certutil {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `certutil -N` (empty password, or `password`), then one self-signed
/// RSA-2048 certificate with its key per nickname (`certutil -S -x`).
fn make_db(dir: &Path, password: Option<&str>, nicks: &[&str]) -> PathBuf {
    let db = dir.join(if password.is_some() { "db-pw" } else { "db" });
    std::fs::create_dir_all(&db).unwrap();
    let spec = format!("sql:{}", db.display());
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, format!("{}\n", password.unwrap_or(""))).unwrap();
    let noise = dir.join("noise");
    std::fs::write(
        &noise,
        (0..2048u32).map(|i| (i * 7919) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    match password {
        Some(_) => certutil(&["-N", "-d", &spec, "-f", s(&pwfile)]),
        None => certutil(&["-N", "-d", &spec, "--empty-password"]),
    };
    for (i, nick) in nicks.iter().enumerate() {
        let subject = format!("CN={nick}");
        let serial = (200 + i).to_string();
        let mut args = vec![
            "-S", "-d", &spec, "-x", "-t", "CT,CT,CT", "-k", "rsa", "-g", "2048", "-s", &subject,
            "-n", nick, "-m", &serial, "-v", "12", "-z",
        ];
        args.push(s(&noise));
        if password.is_some() {
            args.extend(["-f", s(&pwfile)]);
        }
        certutil(&args);
    }
    db
}

/// `certutil -L -r -n NICK` written to `dir/NICK.der` and `.pem`; returns
/// the DER and the PEM's path.
fn export(dir: &Path, db: &Path, nick: &str) -> (Vec<u8>, PathBuf) {
    let der = certutil(&[
        "-L",
        "-r",
        "-n",
        nick,
        "-d",
        &format!("sql:{}", db.display()),
    ]);
    let der_path = dir.join(format!("{nick}.der"));
    let pem = dir.join(format!("{nick}.pem"));
    std::fs::write(&der_path, &der).unwrap();
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        s(&der_path),
        "-out",
        s(&pem),
    ]);
    (der, pem)
}

fn read_cert(env: &PcscEnv, id: &str) -> Vec<u8> {
    let out = env.dir().join(format!("read-{id}.der"));
    env.pkcs11(&["--read-object", "--type", "cert", "--id", id, "-o", s(&out)]);
    std::fs::read(&out).unwrap()
}

/// Starts `vcac serve --nssdb DB --cert …` and waits for the card.
fn serve(env: &mut PcscEnv, db: &Path, certs: &[&str]) {
    let mut args = vec!["serve", "--nssdb", s(db)];
    for c in certs {
        args.extend(["--cert", c]);
    }
    let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.spawn_vcac(&args);
    env.wait_for_card(0);
}

#[test]
fn empty_password_db_certificates_read_back_and_any_pin_signs() {
    require_peers(&["certutil", "pkcs11-tool", "openssl", "opensc-tool"]);
    let mut env = PcscEnv::vpcd();
    let work = env.dir().join("nss");
    std::fs::create_dir_all(&work).unwrap();
    let db = make_db(&work, None, &["cert1", "cert2"]);
    let spec = format!("sql:{}", db.display());
    // sql:DIR form, an unknown nickname in the middle: skipped.
    serve(&mut env, Path::new(&spec), &["cert1", "nosuch", "cert2"]);
    let log = env.vcac_log(0);
    assert!(log.contains("found cert1, cert2; skipped nosuch"), "{log}");

    assert_eq!(
        env.ok("opensc-tool", &["-r", "0", "-n"]).trim(),
        "Common Access Card (CAC)"
    );
    for (id, nick) in [("0001", "cert1"), ("0002", "cert2")] {
        let (der, pem) = export(&work, &db, nick);
        assert_eq!(read_cert(&env, id), der, "{nick} read back differs");
        let sig = env.assert_signature_verifies("424242", id, &pem, nick.as_bytes());
        assert_eq!(sig.len(), 256);
    }
    // A key signs only with its own certificate's key.
    let (_, pem2) = export(&work, &db, "cert2");
    let sig = env.dir().join("sign-0001.sig");
    let key = env.dir().join("cert2.pub.pem");
    vcac_tests::public_key_of(&pem2, &key);
    let wrong = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify", s(&key), "-signature", s(&sig)])
        .arg(env.dir().join("sign-0001.in"))
        .output()
        .unwrap();
    assert!(
        !wrong.status.success(),
        "cert1's signature verified with cert2's key"
    );
}

#[test]
fn password_db_pin_is_the_password() {
    require_peers(&["certutil", "pkcs11-tool", "openssl", "opensc-tool"]);
    let mut env = PcscEnv::vpcd();
    let work = env.dir().join("nss");
    std::fs::create_dir_all(&work).unwrap();
    let db = make_db(&work, Some(PASSWORD), &["signer"]);
    // The plain DIR form.
    serve(&mut env, &db, &["signer"]);
    let log = env.vcac_log(0);
    assert!(log.contains("found signer; skipped none"), "{log}");
    assert!(log.contains("PIN the database password"), "{log}");

    let (der, pem) = export(&work, &db, "signer");
    assert_eq!(read_cert(&env, "0001"), der);

    // A wrong PIN fails to log in, and so does a signature with it.
    let bad = env.run(
        "pkcs11-tool",
        &[
            "--module",
            vcac_tests::OPENSC_PKCS11,
            "--login",
            "--pin",
            "wrong123",
            "-O",
        ],
    );
    assert!(!bad.status.success(), "login with a wrong PIN succeeded");
    let input = env.dir().join("bad.in");
    std::fs::write(&input, b"no").unwrap();
    let bad_sign = env.run(
        "pkcs11-tool",
        &[
            "--module",
            vcac_tests::OPENSC_PKCS11,
            "--login",
            "--pin",
            "secret13",
            "--sign",
            "-m",
            "SHA256-RSA-PKCS",
            "--id",
            "0001",
            "-i",
            s(&input),
            "-o",
            s(&env.dir().join("bad.sig")),
        ],
    );
    assert!(!bad_sign.status.success(), "signed with a wrong PIN");

    // The password as the PIN signs.
    let sig = env.assert_signature_verifies(PASSWORD, "0001", &pem, b"signed with the password");
    assert_eq!(sig.len(), 256);
    // The PIN never reaches the log (ccid's APDU trace stays off).
    let hex: String = PASSWORD.bytes().map(|b| format!("{b:02X}")).collect();
    assert!(!env.vcac_log(0).contains(&hex), "{}", env.vcac_log(0));
}
