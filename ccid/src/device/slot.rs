//! One slot: its card (through a [`vreader::ReaderHandle`]), power and
//! protocol state, the command in progress, abort pairing and chaining.
//!
//! ```text
//!            insert                PowerOn                XfrBlock
//!   Absent ─────────► Inactive ─────────────► Active ───────────────► Active + pending
//!     ▲    ◄─────────    ▲  ◄───────────────   │  ◄──────────────────   (job queued → running)
//!     │     remove       │      PowerOff       │     complete
//!     └──────────────────┴──── remove ─────────┘
//! ```

use std::collections::VecDeque;

use vreader::{ReaderError, ReaderHandle};

use super::config::{DeviceConfig, ExchangeLevel};
use super::descriptors::{CLOCK_KHZ, DATA_RATES};
use super::pinpad::{PinEntryError, PinJob, PinRequest};
use super::protocol::{check_pps, classify_t0, AtrInfo, Params, T0Tpdu};
use super::t1::{T1Action, T1State, MAX_APDU};
use super::wire::{
    self, status_byte, Command, CommandStatus, IccStatus, Packet, Response, SlotError,
    ERR_OFFSET_LENGTH, ERR_OFFSET_LEVEL_PARAMETER, ERR_OFFSET_SPECIFIC_0,
};

/// How the card's answer goes back to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// One DataBlock; longer than a message is `XFR_OVERRUN`.
    Whole,
    /// APDU-level chaining (`bChainParameter`).
    Chained,
    /// T=1 I-blocks.
    T1,
}

/// Where the card operation of the pending command is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JobState {
    /// Waiting for [`CcidDevice::poll_job`](super::CcidDevice::poll_job).
    Queued(Vec<u8>),
    /// Handed out with this ID, not completed yet.
    Running(u64),
}

/// The command a slot is busy with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) seq: u8,
    pub(crate) command: Command,
    pub(crate) job: JobState,
    pub(crate) reply: Reply,
    /// An ABORT arrived: answer `CMD_ABORTED` instead of the card's data.
    pub(crate) aborted: bool,
    /// Timer ticks seen while pending.
    pub(crate) ticks: u32,
    /// A time-extension message for it is queued and not yet read.
    pub(crate) time_extension_queued: bool,
    /// A PIN pad command (`PC_to_RDR_Secure`): the PIN goes into the
    /// command when the job runs.
    pub(crate) pin: Option<PinJob>,
    /// T=1 state before the Secure command's block, restored when no PIN
    /// came (libccid then rolls its sequence numbers back too).
    pub(crate) t1_rollback: Option<Box<T1State>>,
}

/// The two halves of an abort (class request and Bulk-OUT `72`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AbortState {
    pub(crate) seq: u8,
    pub(crate) control: bool,
    pub(crate) bulk: bool,
}

/// APDU-level chaining state (extended APDU level).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ApduChain {
    pub(crate) collecting: bool,
    pub(crate) command: Vec<u8>,
    pub(crate) response: Vec<u8>,
    pub(crate) response_pos: usize,
}

impl ApduChain {
    fn reset(&mut self) {
        *self = ApduChain::default();
    }
}

/// One slot of the reader.
pub(crate) struct Slot {
    pub(crate) reader: ReaderHandle,
    pub(crate) present: bool,
    pub(crate) powered: bool,
    /// Presence changed since the last NotifySlotChange.
    pub(crate) changed: bool,
    pub(crate) atr: Vec<u8>,
    pub(crate) params: Params,
    pub(crate) pending: Option<Pending>,
    pub(crate) abort: Option<AbortState>,
    pub(crate) chain: ApduChain,
    pub(crate) t1: T1State,
    /// T0APDU's `bClassGetResponse` and `bClassEnvelope`.
    pub(crate) t0_classes: [u8; 2],
    pub(crate) clock_khz: u32,
    pub(crate) data_rate: u32,
}

