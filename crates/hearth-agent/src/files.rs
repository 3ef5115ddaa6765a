//! Writing the request's files into the work dir, refusing any path that could leave it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use hearth_proto::frame::FileSpec;

/// Checks that `path` is a plain relative path that stays inside the work dir.
pub fn safe_relative(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() || path.len() > 255 || path.contains('\0') {
        return Err(format!("bad file name {path:?}"));
    }
    let p = Path::new(path);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("file name {path:?} must be relative, without '..'"));
    }
    Ok(p.to_path_buf())
}

/// Writes every file under `work`, owned by `owner` when given (uid, gid).
pub fn write_all(work: &Path, files: &[FileSpec], owner: Option<(u32, u32)>) -> Result<(), String> {
    for f in files {
        let rel = safe_relative(&f.path)?;
        let full = work.join(&rel);
        if let Some(parent) = full.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
            if let Some((uid, gid)) = owner {
                let mut dir = parent;
                while dir != work && dir.starts_with(work) {
                    let _ = std::os::unix::fs::chown(dir, Some(uid), Some(gid));
                    dir = dir.parent().unwrap_or(work);
                }
            }
        }
        let mode = if f.executable { 0o755 } else { 0o644 };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&full)
            .map_err(|e| format!("writing {}: {e}", f.path))?;
        file.write_all(&f.data).map_err(|e| format!("writing {}: {e}", f.path))?;
        file.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_work_dir_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a", "a\0b"] {
            assert!(safe_relative(bad).is_err(), "{bad:?}");
        }
        assert!(safe_relative("src/main.rs").is_ok());
    }

    #[test]
    fn files_land_inside_the_work_dir() {
        let dir = std::env::temp_dir().join(format!("hearth-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let files = vec![FileSpec { path: "a/b.txt".into(), data: b"hi".to_vec(), executable: true }];
        write_all(&dir, &files, None).unwrap();
        let meta = fs::metadata(dir.join("a/b.txt")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::read(dir.join("a/b.txt")).unwrap(), b"hi");
        fs::remove_dir_all(&dir).unwrap();
    }
}
