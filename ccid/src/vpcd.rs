//! vpcd: plugging a virtual card into pcscd through vsmartcard's
//! `libifdvpcd` reader driver.
//!
//! pcscd's driver *listens* (by default on port 35963 for its first
//! reader, "Virtual PCD 00 00"); the card *connects* as a TCP client.
//! Both directions frame messages as a 2-byte big-endian length and a
//! payload. A 1-byte payload is a control message — `00` power off, `01`
//! power on, `02` reset (no reply), `04` get ATR (reply: the ATR) — and
//! anything longer is a command APDU answered by the response APDU. A
//! closed socket means the card was removed; connecting again inserts it.
//!
//! [`Decoder`] and [`Request`] are the sans-IO part; [`serve`] is the
//! socket driver: `TCP_NODELAY`, one write per message, `TCP_QUICKACK`
//! before every read (without these every APDU costs ~44 ms of Nagle and
//! delayed-ACK), reconnect with back-off while pcscd restarts.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vreader::{ReaderError, ReaderHandle};

/// pcscd's default vpcd port (slot 0); slot `n` listens on `DEFAULT_PORT + n`.
pub const DEFAULT_PORT: u16 = 35963;

/// Largest payload a frame can carry.
pub const MAX_PAYLOAD: usize = 0xFFFF;

/// A message from vpcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `00`: power off (no reply).
    PowerOff,
    /// `01`: power on (no reply).
    PowerOn,
    /// `02`: reset (no reply).
    Reset,
    /// `04`: get the ATR.
    GetAtr,
    /// Another 1-byte control code (ignored, no reply).
    Unknown(u8),
    /// A command APDU.
    Apdu(&'a [u8]),
}

impl<'a> Request<'a> {
    /// Classifies a frame payload.
    pub fn parse(payload: &'a [u8]) -> Request<'a> {
        match payload {
            [0x00] => Request::PowerOff,
            [0x01] => Request::PowerOn,
            [0x02] => Request::Reset,
            [0x04] => Request::GetAtr,
            [code] => Request::Unknown(*code),
            apdu => Request::Apdu(apdu),
        }
    }
}

/// Reassembles frames from a byte stream. Memory is bounded by
/// [`MAX_PAYLOAD`] + 2 whatever the peer sends.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's payload, if one is buffered. A zero-length
    /// frame is returned as an empty payload.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        let (len, rest) = self.buf.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return None;
        }
        let payload = rest.get(..len).unwrap_or_default().to_vec();
        self.buf.drain(..2 + len);
        Some(payload)
    }

    /// How many more bytes the current frame needs (at least 1 when none is
    /// complete), so a reader never reads past a frame into the next.
    pub fn wanted(&self) -> usize {
        match self.buf.split_first_chunk::<2>() {
            None => 2 - self.buf.len(),
            Some((len, rest)) => usize::from(u16::from_be_bytes(*len))
                .saturating_sub(rest.len())
                .max(1),
        }
    }
}

/// Appends one frame (length + payload) to `out`. Payloads longer than
/// [`MAX_PAYLOAD`] are an error.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), io::Error> {
    let len = u16::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "vpcd frame over 65535 bytes"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Answers one vpcd request from a reader: `Some(reply payload)` for ATR
/// and APDU requests, `None` for power control. An APDU to an unpowered
/// card powers it first (vpcd always powers on first; this keeps a
/// reconnect race harmless).
pub fn answer(reader: &ReaderHandle, request: Request<'_>) -> Result<Option<Vec<u8>>, ReaderError> {
    match request {
        Request::PowerOff => reader.power_off().map(|()| None),
        Request::PowerOn => reader.power_on().map(|_| None),
        Request::Reset => match reader.reset() {
            Err(ReaderError::NotPowered(_)) => reader.power_on().map(|_| None),
            other => other.map(|_| None),
        },
        Request::GetAtr => reader.atr().map(Some),
        Request::Unknown(_) => Ok(None),
        Request::Apdu(apdu) => {
            let mut response = Vec::with_capacity(258);
            match reader.transmit(apdu, &mut response) {
                Err(ReaderError::NotPowered(_)) => {
                    reader.power_on()?;
                    reader.transmit(apdu, &mut response)?;
                }
                other => other?,
            }
            Ok(Some(response))
        }
    }
}

/// How [`serve`] ended.
#[derive(Debug)]
pub enum Ended {
    /// `stop` was set.
    Stopped,
}

