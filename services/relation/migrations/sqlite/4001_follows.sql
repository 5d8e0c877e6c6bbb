CREATE TABLE IF NOT EXISTS follows (
    follower_id   INTEGER NOT NULL,
    followee_id   INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);
CREATE INDEX IF NOT EXISTS follows_by_followee ON follows (followee_id, follower_id);
