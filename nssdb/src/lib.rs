//! Reads NSS `sql:` databases (cert9.db + key4.db) without linking NSS:
//! finds a certificate by nickname and decrypts its private key to
//! PKCS #8, checking every integrity MAC NSS would.
//!
//! ```text
//!  "sql:DIR"                 each file read whole, without a lock, then closed
//!     │       ┌───────────┐  ┌──────────────────────────────────────────┐
//!     ├─────► │ cert9.db  │─►│ nssPublic rows ─► Certificate (nickname, │
//!     │       └───────────┘  │                    DER, CKA_ID, validity)│
//!     │       ┌───────────┐  │ nssPrivate rows ─► key objects           │
//!     └─────► │ key4.db   │─►│ metaData ─► password record, sig_ MACs   │
//!             └───────────┘  └──────────────────────────────────────────┘
//!                                   Database (in memory, no locks held)
//!  password ─► passKey = SHA-1(globalSalt ‖ password)
//!           ─► PBKDF2 per value ─► AES-256-CBC (or legacy 3DES) plaintext
//!           ─► HMAC-SHA256 MAC check ─► RSA / EC numbers
//!           ─► match with the certificate's key ─► PKCS #8 DER (zeroized)
//! ```
//!
//! Supported: PBES2 (PBKDF2-HMAC-SHA256 + AES-256-CBC with NSS's IV
//! quirk), the PKCS #12 SHA-1 + 3DES PBE that databases migrated from
//! `dbm:` keep, SHA-1 and SHA-384 pass keys, RSA and EC P-256 / P-384
//! keys. Not supported: the legacy Berkeley-DB `dbm:` format itself
//! (refused with a conversion hint), other key types and curves, writing.
//!
//! # Example
//!
//! [`Database::from_raw`] builds a database from rows without touching
//! files (what [`Database::open`] does after reading them):
//!
//! ```
//! use nssdb::raw::{RawRow, RawTable};
//! use nssdb::Database;
//!
//! // A certificate object: CKA_CLASS = 1, CKA_LABEL = "cert1", CKA_VALUE.
//! let public = RawTable {
//!     columns: vec!["a0".into(), "a3".into(), "a11".into()],
//!     rows: vec![RawRow {
//!         id: 0x2efa891a,
//!         values: vec![Some(vec![0, 0, 0, 1]), Some(b"cert1".to_vec()), Some(vec![0x30, 0x00])],
//!     }],
//! };
//! let db = Database::from_raw("cert9.db".into(), "key4.db".into(), public, RawTable::default(), vec![])?;
//! let cert = db.find_certificate_at("NSS Certificate DB:cert1", 0)?.expect("found");
//! assert_eq!(cert.der, [0x30, 0x00]);
//! assert!(db.find_certificate_at("cert2", 0)?.is_none());
//! assert!(db.find_certificate_at("Some Token:cert1", 0).is_err());
//! # Ok::<(), nssdb::Error>(())
//! ```
//!
//! With files:
//!
//! ```no_run
//! let db = nssdb::Database::open("sql:/etc/pki/nssdb")?;
//! if let Some(cert) = db.find_certificate("cert1")? {
//!     let pkcs8 = db.private_key_pkcs8(&cert, b"secret123")?;
//!     println!("{} bytes of PKCS #8", pkcs8.len());
//! }
//! # Ok::<(), nssdb::Error>(())
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod asn1;
mod attr;
mod db;
mod error;
mod key;
mod mac;
mod pbe;
mod sqlfile;
mod sqlite;
mod x509;

use std::path::{Path, PathBuf};

pub use db::{Certificate, Database};
pub use error::{DecodeError, Error};

/// The pure, file-free layers: attribute decoding, encrypted values, MACs,
/// key assembly and the row types [`Database::from_raw`] takes. For
/// fuzzing, tests and tools; [`Database`] is the normal entry point.
pub mod raw {
    pub use crate::attr::{
        column_attribute, decode_ulong, decode_value, is_private_attribute, CKA_CERTIFICATE_TYPE,
        CKA_CLASS, CKA_COEFFICIENT, CKA_EC_PARAMS, CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_ID,
        CKA_KEY_TYPE, CKA_LABEL, CKA_MODULUS, CKA_PRIME_1, CKA_PRIME_2, CKA_PRIVATE_EXPONENT,
        CKA_PUBLIC_EXPONENT, CKA_VALUE, CKC_X_509, CKK_EC, CKK_RSA, CKO_CERTIFICATE,
        CKO_PRIVATE_KEY, EXPLICIT_EMPTY,
    };
    pub use crate::db::{RawMeta, RawRow, RawTable, MAX_COLUMNS, MAX_ROWS, MAX_TOTAL, MAX_VALUE};
    pub use crate::key::{Curve, EcKey, PublicKey, RsaParts, P256_PARAMS, P384_PARAMS};
    pub use crate::mac::{mac_row_id, MacTable, Pbmac1, FALLBACK_ID_BITS};
    pub use crate::pbe::{EncryptedValue, PassKey, DEFAULT_MAX_ITERATIONS};
    pub use crate::x509::CertInfo;

