//! What CCC and PKI applets share: one SimpleTLV object split into a
//! T-buffer and a V-buffer, its properties, and the three commands that
//! read them (SELECT object, GET PROPERTIES, READ BUFFER).

use crate::apdu::CommandView;
use crate::status::Status;
use crate::tlv;

/// SELECT instruction.
pub(crate) const INS_SELECT: u8 = 0xA4;
/// GET PROPERTIES instruction.
pub(crate) const INS_GET_PROPERTIES: u8 = 0x56;
/// READ BUFFER instruction.
pub(crate) const INS_READ_BUFFER: u8 = 0x52;

/// Which half of an object READ BUFFER reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BufferKind {
    /// `01`: tags and lengths.
    Tags,
    /// `02`: values.
    Values,
}

/// What GET PROPERTIES asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PropertiesRequest<'a> {
    /// P1 `01`: every property.
    All,
    /// P1 `02`: the properties whose tags are listed.
    Tags(&'a [u8]),
    /// P1 `40`: every property, objects in their long form.
    Long,
}

/// The commands every container applet accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContainerCommand<'a> {
    /// `A4 02 xx`: select the object with this ID.
    SelectObject([u8; 2]),
    /// `56`.
    GetProperties(PropertiesRequest<'a>),
    /// `52`: read `count` bytes at `offset` (counted from the 2-byte
    /// length prefix).
    ReadBuffer {
        /// Offset from P1 P2.
        offset: u16,
        /// T or V.
        buffer: BufferKind,
        /// Bytes wanted.
        count: u8,
    },
}

impl<'a> ContainerCommand<'a> {
    /// `None` when the instruction is not a container command, so the
    /// caller can try its own.
    pub(crate) fn parse(cmd: &CommandView<'a>) -> Option<Result<Self, Status>> {
        Some(match (cmd.ins(), cmd.p1(), cmd.p2()) {
            (INS_SELECT, 0x02, p2) => {
                if p2 != 0x00 && p2 != 0x0C {
                    Err(Status::IncorrectP1P2)
                } else {
                    match cmd.data() {
                        [a, b] => Ok(ContainerCommand::SelectObject([*a, *b])),
                        _ => Err(Status::WrongLength),
                    }
                }
            }
            (INS_SELECT, _, _) => Err(Status::IncorrectP1P2),
            (INS_GET_PROPERTIES, p1, p2) => {
                if p2 != 0 {
                    Err(Status::IncorrectP1P2)
                } else {
                    match (p1, cmd.data()) {
                        (0x01, []) => Ok(ContainerCommand::GetProperties(PropertiesRequest::All)),
                        (0x40, []) => Ok(ContainerCommand::GetProperties(PropertiesRequest::Long)),
                        (0x02, tags) if !tags.is_empty() => Ok(ContainerCommand::GetProperties(
                            PropertiesRequest::Tags(tags),
                        )),
                        (0x01 | 0x02 | 0x40, _) => Err(Status::WrongLength),
                        _ => Err(Status::IncorrectP1P2),
                    }
                }
            }
            (INS_READ_BUFFER, hi, lo) => match cmd.data() {
                [kind, count] => {
                    let buffer = match kind {
                        0x01 => Ok(BufferKind::Tags),
                        0x02 => Ok(BufferKind::Values),
                        _ => Err(Status::DataInvalid),
                    };
                    buffer.map(|buffer| ContainerCommand::ReadBuffer {
                        offset: u16::from_be_bytes([hi, lo]),
                        buffer,
                        count: *count,
                    })
                }
                _ => Err(Status::DataInvalid),
            },
            _ => return None,
        })
    }
}

/// One CAC object: its ID and its T and V buffers, each stored with the
/// 2-byte little-endian length prefix READ BUFFER offsets count from.
pub(crate) struct Container {
    oid: [u8; 2],
    tl: Vec<u8>,
    v: Vec<u8>,
}

/// A buffer above 65533 bytes cannot carry its length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BufferTooLarge(pub(crate) usize);

