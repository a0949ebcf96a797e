//! A hostile or buggy usbredir peer: truncated headers, lengths past any
//! buffer, unknown types, data for endpoints that do not exist, a
//! disconnect in the middle of a transfer. The host never panics, keeps
//! its buffers bounded, answers with the protocol's error statuses, and
//! still serves a well-behaved peer afterwards (also over TCP).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ccid::device::{CcidDevice, DeviceConfig};
use ccid::usbredir::{tcp, wire, DataPath, UsbRedirHost};
use hex_literal::hex;
use vreader::ReaderSet;

fn host() -> (ReaderSet, UsbRedirHost) {
    host_with(DataPath::Bulk)
}

fn host_with(path: DataPath) -> (ReaderSet, UsbRedirHost) {
    let set = ReaderSet::new();
    let r = set.add_reader("s0").unwrap();
    let card = vcac_sources::embedded::default_card(
        &cac::keys::RustCrypto,
        rand_core::UnwrapErr(getrandom::SysRng),
    )
    .unwrap();
    set.insert_card(r, card).unwrap();
    let dev = CcidDevice::new(DeviceConfig::default(), &set, &[r]).unwrap();
    (set, UsbRedirHost::new(dev, "hostile").with_data_path(path))
}

fn hello() -> Vec<u8> {
    let mut h = Vec::new();
    wire::emit_hello("peer", 0xFF, &mut h);
    h
}

fn pkt(kind: u32, id: u64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    wire::Header {
        kind,
        length: body.len() as u32,
        id,
    }
    .emit(16, &mut v);
    v.extend_from_slice(body);
    v
}

fn drain(h: &mut UsbRedirHost) -> Vec<u8> {
    let mut o = Vec::new();
    h.poll_transmit(&mut o);
    o
}

/// GetSlotStatus with `seq` as the guest sends it on `path`: bulk OUT and
/// a bulk IN request, or an interrupt packet and interrupt receiving.
fn get_slot_status(path: DataPath, id: u64, seq: u8) -> Vec<u8> {
    let ccid = [0x65, 0, 0, 0, 0, 0, seq, 0, 0, 0];
    match path {
        DataPath::Bulk => {
            let mut body = hex!("03 00 0A00 00000000 0000").to_vec();
            body.extend_from_slice(&ccid);
            let mut w = pkt(101, id, &body);
            w.extend_from_slice(&pkt(101, id + 1, &hex!("82 00 0A00 00000000 0000")));
            w
        }
        DataPath::Interrupt => {
            let mut body = hex!("03 00 0A00").to_vec();
            body.extend_from_slice(&ccid);
            let mut w = pkt(103, id, &body);
            w.extend_from_slice(&pkt(15, 0, &[0x82]));
            w
        }
    }
}

/// A GetSlotStatus round trip works (the host is still sane).
fn assert_serves(h: &mut UsbRedirHost, id: u64) {
    h.receive(&pkt(6, id, &[1])).unwrap();
    drain(h);
    h.receive(&get_slot_status(h.data_path(), id + 1, 7))
        .unwrap();
    let o = drain(h);
    assert_eq!(
        o[o.len() - 10..],
        hex!("81 00000000 00 07 01 00 00"),
        "a GetSlotStatus answer"
    );
}

#[test]
fn no_hello_first_ends_the_stream() {
    let (_s, mut h) = host();
    assert!(h.receive(&pkt(101, 1, &[0; 10])).is_err());
    let (_s, mut h) = host();
    // A hello announcing 4 GiB.
    assert!(h.receive(&hex!("00000000 FFFFFFFF 00000000")).is_err());
    let (_s, mut h) = host();
    assert!(h.receive(&hex!("00000000 10000000 00000000")).is_err());
}

#[test]
fn truncated_headers_and_byte_at_a_time() {
    for path in [DataPath::Bulk, DataPath::Interrupt] {
        truncated_headers(path);
    }
}

fn truncated_headers(path: DataPath) {
    let (_s, mut h) = host_with(path);
    let mut stream = hello();
    stream.extend_from_slice(&pkt(100, 7, &hex!("80 06 80 00 0001 0000 1200")));
    for b in &stream {
        h.receive(&[*b]).unwrap();
        assert!(h.buffered() <= 16 + wire::MAX_BODY as usize);
    }
    let o = drain(&mut h);
    assert_eq!(o[o.len() - 18..o.len() - 16], hex!("12 01"));
    // A header cut short stays buffered, bounded, and completes later.
    h.receive(&pkt(7, 3, &[])[..9]).unwrap();
    assert_eq!(h.buffered(), 9);
    h.receive(&pkt(7, 3, &[])[9..]).unwrap();
    assert_eq!(h.buffered(), 0);
    assert_serves(&mut h, 100);
}

