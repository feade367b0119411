-- Console sessions and chat tokens are capped per tenant (and sessions per API key), and a
-- revoked key's sessions are deleted by its hash: the counts and the deletion read these.
-- Portable SQL, as 0001.

CREATE INDEX console_sessions_tenant ON console_sessions (tenant_id, expires_at);
CREATE INDEX console_sessions_key ON console_sessions (key_hash, expires_at);
CREATE INDEX chat_tokens_tenant ON chat_tokens (tenant_id, expires_at);
