//! `sluice sql` with `kafka` tables, against a real broker (Tansu): keys,
//! metadata columns, the Kafka timestamp as the time attribute, the `raw`
//! format, JSON keys, INSERTs exactly once, and an idle partition.

use crate::kafka::Broker;
use crate::support::{self, assert_ok, stderr, stdout};
use serde_json::Value;
use sluice_host::sql::types::timestamp_text;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn events_file() -> PathBuf {
    support::repo().join("tests/sql/data/events.jsonl")
}

/// The test events, in file order, as JSON.
fn events() -> Vec<Value> {
    std::fs::read_to_string(events_file())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Loads the test events into `topic`, keyed by customer, each with its
/// `event_ts` as the Kafka timestamp.
fn load_events(broker: &Broker, dir: &Path, topic: &str) {
    load(broker, dir, &events_file(), topic, "/customer_id");
}

/// Loads the events of `file` into `topic`, keyed by the field at `key`,
/// each with its `event_ts` as the Kafka timestamp.
fn load(broker: &Broker, dir: &Path, file: &Path, topic: &str, key: &str) {
    let spec = write(
        dir,
        &format!("load-{topic}.yaml"),
        &format!(
            "name: load\nsources:\n  - {{ uid: file, type: file, path: {:?}, event_time: {{ timestamp: /event_ts }} }}\nsinks:\n  - {{ uid: topic, input: file, type: kafka, bootstrap: {:?}, topic: {topic}, key: {key} }}\n",
            file.to_str().unwrap(),
            broker.bootstrap
        ),
    );
    assert_ok(&support::run(&spec, &[]));
}

/// The `CREATE TABLE` of the test events on Kafka topic `topic`: the key
/// as column `k`, the Kafka timestamp as the time attribute, metadata.
fn kafka_events_table(topic: &str, extra_options: &str) -> String {
    format!(
        "CREATE TABLE events (
  k           STRING,
  order_id    STRING,
  customer_id STRING,
  amount      DECIMAL(10, 2),
  currency    STRING,
  qty         INT,
  price       DOUBLE,
  event_ts    BIGINT,
  ts          TIMESTAMP_LTZ(3) METADATA FROM 'timestamp',
  `partition` INT METADATA VIRTUAL,
  `offset`    BIGINT METADATA VIRTUAL,
  topic       STRING METADATA VIRTUAL,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = '{topic}',
  'properties.bootstrap.servers' = '${{BOOTSTRAP}}',
  'scan.startup.mode' = 'earliest-offset',
  'format' = 'json',
  'key.format' = 'raw',
  'key.fields' = 'k',
  'value.fields-include' = 'EXCEPT_KEY'{extra_options}
);
"
    )
}

fn sql(script: &Path, broker: &Broker, args: &[&str]) -> std::process::Output {
    support::sluice()
        .arg("sql")
        .args(args)
        .arg(script)
        .env("BOOTSTRAP", &broker.bootstrap)
        .output()
        .unwrap()
}

