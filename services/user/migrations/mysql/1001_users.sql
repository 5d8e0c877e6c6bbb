CREATE TABLE IF NOT EXISTS users (
    id               BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username         VARCHAR(128) NOT NULL,
    password_hash    VARCHAR(255) NOT NULL,
    name             VARCHAR(128) NOT NULL,
    avatar           VARCHAR(1024) NOT NULL DEFAULT '',
    background_image VARCHAR(1024) NOT NULL DEFAULT '',
    signature        VARCHAR(1024) NOT NULL DEFAULT '',
    created_at_ms    BIGINT       NOT NULL,
    UNIQUE KEY users_username (username)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
