//! The host's socket driver: accepts VSCard clients (`vcac passthru`,
//! libcacard's `vscclient`, SPICE's smart card channel bridge) and exposes
//! their cards as [`RemoteCard`]s — what QEMU's `ccid-card-passthru` does
//! for its guest, for a Rust VMM.
//!
//! Each connection gets a thread and a [`Host`] state machine. A
//! [`RemoteCard`] has the same shape as a [`vreader::ReaderHandle`]
//! (`atr`, `card_present`, `transmit`); its `transmit` sends the command
//! and blocks until the client answers, the card goes away or the timeout
//! passes. [`Server::next_event`] reports readers and cards coming and
//! going.
//!
//! Limits: [`MAX_CONNECTIONS`] clients at once, the [`Host`]'s reader cap
//! per client, the [`Decoder`]'s 64 KiB per message, [`MAX_QUEUED_EVENTS`]
//! unread events, and [`ServerOptions::init_timeout`] for a new connection
//! to send its Init (so silent connections cannot hold every slot).
//!
//! ```no_run
//! use std::sync::{atomic::AtomicBool, Arc};
//! use std::time::Duration;
//! use ccid::vscard::server::{Server, ServerEvent};
//!
//! let server = Arc::new(Server::bind("127.0.0.1:2001")?);
//! let stop = Arc::new(AtomicBool::new(false));
//! let (s, st) = (Arc::clone(&server), Arc::clone(&stop));
//! std::thread::spawn(move || s.run(&st));
//! while let Some(event) = server.next_event(Duration::from_secs(60)) {
//!     if let ServerEvent::CardInserted { card, .. } = event {
//!         let mut response = Vec::new();
//!         card.transmit(&[0x00, 0xA4, 0x04, 0x00], &mut response)?;
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::host::{Host, HostError, HostEvent, DEFAULT_MAX_READERS};
use super::wire::{Decoder, ErrorCode};
use crate::vpcd::hex;

/// Clients served at once; more are closed on arrival.
pub const MAX_CONNECTIONS: usize = 64;

/// How long [`RemoteCard::transmit`] waits unless
/// [`ServerOptions::timeout`] says otherwise (an RSA signature on a slow
/// real card takes a few seconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a remote card operation failed.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteError {
    /// The client's connection is gone.
    Disconnected,
    /// The client removed the reader.
    NoSuchReader,
    /// The reader has no card.
    NoCard,
    /// A previous command on this reader is still outstanding.
    Busy,
    /// The command does not fit a VSCard message.
    TooLong(usize),
    /// The client answered with an Error (or the card went away).
    Failed(ErrorCode),
    /// No answer within the timeout.
    Timeout(Duration),
    /// Writing to the client failed.
    Io(String),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Disconnected => f.write_str("the VSCard client is disconnected"),
            RemoteError::NoSuchReader => f.write_str("the VSCard client removed the reader"),
            RemoteError::NoCard => f.write_str("no card in the remote reader"),
            RemoteError::Busy => f.write_str("a command is still outstanding on the remote reader"),
            RemoteError::TooLong(n) => {
                write!(f, "a {n}-byte command does not fit a VSCard message")
            }
            RemoteError::Failed(code) => write!(f, "the VSCard client answered: {code}"),
            RemoteError::Timeout(d) => write!(f, "no answer from the VSCard client within {d:?}"),
            RemoteError::Io(e) => write!(f, "writing to the VSCard client: {e}"),
        }
    }
}

impl std::error::Error for RemoteError {}

/// A reader's identity: which connection, which reader ID on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RemoteReaderId {
    /// The connection (numbered from 0 in accept order).
    pub connection: u64,
    /// The reader ID the host handed out on that connection.
    pub reader: u32,
}

impl fmt::Display for RemoteReaderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} reader {}", self.connection, self.reader)
    }
}

