-- Knowledge-base passage embeddings, keyed by a hash of the model and the text they embed:
-- a change to one article re-embeds only its passages, every other passage is read back.
CREATE TABLE passage_embeddings (
    text_hash   TEXT PRIMARY KEY,
    -- little-endian f32 values, one per dimension
    vector      BLOB NOT NULL,
    created_at  BIGINT NOT NULL
);
