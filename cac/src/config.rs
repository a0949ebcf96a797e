//! The card profile, `card.toml`, and building a card from it.
//!
//! ```toml
//! [card]
//! atr = "3B7A18000073667465206364313434"   # optional, hex
//! # card_id = "00112233445566778899"      # optional, 8-16 bytes hex
//! # exact_le = false                      # optional, answer 6C xx like a strict T=0 card
//!
//! [pin]
//! pin = "12345678"        # 6-8 digits
//! max_tries = 3           # optional, 1-15
//! # puk = "87654321"      # optional; enables RESET RETRY COUNTER
//! # puk_max_tries = 10
//!
//! [[identity]]            # PKI applet 0, then 1, ... (1 to 16)
//! cert = "id0.pem"        # PEM or DER, relative to the card directory
//! key = "id0.key"         # PKCS#8 or PKCS#1, PEM or DER; optional
//! # compress = true       # store the certificate zlib-compressed
//! # piv_slot = "9A"       # PIV key slot (profiles piv and dual)
//! ```
//!
//! `[card] profile = "piv"` or `"dual"` adds the PIV applet; its `[piv]`
//! section is described in [`PivSection`].
//!
//! Parsing does no I/O: [`load_card`] takes a closure that returns a
//! file's bytes, so the caller decides where files come from (a directory,
//! an embedded fixture, a test's memory).

use core::fmt;

use serde::Deserialize;

mod piv;
pub use piv::PivSection;
mod faults;
pub use faults::{FaultsSection, StatusFault};

use crate::atr::Atr;
use crate::card::{Card, CardBuilder, Identity};
use crate::keys::{load_private_key, KeyBackend};
use crate::pin::{Pin, PinPolicy, DEFAULT_PIN_TRIES, DEFAULT_PUK_TRIES};

/// A parsed `card.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CardConfig {
    /// `[card]`.
    #[serde(default)]
    pub card: CardSection,
    /// `[pin]`.
    pub pin: PinSection,
    /// `[[identity]]`, in PKI order.
    #[serde(rename = "identity", default)]
    pub identities: Vec<IdentitySection>,
    /// `[piv]` (profiles `piv` and `dual`).
    #[serde(default)]
    pub piv: Option<PivSection>,
    /// `[faults]`: client-robustness faults a card source applies (the
    /// card itself ignores them).
    #[serde(default)]
    pub faults: Option<FaultsSection>,
}

/// `[card]`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CardSection {
    /// ATR, hex.
    pub atr: Option<String>,
    /// Card ID (serial), hex.
    pub card_id: Option<String>,
    /// Answer `6C xx` to a too-long Le.
    pub exact_le: Option<bool>,
    /// `cac` (default), `piv` or `dual`.
    pub profile: Option<String>,
}

/// `[pin]`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PinSection {
    /// The PIN, 6–8 digits.
    pub pin: String,
    /// Wrong PINs before blocking (default 3).
    pub max_tries: Option<u8>,
    /// Optional PUK, 6–8 digits.
    pub puk: Option<String>,
    /// Wrong PUKs before the PUK blocks (default 10).
    pub puk_max_tries: Option<u8>,
}

impl fmt::Debug for PinSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinSection")
            .field("max_tries", &self.max_tries)
            .field("puk", &self.puk.as_ref().map(|_| "<redacted>"))
            .field("puk_max_tries", &self.puk_max_tries)
            .finish_non_exhaustive()
    }
}

/// `[[identity]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// Certificate file (empty for a `p12` identity until [`CardConfig::parse`]
    /// names its members, see [`P12_CERT`]).
    #[serde(default)]
    pub cert: String,
    /// Private key file.
    pub key: Option<String>,
    /// Store compressed.
    #[serde(default)]
    pub compress: bool,
    /// PIV key slot, hex (`9A`).
    pub piv_slot: Option<String>,
    /// PKCS#12 file holding the certificate and the key (instead of
    /// `cert` and `key`).
    pub p12: Option<String>,
    /// Environment variable holding the PKCS#12 password.
    pub p12_password_env: Option<String>,
}

