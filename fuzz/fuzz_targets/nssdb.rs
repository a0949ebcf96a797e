//! nssdb: the NSS database decoders on any bytes. The first byte picks
//! the layer: 0 an encrypted value (parse + decrypt), 1 a PBMAC1 row
//! (parse + verify), 2 a SubjectPublicKeyInfo / certificate / column name /
//! attribute value, 3 whole tables of rows interpreted by
//! `Database::from_raw` with every look-up and key extraction run on
//! them, 4 a whole SQLite file read by nssdb's own reader as cert9.db and
//! as key4.db (header, B-trees, overflow chains, records, the CREATE
//! TABLE text), the tables then interpreted as in 3. Iteration counts are
//! capped at 8 so each input stays fast. None may panic or allocate
//! without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nssdb::raw::{self, RawMeta, RawRow, RawTable};
use nssdb::Database;

/// The attribute columns a row of mode 3 fills, in order.
const COLUMNS: [&str; 16] = [
    "a0",
    "a3",
    "a11",
    "a80",
    "a100",
    "a102",
    "a120",
    "a122",
    "a123",
    "a124",
    "a125",
    "a126",
    "a127",
    "a128",
    "a180",
    "ad5a0db00",
];
const MAX_ITERATIONS: u32 = 8;

/// Length-prefixed fields: a 1-byte length (0xFF: a 2-byte length follows).
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn field(&mut self) -> Option<&'a [u8]> {
        let mut len = usize::from(self.byte()?);
        if len == 0xFF {
            len = usize::from(u16::from_be_bytes([self.byte()?, self.byte()?]));
        }
        let (f, rest) = self.0.split_at_checked(len.min(self.0.len()))?;
        self.0 = rest;
        Some(f)
    }

    /// A presence byte (even: NULL), then the field.
    fn optional(&mut self) -> Option<Option<Vec<u8>>> {
        Some(if self.byte()? % 2 == 0 {
            None
        } else {
            Some(self.field()?.to_vec())
        })
    }
}

fn tables(data: &[u8]) -> (String, RawTable, RawTable, Vec<RawMeta>) {
    let mut f = Fields(data);
    let nickname = String::from_utf8_lossy(f.field().unwrap_or_default()).into_owned();
    let columns: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    let mut public = RawTable {
        columns: columns.clone(),
        rows: Vec::new(),
    };
    let mut private = RawTable {
        columns,
        rows: Vec::new(),
    };
    let mut meta = Vec::new();
    while let Some(kind) = f.byte() {
        match kind % 3 {
            0 | 1 => {
                let Some(id) = f.field() else { break };
                let mut id_bytes = [0u8; 8];
                for (d, s) in id_bytes.iter_mut().rev().zip(id.iter().rev()) {
                    *d = *s;
                }
                let mut values = Vec::with_capacity(COLUMNS.len());
                for _ in COLUMNS {
                    values.push(f.optional().unwrap_or(None));
                }
                let row = RawRow {
                    id: i64::from_be_bytes(id_bytes),
                    values,
                };
                if kind % 3 == 0 {
                    &mut public
                } else {
                    &mut private
                }
                .rows
                .push(row);
            }
            _ => {
                let id = f.field().unwrap_or_default().to_vec();
                let item1 = f.optional().unwrap_or(None);
                let item2 = f.optional().unwrap_or(None);
                meta.push(RawMeta { id, item1, item2 });
            }
        }
    }
    (nickname, public, private, meta)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let pass_key = raw::PassKey::derive(&[0u8; 20], b"");
    match mode % 5 {
        0 => {
            if let Ok(v) = raw::EncryptedValue::parse(body, MAX_ITERATIONS) {
                assert!(v.iterations() >= 1 && v.iterations() <= MAX_ITERATIONS);
                if let Ok(plain) = v.decrypt(&pass_key) {
                    assert!(plain.len() < body.len());
                }
            }
        }
        1 => {
            if let Ok(m) = raw::Pbmac1::parse(body, MAX_ITERATIONS) {
                let _ = m.verify(&pass_key, 0, raw::CKA_VALUE, body);
            }
        }
        2 => {
            let _ = raw::PublicKey::from_spki(body);
            if let Ok(info) = raw::CertInfo::parse(body) {
                let _ = raw::PublicKey::from_spki(info.spki);
            }
            let _ = raw::column_attribute(&String::from_utf8_lossy(body));
            assert!(raw::decode_value(body).len() <= body.len());
            if let Some(curve) = raw::Curve::from_params(body.get(..10).unwrap_or_default()) {
                let _ = raw::EcKey::new(curve, body.get(10..).unwrap_or_default())
                    .map(|k| k.to_pkcs8());
            }
        }
        4 => {
            let public = raw::parse_cert_db("cert9.db".as_ref(), body);
            let Ok((private, meta)) = raw::parse_key_db("key4.db".as_ref(), body) else {
                return;
            };
            for row in private
                .rows
                .iter()
                .chain(public.iter().flat_map(|t| &t.rows))
            {
                assert!(row.values.iter().flatten().all(|v| v.len() <= body.len()));
            }
            let Ok(db) = Database::from_raw(
                "cert9.db".into(),
                "key4.db".into(),
                public.unwrap_or_default(),
                private,
                meta,
            ) else {
                return;
            };
            let db = db.with_max_iterations(MAX_ITERATIONS);
            let _ = db.check_password(b"");
            for cert in db.certificates() {
                let _ = db.private_key_pkcs8(&cert, b"");
            }
        }
        _ => {
            let (nickname, public, private, meta) = tables(body);
            let Ok(db) =
                Database::from_raw("cert9.db".into(), "key4.db".into(), public, private, meta)
            else {
                return;
            };
            let db = db.with_max_iterations(MAX_ITERATIONS);
            let _ = db.needs_login();
            let _ = db.check_password(b"");
            let _ = db.find_certificate_at(&nickname, 0);
            for cert in db.certificates() {
                let _ = db.private_key_pkcs8(&cert, b"");
            }
        }
    }
});
