//! Measures the event queue's throughput and in-process transmit latency.
//!
//! `cargo run --release -p vreader --example throughput`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cac::keys::{load_private_key, RustCrypto};
use cac::{Card, Identity, Pin, PinPolicy};
use rand_core::SeedableRng;
use vreader::ReaderSet;

const SELECT_CCC: [u8; 13] = [
    0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00, 0x00,
];

fn card(cert: &[u8], key: &Arc<dyn cac::keys::KeyHandle>) -> Card {
    Card::builder(PinPolicy::new(Pin::new("12345678").unwrap()))
        .identity(Identity::new(cert.to_vec(), Arc::clone(key)))
        .build(rand_chacha::ChaCha20Rng::seed_from_u64(1))
        .unwrap()
}

fn main() {
    let cert = cac::config::certificate_der(certs_fixtures::default_card::ID0_PEM).unwrap();
    let key = load_private_key(&RustCrypto, certs_fixtures::default_card::ID0_KEY).unwrap();

    // Events: a producer hot-plugs a card, a consumer thread drains the queue.
    let set = Arc::new(ReaderSet::new());
    let events = set.subscribe();
    let id = set.add_reader("bench").unwrap();
    let _ = events.try_next();
    const CYCLES: usize = 200_000;
    let consumer = std::thread::spawn(move || {
        let mut n = 0usize;
        while n < 2 * CYCLES {
            if events.next_timeout(Duration::from_secs(10)).is_some() {
                n += 1;
            } else {
                panic!("lost events: only {n}");
            }
        }
        n
    });
    let mut spare: Option<Box<dyn vreader::VirtualCard>> = Some(card(&cert, &key).into());
    let start = Instant::now();
    for _ in 0..CYCLES {
        set.insert_card(id, spare.take().unwrap()).unwrap();
        spare = Some(set.remove_card(id).unwrap());
    }
    let n = consumer.join().unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "events: {n} insert/remove events delivered to a consumer thread in {secs:.3} s = {:.0} events/s ({:.0} ns/event)",
        n as f64 / secs,
        secs * 1e9 / n as f64
    );

    // Transmit latency: SELECT CCC (FCI + 90 00) through the set and a handle.
    set.insert_card(id, spare.take().unwrap()).unwrap();
    set.power_on(id).unwrap();
    let handle = set.handle(id).unwrap();
    let mut resp = Vec::with_capacity(64);
    const N: usize = 1_000_000;
    for (label, by_handle) in [
        ("ReaderSet::transmit", false),
        ("ReaderHandle::transmit", true),
    ] {
        let start = Instant::now();
        for _ in 0..N {
            resp.clear();
            if by_handle {
                handle.transmit(&SELECT_CCC, &mut resp).unwrap();
            } else {
                set.transmit(id, &SELECT_CCC, &mut resp).unwrap();
            }
        }
        let ns = start.elapsed().as_secs_f64() * 1e9 / N as f64;
        assert_eq!(&resp[resp.len() - 2..], [0x90, 0x00]);
        println!("transmit: {label}, SELECT CCC with FCI: {ns:.0} ns per APDU round trip");
    }
}