#[test]
fn lengths_past_any_buffer_are_skipped_without_allocating() {
    let (_s, mut h) = host();
    h.receive(&hello()).unwrap();
    drain(&mut h);
    // A bulk packet announcing 3 GiB: skipped as it streams in.
    let mut big = Vec::new();
    wire::Header {
        kind: 101,
        length: 3 << 30,
        id: 1,
    }
    .emit(16, &mut big);
    h.receive(&big).unwrap();
    let chunk = vec![0xAAu8; 1 << 20];
    for _ in 0..3 * 1024 {
        h.receive(&chunk).unwrap();
        assert_eq!(h.buffered(), 0);
    }
    assert!(drain(&mut h).is_empty());
    // An IN request asking for 4 GiB is held (nothing is allocated for it)
    // and gets the real, short answer.
    h.receive(&pkt(6, 2, &[1])).unwrap();
    drain(&mut h);
    h.receive(&pkt(101, 3, &hex!("82 00 FFFF 00000000 FFFF")))
        .unwrap();
    let mut body = hex!("03 00 0A00 00000000 0000").to_vec();
    body.extend_from_slice(&hex!("65 00000000 00 01 000000"));
    h.receive(&pkt(101, 4, &body)).unwrap();
    let o = drain(&mut h);
    assert_eq!(o[o.len() - 10..], hex!("81 00000000 00 01 01 00 00"));
    // A bulk OUT whose length field lies about its data: inval.
    let mut lie = hex!("03 00 4000 00000000 0000").to_vec();
    lie.extend_from_slice(&[0x65; 10]);
    h.receive(&pkt(101, 5, &lie)).unwrap();
    assert_eq!(
        drain(&mut h),
        hex!("65000000 0A000000 0500000000000000 03 02 0000 00000000 0000")
    );
    assert_serves(&mut h, 200);
}

#[test]
fn unknown_types_and_wrong_directions_are_ignored() {
    for path in [DataPath::Bulk, DataPath::Interrupt] {
        unknown_types(path);
    }
}

fn unknown_types(path: DataPath) {
    let (_s, mut h) = host_with(path);
    h.receive(&hello()).unwrap();
    drain(&mut h);
    // Unknown type 99 followed by a valid packet in the same write (what
    // aborts QEMU's own parser).
    let mut w = pkt(99, 1, &[1, 2, 3]);
    w.extend_from_slice(&pkt(7, 2, &[]));
    // Host-to-guest types, a short type header, extra bytes on reset.
    w.extend_from_slice(&pkt(1, 3, &[0; 10]));
    w.extend_from_slice(&pkt(100, 4, &[0x80, 6]));
    w.extend_from_slice(&pkt(3, 5, &[1, 2]));
    // Iso and interrupt OUT, streams, bulk receiving: refused.
    w.extend_from_slice(&pkt(102, 6, &hex!("01 00 0000")));
    w.extend_from_slice(&pkt(103, 7, &hex!("02 00 0100 FF")));
    w.extend_from_slice(&pkt(18, 8, &hex!("00000000 00000000")));
    w.extend_from_slice(&pkt(25, 9, &hex!("00000000 00000000 82 00")));
    h.receive(&w).unwrap();
    let o = drain(&mut h);
    let expect = [
        &hex!("08000000 02000000 0200000000000000 00 00")[..],
        &hex!("66000000 04000000 0600000000000000 01 02 0000")[..],
        &hex!("67000000 04000000 0700000000000000 02 02 0000")[..],
        &hex!("14000000 09000000 0800000000000000 00000000 00000000 02")[..],
        &hex!("1B000000 06000000 0900000000000000 00000000 82 02")[..],
    ]
    .concat();
    assert_eq!(o, expect);
    assert_serves(&mut h, 300);
}

#[test]
fn data_for_endpoints_that_do_not_exist() {
    let (_s, mut h) = host();
    h.receive(&hello()).unwrap();
    drain(&mut h);
    for (id, ep) in [(1u64, 0x05u8), (2, 0x85), (3, 0x81), (4, 0x00)] {
        let mut b = vec![ep, 0, 4, 0, 0, 0, 0, 0, 0, 0];
        if ep & 0x80 == 0 {
            b.extend_from_slice(&[1, 2, 3, 4]);
        }
        h.receive(&pkt(101, id, &b)).unwrap();
        let o = drain(&mut h);
        assert_eq!(o[16..18], [ep, 2], "endpoint {ep:02X}: inval");
    }
    // More held IN requests than allowed: the extra ones are refused.
    for id in 0..(ccid::usbredir::MAX_HELD_IN as u64 + 5) {
        h.receive(&pkt(101, 1000 + id, &hex!("82 00 4000 00000000 0000")))
            .unwrap();
    }
    assert_eq!(h.held_in_requests(), ccid::usbredir::MAX_HELD_IN);
    assert_eq!(drain(&mut h).len(), 5 * 26);
}

