//! The `bdb` store type against real Berkeley DB 5.3 environments (Debian's
//! python3-bsddb3 and db5.3-util): restored copies must pass the engine's own recovery
//! and verification and hold every record committed before the backup started.

mod support;

use std::fs;
use std::io::{BufRead, BufReader, Lines};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use support::*;

/// Starts a long-running bdbtool.py mode (writer, archiver), with its output as lines.
fn spawn_bdb(args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new("/usr/bin/python3")
        .arg(bdbtool_path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start bdbtool {args:?}: {e}"));
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
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
    bdbtool(&["check", h, &records.to_string()]);
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
    bdbtool(&["create", home.to_str().unwrap(), "3000"]);
    let report = env.run(["--json", "backup", home.to_str().unwrap()]);
    report.success().mentions("store type: bdb");
    let report = report.json();
    assert_eq!(report["components"][0]["store_type"], "bdb");
    assert!(excluded_paths(&report["components"][0]).contains(&"__db.001"), "{report}");
    assert!(report["components"][0]["excluded"][0]["reason"].as_str().unwrap().contains("region file"));

    let id = report["id"].as_str().unwrap();
    let names = names_in_copy_order(&env, id);
    assert_eq!(&names[..2], ["accounts.db", "events.db"], "data files first");
    let logs: Vec<&String> = names[2..].iter().collect();
    assert!(logs.len() > 3 && logs.iter().all(|n| n.starts_with("log.")));
    assert!(logs.windows(2).all(|w| w[0] < w[1]), "logs ascending: {logs:?}");
    assert_eq!(report["components"][0]["first_log_number"], 1);
    assert_eq!(report["components"][0]["last_log_number"], logs.len() as u64);
    let manifest = env.run(["cat", id]).success().json();
    let accounts = &manifest["components"][0]["files"][0];
    assert_eq!((accounts["role"].as_str(), accounts["chunker"].as_u64()), (Some("data"), Some(3)));

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
    bdbtool(&["create", h, "2000"]);
    let first = env.backup_json(&home, &[]);
    bdbtool(&["add", h, "2000", "1500"]);
    let second = env.backup_json(&home, &[]);
    assert_eq!(second["kind"], "incremental");
    assert!(
        second["components"][0]["last_log_number"].as_u64()
            > first["components"][0]["last_log_number"].as_u64()
    );
    // Logs below the parent's last one are not read again; data files and newer logs are.
    let old_logs: u64 = (1..first["components"][0]["last_log_number"].as_u64().unwrap())
        .map(|n| fs::metadata(home.join(format!("log.{n:010}"))).unwrap().len())
        .sum();
    let bytes = second["bytes"].as_u64().unwrap();
    assert_eq!(second["bytes_read"].as_u64().unwrap(), bytes - old_logs, "{second}");
    // diff names the log numbers each snapshot holds.
    let (a, b) = (first["id"].as_str().unwrap(), second["id"].as_str().unwrap());
    let diff = env.run(["--json", "diff", a, b]).success().json();
    let logs = &diff["summary"]["logs"][0];
    assert_eq!(logs["before"], serde_json::json!([1, first["components"][0]["last_log_number"]]));
    assert_eq!(logs["after"], serde_json::json!([1, second["components"][0]["last_log_number"]]));
    let out = env.path("restored");
    env.restore(second["id"].as_str().unwrap(), &out);
    assert_recovers_with(&out, 3500);
}

#[test]
fn a_hot_copy_taken_while_a_writer_commits_recovers_with_every_earlier_commit() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdbtool(&["create", h, "1000"]);
    let (mut writer, mut lines) = spawn_bdb(&["writer", h, "1000"]);
    let mut committed = 0u64;
    // Let it run until it has switched log files a few times.
    while committed < 1500 {
        committed = lines.next().expect("writer output").unwrap().trim().parse().unwrap();
    }
    let report = env.backup_json(&home, &[]);
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert_eq!(report["components"][0]["store_type"], "bdb");
    assert!(report["components"][0]["passes"].as_u64().unwrap() >= 1);
    let out = env.path("restored");
    env.restore(report["id"].as_str().unwrap(), &out);
    assert_recovers_with(&out, committed + 1);
}