/// Something that happened on the server.
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum ServerEvent {
    /// A client connected and greeted.
    ClientConnected {
        /// Its connection number.
        connection: u64,
        /// Its address.
        peer: SocketAddr,
    },
    /// A client added a reader.
    ReaderAdded(RemoteCard),
    /// A card is in the reader (or was reset).
    CardInserted {
        /// The reader.
        card: RemoteCard,
        /// The card's ATR.
        atr: Vec<u8>,
    },
    /// The card was taken out.
    CardRemoved(RemoteCard),
    /// The reader is gone (also when its client disconnects).
    ReaderRemoved(RemoteCard),
    /// A client's connection ended.
    ClientDisconnected {
        /// Its connection number.
        connection: u64,
        /// Why.
        reason: String,
    },
}

/// How long a new connection may stay silent unless
/// [`ServerOptions::init_timeout`] says otherwise.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a [`Server`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// How long a transmit waits for the answer.
    pub timeout: Duration,
    /// Readers one client may add.
    pub max_readers: usize,
    /// How long a new connection may take to send its whole Init before
    /// it is closed.
    pub init_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> ServerOptions {
        ServerOptions {
            timeout: DEFAULT_TIMEOUT,
            max_readers: DEFAULT_MAX_READERS,
            init_timeout: DEFAULT_INIT_TIMEOUT,
        }
    }
}

struct ConnState {
    host: Host,
    /// Answers to outstanding commands, by reader.
    answers: BTreeMap<u32, Result<Vec<u8>, ErrorCode>>,
    closed: bool,
    out: Vec<u8>,
}

struct Conn {
    id: u64,
    peer: SocketAddr,
    stream: TcpStream,
    state: Mutex<ConnState>,
    answered: Condvar,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes what the host queued. Called with the state locked so the
    /// byte order on the wire is the order of the state machine.
    fn flush(&self, state: &mut ConnState) -> io::Result<()> {
        state.out.clear();
        let ConnState { host, out, .. } = state;
        if host.poll_transmit(out) > 0 {
            (&self.stream).write_all(out)?;
        }
        Ok(())
    }
}

/// A reader on a connected VSCard client, and the card in it.
#[derive(Clone)]
pub struct RemoteCard {
    conn: Arc<Conn>,
    reader: u32,
    name: Arc<str>,
    timeout: Duration,
}

impl fmt::Debug for RemoteCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteCard({} \"{}\")", self.id(), self.name)
    }
}

impl RemoteCard {
    /// Which connection and reader.
    pub fn id(&self) -> RemoteReaderId {
        RemoteReaderId {
            connection: self.conn.id,
            reader: self.reader,
        }
    }

