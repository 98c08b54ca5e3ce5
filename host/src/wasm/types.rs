//! The Rust side of `sluice:operator/types`, the WIT interface of batches.
//!
//! `bindgen!` maps the interface here (`with`) instead of generating it, for
//! one reason: [`RecordMeta`]. Every call hands the guest a
//! `list<record-meta>`, one element per record, and wasmtime's derived
//! lowering stores a record field by field, each store looking the guest's
//! memory up again (`options_memory_mut`): 12–23 % of an operator thread's
//! time in the profiles of W1, W2 and W5. Here a list of them is written in
//! one pass over one slice of guest memory, and read back from the bytes of
//! each element, with the canonical ABI's layout spelled out below and its
//! validity checks kept. [`Span`] lists (byte lists, keyed state's keys)
//! get the same treatment (offset at 0, length at 4). The other types are
//! derived as `bindgen!` would derive them.
//!
//! The canonical layout of `record-meta` (size 56, alignment 8):
//!
//! | offset | field |
//! |---|---|
//! | 0 | `key` discriminant (`u8`), payload `span` at 4 (`offset`, `len`) |
//! | 12 | `value`: `offset` at 12, `len` at 16 |
//! | 24 | `timestamp` discriminant (`u8`), payload `s64` at 32 |
//! | 40 | `headers-start` |
//! | 44 | `headers-len` |
//! | 48 | `kind` (`u8`) |
//!
//! [`Twin`] is the same record derived by wasmtime: it provides the type
//! check and the ABI size (checked at compile time), and lowers and lifts
//! single values. Lists go through [`RecordMeta`]'s own store and load,
//! whose layout the unit tests spell out and every end-to-end test runs
//! through real guests (keys, timestamps, headers and changelog kinds among
//! them).

use std::mem::MaybeUninit;

use wasmtime::Result;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LiftContext, LowerContext,
};
use wasmtime::component::{ComponentType, Lift, Lower};

/// wasmtime's three traits for a type with a derived twin of the same
/// fields (and the conversions between them): the type check, the ABI and
/// single values go through the twin; a list is written in one pass
/// (`store`, see [`store_list`]) and each element read from its bytes
/// (`load`).
macro_rules! via_twin {
    ($ty:ident, $twin:ident, [$($field:ident),+]) => {
        impl From<$twin> for $ty {
            fn from(t: $twin) -> Self {
                $ty { $($field: t.$field),+ }
            }
        }

        impl From<$ty> for $twin {
            fn from(t: $ty) -> Self {
                $twin { $($field: t.$field),+ }
            }
        }

        unsafe impl ComponentType for $ty {
            type Lower = <$twin as ComponentType>::Lower;

            const ABI: CanonicalAbiInfo = <$twin as ComponentType>::ABI;

            fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> Result<()> {
                <$twin as ComponentType>::typecheck(ty, types)
            }
        }

        unsafe impl Lower for $ty {
            fn linear_lower_to_flat<T>(
                &self,
                cx: &mut LowerContext<'_, T>,
                ty: InterfaceType,
                dst: &mut MaybeUninit<Self::Lower>,
            ) -> Result<()> {
                $twin::from(*self).linear_lower_to_flat(cx, ty, dst)
            }

            fn linear_lower_to_memory<T>(
                &self,
                cx: &mut LowerContext<'_, T>,
                ty: InterfaceType,
                offset: usize,
            ) -> Result<()> {
                $twin::from(*self).linear_lower_to_memory(cx, ty, offset)
            }

            fn linear_store_list_to_memory<T>(
                cx: &mut LowerContext<'_, T>,
                _ty: InterfaceType,
                offset: usize,
                items: &[Self],
            ) -> Result<()> {
                $crate::wasm::types::store_list(cx, offset, items, $ty::store)
            }
        }

        unsafe impl Lift for $ty {
            fn linear_lift_from_flat(
                cx: &mut LiftContext<'_>,
                ty: InterfaceType,
                src: &Self::Lower,
            ) -> Result<Self> {
                $twin::linear_lift_from_flat(cx, ty, src).map($ty::from)
            }

            fn linear_lift_from_memory(
                _cx: &mut LiftContext<'_>,
                _ty: InterfaceType,
                bytes: &[u8],
            ) -> Result<Self> {
                $ty::load(bytes)
            }
        }
    };
}

