//! The USB CCID device model, driven the way a VMM's USB emulation would:
//! Bulk-OUT packets, Bulk-IN and Interrupt-IN polls, control requests,
//! timer ticks, card jobs run late or after a reset, card hot-plugs, bus
//! resets, snapshots, and restores from arbitrary bytes.
//!
//! Input: one configuration byte (bits 0-1 exchange level, bits 2-3
//! `dwMaxCCIDMessageLength`, bit 4 a second slot, bits 5-7 queue depth),
//! then operations: `00..=40` a Bulk-OUT packet of that many bytes;
//! `41` run jobs, `42` Bulk-IN poll (64), `43 n` Bulk-IN poll (n bytes),
//! `44` tick, `45` interrupt poll, `46` whole-message poll, `47` + 8
//! bytes a SETUP, `48 len16` a whole transfer, `49 len16` a framed
//! message, `4A` snapshot and restore, `4B len16` restore from bytes,
//! `4C` bus reset, `4D` / `4E` remove / insert slot 0's card, `4F` /
//! `50` force-remove / force-insert, `51` take a job, `52` finish the
//! oldest job taken.
//!
//! Bulk-IN never overruns the host's buffer; every whole message is a
//! well-formed CCID message within `dwMaxCCIDMessageLength`; and at the
//! end a GetSlotStatus gets its exact answer.
#![no_main]

use ccid::device::{
    wire::Packet, CardJob, CcidDevice, DeviceConfig, ExchangeLevel, SetupPacket, Snapshot,
};
use libfuzzer_sys::fuzz_target;
use vcac_fuzz::{card, Bytes, CardOptions};
use vreader::{ReaderId, ReaderSet};

fn config(flags: u8) -> DeviceConfig {
    DeviceConfig {
        exchange_level: match flags & 0x03 {
            0 | 3 => ExchangeLevel::Tpdu,
            1 => ExchangeLevel::ShortApdu,
            _ => ExchangeLevel::ExtendedApdu,
        },
        max_message_len: [271, 272, 1034, 65_554][usize::from((flags >> 2) & 0x03)],
        queue_depth: usize::from(flags >> 5) + 1,
        ..DeviceConfig::default()
    }
}

struct Rig {
    set: ReaderSet,
    readers: Vec<ReaderId>,
    config: DeviceConfig,
    dev: CcidDevice,
    jobs: Vec<CardJob>,
    /// `poll_bulk_in` may have sent the head of the next message only in part.
    partial: bool,
}

impl Rig {
    fn check_message(&self, m: &[u8]) {
        let p = Packet::new_checked(m).expect("a Bulk-IN message has a header");
        assert!(p.length_matches(), "dwLength of {m:02X?}");
        assert!(
            m.len() <= self.config.max_message_len as usize,
            "{} bytes",
            m.len()
        );
        assert!(matches!(m[0], 0x80..=0x84), "message type {:02X}", m[0]);
    }

    fn drain(&mut self) {
        for job in std::mem::take(&mut self.jobs) {
            let _ = self.dev.complete(job.run());
        }
        for _ in 0..4 {
            self.dev.run_jobs();
            while let Some(m) = self.dev.poll_response() {
                if !std::mem::take(&mut self.partial) {
                    self.check_message(&m);
                }
            }
        }
    }

