-- A conversation is the pair (lo_user, hi_user) with lo_user < hi_user.
-- create_time is unique within a conversation so polling with the newest
-- time held never returns a message twice.
CREATE TABLE IF NOT EXISTS messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    lo_user      INTEGER NOT NULL,
    hi_user      INTEGER NOT NULL,
    from_user_id INTEGER NOT NULL,
    to_user_id   INTEGER NOT NULL,
    content      TEXT    NOT NULL,
    create_time  INTEGER NOT NULL,
    UNIQUE (lo_user, hi_user, create_time)
);
