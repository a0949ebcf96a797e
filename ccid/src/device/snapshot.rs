//! Live migration: the whole device state as a versioned byte string.
//!
//! # Format (version 1)
//!
//! Little-endian integers; `bytes` is a `u32` length and that many bytes.
//!
//! ```text
//!  "VCCD"  u16 version  u8 exchange level  u32 dwMaxCCIDMessageLength  u8 slots
//!  u8 configuration  u64 next job ID
//!  assembly   u8 0 idle | 1 collecting, bytes | 2 discarding, u32 left
//!  bulk-in    u16 count, { bytes message, u8 time-extension slot or FF },
//!             u32 bytes of the head already sent, u8 zero-length packet owed
//!  jobs       u8 count, { u8 slot }
//!  per slot   u8 present, u8 powered, u8 changed, bytes ATR,
//!             u8 protocol, 7 bytes parameters,
//!             u8 0 | 1 pending: u8 bSeq, u8 bMessageType, bytes command,
//!                               u8 reply kind, u8 aborted, u32 ticks
//!             u8 0 | 1 abort: u8 bSeq, u8 control seen, u8 bulk seen
//!             chain: u8 collecting, bytes command, bytes response, u32 sent
//!             T=1:   u8 N(S), u8 N(R), u8 IFSD, u8 NAD, bytes rx, bytes tx,
//!                    u32 sent, bytes last block
//!             2 bytes T0APDU classes, u32 clock kHz, u32 data rate
//! ```
//!
//! A snapshot is taken between card operations: a job handed out by
//! [`CcidDevice::poll_job`] and not yet completed makes
//! [`CcidDevice::snapshot`] fail (complete it first; queued jobs are
//! part of the snapshot and run after the restore). The cards themselves
//! live in [`vreader`] and are not part of it: restore onto readers
//! holding the same cards (a changed presence is reported to the guest
//! as a slot change). Restoring checks every length and value — a
//! snapshot is as untrusted as guest input.

use core::fmt;
use std::collections::VecDeque;

use vreader::{ReaderError, ReaderId, ReaderSet};

use super::config::{ConfigError, DeviceConfig, ExchangeLevel};
use super::protocol::Params;
use super::slot::{AbortState, ApduChain, JobState, Pending, Reply, Slot};
use super::t1::{T1State, MAX_APDU, MAX_INF};
use super::wire::Command;
use super::{Assembly, CcidDevice, Outbox, Outgoing, MAX_PACKET};

/// Version written by this code.
pub const SNAPSHOT_VERSION: u16 = 1;
const MAGIC: &[u8; 4] = b"VCCD";
/// Longest response APDU (extended Le 65536 + SW).
const MAX_RESPONSE: usize = 65_538;

/// A device's state, ready to store or send. Opaque; see the module
/// documentation for the layout.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    bytes: Vec<u8>,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Snapshot({} bytes)", self.bytes.len())
    }
}

impl Snapshot {
    /// The encoded state.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Wraps received bytes; [`CcidDevice::restore`] validates them.
    pub fn from_bytes(bytes: Vec<u8>) -> Snapshot {
        Snapshot { bytes }
    }
}

