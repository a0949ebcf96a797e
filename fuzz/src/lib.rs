//! What the fuzz targets share: a byte cursor, the record format the
//! session-like targets read, and a deterministic card.
//!
//! ```text
//!  libFuzzer bytes ─► Bytes / records() ─► target ─► cac / vreader / ccid
//!                                                 └─► invariants (assert!)
//! ```
//!
//! Every card here is built from the embedded default card's certificates
//! with the **insecure** deterministic key backend and a ChaCha20 RNG with
//! a fixed seed, so a crash found once reproduces byte for byte. The
//! backend's handles are wrapped to count private-key operations: the
//! session targets check that none happens without a verified PIN.
//!
//! The seed generator (`examples/seeds.rs`) writes the same formats.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use cac::keys::insecure::InsecureTestBackend;
use cac::keys::{load_private_key, KeyAlgorithm, KeyError, KeyHandle};
use cac::{Card, Identity, Pin, PinPolicy};
use rand_core::{CryptoRng, SeedableRng};

/// A cursor over the fuzzer's bytes. Reads past the end return `None` or
/// fewer bytes, never panic.
#[derive(Clone, Copy, Debug)]
pub struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes(data)
    }

    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Option<u16> {
        let (two, rest) = self.0.split_first_chunk::<2>()?;
        self.0 = rest;
        Some(u16::from_be_bytes(*two))
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }
}

/// Record lengths from this value up are control codes, not data.
pub const CONTROL_BASE: u16 = 0xFFF0;

/// One record of a session-like input: a big-endian `u16` length and that
/// many bytes, or a control code when the length is `CONTROL_BASE + code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// Data (an APDU, a packet, a chunk of a stream). May be shorter than
    /// its length said if the input ended.
    Data(&'a [u8]),
    /// A control code, `0..=15`.
    Control(u8),
}

/// The records of `input`, in order.
pub fn records(input: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut bytes = Bytes::new(input);
    std::iter::from_fn(move || {
        let len = bytes.u16()?;
        Some(match len.checked_sub(CONTROL_BASE) {
            Some(code) => Record::Control(code as u8),
            None => Record::Data(bytes.take(usize::from(len))),
        })
    })
}

/// Appends a data record (the seed generator's side of [`records`]).
pub fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    let len = u16::try_from(data.len())
        .ok()
        .filter(|n| *n < CONTROL_BASE)
        .unwrap_or(CONTROL_BASE - 1);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data.get(..usize::from(len)).unwrap_or(data));
}

/// Appends a control record.
pub fn push_control(out: &mut Vec<u8>, code: u8) {
    out.extend_from_slice(&(CONTROL_BASE + u16::from(code & 0x0F)).to_be_bytes());
}

/// Private-key operations performed by cards built here, ever.
static PRIVATE_OPS: AtomicU64 = AtomicU64::new(0);

/// The number of private-key operations so far.
pub fn private_ops() -> u64 {
    PRIVATE_OPS.load(Ordering::SeqCst)
}

/// A key handle that counts its private-key operations.
#[derive(Debug)]
struct Counted(Arc<dyn KeyHandle>);

impl KeyHandle for Counted {
    fn algorithm(&self) -> KeyAlgorithm {
        self.0.algorithm()
    }

    fn public_key_der(&self) -> &[u8] {
        self.0.public_key_der()
    }

    fn private_op(
        &self,
        input: &[u8],
        rng: &mut dyn CryptoRng,
        out: &mut Vec<u8>,
    ) -> Result<(), KeyError> {
        PRIVATE_OPS.fetch_add(1, Ordering::SeqCst);
        self.0.private_op(input, rng, out)
    }
}

/// A certificate (DER) and its key.
type Parts = (Vec<u8>, Arc<dyn KeyHandle>);

/// The default card's three certificates (DER) and counted insecure keys,
/// loaded once per process.
fn identities() -> &'static [Parts] {
    static IDS: OnceLock<Vec<Parts>> = OnceLock::new();
    IDS.get_or_init(|| {
        use certs_fixtures::default_card as d;
        [
            (d::ID0_PEM, d::ID0_KEY),
            (d::ID1_PEM, d::ID1_KEY),
            (d::ID2_PEM, d::ID2_KEY),
        ]
        .iter()
        .filter_map(|(cert, key)| {
            let cert = cac::config::certificate_der(cert).ok()?;
            let key = load_private_key(&InsecureTestBackend, key).ok()?;
            Some((cert, Arc::new(Counted(key)) as Arc<dyn KeyHandle>))
        })
        .collect()
    })
}

/// The PIN of every card built here.
pub const PIN: &[u8; 8] = b"12345678";
/// The PUK of cards built with [`CardOptions::puk`].
pub const PUK: &[u8; 8] = b"87654321";

/// Variations of the deterministic card, taken from one input byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardOptions {
    /// Answer `6C xx` to a too-long Le.
    pub exact_le: bool,
    /// Store the certificates zlib-compressed.
    pub compress: bool,
    /// Configure a PUK (enables RESET RETRY COUNTER).
    pub puk: bool,
    /// PIN retry limit, 1..=15.
    pub max_tries: u8,
    /// Identities (PKI applets): 1 to 3. Each costs a certificate parse
    /// per card built, the bulk of a short run's time.
    pub identities: usize,
    /// Applets: CAC (the default), PIV or both (identities in 9A, 9C, 9D).
    pub profile: cac::piv::Profile,
}

