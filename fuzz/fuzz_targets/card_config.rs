//! Loading a card directory: `card.toml` and the certificate and key
//! files it names (PEM or DER certificates; PKCS#8 or PKCS#1 keys, PEM or
//! DER), through `config::load_card`, plus `load_private_key` with the
//! real RustCrypto backend, `certificate_der` and `Atr::new` on every
//! file.
//!
//! Input: records (see `vcac_fuzz::records`); the first is `card.toml`,
//! then `id0.pem`, `id0.key`, `id1.pem`, `id1.key`, … in that order.
//!
//! Nothing panics; a key RustCrypto accepts performs its private-key
//! operation; a card that loads answers a SELECT with a status word.
#![no_main]

use cac::keys::{insecure::InsecureTestBackend, load_private_key, KeyAlgorithm, RustCrypto};
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;
use vcac_fuzz::{records, Record, SELECT_CCC};

/// `idN.pem` is file `2N`, `idN.key` file `2N + 1`.
fn file_index(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("id")?;
    let (n, kind) = rest.split_once('.')?;
    let n: usize = n.parse().ok()?;
    let k = match kind {
        "pem" | "der" | "crt" => 0,
        "key" => 1,
        _ => return None,
    };
    n.checked_mul(2)?.checked_add(k)
}

fuzz_target!(|data: &[u8]| {
    let mut sections = records(data).filter_map(|r| match r {
        Record::Data(d) => Some(d),
        Record::Control(_) => None,
    });
    let Some(toml) = sections.next() else {
        return;
    };
    let toml = String::from_utf8_lossy(toml);
    let files: Vec<&[u8]> = sections.collect();

    for file in &files {
        let _ = cac::Atr::new(file);
        let _ = cac::config::certificate_der(file);
        let _ = load_private_key(&InsecureTestBackend, file);
        if let Ok(key) = load_private_key(&RustCrypto, file) {
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
            let input = match key.algorithm() {
                KeyAlgorithm::Rsa { .. } => {
                    let mut block = vec![0u8; key.algorithm().block_len()];
                    if let Some(last) = block.last_mut() {
                        *last = 2;
                    }
                    block
                }
                _ => vec![0x5A; 32],
            };
            let mut out = Vec::new();
            key.private_op(&input, &mut rng, &mut out)
                .expect("a loaded key works");
            assert!(!out.is_empty());
        }
    }

    let _ = cac::config::CardConfig::parse(&toml);
    let mut read = |name: &str| {
        file_index(name)
            .and_then(|i| files.get(i))
            .map(|f| f.to_vec())
            .ok_or_else(|| format!("{name}: no such file"))
    };
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(0);
    if let Ok(mut card) = cac::config::load_card(&toml, &mut read, &InsecureTestBackend, rng) {
        card.power_on();
        let r = card.transmit_vec(&SELECT_CCC);
        assert!(r.len() >= 2);
    }
});
