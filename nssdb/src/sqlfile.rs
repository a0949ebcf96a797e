//! A bounded, read-only reader of the SQLite 3 file format, on bytes
//! already in memory: the 100-byte header, table B-trees (interior and
//! leaf pages), overflow chains, the record format, and the column names
//! of a `CREATE TABLE` statement in `sqlite_schema`. Only what an NSS
//! database needs: rowid tables in UTF-8, read whole. No I/O here (the
//! snapshot logic is in `sqlite.rs`).
//!
//! ```text
//!  header ─► page size, usable size, page count, change counter
//!  page 1 (sqlite_schema) ─► "table" rows: name, root page, CREATE TABLE sql
//!  root page ─► interior pages (5) ─► leaf pages (13) ─► cells
//!  cell ─► payload (local part + overflow chain) ─► record ─► values
//! ```
//!
//! Every page number is checked against the page count, every page is
//! visited at most once per file (which bounds the work and breaks cycles
//! in B-trees and overflow chains), every offset and length is checked
//! against the usable part of its page, and no allocation is larger than
//! the file.

use std::borrow::Cow;

/// The 16 bytes every SQLite 3 file starts with.
pub(crate) const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// The size of the database header at the start of page 1.
pub(crate) const HEADER_LEN: usize = 100;
/// The deepest table B-tree SQLite itself builds or reads.
const MAX_DEPTH: usize = 20;

/// Why the bytes could not be read as the tables asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqlError {
    /// No SQLite 3 header.
    NotSqlite,
    /// The header says WAL mode (read or write version 2).
    Wal,
    /// A valid file using a feature this reader does not implement.
    Unsupported(String),
    /// The structure is inconsistent; the text says where.
    Malformed(String),
    /// A table or column the caller needs is missing.
    Schema(String),
    /// A bound on hostile input was exceeded.
    TooLarge(String),
}

fn malformed<T>(detail: impl Into<String>) -> Result<T, SqlError> {
    Err(SqlError::Malformed(detail.into()))
}

/// The fields of the 100-byte header this reader uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Bytes per page, a power of two in 512..=65536.
    pub(crate) page_size: usize,
    /// `page_size` less the reserved bytes at the end of each page.
    pub(crate) usable: usize,
    /// The file change counter (offset 24), incremented by every commit.
    pub(crate) change_counter: u32,
    /// The in-header database size in pages, if valid (offset 28).
    pub(crate) size_in_header: Option<u32>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

impl Header {
    /// Parses and checks the header at the start of `bytes`.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Header, SqlError> {
        let h = match bytes.get(..HEADER_LEN) {
            Some(h) if h.starts_with(MAGIC) => h,
            _ => return Err(SqlError::NotSqlite),
        };
        let field = |at: usize| h.get(at).copied().unwrap_or(0);
        let word = |at: usize| be32(h, at).unwrap_or(0);
        let (write_version, read_version) = (field(18), field(19));
        if write_version == 2 || read_version == 2 {
            return Err(SqlError::Wal);
        }
        if read_version != 1 {
            return Err(SqlError::Unsupported(format!(
                "file format read version {read_version}"
            )));
        }
        let page_size = match be16(h, 16).unwrap_or(0) {
            1 => 65536,
            n if n >= 512 && n.is_power_of_two() => usize::from(n),
            n => {
                return malformed(format!(
                    "page size {n} is not a power of two in 512..=65536"
                ))
            }
        };
        let reserved = usize::from(field(20));
        let usable = page_size - reserved;
        if usable < 480 {
            return malformed(format!(
                "{reserved} reserved bytes leave {usable} usable bytes per page (at least 480)"
            ));
        }
        if h.get(21..24) != Some(&[64, 32, 32][..]) {
            return malformed("payload fractions are not 64/32/32");
        }
        let schema_format = word(44);
        if schema_format > 4 {
            return Err(SqlError::Unsupported(format!(
                "schema format {schema_format}"
            )));
        }
        match word(56) {
            0 | 1 => {}
            2 | 3 => {
                return Err(SqlError::Unsupported(
                    "UTF-16 text encoding (NSS writes UTF-8)".into(),
                ))
            }
            n => return malformed(format!("text encoding {n}")),
        }
        let change_counter = word(24);
        let size = word(28);
        // SQLite trusts the in-header size only if the version-valid-for
        // number matches the change counter (older writers did not keep it).
        let size_in_header = (size != 0 && word(92) == change_counter).then_some(size);
        Ok(Header {
            page_size,
            usable,
            change_counter,
            size_in_header,
        })
    }
}

/// One value of a record, borrowing the record's bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

/// Reads a varint (1 to 9 bytes, big-endian, 7 bits per byte and all 8 in
/// the ninth) at `*at`, advancing it. None if `b` ends first.
pub(crate) fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = *b.get(*at)?;
        *at += 1;
        if i == 8 {
            return Some((v << 8) | u64::from(byte));
        }
        v = (v << 7) | u64::from(byte & 0x7F);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    Some(v)
}

/// Where one value of a record is: its serial type and its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    serial: u64,
    start: usize,
    len: usize,
}

