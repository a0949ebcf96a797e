//! CCID message framing (USB CCID rev 1.1 §6): the 10-byte header shared
//! by every Bulk-OUT and Bulk-IN message, the message types, and the
//! `bStatus` / `bError` codes.
//!
//! ```text
//!  offset  0             1..5          5      6      7..10            10..
//!         bMessageType  dwLength(LE)  bSlot  bSeq   3 specific bytes  abData[dwLength]
//! ```

use core::fmt;

/// Length of every CCID message header.
pub const HEADER_LEN: usize = 10;

/// Byte offsets of the header fields.
pub mod field {
    use core::ops::Range;

    /// `bMessageType`.
    pub const MESSAGE_TYPE: usize = 0;
    /// `dwLength`, little-endian: the number of bytes after the header.
    pub const LENGTH: Range<usize> = 1..5;
    /// `bSlot`.
    pub const SLOT: usize = 5;
    /// `bSeq`.
    pub const SEQ: usize = 6;
    /// First message-specific byte (`bPowerSelect`, `bBWI`,
    /// `bProtocolNum`, `bStatus`…); `bError` for every Bulk-IN message.
    pub const SPECIFIC_0: usize = 7;
    /// Second message-specific byte (`wLevelParameter` low byte; `bError`
    /// in Bulk-IN messages).
    pub const SPECIFIC_1: usize = 8;
    /// Third message-specific byte (`wLevelParameter` high byte;
    /// `bChainParameter`, `bClockStatus`, `bProtocolNum` in Bulk-IN
    /// messages).
    pub const SPECIFIC_2: usize = 9;
}

/// Why bytes are not a CCID message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than the 10-byte header.
    Runt(usize),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Runt(n) => write!(f, "{n} bytes is shorter than a CCID header (10)"),
        }
    }
}

impl std::error::Error for WireError {}

/// A read-only view of a CCID message (either direction). The header
/// length is checked once, in [`Packet::new_checked`]; no accessor can
/// panic afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` after checking it holds at least a header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let len = buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Runt(len));
        }
        Ok(Packet { buffer })
    }

    fn header(&self) -> &[u8; HEADER_LEN] {
        const EMPTY: [u8; HEADER_LEN] = [0; HEADER_LEN];
        // `new_checked` guarantees the chunk exists.
        self.buffer.as_ref().first_chunk().unwrap_or(&EMPTY)
    }

    /// `bMessageType`.
    pub fn message_type(&self) -> u8 {
        self.header()[field::MESSAGE_TYPE]
    }

    /// `dwLength`: how many bytes follow the header, as declared.
    pub fn length(&self) -> u32 {
        let h = self.header();
        u32::from_le_bytes([h[1], h[2], h[3], h[4]])
    }

    /// `bSlot`.
    pub fn slot(&self) -> u8 {
        self.header()[field::SLOT]
    }

    /// `bSeq`.
    pub fn seq(&self) -> u8 {
        self.header()[field::SEQ]
    }

    /// The three message-specific bytes (offsets 7, 8, 9).
    pub fn specific(&self) -> [u8; 3] {
        let h = self.header();
        [
            h[field::SPECIFIC_0],
            h[field::SPECIFIC_1],
            h[field::SPECIFIC_2],
        ]
    }

    /// Bulk-IN `bStatus` (offset 7).
    pub fn status(&self) -> u8 {
        self.header()[field::SPECIFIC_0]
    }

    /// Bulk-IN `bError` (offset 8).
    pub fn error(&self) -> u8 {
        self.header()[field::SPECIFIC_1]
    }

    /// Every byte after the header (as received, whatever `dwLength` says).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or_default()
    }

    /// True when exactly `dwLength` bytes follow the header.
    pub fn length_matches(&self) -> bool {
        u32::try_from(self.payload().len()).is_ok_and(|n| n == self.length())
    }

    /// The underlying bytes.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

macro_rules! byte_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// Any other value.
            Unknown(u8),
        }

        impl From<u8> for $name {
            fn from(b: u8) -> $name {
                match b {
                    $( $value => $name::$variant, )*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                match v {
                    $( $name::$variant => $value, )*
                    $name::Unknown(other) => other,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $( $name::$variant => write!(f, "{} ({:02X})", stringify!($variant), $value), )*
                    $name::Unknown(b) => write!(f, "unknown ({b:02X})"),
                }
            }
        }
    };
}

