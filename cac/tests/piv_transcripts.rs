//! PIV applet transcripts: tables of command → exact response, one per
//! behaviour, against a PIV card built like `vcac provision --profile piv
//! --seed 15` (9A RSA-2048, 9C P-256, 9D P-384, 9E P-256; PIN 123456,
//! PUK 12345678, default 3DES management key).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::{Arc, Mutex, OnceLock};

use cac::keys::RustCrypto;
use cac::store::{Change, Store, StoreError};
use cac::{config, Card, Status};
use certs_fixtures::{CardOptions, IdentitySpec, KeyType, Pki, PkiBuilder, Role};
use rand_chacha::rand_core::SeedableRng;
use sha2::{Digest, Sha256};

const CN: &str = "DOE.JOHN.Q.1234567890";
const EMAIL: &str = "john.q.doe.ctr@mail.mil";

/// The PKI of the card (built once), with the issuer's PIV content signer
/// (which changes no other file).
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        PkiBuilder::new(15)
            .identity(
                IdentitySpec::new(Role::PivAuthentication, KeyType::Rsa2048, CN)
                    .with_upn("1234567890@mil"),
            )
            .identity(IdentitySpec::new(Role::Signature, KeyType::P256, CN).with_email(EMAIL))
            .identity(IdentitySpec::new(Role::Encryption, KeyType::P384, CN).with_email(EMAIL))
            .identity(IdentitySpec::new(
                Role::CardAuthentication,
                KeyType::P256,
                CN,
            ))
            .piv_content_signer(PkiBuilder::DEFAULT_CONTENT_SIGNER_SUBJECT)
            .build()
            .unwrap()
    })
}

/// The files of the PIV card directory (built once).
fn files() -> &'static [(String, Vec<u8>)] {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        pki()
            .card_files(
                &CardOptions::default()
                    .pin("123456")
                    .piv(false, "123456", "12345678"),
            )
            .unwrap()
    })
}

fn read(name: &str) -> Result<Vec<u8>, String> {
    files()
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, b)| b.clone())
        .ok_or_else(|| format!("{name}: missing"))
}

fn toml() -> String {
    String::from_utf8(read("card.toml").unwrap()).unwrap()
}

fn card_with(toml: &str, store: Option<Box<dyn Store>>) -> Card {
    let mut card = config::load_card_with(
        toml,
        &mut read,
        &RustCrypto,
        rand_chacha::ChaCha20Rng::seed_from_u64(42),
        |_, b| {
            Ok(match store {
                Some(s) => b.store(s),
                None => b,
            })
        },
    )
    .unwrap();
    card.power_on();
    card
}

fn card() -> Card {
    card_with(&toml(), None)
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

fn tx(card: &mut Card, cmd: &str) -> Vec<u8> {
    card.transmit_vec(&h(cmd))
}

fn run(card: &mut Card, table: &[(&str, &str)]) {
    for (i, (cmd, want)) in table.iter().enumerate() {
        let got = tx(card, cmd);
        assert_eq!(
            hex::encode_upper(&got),
            hex::encode_upper(h(want)),
            "step {i}: {cmd}"
        );
    }
}

fn sw(r: &[u8]) -> Status {
    Status::from_sw(u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]]))
}

const SELECT: &str = "00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00";
const APT: &str = "61 3B 4F 06 00 00 10 00 01 00 79 07 4F 05 A0 00 00 03 08 50 08 76 63 61 63 20 50 49 56
    AC 1E 80 01 03 80 01 08 80 01 0A 80 01 0C 80 01 06 80 01 07 80 01 05 80 01 11 80 01 14 06 01 00";
const VERIFY_OK: &str = "00 20 00 80 08 31 32 33 34 35 36 FF FF";
const VERIFY_BAD: &str = "00 20 00 80 08 39 39 39 39 39 39 FF FF";

fn selected() -> Card {
    let mut c = card();
    run(&mut c, &[(SELECT, &format!("{APT} 90 00"))]);
    c
}

fn cert_der(i: usize) -> Vec<u8> {
    config::certificate_der(&read(&format!("id{i}.pem")).unwrap()).unwrap()
}

/// GET DATA of a whole object, following 61 xx.
fn get_data(c: &mut Card, tag: &str) -> (Vec<u8>, Status) {
    let t = h(tag);
    let mut cmd = vec![
        0x00,
        0xCB,
        0x3F,
        0xFF,
        t.len() as u8 + 2,
        0x5C,
        t.len() as u8,
    ];
    cmd.extend_from_slice(&t);
    cmd.push(0x00);
    let mut r = c.transmit_vec(&cmd);
    let mut data = Vec::new();
    loop {
        let s = sw(&r);
        data.extend_from_slice(&r[..r.len() - 2]);
        match s {
            Status::BytesRemaining(_) => r = c.transmit_vec(&h("00 C0 00 00 00")),
            other => return (data, other),
        }
    }
}

