//! A real Garage cluster for the object-storage tests: three `garage server` processes
//! on loopback, replication factor 3, one key and one bucket. Nothing is mocked.
//!
//! The binary is `garage` on PATH, or where `.ci/run` installs it
//! (`~/.cache/cairn-tools/garage-VERSION/bin/garage`). A missing binary fails the test,
//! naming what to run: these tests are never skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The version `.ci/run` installs.
pub const GARAGE_VERSION: &str = "2.5.0";
pub const BUCKET: &str = "cairn";
pub const REGION: &str = "garage";

pub struct Garage {
    /// The nodes' directories, removed with the cluster.
    _dir: tempfile::TempDir,
    binary: PathBuf,
    nodes: Vec<Node>,
    pub key_id: String,
    pub secret: String,
    /// `id@address` of each node, as `node connect` takes it.
    node_ids: Vec<String>,
}

struct Node {
    config: PathBuf,
    s3_port: u16,
    /// Behind a lock so that a test holding the cluster shared can stop and start nodes.
    process: std::sync::Mutex<Option<Child>>,
}

fn garage_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("garage"))
        .find(|p| p.is_file());
    let installed = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(format!(".cache/cairn-tools/garage-{GARAGE_VERSION}/bin/garage")))
        .filter(|p| p.is_file());
    on_path.or(installed).unwrap_or_else(|| {
        panic!(
            "garage not found on PATH nor in ~/.cache/cairn-tools: run .ci/run, or \
             `cargo install --locked garage@{GARAGE_VERSION} --root ~/.cache/cairn-tools/garage-{GARAGE_VERSION}`"
        )
    })
}

/// A port free now on loopback (the listener is dropped; the cluster binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

impl Garage {
    /// Starts three nodes, joins them, applies a layout and makes a key and a bucket.
    pub fn start() -> Garage {
        let binary = garage_binary();
        let dir = tempfile::Builder::new().prefix("cairn-garage-").tempdir().expect("temp dir");
        let secret: String = (0..64).map(|i| b"0123456789abcdef"[(i * 7 + 3) % 16] as char).collect();
        let nodes = (0..3)
            .map(|i| {
                let node_dir = dir.path().join(format!("node{i}"));
                std::fs::create_dir_all(&node_dir).unwrap();
                let (rpc, s3_port, admin) = (free_port(), free_port(), free_port());
                let config = node_dir.join("garage.toml");
                let text = format!(
                    "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                     replication_factor = 3\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                     rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
                     [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\n\
                     [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
                    d = node_dir.display()
                );
                std::fs::write(&config, text).unwrap();
                Node { config, s3_port, process: Default::default() }
            })
            .collect();
        let mut garage = Garage {
            _dir: dir,
            binary,
            nodes,
            key_id: String::new(),
            secret: String::new(),
            node_ids: Vec::new(),
        };
        for i in 0..3 {
            garage.start_node(i);
        }
        for i in 0..3 {
            garage.wait_until(i, Duration::from_secs(30), |g| g.cli(i, &["status"]).is_some());
            garage.node_ids.push(garage.cli(i, &["node", "id", "-q"]).expect("node id").trim().to_string());
        }
        let ids = garage.wait_for_node_ids(3);
        for id in &ids {
            garage.cli(0, &["layout", "assign", "-z", "dc1", "-c", "1G", id]).expect("layout assign");
        }
        garage.cli(0, &["layout", "apply", "--version", "1"]).expect("layout apply");
        let key = garage.cli(0, &["key", "create", "cairn-test"]).expect("key create");
        let field = |name: &str| {
            key.lines()
                .find_map(|l| {
                    l.trim().strip_prefix(name).map(|v| v.trim().trim_start_matches(':').trim().to_string())
                })
                .unwrap_or_else(|| panic!("no {name} in:\n{key}"))
        };
        garage.key_id = field("Key ID");
        garage.secret = field("Secret key");
        garage.cli(0, &["bucket", "create", BUCKET]).expect("bucket create");
        let allow = ["bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "cairn-test"];
        garage.cli(0, &allow).expect("bucket allow");
        garage.wait_until(0, Duration::from_secs(30), |g| g.bucket_answers());
        garage
    }

    fn start_node(&self, i: usize) {
        let node = &self.nodes[i];
        let log_path = node.config.with_file_name("log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).unwrap();
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start garage");
        *node.process.lock().unwrap() = Some(child);
    }

    /// Runs `garage -c NODE args`; its stdout when it succeeded.
    pub fn cli(&self, i: usize, args: &[&str]) -> Option<String> {
        let out = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run garage");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn wait_until(&self, i: usize, limit: Duration, ready: impl Fn(&Garage) -> bool) {
        let deadline = Instant::now() + limit;
        while !ready(self) {
            assert!(Instant::now() < deadline, "garage node {i} not ready after {limit:?}: {}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The ids `garage status` lists (16 hex digits at the start of a line), once it
    /// lists `n`.
    fn wait_for_node_ids(&self, n: usize) -> Vec<String> {
        let ids = |g: &Garage| -> Vec<String> {
            let status = g.cli(0, &["status"]).unwrap_or_default();
            let words = status.lines().filter_map(|l| l.split_whitespace().next());
            words
                .filter(|w| w.len() == 16 && w.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(str::to_string)
                .collect()
        };
        // Connecting again until they are listed: a node that was not listening yet
        // refuses the first try.
        self.wait_until(0, Duration::from_secs(60), |g| {
            g.connect_nodes();
            ids(g).len() >= n
        });
        ids(self)
    }

    fn bucket_answers(&self) -> bool {
        self.cli(0, &["bucket", "info", BUCKET]).is_some()
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// A cairn repository URL under `prefix` in the bucket, through node `i`.
    pub fn repo_url(&self, i: usize, prefix: &str) -> String {
        format!("s3:{}/{BUCKET}/{prefix}", self.endpoint(i))
    }

    /// The credentials as cairn (and restic) read them.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
        ]
    }

    /// Kills node `i` outright.
    pub fn kill_node(&self, i: usize) {
        if let Some(mut child) = self.nodes[i].process.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Tells node 0 where the others are. Needed again after a restart: a node keeps
    /// its list of peers only from time to time, so one killed soon after it joined
    /// starts knowing nobody.
    fn connect_nodes(&self) {
        for id in &self.node_ids[1..] {
            self.cli(0, &["node", "connect", id]);
        }
    }

    /// Starts `nodes` again on their directories, and waits until each serves the bucket.
    pub fn restart_nodes(&self, nodes: &[usize]) {
        for &i in nodes {
            self.start_node(i);
        }
        for &i in nodes {
            self.wait_until(i, Duration::from_secs(30), |g| g.cli(i, &["status"]).is_some());
        }
        self.wait_for_node_ids(3);
        for &i in nodes {
            self.wait_until(i, Duration::from_secs(60), |g| g.cli(i, &["bucket", "info", BUCKET]).is_some());
        }
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| std::fs::read_to_string(n.config.with_file_name("log")).unwrap_or_default())
            .map(|log| log.lines().rev().take(10).collect::<Vec<_>>().join("\n"))
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}
