//! `ccid::serial::serve` (libccid's serial "Twin" protocol over a pty)
//! against a hostile driver writing to the slave side: line noise,
//! truncated frames left hanging, lengths over any buffer, bad LRCs, one
//! byte at a time, the driver closing and reopening the tty mid-frame in
//! a storm — while a second pty served by another thread keeps
//! answering. The serve threads never fail or panic and memory stays
//! bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccid::device::{CcidDevice, DeviceConfig};
use ccid::serial::{encode_frame, serve, Frame, Pty, ReaderType, ServeOptions, Twin, TwinDecoder};
use common::{card, rss, SELECT_CCC};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use vreader::ReaderSet;

fn message(ty: u8, seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend_from_slice(&(data.len() as u32).to_le_bytes());
    m.extend_from_slice(&[0, seq, 0, 0, 0]);
    m.extend_from_slice(data);
    m
}

fn frame(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(m, &mut out);
    out
}

/// A pty served on its own thread with a card in its one slot.
struct Served {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Served {
    fn start(set: &Arc<ReaderSet>, name: &str) -> Served {
        let id = set.add_reader(name).unwrap();
        let card = card();
        set.insert_card(id, card).unwrap();
        let pty = Pty::open().unwrap();
        let path = pty.path().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, set2) = (Arc::clone(&stop), Arc::clone(set));
        let thread = std::thread::spawn(move || {
            let mut device = CcidDevice::new(DeviceConfig::gempc_twin(), &set2, &[id]).unwrap();
            let mut twin = Twin::new(ReaderType::Sec1210Urt);
            let options = ServeOptions {
                tick: Duration::from_millis(100),
                stale_frame: Duration::from_millis(300),
                card_delay: Duration::ZERO,
            };
            serve(&pty, &mut device, &mut twin, &options, &stop2)
        });
        Served {
            path,
            stop,
            thread: Some(thread),
        }
    }

    /// Opens the tty as the driver does.
    fn open(&self) -> Tty {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits())
            .open(&self.path)
            .unwrap();
        Tty {
            file,
            decoder: TwinDecoder::new(65_554),
        }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.thread.take().unwrap().join();
        assert!(matches!(r, Ok(Ok(()))), "serve ended with {r:?}");
    }
}

/// The driver's end of the line.
struct Tty {
    file: File,
    decoder: TwinDecoder,
}

impl Tty {
    fn send(&mut self, bytes: &[u8]) {
        self.file.write_all(bytes).unwrap();
    }

    /// The next frame from the reader, skipping notifications and time
    /// requests (libccid does the same), within 5 s.
    fn next_frame(&mut self) -> Frame {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(f) = self.decoder.next_frame() {
                return f;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no answer from the reader");
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            poll(&mut fds, PollTimeout::from(ms)).unwrap();
            let mut buf = [0u8; 4096];
            if fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
            {
                let n = self.file.read(&mut buf).unwrap();
                self.decoder.push(&buf[..n]);
            }
        }
    }

    /// The answer to the message with this `bSeq`.
    fn answer(&mut self, seq: u8) -> Vec<u8> {
        loop {
            match self.next_frame() {
                Frame::Message(m) if m[6] == seq && (0x80..=0x84).contains(&m[0]) => return m,
                Frame::Message(_) => {}
                other => panic!("expected an answer, got {other:?}"),
            }
        }
    }

    fn expect_nak(&mut self) {
        assert_eq!(self.next_frame(), Frame::Nak);
    }

    /// A well-formed exchange: slot status, power on, SELECT.
    fn healthy(&mut self, seq: u8) {
        self.send(&frame(&message(0x65, seq, &[])));
        let a = self.answer(seq);
        assert_eq!(&a[..7], &[0x81, 0, 0, 0, 0, 0, seq]);
        assert_eq!(a[8], 0x00, "slot status error {a:02X?}");
        self.send(&frame(&message(0x62, seq.wrapping_add(1), &[])));
        let a = self.answer(seq.wrapping_add(1));
        assert_eq!(&a[10..], cac::DEFAULT_ATR);
        self.send(&frame(&message(0x6F, seq.wrapping_add(2), &SELECT_CCC)));
        let a = self.answer(seq.wrapping_add(2));
        assert_eq!(&a[10..], [0x61, 0x0D]);
    }
}

