//! Planning a parsed script: its queries become `sql` operators, windows
//! and sinks of a pipeline spec (YAML), which the ordinary planner plans.

use super::expr::{self, Bound, Scope};
use super::types::{self, SqlType};
use super::udf::{self, Udfs};
use super::{
    Column, FunctionDef, Pos, SqlError, Statement, Table, TvfKind, WindowTvf, aggregate, at,
    check_table, parse_statement, statements, table_scope, tvf_name,
};
use crate::runtime::function::Signature;
use sqlparser::ast::{self, Spanned};
use sqlparser::tokenizer::Token;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A planned script: the pipeline spec it runs as, in YAML.
#[derive(Debug)]
pub struct Planned {
    pub spec: String,
    /// The result columns of the final SELECT, with their types.
    pub columns: Vec<(String, SqlType)>,
}

/// Where the final SELECT's rows go.
pub enum Output {
    Stdout,
    File(PathBuf),
    /// Nowhere: a script submitted to a server writes with INSERT INTO.
    None,
}

/// Settings of a script (`SET`) that planning reads.
#[derive(Debug, Default)]
struct Settings {
    parallelism: Option<u32>,
    /// `pipeline.auto-watermark-interval`: `None` or 0 is a watermark per
    /// event.
    watermark_interval_ms: Option<i64>,
    /// `table.exec.source.idle-timeout` (0: none).
    idle_timeout_ms: Option<i64>,
    /// `execution.checkpointing.interval`.
    checkpoint_interval_ms: Option<i64>,
    /// `execution.checkpointing.dir` (or `state.checkpoints.dir`), a
    /// folder (`file://` taken off).
    checkpoint_dir: Option<String>,
}

