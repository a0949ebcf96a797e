//! **INSECURE** deterministic key backend, for fuzzing and reproducible
//! tests only.
//!
//! ⚠️ Never use this for a card anyone relies on. Its "private-key
//! operation" is not RSA at all: it expands SHA-256 over the input into a
//! modulus-length block. The output is deterministic and fast, which lets a
//! fuzzer explore the card's command handling without spending milliseconds
//! per signature, but it is **not a valid signature or decryption** and it
//! leaks nothing about the key only because it never uses the key.
//!
//! It loads RSA keys (PKCS#8) only to learn the public key and size, so
//! that a card built with it reports the same properties as a real one.

use std::sync::Arc;

use der::{Decode, Encode};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use super::{KeyAlgorithm, KeyBackend, KeyError, KeyHandle};

/// The insecure backend. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct InsecureTestBackend;

impl KeyBackend for InsecureTestBackend {
    fn name(&self) -> &'static str {
        "insecure-test"
    }

    fn load_pkcs8_der(&self, der: &[u8]) -> Result<Arc<dyn KeyHandle>, KeyError> {
        let info = pkcs8::PrivateKeyInfoRef::try_from(der)
            .map_err(|e| KeyError::Parse(format!("PKCS#8 PrivateKeyInfo: {e}")))?;
        if info.algorithm.oid != pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1") {
            return Err(KeyError::Unsupported(
                "the insecure test backend handles RSA keys only".into(),
            ));
        }
        let rsa = pkcs1::RsaPrivateKeyRef::from_der(info.private_key.as_bytes())
            .map_err(|e| KeyError::Parse(format!("PKCS#1 RSAPrivateKey: {e}")))?;
        let modulus = rsa.modulus.as_bytes();
        let bits = u16::try_from(modulus.len() * 8)
            .map_err(|_| KeyError::Unsupported("RSA modulus too large".into()))?;
        let public = pkcs1::RsaPublicKey {
            modulus: rsa.modulus,
            public_exponent: rsa.public_exponent,
        };
        let public_der = public
            .to_der()
            .map_err(|e| KeyError::Backend(format!("RSAPublicKey encoding: {e}")))?;
        let spki = spki::SubjectPublicKeyInfoRef {
            algorithm: spki::AlgorithmIdentifierRef {
                oid: info.algorithm.oid,
                parameters: Some(der::asn1::AnyRef::NULL),
            },
            subject_public_key: der::asn1::BitStringRef::from_bytes(&public_der)
                .map_err(|e| KeyError::Backend(e.to_string()))?,
        }
        .to_der()
        .map_err(|e| KeyError::Backend(format!("SPKI encoding: {e}")))?;
        Ok(Arc::new(InsecureRsa {
            bits,
            len: modulus.len(),
            spki,
        }))
    }
}

#[derive(Debug)]
struct InsecureRsa {
    bits: u16,
    len: usize,
    spki: Vec<u8>,
}

impl KeyHandle for InsecureRsa {
    fn algorithm(&self) -> KeyAlgorithm {
        KeyAlgorithm::Rsa { bits: self.bits }
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    fn private_op(
        &self,
        input: &[u8],
        _rng: &mut dyn CryptoRng,
        out: &mut Vec<u8>,
    ) -> Result<(), KeyError> {
        if input.len() != self.len {
            return Err(KeyError::InvalidInput);
        }
        let start = out.len();
        let mut counter = 0u32;
        while out.len() - start < self.len {
            let block = Sha256::new()
                .chain_update(counter.to_be_bytes())
                .chain_update(input)
                .finalize();
            let want = (self.len - (out.len() - start)).min(block.len());
            out.extend_from_slice(block.get(..want).unwrap_or_default());
            counter += 1;
        }
        if let Some(first) = out.get_mut(start) {
            *first = 0;
        }
        Ok(())
    }
}
