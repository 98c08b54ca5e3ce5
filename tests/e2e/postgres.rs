//! The `postgres` sink against a real PostgreSQL server: a throwaway cluster
//! per test (Debian's server binaries, `initdb` as the `postgres` user when
//! the tests run as root), on a free loopback port with
//! `wal_level=logical`, stopped when the test ends.

use crate::support::{self, assert_ok, stderr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const W2: &str = "CHECKSUM W2 results=22061 sum_count=199818 sum_cents=4989540265 sum_ws=21950058283 late=182 hash=d19d85e6f8f3e0e4";

const W2_TABLE: &str = "CREATE TABLE w2 (customer_id text, window_start bigint, count bigint, \
     sum_cents bigint, PRIMARY KEY (customer_id, window_start))";

/// The newest PostgreSQL server binaries: `$PG_BIN`, else Debian's
/// `/usr/lib/postgresql/<version>/bin`.
fn pg_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("PG_BIN") {
        return PathBuf::from(b);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .expect("the PostgreSQL tests need PostgreSQL's server: run scripts/setup.sh (apt-get install postgresql)")
        .1
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL cluster in a temporary folder, stopped (immediately) when
/// dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = support::temp_dir();
        let bin = pg_bin();
        if running_as_root() {
            // initdb refuses root: the cluster is the postgres user's.
            let s = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(s.success(), "chown the cluster's folder to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres { dir, bin, port };
        let data = pg.data();
        let o = pg
            .as_owner("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(o.status.success(), "initdb: {}", stderr(&o));
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             wal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\nfsync = off\n",
            pg.dir.path().display()
        );
        let mut text = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        text.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), text).unwrap();
        pg.pg_ctl(&["start", "-w", "-t", "30"]);
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_owner(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        let o = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
    }

    /// Stops the server the way a crash does, and starts it again.
    pub fn restart_immediate(&self) {
        self.pg_ctl(&["restart", "-m", "immediate", "-w", "-t", "30"]);
    }

    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs SQL with psql; returns its unaligned output.
    pub fn sql(&self, sql: &str) -> String {
        let o = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres"])
            .args(["-p", &self.port.to_string()])
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql])
            .output()
            .unwrap();
        assert!(o.status.success(), "psql `{sql}`: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap().trim_end().to_owned()
    }

    /// The rows of `table` as JSON lines in a file.
    pub fn dump(&self, table: &str, to: &Path) -> PathBuf {
        let rows = self.sql(&format!("SELECT row_to_json(t) FROM {table} t"));
        std::fs::write(to, if rows.is_empty() { rows } else { rows + "\n" }).unwrap();
        to.to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The lines of a late sink's output: a file, or a folder of part files.
fn late_lines(path: &Path, into: &Path) -> PathBuf {
    let mut text = String::new();
    if path.is_dir() {
        let mut parts: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        parts.sort();
        for p in parts {
            text.push_str(&std::fs::read_to_string(p).unwrap());
        }
    } else {
        text = std::fs::read_to_string(path).unwrap_or_default();
    }
    std::fs::write(into, text).unwrap();
    into.to_owned()
}

fn w2_env<'a>(pg: &'a str, d: &Path, parallelism: &'a str) -> Vec<(&'static str, String)> {
    let input = support::orders_200k();
    vec![
        ("PG_URL", pg.to_owned()),
        ("PG_TABLE", "w2".to_owned()),
        ("INPUT", input.display().to_string()),
        ("LATE_OUTPUT", d.join("late").display().to_string()),
        ("PARALLELISM", parallelism.to_owned()),
    ]
}

fn w2_sum(pg: &Postgres, d: &Path) -> String {
    let rows = pg.dump("w2", &d.join("rows.jsonl"));
    let late = late_lines(&d.join("late"), &d.join("late.jsonl"));
    support::checksum("W2", &rows, Some(&late))
}

fn spec() -> PathBuf {
    support::repo().join("examples/bench/w2-postgres.yaml")
}

fn run_env(env: &[(&'static str, String)]) -> std::process::Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    support::run(&spec(), &env)
}

/// W2 upserted into a table gives the reference checksum over `SELECT *`:
/// without checkpoints (written every buffer_timeout) and with them
/// (exactly once, at parallelism 2); a second run over the same table
/// converges to the same rows.
#[test]
fn w2_upserted_into_postgres_gives_the_reference_checksum() {
    let pg = Postgres::start();
    let url = pg.url();
    pg.sql(W2_TABLE);
    let dir = support::temp_dir();
    let d = dir.path();
    let env = w2_env(&url, d, "1");
    assert_ok(&run_env(&env));
    assert_eq!(w2_sum(&pg, d), W2, "at least once, p=1");
    // Nothing from this sink goes through the progress table without
    // checkpoints.
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'sluice_sink_progress'"),
        "0"
    );

    pg.sql("TRUNCATE w2");
    std::fs::remove_file(d.join("late")).unwrap();
    let mut env = w2_env(&url, d, "2");
    env.push(("CHECKPOINT_DIR", d.join("ck").display().to_string()));
    env.push(("CHECKPOINT_INTERVAL", "200ms".into()));
    assert_ok(&run_env(&env));
    assert_eq!(w2_sum(&pg, d), W2, "exactly once, p=2");
    let progress = pg.sql("SELECT sink_id, epoch > 0 FROM sluice_sink_progress");
    assert_eq!(progress, "w2-postgres/results|t");
    // Every staged epoch was applied and removed.
    let staged: Vec<_> = std::fs::read_dir(d.join("ck/postgres/results"))
        .unwrap()
        .flatten()
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
}

/// Crashes between a checkpoint's completion and its COMMIT, between the
/// COMMIT and its acknowledgement, SIGKILLs at random moments, the server
/// restarted (`-m immediate`) and the sink's connection terminated while the
/// job runs: the table ends equal to an uninterrupted run's.
#[test]
fn exactly_once_w2_into_postgres_through_crashes_and_a_server_restart() {
    let pg = Postgres::start();
    let url = pg.url();
    pg.sql(W2_TABLE);
    let dir = support::temp_dir();
    let d = dir.path();
    let mut env = w2_env(&url, d, "2");
    env.push(("CHECKPOINT_DIR", d.join("ck").display().to_string()));
    env.push(("CHECKPOINT_INTERVAL", "100ms".into()));
    // Read at 100,000 records/s: the input lasts 2 s.
    let paced = |extra: &[(&str, &str)]| {
        let mut c = support::sluice();
        c.args(["run", "--no-api", "-q", "--source-rate", "100000"])
            .arg(spec());
        for (k, v) in &env {
            c.env(k, v);
        }
        for (k, v) in extra {
            c.env(k, v);
        }
        c
    };
    // The server goes down (as in a crash) and a connection is killed
    // while the job runs: the committer retries until it is back.
    let child = paced(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    pg.restart_immediate();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let killed = pg.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        );
        if killed != "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert_ok(&o);
    // The committer found the server down, and waited for it.
    assert!(stderr(&o).contains("retrying in"), "{}", stderr(&o));
    assert_eq!(w2_sum(&pg, d), W2, "through a server restart");

    // Again, from scratch (a new checkpoint folder: the job forgets the
    // progress of the first), through crashes.
    pg.sql("TRUNCATE w2");
    std::fs::remove_dir_all(d.join("late")).unwrap();
    std::fs::remove_dir_all(d.join("ck")).unwrap();
    let o = paced(&[("SLUICE_CRASH_BEFORE_COMMIT", "3")])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("is complete and not committed"),
        "{}",
        stderr(&o)
    );
    let o = paced(&[("SLUICE_POSTGRES_CRASH_AFTER_COMMIT", "1")])
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("committed and not acknowledged"),
        "{}",
        stderr(&o)
    );
    let kills = support::kill_at_random_moments(
        &mut || paced(&[]),
        3,
        (Duration::from_millis(200), Duration::from_millis(1200)),
        &mut support::time_seed(),
    );
    assert!(!kills.is_empty(), "the job ended before it was killed");
    assert_ok(&run_env(&env));
    assert_eq!(w2_sum(&pg, d), W2, "killed after {kills:?}");
}
