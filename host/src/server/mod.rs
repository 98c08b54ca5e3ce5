//! The control plane: a REST API (JSON, under `/v1`, described by the
//! OpenAPI document at `/v1/openapi.json`), Prometheus metrics at
//! `/metrics`, and the web dashboard at `/`.
//!
//! `sluice serve` runs it with a module store and any number of jobs;
//! `sluice run` runs it beside its one job (module and job submission then
//! answer 405). It listens on loopback unless told otherwise. A browser on
//! the same machine reaches loopback too, so every request passes the
//! [`guard`] first (its `Host`, `Origin` and content type), and `sluice
//! serve` makes up a token unless given one or `--no-token`: every request
//! but the dashboard's static page must then carry it as
//! `Authorization: Bearer <token>`.

pub mod guard;
pub mod jobs;
pub mod metrics;
pub mod store;

use crate::checkpoint::CheckpointStats;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jobs::{Job, Jobs, Status};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use store::{ModuleStore, StoreError};

/// Default largest module upload.
pub const DEFAULT_MAX_MODULE_SIZE: u64 = 64 << 20;

pub struct AppState {
    pub jobs: Arc<Jobs>,
    /// Uploaded modules; `None` for `sluice run`.
    pub store: Option<Arc<ModuleStore>>,
    pub token: Option<String>,
    /// The names the `Host` header may carry.
    pub hosts: guard::Hosts,
    pub max_module_size: u64,
    /// Where relative paths of submitted specs start.
    pub base_dir: PathBuf,
    /// The folders submitted jobs may read and write (`sluice serve`);
    /// `None`: anywhere (`sluice run`'s own job).
    pub allowed_dirs: Option<crate::plan::confine::AllowedDirs>,
}

impl AppState {
    /// Checks a folder a request names (a savepoint's), as a spec's paths
    /// are checked.
    fn confine(&self, what: &str, dir: &std::path::Path) -> Result<(), ApiError> {
        match &self.allowed_dirs {
            Some(a) => a
                .check(dir, &self.base_dir)
                .map_err(|m| ApiError(StatusCode::FORBIDDEN, format!("{what}: {m}"))),
            None => Ok(()),
        }
    }
}

/// An error answer: a status and a message saying what is wrong.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match &e {
            StoreError::BadName(_) => StatusCode::BAD_REQUEST,
            StoreError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::InUse(_) => StatusCode::CONFLICT,
            StoreError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(status: StatusCode, body: Value) -> ApiResult {
    Ok((status, axum::Json(body)).into_response())
}

/// The API, metrics and dashboard.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/v1", get(about))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(prometheus))
        .route("/v1/modules", get(list_modules))
        .route(
            "/v1/modules/{name}",
            get(inspect_module).put(upload_module).delete(delete_module),
        )
        .route("/v1/jobs", get(list_jobs).post(submit_job))
        .route("/v1/jobs/{id}", get(inspect_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/savepoints", post(savepoint_job))
        .route("/v1/jobs/{id}/stop", post(stop_job))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

/// Binds `addr` (resolving a host name), refusing an address that is not
/// loopback unless a token is set.
pub async fn bind(addr: &str, token: Option<&str>) -> Result<tokio::net::TcpListener, String> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve `{addr}`: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("`{addr}` resolves to no address"));
    }
    if token.is_none_or(str::is_empty) && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(format!(
            "`{addr}` is not a loopback address: listening there needs a token, which clients then send (`sluice serve` makes one up unless told --no-token)"
        ));
    }
    tokio::net::TcpListener::bind(&addrs[..])
        .await
        .map_err(|e| format!("cannot listen on `{addr}`: {e}"))
}

