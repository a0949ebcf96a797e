//! Small TCP helpers the socket transports (VSCard, usbredir) share.

use std::io;
use std::net::{SocketAddr, TcpStream};
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
