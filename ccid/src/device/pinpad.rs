//! The virtual PIN pad: `PC_to_RDR_Secure` (CCID §6.1.11) builds the
//! VERIFY or CHANGE REFERENCE DATA APDU the host sent as a template,
//! inserting a PIN from a [`PinSource`] in the format the request gives.
//!
//! ```text
//!  abData: bPINOperation 00 (verify) | 01 (modify), then
//!   verify: bTimeOut bmFormatString bmPINBlockString bmPINLengthFormat
//!           wPINMaxExtraDigit bEntryValidationCondition bNumberMessage
//!           wLangId bMsgIndex bTeoPrologue[3] abPINApdu
//!   modify: bTimeOut bmFormatString bmPINBlockString bmPINLengthFormat
//!           bInsertionOffsetOld bInsertionOffsetNew wPINMaxExtraDigit
//!           bConfirmPIN bEntryValidationCondition bNumberMessage wLangId
//!           bMsgIndex1 [bMsgIndex2 [bMsgIndex3]] bTeoPrologue[3] abPINApdu
//! ```
//!
//! A PIN source that reports the user cancelled is answered `bError` EF
//! (PIN cancelled), one that timed out `F0` (PIN timeout): libccid turns
//! them into SW `64 01` / `64 00`, which OpenSC reports as a cancelled or
//! timed-out PIN pad entry.

use core::fmt;
use std::sync::{Arc, Mutex};

/// What the PIN pad asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinOperation {
    /// PIN verification: one PIN.
    Verify,
    /// PIN modification: the current PIN (when the command asks for it)
    /// and a new one.
    Modify,
}

/// What the user typed.
#[derive(Clone, PartialEq, Eq)]
pub struct PinEntry {
    /// The PIN (verify) or the current PIN (modify).
    pub pin: String,
    /// The new PIN (modify only).
    pub new_pin: Option<String>,
}

impl fmt::Debug for PinEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinEntry(..)")
    }
}

/// Why no PIN came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinEntryError {
    /// The user cancelled: `bError` EF.
    Cancelled,
    /// The user typed nothing in time: `bError` F0.
    Timeout,
}

impl fmt::Display for PinEntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinEntryError::Cancelled => f.write_str("PIN entry cancelled"),
            PinEntryError::Timeout => f.write_str("PIN entry timed out"),
        }
    }
}

impl std::error::Error for PinEntryError {}

/// Where the PIN pad's PINs come from. Called from
/// [`CardJob::run`](super::CardJob::run), so it may block (a prompt).
pub trait PinSource: Send + Sync {
    /// A PIN for `slot`. `timeout_s` is the command's `bTimeOut` (0: the
    /// reader's default).
    fn pin(
        &self,
        slot: u8,
        operation: PinOperation,
        timeout_s: u8,
    ) -> Result<PinEntry, PinEntryError>;
}

/// The PIN pad of a [`DeviceConfig`](super::DeviceConfig): a shared
/// [`PinSource`]. Two are equal when they share the source.
#[derive(Clone)]
pub struct PinPad(pub Arc<dyn PinSource>);

impl PinPad {
    /// A PIN pad around `source`.
    pub fn new(source: impl PinSource + 'static) -> PinPad {
        PinPad(Arc::new(source))
    }
}

impl fmt::Debug for PinPad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinPad(..)")
    }
}

impl PartialEq for PinPad {
    fn eq(&self, other: &PinPad) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PinPad {}

/// Types each slot's configured PIN (the card's own): modification keeps
/// the PIN (new = current).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedPins(pub Vec<String>);

impl PinSource for FixedPins {
    fn pin(&self, slot: u8, operation: PinOperation, _: u8) -> Result<PinEntry, PinEntryError> {
        let pin = self
            .0
            .get(usize::from(slot))
            .cloned()
            .ok_or(PinEntryError::Cancelled)?;
        Ok(PinEntry {
            new_pin: (operation == PinOperation::Modify).then(|| pin.clone()),
            pin,
        })
    }
}

/// A user who presses Cancel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deny;

impl PinSource for Deny {
    fn pin(&self, _: u8, _: PinOperation, _: u8) -> Result<PinEntry, PinEntryError> {
        Err(PinEntryError::Cancelled)
    }
}

/// A user who types nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoEntry;

impl PinSource for NoEntry {
    fn pin(&self, _: u8, _: PinOperation, _: u8) -> Result<PinEntry, PinEntryError> {
        Err(PinEntryError::Timeout)
    }
}

/// Why a Secure request cannot be carried out: the offset (in the CCID
/// message) of the field at fault, for `bError`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BadField(pub(crate) u8);

/// Message offsets (header 10 bytes, then bPINOperation at 10).
const OFF_OPERATION: u8 = 10;
const OFF_FORMAT: u8 = 12;
const OFF_BLOCK: u8 = 13;
const OFF_LENGTH_FORMAT: u8 = 14;

/// A parsed Secure request: how to put PINs into the template APDU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PinRequest {
    pub(crate) operation: PinOperation,
    pub(crate) timeout_s: u8,
    format: u8,
    block: u8,
    length_format: u8,
    /// Where each PIN block starts in the APDU data (units of
    /// `bmFormatString` bit 7): verify one, modify current and new.
    offset_old: u8,
    offset_new: u8,
    /// Modify: the current PIN is entered (bConfirmPIN bit 1).
    with_old: bool,
    min: u8,
    max: u8,
    /// T=1 block prologue (NAD PCB LEN) for a TPDU-level reader.
    pub(crate) prologue: [u8; 3],
    /// The APDU with room for the PIN(s).
    pub(crate) template: Vec<u8>,
}

