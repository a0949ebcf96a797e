//! usbredir framing (protocol v0.7 as QEMU 7.2's `usb-redir` speaks it):
//! the packet header, the type codes, the capability bits, and the
//! type-specific headers whose size depends on the negotiated
//! capabilities.
//!
//! ```text
//!  header (12 bytes, or 16 once both hellos announced 64bits_ids)
//!  offset 0        4          8
//!         u32 type u32 length u32 id | u64 id          little-endian
//!  then `length` bytes: the type-specific header, then data
//! ```
//!
//! Written from the protocol description; the C `usbredirparser` is not
//! used. Every length is checked against [`MAX_BODY`] before anything is
//! allocated.

use core::fmt;

/// Largest body (type-specific header + data) accepted from the peer. A
/// bulk OUT transfer carries at most one CCID message (65 554 bytes), a
/// control transfer at most 65 535 bytes.
pub const MAX_BODY: u32 = 65_554 + 64;

/// Largest hello body accepted: the 64-byte version text and up to 32
/// capability words.
pub const MAX_HELLO: u32 = 64 + 4 * 32;

/// Length of the version text in a hello.
pub const VERSION_LEN: usize = 64;

/// Packet types (usbredirproto.h).
#[allow(missing_docs)]
pub mod kind {
    pub const HELLO: u32 = 0;
    pub const DEVICE_CONNECT: u32 = 1;
    pub const DEVICE_DISCONNECT: u32 = 2;
    pub const RESET: u32 = 3;
    pub const INTERFACE_INFO: u32 = 4;
    pub const EP_INFO: u32 = 5;
    pub const SET_CONFIGURATION: u32 = 6;
    pub const GET_CONFIGURATION: u32 = 7;
    pub const CONFIGURATION_STATUS: u32 = 8;
    pub const SET_ALT_SETTING: u32 = 9;
    pub const GET_ALT_SETTING: u32 = 10;
    pub const ALT_SETTING_STATUS: u32 = 11;
    pub const START_ISO_STREAM: u32 = 12;
    pub const STOP_ISO_STREAM: u32 = 13;
    pub const ISO_STREAM_STATUS: u32 = 14;
    pub const START_INTERRUPT_RECEIVING: u32 = 15;
    pub const STOP_INTERRUPT_RECEIVING: u32 = 16;
    pub const INTERRUPT_RECEIVING_STATUS: u32 = 17;
    pub const ALLOC_BULK_STREAMS: u32 = 18;
    pub const FREE_BULK_STREAMS: u32 = 19;
    pub const BULK_STREAMS_STATUS: u32 = 20;
    pub const CANCEL_DATA_PACKET: u32 = 21;
    pub const FILTER_REJECT: u32 = 22;
    pub const FILTER_FILTER: u32 = 23;
    pub const DEVICE_DISCONNECT_ACK: u32 = 24;
    pub const START_BULK_RECEIVING: u32 = 25;
    pub const STOP_BULK_RECEIVING: u32 = 26;
    pub const BULK_RECEIVING_STATUS: u32 = 27;
    pub const CONTROL_PACKET: u32 = 100;
    pub const BULK_PACKET: u32 = 101;
    pub const ISO_PACKET: u32 = 102;
    pub const INTERRUPT_PACKET: u32 = 103;
    pub const BUFFERED_BULK_PACKET: u32 = 104;
}

/// Capability bits of `caps[0]`.
#[allow(missing_docs)]
pub mod cap {
    pub const BULK_STREAMS: u32 = 1 << 0;
    pub const CONNECT_DEVICE_VERSION: u32 = 1 << 1;
    pub const FILTER: u32 = 1 << 2;
    pub const DEVICE_DISCONNECT_ACK: u32 = 1 << 3;
    pub const EP_INFO_MAX_PACKET_SIZE: u32 = 1 << 4;
    pub const IDS_64BIT: u32 = 1 << 5;
    pub const BULK_LENGTH_32BIT: u32 = 1 << 6;
    pub const BULK_RECEIVING: u32 = 1 << 7;
}

