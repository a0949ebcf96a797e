//! The card-global PIN, its retry counter, and the PUK that unblocks it.
//!
//! CAC PINs are 6 to 8 ASCII digits, sent `FF`-padded to 8 bytes. The PIN
//! and counters are *persistent* card state; whether the PIN has been
//! verified in this session is *volatile* and lives in the card's session
//! state, cleared by power-off, reset and removal.

use core::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of a PIN block on the wire.
pub const PIN_BLOCK_LEN: usize = 8;

/// Why a PIN value or policy is rejected.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinError {
    /// Fewer than 6 or more than 8 characters.
    Length(usize),
    /// A character that is not an ASCII digit.
    NotDigits,
    /// Retry limit outside 1..=15 (it must fit `63 Cx`).
    Tries(u8),
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinError::Length(n) => write!(f, "PIN/PUK must have 6 to 8 digits, got {n} characters"),
            PinError::NotDigits => write!(f, "PIN/PUK must contain only the digits 0-9"),
            PinError::Tries(n) => write!(f, "retry limit must be 1 to 15, got {n}"),
        }
    }
}

impl std::error::Error for PinError {}

/// A PIN or PUK value, stored `FF`-padded and zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin([u8; PIN_BLOCK_LEN]);

impl Pin {
    /// Validates a 6–8 digit PIN.
    pub fn new(digits: &str) -> Result<Pin, PinError> {
        let bytes = digits.as_bytes();
        if !(6..=PIN_BLOCK_LEN).contains(&bytes.len()) {
            return Err(PinError::Length(digits.chars().count()));
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(PinError::NotDigits);
        }
        let mut block = [0xFF; PIN_BLOCK_LEN];
        for (dst, src) in block.iter_mut().zip(bytes) {
            *dst = *src;
        }
        Ok(Pin(block))
    }

    /// Parses a PIN block as sent in VERIFY: 6–8 digits, then `FF` padding.
    pub fn from_block(block: &[u8]) -> Result<Pin, PinError> {
        let arr: [u8; PIN_BLOCK_LEN] = block
            .try_into()
            .map_err(|_| PinError::Length(block.len()))?;
        let digits = arr.iter().take_while(|b| **b != 0xFF).count();
        let (head, tail) = arr.split_at(digits);
        if !tail.iter().all(|b| *b == 0xFF) || !head.iter().all(u8::is_ascii_digit) {
            return Err(PinError::NotDigits);
        }
        if digits < 6 {
            return Err(PinError::Length(digits));
        }
        Ok(Pin(arr))
    }

    /// A PIN from a block known to be valid (crate constants only).
    pub(crate) const fn from_valid_block(block: [u8; PIN_BLOCK_LEN]) -> Pin {
        Pin(block)
    }

    /// The `FF`-padded block (for persisting a changed PIN; never logged).
    pub(crate) fn block(&self) -> &[u8; PIN_BLOCK_LEN] {
        &self.0
    }

    /// Constant-time comparison with a block from the wire (any length:
    /// a block of the wrong length compares unequal, still in constant
    /// time with respect to the stored PIN).
    pub fn matches(&self, block: &[u8]) -> bool {
        let mut candidate = [0u8; PIN_BLOCK_LEN];
        let len_ok = block.len() == PIN_BLOCK_LEN;
        for (dst, src) in candidate.iter_mut().zip(block) {
            *dst = *src;
        }
        let eq = self.0.ct_eq(&candidate);
        candidate.zeroize();
        bool::from(eq) && len_ok
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Default number of wrong PINs before the PIN blocks.
pub const DEFAULT_PIN_TRIES: u8 = 3;
/// Default number of wrong PUKs before the PUK blocks.
pub const DEFAULT_PUK_TRIES: u8 = 10;

/// PIN policy of a card: PIN, retry limit, and an optional PUK.
#[derive(Clone, Debug)]
pub struct PinPolicy {
    pin: Pin,
    max_tries: u8,
    puk: Option<(Pin, u8)>,
}

impl PinPolicy {
    /// A policy with `pin` and the default retry limit (3), no PUK.
    pub fn new(pin: Pin) -> PinPolicy {
        PinPolicy {
            pin,
            max_tries: DEFAULT_PIN_TRIES,
            puk: None,
        }
    }

    /// Sets the retry limit (1..=15).
    pub fn with_max_tries(mut self, tries: u8) -> Result<PinPolicy, PinError> {
        check_tries(tries)?;
        self.max_tries = tries;
        Ok(self)
    }

    /// Adds a PUK with its own retry limit (1..=15).
    pub fn with_puk(mut self, puk: Pin, tries: u8) -> Result<PinPolicy, PinError> {
        check_tries(tries)?;
        self.puk = Some((puk, tries));
        Ok(self)
    }

    /// The PIN retry limit.
    pub fn max_tries(&self) -> u8 {
        self.max_tries
    }
}

fn check_tries(tries: u8) -> Result<(), PinError> {
    if (1..=15).contains(&tries) {
        Ok(())
    } else {
        Err(PinError::Tries(tries))
    }
}

/// Outcome of presenting a PIN or PUK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Correct; the counter was reset.
    Ok,
    /// Wrong; this many tries left (0 = now blocked).
    Wrong(u8),
    /// Already blocked; nothing was compared.
    Blocked,
}

/// Persistent PIN state: the policy and the live counters.
#[derive(Debug)]
pub(crate) struct PinState {
    policy: PinPolicy,
    tries_left: u8,
    puk_tries_left: u8,
}

impl PinState {
    pub(crate) fn new(policy: PinPolicy) -> PinState {
        PinState {
            tries_left: policy.max_tries,
            puk_tries_left: policy.puk.as_ref().map_or(0, |(_, t)| *t),
            policy,
        }
    }

