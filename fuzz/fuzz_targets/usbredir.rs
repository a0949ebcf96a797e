//! The usbredir host (`ccid::usbredir::UsbRedirHost`) fed a hostile
//! peer's byte stream in arbitrary chunks, interleaved with card jobs,
//! ticks, unplug/plug and card hot-plugs.
//!
//! Input: a flag byte (bit 0: start with a valid QEMU hello; bit 1: bulk
//! data endpoints instead of interrupt ones), then
//! operations: `00..=EF` feed that many bytes, `F0` run jobs, `F1` tick,
//! `F2` unplug, `F3` plug, `F4` / `F5` force-remove / force-insert the
//! card.
//!
//! Never a panic; the parse buffer stays bounded; everything the host
//! writes is a sequence of whole usbredir packets.
#![no_main]

use ccid::device::{CcidDevice, DeviceConfig};
use ccid::usbredir::{wire, DataPath, UsbRedirHost};
use libfuzzer_sys::fuzz_target;
use vcac_fuzz::Bytes;
use vreader::ReaderSet;

/// Checks `out` is whole packets: our hello (12-byte header) first, then
/// `header` -byte headers.
fn check_stream(out: &[u8], header: usize, first: &mut bool) {
    let mut rest = out;
    while !rest.is_empty() {
        let len = if *first { 12 } else { header };
        let h = wire::Header::parse(rest, len).expect("a whole header");
        let total = len + h.length as usize;
        assert!(rest.len() >= total, "a whole packet");
        if *first {
            assert_eq!(h.kind, wire::kind::HELLO);
            *first = false;
        }
        rest = &rest[total..];
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let Some(flags) = input.u8() else { return };
    let set = ReaderSet::new();
    let Ok(reader) = set.add_reader("fuzz") else {
        return;
    };
    let card = vcac_fuzz::card(vcac_fuzz::CardOptions::from_flags(0));
    let _ = set.insert_card(reader, card);
    let Ok(device) = CcidDevice::new(DeviceConfig::default(), &set, &[reader]) else {
        return;
    };
    let path = if flags & 2 != 0 {
        DataPath::Bulk
    } else {
        DataPath::Interrupt
    };
    let mut host = UsbRedirHost::new(device, "fuzz").with_data_path(path);
    let mut first = true;
    let mut out = Vec::new();
    if flags & 1 != 0 {
        let mut hello = Vec::new();
        wire::emit_hello("qemu usb-redir guest 7.2.22", 0xFF, &mut hello);
        let _ = host.receive(&hello);
    }
    while let Some(op) = input.u8() {
        match op {
            0x00..=0xEF => {
                let chunk = input.take(usize::from(op));
                if host.receive(chunk).is_err() {
                    return;
                }
            }
            0xF0 => host.run_jobs(),
            0xF1 => host.tick(),
            0xF2 => host.unplug(),
            0xF3 => host.plug(),
            0xF4 => {
                let _ = set.force_remove(reader);
            }
            _ => {
                let _ = set.force_insert(reader);
            }
        }
        assert!(host.buffered() <= 16 + wire::MAX_BODY as usize);
        out.clear();
        host.poll_transmit(&mut out);
        let header = if host.negotiated_caps() & wire::cap::IDS_64BIT != 0 {
            16
        } else {
            12
        };
        check_stream(&out, header, &mut first);
        while host.poll_event().is_some() {}
    }
});