/// The capabilities this host announces: 0x7A — device version in
/// device_connect, disconnect ack, ep_info max packet sizes, 64-bit ids,
/// 32-bit bulk lengths (the last three are what QEMU needs on xHCI).
pub const OUR_CAPS: u32 = cap::CONNECT_DEVICE_VERSION
    | cap::DEVICE_DISCONNECT_ACK
    | cap::EP_INFO_MAX_PACKET_SIZE
    | cap::IDS_64BIT
    | cap::BULK_LENGTH_32BIT;

/// Status codes of data and status packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 0
    Success,
    /// 1
    Cancelled,
    /// 2
    Inval,
    /// 3
    IoError,
    /// 4
    Stall,
    /// 5
    Timeout,
    /// 6
    Babble,
    /// Anything else.
    Unknown(u8),
}

impl From<Status> for u8 {
    fn from(s: Status) -> u8 {
        match s {
            Status::Success => 0x00,
            Status::Cancelled => 0x01,
            Status::Inval => 0x02,
            Status::IoError => 0x03,
            Status::Stall => 0x04,
            Status::Timeout => 0x05,
            Status::Babble => 0x06,
            Status::Unknown(b) => b,
        }
    }
}

impl From<u8> for Status {
    fn from(b: u8) -> Status {
        match b {
            0x00 => Status::Success,
            0x01 => Status::Cancelled,
            0x02 => Status::Inval,
            0x03 => Status::IoError,
            0x04 => Status::Stall,
            0x05 => Status::Timeout,
            0x06 => Status::Babble,
            other => Status::Unknown(other),
        }
    }
}

/// What both hellos settled: which sizes every later packet uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// Capabilities both sides announced.
    pub caps: u32,
}

impl Negotiated {
    /// From our capabilities and the peer's.
    pub fn new(ours: u32, peer: u32) -> Negotiated {
        Negotiated { caps: ours & peer }
    }

    /// True when both announced `bit`.
    pub fn has(self, bit: u32) -> bool {
        self.caps & bit != 0
    }

    /// Bytes of every header except the hellos'.
    pub fn header_len(self) -> usize {
        if self.has(cap::IDS_64BIT) {
            16
        } else {
            12
        }
    }

    /// Type-specific header of a bulk_packet.
    pub fn bulk_header_len(self) -> usize {
        if self.has(cap::BULK_LENGTH_32BIT) {
            10
        } else {
            8
        }
    }

    /// Type-specific header of device_connect.
    pub fn device_connect_len(self) -> usize {
        if self.has(cap::CONNECT_DEVICE_VERSION) {
            10
        } else {
            8
        }
    }

    /// Type-specific header of ep_info (without stream counts: no
    /// bulk_streams is announced).
    pub fn ep_info_len(self) -> usize {
        if self.has(cap::EP_INFO_MAX_PACKET_SIZE) {
            160
        } else {
            96
        }
    }
}

/// A packet header, either size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Packet type.
    pub kind: u32,
    /// Bytes after the header.
    pub length: u32,
    /// Packet id (a guest USB packet's, echoed in answers).
    pub id: u64,
}

impl Header {
    /// Parses a header of `len` (12 or 16) bytes from the start of `b`;
    /// `None` while fewer bytes are there.
    pub fn parse(b: &[u8], len: usize) -> Option<Header> {
        let kind = u32::from_le_bytes(*b.first_chunk::<4>()?);
        let length = u32::from_le_bytes(*b.get(4..8)?.first_chunk::<4>()?);
        let id = if len == 16 {
            u64::from_le_bytes(*b.get(8..16)?.first_chunk::<8>()?)
        } else {
            u64::from(u32::from_le_bytes(*b.get(8..12)?.first_chunk::<4>()?))
        };
        Some(Header { kind, length, id })
    }

