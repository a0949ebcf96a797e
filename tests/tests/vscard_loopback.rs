//! VSCard client against VSCard server, over real TCP sockets: the
//! library's `connect` driver and the `vcac passthru` binary (stdin
//! commands, signals, reconnect) against `ccid::vscard::server`, and both
//! sides against a hostile peer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ccid::vscard::connect::{self, Options};
use ccid::vscard::server::{RemoteCard, RemoteError, Server, ServerEvent};
use hex_literal::hex;
use vreader::ReaderSet;

const ATR_HEX: &str = "3B7A18000073667465206364313434";
const SELECT_CCC: [u8; 12] = hex!("00 A4 04 00 07 A0 00 00 01 16 DB 00");

fn card() -> cac::Card {
    vcac_sources::embedded::default_card(
        &cac::keys::RustCrypto,
        rand_core::UnwrapErr(getrandom::SysRng),
    )
    .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A server running on its own thread, stopped when dropped.
struct Running {
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn start(addr: &str) -> Running {
        let server = Arc::new(Server::bind(addr).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
            std::thread::spawn(move || server.run(&stop).unwrap())
        };
        Running {
            server,
            stop,
            thread: Some(thread),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr().unwrap()
    }

    /// The next event, in a form easy to compare.
    fn next(&self) -> String {
        let event = self
            .server
            .next_event(Duration::from_secs(10))
            .expect("no server event within 10 s");
        match event {
            ServerEvent::ClientConnected { .. } => "connected".into(),
            ServerEvent::ReaderAdded(c) => format!("reader added {}", c.name()),
            ServerEvent::CardInserted { card, atr } => {
                format!("card inserted {} {}", card.id().reader, hex(&atr))
            }
            ServerEvent::CardRemoved(c) => format!("card removed {}", c.id().reader),
            ServerEvent::ReaderRemoved(c) => format!("reader removed {}", c.id().reader),
            ServerEvent::ClientDisconnected { .. } => "disconnected".into(),
            other => format!("{other:?}"),
        }
    }

    fn expect(&self, want: &[&str]) {
        let got: Vec<String> = want.iter().map(|_| self.next()).collect();
        assert_eq!(got, want);
    }

    fn card(&self, reader: u32) -> RemoteCard {
        self.server
            .cards()
            .into_iter()
            .find(|c| c.id().reader == reader)
            .unwrap_or_else(|| panic!("no remote reader {reader}: {:?}", self.server.cards()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn fast() -> Options {
    Options {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..Options::default()
    }
}

/// The library's client on a thread, stopped on drop.
struct ClientRun {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ClientRun {
    fn start(addr: SocketAddr, set: &Arc<ReaderSet>) -> ClientRun {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, set) = (Arc::clone(&stop), Arc::clone(set));
            std::thread::spawn(move || {
                let ended = connect::run_with(&addr.to_string(), &set, &stop, &fast()).unwrap();
                assert_eq!(ended, connect::Ended::Stopped);
            })
        };
        ClientRun {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for ClientRun {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn library_client_and_server_carry_apdus_and_hot_plug() {
    let server = Running::start("127.0.0.1:0");
    let set = Arc::new(ReaderSet::new());
    let r0 = set.add_reader("vcac 0").unwrap();
    set.insert_card(r0, card()).unwrap();
    let client = ClientRun::start(server.addr(), &set);
    server.expect(&[
        "connected",
        "reader added vcac 0",
        &format!("card inserted 0 {ATR_HEX}"),
    ]);
    let remote = server.card(0);
    assert_eq!(remote.name(), "vcac 0");
    assert_eq!(remote.atr().unwrap(), cac::DEFAULT_ATR);
    assert!(remote.card_present());

    // Every response through the protocol is byte for byte the card's own.
    let mut direct = card();
    direct.power_on();
    let transcript: [&[u8]; 4] = [
        &SELECT_CCC,
        &hex!("00 C0 00 00 00"),
        &hex!("00 A4 04 00 07 A0 00 00 00 79 01 00"),
        &hex!("00 A4 04 00 05 A0 00 00 00 01"),
    ];
    for command in transcript {
        let mut got = Vec::new();
        remote.transmit(command, &mut got).unwrap();
        assert_eq!(
            hex(&got),
            hex(&direct.transmit_vec(command)),
            "{}",
            hex(command)
        );
    }
    let mut got = Vec::new();
    remote
        .transmit(&hex!("00 A4 04 00 05 A0 00 00 00 01"), &mut got)
        .unwrap();
    assert_eq!(got, hex!("6A 82"));

    // Round trip over loopback TCP (client and server in this process).
    let rounds = 2000;
    let start = Instant::now();
    for _ in 0..rounds {
        got.clear();
        remote
            .transmit(&hex!("00 A4 04 00 05 A0 00 00 00 01"), &mut got)
            .unwrap();
    }
    let per = start.elapsed() / rounds;
    println!(
        "VSCard loopback round trip (client + server + card, TCP on 127.0.0.1): {per:?} per APDU"
    );

    // Removal and insertion at run time.
    set.force_remove(r0).unwrap();
    server.expect(&["card removed 0"]);
    assert_eq!(
        remote.transmit(&SELECT_CCC, &mut got),
        Err(RemoteError::NoCard)
    );
    set.force_insert(r0).unwrap();
    server.expect(&[&format!("card inserted 0 {ATR_HEX}")]);
    got.clear();
    remote.transmit(&SELECT_CCC, &mut got).unwrap();
    assert_eq!(got[0], 0x61);

    // A second reader while connected; then it goes away.
    let r1 = set.add_reader("vcac 1").unwrap();
    set.insert_card(r1, card()).unwrap();
    server.expect(&["reader added vcac 1", &format!("card inserted 1 {ATR_HEX}")]);
    got.clear();
    server.card(1).transmit(&SELECT_CCC, &mut got).unwrap();
    assert_eq!(got[0], 0x61);
    set.remove_reader(r1).unwrap();
    server.expect(&["card removed 1", "reader removed 1"]);

    // Stopping the client withdraws the card and the reader, then closes.
    client.stop();
    server.expect(&["card removed 0", "reader removed 0", "disconnected"]);
    assert!(server.server.cards().is_empty());
    assert_eq!(
        remote.transmit(&SELECT_CCC, &mut got),
        Err(RemoteError::Disconnected)
    );
}

/// `vcac passthru` with its stdout in a file and stdin a pipe.
struct Passthru {
    child: Child,
    out: tempfile::NamedTempFile,
}

impl Passthru {
    fn start(addr: &str, extra: &[&str]) -> Passthru {
        let out = tempfile::NamedTempFile::new().unwrap();
        // One open file for both streams, so they append, not overwrite.
        let file = out.reopen().unwrap();
        let child = Command::new(vcac_tests::vcac_bin())
            .args(["passthru", "--connect", addr])
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Passthru { child, out }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap()
            .success());
    }

    fn wait_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "\"{needle}\" not in the output:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "vcac did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Passthru {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn vcac_passthru_binary_obeys_stdin_and_signals() {
    let server = Running::start("127.0.0.1:0");
    let mut vcac = Passthru::start(&server.addr().to_string(), &[]);
    server.expect(&[
        "connected",
        "reader added vcac passthru 0",
        &format!("card inserted 0 {ATR_HEX}"),
    ]);
    let mut got = Vec::new();
    server.card(0).transmit(&SELECT_CCC, &mut got).unwrap();
    assert_eq!(got, hex!("61 0D"));
    assert!(vcac.log().contains("PIN 12345678"));

    vcac.say("remove");
    server.expect(&["card removed 0"]);
    vcac.wait_log("reader 0: card removed");
    vcac.say("remove 0");
    vcac.wait_log("reader #0: no card inserted");
    vcac.say("list");
    vcac.wait_log("  0              vcac passthru 0");
    vcac.say("insert");
    server.expect(&[&format!("card inserted 0 {ATR_HEX}")]);
    vcac.say("list");
    vcac.wait_log("  0 CARD_PRESENT vcac passthru 0");
    vcac.say("frobnicate");
    vcac.wait_log("unknown command \"frobnicate\"");

    vcac.signal("USR1");
    server.expect(&["card removed 0"]);
    vcac.signal("USR2");
    server.expect(&[&format!("card inserted 0 {ATR_HEX}")]);
    got.clear();
    server.card(0).transmit(&SELECT_CCC, &mut got).unwrap();
    assert_eq!(got, hex!("61 0D"));

    // SIGTERM: goodbye to the host, clean exit.
    vcac.signal("TERM");
    server.expect(&["card removed 0", "reader removed 0", "disconnected"]);
    let status = vcac.wait_exit();
    assert!(status.success(), "{status}\n{}", vcac.log());
    assert!(vcac.log().contains("stopped"));
}

#[test]
fn vcac_passthru_exit_command() {
    let server = Running::start("127.0.0.1:0");
    let mut vcac = Passthru::start(&server.addr().to_string(), &[]);
    server.expect(&[
        "connected",
        "reader added vcac passthru 0",
        &format!("card inserted 0 {ATR_HEX}"),
    ]);
    vcac.say("exit");
    server.expect(&["card removed 0", "reader removed 0", "disconnected"]);
    assert!(vcac.wait_exit().success());
}

#[test]
fn vcac_passthru_waits_for_the_host_and_reconnects_when_it_restarts() {
    // Nothing listens yet: vcac retries with back-off.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let vcac = Passthru::start(&addr, &["--no-stdin"]);
    vcac.wait_log("cannot reach the VSCard host");
    std::thread::sleep(Duration::from_millis(500));

    let first = Running::start(&addr);
    first.expect(&[
        "connected",
        "reader added vcac passthru 0",
        &format!("card inserted 0 {ATR_HEX}"),
    ]);
    let mut got = Vec::new();
    first.card(0).transmit(&SELECT_CCC, &mut got).unwrap();
    assert_eq!(got, hex!("61 0D"));
    // The host goes away (QEMU restarts) and comes back on the same port.
    drop(first);
    vcac.wait_log("closed the connection; reconnecting");
    let second = Running::start(&addr);
    second.expect(&[
        "connected",
        "reader added vcac passthru 0",
        &format!("card inserted 0 {ATR_HEX}"),
    ]);
    got.clear();
    second.card(0).transmit(&SELECT_CCC, &mut got).unwrap();
    assert_eq!(got, hex!("61 0D"));
}

fn read_exact_timeout(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).unwrap();
    buf
}

/// True when the peer closed the connection (EOF or reset) within 10 s.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn client_speaks_exact_bytes_and_drops_a_hostile_host() {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let set = Arc::new(ReaderSet::new());
    let r = set.add_reader("vcac 0").unwrap();
    set.insert_card(r, card()).unwrap();
    let client = ClientRun::start(fake.local_addr().unwrap(), &set);

    let (mut s, _) = fake.accept().unwrap();
    assert_eq!(
        read_exact_timeout(&mut s, 24),
        hex!("00000001 FFFFFFFF 0000000C 56534344 00000002 00000000")
    );
    // Greet like QEMU; the client clears reader 0 and adds its reader.
    s.write_all(&hex!(
        "00000001 FFFFFFFF 0000000C 56534344 00000002 00000000"
    ))
    .unwrap();
    assert_eq!(
        read_exact_timeout(&mut s, 12 + 12 + 6),
        hex!("00000004 00000000 00000000  00000003 FFFFFFFF 00000006 7663616320 30")
    );
    // Cleanup answered, then ReaderAdd → ID 0: the ATR follows.
    s.write_all(&hex!(
        "00000002 00000000 00000004 00000000  00000002 00000000 00000004 00000000"
    ))
    .unwrap();
    assert_eq!(
        read_exact_timeout(&mut s, 12 + 15),
        hex!("00000005 00000000 0000000F 3B7A18000073667465206364313434")
    );
    s.write_all(&hex!("00000002 00000000 00000004 00000000"))
        .unwrap();
    // An APDU and its exact answer.
    s.write_all(&hex!("00000007 00000000 0000000A 00A4040005A000000001"))
        .unwrap();
    assert_eq!(
        read_exact_timeout(&mut s, 14),
        hex!("00000007 00000000 00000002 6A82")
    );
    // Flush → FlushComplete.
    s.write_all(&hex!("00000008 00000000 00000000")).unwrap();
    assert_eq!(
        read_exact_timeout(&mut s, 12),
        hex!("00000009 00000000 00000000")
    );
    // A header announcing 4 GiB: the client hangs up rather than buffer it.
    s.write_all(&hex!("00000007 00000000 FFFFFFFF 00")).unwrap();
    assert!(closed_by_peer(&mut s));

    // ... and comes back with a fresh Init.
    let (mut s, _) = fake.accept().unwrap();
    assert_eq!(
        read_exact_timeout(&mut s, 24),
        hex!("00000001 FFFFFFFF 0000000C 56534344 00000002 00000000")
    );
    // A wrong magic ends that session too.
    s.write_all(&hex!(
        "00000001 FFFFFFFF 0000000C 00000000 00000002 00000000"
    ))
    .unwrap();
    assert!(closed_by_peer(&mut s));
    let (mut s, _) = fake.accept().unwrap();
    assert_eq!(read_exact_timeout(&mut s, 24)[..4], hex!("00000001"));
    drop(s);
    client.stop();
}

#[test]
fn server_drops_hostile_clients_and_keeps_serving() {
    let server = Running::start("127.0.0.1:0");
    let init = hex!("00000001 FFFFFFFF 0000000C 56534344 00000002 00000000");

    // A length over 64 KiB: dropped before the payload arrives.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(&init).unwrap();
    assert_eq!(read_exact_timeout(&mut s, 24), init);
    s.write_all(&hex!("00000003 FFFFFFFF 7FFFFFFF")).unwrap();
    assert!(closed_by_peer(&mut s));
    server.expect(&["connected", "disconnected"]);

    // Anything before Init: dropped.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(&hex!("00000003 FFFFFFFF 00000000")).unwrap();
    assert!(closed_by_peer(&mut s));
    server.expect(&["disconnected"]);

    // Bad ATRs and unknown types are answered with a general error; the
    // reader cap holds.
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(&init).unwrap();
    assert_eq!(read_exact_timeout(&mut s, 24), init);
    s.write_all(&hex!("00000003 FFFFFFFF 00000001 41")).unwrap();
    assert_eq!(
        read_exact_timeout(&mut s, 16),
        hex!("00000002 00000000 00000004 00000000")
    );
    s.write_all(&hex!("00000005 00000000 00000002 3C00"))
        .unwrap();
    s.write_all(&hex!("000000AB 00000000 00000000")).unwrap();
    assert_eq!(
        read_exact_timeout(&mut s, 32),
        hex!("00000002 00000000 00000004 00000001  00000002 00000000 00000004 00000001")
    );
    for _ in 1..16 {
        s.write_all(&hex!("00000003 FFFFFFFF 00000000")).unwrap();
        read_exact_timeout(&mut s, 16);
    }
    s.write_all(&hex!("00000003 FFFFFFFF 00000000")).unwrap();
    assert_eq!(
        read_exact_timeout(&mut s, 16),
        hex!("00000002 FFFFFFFF 00000004 00000002")
    );
    drop(s);
    server.expect(&["connected", "reader added A"]);
    for _ in 1..16 {
        server.expect(&["reader added "]);
    }
    // Every reader goes when the client does.
    let mut removed = 0;
    loop {
        let e = server.next();
        if e == "disconnected" {
            break;
        }
        assert!(e.starts_with("reader removed"), "{e}");
        removed += 1;
    }
    assert_eq!(removed, 16);

    // A well-behaved client is still served.
    let set = Arc::new(ReaderSet::new());
    let r = set.add_reader("after").unwrap();
    set.insert_card(r, card()).unwrap();
    let _client = ClientRun::start(server.addr(), &set);
    server.expect(&[
        "connected",
        "reader added after",
        &format!("card inserted 0 {ATR_HEX}"),
    ]);
}

#[test]
fn vcac_passthru_records_what_the_guest_sends_with_the_pin_masked() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("passthru.apdu");
    let server = Running::start("127.0.0.1:0");
    let mut vcac = Passthru::start(
        &server.addr().to_string(),
        &["--record", file.to_str().unwrap()],
    );
    server.expect(&[
        "connected",
        "reader added vcac passthru 0",
        &format!("card inserted 0 {ATR_HEX}"),
    ]);
    let mut got = Vec::new();
    server.card(0).transmit(&SELECT_CCC, &mut got).unwrap();
    assert_eq!(got, hex!("61 0D"));
    got.clear();
    let verify = hex!("00 20 00 00 08 31 32 33 34 35 36 37 38");
    server.card(0).transmit(&verify, &mut got).unwrap();
    assert_eq!(got, hex!("90 00"));
    vcac.say("exit");
    server.expect(&["card removed 0", "reader removed 0", "disconnected"]);
    assert!(vcac.wait_exit().success(), "{}", vcac.log());

    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        text.lines().any(|l| l
            .replace(' ', "")
            .eq_ignore_ascii_case(&format!("#ATR:{ATR_HEX}"))),
        "{text}"
    );
    let hex_of = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
    let norm = |l: &str| l.replace(' ', "").to_ascii_uppercase();
    assert_eq!(
        lines.iter().map(|l| norm(l)).collect::<Vec<_>>(),
        [
            hex_of(&SELECT_CCC),
            "610D".to_owned(),
            "0020000008FFFFFFFFFFFFFFFF".to_owned(),
            "9000".to_owned(),
        ],
        "{text}"
    );
}
