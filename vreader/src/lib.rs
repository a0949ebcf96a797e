//! Virtual smart card readers and their event queue.
//!
//! A [`ReaderSet`] owns any number of named readers. Each reader holds at
//! most one card — a [`cac::Card`], or any other [`VirtualCard`] (a remote
//! card, for example) — and walks an explicit state machine:
//!
//! ```text
//!            insert_card                 power_on
//!   Empty ───────────────► Inactive ─────────────► Active ──┐ transmit,
//!     ▲  ◄─────────────────    │  ◄───────────────   │  ◄───┘ reset
//!     │     remove_card        │      power_off      │
//!     │                        │ force_remove        │ force_remove
//!     │                        ▼                     ▼
//!     └──── remove_card ─── Ejected ◄────────────────┘
//!                              │ force_insert
//!                              └──────────────► Inactive
//! ```
//!
//! Every change publishes an [`Event`] (reader inserted / removed, card
//! inserted / removed) to every subscriber, in order, none lost.
//!
//! It does no I/O, spawns no threads and reads no clock (the only waiting
//! is [`Events::next_timeout`], a condition variable). Readers are
//! independent: a transmit locks only its own reader, so a slow signature
//! on one never delays another, and a removal racing a transmit waits for
//! it to finish — the transmit returns a whole response or a
//! [`ReaderError`], never a torn one.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use vreader::{EventKind, ReaderSet};
//!
//! # fn card() -> cac::Card {
//! #     let files = certs_fixtures::default_card::files();
//! #     let mut read = |n: &str| files.iter().find(|(f, _)| *f == n).map(|(_, b)| b.to_vec()).ok_or(String::new());
//! #     cac::config::load_card(certs_fixtures::default_card::CARD_TOML, &mut read, &cac::keys::RustCrypto, rand_core::UnwrapErr(getrandom::SysRng)).unwrap()
//! # }
//! let set = ReaderSet::new();
//! let events = set.subscribe();
//! let reader = set.add_reader("Virtual CAC 0")?;
//! set.insert_card(reader, card())?;
//!
//! let atr = set.power_on(reader)?;
//! assert_eq!(atr, cac::DEFAULT_ATR);
//! let mut response = Vec::new();
//! set.transmit(reader, &[0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00, 0x00], &mut response)?;
//! assert_eq!(&response[response.len() - 2..], [0x90, 0x00]);
//!
//! set.remove_reader(reader)?;
//! let kinds: Vec<EventKind> = std::iter::from_fn(|| events.next_timeout(Duration::ZERO)).map(|e| e.kind).collect();
//! assert_eq!(kinds, [EventKind::ReaderInserted, EventKind::CardInserted, EventKind::CardRemoved, EventKind::ReaderRemoved]);
//! # Ok::<(), vreader::ReaderError>(())
//! ```
//!
//! # How this maps to libcacard
//!
//! | libcacard | here |
//! |---|---|
//! | global reader list, `vreader_add_reader` / `vreader_remove_reader` | a [`ReaderSet`] value (as many as you like), [`ReaderSet::add_reader`] / [`ReaderSet::remove_reader`] |
//! | `vreader_get_reader_by_id` / `_by_name`, `vreader_get_reader_list` | [`ReaderSet::find`], [`ReaderSet::reader`], [`ReaderSet::list`] |
//! | `vreader_insert_card` (NULL to remove) | [`ReaderSet::insert_card`], [`ReaderSet::remove_card`] |
//! | `vreader_power_on` / `_off`, `vreader_xfr_bytes` | [`ReaderSet::power_on`], [`ReaderSet::power_off`], [`ReaderSet::reset`], [`ReaderSet::transmit`] |
//! | `vreader_card_is_present` | [`ReaderSet::card_present`] |
//! | `vevent_get_next_vevent` / `vevent_wait_next_vevent` (one global queue) | [`Events::try_next`] / [`Events::next_timeout`] on a per-subscriber queue |
//! | `vcard_emul_force_card_remove` / `_insert` | [`ReaderSet::force_remove`] / [`ReaderSet::force_insert`] |
//! | `vcard_emul_replay_insertion_events` | [`ReaderSet::subscribe_with_replay`] (atomic: no event is missed or doubled) |
//!
//! A C ABI can keep one `ReaderSet` behind its global functions and one
//! subscriber for `vevent_*`, mapping [`ReaderId`] to `vreader_id_t`.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod card;
mod events;

use core::fmt;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

