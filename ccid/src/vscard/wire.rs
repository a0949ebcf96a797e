//! The VSCard wire format: a 12-byte big-endian header and a payload.
//!
//! ```text
//!  0        4          8         12
//!  ┌────────┬──────────┬─────────┬──────────────────┐
//!  │ type   │ reader_id│ length  │ payload (length) │
//!  └────────┴──────────┴─────────┴──────────────────┘
//!    u32 BE   u32 BE     u32 BE
//! ```
//!
//! [`Packet`] is a view over a buffer with named field ranges: once
//! [`Packet::new_checked`] has accepted the buffer no accessor can panic.
//! [`Message`] is the typed form of a packet's payload, and [`Decoder`]
//! cuts a byte stream into packets without ever holding more than one
//! header and [`MAX_RECV_PAYLOAD`] bytes, whatever the peer announces.
//!
//! ```
//! use ccid::vscard::wire::{Decoder, Message, MsgType};
//!
//! let mut bytes = Vec::new();
//! Message::Apdu(&[0x00, 0xA4, 0x04, 0x00]).encode(0, &mut bytes)?;
//! assert_eq!(bytes[..12], [0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 4]);
//!
//! let mut decoder = Decoder::new();
//! assert_eq!(decoder.feed(&bytes)?, 16);
//! let packet = decoder.next_packet().expect("one whole message");
//! assert_eq!(packet.msg_type(), MsgType::Apdu);
//! assert_eq!(Message::parse(&packet.as_ref())?, Message::Apdu(&[0x00, 0xA4, 0x04, 0x00]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use core::ops::Range;

/// Length of the header: `type`, `reader_id`, `length`, each a big-endian
/// `u32`.
pub const HEADER_LEN: usize = 12;

/// Largest payload this crate sends. QEMU's `ccid-card-passthru` buffers
/// its input in 64 KiB (header included) and drops the connection when a
/// message does not fit.
pub const MAX_SEND_PAYLOAD: usize = 0x1_0000 - HEADER_LEN;

/// Largest payload this crate accepts. QEMU forwards guest APDUs from a
/// 64 KiB bulk-out buffer, so nothing legitimate is longer; a header
/// announcing more is refused before anything is allocated for it.
pub const MAX_RECV_PAYLOAD: usize = 0x1_0000;

/// Longest ATR QEMU accepts (ISO 7816-3).
pub const MAX_ATR_LEN: usize = 40;

/// Longest reader name this crate sends or keeps (the name is only for
/// display; QEMU ignores it).
pub const MAX_NAME_LEN: usize = 255;

/// The Init magic, `"VSCD"` in this byte order on the wire.
pub const MAGIC: [u8; 4] = *b"VSCD";

/// The protocol version both QEMU and libcacard speak: 0.0.2.
pub const VERSION: Version = Version(0x0000_0002);

/// Reader ID of messages that concern no reader (Init), and of a refused
/// ReaderAdd.
pub const UNDEFINED_READER_ID: u32 = 0xFFFF_FFFF;

/// The first reader ID a host hands out (QEMU's only one).
pub const MINIMAL_READER_ID: u32 = 0;

/// Byte ranges of the header fields.
mod field {
    use core::ops::Range;

    pub(super) const TYPE: Range<usize> = 0..4;
    pub(super) const READER_ID: Range<usize> = 4..8;
    pub(super) const LENGTH: Range<usize> = 8..12;
    pub(super) const PAYLOAD: usize = 12;
}

/// A protocol version: `major` (11 bits), `middle` (11 bits), `minor`
/// (10 bits) packed into a `u32`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version(pub u32);

impl Version {
    /// Packs a version; components wider than their field are masked.
    pub const fn new(major: u32, middle: u32, minor: u32) -> Version {
        Version(((major & 0x7FF) << 21) | ((middle & 0x7FF) << 10) | (minor & 0x3FF))
    }

    /// The major component (breaking changes).
    pub const fn major(self) -> u32 {
        self.0 >> 21
    }

    /// The middle component (compatible additions).
    pub const fn middle(self) -> u32 {
        (self.0 >> 10) & 0x7FF
    }

    /// The minor component (bug fixes).
    pub const fn minor(self) -> u32 {
        self.0 & 0x3FF
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major(), self.middle(), self.minor())
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({self} = 0x{:08X})", self.0)
    }
}

