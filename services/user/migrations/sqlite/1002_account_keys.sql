-- A random key per account, carried in its session tokens: a token is valid
-- only while its account's key matches, so an id reused after a restore never
-- lets an old token act for the new account. Existing accounts get a fresh key
-- (their users sign in again once).
ALTER TABLE users ADD COLUMN account_key TEXT NOT NULL DEFAULT '';
UPDATE users SET account_key = lower(hex(randomblob(16))) WHERE account_key = '';
