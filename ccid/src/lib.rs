//! Hosts for virtual smart cards.
//!
//! The card ([`cac`]) and its readers ([`vreader`]) do no I/O; this crate
//! plugs them into the outside world:
//!
//! ```text
//!   pcscd ◄── TCP (vpcd) ────────── vpcd::serve ──┐
//!   libccid serial ◄── pty ──── serial::serve ────┤
//!   QEMU ccid-card-passthru ◄── vscard::client ───┼── vreader::ReaderSet ── cac::Card
//!   a VMM's USB stack ◄── device::CcidDevice ─────┘
//! ```
//!
//! * [`vpcd`]: a client for vsmartcard's pcscd driver (`vsmartcard-vpcd`).
//! * [`device`]: the USB CCID reader as a sans-IO device model a VMM embeds.
//! * [`serial`]: that reader on a pty, for libccid's serial driver
//!   (`libccidtwin.so`).
//! * [`usbredir`]: that reader presented to QEMU's `usb-redir` (usbredir
//!   protocol, usb-host side), so a guest's own USB stack and libccid see it.
//! * [`vscard`]: QEMU's VSCard passthrough protocol (`ccid-card-passthru`),
//!   client (card side) and host (reader side).
//!
//! This crate is a library only: it pulls in no command-line, logging-setup
//! or signal-handling crates and no test PKI. Cards come from the
//! `vcac-sources` crate (or any code that builds a [`cac::Card`]); the
//! `vcac` command-line tool drives these transports.
#![forbid(unsafe_code)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod device;
mod net;
pub mod serial;
pub mod usbredir;
pub mod vpcd;
pub mod vscard;
