//! Helpers shared by the benchmarks: cards built from seeded test PKIs,
//! the APDU sequences clients send (the recorded OpenSC session, SIGN
//! chains), and [`Client`], an OpenSC-like host that binds to any card
//! reachable through a transmit function — ours or libcacard.
//!
//! ```text
//!  opensc-bind-apdus.txt ──► session_commands / bind_commands ──► replay
//!  Client::adaptive_bind ──► tx(&[u8], &mut Vec<u8>) ──► cac::Card, libcacard, pcscd…
//! ```
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use cac::keys::{load_private_key, KeyBackend};
use cac::{Card, Identity, Pin, PinPolicy};
use certs_fixtures::{IdentitySpec, KeyType, PkiBuilder, Role};
use rand_core::SeedableRng;

/// The PIN of every benchmark card.
pub const PIN: &str = "12345678";

/// A card with one identity of `key_type`, keys loaded through `backend`.
pub fn card_with_key(key_type: KeyType, backend: &dyn KeyBackend, seed: u64) -> Card {
    let pki = PkiBuilder::new(seed)
        .identity(IdentitySpec::new(
            Role::Authentication,
            key_type,
            "BENCH.CARD",
        ))
        .build()
        .unwrap();
    let cred = pki.identities()[0].credential();
    let key = load_private_key(backend, cred.key_der()).unwrap();
    let mut card = Card::builder(PinPolicy::new(Pin::new(PIN).unwrap()))
        .identity(Identity::new(cred.cert_der().to_vec(), key))
        .build(rand_chacha::ChaCha20Rng::seed_from_u64(seed))
        .unwrap();
    card.power_on();
    card
}

/// The embedded default card, powered on.
pub fn default_card() -> Card {
    let files = certs_fixtures::default_card::files();
    let mut read = |name: &str| {
        files
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.to_vec())
            .ok_or_else(|| name.to_owned())
    };
    let mut card = cac::config::load_card(
        certs_fixtures::default_card::CARD_TOML,
        &mut read,
        &cac::keys::RustCrypto,
        rand_chacha::ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    card.power_on();
    card
}

/// Selects PKI applet 0 and verifies the PIN.
pub fn login(card: &mut Card) {
    let r = card.transmit_vec(&[
        0x00, 0xA4, 0x04, 0x0C, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00,
    ]);
    assert_eq!(r, [0x90, 0x00]);
    let mut verify = vec![0x00, 0x20, 0x00, 0x00, 0x08];
    verify.extend_from_slice(PIN.as_bytes());
    assert_eq!(card.transmit_vec(&verify), [0x90, 0x00]);
}

/// The SIGN APDUs for a `len`-byte block: 240-byte chunks
/// with P1=80, the rest with P1=00, T=1 style (Le on the last).
pub fn sign_apdus(block: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunks = block.chunks(240).peekable();
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let mut apdu = vec![
            0x00,
            0x42,
            if last { 0x00 } else { 0x80 },
            0x00,
            chunk.len() as u8,
        ];
        apdu.extend_from_slice(chunk);
        if last {
            apdu.push(0x00);
        }
        out.push(apdu);
    }
    out
}

/// A PKCS#1 v1.5 signature block of `len` bytes (content irrelevant, < n).
pub fn signature_block(len: usize) -> Vec<u8> {
    let mut block = vec![0x00, 0x01];
    block.resize(len - 20, 0xFF);
    block.push(0x00);
    block.resize(len, 0x42);
    block
}

/// Runs one SIGN through the card and returns the length of the result
/// (signature and final status word), following `61 xx` with GET RESPONSE
/// as OpenSC does when the result is longer than 256 bytes (RSA-3072 and
/// up) or the chain was sent T=0 style.
pub fn sign_once(card: &mut Card, apdus: &[Vec<u8>], response: &mut Vec<u8>) -> usize {
    for apdu in apdus {
        response.clear();
        card.transmit(apdu, response);
    }
    let mut total = response.len();
    while let [.., 0x61, le] = response[..] {
        response.clear();
        card.transmit(&[0x00, 0xC0, 0x00, 0x00, le], response);
        total += response.len() - 2;
    }
    assert_eq!(&response[response.len() - 2..], [0x90, 0x00]);
    total
}

