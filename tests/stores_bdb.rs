//! The `bdb` store type against real Berkeley DB 5.3 environments (Debian's
//! python3-bsddb3 and db5.3-util): restored copies must pass the engine's own recovery
//! and verification and hold every record committed before the backup started.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::*;

fn bdbtool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bdb/bdbtool.py")
}

/// Runs bdbtool.py with the system Python, the one Debian's bindings load in.
fn bdb(args: &[&str]) {
    let out =
        Command::new("/usr/bin/python3").arg(bdbtool()).args(args).output().expect("run /usr/bin/python3");
    assert!(out.status.success(), "bdbtool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The engine's checks on a restored copy: catastrophic recovery, then verification of
/// every database, then every record.
fn assert_recovers_with(home: &Path, records: u64) {
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let h = home.to_str().unwrap();
    run("db5.3_recover", &["-c", "-h", h]);
    for name in ["accounts.db", "events.db"] {
        run("db5.3_verify", &["-h", h, name]);
    }
    bdb(&["check", h, &records.to_string()]);
}

fn names_in_copy_order(env: &TestEnv, id: &str) -> Vec<String> {
    let manifest = env.run(["cat", id]).success().json();
    let files = manifest["components"][0]["files"].as_array().unwrap();
    files.iter().map(|f| f["path"].as_str().unwrap().to_string()).collect()
}

#[test]
fn an_environment_is_recognised_copied_in_order_and_recovers() {
    let env = TestEnv::new();
    let home = env.path("home");
    bdb(&["create", home.to_str().unwrap(), "3000"]);
    let report = env.run(["--json", "backup", home.to_str().unwrap()]);
    report.success().mentions("store type: bdb");
    let report = report.json();
    assert_eq!(report["store_type"], "bdb");
    let excluded: Vec<&str> =
        report["excluded"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(excluded.contains(&"__db.001"), "{report}");
    assert!(report["excluded"][0]["reason"].as_str().unwrap().contains("region file"));

    let id = report["id"].as_str().unwrap();
    let names = names_in_copy_order(&env, id);
    assert_eq!(&names[..2], ["accounts.db", "events.db"], "data files first");
    let logs: Vec<&String> = names[2..].iter().collect();
    assert!(logs.len() > 3 && logs.iter().all(|n| n.starts_with("log.")));
    assert!(logs.windows(2).all(|w| w[0] < w[1]), "logs ascending: {logs:?}");
    assert_eq!(report["first_log_number"], 1);
    assert_eq!(report["last_log_number"], logs.len() as u64);
    let manifest = env.run(["cat", id]).success().json();
    let accounts = &manifest["components"][0]["files"][0];
    assert_eq!((accounts["role"].as_str(), accounts["chunker"].as_u64()), (Some("data"), Some(1)));

    let out = env.path("restored");
    env.restore(id, &out);
    assert!(!out.join("__db.001").exists());
    assert_recovers_with(&out, 3000);
}

#[test]
fn an_incremental_reuses_complete_logs_and_reads_data_files_again() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdb(&["create", h, "2000"]);
    let first = env.backup_json(&home, &[]);
    bdb(&["add", h, "2000", "1500"]);
    let second = env.backup_json(&home, &[]);
    assert_eq!(second["kind"], "incremental");
    assert!(second["last_log_number"].as_u64() > first["last_log_number"].as_u64());
    // Logs below the parent's last one are not read again; data files and newer logs are.
    let old_logs: u64 = (1..first["last_log_number"].as_u64().unwrap())
        .map(|n| fs::metadata(home.join(format!("log.{n:010}"))).unwrap().len())
        .sum();
    let bytes = second["bytes"].as_u64().unwrap();
    assert_eq!(second["bytes_read"].as_u64().unwrap(), bytes - old_logs, "{second}");
    let out = env.path("restored");
    env.restore(second["id"].as_str().unwrap(), &out);
    assert_recovers_with(&out, 3500);
}

#[test]
fn a_hot_copy_taken_while_a_writer_commits_recovers_with_every_earlier_commit() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdb(&["create", h, "1000"]);
    let mut writer = Command::new("/usr/bin/python3")
        .arg(bdbtool())
        .args(["writer", h, "1000"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    let mut committed = 0u64;
    // Let it run until it has switched log files a few times.
    while committed < 1500 {
        committed = lines.next().expect("writer output").unwrap().trim().parse().unwrap();
    }
    let report = env.backup_json(&home, &[]);
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert_eq!(report["store_type"], "bdb");
    assert!(report["passes"].as_u64().unwrap() >= 1);
    let out = env.path("restored");
    env.restore(report["id"].as_str().unwrap(), &out);
    assert_recovers_with(&out, committed + 1);
}

#[test]
fn a_gap_in_the_logs_fails_the_backup_and_writes_no_snapshot() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdb(&["create", h, "2000"]);
    fs::remove_file(home.join("log.0000000003")).unwrap();
    env.run(["backup", h]).failure().mentions("log files 3 to 3 are missing");
    assert!(env.snapshots().is_empty());
    // Asked for explicitly, a plain copy is still possible.
    env.run(["backup", "--type", "dir", h]).success();
}

#[test]
fn an_environment_with_relocated_files_is_refused() {
    let env = TestEnv::new();
    let home = env.path("home");
    bdb(&["create", home.to_str().unwrap(), "10"]);
    fs::write(home.join("DB_CONFIG"), "set_data_dir data\n").unwrap();
    env.run(["backup", home.to_str().unwrap()]).failure().mentions("set_data_dir");
    assert!(env.snapshots().is_empty());
}

#[test]
fn offline_is_refused_while_a_process_uses_the_environment_and_recorded_after() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdb(&["create", h, "500"]);
    let mut writer = Command::new("/usr/bin/python3")
        .arg(bdbtool())
        .args(["writer", h, "500"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the writer");
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    lines.next().expect("writer output").unwrap();
    let pid = writer.id().to_string();
    env.run(["backup", "--offline", h]).failure().mentions("--offline").mentions(&pid);
    assert!(env.snapshots().is_empty());
    writer.kill().unwrap();
    writer.wait().unwrap();
    let report = env.backup_json(&home, &["--offline"]);
    assert_eq!(report["consistency"], "offline");
    let hot = env.backup_json(&home, &[]);
    assert_eq!(hot["consistency"], "hot");
    let tree = env.path("tree");
    fs::create_dir_all(&tree).unwrap();
    env.run(["backup", "--offline", tree.to_str().unwrap()]).failure().mentions("database store types");
}
