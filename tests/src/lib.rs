//! Harness for integration tests against the real peers.
//!
//! [`PcscEnv`] starts a private pcscd in its own mount and network
//! namespace (`unshare -m -n`): its own `/run/pcscd`, its own loopback, and
//! its own `/etc/reader.conf.d`, so tests run in parallel without port
//! clashes and never touch the machine's pcscd. Commands run inside it with
//! `nsenter`. OpenSC's file cache is off (`OPENSC_CONF`).
//!
//! A missing peer is a test **failure** with a message saying what to
//! install — never a skip.
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

pub mod guest;
pub mod nss;
pub mod softhsm;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The OpenSC PKCS#11 module.
pub const OPENSC_PKCS11: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
/// vsmartcard's pcscd driver.
pub const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
/// libccid's serial driver.
pub const CCIDTWIN_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libccidtwin.so";

/// Sends SIGTERM to `child` (`kill -TERM`); true if `kill` succeeded.
pub fn sigterm(child: &Child) -> bool {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits up to `grace` for `child` to exit, then kills it; true if it
/// exited by itself.
pub fn wait_or_kill(child: &mut Child, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// SIGTERM, then [`wait_or_kill`].
pub fn terminate(child: &mut Child, grace: Duration) {
    sigterm(child);
    wait_or_kill(child, grace);
}

/// Fails the test unless every listed program or file exists.
pub fn require_peers(what: &[&str]) {
    let missing = missing_peers(what);
    assert!(
        missing.is_empty(),
        "missing peer(s) {missing:?}: install them with `apt-get install pcscd vsmartcard-vpcd opensc \
         opensc-pkcs11 libccid` (./run-tests does this)"
    );
}

/// The listed programs (looked up in `PATH`) and files (absolute paths)
/// that do not exist.
fn missing_peers<'a>(what: &[&'a str]) -> Vec<&'a str> {
    let mut missing = Vec::new();
    for w in what {
        let found = if w.starts_with('/') {
            Path::new(w).exists()
        } else {
            Command::new("sh")
                .args(["-c", &format!("command -v {w}")])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !found {
            missing.push(*w);
        }
    }
    missing
}

fn require_root() {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "these tests start a private pcscd with unshare/nsenter and must run as root"
    );
}

/// Path of the `vcac` binary (with the `openssl` feature), built once per
/// test run with the same profile as the tests, and copied aside so that a
/// concurrent `cargo build` cannot swap it for one without the feature.
pub fn vcac_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let release = !cfg!(debug_assertions);
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target"));
        let built = target
            .join(if release { "release" } else { "debug" })
            .join("vcac");
        let copy = target.join(format!("vcac-integration-{}", std::process::id()));
        // Copies left by earlier test processes that have exited.
        for entry in std::fs::read_dir(&target).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("vcac-integration-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        for _ in 0..3 {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(&root).args([
                "build",
                "-q",
                "-p",
                "vcac",
                "--bin",
                "vcac",
                "--features",
                "openssl",
            ]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build for vcac");
            assert!(
                status.success(),
                "cargo build -p vcac --bin vcac --features openssl failed"
            );
            std::fs::copy(&built, &copy)
                .unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
            // ETXTBSY while a process another test thread forks still
            // holds the copy's write descriptor (until it execs).
            let mut tries = 0;
            let version = loop {
                match Command::new(&copy).arg("--version").output() {
                    Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    other => break other.unwrap(),
                }
            };
            if String::from_utf8_lossy(&version.stdout).contains("openssl") {
                return copy;
            }
        }
        panic!(
            "{} keeps being rebuilt without the openssl feature",
            built.display()
        );
    })
}

/// A reader pcscd should load.
#[derive(Clone, Debug)]
pub enum ReaderConf {
    /// vsmartcard's vpcd listening on `port` (slot 0) and `port + 1`.
    Vpcd {
        /// Base port.
        port: u16,
    },
    /// libccid's serial driver on a device path (e.g. a pty symlink).
    CcidTwin {
        /// Device path.
        device: PathBuf,
        /// Reader type suffix (`GemPCTwin`, `SEC1210URT`, ...).
        reader: String,
    },
}

