//! The public face of the PIV applet: card profiles, PIV options (PIN,
//! PUK, management key) and the state a host restores from disk.

use core::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::keys::KeyHandle;
use crate::pin::Pin;

/// Which applets a card carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Profile {
    /// The CAC v2 applets only (today's card, byte for byte).
    #[default]
    Cac,
    /// The PIV card application only (NIST SP 800-73-4).
    Piv,
    /// The CAC applets and PIV with the same identities. OpenSC binds its
    /// PIV driver first; `OPENSC_DRIVER=cac` binds the CAC view.
    Dual,
}

impl Profile {
    /// True when the card carries the PIV applet.
    pub const fn has_piv(self) -> bool {
        matches!(self, Profile::Piv | Profile::Dual)
    }
}

/// The ATR of `piv` and `dual` cards: T=1 (yubico-piv-tool connects with
/// T=1 only), IFSC 254, historical bytes `VCACPIV1`.
pub const PIV_ATR: [u8; 18] = [
    0x3B, 0xF8, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x45, b'V', b'C', b'A', b'C', b'P', b'I', b'V',
    b'1', 0x89,
];

/// The full PIV AID (`A0 00 00 03 08 00 00 10 00 01 00`).
pub const PIV_AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00,
];

/// The default management key (9B): 3DES `0102030405060708` × 3.
pub const DEFAULT_MANAGEMENT_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

/// Algorithm of the card management key (9B).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ManagementAlgorithm {
    /// 3DES-EDE with a 24-byte key (algorithm `03`).
    Tdes,
    /// AES-128 (`08`).
    Aes128,
    /// AES-192 (`0A`).
    Aes192,
    /// AES-256 (`0C`).
    Aes256,
}

impl ManagementAlgorithm {
    /// The SP 800-78 algorithm identifier (GENERAL AUTHENTICATE P1).
    pub const fn id(self) -> u8 {
        match self {
            ManagementAlgorithm::Tdes => 0x03,
            ManagementAlgorithm::Aes128 => 0x08,
            ManagementAlgorithm::Aes192 => 0x0A,
            ManagementAlgorithm::Aes256 => 0x0C,
        }
    }

    /// Key length in bytes.
    pub const fn key_len(self) -> usize {
        match self {
            ManagementAlgorithm::Tdes | ManagementAlgorithm::Aes192 => 24,
            ManagementAlgorithm::Aes128 => 16,
            ManagementAlgorithm::Aes256 => 32,
        }
    }

    /// Cipher block length in bytes (witness and challenge size).
    pub const fn block_len(self) -> usize {
        match self {
            ManagementAlgorithm::Tdes => 8,
            _ => 16,
        }
    }
}

/// The card management key (9B), zeroized on drop.
#[derive(Clone)]
pub struct ManagementKey {
    pub(crate) algorithm: ManagementAlgorithm,
    pub(crate) key: Zeroizing<Vec<u8>>,
}