fn prefixed(body: &[u8]) -> Result<Vec<u8>, BufferTooLarge> {
    let len = u16::try_from(body.len())
        .ok()
        .filter(|n| *n <= u16::MAX - 2)
        .ok_or(BufferTooLarge(body.len()))?;
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

impl Container {
    pub(crate) fn new(oid: [u8; 2], tl: &[u8], v: &[u8]) -> Result<Container, BufferTooLarge> {
        Ok(Container {
            oid,
            tl: prefixed(tl)?,
            v: prefixed(v)?,
        })
    }

    pub(crate) fn oid(&self) -> [u8; 2] {
        self.oid
    }

    /// Value of the buffer-properties tag `42`: type `00` (SimpleTLV), then
    /// the T and V buffer sizes (little-endian, length prefix included).
    pub(crate) fn buffer_properties(&self) -> [u8; 5] {
        let t = u16::try_from(self.tl.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes();
        let v = u16::try_from(self.v.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes();
        [0x00, t[0], t[1], v[0], v[1]]
    }

    /// The whole V-buffer body (without its prefix).
    #[cfg(test)]
    pub(crate) fn values(&self) -> &[u8] {
        self.v.get(2..).unwrap_or_default()
    }

    /// SELECT object / READ BUFFER; GET PROPERTIES is the applet's.
    pub(crate) fn select_object(&self, oid: [u8; 2]) -> Result<(), Status> {
        if oid == self.oid {
            Ok(())
        } else {
            Err(Status::NotFound)
        }
    }

    pub(crate) fn read_buffer(
        &self,
        offset: u16,
        buffer: BufferKind,
        count: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        let buf = match buffer {
            BufferKind::Tags => &self.tl,
            BufferKind::Values => &self.v,
        };
        let offset = usize::from(offset);
        let count = usize::from(count);
        if offset > buf.len() || (offset == buf.len() && count > 0) {
            return Err(Status::IncorrectP1P2);
        }
        let end = offset.saturating_add(count).min(buf.len());
        out.extend_from_slice(buf.get(offset..end).unwrap_or_default());
        Ok(())
    }
}

/// Precomputed GET PROPERTIES answers.
pub(crate) struct Properties {
    short: Vec<u8>,
    long: Vec<u8>,
}

impl Properties {
    pub(crate) fn new(short: Vec<u8>, long: Vec<u8>) -> Properties {
        Properties { short, long }
    }

    pub(crate) fn answer(
        &self,
        req: PropertiesRequest<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        match req {
            PropertiesRequest::All => out.extend_from_slice(&self.short),
            PropertiesRequest::Long => out.extend_from_slice(&self.long),
            PropertiesRequest::Tags(tags) => {
                for tag in tags {
                    let mut found = false;
                    for item in tlv::iter(&self.short) {
                        let (t, value) = item.map_err(|_| Status::Unknown)?;
                        if t == *tag {
                            tlv::push(out, t, value);
                            found = true;
                        }
                    }
                    if !found {
                        return Err(Status::ReferencedDataNotFound);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Processes a container command against `container` and `props`.
pub(crate) fn process(
    command: ContainerCommand<'_>,
    container: &Container,
    props: &Properties,
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    match command {
        ContainerCommand::SelectObject(oid) => container.select_object(oid),
        ContainerCommand::GetProperties(req) => props.answer(req, out),
        ContainerCommand::ReadBuffer {
            offset,
            buffer,
            count,
        } => container.read_buffer(offset, buffer, count, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn cmd(bytes: &[u8]) -> CommandView<'_> {
        CommandView::try_from(bytes).unwrap()
    }

    #[test]
    fn parses_the_three_commands() {
        assert_eq!(
            ContainerCommand::parse(&cmd(&hex!("00A40200020100"))),
            Some(Ok(ContainerCommand::SelectObject([0x01, 0x00])))
        );
        assert_eq!(
            ContainerCommand::parse(&cmd(&hex!("00560100FF"))),
            Some(Ok(ContainerCommand::GetProperties(PropertiesRequest::All)))
        );
        assert_eq!(
            ContainerCommand::parse(&cmd(&hex!("80520102020240"))),
            Some(Ok(ContainerCommand::ReadBuffer {
                offset: 0x0102,
                buffer: BufferKind::Values,
                count: 0x40
            }))
        );
        assert_eq!(ContainerCommand::parse(&cmd(&hex!("00CA7F6800"))), None);
    }

    #[test]
    fn rejects_malformed_container_commands() {
        let table: &[(&[u8], Status)] = &[
            (&hex!("00A4020003010000"), Status::WrongLength),
            (&hex!("00A40204020100"), Status::IncorrectP1P2),
            (&hex!("00A40100020100"), Status::IncorrectP1P2),
            (&hex!("00560101FF"), Status::IncorrectP1P2),
            (&hex!("00560000FF"), Status::IncorrectP1P2),
            (&hex!("0056020000"), Status::WrongLength),
            (&hex!("005601000140"), Status::WrongLength),
            (&hex!("00520000030102FF"), Status::DataInvalid),
            (&hex!("005200000103"), Status::DataInvalid),
            (&hex!("00520000020302"), Status::DataInvalid),
        ];
        for (apdu, sw) in table {
            assert_eq!(
                ContainerCommand::parse(&cmd(apdu)),
                Some(Err(*sw)),
                "{}",
                hex::encode(apdu)
            );
        }
    }

    #[test]
    fn read_buffer_counts_from_the_length_prefix() {
        let c = Container::new([0xDB, 0x00], &hex!("F001"), &hex!("AA")).unwrap();
        let mut out = Vec::new();
        c.read_buffer(0, BufferKind::Tags, 2, &mut out).unwrap();
        assert_eq!(out, hex!("0200"));
        out.clear();
        c.read_buffer(2, BufferKind::Tags, 0xF0, &mut out).unwrap();
        assert_eq!(out, hex!("F001"));
        out.clear();
        c.read_buffer(1, BufferKind::Values, 10, &mut out).unwrap();
        assert_eq!(out, hex!("00AA"));
        assert_eq!(
            c.read_buffer(3, BufferKind::Values, 1, &mut out),
            Err(Status::IncorrectP1P2)
        );
        assert_eq!(
            c.read_buffer(4, BufferKind::Values, 0, &mut out),
            Err(Status::IncorrectP1P2)
        );
        assert_eq!(c.buffer_properties(), hex!("00 0400 0300"));
    }

    #[test]
    fn empty_buffer_answers_its_zero_length() {
        let c = Container::new([0x02, 0xFE], &[], &[]).unwrap();
        let mut out = Vec::new();
        c.read_buffer(0, BufferKind::Values, 2, &mut out).unwrap();
        assert_eq!(out, hex!("0000"));
    }

    #[test]
    fn properties_by_tag() {
        let p = Properties::new(hex!("0105 1002060203 400101").to_vec(), Vec::new());
        let mut out = Vec::new();
        p.answer(PropertiesRequest::Tags(&[0x40, 0x01]), &mut out)
            .unwrap();
        assert_eq!(out, hex!("400101 0105 1002060203"));
        assert_eq!(
            p.answer(PropertiesRequest::Tags(&[0x51]), &mut out),
            Err(Status::ReferencedDataNotFound)
        );
    }
}