    /// A consistent copy of a whole SQLite database file, read without
    /// taking a lock (a concurrent writer's commit is waited for, never
    /// blocked); what [`Database::open`](crate::Database::open) parses.
    pub fn snapshot(file: &std::path::Path) -> Result<Vec<u8>, crate::Error> {
        crate::sqlite::snapshot(file)
    }

    /// Parses the bytes of a whole cert9.db (its `nssPublic` table), as
    /// [`Database::open`](crate::Database::open) does after reading the
    /// file; errors name `file`.
    pub fn parse_cert_db(file: &std::path::Path, bytes: &[u8]) -> Result<RawTable, crate::Error> {
        crate::sqlite::parse_cert_db(file, bytes)
    }

    /// Parses the bytes of a whole key4.db (its `nssPrivate` and
    /// `metaData` tables).
    pub fn parse_key_db(
        file: &std::path::Path,
        bytes: &[u8],
    ) -> Result<(RawTable, Vec<RawMeta>), crate::Error> {
        crate::sqlite::parse_key_db(file, bytes)
    }
}

/// Where a database spec points.
fn database_dir(spec: &str) -> Result<PathBuf, Error> {
    if let Some(dir) = spec.strip_prefix("dbm:") {
        return Err(Error::LegacyDbm { dir: dir.into() });
    }
    if spec.starts_with("extern:") || spec.starts_with("multiaccess:") {
        return Err(Error::UnsupportedSpec {
            spec: spec.to_string(),
        });
    }
    Ok(spec.strip_prefix("sql:").unwrap_or(spec).into())
}

impl Database {
    /// Opens `sql:DIR` or a plain `DIR` holding cert9.db and key4.db,
    /// reading both whole (read-only, each a consistent snapshot taken
    /// without a lock) and closing them. A `dbm:` spec, or a directory with only cert8.db /
    /// key3.db, gives [`Error::LegacyDbm`].
    pub fn open(spec: &str) -> Result<Database, Error> {
        let dir = database_dir(spec)?;
        if !dir.is_dir() {
            return Err(Error::NotFound { path: dir });
        }
        let cert_file = dir.join("cert9.db");
        let key_file = dir.join("key4.db");
        let exists = |name: &str| dir.join(name).exists();
        if !(cert_file.exists() && key_file.exists()) && (exists("cert8.db") || exists("key3.db")) {
            return Err(Error::LegacyDbm { dir });
        }
        for f in [&cert_file, &key_file] {
            if !f.exists() {
                return Err(Error::NotFound { path: f.clone() });
            }
        }
        Self::open_files(&cert_file, &key_file)
    }

    /// Opens an explicit cert9.db / key4.db pair (e.g. with an NSS file
    /// prefix).
    pub fn open_files(cert_file: &Path, key_file: &Path) -> Result<Database, Error> {
        let public = sqlite::read_cert_db(cert_file)?;
        let (private, meta) = sqlite::read_key_db(key_file)?;
        Database::from_raw(
            cert_file.to_path_buf(),
            key_file.to_path_buf(),
            public,
            private,
            meta,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert!(
            matches!(database_dir("dbm:/x"), Err(Error::LegacyDbm { dir }) if dir == Path::new("/x"))
        );
        assert!(matches!(
            database_dir("extern:/x"),
            Err(Error::UnsupportedSpec { .. })
        ));
        assert!(matches!(
            database_dir("multiaccess:/x"),
            Err(Error::UnsupportedSpec { .. })
        ));
        assert_eq!(database_dir("sql:/x").unwrap(), Path::new("/x"));
        assert_eq!(database_dir("/x:y").unwrap(), Path::new("/x:y"));
    }

    #[test]
    fn open_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        assert!(matches!(
            Database::open(&format!("{d}/none")),
            Err(Error::NotFound { .. })
        ));
        assert!(
            matches!(Database::open(d), Err(Error::NotFound { path }) if path.ends_with("cert9.db"))
        );
        std::fs::write(dir.path().join("key3.db"), [0, 6, 0x15, 0x61]).unwrap();
        assert!(matches!(
            Database::open(&format!("sql:{d}")),
            Err(Error::LegacyDbm { .. })
        ));
        std::fs::write(dir.path().join("cert9.db"), b"not sqlite at all").unwrap();
        std::fs::write(dir.path().join("key4.db"), b"not sqlite at all").unwrap();
        assert!(
            matches!(Database::open(d), Err(Error::NotSqlite { file }) if file.ends_with("cert9.db"))
        );
    }
}
