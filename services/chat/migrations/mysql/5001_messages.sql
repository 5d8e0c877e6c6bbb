-- A conversation is the pair (lo_user, hi_user) with lo_user < hi_user.
-- create_time is unique within a conversation so polling with the newest
-- time held never returns a message twice.
CREATE TABLE IF NOT EXISTS messages (
    id           BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    lo_user      BIGINT NOT NULL,
    hi_user      BIGINT NOT NULL,
    from_user_id BIGINT NOT NULL,
    to_user_id   BIGINT NOT NULL,
    content      TEXT   NOT NULL,
    create_time  BIGINT NOT NULL,
    UNIQUE KEY messages_conversation_time (lo_user, hi_user, create_time)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
