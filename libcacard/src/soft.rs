//! Where soft cards come from: the `db=` of the options names a vcac card
//! directory or an NSS `sql:` database; certificate nicknames select the
//! identities. The loading itself is `vcac_sources`'.

use std::path::{Path, PathBuf};

use std::sync::Arc;
use vcac_sources::nss::NssDb;

use cac::apdu::CommandView;
use cac::keys::{KeyHandle, RustCrypto};
use cac::security::SecurityEnvironment;
use cac::{Card, CardBuilder, CardError, Identity, PinPolicy, Status};

/// The slot name libcacard's NSS calls its internal key slot; an empty
/// SLOT means the same.
const INTERNAL_SLOT: &str = "NSS User Private Key and Certificate Services";

/// An opened `db=`.
pub(crate) enum Source {
    /// A vcac card directory (`card.toml`); nicknames `id0`, `id1`, ….
    Dir(PathBuf),
    /// An NSS `sql:` database; nicknames are certificate nicknames and the
    /// PIN is the database password.
    Nss(NssDb),
}

impl Source {
    /// Opens `sql:DIR`, `DIR`, or a vcac card directory.
    pub(crate) fn open(spec: &str) -> Result<Source, String> {
        if !spec.starts_with("dbm:") {
            let path = Path::new(spec.strip_prefix("sql:").unwrap_or(spec));
            if path.join("card.toml").is_file() {
                return Ok(Source::Dir(path.to_path_buf()));
            }
        }
        NssDb::open(spec)
            .map(Source::Nss)
            .map_err(|e| e.to_string())
    }

    /// True when `slot` names the database's key slot.
    pub(crate) fn has_slot(&self, slot: &str) -> bool {
        slot.is_empty() || slot == INTERNAL_SLOT
    }

    /// The card for these certificate nicknames (unknown ones skipped), or
    /// `None` if none is found.
    pub(crate) fn card(&self, nicknames: &[String]) -> Result<Option<Card>, String> {
        match self {
            Source::Dir(dir) => {
                let select: Vec<usize> = nicknames.iter().filter_map(|n| dir_index(n)).collect();
                vcac_sources::dir::load_selected(
                    dir,
                    &select,
                    &RustCrypto,
                    rand_core::UnwrapErr(getrandom::SysRng),
                )
                .map_err(|e| e.to_string())
            }
            Source::Nss(db) => db
                .card(
                    nicknames,
                    Arc::new(RustCrypto),
                    rand_core::UnwrapErr(getrandom::SysRng),
                )
                .map_err(|e| e.to_string()),
        }
    }

    /// True when the card's PIN has a retry counter to report
    /// (`vcard_emul_get_login_count`): card directories do, NSS does not.
    pub(crate) fn counts_tries(&self) -> bool {
        matches!(self, Source::Dir(_))
    }
}

/// `idN` → N.
fn dir_index(nickname: &str) -> Option<usize> {
    let digits = nickname.strip_prefix("id")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A card's security when nothing holds a PIN (libcacard's password-less
/// soft token): every VERIFY with P1 P2 `00 00` logs in, and VERIFY
/// without data reports logged in.
#[derive(Debug, Default)]
pub(crate) struct Passwordless;

impl SecurityEnvironment for Passwordless {
    fn process(&mut self, cmd: &CommandView<'_>) -> Result<(), Status> {
        match (cmd.ins(), cmd.p1(), cmd.p2()) {
            (cac::security::INS_VERIFY, 0x00, 0x00) => Ok(()),
            // libcacard's answer to other P1 P2.
            (cac::security::INS_VERIFY, _, _) => Err(Status::Other(0x6A00)),
            _ => Err(Status::FunctionNotSupported),
        }
    }

    fn is_verified(&self) -> bool {
        true
    }

    fn tries_left(&self) -> u8 {
        cac::pin::DEFAULT_PIN_TRIES
    }

    fn logout(&mut self) {}
}

/// A certificate (DER) and its key, if any.
pub(crate) type Part = (Vec<u8>, Option<Arc<dyn KeyHandle>>);

/// A CAC card from certificates (DER) and optional keys, with no PIN
/// (`cac_card_init` from C).
pub(crate) fn card_from_parts(parts: Vec<Part>) -> Result<Card, CardError> {
    // The policy is required by the builder but unused: the security
    // environment replaces it.
    let policy = cac::Pin::new("00000000")
        .map(PinPolicy::new)
        .map_err(|_| CardError::IdentityCount(0))?;
    let mut builder = CardBuilder::new(policy)
        .security(Box::new(Passwordless))
        .exact_le(true);
    for (der, key) in parts {
        builder = builder.identity(match key {
            Some(k) => Identity::new(der, k),
            None => Identity::certificate_only(der),
        });
    }
    builder.build(rand_core::UnwrapErr(getrandom::SysRng))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames() {
        assert_eq!(dir_index("id0"), Some(0));
        assert_eq!(dir_index("id12"), Some(12));
        for n in ["id", "idx", "cert1", "ID0", "id-1", ""] {
            assert_eq!(dir_index(n), None, "{n}");
        }
    }

    #[test]
    fn sources() {
        assert!(Source::open("dbm:/x").err().unwrap().contains("dbm"));
        assert!(Source::open("sql:/nonexistent/x").err().is_some());
        assert!(Source::open("/nonexistent/x").err().is_some());
        let tmp = tempfile::tempdir().unwrap();
        assert!(Source::open(tmp.path().to_str().unwrap()).err().is_some());
        std::fs::write(tmp.path().join("card.toml"), "").unwrap();
        let spec = format!("sql:{}", tmp.path().display());
        let s = Source::open(&spec).unwrap();
        assert!(s.has_slot("") && s.has_slot(INTERNAL_SLOT) && !s.has_slot("Other"));
    }
}
