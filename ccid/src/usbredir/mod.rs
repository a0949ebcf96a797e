//! usbredir: the CCID device model presented to QEMU's `-device
//! usb-redir` (or any usbredir "usb-guest"), so a VM sees our reader on
//! its own USB bus and its own pcscd + libccid drive it — no smart-card
//! code in QEMU at all.
//!
//! ```text
//!  guest pcscd/libccid ── guest USB (UHCI / xHCI) ── QEMU usb-redir ══ TCP ══ tcp::connect / listen
//!                                                                            │ bytes
//!                                      UsbRedirHost (sans-IO) ◄───────────────┘
//!                                        │ control ─► CcidDevice::handle_control
//!                                        │ bulk OUT ► handle_bulk_out     ─┐
//!                                        │ bulk IN ◄─ poll_response (held   ├─ vreader ── cac
//!                                        │           IN requests, in order) │
//!                                        └ interrupt ◄ poll_interrupt      ─┘
//! ```
//!
//! In usbredir terms this is the **usb-host** side: it owns the device.
//! [`UsbRedirHost`] takes the peer's bytes ([`UsbRedirHost::receive`]) and
//! produces the bytes to write ([`UsbRedirHost::poll_transmit`]); it does
//! no I/O and reads no clock. [`tcp`] drives it over a socket.
//!
//! The protocol is implemented here from its description (spice usbredir
//! `usb-redirection-protocol.md` v0.7, as QEMU 7.2 uses it); the C
//! `usbredirparser` is not bound, so the crate stays pure Rust and every
//! length the peer sends is bounded before anything is allocated.
//!
//! What it does, in the order of a session:
//!
//! * **hello**: ours (caps `0x7A`: device version, disconnect ack, ep_info
//!   max packet sizes, 64-bit ids, 32-bit bulk lengths — the last three
//!   QEMU requires on xHCI) goes out at once; nothing else until the
//!   peer's hello has come, whose caps settle the header sizes.
//! * **presenting**: ep_info, interface_info, device_connect (full speed),
//!   all derived from the device model's descriptors.
//! * **control** transfers are answered from the device model (truncated
//!   to `wLength`; unsupported → stall); set_configuration and
//!   set/get_alt_setting answer ep_info, interface_info, then their status
//!   with the request's id.
//! * **the data endpoints** (CCID's bulk OUT and bulk IN) are described
//!   in ep_info as [`DataPath::Interrupt`] endpoints by default, so that
//!   QEMU completes the guest's transfers itself, as its own `usb-ccid`
//!   does: an OUT at once, an IN from data we pushed as soon as the card
//!   answered (see [`DataPath`]). The guest's descriptors still say bulk.
//!   [`DataPath::Bulk`] describes them as the descriptors do:
//! * **bulk OUT** is acknowledged at once and fed to the device model,
//!   which reassembles CCID messages by `dwLength`.
//! * **bulk IN** requests are held until the card answers, answered
//!   strictly in order and never with more than requested, cut into
//!   64-byte packets with a zero-length packet after a message that fills
//!   its last packet. A cancel for a held request answers it "cancelled";
//!   a cancel for an already answered one puts its data back at the head
//!   (QEMU threw it away), like unread data in a real device's FIFO.
//! * **interrupt IN** (NotifySlotChange) is sent only while the guest
//!   polls (start/stop_interrupt_receiving); a change that happens while
//!   stopped waits, merged with later ones, for the next start.
//! * **reset** returns the device to its default state (configuration 0,
//!   partial commands dropped); the cards keep their state.
//! * **unplug** ([`UsbRedirHost::unplug`]) sends device_disconnect;
//!   [`UsbRedirHost::plug`] presents the device again after the ack.
//!
//! A peer that breaks the rules gets the protocol's error status (inval,
//! stall) for a data packet it should not send, and is otherwise ignored
//! packet by packet; only a stream that cannot be read on (no hello
//! first) ends with a [`WireError`].
//!
//! # Example
//!
//! ```
//! use ccid::device::{CcidDevice, DeviceConfig};
//! use ccid::usbredir::{wire, UsbRedirHost};
//! use vreader::ReaderSet;
//!
//! let set = ReaderSet::new();
//! let reader = set.add_reader("slot 0")?;
//! let device = CcidDevice::new(DeviceConfig::default(), &set, &[reader])?;
//! let mut host = UsbRedirHost::new(device, "example");
//! let mut out = Vec::new();
//! host.poll_transmit(&mut out);
//! assert_eq!(out.len(), 12 + 68); // our hello; nothing else before the peer's
//!
//! // The peer's hello (caps 0xFF, as QEMU 7.2 sends).
//! let mut hello = Vec::new();
//! wire::emit_hello("qemu usb-redir guest 7.2.22", 0xFF, &mut hello);
//! host.receive(&hello)?;
//! out.clear();
//! host.poll_transmit(&mut out);
//! // ep_info (16 + 160), interface_info (16 + 132), device_connect (16 + 10).
//! assert_eq!(out.len(), 176 + 148 + 26);
//! assert_eq!(out[324..328], 1u32.to_le_bytes()); // device_connect
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod tcp;
pub mod wire;

use std::collections::VecDeque;

use crate::device::{
    BulkOutError, CardJob, CcidDevice, ControlResponse, JobDone, SetupPacket, UnknownJob,
    MAX_PACKET,
};
use wire::{cap, kind, BulkHeader, ControlHeader, Header, Negotiated, Status, WireError};

/// Held bulk IN requests beyond which a new one is refused (inval).
pub const MAX_HELD_IN: usize = 64;
/// Bulk OUT packets held while the device's queue is full.
pub const MAX_HELD_OUT: usize = 8;
/// Answered bulk IN packets remembered for a late cancel.
const ANSWERED_KEPT: usize = 16;
/// Pushed interrupt-path answers remembered until the guest's next OUT
/// data: the largest `DeviceConfig::queue_depth`, as many as can be
/// answered between two commands.
const PUSHED_KEPT: usize = 64;
/// Events kept for [`UsbRedirHost::poll_event`].
const EVENTS_KEPT: usize = 64;

