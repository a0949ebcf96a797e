//! PKCS #11 attribute types and how NSS stores their values in SQLite.

/// CKA_CLASS.
pub const CKA_CLASS: u32 = 0x0;
/// CKA_LABEL (the nickname of a certificate).
pub const CKA_LABEL: u32 = 0x3;
/// CKA_VALUE (certificate DER; EC private scalar, encrypted).
pub const CKA_VALUE: u32 = 0x11;
/// CKA_CERTIFICATE_TYPE.
pub const CKA_CERTIFICATE_TYPE: u32 = 0x80;
/// CKA_KEY_TYPE.
pub const CKA_KEY_TYPE: u32 = 0x100;
/// CKA_ID.
pub const CKA_ID: u32 = 0x102;
/// CKA_MODULUS.
pub const CKA_MODULUS: u32 = 0x120;
/// CKA_PUBLIC_EXPONENT.
pub const CKA_PUBLIC_EXPONENT: u32 = 0x122;
/// CKA_PRIVATE_EXPONENT (encrypted).
pub const CKA_PRIVATE_EXPONENT: u32 = 0x123;
/// CKA_PRIME_1 (encrypted).
pub const CKA_PRIME_1: u32 = 0x124;
/// CKA_PRIME_2 (encrypted).
pub const CKA_PRIME_2: u32 = 0x125;
/// CKA_EXPONENT_1 (encrypted).
pub const CKA_EXPONENT_1: u32 = 0x126;
/// CKA_EXPONENT_2 (encrypted).
pub const CKA_EXPONENT_2: u32 = 0x127;
/// CKA_COEFFICIENT (encrypted).
pub const CKA_COEFFICIENT: u32 = 0x128;
/// CKA_EC_PARAMS (named-curve OID TLV).
pub const CKA_EC_PARAMS: u32 = 0x180;

/// CKO_CERTIFICATE.
pub const CKO_CERTIFICATE: u32 = 1;
/// CKO_PRIVATE_KEY.
pub const CKO_PRIVATE_KEY: u32 = 3;
/// CKC_X_509.
pub const CKC_X_509: u32 = 0;
/// CKK_RSA.
pub const CKK_RSA: u32 = 0;
/// CKK_EC.
pub const CKK_EC: u32 = 3;

/// How NSS stores an attribute that is present with an empty value.
pub const EXPLICIT_EMPTY: [u8; 3] = [0xA5, 0x00, 0x5A];

/// The value of a stored attribute: `A5 00 5A` ("explicit NULL") is the
/// empty value, anything else is the value itself.
pub fn decode_value(stored: &[u8]) -> &[u8] {
    if stored == EXPLICIT_EMPTY {
        &[]
    } else {
        stored
    }
}

/// The attribute type of a column name: `a` followed by the type in hex
/// (NSS writes lower case without leading zeros; SQLite names are case
/// insensitive, so any case is accepted). `None` for `id` and other names.
pub fn column_attribute(name: &str) -> Option<u32> {
    let digits = name.strip_prefix('a').or_else(|| name.strip_prefix('A'))?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// A CK_ULONG attribute: NSS stores it as 4 bytes big-endian.
pub fn decode_ulong(value: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes)
}

/// Whether NSS encrypts this attribute in key4.db (NSS 3.87's list).
pub fn is_private_attribute(attribute: u32) -> bool {
    matches!(
        attribute,
        CKA_VALUE
            | CKA_PRIVATE_EXPONENT
            | CKA_PRIME_1
            | CKA_PRIME_2
            | CKA_EXPONENT_1
            | CKA_EXPONENT_2
            | CKA_COEFFICIENT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_empty() {
        assert_eq!(decode_value(&[0xA5, 0x00, 0x5A]), b"");
        assert_eq!(decode_value(b"cert1"), b"cert1");
        assert_eq!(decode_value(&[0xA5, 0x00]), &[0xA5, 0x00]);
        assert_eq!(decode_value(&[]), b"");
    }

    #[test]
    fn column_names() {
        assert_eq!(column_attribute("a0"), Some(0));
        assert_eq!(column_attribute("a102"), Some(0x102));
        assert_eq!(column_attribute("ad5a0db00"), Some(0xD5A0_DB00));
        assert_eq!(column_attribute("ACE536358"), Some(0xCE53_6358));
        assert_eq!(column_attribute("id"), None);
        assert_eq!(column_attribute("a"), None);
        assert_eq!(column_attribute("a1x"), None);
        assert_eq!(column_attribute("a123456789"), None);
        assert_eq!(column_attribute("a+1"), None);
        assert_eq!(column_attribute("b1"), None);
    }

    #[test]
    fn ulongs() {
        assert_eq!(decode_ulong(&[0, 0, 0, 1]), Some(1));
        assert_eq!(decode_ulong(&[0xCE, 0x53, 0x43, 0x53]), Some(0xCE53_4353));
        assert_eq!(decode_ulong(&[1]), None);
        assert_eq!(decode_ulong(&[0; 8]), None);
    }

    #[test]
    fn private_list() {
        assert!(is_private_attribute(CKA_VALUE));
        assert!(is_private_attribute(CKA_COEFFICIENT));
        assert!(!is_private_attribute(CKA_MODULUS));
        assert!(!is_private_attribute(CKA_PUBLIC_EXPONENT));
    }
}
