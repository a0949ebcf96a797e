//! The socket driver: one [`UsbRedirHost`] per TCP connection to QEMU's
//! usb-redir chardev, reconnecting while QEMU restarts.
//!
//! [`connect`] reaches a listening QEMU (`-chardev
//! socket,server=on,wait=off,…`), retrying with back-off (0.1 s doubling
//! to 2 s); [`listen`] waits for a QEMU that connects (`reconnect=1`).
//! Each connection gets a fresh device model from the caller's factory
//! (the cards, in the caller's [`vreader::ReaderSet`], keep their state),
//! `TCP_NODELAY`, one write per batch, and card operations run inline
//! (with [`DataPath::Bulk`], after the batch that acknowledges the
//! command has been written).
//! When `stop` is set the device is unplugged (device_disconnect, then a
//! short wait for QEMU's ack) before the socket closes.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use ccid::device::{CcidDevice, DeviceConfig};
//! use vreader::ReaderSet;
//!
//! let set = ReaderSet::new();
//! let reader = set.add_reader("vcac 0")?;
//! let stop = AtomicBool::new(false);
//! // QEMU: -chardev socket,server=on,wait=off,host=127.0.0.1,port=4000,id=ur -device usb-redir,chardev=ur
//! ccid::usbredir::tcp::connect(
//!     "127.0.0.1:4000",
//!     || CcidDevice::new(DeviceConfig::default(), &set, &[reader]),
//!     &stop,
//!     &Default::default(),
//! )?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::{redial, sleep_unless, Dial};

use super::{DataPath, Event, UsbRedirHost};
use crate::device::{CcidDevice, DeviceError};

/// Timings of [`connect`] and [`listen`].
#[derive(Clone, Debug)]
pub struct Options {
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Timeout of one connection attempt.
    pub connect_timeout: Duration,
    /// How long an unplug waits for QEMU's device_disconnect_ack.
    pub goodbye_timeout: Duration,
    /// Read timeout: how often slot changes are looked at while quiet.
    pub poll_interval: Duration,
    /// The version text of our hello.
    pub version: String,
    /// How the data endpoints are described to QEMU.
    pub data_path: DataPath,
    /// If set, the device follows it: clearing it unplugs the device
    /// (device_disconnect; the connection and the cards stay), setting it
    /// plugs it in again. A new connection presents the device only while
    /// it is set.
    pub plugged: Option<Arc<AtomicBool>>,
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
            version: concat!("vcac usbredir host ", env!("CARGO_PKG_VERSION")).into(),
            data_path: DataPath::default(),
            plugged: None,
        }
    }
}

fn to_io(e: DeviceError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// Serves devices from `make_device` to the usbredir peer at `addr` until
/// `stop` is set, reconnecting whenever the peer goes away. Fails when
/// `addr` does not resolve or the factory fails.
pub fn connect(
    addr: &str,
    mut make_device: impl FnMut() -> Result<CcidDevice, DeviceError>,
    stop: &AtomicBool,
    options: &Options,
) -> io::Result<()> {
    redial(
        addr,
        &format!("the usbredir peer at {addr}"),
        stop,
        &options.dial(),
        |stream| {
            let device = make_device().map_err(to_io)?;
            Ok(session(&stream, device, stop, options))
        },
    )
}

/// Like [`connect`], but waits for the peer to connect (QEMU with
/// `-chardev socket,host=H,port=P,reconnect=1`), one at a time.
pub fn listen(
    listener: TcpListener,
    mut make_device: impl FnMut() -> Result<CcidDevice, DeviceError>,
    stop: &AtomicBool,
    options: &Options,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    log::info!("usbredir: waiting for QEMU to connect to {local}");
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false)?;
                log::info!("usbredir: {peer} connected");
                let device = make_device().map_err(to_io)?;
                match session(&stream, device, stop, options) {
                    Ok(_) if stop.load(Ordering::Relaxed) => break,
                    Ok(_) => log::info!("usbredir: {peer} closed the connection; waiting"),
                    Err(e) => log::warn!("usbredir: connection from {peer} ended: {e}; waiting"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(options.poll_interval)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("usbredir: accepting on {local}: {e}");
                sleep_unless(stop, options.backoff_max);
            }
        }
    }
    Ok(())
}

