//! Access Control Applet, `A0 00 00 00 79 10 00`: GET ACR (INS `4C`).
//!
//! The tables are typed values built from the card's applets and encoded
//! on request — never raw memory. GSC-IS 2.1 §5.3.3.5 forms:
//!
//! | P1 | answer |
//! |----|--------|
//! | `00` | ACR table: `A1 01 n`, then `A0 L acrid type m (amp keyref)*` |
//! | `01` | one ACR entry, ACRID in the data |
//! | `10` | applet/object ACR table: `81 01 n`, then `80 L appletid nobj (82 L oid (ins cfg acrid)*)*` |
//! | `11` | one applet's entry, its AID in the data |
//! | `12` | one object's entry, its object ID in the data |
//! | `20` | access method providers: `91 01 n`, then `90 L ampid 92 len AID` |
//! | `21` | service applets: `94 01 n`, then `93 L appletid 92 len AID` |
//!
//! Each SimpleTLV answer starts with the applet information `01 05 …`.
//! With bit `40` set (P1 `40`/`41`, `50`/`51`/`52`, `60`, `61`) the same
//! tables come in the compact form real cards also answer: no applet
//! information, and every record prefixed by its length instead of a tag.

use super::container::{Properties, PropertiesRequest};
use super::ACA_APPLET_INFO;
use crate::apdu::CommandView;
use crate::status::Status;
use crate::tlv;

/// AID of the ACA (the location OpenSC and real Alt tokens use).
pub(crate) const AID: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x79, 0x10, 0x00];

/// GET ACR.
const INS_GET_ACR: u8 = 0x4C;
const INS_GET_PROPERTIES: u8 = 0x56;

/// Access control rule types (GSC-IS Table 3-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum AcrType {
    /// Always allowed.
    Always = 0x00,
    /// Never allowed.
    Never = 0x01,
    /// PIN verified.
    Pin = 0x06,
}

/// An access method: provider ID and key reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AccessMethod {
    pub(crate) provider: u8,
    pub(crate) key_ref: u8,
}

/// One ACR table row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AcrEntry {
    pub(crate) acrid: u8,
    pub(crate) kind: AcrType,
    pub(crate) methods: &'static [AccessMethod],
}

/// ACRIDs this card uses.
pub(crate) const ACR_ALWAYS: u8 = 0x00;
pub(crate) const ACR_NEVER: u8 = 0x01;
pub(crate) const ACR_PIN: u8 = 0x06;
/// Access method provider of the card-global PIN.
pub(crate) const AMP_PIN: u8 = 0x1E;

const ACR_TABLE: [AcrEntry; 3] = [
    AcrEntry {
        acrid: ACR_ALWAYS,
        kind: AcrType::Always,
        methods: &[],
    },
    AcrEntry {
        acrid: ACR_NEVER,
        kind: AcrType::Never,
        methods: &[],
    },
    AcrEntry {
        acrid: ACR_PIN,
        kind: AcrType::Pin,
        methods: &[AccessMethod {
            provider: AMP_PIN,
            key_ref: 0x00,
        }],
    },
];

/// An instruction's rule within an object: `ins config acrid` (config
/// `00`: the rule applies to every P1/P2/data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InsRule {
    pub(crate) ins: u8,
    pub(crate) acrid: u8,
}

/// An object's rules; object `FF FF` holds applet-level instructions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ObjectAcr {
    pub(crate) object_id: [u8; 2],
    pub(crate) rules: Vec<InsRule>,
}

/// One applet of the card as the ACA describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AppletAcr {
    pub(crate) applet_id: u8,
    pub(crate) aid: [u8; 7],
    pub(crate) objects: Vec<ObjectAcr>,
}

/// Applet ID of the CCC in the service table.
pub(crate) const APPLET_ID_CCC: u8 = 0x4F;
/// Applet ID of PKI applet 0; applet `i` is `0x61 + i`.
pub(crate) const APPLET_ID_PKI0: u8 = 0x61;

