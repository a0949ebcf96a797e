//! Model test: random sequences of reader operations against a simple
//! model of what each reader holds, checking every result and the exact
//! event stream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use vreader::{Event, EventKind, ReaderError, ReaderId, ReaderSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Model {
    Empty,
    Inactive,
    Active,
    Ejected,
}

#[derive(Clone, Debug)]
enum Op {
    AddReader(u8),
    RemoveReader(u8),
    Insert(u8),
    Remove(u8),
    ForceRemove(u8),
    ForceInsert(u8),
    PowerOn(u8),
    PowerOff(u8),
    Reset(u8),
    Transmit(u8),
    Subscribe,
}

fn op() -> impl Strategy<Value = Op> {
    // Reader selectors index into the live readers (or past them: errors).
    let r = 0u8..6;
    prop_oneof![
        2 => (0u8..8).prop_map(Op::AddReader),
        1 => r.clone().prop_map(Op::RemoveReader),
        3 => r.clone().prop_map(Op::Insert),
        2 => r.clone().prop_map(Op::Remove),
        1 => r.clone().prop_map(Op::ForceRemove),
        1 => r.clone().prop_map(Op::ForceInsert),
        3 => r.clone().prop_map(Op::PowerOn),
        1 => r.clone().prop_map(Op::PowerOff),
        1 => r.clone().prop_map(Op::Reset),
        4 => r.prop_map(Op::Transmit),
        1 => Just(Op::Subscribe),
    ]
}

struct World {
    set: ReaderSet,
    model: BTreeMap<ReaderId, (String, Model)>,
    removed: Vec<ReaderId>,
    /// Subscribers with the events each must still see.
    subscribers: Vec<(vreader::Events, Vec<Event>)>,
    cards: u32,
}

impl World {
    fn pick(&self, i: u8) -> ReaderId {
        // Mostly live readers; sometimes a removed or never-seen one.
        let live: Vec<_> = self.model.keys().copied().collect();
        match live.get(usize::from(i)) {
            Some(id) => *id,
            None => self.removed.first().copied().unwrap_or(ReaderId(9999)),
        }
    }

    fn publish(&mut self, id: ReaderId, kind: EventKind) {
        let name = self.model.get(&id).map(|(n, _)| n.clone()).unwrap();
        for (_, expected) in &mut self.subscribers {
            expected.push(Event {
                kind,
                reader: id,
                name: name.as_str().into(),
            });
        }
    }

    fn state(&self, id: ReaderId) -> Option<Model> {
        self.model.get(&id).map(|(_, s)| *s)
    }

