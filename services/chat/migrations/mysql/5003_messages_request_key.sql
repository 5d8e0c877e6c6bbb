-- The key a gateway chose for one send: a send repeated with the same key
-- (its first answer was lost) finds the message stored first. NULL for
-- messages stored without one; unique otherwise.
ALTER TABLE messages ADD COLUMN request_key VARCHAR(64) NULL;
CREATE UNIQUE INDEX messages_request_key ON messages (request_key);
