//! The process allocator: mimalloc, tuned to give memory back.
//!
//! The ingest path allocates and frees many small objects across threads (decoded states,
//! points, encoded lines). With glibc's allocator, `malloc`/`free` took about 40 % of HomeIQ's
//! CPU time at 60,000 events/s and freed memory stayed in per-thread arenas; mimalloc raised the
//! end-to-end ingest rate by ~70 % on the benchmark machine (README, benchmarks). Its defaults
//! favour speed over footprint:
//!
//! * no transparent huge pages (`libmimalloc-sys`'s `no_thp` feature: mimalloc turns THP off for
//!   the process when it starts, before `main`): with THP, memory is committed 2 MiB at a time, which raised resident memory at
//!   1,000 events/s from 66 MB to 99 MB for no measurable gain;
//! * `purge_delay = 0`, set by [`tune_allocator`]: pages freed are returned to the OS at once
//!   instead of after a second, so a burst (a connect-time snapshot, a registry sync) does not
//!   stay resident (58 MB instead of 66 MB in the same run).
//!
//! The binary installs mimalloc as the global allocator (`main.rs`); this module only sets its
//! options. The option number is that of the bundled mimalloc v3 header; a unit test checks it
//! against the option's default so that a dependency update that renumbers the options fails the
//! tests instead of tuning the wrong knob.

use std::ffi::{c_int, c_long};

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t`.
const PURGE_DELAY: c_int = 15;

fn set(option: c_int, value: c_long) {
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; any option
    // number below `_mi_option_last` is valid, and this one is (see the test).
    unsafe { libmimalloc_sys::mi_option_set(option, value) }
}

/// Sets mimalloc's options for a small footprint; call first thing in `main`.
pub fn tune_allocator() {
    set(PURGE_DELAY, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(option: c_int) -> c_long {
        // SAFETY: reads an integer from mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_get(option) }
    }

    #[test]
    fn option_numbers_match_the_bundled_mimalloc() {
        // the defaults of mimalloc 3.3 identify the options: purge_delay 1000 (ms), os_tag 100
        // and max_errors 32 after it
        assert_eq!(get(PURGE_DELAY), 1000, "mi_option_purge_delay moved");
        assert_eq!(get(PURGE_DELAY + 3), 100, "mi_option_os_tag moved");
        assert_eq!(get(PURGE_DELAY + 4), 32, "mi_option_max_errors moved");
    }
}
