//! A usbredir session with exact bytes: what QEMU 7.2 sends, what we
//! answer.

use super::*;
use crate::device::DeviceConfig;
use hex_literal::hex;
use vreader::{ReaderId, ReaderSet};

fn card() -> cac::Card {
    vcac_sources::embedded::default_card(
        &cac::keys::RustCrypto,
        rand_core::UnwrapErr(getrandom::SysRng),
    )
    .unwrap()
}

struct Rig {
    set: ReaderSet,
    reader: ReaderId,
    host: UsbRedirHost,
}

/// A host with bulk data endpoints after both hellos (QEMU's caps 0xFF),
/// its presentation drained.
fn rig() -> Rig {
    rig_with(DataPath::Bulk)
}

fn rig_with(path: DataPath) -> Rig {
    let set = ReaderSet::new();
    let reader = set.add_reader("s0").unwrap();
    set.insert_card(reader, card()).unwrap();
    let dev = CcidDevice::new(DeviceConfig::default(), &set, &[reader]).unwrap();
    let mut host = UsbRedirHost::new(dev, "t").with_data_path(path);
    let mut hello = Vec::new();
    wire::emit_hello("qemu usb-redir guest 7.2.22", 0xFF, &mut hello);
    host.receive(&hello).unwrap();
    let mut out = Vec::new();
    host.poll_transmit(&mut out);
    while host.poll_event().is_some() {}
    Rig { set, reader, host }
}

/// A G→H packet with a 16-byte header.
fn pkt(kind: u32, id: u64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    Header {
        kind,
        length: body.len() as u32,
        id,
    }
    .emit(16, &mut v);
    v.extend_from_slice(body);
    v
}

fn out(h: &mut UsbRedirHost) -> Vec<u8> {
    let mut o = Vec::new();
    h.poll_transmit(&mut o);
    o
}

#[test]
fn hello_then_presentation_bytes() {
    let set = ReaderSet::new();
    let reader = set.add_reader("s0").unwrap();
    let dev = CcidDevice::new(DeviceConfig::default(), &set, &[reader]).unwrap();
    let mut host = UsbRedirHost::new(dev, "vcac");
    let o = out(&mut host);
    assert_eq!(o[..12], hex!("00000000 44000000 00000000"));
    assert_eq!(o[12..16], *b"vcac");
    assert_eq!(o[76..80], hex!("7A000000"));
    // Nothing more before the peer's hello.
    assert!(out(&mut host).is_empty());
    let mut hello = Vec::new();
    wire::emit_hello("qemu", 0xFF, &mut hello);
    host.receive(&hello).unwrap();
    assert_eq!(host.negotiated_caps(), 0x7A);
    let o = out(&mut host);
    // ep_info: type 5, 160 bytes, id 0.
    assert_eq!(o[..16], hex!("05000000 A0000000 0000000000000000"));
    let ep = &o[16..176];
    assert_eq!(ep[0], 0, "ep0 OUT control");
    assert_eq!(
        (ep[3], ep[32 + 3]),
        (3, 1),
        "bulk OUT 03, described as interrupt, interval 1"
    );
    assert_eq!(ep[16], 0, "ep0 IN control");
    assert_eq!(
        (ep[17], ep[32 + 17]),
        (3, 0x10),
        "interrupt IN 81, bInterval 16"
    );
    assert_eq!(
        (ep[18], ep[32 + 18]),
        (3, 1),
        "bulk IN 82, described as interrupt"
    );
    assert_eq!(ep[1], 0xFF, "unused");
    assert_eq!(ep[96 + 2 * 18..96 + 2 * 18 + 2], hex!("4000"));
    // interface_info: count 1, number 0, class 0B.
    assert_eq!(o[176..192], hex!("04000000 84000000 0000000000000000"));
    assert_eq!(o[192..196], hex!("01000000"));
    assert_eq!((o[196], o[196 + 32]), (0, 0x0B));
    // device_connect: full speed, 0/0/0, 08E6:4433, bcdDevice 0000.
    assert_eq!(
        o[324..],
        hex!("01000000 0A000000 0000000000000000 01 00 00 00 E608 3344 0000")
    );
    assert!(host.is_attached());
}