/// The SIGN APDUs OpenSC sends under T=0 (the DoD ATR): 240-byte chunks
/// with P1=80, the last with P1=00 and no Le; the card answers `61 xx`
/// and the result comes with GET RESPONSE. This is the exact sequence of
/// the recorded session; the last element is the GET RESPONSE.
pub fn sign_apdus_t0(block: &[u8]) -> Vec<Vec<u8>> {
    let mut out = sign_apdus(block);
    if let Some(last) = out.last_mut() {
        last.pop();
    }
    out.push(vec![0x00, 0xC0, 0x00, 0x00, 0x00]);
    out
}

/// The recorded OpenSC 0.23 session (`opensc-tool`, `pkcs15-tool`,
/// `pkcs11-tool` including signatures and decryptions): one exchange per
/// line, `<command hex> <response hex>`, as libcacard answered.
pub const OPENSC_SESSION: &str = include_str!("../data/opensc-bind-apdus.txt");

/// Every command of [`OPENSC_SESSION`], in order.
pub fn session_commands() -> Vec<Vec<u8>> {
    OPENSC_SESSION
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| unhex(l.split_whitespace().next().unwrap_or_default()))
        .collect()
}

/// The bind transcript: [`session_commands`] less the private-key
/// operations (every SIGN/DECRYPT chunk, INS `42`, and the GET RESPONSE
/// that fetches its result). What remains is card discovery, the
/// certificate and container reads, PIN checks and the probes for other
/// card types — the APDUs whose cost is the card's own, not RSA's.
pub fn bind_commands() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut after_key_op = false;
    for cmd in session_commands() {
        let ins = cmd.get(1).copied();
        if ins == Some(0x42) || (after_key_op && ins == Some(0xC0)) {
            after_key_op = true;
            continue;
        }
        after_key_op = false;
        out.push(cmd);
    }
    out
}

/// Decodes hex (no separators). Panics on malformed input: only used on
/// the committed transcript.
pub fn unhex(s: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not hex: {s}"),
    };
    assert!(s.len().is_multiple_of(2), "odd hex length: {s}");
    s.as_bytes()
        .chunks(2)
        .map(|p| digit(p[0]) << 4 | digit(p[1]))
        .collect()
}

/// Sends every command through `tx` (response buffer cleared before
/// each) and returns how many were sent.
pub fn replay(
    commands: &[Vec<u8>],
    tx: &mut impl FnMut(&[u8], &mut Vec<u8>),
    response: &mut Vec<u8>,
) -> usize {
    for cmd in commands {
        response.clear();
        tx(cmd, response);
    }
    commands.len()
}

/// What [`Client::adaptive_bind`] read from a card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindReport {
    /// Card ID (CCC tag `F0`), if present.
    pub card_id: Vec<u8>,
    /// Applets selected from the CCC's CardURLs (PKI and generic).
    pub applets: usize,
    /// The V-buffer of every PKI applet (CertInfo byte, then the
    /// certificate), in CardURL order.
    pub certificates: Vec<Vec<u8>>,
    /// Buffer bytes read (T and V, every applet, CCC included).
    pub bytes: usize,
}

/// Largest READ BUFFER chunk, as OpenSC reads.
pub const READ_CHUNK: usize = 240;

/// An OpenSC-like host: sends APDUs through a transmit function, follows
/// `61 xx` with GET RESPONSE and `6C xx` with a resend, and counts every
/// APDU it sends. Buffers are reused, so a bind allocates only what it
/// keeps.
pub struct Client<F> {
    tx: F,
    apdus: usize,
    cmd: Vec<u8>,
    rsp: Vec<u8>,
}

impl<F: FnMut(&[u8], &mut Vec<u8>)> Client<F> {
    /// A client over `tx`, which must append the response APDU (data and
    /// SW1 SW2) to its second argument.
    pub fn new(tx: F) -> Client<F> {
        Client {
            tx,
            apdus: 0,
            cmd: Vec::with_capacity(300),
            rsp: Vec::with_capacity(300),
        }
    }