byte_enum! {
    /// `bMessageType` of a Bulk-OUT (PC_to_RDR) message.
    pub enum Command {
        /// `62` PC_to_RDR_IccPowerOn → DataBlock (the ATR).
        IccPowerOn = 0x62,
        /// `63` PC_to_RDR_IccPowerOff → SlotStatus.
        IccPowerOff = 0x63,
        /// `65` PC_to_RDR_GetSlotStatus → SlotStatus.
        GetSlotStatus = 0x65,
        /// `6F` PC_to_RDR_XfrBlock → DataBlock.
        XfrBlock = 0x6F,
        /// `6C` PC_to_RDR_GetParameters → Parameters.
        GetParameters = 0x6C,
        /// `6D` PC_to_RDR_ResetParameters → Parameters.
        ResetParameters = 0x6D,
        /// `61` PC_to_RDR_SetParameters → Parameters.
        SetParameters = 0x61,
        /// `6B` PC_to_RDR_Escape → Escape.
        Escape = 0x6B,
        /// `6E` PC_to_RDR_IccClock → SlotStatus.
        IccClock = 0x6E,
        /// `6A` PC_to_RDR_T0APDU → SlotStatus.
        T0Apdu = 0x6A,
        /// `69` PC_to_RDR_Secure → DataBlock.
        Secure = 0x69,
        /// `71` PC_to_RDR_Mechanical → SlotStatus.
        Mechanical = 0x71,
        /// `72` PC_to_RDR_Abort → SlotStatus.
        Abort = 0x72,
        /// `73` PC_to_RDR_SetDataRateAndClockFrequency →
        /// DataRateAndClockFrequency.
        SetDataRateAndClockFrequency = 0x73,
    }
}

byte_enum! {
    /// `bMessageType` of a Bulk-IN (RDR_to_PC) message.
    pub enum Response {
        /// `80` RDR_to_PC_DataBlock.
        DataBlock = 0x80,
        /// `81` RDR_to_PC_SlotStatus.
        SlotStatus = 0x81,
        /// `82` RDR_to_PC_Parameters.
        Parameters = 0x82,
        /// `83` RDR_to_PC_Escape.
        Escape = 0x83,
        /// `84` RDR_to_PC_DataRateAndClockFrequency.
        DataRateAndClockFrequency = 0x84,
    }
}

byte_enum! {
    /// `bMessageType` of an Interrupt-IN message.
    pub enum Interrupt {
        /// `50` RDR_to_PC_NotifySlotChange.
        NotifySlotChange = 0x50,
        /// `51` RDR_to_PC_HardwareError.
        HardwareError = 0x51,
    }
}

byte_enum! {
    /// `bError` of a failed command (CCID §6.2.6, table 6.2-2). Values
    /// `01`–`7F` name the offset of the offending header field and are
    /// [`SlotError::Unknown`] here; build them with [`SlotError::bad_field`].
    pub enum SlotError {
        /// `00`: command not supported.
        CommandNotSupported = 0x00,
        /// `FF`: command aborted.
        CmdAborted = 0xFF,
        /// `FE`: the card is absent or does not answer.
        IccMute = 0xFE,
        /// `FD`: parity error during the exchange.
        XfrParityError = 0xFD,
        /// `FC`: overrun error during the exchange.
        XfrOverrun = 0xFC,
        /// `FB`: hardware error.
        HwError = 0xFB,
        /// `F8`: bad ATR TS.
        BadAtrTs = 0xF8,
        /// `F7`: bad ATR TCK.
        BadAtrTck = 0xF7,
        /// `F6`: protocol not supported by the card.
        IccProtocolNotSupported = 0xF6,
        /// `F5`: card class not supported.
        IccClassNotSupported = 0xF5,
        /// `F4`: procedure byte conflict.
        ProcedureByteConflict = 0xF4,
        /// `F3`: deactivated protocol.
        DeactivatedProtocol = 0xF3,
        /// `F2`: busy with an automatic sequence.
        BusyWithAutoSequence = 0xF2,
        /// `F0`: PIN entry timed out.
        PinTimeout = 0xF0,
        /// `EF`: PIN entry cancelled.
        PinCancelled = 0xEF,
        /// `E0`: the slot is busy with another command.
        CmdSlotBusy = 0xE0,
    }
}

impl SlotError {
    /// `01`–`7F`: the field at `offset` of the command was wrong
    /// (1 `dwLength`, 5 `bSlot`, 7 `bPowerSelect` / `bProtocolNum`…).
    pub fn bad_field(offset: u8) -> SlotError {
        SlotError::Unknown(offset & 0x7F)
    }
}

/// Offset of `dwLength` in a command, the `bError` for a bad length.
pub const ERR_OFFSET_LENGTH: u8 = 1;
/// Offset of `bSlot`, the `bError` for a slot that does not exist.
pub const ERR_OFFSET_SLOT: u8 = 5;
/// Offset of the first message-specific byte (`bPowerSelect`,
/// `bProtocolNum`, `bClockCommand`, …).
pub const ERR_OFFSET_SPECIFIC_0: u8 = 7;
/// Offset of `wLevelParameter` in an XfrBlock.
pub const ERR_OFFSET_LEVEL_PARAMETER: u8 = 8;

/// The card part of `bStatus` (`bmICCStatus`, bits 0–1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IccStatus {
    /// `0`: present and active (powered).
    Active,
    /// `1`: present, inactive.
    Inactive,
    /// `2`: no card.
    Absent,
}

impl IccStatus {
    /// The two status bits.
    pub fn bits(self) -> u8 {
        match self {
            IccStatus::Active => 0x00,
            IccStatus::Inactive => 0x01,
            IccStatus::Absent => 0x02,
        }
    }
}

/// The command part of `bStatus` (`bmCommandStatus`, bits 6–7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommandStatus {
    /// `0`: processed without error.
    Ok,
    /// `1`: failed; `bError` says why.
    Failed,
    /// `2`: time extension requested; `bError` is the BWT multiplier.
    TimeExtension,
}

