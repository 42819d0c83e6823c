// A real OpenID Connect provider (panva's oidc-provider) for bins/tests/oidc_login.rs: one
// client, any login name and password accepted by its development login and consent forms, and
// every account's ID token naming the user "Ada.Lovelace" (email ada@example.com).
//
// Usage: node provider.mjs CLIENT_ID REDIRECT_URI[,REDIRECT_URI…] [CLIENT_SECRET]
// Prints `oidc provider listening at http://127.0.0.1:PORT` once it accepts connections.
import http from "node:http";

import Provider from "oidc-provider";

const [clientId, redirectUri, clientSecret] = process.argv.slice(2);
if (!clientId || !redirectUri) {
  console.error("usage: node provider.mjs CLIENT_ID REDIRECT_URI [CLIENT_SECRET]");
  process.exit(2);
}

const server = http.createServer();
server.listen(0, "127.0.0.1", () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const client = {
    client_id: clientId,
    redirect_uris: redirectUri.split(","),
    grant_types: ["authorization_code"],
    response_types: ["code"],
  };
  if (clientSecret) {
    client.client_secret = clientSecret;
    client.token_endpoint_auth_method = "client_secret_basic";
  } else {
    client.token_endpoint_auth_method = "none";
  }
  const provider = new Provider(issuer, {
    clients: [client],
    // The claims of the requested scopes go into the ID token, as most providers do.
    conformIdTokenClaims: false,
    claims: {
      openid: ["sub"],
      profile: ["preferred_username", "name"],
      email: ["email", "email_verified"],
    },
    cookies: { keys: ["direwolf-oidc-test-cookie-key"] },
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => ({
        sub: id,
        preferred_username: "Ada.Lovelace",
        name: "Ada Lovelace",
        email: "ada@example.com",
        email_verified: true,
      }),
    }),
    pkce: { required: () => true },
  });
  server.on("request", provider.callback());
  console.log(`oidc provider listening at ${issuer}`);
});
