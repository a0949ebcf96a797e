//! Multi-threaded stress: hot-plugs and transmits on many readers at once,
//! with concurrent consumers. No event is lost or duplicated, per-reader
//! order holds, and every transmit gets a whole response or an error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vreader::{EventKind, ReaderError, ReaderSet};

const THREADS: usize = 6;
const ROUNDS: usize = 150;

#[test]
fn concurrent_hotplug_and_transmit_lose_no_events() {
    let set = Arc::new(ReaderSet::new());
    let consumers: Vec<_> = (0..2).map(|_| set.subscribe()).collect();
    let started = Instant::now();
    // Whole responses the spoiler has had so far.
    let seen = Arc::new(AtomicU32::new(0));

    // Each worker owns one reader and cycles its card; a spoiler thread
    // transmits to every reader at random moments, racing the removals.
    // On two loaded cores the workers can finish before the spoiler first
    // runs, so each keeps its last card powered until the spoiler has had
    // one whole response (at most 10 s).
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let set = Arc::clone(&set);
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let id = set.add_reader(&format!("stress {t}")).unwrap();
                let mut resp = Vec::new();
                for round in 0..ROUNDS {
                    set.insert_card(id, common::card((t * ROUNDS + round) as u32))
                        .unwrap();
                    set.power_on(id).unwrap();
                    resp.clear();
                    set.transmit(id, &common::SELECT_CCC, &mut resp).unwrap();
                    assert_eq!(resp, common::SELECT_CCC_RESPONSE);
                    if round == ROUNDS - 1 {
                        let until = Instant::now() + Duration::from_secs(10);
                        while seen.load(Ordering::Relaxed) == 0 && Instant::now() < until {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    if round % 3 == 0 {
                        set.force_remove(id).unwrap();
                        set.force_insert(id).unwrap();
                    }
                    set.remove_card(id).unwrap();
                }
                set.remove_reader(id).unwrap();
                id
            })
        })
        .collect();
    let spoiler = {
        let set = Arc::clone(&set);
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut resp = Vec::new();
            let mut whole = 0u32;
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let readers = set.list();
                if readers.is_empty() && whole > 0 {
                    break;
                }
                for r in readers {
                    resp.clear();
                    match set.transmit(r.id, &common::SELECT_CCC, &mut resp) {
                        Ok(()) => {
                            assert_eq!(resp, common::SELECT_CCC_RESPONSE, "torn response");
                            whole += 1;
                            seen.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(
                            ReaderError::NoCard(_)
                            | ReaderError::NotPowered(_)
                            | ReaderError::NoSuchReader(_),
                        ) => assert!(resp.is_empty()),
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
            }
            whole
        })
    };
    let ids: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let whole = spoiler.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));

    // Per reader: inserted, then (card in, card out) × (ROUNDS + forced
    // cycles), then removed — in that order, exactly once each.
    let forced = ROUNDS.div_ceil(3);
    for events in consumers {
        let mut per_reader: HashMap<_, Vec<EventKind>> = HashMap::new();
        while let Some(e) = events.try_next() {
            per_reader.entry(e.reader).or_default().push(e.kind);
        }
        assert_eq!(per_reader.len(), THREADS);
        for id in &ids {
            let kinds = &per_reader[id];
            assert_eq!(kinds.len(), 2 + 2 * (ROUNDS + forced), "reader {id}");
            assert_eq!(kinds.first(), Some(&EventKind::ReaderInserted));
            assert_eq!(kinds.last(), Some(&EventKind::ReaderRemoved));
            for pair in kinds[1..kinds.len() - 1].chunks(2) {
                assert_eq!(pair, [EventKind::CardInserted, EventKind::CardRemoved]);
            }
        }
    }
    assert!(
        whole > 0,
        "the spoiler transmitted to at least one powered card"
    );
}

#[test]
fn a_blocked_consumer_wakes_on_the_next_event() {
    let set = Arc::new(ReaderSet::new());
    let events = set.subscribe();
    let waiter = std::thread::spawn(move || events.next_timeout(Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(50));
    let id = set.add_reader("late").unwrap();
    let e = waiter.join().unwrap().unwrap();
    assert_eq!(
        (e.kind, e.reader, &*e.name),
        (EventKind::ReaderInserted, id, "late")
    );
}

#[test]
fn transmit_on_one_reader_does_not_wait_for_another() {
    // Hold reader A busy inside a card call; B must still answer.
    let set = Arc::new(ReaderSet::new());
    let a = set.add_reader("a").unwrap();
    let b = set.add_reader("b").unwrap();
    for id in [a, b] {
        set.insert_card(id, common::card(id.0)).unwrap();
        set.power_on(id).unwrap();
    }
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let busy = {
        let set = Arc::clone(&set);
        std::thread::spawn(move || {
            set.with_card(a, |_| {
                entered_tx.send(()).unwrap();
                release_rx.recv_timeout(Duration::from_secs(20)).unwrap();
            })
            .unwrap();
        })
    };
    entered_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let mut resp = Vec::new();
    set.transmit(b, &common::SELECT_CCC, &mut resp).unwrap();
    assert_eq!(resp, common::SELECT_CCC_RESPONSE);
    release_tx.send(()).unwrap();
    busy.join().unwrap();
}

#[cfg(feature = "async")]
#[test]
fn async_next_resolves_with_a_plain_waker() {
    use std::future::Future;
    use std::task::{Context, Poll, Wake, Waker};

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let set = ReaderSet::new();
    let events = set.subscribe();
    let flag = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
    let waker = Waker::from(Arc::clone(&flag));
    let mut cx = Context::from_waker(&waker);
    let mut fut = Box::pin(events.next());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    let id = set.add_reader("async").unwrap();
    assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst), "woken");
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Some(e)) => assert_eq!((e.kind, e.reader), (EventKind::ReaderInserted, id)),
        other => panic!("{other:?}"),
    }
}
