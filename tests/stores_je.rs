//! The `bdb-je` and `qpid` store types against real Berkeley DB Java Edition 3.3
//! environments (Debian's libdb-je-java), driven by tests/je/JeTool.java: restored
//! copies must open (JE's recovery), verify and hold every record committed before the
//! backup started, even when JE's cleaner deletes and creates log files during the copy.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use support::*;

const JE_JAR: &str = "/usr/share/java/db-je.jar";

/// JeTool compiled once per test run.
fn classpath() -> String {
    static CLASSES: OnceLock<PathBuf> = OnceLock::new();
    let classes = CLASSES.get_or_init(|| {
        let classes = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jetool-classes");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/je/JeTool.java");
        let out = Command::new("javac")
            .args(["-cp", JE_JAR, "-d"])
            .arg(&classes)
            .arg(&source)
            .output()
            .expect("run javac");
        assert!(out.status.success(), "javac: {}", String::from_utf8_lossy(&out.stderr));
        classes
    });
    format!("{JE_JAR}:{}", classes.display())
}

fn je(args: &[&str]) -> String {
    let out =
        Command::new("java").arg("-cp").arg(classpath()).arg("JeTool").args(args).output().expect("java");
    assert!(out.status.success(), "JeTool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The writer: commits record after record (and rewrites older ones, so the cleaner
/// deletes and creates log files) until killed. Returns it with the last number it has
/// reported committed once at least `warm_up` commits are done.
struct Writer {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Writer {
    fn start(home: &Path, first: u64) -> Writer {
        let mut child = Command::new("java")
            .arg("-cp")
            .arg(classpath())
            .args(["JeTool", "writer", home.to_str().unwrap(), &first.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the JE writer");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Writer { child, lines }
    }

    /// Waits for `count` more commits; returns the last committed record number.
    fn committed_after(&mut self, count: usize) -> u64 {
        let mut last = 0;
        for _ in 0..count {
            last = self.lines.next().expect("the writer stopped").unwrap().trim().parse().unwrap();
        }
        last
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn jdb_numbers(home: &Path) -> Vec<u64> {
    let mut numbers: Vec<u64> = fs::read_dir(home)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            u64::from_str_radix(name.strip_suffix(".jdb")?, 16).ok()
        })
        .collect();
    numbers.sort();
    numbers
}

fn manifest_files(env: &TestEnv, id: &str, component: usize) -> Vec<serde_json::Value> {
    let manifest = env.run(["cat", id]).success().json();
    manifest["components"][component]["files"].as_array().unwrap().clone()
}

#[test]
fn a_hot_copy_while_the_cleaner_deletes_and_creates_log_files_recovers() {
    let env = TestEnv::new();
    let home = env.path("je");
    je(&["create", home.to_str().unwrap(), "3000"]);
    let mut writer = Writer::start(&home, 3000);
    let before_backup = writer.committed_after(500);
    let files_before = jdb_numbers(&home);
    let report = env.backup_json(&home, &[]);
    let during = writer.committed_after(200);
    drop(writer);
    let files_after = jdb_numbers(&home);
    assert!(
        files_before.iter().any(|n| !files_after.contains(n))
            && files_after.iter().any(|n| !files_before.contains(n)),
        "the cleaner should have deleted and created files: {files_before:?} -> {files_after:?}"
    );

    let component = &report["components"][0];
    assert_eq!(component["store_type"], "bdb-je");
    assert_eq!(component["consistency"], "hot");
    assert_eq!(excluded_paths(component), ["je.lck"]);
    // Logs in ascending number, the component's range matching them.
    let id = report["id"].as_str().unwrap();
    let numbers: Vec<u64> =
        manifest_files(&env, id, 0).iter().filter_map(|f| f["log_number"].as_u64()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    assert_eq!(component["first_log_number"].as_u64(), numbers.first().copied());
    assert_eq!(component["last_log_number"].as_u64(), numbers.last().copied());

    let restored = env.path("restored");
    env.restore(id, &restored);
    let check = je(&["check", restored.to_str().unwrap(), &(before_backup + 1).to_string()]);
    let found: u64 = check.trim().strip_prefix("ok ").unwrap().parse().unwrap();
    assert!(
        found > before_backup && found <= during + 1,
        "{found} records, {before_backup} committed before"
    );
}

#[test]
fn an_incremental_reads_only_the_newest_log_files() {
    let env = TestEnv::new();
    let home = env.path("je");
    je(&["create", home.to_str().unwrap(), "3000"]);
    let first = env.backup_json(&home, &[]);
    let last = first["components"][0]["last_log_number"].as_u64().unwrap();
    let mut writer = Writer::start(&home, 3000);
    let committed = writer.committed_after(300);
    drop(writer);
    let second = env.backup_json(&home, &[]);
    assert_eq!(second["kind"], "incremental");
    // Files below the parent's last are complete: reused without reading.
    let id = second["id"].as_str().unwrap();
    let read_again: u64 = manifest_files(&env, id, 0)
        .iter()
        .filter(|f| f["log_number"].as_u64().is_some_and(|n| n >= last))
        .map(|f| f["size"].as_u64().unwrap())
        .sum();
    // (The cleaner may have deleted every older file meanwhile: then all is new.)
    assert_eq!(second["bytes_read"].as_u64().unwrap(), read_again);

    let restored = env.path("restored");
    env.restore(id, &restored);
    je(&["check", restored.to_str().unwrap(), &(committed + 1).to_string()]);
}

/// A work directory as Qpid Broker-J lays it out: the broker's config.json, a JSON
/// virtualhost node `default` whose virtualhost keeps its messages in JE, and a BDB
/// node `bdbnode` (config and messages both JE).
fn make_work_dir(work: &Path) {
    fs::create_dir_all(work.join("default/config")).unwrap();
    fs::create_dir_all(work.join("log")).unwrap();
    let broker = r#"{"name":"broker","modelVersion":"9.0","virtualhostnodes":[{"name":"default","type":"JSON"},{"name":"bdbnode","type":"BDB"}]}"#;
    fs::write(work.join("config.json"), broker).unwrap();
    fs::write(work.join("config.json.lck"), "").unwrap();
    fs::write(work.join("preferences.json"), "{}").unwrap();
    fs::write(work.join("log/qpid.log"), "broker started\n").unwrap();
    let node =
        r#"{"name":"default","type":"BDB","modelVersion":"9.0","queues":[{"name":"q1","durable":true}]}"#;
    fs::write(work.join("default/config/default.json"), node).unwrap();
    fs::write(work.join("default/config/default.lck"), "").unwrap();
    fs::write(work.join("default/preferences.json"), "{}").unwrap();
    je(&["create", work.join("default/messages").to_str().unwrap(), "800"]);
    je(&["create", work.join("bdbnode/config").to_str().unwrap(), "300"]);
    je(&["create", work.join("bdbnode/messages").to_str().unwrap(), "500"]);
}

#[test]
fn a_broker_work_directory_is_one_snapshot_of_its_stores_and_restores_in_place() {
    let env = TestEnv::new();
    let work = env.path("work");
    make_work_dir(&work);
    let mut writer = Writer::start(&work.join("default/messages"), 800);
    let committed = writer.committed_after(300);
    let run = env.run(["--json", "backup", work.to_str().unwrap()]);
    run.success().mentions("store type: qpid");
    drop(writer);
    let report = run.json();
    let components: Vec<(String, String)> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().into(), c["store_type"].as_str().unwrap().into()))
        .collect();
    let expected = [
        ("broker", "dir"),
        ("bdbnode.config", "bdb-je"),
        ("bdbnode.messages", "bdb-je"),
        ("default.config", "json"),
        ("default.messages", "bdb-je"),
    ];
    assert_eq!(components, expected.map(|(n, t)| (n.to_string(), t.to_string())));
    let json_store = &report["components"][3];
    assert_eq!(json_store["placement"], "default/config");
    assert_eq!(json_store["files"], 1);
    assert_eq!(json_store["excluded"][0]["path"], "default.lck");
    let listed = env.snapshots();
    assert_eq!(listed[0]["components"][4]["placement"], "default/messages");
    assert!(listed[0]["components"][4]["last_log_number"].is_u64());

    let restored = env.path("restored");
    env.restore(report["id"].as_str().unwrap(), &restored);
    // Everything but the stores' lock files and the messages that went on arriving.
    let skip = |p: &Path| {
        let name = p.file_name().unwrap().to_str().unwrap();
        name.ends_with(".lck") || p.starts_with("default/messages")
    };
    if let Some(diff) = tree_difference_except(&work, &restored, &skip) {
        panic!("restored work directory differs: {diff}");
    }
    je(&["check", restored.join("default/messages").to_str().unwrap(), &(committed + 1).to_string()]);
    je(&["check", restored.join("bdbnode/config").to_str().unwrap(), "300"]);
    je(&["check", restored.join("bdbnode/messages").to_str().unwrap(), "500"]);
}

#[test]
fn a_derby_store_is_refused_while_the_broker_may_run_and_copied_offline() {
    let env = TestEnv::new();
    let work = env.path("work");
    make_work_dir(&work);
    let derby = work.join("derbynode/config/derbynode");
    fs::create_dir_all(derby.join("seg0")).unwrap();
    fs::write(derby.join("service.properties"), "derby.serviceProtocol=org.apache.derby.database.Database\n")
        .unwrap();
    fs::write(derby.join("seg0/c10.dat"), vec![7u8; 8192]).unwrap();

    env.run(["backup", work.to_str().unwrap()])
        .failure()
        .mentions("derbynode's config store is Derby")
        .mentions("--offline");
    assert_eq!(env.snapshot_files(), 0, "no snapshot may be written");

    let report = env.backup_json(&work, &["--offline"]);
    let derby_component = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "derbynode.config")
        .expect("the Derby store is a component")
        .clone();
    assert_eq!(derby_component["store_type"], "dir");
    assert!(report["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["store_type"] == "bdb-je")
        .all(|c| c["consistency"] == "offline"));
    let restored = env.path("restored");
    env.restore(report["id"].as_str().unwrap(), &restored);
    let skip = |p: &Path| p.file_name().unwrap().to_str().unwrap().ends_with(".lck");
    if let Some(diff) = tree_difference_except(&work, &restored, &skip) {
        panic!("restored work directory differs: {diff}");
    }
}

#[test]
fn restore_until_log_takes_a_snapshots_files_with_its_last_log_whole() {
    let env = TestEnv::new();
    let home = env.path("je");
    je(&["create", home.to_str().unwrap(), "2000"]);
    let first = env.backup_json(&home, &[]);
    let mut writer = Writer::start(&home, 2000);
    writer.committed_after(400);
    drop(writer);
    let second = env.backup_json(&home, &[]);
    let last = |r: &serde_json::Value| r["components"][0]["last_log_number"].as_u64().unwrap();
    let (a, b) = (last(&first), last(&second));
    assert!(a < b);

    let out = env.path("at-a");
    let run =
        env.run(["--json", "restore", "--until-log", &a.to_string(), "--target", out.to_str().unwrap()]);
    let report = run.success().json();
    assert_eq!(report["data_from"], first["id"]);
    assert_eq!(jdb_numbers(&out).last(), Some(&a));
    je(&["check", out.to_str().unwrap(), "2000"]);

    // Files from between two snapshots cannot be put together consistently.
    let between = a + 1;
    assert!(between < b, "the writer should have filled several files");
    let out = env.path("between");
    env.run(["restore", "--until-log", &between.to_string(), "--target", out.to_str().unwrap()])
        .failure()
        .mentions("no snapshot ended at that log");
}

/// Why a JE copy must hold files open and list again, shown by a copy made the way
/// `cp -r` makes one (list once, then copy file by file) with the cleaner run between two
/// of its steps: files deleted meanwhile are missing and the files the cleaner moved
/// their records into were never listed, so records are lost. cairn's copy under a live
/// cleaner is shown above.
#[test]
fn a_list_once_copy_loses_records_when_the_cleaner_runs_mid_copy() {
    let env = TestEnv::without_repo();
    let home = env.path("je");
    je(&["create", home.to_str().unwrap(), "3000"]);
    let listed = jdb_numbers(&home);
    let naive = env.path("naive");
    fs::create_dir_all(&naive).unwrap();
    let copy = |n: &u64| {
        let name = format!("{n:08x}.jdb");
        // Like cp: a file gone since the listing is an error message, not a stop.
        let _ = fs::copy(home.join(&name), naive.join(&name));
    };
    let half = listed.len() / 2;
    listed[..half].iter().for_each(copy);
    je(&["churn", home.to_str().unwrap(), "1"]);
    listed[half..].iter().for_each(copy);
    let out = Command::new("java")
        .arg("-cp")
        .arg(classpath())
        .args(["JeTool", "check", naive.to_str().unwrap(), "3000"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the list-once copy should have lost records");
}

#[test]
fn work_directories_cairn_cannot_copy_faithfully_are_refused() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    let work = env.path("work");
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("config.json"), r#"{"modelVersion":"9.0"}"#).unwrap();
    // Two nodes whose names differ only in bytes that are not UTF-8.
    for name in [&b"n\xff"[..], b"n\xfe"] {
        let config = work.join(std::ffi::OsStr::from_bytes(name)).join("config");
        fs::create_dir_all(&config).unwrap();
        fs::write(config.join("node.json"), "{}").unwrap();
    }
    env.run(["backup", work.to_str().unwrap()]).failure().mentions("two components would be named");
    // A node directory that is a symlink: only the link would be kept.
    let elsewhere = env.path("elsewhere");
    fs::create_dir_all(elsewhere.join("config")).unwrap();
    fs::write(elsewhere.join("config/linked.json"), "{}").unwrap();
    let other = env.path("work2");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("config.json"), r#"{"modelVersion":"9.0"}"#).unwrap();
    std::os::unix::fs::symlink(&elsewhere, other.join("linked")).unwrap();
    env.run(["backup", other.to_str().unwrap()]).failure().mentions("is a symlink");
    assert_eq!(env.snapshot_files(), 0);
}