#[test]
fn kafka_tables_read_keys_metadata_and_the_kafka_timestamp() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    broker.create_topic("events", 2);
    load_events(&broker, d, "events");
    let bounded = ",\n  'scan.bounded.mode' = 'latest-offset'";
    let script = write(
        d,
        "read.sql",
        &(kafka_events_table("events", bounded)
            + "SELECT k, order_id, ts, `partition`, `offset`, topic FROM events;\n"),
    );
    let o = sql(&script, &broker, &["-q"]);
    assert_ok(&o);
    let rows: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events = events();
    assert_eq!(rows.len(), events.len(), "{}", stdout(&o));
    let mut positions = std::collections::BTreeMap::<i64, Vec<i64>>::new();
    for e in &events {
        let id = e["order_id"].as_str().unwrap();
        let r = rows
            .iter()
            .find(|r| r["order_id"] == id)
            .unwrap_or_else(|| panic!("{id} missing"));
        // The key, as text; a null customer was sent without a key.
        assert_eq!(r["k"], e["customer_id"], "{r}");
        // The Kafka timestamp, which the loader set from event_ts.
        let t = timestamp_text(e["event_ts"].as_i64().unwrap());
        assert_eq!(r["ts"], t.as_str(), "{r}");
        assert_eq!(r["topic"], "events");
        positions
            .entry(r["partition"].as_i64().unwrap())
            .or_default()
            .push(r["offset"].as_i64().unwrap());
    }
    // Every offset of every partition, once.
    for offsets in positions.values_mut() {
        offsets.sort();
        let n = offsets.len() as i64;
        assert_eq!(*offsets, (0..n).collect::<Vec<_>>());
    }

    // A window over the Kafka timestamp gives the rows Flink gives over the
    // file (one partition: the file's order, so the same late rows).
    broker.create_topic("events1", 1);
    load_events(&broker, d, "events1");
    let case = support::repo().join("tests/sql/cases/window_tumble.sql");
    let text = std::fs::read_to_string(&case).unwrap();
    let query = &text[text.find("\nSELECT").unwrap()..];
    let script = write(
        d,
        "window_tumble.sql",
        &(kafka_events_table("events1", bounded) + query),
    );
    let failures = crate::sql::compare_with_golden(
        &script,
        &case.with_extension("golden"),
        &[("BOOTSTRAP", broker.bootstrap.as_str())],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn inserts_write_json_and_raw_values_with_keys_exactly_once() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    broker.create_topic("orders", 2);
    broker.create_topic("ids", 1);
    let ck = d.join("ck");
    let script = write(
        d,
        "write.sql",
        &format!(
            "SET 'execution.checkpointing.interval' = '100 ms';
SET 'execution.checkpointing.dir' = 'file://{}';
CREATE TABLE events (
  order_id STRING, customer_id STRING, amount DECIMAL(10, 2), event_ts BIGINT
) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
CREATE TABLE orders (
  customer_id STRING, order_id STRING, amount DECIMAL(10, 2)
) WITH (
  'connector' = 'kafka', 'topic' = 'orders', 'properties.bootstrap.servers' = '${{BOOTSTRAP}}',
  'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'customer_id',
  'sink.delivery-guarantee' = 'exactly-once', 'sink.transactional-id-prefix' = 'sql-orders'
);
CREATE TABLE ids (id STRING) WITH (
  'connector' = 'kafka', 'topic' = 'ids', 'properties.bootstrap.servers' = '${{BOOTSTRAP}}',
  'format' = 'raw', 'properties.linger.ms' = '5'
);
INSERT INTO orders SELECT customer_id, order_id, amount * 2 FROM events;
INSERT INTO ids SELECT order_id FROM events WHERE amount > 5;
",
            ck.display(),
            events_file().display()
        ),
    );
    let o = sql(&script, &broker, &["-q"]);
    assert_ok(&o);
    assert!(
        std::fs::read_dir(&ck).is_ok_and(|mut d| d.next().is_some()),
        "no checkpoint written: {}",
        stderr(&o)
    );
    let events = events();
    let orders = broker.committed_records("orders");
    assert_eq!(orders.len(), events.len());
    for e in &events {
        let id = e["order_id"].as_str().unwrap();
        let r = orders
            .iter()
            .find(|r| {
                let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
                v["order_id"] == id
            })
            .unwrap_or_else(|| panic!("{id} missing"));
        let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
        // The key is the customer's text; a null customer, no key.
        assert_eq!(r["key"], e["customer_id"], "{r}");
        assert_eq!(v["customer_id"], e["customer_id"]);
        let doubled = e["amount"].as_f64().unwrap() * 2.0;
        assert_eq!(v["amount"].as_f64().unwrap(), doubled, "{v}");
    }
    let ids: Vec<String> = broker
        .committed_records("ids")
        .iter()
        .map(|r| r["value"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = events
        .iter()
        .filter(|e| e["amount"].as_f64().unwrap() > 5.0)
        .map(|e| e["order_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, want, "raw values, the order ids as text");

    // The raw topic read back as a raw table.
    let read = write(
        d,
        "read_raw.sql",
        "CREATE TABLE ids (line STRING) WITH (
  'connector' = 'kafka', 'topic' = 'ids', 'properties.bootstrap.servers' = '${BOOTSTRAP}',
  'properties.group.id' = 'readers', 'properties.auto.offset.reset' = 'earliest',
  'scan.bounded.mode' = 'latest-offset', 'format' = 'raw'
);
SELECT UPPER(line) AS id FROM ids;
",
    );
    let o = sql(&read, &broker, &["-q"]);
    assert_ok(&o);
    let got: Vec<String> = stdout(&o)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let upper: Vec<String> = want.iter().map(|s| s.to_uppercase()).collect();
    assert_eq!(got, upper);
}

/// `'key.format' = 'json'`: an INSERT writes each record's key as the JSON
/// object of its `key.fields` (Flink's key format, a NULL field `null`),
/// and a table with `'value.fields-include' = 'EXCEPT_KEY'` reads those
/// columns back from the key and the others from the value.
#[test]
fn json_keys_are_written_and_read_back() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    broker.create_topic("keyed", 1);
    let table = |name: &str, extra: &str| {
        format!(
            "CREATE TABLE {name} (
  customer_id STRING, order_id STRING, amount DECIMAL(10, 2)
) WITH (
  'connector' = 'kafka', 'topic' = 'keyed', 'properties.bootstrap.servers' = '${{BOOTSTRAP}}',
  'format' = 'json', 'key.format' = 'json', 'key.fields' = 'customer_id;order_id'{extra}
);
"
        )
    };
    let script = write(
        d,
        "write.sql",
        &format!(
            "CREATE TABLE events (
  order_id STRING, customer_id STRING, amount DECIMAL(10, 2), event_ts BIGINT
) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
{}INSERT INTO keyed SELECT customer_id, order_id, amount FROM events;
",
            events_file().display(),
            table("keyed", "")
        ),
    );
    assert_ok(&sql(&script, &broker, &["-q"]));
    let events = events();
    let written = broker.committed_records("keyed");
    assert_eq!(written.len(), events.len());
    for (r, e) in written.iter().zip(&events) {
        let key: Value = serde_json::from_str(r["key"].as_str().unwrap()).unwrap();
        assert_eq!(
            key,
            serde_json::json!({"customer_id": e["customer_id"], "order_id": e["order_id"]}),
            "{r}"
        );
    }
    let read = write(
        d,
        "read.sql",
        &format!(
            "{}SELECT order_id, customer_id, amount FROM keyed_back;
",
            table(
                "keyed_back",
                ", 'value.fields-include' = 'EXCEPT_KEY', 'properties.group.id' = 'r', 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'"
            )
        ),
    );
    let o = sql(&read, &broker, &["-q"]);
    assert_ok(&o);
    let rows: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), events.len());
    for (row, e) in rows.iter().zip(&events) {
        assert_eq!(row["order_id"], e["order_id"]);
        assert_eq!(row["customer_id"], e["customer_id"]);
        assert_eq!(row["amount"].as_f64(), e["amount"].as_f64(), "{row}");
    }
    // Records whose values lack the key's fields: those come from the key,
    // a record without a key has NULLs there, a key that is not a JSON
    // object stops the job naming the table. Each: `lines` into `topic`,
    // keyed by their `/k`, read back by the script above.
    let read_back = |topic: &str, lines: &str| {
        broker.create_topic(topic, 1);
        let file = d.join(format!("{topic}.jsonl"));
        std::fs::write(&file, lines).unwrap();
        load(&broker, d, &file, topic, "/k");
        let script = std::fs::read_to_string(&read)
            .unwrap()
            .replace("'topic' = 'keyed'", &format!("'topic' = '{topic}'"));
        sql(
            &write(d, &format!("{topic}.sql"), &script),
            &broker,
            &["-q"],
        )
    };
    let o = read_back(
        "keyed2",
        "{\"k\":{\"customer_id\":\"c-7\",\"order_id\":\"o-7\"},\"amount\":1.50,\"event_ts\":1}\n\
         {\"amount\":2.25,\"event_ts\":2}\n",
    );
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "{\"order_id\":\"o-7\",\"customer_id\":\"c-7\",\"amount\":1.50}\n\
         {\"order_id\":null,\"customer_id\":null,\"amount\":2.25}\n"
    );
    let o = read_back(
        "keyed3",
        "{\"k\":\"plain text\",\"amount\":1.00,\"event_ts\":1}\n",
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("kafka topic keyed3 partition 0 offset 0")
            && err.contains("table `keyed_back`: the key is not a JSON object"),
        "{err}"
    );
}

