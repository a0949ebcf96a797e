//! Unit tests of the device model: every message type and error, the
//! packetisation edge cases, abort, time extension, slot changes,
//! chaining, T=1 blocks, snapshots, and a "never panics" property.

use hex_literal::hex;
use vreader::{ReaderId, ReaderSet};

use super::*;

fn card_with_atr(atr: Option<&str>) -> cac::Card {
    let files = certs_fixtures::default_card::files();
    let mut read = |name: &str| {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.to_vec())
            .ok_or_else(|| name.to_owned())
    };
    let toml = certs_fixtures::default_card::CARD_TOML;
    let toml = match atr {
        Some(a) => toml.replace(
            "atr = \"3B7A18000073667465206364313434\"",
            &format!("atr = \"{a}\""),
        ),
        None => toml.to_owned(),
    };
    cac::config::load_card(
        &toml,
        &mut read,
        &cac::keys::RustCrypto,
        rand_core::UnwrapErr(getrandom::SysRng),
    )
    .unwrap()
}

struct Rig {
    set: ReaderSet,
    readers: Vec<ReaderId>,
    dev: CcidDevice,
}

fn rig_with(config: DeviceConfig, slots: usize, atr: Option<&str>) -> Rig {
    let set = ReaderSet::new();
    let readers: Vec<_> = (0..slots)
        .map(|i| set.add_reader(&format!("r{i}")).unwrap())
        .collect();
    set.insert_card(readers[0], card_with_atr(atr)).unwrap();
    let dev = CcidDevice::new(config, &set, &readers).unwrap();
    Rig { set, readers, dev }
}

fn rig() -> Rig {
    rig_with(DeviceConfig::default(), 1, None)
}

fn msg(ty: u8, slot: u8, seq: u8, specific: [u8; 3], data: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    wire::emit(&mut m, ty, slot, seq, specific, data);
    m
}

impl Rig {
    /// Sends a whole message, runs card jobs, returns every response.
    fn send(&mut self, m: &[u8]) -> Vec<Vec<u8>> {
        self.dev.handle_message(m).unwrap();
        self.dev.run_jobs();
        self.drain()
    }

    /// Sends and expects exactly one response.
    fn one(&mut self, m: &[u8]) -> Vec<u8> {
        let mut r = self.send(m);
        assert_eq!(r.len(), 1, "{r:02X?}");
        r.remove(0)
    }

    fn drain(&mut self) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.dev.poll_response()).collect()
    }

    fn power_on(&mut self) {
        let r = self.one(&msg(0x62, 0, 0xF0, [0; 3], &[]));
        assert_eq!(r[7], 0x00, "{r:02X?}");
    }

    fn xfr(&mut self, seq: u8, data: &[u8]) -> Vec<u8> {
        self.one(&msg(0x6F, 0, seq, [0; 3], data))
    }
}

const SELECT_CCC: [u8; 12] = hex!("00A4040007A0000001 16DB00");

// ---------------------------------------------------------------- commands

#[test]
fn power_on_answers_the_atr() {
    let mut r = rig();
    let got = r.one(&msg(0x62, 0, 0x01, [0x01, 0, 0], &[]));
    let mut want = hex!("80 0F000000 00 01 00 00 00").to_vec();
    want.extend_from_slice(&cac::DEFAULT_ATR);
    assert_eq!(got, want);
}

#[test]
fn power_on_errors() {
    let mut r = rig();
    // bPowerSelect 4 is not a voltage: offset 7; the card stays inactive.
    assert_eq!(
        r.one(&msg(0x62, 0, 2, [0x04, 0, 0], &[])),
        hex!("80 00000000 00 02 41 07 00")
    );
    // dwLength must be 0.
    assert_eq!(
        r.one(&msg(0x62, 0, 3, [0, 0, 0], &[0x00])),
        hex!("80 00000000 00 03 41 01 00")
    );
    // No card: ICC mute, status "absent".
    r.set.remove_card(r.readers[0]).unwrap();
    assert_eq!(
        r.one(&msg(0x62, 0, 4, [0, 0, 0], &[])),
        hex!("80 00000000 00 04 42 FE 00")
    );
}

#[test]
fn power_off_and_slot_status() {
    let mut r = rig();
    let status = |r: &mut Rig, seq| r.one(&msg(0x65, 0, seq, [0; 3], &[]));
    assert_eq!(status(&mut r, 1), hex!("81 00000000 00 01 01 00 00"));
    r.power_on();
    assert_eq!(status(&mut r, 2), hex!("81 00000000 00 02 00 00 00"));
    assert_eq!(
        r.one(&msg(0x63, 0, 3, [0; 3], &[])),
        hex!("81 00000000 00 03 01 00 00")
    );
    assert_eq!(status(&mut r, 4), hex!("81 00000000 00 04 01 00 00"));
    // Wrong dwLength for a zero-length command.
    assert_eq!(
        r.one(&msg(0x65, 0, 5, [0; 3], &[0xAA])),
        hex!("81 00000000 00 05 41 01 00")
    );
    r.set.remove_card(r.readers[0]).unwrap();
    assert_eq!(status(&mut r, 6), hex!("81 00000000 00 06 42 FE 00"));
    assert_eq!(
        r.one(&msg(0x63, 0, 7, [0; 3], &[])),
        hex!("81 00000000 00 07 02 00 00")
    );
}

#[test]
fn xfr_block_t0_tpdu_with_get_response() {
    let mut r = rig();
    r.power_on();
    // Case 4 without Le (T=0): the card says 61 0D.
    assert_eq!(
        r.xfr(1, &SELECT_CCC),
        hex!("80 02000000 00 01 00 00 00 610D")
    );
    let got = r.xfr(2, &hex!("00C0000012"));
    assert_eq!(got[..10], hex!("80 0F000000 00 02 00 00 00"));
    assert_eq!(got[got.len() - 2..], hex!("9000"));
    // A case 1 TPDU with P3 = 00 and a 4-byte one both reach the card.
    assert_eq!(r.xfr(3, &hex!("0020000000"))[7..], hex!("00 00 00 63 C3"));
    assert_eq!(r.xfr(4, &hex!("00200000"))[7..], hex!("00 00 00 63 C3"));
}

