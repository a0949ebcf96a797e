//! The USB CCID reader a VMM embeds: a sans-IO device model.
//!
//! [`CcidDevice`] is QEMU's `usb-ccid` as a value. It does no I/O, spawns
//! no threads and reads no clock: the VMM's USB emulation feeds it control
//! requests and Bulk-OUT packets, and polls Bulk-IN and Interrupt-IN data
//! out of it. Card operations (a signature can take a while) come out as
//! [`CardJob`]s the driver runs wherever it likes — inline with
//! [`CcidDevice::run_jobs`], or on a worker thread — and hands back with
//! [`CcidDevice::complete`]. While one runs, [`CcidDevice::tick`] (called
//! by the driver's timer) produces CCID time-extension messages.
//!
//! ```text
//!  guest ── SETUP ──────► handle_control ──► descriptors, ABORT, clock / data-rate lists
//!        ── Bulk-OUT ───► handle_bulk_out ─► assembly ─► slot N ─┬─► response ─┐
//!                                                               └─► CardJob ──┤ run (any thread)
//!                                        complete(JobDone) ◄──── ReaderHandle ┘   vreader → cac
//!        ◄─ Bulk-IN ────  poll_bulk_in  ◄── bounded response queue ◄───────────┘
//!        ◄─ Interrupt-IN  poll_interrupt ◄── NotifySlotChange ◄── vreader events
//! ```
//!
//! One slot per [`vreader`] reader; slots are independent (each can have a
//! command in progress). Everything the guest sends is hostile: runts,
//! lies in `dwLength`, oversize or pipelined messages get a defined answer
//! (see [`BulkOutError`]) and the device keeps working; queues are bounded
//! by [`DeviceConfig::queue_depth`] and every buffer by
//! [`DeviceConfig::max_message_len`].
//!
//! [`CcidDevice::snapshot`] captures the whole state as a versioned byte
//! string ([`Snapshot`]) for live migration.
//!
//! # Example
//!
//! ```
//! use ccid::device::{CcidDevice, DeviceConfig};
//! use vreader::ReaderSet;
//!
//! # fn card() -> cac::Card {
//! #     vcac_sources::embedded::default_card(&cac::keys::RustCrypto, rand_core::UnwrapErr(getrandom::SysRng)).unwrap()
//! # }
//! let set = ReaderSet::new();
//! let reader = set.add_reader("slot 0")?;
//! set.insert_card(reader, card())?;
//! let mut device = CcidDevice::new(DeviceConfig::default(), &set, &[reader])?;
//!
//! // PC_to_RDR_IccPowerOn, slot 0, bSeq 1, in one 10-byte packet.
//! device.handle_bulk_out(&[0x62, 0, 0, 0, 0, 0, 1, 0, 0, 0])?;
//! let mut packet = [0u8; 64];
//! let n = device.poll_bulk_in(&mut packet).expect("a response");
//! assert_eq!(packet[..10], [0x80, 15, 0, 0, 0, 0, 1, 0x00, 0x00, 0x00]);
//! assert_eq!(packet[10..n], cac::DEFAULT_ATR);
//!
//! // PC_to_RDR_XfrBlock with a T=0 TPDU: SELECT the CAC's CCC.
//! let select = [0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00];
//! let mut msg = vec![0x6F, select.len() as u8, 0, 0, 0, 0, 2, 0, 0, 0];
//! msg.extend_from_slice(&select);
//! device.handle_bulk_out(&msg)?;
//! device.run_jobs(); // or poll_job() → job.run() on a worker → complete()
//! let n = device.poll_bulk_in(&mut packet).expect("a response");
//! assert_eq!(packet[..2], [0x80, 2]); // DataBlock with 2 bytes…
//! assert_eq!(packet[10..n], [0x61, 0x0D]); // …"61 0D": T=0 wants GET RESPONSE
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Messages handled
//!
//! | PC_to_RDR | answer |
//! |---|---|
//! | `62` IccPowerOn | DataBlock with the ATR; `bPowerSelect` > 3 → `bError` 07 |
//! | `63` IccPowerOff | SlotStatus |
//! | `65` GetSlotStatus | SlotStatus; no card → failed, `FE` |
//! | `6F` XfrBlock | DataBlock: TPDU (T=0, PPS, T=1 blocks), short APDU, or extended APDU with `wLevelParameter` chaining |
//! | `6C` / `6D` / `61` Get / Reset / SetParameters | Parameters (T=0 5 bytes, T=1 7 bytes); bad field → its offset |
//! | `6B` Escape | Escape: `02` firmware text, `01 01 01` and `06` accepted, others `00` |
//! | `6E` IccClock | SlotStatus; stopping the clock → `07` |
//! | `6A` T0APDU | SlotStatus; `00` at TPDU level |
//! | `69` Secure, `71` Mechanical, unknown | DataBlock / SlotStatus with `00` (not supported) |
//! | `72` Abort | SlotStatus once paired with the class ABORT request |
//! | `73` SetDataRateAndClockFrequency | DataRateAndClockFrequency; values not offered → `0A` / `0E` |
//!
//! Every command: `dwLength` wrong for its type → `01`; no such slot →
//! `05`; slot busy → `E0`; after a class ABORT and before its Bulk-OUT
//! pair → `FF`. Responses echo `bSlot` and `bSeq`.

