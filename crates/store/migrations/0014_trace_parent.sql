-- The caller's W3C trace context (`traceparent`, version 00 form) of an execution started by
-- a request that carried one: its trace continues the caller's. Written once, at creation;
-- NULL for every other execution (their trace id derives from their id). Portable SQL.
ALTER TABLE executions ADD COLUMN trace_parent TEXT;
