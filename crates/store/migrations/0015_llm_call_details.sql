-- What the provider said of each model call (issue 34): the model that answered, why it
-- stopped (a JSON array of finish reasons), and, only with `[telemetry] capture_content`, the
-- prompt and the answer, redacted (JSON, the GenAI conventions' message lists). Portable SQL.

ALTER TABLE llm_calls ADD COLUMN response_model TEXT;
ALTER TABLE llm_calls ADD COLUMN finish_reasons TEXT;
ALTER TABLE llm_calls ADD COLUMN input_messages TEXT;
ALTER TABLE llm_calls ADD COLUMN output_messages TEXT;
