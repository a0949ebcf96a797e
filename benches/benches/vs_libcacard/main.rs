//! This project's card side by side with the system's libcacard 2.8, in
//! one run, on the same machine state: every figure it prints is a ratio
//! of two things measured a few milliseconds apart, alternating in rounds
//! (medians over the rounds), so the noise of a shared machine mostly
//! cancels.
//!
//! ```text
//!   cargo bench -p vcac-benches --features openssl --bench vs_libcacard
//! ```
//!
//! What it measures (all in this process unless said):
//!
//! 1. The OpenSC bind transcript (`data/opensc-bind-apdus.txt` less its
//!    private-key operations) replayed command by command: ns per APDU,
//!    through `vreader::ReaderHandle::transmit` here and
//!    `vreader_xfr_bytes` there.
//! 2. An adaptive bind ([`vcac_benches::Client::adaptive_bind`]) against
//!    each card: the lengths come from the card, so each reads its own
//!    certificates whole.
//! 3. RSA-2048 SIGN through the card as OpenSC sends it under T=0 (INS 42
//!    chained, GET RESPONSE): ms per signature, ours per key backend and
//!    libcacard's (NSS), and `openssl speed rsa2048` run as a subprocess.
//! 4. 1,000 cards with distinct identities created and powered on, and
//!    the heap each keeps (a counting global allocator).
//! 5. APDU round trip through a private pcscd + vpcd (needs root): our
//!    card served by `ccid::vpcd::serve`, against a floor card that
//!    answers `90 00` to everything through the same pcscd.
//!
//! Missing libcacard, certutil, openssl or pcscd is a failure with a
//! message saying what to install, never a skip. Run without `--bench`
//! (as `cargo test --benches` does) it does everything with tiny counts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

#[allow(unsafe_code)]
mod counting;
#[cfg(vcac_have_libcacard)]
#[allow(unsafe_code)]
mod libcacard;
#[cfg(vcac_have_libcacard)]
#[allow(unsafe_code)]
mod pcsc;
#[cfg(vcac_have_libcacard)]
mod pcscd;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

#[cfg(not(vcac_have_libcacard))]
fn main() {
    eprintln!(
        "vs_libcacard: pkg-config found no libcacard or no libpcsclite when this bench was built.\n\
         Install them (apt-get install libcacard-dev libpcsclite-dev pkg-config libnss3-tools \
         pcscd vsmartcard-vpcd) and run again; the build script looks again."
    );
    std::process::exit(1);
}

#[cfg(vcac_have_libcacard)]
fn main() {
    run::main();
}

#[cfg(vcac_have_libcacard)]
mod run {
    use std::collections::HashSet;
    use std::fmt::Write as _;
    use std::hint::black_box;
    use std::process::Command;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use cac::keys::{load_private_key, KeyHandle};
    use cac::{Card, Identity, Pin, PinPolicy};
    use certs_fixtures::{IdentitySpec, KeyType, PkiBuilder, Role};
    use vcac_benches::{bind_commands, replay, sign_apdus_t0, signature_block, Client, PIN};
    use vreader::{ReaderHandle, ReaderSet};

    use crate::counting;
    use crate::libcacard::{make_nss_db, Libcacard};
    use crate::pcsc;
    use crate::pcscd::{PrivatePcscd, FLOOR_READER, OUR_READER};

    /// How long and how often to measure.
    struct Scale {
        rounds: usize,
        budget: Duration,
        signs: usize,
        openssl_seconds: u32,
        openssl_rounds: usize,
        rtt_apdus: usize,
    }

    impl Scale {
        fn new(full: bool) -> Scale {
            if full {
                Scale {
                    rounds: 9,
                    budget: Duration::from_millis(60),
                    signs: 30,
                    openssl_seconds: 1,
                    openssl_rounds: 3,
                    rtt_apdus: 1000,
                }
            } else {
                Scale {
                    rounds: 1,
                    budget: Duration::from_millis(5),
                    signs: 2,
                    openssl_seconds: 1,
                    openssl_rounds: 1,
                    rtt_apdus: 20,
                }
            }
        }
    }