/// What a slot needs from the device while it handles a message.
pub(crate) struct Ctx<'a> {
    pub(crate) config: &'a DeviceConfig,
    pub(crate) out: &'a mut super::Outbox,
    pub(crate) jobs: &'a mut VecDeque<u8>,
    pub(crate) index: u8,
}

/// Payload of a response, by kind.
enum Body<'a> {
    /// DataBlock / Escape data, with `bChainParameter`.
    Data(&'a [u8], u8),
    /// Whatever the response type carries by default.
    Default,
}

impl Slot {
    pub(crate) fn new(reader: ReaderHandle, present: bool) -> Slot {
        Slot {
            reader,
            present,
            powered: false,
            changed: present,
            atr: Vec::new(),
            params: Params::default_t0(),
            pending: None,
            abort: None,
            chain: ApduChain::default(),
            t1: T1State::default(),
            t0_classes: [0xFF, 0xFF],
            clock_khz: CLOCK_KHZ,
            data_rate: DATA_RATES[0],
        }
    }

    pub(crate) fn icc(&self) -> IccStatus {
        match (self.present, self.powered) {
            (false, _) => IccStatus::Absent,
            (true, false) => IccStatus::Inactive,
            (true, true) => IccStatus::Active,
        }
    }

    fn send(
        &self,
        ctx: &mut Ctx<'_>,
        command: Command,
        seq: u8,
        status: CommandStatus,
        error: u8,
        body: Body<'_>,
    ) {
        let response = command.response();
        let status = status_byte(self.icc(), status);
        let mut msg = Vec::new();
        match (response, body) {
            (Response::Parameters, _) => wire::emit(
                &mut msg,
                response.into(),
                ctx.index,
                seq,
                [status, error, self.params.protocol],
                self.params.bytes(),
            ),
            (Response::DataRateAndClockFrequency, _) => {
                let mut data = [0u8; 8];
                data[..4].copy_from_slice(&self.clock_khz.to_le_bytes());
                data[4..].copy_from_slice(&self.data_rate.to_le_bytes());
                wire::emit(
                    &mut msg,
                    response.into(),
                    ctx.index,
                    seq,
                    [status, error, 0],
                    &data,
                );
            }
            (Response::DataBlock | Response::Escape, Body::Data(data, chain)) => wire::emit(
                &mut msg,
                response.into(),
                ctx.index,
                seq,
                [status, error, chain],
                data,
            ),
            // SlotStatus: bClockStatus 00 (running); others: no data.
            (_, _) => wire::emit(
                &mut msg,
                response.into(),
                ctx.index,
                seq,
                [status, error, 0],
                &[],
            ),
        }
        ctx.out.push(msg, None);
    }

    fn ok(&self, ctx: &mut Ctx<'_>, command: Command, seq: u8, body: Body<'_>) {
        self.send(ctx, command, seq, CommandStatus::Ok, 0, body);
    }

    fn fail(&self, ctx: &mut Ctx<'_>, command: Command, seq: u8, error: SlotError) {
        self.send(
            ctx,
            command,
            seq,
            CommandStatus::Failed,
            error.into(),
            Body::Default,
        );
    }

    fn reset_transfer_state(&mut self) {
        self.chain.reset();
        self.t1 = T1State::default();
    }

    /// The card went away (or came back): everything about the old power
    /// cycle is void.
    pub(crate) fn set_present(&mut self, present: bool) {
        if self.present != present {
            self.changed = true;
        }
        self.present = present;
        self.powered = false;
        self.atr.clear();
        self.params = Params::default_t0();
        self.reset_transfer_state();
    }

