//! The card's side of the T=1 block protocol (ISO 7816-3 §11), for a
//! TPDU-level reader: the host's driver sends blocks, the card (here, the
//! reader on its behalf) answers blocks.
//!
//! ```text
//!  block = NAD PCB LEN INF[LEN] LRC
//!  PCB   0nm0 0000  I-block, N(S) = n, more = m
//!        100n 00ee  R-block, N(R) = n, error ee (01 EDC, 10 other)
//!        11rt tttt  S-block, r = response: 00 RESYNCH, 01 IFS, 02 ABORT, 03 WTX
//! ```
//!
//! Only LRC is offered (an ATR asking for CRC is not supported at TPDU
//! level; SetParameters refuses CRC).

/// Largest INF.
pub(crate) const MAX_INF: usize = 254;
/// Longest command the chain buffer accepts (an extended APDU).
pub(crate) const MAX_APDU: usize = 4 + 3 + 65_535 + 3;

const PCB_R: u8 = 0x80;
const PCB_S: u8 = 0xC0;
const S_RESPONSE: u8 = 0x20;
const S_RESYNCH: u8 = 0x00;
const S_IFS: u8 = 0x01;
const S_ABORT: u8 = 0x02;
const R_EDC_ERROR: u8 = 0x01;
const R_OTHER_ERROR: u8 = 0x02;

/// Per-slot T=1 state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct T1State {
    /// N(S) of the next I-block the card sends.
    pub(crate) ns: bool,
    /// N(S) expected in the host's next I-block.
    pub(crate) nr: bool,
    /// Largest INF the host accepts (IFSD), 32 until negotiated.
    pub(crate) ifsd: u8,
    /// NAD to answer with (the host's, SAD and DAD swapped).
    pub(crate) nad: u8,
    /// Command being received in chained I-blocks.
    pub(crate) rx: Vec<u8>,
    /// Response not yet sent.
    pub(crate) tx: Vec<u8>,
    pub(crate) tx_pos: usize,
    /// The last block sent, for retransmission.
    pub(crate) last: Vec<u8>,
}

impl Default for T1State {
    fn default() -> T1State {
        T1State {
            ns: false,
            nr: false,
            ifsd: 32,
            nad: 0,
            rx: Vec::new(),
            tx: Vec::new(),
            tx_pos: 0,
            last: Vec::new(),
        }
    }
}

/// What a host block asks the reader to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum T1Action {
    /// Answer with this block, no card involved.
    Reply(Vec<u8>),
    /// A whole command arrived: run it, then [`T1State::respond`].
    Apdu(Vec<u8>),
}

/// One block with its LRC.
pub(crate) fn block(nad: u8, pcb: u8, inf: &[u8]) -> Vec<u8> {
    let inf = inf.get(..MAX_INF).unwrap_or(inf);
    let mut b = Vec::with_capacity(4 + inf.len());
    b.push(nad);
    b.push(pcb);
    b.push(inf.len() as u8);
    b.extend_from_slice(inf);
    let lrc = b.iter().fold(0u8, |a, x| a ^ x);
    b.push(lrc);
    b
}

impl T1State {
    fn remember(&mut self, block: Vec<u8>) -> T1Action {
        self.last.clone_from(&block);
        T1Action::Reply(block)
    }

    fn r_block(&mut self, error: u8) -> T1Action {
        let pcb = PCB_R | (u8::from(self.nr) << 4) | error;
        // R-blocks are not remembered: a retransmission request for them
        // means "send your last I/S-block again".
        T1Action::Reply(block(self.nad, pcb, &[]))
    }

    fn retransmit(&mut self) -> T1Action {
        if self.last.is_empty() {
            self.r_block(R_OTHER_ERROR)
        } else {
            T1Action::Reply(self.last.clone())
        }
    }

