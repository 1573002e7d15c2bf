-- Coaching prompt cards, imported with the rest of the knowledge base (`kb import`, the
-- first-start seed) and read back with it.
CREATE TABLE coaching_cards (
    id            TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    topics        TEXT NOT NULL DEFAULT '[]',
    when_to_use   TEXT NOT NULL,
    prompt        TEXT NOT NULL,
    tips          TEXT NOT NULL DEFAULT '[]',
    content_hash  TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);
