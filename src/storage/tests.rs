use std::sync::Mutex;

use chrono::TimeZone;

use super::*;

const GB: u64 = 1 << 30;

/// Usage numbers set by the test.
#[derive(Default)]
struct FakeDisk(Arc<Mutex<Option<DiskUsage>>>);

impl UsageProbe for FakeDisk {
    fn usage(&self, _dir: &Path) -> std::io::Result<DiskUsage> {
        lock(&self.0).ok_or_else(|| std::io::Error::other("unreadable"))
    }
}

fn used(percent: u64) -> Option<DiskUsage> {
    Some(DiskUsage {
        total_bytes: 100 * GB,
        used_bytes: percent * GB,
        available_bytes: (100 - percent) * GB,
    })
}

fn t(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .single()
        .expect("time")
        + chrono::Duration::hours(hours)
}

struct Rig {
    guard: StorageGuard,
    disk: Arc<Mutex<Option<DiskUsage>>>,
    heartbeat: HeartbeatPause,
    retention: Retention,
    _dir: tempfile::TempDir,
}

fn rig(may_shorten_raw: bool, dir: tempfile::TempDir) -> Rig {
    let mut settings = Settings {
        data_dir: dir.path().to_path_buf(),
        storage: StorageMode::Embedded,
        ..Settings::default()
    };
    settings.storage_guard.may_shorten_raw = may_shorten_raw;
    settings.retention.raw_days = Some(90);
    let disk = Arc::new(Mutex::new(None));
    let heartbeat = HeartbeatPause::default();
    let retention = Retention::new(&settings);
    let guard = StorageGuard::new(GuardParts {
        settings,
        probe: Box::new(FakeDisk(disk.clone())),
        heartbeat: heartbeat.clone(),
        retention: retention.clone(),
    });
    Rig {
        guard,
        disk,
        heartbeat,
        retention,
        _dir: dir,
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn levels_follow_the_thresholds() {
    let s = StorageGuardSettings::default();
    assert_eq!(level_of(79.9, &s), StorageLevel::Ok);
    assert_eq!(level_of(80.0, &s), StorageLevel::Warning);
    assert_eq!(level_of(89.99, &s), StorageLevel::Warning);
    assert_eq!(level_of(90.0, &s), StorageLevel::Critical);
    assert_eq!(level_of(100.0, &s), StorageLevel::Critical);
    let d = DiskUsage {
        total_bytes: 100,
        used_bytes: 45,
        available_bytes: 45,
    };
    assert!(
        (d.used_percent() - 50.0).abs() < 1e-9,
        "reserved blocks left out as df does"
    );
}

#[test]
fn critical_stops_the_heartbeat_and_only_shortens_raw_when_allowed() {
    for may_shorten in [false, true] {
        let r = rig(may_shorten, tempdir());
        assert_eq!(r.guard.status().level, StorageLevel::Unknown);
        *lock(&r.disk) = used(50);
        assert_eq!(r.guard.check(t(0)), StorageLevel::Ok);
        assert!(r.guard.health().reasons.is_empty());
        *lock(&r.disk) = used(85);
        assert_eq!(r.guard.check(t(1)), StorageLevel::Warning);
        assert_eq!(r.guard.health().verdict, Verdict::Degraded);
        assert!(!r.heartbeat.is_paused(), "warning only warns");
        *lock(&r.disk) = used(95);
        assert_eq!(r.guard.check(t(2)), StorageLevel::Critical);
        assert!(r.heartbeat.is_paused());
        assert_eq!(r.retention.status().shortened, may_shorten);
        assert_eq!(
            r.retention.raw_days_in_effect(),
            Some(if may_shorten { 45 } else { 90 })
        );
        let health = r.guard.health();
        assert!(health.reasons[0].contains("critical"), "{health:?}");
        // unreadable: protections stay as they were
        *lock(&r.disk) = None;
        assert_eq!(r.guard.check(t(3)), StorageLevel::Unknown);
        assert!(r.heartbeat.is_paused());
        assert_eq!(r.guard.health().warnings.len(), 1);
        // below critical again: both end
        *lock(&r.disk) = used(85);
        assert_eq!(r.guard.check(t(4)), StorageLevel::Warning);
        assert!(!r.heartbeat.is_paused());
        assert!(!r.retention.status().shortened);
        assert_eq!(r.retention.raw_days_in_effect(), Some(90));
    }
}

#[test]
fn growth_survives_a_restart_and_gives_days_until_full() {
    let dir = tempdir();
    let path = dir.path().to_path_buf();
    let r = rig(false, dir);
    *lock(&r.disk) = used(50);
    r.guard.check(t(0));
    assert_eq!(r.guard.status().growth_bytes_per_day, None, "one sample");
    // a check within the hour measures but keeps no sample
    *lock(&r.disk) = used(51);
    r.guard.check(t(0) + chrono::Duration::minutes(30));
    let Rig { _dir: dir, .. } = r;
    // a restart reads the samples back
    let r = rig(false, dir);
    *lock(&r.disk) = used(52);
    r.guard.check(t(24));
    let status = r.guard.status();
    let growth = status.growth_bytes_per_day.expect("growth");
    assert!((growth - 2.0 * GB as f64).abs() < 1.0, "{growth}");
    let days = status.days_until_full.expect("days");
    assert!((days - 24.0).abs() < 1e-6, "48 GB left at 2 GB/day: {days}");
    assert!(path.join(SAMPLES_FILE).is_file());
    // shrinking (retention ran): no days until full
    *lock(&r.disk) = used(40);
    r.guard.check(t(48));
    assert_eq!(r.guard.status().days_until_full, None);
}

#[test]
fn the_ring_is_bounded_and_growth_uses_the_last_week() {
    let mut samples = VecDeque::new();
    for h in 0..(SAMPLES as i64 + 10) {
        samples.push_back(Sample {
            at: t(h),
            disk_used_bytes: 0,
            homeiq_bytes: 0,
        });
        while samples.len() > SAMPLES {
            samples.pop_front();
        }
    }
    assert_eq!(samples.len(), SAMPLES);
    let now = Sample {
        at: t(SAMPLES as i64 + 10),
        disk_used_bytes: 7 * GB,
        homeiq_bytes: 7 * GB,
    };
    let (disk, homeiq) = growth_per_day(&samples, &now).expect("growth");
    assert!((disk - GB as f64).abs() < 1.0, "{disk}");
    assert!((homeiq - GB as f64).abs() < 1.0);
}

#[test]
fn store_sizes_name_each_store_present() {
    let dir = tempdir();
    let p = dir.path();
    std::fs::write(p.join("history.db"), vec![0u8; 4096]).expect("write");
    std::fs::write(p.join("history.db-wal"), vec![0u8; 100]).expect("write");
    std::fs::write(p.join(METADATA_DB_FILE), vec![0u8; 10]).expect("write");
    std::fs::create_dir_all(p.join("spool")).expect("mkdir");
    std::fs::write(p.join("spool/seg-1"), vec![0u8; 7]).expect("write");
    std::fs::create_dir_all(p.join("influxdb/data")).expect("mkdir");
    std::fs::write(p.join("influxdb/data/x.tsm"), vec![0u8; 3]).expect("write");
    let sizes = store_sizes(p, StorageMode::Embedded);
    let of = |sizes: &[StoreSize], k| sizes.iter().find(|s| s.store == k).map(|s| s.bytes);
    assert_eq!(of(&sizes, StoreKind::History), Some(4196));
    assert_eq!(of(&sizes, StoreKind::Metadata), Some(10));
    assert_eq!(of(&sizes, StoreKind::Spool), Some(7));
    assert_eq!(of(&sizes, StoreKind::Rollups), None, "absent");
    assert_eq!(
        of(&sizes, StoreKind::InfluxdbSidecar),
        None,
        "not the backend"
    );
    let sizes = store_sizes(p, StorageMode::Sidecar);
    assert_eq!(of(&sizes, StoreKind::InfluxdbSidecar), Some(3));
}
