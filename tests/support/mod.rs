//! Test harness for the `cairn` binary: a temporary directory holding a repository,
//! helpers to run the binary, a deterministic tree generator and a tree comparison.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use filetime::FileTime;

pub mod garage;

// ---------------------------------------------------------------------------------------
// Running cairn
// ---------------------------------------------------------------------------------------

/// The path of the `cairn` binary cargo built for these tests.
pub fn cairn_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("cairn")
}

/// What one run of cairn produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

impl Run {
    fn from_output(command: String, out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            command,
        }
    }

    /// stdout and stderr together, for "the message mentions" assertions.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "`{}` exited {} (expected {code})\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn success(&self) -> &Run {
        self.expect_code(0)
    }

    /// Panics unless the command failed (non-zero exit).
    #[track_caller]
    pub fn failure(&self) -> &Run {
        assert!(
            self.code != 0,
            "`{}` succeeded but should have failed\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panics unless stdout or stderr contains `needle`.
    #[track_caller]
    pub fn mentions(&self, needle: &str) -> &Run {
        assert!(
            self.all().contains(needle),
            "output of `{}` does not mention {needle:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("output of `{}` is not JSON ({e}):\n{}", self.command, self.stdout))
    }

    /// The first snapshot id (64 hex digits) printed on stdout, as `backup` does;
    /// an empty string when there is none.
    pub fn snapshot_id(&self) -> String {
        self.stdout
            .split(|c: char| !c.is_ascii_hexdigit())
            .find(|word| is_snapshot_id(word))
            .unwrap_or("")
            .to_string()
    }
}

fn describe(args: &[OsString]) -> String {
    let mut s = String::from("cairn");
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The index caches of the repositories this test process reads: one place for all
/// (repositories have random ids), and not the user's own cache.
pub fn test_cache_dir() -> PathBuf {
    std::env::temp_dir().join(format!("cairn-test-cache-{}", std::process::id()))
}

/// Runs cairn with exactly `args` (no repository added).
pub fn run_raw<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = assert_cmd::Command::cargo_bin("cairn")
        .expect("cairn binary")
        .env_remove("CAIRN_REPO")
        .env("CAIRN_CACHE_DIR", test_cache_dir())
        .args(&args)
        .output()
        .expect("run cairn");
    Run::from_output(describe(&args), out)
}

/// A temporary directory with a repository at `<dir>/repo`.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
}

impl TestEnv {
    /// A temporary directory and an initialised repository in it.
    pub fn new() -> TestEnv {
        let env = TestEnv::without_repo();
        env.run(["init"]).success();
        env
    }

    /// A temporary directory; `repo` names a path that does not exist yet.
    pub fn without_repo() -> TestEnv {
        let dir = tempfile::Builder::new().prefix("cairn-test-").tempdir().expect("temp dir");
        let repo = dir.path().join("repo");
        TestEnv { dir, repo }
    }

    /// A path inside the temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A std Command for cairn with `-r REPO` and `args`, for spawning.
    pub fn command<I, S>(&self, args: I) -> std::process::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = std::process::Command::new(cairn_bin());
        cmd.env_remove("CAIRN_REPO").env("CAIRN_CACHE_DIR", test_cache_dir());
        cmd.arg("-r").arg(&self.repo).args(args);
        cmd
    }

    /// Runs `cairn -r REPO args...`.
    pub fn run<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<OsString> = vec!["-r".into(), self.repo.clone().into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        run_raw(all)
    }

    /// `backup PATH` (plus extra args); asserts success and returns the snapshot id.
    #[track_caller]
    pub fn backup(&self, path: &Path, extra: &[&str]) -> String {
        let mut args: Vec<OsString> = vec!["backup".into()];
        args.extend(extra.iter().map(OsString::from));
        args.push(path.into());
        let run = self.run(args);
        run.success();
        let id = run.snapshot_id();
        assert!(is_snapshot_id(&id), "backup printed no id: {:?}", run.stdout);
        id
    }

    /// `backup --json PATH` (plus extra args); asserts success and returns the object.
    #[track_caller]
    pub fn backup_json(&self, path: &Path, extra: &[&str]) -> serde_json::Value {
        let mut args: Vec<OsString> = vec!["--json".into(), "backup".into()];
        args.extend(extra.iter().map(OsString::from));
        args.push(path.into());
        self.run(args).success().json()
    }

    /// `restore SNAPSHOT --target DIR`; asserts success.
    #[track_caller]
    pub fn restore(&self, snapshot: &str, target: &Path) {
        self.run([OsStr::new("restore"), OsStr::new(snapshot), OsStr::new("--target"), target.as_os_str()])
            .success();
    }

    /// `snapshots --json` as a list.
    #[track_caller]
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        match self.run(["--json", "snapshots"]).success().json() {
            serde_json::Value::Array(list) => list,
            other => panic!("snapshots --json is not an array: {other}"),
        }
    }

    /// Total bytes of every file in the repository.
    pub fn repo_size(&self) -> u64 {
        dir_size(&self.repo)
    }

    /// Bytes of the repository's data: everything except the index.redb cache.
    pub fn data_size(&self) -> u64 {
        self.repo_size() - self.index_size()
    }

    /// Bytes of REPO/index.redb (0 when missing).
    pub fn index_size(&self) -> u64 {
        fs::metadata(self.repo.join("index.redb")).map(|m| m.len()).unwrap_or(0)
    }

    /// Every pack file in the repository, sorted.
    pub fn packs(&self) -> Vec<PathBuf> {
        let mut packs = Vec::new();
        for shard in fs::read_dir(self.repo.join("packs")).expect("packs dir") {
            let shard = shard.unwrap().path();
            if shard.is_dir() {
                for pack in fs::read_dir(&shard).unwrap() {
                    packs.push(pack.unwrap().path());
                }
            }
        }
        packs.sort();
        packs
    }

    /// Number of manifests in REPO/snapshots.
    pub fn snapshot_files(&self) -> usize {
        fs::read_dir(self.repo.join("snapshots")).map(|d| d.count()).unwrap_or(0)
    }
}