    /// The reader's name as the client gave it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.conn.peer
    }

    fn check(&self, state: &ConnState) -> Result<(), RemoteError> {
        if state.closed {
            return Err(RemoteError::Disconnected);
        }
        Ok(())
    }

    /// The card's ATR.
    pub fn atr(&self) -> Result<Vec<u8>, RemoteError> {
        let state = self.conn.lock();
        self.check(&state)?;
        state
            .host
            .atr(self.reader)
            .map(<[u8]>::to_vec)
            .map_err(map_host_error)
    }

    /// True while the client says a card is in the reader.
    pub fn card_present(&self) -> bool {
        let state = self.conn.lock();
        !state.closed && state.host.atr(self.reader).is_ok()
    }

    /// Sends a command APDU and waits for the response, which is appended
    /// to `response`.
    pub fn transmit(&self, command: &[u8], response: &mut Vec<u8>) -> Result<(), RemoteError> {
        let mut state = self.conn.lock();
        self.check(&state)?;
        state.answers.remove(&self.reader);
        state
            .host
            .send_apdu(self.reader, command)
            .map_err(map_host_error)?;
        self.conn
            .flush(&mut state)
            .map_err(|e| RemoteError::Io(e.to_string()))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(answer) = state.answers.remove(&self.reader) {
                return match answer {
                    Ok(apdu) => {
                        response.extend_from_slice(&apdu);
                        Ok(())
                    }
                    Err(code) => Err(RemoteError::Failed(code)),
                };
            }
            self.check(&state)?;
            let now = Instant::now();
            if now >= deadline {
                return Err(RemoteError::Timeout(self.timeout));
            }
            state = self
                .conn
                .answered
                .wait_timeout(state, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Asks the client to finish outstanding work (VSCard Flush); the
    /// answer is not waited for.
    pub fn flush(&self) -> Result<(), RemoteError> {
        let mut state = self.conn.lock();
        self.check(&state)?;
        state.host.flush();
        self.conn
            .flush(&mut state)
            .map_err(|e| RemoteError::Io(e.to_string()))
    }
}

fn map_host_error(e: HostError) -> RemoteError {
    match e {
        HostError::NoSuchReader(_) => RemoteError::NoSuchReader,
        HostError::NoCard(_) => RemoteError::NoCard,
        HostError::Busy(_) => RemoteError::Busy,
        HostError::TooLong { len } => RemoteError::TooLong(len),
        HostError::Wire(_) | HostError::NotInitialized(_) => RemoteError::Disconnected,
    }
}

struct Shared {
    conns: Mutex<BTreeMap<u64, Arc<Conn>>>,
    readers: Mutex<BTreeMap<RemoteReaderId, RemoteCard>>,
    events: Mutex<VecDeque<ServerEvent>>,
    event_ready: Condvar,
    next_conn: AtomicU64,
    options: ServerOptions,
}

/// Events kept for [`Server::next_event`]; beyond this the oldest are
/// dropped, so clients that churn readers while nobody reads events cannot
/// grow memory without bound.
pub const MAX_QUEUED_EVENTS: usize = 4096;

impl Shared {
    fn publish(&self, event: ServerEvent) {
        let mut events = lock(&self.events);
        if events.len() >= MAX_QUEUED_EVENTS {
            events.pop_front();
            log::warn!("VSCard server: event queue full, dropping the oldest event");
        }
        events.push_back(event);
        drop(events);
        self.event_ready.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A VSCard host listening for clients. Share it behind an `Arc`: one
/// thread calls [`Server::run`], others use the cards.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("readers", &lock(&self.shared.readers).len())
            .finish()
    }
}

impl Server {
    /// Listens on `addr` (use port 0 for any free port).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Server> {
        Server::bind_with(addr, ServerOptions::default())
    }

    /// [`Server::bind`] with settings.
    pub fn bind_with(addr: impl ToSocketAddrs, options: ServerOptions) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                conns: Mutex::new(BTreeMap::new()),
                readers: Mutex::new(BTreeMap::new()),
                events: Mutex::new(VecDeque::new()),
                event_ready: Condvar::new(),
                next_conn: AtomicU64::new(0),
                options,
            }),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Every reader of every connected client, in connection and reader
    /// order.
    pub fn cards(&self) -> Vec<RemoteCard> {
        lock(&self.shared.readers).values().cloned().collect()
    }

    /// The next event, waiting up to `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<ServerEvent> {
        let guard = lock(&self.shared.events);
        let (mut guard, _) = self
            .shared
            .event_ready
            .wait_timeout_while(guard, timeout, |q| q.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        guard.pop_front()
    }

    /// Accepts and serves clients until `stop` is set, then closes every
    /// connection and returns.
    pub fn run(&self, stop: &AtomicBool) -> io::Result<()> {
        let mut threads = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    threads.retain(|t: &std::thread::JoinHandle<()>| !t.is_finished());
                    if lock(&self.shared.conns).len() >= MAX_CONNECTIONS {
                        log::warn!("VSCard client {peer} refused: {MAX_CONNECTIONS} connected");
                        continue;
                    }
                    match self.start(stream, peer) {
                        Ok(t) => threads.push(t),
                        Err(e) => log::warn!("VSCard client {peer}: {e}"),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("VSCard accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        for conn in lock(&self.shared.conns).values() {
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        }
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    }

    fn start(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> io::Result<std::thread::JoinHandle<()>> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        let id = self.shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            peer,
            stream: stream.try_clone()?,
            state: Mutex::new(ConnState {
                host: Host::with_max_readers(self.shared.options.max_readers),
                answers: BTreeMap::new(),
                closed: false,
                out: Vec::new(),
            }),
            answered: Condvar::new(),
        });
        lock(&self.shared.conns).insert(id, Arc::clone(&conn));
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name(format!("vscard client {id}"))
            .spawn(move || {
                let reason = match serve_connection(&stream, &conn, &shared) {
                    Ok(()) => "closed by the client".to_owned(),
                    Err(e) => e.to_string(),
                };
                log::info!("VSCard client {id} ({peer}): {reason}");
                close(&conn, &shared, reason);
            })
    }
}

