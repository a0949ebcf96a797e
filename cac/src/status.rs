//! ISO 7816-4 status words.
//!
//! At the applet boundary the error *is* the status word: applets return
//! `Result<(), Status>` and the dispatcher appends `Status::sw()` to the
//! response. Every variant documents the two bytes it puts on the wire.

use core::fmt;

/// A status word (SW1 SW2) as the card sends it.
///
/// `Status::Success` is `90 00`; everything else is either a warning that
/// carries information (`61 xx`, `63 Cx`, `6C xx`) or an error.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// `90 00`: normal processing.
    Success,
    /// `61 xx`: `xx` more response bytes are available through GET RESPONSE
    /// (`00` means 256 or more).
    BytesRemaining(u8),
    /// `63 Cx`: verification failed, `x` tries left.
    VerifyFailed {
        /// Retries left before the reference data is blocked (0..=15).
        tries_left: u8,
    },
    /// `64 00`: execution error, card state unchanged.
    ExecutionError,
    /// `65 81`: memory failure.
    MemoryFailure,
    /// `67 00`: wrong length (Lc or Le).
    WrongLength,
    /// `68 81`: logical channel not supported (or not open).
    ChannelNotSupported,
    /// `68 82`: secure messaging not supported.
    SecureMessagingNotSupported,
    /// `68 84`: command chaining (CLA bit 5) not supported.
    ChainingNotSupported,
    /// `69 82`: security status not satisfied (PIN not verified).
    SecurityNotSatisfied,
    /// `69 83`: authentication method blocked.
    AuthBlocked,
    /// `69 84`: referenced data invalid.
    DataInvalid,
    /// `69 85`: conditions of use not satisfied.
    ConditionsNotSatisfied,
    /// `6A 80`: incorrect parameters in the data field.
    IncorrectData,
    /// `6A 81`: function not supported.
    FunctionNotSupported,
    /// `6A 82`: file or application not found.
    NotFound,
    /// `6A 84`: not enough memory space.
    NotEnoughMemory,
    /// `6A 86`: incorrect P1 or P2.
    IncorrectP1P2,
    /// `6A 88`: referenced data not found.
    ReferencedDataNotFound,
    /// `6B 00`: wrong parameters (offset outside the object).
    WrongParameters,
    /// `6C xx`: wrong Le; `xx` is the exact number of bytes available.
    WrongLe(u8),
    /// `6D 00`: instruction not supported.
    InsNotSupported,
    /// `6E 00`: class not supported.
    ClaNotSupported,
    /// `6F 00`: no precise diagnosis.
    Unknown,
    /// Any other status word, kept verbatim.
    Other(u16),
}

impl Status {
    /// The two-byte status word.
    pub const fn sw(self) -> u16 {
        match self {
            Status::Success => 0x9000,
            Status::BytesRemaining(n) => 0x6100 | n as u16,
            Status::VerifyFailed { tries_left } => 0x63C0 | (tries_left & 0x0F) as u16,
            Status::ExecutionError => 0x6400,
            Status::MemoryFailure => 0x6581,
            Status::WrongLength => 0x6700,
            Status::ChannelNotSupported => 0x6881,
            Status::SecureMessagingNotSupported => 0x6882,
            Status::ChainingNotSupported => 0x6884,
            Status::SecurityNotSatisfied => 0x6982,
            Status::AuthBlocked => 0x6983,
            Status::DataInvalid => 0x6984,
            Status::ConditionsNotSatisfied => 0x6985,
            Status::IncorrectData => 0x6A80,
            Status::FunctionNotSupported => 0x6A81,
            Status::NotFound => 0x6A82,
            Status::NotEnoughMemory => 0x6A84,
            Status::IncorrectP1P2 => 0x6A86,
            Status::ReferencedDataNotFound => 0x6A88,
            Status::WrongParameters => 0x6B00,
            Status::WrongLe(n) => 0x6C00 | n as u16,
            Status::InsNotSupported => 0x6D00,
            Status::ClaNotSupported => 0x6E00,
            Status::Unknown => 0x6F00,
            Status::Other(sw) => sw,
        }
    }

    /// The status word as the two bytes that end a response APDU.
    pub const fn to_bytes(self) -> [u8; 2] {
        self.sw().to_be_bytes()
    }

