// A small MCP server (stdio) for hilo's tests, on the official TypeScript SDK: `tools/list`
// in pages of two (cursors), one tool per annotation case, a name hilo cannot use, a tool
// that returns its request's `_meta` and arguments, and one that fails with a JSON-RPC error.
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import {
  CallToolRequestSchema,
  ListToolsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

const any = { type: "object" };
const tools = [
  { name: "meta", description: "Returns the request's _meta and arguments", inputSchema: any },
  { name: "plain", description: "No annotations", inputSchema: any },
  { name: "wipe", description: "Destructive", inputSchema: any, annotations: { destructiveHint: true } },
  { name: "peek", description: "Read-only", inputSchema: any, annotations: { readOnlyHint: true } },
  {
    name: "odd",
    description: "Read-only and destructive at once",
    inputSchema: any,
    annotations: { readOnlyHint: true, destructiveHint: true },
  },
  { name: "bad name!", description: "A name hilo tool names cannot have", inputSchema: any },
  { name: "explode", description: "Fails with a JSON-RPC error", inputSchema: any },
];

const server = new Server({ name: "paged", version: "1.0.0" }, { capabilities: { tools: {} } });

server.setRequestHandler(ListToolsRequestSchema, async (request) => {
  const start = Number(request.params?.cursor ?? 0);
  const next = start + 2 < tools.length ? String(start + 2) : undefined;
  return { tools: tools.slice(start, start + 2), nextCursor: next };
});

server.setRequestHandler(CallToolRequestSchema, async (request) => {
  const { name, arguments: args, _meta: meta } = request.params;
  if (name === "meta") {
    return {
      content: [{ type: "text", text: "meta" }],
      structuredContent: { meta: meta ?? null, arguments: args ?? {} },
    };
  }
  if (name === "explode") {
    throw new Error("the paged server exploded on purpose");
  }
  return { content: [{ type: "text", text: `called ${name}` }] };
});

await server.connect(new StdioServerTransport());
