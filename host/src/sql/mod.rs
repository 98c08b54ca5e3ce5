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

pub mod aggregate;
pub mod expr;
pub mod operator;
pub mod planner;

pub use planner::{Output, Planned, plan};
pub mod types;
pub mod udf;

use expr::Scope;
use sqlparser::ast::{self, Spanned};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use std::collections::BTreeMap;
use std::fmt;
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

/// A column of a table: physical (read from the record's value), computed,
/// or metadata (read from the record around the value).
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    /// `name AS expr`: its expression, as SQL text.
    pub computed: Option<ast::Expr>,
    /// `name type METADATA [FROM 'key'] [VIRTUAL]`.
    pub metadata: Option<Metadata>,
}

impl Column {
    /// A physical column.
    pub fn new(name: impl Into<String>, ty: SqlType) -> Column {
        Column {
            name: name.into(),
            ty,
            computed: None,
            metadata: None,
        }
    }
}

/// What a metadata column reads: Kafka's record metadata by Flink's keys,
/// and (inside sluice's plan only) a column read from the record's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meta {
    Timestamp,
    Partition,
    Offset,
    Topic,
    /// A `key.fields` column with `'value.fields-include' = 'EXCEPT_KEY'`:
    /// the record's key, as text (`'key.format' = 'raw'`).
    Key,
    /// The same with `'key.format' = 'json'`: the field of the column's
    /// name in the key's JSON object.
    KeyField,
}

