// A real OAuth 2.0 / OpenID Connect authorization server (oauth2-mock-server) for hilo's
// connection tests. Prints one JSON line per event on stdout: {"event":"ready","issuer":…}
// once listening, then {"event":"token",…} for every token it issues or refuses.
//
// Environment: TOKEN_TTL (seconds, the `expires_in` it answers; default 3600), CLIENTS (a
// JSON object client_id → client_secret; when set, a token request must authenticate as one
// of them, with HTTP Basic or in the body, or gets 401 invalid_client), REFUSE_REFRESH_FILE
// (while that file exists, refresh requests get 400 invalid_grant: a revoked grant).
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { OAuth2Server } from 'oauth2-mock-server';

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
const ttl = Number(process.env.TOKEN_TTL ?? 3600);
const clients = JSON.parse(process.env.CLIENTS ?? '{}');
let issued = 0;

// Every token unique (a `jti`), as real servers issue them.
server.service.on('beforeTokenSigning', (token) => {
  token.payload.jti = randomUUID();
});

server.service.on('beforeResponse', (response, req) => {
  let id = req.body.client_id;
  let secret = req.body.client_secret;
  const header = req.headers.authorization ?? '';
  if (header.startsWith('Basic ')) {
    const [user, pass] = Buffer.from(header.slice(6), 'base64').toString().split(':');
    id = decodeURIComponent(user ?? '');
    secret = decodeURIComponent(pass ?? '');
  }
  const grant = req.body.grant_type;
  if (Object.keys(clients).length > 0 && clients[id] !== secret) {
    response.statusCode = 401;
    response.body = { error: 'invalid_client', error_description: 'client authentication failed' };
    console.log(JSON.stringify({ event: 'token', grant, client_id: id, refused: true }));
    return;
  }
  const refuse = process.env.REFUSE_REFRESH_FILE;
  if (grant === 'refresh_token' && refuse && existsSync(refuse)) {
    response.statusCode = 400;
    response.body = { error: 'invalid_grant', error_description: 'the grant was revoked' };
    console.log(JSON.stringify({ event: 'token', grant, client_id: id, refused: true }));
    return;
  }
  response.body.expires_in = ttl;
  issued += 1;
  console.log(JSON.stringify({
    event: 'token', grant, client_id: id, n: issued,
    scope: req.body.scope ?? null, access_token: response.body.access_token,
    refresh_token: response.body.refresh_token ?? null,
  }));
});

await server.start(0, '127.0.0.1');
server.issuer.url = `http://127.0.0.1:${server.address().port}`;
console.log(JSON.stringify({ event: 'ready', issuer: server.issuer.url }));
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