/// Serves until the listener fails; samples job rates every second.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>) -> std::io::Result<()> {
    serve_until(listener, state, std::future::pending()).await
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let jobs = state.jobs.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            jobs.sample();
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn auth(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err((status, message)) = guard::check(req.method(), req.headers(), &state.hosts) {
        tracing::warn!(
            method = %req.method(),
            path = req.uri().path(),
            "{message}"
        );
        return ApiError(status, message).into_response();
    }
    let Some(token) = state.token.as_deref().filter(|t| !t.is_empty()) else {
        return next.run(req).await;
    };
    // The dashboard's page is static; its script sends the token.
    if req.uri().path() == "/" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError(StatusCode::UNAUTHORIZED, "the token is wrong".into()).into_response(),
        None => {
            let mut r = ApiError(
                StatusCode::UNAUTHORIZED,
                "this server needs a token: send `Authorization: Bearer <token>` (the CLI sends SLUICE_TOKEN)".into(),
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found(req: Request) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {} {} (the API is described at /v1/openapi.json)",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {} (the API is described at /v1/openapi.json)",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn dashboard() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("dashboard.html"),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn about(State(state): State<Arc<AppState>>) -> ApiResult {
    ok(
        StatusCode::OK,
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "wit": crate::WIT_PACKAGE,
            "mode": if state.store.is_some() { "serve" } else { "run" },
        }),
    )
}

async fn prometheus(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&state.jobs, state.store.as_deref()),
    )
        .into_response()
}

fn store(state: &AppState) -> Result<&Arc<ModuleStore>, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::METHOD_NOT_ALLOWED,
            "this is `sluice run`, which runs the one job it was started with; modules and job submissions go to `sluice serve`".into(),
        )
    })
}

async fn list_modules(State(state): State<Arc<AppState>>) -> ApiResult {
    let store = store(&state)?;
    let modules: Vec<Value> = store
        .list()
        .into_iter()
        .map(|e| module_json(&e, &state.jobs))
        .collect();
    ok(StatusCode::OK, json!({ "modules": modules }))
}

fn module_json(e: &store::Entry, jobs: &Jobs) -> Value {
    let mut v = serde_json::to_value(e).expect("entry serializes");
    v["used_by"] = json!(
        jobs.using_module(&e.sha256)
            .iter()
            .map(|j| j.id.clone())
            .collect::<Vec<_>>()
    );
    v
}

async fn upload_module(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult {
    let store = store(&state)?.clone();
    store::check_name(&name)?;
    let limit = state.max_module_size;
    let too_big = |size: String| {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "module `{name}` is {size}; uploads are limited to {limit} bytes (`sluice serve --max-module-size`)"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bytes = match read_limited(req.into_body(), limit).await {
        Ok(b) => b,
        Err(None) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("the upload of module `{name}` broke off"),
            ));
        }
        Err(Some(seen)) => {
            return Err(too_big(format!(
                "{} bytes",
                declared.unwrap_or(seen).max(seen)
            )));
        }
    };
    if bytes.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "the upload of module `{name}` is empty: send the .wasm file as the request body"
            ),
        ));
    }
    let (entry, created) = blocking(move || store.upload(&name, &bytes)).await??;
    ok(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        module_json(&entry, &state.jobs),
    )
}

#[derive(Deserialize)]
struct InspectQuery {
    /// The config to open a keyed process module with (JSON).
    config: Option<String>,
}

async fn inspect_module(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<InspectQuery>,
) -> ApiResult {
    let store = store(&state)?.clone();
    let entry = store.get(&name)?;
    let mut body = module_json(&entry, &state.jobs);
    let config = q.config.unwrap_or_else(|| "{}".into());
    if let Err(e) = serde_json::from_str::<Value>(&config) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("`config` is not JSON: {e}"),
        ));
    }
    let e = entry.clone();
    let modules = blocking(move || store.load(&e)).await??;
    if let Some(m) = modules
        .into_iter()
        .find(|m| m.world == crate::wasm::World::Process)
    {
        body["state_migration"] = json!(m.migrates());
        // States are declared in `open`: run it, as a job would.
        let shown = config.clone();
        let declared = blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(crate::wasm::process::declarations(&m, &config))
        })
        .await?;
        match declared {
            Ok((states, sides)) => {
                body["states"] = json!(
                    states
                        .iter()
                        .map(|d| json!({
                            "name": d.name,
                            "kind": d.kind.name(),
                            "ttl_ms": d.ttl_ms,
                            "version": d.version,
                        }))
                        .collect::<Vec<_>>()
                );
                body["side_outputs"] = json!(sides);
            }
            Err(message) => {
                body["states_error"] = json!(format!(
                    "open with config {shown} failed, so the states are unknown: {message} (pass the config the job uses)"
                ));
            }
        }
    }
    ok(StatusCode::OK, body)
}