/// A message type (`VSCMsgType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgType {
    /// `0x01`: protocol greeting, both ways.
    Init,
    /// `0x02`: the answer to ReaderAdd, ReaderRemove, ATR and CardRemove;
    /// also a failed APDU.
    Error,
    /// `0x03`: the client has a reader (payload: its name).
    ReaderAdd,
    /// `0x04`: the client's reader is gone.
    ReaderRemove,
    /// `0x05`: a card is in the reader (payload: its ATR).
    Atr,
    /// `0x06`: the card was taken out.
    CardRemove,
    /// `0x07`: a command APDU (host → client) or its response (client →
    /// host).
    Apdu,
    /// `0x08`: host asks the client to finish outstanding APDUs.
    Flush,
    /// `0x09`: client's answer to Flush.
    FlushComplete,
    /// Any other value.
    Unknown(u32),
}

impl From<u32> for MsgType {
    fn from(value: u32) -> MsgType {
        match value {
            0x01 => MsgType::Init,
            0x02 => MsgType::Error,
            0x03 => MsgType::ReaderAdd,
            0x04 => MsgType::ReaderRemove,
            0x05 => MsgType::Atr,
            0x06 => MsgType::CardRemove,
            0x07 => MsgType::Apdu,
            0x08 => MsgType::Flush,
            0x09 => MsgType::FlushComplete,
            other => MsgType::Unknown(other),
        }
    }
}

impl From<MsgType> for u32 {
    fn from(value: MsgType) -> u32 {
        match value {
            MsgType::Init => 0x01,
            MsgType::Error => 0x02,
            MsgType::ReaderAdd => 0x03,
            MsgType::ReaderRemove => 0x04,
            MsgType::Atr => 0x05,
            MsgType::CardRemove => 0x06,
            MsgType::Apdu => 0x07,
            MsgType::Flush => 0x08,
            MsgType::FlushComplete => 0x09,
            MsgType::Unknown(other) => other,
        }
    }
}

/// The code in an Error message (`VSCErrorCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `0`: the operation succeeded.
    Success,
    /// `1`: it failed.
    General,
    /// `2`: the host has no room for another reader.
    CannotAddMoreReaders,
    /// `3`: the reader already has a card.
    CardAlreadyInserted,
    /// Any other value.
    Unknown(u32),
}

impl From<u32> for ErrorCode {
    fn from(value: u32) -> ErrorCode {
        match value {
            0 => ErrorCode::Success,
            1 => ErrorCode::General,
            2 => ErrorCode::CannotAddMoreReaders,
            3 => ErrorCode::CardAlreadyInserted,
            other => ErrorCode::Unknown(other),
        }
    }
}

impl From<ErrorCode> for u32 {
    fn from(value: ErrorCode) -> u32 {
        match value {
            ErrorCode::Success => 0,
            ErrorCode::General => 1,
            ErrorCode::CannotAddMoreReaders => 2,
            ErrorCode::CardAlreadyInserted => 3,
            ErrorCode::Unknown(other) => other,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Success => f.write_str("success"),
            ErrorCode::General => f.write_str("general error"),
            ErrorCode::CannotAddMoreReaders => f.write_str("cannot add more readers"),
            ErrorCode::CardAlreadyInserted => f.write_str("card already inserted"),
            ErrorCode::Unknown(c) => write!(f, "unknown error code 0x{c:08X}"),
        }
    }
}

/// Why bytes are not a VSCard message, or a message cannot be written.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Fewer than [`HEADER_LEN`] bytes.
    ShortHeader {
        /// Bytes available.
        len: usize,
    },
    /// The buffer ends before the payload the header announces.
    ShortPayload {
        /// The message type.
        msg_type: MsgType,
        /// Payload length announced.
        announced: u32,
        /// Payload bytes present.
        present: usize,
    },
    /// A payload is longer than the limit.
    TooLong {
        /// The message type.
        msg_type: MsgType,
        /// Payload length.
        length: u64,
        /// The limit.
        max: usize,
    },
    /// A payload is too short for its message type (Init, Error).
    BadPayload {
        /// The message type.
        msg_type: MsgType,
        /// Payload length.
        length: usize,
        /// What the type needs.
        need: &'static str,
    },
    /// Init carries the wrong magic.
    BadMagic([u8; 4]),
    /// The output buffer cannot hold the message.
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::ShortHeader { len } => {
                write!(f, "VSCard header needs {HEADER_LEN} bytes, got {len}")
            }
            WireError::ShortPayload {
                msg_type,
                announced,
                present,
            } => write!(
                f,
                "VSCard {msg_type:?} announces {announced} payload bytes, only {present} present"
            ),
            WireError::TooLong {
                msg_type,
                length,
                max,
            } => write!(
                f,
                "VSCard {msg_type:?} payload of {length} bytes exceeds the {max}-byte limit"
            ),
            WireError::BadPayload {
                msg_type,
                length,
                need,
            } => write!(
                f,
                "VSCard {msg_type:?} payload of {length} bytes: expected {need}"
            ),
            WireError::BadMagic(m) => write!(
                f,
                "VSCard Init magic is {:02X}{:02X}{:02X}{:02X}, expected 56534344 (\"VSCD\")",
                m[0], m[1], m[2], m[3]
            ),
            WireError::BufferTooSmall { need, have } => {
                write!(f, "output buffer of {have} bytes cannot hold {need}")
            }
        }
    }
}