pub(super) use via_twin;

/// A byte range inside a batch's `data` (or a range of indices, where a
/// function says so). Lists of them (a byte list's spans, keyed state's
/// keys) cross in one pass, as record lists do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub offset: u32,
    pub len: u32,
}

/// [`Span`] as wasmtime derives it.
#[doc(hidden)]
#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(record)]
pub struct SpanTwin {
    #[component(name = "offset")]
    offset: u32,
    #[component(name = "len")]
    len: u32,
}

const SPAN_SIZE: usize = 8;

const _: () = {
    assert!(SPAN_SIZE == <SpanTwin as ComponentType>::SIZE32);
    assert!(4 == <SpanTwin as ComponentType>::ALIGN32);
};

impl Span {
    pub(super) fn store(&self, out: &mut [u8; SPAN_SIZE]) {
        out[..4].copy_from_slice(&self.offset.to_le_bytes());
        out[4..].copy_from_slice(&self.len.to_le_bytes());
    }

    /// Read from its canonical-ABI bytes (any bytes are a span).
    pub(super) fn read(bytes: &[u8]) -> Span {
        let get32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        Span {
            offset: get32(0),
            len: get32(4),
        }
    }

    fn load(bytes: &[u8]) -> Result<Span> {
        Ok(Span::read(bytes))
    }
}

via_twin!(Span, SpanTwin, [offset, len]);

/// Writes `items` into guest memory at `offset` (where the canonical ABI
/// allocated room for them), `N` bytes each, in one pass over one slice.
pub(super) fn store_list<T, I, const N: usize>(
    cx: &mut LowerContext<'_, T>,
    offset: usize,
    items: &[I],
    store: impl Fn(&I, &mut [u8; N]),
) -> Result<()> {
    let len = items
        .len()
        .checked_mul(N)
        .ok_or_else(|| wasmtime::format_err!("size overflow copying a list"))?;
    let memory = cx
        .as_slice_mut()
        .get_mut(offset..)
        .and_then(|m| m.get_mut(..len))
        .ok_or_else(|| wasmtime::format_err!("list out of bounds of guest memory"))?;
    for (item, out) in items.iter().zip(memory.chunks_exact_mut(N)) {
        store(item, out.try_into().expect("N bytes"));
    }
    Ok(())
}

/// One record header; name and value bytes live in the batch's `data`.
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug)]
#[component(record)]
pub struct Header {
    #[component(name = "name")]
    pub name: Span,
    #[component(name = "value")]
    pub value: Span,
}

/// What a record does to the row it describes (Flink's `RowKind`).
#[derive(ComponentType, Lift, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(enum)]
#[repr(u8)]
pub enum RowKind {
    #[component(name = "insert")]
    Insert,
    #[component(name = "update-before")]
    UpdateBefore,
    #[component(name = "update-after")]
    UpdateAfter,
    #[component(name = "delete")]
    Delete,
}

/// Where one record's pieces are in its batch (see the module doc for its
/// layout in guest memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    pub key: Option<Span>,
    pub value: Span,
    pub timestamp: Option<i64>,
    pub headers_start: u32,
    pub headers_len: u32,
    pub kind: RowKind,
}

/// [`RecordMeta`] as wasmtime derives it.
#[derive(ComponentType, Lift, Lower, Clone, Copy)]
#[component(record)]
#[doc(hidden)]
pub struct Twin {
    #[component(name = "key")]
    key: Option<Span>,
    #[component(name = "value")]
    value: Span,
    #[component(name = "timestamp")]
    timestamp: Option<i64>,
    #[component(name = "headers-start")]
    headers_start: u32,
    #[component(name = "headers-len")]
    headers_len: u32,
    #[component(name = "kind")]
    kind: RowKind,
}

