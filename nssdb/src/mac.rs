//! The integrity MACs NSS keeps in key4.db's `metaData` ("sig_" rows):
//! PBMAC1 (PBKDF2 + HMAC) over `BE32(objectID) ‖ BE32(type) ‖ value`.

use crate::asn1::{self, Reader, OCTET_STRING, OID};
use crate::error::DecodeError;
use crate::pbe::{PassKey, Pbkdf2Params, Prf, OID_PBMAC1};

/// The bit NSS 3.49–3.68 set in the object id of MAC rows written during
/// a password change (bug 1720226); NSS ≥ 3.69 also looks there.
pub const FALLBACK_ID_BITS: u32 = 0xC000_0000;

/// Which file the MACed object lives in: `sig_key_…` or `sig_cert_…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacTable {
    /// An object of key4.db's `nssPrivate`.
    Key,
    /// An object of cert9.db's `nssPublic`.
    Cert,
}

/// The `metaData` id of an attribute's MAC row, e.g.
/// `sig_key_2efa8917_00000123`.
pub fn mac_row_id(table: MacTable, object: u32, attribute: u32) -> String {
    let t = match table {
        MacTable::Key => "key",
        MacTable::Cert => "cert",
    };
    format!("sig_{t}_{object:08x}_{attribute:08x}")
}

/// A parsed PBMAC1 value (a MAC row's `item1`).
#[derive(Debug, Clone, Copy)]
pub struct Pbmac1<'a> {
    kdf: Pbkdf2Params<'a>,
    hmac: Prf,
    mac: &'a [u8],
}

impl<'a> Pbmac1<'a> {
    /// Parses `SEQUENCE { AlgorithmIdentifier PBMAC1, OCTET STRING mac }`,
    /// refusing iteration counts above `max_iterations`.
    pub fn parse(bytes: &'a [u8], max_iterations: u32) -> Result<Self, DecodeError> {
        let mut outer = Reader::new(asn1::single(bytes, asn1::SEQUENCE)?.content);
        let mut alg = outer.sequence()?;
        let mac = outer.read(OCTET_STRING)?;
        outer.finish()?;
        let oid = alg.read(OID)?;
        if oid != OID_PBMAC1 {
            return Err(DecodeError::UnsupportedAlgorithm(asn1::oid_to_string(oid)));
        }
        let mut params = alg.sequence()?;
        alg.finish()?;
        let kdf = Pbkdf2Params::parse(&mut params.sequence()?, max_iterations)?;
        let hmac = Prf::parse(&mut params.sequence()?)?;
        params.finish()?;
        if mac.len() != hmac.output_len() {
            return Err(DecodeError::BadValue(
                "MAC length differs from the HMAC's output",
            ));
        }
        Ok(Self { kdf, hmac, mac })
    }

    /// The iteration count of its key derivation.
    pub fn iterations(&self) -> u32 {
        self.kdf.iterations
    }

    /// Whether the MAC matches (constant-time compare). `object` is 0 for
    /// private (encrypted) attributes, whose `value` is the plaintext, and
    /// the real object id for authenticated plain attributes.
    pub fn verify(&self, pass_key: &PassKey, object: u32, attribute: u32, value: &[u8]) -> bool {
        let key_len = self.kdf.key_len.unwrap_or(self.hmac.output_len());
        let key = self.kdf.derive(pass_key, key_len);
        self.hmac.verify_hmac(
            &key,
            &[&object.to_be_bytes(), &attribute.to_be_bytes(), value],
            self.mac,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pbe::tests::pbkdf2_alg;
    use hex_literal::hex;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
        asn1::secret_tlv(tag, parts).to_vec()
    }

    /// A MAC row as NSS writes it.
    pub(crate) fn make_mac(
        pk: &PassKey,
        salt: &[u8],
        iter: u32,
        object: u32,
        attribute: u32,
        value: &[u8],
    ) -> Vec<u8> {
        let mut key = vec![0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(pk.bytes(), salt, iter, &mut key);
        let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(&key).unwrap();
        m.update(&object.to_be_bytes());
        m.update(&attribute.to_be_bytes());
        m.update(value);
        let mac = m.finalize().into_bytes();
        let hmac_alg = tlv(asn1::SEQUENCE, &[&tlv(OID, &[&hex!("2A864886F70D0209")])]);
        let params = tlv(
            asn1::SEQUENCE,
            &[&pbkdf2_alg(salt, iter, Some(32)), &hmac_alg],
        );
        let alg = tlv(asn1::SEQUENCE, &[&tlv(OID, &[OID_PBMAC1]), &params]);
        tlv(asn1::SEQUENCE, &[&alg, &tlv(OCTET_STRING, &[&mac])])
    }

    #[test]
    fn row_ids() {
        assert_eq!(
            mac_row_id(MacTable::Key, 0x2efa8917, 0x123),
            "sig_key_2efa8917_00000123"
        );
        assert_eq!(
            mac_row_id(MacTable::Cert, 0x2efa891a, 0xce5363b4),
            "sig_cert_2efa891a_ce5363b4"
        );
        assert_eq!(
            mac_row_id(MacTable::Key, 1 | FALLBACK_ID_BITS, 0x11),
            "sig_key_c0000001_00000011"
        );
    }

    #[test]
    fn verifies_and_rejects() {
        let pk = PassKey::derive(&[1; 20], b"pw");
        let row = make_mac(&pk, &[2; 32], 2, 0, 0x123, b"plain");
        let m = Pbmac1::parse(&row, 10).unwrap();
        assert_eq!(m.iterations(), 2);
        assert!(m.verify(&pk, 0, 0x123, b"plain"));
        assert!(!m.verify(&pk, 7, 0x123, b"plain"));
        assert!(!m.verify(&pk, 0, 0x124, b"plain"));
        assert!(!m.verify(&pk, 0, 0x123, b"plaiN"));
        assert!(!m.verify(&PassKey::derive(&[1; 20], b"pX"), 0, 0x123, b"plain"));
    }

    #[test]
    fn malformed_rows() {
        let pk = PassKey::derive(&[1; 20], b"");
        let row = make_mac(&pk, &[2; 32], 1, 0, 0x11, b"v");
        for cut in 0..row.len() {
            assert!(Pbmac1::parse(&row[..cut], 10).is_err());
        }
        assert_eq!(
            Pbmac1::parse(&make_mac(&pk, &[2; 32], 11, 0, 0x11, b"v"), 10).unwrap_err(),
            DecodeError::IterationCount { count: 11, max: 10 }
        );
        // A 31-byte MAC.
        let mut outer = asn1::Reader::new(&row);
        let mut content = outer.sequence().unwrap();
        let alg = content.any().unwrap().raw;
        let short = tlv(asn1::SEQUENCE, &[alg, &tlv(OCTET_STRING, &[&[0; 31]])]);
        assert_eq!(
            Pbmac1::parse(&short, 10).unwrap_err(),
            DecodeError::BadValue("MAC length differs from the HMAC's output")
        );
        // PBES2 in place of PBMAC1.
        let mut other = row.clone();
        let pos = other.windows(9).position(|w| w == OID_PBMAC1).unwrap();
        other[pos + 8] = 0x0D;
        assert!(matches!(
            Pbmac1::parse(&other, 10),
            Err(DecodeError::UnsupportedAlgorithm(_))
        ));
    }
}
