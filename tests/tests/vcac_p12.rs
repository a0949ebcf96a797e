//! PKCS#12 both ways against the real tools: `.p12` files made by
//! OpenSSL 3 (default AES-256/PBKDF2, `-legacy` RC2-40 + 3DES, all-3DES
//! with a SHA-1 MAC) become a card whose certificates OpenSC reads back
//! byte for byte and whose keys sign (checked by `openssl dgst -verify`);
//! `p12 =` identities in `card.toml` load the same way; and the
//! `idN.p12` files `vcac provision --export-p12` writes open with
//! `openssl pkcs12` (key and certificate equal to idN.key / idN.pem) and
//! NSS's `pk12util`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::{Command, Output};

use vcac_tests::{openssl, pem_to_der, require_peers, vcac_bin, OPENSC_PKCS11, VPCD_DRIVER};

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn vcac(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(vcac_bin());
    c.args(args).stdin(std::process::Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A self-signed RSA-2048 certificate and key made by openssl, PEM.
fn openssl_identity(dir: &Path, name: &str) {
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        s(&dir.join(format!("{name}.key.pem"))),
        "-out",
        s(&dir.join(format!("{name}.cert.pem"))),
        "-subj",
        &format!("/CN={name}"),
        "-days",
        "30",
    ]);
}

/// `openssl pkcs12 -export` of `name`'s key and certificate with `extra`
/// options (encryption choices).
fn export(dir: &Path, name: &str, out: &str, password: &str, extra: &[&str]) {
    let mut args = vec![
        "pkcs12",
        "-export",
        "-inkey",
        s(&dir.join(format!("{name}.key.pem"))).to_owned().leak(),
        "-in",
        s(&dir.join(format!("{name}.cert.pem"))).to_owned().leak(),
        "-out",
        s(&dir.join(out)).to_owned().leak(),
    ];
    let pass = format!("pass:{password}");
    args.extend(["-passout", &pass]);
    args.extend(extra);
    openssl(&args);
}

/// Runs a shell script under `vcac run --card card`, OpenSC's cache off;
/// returns its output (must succeed).
fn run_with_card(card: &Path, work: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let conf = work.join("opensc.conf");
    std::fs::write(
        &conf,
        "app default {\n  framework pkcs15 { use_file_caching = false; }\n}\n",
    )
    .unwrap();
    let mut c = Command::new(vcac_bin());
    c.args(["run", "--card", s(card), "--", "sh", "-ec", script])
        .env("OPENSC_CONF", &conf)
        .env("MOD", OPENSC_PKCS11)
        .env("W", work);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "vcac run: {}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Reads certificate `id` from the card and signs `data` with its key;
/// checks both against `cert_pem`.
fn check_identity_through_opensc(
    card: &Path,
    work: &Path,
    ids: &[(&str, &Path)],
    env: &[(&str, &str)],
) {
    std::fs::write(
        work.join("data"),
        b"signed through OpenSC from a PKCS#12 import",
    )
    .unwrap();
    let mut script = String::new();
    for (id, _) in ids {
        script.push_str(&format!(
            "pkcs11-tool --module \"$MOD\" --read-object --type cert --id {id} -o \"$W/read-{id}.der\"\n\
             pkcs11-tool --module \"$MOD\" --login --pin 12345678 --sign -m SHA256-RSA-PKCS --id {id} \
             -i \"$W/data\" -o \"$W/sig-{id}\"\n"
        ));
    }
    run_with_card(card, work, &script, env);
    for (id, cert) in ids {
        let got = std::fs::read(work.join(format!("read-{id}.der"))).unwrap();
        assert_eq!(got, pem_to_der(cert), "certificate {id} read back differs");
        let pubkey = work.join(format!("pub-{id}.pem"));
        vcac_tests::public_key_of(cert, &pubkey);
        let v = openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            s(&pubkey),
            "-signature",
            s(&work.join(format!("sig-{id}"))),
            s(&work.join("data")),
        ]);
        assert_eq!(text(&v.stdout).trim(), "Verified OK", "signature of {id}");
    }
}

fn peers() {
    require_peers(&[
        "pcscd",
        "unshare",
        "openssl",
        "pkcs11-tool",
        "pk12util",
        "certutil",
        OPENSC_PKCS11,
        VPCD_DRIVER,
    ]);
}

