//! CMS SignedData (RFC 5652) for the PIV signed objects: the CHUID's
//! Issuer Asymmetric Signature and the Security Object's LDS signature
//! (NIST SP 800-73-4, FIPS 201), signed by the PIV content signer.
//!
//! ```text
//!  ContentInfo { signedData, [0] SignedData {
//!    version 3, { sha-256 },
//!    EncapsulatedContentInfo { eContentType, [0] eContent (absent when detached) },
//!    [0] { content-signing certificate },
//!    { SignerInfo { version 1, issuerAndSerialNumber, sha-256,
//!        [0] { contentType, messageDigest, pivSigner-DN },
//!        signatureAlgorithm, signature } } } }
//! ```
//!
//! The encoding is DER, written here byte by byte: every element has a
//! definite length, the signed attributes are sorted as DER sorts a SET OF.

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::error::{crypto, Error};
use crate::keys::SigningKey;

/// id-signedData (RFC 5652).
const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// id-sha256 (RFC 5754: parameters absent).
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// id-contentType (RFC 5652).
const ATTR_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// id-messageDigest (RFC 5652).
const ATTR_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
/// pivSigner-DN (FIPS 201): the content signer's subject.
const ATTR_PIV_SIGNER_DN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.6.5");
/// id-PIV-CHUIDSecurityObject (FIPS 201): eContentType of the CHUID signature.
pub(crate) const PIV_CHUID_SECURITY_OBJECT: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.6.1");
/// id-icao-ldsSecurityObject (ICAO Doc 9303): eContentType of the Security Object.
pub(crate) const ICAO_LDS_SECURITY_OBJECT: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.23.136.1.1.1");

/// Largest element this module writes (a length of at most 3 bytes).
const MAX_LEN: usize = 0xFFFF;

/// Appends `tag L value` with a DER definite length.
fn push_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) -> Result<(), Error> {
    let len = value.len();
    out.push(tag);
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=MAX_LEN => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        _ => return Err(Error::Crypto(format!("CMS element of {len} bytes"))),
    }
    out.extend_from_slice(value);
    Ok(())
}

/// `tag L (parts concatenated)`.
fn tlv(tag: u8, parts: &[&[u8]]) -> Result<Vec<u8>, Error> {
    let value = parts.concat();
    let mut out = Vec::with_capacity(value.len() + 4);
    push_tlv(&mut out, tag, &value)?;
    Ok(out)
}

fn der_of(what: &str, value: &impl Encode) -> Result<Vec<u8>, Error> {
    value.to_der().map_err(|e| crypto(what, e))
}

/// `Attribute ::= SEQUENCE { attrType, SET { value } }`.
fn attribute(oid: ObjectIdentifier, value: &[u8]) -> Result<Vec<u8>, Error> {
    let oid = der_of("CMS attribute", &oid)?;
    tlv(0x30, &[&oid, &tlv(0x31, &[value])?])
}

/// A content signer: its certificate and the key that signs.
pub(crate) struct Signer<'a> {
    pub(crate) cert_der: &'a [u8],
    pub(crate) key: &'a SigningKey,
}

