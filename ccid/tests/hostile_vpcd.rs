//! `ccid::vpcd::serve` against a hostile "pcscd": a fake vpcd listener on
//! loopback that sends truncated frames, 64 KiB lengths, one byte at a
//! time, hangs up mid-message and accepts-then-drops in a storm — while a
//! second reader served by another `serve` thread keeps answering. The
//! serve threads never panic, come back for every new connection, and the
//! process's memory stays bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccid::vpcd::{serve, Ended};
use common::{card, rss, SELECT_CCC};
use vreader::ReaderSet;

/// A fake vpcd: the listening side pcscd's driver would be.
struct FakeVpcd {
    listener: TcpListener,
}

impl FakeVpcd {
    fn new() -> FakeVpcd {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        FakeVpcd { listener }
    }

    fn addr(&self) -> String {
        self.listener.local_addr().unwrap().to_string()
    }

    /// The card's next connection (within 10 s).
    fn accept(&self) -> TcpStream {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_nodelay(true).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    return s;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the card did not reconnect");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut payload).unwrap();
    payload
}

/// A well-formed exchange: power on, get the ATR, SELECT.
fn healthy(s: &mut TcpStream) {
    s.write_all(&frame(&[0x01])).unwrap();
    s.write_all(&frame(&[0x04])).unwrap();
    assert_eq!(read_frame(s), cac::DEFAULT_ATR);
    s.write_all(&frame(&SELECT_CCC)).unwrap();
    assert_eq!(read_frame(s), [0x61, 0x0D]);
}

struct Served {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<std::io::Result<Ended>>>,
}

impl Served {
    fn start(set: &Arc<ReaderSet>, name: &str, addr: String) -> Served {
        let id = set.add_reader(name).unwrap();
        let card = card();
        set.insert_card(id, card).unwrap();
        let handle = set.handle(id).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::spawn(move || serve(&addr, &handle, &stop2));
        Served {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread; it must end cleanly, not by a panic.
    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.thread.take().unwrap().join();
        assert!(
            matches!(r, Ok(Ok(Ended::Stopped))),
            "serve ended with {r:?}"
        );
    }
}

#[test]
fn hostile_pcscd_does_not_take_the_card_or_its_neighbour_down() {
    let set = Arc::new(ReaderSet::new());
    let hostile = FakeVpcd::new();
    let good = FakeVpcd::new();
    let victim = Served::start(&set, "victim", hostile.addr());
    let neighbour = Served::start(&set, "neighbour", good.addr());

    // The neighbour is served throughout, from its own thread.
    let mut n = good.accept();
    healthy(&mut n);
    let neighbour_done = Arc::new(AtomicBool::new(false));
    let checker = {
        let done = Arc::clone(&neighbour_done);
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let mut exchanges = 0u32;
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                n.write_all(&frame(&SELECT_CCC)).unwrap();
                assert_eq!(read_frame(&mut n), [0x61, 0x0D]);
                worst = worst.max(t.elapsed());
                exchanges += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (exchanges, worst)
        })
    };

    let mut s = hostile.accept();
    healthy(&mut s);
    let rss_before = rss();

    // 1. A truncated frame, then a hang-up mid-message: the card comes
    //    back on a new connection with a clean decoder.
    s.write_all(&[0x00, 0x0C, 0x00, 0xA4, 0x04]).unwrap();
    drop(s);
    let mut s = hostile.accept();
    healthy(&mut s);

