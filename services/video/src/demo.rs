//! Demo content for a fresh embedded install: a demo user and a few short
//! videos shipped with the binary, so the first feed is not empty.

use std::sync::Arc;

use douyin_kit::{Error, Result, auth::Passwords, db::Db, storage::ObjectStore};

use crate::repo::VideoRepo;

const DEMO_USER: &str = "douyin-demo";

const VIDEOS: &[(&str, &[u8], &[u8])] = &[
    ("Test pattern, the classic", include_bytes!("../demo/demo1.mp4"), include_bytes!("../demo/demo1.jpg")),
    ("Colour bars for calibration", include_bytes!("../demo/demo2.mp4"), include_bytes!("../demo/demo2.jpg")),
    ("A moving test card", include_bytes!("../demo/demo3.mp4"), include_bytes!("../demo/demo3.jpg")),
];

/// Seeds the demo user and videos when the database has no video at all.
/// Returns how many videos were added.
pub async fn seed_demo_content(db: &Db, storage: &Arc<dyn ObjectStore>) -> Result<usize> {
    let repo = VideoRepo::new(db.clone());
    if !repo.is_empty().await? {
        return Ok(0);
    }
    let author_id = demo_user(db).await?;
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

async fn demo_user(db: &Db) -> Result<i64> {
    use sqlx::Row;
    if let Some(row) =
        sqlx::query("SELECT id FROM users WHERE username = ?").bind(DEMO_USER).fetch_optional(db.pool()).await?
    {
        return Ok(row.try_get(0)?);
    }
    // A random password nobody knows: the demo account cannot be signed into.
    let secret: [u8; 24] = rand_bytes();
    let hash = Passwords::new().hash(&secret.iter().map(|b| format!("{b:02x}")).collect::<String>()).await?;
    let mut tx = db.begin_write().await?;
    let result = sqlx::query(
        "INSERT INTO users (username, password_hash, name, signature, created_at_ms) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(DEMO_USER)
    .bind(hash)
    .bind("Douyin Demo")
    .bind("Sample videos shipped with douyin-rs")
    .bind(douyin_kit::db::now_ms())
    .execute(&mut *tx)
    .await?;
    let id = douyin_kit::db::inserted_id(&mut tx, &result).await?;
    douyin_kit::stats::create_user(&mut tx, id).await?;
    tx.commit().await?;
    Ok(id)
}

fn rand_bytes() -> [u8; 24] {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(a.as_bytes());
    out[16..].copy_from_slice(&b.as_bytes()[..8]);
    out
}