mod config;
mod descriptors;
pub mod pinpad;
mod protocol;
mod slot;
mod snapshot;
mod t1;
pub mod wire;

use core::fmt;
use std::collections::VecDeque;

use vreader::{EventKind, Events, ReaderError, ReaderHandle, ReaderId, ReaderSet};

pub use config::{
    ConfigError, DeviceConfig, ExchangeLevel, MAX_MESSAGE_LEN, MAX_SLOTS, MAX_STRING_UNITS,
    MIN_MESSAGE_LEN,
};
pub use descriptors::{
    ccid_class_descriptor, clock_frequencies, configuration_descriptor, data_rates,
    device_descriptor, features, string_descriptor, ControlResponse, SetupPacket, CLOCK_KHZ,
    DATA_RATES, EP_BULK_IN, EP_BULK_OUT, EP_INTERRUPT_IN, FEATURES, MAX_DATA_RATE, MAX_IFSD,
    MAX_PACKET,
};
pub use pinpad::{PinEntry, PinEntryError, PinOperation, PinPad, PinSource};
pub use snapshot::{RestoreError, Snapshot, SnapshotError, SNAPSHOT_VERSION};

use descriptors::request;
use slot::{Ctx, Slot};
use wire::{Command, Packet, SlotError, ERR_OFFSET_LENGTH, ERR_OFFSET_SLOT};

/// Why a Bulk-OUT packet or message was not processed as a command. Every
/// variant except [`BulkOutError::QueueFull`] consumed the input, and the
/// device is ready for the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkOutError {
    /// Responses and commands in progress reached `queue_depth`: the
    /// packet was **not** consumed. A USB device NAKs it; the host retries
    /// once it has read a response.
    QueueFull,
    /// The message ended before its 10-byte header was complete. Dropped
    /// without an answer (there is no `bSeq` to echo).
    Runt {
        /// Bytes received.
        len: usize,
    },
    /// `dwLength` does not match the bytes that came. Answered with the
    /// command's response type, failed, `bError` 01.
    LengthMismatch {
        /// `dwLength` as declared.
        declared: u32,
        /// Bytes after the header actually received.
        received: usize,
    },
    /// `dwLength` exceeds `dwMaxCCIDMessageLength` − 10. Answered with
    /// `bError` 01; the rest of that transfer is discarded.
    TooLong {
        /// `dwLength` as declared.
        declared: u32,
        /// Largest `dwLength` accepted.
        max: usize,
    },
}

impl fmt::Display for BulkOutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BulkOutError::QueueFull => write!(f, "response queue full: retry later (NAK)"),
            BulkOutError::Runt { len } => {
                write!(f, "message of {len} bytes ended inside the 10-byte header")
            }
            BulkOutError::LengthMismatch { declared, received } => write!(
                f,
                "dwLength says {declared} bytes but {received} came after the header"
            ),
            BulkOutError::TooLong { declared, max } => {
                write!(f, "dwLength {declared} is over the {max}-byte limit")
            }
        }
    }
}

impl std::error::Error for BulkOutError {}

