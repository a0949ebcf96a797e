//! A whole card session: one flags byte (card options, see
//! `CardOptions::from_flags`), then records — each a big-endian `u16`
//! length and an APDU, or a power event (`FFF0` power on, `FFF1` reset,
//! `FFF2` power off, `FFF3` VERIFY with the right PIN, `FFF4` SELECT PIV
//! and VERIFY the PIV PIN). An input starting with `P` (PIV profile) or
//! `D` (dual CAC + PIV) takes the flags from its second byte.
//!
//! Every response ends in a status word; no private-key operation happens
//! unless the PIN was verified before the command; power events log out;
//! and afterwards the card still answers a well-formed SELECT.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vcac_fuzz::{card, checked_transmit, records, Bytes, CardOptions, Record};

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes::new(data);
    let Some(mut flags) = input.u8() else {
        return;
    };
    let profile = match flags {
        b'P' => Some(cac::piv::Profile::Piv),
        b'D' => Some(cac::piv::Profile::Dual),
        _ => None,
    };
    if profile.is_some() {
        let Some(f) = input.u8() else {
            return;
        };
        flags = f;
    }
    let mut options = CardOptions::from_flags(flags);
    if let Some(p) = profile {
        options.profile = p;
    }
    let mut card = card(options);
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
                assert!(!card.piv_is_verified());
            }
            Record::Control(2) => {
                card.power_off();
                assert!(!card.is_verified());
            }
            Record::Control(3) => {
                checked_transmit(&mut card, &vcac_fuzz::verify_pin(), &mut response)
            }
            Record::Control(4) => {
                checked_transmit(&mut card, &vcac_fuzz::SELECT_PIV, &mut response);
                checked_transmit(&mut card, &vcac_fuzz::VERIFY_PIV, &mut response);
            }
            Record::Control(_) => {}
        }
    }
    vcac_fuzz::assert_card_still_answers(&mut card);
});
