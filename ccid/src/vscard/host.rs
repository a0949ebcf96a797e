//! The reader side of VSCard (what QEMU's `ccid-card-passthru` does): a
//! sans-IO state machine for one client connection. The client announces
//! readers and cards; the host hands out reader IDs, keeps each reader's
//! ATR and sends it command APDUs.
//!
//! Inputs: [`Host::handle_packet`] for every message from the client, and
//! [`Host::send_apdu`] / [`Host::flush`] from whoever uses the cards.
//! Outputs: bytes to send ([`Host::poll_transmit`]) and [`HostEvent`]s
//! ([`Host::poll_event`]): readers and cards coming and going, APDU
//! responses.
//!
//! ```text
//!   AwaitingInit ── client Init ──► Ready (answers with our Init)
//!      ReaderAdd    → Error(success) carrying the new reader ID, or
//!                     Error(cannot add more readers)
//!      ATR          → Error(success) and the card is in (again: a reset)
//!      CardRemove   → Error(success)
//!      ReaderRemove → Error(success)
//!      APDU         ← one command per reader at a time; its response
//!                     (or an Error) comes back
//! ```
//!
//! The client is not trusted: reader names are cut to
//! [`MAX_NAME_LEN`] bytes, ATRs are checked
//! ([`check_atr`](super::wire::check_atr)), the number of readers per
//! connection is capped, and a response nobody asked for is dropped.
//!
//! ```
//! use ccid::vscard::host::{Host, HostEvent};
//! use ccid::vscard::wire::{Message, Packet, VERSION};
//!
//! let mut host = Host::new();
//! let mut feed = |host: &mut Host, m: Message<'_>, reader: u32| {
//!     let mut b = Vec::new();
//!     m.encode(reader, &mut b).unwrap();
//!     host.handle_packet(&Packet::new_checked(&b[..]).unwrap())
//! };
//! feed(&mut host, Message::Init { version: VERSION, capabilities: 0 }, 0xFFFF_FFFF)?;
//! feed(&mut host, Message::ReaderAdd { name: b"card reader" }, 0xFFFF_FFFF)?;
//! feed(&mut host, Message::Atr(&[0x3B, 0x00]), 0)?;
//! assert_eq!(host.atr(0)?, [0x3B, 0x00]);
//! host.send_apdu(0, &[0x00, 0xA4, 0x04, 0x00])?;
//! feed(&mut host, Message::Apdu(&[0x90, 0x00]), 0)?;
//! let last = std::iter::from_fn(|| host.poll_event()).last();
//! assert_eq!(last, Some(HostEvent::Response { reader: 0, apdu: vec![0x90, 0x00] }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use std::collections::{BTreeMap, VecDeque};

use super::wire::{
    self, ErrorCode, Message, MsgType, Packet, Version, WireError, MAX_NAME_LEN, MAX_SEND_PAYLOAD,
    MINIMAL_READER_ID, UNDEFINED_READER_ID, VERSION,
};

/// Readers one client may add unless [`Host::with_max_readers`] says
/// otherwise.
pub const DEFAULT_MAX_READERS: usize = 16;

/// Errors of the host state machine.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostError {
    /// A message from the client is malformed; close the connection.
    Wire(WireError),
    /// The client sent something other than Init first; close the
    /// connection.
    NotInitialized(MsgType),
    /// No reader with this ID on this connection.
    NoSuchReader(u32),
    /// The reader has no card.
    NoCard(u32),
    /// An APDU is already outstanding on this reader.
    Busy(u32),
    /// The command does not fit a VSCard message.
    TooLong {
        /// Its length.
        len: usize,
    },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Wire(e) => write!(f, "from the VSCard client: {e}"),
            HostError::NotInitialized(t) => {
                write!(f, "the VSCard client sent {t:?} before Init")
            }
            HostError::NoSuchReader(r) => write!(f, "remote reader {r}: no such reader"),
            HostError::NoCard(r) => write!(f, "remote reader {r}: no card"),
            HostError::Busy(r) => write!(f, "remote reader {r}: an APDU is already outstanding"),
            HostError::TooLong { len } => write!(
                f,
                "a {len}-byte command does not fit a VSCard message (max {MAX_SEND_PAYLOAD})"
            ),
        }
    }
}

