//! End-to-end checks of the generated PKIs, judged by the real `openssl`
//! binary (the tests fail, not skip, when it is missing) and by RustCrypto.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use certs_fixtures::{
    default_card, CardOptions, Error, IdentitySpec, KeyType, Pki, PkiBuilder, Role,
};
use der::{Decode, Encode};
use pkcs8::DecodePrivateKey;
use spki::EncodePublicKey;
use tempfile::TempDir;
use x509_cert::crl::CertificateList;
use x509_cert::Certificate;

// ---------------------------------------------------------------- helpers

/// Runs `openssl args...` in `dir`; panics with a clear message when the
/// binary is missing.
fn openssl(dir: &Path, args: &[&str]) -> Output {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(output) => output,
        Err(e) => panic!(
            "these tests need the `openssl` command-line tool (Debian: apt-get install openssl), \
             and running it failed: {e}"
        ),
    }
}

/// Runs openssl and asserts success; returns stdout + stderr.
fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let out = openssl(dir, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?} failed:\n{text}");
    text
}

/// The card directory of `pki` in a fresh temporary directory.
fn card_dir(pki: &Pki) -> TempDir {
    let dir = TempDir::new().unwrap();
    pki.write_card_dir(dir.path(), &CardOptions::default(), false)
        .unwrap();
    dir
}

/// The default card's committed files in a temporary directory.
fn default_card_dir() -> TempDir {
    let dir = TempDir::new().unwrap();
    for (name, bytes) in default_card::files() {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    let (_, der) = der::pem::decode_vec(pem).unwrap();
    der
}

/// SubjectPublicKeyInfo DER derived from a PKCS#8 private key.
fn spki_of_key(key_der: &[u8]) -> Vec<u8> {
    if let Ok(rsa) = rsa::PrivateKey::from_pkcs8_der(key_der) {
        return rsa.to_public_key().to_public_key_der().unwrap().into_vec();
    }
    let ec = p256::SecretKey::from_pkcs8_der(key_der).unwrap();
    ec.public_key().to_public_key_der().unwrap().into_vec()
}

fn spki_of_cert(cert_der: &[u8]) -> Vec<u8> {
    Certificate::from_der(cert_der)
        .unwrap()
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .unwrap()
}

/// Checks that `idN.key` belongs to `idN.pem`, with openssl and RustCrypto.
fn assert_key_matches(dir: &Path, n: usize) {
    let (pem, key) = (format!("id{n}.pem"), format!("id{n}.key"));
    let from_cert = openssl_ok(dir, &["x509", "-in", &pem, "-noout", "-pubkey"]);
    let from_key = openssl_ok(dir, &["pkey", "-in", &key, "-pubout"]);
    assert_eq!(from_cert, from_key, "{key} does not match {pem} (openssl)");
    let cert_der = pem_to_der(&std::fs::read(dir.join(&pem)).unwrap());
    let key_der = pem_to_der(&std::fs::read(dir.join(&key)).unwrap());
    assert_eq!(
        spki_of_cert(&cert_der),
        spki_of_key(&key_der),
        "{key} does not match {pem} (RustCrypto)"
    );
}

fn text_of(dir: &Path, file: &str) -> String {
    openssl_ok(dir, &["x509", "-in", file, "-noout", "-text"])
}

/// Checks the PEM shape: label lines, 64-column base64, LF only.
fn assert_pem_shape(pem: &str, label: &str) {
    assert!(!pem.contains('\r'), "CR in PEM");
    let lines: Vec<&str> = pem.lines().collect();
    assert_eq!(lines[0], format!("-----BEGIN {label}-----"));
    assert_eq!(lines[lines.len() - 1], format!("-----END {label}-----"));
    assert!(pem.ends_with("-----\n"));
    let body = &lines[1..lines.len() - 1];
    for line in &body[..body.len() - 1] {
        assert_eq!(line.len(), 64, "{line}");
    }
    assert!((1..=64).contains(&body[body.len() - 1].len()));
}

/// A PKI through an intermediate, with both key types on both sides, URLs
/// and a CRL revoking id3: RSA-2048 root → P-256 intermediate → identities.
fn chained_pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        PkiBuilder::new(42)
            .ca_key(KeyType::Rsa2048)
            .intermediate(PkiBuilder::DEFAULT_INTERMEDIATE_SUBJECT, KeyType::P256)
            .identity(
                IdentitySpec::new(
                    Role::Authentication,
                    KeyType::P256,
                    "ROE.RICHARD.2222222222",
                )
                .with_upn("2222222222@mil")
                .with_email("richard.roe@mail.mil"),
            )
            .identity(
                IdentitySpec::new(Role::Signature, KeyType::P256, "ROE.RICHARD.2222222222")
                    .with_email("richard.roe@mail.mil"),
            )
            .identity(
                IdentitySpec::new(Role::Encryption, KeyType::P256, "ROE.RICHARD.2222222222")
                    .with_email("richard.roe@mail.mil"),
            )
            .identity(IdentitySpec::new(
                Role::Generic,
                KeyType::P256,
                "ROE.RICHARD.2222222222",
            ))
            .crl_url("http://crl.example.invalid/id-ca-1.crl")
            .ca_issuers_url("http://aia.example.invalid/id-ca-1.p7c")
            .ocsp_url("http://ocsp.example.invalid")
            .crl(7)
            .revoke_identity(3)
            .revoke_serial(vec![0x01, 0x02, 0x03])
            .build()
            .unwrap()
    })
}

