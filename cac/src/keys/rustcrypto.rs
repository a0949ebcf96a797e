//! The default key backend: RustCrypto `rsa` and `p256`.

mod ec;
mod montgomery;

use std::sync::Arc;

use crypto_bigint::BoxedUint;
use num_bigint_dig::{BigUint, ModInverse};

use pkcs8::DecodePrivateKey;
use rand_core::CryptoRng;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use spki::EncodePublicKey;
use zeroize::Zeroizing;

use super::{KeyAlgorithm, KeyBackend, KeyError, KeyHandle};

const RSA_OID: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_OID: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// RustCrypto backend: RSA 1024–4096 keys parsed and validated by `rsa`
/// (the raw operation always blinded with the caller's RNG, CRT values
/// precomputed once at load, the result re-encrypted and compared as a
/// fault check) and ECDSA P-256 through `p256`.
///
/// The two secret CRT exponentiations run on this crate's constant-time
/// Montgomery code (fixed window, whole-table reads); `rsa`'s own blinded
/// private operation (`rsa::hazmat::rsa_decrypt_and_check`) is measured
/// against it by `cargo bench -p vcac-benches --bench sign` and serves only
/// keys the Montgomery code does not cover.
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCrypto;

impl KeyBackend for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn load_pkcs8_der(&self, der: &[u8]) -> Result<Arc<dyn KeyHandle>, KeyError> {
        let info = pkcs8::PrivateKeyInfoRef::try_from(der)
            .map_err(|e| KeyError::Parse(format!("PKCS#8 PrivateKeyInfo: {e}")))?;
        if info.algorithm.oid == RSA_OID {
            Ok(Arc::new(RsaHandle::from_pkcs8(der)?))
        } else if info.algorithm.oid == EC_OID && ec::is_p384(&info) {
            Ok(Arc::new(ec::P384Handle::from_pkcs8(der)?))
        } else if info.algorithm.oid == EC_OID {
            Ok(Arc::new(ec::P256Handle::from_pkcs8(der)?))
        } else {
            Err(KeyError::Unsupported(format!(
                "key algorithm {} (supported: rsaEncryption, id-ecPublicKey on P-256 or P-384)",
                info.algorithm.oid
            )))
        }
    }

    fn generate(
        &self,
        algorithm: KeyAlgorithm,
        rng: &mut dyn CryptoRng,
    ) -> Result<super::GeneratedKey, KeyError> {
        ec::generate(algorithm, rng)
    }
}

/// `x` as a `num-bigint-dig` integer; the big-endian copy is wiped.
fn to_big(x: &BoxedUint) -> BigUint {
    let bytes = Zeroizing::new(x.to_be_bytes());
    BigUint::from_bytes_be(&bytes)
}

/// The key in the form the constant-time path works on.
struct Crt {
    /// The two exponentiations, `x^dp mod p` and `x^dq mod q`.
    exp: Box<dyn montgomery::CrtExp>,
    p: Zeroizing<BigUint>,
    q: Zeroizing<BigUint>,
    /// q⁻¹ mod p.
    qinv: Zeroizing<BigUint>,
    /// `x^e mod n` in Montgomery form, for blinding and the fault check.
    public: Box<dyn montgomery::PublicExp>,
}

/// An RSA private key, CRT-ready.
struct RsaHandle {
    key: rsa::PrivateKey,
    /// The modulus, for the range check and the blinding arithmetic.
    n: BigUint,
    /// The constant-time CRT path, for two primes of a supported size
    /// (always, for keys this backend makes or loads from standard tools);
    /// otherwise `rsa::hazmat::rsa_decrypt_and_check`.
    crt: Option<Crt>,
    spki: Vec<u8>,
    bits: u16,
    len: usize,
}