#[test]
fn xfr_block_errors() {
    let mut r = rig();
    // Card not powered.
    assert_eq!(r.xfr(1, &SELECT_CCC), hex!("80 00000000 00 01 41 FE 00"));
    r.power_on();
    // Shorter than a header; fewer data bytes than P3; more than P3 + Le.
    assert_eq!(r.xfr(2, &hex!("00A4")), hex!("80 00000000 00 02 40 FE 00"));
    assert_eq!(
        r.xfr(3, &hex!("00A4040007A000")),
        hex!("80 00000000 00 03 40 FE 00")
    );
    assert_eq!(
        r.xfr(4, &hex!("00A4040001 3F 00 00")),
        hex!("80 00000000 00 04 40 FC 00")
    );
    assert_eq!(r.xfr(5, &[]), hex!("80 00000000 00 05 40 FE 00"));
    // The card vanished under the command.
    r.set.remove_card(r.readers[0]).unwrap();
    assert_eq!(r.xfr(6, &SELECT_CCC), hex!("80 00000000 00 06 42 FE 00"));
}

#[test]
fn pps_is_answered_like_the_card_would() {
    let mut r = rig();
    r.power_on();
    // The GemPC Twin driver asks for TA1 = 18 (Fi 372, Di 12).
    assert_eq!(
        r.xfr(1, &hex!("FF1018F7")),
        hex!("80 04000000 00 01 00 00 00 FF1018F7")
    );
    assert_eq!(
        r.one(&msg(0x6C, 0, 2, [0; 3], &[])),
        hex!("82 05000000 00 02 00 00 00 18 00 00 0A 00")
    );
    // Without PPS1: back to Fi/Di 11.
    assert_eq!(
        r.xfr(3, &hex!("FF00FF")),
        hex!("80 03000000 00 03 00 00 00 FF00FF")
    );
    assert_eq!(
        r.one(&msg(0x6C, 0, 4, [0; 3], &[])),
        hex!("82 05000000 00 04 00 00 00 11 00 00 0A 00")
    );
    // A PPS the card rejects (bad PCK; T=1 it does not offer) gets no
    // answer from the card: ICC mute.
    assert_eq!(
        r.xfr(5, &hex!("FF1018F6")),
        hex!("80 00000000 00 05 40 FE 00")
    );
    assert_eq!(
        r.xfr(6, &hex!("FF01FE")),
        hex!("80 00000000 00 06 40 FE 00")
    );
}

#[test]
fn parameters() {
    let mut r = rig();
    // No ATR yet: ISO defaults; GetParameters works on an inactive card.
    assert_eq!(
        r.one(&msg(0x6C, 0, 1, [0; 3], &[])),
        hex!("82 05000000 00 01 01 00 00 11 00 00 0A 00")
    );
    r.power_on();
    assert_eq!(
        r.one(&msg(0x6C, 0, 2, [0; 3], &[])),
        hex!("82 05000000 00 02 00 00 00 18 00 00 0A 00")
    );
    // What libccid sends after PPS.
    assert_eq!(
        r.one(&msg(0x61, 0, 3, [0x00, 0, 0], &hex!("1800000A00"))),
        hex!("82 05000000 00 03 00 00 00 18 00 00 0A 00")
    );
    assert_eq!(
        r.one(&msg(0x61, 0, 4, [0x00, 0, 0], &hex!("9400000F00"))),
        hex!("82 05000000 00 04 00 00 00 94 00 00 0F 00")
    );
    // Wrong length for T=0, protocol 2, T=1 on a T=0-only card, bad Fi.
    assert_eq!(
        r.one(&msg(0x61, 0, 5, [0x00, 0, 0], &hex!("1800000A"))),
        hex!("82 05000000 00 05 40 01 00 94 00 00 0F 00")
    );
    assert_eq!(
        r.one(&msg(0x61, 0, 6, [0x02, 0, 0], &hex!("1800000A00"))),
        hex!("82 05000000 00 06 40 07 00 94 00 00 0F 00")
    );
    assert_eq!(
        r.one(&msg(
            0x61,
            0,
            7,
            [0x01, 0, 0],
            &hex!("11 10 00 4D 00 20 00")
        )),
        hex!("82 05000000 00 07 40 F6 00 94 00 00 0F 00")
    );
    assert_eq!(
        r.one(&msg(0x61, 0, 8, [0x00, 0, 0], &hex!("F100000A00"))),
        hex!("82 05000000 00 08 40 0A 00 94 00 00 0F 00")
    );
    // ResetParameters goes back to the ATR's.
    assert_eq!(
        r.one(&msg(0x6D, 0, 9, [0; 3], &[])),
        hex!("82 05000000 00 09 00 00 00 18 00 00 0A 00")
    );
    r.set.remove_card(r.readers[0]).unwrap();
    assert_eq!(
        r.one(&msg(0x6D, 0, 10, [0; 3], &[])),
        hex!("82 05000000 00 0A 42 FE 00 11 00 00 0A 00")
    );
}

#[test]
fn escapes() {
    let mut r = rig();
    let fw = DeviceConfig::default().firmware;
    let got = r.one(&msg(0x6B, 0, 1, [0; 3], &[0x02]));
    assert_eq!(got[..10], [0x83, fw.len() as u8, 0, 0, 0, 0, 1, 0x01, 0, 0]);
    assert_eq!(&got[10..], fw.as_bytes());
    assert_eq!(
        r.one(&msg(0x6B, 0, 2, [0; 3], &hex!("010101"))),
        hex!("83 00000000 00 02 01 00 00")
    );
    assert_eq!(
        r.one(&msg(0x6B, 0, 3, [0; 3], &hex!("06"))),
        hex!("83 00000000 00 03 01 00 00")
    );
    assert_eq!(
        r.one(&msg(0x6B, 0, 4, [0; 3], &hex!("1F02"))),
        hex!("83 00000000 00 04 41 00 00")
    );
}

#[test]
fn clock_t0apdu_secure_mechanical_unknown() {
    let mut r = rig();
    r.power_on();
    assert_eq!(
        r.one(&msg(0x6E, 0, 1, [0x00, 0, 0], &[])),
        hex!("81 00000000 00 01 00 00 00")
    );
    assert_eq!(
        r.one(&msg(0x6E, 0, 2, [0x01, 0, 0], &[])),
        hex!("81 00000000 00 02 40 07 00")
    );
    // T0APDU means nothing at TPDU level.
    assert_eq!(
        r.one(&msg(0x6A, 0, 3, [0x03, 0xA0, 0xA0], &[])),
        hex!("81 00000000 00 03 40 00 00")
    );
    assert_eq!(
        r.one(&msg(0x69, 0, 4, [0; 3], &hex!("00 00 00"))),
        hex!("80 00000000 00 04 40 00 00")
    );
    assert_eq!(
        r.one(&msg(0x71, 0, 5, [0x01, 0, 0], &[])),
        hex!("81 00000000 00 05 40 00 00")
    );
    assert_eq!(
        r.one(&msg(0x99, 0, 6, [0; 3], &hex!("0102"))),
        hex!("81 00000000 00 06 40 00 00")
    );
    let mut r = rig_with(
        DeviceConfig {
            exchange_level: ExchangeLevel::ShortApdu,
            ..DeviceConfig::default()
        },
        1,
        None,
    );
    assert_eq!(
        r.one(&msg(0x6A, 0, 7, [0x03, 0xA0, 0xA0], &[])),
        hex!("81 00000000 00 07 01 00 00")
    );
}

