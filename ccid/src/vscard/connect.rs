//! The client's socket driver: connects a [`ReaderSet`] to a VSCard host
//! (QEMU's `ccid-card-passthru` chardev) and keeps it connected.
//!
//! It only drives [`Client`]: subscribes to the set's events (with replay,
//! so each new connection learns the current readers and cards), feeds it
//! the host's messages through a bounded [`Decoder`], and writes what it
//! queues in one `write` per batch with `TCP_NODELAY` (and `TCP_QUICKACK`
//! before every read) so an APDU costs no Nagle or delayed-ACK wait.
//!
//! [`run`] connects to a listening host (QEMU's `server=on` chardev);
//! [`listen`] waits for a host that connects (QEMU as the TCP client).
//!
//! When the host goes away (QEMU restarts) it reconnects with back-off
//! (0.1 s doubling to 2 s). When `stop` is set it says goodbye — CardRemove
//! and ReaderRemove for every reader the host knows — and waits briefly for
//! the answers before closing.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use vreader::ReaderSet;
//!
//! # fn card() -> cac::Card { unimplemented!() }
//! let set = ReaderSet::new();
//! let reader = set.add_reader("vcac 0")?;
//! set.insert_card(reader, card())?;
//! let stop = AtomicBool::new(false); // set it (e.g. from a signal) to leave
//! // QEMU: -chardev socket,server=on,wait=off,host=127.0.0.1,port=2001,id=cc
//! ccid::vscard::connect::run("127.0.0.1:2001", &set, &stop)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::net::{redial, sleep_unless, Dial};

use vreader::ReaderSet;

use super::client::{Client, ClientEvent};
use super::wire::Decoder;
use crate::vpcd::hex;

/// Timings of [`run_with`].
#[derive(Clone, Debug)]
pub struct Options {
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// How long the goodbye waits for the host's answers.
    pub goodbye_timeout: Duration,
    /// How often the reader set's events are looked at while the socket is
    /// quiet.
    pub poll_interval: Duration,
}

impl Options {
    fn dial(&self) -> Dial {
        Dial {
            backoff_min: self.backoff_min,
            backoff_max: self.backoff_max,
            connect_timeout: self.connect_timeout,
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            goodbye_timeout: Duration::from_millis(500),
            poll_interval: Duration::from_millis(20),
        }
    }
}

/// How [`run`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// `stop` was set (the host was told the readers are gone).
    Stopped,
}

/// Connects the readers of `set` to the VSCard host at `addr` and serves
/// them until `stop` is set, reconnecting whenever the host goes away.
/// Fails only when `addr` does not resolve.
pub fn run(addr: &str, set: &ReaderSet, stop: &AtomicBool) -> io::Result<Ended> {
    run_with(addr, set, stop, &Options::default())
}

/// [`run`] with explicit timings.
pub fn run_with(
    addr: &str,
    set: &ReaderSet,
    stop: &AtomicBool,
    options: &Options,
) -> io::Result<Ended> {
    redial(
        addr,
        &format!("the VSCard host at {addr}"),
        stop,
        &options.dial(),
        |stream| Ok(session(&stream, set, stop, options)),
    )?;
    Ok(Ended::Stopped)
}

/// Like [`run`], but waits for the host to connect: for QEMU as the TCP
/// client (`-chardev socket,host=H,port=P,reconnect=1` without
/// `server=on`, libvirt's `<source mode='connect'/>`). Serves one host at
/// a time, and the next one when it goes away, until `stop` is set.
pub fn listen(listener: TcpListener, set: &ReaderSet, stop: &AtomicBool) -> io::Result<Ended> {
    listen_with(listener, set, stop, &Options::default())
}

/// [`listen`] with explicit timings (`poll_interval` paces the accept
/// loop; the back-off fields are unused).
pub fn listen_with(
    listener: TcpListener,
    set: &ReaderSet,
    stop: &AtomicBool,
    options: &Options,
) -> io::Result<Ended> {
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    log::info!("waiting for a VSCard host to connect to {local}");
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false)?;
                log::info!("VSCard host {peer} connected");
                match session(&stream, set, stop, options) {
                    Ok(_) if stop.load(Ordering::Relaxed) => break,
                    Ok(_) => log::info!("VSCard host {peer} closed the connection; waiting"),
                    Err(e) => log::warn!("VSCard connection from {peer} ended: {e}; waiting"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(options.poll_interval)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("accepting on {local}: {e}");
                sleep_unless(stop, options.backoff_max);
            }
        }
    }
    Ok(Ended::Stopped)
}