/// For a `p12 = "F"` identity, [`CardConfig::builder`] asks its `read`
/// closure for `F` + this suffix to get the certificate, and `F` +
/// [`P12_KEY`] to get the private key: the card source decodes the
/// PKCS#12 file (`cac` does not). NUL cannot occur in a file name.
pub const P12_CERT: &str = "\0cert";
/// See [`P12_CERT`].
pub const P12_KEY: &str = "\0key";

/// The file a `read` name stands for (the PKCS#12 file for its members).
pub fn file_of(name: &str) -> &str {
    name.split('\0').next().unwrap_or(name)
}

/// Why a card profile cannot be loaded. Every variant names what to fix.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `card.toml` is not valid TOML or has unknown or missing fields.
    Toml(String),
    /// A field has a bad value.
    Field {
        /// Dotted field name, e.g. `pin.pin` or `identity[1].cert`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A referenced file cannot be read or parsed.
    File {
        /// The file name as written in `card.toml`.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The card cannot be built from otherwise valid parts.
    Card(crate::card::CardError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Toml(m) => write!(f, "card.toml: {m}"),
            ConfigError::Field { field, reason } => write!(f, "card.toml: {field}: {reason}"),
            ConfigError::File { name, reason } => write!(f, "{}: {reason}", file_of(name)),
            ConfigError::Card(e) => write!(f, "card.toml: {e}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl CardConfig {
    /// Parses `card.toml` text.
    pub fn parse(text: &str) -> Result<CardConfig, ConfigError> {
        let mut config: CardConfig =
            toml::from_str(text).map_err(|e| ConfigError::Toml(e.message().to_owned()))?;
        for (i, id) in config.identities.iter_mut().enumerate() {
            let field = |f: &str, reason: &str| ConfigError::Field {
                field: format!("identity[{i}].{f}"),
                reason: reason.to_owned(),
            };
            match &id.p12 {
                Some(_) if !id.cert.is_empty() || id.key.is_some() => {
                    return Err(field("p12", "give either p12 or cert/key, not both"))
                }
                Some(p12) if p12.is_empty() || p12.contains('\0') => {
                    return Err(field("p12", "not a file name"))
                }
                Some(p12) => {
                    id.cert = format!("{p12}{P12_CERT}");
                    id.key = Some(format!("{p12}{P12_KEY}"));
                }
                None if id.cert.is_empty() => return Err(field("cert", "missing (or give p12)")),
                None if id.p12_password_env.is_some() => {
                    return Err(field("p12_password_env", "set without p12"))
                }
                None => {}
            }
        }
        Ok(config)
    }

    /// The PIN policy the profile describes.
    pub fn pin_policy(&self) -> Result<PinPolicy, ConfigError> {
        let field = |field: &str, reason: String| ConfigError::Field {
            field: field.to_owned(),
            reason,
        };
        let pin = Pin::new(&self.pin.pin).map_err(|e| field("pin.pin", e.to_string()))?;
        let mut policy = PinPolicy::new(pin)
            .with_max_tries(self.pin.max_tries.unwrap_or(DEFAULT_PIN_TRIES))
            .map_err(|e| field("pin.max_tries", e.to_string()))?;
        if let Some(puk) = &self.pin.puk {
            let puk = Pin::new(puk).map_err(|e| field("pin.puk", e.to_string()))?;
            policy = policy
                .with_puk(puk, self.pin.puk_max_tries.unwrap_or(DEFAULT_PUK_TRIES))
                .map_err(|e| field("pin.puk_max_tries", e.to_string()))?;
        } else if self.pin.puk_max_tries.is_some() {
            return Err(field("pin.puk_max_tries", "set without pin.puk".into()));
        }
        Ok(policy)
    }

    /// A [`CardBuilder`] with everything the profile describes; `read`
    /// returns the bytes of a file named in the profile.
    pub fn builder(
        &self,
        read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
        backend: &dyn KeyBackend,
    ) -> Result<CardBuilder, ConfigError> {
        let mut builder = CardBuilder::new(self.pin_policy()?);
        if let Some(atr) = &self.card.atr {
            let bytes = parse_hex("card.atr", atr)?;
            let atr = Atr::new(&bytes).map_err(|e| ConfigError::Field {
                field: "card.atr".into(),
                reason: e.to_string(),
            })?;
            builder = builder.atr(atr);
        }
        if let Some(id) = &self.card.card_id {
            let bytes = parse_hex("card.card_id", id)?;
            if !(8..=16).contains(&bytes.len()) {
                return Err(ConfigError::Field {
                    field: "card.card_id".into(),
                    reason: format!("must have 8 to 16 bytes, got {}", bytes.len()),
                });
            }
            builder = builder.card_id(&bytes);
        }
        builder = builder.exact_le(self.card.exact_le.unwrap_or(false));
        let profile = piv::profile(self.card.profile.as_deref())?;
        if profile.has_piv() {
            builder = builder
                .profile(profile)
                .piv(self.piv.clone().unwrap_or_default().options()?);
        }
        if self.identities.is_empty() || self.identities.len() > crate::card::MAX_IDENTITIES {
            return Err(ConfigError::Field {
                field: "identity".into(),
                reason: format!(
                    "a card needs 1 to {} [[identity]] entries, got {}",
                    crate::card::MAX_IDENTITIES,
                    self.identities.len()
                ),
            });
        }
        for (index, section) in self.identities.iter().enumerate() {
            let file = |name: &str, reason: String| ConfigError::File {
                name: name.to_owned(),
                reason,
            };
            let cert_bytes = read(&section.cert).map_err(|e| file(&section.cert, e))?;
            let cert = certificate_der(&cert_bytes).map_err(|e| file(&section.cert, e))?;
            let identity = match &section.key {
                Some(key_name) => {
                    let key_bytes =
                        zeroize::Zeroizing::new(read(key_name).map_err(|e| file(key_name, e))?);
                    let key = load_private_key(backend, &key_bytes)
                        .map_err(|e| file(key_name, e.to_string()))?;
                    Identity::new(cert, key)
                }
                None => Identity::certificate_only(cert),
            };
            let mut identity = identity.compressed(section.compress);
            if let Some(slot) = &section.piv_slot {
                identity = identity.piv_slot(piv::slot(index, slot)?);
            }
            builder = builder.identity(identity);
        }
        Ok(builder)
    }
}

/// Parses `card.toml` and builds the card, reading files through `read`.
pub fn load_card(
    card_toml: &str,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    backend: &dyn KeyBackend,
    rng: impl rand_core::CryptoRng + Send + 'static,
) -> Result<Card, ConfigError> {
    load_card_with(card_toml, read, backend, rng, |_, b| Ok(b))
}

/// [`load_card`] with a last say on the builder before the card is built
/// (a host restores persisted PIV state and attaches its store here).
pub fn load_card_with(
    card_toml: &str,
    read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
    backend: &dyn KeyBackend,
    rng: impl rand_core::CryptoRng + Send + 'static,
    customize: impl FnOnce(&CardConfig, CardBuilder) -> Result<CardBuilder, ConfigError>,
) -> Result<Card, ConfigError> {
    let config = CardConfig::parse(card_toml)?;
    let builder = config.builder(read, backend)?;
    customize(&config, builder)?
        .build(rng)
        .map_err(|e| match e {
            crate::card::CardError::KeyMismatch { index } => ConfigError::File {
                name: config
                    .identities
                    .get(index)
                    .and_then(|i| i.key.clone())
                    .unwrap_or_default(),
                reason: format!(
                    "does not match the public key of {}",
                    config
                        .identities
                        .get(index)
                        .map(|i| i.cert.as_str())
                        .unwrap_or("its certificate")
                ),
            },
            crate::card::CardError::Certificate { index, reason } => ConfigError::File {
                name: config
                    .identities
                    .get(index)
                    .map(|i| i.cert.clone())
                    .unwrap_or_default(),
                reason: format!("not an X.509 certificate: {reason}"),
            },
            other => ConfigError::Card(other),
        })
}

/// A certificate from PEM (`CERTIFICATE`) or DER.
pub fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let trimmed = bytes.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let (label, der) = der::pem::decode_vec(trimmed).map_err(|e| format!("PEM: {e}"))?;
        if label != "CERTIFICATE" {
            return Err(format!("PEM label \"{label}\" is not CERTIFICATE"));
        }
        Ok(der)
    } else if trimmed.first() == Some(&0x30) {
        Ok(bytes.to_vec())
    } else {
        Err("neither PEM (-----BEGIN CERTIFICATE-----) nor DER".into())
    }
}

fn parse_hex(field: &str, text: &str) -> Result<Vec<u8>, ConfigError> {
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    let err = |reason: &str| ConfigError::Field {
        field: field.to_owned(),
        reason: reason.to_owned(),
    };
    if !clean.len().is_multiple_of(2) {
        return Err(err("hex string has an odd number of digits"));
    }
    clean
        .chunks_exact(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            match pair {
                [hi, lo] => match (digit(*hi), digit(*lo)) {
                    (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                    _ => Err(err("not a hex string")),
                },
                _ => Err(err("not a hex string")),
            }
        })
        .collect()
}

#[cfg(all(test, feature = "rustcrypto"))]
mod tests {
    use super::*;
    use crate::keys::RustCrypto;
    use rand_chacha::rand_core::SeedableRng;

    fn default_files(name: &str) -> Result<Vec<u8>, String> {
        certs_fixtures::default_card::files()
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.to_vec())
            .ok_or_else(|| "no such file".to_owned())
    }

    #[test]
    fn loads_the_embedded_default_card() {
        let card = load_card(
            certs_fixtures::default_card::CARD_TOML,
            &mut default_files,
            &RustCrypto,
            rand_chacha::ChaCha20Rng::seed_from_u64(1),
        )
        .unwrap();
        assert_eq!(card.atr().as_bytes(), crate::atr::DEFAULT_ATR);
        assert_eq!(card.pin_tries_left(), 3);
    }

    #[test]
    fn errors_name_the_field_or_file() {
        let base =
            "[pin]\npin = \"12345678\"\n[[identity]]\ncert = \"id0.pem\"\nkey = \"id0.key\"\n";
        let rng = || rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let e = load_card(
            "[pin]\npin = \"12\"\n",
            &mut default_files,
            &RustCrypto,
            rng(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("pin.pin"), "{e}");
        let e = load_card(
            "[pin]\npin = \"123456\"\n",
            &mut default_files,
            &RustCrypto,
            rng(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("identity"), "{e}");
        let e = load_card(
            &base.replace("id0.key", "id1.key"),
            &mut default_files,
            &RustCrypto,
            rng(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "id1.key: does not match the public key of id0.pem"
        );
        let e = load_card(
            &base.replace("id0.key", "nope.key"),
            &mut default_files,
            &RustCrypto,
            rng(),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "nope.key: no such file");
        let e = load_card(
            &base.replace("cert = \"id0.pem\"", "cert = \"id0.key\""),
            &mut default_files,
            &RustCrypto,
            rng(),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("id0.key: PEM label"), "{e}");
        let e = load_card(
            &format!("{base}bogus = 1\n"),
            &mut default_files,
            &RustCrypto,
            rng(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = load_card(
            &format!("[card]\natr = \"3B00FF\"\n{base}"),
            &mut default_files,
            &RustCrypto,
            rng(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("card.atr"), "{e}");
    }
}
