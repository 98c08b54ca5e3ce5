//! `sluice sql`: Flink SQL scripts planned onto sluice's dataflow.
//!
//! The script is tokenized and parsed with `sqlparser` and a Flink dialect
//! of ours ([`FlinkDialect`]); `CREATE TABLE` (Flink's column list, with
//! computed columns, `WATERMARK FOR` and the `WITH` options) is parsed here
//! from the parser's tokens. The binder types every expression as Flink does
//! ([`types`]), and the script becomes a pipeline spec — sources, the
//! native `sql` operator that evaluates projections and filters
//! ([`operator`]), sinks — that the ordinary planner plans and runs. Errors
//! name the file, line and column, and the feature that is not supported.
//!
//! What this part covers (the rest is refused, named): `SET`,
//! `CREATE [TEMPORARY] TABLE` on the `filesystem` connector with the `json`
//! format, and a script ending in a `SELECT … FROM table [WHERE …]` of
//! expressions: arithmetic, comparisons, `AND`/`OR`/`NOT`, `CASE`, `CAST`,
//! `LIKE`, `IN`, `BETWEEN`, `IS [NOT] NULL`, `COALESCE`, `MOD`, `UPPER`,
//! `LOWER`, `CHAR_LENGTH`, `CONCAT`/`||`, `SUBSTRING`, `TRIM`.

pub mod expr;
pub mod operator;
pub mod types;

use expr::{Bound, Scope};
use sqlparser::ast::{self, Spanned};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use types::SqlType;

/// Flink SQL's lexical rules: backquoted identifiers, `''` inside strings.
#[derive(Debug, Default)]
pub struct FlinkDialect;

impl Dialect for FlinkDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '$'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }
}

/// Where in the script: 1-based line and column.
pub type Pos = Option<(u64, u64)>;

/// A script error at a position.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlError {
    pub pos: Pos,
    pub message: String,
}

impl SqlError {
    pub fn new(pos: Pos, message: impl Into<String>) -> SqlError {
        SqlError {
            pos,
            message: message.into(),
        }
    }
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some((l, c)) => write!(f, "line {l}, column {c}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// The position of a node of the AST.
pub fn at(node: &dyn Spanned) -> Pos {
    let s = node.span();
    (s.start.line > 0).then_some((s.start.line, s.start.column))
}

fn from_parser(e: ParserError) -> SqlError {
    let text = e.to_string();
    // sqlparser writes "… at Line: 3, Column: 7".
    let pos = text.rfind("at Line: ").and_then(|i| {
        let rest = &text[i + 9..];
        let (l, c) = rest.split_once(", Column: ")?;
        Some((l.trim().parse().ok()?, c.trim().parse().ok()?))
    });
    let message = text
        .trim_start_matches("sql parser error: ")
        .split(" at Line: ")
        .next()
        .unwrap_or(&text)
        .to_owned();
    SqlError::new(pos, message)
}

/// A column of a table: physical (read from the record) or computed.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    /// `name AS expr`: its expression, as SQL text.
    pub computed: Option<ast::Expr>,
}

/// A `CREATE TABLE`.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// `WATERMARK FOR column AS expr`.
    pub watermark: Option<(String, ast::Expr)>,
    pub options: BTreeMap<String, String>,
    pub pos: Pos,
}

impl Table {
    /// The columns read from the record, with their types, in order.
    pub fn physical(&self) -> Vec<(String, SqlType)> {
        self.columns
            .iter()
            .filter(|c| c.computed.is_none())
            .map(|c| (c.name.clone(), c.ty))
            .collect()
    }
}

/// The statements of a script that `sluice sql` runs.
#[derive(Debug)]
enum Statement {
    Set(String, String),
    CreateTable(Box<Table>),
    Query(Box<ast::Query>),
}

/// The most tokens a script may have (whitespace included): its syntax
/// tree is dropped recursively, so its depth must stay bounded.
const MAX_TOKENS: usize = 20_000;

/// Splits the script's tokens into statements at top-level `;`.
fn statements(text: &str) -> Result<Vec<Vec<TokenWithSpan>>, SqlError> {
    let tokens = Tokenizer::new(&FlinkDialect, text)
        .tokenize_with_location()
        .map_err(|e| {
            SqlError::new(
                Some((e.location.line, e.location.column)),
                e.message.clone(),
            )
        })?;
    if tokens.len() > MAX_TOKENS {
        return Err(SqlError::new(
            None,
            format!("the script has over {MAX_TOKENS} tokens"),
        ));
    }
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for t in tokens {
        if t.token == Token::SemiColon {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(t);
        }
    }
    out.push(cur);
    Ok(out
        .into_iter()
        .filter(|s| {
            s.iter()
                .any(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        })
        .collect())
}

fn first_words(tokens: &[TokenWithSpan], n: usize) -> Vec<String> {
    tokens
        .iter()
        .filter_map(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            Token::Whitespace(_) => None,
            _ => Some(String::new()),
        })
        .take(n)
        .collect()
}

