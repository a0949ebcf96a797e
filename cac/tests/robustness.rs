//! Robustness of the card as a whole: after any sequence of garbage,
//! mutated real commands (the OpenSC transcript) and power events, every
//! response ends in a status word and fits an extended APDU, and a freshly
//! powered card still answers a well-formed session exactly — SELECT, the
//! FCI through GET RESPONSE, a login and a signature that verifies.
//!
//! The fuzz target `card_session` (fuzz/) explores the same ground with
//! coverage feedback; this runs with every `cargo test`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::OnceLock;

use cac::keys::{load_private_key, RustCrypto};
use cac::{Card, Identity, Pin, PinPolicy};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rsa::traits::PublicKeyParts;

const TRANSCRIPT: &str = include_str!("data/opensc-bind-apdus.txt");

fn commands() -> &'static [Vec<u8>] {
    static C: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    C.get_or_init(|| {
        TRANSCRIPT
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| hex::decode(l.split_whitespace().next()?).ok())
            .collect()
    })
}

fn card() -> Card {
    use certs_fixtures::default_card as d;
    let cert = cac::config::certificate_der(d::ID0_PEM).unwrap();
    let key = load_private_key(&RustCrypto, d::ID0_KEY).unwrap();
    Card::builder(
        PinPolicy::new(Pin::new("12345678").unwrap())
            .with_max_tries(15)
            .unwrap(),
    )
    .identity(Identity::new(cert, key))
    .build(rand_chacha::ChaCha20Rng::seed_from_u64(7))
    .unwrap()
}

#[derive(Clone, Debug)]
enum Step {
    /// Random bytes.
    Garbage(Vec<u8>),
    /// A command of the transcript with one byte changed and maybe cut.
    Mutated {
        index: usize,
        at: usize,
        xor: u8,
        cut: usize,
    },
    /// A command of the transcript as it is.
    Real(usize),
    PowerOff,
    PowerOn,
    Reset,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Step::Garbage),
        4 => (any::<usize>(), any::<usize>(), 1u8..=255, any::<usize>())
            .prop_map(|(index, at, xor, cut)| Step::Mutated { index, at, xor, cut }),
        3 => any::<usize>().prop_map(Step::Real),
        1 => Just(Step::PowerOff),
        1 => Just(Step::PowerOn),
        1 => Just(Step::Reset),
    ]
}

/// A session any host may expect to work on a freshly powered card.
fn well_formed_session(card: &mut Card) {
    assert_eq!(card.power_on(), cac::DEFAULT_ATR);
    assert!(!card.is_verified());
    let select_ccc = hex::decode("00A4040007A000000116DB00").unwrap();
    assert_eq!(card.transmit_vec(&select_ccc), [0x61, 0x0D]);
    let fci = card.transmit_vec(&[0x00, 0xC0, 0x00, 0x00, 0x0D]);
    assert_eq!(fci, hex::decode("6F0B8407A000000116DB00A5009000").unwrap());
    let select_pki = hex::decode("00A4040C07A0000000790100").unwrap();
    assert_eq!(card.transmit_vec(&select_pki), [0x90, 0x00]);
    let verify = hex::decode("00200000083132333435363738").unwrap();
    assert_eq!(card.transmit_vec(&verify), [0x90, 0x00]);
    // A raw RSA signature of a PKCS#1 block, checked with the public key.
    let mut block = vec![0x00, 0x01];
    block.resize(256 - 33, 0xFF);
    block.push(0x00);
    block.extend_from_slice(&[0x5A; 32]);
    let sign = cac::apdu::build_command([0x80, 0x42, 0x00, 0x00], &block, Some(65536));
    let r = card.transmit_vec(&sign);
    assert_eq!(r.len(), 258);
    assert_eq!(r[256..], [0x90, 0x00]);
    let public = public_key();
    let s = rsa::BoxedUint::from_be_slice(&r[..256], public.n_bits_precision()).unwrap();
    let m = rsa::hazmat::rsa_encrypt(public, &s).unwrap();
    let mut back = m.to_be_bytes_trimmed_vartime().to_vec();
    while back.len() < 256 {
        back.insert(0, 0);
    }
    assert_eq!(back, block, "the signature verifies");
}

fn public_key() -> &'static rsa::PublicKey {
    static K: OnceLock<rsa::PublicKey> = OnceLock::new();
    K.get_or_init(|| {
        use rsa::pkcs8::DecodePublicKey;
        let cert = cac::config::certificate_der(certs_fixtures::default_card::ID0_PEM).unwrap();
        let cert = <x509_cert::Certificate as der::Decode>::from_der(&cert).unwrap();
        let spki = der::Encode::to_der(cert.tbs_certificate().subject_public_key_info()).unwrap();
        rsa::PublicKey::from_public_key_der(&spki).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn after_any_garbage_a_fresh_session_works(steps in proptest::collection::vec(step(), 0..60)) {
        let mut card = card();
        card.power_on();
        let all = commands();
        for s in &steps {
            let apdu = match s {
                Step::Garbage(g) => g.clone(),
                Step::Mutated { index, at, xor, cut } => {
                    let mut c = all[index % all.len()].clone();
                    let i = at % c.len();
                    c[i] ^= xor;
                    c.truncate(c.len() - cut % 3);
                    c
                }
                Step::Real(index) => all[index % all.len()].clone(),
                Step::PowerOff => { card.power_off(); continue; }
                Step::PowerOn => { card.power_on(); continue; }
                Step::Reset => { card.reset(); continue; }
            };
            let r = card.transmit_vec(&apdu);
            prop_assert!(r.len() >= 2, "no status word for {:02X?}", apdu);
            prop_assert!(r.len() <= 65536 + 2);
        }
        // Fifteen tries: random bytes cannot block the PIN here.
        prop_assert!(card.pin_tries_left() > 0);
        well_formed_session(&mut card);
    }
}

#[test]
fn the_whole_transcript_then_a_fresh_session() {
    let mut card = card();
    card.power_on();
    for c in commands() {
        let r = card.transmit_vec(c);
        assert!(r.len() >= 2);
    }
    well_formed_session(&mut card);
}