pub use card::{CardFault, VirtualCard};
#[cfg(feature = "async")]
pub use events::NextEvent;
pub use events::{Event, EventKind, Events, ReaderId};

/// Errors of reader operations. Each says which reader and why.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderError {
    /// No reader with this ID (never existed, or removed).
    NoSuchReader(ReaderId),
    /// A reader with this name already exists.
    NameTaken(String),
    /// The reader has no card.
    NoCard(ReaderId),
    /// The reader already holds a card.
    CardPresent(ReaderId),
    /// The card is not powered (power it on first).
    NotPowered(ReaderId),
    /// `force_insert` without a card that `force_remove` took out.
    NotEjected(ReaderId),
    /// The card failed to answer (a remote card's link broke).
    CardFault {
        /// The reader.
        reader: ReaderId,
        /// What the card reported.
        reason: String,
    },
}

impl fmt::Display for ReaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReaderError::NoSuchReader(id) => write!(f, "reader {id}: no such reader"),
            ReaderError::NameTaken(n) => write!(f, "a reader named \"{n}\" already exists"),
            ReaderError::NoCard(id) => write!(f, "reader {id}: no card inserted"),
            ReaderError::CardPresent(id) => write!(f, "reader {id}: a card is already inserted"),
            ReaderError::NotPowered(id) => write!(f, "reader {id}: the card is not powered"),
            ReaderError::NotEjected(id) => {
                write!(f, "reader {id}: no force-removed card to re-insert")
            }
            ReaderError::CardFault { reader, reason } => {
                write!(f, "reader {reader}: the card failed: {reason}")
            }
        }
    }
}

impl std::error::Error for ReaderError {}

/// A reader's slot. Transitions consume the old state.
enum Slot {
    /// No card.
    Empty,
    /// A card, not powered.
    Inactive(Box<dyn VirtualCard>),
    /// A powered card.
    Active(Box<dyn VirtualCard>),
    /// A card taken out by `force_remove`, kept for `force_insert`.
    Ejected(Box<dyn VirtualCard>),
    /// The reader was removed from its set.
    Gone,
}

impl Slot {
    fn has_card(&self) -> bool {
        matches!(self, Slot::Inactive(_) | Slot::Active(_))
    }
}

/// A reader as seen from outside: its ID, name and whether a card is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderInfo {
    /// Stable ID.
    pub id: ReaderId,
    /// Name.
    pub name: Arc<str>,
    /// A card is inserted (powered or not).
    pub card_present: bool,
}

struct Reader {
    id: ReaderId,
    name: Arc<str>,
    slot: Mutex<Slot>,
}

impl Reader {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // Card operations cannot panic on input (the card is total), so a
        // poisoned slot is still consistent.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn event(&self, kind: EventKind) -> Event {
        Event {
            kind,
            reader: self.id,
            name: self.name.clone(),
        }
    }
}

#[derive(Default)]
struct Registry {
    readers: BTreeMap<ReaderId, Arc<Reader>>,
    next_id: u32,
}

/// A set of virtual readers with its event fan-out. Share it between
/// threads behind an `Arc`; every method takes `&self`.
#[derive(Default)]
pub struct ReaderSet {
    registry: RwLock<Registry>,
    fanout: events::Fanout,
}

impl fmt::Debug for ReaderSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list()).finish()
    }
}

impl Drop for ReaderSet {
    fn drop(&mut self) {
        self.fanout.close();
    }
}

/// A handle on one reader: the fast path for a transport that serves a
/// single reader (no registry lookup per APDU). Operations on a handle
/// whose reader was removed fail with [`ReaderError::NoSuchReader`].
#[derive(Clone)]
pub struct ReaderHandle {
    reader: Arc<Reader>,
}

impl fmt::Debug for ReaderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ReaderHandle({} \"{}\")",
            self.reader.id, self.reader.name
        )
    }
}

impl ReaderSet {
    /// An empty set.
    pub fn new() -> ReaderSet {
        ReaderSet::default()
    }

