CREATE TABLE IF NOT EXISTS videos (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    author_id       INTEGER NOT NULL,
    title           TEXT    NOT NULL,
    play_key        TEXT    NOT NULL,
    cover_key       TEXT    NOT NULL DEFAULT '',
    -- Unique, so paging by publish time never skips or repeats a video.
    published_at_ms INTEGER NOT NULL UNIQUE
);

CREATE INDEX IF NOT EXISTS videos_by_author ON videos (author_id, published_at_ms);
