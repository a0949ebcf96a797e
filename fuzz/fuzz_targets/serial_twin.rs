//! libccid's serial ("Twin") protocol over the CCID device model: the byte
//! stream the driver writes to the pty, in arbitrary chunks.
//!
//! Input: one byte choosing the reader type (GemPC Twin, SEC1210URT,
//! SEC1210 with two slots), then records (see `vcac_fuzz::records`): data
//! is a chunk of the host's stream; control `FFF0` is a timer tick, `FFF1`
//! drops a stale partial frame, `FFF2` / `FFF3` remove / insert the card.
//! Each frame is handled as the pty driver does (echo or NAK, device, card
//! jobs, flush).
//!
//! Everything we write decodes as whole frames (no frame a host would
//! NAK), and afterwards a GetSlotStatus frame gets its exact answer.
#![no_main]

use ccid::device::{CcidDevice, DeviceConfig};
use ccid::serial::{encode_frame, Frame, ReaderType, Twin, TwinDecoder};
use libfuzzer_sys::fuzz_target;
use vcac_fuzz::{card, records, Bytes, CardOptions, Record};
use vreader::ReaderSet;

/// Checks our output as libccid would read it: frames (and the bytes
/// around them it skips), never one to NAK. Returns the messages.
fn host_reads(out: &[u8], max: usize) -> Vec<Vec<u8>> {
    let mut d = TwinDecoder::new(max);
    d.push(out);
    let mut messages = Vec::new();
    while let Some(frame) = d.next_frame() {
        match frame {
            Frame::Message(m) => messages.push(m),
            Frame::Nak => {}
            Frame::Bad(e) => panic!("we sent a bad frame ({e}): {out:02X?}"),
        }
    }
    assert!(!d.is_partial(), "we sent a partial frame: {out:02X?}");
    messages
}

fn exchange(frame: Frame, twin: &mut Twin, dev: &mut CcidDevice, out: &mut Vec<u8>) {
    twin.on_frame(frame, dev, out);
    while let Some(job) = dev.poll_job() {
        let _ = dev.complete(job.run());
    }
    twin.flush(dev, out);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let Some(kind) = input.u8() else {
        return;
    };
    let reader = [
        ReaderType::GemPcTwin,
        ReaderType::Sec1210Urt,
        ReaderType::Sec1210,
    ][usize::from(kind % 3)];
    let set = ReaderSet::new();
    let readers: Vec<_> = (0..reader.slots())
        .filter_map(|i| set.add_reader(&format!("s{i}")).ok())
        .collect();
    set.insert_card(readers[0], card(CardOptions::default()))
        .unwrap();
    let mut dev = CcidDevice::new(DeviceConfig::gempc_twin(), &set, &readers).unwrap();
    let max = dev.config().max_message_len as usize;
    let mut twin = Twin::new(reader);
    let mut decoder = TwinDecoder::new(max);
    let mut out = Vec::new();

    for record in records(input.rest()) {
        out.clear();
        match record {
            Record::Data(chunk) => {
                decoder.push(chunk);
                while let Some(frame) = decoder.next_frame() {
                    exchange(frame, &mut twin, &mut dev, &mut out);
                }
            }
            Record::Control(0) => {
                dev.tick();
                twin.flush(&mut dev, &mut out);
            }
            Record::Control(1) => decoder.clear(),
            Record::Control(2) => {
                let _ = set.remove_card(readers[0]);
            }
            Record::Control(3) => {
                let _ = set.insert_card(readers[0], card(CardOptions::default()));
            }
            Record::Control(_) => {}
        }
        host_reads(&out, 65_554);
    }

    // The host gives up on a partial frame and asks for the slot status.
    decoder.clear();
    out.clear();
    let mut frame = Vec::new();
    encode_frame(&[0x65, 0, 0, 0, 0, 0, 0xA5, 0, 0, 0], &mut frame);
    decoder.push(&frame);
    let frame = decoder.next_frame().expect("our own frame decodes");
    exchange(frame, &mut twin, &mut dev, &mut out);
    let messages = host_reads(&out, 65_554);
    let answer = messages.last().expect("GetSlotStatus is answered");
    assert_eq!(answer[..7], [0x81, 0, 0, 0, 0, 0, 0xA5], "{out:02X?}");
});
