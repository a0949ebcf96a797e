//! The elliptic-curve half of the RustCrypto backend: ECDSA and ECDH on
//! P-256 (`p256`) and P-384 (`p384`), one macro for both curves, and key
//! generation for every algorithm the backend loads.

use std::sync::Arc;

use p256::elliptic_curve::point::AffineCoordinates;
use pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::CryptoRng;
use spki::EncodePublicKey;
use zeroize::Zeroizing;

use super::RustCrypto;
use crate::keys::{GeneratedKey, KeyAlgorithm, KeyBackend, KeyError, KeyHandle};

/// secp384r1.
const SECP384R1: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// True when an id-ecPublicKey `PrivateKeyInfo` names the P-384 curve.
pub(super) fn is_p384(info: &pkcs8::PrivateKeyInfoRef<'_>) -> bool {
    info.algorithm.parameters_oid().ok() == Some(SECP384R1)
}

/// A key handle for one NIST curve: ECDSA over a host hash (DER
/// signature), ECDH with an uncompressed peer point (the shared X
/// coordinate). P-256 and P-384 differ only in their crate, algorithm,
/// shortest accepted hash and point length.
macro_rules! ec_handle {
    ($handle:ident, $curve:ident, $algorithm:expr, $name:literal, $min_hash:literal, $point_len:literal) => {
        #[doc = concat!("A ", $name, " key: ECDSA over a host hash, ECDH.")]
        pub(super) struct $handle {
            key: $curve::ecdsa::SigningKey,
            spki: Vec<u8>,
        }

        impl core::fmt::Debug for $handle {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($handle)).finish_non_exhaustive()
            }
        }

        impl $handle {
            pub(super) fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
                let secret = $curve::SecretKey::from_pkcs8_der(der).map_err(|e| {
                    KeyError::Parse(format!(concat!("EC private key (", $name, "): {}"), e))
                })?;
                let spki = secret
                    .public_key()
                    .to_public_key_der()
                    .map_err(|e| KeyError::Backend(format!("SPKI encoding: {e}")))?
                    .into_vec();
                Ok($handle {
                    key: $curve::ecdsa::SigningKey::from(secret),
                    spki,
                })
            }
        }

        impl KeyHandle for $handle {
            fn algorithm(&self) -> KeyAlgorithm {
                $algorithm
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
                use $curve::ecdsa::signature::hazmat::RandomizedPrehashSigner;
                if input.len() < $min_hash || input.len() > 64 {
                    return Err(KeyError::InvalidInput);
                }
                let sig: $curve::ecdsa::Signature = self
                    .key
                    .sign_prehash_with_rng(rng, input)
                    .map_err(|e| KeyError::Backend(e.to_string()))?;
                out.extend_from_slice(sig.to_der().as_bytes());
                Ok(())
            }

            fn ecdh(&self, peer: &[u8], out: &mut Vec<u8>) -> Result<(), KeyError> {
                if peer.len() != $point_len || peer.first() != Some(&0x04) {
                    return Err(KeyError::InvalidInput);
                }
                let point =
                    $curve::PublicKey::from_sec1_bytes(peer).map_err(|_| KeyError::InvalidInput)?;
                let scalar: &$curve::Scalar = self.key.as_nonzero_scalar().as_ref();
                let shared = (point.to_projective() * scalar).to_affine();
                let x = Zeroizing::new(shared.x());
                out.extend_from_slice(&x);
                Ok(())
            }
        }
    };
}

ec_handle!(P256Handle, p256, KeyAlgorithm::EcP256, "P-256", 16, 65);
ec_handle!(P384Handle, p384, KeyAlgorithm::EcP384, "P-384", 24, 97);

/// A secret scalar drawn from `rng` the way `elliptic-curve` 0.13 drew
/// one (big-endian field-size bytes, drawn again while zero or not below
/// the group order), so a seeded card generates the keys it always did.
fn draw_secret<C>(rng: &mut dyn CryptoRng) -> p256::elliptic_curve::SecretKey<C>
where
    C: p256::elliptic_curve::CurveArithmetic,
{
    let mut bytes = Zeroizing::new(p256::elliptic_curve::FieldBytes::<C>::default());
    loop {
        rng.fill_bytes(&mut bytes);
        if let Ok(key) = p256::elliptic_curve::SecretKey::<C>::from_bytes(&bytes) {
            return key;
        }
    }
}

