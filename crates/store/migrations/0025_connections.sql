-- OAuth 2.0 connections obtained with a person's consent (authorization code with PKCE).
-- Portable SQL, as 0001.
--
-- One row per (tenant, connection, entity); `entity` is '' for the tenant's own. The tokens
-- (access and refresh, as JSON) are sealed with the master key (AES-256-GCM, the associated
-- data naming tenant, connection and entity), like secrets: the store never sees them in
-- clear. `lock_until` (unix ms) is the refresh lease: one process refreshes a row at a time.
CREATE TABLE connection_tokens (
    tenant_id       TEXT   NOT NULL,
    connection      TEXT   NOT NULL,
    entity          TEXT   NOT NULL,
    key_id          TEXT   NOT NULL,
    nonce           TEXT   NOT NULL,
    ciphertext      TEXT   NOT NULL,
    scopes          TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    expires_at      BIGINT,
    last_refresh_at BIGINT,
    last_error      TEXT,
    lock_until      BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connection, entity)
);

-- An authorization in flight: its `state` (the callback's key, used once) and its PKCE
-- verifier, sealed. Gone when the callback takes it, or after `expires_at`.
CREATE TABLE connection_states (
    state        TEXT   NOT NULL PRIMARY KEY,
    tenant_id    TEXT   NOT NULL,
    connection   TEXT   NOT NULL,
    entity       TEXT   NOT NULL,
    key_id       TEXT   NOT NULL,
    nonce        TEXT   NOT NULL,
    ciphertext   TEXT   NOT NULL,
    redirect_uri TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
