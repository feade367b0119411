-- Sign-ins of hilo serve that outlive a process and reach every replica: the web console's
-- sessions and the chat widget's chat tokens. Only SHA-256 hashes of the random ids and
-- tokens are kept (and of the API key a session was made with, never the key). Reads look a
-- row up by its hash and ignore it once expired; expired rows are pruned by expires_at.
-- Portable SQL, as 0001.

CREATE TABLE console_sessions (
    id_hash    TEXT   NOT NULL PRIMARY KEY,
    tenant_id  TEXT   NOT NULL,
    key_hash   TEXT   NOT NULL,
    csrf       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

CREATE TABLE chat_tokens (
    token_hash      TEXT   NOT NULL PRIMARY KEY,
    tenant_id       TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX chat_tokens_expiry ON chat_tokens (expires_at);