#[test]
fn select_by_full_partial_and_unknown_aid() {
    let mut c = card();
    run(
        &mut c,
        &[
            // Nothing selected: Discovery and setcos probes are not PIV.
            ("00 CB 3F FF 03 5C 01 7E 08", "6D 00"),
            ("00 CA DF 30 05", "6D 00"),
            // Pre-PIV drivers' AIDs.
            ("00 A4 04 00 07 62 76 01 FF 00 00 00", "6A 82"),
            ("00 A4 04 00 06 A0 00 00 00 01 01", "6A 82"),
            ("00 A4 04 0C 07 A0 00 00 01 16 DB 00", "6A 82"),
            // OpenSC's 9-byte AID, ykpiv's RID without Le, the full AID.
            (SELECT, &format!("{APT} 90 00")),
            ("00 A4 04 00 05 A0 00 00 03 08", &format!("{APT} 90 00")),
            (
                "00 A4 04 00 0B A0 00 00 03 08 00 00 10 00 01 00 00",
                &format!("{APT} 90 00"),
            ),
            ("00 A4 04 0C 05 A0 00 00 03 08", "90 00"),
            // Too short, too long, wrong: not found, PIV stays selected.
            ("00 A4 04 00 04 A0 00 00 03", "6A 82"),
            (
                "00 A4 04 00 0C A0 00 00 03 08 00 00 10 00 01 00 00",
                "6A 82",
            ),
            ("00 A4 04 00 08 A0 00 00 05 27 20 01 01", "6A 82"),
            (
                "00 CB 3F FF 03 5C 01 7E 00",
                "7E 12 4F 0B A0 00 00 03 08 00 00 10 00 01 00 5F 2F 02 40 00 90 00",
            ),
        ],
    );
}

#[test]
fn get_data_objects_and_malformed_requests() {
    let mut c = selected();
    run(
        &mut c,
        &[
            (
                "00 CB 3F FF 05 5C 03 5F C1 0C 00",
                "53 08 C1 01 00 C2 01 00 FE 00 90 00",
            ),
            // OpenSC's Le=8 probe, then GET RESPONSE.
            (
                "00 CB 3F FF 05 5C 03 5F C1 0C 08",
                "53 08 C1 01 00 C2 01 00 61 02",
            ),
            ("00 C0 00 00 02", "FE 00 90 00"),
            (
                "00 CB 3F FF 05 5C 03 5F C1 06 00",
                "53 06 BA 00 BB 00 FE 00 90 00",
            ),
            // Printed Information is PIN-protected; absent objects are not found.
            ("00 CB 3F FF 05 5C 03 5F C1 09 08", "69 82"),
            ("00 CB 3F FF 05 5C 03 5F C1 03 08", "6A 82"),
            ("00 CB 3F FF 05 5C 03 5F C1 22 08", "6A 82"),
            ("00 CB 3F FF 05 5C 03 5F C1 30 08", "6A 82"),
            ("00 CB 3F FF 04 5C 02 5F C1 08", "6A 82"),
            // Malformed: wrong P1P2, no 5C, bad length, trailing bytes.
            ("00 CB 3F 00 05 5C 03 5F C1 07 00", "6A 86"),
            ("00 CB 3F FF 05 5D 03 5F C1 07 00", "6A 80"),
            ("00 CB 3F FF 05 5C 04 5F C1 07 00", "6A 80"),
            ("00 CB 3F FF 06 5C 03 5F C1 07 00 00", "6A 80"),
            ("00 CB 3F FF 00", "6A 80"),
            // Yubico extensions and foreign classes.
            ("00 FD 00 00 00", "6D 00"),
            ("00 F8 00 00 00", "6D 00"),
            ("80 CB 3F FF 03 5C 01 7E 00", "6E 00"),
        ],
    );
    let (ccc, s) = get_data(&mut c, "5FC107");
    assert_eq!(s, Status::Success);
    assert_eq!(ccc.len(), 0x35);
    assert_eq!(&ccc[..9], h("53 33 F0 15 A0 00 00 01 16"));
    let (chuid, _) = get_data(&mut c, "5FC102");
    assert_eq!(chuid.len(), 61);
    assert_eq!(&chuid[..7], h("53 3B 30 19 D4 E7 39"));
    assert_eq!(&chuid[47..], h("35 08 32 30 33 34 31 32 33 30 3E 00 FE 00"));
    for (i, tag) in ["5FC105", "5FC10A", "5FC10B", "5FC101"].iter().enumerate() {
        let (obj, s) = get_data(&mut c, tag);
        assert_eq!(s, Status::Success);
        let cert = cert_der(i);
        // 53 82 LL 70 82 LL <cert> 71 01 00 FE 00
        assert_eq!(&obj[8..8 + cert.len()], &cert[..], "{tag}");
        assert_eq!(&obj[8 + cert.len()..], h("71 01 00 FE 00"));
    }
}

