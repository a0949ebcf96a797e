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

/// Loads the card described by `dir/card.toml`. A `p12 =` identity
/// without `p12_password_env` is tried with the empty password (see
/// [`load_asking`]).
pub fn load(
    dir: &Path,
    backend: &dyn KeyBackend,
    rng: impl rand_core::CryptoRng + Send + 'static,
) -> Result<Card, CardDirError> {
    load_asking(dir, backend, rng, &mut |_| None)
}

/// What a name in `card.toml` reads: a file inside the card directory,
/// or a member of a `p12 =` file.
fn read_member<'a>(
    dir: &'a Path,
    text: &str,
    ask: &'a mut dyn FnMut(&Path) -> Option<PasswordText>,
) -> impl FnMut(&str) -> Result<Vec<u8>, String> + 'a {
    #[cfg(feature = "p12")]
    let mut p12s = config::CardConfig::parse(text)
        .ok()
        .map(|c| crate::p12::DirP12s::new(dir, &c));
    #[cfg(not(feature = "p12"))]
    let _ = (text, &ask);
    move |name: &str| {
        #[cfg_attr(not(feature = "p12"), allow(unused_mut))]
        let mut plain = |name: &str| {
            let p = Path::new(name);
            if p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err("must be a file inside the card directory".to_owned());
            }
            read_bounded(&dir.join(p))
        };
        if !name.contains('\0') {
            return plain(name);
        }
        #[cfg(feature = "p12")]
        if let Some(p12s) = p12s.as_mut() {
            return p12s.read(name, &mut plain, ask);
        }
        Err("PKCS#12 identities need vcac-sources' `p12` feature".to_owned())
    }
}

/// A password typed or taken from the environment (zeroized on drop
/// with the `p12` feature).
#[cfg(feature = "p12")]
pub type PasswordText = zeroize::Zeroizing<String>;
/// A password typed or taken from the environment.
#[cfg(not(feature = "p12"))]
pub type PasswordText = String;

/// [`load`], asking `ask` for the password of each `p12 =` file whose
/// identity names no `p12_password_env` (`None`: try the empty password).
pub fn load_asking(
    dir: &Path,
    backend: &dyn KeyBackend,
    rng: impl rand_core::CryptoRng + Send + 'static,
    ask: &mut dyn FnMut(&Path) -> Option<PasswordText>,
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
    let mut read = read_member(dir, &text, ask);
    crate::persist::load_card(dir, &text, &mut read, backend, rng).map_err(|e| match e {
        ConfigError::File { name, reason } => CardDirError {
            path: dir.join(config::file_of(&name)),
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

/// Loads the card of `dir/card.toml` with only some of its identities:
/// `select` lists `[[identity]]` indices (0-based) in the order their PKI
/// applets should take; indices the profile does not have are skipped.
/// `Ok(None)` when none is left. PIN policy, ATR and the other `[card]`
/// settings come from the profile. (The libcacard drop-in uses this for
/// certificate nicknames `id0`, `id1`, ….)
pub fn load_selected(
    dir: &Path,
    select: &[usize],
    backend: &dyn KeyBackend,
    rng: impl rand_core::CryptoRng + Send + 'static,
) -> Result<Option<Card>, CardDirError> {
    let toml_path = dir.join("card.toml");
    let fail = |path: PathBuf, reason: String| CardDirError { path, reason };
    let text = read_bounded(&toml_path).map_err(|r| fail(toml_path.clone(), r))?;
    let text =
        String::from_utf8(text).map_err(|_| fail(toml_path.clone(), "not UTF-8 text".into()))?;
    let mut config =
        config::CardConfig::parse(&text).map_err(|e| fail(toml_path.clone(), e.to_string()))?;
    let chosen: Vec<_> = select
        .iter()
        .filter_map(|i| config.identities.get(*i).cloned())
        .collect();
    if chosen.is_empty() {
        return Ok(None);
    }
    config.identities = chosen;
    let mut no_ask = |_: &Path| None;
    let mut read = read_member(dir, &text, &mut no_ask);
    let builder = config.builder(&mut read, backend).map_err(|e| match e {
        ConfigError::File { name, reason } => fail(dir.join(config::file_of(&name)), reason),
        other => fail(toml_path.clone(), other.to_string()),
    })?;
    builder
        .build(rng)
        .map(Some)
        .map_err(|e| fail(toml_path.clone(), e.to_string()))
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
    fn loads_selected_identities() {
        let tmp = tempfile::tempdir().unwrap();
        write_default(tmp.path());
        let full = load(
            tmp.path(),
            &RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap();
        let mut two = load_selected(
            tmp.path(),
            &[2, 9, 0],
            &RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap()
        .unwrap();
        assert_ne!(two.card_id(), full.card_id());
        assert_eq!(two.pin_tries_left(), full.pin_tries_left());
        two.power_on();
        // PKI applets 0 and 1 exist (identities 2 and 0), applet 2 does not.
        for (i, sw) in [(0u8, [0x61u8, 0x0D]), (1, [0x61, 0x0D]), (2, [0x6A, 0x82])] {
            let r = two.transmit_vec(&[
                0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, i,
            ]);
            assert_eq!(r, sw, "PKI {i}");
        }
        assert!(load_selected(
            tmp.path(),
            &[7],
            &RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng)
        )
        .unwrap()
        .is_none());
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