#[test]
fn a_gap_in_the_logs_fails_the_backup_and_writes_no_snapshot() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdbtool(&["create", h, "2000"]);
    fs::remove_file(home.join("log.0000000003")).unwrap();
    env.run(["backup", h]).failure().mentions("log files 3 to 3 are missing");
    assert!(env.snapshots().is_empty());
    // Asked for explicitly, a plain copy is still possible.
    env.run(["backup", "--type", "dir", h]).success();
}

#[test]
fn an_environment_with_files_outside_its_home_is_refused() {
    let env = TestEnv::new();
    let home = env.path("home");
    bdbtool(&["create", home.to_str().unwrap(), "10"]);
    let outside = env.path("logs-elsewhere");
    fs::write(home.join("DB_CONFIG"), format!("set_lg_dir {}\n", outside.display())).unwrap();
    env.run(["backup", home.to_str().unwrap()])
        .failure()
        .mentions("set_lg_dir")
        .mentions("outside the environment home");
    assert!(env.snapshots().is_empty());
}

#[test]
fn offline_is_refused_while_a_process_uses_the_environment_and_recorded_after() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdbtool(&["create", h, "500"]);
    let (mut writer, mut lines) = spawn_bdb(&["writer", h, "500"]);
    lines.next().expect("writer output").unwrap();
    let pid = writer.id().to_string();
    env.run(["backup", "--offline", h]).failure().mentions("--offline").mentions(&pid);
    assert!(env.snapshots().is_empty());
    writer.kill().unwrap();
    writer.wait().unwrap();
    let report = env.backup_json(&home, &["--offline"]);
    assert_eq!(report["components"][0]["consistency"], "offline");
    let hot = env.backup_json(&home, &[]);
    assert_eq!(hot["components"][0]["consistency"], "hot");
    let tree = env.path("tree");
    fs::create_dir_all(&tree).unwrap();
    env.run(["backup", "--offline", tree.to_str().unwrap()]).failure().mentions("database store types");
}

/// Regression: logs listed before the data files were copied could be removed by a
/// checkpoint during that copy; the snapshot then recovered cleanly but without records.
/// Either the copy keeps every log it needs, or the backup fails: never a snapshot that
/// lost committed records.
#[test]
fn logs_removed_by_a_checkpoint_during_the_copy_do_not_lose_records() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    let (mut archiver, mut lines) = spawn_bdb(&["archiver", h, "3000"]);
    assert_eq!(lines.next().expect("archiver output").unwrap(), "ready");
    // A large (sparse) data file keeps the data copy busy while logs are removed.
    fs::File::create(home.join("zz_filler")).unwrap().set_len(1 << 30).unwrap();
    let backup =
        env.command(["--json", "backup", h]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    use std::io::Write;
    writeln!(archiver.stdin.as_mut().unwrap(), "go").unwrap();
    let output = backup.wait_with_output().unwrap();
    archiver.kill().unwrap();
    archiver.wait().unwrap();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("missing"), "{stderr}");
        assert!(env.snapshots().is_empty());
        return;
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let out = env.path("restored");
    env.restore(report["id"].as_str().unwrap(), &out);
    assert_recovers_with(&out, 3000);
}

#[test]
fn databases_in_subdirectories_are_copied() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdbtool(&["create", h, "300"]);
    bdbtool(&["subdb", h]);
    let report = env.backup_json(&home, &[]);
    let out = env.path("restored");
    env.restore(report["id"].as_str().unwrap(), &out);
    assert!(out.join("tables/extra.db").is_file());
    assert_recovers_with(&out, 300);
    let o = out.to_str().unwrap();
    let verify = Command::new("db5.3_verify").args(["-h", o, "tables/extra.db"]).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
}

