//! Security properties of the card, checked against random command
//! sequences: no private-key operation without a verified PIN, login
//! cleared by power cycles, no private key bytes in any response, and
//! RSA always blinded with the card's RNG.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cac::keys::{load_private_key, RustCrypto};
use cac::{Card, Identity, Pin, PinPolicy, Status};
use proptest::prelude::*;
use rand_chacha::rand_core::{Infallible, SeedableRng, TryCryptoRng, TryRng};

const PIN: &[u8; 8] = b"12345678";

/// An RNG that counts the bytes drawn from it.
struct CountingRng {
    inner: rand_chacha::ChaCha20Rng,
    drawn: Arc<AtomicUsize>,
}

impl TryRng for CountingRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.drawn.fetch_add(4, Ordering::SeqCst);
        self.inner.try_next_u32()
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.drawn.fetch_add(8, Ordering::SeqCst);
        self.inner.try_next_u64()
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        self.drawn.fetch_add(dest.len(), Ordering::SeqCst);
        self.inner.try_fill_bytes(dest)
    }
}
impl TryCryptoRng for CountingRng {}

fn card(max_tries: u8) -> (Card, Arc<AtomicUsize>) {
    let drawn = Arc::new(AtomicUsize::new(0));
    let mut builder = Card::builder(
        PinPolicy::new(Pin::new("12345678").unwrap())
            .with_max_tries(max_tries)
            .unwrap(),
    );
    for (cert, key) in [
        (
            certs_fixtures::default_card::ID0_PEM,
            certs_fixtures::default_card::ID0_KEY,
        ),
        (
            certs_fixtures::default_card::ID1_PEM,
            certs_fixtures::default_card::ID1_KEY,
        ),
    ] {
        let cert = cac::config::certificate_der(cert).unwrap();
        builder = builder.identity(Identity::new(
            cert,
            load_private_key(&RustCrypto, key).unwrap(),
        ));
    }
    let card = builder
        .build(CountingRng {
            inner: rand_chacha::ChaCha20Rng::seed_from_u64(9),
            drawn: Arc::clone(&drawn),
        })
        .unwrap();
    (card, drawn)
}

fn block() -> Vec<u8> {
    let mut b = vec![0x00, 0x01];
    b.resize(256 - 20, 0xFF);
    b.push(0);
    b.resize(256, 0x33);
    b
}

#[derive(Clone, Debug)]
enum Cmd {
    SelectPki(u8),
    SelectCcc,
    SelectUnknown,
    VerifyRight,
    VerifyWrong,
    VerifyStatus,
    /// Whole SIGN in one extended APDU.
    SignWhole,
    /// First 240 bytes (P1=80).
    SignFirst,
    /// Last 16 bytes (P1=00).
    SignLast,
    ChangePinWrong,
    GetResponse,
    PowerCycle,
    Reset,
    Garbage(Vec<u8>),
    OtherChannel(u8),
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        2 => (0u8..3).prop_map(Cmd::SelectPki),
        1 => Just(Cmd::SelectCcc),
        1 => Just(Cmd::SelectUnknown),
        2 => Just(Cmd::VerifyRight),
        2 => Just(Cmd::VerifyWrong),
        1 => Just(Cmd::VerifyStatus),
        3 => Just(Cmd::SignWhole),
        2 => Just(Cmd::SignFirst),
        2 => Just(Cmd::SignLast),
        1 => Just(Cmd::ChangePinWrong),
        1 => Just(Cmd::GetResponse),
        1 => Just(Cmd::PowerCycle),
        1 => Just(Cmd::Reset),
        2 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Cmd::Garbage),
        1 => (0u8..4).prop_map(Cmd::OtherChannel),
    ]
}

fn apdu(header: [u8; 4], data: &[u8], le: Option<usize>) -> Vec<u8> {
    cac::apdu::build_command(header, data, le)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// No command sequence gets a private-key result without a VERIFY with
    /// the right PIN since the last power cycle, reset or failed VERIFY.
    #[test]
    fn no_private_key_operation_without_a_verified_pin(cmds in proptest::collection::vec(cmd(), 1..40)) {
        let (mut card, _) = card(15);
        card.power_on();
        let b = block();
        let mut verified = false;
        for c in &cmds {
            let command = match c {
                Cmd::SelectPki(i) => apdu([0, 0xA4, 4, 0], &cac::aid::pki(*i), None),
                Cmd::SelectCcc => apdu([0, 0xA4, 4, 0], &cac::aid::CCC, Some(256)),
                Cmd::SelectUnknown => apdu([0, 0xA4, 4, 0], &[0xA0, 0, 0, 3, 8], None),
                Cmd::VerifyRight => apdu([0, 0x20, 0, 0], PIN, None),
                Cmd::VerifyWrong => apdu([0, 0x20, 0, 0], b"87654321", None),
                Cmd::VerifyStatus => apdu([0, 0x20, 0, 0], &[], None),
                Cmd::SignWhole => apdu([0x80, 0x42, 0, 0], &b, Some(256)),
                Cmd::SignFirst => apdu([0, 0x42, 0x80, 0], &b[..240], None),
                Cmd::SignLast => apdu([0, 0x42, 0, 0], &b[240..], None),
                Cmd::ChangePinWrong => apdu([0, 0x24, 0, 0], b"00000000111111\xFF\xFF", None),
                Cmd::GetResponse => apdu([0, 0xC0, 0, 0], &[], Some(256)),
                Cmd::PowerCycle => {
                    card.power_off();
                    card.power_on();
                    verified = false;
                    continue;
                }
                Cmd::Reset => {
                    card.reset();
                    verified = false;
                    continue;
                }
                Cmd::Garbage(g) => g.clone(),
                Cmd::OtherChannel(ch) => apdu([*ch, 0x42, 0, 0], &b, Some(256)),
            };
            let r = card.transmit_vec(&command);
            let sw = Status::from_sw(u16::from_be_bytes([r[r.len() - 2], r[r.len() - 1]]));
            match c {
                Cmd::VerifyRight if sw == Status::Success => verified = true,
                Cmd::VerifyWrong | Cmd::ChangePinWrong => verified = false,
                _ => {}
            }
            let is_crypt = command.len() > 4 && command[1] == 0x42 && command[2] == 0x00;
            let produced_result = r.len() > 2 || matches!(sw, Status::BytesRemaining(_));
            if is_crypt && produced_result {
                prop_assert!(verified, "private-key result without a verified PIN: {c:?} → {:02X?}", &r[r.len()-2..]);
            }
            prop_assert_eq!(card.is_verified(), verified, "after {:?}", c);
        }
    }
}