impl std::error::Error for WireError {}

fn be_u32(bytes: &[u8], range: Range<usize>) -> u32 {
    bytes
        .get(range)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .unwrap_or_default()
}

fn put_be_u32(bytes: &mut [u8], range: Range<usize>, value: u32) {
    if let Some(b) = bytes.get_mut(range) {
        b.copy_from_slice(&value.to_be_bytes());
    }
}

/// A VSCard message in a buffer: a header and the payload it announces.
///
/// [`Packet::new_checked`] makes sure the buffer holds the header and the
/// whole payload; bytes after the payload belong to the next message and
/// are not part of this one.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> fmt::Debug for Packet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("msg_type", &self.msg_type())
            .field("reader_id", &self.reader_id())
            .field("length", &self.length())
            .finish()
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors then return zeros and
    /// empty payloads where bytes are missing (they never panic). Call
    /// [`Packet::check_len`] before trusting the result.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer that holds a whole message.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds the header and the announced payload.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::ShortHeader { len });
        }
        let present = len - HEADER_LEN;
        if u64::from(self.length()) > present as u64 {
            return Err(WireError::ShortPayload {
                msg_type: self.msg_type(),
                announced: self.length(),
                present,
            });
        }
        Ok(())
    }

    /// The message type.
    pub fn msg_type(&self) -> MsgType {
        MsgType::from(be_u32(self.buffer.as_ref(), field::TYPE))
    }

    /// The reader the message concerns.
    pub fn reader_id(&self) -> u32 {
        be_u32(self.buffer.as_ref(), field::READER_ID)
    }

    /// The payload length the header announces.
    pub fn length(&self) -> u32 {
        be_u32(self.buffer.as_ref(), field::LENGTH)
    }

    /// The payload (empty when the buffer is shorter than announced).
    pub fn payload(&self) -> &[u8] {
        let end = usize::try_from(self.length())
            .ok()
            .and_then(|l| l.checked_add(field::PAYLOAD))
            .unwrap_or(usize::MAX);
        self.buffer
            .as_ref()
            .get(field::PAYLOAD..end)
            .unwrap_or_default()
    }

    /// Header plus payload length.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.payload().len()
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// A borrowed view of the same message.
    pub fn as_ref(&self) -> Packet<&[u8]> {
        Packet::new_unchecked(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: MsgType) {
        put_be_u32(self.buffer.as_mut(), field::TYPE, value.into());
    }

    /// Sets the reader ID.
    pub fn set_reader_id(&mut self, value: u32) {
        put_be_u32(self.buffer.as_mut(), field::READER_ID, value);
    }

    /// Sets the payload length.
    pub fn set_length(&mut self, value: u32) {
        put_be_u32(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// The payload, writable (as long as [`Packet::length`] says).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::try_from(self.length())
            .ok()
            .and_then(|l| l.checked_add(field::PAYLOAD))
            .unwrap_or(usize::MAX);
        self.buffer
            .as_mut()
            .get_mut(field::PAYLOAD..end)
            .unwrap_or_default()
    }
}

/// A message, parsed from a [`Packet`]'s type and payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Greeting: magic (checked when parsing), version, capabilities
    /// (the first capability word; later words are ignored, as the
    /// protocol reserves them for growth).
    Init {
        /// The sender's protocol version.
        version: Version,
        /// The sender's first capability word (0: none).
        capabilities: u32,
    },
    /// The outcome of the previous request.
    Error(ErrorCode),
    /// A new reader; the name is UTF-8 for display (may be empty).
    ReaderAdd {
        /// The reader's name.
        name: &'a [u8],
    },
    /// The reader is gone.
    ReaderRemove,
    /// A card is in the reader; its ATR.
    Atr(&'a [u8]),
    /// The card was taken out.
    CardRemove,
    /// An APDU: a command (host → client) or a response (client → host).
    Apdu(&'a [u8]),
    /// Finish outstanding APDUs and answer FlushComplete.
    Flush,
    /// Every APDU before the Flush was answered.
    FlushComplete,
    /// A type this crate does not know.
    Unknown {
        /// The type value.
        msg_type: u32,
        /// Its payload.
        payload: &'a [u8],
    },
}

impl<'a> Message<'a> {
    /// Parses the payload of a checked packet according to its type.
    ///
    /// Messages without a payload (ReaderRemove, CardRemove, Flush,
    /// FlushComplete) accept and ignore one, as QEMU does. Init needs the
    /// magic and a version (8 bytes) and a whole number of capability
    /// words; Error needs its 4-byte code (bytes after it are ignored).
    pub fn parse(packet: &Packet<&'a [u8]>) -> Result<Message<'a>, WireError> {
        packet.check_len()?;
        let msg_type = packet.msg_type();
        let payload: &'a [u8] = {
            let buf: &'a [u8] = packet.buffer;
            let end = HEADER_LEN.saturating_add(packet.payload().len());
            buf.get(HEADER_LEN..end).unwrap_or_default()
        };
        Ok(match msg_type {
            MsgType::Init => {
                if payload.len() < 8 || !payload.len().is_multiple_of(4) {
                    return Err(WireError::BadPayload {
                        msg_type,
                        length: payload.len(),
                        need: "magic, version and whole capability words",
                    });
                }
                let magic: [u8; 4] = payload
                    .get(0..4)
                    .and_then(|m| m.try_into().ok())
                    .unwrap_or_default();
                if magic != MAGIC {
                    return Err(WireError::BadMagic(magic));
                }
                Message::Init {
                    version: Version(be_u32(payload, 4..8)),
                    capabilities: be_u32(payload, 8..12),
                }
            }
            MsgType::Error => {
                if payload.len() < 4 {
                    return Err(WireError::BadPayload {
                        msg_type,
                        length: payload.len(),
                        need: "a 4-byte error code",
                    });
                }
                Message::Error(ErrorCode::from(be_u32(payload, 0..4)))
            }
            MsgType::ReaderAdd => Message::ReaderAdd { name: payload },
            MsgType::ReaderRemove => Message::ReaderRemove,
            MsgType::Atr => Message::Atr(payload),
            MsgType::CardRemove => Message::CardRemove,
            MsgType::Apdu => Message::Apdu(payload),
            MsgType::Flush => Message::Flush,
            MsgType::FlushComplete => Message::FlushComplete,
            MsgType::Unknown(value) => Message::Unknown {
                msg_type: value,
                payload,
            },
        })
    }

    /// The message's type.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Message::Init { .. } => MsgType::Init,
            Message::Error(_) => MsgType::Error,
            Message::ReaderAdd { .. } => MsgType::ReaderAdd,
            Message::ReaderRemove => MsgType::ReaderRemove,
            Message::Atr(_) => MsgType::Atr,
            Message::CardRemove => MsgType::CardRemove,
            Message::Apdu(_) => MsgType::Apdu,
            Message::Flush => MsgType::Flush,
            Message::FlushComplete => MsgType::FlushComplete,
            Message::Unknown { msg_type, .. } => MsgType::Unknown(*msg_type),
        }
    }

    /// Length of the payload [`Message::emit`] writes.
    pub fn payload_len(&self) -> usize {
        match self {
            Message::Init { .. } => 12,
            Message::Error(_) => 4,
            Message::ReaderAdd { name } => name.len(),
            Message::Atr(b) | Message::Apdu(b) => b.len(),
            Message::Unknown { payload, .. } => payload.len(),
            Message::ReaderRemove
            | Message::CardRemove
            | Message::Flush
            | Message::FlushComplete => 0,
        }
    }

    /// Header plus payload length.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.payload_len()
    }

    /// Writes the message for `reader_id` at the start of `buf`; returns
    /// the number of bytes written. Payloads over [`MAX_SEND_PAYLOAD`] and
    /// a short `buf` are errors.
    pub fn emit(&self, reader_id: u32, buf: &mut [u8]) -> Result<usize, WireError> {
        let payload_len = self.payload_len();
        if payload_len > MAX_SEND_PAYLOAD {
            return Err(WireError::TooLong {
                msg_type: self.msg_type(),
                length: payload_len as u64,
                max: MAX_SEND_PAYLOAD,
            });
        }
        let need = self.encoded_len();
        let have = buf.len();
        let out = buf
            .get_mut(..need)
            .ok_or(WireError::BufferTooSmall { need, have })?;
        let mut packet = Packet::new_unchecked(out);
        packet.set_msg_type(self.msg_type());
        packet.set_reader_id(reader_id);
        // payload_len <= MAX_SEND_PAYLOAD < 2^32.
        packet.set_length(u32::try_from(payload_len).unwrap_or(u32::MAX));
        let payload = packet.payload_mut();
        match self {
            Message::Init {
                version,
                capabilities,
            } => {
                put_bytes(payload, 0, &MAGIC);
                put_be_u32(payload, 4..8, version.0);
                put_be_u32(payload, 8..12, *capabilities);
            }
            Message::Error(code) => put_be_u32(payload, 0..4, u32::from(*code)),
            Message::ReaderAdd { name: b }
            | Message::Atr(b)
            | Message::Apdu(b)
            | Message::Unknown { payload: b, .. } => put_bytes(payload, 0, b),
            Message::ReaderRemove
            | Message::CardRemove
            | Message::Flush
            | Message::FlushComplete => {}
        }
        Ok(need)
    }

    /// Appends the message for `reader_id` to `out`.
    pub fn encode(&self, reader_id: u32, out: &mut Vec<u8>) -> Result<(), WireError> {
        if self.payload_len() > MAX_SEND_PAYLOAD {
            return Err(WireError::TooLong {
                msg_type: self.msg_type(),
                length: self.payload_len() as u64,
                max: MAX_SEND_PAYLOAD,
            });
        }
        let start = out.len();
        out.resize(start + self.encoded_len(), 0);
        let written = self.emit(reader_id, out.get_mut(start..).unwrap_or_default())?;
        out.truncate(start + written);
        Ok(())
    }
}