#[test]
fn verify_status_logout_blocking_and_unblock() {
    let mut c = selected();
    run(
        &mut c,
        &[
            ("00 20 00 80", "63 C3"),
            ("00 20 00 80 00", "63 C3"),
            (VERIFY_BAD, "63 C2"),
            // Bad format: 5 digits, not digits, wrong length — no decrement.
            ("00 20 00 80 08 31 32 33 34 35 FF FF FF", "6A 80"),
            ("00 20 00 80 08 31 32 33 34 35 36 37 41", "6A 80"),
            ("00 20 00 80 06 31 32 33 34 35 36", "6A 80"),
            ("00 20 00 80", "63 C2"),
            ("00 20 00 00 08 31 32 33 34 35 36 FF FF", "6A 88"),
            ("00 20 00 81 08 31 32 33 34 35 36 37 38", "6A 88"),
            ("00 20 01 80", "6A 86"),
            (VERIFY_OK, "90 00"),
            ("00 20 00 80", "90 00"),
            (
                "00 CB 3F FF 05 5C 03 5F C1 09 08",
                "53 4B 01 15 44 4F 45 2E 61 45",
            ),
            ("00 20 FF 80", "90 00"),
            ("00 20 00 80", "63 C3"),
            ("00 CB 3F FF 05 5C 03 5F C1 09 08", "69 82"),
            (VERIFY_BAD, "63 C2"),
            (VERIFY_BAD, "63 C1"),
            (VERIFY_BAD, "63 C0"),
            (VERIFY_OK, "69 83"),
            ("00 20 00 80", "69 83"),
            // RESET RETRY COUNTER: wrong PUK, then PUK + new PIN.
            (
                "00 2C 00 80 10 31 31 31 31 31 31 31 31 36 35 34 33 32 31 FF FF",
                "63 C2",
            ),
            (
                "00 2C 00 81 10 31 32 33 34 35 36 37 38 36 35 34 33 32 31 FF FF",
                "6A 88",
            ),
            (
                "00 2C 00 80 10 31 32 33 34 35 36 37 38 36 35 34 33 FF FF FF FF",
                "6A 80",
            ),
            ("00 2C 00 80 08 31 32 33 34 35 36 37 38", "6A 80"),
            (
                "00 2C 00 80 10 31 32 33 34 35 36 37 38 36 35 34 33 32 31 FF FF",
                "90 00",
            ),
            ("00 20 00 80", "63 C3"),
            ("00 20 00 80 08 36 35 34 33 32 31 FF FF", "90 00"),
        ],
    );
    assert_eq!(c.piv_pin_tries_left(), Some(3));
    // Power-on logs out.
    c.power_on();
    run(
        &mut c,
        &[(SELECT, &format!("{APT} 90 00")), ("00 20 00 80", "63 C3")],
    );
}

#[test]
fn change_reference_data_pin_and_puk() {
    let mut c = selected();
    run(
        &mut c,
        &[
            (
                "00 24 00 80 10 39 39 39 39 39 39 FF FF 36 35 34 33 32 31 FF FF",
                "63 C2",
            ),
            (
                "00 24 00 80 10 31 32 33 34 35 36 FF FF 36 35 34 FF FF FF FF FF",
                "6A 80",
            ),
            ("00 24 00 80 08 31 32 33 34 35 36 FF FF", "6A 80"),
            (
                "00 24 01 80 10 31 32 33 34 35 36 FF FF 36 35 34 33 32 31 FF FF",
                "6A 86",
            ),
            (
                "00 24 00 9A 10 31 32 33 34 35 36 FF FF 36 35 34 33 32 31 FF FF",
                "6A 88",
            ),
            (
                "00 24 00 80 10 31 32 33 34 35 36 FF FF 36 35 34 33 32 31 FF FF",
                "90 00",
            ),
            ("00 20 00 80", "90 00"),
            (VERIFY_OK, "63 C2"),
            ("00 20 00 80 08 36 35 34 33 32 31 FF FF", "90 00"),
            // The PUK changes the same way.
            (
                "00 24 00 81 10 31 32 33 34 35 36 37 38 38 37 36 35 34 33 32 31",
                "90 00",
            ),
            (
                "00 2C 00 80 10 31 32 33 34 35 36 37 38 31 32 33 34 35 36 FF FF",
                "63 C2",
            ),
            (
                "00 2C 00 80 10 38 37 36 35 34 33 32 31 31 32 33 34 35 36 FF FF",
                "90 00",
            ),
        ],
    );
}

fn rsa_public(i: usize) -> rsa::PublicKey {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(&cert_der(i)).unwrap();
    let spki = der::Encode::to_der(cert.tbs_certificate().subject_public_key_info()).unwrap();
    rsa::PublicKey::try_from(spki::SubjectPublicKeyInfoRef::try_from(&spki[..]).unwrap()).unwrap()
}

fn ec_point(i: usize) -> Vec<u8> {
    use der::Decode;
    let cert = x509_cert::Certificate::from_der(&cert_der(i)).unwrap();
    cert.tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec()
}

/// `7C L 82 00 81 L input` as a GA command for `slot` with algorithm `alg`.
fn ga(alg: u8, slot: u8, tag: u8, input: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x82, 0x00, tag];
    push_len(&mut inner, input.len());
    inner.extend_from_slice(input);
    let mut data = vec![0x7C];
    push_len(&mut data, inner.len());
    data.extend_from_slice(&inner);
    cac::apdu::build_command([0x00, 0x87, alg, slot], &data, Some(256))
}

