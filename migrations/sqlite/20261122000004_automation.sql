-- Escalation, routing and feedback. Rules live in escalation_rules (0001); every firing of a
-- rule is recorded here with its reason and the visitor message that triggered it.
CREATE TABLE escalations (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    rule             TEXT NOT NULL,
    reason           TEXT NOT NULL,
    message_seq      BIGINT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX escalations_conversation ON escalations (conversation_id, created_at);
CREATE INDEX escalations_created ON escalations (created_at);

-- The skill a queued conversation needs, the summary handed to the agent, and when it was
-- first escalated (for analytics).
ALTER TABLE conversations ADD COLUMN skill TEXT;
ALTER TABLE conversations ADD COLUMN handoff TEXT;
ALTER TABLE conversations ADD COLUMN escalated_at BIGINT;
CREATE INDEX conversations_queue ON conversations (state, priority, queued_at);

-- When an agent last got a conversation: ties in load go to the longest idle.
ALTER TABLE agents ADD COLUMN last_assigned_at BIGINT;
