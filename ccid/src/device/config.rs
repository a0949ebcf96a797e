//! What the reader says about itself: identity, exchange level, buffer
//! sizes. Everything the descriptors announce comes from here, and the
//! device model enforces exactly what it announces.

use core::fmt;

/// The level at which XfrBlock carries data (CCID `dwFeatures` bits 16–18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExchangeLevel {
    /// `00010000`: TPDU. T=0: a 5-byte header and its data, the reader
    /// answers what the card sends (`61 xx` / `6C xx` are for the host to
    /// follow up); a PPS request is answered by the card. T=1: blocks
    /// (NAD PCB LEN INF LRC).
    Tpdu,
    /// `00020000`: short APDU (up to 261 bytes of command), in one XfrBlock.
    ShortApdu,
    /// `00040000`: short and extended APDU, with APDU-level chaining
    /// (`wLevelParameter` / `bChainParameter`) when a command or response
    /// does not fit one message.
    ExtendedApdu,
}

impl ExchangeLevel {
    /// The `dwFeatures` bit.
    pub fn feature_bits(self) -> u32 {
        match self {
            ExchangeLevel::Tpdu => 0x0001_0000,
            ExchangeLevel::ShortApdu => 0x0002_0000,
            ExchangeLevel::ExtendedApdu => 0x0004_0000,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            ExchangeLevel::Tpdu => 0,
            ExchangeLevel::ShortApdu => 1,
            ExchangeLevel::ExtendedApdu => 2,
        }
    }
}

/// Smallest `dwMaxCCIDMessageLength`: a 10-byte header and a short APDU
/// (4 + 1 + 255 + 1 bytes).
pub const MIN_MESSAGE_LEN: u32 = 271;
/// Largest `dwMaxCCIDMessageLength` the spec allows (extended APDU
/// 65544 bytes + header).
pub const MAX_MESSAGE_LEN: u32 = 65_554;
/// Longest string descriptor text, in UTF-16 code units.
pub const MAX_STRING_UNITS: usize = 126;
/// Largest number of slots (bMaxSlotIndex 0..=7 keeps the
/// NotifySlotChange bitmap at 2 bytes).
pub const MAX_SLOTS: usize = 8;

/// The reader's identity and limits. [`DeviceConfig::default`] is QEMU's
/// `usb-ccid` (08e6:4433, TPDU level, 271-byte messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceConfig {
    /// `idVendor`.
    pub vendor_id: u16,
    /// `idProduct`.
    pub product_id: u16,
    /// `bcdDevice`.
    pub device_release: u16,
    /// Manufacturer string (string descriptor 1).
    pub manufacturer: String,
    /// Product string (string descriptor 2).
    pub product: String,
    /// Serial number string (string descriptor 3).
    pub serial_number: String,
    /// Interface string (string descriptor 4).
    pub interface: String,
    /// XfrBlock exchange level.
    pub exchange_level: ExchangeLevel,
    /// `dwMaxCCIDMessageLength`: the longest Bulk-OUT message accepted and
    /// the longest Bulk-IN message sent (header included); longer
    /// responses are chained at the extended APDU level and refused
    /// (`XFR_OVERRUN`) otherwise.
    pub max_message_len: u32,
    /// Bulk-OUT messages the device accepts before it answers: the number
    /// of responses queued plus commands in progress beyond which
    /// [`handle_bulk_out`](crate::device::CcidDevice::handle_bulk_out)
    /// refuses (NAK) the start of a new message.
    pub queue_depth: usize,
    /// Text answered to the Gemalto "get firmware" escape (`6B` with
    /// payload `02`), which libccid's serial driver sends on open.
    pub firmware: String,
    /// A virtual PIN pad: when set, the class descriptor announces PIN
    /// verification and modification (`bPINSupport` 03) and
    /// `PC_to_RDR_Secure` takes its PINs from this source.
    pub pinpad: Option<super::pinpad::PinPad>,
}

impl Default for DeviceConfig {
    fn default() -> DeviceConfig {
        DeviceConfig {
            vendor_id: 0x08E6,
            product_id: 0x4433,
            device_release: 0x0000,
            manufacturer: "vcac".into(),
            product: "vcac virtual CCID".into(),
            serial_number: "1".into(),
            interface: "CCID Interface".into(),
            exchange_level: ExchangeLevel::Tpdu,
            max_message_len: MIN_MESSAGE_LEN,
            queue_depth: 8,
            firmware: concat!("vcac CCID ", env!("CARGO_PKG_VERSION")).into(),
            pinpad: None,
        }
    }
}