    /// Decodes a status word. Unknown values become [`Status::Other`].
    pub const fn from_sw(sw: u16) -> Status {
        let [sw1, sw2] = sw.to_be_bytes();
        match (sw1, sw2) {
            (0x90, 0x00) => Status::Success,
            (0x61, n) => Status::BytesRemaining(n),
            (0x63, n) if n & 0xF0 == 0xC0 => Status::VerifyFailed {
                tries_left: n & 0x0F,
            },
            (0x64, 0x00) => Status::ExecutionError,
            (0x65, 0x81) => Status::MemoryFailure,
            (0x67, 0x00) => Status::WrongLength,
            (0x68, 0x81) => Status::ChannelNotSupported,
            (0x68, 0x82) => Status::SecureMessagingNotSupported,
            (0x68, 0x84) => Status::ChainingNotSupported,
            (0x69, 0x82) => Status::SecurityNotSatisfied,
            (0x69, 0x83) => Status::AuthBlocked,
            (0x69, 0x84) => Status::DataInvalid,
            (0x69, 0x85) => Status::ConditionsNotSatisfied,
            (0x6A, 0x80) => Status::IncorrectData,
            (0x6A, 0x81) => Status::FunctionNotSupported,
            (0x6A, 0x82) => Status::NotFound,
            (0x6A, 0x84) => Status::NotEnoughMemory,
            (0x6A, 0x86) => Status::IncorrectP1P2,
            (0x6A, 0x88) => Status::ReferencedDataNotFound,
            (0x6B, 0x00) => Status::WrongParameters,
            (0x6C, n) => Status::WrongLe(n),
            (0x6D, 0x00) => Status::InsNotSupported,
            (0x6E, 0x00) => Status::ClaNotSupported,
            (0x6F, 0x00) => Status::Unknown,
            _ => Status::Other(sw),
        }
    }

    /// True for `90 00` and the informational `61 xx`.
    pub const fn is_success(self) -> bool {
        matches!(self, Status::Success | Status::BytesRemaining(_))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [sw1, sw2] = self.to_bytes();
        write!(f, "{sw1:02X} {sw2:02X}")
    }
}

impl From<crate::apdu::ParseError> for Status {
    fn from(e: crate::apdu::ParseError) -> Status {
        match e {
            crate::apdu::ParseError::InvalidClass(_) => Status::ClaNotSupported,
            _ => Status::WrongLength,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_named_variant() {
        let all = [
            Status::Success,
            Status::BytesRemaining(0x00),
            Status::BytesRemaining(0x0D),
            Status::VerifyFailed { tries_left: 2 },
            Status::ExecutionError,
            Status::MemoryFailure,
            Status::WrongLength,
            Status::ChannelNotSupported,
            Status::SecureMessagingNotSupported,
            Status::ChainingNotSupported,
            Status::SecurityNotSatisfied,
            Status::AuthBlocked,
            Status::DataInvalid,
            Status::ConditionsNotSatisfied,
            Status::IncorrectData,
            Status::FunctionNotSupported,
            Status::NotFound,
            Status::NotEnoughMemory,
            Status::IncorrectP1P2,
            Status::ReferencedDataNotFound,
            Status::WrongParameters,
            Status::WrongLe(0x20),
            Status::InsNotSupported,
            Status::ClaNotSupported,
            Status::Unknown,
            Status::Other(0x6283),
        ];
        for s in all {
            assert_eq!(Status::from_sw(s.sw()), s, "{s}");
        }
    }

    #[test]
    fn encodes_the_documented_bytes() {
        assert_eq!(Status::Success.to_bytes(), [0x90, 0x00]);
        assert_eq!(Status::BytesRemaining(0x0D).to_bytes(), [0x61, 0x0D]);
        assert_eq!(
            Status::VerifyFailed { tries_left: 3 }.to_bytes(),
            [0x63, 0xC3]
        );
        assert_eq!(Status::WrongLe(0x20).to_bytes(), [0x6C, 0x20]);
        assert_eq!(Status::SecurityNotSatisfied.to_bytes(), [0x69, 0x82]);
        assert_eq!(Status::NotFound.to_string(), "6A 82");
    }
}