#[test]
fn control_transfers_from_the_descriptors() {
    let mut r = rig();
    // GET_DESCRIPTOR(device, 64), id 7.
    r.host
        .receive(&pkt(100, 7, &hex!("80 06 80 00 0001 0000 4000")))
        .unwrap();
    let o = out(&mut r.host);
    assert_eq!(o[..16], hex!("64000000 1C000000 0700000000000000"));
    assert_eq!(o[16..26], hex!("80 06 80 00 0001 0000 1200"));
    assert_eq!(
        o[26..],
        hex!("12 01 1001 00 00 00 40 E608 3344 0000 01 02 03 01")
    );
    // The configuration asked for with 9 bytes: truncated.
    r.host
        .receive(&pkt(100, 8, &hex!("80 06 80 00 0002 0000 0900")))
        .unwrap();
    let o = out(&mut r.host);
    assert_eq!(o[16..26], hex!("80 06 80 00 0002 0000 0900"));
    assert_eq!(o[26..], hex!("09 02 5D00 01 01 00 80 32"));
    // An unknown request stalls.
    r.host
        .receive(&pkt(100, 9, &hex!("80 06 80 00 0006 0000 0A00")))
        .unwrap();
    assert_eq!(out(&mut r.host)[16..], hex!("80 06 80 04 0006 0000 0000"));
    // OUT with data that does not match wLength: inval.
    r.host
        .receive(&pkt(100, 10, &hex!("00 09 00 00 0100 0000 0200 AA")))
        .unwrap();
    assert_eq!(out(&mut r.host)[16..], hex!("00 09 00 02 0100 0000 0000"));
}

#[test]
fn set_configuration_answers_layout_then_status() {
    let mut r = rig();
    r.host.receive(&pkt(6, 0x1234, &[1])).unwrap();
    let o = out(&mut r.host);
    assert_eq!(o[..4], hex!("05000000"));
    assert_eq!(o[176..180], hex!("04000000"));
    assert_eq!(o[324..], hex!("08000000 02000000 3412000000000000 00 01"));
    // Configuration 0: ep0 only, no interface.
    r.host.receive(&pkt(6, 5, &[0])).unwrap();
    let o = out(&mut r.host);
    assert_eq!(o[16 + 3], 0xFF);
    assert_eq!(o[192..196], hex!("00000000"));
    assert_eq!(o[324..], hex!("08000000 02000000 0500000000000000 00 00"));
    // get_configuration; alt settings.
    r.host.receive(&pkt(7, 6, &[])).unwrap();
    assert_eq!(
        out(&mut r.host),
        hex!("08000000 02000000 0600000000000000 00 00")
    );
    r.host.receive(&pkt(9, 11, &[0, 1])).unwrap();
    let o = out(&mut r.host);
    assert_eq!(
        o[324..],
        hex!("0B000000 03000000 0B00000000000000 04 00 01")
    );
    r.host.receive(&pkt(10, 12, &[0])).unwrap();
    assert_eq!(
        out(&mut r.host),
        hex!("0B000000 03000000 0C00000000000000 00 00 00")
    );
}

#[test]
fn bulk_in_is_held_until_the_card_answers() {
    let mut r = rig();
    r.host.receive(&pkt(6, 1, &[1])).unwrap();
    out(&mut r.host);
    // IN request of 65556 bytes (length_high 1) before any command: held.
    r.host
        .receive(&pkt(101, 40, &hex!("82 00 1400 00000000 0100")))
        .unwrap();
    assert!(out(&mut r.host).is_empty());
    assert_eq!(r.host.held_in_requests(), 1);
    // GetSlotStatus, bSeq 3: the OUT is acked, the IN answered.
    let mut body = hex!("03 00 0A00 00000000 0000").to_vec();
    body.extend_from_slice(&hex!("65 00000000 00 03 000000"));
    r.host.receive(&pkt(101, 41, &body)).unwrap();
    let o = out(&mut r.host);
    assert_eq!(
        o[..26],
        hex!("65000000 0A000000 2900000000000000 03 00 0A00 00000000 0000")
    );
    assert_eq!(
        o[26..],
        hex!("65000000 14000000 2800000000000000 82 00 0A00 00000000 0000 81 00000000 00 03 01 00 00")
    );
    assert_eq!(r.host.held_in_requests(), 0);
}

