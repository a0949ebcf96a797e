//! Distinguished names written the way OpenSSL prints them
//! (`C=US, O=U.S. Government, OU=DoD, CN=...`), most general first.

use der::asn1::{Any, ObjectIdentifier, SetOfVec};
use der::Tag;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

use crate::error::Error;

/// Attribute types accepted in a name, with their OIDs.
const ATTRIBUTES: &[(&str, ObjectIdentifier)] = &[
    ("C", ObjectIdentifier::new_unwrap("2.5.4.6")),
    ("ST", ObjectIdentifier::new_unwrap("2.5.4.8")),
    ("L", ObjectIdentifier::new_unwrap("2.5.4.7")),
    ("O", ObjectIdentifier::new_unwrap("2.5.4.10")),
    ("OU", ObjectIdentifier::new_unwrap("2.5.4.11")),
    ("CN", ObjectIdentifier::new_unwrap("2.5.4.3")),
    ("SERIALNUMBER", ObjectIdentifier::new_unwrap("2.5.4.5")),
    (
        "DC",
        ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25"),
    ),
];

/// The ASN.1 PrintableString alphabet (X.680 41.4).
fn is_printable(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

/// Parses `"C=US, O=Org, OU=Unit, CN=Name"` (X.500 order: the first
/// attribute is the root of the tree, as OpenSSL's `-subject` prints it) into
/// a [`Name`] with one attribute per RDN.
///
/// Values are PrintableString when they fit its alphabet, UTF8String
/// otherwise (DC is IA5String). Commas, `+` and escapes are not supported
/// inside values.
pub(crate) fn parse_dn(text: &str) -> Result<Name, Error> {
    let mut rdns = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let (key, value) = part.split_once('=').ok_or_else(|| {
            Error::InvalidOption(format!(
                "distinguished name {text:?}: expected TYPE=value, not {part:?}"
            ))
        })?;
        rdns.push(rdn(key.trim(), value.trim())?);
    }
    if rdns.is_empty() {
        return Err(Error::InvalidOption(format!(
            "distinguished name {text:?}: no attributes"
        )));
    }
    Ok(Name::hazmat_from_rdn_sequence(RdnSequence::from(rdns)))
}

/// `base` followed by `CN=common_name` (taken literally: commas allowed).
pub(crate) fn with_common_name(base: &Name, common_name: &str) -> Result<Name, Error> {
    let mut rdns = RdnSequence::from(base.clone());
    rdns.push(rdn("CN", common_name)?);
    Ok(Name::hazmat_from_rdn_sequence(rdns))
}

/// One single-valued RDN `key=value`.
fn rdn(key: &str, value: &str) -> Result<RelativeDistinguishedName, Error> {
    let bad = |why: &str| Error::InvalidOption(format!("name attribute {key}={value:?}: {why}"));
    if value.is_empty() {
        return Err(bad("empty value"));
    }
    if value.contains(['+', '\\', '"']) {
        return Err(bad("'+', '\\' and '\"' are not supported in values"));
    }
    let oid = ATTRIBUTES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .map(|(_, oid)| *oid)
        .ok_or_else(|| bad("unknown attribute type"))?;
    let tag = if key.eq_ignore_ascii_case("DC") {
        if !value.is_ascii() {
            return Err(bad("DC must be ASCII"));
        }
        Tag::Ia5String
    } else if value.chars().all(is_printable) {
        Tag::PrintableString
    } else if key.eq_ignore_ascii_case("C") || key.eq_ignore_ascii_case("SERIALNUMBER") {
        return Err(bad("must be a PrintableString"));
    } else {
        Tag::Utf8String
    };
    let value = Any::new(tag, value.as_bytes()).map_err(|e| bad(&e.to_string()))?;
    let atv = AttributeTypeAndValue { oid, value };
    let set = SetOfVec::try_from(vec![atv]).map_err(|e| bad(&e.to_string()))?;
    Ok(RelativeDistinguishedName::from(set))
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Encode;

    #[test]
    fn keeps_x500_order_and_picks_string_types() {
        let name = parse_dn("C=US, O=U.S. Government, OU=DoD, CN=DOE.JOHN.Q.1234567890").unwrap();
        assert_eq!(name.iter_rdn().count(), 4);
        // RFC 4514 display is the reverse (most specific first).
        assert_eq!(
            name.to_string(),
            "CN=DOE.JOHN.Q.1234567890,OU=DoD,O=U.S. Government,C=US"
        );
        let der = name.to_der().unwrap();
        // C=US as PrintableString (tag 0x13).
        assert_eq!(
            &der[2..13],
            &[0x31, 0x0b, 0x30, 0x09, 0x06, 0x03, 0x55, 0x04, 0x06, 0x13, 0x02]
        );
        let utf8 = parse_dn("CN=Zoë").unwrap().to_der().unwrap();
        assert!(utf8.contains(&0x0c));
        let with_cn = with_common_name(&parse_dn("O=Org").unwrap(), "Doe, John").unwrap();
        assert_eq!(with_cn.iter_rdn().count(), 2);
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in ["", "CN", "CN=", "XX=1", "CN=a+b", "C=Ü"] {
            assert!(parse_dn(bad).is_err(), "{bad:?}");
        }
    }
}
