//! A real card behind the virtual reader: `vcac serve --pcsc-reader`
//! relays a card of one pcscd reader into another vpcd slot. The host
//! card is a minimal card written here (its own ATR and fixed answers,
//! speaking vpcd's protocol), so every byte that arrives can be checked;
//! then an emulated CAC is relayed between two pcscd instances and
//! OpenSC binds and signs through the relay.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vcac_tests::{write_default_card, PcscEnv};

/// T=0, two historical bytes, no TCK: unlike any card vcac makes.
const ATR: [u8; 4] = [0x3B, 0x02, 0x14, 0x50];
const HOST_READER: &str = "Virtual PCD 00 00";
const RELAYED_READER: &str = "Virtual PCD 00 01";
/// A command the minimal card answers by dropping its connection.
const VANISH: &str = "00 EE 00 00";

/// The minimal card's fixed answers: (command, answer).
const SCRIPT: [(&str, &str); 5] = [
    ("00 A4 04 00 05 F0 76 63 61 63", "6F 03 84 01 2A 90 00"),
    ("00 CA 01 02 00", "61 10"),
    (
        "00 C0 00 00 10",
        "00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 90 00",
    ),
    ("00 20 00 80 08 31 32 39 38 37 36 FF FF", "63 C2"),
    ("80 CA 9F 7F 00", "6D 00"),
];