    fn set_state(&mut self, id: ReaderId, s: Model) {
        self.model.get_mut(&id).unwrap().1 = s;
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::AddReader(n) => {
                let name = format!("reader {n}");
                let taken = self.model.values().any(|(m, _)| *m == name);
                match self.set.add_reader(&name) {
                    Ok(id) => {
                        assert!(!taken);
                        self.model.insert(id, (name, Model::Empty));
                        self.publish(id, EventKind::ReaderInserted);
                    }
                    Err(e) => {
                        assert!(taken);
                        assert_eq!(e, ReaderError::NameTaken(name));
                    }
                }
            }
            Op::RemoveReader(i) => {
                let id = self.pick(i);
                let r = self.set.remove_reader(id);
                match self.state(id) {
                    None => assert_eq!(r.unwrap_err(), ReaderError::NoSuchReader(id)),
                    Some(s) => {
                        let card = r.unwrap();
                        assert_eq!(card.is_some(), s != Model::Empty);
                        if matches!(s, Model::Inactive | Model::Active) {
                            self.publish(id, EventKind::CardRemoved);
                        }
                        self.publish(id, EventKind::ReaderRemoved);
                        self.model.remove(&id);
                        self.removed.push(id);
                    }
                }
            }
            Op::Insert(i) => {
                let id = self.pick(i);
                self.cards += 1;
                let r = self.set.insert_card(id, common::card(self.cards));
                match self.state(id) {
                    None => assert_eq!(r, Err(ReaderError::NoSuchReader(id))),
                    Some(Model::Inactive | Model::Active) => {
                        assert_eq!(r, Err(ReaderError::CardPresent(id)))
                    }
                    Some(Model::Empty | Model::Ejected) => {
                        r.unwrap();
                        self.set_state(id, Model::Inactive);
                        self.publish(id, EventKind::CardInserted);
                    }
                }
            }
            Op::Remove(i) => {
                let id = self.pick(i);
                let r = self.set.remove_card(id);
                match self.state(id) {
                    None => assert_eq!(r.unwrap_err(), ReaderError::NoSuchReader(id)),
                    Some(Model::Empty) => assert_eq!(r.unwrap_err(), ReaderError::NoCard(id)),
                    Some(s) => {
                        r.unwrap();
                        if s != Model::Ejected {
                            self.publish(id, EventKind::CardRemoved);
                        }
                        self.set_state(id, Model::Empty);
                    }
                }
            }
            Op::ForceRemove(i) => {
                let id = self.pick(i);
                let r = self.set.force_remove(id);
                match self.state(id) {
                    None => assert_eq!(r, Err(ReaderError::NoSuchReader(id))),
                    Some(Model::Inactive | Model::Active) => {
                        r.unwrap();
                        self.set_state(id, Model::Ejected);
                        self.publish(id, EventKind::CardRemoved);
                    }
                    Some(_) => assert_eq!(r, Err(ReaderError::NoCard(id))),
                }
            }
            Op::ForceInsert(i) => {
                let id = self.pick(i);
                let r = self.set.force_insert(id);
                match self.state(id) {
                    None => assert_eq!(r, Err(ReaderError::NoSuchReader(id))),
                    Some(Model::Ejected) => {
                        r.unwrap();
                        self.set_state(id, Model::Inactive);
                        self.publish(id, EventKind::CardInserted);
                    }
                    Some(Model::Empty) => assert_eq!(r, Err(ReaderError::NotEjected(id))),
                    Some(_) => assert_eq!(r, Err(ReaderError::CardPresent(id))),
                }
            }
            Op::PowerOn(i) => {
                let id = self.pick(i);
                let r = self.set.power_on(id);
                match self.state(id) {
                    None => assert_eq!(r, Err(ReaderError::NoSuchReader(id))),
                    Some(Model::Inactive | Model::Active) => {
                        assert_eq!(r.unwrap(), cac::DEFAULT_ATR);
                        self.set_state(id, Model::Active);
                    }
                    Some(_) => assert_eq!(r, Err(ReaderError::NoCard(id))),
                }
            }
            Op::PowerOff(i) => {
                let id = self.pick(i);
                let r = self.set.power_off(id);
                match self.state(id) {
                    None => assert_eq!(r, Err(ReaderError::NoSuchReader(id))),
                    Some(Model::Inactive | Model::Active) => {
                        r.unwrap();
                        self.set_state(id, Model::Inactive);
                    }
                    Some(_) => assert_eq!(r, Err(ReaderError::NoCard(id))),
                }
            }
            Op::Reset(i) => {
                let id = self.pick(i);
                let r = self.set.reset(id);
                match self.state(id) {
                    None => assert_eq!(r, Err(ReaderError::NoSuchReader(id))),
                    Some(Model::Active) => assert_eq!(r.unwrap(), cac::DEFAULT_ATR),
                    Some(Model::Inactive) => assert_eq!(r, Err(ReaderError::NotPowered(id))),
                    Some(_) => assert_eq!(r, Err(ReaderError::NoCard(id))),
                }
            }
            Op::Transmit(i) => {
                let id = self.pick(i);
                let mut resp = Vec::new();
                let r = self.set.transmit(id, &common::SELECT_CCC, &mut resp);
                if r.is_err() {
                    assert!(resp.is_empty(), "no partial response on error");
                }
                match self.state(id) {
                    None => assert_eq!(r, Err(ReaderError::NoSuchReader(id))),
                    Some(Model::Active) => {
                        r.unwrap();
                        assert_eq!(resp, common::SELECT_CCC_RESPONSE);
                    }
                    Some(Model::Inactive) => assert_eq!(r, Err(ReaderError::NotPowered(id))),
                    Some(_) => assert_eq!(r, Err(ReaderError::NoCard(id))),
                }
            }
            Op::Subscribe => {
                // A late subscriber with replay sees the current state first.
                let events = self.set.subscribe_with_replay();
                let mut expected = Vec::new();
                for (id, (name, s)) in &self.model {
                    expected.push(Event {
                        kind: EventKind::ReaderInserted,
                        reader: *id,
                        name: name.as_str().into(),
                    });
                    if matches!(s, Model::Inactive | Model::Active) {
                        expected.push(Event {
                            kind: EventKind::CardInserted,
                            reader: *id,
                            name: name.as_str().into(),
                        });
                    }
                }
                self.subscribers.push((events, expected));
            }
        }
        // Presence queries agree with the model.
        for (id, (_, s)) in &self.model {
            assert_eq!(
                self.set.card_present(*id).unwrap(),
                matches!(s, Model::Inactive | Model::Active)
            );
        }
        assert_eq!(self.set.list().len(), self.model.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_operations_match_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let set = ReaderSet::new();
        let first = set.subscribe();
        let mut world = World {
            set,
            model: BTreeMap::new(),
            removed: Vec::new(),
            subscribers: vec![(first, Vec::new())],
            cards: 0,
        };
        for op in &ops {
            world.apply(op);
        }
        for (events, expected) in &world.subscribers {
            let got: Vec<Event> = std::iter::from_fn(|| events.try_next()).collect();
            prop_assert_eq!(&got, expected);
            prop_assert_eq!(events.next_timeout(Duration::ZERO), None);
        }
    }
}