/// A P-256 CA with 16 P-256 identities (a full card) and an empty CRL.
fn p256_pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let mut builder = PkiBuilder::new(16).ca_key(KeyType::P256).crl(1);
        for i in 0..16 {
            let role = [
                Role::Authentication,
                Role::Signature,
                Role::Encryption,
                Role::Generic,
            ][(i as usize).min(3)];
            builder = builder.identity(
                IdentitySpec::new(role, KeyType::P256, format!("TEST.P256.{i}.1000000{i:03}"))
                    .with_email(format!("p256.{i}@example.invalid"))
                    .with_upn(format!("1000000{i:03}@mil")),
            );
        }
        builder.build().unwrap()
    })
}

// ------------------------------------------------------------ default card

#[test]
fn default_card_verifies_with_openssl() {
    let dir = default_card_dir();
    let dir = dir.path();
    for (n, purpose) in ["sslclient", "smimesign", "smimeencrypt"]
        .iter()
        .enumerate()
    {
        let id = format!("id{n}.pem");
        let out = openssl_ok(dir, &["verify", "-CAfile", "ca.pem", &id]);
        assert!(out.contains(&format!("{id}: OK")), "{out}");
        openssl_ok(
            dir,
            &["verify", "-purpose", purpose, "-CAfile", "ca.pem", &id],
        );
        assert_key_matches(dir, n);
    }
}

#[test]
fn default_card_profiles_as_openssl_prints_them() {
    let dir = default_card_dir();
    let dir = dir.path();

    let ca = text_of(dir, "ca.pem");
    assert!(
        ca.contains("Basic Constraints: critical\n                CA:TRUE"),
        "{ca}"
    );
    assert!(
        ca.contains("Key Usage: critical\n                Certificate Sign, CRL Sign"),
        "{ca}"
    );
    assert!(ca.contains("Subject Key Identifier"), "{ca}");

    let id0 = text_of(dir, "id0.pem");
    for want in [
        "Subject: C = US, O = U.S. Government, OU = DoD, OU = PKI, OU = CONTRACTOR, CN = DOE.JOHN.Q.1234567890",
        "Issuer: C = US, O = U.S. Government, OU = DoD, OU = PKI, CN = VCAC TEST ROOT CA 1",
        "Not Before: Jan  1 00:00:00 2025 GMT",
        "Not After : Dec 30 00:00:00 2034 GMT",
        "Basic Constraints: critical\n                CA:FALSE",
        "Key Usage: critical\n                Digital Signature, Key Encipherment\n",
        "Extended Key Usage: \n                TLS Web Client Authentication, Microsoft Smartcard Login\n",
        "othername: UPN::1234567890@mil",
        "Subject Key Identifier",
        "Authority Key Identifier",
        "sha256WithRSAEncryption",
        "Public-Key: (2048 bit)",
    ] {
        assert!(id0.contains(want), "id0 lacks {want:?}:\n{id0}");
    }

    let id1 = text_of(dir, "id1.pem");
    for want in [
        "Key Usage: critical\n                Digital Signature, Non Repudiation\n",
        "Extended Key Usage: \n                E-mail Protection, TLS Web Client Authentication\n",
        "email:john.q.doe.ctr@mail.mil",
    ] {
        assert!(id1.contains(want), "id1 lacks {want:?}:\n{id1}");
    }

    let id2 = text_of(dir, "id2.pem");
    for want in [
        "Key Usage: critical\n                Key Encipherment, Data Encipherment\n",
        "Extended Key Usage: \n                E-mail Protection\n",
        "email:john.q.doe.ctr@mail.mil",
    ] {
        assert!(id2.contains(want), "id2 lacks {want:?}:\n{id2}");
    }
}