#[test]
fn the_out_status_does_not_wait_for_the_card() {
    let mut r = rig();
    r.host.receive(&pkt(6, 1, &[1])).unwrap();
    out(&mut r.host);
    let bulk_out = |id: u64, ccid: &[u8]| {
        let mut body = vec![0x03, 0x00];
        body.extend_from_slice(&(ccid.len() as u16).to_le_bytes());
        body.extend_from_slice(&hex!("00000000 0000"));
        body.extend_from_slice(ccid);
        pkt(101, id, &body)
    };
    let bulk_in = |id: u64| pkt(101, id, &hex!("82 00 1400 00000000 0100"));
    // IccPowerOn, bSeq 1, then its ATR.
    r.host
        .receive(&bulk_out(50, &hex!("62 00000000 00 01 000000")))
        .unwrap();
    r.host.run_jobs();
    r.host.receive(&bulk_in(51)).unwrap();
    let o = out(&mut r.host);
    // Its OUT status (26 bytes), then the IN answer.
    assert_eq!(o[26 + 16..26 + 18], hex!("82 00"));
    assert_eq!(o[26 + 26], 0x80, "DataBlock with the ATR");
    // XfrBlock SELECT, bSeq 2: its OUT status comes before the card has
    // run, so the guest can queue its IN transfer meanwhile.
    let select = hex!("6F 0A000000 00 02 00 0000 00A4040005A000000001");
    r.host.receive(&bulk_out(52, &select)).unwrap();
    assert_eq!(
        out(&mut r.host),
        hex!("65000000 0A000000 3400000000000000 03 00 1400 00000000 0000")
    );
    r.host.receive(&bulk_in(53)).unwrap();
    assert!(out(&mut r.host).is_empty(), "the card has not run yet");
    r.host.run_jobs();
    let o = out(&mut r.host);
    assert_eq!(o[..8], hex!("65000000 16000000"));
    assert_eq!(o[8..16], 53u64.to_le_bytes());
    assert_eq!(o[26], 0x80, "RDR_to_PC_DataBlock");
    assert_eq!(o[26 + 6], 2, "bSeq");
    assert_eq!(o[o.len() - 2..], hex!("6A82"), "no such applet");
}

#[test]
fn packet_rules_short_requests_zlp_and_cancel() {
    let mut r = rig();
    r.host.receive(&pkt(6, 1, &[1])).unwrap();
    out(&mut r.host);
    // Escape 02 (firmware text "vcac CCID 0.1.0" …): a response > 10 bytes.
    let mut body = hex!("03 00 0B00 00000000 0000").to_vec();
    body.extend_from_slice(&hex!("6B 01000000 00 04 000000 02"));
    r.host.receive(&pkt(101, 1, &body)).unwrap();
    out(&mut r.host);
    // A 10-byte request gets the header only; the rest waits.
    r.host
        .receive(&pkt(101, 2, &hex!("82 00 0A00 00000000 0000")))
        .unwrap();
    let o = out(&mut r.host);
    assert_eq!(o[16..20], hex!("82 00 0A00"));
    assert_eq!(o[26..27], [0x83]);
    // QEMU cancels that answered request: the 10 bytes come again.
    r.host.receive(&pkt(21, 2, &[])).unwrap();
    assert!(out(&mut r.host).is_empty());
    r.host
        .receive(&pkt(101, 3, &hex!("82 00 0004 00000000 0000")))
        .unwrap();
    let o = out(&mut r.host);
    let fw = concat!("vcac CCID ", env!("CARGO_PKG_VERSION"));
    assert_eq!(o[16..18], hex!("82 00"));
    assert_eq!(u16::from_le_bytes([o[18], o[19]]) as usize, 10 + fw.len());
    assert_eq!(o[26..27], [0x83]);
    assert_eq!(&o[36..], fw.as_bytes());
    // Cancel of a held request: status 1, length 0.
    r.host
        .receive(&pkt(101, 4, &hex!("82 00 4000 00000000 0000")))
        .unwrap();
    r.host.receive(&pkt(21, 4, &[])).unwrap();
    assert_eq!(
        out(&mut r.host),
        hex!("65000000 0A000000 0400000000000000 82 01 0000 00000000 0000")
    );
    // Unknown id: ignored.
    r.host.receive(&pkt(21, 99, &[])).unwrap();
    assert!(out(&mut r.host).is_empty());
}

