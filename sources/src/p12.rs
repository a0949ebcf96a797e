//! PKCS#12 (`.p12`, `.pfx`) files: an identity's certificate and private
//! key, read for `p12 =` identities and `vcac import`, written for
//! `vcac provision --export-p12`.
//!
//! ```text
//!   alice.p12 ──► read (MAC checked, bounded) ──► P12Identity { cert DER, PKCS#8 DER }
//!   cert DER + PKCS#8 DER (+ CA) ──► write ──► AES-256-CBC/PBKDF2-SHA256, HMAC-SHA256 MAC
//! ```
//!
//! The decoding is done by the `p12-keystore` crate (PBES2 with AES and
//! PBKDF2, the legacy pbeWithSHAAnd3-KeyTripleDES-CBC and 40-bit RC2
//! that `openssl pkcs12 -legacy` and older Windows exports use). Here the
//! input is bounded, a file without a MAC is refused (the crate would
//! accept one), the key bag is paired with its certificate, and a panic
//! inside the decoder becomes an error.

use core::fmt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cac::config::{CardConfig, P12_CERT, P12_KEY};
use p12_keystore::{
    Certificate, KeyStore, KeyStoreEntry, Pkcs12Archive, PrivateKey, PrivateKeyChain,
};
use zeroize::Zeroizing;

/// PKCS#12 files larger than this are refused (an identity is a few KiB).
pub const MAX_P12: usize = 1 << 20;

/// Why a PKCS#12 file cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P12Error(pub String);

impl fmt::Display for P12Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for P12Error {}

fn err(reason: impl Into<String>) -> P12Error {
    P12Error(reason.into())
}

/// One identity from a PKCS#12 file.
pub struct P12Identity {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 DER (zeroized on drop).
    pub key_pkcs8: Zeroizing<Vec<u8>>,
    /// The other certificates of the file (the chain), DER.
    pub chain: Vec<Vec<u8>>,
    /// The key bag's friendly name, if any.
    pub friendly_name: Option<String>,
}

impl fmt::Debug for P12Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("P12Identity")
            .field("cert_der", &self.cert_der.len())
            .field("chain", &self.chain.len())
            .field("friendly_name", &self.friendly_name)
            .finish_non_exhaustive()
    }
}

/// True when the DER `PFX` has its optional `macData` (checked before
/// decrypting anything: an unauthenticated file is refused).
fn has_mac(bytes: &[u8]) -> Result<bool, P12Error> {
    use der::{Decode, Reader};
    let mut reader = der::SliceReader::new(bytes).map_err(|e| err(format!("not DER: {e}")))?;
    let has = reader
        .sequence(|pfx| {
            let _version = u8::decode(pfx)?;
            let _auth_safe = der::asn1::AnyRef::decode(pfx)?;
            let mac = if pfx.is_finished() {
                false
            } else {
                der::asn1::AnyRef::decode(pfx)?;
                true
            };
            Ok(mac)
        })
        .map_err(|e: der::Error| err(format!("not a PKCS#12 PFX: {e}")))?;
    if !reader.is_finished() {
        return Err(err("not a PKCS#12 PFX: trailing bytes"));
    }
    Ok(has)
}