/// Connects the reader's card to the vpcd driver at `addr` and serves it
/// until `stop` is set, reconnecting (back-off 0.1 s doubling to 2 s)
/// whenever pcscd goes away. While the reader has no card the socket stays
/// closed, which pcscd sees as a removal.
pub fn serve(addr: &str, reader: &ReaderHandle, stop: &AtomicBool) -> Result<Ended, io::Error> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr}: no address"),
        ));
    }
    let mut backoff = Duration::from_millis(100);
    let mut announced_wait = false;
    while !stop.load(Ordering::Relaxed) {
        if !reader.card_present().unwrap_or(false) {
            sleep_unless(stop, Duration::from_millis(100));
            continue;
        }
        match connect(&addrs) {
            Ok(stream) => {
                log::info!("{}: connected to vpcd at {addr}", reader.name());
                announced_wait = false;
                let mut received = 0u64;
                match session(stream, reader, stop, &mut received) {
                    Ok(()) => {}
                    Err(e) => log::info!("{}: vpcd connection closed: {e}", reader.name()),
                }
                if received > 0 {
                    backoff = Duration::from_millis(100);
                } else {
                    // Accepted and dropped without a word (a driver that
                    // crash-loops, a stray listener): back off instead of
                    // reconnecting in a tight loop.
                    sleep_unless(stop, backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
            Err(e) => {
                if !announced_wait {
                    log::warn!(
                        "{}: cannot reach vpcd at {addr} ({e}); is pcscd running with vsmartcard-vpcd? retrying",
                        reader.name()
                    );
                    announced_wait = true;
                }
                sleep_unless(stop, backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    Ok(Ended::Stopped)
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(50);
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let d = left.min(step);
        std::thread::sleep(d);
        left = left.saturating_sub(d);
    }
}

fn connect(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(a, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Serves one connection; `received` counts the bytes that came.
fn session(
    stream: TcpStream,
    reader: &ReaderHandle,
    stop: &AtomicBool,
    received: &mut u64,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let sock = socket2::SockRef::from(&stream);
    let mut decoder = Decoder::new();
    let mut chunk = vec![0u8; 4096];
    let mut out = Vec::with_capacity(512);
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if !reader.card_present().unwrap_or(false) {
            log::info!(
                "{}: card removed, closing the vpcd connection",
                reader.name()
            );
            return Ok(());
        }
        // Delayed ACKs cost ~40 ms per APDU: ask for quick ACKs before
        // every read (the kernel resets the flag).
        let _ = sock.set_quickack(true);
        let want = decoder.wanted().min(chunk.len());
        let n = match (&stream).read(chunk.get_mut(..want).unwrap_or_default()) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "vpcd closed the connection",
                ))
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        *received += n as u64;
        decoder.extend(chunk.get(..n).unwrap_or_default());
        while let Some(payload) = decoder.next_frame() {
            let request = Request::parse(&payload);
            if let Request::Apdu(apdu) = request {
                log::debug!("{} > {}", reader.name(), hex(apdu));
            } else {
                log::debug!("{} control {request:?}", reader.name());
            }
            match answer(reader, request) {
                Ok(Some(reply)) => {
                    log::debug!("{} < {}", reader.name(), hex(&reply));
                    out.clear();
                    encode_frame(&reply, &mut out)?;
                    (&stream).write_all(&out)?;
                }
                Ok(None) => {}
                Err(e) => {
                    // The card went away between frames: tell pcscd.
                    log::info!("{}: {e}; closing the vpcd connection", reader.name());
                    return Ok(());
                }
            }
        }
    }
}

/// Uppercase hex without separators, for APDU logs.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(Request::parse(&[0x00]), Request::PowerOff);
        assert_eq!(Request::parse(&[0x01]), Request::PowerOn);
        assert_eq!(Request::parse(&[0x02]), Request::Reset);
        assert_eq!(Request::parse(&[0x04]), Request::GetAtr);
        assert_eq!(Request::parse(&[0x09]), Request::Unknown(0x09));
        assert_eq!(Request::parse(&[0x00, 0xA4]), Request::Apdu(&[0x00, 0xA4]));
    }

    #[test]
    fn decoder_reassembles_split_frames() {
        let mut d = Decoder::new();
        assert_eq!(d.wanted(), 2);
        d.extend(&[0x00]);
        assert_eq!(d.wanted(), 1);
        d.extend(&[0x05, 0x00, 0xA4]);
        assert_eq!(d.next_frame(), None);
        assert_eq!(d.wanted(), 3);
        d.extend(&[0x04, 0x00, 0x00, 0x00, 0x01, 0x01]);
        assert_eq!(d.next_frame(), Some(vec![0x00, 0xA4, 0x04, 0x00, 0x00]));
        assert_eq!(d.next_frame(), Some(vec![0x01]));
        assert_eq!(d.next_frame(), None);
        d.extend(&[0x00, 0x00]);
        assert_eq!(d.next_frame(), Some(vec![]));
    }

    #[test]
    fn encode() {
        let mut out = Vec::new();
        encode_frame(&[0x90, 0x00], &mut out).unwrap();
        assert_eq!(out, [0x00, 0x02, 0x90, 0x00]);
        assert!(encode_frame(&vec![0; 0x10000], &mut out).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics_and_stays_bounded(chunks in proptest::collection::vec(
            proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..20)) {
            let mut d = Decoder::new();
            for c in chunks {
                d.extend(&c);
                while d.next_frame().is_some() {}
                proptest::prop_assert!(d.buf.len() <= MAX_PAYLOAD + 2);
            }
        }
    }
}
