//! The card side of VSCard (what `vscclient` was): a sans-IO state
//! machine that announces the readers of a [`ReaderSet`] to a host such as
//! QEMU's `ccid-card-passthru` and answers its APDUs from their cards.
//!
//! Inputs are method calls: [`Client::handle_packet`] for every message
//! from the host, [`Client::handle_event`] for every event of the reader
//! set (subscribe with [`ReaderSet::subscribe_with_replay`] so the current
//! readers and cards arrive as events too), [`Client::shutdown`] to leave.
//! Outputs are bytes to send ([`Client::poll_transmit`]) and notices to
//! log ([`Client::poll_event`]).
//!
//! ```text
//!   Connecting ── host Init ──► Ready ── shutdown ──► Closing
//!   (our Init sent)             │ ReaderRemove 0 (clears a reader a
//!                               │   previous client left behind)
//!                               │ ReaderAdd per reader
//!                               │ ATR per card, APDU answers
//! ```
//!
//! The host answers ReaderAdd, ReaderRemove, ATR and CardRemove each with
//! one Error message, in order, without saying which request it answers;
//! the client keeps a queue of the requests it sent and matches answers
//! to it. QEMU hands out reader ID 0 to every ReaderAdd (one card per
//! `ccid-card-passthru` device): a second reader given an ID already in
//! use is reported ([`ClientEvent::ReaderIdInUse`]) and left out.
//!
//! VSCard has no power messages: a card is powered when its ATR is sent
//! and stays powered while the host knows it.
//!
//! ```
//! use ccid::vscard::client::Client;
//! use ccid::vscard::wire::{Decoder, Message, MsgType, Packet, VERSION};
//! use vreader::ReaderSet;
//!
//! let set = ReaderSet::new();
//! set.add_reader("vcac 0")?;
//! let events = set.subscribe_with_replay();
//! let mut client = Client::new();
//! while let Some(e) = events.try_next() {
//!     client.handle_event(&e, &set);
//! }
//! // The host greets us...
//! let mut greeting = Vec::new();
//! Message::Init { version: VERSION, capabilities: 0 }.encode(0xFFFF_FFFF, &mut greeting)?;
//! client.handle_packet(&Packet::new_checked(&greeting[..])?, &set)?;
//! // ...and gets our Init, a clean-up of reader 0 and our reader.
//! let mut out = Vec::new();
//! client.poll_transmit(&mut out);
//! let mut sent = Vec::new();
//! Decoder::new().decode_all(&out, |p| sent.push(p.msg_type()))?;
//! assert_eq!(sent, [MsgType::Init, MsgType::ReaderRemove, MsgType::ReaderAdd]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use std::collections::VecDeque;
use std::sync::Arc;

use vreader::{Event, EventKind, ReaderError, ReaderId, ReaderSet};

use super::wire::{
    self, ErrorCode, Message, Packet, Version, WireError, MAX_NAME_LEN, MAX_SEND_PAYLOAD,
    MINIMAL_READER_ID, UNDEFINED_READER_ID, VERSION,
};

/// Errors that end a client session (the connection should be closed).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// A message from the host is malformed (bad Init magic, short Error).
    Wire(WireError),
    /// The host sent something other than Init first.
    NotInitialized(wire::MsgType),
    /// The session was shut down; nothing more is accepted.
    Closed,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Wire(e) => write!(f, "from the VSCard host: {e}"),
            ClientError::NotInitialized(t) => {
                write!(f, "the VSCard host sent {t:?} before Init")
            }
            ClientError::Closed => f.write_str("the VSCard client session is closed"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> ClientError {
        ClientError::Wire(e)
    }
}