/// A `timestamp` metadata column that is not VIRTUAL is written: an
/// INSERT gives it (in the table's column order, as Flink's), it becomes
/// each record's Kafka timestamp and stays out of the value.
#[test]
fn inserts_write_the_kafka_timestamp_from_a_metadata_column() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    broker.create_topic("stamped", 1);
    let script = write(
        d,
        "stamp.sql",
        &format!(
            "CREATE TABLE events (
  order_id STRING, customer_id STRING, amount DECIMAL(10, 2), event_ts BIGINT
) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');
CREATE TABLE stamped (
  order_id STRING, ts TIMESTAMP_LTZ(3) METADATA FROM 'timestamp', amount DECIMAL(10, 2)
) WITH (
  'connector' = 'kafka', 'topic' = 'stamped', 'properties.bootstrap.servers' = '${{BOOTSTRAP}}',
  'format' = 'json'
);
INSERT INTO stamped SELECT order_id, TO_TIMESTAMP_LTZ(event_ts + 1000, 3), amount FROM events;
",
            events_file().display()
        ),
    );
    assert_ok(&sql(&script, &broker, &["-q"]));
    let events = events();
    let written = broker.committed_records("stamped");
    assert_eq!(written.len(), events.len());
    for (r, e) in written.iter().zip(&events) {
        assert_eq!(
            r["timestamp"].as_i64(),
            Some(e["event_ts"].as_i64().unwrap() + 1000),
            "{r}"
        );
        let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"order_id": e["order_id"], "amount": v["amount"]}),
            "the value has no `ts`: {r}"
        );
        assert_eq!(v["amount"].as_f64(), e["amount"].as_f64());
    }
}

