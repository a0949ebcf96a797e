//! USB descriptors (device, configuration, interface, CCID class,
//! endpoints, strings) and the control-request vocabulary.
//!
//! ```text
//!  configuration (9) ─ interface (9, class 0B) ─┬─ CCID class descriptor (54, type 21)
//!                                               ├─ INT-IN   81  (interrupt, 64)
//!                                               ├─ BULK-IN  82  (bulk, 64)
//!                                               └─ BULK-OUT 03  (bulk, 64)
//! ```

use super::config::{DeviceConfig, ExchangeLevel};

/// `wMaxPacketSize` of every endpoint (full speed).
pub const MAX_PACKET: usize = 64;
/// Interrupt-IN endpoint address.
pub const EP_INTERRUPT_IN: u8 = 0x81;
/// Bulk-IN endpoint address.
pub const EP_BULK_IN: u8 = 0x82;
/// Bulk-OUT endpoint address.
pub const EP_BULK_OUT: u8 = 0x03;

/// `dwDefaultClock` and `dwMaximumClock`, kHz: the one clock offered.
pub const CLOCK_KHZ: u32 = 4000;
/// Data rates (bps) offered at 4 MHz: Fi = 372 with Di = 1, 2, 4, 8, 12,
/// 16, 20, 32 (ISO 7816-3 table 7, rounded as libccid rounds them).
pub const DATA_RATES: [u32; 8] = [10753, 21505, 43011, 86022, 129032, 172043, 215054, 344086];
/// `dwMaxIFSD`.
pub const MAX_IFSD: u32 = 254;
/// `dwMaxDataRate`: the fastest of [`DATA_RATES`].
pub const MAX_DATA_RATE: u32 = 344_086;

/// `dwFeatures` bits this model always sets: automatic parameters from
/// the ATR (`02`), voltage (`08`), clock (`10`) and baud rate (`20`)
/// selection, parameter negotiation (`40`) and PPS (`80`) by the reader,
/// automatic IFSD exchange (`400`). The exchange level is added on top.
pub const FEATURES: u32 = 0x0000_04FA;

/// Descriptor types.
mod kind {
    pub(super) const DEVICE: u8 = 0x01;
    pub(super) const CONFIGURATION: u8 = 0x02;
    pub(super) const STRING: u8 = 0x03;
    pub(super) const INTERFACE: u8 = 0x04;
    pub(super) const ENDPOINT: u8 = 0x05;
    pub(super) const CCID: u8 = 0x21;
}

/// String descriptor indexes.
pub(crate) mod strings {
    /// Manufacturer.
    pub(crate) const MANUFACTURER: u8 = 1;
    /// Product.
    pub(crate) const PRODUCT: u8 = 2;
    /// Serial number.
    pub(crate) const SERIAL: u8 = 3;
    /// Interface.
    pub(crate) const INTERFACE: u8 = 4;
}

/// The 18-byte device descriptor.
pub fn device_descriptor(config: &DeviceConfig) -> Vec<u8> {
    let mut d = vec![
        18,
        kind::DEVICE,
        0x10,
        0x01,
        0x00,
        0x00,
        0x00,
        MAX_PACKET as u8,
    ];
    d.extend_from_slice(&config.vendor_id.to_le_bytes());
    d.extend_from_slice(&config.product_id.to_le_bytes());
    d.extend_from_slice(&config.device_release.to_le_bytes());
    d.extend_from_slice(&[
        strings::MANUFACTURER,
        strings::PRODUCT,
        strings::SERIAL,
        1, // bNumConfigurations
    ]);
    d
}

/// The 54-byte CCID class descriptor for a reader with `slots` slots.
pub fn ccid_class_descriptor(config: &DeviceConfig, slots: usize) -> Vec<u8> {
    let max_slot_index = u8::try_from(slots.saturating_sub(1)).unwrap_or(0);
    let mut d = Vec::with_capacity(54);
    d.extend_from_slice(&[0x36, kind::CCID, 0x10, 0x01, max_slot_index, 0x07]);
    d.extend_from_slice(&0x0000_0003u32.to_le_bytes()); // dwProtocols: T=0, T=1
    d.extend_from_slice(&CLOCK_KHZ.to_le_bytes()); // dwDefaultClock
    d.extend_from_slice(&CLOCK_KHZ.to_le_bytes()); // dwMaximumClock
    d.push(1); // bNumClockSupported
    d.extend_from_slice(&DATA_RATES[0].to_le_bytes()); // dwDataRate
    d.extend_from_slice(&MAX_DATA_RATE.to_le_bytes()); // dwMaxDataRate
    d.push(DATA_RATES.len() as u8); // bNumDataRatesSupported
    d.extend_from_slice(&MAX_IFSD.to_le_bytes());
    d.extend_from_slice(&0u32.to_le_bytes()); // dwSynchProtocols
    d.extend_from_slice(&0u32.to_le_bytes()); // dwMechanical
    d.extend_from_slice(&features(config.exchange_level).to_le_bytes());
    d.extend_from_slice(&config.max_message_len.to_le_bytes());
    d.push(0xFF); // bClassGetResponse: echo the APDU's class
    d.push(0xFF); // bClassEnvelope
    d.extend_from_slice(&[0x00, 0x00]); // wLcdLayout: none
    let pin_support = if config.pinpad.is_some() { 0x03 } else { 0x00 };
    d.push(pin_support); // bPINSupport: verify + modify with a PIN pad
    d.push(max_slot_index.saturating_add(1)); // bMaxCCIDBusySlots
    d
}