    /// One line of the final table.
    struct Row {
        what: String,
        ours: String,
        theirs: String,
        ratio: String,
        target: String,
        met: Option<bool>,
    }

    pub(crate) fn main() {
        let full = std::env::args().any(|a| a == "--bench");
        let scale = Scale::new(full);
        require_tools();
        crate::pcscd::require_peers();
        // Before any other thread exists: where libpcsclite finds our
        // private pcscd, and no glib debug logging in libcacard.
        let pcscd_dir = tempfile::tempdir().unwrap();
        std::env::set_var(
            "PCSCLITE_CSOCK_NAME",
            PrivatePcscd::socket_path(pcscd_dir.path()),
        );
        std::env::remove_var("G_MESSAGES_DEBUG");

        println!("# vcac vs libcacard — one run\n");
        println!("{}", machine());
        let mut rows = Vec::new();

        // --- the two cards -------------------------------------------------
        let nss = tempfile::tempdir().unwrap();
        make_nss_db(nss.path());
        let t = Instant::now();
        let mut lib = Libcacard::start(nss.path());
        let lib_atr = lib.power_on();
        let lib_init = t.elapsed();
        let set = ReaderSet::new();
        let ours = reader_with(&set, "vcac", vcac_benches::default_card());
        println!(
            "libcacard ATR {}; vcac ATR {}",
            hex(&lib_atr),
            hex(&ours.atr().unwrap())
        );

        // --- 1. the OpenSC bind transcript, replayed ---------------------
        let bind = bind_commands();
        let mut rsp = Vec::with_capacity(300);
        let mut rsp2 = Vec::with_capacity(300);
        let ours_sw = sw_summary(&bind, &mut |c, r| ours.transmit(c, r).unwrap());
        let lib_sw = sw_summary(&bind, &mut |c, r| lib.transmit(c, r));
        println!(
            "bind transcript: {} APDUs; status words 9000/61xx/other: vcac {ours_sw:?}, libcacard {lib_sw:?}",
            bind.len()
        );
        let (a, b) = alternate(
            &scale,
            bind.len(),
            || {
                replay(&bind, &mut |c, r| ours.transmit(c, r).unwrap(), &mut rsp);
            },
            bind.len(),
            || {
                replay(&bind, &mut |c, r| lib.transmit(c, r), &mut rsp2);
            },
        );
        rows.push(Row {
            what: format!(
                "OpenSC bind transcript replayed ({} APDUs, no key operations), ns/APDU",
                bind.len()
            ),
            ours: format!("{a:.0}"),
            theirs: format!("{b:.0}"),
            ratio: format!("{:.1}× fewer", b / a),
            target: "≥ 10× fewer".into(),
            met: Some(b / a >= 10.0),
        });

        // --- 2. adaptive bind -------------------------------------------
        let (our_bind, our_apdus) = bind_once(&mut |c, r| ours.transmit(c, r).unwrap());
        let (lib_bind, lib_apdus) = bind_once(&mut |c, r| lib.transmit(c, r));
        assert_eq!(our_bind.certificates.len(), 3, "vcac: {our_bind:?}");
        assert_eq!(lib_bind.certificates.len(), 3, "libcacard: {lib_bind:?}");
        println!(
            "adaptive bind: vcac {our_apdus} APDUs / {} applets / {} buffer bytes; libcacard {lib_apdus} APDUs / {} applets / {} buffer bytes",
            our_bind.applets, our_bind.bytes, lib_bind.applets, lib_bind.bytes
        );
        let (a, b) = alternate(
            &scale,
            our_apdus,
            || {
                black_box(
                    Client::new(|c: &[u8], r: &mut Vec<u8>| ours.transmit(c, r).unwrap())
                        .adaptive_bind(),
                );
            },
            lib_apdus,
            || {
                black_box(
                    Client::new(|c: &[u8], r: &mut Vec<u8>| lib.transmit(c, r)).adaptive_bind(),
                );
            },
        );
        rows.push(Row {
            what: format!(
                "adaptive bind, each card's own lengths (vcac {our_apdus}, libcacard {lib_apdus} APDUs), ns/APDU"
            ),
            ours: format!("{a:.0}"),
            theirs: format!("{b:.0}"),
            ratio: format!("{:.1}× fewer", b / a),
            target: "—".into(),
            met: None,
        });

        // --- 3. RSA-2048 SIGN through the card ---------------------------
        let apdus = sign_apdus_t0(&signature_block(256));
        login_t0(&mut |c, r| ours.transmit(c, r).unwrap());
        login_t0(&mut |c, r| lib.transmit(c, r));
        check_sign(&apdus, &mut |c, r| ours.transmit(c, r).unwrap());
        check_sign(&apdus, &mut |c, r| lib.transmit(c, r));
        let backends: Vec<(&str, ReaderHandle)> = vec![
            ("RustCrypto (default)", ours.clone()),
            #[cfg(feature = "openssl")]
            ("OpenSSL (feature `openssl`)", {
                let ossl = reader_with(
                    &set,
                    "vcac-openssl",
                    default_card_with(&cac::keys::openssl::OpenSsl),
                );
                login_t0(&mut |c, r| ossl.transmit(c, r).unwrap());
                check_sign(&apdus, &mut |c, r| ossl.transmit(c, r).unwrap());
                ossl
            }),
        ];
        // One round: each backend, then libcacard; medians over rounds.
        let mut samples = vec![Vec::new(); backends.len() + 1];
        for _ in 0..scale.rounds {
            for ((_, handle), xs) in backends.iter().zip(samples.iter_mut()) {
                xs.push(sign_loop(&apdus, scale.signs, &mut |c, r| {
                    handle.transmit(c, r).unwrap()
                }));
            }
            if let Some(xs) = samples.last_mut() {
                xs.push(sign_loop(&apdus, scale.signs, &mut |c, r| {
                    lib.transmit(c, r)
                }));
            }
        }
        let medians: Vec<f64> = samples.iter_mut().map(|xs| median(xs) / 1e6).collect();
        let lib_ms = medians.last().copied().unwrap_or(f64::NAN);
        for ((name, _), a) in backends.iter().zip(&medians) {
            let default = name.starts_with("RustCrypto");
            rows.push(Row {
                what: format!("RSA-2048 SIGN through the card, {name}, ms/sign"),
                ours: format!("{a:.3}"),
                theirs: format!("{lib_ms:.3}"),
                ratio: format!("{:.2}× faster", lib_ms / a),
                target: if default {
                    "≥ 1.3× faster".into()
                } else {
                    "—".into()
                },
                met: default.then_some(lib_ms / a >= 1.3),
            });
        }
        // Our OpenSSL backend against `openssl speed` (wall clock, like
        // everything here), alternating so both see the same machine.
        let ossl = backends.iter().find(|(n, _)| n.starts_with("OpenSSL"));
        let (mut ours_ms, mut speed_ms) = (Vec::new(), Vec::new());
        for _ in 0..scale.openssl_rounds {
            if let Some((_, h)) = ossl {
                let n = scale.signs * 8;
                ours_ms.push(sign_loop(&apdus, n, &mut |c, r| h.transmit(c, r).unwrap()) / 1e6);
            }
            speed_ms.push(1000.0 / openssl_speed(scale.openssl_seconds));
        }
        let speed_ms = median(&mut speed_ms);
        if ours_ms.is_empty() {
            rows.push(Row {
                what: "OpenSSL backend vs `openssl speed -elapsed rsa2048`".into(),
                ours: "not built".into(),
                theirs: format!("{speed_ms:.3}"),
                ratio: "—".into(),
                target: "run with --features openssl".into(),
                met: Some(false),
            });
        } else {
            let a = median(&mut ours_ms);
            rows.push(Row {
                what: format!(
                    "RSA-2048 SIGN, OpenSSL backend through the card vs `openssl speed -elapsed rsa2048` ({:.0} sign/s), ms/sign",
                    1000.0 / speed_ms
                ),
                ours: format!("{a:.3}"),
                theirs: format!("{speed_ms:.3}"),
                ratio: format!("{:.2}× its time", a / speed_ms),
                target: "≤ 1.5×".into(),
                met: Some(a / speed_ms <= 1.5),
            });
        }

        // --- 4. 1,000 cards ----------------------------------------------
        drop(backends);
        let identities = thousand_identities();
        // Heap bytes the cards keep, counted by the global allocator (the
        // process RSS says little: the allocator reuses what setup freed).
        let (cards, heap) = counting::net_bytes(|| make_cards(&identities));
        let distinct: HashSet<&[u8]> = cards.iter().map(|c| c.card_id()).collect();
        assert_eq!(distinct.len(), cards.len(), "card IDs must be distinct");
        let per_card = heap as f64 / cards.len() as f64;
        drop(cards);
        let cert_len =
            identities.iter().map(|(c, _)| c.len()).sum::<usize>() as f64 / identities.len() as f64;
        let mut times = Vec::new();
        for _ in 0..scale.rounds.max(3) {
            let t = Instant::now();
            let cards = make_cards(&identities);
            times.push(t.elapsed().as_secs_f64() * 1e3);
            drop(black_box(cards));
        }
        let create_ms = median(&mut times);
        rows.push(Row {
            what: "1,000 cards with distinct identities (P-256) created + powered on, ms total"
                .into(),
            ours: format!("{create_ms:.1} ({:.1} µs/card)", create_ms),
            theirs: format!(
                "{:.1} for its one card (NSS init + ATR)",
                lib_init.as_secs_f64() * 1e3
            ),
            ratio: "—".into(),
            target: "well under 1 s (≤ 100 ms)".into(),
            met: Some(create_ms <= 100.0),
        });
        rows.push(Row {
            what: format!(
                "memory per card: heap bytes each card keeps, all included (its certificate: {cert_len:.0} B)"
            ),
            ours: format!("{per_card:.0} B"),
            theirs: "—".into(),
            ratio: "—".into(),
            target: "reported".into(),
            met: None,
        });

        // --- 5. pcscd + vpcd round trip ----------------------------------
        let mut pcscd = PrivatePcscd::start(pcscd_dir);
        let rtt_set = ReaderSet::new();
        let rtt_ours = reader_with(&rtt_set, "vcac-vpcd", vcac_benches::default_card());
        pcscd.serve_ours(rtt_ours);
        pcscd.serve_floor(cac::DEFAULT_ATR.to_vec());
        let ctx = pcsc::Context::establish().unwrap();
        let mut our_card = connect(&ctx, OUR_READER, &pcscd);
        let mut floor = connect(&ctx, FLOOR_READER, &pcscd);
        let select: [u8; 12] = [
            0x00, 0xA4, 0x04, 0x0C, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00,
        ];
        let mut r = Vec::new();
        our_card.transmit(&select, &mut r).unwrap();
        assert_eq!(r, [0x90, 0x00], "our card through pcscd");
        r.clear();
        floor.transmit(&select, &mut r).unwrap();
        assert_eq!(r, [0x90, 0x00], "floor card through pcscd");
        let n = scale.rtt_apdus;
        let pcsc_loop = |card: &mut pcsc::Card<'_>, cmds: &[&[u8]]| {
            let mut r = Vec::with_capacity(300);
            for c in cmds {
                r.clear();
                card.transmit(c, &mut r).unwrap();
            }
        };
        let selects: Vec<&[u8]> = vec![&select[..]; n];
        pcsc_loop(&mut our_card, &selects[..n.min(100)]);
        pcsc_loop(&mut floor, &selects[..n.min(100)]);
        let (a, b) = alternate_n(
            &scale,
            || time_per(n, || pcsc_loop(&mut our_card, &selects)),
            || time_per(n, || pcsc_loop(&mut floor, &selects)),
        );
        rows.push(Row {
            what: "APDU round trip through pcscd + vpcd (SELECT → 90 00), µs/APDU".into(),
            ours: format!("{:.1}", a / 1e3),
            theirs: format!("{:.1} (floor card)", b / 1e3),
            ratio: format!("{:.2}× the floor", a / b),
            target: "≤ 1.5×".into(),
            met: Some(a / b <= 1.5),
        });
        let bind_refs: Vec<&[u8]> = bind.iter().map(Vec::as_slice).collect();
        let (a, b) = alternate_n(
            &scale,
            || time_per(bind_refs.len(), || pcsc_loop(&mut our_card, &bind_refs)),
            || time_per(bind_refs.len(), || pcsc_loop(&mut floor, &bind_refs)),
        );
        rows.push(Row {
            what: format!(
                "bind transcript through pcscd + vpcd ({} APDUs; the floor answers 90 00 to all), µs/APDU",
                bind.len()
            ),
            ours: format!("{:.1}", a / 1e3),
            theirs: format!("{:.1} (floor card)", b / 1e3),
            ratio: format!("{:.2}× the floor", a / b),
            target: "—".into(),
            met: None,
        });
        drop(our_card);
        drop(floor);
        drop(ctx);
        drop(pcscd);

