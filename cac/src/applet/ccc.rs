//! Card Capabilities Container, `A0 00 00 01 16 DB 00` (object `DB 00`).
//!
//! OpenSC's first CAC probe: if it selects and reads, the card is CAC-2.
//! The V-buffer carries the CUID (`F0`, from which the serial number is
//! taken), versions, one CardURL (`F3`) per data applet, and the
//! file-system tags, with the empty ones last (OpenSC stops at the first
//! zero-length tag).

use super::container::{self, BufferTooLarge, Container, ContainerCommand, Properties};
use super::{APPLET_INFO, CAC_RID};
use crate::apdu::CommandView;
use crate::status::Status;
use crate::tlv;

/// AID of the CCC.
pub(crate) const AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00];
const OID: [u8; 2] = [0xDB, 0x00];

/// GSC-IS card application types used in CardURLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum AppType {
    /// Generic container.
    #[allow(dead_code)]
    Generic = 0x01,
    /// PKI applet.
    Pki = 0x04,
}

/// One `F3` CardURL: `RID(5) | type | object ID(2) | application ID(2) | 00 × 6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CardUrl {
    pub(crate) app_type: AppType,
    pub(crate) object_id: [u8; 2],
    pub(crate) app_id: [u8; 2],
}

impl CardUrl {
    fn encode(&self) -> [u8; 16] {
        let mut u = [0u8; 16];
        for (dst, src) in u.iter_mut().zip(
            CAC_RID
                .iter()
                .chain([self.app_type as u8].iter())
                .chain(self.object_id.iter())
                .chain(self.app_id.iter()),
        ) {
            *dst = *src;
        }
        u
    }
}

/// CUID prefix: GSC RID, manufacturer ID, card type (`02`, Java Card).
const CUID_PREFIX: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x79, 0x00, 0x02];

pub(crate) struct Ccc {
    container: Container,
    props: Properties,
}

impl Ccc {
    /// Builds the CCC for a card whose serial number (card ID) is `card_id`
    /// and whose applets are described by `urls`; `aca_aid` is referenced by
    /// the access-control tag `F6`.
    pub(crate) fn new(
        card_id: &[u8],
        urls: &[CardUrl],
        aca_aid: &[u8],
    ) -> Result<Ccc, BufferTooLarge> {
        let mut cuid = Vec::with_capacity(CUID_PREFIX.len() + card_id.len());
        cuid.extend_from_slice(&CUID_PREFIX);
        cuid.extend_from_slice(card_id);
        let encoded: Vec<[u8; 16]> = urls.iter().map(CardUrl::encode).collect();
        // F6: length-prefixed AID of the ACA, padded to 17 bytes.
        let mut acr = [0u8; 17];
        if let Some((len, rest)) = acr.split_first_mut() {
            let n = aca_aid.len().min(rest.len());
            *len = n as u8;
            for (dst, src) in rest.iter_mut().zip(aca_aid) {
                *dst = *src;
            }
        }
        let version = [0x21u8];
        let mut elements: Vec<(u8, &[u8])> =
            vec![(0xF0, &cuid), (0xF1, &version), (0xF2, &version)];
        elements.extend(encoded.iter().map(|u| (0xF3, &u[..])));
        elements.extend([
            (0xF4, &[0x00][..]),
            (0xF5, &[0x10][..]),
            (0xF6, &acr[..]),
            // Zero-length tags strictly at the end (OpenSC stops at the first).
            (0xF7, &[][..]),
            (0xFA, &[][..]),
            (0xFB, &[][..]),
            (0xFC, &[][..]),
            (0xFE, &[][..]),
        ]);
        let (t, v) = tlv::split_tl_v(elements);
        let container = Container::new(OID, &t, &v)?;
        let mut object = Vec::with_capacity(11);
        tlv::push(&mut object, 0x41, &OID);
        tlv::push(&mut object, 0x42, &container.buffer_properties());
        let mut short = Vec::with_capacity(24);
        tlv::push(&mut short, 0x01, &APPLET_INFO);
        tlv::push(&mut short, 0x40, &[0x01]);
        tlv::push(&mut short, 0x50, &object);
        let props = Properties::new(short.clone(), short);
        Ok(Ccc { container, props })
    }

    pub(crate) fn process(&self, cmd: &CommandView<'_>, out: &mut Vec<u8>) -> Result<(), Status> {
        match ContainerCommand::parse(cmd) {
            Some(c) => container::process(c?, &self.container, &self.props, out),
            None => Err(Status::InsNotSupported),
        }
    }

    #[cfg(test)]
    pub(crate) fn values(&self) -> &[u8] {
        self.container.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn layout_matches_gsc_is() {
        let urls = [
            CardUrl {
                app_type: AppType::Pki,
                object_id: [0x01, 0x00],
                app_id: [0x01, 0x00],
            },
            CardUrl {
                app_type: AppType::Pki,
                object_id: [0x01, 0x01],
                app_id: [0x01, 0x01],
            },
        ];
        let ccc = Ccc::new(
            &hex!("00112233445566778899"),
            &urls,
            &hex!("A0000000791000"),
        )
        .unwrap();
        let mut out = Vec::new();
        ccc.container
            .read_buffer(0, container::BufferKind::Tags, 0xFF, &mut out)
            .unwrap();
        assert_eq!(
            out,
            hex!("1A00 F011 F101 F201 F310 F310 F401 F501 F611 F700 FA00 FB00 FC00 FE00")
        );
        assert_eq!(
            ccc.values(),
            hex!(
                "A000000079 00 02 00112233445566778899"
                "21 21"
                "A000000079 04 0100 0100 000000000000"
                "A000000079 04 0101 0101 000000000000"
                "00 10"
                "07 A0000000791000 000000000000000000"
            )
        );
        out.clear();
        ccc.props
            .answer(container::PropertiesRequest::All, &mut out)
            .unwrap();
        assert_eq!(
            out,
            hex!("0105 1002060203 400101 500B 4102DB00 4205 00 1C00 4800")
        );
    }
}
