//! Errors: [`Error`] for database operations, [`DecodeError`] for the pure
//! byte-level decoders. Neither ever carries secret bytes.

use std::fmt;
use std::path::PathBuf;

/// Why a byte string could not be decoded or decrypted.
///
/// Returned by the pure decoders in [`crate::raw`]; [`Error::Corrupt`]
/// wraps it with the file, object and attribute it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The DER ended inside an element.
    Truncated,
    /// An element had another tag than the structure requires.
    UnexpectedTag {
        /// The tag the structure requires here.
        expected: u8,
        /// The tag found (0 if none was left).
        found: u8,
    },
    /// A DER length was indefinite, too long or out of range.
    BadLength,
    /// Bytes followed the end of a structure.
    TrailingData,
    /// An algorithm this crate does not implement (dotted OID).
    UnsupportedAlgorithm(String),
    /// An iteration count of 0 or above the configured maximum.
    IterationCount {
        /// The count in the value.
        count: u64,
        /// The largest count accepted.
        max: u32,
    },
    /// A field's value is out of range or inconsistent; the text says which.
    BadValue(&'static str),
    /// The decrypted bytes did not end in valid padding (wrong key or
    /// damaged ciphertext).
    BadPadding,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("DER ends inside an element"),
            Self::UnexpectedTag { expected, found } => {
                write!(f, "expected DER tag {expected:#04x}, found {found:#04x}")
            }
            Self::BadLength => f.write_str("invalid DER length"),
            Self::TrailingData => f.write_str("trailing bytes after a DER structure"),
            Self::UnsupportedAlgorithm(oid) => write!(f, "unsupported algorithm {oid}"),
            Self::IterationCount { count, max } => {
                write!(f, "iteration count {count} outside 1..={max}")
            }
            Self::BadValue(what) => write!(f, "invalid value: {what}"),
            Self::BadPadding => f.write_str("decryption gave invalid padding"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// An error from opening or reading an NSS database.
///
/// Every variant that concerns a file names it. None carries secret bytes.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The directory holds only (or the spec names) a legacy Berkeley-DB
    /// `dbm:` database (cert8.db / key3.db).
    LegacyDbm {
        /// The database directory.
        dir: PathBuf,
    },
    /// A database spec with a prefix other than `sql:` or `dbm:`.
    UnsupportedSpec {
        /// The spec as given.
        spec: String,
    },
    /// The directory or one of its database files does not exist.
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// The file could not be read (permissions, I/O).
    Io {
        /// The file.
        file: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not an SQLite 3 database.
    NotSqlite {
        /// The file.
        file: PathBuf,
    },
    /// A writer crashed mid-transaction and left a hot rollback journal
    /// (`FILE-journal`); read-only connections cannot roll it back.
    HotJournal {
        /// The database file whose journal is hot.
        file: PathBuf,
    },
    /// The database stayed locked by a writer for the whole busy timeout.
    Busy {
        /// The file.
        file: PathBuf,
    },
    /// The database is in WAL journal mode, which NSS never uses (its
    /// committed changes may be in `FILE-wal`, which is not read).
    Wal {
        /// The file.
        file: PathBuf,
    },
    /// A valid SQLite file using a feature this reader does not implement
    /// and NSS never writes (UTF-16, WITHOUT ROWID, generated columns…).
    UnsupportedSqlite {
        /// The file.
        file: PathBuf,
        /// Which feature.
        detail: String,
    },
    /// The SQLite structure is inconsistent (damaged or hostile file).
    Malformed {
        /// The file.
        file: PathBuf,
        /// What is wrong, and where (page number).
        detail: String,
    },
    /// A table or column NSS always writes is missing, or a row is malformed.
    Schema {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file exceeds a bound this crate puts on hostile input.
    TooLarge {
        /// The file.
        file: PathBuf,
        /// Which bound.
        detail: String,
    },
    /// The password does not decrypt the password-check record.
    WrongPassword {
        /// The key database.
        file: PathBuf,
    },
    /// The key database has no password record (`certutil -N` never ran).
    NoPasswordRecord {
        /// The key database.
        file: PathBuf,
    },
    /// A `token:nickname` whose token is not one of NSS's internal tokens.
    UnknownToken {
        /// The token name given.
        token: String,
    },
    /// No private key has the certificate's CKA_ID.
    NoPrivateKey {
        /// The key database.
        file: PathBuf,
        /// The certificate's nickname.
        nickname: String,
    },
    /// An attribute's integrity MAC row (`sig_key_…`) is missing.
    MacMissing {
        /// The key database (which holds every MAC).
        file: PathBuf,
        /// The object id.
        object: u32,
        /// The PKCS #11 attribute type.
        attribute: u32,
    },
    /// An attribute's integrity MAC does not verify: the value was altered.
    MacMismatch {
        /// The key database (which holds every MAC).
        file: PathBuf,
        /// The object id.
        object: u32,
        /// The PKCS #11 attribute type.
        attribute: u32,
    },
    /// A stored value could not be decoded or decrypted.
    Corrupt {
        /// The file holding the value.
        file: PathBuf,
        /// Where in the file, e.g. `object 0x2efa8917 attribute 0x123`.
        location: String,
        /// What failed.
        source: DecodeError,
    },
    /// A key type or curve this crate does not support.
    UnsupportedKey {
        /// The key database.
        file: PathBuf,
        /// What it is.
        detail: String,
    },
    /// The private key with the certificate's CKA_ID does not match the
    /// certificate's public key.
    KeyMismatch {
        /// The key database.
        file: PathBuf,
        /// The certificate's nickname.
        nickname: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LegacyDbm { dir } => write!(
                f,
                "{}: legacy Berkeley-DB (\"dbm:\", cert8.db/key3.db) NSS database, which is not \
                 supported; convert it to cert9.db/key4.db with a read-write NSS open of \
                 sql:{0}, e.g. `certutil -W -d sql:{0}` (enter the old password as the new one \
                 to keep it)",
                dir.display()
            ),
            Self::UnsupportedSpec { spec } => write!(
                f,
                "{spec}: unsupported NSS database spec; use sql:DIR or a plain directory"
            ),
            Self::NotFound { path } => write!(f, "{}: not found", path.display()),
            Self::Io { file, source } => write!(f, "{}: {source}", file.display()),
            Self::NotSqlite { file } => {
                write!(
                    f,
                    "{}: not an SQLite 3 database (no NSS sql: file)",
                    file.display()
                )
            }
            Self::HotJournal { file } => write!(
                f,
                "{0}: a writer crashed mid-transaction and left the hot journal {0}-journal; \
                 a read-only reader cannot roll it back (NSS fails the same way). As the \
                 file's owner, roll it back with one read-write open, e.g. \
                 `sqlite3 {0} 'PRAGMA integrity_check'`, or restore a backup",
                file.display()
            ),
            Self::Busy { file } => write!(
                f,
                "{}: locked by a writer for the whole busy timeout; retry later",
                file.display()
            ),
            Self::Wal { file } => write!(
                f,
                "{0}: the database is in SQLite WAL mode, which NSS never uses and this \
                 reader does not read; as its owner, switch it back with \
                 `sqlite3 {0} 'PRAGMA journal_mode=DELETE'`",
                file.display()
            ),
            Self::UnsupportedSqlite { file, detail } => write!(
                f,
                "{}: unsupported SQLite feature (NSS never writes it): {detail}",
                file.display()
            ),
            Self::Malformed { file, detail } => {
                write!(f, "{}: malformed SQLite database: {detail}", file.display())
            }
            Self::Schema { file, detail } => {
                write!(f, "{}: not an NSS database: {detail}", file.display())
            }
            Self::TooLarge { file, detail } => write!(f, "{}: {detail}", file.display()),
            Self::WrongPassword { file } => write!(f, "{}: wrong password", file.display()),
            Self::NoPasswordRecord { file } => write!(
                f,
                "{}: no password record; initialise the database with `certutil -N`",
                file.display()
            ),
            Self::UnknownToken { token } => write!(
                f,
                "unknown token \"{token}\": only the internal tokens \"NSS Certificate DB\" \
                 and \"NSS FIPS 140-2 Certificate DB\" hold certificates"
            ),
            Self::NoPrivateKey { file, nickname } => write!(
                f,
                "{}: no private key with the CKA_ID of certificate \"{nickname}\"",
                file.display()
            ),
            Self::MacMissing {
                file,
                object,
                attribute,
            } => write!(
                f,
                "{}: integrity MAC missing for object {object:#010x} attribute {attribute:#x}",
                file.display()
            ),
            Self::MacMismatch {
                file,
                object,
                attribute,
            } => write!(
                f,
                "{}: integrity MAC mismatch for object {object:#010x} attribute {attribute:#x} \
                 (the value was altered)",
                file.display()
            ),
            Self::Corrupt {
                file,
                location,
                source,
            } => {
                write!(f, "{}: {location}: {source}", file.display())
            }
            Self::UnsupportedKey { file, detail } => {
                write!(f, "{}: unsupported key: {detail}", file.display())
            }
            Self::KeyMismatch { file, nickname } => write!(
                f,
                "{}: the private key with the CKA_ID of \"{nickname}\" does not match the \
                 certificate's public key",
                file.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Corrupt { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file() {
        let e = Error::WrongPassword {
            file: "/d/key4.db".into(),
        };
        assert_eq!(e.to_string(), "/d/key4.db: wrong password");
        let e = Error::LegacyDbm { dir: "/d".into() };
        assert!(e.to_string().contains("certutil -W -d sql:/d"));
        let e = Error::MacMismatch {
            file: "k".into(),
            object: 0x2efa8917,
            attribute: 0x123,
        };
        assert!(e.to_string().contains("0x2efa8917 attribute 0x123"));
        let e = Error::Corrupt {
            file: "k".into(),
            location: "x".into(),
            source: DecodeError::IterationCount { count: 0, max: 5 },
        };
        assert_eq!(e.to_string(), "k: x: iteration count 0 outside 1..=5");
        assert!(std::error::Error::source(&e).is_some());
    }
}