async fn delete_module(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let store = store(&state)?;
    let removed = store.remove(&name, |sha| {
        let users = state.jobs.using_module(sha);
        users.first().map(|j| format!("{} (`{}`)", j.id, j.name))
    })?;
    ok(StatusCode::OK, json!({ "removed": removed }))
}

fn job_summary(j: &Job) -> Value {
    let c = &j.control.stats;
    let ops = j.operators();
    let read: u64 = ops
        .iter()
        .filter(|o| o.kind == "source")
        .map(|o| o.records_in)
        .sum();
    let rate: f64 = ops
        .iter()
        .filter(|o| o.kind == "source")
        .map(|o| o.rates.records_in_per_second)
        .sum();
    json!({
        "id": j.id,
        "name": j.name,
        "status": j.status(),
        "submitted_at": j.submitted_at,
        "ended_at": j.ended_at(),
        "duration_seconds": j.duration(),
        "records_read": read,
        "records_read_per_second": rate,
        "restarts": CheckpointStats::get(&c.restarts),
        "last_error": j.last_error(),
        "savepoint": j.savepoint_path(),
        "checkpoints": {
            "completed": CheckpointStats::get(&c.completed),
            "failed": CheckpointStats::get(&c.failed),
            "last_id": CheckpointStats::get(&c.last_id),
            "last_duration_ms": CheckpointStats::get(&c.last_duration_ms),
            "last_size_bytes": CheckpointStats::get(&c.last_size_bytes),
            "restored_from": CheckpointStats::get(&c.restored_from),
        },
    })
}

async fn list_jobs(State(state): State<Arc<AppState>>) -> ApiResult {
    let jobs: Vec<Value> = state.jobs.list().iter().map(|j| job_summary(j)).collect();
    ok(StatusCode::OK, json!({ "jobs": jobs }))
}

async fn inspect_job(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let job = state
        .jobs
        .get(&id)
        .map_err(|m| ApiError(StatusCode::NOT_FOUND, m))?;
    let mut body = job_summary(&job);
    body["graph"] = json!(job.graph);
    body["operators"] = json!(job.operators());
    body["sql"] = json!(job.sql);
    ok(StatusCode::OK, body)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelQuery {
    /// Drop the replication slots of the job's CDC sources once it stopped.
    #[serde(default)]
    drop_slot: bool,
}

async fn cancel_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<CancelQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let query = query
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?
        .0;
    let job = state
        .jobs
        .get(&id)
        .map_err(|m| ApiError(StatusCode::NOT_FOUND, m))?;
    if !job.cancel_releasing(query.drop_slot) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("job {} is {}, not running", job.id, job.status().name()),
        ));
    }
    ok(StatusCode::ACCEPTED, job_summary(&job))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SavepointBody {
    /// The folder to write the savepoint to (default: a `savepoint-<id>`
    /// folder in the job's checkpoint folder).
    #[serde(default)]
    dir: Option<PathBuf>,
}

