//! VSCard: QEMU's smart card passthrough protocol (`ccid-card-passthru`,
//! libcacard's `vscard_common.h`), both sides.
//!
//! A *client* owns cards and connects to a *host* that shows them to a
//! guest as a USB CCID reader. Messages are a 12-byte big-endian header
//! (`type`, `reader_id`, `length`) and a payload.
//!
//! ```text
//!  guest: pcscd + libccid ─ USB ─ QEMU usb-ccid + ccid-card-passthru ◄─┐
//!                                                                     │ TCP, VSCard
//!  vcac passthru: connect::run ─ Client ─ vreader::ReaderSet ─ cac::Card ┘
//!
//!  a Rust VMM: server::Server ─ Host (one per connection) ─ RemoteCard ◄─ VSCard clients
//! ```
//!
//! * [`wire`]: the message format, [`Packet`](wire::Packet) view,
//!   [`Message`](wire::Message) enum and bounded [`Decoder`](wire::Decoder).
//! * [`client`]: the card side's state machine (sans-IO).
//! * [`host`]: the reader side's state machine for one connection
//!   (sans-IO).
//! * [`connect`]: the client's TCP driver (connect, reconnect with
//!   back-off, `TCP_NODELAY`, clean goodbye).
//! * [`server`]: the host's TCP driver (accept clients, expose their cards
//!   as [`RemoteCard`](server::RemoteCard)s with a blocking `transmit`).
//! * [`bridge`]: puts remote cards into [`vreader`] reader slots, so the
//!   [`CcidDevice`](crate::device::CcidDevice) serves them to a guest.
//!
//! # Example
//!
//! A client and a host talking through memory, no sockets:
//!
//! ```
//! use ccid::vscard::{client::Client, host::{Host, HostEvent}, wire::{Decoder, Packet}};
//! use vreader::ReaderSet;
//!
//! # fn card() -> cac::Card {
//! #     vcac_sources::embedded::default_card(&cac::keys::RustCrypto, rand_core::UnwrapErr(getrandom::SysRng)).unwrap()
//! # }
//! let set = ReaderSet::new();
//! let reader = set.add_reader("vcac 0")?;
//! set.insert_card(reader, card())?;
//! let events = set.subscribe_with_replay();
//!
//! let mut client = Client::new();
//! let mut host = Host::new();
//! let (mut to_host, mut to_client) = (Decoder::new(), Decoder::new());
//! let mut wire = Vec::new();
//! // Pump bytes both ways until nothing moves.
//! let mut pump = |client: &mut Client, host: &mut Host| loop {
//!     while let Some(e) = events.try_next() {
//!         client.handle_event(&e, &set);
//!     }
//!     wire.clear();
//!     if client.poll_transmit(&mut wire) > 0 {
//!         to_host.decode_all(&wire, |p| host.handle_packet(&p.as_ref()).unwrap()).unwrap();
//!     }
//!     wire.clear();
//!     if host.poll_transmit(&mut wire) > 0 {
//!         to_client.decode_all(&wire, |p| client.handle_packet(&p.as_ref(), &set).unwrap()).unwrap();
//!     } else if !client.wants_transmit() {
//!         break;
//!     }
//! };
//! pump(&mut client, &mut host);
//! assert_eq!(host.atr(0)?, cac::DEFAULT_ATR);
//!
//! // SELECT the CAC Card Capability Container through the protocol.
//! host.send_apdu(0, &[0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00])?;
//! pump(&mut client, &mut host);
//! let response = std::iter::from_fn(|| host.poll_event()).find_map(|e| match e {
//!     HostEvent::Response { apdu, .. } => Some(apdu),
//!     _ => None,
//! });
//! // The default card's ATR selects T=0: `61 xx` says xx bytes wait for GET RESPONSE.
//! assert!(matches!(response.as_deref(), Some([0x61, _])));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Facts from QEMU (7.2) this follows
//!
//! * Init payload: magic `56 53 43 44` as bytes, version `00000002`,
//!   capabilities `00000000`; QEMU answers each client Init with its own.
//! * QEMU answers ReaderAdd (with reader ID 0: one card per
//!   `ccid-card-passthru` device), ReaderRemove, ATR and CardRemove with an
//!   Error message (code 0 on success), an unknown type with code 1.
//! * QEMU forgets nothing when the client disconnects; a new client first
//!   sends ReaderRemove 0 to clear what the old one left.
//! * QEMU keeps the ATR and answers the guest's power-on itself; no power
//!   message reaches the client.
//! * QEMU's input buffer is 64 KiB; a longer message makes it drop the
//!   connection ([`wire::MAX_SEND_PAYLOAD`]).

pub mod bridge;
pub mod client;
pub mod connect;
pub mod host;
pub mod server;
pub mod wire;