fn serve_connection(stream: &TcpStream, conn: &Arc<Conn>, shared: &Shared) -> io::Result<()> {
    let mut decoder = Decoder::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let sock = socket2::SockRef::from(stream);
    // The whole Init must arrive within `init_timeout` (not each byte: a
    // client dribbling one byte at a time cannot hold a slot for long).
    let init_deadline = Instant::now() + shared.options.init_timeout;
    let mut greeted = false;
    loop {
        if !greeted {
            if conn.lock().host.is_ready() {
                // Greeted: from now on the client may be quiet for as
                // long as it likes.
                greeted = true;
                stream.set_read_timeout(None)?;
            } else {
                let left = init_deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(no_init(shared));
                }
                stream.set_read_timeout(Some(left))?;
            }
        }
        let _ = sock.set_quickack(true);
        let n = match (&*stream).read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(no_init(shared));
            }
            Err(e) => return Err(e),
        };
        let mut state = conn.lock();
        let mut failure = None;
        decoder
            .decode_all(chunk.get(..n).unwrap_or_default(), |packet| {
                if failure.is_some() {
                    return;
                }
                log::debug!(
                    "client {} > {:?} reader {} {}",
                    conn.id,
                    packet.msg_type(),
                    packet.reader_id(),
                    hex(packet.payload())
                );
                if let Err(e) = state.host.handle_packet(&packet.as_ref()) {
                    failure = Some(e);
                }
            })
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        conn.flush(&mut state)?;
        let mut published = Vec::new();
        let mut answered = false;
        while let Some(event) = state.host.poll_event() {
            match event {
                HostEvent::Response { reader, apdu } => {
                    state.answers.insert(reader, Ok(apdu));
                    answered = true;
                }
                HostEvent::ApduFailed { reader, code } => {
                    state.answers.insert(reader, Err(code));
                    answered = true;
                }
                other => published.push(other),
            }
        }
        drop(state);
        if answered {
            conn.answered.notify_all();
        }
        for event in published {
            publish(conn, shared, event);
        }
        if let Some(e) = failure {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

fn no_init(shared: &Shared) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no Init within {:?}", shared.options.init_timeout),
    )
}

fn card(conn: &Arc<Conn>, shared: &Shared, reader: u32) -> Option<RemoteCard> {
    lock(&shared.readers)
        .get(&RemoteReaderId {
            connection: conn.id,
            reader,
        })
        .cloned()
}