#[test]
fn no_response_contains_private_key_material() {
    // Secret values of the keys on the card (primes, private exponent).
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PrivateKeyParts;
    let mut secrets = Vec::new();
    for pem in [
        certs_fixtures::default_card::ID0_KEY,
        certs_fixtures::default_card::ID1_KEY,
    ] {
        let text = std::str::from_utf8(pem).unwrap();
        let key = rsa::PrivateKey::from_pkcs8_pem(text).unwrap();
        secrets.push(key.d().to_be_bytes_trimmed_vartime().to_vec());
        for p in key.primes() {
            secrets.push(p.to_be_bytes_trimmed_vartime().to_vec());
        }
    }
    let (mut card, _) = card(15);
    card.power_on();
    let mut transcript = Vec::new();
    let mut run = |c: &mut Card, a: Vec<u8>| transcript.extend(c.transmit_vec(&a));
    // Everything readable, every GET ACR form, properties, every applet.
    for aid in [
        &cac::aid::CCC[..],
        &cac::aid::ACA[..],
        &cac::aid::pki(0),
        &cac::aid::pki(1),
        &cac::aid::CARD_MANAGER,
        &cac::aid::PNP,
    ] {
        run(&mut card, apdu([0, 0xA4, 4, 0], aid, Some(256)));
        for p1 in [0x01u8, 0x40] {
            run(&mut card, apdu([0, 0x56, p1, 0], &[], Some(256)));
        }
        for p1 in [0x00u8, 0x10, 0x20, 0x21, 0x40, 0x50, 0x60, 0x61] {
            run(&mut card, apdu([0, 0x4C, p1, 0], &[], Some(256)));
        }
        for kind in [1u8, 2] {
            let mut off = 0u16;
            while off < 3000 {
                let [hi, lo] = off.to_be_bytes();
                run(&mut card, apdu([0, 0x52, hi, lo], &[kind, 0xFF], Some(256)));
                off += 0xFF;
            }
        }
        for (p1, p2) in [(0x9F, 0x7F), (0x00, 0x66), (0x7F, 0x68)] {
            run(&mut card, apdu([0, 0xCA, p1, p2], &[], Some(256)));
        }
    }
    // And signatures / decryptions after login.
    run(&mut card, apdu([0, 0xA4, 4, 0x0C], &cac::aid::pki(0), None));
    run(&mut card, apdu([0, 0x20, 0, 0], PIN, None));
    for i in 0..5u8 {
        let mut b = block();
        b[100] = i;
        run(&mut card, apdu([0x80, 0x42, 0, 0], &b, Some(256)));
    }
    assert!(
        transcript.len() > 4000,
        "{} bytes observed",
        transcript.len()
    );
    for s in &secrets {
        for window in s.chunks(16).filter(|w| w.len() == 16) {
            assert!(
                !transcript.windows(16).any(|t| t == window),
                "a 16-byte run of private key material appeared in a response"
            );
        }
    }
}

#[test]
fn every_rsa_operation_draws_fresh_blinding_randomness() {
    let (mut card, drawn) = card(3);
    card.power_on();
    assert_eq!(
        card.transmit_vec(&apdu([0, 0xA4, 4, 0x0C], &cac::aid::pki(0), None)),
        [0x90, 0x00]
    );
    assert_eq!(
        card.transmit_vec(&apdu([0, 0x20, 0, 0], PIN, None)),
        [0x90, 0x00]
    );
    let mut last = drawn.load(Ordering::SeqCst);
    let mut signatures = Vec::new();
    for _ in 0..4 {
        let r = card.transmit_vec(&apdu([0x80, 0x42, 0, 0], &block(), Some(256)));
        assert_eq!(&r[256..], [0x90, 0x00]);
        let now = drawn.load(Ordering::SeqCst);
        // A blinding factor below a 2048-bit modulus: at least 256 bytes.
        assert!(
            now - last >= 256,
            "only {} random bytes drawn for a signature",
            now - last
        );
        last = now;
        signatures.push(r);
    }
    // Blinding changes nothing in the result.
    assert!(signatures.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn login_is_cleared_by_power_off_reset_and_removal() {
    let (mut card, _) = card(3);
    for clear in [Card::power_off as fn(&mut Card), |c: &mut Card| {
        c.reset();
    }] {
        card.power_on();
        assert_eq!(
            card.transmit_vec(&apdu([0, 0x20, 0, 0], PIN, None)),
            [0x90, 0x00]
        );
        assert!(card.is_verified());
        clear(&mut card);
        card.power_on();
        assert!(!card.is_verified());
        assert_eq!(
            card.transmit_vec(&apdu([0, 0x20, 0, 0], &[], None)),
            [0x63, 0xC3]
        );
    }
    // Removal through a reader powers the card off: see vreader's
    // `power_off_logs_the_card_out`.
}
