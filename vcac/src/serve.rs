//! `vcac serve`.

use std::io::Write;
use std::net::ToSocketAddrs;
use std::sync::Arc;

use ccid::vpcd;
use vcac_sources::{dir as card_dir, embedded};
use vreader::ReaderSet;

use crate::ServeArgs;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Splits `HOST:PORT` (IPv6 in brackets) into host and port.
fn split_host_port(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("--vpcd {addr}: expected HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("--vpcd {addr}: bad port \"{port}\""))?;
    Ok((host.to_owned(), port))
}

pub(crate) fn run(args: ServeArgs) -> Result<(), String> {
    let stop = crate::stop_on_signals()?;

    let (host, base_port) = split_host_port(&args.vpcd)?;
    format!("{host}:{base_port}")
        .to_socket_addrs()
        .map_err(|e| format!("--vpcd {}: {e}", args.vpcd))?;

    let backend = crate::key_backend(args.backend)?;
    let mut cards = Vec::new();
    if args.cards.is_empty() {
        let card =
            embedded::default_card(backend.as_ref(), rand_core::UnwrapErr(getrandom::SysRng))
                .map_err(|e| format!("embedded default card: {e}"))?;
        cards.push((
            "the embedded default card".to_owned(),
            card,
            certs_fixtures::default_card::PIN.to_owned(),
        ));
    } else {
        for dir in &args.cards {
            let card = card_dir::load(
                dir,
                backend.as_ref(),
                rand_core::UnwrapErr(getrandom::SysRng),
            )
            .map_err(|e| e.to_string())?;
            let pin = card_dir::pin_of(dir).unwrap_or_else(|| "?".into());
            cards.push((format!("card {}", dir.display()), card, pin));
        }
    }

    let set = ReaderSet::new();
    let mut jobs = Vec::new();
    let mut stdout = std::io::stdout().lock();
    for (i, (label, card, pin)) in cards.into_iter().enumerate() {
        let slot = usize::from(args.slot) + i;
        let port = u16::try_from(usize::from(base_port) + slot)
            .map_err(|_| format!("vpcd slot {slot}: port out of range"))?;
        let addr = format!("{host}:{port}");
        let serial = hex(card.card_id());
        let reader = set
            .add_reader(&format!("vcac slot {slot}"))
            .map_err(|e| e.to_string())?;
        set.insert_card(reader, card).map_err(|e| e.to_string())?;
        let handle = set.handle(reader).map_err(|e| e.to_string())?;
        let _ = writeln!(
            stdout,
            "vcac: serving {label} (serial {serial}) to vpcd slot {slot} at {addr} \
             (pcscd reader \"Virtual PCD 00 {slot:02}\" with the default vpcd config); PIN {pin}"
        );
        jobs.push((addr, handle));
    }
    let _ = writeln!(stdout, "vcac: press Ctrl-C to stop");
    let _ = stdout.flush();
    drop(stdout);

    let threads: Vec<_> = jobs
        .into_iter()
        .map(|(addr, handle)| {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("vpcd {addr}"))
                .spawn(move || {
                    if let Err(e) = vpcd::serve(&addr, &handle, &stop) {
                        log::error!("{}: {e}", handle.name());
                    }
                })
                .map_err(|e| format!("cannot start a thread: {e}"))
        })
        .collect::<Result<_, _>>()?;
    for t in threads {
        let _ = t.join();
    }
    log::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(
            split_host_port("127.0.0.1:35963").unwrap(),
            ("127.0.0.1".into(), 35963)
        );
        assert_eq!(split_host_port("[::1]:1").unwrap(), ("[::1]".into(), 1));
        assert!(split_host_port("localhost").is_err());
        assert!(split_host_port("h:99999").is_err());
    }
}