impl Field {
    /// The value, from the payload the field was decoded from.
    pub(crate) fn value<'p>(&self, payload: &'p [u8]) -> Value<'p> {
        let bytes = payload
            .get(self.start..self.start + self.len)
            .unwrap_or_default();
        match self.serial {
            0 => Value::Null,
            8 => Value::Integer(0),
            9 => Value::Integer(1),
            1..=6 => {
                // Big-endian two's complement, sign-extended.
                let first = bytes.first().copied().unwrap_or(0);
                let mut v: i64 = if first & 0x80 != 0 { -1 } else { 0 };
                for &b in bytes {
                    v = (v << 8) | i64::from(b);
                }
                Value::Integer(v)
            }
            7 => Value::Real(f64::from_be_bytes(bytes.try_into().unwrap_or([0; 8]))),
            n if n % 2 == 0 => Value::Blob(bytes),
            _ => Value::Text(bytes),
        }
    }
}

/// Decodes a record's header (its serial types) into `out`, checking that
/// every value lies inside `payload`.
pub(crate) fn decode_record(
    payload: &[u8],
    max_columns: usize,
    out: &mut Vec<Field>,
) -> Result<(), SqlError> {
    decode_record_prefix(payload, max_columns, usize::MAX, out)
}

/// [`decode_record`] of the first `wanted` values only (the others are
/// neither located nor checked, as SQLite does for columns not read).
pub(crate) fn decode_record_prefix(
    payload: &[u8],
    max_columns: usize,
    wanted: usize,
    out: &mut Vec<Field>,
) -> Result<(), SqlError> {
    out.clear();
    let mut at = 0;
    let header_len = varint(payload, &mut at)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n >= at && n <= payload.len())
        .ok_or_else(|| SqlError::Malformed("record header size out of range".into()))?;
    let mut body = header_len;
    while at < header_len && out.len() < wanted {
        if out.len() >= max_columns {
            return malformed(format!("a record has more than {max_columns} values"));
        }
        let serial = varint(payload, &mut at)
            .filter(|_| at <= header_len)
            .ok_or_else(|| SqlError::Malformed("record header ends inside a varint".into()))?;
        let len: usize = match serial {
            0 | 8 | 9 => 0,
            1 => 1,
            2 => 2,
            3 => 3,
            4 => 4,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return malformed(format!("reserved serial type {serial}")),
            n => usize::try_from((n - 12) / 2).unwrap_or(usize::MAX),
        };
        match body.checked_add(len) {
            Some(end) if end <= payload.len() => {}
            _ => return malformed("a value runs past the end of its record"),
        }
        out.push(Field {
            serial,
            start: body,
            len,
        });
        body += len;
    }
    Ok(())
}

/// A column of a table, as its `CREATE TABLE` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column<'s> {
    /// The name, unquoted (borrowing the SQL text unless it had escapes).
    pub(crate) name: Cow<'s, str>,
    /// `INTEGER PRIMARY KEY`: the value is the rowid (stored as NULL).
    pub(crate) rowid_alias: bool,
    /// Declares a DEFAULT (rows older than an `ALTER TABLE ADD COLUMN`
    /// would have to take it).
    pub(crate) has_default: bool,
}

