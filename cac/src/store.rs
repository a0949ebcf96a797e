//! Persistence hook: how a card writes back what its commands change.
//!
//! The card does no I/O. A command that changes persistent state (a PIV
//! PIN or PUK and their counters, a generated key, a written data object)
//! hands the change to the card's [`Store`] *before* it answers; only when
//! [`Store::persist`] returns `Ok` does the card answer `90 00`, so a
//! `90 00` means the change is already durable. An error makes the command
//! fail with `65 81` (memory failure) instead.
//!
//! ```text
//!  PIV applet ──Change──► Store::persist ──Ok──► 90 00
//!                                        └─Err─► 65 81
//! ```
//!
//! The default store ([`NullStore`]) keeps nothing: the card forgets its
//! changes when it is dropped. `vcac-sources` implements [`Store`] for card
//! directories (atomic replace, fsync, keys mode 0600).

use core::fmt;

/// One persistent change.
#[non_exhaustive]
pub enum Change<'a> {
    /// The PIV PIN and PUK (each 8 bytes, `FF`-padded digits) with their
    /// retry counters: written whenever any of them changes, including a
    /// decremented counter after a wrong PIN.
    PivCredentials {
        /// PIN block.
        pin: &'a [u8],
        /// PIN tries left.
        pin_tries_left: u8,
        /// PUK block.
        puk: &'a [u8],
        /// PUK tries left.
        puk_tries_left: u8,
    },
    /// A key generated on the card for PIV key reference `slot`.
    PivKey {
        /// Key reference (`9A`, `9C`, `9D`, `9E`, `82`–`95`).
        slot: u8,
        /// The private key, PKCS#8 DER.
        pkcs8_der: &'a [u8],
    },
    /// A PIV data object written with PUT DATA (a certificate container,
    /// CHUID, …): `tag` as in GET DATA (`5F C1 05`, `7E`), `object` the
    /// whole encoded object (`53 L …` or `7E L …`); `53 00` deletes it.
    PivObject {
        /// Object tag.
        tag: &'a [u8],
        /// Encoded object.
        object: &'a [u8],
    },
}

impl fmt::Debug for Change<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::PivCredentials {
                pin_tries_left,
                puk_tries_left,
                ..
            } => f
                .debug_struct("PivCredentials")
                .field("pin_tries_left", pin_tries_left)
                .field("puk_tries_left", puk_tries_left)
                .finish_non_exhaustive(),
            Change::PivKey { slot, .. } => f
                .debug_struct("PivKey")
                .field("slot", &format_args!("{slot:02X}"))
                .finish_non_exhaustive(),
            Change::PivObject { tag, object } => f
                .debug_struct("PivObject")
                .field("tag", &format_args!("{tag:02X?}"))
                .field("len", &object.len())
                .finish(),
        }
    }
}

/// Why a change could not be made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot persist the card's change: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// Where a card's persistent changes go.
pub trait Store: Send {
    /// Makes `change` durable, or fails (the command then answers `65 81`).
    fn persist(&mut self, change: &Change<'_>) -> Result<(), StoreError>;
}

/// A store that keeps nothing (changes live as long as the card).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullStore;

impl Store for NullStore {
    fn persist(&mut self, _: &Change<'_>) -> Result<(), StoreError> {
        Ok(())
    }
}
