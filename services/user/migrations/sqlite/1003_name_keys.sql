-- The confusable skeleton (UTS #39, case-folded) of each account name: two
-- names that look alike share it, and the unique index lets only one of them
-- be an account. Existing rows start without one (NULL, which the index allows
-- any number of times); the user role fills them in when it migrates, leaving
-- it NULL only on the later of two existing look-alikes.
ALTER TABLE users ADD COLUMN name_key TEXT NULL;
CREATE UNIQUE INDEX users_name_key ON users (name_key);