#[test]
fn data_rate_and_clock() {
    let mut r = rig();
    let set = |r: &mut Rig, seq, data: &[u8]| r.one(&msg(0x73, 0, seq, [0; 3], data));
    assert_eq!(
        set(&mut r, 1, &hex!("A00F0000 08F80100")),
        hex!("84 08000000 00 01 01 00 00 A00F0000 08F80100")
    );
    // Clock not offered (offset 10), rate not offered (14), bad length.
    assert_eq!(
        set(&mut r, 2, &hex!("A10F0000 012A0000")),
        hex!("84 08000000 00 02 41 0A 00 A00F0000 08F80100")
    );
    assert_eq!(
        set(&mut r, 3, &hex!("A00F0000 002A0000")),
        hex!("84 08000000 00 03 41 0E 00 A00F0000 08F80100")
    );
    assert_eq!(
        set(&mut r, 4, &hex!("A00F0000")),
        hex!("84 08000000 00 04 41 01 00 A00F0000 08F80100")
    );
}

#[test]
fn bad_slot_gets_offset_5_in_the_right_response_type() {
    let mut r = rig();
    for (ty, want) in [
        (0x65, hex!("81 00000000 03 01 42 05 00").to_vec()),
        (0x62, hex!("80 00000000 03 01 42 05 00").to_vec()),
        (0x6C, hex!("82 00000000 03 01 42 05 00").to_vec()),
        (0x6B, hex!("83 00000000 03 01 42 05 00").to_vec()),
        (
            0x73,
            hex!("84 08000000 03 01 42 05 00 0000000000000000").to_vec(),
        ),
    ] {
        assert_eq!(r.one(&msg(ty, 3, 1, [0; 3], &[])), want, "{ty:02X}");
    }
}

// ------------------------------------------------------------- busy, abort

#[test]
fn a_busy_slot_answers_e0_and_then_the_card() {
    let mut r = rig();
    r.power_on();
    r.dev
        .handle_message(&msg(0x6F, 0, 1, [0; 3], &SELECT_CCC))
        .unwrap();
    // Pipelined while the card job is queued.
    r.dev
        .handle_message(&msg(0x6F, 0, 2, [0; 3], &SELECT_CCC))
        .unwrap();
    r.dev.handle_message(&msg(0x65, 0, 3, [0; 3], &[])).unwrap();
    assert_eq!(
        r.drain(),
        [
            hex!("80 00000000 00 02 40 E0 00").to_vec(),
            hex!("81 00000000 00 03 40 E0 00").to_vec()
        ]
    );
    r.dev.run_jobs();
    assert_eq!(
        r.drain(),
        [hex!("80 02000000 00 01 00 00 00 610D").to_vec()]
    );
}

fn abort_request(slot: u8, seq: u8) -> SetupPacket {
    SetupPacket {
        request_type: 0x21,
        request: 0x01,
        value: u16::from_le_bytes([slot, seq]),
        index: 0,
        length: 0,
    }
}

#[test]
fn abort_of_a_queued_command() {
    let mut r = rig();
    r.power_on();
    r.dev
        .handle_message(&msg(0x6F, 0, 7, [0; 3], &SELECT_CCC))
        .unwrap();
    assert_eq!(
        r.dev.handle_control(abort_request(0, 8), &[]),
        ControlResponse::Ack
    );
    // The queued command is answered "aborted" and never reaches the card.
    assert!(r.dev.poll_job().is_none());
    assert_eq!(r.drain(), [hex!("80 00000000 00 07 40 FF 00").to_vec()]);
    // Until the Bulk-OUT Abort arrives, commands fail with FF.
    assert_eq!(
        r.one(&msg(0x65, 0, 9, [0; 3], &[])),
        hex!("81 00000000 00 09 40 FF 00")
    );
    assert_eq!(
        r.one(&msg(0x72, 0, 8, [0; 3], &[])),
        hex!("81 00000000 00 08 00 00 00")
    );
    assert_eq!(
        r.one(&msg(0x65, 0, 10, [0; 3], &[])),
        hex!("81 00000000 00 0A 00 00 00")
    );
}

#[test]
fn abort_of_a_running_command_waits_for_the_card() {
    let mut r = rig();
    r.power_on();
    r.dev
        .handle_message(&msg(0x6F, 0, 7, [0; 3], &SELECT_CCC))
        .unwrap();
    let job = r.dev.poll_job().unwrap();
    // Bulk-OUT half first this time, then the control half.
    r.dev.handle_message(&msg(0x72, 0, 9, [0; 3], &[])).unwrap();
    assert_eq!(
        r.dev.handle_control(abort_request(0, 9), &[]),
        ControlResponse::Ack
    );
    assert!(r.drain().is_empty());
    r.dev.complete(job.run()).unwrap();
    assert_eq!(
        r.drain(),
        [
            hex!("80 00000000 00 07 40 FF 00").to_vec(),
            hex!("81 00000000 00 09 00 00 00").to_vec()
        ]
    );
    // A Bulk-OUT Abort that does not pair with the control request.
    r.dev.handle_control(abort_request(0, 0x20), &[]);
    assert_eq!(
        r.one(&msg(0x72, 0, 0x21, [0; 3], &[])),
        hex!("81 00000000 00 21 40 06 00")
    );
    assert_eq!(
        r.one(&msg(0x72, 0, 0x20, [0; 3], &[])),
        hex!("81 00000000 00 20 00 00 00")
    );
    // ABORT for a slot that does not exist.
    assert_eq!(
        r.dev.handle_control(abort_request(4, 1), &[]),
        ControlResponse::Stall
    );
}

