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
             wal_level = logical\nmax_wal_senders = 10\nmax_replication_slots = 10\nfsync = off\n\
             logical_decoding_work_mem = 64kB\n",
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

    /// A client program of the server's (`pgbench`) pointed at it.
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
            &self.port.to_string(),
        ]);
        c
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
    support::assert_crashed_before_commit(&o);
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

/// Debezium change events, in and out of their `{schema, payload}`
/// wrapper, with a tombstone.
const CHANGES: &str = r#"{"op":"c","before":null,"after":{"id":1,"name":"tea","price":"3.50","at":1700000000123,"tags":{"k":["a\tb"]},"active":true,"score":0.5}}
{"op":"u","before":{"id":1},"after":{"id":1,"name":"tea","price":"3.75","at":1700000000123,"tags":null,"active":true,"score":0.25}}
{"schema":{"type":"struct"},"payload":{"op":"u","before":{"id":1},"after":{"id":1,"name":"green tea","price":"4.00","at":1700000000123,"tags":null,"active":false,"score":-1e-3}}}
{"op":"c","after":{"id":2,"name":"cake","price":12,"at":0,"tags":[],"active":true,"score":1}}
{"op":"d","before":{"id":2},"after":null}
{"op":"r","after":{"id":2,"name":"cake again","price":12.5,"at":-1,"tags":[1],"active":null,"score":null}}
null
{"op":"c","after":{"id":3,"name":"old key","price":1,"at":1,"tags":null,"active":true,"score":0}}
{"op":"u","before":{"id":3},"after":{"id":4,"name":"new key","price":1,"at":1,"tags":null,"active":true,"score":0}}
{"op":"c","after":{"id":5,"name":null,"price":null,"at":null,"tags":null,"active":null,"score":null}}
{"op":"c","after":{"id":6,"name":"bad","price":"lots","at":1,"tags":null,"active":true,"score":0}}
{"op":"d","before":{"id":99},"after":null}
"#;

const ITEMS: &str = "CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(10,2), \
     at timestamptz, tags jsonb, active boolean, score double precision)";

fn changelog_spec(d: &Path, sink: &str) -> PathBuf {
    let spec = d.join("changes.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: changes\n\
             checkpoints: {{ dir: '${{CHECKPOINT_DIR:-}}', interval: 50ms }}\n\
             sources:\n  - {{ uid: cdc, type: file, path: '{}', format: debezium-json }}\n\
             sinks:\n  - {{ uid: items, input: cdc, {sink} }}\n\
             dead_letter: {{ type: file, path: '{}' }}\n",
            d.join("changes.jsonl").display(),
            d.join("dead.jsonl").display()
        ),
    )
    .unwrap();
    spec
}