/// How CCID's two data endpoints (bulk OUT, bulk IN) are described to the
/// usbredir peer in ep_info. The guest's descriptors say bulk either way;
/// this decides how QEMU's usb-redir moves their transfers.
///
/// QEMU 7.2 (`hw/usb/redirect.c`) completes a **bulk** transfer only when
/// the usbredir peer answers it, so each APDU waits for two socket round
/// trips (the OUT status, then the IN request and its answer), and on
/// UHCI every queued 64-byte TD of libccid's 65556-byte read is walked
/// first. An **interrupt** OUT transfer it completes at once, and an
/// interrupt IN transfer it answers from its own buffer (NAK while empty,
/// a wake-up when data comes), which we fill as soon as the card answers.
/// That is how QEMU's own `usb-ccid` behaves, so the guest sees its
/// timing. The host controller schedules by the guest's descriptors and
/// does not look at QEMU's endpoint type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataPath {
    /// Interrupt endpoints, interval 1 (the default). Responses are cut
    /// into max-packet fragments, with a zero-length one after a message
    /// that fills its last, and pushed while QEMU has interrupt receiving
    /// started on the IN endpoint; while it has not, they wait in the
    /// device model.
    #[default]
    Interrupt,
    /// Bulk endpoints, as the descriptors say: for a usbredir peer that
    /// expects ep_info to match them.
    Bulk,
}

/// Something worth logging that happened on the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The peer's hello: its version text and `caps[0]`.
    PeerHello {
        /// Version text.
        version: String,
        /// Its capabilities.
        caps: u32,
    },
    /// ep_info, interface_info and device_connect were sent.
    Presented,
    /// The guest reset the port.
    Reset,
    /// The guest set configuration N.
    Configured(u8),
    /// The peer refused the device (filter_reject).
    Rejected,
    /// device_disconnect was sent.
    Unplugged,
    /// The peer acknowledged device_disconnect.
    DisconnectAcked,
    /// A packet that breaks the protocol, answered with an error status or
    /// ignored.
    Ignored(String),
}

/// Where the presented device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plug {
    /// Waiting for the peer's hello.
    AwaitHello,
    /// Presented to the peer.
    Attached,
    /// device_disconnect sent, ack (if the peer acks) not yet seen.
    Detaching,
    /// Not presented.
    Detached,
}

/// One bulk IN message on its way out, cut into packets.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    bytes: Vec<u8>,
    /// Bytes already sent. Equal to `bytes.len()` while the zero-length
    /// packet after a message that filled its last packet is still owed.
    pos: usize,
}

/// A bulk IN request the guest is waiting on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InRequest {
    id: u64,
    endpoint: u8,
    length: u32,
}

/// An answered bulk IN request, kept in case QEMU cancels it late.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Answered {
    id: u64,
    bytes: Vec<u8>,
    /// The answer ended its message (short packet or ZLP).
    ended: bool,
}

/// An OUT packet the device could not take yet (its queue was full).
#[derive(Clone, Debug, PartialEq, Eq)]
struct OutRequest {
    id: u64,
    endpoint: u8,
    data: Vec<u8>,
    /// It came as an interrupt packet ([`DataPath::Interrupt`]).
    interrupt: bool,
}

/// The interface and endpoints the device model describes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Layout {
    /// (number, class, subclass, protocol).
    interfaces: Vec<[u8; 4]>,
    /// (address, type, interval, interface, max packet).
    endpoints: Vec<(u8, u8, u8, u8, u16)>,
    ep0_max_packet: u16,
    class: [u8; 3],
    vendor: u16,
    product: u16,
    release: u16,
}

impl Layout {
    fn of(device: &CcidDevice) -> Layout {
        let dd = device.device_descriptor();
        let byte = |i: usize| dd.get(i).copied().unwrap_or(0);
        let word = |i: usize| u16::from_le_bytes([byte(i), byte(i + 1)]);
        let mut layout = Layout {
            ep0_max_packet: u16::from(byte(7)),
            class: [byte(4), byte(5), byte(6)],
            vendor: word(8),
            product: word(10),
            release: word(12),
            ..Layout::default()
        };
        let cd = device.configuration_descriptor();
        let mut rest = cd.as_slice();
        let mut interface = 0u8;
        while let [len, ty, ..] = *rest {
            let len = usize::from(len);
            if len < 2 {
                break;
            }
            let d = rest.get(..len).unwrap_or(rest);
            match (ty, d) {
                (0x04, [_, _, number, _alt, _n, class, sub, proto, ..]) => {
                    interface = *number;
                    layout.interfaces.push([*number, *class, *sub, *proto]);
                }
                (0x05, [_, _, address, attributes, m0, m1, interval, ..]) => {
                    layout.endpoints.push((
                        *address,
                        attributes & 0x03,
                        *interval,
                        interface,
                        u16::from_le_bytes([*m0, *m1]),
                    ));
                }
                _ => {}
            }
            rest = rest.get(len..).unwrap_or_default();
        }
        layout
    }

    fn endpoint(&self, address: u8) -> Option<(u8, u8, u8, u8, u16)> {
        self.endpoints.iter().copied().find(|e| e.0 == address)
    }

    /// True if `address` is one of the bulk (data) endpoints.
    fn is_bulk(&self, address: u8) -> bool {
        self.endpoint(address).is_some_and(|e| e.1 == 0x02)
    }

    /// The bulk IN endpoint and its max packet size.
    fn data_in(&self) -> Option<(u8, usize)> {
        self.endpoints
            .iter()
            .find(|e| e.1 == 0x02 && e.0 & 0x80 != 0)
            .map(|e| (e.0, usize::from(e.4).max(1)))
    }
}