impl std::error::Error for HostError {}

impl From<WireError> for HostError {
    fn from(e: WireError) -> HostError {
        HostError::Wire(e)
    }
}

/// What happened on the connection.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostEvent {
    /// The client greeted us.
    Connected {
        /// Its protocol version.
        version: Version,
        /// Its capabilities word.
        capabilities: u32,
    },
    /// A reader was added under this ID.
    ReaderAdded {
        /// The ID we gave it.
        reader: u32,
        /// Its name (lossy UTF-8, at most `MAX_NAME_LEN` bytes).
        name: String,
    },
    /// A reader was removed (its card first, if any).
    ReaderRemoved {
        /// The reader.
        reader: u32,
    },
    /// A card is in the reader, or was reset (a second ATR).
    CardInserted {
        /// The reader.
        reader: u32,
        /// Its ATR.
        atr: Vec<u8>,
    },
    /// The card was taken out.
    CardRemoved {
        /// The reader.
        reader: u32,
    },
    /// The response to the reader's outstanding APDU.
    Response {
        /// The reader.
        reader: u32,
        /// The response APDU (data and SW1 SW2).
        apdu: Vec<u8>,
    },
    /// The reader's outstanding APDU failed: the client answered with an
    /// Error, or the card or reader went away first.
    ApduFailed {
        /// The reader.
        reader: u32,
        /// The client's code ([`ErrorCode::General`] when the card went
        /// away).
        code: ErrorCode,
    },
    /// The client answered Flush.
    FlushComplete,
    /// The client sent something that was refused or ignored (for logs).
    Refused {
        /// The message type.
        msg_type: MsgType,
        /// The reader ID in its header.
        reader: u32,
        /// Why.
        reason: String,
    },
}

#[derive(Debug)]
struct Reader {
    name: String,
    atr: Option<Vec<u8>>,
    outstanding: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitingInit,
    Ready,
}

/// The VSCard host state machine for one connection. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Host {
    state: State,
    readers: BTreeMap<u32, Reader>,
    next_id: u32,
    max_readers: usize,
    out: Vec<u8>,
    events: VecDeque<HostEvent>,
}

impl Default for Host {
    fn default() -> Host {
        Host::new()
    }
}

impl Host {
    /// A host for a new connection, accepting up to
    /// [`DEFAULT_MAX_READERS`] readers.
    pub fn new() -> Host {
        Host::with_max_readers(DEFAULT_MAX_READERS)
    }

    /// A host accepting up to `max_readers` readers (1 behaves like QEMU's
    /// `ccid-card-passthru`, which has one slot per device).
    pub fn with_max_readers(max_readers: usize) -> Host {
        Host {
            state: State::AwaitingInit,
            readers: BTreeMap::new(),
            next_id: MINIMAL_READER_ID,
            max_readers,
            out: Vec::with_capacity(512),
            events: VecDeque::new(),
        }
    }