#[test]
fn a_hot_copy_without_log_files_is_refused() {
    let env = TestEnv::new();
    let home = env.path("home");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join("data.db"), b"pages").unwrap();
    fs::write(home.join("__db.001"), b"region").unwrap();
    env.run(["backup", home.to_str().unwrap()]).failure().mentions("no log files");
    assert!(env.snapshots().is_empty());
    let report = env.backup_json(&home, &["--offline"]);
    assert_eq!(
        (report["components"][0]["store_type"].as_str(), report["components"][0]["consistency"].as_str()),
        (Some("bdb"), Some("offline"))
    );
}

fn log_numbers_in(env: &TestEnv, id: &str) -> Vec<u64> {
    let manifest = env.run(["cat", id]).success().json();
    let files = manifest["components"][0]["files"].as_array().unwrap();
    files.iter().filter_map(|f| f["log_number"].as_u64()).collect()
}

#[test]
fn logs_only_keeps_the_parents_data_files_and_recovers_from_its_logs() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdbtool(&["create", h, "2000"]);
    fs::write(home.join("DB_CONFIG"), "set_cachesize 0 8388608 1\n").unwrap();
    env.run(["backup", "--logs-only", h]).failure().mentions("needs an earlier snapshot");
    let full = env.backup_json(&home, &[]);
    let parent_last = full["components"][0]["last_log_number"].as_u64().unwrap();
    bdbtool(&["add", h, "2000", "1500"]);
    // Configuration is taken as it is now; only data files come from the parent.
    let config = "set_cachesize 0 16777216 1\n";
    fs::write(home.join("DB_CONFIG"), config).unwrap();
    let logs_only = env.backup_json(&home, &["--logs-only"]);
    assert_eq!(logs_only["kind"], "logs-only");
    // Read: the parent's last log and the newer ones, nothing else.
    let read: u64 = (parent_last..=logs_only["components"][0]["last_log_number"].as_u64().unwrap())
        .map(|n| fs::metadata(home.join(format!("log.{n:010}"))).unwrap().len())
        .sum();
    assert_eq!(logs_only["bytes_read"].as_u64().unwrap(), read + config.len() as u64, "{logs_only}");
    // The data files are the parent's, byte for byte.
    let files = |id: &str| env.run(["cat", id]).success().json()["components"][0]["files"].clone();
    let (old, new) = (files(full["id"].as_str().unwrap()), files(logs_only["id"].as_str().unwrap()));
    assert_eq!(
        (old[1]["path"].as_str(), new[1]["path"].as_str()),
        (Some("accounts.db"), Some("accounts.db"))
    );
    assert_eq!(old[1]["chunks"], new[1]["chunks"]);
    let out = env.path("restored");
    env.restore(logs_only["id"].as_str().unwrap(), &out);
    assert_eq!(fs::read_to_string(out.join("DB_CONFIG")).unwrap(), config);
    assert_recovers_with(&out, 3500);

    // Once the store has removed the parent's last log (as db_archive -d does after a
    // checkpoint), its tail is lost: refused.
    let now_last = logs_only["components"][0]["last_log_number"].as_u64().unwrap();
    bdbtool(&["add", h, "3500", "1500"]);
    for n in 1..=now_last {
        fs::remove_file(home.join(format!("log.{n:010}"))).unwrap();
    }
    let before = env.snapshot_files();
    env.run(["backup", "--logs-only", h]).failure().mentions("log sequence since the parent is broken");
    assert_eq!(env.snapshot_files(), before);
}

