//! What a card writes back into its directory, and reading it again.
//!
//! The PIV applet hands every persistent change to a [`cac::store::Store`]
//! before it answers `90 00`. [`DirStore`] makes each change durable in
//! the card directory, next to (never inside) `card.toml`:
//!
//! | file | holds | mode |
//! |---|---|---|
//! | `piv-credentials` | PIV PIN, PUK and both retry counters | 0600 |
//! | `piv-9A.key` … | a key generated on the card for that slot (PKCS#8 DER) | 0600 |
//! | `piv-obj-5FC105.bin` … | a data object written with PUT DATA (certificate, CHUID, …) | 0644 |
//!
//! Every write is atomic: a temporary file in the same directory (created
//! with its final mode), `fsync`, `rename` over the target, `fsync` of the
//! directory. A crash (`kill -9`) at any instant leaves the old file or the
//! new one, never a mix; stray temporary files (`.piv-*.tmp*`) are ignored
//! on load. [`load_card`] applies these files on top of `card.toml`.
//!
//! ```text
//!  PIV command ─► Change ─► DirStore::persist ─► .tmp ─fsync─► rename ─► fsync(dir) ─► 90 00
//!  dir::load ─► card.toml ─► + piv-credentials, piv-XX.key, piv-obj-*.bin ─► Card
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cac::config::{self, CardConfig, ConfigError};
use cac::keys::{load_private_key, KeyBackend};
use cac::pin::Pin;
use cac::store::{Change, Store, StoreError};
use cac::Card;

/// The credentials file.
pub const CREDENTIALS: &str = "piv-credentials";

/// A [`Store`] writing into a card directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    /// A store for the card directory `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> DirStore {
        DirStore { dir: dir.into() }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Digits of an `FF`-padded PIN block.
fn digits(block: &[u8]) -> Result<String, StoreError> {
    let d: Vec<u8> = block.iter().copied().take_while(|b| *b != 0xFF).collect();
    String::from_utf8(d)
        .ok()
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| StoreError("PIN block is not digits".into()))
}

impl Store for DirStore {
    fn persist(&mut self, change: &Change<'_>) -> Result<(), StoreError> {
        let result = match change {
            Change::PivCredentials {
                pin,
                pin_tries_left,
                puk,
                puk_tries_left,
            } => {
                let text = zeroize_string(format!(
                    "# written by the card: PIV PIN, PUK and retry counters\npin={}\npin_tries_left={pin_tries_left}\npuk={}\npuk_tries_left={puk_tries_left}\n",
                    digits(pin)?,
                    digits(puk)?
                ));
                write_atomic(&self.dir, CREDENTIALS, text.0.as_bytes(), true)
            }
            Change::PivKey { slot, pkcs8_der } => {
                write_atomic(&self.dir, &format!("piv-{slot:02X}.key"), pkcs8_der, true)
            }
            Change::PivObject { tag, object } => write_atomic(
                &self.dir,
                &format!("piv-obj-{}.bin", hex(tag)),
                object,
                false,
            ),
            other => return Err(StoreError(format!("unknown change {other:?}"))),
        };
        result.map_err(|e| {
            log::error!("{}: {e}", self.dir.display());
            StoreError(e.to_string())
        })
    }
}

/// Bytes overwritten on drop (PIN, PUK, private keys); best effort
/// without `unsafe`: the writes are kept alive by `black_box`.
struct Wiped<T: Into<Vec<u8>> + Default>(T);

fn zeroize_string(s: String) -> Wiped<String> {
    Wiped(s)
}