/// Why a device cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// The configuration is out of bounds.
    Config(ConfigError),
    /// A reader is unknown to the set.
    Reader(ReaderError),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Config(e) => write!(f, "CCID device configuration: {e}"),
            DeviceError::Reader(e) => write!(f, "CCID device slot: {e}"),
        }
    }
}

impl std::error::Error for DeviceError {}

impl From<ConfigError> for DeviceError {
    fn from(e: ConfigError) -> DeviceError {
        DeviceError::Config(e)
    }
}

impl From<ReaderError> for DeviceError {
    fn from(e: ReaderError) -> DeviceError {
        DeviceError::Reader(e)
    }
}

/// [`CcidDevice::complete`] was given a result nobody waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownJob {
    /// The job's slot.
    pub slot: u8,
    /// The job's ID.
    pub id: u64,
}

impl fmt::Display for UnknownJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "slot {}: no card job {} is running (bus reset or restore since?)",
            self.slot, self.id
        )
    }
}

impl std::error::Error for UnknownJob {}

/// A card operation to run: the command APDU for one slot's card. Owns a
/// handle on the reader, so it can run on any thread.
#[derive(Debug)]
pub struct CardJob {
    slot: u8,
    id: u64,
    reader: ReaderHandle,
    command: Vec<u8>,
    pin: Option<pinpad::PinJob>,
}

impl CardJob {
    /// The slot.
    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// The command APDU (for a PIN pad command, the template the PIN
    /// goes into).
    pub fn command(&self) -> &[u8] {
        &self.command
    }

    /// True for a PIN pad command: [`CardJob::run`] asks the
    /// configured [`PinSource`] first (which may block on a prompt).
    pub fn needs_pin(&self) -> bool {
        self.pin.is_some()
    }

    /// Sends the command to the card (this is where a signature takes its
    /// time) and returns the result for [`CcidDevice::complete`]. A PIN
    /// pad command first gets its PIN; without one the card is not asked.
    pub fn run(self) -> JobDone {
        let mut response = Vec::with_capacity(258);
        let command = match &self.pin {
            None => Some(self.command),
            Some(pin) => pin.apdu(),
        };
        let result = match command {
            Some(command) => self
                .reader
                .transmit(&command, &mut response)
                .map(|()| response),
            None => Ok(Vec::new()),
        };
        JobDone {
            slot: self.slot,
            id: self.id,
            result,
        }
    }
}

/// A finished [`CardJob`].
#[derive(Debug)]
pub struct JobDone {
    slot: u8,
    id: u64,
    result: Result<Vec<u8>, ReaderError>,
}

impl JobDone {
    /// The slot.
    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// The response APDU, or why the card could not answer.
    pub fn result(&self) -> &Result<Vec<u8>, ReaderError> {
        &self.result
    }
}

/// One queued Bulk-IN message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub(crate) bytes: Vec<u8>,
    /// Set for a time-extension message of this slot.
    pub(crate) time_extension: Option<u8>,
}

/// The Bulk-IN queue, and how far the head message has been sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Outbox {
    pub(crate) queue: VecDeque<Outgoing>,
    /// Bytes of the head message already sent.
    pub(crate) pos: usize,
    /// The head message ended on a full packet: a zero-length packet is
    /// still owed.
    pub(crate) zlp: bool,
}

impl Outbox {
    pub(crate) fn push(&mut self, bytes: Vec<u8>, time_extension: Option<u8>) {
        self.queue.push_back(Outgoing {
            bytes,
            time_extension,
        });
    }
}

/// Bulk-OUT reassembly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Assembly {
    /// Between messages.
    #[default]
    Idle,
    /// Part of a message.
    Collecting(Vec<u8>),
    /// The rest of a transfer already answered as an error: drop until a
    /// short packet or `left` more bytes.
    Discarding { left: usize },
}

/// The CCID reader. See the [module documentation](self).
pub struct CcidDevice {
    config: DeviceConfig,
    slots: Vec<Slot>,
    events: Events,
    out: Outbox,
    assembly: Assembly,
    jobs: VecDeque<u8>,
    next_job: u64,
    configuration: u8,
}