#[test]
fn openssl_p12_files_import_and_opensc_reads_and_signs() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    for name in ["aes", "legacy", "des3"] {
        openssl_identity(w, name);
    }
    export(w, "aes", "aes.p12", "alice pw", &[]);
    export(w, "legacy", "legacy.p12", "alice pw", &["-legacy"]);
    export(
        w,
        "des3",
        "des3.p12",
        "alice pw",
        &[
            "-certpbe",
            "PBE-SHA1-3DES",
            "-keypbe",
            "PBE-SHA1-3DES",
            "-macalg",
            "sha1",
        ],
    );
    // What the files are, as openssl reports it.
    let info = |f: &str, legacy: bool| {
        let mut a = vec![
            "pkcs12",
            "-info",
            "-noout",
            "-passin",
            "pass:alice pw",
            "-in",
        ];
        let p = w.join(f);
        a.push(s(&p));
        if legacy {
            a.push("-legacy");
        }
        text(&openssl(&a).stderr)
    };
    assert!(info("aes.p12", false).contains("PBES2, PBKDF2, AES-256-CBC"));
    let legacy = info("legacy.p12", true);
    assert!(legacy.contains("pbeWithSHA1And40BitRC2-CBC"), "{legacy}");
    assert!(
        legacy.contains("pbeWithSHA1And3-KeyTripleDES-CBC"),
        "{legacy}"
    );
    assert!(info("des3.p12", false).contains("MAC: sha1"));

    let card = w.join("card");
    let files = [w.join("aes.p12"), w.join("legacy.p12"), w.join("des3.p12")];
    let mut args = vec!["import", "--out", s(&card), "--password-env", "PW"];
    for f in &files {
        args.extend(["--p12", s(f)]);
    }
    let o = vcac(&args, &[("PW", "alice pw")]);
    assert!(o.status.success(), "import: {}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout).trim(),
        format!(
            "vcac: imported 3 identities into {} (PIN 12345678)",
            card.display()
        )
    );
    // Keys 0600, equal to openssl's (PKCS#8 PEM).
    use std::os::unix::fs::PermissionsExt;
    for (i, name) in ["aes", "legacy", "des3"].iter().enumerate() {
        let key = card.join(format!("id{i}.key"));
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_to_string(&key).unwrap(),
            std::fs::read_to_string(w.join(format!("{name}.key.pem"))).unwrap(),
            "id{i}.key"
        );
        assert_eq!(
            pem_to_der(&card.join(format!("id{i}.pem"))),
            pem_to_der(&w.join(format!("{name}.cert.pem")))
        );
    }
    let certs = [
        w.join("aes.cert.pem"),
        w.join("legacy.cert.pem"),
        w.join("des3.cert.pem"),
    ];
    check_identity_through_opensc(
        &card,
        w,
        &[
            ("0001", &certs[0]),
            ("0002", &certs[1]),
            ("0003", &certs[2]),
        ],
        &[],
    );

    // No overwrite without --force, naming the file; wrong password named too.
    let o = vcac(&args, &[("PW", "alice pw")]);
    assert!(!o.status.success());
    assert_eq!(
        text(&o.stderr).trim(),
        format!(
            "vcac: {}: exists (use --force to overwrite)",
            card.join("id0.pem").display()
        )
    );
    let o = vcac(&args, &[("PW", "wrong")]);
    assert!(!o.status.success());
    assert_eq!(
        text(&o.stderr).trim(),
        format!(
            "vcac: {}: MAC check failed: wrong password, or the file is corrupted",
            files[0].display()
        )
    );
    let mut forced = args.clone();
    forced.push("--force");
    let o = vcac(&forced, &[("PW", "alice pw")]);
    assert!(o.status.success(), "import --force: {}", text(&o.stderr));
}

#[test]
fn p12_identities_in_card_toml_load() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let card = w.join("card");
    std::fs::create_dir(&card).unwrap();
    openssl_identity(w, "alice");
    openssl_identity(w, "bob");
    export(w, "alice", "card/alice.p12", "s3cret", &[]);
    export(w, "bob", "card/bob.p12", "", &["-legacy"]);
    std::fs::write(
        card.join("card.toml"),
        "[pin]\npin = \"12345678\"\n\n[[identity]]\np12 = \"alice.p12\"\n\
         p12_password_env = \"ALICE_P12_PASSWORD\"\n\n[[identity]]\np12 = \"bob.p12\"\n",
    )
    .unwrap();
    let alice = w.join("alice.cert.pem");
    let bob = w.join("bob.cert.pem");
    check_identity_through_opensc(
        &card,
        w,
        &[("0001", &alice), ("0002", &bob)],
        &[("ALICE_P12_PASSWORD", "s3cret")],
    );
    // The variable unset, or wrong: vcac run names the file and the cause.
    let o = Command::new(vcac_bin())
        .args(["run", "--card", s(&card), "--", "true"])
        .env_remove("ALICE_P12_PASSWORD")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(
        text(&o.stderr).trim(),
        format!(
            "vcac run: {}: the password variable ALICE_P12_PASSWORD (p12_password_env) is not set",
            card.join("alice.p12").display()
        )
    );
    let o = Command::new(vcac_bin())
        .args(["run", "--card", s(&card), "--", "true"])
        .env("ALICE_P12_PASSWORD", "nope")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(
        text(&o.stderr).trim(),
        format!(
            "vcac run: {}: MAC check failed: wrong password, or the file is corrupted",
            card.join("alice.p12").display()
        )
    );
}

