//! Demo content for a fresh embedded install: a few short videos shipped with
//! the binary, published by the user role's demo account, so the first feed
//! is not empty.

use std::sync::Arc;

use douyin_kit::{Error, Result, db::Db, storage::ObjectStore};

use crate::repo::VideoRepo;

const VIDEOS: &[(&str, &[u8], &[u8])] = &[
    ("Test pattern, the classic", include_bytes!("../demo/demo1.mp4"), include_bytes!("../demo/demo1.jpg")),
    ("Colour bars for calibration", include_bytes!("../demo/demo2.mp4"), include_bytes!("../demo/demo2.jpg")),
    ("A moving test card", include_bytes!("../demo/demo3.mp4"), include_bytes!("../demo/demo3.jpg")),
];

/// Seeds the demo videos when the database has no video at all, published
/// by the account `author` gives (asked only then). Returns how many videos
/// were added.
pub async fn seed_demo_content(
    db: &Db,
    storage: &Arc<dyn ObjectStore>,
    author: impl Future<Output = Result<i64>>,
) -> Result<usize> {
    let repo = VideoRepo::new(db.clone());
    if !repo.is_empty().await? {
        return Ok(0);
    }
    let author_id = author.await?;
    let dir = tempfile::tempdir().map_err(|e| Error::internal(format!("tmp dir: {e}")))?;
    for (i, (title, video, cover)) in VIDEOS.iter().enumerate() {
        let video_path = dir.path().join(format!("demo{i}.mp4"));
        let cover_path = dir.path().join(format!("demo{i}.jpg"));
        std::fs::write(&video_path, video).map_err(|e| Error::internal(format!("demo video: {e}")))?;
        std::fs::write(&cover_path, cover).map_err(|e| Error::internal(format!("demo cover: {e}")))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let play_key = format!("videos/{id}.mp4");
        let cover_key = format!("covers/{id}.jpg");
        storage.put_file(&play_key, &video_path, "video/mp4").await?;
        storage.put_file(&cover_key, &cover_path, "image/jpeg").await?;
        repo.insert(author_id, title, &play_key, &cover_key).await?;
    }
    tracing::info!(videos = VIDEOS.len(), "seeded demo content");
    Ok(VIDEOS.len())
}