fn push_len(out: &mut Vec<u8>, n: usize) {
    match n {
        0..=0x7F => out.push(n as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        _ => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
}

/// Sends `apdu` (case 4, short or extended) in CLA-10 chunks of 255 bytes
/// as OpenSC does; returns the whole answer after GET RESPONSEs.
fn chained(c: &mut Card, apdu: &[u8]) -> Vec<u8> {
    let cmd = cac::CommandView::try_from(apdu).unwrap();
    let header = cmd.header();
    let parts: Vec<&[u8]> = cmd.data().chunks(255).collect();
    let mut r = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut h = header;
        if !last {
            h[0] |= 0x10;
        }
        r = c.transmit_vec(&cac::apdu::build_command(h, part, last.then_some(256)));
        if !last {
            assert_eq!(r, [0x90, 0x00], "chain part {i}");
        }
    }
    let mut out = Vec::new();
    loop {
        let s = sw(&r);
        out.extend_from_slice(&r[..r.len() - 2]);
        match s {
            Status::BytesRemaining(_) => r = c.transmit_vec(&h("00 C0 00 00 00")),
            other => {
                out.extend_from_slice(&other.to_bytes());
                return out;
            }
        }
    }
}

#[test]
fn general_authenticate_rsa_chained_and_extended() {
    use rsa::traits::PublicKeyParts;
    let mut c = selected();
    let mut block = vec![0xFFu8; 256];
    block[0] = 0x00;
    block[1] = 0x01;
    block[223] = 0x00;
    block[224..].copy_from_slice(&Sha256::digest(b"piv")[..]);
    let apdu = ga(0x07, 0x9A, 0x81, &block);
    // No PIN yet.
    assert_eq!(chained(&mut c, &apdu), h("69 82"));
    run(&mut c, &[(VERIFY_OK, "90 00")]);
    let r = chained(&mut c, &apdu);
    assert_eq!(&r[..8], h("7C 82 01 04 82 82 01 00"));
    assert_eq!(&r[r.len() - 2..], h("90 00"));
    let sig = &r[8..r.len() - 2];
    let key = rsa_public(0);
    let s = rsa::BoxedUint::from_be_slice(sig, key.n_bits_precision()).unwrap();
    let back = rsa::hazmat::rsa_encrypt(&key, &s).unwrap().to_be_bytes();
    assert_eq!(&back[..], &block[..]);
    assert_eq!(key.size(), 256);
    // One extended APDU works too (Le 256: the rest behind 61 08).
    let r = c.transmit_vec(&apdu);
    assert_eq!(&r[..8], h("7C 82 01 04 82 82 01 00"));
    assert_eq!(&r[8..256], &sig[..248]);
    assert_eq!(&r[256..], h("61 08"));
    let r = c.transmit_vec(&h("00 C0 00 00 08"));
    assert_eq!(&r[..8], &sig[248..]);
    // Wrong algorithm, wrong length, empty and foreign templates.
    assert_eq!(chained(&mut c, &ga(0x05, 0x9A, 0x81, &block)), h("6A 86"));
    assert_eq!(
        chained(&mut c, &ga(0x07, 0x9A, 0x81, &block[1..])),
        h("6A 80")
    );
    run(
        &mut c,
        &[
            ("00 87 07 9A 04 7C 02 82 00 00", "6A 80"),
            ("00 87 07 9A 04 7D 02 82 00 00", "6A 80"),
            ("00 87 07 9A 06 7C 04 82 00 83 00 00", "6A 80"),
            ("00 87 07 9A 05 7C 02 82 00 00 00", "6A 80"),
            ("00 87 07 82 06 7C 04 82 00 81 00 00", "6A 88"),
            ("00 87 07 9B 04 7C 02 82 00 00", "6A 86"),
            ("00 87 07 42 04 7C 02 82 00 00", "6A 88"),
        ],
    );
    // A chain interrupted by another command is dropped.
    let mut first = h("10 87 07 9A FF");
    first.extend_from_slice(&ga(0x07, 0x9A, 0x81, &block)[7..7 + 255]);
    assert_eq!(c.transmit_vec(&first), h("90 00"));
    run(
        &mut c,
        &[
            ("00 20 00 80", "90 00"),
            (
                "00 87 07 9A 0B 00 00 00 00 00 00 00 00 00 00 00 00",
                "6A 80",
            ),
        ],
    );
}

#[test]
fn pin_always_for_9c_and_no_pin_for_9e() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let hash = Sha256::digest(b"sign me");
    let sign = ga(0x11, 0x9C, 0x81, &hash);
    let mut c = selected();
    assert_eq!(sw(&c.transmit_vec(&sign)), Status::SecurityNotSatisfied);
    run(&mut c, &[(VERIFY_OK, "90 00")]);
    let r = c.transmit_vec(&sign);
    assert_eq!(sw(&r), Status::Success);
    assert_eq!(r[0], 0x7C);
    assert_eq!(r[2], 0x82);
    let sig = p256::ecdsa::Signature::from_der(&r[4..r.len() - 2]).unwrap();
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(1)).unwrap();
    key.verify_prehash(&hash, &sig).unwrap();
    // Used up: again, or after another command, it needs a fresh VERIFY.
    assert_eq!(sw(&c.transmit_vec(&sign)), Status::SecurityNotSatisfied);
    run(
        &mut c,
        &[
            (VERIFY_OK, "90 00"),
            (
                "00 CB 3F FF 03 5C 01 7E 00",
                "7E 12 4F 0B A0 00 00 03 08 00 00 10 00 01 00 5F 2F 02 40 00 90 00",
            ),
        ],
    );
    assert_eq!(sw(&c.transmit_vec(&sign)), Status::SecurityNotSatisfied);
    run(&mut c, &[(VERIFY_OK, "90 00")]);
    assert_eq!(sw(&c.transmit_vec(&sign)), Status::Success);

    // 9E: no PIN at all, after a power cycle.
    c.power_on();
    run(&mut c, &[(SELECT, &format!("{APT} 90 00"))]);
    let r = c.transmit_vec(&ga(0x11, 0x9E, 0x81, &hash));
    assert_eq!(sw(&r), Status::Success);
    let sig = p256::ecdsa::Signature::from_der(&r[4..r.len() - 2]).unwrap();
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&ec_point(3)).unwrap();
    key.verify_prehash(&hash, &sig).unwrap();
    // 9A and 9D still need the PIN.
    assert_eq!(
        sw(&c.transmit_vec(&ga(0x14, 0x9D, 0x85, &[4; 97]))),
        Status::SecurityNotSatisfied
    );
}

