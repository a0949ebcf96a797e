//! Card directories: `card.toml` plus the certificate and key files it
//! names, read from disk with bounded sizes and turned into a [`Card`].

use core::fmt;
use std::path::{Path, PathBuf};

use cac::config::{self, ConfigError};
use cac::keys::KeyBackend;
use cac::Card;

/// Why a card directory cannot be loaded. The message names the file.
#[derive(Debug)]
pub struct CardDirError {
    /// The file at fault (or the directory).
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for CardDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

impl std::error::Error for CardDirError {}

/// Files a card directory may reference are read whole; anything larger
/// than this is refused before reading (certificates and keys are a few
/// KiB).
pub const MAX_FILE: u64 = 1 << 20;

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_FILE {
        return Err(format!(
            "{} bytes is larger than the {} byte limit",
            meta.len(),
            MAX_FILE
        ));
    }
    warn_if_readable_by_others(path, &meta);
    std::fs::read(path).map_err(|e| e.to_string())
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let is_key = path.extension().is_some_and(|e| e == "key");
    if is_key && meta.permissions().mode() & 0o077 != 0 {
        log::warn!(
            "{}: private key is accessible by group/others (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path, _: &std::fs::Metadata) {}

/// Loads the card described by `dir/card.toml`.
pub fn load(
    dir: &Path,
    backend: &dyn KeyBackend,
    rng: impl rand_core::CryptoRng + Send + 'static,
) -> Result<Card, CardDirError> {
    let toml_path = dir.join("card.toml");
    let text = read_bounded(&toml_path).map_err(|reason| CardDirError {
        path: toml_path.clone(),
        reason,
    })?;
    let text = String::from_utf8(text).map_err(|_| CardDirError {
        path: toml_path.clone(),
        reason: "not UTF-8 text".into(),
    })?;
    let mut read = |name: &str| {
        let p = Path::new(name);
        if p.is_absolute()
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err("must be a file inside the card directory".to_owned());
        }
        read_bounded(&dir.join(p))
    };
    config::load_card(&text, &mut read, backend, rng).map_err(|e| match e {
        ConfigError::File { name, reason } => CardDirError {
            path: dir.join(name),
            reason,
        },
        other => CardDirError {
            path: toml_path.clone(),
            reason: other
                .to_string()
                .trim_start_matches("card.toml: ")
                .to_owned(),
        },
    })
}

/// The PIN written in `dir/card.toml` (for display), if readable.
pub fn pin_of(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("card.toml")).ok()?;
    config::CardConfig::parse(&text).ok().map(|c| c.pin.pin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cac::keys::RustCrypto;

    use crate::embedded::default_card;

    fn write_default(dir: &Path) {
        for (name, bytes) in certs_fixtures::default_card::files() {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }

    #[test]
    fn loads_a_written_default_card() {
        let tmp = tempfile::tempdir().unwrap();
        write_default(tmp.path());
        let card = load(
            tmp.path(),
            &RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap();
        let embedded = default_card(&RustCrypto, rand_core::UnwrapErr(getrandom::SysRng)).unwrap();
        assert_eq!(card.card_id(), embedded.card_id());
        assert_eq!(pin_of(tmp.path()).as_deref(), Some("12345678"));
    }

    #[test]
    fn errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let e = load(
            tmp.path(),
            &RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap_err();
        assert_eq!(e.path, tmp.path().join("card.toml"));
        write_default(tmp.path());
        std::fs::write(tmp.path().join("id1.pem"), b"garbage").unwrap();
        let e = load(
            tmp.path(),
            &RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap_err();
        assert_eq!(e.path, tmp.path().join("id1.pem"));
        assert!(e.to_string().contains("neither PEM"), "{e}");
        std::fs::write(tmp.path().join("card.toml"), "[pin]\npin = \"1\"\n").unwrap();
        let e = load(
            tmp.path(),
            &RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap_err();
        assert!(e.to_string().contains("card.toml: pin.pin"), "{e}");
        std::fs::write(
            tmp.path().join("card.toml"),
            "[pin]\npin = \"123456\"\n[[identity]]\ncert = \"../etc/passwd\"\n",
        )
        .unwrap();
        let e = load(
            tmp.path(),
            &RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap_err();
        assert!(e.to_string().contains("inside the card directory"), "{e}");
    }
}