impl CardOptions {
    /// Options from `flags`: bit 0 exact Le, bit 1 compression, bit 2
    /// PUK, bit 3 three identities (else one), bits 4-7 retry limit (0
    /// means 3).
    pub fn from_flags(flags: u8) -> CardOptions {
        CardOptions {
            exact_le: flags & 0x01 != 0,
            compress: flags & 0x02 != 0,
            puk: flags & 0x04 != 0,
            identities: if flags & 0x08 != 0 { 3 } else { 1 },
            max_tries: match flags >> 4 {
                0 => 3,
                n => n,
            },
            profile: cac::piv::Profile::Cac,
        }
    }
}

impl Default for CardOptions {
    /// One identity, PIN tries 3, nothing else.
    fn default() -> CardOptions {
        CardOptions::from_flags(0)
    }
}

/// A deterministic card: the default card's identities on the insecure
/// backend, PIN `12345678`, RNG ChaCha20 with seed 0.
pub fn card(options: CardOptions) -> Card {
    let pin = |p: &[u8; 8]| Pin::new(core::str::from_utf8(p).unwrap_or("00000000"));
    let (Ok(pin), Ok(puk)) = (pin(PIN), pin(PUK)) else {
        unreachable!("constant PINs are valid");
    };
    let mut policy = PinPolicy::new(pin);
    if let Ok(p) = policy.clone().with_max_tries(options.max_tries) {
        policy = p;
    }
    if options.puk {
        if let Ok(p) = policy.clone().with_puk(puk, 10) {
            policy = p;
        }
    }
    // No on-card key generation: an RSA key pair per input would stall
    // the fuzzer (and needs the 9B key first anyway).
    let mut builder = Card::builder(policy)
        .exact_le(options.exact_le)
        .profile(options.profile)
        .key_generator(None);
    for (cert, key) in identities().iter().take(options.identities.clamp(1, 3)) {
        builder = builder
            .identity(Identity::new(cert.clone(), Arc::clone(key)).compressed(options.compress));
    }
    match builder.build(rand_chacha::ChaCha20Rng::seed_from_u64(0)) {
        Ok(card) => card,
        Err(e) => panic!("the fuzzing card does not build: {e}"),
    }
}

/// SELECT the CCC the way OpenSC does under T=0 (no Le).
pub const SELECT_CCC: [u8; 12] = [
    0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x01, 0x16, 0xDB, 0x00,
];
/// The card's answer to [`SELECT_CCC`]: the FCI waits behind `61 0D`.
pub const SELECT_CCC_ANSWER: [u8; 2] = [0x61, 0x0D];

/// SELECT PIV with OpenSC's 9-byte AID and Le.
pub const SELECT_PIV: [u8; 15] = [
    0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00,
];

/// A PIV VERIFY with the default PIV PIN (`123456`).
pub const VERIFY_PIV: [u8; 13] = [
    0x00, 0x20, 0x00, 0x80, 0x08, b'1', b'2', b'3', b'4', b'5', b'6', 0xFF, 0xFF,
];

/// A VERIFY with the right PIN.
pub fn verify_pin() -> Vec<u8> {
    let mut apdu = vec![0x00, 0x20, 0x00, 0x00, 0x08];
    apdu.extend_from_slice(PIN);
    apdu
}

/// After whatever came before, a freshly powered card answers a
/// well-formed SELECT exactly.
pub fn assert_card_still_answers(card: &mut Card) {
    card.power_on();
    assert!(!card.is_verified(), "power-on left the card logged in");
    assert!(!card.piv_is_verified(), "power-on left PIV logged in");
    if card.atr().as_bytes() == cac::piv::PIV_ATR && card.piv_pin_tries_left().is_some() {
        // PIV (and dual) cards: SELECT PIV answers its property template.
        let r = card.transmit_vec(&SELECT_PIV);
        assert_eq!(r.get(..2), Some(&[0x61, 0x3B][..]), "SELECT PIV: {r:02X?}");
        assert_eq!(r.get(r.len() - 2..), Some(&[0x90, 0x00][..]));
        return;
    }
    let r = card.transmit_vec(&SELECT_CCC);
    assert_eq!(r, SELECT_CCC_ANSWER, "SELECT CCC after the input: {r:02X?}");
}

/// Sends `apdu` to `card`, checking what must hold for any command: a
/// response that ends in a status word and fits an extended APDU, and no
/// private-key operation unless the PIN was verified before it.
pub fn checked_transmit(card: &mut Card, apdu: &[u8], response: &mut Vec<u8>) {
    let verified = card.is_verified() || card.piv_is_verified();
    let ops = private_ops();
    response.clear();
    card.transmit(apdu, response);
    assert!(response.len() >= 2, "no status word for {apdu:02X?}");
    assert!(
        response.len() <= 65536 + 2,
        "a {}-byte response",
        response.len()
    );
    if private_ops() != ops {
        assert!(
            verified,
            "private-key operation without a verified PIN: {apdu:02X?}"
        );
    }
}
