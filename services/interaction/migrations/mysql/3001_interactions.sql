CREATE TABLE IF NOT EXISTS favorites (
    user_id       BIGINT NOT NULL,
    video_id      BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, video_id),
    KEY favorites_by_user_time (user_id, created_at_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS comments (
    id            BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    video_id      BIGINT NOT NULL,
    user_id       BIGINT NOT NULL,
    content       TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL,
    KEY comments_by_video (video_id, created_at_ms)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