#[test]
fn ecdh_on_9d_p384() {
    use p384::elliptic_curve::point::AffineCoordinates;
    let mut r = rand_chacha::ChaCha20Rng::seed_from_u64(3);
    let mut bytes = [0u8; 48];
    rand_chacha::rand_core::Rng::fill_bytes(&mut r, &mut bytes);
    let peer = p384::SecretKey::from_slice(&bytes).unwrap();
    let point = p384::Sec1Point::from(peer.public_key());
    let mut c = selected();
    run(&mut c, &[(VERIFY_OK, "90 00")]);
    let resp = c.transmit_vec(&ga(0x14, 0x9D, 0x85, point.as_bytes()));
    assert_eq!(&resp[..4], h("7C 32 82 30"));
    let card = p384::PublicKey::from_sec1_bytes(&ec_point(2)).unwrap();
    let want = (card.to_projective() * *peer.to_nonzero_scalar())
        .to_affine()
        .x();
    assert_eq!(&resp[4..resp.len() - 2], &want[..]);
    assert_eq!(&resp[resp.len() - 2..], h("90 00"));
    // A P-256 point, an off-curve point, ECDH on an RSA key: refused.
    let mut bad = point.as_bytes().to_vec();
    bad[30] ^= 1;
    assert_eq!(
        sw(&c.transmit_vec(&ga(0x14, 0x9D, 0x85, &bad))),
        Status::IncorrectData
    );
    assert_eq!(
        sw(&c.transmit_vec(&ga(0x14, 0x9D, 0x85, &bad[..65]))),
        Status::IncorrectData
    );
    assert_eq!(
        sw(&c.transmit_vec(&ga(0x07, 0x9A, 0x85, &bad))),
        Status::IncorrectData
    );
}

fn des(block: &[u8]) -> Vec<u8> {
    use des::cipher::{BlockCipherEncrypt, KeyInit};
    let k = des::TdesEde3::new_from_slice(&h("010203040506070801020304050607080102030405060708"))
        .unwrap();
    let mut b = des::cipher::Block::<des::TdesEde3>::try_from(block).unwrap();
    k.encrypt_block(&mut b);
    b.to_vec()
}

fn des_decrypt(block: &[u8]) -> Vec<u8> {
    use des::cipher::{BlockCipherDecrypt, KeyInit};
    let k = des::TdesEde3::new_from_slice(&h("010203040506070801020304050607080102030405060708"))
        .unwrap();
    let mut b = des::cipher::Block::<des::TdesEde3>::try_from(block).unwrap();
    k.decrypt_block(&mut b);
    b.to_vec()
}

/// ykpiv's mutual authentication with the default 3DES key.
fn admin(c: &mut Card) {
    let r = tx(c, "00 87 03 9B 04 7C 02 80 00");
    assert_eq!(&r[..4], h("7C 0A 80 08"));
    let witness = des_decrypt(&r[4..12]);
    let challenge = h("1122334455667788");
    let mut cmd = h("00 87 03 9B 16 7C 14 80 08");
    cmd.extend_from_slice(&witness);
    cmd.extend_from_slice(&h("81 08"));
    cmd.extend_from_slice(&challenge);
    let r = c.transmit_vec(&cmd);
    let mut want = h("7C 0A 82 08");
    want.extend_from_slice(&des(&challenge));
    want.extend_from_slice(&h("90 00"));
    assert_eq!(r, want);
}

#[test]
fn management_key_authentication_and_challenges() {
    let mut c = selected();
    // OpenSC's random numbers: 8 bytes per call, P1 00.
    let r = tx(&mut c, "00 87 00 9B 04 7C 02 81 00 00");
    assert_eq!(&r[..4], h("7C 0A 81 08"));
    assert_eq!(&r[12..], h("90 00"));
    // External authentication: the encrypted challenge.
    let mut cmd = h("00 87 03 9B 0C 7C 0A 82 08");
    cmd.extend_from_slice(&des(&r[4..12]));
    assert_eq!(c.transmit_vec(&cmd), h("90 00"));
    // A wrong witness fails and leaves nothing to retry.
    let r = tx(&mut c, "00 87 03 9B 04 7C 02 80 00");
    assert_eq!(r.len(), 14);
    run(
        &mut c,
        &[
            (
                "00 87 03 9B 16 7C 14 80 08 00 00 00 00 00 00 00 00 81 08 11 22 33 44 55 66 77 88",
                "69 82",
            ),
            (
                "00 87 03 9B 16 7C 14 80 08 00 00 00 00 00 00 00 00 81 08 11 22 33 44 55 66 77 88",
                "69 85",
            ),
            ("00 87 08 9B 04 7C 02 80 00", "6A 86"),
            ("00 87 03 9B 04 7C 02 85 00", "6A 80"),
            ("00 47 00 9A 05 AC 03 80 01 11", "69 82"),
        ],
    );
    admin(&mut c);
}

