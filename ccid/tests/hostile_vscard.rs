//! VSCard (QEMU's smart card passthrough protocol) against hostile peers,
//! over loopback TCP: what `tests/tests/vscard_loopback.rs` (exact bytes,
//! oversize lengths, bad magic, reader caps) does not cover — slow-loris
//! peers, hang-ups in the middle of a message, reconnect storms, silent
//! connections that would hold every slot, and a client vanishing with a
//! command outstanding — each while a well-behaved client's card keeps
//! answering, with memory sampled before and after.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ccid::vscard::connect::{self, Options};
use ccid::vscard::server::{RemoteCard, RemoteError, Server, ServerEvent, ServerOptions};
use ccid::vscard::wire::{Message, UNDEFINED_READER_ID, VERSION};
use common::{card, rss, SELECT_CCC};
use vreader::ReaderSet;

fn msg(m: Message<'_>, reader: u32) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(reader, &mut out).unwrap();
    out
}

fn init() -> Vec<u8> {
    msg(
        Message::Init {
            version: VERSION,
            capabilities: 0,
        },
        UNDEFINED_READER_ID,
    )
}

struct Running {
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    fn start(options: ServerOptions) -> Running {
        let server = Arc::new(Server::bind_with("127.0.0.1:0", options).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
            std::thread::spawn(move || server.run(&stop))
        };
        Running {
            server,
            stop,
            thread: Some(thread),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr().unwrap()
    }

    /// The first card inserted from now on, within 10 s.
    fn next_card(&self) -> RemoteCard {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(ServerEvent::CardInserted { card, .. }) =
                self.server.next_event(Duration::from_millis(100))
            {
                return card;
            }
        }
        panic!("no card inserted within 10 s");
    }

    /// Stops the server; its thread must end cleanly.
    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.thread.take().unwrap().join();
        assert!(matches!(r, Ok(Ok(()))), "server ended with {r:?}");
    }
}

/// The library's client with one card, on its own thread.
struct Client {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<std::io::Result<connect::Ended>>>,
}

impl Client {
    fn start(addr: SocketAddr, name: &str) -> Client {
        let set = Arc::new(ReaderSet::new());
        let r = set.add_reader(name).unwrap();
        let card = card();
        set.insert_card(r, card).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let options = Options {
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..Options::default()
        };
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || connect::run_with(&addr.to_string(), &set, &stop, &options))
        };
        Client {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.thread.take().unwrap().join();
        assert!(
            matches!(r, Ok(Ok(connect::Ended::Stopped))),
            "client ended with {r:?}"
        );
    }
}

fn select(card: &RemoteCard) -> Duration {
    let t = Instant::now();
    let mut r = Vec::new();
    card.transmit(&SELECT_CCC, &mut r).unwrap();
    assert_eq!(r, [0x61, 0x0D]);
    t.elapsed()
}