impl CommandStatus {
    /// The two status bits, in place.
    pub fn bits(self) -> u8 {
        match self {
            CommandStatus::Ok => 0x00,
            CommandStatus::Failed => 0x40,
            CommandStatus::TimeExtension => 0x80,
        }
    }
}

/// `bStatus` from its two parts.
pub fn status_byte(icc: IccStatus, command: CommandStatus) -> u8 {
    icc.bits() | command.bits()
}

impl Command {
    /// The Bulk-IN message type the spec pairs with this command (unknown
    /// commands are answered with a SlotStatus).
    pub fn response(self) -> Response {
        match self {
            Command::IccPowerOn | Command::XfrBlock | Command::Secure => Response::DataBlock,
            Command::GetParameters | Command::ResetParameters | Command::SetParameters => {
                Response::Parameters
            }
            Command::Escape => Response::Escape,
            Command::SetDataRateAndClockFrequency => Response::DataRateAndClockFrequency,
            Command::IccPowerOff
            | Command::GetSlotStatus
            | Command::IccClock
            | Command::T0Apdu
            | Command::Mechanical
            | Command::Abort
            | Command::Unknown(_) => Response::SlotStatus,
        }
    }
}

/// Appends a whole message (header + `data`) to `out`. `data` longer than
/// `u32::MAX` cannot be expressed and is cut (callers bound it long before).
pub fn emit(
    out: &mut Vec<u8>,
    message_type: u8,
    slot: u8,
    seq: u8,
    specific: [u8; 3],
    data: &[u8],
) {
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.reserve(HEADER_LEN + data.len());
    out.push(message_type);
    out.extend_from_slice(&len.to_le_bytes());
    out.push(slot);
    out.push(seq);
    out.extend_from_slice(&specific);
    out.extend_from_slice(data.get(..len as usize).unwrap_or(data));
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn header_fields() {
        let p = Packet::new_checked(hex!("6F 05000000 01 2A 04 0100 00A4040000")).unwrap();
        assert_eq!(p.message_type(), 0x6F);
        assert_eq!(p.length(), 5);
        assert_eq!(p.slot(), 1);
        assert_eq!(p.seq(), 0x2A);
        assert_eq!(p.specific(), [0x04, 0x01, 0x00]);
        assert_eq!(p.payload(), hex!("00A4040000"));
        assert!(p.length_matches());
        assert_eq!(Command::from(p.message_type()), Command::XfrBlock);
    }

    #[test]
    fn runts_are_rejected() {
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(vec![0u8; n]), Err(WireError::Runt(n)));
        }
        let p = Packet::new_checked([0u8; 10]).unwrap();
        assert_eq!(p.payload(), b"");
        assert!(p.length_matches());
        let lying = Packet::new_checked(hex!("6F FFFFFFFF 00 00 000000")).unwrap();
        assert_eq!(lying.length(), u32::MAX);
        assert!(!lying.length_matches());
    }

    #[test]
    fn constants_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(u8::from(Command::from(b)), b);
            assert_eq!(u8::from(Response::from(b)), b);
            assert_eq!(u8::from(SlotError::from(b)), b);
            assert_eq!(u8::from(Interrupt::from(b)), b);
        }
        assert_eq!(Command::from(0x62), Command::IccPowerOn);
        assert_eq!(Command::from(0x99), Command::Unknown(0x99));
        assert_eq!(SlotError::from(0xE0), SlotError::CmdSlotBusy);
        assert_eq!(u8::from(SlotError::bad_field(5)), 0x05);
        assert_eq!(Command::XfrBlock.to_string(), "XfrBlock (6F)");
        assert_eq!(Command::Unknown(0x99).to_string(), "unknown (99)");
    }

    #[test]
    fn response_types() {
        let table = [
            (0x62, 0x80),
            (0x63, 0x81),
            (0x65, 0x81),
            (0x6F, 0x80),
            (0x6C, 0x82),
            (0x6D, 0x82),
            (0x61, 0x82),
            (0x6B, 0x83),
            (0x6E, 0x81),
            (0x6A, 0x81),
            (0x69, 0x80),
            (0x71, 0x81),
            (0x72, 0x81),
            (0x73, 0x84),
            (0x00, 0x81),
        ];
        for (cmd, resp) in table {
            assert_eq!(u8::from(Command::from(cmd).response()), resp, "{cmd:02X}");
        }
    }

    #[test]
    fn emit_message() {
        let mut out = Vec::new();
        emit(&mut out, 0x80, 0, 7, [0x00, 0x00, 0x00], &hex!("9000"));
        assert_eq!(out, hex!("80 02000000 00 07 00 00 00 9000"));
        assert_eq!(
            status_byte(IccStatus::Inactive, CommandStatus::Failed),
            0x41
        );
        assert_eq!(status_byte(IccStatus::Absent, CommandStatus::Failed), 0x42);
        assert_eq!(
            status_byte(IccStatus::Active, CommandStatus::TimeExtension),
            0x80
        );
    }
}
