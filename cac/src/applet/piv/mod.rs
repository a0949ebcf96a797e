//! The PIV card application (NIST SP 800-73-4), as OpenSC 0.23 and
//! yubico-piv-tool 2.2 use it.
//!
//! It keeps its own security state — PIN `80`, PUK `81`, management key
//! `9B` — apart from the CAC applets' card-global PIN: VERIFY, CHANGE
//! REFERENCE DATA and RESET RETRY COUNTER sent while PIV is selected come
//! here. Every persistent change goes through the card's
//! [`Store`](crate::store::Store) before the command answers `90 00`.
//!
//! ```text
//!  SELECT A0 00 00 03 08 … ─► APT
//!  GET DATA / PUT DATA ─────► object table (53 L … per tag)
//!  VERIFY / CHANGE / RESET ─► PivSecurity ─► Change::PivCredentials
//!  GENERAL AUTHENTICATE ────► 9B: management key · 9A/9C/9D/9E/82–95: KeyHandle
//!  GENERATE ────────────────► KeyBackend::generate ─► Change::PivKey
//! ```

pub(crate) mod ber;
pub(crate) mod mgmt;
pub(crate) mod objects;
pub(crate) mod options;
pub(crate) mod signed;

use std::collections::BTreeMap;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::Ctx;
use crate::apdu::CommandView;
use crate::keys::{KeyAlgorithm, KeyError, KeyHandle};
use crate::pin::{Pin, PIN_BLOCK_LEN};
use crate::status::Status;
use crate::store::Change;
use options::{is_key_slot, ManagementKey, PivOptions, PIV_AID};

/// GENERAL AUTHENTICATE.
pub(crate) const INS_GENERAL_AUTHENTICATE: u8 = 0x87;
const INS_GET_DATA: u8 = 0xCB;
const INS_PUT_DATA: u8 = 0xDB;
const INS_GENERATE: u8 = 0x47;
const INS_VERIFY: u8 = 0x20;
const INS_CHANGE: u8 = 0x24;
const INS_RESET_RETRY: u8 = 0x2C;

/// Key reference of the card management key.
const MGMT_SLOT: u8 = 0x9B;

/// True when `aid` selects PIV: any prefix of at least the 5-byte RID.
pub(crate) fn selects(aid: &[u8]) -> bool {
    aid.len() >= 5 && PIV_AID.starts_with(aid)
}

/// Appends the Application Property Template SELECT answers with.
pub(crate) fn push_apt(out: &mut Vec<u8>) {
    let mut v = Vec::with_capacity(0x40);
    ber::push(&mut v, &[0x4F], &[0x00, 0x00, 0x10, 0x00, 0x01, 0x00]);
    ber::push(&mut v, &[0x79], &[0x4F, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08]);
    ber::push(&mut v, &[0x50], b"vcac PIV");
    let mut algs = Vec::with_capacity(27);
    for id in [0x03, 0x08, 0x0A, 0x0C, 0x06, 0x07, 0x05, 0x11, 0x14] {
        algs.extend_from_slice(&[0x80, 0x01, id]);
    }
    algs.extend_from_slice(&[0x06, 0x01, 0x00]);
    ber::push(&mut v, &[0xAC], &algs);
    ber::push(out, &[0x61], &v);
}

/// SP 800-78 algorithm identifier of a key (GA / GENERATE P1).
const fn algorithm_id(a: KeyAlgorithm) -> Option<u8> {
    match a {
        KeyAlgorithm::Rsa { bits: 1024 } => Some(0x06),
        KeyAlgorithm::Rsa { bits: 2048 } => Some(0x07),
        KeyAlgorithm::Rsa { bits: 3072 } => Some(0x05),
        KeyAlgorithm::Rsa { bits: 4096 } => Some(0x16),
        KeyAlgorithm::EcP256 => Some(0x11),
        KeyAlgorithm::EcP384 => Some(0x14),
        _ => None,
    }
}

const fn algorithm_of(id: u8) -> Option<KeyAlgorithm> {
    match id {
        0x06 => Some(KeyAlgorithm::Rsa { bits: 1024 }),
        0x07 => Some(KeyAlgorithm::Rsa { bits: 2048 }),
        0x05 => Some(KeyAlgorithm::Rsa { bits: 3072 }),
        0x11 => Some(KeyAlgorithm::EcP256),
        0x14 => Some(KeyAlgorithm::EcP384),
        _ => None,
    }
}

