//! libccid's serial "Twin" protocol: the real Linux CCID driver
//! (`libccidtwin.so`) talking to our [`CcidDevice`]
//! through a pseudo-terminal.
//!
//! ```text
//!  pcscd ── libccidtwin.so ── /dev/pts/N ══ pty master ── serve ──┬── TwinDecoder / encode_frame
//!                              (symlink)                          └── CcidDevice ── vreader ── cac
//! ```
//!
//! Framing, both ways: `03` (SYNC), `06` (ACK), one CCID message (10-byte
//! header + `dwLength` bytes), LRC (XOR of every byte before it). A NAK
//! frame is `03 15 16`: we send it for a frame that fails its LRC or
//! cannot be delimited, and answer a host's NAK by repeating our last
//! frame. A GemPC Twin (and GemPC PinPad) first echoes each command frame
//! it accepted; the SEC1210 family does not. The driver's open probe
//! settles which: Escape `02` (GemPC, echo) or Escape `06` (SEC1210, no
//! echo), whatever [`ReaderType`] was configured.
//!
//! On open the driver sends Escape `02` (firmware version) — Escape `06`
//! for a SEC1210 — and Escape `01 01 01` ("card movement notification:
//! synchronous"); the device answers both. Card movements are therefore
//! reported synchronously: a pending NotifySlotChange goes out as the two
//! bytes `50 bmSlotICCState` after the echo and before the next answer.
//! While a card operation runs, each timer tick sends one time-request
//! byte `80`, which the driver skips while restarting its read timeout
//! (3 s by default); the device model's CCID time-extension messages are
//! turned into that byte.
//!
//! [`TwinDecoder`], [`encode_frame`] and [`Twin`] are the sans-IO part;
//! [`serve`] drives them over a pty (see [`Pty`]).

mod pty;

use core::fmt;
use core::str::FromStr;

use crate::device::wire::{Packet, HEADER_LEN};
use crate::device::CcidDevice;

pub use pty::{serve, Pty, ServeOptions};

/// Start of every frame.
pub const SYNC: u8 = 0x03;
/// Control byte of a frame that carries a CCID message.
pub const ACK: u8 = 0x06;
/// Control byte of a frame asking for the last frame again.
pub const NAK: u8 = 0x15;
/// The whole NAK frame.
pub const NAK_FRAME: [u8; 3] = [SYNC, NAK, SYNC ^ NAK];
/// The byte sent while a card operation runs ("time request").
pub const TIME_REQUEST: u8 = 0x80;

/// The reader libccid is told to expect (the `:NAME` suffix of
/// `DEVICENAME` in reader.conf). libccid matches names case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReaderType {
    /// `GemPCTwin` (the default): one slot, echoes commands.
    GemPcTwin,
    /// `GemPCPinPad`: a GemPC Twin with a PIN pad — one slot, echoes
    /// commands; libccid assumes `bPINSupport` 03 (verify + modify), so
    /// the device needs a [`PinPad`](crate::device::PinPad) in its
    /// configuration to answer `PC_to_RDR_Secure`.
    GemPcPinPad,
    /// `SEC1210URT`: one slot, no echo (libccid 1.7.0 and later; older
    /// versions do not know the name and drive it as a GemPC Twin, with
    /// echo — [`Twin`] follows the driver's open probe, so both work).
    Sec1210Urt,
    /// `SEC1210` (`SEC1210UR2`): two slots, no echo.
    Sec1210,
}

impl ReaderType {
    /// The name in reader.conf.
    pub fn name(self) -> &'static str {
        match self {
            ReaderType::GemPcTwin => "GemPCTwin",
            ReaderType::GemPcPinPad => "GemPCPinPad",
            ReaderType::Sec1210Urt => "SEC1210URT",
            ReaderType::Sec1210 => "SEC1210",
        }
    }

    /// True when the reader echoes each command frame.
    pub fn echo(self) -> bool {
        matches!(self, ReaderType::GemPcTwin | ReaderType::GemPcPinPad)
    }

    /// True when libccid drives this reader's PIN pad
    /// (FEATURE_VERIFY_PIN_DIRECT, FEATURE_MODIFY_PIN_DIRECT).
    pub fn pinpad(self) -> bool {
        matches!(self, ReaderType::GemPcPinPad)
    }

    /// Number of slots libccid opens on this reader.
    pub fn slots(self) -> usize {
        match self {
            ReaderType::GemPcTwin | ReaderType::GemPcPinPad | ReaderType::Sec1210Urt => 1,
            ReaderType::Sec1210 => 2,
        }
    }
}

