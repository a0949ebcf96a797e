//! ISO 7816-4 command APDU parsing: `CommandView::try_from` on any bytes.
//! A parsed APDU rebuilds (`build_command`) into bytes that parse to the
//! same command, and a short APDU rebuilds byte for byte.
#![no_main]

use cac::apdu::{build_command, CommandView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(view) = CommandView::try_from(data) else {
        return;
    };
    let cla = view.cla();
    let _ = (
        cla.channel(),
        cla.chaining(),
        cla.secure_messaging(),
        cla.is_proprietary(),
    );
    assert_eq!(view.header(), data[..4]);
    assert!(view.data().len() <= 65535);
    if let Some(le) = view.le() {
        assert!((1..=65536).contains(&le), "Ne {le}");
        assert!(view.is_extended() || le <= 256);
    }
    let rebuilt = build_command(view.header(), view.data(), view.le());
    let again = CommandView::try_from(rebuilt.as_slice()).expect("a rebuilt APDU parses");
    assert_eq!(again.header(), view.header());
    assert_eq!(again.data(), view.data());
    assert_eq!(again.le(), view.le());
    if again.is_extended() == view.is_extended() {
        assert_eq!(rebuilt, data, "same encoding, same bytes");
    }
});