#[test]
fn restore_until_log_rolls_the_data_files_of_an_earlier_snapshot_forward() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdbtool(&["create", h, "1500"]);
    let first = env.backup_json(&home, &[]);
    bdbtool(&["add", h, "1500", "1000"]);
    let second = env.backup_json(&home, &[]);
    bdbtool(&["add", h, "2500", "1000"]);
    let third = env.backup_json(&home, &[]);
    let last = |r: &serde_json::Value| r["components"][0]["last_log_number"].as_u64().unwrap();
    let (a, b) = (last(&first), last(&second));
    assert!(a < b && b < last(&third));

    // Log b: data files of the second snapshot; log b whole, from the third.
    let out = env.path("at-b");
    let run =
        env.run(["--json", "restore", "--until-log", &b.to_string(), "--target", out.to_str().unwrap()]);
    let report = run.success().json();
    assert_eq!(report["data_from"], second["id"]);
    assert_eq!(report["snapshots"].as_array().unwrap().len(), 2, "{report}");
    assert!(fs::metadata(out.join(format!("log.{b:010}"))).unwrap().len() > 0);
    assert!(!out.join(format!("log.{:010}", b + 1)).exists());
    assert_recovers_with(&out, 2500);

    // Between two snapshots: the first one's data files rolled forward.
    let out = env.path("between");
    let n = (a + 1).to_string();
    let report =
        env.run(["--json", "restore", "--until-log", &n, "--target", out.to_str().unwrap()]).success().json();
    assert_eq!(report["data_from"], first["id"]);
    let mut logs: Vec<u64> = fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix("log.")?.parse().ok())
        .collect();
    logs.sort();
    assert_eq!(logs, (1..=a + 1).collect::<Vec<_>>());
    assert_recovers_with(&out, 1500);

    // Past the newest copy, or before the first snapshot's copy ended, there is nothing
    // consistent to restore.
    let out = env.path("too-late");
    env.run(["restore", "--until-log", "100000000000", "--target", out.to_str().unwrap()])
        .failure()
        .mentions("no snapshot holds log 100000000000");
    let out = env.path("too-early");
    env.run(["restore", "--until-log", &(a - 1).to_string(), "--target", out.to_str().unwrap()])
        .failure()
        .mentions("no snapshot's copy ended at or before that log");
    assert_eq!(log_numbers_in(&env, third["id"].as_str().unwrap()).first(), Some(&1));
}

/// Why the order matters, shown by hand-made copies with the writes staged between
/// their steps: logs first, then data files that a checkpoint has meanwhile filled with
/// pages newer than the copied log, is a copy recovery refuses; data files first, then
/// logs, recovers. (cairn's own copy is shown against a live writer above.)
#[test]
fn a_logs_first_copy_fails_recovery_where_a_data_first_copy_passes() {
    let env = TestEnv::without_repo();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdbtool(&["create", h, "1000"]);
    let (logs_first, data_first) = (env.path("logs-first"), env.path("data-first"));
    let copy = |to: &Path, logs: bool| {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(&home).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.starts_with("log.") == logs && !name.starts_with("__db.") {
                fs::copy(home.join(&name), to.join(&name)).unwrap();
            }
        }
    };
    copy(&logs_first, true);
    copy(&data_first, false);
    bdbtool(&["add", h, "1000", "3000"]);
    copy(&logs_first, false);
    copy(&data_first, true);

    let recover = |dir: &Path| Command::new("db5.3_recover").args(["-c", "-h"]).arg(dir).output().unwrap();
    let failed = recover(&logs_first);
    assert!(!failed.status.success(), "recovery accepted a logs-first copy: {failed:?}");
    assert_recovers_with(&data_first, 1000);
}

#[test]
fn data_files_quiet_since_before_the_parent_are_not_read_again() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdbtool(&["create", h, "2000"]);
    // File times tick coarsely: only a data file quiet for a while before the parent
    // backup proves by its unchanged times that the parent's copy is still right.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let first = env.backup_json(&home, &[]);
    let second = env.backup_json(&home, &[]);
    let last = first["components"][0]["last_log_number"].as_u64().unwrap();
    let last_log = fs::metadata(home.join(format!("log.{last:010}"))).unwrap().len();
    assert_eq!(second["bytes_read"].as_u64().unwrap(), last_log, "{second}");
    // Written to since: read again.
    bdbtool(&["add", h, "2000", "10"]);
    let third = env.backup_json(&home, &[]);
    assert!(third["bytes_read"].as_u64().unwrap() > fs::metadata(home.join("accounts.db")).unwrap().len());
    let out = env.path("restored");
    env.restore(third["id"].as_str().unwrap(), &out);
    assert_recovers_with(&out, 2010);
}