    /// Handles one block from the host.
    pub(crate) fn receive(&mut self, raw: &[u8]) -> T1Action {
        let (nad, pcb, len) = match raw {
            [nad, pcb, len, ..] => (*nad, *pcb, usize::from(*len)),
            _ => return self.r_block(R_OTHER_ERROR),
        };
        if raw.iter().fold(0u8, |a, x| a ^ x) != 0 {
            return self.r_block(R_EDC_ERROR);
        }
        if len > MAX_INF || raw.len() != 4 + len {
            return self.r_block(R_OTHER_ERROR);
        }
        let inf = raw.get(3..3 + len).unwrap_or_default();
        self.nad = ((nad & 0x07) << 4) | ((nad >> 4) & 0x07);
        match pcb {
            p if p & 0x80 == 0 => self.i_block(p, inf),
            p if p & 0xC0 == PCB_R => self.r_received(p),
            p => self.s_block(p, inf),
        }
    }

    fn i_block(&mut self, pcb: u8, inf: &[u8]) -> T1Action {
        let ns = pcb & 0x40 != 0;
        let more = pcb & 0x20 != 0;
        if ns != self.nr {
            // A repeat of a block we already took: our answer was lost.
            return self.retransmit();
        }
        // A new command ends any response still being chained.
        self.tx.clear();
        self.tx_pos = 0;
        if self.rx.len() + inf.len() > MAX_APDU {
            self.rx.clear();
            return self.r_block(R_OTHER_ERROR);
        }
        self.nr = !self.nr;
        self.rx.extend_from_slice(inf);
        if more {
            self.r_block(0)
        } else {
            T1Action::Apdu(core::mem::take(&mut self.rx))
        }
    }

    fn r_received(&mut self, pcb: u8) -> T1Action {
        let nr = pcb & 0x10 != 0;
        if self.tx_pos < self.tx.len() && nr == self.ns {
            // The host acknowledged our chained block: send the next one.
            self.next_chunk()
        } else {
            self.retransmit()
        }
    }

    fn s_block(&mut self, pcb: u8, inf: &[u8]) -> T1Action {
        if pcb & S_RESPONSE != 0 {
            // We never send S requests (no WTX: CCID time extension does
            // that job), so a response is out of place.
            return self.r_block(R_OTHER_ERROR);
        }
        match (pcb & 0x1F, inf) {
            (S_IFS, [ifs]) if (1..=MAX_INF as u8).contains(ifs) => {
                self.ifsd = *ifs;
                let reply = block(self.nad, PCB_S | S_RESPONSE | S_IFS, &[*ifs]);
                self.remember(reply)
            }
            (S_RESYNCH, []) => {
                let ifsd = self.ifsd;
                *self = T1State {
                    ifsd,
                    nad: self.nad,
                    ..T1State::default()
                };
                let reply = block(self.nad, PCB_S | S_RESPONSE | S_RESYNCH, &[]);
                self.remember(reply)
            }
            (S_ABORT, []) => {
                self.rx.clear();
                self.tx.clear();
                self.tx_pos = 0;
                let reply = block(self.nad, PCB_S | S_RESPONSE | S_ABORT, &[]);
                self.remember(reply)
            }
            _ => self.r_block(R_OTHER_ERROR),
        }
    }

    fn next_chunk(&mut self) -> T1Action {
        let room = usize::from(self.ifsd.max(1));
        let rest = self.tx.get(self.tx_pos..).unwrap_or_default();
        let n = rest.len().min(room);
        let more = rest.len() > n;
        let pcb = (u8::from(self.ns) << 6) | if more { 0x20 } else { 0x00 };
        let b = block(self.nad, pcb, rest.get(..n).unwrap_or_default());
        self.ns = !self.ns;
        self.tx_pos += n;
        if !more {
            self.tx.clear();
            self.tx_pos = 0;
        }
        self.remember(b)
    }

