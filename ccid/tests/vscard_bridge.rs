//! A Rust VMM takes a remote card into its CCID device model: a VSCard
//! client (the library behind `vcac passthru`) connects to the VSCard
//! server over TCP, the bridge puts its card in the VMM's reader slot, and
//! the guest side of the CCID device reads a certificate, signs, and sees
//! the card come and go.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ccid::device::{CcidDevice, DeviceConfig};
use ccid::vscard::bridge::Bridge;
use ccid::vscard::connect;
use ccid::vscard::server::Server;
use common::card;
use vreader::ReaderSet;

/// One CCID message through the device; returns (message type, bStatus,
/// bError, data).
fn ccid(device: &mut CcidDevice, seq: &mut u8, kind: u8, body: &[u8]) -> (u8, u8, u8, Vec<u8>) {
    *seq = seq.wrapping_add(1);
    let mut msg = vec![kind];
    msg.extend_from_slice(&(body.len() as u32).to_le_bytes());
    msg.extend_from_slice(&[0, *seq, 0, 0, 0]);
    msg.extend_from_slice(body);
    device.handle_message(&msg).unwrap();
    device.run_jobs();
    let r = device.poll_response().expect("a response");
    assert_eq!(r[6], *seq, "bSeq echoed");
    (r[0], r[7], r[8], r[10..].to_vec())
}

/// A T=0 exchange as a TPDU-level host does it: send, then follow 61 xx
/// with GET RESPONSE. Returns data and status word.
fn t0(device: &mut CcidDevice, seq: &mut u8, apdu: &[u8]) -> (Vec<u8>, [u8; 2]) {
    let (kind, status, _, mut r) = ccid(device, seq, 0x6F, apdu);
    assert_eq!((kind, status), (0x80, 0x00), "DataBlock, success");
    let mut data = Vec::new();
    loop {
        let sw = [r[r.len() - 2], r[r.len() - 1]];
        data.extend_from_slice(&r[..r.len() - 2]);
        if sw[0] != 0x61 {
            return (data, sw);
        }
        let (_, _, _, next) = ccid(device, seq, 0x6F, &[0x00, 0xC0, 0x00, 0x00, sw[1]]);
        r = next;
    }
}

