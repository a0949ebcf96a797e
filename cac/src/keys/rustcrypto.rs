//! The default key backend: RustCrypto `rsa` and `p256`.

use std::sync::Arc;

use pkcs8::DecodePrivateKey;
use rand_core::CryptoRngCore;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::BigUint;
use spki::EncodePublicKey;
use zeroize::Zeroizing;

use super::{KeyAlgorithm, KeyBackend, KeyError, KeyHandle};

const RSA_OID: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_OID: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// RustCrypto backend: RSA 1024–4096 through `rsa` (raw operation always
/// blinded with the caller's RNG, CRT values precomputed once at load, the
/// result re-encrypted and compared as a fault check) and ECDSA P-256
/// through `p256`.
#[derive(Clone, Copy, Debug, Default)]
pub struct RustCrypto;

impl KeyBackend for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn load_pkcs8_der(&self, der: &[u8]) -> Result<Arc<dyn KeyHandle>, KeyError> {
        let info = pkcs8::PrivateKeyInfo::try_from(der)
            .map_err(|e| KeyError::Parse(format!("PKCS#8 PrivateKeyInfo: {e}")))?;
        if info.algorithm.oid == RSA_OID {
            Ok(Arc::new(RsaHandle::from_pkcs8(der)?))
        } else if info.algorithm.oid == EC_OID {
            Ok(Arc::new(P256Handle::from_pkcs8(der)?))
        } else {
            Err(KeyError::Unsupported(format!(
                "key algorithm {} (supported: rsaEncryption, id-ecPublicKey on P-256)",
                info.algorithm.oid
            )))
        }
    }
}

/// An RSA private key, CRT-ready.
struct RsaHandle {
    key: rsa::RsaPrivateKey,
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
        let mut key = rsa::RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|e| KeyError::Parse(format!("RSA private key: {e}")))?;
        let bits = key.n().bits();
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
        Ok(RsaHandle {
            len: key.size(),
            key,
            spki,
            bits,
        })
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
        rng: &mut dyn CryptoRngCore,
        out: &mut Vec<u8>,
    ) -> Result<(), KeyError> {
        if input.len() != self.len {
            return Err(KeyError::InvalidInput);
        }
        let c = BigUint::from_bytes_be(input);
        if &c >= self.key.n() {
            return Err(KeyError::InvalidInput);
        }
        // Blinded (Some(rng)) and fault-checked (m^e == c).
        let m = rsa::hazmat::rsa_decrypt_and_check(&self.key, Some(rng), &c)
            .map_err(|e| KeyError::Backend(e.to_string()))?;
        let bytes = Zeroizing::new(m.to_bytes_be());
        let pad = self.len.saturating_sub(bytes.len());
        out.resize(out.len() + pad, 0);
        out.extend_from_slice(&bytes);
        Ok(())
    }
}

/// A P-256 ECDSA key.
struct P256Handle {
    key: p256::ecdsa::SigningKey,
    spki: Vec<u8>,
}

impl core::fmt::Debug for P256Handle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("P256Handle").finish_non_exhaustive()
    }
}

impl P256Handle {
    fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let secret = p256::SecretKey::from_pkcs8_der(der)
            .map_err(|e| KeyError::Parse(format!("EC private key (P-256 only): {e}")))?;
        let spki = secret
            .public_key()
            .to_public_key_der()
            .map_err(|e| KeyError::Backend(format!("SPKI encoding: {e}")))?
            .into_vec();
        Ok(P256Handle {
            key: p256::ecdsa::SigningKey::from(secret),
            spki,
        })
    }
}

impl KeyHandle for P256Handle {
    fn algorithm(&self) -> KeyAlgorithm {
        KeyAlgorithm::EcP256
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn private_op(
        &self,
        input: &[u8],
        rng: &mut dyn CryptoRngCore,
        out: &mut Vec<u8>,
    ) -> Result<(), KeyError> {
        use p256::ecdsa::signature::hazmat::RandomizedPrehashSigner;
        if input.len() < 16 || input.len() > 64 {
            return Err(KeyError::InvalidInput);
        }
        let sig: p256::ecdsa::Signature = self
            .key
            .sign_prehash_with_rng(&mut RngAdapter(rng), input)
            .map_err(|e| KeyError::Backend(e.to_string()))?;
        out.extend_from_slice(sig.to_der().as_bytes());
        Ok(())
    }
}

/// `sign_prehash_with_rng` wants a sized `CryptoRngCore`.
struct RngAdapter<'a>(&'a mut dyn CryptoRngCore);

impl rand_core::RngCore for RngAdapter<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl rand_core::CryptoRng for RngAdapter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::load_private_key;
    use rand_chacha::rand_core::SeedableRng;
    use rsa::traits::PublicKeyParts;

    fn rng() -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(7)
    }

    #[test]
    fn raw_rsa_round_trips_through_the_public_key() {
        let key = load_private_key(&RustCrypto, certs_fixtures::default_card::ID0_KEY).unwrap();
        let public = rsa::RsaPublicKey::try_from(
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
        let back = rsa::hazmat::rsa_encrypt(&public, &BigUint::from_bytes_be(&sig)).unwrap();
        let mut back = back.to_bytes_be();
        while back.len() < 256 {
            back.insert(0, 0);
        }
        assert_eq!(back, block);
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
}