fn short_apdu_ok(apdu: &[u8]) -> bool {
    match apdu {
        [_, _, _, _] => true,
        [_, _, _, _, lc, data @ ..] => {
            let lc = usize::from(*lc);
            lc > 0 && (data.len() == lc || data.len() == lc + 1)
        }
        _ => false,
    }
}

impl PinRequest {
    /// Parses `abData` of a Secure message (bPINOperation first).
    pub(crate) fn parse(data: &[u8]) -> Result<PinRequest, BadField> {
        let (&operation, rest) = data.split_first().ok_or(BadField(1))?;
        match operation {
            0x00 => {
                let [timeout_s, format, block, length_format, max, min, _cond, _n, _l0, _l1, _msg, p0, p1, p2, apdu @ ..] =
                    rest
                else {
                    return Err(BadField(1));
                };
                if !short_apdu_ok(apdu) {
                    return Err(BadField(1));
                }
                let position = (format >> 3) & 0x0F;
                Ok(PinRequest {
                    operation: PinOperation::Verify,
                    timeout_s: *timeout_s,
                    format: *format,
                    block: *block,
                    length_format: *length_format,
                    offset_old: position,
                    offset_new: position,
                    with_old: true,
                    min: *min,
                    max: *max,
                    prologue: [*p0, *p1, *p2],
                    template: apdu.to_vec(),
                })
            }
            0x01 => {
                let [timeout_s, format, block, length_format, off_old, off_new, max, min, confirm, _cond, n, _l0, _l1, tail @ ..] =
                    rest
                else {
                    return Err(BadField(1));
                };
                // bMsgIndex1..3: as many as bNumberMessage says, or all
                // three (libccid always sends three to Gemalto readers).
                let spec = match n {
                    0 | 1 => 1,
                    2 => 2,
                    _ => 3,
                };
                let layouts = [spec, 3, 1, 2];
                let (prologue, apdu) = layouts
                    .iter()
                    .find_map(|&k| {
                        let after = tail.get(k..)?;
                        let (p, apdu) = after.split_first_chunk::<3>()?;
                        short_apdu_ok(apdu).then_some((*p, apdu))
                    })
                    .ok_or(BadField(1))?;
                Ok(PinRequest {
                    operation: PinOperation::Modify,
                    timeout_s: *timeout_s,
                    format: *format,
                    block: *block,
                    length_format: *length_format,
                    offset_old: *off_old,
                    offset_new: *off_new,
                    with_old: confirm & 0x02 != 0,
                    min: *min,
                    max: *max,
                    prologue,
                    template: apdu.to_vec(),
                })
            }
            _ => Err(BadField(OFF_OPERATION)),
        }
    }

    /// The APDU with `entry` inserted.
    pub(crate) fn build(&self, entry: &PinEntry) -> Result<Vec<u8>, BadField> {
        let mut apdu = self.template.clone();
        let Some(data) = apdu.get_mut(5..) else {
            return Err(BadField(OFF_BLOCK));
        };
        let lc = usize::from(self.template.get(4).copied().unwrap_or(0));
        let data_len = lc.min(data.len());
        let data = data.get_mut(..data_len).unwrap_or_default();
        match self.operation {
            PinOperation::Verify => self.insert(data, self.offset_old, &entry.pin)?,
            PinOperation::Modify => {
                if self.with_old {
                    self.insert(data, self.offset_old, &entry.pin)?;
                }
                let new = entry.new_pin.as_deref().ok_or(BadField(OFF_OPERATION))?;
                self.insert(data, self.offset_new, new)?;
            }
        }
        Ok(apdu)
    }