/// ep_info index of an endpoint address: number, +16 for IN.
fn ep_index(address: u8) -> usize {
    usize::from(address & 0x0F) + if address & 0x80 != 0 { 16 } else { 0 }
}

/// The usb-host side of a usbredir connection around a [`CcidDevice`].
/// See the [module documentation](self).
pub struct UsbRedirHost {
    device: CcidDevice,
    layout: Layout,
    version: String,
    plug: Plug,
    /// Present again once the disconnect is acknowledged.
    replug: bool,
    neg: Negotiated,
    peer_caps: u32,
    rx: Vec<u8>,
    /// Bytes of an oversize body still to skip.
    discard: u64,
    out: Vec<u8>,
    stream: VecDeque<Segment>,
    held_in: VecDeque<InRequest>,
    held_out: VecDeque<OutRequest>,
    answered: VecDeque<Answered>,
    data_path: DataPath,
    /// The peer polls the NotifySlotChange endpoint.
    interrupt_started: bool,
    /// The peer has interrupt receiving started on the data IN endpoint
    /// ([`DataPath::Interrupt`]).
    data_started: bool,
    /// Responses pushed since the guest last sent OUT data: not known to
    /// have reached it.
    pushed: VecDeque<Vec<u8>>,
    /// What was in `pushed` when the peer stopped receiving: QEMU may have
    /// dropped it with its buffer.
    maybe_lost: VecDeque<Vec<u8>>,
    /// A NotifySlotChange waiting for the guest to poll.
    notify: Option<Vec<u8>>,
    interrupt_counter: u64,
    events: VecDeque<Event>,
}

impl core::fmt::Debug for UsbRedirHost {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UsbRedirHost")
            .field("plug", &self.plug)
            .field("caps", &self.neg.caps)
            .field("data_path", &self.data_path)
            .field("held_in", &self.held_in.len())
            .field("queued_in", &self.stream.len())
            .finish()
    }
}

impl UsbRedirHost {
    /// A connection serving `device`; our hello is queued at once.
    /// `version` is the free text of the hello (at most 63 bytes sent).
    pub fn new(device: CcidDevice, version: &str) -> UsbRedirHost {
        let mut out = Vec::new();
        wire::emit_hello(version, wire::OUR_CAPS, &mut out);
        UsbRedirHost {
            layout: Layout::of(&device),
            device,
            version: version.to_owned(),
            plug: Plug::AwaitHello,
            replug: true,
            neg: Negotiated::default(),
            peer_caps: 0,
            rx: Vec::new(),
            discard: 0,
            out,
            stream: VecDeque::new(),
            held_in: VecDeque::new(),
            held_out: VecDeque::new(),
            answered: VecDeque::new(),
            data_path: DataPath::default(),
            interrupt_started: false,
            data_started: false,
            pushed: VecDeque::new(),
            maybe_lost: VecDeque::new(),
            notify: None,
            interrupt_counter: 0,
            events: VecDeque::new(),
        }
    }

    /// Describes the data endpoints as `path` (see [`DataPath`]). Takes
    /// effect from the next ep_info; set it before the peer's hello.
    pub fn with_data_path(mut self, path: DataPath) -> UsbRedirHost {
        self.data_path = path;
        self
    }

    /// How the data endpoints are described.
    pub fn data_path(&self) -> DataPath {
        self.data_path
    }

    /// The version text of our hello.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The device model.
    pub fn device(&self) -> &CcidDevice {
        &self.device
    }

    /// The device model, for its job and timer inputs.
    pub fn device_mut(&mut self) -> &mut CcidDevice {
        &mut self.device
    }

    /// Gives the device model back (the connection is over).
    pub fn into_device(self) -> CcidDevice {
        self.device
    }

    /// Capabilities both sides announced (0 before the peer's hello).
    pub fn negotiated_caps(&self) -> u32 {
        self.neg.caps
    }

    /// True while the device is presented to the peer.
    pub fn is_attached(&self) -> bool {
        self.plug == Plug::Attached
    }

    /// True once an unplug is complete: device_disconnect sent and, if
    /// the peer acknowledges disconnects, acknowledged.
    pub fn is_detached(&self) -> bool {
        self.plug == Plug::Detached
    }

    /// Bulk IN requests waiting for data.
    pub fn held_in_requests(&self) -> usize {
        self.held_in.len()
    }

    /// Bytes buffered for parsing (at most a header and [`wire::MAX_BODY`]).
    pub fn buffered(&self) -> usize {
        self.rx.len()
    }

    /// The next thing to log.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn event(&mut self, e: Event) {
        if self.events.len() >= EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn ignored(&mut self, why: String) {
        log::debug!("usbredir: {why}");
        self.event(Event::Ignored(why));
    }

    /// Takes bytes from the peer. Whole packets are handled at once; a
    /// partial one is kept (bounded). An error means the stream cannot be
    /// read on: close the connection.
    pub fn receive(&mut self, mut bytes: &[u8]) -> Result<(), WireError> {
        while !bytes.is_empty() {
            if self.discard > 0 {
                let n = bytes
                    .len()
                    .min(usize::try_from(self.discard).unwrap_or(usize::MAX));
                self.discard -= n as u64;
                bytes = bytes.get(n..).unwrap_or_default();
                continue;
            }
            let header_len = self.header_len();
            // Take just enough to complete the header, then the body.
            let need = match Header::parse(&self.rx, header_len) {
                None => header_len - self.rx.len().min(header_len),
                Some(h) => {
                    let total = header_len + h.length as usize;
                    total - self.rx.len().min(total)
                }
            };
            let n = need.min(bytes.len());
            self.rx
                .extend_from_slice(bytes.get(..n).unwrap_or_default());
            bytes = bytes.get(n..).unwrap_or_default();
            self.step()?;
        }
        self.pump();
        Ok(())
    }