#[test]
fn data_and_log_directories_inside_the_home_are_followed() {
    let env = TestEnv::new();
    let home = env.path("home");
    for sub in ["data", "logs"] {
        fs::create_dir_all(home.join(sub)).unwrap();
    }
    fs::write(home.join("DB_CONFIG"), "set_data_dir data\nset_lg_dir logs\n").unwrap();
    let h = home.to_str().unwrap();
    bdbtool(&["create", h, "2000"]);
    assert!(home.join("data/accounts.db").exists() && home.join("logs/log.0000000001").exists());
    let report = env.backup_json(&home, &[]);
    let id = report["id"].as_str().unwrap();
    let names = names_in_copy_order(&env, id);
    assert_eq!(&names[..3], ["DB_CONFIG", "data", "data/accounts.db"]);
    let logs: Vec<&String> = names.iter().filter(|n| n.starts_with("logs/log.")).collect();
    assert!(logs.len() > 3 && logs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(names.last(), logs.last().copied(), "logs come last");
    assert_eq!(report["components"][0]["last_log_number"], logs.len() as u64);

    let out = env.path("restored");
    env.restore(id, &out);
    let status = Command::new("db5.3_recover").args(["-c", "-h"]).arg(&out).status().unwrap();
    assert!(status.success());
    bdbtool(&["check", out.to_str().unwrap(), "2000"]);
}

#[test]
fn pages_changed_in_place_are_stored_as_deltas_that_outlive_their_parent() {
    let env = TestEnv::new();
    let home = env.path("home");
    let h = home.to_str().unwrap();
    bdbtool(&["create", h, "4000"]);
    let first = env.backup_json(&home, &[]);
    // Every 40th record written again: many pages change, each by a few bytes.
    bdbtool(&["rewrite", h, "4000", "40"]);
    let second = env.backup_json(&home, &[]);
    // Deltas of 64 KiB pieces: the file list's changed chunks may be deltas too.
    let deltas: Vec<PackEntry> = env
        .packs()
        .iter()
        .flat_map(|p| pack_table(p))
        .filter(|e| e.codec == 2 && e.raw_len == 1 << 16)
        .collect();
    assert!(deltas.len() > 5, "changed data pages are stored as deltas: {deltas:?}");
    assert!(deltas.iter().all(|d| d.reference.is_some() && d.stored_len < d.raw_len / 8), "{deltas:?}");
    let (full, incremental) =
        (first["stored_bytes"].as_u64().unwrap(), second["stored_bytes"].as_u64().unwrap());
    assert!(incremental * 4 < full, "the incremental stored {incremental} bytes against {full}");

    // The parent's chunks that the deltas are decoded against outlive the parent.
    env.run(["forget", "--keep-last", "1"]).success();
    env.run(["prune", "--max-unused", "0"]).success();
    assert_eq!(env.snapshots().len(), 1);
    env.run(["check", "--read-data"]).success();
    let out = env.path("restored");
    env.restore(second["id"].as_str().unwrap(), &out);
    assert_recovers_with(&out, 4000);
    for name in ["accounts.db", "events.db"] {
        assert_eq!(fs::read(out.join(name)).unwrap(), fs::read(home.join(name)).unwrap(), "{name}");
    }
    // And survive an index rebuilt from the packs alone.
    fs::remove_file(env.repo.join("index.redb")).unwrap();
    env.run(["repair", "index"]).success();
    let again = env.path("again");
    env.restore(second["id"].as_str().unwrap(), &again);
    assert_recovers_with(&again, 4000);
}
