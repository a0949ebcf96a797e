//! The crate's error type.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while building a PKI or writing a card
/// directory.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A builder or card option is out of range or malformed; the text says
    /// which option and why.
    InvalidOption(String),
    /// Key generation, DER encoding or signing failed; the text names the
    /// object being made (`"ca"`, `"id2"`, `"crl"`, ...) and the cause.
    Crypto(String),
    /// A file of the card directory already exists and `force` was not given.
    Exists(PathBuf),
    /// Reading or writing a file or directory failed.
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidOption(why) => write!(f, "invalid option: {why}"),
            Error::Crypto(why) => write!(f, "crypto error: {why}"),
            Error::Exists(path) => write!(
                f,
                "{} already exists (pass force to overwrite)",
                path.display()
            ),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand used inside the crate: wrap any displayable error as
/// [`Error::Crypto`] with the name of the object being made.
pub(crate) fn crypto(what: &str, err: impl fmt::Display) -> Error {
    Error::Crypto(format!("{what}: {err}"))
}
