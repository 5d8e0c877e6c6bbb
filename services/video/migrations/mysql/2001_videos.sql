CREATE TABLE IF NOT EXISTS videos (
    id              BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    author_id       BIGINT        NOT NULL,
    title           VARCHAR(512)  NOT NULL,
    play_key        VARCHAR(255)  NOT NULL,
    cover_key       VARCHAR(255)  NOT NULL DEFAULT '',
    -- Unique, so paging by publish time never skips or repeats a video.
    published_at_ms BIGINT        NOT NULL,
    UNIQUE KEY videos_published (published_at_ms),
    KEY videos_by_author (author_id, published_at_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
