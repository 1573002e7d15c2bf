-- Feedback from the widget: a rating replaces the earlier one on the same target (one per bot
-- answer, one per conversation), and listings go by time.
CREATE UNIQUE INDEX feedback_target_key ON feedback (conversation_id, kind, COALESCE(message_seq, 0));
CREATE INDEX feedback_created ON feedback (created_at, id);
