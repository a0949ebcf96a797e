//! NSS `sql:` databases (cert9.db + key4.db) as CAC cards, read with
//! [`nssdb`] (no NSS library involved).
//!
//! This is libcacard's soft mode: certificates are chosen by nickname
//! (unknown ones skipped), each private key is the one sharing the
//! certificate's CKA_ID, and the card's PIN *is* the database password.
//!
//! ```text
//!  sql:DIR ──► nssdb::Database (read whole, files closed)
//!                 │ find_certificate(nick) ──► Identity (certificate DER)
//!                 │                              └► NssKey: locked until login
//!  VERIFY PIN ──► NssLogin ── check_password ──► private_key_pkcs8
//!                                                 └► KeyBackend ─► KeyHandle
//! ```
//!
//! | database | VERIFY with data | VERIFY without data | SIGN / DECRYPT |
//! |---|---|---|---|
//! | empty password (`certutil -N --empty-password`) | any PIN: `90 00` | `90 00`, even after a power cycle | works without VERIFY |
//! | password | trailing `FF`s stripped, the rest (any length) is the password: `90 00`; wrong: `69 85` and logged out | `90 00` logged in, else `6A 88` | `69 82` until VERIFY |
//!
//! VERIFY with P1 P2 other than `00 00` answers `6A 00`. NSS keeps no retry
//! counter, so neither does this card (no `63 Cx`, never blocked). A power
//! cycle (and a reset) logs out and locks the keys again.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! let db = vcac_sources::nss::NssDb::open("sql:/etc/pki/nssdb")?;
//! let card = db.card(&["cert1", "cert2", "cert3"], Arc::new(cac::keys::RustCrypto), rand_core::UnwrapErr(getrandom::SysRng))?;
//! assert!(card.is_some(), "at least one certificate was found");
//! # Ok::<(), vcac_sources::nss::NssError>(())
//! ```

use core::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use cac::keys::{KeyAlgorithm, KeyBackend, KeyError, KeyHandle};
use cac::security::{SecurityEnvironment, INS_VERIFY};
use cac::{Card, CardBuilder, CommandView, Identity, Pin, PinPolicy, Status};
use nssdb::raw::{CertInfo, Curve, PublicKey};
use rand_core::CryptoRng;

/// Why an NSS database cannot become a card. The message names the file.
#[derive(Debug)]
pub enum NssError {
    /// Opening or reading the database failed (missing directory, `dbm:`
    /// or cert8-only directory, hot journal, corrupt file, …).
    Open(nssdb::Error),
    /// A certificate the database holds cannot be put on a card.
    Certificate {
        /// Its nickname.
        nickname: String,
        /// What is wrong.
        reason: String,
    },
    /// The card could not be assembled.
    Card(cac::CardError),
}

impl fmt::Display for NssError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NssError::Open(e) => write!(f, "{e}"),
            NssError::Certificate { nickname, reason } => {
                write!(f, "certificate \"{nickname}\": {reason}")
            }
            NssError::Card(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for NssError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NssError::Open(e) => Some(e),
            NssError::Card(e) => Some(e),
            NssError::Certificate { .. } => None,
        }
    }
}

/// VERIFY's answer to a wrong password (`69 85`, as libcacard gives it).
const WRONG_PASSWORD: Status = Status::ConditionsNotSatisfied;
/// VERIFY's answer to P1 P2 other than `00 00` (`6A 00`, libcacard's).
const BAD_P1P2: Status = Status::Other(0x6A00);

/// An opened NSS database.
pub struct NssDb {
    db: Arc<nssdb::Database>,
    needs_login: bool,
}

impl fmt::Debug for NssDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NssDb")
            .field("cert_file", &self.db.cert_file())
            .field("needs_login", &self.needs_login)
            .finish()
    }
}

impl NssDb {
    /// Opens `sql:DIR` or a plain `DIR` holding cert9.db and key4.db (read
    /// whole, then closed). `dbm:` specs and directories with only the
    /// legacy cert8.db / key3.db are refused with a conversion hint.
    pub fn open(spec: &str) -> Result<NssDb, NssError> {
        let db = nssdb::Database::open(spec).map_err(NssError::Open)?;
        let needs_login = db.needs_login();
        Ok(NssDb {
            db: Arc::new(db),
            needs_login,
        })
    }