/// Generates a key of `algorithm` and loads it back through the backend,
/// so a generated key is checked exactly like a loaded one.
pub(super) fn generate(
    algorithm: KeyAlgorithm,
    rng: &mut dyn CryptoRng,
) -> Result<GeneratedKey, KeyError> {
    let encode = |e: pkcs8::Error| KeyError::Backend(format!("PKCS#8 encoding: {e}"));
    let doc = match algorithm {
        KeyAlgorithm::Rsa { bits } if matches!(bits, 1024 | 2048 | 3072 | 4096) => {
            rsa::PrivateKey::new(rng, usize::from(bits))
                .map_err(|e| KeyError::Backend(format!("RSA key generation: {e}")))?
                .to_pkcs8_der()
                .map_err(encode)?
        }
        KeyAlgorithm::EcP256 => draw_secret::<p256::NistP256>(rng)
            .to_pkcs8_der()
            .map_err(encode)?,
        KeyAlgorithm::EcP384 => draw_secret::<p384::NistP384>(rng)
            .to_pkcs8_der()
            .map_err(encode)?,
        other => return Err(KeyError::Unsupported(format!("generating {other} keys"))),
    };
    let pkcs8_der = Zeroizing::new(doc.as_bytes().to_vec());
    let handle: Arc<dyn KeyHandle> = RustCrypto.load_pkcs8_der(&pkcs8_der)?;
    Ok(GeneratedKey { handle, pkcs8_der })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn rng() -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(9)
    }

    /// A seeded card generates the P-384 key `p384` 0.13 drew from the
    /// same stream.
    #[test]
    fn generated_ec_keys_are_what_earlier_releases_drew() {
        let key = generate(KeyAlgorithm::EcP384, &mut rng()).unwrap();
        let secret = p384::SecretKey::from_pkcs8_der(&key.pkcs8_der).unwrap();
        let want = [
            0x1b, 0xdd, 0x95, 0x66, 0x76, 0x46, 0x04, 0x02, 0x97, 0x76, 0xc8, 0xd2, 0x23, 0xb8,
            0x29, 0x07, 0x98, 0x15, 0x05, 0x3f, 0xe6, 0xee, 0xda, 0x71, 0xb4, 0x40, 0xac, 0xc1,
            0x9e, 0x83, 0xde, 0x9f, 0x8e, 0x21, 0xa5, 0x19, 0x07, 0x4d, 0x72, 0x64, 0x01, 0xe9,
            0x03, 0x3e, 0x30, 0x89, 0x99, 0xca,
        ];
        assert_eq!(secret.to_bytes().as_slice(), want);
    }

    #[test]
    fn p384_signs_a_hash_the_public_key_verifies() {
        use p384::ecdsa::signature::hazmat::PrehashVerifier;
        use spki::DecodePublicKey;
        let key = generate(KeyAlgorithm::EcP384, &mut rng()).unwrap();
        assert_eq!(key.handle.algorithm(), KeyAlgorithm::EcP384);
        let mut sig = Vec::new();
        key.handle
            .private_op(&[0x5A; 48], &mut rng(), &mut sig)
            .unwrap();
        let public = p384::PublicKey::from_public_key_der(key.handle.public_key_der()).unwrap();
        let verifier = p384::ecdsa::VerifyingKey::from(public);
        let sig = p384::ecdsa::Signature::from_der(&sig).unwrap();
        verifier.verify_prehash(&[0x5A; 48], &sig).unwrap();
        assert_eq!(
            key.handle.private_op(&[0; 16], &mut rng(), &mut Vec::new()),
            Err(KeyError::InvalidInput)
        );
    }

    #[test]
    fn ecdh_agrees_with_the_peer_on_both_curves() {
        use spki::DecodePublicKey;
        let mut r = rng();
        let ours = generate(KeyAlgorithm::EcP256, &mut r).unwrap();
        let peer = draw_secret::<p256::NistP256>(&mut r);
        let peer_point = p256::Sec1Point::from(peer.public_key());
        let mut shared = Vec::new();
        ours.handle
            .ecdh(peer_point.as_bytes(), &mut shared)
            .unwrap();
        let our_public =
            p256::PublicKey::from_public_key_der(ours.handle.public_key_der()).unwrap();
        let want = (our_public.to_projective() * *peer.to_nonzero_scalar())
            .to_affine()
            .x();
        assert_eq!(shared, want.to_vec());

        let ours = generate(KeyAlgorithm::EcP384, &mut r).unwrap();
        let peer = draw_secret::<p384::NistP384>(&mut r);
        let peer_point = p384::Sec1Point::from(peer.public_key());
        let mut shared = Vec::new();
        ours.handle
            .ecdh(peer_point.as_bytes(), &mut shared)
            .unwrap();
        let our_public =
            p384::PublicKey::from_public_key_der(ours.handle.public_key_der()).unwrap();
        let want = (our_public.to_projective() * *peer.to_nonzero_scalar())
            .to_affine()
            .x();
        assert_eq!(shared, want.to_vec());

        // Off-curve, compressed and wrong-length points are refused.
        let mut bad = peer_point.as_bytes().to_vec();
        bad[20] ^= 1;
        assert_eq!(
            ours.handle.ecdh(&bad, &mut Vec::new()),
            Err(KeyError::InvalidInput)
        );
        assert_eq!(
            ours.handle.ecdh(&bad[..49], &mut Vec::new()),
            Err(KeyError::InvalidInput)
        );
    }

    #[test]
    fn generated_rsa_keys_do_the_raw_operation() {
        let key = generate(KeyAlgorithm::Rsa { bits: 1024 }, &mut rng()).unwrap();
        assert_eq!(key.handle.algorithm(), KeyAlgorithm::Rsa { bits: 1024 });
        let mut out = Vec::new();
        key.handle
            .private_op(&[0x01; 128], &mut rng(), &mut out)
            .unwrap();
        assert_eq!(out.len(), 128);
        assert!(generate(KeyAlgorithm::Rsa { bits: 1000 }, &mut rng()).is_err());
        // The PKCS#8 loads back to the same public key.
        let again = RustCrypto.load_pkcs8_der(&key.pkcs8_der).unwrap();
        assert_eq!(again.public_key_der(), key.handle.public_key_der());
    }
}