/// A changelog lands as upserts and deletes: a key changed several times in
/// one epoch ends with its last row, a delete then a re-insert leaves the
/// row, an update that changes the primary key moves the row, nulls,
/// numeric, timestamptz, jsonb, boolean and double are written as they are;
/// a value that does not fit its column, and a row without a value for a
/// `NOT NULL` column, go to the dead-letter sink named by table and column
/// (retractions carrying only the key are not refused). With or without
/// checkpoints, the same table. A `NOT NULL` column without a default that
/// no field maps to is refused before the job starts.
#[test]
fn a_changelog_lands_as_upserts_and_deletes() {
    let pg = Postgres::start();
    pg.sql("SET TIME ZONE 'UTC'");
    let dir = support::temp_dir();
    let d = dir.path();
    std::fs::write(d.join("changes.jsonl"), CHANGES).unwrap();
    let sink = format!("type: postgres, url: '{}', table: items", pg.url());
    let spec = changelog_spec(d, &sink);
    for checkpoints in ["", "ck"] {
        pg.sql("DROP TABLE IF EXISTS items");
        pg.sql(&ITEMS.replace("name text", "name text NOT NULL"));
        let ck = if checkpoints.is_empty() {
            String::new()
        } else {
            d.join(checkpoints).display().to_string()
        };
        let dead = d.join("dead.jsonl");
        let _ = std::fs::remove_file(&dead).or_else(|_| std::fs::remove_dir_all(&dead));
        assert_ok(&support::run(&spec, &[("CHECKPOINT_DIR", &ck)]));
        let rows = pg.sql(
            "SET TIME ZONE 'UTC'; SELECT id, name, price, at, tags, active, score FROM items ORDER BY id",
        );
        assert_eq!(
            rows,
            "1|green tea|4.00|2023-11-14 22:13:20.123+00||f|-0.001\n\
             2|cake again|12.50|1969-12-31 23:59:59.999+00|[1]||\n\
             4|new key|1.00|1970-01-01 00:00:00.001+00||t|0",
            "checkpoints: {checkpoints:?}"
        );
        let dead = std::fs::read_to_string(late_lines(&dead, &d.join("dead.txt"))).unwrap();
        assert_eq!(dead.lines().count(), 2, "{dead}");
        assert!(
            dead.contains("column `name` of items is NOT NULL: field /name is null"),
            "{dead}"
        );
        assert!(dead.contains("changes.jsonl:10"), "{dead}");
        assert!(
            dead.contains("column `price` (numeric(10,2)) of items: field /price is \\\"lots\\\", not a number"),
            "{dead}"
        );
        assert!(dead.contains("changes.jsonl:11"), "{dead}");
    }

    pg.sql("CREATE TABLE strict (id bigint PRIMARY KEY, name text, must text NOT NULL)");
    let sink = format!(
        "type: postgres, url: '{}', table: strict, columns: {{ id: /id, name: /name }}",
        pg.url()
    );
    let o = support::run(&changelog_spec(d, &sink), &[("CHECKPOINT_DIR", "")]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "column `must` of strict is NOT NULL without a default, and `columns` maps no field to it"
        ),
        "{}",
        stderr(&o)
    );
}

/// A table without a primary key is appended to (every insert, in order);
/// it cannot take a changelog, nor can a file sink: plan errors that name
/// both nodes.
#[test]
fn a_table_without_a_primary_key_is_append_only() {
    let pg = Postgres::start();
    pg.sql("CREATE TABLE log (id bigint, name text)");
    let dir = support::temp_dir();
    let d = dir.path();
    std::fs::write(
        d.join("rows.jsonl"),
        "{\"id\":1,\"name\":\"a\"}\n{\"id\":1,\"name\":\"a\"}\n{\"id\":2}\n",
    )
    .unwrap();
    let spec = d.join("append.yaml");
    std::fs::write(
        &spec,
        format!(
            "sources:\n  - {{ uid: rows, type: file, path: '{}' }}\n\
             sinks:\n  - {{ uid: log, input: rows, type: postgres, url: '{}', table: log }}\n",
            d.join("rows.jsonl").display(),
            pg.url()
        ),
    )
    .unwrap();
    assert_ok(&support::run(&spec, &[]));
    assert_eq!(
        pg.sql("SELECT id, coalesce(name, '-') FROM log ORDER BY id"),
        "1|a\n1|a\n2|-"
    );

    std::fs::write(d.join("changes.jsonl"), CHANGES).unwrap();
    for (sink, named) in [
        (
            format!("type: postgres, url: '{}', table: log", pg.url()),
            "`items` (sink) is append-only, but its input is the changelog (updates and deletes) of `cdc`",
        ),
        (
            format!("type: file, path: '{}'", d.join("out.jsonl").display()),
            "`items` (sink) is append-only",
        ),
    ] {
        let o = support::run(&changelog_spec(d, &sink), &[("CHECKPOINT_DIR", "")]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(named), "{}", stderr(&o));
    }
    let e = pg.sql("SELECT count(*) FROM log");
    assert_eq!(e, "3", "nothing written by the refused plans");
    // `mode: upsert` on a table without a primary key is refused.
    let o = support::run(
        &changelog_spec(
            d,
            &format!(
                "type: postgres, url: '{}', table: log, mode: upsert",
                pg.url()
            ),
        ),
        &[("CHECKPOINT_DIR", "")],
    );
    assert!(
        stderr(&o).contains("table log has no primary key, which `mode: upsert` needs"),
        "{}",
        stderr(&o)
    );
}

