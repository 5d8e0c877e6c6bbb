CREATE TABLE IF NOT EXISTS favorites (
    user_id       INTEGER NOT NULL,
    video_id      INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, video_id)
);
CREATE INDEX IF NOT EXISTS favorites_by_user_time ON favorites (user_id, created_at_ms);

CREATE TABLE IF NOT EXISTS comments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id      INTEGER NOT NULL,
    user_id       INTEGER NOT NULL,
    content       TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS comments_by_video ON comments (video_id, created_at_ms);