/// Decodes a PKCS#12 file holding one private key and its certificate.
/// The MAC must be present and correct for `password` (an empty password
/// is a password too).
pub fn read(bytes: &[u8], password: &str) -> Result<P12Identity, P12Error> {
    if bytes.len() > MAX_P12 {
        return Err(err(format!(
            "{} bytes is larger than the {MAX_P12} byte limit",
            bytes.len()
        )));
    }
    if !has_mac(bytes)? {
        return Err(err(
            "has no MAC (integrity not protected by a password); refused",
        ));
    }
    let decoded = std::panic::catch_unwind(|| Pkcs12Archive::from_pkcs12(bytes, password))
        .map_err(|_| err("malformed PKCS#12 (the decoder gave up)"))?;
    let archive = decoded.map_err(|e| match e {
        p12_keystore::error::Error::MacError(_) => {
            err("MAC check failed: wrong password, or the file is corrupted")
        }
        other => err(format!("cannot decode: {other}")),
    })?;
    let Pkcs12Archive { keys, certs, .. } = archive;
    let mut keys = keys.into_iter();
    let (key, more) = (keys.next(), keys.next());
    let key = match (key, more) {
        (Some(k), None) => k,
        (None, _) => return Err(err("holds no private key")),
        (Some(_), Some(_)) => {
            return Err(err(
                "holds more than one private key (one identity per file)",
            ))
        }
    };
    // The certificate with the key's localKeyId; without one, the only
    // certificate that issued no other one in the file (the leaf).
    let by_id = key.local_key_id.as_ref().and_then(|id| {
        certs
            .iter()
            .position(|c| c.local_key_id.as_deref() == Some(id.0.as_slice()))
    });
    let leaf = by_id.or_else(|| {
        certs.iter().position(|c| {
            !certs
                .iter()
                .any(|o| !core::ptr::eq(o, c) && o.cert.issuer() == c.cert.subject())
        })
    });
    let leaf = leaf.ok_or_else(|| err("holds no certificate for its private key"))?;
    let mut cert_der = None;
    let mut chain = Vec::new();
    for (i, c) in certs.into_iter().enumerate() {
        if i == leaf {
            cert_der = Some(c.cert.as_der().to_vec());
        } else {
            chain.push(c.cert.as_der().to_vec());
        }
    }
    let cert_der = cert_der.ok_or_else(|| err("holds no certificate for its private key"))?;
    Ok(P12Identity {
        cert_der,
        key_pkcs8: Zeroizing::new(key.key.as_der().to_vec()),
        chain,
        friendly_name: key.friendly_name,
    })
}

/// Writes a PKCS#12 file with one key, its certificate and the `chain`
/// (issuer first), as OpenSSL 3 does by default: keys and certificates
/// encrypted with AES-256-CBC (PBES2, PBKDF2-HMAC-SHA256), an
/// HMAC-SHA256 MAC. `friendly_name` names the entry.
pub fn write(
    cert_der: &[u8],
    key_pkcs8: &[u8],
    chain: &[&[u8]],
    friendly_name: &str,
    password: &str,
) -> Result<Vec<u8>, P12Error> {
    let cert = Certificate::from_der(cert_der).map_err(|e| err(format!("certificate: {e}")))?;
    let mut certs = vec![cert];
    for c in chain {
        certs.push(Certificate::from_der(c).map_err(|e| err(format!("chain certificate: {e}")))?);
    }
    let key = PrivateKey::from_der(key_pkcs8).map_err(|e| err(format!("private key: {e}")))?;
    // localKeyId: SHA-1 of the certificate, as OpenSSL and NSS expect
    // it to be stable (any unique value would do).
    let local_key_id = {
        use sha1::Digest;
        sha1::Sha1::digest(cert_der).to_vec()
    };
    let mut store = KeyStore::new();
    store.add_entry(
        friendly_name,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    store
        .writer(password)
        .write()
        .map_err(|e| err(format!("cannot encode: {e}")))
}

/// Asks for the password of a PKCS#12 file whose identity names no
/// `p12_password_env`; `None` when there is no one to ask (the empty
/// password is tried).
pub type AskPassword<'a> = dyn FnMut(&Path) -> Option<Zeroizing<String>> + 'a;

/// The password for `path`: from `env` when named, else `ask`, else empty.
pub fn password_for(
    path: &Path,
    env: Option<&str>,
    ask: &mut AskPassword<'_>,
) -> Result<Zeroizing<String>, P12Error> {
    match env {
        Some(var) => match std::env::var(var) {
            Ok(v) => Ok(Zeroizing::new(v)),
            Err(std::env::VarError::NotPresent) => Err(err(format!(
                "the password variable {var} (p12_password_env) is not set"
            ))),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(err(format!("the password variable {var} is not UTF-8")))
            }
        },
        None => Ok(ask(path).unwrap_or_default()),
    }
}

/// Serves the certificate and key of a card directory's `p12 =`
/// identities to [`CardConfig::builder`]'s `read` closure, decoding each
/// file once.
pub(crate) struct DirP12s {
    dir: PathBuf,
    envs: HashMap<String, Option<String>>,
    decoded: HashMap<String, P12Identity>,
}