/// A computed column may not call a Wasm function (yet): the `sql`
/// operator computes a table's columns record by record, and calls
/// functions a batch at a time, in its filter and projections.
fn refuse_functions_in_computed_columns(t: &Table, udfs: &Udfs) -> Result<(), SqlError> {
    for c in &t.columns {
        let Some(e) = &c.computed else { continue };
        let text = e.to_string().to_ascii_uppercase();
        for u in &udfs.defs {
            if text.contains(&format!("{}(", u.name.to_ascii_uppercase())) {
                return Err(SqlError::new(
                    at(e),
                    format!(
                        "the computed column `{}` calls the Wasm function {}: `sluice sql` calls Wasm functions in queries (SELECT, WHERE), not in computed columns, yet",
                        c.name, u.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A Flink duration option (`200 ms`, `5 s`, `1 min`, `0`) in milliseconds.
pub(super) fn flink_duration(v: &str) -> Option<i64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: i64 = n.parse().ok()?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1000,
        "min" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Plans the script `text` (its `${VAR}`s already replaced), read from
/// `path`, into a pipeline spec: every `INSERT INTO` and the final
/// `SELECT`, if there is one, in one job, at `parallelism` unless the
/// script SETs 'parallelism.default'.
pub fn plan(
    text: &str,
    path: &Path,
    output: &Output,
    parallelism: Option<u32>,
    modules: &dyn Fn(&str) -> Result<Vec<Signature>, String>,
) -> Result<Planned, SqlError> {
    let mut functions: Vec<FunctionDef> = Vec::new();
    let mut udfs = Udfs::default();
    let mut signatures: BTreeMap<String, Vec<Signature>> = BTreeMap::new();
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut views: BTreeMap<String, View> = BTreeMap::new();
    let mut settings = Settings::default();
    let mut inserts = Vec::new();
    let mut query = None;
    let stmts = statements(text)?;
    let last = stmts.len().saturating_sub(1);
    for (i, tokens) in stmts.into_iter().enumerate() {
        let start = tokens
            .iter()
            .find(|t| !matches!(t.token, Token::Whitespace(_)))
            .map(|t| (t.span.start.line, t.span.start.column));
        match parse_statement(tokens)? {
            Statement::Set(k, v) => settings.set(&k, &v, start)?,
            Statement::CreateTable(t) => {
                refuse_functions_in_computed_columns(&t, &udfs)?;
                check_table(&t)?;
                if tables.contains_key(&t.name) || views.contains_key(&t.name) {
                    return Err(SqlError::new(
                        t.pos,
                        format!("table `{}` already exists", t.name),
                    ));
                }
                tables.insert(t.name.clone(), *t);
            }
            Statement::CreateView(name, pos, q, tvfs) => {
                if tables.contains_key(&name) || views.contains_key(&name) {
                    return Err(SqlError::new(pos, format!("`{name}` already exists")));
                }
                views.insert(name, View { query: q, tvfs });
            }
            Statement::CreateFunction(f) => {
                if udfs.find(&f.name).is_some() {
                    return Err(SqlError::new(
                        f.pos,
                        format!("function `{}` already exists", f.name),
                    ));
                }
                if !signatures.contains_key(&f.module) {
                    let sigs = modules(&f.module)
                        .map_err(|m| SqlError::new(f.pos, format!("function `{}`: {m}", f.name)))?;
                    signatures.insert(f.module.clone(), sigs);
                }
                let module_index = signatures
                    .keys()
                    .position(|m| *m == f.module)
                    .expect("read");
                let udf = udf::resolve(
                    &f.name,
                    &f.module,
                    module_index,
                    &f.function,
                    &signatures[&f.module],
                )
                .map_err(|m| SqlError::new(f.pos, m))?;
                udfs.defs.push(udf);
                functions.push(f);
            }
            Statement::Insert(name, pos, q, tvfs) => inserts.push((name, pos, q, tvfs)),
            Statement::Query(q, tvfs) if i == last => query = Some((q, tvfs)),
            Statement::Query(..) => {
                return Err(SqlError::new(
                    start,
                    "a SELECT that is not the script's last statement has nowhere to go: write it as INSERT INTO a table, or as a view",
                ));
            }
            Statement::Nothing => {}
        }
    }
    if inserts.is_empty() && query.is_none() {
        return Err(SqlError::new(
            None,
            "the script has no INSERT INTO and does not end in a SELECT: there is nothing to run",
        ));
    }
    let job = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sql".into());
    let listed: Vec<String> = functions
        .iter()
        .map(|f| format!("[{}, {}, {}]", yq(&f.name), yq(&f.module), yq(&f.function)))
        .collect();
    let listed: std::rc::Rc<str> = if listed.is_empty() {
        "".into()
    } else {
        format!("[{}]", listed.join(", ")).into()
    };
    let mut pl = Planner {
        udfs: &udfs,
        tables: &tables,
        views: &views,
        settings: &settings,
        ops: Yaml(String::new(), listed),
        sinks: Yaml::default(),
        sources: Vec::new(),
        planned_views: BTreeMap::new(),
        depth: 0,
        lineage: BTreeMap::new(),
        passed_rowtime: BTreeMap::new(),
    };
    let mut uses: BTreeMap<String, usize> = BTreeMap::new();
    for (name, pos, q, tvfs) in &inserts {
        let sink = tables
            .get(name)
            .ok_or_else(|| SqlError::new(*pos, format!("table `{name}` not found")))?;
        let connector = sink.options.get("connector").map(String::as_str);
        if !matches!(
            connector,
            Some("print" | "blackhole" | "filesystem" | "kafka")
        ) {
            return Err(SqlError::new(
                *pos,
                format!(
                    "table `{name}` cannot be written to: `sluice sql` writes 'print', 'blackhole', 'filesystem' and 'kafka' tables"
                ),
            ));
        }
        if connector == Some("kafka") {
            check_kafka_sink(sink)
                .map_err(|m| SqlError::new(*pos, format!("INSERT INTO `{name}`: {m}")))?;
        }
        let n = uses.entry(name.clone()).or_default();
        *n += 1;
        let suffix = if *n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        // The physical columns and a persisted `timestamp` metadata column
        // (the record's Kafka timestamp), in the table's order.
        let written = sink.written();
        let target: Vec<(String, Option<SqlType>)> =
            written.iter().map(|(n, t)| (n.clone(), Some(*t))).collect();
        let uid = format!("insert-{name}{suffix}");
        let no_ctes = BTreeMap::new();
        let at = At {
            tvfs,
            uid: &uid,
            target: Some(&target),
            ctes: &no_ctes,
        };
        let (mut out, _) = pl.query(q, at)?;
        if let Some(ts) = sink
            .columns
            .iter()
            .find(|c| c.metadata.is_some_and(|m| !m.is_virtual))
        {
            // The timestamp leaves the value and becomes the record's.
            let uid = format!("{uid}-timestamp");
            let items: Vec<(String, String)> = sink
                .physical()
                .into_iter()
                .map(|(n, _)| (n.clone(), format!("`{n}`")))
                .collect();
            pl.ops.sql_operator(SqlOp {
                uid: &uid,
                inputs: &[&out],
                table: &derived("insert", &written),
                filter: None,
                select: &items,
                groups: &[],
                qualifiers: &[],
                at_source: false,
            });
            pl.ops
                .line(3, &format!("timestamp: {}", yq(&format!("`{}`", ts.name))));
            out = uid;
        }
        pl.sink(&format!("sink-{name}{suffix}"), &out, sink);
    }
    let mut columns = Vec::new();
    if let Some((q, tvfs)) = &query {
        let sink = match output {
            Output::Stdout => "type: stdout".to_owned(),
            Output::File(p) => format!("type: file, path: {}", yq(&p.to_string_lossy())),
            Output::None => {
                return Err(SqlError::new(
                    None,
                    "the script ends in a SELECT, whose rows a submitted job has nowhere to put: write them with INSERT INTO a table (or run the script with `sluice sql`)",
                ));
            }
        };
        let no_ctes = BTreeMap::new();
        let at = At {
            tvfs,
            uid: "select",
            target: None,
            ctes: &no_ctes,
        };
        let (out, cols) = pl.query(q, at)?;
        pl.sinks.line(
            1,
            &format!("- {{ uid: \"result\", input: {}, {sink} }}", yq(&out)),
        );
        columns = cols;
    }
    let mut y = Yaml::default();
    y.line(0, &format!("name: {}", yq(&job)));
    y.line(
        0,
        &format!(
            "parallelism: {}",
            settings.parallelism.or(parallelism).unwrap_or(1)
        ),
    );
    match (&settings.checkpoint_dir, settings.checkpoint_interval_ms) {
        (Some(dir), interval) => y.line(
            0,
            &format!(
                "checkpoints: {{ dir: {}{} }}",
                yq(dir),
                interval.map_or(String::new(), |ms| format!(", interval: {ms}ms"))
            ),
        ),
        (None, Some(_)) => {
            return Err(SqlError::new(
                None,
                "SET 'execution.checkpointing.interval' needs SET 'execution.checkpointing.dir' (a folder for the checkpoints)",
            ));
        }
        (None, None) => {}
    }
    y.line(0, "sources:");
    for (name, et) in &pl.sources {
        y.source(&tables[name], et.as_ref());
    }
    y.line(0, "operators:");
    y.0.push_str(&pl.ops.0);
    y.line(0, "sinks:");
    y.0.push_str(&pl.sinks.0);
    Ok(Planned { spec: y.0, columns })
}

impl Settings {
    fn set(&mut self, k: &str, v: &str, at: Pos) -> Result<(), SqlError> {
        let duration = || {
            flink_duration(v).ok_or_else(|| {
                SqlError::new(
                    at,
                    format!("{k} must be a duration such as '200 ms' or '5 s', not '{v}'"),
                )
            })
        };
        match k {
            "parallelism.default" => {
                self.parallelism = Some(v.parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
                    SqlError::new(
                        at,
                        format!("parallelism.default must be a positive number, not '{v}'"),
                    )
                })?)
            }
            "table.local-time-zone" if v == "UTC" => {}
            "pipeline.auto-watermark-interval" => self.watermark_interval_ms = Some(duration()?),
            "table.exec.source.idle-timeout" => self.idle_timeout_ms = Some(duration()?),
            "execution.checkpointing.interval" => {
                self.checkpoint_interval_ms = Some(duration()?.max(1))
            }
            "execution.checkpointing.dir" | "state.checkpoints.dir" => {
                let dir = v.strip_prefix("file://").unwrap_or(v);
                if dir.is_empty() || dir.contains("://") {
                    return Err(SqlError::new(
                        at,
                        format!("{k} must be a local folder (file:///path or /path), not '{v}'"),
                    ));
                }
                self.checkpoint_dir = Some(dir.to_owned());
            }
            _ => {
                return Err(SqlError::new(
                    at,
                    format!("SET '{k}' is not supported by `sluice sql` yet"),
                ));
            }
        }
        Ok(())
    }
}

/// `CREATE VIEW name AS query`.
struct View {
    query: Box<ast::Query>,
    tvfs: Vec<WindowTvf>,
}

/// Rows a query reads: the node they come from and their columns.
#[derive(Clone)]
struct Relation {
    uid: String,
    /// The columns as the reading `sql` operator declares them.
    table: Table,
}

/// What a result column must be: its name, and the type to CAST to (an
/// INSERT's table column).
type Target = [(String, Option<SqlType>)];

/// Where a query being planned stands: the window TVFs of its statement,
/// the uid its last operator gets, what its result columns must be (an
/// INSERT's table, a UNION's left side), and the WITH queries in scope.
#[derive(Clone, Copy)]
struct At<'q> {
    tvfs: &'q [WindowTvf],
    uid: &'q str,
    target: Option<&'q Target>,
    ctes: &'q BTreeMap<String, Relation>,
}

impl<'q> At<'q> {
    /// A part of this query: another uid, no target.
    fn part(self, uid: &'q str) -> At<'q> {
        At {
            uid,
            target: None,
            ..self
        }
    }
}

/// Plans queries into the spec's operators and sinks.
struct Planner<'a> {
    tables: &'a BTreeMap<String, Table>,
    views: &'a BTreeMap<String, View>,
    settings: &'a Settings,
    ops: Yaml,
    sinks: Yaml,
    /// The tables read, in the order first read, and their event time
    /// (where a window reads them).
    sources: Vec<(String, Option<EventTime>)>,
    planned_views: BTreeMap<String, Relation>,
    /// How deep queries nest (views of views, subqueries).
    depth: usize,
    /// The tables whose rows each planned node carries (a window over a
    /// view takes its event time from them).
    lineage: BTreeMap<String, BTreeSet<String>>,
    /// The columns of each planned node that are its tables' time
    /// attribute as they read it, passed on unchanged (what a window over a
    /// view may use, as in Flink).
    passed_rowtime: BTreeMap<String, BTreeSet<String>>,
    /// The script's functions.
    udfs: &'a Udfs,
}

/// How deep queries may nest.
const MAX_NESTING: usize = 32;

/// A query's output as a table a further query reads.
fn derived(name: &str, cols: &[(String, SqlType)]) -> Table {
    Table {
        name: name.to_owned(),
        columns: cols
            .iter()
            .map(|(n, t)| Column {
                name: n.clone(),
                ty: *t,
                computed: None,
                metadata: None,
            })
            .collect(),
        watermark: None,
        options: BTreeMap::new(),
        pos: None,
    }
}

impl Planner<'_> {
    /// The sink of table `t` (an INSERT's), fed by `input`.
    fn sink(&mut self, uid: &str, input: &str, t: &Table) {
        let opt = |k: &str| t.options.get(k).map(String::as_str);
        let head = format!("- {{ uid: {}, input: {}, ", yq(uid), yq(input));
        let line = match opt("connector") {
            Some("print") => format!(
                "{head}type: stdout, changelog: true{} }}",
                opt("print-identifier").map_or(String::new(), |id| format!(
                    ", prefix: {}",
                    yq(&format!("{id}> "))
                ))
            ),
            Some("blackhole") => format!("{head}type: discard }}"),
            Some("kafka") => {
                let mut l = format!(
                    "{head}type: kafka, bootstrap: {}, topic: {}",
                    yq(opt("properties.bootstrap.servers").expect("checked")),
                    yq(opt("topic").expect("checked"))
                );
                match (opt("key.format"), opt("key.fields")) {
                    (Some("json"), Some(_)) => {
                        let fs: Vec<String> =
                            super::kafka_key_fields(t).iter().map(|f| yq(f)).collect();
                        l.push_str(&format!(", key_fields: [{}]", fs.join(", ")));
                    }
                    (_, Some(k)) => l.push_str(&format!(", key: {}", yq(&format!("/{k}")))),
                    _ => {}
                }
                if super::kafka_format(t) == "raw" {
                    let col = t.physical().into_iter().next().expect("checked").0;
                    l.push_str(&format!(", value: {}", yq(&format!("/{col}"))));
                }
                let delivery = match opt("sink.delivery-guarantee") {
                    Some("exactly-once") => "exactly-once",
                    _ => "at-least-once",
                };
                l.push_str(&format!(", delivery: {delivery}"));
                if let Some(p) = opt("sink.transactional-id-prefix") {
                    l.push_str(&format!(", transactional_id_prefix: {}", yq(p)));
                }
                if let Some(p) = kafka_properties(t, &["bootstrap.servers"]) {
                    l.push_str(&format!(", {p}"));
                }
                l.push_str(" }");
                l
            }
            _ => format!(
                "{head}type: file, path: {} }}",
                yq(&format!(
                    "{}/part-0.json",
                    opt("path").expect("checked").trim_end_matches('/')
                ))
            ),
        };
        self.sinks.line(1, &line);
    }

    /// Table `name`'s source reads event time as `et`; its watermarks wait
    /// with their batches only if every reader of the table allows it.
    fn event_time_of(&mut self, name: &str, mut et: EventTime) {
        if let Some(src) = self.sources.iter_mut().find(|(n, _)| n == name) {
            et.defer &= src.1.as_ref().is_none_or(|old| old.defer);
            src.1 = Some(et);
        }
    }

    /// The event time of a window TVF over a view or a WITH query: its
    /// DESCRIPTOR column must be a time attribute (a table's WATERMARK
    /// column, as the view passes it on), and the tables the view reads give
    /// their watermarks (each must have one Sluice can follow).
    fn view_event_time(
        &mut self,
        rel: &Relation,
        tvf: &WindowTvf,
        scope_cols: &[(String, SqlType)],
    ) -> Result<types::Ty, SqlError> {
        let (_, ty) = scope_cols
            .iter()
            .find(|(n, _)| *n == tvf.time_col)
            .ok_or_else(|| {
                SqlError::new(
                    tvf.pos,
                    format!(
                        "DESCRIPTOR({}): `{}` has no such column",
                        tvf.time_col, tvf.table
                    ),
                )
            })?;
        let passed = self
            .passed_rowtime
            .get(&rel.uid)
            .is_some_and(|p| p.contains(&tvf.time_col));
        if !ty.rowtime || !passed {
            return Err(SqlError::new(
                tvf.pos,
                format!(
                    "DESCRIPTOR({}) is not a time attribute of `{}` as it is read: a window over a view needs a table's WATERMARK column passed on unchanged (Flink refuses a computed one too)",
                    tvf.time_col, tvf.table
                ),
            ));
        }
        let tables = self.lineage.get(&rel.uid).cloned().unwrap_or_default();
        for name in &tables {
            let t = &self.tables[name];
            if t.watermark.is_none() {
                return Err(SqlError::new(
                    tvf.pos,
                    format!(
                        "`{}` reads table `{name}`, which has no WATERMARK",
                        tvf.table
                    ),
                ));
            }
            let et = table_event_time(t, &table_scope(t)?, self.settings)?;
            self.event_time_of(name, et);
        }
        Ok(ty.ty)
    }

    /// Node `uid` carries the rows of the tables its inputs carry.
    fn inherit(&mut self, uid: &str, inputs: &[&str]) {
        let tables: BTreeSet<String> = inputs
            .iter()
            .filter_map(|i| self.lineage.get(*i))
            .flatten()
            .cloned()
            .collect();
        self.lineage.insert(uid.to_owned(), tables);
    }

    /// The rows of the table, view or CTE `name`.
    fn relation(
        &mut self,
        name: &str,
        pos: Pos,
        ctes: &BTreeMap<String, Relation>,
    ) -> Result<Relation, SqlError> {
        if let Some(r) = ctes.get(name).or_else(|| self.planned_views.get(name)) {
            return Ok(r.clone());
        }
        if let Some(v) = self.views.get(name) {
            let uid = format!("view-{name}");
            let no_ctes = BTreeMap::new();
            let at = At {
                tvfs: &v.tvfs,
                uid: &uid,
                target: None,
                ctes: &no_ctes,
            };
            let (uid, cols) = self.query(&v.query, at)?;
            let r = Relation {
                uid,
                table: derived(name, &cols),
            };
            self.planned_views.insert(name.to_owned(), r.clone());
            return Ok(r);
        }
        let t = self
            .tables
            .get(name)
            .ok_or_else(|| SqlError::new(pos, format!("table `{name}` not found")))?;
        if !matches!(
            t.options.get("connector").map(String::as_str),
            Some("filesystem" | "datagen" | "kafka")
        ) {
            return Err(SqlError::new(
                pos,
                format!(
                    "table `{name}` cannot be read: `sluice sql` reads 'filesystem', 'kafka' and 'datagen' tables (its connector is '{}')",
                    t.options.get("connector").map_or("", String::as_str)
                ),
            ));
        }
        if t.options.get("connector").map(String::as_str) == Some("kafka") {
            super::check_kafka_source(t)?;
        }
        if !self.sources.iter().any(|(n, _)| n == name) {
            self.sources.push((name.to_owned(), None));
        }
        self.lineage
            .insert(source_uid(t), BTreeSet::from([name.to_owned()]));
        self.passed_rowtime.insert(
            source_uid(t),
            t.watermark.iter().map(|(c, _)| c.clone()).collect(),
        );
        Ok(Relation {
            uid: source_uid(t),
            table: t.clone(),
        })
    }

    /// Plans `q` as operators whose last has uid `uid` (or, for a UNION,
    /// feeds it); returns that node and the result columns.
    fn query(&mut self, q: &ast::Query, here: At<'_>) -> Result<(String, Columns), SqlError> {
        if self.depth >= MAX_NESTING {
            return Err(SqlError::new(
                at(q),
                format!("queries nest deeper than {MAX_NESTING} levels (views, subqueries)"),
            ));
        }
        self.depth += 1;
        let r = self.query_inner(q, here);
        self.depth -= 1;
        r
    }

    fn query_inner(&mut self, q: &ast::Query, here: At<'_>) -> Result<(String, Columns), SqlError> {
        let refuse = |node: &dyn Spanned, what: &str| {
            SqlError::new(
                at(node),
                format!("{what} is not supported by `sluice sql` yet"),
            )
        };
        if q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
            return Err(refuse(q, "ORDER BY, LIMIT or FETCH"));
        }
        let mut scope = here.ctes.clone();
        if let Some(w) = &q.with {
            if w.recursive {
                return Err(refuse(w, "WITH RECURSIVE"));
            }
            for cte in &w.cte_tables {
                let name = cte.alias.name.value.clone();
                if !cte.alias.columns.is_empty() {
                    return Err(refuse(cte, "a WITH column list"));
                }
                let part = format!("{}-{name}", here.uid);
                let (u, cols) = self.query(
                    &cte.query,
                    At {
                        ctes: &scope,
                        ..here.part(&part)
                    },
                )?;
                scope.insert(
                    name.clone(),
                    Relation {
                        uid: u,
                        table: derived(&name, &cols),
                    },
                );
            }
        }
        self.set_expr(
            &q.body,
            At {
                ctes: &scope,
                ..here
            },
        )
    }

    fn set_expr(
        &mut self,
        body: &ast::SetExpr,
        here: At<'_>,
    ) -> Result<(String, Columns), SqlError> {
        let uid = here.uid;
        match body {
            ast::SetExpr::Select(s) => self.select(s, here),
            ast::SetExpr::Query(q) => self.query(q, here),
            ast::SetExpr::SetOperation {
                op: ast::SetOperator::Union,
                set_quantifier: ast::SetQuantifier::All,
                left,
                right,
            } => {
                let (lu, ru) = (format!("{uid}-1"), format!("{uid}-2"));
                let (l, lcols) = self.set_expr(left, here.part(&lu))?;
                let names: Vec<(String, Option<SqlType>)> =
                    lcols.iter().map(|(n, _)| (n.clone(), None)).collect();
                let (r, rcols) = self.set_expr(
                    right,
                    At {
                        target: Some(&names),
                        ..here.part(&ru)
                    },
                )?;
                if lcols.len() != rcols.len() {
                    return Err(SqlError::new(
                        at(body),
                        format!(
                            "the sides of UNION ALL give {} and {} columns",
                            lcols.len(),
                            rcols.len()
                        ),
                    ));
                }
                let mut cols = Vec::new();
                for ((n, a), (_, b)) in lcols.iter().zip(&rcols) {
                    let ty = types::common(&[a.ty, b.ty]).ok_or_else(|| {
                        SqlError::new(
                            at(body),
                            format!(
                                "column `{n}` of UNION ALL is {a} on one side and {b} on the other"
                            ),
                        )
                    })?;
                    cols.push((n.clone(), SqlType::new(ty, a.nullable || b.nullable)));
                }
                // The union: both sides' rows, read as the common types.
                let table = derived("union", &cols);
                let scope = Scope {
                    udfs: Some(self.udfs),
                    ..Scope::new(&cols)
                };
                let star = [ast::SelectItem::Wildcard(
                    ast::WildcardAdditionalOptions::default(),
                )];
                let (out, items) = select_items(&star, &cols, &scope, here.target)?;
                self.inherit(uid, &[&l, &r]);
                self.ops.sql_operator(SqlOp {
                    uid,
                    inputs: &[&l, &r],
                    table: &table,
                    filter: None,
                    select: &items,
                    groups: &[],
                    qualifiers: &[],
                    at_source: false,
                });
                Ok((uid.to_owned(), out))
            }
            other => Err(SqlError::new(
                at(other),
                "this query (UNION without ALL, INTERSECT, EXCEPT, VALUES, …) is not supported by `sluice sql` yet",
            )),
        }
    }

    fn select(&mut self, s: &ast::Select, here: At<'_>) -> Result<(String, Columns), SqlError> {
        let (tvfs, uid, target, ctes) = (here.tvfs, here.uid, here.target, here.ctes);
        let select = select_parts(s, tvfs)?;
        let rel = match &select.from {
            From::Table(name, pos) => self.relation(name, *pos, ctes)?,
            From::Derived(q, alias) => {
                let part = format!("{uid}-{alias}");
                let (u, cols) = self.query(q, here.part(&part))?;
                Relation {
                    uid: u,
                    table: derived(alias, &cols),
                }
            }
            From::Window(i) => {
                let tvf = &tvfs[*i];
                let rel = self.relation(&tvf.table, tvf.pos, ctes)?;
                let scope_cols = table_scope(&rel.table)?;
                let ty = if rel.table.options.contains_key("connector") {
                    let mut et = event_time(&rel.table, tvf, &scope_cols, self.settings)?;
                    let ty = et.ty;
                    // Read by an aligned window alone, its watermarks may
                    // wait with their batches (see `Emit::PerEventDeferred`).
                    et.defer = !matches!(tvf.kind, TvfKind::Session { .. });
                    self.event_time_of(&tvf.table, et);
                    ty
                } else {
                    self.view_event_time(&rel, tvf, &scope_cols)?
                };
                let cols = plan_window(
                    &mut self.ops,
                    self.udfs,
                    uid,
                    &rel,
                    tvf,
                    &select,
                    &scope_cols,
                    ty,
                    target,
                )?;
                let window_input = format!("{uid}-window-input");
                let window = format!("{uid}-window");
                self.inherit(&window_input, &[&rel.uid]);
                self.inherit(&window, &[&window_input]);
                self.inherit(uid, &[&window]);
                return Ok((uid.to_owned(), cols));
            }
        };
        let scope_cols = table_scope(&rel.table)?;
        let qualifiers: Vec<String> = [Some(rel.table.name.clone()), select.alias.clone()]
            .into_iter()
            .flatten()
            .collect();
        let scope = Scope {
            qualifiers: &qualifiers,
            udfs: Some(self.udfs),
            ..Scope::new(&scope_cols)
        }
        .with_watermark();
        check_where(select.where_, &scope)?;
        if !select.group_by.is_empty() || select.having.is_some() {
            return Err(SqlError::new(
                select.pos,
                "GROUP BY outside a window TVF (a group aggregation, whose result is a changelog) is not supported by `sluice sql` yet",
            ));
        }
        let (out_cols, items) = select_items(select.items, &scope_cols, &scope, target)?;
        // CURRENT_WATERMARK over a table's rows: its source emits watermarks.
        let reads_wm = rel.table.watermark.is_some() && reads_watermark(&select, &scope)?;
        if reads_wm {
            let et = table_event_time(&rel.table, &scope_cols, self.settings)?;
            self.event_time_of(&rel.table.name, et);
        }
        self.inherit(uid, &[&rel.uid]);
        // A column that names the input's time attribute passes it on.
        let input_rowtime = self
            .passed_rowtime
            .get(&rel.uid)
            .cloned()
            .unwrap_or_default();
        let passed = items
            .iter()
            .filter(|(_, e)| {
                let col = e.rsplit('.').next().unwrap_or(e).trim_matches('`');
                input_rowtime.contains(col)
            })
            .map(|(n, _)| n.clone())
            .collect();
        self.passed_rowtime.insert(uid.to_owned(), passed);
        self.ops.sql_operator(SqlOp {
            uid,
            inputs: &[&rel.uid],
            table: &rel.table,
            filter: select.where_,
            select: &items,
            groups: &[],
            qualifiers: &qualifiers,
            at_source: rel.table.options.contains_key("connector") && reads_wm,
        });
        Ok((uid.to_owned(), out_cols))
    }
}

/// A WHERE must be a BOOLEAN over the row.
fn check_where(w: Option<&ast::Expr>, scope: &Scope<'_>) -> Result<(), SqlError> {
    if let Some(w) = w {
        let b = expr::bind(w, scope)?;
        if !matches!(b.ty.ty, types::Ty::Boolean | types::Ty::Null) {
            return Err(SqlError::new(
                at(w),
                format!("WHERE needs a BOOLEAN, found {}", b.ty),
            ));
        }
    }
    Ok(())
}

/// A string as a YAML scalar (JSON's quoting; `$` doubled, as specs
/// replace `${VAR}`).
fn yq(s: &str) -> String {
    serde_json::to_string(s)
        .expect("a string")
        .replace('$', "$$")
}

/// A `sql` operator to write: its node, the columns of the rows it reads
/// (a table's, or a window's), its WHERE (or HAVING), its SELECT as
/// `[name, expression]`, the group expressions of a window's rows, and the
/// names that qualify columns.
struct SqlOp<'a> {
    uid: &'a str,
    inputs: &'a [&'a str],
    table: &'a Table,
    filter: Option<&'a ast::Expr>,
    select: &'a [(String, String)],
    groups: &'a [(String, String)],
    qualifiers: &'a [String],
    /// It reads a table's source and depends on the order of its rows
    /// against its watermarks (it feeds a window, or reads
    /// `CURRENT_WATERMARK`): it runs right after the source, at its
    /// parallelism of 1 on a forward channel, as Flink runs what is chained
    /// to a table source up to the first shuffle (a record then reaches a
    /// window with the watermarks of the file's order, whatever the job's
    /// parallelism). A filter and
    /// projection that does not runs at the job's parallelism, its input
    /// spread over its subtasks: parsing each record's JSON, the most of
    /// its work, is shared.
    at_source: bool,
}

