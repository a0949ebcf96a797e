//! The pseudo-terminal the driver opens, and the loop that serves it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, PtyMaster};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};

use super::{Frame, Twin, TwinDecoder};
use crate::device::{CardJob, CcidDevice, JobDone};
use crate::vpcd::hex;

/// A pseudo-terminal pair: we keep the master, the driver opens the
/// slave (by its `/dev/pts/N` path or a symlink to it). We also hold the
/// slave open ourselves, so the master never sees a hang-up while the
/// driver is away (pcscd not started yet, or restarting), and set it to
/// raw mode so nothing is echoed or translated before the driver sets
/// its own (also raw) line settings.
#[derive(Debug)]
pub struct Pty {
    master: PtyMaster,
    _slave: File,
    path: PathBuf,
    link: Option<PathBuf>,
}

impl Pty {
    /// Opens a new pty.
    pub fn open() -> io::Result<Pty> {
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let path = PathBuf::from(ptsname_r(&master)?);
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OFlag::O_NOCTTY.bits())
            .open(&path)?;
        let mut termios = tcgetattr(&slave)?;
        cfmakeraw(&mut termios);
        tcsetattr(&slave, SetArg::TCSANOW, &termios)?;
        Ok(Pty {
            master,
            _slave: slave,
            path,
            link: None,
        })
    }

    /// The slave's path (`/dev/pts/N`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `link` a symlink to the slave (replacing an older symlink,
    /// never another kind of file). Removed again when the pty drops.
    pub fn link(&mut self, link: &Path) -> io::Result<()> {
        match std::fs::symlink_metadata(link) {
            Ok(meta) if meta.file_type().is_symlink() => std::fs::remove_file(link)?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a symlink", link.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::os::unix::fs::symlink(&self.path, link)?;
        self.link = Some(link.to_owned());
        Ok(())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            if std::fs::read_link(link).is_ok_and(|target| target == self.path) {
                let _ = std::fs::remove_file(link);
            }
        }
    }
}

/// Timing of [`serve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// How often a running card operation gets a time-request byte (the
    /// driver's read timeout is 3 s at least).
    pub tick: Duration,
    /// A partial frame older than this is dropped (the driver restarted
    /// in the middle of one).
    pub stale_frame: Duration,
    /// Extra time every card operation takes: simulates a slow card, to
    /// test host timeouts and time requests. Zero normally.
    pub card_delay: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            tick: Duration::from_millis(1000),
            stale_frame: Duration::from_millis(1000),
            card_delay: Duration::ZERO,
        }
    }
}

/// How often the loop looks at `stop` when nothing happens.
const IDLE_POLL_MS: u16 = 100;

/// Serves `device` over the pty until `stop` is set. Card operations run
/// on a worker thread while this one sends time requests.
pub fn serve(
    pty: &Pty,
    device: &mut CcidDevice,
    twin: &mut Twin,
    options: &ServeOptions,
    stop: &AtomicBool,
) -> io::Result<()> {
    let (job_tx, job_rx) = mpsc::channel::<CardJob>();
    let (done_tx, done_rx) = mpsc::channel::<JobDone>();
    let delay = options.card_delay;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("ccid card".into())
            .spawn_scoped(scope, move || {
                for job in job_rx {
                    if !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                    if done_tx.send(job.run()).is_err() {
                        break;
                    }
                }
            })?;
        let result = run(pty, device, twin, options, stop, &job_tx, &done_rx);
        drop(job_tx);
        result
    })
}