const META_SIZE: usize = 56;

const _: () = {
    assert!(META_SIZE == <Twin as ComponentType>::SIZE32);
    assert!(8 == <Twin as ComponentType>::ALIGN32);
};

impl RecordMeta {
    /// Its canonical-ABI bytes.
    fn store(&self, out: &mut [u8; META_SIZE]) {
        let span = |out: &mut [u8; META_SIZE], at: usize, s: Span| {
            s.store(
                (&mut out[at..at + SPAN_SIZE])
                    .try_into()
                    .expect("span bytes"),
            )
        };
        *out = [0; META_SIZE];
        if let Some(k) = self.key {
            out[0] = 1;
            span(out, 4, k);
        }
        span(out, 12, self.value);
        if let Some(t) = self.timestamp {
            out[24] = 1;
            out[32..40].copy_from_slice(&t.to_le_bytes());
        }
        // `headers-start` and `headers-len` lie as a span's two fields do.
        span(
            out,
            40,
            Span {
                offset: self.headers_start,
                len: self.headers_len,
            },
        );
        out[48] = self.kind as u8;
    }

    /// Read from canonical-ABI bytes, with the checks wasmtime's lift makes
    /// (a guest's bytes are not trusted).
    fn load(bytes: &[u8]) -> Result<RecordMeta> {
        let span = |at: usize| Span::read(&bytes[at..at + SPAN_SIZE]);
        let option = |at: usize| match bytes[at] {
            0 => Ok(false),
            1 => Ok(true),
            d => Err(wasmtime::format_err!("invalid option discriminant {d}")),
        };
        let key = option(0)?.then(|| span(4));
        let timestamp =
            option(24)?.then(|| i64::from_le_bytes(bytes[32..40].try_into().expect("8 bytes")));
        let kind = match bytes[48] {
            0 => RowKind::Insert,
            1 => RowKind::UpdateBefore,
            2 => RowKind::UpdateAfter,
            3 => RowKind::Delete,
            d => return Err(wasmtime::format_err!("unexpected enum discriminant {d}")),
        };
        let headers = span(40);
        Ok(RecordMeta {
            key,
            value: span(12),
            timestamp,
            headers_start: headers.offset,
            headers_len: headers.len,
            kind,
        })
    }
}

via_twin!(
    RecordMeta,
    Twin,
    [key, value, timestamp, headers_start, headers_len, kind]
);

/// A batch of records, as a guest returns it.
#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
pub struct BatchResult {
    #[component(name = "data")]
    pub data: Vec<u8>,
    #[component(name = "records")]
    pub records: Vec<RecordMeta>,
    #[component(name = "headers")]
    pub headers: Vec<Header>,
}

/// A batch of records, as the host passes it.
#[derive(ComponentType, Lower, Clone, Debug)]
#[component(record)]
pub struct BatchParam<'a> {
    #[component(name = "data")]
    pub data: &'a [u8],
    #[component(name = "records")]
    pub records: &'a [RecordMeta],
    #[component(name = "headers")]
    pub headers: &'a [Header],
}

/// An input record the operator could not handle.
#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
pub struct RecordError {
    #[component(name = "index")]
    pub index: u32,
    #[component(name = "message")]
    pub message: String,
}

/// Byte strings in one flat buffer, as a guest returns them.
#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
pub struct ByteListResult {
    #[component(name = "data")]
    pub data: Vec<u8>,
    #[component(name = "spans")]
    pub spans: Vec<Span>,
}

/// Byte strings in one flat buffer, as the host passes them.
#[derive(ComponentType, Lower, Clone, Debug)]
#[component(record)]
pub struct ByteListParam<'a> {
    #[component(name = "data")]
    pub data: &'a [u8],
    #[component(name = "spans")]
    pub spans: &'a [Span],
}