impl core::fmt::Debug for RsaHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RsaHandle")
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl RsaHandle {
    fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let mut key = rsa::PrivateKey::from_pkcs8_der(der)
            .map_err(|e| KeyError::Parse(format!("RSA private key: {e}")))?;
        let n = to_big(key.n());
        let bits = n.bits();
        if !matches!(bits, 1024 | 2048 | 3072 | 4096) {
            return Err(KeyError::Unsupported(format!(
                "RSA-{bits} (supported: 1024, 2048, 3072, 4096)"
            )));
        }
        if key.primes().len() != 2 {
            return Err(KeyError::Unsupported("multi-prime RSA".into()));
        }
        key.validate()
            .map_err(|e| KeyError::Parse(format!("inconsistent RSA key: {e}")))?;
        key.precompute()
            .map_err(|e| KeyError::Backend(format!("CRT precomputation: {e}")))?;
        let spki = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| KeyError::Backend(format!("SPKI encoding: {e}")))?
            .into_vec();
        let bits = u16::try_from(bits).map_err(|_| KeyError::Unsupported("RSA size".into()))?;
        let crt = Self::crt(&key, &n);
        Ok(RsaHandle {
            len: key.size(),
            key,
            n,
            crt,
            spki,
            bits,
        })
    }

    /// The constant-time CRT form of `key`, if the Montgomery code covers it.
    fn crt(key: &rsa::PrivateKey, n: &BigUint) -> Option<Crt> {
        let (p, q) = match key.primes() {
            [p, q] => (Zeroizing::new(to_big(p)), Zeroizing::new(to_big(q))),
            _ => return None,
        };
        let dp = Zeroizing::new(to_big(key.dp()?));
        let dq = Zeroizing::new(to_big(key.dq()?));
        let exp = montgomery::crt_exp(&p, &q, &dp, &dq)?;
        let qinv = Zeroizing::new(BigUint::clone(&q).mod_inverse(&*p)?.to_biguint()?);
        let public = montgomery::public_exp(n, &to_big(key.e()))?;
        Some(Crt {
            exp,
            p,
            q,
            qinv,
            public,
        })
    }
}

/// A uniformly random `r` with `0 < r < n`, by rejection sampling.
fn random_below(rng: &mut dyn CryptoRng, n: &BigUint) -> Zeroizing<BigUint> {
    let bits = n.bits();
    let mut bytes = Zeroizing::new(vec![0u8; bits.div_ceil(8)]);
    // The bits of the top byte above n's top bit are cleared.
    let top_mask = match bits % 8 {
        0 => 0xFF,
        b => (1u8 << b) - 1,
    };
    loop {
        rng.fill_bytes(&mut bytes);
        if let Some(top) = bytes.first_mut() {
            *top &= top_mask;
        }
        let r = Zeroizing::new(BigUint::from_bytes_be(&bytes));
        if *r < *n && *r > BigUint::from(0u8) {
            return r;
        }
    }
}

impl Crt {
    /// `c^d mod n` as `rsa::hazmat::rsa_decrypt_and_check` computes it —
    /// blinded by a fresh r (c·r^e in, ·r⁻¹ out), CRT, the result
    /// re-encrypted and compared with `c` — with the two secret
    /// exponentiations in constant time. `c < n` is checked by the caller.
    fn decrypt_and_check(
        &self,
        n: &BigUint,
        rng: &mut dyn CryptoRng,
        c: &BigUint,
    ) -> Result<Zeroizing<BigUint>, KeyError> {
        let (p, q) = (&*self.p, &*self.q);
        // Blinding: a random unit r mod n.
        let (r, r_inv) = loop {
            let r = random_below(rng, n);
            if let Some(inv) = BigUint::clone(&r)
                .mod_inverse(n)
                .and_then(|i| i.to_biguint())
            {
                break (r, Zeroizing::new(inv));
            }
        };
        let blinded = Zeroizing::new((c * &*Zeroizing::new(self.public.pow_e(&r))) % n);
        drop(r);
        // CRT: m1 = b^dp mod p, m2 = b^dq mod q, m = m2 + q·(qinv·(m1 − m2) mod p).
        let m1 = Zeroizing::new(self.exp.exp_p(&blinded));
        let m2 = Zeroizing::new(self.exp.exp_q(&blinded));
        let m2_mod_p = Zeroizing::new(&*m2 % p);
        let diff = Zeroizing::new(if *m1 >= *m2_mod_p {
            &*m1 - &*m2_mod_p
        } else {
            &*m1 + p - &*m2_mod_p
        });
        let h = Zeroizing::new((&*diff * &*self.qinv) % p);
        let m_blinded = Zeroizing::new(&*m2 + &*h * q);
        let m = Zeroizing::new((&*m_blinded * &*r_inv) % n);
        // Fault check: a wrong CRT half would leak a factor of n.
        if self.public.pow_e(&m) != *c {
            return Err(KeyError::Backend(
                "RSA fault check failed: the result does not re-encrypt to the input".into(),
            ));
        }
        Ok(m)
    }
}