fn run(
    pty: &Pty,
    device: &mut CcidDevice,
    twin: &mut Twin,
    options: &ServeOptions,
    stop: &AtomicBool,
    jobs: &mpsc::Sender<CardJob>,
    done: &mpsc::Receiver<JobDone>,
) -> io::Result<()> {
    let max = device.config().max_message_len as usize;
    let mut decoder = TwinDecoder::new(max);
    let mut chunk = vec![0u8; 4096];
    let mut out = Vec::with_capacity(2 * max);
    let mut last_rx = Instant::now();
    let mut master = &pty.master;
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(pty.master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(IDLE_POLL_MS)) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if !revents.contains(PollFlags::POLLIN) {
            if !revents.is_empty() {
                // Hang-up or error with nothing to read: do not spin.
                std::thread::sleep(Duration::from_millis(u64::from(IDLE_POLL_MS)));
            }
            if decoder.is_partial() && last_rx.elapsed() > options.stale_frame {
                log::debug!("serial: dropping a stale partial frame");
                decoder.clear();
            }
            continue;
        }
        let n = match master.read(&mut chunk) {
            Ok(0) => {
                std::thread::sleep(Duration::from_millis(u64::from(IDLE_POLL_MS)));
                continue;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                continue
            }
            Err(e) if e.raw_os_error() == Some(Errno::EIO as i32) => {
                std::thread::sleep(Duration::from_millis(u64::from(IDLE_POLL_MS)));
                continue;
            }
            Err(e) => return Err(e),
        };
        last_rx = Instant::now();
        let bytes = chunk.get(..n).unwrap_or_default();
        log::trace!("serial < {}", hex(bytes));
        decoder.push(bytes);
        while let Some(frame) = decoder.next_frame() {
            if let Frame::Message(m) = &frame {
                log::debug!("serial > {}", hex(m));
            }
            out.clear();
            twin.on_frame(frame, device, &mut out);
            write(&mut master, &out)?;
            while let Some(job) = device.poll_job() {
                run_job(
                    job,
                    device,
                    twin,
                    options,
                    jobs,
                    done,
                    &mut master,
                    &mut out,
                )?;
            }
            out.clear();
            twin.flush(device, &mut out);
            write(&mut master, &out)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_job(
    job: CardJob,
    device: &mut CcidDevice,
    twin: &mut Twin,
    options: &ServeOptions,
    jobs: &mpsc::Sender<CardJob>,
    done: &mpsc::Receiver<JobDone>,
    master: &mut &PtyMaster,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    jobs.send(job)
        .map_err(|_| io::Error::other("the card worker thread is gone"))?;
    loop {
        match done.recv_timeout(options.tick) {
            Ok(result) => {
                if let Err(e) = device.complete(result) {
                    log::warn!("serial: {e}");
                }
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                device.tick();
                out.clear();
                twin.flush(device, out);
                if out.contains(&super::TIME_REQUEST) {
                    log::debug!("serial: card busy, time request sent");
                }
                write(master, out)?;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("the card worker thread stopped"));
            }
        }
    }
}

fn write(master: &mut &PtyMaster, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    log::trace!("serial > {}", hex(bytes));
    master.write_all(bytes)?;
    master.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceConfig;
    use crate::serial::{encode_frame, ReaderType};
    use hex_literal::hex;
    use std::sync::Arc;
    use vreader::ReaderSet;

    /// A whole exchange over a real pty, from the slave side — what
    /// libccid does, byte for byte.
    #[test]
    fn gempc_twin_over_a_pty() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("ttyCCID");
        let mut pty = Pty::open().unwrap();
        pty.link(&link).unwrap();
        assert_eq!(std::fs::read_link(&link).unwrap(), pty.path());
        let set = ReaderSet::new();
        let r = set.add_reader("s").unwrap();
        let card = vcac_sources::embedded::default_card(
            &cac::keys::RustCrypto,
            rand_core::UnwrapErr(getrandom::SysRng),
        )
        .unwrap();
        set.insert_card(r, card).unwrap();
        let mut device = CcidDevice::new(DeviceConfig::gempc_twin(), &set, &[r]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tty = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(OFlag::O_NOCTTY.bits())
            .open(&link)
            .unwrap();
        let exchange = |tty: &mut File, message: &[u8], expect: usize| {
            let mut frame = Vec::new();
            encode_frame(message, &mut frame);
            tty.write_all(&frame).unwrap();
            let mut got = vec![0u8; expect];
            tty.read_exact(&mut got).unwrap();
            (frame, got)
        };
        std::thread::scope(|s| {
            let stop2 = Arc::clone(&stop);
            let pty = &pty;
            let device = &mut device;
            let server = s.spawn(move || {
                let mut twin = Twin::new(ReaderType::GemPcTwin);
                serve(pty, device, &mut twin, &ServeOptions::default(), &stop2)
            });
            // Escape 02: echo, then "50 03" (card present, changed), then
            // the firmware text.
            let fw = DeviceConfig::default().firmware;
            let cmd = hex!("6B 01000000 00 00 000000 02");
            let (frame, got) = exchange(&mut tty, &cmd, frame_len(1) + 2 + frame_len(fw.len()));
            assert_eq!(got[..frame.len()], frame[..]);
            assert_eq!(got[frame.len()..frame.len() + 2], hex!("50 03"));
            let mut answer = vec![0x83, fw.len() as u8, 0, 0, 0, 0, 0, 0x01, 0, 0];
            answer.extend_from_slice(fw.as_bytes());
            let mut want = Vec::new();
            encode_frame(&answer, &mut want);
            assert_eq!(got[frame.len() + 2..], want[..]);
            // GetSlotStatus: echo and answer.
            let cmd = hex!("65 00000000 00 01 000000");
            let (frame, got) = exchange(&mut tty, &cmd, 2 * frame_len(0));
            assert_eq!(got[..frame.len()], frame[..]);
            let mut want = Vec::new();
            encode_frame(&hex!("81 00000000 00 01 01 00 00"), &mut want);
            assert_eq!(got[frame.len()..], want[..]);
            // A frame with a bad LRC: NAK.
            tty.write_all(&hex!("03 06 65 00000000 00 02 000000 00"))
                .unwrap();
            let mut nak = [0u8; 3];
            tty.read_exact(&mut nak).unwrap();
            assert_eq!(nak, hex!("03 15 16"));
            stop.store(true, Ordering::Relaxed);
            server.join().unwrap().unwrap();
        });
        drop(pty);
        assert!(std::fs::symlink_metadata(&link).is_err(), "link removed");
    }

    fn frame_len(data: usize) -> usize {
        2 + 10 + data + 1
    }

    #[test]
    fn link_refuses_to_replace_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let mut pty = Pty::open().unwrap();
        assert_eq!(
            pty.link(&file).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        // An old symlink is replaced.
        let old = dir.path().join("old");
        std::os::unix::fs::symlink("/nonexistent", &old).unwrap();
        pty.link(&old).unwrap();
        assert_eq!(std::fs::read_link(&old).unwrap(), pty.path());
    }
}
