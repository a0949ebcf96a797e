//! The card: persistent data (applets, keys), volatile session state, and
//! the dispatcher that owns everything that crosses applets — SELECT by
//! AID, logical channels, GET RESPONSE / `61 xx` splitting, `6C xx`, GET
//! CHALLENGE, power and reset. PIN, PUK and login belong to the applets'
//! [`SecurityEnvironment`] (see [`crate::security`]).
//!
//! ```text
//!  C-APDU ──► CommandView ──► dispatcher ──┬─► SELECT / MANAGE CHANNEL / GET CHALLENGE
//!                                          ├─► GET RESPONSE ◄── pending bytes
//!                                          └─► selected applet ─► data ─► Le / 61xx ─► R-APDU
//!                                                 │
//!                                     VERIFY / CHANGE / RESET RETRY, login checks
//!                                                 ▼
//!                                        SecurityEnvironment
//! ```

use core::fmt;
use std::sync::Arc;

use der::{Decode, Encode};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::apdu::CommandView;
use crate::applet::{aca, ccc, gp, piv, pki, pnp, Applet, Chain, Ctx};
use crate::atr::Atr;
use crate::keys::{KeyBackend, KeyHandle};
use crate::pin::PinPolicy;
use crate::piv::{PivOptions, Profile};
use crate::security::{self, CacPin, SecurityEnvironment};
use crate::status::Status;
use crate::store::{NullStore, Store};

/// Most PKI applets a card can hold (`A0 00 00 00 79 01 00`..`0F`).
pub const MAX_IDENTITIES: usize = 16;
/// Logical channels supported (0 is always open).
pub const CHANNELS: usize = 4;

const INS_SELECT: u8 = 0xA4;
const INS_GET_RESPONSE: u8 = 0xC0;
const INS_MANAGE_CHANNEL: u8 = 0x70;
const INS_GET_CHALLENGE: u8 = 0x84;
/// Most bytes a CLA-chained command may assemble.
const MAX_CHAINED: usize = 16 * 1024;

/// One certificate of the card and the private key that goes with it.
#[derive(Clone)]
pub struct Identity {
    certificate: Vec<u8>,
    key: Option<Arc<dyn KeyHandle>>,
    compress: bool,
    piv_slot: Option<u8>,
}

impl Identity {
    /// A certificate (DER) with its private key.
    pub fn new(certificate_der: Vec<u8>, key: Arc<dyn KeyHandle>) -> Identity {
        Identity {
            certificate: certificate_der,
            key: Some(key),
            compress: false,
            piv_slot: None,
        }
    }

    /// A certificate without a private key (its PKI applet reports the key
    /// as not initialised and refuses SIGN with `6A 88`).
    pub fn certificate_only(certificate_der: Vec<u8>) -> Identity {
        Identity {
            certificate: certificate_der,
            key: None,
            compress: false,
            piv_slot: None,
        }
    }

    /// Stores the certificate zlib-compressed (CertInfo `01`), as real cards
    /// do. OpenSC and CACKey decompress it.
    pub fn compressed(mut self, compress: bool) -> Identity {
        self.compress = compress;
        self
    }

    /// Puts the identity in PIV key slot `slot` (`9A`, `9C`, `9D`, `9E`,
    /// `82`–`95`) instead of the default for its position
    /// ([`piv::default_slot`](crate::piv::default_slot)).
    pub fn piv_slot(mut self, slot: u8) -> Identity {
        self.piv_slot = Some(slot);
        self
    }

    /// The certificate (DER).
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("certificate_len", &self.certificate.len())
            .field("key", &self.key.as_ref().map(|k| k.algorithm()))
            .field("compress", &self.compress)
            .finish()
    }
}

/// Why a card cannot be built.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardError {
    /// A card needs 1 to 16 identities.
    IdentityCount(usize),
    /// Identity `index`'s certificate is not an X.509 certificate.
    Certificate {
        /// Position in PKI order.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// Identity `index`'s key does not belong to its certificate.
    KeyMismatch {
        /// Position in PKI order.
        index: usize,
    },
    /// Identity `index`'s buffers exceed what READ BUFFER can address.
    TooLarge {
        /// Position in PKI order.
        index: usize,
        /// Size of the offending buffer.
        len: usize,
    },
    /// The card ID must have 8 to 16 bytes.
    CardId(usize),
    /// The certificate could not be compressed.
    Compression(String),
    /// Identity `index` names a PIV slot that is not a key slot, or one
    /// another identity already holds.
    PivSlot {
        /// Position in PKI order.
        index: usize,
        /// The slot.
        slot: u8,
    },
}