    fn slot_status(&mut self, seq: u8) -> Vec<u8> {
        self.dev
            .handle_bulk_out(&[0x65, 0, 0, 0, 0, 0, seq, 0, 0, 0])
            .expect("GetSlotStatus is accepted on an empty queue");
        self.dev.run_jobs();
        let m = self.dev.poll_response().expect("GetSlotStatus is answered");
        assert!(self.dev.poll_response().is_none());
        m
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let Some(flags) = input.u8() else {
        return;
    };
    let config = config(flags);
    let set = ReaderSet::new();
    let slots = if flags & 0x10 != 0 { 2 } else { 1 };
    let readers: Vec<ReaderId> = (0..slots)
        .filter_map(|i| set.add_reader(&format!("r{i}")).ok())
        .collect();
    set.insert_card(readers[0], card(CardOptions::default()))
        .unwrap();
    let dev = CcidDevice::new(config.clone(), &set, &readers).expect("valid configuration");
    let mut rig = Rig {
        set,
        readers,
        config,
        dev,
        jobs: Vec::new(),
        partial: false,
    };

    let mut buf = [0u8; 256];
    while let Some(op) = input.u8() {
        match op {
            0x00..=0x40 => {
                let _ = rig.dev.handle_bulk_out(input.take(usize::from(op)));
            }
            0x41 => rig.dev.run_jobs(),
            0x42 | 0x43 => {
                let want = if op == 0x42 {
                    64
                } else {
                    usize::from(input.u8().unwrap_or(0))
                };
                let b = &mut buf[..want];
                if let Some(n) = rig.dev.poll_bulk_in(b) {
                    assert!(n <= want);
                    rig.partial = n == want && n > 0;
                }
            }
            0x44 => rig.dev.tick(),
            0x45 => {
                if let Some(m) = rig.dev.poll_interrupt() {
                    assert_eq!(m.len(), 2, "NotifySlotChange for up to 4 slots");
                    assert_eq!(m[0], 0x50);
                }
            }
            0x46 => {
                if let Some(m) = rig.dev.poll_response() {
                    if !std::mem::take(&mut rig.partial) {
                        rig.check_message(&m);
                    }
                }
            }
            0x47 => {
                let Ok(setup) = <[u8; 8]>::try_from(input.take(8)) else {
                    break;
                };
                let setup = SetupPacket::from_bytes(setup);
                if let ccid::device::ControlResponse::Data(d) = rig.dev.handle_control(setup, &[]) {
                    assert!(d.len() <= usize::from(setup.length));
                }
            }
            0x48 | 0x49 | 0x4B => {
                let len = usize::from(input.u16().unwrap_or(0));
                let bytes = input.take(len);
                match op {
                    0x48 => {
                        let _ = rig.dev.handle_bulk_out(bytes);
                    }
                    0x49 => {
                        let _ = rig.dev.handle_message(bytes);
                    }
                    _ => {
                        let snapshot = Snapshot::from_bytes(bytes.to_vec());
                        if let Ok(d) = CcidDevice::restore(
                            rig.config.clone(),
                            &rig.set,
                            &rig.readers,
                            &snapshot,
                        ) {
                            rig.dev = d;
                        }
                    }
                }
            }
            0x4A => {
                // A snapshot may predate reader events the device has not
                // applied yet (restore reconciles them), so compare the
                // restored device with a second restore of itself.
                if let Ok(s) = rig.dev.snapshot() {
                    let restore = |s: &Snapshot| {
                        CcidDevice::restore(rig.config.clone(), &rig.set, &rig.readers, s)
                            .expect("a device restores from its own snapshot")
                    };
                    let d = restore(&s);
                    let s1 = d.snapshot().expect("snapshot of a restored device");
                    let s2 = restore(&s1)
                        .snapshot()
                        .expect("snapshot of a restored device");
                    assert_eq!(s1.as_bytes(), s2.as_bytes(), "restore → snapshot is stable");
                    rig.dev = d;
                }
            }
            0x4C => {
                rig.dev.reset();
                rig.partial = false;
            }
            0x4D => {
                let _ = rig.set.remove_card(rig.readers[0]);
            }
            0x4E => {
                let _ = rig
                    .set
                    .insert_card(rig.readers[0], card(CardOptions::default()));
            }
            0x4F => {
                let _ = rig.set.force_remove(rig.readers[0]);
            }
            0x50 => {
                let _ = rig.set.force_insert(rig.readers[0]);
            }
            0x51 => {
                if let Some(job) = rig.dev.poll_job() {
                    rig.jobs.push(job);
                }
            }
            0x52 if !rig.jobs.is_empty() => {
                let job = rig.jobs.remove(0);
                let _ = rig.dev.complete(job.run());
            }
            _ => {}
        }
    }

    // End the transfer, finish every job, read everything.
    let _ = rig.dev.handle_bulk_out(&[]);
    rig.drain();
    // Without a bus reset: a well-formed GetSlotStatus is answered (an
    // ABORT request still waiting for its Bulk-OUT pair answers FF).
    let m = rig.slot_status(0xA5);
    rig.check_message(&m);
    assert_eq!(m[..7], [0x81, 0, 0, 0, 0, 0, 0xA5]);
    assert!(matches!(m[8], 0x00 | 0xFE | 0xFF), "bError {:02X}", m[8]);
    // After a bus reset and with a card in the slot: exactly "present, no error".
    rig.dev.reset();
    let _ = rig.set.force_insert(rig.readers[0]);
    let _ = rig
        .set
        .insert_card(rig.readers[0], card(CardOptions::default()));
    let m = rig.slot_status(0x5A);
    assert_eq!(m[..7], [0x81, 0, 0, 0, 0, 0, 0x5A]);
    assert!(matches!((m[7], m[8]), (0x00 | 0x01, 0x00)), "{m:02X?}");
});