#[test]
fn time_extension_while_the_card_works() {
    let mut r = rig();
    r.power_on();
    r.dev
        .handle_message(&msg(0x6F, 0, 5, [0; 3], &SELECT_CCC))
        .unwrap();
    let job = r.dev.poll_job().unwrap();
    r.dev.tick(); // the job may have just started
    assert!(r.drain().is_empty());
    r.dev.tick();
    r.dev.tick(); // one time extension queued at a time
    assert_eq!(r.drain(), [hex!("80 00000000 00 05 80 01 00").to_vec()]);
    r.dev.tick();
    assert_eq!(r.drain(), [hex!("80 00000000 00 05 80 01 00").to_vec()]);
    r.dev.tick();
    r.dev.complete(job.run()).unwrap();
    assert_eq!(
        r.drain(),
        [
            hex!("80 00000000 00 05 80 01 00").to_vec(),
            hex!("80 02000000 00 05 00 00 00 610D").to_vec()
        ]
    );
    r.dev.tick();
    assert!(r.drain().is_empty());
    // A stale completion is refused.
    let mut r2 = rig();
    r2.power_on();
    r2.dev
        .handle_message(&msg(0x6F, 0, 1, [0; 3], &SELECT_CCC))
        .unwrap();
    let job = r2.dev.poll_job().unwrap();
    r2.dev.reset();
    assert_eq!(
        r2.dev.complete(job.run()),
        Err(UnknownJob { slot: 0, id: 1 })
    );
}

// ------------------------------------------------------------ slot changes

#[test]
fn notify_slot_change_on_insert_and_remove() {
    let mut r = rig_with(DeviceConfig::default(), 2, None);
    assert_eq!(r.dev.poll_interrupt(), Some(hex!("50 03").to_vec()));
    assert_eq!(r.dev.poll_interrupt(), None);
    let card = r.set.remove_card(r.readers[0]).unwrap();
    assert_eq!(r.dev.poll_interrupt(), Some(hex!("50 02").to_vec()));
    r.set.insert_card(r.readers[1], card).unwrap();
    assert_eq!(r.dev.poll_interrupt(), Some(hex!("50 0C").to_vec()));
    // Out and back in between two polls: still "changed".
    let card = r.set.remove_card(r.readers[1]).unwrap();
    r.set.insert_card(r.readers[1], card).unwrap();
    assert_eq!(r.dev.poll_interrupt(), Some(hex!("50 0C").to_vec()));
    assert_eq!(r.dev.poll_interrupt(), None);
    // The re-inserted card is inactive: the host must power it again.
    assert_eq!(
        r.one(&msg(0x65, 1, 1, [0; 3], &[])),
        hex!("81 00000000 01 01 01 00 00")
    );
}

#[test]
fn slots_are_independent() {
    let mut r = rig_with(DeviceConfig::default(), 2, None);
    let card = card_with_atr(None);
    r.set.insert_card(r.readers[1], card).unwrap();
    r.power_on();
    assert_eq!(r.one(&msg(0x62, 1, 1, [0; 3], &[]))[7], 0x00);
    r.dev
        .handle_message(&msg(0x6F, 0, 2, [0; 3], &SELECT_CCC))
        .unwrap();
    let slow = r.dev.poll_job().unwrap();
    assert_eq!(slow.slot(), 0);
    // Slot 0 is busy; slot 1 is not.
    assert_eq!(
        r.one(&msg(0x6F, 1, 3, [0; 3], &SELECT_CCC)),
        hex!("80 02000000 01 03 00 00 00 610D")
    );
    assert_eq!(
        r.one(&msg(0x65, 1, 4, [0; 3], &[])),
        hex!("81 00000000 01 04 00 00 00")
    );
    assert_eq!(
        r.one(&msg(0x65, 0, 5, [0; 3], &[])),
        hex!("81 00000000 00 05 40 E0 00")
    );
    r.dev.complete(slow.run()).unwrap();
    assert_eq!(
        r.drain(),
        [hex!("80 02000000 00 02 00 00 00 610D").to_vec()]
    );
}

// --------------------------------------------------------- packetisation

fn packets(m: &[u8]) -> Vec<&[u8]> {
    m.chunks(MAX_PACKET).collect()
}

#[test]
fn messages_of_exactly_64_and_128_bytes_need_no_zlp() {
    let mut r = rig();
    r.power_on();
    // 10 + 54 = 64 bytes: complete on its only (full) packet.
    let apdu = [&hex!("00A4040030")[..], &[0x11; 48], &[0x00]].concat();
    let m = msg(0x6F, 0, 1, [0; 3], &apdu);
    assert_eq!(m.len(), 64);
    r.dev.handle_bulk_out(&m).unwrap();
    r.dev.run_jobs();
    assert_eq!(r.drain().len(), 1);
    // A ZLP the host adds anyway is ignored.
    r.dev.handle_bulk_out(&[]).unwrap();
    assert!(r.drain().is_empty());
    // 128 bytes: two full packets.
    let apdu = [&hex!("00A4040070")[..], &[0x22; 112], &[0x00]].concat();
    let m = msg(0x6F, 0, 2, [0; 3], &apdu);
    assert_eq!(m.len(), 128);
    let p = packets(&m);
    r.dev.handle_bulk_out(p[0]).unwrap();
    assert!(r.dev.poll_job().is_none());
    r.dev.handle_bulk_out(p[1]).unwrap();
    r.dev.run_jobs();
    let got = r.drain();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0][..10], hex!("80 02000000 00 02 00 00 00"));
    // 71 bytes: a full packet and a short one.
    let m = msg(
        0x6F,
        0,
        3,
        [0; 3],
        &[&hex!("00A4040037")[..], &[0x33; 55], &[0]].concat(),
    );
    assert_eq!(m.len(), 71);
    let p = packets(&m);
    r.dev.handle_bulk_out(p[0]).unwrap();
    r.dev.handle_bulk_out(p[1]).unwrap();
    r.dev.run_jobs();
    assert_eq!(r.drain().len(), 1);
}

#[test]
fn a_transfer_level_vmm_may_pass_a_whole_message() {
    let mut r = rig();
    r.power_on();
    let m = msg(
        0x6F,
        0,
        1,
        [0; 3],
        &[&hex!("00A404006F")[..], &[0x22; 111]].concat(),
    );
    assert_eq!(m.len(), 126);
    r.dev.handle_bulk_out(&m).unwrap();
    r.dev.run_jobs();
    assert_eq!(r.drain().len(), 1);
    // A huge transfer is cut, not copied whole: answered as too long.
    let mut huge = msg(0x6F, 0, 2, [0; 3], &vec![0; 1 << 20]);
    huge.push(0);
    assert_eq!(
        r.dev.handle_bulk_out(&huge),
        Err(BulkOutError::TooLong {
            declared: 1 << 20,
            max: 261
        })
    );
    assert_eq!(r.drain(), [hex!("80 00000000 00 02 40 01 00").to_vec()]);
}

