//! Counters defined once.
//!
//! A component's counters are atomics bumped on its hot path, read as a plain snapshot by
//! `/health/deep` (typed, in the OpenAPI document) and exported to `/metrics`. Written by hand,
//! each counter appears four times (the atomic, the snapshot field, the copy between them and
//! the metrics line) and they drift apart. [`counters!`] declares each counter once, with its
//! documentation, and derives the atomic struct, the snapshot struct, `snapshot()` and
//! [`CounterSet::each`], which the metrics exporter walks: the metric is
//! `<prefix>_<field>` (or `<prefix>_<name>` for a field declared `field => "name"`, where the
//! published metric name differs from the API's field name), its help text the field's
//! documentation.
//!
//! Hand-written because it is twenty lines of `macro_rules!`; the crates that generate metric
//! structs (`prometheus-client`'s derive, `metrics`) own the metric values themselves and give no
//! typed snapshot for the health report.

/// A snapshot of counters that the metrics exporter can walk.
pub(crate) trait CounterSet {
    /// The metric name prefix, e.g. `homeiq_ingest`.
    const PREFIX: &'static str;
    /// Calls `f(metric, help, value)` for every counter, in declaration order; `metric` is the
    /// name after the prefix.
    fn each(&self, f: &mut dyn FnMut(&'static str, &'static str, u64));
}

/// Declares counters once: `counters! { /// docs  pub struct Atomics => Snapshot ("prefix") {
/// /// doc  field, /// doc  other => "metric_name", … } }`.
macro_rules! counters {
    (@metric $field:ident) => { stringify!($field) };
    (@metric $field:ident $metric:literal) => { $metric };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident => $snapshot:ident ($prefix:literal) {
            $( $(#[doc = $doc:literal])+ $field:ident $(=> $metric:literal)? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name {
            $( $(#[doc = $doc])+ pub $field: ::std::sync::atomic::AtomicU64, )*
        }

        #[doc = concat!("[`", stringify!($name), "`] as plain numbers.")]
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, ::serde::Serialize, ::utoipa::ToSchema,
        )]
        $vis struct $snapshot {
            $( $(#[doc = $doc])+ pub $field: u64, )*
        }

        impl $snapshot {
            /// All counters at zero.
            #[allow(dead_code)]
            pub(crate) const ZERO: $snapshot = $snapshot { $( $field: 0, )* };
        }

        impl $name {
            /// The counters' current values.
            pub(crate) fn snapshot(&self) -> $snapshot {
                $snapshot {
                    $( $field: self.$field.load(::std::sync::atomic::Ordering::Relaxed), )*
                }
            }
        }

        impl $crate::counters::CounterSet for $snapshot {
            const PREFIX: &'static str = $prefix;
            fn each(&self, f: &mut dyn FnMut(&'static str, &'static str, u64)) {
                $( f(
                    $crate::counters::counters!(@metric $field $($metric)?),
                    concat!($($doc),+).trim(),
                    self.$field,
                ); )*
            }
        }
    };
}

pub(crate) use counters;

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::CounterSet;

    counters! {
        /// Test counters.
        pub(crate) struct Demo => DemoSnapshot ("homeiq_demo") {
            /// Things seen.
            seen,
            /// Things dropped
            /// (two doc lines).
            dropped => "things_dropped",
        }
    }

    #[test]
    fn one_declaration_gives_atomics_a_snapshot_and_metric_lines() {
        let c = Demo::default();
        c.seen.fetch_add(3, Ordering::Relaxed);
        c.dropped.fetch_add(1, Ordering::Relaxed);
        let s = c.snapshot();
        assert_eq!((s.seen, s.dropped), (3, 1));
        let mut lines = Vec::new();
        s.each(&mut |field, help, value| lines.push((field, help, value)));
        assert_eq!(
            lines,
            [
                ("seen", "Things seen.", 3),
                ("things_dropped", "Things dropped (two doc lines).", 1)
            ]
        );
        assert_eq!(DemoSnapshot::PREFIX, "homeiq_demo");
        assert_eq!(DemoSnapshot::ZERO, DemoSnapshot::default());
        assert_eq!(
            serde_json::to_value(s).expect("json"),
            serde_json::json!({"seen": 3, "dropped": 1})
        );
    }
}