impl fmt::Debug for CcidDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CcidDevice")
            .field("slots", &self.slots.len())
            .field("responses_queued", &self.out.queue.len())
            .field("jobs_queued", &self.jobs.len())
            .finish()
    }
}

impl CcidDevice {
    /// A reader whose slot `n` is `readers[n]` of `set`. Slot presence
    /// follows the set's events from now on.
    pub fn new(
        config: DeviceConfig,
        set: &ReaderSet,
        readers: &[ReaderId],
    ) -> Result<CcidDevice, DeviceError> {
        config.validate(readers.len())?;
        // Subscribe first: a change racing the presence query below then
        // shows up as an event (state-based, so a duplicate is harmless).
        let events = set.subscribe();
        let mut slots = Vec::with_capacity(readers.len());
        for &id in readers {
            let handle = set.handle(id)?;
            let present = handle.card_present()?;
            slots.push(Slot::new(handle, present));
        }
        Ok(CcidDevice {
            config,
            slots,
            events,
            out: Outbox::default(),
            assembly: Assembly::Idle,
            jobs: VecDeque::new(),
            next_job: 1,
            configuration: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// Number of slots (`bMaxSlotIndex` + 1).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The device descriptor.
    pub fn device_descriptor(&self) -> Vec<u8> {
        device_descriptor(&self.config)
    }

    /// The configuration descriptor and everything below it.
    pub fn configuration_descriptor(&self) -> Vec<u8> {
        configuration_descriptor(&self.config, self.slots.len())
    }

    /// Handles a control transfer on endpoint 0: the standard requests a
    /// device must answer, and the CCID class requests ABORT,
    /// GET_CLOCK_FREQUENCIES and GET_DATA_RATES. `data` is the OUT data
    /// stage (none of the handled requests has one).
    pub fn handle_control(&mut self, setup: SetupPacket, data: &[u8]) -> ControlResponse {
        let _ = data;
        self.sync_events();
        let [index_lo, _] = setup.index.to_le_bytes();
        let [value_lo, value_hi] = setup.value.to_le_bytes();
        match (setup.request_type, setup.request) {
            (0x80, request::GET_STATUS)
            | (0x81, request::GET_STATUS)
            | (0x82, request::GET_STATUS) => descriptors::data_stage(vec![0, 0], setup.length),
            (0x00, request::SET_ADDRESS) => ControlResponse::Ack,
            (0x80, request::GET_DESCRIPTOR) => {
                let d = match value_hi {
                    0x01 => Some(self.device_descriptor()),
                    0x02 if value_lo == 0 => Some(self.configuration_descriptor()),
                    0x03 => string_descriptor(&self.config, value_lo),
                    _ => None,
                };
                d.map_or(ControlResponse::Stall, |d| {
                    descriptors::data_stage(d, setup.length)
                })
            }
            (0x80, request::GET_CONFIGURATION) => {
                descriptors::data_stage(vec![self.configuration], setup.length)
            }
            (0x00, request::SET_CONFIGURATION) if setup.value <= 1 => {
                self.configuration = value_lo;
                ControlResponse::Ack
            }
            (0x81, request::GET_INTERFACE) if setup.index == 0 => {
                descriptors::data_stage(vec![0], setup.length)
            }
            (0x01, request::SET_INTERFACE) if setup.index == 0 && setup.value == 0 => {
                ControlResponse::Ack
            }
            // ENDPOINT_HALT on one of ours: nothing to clear or set.
            (0x02, request::CLEAR_FEATURE | request::SET_FEATURE)
                if setup.value == 0
                    && [EP_INTERRUPT_IN, EP_BULK_IN, EP_BULK_OUT].contains(&index_lo) =>
            {
                ControlResponse::Ack
            }
            (0x21, request::ABORT) if setup.index == 0 => {
                // wValue: bSeq in the high byte, bSlot in the low byte.
                let Self {
                    slots,
                    out,
                    jobs,
                    config,
                    ..
                } = self;
                if let Some(slot) = slots.get_mut(usize::from(value_lo)) {
                    let mut ctx = Ctx {
                        config,
                        out,
                        jobs,
                        index: value_lo,
                    };
                    slot.control_abort(&mut ctx, value_hi);
                    ControlResponse::Ack
                } else {
                    ControlResponse::Stall
                }
            }
            (0xA1, request::GET_CLOCK_FREQUENCIES) if setup.index == 0 => {
                descriptors::data_stage(clock_frequencies(), setup.length)
            }
            (0xA1, request::GET_DATA_RATES) if setup.index == 0 => {
                descriptors::data_stage(data_rates(), setup.length)
            }
            _ => ControlResponse::Stall,
        }
    }

    fn saturated(&self) -> bool {
        let busy = self.slots.iter().filter(|s| s.pending.is_some()).count();
        self.out.queue.len() + busy >= self.config.queue_depth
    }

    /// Feeds one Bulk-OUT packet (at most [`MAX_PACKET`] bytes; a VMM that
    /// works at transfer level may pass a whole transfer). A message is
    /// complete when `dwLength` bytes follow the header, whatever the
    /// packet boundary; a packet shorter than [`MAX_PACKET`] (including a
    /// zero-length packet) ends the transfer, so a message still short of
    /// `dwLength` is an error. A zero-length packet between messages is
    /// ignored.
    pub fn handle_bulk_out(&mut self, packet: &[u8]) -> Result<(), BulkOutError> {
        self.sync_events();
        let short = !packet.len().is_multiple_of(MAX_PACKET) || packet.is_empty();
        let max = self.config.max_message_len as usize;
        match core::mem::take(&mut self.assembly) {
            Assembly::Idle => {
                if packet.is_empty() {
                    return Ok(());
                }
                if self.saturated() {
                    return Err(BulkOutError::QueueFull);
                }
                // A transfer-level caller may hand over anything: keep no
                // more than one message plus one packet.
                let keep = packet.get(..max + MAX_PACKET).unwrap_or(packet);
                self.collect(keep.to_vec(), short)
            }
            Assembly::Collecting(mut buf) => {
                // Never hold more than one message plus one packet.
                let room = (max + MAX_PACKET).saturating_sub(buf.len());
                buf.extend_from_slice(packet.get(..room).unwrap_or(packet));
                self.collect(buf, short)
            }
            Assembly::Discarding { left } => {
                let left = left.saturating_sub(packet.len());
                if !short && left > 0 {
                    self.assembly = Assembly::Discarding { left };
                }
                Ok(())
            }
        }
    }

    fn collect(&mut self, buf: Vec<u8>, transfer_ended: bool) -> Result<(), BulkOutError> {
        let Ok(p) = Packet::new_checked(buf.as_slice()) else {
            if transfer_ended {
                return Err(BulkOutError::Runt { len: buf.len() });
            }
            self.assembly = Assembly::Collecting(buf);
            return Ok(());
        };
        let declared = p.length();
        let max_data = self.config.max_data();
        let received = p.payload().len();
        if declared as usize > max_data {
            self.answer_bad_length(&p);
            if !transfer_ended {
                let left = (declared as usize).saturating_sub(received);
                self.assembly = Assembly::Discarding { left };
            }
            return Err(BulkOutError::TooLong {
                declared,
                max: max_data,
            });
        }
        if received == declared as usize {
            self.dispatch(&p);
            return Ok(());
        }
        if received < declared as usize && !transfer_ended {
            self.assembly = Assembly::Collecting(buf);
            return Ok(());
        }
        // Too few bytes and the transfer ended, or too many.
        self.answer_bad_length(&p);
        if !transfer_ended {
            self.assembly = Assembly::Discarding { left: max_data };
        }
        Err(BulkOutError::LengthMismatch { declared, received })
    }

    /// Handles one whole message, for transports that frame messages
    /// themselves (libccid's serial protocol). Same checks and answers as
    /// [`CcidDevice::handle_bulk_out`].
    pub fn handle_message(&mut self, message: &[u8]) -> Result<(), BulkOutError> {
        self.sync_events();
        if self.saturated() {
            return Err(BulkOutError::QueueFull);
        }
        let p =
            Packet::new_checked(message).map_err(|_| BulkOutError::Runt { len: message.len() })?;
        let max_data = self.config.max_data();
        if p.length() as usize > max_data || p.payload().len() > max_data {
            self.answer_bad_length(&p);
            return Err(BulkOutError::TooLong {
                declared: p.length(),
                max: max_data,
            });
        }
        if !p.length_matches() {
            self.answer_bad_length(&p);
            return Err(BulkOutError::LengthMismatch {
                declared: p.length(),
                received: p.payload().len(),
            });
        }
        self.dispatch(&p);
        Ok(())
    }

    fn answer_bad_length(&mut self, p: &Packet<&[u8]>) {
        self.answer_error(p, SlotError::bad_field(ERR_OFFSET_LENGTH));
    }

    /// Answers `p` with a failure, whatever its slot.
    fn answer_error(&mut self, p: &Packet<&[u8]>, error: SlotError) {
        let command = Command::from(p.message_type());
        let response = command.response();
        let slot = self.slots.get(usize::from(p.slot()));
        let icc = slot.map_or(wire::IccStatus::Absent, |s| s.icc());
        let status = wire::status_byte(icc, wire::CommandStatus::Failed);
        let (third, data): (u8, Vec<u8>) = match (response, slot) {
            (wire::Response::Parameters, Some(s)) => (s.params.protocol, s.params.bytes().to_vec()),
            (wire::Response::DataRateAndClockFrequency, s) => {
                let mut d = s.map_or(0, |s| s.clock_khz).to_le_bytes().to_vec();
                d.extend_from_slice(&s.map_or(0, |s| s.data_rate).to_le_bytes());
                (0, d)
            }
            _ => (0, Vec::new()),
        };
        let mut msg = Vec::new();
        wire::emit(
            &mut msg,
            response.into(),
            p.slot(),
            p.seq(),
            [status, error.into(), third],
            &data,
        );
        self.out.push(msg, None);
    }

    fn dispatch(&mut self, p: &Packet<&[u8]>) {
        let index = p.slot();
        log::trace!(
            "slot {index} > {} seq {:02X} len {}",
            Command::from(p.message_type()),
            p.seq(),
            p.length()
        );
        let Self {
            slots,
            out,
            jobs,
            config,
            ..
        } = self;
        let Some(slot) = slots.get_mut(usize::from(index)) else {
            return self.answer_error(p, SlotError::bad_field(ERR_OFFSET_SLOT));
        };
        let mut ctx = Ctx {
            config,
            out,
            jobs,
            index,
        };
        slot.handle(&mut ctx, p);
    }

    /// The next card operation to run, if any. Run it (here or on another
    /// thread) and pass the result to [`CcidDevice::complete`]; meanwhile
    /// its slot answers other commands with "slot busy".
    pub fn poll_job(&mut self) -> Option<CardJob> {
        while let Some(index) = self.jobs.pop_front() {
            let id = self.next_job;
            let Some(slot) = self.slots.get_mut(usize::from(index)) else {
                continue;
            };
            if let Some((_, command)) = slot.start_job(id) {
                self.next_job = self.next_job.wrapping_add(1);
                return Some(CardJob {
                    slot: index,
                    id,
                    reader: slot.reader.clone(),
                    command,
                    pin: slot.pin_job(),
                });
            }
        }
        None
    }

    /// Takes a finished card operation and queues its answer.
    pub fn complete(&mut self, done: JobDone) -> Result<(), UnknownJob> {
        self.sync_events();
        let unknown = UnknownJob {
            slot: done.slot,
            id: done.id,
        };
        let Self {
            slots,
            out,
            jobs,
            config,
            ..
        } = self;
        let slot = slots.get_mut(usize::from(done.slot)).ok_or(unknown)?;
        let mut ctx = Ctx {
            config,
            out,
            jobs,
            index: done.slot,
        };
        if slot.complete(&mut ctx, done.id, done.result) {
            Ok(())
        } else {
            Err(unknown)
        }
    }

    /// Runs every queued card operation here and now.
    pub fn run_jobs(&mut self) {
        while let Some(job) = self.poll_job() {
            let done = job.run();
            // The job was just started, so it is known.
            let _ = self.complete(done);
        }
    }

    /// Timer input, every few hundred milliseconds: each command that has
    /// been pending since the previous tick gets one RDR_to_PC
    /// time-extension message (`bStatus` 80, `bError` 01), so the host
    /// keeps waiting for a slow card operation.
    pub fn tick(&mut self) {
        self.sync_events();
        let Self {
            slots,
            out,
            jobs,
            config,
            ..
        } = self;
        for (index, slot) in (0u8..).zip(slots.iter_mut()) {
            let mut ctx = Ctx {
                config,
                out,
                jobs,
                index,
            };
            slot.tick(&mut ctx);
        }
    }

    fn pop_head(&mut self) -> Option<Outgoing> {
        let head = self.out.queue.pop_front()?;
        self.out.pos = 0;
        if let Some(i) = head.time_extension {
            if let Some(p) = self
                .slots
                .get_mut(usize::from(i))
                .and_then(|s| s.pending.as_mut())
            {
                p.time_extension_queued = false;
            }
        }
        Some(head)
    }

    /// The next whole Bulk-IN message (the unsent rest of it, if
    /// [`CcidDevice::poll_bulk_in`] already sent part of it).
    pub fn poll_response(&mut self) -> Option<Vec<u8>> {
        self.sync_events();
        self.out.zlp = false;
        let pos = self.out.pos;
        let head = self.pop_head()?;
        Some(head.bytes.get(pos..).unwrap_or_default().to_vec())
    }

    /// Fills `buf` with the next Bulk-IN data: `None` when there is
    /// nothing to send (NAK), `Some(0)` for a zero-length packet. A message
    /// whose last piece filled `buf` exactly with a multiple of
    /// [`MAX_PACKET`] bytes is followed by a zero-length packet, so the
    /// host sees where it ends.
    pub fn poll_bulk_in(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.sync_events();
        if self.out.zlp {
            self.out.zlp = false;
            return Some(0);
        }
        let head = self.out.queue.front()?;
        let rest = head.bytes.get(self.out.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.out.pos += n;
        if self.out.pos >= head.bytes.len() {
            self.pop_head();
            self.out.zlp = n > 0 && n == buf.len() && n % MAX_PACKET == 0;
        }
        Some(n)
    }

    /// Bulk-IN messages waiting.
    pub fn responses_queued(&self) -> usize {
        self.out.queue.len()
    }

    /// True when no command is in progress and nothing waits to be read.
    pub fn is_idle(&self) -> bool {
        self.out.queue.is_empty()
            && !self.out.zlp
            && self.jobs.is_empty()
            && self.slots.iter().all(|s| s.pending.is_none())
    }

    /// A RDR_to_PC_NotifySlotChange (`50` + 2 bits per slot: card present,
    /// changed) when a slot's card came or went since the last one.
    pub fn poll_interrupt(&mut self) -> Option<Vec<u8>> {
        self.sync_events();
        if !self.slots.iter().any(|s| s.changed) {
            return None;
        }
        let mut msg = vec![u8::from(wire::Interrupt::NotifySlotChange)];
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if i % 4 == 0 {
                msg.push(0);
            }
            let bits = u8::from(slot.present) | (u8::from(slot.changed) << 1);
            if let Some(last) = msg.last_mut() {
                *last |= bits << (2 * (i % 4));
            }
            slot.changed = false;
        }
        Some(msg)
    }

    /// Applies reader events (card inserted / removed, reader removed).
    fn sync_events(&mut self) {
        while let Some(event) = self.events.try_next() {
            for slot in self
                .slots
                .iter_mut()
                .filter(|s| s.reader.id() == event.reader)
            {
                match event.kind {
                    EventKind::CardInserted => slot.set_present(true),
                    EventKind::CardRemoved | EventKind::ReaderRemoved => slot.set_present(false),
                    EventKind::ReaderInserted => {}
                }
            }
        }
    }

    /// USB bus reset: forgets the queues, a partial message, chains,
    /// aborts and commands in progress (a running job's result is then
    /// refused). Card power is left as it is.
    pub fn reset(&mut self) {
        self.sync_events();
        self.out = Outbox::default();
        self.assembly = Assembly::Idle;
        self.jobs.clear();
        self.configuration = 0;
        for slot in &mut self.slots {
            slot.pending = None;
            slot.abort = None;
            slot.chain = Default::default();
        }
    }
}

#[cfg(test)]
mod tests;
