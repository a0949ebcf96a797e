//! Key generation and the signing side of a CA.

use der::asn1::BitString;
use pkcs8::EncodePrivateKey;
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;
use sha2::Sha256;
use signature::{SignatureEncoding, Signer};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, SignatureBitStringEncoding,
    SubjectPublicKeyInfoOwned,
};
use zeroize::Zeroizing;

use crate::error::{crypto, Error};
use crate::spec::KeyType;

/// A private key able to sign certificates and CRLs.
pub(crate) enum SigningKey {
    /// RSA, PKCS#1 v1.5 with SHA-256 (deterministic).
    Rsa(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
    /// ECDSA P-256 with SHA-256 and RFC 6979 nonces (deterministic).
    P256(p256::ecdsa::SigningKey),
    /// ECDSA P-384 with SHA-384 and RFC 6979 nonces (deterministic).
    P384(p384::ecdsa::SigningKey),
}

impl SigningKey {
    /// The signatureAlgorithm this key produces.
    pub(crate) fn algorithm(&self) -> Result<AlgorithmIdentifierOwned, spki::Error> {
        match self {
            SigningKey::Rsa(k) => k.signature_algorithm_identifier(),
            SigningKey::P256(k) => k.signature_algorithm_identifier(),
            SigningKey::P384(k) => k.signature_algorithm_identifier(),
        }
    }

    /// Signs `msg` and encodes the signature as an X.509 BIT STRING.
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<BitString, Error> {
        let bits = match self {
            SigningKey::Rsa(k) => {
                let sig: rsa::pkcs1v15::Signature =
                    k.try_sign(msg).map_err(|e| crypto("RSA signature", e))?;
                BitString::from_bytes(&sig.to_bytes())
            }
            SigningKey::P256(k) => {
                let sig: p256::ecdsa::DerSignature =
                    k.try_sign(msg).map_err(|e| crypto("ECDSA signature", e))?;
                sig.to_bitstring()
            }
            SigningKey::P384(k) => {
                let sig: p384::ecdsa::DerSignature =
                    k.try_sign(msg).map_err(|e| crypto("ECDSA signature", e))?;
                sig.to_bitstring()
            }
        };
        bits.map_err(|e| crypto("signature encoding", e))
    }
}

/// A freshly generated key: its signing half, its public key and its
/// PKCS#8 encoding.
pub(crate) struct KeyPair {
    pub(crate) key_type: KeyType,
    pub(crate) signer: SigningKey,
    pub(crate) spki: SubjectPublicKeyInfoOwned,
    pub(crate) pkcs8_der: Zeroizing<Vec<u8>>,
}

/// An EC key drawn from `rng` the way `p256`/`p384` 0.13 drew it
/// (field-size bytes, big-endian, drawn again while zero or not below the
/// group order), so that a seed keeps its keys; 0.14's `Generate` draws
/// differently.
fn ec_key<C>(rng: &mut ChaCha20Rng) -> p256::elliptic_curve::SecretKey<C>
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

/// Generates a key of `key_type` from `rng`; `what` names the object in
/// errors.
pub(crate) fn generate(
    key_type: KeyType,
    rng: &mut ChaCha20Rng,
    what: &str,
) -> Result<KeyPair, Error> {
    match key_type.rsa_bits() {
        Some(bits) => {
            let key = crate::prime::rsa_key(rng, bits).map_err(|e| crypto(what, e))?;
            let pkcs8_der = Zeroizing::new(
                key.to_pkcs8_der()
                    .map_err(|e| crypto(what, e))?
                    .as_bytes()
                    .to_vec(),
            );
            let spki = SubjectPublicKeyInfoOwned::from_key(&key.to_public_key())
                .map_err(|e| crypto(what, e))?;
            Ok(KeyPair {
                key_type,
                signer: SigningKey::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key))),
                spki,
                pkcs8_der,
            })
        }
        None if key_type == KeyType::P384 => {
            let key: p384::SecretKey = ec_key(rng);
            let pkcs8_der = Zeroizing::new(
                key.to_pkcs8_der()
                    .map_err(|e| crypto(what, e))?
                    .as_bytes()
                    .to_vec(),
            );
            let spki = SubjectPublicKeyInfoOwned::from_key(&key.public_key())
                .map_err(|e| crypto(what, e))?;
            Ok(KeyPair {
                key_type,
                signer: SigningKey::P384(p384::ecdsa::SigningKey::from(&key)),
                spki,
                pkcs8_der,
            })
        }
        None => {
            let key: p256::SecretKey = ec_key(rng);
            let pkcs8_der = Zeroizing::new(
                key.to_pkcs8_der()
                    .map_err(|e| crypto(what, e))?
                    .as_bytes()
                    .to_vec(),
            );
            let spki = SubjectPublicKeyInfoOwned::from_key(&key.public_key())
                .map_err(|e| crypto(what, e))?;
            Ok(KeyPair {
                key_type,
                signer: SigningKey::P256(p256::ecdsa::SigningKey::from(&key)),
                spki,
                pkcs8_der,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The P-256 key of `vcac provision --seed 5 --key-type 0=p256` as
    /// `p256` 0.13 generated it: a seed keeps its P-256 keys across the
    /// RustCrypto upgrade (the RSA ones are held by the committed default
    /// card).
    #[test]
    fn p256_keys_are_what_earlier_releases_drew() {
        let pair = generate(KeyType::P256, &mut crate::rng::stream(5, "key/id0"), "id0").unwrap();
        let key =
            <p256::SecretKey as pkcs8::DecodePrivateKey>::from_pkcs8_der(&pair.pkcs8_der).unwrap();
        let want = [
            0x0b, 0x38, 0x84, 0x5f, 0x97, 0x56, 0xe5, 0xcf, 0x59, 0x2b, 0xc5, 0xc2, 0x79, 0x54,
            0xeb, 0xfa, 0xe8, 0x6d, 0x91, 0x44, 0x73, 0x8a, 0x62, 0x21, 0x26, 0x39, 0x16, 0x1c,
            0x52, 0x50, 0xce, 0xa7,
        ];
        assert_eq!(key.to_bytes().as_slice(), want);
    }

    /// The same for P-384 (`p384` 0.13 drew 48 bytes the same way).
    #[test]
    fn p384_keys_are_what_earlier_releases_drew() {
        let pair = generate(KeyType::P384, &mut crate::rng::stream(5, "key/id0"), "id0").unwrap();
        let key =
            <p384::SecretKey as pkcs8::DecodePrivateKey>::from_pkcs8_der(&pair.pkcs8_der).unwrap();
        let want = [
            0x0b, 0x38, 0x84, 0x5f, 0x97, 0x56, 0xe5, 0xcf, 0x59, 0x2b, 0xc5, 0xc2, 0x79, 0x54,
            0xeb, 0xfa, 0xe8, 0x6d, 0x91, 0x44, 0x73, 0x8a, 0x62, 0x21, 0x26, 0x39, 0x16, 0x1c,
            0x52, 0x50, 0xce, 0xa7, 0x7d, 0xf9, 0x4a, 0xd5, 0xf4, 0xc6, 0xf9, 0x52, 0x07, 0xc6,
            0x2c, 0x73, 0x3a, 0x5c, 0x9b, 0x5d,
        ];
        assert_eq!(key.to_bytes().as_slice(), want);
    }
}
