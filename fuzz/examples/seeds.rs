//! Writes the committed seed corpora, `fuzz/corpus/<target>/seed-*`, from
//! the OpenSC transcript (`cac/tests/data/opensc-bind-apdus.txt`), the
//! embedded default card, and hand-written protocol exchanges:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```
//!
//! Deterministic: the same sources give the same files. Files the fuzzer
//! adds to a corpus directory are left alone (they are not named `seed-*`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cac::apdu::build_command;
use ccid::vscard::wire::{ErrorCode, Message, UNDEFINED_READER_ID, VERSION};
use vcac_fuzz::{push_control, push_data, verify_pin, SELECT_CCC};

const TRANSCRIPT: &str = include_str!("../../cac/tests/data/opensc-bind-apdus.txt");

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| s.get(2 * i..2 * i + 2))
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

/// `(command, response)` pairs of the transcript, in order.
fn transcript() -> Vec<(Vec<u8>, Vec<u8>)> {
    TRANSCRIPT
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (c, r) = l.trim().split_once(' ')?;
            Some((unhex(c), unhex(r.trim())))
        })
        .collect()
}

struct Corpus {
    dir: PathBuf,
    n: usize,
}

impl Corpus {
    fn new(root: &Path, target: &str) -> Corpus {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        for entry in std::fs::read_dir(&dir).expect("corpus directory").flatten() {
            if entry.file_name().to_string_lossy().starts_with("seed-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Corpus { dir, n: 0 }
    }

    fn add(&mut self, name: &str, bytes: &[u8]) {
        let path = self.dir.join(format!("seed-{:03}-{name}", self.n));
        std::fs::write(path, bytes).expect("write a seed");
        self.n += 1;
    }
}

const PKI0: [u8; 7] = [0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00];

fn select(aid: &[u8]) -> Vec<u8> {
    build_command([0x00, 0xA4, 0x04, 0x00], aid, None)
}

/// A PKCS#1 v1.5 signature block for RSA-2048.
fn sign_block() -> Vec<u8> {
    let mut block = vec![0x00, 0x01];
    block.resize(256 - 33, 0xFF);
    block.push(0x00);
    block.extend_from_slice(&[0x5A; 32]);
    block
}

/// The APDUs of a login and a signature, T=0 style (240 + 16 bytes, the
/// result through GET RESPONSE) and as one extended APDU.
fn sign_session() -> Vec<Vec<u8>> {
    let block = sign_block();
    let (a, b) = block.split_at(240);
    vec![
        select(&PKI0),
        verify_pin(),
        build_command([0x00, 0x42, 0x80, 0x00], a, None),
        build_command([0x00, 0x42, 0x00, 0x00], b, None),
        vec![0x00, 0xC0, 0x00, 0x00, 0x00],
        build_command([0x80, 0x42, 0x00, 0x00], &block, Some(65536)),
        // GET CHALLENGE, GET PROPERTIES, READ BUFFER
        vec![0x00, 0x84, 0x00, 0x00, 0x08],
        vec![0x80, 0x56, 0x01, 0x00, 0x00],
        vec![0x80, 0x52, 0x00, 0x00, 0x02, 0x01, 0x02],
        // Wrong PIN, then the right one, logical channel 1.
        build_command([0x00, 0x20, 0x00, 0x00], b"99999999", None),
        vec![0x00, 0x70, 0x00, 0x00, 0x01],
        build_command([0x01, 0xA4, 0x04, 0x00], &PKI0, None),
        vec![0x00, 0x20, 0x00, 0x00],
    ]
}

fn session(flags: u8, apdus: &[Vec<u8>], power_between: bool) -> Vec<u8> {
    let mut out = vec![flags];
    for (i, a) in apdus.iter().enumerate() {
        if power_between && i % 7 == 6 {
            push_control(&mut out, (i % 3) as u8);
        }
        push_data(&mut out, a);
    }
    out
}

fn ccid_message(ty: u8, seq: u8, specific: [u8; 3], data: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    ccid::device::wire::emit(&mut m, ty, 0, seq, specific, data);
    m
}

/// Bulk-OUT operations for the `ccid_bulk_out` target: `message` cut in
/// 64-byte packets (a zero-length packet after a full last one).
fn bulk_out(ops: &mut Vec<u8>, message: &[u8]) {
    for chunk in message.chunks(64) {
        ops.push(chunk.len() as u8);
        ops.extend_from_slice(chunk);
    }
    if message.len().is_multiple_of(64) {
        ops.push(0);
    }
    // Run the job, read the answer in packets.
    ops.extend_from_slice(&[0x41, 0x42, 0x42, 0x42, 0x42, 0x45]);
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let pairs = transcript();
    let commands: Vec<Vec<u8>> = pairs.iter().map(|(c, _)| c.clone()).collect();
    let unique: Vec<Vec<u8>> = {
        let mut seen = BTreeSet::new();
        commands
            .iter()
            .filter(|c| seen.insert((*c).clone()))
            .cloned()
            .collect()
    };

    // apdu: every distinct command of the transcript, and the extended cases.
    let mut c = Corpus::new(&root, "apdu");
    for cmd in unique.iter().take(150) {
        c.add("opensc", cmd);
    }
    for (name, apdu) in [
        ("case2e", vec![0x00, 0xB0, 0x00, 0x00, 0x00, 0x00, 0x00]),
        (
            "case3e",
            build_command([0x00, 0x42, 0x00, 0x00], &[0x11; 300], None),
        ),
        (
            "case4e",
            build_command([0x00, 0x42, 0x00, 0x00], &[0x11; 300], Some(65536)),
        ),
        (
            "zero-lc",
            vec![0x00, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01],
        ),
        ("cla-ff", vec![0xFF, 0x00, 0x00, 0x00]),
    ] {
        c.add(name, &apdu);
    }

    // card_session: the transcript in slices, logins and signatures.
    let mut c = Corpus::new(&root, "card_session");
    for (i, slice) in commands.chunks(60).enumerate() {
        c.add("opensc", &session(0, slice, i % 2 == 1));
    }
    for flags in [0x00, 0x01, 0x02, 0x04, 0x08, 0x0F, 0x10] {
        c.add("sign", &session(flags, &sign_session(), flags == 0x0F));
    }
    let mut unblock = sign_session();
    unblock.truncate(2);
    for _ in 0..4 {
        unblock.push(build_command([0x00, 0x20, 0x00, 0x00], b"00000000", None));
    }
    unblock.push(build_command(
        [0x00, 0x2C, 0x00, 0x00],
        b"8765432112345678",
        None,
    ));
    unblock.push(build_command(
        [0x00, 0x24, 0x00, 0x00],
        b"1234567887654321",
        None,
    ));
    c.add("unblock", &session(0x04, &unblock, false));

    // simpletlv: the T- and V-buffers the card returned to OpenSC.
    let mut c = Corpus::new(&root, "simpletlv");
    let mut seen = BTreeSet::new();
    for (cmd, resp) in &pairs {
        let body = resp.get(..resp.len().saturating_sub(2)).unwrap_or_default();
        let read_buffer = cmd.get(..2) == Some(&[0x00, 0xC0][..]) || cmd.get(1) == Some(&0x52);
        if read_buffer && body.len() > 2 && seen.insert(body.to_vec()) && seen.len() <= 60 {
            let mut seed = vec![body.len() as u8 / 2];
            seed.extend_from_slice(body);
            c.add("opensc", &seed);
        }
    }
    c.add(
        "long-length",
        &[0x04, 0x70, 0xFF, 0x05, 0x00, 1, 2, 3, 4, 5, 0x71, 0x00],
    );

    // ccid_bulk_out: the transcript as XfrBlocks at each exchange level.
    let mut c = Corpus::new(&root, "ccid_bulk_out");
    for (flags, slice) in [
        (0x00u8, 0..40),
        (0x01, 40..80),
        (0x06, 80..120),
        (0x1A, 120..160),
    ] {
        let mut ops = vec![flags];
        bulk_out(&mut ops, &ccid_message(0x62, 0, [0; 3], &[]));
        for (seq, cmd) in commands.get(slice).unwrap_or_default().iter().enumerate() {
            bulk_out(&mut ops, &ccid_message(0x6F, seq as u8 + 1, [0; 3], cmd));
            if seq == 10 {
                ops.extend_from_slice(&[0x4A, 0x44, 0x51, 0x44, 0x52]);
            }
        }
        c.add("opensc", &ops);
    }
    let mut ops = vec![0x00];
    for m in [
        ccid_message(0x65, 1, [0; 3], &[]),
        ccid_message(0x62, 2, [0; 3], &[]),
        ccid_message(0x6C, 3, [0; 3], &[]),
        ccid_message(
            0x61,
            4,
            [1, 0, 0],
            &[0x11, 0x10, 0x00, 0x45, 0x00, 0xFE, 0x00],
        ),
        ccid_message(0x6B, 5, [0; 3], &[0x02]),
        ccid_message(0x73, 6, [0; 3], &[0xA0, 0x0F, 0, 0, 0x80, 0x25, 0, 0]),
        ccid_message(0x6E, 7, [0; 3], &[]),
        ccid_message(0x63, 8, [0; 3], &[]),
    ] {
        bulk_out(&mut ops, &m);
    }
    // A class ABORT and its Bulk-OUT pair; a bus reset; hot-plug.
    ops.push(0x47);
    ops.extend_from_slice(&[0x21, 0x01, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00]);
    bulk_out(&mut ops, &ccid_message(0x72, 9, [0; 3], &[]));
    ops.extend_from_slice(&[0x4C, 0x4D, 0x45, 0x4E, 0x45, 0x4F, 0x50]);
    c.add("commands", &ops);
    let mut ops = vec![0x00, 0x48, 0x01, 0x10];
    ops.extend_from_slice(&ccid_message(0x6F, 1, [0; 3], &[0x00; 262]));
    ops.extend_from_slice(&[0x41, 0x46, 0x49, 0x00, 0x0A]);
    ops.extend_from_slice(&ccid_message(0x65, 2, [0; 3], &[]));
    c.add("transfer", &ops);

    // serial_twin: what libccid sends on open, then the transcript.
    let mut c = Corpus::new(&root, "serial_twin");
    for (kind, chunk, slice) in [(0u8, 7usize, 0..30), (1, 64, 30..60), (2, 1, 60..70)] {
        let mut stream = Vec::new();
        let mut frame = |m: &[u8]| ccid::serial::encode_frame(m, &mut stream);
        frame(&ccid_message(
            0x6B,
            0,
            [0; 3],
            &[if kind == 0 { 0x02 } else { 0x06 }],
        ));
        frame(&ccid_message(0x6B, 1, [0; 3], &[0x01, 0x01, 0x01]));
        frame(&ccid_message(0x65, 2, [0; 3], &[]));
        frame(&ccid_message(0x62, 3, [0; 3], &[]));
        for (seq, cmd) in commands.get(slice).unwrap_or_default().iter().enumerate() {
            frame(&ccid_message(0x6F, seq as u8 + 4, [0; 3], cmd));
        }
        stream.extend_from_slice(&ccid::serial::NAK_FRAME);
        let mut seed = vec![kind];
        for (i, piece) in stream.chunks(chunk).enumerate() {
            push_data(&mut seed, piece);
            if i % 17 == 16 {
                push_control(&mut seed, 0);
            }
        }
        c.add("open", &seed);
    }

    // vscard: a QEMU-like host's side and a client's side.
    let mut c = Corpus::new(&root, "vscard");
    let msg = |m: Message<'_>, reader: u32| {
        let mut out = Vec::new();
        m.encode(reader, &mut out).expect("seed message");
        out
    };
    let init = msg(
        Message::Init {
            version: VERSION,
            capabilities: 0,
        },
        UNDEFINED_READER_ID,
    );
    let ok = msg(Message::Error(ErrorCode::Success), 0);
    let mut seed = vec![0x01];
    for m in [init.clone(), ok.clone(), ok.clone(), ok.clone()] {
        push_data(&mut seed, &m);
    }
    for cmd in commands.iter().take(40) {
        push_data(&mut seed, &msg(Message::Apdu(cmd), 0));
    }
    push_data(&mut seed, &msg(Message::Flush, 0));
    push_control(&mut seed, 0);
    push_control(&mut seed, 2);
    push_control(&mut seed, 3);
    c.add("host", &seed);
    let mut seed = vec![0x02];
    for m in [
        init.clone(),
        msg(Message::ReaderAdd { name: b"reader" }, UNDEFINED_READER_ID),
        msg(Message::Atr(&cac::DEFAULT_ATR), 0),
        msg(Message::Apdu(&[0x90, 0x00]), 0),
        msg(Message::CardRemove, 0),
        msg(Message::ReaderRemove, 0),
        msg(
            Message::Unknown {
                msg_type: 0x42,
                payload: b"x",
            },
            0,
        ),
    ] {
        push_data(&mut seed, &m);
    }
    push_control(&mut seed, 4);
    push_control(&mut seed, 5);
    push_control(&mut seed, 6);
    c.add("client", &seed);
    let mut seed = vec![0x01];
    let mut all = init.clone();
    all.extend_from_slice(&msg(Message::Apdu(&SELECT_CCC), 0));
    for piece in all.chunks(5) {
        push_data(&mut seed, piece);
    }
    push_data(&mut seed, &[0, 0, 0, 7, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
    c.add("split", &seed);

    // vpcd: power, ATR and the transcript, at several read sizes.
    let mut c = Corpus::new(&root, "vpcd");
    for (size, slice) in [(0u8, 0..60), (1, 60..80), (7, 80..140), (255, 140..200)] {
        let mut stream = Vec::new();
        let mut frame = |p: &[u8]| ccid::vpcd::encode_frame(p, &mut stream).expect("seed frame");
        frame(&[0x01]);
        frame(&[0x04]);
        for cmd in commands.get(slice).unwrap_or_default() {
            frame(cmd);
        }
        frame(&[0x02]);
        frame(&[0x00]);
        frame(&[0x09]);
        frame(&[]);
        let mut seed = vec![size];
        seed.extend_from_slice(&stream);
        c.add("opensc", &seed);
    }

    // card_config: the default card directory, and its files in other forms.
    let mut c = Corpus::new(&root, "card_config");
    use certs_fixtures::default_card as d;
    let files = [
        d::ID0_PEM,
        d::ID0_KEY,
        d::ID1_PEM,
        d::ID1_KEY,
        d::ID2_PEM,
        d::ID2_KEY,
    ];
    let mut seed = Vec::new();
    push_data(&mut seed, d::CARD_TOML.as_bytes());
    for f in files {
        push_data(&mut seed, f);
    }
    c.add("default", &seed);
    let der = |pem: &[u8]| {
        der::pem::decode_vec(pem)
            .map(|(_, der)| der)
            .expect("fixture PEM")
    };
    let key_der = der(d::ID0_KEY);
    let toml = "[card]\natr = \"3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34\"\ncard_id = \"0011223344556677\"\nexact_le = true\n\n[pin]\npin = \"123456\"\nmax_tries = 15\npuk = \"87654321\"\npuk_max_tries = 10\n\n[[identity]]\ncert = \"id0.der\"\nkey = \"id0.key\"\ncompress = true\n\n[[identity]]\ncert = \"id1.pem\"\n";
    let mut seed = Vec::new();
    push_data(&mut seed, toml.as_bytes());
    push_data(&mut seed, &der(d::ID0_PEM));
    push_data(&mut seed, &key_der);
    push_data(&mut seed, d::ID1_PEM);
    c.add("der", &seed);
    // PKCS#1 inside PKCS#8 (bytes 26..: the RSAPrivateKey), as DER and PEM.
    if let Ok(info) = pkcs8::PrivateKeyInfoRef::try_from(key_der.as_slice()) {
        let p1 = info.private_key.as_bytes().to_vec();
        let p1_pem =
            der::pem::encode_string("RSA PRIVATE KEY", der::pem::LineEnding::LF, &p1).expect("PEM");
        let mut seed = Vec::new();
        push_data(&mut seed, b"[pin]\npin = \"12345678\"\n[[identity]]\ncert = \"id0.pem\"\nkey = \"id0.key\"\n[[identity]]\ncert = \"id1.pem\"\nkey = \"id1.key\"\n");
        push_data(&mut seed, d::ID0_PEM);
        push_data(&mut seed, &p1);
        push_data(&mut seed, d::ID0_PEM);
        push_data(&mut seed, p1_pem.as_bytes());
        c.add("pkcs1", &seed);
    }
    for (name, toml) in [
        (
            "bad-atr",
            "[card]\natr = \"3B\"\n[pin]\npin = \"12345678\"\n[[identity]]\ncert = \"id0.pem\"\n",
        ),
        ("unknown-field", "[pin]\npin = \"1\"\nfoo = 1\n"),
        (
            "no-close",
            "[pin\npin = \"12345678\"\n[[identity]]\ncert = \"id0.pem\"",
        ),
    ] {
        let mut seed = Vec::new();
        push_data(&mut seed, toml.as_bytes());
        push_data(&mut seed, d::ID0_PEM);
        c.add(name, &seed);
    }
    println!("seeds written under {}", root.display());
}