    fn registry_read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    fn registry_write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: ReaderId) -> Result<Arc<Reader>, ReaderError> {
        self.registry_read()
            .readers
            .get(&id)
            .cloned()
            .ok_or(ReaderError::NoSuchReader(id))
    }

    /// Subscribes to events from now on.
    pub fn subscribe(&self) -> Events {
        self.fanout.subscribe(Vec::new())
    }

    /// Subscribes, with the queue pre-filled with a `ReaderInserted` for
    /// every reader and a `CardInserted` for every card present — the
    /// current state as events, for a consumer that attaches late. The
    /// snapshot and the subscription are atomic: later changes follow
    /// without gap or duplicate.
    pub fn subscribe_with_replay(&self) -> Events {
        let registry = self.registry_write();
        let slots: Vec<_> = registry.readers.values().map(|r| (r, r.lock())).collect();
        let mut initial = Vec::with_capacity(slots.len() * 2);
        for (reader, slot) in &slots {
            initial.push(reader.event(EventKind::ReaderInserted));
            if slot.has_card() {
                initial.push(reader.event(EventKind::CardInserted));
            }
        }
        let events = self.fanout.subscribe(initial);
        drop(slots);
        drop(registry);
        events
    }

    /// Adds a reader; publishes `ReaderInserted`.
    pub fn add_reader(&self, name: &str) -> Result<ReaderId, ReaderError> {
        let mut registry = self.registry_write();
        if registry.readers.values().any(|r| &*r.name == name) {
            return Err(ReaderError::NameTaken(name.to_owned()));
        }
        let id = ReaderId(registry.next_id);
        registry.next_id = registry.next_id.wrapping_add(1);
        let reader = Arc::new(Reader {
            id,
            name: Arc::from(name),
            slot: Mutex::new(Slot::Empty),
        });
        self.fanout.publish(reader.event(EventKind::ReaderInserted));
        registry.readers.insert(id, reader);
        Ok(id)
    }

    /// Removes a reader, first removing its card (`CardRemoved`), then
    /// publishing `ReaderRemoved`. Returns the card that was in it.
    pub fn remove_reader(&self, id: ReaderId) -> Result<Option<Box<dyn VirtualCard>>, ReaderError> {
        let mut registry = self.registry_write();
        let reader = registry
            .readers
            .remove(&id)
            .ok_or(ReaderError::NoSuchReader(id))?;
        let mut slot = reader.lock();
        let card = match std::mem::replace(&mut *slot, Slot::Gone) {
            Slot::Inactive(card) | Slot::Active(card) => {
                self.fanout.publish(reader.event(EventKind::CardRemoved));
                Some(card)
            }
            Slot::Ejected(card) => Some(card),
            Slot::Empty | Slot::Gone => None,
        };
        self.fanout.publish(reader.event(EventKind::ReaderRemoved));
        Ok(card.map(|mut c| {
            c.power_off();
            c
        }))
    }

    /// Looks a reader up by name.
    pub fn find(&self, name: &str) -> Option<ReaderId> {
        self.registry_read()
            .readers
            .values()
            .find(|r| &*r.name == name)
            .map(|r| r.id)
    }

    /// A reader's info by ID.
    pub fn reader(&self, id: ReaderId) -> Option<ReaderInfo> {
        self.get(id).ok().map(|r| info(&r))
    }

    /// Every reader, in ID order.
    pub fn list(&self) -> Vec<ReaderInfo> {
        self.registry_read()
            .readers
            .values()
            .map(|r| info(r))
            .collect()
    }

    /// A handle for the fast path (see [`ReaderHandle`]).
    pub fn handle(&self, id: ReaderId) -> Result<ReaderHandle, ReaderError> {
        Ok(ReaderHandle {
            reader: self.get(id)?,
        })
    }

    /// True when a card is inserted (powered or not).
    pub fn card_present(&self, id: ReaderId) -> Result<bool, ReaderError> {
        Ok(self.get(id)?.lock().has_card())
    }

    /// Inserts a card (not powered); publishes `CardInserted`. A card kept
    /// by [`ReaderSet::force_remove`] is replaced.
    pub fn insert_card(
        &self,
        id: ReaderId,
        card: impl Into<Box<dyn VirtualCard>>,
    ) -> Result<(), ReaderError> {
        let reader = self.get(id)?;
        let mut slot = reader.lock();
        match &*slot {
            Slot::Gone => return Err(ReaderError::NoSuchReader(id)),
            Slot::Inactive(_) | Slot::Active(_) => return Err(ReaderError::CardPresent(id)),
            Slot::Empty | Slot::Ejected(_) => {}
        }
        let mut card = card.into();
        card.power_off();
        *slot = Slot::Inactive(card);
        self.fanout.publish(reader.event(EventKind::CardInserted));
        Ok(())
    }

    /// Removes the card and gives it back (powered off); publishes
    /// `CardRemoved`. A force-removed card is given back too (no event:
    /// its removal was already published).
    pub fn remove_card(&self, id: ReaderId) -> Result<Box<dyn VirtualCard>, ReaderError> {
        let reader = self.get(id)?;
        let mut slot = reader.lock();
        let card = match std::mem::replace(&mut *slot, Slot::Empty) {
            Slot::Inactive(card) | Slot::Active(card) => {
                self.fanout.publish(reader.event(EventKind::CardRemoved));
                card
            }
            Slot::Ejected(card) => card,
            Slot::Empty => return Err(ReaderError::NoCard(id)),
            Slot::Gone => {
                *slot = Slot::Gone;
                return Err(ReaderError::NoSuchReader(id));
            }
        };
        let mut card = card;
        card.power_off();
        Ok(card)
    }

    /// Takes the card out but keeps it in the reader for
    /// [`ReaderSet::force_insert`]; publishes `CardRemoved`.
    pub fn force_remove(&self, id: ReaderId) -> Result<(), ReaderError> {
        let reader = self.get(id)?;
        let mut slot = reader.lock();
        match std::mem::replace(&mut *slot, Slot::Empty) {
            Slot::Inactive(mut card) | Slot::Active(mut card) => {
                card.power_off();
                *slot = Slot::Ejected(card);
                self.fanout.publish(reader.event(EventKind::CardRemoved));
                Ok(())
            }
            other => {
                let err = match &other {
                    Slot::Gone => ReaderError::NoSuchReader(id),
                    _ => ReaderError::NoCard(id),
                };
                *slot = other;
                Err(err)
            }
        }
    }

    /// Re-inserts the card [`ReaderSet::force_remove`] took out; publishes
    /// `CardInserted`.
    pub fn force_insert(&self, id: ReaderId) -> Result<(), ReaderError> {
        let reader = self.get(id)?;
        let mut slot = reader.lock();
        match std::mem::replace(&mut *slot, Slot::Empty) {
            Slot::Ejected(card) => {
                *slot = Slot::Inactive(card);
                self.fanout.publish(reader.event(EventKind::CardInserted));
                Ok(())
            }
            other => {
                let err = match &other {
                    Slot::Gone => ReaderError::NoSuchReader(id),
                    Slot::Inactive(_) | Slot::Active(_) => ReaderError::CardPresent(id),
                    _ => ReaderError::NotEjected(id),
                };
                *slot = other;
                Err(err)
            }
        }
    }

    /// Powers the card on (cold reset) and returns its ATR.
    pub fn power_on(&self, id: ReaderId) -> Result<Vec<u8>, ReaderError> {
        power_on(&*self.get(id)?)
    }

    /// Warm reset of a powered card; returns the ATR.
    pub fn reset(&self, id: ReaderId) -> Result<Vec<u8>, ReaderError> {
        reset(&*self.get(id)?)
    }

    /// Powers the card off (logs out, drops session state).
    pub fn power_off(&self, id: ReaderId) -> Result<(), ReaderError> {
        power_off(&*self.get(id)?)
    }

    /// Sends a command APDU to the powered card; appends the response APDU
    /// to `response`.
    pub fn transmit(
        &self,
        id: ReaderId,
        command: &[u8],
        response: &mut Vec<u8>,
    ) -> Result<(), ReaderError> {
        transmit(&*self.get(id)?, command, response)
    }

    /// The ATR of the inserted card (powered or not).
    pub fn atr(&self, id: ReaderId) -> Result<Vec<u8>, ReaderError> {
        atr(&*self.get(id)?)
    }

    /// Runs `f` on the inserted card (powered or not), e.g. to inspect it
    /// (`card.as_cac_mut()` gives the emulated [`cac::Card`]).
    pub fn with_card<T>(
        &self,
        id: ReaderId,
        f: impl FnOnce(&mut dyn VirtualCard) -> T,
    ) -> Result<T, ReaderError> {
        let reader = self.get(id)?;
        let mut slot = reader.lock();
        match &mut *slot {
            Slot::Inactive(card) | Slot::Active(card) => Ok(f(card.as_mut())),
            Slot::Gone => Err(ReaderError::NoSuchReader(id)),
            Slot::Empty | Slot::Ejected(_) => Err(ReaderError::NoCard(id)),
        }
    }
}

