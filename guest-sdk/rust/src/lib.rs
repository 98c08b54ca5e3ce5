//! Write [sluice](https://github.com/sluice-rs/sluice) stream operators in
//! Rust.
//!
//! A sluice operator is a WebAssembly component that the host runs in a
//! sandbox. With this crate you write it as a plain Rust type implementing
//! [`Transform`] (map, filter, flat-map) or [`Aggregate`] (a window
//! aggregate function), add one line to export it, and build it for
//! `wasm32-wasip2`. The WIT contract, the batch layout and the Wasm ABI stay
//! out of sight.
//!
//! # A complete operator
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "big-orders"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! sluice-guest = "0.1"
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/lib.rs`, an operator that keeps orders over an amount set in the
//! pipeline spec and reshapes them:
//!
//! ```rust,standalone_crate
//! use serde::{Deserialize, Serialize};
//! use sluice_guest::{Config, Error, Output, Record, Transform};
//!
//! /// The operator's `config` in the pipeline spec; every field optional.
//! #[derive(Deserialize, Default)]
//! #[serde(default, deny_unknown_fields)]
//! struct Settings {
//!     min_amount: f64,
//! }
//!
//! /// An input record's value. `&str` fields borrow from the batch.
//! #[derive(Deserialize)]
//! struct Order<'a> {
//!     order_id: &'a str,
//!     amount: f64,
//! }
//!
//! /// An output record's value.
//! #[derive(Serialize)]
//! struct BigOrder<'a> {
//!     id: &'a str,
//!     amount: f64,
//! }
//!
//! struct BigOrders {
//!     min_amount: f64,
//! }
//!
//! impl Transform for BigOrders {
//!     fn open(config: Config) -> Result<Self, Error> {
//!         let settings: Settings = config.parse()?;
//!         sluice_guest::log_info!("keeping orders over {}", settings.min_amount);
//!         Ok(BigOrders { min_amount: settings.min_amount })
//!     }
//!
//!     fn process(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
//!         // A value that is not an order becomes a dead letter with serde's message.
//!         let order: Order<'_> = record.json()?;
//!         if order.amount > self.min_amount {
//!             // Keeps the input's key, timestamp and headers.
//!             out.emit_json(&BigOrder { id: order.order_id, amount: order.amount })?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! sluice_guest::export_transform!(BigOrders);
//! ```
//!
//! Build it, and point a pipeline spec's operator at the `.wasm` file:
//!
//! ```text
//! cargo build --release --target wasm32-wasip2
//! # -> target/wasm32-wasip2/release/big_orders.wasm
//! ```
//!
//! # The pieces
//!
//! * [`Transform`]: called once per input record; emits zero or more output
//!   records through an [`Output`]. Export with [`export_transform!`].
//! * [`Aggregate`]: Flink's `AggregateFunction`: `create`, `add`, `merge`,
//!   `result` over an accumulator that the host stores (as JSON) between
//!   calls. Export with [`export_aggregate!`].
//! * [`Record`]: a zero-copy view of an input record: key, value, event
//!   timestamp, headers, and [`Record::json`] to deserialize the value.
//! * [`Config`]: the operator's `config` from the pipeline spec;
//!   [`Config::parse`] turns it into your settings type.
//! * [`Error`]: a message. From `open` it stops the job; from `process` or
//!   `add` it sends that one record to the dead-letter sink and the batch goes
//!   on.
//! * [`log`] and the `log_*!` macros: lines in the host's log.
//! * [`testing`]: run your operator natively in its unit tests.
//!
//! A crate exports one operator: one `export_transform!` or one
//! `export_aggregate!`.
//!
//! # What runs where
//!
//! The host sends records in batches (one flat buffer per batch, so crossing
//! the boundary costs two copies whatever the batch size); the SDK loops over
//! the batch and calls your code once per record. Records you emit are written
//! straight into the output batch, and the SDK does not allocate per record, so
//! the cost per record is essentially your own code: typically the JSON
//! parsing.
//!
//! One instance of your type exists per operator instance (the host runs one
//! per parallel subtask). The host may drop an instance and create a new one at
//! any time (after a failure, on rescaling), so anything that must survive
//! belongs in an [`Aggregate`]'s accumulator, which the host owns and
//! checkpoints, not in your transform's fields.
//!
//! The component runs in a sandbox: the standard library compiles, but files,
//! environment variables, clocks and the network only work as far as the host
//! grants them (by default it grants nothing). A panic or a trap kills the
//! instance and fails (or restarts) the job; return an [`Error`] for bad
//! input instead.
//!
//! # Serde
//!
//! The crate re-exports [`serde`] and [`serde_json`]. The serde derives
//! generate code that names the `serde` crate, so either depend on `serde`
//! (with the `derive` feature) yourself, as above, or add
//! `#[serde(crate = "sluice_guest::serde")]` to each derive.

