//! A whole card session: one flags byte (card options, see
//! `CardOptions::from_flags`), then records — each a big-endian `u16`
//! length and an APDU, or a power event (`FFF0` power on, `FFF1` reset,
//! `FFF2` power off, `FFF3` VERIFY with the right PIN).
//!
//! Every response ends in a status word; no private-key operation happens
//! unless the PIN was verified before the command; power events log out;
//! and afterwards the card still answers a well-formed SELECT.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vcac_fuzz::{card, checked_transmit, records, Bytes, CardOptions, Record};

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let Some(flags) = input.u8() else {
        return;
    };
    let mut card = card(CardOptions::from_flags(flags));
    card.power_on();
    let mut response = Vec::new();
    for record in records(input.rest()) {
        match record {
            Record::Data(apdu) => checked_transmit(&mut card, apdu, &mut response),
            Record::Control(0) => {
                card.power_on();
                assert!(!card.is_verified());
            }
            Record::Control(1) => {
                card.reset();
                assert!(!card.is_verified());
            }
            Record::Control(2) => {
                card.power_off();
                assert!(!card.is_verified());
            }
            Record::Control(3) => {
                checked_transmit(&mut card, &vcac_fuzz::verify_pin(), &mut response)
            }
            Record::Control(_) => {}
        }
    }
    vcac_fuzz::assert_card_still_answers(&mut card);
});
