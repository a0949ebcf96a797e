//! Soak: 100 cards in one `ReaderSet`, driven by two threads with a mix
//! of APDUs (selections, reads, logins, garbage, signatures), power
//! cycles and hot-plugs (card and reader removal, forced removal), with
//! the process's resident memory sampled after a warm-up and at the end.
//!
//! Most signatures use the insecure deterministic backend (a SHA-256
//! expansion, so a million APDUs stay fast); every 25th card has real
//! RustCrypto RSA keys, so real blinded signatures are part of the mix.
//!
//! The whole million runs with the test suite (a few seconds in a debug
//! build); to see its figures:
//!
//! ```sh
//! cargo test --release -p vreader --test soak -- --nocapture
//! ```
//!
//! Bound: RSS may grow by at most `RSS_BOUND` (4 MiB) between the warm-up
//! sample (after 10 % of the APDUs) and the end. RSS is also printed
//! before the first APDU.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use cac::keys::insecure::InsecureTestBackend;
use cac::keys::{load_private_key, KeyHandle, RustCrypto};
use cac::{Card, Identity, Pin, PinPolicy};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use vreader::{ReaderId, ReaderSet, VirtualCard};

const CARDS: usize = 100;
const THREADS: usize = 2;
/// Every n-th card signs with real RustCrypto RSA.
const REAL_EVERY: usize = 25;
/// Largest RSS growth tolerated after the warm-up.
const RSS_BOUND: u64 = 4 * 1024 * 1024;

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

struct Keys {
    certs: Vec<Vec<u8>>,
    fast: Vec<Arc<dyn KeyHandle>>,
    real: Vec<Arc<dyn KeyHandle>>,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        use certs_fixtures::default_card as d;
        let pairs = [(d::ID0_PEM, d::ID0_KEY), (d::ID1_PEM, d::ID1_KEY)];
        Keys {
            certs: pairs
                .iter()
                .map(|(c, _)| cac::config::certificate_der(c).unwrap())
                .collect(),
            fast: pairs
                .iter()
                .map(|(_, k)| load_private_key(&InsecureTestBackend, k).unwrap())
                .collect(),
            real: pairs
                .iter()
                .map(|(_, k)| load_private_key(&RustCrypto, k).unwrap())
                .collect(),
        }
    })
}

fn card(n: usize) -> Card {
    let k = keys();
    let keys = if n.is_multiple_of(REAL_EVERY) {
        &k.real
    } else {
        &k.fast
    };
    let mut id = [0u8; 8];
    id[4..].copy_from_slice(&(n as u32).to_be_bytes());
    let mut b = Card::builder(PinPolicy::new(Pin::new("12345678").unwrap())).card_id(&id);
    for (cert, key) in k.certs.iter().zip(keys) {
        b = b.identity(Identity::new(cert.clone(), Arc::clone(key)));
    }
    b.build(ChaCha20Rng::seed_from_u64(n as u64)).unwrap()
}

#[derive(Default)]
struct Counts {
    apdus: AtomicU64,
    signs: AtomicU64,
    real_signs: AtomicU64,
    hot_plugs: AtomicU64,
    power_cycles: AtomicU64,
}

const SELECT_CCC: [u8; 12] = [
    0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00,
];

fn select_pki(i: u8) -> Vec<u8> {
    vec![
        0x00, 0xA4, 0x04, 0x0C, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, i,
    ]
}

const VERIFY: [u8; 13] = [
    0x00, 0x20, 0x00, 0x00, 0x08, b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8',
];

fn sign_block() -> Vec<u8> {
    let mut b = vec![0x00, 0x01];
    b.resize(256 - 33, 0xFF);
    b.push(0x00);
    b.extend_from_slice(&[0x5A; 32]);
    b
}

/// One reader as the driving thread sees it.
struct Slot {
    n: usize,
    id: ReaderId,
    name: String,
    /// A card taken out with `remove_card`, to put back later.
    out: Option<Box<dyn VirtualCard>>,
    forced: bool,
}