/// One token of SQL text, borrowing it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'s> {
    /// A bare word (keyword or identifier).
    Word(&'s [u8]),
    /// A quoted identifier (`"x"`, `[x]`, `` `x` ``), unquoted.
    Quoted(Cow<'s, [u8]>),
    /// A string literal or number: only skipped.
    Literal,
    /// One punctuation character.
    Punct(u8),
}

impl<'s> Token<'s> {
    fn is_word(&self, w: &str) -> bool {
        matches!(self, Token::Word(s) if s.eq_ignore_ascii_case(w.as_bytes()))
    }

    fn name(&self) -> Option<Cow<'s, [u8]>> {
        match self {
            Token::Word(s) => Some(Cow::Borrowed(s)),
            Token::Quoted(s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// Splits SQL text into tokens, dropping whitespace and comments.
fn tokenize(sql: &[u8]) -> Result<Vec<Token<'_>>, SqlError> {
    let bad = |what: &str| SqlError::Malformed(format!("schema SQL: {what}"));
    // About one token per four bytes of NSS's schema text.
    let mut out = Vec::with_capacity(sql.len() / 4);
    let mut i = 0;
    while let Some(&c) = sql.get(i) {
        let rest = sql.get(i..).unwrap_or_default();
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => i += 1,
            b'-' if rest.starts_with(b"--") => {
                i += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            }
            b'/' if rest.starts_with(b"/*") => {
                let end = rest
                    .windows(2)
                    .skip(2)
                    .position(|w| w == b"*/")
                    .map_or(rest.len(), |p| p + 4);
                i += end;
            }
            b'"' | b'`' | b'\'' | b'[' => {
                let close = if c == b'[' { b']' } else { c };
                let body = rest.get(1..).unwrap_or_default();
                // The first closing quote not doubled ([..] has no escape).
                let mut j = 0;
                let mut doubled = false;
                loop {
                    match body.get(j) {
                        None => return Err(bad("unterminated quote")),
                        Some(&b) if b == close => {
                            if close != b']' && body.get(j + 1) == Some(&close) {
                                doubled = true;
                                j += 2;
                            } else {
                                break;
                            }
                        }
                        Some(_) => j += 1,
                    }
                }
                let raw = body.get(..j).unwrap_or_default();
                let value = if doubled {
                    let mut v = Vec::with_capacity(raw.len());
                    let mut k = 0;
                    while let Some(&b) = raw.get(k) {
                        v.push(b);
                        k += if b == close { 2 } else { 1 };
                    }
                    Cow::Owned(v)
                } else {
                    Cow::Borrowed(raw)
                };
                out.push(if c == b'\'' {
                    Token::Literal
                } else {
                    Token::Quoted(value)
                });
                i += j + 2;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let n = rest
                    .iter()
                    .position(|&b| {
                        !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80)
                    })
                    .unwrap_or(rest.len());
                out.push(Token::Word(rest.get(..n).unwrap_or_default()));
                i += n;
            }
            c if c.is_ascii_digit()
                || (c == b'.' && rest.get(1).is_some_and(u8::is_ascii_digit)) =>
            {
                let n = rest
                    .iter()
                    .position(|&b| !(b.is_ascii_alphanumeric() || b == b'.'))
                    .unwrap_or(rest.len());
                out.push(Token::Literal);
                i += n;
            }
            c => {
                out.push(Token::Punct(c));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Words that end a column's type name and start its constraints.
const CONSTRAINT_WORDS: [&str; 11] = [
    "CONSTRAINT",
    "PRIMARY",
    "NOT",
    "NULL",
    "UNIQUE",
    "CHECK",
    "DEFAULT",
    "COLLATE",
    "REFERENCES",
    "GENERATED",
    "AS",
];
/// Words that start a table constraint instead of a column.
const TABLE_CONSTRAINT_WORDS: [&str; 5] = ["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"];

/// The columns of a `CREATE TABLE name (...)` statement, in order.
pub(crate) fn parse_create_table(
    sql: &[u8],
    max_columns: usize,
) -> Result<Vec<Column<'_>>, SqlError> {
    let tokens = tokenize(sql)?;
    let bad = |what: &str| SqlError::Malformed(format!("schema SQL: {what}"));
    let mut at = 0;
    let next = |at: &mut usize| {
        let t = tokens.get(*at);
        *at += 1;
        t
    };
    if !next(&mut at).is_some_and(|x| x.is_word("CREATE")) {
        return Err(bad("not a CREATE statement"));
    }
    if tokens
        .get(at)
        .is_some_and(|x| x.is_word("TEMP") || x.is_word("TEMPORARY"))
    {
        at += 1;
    }
    if tokens.get(at).is_some_and(|x| x.is_word("VIRTUAL")) {
        return Err(SqlError::Unsupported("a virtual table".into()));
    }
    if !next(&mut at).is_some_and(|x| x.is_word("TABLE")) {
        return Err(bad("not a CREATE TABLE statement"));
    }
    // The name: [IF NOT EXISTS] [schema .] name, then "(" (or AS SELECT).
    loop {
        match next(&mut at) {
            Some(Token::Punct(b'(')) => break,
            Some(x) if x.is_word("AS") => {
                return Err(SqlError::Unsupported("CREATE TABLE … AS SELECT".into()))
            }
            Some(Token::Punct(b'.')) | Some(Token::Word(_)) | Some(Token::Quoted(_)) => {}
            _ => return Err(bad("no column list")),
        }
    }
    // Items: token ranges separated by top-level commas, up to the
    // matching ")".
    let mut items: Vec<&[Token<'_>]> = Vec::with_capacity(tokens.len() / 2);
    let mut depth = 0usize;
    let mut start = at;
    let mut end = None;
    while let Some(tok) = tokens.get(at) {
        match tok {
            Token::Punct(b'(') => depth += 1,
            Token::Punct(b')') if depth == 0 => {
                end = Some(at);
                break;
            }
            Token::Punct(b')') => depth -= 1,
            Token::Punct(b',') if depth == 0 => {
                items.push(tokens.get(start..at).unwrap_or_default());
                start = at + 1;
            }
            _ => {}
        }
        at += 1;
    }
    let Some(end) = end else {
        return Err(bad("unterminated column list"));
    };
    items.push(tokens.get(start..end).unwrap_or_default());
    // Table options: WITHOUT ROWID and STRICT.
    if tokens
        .get(end..)
        .unwrap_or_default()
        .iter()
        .any(|x| x.is_word("WITHOUT"))
    {
        return Err(SqlError::Unsupported("a WITHOUT ROWID table".into()));
    }
    let mut columns: Vec<Column<'_>> = Vec::with_capacity(items.len());
    let mut integer_type: Vec<bool> = Vec::with_capacity(items.len());
    let mut table_key: Option<&[Token<'_>]> = None;
    for item in &items {
        let Some(first) = item.first() else {
            return Err(bad("an empty column definition"));
        };
        if matches!(first, Token::Word(_))
            && TABLE_CONSTRAINT_WORDS.iter().any(|w| first.is_word(w))
        {
            // PRIMARY KEY (a, …) names the key columns.
            if let Some(p) = item.iter().position(|x| x.is_word("PRIMARY")) {
                let rest = item.get(p..).unwrap_or_default();
                let open = rest.iter().position(|x| *x == Token::Punct(b'('));
                let close = rest.iter().position(|x| *x == Token::Punct(b')'));
                if let (Some(o), Some(c)) = (open, close) {
                    table_key = rest.get(o + 1..c);
                }
            }
            continue;
        }
        let name = first
            .name()
            .ok_or_else(|| bad("a column definition without a name"))?;
        if columns.len() >= max_columns {
            return Err(SqlError::TooLarge(format!(
                "more than {max_columns} columns"
            )));
        }
        let rest = item.get(1..).unwrap_or_default();
        let type_end = rest
            .iter()
            .position(|x| {
                matches!(x, Token::Word(_)) && CONSTRAINT_WORDS.iter().any(|w| x.is_word(w))
            })
            .unwrap_or(rest.len());
        let type_words = rest.get(..type_end).unwrap_or_default();
        let constraints = rest.get(type_end..).unwrap_or_default();
        let name = match name {
            Cow::Borrowed(b) => String::from_utf8_lossy(b),
            Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v).into_owned()),
        };
        if constraints
            .iter()
            .any(|x| x.is_word("GENERATED") || x.is_word("AS"))
        {
            return Err(SqlError::Unsupported(format!("generated column {name}")));
        }
        let is_integer = matches!(type_words, [x] if x.is_word("INTEGER"));
        let primary = constraints.iter().position(|x| x.is_word("PRIMARY"));
        // The documented quirk: INTEGER PRIMARY KEY DESC is no rowid alias.
        let descending =
            primary.is_some_and(|p| constraints.get(p + 2).is_some_and(|x| x.is_word("DESC")));
        columns.push(Column {
            name,
            rowid_alias: is_integer && primary.is_some() && !descending,
            has_default: constraints.iter().any(|x| x.is_word("DEFAULT")),
        });
        integer_type.push(is_integer);
    }
    // PRIMARY KEY (k) on one INTEGER column makes it the rowid too.
    if let Some([key] | [key, Token::Word(_)]) = table_key {
        if let Some(key) = key.name() {
            let key = String::from_utf8_lossy(&key);
            let found = columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(&key));
            if let Some(i) = found {
                if integer_type.get(i) == Some(&true) {
                    if let Some(c) = columns.get_mut(i) {
                        c.rowid_alias = true;
                    }
                }
            }
        }
    }
    if columns.is_empty() {
        return Err(bad("no columns"));
    }
    // Two columns with one name cannot come from SQLite; for attribute
    // columns `Database::from_raw` refuses them, otherwise the first wins.
    Ok(columns)
}

/// A database file in memory, checked against its header.
pub(crate) struct File<'a> {
    data: &'a [u8],
    header: Header,
    page_count: u32,
    /// Pages already visited while reading this file (each page is part of
    /// exactly one B-tree or overflow chain).
    visited: Vec<bool>,
}

/// A row's payload: borrowed from its page, or assembled from overflow.
pub(crate) type Payload<'a> = Cow<'a, [u8]>;

impl<'a> File<'a> {
    /// Checks the header of `data`, the whole file.
    pub(crate) fn new(data: &'a [u8]) -> Result<File<'a>, SqlError> {
        let header = Header::parse(data)?;
        let in_file = u32::try_from(data.len() / header.page_size).unwrap_or(u32::MAX);
        let page_count = header.size_in_header.unwrap_or(in_file);
        if page_count > in_file {
            return malformed(format!(
                "the header counts {page_count} pages, the file holds {in_file}"
            ));
        }
        Ok(File {
            data,
            header,
            page_count,
            visited: vec![false; page_count as usize + 1],
        })
    }

    /// The usable bytes of page `n`, marked as visited; an error if it is
    /// out of range or was visited before.
    fn take_page(&mut self, n: u32, what: &str) -> Result<&'a [u8], SqlError> {
        if n == 0 || n > self.page_count {
            return malformed(format!(
                "{what} page {n} is out of range (1..={})",
                self.page_count
            ));
        }
        let seen = self
            .visited
            .get_mut(n as usize)
            .ok_or_else(|| SqlError::Malformed("page out of range".into()))?;
        if *seen {
            return malformed(format!("page {n} is used twice (a cycle?)"));
        }
        *seen = true;
        let start = (n as usize - 1) * self.header.page_size;
        let data: &'a [u8] = self.data;
        data.get(start..start + self.header.usable)
            .ok_or_else(|| SqlError::Malformed(format!("page {n} is past the end of the file")))
    }

    /// Calls `row(rowid, payload)` for every row of the table B-tree rooted
    /// at `root`, in rowid order.
    pub(crate) fn scan_table(
        &mut self,
        root: u32,
        row: &mut dyn FnMut(i64, Payload<'a>) -> Result<(), SqlError>,
    ) -> Result<(), SqlError> {
        // Pages still to read, with their depth; the next one on top.
        let mut stack: Vec<(u32, usize)> = vec![(root, 0)];
        let usable = self.header.usable;
        while let Some((n, depth)) = stack.pop() {
            if depth > MAX_DEPTH {
                return malformed(format!("a B-tree deeper than {MAX_DEPTH} levels"));
            }
            let page = self.take_page(n, "B-tree")?;
            let base = if n == 1 { HEADER_LEN } else { 0 };
            let kind = page.get(base).copied().unwrap_or(0);
            let header_len = match kind {
                0x0D => 8,
                0x05 => 12,
                _ => {
                    return malformed(format!(
                        "page {n} has type {kind:#04x}, not a table B-tree page"
                    ))
                }
            };
            let cells = usize::from(be16(page, base + 3).unwrap_or(0));
            let pointers = base + header_len;
            if pointers + 2 * cells > usable {
                return malformed(format!("page {n}: {cells} cells do not fit"));
            }
            if kind == 0x05 {
                let right = be32(page, base + 8).unwrap_or(0);
                stack.push((right, depth + 1));
                for i in (0..cells).rev() {
                    let at = usize::from(be16(page, pointers + 2 * i).unwrap_or(0));
                    if at < pointers + 2 * cells {
                        return malformed(format!("page {n}: cell {i} overlaps the header"));
                    }
                    let child = be32(page, at).ok_or_else(|| {
                        SqlError::Malformed(format!("page {n}: cell {i} past the page"))
                    })?;
                    stack.push((child, depth + 1));
                }
                continue;
            }
            for i in 0..cells {
                let at = usize::from(be16(page, pointers + 2 * i).unwrap_or(0));
                if at < pointers + 2 * cells || at >= usable {
                    return malformed(format!(
                        "page {n}: cell {i} at offset {at} is outside the cell area"
                    ));
                }
                let (rowid, payload) = self.leaf_cell(page, at, n)?;
                row(rowid, payload)?;
            }
        }
        Ok(())
    }

    /// A table leaf cell at `at` of `page` (number `n`): its rowid and payload.
    fn leaf_cell(
        &mut self,
        page: &'a [u8],
        at: usize,
        n: u32,
    ) -> Result<(i64, Payload<'a>), SqlError> {
        let bad = |what: &str| SqlError::Malformed(format!("page {n}: {what}"));
        let mut p = at;
        let size =
            varint(page, &mut p).ok_or_else(|| bad("a cell ends inside its payload size"))?;
        let rowid = varint(page, &mut p).ok_or_else(|| bad("a cell ends inside its rowid"))? as i64;
        let usable = self.header.usable;
        // Overflow room: the file cannot hold more than its pages do.
        let capacity = u64::from(self.page_count) * (usable as u64 - 4) + usable as u64;
        if size > capacity {
            return Err(bad(&format!(
                "a payload of {size} bytes is larger than the file"
            )));
        }
        let size = size as usize;
        // How much of the payload is stored in the cell (the file format's
        // rule for table leaves).
        let max_local = usable - 35;
        let local = if size <= max_local {
            size
        } else {
            let min_local = (usable - 12) * 32 / 255 - 23;
            let k = min_local + (size - min_local) % (usable - 4);
            if k <= max_local {
                k
            } else {
                min_local
            }
        };
        let local_bytes = page
            .get(p..p + local)
            .ok_or_else(|| bad("a cell's payload runs past the page"))?;
        if local == size {
            return Ok((rowid, Cow::Borrowed(local_bytes)));
        }
        let mut next = be32(page, p + local)
            .ok_or_else(|| bad("a cell's overflow pointer runs past the page"))?;
        let mut payload = Vec::with_capacity(size);
        payload.extend_from_slice(local_bytes);
        while payload.len() < size {
            if next == 0 {
                return Err(bad("an overflow chain ends before its payload"));
            }
            let over = self.take_page(next, "overflow")?;
            let chunk = (size - payload.len()).min(usable - 4);
            payload.extend_from_slice(over.get(4..4 + chunk).unwrap_or_default());
            next = be32(over, 0).unwrap_or(0);
        }
        Ok((rowid, Cow::Owned(payload)))
    }

    /// The root page and `CREATE TABLE` text of table `name` (compared
    /// case-insensitively, as SQL names are), from `sqlite_schema`.
    /// Reading the schema visits page 1 and the schema's own pages.
    pub(crate) fn schema(&mut self) -> Result<Vec<SchemaTable>, SqlError> {
        let mut tables = Vec::new();
        let mut fields = Vec::new();
        self.scan_table(1, &mut |_, payload| {
            decode_record(&payload, 16, &mut fields)?;
            let values: Vec<Value<'_>> = fields.iter().map(|f| f.value(&payload)).collect();
            if values.first() != Some(&Value::Text(b"table")) {
                return Ok(());
            }
            let text = |v: Option<&Value<'_>>| match v {
                Some(Value::Text(t)) => Some(String::from_utf8_lossy(t).into_owned()),
                _ => None,
            };
            let (Some(name), Some(sql)) = (text(values.get(1)), values.get(4)) else {
                return malformed("a schema row without a name");
            };
            let root = match values.get(3) {
                Some(&Value::Integer(r)) => u32::try_from(r).unwrap_or(0),
                _ => 0,
            };
            let sql = match sql {
                Value::Text(t) => t.to_vec(),
                _ => return malformed(format!("table {name} has no CREATE TABLE text")),
            };
            tables.push(SchemaTable { name, root, sql });
            Ok(())
        })?;
        Ok(tables)
    }
}

/// One `table` row of `sqlite_schema`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaTable {
    pub(crate) name: String,
    pub(crate) root: u32,
    pub(crate) sql: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::parse_key_db;
    use std::path::Path;

    /// A database SQLite makes from `sql`, at 512-byte pages.
    fn made_by_sqlite(sql: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.db");
        let c = rusqlite::Connection::open(&f).unwrap();
        c.execute_batch("PRAGMA page_size = 512;").unwrap();
        c.execute_batch(sql).unwrap();
        drop(c);
        std::fs::read(&f).unwrap()
    }

    const TABLES: &str =
        "CREATE TABLE nssPrivate (id PRIMARY KEY UNIQUE ON CONFLICT ABORT, a0, a11);
        CREATE TABLE metaData (id PRIMARY KEY UNIQUE ON CONFLICT REPLACE, item1, item2);";

    fn root_of(bytes: &[u8], table: &str) -> u32 {
        let mut f = File::new(bytes).unwrap();
        f.schema()
            .unwrap()
            .into_iter()
            .find(|t| t.name == table)
            .unwrap()
            .root
    }

    fn page_at(n: u32) -> usize {
        (n as usize - 1) * 512
    }

    fn err(bytes: &[u8]) -> String {
        match parse_key_db(Path::new("k.db"), bytes) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn varints() {
        let mut at = 0;
        assert_eq!(varint(&[0x7F], &mut at), Some(0x7F));
        assert_eq!(at, 1);
        at = 0;
        assert_eq!(varint(&[0x81, 0x00], &mut at), Some(0x80));
        at = 0;
        assert_eq!(varint(&[0xFF; 9], &mut at), Some(u64::MAX));
        assert_eq!(at, 9);
        at = 0;
        assert_eq!(varint(&[0x81, 0x81], &mut at), None);
    }

    #[test]
    fn records() {
        // Header 6: NULL, int8 -1, int48, blob 2, text 1; then the body.
        let rec = [6, 0, 1, 5, 16, 15, 0xFF, 0, 0, 0, 0, 1, 0, 0xAA, 0xBB, b'x'];
        let mut fields = Vec::new();
        decode_record(&rec, 10, &mut fields).unwrap();
        let values: Vec<Value<'_>> = fields.iter().map(|f| f.value(&rec)).collect();
        assert_eq!(
            values,
            [
                Value::Null,
                Value::Integer(-1),
                Value::Integer(0x100),
                Value::Blob(&[0xAA, 0xBB]),
                Value::Text(b"x")
            ]
        );
        assert!(
            decode_record(&rec[..15], 10, &mut fields).is_err(),
            "value past the end"
        );
        assert!(
            decode_record(&[2, 10], 10, &mut fields).is_err(),
            "reserved type"
        );
        assert!(
            decode_record(&[9, 0], 10, &mut fields).is_err(),
            "header past the record"
        );
        assert!(
            decode_record(&[3, 0x81], 10, &mut fields).is_err(),
            "varint past the header"
        );
        assert!(
            decode_record(&rec, 3, &mut fields).is_err(),
            "too many columns"
        );
        let huge = [10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(
            decode_record(&huge, 10, &mut fields).is_err(),
            "a 2^63-byte blob"
        );
    }

    #[test]
    fn create_table_columns() {
        let names = |sql: &str| -> Vec<(String, bool)> {
            parse_create_table(sql.as_bytes(), 100)
                .unwrap()
                .into_iter()
                .map(|c| (c.name.into_owned(), c.rowid_alias))
                .collect()
        };
        assert_eq!(
            names("CREATE TABLE nssPublic (id PRIMARY KEY UNIQUE ON CONFLICT ABORT, a0, a1)"),
            [
                ("id".into(), false),
                ("a0".into(), false),
                ("a1".into(), false)
            ]
        );
        assert_eq!(
            names("create temp table if not exists main.\"t\" (\"a\"\"b\" INTEGER PRIMARY KEY, [c d] text(1,2), `e`, CONSTRAINT x UNIQUE (e)) STRICT"),
            [("a\"b".into(), true), ("c d".into(), false), ("e".into(), false)]
        );
        assert_eq!(
            names("CREATE TABLE t (k INTEGER PRIMARY KEY DESC, v)"),
            [("k".into(), false), ("v".into(), false)]
        );
        assert_eq!(
            names("CREATE TABLE t (v, k integer, PRIMARY KEY (k))"),
            [("v".into(), false), ("k".into(), true)]
        );
        for bad in [
            "CREATE TABLE t",
            "CREATE TABLE t (a",
            "CREATE TABLE t ()",
            "CREATE INDEX i ON t (a)",
            "CREATE TABLE t (a '",
        ] {
            assert!(
                matches!(
                    parse_create_table(bad.as_bytes(), 100),
                    Err(SqlError::Malformed(_))
                ),
                "{bad}"
            );
        }
        for unsupported in [
            "CREATE TABLE t (a, b) WITHOUT ROWID",
            "CREATE TABLE t (a, b AS (a + 1))",
            "CREATE TABLE t AS SELECT 1",
            "CREATE VIRTUAL TABLE t USING fts5(a)",
        ] {
            assert!(
                matches!(
                    parse_create_table(unsupported.as_bytes(), 100),
                    Err(SqlError::Unsupported(_))
                ),
                "{unsupported}"
            );
        }
        assert!(matches!(
            parse_create_table(b"CREATE TABLE t (a, b, c)", 2),
            Err(SqlError::TooLarge(_))
        ));
    }

    #[test]
    fn header_checks() {
        let good = made_by_sqlite(TABLES);
        assert!(parse_key_db(Path::new("k.db"), &good).is_ok());
        let with = |at: usize, bytes: &[u8]| {
            let mut b = good.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            b
        };
        assert_eq!(Header::parse(&good[..99]), Err(SqlError::NotSqlite));
        assert_eq!(
            Header::parse(&with(0, b"SQLite format 2")),
            Err(SqlError::NotSqlite)
        );
        assert_eq!(Header::parse(&with(18, &[2, 2])), Err(SqlError::Wal));
        assert!(matches!(
            Header::parse(&with(18, &[1, 3])),
            Err(SqlError::Unsupported(_))
        ));
        for size in [[0x03, 0xE8], [0x01, 0x00], [0, 0], [0x80, 0x01]] {
            let e = Header::parse(&with(16, &size)).unwrap_err();
            assert!(
                matches!(&e, SqlError::Malformed(d) if d.contains("page size")),
                "{e:?}"
            );
        }
        assert_eq!(Header::parse(&with(16, &[0, 1])).unwrap().page_size, 65536);
        assert!(matches!(
            Header::parse(&with(20, &[33])),
            Err(SqlError::Malformed(_))
        ));
        assert_eq!(Header::parse(&with(20, &[32])).unwrap().usable, 480);
        assert!(matches!(
            Header::parse(&with(21, &[65])),
            Err(SqlError::Malformed(_))
        ));
        assert!(matches!(
            Header::parse(&with(56, &[0, 0, 0, 2])),
            Err(SqlError::Unsupported(_))
        ));
        assert!(matches!(
            Header::parse(&with(44, &[0, 0, 0, 5])),
            Err(SqlError::Unsupported(_))
        ));
        // More pages in the header than in the file.
        assert!(err(&good[..good.len() - 512]).contains("the header counts"));
        let e = err(&with(28, &[0, 0, 0x10, 0]));
        assert!(e.contains("the header counts 4096 pages"), "{e}");
    }

    #[test]
    fn hostile_btrees() {
        let good = made_by_sqlite(&format!(
            "{TABLES} INSERT INTO nssPrivate VALUES (1, x'00000003', zeroblob(3000));
             INSERT INTO nssPrivate VALUES (2, NULL, NULL);"
        ));
        let root = root_of(&good, "nssPrivate");
        let p = page_at(root);
        assert_eq!(good[p], 0x0D, "a leaf root");
        let cells = u16::from_be_bytes([good[p + 3], good[p + 4]]);
        assert_eq!(cells, 2);
        let first_cell = usize::from(u16::from_be_bytes([good[p + 8], good[p + 9]]));
        let set = |edits: &[(usize, &[u8])]| {
            let mut b = good.clone();
            for (at, bytes) in edits {
                b[*at..*at + bytes.len()].copy_from_slice(bytes);
            }
            b
        };
        // A cell pointer past the usable page, and into the header.
        assert!(err(&set(&[(p + 8, &[0x02, 0x00])])).contains("outside the cell area"));
        assert!(err(&set(&[(p + 8, &[0x00, 0x02])])).contains("outside the cell area"));
        // Too many cells for the page.
        assert!(err(&set(&[(p + 3, &[0x01, 0x00])])).contains("do not fit"));
        // Not a table page.
        assert!(err(&set(&[(p, &[0x0A])])).contains("not a table B-tree page"));
        // The root an interior page whose children are itself: a cycle.
        let interior = |right: &[u8]| set(&[(p, &[0x05]), (p + 3, &[0, 0]), (p + 8, right)]);
        let e = err(&interior(&root.to_be_bytes()));
        assert!(e.contains("used twice"), "{e}");
        // Children out of range.
        let e = err(&interior(&[0, 0, 0x7F, 0]));
        assert!(e.contains("out of range"), "{e}");
        let e = err(&interior(&[0, 0, 0, 0]));
        assert!(e.contains("out of range"), "{e}");
        // Cell 0 (the last written, at the lowest offset) is row 2 or 1:
        // find the overflowing one (payload varint 2 bytes, > 127).
        let second_cell = usize::from(u16::from_be_bytes([good[p + 10], good[p + 11]]));
        let big = [first_cell, second_cell]
            .into_iter()
            .find(|&c| good[p + c] & 0x80 != 0)
            .unwrap();
        let c = p + big;
        // Payload 3000 + header: varint 2 bytes; rowid 1 byte; then the
        // local part; the overflow pointer follows it.
        let size = (usize::from(good[c] & 0x7F) << 7) | usize::from(good[c + 1]);
        let usable = 512;
        let min_local = (usable - 12) * 32 / 255 - 23;
        let k = min_local + (size - min_local) % (usable - 4);
        let local = if k <= usable - 35 { k } else { min_local };
        let ptr_at = c + 3 + local;
        let first_overflow = u32::from_be_bytes(good[ptr_at..ptr_at + 4].try_into().unwrap());
        assert!(parse_key_db(Path::new("k.db"), &good).is_ok());
        // An overflow chain into itself, out of range, into the B-tree,
        // ending early, and a payload larger than the file.
        let o = page_at(first_overflow);
        let e = err(&set(&[(o, &first_overflow.to_be_bytes())]));
        assert!(e.contains("used twice"), "{e}");
        let e = err(&set(&[(ptr_at, &[0, 0, 0x7F, 0])]));
        assert!(e.contains("overflow page 32512 is out of range"), "{e}");
        let e = err(&set(&[(ptr_at, &root.to_be_bytes())]));
        assert!(e.contains("used twice"), "{e}");
        let e = err(&set(&[(o, &[0, 0, 0, 0])]));
        assert!(e.contains("ends before its payload"), "{e}");
        let e = err(&set(&[(c, &[0xFF, 0xFF, 0xFF, 0x7F])]));
        assert!(e.contains("larger than the file"), "{e}");
        // A cell whose varints run off the end of the page.
        let mut b = good.clone();
        let end = p + 510;
        b[p + 8..p + 10].copy_from_slice(&510u16.to_be_bytes());
        b[end] = 0xFF;
        b[end + 1] = 0xFF;
        assert!(err(&b).contains("ends inside its payload size"));
    }

    #[test]
    fn deep_trees_are_refused() {
        // Interior pages chained through their right pointers, 30 deep.
        let good = made_by_sqlite(TABLES);
        let mut b = good.clone();
        let start = b.len() / 512 + 1;
        let extra = 30u32;
        b.resize(b.len() + extra as usize * 512, 0);
        let root = root_of(&good, "nssPrivate");
        let mut chain: Vec<u32> = vec![root];
        chain.extend((0..extra).map(|i| start as u32 + i));
        for w in chain.windows(2) {
            let p = page_at(w[0]);
            b[p] = 0x05;
            b[p + 3..p + 5].copy_from_slice(&[0, 0]);
            b[p + 8..p + 12].copy_from_slice(&w[1].to_be_bytes());
        }
        // The header's page count, kept valid.
        let pages = (b.len() / 512) as u32;
        b[28..32].copy_from_slice(&pages.to_be_bytes());
        let e = err(&b);
        assert!(e.contains("deeper than 20"), "{e}");
    }

    #[test]
    fn missing_tables_and_columns() {
        let e = err(&made_by_sqlite("CREATE TABLE metaData (id, item1, item2);"));
        assert!(e.contains("no table nssPrivate"), "{e}");
        let e = err(&made_by_sqlite(
            "CREATE TABLE nssPrivate (a0); CREATE TABLE metaData (id, item1, item2);",
        ));
        assert!(e.contains("has no id column"), "{e}");
        let e = err(&made_by_sqlite(
            "CREATE TABLE nssPrivate (id, a0); CREATE TABLE metaData (id, item1);",
        ));
        assert!(e.contains("no column item2"), "{e}");
        let e = err(&made_by_sqlite(&format!(
            "{TABLES} INSERT INTO nssPrivate VALUES ('x', NULL, NULL);"
        )));
        assert!(e.contains("id is not an integer"), "{e}");
        let e = err(&made_by_sqlite(&format!(
            "{TABLES} INSERT INTO nssPrivate VALUES (1, NULL, NULL);
             ALTER TABLE nssPrivate ADD COLUMN a3 DEFAULT 'x';"
        )));
        assert!(e.contains("DEFAULT"), "{e}");
        let e = err(&made_by_sqlite(&format!(
            "{TABLES} INSERT INTO nssPrivate VALUES (1, zeroblob(1048577), NULL);"
        )));
        assert!(
            e.contains("nssPrivate row 1 column a0 is over 1048576 bytes"),
            "{e}"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        /// Damaged files give an error or a table, never a panic.
        #[test]
        fn damaged_files_never_panic(
            edits in proptest::collection::vec((0usize..6000, proptest::prelude::any::<u8>()), 1..8),
            cut in 0usize..7000,
        ) {
            thread_local! {
                static GOOD: Vec<u8> = made_by_sqlite(&format!(
                    "{TABLES} INSERT INTO nssPrivate VALUES (1, x'00000003', zeroblob(3000));
                     INSERT INTO nssPrivate VALUES (2, 'x', 7);
                     INSERT INTO metaData VALUES ('password', x'01', zeroblob(600));"
                ));
            }
            let mut b = GOOD.with(|g| g.clone());
            for (at, v) in edits {
                if let Some(x) = b.get_mut(at) {
                    *x = v;
                }
            }
            b.truncate(cut.max(100));
            let _ = parse_key_db(Path::new("k.db"), &b);
        }
    }
}