/// A private pcscd and its namespace.
pub struct PcscEnv {
    pcscd: Child,
    pid: u32,
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl PcscEnv {
    /// Starts pcscd with the default vpcd reader (ports 35963/35964).
    pub fn vpcd() -> PcscEnv {
        PcscEnv::start(&[ReaderConf::Vpcd { port: 35963 }])
    }

    /// Starts pcscd with these readers, and waits until it answers.
    pub fn start(readers: &[ReaderConf]) -> PcscEnv {
        PcscEnv::start_with(readers, |_| {})
    }

    /// Like [`PcscEnv::start`], but runs `before_pcscd` once the
    /// environment's directory and reader.conf exist and before pcscd
    /// starts — pcscd opens serial readers at start-up, so a program that
    /// creates the device (`vcac ccid-serial`) must run first. Children it
    /// starts with [`PreStart::spawn_vcac`] are stopped with the
    /// environment and count for [`PcscEnv::vcac_log`].
    pub fn start_with(
        readers: &[ReaderConf],
        before_pcscd: impl FnOnce(&mut PreStart<'_>),
    ) -> PcscEnv {
        require_root();
        require_peers(&[
            "pcscd",
            "unshare",
            "nsenter",
            "ip",
            "opensc-tool",
            "pkcs11-tool",
            OPENSC_PKCS11,
        ]);
        let dir = tempfile::tempdir().unwrap();
        let conf_dir = dir.path().join("reader.conf.d");
        std::fs::create_dir(&conf_dir).unwrap();
        for (i, r) in readers.iter().enumerate() {
            let text = match r {
                ReaderConf::Vpcd { port } => {
                    require_peers(&[VPCD_DRIVER]);
                    format!(
                        "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME /dev/null:0x{port:04X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:04X}\n"
                    )
                }
                ReaderConf::CcidTwin { device, reader } => {
                    require_peers(&[CCIDTWIN_DRIVER]);
                    format!(
                        "FRIENDLYNAME \"vcac serial\"\nDEVICENAME {}:{reader}\nLIBPATH {CCIDTWIN_DRIVER}\n",
                        device.display()
                    )
                }
            };
            std::fs::write(conf_dir.join(format!("reader{i}")), text).unwrap();
        }
        std::fs::write(
            dir.path().join("opensc.conf"),
            "app default {\n  framework pkcs15 { use_file_caching = false; }\n}\n",
        )
        .unwrap();
        let mut pre = PreStart {
            dir: dir.path(),
            children: Vec::new(),
        };
        before_pcscd(&mut pre);
        let children = pre.children;
        let log = std::fs::File::create(dir.path().join("pcscd.log")).unwrap();
        let script = format!(
            "mkdir -p /run/pcscd && mount -t tmpfs none /run/pcscd && mount --bind {} /etc/reader.conf.d \
             && ip link set lo up && exec pcscd -f -a -d",
            conf_dir.display()
        );
        let pcscd = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start pcscd with unshare");
        let pid = pcscd.id();
        let mut env = PcscEnv {
            pcscd,
            pid,
            dir,
            children,
        };
        env.wait_until(Duration::from_secs(10), "pcscd to answer", |env| {
            env.command("opensc-tool")
                .arg("-l")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
        env
    }

    /// The temporary directory of this environment (logs, configs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// pcscd's log so far (APDUs and driver messages), for failure reports.
    pub fn pcscd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pcscd.log")).unwrap_or_default()
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid.to_string(), "-m", "-n", "--"])
            .arg(program)
            .env("OPENSC_CONF", self.dir.path().join("opensc.conf"));
        cmd
    }

    /// Runs a command inside the namespace and returns its output.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program).args(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout. On failure the
    /// panic carries stdout, stderr and pcscd's log tail.
    pub fn ok(&self, program: &str, args: &[&str]) -> String {
        let out = self.run(program, args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let log = self.pcscd_log();
            let tail: String = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "{program} {args:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}\n--- pcscd log tail\n{tail}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        stdout
    }

    /// Runs `pkcs11-tool --module opensc-pkcs11.so ARGS`, which must succeed.
    pub fn pkcs11(&self, args: &[&str]) -> String {
        let mut all = vec!["--module", OPENSC_PKCS11];
        all.extend_from_slice(args);
        self.ok("pkcs11-tool", &all)
    }

    /// Starts `vcac ARGS` inside the namespace; it is killed (SIGTERM) when
    /// the environment drops.
    pub fn spawn_vcac(&mut self, args: &[&str]) -> &mut Child {
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("vcac{}.log", self.children.len())),
        )
        .unwrap();
        let child = self
            .command(vcac_bin())
            .args(args)
            .env("RUST_LOG", "debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.last_mut().unwrap()
    }

    /// Process ID of the `n`-th vcac started.
    pub fn vcac_pid(&self, n: usize) -> u32 {
        self.children[n].id()
    }

    /// Waits for the `n`-th vcac to exit and returns its status.
    pub fn wait_vcac_exit(&mut self, n: usize, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.children[n].try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "vcac did not exit within {timeout:?}:\n{}",
                self.vcac_log(n)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Output of the `n`-th vcac started so far.
    pub fn vcac_log(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("vcac{n}.log"))).unwrap_or_default()
    }

