// A real OpenID Provider for the end-to-end tests: npm oidc-provider with a few users and
// groups, the dev login form (any password; the login field is the account id), no consent
// screen, refresh tokens, RP-initiated and back-channel logout.
// Env: PORT, CLIENTS (JSON array of client metadata), AT_TTL (access token seconds),
// ACCOUNTS_FILE (below).
import Provider from 'oidc-provider';
import { existsSync, readFileSync } from 'node:fs';

// Env ACCOUNTS_FILE: a JSON object {id: {claim: value}} a test may write at any time to change
// what later tokens (refreshes included) say about a user.
const overrides = () => {
  const f = process.env.ACCOUNTS_FILE;
  return f && existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : {};
};

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const users = {
  alice: { email: 'alice@example.com', name: 'Alice', groups: ['eng', 'admins'], roles: ['payroll-admin'], phone_number: '+15550101', email_verified: true, phone_number_verified: true },
  bob: { email: 'bob@example.com', name: 'Bob', groups: ['sales'], roles: [], phone_number: '+15550102', email_verified: true, phone_number_verified: true },
  // Tenant isolation and segregation-of-duties cases (tests/tests/tenants.rs).
  tina: { email: 'tina@acme.test', name: 'Tina', groups: ['staff'], roles: [], tenant: 'acme' },
  gary: { email: 'gary@globex.test', name: 'Gary', groups: ['staff'], roles: [], tenant: 'globex' },
  olga: { email: 'olga@globex.test', name: 'Olga', groups: ['ops'], roles: ['support-operator'], tenant: 'globex' },
  sam: { email: 'sam@acme.test', name: 'Sam', groups: ['finance'], roles: ['payroll-admin', 'payroll-approver'], tenant: 'acme' },
  // Email/SMS code cases (tests/tests/mfa_codes.rs): carol and dave have verified phones; eve's
  // address is one the provider has not verified, so no code may be sent there.
  carol: { email: 'carol@example.com', name: 'Carol', groups: ['eng'], roles: [], phone_number: '+15550103', phone_number_verified: true },
  dave: { email: 'dave@example.com', name: 'Dave', groups: ['eng'], roles: [], phone_number: '+15550104', phone_number_verified: true },
  eve: { email: 'eve@example.com', name: 'Eve', groups: ['eng'], roles: [], email_verified: false },
  // frank's provider says nothing about his address or number (no *_verified claims): absent
  // counts as unverified for codes (tests/tests/mfa_codes.rs, L14).
  frank: { email: 'frank@example.com', name: 'Frank', groups: ['eng'], roles: [], phone_number: '+15550106' },
  // An address with two `@` that a lax parser reads as being in example.com (tests/tests/policy.rs).
  mallory: { email: 'mallory@evil.test@example.com', name: 'Mallory', groups: ['eng'], roles: [], email_verified: true },
};

const provider = new Provider(issuer, {
  clients: JSON.parse(process.env.CLIENTS),
  async findAccount(ctx, id) {
    const u = users[id];
    if (!u) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...u, ...overrides()[id] }; } };
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups', 'roles', 'tenant'], phone: ['phone_number', 'phone_number_verified'] },
  scopes: ['openid', 'email', 'profile', 'groups', 'phone', 'offline_access'],
  conformIdTokenClaims: false,
  pkce: { methods: ['S256'], required: () => true },
  ttl: { AccessToken: Number(process.env.AT_TTL || 3600), IdToken: 3600, Session: 3600, Interaction: 600, Grant: 3600, RefreshToken: 86400 },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile groups phone offline_access');
    grant.addOIDCClaims(['email', 'email_verified', 'name', 'groups', 'roles', 'tenant', 'phone_number', 'phone_number_verified']);
    await grant.save();
    return grant;
  },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = `<!doctype html><body>${form}<button form="op.logoutForm" name="logout" value="yes">Sign out</button></body>`;
      },
    },
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('backchannel.error', (client, err) => console.error('backchannel.error', err.message));
provider.on('backchannel.success', (client) => console.error('backchannel.success', client.clientId));
provider.listen(port, '127.0.0.1', () => console.error(`oidc-provider listening on ${issuer}`));
