//! RSA SIGN through the card (INS 42, chained as OpenSC sends it), per key
//! backend and key size.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use cac::keys::KeyBackend;
use certs_fixtures::KeyType;
use criterion::{criterion_group, criterion_main, Criterion};
use vcac_benches::{card_with_key, login, sign_apdus, sign_once, signature_block};

fn backends() -> Vec<Box<dyn KeyBackend>> {
    vec![
        Box::new(cac::keys::RustCrypto),
        #[cfg(feature = "openssl")]
        Box::new(cac::keys::openssl::OpenSsl),
    ]
}

fn sign(c: &mut Criterion) {
    let mut group = c.benchmark_group("sign");
    group.sample_size(20);
    for (ty, bits) in [
        (KeyType::Rsa2048, 2048),
        (KeyType::Rsa3072, 3072),
        (KeyType::Rsa4096, 4096),
    ] {
        for backend in backends() {
            let mut card = card_with_key(ty, backend.as_ref(), 11);
            login(&mut card);
            let apdus = sign_apdus(&signature_block(bits / 8));
            let mut response = Vec::with_capacity(600);
            group.bench_function(format!("{}/rsa{bits}", backend.name()), |b| {
                b.iter(|| sign_once(&mut card, &apdus, &mut response))
            });
        }
    }
    group.finish();
}

/// ECDSA P-256 through the PIV applet: GENERAL AUTHENTICATE on 9E (no
/// PIN), as OpenSC sends it for a 32-byte hash.
fn piv_ecdsa(c: &mut Criterion) {
    use cac::{Card, Identity, Pin, PinPolicy};
    use certs_fixtures::{IdentitySpec, PkiBuilder, Role};
    use rand_chacha::rand_core::SeedableRng;
    let pki = PkiBuilder::new(12)
        .identity(IdentitySpec::new(
            Role::CardAuthentication,
            KeyType::P256,
            "BENCH.PIV",
        ))
        .build()
        .unwrap();
    let cred = pki.identities()[0].credential();
    let key = cac::keys::load_private_key(&cac::keys::RustCrypto, cred.key_der()).unwrap();
    let mut card = Card::builder(PinPolicy::new(Pin::new("123456").unwrap()))
        .profile(cac::piv::Profile::Piv)
        .identity(Identity::new(cred.cert_der().to_vec(), key).piv_slot(0x9E))
        .build(rand_chacha::ChaCha20Rng::seed_from_u64(12))
        .unwrap();
    card.power_on();
    let select = [
        0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00,
    ];
    assert_eq!(card.transmit_vec(&select).last(), Some(&0x00));
    let mut ga = vec![
        0x00, 0x87, 0x11, 0x9E, 0x26, 0x7C, 0x24, 0x82, 0x00, 0x81, 0x20,
    ];
    ga.extend_from_slice(&[0x5A; 32]);
    ga.push(0x00);
    let mut response = Vec::with_capacity(128);
    let mut group = c.benchmark_group("sign");
    group.sample_size(50);
    group.bench_function("rustcrypto/piv-ecdsa-p256", |b| {
        b.iter(|| {
            response.clear();
            card.transmit(&ga, &mut response);
            assert_eq!(response[response.len() - 2..], [0x90, 0x00]);
        })
    });
    group.finish();
}

criterion_group!(benches, sign, piv_ecdsa);
criterion_main!(benches);