    /// APDUs sent so far.
    pub fn apdus(&self) -> usize {
        self.apdus
    }

    /// Sends `cmd`; appends the response data (after any GET RESPONSE
    /// round trips) to `data` and returns the final status word.
    pub fn exchange(&mut self, cmd: &[u8], data: &mut Vec<u8>) -> u16 {
        self.cmd.clear();
        self.cmd.extend_from_slice(cmd);
        loop {
            self.rsp.clear();
            (self.tx)(&self.cmd, &mut self.rsp);
            self.apdus += 1;
            let n = self.rsp.len();
            assert!(n >= 2, "response without a status word");
            let (sw1, sw2) = (self.rsp[n - 2], self.rsp[n - 1]);
            data.extend_from_slice(&self.rsp[..n - 2]);
            match sw1 {
                0x61 => {
                    self.cmd.clear();
                    self.cmd.extend_from_slice(&[0x00, 0xC0, 0x00, 0x00, sw2]);
                }
                0x6C if self.cmd.len() >= 4 => {
                    // Resend with Le = SW2: replace a trailing Le, or add one.
                    match self.cmd.len() {
                        4 => self.cmd.push(sw2),
                        5 => self.cmd[4] = sw2,
                        len => {
                            let lc = usize::from(self.cmd[4]);
                            if len == 5 + lc {
                                self.cmd.push(sw2);
                            } else {
                                self.cmd[len - 1] = sw2;
                            }
                        }
                    }
                }
                _ => return u16::from_be_bytes([sw1, sw2]),
            }
        }
    }

    /// Reads buffer `kind` (1 = T, 2 = V) of the selected object as OpenSC
    /// does: its 2-byte length first, then the body in 240-byte chunks.
    /// Appends the body to `out`; returns false if the card refused.
    pub fn read_buffer(&mut self, kind: u8, out: &mut Vec<u8>) -> bool {
        let mut len = Vec::with_capacity(2);
        if self.exchange(&[0x00, 0x52, 0x00, 0x00, 0x02, kind, 0x02], &mut len) != 0x9000
            || len.len() != 2
        {
            return false;
        }
        let total = 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
        let mut offset = 2;
        while offset < total {
            let count = (total - offset).min(READ_CHUNK) as u8;
            let [hi, lo] = (offset as u16).to_be_bytes();
            let before = out.len();
            if self.exchange(&[0x00, 0x52, hi, lo, 0x02, kind, count], out) != 0x9000 {
                return false;
            }
            let got = out.len() - before;
            if got == 0 {
                return false;
            }
            offset += got;
        }
        true
    }

    /// What OpenSC's CAC driver does when it binds: select the CCC, read
    /// its T and V buffers by the lengths the card reports, then for each
    /// PKI or generic-container CardURL select the applet and its object,
    /// GET PROPERTIES, and read both buffers; finally ask the PIN status.
    /// Every length comes from the card, so this reads each certificate
    /// whole whatever its size.
    pub fn adaptive_bind(&mut self) -> BindReport {
        let mut report = BindReport::default();
        let mut scratch = Vec::with_capacity(64);
        let ccc = [
            0x00, 0xA4, 0x04, 0x0C, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00,
        ];
        if self.exchange(&ccc, &mut scratch) != 0x9000 {
            return report;
        }
        let (mut t, mut v) = (Vec::with_capacity(128), Vec::with_capacity(512));
        if !self.read_buffer(1, &mut t) || !self.read_buffer(2, &mut v) {
            return report;
        }
        report.bytes += t.len() + v.len();
        let mut urls = Vec::new();
        for (tag, value) in simple_tlv_tv(&t, &v) {
            match tag {
                0xF0 => report.card_id = value.to_vec(),
                0xF3 if value.len() >= 10 => urls.push(value[..10].to_vec()),
                _ => {}
            }
        }
        for url in &urls {
            let (rid, app_type, oid, app_id) = (&url[..5], url[5], &url[6..8], &url[8..10]);
            if !matches!(app_type, 0x01 | 0x04) {
                continue;
            }
            let mut select = vec![0x00, 0xA4, 0x04, 0x00, 0x07];
            select.extend_from_slice(rid);
            select.extend_from_slice(app_id);
            scratch.clear();
            if self.exchange(&select, &mut scratch) != 0x9000 {
                continue;
            }
            report.applets += 1;
            scratch.clear();
            let select_object = [0x00, 0xA4, 0x02, 0x00, 0x02, oid[0], oid[1]];
            if self.exchange(&select_object, &mut scratch) != 0x9000 {
                continue;
            }
            scratch.clear();
            self.exchange(&[0x00, 0x56, 0x01, 0x00, 0xFF], &mut scratch);
            let mut t = Vec::with_capacity(16);
            let mut v = Vec::with_capacity(2048);
            let ok = self.read_buffer(1, &mut t) && self.read_buffer(2, &mut v);
            report.bytes += t.len() + v.len();
            if ok && app_type == 0x04 {
                report.certificates.push(v);
            }
        }
        scratch.clear();
        self.exchange(&[0x00, 0x20, 0x00, 0x00, 0x00], &mut scratch);
        report
    }
}