/// `dwFeatures` for an exchange level.
pub fn features(level: ExchangeLevel) -> u32 {
    FEATURES | level.feature_bits()
}

fn endpoint(address: u8, attributes: u8, interval: u8) -> [u8; 7] {
    let [lo, hi] = (MAX_PACKET as u16).to_le_bytes();
    [7, kind::ENDPOINT, address, attributes, lo, hi, interval]
}

/// The configuration descriptor with everything under it (93 bytes for
/// the 54-byte class descriptor).
pub fn configuration_descriptor(config: &DeviceConfig, slots: usize) -> Vec<u8> {
    let class = ccid_class_descriptor(config, slots);
    let total = 9 + 9 + class.len() + 3 * 7;
    let [lo, hi] = u16::try_from(total).unwrap_or(u16::MAX).to_le_bytes();
    let mut d = Vec::with_capacity(total);
    // bNumInterfaces 1, bConfigurationValue 1, iConfiguration 0,
    // bmAttributes 80 (bus powered), bMaxPower 50 (100 mA).
    d.extend_from_slice(&[9, kind::CONFIGURATION, lo, hi, 1, 1, 0, 0x80, 50]);
    // Interface 0, alternate 0, 3 endpoints, class 0B (smart card).
    d.extend_from_slice(&[
        9,
        kind::INTERFACE,
        0,
        0,
        3,
        0x0B,
        0x00,
        0x00,
        strings::INTERFACE,
    ]);
    d.extend_from_slice(&class);
    d.extend_from_slice(&endpoint(EP_INTERRUPT_IN, 0x03, 0x10));
    d.extend_from_slice(&endpoint(EP_BULK_IN, 0x02, 0x00));
    d.extend_from_slice(&endpoint(EP_BULK_OUT, 0x02, 0x00));
    d
}

/// String descriptor `index` (0 = the language list, US English), or
/// `None` for an index that has no string.
pub fn string_descriptor(config: &DeviceConfig, index: u8) -> Option<Vec<u8>> {
    let text = match index {
        0 => return Some(vec![4, kind::STRING, 0x09, 0x04]),
        strings::MANUFACTURER => &config.manufacturer,
        strings::PRODUCT => &config.product,
        strings::SERIAL => &config.serial_number,
        strings::INTERFACE => &config.interface,
        _ => return None,
    };
    let units: Vec<u16> = text
        .encode_utf16()
        .take(super::config::MAX_STRING_UNITS)
        .collect();
    let mut d = Vec::with_capacity(2 + 2 * units.len());
    d.push(u8::try_from(2 + 2 * units.len()).unwrap_or(u8::MAX));
    d.push(kind::STRING);
    for u in units {
        d.extend_from_slice(&u.to_le_bytes());
    }
    Some(d)
}

/// The list GET_CLOCK_FREQUENCIES answers: each clock, kHz, LE u32.
pub fn clock_frequencies() -> Vec<u8> {
    CLOCK_KHZ.to_le_bytes().to_vec()
}

/// The list GET_DATA_RATES answers: each rate, bps, LE u32.
pub fn data_rates() -> Vec<u8> {
    DATA_RATES.iter().flat_map(|r| r.to_le_bytes()).collect()
}

/// An 8-byte SETUP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupPacket {
    /// `bmRequestType`.
    pub request_type: u8,
    /// `bRequest`.
    pub request: u8,
    /// `wValue`.
    pub value: u16,
    /// `wIndex`.
    pub index: u16,
    /// `wLength`: the most bytes the host accepts (IN) or sends (OUT).
    pub length: u16,
}

impl SetupPacket {
    /// Parses the 8 bytes of a SETUP stage.
    pub fn from_bytes(b: [u8; 8]) -> SetupPacket {
        SetupPacket {
            request_type: b[0],
            request: b[1],
            value: u16::from_le_bytes([b[2], b[3]]),
            index: u16::from_le_bytes([b[4], b[5]]),
            length: u16::from_le_bytes([b[6], b[7]]),
        }
    }
}