    /// Writes one PIN block at `offset` (units of bmFormatString bit 7)
    /// into the APDU data.
    fn insert(&self, data: &mut [u8], offset: u8, pin: &str) -> Result<(), BadField> {
        let unit_bits = if self.format & 0x80 != 0 { 8 } else { 1 };
        let start = usize::from(offset) * unit_bits;
        let digits = pin.len();
        if self.max != 0 && (digits < usize::from(self.min) || digits > usize::from(self.max)) {
            return Err(BadField(OFF_FORMAT));
        }
        // Each character: binary and BCD digits, ASCII bytes.
        let (width, values): (usize, Vec<u8>) = match self.format & 0x03 {
            0x00 | 0x01 => {
                let width = if self.format & 0x03 == 0x01 { 4 } else { 8 };
                let v = pin
                    .bytes()
                    .map(|c| c.is_ascii_digit().then(|| c - b'0'))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or(BadField(OFF_FORMAT))?;
                (width, v)
            }
            0x02 => (8, pin.bytes().collect()),
            _ => return Err(BadField(OFF_FORMAT)),
        };
        let block_bytes = usize::from(self.block & 0x0F);
        let pin_bits = width * values.len();
        let block_bits = if block_bytes == 0 {
            pin_bits
        } else {
            8 * block_bytes
        };
        if pin_bits > block_bits {
            return Err(BadField(OFF_BLOCK));
        }
        // Right justification puts the PIN at the end of the block.
        let first = if self.format & 0x04 != 0 {
            start + block_bits - pin_bits
        } else {
            start
        };
        for (i, v) in values.iter().enumerate() {
            put_bits(data, first + i * width, width, u32::from(*v)).ok_or(BadField(OFF_BLOCK))?;
        }
        let length_bits = usize::from(self.block >> 4);
        if length_bits > 0 {
            let unit = if self.length_format & 0x10 != 0 { 8 } else { 1 };
            // Verify: from the start of the APDU data; modify: from the
            // start of each PIN's block.
            let base = match self.operation {
                PinOperation::Verify => 0,
                PinOperation::Modify => start,
            };
            let at = base + usize::from(self.length_format & 0x0F) * unit;
            put_bits(data, at, length_bits, digits as u32).ok_or(BadField(OFF_LENGTH_FORMAT))?;
        }
        Ok(())
    }
}

/// Writes the low `width` bits of `value` at bit `at` (MSB first).
fn put_bits(data: &mut [u8], at: usize, width: usize, value: u32) -> Option<()> {
    if width > 32 || at + width > data.len() * 8 {
        return None;
    }
    for i in 0..width {
        let bit = (value >> (width - 1 - i)) & 1;
        let pos = at + i;
        let byte = data.get_mut(pos / 8)?;
        let mask = 0x80u8 >> (pos % 8);
        if bit == 1 {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
    Some(())
}

/// A Secure job's PIN work: runs where the card job runs, and leaves a
/// PIN entry failure where the slot finds it on completion.
#[derive(Clone)]
pub(crate) struct PinJob {
    pub(crate) pad: PinPad,
    pub(crate) request: PinRequest,
    pub(crate) slot: u8,
    pub(crate) outcome: Arc<Mutex<Option<PinEntryError>>>,
}

impl fmt::Debug for PinJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinJob")
            .field("slot", &self.slot)
            .field("operation", &self.request.operation)
            .finish()
    }
}

impl PartialEq for PinJob {
    fn eq(&self, other: &PinJob) -> bool {
        Arc::ptr_eq(&self.outcome, &other.outcome)
    }
}

impl Eq for PinJob {}

impl PinJob {
    /// Asks for the PIN and builds the APDU; `None` (outcome recorded)
    /// when no PIN came or it does not fit.
    pub(crate) fn apdu(&self) -> Option<Vec<u8>> {
        let r = &self.request;
        let entry = self.pad.0.pin(self.slot, r.operation, r.timeout_s);
        let result = entry.and_then(|e| r.build(&e).map_err(|_| PinEntryError::Cancelled));
        match result {
            Ok(apdu) => Some(apdu),
            Err(e) => {
                if let Ok(mut o) = self.outcome.lock() {
                    *o = Some(e);
                }
                None
            }
        }
    }