fn quiet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Serves one connection with `device` until the peer closes it
/// (`Ok(true)` if the peer's hello came) or `stop` is set (the device is
/// unplugged first). Usable with any connected stream.
pub fn session(
    stream: &TcpStream,
    device: CcidDevice,
    stop: &AtomicBool,
    options: &Options,
) -> io::Result<bool> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(options.poll_interval))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let sock = socket2::SockRef::from(stream);
    let mut host = UsbRedirHost::new(device, &options.version).with_data_path(options.data_path);
    let bulk = options.data_path == DataPath::Bulk;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(4096);
    let mut greeted = false;
    let mut plugged = true;
    loop {
        if let Some(want) = options.plugged.as_ref().map(|p| p.load(Ordering::Relaxed)) {
            if want != plugged {
                plugged = want;
                if want {
                    log::info!("usbredir: plugging the device in again");
                    host.plug();
                } else {
                    log::info!("usbredir: unplugging the device (the connection stays)");
                    host.unplug();
                }
            }
        }
        // With bulk endpoints, what the peer's packets already settled
        // (bulk OUT statuses, control answers) goes out before any card
        // work: QEMU completes the guest's OUT transfer and the guest
        // queues its IN transfer while the card computes, as with a real
        // reader. With interrupt endpoints QEMU completed the OUT itself,
        // and the acknowledgement rides with the answer in one write.
        if bulk {
            flush(stream, &mut host, &mut out)?;
        }
        host.run_jobs();
        flush(stream, &mut host, &mut out)?;
        greeted |= log_events(&mut host);
        if stop.load(Ordering::Relaxed) {
            goodbye(stream, &mut host, &mut chunk, options);
            return Ok(greeted);
        }
        let _ = sock.set_quickack(true);
        let n = match (&*stream).read(&mut chunk) {
            Ok(0) => return Ok(greeted),
            Ok(n) => n,
            Err(e) if quiet(&e) => continue,
            Err(e) => return Err(e),
        };
        host.receive(chunk.get(..n).unwrap_or_default())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
}

fn flush(stream: &TcpStream, host: &mut UsbRedirHost, out: &mut Vec<u8>) -> io::Result<()> {
    out.clear();
    host.poll_transmit(out);
    if !out.is_empty() {
        (&*stream).write_all(out)?;
    }
    Ok(())
}

/// Unplugs the device and waits briefly for the ack, so the guest sees it
/// leave before the socket closes.
fn goodbye(stream: &TcpStream, host: &mut UsbRedirHost, chunk: &mut [u8], options: &Options) {
    host.unplug();
    let mut out = Vec::new();
    if flush(stream, host, &mut out).is_err() {
        return;
    }
    let deadline = Instant::now() + options.goodbye_timeout;
    while !host.is_detached() && Instant::now() < deadline {
        match (&*stream).read(chunk) {
            Ok(0) => break,
            Ok(n) => {
                if host.receive(chunk.get(..n).unwrap_or_default()).is_err() {
                    break;
                }
                if flush(stream, host, &mut out).is_err() {
                    break;
                }
            }
            Err(e) if quiet(&e) => {}
            Err(_) => break,
        }
    }
    log_events(host);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    log::info!("usbredir: device unplugged");
}

/// Logs the host's events; true if the peer's hello was among them.
fn log_events(host: &mut UsbRedirHost) -> bool {
    let mut greeted = false;
    while let Some(e) = host.poll_event() {
        match e {
            Event::PeerHello { version, caps } => {
                greeted = true;
                log::info!("usbredir: peer \"{version}\", caps {caps:#04x}");
            }
            Event::Presented => log::info!("usbredir: device presented"),
            Event::Reset => log::debug!("usbredir: port reset"),
            Event::Configured(c) => log::info!("usbredir: configuration {c} set"),
            Event::Rejected => log::warn!("usbredir: the peer refused the device"),
            Event::Unplugged => log::info!("usbredir: device_disconnect sent"),
            Event::DisconnectAcked => log::info!("usbredir: disconnect acknowledged"),
            Event::Ignored(why) => log::debug!("usbredir: ignored: {why}"),
        }
    }
    greeted
}
