//! Security state: who may use the card's private keys.
//!
//! The dispatcher ([`crate::card`]) owns only what crosses applets. PIN,
//! PUK and login state sit behind [`SecurityEnvironment`], which applets
//! consult: the CAC applets share one card-global environment (today's
//! [`CacPin`]: one PIN, an optional PUK), and an applet family with its
//! own references (PIV's PIN, PUK and management key) keeps its own.
//! Hosts that delegate the PIN elsewhere (an NSS database password, a
//! PKCS#11 token's login) plug in their own implementation through
//! [`CardBuilder::security`](crate::CardBuilder::security).
//!
//! ```text
//!  VERIFY / CHANGE REFERENCE DATA / RESET RETRY COUNTER
//!        │
//!  dispatcher ──► selected applet ──► its SecurityEnvironment::process
//!                   (none selected) ─► the card-global environment
//!  SIGN / DECRYPT ──► PKI applet ──► SecurityEnvironment::is_verified
//! ```

use crate::apdu::CommandView;
use crate::pin::{Check, Pin, PinPolicy, PinState, PIN_BLOCK_LEN};
use crate::status::Status;

/// VERIFY.
pub const INS_VERIFY: u8 = 0x20;
/// CHANGE REFERENCE DATA.
pub const INS_CHANGE_REFERENCE_DATA: u8 = 0x24;
/// RESET RETRY COUNTER.
pub const INS_RESET_RETRY_COUNTER: u8 = 0x2C;

/// True for the commands a [`SecurityEnvironment`] answers.
pub const fn is_security_command(ins: u8) -> bool {
    matches!(
        ins,
        INS_VERIFY | INS_CHANGE_REFERENCE_DATA | INS_RESET_RETRY_COUNTER
    )
}

/// PIN, PUK and login state shared by the applets that use it.
///
/// Persistent state (the PIN, its counters) outlives power cycles; the
/// login is volatile and [`logout`](Self::logout) clears it.
pub trait SecurityEnvironment: Send {
    /// Answers VERIFY (`20`), CHANGE REFERENCE DATA (`24`) or RESET RETRY
    /// COUNTER (`2C`): the whole command, with no response data. The
    /// error is the status word.
    fn process(&mut self, cmd: &CommandView<'_>) -> Result<(), Status>;

    /// True when private-key operations are allowed in this session.
    fn is_verified(&self) -> bool;

    /// PIN tries left before it blocks (for display and status queries).
    fn tries_left(&self) -> u8;

    /// Power-off, reset or removal: ends the session's login.
    fn logout(&mut self);
}

/// The CAC card-global PIN: 6–8 digits FF-padded to 8 bytes, compared in
/// constant time, an optional PUK for RESET RETRY COUNTER.
///
/// | command | behaviour |
/// |---|---|
/// | VERIFY P1 P2 = `00 00` | 8-byte block: `90 00`, `63 Cx` tries left, `69 83` blocked; no data: `90 00` when logged in, else `63 Cx` / `69 83` |
/// | CHANGE REFERENCE DATA P1 `00`/`01` | old ‖ new block; the new PIN must be 6–8 digits (`6A 80`) |
/// | RESET RETRY COUNTER P1 `00` | PUK ‖ new PIN; P1 `01`: PUK only; `6A 88` without a PUK |
#[derive(Debug)]
pub struct CacPin {
    state: PinState,
    verified: bool,
}

impl CacPin {
    /// A card-global PIN with this policy, not logged in.
    pub fn new(policy: PinPolicy) -> CacPin {
        CacPin {
            state: PinState::new(policy),
            verified: false,
        }
    }

    fn verify(&mut self, cmd: &CommandView<'_>) -> Result<(), Status> {
        if (cmd.p1(), cmd.p2()) != (0x00, 0x00) {
            return Err(Status::IncorrectP1P2);
        }
        let data = cmd.data();
        if data.is_empty() {
            return if self.verified {
                Ok(())
            } else if self.state.tries_left() == 0 {
                Err(Status::AuthBlocked)
            } else {
                Err(Status::VerifyFailed {
                    tries_left: self.state.tries_left(),
                })
            };
        }
        if data.len() != PIN_BLOCK_LEN {
            return Err(Status::WrongLength);
        }
        self.present_pin(data)
    }

    fn present_pin(&mut self, block: &[u8]) -> Result<(), Status> {
        match self.state.check_pin(block) {
            Check::Ok => {
                self.verified = true;
                Ok(())
            }
            Check::Wrong(tries_left) => {
                self.verified = false;
                Err(Status::VerifyFailed { tries_left })
            }
            Check::Blocked => {
                self.verified = false;
                Err(Status::AuthBlocked)
            }
        }
    }

