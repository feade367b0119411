-- wrk: A2A 1.0, POST /a2a JSON-RPC SendMessage of skill three_steps with a2a.json (blocking:
-- the answer is the task once completed, the output its artifact's data part). The
-- messageId is the same in every call: hilo does not deduplicate by it.
kind = "a2a"
expect = { '"TASK_STATE_COMPLETED"', '{"n":7}' }
dofile("bench/agents/common.lua")