/// A PIN or PUK with its counter.
struct Credential {
    value: Pin,
    max: u8,
    left: u8,
}

enum Outcome {
    Ok,
    Wrong,
    Blocked,
}

impl Credential {
    fn check(&mut self, block: &[u8]) -> Outcome {
        if self.left == 0 {
            return Outcome::Blocked;
        }
        if self.value.matches(block) {
            Outcome::Ok
        } else {
            self.left -= 1;
            Outcome::Wrong
        }
    }
}

/// What GENERAL AUTHENTICATE with 9B is waiting for.
enum Pending {
    /// Mutual authentication: the witness sent encrypted.
    Witness(Zeroizing<Vec<u8>>),
    /// External authentication: the challenge sent in clear.
    Challenge(Zeroizing<Vec<u8>>),
}

/// The PIV security environment (persistent credentials, volatile login).
struct PivSecurity {
    pin: Credential,
    puk: Credential,
    management_key: ManagementKey,
    verified: bool,
    /// Command number of the last successful VERIFY (PIN Always for 9C).
    verified_at: Option<u64>,
    admin: bool,
    pending: Option<Pending>,
}

/// The PIV applet.
pub(crate) struct Piv {
    objects: BTreeMap<Vec<u8>, Vec<u8>>,
    keys: BTreeMap<u8, Arc<dyn KeyHandle>>,
    security: PivSecurity,
}

/// One identity in a slot: `(slot, certificate DER, private key)`.
pub(crate) type SlotIdentity<'a> = (u8, &'a [u8], Option<Arc<dyn KeyHandle>>);

/// What a PIV applet is built from.
pub(crate) struct PivBuild<'a> {
    pub(crate) card_id: &'a [u8],
    pub(crate) identities: Vec<SlotIdentity<'a>>,
    pub(crate) options: PivOptions,
}

impl Piv {
    pub(crate) fn new(build: PivBuild<'_>) -> Piv {
        let first = build.identities.first().map(|(_, c, _)| *c);
        let (holder, expiry) = first.map(describe).unwrap_or_default();
        let inputs = objects::Inputs {
            card_id: build.card_id,
            certificates: build.identities.iter().map(|(s, c, _)| (*s, *c)).collect(),
            holder,
            expiry: expiry.unwrap_or(*b"20341230"),
        };
        let mut table = objects::build(&inputs);
        let mut keys = BTreeMap::new();
        for (slot, _, key) in build.identities {
            if let Some(key) = key {
                keys.insert(slot, key);
            }
        }
        let o = build.options;
        for (slot, key) in o.keys {
            keys.insert(slot, key);
        }
        for (tag, object) in o.objects {
            if object == [0x53, 0x00] {
                table.remove(&tag);
            } else {
                table.insert(tag, object);
            }
        }
        Piv {
            objects: table,
            keys,
            security: PivSecurity {
                pin: Credential {
                    value: o.pin,
                    max: o.pin_max,
                    left: o.pin_left,
                },
                puk: Credential {
                    value: o.puk,
                    max: o.puk_max,
                    left: o.puk_left,
                },
                management_key: o.management_key,
                verified: false,
                verified_at: None,
                admin: false,
                pending: None,
            },
        }
    }

    /// Power-off / reset: logs out, forgets the management-key state.
    pub(crate) fn reset_session(&mut self) {
        let s = &mut self.security;
        s.verified = false;
        s.verified_at = None;
        s.admin = false;
        s.pending = None;
    }

    /// True after a successful VERIFY of the PIV PIN.
    pub(crate) fn is_verified(&self) -> bool {
        self.security.verified
    }

    /// PIN tries left.
    pub(crate) fn pin_tries_left(&self) -> u8 {
        self.security.pin.left
    }

