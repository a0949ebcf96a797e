//! The `[piv]` section and `profile` / `piv_slot` of `card.toml`.
//!
//! ```toml
//! [card]
//! profile = "piv"                # "cac" (default), "piv" or "dual"
//!
//! [piv]                          # optional; these are the defaults
//! pin = "123456"
//! max_tries = 3
//! puk = "12345678"
//! puk_max_tries = 3
//! management_key = "010203040506070801020304050607080102030405060708"
//! management_key_algorithm = "3des"   # or aes128, aes192, aes256
//!
//! [[identity]]
//! piv_slot = "9A"                # default 9A, 9C, 9D, 9E, then 82, 83, …
//! ```

use serde::Deserialize;

use super::{parse_hex, ConfigError};
use crate::pin::Pin;
use crate::piv::{ManagementAlgorithm, ManagementKey, PivOptions, Profile};

/// `[piv]`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PivSection {
    /// PIV PIN, 6–8 digits (default `123456`).
    pub pin: Option<String>,
    /// Wrong PINs before blocking (default 3).
    pub max_tries: Option<u8>,
    /// PUK, 6–8 digits (default `12345678`).
    pub puk: Option<String>,
    /// Wrong PUKs before the PUK blocks (default 3).
    pub puk_max_tries: Option<u8>,
    /// The 9B card management key, hex.
    pub management_key: Option<String>,
    /// `3des` (default), `aes128`, `aes192` or `aes256`.
    pub management_key_algorithm: Option<String>,
}

impl core::fmt::Debug for PivSection {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PivSection")
            .field("max_tries", &self.max_tries)
            .field("puk_max_tries", &self.puk_max_tries)
            .field("management_key_algorithm", &self.management_key_algorithm)
            .finish_non_exhaustive()
    }
}

fn field(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Field {
        field: name.to_owned(),
        reason: reason.into(),
    }
}

/// `card.profile`.
pub(super) fn profile(text: Option<&str>) -> Result<Profile, ConfigError> {
    match text {
        None | Some("cac") => Ok(Profile::Cac),
        Some("piv") => Ok(Profile::Piv),
        Some("dual") => Ok(Profile::Dual),
        Some(other) => Err(field(
            "card.profile",
            format!("\"{other}\": expected \"cac\", \"piv\" or \"dual\""),
        )),
    }
}

/// `identity[i].piv_slot`.
pub(super) fn slot(index: usize, text: &str) -> Result<u8, ConfigError> {
    let name = format!("identity[{index}].piv_slot");
    match parse_hex(&name, text)?.as_slice() {
        [s] if crate::piv::is_key_slot(*s) => Ok(*s),
        _ => Err(field(
            &name,
            format!("\"{text}\": expected a key slot: 9A, 9C, 9D, 9E or 82-95"),
        )),
    }
}

impl PivSection {
    /// The PIV options this section describes.
    pub fn options(&self) -> Result<PivOptions, ConfigError> {
        let pin = Pin::new(self.pin.as_deref().unwrap_or(crate::piv::DEFAULT_PIV_PIN))
            .map_err(|e| field("piv.pin", e.to_string()))?;
        let puk = Pin::new(self.puk.as_deref().unwrap_or(crate::piv::DEFAULT_PIV_PUK))
            .map_err(|e| field("piv.puk", e.to_string()))?;
        let mut options = PivOptions::default()
            .pin(pin, self.max_tries.unwrap_or(3))
            .map_err(|e| field("piv.max_tries", e))?
            .puk(puk, self.puk_max_tries.unwrap_or(3))
            .map_err(|e| field("piv.puk_max_tries", e))?;
        let algorithm = match self.management_key_algorithm.as_deref() {
            None | Some("3des") | Some("tdes") => ManagementAlgorithm::Tdes,
            Some("aes128") => ManagementAlgorithm::Aes128,
            Some("aes192") => ManagementAlgorithm::Aes192,
            Some("aes256") => ManagementAlgorithm::Aes256,
            Some(other) => {
                return Err(field(
                    "piv.management_key_algorithm",
                    format!("\"{other}\": expected 3des, aes128, aes192 or aes256"),
                ))
            }
        };
        match &self.management_key {
            Some(hex) => {
                let bytes = zeroize::Zeroizing::new(parse_hex("piv.management_key", hex)?);
                let key = ManagementKey::new(algorithm, &bytes)
                    .map_err(|e| field("piv.management_key", e))?;
                options = options.management_key(key);
            }
            None if algorithm != ManagementAlgorithm::Tdes => {
                return Err(field(
                    "piv.management_key",
                    "required with an AES management_key_algorithm",
                ))
            }
            None => {}
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_slot_and_key_errors_name_the_field() {
        assert_eq!(profile(None).unwrap(), Profile::Cac);
        assert_eq!(profile(Some("dual")).unwrap(), Profile::Dual);
        let e = profile(Some("yubikey")).unwrap_err();
        assert!(e.to_string().starts_with("card.toml: card.profile:"), "{e}");
        assert_eq!(slot(0, "9e").unwrap(), 0x9E);
        assert_eq!(slot(0, "95").unwrap(), 0x95);
        for bad in ["9B", "96", "9A9C", "zz"] {
            let e = slot(2, bad).unwrap_err();
            assert!(e.to_string().contains("identity[2].piv_slot"), "{e}");
        }
        let aes = PivSection {
            management_key_algorithm: Some("aes128".into()),
            ..PivSection::default()
        };
        assert!(aes
            .options()
            .unwrap_err()
            .to_string()
            .contains("piv.management_key"));
        let short = PivSection {
            management_key: Some("0102".into()),
            ..PivSection::default()
        };
        assert!(short
            .options()
            .unwrap_err()
            .to_string()
            .contains("24 bytes"));
        let pin = PivSection {
            pin: Some("12".into()),
            ..PivSection::default()
        };
        assert!(pin.options().unwrap_err().to_string().contains("piv.pin"));
        assert_eq!(PivSection::default().options().unwrap().pin_max_tries(), 3);
    }
}