pub use serde;
pub use serde_json;

mod aggregate;
mod batch;
mod broadcast;
/// The wit-bindgen glue (src/bindings.in.rs with the WIT version filled in).
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}
mod config;
mod error;
pub mod http;
pub mod json;
pub mod log;
mod process;
mod projection;
mod record;
pub mod sql;
mod state;
pub mod testing;
mod transform;
mod window;

pub use aggregate::Aggregate;
pub use broadcast::{BroadcastContext, BroadcastState, KeyedBroadcastProcess};
pub use config::Config;
pub use error::Error;
pub use process::{
    Context, Domain, KeyedCoProcess, KeyedProcess, MigrateState, Setup, SideOutput, StateOptions,
    Timer, ValueState,
};
pub use record::{Record, RowKind};
pub use state::{ListState, MapState};
pub use transform::{OutRecord, Output, Transform};
pub use window::{Window, WindowFunction};

/// Exports the SQL functions that `functions` (a `fn() -> Vec<Function>`)
/// lists as this crate's component (`sluice:operator/sql-function`). Use it
/// once, at the top level of the crate; see [`sql`] for an example.
#[macro_export]
macro_rules! export_sql_functions {
    ($functions:path $(,)?) => {
        const _: () = {
            struct __SluiceSqlExport;

            ::std::thread_local! {
                static __SLUICE_SQL: $crate::__private::SqlFunctions =
                    const { $crate::__private::SqlFunctions::new() };
            }

            impl $crate::__private::SqlGuest for __SluiceSqlExport {
                fn functions() -> ::std::vec::Vec<$crate::__private::Signature> {
                    __SLUICE_SQL.with(|s| s.signatures($functions))
                }

                fn call(
                    function: u32,
                    args: ::std::vec::Vec<$crate::__private::Column>,
                    rows: u32,
                ) -> $crate::__private::CallOutput {
                    __SLUICE_SQL.with(|s| s.call($functions, function, args, rows))
                }

                fn create_accumulator(function: u32) -> ::std::vec::Vec<u8> {
                    __SLUICE_SQL.with(|s| s.create_accumulator($functions, function))
                }

                fn accumulate(
                    function: u32,
                    accumulators: $crate::__private::ByteList,
                    args: ::std::vec::Vec<$crate::__private::Column>,
                    targets: ::std::vec::Vec<u32>,
                ) -> $crate::__private::AccumulateOutput {
                    __SLUICE_SQL
                        .with(|s| s.accumulate($functions, function, accumulators, args, targets))
                }

                fn merge(
                    function: u32,
                    accumulators: $crate::__private::ByteList,
                    groups: ::std::vec::Vec<$crate::__private::Span>,
                ) -> ::core::result::Result<$crate::__private::ByteList, ::std::string::String>
                {
                    __SLUICE_SQL.with(|s| s.merge($functions, function, accumulators, groups))
                }

                fn get_value(
                    function: u32,
                    accumulators: $crate::__private::ByteList,
                ) -> ::core::result::Result<$crate::__private::Column, ::std::string::String>
                {
                    __SLUICE_SQL.with(|s| s.get_value($functions, function, accumulators))
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__private::sql_bindings::export_sql_world!(
                __SluiceSqlExport with_types_in $crate::__private::sql_bindings
            );

            #[cfg(not(target_arch = "wasm32"))]
            let _ = (
                <__SluiceSqlExport as $crate::__private::SqlGuest>::functions,
                <__SluiceSqlExport as $crate::__private::SqlGuest>::call,
                <__SluiceSqlExport as $crate::__private::SqlGuest>::create_accumulator,
                <__SluiceSqlExport as $crate::__private::SqlGuest>::accumulate,
                <__SluiceSqlExport as $crate::__private::SqlGuest>::merge,
                <__SluiceSqlExport as $crate::__private::SqlGuest>::get_value,
            );
        };
    };
}

/// Exports a [`WindowFunction`] as the operator of this crate's component
/// (`sluice:operator/window-function`). Use it once, at the top level of the
/// crate; see [`WindowFunction`] for an example.
#[macro_export]
macro_rules! export_window_function {
    ($operator:ty $(,)?) => {
        const _: () = {
            struct __SluiceWindowExport;

            ::std::thread_local! {
                static __SLUICE_WINDOW: $crate::__private::WindowState<$operator> =
                    const { $crate::__private::WindowState::new() };
            }

            impl $crate::__private::WindowGuest for __SluiceWindowExport {
                fn open(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __SLUICE_WINDOW.with(|state| state.open(config))
                }

                fn process(
                    windows: ::std::vec::Vec<$crate::__private::WitWindow>,
                    keys: ::std::vec::Vec<u8>,
                    input: $crate::__private::Batch,
                ) -> ::core::result::Result<$crate::__private::ByteList, ::std::string::String>
                {
                    __SLUICE_WINDOW.with(|state| state.process(windows, keys, input))
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__private::window_bindings::export_window_world!(
                __SluiceWindowExport with_types_in $crate::__private::window_bindings
            );

            #[cfg(not(target_arch = "wasm32"))]
            let _ = (
                <__SluiceWindowExport as $crate::__private::WindowGuest>::open,
                <__SluiceWindowExport as $crate::__private::WindowGuest>::process,
            );
        };
    };
}

/// Exports a [`KeyedProcess`] as the operator of this crate's component
/// (`sluice:operator/keyed-process`). Use it once, at the top level of the
/// crate; see [`KeyedProcess`] for an example. Until `open` has succeeded,
/// every call traps with "operator not opened".
///
/// `export_process!(T, migrate)` also exports the state-migration hook
/// (`sluice:operator/migration`), implemented by [`MigrateState`] for `T`:
/// the host runs it on inherited state whose version differs from the one
/// `T` declares (a module swap).
#[macro_export]
macro_rules! export_process {
    (@impl $operator:ty, { $($migrate:ident)? }) => {
        const _: () = {
            struct __SluiceProcessExport;

            ::std::thread_local! {
                static __SLUICE_PROCESS: $crate::__private::ProcessState<$crate::__private::One<$operator>> =
                    const { $crate::__private::ProcessState::new() };
            }

            impl $crate::__private::ProcessGuest for __SluiceProcessExport {
                fn open(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __SLUICE_PROCESS.with(|state| state.open(config))
                }

                fn process(
                    input: $crate::__private::Batch,
                    context: $crate::__private::KeyedInput,
                ) -> $crate::__private::KeyedOutput {
                    __SLUICE_PROCESS.with(|state| state.process(input, context))
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__private::process_bindings::export_process_world!(
                __SluiceProcessExport with_types_in $crate::__private::process_bindings
            );

            #[cfg(not(target_arch = "wasm32"))]
            let _ = (
                <__SluiceProcessExport as $crate::__private::ProcessGuest>::open,
                <__SluiceProcessExport as $crate::__private::ProcessGuest>::process,
            );

            $(
                const _: &str = ::core::stringify!($migrate);

                impl $crate::__private::MigrationGuest for __SluiceProcessExport {
                    fn migrate(
                        state: ::std::string::String,
                        from_version: u32,
                        items: $crate::__private::ByteList,
                    ) -> ::core::result::Result<$crate::__private::ByteList, ::std::string::String>
                    {
                        __SLUICE_PROCESS.with(|s| s.migrate(&state, from_version, items))
                    }
                }

                #[cfg(target_arch = "wasm32")]
                $crate::__private::migration_bindings::export_migration_world!(
                    __SluiceProcessExport with_types_in $crate::__private::migration_bindings
                );

                #[cfg(not(target_arch = "wasm32"))]
                let _ = <__SluiceProcessExport as $crate::__private::MigrationGuest>::migrate;
            )?
        };
    };
    ($operator:ty $(,)?) => {
        $crate::export_process!(@impl $operator, {});
    };
    ($operator:ty, migrate $(,)?) => {
        $crate::export_process!(@impl $operator, { migrate });
    };
}

/// Exports a [`KeyedCoProcess`] as the operator of this crate's component
/// (`sluice:operator/keyed-co-process`). Use it once, at the top level of
/// the crate; see [`KeyedCoProcess`] for an example.
#[macro_export]
macro_rules! export_co_process {
    ($operator:ty $(,)?) => {
        const _: () = {
            struct __SluiceCoProcessExport;

            ::std::thread_local! {
                static __SLUICE_CO_PROCESS: $crate::__private::ProcessState<$crate::__private::Two<$operator>> =
                    const { $crate::__private::ProcessState::new() };
            }

            impl $crate::__private::CoProcessGuest for __SluiceCoProcessExport {
                fn open(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __SLUICE_CO_PROCESS.with(|state| state.open(config))
                }

                fn process(
                    input: $crate::__private::Batch,
                    context: $crate::__private::KeyedInput,
                ) -> $crate::__private::KeyedOutput {
                    __SLUICE_CO_PROCESS.with(|state| state.process(input, context))
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__private::co_process_bindings::export_co_process_world!(
                __SluiceCoProcessExport with_types_in $crate::__private::co_process_bindings
            );

            #[cfg(not(target_arch = "wasm32"))]
            let _ = (
                <__SluiceCoProcessExport as $crate::__private::CoProcessGuest>::open,
                <__SluiceCoProcessExport as $crate::__private::CoProcessGuest>::process,
            );
        };
    };
}

/// Exports a [`KeyedBroadcastProcess`] as the operator of this crate's
/// component (`sluice:operator/keyed-broadcast-process`). Use it once, at
/// the top level of the crate; see [`KeyedBroadcastProcess`] for an example.
#[macro_export]
macro_rules! export_broadcast_process {
    ($operator:ty $(,)?) => {
        const _: () = {
            struct __SluiceBroadcastExport;

            ::std::thread_local! {
                static __SLUICE_BROADCAST: $crate::__private::ProcessState<$crate::__private::Broadcast<$operator>> =
                    const { $crate::__private::ProcessState::new() };
            }

            impl $crate::__private::BroadcastGuest for __SluiceBroadcastExport {
                fn open(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __SLUICE_BROADCAST.with(|state| state.open(config))
                }

                fn process(
                    input: $crate::__private::Batch,
                    context: $crate::__private::KeyedInput,
                ) -> $crate::__private::KeyedOutput {
                    __SLUICE_BROADCAST.with(|state| state.process(input, context))
                }

                fn process_broadcast(
                    input: $crate::__private::Batch,
                    watermarks: ::std::vec::Vec<i64>,
                ) -> $crate::__private::BroadcastOutput {
                    __SLUICE_BROADCAST.with(|state| state.process_broadcast(input, watermarks))
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__private::broadcast_bindings::export_broadcast_world!(
                __SluiceBroadcastExport with_types_in $crate::__private::broadcast_bindings
            );

            #[cfg(not(target_arch = "wasm32"))]
            let _ = (
                <__SluiceBroadcastExport as $crate::__private::BroadcastGuest>::open,
                <__SluiceBroadcastExport as $crate::__private::BroadcastGuest>::process,
                <__SluiceBroadcastExport as $crate::__private::BroadcastGuest>::process_broadcast,
            );
        };
    };
}

/// Exports a [`Transform`] as the operator of this crate's component.
///
/// Use it once, at the top level of the crate, with the type that implements
/// [`Transform`]:
///
/// ```rust,standalone_crate
/// use sluice_guest::{Config, Error, Output, Record, Transform};
///
/// struct PassThrough;
///
/// impl Transform for PassThrough {
///     fn open(_config: Config) -> Result<Self, Error> {
///         Ok(PassThrough)
///     }
///     fn process(&mut self, _record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
///         out.forward();
///         Ok(())
///     }
/// }
///
/// sluice_guest::export_transform!(PassThrough);
/// ```
///
/// It generates the component's exports (`sluice:operator/transform`) and
/// keeps the instance of your type that `open` creates. Until `open` has
/// succeeded, every record of every batch fails with "operator not opened".
///
/// The exports are only generated when building for Wasm; on other targets the
/// macro expands to nothing that links, so `cargo test` of the operator's
/// crate runs natively.
#[macro_export]
macro_rules! export_transform {
    ($operator:ty $(,)?) => {
        const _: () = {
            struct __SluiceTransformExport;

            ::std::thread_local! {
                static __SLUICE_TRANSFORM: $crate::__private::TransformState<$operator> =
                    const { $crate::__private::TransformState::new() };
            }

            impl $crate::__private::TransformGuest for __SluiceTransformExport {
                fn open(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __SLUICE_TRANSFORM.with(|state| state.open(config))
                }

                fn process(input: $crate::__private::Batch) -> $crate::__private::TransformOutput {
                    __SLUICE_TRANSFORM.with(|state| state.process(input))
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__private::transform_bindings::export_transform_world!(
                __SluiceTransformExport with_types_in $crate::__private::transform_bindings
            );

            // Elsewhere nothing calls the exports: name them, so that the
            // operator's code does not all look unused.
            #[cfg(not(target_arch = "wasm32"))]
            let _ = (
                <__SluiceTransformExport as $crate::__private::TransformGuest>::open,
                <__SluiceTransformExport as $crate::__private::TransformGuest>::process,
            );
        };
    };
}

/// Exports a [`Transform`] as an async enricher
/// (`sluice:operator/enricher`): the host calls it with one record at a
/// time, up to the spec's `enricher.capacity` calls at once on as many
/// instances, so `process` may block in [`http::fetch`] without holding up
/// the pipeline. A record error is an attempt that failed: the host retries
/// it with backoff (`enricher.retries`), then sends the record to the
/// dead-letter sink.
///
/// ```ignore
/// struct Tier { url: String }
/// impl Transform for Tier {
///     fn open(config: Config) -> Result<Self, Error> { /* ... */ }
///     fn process(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
///         let id: &str = record.field("customer_id")?.ok_or("no customer_id")?;
///         let tier: serde_json::Value = sluice_guest::http::get(&format!("{}{id}", self.url))?.json()?;
///         out.emit_json(&tier)
///     }
/// }
/// sluice_guest::export_enricher!(Tier);
/// ```
#[macro_export]
macro_rules! export_enricher {
    ($operator:ty $(,)?) => {
        const _: () = {
            struct __SluiceEnricherExport;

            ::std::thread_local! {
                static __SLUICE_ENRICHER: $crate::__private::TransformState<$operator> =
                    const { $crate::__private::TransformState::new() };
            }

            impl $crate::__private::EnricherGuest for __SluiceEnricherExport {
                fn open(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __SLUICE_ENRICHER.with(|state| state.open(config))
                }

                fn process(input: $crate::__private::Batch) -> $crate::__private::EnricherOutput {
                    let out = __SLUICE_ENRICHER.with(|state| state.process(input));
                    $crate::__private::EnricherOutput {
                        records: out.records,
                        origins: out.origins,
                        errors: out.errors,
                    }
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__private::enricher_bindings::export_enricher_world!(
                __SluiceEnricherExport with_types_in $crate::__private::enricher_bindings
            );

            #[cfg(not(target_arch = "wasm32"))]
            let _ = (
                <__SluiceEnricherExport as $crate::__private::EnricherGuest>::open,
                <__SluiceEnricherExport as $crate::__private::EnricherGuest>::process,
            );
        };
    };
}

/// Exports an [`Aggregate`] as the operator of this crate's component.
///
/// Use it once, at the top level of the crate, with the type that implements
/// [`Aggregate`] (see there for an example). It generates the component's
/// exports (`sluice:operator/aggregate`) and keeps the instance that `open`
/// creates.
///
/// Until `open` has succeeded, `add` fails every record with "operator not
/// opened" and returns the accumulators unchanged, `merge` and `get-result`
/// return that error, and `create-accumulator` (which has no way to report an
/// error) traps.
///
/// As with [`export_transform!`], the exports are only generated when building
/// for Wasm.
#[macro_export]
macro_rules! export_aggregate {
    ($operator:ty $(,)?) => {
        const _: () = {
            struct __SluiceAggregateExport;

            ::std::thread_local! {
                static __SLUICE_AGGREGATE: $crate::__private::AggregateState<$operator> =
                    const { $crate::__private::AggregateState::new() };
            }

            impl $crate::__private::AggregateGuest for __SluiceAggregateExport {
                fn open(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    __SLUICE_AGGREGATE.with(|state| state.open(config))
                }

                fn create_accumulator() -> ::std::vec::Vec<u8> {
                    __SLUICE_AGGREGATE.with(|state| state.create_accumulator())
                }

                fn add(
                    accumulators: $crate::__private::ByteList,
                    input: $crate::__private::Batch,
                    targets: ::std::vec::Vec<u32>,
                ) -> $crate::__private::AddOutput {
                    __SLUICE_AGGREGATE.with(|state| state.add(accumulators, input, targets))
                }

                fn merge(
                    accumulators: $crate::__private::ByteList,
                    groups: ::std::vec::Vec<$crate::__private::Span>,
                ) -> ::core::result::Result<$crate::__private::ByteList, ::std::string::String>
                {
                    __SLUICE_AGGREGATE.with(|state| state.merge(accumulators, groups))
                }

                fn get_result(
                    accumulators: $crate::__private::ByteList,
                ) -> ::core::result::Result<$crate::__private::ByteList, ::std::string::String>
                {
                    __SLUICE_AGGREGATE.with(|state| state.get_result(accumulators))
                }
            }

            #[cfg(target_arch = "wasm32")]
            $crate::__private::aggregate_bindings::export_aggregate_world!(
                __SluiceAggregateExport with_types_in $crate::__private::aggregate_bindings
            );

            // Elsewhere nothing calls the exports: name them, so that the
            // operator's code does not all look unused.
            #[cfg(not(target_arch = "wasm32"))]
            let _ = (
                <__SluiceAggregateExport as $crate::__private::AggregateGuest>::open,
                <__SluiceAggregateExport as $crate::__private::AggregateGuest>::create_accumulator,
                <__SluiceAggregateExport as $crate::__private::AggregateGuest>::add,
                <__SluiceAggregateExport as $crate::__private::AggregateGuest>::merge,
                <__SluiceAggregateExport as $crate::__private::AggregateGuest>::get_result,
            );
        };
    };
}

/// Logs a `format!`-style message at trace level (see [`log`]).
#[macro_export]
macro_rules! log_trace {
    ($($arg:tt)+) => {
        $crate::log::__write_fmt($crate::log::__Level::Trace, ::core::format_args!($($arg)+))
    };
}

/// Logs a `format!`-style message at debug level (see [`log`]).
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)+) => {
        $crate::log::__write_fmt($crate::log::__Level::Debug, ::core::format_args!($($arg)+))
    };
}

/// Logs a `format!`-style message at info level (see [`log`]).
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)+) => {
        $crate::log::__write_fmt($crate::log::__Level::Info, ::core::format_args!($($arg)+))
    };
}

/// Logs a `format!`-style message at warn level (see [`log`]).
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)+) => {
        $crate::log::__write_fmt($crate::log::__Level::Warn, ::core::format_args!($($arg)+))
    };
}

/// Logs a `format!`-style message at error level (see [`log`]).
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)+) => {
        $crate::log::__write_fmt($crate::log::__Level::Error, ::core::format_args!($($arg)+))
    };
}

/// What the export macros expand to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::aggregate::AggregateState;
    pub use crate::bindings::aggregate as aggregate_bindings;
    pub use crate::bindings::aggregate::exports::sluice::operator::aggregate::{
        AddOutput, Guest as AggregateGuest,
    };
    pub use crate::bindings::broadcast as broadcast_bindings;
    pub use crate::bindings::broadcast::exports::sluice::operator::keyed_broadcast_process::{
        BroadcastOutput, Guest as BroadcastGuest,
    };
    pub use crate::bindings::co_process as co_process_bindings;
    pub use crate::bindings::co_process::exports::sluice::operator::keyed_co_process::Guest as CoProcessGuest;
    pub use crate::bindings::enricher as enricher_bindings;
    pub use crate::bindings::enricher::exports::sluice::operator::enricher::{
        EnricherOutput, Guest as EnricherGuest,
    };
    pub use crate::bindings::migration as migration_bindings;
    pub use crate::bindings::migration::exports::sluice::operator::migration::Guest as MigrationGuest;
    pub use crate::bindings::process as process_bindings;
    pub use crate::bindings::process::exports::sluice::operator::keyed_process::Guest as ProcessGuest;
    pub use crate::bindings::process::sluice::operator::keyed::{KeyedInput, KeyedOutput};
    pub use crate::bindings::sql as sql_bindings;
    pub use crate::bindings::sql::exports::sluice::operator::sql_function::{
        AccumulateOutput, CallOutput, Column, Guest as SqlGuest, Signature,
    };
    pub use crate::bindings::transform as transform_bindings;
    pub use crate::bindings::transform::exports::sluice::operator::transform::{
        Guest as TransformGuest, TransformOutput,
    };
    pub use crate::bindings::transform::sluice::operator::types::{Batch, ByteList, Span};
    pub use crate::bindings::window as window_bindings;
    pub use crate::bindings::window::exports::sluice::operator::window_function::{
        Guest as WindowGuest, Window as WitWindow,
    };
    pub use crate::broadcast::Broadcast;
    pub use crate::process::{One, ProcessState, Two};
    pub use crate::sql::SqlFunctions;
    pub use crate::transform::TransformState;
    pub use crate::window::WindowState;
}