    // 2. The largest length a frame can announce, delivered slowly in
    //    part: the card waits for the rest without buffering beyond it;
    //    the whole 65535-byte APDU is then answered with a status word.
    let mut big = frame(&[0u8; 0xFFFF]);
    big[2..6].copy_from_slice(&[0x00, 0xB0, 0x00, 0x00]);
    s.write_all(&big[..1000]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(&big[1000..]).unwrap();
    let r = read_frame(&mut s);
    assert_eq!(r, [0x67, 0x00], "a 65535-byte APDU of the wrong shape");
    healthy(&mut s);

    // 3. Slow loris: every byte of an exchange in its own segment.
    for b in frame(&SELECT_CCC) {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    assert_eq!(read_frame(&mut s), [0x61, 0x0D]);

    // 4. Hang up in the middle of a 64 KiB frame, many times.
    for _ in 0..20 {
        s.write_all(&big[..30_000]).unwrap();
        drop(s);
        s = hostile.accept();
    }
    healthy(&mut s);

    // 5. Reconnect storm: accept and drop at once. The card keeps coming
    //    back, but backs off instead of spinning.
    drop(s);
    let start = Instant::now();
    let mut storms = 0;
    while start.elapsed() < Duration::from_secs(2) {
        drop(hostile.accept());
        storms += 1;
    }
    assert!(storms >= 3, "the card stopped reconnecting ({storms})");
    assert!(
        storms < 100,
        "{storms} reconnections in 2 s: no back-off after empty sessions"
    );
    let mut s = hostile.accept();
    healthy(&mut s);

    // 6. Frames of every shape the card does not expect.
    for payload in [
        &[][..],
        &[0x03],
        &[0xFF],
        &[0x00, 0x00],
        &[0xFF, 0xFF, 0xFF, 0xFF],
    ] {
        s.write_all(&frame(payload)).unwrap();
    }
    s.write_all(&frame(&[0x04])).unwrap();
    // One-byte control codes it does not know are ignored; everything
    // else is an APDU and gets a status word, in order.
    assert_eq!(read_frame(&mut s), [0x67, 0x00]);
    assert_eq!(read_frame(&mut s), [0x67, 0x00]);
    assert_eq!(read_frame(&mut s), [0x6E, 0x00]);
    assert_eq!(read_frame(&mut s), cac::DEFAULT_ATR);
    healthy(&mut s);

    let rss_after = rss();
    assert!(
        rss_after < rss_before + 32 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after} bytes"
    );

    neighbour_done.store(true, Ordering::Relaxed);
    let (exchanges, worst) = checker.join().unwrap();
    assert!(exchanges > 20, "the neighbour was starved ({exchanges})");
    assert!(
        worst < Duration::from_secs(1),
        "the neighbour waited {worst:?}"
    );
    drop(s);
    victim.finish();
    neighbour.finish();
}

/// What a frame is, its payload, and the exact reply (`None`: no reply).
type BadFrame = (&'static str, &'static [u8], Option<&'static [u8]>);

/// Bad input per vpcd frame, and the exact reply.
#[test]
fn bad_frames_table() {
    use ccid::vpcd::{answer, Decoder, Request};
    let set = ReaderSet::new();
    let id = set.add_reader("table").unwrap();
    let card = card();
    set.insert_card(id, card).unwrap();
    let reader = set.handle(id).unwrap();
    let table: &[BadFrame] = &[
        ("empty payload: an empty APDU", &[], Some(&[0x67, 0x00])),
        ("unknown control code", &[0x03], None),
        ("unknown control code FF", &[0xFF], None),
        (
            "two bytes: shorter than a header",
            &[0x00, 0xA4],
            Some(&[0x67, 0x00]),
        ),
        ("CLA FF", &[0xFF, 0xA4, 0x04, 0x00], Some(&[0x6E, 0x00])),
        (
            "Lc past the end",
            &[0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0],
            Some(&[0x67, 0x00]),
        ),
        (
            "trailing bytes",
            &[0x00, 0xC0, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00],
            Some(&[0x67, 0x00]),
        ),
        (
            "extended Lc of zero",
            &[0x00, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
            Some(&[0x67, 0x00]),
        ),
        (
            "unknown instruction",
            &[0x00, 0xEE, 0x00, 0x00],
            Some(&[0x6D, 0x00]),
        ),
        (
            "secure messaging",
            &[0x0C, 0xA4, 0x04, 0x00],
            Some(&[0x68, 0x82]),
        ),
        (
            "closed logical channel",
            &[0x03, 0xA4, 0x04, 0x00, 0x01, 0xA0],
            Some(&[0x68, 0x81]),
        ),
        (
            "GET RESPONSE with nothing pending",
            &[0x00, 0xC0, 0x00, 0x00, 0x10],
            Some(&[0x6A, 0x88]),
        ),
        (
            "SIGN with no applet selected",
            &[0x00, 0x42, 0x00, 0x00, 0x01, 0x00],
            Some(&[0x6D, 0x00]),
        ),
        ("power off, then an APDU: powered again", &[0x00], None),
        ("GET ATR", &[0x04], Some(&cac::DEFAULT_ATR)),
    ];
    for (what, payload, want) in table {
        let mut stream = (payload.len() as u16).to_be_bytes().to_vec();
        stream.extend_from_slice(payload);
        let mut d = Decoder::new();
        d.extend(&stream);
        let frame = d.next_frame().unwrap();
        assert_eq!(frame, *payload, "{what}");
        let got = answer(&reader, Request::parse(&frame)).unwrap();
        assert_eq!(got.as_deref(), *want, "{what}");
    }
    // A frame's length is all that delimits it: a short stream is not a
    // frame yet, and the decoder asks for exactly the missing bytes.
    let mut d = Decoder::new();
    d.extend(&[0xFF, 0xFF, 0x00]);
    assert_eq!(d.next_frame(), None);
    assert_eq!(d.wanted(), 0xFFFF - 1);
}