pub trait HostWithStore<T>: wasmtime::component::HasData {}

impl<H: ?Sized, T> HostWithStore<T> for H where H: wasmtime::component::HasData {}

/// What `bindgen!` expects of a module that stands for an interface with
/// types only (`types`, `keyed`): a `Host` trait with nothing in it, and an
/// `add_to_linker` that adds the interface's empty instance.
macro_rules! types_only_interface {
    ($name:literal) => {
        /// The interface has no functions: its instance is empty.
        pub trait Host {}

        impl<H: Host + ?Sized> Host for &mut H {}

        pub fn add_to_linker<T, D>(
            linker: &mut wasmtime::component::Linker<T>,
            _host_getter: fn(&mut T) -> D::Data<'_>,
        ) -> wasmtime::Result<()>
        where
            D: $crate::wasm::types::HostWithStore<T>,
            for<'a> D::Data<'a>: Host,
            T: 'static,
        {
            linker.instance($crate::wit_name!($name))?;
            Ok(())
        }
    };
}

pub(super) use types_only_interface;

types_only_interface!("types");

#[cfg(test)]
mod tests {
    use super::*;

    fn metas() -> Vec<RecordMeta> {
        let mut v = Vec::new();
        for (i, kind) in [
            RowKind::Insert,
            RowKind::UpdateBefore,
            RowKind::UpdateAfter,
            RowKind::Delete,
        ]
        .into_iter()
        .enumerate()
        {
            let i = i as u32;
            v.push(RecordMeta {
                key: i.is_multiple_of(2).then_some(Span {
                    offset: 7 + i,
                    len: u32::MAX - i,
                }),
                value: Span {
                    offset: 0x0102_0304 + i,
                    len: 99,
                },
                timestamp: (i != 1).then_some(-1_699_999_996_432 * i64::from(i + 1)),
                headers_start: 3 * i,
                headers_len: i,
                kind,
            });
        }
        v
    }

    #[test]
    fn record_metas_round_trip_through_their_bytes() {
        for m in metas() {
            let mut bytes = [0xaa; META_SIZE];
            m.store(&mut bytes);
            assert_eq!(RecordMeta::load(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn the_layout_is_the_canonical_one() {
        let m = RecordMeta {
            key: Some(Span { offset: 1, len: 2 }),
            value: Span { offset: 3, len: 4 },
            timestamp: Some(5),
            headers_start: 6,
            headers_len: 7,
            kind: RowKind::Delete,
        };
        let mut bytes = [0; META_SIZE];
        m.store(&mut bytes);
        let mut want = [0u8; META_SIZE];
        want[0] = 1; // key: some
        want[4] = 1; // key.offset
        want[8] = 2; // key.len
        want[12] = 3; // value.offset
        want[16] = 4; // value.len
        want[24] = 1; // timestamp: some
        want[32] = 5; // timestamp
        want[40] = 6; // headers-start
        want[44] = 7; // headers-len
        want[48] = 3; // kind: delete
        assert_eq!(bytes, want);
    }

    #[test]
    fn spans_are_offset_then_length() {
        let s = Span {
            offset: 0x0403_0201,
            len: 0x0807_0605,
        };
        let mut bytes = [0; SPAN_SIZE];
        s.store(&mut bytes);
        assert_eq!(bytes, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Span::load(&bytes).unwrap(), s);
    }

    #[test]
    fn a_guest_s_bad_discriminants_are_errors() {
        let mut bytes = [0; META_SIZE];
        RecordMeta::load(&bytes).unwrap();
        for (at, bad) in [(0, 2), (24, 7), (48, 4)] {
            bytes = [0; META_SIZE];
            bytes[at] = bad;
            let e = RecordMeta::load(&bytes).unwrap_err().to_string();
            assert!(e.contains("discriminant"), "{e}");
        }
    }
}