impl fmt::Display for CardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CardError::IdentityCount(n) => {
                write!(f, "a card holds 1 to {MAX_IDENTITIES} identities, got {n}")
            }
            CardError::Certificate { index, reason } => {
                write!(f, "identity {index}: not an X.509 certificate: {reason}")
            }
            CardError::KeyMismatch { index } => write!(
                f,
                "identity {index}: the private key does not match the certificate's public key"
            ),
            CardError::TooLarge { index, len } => write!(
                f,
                "identity {index}: a {len}-byte buffer exceeds the 65533 bytes READ BUFFER addresses"
            ),
            CardError::CardId(n) => write!(f, "card ID must have 8 to 16 bytes, got {n}"),
            CardError::Compression(m) => write!(f, "certificate compression failed: {m}"),
            CardError::PivSlot { index, slot } => write!(
                f,
                "identity {index}: PIV slot {slot:02X} is not a free key slot (9A, 9C, 9D, 9E, 82-95)"
            ),
        }
    }
}

impl std::error::Error for CardError {}

/// Builds a [`Card`].
pub struct CardBuilder {
    atr: Atr,
    security: Box<dyn SecurityEnvironment>,
    identities: Vec<Identity>,
    card_id: Option<Vec<u8>>,
    exact_le: bool,
    profile: Profile,
    piv: PivOptions,
    atr_set: bool,
    store: Box<dyn Store>,
    generator: Option<Arc<dyn KeyBackend>>,
}

impl fmt::Debug for CardBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CardBuilder")
            .field("atr", &self.atr)
            .field("identities", &self.identities)
            .field("exact_le", &self.exact_le)
            .finish_non_exhaustive()
    }
}

impl CardBuilder {
    /// A builder with the default CAC ATR and a card-global PIN with the
    /// given policy ([`CacPin`]).
    pub fn new(pin: PinPolicy) -> CardBuilder {
        CardBuilder {
            atr: Atr::default(),
            security: Box::new(CacPin::new(pin)),
            identities: Vec::new(),
            card_id: None,
            exact_le: false,
            profile: Profile::Cac,
            piv: PivOptions::default(),
            atr_set: false,
            store: Box::new(NullStore),
            #[cfg(feature = "rustcrypto")]
            generator: Some(Arc::new(crate::keys::RustCrypto)),
            #[cfg(not(feature = "rustcrypto"))]
            generator: None,
        }
    }

    /// Chooses the applets ([`Profile::Cac`] by default). `Piv` and `Dual`
    /// also switch to the T=1 [`PIV_ATR`](crate::piv::PIV_ATR) unless an
    /// ATR was set with [`atr`](Self::atr).
    pub fn profile(mut self, profile: Profile) -> CardBuilder {
        self.profile = profile;
        if profile.has_piv() && !self.atr_set {
            if let Ok(atr) = Atr::new(&crate::piv::PIV_ATR) {
                self.atr = atr;
            }
        }
        self
    }

    /// PIV PIN, PUK, management key and restored state.
    pub fn piv(mut self, options: PivOptions) -> CardBuilder {
        self.piv = options;
        self
    }

    /// Where the card's persistent changes go ([`NullStore`] by default).
    pub fn store(mut self, store: Box<dyn Store>) -> CardBuilder {
        self.store = store;
        self
    }

    /// The backend GENERATE ASYMMETRIC KEY PAIR uses (RustCrypto by
    /// default; `None` makes the card refuse with `6A 81`).
    pub fn key_generator(mut self, generator: Option<Arc<dyn KeyBackend>>) -> CardBuilder {
        self.generator = generator;
        self
    }