    /// Handles one well-formed message (its length already checked).
    pub(crate) fn handle(&mut self, ctx: &mut Ctx<'_>, p: &Packet<&[u8]>) {
        let command = Command::from(p.message_type());
        let seq = p.seq();
        let zero_length = matches!(
            command,
            Command::IccPowerOn
                | Command::IccPowerOff
                | Command::GetSlotStatus
                | Command::GetParameters
                | Command::ResetParameters
                | Command::IccClock
                | Command::T0Apdu
                | Command::Mechanical
                | Command::Abort
        );
        if zero_length && p.length() != 0 {
            return self.fail(ctx, command, seq, SlotError::bad_field(ERR_OFFSET_LENGTH));
        }
        if command == Command::Abort {
            return self.bulk_abort(ctx, seq);
        }
        if self.abort.is_some_and(|a| a.control) {
            return self.fail(ctx, command, seq, SlotError::CmdAborted);
        }
        if self.pending.is_some() {
            return self.fail(ctx, command, seq, SlotError::CmdSlotBusy);
        }
        let [b7, b8, b9] = p.specific();
        match command {
            Command::IccPowerOn => self.power_on(ctx, seq, b7),
            Command::IccPowerOff => {
                if self.present {
                    // A reader removed meanwhile has nothing to power off.
                    let _ = self.reader.power_off();
                }
                self.powered = false;
                self.reset_transfer_state();
                self.ok(ctx, command, seq, Body::Default);
            }
            Command::GetSlotStatus => {
                if self.present {
                    self.ok(ctx, command, seq, Body::Default);
                } else {
                    self.fail(ctx, command, seq, SlotError::IccMute);
                }
            }
            Command::XfrBlock => {
                self.xfr_block(ctx, seq, u16::from_le_bytes([b8, b9]), p.payload())
            }
            Command::GetParameters => {
                if self.present {
                    self.ok(ctx, command, seq, Body::Default);
                } else {
                    self.fail(ctx, command, seq, SlotError::IccMute);
                }
            }
            Command::ResetParameters => {
                if self.present {
                    let info = AtrInfo::parse(&self.atr);
                    self.params = Params::from_atr(&info, info.default_protocol(), None);
                    self.t1 = T1State::default();
                    self.ok(ctx, command, seq, Body::Default);
                } else {
                    self.fail(ctx, command, seq, SlotError::IccMute);
                }
            }
            Command::SetParameters => self.set_parameters(ctx, seq, b7, p.payload()),
            Command::Escape => self.escape(ctx, seq, p.payload()),
            Command::IccClock => match b7 {
                0x00 => self.ok(ctx, command, seq, Body::Default),
                // Stopping the clock is not offered (dwFeatures 100 unset).
                _ => self.fail(
                    ctx,
                    command,
                    seq,
                    SlotError::bad_field(ERR_OFFSET_SPECIFIC_0),
                ),
            },
            Command::T0Apdu => {
                if ctx.config.exchange_level == ExchangeLevel::Tpdu {
                    self.fail(ctx, command, seq, SlotError::CommandNotSupported);
                } else {
                    if b7 & 0x01 != 0 {
                        self.t0_classes[0] = b8;
                    }
                    if b7 & 0x02 != 0 {
                        self.t0_classes[1] = b9;
                    }
                    self.ok(ctx, command, seq, Body::Default);
                }
            }
            Command::SetDataRateAndClockFrequency => self.set_rate(ctx, seq, p.payload()),
            Command::Secure if ctx.config.pinpad.is_some() => {
                self.secure(ctx, seq, u16::from_le_bytes([b8, b9]), p.payload())
            }
            // No mechanics; anything else is unknown.
            Command::Secure | Command::Mechanical | Command::Abort | Command::Unknown(_) => {
                self.fail(ctx, command, seq, SlotError::CommandNotSupported)
            }
        }
    }

