-- Humans in the loop: conversations, their messages and status changes, human agents, the
-- human queue (work items) and the per-tenant queue lock. Portable SQL, as 0001.

-- A conversation. Queried columns are columns; the rest (summary, metadata, handover, note,
-- callback_url) is JSON in `doc`. `current_execution` (the run answering the latest customer
-- message) is written only by `swap_execution`'s compare-and-set. `row_version` goes up on every write of
-- the queue or of `update_conversation`.
CREATE TABLE hil_conversations (
    id                 TEXT   NOT NULL PRIMARY KEY,
    tenant_id          TEXT   NOT NULL,
    customer_id        TEXT   NOT NULL,
    channel            TEXT   NOT NULL,
    status             TEXT   NOT NULL,
    assigned_agent     TEXT,
    workflow           TEXT   NOT NULL,
    version            BIGINT,
    handovers          BIGINT NOT NULL,
    consecutive_errors BIGINT NOT NULL,
    last_seq           BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    handed_over_at     BIGINT,
    first_human_at     BIGINT,
    resolved_at        BIGINT,
    ended_at           BIGINT,
    row_version        BIGINT NOT NULL,
    doc                TEXT   NOT NULL,
    current_execution  TEXT
);
CREATE INDEX hil_conversations_by_created ON hil_conversations (tenant_id, created_at);
CREATE INDEX hil_conversations_by_status ON hil_conversations (tenant_id, status);

-- Messages, numbered 1, 2, … within their conversation (`hil_conversations.last_seq`).
-- A key may belong to a human agent: it then acts as that agent only.
ALTER TABLE api_keys ADD COLUMN agent_id TEXT;

-- Messages to POST to their conversation's callback URL (written with the message, so a
-- restart loses none), delivered in order per conversation.
CREATE TABLE hil_deliveries (
    tenant_id       TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    url             TEXT   NOT NULL,
    status          TEXT   NOT NULL,
    attempts        BIGINT NOT NULL,
    next_at         BIGINT NOT NULL,
    last_error      TEXT,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX hil_deliveries_due ON hil_deliveries (status, next_at);

CREATE TABLE hil_messages (
    tenant_id       TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    sender          TEXT   NOT NULL,
    author          TEXT,
    content         TEXT   NOT NULL,
    execution_id    TEXT,
    at              BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

-- Every change of a conversation's status (and assignments that keep it), `n` = 1, 2, … in
-- order within the conversation.
CREATE TABLE hil_transitions (
    tenant_id       TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    n               BIGINT NOT NULL,
    from_status     TEXT   NOT NULL,
    to_status       TEXT   NOT NULL,
    actor           TEXT   NOT NULL,
    reason          TEXT   NOT NULL,
    at              BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, n)
);

-- Human agents. `email_key` is the e-mail in ASCII lower case (e-mails are matched without
-- regard to ASCII case); `skills` is a JSON array. Loads are counted from `hil_items`.
CREATE TABLE hil_agents (
    tenant_id  TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    email      TEXT   NOT NULL,
    email_key  TEXT   NOT NULL,
    status     TEXT   NOT NULL,
    skills     TEXT   NOT NULL,
    capacity   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email_key)
);

-- The human queue: handed-over conversations and `human` nodes' tasks. `skills` is a JSON
-- array; `seq` orders items queued in the same millisecond (per tenant, increasing).
CREATE TABLE hil_items (
    tenant_id   TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    item_key    TEXT   NOT NULL,
    skills      TEXT   NOT NULL,
    assignee    TEXT,
    priority    BIGINT NOT NULL,
    state       TEXT   NOT NULL,
    agent       TEXT,
    queued_at   BIGINT NOT NULL,
    assigned_at BIGINT,
    claimed_at  BIGINT,
    done_at     BIGINT,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, kind, item_key)
);
CREATE INDEX hil_items_by_state ON hil_items (tenant_id, state);
CREATE INDEX hil_items_by_agent ON hil_items (tenant_id, agent, state);

-- One row per tenant, written first by every queue operation: on SQLite that write takes the
-- database's write lock, on PostgreSQL the row lock serializes the tenant's queue operations.
CREATE TABLE hil_locks (
    tenant_id TEXT   NOT NULL PRIMARY KEY,
    version   BIGINT NOT NULL
);
