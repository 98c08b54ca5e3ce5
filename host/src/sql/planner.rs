//! Planning a parsed script: its queries become `sql` operators, windows
//! and sinks of a pipeline spec (YAML), which the ordinary planner plans.

use super::expr::{self, Bound, Scope};
use super::types::{self, SqlType};
use super::{
    Column, Pos, SqlError, Statement, Table, TvfKind, WindowTvf, aggregate, at, check_table,
    parse_statement, quote_ident, statements, table_scope, tvf_name,
};
use sqlparser::ast::{self, Spanned};
use sqlparser::tokenizer::Token;
use std::collections::BTreeMap;
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
}

/// A Flink duration option (`200 ms`, `5 s`, `1 min`, `0`) in milliseconds.
fn flink_duration(v: &str) -> Option<i64> {
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
/// `path`, into a pipeline spec.
pub fn plan(text: &str, path: &Path, output: &Output) -> Result<Planned, SqlError> {
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut settings = Settings::default();
    let mut query = None;
    let stmts = statements(text)?;
    let last = stmts.len().saturating_sub(1);
    for (i, tokens) in stmts.into_iter().enumerate() {
        let start = tokens
            .iter()
            .find(|t| !matches!(t.token, Token::Whitespace(_)))
            .map(|t| (t.span.start.line, t.span.start.column));
        match parse_statement(tokens)? {
            Statement::Set(k, v) => {
                let duration = || {
                    flink_duration(&v).ok_or_else(|| {
                        SqlError::new(
                            start,
                            format!("{k} must be a duration such as '200 ms' or '5 s', not '{v}'"),
                        )
                    })
                };
                match k.as_str() {
                    "parallelism.default" => {
                        settings.parallelism =
                            Some(v.parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
                                SqlError::new(
                                    start,
                                    format!(
                                        "parallelism.default must be a positive number, not '{v}'"
                                    ),
                                )
                            })?)
                    }
                    "table.local-time-zone" if v == "UTC" => {}
                    "pipeline.auto-watermark-interval" => {
                        settings.watermark_interval_ms = Some(duration()?)
                    }
                    "table.exec.source.idle-timeout" => {
                        settings.idle_timeout_ms = Some(duration()?)
                    }
                    _ => {
                        return Err(SqlError::new(
                            start,
                            format!("SET '{k}' is not supported by `sluice sql` yet"),
                        ));
                    }
                }
            }
            Statement::CreateTable(t) => {
                check_table(&t)?;
                if tables.contains_key(&t.name) {
                    return Err(SqlError::new(
                        t.pos,
                        format!("table `{}` already exists", t.name),
                    ));
                }
                tables.insert(t.name.clone(), *t);
            }
            Statement::Query(q, tvfs) if i == last => query = Some((q, tvfs)),
            Statement::Query(..) => {
                return Err(SqlError::new(
                    start,
                    "a SELECT must be the script's last statement (INSERT INTO is not supported yet)",
                ));
            }
        }
    }
    let (q, tvfs) = query
        .ok_or_else(|| SqlError::new(None, "the script has no query: it must end in a SELECT"))?;
    let select = select_parts(&q, &tvfs)?;
    let (table_name, table_pos) = match &select.from {
        From::Table(name, pos) => (name.clone(), *pos),
        From::Window(i) => (tvfs[*i].table.clone(), tvfs[*i].pos),
    };
    let t = tables
        .get(&table_name)
        .ok_or_else(|| SqlError::new(table_pos, format!("table `{table_name}` not found")))?;
    let scope_cols = table_scope(t)?;
    let scope = Scope::new(&scope_cols);
    if let Some(w) = select.where_ {
        let b = expr::bind(w, &scope)?;
        if !matches!(b.ty.ty, types::Ty::Boolean | types::Ty::Null) {
            return Err(SqlError::new(
                at(w),
                format!("WHERE needs a BOOLEAN, found {}", b.ty),
            ));
        }
    }
    let job = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sql".into());
    let mut y = Yaml::default();
    y.line(0, &format!("name: {}", yq(&job)));
    y.line(
        0,
        &format!("parallelism: {}", settings.parallelism.unwrap_or(1)),
    );
    let planned = match &select.from {
        From::Table(..) => {
            if !select.group_by.is_empty() || select.having.is_some() {
                return Err(SqlError::new(
                    select.pos,
                    "GROUP BY outside a window TVF (a group aggregation, whose result is a changelog) is not supported by `sluice sql` yet",
                ));
            }
            y.source(t, None);
            y.line(0, "operators:");
            let (out_cols, items) = select_items(select.items, &scope_cols, &scope)?;
            y.sql_operator("select", &source_uid(t), t, select.where_, &items, &[]);
            out_cols
        }
        From::Window(i) => {
            let tvf = &tvfs[*i];
            let et = event_time(t, tvf, &scope_cols, &settings)?;
            y.source(t, Some(&et));
            y.line(0, "operators:");
            plan_window(&mut y, t, tvf, &select, &scope_cols, &et)?
        }
    };
    y.line(0, "sinks:");
    match output {
        Output::Stdout => y.line(1, "- { uid: \"result\", input: \"select\", type: stdout }"),
        Output::File(p) => y.line(
            1,
            &format!(
                "- {{ uid: \"result\", input: \"select\", type: file, path: {} }}",
                yq(&p.to_string_lossy())
            ),
        ),
    }
    Ok(Planned {
        spec: y.0,
        columns: planned,
    })
}

