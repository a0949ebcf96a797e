//! The issuer-signed PIV objects of `vcac provision --profile piv`: the
//! CHUID's Issuer Asymmetric Signature and the Security Object, read with
//! GET DATA from the card as `vcac serve` loads it (in process), verified
//! with `openssl cms -verify` against the directory's CA, and the Security
//! Object's hashes compared with the containers byte for byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;
use std::process::{Command, Output};

use cac::piv::{
    chuid_signature, chuid_signed_content, object_contents, parse_security_object,
    SECURITY_OBJECT_GROUPS,
};
use cac::{Card, Status};
use sha2::{Digest, Sha256};

fn provision(dir: &Path, profile: &str) {
    let out = Command::new(vcac_tests::vcac_bin())
        .args(["provision", "--profile", profile, "--seed", "15", "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The card of `dir`, loaded as `vcac serve --card DIR` loads it, with
/// PIV selected and the PIN verified.
fn served(dir: &Path) -> Card {
    let mut card = vcac_sources::dir::load(
        dir,
        &cac::keys::RustCrypto,
        rand_core::UnwrapErr(getrandom::SysRng),
    )
    .unwrap();
    card.power_on();
    let r = card.transmit_vec(&[
        0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00,
    ]);
    assert!(r.ends_with(&[0x90, 0x00]), "{r:02X?}");
    let r = card.transmit_vec(&[
        0x00, 0x20, 0x00, 0x80, 0x08, b'1', b'2', b'3', b'4', b'5', b'6', 0xFF, 0xFF,
    ]);
    assert_eq!(r, [0x90, 0x00]);
    card
}

/// GET DATA of `tag`, following `61 xx`.
fn get_data(card: &mut Card, tag: &[u8]) -> Vec<u8> {
    let mut cmd = vec![0x00, 0xCB, 0x3F, 0xFF, tag.len() as u8 + 2, 0x5C];
    cmd.push(tag.len() as u8);
    cmd.extend_from_slice(tag);
    cmd.push(0x00);
    let mut r = card.transmit_vec(&cmd);
    let mut data = Vec::new();
    loop {
        let (body, sw) = r.split_at(r.len() - 2);
        data.extend_from_slice(body);
        match Status::from_sw(u16::from_be_bytes([sw[0], sw[1]])) {
            Status::Success => return data,
            Status::BytesRemaining(_) => r = card.transmit_vec(&[0x00, 0xC0, 0x00, 0x00, 0x00]),
            other => panic!("GET DATA {tag:02X?}: {other:?}"),
        }
    }
}

/// `openssl args…` in `dir` (must be installed: the test fails otherwise).
fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("these tests need the openssl command-line tool")
}

/// `openssl cms -verify` of the DER SignedData `cms` against `ca.pem`,
/// with `content` as the detached content when given.
fn cms_verify(dir: &Path, cms: &str, content: Option<&str>, out: &str) -> Output {
    cms_verify_with(dir, cms, content, "ca.pem", &[], out)
}

/// `openssl cms -verify` of `cms` against the CA certificate `ca`, with
/// `extra` arguments (e.g. `-signer FILE`).
fn cms_verify_with(
    dir: &Path,
    cms: &str,
    content: Option<&str>,
    ca: &str,
    extra: &[&str],
    out: &str,
) -> Output {
    let mut args = vec![
        "cms", "-verify", "-inform", "DER", "-in", cms, "-binary", "-CAfile", ca,
        // The content signer's only EKU is id-PIV-content-signing.
        "-purpose", "any", "-out", out,
    ];
    if let Some(c) = content {
        args.extend(["-content", c]);
    }
    args.extend_from_slice(extra);
    openssl(dir, &args)
}

fn assert_verified(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains("Verification successful"),
        "{err}"
    );
}

#[test]
fn the_chuid_signature_verifies_against_the_ca_and_a_tampered_chuid_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    provision(dir, "piv");
    let mut card = served(dir);
    let chuid = get_data(&mut card, &[0x5F, 0xC1, 0x02]);
    assert_eq!(
        chuid,
        std::fs::read(dir.join("piv-obj-5FC102.bin")).unwrap()
    );

    // The signed content is the CHUID the card builds without a signer:
    // FASC-N, GUID, expiry, in that order.
    let unsigned_dir = dir.join("unsigned");
    std::fs::create_dir(&unsigned_dir).unwrap();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && !name.starts_with("piv-obj-") {
            std::fs::copy(entry.path(), unsigned_dir.join(&name)).unwrap();
        }
    }
    let unsigned = get_data(&mut served(&unsigned_dir), &[0x5F, 0xC1, 0x02]);
    assert_eq!(&unsigned[unsigned.len() - 4..], [0x3E, 0x00, 0xFE, 0x00]);
    let content = chuid_signed_content(&chuid).unwrap();
    assert_eq!(content, unsigned[2..unsigned.len() - 4]);
    assert_eq!(&content[..5], [0x30, 0x19, 0xD4, 0xE7, 0x39]);
    assert_eq!(&chuid[chuid.len() - 2..], [0xFE, 0x00]);

    let signature = chuid_signature(&chuid).unwrap();
    std::fs::write(dir.join("chuid.cms"), signature).unwrap();
    std::fs::write(dir.join("chuid.content"), &content).unwrap();
    assert_verified(&cms_verify(
        dir,
        "chuid.cms",
        Some("chuid.content"),
        "/dev/null",
    ));

    // The signer is the directory's content signer, issued by its CA.
    let o = cms_verify_with(
        dir,
        "chuid.cms",
        Some("chuid.content"),
        "ca.pem",
        &["-signer", "signer.pem"],
        "/dev/null",
    );
    assert_verified(&o);
    let der = |pem: &str| openssl(dir, &["x509", "-in", pem, "-outform", "DER"]).stdout;
    assert_eq!(der("signer.pem"), der("content-signer.pem"));

    // One changed GUID bit, or a CHUID signed by someone else: refused.
    let mut tampered = chuid.clone();
    let guid_at = content.windows(2).position(|w| w == [0x34, 0x10]).unwrap() + 2 + 2 + 4;
    tampered[guid_at] ^= 0x01;
    std::fs::write(
        dir.join("tampered.content"),
        chuid_signed_content(&tampered).unwrap(),
    )
    .unwrap();
    let o = cms_verify(dir, "chuid.cms", Some("tampered.content"), "/dev/null");
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("content verify error"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let other = dir.join("other");
    let out = Command::new(vcac_tests::vcac_bin())
        .args(["provision", "--profile", "piv", "--seed", "16", "--out"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::copy(other.join("ca.pem"), dir.join("other-ca.pem")).unwrap();
    let o = cms_verify_with(
        dir,
        "chuid.cms",
        Some("chuid.content"),
        "other-ca.pem",
        &[],
        "/dev/null",
    );
    assert!(!o.status.success());
}

#[test]
fn the_security_object_verifies_and_hashes_the_served_containers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    provision(dir, "dual");
    let mut card = served(dir);
    let so = get_data(&mut card, &[0x5F, 0xC1, 0x06]);
    assert_eq!(so, std::fs::read(dir.join("piv-obj-5FC106.bin")).unwrap());
    let (mapping, signed_lds) = parse_security_object(&so).unwrap();
    assert_eq!(
        mapping,
        [
            (1, 0xDB00),
            (2, 0x3000),
            (3, 0x3001),
            (4, 0x6050),
            (5, 0x6060)
        ]
    );
    std::fs::write(dir.join("so.cms"), signed_lds).unwrap();
    assert_verified(&cms_verify(dir, "so.cms", None, "lds.der"));
    let lds = std::fs::read(dir.join("lds.der")).unwrap();

    // LDSSecurityObject { v0, sha-256, { { n, SHA-256(container) } … } },
    // rebuilt from what the card serves now.
    let mut groups = Vec::new();
    for (number, tag, _) in SECURITY_OBJECT_GROUPS {
        let object = get_data(&mut card, tag);
        let digest = Sha256::digest(object_contents(&object).unwrap());
        groups.extend_from_slice(&[0x30, 0x25, 0x02, 0x01, number, 0x04, 0x20]);
        groups.extend_from_slice(&digest);
    }
    let mut want = vec![0x30, 0x81, 0xD6, 0x02, 0x01, 0x00];
    want.extend_from_slice(&[
        0x30, 0x0B, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x30, 0x81,
        0xC3,
    ]);
    want.extend_from_slice(&groups);
    assert_eq!(lds, want);
    let printed = String::from_utf8_lossy(
        &openssl(
            dir,
            &[
                "cms", "-cmsout", "-print", "-inform", "DER", "-in", "so.cms",
            ],
        )
        .stdout,
    )
    .into_owned();
    assert!(
        printed.contains("eContentType: undefined (2.23.136.1.1.1)"),
        "{printed}"
    );
}

#[test]
fn provisioning_is_deterministic_and_cac_cards_get_no_signed_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    provision(&a, "piv");
    provision(&b, "piv");
    for name in [
        "piv-obj-5FC102.bin",
        "piv-obj-5FC106.bin",
        "content-signer.pem",
    ] {
        assert_eq!(
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
            "{name}"
        );
    }
    let inspect = Command::new(vcac_tests::vcac_bin())
        .arg("inspect")
        .arg(&a)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        text.contains("CHUID signed by the issuer (") && text.contains("piv-obj-5FC106.bin"),
        "{text}"
    );
    // Without --force the signed objects are not overwritten either.
    std::fs::remove_file(a.join("card.toml")).unwrap();
    let out = Command::new(vcac_tests::vcac_bin())
        .args(["provision", "--profile", "piv", "--seed", "15", "--out"])
        .arg(&a)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("piv-obj-5FC102.bin: exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cac = tmp.path().join("cac");
    provision(&cac, "cac");
    let names: Vec<String> = std::fs::read_dir(&cac)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("piv-") || n == "content-signer.pem"),
        "{names:?}"
    );
}
