// The wit-bindgen glue: one `generate!` per operator world. build.rs puts
// the WIT package's version (from wit/operator.wit) in place of
// `{WIT_VERSION}` and the crate includes the result.
//
// Nothing here is public API. The export macros wit-bindgen generates are
// `#[macro_export]`ed (`pub_export_macro`) so that `export_transform!` and
// `export_aggregate!`, which expand in the operator's crate, can reach them
// through `$crate`; an operator crate therefore never depends on wit-bindgen.
//
// With `pub_export_macro`, wit-bindgen puts the description of a world's
// *exports* inside the generated export macro rather than into this crate, so
// a component built with `export_transform!` does not also claim to export
// the aggregate interface (or the reverse).

/// Bindings for the `transform-operator` world. They also own the shared
/// `types` and `logging` interfaces, which the aggregate bindings reuse.
pub mod transform {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "transform-operator",
        pub_export_macro: true,
        export_macro_name: "export_transform_world",
    });
}

/// Bindings for the `aggregate-operator` world.
pub mod aggregate {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "aggregate-operator",
        pub_export_macro: true,
        export_macro_name: "export_aggregate_world",
        // One set of Rust types for both worlds, so the batch code is shared.
        with: {
            "sluice:operator/types@{WIT_VERSION}": crate::bindings::transform::sluice::operator::types,
            "sluice:operator/logging@{WIT_VERSION}": crate::bindings::transform::sluice::operator::logging,
            "sluice:operator/fields@{WIT_VERSION}": crate::bindings::transform::sluice::operator::fields,
        },
    });
}

/// Bindings for the `keyed-process-operator` world: the `state` and `output`
/// imports and the `keyed-process` export.
pub mod process {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "keyed-process-operator",
        pub_export_macro: true,
        export_macro_name: "export_process_world",
        with: {
            "sluice:operator/types@{WIT_VERSION}": crate::bindings::transform::sluice::operator::types,
            "sluice:operator/logging@{WIT_VERSION}": crate::bindings::transform::sluice::operator::logging,
        },
    });
}

/// Bindings for the `keyed-co-process-operator` world: the imports of the
/// keyed-process world (reused) and the `keyed-co-process` export.
pub mod co_process {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "keyed-co-process-operator",
        pub_export_macro: true,
        export_macro_name: "export_co_process_world",
        with: {
            "sluice:operator/types@{WIT_VERSION}": crate::bindings::transform::sluice::operator::types,
            "sluice:operator/logging@{WIT_VERSION}": crate::bindings::transform::sluice::operator::logging,
            "sluice:operator/keyed@{WIT_VERSION}": crate::bindings::process::sluice::operator::keyed,
            "sluice:operator/state@{WIT_VERSION}": crate::bindings::process::sluice::operator::state,
            "sluice:operator/output@{WIT_VERSION}": crate::bindings::process::sluice::operator::output,
        },
    });
}

/// Bindings for the `keyed-broadcast-process-operator` world: the imports
/// of the keyed-process world (reused), the `broadcast-state` import and the
/// `keyed-broadcast-process` export.
pub mod broadcast {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "keyed-broadcast-process-operator",
        pub_export_macro: true,
        export_macro_name: "export_broadcast_world",
        with: {
            "sluice:operator/types@{WIT_VERSION}": crate::bindings::transform::sluice::operator::types,
            "sluice:operator/logging@{WIT_VERSION}": crate::bindings::transform::sluice::operator::logging,
            "sluice:operator/keyed@{WIT_VERSION}": crate::bindings::process::sluice::operator::keyed,
            "sluice:operator/state@{WIT_VERSION}": crate::bindings::process::sluice::operator::state,
            "sluice:operator/output@{WIT_VERSION}": crate::bindings::process::sluice::operator::output,
        },
    });
}

/// Bindings for the `window-function-operator` world.
pub mod window {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "window-function-operator",
        pub_export_macro: true,
        export_macro_name: "export_window_world",
        with: {
            "sluice:operator/types@{WIT_VERSION}": crate::bindings::transform::sluice::operator::types,
            "sluice:operator/logging@{WIT_VERSION}": crate::bindings::transform::sluice::operator::logging,
        },
    });
}

/// Bindings for the `state-migration` world: only the `migration` export,
/// which `export_process!(T, migrate)` adds beside `keyed-process` (the
/// component's world is the union of the two).
pub mod migration {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "state-migration",
        pub_export_macro: true,
        export_macro_name: "export_migration_world",
        with: {
            "sluice:operator/types@{WIT_VERSION}": crate::bindings::transform::sluice::operator::types,
        },
    });
}

/// Bindings for the `enricher-operator` world: the `http` import and the
/// `enricher` export.
pub mod enricher {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "enricher-operator",
        pub_export_macro: true,
        export_macro_name: "export_enricher_world",
        with: {
            "sluice:operator/types@{WIT_VERSION}": crate::bindings::transform::sluice::operator::types,
            "sluice:operator/logging@{WIT_VERSION}": crate::bindings::transform::sluice::operator::logging,
        },
    });
}

/// Bindings for the `sql-function-module` world: the `sql-function`
/// export.
pub mod sql {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "sql-function-module",
        pub_export_macro: true,
        export_macro_name: "export_sql_world",
        with: {
            "sluice:operator/types@{WIT_VERSION}": crate::bindings::transform::sluice::operator::types,
            "sluice:operator/logging@{WIT_VERSION}": crate::bindings::transform::sluice::operator::logging,
        },
    });
}