impl<T: Into<Vec<u8>> + Default> Drop for Wiped<T> {
    fn drop(&mut self) {
        let mut bytes: Vec<u8> = std::mem::take(&mut self.0).into();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `dir/name` atomically and durably; `secret` files get mode
/// 0600 from creation.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp{}-{n}", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, dir.join(name))?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Written keys as `(slot, file name)` and objects as `(tag, file name)`.
type Overlay = (Vec<(u8, String)>, Vec<(Vec<u8>, String)>);

/// What the card wrote back earlier: `(slot, key file)` and `(tag, object
/// file)` names found in `dir`.
fn overlay_files(dir: &Path) -> Overlay {
    let mut keys = Vec::new();
    let mut objects = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return (keys, objects);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(slot) = name
            .strip_prefix("piv-")
            .and_then(|s| s.strip_suffix(".key"))
            .and_then(|s| u8::from_str_radix(s, 16).ok())
        {
            keys.push((slot, name));
        } else if let Some(tag) = name
            .strip_prefix("piv-obj-")
            .and_then(|s| s.strip_suffix(".bin"))
            .and_then(unhex)
        {
            objects.push((tag, name));
        }
    }
    keys.sort();
    objects.sort();
    (keys, objects)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.is_empty() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn file_error(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::File {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// Parses `piv-credentials`.
fn credentials(text: &str) -> Result<(Pin, u8, Pin, u8), String> {
    let mut pin = None;
    let mut puk = None;
    let mut pin_left = None;
    let mut puk_left = None;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (k, v) = line.split_once('=').ok_or("expected key=value lines")?;
        match k {
            "pin" => pin = Some(Pin::new(v).map_err(|e| format!("pin: {e}"))?),
            "puk" => puk = Some(Pin::new(v).map_err(|e| format!("puk: {e}"))?),
            "pin_tries_left" => pin_left = v.parse().ok(),
            "puk_tries_left" => puk_left = v.parse().ok(),
            other => return Err(format!("unknown key {other}")),
        }
    }
    match (pin, pin_left, puk, puk_left) {
        (Some(a), Some(b), Some(c), Some(d)) => Ok((a, b, c, d)),
        _ => Err("needs pin, pin_tries_left, puk and puk_tries_left".into()),
    }
}

/// Builds the card of `dir` from its `card.toml` text, with what the card
/// wrote back applied and a [`DirStore`] attached when it has PIV.
pub fn load_card(
    dir: &Path,
    card_toml: &str,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    backend: &dyn KeyBackend,
    rng: impl rand_core::CryptoRng + Send + 'static,
) -> Result<Card, ConfigError> {
    let dir_owned = dir.to_owned();
    config::load_card_with(
        card_toml,
        &mut |n| read(n),
        backend,
        rng,
        |config: &CardConfig, builder| {
            if !matches!(config.card.profile.as_deref(), Some("piv" | "dual")) {
                return Ok(builder);
            }
            let mut options = config.piv.clone().unwrap_or_default().options()?;
            match fs::read_to_string(dir_owned.join(CREDENTIALS)) {
                Ok(text) => {
                    let text = zeroize_string(text);
                    let (pin, pin_left, puk, puk_left) =
                        credentials(&text.0).map_err(|e| file_error(CREDENTIALS, e))?;
                    options = options.restore_credentials(pin, pin_left, puk, puk_left);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(file_error(CREDENTIALS, e.to_string())),
            }
            let (keys, objects) = overlay_files(&dir_owned);
            for (slot, name) in keys {
                let bytes = Wiped(
                    fs::read(dir_owned.join(&name))
                        .map_err(|e| file_error(&name, e.to_string()))?,
                );
                let key = load_private_key(backend, &bytes.0)
                    .map_err(|e| file_error(&name, e.to_string()))?;
                options = options.restore_key(slot, key);
            }
            for (tag, name) in objects {
                let bytes = fs::read(dir_owned.join(&name))
                    .map_err(|e| file_error(&name, e.to_string()))?;
                options = options.restore_object(&tag, &bytes);
            }
            Ok(builder
                .piv(options)
                .store(Box::new(DirStore::new(dir_owned.clone()))))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_and_keep_modes() {
        let tmp = tempfile::tempdir().unwrap();
        write_atomic(tmp.path(), "a.key", b"one", true).unwrap();
        write_atomic(tmp.path(), "a.key", b"two", true).unwrap();
        assert_eq!(fs::read(tmp.path().join("a.key")).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(tmp.path().join("a.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.key"], "no temporary file left");
    }

    #[test]
    fn credentials_round_trip_through_the_store() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = DirStore::new(tmp.path());
        store
            .persist(&Change::PivCredentials {
                pin: b"654321\xFF\xFF",
                pin_tries_left: 2,
                puk: b"87654321",
                puk_tries_left: 3,
            })
            .unwrap();
        let text = fs::read_to_string(tmp.path().join(CREDENTIALS)).unwrap();
        let (pin, pin_left, puk, puk_left) = credentials(&text).unwrap();
        assert!(pin.matches(b"654321\xFF\xFF"));
        assert!(puk.matches(b"87654321"));
        assert_eq!((pin_left, puk_left), (2, 3));
        store
            .persist(&Change::PivObject {
                tag: &[0x5F, 0xC1, 0x05],
                object: &[0x53, 0x00],
            })
            .unwrap();
        let (keys, objects) = overlay_files(tmp.path());
        assert!(keys.is_empty());
        assert_eq!(
            objects,
            [(vec![0x5F, 0xC1, 0x05], "piv-obj-5FC105.bin".to_owned())]
        );
        assert!(credentials("pin=12\n").is_err());
    }
}
