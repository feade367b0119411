-- wrk: REST, POST /api/v1/workflows/three_steps/execute with rest.json (synchronous: the
-- answer is the finished execution).
kind = "rest"
expect = { '"status":"succeeded"', '"n":7' }
dofile("bench/agents/common.lua")