    fn change_reference_data(&mut self, cmd: &CommandView<'_>) -> Result<(), Status> {
        if !matches!(cmd.p1(), 0x00 | 0x01) || cmd.p2() != 0x00 {
            return Err(Status::IncorrectP1P2);
        }
        let (old, new) = cmd
            .data()
            .split_at_checked(PIN_BLOCK_LEN)
            .filter(|(_, new)| new.len() == PIN_BLOCK_LEN)
            .ok_or(Status::WrongLength)?;
        let new = Pin::from_block(new).map_err(|_| Status::IncorrectData)?;
        self.present_pin(old)?;
        self.state.set_pin(new);
        Ok(())
    }

    fn reset_retry_counter(&mut self, cmd: &CommandView<'_>) -> Result<(), Status> {
        if cmd.p2() != 0x00 {
            return Err(Status::IncorrectP1P2);
        }
        let data = cmd.data();
        let (puk, new) = match cmd.p1() {
            0x00 if data.len() == 2 * PIN_BLOCK_LEN => {
                let (puk, new) = data.split_at(PIN_BLOCK_LEN);
                (
                    puk,
                    Some(Pin::from_block(new).map_err(|_| Status::IncorrectData)?),
                )
            }
            0x01 if data.len() == PIN_BLOCK_LEN => (data, None),
            0x00 | 0x01 => return Err(Status::WrongLength),
            _ => return Err(Status::IncorrectP1P2),
        };
        if !self.state.has_puk() {
            return Err(Status::ReferencedDataNotFound);
        }
        match self.state.check_puk(puk) {
            Check::Ok => {
                match new {
                    Some(pin) => self.state.set_pin(pin),
                    None => self.state.reset_counter(),
                }
                Ok(())
            }
            Check::Wrong(tries_left) => Err(Status::VerifyFailed { tries_left }),
            Check::Blocked => Err(Status::AuthBlocked),
        }
    }
}

impl SecurityEnvironment for CacPin {
    fn process(&mut self, cmd: &CommandView<'_>) -> Result<(), Status> {
        match cmd.ins() {
            INS_VERIFY => self.verify(cmd),
            INS_CHANGE_REFERENCE_DATA => self.change_reference_data(cmd),
            INS_RESET_RETRY_COUNTER => self.reset_retry_counter(cmd),
            _ => Err(Status::InsNotSupported),
        }
    }

    fn is_verified(&self) -> bool {
        self.verified
    }

    fn tries_left(&self) -> u8 {
        self.state.tries_left()
    }

    fn logout(&mut self) {
        self.verified = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin() -> CacPin {
        CacPin::new(
            PinPolicy::new(Pin::new("123456").unwrap())
                .with_puk(Pin::new("87654321").unwrap(), 2)
                .unwrap(),
        )
    }

    fn run(env: &mut dyn SecurityEnvironment, apdu: &[u8]) -> Result<(), Status> {
        env.process(&CommandView::try_from(apdu).unwrap())
    }

    const GOOD: [u8; 13] = [
        0x00, 0x20, 0x00, 0x00, 0x08, b'1', b'2', b'3', b'4', b'5', b'6', 0xFF, 0xFF,
    ];
    const BAD: [u8; 13] = [
        0x00, 0x20, 0x00, 0x00, 0x08, b'1', b'2', b'3', b'4', b'5', b'7', 0xFF, 0xFF,
    ];

    #[test]
    fn verify_logs_in_and_logout_clears_only_the_login() {
        let mut env = pin();
        assert_eq!(
            run(&mut env, &[0x00, 0x20, 0x00, 0x00]),
            Err(Status::VerifyFailed { tries_left: 3 })
        );
        assert_eq!(
            run(&mut env, &BAD),
            Err(Status::VerifyFailed { tries_left: 2 })
        );
        assert_eq!(run(&mut env, &GOOD), Ok(()));
        assert!(env.is_verified());
        assert_eq!(env.tries_left(), 3);
        env.logout();
        assert!(!env.is_verified());
        assert_eq!(
            run(&mut env, &BAD),
            Err(Status::VerifyFailed { tries_left: 2 })
        );
        env.logout();
        assert_eq!(env.tries_left(), 2, "the counter is persistent");
    }

    #[test]
    fn blocked_pin_is_unblocked_with_the_puk() {
        let mut env = pin();
        for left in [2, 1, 0] {
            assert_eq!(
                run(&mut env, &BAD),
                Err(Status::VerifyFailed { tries_left: left })
            );
        }
        assert_eq!(run(&mut env, &GOOD), Err(Status::AuthBlocked));
        let mut unblock = vec![0x00, 0x2C, 0x01, 0x00, 0x08];
        unblock.extend_from_slice(b"87654321");
        assert_eq!(run(&mut env, &unblock), Ok(()));
        assert_eq!(run(&mut env, &GOOD), Ok(()));
    }

    #[test]
    fn other_instructions_are_not_security_commands() {
        let mut env = pin();
        assert!(!is_security_command(0x84));
        assert_eq!(
            run(&mut env, &[0x00, 0x84, 0x00, 0x00, 0x08]),
            Err(Status::InsNotSupported)
        );
    }
}