/// One connection. `Ok(greeted)` when the host closed it (or `stop`),
/// `greeted` saying whether the host ever answered our Init.
fn session(
    stream: &TcpStream,
    set: &ReaderSet,
    stop: &AtomicBool,
    options: &Options,
) -> io::Result<bool> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(options.poll_interval))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let sock = socket2::SockRef::from(stream);
    let events = set.subscribe_with_replay();
    let mut client = Client::new();
    let mut decoder = Decoder::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(1024);
    let mut greeted = false;
    loop {
        if stop.load(Ordering::Relaxed) {
            goodbye(stream, &mut client, &mut decoder, set, options);
            return Ok(greeted);
        }
        while let Some(event) = events.try_next() {
            client.handle_event(&event, set);
        }
        flush(stream, &mut client, &mut out)?;
        log_events(&mut client);
        greeted |= client.is_ready();

        // Delayed ACKs would cost ~40 ms per APDU: ask for quick ACKs
        // before every read (the kernel clears the flag).
        let _ = sock.set_quickack(true);
        let n = match (&*stream).read(&mut chunk) {
            Ok(0) => return Ok(greeted),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let mut failure = None;
        decoder
            .decode_all(chunk.get(..n).unwrap_or_default(), |packet| {
                if failure.is_some() {
                    return;
                }
                if log::log_enabled!(log::Level::Debug) {
                    log::debug!(
                        "host > {:?} reader {} {}",
                        packet.msg_type(),
                        packet.reader_id(),
                        hex(packet.payload())
                    );
                }
                if let Err(e) = client.handle_packet(&packet.as_ref(), set) {
                    failure = Some(e);
                }
            })
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        // Answer before looking at anything else.
        flush(stream, &mut client, &mut out)?;
        log_events(&mut client);
        if let Some(e) = failure {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

fn flush(stream: &TcpStream, client: &mut Client, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    if client.poll_transmit(out) > 0 {
        (&*stream).write_all(out)?;
    }
    Ok(())
}

/// Tells the host every reader is gone and waits (briefly) for its
/// answers, so QEMU's guest sees the card leave.
fn goodbye(
    stream: &TcpStream,
    client: &mut Client,
    decoder: &mut Decoder,
    set: &ReaderSet,
    options: &Options,
) {
    client.shutdown();
    let mut out = Vec::new();
    if flush(stream, client, &mut out).is_err() {
        return;
    }
    log_events(client);
    let deadline = Instant::now() + options.goodbye_timeout;
    let mut chunk = [0u8; 512];
    while client.pending_answers() > 0 && Instant::now() < deadline {
        match (&*stream).read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let fed = decoder.decode_all(chunk.get(..n).unwrap_or_default(), |p| {
                    let _ = client.handle_packet(&p.as_ref(), set);
                });
                if fed.is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    log::info!("told the VSCard host the readers are gone");
}

fn log_events(client: &mut Client) {
    while let Some(event) = client.poll_event() {
        match event {
            ClientEvent::Connected {
                version,
                capabilities,
            } => log::info!(
                "VSCard host greeted us (protocol {version}, capabilities {capabilities:#010x})"
            ),
            ClientEvent::VersionMismatch { host } => log::warn!(
                "VSCard host speaks protocol {host}, we speak {}; carrying on",
                super::wire::VERSION
            ),
            ClientEvent::ReaderRegistered { reader, remote } => {
                log::info!("reader {reader} registered with the host as reader {remote}")
            }
            ClientEvent::ReaderRefused { reader, code } => {
                log::warn!("the host refused reader {reader}: {code}")
            }
            ClientEvent::ReaderIdInUse {
                reader,
                remote,
                holder,
            } => log::warn!(
                "the host gave reader {reader} the ID {remote} that reader {holder} already has; \
                 QEMU's ccid-card-passthru takes one card per chardev, so run one \
                 `vcac passthru` per device; leaving reader {reader} out"
            ),
            ClientEvent::CardAnnounced { reader, atr } => {
                log::info!("card in reader {reader} announced (ATR {})", hex(&atr))
            }
            ClientEvent::AtrRefused { reader, code } => {
                log::warn!("the host refused the ATR of reader {reader}'s card: {code}")
            }
            ClientEvent::CardNotAnnounced { reader, reason } => {
                log::warn!("cannot announce the card in reader {reader}: {reason}")
            }
            ClientEvent::CardWithdrawn { reader } => {
                log::info!("card in reader {reader} withdrawn")
            }
            ClientEvent::ReaderWithdrawn { reader } => {
                log::info!("reader {reader} withdrawn")
            }
            ClientEvent::Apdu {
                remote,
                command_len,
                response_len,
            } => log::debug!(
                "reader {remote}: APDU of {command_len} bytes answered with {response_len}"
            ),
            ClientEvent::ApduFailed { remote, reason } => {
                log::warn!("reader {remote}: APDU failed: {reason}")
            }
            ClientEvent::HostError { remote, code } => {
                log::warn!("the host reports {code} (reader {remote})")
            }
            ClientEvent::Unexpected { msg_type } => {
                log::warn!("unexpected {msg_type:?} from the host; answered with an error")
            }
            ClientEvent::Flushed => log::debug!("flush answered"),
        }
    }
}