    fn power_on(&mut self, ctx: &mut Ctx<'_>, seq: u8, power_select: u8) {
        let command = Command::IccPowerOn;
        if power_select > 0x03 {
            return self.fail(
                ctx,
                command,
                seq,
                SlotError::bad_field(ERR_OFFSET_SPECIFIC_0),
            );
        }
        if !self.present {
            return self.fail(ctx, command, seq, SlotError::IccMute);
        }
        match self.reader.power_on() {
            Ok(atr) => {
                let info = AtrInfo::parse(&atr);
                self.atr = atr;
                self.powered = true;
                self.params = Params::from_atr(&info, info.default_protocol(), None);
                self.reset_transfer_state();
                let atr = self.atr.clone();
                self.ok(ctx, command, seq, Body::Data(&atr, 0));
            }
            Err(e) => {
                log::debug!("slot {}: power on: {e}", ctx.index);
                self.set_present(false);
                self.fail(ctx, command, seq, SlotError::IccMute);
            }
        }
    }

    fn set_parameters(&mut self, ctx: &mut Ctx<'_>, seq: u8, protocol: u8, data: &[u8]) {
        let command = Command::SetParameters;
        if protocol > 1 {
            return self.fail(
                ctx,
                command,
                seq,
                SlotError::bad_field(ERR_OFFSET_SPECIFIC_0),
            );
        }
        if !self.present {
            return self.fail(ctx, command, seq, SlotError::IccMute);
        }
        if self.powered && !AtrInfo::parse(&self.atr).offers(protocol) {
            return self.fail(ctx, command, seq, SlotError::IccProtocolNotSupported);
        }
        match Params::set(protocol, data) {
            Ok(params) => {
                if params.protocol != self.params.protocol {
                    self.t1 = T1State::default();
                }
                self.params = params;
                self.ok(ctx, command, seq, Body::Default);
            }
            Err(e) => self.fail(ctx, command, seq, e),
        }
    }

    fn set_rate(&mut self, ctx: &mut Ctx<'_>, seq: u8, data: &[u8]) {
        let command = Command::SetDataRateAndClockFrequency;
        let Some((clock, rate)) = data
            .split_first_chunk::<4>()
            .and_then(|(c, rest)| Some((c, rest.first_chunk::<4>()?)))
            .filter(|_| data.len() == 8)
        else {
            return self.fail(ctx, command, seq, SlotError::bad_field(ERR_OFFSET_LENGTH));
        };
        let clock = u32::from_le_bytes(*clock);
        let rate = u32::from_le_bytes(*rate);
        if clock != CLOCK_KHZ {
            return self.fail(ctx, command, seq, SlotError::bad_field(10));
        }
        if !DATA_RATES.contains(&rate) {
            return self.fail(ctx, command, seq, SlotError::bad_field(14));
        }
        self.clock_khz = clock;
        self.data_rate = rate;
        self.ok(ctx, command, seq, Body::Default);
    }

    fn escape(&mut self, ctx: &mut Ctx<'_>, seq: u8, data: &[u8]) {
        let command = Command::Escape;
        match data {
            // Gemalto "get firmware version" (libccid's serial open).
            [0x02] => {
                let fw = ctx.config.firmware.clone();
                self.ok(ctx, command, seq, Body::Data(fw.as_bytes(), 0));
            }
            // Gemalto "card movement notification: synchronous"; and the
            // probe libccid sends a SEC1210.
            [0x01, 0x01, 0x01] | [0x06] => self.ok(ctx, command, seq, Body::Data(&[], 0)),
            // Gemalto "load strings" into a PIN pad's display memory
            // (libccid's GemPC PinPad open): a virtual pad has no display.
            [0xB2, 0xA0, ..] if ctx.config.pinpad.is_some() => {
                self.ok(ctx, command, seq, Body::Data(&[], 0))
            }
            _ => self.fail(ctx, command, seq, SlotError::CommandNotSupported),
        }
    }

    fn xfr_block(&mut self, ctx: &mut Ctx<'_>, seq: u8, level: u16, data: &[u8]) {
        let command = Command::XfrBlock;
        if !self.present || !self.powered {
            return self.fail(ctx, command, seq, SlotError::IccMute);
        }
        match ctx.config.exchange_level {
            ExchangeLevel::Tpdu => self.tpdu(ctx, seq, data),
            ExchangeLevel::ShortApdu => {
                if level != 0 {
                    return self.fail(
                        ctx,
                        command,
                        seq,
                        SlotError::bad_field(ERR_OFFSET_LEVEL_PARAMETER),
                    );
                }
                self.queue(ctx, seq, data.to_vec(), Reply::Whole);
            }
            ExchangeLevel::ExtendedApdu => self.extended(ctx, seq, level, data),
        }
    }