/// Something worth logging that happened in the session.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// The host greeted us.
    Connected {
        /// Its protocol version.
        version: Version,
        /// Its capabilities word.
        capabilities: u32,
    },
    /// The host speaks another protocol version (we carry on).
    VersionMismatch {
        /// The host's version.
        host: Version,
    },
    /// The host took a reader under this ID.
    ReaderRegistered {
        /// Our reader.
        reader: ReaderId,
        /// The host's ID for it.
        remote: u32,
    },
    /// The host refused a reader.
    ReaderRefused {
        /// Our reader.
        reader: ReaderId,
        /// The host's answer.
        code: ErrorCode,
    },
    /// The host gave a reader an ID another of our readers already has
    /// (QEMU's `ccid-card-passthru` takes one reader per connection).
    ReaderIdInUse {
        /// Our reader left out.
        reader: ReaderId,
        /// The ID.
        remote: u32,
        /// Our reader that has it.
        holder: ReaderId,
    },
    /// A card's ATR went to the host.
    CardAnnounced {
        /// Our reader.
        reader: ReaderId,
        /// The ATR sent.
        atr: Vec<u8>,
    },
    /// The host refused an ATR (it does not show the card).
    AtrRefused {
        /// Our reader.
        reader: ReaderId,
        /// The host's answer.
        code: ErrorCode,
    },
    /// A card cannot be announced (its ATR is not one a host accepts, or
    /// it could not be powered).
    CardNotAnnounced {
        /// Our reader.
        reader: ReaderId,
        /// Why.
        reason: String,
    },
    /// The host removal of a card was sent.
    CardWithdrawn {
        /// Our reader.
        reader: ReaderId,
    },
    /// The reader's removal was sent.
    ReaderWithdrawn {
        /// Our reader.
        reader: ReaderId,
    },
    /// An APDU was answered.
    Apdu {
        /// The host's reader ID.
        remote: u32,
        /// Command length.
        command_len: usize,
        /// Response length (0 when an Error was sent instead).
        response_len: usize,
    },
    /// An APDU could not be answered; an Error went back.
    ApduFailed {
        /// The host's reader ID.
        remote: u32,
        /// Why.
        reason: String,
    },
    /// An Error from the host that answers nothing we sent, or reports a
    /// failure.
    HostError {
        /// The reader ID in its header.
        remote: u32,
        /// The code.
        code: ErrorCode,
    },
    /// A message the client does not expect from a host (answered with a
    /// general Error, as QEMU does).
    Unexpected {
        /// Its type.
        msg_type: wire::MsgType,
    },
    /// Flush was answered with FlushComplete.
    Flushed,
}

/// Where a local reader stands with the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Remote {
    /// Not announced yet (the host has not greeted us).
    Unannounced,
    /// ReaderAdd sent, no answer yet.
    Adding,
    /// The host knows it under this ID.
    Registered(u32),
    /// The host refused it, or gave it an ID already in use.
    Refused,
}

#[derive(Debug)]
struct Local {
    id: ReaderId,
    name: Arc<str>,
    remote: Remote,
    /// A card is in the local reader.
    card: bool,
    /// Its ATR went to the host (and no CardRemove since).
    announced: bool,
    /// The local reader was removed while its ReaderAdd was pending.
    gone: bool,
}

/// A request the host answers with an Error message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The ReaderRemove(0) sent after Init.
    Cleanup,
    ReaderAdd(ReaderId),
    ReaderRemove(ReaderId),
    Atr(ReaderId),
    CardRemove(ReaderId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Our Init is queued; waiting for the host's.
    Connecting,
    /// Greeted; readers are announced.
    Ready,
    /// Shut down: removals queued, nothing else is sent.
    Closing,
}

/// Upper bound on requests awaiting an answer; a host that never answers
/// cannot make the queue grow without limit.
const MAX_EXPECTED: usize = 1024;