fn parse_statement(tokens: Vec<TokenWithSpan>) -> Result<Statement, SqlError> {
    let words = first_words(&tokens, 3);
    let start = tokens
        .iter()
        .find(|t| !matches!(t.token, Token::Whitespace(_)))
        .map(|t| (t.span.start.line, t.span.start.column));
    let mut p = Parser::new(&FlinkDialect)
        .with_recursion_limit(64)
        .with_tokens_with_locations(tokens);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let stmt = match w.as_slice() {
        ["CREATE", "TABLE", ..] | ["CREATE", "TEMPORARY", "TABLE"] => {
            Statement::CreateTable(Box::new(create_table(&mut p).map_err(from_parser)?))
        }
        ["SET", ..] => {
            p.expect_keyword(Keyword::SET).map_err(from_parser)?;
            let k = p.parse_literal_string().map_err(from_parser)?;
            p.expect_token(&Token::Eq).map_err(from_parser)?;
            let v = p.parse_literal_string().map_err(from_parser)?;
            Statement::Set(k, v)
        }
        ["SELECT", ..] | ["WITH", ..] | ["", ..] => {
            Statement::Query(p.parse_query().map_err(from_parser)?)
        }
        _ => {
            let what = words.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
            return Err(SqlError::new(
                start,
                format!(
                    "`{what}` is not supported by `sluice sql` yet (it runs SET, CREATE TABLE and a final SELECT)"
                ),
            ));
        }
    };
    if p.peek_token().token != Token::EOF {
        let t = p.peek_token();
        return Err(SqlError::new(
            Some((t.span.start.line, t.span.start.column)),
            format!("expected the end of the statement, found {}", t.token),
        ));
    }
    Ok(stmt)
}

/// Takes the next token if it is the (unreserved) word `w`.
fn word(p: &mut Parser<'_>, w: &str) -> bool {
    match &p.peek_token().token {
        Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w) => {
            p.next_token();
            true
        }
        _ => false,
    }
}

/// Flink's `CREATE TABLE name (columns, computed columns, WATERMARK) WITH (…)`.
fn create_table(p: &mut Parser<'_>) -> Result<Table, ParserError> {
    let pos = {
        let t = p.peek_token();
        Some((t.span.start.line, t.span.start.column))
    };
    p.expect_keyword(Keyword::CREATE)?;
    let _ = p.parse_keyword(Keyword::TEMPORARY);
    p.expect_keyword(Keyword::TABLE)?;
    let _ = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false)?;
    let name = name
        .0
        .last()
        .and_then(|part| part.as_ident())
        .map(|i| i.value.clone())
        .unwrap_or_default();
    p.expect_token(&Token::LParen)?;
    let mut columns = Vec::new();
    let mut watermark = None;
    loop {
        if word(p, "WATERMARK") {
            p.expect_keyword(Keyword::FOR)?;
            let col = p.parse_identifier()?.value;
            p.expect_keyword(Keyword::AS)?;
            watermark = Some((col, p.parse_expr()?));
        } else if p.peek_keyword(Keyword::PRIMARY) || p.peek_keyword(Keyword::CONSTRAINT) {
            return p.expected(
                "a column (PRIMARY KEY constraints are not supported yet)",
                p.peek_token(),
            );
        } else {
            let name = p.parse_identifier()?.value;
            if p.parse_keyword(Keyword::AS) {
                let e = p.parse_expr()?;
                columns.push(Column {
                    name,
                    ty: SqlType::new(types::Ty::Null, true),
                    computed: Some(e),
                });
            } else {
                let t = p.parse_data_type()?;
                let here = p.peek_token().span.start;
                let ty = expr::data_type_of(Some((here.line, here.column)), &t)
                    .map_err(|e| ParserError::ParserError(e.to_string()))?;
                let not_null = p.parse_keywords(&[Keyword::NOT, Keyword::NULL]);
                if !not_null {
                    let _ = p.parse_keyword(Keyword::NULL);
                }
                if p.peek_keyword(Keyword::METADATA) {
                    return p.expected(
                        "a column (METADATA columns are not supported yet)",
                        p.peek_token(),
                    );
                }
                if p.parse_keyword(Keyword::COMMENT) {
                    p.parse_literal_string()?;
                }
                columns.push(Column {
                    name,
                    ty: SqlType::new(ty, !not_null),
                    computed: None,
                });
            }
        }
        if !p.consume_token(&Token::Comma) {
            p.expect_token(&Token::RParen)?;
            break;
        }
    }
    if p.parse_keyword(Keyword::COMMENT) {
        p.parse_literal_string()?;
    }
    let mut options = BTreeMap::new();
    p.expect_keyword(Keyword::WITH)?;
    p.expect_token(&Token::LParen)?;
    loop {
        let k = p.parse_literal_string()?;
        p.expect_token(&Token::Eq)?;
        let v = p.parse_literal_string()?;
        options.insert(k, v);
        if !p.consume_token(&Token::Comma) {
            p.expect_token(&Token::RParen)?;
            break;
        }
    }
    Ok(Table {
        name,
        columns,
        watermark,
        options,
        pos,
    })
}

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