#[test]
fn generate_put_data_and_sign_with_the_new_key() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let mut c = selected();
    run(
        &mut c,
        &[
            ("00 DB 3F FF 09 5C 03 5F C1 05 53 02 70 00", "69 82"),
            ("00 47 00 9A 05 AC 03 80 01 11", "69 82"),
        ],
    );
    admin(&mut c);
    run(
        &mut c,
        &[
            ("00 47 00 9A 05 AC 03 80 01 99", "6A 80"),
            ("00 47 00 9B 05 AC 03 80 01 11", "6A 86"),
            ("00 47 01 9A 05 AC 03 80 01 11", "6A 86"),
            ("00 47 00 9A 05 AD 03 80 01 11", "6A 80"),
            ("00 DB 3F FF 09 5C 03 5F C1 40 53 02 70 00", "6A 80"),
            ("00 DB 3F FF 09 5C 03 5F C1 05 54 02 70 00", "6A 80"),
            ("00 DB 3F FF 0A 5C 03 5F C1 05 53 02 70 00 00", "6A 80"),
        ],
    );
    let r = tx(&mut c, "00 47 00 9A 05 AC 03 80 01 11 00");
    assert_eq!(&r[..6], h("7F 49 43 86 41 04"));
    assert_eq!(&r[r.len() - 2..], h("90 00"));
    let point = r[5..70].to_vec();
    // The certificate still names the old key; the new key signs.
    run(&mut c, &[(VERIFY_OK, "90 00")]);
    let hash = Sha256::digest(b"new key");
    let resp = c.transmit_vec(&ga(0x11, 0x9A, 0x81, &hash));
    let sig = p256::ecdsa::Signature::from_der(&resp[4..resp.len() - 2]).unwrap();
    p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
        .unwrap()
        .verify_prehash(&hash, &sig)
        .unwrap();
    assert_eq!(
        sw(&c.transmit_vec(&ga(0x07, 0x9A, 0x81, &[0; 256]))),
        Status::IncorrectP1P2
    );
    // PUT DATA a (chained) certificate object, read it back, delete it.
    let cert = vec![0x30; 700];
    let mut object = vec![0x53, 0x82, 0x02, 0xC5, 0x70, 0x82, 0x02, 0xBC];
    object.extend_from_slice(&cert);
    object.extend_from_slice(&h("71 01 00 FE 00"));
    let mut data = h("5C 03 5F C1 05");
    data.extend_from_slice(&object);
    let r = chained(
        &mut c,
        &cac::apdu::build_command([0x00, 0xDB, 0x3F, 0xFF], &data, None),
    );
    assert_eq!(r, h("90 00"));
    assert_eq!(get_data(&mut c, "5FC105"), (object, Status::Success));
    run(
        &mut c,
        &[
            ("00 DB 3F FF 07 5C 03 5F C1 05 53 00", "90 00"),
            ("00 CB 3F FF 05 5C 03 5F C1 05 00", "6A 82"),
        ],
    );
}

/// Records every change; fails when told to.
#[derive(Clone, Default)]
struct Recorder {
    log: Arc<Mutex<Vec<String>>>,
    fail: Arc<Mutex<bool>>,
}

impl Store for Recorder {
    fn persist(&mut self, change: &Change<'_>) -> Result<(), StoreError> {
        if *self.fail.lock().unwrap() {
            return Err(StoreError("disk full".into()));
        }
        let entry = match change {
            Change::PivCredentials {
                pin,
                pin_tries_left,
                puk_tries_left,
                ..
            } => {
                format!(
                    "credentials {} {pin_tries_left} {puk_tries_left}",
                    hex::encode(pin)
                )
            }
            Change::PivKey { slot, pkcs8_der } => {
                format!("key {slot:02X} {}", pkcs8_der.len() > 100)
            }
            Change::PivObject { tag, object } => {
                format!("object {} {}", hex::encode_upper(tag), object.len())
            }
            _ => "other".into(),
        };
        self.log.lock().unwrap().push(entry);
        Ok(())
    }
}