impl Meta {
    /// The Kafka connector's readable metadata: the key, its type in Flink.
    pub const KAFKA: [(&'static str, Meta, types::Ty); 4] = [
        ("timestamp", Meta::Timestamp, types::Ty::TimestampLtz),
        ("partition", Meta::Partition, types::Ty::Int),
        ("offset", Meta::Offset, types::Ty::BigInt),
        ("topic", Meta::Topic, types::Ty::Varchar(types::STRING_LEN)),
    ];

    pub fn parse(key: &str) -> Option<Meta> {
        match key {
            "key" => return Some(Meta::Key),
            "key-field" => return Some(Meta::KeyField),
            _ => {}
        }
        Meta::KAFKA.iter().find(|m| m.0 == key).map(|m| m.1)
    }

    pub fn name(self) -> &'static str {
        match self {
            Meta::Key => "key",
            Meta::KeyField => "key-field",
            m => Meta::KAFKA.iter().find(|k| k.1 == m).expect("a key").0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    pub meta: Meta,
    /// `VIRTUAL`: read only (not a column an INSERT writes).
    pub is_virtual: bool,
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
    /// The columns an INSERT gives, in order: the physical ones and the
    /// metadata columns that are not VIRTUAL (written, as Flink's).
    pub fn written(&self) -> Vec<(String, SqlType)> {
        self.columns
            .iter()
            .filter(|c| c.computed.is_none() && c.metadata.is_none_or(|m| !m.is_virtual))
            .map(|c| (c.name.clone(), c.ty))
            .collect()
    }

    /// The columns read from the record's value, with their types, in order.
    pub fn physical(&self) -> Vec<(String, SqlType)> {
        self.columns
            .iter()
            .filter(|c| c.computed.is_none() && c.metadata.is_none())
            .map(|c| (c.name.clone(), c.ty))
            .collect()
    }
}

/// The statements of a script that `sluice sql` runs.
#[derive(Debug)]
enum Statement {
    Set(String, String),
    CreateTable(Box<Table>),
    /// A query, and the window TVFs it reads (`FROM` names each by its
    /// placeholder, [`tvf_name`]).
    Query(Box<ast::Query>, Vec<WindowTvf>),
    /// `INSERT INTO table query`.
    Insert(String, Pos, Box<ast::Query>, Vec<WindowTvf>),
    /// `CREATE [TEMPORARY] VIEW name AS query`.
    CreateView(String, Pos, Box<ast::Query>, Vec<WindowTvf>),
    /// `CREATE [TEMPORARY [SYSTEM]] FUNCTION name AS 'function' LANGUAGE
    /// WASM USING JAR 'module.wasm'`.
    CreateFunction(FunctionDef),
    /// `BEGIN STATEMENT SET` and `END`: several INSERTs are one job anyway.
    Nothing,
}

/// A `CREATE FUNCTION` of a script.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    pub name: String,
    pub pos: Pos,
    /// The function's name in its module (`AS '…'`).
    pub function: String,
    /// The module file (`USING JAR '…'`).
    pub module: String,
}

/// Flink's `CREATE FUNCTION`, past `CREATE`, for a Wasm module: `LANGUAGE
/// WASM` and one `USING JAR`.
fn create_function(p: &mut Parser<'_>) -> Result<FunctionDef, SqlError> {
    if p.parse_keyword(Keyword::TEMPORARY) {
        word(p, "SYSTEM");
    }
    p.expect_keyword(Keyword::FUNCTION).map_err(from_parser)?;
    let _ = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let (name, pos) = object_name(p).map_err(from_parser)?;
    p.expect_keyword(Keyword::AS).map_err(from_parser)?;
    let function = p.parse_literal_string().map_err(from_parser)?;
    let t = p.peek_token();
    // The end of the statement has no position: the name's, then.
    let here = Some((t.span.start.line, t.span.start.column))
        .filter(|(l, _)| *l > 0)
        .or(pos);
    if !word(p, "LANGUAGE") {
        return Err(SqlError::new(
            here,
            format!(
                "function `{name}`: `sluice sql` runs functions compiled to Wasm components: write LANGUAGE WASM USING JAR 'module.wasm'"
            ),
        ));
    }
    let t = p.peek_token();
    let lang_at = Some((t.span.start.line, t.span.start.column));
    if !word(p, "WASM") {
        return Err(SqlError::new(
            lang_at,
            format!(
                "function `{name}`: LANGUAGE {} is not supported by `sluice sql` (its functions are Wasm components: LANGUAGE WASM)",
                t.token
            ),
        ));
    }
    let t = p.peek_token();
    let using_at = Some((t.span.start.line, t.span.start.column));
    if !(p.parse_keyword(Keyword::USING) && word(p, "JAR")) {
        return Err(SqlError::new(
            using_at,
            format!("function `{name}`: say which module holds it: USING JAR 'module.wasm'"),
        ));
    }
    let module = p.parse_literal_string().map_err(from_parser)?;
    if p.peek_token().token == Token::Comma {
        return Err(SqlError::new(
            using_at,
            format!("function `{name}`: a Wasm function comes from one module (one JAR)"),
        ));
    }
    Ok(FunctionDef {
        name,
        pos,
        function,
        module,
    })
}

/// The tokens after the first `n` significant ones.
fn skip_words(tokens: Vec<TokenWithSpan>, n: usize) -> Vec<TokenWithSpan> {
    let mut seen = 0;
    tokens
        .into_iter()
        .skip_while(|t| {
            if seen == n {
                return false;
            }
            if !matches!(t.token, Token::Whitespace(_)) {
                seen += 1;
            }
            true
        })
        .collect()
}

/// A parser over `tokens` with the window TVFs taken out (see
/// [`extract_tvfs`]).
fn query_parser(tokens: Vec<TokenWithSpan>) -> Result<(Parser<'static>, Vec<WindowTvf>), SqlError> {
    let (tokens, tvfs) = extract_tvfs(tokens)?;
    Ok((
        Parser::new(&FlinkDialect)
            .with_recursion_limit(64)
            .with_tokens_with_locations(tokens),
        tvfs,
    ))
}

/// The last part of a (possibly qualified) name, with its position.
fn object_name(p: &mut Parser<'_>) -> Result<(String, Pos), ParserError> {
    let t = p.peek_token();
    let pos = Some((t.span.start.line, t.span.start.column));
    let name = p.parse_object_name(false)?;
    Ok((
        name.0
            .last()
            .and_then(|part| part.as_ident())
            .map(|i| i.value.clone())
            .unwrap_or_default(),
        pos,
    ))
}

/// A windowing table-valued function: `TUMBLE(TABLE t, DESCRIPTOR(ts),
/// size [, offset])`, `HOP(…, slide, size [, offset])`, `CUMULATE(…, step,
/// size [, offset])`, `SESSION(TABLE t [PARTITION BY keys], DESCRIPTOR(ts),
/// gap)`.
#[derive(Debug, Clone)]
pub struct WindowTvf {
    pub kind: TvfKind,
    pub table: String,
    pub time_col: String,
    /// SESSION's `PARTITION BY` columns.
    pub partition: Vec<String>,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TvfKind {
    Tumble { size: i64, offset: i64 },
    Hop { slide: i64, size: i64, offset: i64 },
    Cumulate { step: i64, size: i64, offset: i64 },
    Session { gap: i64 },
}

/// The identifier a window TVF's `TABLE(…)` is replaced by before the
/// query is parsed.
fn tvf_name(i: usize) -> String {
    format!("__window_tvf_{i}")
}

/// Finds `TABLE(TUMBLE|HOP|CUMULATE|SESSION(…))` in a query's tokens,
/// parses each, and replaces it with a placeholder table name.
fn extract_tvfs(
    mut tokens: Vec<TokenWithSpan>,
) -> Result<(Vec<TokenWithSpan>, Vec<WindowTvf>), SqlError> {
    let mut tvfs = Vec::new();
    let significant = |ts: &[TokenWithSpan], from: usize| {
        (from..ts.len()).find(|&j| !matches!(ts[j].token, Token::Whitespace(_)))
    };
    let mut i = 0;
    while i < tokens.len() {
        let is_table = matches!(&tokens[i].token, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::TABLE);
        let open = significant(&tokens, i + 1).filter(|&j| tokens[j].token == Token::LParen);
        let func = open.and_then(|j| significant(&tokens, j + 1)).filter(|&j| {
            matches!(&tokens[j].token, Token::Word(w) if w.quote_style.is_none()
                && ["TUMBLE", "HOP", "CUMULATE", "SESSION"].contains(&w.value.to_ascii_uppercase().as_str()))
        });
        let (true, Some(open), Some(func)) = (is_table, open, func) else {
            i += 1;
            continue;
        };
        let mut depth = 0usize;
        let mut close = None;
        for (j, t) in tokens.iter().enumerate().skip(open) {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(j);
                        break;
                    }
                }
                _ => {}
            }
        }
        let pos = Some((tokens[i].span.start.line, tokens[i].span.start.column));
        let close = close.ok_or_else(|| SqlError::new(pos, "`TABLE(` is not closed"))?;
        let name = match &tokens[func].token {
            Token::Word(w) => w.value.to_ascii_uppercase(),
            _ => unreachable!("matched a word"),
        };
        let inner: Vec<TokenWithSpan> = tokens[func + 1..close].to_vec();
        let tvf = parse_tvf(&name, inner, pos)?;
        let placeholder = TokenWithSpan {
            token: Token::make_word(&tvf_name(tvfs.len()), None),
            span: tokens[i].span,
        };
        tvfs.push(tvf);
        tokens.splice(i..=close, [placeholder]);
        i += 1;
    }
    Ok((tokens, tvfs))
}