fn fault(reader: ReaderId, e: CardFault) -> ReaderError {
    ReaderError::CardFault {
        reader,
        reason: e.0,
    }
}

fn info(r: &Reader) -> ReaderInfo {
    ReaderInfo {
        id: r.id,
        name: r.name.clone(),
        card_present: r.lock().has_card(),
    }
}

fn power_on(reader: &Reader) -> Result<Vec<u8>, ReaderError> {
    let id = reader.id;
    let mut slot = reader.lock();
    match std::mem::replace(&mut *slot, Slot::Empty) {
        Slot::Inactive(mut card) | Slot::Active(mut card) => match card.power_on() {
            Ok(atr) => {
                *slot = Slot::Active(card);
                Ok(atr)
            }
            Err(e) => {
                *slot = Slot::Inactive(card);
                Err(fault(id, e))
            }
        },
        other => {
            let err = match &other {
                Slot::Gone => ReaderError::NoSuchReader(id),
                _ => ReaderError::NoCard(id),
            };
            *slot = other;
            Err(err)
        }
    }
}

fn atr(reader: &Reader) -> Result<Vec<u8>, ReaderError> {
    match &*reader.lock() {
        Slot::Inactive(card) | Slot::Active(card) => card.atr().map_err(|e| fault(reader.id, e)),
        Slot::Gone => Err(ReaderError::NoSuchReader(reader.id)),
        Slot::Empty | Slot::Ejected(_) => Err(ReaderError::NoCard(reader.id)),
    }
}