fn bytes(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// A card plugged into pcscd's vpcd driver from inside pcscd's network
/// namespace. It records every command it receives.
struct MiniCard {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MiniCard {
    fn start(pcscd_pid: u32, port: u16, received: Arc<Mutex<Vec<Vec<u8>>>>) -> MiniCard {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(format!("/proc/{pcscd_pid}/ns/net")).unwrap();
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let start = Instant::now();
            let mut stream = loop {
                match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(s) => break s,
                    Err(e) if start.elapsed() > Duration::from_secs(20) => {
                        panic!("vpcd port {port}: {e}")
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            };
            stream.set_nodelay(true).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                match stream.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(_) => continue,
                }
                while buf.len() >= 2 {
                    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                    if buf.len() < 2 + len {
                        break;
                    }
                    let payload: Vec<u8> = buf.drain(..2 + len).skip(2).collect();
                    let reply = match payload.as_slice() {
                        [0x04] => Some(ATR.to_vec()),
                        [_] => None,
                        apdu => {
                            received.lock().unwrap().push(apdu.to_vec());
                            if apdu == bytes(VANISH).as_slice() {
                                // The reader vanishes in the middle of an APDU.
                                return;
                            }
                            Some(
                                SCRIPT
                                    .iter()
                                    .find(|(c, _)| bytes(c) == apdu)
                                    .map(|(_, a)| bytes(a))
                                    .unwrap_or(vec![0x6D, 0x00]),
                            )
                        }
                    };
                    if let Some(r) = reply {
                        let mut frame = (r.len() as u16).to_be_bytes().to_vec();
                        frame.extend_from_slice(&r);
                        if stream.write_all(&frame).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        MiniCard {
            stop,
            thread: Some(thread),
        }
    }

    /// Pulls the card: the connection closes, pcscd sees a removal.
    fn remove(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for MiniCard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The environment's pcscd: the `pcscd` process in its network namespace
/// (waiting for it: the harness may return before pcscd has started).
fn pcscd_pid(env: &PcscEnv) -> u32 {
    let ns = env.ok("readlink", &["/proc/self/ns/net"]);
    let ns = ns.trim();
    let start = Instant::now();
    loop {
        let found = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                let net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap_or_default();
                comm.trim() == "pcscd" && net.to_string_lossy() == ns
            });
        if let Some(pid) = found {
            return pid;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no pcscd process in network namespace {ns}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs scriptor on `reader` with these command lines; returns the
/// answers (the `<` lines, without the text after the colon) and whether
/// scriptor succeeded.
fn scriptor(env: &PcscEnv, reader: &str, commands: &[&str]) -> (Vec<String>, bool, String) {
    let mut child = env
        .command("scriptor")
        .args(["-r", reader])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = commands.join("\n");
    input.push('\n');
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // "< 00 01 … 0F \n90 00 : Normal processing.": scriptor wraps long
    // answers; an answer ends at its " : " explanation.
    let mut answers = Vec::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(rest) = line.strip_prefix("< ") {
            current = Some(String::new());
            current.as_mut().unwrap().push_str(rest);
        } else if let Some(c) = current.as_mut() {
            c.push(' ');
            c.push_str(line);
        }
        if let Some(c) = current.take_if(|c| c.contains(':')) {
            let hex = c.split(':').next().unwrap();
            answers.push(hex.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    (answers, out.status.success(), text)
}

fn reader_has_card(env: &PcscEnv, index: usize) -> bool {
    let out = env.run("opensc-tool", &["-l"]);
    String::from_utf8_lossy(&out.stdout).lines().any(|l| {
        let w: Vec<_> = l.split_whitespace().collect();
        w.first() == Some(&index.to_string().as_str()) && w.get(1) == Some(&"Yes")
    })
}

fn wait_reader(env: &mut PcscEnv, index: usize, present: bool) {
    env.wait_until(
        Duration::from_secs(30),
        &format!("reader {index} to show card present={present}"),
        |env| reader_has_card(env, index) == present,
    );
}

#[test]
fn a_host_card_is_relayed_byte_for_byte_and_follows_removal() {
    let mut env = PcscEnv::vpcd();
    let pid = pcscd_pid(&env);
    let received = Arc::new(Mutex::new(Vec::new()));
    let card = MiniCard::start(pid, 35963, Arc::clone(&received));
    wait_reader(&mut env, 0, true);
    env.spawn_vcac(&["serve", "--pcsc-reader", HOST_READER, "--slot", "1"]);
    wait_reader(&mut env, 1, true);

    // The relayed card has the host card's ATR.
    assert_eq!(
        env.ok("opensc-tool", &["-r", "1", "-a"]).trim(),
        "3b:02:14:50"
    );
    received.lock().unwrap().clear();
    let commands: Vec<&str> = SCRIPT.iter().map(|(c, _)| *c).collect();
    let (answers, ok, text) = scriptor(&env, RELAYED_READER, &commands);
    assert!(ok, "{text}");
    let want: Vec<String> = SCRIPT.iter().map(|(_, a)| a.to_string()).collect();
    assert_eq!(answers, want, "{text}");
    // Every command reached the card once, unchanged: the VERIFY too.
    let got = received.lock().unwrap().clone();
    let sent: Vec<Vec<u8>> = commands.iter().map(|c| bytes(c)).collect();
    assert_eq!(got, sent);
    // The PIN bytes are masked in the relay's debug log; the GET RESPONSE
    // chain ran inside one transaction.
    let log = env.vcac_log(0);
    assert!(log.contains("00200080 <9 bytes masked>"), "{log}");
    assert!(!log.contains("313239383736"), "{log}");
    assert!(
        log.contains("relay \"Virtual PCD 00 00\" > 00C0000010"),
        "{log}"
    );

    // Pulling the host card pulls the relayed one; a new one comes back.
    card.remove();
    wait_reader(&mut env, 1, false);
    let card = MiniCard::start(pid, 35963, Arc::clone(&received));
    wait_reader(&mut env, 1, true);
    let (answers, ok, text) = scriptor(&env, RELAYED_READER, &[SCRIPT[0].0]);
    assert!(ok, "{text}");
    assert_eq!(answers, [SCRIPT[0].1], "{text}");

    // The host reader vanishes in the middle of an APDU: a clear error,
    // the relayed card reads as removed, and the relay recovers.
    // The client gets no status word at all (the relay drops its vpcd
    // link: pcscd answers the transmit with nothing, or fails it).
    let (answers, ok, text) = scriptor(&env, RELAYED_READER, &[VANISH]);
    assert!(answers.iter().all(|a| a.is_empty()), "{text}");
    assert!(!ok || text.contains("wrong SW size"), "{text}");
    let start = Instant::now();
    while !card.finished() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_reader(&mut env, 1, false);
    let log = env.vcac_log(0);
    assert!(log.contains("00EE0000 failed"), "{log}");
    let _card = MiniCard::start(pid, 35963, Arc::clone(&received));
    wait_reader(&mut env, 1, true);
    let (answers, ok, text) = scriptor(&env, RELAYED_READER, &[SCRIPT[1].0, SCRIPT[2].0]);
    assert!(ok, "{text}");
    assert_eq!(answers, [SCRIPT[1].1, SCRIPT[2].1], "{text}");
}

#[test]
fn an_emulated_cac_relayed_between_two_pcscds_is_bound_by_opensc_and_signs() {
    // pcscd A holds the emulated card; the relay reads A's socket and
    // serves into pcscd B, where OpenSC sees only the relayed card.
    let mut a = PcscEnv::vpcd();
    a.spawn_vcac(&["serve"]);
    a.wait_for_card(0);
    let socket = format!("/proc/{}/root/run/pcscd/pcscd.comm", pcscd_pid(&a));
    let mut b = PcscEnv::vpcd();
    b.spawn_vcac(&[
        "serve",
        "--pcsc-reader",
        HOST_READER,
        "--pcsc-socket",
        &socket,
    ]);
    b.wait_for_card(0);
    assert_eq!(
        b.ok("opensc-tool", &["-r", "0", "-a"]).trim(),
        "3b:7a:18:00:00:73:66:74:65:20:63:64:31:34:34"
    );
    assert_eq!(
        b.ok("opensc-tool", &["-r", "0", "-n"]).trim(),
        "Common Access Card (CAC)"
    );
    let dir = b.dir().join("default");
    write_default_card(&dir);
    b.assert_certificates_read_back(&dir, 3);
    let sig = b.assert_signature_verifies(
        certs_fixtures::default_card::PIN,
        "0001",
        &dir.join("id0.pem"),
        b"through the relay",
    );
    assert_eq!(sig.len(), 256);
    let log = b.vcac_log(0);
    assert!(log.contains("<9 bytes masked>"), "{log}");
    assert!(!log.contains("> 002000000831"), "{log}");
}