#[test]
fn a_full_last_packet_is_followed_by_a_zlp() {
    let mut r = rig();
    let mut host_take = |bytes: Vec<u8>, n: usize| {
        r.host.stream.push_back(Segment { bytes, pos: 0 });
        r.host.take(n)
    };
    // 64 bytes for a 64-byte request: one packet, ZLP owed.
    let (b, ended) = host_take(vec![7; 64], 64).unwrap();
    assert_eq!((b.len(), ended), (64, false));
    // The next request gets the ZLP.
    assert_eq!(r.host.take(64), Some((vec![], true)));
    assert_eq!(r.host.take(64), None);
    // 128 bytes for a 65556-byte request: both packets and the ZLP.
    r.host.stream.push_back(Segment {
        bytes: vec![1; 128],
        pos: 0,
    });
    let (b, ended) = r.host.take(65_556).unwrap();
    assert_eq!((b.len(), ended), (128, true));
    assert!(r.host.stream.is_empty());
    // 70 bytes for a 64-byte request: 64 now, 6 next.
    r.host.stream.push_back(Segment {
        bytes: vec![2; 70],
        pos: 0,
    });
    assert_eq!(
        r.host.take(64).map(|(b, e)| (b.len(), e)),
        Some((64, false))
    );
    assert_eq!(r.host.take(64).map(|(b, e)| (b.len(), e)), Some((6, true)));
}

#[test]
fn interrupt_only_while_started_and_merged() {
    let mut r = rig();
    // The first slot change waits for the guest to poll.
    assert!(out(&mut r.host).is_empty());
    r.host.receive(&pkt(15, 0, &[0x81])).unwrap();
    assert_eq!(
        out(&mut r.host),
        [
            &hex!("11000000 02000000 0000000000000000 00 81")[..],
            &hex!("67000000 06000000 0000000000000000 81 00 0200 50 03")[..],
        ]
        .concat()
    );
    r.host.receive(&pkt(16, 0, &[0x81])).unwrap();
    assert_eq!(
        out(&mut r.host),
        hex!("11000000 02000000 0000000000000000 00 81")
    );
    // Removed and inserted while stopped: one message, "present, changed".
    r.set.force_remove(r.reader).unwrap();
    out(&mut r.host);
    r.set.force_insert(r.reader).unwrap();
    assert_eq!(out(&mut r.host), b"");
    r.host.receive(&pkt(15, 0, &[0x81])).unwrap();
    let o = out(&mut r.host);
    assert_eq!(
        o[18..],
        hex!("67000000 06000000 0100000000000000 81 00 0200 50 03")
    );
    // Not our interrupt endpoint.
    r.host.receive(&pkt(15, 0, &[0x82])).unwrap();
    assert_eq!(
        out(&mut r.host),
        hex!("11000000 02000000 0000000000000000 02 82")
    );
}

#[test]
fn unplug_ack_and_replug() {
    let mut r = rig();
    r.host.unplug();
    assert_eq!(out(&mut r.host), hex!("02000000 00000000 0000000000000000"));
    assert!(!r.host.is_detached());
    r.host.receive(&pkt(24, 0, &[])).unwrap();
    assert!(r.host.is_detached());
    // A data packet while unplugged: inval.
    r.host
        .receive(&pkt(101, 3, &hex!("82 00 4000 00000000 0000")))
        .unwrap();
    assert_eq!(
        out(&mut r.host),
        hex!("65000000 0A000000 0300000000000000 82 02 0000 00000000 0000")
    );
    r.host.plug();
    let o = out(&mut r.host);
    assert_eq!(o[..4], hex!("05000000"));
    assert_eq!(o[324..328], hex!("01000000"));
    assert!(r.host.is_attached());
}

