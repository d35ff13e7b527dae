// The OpenID provider the console's single sign-on tests sign in against: the certified `oidc-provider`
// package (npm, v9), configured here and nothing else hand-made. Started by tests/oidc/provider.py:
//
//   node provider.mjs   with OIDC_PORT (127.0.0.1), OIDC_REDIRECT_URIS (comma-separated: the console's
//                       /signin/oidc/callback), OIDC_CLIENTS (JSON [{client_id, client_secret}, ...]).
//
// The issuer is http://127.0.0.1:PORT. oidc-provider accepts an http issuer outside NODE_ENV=production
// (it only warns), and serves its cookies without `Secure` on http, so nothing else (no `proxy`) is needed
// locally. devInteractions (its built-in login and consent pages) take any login name and any password; the
// login name is the account id below, and findAccount knows only these accounts.
import crypto from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const redirectUris = (process.env.OIDC_REDIRECT_URIS || '').split(',').filter(Boolean);
const clients = JSON.parse(process.env.OIDC_CLIENTS || '[]');

// Test accounts: account id (the login name typed into the provider's form) -> claims.
export const ACCOUNTS = {
  alice: { email: 'alice@example.com', email_verified: true, name: 'Alice Example' },
  bob: { email: 'bob@example.com', email_verified: false, name: 'Bob Unverified' },
  carol: { email: 'carol@other.org', email_verified: true, name: 'Carol Other' },
  dave: { email: 'dave@example.com', email_verified: true, name: 'Dave New' },
  erin: { email: 'erin@example.com', email_verified: true, name: 'Erin Second' },
  frank: { email: 'frank@example.com', email_verified: true, name: 'Frank Third' },
};

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const configuration = {
  clients: clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks: { keys: [signingKey] },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // The e-mail claims in the ID token itself (not only at userinfo), as Google, Entra ID and Okta do.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = ACCOUNTS[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('server_error', err));
http.createServer(provider.callback()).listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
