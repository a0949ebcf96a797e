//! Remote cards into reader slots: the last step of what QEMU's
//! `ccid-card-passthru` does, for a Rust VMM.
//!
//! A VMM builds a [`vreader::ReaderSet`] with one reader per CCID slot and
//! a [`CcidDevice`](crate::device::CcidDevice) over them. The [`Bridge`]
//! takes the [`Server`]'s events and puts each VSCard client's card into a
//! free slot (a remote reader claims the first slot nobody holds), takes it
//! out when the client removes it or goes away, and the device model sees
//! ordinary insertions and removals (NotifySlotChange) and transmits to the
//! remote card as to any other.
//!
//! ```text
//!  vcac passthru ── VSCard ──► Server ─ events ─► Bridge ─► ReaderSet slot ─► CcidDevice ─► guest
//!               ◄──────────── RemoteCard::transmit ◄──────────── job.run() ◄──┘
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vreader::{ReaderError, ReaderId, ReaderSet};

use super::server::{RemoteReaderId, Server, ServerEvent};

/// Maps remote readers onto a fixed list of local reader slots.
#[derive(Debug)]
pub struct Bridge {
    slots: Vec<(ReaderId, Option<RemoteReaderId>)>,
}

impl Bridge {
    /// A bridge that fills these readers, in order.
    pub fn new(slots: &[ReaderId]) -> Bridge {
        Bridge {
            slots: slots.iter().map(|id| (*id, None)).collect(),
        }
    }

    /// The local reader a remote reader occupies.
    pub fn slot_of(&self, remote: RemoteReaderId) -> Option<ReaderId> {
        self.slots
            .iter()
            .find(|(_, r)| *r == Some(remote))
            .map(|(id, _)| *id)
    }

    fn claim(&mut self, remote: RemoteReaderId) -> Option<ReaderId> {
        if let Some(id) = self.slot_of(remote) {
            return Some(id);
        }
        let (id, holder) = self.slots.iter_mut().find(|(_, r)| r.is_none())?;
        *holder = Some(remote);
        Some(*id)
    }

    /// Applies one server event to `set`; returns the local reader it
    /// changed, if any.
    pub fn apply(
        &mut self,
        set: &ReaderSet,
        event: &ServerEvent,
    ) -> Result<Option<ReaderId>, ReaderError> {
        match event {
            ServerEvent::ReaderAdded(card) => {
                let slot = self.claim(card.id());
                if slot.is_none() {
                    log::warn!(
                        "{} (\"{}\"): every slot is taken; ignoring it",
                        card.id(),
                        card.name()
                    );
                }
                Ok(slot)
            }
            ServerEvent::CardInserted { card, .. } => {
                let Some(slot) = self.claim(card.id()) else {
                    log::warn!("{}: card inserted but no slot is free", card.id());
                    return Ok(None);
                };
                // A second ATR for the same reader is a reset: swap the card.
                if set.card_present(slot)? {
                    set.remove_card(slot)?;
                }
                set.insert_card(slot, card.clone())?;
                log::info!("{} (\"{}\"): card in reader {slot}", card.id(), card.name());
                Ok(Some(slot))
            }
            ServerEvent::CardRemoved(card) => match self.slot_of(card.id()) {
                Some(slot) => {
                    remove_if_present(set, slot)?;
                    Ok(Some(slot))
                }
                None => Ok(None),
            },
            ServerEvent::ReaderRemoved(card) => match self.slot_of(card.id()) {
                Some(slot) => {
                    remove_if_present(set, slot)?;
                    for (_, holder) in &mut self.slots {
                        if *holder == Some(card.id()) {
                            *holder = None;
                        }
                    }
                    Ok(Some(slot))
                }
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Applies the server's events until `stop` is set.
    pub fn run(&mut self, server: &Server, set: &ReaderSet, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if let Some(event) = server.next_event(Duration::from_millis(100)) {
                if let Err(e) = self.apply(set, &event) {
                    log::warn!("VSCard bridge: {e}");
                }
            }
        }
    }
}

fn remove_if_present(set: &ReaderSet, slot: ReaderId) -> Result<(), ReaderError> {
    match set.remove_card(slot) {
        Ok(_) | Err(ReaderError::NoCard(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
