-- The identity of this database's contents. The counter's cache keys carry it,
-- so a cache filled from another database (a re-created schema, a backup
-- restored over this one) is never read: a new schema gets a new generation
-- here, and `douyin new-generation` gives a restored one a new generation.
CREATE TABLE IF NOT EXISTS db_generation (
    id         TINYINT     NOT NULL PRIMARY KEY,
    generation VARCHAR(32) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

INSERT INTO db_generation (id, generation) VALUES (1, REPLACE(UUID(), '-', ''));
