//! The `vcard_emul_options` string, parsed the way libcacard 2.8 parses it.
//!
//! Pure Rust, no FFI: [`parse`] turns the bytes of the C string into
//! [`Options`] or a [`ParseError`]. The grammar has quirks QEMU and
//! spice-gtk rely on (or at least never trip over), reproduced on purpose:
//!
//! * items start after blanks (`isspace`); one `,` at the start of an item
//!   is skipped, and an item that is empty (end of input, or blanks only)
//!   is an error — so `use_hw=no ` (trailing blank) fails while
//!   `soft=(…) ` does not, because only `soft=` skips the blanks after it;
//! * `use_hw=`, `hw_params=`, `nssemul` and `passthru` run to the next
//!   blank and swallow anything comma-joined to them;
//! * `hw_type=` takes the whole rest of the input, so it only works last;
//! * `db="…"` must be quoted and ends at the next `"` *or newline*;
//!   `db=` and `hw_params=` may appear once.
//!
//! The one deliberate difference: an unterminated `soft=(…` makes
//! libcacard 2.8.0 abort the process; here it is [`ParseError::UnterminatedSoft`].

use core::fmt;

/// The card emulation type (`VCardEmulType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulType {
    /// `VCARD_EMUL_NONE` (0): not a valid type.
    None,
    /// `VCARD_EMUL_CAC` (1).
    Cac,
    /// `VCARD_EMUL_PASSTHRU` (2).
    Passthru,
}

impl EmulType {
    /// `vcard_emul_type_from_string`: `CAC` or `PASSTHRU`, ignoring ASCII
    /// case; anything else is [`EmulType::None`].
    pub fn from_name(name: &[u8]) -> EmulType {
        if name.eq_ignore_ascii_case(b"CAC") {
            EmulType::Cac
        } else if name.eq_ignore_ascii_case(b"PASSTHRU") {
            EmulType::Passthru
        } else {
            EmulType::None
        }
    }

    /// The C enum value.
    pub fn to_c(self) -> u32 {
        match self {
            EmulType::None => 0,
            EmulType::Cac => 1,
            EmulType::Passthru => 2,
        }
    }
}

/// Which PKCS#11 slots become readers when `use_hw` is not `no`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UseHw {
    /// `use_hw=no` (a value starting with `0`, `N`, `n` or `F`): soft
    /// readers only.
    No,
    /// The default: removable hardware slots.
    Yes,
    /// `use_hw=removable`: every removable slot.
    Removable,
}

/// One `soft=(SLOT,VNAME,TYPE,PARAMS,CERT…)` reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoftReader {
    /// The PKCS#11 slot name (empty: the database's own key slot).
    pub slot: String,
    /// The reader name, verbatim (trailing blanks kept).
    pub name: String,
    /// The card type.
    pub card_type: EmulType,
    /// Card-type parameters (unused by CAC).
    pub params: String,
    /// Certificate nicknames, in PKI applet order (at least one).
    pub certs: Vec<String>,
}

/// A parsed options string (libcacard's `VCardEmulOptions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `db="…"`, verbatim (`sql:` prefix included); `None` means the
    /// default database.
    pub db: Option<String>,
    /// Soft readers, in order.
    pub soft: Vec<SoftReader>,
    /// Hardware slot selection.
    pub use_hw: UseHw,
    /// Card type for hardware tokens.
    pub hw_type: EmulType,
    /// `hw_params=`.
    pub hw_params: Option<String>,
}

impl Default for Options {
    /// What libcacard uses for `vcard_emul_init(NULL)` and before any item:
    /// default database, hardware CAC tokens, no soft readers.
    fn default() -> Options {
        Options {
            db: None,
            soft: Vec::new(),
            use_hw: UseHw::Yes,
            hw_type: EmulType::Cac,
            hw_params: None,
        }
    }
}

/// The database `vcard_emul_init` opens when no `db=` was given.
pub const DEFAULT_DB: &str = "/etc/pki/nssdb";