/// Drives `slots` until `budget` APDUs are spent, counting them in
/// `counts.apdus` as they go.
fn drive(set: &ReaderSet, slots: &mut [Slot], seed: u64, budget: u64, counts: &Counts) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let block = sign_block();
    let mut sent = 0u64;
    let mut response = Vec::with_capacity(600);
    let tx = |id: ReaderId, apdu: &[u8], response: &mut Vec<u8>, sent: &mut u64| {
        response.clear();
        *sent += 1;
        counts.apdus.fetch_add(1, Ordering::Relaxed);
        match set.transmit(id, apdu, response) {
            Ok(()) => {
                assert!(response.len() >= 2);
                true
            }
            Err(_) => false,
        }
    };
    while sent < budget {
        let slot = &mut slots[(rng.next_u32() as usize) % slots.len()];
        let roll = rng.next_u32() % 1000;
        match roll {
            // Hot-plug: take the card out (or force it out) and back.
            0..=3 => {
                counts.hot_plugs.fetch_add(1, Ordering::Relaxed);
                if let Some(card) = slot.out.take() {
                    set.insert_card(slot.id, card).unwrap();
                } else if slot.forced {
                    set.force_insert(slot.id).unwrap();
                    slot.forced = false;
                } else if roll % 2 == 0 {
                    slot.out = Some(set.remove_card(slot.id).unwrap());
                } else {
                    set.force_remove(slot.id).unwrap();
                    slot.forced = true;
                }
            }
            // The whole reader goes and comes back.
            4 => {
                counts.hot_plugs.fetch_add(1, Ordering::Relaxed);
                let kept = set.remove_reader(slot.id).unwrap();
                slot.id = set.add_reader(&slot.name).unwrap();
                let kept = kept
                    .or_else(|| slot.out.take())
                    .unwrap_or_else(|| card(slot.n).into());
                slot.forced = false;
                set.insert_card(slot.id, kept).unwrap();
            }
            // Power cycles.
            5..=14 => {
                counts.power_cycles.fetch_add(1, Ordering::Relaxed);
                let _ = match roll % 3 {
                    0 => set.power_off(slot.id).map(|_| ()),
                    1 => set.reset(slot.id).map(|_| ()),
                    _ => set.power_on(slot.id).map(|_| ()),
                };
            }
            // A signature: select, login, SIGN (extended, or T=0 chained
            // and fetched with GET RESPONSE).
            15..=44 => {
                let real = slot.n.is_multiple_of(REAL_EVERY);
                if real && roll % 4 != 0 {
                    continue;
                }
                let _ = set.power_on(slot.id);
                let id = slot.id;
                let key = (roll % 2) as u8;
                if !tx(id, &select_pki(key), &mut response, &mut sent) || response != [0x90, 0x00] {
                    continue;
                }
                tx(id, &VERIFY, &mut response, &mut sent);
                assert_eq!(response, [0x90, 0x00], "VERIFY on card {}", slot.n);
                let signed = if roll % 3 == 0 {
                    let mut apdu = vec![0x80, 0x42, 0x00, 0x00, 0x00, 0x01, 0x00];
                    apdu.extend_from_slice(&block);
                    apdu.extend_from_slice(&[0x00, 0x00]);
                    tx(id, &apdu, &mut response, &mut sent) && response.len() == 258
                } else {
                    let mut first = vec![0x00, 0x42, 0x80, 0x00, 0xF0];
                    first.extend_from_slice(&block[..240]);
                    let mut last = vec![0x00, 0x42, 0x00, 0x00, 0x10];
                    last.extend_from_slice(&block[240..]);
                    tx(id, &first, &mut response, &mut sent)
                        && tx(id, &last, &mut response, &mut sent)
                        && response == [0x61, 0x00]
                        && tx(
                            id,
                            &[0x00, 0xC0, 0x00, 0x00, 0x00],
                            &mut response,
                            &mut sent,
                        )
                        && response.len() == 258
                };
                assert!(signed, "SIGN on card {}: {response:02X?}", slot.n);
                assert_eq!(response[256..], [0x90, 0x00]);
                counts.signs.fetch_add(1, Ordering::Relaxed);
                if real {
                    counts.real_signs.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Everything else: the reads a host does, and garbage.
            _ => {
                let id = slot.id;
                let apdu: Vec<u8> = match roll % 8 {
                    0 | 1 => SELECT_CCC.to_vec(),
                    2 => vec![0x00, 0xC0, 0x00, 0x00, 0x0D],
                    3 => vec![0x80, 0x52, 0x00, 0x00, 0x02, 0x01, 0x08],
                    4 => vec![0x80, 0x56, 0x01, 0x00, 0x00],
                    5 => vec![0x00, 0x84, 0x00, 0x00, 0x08],
                    6 => select_pki((roll % 2) as u8),
                    _ => {
                        let mut g = vec![0u8; (rng.next_u32() % 300) as usize];
                        rng.fill_bytes(&mut g);
                        g
                    }
                };
                if !tx(id, &apdu, &mut response, &mut sent) {
                    // Not powered (or no card): power on when there is one.
                    let _ = set.power_on(id);
                }
            }
        }
    }
}

fn soak(total: u64) {
    let set = Arc::new(ReaderSet::new());
    let events = set.subscribe();
    let mut all: Vec<Slot> = (0..CARDS)
        .map(|n| {
            let name = format!("soak {n}");
            let id = set.add_reader(&name).unwrap();
            set.insert_card(id, card(n)).unwrap();
            Slot {
                n,
                id,
                name,
                out: None,
                forced: false,
            }
        })
        .collect();
    let counts = Arc::new(Counts::default());
    let rss_start = rss();
    let start = Instant::now();
    let per_thread = total / THREADS as u64;
    let mut threads = Vec::new();
    let chunk = CARDS / THREADS;
    for t in 0..THREADS {
        let mut slots: Vec<Slot> = all.drain(..chunk.min(all.len())).collect();
        let (set, counts) = (Arc::clone(&set), Arc::clone(&counts));
        threads.push(std::thread::spawn(move || {
            drive(&set, &mut slots, t as u64, per_thread, &counts);
            slots
        }));
    }
    // The event queue is read as a transport would, so it stays short.
    let mut drained = 0u64;
    let drain = |drained: &mut u64| {
        while events.try_next().is_some() {
            *drained += 1;
        }
    };
    // Warm-up: the first 10 % of the APDUs.
    while counts.apdus.load(Ordering::Relaxed) < total / 10
        && !threads.iter().all(|t| t.is_finished())
    {
        drain(&mut drained);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drain(&mut drained);
    let rss_warm = rss();
    let mut finished = Vec::new();
    for t in threads {
        while !t.is_finished() {
            drain(&mut drained);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        finished.extend(t.join().unwrap());
    }
    drain(&mut drained);
    let rss_end = rss();
    let elapsed = start.elapsed();

    // Every card still answers.
    for s in &finished {
        if s.out.is_some() {
            continue;
        }
        if s.forced {
            set.force_insert(s.id).unwrap();
        }
        set.power_on(s.id).unwrap();
        let mut r = Vec::new();
        set.transmit(s.id, &SELECT_CCC, &mut r).unwrap();
        assert_eq!(r, [0x61, 0x0D], "card {}", s.n);
    }

    let c = &counts;
    println!(
        "soak: {} APDUs ({} signatures, {} with real RSA), {} hot-plugs, {} power cycles, \
         {drained} events, {CARDS} cards, {:.1} s; RSS before {} KiB, after warm-up {} KiB, \
         at the end {} KiB (bound: warm-up +{} KiB)",
        c.apdus.load(Ordering::Relaxed),
        c.signs.load(Ordering::Relaxed),
        c.real_signs.load(Ordering::Relaxed),
        c.hot_plugs.load(Ordering::Relaxed),
        c.power_cycles.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        rss_start / 1024,
        rss_warm / 1024,
        rss_end / 1024,
        RSS_BOUND / 1024,
    );
    assert!(c.apdus.load(Ordering::Relaxed) >= total - THREADS as u64 * 4);
    assert!(c.signs.load(Ordering::Relaxed) > 0 && c.real_signs.load(Ordering::Relaxed) > 0);
    assert!(
        rss_end <= rss_warm + RSS_BOUND,
        "RSS grew from {rss_warm} to {rss_end} bytes"
    );
}

#[test]
fn a_million_apdus_with_signatures_and_hot_plugs_in_bounded_memory() {
    soak(1_000_000);
}