    /// The card answered the command from [`T1Action::Apdu`]: the first
    /// (or only) I-block of the response.
    pub(crate) fn respond(&mut self, response: Vec<u8>) -> Vec<u8> {
        self.tx = response;
        self.tx_pos = 0;
        match self.next_chunk() {
            T1Action::Reply(b) | T1Action::Apdu(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn reply(a: T1Action) -> Vec<u8> {
        match a {
            T1Action::Reply(b) => b,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn block_lrc() {
        assert_eq!(block(0, 0xC1, &[0xFE]), hex!("00 C1 01 FE 3E"));
        assert_eq!(block(0, 0x00, &hex!("00A4")), hex!("00 00 02 00A4 A6"));
    }

    #[test]
    fn ifs_resynch_abort() {
        let mut t = T1State::default();
        assert_eq!(
            reply(t.receive(&hex!("00 C1 01 FE 3E"))),
            hex!("00 E1 01 FE 1E")
        );
        assert_eq!(t.ifsd, 0xFE);
        assert_eq!(reply(t.receive(&hex!("00 C0 00 C0"))), hex!("00 E0 00 E0"));
        assert_eq!(t.ifsd, 0xFE);
        assert_eq!(reply(t.receive(&hex!("00 C2 00 C2"))), hex!("00 E2 00 E2"));
        // IFS 0 and FF are invalid; an S response is unexpected.
        assert_eq!(
            reply(t.receive(&hex!("00 C1 01 00 C0"))),
            hex!("00 82 00 82")
        );
        assert_eq!(
            reply(t.receive(&hex!("00 E3 01 01 E3"))),
            hex!("00 82 00 82")
        );
    }

    #[test]
    fn single_i_block_round_trip() {
        let mut t = T1State::default();
        let cmd = block(0, 0x00, &hex!("00A40400 02 3F00"));
        assert_eq!(
            t.receive(&cmd),
            T1Action::Apdu(hex!("00A40400023F00").to_vec())
        );
        assert_eq!(t.respond(hex!("9000").to_vec()), hex!("00 00 02 9000 92"));
        // Next command carries N(S) = 1, answer N(S) = 1.
        let cmd = block(0, 0x40, &hex!("00C00000 00"));
        assert_eq!(t.receive(&cmd), T1Action::Apdu(hex!("00C0000000").to_vec()));
        assert_eq!(
            t.respond(hex!("6A82").to_vec()),
            block(0, 0x40, &hex!("6A82"))
        );
    }

    #[test]
    fn chained_command_and_response() {
        let mut t = T1State {
            ifsd: 4,
            ..T1State::default()
        };
        // Host chains 2 blocks: we acknowledge the first with R(N(R)=1).
        assert_eq!(
            reply(t.receive(&block(0, 0x20, &hex!("0001")))),
            hex!("00 90 00 90")
        );
        assert_eq!(
            t.receive(&block(0, 0x40, &hex!("0203"))),
            T1Action::Apdu(hex!("00010203").to_vec())
        );
        // 6-byte answer, IFSD 4: I(0, more) then, on R(1), I(1).
        assert_eq!(
            t.respond(hex!("AABBCCDD9000").to_vec()),
            block(0, 0x20, &hex!("AABBCCDD"))
        );
        // A retransmission request (N(R) = 0) repeats it.
        assert_eq!(
            reply(t.receive(&hex!("00 80 00 80"))),
            block(0, 0x20, &hex!("AABBCCDD"))
        );
        assert_eq!(
            reply(t.receive(&hex!("00 90 00 90"))),
            block(0, 0x40, &hex!("9000"))
        );
    }

    #[test]
    fn errors_ask_for_a_repeat() {
        let mut t = T1State::default();
        // Bad LRC: R-block with EDC error, N(R) = 0.
        assert_eq!(
            reply(t.receive(&hex!("00 00 01 AA 00"))),
            hex!("00 81 00 81")
        );
        // LEN disagrees with the block: other error.
        assert_eq!(
            reply(t.receive(&hex!("00 00 02 AA A8"))),
            hex!("00 82 00 82")
        );
        assert_eq!(reply(t.receive(&hex!("00"))), hex!("00 82 00 82"));
        // A repeated I-block gets our last block again.
        let cmd = block(0, 0x00, &hex!("00A4"));
        assert!(matches!(t.receive(&cmd), T1Action::Apdu(_)));
        let first = t.respond(hex!("6700").to_vec());
        assert_eq!(reply(t.receive(&cmd)), first);
        // NAD is answered with SAD and DAD swapped.
        let mut t = T1State::default();
        assert!(matches!(
            t.receive(&block(0x12, 0x00, &hex!("00"))),
            T1Action::Apdu(_)
        ));
        assert_eq!(t.respond(hex!("9000").to_vec())[0], 0x21);
    }
}
