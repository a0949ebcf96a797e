//! PKI applet `A0 00 00 00 79 01 0i`: one certificate and its private key.
//!
//! Object `01 0i`; T-buffer `71 01 | 70 len | 72 00 | FE 00`, V-buffer
//! CertInfo (`00` plain, `01` zlib-compressed) then the certificate.
//! SIGN / DECRYPT (INS `42`) runs the raw private-key operation on the
//! chained input once the PIN is verified.

use std::io::Write;
use std::sync::Arc;

use super::container::{self, Container, ContainerCommand, Properties};
use super::{Ctx, APPLET_INFO, CAC_RID};
use crate::apdu::CommandView;
use crate::keys::{KeyAlgorithm, KeyError, KeyHandle};
use crate::status::Status;
use crate::tlv;

/// SIGN / DECRYPT.
pub(crate) const INS_SIGN_DECRYPT: u8 = 0x42;

/// AID of PKI applet `index`.
pub(crate) const fn aid(index: u8) -> [u8; 7] {
    [
        CAC_RID[0], CAC_RID[1], CAC_RID[2], CAC_RID[3], CAC_RID[4], 0x01, index,
    ]
}

/// A typed PKI command.
enum PkiCommand<'a> {
    Container(ContainerCommand<'a>),
    /// P1 `80`: more follows; P1 `00`: last block.
    Crypt {
        more: bool,
        data: &'a [u8],
    },
}

impl<'a> PkiCommand<'a> {
    fn parse(cmd: &CommandView<'a>) -> Result<PkiCommand<'a>, Status> {
        if let Some(c) = ContainerCommand::parse(cmd) {
            return c.map(PkiCommand::Container);
        }
        match (cmd.ins(), cmd.p1(), cmd.p2()) {
            (INS_SIGN_DECRYPT, p1 @ (0x00 | 0x80), 0x00) => {
                if cmd.data().is_empty() {
                    Err(Status::WrongLength)
                } else {
                    Ok(PkiCommand::Crypt {
                        more: p1 == 0x80,
                        data: cmd.data(),
                    })
                }
            }
            (INS_SIGN_DECRYPT, _, _) => Err(Status::IncorrectP1P2),
            _ => Err(Status::InsNotSupported),
        }
    }
}

pub(crate) struct Pki {
    aid: [u8; 7],
    container: Container,
    props: Properties,
    key: Option<Arc<dyn KeyHandle>>,
}

/// Errors building a PKI applet.
#[derive(Debug)]
pub(crate) enum PkiBuildError {
    Compress(std::io::Error),
    TooLarge(usize),
}

impl Pki {
    /// Builds applet `index` for a certificate (DER) and its key.
    pub(crate) fn new(
        index: u8,
        certificate: &[u8],
        key: Option<Arc<dyn KeyHandle>>,
        compress: bool,
    ) -> Result<Pki, PkiBuildError> {
        let mut value = Vec::with_capacity(certificate.len() + 1);
        if compress {
            value.push(0x01);
            let mut z = flate2::write::ZlibEncoder::new(value, flate2::Compression::best());
            z.write_all(certificate).map_err(PkiBuildError::Compress)?;
            value = z.finish().map_err(PkiBuildError::Compress)?;
        } else {
            value.push(0x00);
            value.extend_from_slice(certificate);
        }
        let (cert_info, cert) = value.split_at(1);
        let (t, v) = tlv::split_tl_v([
            (0x71, cert_info),
            (0x70, cert),
            (0x72, &[][..]),
            (0xFE, &[][..]),
        ]);
        let oid = [0x01, index];
        let container = Container::new(oid, &t, &v).map_err(|e| PkiBuildError::TooLarge(e.0))?;
        let props = properties(&container, key.as_ref().map(|k| k.algorithm()));
        Ok(Pki {
            aid: aid(index),
            container,
            props,
            key,
        })
    }

    pub(crate) fn aid(&self) -> &[u8] {
        &self.aid
    }