impl RsaHandle {
    /// The same operation through `rsa::hazmat::rsa_decrypt_and_check`
    /// (blinded with `rng`, fault-checked), as big-endian bytes.
    fn rsa_crate_decrypt(
        &self,
        rng: &mut dyn CryptoRng,
        input: &[u8],
    ) -> Result<Zeroizing<Box<[u8]>>, KeyError> {
        let c = BoxedUint::from_be_slice(input, self.key.n().bits_precision())
            .map_err(|_| KeyError::InvalidInput)?;
        let m = Zeroizing::new(
            rsa::hazmat::rsa_decrypt_and_check(&self.key, Some(rng), &c)
                .map_err(|e| KeyError::Backend(e.to_string()))?,
        );
        Ok(Zeroizing::new(m.to_be_bytes_trimmed_vartime()))
    }
}

impl KeyHandle for RsaHandle {
    fn algorithm(&self) -> KeyAlgorithm {
        KeyAlgorithm::Rsa { bits: self.bits }
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn private_op(
        &self,
        input: &[u8],
        rng: &mut dyn CryptoRng,
        out: &mut Vec<u8>,
    ) -> Result<(), KeyError> {
        if input.len() != self.len {
            return Err(KeyError::InvalidInput);
        }
        let c = BigUint::from_bytes_be(input);
        if c >= self.n {
            return Err(KeyError::InvalidInput);
        }
        let bytes = match &self.crt {
            Some(crt) => Zeroizing::new(crt.decrypt_and_check(&self.n, rng, &c)?.to_bytes_be()),
            None => Zeroizing::new(self.rsa_crate_decrypt(rng, input)?.to_vec()),
        };
        super::push_left_padded(out, &bytes, self.len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::load_private_key;
    use rand_chacha::rand_core::{Rng, SeedableRng};

    fn rng() -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(7)
    }

    /// `x` as a big-endian block of `len` bytes.
    fn padded(x: &[u8], len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len.saturating_sub(x.len())];
        v.extend_from_slice(x);
        v
    }

    #[test]
    fn raw_rsa_round_trips_through_the_public_key() {
        let key = load_private_key(&RustCrypto, certs_fixtures::default_card::ID0_KEY).unwrap();
        let public = rsa::PublicKey::try_from(
            spki::SubjectPublicKeyInfoRef::try_from(key.public_key_der()).unwrap(),
        )
        .unwrap();
        let mut block = vec![0u8; 256];
        block[0] = 0x00;
        block[1] = 0x01;
        block[2..].fill(0x5A);
        let mut sig = Vec::new();
        key.private_op(&block, &mut rng(), &mut sig).unwrap();
        assert_eq!(sig.len(), 256);
        let s = BoxedUint::from_be_slice(&sig, public.n_bits_precision()).unwrap();
        let back = rsa::hazmat::rsa_encrypt(&public, &s).unwrap();
        assert_eq!(padded(&back.to_be_bytes_trimmed_vartime(), 256), block);
        assert_eq!(public.size(), 256);
    }

    #[test]
    fn blinding_does_not_change_the_result() {
        let key = load_private_key(&RustCrypto, certs_fixtures::default_card::ID1_KEY).unwrap();
        let block = [0x11u8; 256];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        key.private_op(
            &block,
            &mut rand_chacha::ChaCha20Rng::seed_from_u64(1),
            &mut a,
        )
        .unwrap();
        key.private_op(
            &block,
            &mut rand_chacha::ChaCha20Rng::seed_from_u64(2),
            &mut b,
        )
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_wrong_lengths_and_values_above_the_modulus() {
        let key = load_private_key(&RustCrypto, certs_fixtures::default_card::ID2_KEY).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            key.private_op(&[0; 255], &mut rng(), &mut out),
            Err(KeyError::InvalidInput)
        );
        assert_eq!(
            key.private_op(&[0xFF; 256], &mut rng(), &mut out),
            Err(KeyError::InvalidInput)
        );
        assert!(out.is_empty());
    }

    /// Loads `key` through the backend, as the card does.
    fn handle(key: &rsa::PrivateKey) -> RsaHandle {
        use pkcs8::EncodePrivateKey;
        RsaHandle::from_pkcs8(key.to_pkcs8_der().unwrap().as_bytes()).unwrap()
    }

    /// `c^d mod n` by `num-bigint-dig`'s plain `modpow`: a third,
    /// independent computation.
    fn reference(key: &rsa::PrivateKey, block: &[u8]) -> Vec<u8> {
        let m = BigUint::from_bytes_be(block).modpow(&to_big(key.d()), &to_big(key.n()));
        padded(&m.to_bytes_be(), key.size())
    }

    #[test]
    fn constant_time_crt_matches_the_rsa_crate_for_every_size() {
        let mut r = rng();
        let mut keys = vec![
            rsa::PrivateKey::new(&mut r, 1024).unwrap(),
            rsa::PrivateKey::new(&mut r, 3072).unwrap(),
        ];
        let der = crate::keys::decode_pem_or_der(certs_fixtures::default_card::ID0_KEY)
            .unwrap()
            .1;
        keys.push(rsa::PrivateKey::from_pkcs8_der(&der).unwrap());
        for key in &keys {
            let h = handle(key);
            assert!(h.crt.is_some(), "RSA-{}: fast path", h.bits);
            // The same key on `rsa::hazmat::rsa_decrypt_and_check`.
            let mut slow = handle(key);
            slow.crt = None;
            for i in 0..4u8 {
                let mut block = vec![0u8; h.len];
                r.fill_bytes(&mut block);
                block[0] = i; // below n: n's top byte is at least 0x80
                let (mut fast_out, mut slow_out) = (Vec::new(), Vec::new());
                h.private_op(&block, &mut r, &mut fast_out).unwrap();
                slow.private_op(&block, &mut r, &mut slow_out).unwrap();
                assert_eq!(fast_out, slow_out, "RSA-{} block {i}", h.bits);
                assert_eq!(fast_out, reference(key, &block), "RSA-{} block {i}", h.bits);
            }
            // Edge inputs: 0, 1 and n − 1.
            let n_minus_1 = padded(&(&h.n - BigUint::from(1u8)).to_bytes_be(), h.len);
            let mut one = vec![0u8; h.len];
            *one.last_mut().unwrap() = 1;
            for block in [vec![0u8; h.len], one, n_minus_1] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                h.private_op(&block, &mut r, &mut a).unwrap();
                slow.private_op(&block, &mut r, &mut b).unwrap();
                assert_eq!(a, b);
                assert_eq!(a, reference(key, &block));
            }
        }
    }

    #[test]
    fn a_faulty_crt_half_is_caught() {
        // A corrupted dp makes m1 wrong: the re-encryption check must
        // refuse to release the (factor-leaking) result.
        let der = crate::keys::decode_pem_or_der(certs_fixtures::default_card::ID0_KEY)
            .unwrap()
            .1;
        let key = rsa::PrivateKey::from_pkcs8_der(&der).unwrap();
        let mut h = handle(&key);
        let crt = h.crt.as_mut().unwrap();
        let bad_dp = to_big(key.dp().unwrap()) + BigUint::from(2u8);
        let dq = to_big(key.dq().unwrap());
        crt.exp = montgomery::crt_exp(&crt.p, &crt.q, &bad_dp, &dq).unwrap();
        let mut out = Vec::new();
        let err = h
            .private_op(&[0x42; 256], &mut rng(), &mut out)
            .unwrap_err();
        assert!(
            matches!(err, KeyError::Backend(ref m) if m.contains("fault")),
            "{err}"
        );
        assert!(out.is_empty());
    }
}
