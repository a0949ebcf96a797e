//! The card's key store: key handles behind a small trait, and backends that
//! load them.
//!
//! A [`KeyHandle`] reports its algorithm and size and performs the card's
//! raw private-key operation, in the spirit of RustCrypto's
//! `signature::Signer` / `Keypair`:
//!
//! * RSA: `input` is a modulus-length big-endian block `c < n`; the handle
//!   writes `c^d mod n` as a modulus-length block. Padding is the host's
//!   business: the card never adds or strips PKCS#1 padding, so a
//!   decryption returns the raw `00 02 …` block. Backends must blind.
//! * ECDSA P-256: `input` is a hash computed by the host; the handle
//!   appends a DER `ECDSA-Sig-Value`.
//!
//! Backends:
//!
//! | backend | feature | what it is |
//! |---|---|---|
//! | [`RustCrypto`] | `rustcrypto` (default) | RSA keys parsed by `rsa`, the private operation blinded, CRT with constant-time Montgomery exponentiation, fault-checked; `p256` |
//! | `openssl::OpenSsl` | `openssl` | the system's OpenSSL libcrypto (RSA only), ~3× faster |
//! | `insecure::InsecureTestBackend` | `insecure-test-backend` | deterministic, **insecure**, for fuzzing only |
//!
//! Any other implementation of [`KeyBackend`] plugs in the same way.

use core::fmt;
use std::sync::Arc;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

#[cfg(feature = "insecure-test-backend")]
pub mod insecure;
#[cfg(feature = "openssl")]
pub mod openssl;
#[cfg(feature = "rustcrypto")]
mod rustcrypto;
#[cfg(feature = "rustcrypto")]
pub use rustcrypto::RustCrypto;

/// The algorithm and size of a key.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// Modulus size in bits (1024, 2048, 3072, 4096).
        bits: u16,
    },
    /// ECDSA over NIST P-256.
    EcP256,
    /// ECDSA / ECDH over NIST P-384.
    EcP384,
}

impl KeyAlgorithm {
    /// Key size in bits.
    pub const fn bits(self) -> u16 {
        match self {
            KeyAlgorithm::Rsa { bits } => bits,
            KeyAlgorithm::EcP256 => 256,
            KeyAlgorithm::EcP384 => 384,
        }
    }

    /// For RSA, the exact input length of the raw operation (the modulus
    /// length in bytes); for ECDSA, the largest hash accepted.
    pub const fn block_len(self) -> usize {
        match self {
            KeyAlgorithm::Rsa { bits } => (bits as usize).div_ceil(8),
            KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => 64,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyAlgorithm::EcP256 => write!(f, "ECDSA P-256"),
            KeyAlgorithm::EcP384 => write!(f, "ECDSA P-384"),
        }
    }
}