impl fmt::Display for ReaderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown reader name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownReader(pub String);

impl fmt::Display for UnknownReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown serial reader \"{}\" (GemPCTwin, GemPCPinPad, SEC1210URT or SEC1210)",
            self.0
        )
    }
}

impl std::error::Error for UnknownReader {}

impl FromStr for ReaderType {
    type Err = UnknownReader;

    fn from_str(s: &str) -> Result<ReaderType, UnknownReader> {
        match s.to_ascii_lowercase().as_str() {
            "gempctwin" => Ok(ReaderType::GemPcTwin),
            "gempcpinpad" => Ok(ReaderType::GemPcPinPad),
            "sec1210urt" => Ok(ReaderType::Sec1210Urt),
            "sec1210" | "sec1210ur2" => Ok(ReaderType::Sec1210),
            _ => Err(UnknownReader(s.to_owned())),
        }
    }
}

/// Why bytes from the host are not a frame. Each is answered with
/// [`NAK_FRAME`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// `03` followed by neither `06` nor `15`.
    Control(u8),
    /// The LRC does not check.
    Lrc,
    /// `dwLength` larger than the reader's messages; the buffered bytes
    /// are dropped (there is no way to find the frame's end).
    TooLong(u32),
    /// A NAK frame with a bad LRC.
    NakLrc(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Control(b) => write!(f, "control byte {b:02X} is neither ACK nor NAK"),
            FrameError::Lrc => write!(f, "frame LRC does not check"),
            FrameError::TooLong(n) => write!(f, "frame announces {n} bytes, over the limit"),
            FrameError::NakLrc(b) => write!(f, "NAK frame with LRC {b:02X}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// One thing the host sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A CCID message whose LRC checked.
    Message(Vec<u8>),
    /// The host asks for our last frame again.
    Nak,
    /// Something that must be NAKed.
    Bad(FrameError),
}

/// Splits the host's byte stream into frames. Bytes before a `03` are
/// skipped; memory is bounded by one frame (plus what the caller pushes).
#[derive(Debug)]
pub struct TwinDecoder {
    buf: Vec<u8>,
    max_message: usize,
    skipped: u64,
}

impl TwinDecoder {
    /// A decoder for messages of at most `max_message` bytes (header
    /// included: `dwMaxCCIDMessageLength`).
    pub fn new(max_message: usize) -> TwinDecoder {
        TwinDecoder {
            buf: Vec::new(),
            max_message,
            skipped: 0,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when part of a frame is buffered.
    pub fn is_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Drops a partial frame (the host went quiet in the middle of one).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Bytes skipped so far while looking for `03`.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.buf.len());
        self.buf.drain(..n);
    }

    /// The next frame, if a whole one is buffered.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let start = self.buf.iter().position(|&b| b == SYNC);
            let Some(start) = start else {
                self.skipped += self.buf.len() as u64;
                self.buf.clear();
                return None;
            };
            if start > 0 {
                self.skipped += start as u64;
                self.drop_front(start);
            }
            let control = *self.buf.get(1)?;
            match control {
                ACK => return self.message(),
                NAK => {
                    let lrc = *self.buf.get(2)?;
                    self.drop_front(3);
                    return Some(if lrc == SYNC ^ NAK {
                        Frame::Nak
                    } else {
                        Frame::Bad(FrameError::NakLrc(lrc))
                    });
                }
                other => {
                    // Not a frame start after all: resume after the 03.
                    self.drop_front(1);
                    if other == SYNC {
                        continue;
                    }
                    return Some(Frame::Bad(FrameError::Control(other)));
                }
            }
        }
    }

    fn message(&mut self) -> Option<Frame> {
        let header = self.buf.get(2..2 + HEADER_LEN)?;
        let length = Packet::new_checked(header).map(|p| p.length()).ok()?;
        let total = HEADER_LEN + length as usize;
        if length as usize > self.max_message.saturating_sub(HEADER_LEN) {
            self.buf.clear();
            return Some(Frame::Bad(FrameError::TooLong(length)));
        }
        let frame = self.buf.get(..2 + total + 1)?;
        let lrc_ok = frame.iter().fold(0u8, |a, b| a ^ b) == 0;
        let message = frame.get(2..2 + total).unwrap_or_default().to_vec();
        self.drop_front(2 + total + 1);
        Some(if lrc_ok {
            Frame::Message(message)
        } else {
            Frame::Bad(FrameError::Lrc)
        })
    }
}