#[test]
fn default_card_files_are_well_formed_pem() {
    for (name, bytes) in default_card::files() {
        let text = std::str::from_utf8(bytes).unwrap();
        if name.ends_with(".pem") {
            assert_pem_shape(text, "CERTIFICATE");
        } else if name.ends_with(".key") {
            assert_pem_shape(text, "PRIVATE KEY");
        }
    }
    assert!(default_card::CARD_TOML.contains("pin = \"12345678\""));
    assert_eq!(default_card::PIN, "12345678");
    assert_eq!(default_card::SEED, 1);
}

// ---------------------------------------------------- chain, URLs and CRL

#[test]
fn chained_pki_verifies_through_the_intermediate() {
    let pki = chained_pki();
    let dir = card_dir(pki);
    let dir = dir.path();
    assert!(dir.join("intermediate.pem").exists());
    for n in 0..pki.identities().len() {
        let id = format!("id{n}.pem");
        let out = openssl_ok(
            dir,
            &[
                "verify",
                "-CAfile",
                "ca.pem",
                "-untrusted",
                "intermediate.pem",
                &id,
            ],
        );
        assert!(out.contains(&format!("{id}: OK")), "{out}");
        assert_key_matches(dir, n);
        // Without the intermediate the chain must not build.
        assert!(!openssl(dir, &["verify", "-CAfile", "ca.pem", &id])
            .status
            .success());
    }
    let inter = text_of(dir, "intermediate.pem");
    assert!(inter.contains("CA:TRUE, pathlen:0"), "{inter}");
    assert!(
        inter.contains("ecdsa-with-SHA256") || inter.contains("id-ecPublicKey"),
        "{inter}"
    );
    assert!(
        inter.contains("Signature Algorithm: sha256WithRSAEncryption"),
        "{inter}"
    );

    let id0 = text_of(dir, "id0.pem");
    for want in [
        "Signature Algorithm: ecdsa-with-SHA256",
        "Key Usage: critical\n                Digital Signature\n",
        "email:richard.roe@mail.mil, othername: UPN::2222222222@mil",
        "Full Name:\n                  URI:http://crl.example.invalid/id-ca-1.crl",
        "CA Issuers - URI:http://aia.example.invalid/id-ca-1.p7c",
        "OCSP - URI:http://ocsp.example.invalid",
    ] {
        assert!(id0.contains(want), "id0 lacks {want:?}:\n{id0}");
    }
    let id2 = text_of(dir, "id2.pem");
    assert!(
        id2.contains("Key Usage: critical\n                Key Agreement\n"),
        "{id2}"
    );
    let id3 = text_of(dir, "id3.pem");
    assert!(
        id3.contains("TLS Web Client Authentication, E-mail Protection")
            && !id3.contains("Alternative Name"),
        "{id3}"
    );
}

