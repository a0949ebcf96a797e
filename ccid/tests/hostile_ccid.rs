//! The USB CCID device model against a hostile guest, through the same
//! calls a VMM's USB emulation makes: a flood of garbage packets, messages
//! announcing 64 KiB that never complete, a guest that pipelines commands
//! and never reads Bulk-IN, transfers cut mid-message, ABORT storms, bus
//! resets with card jobs in flight — while the other slot's card keeps
//! answering, and with memory sampled before and after. (The sans-IO unit
//! tests in `ccid/src/device/tests.rs` pin the exact answers; this is the
//! long, mixed, adversarial run.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use ccid::device::{BulkOutError, CcidDevice, DeviceConfig, SetupPacket, MAX_PACKET};
use common::{card, rss, SELECT_CCC};
use vreader::{ReaderId, ReaderSet};

/// A small deterministic generator (xorshift64*) for the garbage.
struct Rng(u64);

impl Rng {
    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    fn fill_bytes(&mut self, out: &mut [u8]) {
        for b in out {
            *b = self.next_u32() as u8;
        }
    }
}

fn message(ty: u8, slot: u8, seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = vec![ty];
    m.extend_from_slice(&(data.len() as u32).to_le_bytes());
    m.extend_from_slice(&[slot, seq, 0, 0, 0]);
    m.extend_from_slice(data);
    m
}

/// Sends a whole message the way a USB host does (64-byte packets, a
/// zero-length packet after a full last one).
fn send(dev: &mut CcidDevice, m: &[u8]) -> Result<(), BulkOutError> {
    for p in m.chunks(MAX_PACKET) {
        dev.handle_bulk_out(p)?;
    }
    if m.len().is_multiple_of(MAX_PACKET) {
        dev.handle_bulk_out(&[])?;
    }
    Ok(())
}

/// Reads every queued Bulk-IN message; returns the last.
fn drain(dev: &mut CcidDevice) -> Option<Vec<u8>> {
    let mut last = None;
    for _ in 0..4 {
        dev.run_jobs();
        while let Some(m) = dev.poll_response() {
            last = Some(m);
        }
    }
    last
}

/// Slot `slot`'s card answers SELECT exactly (powering it first).
fn answers(dev: &mut CcidDevice, slot: u8, seq: u8) {
    drain(dev);
    send(dev, &message(0x62, slot, seq, &[])).unwrap();
    let atr = drain(dev).unwrap();
    assert_eq!(atr[..7], [0x80, atr[1], 0, 0, 0, slot, seq], "{atr:02X?}");
    assert_eq!(&atr[10..], cac::DEFAULT_ATR);
    send(dev, &message(0x6F, slot, seq.wrapping_add(1), &SELECT_CCC)).unwrap();
    let r = drain(dev).unwrap();
    assert_eq!(r[5..7], [slot, seq.wrapping_add(1)]);
    assert_eq!(&r[10..], [0x61, 0x0D], "{r:02X?}");
}

fn rig() -> (ReaderSet, Vec<ReaderId>, CcidDevice) {
    let set = ReaderSet::new();
    let readers: Vec<ReaderId> = (0..2)
        .map(|i| set.add_reader(&format!("slot {i}")).unwrap())
        .collect();
    for r in &readers {
        let card = card();
        set.insert_card(*r, card).unwrap();
    }
    let dev = CcidDevice::new(DeviceConfig::default(), &set, &readers).unwrap();
    (set, readers, dev)
}

#[test]
fn hostile_guest_does_not_wedge_the_device_or_grow_it() {
    let (set, readers, mut dev) = rig();
    answers(&mut dev, 0, 0);
    answers(&mut dev, 1, 0);
    let rss_before = rss();
    let mut rng = Rng(5898);
    let mut buf = [0u8; MAX_PACKET];

    for round in 0..20_000u32 {
        match round % 8 {
            // Garbage packets of any size up to a full one.
            0 => {
                for _ in 0..50 {
                    let mut p = vec![0u8; (rng.next_u32() as usize) % (MAX_PACKET + 1)];
                    rng.fill_bytes(&mut p);
                    let _ = dev.handle_bulk_out(&p);
                }
            }
            // A header announcing 64 KiB, then a few full packets and an
            // end of transfer (CVE-2017-5898's shape).
            1 => {
                let mut m = message(0x6F, 0, 7, &[]);
                m[1..5].copy_from_slice(&0x0001_0000u32.to_le_bytes());
                m.resize(MAX_PACKET, 0x41);
                let _ = dev.handle_bulk_out(&m);
                for _ in 0..(rng.next_u32() % 8) {
                    let _ = dev.handle_bulk_out(&[0x42; MAX_PACKET]);
                }
                let _ = dev.handle_bulk_out(&[]);
            }
            // Pipelining without reading Bulk-IN: refused once the queue
            // is full, never buffered without bound.
            2 => {
                let mut refused = false;
                for seq in 0..64u8 {
                    if send(&mut dev, &message(0x65, 1, seq, &[])) == Err(BulkOutError::QueueFull) {
                        refused = true;
                        break;
                    }
                }
                assert!(refused, "an unread Bulk-IN queue grew without bound");
            }
            // A command cut mid-transfer by a short packet.
            3 => {
                let m = message(0x6F, 0, 9, &[0u8; 200]);
                let _ = dev.handle_bulk_out(&m[..MAX_PACKET]);
                let _ = dev.handle_bulk_out(&m[MAX_PACKET..MAX_PACKET + 10]);
            }
            // ABORT storms on both slots, with and without the Bulk-OUT
            // pair.
            4 => {
                for seq in 0..10u8 {
                    let setup = SetupPacket {
                        request_type: 0x21,
                        request: 0x01,
                        value: u16::from_le_bytes([seq % 2, seq]),
                        index: 0,
                        length: 0,
                    };
                    let _ = dev.handle_control(setup, &[]);
                    if seq % 3 == 0 {
                        let _ = send(&mut dev, &message(0x72, seq % 2, seq, &[]));
                    }
                }
            }
            // Card jobs in flight across a bus reset.
            5 => {
                let _ = send(&mut dev, &message(0x6F, 0, 11, &SELECT_CCC));
                let job = dev.poll_job();
                dev.reset();
                if let Some(job) = job {
                    assert!(
                        dev.complete(job.run()).is_err(),
                        "a job from before the reset"
                    );
                }
            }
            // Half-read Bulk-IN, ticks, interrupts.
            6 => {
                let _ = dev.poll_bulk_in(&mut buf[..(rng.next_u32() as usize) % MAX_PACKET]);
                dev.tick();
                let _ = dev.poll_interrupt();
            }
            // Hot-plug under the guest's feet.
            _ => {
                if round % 32 == 7 {
                    let card = set.remove_card(readers[1]).unwrap();
                    let _ = send(&mut dev, &message(0x62, 1, 1, &[]));
                    set.insert_card(readers[1], card).unwrap();
                }
                // The well-behaved guest on slot 1, every so often.
                dev.reset();
                answers(&mut dev, 1, round as u8);
            }
        }
    }

    // After a bus reset (the guest driver restarting), both slots work.
    dev.reset();
    answers(&mut dev, 0, 0x20);
    answers(&mut dev, 1, 0x30);
    let rss_after = rss();
    assert!(
        rss_after < rss_before + 16 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after} bytes"
    );
}