#[test]
fn reset_drops_partial_commands_not_cards() {
    let mut r = rig();
    r.host.receive(&pkt(6, 1, &[1])).unwrap();
    out(&mut r.host);
    // Half a PowerOn message, then a reset.
    let mut body = hex!("03 00 0500 00000000 0000").to_vec();
    body.extend_from_slice(&hex!("62 00000000"));
    r.host.receive(&pkt(101, 2, &body)).unwrap();
    r.host.receive(&pkt(3, 0, &[])).unwrap();
    assert_eq!(r.host.poll_event(), Some(Event::Configured(1)));
    assert_eq!(r.host.poll_event(), Some(Event::Reset));
    let o = out(&mut r.host);
    assert_eq!(o.len(), 26, "only the OUT ack");
    // The device is back at configuration 0; the card is still there.
    r.host.receive(&pkt(7, 3, &[])).unwrap();
    assert_eq!(out(&mut r.host)[16..], [0, 0]);
    assert!(r.set.list()[0].card_present);
}

#[test]
fn twelve_byte_headers_without_64bit_ids() {
    let set = ReaderSet::new();
    let reader = set.add_reader("s0").unwrap();
    let dev = CcidDevice::new(DeviceConfig::default(), &set, &[reader]).unwrap();
    let mut host = UsbRedirHost::new(dev, "t");
    let mut hello = Vec::new();
    wire::emit_hello("old", 0x0A, &mut hello); // version + disconnect ack
    host.receive(&hello).unwrap();
    let o = out(&mut host);
    let o = &o[80..]; // our hello
    assert_eq!(o[..12], hex!("05000000 60000000 00000000"));
    assert_eq!(o.len(), 12 + 96 + 12 + 132 + 12 + 10);
    let mut g = Vec::new();
    Header {
        kind: 7,
        length: 0,
        id: 9,
    }
    .emit(12, &mut g);
    host.receive(&g).unwrap();
    assert_eq!(out(&mut host), hex!("08000000 02000000 09000000 00 00"));
}

#[test]
fn bulk_data_path_describes_the_endpoints_as_bulk() {
    let set = ReaderSet::new();
    let reader = set.add_reader("s0").unwrap();
    let dev = CcidDevice::new(DeviceConfig::default(), &set, &[reader]).unwrap();
    let mut host = UsbRedirHost::new(dev, "t").with_data_path(DataPath::Bulk);
    out(&mut host);
    let mut hello = Vec::new();
    wire::emit_hello("qemu", 0xFF, &mut hello);
    host.receive(&hello).unwrap();
    let o = out(&mut host);
    let ep = &o[16..176];
    assert_eq!((ep[3], ep[32 + 3]), (2, 0), "bulk OUT 03, bInterval 0");
    assert_eq!((ep[18], ep[32 + 18]), (2, 0), "bulk IN 82");
    assert_eq!((ep[17], ep[32 + 17]), (3, 0x10), "interrupt IN 81");
}

/// An interrupt packet from the guest: endpoint, status 0, length, data.
fn int_out(id: u64, ccid: &[u8]) -> Vec<u8> {
    let mut body = vec![0x03, 0x00];
    body.extend_from_slice(&(ccid.len() as u16).to_le_bytes());
    body.extend_from_slice(ccid);
    pkt(103, id, &body)
}