    pub(crate) fn process(
        &mut self,
        cmd: &CommandView<'_>,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        if cmd.cla().0 & 0xF0 != 0 {
            return Err(Status::ClaNotSupported);
        }
        match cmd.ins() {
            INS_GET_DATA => self.get_data(cmd, out),
            INS_PUT_DATA => self.put_data(cmd, ctx),
            INS_VERIFY => self.verify(cmd, ctx),
            INS_CHANGE => self.change_reference_data(cmd, ctx),
            INS_RESET_RETRY => self.reset_retry_counter(cmd, ctx),
            INS_GENERAL_AUTHENTICATE => self.general_authenticate(cmd, ctx, out),
            INS_GENERATE => self.generate(cmd, ctx, out),
            0xA4 => Err(Status::IncorrectP1P2),
            _ => Err(Status::InsNotSupported),
        }
    }

    fn get_data(&self, cmd: &CommandView<'_>, out: &mut Vec<u8>) -> Result<(), Status> {
        if (cmd.p1(), cmd.p2()) != (0x3F, 0xFF) {
            return Err(Status::IncorrectP1P2);
        }
        let tag = ber::only(cmd.data(), &[0x5C]).ok_or(Status::IncorrectData)?;
        if !objects::is_object_tag(tag) {
            return Err(Status::NotFound);
        }
        let object = self.objects.get(tag).ok_or(Status::NotFound)?;
        if objects::needs_pin(tag) && !self.security.verified {
            return Err(Status::SecurityNotSatisfied);
        }
        out.extend_from_slice(object);
        Ok(())
    }

    fn put_data(&mut self, cmd: &CommandView<'_>, ctx: &mut Ctx<'_>) -> Result<(), Status> {
        if (cmd.p1(), cmd.p2()) != (0x3F, 0xFF) {
            return Err(Status::IncorrectP1P2);
        }
        if !self.security.admin {
            return Err(Status::SecurityNotSatisfied);
        }
        let (tag_tag, tag, object) = ber::split(cmd.data()).ok_or(Status::IncorrectData)?;
        if tag_tag != [0x5C] || !objects::is_object_tag(tag) {
            return Err(Status::IncorrectData);
        }
        let outer: &[u8] = match tag {
            [0x7E] => &[0x7E],
            [0x7F, 0x61] => &[0x7F, 0x61],
            _ => &[0x53],
        };
        if ber::only(object, outer).is_none() {
            return Err(Status::IncorrectData);
        }
        ctx.store
            .persist(&Change::PivObject { tag, object })
            .map_err(|_| Status::MemoryFailure)?;
        if object == [0x53, 0x00] {
            self.objects.remove(tag);
        } else {
            self.objects.insert(tag.to_vec(), object.to_vec());
        }
        Ok(())
    }

    fn persist_credentials(&self, ctx: &mut Ctx<'_>) -> Result<(), Status> {
        let s = &self.security;
        ctx.store
            .persist(&Change::PivCredentials {
                pin: s.pin.value.block(),
                pin_tries_left: s.pin.left,
                puk: s.puk.value.block(),
                puk_tries_left: s.puk.left,
            })
            .map_err(|_| Status::MemoryFailure)
    }

    fn verify(&mut self, cmd: &CommandView<'_>, ctx: &mut Ctx<'_>) -> Result<(), Status> {
        match (cmd.p1(), cmd.p2()) {
            (0xFF, 0x80) if cmd.data().is_empty() => {
                self.security.verified = false;
                self.security.verified_at = None;
                Ok(())
            }
            (0xFF, 0x80) => Err(Status::WrongLength),
            (0x00, 0x80) => {
                let data = cmd.data();
                let s = &mut self.security;
                if data.is_empty() {
                    return if s.verified {
                        Ok(())
                    } else if s.pin.left == 0 {
                        Err(Status::AuthBlocked)
                    } else {
                        Err(Status::VerifyFailed {
                            tries_left: s.pin.left,
                        })
                    };
                }
                if Pin::from_block(data).is_err() {
                    return Err(Status::IncorrectData);
                }
                let before = s.pin.left;
                match s.pin.check(data) {
                    Outcome::Ok => {
                        s.verified = true;
                        s.verified_at = Some(ctx.command);
                        if before != s.pin.max {
                            s.pin.left = s.pin.max;
                            self.persist_credentials(ctx)?;
                        }
                        Ok(())
                    }
                    Outcome::Wrong => {
                        s.verified = false;
                        s.verified_at = None;
                        let left = s.pin.left;
                        self.persist_credentials(ctx)?;
                        Err(Status::VerifyFailed { tries_left: left })
                    }
                    Outcome::Blocked => {
                        s.verified = false;
                        Err(Status::AuthBlocked)
                    }
                }
            }
            (0x00 | 0xFF, _) => Err(Status::ReferencedDataNotFound),
            _ => Err(Status::IncorrectP1P2),
        }
    }

    /// Splits `old ‖ new` (8 + 8 bytes) and validates the new value.
    fn two_blocks(data: &[u8]) -> Result<(&[u8], Pin), Status> {
        let (old, new) = data
            .split_at_checked(PIN_BLOCK_LEN)
            .filter(|(_, new)| new.len() == PIN_BLOCK_LEN)
            .ok_or(Status::IncorrectData)?;
        let new = Pin::from_block(new).map_err(|_| Status::IncorrectData)?;
        Ok((old, new))
    }

    fn change_reference_data(
        &mut self,
        cmd: &CommandView<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), Status> {
        if cmd.p1() != 0x00 {
            return Err(Status::IncorrectP1P2);
        }
        let is_pin = match cmd.p2() {
            0x80 => true,
            0x81 => false,
            _ => return Err(Status::ReferencedDataNotFound),
        };
        let (old, new) = Self::two_blocks(cmd.data())?;
        let s = &mut self.security;
        let cred = if is_pin { &mut s.pin } else { &mut s.puk };
        match cred.check(old) {
            Outcome::Blocked => Err(Status::AuthBlocked),
            Outcome::Wrong => {
                let left = cred.left;
                if is_pin {
                    s.verified = false;
                }
                self.persist_credentials(ctx)?;
                Err(Status::VerifyFailed { tries_left: left })
            }
            Outcome::Ok => {
                let previous = (core::mem::replace(&mut cred.value, new), cred.left);
                cred.left = cred.max;
                if let Err(e) = self.persist_credentials(ctx) {
                    let s = &mut self.security;
                    let cred = if is_pin { &mut s.pin } else { &mut s.puk };
                    (cred.value, cred.left) = previous;
                    return Err(e);
                }
                if is_pin {
                    self.security.verified = true;
                    self.security.verified_at = Some(ctx.command);
                }
                Ok(())
            }
        }
    }

    fn reset_retry_counter(
        &mut self,
        cmd: &CommandView<'_>,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), Status> {
        if cmd.p1() != 0x00 {
            return Err(Status::IncorrectP1P2);
        }
        if cmd.p2() != 0x80 {
            return Err(Status::ReferencedDataNotFound);
        }
        let (puk, new) = Self::two_blocks(cmd.data())?;
        let s = &mut self.security;
        match s.puk.check(puk) {
            Outcome::Blocked => Err(Status::AuthBlocked),
            Outcome::Wrong => {
                let left = s.puk.left;
                self.persist_credentials(ctx)?;
                Err(Status::VerifyFailed { tries_left: left })
            }
            Outcome::Ok => {
                let previous = (
                    core::mem::replace(&mut s.pin.value, new),
                    s.pin.left,
                    s.puk.left,
                );
                s.pin.left = s.pin.max;
                s.puk.left = s.puk.max;
                if let Err(e) = self.persist_credentials(ctx) {
                    let s = &mut self.security;
                    (s.pin.value, s.pin.left, s.puk.left) = previous;
                    return Err(e);
                }
                Ok(())
            }
        }
    }

    fn general_authenticate(
        &mut self,
        cmd: &CommandView<'_>,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        let template = ber::only(cmd.data(), &[0x7C]).ok_or(Status::IncorrectData)?;
        let e = Elements::parse(template).ok_or(Status::IncorrectData)?;
        let (p1, p2) = (cmd.p1(), cmd.p2());
        if p2 == MGMT_SLOT {
            return self.management(p1, &e, ctx, out);
        }
        if !is_key_slot(p2) {
            return Err(Status::ReferencedDataNotFound);
        }
        let key = self.keys.get(&p2).ok_or(Status::ReferencedDataNotFound)?;
        if algorithm_id(key.algorithm()) != Some(p1) {
            return Err(Status::IncorrectP1P2);
        }
        let s = &self.security;
        let allowed = match p2 {
            0x9E => true,
            // PIN Always: the VERIFY must be the command just before.
            0x9C => s.verified && s.verified_at == Some(ctx.command.wrapping_sub(1)),
            _ => s.verified,
        };
        if !allowed {
            return Err(Status::SecurityNotSatisfied);
        }
        if e.response != Some(&[]) || e.witness.is_some() {
            return Err(Status::IncorrectData);
        }
        let mut result = Zeroizing::new(Vec::with_capacity(512));
        let done = match (e.challenge, e.exponent) {
            (Some(input), None) if !input.is_empty() => key.private_op(input, ctx.rng, &mut result),
            (None, Some(point)) if !matches!(key.algorithm(), KeyAlgorithm::Rsa { .. }) => {
                key.ecdh(point, &mut result)
            }
            _ => return Err(Status::IncorrectData),
        };
        done.map_err(|e| match e {
            KeyError::InvalidInput | KeyError::Unsupported(_) => Status::IncorrectData,
            _ => Status::ExecutionError,
        })?;
        let mut inner = Zeroizing::new(Vec::with_capacity(result.len() + 4));
        ber::push(&mut inner, &[0x82], &result);
        ber::push(out, &[0x7C], &inner);
        Ok(())
    }

    fn management(
        &mut self,
        p1: u8,
        e: &Elements<'_>,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        let s = &mut self.security;
        let key = &s.management_key;
        // OpenSC asks for challenges with P1 00 whatever the algorithm.
        if p1 != key.algorithm.id() && p1 != 0x00 {
            return Err(Status::IncorrectP1P2);
        }
        let block = key.algorithm.block_len();
        match (e.witness, e.challenge, e.response) {
            // Mutual authentication, step 1: an encrypted witness.
            (Some([]), None, None) => {
                let mut witness = Zeroizing::new(vec![0u8; block]);
                ctx.rng.fill_bytes(&mut witness);
                let mut encrypted = witness.clone();
                mgmt::encrypt(key, &mut encrypted).map_err(|_| Status::ExecutionError)?;
                s.pending = Some(Pending::Witness(witness));
                push_template(out, 0x80, &encrypted);
                Ok(())
            }
            // Step 2: the decrypted witness and the host's challenge.
            (Some(witness), Some(challenge), None | Some([])) => {
                let expected = match s.pending.take() {
                    Some(Pending::Witness(w)) => w,
                    _ => return Err(Status::ConditionsNotSatisfied),
                };
                if witness.len() != block
                    || challenge.len() != block
                    || !bool::from(expected.ct_eq(witness))
                {
                    s.admin = false;
                    return Err(Status::SecurityNotSatisfied);
                }
                let mut answer = Zeroizing::new(challenge.to_vec());
                mgmt::encrypt(key, &mut answer).map_err(|_| Status::ExecutionError)?;
                s.admin = true;
                push_template(out, 0x82, &answer);
                Ok(())
            }
            // External authentication step 1, and OpenSC's random numbers.
            (None, Some([]), None) => {
                let mut challenge = Zeroizing::new(vec![0u8; block]);
                ctx.rng.fill_bytes(&mut challenge);
                push_template(out, 0x81, &challenge);
                s.pending = Some(Pending::Challenge(challenge));
                Ok(())
            }
            // External authentication step 2: the encrypted challenge.
            (None, None, Some(response)) if !response.is_empty() => {
                let challenge = match s.pending.take() {
                    Some(Pending::Challenge(c)) => c,
                    _ => return Err(Status::ConditionsNotSatisfied),
                };
                let mut expected = challenge.clone();
                mgmt::encrypt(key, &mut expected).map_err(|_| Status::ExecutionError)?;
                let ok = response.len() == expected.len() && bool::from(expected.ct_eq(response));
                s.admin = ok;
                if ok {
                    Ok(())
                } else {
                    Err(Status::SecurityNotSatisfied)
                }
            }
            _ => Err(Status::IncorrectData),
        }
    }

    fn generate(
        &mut self,
        cmd: &CommandView<'_>,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        let slot = cmd.p2();
        if cmd.p1() != 0x00 || !is_key_slot(slot) {
            return Err(Status::IncorrectP1P2);
        }
        if !self.security.admin {
            return Err(Status::SecurityNotSatisfied);
        }
        let mut rest = ber::only(cmd.data(), &[0xAC]).ok_or(Status::IncorrectData)?;
        let mut algorithm = None;
        while !rest.is_empty() {
            let (tag, value, more) = ber::split(rest).ok_or(Status::IncorrectData)?;
            match (tag, value) {
                ([0x80], [id]) => algorithm = Some(algorithm_of(*id).ok_or(Status::IncorrectData)?),
                // PIN and touch policies (Yubico): accepted, not enforced.
                ([0xAA | 0xAB], [_]) => {}
                _ => return Err(Status::IncorrectData),
            }
            rest = more;
        }
        let algorithm = algorithm.ok_or(Status::IncorrectData)?;
        let generator = ctx.generator.ok_or(Status::FunctionNotSupported)?;
        let key = generator
            .generate(algorithm, ctx.rng)
            .map_err(|_| Status::ExecutionError)?;
        ctx.store
            .persist(&Change::PivKey {
                slot,
                pkcs8_der: &key.pkcs8_der,
            })
            .map_err(|_| Status::MemoryFailure)?;
        let public = public_key_template(key.handle.public_key_der())?;
        self.keys.insert(slot, key.handle);
        out.extend_from_slice(&public);
        Ok(())
    }
}