/// True when the peer closed the connection within `within`.
fn closed(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn server_survives_slow_truncated_and_storming_clients() {
    let server = Running::start(ServerOptions {
        timeout: Duration::from_secs(5),
        init_timeout: Duration::from_millis(800),
        ..ServerOptions::default()
    });
    let good = Client::start(server.addr(), "good");
    let card = server.next_card();
    select(&card);
    let rss_before = rss();

    // The good client's card answers throughout, from another thread.
    let done = Arc::new(AtomicBool::new(false));
    let checker = {
        let (card, done) = (card.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            let (mut worst, mut n) = (Duration::ZERO, 0u32);
            while !done.load(Ordering::Relaxed) {
                worst = worst.max(select(&card));
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (n, worst)
        })
    };

    // 1. Slow loris: a whole session one byte at a time is served.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_nodelay(true).unwrap();
    let mut hello = init();
    hello.extend_from_slice(&msg(
        Message::ReaderAdd { name: b"slow" },
        UNDEFINED_READER_ID,
    ));
    for b in &hello {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut got = vec![0u8; 24 + 16];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_exact(&mut got).unwrap();
    assert_eq!(got[..24], init()[..]);
    assert_eq!(got[24..], [0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    drop(s);

    // 2. Hang-ups inside a header and inside a payload, in a storm.
    let atr = msg(Message::Atr(&cac::DEFAULT_ATR), 0);
    for i in 0..200usize {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        let mut bytes = init();
        bytes.extend_from_slice(&atr);
        let cut = i % bytes.len();
        let _ = s.write_all(&bytes[..cut]);
    }

    // 3. Silent connections filling every slot are closed after the Init
    //    timeout, and a new client gets in.
    let silent: Vec<TcpStream> = (0..ccid::vscard::server::MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    for mut s in silent {
        assert!(
            closed(&mut s, Duration::from_secs(10)),
            "a silent client was kept"
        );
    }
    // A client dribbling its Init slower than the Init timeout allows is
    // closed before it finishes.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    let start = Instant::now();
    let mut cut_off = false;
    for b in init() {
        if s.write_all(&[b]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        cut_off || closed(&mut s, Duration::from_secs(1)),
        "a dribbling client was kept"
    );
    assert!(start.elapsed() < Duration::from_secs(4));
    drop(s);
    let late = Client::start(server.addr(), "late");
    let late_card = server.next_card();
    select(&late_card);

    // 4. A client vanishes with a command outstanding: the transmit fails
    //    at once, not after the timeout.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(&init()).unwrap();
    s.write_all(&msg(
        Message::ReaderAdd { name: b"vanishing" },
        UNDEFINED_READER_ID,
    ))
    .unwrap();
    s.write_all(&atr).unwrap();
    let vanishing = server.next_card();
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        let mut r = Vec::new();
        (vanishing.transmit(&SELECT_CCC, &mut r), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    drop(s);
    let (result, took) = t.join().unwrap();
    assert_eq!(result, Err(RemoteError::Disconnected));
    assert!(took < Duration::from_secs(3), "waited {took:?}");

    let rss_after = rss();
    assert!(
        rss_after < rss_before + 32 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after} bytes"
    );
    done.store(true, Ordering::Relaxed);
    let (n, worst) = checker.join().unwrap();
    assert!(n > 20, "the good client was starved ({n})");
    assert!(
        worst < Duration::from_secs(1),
        "the good client waited {worst:?}"
    );
    late.finish();
    good.finish();
    server.finish();
}

/// A fake host that accepts, talks a little, and drops.
#[test]
fn client_survives_a_host_that_storms_and_dribbles() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = Client::start(addr, "c");
    listener.set_nonblocking(false).unwrap();
    let rss_before = rss();

    // 1. Reconnect storm: accept and drop, 60 times. The client comes
    //    back every time (with back-off).
    for _ in 0..60 {
        let (s, _) = listener.accept().unwrap();
        drop(s);
    }
    // 2. Hang up in the middle of the host's Init, many times.
    let host_init = init();
    for i in 0..30usize {
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(&host_init[..i % host_init.len()]);
    }
    // 3. A slow host: its Init one byte at a time; the client still
    //    completes the session and answers an APDU.
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut theirs = [0u8; 24];
    s.read_exact(&mut theirs).unwrap();
    assert_eq!(theirs[..], host_init[..]);
    for b in &host_init {
        s.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    // Cleanup ReaderRemove, then ReaderAdd.
    let mut two = [0u8; 12 + 12 + 1];
    s.read_exact(&mut two).unwrap();
    let ok = msg(Message::Error(ccid::vscard::wire::ErrorCode::Success), 0);
    s.write_all(&ok).unwrap();
    s.write_all(&ok).unwrap();
    let mut atr = [0u8; 12 + 15];
    s.read_exact(&mut atr).unwrap();
    assert_eq!(atr[12..], cac::DEFAULT_ATR);
    s.write_all(&ok).unwrap();
    for b in msg(Message::Apdu(&SELECT_CCC), 0) {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut answer = [0u8; 14];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(answer, [0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 2, 0x61, 0x0D]);

    let rss_after = rss();
    assert!(
        rss_after < rss_before + 32 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after} bytes"
    );
    // The client says goodbye on stop; let it.
    let reader = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });
    client.finish();
    let _ = reader.join();
}