pub fn is_snapshot_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Sum of the sizes of all regular files below `dir` (not following symlinks).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        if meta.is_dir() {
            total += dir_size(&entry.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

pub use cairn::manifest::display_path;

/// True when this process runs with effective uid 0 (from /proc/self/status).
pub fn running_as_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid line");
    // Uid: real effective saved fs
    uid_line.split_whitespace().nth(2) == Some("0")
}

// ---------------------------------------------------------------------------------------
// Deterministic data
// ---------------------------------------------------------------------------------------

/// xorshift64*: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// `len` incompressible bytes.
    pub fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }

    /// `len` bytes of text from a small vocabulary: compresses well, yet unique.
    pub fn text_bytes(&mut self, len: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "cairn", "pack", "chunk", "snapshot", "index", "restore", "backup", "stone", "ridge", "valley",
            "lorem", "ipsum", "dolor", "amet", "delta", "river", "granite", "summit", "trail", "marker",
            "\n",
        ];
        let mut v = Vec::with_capacity(len + 16);
        while v.len() < len {
            let w = WORDS[self.below(WORDS.len() as u64) as usize];
            v.extend_from_slice(w.as_bytes());
            if self.below(7) == 0 {
                v.extend_from_slice(self.below(100_000).to_string().as_bytes());
            }
            v.push(b' ');
        }
        v.truncate(len);
        v
    }

    /// A deterministic time between 2001 and 2033, with nanoseconds.
    pub fn time(&mut self) -> FileTime {
        FileTime::from_unix_time(
            1_000_000_000 + self.below(1_000_000_000) as i64,
            self.below(1_000_000_000) as u32,
        )
    }
}

/// What the generated tree holds.
pub struct TreeSpec {
    pub seed: u64,
    pub small_files: usize,
    /// Large files: (size in bytes, compressible).
    pub large_files: Vec<(usize, bool)>,
    pub deep_levels: usize,
}