#[test]
fn crl_is_signed_and_revokes_what_was_asked() {
    let pki = chained_pki();
    let dir = card_dir(pki);
    let dir = dir.path();
    assert_pem_shape(pki.crl_pem().unwrap(), "X509 CRL");

    let out = openssl_ok(
        dir,
        &[
            "crl",
            "-in",
            "ca.crl",
            "-CAfile",
            "intermediate.pem",
            "-verify",
            "-noout",
            "-text",
        ],
    );
    assert!(out.contains("verify OK"), "{out}");
    assert!(
        out.contains("X509v3 CRL Number: \n                7"),
        "{out}"
    );
    assert!(out.contains("Version 2 (0x1)"), "{out}");
    let revoked_hex: String = pki.identities()[3]
        .credential()
        .serial()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert!(
        out.contains(&format!("Serial Number: {revoked_hex}")),
        "{out}"
    );
    assert!(out.contains("Serial Number: 010203"), "{out}");

    // The CRL must not verify against the wrong CA.
    assert!(!openssl(
        dir,
        &["crl", "-in", "ca.crl", "-CAfile", "ca.pem", "-verify", "-noout"]
    )
    .status
    .success());

    // Revocation checking with the CRL: id3 is revoked, id0 is not.
    let check = |id: &str| {
        openssl(
            dir,
            &[
                "verify",
                "-crl_check",
                "-CRLfile",
                "ca.crl",
                "-CAfile",
                "ca.pem",
                "-untrusted",
                "intermediate.pem",
                id,
            ],
        )
    };
    assert!(check("id0.pem").status.success());
    let revoked = check("id3.pem");
    assert!(!revoked.status.success());
    assert!(String::from_utf8_lossy(&revoked.stderr).contains("certificate revoked"));

    // And x509-cert can parse it back.
    let crl: CertificateList = CertificateList::from_der(pki.crl_der().unwrap()).unwrap();
    assert_eq!(crl.tbs_cert_list.revoked_certificates.unwrap().len(), 2);
}

// ------------------------------------------------------------------ P-256

#[test]
fn sixteen_p256_identities_verify() {
    let pki = p256_pki();
    assert_eq!(pki.identities().len(), 16);
    let dir = card_dir(pki);
    let dir = dir.path();
    let out = openssl_ok(
        dir,
        &[
            "crl", "-in", "ca.crl", "-CAfile", "ca.pem", "-verify", "-noout",
        ],
    );
    assert!(out.contains("verify OK"), "{out}");
    for n in 0..16 {
        let id = format!("id{n}.pem");
        let out = openssl_ok(dir, &["verify", "-CAfile", "ca.pem", &id]);
        assert!(out.contains(&format!("{id}: OK")), "{out}");
        assert_key_matches(dir, n);
    }
    let toml = std::fs::read_to_string(dir.join("card.toml")).unwrap();
    assert_eq!(toml.matches("[[identity]]").count(), 16);
    assert!(toml.contains("cert = \"id15.pem\"\nkey = \"id15.key\"\n"));
}

#[test]
fn serial_numbers_are_positive_short_and_unique() {
    let mut seen = BTreeSet::new();
    for pki in [chained_pki(), p256_pki()] {
        let creds = std::iter::once(pki.ca())
            .chain(pki.intermediate())
            .chain(pki.identities().iter().map(|i| i.credential()));
        for cred in creds {
            let serial = cred.serial();
            assert!(!serial.is_empty() && serial.len() <= 20);
            assert!(serial[0] & 0x80 == 0 && serial[0] != 0, "{serial:02x?}");
            let cert = Certificate::from_der(cred.cert_der()).unwrap();
            assert_eq!(cert.tbs_certificate().serial_number().as_bytes(), serial);
            assert!(
                seen.insert(serial.to_vec()),
                "duplicate serial {serial:02x?}"
            );
        }
    }
}

// ------------------------------------------------------------ determinism

fn small(seed: u64, identities: usize) -> Pki {
    small_builder(seed, identities).build().unwrap()
}

