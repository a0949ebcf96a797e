//! What a reader can hold: any [`VirtualCard`] — the emulated
//! [`cac::Card`], or a card that lives elsewhere (a VSCard client's, for
//! example).

use core::any::Any;
use core::fmt;

use cac::Card;

/// A card failed to answer (a remote card's connection dropped, it timed
/// out, …). The emulated [`cac::Card`] never fails: it answers every
/// command with a status word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardFault(pub String);

impl fmt::Display for CardFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CardFault {}

/// A smart card a reader can hold.
///
/// Implemented for [`cac::Card`]; implement it for a card that lives
/// elsewhere (the `ccid` crate does for VSCard remote cards).
pub trait VirtualCard: Any + Send {
    /// The ATR, without changing the card's state.
    fn atr(&self) -> Result<Vec<u8>, CardFault>;
    /// Cold reset: clears the session, returns the ATR.
    fn power_on(&mut self) -> Result<Vec<u8>, CardFault>;
    /// Warm reset: returns the ATR.
    fn reset(&mut self) -> Result<Vec<u8>, CardFault>;
    /// Power off: clears the session (login, selections).
    fn power_off(&mut self);
    /// One command APDU; appends the response APDU (data and status word)
    /// to `response`, or fails leaving `response` as it was.
    fn transmit(&mut self, command: &[u8], response: &mut Vec<u8>) -> Result<(), CardFault>;
}

impl VirtualCard for Card {
    fn atr(&self) -> Result<Vec<u8>, CardFault> {
        Ok(Card::atr(self).as_bytes().to_vec())
    }

    fn power_on(&mut self) -> Result<Vec<u8>, CardFault> {
        Ok(Card::power_on(self).to_vec())
    }

    fn reset(&mut self) -> Result<Vec<u8>, CardFault> {
        Ok(Card::reset(self).to_vec())
    }

    fn power_off(&mut self) {
        Card::power_off(self);
    }

    fn transmit(&mut self, command: &[u8], response: &mut Vec<u8>) -> Result<(), CardFault> {
        Card::transmit(self, command, response);
        Ok(())
    }
}

impl From<Card> for Box<dyn VirtualCard> {
    fn from(card: Card) -> Box<dyn VirtualCard> {
        Box::new(card)
    }
}

impl fmt::Debug for dyn VirtualCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_cac() {
            Some(card) => card.fmt(f),
            None => f.write_str("VirtualCard(..)"),
        }
    }
}

impl dyn VirtualCard {
    /// The emulated card, if this is one.
    pub fn as_cac(&self) -> Option<&Card> {
        (self as &dyn Any).downcast_ref()
    }

    /// The emulated card, mutably, if this is one.
    pub fn as_cac_mut(&mut self) -> Option<&mut Card> {
        (self as &mut dyn Any).downcast_mut()
    }

    /// Unboxes the emulated card, or gives the box back.
    pub fn into_cac(self: Box<Self>) -> Result<Card, Box<dyn VirtualCard>> {
        if (&*self as &dyn Any).is::<Card>() {
            let any: Box<dyn Any> = self;
            any.downcast::<Card>()
                .map(|c| *c)
                .map_err(|_| unreachable_box())
        } else {
            Err(self)
        }
    }
}

/// `into_cac` checked the type first; this is never called, but keeps the
/// function total without a panic.
#[cold]
fn unreachable_box() -> Box<dyn VirtualCard> {
    Box::new(Absent)
}

/// A card that is not there: every operation fails.
struct Absent;

impl VirtualCard for Absent {
    fn atr(&self) -> Result<Vec<u8>, CardFault> {
        Err(CardFault("no card".into()))
    }
    fn power_on(&mut self) -> Result<Vec<u8>, CardFault> {
        Err(CardFault("no card".into()))
    }
    fn reset(&mut self) -> Result<Vec<u8>, CardFault> {
        Err(CardFault("no card".into()))
    }
    fn power_off(&mut self) {}
    fn transmit(&mut self, _: &[u8], _: &mut Vec<u8>) -> Result<(), CardFault> {
        Err(CardFault("no card".into()))
    }
}