    /// Replaces the card-global security environment the CAC applets
    /// share (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER and the
    /// login SIGN/DECRYPT needs): for hosts that delegate the PIN, such as
    /// an NSS database password or a PKCS#11 token's login.
    pub fn security(mut self, security: Box<dyn SecurityEnvironment>) -> CardBuilder {
        self.security = security;
        self
    }

    /// Sets the ATR.
    pub fn atr(mut self, atr: Atr) -> CardBuilder {
        self.atr = atr;
        self.atr_set = true;
        self
    }

    /// Adds an identity; the first one is PKI applet 0 (OpenSC's "CAC ID
    /// Certificate", PKCS#15 ID `00 01`), and so on.
    pub fn identity(mut self, identity: Identity) -> CardBuilder {
        self.identities.push(identity);
        self
    }

    /// Sets the card ID (the serial number OpenSC shows) instead of
    /// deriving it from the certificates. 8 to 16 bytes.
    pub fn card_id(mut self, card_id: &[u8]) -> CardBuilder {
        self.card_id = Some(card_id.to_vec());
        self
    }

    /// Answer `6C xx` when a short Le asks for more bytes than available,
    /// like a strict T=0 card (and libcacard). Off by default: the card
    /// then returns the available bytes with `90 00`.
    pub fn exact_le(mut self, exact: bool) -> CardBuilder {
        self.exact_le = exact;
        self
    }

    /// Builds the card. `rng` serves blinding, GET CHALLENGE and ECDSA
    /// nonces; pass `rand_core::UnwrapErr(getrandom::SysRng)` in production and a seeded RNG in
    /// tests.
    pub fn build(self, rng: impl CryptoRng + Send + 'static) -> Result<Card, CardError> {
        let n = self.identities.len();
        if n == 0 || n > MAX_IDENTITIES {
            return Err(CardError::IdentityCount(n));
        }
        for (index, id) in self.identities.iter().enumerate() {
            let cert = x509_cert::Certificate::from_der(&id.certificate).map_err(|e| {
                CardError::Certificate {
                    index,
                    reason: e.to_string(),
                }
            })?;
            if let Some(key) = &id.key {
                let spki = cert
                    .tbs_certificate()
                    .subject_public_key_info()
                    .to_der()
                    .map_err(|e| CardError::Certificate {
                        index,
                        reason: e.to_string(),
                    })?;
                if spki != key.public_key_der() {
                    return Err(CardError::KeyMismatch { index });
                }
            }
        }
        let card_id = match self.card_id {
            Some(id) if (8..=16).contains(&id.len()) => id,
            Some(id) => return Err(CardError::CardId(id.len())),
            None => derive_card_id(&self.identities),
        };
        let piv_applet = if self.profile.has_piv() {
            let mut ids = Vec::with_capacity(n);
            for (index, id) in self.identities.iter().enumerate() {
                let slot = id.piv_slot.unwrap_or(crate::piv::default_slot(index));
                if !crate::piv::is_key_slot(slot) || ids.iter().any(|(s, _, _)| *s == slot) {
                    return Err(CardError::PivSlot { index, slot });
                }
                ids.push((slot, id.certificate.as_slice(), id.key.clone()));
            }
            Some(Applet::Piv(Box::new(piv::Piv::new(piv::PivBuild {
                card_id: &card_id,
                identities: ids,
                options: self.piv,
            }))))
        } else {
            None
        };

        let mut urls = Vec::with_capacity(n);
        let mut acrs = vec![aca::AppletAcr::ccc(ccc::AID)];
        let mut pkis = Vec::with_capacity(n);
        for (index, id) in self.identities.into_iter().enumerate() {
            let i = u8::try_from(index).map_err(|_| CardError::IdentityCount(n))?;
            urls.push(ccc::CardUrl {
                app_type: ccc::AppType::Pki,
                object_id: [0x01, i],
                app_id: [0x01, i],
            });
            acrs.push(aca::AppletAcr::pki(i, pki::aid(i)));
            let applet =
                pki::Pki::new(i, &id.certificate, id.key, id.compress).map_err(|e| match e {
                    pki::PkiBuildError::Compress(e) => CardError::Compression(e.to_string()),
                    pki::PkiBuildError::TooLarge(len) => CardError::TooLarge { index, len },
                })?;
            pkis.push(Applet::Pki(applet));
        }
        let ccc = ccc::Ccc::new(&card_id, &urls, &aca::AID)
            .map_err(|e| CardError::TooLarge { index: 0, len: e.0 })?;
        let mut applets = Vec::with_capacity(n + 4);
        applets.push(Applet::Ccc(ccc));
        applets.push(Applet::Aca(aca::Aca::new(acrs)));
        applets.extend(pkis);
        applets.push(Applet::Gp(gp::CardManager::new(&card_id)));
        applets.push(Applet::Pnp(pnp::PlugAndPlay::new(pnp::CARD_TYPE_GUID)));
        match (self.profile, piv_applet) {
            (Profile::Piv, Some(p)) => applets = vec![p],
            (_, Some(p)) => applets.push(p),
            _ => {}
        }

        Ok(Card {
            atr: self.atr,
            applets,
            card_id,
            security: self.security,
            exact_le: self.exact_le,
            session: Session::new(),
            rng: Box::new(rng),
            store: self.store,
            generator: self.generator,
        })
    }
}

