-- A user's messages in time order, sent and received: what a live-push session
-- replays after a gap (ChatService.Recent).
CREATE INDEX messages_to_time ON messages (to_user_id, create_time);
CREATE INDEX messages_from_time ON messages (from_user_id, create_time);