impl AppletAcr {
    /// The CCC's rules: its object is readable, never writable.
    pub(crate) fn ccc(aid: [u8; 7]) -> AppletAcr {
        AppletAcr {
            applet_id: APPLET_ID_CCC,
            aid,
            objects: vec![
                ObjectAcr {
                    object_id: [0xDB, 0x00],
                    rules: vec![
                        InsRule {
                            ins: 0x52,
                            acrid: ACR_ALWAYS,
                        },
                        InsRule {
                            ins: 0x58,
                            acrid: ACR_NEVER,
                        },
                    ],
                },
                applet_level(),
            ],
        }
    }

    /// PKI applet `index`: readable certificate, PIN-protected key.
    pub(crate) fn pki(index: u8, aid: [u8; 7]) -> AppletAcr {
        AppletAcr {
            applet_id: APPLET_ID_PKI0.saturating_add(index),
            aid,
            objects: vec![
                ObjectAcr {
                    object_id: [0x01, index],
                    rules: vec![
                        InsRule {
                            ins: 0x52,
                            acrid: ACR_ALWAYS,
                        },
                        InsRule {
                            ins: 0x58,
                            acrid: ACR_NEVER,
                        },
                        InsRule {
                            ins: 0x42,
                            acrid: ACR_PIN,
                        },
                    ],
                },
                applet_level(),
            ],
        }
    }
}

fn applet_level() -> ObjectAcr {
    ObjectAcr {
        object_id: [0xFF, 0xFF],
        rules: vec![
            InsRule {
                ins: 0x20,
                acrid: ACR_ALWAYS,
            },
            InsRule {
                ins: 0x84,
                acrid: ACR_ALWAYS,
            },
        ],
    }
}

/// What GET ACR asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AcrRequest<'a> {
    AcrTable,
    AcrEntry(u8),
    AppletTable,
    Applet(&'a [u8]),
    Object([u8; 2]),
    Providers,
    Services,
}