/// The arguments of a window TVF, `( … )` included.
fn parse_tvf(name: &str, tokens: Vec<TokenWithSpan>, pos: Pos) -> Result<WindowTvf, SqlError> {
    let mut p = Parser::new(&FlinkDialect)
        .with_recursion_limit(64)
        .with_tokens_with_locations(tokens);
    let perr = from_parser;
    p.expect_token(&Token::LParen).map_err(perr)?;
    p.expect_keyword(Keyword::TABLE).map_err(perr)?;
    let table = p.parse_identifier().map_err(perr)?.value;
    let mut partition = Vec::new();
    if p.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
        if p.consume_token(&Token::LParen) {
            loop {
                partition.push(p.parse_identifier().map_err(perr)?.value);
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            p.expect_token(&Token::RParen).map_err(perr)?;
        } else {
            partition.push(p.parse_identifier().map_err(perr)?.value);
        }
        if name != "SESSION" {
            return Err(SqlError::new(pos, format!("{name} takes no PARTITION BY")));
        }
    }
    p.expect_token(&Token::Comma).map_err(perr)?;
    if !word(&mut p, "DESCRIPTOR") {
        return p
            .expected("DESCRIPTOR(time column)", p.peek_token())
            .map_err(perr);
    }
    p.expect_token(&Token::LParen).map_err(perr)?;
    let time_col = p.parse_identifier().map_err(perr)?.value;
    p.expect_token(&Token::RParen).map_err(perr)?;
    let mut intervals = Vec::new();
    while p.consume_token(&Token::Comma) {
        let e = p.parse_expr().map_err(perr)?;
        let ast::Expr::Interval(i) = &e else {
            return Err(SqlError::new(
                at(&e),
                format!("{name} takes INTERVAL literals here, not `{e}`"),
            ));
        };
        let ms = expr::interval_millis(&e, i)?;
        if ms < 0 {
            return Err(SqlError::new(at(&e), format!("{name}: `{e}` is negative")));
        }
        intervals.push(ms);
    }
    p.expect_token(&Token::RParen).map_err(perr)?;
    let arity = |lo: usize, hi: usize| {
        if (lo..=hi).contains(&intervals.len()) {
            Ok(())
        } else {
            Err(SqlError::new(
                pos,
                format!(
                    "{name} takes {} interval(s) after the time column, not {}",
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo} or {hi}")
                    },
                    intervals.len()
                ),
            ))
        }
    };
    let kind = match name {
        "TUMBLE" => {
            arity(1, 2)?;
            TvfKind::Tumble {
                size: intervals[0],
                offset: intervals.get(1).copied().unwrap_or(0),
            }
        }
        "HOP" => {
            arity(2, 3)?;
            TvfKind::Hop {
                slide: intervals[0],
                size: intervals[1],
                offset: intervals.get(2).copied().unwrap_or(0),
            }
        }
        "CUMULATE" => {
            arity(2, 3)?;
            TvfKind::Cumulate {
                step: intervals[0],
                size: intervals[1],
                offset: intervals.get(2).copied().unwrap_or(0),
            }
        }
        _ => {
            arity(1, 1)?;
            TvfKind::Session { gap: intervals[0] }
        }
    };
    let check = match kind {
        TvfKind::Tumble { size, offset } => {
            crate::time::windows::Aligned::tumbling(size, offset).map(|_| ())
        }
        TvfKind::Hop {
            slide,
            size,
            offset,
        } => crate::time::windows::Aligned::sliding(size, slide, offset).map(|_| ()),
        TvfKind::Cumulate { step, size, offset } => {
            crate::time::windows::Aligned::cumulate(size, step, offset).map(|_| ())
        }
        TvfKind::Session { gap } if gap <= 0 => Err("a session gap must be positive".into()),
        TvfKind::Session { .. } => Ok(()),
    };
    check.map_err(|m| SqlError::new(pos, format!("{name}: {m}")))?;
    Ok(WindowTvf {
        kind,
        table,
        time_col,
        partition,
        pos,
    })
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
    let words = first_words(&tokens, 4);
    let tokens = match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["EXECUTE", "STATEMENT", "SET", "BEGIN"] => skip_words(tokens, 4),
        ["BEGIN", "STATEMENT", "SET"] | ["END"] => return Ok(Statement::Nothing),
        _ => tokens,
    };
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
            let tvfs;
            (p, tvfs) = query_parser(p.into_tokens())?;
            Statement::Query(p.parse_query().map_err(from_parser)?, tvfs)
        }
        ["INSERT", ..] => {
            let tvfs;
            (p, tvfs) = query_parser(p.into_tokens())?;
            p.expect_keyword(Keyword::INSERT).map_err(from_parser)?;
            p.expect_keyword(Keyword::INTO).map_err(from_parser)?;
            let (name, pos) = object_name(&mut p).map_err(from_parser)?;
            if p.peek_token().token == Token::LParen
                && !matches!(p.peek_nth_token(1).token, Token::Word(ref w) if w.keyword == Keyword::SELECT)
            {
                return Err(SqlError::new(
                    pos,
                    "INSERT INTO with a column list is not supported by `sluice sql` yet (columns go by position)",
                ));
            }
            Statement::Insert(name, pos, p.parse_query().map_err(from_parser)?, tvfs)
        }
        ["CREATE", "FUNCTION", ..]
        | ["CREATE", "TEMPORARY", "FUNCTION"]
        | ["CREATE", "TEMPORARY", "SYSTEM"] => {
            p.expect_keyword(Keyword::CREATE).map_err(from_parser)?;
            Statement::CreateFunction(create_function(&mut p)?)
        }
        ["CREATE", "VIEW", ..] | ["CREATE", "TEMPORARY", "VIEW"] => {
            let tvfs;
            (p, tvfs) = query_parser(p.into_tokens())?;
            p.expect_keyword(Keyword::CREATE).map_err(from_parser)?;
            let _ = p.parse_keyword(Keyword::TEMPORARY);
            p.expect_keyword(Keyword::VIEW).map_err(from_parser)?;
            let _ = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let (name, pos) = object_name(&mut p).map_err(from_parser)?;
            if p.peek_token().token == Token::LParen {
                return Err(SqlError::new(
                    pos,
                    "CREATE VIEW with a column list is not supported by `sluice sql` yet (name the columns in its SELECT)",
                ));
            }
            p.expect_keyword(Keyword::AS).map_err(from_parser)?;
            Statement::CreateView(name, pos, p.parse_query().map_err(from_parser)?, tvfs)
        }
        _ => {
            let what = words.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
            return Err(SqlError::new(
                start,
                format!(
                    "`{what}` is not supported by `sluice sql` yet (it runs SET, CREATE TABLE, CREATE VIEW, CREATE FUNCTION, INSERT INTO and SELECT)"
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
                    computed: Some(e),
                    ..Column::new(name, SqlType::new(types::Ty::Null, true))
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
                let metadata = if p.parse_keyword(Keyword::METADATA) {
                    let from = p.parse_keyword(Keyword::FROM);
                    let at = p.peek_token();
                    let key = if from {
                        p.parse_literal_string()?
                    } else {
                        name.clone()
                    };
                    let meta = Meta::parse(&key).filter(|m| !matches!(m, Meta::Key | Meta::KeyField)).ok_or_else(|| {
                        ParserError::ParserError(format!(
                            "METADATA '{key}' is not supported by `sluice sql` yet (it reads the Kafka metadata 'timestamp', 'partition', 'offset' and 'topic') at Line: {}, Column: {}",
                            at.span.start.line, at.span.start.column
                        ))
                    })?;
                    Some(Metadata {
                        meta,
                        is_virtual: word(p, "VIRTUAL"),
                    })
                } else {
                    None
                };
                if p.parse_keyword(Keyword::COMMENT) {
                    p.parse_literal_string()?;
                }
                columns.push(Column {
                    metadata,
                    ..Column::new(name, SqlType::new(ty, !not_null))
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

/// The Kafka options `sluice sql` maps onto its Kafka source and sink, by
/// Flink's names; `properties.*` go to librdkafka as they are.
const KAFKA_OPTIONS: &[&str] = &[
    "connector",
    "topic",
    "topic-pattern",
    "format",
    "value.format",
    "key.format",
    "key.fields",
    "value.fields-include",
    "scan.startup.mode",
    "scan.startup.timestamp-millis",
    "scan.bounded.mode",
    "scan.topic-partition-discovery.interval",
    "sink.delivery-guarantee",
    "sink.transactional-id-prefix",
    "sink.partitioner",
];

/// A `kafka` table's value format: `json` or `raw`.
pub fn kafka_format(t: &Table) -> &str {
    t.options
        .get("value.format")
        .or_else(|| t.options.get("format"))
        .map_or("", String::as_str)
}

/// The `key.fields` columns of a `kafka` table (`;`-separated, as Flink
/// writes them).
pub fn kafka_key_fields(t: &Table) -> Vec<&str> {
    t.options
        .get("key.fields")
        .map_or_else(Vec::new, |k| k.split(';').map(str::trim).collect())
}

/// The `key.fields` columns of a `kafka` table when they are read from the
/// key (`'value.fields-include' = 'EXCEPT_KEY'`), and how: the key's text
/// (`raw`) or a field of its JSON object (`json`).
pub fn kafka_key_columns(t: &Table) -> (Vec<&str>, Meta) {
    let from_key = t.options.get("value.fields-include").map(String::as_str) == Some("EXCEPT_KEY");
    let meta = match t.options.get("key.format").map(String::as_str) {
        Some("json") => Meta::KeyField,
        _ => Meta::Key,
    };
    if from_key {
        (kafka_key_fields(t), meta)
    } else {
        (Vec::new(), meta)
    }
}

fn check_kafka(t: &Table) -> Result<(), SqlError> {
    let opt = |k: &str| t.options.get(k).map(String::as_str);
    let refuse = |m: String| Err(SqlError::new(t.pos, format!("table `{}`: {m}", t.name)));
    for k in t.options.keys() {
        if !KAFKA_OPTIONS.contains(&k.as_str()) && !k.starts_with("properties.") {
            return refuse(format!(
                "the Kafka option '{k}' is not supported by `sluice sql` yet"
            ));
        }
    }
    if opt("properties.bootstrap.servers").is_none() {
        return refuse("'properties.bootstrap.servers' is missing".into());
    }
    match (opt("topic"), opt("topic-pattern")) {
        (Some(_), Some(_)) => return refuse("'topic' and 'topic-pattern' are exclusive".into()),
        (None, None) => return refuse("'topic' (or 'topic-pattern') is missing".into()),
        (Some(list), None) if list.split(';').any(|t| t.trim().is_empty()) => {
            return refuse(format!("'topic' = '{list}' names an empty topic"));
        }
        _ => {}
    }
    if opt("format").is_some() && opt("value.format").is_some() {
        return refuse("'format' and 'value.format' are exclusive".into());
    }
    let physical: Vec<&Column> = t
        .columns
        .iter()
        .filter(|c| c.computed.is_none() && c.metadata.is_none())
        .collect();
    match kafka_format(t) {
        "json" => {}
        "raw" => {
            let key = kafka_key_columns(t).0;
            let value_cols = physical
                .iter()
                .filter(|c| !key.contains(&c.name.as_str()))
                .count();
            let string = physical
                .iter()
                .all(|c| matches!(c.ty.ty, types::Ty::Varchar(_) | types::Ty::Char(_)));
            if value_cols != 1 || !string {
                return refuse(
                    "the 'raw' format reads the whole value into one STRING column (besides a key column)"
                        .into(),
                );
            }
        }
        "" => return refuse("'format' (or 'value.format') is missing".into()),
        f => {
            return refuse(format!(
                "the format '{f}' is not supported by `sluice sql` yet (Kafka tables read and write 'json' and 'raw')"
            ));
        }
    }
    match (opt("key.format"), opt("key.fields")) {
        (None, None) => {}
        (Some("raw"), Some(k)) => {
            let col = physical.iter().find(|c| c.name == k);
            if !col.is_some_and(|c| matches!(c.ty.ty, types::Ty::Varchar(_) | types::Ty::Char(_))) {
                return refuse(format!(
                    "'key.fields' = '{k}': the 'raw' key format takes one physical STRING column"
                ));
            }
        }
        (Some("json"), Some(k)) => {
            for f in kafka_key_fields(t) {
                if !physical.iter().any(|c| c.name == f) {
                    return refuse(format!(
                        "'key.fields' = '{k}': `{f}` is not a physical column of the table"
                    ));
                }
            }
        }
        (Some("raw" | "json"), None) => {
            return refuse("'key.format' needs 'key.fields'".into());
        }
        (None, Some(_)) => return refuse("'key.fields' needs 'key.format'".into()),
        (Some(f), _) => {
            return refuse(format!(
                "the key format '{f}' is not supported by `sluice sql` yet (it has 'raw' and 'json')"
            ));
        }
    }
    let valid: &[(&str, &[&str])] = &[
        ("value.fields-include", &["ALL", "EXCEPT_KEY"]),
        (
            "scan.startup.mode",
            &[
                "earliest-offset",
                "latest-offset",
                "group-offsets",
                "timestamp",
            ],
        ),
        ("scan.bounded.mode", &["unbounded", "latest-offset"]),
        (
            "sink.delivery-guarantee",
            &["at-least-once", "none", "exactly-once"],
        ),
        ("sink.partitioner", &["default"]),
    ];
    for (k, values) in valid {
        if let Some(v) = opt(k)
            && !values.contains(&v)
        {
            return refuse(format!(
                "'{k}' = '{v}' is not supported by `sluice sql` (it takes {})",
                values
                    .iter()
                    .map(|v| format!("'{v}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    match (
        opt("scan.startup.mode"),
        opt("scan.startup.timestamp-millis"),
    ) {
        (Some("timestamp"), Some(ms)) if ms.parse::<i64>().is_ok() => {}
        (Some("timestamp"), _) => {
            return refuse(
                "'scan.startup.mode' = 'timestamp' needs 'scan.startup.timestamp-millis' (epoch milliseconds)"
                    .into(),
            );
        }
        (_, Some(_)) => {
            return refuse(
                "'scan.startup.timestamp-millis' goes with 'scan.startup.mode' = 'timestamp'"
                    .into(),
            );
        }
        _ => {}
    }
    if let Some(v) = opt("scan.topic-partition-discovery.interval")
        && planner::flink_duration(v).is_none()
    {
        return refuse(format!(
            "'scan.topic-partition-discovery.interval' must be a duration such as '30 s', not '{v}'"
        ));
    }
    if let Some(v) = opt("properties.auto.offset.reset")
        && !["earliest", "latest", "none"].contains(&v)
    {
        return refuse(format!(
            "'properties.auto.offset.reset' = '{v}' (it takes 'earliest', 'latest' or 'none')"
        ));
    }
    for c in &t.columns {
        let Some(m) = c.metadata else { continue };
        let fits = match m.meta {
            Meta::Timestamp => c.ty.ty.is_timestamp(),
            Meta::Partition => matches!(c.ty.ty, types::Ty::Int | types::Ty::BigInt),
            Meta::Offset => c.ty.ty == types::Ty::BigInt,
            Meta::Topic => matches!(c.ty.ty, types::Ty::Varchar(_) | types::Ty::Char(_)),
            Meta::Key | Meta::KeyField => false,
        };
        if !fits {
            let (_, _, ty) = Meta::KAFKA.iter().find(|k| k.1 == m.meta).expect("a key");
            return refuse(format!(
                "column `{}`: METADATA '{}' is {}, which {} cannot hold",
                c.name,
                m.meta.name(),
                SqlType::new(*ty, false),
                c.ty
            ));
        }
    }
    check_columns(t)
}

/// What a `kafka` table needs to be read (a table only written needs none
/// of it): Flink's default start, the group's offsets, needs a group.
pub fn check_kafka_source(t: &Table) -> Result<(), SqlError> {
    let opt = |k: &str| t.options.get(k).map(String::as_str);
    if matches!(opt("scan.startup.mode"), None | Some("group-offsets"))
        && opt("properties.group.id").is_none()
    {
        return Err(SqlError::new(
            t.pos,
            format!(
                "table `{}`: 'scan.startup.mode' is 'group-offsets' (Flink's default), which needs 'properties.group.id'; or set 'scan.startup.mode' = 'earliest-offset'",
                t.name
            ),
        ));
    }
    Ok(())
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
    // The watermarked column is the table's time attribute.
    if let Some((col, _)) = &t.watermark
        && let Some(c) = all.iter_mut().find(|(n, _)| n == col)
        && c.1.ty.is_timestamp()
    {
        c.1 = c.1.as_rowtime();
    }
    Ok(all)
}

fn check_table(t: &Table) -> Result<(), SqlError> {
    let opt = |k: &str| t.options.get(k).map(String::as_str);
    let refuse = |m: String| Err(SqlError::new(t.pos, format!("table `{}`: {m}", t.name)));
    if opt("connector") != Some("kafka")
        && let Some(c) = t.columns.iter().find(|c| c.metadata.is_some())
    {
        return refuse(format!(
            "column `{}`: METADATA columns are read from 'kafka' tables only",
            c.name
        ));
    }
    let allowed: &[&str] = match opt("connector") {
        Some("filesystem") => {
            if opt("path").is_none() {
                return refuse("'path' is missing".into());
            }
            match opt("format") {
                Some("json") => {}
                f => {
                    return refuse(format!(
                        "the format {} is not supported by `sluice sql` yet (it reads and writes 'json')",
                        f.map_or("(none)".to_owned(), |f| format!("'{f}'"))
                    ));
                }
            }
            &["connector", "path", "format"]
        }
        Some("print") => {
            if opt("standard-error") == Some("true") {
                return refuse(
                    "'standard-error' = 'true' is not supported by `sluice sql` yet".into(),
                );
            }
            &["connector", "print-identifier", "standard-error"]
        }
        Some("blackhole") => &["connector"],
        Some("datagen") => {
            for k in t.options.keys() {
                let ok = match k.strip_prefix("fields.") {
                    None => {
                        ["connector", "rows-per-second", "number-of-rows"].contains(&k.as_str())
                    }
                    Some(rest) => {
                        let (col, opt) = rest.rsplit_once('.').unwrap_or((rest, ""));
                        if !t
                            .columns
                            .iter()
                            .any(|c| c.name == col && c.computed.is_none())
                        {
                            return refuse(format!("'{k}': there is no physical column `{col}`"));
                        }
                        ["kind", "start", "end", "min", "max", "length"].contains(&opt)
                    }
                };
                if !ok {
                    return refuse(format!(
                        "the option '{k}' is not supported by `sluice sql` yet"
                    ));
                }
                // Values go into the spec as they are: numbers, or a kind.
                let v = &t.options[k];
                let valid = match k.rsplit('.').next().unwrap_or("") {
                    "connector" => true,
                    "kind" => v == "random" || v == "sequence",
                    "number-of-rows" | "length" => v.parse::<u64>().is_ok(),
                    "start" | "end" => v.parse::<i64>().is_ok(),
                    _ => v.parse::<f64>().is_ok_and(|f| f.is_finite()),
                };
                if !valid {
                    return refuse(format!("'{k}' = '{v}' is not a valid value"));
                }
            }
            for c in t.columns.iter().filter(|c| c.computed.is_none()) {
                if datagen_type(c.ty.ty).is_none() {
                    return refuse(format!(
                        "column `{}`: datagen generates INT, BIGINT, DOUBLE, DECIMAL, STRING and BOOLEAN columns, not {}",
                        c.name, c.ty
                    ));
                }
            }
            return check_columns(t);
        }
        Some("kafka") => return check_kafka(t),
        Some(other) => {
            return refuse(format!(
                "the connector '{other}' is not supported by `sluice sql` yet (it has 'filesystem', 'kafka', 'datagen', 'print' and 'blackhole')"
            ));
        }
        None => return refuse("there is no 'connector' option".into()),
    };
    for k in t.options.keys() {
        if !allowed.contains(&k.as_str()) {
            return refuse(format!(
                "the option '{k}' is not supported by `sluice sql` yet"
            ));
        }
    }
    check_columns(t)
}

/// The datagen field type of a column type, and its scale.
pub fn datagen_type(ty: types::Ty) -> Option<(&'static str, u8)> {
    use types::Ty;
    Some(match ty {
        Ty::Int => ("int", 0),
        Ty::BigInt => ("bigint", 0),
        Ty::Double => ("double", 0),
        Ty::Decimal(_, s) if s <= 18 => ("decimal", s),
        Ty::Char(_) | Ty::Varchar(_) => ("string", 0),
        Ty::Boolean => ("boolean", 0),
        _ => return None,
    })
}

/// No column twice.
fn check_columns(t: &Table) -> Result<(), SqlError> {
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