/// The spec being written, and the script's functions as a `sql`
/// operator lists them (`[[name, module, function], …]`, or nothing).
#[derive(Default)]
struct Yaml(String, std::rc::Rc<str>);

impl Yaml {
    fn line(&mut self, indent: usize, text: &str) {
        for _ in 0..indent {
            self.0.push_str("  ");
        }
        self.0.push_str(text);
        self.0.push('\n');
    }

    /// The table's source, with its event time when a window needs it.
    fn source(&mut self, t: &Table, event_time: Option<&EventTime>) {
        self.line(1, &format!("- uid: {}", yq(&source_uid(t))));
        // One reader, as Flink reads one file (a split it does not cut):
        // the watermark is that of the file's order.
        self.line(2, "parallelism: 1");
        let connector = t.options.get("connector").map(String::as_str);
        if connector == Some("datagen") {
            self.datagen(t);
        } else if connector == Some("kafka") {
            self.kafka_source(t);
        } else {
            self.line(2, "type: file");
            self.line(
                2,
                &format!("path: {}", yq(t.options.get("path").expect("checked"))),
            );
            // The `sql` operator reading the table checks each record whole.
            self.line(2, "format: json-unchecked");
        }
        if let Some(et) = event_time {
            self.line(2, "event_time:");
            // Without a pointer: the record's own timestamp (Kafka's).
            if let Some(p) = &et.pointer {
                self.line(3, &format!("timestamp: {}", yq(p)));
            }
            let emit = match et.interval_ms {
                None | Some(0) if et.defer => "emit: per_event_deferred".to_owned(),
                None | Some(0) => "emit: per_event".to_owned(),
                Some(ms) => format!("emit: periodic, interval: {ms}ms"),
            };
            self.line(
                3,
                &format!(
                    "watermark: {{ strategy: max_minus_delay, max_out_of_orderness: {}ms, {emit} }}",
                    et.delay_ms
                ),
            );
            if let Some(idle) = et.idleness_ms.filter(|ms| *ms > 0) {
                self.line(3, &format!("idleness: {idle}ms"));
            }
        }
    }