fn reset(reader: &Reader) -> Result<Vec<u8>, ReaderError> {
    let id = reader.id;
    let mut slot = reader.lock();
    match &mut *slot {
        Slot::Active(card) => card.reset().map_err(|e| fault(id, e)),
        Slot::Inactive(_) => Err(ReaderError::NotPowered(id)),
        Slot::Gone => Err(ReaderError::NoSuchReader(id)),
        Slot::Empty | Slot::Ejected(_) => Err(ReaderError::NoCard(id)),
    }
}

fn power_off(reader: &Reader) -> Result<(), ReaderError> {
    let id = reader.id;
    let mut slot = reader.lock();
    match std::mem::replace(&mut *slot, Slot::Empty) {
        Slot::Inactive(mut card) | Slot::Active(mut card) => {
            card.power_off();
            *slot = Slot::Inactive(card);
            Ok(())
        }
        other => {
            let err = match &other {
                Slot::Gone => ReaderError::NoSuchReader(id),
                _ => ReaderError::NoCard(id),
            };
            *slot = other;
            Err(err)
        }
    }
}

fn transmit(reader: &Reader, command: &[u8], response: &mut Vec<u8>) -> Result<(), ReaderError> {
    let id = reader.id;
    let mut slot = reader.lock();
    match &mut *slot {
        Slot::Active(card) => {
            let before = response.len();
            card.transmit(command, response).map_err(|e| {
                response.truncate(before);
                fault(id, e)
            })
        }
        Slot::Inactive(_) => Err(ReaderError::NotPowered(id)),
        Slot::Gone => Err(ReaderError::NoSuchReader(id)),
        Slot::Empty | Slot::Ejected(_) => Err(ReaderError::NoCard(id)),
    }
}

impl ReaderHandle {
    /// The reader's ID.
    pub fn id(&self) -> ReaderId {
        self.reader.id
    }

    /// The reader's name.
    pub fn name(&self) -> &str {
        &self.reader.name
    }

    /// See [`ReaderSet::power_on`].
    pub fn power_on(&self) -> Result<Vec<u8>, ReaderError> {
        power_on(&self.reader)
    }

    /// See [`ReaderSet::atr`].
    pub fn atr(&self) -> Result<Vec<u8>, ReaderError> {
        atr(&self.reader)
    }

    /// See [`ReaderSet::reset`].
    pub fn reset(&self) -> Result<Vec<u8>, ReaderError> {
        reset(&self.reader)
    }

    /// See [`ReaderSet::power_off`].
    pub fn power_off(&self) -> Result<(), ReaderError> {
        power_off(&self.reader)
    }

    /// See [`ReaderSet::transmit`].
    pub fn transmit(&self, command: &[u8], response: &mut Vec<u8>) -> Result<(), ReaderError> {
        transmit(&self.reader, command, response)
    }

    /// True when a card is inserted.
    pub fn card_present(&self) -> Result<bool, ReaderError> {
        match &*self.reader.lock() {
            Slot::Gone => Err(ReaderError::NoSuchReader(self.reader.id)),
            s => Ok(s.has_card()),
        }
    }
}