    fn tpdu(&mut self, ctx: &mut Ctx<'_>, seq: u8, data: &[u8]) {
        let command = Command::XfrBlock;
        if data.first() == Some(&0xFF) {
            // A PPS request (NAD FF is invalid in T=1, so no ambiguity).
            let info = AtrInfo::parse(&self.atr);
            return match check_pps(data, &info) {
                Some((t, pps1)) => {
                    self.params = Params::from_atr(&info, t, Some(pps1.unwrap_or(0x11)));
                    self.t1 = T1State::default();
                    self.ok(ctx, command, seq, Body::Data(data, 0));
                }
                None => self.fail(ctx, command, seq, SlotError::IccMute),
            };
        }
        if self.params.protocol == 1 {
            match self.t1.receive(data) {
                T1Action::Reply(block) => self.ok(ctx, command, seq, Body::Data(&block, 0)),
                T1Action::Apdu(apdu) => self.queue(ctx, seq, apdu, Reply::T1),
            }
            return;
        }
        match classify_t0(data) {
            Ok(T0Tpdu::Command(apdu)) => self.queue(ctx, seq, apdu.to_vec(), Reply::Whole),
            Ok(T0Tpdu::Pps(_)) => self.fail(ctx, command, seq, SlotError::IccMute),
            Err(e) => self.fail(ctx, command, seq, e),
        }
    }

    fn extended(&mut self, ctx: &mut Ctx<'_>, seq: u8, level: u16, data: &[u8]) {
        let command = Command::XfrBlock;
        let bad_level = SlotError::bad_field(ERR_OFFSET_LEVEL_PARAMETER);
        match level {
            0x0000 => {
                self.chain.reset();
                self.queue(ctx, seq, data.to_vec(), Reply::Chained);
            }
            0x0001 => {
                self.chain.reset();
                self.chain.collecting = true;
                self.chain.command.extend_from_slice(data);
                self.ok(ctx, command, seq, Body::Data(&[], 0x10));
            }
            0x0002 | 0x0003 if self.chain.collecting => {
                if self.chain.command.len() + data.len() > MAX_APDU {
                    self.chain.reset();
                    return self.fail(ctx, command, seq, SlotError::XfrOverrun);
                }
                self.chain.command.extend_from_slice(data);
                if level == 0x0003 {
                    self.ok(ctx, command, seq, Body::Data(&[], 0x10));
                } else {
                    let apdu = core::mem::take(&mut self.chain.command);
                    self.chain.collecting = false;
                    self.queue(ctx, seq, apdu, Reply::Chained);
                }
            }
            0x0010 if self.chain.response_pos < self.chain.response.len() => {
                self.send_chunk(ctx, seq);
            }
            _ => {
                self.chain.reset();
                self.fail(ctx, command, seq, bad_level);
            }
        }
    }

    fn send_chunk(&mut self, ctx: &mut Ctx<'_>, seq: u8) {
        let max = ctx.config.max_data();
        let pos = self.chain.response_pos;
        let rest = self.chain.response.get(pos..).unwrap_or_default();
        let n = rest.len().min(max);
        let more = rest.len() > n;
        let chain = match (pos == 0, more) {
            (true, false) => 0x00,
            (true, true) => 0x01,
            (false, true) => 0x03,
            (false, false) => 0x02,
        };
        let chunk = rest.get(..n).unwrap_or_default().to_vec();
        self.chain.response_pos += n;
        if !more {
            self.chain.response.clear();
            self.chain.response_pos = 0;
        }
        self.ok(ctx, Command::XfrBlock, seq, Body::Data(&chunk, chain));
    }