    fn header_len(&self) -> usize {
        if self.plug == Plug::AwaitHello {
            12
        } else {
            self.neg.header_len()
        }
    }

    /// Handles the buffered packet once it is whole; checks a new header.
    fn step(&mut self) -> Result<(), WireError> {
        let header_len = self.header_len();
        let Some(h) = Header::parse(&self.rx, header_len) else {
            return Ok(());
        };
        let limit = if self.plug == Plug::AwaitHello {
            if h.kind != kind::HELLO {
                return Err(WireError::NoHello(h.kind));
            }
            if !(wire::VERSION_LEN as u32..=wire::MAX_HELLO).contains(&h.length) {
                return Err(WireError::BadHello(h.length));
            }
            wire::MAX_HELLO
        } else if h.kind == kind::HELLO {
            wire::MAX_HELLO
        } else {
            wire::MAX_BODY
        };
        if h.length > limit {
            self.rx.clear();
            self.discard = u64::from(h.length);
            self.ignored(format!(
                "packet type {} announces {} bytes (limit {limit}): skipped",
                h.kind, h.length
            ));
            return Ok(());
        }
        if self.rx.len() < header_len + h.length as usize {
            return Ok(());
        }
        let packet = core::mem::take(&mut self.rx);
        let body = packet.get(header_len..).unwrap_or_default();
        self.handle(h, body);
        self.rx = packet;
        self.rx.clear();
        Ok(())
    }

    fn handle(&mut self, h: Header, body: &[u8]) {
        if h.kind == kind::HELLO {
            if self.plug != Plug::AwaitHello {
                return self.ignored("a second hello".into());
            }
            let (version, caps) = wire::parse_hello(body).unwrap_or_default();
            self.peer_caps = caps;
            self.neg = Negotiated::new(wire::OUR_CAPS, caps);
            self.event(Event::PeerHello { version, caps });
            self.plug = Plug::Detached;
            if self.replug {
                self.present();
            }
            return;
        }
        let Some(type_len) = wire::guest_header_len(h.kind, self.neg) else {
            return self.ignored(format!(
                "packet type {} (id {}) is not one a usb-guest sends",
                h.kind, h.id
            ));
        };
        let Some((type_header, data)) = body.split_at_checked(type_len) else {
            return self.ignored(format!(
                "packet type {} has {} bytes, its header needs {type_len}",
                h.kind,
                body.len()
            ));
        };
        if !data.is_empty() && !wire::has_data(h.kind) {
            return self.ignored(format!(
                "packet type {} carries {} unexpected bytes",
                h.kind,
                data.len()
            ));
        }
        let first = type_header.first().copied().unwrap_or(0);
        match h.kind {
            kind::RESET => {
                self.device.reset();
                self.stream.clear();
                self.answered.clear();
                self.held_out.clear();
                self.event(Event::Reset);
            }
            kind::SET_CONFIGURATION => self.set_configuration(h.id, first),
            kind::GET_CONFIGURATION => {
                let current = self.current_configuration();
                self.emit(kind::CONFIGURATION_STATUS, h.id, &[0, current], &[]);
            }
            kind::SET_ALT_SETTING => {
                let alt = type_header.get(1).copied().unwrap_or(0);
                let ok = self.layout.interfaces.iter().any(|i| i[0] == first) && alt == 0;
                self.send_layout();
                let status = if ok { Status::Success } else { Status::Stall };
                self.emit(
                    kind::ALT_SETTING_STATUS,
                    h.id,
                    &[status.into(), first, alt],
                    &[],
                );
            }
            kind::GET_ALT_SETTING => {
                let ok = self.layout.interfaces.iter().any(|i| i[0] == first);
                let status = if ok { Status::Success } else { Status::Inval };
                self.emit(
                    kind::ALT_SETTING_STATUS,
                    h.id,
                    &[status.into(), first, 0],
                    &[],
                );
            }
            kind::START_ISO_STREAM | kind::STOP_ISO_STREAM => {
                self.emit(
                    kind::ISO_STREAM_STATUS,
                    h.id,
                    &[Status::Inval.into(), first],
                    &[],
                );
            }
            kind::START_INTERRUPT_RECEIVING | kind::STOP_INTERRUPT_RECEIVING => {
                let start = h.kind == kind::START_INTERRUPT_RECEIVING;
                let input = first & 0x80 != 0;
                let notify = input && self.layout.endpoint(first).is_some_and(|e| e.1 == 0x03);
                let data =
                    input && self.data_path == DataPath::Interrupt && self.layout.is_bulk(first);
                let status = if notify {
                    self.interrupt_started = start;
                    Status::Success
                } else if data {
                    self.data_receiving(start);
                    Status::Success
                } else {
                    Status::Inval
                };
                self.emit(
                    kind::INTERRUPT_RECEIVING_STATUS,
                    h.id,
                    &[status.into(), first],
                    &[],
                );
            }
            kind::ALLOC_BULK_STREAMS | kind::FREE_BULK_STREAMS => {
                // Not announced: refuse. endpoints, no_streams, status.
                let mut b = [0u8; 9];
                if let (Some(dst), Some(src)) = (b.get_mut(..4), type_header.get(..4)) {
                    dst.copy_from_slice(src);
                }
                b[8] = Status::Inval.into();
                self.emit(kind::BULK_STREAMS_STATUS, h.id, &b, &[]);
            }
            kind::START_BULK_RECEIVING | kind::STOP_BULK_RECEIVING => {
                // Not announced: refuse. stream_id, endpoint, status.
                let mut b = [0u8; 6];
                if let (Some(dst), Some(src)) = (b.get_mut(..4), type_header.get(..4)) {
                    dst.copy_from_slice(src);
                }
                let ep_at = if h.kind == kind::START_BULK_RECEIVING {
                    8
                } else {
                    4
                };
                b[4] = type_header.get(ep_at).copied().unwrap_or(0);
                b[5] = Status::Inval.into();
                self.emit(kind::BULK_RECEIVING_STATUS, h.id, &b, &[]);
            }
            kind::CANCEL_DATA_PACKET => self.cancel(h.id),
            kind::FILTER_REJECT => {
                log::warn!("usbredir: the peer refused the device (filter_reject)");
                self.event(Event::Rejected);
            }
            kind::FILTER_FILTER => {}
            kind::DEVICE_DISCONNECT_ACK => {
                if self.plug == Plug::Detaching {
                    self.plug = Plug::Detached;
                    self.event(Event::DisconnectAcked);
                    if self.replug {
                        self.present();
                    }
                } else {
                    self.ignored("device_disconnect_ack without a disconnect".into());
                }
            }
            kind::CONTROL_PACKET => self.control(h.id, type_header, data),
            kind::BULK_PACKET => self.bulk(h.id, type_header, data),
            kind::INTERRUPT_PACKET => self.interrupt_out(h.id, type_header, data),
            kind::ISO_PACKET => {
                // No iso endpoints: refuse.
                let b = [first, Status::Inval.into(), 0, 0];
                self.emit(h.kind, h.id, &b, &[]);
            }
            other => self.ignored(format!("packet type {other} not handled")),
        }
    }

