-- Switchboard schema, SQLite flavour. Timestamps are unix milliseconds; JSON is TEXT.
CREATE TABLE visitors (
    id          TEXT PRIMARY KEY,
    attributes  TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL
);

CREATE TABLE agents (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    email             TEXT NOT NULL CONSTRAINT agents_email_key UNIQUE,
    role              TEXT NOT NULL CHECK (role IN ('agent', 'admin')),
    skills            TEXT NOT NULL DEFAULT '[]',
    max_concurrent    BIGINT NOT NULL DEFAULT 5 CHECK (max_concurrent >= 0),
    status            TEXT NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'away', 'offline')),
    status_changed_at BIGINT,
    created_at        BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    token_hash   TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL
);
CREATE INDEX api_tokens_agent ON api_tokens (agent_id);

CREATE TABLE conversations (
    id           TEXT PRIMARY KEY,
    visitor_id   TEXT NOT NULL REFERENCES visitors (id) ON DELETE CASCADE,
    state        TEXT NOT NULL CHECK (state IN ('bot', 'queued', 'assigned', 'resolved')),
    priority     BIGINT NOT NULL DEFAULT 0,
    assignee_id  TEXT REFERENCES agents (id) ON DELETE SET NULL,
    tags         TEXT NOT NULL DEFAULT '[]',
    last_seq     BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    queued_at    BIGINT,
    assigned_at  BIGINT,
    resolved_at  BIGINT
);
CREATE INDEX conversations_visitor ON conversations (visitor_id, created_at);
CREATE INDEX conversations_listing ON conversations (created_at, id);
CREATE INDEX conversations_state ON conversations (state, created_at);
CREATE INDEX conversations_assignee ON conversations (assignee_id, state);

CREATE TABLE messages (
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              BIGINT NOT NULL,
    author           TEXT NOT NULL CHECK (author IN ('visitor', 'bot', 'agent', 'system')),
    author_id        TEXT,
    text             TEXT NOT NULL,
    client_id        TEXT,
    analysis         TEXT,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE UNIQUE INDEX messages_client_id_key ON messages (conversation_id, client_id);

CREATE TABLE knowledge_articles (
    id            TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    body          TEXT NOT NULL,
    tags          TEXT NOT NULL DEFAULT '[]',
    intents       TEXT NOT NULL DEFAULT '[]',
    locale        TEXT NOT NULL DEFAULT 'en',
    content_hash  TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE intents (
    name         TEXT PRIMARY KEY,
    description  TEXT,
    examples     TEXT NOT NULL DEFAULT '[]',
    answer       TEXT,
    article_id   TEXT REFERENCES knowledge_articles (id) ON DELETE SET NULL,
    escalate     BIGINT NOT NULL DEFAULT 0,
    skill        TEXT,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE escalation_rules (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL CONSTRAINT escalation_rules_name_key UNIQUE,
    definition  TEXT NOT NULL,
    enabled     BIGINT NOT NULL DEFAULT 1,
    position    BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE feedback (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_seq      BIGINT,
    kind             TEXT NOT NULL CHECK (kind IN ('answer', 'conversation')),
    rating           BIGINT NOT NULL,
    comment          TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX feedback_conversation ON feedback (conversation_id);

CREATE TABLE server_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