    /// Polls `check` every 50 ms until it holds or `timeout` passes (panic).
    pub fn wait_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&mut PcscEnv) -> bool,
    ) {
        let start = Instant::now();
        while !check(self) {
            if let Ok(Some(status)) = self.pcscd.try_wait() {
                panic!(
                    "pcscd exited ({status}) while waiting for {what}:\n{}",
                    self.pcscd_log()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}\n--- pcscd log\n{}\n--- vcac log\n{}",
                self.pcscd_log(),
                self.vcac_log(self.children.len().saturating_sub(1))
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `opensc-tool -l` shows a card in reader number `index`.
    pub fn wait_for_card(&mut self, index: usize) {
        self.wait_until(
            Duration::from_secs(60),
            &format!("a card in reader {index}"),
            |env| {
                let out = env.run("opensc-tool", &["-l"]);
                let text = String::from_utf8_lossy(&out.stdout);
                text.lines()
                    .filter_map(|l| {
                        l.split_whitespace()
                            .collect::<Vec<_>>()
                            .get(..2)
                            .map(|v| (v[0].to_owned(), v[1].to_owned()))
                    })
                    .any(|(nr, card)| nr == index.to_string() && card == "Yes")
            },
        );
    }
}

impl Drop for PcscEnv {
    fn drop(&mut self) {
        for c in &self.children {
            sigterm(c);
        }
        for c in &mut self.children {
            wait_or_kill(c, Duration::from_secs(3));
        }
        let _ = self.pcscd.kill();
        let _ = self.pcscd.wait();
    }
}

/// What [`PcscEnv::start_with`] can do before pcscd starts.
pub struct PreStart<'a> {
    dir: &'a Path,
    children: Vec<Child>,
}

impl PreStart<'_> {
    /// The environment's temporary directory (visible inside the
    /// namespace too).
    pub fn dir(&self) -> &Path {
        self.dir
    }

    /// Starts `vcac ARGS` on the host (a pty it creates is visible in
    /// pcscd's namespace: same devpts); its log is `vcacN.log`.
    pub fn spawn_vcac(&mut self, args: &[&str]) -> &mut Child {
        let log = std::fs::File::create(self.dir.join(format!("vcac{}.log", self.children.len())))
            .unwrap();
        let child = Command::new(vcac_bin())
            .args(args)
            .env("RUST_LOG", "debug")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.last_mut().unwrap()
    }

    /// Waits until `path` exists (e.g. the pty symlink); panics with the
    /// last vcac's log after `timeout`.
    pub fn wait_for_path(&mut self, path: &Path, timeout: Duration) {
        let start = Instant::now();
        while std::fs::symlink_metadata(path).is_err() {
            let n = self.children.len().saturating_sub(1);
            let log =
                std::fs::read_to_string(self.dir.join(format!("vcac{n}.log"))).unwrap_or_default();
            if let Some(c) = self.children.last_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "vcac exited ({status}) before creating {}:\n{log}",
                        path.display()
                    );
                }
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not appear within {timeout:?}:\n{log}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `cmd`, which must succeed; returns its output. A program that
/// cannot run is a missing peer: a failure naming it.
pub fn check(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (a required peer is missing)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A SoftHSM2 configuration, `dir/softhsm2.conf`, for `SOFTHSM2_CONF`:
/// tokens in `dir/tokens` (file object store), removable slots, errors
/// logged only, then the lines `extra`.
pub fn softhsm_conf(dir: &Path, extra: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nslots.removable = true\n\
             log.level = ERROR\n{extra}",
            tokens.display()
        ),
    )
    .unwrap();
    conf
}