/// Plans the script `text` (its `${VAR}`s already replaced), read from
/// `path`, into a pipeline spec.
pub fn plan(text: &str, path: &Path, output: &Output) -> Result<Planned, SqlError> {
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    let mut parallelism: Option<u32> = None;
    let mut query = None;
    let stmts = statements(text)?;
    let last = stmts.len().saturating_sub(1);
    for (i, tokens) in stmts.into_iter().enumerate() {
        let start = tokens
            .iter()
            .find(|t| !matches!(t.token, Token::Whitespace(_)))
            .map(|t| (t.span.start.line, t.span.start.column));
        match parse_statement(tokens)? {
            Statement::Set(k, v) => match k.as_str() {
                "parallelism.default" => {
                    parallelism = Some(v.parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
                        SqlError::new(
                            start,
                            format!("parallelism.default must be a positive number, not '{v}'"),
                        )
                    })?)
                }
                "table.local-time-zone" if v == "UTC" => {}
                "pipeline.auto-watermark-interval" => {}
                _ => {
                    return Err(SqlError::new(
                        start,
                        format!("SET '{k}' is not supported by `sluice sql` yet"),
                    ));
                }
            },
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
            Statement::Query(q) if i == last => query = Some(q),
            Statement::Query(_) => {
                return Err(SqlError::new(
                    start,
                    "a SELECT must be the script's last statement (INSERT INTO is not supported yet)",
                ));
            }
        }
    }
    let q = query
        .ok_or_else(|| SqlError::new(None, "the script has no query: it must end in a SELECT"))?;
    let select = simple_select(&q)?;
    let (table, where_, items) = select;
    let t = tables
        .get(&table.0)
        .ok_or_else(|| SqlError::new(table.1, format!("table `{}` not found", table.0)))?;
    let scope_cols = table_scope(t)?;
    let scope = Scope::new(&scope_cols);
    if let Some(w) = where_ {
        let b = expr::bind(w, &scope)?;
        if !matches!(b.ty.ty, types::Ty::Boolean | types::Ty::Null) {
            return Err(SqlError::new(
                at(w),
                format!("WHERE needs a BOOLEAN, found {}", b.ty),
            ));
        }
    }
    let mut out_cols: Vec<(String, SqlType)> = Vec::new();
    let mut select_items: Vec<(String, String)> = Vec::new();
    for (n, item) in items.iter().enumerate() {
        match item {
            ast::SelectItem::UnnamedExpr(e) => {
                let b: Bound = expr::bind(e, &scope)?;
                let name = match e {
                    ast::Expr::Identifier(id) => id.value.clone(),
                    _ => format!("EXPR${n}"),
                };
                out_cols.push((name.clone(), b.ty));
                select_items.push((name, e.to_string()));
            }
            ast::SelectItem::ExprWithAlias { expr: e, alias } => {
                let b = expr::bind(e, &scope)?;
                out_cols.push((alias.value.clone(), b.ty));
                select_items.push((alias.value.clone(), e.to_string()));
            }
            ast::SelectItem::Wildcard(_) => {
                for (name, ty) in &scope_cols {
                    out_cols.push((name.clone(), *ty));
                    select_items.push((name.clone(), quote_ident(name)));
                }
            }
            other => {
                return Err(SqlError::new(
                    at(other),
                    "this SELECT item is not supported yet",
                ));
            }
        }
    }
    let path_opt = t.options.get("path").expect("checked");
    let job = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sql".into());
    let mut spec = String::new();
    let q = |s: &str| {
        serde_json::to_string(s)
            .expect("a string")
            .replace('$', "$$")
    };
    spec.push_str(&format!("name: {}\n", q(&job)));
    spec.push_str(&format!("parallelism: {}\n", parallelism.unwrap_or(1)));
    spec.push_str("sources:\n");
    spec.push_str(&format!(
        "  - uid: {}\n    type: file\n    path: {}\n",
        q(&format!("table-{}", t.name)),
        q(path_opt)
    ));
    spec.push_str("operators:\n");
    spec.push_str(&format!(
        "  - uid: \"select\"\n    input: {}\n    sql:\n      table: {}\n      columns:\n",
        q(&format!("table-{}", t.name)),
        q(&t.name)
    ));
    for c in &t.columns {
        match &c.computed {
            None => spec.push_str(&format!(
                "        - [{}, {}]\n",
                q(&c.name),
                q(&c.ty.to_string())
            )),
            Some(e) => spec.push_str(&format!(
                "        - [{}, null, {}]\n",
                q(&c.name),
                q(&e.to_string())
            )),
        }
    }
    if let Some(w) = where_ {
        spec.push_str(&format!("      where: {}\n", q(&w.to_string())));
    }
    spec.push_str("      select:\n");
    for (name, e) in &select_items {
        spec.push_str(&format!("        - [{}, {}]\n", q(name), q(e)));
    }
    spec.push_str("sinks:\n");
    match output {
        Output::Stdout => {
            spec.push_str("  - { uid: \"result\", input: \"select\", type: stdout }\n")
        }
        Output::File(p) => spec.push_str(&format!(
            "  - {{ uid: \"result\", input: \"select\", type: file, path: {} }}\n",
            q(&p.to_string_lossy())
        )),
    }
    Ok(Planned {
        spec,
        columns: out_cols,
    })
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The table's columns as a query sees them: physical ones with their
/// types, computed ones typed by their expression over the physical ones.
pub fn table_scope(t: &Table) -> Result<Vec<(String, SqlType)>, SqlError> {
    let physical = t.physical();
    let mut all = Vec::new();
    for c in &t.columns {
        match &c.computed {
            None => all.push((c.name.clone(), c.ty)),
            Some(e) => {
                let b = expr::bind(e, &Scope::new(&physical))?;
                all.push((c.name.clone(), b.ty));
            }
        }
    }
    Ok(all)
}