impl DirP12s {
    pub(crate) fn new(dir: &Path, config: &CardConfig) -> Self {
        let envs = config
            .identities
            .iter()
            .filter_map(|i| Some((i.p12.clone()?, i.p12_password_env.clone())))
            .collect();
        DirP12s {
            dir: dir.to_owned(),
            envs,
            decoded: HashMap::new(),
        }
    }

    /// The bytes `read` returns for `name` (a member of a `p12 =` file).
    pub(crate) fn read(
        &mut self,
        name: &str,
        read_file: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
        ask: &mut AskPassword<'_>,
    ) -> Result<Vec<u8>, String> {
        let (file, want_key) = if let Some(f) = name.strip_suffix(P12_KEY) {
            (f, true)
        } else if let Some(f) = name.strip_suffix(P12_CERT) {
            (f, false)
        } else {
            return Err("not a PKCS#12 member".into());
        };
        if !self.decoded.contains_key(file) {
            let env = self.envs.get(file).cloned().flatten();
            let bytes = Zeroizing::new(read_file(file)?);
            let path = self.dir.join(file);
            let password = password_for(&path, env.as_deref(), ask).map_err(|e| e.to_string())?;
            let id = read(&bytes, &password).map_err(|e| {
                if env.is_none() && e.0.starts_with("MAC") {
                    format!("{e} (name the password's environment variable in p12_password_env)")
                } else {
                    e.to_string()
                }
            })?;
            self.decoded.insert(file.to_owned(), id);
        }
        let id = self
            .decoded
            .get(file)
            .ok_or_else(|| "PKCS#12 file not decoded".to_owned())?;
        Ok(if want_key {
            id.key_pkcs8.to_vec()
        } else {
            id.cert_der.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let pki = certs_fixtures::PkiBuilder::cac_triple(5).build().unwrap();
        let id = &pki.identities()[0];
        (
            id.credential().cert_der().to_vec(),
            id.credential().key_der().to_vec(),
            pki.ca().cert_der().to_vec(),
        )
    }

    #[test]
    fn round_trip_and_wrong_password() {
        let (cert, key, ca) = identity();
        let p12 = write(&cert, &key, &[&ca], "id0", "s3cret").unwrap();
        let back = read(&p12, "s3cret").unwrap();
        assert_eq!(back.cert_der, cert);
        assert_eq!(back.key_pkcs8.as_slice(), key.as_slice());
        assert_eq!(back.chain, vec![ca]);
        assert_eq!(back.friendly_name.as_deref(), Some("id0"));
        let e = read(&p12, "wrong").unwrap_err();
        assert!(e.0.starts_with("MAC check failed"), "{e}");
        let empty = write(&cert, &key, &[], "id0", "").unwrap();
        assert_eq!(read(&empty, "").unwrap().cert_der, cert);
    }

    #[test]
    fn hostile_input_is_an_error() {
        let (cert, key, _) = identity();
        let p12 = write(&cert, &key, &[], "x", "pw").unwrap();
        assert!(read(&[], "pw").is_err());
        assert!(read(&[0x30, 0x80], "pw").is_err());
        for cut in [1, 10, p12.len() / 2, p12.len() - 1] {
            assert!(read(&p12[..cut], "pw").is_err(), "cut at {cut}");
        }
        // Every single-byte corruption is refused (MAC or structure).
        for at in (0..p12.len()).step_by(37) {
            let mut bad = p12.clone();
            bad[at] ^= 0x01;
            assert!(read(&bad, "pw").is_err(), "flip at {at}");
        }
        let mut long = p12.clone();
        long.push(0);
        assert_eq!(
            read(&long, "pw").unwrap_err().0,
            "not a PKCS#12 PFX: trailing bytes"
        );
        assert!(read(&vec![0u8; MAX_P12 + 1], "pw")
            .unwrap_err()
            .0
            .contains("larger than"));
    }

    #[test]
    fn a_pfx_without_mac_is_refused() {
        // SEQUENCE { INTEGER 3, SEQUENCE {} } — shaped like a PFX, no macData.
        let no_mac = [0x30, 0x05, 0x02, 0x01, 0x03, 0x30, 0x00];
        assert_eq!(
            read(&no_mac, "").unwrap_err().0,
            "has no MAC (integrity not protected by a password); refused"
        );
    }
}