/// Runs `script` (its source unbounded) until it has printed `rows` rows
/// or `within` has passed; the rows it printed.
fn rows_within(script: &Path, broker: &Broker, rows: usize, within: Duration) -> Vec<Value> {
    use std::io::BufRead;
    let mut child = support::sluice()
        .args(["sql", "-q"])
        .arg(script)
        .env("BOOTSTRAP", &broker.bootstrap)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < rows {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => got.push(serde_json::from_str(&line).unwrap()),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    got
}

#[test]
fn an_idle_partition_holds_windows_back_unless_the_idle_timeout_is_set() {
    let broker = Broker::start();
    let dir = support::temp_dir();
    let d = dir.path();
    // Two partitions, and every event in one of them: the other is idle.
    broker.create_topic("one-sided", 2);
    // Keep one currency's events only, keyed by currency, so that one
    // partition gets them all.
    let eur: Vec<String> = events()
        .iter()
        .filter(|e| e["currency"] == "EUR")
        .map(|e| e.to_string())
        .collect();
    let input = write(d, "eur.jsonl", &(eur.join("\n") + "\n"));
    load(&broker, d, &input, "one-sided", "/currency");
    let query = "SELECT window_start, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
";
    // The EUR events' first window (20–30 s, 3 rows) closes when the
    // watermark passes 30 s, which the later EUR events take it past.
    let idle = write(
        d,
        "idle.sql",
        &("SET 'table.exec.source.idle-timeout' = '300 ms';\n".to_owned()
            + &kafka_events_table("one-sided", "")
            + query),
    );
    let got = rows_within(&idle, &broker, 1, Duration::from_secs(30));
    assert!(
        !got.is_empty(),
        "with an idle timeout, the idle partition should not hold the window"
    );
    assert_eq!(got[0]["window_start"], "2023-11-14 22:13:20.000");
    assert_eq!(got[0]["n"], 3);
    let held = write(
        d,
        "held.sql",
        &(kafka_events_table("one-sided", "") + query),
    );
    let got = rows_within(&held, &broker, 1, Duration::from_secs(3));
    assert!(
        got.is_empty(),
        "without an idle timeout, the idle partition holds the watermark back: {got:?}"
    );
}

#[test]
fn kafka_tables_sluice_cannot_run_are_refused_by_name() {
    let dir = support::temp_dir();
    let d = dir.path();
    let kafka = |columns: &str, options: &str| {
        format!(
            "CREATE TABLE k ({columns}) WITH ('connector' = 'kafka', 'topic' = 'x', 'properties.bootstrap.servers' = '127.0.0.1:1'{options});\n"
        )
    };
    let file = "CREATE TABLE f (a STRING, b STRING) WITH ('connector' = 'filesystem', 'path' = 'x.jsonl', 'format' = 'json');\n";
    for (script, message) in [
        (
            kafka("a STRING", ", 'format' = 'avro'") + "SELECT a FROM k;",
            ":1:1: table `k`: the format 'avro' is not supported by `sluice sql` yet",
        ),
        (
            kafka("a STRING, h STRING METADATA FROM 'headers'", ", 'format' = 'json'")
                + "SELECT a FROM k;",
            ":1:50: METADATA 'headers' is not supported by `sluice sql` yet",
        ),
        (
            kafka("a STRING, p STRING METADATA FROM 'partition'", ", 'format' = 'json'")
                + "SELECT a FROM k;",
            "table `k`: column `p`: METADATA 'partition' is INT NOT NULL, which STRING cannot hold",
        ),
        (
            kafka("a STRING", ", 'format' = 'json'") + "SELECT a FROM k;",
            "table `k`: 'scan.startup.mode' is 'group-offsets' (Flink's default), which needs 'properties.group.id'",
        ),
        (
            kafka("a STRING, b STRING", ", 'format' = 'raw'") + "SELECT a FROM k;",
            "table `k`: the 'raw' format reads the whole value into one STRING column",
        ),
        (
            kafka(
                "a STRING, b STRING",
                ", 'format' = 'json', 'key.format' = 'json', 'key.fields' = 'a;c'",
            ) + "SELECT a FROM k;",
            "table `k`: 'key.fields' = 'a;c': `c` is not a physical column of the table",
        ),
        (
            kafka("a STRING", ", 'format' = 'json', 'scan.bounded.mode' = 'timestamp'")
                + "SELECT a FROM k;",
            "'scan.bounded.mode' = 'timestamp' is not supported by `sluice sql`",
        ),
        (
            kafka(
                "a STRING, b STRING",
                ", 'format' = 'json', 'key.format' = 'raw', 'key.fields' = 'a', 'value.fields-include' = 'EXCEPT_KEY'",
            ) + file
                + "INSERT INTO k SELECT a, b FROM f;",
            ":3:13: INSERT INTO `k`: 'value.fields-include' = 'EXCEPT_KEY' is not supported for writing yet",
        ),
        (
            kafka("a STRING, p INT METADATA FROM 'partition'", ", 'format' = 'json'")
                + file
                + "INSERT INTO k SELECT a, 1 FROM f;",
            "column `p`: METADATA 'partition' is read-only (Kafka sinks write 'timestamp'; declare the column VIRTUAL)",
        ),
        (
            "CREATE TABLE f (a STRING, o BIGINT METADATA FROM 'offset') WITH ('connector' = 'filesystem', 'path' = 'x.jsonl', 'format' = 'json');\nSELECT a FROM f;".to_owned(),
            "table `f`: column `o`: METADATA columns are read from 'kafka' tables only",
        ),
        (
            "SET 'execution.checkpointing.interval' = '1 s';\n".to_owned() + file + "SELECT a FROM f;",
            "SET 'execution.checkpointing.interval' needs SET 'execution.checkpointing.dir'",
        ),
    ] {
        let f = d.join("q.sql");
        std::fs::write(&f, &script).unwrap();
        let o = support::sluice().arg("sql").arg(&f).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{script}");
        let err = stderr(&o);
        assert!(err.contains(message), "{script}\n{err}");
    }
}