fn check_table(t: &Table) -> Result<(), SqlError> {
    let opt = |k: &str| t.options.get(k).map(String::as_str);
    match opt("connector") {
        Some("filesystem") => {}
        Some(other) => {
            return Err(SqlError::new(
                t.pos,
                format!(
                    "table `{}`: the connector '{other}' is not supported by `sluice sql` yet (it reads 'filesystem')",
                    t.name
                ),
            ));
        }
        None => {
            return Err(SqlError::new(
                t.pos,
                format!("table `{}` has no 'connector' option", t.name),
            ));
        }
    }
    if opt("path").is_none() {
        return Err(SqlError::new(
            t.pos,
            format!("table `{}`: 'path' is missing", t.name),
        ));
    }
    match opt("format") {
        Some("json") => {}
        f => {
            return Err(SqlError::new(
                t.pos,
                format!(
                    "table `{}`: the format {} is not supported by `sluice sql` yet (it reads 'json')",
                    t.name,
                    f.map_or("(none)".to_owned(), |f| format!("'{f}'"))
                ),
            ));
        }
    }
    for k in t.options.keys() {
        if !["connector", "path", "format"].contains(&k.as_str()) {
            return Err(SqlError::new(
                t.pos,
                format!(
                    "table `{}`: the option '{k}' is not supported by `sluice sql` yet",
                    t.name
                ),
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for c in &t.columns {
        if !seen.insert(&c.name) {
            return Err(SqlError::new(
                t.pos,
                format!("table `{}`: column `{}` twice", t.name, c.name),
            ));
        }
    }
    Ok(())
}

type SimpleSelect<'a> = ((String, Pos), Option<&'a ast::Expr>, &'a [ast::SelectItem]);

/// `SELECT items FROM table [WHERE cond]`, the one query shape of this part.
fn simple_select(q: &ast::Query) -> Result<SimpleSelect<'_>, SqlError> {
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
    if !matches!(&s.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
        || s.having.is_some()
    {
        return Err(refuse(s.as_ref(), "GROUP BY (aggregation)"));
    }
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
    Ok(((table, at(name)), s.selection.as_ref(), &s.projection))
}