    /// True when the database has a password (the card's PIN); false for
    /// an empty-password database, where any PIN logs in.
    pub fn needs_login(&self) -> bool {
        self.needs_login
    }

    /// The DER certificate with this nickname, if the database has one.
    pub fn certificate(&self, nickname: &str) -> Result<Option<Vec<u8>>, NssError> {
        Ok(self
            .db
            .find_certificate(nickname)
            .map_err(NssError::Open)?
            .map(|c| c.der))
    }

    /// A CAC card with one PKI applet per nickname found, in the given
    /// order; nicknames the database does not have are skipped (logged).
    /// `Ok(None)` when none is found. Keys load through `backend` when
    /// first needed: at the first private-key operation for an
    /// empty-password database, at VERIFY for a password database.
    pub fn card<S: AsRef<str>>(
        &self,
        nicknames: &[S],
        backend: Arc<dyn KeyBackend>,
        rng: impl CryptoRng + Send + 'static,
    ) -> Result<Option<Card>, NssError> {
        let mut keys = Vec::new();
        let mut identities = Vec::new();
        for nick in nicknames.iter().map(AsRef::as_ref) {
            let Some(cert) = self.db.find_certificate(nick).map_err(NssError::Open)? else {
                log::warn!(
                    "{}: no certificate \"{nick}\"; skipped",
                    self.db.cert_file().display()
                );
                continue;
            };
            let key = Arc::new(NssKey::new(
                &self.db,
                cert,
                backend.clone(),
                self.needs_login,
            )?);
            keys.push(key.clone());
            identities.push(Identity::new(key.certificate.der.clone(), key));
        }
        if identities.is_empty() {
            return Ok(None);
        }
        let login = NssLogin {
            db: self.db.clone(),
            keys,
            needs_login: self.needs_login,
            verified: false,
        };
        // The builder wants a PIN policy; the security environment
        // replaces it, so its value is never used.
        let unused = Pin::new("00000000").map_err(|e| NssError::Certificate {
            nickname: String::new(),
            reason: e.to_string(),
        })?;
        let mut builder = CardBuilder::new(PinPolicy::new(unused))
            .security(Box::new(login))
            .exact_le(true);
        for id in identities {
            builder = builder.identity(id);
        }
        builder.build(rng).map(Some).map_err(NssError::Card)
    }
}

/// A private key of the database: the certificate's public key, the
/// private part decrypted and loaded only after a successful login (or on
/// first use with an empty password), dropped again at logout.
pub struct NssKey {
    db: Arc<nssdb::Database>,
    certificate: nssdb::Certificate,
    algorithm: KeyAlgorithm,
    spki: Vec<u8>,
    backend: Arc<dyn KeyBackend>,
    needs_login: bool,
    loaded: Mutex<Option<Arc<dyn KeyHandle>>>,
}

impl fmt::Debug for NssKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NssKey")
            .field("nickname", &self.certificate.nickname)
            .field("algorithm", &self.algorithm)
            .field("unlocked", &self.slot().is_some())
            .finish()
    }
}

fn rsa_bits(modulus: &[u8]) -> Option<u16> {
    let first = *modulus.first()?;
    let bits = (modulus.len() - 1) * 8 + (8 - first.leading_zeros() as usize);
    u16::try_from(bits).ok()
}