/// Card ID from SHA-256 over every certificate: two cards with different
/// certificates never share it (libcacard hashes only the first, and
/// virt_cacard uses one fixed ID for every card).
fn derive_card_id(identities: &[Identity]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"vcac card id v1");
    for id in identities {
        h.update((id.certificate.len() as u64).to_be_bytes());
        h.update(&id.certificate);
    }
    h.finalize().get(..10).unwrap_or_default().to_vec()
}

/// A logical channel's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Channel {
    open: bool,
    selected: Option<usize>,
}

/// A CLA-chained command being assembled (`10 INS P1 P2` parts).
struct ClaChain {
    key: (usize, u8, u8, u8),
    buf: zeroize::Zeroizing<Vec<u8>>,
}

fn chain_key(channel: usize, cmd: &CommandView<'_>) -> (usize, u8, u8, u8) {
    (channel, cmd.ins(), cmd.p1(), cmd.p2())
}

/// Volatile state: cleared by power-off, reset and removal.
struct Session {
    channels: [Channel; CHANNELS],
    chain: Chain,
    cla_chain: Option<ClaChain>,
    /// Commands so far (a CLA-chained command counts once).
    command: u64,
    pending: Vec<u8>,
    pending_pos: usize,
    /// The pending bytes are a private-key result: wipe, don't just clear.
    pending_secret: bool,
    scratch: Vec<u8>,
}

impl Session {
    fn new() -> Session {
        let mut channels = [Channel::default(); CHANNELS];
        channels[0].open = true;
        Session {
            channels,
            chain: Chain::default(),
            cla_chain: None,
            command: 0,
            pending: Vec::new(),
            pending_pos: 0,
            pending_secret: false,
            scratch: Vec::new(),
        }
    }

    /// Clears everything volatile, keeping allocations (wiped).
    fn reset(&mut self) {
        self.channels = [Channel::default(); CHANNELS];
        self.channels[0].open = true;
        self.chain.clear();
        self.cla_chain = None;
        self.pending_secret = true;
        self.drop_pending();
    }

    fn drop_pending(&mut self) {
        if self.pending_secret {
            self.pending.zeroize();
            self.pending_secret = false;
        } else {
            self.pending.clear();
        }
        self.pending_pos = 0;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.pending.zeroize();
        self.scratch.zeroize();
    }
}

/// A virtual CAC card.
///
/// It does no I/O: a reader (see the `vreader` crate) powers it and
/// transmits APDUs.
pub struct Card {
    atr: Atr,
    applets: Vec<Applet>,
    card_id: Vec<u8>,
    security: Box<dyn SecurityEnvironment>,
    exact_le: bool,
    session: Session,
    rng: Box<dyn CryptoRng + Send>,
    store: Box<dyn Store>,
    generator: Option<Arc<dyn KeyBackend>>,
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Card")
            .field("atr", &self.atr)
            .field("card_id", &HexBytes(&self.card_id))
            .field("applets", &self.applets.len())
            .field("pin_tries_left", &self.security.tries_left())
            .finish_non_exhaustive()
    }
}