    /// A `kafka` table's source: Flink's options as the Kafka source's.
    fn kafka_source(&mut self, t: &Table) {
        let opt = |k: &str| t.options.get(k).map(String::as_str);
        self.line(2, "type: kafka");
        let bootstrap = opt("properties.bootstrap.servers").expect("checked");
        self.line(2, &format!("bootstrap: {}", yq(bootstrap)));
        match (opt("topic"), opt("topic-pattern")) {
            (Some(list), _) => {
                let topics: Vec<String> = list.split(';').map(|t| yq(t.trim())).collect();
                self.line(2, &format!("topics: [{}]", topics.join(", ")));
            }
            (None, Some(p)) => self.line(2, &format!("topic_pattern: {}", yq(p))),
            (None, None) => unreachable!("checked"),
        }
        let start = match opt("scan.startup.mode") {
            Some("earliest-offset") => "earliest",
            Some("latest-offset") => "latest",
            Some("timestamp") => "timestamp",
            _ => "group",
        };
        self.line(2, &format!("start: {start}"));
        if let Some(ms) = opt("scan.startup.timestamp-millis") {
            self.line(2, &format!("start_timestamp: {ms}"));
        }
        if let Some(g) = opt("properties.group.id") {
            self.line(2, &format!("group_id: {}", yq(g)));
        }
        if start == "group" {
            // Flink: where the group has no offset, `auto.offset.reset`
            // (none by default: the job fails).
            let fallback = match opt("properties.auto.offset.reset") {
                Some("earliest") => "earliest",
                Some("latest") => "latest",
                _ => "fail",
            };
            self.line(2, &format!("group_fallback: {fallback}"));
        }
        if opt("scan.bounded.mode") == Some("latest-offset") {
            self.line(2, "bounded: true");
        }
        if let Some(ms) =
            opt("scan.topic-partition-discovery.interval").and_then(super::planner::flink_duration)
        {
            self.line(2, &format!("discovery_interval: {ms}ms"));
        }
        self.line(
            2,
            match super::kafka_format(t) {
                "raw" => "format: raw",
                _ => "format: json-unchecked",
            },
        );
        if let Some(p) =
            kafka_properties(t, &["bootstrap.servers", "group.id", "auto.offset.reset"])
        {
            self.line(2, &p);
        }
    }

