//! RSA SIGN through the card (INS 42, chained as OpenSC sends it), per key
//! backend and key size; and the raw RSA-2048 private operation of the
//! RustCrypto backend (constant-time Montgomery CRT) beside `rsa` 0.10's own
//! (`rsa::hazmat::rsa_decrypt_and_check`, blinded and fault-checked like
//! ours), with their ratio printed from the same run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::time::{Duration, Instant};

use cac::keys::{load_private_key, KeyBackend};
use certs_fixtures::KeyType;
use criterion::{criterion_group, criterion_main, Criterion};
use rand_core::SeedableRng;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
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

/// The default card's id0 key, as our handle and as an `rsa::PrivateKey`.
fn rsa2048() -> (std::sync::Arc<dyn cac::keys::KeyHandle>, rsa::PrivateKey) {
    let pem = certs_fixtures::default_card::ID0_KEY;
    let ours = load_private_key(&cac::keys::RustCrypto, pem).unwrap();
    let theirs = rsa::PrivateKey::from_pkcs8_pem(std::str::from_utf8(pem).unwrap()).unwrap();
    (ours, theirs)
}

/// Mean time of one call of `f` over `calls` calls.
fn per_call(calls: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    start.elapsed() / calls
}

fn raw_private_op(c: &mut Criterion) {
    let (ours, theirs) = rsa2048();
    let block = signature_block(256);
    let c_uint = rsa::BoxedUint::from_be_slice(&block, theirs.n_bits_precision()).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
    let mut out = Vec::with_capacity(256);
    let mut ours_op = |rng: &mut rand_chacha::ChaCha20Rng| {
        out.clear();
        ours.private_op(&block, rng, &mut out).unwrap();
    };
    let theirs_op = |rng: &mut rand_chacha::ChaCha20Rng| {
        rsa::hazmat::rsa_decrypt_and_check(&theirs, Some(rng), &c_uint).unwrap()
    };

    // Interleaved rounds, so that both see the same machine load.
    let (mut t_ours, mut t_theirs) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        t_ours.push(per_call(10, || ours_op(&mut rng)));
        t_theirs.push(per_call(10, || {
            theirs_op(&mut rng);
        }));
    }
    t_ours.sort();
    t_theirs.sort();
    let (a, b) = (t_ours[7], t_theirs[7]);
    println!(
        "raw RSA-2048 private operation, median of 15 rounds of 10: \
         ours (constant-time Montgomery CRT) {:.3} ms, rsa 0.10 rsa_decrypt_and_check {:.3} ms, \
         rsa/ours {:.2}x",
        a.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        b.as_secs_f64() / a.as_secs_f64()
    );

    let mut group = c.benchmark_group("raw_private_op");
    group.sample_size(20);
    group.bench_function("ours/rsa2048", |bench| bench.iter(|| ours_op(&mut rng)));
    group.bench_function("rsa-0.10/rsa2048", |bench| {
        bench.iter(|| theirs_op(&mut rng))
    });
    group.finish();
}

criterion_group!(benches, raw_private_op, sign, piv_ecdsa);
criterion_main!(benches);
