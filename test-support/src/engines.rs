//! Engine processes of a test's own, next to the shared ones `scripts/engines.py` starts: a test may freeze,
//! kill, stop and restart them without disturbing the other tests. Each is stopped by its pid when dropped.
use std::{path::PathBuf, process::Child, time::Duration};

use crate::{closed_port, env};

/// Waits until something accepts connections on `port` (at most 30 s).
async fn wait_listening(port: u16, what: &str) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not start on port {port}");
}

fn signal(child: &Child, name: &str) -> bool {
    std::process::Command::new("kill").args([name, &child.id().to_string()]).status().is_ok_and(|s| s.success())
}

/// Sends `name` to a running engine; a test that freezes or thaws one that is not running fails.
fn signal_running(child: Option<&Child>, name: &str) {
    assert!(child.is_some_and(|child| signal(child, name)), "kill {name}");
}

/// SIGKILL, then reaps it; a frozen process is thawed first, so that it dies cleanly.
fn kill_thawed(mut child: Child) {
    signal(&child, "-CONT");
    let _ = child.kill();
    let _ = child.wait();
}

/// Asks the process to stop with `name` (as an operator would) and waits for it at most 10 s, then kills it: an
/// engine that does not stop must fail its test's expectations, not hang the test.
fn stop_within_grace(mut child: Child, name: &str) {
    signal(&child, name);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A private MongoDB-protocol server (SecantusDB, journaling every commit) on its own port and data directory.
pub struct PrivateMongo {
    pub port: u16,
    data_dir: PathBuf,
    child: Option<Child>,
}

impl PrivateMongo {
    pub async fn start() -> Self {
        let data_dir = std::env::temp_dir().join(format!("secantus-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir).expect("a data directory");
        let mut mongo = Self { port: closed_port(), data_dir, child: None };
        mongo.restart().await;
        mongo
    }

    /// With the URI options `scripts/engines.py` gives the shared engine.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true&retryWrites=false", self.port)
    }

    /// Starts it (again) on the same port and data directory.
    pub async fn restart(&mut self) {
        let child = std::process::Command::new(env("SECANTUSD_BIN"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string(), "--storage-path"])
            .arg(&self.data_dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("SecantusDB starts");
        // Kept before waiting, so that a failed start still stops the process (Drop).
        self.child = Some(child);
        wait_listening(self.port, "the private MongoDB-protocol server").await;
    }

    /// SIGKILL: the process dies at once, with whatever it had not written; its data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as an operator stops it (killed if it has not stopped within 10 s).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_within_grace(child, "-TERM");
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&self) {
        signal_running(self.child.as_ref(), "-STOP");
    }

    pub fn thaw(&self) {
        signal_running(self.child.as_ref(), "-CONT");
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_thawed(child);
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// What a service needs to use the tests' shared broker (`KAFKA_BROKERS` from `scripts/engines.py`, a Tansu): its
/// address and [`tansu_group_membership`].
pub fn shared_broker_settings() -> Vec<(&'static str, String)> {
    broker_settings(env("KAFKA_BROKERS"), tansu_group_membership())
}

/// How the services' consumers join their groups on Tansu, as `scripts/engines.py` tunes them for `scripts/stack` and
/// passes them to the tests (`TANSU_GROUP_MEMBERSHIP`, `KAFKA_SESSION_TIMEOUT_MS=…,KAFKA_STATIC_MEMBERSHIP=…`): said
/// once, there (DOCUMENTATION.md, "Consumer-group membership").
fn tansu_group_membership() -> [(&'static str, String); 2] {
    let tuned = env("TANSU_GROUP_MEMBERSHIP");
    ["KAFKA_SESSION_TIMEOUT_MS", "KAFKA_STATIC_MEMBERSHIP"].map(|name| {
        let value = tuned.split(',').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='));
        (name, value.unwrap_or_else(|| panic!("TANSU_GROUP_MEMBERSHIP ({tuned}) does not set {name}")).to_owned())
    })
}

/// The services' own defaults, for a broker that behaves like Kafka (noida-db): it refuses sessions under 6 s.
fn kafka_group_membership() -> [(&'static str, String); 2] {
    let defaults = platform::config::GroupMembership::default();
    [
        ("KAFKA_SESSION_TIMEOUT_MS", defaults.session_timeout.as_millis().to_string()),
        ("KAFKA_STATIC_MEMBERSHIP", defaults.static_members.to_string()),
    ]
}

fn broker_settings(address: String, membership: [(&'static str, String); 2]) -> Vec<(&'static str, String)> {
    let mut settings = vec![("KAFKA_BROKERS", address)];
    settings.extend(membership);
    settings
}

/// A private Kafka-protocol broker that a test may stop, restart, freeze and thaw on the same port: durable by
/// default (noida-db: topics, groups and offsets survive a restart, as with real Kafka), or in memory (Tansu, the
/// broker `scripts/stack` runs, which loses everything when it stops).
pub struct PrivateBroker {
    pub port: u16,
    data_dir: PathBuf,
    in_memory: bool,
    child: Option<Child>,
}

impl PrivateBroker {
    pub async fn start() -> Self {
        let mut broker = Self::not_started();
        broker.restart().await;
        broker
    }

    /// A Tansu broker, in memory as `scripts/stack` runs it.
    pub async fn start_in_memory() -> Self {
        let mut broker = Self::not_started();
        broker.in_memory = true;
        broker.restart().await;
        broker
    }

    /// One that is down at first: its address refuses connections until `restart` starts it.
    pub fn not_started() -> Self {
        let data_dir = std::env::temp_dir().join(format!("noida-{}", uuid::Uuid::new_v4().simple()));
        Self { port: closed_port(), data_dir, in_memory: false, child: None }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What a service needs to use this broker: its address, and the group membership that works on it.
    pub fn service_settings(&self) -> Vec<(&'static str, String)> {
        let membership = if self.in_memory { tansu_group_membership() } else { kafka_group_membership() };
        broker_settings(self.address(), membership)
    }

    /// Starts it (again) on the same port (and, when durable, the same data directory).
    pub async fn restart(&mut self) {
        let mut command = if self.in_memory {
            let listener = format!("tcp://{}", self.address());
            let mut command = std::process::Command::new(env("TANSU_BIN"));
            command.args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener]);
            command.args(["--storage-engine", "memory://tansu/"]);
            command
        } else {
            let mut command = std::process::Command::new(env("NOIDA_BIN"));
            command.args(["start", "--only", "kafka", "--kafka-port", &self.port.to_string(), "--data-dir"]);
            command.arg(&self.data_dir);
            command
        };
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the private broker starts");
        self.child = Some(child);
        wait_listening(self.port, "the private broker").await;
    }

    /// Stops the broker like an operator would (SIGINT, the stop signal of both), keeping a durable one's data
    /// (killed if it has not stopped within 10 s).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_within_grace(child, "-INT");
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open, nothing is answered.
    pub fn freeze(&self) {
        signal_running(self.child.as_ref(), "-STOP");
    }

    pub fn thaw(&self) {
        signal_running(self.child.as_ref(), "-CONT");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_thawed(child);
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