fn publish(conn: &Arc<Conn>, shared: &Shared, event: HostEvent) {
    match event {
        HostEvent::Connected { version, .. } => {
            log::info!(
                "VSCard client {} ({}) greeted (protocol {version})",
                conn.id,
                conn.peer
            );
            shared.publish(ServerEvent::ClientConnected {
                connection: conn.id,
                peer: conn.peer,
            });
        }
        HostEvent::ReaderAdded { reader, name } => {
            let card = RemoteCard {
                conn: Arc::clone(conn),
                reader,
                name: Arc::from(name.as_str()),
                timeout: shared.options.timeout,
            };
            lock(&shared.readers).insert(card.id(), card.clone());
            log::info!("{}: reader \"{name}\" added", card.id());
            shared.publish(ServerEvent::ReaderAdded(card));
        }
        HostEvent::CardInserted { reader, atr } => {
            if let Some(card) = card(conn, shared, reader) {
                log::info!("{}: card inserted (ATR {})", card.id(), hex(&atr));
                shared.publish(ServerEvent::CardInserted { card, atr });
            }
        }
        HostEvent::CardRemoved { reader } => {
            if let Some(card) = card(conn, shared, reader) {
                log::info!("{}: card removed", card.id());
                shared.publish(ServerEvent::CardRemoved(card));
            }
        }
        HostEvent::ReaderRemoved { reader } => {
            let id = RemoteReaderId {
                connection: conn.id,
                reader,
            };
            if let Some(card) = lock(&shared.readers).remove(&id) {
                log::info!("{id}: reader removed");
                shared.publish(ServerEvent::ReaderRemoved(card));
            }
        }
        HostEvent::FlushComplete => log::debug!("VSCard client {}: flush complete", conn.id),
        HostEvent::Refused {
            msg_type,
            reader,
            reason,
        } => log::warn!(
            "VSCard client {}: {msg_type:?} for reader {reader} refused: {reason}",
            conn.id
        ),
        // Answers are routed to waiting transmits before this is called.
        HostEvent::Response { .. } | HostEvent::ApduFailed { .. } => {}
    }
}

/// Marks the connection closed, wakes waiting transmits and removes its
/// readers (publishing their removal).
fn close(conn: &Arc<Conn>, shared: &Shared, reason: String) {
    let mut state = conn.lock();
    state.closed = true;
    let had_card: Vec<(u32, bool)> = state
        .host
        .readers()
        .map(|(id, _, atr)| (id, atr.is_some()))
        .collect();
    drop(state);
    conn.answered.notify_all();
    let _ = conn.stream.shutdown(std::net::Shutdown::Both);
    for (reader, card) in had_card {
        let id = RemoteReaderId {
            connection: conn.id,
            reader,
        };
        if let Some(remote) = lock(&shared.readers).remove(&id) {
            if card {
                shared.publish(ServerEvent::CardRemoved(remote.clone()));
            }
            shared.publish(ServerEvent::ReaderRemoved(remote));
        }
    }
    lock(&shared.conns).remove(&conn.id);
    shared.publish(ServerEvent::ClientDisconnected {
        connection: conn.id,
        reason,
    });
}

impl From<RemoteError> for vreader::CardFault {
    fn from(e: RemoteError) -> vreader::CardFault {
        vreader::CardFault(e.to_string())
    }
}

/// A remote card in a [`vreader::ReaderSet`]: the VSCard protocol has no
/// power messages, so power on, reset and the ATR all answer the ATR the
/// client reported, and power off does nothing.
impl vreader::VirtualCard for RemoteCard {
    fn atr(&self) -> Result<Vec<u8>, vreader::CardFault> {
        Ok(RemoteCard::atr(self)?)
    }

    fn power_on(&mut self) -> Result<Vec<u8>, vreader::CardFault> {
        Ok(RemoteCard::atr(self)?)
    }

    fn reset(&mut self) -> Result<Vec<u8>, vreader::CardFault> {
        Ok(RemoteCard::atr(self)?)
    }

    fn power_off(&mut self) {}

    fn transmit(
        &mut self,
        command: &[u8],
        response: &mut Vec<u8>,
    ) -> Result<(), vreader::CardFault> {
        Ok(RemoteCard::transmit(self, command, response)?)
    }
}

impl From<RemoteCard> for Box<dyn vreader::VirtualCard> {
    fn from(card: RemoteCard) -> Box<dyn vreader::VirtualCard> {
        Box::new(card)
    }
}
