-- Where the console's builder draws a workflow's nodes: one JSON document per workflow name,
-- kept beside its versions and never in them, so a diff of a workflow shows logic only.
-- Portable SQL, as 0001.
CREATE TABLE workflow_layouts (
    tenant_id  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    layout     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
