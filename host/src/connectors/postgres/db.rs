//! Talking to PostgreSQL: connections (retried with backoff while the
//! server is unreachable), the catalog, and writing rows.

use super::rows::{ColType, Column, Rows, Table};
use super::{Mode, PostgresSinkOptions};
use crate::json::Pointer;
use bytes::Bytes;
use futures_util::SinkExt;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls, Transaction};

/// The table that records, per sink, the last epoch applied.
pub const PROGRESS_TABLE: &str = "sluice_sink_progress";

/// Runs `f` to completion on a runtime of its own, on a thread of its own:
/// for the callers that must block (the plan, the checkpoint committer),
/// which may themselves run on a runtime's thread.
pub fn block_on<F: Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime")
                .block_on(f)
        })
        .join()
        .expect("the PostgreSQL thread does not panic")
    })
}

/// The URL without its password, for messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

pub async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

/// Whether trying again later may succeed: the connection was lost or
/// refused, the server is shutting down or starting, or the transaction
/// lost a serialization race.
pub fn retryable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03" | "40001" | "40P01")
        }
        // No SQLSTATE: an I/O error, a refused connection.
        None => true,
    }
}

/// An error as a message: the server's, with the column, constraint,
/// detail (PostgreSQL's "Failing row contains (…)", "Key (id)=(7)") and
/// where it happened.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return e.to_string();
    };
    let mut m = format!("{} ({})", db.message(), db.code().code());
    if let Some(c) = db.column() {
        m.push_str(&format!("; column `{c}`"));
    }
    if let Some(c) = db.constraint() {
        m.push_str(&format!("; constraint `{c}`"));
    }
    if let Some(d) = db.detail() {
        m.push_str(&format!("; {d}"));
    }
    if let Some(w) = db.where_() {
        m.push_str(&format!("; {w}"));
    }
    m
}

/// Retries of one operation: after a failure that retrying may cure, waits
/// 100 ms, then twice as long each time (at most 5 s), until `timeout` has
/// passed.
pub struct Retry<'a> {
    what: &'a str,
    timeout: Duration,
    started: Instant,
    wait: Duration,
    tries: u32,
}

impl Retry<'_> {
    pub fn new(what: &str, timeout: Duration) -> Retry<'_> {
        Retry {
            what,
            timeout,
            started: Instant::now(),
            wait: Duration::from_millis(100),
            tries: 0,
        }
    }

    /// An attempt failed with `e`: waits and returns `Ok` to try again, or
    /// the error to give up with.
    pub async fn failed(&mut self, e: tokio_postgres::Error) -> Result<(), String> {
        self.tries += 1;
        let what = self.what;
        if !retryable(&e) {
            return Err(format!("{what}: {}", describe(&e)));
        }
        if self.started.elapsed() + self.wait >= self.timeout {
            return Err(format!(
                "{what}: {} (gave up after {} attempts in {:.1?})",
                describe(&e),
                self.tries,
                self.started.elapsed()
            ));
        }
        tracing::warn!(
            "{what}: {} (attempt {}; retrying in {:?})",
            describe(&e),
            self.tries,
            self.wait
        );
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(Duration::from_secs(5));
        Ok(())
    }
}

/// A column in the catalog.
struct CatalogColumn {
    name: String,
    /// As `format_type` writes it (`numeric(12,2)`).
    sql_type: String,
    /// The type's name (`numeric`).
    typname: String,
    /// Its position in the primary key (0: not in it).
    key_pos: i32,
    /// `NOT NULL`.
    not_null: bool,
    /// A default, an identity or a generated column: an insert without
    /// it still has a value.
    has_default: bool,
}

/// The table's quoted name and its columns, in order.
async fn catalog(client: &Client, name: &str) -> Result<(String, Vec<CatalogColumn>), String> {
    let found = client
        .query_opt(
            "SELECT to_regclass($1)::oid::bigint, to_regclass($1)::text",
            &[&name],
        )
        .await
        .map_err(|e| describe(&e))?;
    let (oid, quoted): (i64, String) = match found {
        Some(row) if row.get::<_, Option<i64>>(0).is_some() => (row.get(0), row.get(1)),
        _ => return Err(format!("there is no table `{name}` (create it first)")),
    };
    let columns = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text,
                    coalesce((SELECT k.n FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                              WHERE k.attnum = a.attnum), 0)::int4,
                    a.attnotnull, a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
             FROM pg_attribute a
             JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
             WHERE a.attrelid = $1::bigint::oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(|e| describe(&e))?;
    Ok((
        quoted,
        columns
            .iter()
            .map(|r| CatalogColumn {
                name: r.get(0),
                sql_type: r.get(1),
                typname: r.get(2),
                key_pos: r.get(3),
                not_null: r.get(4),
                has_default: r.get(5),
            })
            .collect(),
    ))
}