    fn queue(&mut self, ctx: &mut Ctx<'_>, seq: u8, apdu: Vec<u8>, reply: Reply) {
        self.pending = Some(Pending {
            seq,
            command: Command::XfrBlock,
            job: JobState::Queued(apdu),
            reply,
            aborted: false,
            ticks: 0,
            time_extension_queued: false,
            pin: None,
            t1_rollback: None,
        });
        ctx.jobs.push_back(ctx.index);
    }

    /// `PC_to_RDR_Secure`: the PIN pad. The template APDU becomes a card
    /// job whose PIN is asked for when it runs.
    fn secure(&mut self, ctx: &mut Ctx<'_>, seq: u8, level: u16, data: &[u8]) {
        let command = Command::Secure;
        let Some(pad) = ctx.config.pinpad.clone() else {
            return self.fail(ctx, command, seq, SlotError::CommandNotSupported);
        };
        if !self.present || !self.powered {
            return self.fail(ctx, command, seq, SlotError::IccMute);
        }
        if level != 0 {
            return self.fail(
                ctx,
                command,
                seq,
                SlotError::bad_field(ERR_OFFSET_LEVEL_PARAMETER),
            );
        }
        let request = match PinRequest::parse(data) {
            Ok(r) => r,
            Err(e) => return self.fail(ctx, command, seq, SlotError::bad_field(e.0)),
        };
        let mut rollback = None;
        let reply = if ctx.config.exchange_level == ExchangeLevel::Tpdu && self.params.protocol == 1
        {
            // The host framed the command as a T=1 I-block (prologue in
            // bTeoPrologue): let the block state machine take it.
            let mut block = request.prologue.to_vec();
            block.extend_from_slice(&request.template);
            let lrc = block.iter().fold(0u8, |a, b| a ^ b);
            block.push(lrc);
            rollback = Some(Box::new(self.t1.clone()));
            match self.t1.receive(&block) {
                T1Action::Apdu(_) => Reply::T1,
                T1Action::Reply(b) => return self.ok(ctx, command, seq, Body::Data(&b, 0)),
            }
        } else {
            Reply::Whole
        };
        let template = request.template.clone();
        self.pending = Some(Pending {
            seq,
            command,
            job: JobState::Queued(template),
            reply,
            aborted: false,
            ticks: 0,
            time_extension_queued: false,
            pin: Some(PinJob {
                pad,
                request,
                slot: ctx.index,
                outcome: Default::default(),
            }),
            t1_rollback: rollback,
        });
        ctx.jobs.push_back(ctx.index);
    }

    /// The PIN job of the pending command, if it is one.
    pub(crate) fn pin_job(&self) -> Option<PinJob> {
        self.pending.as_ref().and_then(|p| p.pin.clone())
    }

    /// Moves the queued job to running under `id`; its command bytes.
    pub(crate) fn start_job(&mut self, id: u64) -> Option<(u8, Vec<u8>)> {
        let pending = self.pending.as_mut()?;
        match core::mem::replace(&mut pending.job, JobState::Running(id)) {
            JobState::Queued(apdu) => Some((pending.seq, apdu)),
            running @ JobState::Running(_) => {
                pending.job = running;
                None
            }
        }
    }