/// The VSCard client state machine. See the [module docs](self).
#[derive(Debug)]
pub struct Client {
    state: State,
    readers: Vec<Local>,
    expected: VecDeque<Expect>,
    out: Vec<u8>,
    events: VecDeque<ClientEvent>,
    response: Vec<u8>,
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl Client {
    /// A new session; its Init is queued for [`Client::poll_transmit`].
    pub fn new() -> Client {
        let mut client = Client {
            state: State::Connecting,
            readers: Vec::new(),
            expected: VecDeque::new(),
            out: Vec::with_capacity(512),
            events: VecDeque::new(),
            response: Vec::with_capacity(512),
        };
        client.send(
            &Message::Init {
                version: VERSION,
                capabilities: 0,
            },
            UNDEFINED_READER_ID,
        );
        client
    }

    /// True once the host's Init arrived (and until shutdown).
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Number of requests still waiting for the host's answer.
    pub fn pending_answers(&self) -> usize {
        self.expected.len()
    }

    /// The host's ID for a local reader, once registered.
    pub fn remote_id(&self, reader: ReaderId) -> Option<u32> {
        self.readers
            .iter()
            .find(|l| l.id == reader)
            .and_then(|l| match l.remote {
                Remote::Registered(r) => Some(r),
                _ => None,
            })
    }

    /// Moves the bytes to send into `out` (appending); returns how many.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.out.len();
        out.append(&mut self.out);
        n
    }

    /// True when bytes wait in [`Client::poll_transmit`].
    pub fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next notice, if any.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn send(&mut self, message: &Message<'_>, reader_id: u32) {
        // Every message the client builds is far below the limit except an
        // APDU response, which is checked before it gets here.
        if let Err(e) = message.encode(reader_id, &mut self.out) {
            log::error!("VSCard: cannot encode {:?}: {e}", message.msg_type());
        }
    }

    fn expect(&mut self, what: Expect) {
        if self.expected.len() >= MAX_EXPECTED {
            self.expected.pop_front();
        }
        self.expected.push_back(what);
    }

    fn local_mut(&mut self, id: ReaderId) -> Option<&mut Local> {
        self.readers.iter_mut().find(|l| l.id == id)
    }

    /// Feeds one event of the reader set.
    pub fn handle_event(&mut self, event: &Event, set: &ReaderSet) {
        if self.state == State::Closing {
            return;
        }
        match event.kind {
            EventKind::ReaderInserted => {
                if self.readers.iter().any(|l| l.id == event.reader) {
                    return;
                }
                self.readers.push(Local {
                    id: event.reader,
                    name: event.name.clone(),
                    remote: Remote::Unannounced,
                    card: false,
                    announced: false,
                    gone: false,
                });
                if self.state == State::Ready {
                    self.add_reader(event.reader);
                }
            }
            EventKind::CardInserted => {
                let Some(local) = self.local_mut(event.reader) else {
                    return;
                };
                local.card = true;
                if let Remote::Registered(remote) = local.remote {
                    self.announce_card(event.reader, remote, set);
                }
            }
            EventKind::CardRemoved => {
                let Some(local) = self.local_mut(event.reader) else {
                    return;
                };
                local.card = false;
                if let (Remote::Registered(remote), true) = (local.remote, local.announced) {
                    local.announced = false;
                    self.withdraw_card(event.reader, remote);
                }
            }
            EventKind::ReaderRemoved => self.remove_reader(event.reader),
        }
    }

    fn add_reader(&mut self, id: ReaderId) {
        let Some(local) = self.local_mut(id) else {
            return;
        };
        if local.remote != Remote::Unannounced {
            return;
        }
        local.remote = Remote::Adding;
        let name = local.name.clone();
        let bytes = name.as_bytes();
        let cut = bytes.len().min(MAX_NAME_LEN);
        self.send(
            &Message::ReaderAdd {
                name: bytes.get(..cut).unwrap_or_default(),
            },
            UNDEFINED_READER_ID,
        );
        self.expect(Expect::ReaderAdd(id));
    }

    fn announce_card(&mut self, id: ReaderId, remote: u32, set: &ReaderSet) {
        let atr = match set.power_on(id) {
            Ok(atr) => atr,
            Err(e) => {
                self.events.push_back(ClientEvent::CardNotAnnounced {
                    reader: id,
                    reason: e.to_string(),
                });
                return;
            }
        };
        if let Err(problem) = wire::check_atr(&atr) {
            self.events.push_back(ClientEvent::CardNotAnnounced {
                reader: id,
                reason: problem.to_string(),
            });
            return;
        }
        if let Some(local) = self.local_mut(id) {
            local.announced = true;
        }
        self.send(&Message::Atr(&atr), remote);
        self.expect(Expect::Atr(id));
        self.events
            .push_back(ClientEvent::CardAnnounced { reader: id, atr });
    }

