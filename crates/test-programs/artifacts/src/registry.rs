//! A real OCI registry for the tests: Debian's `docker-registry` (the CNCF distribution
//! registry), started on a free localhost port with its storage in a temporary folder.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a registry may take to answer after it starts.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A running registry; stopped when dropped.
#[derive(Debug)]
pub struct TestRegistry {
    child: Option<Child>,
    address: SocketAddr,
    storage: tempfile::TempDir,
}

/// The registry program: `$DLINKWM_TEST_REGISTRY`, else `docker-registry` (Debian's name), else
/// `registry` (the upstream name), as found on `PATH`.
pub fn registry_program() -> Option<PathBuf> {
    if let Some(program) = std::env::var_os("DLINKWM_TEST_REGISTRY") {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    ["docker-registry", "registry"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

impl TestRegistry {
    /// Starts a registry on a free port of 127.0.0.1 and waits until it answers `GET /v2/`.
    ///
    /// # Panics
    /// When the program is missing (`cargo xtask test` installs it: the `docker-registry`
    /// package) or does not answer within a minute.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let mut registry = Self {
            child: None,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            storage: tempfile::tempdir().expect("a folder for the registry"),
        };
        registry.restart();
        registry
    }

    /// `host:port`, as references name it.
    pub fn host(&self) -> String {
        self.address.to_string()
    }

    /// Stops the registry (its storage stays, for [`TestRegistry::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the registry again on the same port and storage, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let program = registry_program().expect(
            "no OCI registry program: install Debian's `docker-registry` package \
             (`cargo xtask test` does) or set DLINKWM_TEST_REGISTRY",
        );
        let config = self.storage.path().join("config.yml");
        let root = self.storage.path().join("data");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {}\n",
                root.display(),
                self.address
            ),
        )
        .expect("write the registry's configuration");
        let child = Command::new(&program)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", program.display()));
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        while !self.answers() {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("{} exited at start: {status}", program.display());
            }
            assert!(
                Instant::now() < deadline,
                "the registry did not answer within {READY_WITHIN:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.address, Duration::from_secs(1))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.address);
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
    }

    /// The file in which the registry keeps the blob of `digest` (`sha256:…`): what an attacker
    /// with access to the registry's storage would alter.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// The registry's storage folder.
    pub fn storage(&self) -> &Path {
        self.storage.path()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