    fn current_configuration(&mut self) -> u8 {
        let setup = SetupPacket {
            request_type: 0x80,
            request: 0x08,
            value: 0,
            index: 0,
            length: 1,
        };
        match self.device.handle_control(setup, &[]) {
            ControlResponse::Data(d) => d.first().copied().unwrap_or(0),
            _ => 0,
        }
    }

    fn set_configuration(&mut self, id: u64, configuration: u8) {
        let setup = SetupPacket {
            request_type: 0x00,
            request: 0x09,
            value: u16::from(configuration),
            index: 0,
            length: 0,
        };
        let status = match self.device.handle_control(setup, &[]) {
            ControlResponse::Stall => Status::Stall,
            _ => Status::Success,
        };
        if status == Status::Success {
            self.event(Event::Configured(configuration));
        }
        self.send_layout();
        let current = self.current_configuration();
        self.emit(
            kind::CONFIGURATION_STATUS,
            id,
            &[status.into(), current],
            &[],
        );
    }

    fn control(&mut self, id: u64, type_header: &[u8], data: &[u8]) {
        let Some(c) = ControlHeader::parse(type_header) else {
            return;
        };
        let input = c.request_type & 0x80 != 0;
        let answer = |status: Status, length: u16| ControlHeader {
            status: status.into(),
            length,
            ..c
        };
        let consistent = if input {
            data.is_empty()
        } else {
            data.len() == usize::from(c.length)
        };
        if !consistent || c.endpoint & 0x7F != 0 {
            self.ignored(format!(
                "control packet id {id}: endpoint {:02X}, wLength {}, {} data bytes",
                c.endpoint,
                c.length,
                data.len()
            ));
            let h = answer(Status::Inval, 0).bytes();
            return self.emit(kind::CONTROL_PACKET, id, &h, &[]);
        }
        let setup = SetupPacket {
            request_type: c.request_type,
            request: c.request,
            value: c.value,
            index: c.index,
            length: c.length,
        };
        match self.device.handle_control(setup, data) {
            ControlResponse::Data(mut d) if input => {
                // QEMU stalls answers over 4 KiB; ours are far smaller.
                d.truncate(usize::from(c.length).min(4096));
                let h = answer(Status::Success, d.len() as u16).bytes();
                self.emit(kind::CONTROL_PACKET, id, &h, &d);
            }
            ControlResponse::Data(_) | ControlResponse::Ack => {
                let length = if input { 0 } else { c.length };
                let h = answer(Status::Success, length).bytes();
                self.emit(kind::CONTROL_PACKET, id, &h, &[]);
            }
            ControlResponse::Stall => {
                let h = answer(Status::Stall, 0).bytes();
                self.emit(kind::CONTROL_PACKET, id, &h, &[]);
            }
        }
    }

    fn bulk(&mut self, id: u64, type_header: &[u8], data: &[u8]) {
        let long = self.neg.has(cap::BULK_LENGTH_32BIT);
        let Some(b) = BulkHeader::parse(type_header, long) else {
            return;
        };
        let refuse = |this: &mut UsbRedirHost, why: String| {
            this.ignored(format!("bulk packet id {id}: {why}"));
            let mut h = Vec::new();
            BulkHeader {
                status: Status::Inval.into(),
                length: 0,
                ..b
            }
            .emit(long, &mut h);
            this.emit(kind::BULK_PACKET, id, &h, &[]);
        };
        if !self.layout.is_bulk(b.endpoint) || self.plug != Plug::Attached {
            return refuse(self, format!("no bulk endpoint {:02X}", b.endpoint));
        }
        if self.data_path == DataPath::Interrupt {
            return refuse(
                self,
                format!("endpoint {:02X} is described as interrupt", b.endpoint),
            );
        }
        if b.stream_id != 0 {
            return refuse(self, format!("stream {} (no streams)", b.stream_id));
        }
        if b.endpoint & 0x80 != 0 {
            if !data.is_empty() {
                return refuse(self, format!("IN request with {} data bytes", data.len()));
            }
            if self.held_in.len() >= MAX_HELD_IN {
                return refuse(self, format!("over {MAX_HELD_IN} IN requests held"));
            }
            self.held_in.push_back(InRequest {
                id,
                endpoint: b.endpoint,
                length: b.length,
            });
            return;
        }
        if data.len() != b.length as usize {
            return refuse(
                self,
                format!("length {} but {} data bytes", b.length, data.len()),
            );
        }
        if !self.accept_out(id, b.endpoint, data, false) {
            refuse(self, "device busy and OUT queue full".into());
        }
    }

