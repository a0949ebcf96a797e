//! Helpers shared by the benchmarks: cards built from seeded test PKIs,
//! and the APDU sequences clients send.
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use cac::keys::{load_private_key, KeyBackend};
use cac::{Card, Identity, Pin, PinPolicy};
use certs_fixtures::{IdentitySpec, KeyType, PkiBuilder, Role};
use rand_core::SeedableRng;

/// The PIN of every benchmark card.
pub const PIN: &str = "12345678";

/// A card with one identity of `key_type`, keys loaded through `backend`.
pub fn card_with_key(key_type: KeyType, backend: &dyn KeyBackend, seed: u64) -> Card {
    let pki = PkiBuilder::new(seed)
        .identity(IdentitySpec::new(
            Role::Authentication,
            key_type,
            "BENCH.CARD",
        ))
        .build()
        .unwrap();
    let cred = pki.identities()[0].credential();
    let key = load_private_key(backend, cred.key_der()).unwrap();
    let mut card = Card::builder(PinPolicy::new(Pin::new(PIN).unwrap()))
        .identity(Identity::new(cred.cert_der().to_vec(), key))
        .build(rand_chacha::ChaCha20Rng::seed_from_u64(seed))
        .unwrap();
    card.power_on();
    card
}

/// The embedded default card, powered on.
pub fn default_card() -> Card {
    let files = certs_fixtures::default_card::files();
    let mut read = |name: &str| {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.to_vec())
            .ok_or_else(|| name.to_owned())
    };
    let mut card = cac::config::load_card(
        certs_fixtures::default_card::CARD_TOML,
        &mut read,
        &cac::keys::RustCrypto,
        rand_chacha::ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    card.power_on();
    card
}

/// Selects PKI applet 0 and verifies the PIN.
pub fn login(card: &mut Card) {
    let r = card.transmit_vec(&[
        0x00, 0xA4, 0x04, 0x0C, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00,
    ]);
    assert_eq!(r, [0x90, 0x00]);
    let mut verify = vec![0x00, 0x20, 0x00, 0x00, 0x08];
    verify.extend_from_slice(PIN.as_bytes());
    assert_eq!(card.transmit_vec(&verify), [0x90, 0x00]);
}

/// The SIGN APDUs OpenSC sends for a `len`-byte block: 240-byte chunks
/// with P1=80, the rest with P1=00, T=1 style (Le on the last).
pub fn sign_apdus(block: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunks = block.chunks(240).peekable();
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let mut apdu = vec![
            0x00,
            0x42,
            if last { 0x00 } else { 0x80 },
            0x00,
            chunk.len() as u8,
        ];
        apdu.extend_from_slice(chunk);
        if last {
            apdu.push(0x00);
        }
        out.push(apdu);
    }
    out
}

/// A PKCS#1 v1.5 signature block of `len` bytes (content irrelevant, < n).
pub fn signature_block(len: usize) -> Vec<u8> {
    let mut block = vec![0x00, 0x01];
    block.resize(len - 20, 0xFF);
    block.push(0x00);
    block.resize(len, 0x42);
    block
}

/// Runs one SIGN through the card and returns the response length.
pub fn sign_once(card: &mut Card, apdus: &[Vec<u8>], response: &mut Vec<u8>) -> usize {
    for apdu in apdus {
        response.clear();
        card.transmit(apdu, response);
    }
    assert_eq!(&response[response.len() - 2..], [0x90, 0x00]);
    response.len()
}