#[test]
fn changes_reach_the_store_before_90_00_and_a_failing_store_answers_65_81() {
    let store = Recorder::default();
    let mut c = card_with(&toml(), Some(Box::new(store.clone())));
    run(
        &mut c,
        &[(SELECT, &format!("{APT} 90 00")), (VERIFY_OK, "90 00")],
    );
    assert!(
        store.log.lock().unwrap().is_empty(),
        "a correct PIN at full tries changes nothing"
    );
    run(&mut c, &[(VERIFY_BAD, "63 C2"), (VERIFY_OK, "90 00")]);
    admin(&mut c);
    run(
        &mut c,
        &[
            (
                "00 DB 3F FF 0C 5C 03 5F C1 02 53 06 30 00 FE 00 00",
                "6A 80",
            ),
            ("00 DB 3F FF 0B 5C 03 5F C1 02 53 04 30 00 FE 00", "90 00"),
        ],
    );
    let r = tx(&mut c, "00 47 00 9C 05 AC 03 80 01 14 00");
    assert_eq!(&r[..6], h("7F 49 63 86 61 04"));
    assert_eq!(
        *store.log.lock().unwrap(),
        [
            "credentials 313233343536ffff 2 3",
            "credentials 313233343536ffff 3 3",
            "object 5FC102 6",
            "key 9C true",
        ]
    );
    *store.fail.lock().unwrap() = true;
    run(
        &mut c,
        &[
            // The wrong PIN still counts, but the card says it could not save.
            (VERIFY_BAD, "65 81"),
            ("00 20 00 80", "63 C2"),
            (
                "00 24 00 80 10 31 32 33 34 35 36 FF FF 36 35 34 33 32 31 FF FF",
                "65 81",
            ),
            // The PIN is unchanged.
            (VERIFY_OK, "65 81"),
            ("00 DB 3F FF 0B 5C 03 5F C1 02 53 04 30 00 FE 00", "65 81"),
            ("00 47 00 9C 05 AC 03 80 01 11", "65 81"),
        ],
    );
    // 9C still holds the P-384 key GENERATE made before the failure.
    *store.fail.lock().unwrap() = false;
    run(&mut c, &[(VERIFY_OK, "90 00")]);
    let resp = c.transmit_vec(&ga(0x14, 0x9C, 0x81, &[0x11; 48]));
    assert_eq!(sw(&resp), Status::Success);
}

#[test]
fn restored_state_overrides_card_toml() {
    // What a store wrote is handed back through PivOptions.
    let mut c = config::load_card_with(
        &toml(),
        &mut read,
        &RustCrypto,
        rand_chacha::ChaCha20Rng::seed_from_u64(1),
        |cfg, b| {
            let o = cfg.piv.clone().unwrap().options()?.restore_credentials(
                cac::Pin::new("777777").unwrap(),
                1,
                cac::Pin::new("12345678").unwrap(),
                3,
            );
            Ok(b.piv(o.restore_object(&[0x5F, 0xC1, 0x0C], &h("53 00"))))
        },
    )
    .unwrap();
    c.power_on();
    run(
        &mut c,
        &[
            (SELECT, &format!("{APT} 90 00")),
            ("00 20 00 80", "63 C1"),
            ("00 CB 3F FF 05 5C 03 5F C1 0C 00", "6A 82"),
            ("00 20 00 80 08 37 37 37 37 37 37 FF FF", "90 00"),
        ],
    );
}

#[test]
fn dual_profile_keeps_cac_and_piv_apart() {
    let dual = toml().replace("profile = \"piv\"", "profile = \"dual\"");
    let mut c = card_with(&dual, None);
    run(
        &mut c,
        &[
            // CAC PKI applet 0 and the CCC are there; CLA chaining to them is refused.
            ("00 A4 04 0C 07 A0 00 00 00 79 01 00", "90 00"),
            ("10 42 00 00 02 01 02", "68 84"),
            ("00 20 00 00", "63 C3"),
            (SELECT, &format!("{APT} 90 00")),
            // PIV's PIN is its own: a wrong one here leaves the CAC counter.
            (VERIFY_BAD, "63 C2"),
            (
                "00 A4 04 00 07 A0 00 00 01 16 DB 00 00",
                "6F 0B 84 07 A0 00 00 01 16 DB 00 A5 00 90 00",
            ),
            ("00 20 00 00", "63 C3"),
        ],
    );
    assert_eq!(c.pin_tries_left(), 3);
    assert_eq!(c.piv_pin_tries_left(), Some(2));
    // A default (CAC) card has no PIV and keeps refusing CLA chaining.
    let cac = toml().replace("profile = \"piv\"\n", "").replace(
        "atr = \"3BF81300008131FE45564341435049563189\"",
        "atr = \"3B7A18000073667465206364313434\"",
    );
    let mut c = card_with(&cac, None);
    run(
        &mut c,
        &[(SELECT, "6A 82"), ("10 CB 3F FF 03 5C 01 7E", "68 84")],
    );
    assert_eq!(c.piv_pin_tries_left(), None);
}

