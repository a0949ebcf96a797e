//! A software CAC (DoD Common Access Card) smart card.
//!
//! The card speaks ISO 7816-4 APDUs and carries the CAC v2 applets real
//! clients use: the Card Capabilities Container, the Access Control
//! Applet, one PKI applet per certificate, the GlobalPlatform card manager
//! and Microsoft's Plug and Play applet. It does no I/O, spawns no
//! threads and reads no clock: a reader hands it bytes, it hands bytes
//! back.
//!
//! ```text
//!        bytes                          ┌──────────── Card ─────────────┐
//!  host ───────► Card::transmit ──────► │ CommandView (ISO 7816 cases)  │
//!                                       │ dispatcher: SELECT, channels, │
//!                                       │   GET RESPONSE/61xx           │
//!                                       │ applets: CCC ACA PKI… GP PnP  │
//!                                       │   PIV (own PIN, PUK, 9B)      │
//!                                       │ security: PIN, PUK, login     │
//!  host ◄─────── R-APDU ◄────────────── │ key store: dyn KeyHandle      │
//!                                       └───────────────────────────────┘
//! ```
//!
//! # Example
//!
//! ```
//! use cac::{config, keys::RustCrypto, Status};
//! use rand_core::UnwrapErr;
//!
//! // The embedded default card: a CA and three RSA-2048 identities.
//! let files = certs_fixtures::default_card::files();
//! let mut read = |name: &str| {
//!     files.iter().find(|(n, _)| *n == name).map(|(_, b)| b.to_vec()).ok_or("missing".to_string())
//! };
//! let mut card = config::load_card(certs_fixtures::default_card::CARD_TOML, &mut read, &RustCrypto, UnwrapErr(getrandom::SysRng))?;
//!
//! assert_eq!(card.power_on(), cac::DEFAULT_ATR);
//! // SELECT the CCC as OpenSC does under T=0 (no Le): the FCI waits behind 61 0D.
//! let r = card.transmit_vec(&[0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00]);
//! assert_eq!(r, [0x61, 0x0D]);
//! let r = card.transmit_vec(&[0x00, 0xC0, 0x00, 0x00, 0x0D]);
//! assert_eq!(&r[..4], [0x6F, 0x0B, 0x84, 0x07]);
//! assert_eq!(&r[r.len() - 2..], Status::Success.to_bytes());
//! // A foreign applet is not found.
//! let r = card.transmit_vec(&[0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08]);
//! assert_eq!(r, Status::NotFound.to_bytes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! * `rustcrypto` (default): the RustCrypto key backend ([`keys::RustCrypto`]).
//! * `config`: `card.toml` parsing ([`config`]).
//! * `insecure-test-backend`: a deterministic, insecure backend for fuzzing.
//!
//! # Profiles
//!
//! [`CardBuilder::profile`] picks the applets: [`piv::Profile::Cac`] (the
//! default), [`piv::Profile::Piv`] or [`piv::Profile::Dual`]. Changes the
//! PIV applet makes (PIN, generated keys, written objects) reach the
//! card's [`store::Store`] before the command answers `90 00`.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod apdu;
mod applet;
pub mod atr;
pub mod card;
#[cfg(feature = "config")]
pub mod config;
pub mod keys;
pub mod pin;
pub mod security;
pub mod status;
pub mod store;
pub mod tlv;

/// The PIV card application's public options: card profiles, PIN / PUK /
/// management key, state restored from a card's store, and the byte work
/// of the issuer-signed objects (CHUID signature, Security Object).
pub mod piv {
    pub use crate::applet::piv::options::*;
    pub use crate::applet::piv::signed::*;
}

pub use apdu::CommandView;
pub use atr::{Atr, DEFAULT_ATR};
pub use card::{Card, CardBuilder, CardError, Identity};
pub use pin::{Pin, PinPolicy};
pub use security::{CacPin, SecurityEnvironment};
pub use status::Status;

/// AIDs of the applets this card implements, for hosts and tests.
pub mod aid {
    /// Card Capabilities Container.
    pub const CCC: [u8; 7] = crate::applet::ccc::AID;
    /// Access Control Applet.
    pub const ACA: [u8; 7] = crate::applet::aca::AID;
    /// GlobalPlatform card manager.
    pub const CARD_MANAGER: [u8; 7] = crate::applet::gp::AID;
    /// Microsoft Plug and Play.
    pub const PNP: [u8; 11] = crate::applet::pnp::AID;

    /// PKI applet `index` (0..=15).
    pub const fn pki(index: u8) -> [u8; 7] {
        crate::applet::pki::aid(index)
    }
}
