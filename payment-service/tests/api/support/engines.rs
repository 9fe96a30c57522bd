//! Private engine processes for tests that stop and restart a dependency (the shared ones must stay up).
//! The binaries come from `scripts/engines.py`, which exports SECANTUSD_BIN, TANSU_BIN and NOIDA_BIN.
use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("bound").port()
}

fn binary(variable: &str) -> String {
    std::env::var(variable)
        .unwrap_or_else(|_| panic!("{variable} is not set: run the tests through scripts/engines.py"))
}

/// A fresh directory for an engine's data, removed when dropped (also when the test fails).
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("payment-service-engine-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("a data directory");
        Self(path)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running engine process, stopped (by its own pid) when dropped.
pub struct EngineProcess {
    child: Child,
    pub port: u16,
    /// The signal the engine shuts down cleanly on.
    stop_signal: &'static str,
}

impl EngineProcess {
    /// A MongoDB-protocol server (SecantusDB) keeping its data in `data_dir` across restarts.
    pub fn mongodb(port: u16, data_dir: &DataDir) -> Self {
        let child = Command::new(binary("SECANTUSD_BIN"))
            .args(["--sync-on-commit", "--host", "127.0.0.1", "--port", &port.to_string(), "--storage-path"])
            .arg(&data_dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("SecantusDB starts");
        Self::ready(child, port, "TERM")
    }

    /// A Kafka-protocol broker (Tansu) keeping everything in memory: a restart forgets topics and messages.
    pub fn kafka(port: u16) -> Self {
        let listener = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary("TANSU_BIN"))
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Tansu starts");
        // Tansu ignores SIGTERM.
        Self::ready(child, port, "INT")
    }

    /// A durable Kafka-protocol broker (noida-db) keeping topics, producer ids and offsets in `data_dir`
    /// across restarts, as real Kafka does. Restarting the in-memory Tansu instead makes it answer fetches for
    /// a vanished topic id with a zero id and a leader hint, which crashes librdkafka 2.12 (a null topic name in
    /// `rd_kafka_metadata_update_op`); a real broker never forgets its topics.
    pub fn durable_kafka(port: u16, data_dir: &DataDir) -> Self {
        let child = Command::new(binary("NOIDA_BIN"))
            .args(["start", "--only", "kafka", "--kafka-port", &port.to_string(), "--data-dir"])
            .arg(&data_dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("noida-db starts");
        Self::ready(child, port, "INT")
    }

    fn ready(mut child: Child, port: u16, stop_signal: &'static str) -> Self {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the engine on port {port} exited early: {status}");
            }
            assert!(Instant::now() < deadline, "the engine on port {port} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, stop_signal }
    }

    /// Stops the process cleanly (so that SecantusDB persists its data) and waits for it to exit.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args([&format!("-{}", self.stop_signal), &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.shut_down();
    }
}