/// A string as a YAML scalar (JSON's quoting; `$` doubled, as specs
/// replace `${VAR}`).
fn yq(s: &str) -> String {
    serde_json::to_string(s)
        .expect("a string")
        .replace('$', "$$")
}

/// The spec being written.
#[derive(Default)]
struct Yaml(String);

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
        self.line(0, "sources:");
        self.line(1, &format!("- uid: {}", yq(&source_uid(t))));
        self.line(2, "type: file");
        self.line(
            2,
            &format!("path: {}", yq(t.options.get("path").expect("checked"))),
        );
        if let Some(et) = event_time {
            self.line(2, "event_time:");
            self.line(3, &format!("timestamp: {}", yq(&et.pointer)));
            let emit = match et.interval_ms {
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

    /// A `sql` operator over `table`'s columns (or a window's rows).
    fn sql_operator(
        &mut self,
        uid: &str,
        input: &str,
        t: &Table,
        filter: Option<&ast::Expr>,
        select: &[(String, String)],
        groups: &[(String, String)],
    ) {
        self.line(1, &format!("- uid: {}", yq(uid)));
        self.line(2, &format!("input: {}", yq(input)));
        self.line(2, "sql:");
        self.line(3, &format!("table: {}", yq(&t.name)));
        self.line(3, "columns:");
        for c in &t.columns {
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
        if let Some(w) = filter {
            self.line(3, &format!("where: {}", yq(&w.to_string())));
        }
        self.line(3, "select:");
        for (name, e) in select {
            self.line(4, &format!("- [{}, {}]", yq(name), yq(e)));
        }
        if !groups.is_empty() {
            self.line(3, "groups:");
            for (e, col) in groups {
                self.line(4, &format!("- [{}, {}]", yq(e), yq(col)));
            }
        }
    }
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
) -> Result<(Columns, Vec<(String, String)>), SqlError> {
    let mut out_cols: Vec<(String, SqlType)> = Vec::new();
    let mut select_items: Vec<(String, String)> = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let (name, e) = match item {
            ast::SelectItem::UnnamedExpr(e) => (
                match e {
                    ast::Expr::Identifier(id) => id.value.clone(),
                    _ => format!("EXPR${n}"),
                },
                e,
            ),
            ast::SelectItem::ExprWithAlias { expr: e, alias } => (alias.value.clone(), e),
            ast::SelectItem::Wildcard(_) if scope.groups.is_empty() => {
                for (name, ty) in scope_cols {
                    out_cols.push((name.clone(), *ty));
                    select_items.push((name.clone(), quote_ident(name)));
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
        let b: Bound = expr::bind(e, scope)?;
        if b.ty.ty == types::Ty::Interval {
            return Err(SqlError::new(
                at(e),
                "an INTERVAL result column is not supported by `sluice sql` yet",
            ));
        }
        out_cols.push((name.clone(), b.ty));
        select_items.push((name, e.to_string()));
    }
    Ok((out_cols, select_items))
}

/// Where a table's event time comes from and how its watermark goes.
#[derive(Debug)]
struct EventTime {
    /// JSON pointer of the epoch-millisecond field.
    pointer: String,
    /// The watermark is max(rowtime) - this.
    delay_ms: i64,
    interval_ms: Option<i64>,
    idleness_ms: Option<i64>,
    /// The rowtime column's type (TIMESTAMP(3) or TIMESTAMP_LTZ(3)).
    ty: types::Ty,
}

/// The event time of `t` as a window TVF over it reads it: the TVF's time
/// column must be the table's watermarked column, computed as
/// `TO_TIMESTAMP_LTZ(<integer column>, 3)`, and its watermark `col` or
/// `col - INTERVAL …`.
fn event_time(
    t: &Table,
    tvf: &WindowTvf,
    scope_cols: &[(String, SqlType)],
    settings: &Settings,
) -> Result<EventTime, SqlError> {
    let Some((wcol, wexpr)) = &t.watermark else {
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
    let col =
        t.columns.iter().find(|c| c.name == *wcol).ok_or_else(|| {
            SqlError::new(t.pos, format!("WATERMARK FOR {wcol}: no column `{wcol}`"))
        })?;
    let unsupported = || {
        SqlError::new(
            t.pos,
            format!(
                "the time attribute `{wcol}` of `{}` must be computed as TO_TIMESTAMP_LTZ(<BIGINT column>, 3) for `sluice sql` (other rowtime columns are not supported yet)",
                t.name
            ),
        )
    };
    let field = match &col.computed {
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
                ] if v.value == ast::Value::Number("3".into(), false) => id.value.clone(),
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
        pointer: format!("/{}", field.replace('~', "~0").replace('/', "~1")),
        delay_ms,
        interval_ms: settings.watermark_interval_ms,
        idleness_ms: settings.idle_timeout_ms,
        ty,
    })
}

/// One aggregate call of a window aggregation.
struct AggCall<'a> {
    text: String,
    func: aggregate::AggFn,
    arg: Option<&'a ast::Expr>,
    result: SqlType,
    arg_ty: Option<SqlType>,
}

/// The aggregate calls in `e` (not inside one another).
fn find_aggregates<'a>(e: &'a ast::Expr, out: &mut Vec<&'a ast::Function>, depth: usize) {
    use ast::Expr as E;
    if depth > expr::MAX_DEPTH {
        return;
    }
    let mut go = |x: &'a ast::Expr| find_aggregates(x, out, depth + 1);
    match e {
        E::Function(f) => {
            if aggregate::AggFn::parse(&f.name.to_string()).is_some() {
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
fn plan_window(
    y: &mut Yaml,
    t: &Table,
    tvf: &WindowTvf,
    select: &SelectParts<'_>,
    scope_cols: &[(String, SqlType)],
    et: &EventTime,
) -> Result<Vec<(String, SqlType)>, SqlError> {
    let scope = Scope::new(scope_cols);
    let is = |e: &ast::Expr, name: &str| matches!(e, ast::Expr::Identifier(id) if id.value == name);
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
                find_aggregates(e, &mut found, 0)
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
        find_aggregates(h, &mut found, 0);
    }
    let mut calls: Vec<AggCall<'_>> = Vec::new();
    for f in found {
        let text = f.to_string();
        if calls.iter().any(|c| c.text == text) {
            continue;
        }
        let fe = ast::Expr::Function(f.clone());
        let name = f.name.to_string();
        let func = aggregate::AggFn::parse(&name).expect("found as one");
        let ast::FunctionArguments::List(l) = &f.args else {
            return Err(SqlError::new(at(&fe), format!("{name} needs an argument")));
        };
        if l.duplicate_treatment.is_some()
            || !l.clauses.is_empty()
            || f.over.is_some()
            || f.filter.is_some()
        {
            return Err(SqlError::new(
                at(&fe),
                format!(
                    "{name} with DISTINCT, FILTER, clauses or OVER is not supported by `sluice sql` yet"
                ),
            ));
        }
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
                find_aggregates(x, &mut inner, 0);
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
        if let Some(a) = c.arg {
            pre.push((format!("a${j}"), a.to_string()));
        }
    }
    y.sql_operator("window-input", &source_uid(t), t, select.where_, &pre, &[]);
    // 2. The window.
    y.line(1, "- uid: \"window\"");
    y.line(2, "input: \"window-input\"");
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
    y.line(4, "calls:");
    for c in &calls {
        match c.arg_ty {
            None => y.line(5, &format!("- [{}]", c.func.name())),
            Some(t) => y.line(
                5,
                &format!(
                    "- [{}, {}]",
                    c.func.name(),
                    yq(&SqlType {
                        rowtime: false,
                        ..t
                    }
                    .to_string())
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
        },
        Column {
            name: "window_end".into(),
            ty: ts(types::Ty::Timestamp),
            computed: None,
        },
    ];
    // window_time is a column of the result only where it is grouped by.
    if select.group_by.iter().any(|e| is(e, "window_time")) {
        columns.push(Column {
            name: "window_time".into(),
            ty: ts(et.ty).as_rowtime(),
            computed: None,
        });
    }
    let mut groups = Vec::new();
    for (i, (k, ty)) in keys.iter().zip(&key_types).enumerate() {
        columns.push(Column {
            name: format!("k${i}"),
            ty: *ty,
            computed: None,
        });
        groups.push((k.to_string(), format!("k${i}")));
    }
    for (j, c) in calls.iter().enumerate() {
        columns.push(Column {
            name: format!("a${j}"),
            ty: c.result,
            computed: None,
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
    let post_scope = Scope::grouped(&post_cols, &group_idx);
    if let Some(h) = select.having {
        let b = expr::bind(h, &post_scope)?;
        if !matches!(b.ty.ty, types::Ty::Boolean | types::Ty::Null) {
            return Err(SqlError::new(
                at(h),
                format!("HAVING needs a BOOLEAN, found {}", b.ty),
            ));
        }
    }
    let (out_cols, items) = select_items(select.items, &post_cols, &post_scope)?;
    y.sql_operator(
        "select",
        "window",
        &window_table,
        select.having,
        &items,
        &groups,
    );
    Ok(out_cols)
}

/// What a query reads.
enum From {
    Table(String, Pos),
    /// The window TVF of this index.
    Window(usize),
}

/// The parts of `SELECT items FROM t [WHERE c] [GROUP BY …] [HAVING …]`,
/// the one query shape of this part.
struct SelectParts<'a> {
    from: From,
    where_: Option<&'a ast::Expr>,
    items: &'a [ast::SelectItem],
    group_by: Vec<&'a ast::Expr>,
    having: Option<&'a ast::Expr>,
    pos: Pos,
}

fn select_parts<'a>(q: &'a ast::Query, tvfs: &[WindowTvf]) -> Result<SelectParts<'a>, SqlError> {
    let refuse = |node: &dyn Spanned, what: &str| {
        SqlError::new(
            at(node),
            format!("{what} is not supported by `sluice sql` yet"),
        )
    };
    if let Some(w) = &q.with {
        return Err(refuse(w, "WITH (a CTE)"));
    }
    if q.order_by.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
        return Err(refuse(q, "ORDER BY, LIMIT or FETCH"));
    }
    let ast::SetExpr::Select(s) = q.body.as_ref() else {
        return Err(refuse(q.body.as_ref(), "this query (UNION, VALUES, …)"));
    };
    if s.distinct.is_some() {
        return Err(refuse(s.as_ref(), "SELECT DISTINCT"));
    }
    let group_by = match &s.group_by {
        ast::GroupByExpr::Expressions(e, m) if m.is_empty() => e.iter().collect(),
        _ => {
            return Err(refuse(
                s.as_ref(),
                "GROUP BY ALL, ROLLUP, CUBE or GROUPING SETS",
            ));
        }
    };
    let [from] = s.from.as_slice() else {
        return Err(refuse(s.as_ref(), "a FROM of several tables"));
    };
    if !from.joins.is_empty() {
        return Err(refuse(&from.joins[0], "JOIN"));
    }
    let ast::TableFactor::Table {
        name, args: None, ..
    } = &from.relation
    else {
        return Err(refuse(
            &from.relation,
            "this FROM (a subquery or a table function)",
        ));
    };
    let table = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
        .unwrap_or_default();
    let from = match (0..tvfs.len()).find(|i| tvf_name(*i) == table) {
        Some(i) => From::Window(i),
        None => From::Table(table, at(name)),
    };
    Ok(SelectParts {
        from,
        where_: s.selection.as_ref(),
        items: &s.projection,
        group_by,
        having: s.having.as_ref(),
        pos: at(s.as_ref()),
    })
}