/// What a control transfer does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlResponse {
    /// Data stage (device to host), already cut to `wLength`.
    Data(Vec<u8>),
    /// No data stage; status stage ACK.
    Ack,
    /// Request error: STALL.
    Stall,
}

/// Standard request codes (USB 2.0 table 9-4).
pub(crate) mod request {
    pub(crate) const GET_STATUS: u8 = 0x00;
    pub(crate) const CLEAR_FEATURE: u8 = 0x01;
    pub(crate) const SET_FEATURE: u8 = 0x03;
    pub(crate) const SET_ADDRESS: u8 = 0x05;
    pub(crate) const GET_DESCRIPTOR: u8 = 0x06;
    pub(crate) const GET_CONFIGURATION: u8 = 0x08;
    pub(crate) const SET_CONFIGURATION: u8 = 0x09;
    pub(crate) const GET_INTERFACE: u8 = 0x0A;
    pub(crate) const SET_INTERFACE: u8 = 0x0B;
    /// CCID class: ABORT (host to interface).
    pub(crate) const ABORT: u8 = 0x01;
    /// CCID class: GET_CLOCK_FREQUENCIES (interface to host).
    pub(crate) const GET_CLOCK_FREQUENCIES: u8 = 0x02;
    /// CCID class: GET_DATA_RATES (interface to host).
    pub(crate) const GET_DATA_RATES: u8 = 0x03;
}

/// Cuts `data` to the host's `wLength`.
pub(crate) fn data_stage(mut data: Vec<u8>, length: u16) -> ControlResponse {
    data.truncate(usize::from(length));
    ControlResponse::Data(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn device_descriptor_bytes() {
        let d = device_descriptor(&DeviceConfig::default());
        assert_eq!(d, hex!("12 01 1001 00 00 00 40 E608 3344 0000 01 02 03 01"));
    }

    #[test]
    fn class_descriptor_bytes() {
        let d = ccid_class_descriptor(&DeviceConfig::default(), 1);
        assert_eq!(
            d,
            hex!(
                "36 21 1001 00 07 03000000 A00F0000 A00F0000 01
                 012A0000 16400500 08 FE000000 00000000 00000000
                 FA040100 0F010000 FF FF 0000 00 01"
            )
        );
        assert_eq!(d.len(), 54);
        let ext = DeviceConfig {
            exchange_level: ExchangeLevel::ExtendedApdu,
            max_message_len: 65_554,
            ..DeviceConfig::default()
        };
        let d = ccid_class_descriptor(&ext, 2);
        assert_eq!(d[4], 1, "bMaxSlotIndex");
        assert_eq!(d[40..44], 0x0004_04FAu32.to_le_bytes());
        assert_eq!(d[44..48], 65_554u32.to_le_bytes());
        assert_eq!(d[53], 2, "bMaxCCIDBusySlots");
    }

    #[test]
    fn configuration_descriptor_layout() {
        let d = configuration_descriptor(&DeviceConfig::default(), 1);
        assert_eq!(d.len(), 93);
        assert_eq!(d[..9], hex!("09 02 5D00 01 01 00 80 32"));
        assert_eq!(d[9..18], hex!("09 04 00 00 03 0B 00 00 04"));
        assert_eq!(d[18..20], hex!("36 21"));
        assert_eq!(d[72..79], hex!("07 05 81 03 4000 10"));
        assert_eq!(d[79..86], hex!("07 05 82 02 4000 00"));
        assert_eq!(d[86..93], hex!("07 05 03 02 4000 00"));
    }

    #[test]
    fn strings_and_lists() {
        let c = DeviceConfig::default();
        assert_eq!(string_descriptor(&c, 0).unwrap(), hex!("04 03 0904"));
        assert_eq!(
            string_descriptor(&c, 1).unwrap(),
            hex!("0A 03 7600 6300 6100 6300")
        );
        assert_eq!(string_descriptor(&c, 3).unwrap(), hex!("04 03 3100"));
        assert_eq!(string_descriptor(&c, 5), None);
        assert_eq!(clock_frequencies(), hex!("A00F0000"));
        assert_eq!(data_rates().len(), 32);
        assert_eq!(data_rates()[..8], hex!("012A0000 01540000"));
        assert_eq!(
            SetupPacket::from_bytes(hex!("A1 03 0000 0000 2000")),
            SetupPacket {
                request_type: 0xA1,
                request: 0x03,
                value: 0,
                index: 0,
                length: 0x20
            }
        );
    }
}
