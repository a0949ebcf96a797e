//! The card's hot paths, in process: APDU parsing and dispatch, the OpenSC
//! bind (replayed and adaptive), the reader layer, the CCID device
//! model's XfrBlock round trip, and card creation.
//!
//! ```text
//!   cargo bench -p vcac-benches --bench card
//! ```
//!
//! The libcacard comparison of the same paths is the `vs_libcacard` bench.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::Arc;

use cac::keys::{load_private_key, KeyHandle, RustCrypto};
use cac::{Card, CommandView, Identity, Pin, PinPolicy};
use certs_fixtures::{IdentitySpec, KeyType, PkiBuilder, Role};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vcac_benches::{bind_commands, default_card, replay, Client, PIN};
use vreader::ReaderSet;

const SELECT_CCC_NO_FCI: &[u8] = &[
    0x00, 0xA4, 0x04, 0x0C, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00,
];
const SELECT_PKI0_NO_FCI: &[u8] = &[
    0x00, 0xA4, 0x04, 0x0C, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00,
];

fn parse(c: &mut Criterion) {
    let mut extended = vec![0x00, 0x42, 0x00, 0x00, 0x00, 0x01, 0x00];
    extended.extend_from_slice(&[0x5A; 256]);
    extended.extend_from_slice(&[0x01, 0x00]);
    let commands: Vec<Vec<u8>> = vec![
        vec![0x00, 0x20, 0x00, 0x00],                         // case 1
        vec![0x00, 0xC0, 0x00, 0x00, 0x0D],                   // case 2S
        SELECT_PKI0_NO_FCI.to_vec(),                          // case 3S
        vec![0x00, 0x52, 0x00, 0x02, 0x02, 0x02, 0xF0, 0x00], // case 4S
        extended,                                             // case 4E
    ];
    let mut g = c.benchmark_group("apdu");
    g.throughput(Throughput::Elements(commands.len() as u64));
    g.bench_function("parse/cases_1_2s_3s_4s_4e", |b| {
        b.iter(|| {
            for cmd in &commands {
                black_box(CommandView::try_from(black_box(cmd.as_slice())).unwrap());
            }
        })
    });
    g.finish();
}

fn dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("apdu/dispatch");
    let mut card = default_card();
    let mut r = Vec::with_capacity(300);
    let run = |card: &mut Card, cmd: &[u8], r: &mut Vec<u8>| {
        r.clear();
        card.transmit(cmd, r);
    };
    g.bench_function("select_no_fci", |b| {
        b.iter(|| run(&mut card, SELECT_CCC_NO_FCI, &mut r))
    });
    run(&mut card, SELECT_PKI0_NO_FCI, &mut r);
    let props = [0x00, 0x56, 0x01, 0x00, 0x00];
    g.bench_function("get_properties", |b| {
        b.iter(|| run(&mut card, &props, &mut r))
    });
    // READ BUFFER of 240 certificate bytes with Le (T=1 encoding).
    let read = [0x00, 0x52, 0x00, 0x02, 0x02, 0x02, 0xF0, 0x00];
    run(&mut card, &read, &mut r);
    assert_eq!(r.len(), 242, "READ BUFFER answers 240 bytes and 90 00");
    g.throughput(Throughput::Bytes(240));
    g.bench_function("read_buffer_240", |b| {
        b.iter(|| run(&mut card, &read, &mut r))
    });
    g.throughput(Throughput::Elements(1));
    let verify_status = [0x00, 0x20, 0x00, 0x00];
    g.bench_function("verify_status", |b| {
        b.iter(|| run(&mut card, &verify_status, &mut r))
    });
    g.finish();
}

fn bind(c: &mut Criterion) {
    let mut g = c.benchmark_group("bind");
    let commands = bind_commands();
    let mut card = default_card();
    let mut r = Vec::with_capacity(300);
    g.throughput(Throughput::Elements(commands.len() as u64));
    g.bench_function("opensc_transcript_replay", |b| {
        b.iter(|| replay(&commands, &mut |c, r| card.transmit(c, r), &mut r))
    });
    let mut card = default_card();
    let apdus = {
        let mut client = Client::new(|c: &[u8], r: &mut Vec<u8>| card.transmit(c, r));
        assert_eq!(client.adaptive_bind().certificates.len(), 3);
        client.apdus()
    };
    g.throughput(Throughput::Elements(apdus as u64));
    g.bench_function("adaptive", |b| {
        b.iter(|| Client::new(|c: &[u8], r: &mut Vec<u8>| card.transmit(c, r)).adaptive_bind())
    });
    g.finish();
}

fn reader(c: &mut Criterion) {
    let mut g = c.benchmark_group("vreader");
    let set = ReaderSet::new();
    let id = set.add_reader("bench").unwrap();
    set.insert_card(id, default_card()).unwrap();
    let handle = set.handle(id).unwrap();
    handle.power_on().unwrap();
    let mut r = Vec::with_capacity(300);
    g.bench_function("handle_transmit_select", |b| {
        b.iter(|| {
            r.clear();
            handle.transmit(SELECT_CCC_NO_FCI, &mut r).unwrap();
        })
    });
    g.bench_function("set_transmit_select", |b| {
        b.iter(|| {
            r.clear();
            set.transmit(id, SELECT_CCC_NO_FCI, &mut r).unwrap();
        })
    });
    let mut card = default_card();
    g.bench_function("card_transmit_select_direct", |b| {
        b.iter(|| {
            r.clear();
            card.transmit(SELECT_CCC_NO_FCI, &mut r);
        })
    });
    g.finish();
}

