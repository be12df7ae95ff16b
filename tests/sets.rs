//! Backup sets: a data directory, a Berkeley DB store and a real PostgreSQL database
//! (dumped with pg_dump, restored with pg_restore) captured together in one snapshot,
//! components copied side by side between the hooks, and older snapshots restoring all
//! three as they were. PostgreSQL runs as a throw-away cluster on loopback.

mod support;

use serde_json::Value;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::*;

/// A PostgreSQL cluster of its own, on a free loopback port, stopped when dropped.
struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Runs server programs as `postgres` when the tests run as root (initdb refuses root).
    as_postgres: bool,
}

impl Postgres {
    fn start(dir: &Path) -> Postgres {
        let bin = fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql package (/usr/lib/postgresql)")
            .map(|e| e.unwrap().path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("a PostgreSQL server version");
        let data = dir.join("pgdata");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = Postgres { bin, data, port, as_postgres: running_as_root() };
        fs::create_dir_all(dir).unwrap();
        if pg.as_postgres {
            // The server's own directory belongs to postgres; the test's tree stays ours.
            let status = Command::new("chown").args(["postgres:postgres"]).arg(dir).status().unwrap();
            assert!(status.success());
        }
        pg.server(&[
            "initdb",
            "-D",
            pg.data.to_str().unwrap(),
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
        ]);
        let options = format!("-p {} -c listen_addresses=127.0.0.1 -k {}", pg.port, dir.display());
        let log = dir.join("server.log");
        pg.server(&[
            "pg_ctl",
            "-D",
            pg.data.to_str().unwrap(),
            "-o",
            &options,
            "-l",
            log.to_str().unwrap(),
            "-w",
            "start",
        ]);
        pg
    }

    /// A server program, run as postgres when needed.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if !self.as_postgres {
            return Command::new(program);
        }
        let mut command = Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]).arg(program);
        command
    }

    fn server(&self, args: &[&str]) {
        let out = self.command(args[0]).args(&args[1..]).stdin(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Client arguments reaching this server over TCP.
    fn connect(&self) -> String {
        format!("-h 127.0.0.1 -p {} -U postgres", self.port)
    }

    fn client(&self, program: &str) -> String {
        format!("{} {}", self.bin.join(program).display(), self.connect())
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("{} -d {db} -X -A -t -q -v ON_ERROR_STOP=1", self.client("psql")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(sql.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// What the `items` table holds, in a form two databases can be compared by.
    fn contents(&self, db: &str) -> String {
        self.psql(
            db,
            "SELECT count(*) || ':' || md5(string_agg(id || '=' || name, ',' ORDER BY id)) FROM items;",
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").arg("-D").arg(&self.data).args(["-m", "immediate", "stop"]).output();
    }
}

#[test]
fn a_directory_a_berkeley_db_and_a_postgresql_dump_restore_together_as_they_were() {
    let env = TestEnv::new();
    let pg = Postgres::start(&env.path("pg"));
    pg.psql("postgres", "CREATE DATABASE app;");
    pg.psql("app", "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 2000) i;");
    let data = env.path("data");
    let tree = generate_tree(&data, &TreeSpec::small(11));
    let bdb_home = env.path("store");
    bdbtool(&["create", bdb_home.to_str().unwrap(), "1000"]);
    let dump = format!("{} -Fc app", pg.client("pg_dump"));
    let backup = |env: &TestEnv| {
        env.backup_json(&data, &["--set", "app", bdb_home.to_str().unwrap(), "--dump", &format!("db={dump}")])
    };

    let first = backup(&env);
    let components: Vec<(&str, &str)> = first["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["store_type"].as_str().unwrap()))
        .collect();
    assert_eq!(components, [("store", "bdb"), ("data", "dir"), ("db", "dump")]);
    let db = &first["components"][2];
    assert_eq!(db["command"]["command"], dump.as_str());
    assert_eq!(db["command"]["exit_code"], 0);
    let data_then = env.path("data-then");
    copy_tree(&data, &data_then);
    let table_then = pg.contents("app");

    // Everything changes.
    pg.psql("app", "UPDATE items SET name = name || ' (changed)' WHERE id % 7 = 0; INSERT INTO items VALUES (5000, 'new');");
    modify_file(&data.join(&tree.small[0]), 99);
    fs::write(data.join("added.txt"), "added after the first backup").unwrap();
    bdbtool(&["add", bdb_home.to_str().unwrap(), "1000", "500"]);
    let second = backup(&env);
    assert_eq!(second["kind"], "incremental");
    assert_ne!(pg.contents("app"), table_then);
    // A dump that changed little costs little.
    let dump_bytes = second["components"][2]["bytes"].as_u64().unwrap();
    assert!(second["new_bytes"].as_u64().unwrap() < dump_bytes + 3_000_000);

    // The first snapshot gives back all three as they were.
    let out = env.path("restored");
    env.restore(first["id"].as_str().unwrap(), &out);
    assert_trees_equal(&data_then, &out.join("data"));
    let status = Command::new("db5.3_recover").args(["-c", "-h"]).arg(out.join("store")).status().unwrap();
    assert!(status.success());
    bdbtool(&["check", out.join("store").to_str().unwrap(), "1000"]);
    pg.psql("postgres", "CREATE DATABASE app_then;");
    let restore = format!("{} -d app_then {}", pg.client("pg_restore"), out.join("db").display());
    assert!(Command::new("sh").arg("-c").arg(&restore).status().unwrap().success());
    assert_eq!(pg.contents("app_then"), table_then);

    // One component alone, and a dump straight into pg_restore.
    let only = env.path("only-store");
    env.run([
        "restore",
        second["id"].as_str().unwrap(),
        "--component",
        "store",
        "--target",
        only.to_str().unwrap(),
    ])
    .success();
    assert!(only.join("accounts.db").exists());
    pg.psql("postgres", "CREATE DATABASE app_now;");
    let cairn = cairn_bin();
    let piped = format!(
        "{} -r {} dump {} db | {} -d app_now",
        cairn.display(),
        env.repo.display(),
        second["id"].as_str().unwrap(),
        pg.client("pg_restore")
    );
    assert!(Command::new("sh").arg("-c").arg(&piped).status().unwrap().success());
    assert_eq!(pg.contents("app_now"), pg.contents("app"));
}

#[test]
fn a_plan_runs_components_side_by_side_between_its_hooks() {
    let env = TestEnv::new();
    let data = env.path("data");
    fs::create_dir_all(data.join("data.jcr/ws1/swap")).unwrap();
    fs::create_dir_all(data.join("jta")).unwrap();
    fs::write(data.join("data.jcr/ws1/value.bin"), "value").unwrap();
    fs::write(data.join("data.jcr/ws1/swap/tmp"), "swap").unwrap();
    fs::write(data.join("jta/tx.log"), "jta").unwrap();
    let hooks = env.path("hooks.log");
    let plan = env.path("app.toml");
    let text = format!(
        r#"set = "app"

[hooks]
pre = "echo pre >> {hooks}"
post = "echo post >> {hooks}"

[retention]
keep_last = 1

[[component]]
name = "data"
path = "data"
exclude = ["data.jcr/**/swap", "jta"]

[[component]]
name = "slow-a"
dump = "sleep 0.3; echo a"

[[component]]
name = "slow-b"
dump = "sleep 0.3; echo b"
"#,
        hooks = hooks.display()
    );
    fs::write(&plan, text).unwrap();
    let report = env.run(["--json", "backup", "--plan", plan.to_str().unwrap()]).success().json();
    assert_eq!(fs::read_to_string(&hooks).unwrap(), "pre\npost\n");
    assert_eq!(report["set"], "app");
    // Excluded subtrees are left out and said so.
    assert_eq!(excluded_paths(&report["components"][0]), ["data.jcr/ws1/swap", "jta"]);
    // The components were copied at the same time: each started before any finished.
    let times: Vec<(f64, f64)> = report["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (seconds(&c["copy_time"]["started"]), seconds(&c["copy_time"]["finished"])))
        .collect();
    let last_start = times.iter().map(|t| t.0).fold(f64::MIN, f64::max);
    let first_end = times.iter().map(|t| t.1).fold(f64::MAX, f64::min);
    assert!(last_start < first_end, "components ran one after another: {times:?}");
    // Side by side, yet into the same packs: a set of small components makes one pack
    // of data and one of file lists.
    assert_eq!(env.packs().len(), 2);
    let window = seconds(&report["hooks"]["window_end"]) - seconds(&report["hooks"]["window_start"]);
    let sum: f64 = times.iter().map(|t| t.1 - t.0).sum();
    eprintln!("quiesce window {window:.3}s; components one after another would take {sum:.3}s");

    let out = env.path("out");
    env.restore(report["id"].as_str().unwrap(), &out);
    assert!(out.join("data/data.jcr/ws1/value.bin").exists());
    assert!(!out.join("data/data.jcr/ws1/swap").exists() && !out.join("data/jta").exists());
    assert_eq!(fs::read_to_string(out.join("slow-a")).unwrap(), "a\n");

    // Forget with the plan's retention and set.
    env.run(["backup", "--plan", plan.to_str().unwrap()]).success();
    env.run(["forget", "--plan", plan.to_str().unwrap()]).success().mentions("1 kept, 1 removed");
}

#[test]
fn a_failing_component_stops_the_others_runs_the_post_hook_and_writes_nothing() {
    let env = TestEnv::new();
    let data = env.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), "f").unwrap();
    let post = env.path("post");
    let args = [
        "backup",
        "--set",
        "app",
        data.to_str().unwrap(),
        "--dump",
        "slow=sleep 30; echo never",
        "--dump",
        "db=echo 'connection refused' >&2; exit 2",
        "--post-exec",
        &format!("touch {}", post.display()),
    ];
    let started = std::time::Instant::now();
    env.run(args).failure().mentions("dump db").mentions("connection refused").mentions("status 2");
    assert!(started.elapsed() < std::time::Duration::from_secs(25), "the slow dump was not stopped");
    assert!(post.exists(), "the post hook must run");
    assert_eq!(env.snapshot_files(), 0);

    // The errors a user will hit.
    env.run(["backup", "--set", "app", env.path("missing").to_str().unwrap()]).failure().mentions("missing");
    env.run(["backup", data.to_str().unwrap(), "--dump", "db=true"]).failure().mentions("needs --set");
    env.run(["backup", "--set", "app", "--dump", "x=nonexistent-dump-tool"]).failure().mentions("not found");
    env.run(["backup", "--set", "app", "--dump", "x=true", "--dump", "x=false"])
        .failure()
        .mentions("two components would be named \"x\"");
    let plan = env.path("typo.toml");
    fs::write(&plan, "set = \"app\"\n[[component]]\nname = \"d\"\npth = \"data\"\n").unwrap();
    env.run(["backup", "--plan", plan.to_str().unwrap()]).failure().mentions("line 4").mentions("pth");
}

#[test]
fn a_broker_work_directory_and_standard_input_go_into_a_set_in_their_places() {
    use std::io::Write;
    let env = TestEnv::new();
    let work = env.path("work");
    fs::create_dir_all(work.join("n1/config")).unwrap();
    fs::create_dir_all(work.join("log")).unwrap();
    fs::write(work.join("config.json"), r#"{"modelVersion":"9.0"}"#).unwrap();
    fs::write(work.join("n1/config/n1.json"), r#"{"name":"n1"}"#).unwrap();
    fs::write(work.join("log/qpid.log"), "started\n").unwrap();
    let data = env.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), "f").unwrap();

    let backup = |extra: &[&str]| {
        let mut args = vec!["--json", "backup", "--set", "s", work.to_str().unwrap(), data.to_str().unwrap()];
        args.extend_from_slice(extra);
        let mut child = env.command(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(b"notes from standard input\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let first = backup(&["--dump", "notes=-"]);
    let places: Vec<(&str, &str)> = first["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["placement"].as_str().unwrap()))
        .collect();
    assert_eq!(
        places,
        [("work.broker", "work"), ("work.n1.config", "work/n1/config"), ("data", "data"), ("notes", "")]
    );
    env.run(["check"]).success();
    let out = env.path("out");
    env.restore(first["id"].as_str().unwrap(), &out);
    assert_trees_equal(&work, &out.join("work"));
    assert_trees_equal(&data, &out.join("data"));
    assert_eq!(fs::read_to_string(out.join("notes")).unwrap(), "notes from standard input\n");
    let second = backup(&["--dump", "notes=-"]);
    assert_eq!(second["parent"], first["id"]);

    // Places that would clash, and standard input read twice, are refused up front.
    env.run(["backup", "--set", "s", work.to_str().unwrap(), "--dump", "work=true"])
        .failure()
        .mentions("would be restored where component");
    env.run(["backup", "--set", "s", "--dump", "a=-", "--dump", "b=-"]).failure().mentions("only one dump");
}