    /// Appends the header in `len` (12 or 16) bytes. A 12-byte header
    /// keeps the low 32 bits of the id (the peer sent no more).
    pub fn emit(&self, len: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        if len == 16 {
            out.extend_from_slice(&self.id.to_le_bytes());
        } else {
            out.extend_from_slice(&(self.id as u32).to_le_bytes());
        }
    }
}

/// Why the byte stream cannot be read on: the connection must close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The peer's first packet is not a hello.
    NoHello(u32),
    /// A hello body shorter than the version text or over [`MAX_HELLO`].
    BadHello(u32),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::NoHello(t) => write!(f, "first packet has type {t}, not hello (0)"),
            WireError::BadHello(n) => write!(f, "hello of {n} bytes (64..={MAX_HELLO} allowed)"),
        }
    }
}

impl std::error::Error for WireError {}

/// The type-specific header size of a packet the guest side may send,
/// or `None` for a type it must not send (unknown, or host-to-guest
/// only). For data packets this is the header before the data.
pub fn guest_header_len(kind: u32, n: Negotiated) -> Option<usize> {
    Some(match kind {
        kind::RESET
        | kind::GET_CONFIGURATION
        | kind::CANCEL_DATA_PACKET
        | kind::FILTER_REJECT
        | kind::DEVICE_DISCONNECT_ACK
        | kind::FILTER_FILTER => 0,
        kind::SET_CONFIGURATION
        | kind::GET_ALT_SETTING
        | kind::STOP_ISO_STREAM
        | kind::START_INTERRUPT_RECEIVING
        | kind::STOP_INTERRUPT_RECEIVING => 1,
        kind::SET_ALT_SETTING => 2,
        kind::START_ISO_STREAM => 3,
        kind::FREE_BULK_STREAMS => 4,
        kind::STOP_BULK_RECEIVING => 5,
        kind::ALLOC_BULK_STREAMS => 8,
        kind::START_BULK_RECEIVING | kind::CONTROL_PACKET => 10,
        kind::BULK_PACKET => n.bulk_header_len(),
        kind::ISO_PACKET | kind::INTERRUPT_PACKET => 4,
        _ => return None,
    })
}

/// True for types that may carry data after their type-specific header.
pub fn has_data(kind: u32) -> bool {
    matches!(
        kind,
        kind::FILTER_FILTER
            | kind::CONTROL_PACKET
            | kind::BULK_PACKET
            | kind::ISO_PACKET
            | kind::INTERRUPT_PACKET
    )
}

/// The type-specific header of a control_packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlHeader {
    /// `0x80` for IN (device to host), 0 for OUT.
    pub endpoint: u8,
    /// `bRequest`.
    pub request: u8,
    /// `bmRequestType`.
    pub request_type: u8,
    /// Status (answers only).
    pub status: u8,
    /// `wValue`.
    pub value: u16,
    /// `wIndex`.
    pub index: u16,
    /// `wLength` in a request, bytes transferred in an answer.
    pub length: u16,
}

impl ControlHeader {
    /// Parses the 10 bytes.
    pub fn parse(b: &[u8]) -> Option<ControlHeader> {
        let b: &[u8; 10] = b.first_chunk()?;
        let [endpoint, request, request_type, status, v0, v1, i0, i1, l0, l1] = *b;
        Some(ControlHeader {
            endpoint,
            request,
            request_type,
            status,
            value: u16::from_le_bytes([v0, v1]),
            index: u16::from_le_bytes([i0, i1]),
            length: u16::from_le_bytes([l0, l1]),
        })
    }

    /// The 10 bytes.
    pub fn bytes(&self) -> [u8; 10] {
        let [v0, v1] = self.value.to_le_bytes();
        let [i0, i1] = self.index.to_le_bytes();
        let [l0, l1] = self.length.to_le_bytes();
        [
            self.endpoint,
            self.request,
            self.request_type,
            self.status,
            v0,
            v1,
            i0,
            i1,
            l0,
            l1,
        ]
    }
}

