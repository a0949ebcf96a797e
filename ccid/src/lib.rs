//! Hosts for virtual smart cards.
//!
//! The card ([`cac`]) and its readers ([`vreader`]) do no I/O; this crate
//! plugs them into the outside world:
//!
//! ```text
//!   pcscd ◄── TCP (vpcd) ──── vpcd::serve ──┐
//!                                           ├── vreader::ReaderSet ── cac::Card
//!   card dir / embedded default ── card_dir ┘
//! ```
//!
//! * [`vpcd`]: a client for vsmartcard's pcscd driver (`vsmartcard-vpcd`).
//! * [`card_dir`]: loading a card from `card.toml` and its files.
//! * [`device`]: the USB CCID reader as a sans-IO device model a VMM embeds.
//! * [`serial`]: that reader on a pty, for libccid's serial driver
//!   (`libccidtwin.so`).
//! * [`vscard`]: QEMU's VSCard passthrough protocol (`ccid-card-passthru`),
//!   client (card side) and host (reader side).
//!
//! The `vcac` binary (`cargo build --release` → `target/release/vcac`)
//! drives them from the command line.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod card_dir;
pub mod device;
pub mod serial;
pub mod vpcd;
pub mod vscard;
