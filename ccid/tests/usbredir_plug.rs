//! `tcp::Options::plugged`: clearing the flag unplugs the device on the
//! live connection (device_disconnect), setting it presents the device
//! again (ep_info, interface_info, device_connect), and a connection made
//! while it is clear presents nothing until it is set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ccid::device::{CcidDevice, DeviceConfig};
use ccid::usbredir::{tcp, wire};
use vreader::ReaderSet;

/// The kinds of the whole 16-byte-header packets in `bytes` (after our
/// 80-byte hello).
fn kinds(bytes: &[u8]) -> Vec<u32> {
    let mut rest = bytes.get(80..).unwrap_or_default();
    let mut out = Vec::new();
    while let Some(h) = wire::Header::parse(rest, 16) {
        let total = 16 + h.length as usize;
        if rest.len() < total {
            break;
        }
        out.push(h.kind);
        rest = &rest[total..];
    }
    out
}

/// Reads until the packet kinds seen satisfy `done`, or 5 s pass.
fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, done: impl Fn(&[u32]) -> bool) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    loop {
        let k = kinds(got);
        if done(&k) {
            return k;
        }
        assert!(Instant::now() < deadline, "timed out; packets so far {k:?}");
        match s.read(&mut buf) {
            Ok(0) => panic!("closed; packets so far {k:?}"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
    }
}

fn hello() -> Vec<u8> {
    let mut h = Vec::new();
    wire::emit_hello("peer", 0xFF, &mut h);
    h
}

fn ack() -> Vec<u8> {
    let mut v = Vec::new();
    wire::Header {
        kind: wire::kind::DEVICE_DISCONNECT_ACK,
        length: 0,
        id: 0,
    }
    .emit(16, &mut v);
    v
}

const CONNECT: u32 = wire::kind::DEVICE_CONNECT;
const DISCONNECT: u32 = wire::kind::DEVICE_DISCONNECT;

fn count(k: &[u32], kind: u32) -> usize {
    k.iter().filter(|&&x| x == kind).count()
}

#[test]
fn unplug_and_plug_on_one_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let set = ReaderSet::new();
    let r = set.add_reader("s0").unwrap();
    let stop = AtomicBool::new(false);
    let plugged = Arc::new(AtomicBool::new(true));
    let options = tcp::Options {
        plugged: Some(Arc::clone(&plugged)),
        ..Default::default()
    };
    std::thread::scope(|scope| {
        let server = scope.spawn(|| {
            tcp::listen(
                listener,
                || CcidDevice::new(DeviceConfig::default(), &set, &[r]),
                &stop,
                &options,
            )
        });
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s.write_all(&hello()).unwrap();
        let mut got = Vec::new();
        let k = read_until(&mut s, &mut got, |k| count(k, CONNECT) == 1);
        assert_eq!(
            k,
            [wire::kind::EP_INFO, wire::kind::INTERFACE_INFO, CONNECT]
        );
        // Unplugged: device_disconnect on the same connection.
        plugged.store(false, Ordering::Relaxed);
        read_until(&mut s, &mut got, |k| count(k, DISCONNECT) == 1);
        s.write_all(&ack()).unwrap();
        // Plugged in again: presented again once the ack is in.
        plugged.store(true, Ordering::Relaxed);
        let k = read_until(&mut s, &mut got, |k| count(k, CONNECT) == 2);
        assert_eq!(
            k[3..],
            [
                DISCONNECT,
                wire::kind::EP_INFO,
                wire::kind::INTERFACE_INFO,
                CONNECT
            ]
        );
        drop(s);
        // A connection made while unplugged: nothing after the hellos
        // until the flag is set.
        plugged.store(false, Ordering::Relaxed);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s.write_all(&hello()).unwrap();
        let mut got = Vec::new();
        std::thread::sleep(Duration::from_millis(300));
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), 80, "only our hello while unplugged");
        plugged.store(true, Ordering::Relaxed);
        let k = read_until(&mut s, &mut got, |k| count(k, CONNECT) == 1);
        assert_eq!(
            k,
            [wire::kind::EP_INFO, wire::kind::INTERFACE_INFO, CONNECT]
        );
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap().unwrap();
    });
}
