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
use crate::applet::{self, aca, ccc, gp, pki, pnp, Applet, Chain, Ctx};
use crate::atr::Atr;
use crate::keys::KeyHandle;
use crate::pin::PinPolicy;
use crate::security::{self, CacPin, SecurityEnvironment};
use crate::status::Status;

/// Most PKI applets a card can hold (`A0 00 00 00 79 01 00`..`0F`).
pub const MAX_IDENTITIES: usize = 16;
/// Logical channels supported (0 is always open).
pub const CHANNELS: usize = 4;

const INS_SELECT: u8 = 0xA4;
const INS_GET_RESPONSE: u8 = 0xC0;
const INS_MANAGE_CHANNEL: u8 = 0x70;
const INS_GET_CHALLENGE: u8 = 0x84;

/// One certificate of the card and the private key that goes with it.
#[derive(Clone)]
pub struct Identity {
    certificate: Vec<u8>,
    key: Option<Arc<dyn KeyHandle>>,
    compress: bool,
}

impl Identity {
    /// A certificate (DER) with its private key.
    pub fn new(certificate_der: Vec<u8>, key: Arc<dyn KeyHandle>) -> Identity {
        Identity {
            certificate: certificate_der,
            key: Some(key),
            compress: false,
        }
    }

    /// A certificate without a private key (its PKI applet reports the key
    /// as not initialised and refuses SIGN with `6A 88`).
    pub fn certificate_only(certificate_der: Vec<u8>) -> Identity {
        Identity {
            certificate: certificate_der,
            key: None,
            compress: false,
        }
    }

    /// Stores the certificate zlib-compressed (CertInfo `01`), as real cards
    /// do. OpenSC and CACKey decompress it.
    pub fn compressed(mut self, compress: bool) -> Identity {
        self.compress = compress;
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
        }
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

        Ok(Card {
            atr: self.atr,
            applets,
            card_id,
            security: self.security,
            exact_le: self.exact_le,
            session: Session::new(),
            rng: Box::new(rng),
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

/// Volatile state: cleared by power-off, reset and removal.
struct Session {
    channels: [Channel; CHANNELS],
    chain: Chain,
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
            return Status::ChainingNotSupported;
        }
        if !self.session.channels.get(channel).is_some_and(|c| c.open) {
            self.session.drop_pending();
            return Status::ChannelNotSupported;
        }
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
        let secret = cmd.ins() == pki::INS_SIGN_DECRYPT;
        let sw = match result {
            Ok(()) => self.deliver(&mut out, cmd, secret, response),
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
        let Some((index, applet)) = selected.and_then(|i| self.applets.get(i).map(|a| (i, a)))
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
        response: &mut Vec<u8>,
    ) -> Status {
        if data.is_empty() {
            return Status::Success;
        }
        let Some(le) = cmd.le() else {
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
        let index = self
            .applets
            .iter()
            .position(|a| a.aid() == aid)
            .ok_or(Status::NotFound)?;
        if let Some(c) = self.session.channels.get_mut(channel) {
            c.selected = Some(index);
        }
        if p2 & 0x0C != 0x0C {
            applet::push_fci(out, aid);
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