/// Why an options string is rejected (`vcard_emul_options` returns NULL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// An item that is none of the known ones (also an empty item).
    UnknownItem,
    /// `soft=` without `(`, or fewer than four fields before `)`.
    InvalidSoft,
    /// `soft=(SLOT,VNAME,TYPE,PARAMS,` and nothing after it.
    MissingCert,
    /// `soft=(…` without the closing `)` (libcacard 2.8.0 aborts here).
    UnterminatedSoft,
    /// A card type other than CAC / PASSTHRU (the text as given).
    InvalidType(String),
    /// `db=` not followed by `"`.
    UnquotedDb,
    /// `db="…` with neither a closing quote nor a newline after it.
    InvalidDb,
    /// A second `db=`.
    DuplicateDb,
    /// A second `hw_params=`.
    DuplicateHwParams,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownItem => f.write_str("unknown smartcard option"),
            ParseError::InvalidSoft => {
                f.write_str("invalid soft= item: expected soft=(SLOT,NAME,TYPE,PARAMS,CERT,...)")
            }
            ParseError::MissingCert => f.write_str("soft= item names no certificate"),
            ParseError::UnterminatedSoft => f.write_str("soft= item has no closing parenthesis"),
            ParseError::InvalidType(t) => {
                write!(f, "card type '{t}' is neither CAC nor PASSTHRU")
            }
            ParseError::UnquotedDb => f.write_str("db= needs a quoted path: db=\"PATH\""),
            ParseError::InvalidDb => f.write_str("db= path has no closing quote"),
            ParseError::DuplicateDb => f.write_str("db= given twice"),
            ParseError::DuplicateHwParams => f.write_str("hw_params= given twice"),
        }
    }
}

impl std::error::Error for ParseError {}