/// The type-specific header of a bulk_packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkHeader {
    /// Endpoint address (bit 7: IN).
    pub endpoint: u8,
    /// Status (answers only).
    pub status: u8,
    /// Bytes requested (IN request), carried (OUT request, IN answer) or
    /// transferred (OUT answer); `length_high` included.
    pub length: u32,
    /// Stream id (0: no streams).
    pub stream_id: u32,
}

impl BulkHeader {
    /// Parses the 8- or 10-byte header (`long`: 32-bit lengths).
    pub fn parse(b: &[u8], long: bool) -> Option<BulkHeader> {
        let h: &[u8; 8] = b.first_chunk()?;
        let [endpoint, status, l0, l1, s0, s1, s2, s3] = *h;
        let high = if long {
            let [h0, h1] = *b.get(8..10)?.first_chunk::<2>()?;
            u32::from(u16::from_le_bytes([h0, h1]))
        } else {
            0
        };
        Some(BulkHeader {
            endpoint,
            status,
            length: u32::from(u16::from_le_bytes([l0, l1])) | (high << 16),
            stream_id: u32::from_le_bytes([s0, s1, s2, s3]),
        })
    }

    /// Appends the 8- or 10-byte header.
    pub fn emit(&self, long: bool, out: &mut Vec<u8>) {
        out.push(self.endpoint);
        out.push(self.status);
        out.extend_from_slice(&(self.length as u16).to_le_bytes());
        out.extend_from_slice(&self.stream_id.to_le_bytes());
        if long {
            out.extend_from_slice(&((self.length >> 16) as u16).to_le_bytes());
        }
    }
}

/// Appends a whole packet: header, type-specific header, data.
pub fn emit_packet(
    n: Negotiated,
    kind: u32,
    id: u64,
    type_header: &[u8],
    data: &[u8],
    out: &mut Vec<u8>,
) {
    let length = u32::try_from(type_header.len() + data.len()).unwrap_or(u32::MAX);
    let len = if kind == kind::HELLO {
        12
    } else {
        n.header_len()
    };
    Header { kind, length, id }.emit(len, out);
    out.extend_from_slice(type_header);
    out.extend_from_slice(data);
}

/// Appends our hello: `version` NUL-padded to 64 bytes, then `caps`.
pub fn emit_hello(version: &str, caps: u32, out: &mut Vec<u8>) {
    let mut body = [0u8; VERSION_LEN + 4];
    let text = version.as_bytes();
    let n = text.len().min(VERSION_LEN - 1);
    if let (Some(dst), Some(src)) = (body.get_mut(..n), text.get(..n)) {
        dst.copy_from_slice(src);
    }
    if let Some(dst) = body.get_mut(VERSION_LEN..) {
        dst.copy_from_slice(&caps.to_le_bytes());
    }
    emit_packet(Negotiated::default(), kind::HELLO, 0, &body, &[], out);
}