struct HexBytes<'a>(&'a [u8]);

impl fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl Card {
    /// Starts building a card with this PIN policy.
    pub fn builder(pin: PinPolicy) -> CardBuilder {
        CardBuilder::new(pin)
    }

    /// The ATR.
    pub fn atr(&self) -> &Atr {
        &self.atr
    }

    /// The card ID (serial number, from the CUID in the CCC).
    pub fn card_id(&self) -> &[u8] {
        &self.card_id
    }

    /// PIN tries left before it blocks.
    pub fn pin_tries_left(&self) -> u8 {
        self.security.tries_left()
    }

    /// PIV PIN tries left, when the card carries the PIV applet.
    pub fn piv_pin_tries_left(&self) -> Option<u8> {
        self.applets.iter().find_map(|a| match a {
            Applet::Piv(p) => Some(p.pin_tries_left()),
            _ => None,
        })
    }

    /// True when the PIV PIN has been verified in this session (false on
    /// a card without PIV).
    pub fn piv_is_verified(&self) -> bool {
        self.applets.iter().any(|a| match a {
            Applet::Piv(p) => p.is_verified(),
            _ => false,
        })
    }

    /// True when the PIN has been verified in this session.
    pub fn is_verified(&self) -> bool {
        self.security.is_verified()
    }

    /// Cold reset: clears the session and the login, returns the ATR.
    pub fn power_on(&mut self) -> &[u8] {
        self.clear_session();
        self.atr.as_bytes()
    }

    /// Warm reset: same effect on the card as a cold one.
    pub fn reset(&mut self) -> &[u8] {
        self.power_on()
    }

    /// Power off: clears the session (login, selections, chains, pending
    /// response).
    pub fn power_off(&mut self) {
        self.clear_session();
    }

    fn clear_session(&mut self) {
        self.session.reset();
        self.security.logout();
        for applet in &mut self.applets {
            applet.reset_session();
        }
    }

    /// Processes one command APDU and appends the response APDU (data and
    /// SW1 SW2) to `response`. Never panics, whatever the bytes.
    pub fn transmit(&mut self, command: &[u8], response: &mut Vec<u8>) {
        let sw = match CommandView::try_from(command) {
            Ok(cmd) => self.dispatch(&cmd, response),
            Err(e) => {
                self.session.drop_pending();
                Status::from(e)
            }
        };
        response.extend_from_slice(&sw.to_bytes());
    }

    /// [`Card::transmit`] into a fresh vector.
    pub fn transmit_vec(&mut self, command: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.transmit(command, &mut out);
        out
    }

    fn dispatch(&mut self, cmd: &CommandView<'_>, response: &mut Vec<u8>) -> Status {
        let cla = cmd.cla();
        let Some(channel) = cla.channel().map(usize::from) else {
            self.session.drop_pending();
            return Status::ClaNotSupported;
        };
        if cla.secure_messaging() {
            self.session.drop_pending();
            return Status::SecureMessagingNotSupported;
        }
        if cla.chaining() {
            self.session.drop_pending();
            return self.chain_part(channel, cmd);
        }
        if !self.session.channels.get(channel).is_some_and(|c| c.open) {
            self.session.drop_pending();
            self.session.cla_chain = None;
            return Status::ChannelNotSupported;
        }
        // The last part of a CLA chain: the applet sees the whole command.
        let assembled = match self.session.cla_chain.take() {
            Some(mut c) if c.key == chain_key(channel, cmd) => {
                c.buf.extend_from_slice(cmd.data());
                Some(c.buf)
            }
            _ => {
                self.session.command = self.session.command.wrapping_add(1);
                None
            }
        };
        let joined;
        let cmd = match &assembled {
            Some(buf) => {
                joined = cmd.with_data(buf);
                &joined
            }
            None => cmd,
        };
        if cmd.ins() == INS_GET_RESPONSE {
            return self.get_response(cmd, response);
        }
        self.session.drop_pending();

        let mut out = core::mem::take(&mut self.session.scratch);
        out.clear();
        let result = match cmd.ins() {
            INS_SELECT if cmd.p1() == 0x04 => self.select(channel, cmd, &mut out),
            INS_MANAGE_CHANNEL => self.manage_channel(cmd, &mut out),
            INS_GET_CHALLENGE => self.get_challenge(cmd, &mut out),
            ins => self.route_to_applet(channel, ins, cmd, &mut out),
        };
        let secret =
            cmd.ins() == pki::INS_SIGN_DECRYPT || cmd.ins() == piv::INS_GENERAL_AUTHENTICATE;
        let sw = match result {
            Ok(()) => {
                // PIV answers case-3 commands with data (yubico-piv-tool
                // sends no Le); CAC applets keep T=0's `61 xx`.
                let implicit_le = self
                    .session
                    .channels
                    .get(channel)
                    .and_then(|c| c.selected)
                    .and_then(|i| self.applets.get(i))
                    .is_some_and(Applet::accepts_chaining)
                    .then_some(if cmd.is_extended() { 65536 } else { 256 });
                self.deliver(&mut out, cmd, secret, implicit_le, response)
            }
            Err(sw) => sw,
        };
        if secret {
            out.zeroize();
        } else {
            out.clear();
        }
        self.session.scratch = out;
        sw
    }