    /// The card operation `id` finished. `false` when no such job runs.
    pub(crate) fn complete(
        &mut self,
        ctx: &mut Ctx<'_>,
        id: u64,
        result: Result<Vec<u8>, ReaderError>,
    ) -> bool {
        let Some(pending) = self.pending.take_if(|p| p.job == JobState::Running(id)) else {
            return false;
        };
        let (command, seq) = (pending.command, pending.seq);
        let pin_failure = pending.pin.as_ref().and_then(PinJob::take_outcome);
        if let Some(e) = pin_failure.filter(|_| !pending.aborted) {
            if let Some(t1) = pending.t1_rollback {
                self.t1 = *t1;
            }
            let error = match e {
                PinEntryError::Cancelled => SlotError::PinCancelled,
                PinEntryError::Timeout => SlotError::PinTimeout,
            };
            self.fail(ctx, command, seq, error);
            self.finish_abort(ctx);
            return true;
        }
        if pending.aborted {
            self.fail(ctx, command, seq, SlotError::CmdAborted);
            self.finish_abort(ctx);
            return true;
        }
        match result {
            Ok(response) => match pending.reply {
                Reply::Whole if response.len() > ctx.config.max_data() => {
                    self.fail(ctx, command, seq, SlotError::XfrOverrun);
                }
                Reply::Whole => self.ok(ctx, command, seq, Body::Data(&response, 0)),
                Reply::Chained => {
                    self.chain.response = response;
                    self.chain.response_pos = 0;
                    self.send_chunk(ctx, seq);
                }
                Reply::T1 => {
                    let block = self.t1.respond(response);
                    self.ok(ctx, command, seq, Body::Data(&block, 0));
                }
            },
            Err(e) => {
                log::debug!("slot {}: transmit: {e}", ctx.index);
                match e {
                    ReaderError::NotPowered(_) => {
                        self.powered = false;
                        self.reset_transfer_state();
                    }
                    _ => self.set_present(false),
                }
                self.fail(ctx, command, seq, SlotError::IccMute);
            }
        }
        self.finish_abort(ctx);
        true
    }

    /// Timer input: a command pending for a whole tick gets a
    /// time-extension message (one queued at a time).
    pub(crate) fn tick(&mut self, ctx: &mut Ctx<'_>) {
        let icc = self.icc();
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        if p.ticks >= 1 && !p.time_extension_queued && !p.aborted {
            let mut msg = Vec::new();
            wire::emit(
                &mut msg,
                p.command.response().into(),
                ctx.index,
                p.seq,
                [status_byte(icc, CommandStatus::TimeExtension), 0x01, 0x00],
                &[],
            );
            ctx.out.push(msg, Some(ctx.index));
            p.time_extension_queued = true;
        }
        p.ticks = p.ticks.saturating_add(1);
    }

    /// The class-specific ABORT request for `seq`.
    pub(crate) fn control_abort(&mut self, ctx: &mut Ctx<'_>, seq: u8) {
        match &mut self.abort {
            Some(a) if a.bulk && a.seq == seq => a.control = true,
            other => {
                *other = Some(AbortState {
                    seq,
                    control: true,
                    bulk: false,
                })
            }
        }
        self.chain.reset();
        if let Some(p) = self.pending.as_mut() {
            if matches!(p.job, JobState::Queued(_)) {
                let (command, seq) = (p.command, p.seq);
                self.pending = None;
                let index = ctx.index;
                ctx.jobs.retain(|&i| i != index);
                self.fail(ctx, command, seq, SlotError::CmdAborted);
            } else {
                // The card is busy; its answer is replaced when it comes.
                p.aborted = true;
            }
        }
        self.finish_abort(ctx);
    }

    fn bulk_abort(&mut self, ctx: &mut Ctx<'_>, seq: u8) {
        match &mut self.abort {
            Some(a) if a.control && a.seq != seq => {
                // Not the pair of the control request.
                return self.fail(ctx, Command::Abort, seq, SlotError::bad_field(6));
            }
            Some(a) => {
                a.seq = seq;
                a.bulk = true;
            }
            None => {
                self.abort = Some(AbortState {
                    seq,
                    control: false,
                    bulk: true,
                })
            }
        }
        self.finish_abort(ctx);
    }

    /// Both halves arrived and nothing is in progress: answer the Abort.
    fn finish_abort(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(a) = self.abort {
            if a.control && a.bulk && self.pending.is_none() {
                self.abort = None;
                self.ok(ctx, Command::Abort, a.seq, Body::Default);
            }
        }
    }
}