impl NssKey {
    fn new(
        db: &Arc<nssdb::Database>,
        certificate: nssdb::Certificate,
        backend: Arc<dyn KeyBackend>,
        needs_login: bool,
    ) -> Result<NssKey, NssError> {
        let bad = |reason: String| NssError::Certificate {
            nickname: certificate.nickname.clone(),
            reason,
        };
        let info = CertInfo::parse(&certificate.der).map_err(|e| bad(e.to_string()))?;
        let algorithm = match PublicKey::from_spki(info.spki).map_err(|e| bad(e.to_string()))? {
            PublicKey::Rsa { n, .. } => KeyAlgorithm::Rsa {
                bits: rsa_bits(&n).ok_or_else(|| bad("empty RSA modulus".into()))?,
            },
            PublicKey::Ec { params, .. } => match Curve::from_params(&params) {
                Some(Curve::P256) => KeyAlgorithm::EcP256,
                Some(Curve::P384) => KeyAlgorithm::EcP384,
                None => return Err(bad("unsupported elliptic curve".into())),
            },
            PublicKey::Other(oid) => return Err(bad(format!("unsupported public key {oid}"))),
        };
        let spki = info.spki.to_vec();
        Ok(NssKey {
            db: db.clone(),
            certificate,
            algorithm,
            spki,
            backend,
            needs_login,
            loaded: Mutex::new(None),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Option<Arc<dyn KeyHandle>>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decrypts and loads the key with `password`.
    fn unlock(&self, password: &[u8]) -> Result<Arc<dyn KeyHandle>, KeyError> {
        let pkcs8 = self
            .db
            .private_key_pkcs8(&self.certificate, password)
            .map_err(|e| KeyError::Backend(e.to_string()))?;
        let handle = self.backend.load_pkcs8_der(&pkcs8)?;
        *self.slot() = Some(handle.clone());
        Ok(handle)
    }

    fn lock(&self) {
        if self.needs_login {
            *self.slot() = None;
        }
    }
}

impl KeyHandle for NssKey {
    fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
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
        let loaded = self.slot().clone();
        let handle = match loaded {
            Some(h) => h,
            None if !self.needs_login => self.unlock(b"")?,
            None => return Err(KeyError::Backend("the key is locked: VERIFY first".into())),
        };
        handle.private_op(input, rng, out)
    }

    fn ecdh(&self, peer: &[u8], out: &mut Vec<u8>) -> Result<(), KeyError> {
        let loaded = self.slot().clone();
        match loaded {
            Some(h) => h.ecdh(peer, out),
            None if !self.needs_login => self.unlock(b"")?.ecdh(peer, out),
            None => Err(KeyError::Backend("the key is locked: VERIFY first".into())),
        }
    }
}

/// The card's PIN is the database password (see the module table).
struct NssLogin {
    db: Arc<nssdb::Database>,
    keys: Vec<Arc<NssKey>>,
    needs_login: bool,
    verified: bool,
}

impl NssLogin {
    fn login(&mut self, pin: &[u8]) -> Result<(), Status> {
        let end = pin.iter().rposition(|b| *b != 0xFF).map_or(0, |i| i + 1);
        let password = pin.get(..end).unwrap_or_default();
        if self.db.check_password(password).is_err() {
            self.logout();
            return Err(WRONG_PASSWORD);
        }
        for key in &self.keys {
            if let Err(e) = key.unlock(password) {
                log::warn!(
                    "NSS key of \"{}\" cannot be used: {e}",
                    key.certificate.nickname
                );
            }
        }
        self.verified = true;
        Ok(())
    }
}

impl SecurityEnvironment for NssLogin {
    fn process(&mut self, cmd: &CommandView<'_>) -> Result<(), Status> {
        if cmd.ins() != INS_VERIFY {
            return Err(Status::InsNotSupported);
        }
        if (cmd.p1(), cmd.p2()) != (0x00, 0x00) {
            return Err(BAD_P1P2);
        }
        match (self.needs_login, cmd.data()) {
            (false, _) => Ok(()),
            (true, []) if self.verified => Ok(()),
            (true, []) => Err(Status::ReferencedDataNotFound),
            (true, pin) => self.login(pin),
        }
    }

    fn is_verified(&self) -> bool {
        !self.needs_login || self.verified
    }

    fn tries_left(&self) -> u8 {
        // NSS has no retry counter; report the card default for display.
        cac::pin::DEFAULT_PIN_TRIES
    }

    fn logout(&mut self) {
        self.verified = false;
        for key in &self.keys {
            key.lock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulus_bits() {
        assert_eq!(rsa_bits(&[0x80; 256]), Some(2048));
        assert_eq!(rsa_bits(&[0x01, 0x00]), Some(9));
        assert_eq!(rsa_bits(&[]), None);
    }

    #[test]
    fn missing_and_legacy_databases_are_refused_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = format!("sql:{}/none", dir.path().display());
        let e = NssDb::open(&missing).unwrap_err().to_string();
        assert!(e.contains("none"), "{e}");
        std::fs::write(dir.path().join("cert8.db"), b"x").unwrap();
        let e = NssDb::open(dir.path().to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("dbm"), "{e}");
        let e = NssDb::open("dbm:/x").unwrap_err().to_string();
        assert!(e.contains("dbm"), "{e}");
    }
}
