//! APDU scripts: the pure parser and matcher (`parse`, [`Pattern`]), the
//! runner over any [`Target`], and the JUnit report.
//!
//! One item per line:
//!
//! ```text
//! 00 A4 04 00 07 A0000001 16DB00          send, print the response
//! 00 A4 04 00 07 A0000001 16DB00 => 90 00 send, assert the whole response
//! 00 CA 9F 7F 00 => 9F 7F XX * 90 00      XX: any byte; *: any bytes before the SW
//! reset | power-off | power-on | remove | insert | exit
//! expect-atr 3B 7A XX *                   assert the current ATR
//! # comment                               (also after an item)
//! ```
//!
//! pcsc-tools `scriptor` files run unchanged (hex with or without spaces,
//! `reset`, `exit`, `#` comments, a trailing `\` continues the line).

use std::fmt::{self, Write as _};

/// Scripts larger than this are refused before reading.
pub(crate) const MAX_SCRIPT: u64 = 16 << 20;
/// The longest command APDU (extended case 4: 4 + 3 + 65535 + 2).
const MAX_COMMAND: usize = 4 + 3 + 0xFFFF + 2;
/// The longest response pattern (65536 data bytes + SW).
const MAX_PATTERN: usize = 0x1_0000 + 2;

/// Why a script cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// 1-based line number.
    pub(crate) line: usize,
    /// What is wrong.
    pub(crate) message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// One byte position of a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatByte {
    /// Exactly this byte.
    Is(u8),
    /// `XX`: any byte.
    Any,
}

/// An expected response or ATR: bytes and `XX`, optionally one `*` that
/// stands for any bytes, followed by at most two positions (the SW).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    head: Vec<PatByte>,
    /// `Some(tail)` when the pattern has a `*`.
    tail: Option<Vec<PatByte>>,
}

fn pos_matches(p: &[PatByte], bytes: &[u8]) -> bool {
    p.len() == bytes.len()
        && p.iter().zip(bytes).all(|(p, b)| match p {
            PatByte::Is(x) => x == b,
            PatByte::Any => true,
        })
}

fn fmt_pos(p: &[PatByte], out: &mut String) {
    for b in p {
        if !out.is_empty() {
            out.push(' ');
        }
        match b {
            PatByte::Is(x) => {
                let _ = write!(out, "{x:02X}");
            }
            PatByte::Any => out.push_str("XX"),
        }
    }
}

impl Pattern {
    /// True when `bytes` is matched.
    pub(crate) fn matches(&self, bytes: &[u8]) -> bool {
        match &self.tail {
            None => pos_matches(&self.head, bytes),
            Some(tail) => {
                if bytes.len() < self.head.len() + tail.len() {
                    return false;
                }
                let (start, rest) = bytes.split_at(self.head.len());
                let end = rest.get(rest.len() - tail.len()..).unwrap_or_default();
                pos_matches(&self.head, start) && pos_matches(tail, end)
            }
        }
    }

    /// A pattern matching exactly `bytes`.
    #[cfg(test)]
    pub(crate) fn exact(bytes: &[u8]) -> Pattern {
        Pattern {
            head: bytes.iter().map(|b| PatByte::Is(*b)).collect(),
            tail: None,
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        fmt_pos(&self.head, &mut s);
        if let Some(tail) = &self.tail {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push('*');
            fmt_pos(tail, &mut s);
        }
        f.write_str(&s)
    }
}

/// What a script line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// Send a command; with `Some`, assert the response.
    Send {
        /// The command APDU.
        command: Vec<u8>,
        /// The expected response.
        expect: Option<Pattern>,
    },
    /// Warm reset.
    Reset,
    /// Power the card off.
    PowerOff,
    /// Power it on (cold reset).
    PowerOn,
    /// Assert the current ATR.
    ExpectAtr(Pattern),
    /// Take the card out of the reader.
    Remove,
    /// Put it back.
    Insert,
    /// Stop here (scriptor's `exit`).
    Exit,
}

/// A parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// 1-based line number (of the first line of a continued item).
    pub(crate) number: usize,
    /// The item.
    pub(crate) item: Item,
}

fn hex_val(c: char) -> Option<u8> {
    c.to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Parses hex with free whitespace into bytes.
pub(crate) fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!(
            "odd number of hex digits ({}) in \"{}\"",
            digits.len(),
            text.trim()
        ));
    }
    digits
        .chunks(2)
        .map(|pair| match pair {
            [a, b] => match (hex_val(*a), hex_val(*b)) {
                (Some(h), Some(l)) => Ok(h << 4 | l),
                _ => Err(format!("\"{a}{b}\" is not a hex byte")),
            },
            _ => Err("odd number of hex digits".into()),
        })
        .collect()
}

