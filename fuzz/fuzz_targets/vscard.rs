//! The VSCard stream (QEMU's `ccid-card-passthru` protocol): the bounded
//! `Decoder` on arbitrary chunks, `Message::parse` and `emit` on what it
//! cuts, and both state machines — the `Host` (reader side) and the
//! `Client` (card side, with real cards in a `ReaderSet`) — fed the
//! hostile packets *and* each other's output, as if both ends were
//! connected and a third party injected bytes.
//!
//! Input: one byte (bits 0-1: readers in the client's set, 1..=3), then
//! records: data is a chunk of the hostile stream; control `FFF0` makes
//! the host send a SELECT to its first reader with a card, `FFF1` a
//! Flush, `FFF2` / `FFF3` remove / insert the first reader's card,
//! `FFF4` / `FFF5` add / remove a reader, `FFF6` shuts the client down.
//!
//! Every message that parses emits back to a message that parses equal;
//! everything the host and client send decodes and parses; a decoder
//! error or a state machine error "closes the connection" (fresh state);
//! afterwards a ready client answers an APDU on its registered reader.
#![no_main]

use ccid::vscard::client::Client;
use ccid::vscard::host::Host;
use ccid::vscard::wire::{Decoder, Message, Packet};
use libfuzzer_sys::fuzz_target;
use vcac_fuzz::{card, records, Bytes, CardOptions, Record, SELECT_CCC};
use vreader::{Events, ReaderId, ReaderSet};

/// Checks one packet as it came out of a decoder, and returns its message
/// if it parses.
fn check_packet(p: &Packet<&[u8]>) {
    assert!(p.check_len().is_ok());
    if let Ok(m) = Message::parse(p) {
        let mut buf = Vec::new();
        m.encode(p.reader_id(), &mut buf)
            .expect("a parsed message re-encodes");
        assert_eq!(buf.len(), m.encoded_len());
        let q = Packet::new_checked(buf.as_slice()).expect("own encoding");
        assert_eq!(Message::parse(&q).expect("own encoding parses"), m);
    }
}

/// Decodes what one of our state machines sent: whole messages that parse.
fn ours(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut d = Decoder::new();
    let mut packets = Vec::new();
    d.decode_all(bytes, |p| {
        Message::parse(&p.as_ref()).expect("we send only messages that parse");
        packets.push(p.into_inner());
    })
    .expect("we send only messages within the limit");
    assert_eq!(d.wanted(), 12, "we send only whole messages");
    packets
}

struct Ends {
    set: ReaderSet,
    events: Events,
    readers: Vec<ReaderId>,
    host: Host,
    client: Client,
    from_peer: Decoder,
}

impl Ends {
    fn new_client(&mut self) {
        self.client = Client::new();
        self.events = self.set.subscribe_with_replay();
    }

    /// Hostile bytes arrive at both ends.
    fn inject(&mut self, chunk: &[u8]) {
        let (mut host_failed, mut client_failed) = (false, false);
        let host = &mut self.host;
        let client = &mut self.client;
        let set = &self.set;
        let r = self.from_peer.decode_all(chunk, |p| {
            let p = p.as_ref();
            check_packet(&p);
            host_failed |= !host_failed && host.handle_packet(&p).is_err();
            client_failed |= !client_failed && client.handle_packet(&p, set).is_err();
        });
        if r.is_err() {
            self.from_peer = Decoder::new();
            host_failed = true;
            client_failed = true;
        }
        if host_failed {
            self.host = Host::with_max_readers(4);
        }
        if client_failed {
            self.new_client();
        }
    }

    /// Both ends talk to each other until nothing moves.
    fn pump(&mut self) {
        for _ in 0..16 {
            while let Some(e) = self.events.try_next() {
                self.client.handle_event(&e, &self.set);
            }
            let mut wire = Vec::new();
            self.client.poll_transmit(&mut wire);
            let to_host = ours(&wire);
            wire.clear();
            self.host.poll_transmit(&mut wire);
            let to_client = ours(&wire);
            if to_host.is_empty() && to_client.is_empty() {
                break;
            }
            for p in &to_host {
                if let Ok(p) = Packet::new_checked(p.as_slice()) {
                    if self.host.handle_packet(&p).is_err() {
                        self.host = Host::with_max_readers(4);
                        break;
                    }
                }
            }
            for p in &to_client {
                if let Ok(p) = Packet::new_checked(p.as_slice()) {
                    if self.client.handle_packet(&p, &self.set).is_err() {
                        self.new_client();
                        break;
                    }
                }
            }
            while self.host.poll_event().is_some() {}
            while self.client.poll_event().is_some() {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let Some(flags) = input.u8() else {
        return;
    };
    let set = ReaderSet::new();
    let mut readers = Vec::new();
    for i in 0..(flags & 0x03).max(1) {
        if let Ok(r) = set.add_reader(&format!("vcac {i}")) {
            readers.push(r);
        }
    }
    set.insert_card(readers[0], card(CardOptions::default()))
        .unwrap();
    let events = set.subscribe_with_replay();
    let mut ends = Ends {
        set,
        events,
        readers,
        host: Host::with_max_readers(4),
        client: Client::new(),
        from_peer: Decoder::new(),
    };
    let mut added = 0u32;
    for record in records(input.rest()) {
        match record {
            Record::Data(chunk) => ends.inject(chunk),
            Record::Control(0) => {
                let target = ends
                    .host
                    .readers()
                    .find(|(_, _, atr)| atr.is_some())
                    .map(|r| r.0);
                if let Some(r) = target {
                    let _ = ends.host.send_apdu(r, &SELECT_CCC);
                }
            }
            Record::Control(1) => ends.host.flush(),
            Record::Control(2) => {
                let _ = ends.set.remove_card(ends.readers[0]);
            }
            Record::Control(3) => {
                let _ = ends
                    .set
                    .insert_card(ends.readers[0], card(CardOptions::default()));
            }
            Record::Control(4) if ends.readers.len() < 8 => {
                added += 1;
                if let Ok(r) = ends.set.add_reader(&format!("extra {added}")) {
                    ends.readers.push(r);
                }
            }
            Record::Control(5) if ends.readers.len() > 1 => {
                if let Some(r) = ends.readers.pop() {
                    let _ = ends.set.remove_reader(r);
                }
            }
            Record::Control(6) => ends.client.shutdown(),
            Record::Control(_) => {}
        }
        ends.pump();
    }

    // A ready client answers an APDU on its registered reader: a response
    // APDU (or an Error when the card is gone), never silence.
    if !ends.client.is_ready() {
        return;
    }
    let Some(remote) = ends.client.remote_id(ends.readers[0]) else {
        return;
    };
    let mut msg = Vec::new();
    Message::Apdu(&SELECT_CCC).encode(remote, &mut msg).unwrap();
    let p = Packet::new_checked(msg.as_slice()).unwrap();
    ends.client
        .handle_packet(&p, &ends.set)
        .expect("an APDU is accepted");
    let mut wire = Vec::new();
    ends.client.poll_transmit(&mut wire);
    let answer = ours(&wire);
    let last = answer.last().expect("the APDU is answered");
    let p = Packet::new_checked(last.as_slice()).unwrap();
    assert_eq!(p.reader_id(), remote);
    match Message::parse(&p).unwrap() {
        Message::Apdu(r) => assert!(r.len() >= 2),
        Message::Error(_) => {}
        other => panic!("{:?} in answer to an APDU", other.msg_type()),
    }
});