#[test]
fn dropping_the_set_ends_every_stream() {
    let set = ReaderSet::new();
    let events = set.subscribe();
    let id = set.add_reader("r").unwrap();
    drop(set);
    assert_eq!(
        events.next_blocking().map(|e| (e.kind, e.reader)),
        Some((EventKind::ReaderInserted, id))
    );
    assert_eq!(events.next_blocking(), None);
    assert_eq!(events.next_timeout(Duration::from_secs(5)), None);
}

#[test]
fn handles_fail_once_their_reader_is_removed() {
    let set = ReaderSet::new();
    let id = set.add_reader("r").unwrap();
    set.insert_card(id, common::card(1)).unwrap();
    let h = set.handle(id).unwrap();
    assert_eq!(h.power_on().unwrap(), cac::DEFAULT_ATR);
    let mut resp = Vec::new();
    h.transmit(&common::SELECT_CCC, &mut resp).unwrap();
    assert_eq!(resp, common::SELECT_CCC_RESPONSE);
    let card = set.remove_reader(id).unwrap().unwrap();
    assert_eq!(card.as_cac().unwrap().card_id(), [0, 0, 0, 0, 0, 0, 0, 1]);
    resp.clear();
    assert_eq!(
        h.transmit(&common::SELECT_CCC, &mut resp),
        Err(ReaderError::NoSuchReader(id))
    );
    assert_eq!(h.card_present(), Err(ReaderError::NoSuchReader(id)));
    assert!(resp.is_empty());
    // IDs are not reused.
    assert_ne!(set.add_reader("r").unwrap(), id);
}

#[test]
fn power_off_logs_the_card_out() {
    let set = ReaderSet::new();
    let id = set.add_reader("r").unwrap();
    set.insert_card(id, common::card(1)).unwrap();
    set.power_on(id).unwrap();
    let mut resp = Vec::new();
    set.transmit(
        id,
        &[
            0x00, 0x20, 0x00, 0x00, 0x08, b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8',
        ],
        &mut resp,
    )
    .unwrap();
    assert_eq!(resp, [0x90, 0x00]);
    assert!(set
        .with_card(id, |c| c.as_cac().unwrap().is_verified())
        .unwrap());
    set.power_off(id).unwrap();
    assert!(!set
        .with_card(id, |c| c.as_cac().unwrap().is_verified())
        .unwrap());
    assert_eq!(
        set.transmit(id, &common::SELECT_CCC, &mut resp),
        Err(ReaderError::NotPowered(id))
    );
    // A removed card comes back powered off.
    set.power_on(id).unwrap();
    let card = set.remove_card(id).unwrap();
    assert!(!card.as_cac().unwrap().is_verified());
}
