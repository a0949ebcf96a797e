//! Microsoft smart card Plug and Play, `A0 00 00 03 97 43 49 44 5F 01 00`.
//!
//! Windows selects this AID and sends GET DATA `7F 68`; the answer is the
//! DER `CardID ::= SEQUENCE { version INTEGER (0), vendor IA5String,
//! guids SEQUENCE OF OCTET STRING (16) }` whose first GUID names the card
//! type, so every card of this emulator answers the same GUID.

use crate::apdu::CommandView;
use crate::status::Status;

use super::gp::INS_GET_DATA;

/// AID of the Plug and Play application.
pub(crate) const AID: [u8; 11] = [
    0xA0, 0x00, 0x00, 0x03, 0x97, 0x43, 0x49, 0x44, 0x5F, 0x01, 0x00,
];

/// The card-type GUID of this emulator's CAC profile.
pub(crate) const CARD_TYPE_GUID: [u8; 16] = [
    0x7E, 0x1C, 0x3A, 0x5D, 0x90, 0x2B, 0x4F, 0x61, 0xA8, 0x0E, 0xC3, 0x57, 0x16, 0xD2, 0x49, 0xB4,
];

/// The Plug and Play applet with its precomputed CardID.
pub(crate) struct PlugAndPlay {
    card_id: Vec<u8>,
}

impl PlugAndPlay {
    pub(crate) fn new(guid: [u8; 16]) -> PlugAndPlay {
        let mut card_id = vec![
            0x30, 0x1D, // SEQUENCE
            0x02, 0x01, 0x00, // version v1
            0x16, 0x04, b'M', b'S', b'F', b'T', // vendor
            0x30, 0x12, 0x04, 0x10, // guids: one OCTET STRING (16)
        ];
        card_id.extend_from_slice(&guid);
        PlugAndPlay { card_id }
    }

    pub(crate) fn process(&self, cmd: &CommandView<'_>, out: &mut Vec<u8>) -> Result<(), Status> {
        match (cmd.ins(), cmd.p1(), cmd.p2()) {
            (INS_GET_DATA, 0x7F, 0x68) => {
                out.extend_from_slice(&self.card_id);
                Ok(())
            }
            (INS_GET_DATA, _, _) => Err(Status::ReferencedDataNotFound),
            _ => Err(Status::InsNotSupported),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn card_id_is_the_documented_der() {
        let pnp = PlugAndPlay::new(CARD_TYPE_GUID);
        let mut out = Vec::new();
        pnp.process(
            &CommandView::try_from(&hex!("00CA7F6800")[..]).unwrap(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 0x1F);
        assert_eq!(&out[..15], hex!("301D 020100 16044D534654 3012 0410"));
        assert_eq!(&out[15..], CARD_TYPE_GUID);
    }
}
