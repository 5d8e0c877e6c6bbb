//! Removes upload directories that outlived the longest an upload may take.
//! A publish normally removes its own directory however it ends; this bounds
//! what is left when a handler never finishes (a call whose peer vanished).

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use douyin_kit::shutdown::Shutdown;

/// Removes `upload-*` directories under `tmp_dir` older than `max_age`;
/// returns how many were removed.
pub fn sweep(tmp_dir: &Path, max_age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(tmp_dir) else { return 0 };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let is_upload = entry.file_name().to_string_lossy().starts_with("upload-");
        let age = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| now.duration_since(t).ok());
        if is_upload && age.is_some_and(|age| age > max_age) && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Sweeps `tmp_dir` every `max_age / 2` (at least every second) until
/// `shutdown`.
pub fn spawn(tmp_dir: PathBuf, max_age: Duration, shutdown: Shutdown) {
    let every = (max_age / 2).max(Duration::from_secs(1));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.clone().wait() => return,
            }
            let dir = tmp_dir.clone();
            let removed = tokio::task::spawn_blocking(move || sweep(&dir, max_age)).await.unwrap_or(0);
            if removed > 0 {
                tracing::warn!(removed, "removed upload directories that outlived the upload deadline");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_upload_directories_go() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("upload-old")).unwrap();
        std::fs::write(dir.path().join("upload-old/video"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("keep-me")).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        std::fs::create_dir_all(dir.path().join("upload-new")).unwrap();
        assert_eq!(sweep(dir.path(), Duration::from_millis(20)), 1);
        assert!(!dir.path().join("upload-old").exists());
        assert!(dir.path().join("upload-new").exists());
        assert!(dir.path().join("keep-me").exists());
    }
}