#[test]
fn runts_lies_and_oversize_get_defined_errors() {
    let mut r = rig();
    // Runt: ends (short packet) inside the header. No answer.
    assert_eq!(
        r.dev.handle_bulk_out(&hex!("65 00000000 00")),
        Err(BulkOutError::Runt { len: 6 })
    );
    assert!(r.drain().is_empty());
    assert_eq!(
        r.dev.handle_message(&hex!("65 0000")),
        Err(BulkOutError::Runt { len: 3 })
    );
    // dwLength 100, but the transfer ends after 20 bytes.
    let mut m = msg(0x6F, 0, 2, [0; 3], &[0; 20]);
    m[1] = 100;
    assert_eq!(
        r.dev.handle_bulk_out(&m),
        Err(BulkOutError::LengthMismatch {
            declared: 100,
            received: 20
        })
    );
    assert_eq!(r.drain(), [hex!("80 00000000 00 02 41 01 00").to_vec()]);
    // dwLength 1000 > 261 in a full packet: answered at once, the rest of
    // the transfer (full packets, then a short one) is dropped.
    let mut m = msg(0x6F, 0, 3, [0; 3], &[0; 54]);
    m[1..5].copy_from_slice(&1000u32.to_le_bytes());
    assert_eq!(
        r.dev.handle_bulk_out(&m),
        Err(BulkOutError::TooLong {
            declared: 1000,
            max: 261
        })
    );
    assert_eq!(r.drain(), [hex!("80 00000000 00 03 41 01 00").to_vec()]);
    for _ in 0..5 {
        r.dev.handle_bulk_out(&[0x65; 64]).unwrap();
    }
    r.dev.handle_bulk_out(&[0x65; 10]).unwrap();
    assert!(r.drain().is_empty());
    // dwLength 2 but 54 bytes in a full packet: too many.
    let mut m = msg(0x6F, 0, 4, [0; 3], &[0; 54]);
    m[1] = 2;
    assert_eq!(
        r.dev.handle_bulk_out(&m),
        Err(BulkOutError::LengthMismatch {
            declared: 2,
            received: 54
        })
    );
    r.dev.handle_bulk_out(&[]).unwrap();
    assert_eq!(r.drain(), [hex!("80 00000000 00 04 41 01 00").to_vec()]);
    // The same for framed messages.
    assert_eq!(
        r.dev.handle_message(&hex!("65 01000000 00 05 000000")),
        Err(BulkOutError::LengthMismatch {
            declared: 1,
            received: 0
        })
    );
    assert_eq!(r.drain(), [hex!("81 00000000 00 05 41 01 00").to_vec()]);
    let big = msg(0x6F, 0, 6, [0; 3], &[0; 262]);
    assert_eq!(
        r.dev.handle_message(&big),
        Err(BulkOutError::TooLong {
            declared: 262,
            max: 261
        })
    );
    assert_eq!(r.drain(), [hex!("80 00000000 00 06 41 01 00").to_vec()]);
    // And the device still answers.
    assert_eq!(
        r.one(&msg(0x65, 0, 7, [0; 3], &[])),
        hex!("81 00000000 00 07 01 00 00")
    );
}

/// The bad input QEMU's usb-ccid had to learn about (CVE-2017-5898 and
/// later fixes), each with its defined outcome.
#[test]
fn qemu_cve_cases() {
    let mut r = rig();
    // CVE-2017-5898: dwLength near u32::MAX (10 + dwLength overflows).
    for declared in [0xFFFF_FFF6u32, u32::MAX] {
        let mut m = msg(0x6F, 0, 1, [0; 3], &[0; 5]);
        m[1..5].copy_from_slice(&declared.to_le_bytes());
        assert_eq!(
            r.dev.handle_bulk_out(&m),
            Err(BulkOutError::TooLong { declared, max: 261 })
        );
        assert_eq!(
            r.dev.handle_message(&m),
            Err(BulkOutError::TooLong { declared, max: 261 })
        );
        assert_eq!(r.drain().len(), 2);
    }
    // A message shorter than its header, one byte at a time.
    for n in 1..10 {
        assert_eq!(
            r.dev.handle_message(&[0x65; 10][..n]),
            Err(BulkOutError::Runt { len: n })
        );
    }
    // A second XfrBlock while one is pending: slot busy (see
    // a_busy_slot_answers_e0_and_then_the_card); more pipelined messages
    // than the queue holds: refused (pipelining_past_the_queue_…). The ATR
    // is the card's own bytes (at most 33), never read past its end.
    r.power_on();
    assert_eq!(
        r.one(&msg(0x65, 0, 2, [0; 3], &[])),
        hex!("81 00000000 00 02 00 00 00")
    );
}

#[test]
fn pipelining_past_the_queue_is_refused_not_lost() {
    let mut r = rig();
    for seq in 0..8 {
        r.dev
            .handle_bulk_out(&msg(0x65, 0, seq, [0; 3], &[]))
            .unwrap();
    }
    let ninth = msg(0x65, 0, 8, [0; 3], &[]);
    assert_eq!(r.dev.handle_bulk_out(&ninth), Err(BulkOutError::QueueFull));
    assert_eq!(r.dev.handle_message(&ninth), Err(BulkOutError::QueueFull));
    assert_eq!(r.dev.responses_queued(), 8);
    assert_eq!(r.dev.poll_response().unwrap()[6], 0);
    r.dev.handle_bulk_out(&ninth).unwrap();
    let seqs: Vec<u8> = r.drain().iter().map(|m| m[6]).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7, 8]);
    // A job in progress counts too.
    r.power_on();
    r.dev
        .handle_message(&msg(0x6F, 0, 9, [0; 3], &SELECT_CCC))
        .unwrap();
    for seq in 10..17 {
        r.dev
            .handle_message(&msg(0x65, 0, seq, [0; 3], &[]))
            .unwrap();
    }
    assert_eq!(
        r.dev.handle_message(&msg(0x65, 0, 17, [0; 3], &[])),
        Err(BulkOutError::QueueFull)
    );
}