fn small_builder(seed: u64, identities: usize) -> PkiBuilder {
    let specs = [
        IdentitySpec::new(Role::Authentication, KeyType::Rsa2048, "A.B.1").with_upn("1@mil"),
        IdentitySpec::new(Role::Signature, KeyType::P256, "A.B.1").with_email("a@b.invalid"),
    ];
    specs.into_iter().take(identities).fold(
        PkiBuilder::new(seed).ca_key(KeyType::P256).crl(1),
        |b, s| b.identity(s),
    )
}

fn all_files(pki: &Pki) -> Vec<(String, Vec<u8>)> {
    pki.card_files(&CardOptions::default()).unwrap()
}

#[test]
fn same_seed_same_bytes_other_seed_other_keys() {
    let a = small(5, 2);
    let b = small(5, 2);
    assert_eq!(all_files(&a), all_files(&b));
    assert_eq!(a.crl_der(), b.crl_der());

    let c = small(6, 2);
    assert_ne!(a.ca().key_der(), c.ca().key_der());
    for (x, y) in a.identities().iter().zip(c.identities()) {
        assert_ne!(x.credential().key_der(), y.credential().key_der());
        assert_ne!(x.credential().serial(), y.credential().serial());
    }
}

#[test]
fn adding_an_identity_keeps_the_earlier_ones() {
    let one = small(9, 1);
    let two = small(9, 2);
    assert_eq!(one.ca().cert_der(), two.ca().cert_der());
    assert_eq!(
        one.identities()[0].credential().key_der(),
        two.identities()[0].credential().key_der()
    );
    assert_eq!(
        one.identities()[0].credential().cert_der(),
        two.identities()[0].credential().cert_der()
    );
}

// ------------------------------------------------------------- card files