    /// A `datagen` table's generator: Flink's options as the `fields`
    /// schema's (at Flink's default of 10,000 rows per second).
    fn datagen(&mut self, t: &Table) {
        let opt = |k: &str| t.options.get(k).map(String::as_str);
        self.line(2, "type: datagen");
        self.line(2, "schema: fields");
        self.line(
            2,
            &format!("rate: {}", opt("rows-per-second").unwrap_or("10000")),
        );
        if let Some(n) = opt("number-of-rows") {
            self.line(2, &format!("count: {n}"));
        }
        self.line(2, "fields:");
        for (name, ty) in t.physical() {
            let (kind, scale) = super::datagen_type(ty.ty).expect("checked");
            let mut line = format!("- {{ name: {}, type: {kind}, scale: {scale}", yq(&name));
            for o in ["kind", "start", "end", "min", "max", "length"] {
                if let Some(v) = opt(&format!("fields.{name}.{o}")) {
                    line.push_str(&format!(", {o}: {v}"));
                }
            }
            line.push_str(" }");
            self.line(3, &line);
        }
    }

    /// A `sql` operator over `table`'s columns (or a window's rows).
    fn sql_operator(&mut self, op: SqlOp<'_>) {
        let SqlOp {
            uid,
            inputs,
            table: t,
            filter,
            select,
            groups,
            qualifiers,
            at_source,
        } = op;
        self.line(1, &format!("- uid: {}", yq(uid)));
        match inputs {
            [one] => self.line(2, &format!("input: {}", yq(one))),
            many => {
                let ins: Vec<String> = many.iter().map(|i| yq(i)).collect();
                self.line(2, &format!("inputs: [{}]", ins.join(", ")));
            }
        }
        if at_source {
            self.line(2, "parallelism: 1");
        }
        if t.options.contains_key("connector") {
            // Reading a table: not in the reader's thread, so that reading
            // and parsing run on two cores whatever the parallelism.
            self.line(2, "chain: false");
        }
        self.line(2, "sql:");
        self.line(3, &format!("table: {}", yq(&t.name)));
        self.line(3, "columns:");
        let (key_columns, key_meta) = super::kafka_key_columns(t);
        for c in &t.columns {
            let meta = match c.metadata {
                Some(m) => Some(m.meta),
                None if key_columns.contains(&c.name.as_str()) => Some(key_meta),
                None => None,
            };
            if let Some(m) = meta {
                self.line(
                    4,
                    &format!(
                        "- [{}, {}, null, {}]",
                        yq(&c.name),
                        yq(&c.ty.to_string()),
                        m.name()
                    ),
                );
                continue;
            }
            match &c.computed {
                None => self.line(
                    4,
                    &format!("- [{}, {}]", yq(&c.name), yq(&c.ty.to_string())),
                ),
                Some(e) => self.line(
                    4,
                    &format!("- [{}, null, {}]", yq(&c.name), yq(&e.to_string())),
                ),
            }
        }
        if let Some((col, _)) = &t.watermark {
            self.line(3, &format!("rowtime: {}", yq(col)));
        }
        if t.options.get("connector").map(String::as_str) == Some("kafka")
            && super::kafka_format(t) == "raw"
        {
            self.line(3, "format: raw");
        }
        if let Some(w) = filter {
            self.line(3, &format!("where: {}", yq(&w.to_string())));
        }
        self.line(3, "select:");
        for (name, e) in select {
            self.line(4, &format!("- [{}, {}]", yq(name), yq(e)));
        }
        if !qualifiers.is_empty() {
            let qs: Vec<String> = qualifiers.iter().map(|q| yq(q)).collect();
            self.line(3, &format!("qualifiers: [{}]", qs.join(", ")));
        }
        if !groups.is_empty() {
            self.line(3, "groups:");
            for (e, col) in groups {
                self.line(4, &format!("- [{}, {}]", yq(e), yq(col)));
            }
        }
        if !self.1.is_empty() {
            let functions = self.1.clone();
            self.line(3, &format!("functions: {functions}"));
        }
    }
}

/// The `properties.*` options of a Kafka table but `skip`, as a spec's
/// `properties: { … }` for librdkafka (`None` when there are none).
fn kafka_properties(t: &Table, skip: &[&str]) -> Option<String> {
    let props: Vec<String> = t
        .options
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("properties.")?, v)))
        .filter(|(k, _)| !skip.contains(k))
        .map(|(k, v)| format!("{}: {}", yq(k), yq(v)))
        .collect();
    (!props.is_empty()).then(|| format!("properties: {{ {} }}", props.join(", ")))
}

/// What `sluice sql` cannot write to a Kafka table yet.
fn check_kafka_sink(t: &Table) -> Result<(), String> {
    let opt = |k: &str| t.options.get(k).map(String::as_str);
    if opt("topic").is_none_or(|l| l.contains(';')) {
        return Err("a Kafka sink writes one 'topic' (not a list or a 'topic-pattern')".into());
    }
    if !super::kafka_key_columns(t).0.is_empty() {
        return Err(
            "'value.fields-include' = 'EXCEPT_KEY' is not supported for writing yet (the value carries every column)"
                .into(),
        );
    }
    if let Some(c) = t.columns.iter().find(|c| {
        c.metadata
            .is_some_and(|m| !m.is_virtual && m.meta != super::Meta::Timestamp)
    }) {
        return Err(format!(
            "column `{}`: METADATA '{}' is read-only (Kafka sinks write 'timestamp'; declare the column VIRTUAL)",
            c.name,
            c.metadata.expect("metadata").meta.name()
        ));
    }
    Ok(())
}

fn source_uid(t: &Table) -> String {
    format!("table-{}", t.name)
}

/// Named, typed columns.
type Columns = Vec<(String, SqlType)>;

/// The result columns and `[name, expression]` of SELECT items.
fn select_items(
    items: &[ast::SelectItem],
    scope_cols: &[(String, SqlType)],
    scope: &Scope<'_>,
    target: Option<&Target>,
) -> Result<(Columns, Vec<(String, String)>), SqlError> {
    let mut out_cols: Vec<(String, SqlType)> = Vec::new();
    let mut select_items: Vec<(String, String)> = Vec::new();
    let mut exprs: Vec<(String, ast::Expr)> = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let (name, e) = match item {
            ast::SelectItem::UnnamedExpr(e) => (
                match e {
                    ast::Expr::Identifier(id) => id.value.clone(),
                    ast::Expr::CompoundIdentifier(parts) if !parts.is_empty() => {
                        parts[parts.len() - 1].value.clone()
                    }
                    _ => format!("EXPR${n}"),
                },
                e,
            ),
            ast::SelectItem::ExprWithAlias { expr: e, alias } => (alias.value.clone(), e),
            ast::SelectItem::Wildcard(_) if scope.groups.is_empty() => {
                for (name, _) in scope_cols {
                    exprs.push((
                        name.clone(),
                        ast::Expr::Identifier(ast::Ident::with_quote('`', name.clone())),
                    ));
                }
                continue;
            }
            other => {
                return Err(SqlError::new(
                    at(other),
                    "this SELECT item is not supported yet",
                ));
            }
        };
        exprs.push((name, e.clone()));
    }
    if let Some(t) = target
        && t.len() != exprs.len()
    {
        let pos = items.first().and_then(|i| at(i));
        return Err(SqlError::new(
            pos,
            format!(
                "the query gives {} columns, where {} are written",
                exprs.len(),
                t.len()
            ),
        ));
    }
    for (i, (name, e)) in exprs.into_iter().enumerate() {
        let b: Bound = expr::bind(&e, scope)?;
        if b.ty.ty == types::Ty::Interval {
            return Err(SqlError::new(
                at(&e),
                "an INTERVAL result column is not supported by `sluice sql` yet",
            ));
        }
        let (name, ty, text) = match target.map(|t| &t[i]) {
            None => (name, b.ty, e.to_string()),
            Some((to, None)) => (to.clone(), b.ty, e.to_string()),
            Some((to, Some(want))) => {
                if b.ty.ty == want.ty {
                    (to.clone(), b.ty, e.to_string())
                } else if assignable(b.ty.ty, want.ty) {
                    let ty = SqlType::new(want.ty, b.ty.nullable);
                    let text = format!("CAST(({e}) AS {})", SqlType::new(want.ty, true));
                    (to.clone(), ty, text)
                } else {
                    return Err(SqlError::new(
                        at(&e),
                        format!("column `{to}` is {want}, and the query gives it {}", b.ty),
                    ));
                }
            }
        };
        out_cols.push((name.clone(), ty));
        select_items.push((name, text));
    }
    Ok((out_cols, select_items))
}