#[test]
fn bulk_in_packets_and_zero_length_packets() {
    let mut r = rig();
    r.power_on();
    // GET CHALLENGE of 52 bytes: a 10 + 54 = 64-byte DataBlock.
    r.dev
        .handle_message(&msg(0x6F, 0, 1, [0; 3], &hex!("0084000034")))
        .unwrap();
    r.dev.run_jobs();
    let mut buf = [0u8; 64];
    assert_eq!(r.dev.poll_bulk_in(&mut buf), Some(64));
    assert_eq!(buf[..10], hex!("80 36000000 00 01 00 00 00"));
    assert_eq!(r.dev.poll_bulk_in(&mut buf), Some(0), "ZLP");
    assert_eq!(r.dev.poll_bulk_in(&mut buf), None, "NAK");
    // A transfer-level read with room to spare needs no ZLP.
    r.dev
        .handle_message(&msg(0x6F, 0, 2, [0; 3], &hex!("0084000034")))
        .unwrap();
    r.dev.run_jobs();
    let mut big = [0u8; 512];
    assert_eq!(r.dev.poll_bulk_in(&mut big), Some(64));
    assert_eq!(r.dev.poll_bulk_in(&mut big), None);
    // 74 bytes: 64 + 10.
    r.dev
        .handle_message(&msg(0x6F, 0, 3, [0; 3], &hex!("008400003E")))
        .unwrap();
    r.dev.run_jobs();
    assert_eq!(r.dev.poll_bulk_in(&mut buf), Some(64));
    assert_eq!(r.dev.poll_bulk_in(&mut buf), Some(10));
    assert_eq!(buf[8..10], hex!("90 00"));
    assert_eq!(r.dev.poll_bulk_in(&mut buf), None);
    assert!(r.dev.is_idle());
}

// ---------------------------------------------------------------- levels

#[test]
fn short_apdu_level() {
    let mut r = rig_with(
        DeviceConfig {
            exchange_level: ExchangeLevel::ShortApdu,
            ..DeviceConfig::default()
        },
        1,
        None,
    );
    r.power_on();
    // Case 4 with Le: the data comes at once.
    let got = r.xfr(1, &[&SELECT_CCC[..], &[0x00]].concat());
    assert_eq!(got[..10], hex!("80 0F000000 00 01 00 00 00"));
    // wLevelParameter must be 0.
    assert_eq!(
        r.one(&msg(0x6F, 0, 2, [0, 0x01, 0x00], &SELECT_CCC)),
        hex!("80 00000000 00 02 40 08 00")
    );
}

#[test]
fn extended_apdu_level_chains_commands_and_responses() {
    let mut r = rig_with(
        DeviceConfig {
            exchange_level: ExchangeLevel::ExtendedApdu,
            ..DeviceConfig::default()
        },
        1,
        None,
    );
    r.power_on();
    // An extended SELECT in three blocks: begin 0001, continue 0003, end 0002.
    let apdu = [
        &hex!("00A40400 000007")[..],
        &hex!("A0000001 16DB00"),
        &hex!("0100"),
    ]
    .concat();
    let x = |r: &mut Rig, seq, level: u16, data: &[u8]| {
        let [lo, hi] = level.to_le_bytes();
        r.one(&msg(0x6F, 0, seq, [0, lo, hi], data))
    };
    assert_eq!(
        x(&mut r, 1, 0x0001, &apdu[..5]),
        hex!("80 00000000 00 01 00 00 10")
    );
    assert_eq!(
        x(&mut r, 2, 0x0003, &apdu[5..10]),
        hex!("80 00000000 00 02 00 00 10")
    );
    let got = x(&mut r, 3, 0x0002, &apdu[10..]);
    assert_eq!(got[..10], hex!("80 0F000000 00 03 00 00 00"));
    assert_eq!(got[got.len() - 2..], hex!("9000"));
    // Continue without a begin; unknown level; 0010 with nothing pending.
    assert_eq!(
        x(&mut r, 4, 0x0003, &apdu[..5]),
        hex!("80 00000000 00 04 40 08 00")
    );
    assert_eq!(
        x(&mut r, 5, 0x0004, &apdu),
        hex!("80 00000000 00 05 40 08 00")
    );
    assert_eq!(
        x(&mut r, 6, 0x0010, &[]),
        hex!("80 00000000 00 06 40 08 00")
    );
    // A 600-byte answer goes out in 261 + 261 + 78 bytes: 01, 03, 02.
    r.dev
        .handle_message(&msg(0x6F, 0, 7, [0; 3], &SELECT_CCC))
        .unwrap();
    let job = r.dev.poll_job().unwrap();
    let answer: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
    r.dev
        .complete(JobDone {
            slot: job.slot,
            id: job.id,
            result: Ok(answer.clone()),
        })
        .unwrap();
    let first = r.drain().remove(0);
    assert_eq!(first[..10], hex!("80 05010000 00 07 00 00 01"));
    let second = x(&mut r, 8, 0x0010, &[]);
    assert_eq!(second[..10], hex!("80 05010000 00 08 00 00 03"));
    let third = x(&mut r, 9, 0x0010, &[]);
    assert_eq!(third[..10], hex!("80 4E000000 00 09 00 00 02"));
    assert_eq!([&first[10..], &second[10..], &third[10..]].concat(), answer);
}

#[test]
fn t1_blocks_at_tpdu_level() {
    let mut r = rig_with(DeviceConfig::default(), 1, Some("3B800181"));
    assert_eq!(
        r.one(&msg(0x62, 0, 1, [0; 3], &[])),
        hex!("80 04000000 00 01 00 00 00 3B800181")
    );
    assert_eq!(
        r.one(&msg(0x6C, 0, 2, [0; 3], &[])),
        hex!("82 07000000 00 02 00 00 01 11 10 00 4D 00 20 00")
    );
    // libccid's IFSD negotiation, then SELECT in an I-block.
    assert_eq!(
        r.xfr(3, &hex!("00 C1 01 FE 3E")),
        hex!("80 05000000 00 03 00 00 00 00 E1 01 FE 1E")
    );
    let sel = t1::block(0, 0x00, &[&SELECT_CCC[..], &[0x00]].concat());
    let got = r.xfr(4, &sel);
    assert_eq!(got[10..13], hex!("00 00 0F"));
    assert_eq!(got[got.len() - 3..got.len() - 1], hex!("9000"));
    // Bad LRC: R-block, N(R) = 1.
    assert_eq!(
        r.xfr(5, &hex!("00 40 01 00 00")),
        hex!("80 04000000 00 05 00 00 00 00 91 00 91")
    );
    // T=1 parameters are accepted, CRC is not.
    assert_eq!(
        r.one(&msg(
            0x61,
            0,
            6,
            [0x01, 0, 0],
            &hex!("11 10 00 4D 00 FE 00")
        ))[7..10],
        hex!("00 00 01")
    );
    assert_eq!(
        r.one(&msg(
            0x61,
            0,
            7,
            [0x01, 0, 0],
            &hex!("11 11 00 4D 00 FE 00")
        ))[7..10],
        hex!("40 0B 01")
    );
}

