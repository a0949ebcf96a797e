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

criterion_group!(benches, sign);
criterion_main!(benches);
