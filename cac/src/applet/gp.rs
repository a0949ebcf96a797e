//! GlobalPlatform card manager, `A0 00 00 00 03 00 00`: GET DATA for the
//! CPLC (`9F 7F`, carries the card's serial number) and Card Data (`00 66`),
//! which Windows middleware such as ActivClient reads.

use crate::apdu::CommandView;
use crate::status::Status;

/// AID of the card manager (Issuer Security Domain).
pub(crate) const AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00];

/// GET DATA.
pub(crate) const INS_GET_DATA: u8 = 0xCA;

/// Card Recognition Data (GP 2.1.1 card, SCP02 i=15) under tag `66`.
const CARD_DATA: [u8; 0x35] = [
    0x66, 0x33, 0x73, 0x31, // Card Data, Card Recognition Data
    0x06, 0x07, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x01, // {globalPlatform 1}
    0x60, 0x0C, 0x06, 0x0A, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x02, 0x02, 0x01,
    0x01, // GP 2.1.1
    0x63, 0x09, 0x06, 0x07, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B,
    0x03, // card identification scheme
    0x64, 0x0B, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B, 0x04, 0x02,
    0x15, // SCP02 i=15
    0x65, 0x00, // card configuration details (none)
];

/// The card manager, holding its precomputed CPLC.
pub(crate) struct CardManager {
    cplc: [u8; 45],
}

impl CardManager {
    /// `card_id` feeds the IC serial number and batch fields of the CPLC.
    pub(crate) fn new(card_id: &[u8]) -> CardManager {
        let mut cplc = [0u8; 45];
        let header = [0x9F, 0x7F, 0x2A];
        // CPLC (42 bytes): IC fabricator, IC type, OS ID, OS release date,
        // OS release level, IC fabrication date, IC serial number (4), IC
        // batch ID (2), module fabricator, packaging date, ICC manufacturer,
        // embedding date, pre-personaliser, pre-perso date, pre-perso
        // equipment (4), personaliser, perso date, perso equipment (4).
        let mut body = [0u8; 42];
        let fixed: [(usize, &[u8]); 5] = [
            (0, &[0x56, 0x43]), // IC fabricator "VC" (virtual card)
            (2, &[0x43, 0x41]), // IC type "CA"
            (4, &[0x52, 0x53]), // OS ID "RS" (Rust)
            (6, &[0x50, 0x01]), // OS release date (YDDD)
            (8, &[0x01, 0x00]), // OS release level
        ];
        for (at, bytes) in fixed {
            if let Some(dst) = body.get_mut(at..at + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        // IC serial number (offset 12, 4 bytes) and batch ID (16, 2 bytes).
        for (dst, src) in body.iter_mut().skip(12).take(6).zip(card_id) {
            *dst = *src;
        }
        for (dst, src) in cplc.iter_mut().zip(header.iter().chain(body.iter())) {
            *dst = *src;
        }
        CardManager { cplc }
    }

    pub(crate) fn process(&self, cmd: &CommandView<'_>, out: &mut Vec<u8>) -> Result<(), Status> {
        match (cmd.ins(), cmd.p1(), cmd.p2()) {
            (INS_GET_DATA, 0x9F, 0x7F) => out.extend_from_slice(&self.cplc),
            (INS_GET_DATA, 0x00, 0x66) => out.extend_from_slice(&CARD_DATA),
            (INS_GET_DATA, _, _) => return Err(Status::ReferencedDataNotFound),
            _ => return Err(Status::InsNotSupported),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn cplc_carries_the_serial() {
        let gp = CardManager::new(&hex!("0102030405060708"));
        let mut out = Vec::new();
        gp.process(
            &CommandView::try_from(&hex!("80CA9F7F00")[..]).unwrap(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 45);
        assert_eq!(&out[..3], hex!("9F7F2A"));
        assert_eq!(&out[3 + 12..3 + 18], hex!("010203040506"));
    }

    #[test]
    fn card_data_is_well_formed_ber() {
        assert_eq!(CARD_DATA[1] as usize, CARD_DATA.len() - 2);
        assert_eq!(CARD_DATA[3] as usize, CARD_DATA.len() - 4);
        let gp = CardManager::new(&[]);
        let mut out = Vec::new();
        assert_eq!(
            gp.process(
                &CommandView::try_from(&hex!("00CA00CF00")[..]).unwrap(),
                &mut out
            ),
            Err(Status::ReferencedDataNotFound)
        );
        assert_eq!(
            gp.process(
                &CommandView::try_from(&hex!("00B0000000")[..]).unwrap(),
                &mut out
            ),
            Err(Status::InsNotSupported)
        );
    }
}