    /// QEMU started or stopped interrupt receiving on the data IN endpoint.
    ///
    /// On a stop it drops what it buffered. QEMU's UHCI stops an endpoint
    /// the guest has not polled for 32 frames, which can fall between our
    /// push of an answer and the guest's first poll for it. So what was
    /// pushed since the guest's last OUT data is kept: if the next start
    /// comes before any OUT data, the guest is still waiting for it (a CCID
    /// host reads each answer before its next command) and it is pushed
    /// again; OUT data first means the guest had it.
    fn data_receiving(&mut self, start: bool) {
        self.data_started = start;
        if !start {
            let pushed = core::mem::take(&mut self.pushed);
            self.maybe_lost.extend(pushed);
        }
    }

    /// An interrupt packet from the guest: CCID's OUT data under
    /// [`DataPath::Interrupt`]. QEMU completed the guest's transfer
    /// already, so a packet the device cannot take is held (bounded) and
    /// one past that is lost, with an error status QEMU logs.
    fn interrupt_out(&mut self, id: u64, type_header: &[u8], data: &[u8]) {
        let [endpoint, _status, l0, l1] = *type_header else {
            return;
        };
        let length = u16::from_le_bytes([l0, l1]);
        let answer = |this: &mut UsbRedirHost, status: Status, why: Option<String>| {
            if let Some(why) = why {
                this.ignored(format!("interrupt packet id {id}: {why}"));
            }
            let n = if status == Status::Success { length } else { 0 };
            let [n0, n1] = n.to_le_bytes();
            this.emit(
                kind::INTERRUPT_PACKET,
                id,
                &[endpoint, status.into(), n0, n1],
                &[],
            );
        };
        let ours = endpoint & 0x80 == 0
            && self.data_path == DataPath::Interrupt
            && self.layout.is_bulk(endpoint);
        if !ours || self.plug != Plug::Attached {
            let why = format!("no interrupt OUT endpoint {endpoint:02X}");
            return answer(self, Status::Inval, Some(why));
        }
        if data.len() != usize::from(length) {
            let why = format!("length {length} but {} data bytes", data.len());
            return answer(self, Status::Inval, Some(why));
        }
        if !self.accept_out(id, endpoint, data, true) {
            log::warn!("usbredir: device busy and OUT queue full: {length} bytes lost");
            let why = "device busy and OUT queue full".to_owned();
            answer(self, Status::IoError, Some(why));
        }
    }

    /// Feeds OUT data to the device, or holds it behind packets already
    /// held (in order); false when that queue is full and the caller must
    /// refuse the packet.
    fn accept_out(&mut self, id: u64, endpoint: u8, data: &[u8], interrupt: bool) -> bool {
        if self.held_out.is_empty() {
            self.feed_out(id, endpoint, data, interrupt);
            return true;
        }
        if self.held_out.len() >= MAX_HELD_OUT {
            return false;
        }
        self.held_out.push_back(OutRequest {
            id,
            endpoint,
            data: data.to_vec(),
            interrupt,
        });
        true
    }

    /// Feeds an OUT packet to the device and acknowledges it; `false`
    /// when the device could not take it yet (the packet is then held).
    fn feed_out(&mut self, id: u64, endpoint: u8, data: &[u8], interrupt: bool) -> bool {
        match self.device.handle_bulk_out(data) {
            Err(BulkOutError::QueueFull) => {
                if self.held_out.len() < MAX_HELD_OUT {
                    self.held_out.push_front(OutRequest {
                        id,
                        endpoint,
                        data: data.to_vec(),
                        interrupt,
                    });
                }
                return false;
            }
            Err(e) => log::debug!("usbredir: OUT data: {e}"),
            Ok(()) => {}
        }
        if interrupt {
            // The guest has read every earlier answer.
            self.pushed.clear();
            self.maybe_lost.clear();
            let [n0, n1] = u16::try_from(data.len()).unwrap_or(u16::MAX).to_le_bytes();
            let h = [endpoint, Status::Success.into(), n0, n1];
            self.emit(kind::INTERRUPT_PACKET, id, &h, &[]);
            return true;
        }
        let mut h = Vec::new();
        BulkHeader {
            endpoint,
            status: Status::Success.into(),
            length: u32::try_from(data.len()).unwrap_or(u32::MAX),
            stream_id: 0,
        }
        .emit(self.neg.has(cap::BULK_LENGTH_32BIT), &mut h);
        self.emit(kind::BULK_PACKET, id, &h, &[]);
        true
    }

    fn cancel(&mut self, id: u64) {
        let long = self.neg.has(cap::BULK_LENGTH_32BIT);
        if let Some(i) = self.held_in.iter().position(|r| r.id == id) {
            if let Some(r) = self.held_in.remove(i) {
                let mut h = Vec::new();
                BulkHeader {
                    endpoint: r.endpoint,
                    status: Status::Cancelled.into(),
                    length: 0,
                    stream_id: 0,
                }
                .emit(long, &mut h);
                self.emit(kind::BULK_PACKET, id, &h, &[]);
            }
            return;
        }
        if let Some(i) = self
            .held_out
            .iter()
            .position(|r| r.id == id && !r.interrupt)
        {
            if let Some(r) = self.held_out.remove(i) {
                let mut h = Vec::new();
                BulkHeader {
                    endpoint: r.endpoint,
                    status: Status::Cancelled.into(),
                    length: 0,
                    stream_id: 0,
                }
                .emit(long, &mut h);
                self.emit(kind::BULK_PACKET, id, &h, &[]);
            }
            return;
        }
        if let Some(i) = self.answered.iter().position(|a| a.id == id) {
            // QEMU dropped our answer: its data goes to the next request.
            if let Some(a) = self.answered.remove(i) {
                log::debug!(
                    "usbredir: answered IN id {id} cancelled; {} bytes re-queued",
                    a.bytes.len()
                );
                match (a.ended, self.stream.front_mut()) {
                    (false, Some(head)) => {
                        let mut bytes = a.bytes;
                        bytes.extend_from_slice(head.bytes.get(head.pos..).unwrap_or_default());
                        head.bytes = bytes;
                        head.pos = 0;
                    }
                    _ => self.stream.push_front(Segment {
                        bytes: a.bytes,
                        pos: 0,
                    }),
                }
            }
        }
        // Unknown id: nothing to do.
    }