/// Whether a value of `from` may be written to a column of `to` (Flink's
/// implicit casts on INSERT: within numbers, strings, timestamps).
fn assignable(from: types::Ty, to: types::Ty) -> bool {
    from == types::Ty::Null
        || from.is_numeric() && to.is_numeric()
        || from.is_string() && to.is_string()
        || from.is_timestamp() && to.is_timestamp()
}

/// Where a table's event time comes from and how its watermark goes.
#[derive(Debug)]
struct EventTime {
    /// JSON pointer of the epoch-millisecond field; `None`: the record's
    /// own timestamp (Kafka's).
    pointer: Option<String>,
    /// The watermark is max(rowtime) - this.
    delay_ms: i64,
    interval_ms: Option<i64>,
    idleness_ms: Option<i64>,
    /// The rowtime column's type (TIMESTAMP(3) or TIMESTAMP_LTZ(3)).
    ty: types::Ty,
    /// Per-event watermarks may wait with their batches: only aligned
    /// windows read the table, straight from its source.
    defer: bool,
}

/// The event time of `t` as a window TVF over it reads it: the TVF's time
/// column must be the table's watermarked column.
fn event_time(
    t: &Table,
    tvf: &WindowTvf,
    scope_cols: &[(String, SqlType)],
    settings: &Settings,
) -> Result<EventTime, SqlError> {
    let Some((wcol, _)) = &t.watermark else {
        return Err(SqlError::new(
            tvf.pos,
            format!(
                "table `{}` has no WATERMARK: a window TVF needs an event-time column",
                t.name
            ),
        ));
    };
    if *wcol != tvf.time_col {
        return Err(SqlError::new(
            tvf.pos,
            format!(
                "DESCRIPTOR({}) is not the table's time attribute: `{}` has WATERMARK FOR {wcol}",
                tvf.time_col, t.name
            ),
        ));
    }
    table_event_time(t, scope_cols, settings)
}

/// The event time of `t`, which has a WATERMARK: its time attribute must be
/// computed as `TO_TIMESTAMP_LTZ(<integer column>, 3)` or be a Kafka table's
/// `timestamp` metadata, and its watermark `col` or `col - INTERVAL …`.
fn table_event_time(
    t: &Table,
    scope_cols: &[(String, SqlType)],
    settings: &Settings,
) -> Result<EventTime, SqlError> {
    let (wcol, wexpr) = t.watermark.as_ref().expect("a table with a WATERMARK");
    let col =
        t.columns.iter().find(|c| c.name == *wcol).ok_or_else(|| {
            SqlError::new(t.pos, format!("WATERMARK FOR {wcol}: no column `{wcol}`"))
        })?;
    let unsupported = || {
        SqlError::new(
            t.pos,
            format!(
                "the time attribute `{wcol}` of `{}` must be computed as TO_TIMESTAMP_LTZ(<BIGINT column>, 3), or be a Kafka table's METADATA FROM 'timestamp', for `sluice sql` (other rowtime columns are not supported yet)",
                t.name
            ),
        )
    };
    let reads_kafka_timestamp = t
        .columns
        .iter()
        .any(|c| c.metadata.is_some_and(|m| m.meta == super::Meta::Timestamp));
    let field = match &col.computed {
        // The source's timestamp carries the event time, so a value field
        // as the time attribute would hide the Kafka timestamp.
        Some(_) if reads_kafka_timestamp => {
            return Err(SqlError::new(
                t.pos,
                format!(
                    "table `{}` reads METADATA 'timestamp' and takes its time attribute `{wcol}` from the value: `sluice sql` does not have both yet (make the metadata column the time attribute)",
                    t.name
                ),
            ));
        }
        None if col
            .metadata
            .is_some_and(|m| m.meta == super::Meta::Timestamp) =>
        {
            None
        }
        Some(ast::Expr::Function(f))
            if f.name.to_string().eq_ignore_ascii_case("TO_TIMESTAMP_LTZ") =>
        {
            let ast::FunctionArguments::List(l) = &f.args else {
                return Err(unsupported());
            };
            match l.args.as_slice() {
                [
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Identifier(
                        id,
                    ))),
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(ast::Expr::Value(v))),
                ] if v.value == ast::Value::Number("3".into(), false) => Some(id.value.clone()),
                _ => return Err(unsupported()),
            }
        }
        _ => return Err(unsupported()),
    };
    let delay_ms = match wexpr {
        ast::Expr::Identifier(id) if id.value == *wcol => 0,
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Minus,
            right,
        } if matches!(left.as_ref(), ast::Expr::Identifier(id) if id.value == *wcol) => {
            match right.as_ref() {
                ast::Expr::Interval(i) => expr::interval_millis(right, i)?,
                _ => -1,
            }
        }
        _ => -1,
    };
    if delay_ms < 0 {
        return Err(SqlError::new(
            at(wexpr),
            format!(
                "WATERMARK FOR {wcol} AS `{wexpr}`: `sluice sql` reads `{wcol}` or `{wcol} - INTERVAL …` (a bounded delay)"
            ),
        ));
    }
    let ty = scope_cols
        .iter()
        .find(|(n, _)| n == wcol)
        .map(|(_, t)| t.ty)
        .unwrap_or(types::Ty::TimestampLtz);
    Ok(EventTime {
        pointer: field.map(|f| format!("/{}", f.replace('~', "~0").replace('/', "~1"))),
        delay_ms,
        interval_ms: settings.watermark_interval_ms,
        idleness_ms: settings.idle_timeout_ms,
        ty,
        defer: false,
    })
}

/// Whether the WHERE or a SELECT item of `select` calls `CURRENT_WATERMARK`.
fn reads_watermark(select: &SelectParts<'_>, scope: &Scope<'_>) -> Result<bool, SqlError> {
    let mut used = vec![false; scope.columns.len() + 1];
    let items = select.items.iter().filter_map(|i| match i {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    });
    for e in select.where_.into_iter().chain(items) {
        expr::bind(e, scope)?.columns(&mut used);
    }
    Ok(used[scope.columns.len()])
}

/// One aggregate call of a window aggregation.
struct AggCall<'a> {
    text: String,
    func: aggregate::AggFn,
    arg: Option<&'a ast::Expr>,
    result: SqlType,
    arg_ty: Option<SqlType>,
    distinct: bool,
    /// A Wasm aggregate function: its name and its arguments, as the
    /// window's input carries them (cast to the parameter types).
    wasm: Option<(String, Vec<String>)>,
}

/// A call of the script's Wasm aggregate function `udf` in a window
/// aggregation: its arguments checked against the signature.
fn wasm_aggregate_call<'a>(
    f: &ast::Function,
    fe: &ast::Expr,
    udf: &udf::Udf,
    udfs: &Udfs,
    scope: &Scope<'_>,
) -> Result<AggCall<'a>, SqlError> {
    let name = &udf.name;
    let ast::FunctionArguments::List(l) = &f.args else {
        return Err(SqlError::new(at(fe), format!("{name} needs arguments")));
    };
    if l.duplicate_treatment.is_some()
        || !l.clauses.is_empty()
        || f.over.is_some()
        || f.filter.is_some()
    {
        return Err(SqlError::new(
            at(fe),
            format!(
                "{name} with DISTINCT, FILTER, clauses or OVER is not supported by `sluice sql` yet"
            ),
        ));
    }
    let mut args = Vec::new();
    let mut bound = Vec::new();
    for a in &l.args {
        let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) = a else {
            return Err(SqlError::new(
                at(fe),
                format!("this argument of {name} is not supported"),
            ));
        };
        let mut inner = Vec::new();
        find_aggregates(x, udfs, &mut inner, 0);
        if !inner.is_empty() {
            return Err(SqlError::new(at(x), "an aggregate inside an aggregate"));
        }
        bound.push(expr::bind(x, scope)?);
        args.push(x);
    }
    expr::udf_args(fe, udf, bound.clone())?;
    // The window's input carries each argument as the parameter's type.
    let texts = args
        .iter()
        .zip(&bound)
        .zip(&udf.params)
        .map(|((x, b), p)| {
            if b.ty.ty == *p {
                x.to_string()
            } else {
                format!("CAST({x} AS {})", SqlType::new(*p, true))
            }
        })
        .collect();
    Ok(AggCall {
        text: f.to_string(),
        func: aggregate::AggFn::Count,
        arg: None,
        result: SqlType::new(udf.returns, true),
        arg_ty: None,
        distinct: false,
        wasm: Some((udf.name.clone(), texts)),
    })
}

