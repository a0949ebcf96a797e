//! SimpleTLV: `iter`, `read_header` and `join_tl_v` on any bytes (the
//! first byte says where the T-buffer ends). They terminate, never read
//! out of bounds, and whatever they accept re-encodes to elements that
//! iterate back the same.
#![no_main]

use cac::tlv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let _ = tlv::read_header(body);

    // A whole list: at most one element per two bytes, then at most one
    // error, then nothing.
    let items: Vec<_> = tlv::iter(body).collect();
    assert!(items.len() <= body.len() / 2 + 1);
    let errors = items.iter().filter(|i| i.is_err()).count();
    assert!(errors <= 1);
    if errors == 1 {
        assert!(
            items.last().is_some_and(|i| i.is_err()),
            "an error ends the list"
        );
    }
    let good: Vec<(u8, &[u8])> = items.iter().filter_map(|i| i.ok()).collect();
    let mut encoded = Vec::new();
    for (tag, value) in &good {
        assert!(*tag != 0x00 && *tag != 0xFF);
        tlv::push(&mut encoded, *tag, value);
    }
    let back: Vec<(u8, &[u8])> = tlv::iter(&encoded)
        .map(|i| i.expect("re-encoded"))
        .collect();
    assert_eq!(back, good);

    // Split T/V buffers, as the CAC containers read them.
    let cut = usize::from(split).min(body.len());
    let (t, v) = body.split_at(cut);
    let joined: Vec<_> = tlv::join_tl_v(t, v).collect();
    assert!(joined.len() <= t.len() / 2 + 1);
    let good: Vec<(u8, &[u8])> = joined.iter().filter_map(|i| i.ok()).collect();
    let total: usize = good.iter().map(|(_, v)| v.len()).sum();
    assert!(total <= v.len());
    let (t2, v2) = tlv::split_tl_v(good.iter().copied());
    let again: Vec<(u8, &[u8])> = tlv::join_tl_v(&t2, &v2)
        .map(|i| i.expect("re-split"))
        .collect();
    assert_eq!(again, good);
});