/// `7C L tag L value`.
fn push_template(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    let mut inner = Zeroizing::new(Vec::with_capacity(value.len() + 4));
    ber::push(&mut inner, &[tag], value);
    ber::push(out, &[0x7C], &inner);
    inner.zeroize();
}

/// `7F49 L { 81 n, 82 e }` (RSA) or `7F49 L { 86 point }` (EC) from an SPKI.
fn public_key_template(spki_der: &[u8]) -> Result<Vec<u8>, Status> {
    let spki = spki::SubjectPublicKeyInfoRef::try_from(spki_der).map_err(|_| Status::Unknown)?;
    let bits = spki.subject_public_key.raw_bytes();
    let mut inner = Vec::with_capacity(bits.len() + 16);
    if spki.algorithm.oid == spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1") {
        let rsa = pkcs1::RsaPublicKey::<der::asn1::UintRef<'_>>::try_from(bits)
            .map_err(|_| Status::Unknown)?;
        ber::push(&mut inner, &[0x81], rsa.modulus.as_bytes());
        ber::push(&mut inner, &[0x82], rsa.public_exponent.as_bytes());
    } else {
        ber::push(&mut inner, &[0x86], bits);
    }
    let mut out = Vec::with_capacity(inner.len() + 5);
    ber::push(&mut out, &[0x7F, 0x49], &inner);
    Ok(out)
}