/// The aggregate calls in `e` (not inside one another).
fn find_aggregates<'a>(
    e: &'a ast::Expr,
    udfs: &Udfs,
    out: &mut Vec<&'a ast::Function>,
    depth: usize,
) {
    use ast::Expr as E;
    if depth > expr::MAX_DEPTH {
        return;
    }
    let mut go = |x: &'a ast::Expr| find_aggregates(x, udfs, out, depth + 1);
    match e {
        E::Function(f) => {
            let name = f.name.to_string();
            let wasm_aggregate = || udfs.find(&name).is_some_and(|(_, u)| u.aggregate);
            if aggregate::AggFn::parse(&name).is_some() || wasm_aggregate() {
                out.push(f);
                return;
            }
            if let ast::FunctionArguments::List(l) = &f.args {
                for a in &l.args {
                    if let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) = a {
                        go(x);
                    }
                }
            }
        }
        E::Nested(x)
        | E::Extract { expr: x, .. }
        | E::Floor { expr: x, .. }
        | E::Ceil { expr: x, .. }
        | E::UnaryOp { expr: x, .. }
        | E::IsNull(x)
        | E::IsNotNull(x)
        | E::Cast { expr: x, .. }
        | E::Trim { expr: x, .. } => go(x),
        E::BinaryOp { left, right, .. } => {
            go(left);
            go(right);
        }
        E::Like { expr, pattern, .. } => {
            go(expr);
            go(pattern);
        }
        E::In {
            expr,
            target: ast::InTarget::List(list),
            ..
        } => {
            go(expr);
            list.iter().for_each(go);
        }
        E::Between {
            expr, low, high, ..
        } => {
            go(expr);
            go(low);
            go(high);
        }
        E::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(o) = operand {
                go(o);
            }
            for w in conditions {
                go(&w.condition);
                go(&w.result);
            }
            if let Some(x) = else_result {
                go(x);
            }
        }
        E::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            go(expr);
            if let Some(x) = substring_from {
                go(x);
            }
            if let Some(x) = substring_for {
                go(x);
            }
        }
        _ => {}
    }
}

/// A window TVF aggregation: the SQL operator that computes each row's
/// group keys and aggregate arguments, the window (its aggregator is
/// [`aggregate`]'s), and the SQL operator of the SELECT and HAVING over the
/// window's rows.
#[allow(clippy::too_many_arguments)]
fn plan_window(
    y: &mut Yaml,
    udfs: &Udfs,
    uid: &str,
    rel: &Relation,
    tvf: &WindowTvf,
    select: &SelectParts<'_>,
    scope_cols: &[(String, SqlType)],
    time_ty: types::Ty,
    target: Option<&Target>,
) -> Result<Vec<(String, SqlType)>, SqlError> {
    let t = &rel.table;
    let (input_uid, window_uid) = (format!("{uid}-window-input"), format!("{uid}-window"));
    let qualifiers: Vec<String> = [Some(tvf.table.clone()), select.alias.clone()]
        .into_iter()
        .flatten()
        .collect();
    let scope = Scope {
        qualifiers: &qualifiers,
        udfs: Some(udfs),
        ..Scope::new(scope_cols)
    }
    .with_watermark();
    // `window_start`, or qualified by the FROM's name (`w.window_start`).
    let is = |e: &ast::Expr, name: &str| match e {
        ast::Expr::Identifier(id) => id.value == name,
        ast::Expr::CompoundIdentifier(p) => {
            p.len() == 2 && p[1].value == name && qualifiers.contains(&p[0].value)
        }
        _ => false,
    };
    if !select.group_by.iter().any(|e| is(e, "window_start"))
        || !select.group_by.iter().any(|e| is(e, "window_end"))
    {
        return Err(SqlError::new(
            select.pos,
            "a window TVF needs GROUP BY window_start, window_end[, keys] (a window TVF without aggregation is not supported by `sluice sql` yet)",
        ));
    }
    let window_cols = ["window_start", "window_end", "window_time"];
    let keys: Vec<&ast::Expr> = select
        .group_by
        .iter()
        .copied()
        .filter(|e| !window_cols.iter().any(|w| is(e, w)))
        .collect();
    if let TvfKind::Session { .. } = tvf.kind {
        let mut names: Vec<String> = Vec::new();
        for k in &keys {
            match k {
                ast::Expr::Identifier(id) => names.push(id.value.clone()),
                _ => names.push(k.to_string()),
            }
        }
        let (mut a, mut b) = (names.clone(), tvf.partition.clone());
        a.sort();
        b.sort();
        if a != b {
            return Err(SqlError::new(
                tvf.pos,
                format!(
                    "SESSION: `sluice sql` needs the PARTITION BY columns ({}) to be the GROUP BY keys besides the window ({})",
                    tvf.partition.join(", "),
                    names.join(", ")
                ),
            ));
        }
    }
    let mut key_types = Vec::new();
    for k in &keys {
        let b = expr::bind(k, &scope)?;
        if b.ty.ty == types::Ty::Interval {
            return Err(SqlError::new(at(*k), "cannot group by an INTERVAL"));
        }
        key_types.push(SqlType {
            rowtime: false,
            ..b.ty
        });
    }
    // The aggregate calls of the SELECT and HAVING, each once.
    let mut found = Vec::new();
    for item in select.items {
        match item {
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                find_aggregates(e, udfs, &mut found, 0)
            }
            other => {
                return Err(SqlError::new(
                    at(other),
                    "this SELECT item is not supported in a window aggregation yet",
                ));
            }
        }
    }
    if let Some(h) = select.having {
        find_aggregates(h, udfs, &mut found, 0);
    }
    let mut calls: Vec<AggCall<'_>> = Vec::new();
    for f in found {
        let text = f.to_string();
        if calls.iter().any(|c| c.text == text) {
            continue;
        }
        let fe = ast::Expr::Function(f.clone());
        let name = f.name.to_string();
        if let Some((_, udf)) = udfs
            .find(&name)
            .filter(|_| aggregate::AggFn::parse(&name).is_none())
        {
            calls.push(wasm_aggregate_call(f, &fe, udf, udfs, &scope)?);
            continue;
        }
        let func = aggregate::AggFn::parse(&name).expect("found as one");
        let ast::FunctionArguments::List(l) = &f.args else {
            return Err(SqlError::new(at(&fe), format!("{name} needs an argument")));
        };
        if !l.clauses.is_empty() || f.over.is_some() || f.filter.is_some() {
            return Err(SqlError::new(
                at(&fe),
                format!("{name} with FILTER, clauses or OVER is not supported by `sluice sql` yet"),
            ));
        }
        let distinct = matches!(
            l.duplicate_treatment,
            Some(ast::DuplicateTreatment::Distinct)
        );
        let arg = match l.args.as_slice() {
            [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)]
                if func == aggregate::AggFn::Count =>
            {
                None
            }
            [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x))] => Some(x),
            _ => {
                return Err(SqlError::new(
                    at(&fe),
                    format!(
                        "{name} takes one argument{}",
                        if func == aggregate::AggFn::Count {
                            " or *"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        };
        let arg_ty = match arg {
            Some(x) => {
                let mut inner = Vec::new();
                find_aggregates(x, udfs, &mut inner, 0);
                if !inner.is_empty() {
                    return Err(SqlError::new(at(x), "an aggregate inside an aggregate"));
                }
                Some(expr::bind(x, &scope)?.ty)
            }
            None => None,
        };
        let result = func
            .result_type(arg_ty)
            .map_err(|m| SqlError::new(at(&fe), m))?;
        calls.push(AggCall {
            text,
            func,
            arg,
            result,
            arg_ty,
            distinct,
            wasm: None,
        });
    }
    // 1. Keys and arguments of each row.
    let mut pre: Vec<(String, String)> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        pre.push((format!("k${i}"), k.to_string()));
    }
    if keys.is_empty() {
        pre.push(("k$".into(), "TRUE".into()));
    }
    for (j, c) in calls.iter().enumerate() {
        if let Some((_, args)) = &c.wasm {
            for (n, a) in args.iter().enumerate() {
                pre.push((format!("a${j}${n}"), a.clone()));
            }
        } else if let Some(a) = c.arg {
            pre.push((format!("a${j}"), a.to_string()));
        }
    }
    check_where(select.where_, &scope)?;
    y.sql_operator(SqlOp {
        uid: &input_uid,
        inputs: &[&rel.uid],
        table: t,
        filter: select.where_,
        select: &pre,
        groups: &[],
        qualifiers: &qualifiers,
        at_source: true,
    });
    // 2. The window.
    y.line(1, &format!("- uid: {}", yq(&window_uid)));
    y.line(2, &format!("input: {}", yq(&input_uid)));
    if keys.len() == 1 || keys.is_empty() {
        y.line(
            2,
            &format!(
                "key_by: {}",
                yq(if keys.is_empty() { "/k$" } else { "/k$0" })
            ),
        );
    } else {
        let ps: Vec<String> = (0..keys.len()).map(|i| yq(&format!("/k${i}"))).collect();
        y.line(2, &format!("key_by: [{}]", ps.join(", ")));
    }
    y.line(
        2,
        &match tvf.kind {
            TvfKind::Tumble { size, offset } => {
                format!("window: {{ type: tumbling, size: {size}ms, offset: {offset}ms }}")
            }
            TvfKind::Hop {
                slide,
                size,
                offset,
            } => format!(
                "window: {{ type: sliding, size: {size}ms, slide: {slide}ms, offset: {offset}ms }}"
            ),
            TvfKind::Cumulate { step, size, offset } => format!(
                "window: {{ type: cumulate, size: {size}ms, step: {step}ms, offset: {offset}ms }}"
            ),
            TvfKind::Session { gap } => format!("window: {{ type: session, gap: {gap}ms }}"),
        },
    );
    y.line(2, "output: { key: \"key$\" }");
    y.line(2, "aggregate:");
    y.line(3, "sql:");
    let kt: Vec<String> = key_types.iter().map(|t| yq(&t.to_string())).collect();
    y.line(4, &format!("keys: [{}]", kt.join(", ")));
    if calls.iter().any(|c| c.wasm.is_some()) {
        let functions = y.1.clone();
        y.line(4, &format!("functions: {functions}"));
    }
    y.line(4, "calls:");
    for c in &calls {
        if let Some((name, _)) = &c.wasm {
            y.line(5, &format!("- [WASM, {}]", yq(name)));
            continue;
        }
        match c.arg_ty {
            None => y.line(5, &format!("- [{}]", c.func.name())),
            Some(t) => y.line(
                5,
                &format!(
                    "- [{}, {}{}]",
                    c.func.name(),
                    yq(&SqlType {
                        rowtime: false,
                        ..t
                    }
                    .to_string()),
                    if c.distinct { ", DISTINCT" } else { "" }
                ),
            ),
        }
    }
    // 3. The SELECT and HAVING over the window's rows.
    let ts = |ty: types::Ty| SqlType::new(ty, false);
    let mut columns = vec![
        Column {
            name: "window_start".into(),
            ty: ts(types::Ty::Timestamp),
            computed: None,
            metadata: None,
        },
        Column {
            name: "window_end".into(),
            ty: ts(types::Ty::Timestamp),
            computed: None,
            metadata: None,
        },
    ];
    // window_time is a column of the result only where it is grouped by.
    if select.group_by.iter().any(|e| is(e, "window_time")) {
        columns.push(Column {
            name: "window_time".into(),
            ty: ts(time_ty).as_rowtime(),
            computed: None,
            metadata: None,
        });
    }
    let mut groups = Vec::new();
    for (i, (k, ty)) in keys.iter().zip(&key_types).enumerate() {
        columns.push(Column {
            name: format!("k${i}"),
            ty: *ty,
            computed: None,
            metadata: None,
        });
        groups.push((k.to_string(), format!("k${i}")));
    }
    for (j, c) in calls.iter().enumerate() {
        columns.push(Column {
            name: format!("a${j}"),
            ty: c.result,
            computed: None,
            metadata: None,
        });
        groups.push((c.text.clone(), format!("a${j}")));
    }
    let window_table = Table {
        name: "window".into(),
        columns,
        watermark: None,
        options: BTreeMap::new(),
        pos: None,
    };
    let post_cols = window_table.physical();
    let group_idx: Vec<(String, usize)> = groups
        .iter()
        .map(|(e, c)| {
            (
                e.clone(),
                post_cols
                    .iter()
                    .position(|(n, _)| n == c)
                    .expect("a column"),
            )
        })
        .collect();
    let post_scope = Scope {
        qualifiers: &qualifiers,
        udfs: Some(udfs),
        ..Scope::grouped(&post_cols, &group_idx)
    }
    .with_watermark();
    if let Some(h) = select.having {
        let b = expr::bind(h, &post_scope)?;
        if !matches!(b.ty.ty, types::Ty::Boolean | types::Ty::Null) {
            return Err(SqlError::new(
                at(h),
                format!("HAVING needs a BOOLEAN, found {}", b.ty),
            ));
        }
    }
    let (out_cols, items) = select_items(select.items, &post_cols, &post_scope, target)?;
    y.sql_operator(SqlOp {
        uid,
        inputs: &[&window_uid],
        table: &window_table,
        filter: select.having,
        select: &items,
        groups: &groups,
        qualifiers: &qualifiers,
        at_source: false,
    });
    Ok(out_cols)
}

/// What a query reads.
enum From<'a> {
    Table(String, Pos),
    /// A subquery, and its alias.
    Derived(&'a ast::Query, String),
    /// The window TVF of this index.
    Window(usize),
}

/// The parts of `SELECT items FROM t [WHERE c] [GROUP BY …] [HAVING …]`.
struct SelectParts<'a> {
    from: From<'a>,
    where_: Option<&'a ast::Expr>,
    items: &'a [ast::SelectItem],
    group_by: Vec<&'a ast::Expr>,
    having: Option<&'a ast::Expr>,
    pos: Pos,
    /// `FROM x AS alias`.
    alias: Option<String>,
}