/// Why a [`DeviceConfig`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `max_message_len` outside 271..=65554.
    MessageLength(u32),
    /// A string descriptor text longer than 126 UTF-16 units (which one).
    StringTooLong(&'static str),
    /// `queue_depth` outside 1..=64.
    QueueDepth(usize),
    /// The firmware text is longer than 40 bytes (libccid reads it into a
    /// 50-byte buffer and terminates it).
    FirmwareTooLong(usize),
    /// Zero slots, or more than [`MAX_SLOTS`].
    SlotCount(usize),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::MessageLength(n) => write!(
                f,
                "max_message_len {n} is outside {MIN_MESSAGE_LEN}..={MAX_MESSAGE_LEN}"
            ),
            ConfigError::StringTooLong(which) => write!(
                f,
                "the {which} string is longer than {MAX_STRING_UNITS} UTF-16 units"
            ),
            ConfigError::QueueDepth(n) => write!(f, "queue_depth {n} is outside 1..=64"),
            ConfigError::FirmwareTooLong(n) => {
                write!(f, "the firmware text has {n} bytes; at most 40 fit")
            }
            ConfigError::SlotCount(n) => {
                write!(f, "a reader has 1 to {MAX_SLOTS} slots, not {n}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl DeviceConfig {
    /// The configuration libccid's serial driver assumes for a GemPC Twin
    /// (TPDU level, 271-byte messages; libccid ignores our descriptors on
    /// a serial line and uses its own copy of the reader's).
    pub fn gempc_twin() -> DeviceConfig {
        DeviceConfig {
            product: "GemPC Twin (vcac)".into(),
            ..DeviceConfig::default()
        }
    }

    /// Checks every limit.
    pub fn validate(&self, slots: usize) -> Result<(), ConfigError> {
        if !(MIN_MESSAGE_LEN..=MAX_MESSAGE_LEN).contains(&self.max_message_len) {
            return Err(ConfigError::MessageLength(self.max_message_len));
        }
        for (which, s) in [
            ("manufacturer", &self.manufacturer),
            ("product", &self.product),
            ("serial number", &self.serial_number),
            ("interface", &self.interface),
        ] {
            if s.encode_utf16().count() > MAX_STRING_UNITS {
                return Err(ConfigError::StringTooLong(which));
            }
        }
        if !(1..=64).contains(&self.queue_depth) {
            return Err(ConfigError::QueueDepth(self.queue_depth));
        }
        if self.firmware.len() > 40 {
            return Err(ConfigError::FirmwareTooLong(self.firmware.len()));
        }
        if slots == 0 || slots > MAX_SLOTS {
            return Err(ConfigError::SlotCount(slots));
        }
        Ok(())
    }

    /// Largest `abData` of one message.
    pub(crate) fn max_data(&self) -> usize {
        (self.max_message_len as usize).saturating_sub(crate::device::wire::HEADER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let ok = DeviceConfig::default();
        assert_eq!(ok.validate(1), Ok(()));
        assert_eq!(ok.validate(0), Err(ConfigError::SlotCount(0)));
        assert_eq!(ok.validate(9), Err(ConfigError::SlotCount(9)));
        let c = DeviceConfig {
            max_message_len: 270,
            ..DeviceConfig::default()
        };
        assert_eq!(c.validate(1), Err(ConfigError::MessageLength(270)));
        let c = DeviceConfig {
            max_message_len: 65_555,
            ..DeviceConfig::default()
        };
        assert_eq!(c.validate(1), Err(ConfigError::MessageLength(65_555)));
        let c = DeviceConfig {
            product: "x".repeat(127),
            ..DeviceConfig::default()
        };
        assert_eq!(c.validate(1), Err(ConfigError::StringTooLong("product")));
        let c = DeviceConfig {
            queue_depth: 0,
            ..DeviceConfig::default()
        };
        assert_eq!(c.validate(1), Err(ConfigError::QueueDepth(0)));
        let c = DeviceConfig {
            firmware: "f".repeat(41),
            ..DeviceConfig::default()
        };
        assert_eq!(c.validate(1), Err(ConfigError::FirmwareTooLong(41)));
        assert_eq!(ok.max_data(), 261);
    }
}