/// C's `isspace` in the "C" locale.
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// Longest type name compared (libcacard copies it into a 100-byte buffer).
const TYPE_MAX: usize = 99;

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a [u8] {
        self.s.get(self.pos..).unwrap_or_default()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn skip_blanks(&mut self) {
        while self.rest().first().is_some_and(|b| is_blank(*b)) {
            self.pos += 1;
        }
    }

    /// Consumes `prefix` if the input continues with it.
    fn eat(&mut self, prefix: &[u8]) -> bool {
        if self.rest().starts_with(prefix) {
            self.pos += prefix.len();
            true
        } else {
            false
        }
    }

    /// The bytes up to the next blank (or the end), consumed.
    fn word(&mut self) -> &'a [u8] {
        let rest = self.rest();
        let n = rest.iter().position(|b| is_blank(*b)).unwrap_or(rest.len());
        self.pos += n;
        rest.get(..n).unwrap_or_default()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses an options string (the bytes before the C string's NUL).
pub fn parse(input: &[u8]) -> Result<Options, ParseError> {
    let mut opts = Options::default();
    let mut c = Cursor { s: input, pos: 0 };
    // A do-while loop: the first item is parsed even for empty input (and
    // is then an error); `continue` re-tests the end.
    loop {
        c.skip_blanks();
        if c.eat(b",") {
            if c.at_end() {
                break;
            }
            continue;
        }
        if c.eat(b"soft=") {
            opts.soft.push(parse_soft(&mut c)?);
            c.skip_blanks();
        } else if c.eat(b"use_hw=") {
            let v = c.word();
            opts.use_hw = match v.first() {
                Some(b'0' | b'N' | b'n' | b'F') => UseHw::No,
                _ if v.starts_with(b"removable") => UseHw::Removable,
                _ => UseHw::Yes,
            };
        } else if c.eat(b"hw_type=") {
            let rest = c.rest();
            c.pos = c.s.len();
            opts.hw_type = match EmulType::from_name(rest) {
                EmulType::None => return Err(ParseError::InvalidType(text(rest))),
                t => t,
            };
        } else if c.eat(b"hw_params=") {
            if opts.hw_params.is_some() {
                return Err(ParseError::DuplicateHwParams);
            }
            opts.hw_params = Some(text(c.word()));
        } else if c.eat(b"db=") {
            if opts.db.is_some() {
                return Err(ParseError::DuplicateDb);
            }
            if !c.eat(b"\"") {
                return Err(ParseError::UnquotedDb);
            }
            let rest = c.rest();
            let n = rest
                .iter()
                .position(|b| matches!(b, b'"' | b'\n'))
                .ok_or(ParseError::InvalidDb)?;
            opts.db = Some(text(rest.get(..n).unwrap_or_default()));
            c.pos += n + 1;
        } else if c.eat(b"nssemul") {
            c.word();
            opts.hw_type = EmulType::Cac;
            opts.use_hw = UseHw::Yes;
        } else if c.eat(b"passthru") {
            c.word();
            opts.hw_type = EmulType::Passthru;
            opts.use_hw = UseHw::Yes;
        } else {
            return Err(ParseError::UnknownItem);
        }
        if c.at_end() {
            break;
        }
    }
    Ok(opts)
}

/// `(SLOT,VNAME,TYPE,PARAMS,CERT[,CERT…])`, the cursor just after `soft=`;
/// leaves it after the `)`.
fn parse_soft(c: &mut Cursor<'_>) -> Result<SoftReader, ParseError> {
    if !c.eat(b"(") {
        return Err(ParseError::InvalidSoft);
    }
    let mut fixed: [&[u8]; 4] = [&[]; 4];
    for (i, slot) in fixed.iter_mut().enumerate() {
        c.skip_blanks();
        let rest = c.rest();
        let n = rest
            .iter()
            .position(|b| matches!(b, b',' | b')'))
            .ok_or(ParseError::InvalidSoft)?;
        if rest.get(n) != Some(&b',') {
            return Err(ParseError::InvalidSoft);
        }
        *slot = rest.get(..n).unwrap_or_default();
        c.pos += n + 1;
        if i == 2 {
            let name = slot.get(..slot.len().min(TYPE_MAX)).unwrap_or_default();
            if EmulType::from_name(name) == EmulType::None {
                return Err(ParseError::InvalidType(text(name)));
            }
        }
    }
    if c.at_end() {
        return Err(ParseError::MissingCert);
    }
    let rest = c.rest();
    let close = rest
        .iter()
        .position(|b| *b == b')')
        .ok_or(ParseError::UnterminatedSoft)?;
    let certs = rest
        .get(..close)
        .unwrap_or_default()
        .split(|b| *b == b',')
        .map(|cert| {
            let start = cert
                .iter()
                .position(|b| !is_blank(*b))
                .unwrap_or(cert.len());
            text(cert.get(start..).unwrap_or_default())
        })
        .collect();
    c.pos += close + 1;
    let [slot, name, card_type, params] = fixed;
    Ok(SoftReader {
        slot: text(slot),
        name: text(name),
        card_type: EmulType::from_name(card_type),
        params: text(params),
        certs,
    })
}

/// The text `vcard_emul_usage` prints.
pub const USAGE: &str = "\
smartcard emulation options (a blank-separated list of items):
  soft=(SLOT,NAME,TYPE,PARAMS,CERT[,CERT...])
        a software reader NAME holding a TYPE card (CAC) built from the
        certificates with the given nicknames; SLOT empty = the database's
        own key slot. A vcac card directory names its certificates id0, id1...
  db=\"PATH\"     the certificate database (sql:DIR, DIR, or a vcac card
        directory); default /etc/pki/nssdb
  use_hw=yes|no|removable
        whether hardware tokens become readers (this library has none)
  hw_type=CAC|PASSTHRU   card type of hardware tokens (must come last)
  hw_params=PARAMS       parameters for hardware cards
  nssemul       hw_type=CAC use_hw=yes
  passthru      hw_type=PASSTHRU use_hw=yes
";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn ok(s: &str) -> Options {
        parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn err(s: &str) -> ParseError {
        parse(s.as_bytes()).expect_err(s)
    }

    fn soft(slot: &str, name: &str, certs: &[&str]) -> SoftReader {
        SoftReader {
            slot: slot.into(),
            name: name.into(),
            card_type: EmulType::Cac,
            params: String::new(),
            certs: certs.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn qemu_and_spice_strings() {
        let o = ok("db=\"/x\" use_hw=no soft=(,Virtual Reader,CAC,,a,b,c)");
        assert_eq!(o.db.as_deref(), Some("/x"));
        assert_eq!(o.use_hw, UseHw::No);
        assert_eq!(o.soft, [soft("", "Virtual Reader", &["a", "b", "c"])]);
        let o = ok("use_hw=no soft=(,Spice Software Smartcard,CAC,,c1,c2,c3)");
        assert_eq!(o.db, None);
        assert_eq!(o.soft[0].name, "Spice Software Smartcard");
        assert_eq!(o.soft[0].certs, ["c1", "c2", "c3"]);
    }

    #[test]
    fn empty_and_blank_items_fail() {
        for s in [
            "",
            " ",
            "\t",
            ", ",
            "use_hw=no ",
            "db=\"/tmp\" ",
            "use_hw=no foo",
        ] {
            assert_eq!(err(s), ParseError::UnknownItem, "{s:?}");
        }
        for s in [
            ",",
            " ,",
            ",use_hw=no",
            ",,use_hw=no",
            "use_hw=no,",
            " use_hw=no",
        ] {
            ok(s);
        }
    }

    #[test]
    fn unknown_items() {
        for s in [
            "foo",
            "use_hw",
            "USE_HW=no",
            "db",
            "hw_paramsx",
            "soft=(,R,CAC,,a)x",
        ] {
            assert_eq!(err(s), ParseError::UnknownItem, "{s:?}");
        }
        assert_eq!(err("soft=(,R,CAC,,a)  x"), ParseError::UnknownItem);
        assert_eq!(err("soft=(,R,CAC,,a)("), ParseError::UnknownItem);
        assert_eq!(err("db=\"a\"b\""), ParseError::UnknownItem);
    }

    #[test]
    fn soft_fields() {
        let o = ok("soft=(s,R,cac,p,a,,b)");
        assert_eq!(o.soft[0].slot, "s");
        assert_eq!(o.soft[0].params, "p");
        assert_eq!(o.soft[0].certs, ["a", "", "b"]);
        // Leading blanks dropped, trailing ones kept.
        let o = ok("soft=(,  R  ,  CAC,, a , b)");
        assert_eq!(o.soft[0].name, "R  ");
        assert_eq!(o.soft[0].certs, ["a ", "b"]);
        assert_eq!(ok("soft=(,R,CAC,,)").soft[0].certs, [""]);
        assert_eq!(
            ok("soft=(,R,passthru,,a)").soft[0].card_type,
            EmulType::Passthru
        );
        let many = ok("soft=(,R,CAC,,a,b,c,d,e,f,g,h,i,j,k,l)");
        assert_eq!(many.soft[0].certs.len(), 12);
    }

    #[test]
    fn several_soft_readers_and_separators() {
        for s in [
            "soft=(,R,CAC,,a)soft=(,S,CAC,,b)",
            "soft=(,R,CAC,,a) soft=(,S,CAC,,b)",
            "soft=(,R,CAC,,a),soft=(,S,CAC,,b)",
        ] {
            let o = ok(s);
            assert_eq!(
                o.soft.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
                ["R", "S"]
            );
        }
        for s in [
            "soft=(,R,CAC,,a) ",
            "soft=(,R,CAC,,a),use_hw=no",
            "soft=(,R,CAC,,a),,use_hw=no",
            "soft=(,R,CAC,,a)use_hw=no",
            "soft=(,R,CAC,,a) ,use_hw=no",
            "soft=(,R,CAC,,a)\t\tuse_hw=no",
        ] {
            ok(s);
        }
    }

    #[test]
    fn soft_errors() {
        for s in [
            "soft=",
            "soft=()",
            "soft=,R,CAC,,a)",
            "soft=(,R,CAC,a)",
            "soft=(",
            "soft=(,R,CAC",
            "soft=(,R,CAC,",
        ] {
            assert_eq!(err(s), ParseError::InvalidSoft, "{s:?}");
        }
        assert_eq!(err("soft=(,R,CAC,,"), ParseError::MissingCert);
        assert_eq!(
            err("soft=(,R,XYZ,,a)"),
            ParseError::InvalidType("XYZ".into())
        );
        assert_eq!(err("soft=(,R,,,a)"), ParseError::InvalidType(String::new()));
        assert_eq!(
            err("soft=(,R,CAC  ,,a)"),
            ParseError::InvalidType("CAC  ".into())
        );
        assert_eq!(
            err("soft=(,R,CAC\t,,a)"),
            ParseError::InvalidType("CAC\t".into())
        );
        assert_eq!(
            err("soft=( slot , R , CAC , , a )"),
            ParseError::InvalidType("CAC ".into())
        );
        let long = format!("soft=(,R,{},,a)", "C".repeat(500));
        assert_eq!(err(&long), ParseError::InvalidType("C".repeat(TYPE_MAX)));
    }

    #[test]
    fn unterminated_soft_is_an_error_not_an_abort() {
        for s in ["soft=(,R,CAC,,a", "soft=(,R,CAC,,a,", "soft=(,R,CAC,,a b c"] {
            assert_eq!(err(s), ParseError::UnterminatedSoft, "{s:?}");
        }
    }

    #[test]
    fn use_hw_values() {
        for (v, want) in [
            ("no", UseHw::No),
            ("0", UseHw::No),
            ("F", UseHw::No),
            ("n", UseHw::No),
            ("N", UseHw::No),
            ("false", UseHw::Yes),
            ("yes", UseHw::Yes),
            ("", UseHw::Yes),
            ("removable", UseHw::Removable),
            ("removablex", UseHw::Removable),
        ] {
            assert_eq!(ok(&format!("use_hw={v}")).use_hw, want, "{v:?}");
        }
        // The value runs to the next blank and swallows comma-joined items.
        let o = ok("use_hw=n,soft=(,R,CAC,,a)");
        assert_eq!(o.use_hw, UseHw::No);
        assert!(o.soft.is_empty());
        for s in [
            "use_hw=no\tsoft=(,R,CAC,,a)",
            "use_hw=no\nsoft=(,R,CAC,,a)",
            "\tuse_hw=no",
        ] {
            ok(s);
        }
    }

    #[test]
    fn hw_type_takes_the_rest() {
        assert_eq!(ok("hw_type=cac").hw_type, EmulType::Cac);
        assert_eq!(ok("hw_type=PASSTHRU").hw_type, EmulType::Passthru);
        assert_eq!(ok("use_hw=no hw_type=PASSTHRU").use_hw, UseHw::No);
        assert_eq!(
            err("hw_type=CAC use_hw=no"),
            ParseError::InvalidType("CAC use_hw=no".into())
        );
        assert_eq!(err("hw_type=CAC "), ParseError::InvalidType("CAC ".into()));
        assert_eq!(err("hw_type="), ParseError::InvalidType(String::new()));
        assert_eq!(err("hw_type=XYZ"), ParseError::InvalidType("XYZ".into()));
    }

    #[test]
    fn hw_params() {
        assert_eq!(ok("hw_params=x").hw_params.as_deref(), Some("x"));
        assert_eq!(ok("hw_params=").hw_params.as_deref(), Some(""));
        let o = ok("hw_params=x,use_hw=no");
        assert_eq!(o.hw_params.as_deref(), Some("x,use_hw=no"));
        assert_eq!(o.use_hw, UseHw::Yes);
        assert_eq!(ok("hw_params=x hw_type=CAC").hw_type, EmulType::Cac);
        assert_eq!(
            err("hw_params=x hw_params=y"),
            ParseError::DuplicateHwParams
        );
    }

    #[test]
    fn db() {
        assert_eq!(ok("db=\"/tmp\"").db.as_deref(), Some("/tmp"));
        assert_eq!(ok("db=\"\"").db.as_deref(), Some(""));
        assert_eq!(ok("db=\"sql:/a b\"").db.as_deref(), Some("sql:/a b"));
        ok("db=\"/tmp\",use_hw=no");
        ok("db=\"/tmp\"use_hw=no");
        ok("db=\"/tmp\"soft=(,R,CAC,,a)");
        assert_eq!(err("db=/tmp"), ParseError::UnquotedDb);
        assert_eq!(err("db="), ParseError::UnquotedDb);
        assert_eq!(err("db=\"/tmp"), ParseError::InvalidDb);
        // A newline ends the path like a quote.
        assert_eq!(ok("db=\"/tmp\n").db.as_deref(), Some("/tmp"));
        assert_eq!(ok("db=\"/a\nuse_hw=no").use_hw, UseHw::No);
        ok("db=\"/a\n use_hw=no");
        assert_eq!(err("db=\"/tmp\n\""), ParseError::UnknownItem);
        assert_eq!(err("db=\"/tmp\nx\" use_hw=no"), ParseError::UnknownItem);
        assert_eq!(err("soft=(,R,CAC,,a)db=\"x\" "), ParseError::UnknownItem);
        assert_eq!(err("db=\"/tmp\" db=\"/x\""), ParseError::DuplicateDb);
        assert_eq!(err("db=\"/tmp\"db=\"/x\""), ParseError::DuplicateDb);
    }

    #[test]
    fn keywords() {
        for s in [
            "nssemul",
            "nssemulx",
            "nssemul use_hw=no",
            "nssemulx use_hw=no",
            "nssemul,use_hw=no",
        ] {
            let o = ok(s);
            assert_eq!(o.hw_type, EmulType::Cac, "{s:?}");
        }
        assert_eq!(ok("nssemul use_hw=no").use_hw, UseHw::No);
        assert_eq!(ok("nssemul,use_hw=no").use_hw, UseHw::Yes);
        let o = ok("use_hw=no passthru");
        assert_eq!((o.hw_type, o.use_hw), (EmulType::Passthru, UseHw::Yes));
        ok("passthrux");
        assert_eq!(err("nssemul foo"), ParseError::UnknownItem);
    }

    #[test]
    fn defaults() {
        let d = Options::default();
        assert_eq!(
            (d.use_hw, d.hw_type, d.db.clone(), d.hw_params.clone()),
            (UseHw::Yes, EmulType::Cac, None, None)
        );
        assert_eq!(ok("use_hw=yes"), d);
    }

    #[test]
    fn type_names() {
        assert_eq!(EmulType::from_name(b"cAc"), EmulType::Cac);
        assert_eq!(EmulType::from_name(b"PassThru"), EmulType::Passthru);
        assert_eq!(EmulType::from_name(b"CAC "), EmulType::None);
        assert_eq!(
            [EmulType::None, EmulType::Cac, EmulType::Passthru].map(EmulType::to_c),
            [0, 1, 2]
        );
    }
}