/// Walks a SimpleTLV pair of T-buffer (tags and lengths) and V-buffer
/// (values), stopping at the first malformed entry.
pub fn simple_tlv_tv<'v>(t: &[u8], v: &'v [u8]) -> Vec<(u8, &'v [u8])> {
    let mut out = Vec::new();
    let (mut ti, mut vi) = (0, 0);
    while let Some(&tag) = t.get(ti) {
        let len = match t.get(ti + 1) {
            Some(&0xFF) => match (t.get(ti + 2), t.get(ti + 3)) {
                (Some(&lo), Some(&hi)) => {
                    ti += 4;
                    usize::from(u16::from_le_bytes([lo, hi]))
                }
                _ => break,
            },
            Some(&l) => {
                ti += 2;
                usize::from(l)
            }
            None => break,
        };
        let Some(value) = v.get(vi..vi + len) else {
            break;
        };
        out.push((tag, value));
        vi += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_splits_into_bind_and_key_operations() {
        let all = session_commands();
        let bind = bind_commands();
        assert_eq!(all.len(), 656);
        assert!(bind.iter().all(|c| c[1] != 0x42));
        // 62 SIGN/DECRYPT chunks and 31 GET RESPONSEs for their results.
        assert_eq!(all.len() - bind.len(), 62 + 31);
    }

    #[test]
    fn adaptive_bind_reads_every_certificate_of_the_default_card() {
        let mut card = default_card();
        let mut client = Client::new(|c: &[u8], r: &mut Vec<u8>| card.transmit(c, r));
        let report = client.adaptive_bind();
        let apdus = client.apdus();
        assert_eq!(report.applets, 3);
        assert_eq!(report.certificates.len(), 3);
        for v in &report.certificates {
            assert_eq!(v[0], 0x00, "CertInfo: uncompressed");
            assert_eq!(v[1..3], [0x30, 0x82], "DER SEQUENCE, 2-byte length");
            assert_eq!(
                4 + usize::from(u16::from_be_bytes([v[3], v[4]])),
                v.len() - 1
            );
        }
        assert_eq!(report.card_id.len(), 7 + card.card_id().len());
        assert!(apdus > 20, "{apdus} APDUs");
    }

    #[test]
    fn t0_sign_chain_ends_with_get_response() {
        let apdus = sign_apdus_t0(&signature_block(256));
        assert_eq!(apdus.len(), 3);
        assert_eq!(apdus[1].len(), 5 + 16);
        assert_eq!(apdus[2], [0x00, 0xC0, 0x00, 0x00, 0x00]);
        let mut card = card_with_key(KeyType::Rsa2048, &cac::keys::RustCrypto, 3);
        login(&mut card);
        let mut r = Vec::new();
        assert_eq!(sign_once(&mut card, &apdus, &mut r), 258);
    }
}
