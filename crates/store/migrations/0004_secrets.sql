-- The credential store: secrets sealed with AES-256-GCM by hilo-tools before they get here
-- (nonce and ciphertext in base64).
-- The store never holds a plaintext value. Portable SQL, as 0001.

CREATE TABLE secrets (
    tenant_id  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    key_id     TEXT   NOT NULL,
    nonce      TEXT   NOT NULL,
    ciphertext TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