fn select_parts<'a>(s: &'a ast::Select, tvfs: &[WindowTvf]) -> Result<SelectParts<'a>, SqlError> {
    let refuse = |node: &dyn Spanned, what: &str| {
        SqlError::new(
            at(node),
            format!("{what} is not supported by `sluice sql` yet"),
        )
    };
    if s.distinct.is_some() {
        return Err(refuse(s, "SELECT DISTINCT"));
    }
    let group_by = match &s.group_by {
        ast::GroupByExpr::Expressions(e, m) if m.is_empty() => e.iter().collect(),
        _ => {
            return Err(refuse(s, "GROUP BY ALL, ROLLUP, CUBE or GROUPING SETS"));
        }
    };
    let [from] = s.from.as_slice() else {
        return Err(refuse(s, "a FROM of several tables"));
    };
    if !from.joins.is_empty() {
        return Err(refuse(&from.joins[0], "JOIN"));
    }
    let mut alias = None;
    let from = match &from.relation {
        ast::TableFactor::Table {
            name,
            args: None,
            alias: a,
            ..
        } => {
            alias = a.as_ref().map(|a| a.name.value.clone());
            let table = name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.clone())
                .unwrap_or_default();
            match (0..tvfs.len()).find(|i| tvf_name(*i) == table) {
                Some(i) => From::Window(i),
                None => From::Table(table, at(name)),
            }
        }
        ast::TableFactor::Derived {
            lateral: false,
            subquery,
            alias,
            ..
        } => From::Derived(
            subquery,
            alias
                .as_ref()
                .map_or_else(|| "subquery".to_owned(), |a| a.name.value.clone()),
        ),
        other => return Err(refuse(other, "this FROM (a table function, LATERAL, …)")),
    };
    Ok(SelectParts {
        from,
        where_: s.selection.as_ref(),
        items: &s.projection,
        group_by,
        having: s.having.as_ref(),
        pos: at(s),
        alias,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How the source of table `orders` emits watermarks in the plan of
    /// `queries` (after a CREATE TABLE orders with a WATERMARK).
    fn emit_of(queries: &str) -> String {
        let text = format!(
            "CREATE TABLE orders (customer_id STRING, event_ts BIGINT, \
             ts AS TO_TIMESTAMP_LTZ(event_ts, 3), WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
             WITH ('connector' = 'filesystem', 'path' = 'o.jsonl', 'format' = 'json');
             CREATE TABLE sink (a STRING, b TIMESTAMP(3)) WITH ('connector' = 'blackhole');
             {queries}"
        );
        let planned = plan(&text, Path::new("q.sql"), &Output::None, Some(1), &|_| {
            Ok(Vec::new())
        })
        .unwrap();
        let line = planned
            .spec
            .lines()
            .find(|l| l.contains("watermark:"))
            .expect("a watermark");
        line.split("emit: ")
            .nth(1)
            .unwrap()
            .trim_end_matches([' ', '}'])
            .to_owned()
    }

    #[test]
    fn watermarks_wait_with_their_batches_only_for_aligned_windows() {
        let tumble = "INSERT INTO sink SELECT customer_id, window_start FROM \
             TABLE(TUMBLE(TABLE orders, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
             GROUP BY window_start, window_end, customer_id;";
        let session = "INSERT INTO sink SELECT customer_id, window_start FROM \
             TABLE(SESSION(TABLE orders PARTITION BY customer_id, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
             GROUP BY window_start, window_end, customer_id;";
        let watermark = "INSERT INTO sink SELECT customer_id, CURRENT_WATERMARK(ts) FROM orders;";
        assert_eq!(emit_of(tumble), "per_event_deferred");
        assert_eq!(emit_of(session), "per_event");
        assert_eq!(emit_of(watermark), "per_event");
        // Whichever comes first, a reader that needs every watermark at
        // once keeps them per event.
        assert_eq!(emit_of(&format!("{tumble}\n{session}")), "per_event");
        assert_eq!(emit_of(&format!("{watermark}\n{tumble}")), "per_event");
        assert_eq!(emit_of(&format!("{tumble}\n{watermark}")), "per_event");
    }
}