#[test]
fn write_card_dir_modes_and_overwrite_protection() {
    use std::os::unix::fs::PermissionsExt;
    let pki = p256_pki();
    let options = CardOptions::default()
        .pin("87654321")
        .puk("11223344", 5)
        .card_id(vec![0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04])
        .compress(true);
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("card");
    let written = pki.write_card_dir(&dir, &options, false).unwrap();
    let files = pki.card_files(&options).unwrap();
    assert_eq!(written.len(), files.len());
    for (name, bytes) in &files {
        let path = dir.join(name);
        assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{name}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        let want = if name.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode, want, "{name}: {mode:o}");
    }
    let toml = std::fs::read_to_string(dir.join("card.toml")).unwrap();
    for want in [
        "# vcac card profile, written by certs-fixtures (seed 16)\n[card]\n",
        "card_id = \"DEADBEEF01020304\"\n",
        "[pin]\npin = \"87654321\"\nmax_tries = 3\npuk = \"11223344\"\npuk_max_tries = 5\n",
        "[[identity]]\ncert = \"id0.pem\"\nkey = \"id0.key\"\ncompress = true\n",
    ] {
        assert!(toml.contains(want), "{want:?} not in\n{toml}");
    }

    // A second write refuses and names the first existing file.
    std::fs::set_permissions(dir.join("id0.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    match pki.write_card_dir(&dir, &options, false) {
        Err(Error::Exists(path)) => {
            assert_eq!(path, dir.join("ca.pem"));
            assert!(Error::Exists(path).to_string().contains("ca.pem"));
        }
        other => panic!("expected Error::Exists, got {other:?}"),
    }
    // force overwrites, and puts key modes back to 0600.
    pki.write_card_dir(&dir, &options, true).unwrap();
    let mode = std::fs::metadata(dir.join("id0.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn bad_options_are_reported() {
    let invalid = |b: PkiBuilder| matches!(b.build(), Err(Error::InvalidOption(_)));
    let base = || PkiBuilder::new(1).ca_key(KeyType::P256);
    assert!(invalid(base().days(0)));
    assert!(invalid(base().revoke_identity(0)));
    assert!(invalid(base().ca_subject("CN=a+b")));
    assert!(invalid(base().identity_subject_base("XX=1")));
    assert!(invalid(base().identity(
        IdentitySpec::new(Role::Signature, KeyType::P256, "X").with_email("é@x")
    )));
    assert!(invalid(base().valid_from(u64::MAX)));

    let pki = base().build().unwrap();
    assert!(pki.identities().is_empty());
    assert!(matches!(
        pki.card_toml(&CardOptions::default().pin("1234")),
        Err(Error::InvalidOption(_))
    ));
    let too_many = (0..17).fold(base(), |b, i| {
        b.identity(IdentitySpec::new(
            Role::Generic,
            KeyType::P256,
            format!("N{i}"),
        ))
    });
    assert!(matches!(
        too_many
            .build()
            .unwrap()
            .card_files(&CardOptions::default()),
        Err(Error::InvalidOption(_))
    ));
}

#[test]
fn generated_pem_is_well_formed() {
    let pki = chained_pki();
    assert_pem_shape(pki.ca().cert_pem(), "CERTIFICATE");
    assert_pem_shape(pki.intermediate().unwrap().cert_pem(), "CERTIFICATE");
    for identity in pki.identities() {
        assert_pem_shape(identity.credential().cert_pem(), "CERTIFICATE");
        assert_pem_shape(identity.credential().key_pem(), "PRIVATE KEY");
        assert_eq!(
            pem_to_der(identity.credential().cert_pem().as_bytes()),
            identity.credential().cert_der()
        );
        assert_eq!(
            pem_to_der(identity.credential().key_pem().as_bytes()),
            identity.credential().key_der()
        );
    }
    // Debug output never shows key material.
    let debug = format!("{:?}", pki.identities()[0]);
    assert!(debug.contains("<redacted>"), "{debug}");
}

/// RSA-3072 and RSA-4096 keys take seconds to generate even in a release
/// build: run with `cargo test -p certs-fixtures --release -- --ignored`.
#[test]
#[ignore = "slow RSA-3072/4096 key generation; run in release with --ignored"]
fn large_rsa_keys_verify() {
    let pki = PkiBuilder::new(3)
        .ca_key(KeyType::Rsa4096)
        .identity(
            IdentitySpec::new(Role::Authentication, KeyType::Rsa3072, "BIG.RSA.1")
                .with_upn("1@mil"),
        )
        .identity(
            IdentitySpec::new(Role::Encryption, KeyType::Rsa4096, "BIG.RSA.1")
                .with_email("big@rsa.invalid"),
        )
        .crl(1)
        .build()
        .unwrap();
    let dir = card_dir(&pki);
    let dir = dir.path();
    openssl_ok(
        dir,
        &[
            "crl", "-in", "ca.crl", "-CAfile", "ca.pem", "-verify", "-noout",
        ],
    );
    for (n, bits) in [(0, "3072"), (1, "4096")] {
        let id = format!("id{n}.pem");
        openssl_ok(dir, &["verify", "-CAfile", "ca.pem", &id]);
        assert_key_matches(dir, n);
        assert!(text_of(dir, &id).contains(&format!("Public-Key: ({bits} bit)")));
    }
}

// ------------------------------------------------------- PIV content signer

/// `small(seed, 2)` with a PIV content signer.
fn with_content_signer(seed: u64) -> Pki {
    small_builder(seed, 2)
        .piv_content_signer(PkiBuilder::DEFAULT_CONTENT_SIGNER_SUBJECT)
        .build()
        .unwrap()
}

#[test]
fn the_content_signer_leaves_every_other_file_alone() {
    let plain = small(5, 2);
    let signed = with_content_signer(5);
    let mut files = all_files(&signed);
    let at = files
        .iter()
        .position(|(n, _)| n == "content-signer.pem")
        .unwrap();
    assert_eq!(at, 1, "right after ca.pem");
    files.remove(at);
    assert_eq!(files, all_files(&plain));
    assert!(plain.content_signer().is_none());
    assert!(plain.sign_chuid(b"x").is_err());
}

#[test]
fn the_content_signer_is_a_piv_content_signing_certificate() {
    let pki = with_content_signer(5);
    let dir = card_dir(&pki);
    let dir = dir.path();
    let out = openssl_ok(
        dir,
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "any",
            "content-signer.pem",
        ],
    );
    assert!(out.contains("content-signer.pem: OK"), "{out}");
    let text = openssl_ok(
        dir,
        &["x509", "-in", "content-signer.pem", "-noout", "-text"],
    );
    for want in [
        "Subject: C = US, O = U.S. Government, OU = DoD, OU = PKI, CN = VCAC TEST PIV CONTENT SIGNER",
        "X509v3 Key Usage: critical\n                Digital Signature\n",
        "X509v3 Extended Key Usage: \n                2.16.840.1.101.3.6.7\n",
        "CA:FALSE",
        "ASN1 OID: prime256v1",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
}

#[test]
fn chuid_and_security_object_signatures_verify_with_openssl_cms() {
    let pki = with_content_signer(5);
    let dir = card_dir(&pki);
    let dir = dir.path();
    let content = b"\x30\x02\x11\x22\x34\x02\x33\x44";
    let chuid = pki.sign_chuid(content).unwrap();
    assert_eq!(chuid, with_content_signer(5).sign_chuid(content).unwrap());
    std::fs::write(dir.join("chuid.cms"), &chuid).unwrap();
    std::fs::write(dir.join("content"), content).unwrap();
    std::fs::write(dir.join("tampered"), b"\x30\x02\x11\x23\x34\x02\x33\x44").unwrap();
    let verify = |content: &str| {
        openssl(
            dir,
            &[
                "cms",
                "-verify",
                "-inform",
                "DER",
                "-in",
                "chuid.cms",
                "-content",
                content,
                "-binary",
                "-CAfile",
                "ca.pem",
                "-purpose",
                "any",
                "-out",
                "/dev/null",
            ],
        )
    };
    let ok = verify("content");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stderr).contains("Verification successful"));
    let bad = verify("tampered");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("content verify error")
            || String::from_utf8_lossy(&bad.stderr).contains("digest failure"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // The structure openssl sees: eContentType, detached, signer attributes.
    let printed = openssl_ok(
        dir,
        &[
            "cms",
            "-cmsout",
            "-print",
            "-inform",
            "DER",
            "-in",
            "chuid.cms",
        ],
    );
    for want in [
        "version: 3\n",
        "eContentType: undefined (2.16.840.1.101.3.6.1)\n      eContent: <ABSENT>\n",
        "object: contentType (1.2.840.113549.1.9.3)\n            set:\n              OBJECT:undefined (2.16.840.1.101.3.6.1)\n",
        "object: messageDigest (1.2.840.113549.1.9.4)",
        "object: undefined (2.16.840.1.101.3.6.5)",
        "signatureAlgorithm: \n          algorithm: ecdsa-with-SHA256",
    ] {
        assert!(printed.contains(want), "{want:?} not in\n{printed}");
    }

    let so = pki
        .sign_security_object(&[(1, b"one"), (2, b"two")])
        .unwrap();
    std::fs::write(dir.join("so.cms"), &so).unwrap();
    openssl_ok(
        dir,
        &[
            "cms", "-verify", "-inform", "DER", "-in", "so.cms", "-binary", "-CAfile", "ca.pem",
            "-purpose", "any", "-out", "lds.der",
        ],
    );
    let lds = std::fs::read(dir.join("lds.der")).unwrap();
    let text = openssl_ok(dir, &["asn1parse", "-inform", "DER", "-in", "lds.der"]);
    assert!(text.contains("sha256"), "{text}");
    use sha2::Digest;
    assert!(lds
        .windows(32)
        .any(|w| w == &sha2::Sha256::digest(b"one")[..]));
    assert!(lds
        .windows(32)
        .any(|w| w == &sha2::Sha256::digest(b"two")[..]));
    let printed = openssl_ok(
        dir,
        &[
            "cms", "-cmsout", "-print", "-inform", "DER", "-in", "so.cms",
        ],
    );
    assert!(
        printed.contains("eContentType: undefined (2.23.136.1.1.1)\n      eContent: \n"),
        "{printed}"
    );
}