/// Why [`CcidDevice::snapshot`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// A card job of this slot is running: complete it, then snapshot.
    JobRunning {
        /// The slot.
        slot: u8,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::JobRunning { slot } => write!(
                f,
                "slot {slot}: a card operation is running; complete it before taking a snapshot"
            ),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Why a snapshot cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// Not a snapshot (bad magic).
    NotASnapshot,
    /// Written by an unknown version.
    Version(u16),
    /// Taken on a device with another exchange level, message length or
    /// number of slots.
    Mismatch(&'static str),
    /// A field is truncated, out of range or inconsistent.
    Malformed(&'static str),
    /// Bytes after the last field.
    TrailingBytes(usize),
    /// The configuration is out of bounds.
    Config(ConfigError),
    /// A reader is unknown to the set.
    Reader(ReaderError),
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::NotASnapshot => write!(f, "not a CCID device snapshot"),
            RestoreError::Version(v) => write!(
                f,
                "snapshot version {v} is not supported (this code reads {SNAPSHOT_VERSION})"
            ),
            RestoreError::Mismatch(what) => {
                write!(f, "snapshot taken with a different {what}")
            }
            RestoreError::Malformed(field) => write!(f, "snapshot field {field} is malformed"),
            RestoreError::TrailingBytes(n) => write!(f, "{n} bytes after the snapshot's end"),
            RestoreError::Config(e) => write!(f, "{e}"),
            RestoreError::Reader(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RestoreError {}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn usize(&mut self, v: usize) {
        self.u32(u32::try_from(v).unwrap_or(u32::MAX));
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.usize(v.len());
        self.0.extend_from_slice(v);
    }
}

struct Reader<'a>(&'a [u8]);

type R<T> = Result<T, RestoreError>;

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self, field: &'static str) -> R<[u8; N]> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(RestoreError::Malformed(field))?;
        self.0 = rest;
        Ok(*head)
    }
    fn u8(&mut self, field: &'static str) -> R<u8> {
        Ok(self.take::<1>(field)?[0])
    }
    fn bool(&mut self, field: &'static str) -> R<bool> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RestoreError::Malformed(field)),
        }
    }
    fn u16(&mut self, field: &'static str) -> R<u16> {
        Ok(u16::from_le_bytes(self.take(field)?))
    }
    fn u32(&mut self, field: &'static str) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(field)?))
    }
    fn usize(&mut self, field: &'static str, max: usize) -> R<usize> {
        let v = self.u32(field)? as usize;
        if v > max {
            return Err(RestoreError::Malformed(field));
        }
        Ok(v)
    }
    fn u64(&mut self, field: &'static str) -> R<u64> {
        Ok(u64::from_le_bytes(self.take(field)?))
    }
    /// A length-prefixed byte string of at most `max` bytes.
    fn bytes(&mut self, field: &'static str, max: usize) -> R<Vec<u8>> {
        let len = self.usize(field, max)?;
        if len > self.0.len() {
            return Err(RestoreError::Malformed(field));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head.to_vec())
    }
}

fn reply_code(r: Reply) -> u8 {
    match r {
        Reply::Whole => 0,
        Reply::Chained => 1,
        Reply::T1 => 2,
    }
}

impl CcidDevice {
    /// The whole device state. Fails while a card job is running.
    pub fn snapshot(&self) -> Result<Snapshot, SnapshotError> {
        let mut w = Writer(Vec::with_capacity(512));
        w.0.extend_from_slice(MAGIC);
        w.u16(SNAPSHOT_VERSION);
        w.u8(self.config.exchange_level.code());
        w.u32(self.config.max_message_len);
        w.u8(self.slots.len() as u8);
        w.u8(self.configuration);
        w.u64(self.next_job);
        match &self.assembly {
            Assembly::Idle => w.u8(0),
            Assembly::Collecting(buf) => {
                w.u8(1);
                w.bytes(buf);
            }
            Assembly::Discarding { left } => {
                w.u8(2);
                w.usize(*left);
            }
        }
        w.u16(self.out.queue.len() as u16);
        for o in &self.out.queue {
            w.bytes(&o.bytes);
            w.u8(o.time_extension.unwrap_or(0xFF));
        }
        w.usize(self.out.pos);
        w.bool(self.out.zlp);
        w.u8(self.jobs.len() as u8);
        for &j in &self.jobs {
            w.u8(j);
        }
        for (index, s) in (0u8..).zip(&self.slots) {
            w.bool(s.present);
            w.bool(s.powered);
            w.bool(s.changed);
            w.bytes(&s.atr);
            w.u8(s.params.protocol);
            w.0.extend_from_slice(&s.params.data);
            match &s.pending {
                None => w.u8(0),
                Some(p) => {
                    let JobState::Queued(command) = &p.job else {
                        return Err(SnapshotError::JobRunning { slot: index });
                    };
                    // A PIN pad entry cannot move: its template is no
                    // command to replay.
                    if p.pin.is_some() {
                        return Err(SnapshotError::JobRunning { slot: index });
                    }
                    w.u8(1);
                    w.u8(p.seq);
                    w.u8(p.command.into());
                    w.bytes(command);
                    w.u8(reply_code(p.reply));
                    w.bool(p.aborted);
                    w.u32(p.ticks);
                }
            }
            match s.abort {
                None => w.u8(0),
                Some(a) => {
                    w.u8(1);
                    w.u8(a.seq);
                    w.bool(a.control);
                    w.bool(a.bulk);
                }
            }
            w.bool(s.chain.collecting);
            w.bytes(&s.chain.command);
            w.bytes(&s.chain.response);
            w.usize(s.chain.response_pos);
            w.bool(s.t1.ns);
            w.bool(s.t1.nr);
            w.u8(s.t1.ifsd);
            w.u8(s.t1.nad);
            w.bytes(&s.t1.rx);
            w.bytes(&s.t1.tx);
            w.usize(s.t1.tx_pos);
            w.bytes(&s.t1.last);
            w.0.extend_from_slice(&s.t0_classes);
            w.u32(s.clock_khz);
            w.u32(s.data_rate);
        }
        Ok(Snapshot { bytes: w.0 })
    }