/// A CMS SignedData `ContentInfo` over `content` (SHA-256), with
/// `content_type` as eContentType; `detached` leaves eContent out.
pub(crate) fn signed_data(
    signer: &Signer<'_>,
    content_type: ObjectIdentifier,
    content: &[u8],
    detached: bool,
) -> Result<Vec<u8>, Error> {
    let what = "CMS SignedData";
    let cert = Certificate::from_der(signer.cert_der).map_err(|e| crypto(what, e))?;
    let tbs = cert.tbs_certificate();
    let sha256 = tlv(0x30, &[&der_of(what, &SHA256)?])?;
    let content_type_der = der_of(what, &content_type)?;

    // Signed attributes, sorted as a DER SET OF.
    let digest = Sha256::digest(content);
    let mut attributes = [
        attribute(ATTR_CONTENT_TYPE, &content_type_der)?,
        attribute(ATTR_MESSAGE_DIGEST, &tlv(0x04, &[&digest])?)?,
        attribute(ATTR_PIV_SIGNER_DN, &der_of(what, tbs.subject())?)?,
    ];
    attributes.sort();
    let attributes = attributes.concat();
    // The signature covers the attributes with the SET OF tag (RFC 5652 5.4).
    let to_sign = tlv(0x31, &[&attributes])?;
    let signature = signer.key.sign(&to_sign)?;
    let signature_algorithm = der_of(what, &signer.key.algorithm().map_err(|e| crypto(what, e))?)?;

    let issuer_and_serial = tlv(
        0x30,
        &[
            &der_of(what, tbs.issuer())?,
            &der_of(what, tbs.serial_number())?,
        ],
    )?;
    let signer_info = tlv(
        0x30,
        &[
            &[0x02, 0x01, 0x01],
            &issuer_and_serial,
            &sha256,
            &tlv(0xA0, &[&attributes])?,
            &signature_algorithm,
            &tlv(0x04, &[signature.raw_bytes()])?,
        ],
    )?;
    let econtent = if detached {
        Vec::new()
    } else {
        tlv(0xA0, &[&tlv(0x04, &[content])?])?
    };
    let encapsulated = tlv(0x30, &[&content_type_der, &econtent])?;
    let signed = tlv(
        0x30,
        &[
            // Version 3: the eContentType is not id-data.
            &[0x02, 0x01, 0x03],
            &tlv(0x31, &[&sha256])?,
            &encapsulated,
            &tlv(0xA0, &[signer.cert_der])?,
            &tlv(0x31, &[&signer_info])?,
        ],
    )?;
    tlv(
        0x30,
        &[&der_of(what, &SIGNED_DATA)?, &tlv(0xA0, &[&signed])?],
    )
}

/// The ICAO `LDSSecurityObject` (version 0, SHA-256) over the data groups
/// `(number, contents)`.
pub(crate) fn lds_security_object(groups: &[(u8, &[u8])]) -> Result<Vec<u8>, Error> {
    // ICAO: SIZE (2..ub-DataGroups), data group numbers 1 to 16.
    if !(2..=16).contains(&groups.len()) || groups.iter().any(|(n, _)| !(1..=16).contains(n)) {
        return Err(Error::InvalidOption(format!(
            "an LDS security object holds 2 to 16 data groups numbered 1 to 16, not {:?}",
            groups.iter().map(|(n, _)| n).collect::<Vec<_>>()
        )));
    }
    let mut hashes = Vec::with_capacity(groups.len() * 40);
    for (number, contents) in groups {
        let digest = Sha256::digest(contents);
        hashes.extend(tlv(
            0x30,
            &[&[0x02, 0x01, *number], &tlv(0x04, &[&digest])?],
        )?);
    }
    let sha256 = tlv(0x30, &[&der_of("LDS security object", &SHA256)?])?;
    tlv(
        0x30,
        &[&[0x02, 0x01, 0x00], &sha256, &tlv(0x30, &[&hashes])?],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_lds_bytes() {
        let mut out = Vec::new();
        push_tlv(&mut out, 0x04, &[0; 0x80]).unwrap();
        assert_eq!(&out[..3], &[0x04, 0x81, 0x80]);
        out.clear();
        push_tlv(&mut out, 0x04, &[0; 0x1234]).unwrap();
        assert_eq!(&out[..4], &[0x04, 0x82, 0x12, 0x34]);
        assert!(push_tlv(&mut out, 0x04, &vec![0; 0x10000]).is_err());

        let lds = lds_security_object(&[(1, b"a"), (2, b"")]).unwrap();
        let a = Sha256::digest(b"a");
        let empty = Sha256::digest(b"");
        let mut want = vec![0x30, 0x60, 0x02, 0x01, 0x00];
        want.extend_from_slice(&[
            0x30, 0x0B, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        ]);
        want.extend_from_slice(&[0x30, 0x4E, 0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20]);
        want.extend_from_slice(&a);
        want.extend_from_slice(&[0x30, 0x25, 0x02, 0x01, 0x02, 0x04, 0x20]);
        want.extend_from_slice(&empty);
        assert_eq!(lds, want);
        assert!(lds_security_object(&[(1, b"a")]).is_err());
        assert!(lds_security_object(&[(1, b"a"), (17, b"b")]).is_err());
    }
}
