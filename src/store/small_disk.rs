//! A size-limited file system for disk-full tests: a tmpfs mounted on a temporary directory
//! (needs root with `CAP_SYS_ADMIN`; tests fall back to an injected error elsewhere).

use std::path::Path;

/// A size-limited tmpfs mounted for one test, unmounted when dropped.
pub(crate) struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// The mount point.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `None` where mounting is not permitted (not root, no `CAP_SYS_ADMIN`).
    pub(crate) fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk { dir })
    }

    /// Fills the file system with `filler` until it refuses a byte.
    pub(crate) fn fill(&self, filler: &Path) {
        use std::io::Write as _;
        let mut f = std::fs::File::create(filler).expect("filler");
        let chunk = vec![0u8; 16 * 1024];
        while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
        let byte = [0u8; 1];
        while f.write_all(&byte).and_then(|()| f.sync_all()).is_ok() {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}