    pub(crate) fn process(
        &self,
        cmd: &CommandView<'_>,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        match PkiCommand::parse(cmd)? {
            PkiCommand::Container(c) => container::process(c, &self.container, &self.props, out),
            PkiCommand::Crypt { more, data } => self.crypt(more, data, ctx, out),
        }
    }

    fn crypt(
        &self,
        more: bool,
        data: &[u8],
        ctx: &mut Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        let Some(key) = &self.key else {
            ctx.chain.clear();
            return Err(Status::ReferencedDataNotFound);
        };
        if !ctx.security.is_verified() {
            ctx.chain.clear();
            return Err(Status::SecurityNotSatisfied);
        }
        let algorithm = key.algorithm();
        ctx.chain.push(ctx.me, data, algorithm.block_len())?;
        if more {
            return Ok(());
        }
        let complete = match algorithm {
            KeyAlgorithm::Rsa { .. } => ctx.chain.bytes().len() == algorithm.block_len(),
            _ => ctx.chain.bytes().len() >= 16,
        };
        if !complete {
            ctx.chain.clear();
            return Err(Status::WrongLength);
        }
        let result = key.private_op(ctx.chain.bytes(), ctx.rng, out);
        ctx.chain.clear();
        result.map_err(|e| match e {
            KeyError::InvalidInput => Status::IncorrectData,
            _ => Status::ExecutionError,
        })
    }
}

/// `01 05 <info> | 40 01 01 | 51 11 41 02 <oid> 42 05 <buffers> 43 04 06 <size> <init> 01`,
/// and the long form with `26 01 01` appended to the object (`51 14`).
fn properties(container: &Container, algorithm: Option<KeyAlgorithm>) -> Properties {
    let mut object = Vec::with_capacity(0x14);
    tlv::push(&mut object, 0x41, &container.oid());
    tlv::push(&mut object, 0x42, &container.buffer_properties());
    let (size, initialised) = match algorithm {
        Some(a) => (u8::try_from(a.bits() / 64).unwrap_or(u8::MAX), 0x01),
        None => (0x20, 0x00),
    };
    tlv::push(&mut object, 0x43, &[0x06, size, initialised, 0x01]);
    let mut long_object = object.clone();
    tlv::push(&mut long_object, 0x26, &[0x01]);

    let build = |obj: &[u8]| {
        let mut p = Vec::with_capacity(32);
        tlv::push(&mut p, 0x01, &APPLET_INFO);
        tlv::push(&mut p, 0x40, &[0x01]);
        tlv::push(&mut p, 0x51, obj);
        p
    };
    Properties::new(build(&object), build(&long_object))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn properties_object_is_exactly_0x11_bytes() {
        let pki = Pki::new(0, &[0x30; 0x0311 - 1], None, false).unwrap();
        let mut out = Vec::new();
        pki.props
            .answer(container::PropertiesRequest::All, &mut out)
            .unwrap();
        assert_eq!(
            out,
            hex!("0105 1002060203 400101 5111 41020100 4205000C001303 430406200001")
        );
        out.clear();
        pki.props
            .answer(container::PropertiesRequest::Long, &mut out)
            .unwrap();
        assert_eq!(
            out,
            hex!("0105 1002060203 400101 5114 41020100 4205000C001303 430406200001 260101")
        );
    }

    #[test]
    fn buffers_and_compression() {
        let cert = vec![0x42u8; 600];
        let pki = Pki::new(2, &cert, None, false).unwrap();
        assert_eq!(pki.aid(), hex!("A0000000790102"));
        assert_eq!(pki.container.values()[0], 0x00);
        assert_eq!(&pki.container.values()[1..], &cert[..]);

        let pki = Pki::new(2, &cert, None, true).unwrap();
        let v = pki.container.values();
        assert_eq!(v[0], 0x01);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&v[1..]), &mut back)
            .unwrap();
        assert_eq!(back, cert);
    }
}