/// Appends the frame carrying `message` to `out`.
pub fn encode_frame(message: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.push(SYNC);
    out.push(ACK);
    out.extend_from_slice(message);
    let lrc = out
        .get(start..)
        .unwrap_or_default()
        .iter()
        .fold(0u8, |a, b| a ^ b);
    out.push(lrc);
}

/// The reader side of the protocol around a device: what to write back
/// for each frame and each device output. No I/O.
#[derive(Debug)]
pub struct Twin {
    reader: ReaderType,
    echo: bool,
    last: Vec<u8>,
}

impl Twin {
    /// For a reader of this type.
    pub fn new(reader: ReaderType) -> Twin {
        Twin {
            reader,
            echo: reader.echo(),
            last: NAK_FRAME.to_vec(),
        }
    }

    /// The reader type.
    pub fn reader(&self) -> ReaderType {
        self.reader
    }

    /// True while command frames are echoed.
    pub fn echoes(&self) -> bool {
        self.echo
    }

    /// libccid decides echo together with its open probe: Escape `02` for
    /// the GemPC family (echo), Escape `06` for the SEC1210 family (none).
    /// A libccid older than 1.7 does not know `SEC1210URT` and drives it
    /// as a GemPC Twin, so the probe, not the configured name, settles it.
    fn follow_probe(&mut self, message: &[u8]) {
        let (Some(head), Some(payload)) = (message.get(..5), message.get(10..)) else {
            return;
        };
        let echo = match (head, payload) {
            ([0x6B, 0x01, 0, 0, 0], [0x02]) => true,
            ([0x6B, 0x01, 0, 0, 0], [0x06]) => false,
            _ => return,
        };
        if echo != self.echo {
            log::info!(
                "serial: the driver probes with Escape {:02X}: {} echo (configured {})",
                payload.first().copied().unwrap_or(0),
                if echo { "with" } else { "without" },
                self.reader
            );
            self.echo = echo;
        }
    }

    /// Handles one host frame: appends the immediate reply (echo, NAK, or
    /// a repeat) to `out` and passes a message to the device. Card jobs it
    /// queues are for the caller to run; then [`Twin::flush`].
    pub fn on_frame(&mut self, frame: Frame, device: &mut CcidDevice, out: &mut Vec<u8>) {
        match frame {
            Frame::Message(message) => {
                self.follow_probe(&message);
                // libccid loads a GemPC PinPad's display strings with a
                // 165-byte Escape (`B2 A0 …`) and reads the echo into the
                // answer's 30-byte buffer, checking only its framing: the
                // whole echo would not fit, so it is the bare header.
                let l10n = self.reader == ReaderType::GemPcPinPad
                    && message.first() == Some(&0x6B)
                    && message.get(10..12) == Some(&[0xB2, 0xA0][..]);
                if self.echo && l10n {
                    let mut header = message.get(..HEADER_LEN).unwrap_or_default().to_vec();
                    if let Some(len) = header.get_mut(1..5) {
                        len.copy_from_slice(&[0; 4]);
                    }
                    encode_frame(&header, out);
                } else if self.echo {
                    encode_frame(&message, out);
                }
                if let Err(e) = device.handle_message(&message) {
                    log::debug!("serial: {e}");
                }
            }
            Frame::Nak => out.extend_from_slice(&self.last),
            Frame::Bad(e) => {
                log::debug!("serial: {e}; NAK");
                out.extend_from_slice(&NAK_FRAME);
            }
        }
    }

