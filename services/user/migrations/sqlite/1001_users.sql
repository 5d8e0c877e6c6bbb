CREATE TABLE IF NOT EXISTS users (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    username         TEXT    NOT NULL UNIQUE,
    password_hash    TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    avatar           TEXT    NOT NULL DEFAULT '',
    background_image TEXT    NOT NULL DEFAULT '',
    signature        TEXT    NOT NULL DEFAULT '',
    created_at_ms    INTEGER NOT NULL
);
