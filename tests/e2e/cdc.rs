//! The `postgres-cdc` source against a real PostgreSQL server (the cluster
//! of [`crate::postgres::Postgres`]): snapshot and streaming meet exactly,
//! changes are read whole and as they were, crashes lose and double nothing,
//! and the slot's confirmed position never passes a retained checkpoint.

use crate::postgres::Postgres;
use crate::support::{self, stderr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A spec reading `tables` by CDC (with `extra` source options) into the
/// sinks given.
fn spec(d: &Path, pg: &Postgres, source: &str, rest: &str) -> PathBuf {
    let spec = d.join("cdc.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: cdc\n\
             checkpoints: {{ dir: '{ck}', interval: '${{INTERVAL:-100ms}}', retained: 2 }}\n\
             restart: {{ strategy: none }}\n\
             sources:\n  - {{ uid: cdc, type: postgres-cdc, url: '{url}', slot: s1, {source} }}\n\
             {rest}",
            ck = d.join("ck").display(),
            url = pg.url(),
        ),
    )
    .unwrap();
    spec
}

/// A spec's sinks section: the source's changes upserted into `table`.
fn copy_into(pg: &Postgres, table: &str) -> String {
    format!(
        "sinks:\n  - {{ uid: copy, input: cdc, type: postgres, url: '{}', table: {table} }}\n",
        pg.url()
    )
}

/// `sluice run SPEC` in the background (its stderr kept in `log`).
fn start(spec: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    let mut c = support::sluice();
    c.args(["run", "--no-api", "-q"]).arg(spec);
    for (k, v) in env {
        c.env(k, v);
    }
    c.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start sluice")
}

