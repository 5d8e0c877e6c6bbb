CREATE TABLE IF NOT EXISTS follows (
    follower_id   BIGINT NOT NULL,
    followee_id   BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (follower_id, followee_id),
    KEY follows_by_followee (followee_id, follower_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