impl TreeSpec {
    /// The full tree of the brief: 2000 small files, a few MiB-sized ones, every
    /// special case.
    pub fn standard(seed: u64) -> TreeSpec {
        TreeSpec {
            seed,
            small_files: 2000,
            large_files: vec![
                (3 << 20, false),
                (5 * 1024 * 1024 + 12_345, false),
                (4 << 20, true),
                (2 * 1024 * 1024 + 777, true),
            ],
            deep_levels: 60,
        }
    }

    /// The same kinds of entries, fewer of them.
    pub fn small(seed: u64) -> TreeSpec {
        TreeSpec {
            seed,
            small_files: 60,
            large_files: vec![(300_000, false), (200_000, true)],
            deep_levels: 12,
        }
    }
}

/// What was generated.
pub struct Tree {
    pub root: PathBuf,
    /// Sum of regular file sizes.
    pub bytes: u64,
    /// Relative paths of the small regular files (all UTF-8, all readable).
    pub small: Vec<PathBuf>,
    /// Relative paths of the large files.
    pub large: Vec<PathBuf>,
}

/// Builds a deterministic tree at `root` (created; must not exist or be empty): the
/// same spec always gives the same names, bytes, modes and times.
pub fn generate_tree(root: &Path, spec: &TreeSpec) -> Tree {
    let mut rng = Rng::new(spec.seed);
    fs::create_dir_all(root).unwrap();
    let mut tree = Tree { root: root.to_path_buf(), bytes: 0, small: Vec::new(), large: Vec::new() };
    let write = |tree: &mut Tree, rel: &Path, data: &[u8], mode: u32, rng: &mut Rng| {
        let path = root.join(rel);
        fs::write(&path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        let t = rng.time();
        filetime::set_file_times(&path, t, t).unwrap();
        tree.bytes += data.len() as u64;
    };

    // Many small files in a few dozen directories; a fifth of them compressible text.
    let dirs = spec.small_files.div_ceil(50).max(1);
    for d in 0..dirs {
        fs::create_dir_all(root.join(format!("small/d{d:02}"))).unwrap();
    }
    for i in 0..spec.small_files {
        let rel = PathBuf::from(format!("small/d{:02}/f{i:04}.dat", i % dirs));
        let len = 1 + rng.below(6000) as usize;
        let data = if i % 5 == 0 { rng.text_bytes(len) } else { rng.random_bytes(len) };
        write(&mut tree, &rel, &data, 0o644, &mut rng);
        tree.small.push(rel);
    }

    // Large files: random ones and compressible ones, sizes not multiples of anything.
    fs::create_dir_all(root.join("large")).unwrap();
    for (i, &(size, compressible)) in spec.large_files.iter().enumerate() {
        let (rel, data) = if compressible {
            (format!("large/text-{i}.txt"), rng.text_bytes(size))
        } else {
            (format!("large/random-{i}.bin"), rng.random_bytes(size))
        };
        let rel = PathBuf::from(rel);
        write(&mut tree, &rel, &data, 0o644, &mut rng);
        tree.large.push(rel);
    }
    // A sparse-looking file: zeros with a little data in the middle.
    let mut sparse = vec![0u8; 700_000];
    sparse[350_000..350_100].copy_from_slice(&rng.random_bytes(100));
    write(&mut tree, Path::new("large/zeros.bin"), &sparse, 0o644, &mut rng);

    // Empty files.
    fs::create_dir_all(root.join("empty")).unwrap();
    for name in ["empty/a", "empty/b", "empty/.hidden"] {
        write(&mut tree, Path::new(name), b"", 0o644, &mut rng);
    }

    // Unusual modes.
    fs::create_dir_all(root.join("modes")).unwrap();
    for (name, mode) in
        [("modes/private", 0o600), ("modes/exec", 0o755), ("modes/readonly", 0o444), ("modes/odd", 0o640)]
    {
        let len = 100 + rng.below(400) as usize;
        let data = rng.text_bytes(len);
        write(&mut tree, Path::new(name), &data, mode, &mut rng);
    }

    // Non-UTF-8 names, including a directory with a file inside.
    let names = root.join("names");
    fs::create_dir_all(&names).unwrap();
    for raw in [&b"caf\xe9.txt"[..], b"\xff\xfe", b"tab\tand space", b"back\\slash"] {
        let rel = Path::new("names").join(OsStr::from_bytes(raw));
        let len = 50 + rng.below(200) as usize;
        let data = rng.random_bytes(len);
        write(&mut tree, &rel, &data, 0o644, &mut rng);
    }
    let odd_dir = Path::new("names").join(OsStr::from_bytes(b"dir-\x80\x81"));
    fs::create_dir_all(root.join(&odd_dir)).unwrap();
    let data = rng.random_bytes(1000);
    write(&mut tree, &odd_dir.join("inner"), &data, 0o644, &mut rng);

    // A deep directory chain with a file at the bottom.
    let mut deep = PathBuf::from("deep");
    for level in 0..spec.deep_levels {
        deep.push(format!("l{level:02}"));
    }
    fs::create_dir_all(root.join(&deep)).unwrap();
    let data = rng.text_bytes(333);
    write(&mut tree, &deep.join("bottom.txt"), &data, 0o644, &mut rng);

    // Empty directories, one with an unusual mode.
    for name in ["emptydirs/a", "emptydirs/b/c", "emptydirs/private"] {
        fs::create_dir_all(root.join(name)).unwrap();
    }
    fs::set_permissions(root.join("emptydirs/private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(root.join("emptydirs/b"), fs::Permissions::from_mode(0o1777)).unwrap();

    // Symlinks: relative, absolute, dangling (both kinds), to a directory.
    let links = root.join("links");
    fs::create_dir_all(&links).unwrap();
    for (name, target) in [
        ("relative", "../small/d00/f0000.dat"),
        ("to-dir", "../large"),
        ("absolute", "/etc/hostname"),
        ("dangling", "no/such/file"),
        ("dangling-absolute", "/nonexistent/cairn-test/target"),
    ] {
        let link = links.join(name);
        std::os::unix::fs::symlink(target, &link).unwrap();
        let t = rng.time();
        filetime::set_symlink_file_times(&link, t, t).unwrap();
    }

    // Directory times last, deepest first, so creating children does not change them.
    set_dir_times(root, &mut rng, true);
    tree
}

fn set_dir_times(dir: &Path, rng: &mut Rng, is_root: bool) {
    let mut names: Vec<OsString> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            set_dir_times(&path, rng, false);
        }
    }
    if !is_root {
        let t = rng.time();
        filetime::set_file_times(dir, t, t).unwrap();
    }
}

/// Replaces the content of `path` (same size, different bytes) and gives it a new mtime.
pub fn modify_file(path: &Path, seed: u64) {
    let len = fs::metadata(path).unwrap().len() as usize;
    let mut rng = Rng::new(seed);
    let data = rng.random_bytes(len);
    fs::write(path, &data).unwrap();
    let t = rng.time();
    filetime::set_file_times(path, t, t).unwrap();
}

// ---------------------------------------------------------------------------------------
// Comparing trees
// ---------------------------------------------------------------------------------------

/// Compares the trees below `a` and `b` (the roots themselves are not compared): entry
/// names, types, content bytes, mode bits (& 0o7777), mtimes (seconds and nanoseconds,
/// symlinks included) and symlink targets. Symlinks are never followed. Returns the first
/// difference, naming its path.
pub fn tree_difference(a: &Path, b: &Path) -> Option<String> {
    tree_difference_except(a, b, &|_| false)
}

/// As `tree_difference`, skipping relative paths for which `skip` is true (on both sides).
pub fn tree_difference_except(a: &Path, b: &Path, skip: &dyn Fn(&Path) -> bool) -> Option<String> {
    compare_dir(a, b, Path::new(""), skip).err()
}

#[track_caller]
pub fn assert_trees_equal(a: &Path, b: &Path) {
    if let Some(diff) = tree_difference(a, b) {
        panic!("trees differ ({} vs {}): {diff}", a.display(), b.display());
    }
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>, String> {
    let mut names: Vec<OsString> = fs::read_dir(dir)
        .map_err(|e| format!("{}: cannot list: {e}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: cannot list: {e}", dir.display()))?;
    names.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    Ok(names)
}

fn compare_dir(a: &Path, b: &Path, rel: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<(), String> {
    let names_a: Vec<OsString> =
        sorted_names(&a.join(rel))?.into_iter().filter(|n| !skip(&rel.join(n))).collect();
    let names_b: Vec<OsString> =
        sorted_names(&b.join(rel))?.into_iter().filter(|n| !skip(&rel.join(n))).collect();
    for n in &names_a {
        if !names_b.contains(n) {
            return Err(format!("{}: missing from the second tree", show(&rel.join(n))));
        }
    }
    for n in &names_b {
        if !names_a.contains(n) {
            return Err(format!("{}: only in the second tree", show(&rel.join(n))));
        }
    }
    for n in &names_a {
        compare_entry(a, b, &rel.join(n), skip)?;
    }
    Ok(())
}

fn show(rel: &Path) -> String {
    display_path(rel.as_os_str().as_bytes())
}

fn compare_entry(a: &Path, b: &Path, rel: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<(), String> {
    let (pa, pb) = (a.join(rel), b.join(rel));
    let ma = fs::symlink_metadata(&pa).map_err(|e| format!("{}: {e}", pa.display()))?;
    let mb = fs::symlink_metadata(&pb).map_err(|e| format!("{}: {e}", pb.display()))?;
    let name = show(rel);
    let (ta, tb) = (ma.file_type(), mb.file_type());
    let kind = |t: fs::FileType| {
        if t.is_symlink() {
            "symlink"
        } else if t.is_dir() {
            "directory"
        } else if t.is_file() {
            "file"
        } else {
            "special"
        }
    };
    if kind(ta) != kind(tb) {
        return Err(format!("{name}: {} vs {}", kind(ta), kind(tb)));
    }
    if ta.is_symlink() {
        let (la, lb) = (fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
        if la != lb {
            return Err(format!("{name}: symlink target {} vs {}", la.display(), lb.display()));
        }
    } else {
        if ma.mode() & 0o7777 != mb.mode() & 0o7777 {
            return Err(format!("{name}: mode {:o} vs {:o}", ma.mode() & 0o7777, mb.mode() & 0o7777));
        }
        if ta.is_file() {
            if ma.len() != mb.len() {
                return Err(format!("{name}: size {} vs {}", ma.len(), mb.len()));
            }
            let (da, db) = (fs::read(&pa).unwrap(), fs::read(&pb).unwrap());
            if da != db {
                let at = da.iter().zip(&db).position(|(x, y)| x != y).unwrap_or(0);
                return Err(format!("{name}: content differs at byte {at}"));
            }
        }
        if ta.is_dir() {
            compare_dir(a, b, rel, skip)?;
        }
    }
    if (ma.mtime(), ma.mtime_nsec()) != (mb.mtime(), mb.mtime_nsec()) {
        return Err(format!(
            "{name}: mtime {}.{:09} vs {}.{:09}",
            ma.mtime(),
            ma.mtime_nsec(),
            mb.mtime(),
            mb.mtime_nsec()
        ));
    }
    Ok(())
}

/// Relative paths (raw bytes) of every entry below `root`, in walk order, not following
/// symlinks.
pub fn tree_paths(root: &Path) -> Vec<Vec<u8>> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<Vec<u8>>) {
        for name in sorted_names(&root.join(rel)).unwrap() {
            let child = rel.join(&name);
            out.push(child.as_os_str().as_bytes().to_vec());
            if fs::symlink_metadata(root.join(&child)).unwrap().is_dir() {
                walk(root, &child, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out
}

// ---------------------------------------------------------------------------------------
// Pack files
// ---------------------------------------------------------------------------------------

/// One entry of a pack's chunk table.
#[derive(Debug, Clone)]
pub struct PackEntry {
    pub id: String,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub codec: u8,
    pub reference: Option<String>,
}

/// Reads a pack's table through its footer (formats 1 and 2: an entry of codec 2, a
/// delta, ends with its reference's id).
pub fn pack_table(pack: &Path) -> Vec<PackEntry> {
    let bytes = fs::read(pack).unwrap();
    let n = bytes.len();
    assert!(n >= 16 + 52, "{}: too short for a pack", pack.display());
    assert_eq!(&bytes[..8], b"CAIRNPAK", "pack magic");
    let footer = &bytes[n - 52..];
    assert_eq!(&footer[44..52], b"CAIRNEND", "pack footer magic");
    let mut at = u64::from_le_bytes(footer[32..40].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(footer[40..44].try_into().unwrap()) as usize;
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let entries = (0..count)
        .map(|_| {
            let e = &bytes[at..at + 49];
            let reference = (e[48] == 2).then(|| hex(&bytes[at + 49..at + 81]));
            at += if reference.is_some() { 81 } else { 49 };
            PackEntry {
                id: hex(&e[..32]),
                offset: u64::from_le_bytes(e[32..40].try_into().unwrap()),
                stored_len: u32::from_le_bytes(e[40..44].try_into().unwrap()),
                raw_len: u32::from_le_bytes(e[44..48].try_into().unwrap()),
                codec: e[48],
                reference,
            }
        })
        .collect();
    assert_eq!(at, n - 52, "{}: table ends at the footer", pack.display());
    entries
}

/// Flips every bit of the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0xff;
    // Packs may be read-only on disk.
    let mut perms = fs::metadata(path).unwrap().permissions();
    let mode = perms.mode();
    perms.set_mode(mode | 0o200);
    fs::set_permissions(path, perms).unwrap();
    fs::write(path, &bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Makes a directory (and everything in it, recursively) accessible to every user.
pub fn chmod_world(path: &Path) {
    let meta = fs::symlink_metadata(path).unwrap();
    if meta.file_type().is_symlink() {
        return;
    }
    let mode = if meta.is_dir() { 0o777 } else { 0o666 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    if meta.is_dir() {
        for e in fs::read_dir(path).unwrap() {
            chmod_world(&e.unwrap().path());
        }
    }
}

/// tests/bdb/bdbtool.py, which drives a real Berkeley DB 5.3 environment.
pub fn bdbtool_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bdb/bdbtool.py")
}

/// Runs bdbtool.py with the system Python, the one Debian's bindings load in.
#[track_caller]
pub fn bdbtool(args: &[&str]) {
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(bdbtool_path())
        .args(args)
        .output()
        .expect("run /usr/bin/python3");
    assert!(out.status.success(), "bdbtool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `cp -a FROM TO`.
pub fn copy_tree(from: &Path, to: &Path) {
    assert!(std::process::Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap().success());
}

/// A manifest timestamp (`{"secs", "nanos"}` in JSON) in seconds.
pub fn seconds(t: &serde_json::Value) -> f64 {
    t["secs"].as_f64().unwrap() + t["nanos"].as_f64().unwrap() / 1e9
}

/// The paths a component of a `--json` backup report says it left out.
pub fn excluded_paths(component: &serde_json::Value) -> Vec<&str> {
    component["excluded"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect()
}

/// A command that runs cairn as `nobody` when the tests run as root (root may read and
/// write any file), else as this user.
pub fn cairn_unprivileged() -> std::process::Command {
    match running_as_root() {
        true => {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(cairn_bin());
            c
        }
        false => std::process::Command::new(cairn_bin()),
    }
}

/// Runs `cmd` to its end; `what` names it in assertion messages.
pub fn run_command(cmd: &mut std::process::Command, what: String) -> Run {
    let out = cmd.output().expect("run cairn");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command: what,
    }
}
