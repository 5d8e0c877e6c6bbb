//! First-frame covers via ffmpeg, bounded in time; absent ffmpeg or a failed
//! extraction leaves the video with the default cover.

use std::{path::Path, process::Stdio, time::Duration};

/// Writes the first frame of `video` as a JPEG to `out`. Returns false (and
/// logs why) when no cover could be made within `timeout`.
pub async fn first_frame(ffmpeg: &str, video: &Path, out: &Path, timeout: Duration) -> bool {
    let child = tokio::process::Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"])
        .arg(video)
        .args(["-frames:v", "1", "-vf", "scale='min(720,iw)':-2", "-q:v", "4", "-f", "image2"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(error) => {
            tracing::debug!(%error, "ffmpeg is not available; using the default cover");
            return false;
        }
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) if output.status.success() => {
            tokio::fs::metadata(out).await.map(|m| m.len() > 0).unwrap_or(false)
        }
        Ok(Ok(output)) => {
            tracing::info!(stderr = %String::from_utf8_lossy(&output.stderr).trim(), "no cover extracted");
            false
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "ffmpeg failed");
            false
        }
        Err(_) => {
            tracing::warn!("cover extraction timed out");
            false
        }
    }
}

/// Whether `ffmpeg` runs here.
pub async fn available(ffmpeg: &str) -> bool {
    tokio::process::Command::new(ffmpeg)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}