    fn withdraw_card(&mut self, id: ReaderId, remote: u32) {
        self.send(&Message::CardRemove, remote);
        self.expect(Expect::CardRemove(id));
        self.events
            .push_back(ClientEvent::CardWithdrawn { reader: id });
    }

    fn remove_reader(&mut self, id: ReaderId) {
        let Some(pos) = self.readers.iter().position(|l| l.id == id) else {
            return;
        };
        let Some(local) = self.readers.get_mut(pos) else {
            return;
        };
        match local.remote {
            Remote::Adding => {
                // Withdraw it once the host answers.
                local.gone = true;
                local.card = false;
            }
            Remote::Registered(remote) => {
                let announced = local.announced;
                self.readers.remove(pos);
                if announced {
                    self.withdraw_card(id, remote);
                }
                self.send(&Message::ReaderRemove, remote);
                self.expect(Expect::ReaderRemove(id));
                self.events
                    .push_back(ClientEvent::ReaderWithdrawn { reader: id });
            }
            Remote::Unannounced | Remote::Refused => {
                self.readers.remove(pos);
            }
        }
    }

    /// Feeds one message from the host. An error means the session cannot
    /// go on; close the connection.
    pub fn handle_packet(
        &mut self,
        packet: &Packet<&[u8]>,
        set: &ReaderSet,
    ) -> Result<(), ClientError> {
        if self.state == State::Closing {
            // Answers to our removals; nothing else matters now.
            if let Ok(Message::Error(_)) = Message::parse(packet) {
                self.expected.pop_front();
            }
            return Ok(());
        }
        let message = Message::parse(packet)?;
        let remote = packet.reader_id();
        if self.state == State::Connecting {
            return match message {
                Message::Init {
                    version,
                    capabilities,
                } => {
                    self.on_init(version, capabilities);
                    Ok(())
                }
                other => Err(ClientError::NotInitialized(other.msg_type())),
            };
        }
        match message {
            Message::Init { .. } => {
                // QEMU greets once when its device starts and once more in
                // answer to our Init; only the first one counts.
            }
            Message::Error(code) => self.on_error(remote, code, set),
            Message::Apdu(command) => self.on_apdu(remote, command, set),
            Message::Flush => {
                // APDUs are answered as they arrive: nothing is outstanding.
                self.send(&Message::FlushComplete, remote);
                self.events.push_back(ClientEvent::Flushed);
            }
            other => {
                self.events.push_back(ClientEvent::Unexpected {
                    msg_type: other.msg_type(),
                });
                self.send(&Message::Error(ErrorCode::General), remote);
            }
        }
        Ok(())
    }

    fn on_init(&mut self, version: Version, capabilities: u32) {
        self.state = State::Ready;
        self.events.push_back(ClientEvent::Connected {
            version,
            capabilities,
        });
        if version != VERSION {
            self.events
                .push_back(ClientEvent::VersionMismatch { host: version });
        }
        // A client that went away without a goodbye leaves its reader (and
        // card) in QEMU; clear it before adding ours, as vscclient does.
        self.send(&Message::ReaderRemove, MINIMAL_READER_ID);
        self.expect(Expect::Cleanup);
        let ids: Vec<ReaderId> = self.readers.iter().map(|l| l.id).collect();
        for id in ids {
            self.add_reader(id);
        }
    }

    fn on_error(&mut self, remote: u32, code: ErrorCode, set: &ReaderSet) {
        let Some(expect) = self.expected.pop_front() else {
            self.events
                .push_back(ClientEvent::HostError { remote, code });
            return;
        };
        match expect {
            Expect::Cleanup | Expect::ReaderRemove(_) | Expect::CardRemove(_) => {
                if code != ErrorCode::Success {
                    self.events
                        .push_back(ClientEvent::HostError { remote, code });
                }
            }
            Expect::Atr(id) => {
                if code != ErrorCode::Success {
                    if let Some(local) = self.local_mut(id) {
                        local.announced = false;
                    }
                    self.events
                        .push_back(ClientEvent::AtrRefused { reader: id, code });
                }
            }
            Expect::ReaderAdd(id) => self.on_reader_added(id, remote, code, set),
        }
    }