fn wait(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_remote_card_reaches_the_guest_through_the_ccid_device_model() {
    let stop = Arc::new(AtomicBool::new(false));

    // The VMM: a VSCard server, one reader slot, a CCID device over it.
    let server = Arc::new(Server::bind("127.0.0.1:0").unwrap());
    let addr = server.local_addr().unwrap().to_string();
    let vmm = Arc::new(ReaderSet::new());
    let slot = vmm.add_reader("CCID slot 0").unwrap();
    let device = Arc::new(Mutex::new(
        CcidDevice::new(DeviceConfig::default(), &vmm, &[slot]).unwrap(),
    ));
    let threads = vec![
        {
            let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
            std::thread::spawn(move || server.run(&stop).unwrap())
        },
        {
            let (server, vmm, stop) = (Arc::clone(&server), Arc::clone(&vmm), Arc::clone(&stop));
            std::thread::spawn(move || Bridge::new(&[slot]).run(&server, &vmm, &stop))
        },
    ];

    // The card's side: `vcac passthru`'s library with the default card.
    let cards = Arc::new(ReaderSet::new());
    let reader = cards.add_reader("vcac 0").unwrap();
    cards.insert_card(reader, card()).unwrap();
    let client = {
        let (cards, stop, addr) = (Arc::clone(&cards), Arc::clone(&stop), addr.clone());
        std::thread::spawn(move || connect::run(&addr, &cards, &stop).unwrap())
    };

    // The guest sees the card arrive (present + changed), powers it on.
    wait("the card in the slot", || vmm.card_present(slot).unwrap());
    let mut seq = 0u8;
    let mut dev = device.lock().unwrap();
    assert_eq!(dev.poll_interrupt(), Some(vec![0x50, 0x03]));
    let (kind, status, _, atr) = ccid(&mut dev, &mut seq, 0x62, &[]);
    assert_eq!((kind, status), (0x80, 0x00));
    assert_eq!(atr, cac::DEFAULT_ATR);

    // Read certificate 0 with T=0 TPDUs, as libccid + OpenSC would.
    let (_, sw) = t0(
        &mut dev,
        &mut seq,
        &[
            0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00,
        ],
    );
    assert_eq!(sw, [0x90, 0x00]);
    let (len, sw) = t0(
        &mut dev,
        &mut seq,
        &[0x00, 0x52, 0x00, 0x00, 0x02, 0x02, 0x02],
    );
    assert_eq!(sw, [0x90, 0x00]);
    let total = u16::from_le_bytes([len[0], len[1]]) as usize;
    let mut value = Vec::new();
    while value.len() < total {
        let off = (2 + value.len()) as u16;
        let n = (total - value.len()).min(0xF0) as u8;
        let [hi, lo] = off.to_be_bytes();
        let (chunk, sw) = t0(&mut dev, &mut seq, &[0x00, 0x52, hi, lo, 0x02, 0x02, n]);
        assert_eq!(sw, [0x90, 0x00]);
        value.extend_from_slice(&chunk);
    }
    let der = cac::config::certificate_der(certs_fixtures::default_card::ID0_PEM).unwrap();
    assert_eq!(value[0], 0x00);
    assert_eq!(&value[1..], &der[..], "certificate through VSCard + CCID");

    // Log in and sign; the remote card's signature equals a local card's.
    let mut verify = vec![0x00, 0x20, 0x00, 0x00, 0x08];
    verify.extend_from_slice(b"12345678");
    assert_eq!(t0(&mut dev, &mut seq, &verify).1, [0x90, 0x00]);
    let mut block = vec![0x00, 0x01];
    block.resize(236, 0xFF);
    block.push(0x00);
    block.resize(256, 0x5A);
    let mut first = vec![0x00, 0x42, 0x80, 0x00, 0xF0];
    first.extend_from_slice(&block[..240]);
    let mut last = vec![0x00, 0x42, 0x00, 0x00, 0x10];
    last.extend_from_slice(&block[240..]);
    assert_eq!(t0(&mut dev, &mut seq, &first).1, [0x90, 0x00]);
    let (signature, sw) = t0(&mut dev, &mut seq, &last);
    assert_eq!(sw, [0x90, 0x00]);
    let mut local = card();
    local.power_on();
    for apdu in [
        &[
            0x00, 0xA4, 0x04, 0x0C, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00,
        ][..],
        &verify,
        &first,
    ] {
        local.transmit_vec(apdu);
    }
    let mut whole = last.clone();
    whole.push(0x00);
    let expected = local.transmit_vec(&whole);
    assert_eq!(signature, expected[..256]);

    // The client pulls the card: the guest gets NotifySlotChange (absent,
    // changed) and the slot answers "no card".
    drop(dev);
    cards.remove_card(reader).unwrap();
    wait("the card to leave the slot", || {
        !vmm.card_present(slot).unwrap()
    });
    let mut dev = device.lock().unwrap();
    assert_eq!(dev.poll_interrupt(), Some(vec![0x50, 0x02]));
    let (kind, status, error, _) = ccid(&mut dev, &mut seq, 0x65, &[]);
    assert_eq!(
        (kind, status, error),
        (0x81, 0x42, 0xFE),
        "failed, ICC absent, ICC mute"
    );

    // And back in.
    drop(dev);
    cards.insert_card(reader, card()).unwrap();
    wait("the card to come back", || vmm.card_present(slot).unwrap());
    let mut dev = device.lock().unwrap();
    assert_eq!(dev.poll_interrupt(), Some(vec![0x50, 0x03]));
    let (_, status, _, atr) = ccid(&mut dev, &mut seq, 0x62, &[]);
    assert_eq!((status, atr.as_slice()), (0x00, &cac::DEFAULT_ATR[..]));
    drop(dev);

    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    for t in threads {
        t.join().unwrap();
    }
}