    /// A device in the state `snapshot` describes, on `readers` of `set`
    /// (the same cards, e.g. after migrating them). A slot whose card
    /// presence differs from the snapshot's reports a slot change.
    pub fn restore(
        config: DeviceConfig,
        set: &ReaderSet,
        readers: &[ReaderId],
        snapshot: &Snapshot,
    ) -> Result<CcidDevice, RestoreError> {
        let mut device = CcidDevice::new(config, set, readers).map_err(|e| match e {
            super::DeviceError::Config(c) => RestoreError::Config(c),
            super::DeviceError::Reader(r) => RestoreError::Reader(r),
        })?;
        let mut r = Reader(&snapshot.bytes);
        if r.take::<4>("magic").ok().as_ref() != Some(MAGIC) {
            return Err(RestoreError::NotASnapshot);
        }
        let version = r.u16("version")?;
        if version != SNAPSHOT_VERSION {
            return Err(RestoreError::Version(version));
        }
        let config = &device.config;
        let max_message = config.max_message_len as usize;
        if r.u8("exchange level")? != config.exchange_level.code() {
            return Err(RestoreError::Mismatch("exchange level"));
        }
        if r.u32("dwMaxCCIDMessageLength")? != config.max_message_len {
            return Err(RestoreError::Mismatch("dwMaxCCIDMessageLength"));
        }
        let slot_count = usize::from(r.u8("slot count")?);
        if slot_count != device.slots.len() {
            return Err(RestoreError::Mismatch("number of slots"));
        }
        let configuration = r.u8("configuration")?;
        if configuration > 1 {
            return Err(RestoreError::Malformed("configuration"));
        }
        let next_job = r.u64("next job")?;
        let assembly = match r.u8("assembly")? {
            0 => Assembly::Idle,
            1 => {
                let buf = r.bytes("assembly buffer", max_message + MAX_PACKET)?;
                if buf.is_empty() {
                    return Err(RestoreError::Malformed("assembly buffer"));
                }
                Assembly::Collecting(buf)
            }
            2 => Assembly::Discarding {
                left: r.usize("discard count", u32::MAX as usize)?,
            },
            _ => return Err(RestoreError::Malformed("assembly")),
        };
        let queued = usize::from(r.u16("bulk-in count")?);
        // Accepted messages, plus per slot one time extension and one
        // Abort completed by the control request.
        if queued > config.queue_depth + 2 * slot_count {
            return Err(RestoreError::Malformed("bulk-in count"));
        }
        let mut out = Outbox::default();
        for _ in 0..queued {
            let bytes = r.bytes("bulk-in message", max_message)?;
            if bytes.len() < super::wire::HEADER_LEN {
                return Err(RestoreError::Malformed("bulk-in message"));
            }
            let te = match r.u8("time-extension slot")? {
                0xFF => None,
                s if usize::from(s) < slot_count => Some(s),
                _ => return Err(RestoreError::Malformed("time-extension slot")),
            };
            out.queue.push_back(Outgoing {
                bytes,
                time_extension: te,
            });
        }
        out.pos = r.usize("bulk-in position", max_message)?;
        if out.pos > 0 && out.queue.front().is_none_or(|h| out.pos >= h.bytes.len()) {
            return Err(RestoreError::Malformed("bulk-in position"));
        }
        out.zlp = r.bool("zero-length packet")?;
        let job_count = usize::from(r.u8("job count")?);
        let mut jobs = VecDeque::new();
        for _ in 0..job_count {
            let j = r.u8("job slot")?;
            if usize::from(j) >= slot_count || jobs.contains(&j) {
                return Err(RestoreError::Malformed("job slot"));
            }
            jobs.push_back(j);
        }
        for (index, slot) in (0u8..).zip(device.slots.iter_mut()) {
            restore_slot(&mut r, slot, config)?;
            let queued_job = matches!(
                slot.pending.as_ref().map(|p| &p.job),
                Some(JobState::Queued(_))
            );
            if queued_job != jobs.contains(&index) {
                return Err(RestoreError::Malformed("job queue"));
            }
            if let Some(p) = slot.pending.as_mut() {
                p.time_extension_queued = out.queue.iter().any(|o| o.time_extension == Some(index));
            }
        }
        if !r.0.is_empty() {
            return Err(RestoreError::TrailingBytes(r.0.len()));
        }
        device.configuration = configuration;
        device.next_job = next_job;
        device.assembly = assembly;
        device.out = out;
        device.jobs = jobs;
        // The readers may have changed while the state travelled.
        for slot in &mut device.slots {
            let now = slot.reader.card_present().unwrap_or(false);
            if now != slot.present {
                slot.set_present(now);
            }
        }
        Ok(device)
    }
}