    fn on_reader_added(&mut self, id: ReaderId, remote: u32, code: ErrorCode, set: &ReaderSet) {
        let holder = self
            .readers
            .iter()
            .find(|l| l.id != id && l.remote == Remote::Registered(remote))
            .map(|l| l.id);
        let Some(local) = self.local_mut(id) else {
            return;
        };
        if code != ErrorCode::Success || remote == UNDEFINED_READER_ID {
            local.remote = Remote::Refused;
            let gone = local.gone;
            self.events
                .push_back(ClientEvent::ReaderRefused { reader: id, code });
            if gone {
                self.readers.retain(|l| l.id != id);
            }
            return;
        }
        if let Some(holder) = holder {
            local.remote = Remote::Refused;
            let gone = local.gone;
            self.events.push_back(ClientEvent::ReaderIdInUse {
                reader: id,
                remote,
                holder,
            });
            if gone {
                self.readers.retain(|l| l.id != id);
            }
            return;
        }
        local.remote = Remote::Registered(remote);
        let (gone, card) = (local.gone, local.card);
        self.events
            .push_back(ClientEvent::ReaderRegistered { reader: id, remote });
        if gone {
            self.remove_reader(id);
        } else if card {
            self.announce_card(id, remote, set);
        }
    }

    fn on_apdu(&mut self, remote: u32, command: &[u8], set: &ReaderSet) {
        let local = self
            .readers
            .iter()
            .find(|l| l.remote == Remote::Registered(remote) && l.announced)
            .map(|l| l.id);
        let result = match local {
            None => Err(format!("no card announced under reader ID {remote}")),
            Some(id) => {
                self.response.clear();
                let mut r = set.transmit(id, command, &mut self.response);
                if let Err(ReaderError::NotPowered(_)) = r {
                    r = set
                        .power_on(id)
                        .and_then(|_| set.transmit(id, command, &mut self.response));
                }
                r.map_err(|e| e.to_string())
            }
        };
        match result {
            Ok(()) if self.response.len() <= MAX_SEND_PAYLOAD => {
                let response = std::mem::take(&mut self.response);
                self.send(&Message::Apdu(&response), remote);
                self.events.push_back(ClientEvent::Apdu {
                    remote,
                    command_len: command.len(),
                    response_len: response.len(),
                });
                self.response = response;
            }
            Ok(()) => self.apdu_failed(
                remote,
                format!(
                    "response of {} bytes does not fit a VSCard message",
                    self.response.len()
                ),
            ),
            Err(reason) => self.apdu_failed(remote, reason),
        }
    }

    fn apdu_failed(&mut self, remote: u32, reason: String) {
        self.send(&Message::Error(ErrorCode::General), remote);
        self.events
            .push_back(ClientEvent::ApduFailed { remote, reason });
    }