    /// Sends ep_info and interface_info for the current configuration.
    fn send_layout(&mut self) {
        let configured = self.current_configuration() != 0;
        self.send_layout_for(configured);
    }

    /// ep_info and interface_info: ep0 only and no interface unless
    /// `configured`.
    fn send_layout_for(&mut self, configured: bool) {
        let n = self.neg;
        let mut ep = vec![0u8; n.ep_info_len()];
        // type[32], interval[32], interface[32], max_packet_size[32] (u16).
        for t in ep.get_mut(..32).into_iter().flatten() {
            *t = 0xFF;
        }
        let mut set = |index: usize, ty: u8, interval: u8, interface: u8, max: u16| {
            if let Some(t) = ep.get_mut(index) {
                *t = ty;
            }
            if let Some(t) = ep.get_mut(32 + index) {
                *t = interval;
            }
            if let Some(t) = ep.get_mut(64 + index) {
                *t = interface;
            }
            if let Some(t) = ep.get_mut(96 + 2 * index..98 + 2 * index) {
                t.copy_from_slice(&max.to_le_bytes());
            }
        };
        let max0 = self.layout.ep0_max_packet;
        set(0, 0, 0, 0, max0);
        set(16, 0, 0, 0, max0);
        if configured {
            for &(address, ty, interval, interface, max) in &self.layout.endpoints {
                let (ty, interval) = match (ty, self.data_path) {
                    // QEMU refuses a device with an interval-0 interrupt
                    // endpoint; 1 is the shortest (it does not poll by it).
                    (0x02, DataPath::Interrupt) => (0x03, 1),
                    other => (other.0, interval),
                };
                set(ep_index(address), ty, interval, interface, max);
            }
        }
        let mut info = vec![0u8; 132];
        let interfaces: &[[u8; 4]] = if configured {
            &self.layout.interfaces
        } else {
            &[]
        };
        let count = interfaces.len().min(32);
        if let Some(c) = info.get_mut(..4) {
            c.copy_from_slice(&(count as u32).to_le_bytes());
        }
        for (i, iface) in interfaces.iter().take(32).enumerate() {
            for (field, value) in iface.iter().enumerate() {
                if let Some(b) = info.get_mut(4 + 32 * field + i) {
                    *b = *value;
                }
            }
        }
        self.emit(kind::EP_INFO, 0, &ep, &[]);
        self.emit(kind::INTERFACE_INFO, 0, &info, &[]);
    }

    fn present(&mut self) {
        // QEMU needs the interface at device_connect: describe the
        // configured device; the guest's set_configuration resends both.
        self.send_layout_for(true);
        let n = self.neg;
        let l = &self.layout;
        let mut connect = vec![1, l.class[0], l.class[1], l.class[2]]; // full speed
        connect.extend_from_slice(&l.vendor.to_le_bytes());
        connect.extend_from_slice(&l.product.to_le_bytes());
        if n.has(cap::CONNECT_DEVICE_VERSION) {
            connect.extend_from_slice(&l.release.to_le_bytes());
        }
        self.emit(kind::DEVICE_CONNECT, 0, &connect, &[]);
        self.plug = Plug::Attached;
        self.event(Event::Presented);
    }

    /// Unplugs the device from the guest (device_disconnect). It stays
    /// unplugged until [`UsbRedirHost::plug`].
    pub fn unplug(&mut self) {
        self.replug = false;
        if self.plug != Plug::Attached {
            return;
        }
        self.emit(kind::DEVICE_DISCONNECT, 0, &[], &[]);
        self.plug = if self.peer_caps & cap::DEVICE_DISCONNECT_ACK != 0 {
            Plug::Detaching
        } else {
            Plug::Detached
        };
        // QEMU treats everything outstanding as cancelled.
        self.held_in.clear();
        self.held_out.clear();
        self.stream.clear();
        self.answered.clear();
        self.interrupt_started = false;
        self.data_started = false;
        self.pushed.clear();
        self.maybe_lost.clear();
        self.device.reset();
        self.event(Event::Unplugged);
    }

    /// Plugs the device in again (after [`UsbRedirHost::unplug`]); it is
    /// presented once the disconnect is acknowledged.
    pub fn plug(&mut self) {
        self.replug = true;
        if self.plug == Plug::Detached {
            self.present();
        }
    }

    /// Appends a packet with the negotiated header.
    fn emit(&mut self, kind: u32, id: u64, type_header: &[u8], data: &[u8]) {
        wire::emit_packet(self.neg, kind, id, type_header, data, &mut self.out);
    }