        print_table(&rows);
        let missed: Vec<&str> = rows
            .iter()
            .filter(|r| r.met == Some(false))
            .map(|r| r.what.as_str())
            .collect();
        if missed.is_empty() {
            println!("\nEvery target met.");
        } else {
            println!("\nTargets missed in this run: {missed:?}");
        }
        if !full {
            println!(
                "(quick mode, as under `cargo test --benches`: this checks that everything runs; \
                 in a debug build the figures mean nothing. `cargo bench` measures.)"
            );
        }
    }

    /// Fails with a clear message unless certutil and openssl are present.
    fn require_tools() {
        for (prog, package) in [("certutil", "libnss3-tools"), ("openssl", "openssl")] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {prog}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(found, "{prog} not found: apt-get install {package}");
        }
    }

    fn machine() -> String {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| "unknown CPU".into());
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load: Vec<&str> = load.split_whitespace().take(3).collect();
        let version = |cmd: &str, args: &[&str]| {
            Command::new(cmd)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default()
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "machine: {model}, {cpus} CPUs, load average {}",
            load.join(" ")
        );
        let _ = writeln!(
            s,
            "peers: libcacard {}, {}, pcscd {}",
            version("pkg-config", &["--modversion", "libcacard"]),
            version("openssl", &["version"]),
            version("pkg-config", &["--modversion", "libpcsclite"]),
        );
        s
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02X}")).collect()
    }

    /// A reader in `set` holding `card`, powered on.
    fn reader_with(set: &ReaderSet, name: &str, card: Card) -> ReaderHandle {
        let id = set.add_reader(name).unwrap();
        set.insert_card(id, card).unwrap();
        let handle = set.handle(id).unwrap();
        handle.power_on().unwrap();
        handle
    }

    /// The embedded default card with its keys loaded through `backend`.
    #[cfg(feature = "openssl")]
    fn default_card_with(backend: &dyn cac::keys::KeyBackend) -> Card {
        use rand_core::SeedableRng;
        let files = certs_fixtures::default_card::files();
        let mut read = |name: &str| {
            files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| b.to_vec())
                .ok_or_else(|| name.to_owned())
        };
        cac::config::load_card(
            certs_fixtures::default_card::CARD_TOML,
            &mut read,
            backend,
            rand_chacha::ChaCha20Rng::seed_from_u64(2),
        )
        .unwrap()
    }

    /// Counts final status words: (9000, 61xx, other).
    fn sw_summary(
        cmds: &[Vec<u8>],
        tx: &mut dyn FnMut(&[u8], &mut Vec<u8>),
    ) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        let mut r = Vec::new();
        for c in cmds {
            r.clear();
            tx(c, &mut r);
            match r[r.len() - 2..] {
                [0x90, 0x00] => counts.0 += 1,
                [0x61, _] => counts.1 += 1,
                _ => counts.2 += 1,
            }
        }
        counts
    }

    fn bind_once(tx: &mut dyn FnMut(&[u8], &mut Vec<u8>)) -> (vcac_benches::BindReport, usize) {
        let mut client = Client::new(|c: &[u8], r: &mut Vec<u8>| tx(c, r));
        let report = client.adaptive_bind();
        (report, client.apdus())
    }

    /// Selects PKI applet 0 and verifies the PIN, T=0 style, on either card.
    fn login_t0(tx: &mut dyn FnMut(&[u8], &mut Vec<u8>)) {
        let mut client = Client::new(|c: &[u8], r: &mut Vec<u8>| tx(c, r));
        let mut data = Vec::new();
        let select = [
            0x00, 0xA4, 0x04, 0x00, 0x07, 0xA0, 0x00, 0x00, 0x00, 0x79, 0x01, 0x00,
        ];
        assert_eq!(client.exchange(&select, &mut data), 0x9000, "SELECT PKI 0");
        let mut verify = vec![0x00, 0x20, 0x00, 0x00, 0x08];
        verify.extend_from_slice(PIN.as_bytes());
        let sw = client.exchange(&verify, &mut data);
        assert_eq!(sw, 0x9000, "VERIFY: {sw:04X}");
    }

    fn check_sign(apdus: &[Vec<u8>], tx: &mut dyn FnMut(&[u8], &mut Vec<u8>)) {
        let mut r = Vec::new();
        for (i, a) in apdus.iter().enumerate() {
            r.clear();
            tx(a, &mut r);
            let expect: &[u8] = match i {
                0 => &[0x90, 0x00],
                1 => &[0x61, 0x00],
                _ => &[0x90, 0x00],
            };
            assert_eq!(&r[r.len() - 2..], expect, "SIGN step {i}: {}", hex(&r));
        }
        assert_eq!(r.len(), 258, "signature length");
    }

    /// Runs `n` signatures; returns ns per signature.
    fn sign_loop(apdus: &[Vec<u8>], n: usize, tx: &mut dyn FnMut(&[u8], &mut Vec<u8>)) -> f64 {
        let mut r = Vec::with_capacity(300);
        time_per(n, || {
            for _ in 0..n {
                for a in apdus {
                    r.clear();
                    tx(a, &mut r);
                }
                black_box(&r);
            }
        })
    }

    /// Times `f`, which does `units` operations; returns ns per unit.
    fn time_per(units: usize, f: impl FnOnce()) -> f64 {
        let t = Instant::now();
        f();
        t.elapsed().as_nanos() as f64 / units.max(1) as f64
    }

    /// Repeats `f` (`units` operations each) for at least `budget`;
    /// returns ns per unit.
    fn for_budget(budget: Duration, units: usize, mut f: impl FnMut()) -> f64 {
        let t = Instant::now();
        let mut runs = 0;
        loop {
            f();
            runs += 1;
            let e = t.elapsed();
            if e >= budget {
                return e.as_nanos() as f64 / (runs * units).max(1) as f64;
            }
        }
    }

    /// Alternates `a` and `b` for the scale's rounds, each for the time
    /// budget; returns the median ns per unit of each.
    fn alternate(
        scale: &Scale,
        a_units: usize,
        mut a: impl FnMut(),
        b_units: usize,
        mut b: impl FnMut(),
    ) -> (f64, f64) {
        a();
        b();
        alternate_n(
            scale,
            || for_budget(scale.budget, a_units, &mut a),
            || for_budget(scale.budget, b_units, &mut b),
        )
    }

    /// Alternates two measurements for the scale's rounds; medians.
    fn alternate_n(
        scale: &Scale,
        mut a: impl FnMut() -> f64,
        mut b: impl FnMut() -> f64,
    ) -> (f64, f64) {
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        for _ in 0..scale.rounds {
            xs.push(a());
            ys.push(b());
        }
        (median(&mut xs), median(&mut ys))
    }

    fn median(v: &mut [f64]) -> f64 {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }

    /// `openssl speed -elapsed -seconds S rsa2048`: private-key operations
    /// per second of wall-clock time (by default it divides by CPU time,
    /// which a busy machine does not inflate, unlike our wall-clock loops).
    fn openssl_speed(seconds: u32) -> f64 {
        let out = Command::new("openssl")
            .args([
                "speed",
                "-elapsed",
                "-seconds",
                &seconds.to_string(),
                "rsa2048",
            ])
            .output()
            .expect("run openssl speed (apt-get install openssl)");
        assert!(out.status.success(), "openssl speed failed");
        let text = String::from_utf8_lossy(&out.stdout);
        // "rsa 2048 bits 0.000402s 0.000012s   2487.6  83333.3"
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() >= 6 && f[0] == "rsa" && f[1] == "2048" && f[2] == "bits")
            .and_then(|f| f[5].parse().ok())
            .unwrap_or_else(|| panic!("cannot find sign/s for rsa 2048 in:\n{text}"))
    }

    /// 1,000 distinct identities: P-256 keys (cheap to make) with
    /// certificates from one seeded CA, keys loaded once.
    fn thousand_identities() -> Vec<(Vec<u8>, Arc<dyn KeyHandle>)> {
        let mut b = PkiBuilder::new(1000).ca_key(KeyType::P256);
        for i in 0..1000 {
            b = b.identity(IdentitySpec::new(
                Role::Authentication,
                KeyType::P256,
                format!("BENCH.CARD.{i:010}"),
            ));
        }
        let pki = b.build().unwrap();
        pki.identities()
            .iter()
            .map(|id| {
                let cred = id.credential();
                let key = load_private_key(&cac::keys::RustCrypto, cred.key_der()).unwrap();
                (cred.cert_der().to_vec(), key)
            })
            .collect()
    }

    /// What is timed: one card per identity, built (certificate checked
    /// against its key, buffers laid out, card ID derived) and powered on.
    fn make_cards(ids: &[(Vec<u8>, Arc<dyn KeyHandle>)]) -> Vec<Card> {
        let mut cards = Vec::with_capacity(ids.len());
        for (cert, key) in ids {
            let mut card = Card::builder(PinPolicy::new(Pin::new(PIN).unwrap()))
                .identity(Identity::new(cert.clone(), Arc::clone(key)))
                .build(rand_core::UnwrapErr(getrandom::SysRng))
                .unwrap();
            card.power_on();
            cards.push(card);
        }
        cards
    }

    fn connect<'c>(ctx: &'c pcsc::Context, reader: &str, pcscd: &PrivatePcscd) -> pcsc::Card<'c> {
        let start = Instant::now();
        loop {
            match ctx.connect(reader) {
                Ok(card) => return card,
                Err(e) if start.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!(
                    "no card in \"{reader}\" after 20 s ({e}); readers {:?}\n--- pcscd log\n{}",
                    ctx.readers(),
                    pcscd.log()
                ),
            }
        }
    }

    fn print_table(rows: &[Row]) {
        println!();
        println!("| measurement | vcac | libcacard / reference | ratio | target | met |");
        println!("|---|---:|---:|---:|---|---|");
        for r in rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "",
            };
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                r.what, r.ours, r.theirs, r.ratio, r.target, met
            );
        }
    }
}