/// The peer's hello body: its version text and `caps[0]` (0 when it sent
/// no capability word).
pub fn parse_hello(body: &[u8]) -> Option<(String, u32)> {
    let version = body.get(..VERSION_LEN)?;
    let end = version.iter().position(|&b| b == 0).unwrap_or(VERSION_LEN);
    let text = String::from_utf8_lossy(version.get(..end).unwrap_or_default()).into_owned();
    let caps = body
        .get(VERSION_LEN..VERSION_LEN + 4)
        .and_then(|c| c.first_chunk::<4>())
        .map_or(0, |c| u32::from_le_bytes(*c));
    Some((text, caps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn headers_both_sizes() {
        let b = hex!("65000000 0A000000 78563412 00000000");
        assert_eq!(
            Header::parse(&b, 12),
            Some(Header {
                kind: 101,
                length: 10,
                id: 0x1234_5678
            })
        );
        let b16 = hex!("65000000 0A000000 78563412 DDCCBBAA");
        assert_eq!(Header::parse(&b16, 16).unwrap().id, 0xAABB_CCDD_1234_5678);
        assert_eq!(Header::parse(&b16[..15], 16), None);
        assert_eq!(Header::parse(&b16[..11], 12), None);
        let mut out = Vec::new();
        Header::parse(&b16, 16).unwrap().emit(16, &mut out);
        assert_eq!(out, b16);
        out.clear();
        Header::parse(&b, 12).unwrap().emit(12, &mut out);
        assert_eq!(out, b[..12]);
    }

    #[test]
    fn hello_bytes() {
        let mut out = Vec::new();
        emit_hello("vcac", OUR_CAPS, &mut out);
        assert_eq!(out.len(), 12 + 68);
        assert_eq!(out[..12], hex!("00000000 44000000 00000000"));
        assert_eq!(out[12..17], *b"vcac\0");
        assert_eq!(out[76..], hex!("7A000000"));
        let (text, caps) = parse_hello(&out[12..]).unwrap();
        assert_eq!((text.as_str(), caps), ("vcac", 0x7A));
        // QEMU 7.2's hello announces 0xFF.
        let mut q = b"qemu usb-redir guest 7.2.22".to_vec();
        q.resize(64, 0);
        q.extend_from_slice(&hex!("FF000000"));
        assert_eq!(
            parse_hello(&q),
            Some(("qemu usb-redir guest 7.2.22".into(), 0xFF))
        );
        assert_eq!(parse_hello(&q[..63]), None);
        assert_eq!(parse_hello(&q[..64]).unwrap().1, 0);
    }

    #[test]
    fn negotiated_sizes() {
        let n = Negotiated::new(OUR_CAPS, 0xFF);
        assert_eq!(n.caps, 0x7A);
        assert_eq!(
            (
                n.header_len(),
                n.bulk_header_len(),
                n.device_connect_len(),
                n.ep_info_len()
            ),
            (16, 10, 10, 160)
        );
        let old = Negotiated::new(OUR_CAPS, 0);
        assert_eq!(
            (
                old.header_len(),
                old.bulk_header_len(),
                old.device_connect_len(),
                old.ep_info_len()
            ),
            (12, 8, 8, 96)
        );
        assert_eq!(guest_header_len(kind::BULK_PACKET, n), Some(10));
        assert_eq!(guest_header_len(kind::BULK_PACKET, old), Some(8));
        assert_eq!(guest_header_len(kind::CONTROL_PACKET, n), Some(10));
        assert_eq!(guest_header_len(kind::DEVICE_CONNECT, n), None);
        assert_eq!(guest_header_len(99, n), None);
        assert!(has_data(kind::BULK_PACKET) && !has_data(kind::RESET));
    }

    #[test]
    fn control_and_bulk_headers() {
        // GET_DESCRIPTOR(device, 18) as QEMU forwards it.
        let c = ControlHeader::parse(&hex!("80 06 80 00 0001 0000 1200")).unwrap();
        assert_eq!(
            c,
            ControlHeader {
                endpoint: 0x80,
                request: 6,
                request_type: 0x80,
                status: 0,
                value: 0x0100,
                index: 0,
                length: 18
            }
        );
        assert_eq!(c.bytes(), hex!("80 06 80 00 0001 0000 1200"));
        assert_eq!(ControlHeader::parse(&hex!("80 06 80")), None);
        // An IN request of 65556 bytes needs length_high.
        let b = BulkHeader::parse(&hex!("82 00 1400 00000000 0100"), true).unwrap();
        assert_eq!((b.endpoint, b.length), (0x82, 65_556));
        let mut out = Vec::new();
        b.emit(true, &mut out);
        assert_eq!(out, hex!("82 00 1400 00000000 0100"));
        out.clear();
        BulkHeader { length: 64, ..b }.emit(false, &mut out);
        assert_eq!(out, hex!("82 00 4000 00000000"));
        assert_eq!(
            BulkHeader::parse(&hex!("03 00 0A00 00000000"), false)
                .unwrap()
                .length,
            10
        );
        assert_eq!(BulkHeader::parse(&hex!("03 00 0A00 00000000"), true), None);
        assert_eq!(Status::from(4), Status::Stall);
        assert_eq!(u8::from(Status::Unknown(9)), 9);
    }
}