    /// Answers held IN requests from the device's responses, retries held
    /// OUT packets, and sends slot changes while the guest polls.
    fn pump(&mut self) {
        if self.plug == Plug::AwaitHello {
            return;
        }
        while let Some(r) = self.held_out.pop_front() {
            if !self.feed_out(r.id, r.endpoint, &r.data, r.interrupt) {
                break;
            }
        }
        if self.data_path == DataPath::Interrupt && self.data_started && self.plug == Plug::Attached
        {
            while let Some(message) = self.maybe_lost.pop_front() {
                log::info!(
                    "usbredir: QEMU stopped the data IN endpoint before the guest read \
                     an answer; {} bytes pushed again",
                    message.len()
                );
                self.push_answer(message);
            }
            while let Some(message) = self.device.poll_response() {
                self.push_answer(message);
            }
        }
        while let Some(&req) = self.held_in.front() {
            if self.stream.is_empty() {
                match self.device.poll_response() {
                    Some(bytes) => self.stream.push_back(Segment { bytes, pos: 0 }),
                    None => break,
                }
            }
            let Some((bytes, ended)) = self.take(req.length as usize) else {
                break;
            };
            self.held_in.pop_front();
            let long = self.neg.has(cap::BULK_LENGTH_32BIT);
            let mut h = Vec::new();
            BulkHeader {
                endpoint: req.endpoint,
                status: Status::Success.into(),
                length: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                stream_id: 0,
            }
            .emit(long, &mut h);
            self.emit(kind::BULK_PACKET, req.id, &h, &bytes);
            if self.answered.len() >= ANSWERED_KEPT {
                self.answered.pop_front();
            }
            self.answered.push_back(Answered {
                id: req.id,
                bytes,
                ended,
            });
        }
        while let Some(msg) = self.device.poll_interrupt() {
            self.notify = Some(match self.notify.take() {
                Some(old) => merge_slot_change(&old, &msg),
                None => msg,
            });
        }
        if self.interrupt_started && self.plug == Plug::Attached {
            if let Some(msg) = self.notify.take() {
                let ep = self
                    .layout
                    .endpoints
                    .iter()
                    .find(|e| e.1 == 0x03 && e.0 & 0x80 != 0)
                    .map_or(0x81, |e| e.0);
                let mut h = vec![ep, Status::Success.into()];
                h.extend_from_slice(&(msg.len() as u16).to_le_bytes());
                let id = self.interrupt_counter;
                self.interrupt_counter = self.interrupt_counter.wrapping_add(1);
                self.emit(kind::INTERRUPT_PACKET, id, &h, &msg);
            }
        }
    }

    /// Pushes a response on the data IN endpoint and remembers it until
    /// the guest's next OUT data (bounded by the device's queue depth).
    fn push_answer(&mut self, message: Vec<u8>) {
        let Some((ep, max)) = self.layout.data_in() else {
            return;
        };
        self.push_message(ep, max, &message);
        if self.pushed.len() >= PUSHED_KEPT {
            self.pushed.pop_front();
        }
        self.pushed.push_back(message);
    }

    /// Pushes one response as interrupt packets of at most `max` bytes,
    /// ending with a short one (a zero-length one if need be), which is
    /// where QEMU ends the guest's transfer.
    fn push_message(&mut self, ep: u8, max: usize, message: &[u8]) {
        for piece in message.chunks(max) {
            self.push_fragment(ep, piece);
        }
        if message.len().is_multiple_of(max) {
            self.push_fragment(ep, &[]);
        }
    }

    fn push_fragment(&mut self, ep: u8, piece: &[u8]) {
        let [n0, n1] = u16::try_from(piece.len()).unwrap_or(u16::MAX).to_le_bytes();
        let id = self.interrupt_counter;
        self.interrupt_counter = self.interrupt_counter.wrapping_add(1);
        self.emit(
            kind::INTERRUPT_PACKET,
            id,
            &[ep, Status::Success.into(), n0, n1],
            piece,
        );
    }

    /// Up to `n` bytes of IN data, by USB packet rules: whole 64-byte
    /// packets, ending after a short packet or a zero-length packet.
    /// `None` when nothing is there to send (the request waits).
    fn take(&mut self, n: usize) -> Option<(Vec<u8>, bool)> {
        let mut got = Vec::new();
        let mut consumed = false;
        let mut ended = false;
        while let Some(head) = self.stream.front_mut() {
            if head.pos >= head.bytes.len() {
                // The zero-length packet owed after a full last packet.
                if got.len() < n || n == 0 {
                    self.stream.pop_front();
                    consumed = true;
                    ended = true;
                }
                break;
            }
            let room = n - got.len();
            if room == 0 {
                break;
            }
            let rest = head.bytes.get(head.pos..).unwrap_or_default();
            let k = rest.len().min(room.min(MAX_PACKET));
            got.extend_from_slice(rest.get(..k).unwrap_or_default());
            head.pos += k;
            consumed = true;
            let short = k < MAX_PACKET;
            if head.pos >= head.bytes.len() {
                if short {
                    self.stream.pop_front();
                    ended = true;
                    break;
                }
                continue;
            }
            if short {
                break;
            }
        }
        consumed.then_some((got, ended))
    }

    /// Appends everything to write to the peer (our packets in order).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        self.pump();
        out.append(&mut self.out);
    }

    /// The next card operation (see [`CcidDevice::poll_job`]).
    pub fn poll_job(&mut self) -> Option<CardJob> {
        self.device.poll_job()
    }

    /// A finished card operation (see [`CcidDevice::complete`]).
    pub fn complete(&mut self, done: JobDone) -> Result<(), UnknownJob> {
        let r = self.device.complete(done);
        self.pump();
        r
    }

    /// Runs every queued card operation here and now.
    pub fn run_jobs(&mut self) {
        self.device.run_jobs();
        self.pump();
    }

    /// Timer input (see [`CcidDevice::tick`]).
    pub fn tick(&mut self) {
        self.device.tick();
        self.pump();
    }
}

/// Two NotifySlotChange messages as one: the newer presence bits, the
/// changed bits of both.
fn merge_slot_change(old: &[u8], new: &[u8]) -> Vec<u8> {
    let mut merged = new.to_vec();
    for (i, b) in merged.iter_mut().enumerate().skip(1) {
        let changed_before = old.get(i).copied().unwrap_or(0) & 0xAA;
        *b |= changed_before;
    }
    merged
}

#[cfg(test)]
mod tests;
