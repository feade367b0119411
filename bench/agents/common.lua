-- Shared by rest.lua, mcp.lua and a2a.lua (each sets `kind` and `expect` first, then dofile()s
-- this): a POST of bench/agents/<kind>.json with the bench key, every answer checked (HTTP 200
-- and every string of `expect` in the body), and one line for bench/agents/run at the end:
--   RESULT calls=N bad=N socket_errors=N rps=R p50_ms=X p99_ms=Y
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("HILO_BENCH_KEY")
local f = assert(io.open("bench/agents/" .. kind .. ".json"))
wrk.body = f:read("*a")
f:close()

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad = 0
end

function response(status, headers, resp)
  local ok = status == 200
  if ok then
    for _, s in ipairs(expect) do
      if not string.find(resp, s, 1, true) then ok = false; break end
    end
  end
  if not ok then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("unexpected answer " .. status .. ": " .. resp:sub(1, 300) .. "\n") end
  end
end

function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("RESULT calls=%d bad=%d socket_errors=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f\n",
    summary.requests, b, e.connect + e.read + e.write + e.timeout,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
