//! A `newc` cpio archive writer: the format the kernel unpacks as an initramfs. Entries get
//! fixed inode numbers, owner root and mtime 0, so the same inputs give the same bytes.

/// One archive being written.
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Default for Cpio {
    fn default() -> Self {
        Cpio { out: Vec::new(), ino: 1 }
    }
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl Cpio {
    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, 2, (0, 0), &[]);
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | (mode & 0o7777), 1, (0, 0), data);
    }

    /// A character device node (`major`, `minor`).
    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | (mode & 0o7777), 1, (major, minor), &[]);
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let name_len = path.len() + 1;
        let fields = [self.ino, mode, 0, 0, nlink, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name_len as u32, 0];
        self.ino += 1;
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(path.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// Closes the archive (the `TRAILER!!!` entry) and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_the_archive_is_reproducible() {
        let build = || {
            let mut c = Cpio::default();
            c.dir("dev");
            c.char_dev("dev/console", 0o600, 5, 1);
            c.file("init", 0o755, b"#!");
            c.finish()
        };
        let a = build();
        assert_eq!(a, build());
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        // The header of `init`: mode 0100755, size 2.
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("000081ed"), "regular file mode");
        assert!(text.contains("TRAILER!!!"));
    }

    #[test]
    fn cpio_tool_reads_it_back() {
        let Ok(status) = std::process::Command::new("cpio").arg("--version").output() else {
            eprintln!("skipped: the cpio tool is not installed");
            return;
        };
        assert!(status.status.success());
        let mut c = Cpio::default();
        c.dir("lib");
        c.file("lib/x.ko", 0o644, b"module bytes");
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, c.finish()).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("cd {} && cpio -idm < a.cpio 2>/dev/null && cat lib/x.ko", dir.path().display()))
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"module bytes");
    }
}