fn put_bytes(dst: &mut [u8], at: usize, src: &[u8]) {
    if let Some(d) = dst.get_mut(at..at.saturating_add(src.len())) {
        d.copy_from_slice(src);
    }
}

/// Why an ATR would be refused (QEMU's rules: 2 to [`MAX_ATR_LEN`] bytes,
/// TS `3B` or `3F`, and the interface and historical bytes that T0 and the
/// TDi announce must be present).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtrProblem {
    /// Shorter than 2 or longer than [`MAX_ATR_LEN`] bytes.
    Length(usize),
    /// TS is not `3B` or `3F`.
    InitialByte(u8),
    /// The announced bytes run past the end.
    Truncated,
}

impl fmt::Display for AtrProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtrProblem::Length(n) => write!(f, "ATR of {n} bytes (must be 2 to {MAX_ATR_LEN})"),
            AtrProblem::InitialByte(b) => write!(f, "ATR starts with {b:02X}, not 3B or 3F"),
            AtrProblem::Truncated => f.write_str("ATR is shorter than its T0/TDi bytes announce"),
        }
    }
}

/// Checks an ATR the way a VSCard host does before it shows a card.
pub fn check_atr(atr: &[u8]) -> Result<(), AtrProblem> {
    if !(2..=MAX_ATR_LEN).contains(&atr.len()) {
        return Err(AtrProblem::Length(atr.len()));
    }
    let ts = atr.first().copied().unwrap_or_default();
    if ts != 0x3B && ts != 0x3F {
        return Err(AtrProblem::InitialByte(ts));
    }
    let t0 = atr.get(1).copied().unwrap_or_default();
    let mut needed = 2 + usize::from(t0 & 0x0F);
    let mut y = t0 >> 4;
    let mut pos = 2;
    // Walk the interface bytes: each Y names which of TA/TB/TC/TD follow.
    while y != 0 {
        let count = (y & 0x0F).count_ones() as usize;
        needed += count;
        if y & 0x08 == 0 {
            break;
        }
        let td_pos = pos + count - 1;
        pos += count;
        match atr.get(td_pos) {
            Some(td) => y = td >> 4,
            None => return Err(AtrProblem::Truncated),
        }
    }
    if atr.len() < needed {
        return Err(AtrProblem::Truncated);
    }
    Ok(())
}