/// One CCID message: header (type, dwLength, slot 0, bSeq, 3 bytes) + data.
fn ccid_message(kind: u8, seq: u8, data: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(data.len() as u32).to_le_bytes());
    m.extend_from_slice(&[0, seq, 0, 0, 0]);
    m.extend_from_slice(data);
    m
}

fn ccid(c: &mut Criterion) {
    use ccid::device::{CcidDevice, DeviceConfig};
    let mut g = c.benchmark_group("ccid");
    let set = ReaderSet::new();
    let id = set.add_reader("ccid bench").unwrap();
    set.insert_card(id, default_card()).unwrap();
    let mut device = CcidDevice::new(DeviceConfig::default(), &set, &[id]).unwrap();
    let mut packet = [0u8; 64];
    let mut seq = 0u8;
    // Sends one message in 64-byte Bulk-OUT packets, runs the card, and
    // drains the answer from Bulk-IN; returns the answer's length.
    let mut round_trip = |device: &mut CcidDevice, kind: u8, data: &[u8]| {
        seq = seq.wrapping_add(1);
        let msg = ccid_message(kind, seq, data);
        let mut chunks = msg.chunks(64).peekable();
        while let Some(chunk) = chunks.next() {
            device.handle_bulk_out(chunk).unwrap();
            if chunk.len() == 64 && chunks.peek().is_none() {
                device.handle_bulk_out(&[]).unwrap(); // zero-length packet ends it
            }
        }
        device.run_jobs();
        let mut total = 0;
        while let Some(n) = device.poll_bulk_in(&mut packet) {
            total += n;
            if n < 64 {
                break;
            }
        }
        total
    };
    assert_eq!(
        round_trip(&mut device, 0x62, &[]),
        10 + cac::DEFAULT_ATR.len()
    );
    // TPDU level, T=0: SELECT PKI 0 without FCI → 90 00.
    g.bench_function("xfrblock_select", |b| {
        b.iter(|| assert_eq!(round_trip(&mut device, 0x6F, SELECT_PKI0_NO_FCI), 12))
    });
    // READ BUFFER of 240 bytes, T=0 (no Le) → 61 F0, then GET RESPONSE.
    let read = [0x00, 0x52, 0x00, 0x02, 0x02, 0x02, 0xF0];
    let get = [0x00, 0xC0, 0x00, 0x00, 0xF0];
    g.bench_function("xfrblock_read_buffer_240_t0", |b| {
        b.iter(|| {
            assert_eq!(round_trip(&mut device, 0x6F, &read), 12);
            assert_eq!(round_trip(&mut device, 0x6F, &get), 10 + 242);
        })
    });
    g.finish();
}

/// The default card's three certificates (DER) and keys, loaded once.
fn default_identities() -> Vec<(Vec<u8>, Arc<dyn KeyHandle>)> {
    use certs_fixtures::default_card as d;
    [
        (d::ID0_PEM, d::ID0_KEY),
        (d::ID1_PEM, d::ID1_KEY),
        (d::ID2_PEM, d::ID2_KEY),
    ]
    .iter()
    .map(|(pem, key)| {
        let (_, der) = der::pem::decode_vec(pem).unwrap();
        (der, load_private_key(&RustCrypto, key).unwrap())
    })
    .collect()
}

fn build(ids: &[(Vec<u8>, Arc<dyn KeyHandle>)]) -> Card {
    let mut b = Card::builder(PinPolicy::new(Pin::new(PIN).unwrap()));
    for (cert, key) in ids {
        b = b.identity(Identity::new(cert.clone(), Arc::clone(key)));
    }
    let mut card = b.build(rand_core::UnwrapErr(getrandom::SysRng)).unwrap();
    card.power_on();
    card
}

fn create(c: &mut Criterion) {
    let mut g = c.benchmark_group("card");
    let ids = default_identities();
    g.bench_function("create_default_3_rsa2048", |b| b.iter(|| build(&ids)));
    let mut pki = PkiBuilder::new(1000).ca_key(KeyType::P256);
    for i in 0..1000 {
        pki = pki.identity(IdentitySpec::new(
            Role::Authentication,
            KeyType::P256,
            format!("BENCH.CARD.{i:010}"),
        ));
    }
    let pki = pki.build().unwrap();
    let thousand: Vec<(Vec<u8>, Arc<dyn KeyHandle>)> = pki
        .identities()
        .iter()
        .map(|id| {
            let cred = id.credential();
            (
                cred.cert_der().to_vec(),
                load_private_key(&RustCrypto, cred.key_der()).unwrap(),
            )
        })
        .collect();
    g.sample_size(10);
    g.throughput(Throughput::Elements(1000));
    g.bench_function("create_1000_distinct_p256", |b| {
        b.iter(|| {
            thousand
                .iter()
                .map(|id| build(std::slice::from_ref(id)))
                .collect::<Vec<_>>()
        })
    });
    g.finish();
}

criterion_group!(benches, parse, dispatch, bind, reader, ccid, create);
criterion_main!(benches);