/// The elements of a dynamic authentication template (`7C`).
#[derive(Default)]
struct Elements<'a> {
    witness: Option<&'a [u8]>,
    challenge: Option<&'a [u8]>,
    response: Option<&'a [u8]>,
    exponent: Option<&'a [u8]>,
}

impl<'a> Elements<'a> {
    fn parse(mut rest: &'a [u8]) -> Option<Elements<'a>> {
        let mut e = Elements::default();
        while !rest.is_empty() {
            let (tag, value, more) = ber::split(rest)?;
            let slot = match tag {
                [0x80] => &mut e.witness,
                [0x81] => &mut e.challenge,
                [0x82] => &mut e.response,
                [0x85] => &mut e.exponent,
                _ => return None,
            };
            if slot.replace(value).is_some() {
                return None;
            }
            rest = more;
        }
        Some(e)
    }
}

/// The first certificate's subject CN and notAfter date (`YYYYMMDD`).
fn describe(cert: &[u8]) -> (String, Option<[u8; 8]>) {
    use der::Decode;
    let Ok(cert) = x509_cert::Certificate::from_der(cert) else {
        return (String::new(), None);
    };
    let tbs = cert.tbs_certificate();
    let subject = tbs.subject().to_string();
    let cn = subject
        .split(',')
        .find_map(|rdn| rdn.trim().strip_prefix("CN="))
        .unwrap_or_default()
        .to_owned();
    let t = tbs.validity().not_after.to_date_time();
    let date = format!("{:04}{:02}{:02}", t.year(), t.month(), t.day());
    let expiry = date.as_bytes().try_into().ok();
    (cn, expiry)
}