/// Parses an expectation: hex bytes, `XX`, one `*` followed by at most
/// two positions.
pub(crate) fn parse_pattern(text: &str) -> Result<Pattern, String> {
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut head = Vec::new();
    let mut tail: Option<Vec<PatByte>> = None;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == '*' {
            if tail.is_some() {
                return Err("more than one `*` in the expectation".into());
            }
            tail = Some(Vec::new());
            i += 1;
            continue;
        }
        let Some(&d) = chars.get(i + 1) else {
            return Err(format!("odd number of hex digits at \"{c}\""));
        };
        let pos = if c.eq_ignore_ascii_case(&'x') && d.eq_ignore_ascii_case(&'x') {
            PatByte::Any
        } else {
            match (hex_val(c), hex_val(d)) {
                (Some(h), Some(l)) => PatByte::Is(h << 4 | l),
                _ => return Err(format!("\"{c}{d}\" is neither a hex byte nor XX")),
            }
        };
        match &mut tail {
            Some(t) => t.push(pos),
            None => head.push(pos),
        }
        i += 2;
    }
    if let Some(t) = &tail {
        if t.len() > 2 {
            return Err(format!(
                "`*` must be followed by the status word only (at most 2 bytes), not {}",
                t.len()
            ));
        }
    }
    if head.len() + tail.as_ref().map_or(0, Vec::len) > MAX_PATTERN {
        return Err("expectation longer than any response".into());
    }
    if head.is_empty() && tail.is_none() {
        return Err("empty expectation".into());
    }
    Ok(Pattern { head, tail })
}

fn parse_command(text: &str) -> Result<Vec<u8>, String> {
    let cmd = parse_hex(text)?;
    if cmd.len() < 4 {
        return Err(format!(
            "a command needs at least CLA INS P1 P2 (4 bytes), got {}",
            cmd.len()
        ));
    }
    if cmd.len() > MAX_COMMAND {
        return Err(format!(
            "a command is at most {MAX_COMMAND} bytes, got {}",
            cmd.len()
        ));
    }
    Ok(cmd)
}

fn parse_item(text: &str) -> Result<Item, String> {
    let (word, rest) = match text.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (text, ""),
    };
    let lower = word.to_ascii_lowercase();
    let directive = match lower.as_str() {
        "reset" => Some(Item::Reset),
        "power-off" => Some(Item::PowerOff),
        "power-on" => Some(Item::PowerOn),
        "remove" => Some(Item::Remove),
        "insert" => Some(Item::Insert),
        "exit" => Some(Item::Exit),
        "expect-atr" => {
            if rest.is_empty() {
                return Err("expect-atr needs an ATR pattern".into());
            }
            return parse_pattern(rest)
                .map(Item::ExpectAtr)
                .map_err(|e| format!("expect-atr: {e}"));
        }
        _ => None,
    };
    if let Some(d) = directive {
        if !rest.is_empty() {
            return Err(format!("`{lower}` takes no argument (got \"{rest}\")"));
        }
        return Ok(d);
    }
    let (command, expect) = match text.split_once("=>") {
        Some((c, e)) => {
            if e.contains("=>") {
                return Err("more than one `=>`".into());
            }
            let e = e.trim();
            if e.is_empty() {
                return Err("`=>` needs an expected response".into());
            }
            (
                c,
                Some(parse_pattern(e).map_err(|m| format!("expected response: {m}"))?),
            )
        }
        None => (text, None),
    };
    if command.trim().is_empty() {
        return Err("missing command before `=>`".into());
    }
    let command = parse_command(command).map_err(|m| {
        if command
            .chars()
            .any(|c| c.is_ascii_alphabetic() && !c.is_ascii_hexdigit())
        {
            format!(
                "unknown directive or bad command \"{}\": {m}",
                command.trim()
            )
        } else {
            format!("command: {m}")
        }
    })?;
    Ok(Item::Send { command, expect })
}

/// Parses a whole script. Every error names its line.
pub(crate) fn parse(text: &str) -> Result<Vec<Line>, ParseError> {
    let mut lines = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        let content = match raw.find('#') {
            Some(at) => raw.get(..at).unwrap_or_default(),
            None => raw,
        };
        let content = content.trim();
        let (start, mut joined) = match pending.take() {
            Some((start, mut acc)) => {
                acc.push(' ');
                (start, acc)
            }
            None => (number, String::new()),
        };
        if let Some(cont) = content.strip_suffix('\\') {
            joined.push_str(cont);
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(content);
        let joined = joined.trim();
        if joined.is_empty() {
            continue;
        }
        let item = parse_item(joined).map_err(|message| ParseError {
            line: start,
            message,
        })?;
        lines.push(Line {
            number: start,
            item,
        });
    }
    if let Some((start, _)) = pending {
        return Err(ParseError {
            line: start,
            message: "the file ends inside a `\\` continuation".into(),
        });
    }
    Ok(lines)
}

