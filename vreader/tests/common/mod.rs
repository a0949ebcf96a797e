//! Cheap cards for reader tests: the default card's identities with keys
//! loaded once and shared.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use cac::keys::{load_private_key, KeyHandle, RustCrypto};
use cac::{Card, Identity, Pin, PinPolicy};
use rand_core::SeedableRng;

struct Parts {
    cert: Vec<u8>,
    key: Arc<dyn KeyHandle>,
}

fn parts() -> &'static Parts {
    static P: OnceLock<Parts> = OnceLock::new();
    P.get_or_init(|| Parts {
        cert: cac::config::certificate_der(certs_fixtures::default_card::ID0_PEM).unwrap(),
        key: load_private_key(&RustCrypto, certs_fixtures::default_card::ID0_KEY).unwrap(),
    })
}

/// A card whose card ID encodes `n` (so cards are told apart).
pub(crate) fn card(n: u32) -> Card {
    let p = parts();
    let mut id = [0u8; 8];
    id[4..].copy_from_slice(&n.to_be_bytes());
    Card::builder(PinPolicy::new(Pin::new("12345678").unwrap()))
        .identity(Identity::new(p.cert.clone(), p.key.clone()))
        .card_id(&id)
        .build(rand_chacha::ChaCha20Rng::seed_from_u64(u64::from(n)))
        .unwrap()
}

/// SELECT CCC with Le: answered by the FCI and 90 00.
pub(crate) const SELECT_CCC: [u8; 13] = [
    0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00, 0x00,
];
/// Its exact answer.
pub(crate) const SELECT_CCC_RESPONSE: [u8; 15] = [
    0x6F, 0x0B, 0x84, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00, 0xA5, 0x00, 0x90, 0x00,
];