/// The PEM blocks with `label` in `text`, in order.
fn pem_blocks(text: &str, label: &str) -> Vec<String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(b) = rest.find(&begin) {
        let after = &rest[b..];
        let e = after.find(&end).unwrap() + end.len();
        out.push(format!("{}\n", &after[..e]));
        rest = &after[e..];
    }
    out
}

#[test]
fn exported_p12_files_open_with_openssl_and_pk12util() {
    peers();
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    for (sub, env) in [("pw", Some("exp pw")), ("empty", None)] {
        let card = w.join(sub);
        let mut args = vec![
            "provision",
            "--seed",
            "11",
            "--identities",
            "2",
            "--out",
            s(&card),
            "--export-p12",
        ];
        let mut vars = Vec::new();
        if let Some(pw) = env {
            args.extend(["--p12-password-env", "EXPORT_PW"]);
            vars.push(("EXPORT_PW", pw));
        }
        let o = vcac(&args, &vars);
        assert!(o.status.success(), "provision: {}", text(&o.stderr));
        let password = env.unwrap_or("");
        for i in 0..2 {
            let p12 = card.join(format!("id{i}.p12"));
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p12).unwrap().permissions().mode() & 0o777,
                0o600
            );
            let pass = format!("pass:{password}");
            let o = openssl(&[
                "pkcs12",
                "-info",
                "-nodes",
                "-in",
                s(&p12),
                "-passin",
                &pass,
            ]);
            let out = text(&o.stdout);
            let info = text(&o.stderr);
            assert!(info.contains("PBES2, PBKDF2, AES-256-CBC"), "{info}");
            assert!(info.contains("MAC: sha256"), "{info}");
            let keys = pem_blocks(&out, "PRIVATE KEY");
            assert_eq!(keys.len(), 1, "{out}");
            assert_eq!(
                keys[0],
                std::fs::read_to_string(card.join(format!("id{i}.key"))).unwrap()
            );
            let certs = pem_blocks(&out, "CERTIFICATE");
            assert_eq!(certs.len(), 2, "leaf and CA: {out}");
            assert_eq!(
                certs[0],
                std::fs::read_to_string(card.join(format!("id{i}.pem"))).unwrap()
            );
            assert_eq!(
                certs[1],
                std::fs::read_to_string(card.join("ca.pem")).unwrap()
            );
            // The wrong password is refused.
            let bad = Command::new("openssl")
                .args([
                    "pkcs12",
                    "-info",
                    "-nodes",
                    "-in",
                    s(&p12),
                    "-passin",
                    "pass:x",
                ])
                .output()
                .unwrap();
            assert!(!bad.status.success());

            // NSS lists it.
            let db = w.join(format!("nss-{sub}-{i}"));
            std::fs::create_dir(&db).unwrap();
            let dbarg = format!("sql:{}", db.display());
            let o = Command::new("certutil")
                .args(["-N", "-d", &dbarg, "--empty-password"])
                .output()
                .unwrap();
            assert!(o.status.success(), "certutil: {}", text(&o.stderr));
            let o = Command::new("pk12util")
                .args(["-l", s(&p12), "-d", &dbarg, "-W", password])
                .output()
                .unwrap();
            let listing = text(&o.stdout);
            assert!(o.status.success(), "pk12util: {listing}{}", text(&o.stderr));
            assert!(listing.contains("Key(shrouded):"), "{listing}");
            assert!(
                listing.contains(&format!("Friendly Name: id{i}")),
                "{listing}"
            );
            assert!(
                listing.contains("Subject: \"CN=DOE.JOHN.Q.1234567890"),
                "{listing}"
            );
        }
        // And the card from the same directory still loads (files unchanged).
        let o = vcac(&["inspect", s(&card)], &[]);
        assert!(o.status.success(), "inspect: {}", text(&o.stderr));
    }
    // An existing idN.p12 is not overwritten without --force.
    let o = vcac(
        &[
            "provision",
            "--seed",
            "11",
            "--identities",
            "2",
            "--out",
            s(&w.join("empty")),
            "--export-p12",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("exists"), "{}", text(&o.stderr));
}