/// The table's quoted name and its columns with their types.
pub async fn columns(
    client: &Client,
    name: &str,
) -> Result<(String, Vec<(String, String)>), String> {
    let (quoted, cols) = catalog(client, name).await?;
    Ok((
        quoted,
        cols.into_iter().map(|c| (c.name, c.sql_type)).collect(),
    ))
}

/// Reads the table's columns and primary key from the catalog and maps
/// fields to them.
pub async fn table(client: &Client, options: &PostgresSinkOptions) -> Result<Table, String> {
    let (quoted, columns) = catalog(client, &options.table).await?;
    let mapping = options.columns.as_ref();
    if let Some(m) = mapping {
        for c in m.keys() {
            if !columns.iter().any(|r| r.name == *c) {
                return Err(format!("table {quoted} has no column `{c}`"));
            }
        }
    }
    let mut table = Table {
        name: quoted.clone(),
        columns: Vec::new(),
        key: Vec::new(),
    };
    let mut key: Vec<(i32, String)> = Vec::new();
    for col in columns {
        let CatalogColumn {
            name,
            sql_type,
            typname,
            key_pos,
            not_null,
            has_default,
        } = col;
        if key_pos > 0 {
            key.push((key_pos, name.clone()));
        }
        let field = match mapping {
            Some(m) => match m.get(&name) {
                Some(p) => Pointer::parse(p)
                    .map_err(|e| format!("columns.{name}: `{p}` is not a JSON pointer: {e}"))?,
                None if not_null && !has_default => {
                    return Err(format!(
                        "column `{name}` of {quoted} is NOT NULL without a default, and `columns` maps no field to it: every insert would fail"
                    ));
                }
                None => continue,
            },
            None => Pointer::parse(&format!("/{}", name.replace('~', "~0").replace('/', "~1")))?,
        };
        let ty = ColType::of(&typname).ok_or_else(|| {
            format!(
                "column `{name}` of {quoted} is of type {sql_type}, which the sink cannot write (it writes text, bigint, integer, smallint, numeric, double precision, real, boolean, timestamptz, timestamp, jsonb and json)"
            )
        })?;
        table.columns.push(Column {
            name,
            sql_type,
            ty,
            field,
            not_null,
        });
    }
    if table.columns.is_empty() {
        return Err(format!("no column of {quoted} is mapped"));
    }
    if table.columns.len() > 64 {
        return Err(format!(
            "{} columns of {quoted} are mapped; the sink writes at most 64",
            table.columns.len()
        ));
    }
    key.sort();
    let mode = options.mode.unwrap_or(if key.is_empty() {
        Mode::Append
    } else {
        Mode::Upsert
    });
    if mode == Mode::Upsert {
        if key.is_empty() {
            return Err(format!(
                "table {quoted} has no primary key, which `mode: upsert` needs (or write `mode: append`)"
            ));
        }
        for (_, k) in &key {
            let i = table
                .columns
                .iter()
                .position(|c| c.name == *k)
                .ok_or_else(|| {
                    format!("column `{k}` of the primary key of {quoted} is not mapped to a field")
                })?;
            table.key.push(i);
        }
    }
    Ok(table)
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The statements that apply rows to a table.
#[derive(Debug, Clone)]
pub struct Statements {
    create_stage: String,
    copy_upserts: String,
    upsert: String,
    copy_deletes: String,
    delete: String,
    copy_appends: String,
}

impl Statements {
    pub fn new(t: &Table) -> Statements {
        let cols: Vec<String> = t.columns.iter().map(|c| quote(&c.name)).collect();
        let key: Vec<String> = t.key.iter().map(|&i| cols[i].clone()).collect();
        let list = cols.join(", ");
        let key_list = key.join(", ");
        let set: Vec<String> = cols
            .iter()
            .filter(|c| !key.contains(c))
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        let on_conflict = if set.is_empty() {
            "DO NOTHING".to_owned()
        } else {
            format!("DO UPDATE SET {}", set.join(", "))
        };
        let matches: Vec<String> = key.iter().map(|k| format!("t.{k} = d.{k}")).collect();
        Statements {
            create_stage: format!(
                "CREATE TEMP TABLE IF NOT EXISTS sluice_upserts AS SELECT {list} FROM {n} WITH NO DATA;
                 CREATE TEMP TABLE IF NOT EXISTS sluice_deletes AS SELECT {kl} FROM {n} WITH NO DATA",
                n = t.name,
                kl = if key.is_empty() { list.clone() } else { key_list.clone() }
            ),
            copy_upserts: format!("COPY sluice_upserts ({list}) FROM STDIN"),
            upsert: format!(
                "INSERT INTO {n} AS t ({list}) SELECT {list} FROM sluice_upserts ON CONFLICT ({key_list}) {on_conflict}",
                n = t.name
            ),
            copy_deletes: format!("COPY sluice_deletes ({key_list}) FROM STDIN"),
            delete: format!(
                "DELETE FROM {n} AS t USING sluice_deletes AS d WHERE {}",
                matches.join(" AND "),
                n = t.name
            ),
            copy_appends: format!("COPY {n} ({list}) FROM STDIN", n = t.name),
        }
    }
}

async fn copy(
    txn: &Transaction<'_>,
    statement: &str,
    lines: &[u8],
) -> Result<u64, tokio_postgres::Error> {
    let sink = txn.copy_in(statement).await?;
    futures_util::pin_mut!(sink);
    // In pieces of at most 1 MiB: the protocol's messages stay small.
    for chunk in lines.chunks(1 << 20) {
        sink.feed(Bytes::copy_from_slice(chunk)).await?;
    }
    sink.finish().await
}

/// Applies `rows` inside `txn`: COPY into the staging tables, then one
/// upsert and one delete (or one COPY into the table, for appends).
pub async fn apply(
    txn: &Transaction<'_>,
    s: &Statements,
    rows: &Rows,
) -> Result<(), tokio_postgres::Error> {
    if !rows.appends.is_empty() {
        copy(txn, &s.copy_appends, &rows.appends).await?;
    }
    if rows.upserts.is_empty() && rows.deletes.is_empty() {
        return Ok(());
    }
    txn.batch_execute(&s.create_stage).await?;
    if !rows.upserts.is_empty() {
        txn.batch_execute("TRUNCATE sluice_upserts").await?;
        copy(txn, &s.copy_upserts, &rows.upserts).await?;
        txn.execute(&s.upsert, &[]).await?;
    }
    if !rows.deletes.is_empty() {
        txn.batch_execute("TRUNCATE sluice_deletes").await?;
        copy(txn, &s.copy_deletes, &rows.deletes).await?;
        txn.execute(&s.delete, &[]).await?;
    }
    Ok(())
}

/// Makes the progress table if it is missing.
pub async fn ensure_progress(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (
                sink_id text PRIMARY KEY,
                epoch bigint NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await
        .or_else(|e| {
            // Two sinks creating it at once: one wins.
            if e.code().map(|c| c.code()) == Some("23505") {
                Ok(())
            } else {
                Err(e)
            }
        })
}

/// The sink's last applied epoch, locked until the transaction ends.
pub async fn progress(txn: &Transaction<'_>, sink: &str) -> Result<u64, tokio_postgres::Error> {
    let row = txn
        .query_opt(
            &format!("SELECT epoch FROM {PROGRESS_TABLE} WHERE sink_id = $1 FOR UPDATE"),
            &[&sink],
        )
        .await?;
    Ok(row.map(|r| r.get::<_, i64>(0).max(0) as u64).unwrap_or(0))
}

pub async fn set_progress(
    txn: &Transaction<'_>,
    sink: &str,
    epoch: Option<u64>,
) -> Result<(), tokio_postgres::Error> {
    match epoch {
        Some(e) => {
            txn.execute(
                &format!(
                    "INSERT INTO {PROGRESS_TABLE} (sink_id, epoch) VALUES ($1, $2)
                     ON CONFLICT (sink_id) DO UPDATE SET epoch = EXCLUDED.epoch, updated_at = now()"
                ),
                &[&sink, &(e as i64)],
            )
            .await?;
        }
        None => {
            txn.execute(
                &format!("DELETE FROM {PROGRESS_TABLE} WHERE sink_id = $1"),
                &[&sink],
            )
            .await?;
        }
    }
    Ok(())
}