impl ManagementKey {
    /// A key of `algorithm`; `key` must have its exact length.
    pub fn new(algorithm: ManagementAlgorithm, key: &[u8]) -> Result<ManagementKey, String> {
        if key.len() != algorithm.key_len() {
            return Err(format!(
                "a {algorithm:?} management key has {} bytes, got {}",
                algorithm.key_len(),
                key.len()
            ));
        }
        Ok(ManagementKey {
            algorithm,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> ManagementAlgorithm {
        self.algorithm
    }
}

impl Default for ManagementKey {
    fn default() -> Self {
        ManagementKey {
            algorithm: ManagementAlgorithm::Tdes,
            key: Zeroizing::new(DEFAULT_MANAGEMENT_KEY.to_vec()),
        }
    }
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagementKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Default PIV PIN.
pub const DEFAULT_PIV_PIN: &str = "123456";
/// Default PIV PUK.
pub const DEFAULT_PIV_PUK: &str = "12345678";

/// PIV credentials and what the card restored from its store.
#[derive(Clone)]
pub struct PivOptions {
    pub(crate) pin: Pin,
    pub(crate) pin_max: u8,
    pub(crate) pin_left: u8,
    pub(crate) puk: Pin,
    pub(crate) puk_max: u8,
    pub(crate) puk_left: u8,
    pub(crate) management_key: ManagementKey,
    pub(crate) keys: Vec<(u8, Arc<dyn KeyHandle>)>,
    pub(crate) objects: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Default for PivOptions {
    fn default() -> Self {
        PivOptions {
            pin: Pin::from_valid_block(*b"123456\xFF\xFF"),
            pin_max: 3,
            pin_left: 3,
            puk: Pin::from_valid_block(*b"12345678"),
            puk_max: 3,
            puk_left: 3,
            management_key: ManagementKey::default(),
            keys: Vec::new(),
            objects: Vec::new(),
        }
    }
}

impl fmt::Debug for PivOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PivOptions")
            .field("pin_left", &self.pin_left)
            .field("puk_left", &self.puk_left)
            .field("management_key", &self.management_key)
            .field("restored_keys", &self.keys.len())
            .field("restored_objects", &self.objects.len())
            .finish_non_exhaustive()
    }
}

impl PivOptions {
    /// Sets the PIN and its retry limit (1–15).
    pub fn pin(mut self, pin: Pin, max_tries: u8) -> Result<PivOptions, String> {
        check_tries(max_tries)?;
        self.pin = pin;
        self.pin_max = max_tries;
        self.pin_left = max_tries;
        Ok(self)
    }

    /// Sets the PUK and its retry limit (1–15).
    pub fn puk(mut self, puk: Pin, max_tries: u8) -> Result<PivOptions, String> {
        check_tries(max_tries)?;
        self.puk = puk;
        self.puk_max = max_tries;
        self.puk_left = max_tries;
        Ok(self)
    }

    /// Sets the management key.
    pub fn management_key(mut self, key: ManagementKey) -> PivOptions {
        self.management_key = key;
        self
    }

    /// Restores credentials the card persisted earlier (a changed PIN or
    /// PUK and the counters); tries above the limits are clamped.
    pub fn restore_credentials(
        mut self,
        pin: Pin,
        pin_tries_left: u8,
        puk: Pin,
        puk_tries_left: u8,
    ) -> PivOptions {
        self.pin = pin;
        self.pin_left = pin_tries_left.min(self.pin_max);
        self.puk = puk;
        self.puk_left = puk_tries_left.min(self.puk_max);
        self
    }

    /// Restores a key generated on the card for `slot`; it replaces the
    /// identity's key in that slot (the certificate may not match it yet).
    pub fn restore_key(mut self, slot: u8, key: Arc<dyn KeyHandle>) -> PivOptions {
        self.keys.push((slot, key));
        self
    }

    /// Restores a data object written with PUT DATA (`tag` as in GET DATA,
    /// `object` the whole `53 L …` / `7E L …` encoding).
    pub fn restore_object(mut self, tag: &[u8], object: &[u8]) -> PivOptions {
        self.objects.push((tag.to_vec(), object.to_vec()));
        self
    }

    /// PIN retry limit.
    pub fn pin_max_tries(&self) -> u8 {
        self.pin_max
    }

    /// PUK retry limit.
    pub fn puk_max_tries(&self) -> u8 {
        self.puk_max
    }
}

fn check_tries(tries: u8) -> Result<(), String> {
    if (1..=15).contains(&tries) {
        Ok(())
    } else {
        Err(format!("retry limit must be 1 to 15, got {tries}"))
    }
}

/// True for the PIV key references that hold asymmetric keys: `9A`,
/// `9C`, `9D`, `9E` and the retired key-management keys `82`–`95`.
pub const fn is_key_slot(slot: u8) -> bool {
    matches!(slot, 0x9A | 0x9C | 0x9D | 0x9E | 0x82..=0x95)
}

/// The certificate object (GET DATA tag) of a key slot.
pub const fn certificate_tag(slot: u8) -> Option<[u8; 3]> {
    match slot {
        0x9A => Some([0x5F, 0xC1, 0x05]),
        0x9C => Some([0x5F, 0xC1, 0x0A]),
        0x9D => Some([0x5F, 0xC1, 0x0B]),
        0x9E => Some([0x5F, 0xC1, 0x01]),
        0x82..=0x95 => Some([0x5F, 0xC1, 0x0D + (slot - 0x82)]),
        _ => None,
    }
}

/// The slot identity `index` takes by default: 9A, 9C, 9D, 9E, then the
/// retired slots 82, 83, ….
pub const fn default_slot(index: usize) -> u8 {
    match index {
        0 => 0x9A,
        1 => 0x9C,
        2 => 0x9D,
        3 => 0x9E,
        n => 0x82 + (n as u8).wrapping_sub(4),
    }
}