#[test]
fn interrupt_data_path_acks_out_and_pushes_answers_while_started() {
    let mut r = rig_with(DataPath::Interrupt);
    r.host.receive(&pkt(6, 1, &[1])).unwrap();
    out(&mut r.host);
    // GetSlotStatus, bSeq 3, in one interrupt packet: acked with its
    // length (QEMU completed the guest's transfer already).
    r.host
        .receive(&int_out(41, &hex!("65 00000000 00 03 000000")))
        .unwrap();
    assert_eq!(
        out(&mut r.host),
        hex!("67000000 04000000 2900000000000000 03 00 0A00"),
        "the answer waits: QEMU has not started receiving on 82"
    );
    // The guest polls 82: QEMU starts interrupt receiving, the answer
    // follows its status at once (one short fragment).
    r.host.receive(&pkt(15, 0, &[0x82])).unwrap();
    assert_eq!(
        out(&mut r.host),
        [
            &hex!("11000000 02000000 0000000000000000 00 82")[..],
            &hex!("67000000 0E000000 0000000000000000 82 00 0A00")[..],
            &hex!("81 00000000 00 03 01 00 00")[..],
        ]
        .concat()
    );
    // IccPowerOn, bSeq 4: the ATR comes as soon as the card has run.
    r.host
        .receive(&int_out(42, &hex!("62 00000000 00 04 000000")))
        .unwrap();
    r.host.run_jobs();
    let o = out(&mut r.host);
    assert_eq!(
        o[..20],
        hex!("67000000 04000000 2A00000000000000 03 00 0A00")
    );
    assert_eq!(o[36..38], hex!("82 00"));
    assert_eq!((o[40], o[46]), (0x80, 4), "DataBlock with the ATR, bSeq 4");
    // XfrBlock SELECT of a 60-byte AID, bSeq 5: 75 bytes, in a 64-byte
    // and an 11-byte packet as UHCI sends them. The card runs once the
    // message is whole, and its answer is pushed.
    let mut select = hex!("6F 41000000 00 05 00 0000 00A404003C").to_vec();
    select.extend_from_slice(&[0xA0; 60]);
    r.host.receive(&int_out(43, &select[..64])).unwrap();
    r.host.receive(&int_out(44, &select[64..])).unwrap();
    let o = out(&mut r.host);
    assert_eq!(
        o[..20],
        hex!("67000000 04000000 2B00000000000000 03 00 4000")
    );
    assert_eq!(
        o[20..40],
        hex!("67000000 04000000 2C00000000000000 03 00 0B00")
    );
    assert_eq!(o.len(), 40, "the card has not run yet: {:02X?}", &o[40..]);
    r.host.run_jobs();
    let o = out(&mut r.host);
    assert_eq!(o[..8], hex!("67000000 10000000"));
    assert_eq!(o[16..20], hex!("82 00 0C00"));
    assert_eq!(o[20], 0x80, "RDR_to_PC_DataBlock");
    assert_eq!(o[20 + 6], 5, "bSeq");
    assert_eq!(o[o.len() - 2..], hex!("6A82"));
    // Stopped (QEMU dropped its buffer): answers wait for the next start.
    r.host.receive(&pkt(16, 0, &[0x82])).unwrap();
    assert_eq!(
        out(&mut r.host),
        hex!("11000000 02000000 0000000000000000 00 82")
    );
    r.host
        .receive(&int_out(45, &hex!("65 00000000 00 06 000000")))
        .unwrap();
    assert_eq!(out(&mut r.host).len(), 20, "only the ack");
    r.host.receive(&pkt(15, 0, &[0x82])).unwrap();
    let o = out(&mut r.host);
    assert_eq!(o[18..26], hex!("67000000 0E000000"));
    assert_eq!(o[34..36], hex!("82 00"));
    assert_eq!(o[38 + 6], 6, "bSeq of the answer that waited");
}

#[test]
fn interrupt_answers_are_max_packet_fragments_ending_short() {
    let mut r = rig_with(DataPath::Interrupt);
    let frags = |r: &mut Rig, message: Vec<u8>| -> Vec<usize> {
        let mut sizes = Vec::new();
        r.host.push_message(0x82, 64, &message);
        let o = out(&mut r.host);
        let mut rest = &o[..];
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest[4..8].try_into().unwrap()) as usize;
            assert_eq!(rest[..4], hex!("67000000"));
            assert_eq!(rest[16..18], hex!("82 00"));
            let n = u16::from_le_bytes([rest[18], rest[19]]) as usize;
            assert_eq!(len, 4 + n);
            sizes.push(n);
            rest = &rest[16 + len..];
        }
        sizes
    };
    assert_eq!(frags(&mut r, vec![1; 10]), [10]);
    assert_eq!(
        frags(&mut r, vec![1; 64]),
        [64, 0],
        "a ZLP after a full one"
    );
    assert_eq!(frags(&mut r, vec![1; 266]), [64, 64, 64, 64, 10]);
    assert_eq!(frags(&mut r, vec![1; 128]), [64, 64, 0]);
}