fn restore_slot(r: &mut Reader<'_>, slot: &mut Slot, config: &DeviceConfig) -> R<()> {
    slot.present = r.bool("present")?;
    slot.powered = r.bool("powered")?;
    if slot.powered && !slot.present {
        return Err(RestoreError::Malformed("powered"));
    }
    slot.changed = r.bool("changed")?;
    slot.atr = r.bytes("ATR", 33)?;
    let protocol = r.u8("protocol")?;
    if protocol > 1 {
        return Err(RestoreError::Malformed("protocol"));
    }
    slot.params = Params {
        protocol,
        data: r.take::<7>("parameters")?,
    };
    slot.pending = match r.u8("pending")? {
        0 => None,
        1 => {
            let seq = r.u8("pending bSeq")?;
            let command = Command::from(r.u8("pending bMessageType")?);
            if command != Command::XfrBlock {
                return Err(RestoreError::Malformed("pending bMessageType"));
            }
            let apdu = r.bytes("pending command", MAX_APDU)?;
            let reply = match r.u8("pending reply")? {
                0 => Reply::Whole,
                1 => Reply::Chained,
                2 => Reply::T1,
                _ => return Err(RestoreError::Malformed("pending reply")),
            };
            Some(Pending {
                seq,
                command,
                job: JobState::Queued(apdu),
                reply,
                aborted: r.bool("pending aborted")?,
                ticks: r.u32("pending ticks")?,
                time_extension_queued: false,
                pin: None,
                t1_rollback: None,
            })
        }
        _ => return Err(RestoreError::Malformed("pending")),
    };
    slot.abort = match r.u8("abort")? {
        0 => None,
        1 => Some(AbortState {
            seq: r.u8("abort bSeq")?,
            control: r.bool("abort control")?,
            bulk: r.bool("abort bulk")?,
        }),
        _ => return Err(RestoreError::Malformed("abort")),
    };
    let collecting = r.bool("chain collecting")?;
    let command = r.bytes("chain command", MAX_APDU)?;
    let response = r.bytes("chain response", MAX_RESPONSE)?;
    let response_pos = r.usize("chain position", MAX_RESPONSE)?;
    if response_pos > response.len() || (response.is_empty() && response_pos != 0) {
        return Err(RestoreError::Malformed("chain position"));
    }
    if config.exchange_level != ExchangeLevel::ExtendedApdu
        && (collecting || !command.is_empty() || !response.is_empty())
    {
        return Err(RestoreError::Malformed("chain"));
    }
    slot.chain = ApduChain {
        collecting,
        command,
        response,
        response_pos,
    };
    let t1 = T1State {
        ns: r.bool("T=1 N(S)")?,
        nr: r.bool("T=1 N(R)")?,
        ifsd: r.u8("T=1 IFSD")?,
        nad: r.u8("T=1 NAD")?,
        rx: r.bytes("T=1 rx", MAX_APDU)?,
        tx: r.bytes("T=1 tx", MAX_RESPONSE)?,
        tx_pos: r.usize("T=1 tx position", MAX_RESPONSE)?,
        last: r.bytes("T=1 last block", MAX_INF + 4)?,
    };
    if t1.ifsd == 0 || usize::from(t1.ifsd) > MAX_INF || t1.tx_pos > t1.tx.len() {
        return Err(RestoreError::Malformed("T=1 state"));
    }
    slot.t1 = t1;
    slot.t0_classes = r.take::<2>("T0APDU classes")?;
    slot.clock_khz = r.u32("clock")?;
    slot.data_rate = r.u32("data rate")?;
    if slot.clock_khz != super::CLOCK_KHZ || !super::DATA_RATES.contains(&slot.data_rate) {
        return Err(RestoreError::Malformed("clock or data rate"));
    }
    Ok(())
}