    /// The failure [`PinJob::apdu`] recorded, if any.
    pub(crate) fn take_outcome(&self) -> Option<PinEntryError> {
        self.outcome.lock().ok().and_then(|mut o| o.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    /// What OpenSC's CAC driver and libccid send for VERIFY: ASCII, byte
    /// units, left justified, 8-byte block, no length field, min 4 max 8,
    /// template `00 20 00 80 08 FF×8`.
    const VERIFY: [u8; 28] =
        hex!("00 00 82 08 00 08 04 02 01 0904 00 000000 00 20 00 80 08 FFFFFFFFFFFFFFFF");

    #[test]
    fn verify_ascii_block() {
        let r = PinRequest::parse(&VERIFY).unwrap();
        assert_eq!(r.operation, PinOperation::Verify);
        assert_eq!((r.min, r.max), (4, 8));
        let apdu = r
            .build(&PinEntry {
                pin: "123456".into(),
                new_pin: None,
            })
            .unwrap();
        assert_eq!(apdu, hex!("00 20 00 80 08 313233343536FFFF"));
        // Too long for bPINMaxExtraDigit.
        assert_eq!(
            r.build(&PinEntry {
                pin: "123456789".into(),
                new_pin: None
            }),
            Err(BadField(OFF_FORMAT))
        );
    }

    #[test]
    fn verify_iso9564_format2() {
        // BCD, byte units, PIN at byte 1, left; 4-bit length at bit 4;
        // 8-byte block: `2N PP PP .. FF`.
        let mut req =
            hex!("00 00 89 47 04 0C 04 02 01 0904 00 000000 00 20 00 81 08 2FFFFFFFFFFFFFFF")
                .to_vec();
        let r = PinRequest::parse(&req).unwrap();
        let apdu = r
            .build(&PinEntry {
                pin: "1234".into(),
                new_pin: None,
            })
            .unwrap();
        assert_eq!(apdu, hex!("00 20 00 81 08 24 1234 FFFFFFFFFF"));
        // Right justified in a 4-byte block.
        req[2] = 0x8D;
        req[3] = 0x44;
        let r = PinRequest::parse(&req).unwrap();
        let apdu = r
            .build(&PinEntry {
                pin: "1234".into(),
                new_pin: None,
            })
            .unwrap();
        assert_eq!(apdu, hex!("00 20 00 81 08 24 FFFF1234 FFFFFF"));
        // BCD with a letter.
        assert_eq!(
            r.build(&PinEntry {
                pin: "12a4".into(),
                new_pin: None
            }),
            Err(BadField(OFF_FORMAT))
        );
    }

    #[test]
    fn modify_both_layouts() {
        // bNumberMessage 0 with one bMsgIndex (CCID) and with three (what
        // libccid sends a Gemalto reader).
        let head = hex!("01 00 82 08 00 00 08 08 04 03 02 00 0904");
        let apdu = hex!("00 24 00 80 10 FFFFFFFFFFFFFFFF FFFFFFFFFFFFFFFF");
        for indexes in [&[0u8][..], &[0, 0, 0][..]] {
            let mut m = head.to_vec();
            m.extend_from_slice(indexes);
            m.extend_from_slice(&[0, 0, 0]);
            m.extend_from_slice(&apdu);
            let r = PinRequest::parse(&m).unwrap();
            assert_eq!(r.operation, PinOperation::Modify);
            let built = r
                .build(&PinEntry {
                    pin: "12345678".into(),
                    new_pin: Some("87654321".into()),
                })
                .unwrap();
            assert_eq!(
                built,
                hex!("00 24 00 80 10 3132333435363738 3837363534333231")
            );
        }
    }

    #[test]
    fn malformed_requests() {
        assert_eq!(PinRequest::parse(&[]), Err(BadField(1)));
        assert_eq!(PinRequest::parse(&[0x02]), Err(BadField(OFF_OPERATION)));
        assert_eq!(PinRequest::parse(&VERIFY[..20]), Err(BadField(1)));
        // Lc says 9 bytes, 8 present.
        let mut bad = VERIFY.to_vec();
        bad[19] = 9;
        assert_eq!(PinRequest::parse(&bad), Err(BadField(1)));
        // A block that does not fit the data.
        let mut big = VERIFY.to_vec();
        big[2] = 0x0C;
        big[3] = 0x8D;
        let r = PinRequest::parse(&big).unwrap();
        assert_eq!(
            r.build(&PinEntry {
                pin: "1234".into(),
                new_pin: None
            }),
            Err(BadField(OFF_BLOCK))
        );
        assert_eq!(put_bits(&mut [0u8; 1], 4, 8, 0), None);
    }

    #[test]
    fn sources() {
        let fixed = FixedPins(vec!["12345678".into()]);
        assert_eq!(
            fixed.pin(0, PinOperation::Modify, 0).unwrap().new_pin,
            Some("12345678".into())
        );
        assert_eq!(
            fixed.pin(1, PinOperation::Verify, 0),
            Err(PinEntryError::Cancelled)
        );
        assert_eq!(
            Deny.pin(0, PinOperation::Verify, 0),
            Err(PinEntryError::Cancelled)
        );
        assert_eq!(
            NoEntry.pin(0, PinOperation::Verify, 0),
            Err(PinEntryError::Timeout)
        );
    }
}