async fn take_savepoint(
    state: Arc<AppState>,
    id: String,
    body: axum::body::Bytes,
    stop: bool,
) -> ApiResult {
    let job = state
        .jobs
        .get(&id)
        .map_err(|m| ApiError(StatusCode::NOT_FOUND, m))?;
    let req: SavepointBody = if body.iter().all(u8::is_ascii_whitespace) {
        SavepointBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("the body must be JSON {{\"dir\": \"<folder>\"}} or empty: {e}"),
            )
        })?
    };
    if job.status() != Status::Running {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("job {} is {}, not running", job.id, job.status().name()),
        ));
    }
    if let Some(d) = &req.dir {
        state.confine("the savepoint folder", d)?;
    }
    let dir = req.dir.map(|d| state.base_dir.join(d));
    let path = job
        .savepoint(dir, stop)
        .await
        .map_err(|m| ApiError(StatusCode::CONFLICT, format!("job {}: {m}", job.id)))?;
    if stop {
        // The job stops right after its savepoint: wait for it, so that the
        // caller sees it stopped.
        for _ in 0..600 {
            if job.status() != Status::Running {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let mut body = job_summary(&job);
    body["savepoint"] = json!(path.display().to_string());
    ok(StatusCode::OK, body)
}

async fn savepoint_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    take_savepoint(state, id, body, false).await
}

async fn stop_job(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    take_savepoint(state, id, body, true).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submit {
    /// The spec's YAML text.
    #[serde(default)]
    spec: Option<String>,
    /// Or a Flink SQL script, planned as `sluice sql` plans it (its
    /// INSERT INTOs: a final SELECT has nowhere to go on a server).
    #[serde(default)]
    sql: Option<String>,
    /// What errors call the spec (its file name on the client).
    #[serde(default)]
    file: Option<String>,
    /// Values for the spec's `${VAR}`s.
    #[serde(default)]
    vars: BTreeMap<String, String>,
    /// A savepoint folder to start from.
    #[serde(default)]
    from_savepoint: Option<PathBuf>,
    /// Drop state in the savepoint that no node claims.
    #[serde(default)]
    drop_unclaimed_state: bool,
}

async fn submit_job(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> ApiResult {
    let store = store(&state)?.clone();
    let submit: Submit = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the body must be JSON {{\"spec\": \"<YAML>\" or \"sql\": \"<script>\", \"file\": \"name.yaml\", \"vars\": {{...}}}}: {e}"),
        )
    })?;
    if let Some(d) = &submit.from_savepoint {
        state.confine("from_savepoint", d)?;
    }
    let base_dir = state.base_dir.clone();
    let allowed_dirs = state.allowed_dirs.clone();
    let start = crate::runtime::job::Start {
        from_savepoint: submit.from_savepoint.as_ref().map(|d| base_dir.join(d)),
        drop_unclaimed_state: submit.drop_unclaimed_state,
    };
    if let Some(d) = &start.from_savepoint {
        crate::checkpoint::RestorePoint::savepoint(d)
            .map_err(|m| ApiError(StatusCode::BAD_REQUEST, m))?;
    }
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let script = submit.sql.clone();
    let pipeline = blocking(move || {
        let options = crate::plan::PlanOptions {
            store: Some(store),
            allowed_dirs,
            ..Default::default()
        };
        match (submit.spec, submit.sql) {
            (Some(spec), None) => {
                let origin = PathBuf::from(submit.file.as_deref().unwrap_or("submitted spec"));
                crate::plan::load_text(
                    &spec,
                    &origin,
                    &base_dir,
                    &|k| submit.vars.get(k).cloned(),
                    &options,
                )
                .map_err(|e| bad(e.to_string()))
            }
            (None, Some(sql)) => {
                let origin = PathBuf::from(submit.file.as_deref().unwrap_or("submitted.sql"));
                let text = crate::plan::env::substitute(&sql, |k| submit.vars.get(k).cloned())
                    .map_err(|(line, m)| bad(format!("{}:{line}: {m}", origin.display())))?;
                let signatures =
                    |m: &str| crate::plan::sql_function_signatures(m, &base_dir, &options);
                let planned =
                    crate::sql::plan(&text, &origin, &crate::sql::Output::None, None, &signatures)
                        .map_err(|e| {
                            let at = e.pos.map_or(String::new(), |(l, c)| format!(":{l}:{c}"));
                            bad(format!("{}{at}: {}", origin.display(), e.message))
                        })?;
                crate::plan::load_text(&planned.spec, &origin, &base_dir, &|_| None, &options)
                    .map_err(|e| bad(e.to_string()))
            }
            _ => Err(bad(
                "give exactly one of `spec` (YAML) and `sql` (a script)".into(),
            )),
        }
    })
    .await??;
    let (job, _done) = state
        .jobs
        .start(pipeline, start, script)
        .map_err(|m| ApiError(StatusCode::INTERNAL_SERVER_ERROR, m))?;
    tracing::info!(job = %job.id, name = %job.name, "job submitted");
    ok(StatusCode::CREATED, job_summary(&job))
}

/// Reads a body of at most `limit` bytes. A larger one is read to its end
/// (up to 4 times the limit) and dropped, so that the client, still
/// sending, gets the 413 rather than a broken connection: `Err(Some(n))`
/// with the bytes seen; `Err(None)` when the body breaks off.
async fn read_limited(body: axum::body::Body, limit: u64) -> Result<Vec<u8>, Option<u64>> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut bytes = Vec::new();
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| None)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len() as u64;
        if seen <= limit {
            bytes.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(4) {
            return Err(Some(seen));
        }
    }
    if seen > limit {
        Err(Some(seen))
    } else {
        Ok(bytes)
    }
}

/// Runs blocking work (compiling a module, planning) off the server's
/// threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    })
}