/// Runs `openssl ARGS`, which must succeed; returns its output.
pub fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes the public key of the certificate `cert` (PEM) to `out` (PEM).
pub fn public_key_of(cert: &Path, out: &Path) {
    let o = openssl(&["x509", "-in", cert.to_str().unwrap(), "-pubkey", "-noout"]);
    std::fs::write(out, o.stdout).unwrap();
}

impl PcscEnv {
    /// `pkcs11-tool --read-object --type cert --id 0001..` returns exactly
    /// `dir/id0.pem`.. (as DER) for the first `count` identities.
    pub fn assert_certificates_read_back(&self, dir: &Path, count: usize) {
        self.assert_slot_certificates_read_back(None, dir, count);
    }

    /// [`PcscEnv::assert_certificates_read_back`] on the token in PKCS#11
    /// slot index `slot` (`None`: the first token).
    pub fn assert_slot_certificates_read_back(
        &self,
        slot: Option<usize>,
        dir: &Path,
        count: usize,
    ) {
        let slot_arg = slot.map(|s| s.to_string());
        for i in 0..count {
            let out = self
                .dir()
                .join(format!("read{}-{i}.der", slot.unwrap_or(0)));
            let id = format!("{:04X}", i + 1);
            let mut args = Vec::new();
            if let Some(s) = &slot_arg {
                args.extend(["--slot-index", s.as_str()]);
            }
            args.extend([
                "--read-object",
                "--type",
                "cert",
                "--id",
                &id,
                "-o",
                out.to_str().unwrap(),
            ]);
            self.pkcs11(&args);
            let got = std::fs::read(&out).unwrap();
            let want = pem_to_der(&dir.join(format!("id{i}.pem")));
            assert_eq!(got, want, "certificate {id} differs from id{i}.pem");
        }
    }

    /// Signs `data` with `pkcs11-tool --sign -m SHA256-RSA-PKCS --id ID`
    /// after logging in with `pin`, and checks with `openssl dgst -verify`
    /// against the certificate `cert`. Returns the signature.
    pub fn assert_signature_verifies(
        &self,
        pin: &str,
        id: &str,
        cert: &Path,
        data: &[u8],
    ) -> Vec<u8> {
        let input = self.dir().join(format!("sign-{id}.in"));
        let sig = self.dir().join(format!("sign-{id}.sig"));
        let key = self.dir().join(format!("sign-{id}.pub.pem"));
        std::fs::write(&input, data).unwrap();
        self.pkcs11(&[
            "--login",
            "--pin",
            pin,
            "--sign",
            "-m",
            "SHA256-RSA-PKCS",
            "--id",
            id,
            "-i",
            input.to_str().unwrap(),
            "-o",
            sig.to_str().unwrap(),
        ]);
        public_key_of(cert, &key);
        let v = openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            key.to_str().unwrap(),
            "-signature",
            sig.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "Verified OK");
        std::fs::read(&sig).unwrap()
    }
}

/// Converts a PEM certificate file to DER with openssl.
pub fn pem_to_der(pem: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl x509 {}", pem.display());
    out.stdout
}

/// Writes the embedded default card directory into `dir`.
pub fn write_default_card(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in certs_fixtures::default_card::files() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A transcript of "KEY VALUE" lines (the C tests' and the libcacard
/// harnesses' output) as a map; a line without a space is a key with an
/// empty value, and a later line wins over an earlier one with its key.
pub fn key_values(text: &str) -> std::collections::BTreeMap<String, String> {
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}