enum AcaCommand<'a> {
    GetAcr { req: AcrRequest<'a>, compact: bool },
    GetProperties(PropertiesRequest<'a>),
}

impl<'a> AcaCommand<'a> {
    fn parse(cmd: &CommandView<'a>) -> Result<AcaCommand<'a>, Status> {
        match (cmd.ins(), cmd.p1(), cmd.p2()) {
            (INS_GET_ACR, p1, 0x00) => {
                let data = cmd.data();
                let compact = p1 & 0x40 != 0;
                let req = match (p1, data) {
                    (0x00 | 0x40 | 0x41, []) => AcrRequest::AcrTable,
                    (0x01, [id]) => AcrRequest::AcrEntry(*id),
                    (0x10 | 0x50 | 0x51 | 0x52, []) => AcrRequest::AppletTable,
                    (0x11, aid) if aid.len() == 7 => AcrRequest::Applet(aid),
                    (0x12, [a, b]) => AcrRequest::Object([*a, *b]),
                    (0x20 | 0x60, []) => AcrRequest::Providers,
                    (0x21 | 0x61, []) => AcrRequest::Services,
                    (0x00 | 0x01 | 0x10 | 0x11 | 0x12 | 0x20 | 0x21, _)
                    | (0x40 | 0x41 | 0x50 | 0x51 | 0x52 | 0x60 | 0x61, _) => {
                        return Err(Status::WrongLength)
                    }
                    _ => return Err(Status::IncorrectP1P2),
                };
                Ok(AcaCommand::GetAcr { req, compact })
            }
            (INS_GET_ACR, _, _) => Err(Status::IncorrectP1P2),
            (INS_GET_PROPERTIES, 0x01 | 0x40, 0x00) if cmd.data().is_empty() => {
                Ok(AcaCommand::GetProperties(PropertiesRequest::All))
            }
            (INS_GET_PROPERTIES, 0x02, 0x00) if !cmd.data().is_empty() => Ok(
                AcaCommand::GetProperties(PropertiesRequest::Tags(cmd.data())),
            ),
            (INS_GET_PROPERTIES, 0x01 | 0x02 | 0x40, 0x00) => Err(Status::WrongLength),
            (INS_GET_PROPERTIES, _, _) => Err(Status::IncorrectP1P2),
            _ => Err(Status::InsNotSupported),
        }
    }
}

pub(crate) struct Aca {
    applets: Vec<AppletAcr>,
    /// Providers: (AMP ID, AID).
    providers: Vec<(u8, [u8; 7])>,
    props: Properties,
}

impl Aca {
    pub(crate) fn new(applets: Vec<AppletAcr>) -> Aca {
        let mut short = Vec::with_capacity(7);
        tlv::push(&mut short, 0x01, &ACA_APPLET_INFO);
        Aca {
            applets,
            providers: vec![(AMP_PIN, AID)],
            props: Properties::new(short.clone(), short),
        }
    }

    pub(crate) fn process(&self, cmd: &CommandView<'_>, out: &mut Vec<u8>) -> Result<(), Status> {
        match AcaCommand::parse(cmd)? {
            AcaCommand::GetProperties(req) => self.props.answer(req, out),
            AcaCommand::GetAcr { req, compact } => self.get_acr(req, compact, out),
        }
    }

    fn get_acr(&self, req: AcrRequest<'_>, compact: bool, out: &mut Vec<u8>) -> Result<(), Status> {
        let mut records: Vec<(u8, Vec<u8>)> = Vec::new();
        match req {
            AcrRequest::AcrTable => {
                records.push((0xA1, vec![ACR_TABLE.len() as u8]));
                records.extend(ACR_TABLE.iter().map(|e| (0xA0, encode_acr(e))));
            }
            AcrRequest::AcrEntry(id) => {
                let e = ACR_TABLE
                    .iter()
                    .find(|e| e.acrid == id)
                    .ok_or(Status::ReferencedDataNotFound)?;
                records.push((0xA0, encode_acr(e)));
            }
            AcrRequest::AppletTable => {
                records.push((0x81, vec![count_u8(self.applets.len())]));
                records.extend(self.applets.iter().map(|a| (0x80, encode_applet(a))));
            }
            AcrRequest::Applet(aid) => {
                let a = self
                    .applets
                    .iter()
                    .find(|a| a.aid[..] == *aid)
                    .ok_or(Status::ReferencedDataNotFound)?;
                records.push((0x80, encode_applet(a)));
            }
            AcrRequest::Object(oid) => {
                let o = self
                    .applets
                    .iter()
                    .flat_map(|a| a.objects.iter())
                    .find(|o| o.object_id == oid && oid != [0xFF, 0xFF])
                    .ok_or(Status::ReferencedDataNotFound)?;
                records.push((0x82, encode_object(o)));
            }
            AcrRequest::Providers => {
                records.push((0x91, vec![count_u8(self.providers.len())]));
                records.extend(
                    self.providers
                        .iter()
                        .map(|(id, aid)| (0x90, encode_aid_entry(*id, aid))),
                );
            }
            AcrRequest::Services => {
                records.push((0x94, vec![count_u8(self.applets.len())]));
                records.extend(
                    self.applets
                        .iter()
                        .map(|a| (0x93, encode_aid_entry(a.applet_id, &a.aid))),
                );
            }
        }
        if compact {
            for (_, value) in records
                .iter()
                .filter(|(tag, _)| !matches!(tag, 0xA1 | 0x81 | 0x91 | 0x94))
            {
                out.push(count_u8(value.len()));
                out.extend_from_slice(value);
            }
        } else {
            tlv::push(out, 0x01, &ACA_APPLET_INFO);
            for (tag, value) in &records {
                tlv::push(out, *tag, value);
            }
        }
        Ok(())
    }
}

fn count_u8(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

fn encode_acr(e: &AcrEntry) -> Vec<u8> {
    let mut v = vec![e.acrid, e.kind as u8, count_u8(e.methods.len())];
    for m in e.methods {
        v.extend_from_slice(&[m.provider, m.key_ref]);
    }
    v
}

fn encode_object(o: &ObjectAcr) -> Vec<u8> {
    let mut v = o.object_id.to_vec();
    for r in &o.rules {
        // ins, config (00: unconditional), acrid
        v.extend_from_slice(&[r.ins, 0x00, r.acrid]);
    }
    v
}

fn encode_applet(a: &AppletAcr) -> Vec<u8> {
    let mut v = vec![a.applet_id, count_u8(a.objects.len())];
    for o in &a.objects {
        tlv::push(&mut v, 0x82, &encode_object(o));
    }
    v
}

fn encode_aid_entry(id: u8, aid: &[u8]) -> Vec<u8> {
    let mut v = vec![id];
    tlv::push(&mut v, 0x92, aid);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn aca() -> Aca {
        Aca::new(vec![
            AppletAcr::ccc(super::super::ccc::AID),
            AppletAcr::pki(0, hex!("A0000000790100")),
        ])
    }

    fn run(apdu: &[u8]) -> Result<Vec<u8>, Status> {
        let mut out = Vec::new();
        aca()
            .process(&CommandView::try_from(apdu).unwrap(), &mut out)
            .map(|()| out)
    }

    #[test]
    fn service_table_lists_applets_by_aid() {
        assert_eq!(
            run(&hex!("004C210000")).unwrap(),
            hex!(
                "0105 1002060202"
                "940102"
                "930A 4F 9207 A0000001 16DB00"
                "930A 61 9207 A0000000 790100"
            )
        );
    }

    #[test]
    fn acr_table_and_entries() {
        assert_eq!(
            run(&hex!("004C000000")).unwrap(),
            hex!("0105 1002060202 A10103 A003000000 A003010100 A005 0606 01 1E00")
        );
        assert_eq!(
            run(&hex!("004C01000106")).unwrap(),
            hex!("0105 1002060202 A005 0606 01 1E00")
        );
        assert_eq!(
            run(&hex!("004C01000177")),
            Err(Status::ReferencedDataNotFound)
        );
        assert_eq!(
            run(&hex!("004C400000")).unwrap(),
            hex!("03000000 03010100 05 0606 01 1E00")
        );
    }

    #[test]
    fn applet_and_object_tables() {
        let all = run(&hex!("004C100000")).unwrap();
        assert_eq!(&all[..10], hex!("0105 1002060202 810102"));
        assert_eq!(
            run(&hex!("004C12000201 00")).unwrap(),
            hex!("0105 1002060202 820B 0100 520000 580001 420006")
        );
        assert_eq!(
            run(&hex!("004C110007A0000000790100")).unwrap(),
            hex!(
                "0105 1002060202 8019 61 02 820B 0100 520000 580001 420006 8208 FFFF 200000 840000"
            )
        );
        assert_eq!(
            run(&hex!("004C110007A0000000790105")),
            Err(Status::ReferencedDataNotFound)
        );
        assert_eq!(
            run(&hex!("004C1200020105")),
            Err(Status::ReferencedDataNotFound)
        );
    }

    #[test]
    fn bad_parameters() {
        assert_eq!(run(&hex!("004C000100")), Err(Status::IncorrectP1P2));
        assert_eq!(run(&hex!("004C030000")), Err(Status::IncorrectP1P2));
        assert_eq!(run(&hex!("004C0000010000")), Err(Status::WrongLength));
        assert_eq!(run(&hex!("004C110002A000")), Err(Status::WrongLength));
        assert_eq!(run(&hex!("00B0000000")), Err(Status::InsNotSupported));
        assert_eq!(run(&hex!("00560100FF")).unwrap(), hex!("0105 1002060202"));
    }
}