#[test]
fn interrupt_data_for_endpoints_and_lengths_that_do_not_fit() {
    let (_s, mut h) = host_with(DataPath::Interrupt);
    h.receive(&hello()).unwrap();
    h.receive(&pkt(6, 1, &[1])).unwrap();
    drain(&mut h);
    // Interrupt OUT data for endpoints that are not the data OUT one, a
    // length field that lies, a header cut short: inval, length 0.
    for (id, body) in [
        (2u64, hex!("05 00 0400 01020304").to_vec()),
        (3, hex!("85 00 0400 01020304").to_vec()),
        (4, hex!("81 00 0400 01020304").to_vec()),
        (5, hex!("00 00 0400 01020304").to_vec()),
        (6, hex!("03 00 FFFF 65000000").to_vec()),
        (7, hex!("03 00 0000 65").to_vec()),
    ] {
        h.receive(&pkt(103, id, &body)).unwrap();
        let o = drain(&mut h);
        assert_eq!(o[8..16], id.to_le_bytes());
        assert_eq!(o[16..20], [body[0], 2, 0, 0], "packet {id}: inval");
    }
    // A bulk packet for the data endpoints: inval (they are interrupt).
    h.receive(&pkt(101, 8, &hex!("82 00 0A00 00000000 0000")))
        .unwrap();
    assert_eq!(drain(&mut h)[16..18], [0x82, 2]);
    // Commands while QEMU never polls: the device's queue fills, then the
    // held OUT packets; past those each one is refused with ioerror.
    // Nothing grows without bound, and nothing is pushed.
    let mut refused = 0;
    for id in 0..200u64 {
        let ccid = [0x65, 0, 0, 0, 0, 0, id as u8, 0, 0, 0];
        let mut body = hex!("03 00 0A00").to_vec();
        body.extend_from_slice(&ccid);
        h.receive(&pkt(103, 100 + id, &body)).unwrap();
        h.run_jobs();
        let o = drain(&mut h);
        if o.is_empty() {
            continue;
        }
        assert_eq!(o.len(), 20, "an ack or a refusal, no answer");
        if o[17] == 3 {
            refused += 1;
        }
    }
    assert!(refused > 150, "{refused} refused");
    // QEMU starts receiving: the queued answers come, then service goes on.
    h.receive(&pkt(15, 0, &[0x82])).unwrap();
    let o = drain(&mut h);
    assert!(o.len() > 18 + 30, "queued answers pushed");
    assert_serves(&mut h, 500);
}

#[test]
fn a_disconnect_mid_transfer_then_a_new_peer_is_served() {
    for path in [DataPath::Bulk, DataPath::Interrupt] {
        disconnect_mid_transfer(path);
    }
}

fn disconnect_mid_transfer(path: DataPath) {
    // Over TCP: a peer sends half a command and hangs up; the next one is
    // served by a fresh session and gets answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let set = ReaderSet::new();
    let r = set.add_reader("s0").unwrap();
    let card = vcac_sources::embedded::default_card(
        &cac::keys::RustCrypto,
        rand_core::UnwrapErr(getrandom::SysRng),
    )
    .unwrap();
    set.insert_card(r, card).unwrap();
    let stop = AtomicBool::new(false);
    /// Stops the server even when an assertion fails, so the scope ends.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let _guard = StopOnDrop(&stop);
        let server = scope.spawn(|| {
            tcp::listen(
                listener,
                || CcidDevice::new(DeviceConfig::default(), &set, &[r]),
                &stop,
                &tcp::Options {
                    data_path: path,
                    ..Default::default()
                },
            )
        });
        // Peer 1: hello, then half a bulk packet, then gone.
        {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&hello()).unwrap();
            let mut half = hex!("03 00 0A00 00000000 0000").to_vec();
            half.extend_from_slice(&hex!("65 00000000 00 07 000000"));
            let p = pkt(101, 1, &half);
            s.write_all(&p[..20]).unwrap();
        }
        // Peer 2: a whole exchange.
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&hello()).unwrap();
        s.write_all(&pkt(6, 2, &[1])).unwrap();
        s.write_all(&get_slot_status(path, 3, 9)).unwrap();
        let want = hex!("81 00000000 00 09 01 00 00");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(want.len()).any(|w| w == want) {
            let n = s.read(&mut buf).expect("the second peer gets answers");
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
            assert!(got.len() < 1 << 20);
        }
        // Stop: the device is unplugged (device_disconnect) before close.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            rest.windows(16)
                .any(|w| w == hex!("02000000 00000000 0000000000000000")),
            "no device_disconnect"
        );
        server.join().unwrap().unwrap();
    });
}