    /// True once the client's Init arrived.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Moves the bytes to send into `out` (appending); returns how many.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.out.len();
        out.append(&mut self.out);
        n
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }

    /// The readers on this connection: ID, name and ATR when a card is in.
    pub fn readers(&self) -> impl Iterator<Item = (u32, &str, Option<&[u8]>)> + '_ {
        self.readers
            .iter()
            .map(|(id, r)| (*id, r.name.as_str(), r.atr.as_deref()))
    }

    /// The ATR of the reader's card.
    pub fn atr(&self, reader: u32) -> Result<&[u8], HostError> {
        self.readers
            .get(&reader)
            .ok_or(HostError::NoSuchReader(reader))?
            .atr
            .as_deref()
            .ok_or(HostError::NoCard(reader))
    }

    fn send(&mut self, message: &Message<'_>, reader_id: u32) {
        // Only APDUs can be long, and send_apdu checks them first.
        if let Err(e) = message.encode(reader_id, &mut self.out) {
            log::error!("VSCard: cannot encode {:?}: {e}", message.msg_type());
        }
    }

    fn reply(&mut self, reader_id: u32, code: ErrorCode) {
        self.send(&Message::Error(code), reader_id);
    }

    fn refuse(&mut self, msg_type: MsgType, reader: u32, reason: String) {
        self.reply(reader, ErrorCode::General);
        self.events.push_back(HostEvent::Refused {
            msg_type,
            reader,
            reason,
        });
    }

    /// Sends a command APDU to the reader's card. Its response arrives as
    /// [`HostEvent::Response`] (or [`HostEvent::ApduFailed`]); one command
    /// per reader may be outstanding.
    pub fn send_apdu(&mut self, reader: u32, command: &[u8]) -> Result<(), HostError> {
        if command.len() > MAX_SEND_PAYLOAD {
            return Err(HostError::TooLong { len: command.len() });
        }
        let r = self
            .readers
            .get_mut(&reader)
            .ok_or(HostError::NoSuchReader(reader))?;
        if r.atr.is_none() {
            return Err(HostError::NoCard(reader));
        }
        if r.outstanding {
            return Err(HostError::Busy(reader));
        }
        r.outstanding = true;
        self.send(&Message::Apdu(command), reader);
        Ok(())
    }

    /// Asks the client to finish its outstanding APDUs; it answers with
    /// [`HostEvent::FlushComplete`].
    pub fn flush(&mut self) {
        self.send(&Message::Flush, UNDEFINED_READER_ID);
    }

    /// Feeds one message from the client. An error means the connection
    /// should be closed.
    pub fn handle_packet(&mut self, packet: &Packet<&[u8]>) -> Result<(), HostError> {
        let message = Message::parse(packet)?;
        let reader = packet.reader_id();
        if self.state == State::AwaitingInit && !matches!(message, Message::Init { .. }) {
            return Err(HostError::NotInitialized(message.msg_type()));
        }
        match message {
            Message::Init {
                version,
                capabilities,
            } => {
                self.state = State::Ready;
                self.send(
                    &Message::Init {
                        version: VERSION,
                        capabilities: 0,
                    },
                    UNDEFINED_READER_ID,
                );
                self.events.push_back(HostEvent::Connected {
                    version,
                    capabilities,
                });
            }
            Message::ReaderAdd { name } => self.on_reader_add(name),
            Message::ReaderRemove => self.on_reader_remove(reader),
            Message::Atr(atr) => self.on_atr(reader, atr),
            Message::CardRemove => self.on_card_remove(reader),
            Message::Apdu(response) => self.on_response(reader, response),
            Message::Error(code) => self.on_client_error(reader, code),
            Message::FlushComplete => self.events.push_back(HostEvent::FlushComplete),
            other @ (Message::Flush | Message::Unknown { .. }) => self.refuse(
                other.msg_type(),
                reader,
                "not a message a client sends".into(),
            ),
        }
        Ok(())
    }

    fn on_reader_add(&mut self, name: &[u8]) {
        if self.readers.len() >= self.max_readers {
            self.reply(UNDEFINED_READER_ID, ErrorCode::CannotAddMoreReaders);
            self.events.push_back(HostEvent::Refused {
                msg_type: MsgType::ReaderAdd,
                reader: UNDEFINED_READER_ID,
                reason: format!("already {} readers on this connection", self.max_readers),
            });
            return;
        }
        // IDs are never reused on a connection; skip any still taken after
        // a (theoretical) wrap.
        let mut id = self.next_id;
        while self.readers.contains_key(&id) || id == UNDEFINED_READER_ID {
            id = id.wrapping_add(1);
        }
        self.next_id = id.wrapping_add(1);
        let name = utf8_prefix(name, MAX_NAME_LEN);
        self.readers.insert(
            id,
            Reader {
                name: name.clone(),
                atr: None,
                outstanding: false,
            },
        );
        self.reply(id, ErrorCode::Success);
        self.events
            .push_back(HostEvent::ReaderAdded { reader: id, name });
    }

    fn fail_outstanding(&mut self, reader: u32) {
        if let Some(r) = self.readers.get_mut(&reader) {
            if std::mem::take(&mut r.outstanding) {
                self.events.push_back(HostEvent::ApduFailed {
                    reader,
                    code: ErrorCode::General,
                });
            }
        }
    }

    fn on_reader_remove(&mut self, reader: u32) {
        if !self.readers.contains_key(&reader) {
            self.refuse(MsgType::ReaderRemove, reader, "no such reader".into());
            return;
        }
        self.fail_outstanding(reader);
        if let Some(r) = self.readers.remove(&reader) {
            if r.atr.is_some() {
                self.events.push_back(HostEvent::CardRemoved { reader });
            }
        }
        self.reply(reader, ErrorCode::Success);
        self.events.push_back(HostEvent::ReaderRemoved { reader });
    }

    fn on_atr(&mut self, reader: u32, atr: &[u8]) {
        if !self.readers.contains_key(&reader) {
            self.refuse(MsgType::Atr, reader, "no such reader".into());
            return;
        }
        if let Err(problem) = wire::check_atr(atr) {
            self.refuse(MsgType::Atr, reader, problem.to_string());
            return;
        }
        // A second ATR is a reset: whatever was outstanding is lost.
        self.fail_outstanding(reader);
        if let Some(r) = self.readers.get_mut(&reader) {
            r.atr = Some(atr.to_vec());
        }
        self.reply(reader, ErrorCode::Success);
        self.events.push_back(HostEvent::CardInserted {
            reader,
            atr: atr.to_vec(),
        });
    }

    fn on_card_remove(&mut self, reader: u32) {
        let had_card = match self.readers.get(&reader) {
            None => {
                self.refuse(MsgType::CardRemove, reader, "no such reader".into());
                return;
            }
            Some(r) => r.atr.is_some(),
        };
        self.fail_outstanding(reader);
        if let Some(r) = self.readers.get_mut(&reader) {
            r.atr = None;
        }
        self.reply(reader, ErrorCode::Success);
        if had_card {
            self.events.push_back(HostEvent::CardRemoved { reader });
        }
    }

    fn on_response(&mut self, reader: u32, response: &[u8]) {
        match self.readers.get_mut(&reader) {
            Some(r) if r.outstanding => {
                r.outstanding = false;
                self.events.push_back(HostEvent::Response {
                    reader,
                    apdu: response.to_vec(),
                });
            }
            // Answering a stray response would invite a ping-pong; drop it.
            _ => self.events.push_back(HostEvent::Refused {
                msg_type: MsgType::Apdu,
                reader,
                reason: "a response to no outstanding command".into(),
            }),
        }
    }

    fn on_client_error(&mut self, reader: u32, code: ErrorCode) {
        match self.readers.get_mut(&reader) {
            Some(r) if r.outstanding => {
                r.outstanding = false;
                self.events
                    .push_back(HostEvent::ApduFailed { reader, code });
            }
            _ => self.events.push_back(HostEvent::Refused {
                msg_type: MsgType::Error,
                reader,
                reason: format!("client reports {code} with no command outstanding"),
            }),
        }
    }
}