/// Errors of the key store.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The input bytes are not a key this backend understands.
    Parse(String),
    /// The key's algorithm or size is not supported.
    Unsupported(String),
    /// The operation's input is invalid for this key (wrong length, or not
    /// below the modulus).
    InvalidInput,
    /// The backend failed (fault check, library error).
    Backend(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Parse(m) => write!(f, "cannot parse private key: {m}"),
            KeyError::Unsupported(m) => write!(f, "unsupported key: {m}"),
            KeyError::InvalidInput => write!(f, "invalid input for the private-key operation"),
            KeyError::Backend(m) => write!(f, "key backend failure: {m}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A private key held by the card.
///
/// Implementations keep their secret material zeroized on drop and never
/// hand it out: the trait has no method that returns private key bytes.
pub trait KeyHandle: Send + Sync + fmt::Debug {
    /// Algorithm and size.
    fn algorithm(&self) -> KeyAlgorithm;

    /// The public key as a DER `SubjectPublicKeyInfo`.
    fn public_key_der(&self) -> &[u8];

    /// The raw private-key operation (see the [module docs](self)).
    ///
    /// Appends the result to `out`.
    fn private_op(
        &self,
        input: &[u8],
        rng: &mut dyn CryptoRng,
        out: &mut Vec<u8>,
    ) -> Result<(), KeyError>;

    /// Elliptic-curve Diffie-Hellman: `peer` is an uncompressed point
    /// (`04 ‖ X ‖ Y`) on the key's curve; appends the shared secret's
    /// x-coordinate. Keys that cannot do it answer
    /// [`KeyError::Unsupported`] (the default).
    fn ecdh(&self, peer: &[u8], out: &mut Vec<u8>) -> Result<(), KeyError> {
        let _ = (peer, out);
        Err(KeyError::Unsupported(format!(
            "ECDH with {}",
            self.algorithm()
        )))
    }
}

/// A key made by [`KeyBackend::generate`]: the handle and its PKCS#8
/// encoding (zeroized on drop), for the card to persist.
pub struct GeneratedKey {
    /// The new key.
    pub handle: Arc<dyn KeyHandle>,
    /// Its PKCS#8 `PrivateKeyInfo`, DER.
    pub pkcs8_der: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("handle", &self.handle)
            .finish_non_exhaustive()
    }
}

/// A source of key handles.
pub trait KeyBackend: Send + Sync {
    /// A short name for logs and benchmarks.
    fn name(&self) -> &'static str;

    /// Loads a PKCS#8 `PrivateKeyInfo` (DER). Every other input format is
    /// converted to this before it reaches the backend.
    fn load_pkcs8_der(&self, der: &[u8]) -> Result<Arc<dyn KeyHandle>, KeyError>;

    /// Generates a fresh key of `algorithm` from `rng` (on-card key
    /// generation). Backends that cannot answer [`KeyError::Unsupported`]
    /// (the default).
    fn generate(
        &self,
        algorithm: KeyAlgorithm,
        rng: &mut dyn CryptoRng,
    ) -> Result<GeneratedKey, KeyError> {
        let _ = rng;
        Err(KeyError::Unsupported(format!(
            "{} cannot generate {algorithm} keys",
            self.name()
        )))
    }
}

/// Appends `value` left-padded with zeros to `len` bytes: the raw RSA
/// result as a modulus-length block.
#[cfg(any(feature = "rustcrypto", feature = "openssl"))]
fn push_left_padded(out: &mut Vec<u8>, value: &[u8], len: usize) {
    out.resize(out.len() + len.saturating_sub(value.len()), 0);
    out.extend_from_slice(value);
}

const RSA_ENCRYPTION: pkcs8::ObjectIdentifier =
    pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Loads a private key from PEM or DER, in PKCS#8 (`PRIVATE KEY`) or PKCS#1
/// (`RSA PRIVATE KEY`) form, through `backend`.
///
/// Intermediate copies of the secret are zeroized.
pub fn load_private_key(
    backend: &dyn KeyBackend,
    bytes: &[u8],
) -> Result<Arc<dyn KeyHandle>, KeyError> {
    let (label, der) = decode_pem_or_der(bytes)?;
    match label.as_deref() {
        None | Some("PRIVATE KEY") => {
            // DER may be PKCS#8 or PKCS#1: PKCS#8 starts with a version
            // INTEGER followed by an AlgorithmIdentifier SEQUENCE.
            if label.is_none() && looks_like_pkcs1(&der) {
                let p8 = pkcs1_to_pkcs8(&der)?;
                return backend.load_pkcs8_der(&p8);
            }
            backend.load_pkcs8_der(&der)
        }
        Some("RSA PRIVATE KEY") => {
            let p8 = pkcs1_to_pkcs8(&der)?;
            backend.load_pkcs8_der(&p8)
        }
        Some("ENCRYPTED PRIVATE KEY") => Err(KeyError::Unsupported(
            "encrypted PKCS#8 keys are not supported; store the key unencrypted (mode 0600)".into(),
        )),
        Some(other) => Err(KeyError::Parse(format!(
            "PEM label \"{other}\" is not a private key (expected PRIVATE KEY or RSA PRIVATE KEY)"
        ))),
    }
}

fn decode_pem_or_der(bytes: &[u8]) -> Result<(Option<String>, Zeroizing<Vec<u8>>), KeyError> {
    let trimmed = bytes.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let (label, der) =
            der::pem::decode_vec(trimmed).map_err(|e| KeyError::Parse(format!("PEM: {e}")))?;
        Ok((Some(label.to_owned()), Zeroizing::new(der)))
    } else if trimmed.first() == Some(&0x30) {
        Ok((None, Zeroizing::new(bytes.to_vec())))
    } else {
        Err(KeyError::Parse(
            "neither PEM (-----BEGIN ...) nor DER (SEQUENCE)".into(),
        ))
    }
}