/// Space-separated upper-case hex.
pub(crate) fn spaced(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for b in bytes {
        if !s.is_empty() {
            s.push(' ');
        }
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// What a script runs against.
pub(crate) trait Target {
    /// One command, the card's raw response (data and SW).
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, String>;
    /// Warm reset; the ATR.
    fn reset(&mut self) -> Result<Vec<u8>, String>;
    /// Power off.
    fn power_off(&mut self) -> Result<(), String>;
    /// Power on; the ATR.
    fn power_on(&mut self) -> Result<Vec<u8>, String>;
    /// The current ATR.
    fn atr(&mut self) -> Result<Vec<u8>, String>;
    /// Take the card out.
    fn remove(&mut self) -> Result<(), String>;
    /// Put the card back (and power it, as a reader does).
    fn insert(&mut self) -> Result<(), String>;
}

/// One assertion's (or failed step's) outcome.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    /// Script line.
    pub(crate) line: usize,
    /// What was checked (`00 A4 … => 90 00`).
    pub(crate) name: String,
    /// `None` when it passed, else why it failed.
    pub(crate) failure: Option<String>,
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Every assertion and every failed step, in order.
    pub(crate) cases: Vec<Case>,
}

impl Report {
    pub(crate) fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_none()).count()
    }
    pub(crate) fn failed(&self) -> usize {
        self.cases.iter().filter(|c| c.failure.is_some()).count()
    }
}

/// Runs `lines` against `target`, printing the transcript to `out`.
pub(crate) fn run(lines: &[Line], target: &mut dyn Target, out: &mut dyn std::io::Write) -> Report {
    let mut report = Report::default();
    let say = |out: &mut dyn std::io::Write, s: &str| {
        let _ = writeln!(out, "{s}");
    };
    for line in lines {
        let n = line.number;
        let (name, outcome): (String, Result<Option<String>, String>) = match &line.item {
            Item::Exit => {
                say(out, "> EXIT");
                break;
            }
            Item::Send { command, expect } => {
                say(out, &format!("> {}", spaced(command)));
                let name = match expect {
                    Some(p) => format!("{} => {p}", spaced(command)),
                    None => spaced(command),
                };
                let outcome = target.transmit(command).map(|resp| {
                    say(out, &format!("< {}", spaced(&resp)));
                    match expect {
                        Some(p) if !p.matches(&resp) => {
                            Some(format!("expected {p}\n  got      {}", spaced(&resp)))
                        }
                        _ => None,
                    }
                });
                if expect.is_none() && outcome.is_ok() {
                    continue;
                }
                (name, outcome)
            }
            Item::ExpectAtr(p) => {
                say(out, "> ATR?");
                let outcome = target.atr().map(|atr| {
                    say(out, &format!("< {}", spaced(&atr)));
                    (!p.matches(&atr))
                        .then(|| format!("expected ATR {p}\n  got          {}", spaced(&atr)))
                });
                (format!("expect-atr {p}"), outcome)
            }
            Item::Reset | Item::PowerOn => {
                let (word, result) = if line.item == Item::Reset {
                    ("reset", target.reset())
                } else {
                    ("power-on", target.power_on())
                };
                say(out, &format!("> {}", word.to_ascii_uppercase()));
                match result {
                    Ok(atr) => {
                        say(out, &format!("< {}", spaced(&atr)));
                        continue;
                    }
                    Err(e) => (word.to_owned(), Err(e)),
                }
            }
            Item::PowerOff | Item::Remove | Item::Insert => {
                let (word, result) = match line.item {
                    Item::PowerOff => ("power-off", target.power_off()),
                    Item::Remove => ("remove", target.remove()),
                    _ => ("insert", target.insert()),
                };
                say(out, &format!("> {}", word.to_ascii_uppercase()));
                match result {
                    Ok(()) => continue,
                    Err(e) => (word.to_owned(), Err(e)),
                }
            }
        };
        let failure = match outcome {
            Ok(None) => None,
            Ok(Some(mismatch)) => Some(mismatch),
            Err(e) => Some(format!("error: {e}")),
        };
        if let Some(f) = &failure {
            say(out, &format!("line {n}: FAILED: {name}\n  {f}"));
        }
        report.cases.push(Case {
            line: n,
            name,
            failure,
        });
    }
    say(
        out,
        &format!("{} passed, {} failed", report.passed(), report.failed()),
    );
    report
}