#[test]
fn replays_the_recorded_opensc_piv_session() {
    // Recorded from OpenSC 0.23 against `vcac serve` (this card): every
    // answer must be byte-identical, except where the card's RNG enters
    // (ECDSA signatures, 9B challenges), which must keep their status
    // and length.
    let text = include_str!("data/opensc-piv-session.txt");
    let mut c = card();
    let mut last_cmd: Vec<u8> = Vec::new();
    let mut count = 0;
    let mut random = false;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if let Some(event) = line.strip_prefix("power ") {
            match event {
                "on" => drop(c.power_on()),
                "reset" => drop(c.reset()),
                _ => c.power_off(),
            }
            continue;
        }
        let (dir, hexs) = line.split_at(2);
        let bytes = h(hexs);
        if dir == "> " {
            last_cmd = bytes;
            continue;
        }
        let got = c.transmit_vec(&last_cmd);
        count += 1;
        let ins_p1 = (last_cmd[1], last_cmd[2]);
        if ins_p1.0 == 0x87 {
            random = !matches!(ins_p1.1, 0x05..=0x07);
        } else if ins_p1.0 != 0xC0 {
            random = false;
        }
        if random {
            // DER signatures vary by a byte or two; the status class holds.
            assert!(
                got.len().abs_diff(bytes.len()) <= 2,
                "{}",
                hex::encode(&last_cmd)
            );
            assert_eq!(got[got.len() - 2], bytes[bytes.len() - 2]);
        } else {
            assert_eq!(
                hex::encode_upper(&got),
                hex::encode_upper(&bytes),
                "command {count}: {}",
                hex::encode_upper(&last_cmd)
            );
        }
    }
    assert_eq!(count, 176);
}

/// The CHUID and Security Object an issuer signs for this card, as
/// `vcac provision` does: `(signed CHUID, Security Object)`.
fn issuer_signed_objects() -> (Vec<u8>, Vec<u8>) {
    use cac::piv::*;
    let mut c = selected();
    run(&mut c, &[(VERIFY_OK, "90 00")]);
    let (chuid, _) = get_data(&mut c, "5FC102");
    let content = chuid_signed_content(&chuid).unwrap();
    let chuid = chuid_with_signature(&chuid, &pki().sign_chuid(&content).unwrap()).unwrap();
    let mut objects = Vec::new();
    for (group, tag, _) in SECURITY_OBJECT_GROUPS {
        let object = if tag == CHUID_TAG {
            chuid.clone()
        } else {
            get_data(&mut c, &hex::encode(tag)).0
        };
        objects.push((group, object));
    }
    let groups: Vec<(u8, &[u8])> = objects
        .iter()
        .map(|(g, o)| (*g, object_contents(o).unwrap()))
        .collect();
    let lds = pki().sign_security_object(&groups).unwrap();
    let mapping: Vec<(u8, u16)> = SECURITY_OBJECT_GROUPS
        .iter()
        .map(|(g, _, id)| (*g, *id))
        .collect();
    (chuid, security_object(&mapping, &lds).unwrap())
}

#[test]
fn signed_objects_are_served_and_a_put_data_leaves_the_security_object_stale() {
    let (chuid, so) = issuer_signed_objects();
    // Unsigned card: empty 3E, an empty mapping and LDS.
    let mut c = selected();
    run(
        &mut c,
        &[(
            "00 CB 3F FF 05 5C 03 5F C1 06 00",
            "53 06 BA 00 BB 00 FE 00 90 00",
        )],
    );
    let (unsigned, _) = get_data(&mut c, "5FC102");
    assert_eq!(&unsigned[unsigned.len() - 4..], h("3E 00 FE 00"));

    let mut c = config::load_card_with(
        &toml(),
        &mut read,
        &RustCrypto,
        rand_chacha::ChaCha20Rng::seed_from_u64(3),
        |cfg, b| {
            let o = cfg.piv.clone().unwrap().options()?;
            Ok(b.piv(
                o.restore_object(&cac::piv::CHUID_TAG, &chuid)
                    .restore_object(&cac::piv::SECURITY_OBJECT_TAG, &so),
            ))
        },
    )
    .unwrap();
    c.power_on();
    run(
        &mut c,
        &[(SELECT, &format!("{APT} 90 00")), (VERIFY_OK, "90 00")],
    );
    assert_eq!(get_data(&mut c, "5FC102"), (chuid.clone(), Status::Success));
    assert_eq!(get_data(&mut c, "5FC106"), (so.clone(), Status::Success));
    // The CHUID's Le=8 probe: a three-byte length now.
    let r = tx(&mut c, "00 CB 3F FF 05 5C 03 5F C1 02 08");
    assert_eq!(&r[..4], &chuid[..4]);
    assert_eq!(&r[..3], h("53 82 05"));

    let (printed, _) = get_data(&mut c, "5FC109");
    let hash = |object: &[u8]| Sha256::digest(cac::piv::object_contents(object).unwrap()).to_vec();
    let covers = |hash: &[u8]| so.windows(32).any(|w| w == hash);
    assert!(covers(&hash(&printed)) && covers(&hash(&chuid)));

    // The card changes Printed Information and generates a key: the
    // Security Object is kept as issued, its hash of 3001 now stale.
    admin(&mut c);
    run(
        &mut c,
        &[("00 DB 3F FF 0B 5C 03 5F C1 09 53 04 01 00 FE 00", "90 00")],
    );
    let r = tx(&mut c, "00 47 00 9E 05 AC 03 80 01 11");
    assert_eq!(&r[..5], h("7F 49 43 86 41"));
    run(&mut c, &[(VERIFY_OK, "90 00")]);
    let (printed, _) = get_data(&mut c, "5FC109");
    assert_eq!(printed, h("53 04 01 00 FE 00"));
    assert!(!covers(&hash(&printed)));
    assert_eq!(get_data(&mut c, "5FC106"), (so.clone(), Status::Success));
    assert_eq!(get_data(&mut c, "5FC102"), (chuid, Status::Success));
}
