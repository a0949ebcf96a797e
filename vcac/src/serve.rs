//! `vcac serve`.

use std::io::Write;
use std::net::ToSocketAddrs;
use std::sync::Arc;

use ccid::vpcd;
use vreader::ReaderSet;

use crate::{record, ServeArgs};

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
    // Host cards or an NSS database alone: no embedded default card beside them.
    let loaded = if args.cards.is_empty() && (args.host.any() || args.nss.any()) {
        Vec::new()
    } else {
        record::load_cards(&args.cards, backend.as_ref())?
    };
    let loaded = record::wrap_for_recording(loaded, args.record.as_deref(), args.record_secrets)?;
    let mut replays = Vec::new();
    let mut cards = Vec::new();
    for l in loaded {
        if let Some(log) = l.replay {
            replays.push((l.label.clone(), log));
        }
        let serial = l
            .serial
            .map(|s| format!(" (serial {s})"))
            .unwrap_or_default();
        let pin = l.pin.map(|p| format!("; PIN {p}")).unwrap_or_default();
        cards.push((format!("{}{serial}", l.label), l.card, pin));
    }
    let nss_backend = crate::key_backend(args.backend)?.into();
    if let Some((label, card, pin)) =
        crate::nss::load(&args.nss, nss_backend, &mut std::io::stdout())?
    {
        cards.push((label, Box::new(card), format!("; PIN {pin}")));
    }

    let set = ReaderSet::new();
    let mut jobs = Vec::new();
    let mut stdout = std::io::stdout().lock();
    for (i, (label, card, pin)) in cards.into_iter().enumerate() {
        let slot = usize::from(args.slot) + i;
        let port = u16::try_from(usize::from(base_port) + slot)
            .map_err(|_| format!("vpcd slot {slot}: port out of range"))?;
        let addr = format!("{host}:{port}");
        let reader = set
            .add_reader(&format!("vcac slot {slot}"))
            .map_err(|e| e.to_string())?;
        set.insert_card(reader, card).map_err(|e| e.to_string())?;
        let handle = set.handle(reader).map_err(|e| e.to_string())?;
        let _ = writeln!(
            stdout,
            "vcac: serving {label} to vpcd slot {slot} at {addr} \
             (pcscd reader \"Virtual PCD 00 {slot:02}\" with the default vpcd config){pin}"
        );
        jobs.push((addr, handle));
    }
    // Host cards (PKCS#11 tokens, a relayed PC/SC card) take the next slots.
    let host_set = Arc::new(ReaderSet::new());
    let first = usize::from(args.slot) + jobs.len();
    let host_readers = crate::hostcards::start(
        &args.host,
        &host_set,
        |i| format!("vcac slot {}", first + i),
        &stop,
    )?;
    for (i, (what, reader)) in host_readers.into_iter().enumerate() {
        let slot = first + i;
        let port = u16::try_from(usize::from(base_port) + slot)
            .map_err(|_| format!("vpcd slot {slot}: port out of range"))?;
        let addr = format!("{host}:{port}");
        let _ = writeln!(
            stdout,
            "vcac: serving {what} to vpcd slot {slot} at {addr} \
             (pcscd reader \"Virtual PCD 00 {slot:02}\" with the default vpcd config)"
        );
        jobs.push((addr, host_set.handle(reader).map_err(|e| e.to_string())?));
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
    if replays.is_empty() {
        Ok(())
    } else {
        record::replay_verdict(&replays)
    }
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