    pub(crate) fn tries_left(&self) -> u8 {
        self.tries_left
    }

    pub(crate) fn has_puk(&self) -> bool {
        self.policy.puk.is_some()
    }

    /// Presents a PIN block; updates the counter.
    pub(crate) fn check_pin(&mut self, block: &[u8]) -> Check {
        if self.tries_left == 0 {
            return Check::Blocked;
        }
        if self.policy.pin.matches(block) {
            self.tries_left = self.policy.max_tries;
            Check::Ok
        } else {
            self.tries_left -= 1;
            Check::Wrong(self.tries_left)
        }
    }

    /// Presents a PUK block; updates the PUK counter.
    pub(crate) fn check_puk(&mut self, block: &[u8]) -> Check {
        let Some((puk, max)) = &self.policy.puk else {
            return Check::Blocked;
        };
        if self.puk_tries_left == 0 {
            return Check::Blocked;
        }
        if puk.matches(block) {
            self.puk_tries_left = *max;
            Check::Ok
        } else {
            self.puk_tries_left -= 1;
            Check::Wrong(self.puk_tries_left)
        }
    }

    /// Replaces the PIN and resets its counter.
    pub(crate) fn set_pin(&mut self, pin: Pin) {
        self.policy.pin = pin;
        self.tries_left = self.policy.max_tries;
    }

    /// Resets the PIN counter (unblock without a new PIN).
    pub(crate) fn reset_counter(&mut self) {
        self.tries_left = self.policy.max_tries;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_validation() {
        assert!(Pin::new("123456").is_ok());
        assert!(Pin::new("12345678").is_ok());
        assert_eq!(Pin::new("12345").unwrap_err(), PinError::Length(5));
        assert_eq!(Pin::new("123456789").unwrap_err(), PinError::Length(9));
        assert_eq!(Pin::new("12345a").unwrap_err(), PinError::NotDigits);
        assert!(Pin::from_block(b"123456\xFF\xFF").is_ok());
        assert!(Pin::from_block(b"123456\xFF1").is_err());
        assert!(Pin::from_block(b"12345\xFF\xFF\xFF").is_err());
        assert!(Pin::from_block(b"1234567").is_err());
    }

    #[test]
    fn padded_compare() {
        let pin = Pin::new("123456").unwrap();
        assert!(pin.matches(b"123456\xFF\xFF"));
        assert!(!pin.matches(b"123456\x00\x00"));
        assert!(!pin.matches(b"123456"));
        assert_eq!(format!("{pin:?}"), "Pin(<redacted>)");
    }

    #[test]
    fn counter_blocks_and_resets() {
        let mut s = PinState::new(PinPolicy::new(Pin::new("12345678").unwrap()));
        assert_eq!(s.check_pin(b"00000000"), Check::Wrong(2));
        assert_eq!(s.check_pin(b"12345678"), Check::Ok);
        assert_eq!(s.tries_left(), 3);
        assert_eq!(s.check_pin(b"00000000"), Check::Wrong(2));
        assert_eq!(s.check_pin(b"00000000"), Check::Wrong(1));
        assert_eq!(s.check_pin(b"00000000"), Check::Wrong(0));
        assert_eq!(s.check_pin(b"12345678"), Check::Blocked);
        s.reset_counter();
        assert_eq!(s.check_pin(b"12345678"), Check::Ok);
    }

    #[test]
    fn policy_limits() {
        let p = PinPolicy::new(Pin::new("123456").unwrap());
        assert!(p.clone().with_max_tries(0).is_err());
        assert!(p.clone().with_max_tries(16).is_err());
        assert_eq!(p.with_max_tries(15).unwrap().max_tries(), 15);
    }
}
