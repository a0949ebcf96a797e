//! `vcac provision` and `vcac inspect`, run as the binary users run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn vcac(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vcac"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = vcac(args);
    assert!(
        out.status.success(),
        "vcac {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn same_seed_gives_byte_identical_trees_and_openssl_accepts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    for d in [&a, &b] {
        let out = ok(&["provision", "--out", d.to_str().unwrap(), "--seed", "7"]);
        assert!(out.contains("seed 7"), "{out}");
    }
    ok(&["provision", "--out", c.to_str().unwrap(), "--seed", "8"]);
    let (ta, tb, tc) = (tree(&a), tree(&b), tree(&c));
    let names: Vec<_> = ta.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "ca.pem",
            "card.toml",
            "id0.key",
            "id0.pem",
            "id1.key",
            "id1.pem",
            "id2.key",
            "id2.pem"
        ]
    );
    assert_eq!(ta, tb, "same seed, same bytes");
    assert_ne!(ta[2], tc[2], "another seed, another key");

    for i in 0..3 {
        let cert = a.join(format!("id{i}.pem"));
        let v = openssl(&[
            "verify",
            "-CAfile",
            a.join("ca.pem").to_str().unwrap(),
            cert.to_str().unwrap(),
        ]);
        assert!(v.trim().ends_with(": OK"), "{v}");
        // Each key matches its certificate.
        let from_key = openssl(&[
            "pkey",
            "-in",
            a.join(format!("id{i}.key")).to_str().unwrap(),
            "-pubout",
        ]);
        let from_cert = openssl(&["x509", "-in", cert.to_str().unwrap(), "-pubkey", "-noout"]);
        assert_eq!(from_key, from_cert, "id{i}");
    }
    let expected: [(&str, &[&str]); 3] = [
        (
            "id0.pem",
            &[
                "TLS Web Client Authentication",
                "Microsoft Smartcard Login",
                "UPN::1234567890@mil",
                "Digital Signature",
            ],
        ),
        (
            "id1.pem",
            &[
                "E-mail Protection",
                "email:john.q.doe.ctr@mail.mil",
                "Non Repudiation",
            ],
        ),
        ("id2.pem", &["Key Encipherment"]),
    ];
    for (file, wants) in expected {
        let text = openssl(&[
            "x509",
            "-in",
            a.join(file).to_str().unwrap(),
            "-text",
            "-noout",
        ]);
        for want in wants {
            assert!(text.contains(want), "{want} missing from {file}:\n{text}");
        }
    }
}

#[test]
fn keys_are_private_and_existing_files_are_kept_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("card");
    let ds = d.to_str().unwrap();
    ok(&[
        "provision",
        "--out",
        ds,
        "--seed",
        "1",
        "--identities",
        "1",
        "--key-type",
        "p256",
    ]);
    let mode = |name: &str| {
        std::fs::metadata(d.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("id0.key"), 0o600);
    assert_eq!(mode("id0.pem") & 0o077, 0o044);
    let before = tree(&d);

    let out = vcac(&[
        "provision",
        "--out",
        ds,
        "--seed",
        "2",
        "--identities",
        "1",
        "--key-type",
        "p256",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists") && err.contains(ds), "{err}");
    assert_eq!(tree(&d), before, "nothing was overwritten");

    ok(&[
        "provision",
        "--out",
        ds,
        "--seed",
        "2",
        "--identities",
        "1",
        "--key-type",
        "p256",
        "--force",
    ]);
    assert_ne!(tree(&d), before);
    assert_eq!(mode("id0.key"), 0o600);
}

#[test]
fn options_are_honoured_and_bad_ones_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("card");
    let ds = d.to_str().unwrap();
    ok(&[
        "provision",
        "--out",
        ds,
        "--seed",
        "5",
        "--identities",
        "4",
        "--key-type",
        "p256",
        "--key-type",
        "3=rsa2048",
        "--pin",
        "123456",
        "--max-tries",
        "5",
        "--puk",
        "654321",
        "--name",
        "ROE.RICHARD.9",
        "--email",
        "r@example.mil",
        "--upn",
        "9@mil",
        "--valid-from",
        "2026-02-03",
        "--days",
        "30",
        "--compress",
    ]);
    let toml = std::fs::read_to_string(d.join("card.toml")).unwrap();
    for want in [
        "pin = \"123456\"",
        "max_tries = 5",
        "puk = \"654321\"",
        "compress = true",
        "cert = \"id3.pem\"",
    ] {
        assert!(toml.contains(want), "{want} missing:\n{toml}");
    }
    let inspect = ok(&["inspect", ds]);
    assert!(inspect.contains("CN=ROE.RICHARD.9"), "{inspect}");
    assert!(inspect.contains("ECDSA P-256"), "{inspect}");
    assert!(inspect.contains("RSA-2048"), "{inspect}");
    assert!(inspect.contains("UPN:9@mil"), "{inspect}");
    assert!(inspect.contains("email:r@example.mil"), "{inspect}");
    assert!(inspect.contains("clientAuth, smartcardLogon"), "{inspect}");
    assert!(!inspect.contains("DOES NOT MATCH"), "{inspect}");
    let dates = openssl(&[
        "x509",
        "-in",
        d.join("id0.pem").to_str().unwrap(),
        "-noout",
        "-startdate",
        "-enddate",
    ]);
    assert!(
        dates.contains("notBefore=Feb  3 00:00:00 2026 GMT"),
        "{dates}"
    );
    assert!(
        dates.contains("notAfter=Mar  5 00:00:00 2026 GMT"),
        "{dates}"
    );

    for (args, want) in [
        (vec!["--identities", "17"], "1 to 16"),
        (
            vec!["--identities", "2", "--key-type", "3=rsa2048"],
            "identity 3 does not exist",
        ),
        (vec!["--key-type", "rsa1024"], "unknown key type"),
        (vec!["--pin", "12ab56"], "PIN"),
        (vec!["--valid-from", "yesterday"], "--valid-from"),
    ] {
        let out_dir = tmp.path().join("bad");
        let mut all = vec![
            "provision",
            "--out",
            out_dir.to_str().unwrap(),
            "--seed",
            "1",
        ];
        all.extend(args);
        let out = vcac(&all);
        assert!(!out.status.success(), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{all:?}: {err}");
    }
}

#[test]
fn inspect_flags_a_key_that_does_not_match() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("card");
    for (name, bytes) in certs_fixtures::default_card::files() {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    }
    std::fs::copy(d.join("id1.key"), d.join("id0.key")).unwrap();
    let out = ok(&["inspect", d.to_str().unwrap()]);
    assert!(out.contains("DOES NOT MATCH"), "{out}");
    let err = vcac(&["inspect", tmp.path().join("nowhere").to_str().unwrap()]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("card.toml"));
}