/// Why a [`Decoder`] stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// A header announced a payload over the limit. The stream cannot be
    /// resynchronised; drop the connection.
    TooLong {
        /// The message type in that header.
        msg_type: MsgType,
        /// Its reader ID.
        reader_id: u32,
        /// The announced length.
        length: u32,
        /// The decoder's limit.
        max: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooLong {
                msg_type,
                reader_id,
                length,
                max,
            } => write!(
                f,
                "VSCard {msg_type:?} for reader {reader_id} announces {length} payload bytes, \
                 over the {max}-byte limit"
            ),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Cuts a byte stream into [`Packet`]s.
///
/// [`Decoder::feed`] takes bytes up to the end of the current message and
/// says how many it took; [`Decoder::next_packet`] then hands out the
/// complete message. The buffer never holds more than one message, and a
/// header announcing more than the limit fails before its payload is read.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    max_payload: usize,
    failed: Option<DecodeError>,
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder accepting payloads up to [`MAX_RECV_PAYLOAD`].
    pub fn new() -> Decoder {
        Decoder::with_max_payload(MAX_RECV_PAYLOAD)
    }

    /// A decoder accepting payloads up to `max_payload` bytes.
    pub fn with_max_payload(max_payload: usize) -> Decoder {
        Decoder {
            buf: Vec::with_capacity(HEADER_LEN + max_payload.min(512)),
            max_payload,
            failed: None,
        }
    }

    /// Bytes still needed to complete the current message (0 when one is
    /// complete and waiting in [`Decoder::next_packet`]).
    pub fn wanted(&self) -> usize {
        if self.buf.len() < HEADER_LEN {
            return HEADER_LEN - self.buf.len();
        }
        let announced = Packet::new_unchecked(self.buf.as_slice()).length();
        let total = usize::try_from(announced)
            .unwrap_or(usize::MAX)
            .saturating_add(HEADER_LEN);
        total.saturating_sub(self.buf.len())
    }

    /// Takes bytes from `input` up to the end of the current message and
    /// returns how many it took (0 while a complete message waits).
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, DecodeError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut used = 0;
        if self.buf.len() < HEADER_LEN {
            let take = (HEADER_LEN - self.buf.len()).min(input.len());
            self.buf
                .extend_from_slice(input.get(..take).unwrap_or_default());
            used = take;
            if self.buf.len() < HEADER_LEN {
                return Ok(used);
            }
            let header = Packet::new_unchecked(self.buf.as_slice());
            let length = header.length();
            if usize::try_from(length).map_or(true, |l| l > self.max_payload) {
                let e = DecodeError::TooLong {
                    msg_type: header.msg_type(),
                    reader_id: header.reader_id(),
                    length,
                    max: self.max_payload,
                };
                self.failed = Some(e.clone());
                return Err(e);
            }
        }
        let rest = input.get(used..).unwrap_or_default();
        let take = self.wanted().min(rest.len());
        self.buf
            .extend_from_slice(rest.get(..take).unwrap_or_default());
        Ok(used + take)
    }

    /// The complete message, if one is buffered; the decoder then starts
    /// on the next.
    pub fn next_packet(&mut self) -> Option<Packet<Vec<u8>>> {
        if self.failed.is_some() || self.buf.len() < HEADER_LEN || self.wanted() != 0 {
            return None;
        }
        let cap = HEADER_LEN + self.max_payload.min(512);
        let done = std::mem::replace(&mut self.buf, Vec::with_capacity(cap));
        Some(Packet::new_unchecked(done))
    }

    /// Feeds all of `input`, calling `on_packet` for every complete
    /// message in order.
    pub fn decode_all(
        &mut self,
        mut input: &[u8],
        mut on_packet: impl FnMut(Packet<Vec<u8>>),
    ) -> Result<(), DecodeError> {
        loop {
            let used = self.feed(input)?;
            input = input.get(used..).unwrap_or_default();
            match self.next_packet() {
                Some(p) => on_packet(p),
                None if input.is_empty() => return Ok(()),
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn version_packing() {
        assert_eq!(VERSION, Version::new(0, 0, 2));
        assert_eq!(Version::new(1, 2, 3).0, (1 << 21) | (2 << 10) | 3);
        let v = Version::new(5, 6, 7);
        assert_eq!((v.major(), v.middle(), v.minor()), (5, 6, 7));
        assert_eq!(v.to_string(), "5.6.7");
    }

    #[test]
    fn type_and_code_values() {
        for v in 0u32..12 {
            assert_eq!(u32::from(MsgType::from(v)), v);
            assert_eq!(u32::from(ErrorCode::from(v)), v);
        }
        assert_eq!(MsgType::from(7), MsgType::Apdu);
        assert_eq!(MsgType::from(0x1234), MsgType::Unknown(0x1234));
        assert_eq!(ErrorCode::from(2), ErrorCode::CannotAddMoreReaders);
    }

    #[test]
    fn init_bytes_match_qemu() {
        // QEMU's VSCMsgInit: magic as raw bytes, version and capability
        // big-endian; header type 1, reader FFFFFFFF, length 12.
        let mut out = Vec::new();
        Message::Init {
            version: VERSION,
            capabilities: 0,
        }
        .encode(UNDEFINED_READER_ID, &mut out)
        .unwrap();
        assert_eq!(
            out,
            hex!("00000001 FFFFFFFF 0000000C 56534344 00000002 00000000")
        );
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(
            Message::parse(&p).unwrap(),
            Message::Init {
                version: VERSION,
                capabilities: 0
            }
        );
    }

    #[test]
    fn every_message_emits_and_parses_back() {
        let msgs = [
            Message::Error(ErrorCode::Success),
            Message::Error(ErrorCode::Unknown(0x99)),
            Message::ReaderAdd { name: b"vcac 0" },
            Message::ReaderAdd { name: b"" },
            Message::ReaderRemove,
            Message::Atr(&hex!("3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34")),
            Message::CardRemove,
            Message::Apdu(&hex!("00 A4 04 00 07 A0 00 00 00 79 01 00")),
            Message::Flush,
            Message::FlushComplete,
            Message::Unknown {
                msg_type: 0x42,
                payload: &[1, 2, 3],
            },
        ];
        for m in msgs {
            let mut buf = vec![0u8; m.encoded_len() + 3];
            let n = m.emit(7, &mut buf).unwrap();
            assert_eq!(n, m.encoded_len());
            let p = Packet::new_checked(&buf[..n]).unwrap();
            assert_eq!(p.reader_id(), 7);
            assert_eq!(p.msg_type(), m.msg_type());
            assert_eq!(p.length() as usize, m.payload_len());
            assert_eq!(Message::parse(&p).unwrap(), m);
        }
    }

    #[test]
    fn exact_bytes() {
        let mut out = Vec::new();
        Message::Apdu(&hex!("90 00")).encode(0, &mut out).unwrap();
        Message::Error(ErrorCode::CardAlreadyInserted)
            .encode(0x01020304, &mut out)
            .unwrap();
        Message::CardRemove.encode(0, &mut out).unwrap();
        assert_eq!(
            out,
            hex!(
                "00000007 00000000 00000002 9000"
                "00000002 01020304 00000004 00000003"
                "00000006 00000000 00000000"
            )
        );
    }

    #[test]
    fn packet_checks_length() {
        assert_eq!(
            Packet::new_checked(&[0u8; 11][..]).unwrap_err(),
            WireError::ShortHeader { len: 11 }
        );
        let short = hex!("00000007 00000000 00000003 9000");
        assert_eq!(
            Packet::new_checked(&short[..]).unwrap_err(),
            WireError::ShortPayload {
                msg_type: MsgType::Apdu,
                announced: 3,
                present: 2
            }
        );
        // Unchecked accessors never panic.
        let p = Packet::new_unchecked(&short[..5]);
        assert_eq!(p.length(), 0);
        assert_eq!(p.payload(), b"");
        let p = Packet::new_unchecked(&short[..]);
        assert_eq!(p.payload(), b"");
        // Trailing bytes belong to the next message.
        let two = hex!("00000007 00000000 00000001 AA 00000006");
        let p = Packet::new_checked(&two[..]).unwrap();
        assert_eq!(p.payload(), [0xAA]);
        assert_eq!(p.total_len(), 13);
    }

    #[test]
    fn malformed_payloads() {
        let bad_magic = hex!("00000001 FFFFFFFF 0000000C 44435356 00000002 00000000");
        assert_eq!(
            Message::parse(&Packet::new_checked(&bad_magic[..]).unwrap()).unwrap_err(),
            WireError::BadMagic(*b"DCSV")
        );
        let short_init = hex!("00000001 FFFFFFFF 00000004 56534344");
        assert!(matches!(
            Message::parse(&Packet::new_checked(&short_init[..]).unwrap()),
            Err(WireError::BadPayload { length: 4, .. })
        ));
        let ragged_init = hex!("00000001 FFFFFFFF 0000000A 56534344 00000002 0000");
        assert!(Message::parse(&Packet::new_checked(&ragged_init[..]).unwrap()).is_err());
        // Init with two capability words: the first is kept.
        let long_init = hex!("00000001 FFFFFFFF 00000010 56534344 00000002 00000005 00000009");
        assert_eq!(
            Message::parse(&Packet::new_checked(&long_init[..]).unwrap()).unwrap(),
            Message::Init {
                version: VERSION,
                capabilities: 5
            }
        );
        // Old-style Init without capabilities.
        let bare_init = hex!("00000001 FFFFFFFF 00000008 56534344 00000002");
        assert_eq!(
            Message::parse(&Packet::new_checked(&bare_init[..]).unwrap()).unwrap(),
            Message::Init {
                version: VERSION,
                capabilities: 0
            }
        );
        let short_error = hex!("00000002 00000000 00000002 0000");
        assert!(matches!(
            Message::parse(&Packet::new_checked(&short_error[..]).unwrap()),
            Err(WireError::BadPayload { length: 2, .. })
        ));
        // A payload on an empty message is ignored.
        let remove = hex!("00000006 00000000 00000001 FF");
        assert_eq!(
            Message::parse(&Packet::new_checked(&remove[..]).unwrap()).unwrap(),
            Message::CardRemove
        );
    }

    #[test]
    fn emit_limits() {
        let mut small = [0u8; 13];
        assert_eq!(
            Message::Apdu(&[1, 2]).emit(0, &mut small).unwrap_err(),
            WireError::BufferTooSmall { need: 14, have: 13 }
        );
        let big = vec![0u8; MAX_SEND_PAYLOAD + 1];
        let mut out = Vec::new();
        assert!(matches!(
            Message::Apdu(&big).encode(0, &mut out),
            Err(WireError::TooLong { .. })
        ));
        assert!(out.is_empty());
        Message::Apdu(&big[1..]).encode(0, &mut out).unwrap();
        assert_eq!(out.len(), 0x1_0000);
    }

    #[test]
    fn atr_checks() {
        assert_eq!(
            check_atr(&hex!("3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34")),
            Ok(())
        );
        assert_eq!(check_atr(&hex!("3B 80 01 81")), Ok(()));
        assert_eq!(check_atr(&hex!("3B 00")), Ok(()));
        assert_eq!(check_atr(&hex!("3B")), Err(AtrProblem::Length(1)));
        assert_eq!(check_atr(&[0x3B; 41]), Err(AtrProblem::Length(41)));
        assert_eq!(
            check_atr(&hex!("3C 00")),
            Err(AtrProblem::InitialByte(0x3C))
        );
        assert_eq!(
            check_atr(&hex!("3B 7A 18 00 00")),
            Err(AtrProblem::Truncated)
        );
        // TD1 present but missing.
        assert_eq!(check_atr(&hex!("3B 80")), Err(AtrProblem::Truncated));
        // TD1 announces TA2 that is missing.
        assert_eq!(check_atr(&hex!("3B 80 10")), Err(AtrProblem::Truncated));
    }

    #[test]
    fn decoder_splits_and_joins() {
        let mut stream = Vec::new();
        Message::Apdu(&hex!("00 A4 04 00"))
            .encode(0, &mut stream)
            .unwrap();
        Message::Flush.encode(3, &mut stream).unwrap();
        Message::Error(ErrorCode::General)
            .encode(1, &mut stream)
            .unwrap();
        // One byte at a time.
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &stream {
            assert_eq!(d.feed(std::slice::from_ref(b)).unwrap(), 1);
            if let Some(p) = d.next_packet() {
                got.push(p.into_inner());
            }
        }
        assert_eq!(got.concat(), stream);
        assert_eq!(got.len(), 3);
        assert_eq!(d.wanted(), HEADER_LEN);
        // All at once.
        let mut got = Vec::new();
        Decoder::new()
            .decode_all(&stream, |p| got.push(p.into_inner()))
            .unwrap();
        assert_eq!(got.concat(), stream);
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn decoder_feed_stops_at_message_end() {
        let two = hex!("00000006 00000000 00000000 00000008 00000000 00000000");
        let mut d = Decoder::new();
        assert_eq!(d.feed(&two).unwrap(), 12);
        assert_eq!(d.wanted(), 0);
        assert_eq!(d.feed(&two[12..]).unwrap(), 0);
        let p = d.next_packet().unwrap();
        assert_eq!(p.msg_type(), MsgType::CardRemove);
        assert_eq!(d.feed(&two[12..]).unwrap(), 12);
        assert_eq!(d.next_packet().unwrap().msg_type(), MsgType::Flush);
        assert!(d.next_packet().is_none());
    }

    #[test]
    fn decoder_refuses_huge_lengths_before_allocating() {
        let mut d = Decoder::new();
        let e = d.feed(&hex!("00000007 00000000 FFFFFFFF")).unwrap_err();
        assert_eq!(
            e,
            DecodeError::TooLong {
                msg_type: MsgType::Apdu,
                reader_id: 0,
                length: 0xFFFF_FFFF,
                max: MAX_RECV_PAYLOAD
            }
        );
        assert!(d.buf.capacity() < 1024);
        // Sticky.
        assert_eq!(d.feed(&[0]).unwrap_err(), e);
        let mut d = Decoder::with_max_payload(4);
        assert!(d.feed(&hex!("00000007 00000000 00000004")).is_ok());
        let mut d = Decoder::with_max_payload(4);
        assert!(d.feed(&hex!("00000007 00000000 00000005")).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics_and_stays_bounded(chunks in proptest::collection::vec(
            proptest::collection::vec(proptest::num::u8::ANY, 0..64), 0..40)) {
            let mut d = Decoder::with_max_payload(100);
            for c in chunks {
                let r = d.decode_all(&c, |p| {
                    let p = p.as_ref();
                    assert!(p.check_len().is_ok());
                    let _ = Message::parse(&p);
                });
                proptest::prop_assert!(d.buf.len() <= HEADER_LEN + 100);
                if r.is_err() {
                    break;
                }
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let p = Packet::new_unchecked(&bytes[..]);
            let _ = (p.msg_type(), p.reader_id(), p.length(), p.payload());
            let _ = Message::parse(&p);
            let _ = check_atr(&bytes);
        }

        #[test]
        fn apdu_round_trip(reader in proptest::num::u32::ANY,
                           payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut out = Vec::new();
            Message::Apdu(&payload).encode(reader, &mut out).unwrap();
            let mut d = Decoder::new();
            let mut seen = 0;
            d.decode_all(&out, |p| {
                seen += 1;
                assert_eq!(p.reader_id(), reader);
                assert_eq!(Message::parse(&p.as_ref()).unwrap(), Message::Apdu(&payload));
            }).unwrap();
            proptest::prop_assert_eq!(seen, 1);
        }
    }
}