    /// Leaves the session politely: CardRemove and ReaderRemove for every
    /// reader the host knows. Send what [`Client::poll_transmit`] gives,
    /// then close (optionally after [`Client::pending_answers`] reaches 0).
    pub fn shutdown(&mut self) {
        if self.state == State::Closing {
            return;
        }
        if self.state == State::Ready {
            let known: Vec<(ReaderId, u32, bool)> = self
                .readers
                .iter()
                .filter_map(|l| match l.remote {
                    Remote::Registered(r) => Some((l.id, r, l.announced)),
                    _ => None,
                })
                .collect();
            for (id, remote, announced) in known {
                if announced {
                    self.withdraw_card(id, remote);
                }
                self.send(&Message::ReaderRemove, remote);
                self.expect(Expect::ReaderRemove(id));
                self.events
                    .push_back(ClientEvent::ReaderWithdrawn { reader: id });
            }
        }
        self.readers.clear();
        self.state = State::Closing;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vscard::wire::{Decoder, MsgType};
    use hex_literal::hex;

    fn card() -> cac::Card {
        vcac_sources::embedded::default_card(
            &cac::keys::RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap()
    }

    const SELECT_CCC: [u8; 12] = hex!("00 A4 04 00 07 A0 00 00 01 16 DB 00");

    /// Messages the client queued, as (type, reader, payload).
    fn sent(client: &mut Client) -> Vec<(MsgType, u32, Vec<u8>)> {
        let mut bytes = Vec::new();
        client.poll_transmit(&mut bytes);
        let mut out = Vec::new();
        Decoder::new()
            .decode_all(&bytes, |p| {
                out.push((p.msg_type(), p.reader_id(), p.payload().to_vec()))
            })
            .unwrap();
        out
    }

    fn host(client: &mut Client, set: &ReaderSet, m: Message<'_>, reader: u32) {
        let mut buf = Vec::new();
        m.encode(reader, &mut buf).unwrap();
        client
            .handle_packet(&Packet::new_checked(&buf[..]).unwrap(), set)
            .unwrap();
    }

    fn drain(client: &mut Client, set: &ReaderSet, events: &vreader::Events) {
        while let Some(e) = events.try_next() {
            client.handle_event(&e, set);
        }
    }

    const HOST_INIT: Message<'static> = Message::Init {
        version: VERSION,
        capabilities: 0,
    };
    const OK: Message<'static> = Message::Error(ErrorCode::Success);

    #[test]
    fn session_with_a_qemu_like_host() {
        let set = ReaderSet::new();
        let reader = set.add_reader("vcac 0").unwrap();
        set.insert_card(reader, card()).unwrap();
        let events = set.subscribe_with_replay();
        let mut c = Client::new();
        drain(&mut c, &set, &events);
        // Only our Init before the host greets us.
        assert_eq!(
            sent(&mut c),
            [(
                MsgType::Init,
                UNDEFINED_READER_ID,
                hex!("56534344 00000002 00000000").to_vec()
            )]
        );
        host(&mut c, &set, HOST_INIT, UNDEFINED_READER_ID);
        assert!(c.is_ready());
        assert_eq!(
            sent(&mut c),
            [
                (MsgType::ReaderRemove, 0, vec![]),
                (MsgType::ReaderAdd, UNDEFINED_READER_ID, b"vcac 0".to_vec()),
            ]
        );
        // Cleanup answered, then the ReaderAdd: the ATR follows.
        host(&mut c, &set, OK, 0);
        assert!(sent(&mut c).is_empty());
        host(&mut c, &set, OK, 0);
        assert_eq!(sent(&mut c), [(MsgType::Atr, 0, cac::DEFAULT_ATR.to_vec())]);
        assert_eq!(c.remote_id(reader), Some(0));
        host(&mut c, &set, OK, 0);
        assert_eq!(c.pending_answers(), 0);

        // An APDU is answered with exactly what the card says.
        host(&mut c, &set, Message::Apdu(&SELECT_CCC), 0);
        let mut direct = card();
        direct.power_on();
        let want = direct.transmit_vec(&SELECT_CCC);
        assert_eq!(want[0], 0x61);
        assert_eq!(sent(&mut c), [(MsgType::Apdu, 0, want)]);

        // Flush → FlushComplete.
        host(&mut c, &set, Message::Flush, 0);
        assert_eq!(sent(&mut c), [(MsgType::FlushComplete, 0, vec![])]);

        // Removal and re-insertion at run time.
        set.force_remove(reader).unwrap();
        drain(&mut c, &set, &events);
        assert_eq!(sent(&mut c), [(MsgType::CardRemove, 0, vec![])]);
        host(&mut c, &set, OK, 0);
        host(&mut c, &set, Message::Apdu(&SELECT_CCC), 0);
        assert_eq!(
            sent(&mut c),
            [(MsgType::Error, 0, hex!("00000001").to_vec())]
        );
        set.force_insert(reader).unwrap();
        drain(&mut c, &set, &events);
        assert_eq!(sent(&mut c), [(MsgType::Atr, 0, cac::DEFAULT_ATR.to_vec())]);
        host(&mut c, &set, OK, 0);

        // Shutdown: CardRemove then ReaderRemove.
        c.shutdown();
        assert_eq!(
            sent(&mut c),
            [
                (MsgType::CardRemove, 0, vec![]),
                (MsgType::ReaderRemove, 0, vec![]),
            ]
        );
        assert_eq!(c.pending_answers(), 2);
        host(&mut c, &set, OK, 0);
        host(&mut c, &set, OK, 0);
        assert_eq!(c.pending_answers(), 0);
        // Nothing more after shutdown.
        host(&mut c, &set, Message::Apdu(&SELECT_CCC), 0);
        assert!(sent(&mut c).is_empty());

        let notices: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert!(notices.contains(&ClientEvent::ReaderRegistered { reader, remote: 0 }));
        assert!(notices.contains(&ClientEvent::Flushed));
    }

    #[test]
    fn second_reader_with_qemus_single_id_is_left_out() {
        let set = ReaderSet::new();
        let a = set.add_reader("a").unwrap();
        let b = set.add_reader("b").unwrap();
        set.insert_card(a, card()).unwrap();
        set.insert_card(b, card()).unwrap();
        let events = set.subscribe_with_replay();
        let mut c = Client::new();
        drain(&mut c, &set, &events);
        host(&mut c, &set, HOST_INIT, UNDEFINED_READER_ID);
        sent(&mut c);
        host(&mut c, &set, OK, 0); // cleanup
        host(&mut c, &set, OK, 0); // a → 0
        host(&mut c, &set, OK, 0); // b → 0 again
        assert_eq!(sent(&mut c), [(MsgType::Atr, 0, cac::DEFAULT_ATR.to_vec())]);
        let notices: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert!(notices.contains(&ClientEvent::ReaderIdInUse {
            reader: b,
            remote: 0,
            holder: a
        }));
        assert_eq!(c.remote_id(b), None);
    }

    #[test]
    fn refused_reader_and_refused_atr() {
        let set = ReaderSet::new();
        let a = set.add_reader("a").unwrap();
        set.insert_card(a, card()).unwrap();
        let events = set.subscribe_with_replay();
        let mut c = Client::new();
        drain(&mut c, &set, &events);
        host(&mut c, &set, HOST_INIT, UNDEFINED_READER_ID);
        sent(&mut c);
        host(&mut c, &set, OK, 0);
        host(
            &mut c,
            &set,
            Message::Error(ErrorCode::CannotAddMoreReaders),
            UNDEFINED_READER_ID,
        );
        assert!(sent(&mut c).is_empty());
        // APDUs for an unknown reader get an Error.
        host(&mut c, &set, Message::Apdu(&SELECT_CCC), 0);
        assert_eq!(
            sent(&mut c),
            [(MsgType::Error, 0, hex!("00000001").to_vec())]
        );
        let notices: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
        assert!(notices.contains(&ClientEvent::ReaderRefused {
            reader: a,
            code: ErrorCode::CannotAddMoreReaders
        }));

        let mut c = Client::new();
        let events = set.subscribe_with_replay();
        drain(&mut c, &set, &events);
        host(&mut c, &set, HOST_INIT, UNDEFINED_READER_ID);
        host(&mut c, &set, OK, 0);
        host(&mut c, &set, Message::Error(ErrorCode::Success), 5);
        host(&mut c, &set, Message::Error(ErrorCode::General), 5);
        sent(&mut c);
        // The ATR was refused: the card is not there for the host.
        host(&mut c, &set, Message::Apdu(&SELECT_CCC), 5);
        assert_eq!(
            sent(&mut c),
            [(MsgType::Error, 5, hex!("00000001").to_vec())]
        );
    }

    #[test]
    fn hostile_host() {
        let set = ReaderSet::new();
        let mut c = Client::new();
        let mut buf = Vec::new();
        Message::Apdu(&SELECT_CCC).encode(0, &mut buf).unwrap();
        assert_eq!(
            c.handle_packet(&Packet::new_checked(&buf[..]).unwrap(), &set),
            Err(ClientError::NotInitialized(MsgType::Apdu))
        );
        let mut c = Client::new();
        let bad = hex!("00000001 FFFFFFFF 0000000C 00000000 00000002 00000000");
        assert!(matches!(
            c.handle_packet(&Packet::new_checked(&bad[..]).unwrap(), &set),
            Err(ClientError::Wire(WireError::BadMagic(_)))
        ));
        // Unsolicited errors and unknown types do not break the session.
        let mut c = Client::new();
        host(&mut c, &set, HOST_INIT, UNDEFINED_READER_ID);
        host(&mut c, &set, HOST_INIT, UNDEFINED_READER_ID);
        sent(&mut c);
        for _ in 0..3 {
            host(&mut c, &set, OK, 9);
        }
        host(
            &mut c,
            &set,
            Message::Unknown {
                msg_type: 0x77,
                payload: b"x",
            },
            4,
        );
        host(&mut c, &set, Message::ReaderAdd { name: b"?" }, 4);
        assert_eq!(
            sent(&mut c),
            [
                (MsgType::Error, 4, hex!("00000001").to_vec()),
                (MsgType::Error, 4, hex!("00000001").to_vec())
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn hostile_host_never_panics(
            msgs in proptest::collection::vec((
                proptest::prop_oneof![1u32..=10, proptest::num::u32::ANY],
                proptest::prop_oneof![0u32..2, proptest::num::u32::ANY],
                proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            ), 0..48),
            removals in proptest::collection::vec(proptest::bool::ANY, 0..8),
        ) {
            let set = ReaderSet::new();
            let r = set.add_reader("r").unwrap();
            set.insert_card(r, card()).unwrap();
            let events = set.subscribe_with_replay();
            let mut c = Client::new();
            drain(&mut c, &set, &events);
            host(&mut c, &set, HOST_INIT, UNDEFINED_READER_ID);
            for (i, (t, reader, payload)) in msgs.iter().enumerate() {
                let mut b = Vec::new();
                b.extend_from_slice(&t.to_be_bytes());
                b.extend_from_slice(&reader.to_be_bytes());
                b.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                b.extend_from_slice(payload);
                if c.handle_packet(&Packet::new_checked(&b[..]).unwrap(), &set).is_err() {
                    break;
                }
                match removals.get(i % 8) {
                    Some(true) => { let _ = set.force_remove(r); }
                    Some(false) => { let _ = set.force_insert(r); }
                    None => {}
                }
                drain(&mut c, &set, &events);
                proptest::prop_assert!(c.pending_answers() <= MAX_EXPECTED);
            }
            c.shutdown();
            let mut out = Vec::new();
            c.poll_transmit(&mut out);
            Decoder::new().decode_all(&out, |p| {
                assert!(Message::parse(&p.as_ref()).is_ok());
            }).unwrap();
        }
    }

    #[test]
    fn reader_added_and_removed_while_pending() {
        let set = ReaderSet::new();
        let events = set.subscribe_with_replay();
        let mut c = Client::new();
        host(&mut c, &set, HOST_INIT, UNDEFINED_READER_ID);
        sent(&mut c);
        let a = set.add_reader("late").unwrap();
        set.insert_card(a, card()).unwrap();
        drain(&mut c, &set, &events);
        assert_eq!(
            sent(&mut c),
            [(MsgType::ReaderAdd, UNDEFINED_READER_ID, b"late".to_vec())]
        );
        set.remove_reader(a).unwrap();
        drain(&mut c, &set, &events);
        assert!(sent(&mut c).is_empty());
        host(&mut c, &set, OK, 0); // cleanup
        host(&mut c, &set, OK, 3); // the ReaderAdd: withdraw at once
        assert_eq!(sent(&mut c), [(MsgType::ReaderRemove, 3, vec![])]);
    }
}