#[test]
fn interrupt_data_path_refuses_what_does_not_fit() {
    let mut r = rig_with(DataPath::Interrupt);
    r.host.receive(&pkt(6, 1, &[1])).unwrap();
    out(&mut r.host);
    // A bulk packet for a data endpoint described as interrupt: inval.
    r.host
        .receive(&pkt(101, 3, &hex!("82 00 4000 00000000 0000")))
        .unwrap();
    assert_eq!(
        out(&mut r.host),
        hex!("65000000 0A000000 0300000000000000 82 02 0000 00000000 0000")
    );
    // Interrupt OUT data for an IN endpoint, an unknown endpoint, and with
    // a length that does not match: inval, length 0.
    for (id, body) in [
        (4u64, hex!("82 00 0100 AA").to_vec()),
        (5, hex!("05 00 0100 AA").to_vec()),
        (6, hex!("03 00 0500 AABB").to_vec()),
    ] {
        r.host.receive(&pkt(103, id, &body)).unwrap();
        let o = out(&mut r.host);
        assert_eq!(o[8..16], id.to_le_bytes());
        assert_eq!(o[16..20], [body[0], 2, 0, 0]);
    }
    assert!(r.host.poll_job().is_none(), "nothing reached the device");
    // Interrupt receiving on an OUT endpoint: inval.
    r.host.receive(&pkt(15, 0, &[0x03])).unwrap();
    assert_eq!(
        out(&mut r.host),
        hex!("11000000 02000000 0000000000000000 02 03")
    );
}

#[test]
fn an_answer_qemu_may_have_dropped_at_a_stop_is_pushed_again() {
    let mut r = rig_with(DataPath::Interrupt);
    r.host.receive(&pkt(6, 1, &[1])).unwrap();
    r.host.receive(&pkt(15, 0, &[0x82])).unwrap();
    out(&mut r.host);
    let answer = hex!("67000000 0E000000");
    // GetSlotStatus bSeq 7, answered at once.
    r.host
        .receive(&int_out(2, &hex!("65 00000000 00 07 000000")))
        .unwrap();
    let o = out(&mut r.host);
    assert_eq!(o[20..28], answer, "{o:02X?}");
    assert_eq!(o[20 + 20 + 6], 7);
    // QEMU's UHCI stopped the endpoint before the guest polled for it
    // (its buffer is gone), then the guest polls: the answer again.
    r.host.receive(&pkt(16, 0, &[0x82])).unwrap();
    out(&mut r.host);
    r.host.receive(&pkt(15, 0, &[0x82])).unwrap();
    let o = out(&mut r.host);
    assert_eq!(o[18..26], answer, "{o:02X?}");
    assert_eq!(o[18 + 20 + 6], 7, "bSeq 7 pushed again");
    // The guest read it and sent its next command before the next stop:
    // nothing is pushed again at the next start.
    r.host
        .receive(&int_out(3, &hex!("65 00000000 00 08 000000")))
        .unwrap();
    let o = out(&mut r.host);
    assert_eq!(o[20 + 20 + 6], 8);
    r.host.receive(&pkt(16, 0, &[0x82])).unwrap();
    r.host
        .receive(&int_out(4, &hex!("65 00000000 00 09 000000")))
        .unwrap();
    r.host.receive(&pkt(15, 0, &[0x82])).unwrap();
    let o = out(&mut r.host);
    // Stop status, the ack, start status, then only bSeq 9.
    assert_eq!(o.len(), 18 + 20 + 18 + 30, "{o:02X?}");
    assert_eq!(o[o.len() - 10 + 6], 9);
}
