//! The card's applets. Each sees one parsed command and writes one reply;
//! SELECT by AID, GET RESPONSE and chaining of responses are the
//! dispatcher's (see [`crate::card`]). The CAC applets share the
//! card-global [`SecurityEnvironment`]: its commands (VERIFY, CHANGE
//! REFERENCE DATA, RESET RETRY COUNTER) go to it whichever of them is
//! selected. The PIV applet keeps its own security state and answers
//! them itself.

use rand_core::CryptoRng;
use zeroize::Zeroize;

use crate::apdu::CommandView;
use crate::keys::KeyBackend;
use crate::security::{self, SecurityEnvironment};
use crate::status::Status;
use crate::store::Store;

pub(crate) mod aca;
pub(crate) mod ccc;
pub(crate) mod container;
pub(crate) mod gp;
pub(crate) mod piv;
pub(crate) mod pki;
pub(crate) mod pnp;

/// Applet information value of GET PROPERTIES (tag `01`): family `10`,
/// version `02 06 02 03`.
pub(crate) const APPLET_INFO: [u8; 5] = [0x10, 0x02, 0x06, 0x02, 0x03];
/// The ACA's applet information (version ends in `02`).
pub(crate) const ACA_APPLET_INFO: [u8; 5] = [0x10, 0x02, 0x06, 0x02, 0x02];

/// Registered application provider ID of DoD CAC applets.
pub(crate) const CAC_RID: [u8; 5] = [0xA0, 0x00, 0x00, 0x00, 0x79];

/// What an applet may touch besides its own (immutable) data.
pub(crate) struct Ctx<'a> {
    /// The security environment of the applet being called.
    pub(crate) security: &'a mut dyn SecurityEnvironment,
    /// The card's RNG (blinding, challenges).
    pub(crate) rng: &'a mut dyn CryptoRng,
    /// The SIGN/DECRYPT chaining buffer.
    pub(crate) chain: &'a mut Chain,
    /// Index of the applet being called (chains remember their owner).
    pub(crate) me: usize,
    /// Where persistent changes go before a command answers `90 00`.
    pub(crate) store: &'a mut dyn Store,
    /// Number of this command in the session (a CLA-chained command
    /// counts once): PIV's "PIN Always" compares it with the VERIFY's.
    pub(crate) command: u64,
    /// Makes keys for on-card generation, if the card can.
    pub(crate) generator: Option<&'a dyn KeyBackend>,
}

/// The half-built input of a chained SIGN / DECRYPT (P1 = `80`).
#[derive(Default)]
pub(crate) struct Chain {
    owner: Option<usize>,
    buf: Vec<u8>,
}

impl Chain {
    /// Drops the chain, wiping its bytes.
    pub(crate) fn clear(&mut self) {
        self.owner = None;
        // Every SELECT clears the chain: wipe only when there is something
        // to wipe. `buf` is only ever emptied by `zeroize`, which also
        // zeroes the spare capacity, so an empty `buf` holds no secret.
        if !self.buf.is_empty() {
            self.buf.zeroize();
        }
    }

    /// Appends a block for applet `owner`, restarting the chain when it
    /// belonged to another applet. Fails (and clears) past `limit` bytes.
    pub(crate) fn push(&mut self, owner: usize, data: &[u8], limit: usize) -> Result<(), Status> {
        if self.owner != Some(owner) {
            self.clear();
            self.owner = Some(owner);
        }
        if self.buf.len() + data.len() > limit {
            self.clear();
            return Err(Status::WrongLength);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

/// Every applet the card can hold.
pub(crate) enum Applet {
    /// Card Capabilities Container.
    Ccc(ccc::Ccc),
    /// Access Control Applet.
    Aca(aca::Aca),
    /// One certificate and its private key.
    Pki(pki::Pki),
    /// GlobalPlatform card manager (CPLC, card data).
    Gp(gp::CardManager),
    /// Microsoft smart card Plug and Play.
    Pnp(pnp::PlugAndPlay),
    /// The PIV card application, with its own security state.
    Piv(Box<piv::Piv>),
}

impl Applet {
    pub(crate) fn aid(&self) -> &[u8] {
        match self {
            Applet::Ccc(_) => &ccc::AID,
            Applet::Aca(_) => &aca::AID,
            Applet::Pki(a) => a.aid(),
            Applet::Gp(_) => &gp::AID,
            Applet::Pnp(_) => &pnp::AID,
            Applet::Piv(_) => &piv::options::PIV_AID,
        }
    }

    /// True when SELECT by `aid` picks this applet: the exact AID, or for
    /// PIV any prefix of at least 5 bytes.
    pub(crate) fn selects(&self, aid: &[u8]) -> bool {
        match self {
            Applet::Piv(_) => piv::selects(aid),
            other => other.aid() == aid,
        }
    }

    /// What SELECT answers: the FCI, or PIV's application property template.
    pub(crate) fn push_select_response(&self, out: &mut Vec<u8>, aid: &[u8]) {
        match self {
            Applet::Piv(_) => piv::push_apt(out),
            _ => push_fci(out, aid),
        }
    }

    /// True when the dispatcher may assemble CLA-chained commands for it
    /// (and answers its case-3 commands as if Le were 256: PIV).
    pub(crate) fn accepts_chaining(&self) -> bool {
        matches!(self, Applet::Piv(_))
    }

    /// Power-off / reset: clears the applet's own volatile state.
    pub(crate) fn reset_session(&mut self) {
        if let Applet::Piv(p) = self {
            p.reset_session();
        }
    }

    pub(crate) fn process(
        &mut self,
        cmd: &CommandView<'_>,
        ctx: &mut Ctx<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        if security::is_security_command(cmd.ins()) && !matches!(self, Applet::Piv(_)) {
            return ctx.security.process(cmd);
        }
        match self {
            Applet::Ccc(a) => a.process(cmd, out),
            Applet::Aca(a) => a.process(cmd, out),
            Applet::Pki(a) => a.process(cmd, ctx, out),
            Applet::Gp(a) => a.process(cmd, out),
            Applet::Pnp(a) => a.process(cmd, out),
            Applet::Piv(a) => a.process(cmd, ctx, out),
        }
    }
}

/// Appends the FCI a SELECT by AID answers with: `6F L 84 len AID A5 00`.
pub(crate) fn push_fci(out: &mut Vec<u8>, aid: &[u8]) {
    // AIDs are at most 16 bytes, so every length fits one byte.
    let aid_len = aid.len().min(16);
    out.extend_from_slice(&[0x6F, (aid_len + 4) as u8, 0x84, aid_len as u8]);
    out.extend_from_slice(aid.get(..aid_len).unwrap_or(aid));
    out.extend_from_slice(&[0xA5, 0x00]);
}