    /// Appends everything the device has to say: each answer as a frame,
    /// preceded by a pending card movement (`50 xx`); a time-extension
    /// message as the single byte `80`.
    pub fn flush(&mut self, device: &mut CcidDevice, out: &mut Vec<u8>) {
        while let Some(message) = device.poll_response() {
            let time_extension =
                Packet::new_checked(message.as_slice()).is_ok_and(|p| p.status() & 0xC0 == 0x80);
            if time_extension {
                out.push(TIME_REQUEST);
                continue;
            }
            if let Some(notify) = device.poll_interrupt() {
                out.extend_from_slice(&notify);
            }
            let start = out.len();
            encode_frame(&message, out);
            self.last = out.get(start..).unwrap_or_default().to_vec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceConfig;
    use hex_literal::hex;
    use vreader::ReaderSet;

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        encode_frame(&hex!("65 00000000 00 00 000000"), &mut out);
        assert_eq!(out, hex!("03 06 65 00000000 00 00 000000 60"));
        let mut d = TwinDecoder::new(271);
        d.push(&out[..7]);
        assert_eq!(d.next_frame(), None);
        assert!(d.is_partial());
        d.push(&out[7..]);
        assert_eq!(
            d.next_frame(),
            Some(Frame::Message(hex!("65 00000000 00 00 000000").to_vec()))
        );
        assert_eq!(d.next_frame(), None);
        assert!(!d.is_partial());
    }

    #[test]
    fn what_libccid_sends_on_open() {
        // Escape 02 (firmware), bSeq 0, as libccid writes it.
        let mut d = TwinDecoder::new(271);
        d.push(&hex!("03 06 6B 01000000 00 00 000000 02 6D"));
        assert_eq!(
            d.next_frame(),
            Some(Frame::Message(hex!("6B 01000000 00 00 000000 02").to_vec()))
        );
    }

    #[test]
    fn garbage_nak_and_bad_frames() {
        let mut d = TwinDecoder::new(271);
        // Noise before the SYNC is skipped.
        d.push(&hex!("FF 00 03 15 16"));
        assert_eq!(d.next_frame(), Some(Frame::Nak));
        assert_eq!(d.skipped(), 2);
        d.push(&hex!("03 15 17"));
        assert_eq!(d.next_frame(), Some(Frame::Bad(FrameError::NakLrc(0x17))));
        d.push(&hex!("03 07 03 03 06 65 00000000 00 00 000000 61"));
        assert_eq!(d.next_frame(), Some(Frame::Bad(FrameError::Control(0x07))));
        assert_eq!(d.next_frame(), Some(Frame::Bad(FrameError::Lrc)));
        // A dwLength over the limit cannot be delimited: all dropped.
        d.push(&hex!("03 06 6F FF010000 00 00 000000 AABB"));
        assert_eq!(d.next_frame(), Some(Frame::Bad(FrameError::TooLong(511))));
        assert!(!d.is_partial());
        d.push(&hex!("03 06 6F 06010000 00 00 000000"));
        assert_eq!(d.next_frame(), Some(Frame::Bad(FrameError::TooLong(262))));
    }

    fn device() -> (ReaderSet, CcidDevice) {
        let set = ReaderSet::new();
        let r = set.add_reader("s").unwrap();
        let card = vcac_sources::embedded::default_card(
            &cac::keys::RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap();
        set.insert_card(r, card).unwrap();
        let dev = CcidDevice::new(DeviceConfig::gempc_twin(), &set, &[r]).unwrap();
        (set, dev)
    }

    #[test]
    fn gempc_twin_echoes_then_answers() {
        let (_set, mut dev) = device();
        let mut twin = Twin::new(ReaderType::GemPcTwin);
        let mut out = Vec::new();
        let cmd = hex!("6B 03000000 00 01 000000 010101");
        twin.on_frame(Frame::Message(cmd.to_vec()), &mut dev, &mut out);
        twin.flush(&mut dev, &mut out);
        let mut want = Vec::new();
        encode_frame(&cmd, &mut want);
        // Synchronous card-movement notification, then the answer.
        want.extend_from_slice(&hex!("50 03"));
        encode_frame(&hex!("83 00000000 00 01 01 00 00"), &mut want);
        assert_eq!(out, want);
        // A NAK from the host repeats the answer.
        out.clear();
        twin.on_frame(Frame::Nak, &mut dev, &mut out);
        assert_eq!(out, want[want.len() - 13..]);
        // A bad frame is NAKed.
        out.clear();
        twin.on_frame(Frame::Bad(FrameError::Lrc), &mut dev, &mut out);
        assert_eq!(out, NAK_FRAME);
    }

    #[test]
    fn sec1210_does_not_echo_and_time_extension_is_one_byte() {
        let (_set, mut dev) = device();
        dev.poll_interrupt();
        let mut twin = Twin::new(ReaderType::Sec1210Urt);
        let mut out = Vec::new();
        twin.on_frame(
            Frame::Message(hex!("62 00000000 00 00 010000").to_vec()),
            &mut dev,
            &mut out,
        );
        twin.flush(&mut dev, &mut out);
        assert_eq!(out[..12], hex!("03 06 80 0F000000 00 00 00 00 00"));
        out.clear();
        let select = hex!("6F 0C000000 00 01 000000 00A4040007A000000116DB00");
        twin.on_frame(Frame::Message(select.to_vec()), &mut dev, &mut out);
        let job = dev.poll_job().unwrap();
        dev.tick();
        dev.tick();
        twin.flush(&mut dev, &mut out);
        assert_eq!(out, [TIME_REQUEST]);
        dev.complete(job.run()).unwrap();
        out.clear();
        twin.flush(&mut dev, &mut out);
        let mut want = Vec::new();
        encode_frame(&hex!("80 02000000 00 01 00 00 00 610D"), &mut want);
        assert_eq!(out, want);
    }

    /// The probe libccid sends a GemPC reader on open (Escape `02`).
    const PROBE_GEMPC: [u8; 11] = hex!("6B 01000000 00 00 000000 02");
    /// The probe libccid sends a SEC1210 on open (Escape `06`).
    const PROBE_SEC1210: [u8; 11] = hex!("6B 01000000 00 00 000000 06");

    #[test]
    fn echo_follows_the_drivers_probe() {
        let (_set, mut dev) = device();
        let mut out = Vec::new();
        // An old libccid drives "SEC1210URT" like a GemPC Twin.
        let mut twin = Twin::new(ReaderType::Sec1210Urt);
        assert!(!twin.echoes());
        twin.on_frame(Frame::Message(PROBE_GEMPC.to_vec()), &mut dev, &mut out);
        assert!(twin.echoes());
        let mut want = Vec::new();
        encode_frame(&PROBE_GEMPC, &mut want);
        assert_eq!(out, want);
        // A new one probes a SEC1210 with Escape 06: no echo.
        out.clear();
        let mut twin = Twin::new(ReaderType::GemPcTwin);
        twin.on_frame(Frame::Message(PROBE_SEC1210.to_vec()), &mut dev, &mut out);
        assert!(!twin.echoes());
        assert!(out.is_empty());
        // Other escapes change nothing.
        twin.on_frame(
            Frame::Message(hex!("6B 01000000 00 00 000000 03").to_vec()),
            &mut dev,
            &mut out,
        );
        assert!(!twin.echoes());
    }

    #[test]
    fn reader_names() {
        assert_eq!("gempctwin".parse(), Ok(ReaderType::GemPcTwin));
        assert_eq!("SEC1210URT".parse(), Ok(ReaderType::Sec1210Urt));
        assert_eq!("SEC1210UR2".parse(), Ok(ReaderType::Sec1210));
        assert_eq!("GemPCPinPad".parse(), Ok(ReaderType::GemPcPinPad));
        assert!(ReaderType::GemPcPinPad.echo() && ReaderType::GemPcPinPad.pinpad());
        assert!(!ReaderType::GemPcTwin.pinpad());
        assert!("GemPCKey".parse::<ReaderType>().is_err());
        assert!(ReaderType::GemPcTwin.echo());
        assert!(!ReaderType::Sec1210Urt.echo());
        assert_eq!(ReaderType::Sec1210.slots(), 2);
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics_and_stays_bounded(chunks in proptest::collection::vec(
            proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..20)) {
            let mut d = TwinDecoder::new(271);
            for c in chunks {
                d.push(&c);
                while d.next_frame().is_some() {}
                proptest::prop_assert!(d.buf.len() <= 2 + 271 + 1);
            }
        }
    }
}
