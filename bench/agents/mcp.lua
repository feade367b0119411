-- wrk: MCP, POST /mcp tools/call of the three_steps tool with mcp.json (stateless streamable
-- HTTP, JSON answers: no initialize; the answer carries the finished output as
-- structuredContent).
kind = "mcp"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Protocol-Version"] = "2025-06-18"
expect = { '"structuredContent":{"n":7}' }
dofile("bench/agents/common.lua")