    /// A `10 INS P1 P2` part: kept for an applet that accepts chaining
    /// (PIV), `68 84` otherwise, as before.
    fn chain_part(&mut self, channel: usize, cmd: &CommandView<'_>) -> Status {
        let accepts = self
            .session
            .channels
            .get(channel)
            .filter(|c| c.open)
            .and_then(|c| c.selected)
            .and_then(|i| self.applets.get(i))
            .is_some_and(Applet::accepts_chaining);
        if !accepts {
            self.session.cla_chain = None;
            return Status::ChainingNotSupported;
        }
        let key = chain_key(channel, cmd);
        let s = &mut self.session;
        let chain = match &mut s.cla_chain {
            Some(c) if c.key == key => c,
            slot => {
                s.command = s.command.wrapping_add(1);
                slot.insert(ClaChain {
                    key,
                    buf: zeroize::Zeroizing::new(Vec::new()),
                })
            }
        };
        if chain.buf.len() + cmd.data().len() > MAX_CHAINED {
            s.cla_chain = None;
            return Status::WrongLength;
        }
        chain.buf.extend_from_slice(cmd.data());
        Status::Success
    }

    fn route_to_applet(
        &mut self,
        channel: usize,
        ins: u8,
        cmd: &CommandView<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        if ins == INS_SELECT {
            // Any SELECT drops a half-built SIGN chain.
            self.session.chain.clear();
        }
        let selected = self.session.channels.get(channel).and_then(|c| c.selected);
        let Some((index, applet)) = selected.and_then(|i| self.applets.get_mut(i).map(|a| (i, a)))
        else {
            return match ins {
                INS_SELECT => Err(Status::NotFound),
                // With no applet selected, the card-global environment answers.
                ins if security::is_security_command(ins) => self.security.process(cmd),
                _ => Err(Status::InsNotSupported),
            };
        };
        let mut ctx = Ctx {
            security: &mut *self.security,
            rng: &mut *self.rng,
            chain: &mut self.session.chain,
            me: index,
            store: &mut *self.store,
            command: self.session.command,
            generator: self.generator.as_deref(),
        };
        applet.process(cmd, &mut ctx, out)
    }

    /// Moves the applet's answer to the response, honouring Le: all of it
    /// when it fits, else Le bytes and `61 xx`; with no Le (T=0 case 4),
    /// nothing but `61 xx`.
    fn deliver(
        &mut self,
        data: &mut Vec<u8>,
        cmd: &CommandView<'_>,
        secret: bool,
        implicit_le: Option<usize>,
        response: &mut Vec<u8>,
    ) -> Status {
        if data.is_empty() {
            return Status::Success;
        }
        let Some(le) = cmd.le().or(implicit_le) else {
            return self.keep_pending(data, 0, secret);
        };
        if data.len() <= le {
            if self.exact_le && !cmd.is_extended() && le < 256 && data.len() < le {
                return Status::WrongLe(data.len() as u8);
            }
            response.extend_from_slice(data);
            return Status::Success;
        }
        response.extend_from_slice(data.get(..le).unwrap_or_default());
        self.keep_pending(data, le, secret)
    }