/// Waits until `query` gives `want` (or fails after `within`, showing the
/// job's log).
fn wait_for(
    pg: &Postgres,
    child: &mut Child,
    (query, want): (&str, &str),
    detail: &dyn Fn(&Postgres) -> String,
    within: Duration,
    log: &Path,
) {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "sluice stopped ({status}) before `{query}` gave {want}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let got = pg.sql(query);
        if got == want {
            return;
        }
        if Instant::now() > until {
            panic!(
                "`{query}` gave\n{got}\nnot\n{want}\n{}\nsluice:\n{}",
                detail(pg),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until tables `a` and `b` hold the same rows.
fn wait_same(pg: &Postgres, child: &mut Child, (a, b): (&str, &str), within: Duration, log: &Path) {
    let rows = format!(
        "SELECT '{a}: ' || x FROM (SELECT t::text x FROM {a} t EXCEPT ALL SELECT t::text FROM {b} t) d \
         UNION ALL SELECT '{b}: ' || x FROM (SELECT t::text x FROM {b} t EXCEPT ALL SELECT t::text FROM {a} t) d"
    );
    wait_for(
        pg,
        child,
        (&difference(a, b), "0"),
        &|pg| pg.sql(&rows),
        within,
        log,
    );
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The rows of `a` that `b` lacks and the other way round: empty when they
/// hold the same rows.
fn difference(a: &str, b: &str) -> String {
    format!(
        "SELECT count(*) FROM ((TABLE {a} EXCEPT ALL TABLE {b}) UNION ALL (TABLE {b} EXCEPT ALL TABLE {a})) d"
    )
}

const ITEMS: &str = "CREATE TABLE items (id int PRIMARY KEY, note text, amount numeric(14,3), \
     at timestamptz, doc jsonb, flag boolean, score double precision); \
     ALTER TABLE items REPLICA IDENTITY FULL; \
     CREATE TABLE items_copy (LIKE items INCLUDING ALL)";

/// A big text that PostgreSQL stores out of line (TOAST): 12.8 kB of hex.
const BIG: &str = "(SELECT string_agg(md5(i::text || $$x$$), '') FROM generate_series(1, 400) i)";

/// A snapshot then changes: the copy equals the table after inserts,
/// updates, deletes, a re-insert, a changed primary key, nulls, numeric,
/// timestamptz, jsonb, and an update of another column of a row holding a
/// TOASTed text (which stays, never a null).
#[test]
fn changes_after_the_snapshot_reach_the_copy_as_they_were() {
    let pg = Postgres::start();
    pg.sql(ITEMS);
    pg.sql(&format!(
        "INSERT INTO items SELECT i, 'n' || i, i * 1.5, to_timestamp(i * 1000.123), \
         jsonb_build_object('i', i), i % 2 = 0, i / 7.0 FROM generate_series(1, 2000) i; \
         INSERT INTO items VALUES (9000, {BIG}, 12345678901.125, NULL, '[1, {{\"a\": null}}]', NULL, 'NaN')"
    ));
    let dir = support::temp_dir();
    let d = dir.path();
    let spec = spec(d, &pg, "table: items", &copy_into(&pg, "items_copy"));
    let log = d.join("log");
    let mut child = start(&spec, &log, &[]);
    wait_same(
        &pg,
        &mut child,
        ("items", "items_copy"),
        Duration::from_secs(60),
        &log,
    );
    pg.sql("UPDATE items SET amount = amount + 1 WHERE id <= 100");
    pg.sql("DELETE FROM items WHERE id BETWEEN 101 AND 200");
    pg.sql("BEGIN; DELETE FROM items WHERE id = 300; INSERT INTO items VALUES (300, 'back', 0, date_trunc('milliseconds', now()), NULL, true, 0); COMMIT");
    pg.sql("UPDATE items SET id = 5000 WHERE id = 400");
    pg.sql("UPDATE items SET flag = NOT coalesce(flag, false), at = '2026-12-05 01:02:03.456+00' WHERE id = 9000");
    pg.sql("UPDATE items SET note = NULL, doc = NULL WHERE id = 500");
    wait_same(
        &pg,
        &mut child,
        ("items", "items_copy"),
        Duration::from_secs(60),
        &log,
    );
    assert_eq!(
        pg.sql("SELECT length(note), flag FROM items_copy WHERE id = 9000"),
        "12800|t"
    );
    assert_eq!(pg.sql("SELECT count(*) FROM items_copy"), "1901");
    stop(child);
}

/// `X/Y` as a number.
fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.trim().split_once('/').expect("an LSN");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// The LSN stored in the newest complete checkpoint of `ck`.
fn checkpoint_lsn(ck: &Path) -> Option<u64> {
    let chk = support::latest_checkpoint(ck)?;
    support::checkpoint_splits(&chk)
        .iter()
        .find_map(|s| s["lsn"].as_str().map(lsn))
}

/// A snapshot of pgbench's 100,000 accounts while pgbench writes, the job
/// killed twice (during the snapshot and while it streams): the copy ends
/// equal to the table, and the slot's confirmed position never passes the
/// last completed checkpoint's LSN.
#[test]
fn a_snapshot_while_pgbench_writes_then_crashes_lose_and_double_nothing() {
    let pg = Postgres::start();
    let o = pg
        .client("pgbench")
        .args(["-i", "-s", "1", "-q", "postgres"])
        .output()
        .unwrap();
    assert!(o.status.success(), "pgbench -i: {}", stderr(&o));
    pg.sql(
        "ALTER TABLE pgbench_accounts REPLICA IDENTITY FULL; \
         CREATE TABLE accounts_copy (LIKE pgbench_accounts INCLUDING ALL)",
    );
    let dir = support::temp_dir();
    let d = dir.path();
    let spec = spec(
        d,
        &pg,
        "table: pgbench_accounts",
        &copy_into(&pg, "accounts_copy"),
    );
    let mut bench = pg
        .client("pgbench")
        .args(["-n", "-T", "8", "-c", "2", "-j", "1", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seed = support::time_seed();
    let mut kills = support::kill_at_random_moments(
        &mut || {
            let mut c = support::sluice();
            c.args(["run", "--no-api", "-q"]).arg(&spec);
            c
        },
        1,
        (Duration::from_millis(150), Duration::from_millis(400)),
        &mut seed,
    );
    kills.extend(support::kill_at_random_moments(
        &mut || {
            let mut c = support::sluice();
            c.args(["run", "--no-api", "-q"]).arg(&spec);
            c
        },
        1,
        (Duration::from_millis(1500), Duration::from_millis(3000)),
        &mut seed,
    ));
    assert_eq!(kills.len(), 2, "the job ended before it was killed");
    let log = d.join("log");
    let mut child = start(&spec, &log, &[]);
    let ck = d.join("ck");
    let mut confirmed_seen = Vec::new();
    while bench.try_wait().unwrap().is_none() {
        let confirmed =
            pg.sql("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 's1'");
        // (A slot made by a fresh run holds the point it was made at until
        // the run's first checkpoint.)
        if let (false, Some(at)) = (confirmed.is_empty(), checkpoint_lsn(&ck)) {
            let c = lsn(&confirmed);
            assert!(
                c <= at,
                "the slot confirmed {confirmed}, past the last checkpoint's {at:X}"
            );
            confirmed_seen.push(c);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(bench.wait().unwrap().success());
    wait_same(
        &pg,
        &mut child,
        ("pgbench_accounts", "accounts_copy"),
        Duration::from_secs(60),
        &log,
    );
    assert!(
        confirmed_seen.windows(2).any(|w| w[1] > w[0]),
        "the slot's confirmed position never moved: {confirmed_seen:?}"
    );
    stop(child);
}

/// Transactions over two tables, each larger than a chunk of the reader and
/// than `logical_decoding_work_mem` (64 kB in the test cluster), are never
/// cut by a checkpoint: a count over both tables, committed to PostgreSQL at
/// every checkpoint (every 10 ms), is only ever seen at a transaction's end.
#[test]
fn a_transaction_over_two_tables_stays_whole_across_barriers() {
    let pg = Postgres::start();
    pg.sql(
        "CREATE TABLE a (id int PRIMARY KEY, g int); CREATE TABLE b (id int PRIMARY KEY, g int); \
         ALTER TABLE a REPLICA IDENTITY FULL; ALTER TABLE b REPLICA IDENTITY FULL; \
         CREATE TABLE counts (g int PRIMARY KEY, count bigint)",
    );
    let dir = support::temp_dir();
    let d = dir.path();
    let spec = spec(
        d,
        &pg,
        "tables: [a, b]",
        &format!(
            "operators:\n\
             \x20 - {{ uid: total, input: cdc, key_by: /g, group_aggregate: [{{ fn: count }}] }}\n\
             sinks:\n  - {{ uid: counts, input: total, type: postgres, url: '{}', table: counts }}\n",
            pg.url()
        ),
    );
    let log = d.join("log");
    let mut child = start(&spec, &log, &[("INTERVAL", "10ms")]);
    // The slot exists once the snapshot (of nothing) is read.
    wait_for(
        &pg,
        &mut child,
        (
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's1'",
            "1",
        ),
        &|_| String::new(),
        Duration::from_secs(30),
        &log,
    );
    const TXN: i64 = 40_000;
    let writers: Vec<Command> = (0..4)
        .map(|t| {
            let mut c = pg.client("psql");
            c.args(["-d", "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
                .arg(format!(
                    "BEGIN; INSERT INTO a SELECT i, 1 FROM generate_series({s}, {e}) i; \
                         INSERT INTO b SELECT i, 1 FROM generate_series({s}, {e}) i; COMMIT",
                    s = t * TXN / 2 + 1,
                    e = (t + 1) * TXN / 2
                ));
            c
        })
        .collect();
    let writer = std::thread::spawn(move || {
        for mut c in writers {
            let o = c.output().unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let until = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let n: i64 = pg
            .sql("SELECT coalesce(max(count), 0) FROM counts")
            .parse()
            .unwrap();
        if seen.last() != Some(&n) {
            seen.push(n);
        }
        if n == 4 * TXN {
            break;
        }
        assert!(
            Instant::now() < until,
            "counts seen: {seen:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    writer.join().unwrap();
    assert!(
        seen.iter().all(|n| n % TXN == 0),
        "a checkpoint cut a transaction: counts seen {seen:?}"
    );
    stop(child);
}

/// What a table's replica identity allows: `changelog_mode: all` refuses a
/// table without REPLICA IDENTITY FULL when the plan is built; `upsert`
/// reads it, and an update of another column of a row holding a TOASTed
/// text keeps the text. A TRUNCATE fails the job with a message naming the
/// table and the LSN (unless `on_truncate: skip`); cancelling with
/// `--drop-slot` drops the slot, a failure keeps it.
#[test]
fn replica_identity_truncate_and_dropping_the_slot() {
    let pg = Postgres::start();
    pg.sql(&format!(
        "CREATE TABLE docs (id int PRIMARY KEY, title text, body text); \
         CREATE TABLE docs_copy (LIKE docs INCLUDING ALL); \
         INSERT INTO docs SELECT i, 't' || i, {BIG} FROM generate_series(1, 50) i"
    ));
    let dir = support::temp_dir();
    let d = dir.path();
    let sink = copy_into(&pg, "docs_copy");
    let refused = support::run(&spec(d, &pg, "table: docs", &sink), &[]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("table `public.docs` has REPLICA IDENTITY DEFAULT")
            && stderr(&refused).contains("cdc.yaml:"),
        "{}",
        stderr(&refused)
    );

    let spec = spec(d, &pg, "table: docs, changelog_mode: upsert", &sink);
    let log = d.join("log");
    let mut child = start(&spec, &log, &[]);
    wait_same(
        &pg,
        &mut child,
        ("docs", "docs_copy"),
        Duration::from_secs(60),
        &log,
    );
    pg.sql("UPDATE docs SET title = 'new ' || id WHERE id <= 10; DELETE FROM docs WHERE id = 50");
    wait_same(
        &pg,
        &mut child,
        ("docs", "docs_copy"),
        Duration::from_secs(60),
        &log,
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM docs_copy WHERE length(body) = 12800"),
        "49"
    );

    pg.sql("TRUNCATE docs");
    let status = child.wait().unwrap();
    assert!(!status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("TRUNCATE of public.docs at LSN") && text.contains("on_truncate: skip"),
        "{text}"
    );
    // A failure keeps the slot: the job can be restored.
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's1'"),
        "1"
    );

    // Skipping the TRUNCATE, then cancelling with --drop-slot.
    let skip = spec.with_file_name("skip.yaml");
    std::fs::write(
        &skip,
        std::fs::read_to_string(&spec).unwrap().replace(
            "changelog_mode: upsert",
            "changelog_mode: upsert, on_truncate: skip",
        ),
    )
    .unwrap();
    let mut child = support::sluice()
        .args(["run", "--listen", "127.0.0.1:0"])
        .arg(&skip)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    pg.sql("INSERT INTO docs VALUES (1, 'after', 'truncate')");
    wait_for(
        &pg,
        &mut child,
        ("SELECT title FROM docs_copy WHERE id = 1", "after"),
        &|_| String::new(),
        Duration::from_secs(60),
        &log,
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let url = text
        .lines()
        .find(|l| l.contains("API and dashboard at http://"))
        .and_then(|l| l.rsplit(' ').next())
        .expect("the API address")
        .to_owned();
    let jobs = support::sluice()
        .args(["job", "list", "--server", &url, "--json"])
        .output()
        .unwrap();
    let jobs: serde_json::Value = serde_json::from_slice(&jobs.stdout).unwrap_or_default();
    let id = jobs["jobs"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("the job in `sluice job list --json`: {jobs}"))
        .to_owned();
    let o = support::sluice()
        .args(["job", "cancel", &id, "--drop-slot", "--server", &url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    child.wait().unwrap();
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 's1'"),
        "0"
    );
}

/// examples/orders-cdc: the revenue per status follows the `orders` table
/// through inserts, updates that move orders between statuses, deletes, and
/// a status that empties, and a kill and restart, equal to PostgreSQL's own
/// `GROUP BY`.
#[test]
fn the_orders_cdc_example_keeps_revenue_by_status_live() {
    let pg = Postgres::start();
    let example = support::repo().join("examples/orders-cdc");
    pg.sql(&std::fs::read_to_string(example.join("orders.sql")).unwrap());
    let dir = support::temp_dir();
    let d = dir.path();
    let log = d.join("log");
    let url = pg.url();
    let ck = d.join("ck").display().to_string();
    let env = [
        ("PG_URL", url.as_str()),
        ("CHECKPOINT_DIR", ck.as_str()),
        ("CHECKPOINT_INTERVAL", "100ms"),
    ];
    let mut child = start(&example.join("pipeline.yaml"), &log, &env);
    let expected = "SELECT status, count(*), sum(amount_cents), max(amount_cents) FROM orders GROUP BY status ORDER BY status";
    let got = "SELECT status, orders, revenue_cents, largest_cents FROM revenue_by_status ORDER BY status";
    let same = |pg: &Postgres, child: &mut Child| {
        let want = pg.sql(expected);
        wait_for(
            pg,
            child,
            (got, &want),
            &|_| String::new(),
            Duration::from_secs(60),
            &log,
        );
    };
    same(&pg, &mut child);
    // Killed after the snapshot and restarted: it resumes from its
    // checkpoint (counting nothing twice), and reads what changed meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    stop(child);
    pg.sql("UPDATE orders SET status = 'PENDING' WHERE id BETWEEN 10 AND 30");
    let mut child = start(&example.join("pipeline.yaml"), &log, &env);
    pg.sql("INSERT INTO orders (id, customer_id, status, amount_cents) SELECT i, 'c1', 'REFUNDED', i FROM generate_series(2001, 2010) i");
    pg.sql("UPDATE orders SET status = 'COMPLETED', updated_at = now() WHERE status = 'PENDING' AND id % 2 = 0");
    pg.sql("DELETE FROM orders WHERE status = 'CANCELLED' AND id < 500");
    same(&pg, &mut child);
    pg.sql("UPDATE orders SET amount_cents = amount_cents * 2 WHERE id = 2010; DELETE FROM orders WHERE status = 'REFUNDED' AND id < 2010");
    same(&pg, &mut child);
    pg.sql("DELETE FROM orders WHERE status = 'REFUNDED'");
    same(&pg, &mut child);
    assert_eq!(
        pg.sql("SELECT count(*) FROM revenue_by_status WHERE status = 'REFUNDED'"),
        "0"
    );
    stop(child);
}

/// `bounded: true` reads the snapshot and the stream up to where it stood
/// at the start, then the job ends; the stdout sink prints a changelog with
/// each row's kind when asked to (`changelog: true`) and refuses it
/// otherwise, naming both nodes.
#[test]
fn a_bounded_source_ends_and_stdout_prints_the_kinds() {
    let pg = Postgres::start();
    pg.sql(
        "CREATE TABLE t (id int PRIMARY KEY, v text); ALTER TABLE t REPLICA IDENTITY FULL; \
         INSERT INTO t VALUES (1, 'a'), (2, NULL)",
    );
    let dir = support::temp_dir();
    let d = dir.path();
    let printed = spec(
        d,
        &pg,
        "table: t, bounded: true, table_field: _table",
        "sinks:\n  - { uid: out, input: cdc, type: stdout, changelog: true }\n",
    );
    let o = support::run(&printed, &[]);
    support::assert_ok(&o);
    let mut lines: Vec<String> = support::stdout(&o).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            r#"+I {"_table":"public.t","id":1,"v":"a"}"#,
            r#"+I {"_table":"public.t","id":2,"v":null}"#
        ]
    );
    let refused = spec(
        d,
        &pg,
        "table: t, bounded: true",
        "sinks:\n  - { uid: out, input: cdc, type: stdout }\n",
    );
    let o = support::run(&refused, &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("`out` (sink) is append-only, but its input is the changelog (updates and deletes) of `cdc`"),
        "{}",
        stderr(&o)
    );
}

/// The server crashes (`pg_ctl restart -m immediate`) while the job streams:
/// the source fails naming the slot, the job restarts from its last
/// checkpoint once the server is back, and the copy ends equal to the table.
#[test]
fn a_server_crash_while_streaming_is_survived_by_a_restart() {
    let pg = Postgres::start();
    pg.sql(ITEMS);
    pg.sql("INSERT INTO items (id, note) SELECT i, 'n' || i FROM generate_series(1, 1000) i");
    let dir = support::temp_dir();
    let d = dir.path();
    let spec = spec(d, &pg, "table: items", &copy_into(&pg, "items_copy"));
    let text = std::fs::read_to_string(&spec).unwrap().replace(
        "restart: { strategy: none }",
        "restart: { strategy: fixed_delay, attempts: 20, delay: 500ms }",
    );
    std::fs::write(&spec, text).unwrap();
    let log = d.join("log");
    let mut child = start(&spec, &log, &[]);
    wait_same(
        &pg,
        &mut child,
        ("items", "items_copy"),
        Duration::from_secs(60),
        &log,
    );
    pg.sql("UPDATE items SET amount = id WHERE id <= 500");
    pg.restart_immediate();
    pg.sql("UPDATE items SET flag = true WHERE id > 250; DELETE FROM items WHERE id % 10 = 0");
    wait_same(
        &pg,
        &mut child,
        ("items", "items_copy"),
        Duration::from_secs(90),
        &log,
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    stop(child);
    assert!(
        text.contains("postgres-cdc slot `s1`") && text.contains("restarting in"),
        "the source did not fail and the job did not restart:\n{text}"
    );
}