/// A changelog of orders (created, updated — status and amount — and
/// deleted, some created again), as Debezium events.
fn order_changes(events: usize, seed: u64) -> String {
    let mut rng = seed;
    let mut next = |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    let statuses = ["NEW", "PAID", "SHIPPED", "CANCELLED"];
    let mut live: std::collections::BTreeMap<u64, (usize, i64)> = Default::default();
    let row = |id: u64, (s, amount): (usize, i64)| {
        format!(
            r#"{{"id":{id},"status":"{}","amount":{amount}}}"#,
            statuses[s]
        )
    };
    let mut out = String::new();
    for _ in 0..events {
        let id = next(500);
        let change = (next(4) as usize, next(100_000) as i64 - 1_000);
        let line = match live.get(&id).copied() {
            None => {
                live.insert(id, change);
                format!(r#"{{"op":"c","before":null,"after":{}}}"#, row(id, change))
            }
            Some(old) if next(5) == 0 => {
                live.remove(&id);
                format!(r#"{{"op":"d","before":{},"after":null}}"#, row(id, old))
            }
            Some(old) => {
                live.insert(id, change);
                format!(
                    r#"{{"op":"u","before":{},"after":{}}}"#,
                    row(id, old),
                    row(id, change)
                )
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The tutorials' live aggregate over a changelog: orders (as change
/// events) are upserted into one table and counted, summed, averaged and
/// ranged per status into another; the second equals PostgreSQL's own
/// `GROUP BY` over the first. With checkpoints, killed and restored, on both
/// state backends.
#[test]
fn a_group_aggregate_over_a_changelog_equals_group_by_over_the_table() {
    let pg = Postgres::start();
    let dir = support::temp_dir();
    let d = dir.path();
    std::fs::write(d.join("orders.jsonl"), order_changes(30_000, 7)).unwrap();
    let spec = d.join("live.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: live\n\
             state: {{ backend: '${{BACKEND}}', dir: '{state}' }}\n\
             checkpoints: {{ dir: '{ck}', interval: 50ms }}\n\
             sources:\n  - {{ uid: orders, type: file, path: '{input}', format: debezium-json }}\n\
             operators:\n\
             \x20 - uid: by_status\n\
             \x20   input: orders\n\
             \x20   key_by: /status\n\
             \x20   group_aggregate:\n\
             \x20     - {{ fn: count }}\n\
             \x20     - {{ fn: sum, field: /amount, as: total }}\n\
             \x20     - {{ fn: min, field: /amount, as: smallest }}\n\
             \x20     - {{ fn: max, field: /amount, as: largest }}\n\
             \x20     - {{ fn: avg, field: /amount, as: mean }}\n\
             sinks:\n\
             \x20 - {{ uid: orders_table, input: orders, type: postgres, url: '{url}', table: orders }}\n\
             \x20 - {{ uid: by_status_table, input: by_status, type: postgres, url: '{url}', table: by_status }}\n",
            state = d.join("state").display(),
            ck = d.join("ck").display(),
            input = d.join("orders.jsonl").display(),
            url = pg.url(),
        ),
    )
    .unwrap();
    for backend in ["memory", "rocksdb"] {
        pg.sql("DROP TABLE IF EXISTS orders, by_status, sluice_sink_progress");
        pg.sql("CREATE TABLE orders (id bigint PRIMARY KEY, status text, amount bigint)");
        pg.sql(
            "CREATE TABLE by_status (status text PRIMARY KEY, count bigint, total bigint, \
             smallest bigint, largest bigint, mean double precision)",
        );
        let _ = std::fs::remove_dir_all(d.join("ck"));
        let env = [("BACKEND", backend)];
        // Killed once along the way (paced: the input lasts 0.6 s).
        let kills = support::kill_at_random_moments(
            &mut || {
                let mut c = support::sluice();
                c.args(["run", "--no-api", "-q", "--source-rate", "50000"])
                    .arg(&spec)
                    .env("BACKEND", backend);
                c
            },
            1,
            (Duration::from_millis(250), Duration::from_millis(450)),
            &mut support::time_seed(),
        );
        assert_eq!(kills.len(), 1, "the job ended before it was killed");
        assert_ok(&support::run(&spec, &env));
        let expected = pg.sql(
            "SELECT status, count(*), sum(amount), min(amount), max(amount), \
             round(avg(amount)::numeric, 6) FROM orders GROUP BY status ORDER BY status",
        );
        let got = pg.sql(
            "SELECT status, count, total, smallest, largest, round(mean::numeric, 6) \
             FROM by_status ORDER BY status",
        );
        assert_eq!(got, expected, "{backend}, killed after {kills:?}");
        assert_eq!(expected.lines().count(), 4, "{expected}");
    }
}

/// With `ttl`, a group idle for longer than it starts again: its earlier
/// rows are forgotten (Flink's idle state retention).
#[test]
fn a_group_idle_past_its_ttl_starts_again() {
    let pg = Postgres::start();
    pg.sql("CREATE TABLE by_status (status text PRIMARY KEY, count bigint, total bigint)");
    let dir = support::temp_dir();
    let d = dir.path();
    // A at the start and at the end; B in between, for 0.8 s at 10/s.
    let mut lines = vec![r#"{"op":"c","after":{"id":1,"status":"A","amount":5}}"#.to_owned()];
    for i in 0..8 {
        lines.push(format!(
            r#"{{"op":"c","after":{{"id":{},"status":"B","amount":1}}}}"#,
            10 + i
        ));
    }
    lines.push(r#"{"op":"c","after":{"id":2,"status":"A","amount":7}}"#.to_owned());
    std::fs::write(d.join("orders.jsonl"), lines.join("\n") + "\n").unwrap();
    for (ttl, expected) in [("", "A|2|12\nB|8|8"), ("ttl: 200ms", "A|1|7\nB|8|8")] {
        pg.sql("TRUNCATE by_status");
        let spec = d.join("ttl.yaml");
        std::fs::write(
            &spec,
            format!(
                "sources:\n  - {{ uid: orders, type: file, path: '{}', format: debezium-json }}\n\
                 operators:\n  - {{ uid: by_status, input: orders, key_by: /status, {ttl}{sep} \
                 group_aggregate: [ {{ fn: count }}, {{ fn: sum, field: /amount, as: total }} ] }}\n\
                 sinks:\n  - {{ uid: out, input: by_status, type: postgres, url: '{}', table: by_status }}\n",
                d.join("orders.jsonl").display(),
                pg.url(),
                sep = if ttl.is_empty() { "" } else { "," },
            ),
        )
        .unwrap();
        let o = support::sluice()
            .args(["run", "--no-api", "-q", "--source-rate", "10"])
            .arg(&spec)
            .output()
            .unwrap();
        assert_ok(&o);
        assert_eq!(
            pg.sql("SELECT status, count, total FROM by_status ORDER BY status"),
            expected,
            "{ttl:?}"
        );
    }
}

/// examples/customer-tier: orders enriched with their customer's tier from a
/// table, inner and left; the cache answers every lookup but the first of
/// each customer; a missing table or column is a plan error naming it.
#[test]
fn a_lookup_join_enriches_orders_from_a_table_through_its_cache() {
    let pg = Postgres::start();
    let example = support::repo().join("examples/customer-tier");
    let o = Command::new(pg.bin.join("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(["-p", &pg.port.to_string(), "-f"])
        .arg(example.join("customers.sql"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = support::temp_dir();
    let d = dir.path();
    let url = pg.url();
    let spec = example.join("pipeline.yaml");
    let tier = |id: u64| match id {
        _ if id > 9000 => None,
        _ if id.is_multiple_of(10) => Some("gold"),
        _ if id.is_multiple_of(3) => Some("silver"),
        _ => Some("bronze"),
    };
    let mut left_rows = 0;
    for join in ["left", "inner"] {
        let out = d.join(format!("{join}.jsonl"));
        let o = support::run(
            &spec,
            &[
                ("PG_URL", &url),
                ("OUTPUT", out.to_str().unwrap()),
                ("ORDERS", "20000"),
                ("JOIN", join),
            ],
        );
        assert_ok(&o);
        let mut customers = std::collections::BTreeSet::new();
        let mut rows = 0;
        for line in std::fs::read_to_string(&out).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let id: u64 = v["customer_id"].as_str().unwrap()[2..].parse().unwrap();
            customers.insert(id);
            rows += 1;
            match tier(id) {
                Some(t) => assert_eq!(v["customer"], serde_json::json!({ "tier": t }), "{line}"),
                None => {
                    assert_eq!(join, "left", "{line}");
                    assert!(v["customer"].is_null(), "{line}");
                }
            }
            assert!(
                v["order_id"].is_string() && v["amount"].is_number(),
                "{line}"
            );
        }
        if join == "left" {
            assert_eq!(rows, 20_000);
            left_rows = rows;
            // One miss per customer; every other lookup is a hit.
            let summary = stderr(&o);
            let expected = format!(
                "tier: lookup cache {} hits, {} misses",
                20_000 - customers.len(),
                customers.len()
            );
            assert!(summary.contains(&expected), "{expected}\n{summary}");
        } else {
            assert!(rows < left_rows && rows > 0, "{rows}");
            assert!(customers.iter().all(|&c| c <= 9000));
        }
    }
    // A record that is not a JSON object cannot take the row's fields: it
    // goes to the dead-letter sink, and the others go on.
    std::fs::write(
        d.join("mixed.jsonl"),
        "[\"c-10\"]\n{\"customer_id\":\"c-10\"}\n\"c-10\"\n",
    )
    .unwrap();
    let mixed = d.join("mixed.yaml");
    std::fs::write(
        &mixed,
        format!(
            "sources:\n  - {{ uid: rows, type: file, path: '{}' }}\n\
             operators:\n  - {{ uid: tier, input: rows, lookup: {{ type: postgres, url: '{url}', table: customers, key: {{ customer_id: /customer_id }}, columns: [tier] }} }}\n\
             sinks:\n  - {{ uid: out, input: tier, type: file, path: '{}' }}\n\
             dead_letter: {{ type: file, path: '{}' }}\n",
            d.join("mixed.jsonl").display(),
            d.join("mixed-out.jsonl").display(),
            d.join("mixed-dead.jsonl").display()
        ),
    )
    .unwrap();
    assert_ok(&support::run(&mixed, &[]));
    let out = std::fs::read_to_string(d.join("mixed-out.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows,
        [serde_json::json!({ "customer_id": "c-10", "tier": "gold" })]
    );
    let dead = std::fs::read_to_string(d.join("mixed-dead.jsonl")).unwrap();
    assert_eq!(dead.matches("not a JSON object").count(), 2, "{dead}");

    let bad = d.join("bad.yaml");
    for (lookup, named) in [
        (
            "table: nowhere, key: { customer_id: /customer_id }",
            "there is no table `nowhere`",
        ),
        (
            "table: customers, key: { id: /customer_id }",
            "table customers has no column `id`",
        ),
    ] {
        std::fs::write(
            &bad,
            format!(
                "sources:\n  - {{ uid: orders, type: datagen, schema: orders, count: 10 }}\n\
                 operators:\n  - {{ uid: tier, input: orders, lookup: {{ type: postgres, url: '{url}', {lookup} }} }}\n\
                 sinks:\n  - {{ uid: out, input: tier, type: stdout }}\n"
            ),
        )
        .unwrap();
        let o = support::run(&bad, &[]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(named), "{}", stderr(&o));
        assert!(stderr(&o).contains("bad.yaml:"), "{}", stderr(&o));
    }
}

/// examples/revenue-postgres/kafka.yaml, the tutorial pipeline: orders from
/// Kafka, hourly revenue per customer upserted into PostgreSQL, exactly once.
/// Crashed between a checkpoint's completion and its COMMIT and killed at
/// random moments, the table ends equal to an uninterrupted run's; the
/// generator's variant fills the same table.
#[test]
fn the_kafka_to_postgres_tutorial_is_exactly_once_through_crashes() {
    let pg = Postgres::start();
    let example = support::repo().join("examples/revenue-postgres");
    pg.sql(&std::fs::read_to_string(example.join("hourly_revenue.sql")).unwrap());
    let broker = crate::kafka::Broker::start();
    broker.create_topic("orders", 1);
    broker.load(&support::orders_200k(), "orders", "json");
    let dir = support::temp_dir();
    let d = dir.path();
    let url = pg.url();
    let spec = example.join("kafka.yaml");
    let env = |ck: &str| -> Vec<(String, String)> {
        [
            ("BOOTSTRAP", broker.bootstrap.clone()),
            ("PG_URL", url.clone()),
            ("CHECKPOINT_DIR", d.join(ck).display().to_string()),
            ("CHECKPOINT_INTERVAL", "200ms".into()),
            ("BOUNDED", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    };
    let command = |ck: &str, extra: &[(&str, &str)]| {
        let mut c = support::sluice();
        c.args(["run", "--no-api", "-q", "--source-rate", "100000"])
            .arg(&spec);
        for (k, v) in env(ck) {
            c.env(k, v);
        }
        for (k, v) in extra {
            c.env(k, v);
        }
        c
    };
    let table = "SELECT customer_id, window_start, window_end, orders, revenue_usd_cents \
                 FROM hourly_revenue ORDER BY customer_id, window_start";
    assert_ok(&command("ck-clean", &[]).output().unwrap());
    let clean = pg.sql(table);
    assert!(clean.lines().count() > 1000, "{clean}");
    pg.sql("TRUNCATE hourly_revenue");

    let o = command("ck", &[("SLUICE_CRASH_BEFORE_COMMIT", "2")])
        .output()
        .unwrap();
    support::assert_crashed_before_commit(&o);
    let kills = support::kill_at_random_moments(
        &mut || command("ck", &[]),
        3,
        (Duration::from_millis(300), Duration::from_millis(1500)),
        &mut support::time_seed(),
    );
    assert!(!kills.is_empty(), "the job ended before it was killed");
    assert_ok(&command("ck", &[]).output().unwrap());
    assert_eq!(pg.sql(table), clean, "killed after {kills:?}");

    // The same pipeline on the generator.
    pg.sql("TRUNCATE hourly_revenue");
    let gen_ck = d.join("ck-gen");
    let o = support::run(
        &example.join("generator.yaml"),
        &[
            ("PG_URL", &url),
            ("CHECKPOINT_DIR", gen_ck.to_str().unwrap()),
            ("ORDERS", "20000"),
            ("RATE", "100000"),
        ],
    );
    assert_ok(&o);
    let rows = pg.sql("SELECT count(*), sum(orders) > 0 FROM hourly_revenue");
    assert!(rows.ends_with("|t") && !rows.starts_with("0|"), "{rows}");
}

/// At parallelism 2 an upsert sink's input is partitioned by the primary
/// key: every change of a key reaches one subtask, in order, so the last
/// change of each key is the one in the table (round robin, two subtasks
/// would each hold some of a key's changes in one epoch).
#[test]
fn an_upsert_sink_sees_each_key_in_one_subtask() {
    let pg = Postgres::start();
    pg.sql("CREATE TABLE latest (id bigint PRIMARY KEY, n bigint)");
    let dir = support::temp_dir();
    let d = dir.path();
    let lines: String = (0..20_000)
        .map(|n| format!("{{\"id\":{},\"n\":{n}}}\n", n % 10))
        .collect();
    std::fs::write(d.join("changes.jsonl"), lines).unwrap();
    let spec = d.join("latest.yaml");
    std::fs::write(
        &spec,
        format!(
            "parallelism: 2\n\
             checkpoints: {{ dir: '${{CHECKPOINT_DIR:-}}', interval: 20ms }}\n\
             sources:\n  - {{ uid: changes, type: file, path: '{}', parallelism: 1 }}\n\
             sinks:\n  - {{ uid: latest, input: changes, type: postgres, url: '{}', table: latest }}\n",
            d.join("changes.jsonl").display(),
            pg.url()
        ),
    )
    .unwrap();
    for ck in ["", "ck"] {
        pg.sql("TRUNCATE latest");
        let ck = if ck.is_empty() {
            String::new()
        } else {
            d.join(ck).display().to_string()
        };
        let o = support::sluice()
            .args(["run", "--no-api", "-q", "--source-rate", "20000"])
            .arg(&spec)
            .env("CHECKPOINT_DIR", &ck)
            .output()
            .unwrap();
        assert_ok(&o);
        let expected: Vec<String> = (0..10).map(|k| format!("{k}|{}", 19_990 + k)).collect();
        assert_eq!(
            pg.sql("SELECT id, n FROM latest ORDER BY id"),
            expected.join("\n"),
            "checkpoints: {ck:?}"
        );
    }
}
