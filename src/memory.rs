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
//! * SQLite allocates through mimalloc too ([`route_sqlite_to_mimalloc`]): by default it calls the
//!   C library's `malloc`, and glibc gave each SQLite connection's worker thread an arena of its
//!   own (about 13 MB resident for the registry pool at 1,000 events/s); on musl (the add-on
//!   image) its allocator is also the slower one.
//!
//! The binary installs mimalloc as the global allocator (`main.rs`); this module only sets its
//! options and SQLite's. The option number is that of the bundled mimalloc v3 header; a unit test checks it
//! against the option's default so that a dependency update that renumbers the options fails the
//! tests instead of tuning the wrong knob.

use std::ffi::{c_int, c_long, c_void};

use rusqlite::ffi as sqlite;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t`.
const PURGE_DELAY: c_int = 15;

fn set(option: c_int, value: c_long) {
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; any option
    // number below `_mi_option_last` is valid, and this one is (see the test).
    unsafe { libmimalloc_sys::mi_option_set(option, value) }
}

/// Sets mimalloc's options for a small footprint and routes SQLite's allocations to mimalloc;
/// call first thing in `main`, before anything opens a database.
pub fn tune_allocator() {
    set(PURGE_DELAY, 0);
    if let Err(code) = route_sqlite_to_mimalloc() {
        // SQLite keeps its default allocator: slower and larger, still correct
        eprintln!("homeiq: SQLite keeps the C allocator (sqlite3_config returned {code})");
    }
}

unsafe extern "C" fn sqlite_malloc(n: c_int) -> *mut c_void {
    // SAFETY: mimalloc accepts any size; SQLite never asks for a negative one
    unsafe { libmimalloc_sys::mi_malloc(usize::try_from(n).unwrap_or(0)) }
}

unsafe extern "C" fn sqlite_free(p: *mut c_void) {
    // SAFETY: `p` came from `sqlite_malloc`/`sqlite_realloc` (or is null)
    unsafe { libmimalloc_sys::mi_free(p) }
}

unsafe extern "C" fn sqlite_realloc(p: *mut c_void, n: c_int) -> *mut c_void {
    // SAFETY: as above
    unsafe { libmimalloc_sys::mi_realloc(p, usize::try_from(n).unwrap_or(0)) }
}

unsafe extern "C" fn sqlite_size(p: *mut c_void) -> c_int {
    // SAFETY: `p` came from mimalloc (SQLite only asks about its own allocations)
    let size = unsafe { libmimalloc_sys::mi_usable_size(p) };
    c_int::try_from(size).unwrap_or(c_int::MAX)
}

unsafe extern "C" fn sqlite_roundup(n: c_int) -> c_int {
    // SAFETY: a pure size computation
    let size = unsafe { libmimalloc_sys::mi_good_size(usize::try_from(n).unwrap_or(0)) };
    c_int::try_from(size).unwrap_or(n)
}

unsafe extern "C" fn sqlite_init(_: *mut c_void) -> c_int {
    sqlite::SQLITE_OK
}

unsafe extern "C" fn sqlite_shutdown(_: *mut c_void) {}

/// Makes SQLite allocate through mimalloc (`SQLITE_CONFIG_MALLOC`). Must run before SQLite is
/// first used (`sqlite3_config` refuses afterwards, returning `SQLITE_MISUSE`); the error is
/// SQLite's result code.
pub(crate) fn route_sqlite_to_mimalloc() -> Result<(), c_int> {
    let methods = sqlite::sqlite3_mem_methods {
        xMalloc: Some(sqlite_malloc),
        xFree: Some(sqlite_free),
        xRealloc: Some(sqlite_realloc),
        xSize: Some(sqlite_size),
        xRoundup: Some(sqlite_roundup),
        xInit: Some(sqlite_init),
        xShutdown: Some(sqlite_shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: SQLite copies the methods structure; the functions are 'static and implement
    // SQLite's allocator contract with mimalloc (sizes from `mi_usable_size`)
    let code = unsafe { sqlite::sqlite3_config(sqlite::SQLITE_CONFIG_MALLOC, &raw const methods) };
    if code == sqlite::SQLITE_OK {
        Ok(())
    } else {
        Err(code)
    }
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