    fn keep_pending(&mut self, data: &mut Vec<u8>, served: usize, secret: bool) -> Status {
        core::mem::swap(&mut self.session.pending, data);
        self.session.pending_pos = served;
        self.session.pending_secret = secret;
        remaining_status(self.session.pending.len() - served)
    }

    fn get_response(&mut self, cmd: &CommandView<'_>, response: &mut Vec<u8>) -> Status {
        if cmd.p1() != 0 || cmd.p2() != 0 {
            return Status::IncorrectP1P2;
        }
        if !cmd.data().is_empty() {
            return Status::WrongLength;
        }
        let s = &mut self.session;
        let remaining = s.pending.len().saturating_sub(s.pending_pos);
        if remaining == 0 {
            return Status::ReferencedDataNotFound;
        }
        let le = cmd.le().unwrap_or(256);
        if self.exact_le && le < 256 && le > remaining {
            return Status::WrongLe(remaining as u8);
        }
        let take = le.min(remaining);
        let end = s.pending_pos + take;
        response.extend_from_slice(s.pending.get(s.pending_pos..end).unwrap_or_default());
        s.pending_pos = end;
        let left = s.pending.len() - end;
        if left == 0 {
            s.drop_pending();
            Status::Success
        } else {
            remaining_status(left)
        }
    }

    fn select(
        &mut self,
        channel: usize,
        cmd: &CommandView<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        self.session.chain.clear();
        let p2 = cmd.p2();
        if p2 & 0x03 != 0 || p2 & 0xF0 != 0 {
            return Err(Status::IncorrectP1P2);
        }
        let aid = cmd.data();
        // A failed SELECT keeps the current applet (GlobalPlatform behaviour).
        let (index, applet) = self
            .applets
            .iter()
            .enumerate()
            .find(|(_, a)| a.selects(aid))
            .ok_or(Status::NotFound)?;
        if p2 & 0x0C != 0x0C {
            applet.push_select_response(out, aid);
        }
        if let Some(c) = self.session.channels.get_mut(channel) {
            c.selected = Some(index);
        }
        Ok(())
    }

    fn manage_channel(&mut self, cmd: &CommandView<'_>, out: &mut Vec<u8>) -> Result<(), Status> {
        if !cmd.data().is_empty() {
            return Err(Status::WrongLength);
        }
        let channels = &mut self.session.channels;
        match (cmd.p1(), cmd.p2()) {
            (0x00, 0x00) => {
                let (n, c) = channels
                    .iter_mut()
                    .enumerate()
                    .skip(1)
                    .find(|(_, c)| !c.open)
                    .ok_or(Status::FunctionNotSupported)?;
                *c = Channel {
                    open: true,
                    selected: None,
                };
                out.push(n as u8);
                Ok(())
            }
            (0x00, n) => {
                let c = channels
                    .get_mut(usize::from(n))
                    .ok_or(Status::IncorrectP1P2)?;
                if c.open {
                    return Err(Status::ConditionsNotSatisfied);
                }
                *c = Channel {
                    open: true,
                    selected: None,
                };
                Ok(())
            }
            (0x80, n) if n != 0 => {
                let c = channels
                    .get_mut(usize::from(n))
                    .ok_or(Status::IncorrectP1P2)?;
                if !c.open {
                    return Err(Status::ReferencedDataNotFound);
                }
                *c = Channel::default();
                Ok(())
            }
            _ => Err(Status::IncorrectP1P2),
        }
    }

    fn get_challenge(&mut self, cmd: &CommandView<'_>, out: &mut Vec<u8>) -> Result<(), Status> {
        if (cmd.p1(), cmd.p2()) != (0x00, 0x00) {
            return Err(Status::IncorrectP1P2);
        }
        match (cmd.data(), cmd.le()) {
            ([], Some(n)) if n <= 256 => {
                out.resize(n, 0);
                self.rng.fill_bytes(out);
                Ok(())
            }
            _ => Err(Status::WrongLength),
        }
    }
}

const fn remaining_status(left: usize) -> Status {
    Status::BytesRemaining(if left >= 256 { 0 } else { left as u8 })
}