// ------------------------------------------------------------- control

#[test]
fn control_requests() {
    let mut r = rig();
    let get = |dev: &mut CcidDevice, rt, req, value, index, length| {
        dev.handle_control(
            SetupPacket {
                request_type: rt,
                request: req,
                value,
                index,
                length,
            },
            &[],
        )
    };
    let dev = &mut r.dev;
    assert_eq!(
        get(dev, 0x80, 0x06, 0x0100, 0, 8),
        ControlResponse::Data(hex!("12 01 1001 00 00 00 40").to_vec())
    );
    let ControlResponse::Data(cfg) = get(dev, 0x80, 0x06, 0x0200, 0, 0xFFFF) else {
        panic!()
    };
    assert_eq!(cfg, dev.configuration_descriptor());
    assert_eq!(cfg.len(), 93);
    assert_eq!(
        get(dev, 0x80, 0x06, 0x0300, 0, 255),
        ControlResponse::Data(hex!("04 03 0904").to_vec())
    );
    assert_eq!(get(dev, 0x80, 0x06, 0x0309, 0, 255), ControlResponse::Stall);
    assert_eq!(get(dev, 0x80, 0x06, 0x0600, 0, 10), ControlResponse::Stall);
    assert_eq!(get(dev, 0x00, 0x09, 1, 0, 0), ControlResponse::Ack);
    assert_eq!(
        get(dev, 0x80, 0x08, 0, 0, 1),
        ControlResponse::Data(vec![1])
    );
    assert_eq!(get(dev, 0x00, 0x09, 2, 0, 0), ControlResponse::Stall);
    assert_eq!(
        get(dev, 0x80, 0x00, 0, 0, 2),
        ControlResponse::Data(vec![0, 0])
    );
    assert_eq!(get(dev, 0x00, 0x05, 7, 0, 0), ControlResponse::Ack);
    assert_eq!(get(dev, 0x01, 0x0B, 0, 0, 0), ControlResponse::Ack);
    assert_eq!(get(dev, 0x02, 0x01, 0, 0x82, 0), ControlResponse::Ack);
    assert_eq!(get(dev, 0x02, 0x01, 0, 0x85, 0), ControlResponse::Stall);
    assert_eq!(
        get(dev, 0xA1, 0x02, 0, 0, 64),
        ControlResponse::Data(hex!("A00F0000").to_vec())
    );
    let ControlResponse::Data(rates) = get(dev, 0xA1, 0x03, 0, 0, 64) else {
        panic!()
    };
    assert_eq!(rates.len(), 32);
    assert_eq!(
        rates
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect::<Vec<_>>(),
        DATA_RATES
    );
    // Answered per the descriptor: the class descriptor lists the same.
    let class = &cfg[18..72];
    assert_eq!(class[18], 1, "bNumClockSupported");
    assert_eq!(class[27], DATA_RATES.len() as u8, "bNumDataRatesSupported");
    assert_eq!(
        get(dev, 0xA1, 0x03, 0, 0, 4),
        ControlResponse::Data(rates[..4].to_vec())
    );
    assert_eq!(get(dev, 0xC0, 0x01, 0, 0, 4), ControlResponse::Stall);
}

// ------------------------------------------------------------- snapshot

#[test]
fn snapshot_mid_transfer_and_restore_into_a_fresh_device() {
    let mut r = rig();
    r.power_on();
    // A 91-byte XfrBlock, first packet only.
    let apdu = [&hex!("00A404004B")[..], &[0x44; 75], &[0x00]].concat();
    let m = msg(0x6F, 0, 0x31, [0; 3], &apdu);
    let p = packets(&m);
    // A response queued and partly read (GET CHALLENGE 62: 74 bytes).
    r.dev
        .handle_message(&msg(0x6F, 0, 0x30, [0; 3], &hex!("008400003E")))
        .unwrap();
    r.dev.run_jobs();
    let mut first = [0u8; 64];
    assert_eq!(r.dev.poll_bulk_in(&mut first), Some(64));
    r.dev.handle_bulk_out(p[0]).unwrap();
    r.dev.handle_control(abort_request(0, 0x77), &[]);
    let snap = r.dev.snapshot().unwrap();
    assert_eq!(&snap.as_bytes()[..6], b"VCCD\x01\x00");
    let bytes = snap.as_bytes().to_vec();

    // A fresh device on the same reader set continues the session.
    let mut fresh = CcidDevice::restore(
        DeviceConfig::default(),
        &r.set,
        &r.readers,
        &Snapshot::from_bytes(bytes.clone()),
    )
    .unwrap();
    assert_eq!(fresh.snapshot().unwrap().as_bytes(), &bytes[..]);
    let mut second = [0u8; 64];
    assert_eq!(fresh.poll_bulk_in(&mut second), Some(10));
    assert_eq!(fresh.poll_bulk_in(&mut second), None);
    assert_eq!(first[..10], hex!("80 40000000 00 30 00 00 00"));
    assert_eq!(second[8..10], hex!("90 00"));
    // The pending abort still holds: the finished XfrBlock fails with FF…
    fresh.handle_bulk_out(p[1]).unwrap();
    assert_eq!(
        fresh.poll_response().unwrap(),
        hex!("80 00000000 00 31 40 FF 00")
    );
    // …until the Bulk-OUT half arrives.
    fresh
        .handle_message(&msg(0x72, 0, 0x77, [0; 3], &[]))
        .unwrap();
    assert_eq!(
        fresh.poll_response().unwrap(),
        hex!("81 00000000 00 77 00 00 00")
    );
    fresh
        .handle_message(&msg(0x6F, 0, 0x32, [0; 3], &SELECT_CCC))
        .unwrap();
    fresh.run_jobs();
    assert_eq!(
        fresh.poll_response().unwrap(),
        hex!("80 02000000 00 32 00 00 00 610D")
    );
}

#[test]
fn snapshot_with_a_queued_job_runs_it_after_restore() {
    let mut r = rig();
    r.power_on();
    r.dev
        .handle_message(&msg(0x6F, 0, 1, [0; 3], &SELECT_CCC))
        .unwrap();
    let snap = r.dev.snapshot().unwrap();
    let job = r.dev.poll_job().unwrap();
    assert_eq!(r.dev.snapshot(), Err(SnapshotError::JobRunning { slot: 0 }));
    r.dev.complete(job.run()).unwrap();
    let mut fresh =
        CcidDevice::restore(DeviceConfig::default(), &r.set, &r.readers, &snap).unwrap();
    assert!(!fresh.is_idle());
    fresh.run_jobs();
    assert_eq!(
        fresh.poll_response().unwrap(),
        hex!("80 02000000 00 01 00 00 00 610D")
    );
}