/// Escapes text for XML attributes and content; characters XML 1.0 cannot
/// carry become U+FFFD.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The report as a JUnit XML document (one testcase per assertion).
pub(crate) fn junit(suite: &str, report: &Report) -> String {
    let suite = xml_escape(suite);
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites><testsuite name=\"{suite}\" tests=\"{}\" failures=\"{}\" errors=\"0\">",
        report.cases.len(),
        report.failed()
    );
    for c in &report.cases {
        let name = xml_escape(&format!("line {}: {}", c.line, c.name));
        match &c.failure {
            None => {
                let _ = writeln!(x, "  <testcase classname=\"{suite}\" name=\"{name}\"/>");
            }
            Some(f) => {
                let first = f.lines().next().unwrap_or_default();
                let _ = writeln!(
                    x,
                    "  <testcase classname=\"{suite}\" name=\"{name}\"><failure message=\"{}\">{}</failure></testcase>",
                    xml_escape(first),
                    xml_escape(f)
                );
            }
        }
    }
    x.push_str("</testsuite></testsuites>\n");
    x
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn one(text: &str) -> Item {
        let lines = parse(text).unwrap();
        assert_eq!(lines.len(), 1, "{text}");
        lines[0].item.clone()
    }

    fn err(text: &str) -> ParseError {
        parse(text).unwrap_err()
    }

    #[test]
    fn plain_commands_with_and_without_spaces() {
        let want = Item::Send {
            command: vec![0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00],
            expect: None,
        };
        assert_eq!(one("00 A4 04 00 02 3F 00"), want);
        assert_eq!(one("00A4040002 3F00"), want);
        assert_eq!(one("  00a4 0400023f00   # trailing comment"), want);
        assert_eq!(one("0 0A4040002 3F00"), want, "spaces are free");
    }

    #[test]
    fn expectations() {
        let Item::Send { command, expect } = one("00 C0 00 00 00 => 6A 88") else {
            panic!()
        };
        assert_eq!(command, [0x00, 0xC0, 0x00, 0x00, 0x00]);
        let p = expect.unwrap();
        assert!(p.matches(&[0x6A, 0x88]));
        assert!(!p.matches(&[0x6A, 0x82]));
        assert!(!p.matches(&[0x01, 0x6A, 0x88]), "whole response");
        assert_eq!(p.to_string(), "6A 88");

        let Item::Send { expect, .. } = one("00CA9F7F00 => 9F 7F xx * 90 00") else {
            panic!()
        };
        let p = expect.unwrap();
        assert_eq!(p.to_string(), "9F 7F XX * 90 00");
        assert!(p.matches(&[0x9F, 0x7F, 0x2D, 0x90, 0x00]));
        assert!(p.matches(&[0x9F, 0x7F, 0x2D, 1, 2, 3, 0x90, 0x00]));
        assert!(!p.matches(&[0x9F, 0x7F, 0x90, 0x00]), "XX needs a byte");
        assert!(!p.matches(&[0x9F, 0x7F, 0x2D, 1, 0x6A, 0x82]));

        let p = parse_pattern("*").unwrap();
        assert!(p.matches(&[]) && p.matches(&[1, 2, 3]));
        let p = parse_pattern("* 61 XX").unwrap();
        assert!(p.matches(&[0x61, 0x10]) && p.matches(&[7, 0x61, 0]));
        assert!(!p.matches(&[0x90, 0x00]));
    }

    #[test]
    fn directives() {
        assert_eq!(one("reset"), Item::Reset);
        assert_eq!(one("RESET"), Item::Reset);
        assert_eq!(one("power-off"), Item::PowerOff);
        assert_eq!(one("power-on"), Item::PowerOn);
        assert_eq!(one("remove"), Item::Remove);
        assert_eq!(one("insert"), Item::Insert);
        assert_eq!(one("exit"), Item::Exit);
        let Item::ExpectAtr(p) = one("expect-atr 3B 7A 18 *") else {
            panic!()
        };
        assert!(p.matches(&[0x3B, 0x7A, 0x18, 0x00]));
        assert!(!p.matches(&[0x3B, 0x7B, 0x18]));
    }

    #[test]
    fn comments_blank_lines_continuations_and_line_numbers() {
        let lines =
            parse("# header\n\n   \nreset\n00 A4 04 00 \\\n 02 3F 00 => 90 00\n# end\nexit\n")
                .unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!((lines[0].number, &lines[0].item), (4, &Item::Reset));
        assert_eq!(lines[1].number, 5);
        assert_eq!(
            lines[1].item,
            Item::Send {
                command: vec![0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00],
                expect: Some(Pattern::exact(&[0x90, 0x00])),
            }
        );
        assert_eq!((lines[2].number, &lines[2].item), (8, &Item::Exit));
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let cases = [
            ("reset\n00 A4 0", 2, "odd number of hex digits"),
            ("00 A4 04 0G", 1, "\"0G\" is not a hex byte"),
            ("00 A4", 1, "at least CLA INS P1 P2"),
            ("\n\n00 A4 04 00 =>", 3, "needs an expected response"),
            ("00 A4 04 00 => 90 0", 1, "odd number of hex digits"),
            ("00 A4 04 00 => 9G 00", 1, "neither a hex byte nor XX"),
            ("00 A4 04 00 => * 90 * 00", 1, "more than one `*`"),
            ("00 A4 04 00 => 90 * 01 02 03", 1, "status word only"),
            ("00 A4 04 00 => 90 00 => 90 00", 1, "more than one `=>`"),
            ("=> 90 00", 1, "missing command"),
            ("reset now", 1, "takes no argument"),
            ("expect-atr", 1, "needs an ATR pattern"),
            ("expect-atr 3B Z", 1, "expect-atr"),
            ("frobnicate", 1, "unknown directive"),
            ("00 A4 04 00 \\", 1, "ends inside"),
        ];
        for (text, line, needle) in cases {
            let e = err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")));
        }
        let long = format!("00 D6 00 00 {}", "00".repeat(MAX_COMMAND));
        assert!(err(&long).message.contains("at most"));
    }

    /// A card that answers from a table.
    struct Fake {
        atr: Vec<u8>,
        powered: bool,
        present: bool,
        log: Vec<String>,
    }

    impl Target for Fake {
        fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, String> {
            if !self.present || !self.powered {
                return Err("no powered card".into());
            }
            Ok(match command.get(1) {
                Some(0xA4) => vec![0x6F, 0x00, 0x90, 0x00],
                _ => vec![0x6D, 0x00],
            })
        }
        fn reset(&mut self) -> Result<Vec<u8>, String> {
            self.log.push("reset".into());
            Ok(self.atr.clone())
        }
        fn power_off(&mut self) -> Result<(), String> {
            self.powered = false;
            Ok(())
        }
        fn power_on(&mut self) -> Result<Vec<u8>, String> {
            self.powered = true;
            Ok(self.atr.clone())
        }
        fn atr(&mut self) -> Result<Vec<u8>, String> {
            Ok(self.atr.clone())
        }
        fn remove(&mut self) -> Result<(), String> {
            self.present = false;
            Ok(())
        }
        fn insert(&mut self) -> Result<(), String> {
            self.present = true;
            self.powered = true;
            Ok(())
        }
    }

    fn fake() -> Fake {
        Fake {
            atr: vec![0x3B, 0x00],
            powered: true,
            present: true,
            log: Vec::new(),
        }
    }

    #[test]
    fn runner_counts_and_reports_lines() {
        let script = "expect-atr 3B 00\n00 A4 04 00 => 6F 00 90 00\n00 B0 00 00 => 90 00\n\
                      power-off\n00 A4 04 00 => 6F 00 90 00\npower-on\nremove\ninsert\n\
                      00 A4 04 00 => * 90 00\nreset\nexit\n00 A4 04 00 => 00\n";
        let lines = parse(script).unwrap();
        let mut out = Vec::new();
        let mut card = fake();
        let report = run(&lines, &mut card, &mut out);
        let out = String::from_utf8(out).unwrap();
        assert_eq!((report.passed(), report.failed()), (3, 2), "{out}");
        assert!(out.ends_with("3 passed, 2 failed\n"), "{out}");
        assert!(
            out.contains(
                "line 3: FAILED: 00 B0 00 00 => 90 00\n  expected 90 00\n  got      6D 00"
            ),
            "{out}"
        );
        assert!(out.contains("line 5: FAILED"), "{out}");
        assert!(out.contains("error: no powered card"), "{out}");
        assert_eq!(card.log, ["reset"], "exit stops the script");
        let xml = junit("t<&>\"'\u{1}.script", &report);
        assert!(xml.contains("name=\"t&lt;&amp;&gt;&quot;&apos;\u{FFFD}.script\""));
        assert_eq!(xml.matches("<testcase ").count(), 5);
        assert_eq!(xml.matches("<failure ").count(), 2);
        assert!(xml.contains("tests=\"5\" failures=\"2\""));
    }
}
