//! Key backend on the system's OpenSSL `libcrypto` (feature `openssl`).
//!
//! What it buys: OpenSSL's RSA private operation is constant-time, blinded
//! and written in tuned assembly — about 3× faster than the RustCrypto
//! backend for RSA-2048 on x86-64 (0.35 ms against 1.1 ms per SIGN through
//! the card; `cargo bench -p vcac-benches --features openssl --bench sign`).
//! What it costs: a C dependency (`libssl-dev` at build time,
//! `libssl3` at run time). The card's behaviour is identical: the same
//! raw operation on a modulus-length block, no padding added or removed.
//!
//! RSA only; P-256 keys are refused with [`KeyError::Unsupported`] (use
//! the RustCrypto backend for them).

use std::sync::Arc;

use ::openssl::pkey::{Id, PKey, Private};
use ::openssl::rsa::{Padding, Rsa};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::{KeyAlgorithm, KeyBackend, KeyError, KeyHandle};

/// OpenSSL backend. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenSsl;

impl KeyBackend for OpenSsl {
    fn name(&self) -> &'static str {
        "openssl"
    }

    fn load_pkcs8_der(&self, der: &[u8]) -> Result<Arc<dyn KeyHandle>, KeyError> {
        let pkey = PKey::private_key_from_pkcs8(der)
            .map_err(|e| KeyError::Parse(format!("PKCS#8: {e}")))?;
        if pkey.id() != Id::RSA {
            return Err(KeyError::Unsupported(
                "the OpenSSL backend handles RSA keys only".into(),
            ));
        }
        let rsa = pkey.rsa().map_err(|e| KeyError::Parse(e.to_string()))?;
        let bits = rsa.n().num_bits();
        if !matches!(bits, 1024 | 2048 | 3072 | 4096) {
            return Err(KeyError::Unsupported(format!(
                "RSA-{bits} (supported: 1024, 2048, 3072, 4096)"
            )));
        }
        if !rsa
            .check_key()
            .map_err(|e| KeyError::Parse(e.to_string()))?
        {
            return Err(KeyError::Parse("inconsistent RSA key".into()));
        }
        let spki = pkey
            .public_key_to_der()
            .map_err(|e| KeyError::Backend(e.to_string()))?;
        Ok(Arc::new(OpenSslRsa {
            len: rsa.size() as usize,
            bits: u16::try_from(bits).map_err(|_| KeyError::Unsupported("RSA size".into()))?,
            rsa,
            spki,
        }))
    }
}

struct OpenSslRsa {
    rsa: Rsa<Private>,
    spki: Vec<u8>,
    bits: u16,
    len: usize,
}

impl core::fmt::Debug for OpenSslRsa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OpenSslRsa")
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl KeyHandle for OpenSslRsa {
    fn algorithm(&self) -> KeyAlgorithm {
        KeyAlgorithm::Rsa { bits: self.bits }
    }

    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }

    /// OpenSSL blinds RSA private operations itself (with its own RNG),
    /// so the card's RNG is not used here.
    fn private_op(
        &self,
        input: &[u8],
        _rng: &mut dyn CryptoRng,
        out: &mut Vec<u8>,
    ) -> Result<(), KeyError> {
        if input.len() != self.len {
            return Err(KeyError::InvalidInput);
        }
        let mut buf = Zeroizing::new(vec![0u8; self.len]);
        // RSA_NO_PADDING: the raw operation; OpenSSL rejects input >= n.
        let n = self
            .rsa
            .private_decrypt(input, &mut buf, Padding::NONE)
            .map_err(|_| KeyError::InvalidInput)?;
        let result = buf.get(..n).ok_or(KeyError::InvalidInput)?;
        super::push_left_padded(out, result, self.len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{load_private_key, RustCrypto};
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn agrees_with_the_rustcrypto_backend() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        for pem in [
            certs_fixtures::default_card::ID0_KEY,
            certs_fixtures::default_card::ID1_KEY,
            certs_fixtures::default_card::ID2_KEY,
        ] {
            let a = load_private_key(&OpenSsl, pem).unwrap();
            let b = load_private_key(&RustCrypto, pem).unwrap();
            assert_eq!(a.public_key_der(), b.public_key_der());
            assert_eq!(a.algorithm(), b.algorithm());
            let mut block = vec![0x00, 0x01];
            block.resize(256, 0x37);
            let (mut x, mut y) = (Vec::new(), Vec::new());
            a.private_op(&block, &mut rng, &mut x).unwrap();
            b.private_op(&block, &mut rng, &mut y).unwrap();
            assert_eq!(x, y);
            assert_eq!(
                a.private_op(&[0xFF; 256], &mut rng, &mut x),
                Err(KeyError::InvalidInput)
            );
            assert_eq!(
                a.private_op(&[0x00; 255], &mut rng, &mut x),
                Err(KeyError::InvalidInput)
            );
        }
    }
}
