//! Small TCP helpers the socket transports (VSCard, usbredir) share.

use std::fmt::Display;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Sleeps for `total`, in short steps, returning early once `stop` is set.
pub(crate) fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(20);
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let d = left.min(step);
        std::thread::sleep(d);
        left = left.saturating_sub(d);
    }
}

/// Connects to the first of `addrs` that answers within `timeout`; the
/// last error otherwise.
pub(crate) fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The reconnect timings of a transport that dials its peer.
pub(crate) struct Dial {
    /// First reconnect delay.
    pub(crate) backoff_min: Duration,
    /// Longest reconnect delay.
    pub(crate) backoff_max: Duration,
    /// Timeout of one connection attempt.
    pub(crate) connect_timeout: Duration,
}

/// Dials `addr` and runs `serve` on each connection until `stop` is set,
/// reconnecting with exponential back-off whenever the peer goes away or
/// cannot be reached (said once per outage). `serve` returns `Err` to end
/// the loop with that error, `Ok(Ok(greeted))` when the peer closed the
/// connection (a greeted peer resets the back-off) and `Ok(Err(_))` when
/// the session failed. `peer` names the peer in the log, `addr` included.
/// Fails at once when `addr` does not resolve.
pub(crate) fn redial<E: Display>(
    addr: &str,
    peer: &str,
    stop: &AtomicBool,
    dial: &Dial,
    mut serve: impl FnMut(TcpStream) -> io::Result<Result<bool, E>>,
) -> io::Result<()> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr}: no address"),
        ));
    }
    let mut backoff = dial.backoff_min;
    let mut announced = false;
    while !stop.load(Ordering::Relaxed) {
        match connect_any(&addrs, dial.connect_timeout) {
            Ok(stream) => {
                log::info!("connected to {peer}");
                announced = false;
                match serve(stream)? {
                    Ok(greeted) => {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        log::info!("{peer} closed the connection; reconnecting");
                        if greeted {
                            backoff = dial.backoff_min;
                        }
                    }
                    Err(e) => log::warn!("the connection to {peer} ended: {e}; reconnecting"),
                }
            }
            Err(e) => {
                if !announced {
                    log::warn!(
                        "cannot reach {peer} ({e}); is QEMU running with \
                         -chardev socket,server=on,...? retrying"
                    );
                    announced = true;
                }
            }
        }
        sleep_unless(stop, backoff);
        backoff = (backoff * 2).min(dial.backoff_max);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn sleep_ends_early_on_stop_and_connect_reports_the_last_error() {
        let stop = AtomicBool::new(true);
        let t = Instant::now();
        sleep_unless(&stop, Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(
            connect_any(&[], Duration::from_millis(10))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(connect_any(&[addr], Duration::from_secs(1)).is_ok());
    }
}