fn looks_like_pkcs1(der: &[u8]) -> bool {
    // PKCS#1 is SEQUENCE { INTEGER version, INTEGER modulus, ... }, PKCS#8
    // has an AlgorithmIdentifier SEQUENCE after the version.
    pkcs1::RsaPrivateKeyRef::try_from(der).is_ok()
}

fn pkcs1_to_pkcs8(pkcs1_der: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    use der::Encode;
    // Validate before wrapping so errors name the right format.
    pkcs1::RsaPrivateKeyRef::try_from(pkcs1_der)
        .map_err(|e| KeyError::Parse(format!("PKCS#1 RSAPrivateKey: {e}")))?;
    let key = der::asn1::OctetStringRef::new(pkcs1_der)
        .map_err(|e| KeyError::Parse(format!("PKCS#8 wrap: {e}")))?;
    let info = pkcs8::PrivateKeyInfoRef::new(
        pkcs8::AlgorithmIdentifierRef {
            oid: RSA_ENCRYPTION,
            parameters: Some(der::asn1::AnyRef::NULL),
        },
        key,
    );
    info.to_der()
        .map(Zeroizing::new)
        .map_err(|e| KeyError::Parse(format!("PKCS#8 wrap: {e}")))
}

#[cfg(all(test, feature = "rustcrypto"))]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_keys_with_a_reason() {
        let e = load_private_key(&RustCrypto, b"hello").unwrap_err();
        assert!(e.to_string().contains("neither PEM"), "{e}");
        let cert = certs_fixtures::default_card::ID0_PEM;
        let e = load_private_key(&RustCrypto, cert).unwrap_err();
        assert!(e.to_string().contains("CERTIFICATE"), "{e}");
    }

    #[test]
    fn pkcs8_pem_der_and_pkcs1_give_the_same_public_key() {
        let pem = certs_fixtures::default_card::ID0_KEY;
        let a = load_private_key(&RustCrypto, pem).unwrap();
        let (_, p8) = decode_pem_or_der(pem).unwrap();
        let b = load_private_key(&RustCrypto, &p8).unwrap();
        assert_eq!(a.public_key_der(), b.public_key_der());
        assert_eq!(a.algorithm(), KeyAlgorithm::Rsa { bits: 2048 });

        // Unwrap the PKCS#8 to PKCS#1 and load both DER and PEM forms.
        let info = pkcs8::PrivateKeyInfoRef::try_from(&p8[..]).unwrap();
        let p1 = info.private_key.as_bytes().to_vec();
        let c = load_private_key(&RustCrypto, &p1).unwrap();
        assert_eq!(a.public_key_der(), c.public_key_der());
        let p1_pem =
            der::pem::encode_string("RSA PRIVATE KEY", der::pem::LineEnding::LF, &p1).unwrap();
        let d = load_private_key(&RustCrypto, p1_pem.as_bytes()).unwrap();
        assert_eq!(a.public_key_der(), d.public_key_der());
    }
}