/// The longest prefix of `bytes` of at most `max` bytes, as lossy UTF-8
/// (a multi-byte character cut in half becomes U+FFFD).
fn utf8_prefix(bytes: &[u8], max: usize) -> String {
    let cut = bytes.get(..max.min(bytes.len())).unwrap_or_default();
    String::from_utf8_lossy(cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vscard::wire::Decoder;
    use hex_literal::hex;

    fn client(host: &mut Host, m: Message<'_>, reader: u32) -> Result<(), HostError> {
        let mut buf = Vec::new();
        m.encode(reader, &mut buf).unwrap();
        host.handle_packet(&Packet::new_checked(&buf[..]).unwrap())
    }

    fn sent(host: &mut Host) -> Vec<(MsgType, u32, Vec<u8>)> {
        let mut bytes = Vec::new();
        host.poll_transmit(&mut bytes);
        let mut out = Vec::new();
        Decoder::new()
            .decode_all(&bytes, |p| {
                out.push((p.msg_type(), p.reader_id(), p.payload().to_vec()))
            })
            .unwrap();
        out
    }

    fn events(host: &mut Host) -> Vec<HostEvent> {
        std::iter::from_fn(|| host.poll_event()).collect()
    }

    const INIT: Message<'static> = Message::Init {
        version: VERSION,
        capabilities: 0,
    };
    const ATR: [u8; 15] = hex!("3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34");
    const SUCCESS: [u8; 4] = hex!("00000000");
    const GENERAL: [u8; 4] = hex!("00000001");

    #[test]
    fn a_whole_session() {
        let mut h = Host::new();
        client(&mut h, INIT, UNDEFINED_READER_ID).unwrap();
        assert_eq!(
            sent(&mut h),
            [(
                MsgType::Init,
                UNDEFINED_READER_ID,
                hex!("56534344 00000002 00000000").to_vec()
            )]
        );
        client(
            &mut h,
            Message::ReaderAdd { name: b"vcac 0" },
            UNDEFINED_READER_ID,
        )
        .unwrap();
        client(
            &mut h,
            Message::ReaderAdd { name: b"vcac 1" },
            UNDEFINED_READER_ID,
        )
        .unwrap();
        assert_eq!(
            sent(&mut h),
            [
                (MsgType::Error, 0, SUCCESS.to_vec()),
                (MsgType::Error, 1, SUCCESS.to_vec())
            ]
        );
        assert_eq!(h.send_apdu(0, &[0; 4]), Err(HostError::NoCard(0)));
        client(&mut h, Message::Atr(&ATR), 0).unwrap();
        assert_eq!(sent(&mut h), [(MsgType::Error, 0, SUCCESS.to_vec())]);
        assert_eq!(h.atr(0).unwrap(), ATR);

        h.send_apdu(0, &hex!("00 A4 04 00")).unwrap();
        assert_eq!(h.send_apdu(0, &hex!("00")), Err(HostError::Busy(0)));
        assert_eq!(
            sent(&mut h),
            [(MsgType::Apdu, 0, hex!("00 A4 04 00").to_vec())]
        );
        client(&mut h, Message::Apdu(&hex!("6A 82")), 0).unwrap();
        // A second, unasked-for response is dropped.
        client(&mut h, Message::Apdu(&hex!("90 00")), 0).unwrap();
        assert!(sent(&mut h).is_empty());

        h.flush();
        assert_eq!(
            sent(&mut h),
            [(MsgType::Flush, UNDEFINED_READER_ID, vec![])]
        );
        client(&mut h, Message::FlushComplete, UNDEFINED_READER_ID).unwrap();

        // Removal while a command is outstanding fails it.
        h.send_apdu(0, &hex!("00 CA 00 00")).unwrap();
        client(&mut h, Message::CardRemove, 0).unwrap();
        client(&mut h, Message::ReaderRemove, 0).unwrap();
        assert_eq!(h.send_apdu(0, &[0; 4]), Err(HostError::NoSuchReader(0)));
        assert_eq!(
            sent(&mut h),
            [
                (MsgType::Apdu, 0, hex!("00 CA 00 00").to_vec()),
                (MsgType::Error, 0, SUCCESS.to_vec()),
                (MsgType::Error, 0, SUCCESS.to_vec())
            ]
        );
        assert_eq!(
            events(&mut h),
            [
                HostEvent::Connected {
                    version: VERSION,
                    capabilities: 0
                },
                HostEvent::ReaderAdded {
                    reader: 0,
                    name: "vcac 0".into()
                },
                HostEvent::ReaderAdded {
                    reader: 1,
                    name: "vcac 1".into()
                },
                HostEvent::CardInserted {
                    reader: 0,
                    atr: ATR.to_vec()
                },
                HostEvent::Response {
                    reader: 0,
                    apdu: hex!("6A 82").to_vec()
                },
                HostEvent::Refused {
                    msg_type: MsgType::Apdu,
                    reader: 0,
                    reason: "a response to no outstanding command".into()
                },
                HostEvent::FlushComplete,
                HostEvent::ApduFailed {
                    reader: 0,
                    code: ErrorCode::General
                },
                HostEvent::CardRemoved { reader: 0 },
                HostEvent::ReaderRemoved { reader: 0 },
            ]
        );
        // IDs are not reused.
        client(
            &mut h,
            Message::ReaderAdd { name: b"" },
            UNDEFINED_READER_ID,
        )
        .unwrap();
        assert_eq!(sent(&mut h), [(MsgType::Error, 2, SUCCESS.to_vec())]);
    }

    #[test]
    fn client_error_fails_the_command() {
        let mut h = Host::new();
        client(&mut h, INIT, UNDEFINED_READER_ID).unwrap();
        client(
            &mut h,
            Message::ReaderAdd { name: b"r" },
            UNDEFINED_READER_ID,
        )
        .unwrap();
        client(&mut h, Message::Atr(&ATR), 0).unwrap();
        events(&mut h);
        h.send_apdu(0, &hex!("00 B0 00 00 00")).unwrap();
        client(&mut h, Message::Error(ErrorCode::General), 0).unwrap();
        assert_eq!(
            events(&mut h),
            [HostEvent::ApduFailed {
                reader: 0,
                code: ErrorCode::General
            }]
        );
        // The reader is free again.
        h.send_apdu(0, &hex!("00 B0 00 00 00")).unwrap();
    }

    #[test]
    fn limits_and_hostile_input() {
        let mut h = Host::with_max_readers(1);
        assert_eq!(
            client(&mut h, Message::ReaderAdd { name: b"x" }, 0),
            Err(HostError::NotInitialized(MsgType::ReaderAdd))
        );
        client(&mut h, INIT, UNDEFINED_READER_ID).unwrap();
        sent(&mut h);
        let long_name = vec![b'n'; 1000];
        client(&mut h, Message::ReaderAdd { name: &long_name }, 0).unwrap();
        client(&mut h, Message::ReaderAdd { name: b"second" }, 0).unwrap();
        assert_eq!(
            sent(&mut h),
            [
                (MsgType::Error, 0, SUCCESS.to_vec()),
                (
                    MsgType::Error,
                    UNDEFINED_READER_ID,
                    hex!("00000002").to_vec()
                )
            ]
        );
        let ev = events(&mut h);
        assert!(
            matches!(&ev[1], HostEvent::ReaderAdded { name, .. } if name.len() == MAX_NAME_LEN)
        );
        // Bad ATRs, unknown readers, wrong-direction messages: general
        // error, the session goes on.
        client(&mut h, Message::Atr(&hex!("3C 00")), 0).unwrap();
        client(&mut h, Message::Atr(&[0x3B; 41]), 0).unwrap();
        client(&mut h, Message::Atr(&ATR), 9).unwrap();
        client(&mut h, Message::CardRemove, 9).unwrap();
        client(&mut h, Message::ReaderRemove, 9).unwrap();
        client(&mut h, Message::Flush, 0).unwrap();
        client(
            &mut h,
            Message::Unknown {
                msg_type: 0xAB,
                payload: &[],
            },
            0,
        )
        .unwrap();
        let replies = sent(&mut h);
        assert_eq!(replies.len(), 7);
        assert!(replies
            .iter()
            .all(|(t, _, p)| *t == MsgType::Error && p == &GENERAL));
        assert_eq!(h.atr(0), Err(HostError::NoCard(0)));
        // A malformed Error ends the session.
        let short = hex!("00000002 00000000 00000001 00");
        assert!(matches!(
            h.handle_packet(&Packet::new_checked(&short[..]).unwrap()),
            Err(HostError::Wire(_))
        ));
        // Commands too long for a message are refused before sending.
        client(&mut h, Message::Atr(&ATR), 0).unwrap();
        assert_eq!(
            h.send_apdu(0, &vec![0; MAX_SEND_PAYLOAD + 1]),
            Err(HostError::TooLong {
                len: MAX_SEND_PAYLOAD + 1
            })
        );
    }

    #[test]
    fn second_atr_is_a_reset() {
        let mut h = Host::new();
        client(&mut h, INIT, UNDEFINED_READER_ID).unwrap();
        client(
            &mut h,
            Message::ReaderAdd { name: b"r" },
            UNDEFINED_READER_ID,
        )
        .unwrap();
        client(&mut h, Message::Atr(&ATR), 0).unwrap();
        h.send_apdu(0, &hex!("00 A4 04 00")).unwrap();
        client(&mut h, Message::Atr(&hex!("3B 80 01 81")), 0).unwrap();
        let ev = events(&mut h);
        assert_eq!(
            ev[ev.len() - 2..],
            [
                HostEvent::ApduFailed {
                    reader: 0,
                    code: ErrorCode::General
                },
                HostEvent::CardInserted {
                    reader: 0,
                    atr: hex!("3B 80 01 81").to_vec()
                }
            ]
        );
        assert_eq!(h.atr(0).unwrap(), hex!("3B 80 01 81"));
    }

    fn arbitrary_message() -> impl proptest::strategy::Strategy<Value = (u32, u32, Vec<u8>)> {
        use proptest::prelude::*;
        (
            prop_oneof![1u32..=10, any::<u32>()],
            prop_oneof![0u32..3, Just(UNDEFINED_READER_ID), any::<u32>()],
            proptest::collection::vec(any::<u8>(), 0..48),
        )
    }

    proptest::proptest! {
        #[test]
        fn hostile_message_sequences_never_panic(
            msgs in proptest::collection::vec(arbitrary_message(), 0..64),
            apdus in proptest::collection::vec(0u32..3, 0..8),
        ) {
            let mut h = Host::with_max_readers(4);
            client(&mut h, INIT, UNDEFINED_READER_ID).unwrap();
            for (i, (t, reader, payload)) in msgs.iter().enumerate() {
                let mut b = Vec::new();
                b.extend_from_slice(&t.to_be_bytes());
                b.extend_from_slice(&reader.to_be_bytes());
                b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                b.extend_from_slice(payload);
                let _ = h.handle_packet(&Packet::new_checked(&b[..]).unwrap());
                if let Some(r) = apdus.get(i % 8) {
                    let _ = h.send_apdu(*r, &[0x00, 0xA4, 0x04, 0x00]);
                }
                proptest::prop_assert!(h.readers().count() <= 4);
            }
            let mut out = Vec::new();
            h.poll_transmit(&mut out);
            Decoder::new().decode_all(&out, |p| {
                assert!(Message::parse(&p.as_ref()).is_ok());
            }).unwrap();
        }
    }

    #[test]
    fn names_are_cut_on_bytes_and_made_valid() {
        assert_eq!(utf8_prefix("héllo".as_bytes(), 2), "h\u{FFFD}");
        assert_eq!(utf8_prefix(b"abc", 10), "abc");
        assert_eq!(utf8_prefix(&[0xFF, b'a'], 10), "\u{FFFD}a");
    }
}