#[test]
fn restore_checks_everything() {
    let mut r = rig();
    r.power_on();
    r.dev
        .handle_message(&msg(0x6F, 0, 1, [0; 3], &SELECT_CCC))
        .unwrap();
    r.dev
        .handle_bulk_out(&msg(0x6F, 0, 2, [0; 3], &[0; 80])[..64])
        .unwrap();
    let good = r.dev.snapshot().unwrap().as_bytes().to_vec();
    let restore = |bytes: &[u8], config: DeviceConfig| {
        CcidDevice::restore(
            config,
            &r.set,
            &r.readers,
            &Snapshot::from_bytes(bytes.to_vec()),
        )
    };
    // Every truncation fails cleanly.
    for n in 0..good.len() {
        assert!(restore(&good[..n], DeviceConfig::default()).is_err(), "{n}");
    }
    let mut extra = good.clone();
    extra.push(0);
    assert_eq!(
        restore(&extra, DeviceConfig::default()).err(),
        Some(RestoreError::TrailingBytes(1))
    );
    let mut v2 = good.clone();
    v2[4] = 2;
    assert_eq!(
        restore(&v2, DeviceConfig::default()).err(),
        Some(RestoreError::Version(2))
    );
    assert_eq!(
        restore(b"nope", DeviceConfig::default()).err(),
        Some(RestoreError::NotASnapshot)
    );
    let ext = DeviceConfig {
        exchange_level: ExchangeLevel::ExtendedApdu,
        ..DeviceConfig::default()
    };
    assert_eq!(
        restore(&good, ext).err(),
        Some(RestoreError::Mismatch("exchange level"))
    );
    // Flipping any single byte never panics.
    for i in 0..good.len() {
        for x in [0x01, 0x80, 0xFF] {
            let mut b = good.clone();
            b[i] ^= x;
            let _ = restore(&b, DeviceConfig::default());
        }
    }
}

// ------------------------------------------------------------- properties

/// After any input, once the transfer is ended and the queues drained, a
/// well-formed GetSlotStatus gets its exact answer.
fn still_answers(dev: &mut CcidDevice) -> Result<(), proptest::test_runner::TestCaseError> {
    dev.handle_bulk_out(&[]).ok();
    for _ in 0..4 {
        dev.run_jobs();
        while dev.poll_response().is_some() {}
    }
    let seq = 0xA5;
    dev.handle_bulk_out(&msg(0x65, 0, seq, [0; 3], &[]))
        .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
    dev.run_jobs();
    let mut got = None;
    while let Some(m) = dev.poll_response() {
        got = Some(m);
    }
    let got = got.ok_or_else(|| proptest::test_runner::TestCaseError::fail("no answer"))?;
    proptest::prop_assert_eq!(&got[..7], &hex!("81 00000000 00 A5")[..]);
    // Card present (active or not), no error — or the abort state a
    // Bulk-OUT Abort plus nothing else cannot create.
    proptest::prop_assert!(
        matches!((got[7], got[8]), (0x00 | 0x01, 0x00)),
        "{:02X?}",
        got
    );
    Ok(())
}

fn arbitrary_packets() -> impl proptest::strategy::Strategy<Value = Vec<Vec<u8>>> {
    use proptest::prelude::*;
    let header_ish = (
        prop::sample::select(vec![
            0x62u8, 0x63, 0x65, 0x6F, 0x6C, 0x6D, 0x61, 0x6B, 0x6E, 0x6A, 0x69, 0x71, 0x72, 0x73,
            0x00, 0xFF,
        ]),
        prop::sample::select(vec![0u32, 1, 4, 5, 7, 8, 54, 64, 261, 262, 0xFFFF_FFFF]),
        0u8..3,
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(t, len, slot, seq, rest)| {
            let mut m = vec![t];
            m.extend_from_slice(&len.to_le_bytes());
            m.push(slot);
            m.push(seq);
            m.extend_from_slice(&rest);
            m.truncate(64);
            m
        });
    let packet = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=64),
        header_ish,
        Just(vec![]),
    ];
    prop::collection::vec(packet, 0..24)
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(256))]

    #[test]
    fn any_bulk_out_bytes_never_panic_and_the_device_still_answers(
        packets in arbitrary_packets(),
        polls in proptest::collection::vec(0u8..4, 24),
    ) {
        let mut r = rig_with(DeviceConfig::default(), 2, None);
        let mut buf = [0u8; 64];
        for (p, what) in packets.iter().zip(polls.iter().cycle()) {
            let _ = r.dev.handle_bulk_out(p);
            match what {
                0 => r.dev.run_jobs(),
                1 => { let _ = r.dev.poll_bulk_in(&mut buf); }
                2 => r.dev.tick(),
                _ => { let _ = r.dev.poll_interrupt(); }
            }
        }
        still_answers(&mut r.dev)?;
    }

    #[test]
    fn any_framed_message_never_panics(
        messages in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..16),
        level in 0u8..3,
    ) {
        let exchange_level = [ExchangeLevel::Tpdu, ExchangeLevel::ShortApdu, ExchangeLevel::ExtendedApdu][usize::from(level)];
        let mut r = rig_with(DeviceConfig { exchange_level, ..DeviceConfig::default() }, 1, None);
        r.power_on();
        for m in &messages {
            let _ = r.dev.handle_message(m);
            r.dev.run_jobs();
            let _ = r.dev.snapshot().map(|s| CcidDevice::restore(
                DeviceConfig { exchange_level, ..DeviceConfig::default() }, &r.set, &r.readers, &s).unwrap());
        }
        still_answers(&mut r.dev)?;
    }

    #[test]
    fn any_control_request_never_panics(setup in proptest::array::uniform8(proptest::num::u8::ANY)) {
        let mut r = rig();
        let setup = SetupPacket::from_bytes(setup);
        if let ControlResponse::Data(d) = r.dev.handle_control(setup, &[]) {
            proptest::prop_assert!(d.len() <= usize::from(setup.length));
        }
        // Undo an ABORT the request may have been.
        let _ = r.dev.handle_message(&msg(0x72, 0, (setup.value >> 8) as u8, [0; 3], &[]));
        still_answers(&mut r.dev)?;
    }
}