#[test]
fn hostile_driver_does_not_take_the_reader_or_its_neighbour_down() {
    let set = Arc::new(ReaderSet::new());
    let victim = Served::start(&set, "victim");
    let neighbour = Served::start(&set, "neighbour");

    let done = Arc::new(AtomicBool::new(false));
    let checker = {
        let mut n = neighbour.open();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let (mut worst, mut count, mut seq) = (Duration::ZERO, 0u32, 0u8);
            while !done.load(Ordering::Relaxed) {
                let t = Instant::now();
                n.healthy(seq);
                worst = worst.max(t.elapsed());
                count += 1;
                seq = seq.wrapping_add(3);
                std::thread::sleep(Duration::from_millis(5));
            }
            (count, worst)
        })
    };

    let mut t = victim.open();
    t.healthy(0);
    let rss_before = rss();

    // 1. Line noise without a SYNC byte is skipped.
    t.send(&[0x00, 0xFF, 0x55, 0xAA, 0x80, 0x50].repeat(500));
    t.healthy(10);

    // 2. A truncated frame left hanging is dropped once stale.
    let whole = frame(&message(0x6F, 20, &SELECT_CCC));
    t.send(&whole[..9]);
    std::thread::sleep(Duration::from_millis(700));
    t.healthy(21);

    // 3. A length over any buffer: NAKed and dropped, nothing buffered.
    let mut huge = frame(&message(0x6F, 30, &[]));
    huge[3..7].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    t.send(&huge);
    t.expect_nak();
    t.send(&[0x42; 1000]);
    t.healthy(31);

    // 4. A bad LRC, an unknown control byte: NAKed; a NAK from the host
    //    repeats the last answer.
    let mut bad = frame(&message(0x65, 40, &[]));
    *bad.last_mut().unwrap() ^= 0xFF;
    t.send(&bad);
    t.expect_nak();
    t.send(&[0x03, 0x07]);
    t.expect_nak();
    t.send(&ccid::serial::NAK_FRAME);
    let again = t.answer(33);
    assert_eq!(&again[10..], [0x61, 0x0D]);

    // 5. Slow loris: a frame one byte at a time (gaps below the stale
    //    limit) is answered.
    for b in frame(&message(0x65, 50, &[])) {
        t.send(&[b]);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(t.answer(50)[..7], [0x81, 0, 0, 0, 0, 0, 50]);

    // 6. The driver closes the tty mid-frame and reopens it, in a storm.
    for i in 0..100u8 {
        t.send(&whole[..usize::from(i % 20)]);
        drop(t);
        t = victim.open();
    }
    // Whatever the reader NAKed meanwhile waits in the tty: flush it, as
    // libccid does when it opens the line.
    std::thread::sleep(Duration::from_millis(700));
    nix::sys::termios::tcflush(&t.file, nix::sys::termios::FlushArg::TCIFLUSH).unwrap();
    t.decoder.clear();
    t.healthy(60);

    // 7. Messages the device refuses still get a defined answer: a slot
    //    that does not exist fails with bError 05.
    let mut other_slot = message(0x65, 70, &[]);
    other_slot[5] = 5;
    t.send(&frame(&other_slot));
    let a = t.answer(70);
    assert_eq!((a[7] & 0xC0, a[8]), (0x40, 0x05), "{a:02X?}");
    t.healthy(71);

    let rss_after = rss();
    assert!(
        rss_after < rss_before + 32 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after} bytes"
    );
    done.store(true, Ordering::Relaxed);
    let (count, worst) = checker.join().unwrap();
    assert!(count > 10, "the neighbour was starved ({count})");
    assert!(
        worst < Duration::from_secs(2),
        "the neighbour waited {worst:?}"
    );
    drop(t);
    victim.finish();
    neighbour.finish();
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(64))]

    /// After any bytes from the host, cut anywhere, and once the host
    /// gives up on a partial frame, a GetSlotStatus frame gets exactly its
    /// answer (sans-IO: decoder, Twin and device as the pty loop drives
    /// them).
    #[test]
    fn after_any_garbage_the_reader_still_answers(
        chunks in proptest::collection::vec(
            proptest::collection::vec(proptest::num::u8::ANY, 0..120), 0..24),
        framed in proptest::collection::vec(
            proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..6),
    ) {
        let set = ReaderSet::new();
        let r = set.add_reader("p").unwrap();
        let card = card();
        set.insert_card(r, card).unwrap();
        let mut dev = CcidDevice::new(DeviceConfig::gempc_twin(), &set, &[r]).unwrap();
        let mut twin = Twin::new(ReaderType::GemPcTwin);
        let mut decoder = TwinDecoder::new(dev.config().max_message_len as usize);
        let mut out = Vec::new();
        let mut feed = |bytes: &[u8], decoder: &mut TwinDecoder, out: &mut Vec<u8>| {
            decoder.push(bytes);
            while let Some(f) = decoder.next_frame() {
                twin.on_frame(f, &mut dev, out);
                while let Some(job) = dev.poll_job() {
                    let _ = dev.complete(job.run());
                }
                twin.flush(&mut dev, out);
            }
        };
        for c in &chunks {
            feed(c, &mut decoder, &mut out);
        }
        // Well-framed messages with garbage inside.
        for m in &framed {
            feed(&frame(m), &mut decoder, &mut out);
        }
        decoder.clear();
        out.clear();
        feed(&frame(&message(0x65, 0xA5, &[])), &mut decoder, &mut out);
        let mut host = TwinDecoder::new(65_554);
        host.push(&out);
        let mut answer = None;
        while let Some(f) = host.next_frame() {
            if let Frame::Message(m) = f {
                answer = Some(m);
            }
        }
        let answer = answer.expect("an answer");
        proptest::prop_assert_eq!(&answer[..7], &[0x81, 0, 0, 0, 0, 0, 0xA5][..]);
        proptest::prop_assert_eq!(answer[8], 0x00);
    }
}
