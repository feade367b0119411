-- wrk: synchronous executions of three_steps (POST /api/v1/workflows/three_steps/execute).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("HILO_BENCH_KEY")
wrk.body = '{"input": {"n": 7}}'

local errors = 0
response = function(status, headers, body)
  if status ~= 200 or not string.find(body, '"status":"succeeded"', 1, true) then
    errors = errors + 1
    if errors <= 3 then io.stderr:write("unexpected answer " .. status .. ": " .. body:sub(1, 200) .. "\n") end
  end
end
