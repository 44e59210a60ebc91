// One dashboard scenario in Debian's headless Chromium, driven by playwright-core.
// Run by tests/dashboard.rs:  node tests/dashboard/scenario.mjs NAME
// Environment: DASH_ADMIN (admin base URL), DASH_PROXY (proxy base URL), DASH_TOKEN (admin
// token; unset: none configured), DASH_SCREENSHOT (PNG path), DASH_CHROMIUM (default
// /usr/bin/chromium), DASH_PROMPT (an easy prompt for the synthetic world).
// Exits 0 when every check passed; otherwise prints what failed and exits 1.
import { chromium } from 'playwright-core';

const env = process.env;
const ADMIN = env.DASH_ADMIN;
const PROXY = env.DASH_PROXY;
const TOKEN = env.DASH_TOKEN || '';
const SHOT = env.DASH_SCREENSHOT;
const PROMPT = env.DASH_PROMPT || 'say hello to Ada';
const name = process.argv[2];

const hardStop = setTimeout(() => { console.error(`scenario ${name}: gave up after 150 s`); process.exit(2); }, 150_000);

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
  console.log(`ok - ${msg}`);
}

async function signIn(page) {
  await page.goto(`${ADMIN}/`);
  if (TOKEN) {
    await page.locator('#signin-view').waitFor({ state: 'visible' });
    await page.fill('#token', TOKEN);
    await page.click('#signin button[type=submit]');
  }
  await page.locator('#nav').waitFor({ state: 'visible' });
}

async function route(prompt) {
  const r = await fetch(`${PROXY}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'auto', messages: [{ role: 'user', content: prompt }] }),
  });
  const body = await r.text();
  check(r.status === 200, `routed request answered 200 (got ${r.status}: ${body.slice(0, 200)})`);
  return { id: r.headers.get('x-dualrouter-decision-id'), model: r.headers.get('x-dualrouter-model') };
}

async function adminGet(path) {
  const headers = TOKEN ? { authorization: `Bearer ${TOKEN}` } : {};
  const r = await fetch(`${ADMIN}${path}`, { headers });
  return { status: r.status, body: await r.json() };
}

const scenarios = {
  // Sign in with the admin token: refused token, accepted token, kept across a reload, never
  // in the URL or the page; then executors load.
  async signin(page) {
    await page.goto(`${ADMIN}/`);
    await page.locator('#signin-view').waitFor({ state: 'visible' });
    check(await page.locator('#nav').isHidden(), 'the sections stay hidden before sign-in');
    await page.fill('#token', 'not-the-token');
    await page.click('#signin button[type=submit]');
    await page.locator('#signin-error', { hasText: 'not accepted' }).waitFor();
    check(true, 'a wrong token is refused with a message');
    await page.fill('#token', TOKEN);
    await page.click('#signin button[type=submit]');
    await page.locator('#nav').waitFor({ state: 'visible' });
    check(await page.locator('#signin-view').isHidden(), 'the sign-in form is gone');
    check((await page.textContent('#mode')).includes('signed in'), 'the header says signed in');
    check(!page.url().includes(TOKEN), 'the token is not in the URL');
    check(!(await page.content()).includes(TOKEN), 'the token is not in the page');
    check(await page.evaluate((t) => sessionStorage.getItem('dualrouter.adminToken') === t, TOKEN),
      'the token is in session storage');
    check(await page.evaluate(() => localStorage.length === 0), 'nothing in local storage');
    await page.reload();
    await page.locator('#nav').waitFor({ state: 'visible' });
    check(await page.locator('#signin-view').isHidden(), 'a reload keeps the session');
    await page.click('#nav a[data-view=executors]');
    await page.locator('#executors-table tr[data-model=cheap]').waitFor();
    check(!page.url().includes(TOKEN), 'still not in the URL after navigating');
    await page.click('#reload');
    await page.locator('#banner', { hasText: 'Config reloaded' }).waitFor();
    check(true, 'the config can be reloaded from the page');
    await page.click('#nav a[data-view=overview]');
    await page.locator('#tile-requests').waitFor();
    check(true, 'the overview loads its figures');
    await page.screenshot({ path: SHOT, fullPage: true });
  },

  // Create a policy (field errors next to their fields first), see it listed, edit it.
  async policy(page) {
    await signIn(page);
    await page.click('#nav a[data-view=policies]');
    await page.locator('#policies-table tr[data-route="general/question"]').waitFor();
    await page.click('#policy-new');
    await page.fill('#pf-domain', 'billing');
    await page.fill('#pf-action', 'refund');
    await page.fill('#pf-description', 'refunds, invoices and charges');
    await page.fill('#pf-examples', 'I want my money back\nwhy was I charged twice?');
    await page.click('#policy-save');
    await page.locator('.field-error[data-field=models]', { hasText: 'at least one model' }).waitFor();
    check(true, 'saving without models shows the API message next to the models');
    await page.selectOption('#pf-model-pick', 'strong');
    await page.click('#pf-model-add');
    await page.selectOption('#pf-model-pick', 'cheap');
    await page.click('#pf-model-add');
    await page.click('#pf-models li[data-model=cheap] button[title="Move up"]');
    const order = await page.$$eval('#pf-models li', (lis) => lis.map((li) => li.dataset.model));
    check(order.join(',') === 'cheap,strong', `models ranked by the arrows (${order})`);
    // A model no provider serves (say, removed since): the API names models[2].
    await page.evaluate(() => { pf.models.push('ghost-model'); renderModelPicker(); });
    await page.click('#policy-save');
    const ghostErr = page.locator('#pf-models li[data-model=ghost-model] .field-error');
    await ghostErr.filter({ hasText: "model 'ghost-model' is not served" }).waitFor();
    check(true, 'the 422 for models[2] sits next to that model');
    check(await page.locator('#pf-models li[data-model=cheap] .field-error').textContent() === '', 'and not next to the others');
    await page.screenshot({ path: SHOT.replace(/\.png$/, '-form.png'), fullPage: true });
    await page.click('#pf-models li[data-model=ghost-model] button.danger');
    await page.fill('#pf-domain', 'billing/x');
    await page.click('#policy-save');
    await page.locator('.field-error[data-field=domain]', { hasText: "'/'" }).waitFor();
    check(true, 'a bad domain is reported next to the domain field');
    await page.fill('#pf-domain', 'billing');
    await page.click('#policy-save');
    const row = page.locator('#policies-table tr[data-route="billing/refund"]');
    await row.waitFor();
    check(await page.locator('#policy-form').isHidden(), 'the form closes after saving');
    const chips = await row.locator('.chip').allTextContents();
    check(chips.join(',') === 'cheap,strong', `the new policy is listed with its models (${chips})`);
    const api = await adminGet('/api/routing/policies');
    const stored = api.body.find((p) => p.domain === 'billing' && p.action === 'refund');
    check(stored && stored.examples.length === 2 && stored.models.join() === 'cheap,strong',
      'the API has the policy as entered');
    await row.locator('button', { hasText: 'Edit' }).click();
    check((await page.inputValue('#pf-description')) === 'refunds, invoices and charges', 'edit opens with the policy');
    await page.fill('#pf-description', 'refunds and invoices');
    await page.click('#policy-save');
    await row.locator('td', { hasText: 'refunds and invoices' }).waitFor();
    check(true, 'an edit is listed');
    await page.screenshot({ path: SHOT, fullPage: true });
    await row.locator('button', { hasText: 'Delete' }).click();
    await row.locator('button', { hasText: 'Really delete?' }).click();
    await row.waitFor({ state: 'detached' });
    check(true, 'a deleted policy leaves the list');
  },

  // Route a request while the decisions list is open: it appears by itself; its detail shows
  // the reasoning, every candidate and the attempts. No admin token configured here.
  async decision(page) {
    await signIn(page);
    check((await page.textContent('#mode')).includes('no admin token'), 'open mode is shown without a token');
    await page.click('#nav a[data-view=decisions]');
    await page.locator('#decisions-empty').waitFor({ state: 'visible' });
    const { id, model } = await route(PROMPT);
    check(!!id && !!model, `the proxy routed it to ${model}`);
    const row = page.locator(`#decisions-table tr[data-id="${id}"]`);
    await row.waitFor({ timeout: 20_000 });
    check(true, 'the decision appears in the live list without a reload');
    check((await row.textContent()).includes(model), 'its row names the chosen model');
    const chips = await row.locator('.chip').count();
    check(chips === 2, `its row shows both candidates (${chips})`);
    await row.click();
    const reasoning = page.locator('#decision-reasoning');
    await reasoning.waitFor();
    check((await reasoning.textContent()).includes(model), 'the detail shows the reasoning line');
    const cands = await page.$$eval('#decision-detail h3 + .table-wrap tbody tr td:first-child', (tds) => tds.map((t) => t.textContent));
    check(cands.includes('cheap') && cands.includes('strong'), `the detail lists every candidate (${cands})`);
    check((await page.locator('#decision-detail td.status-ok').count()) >= 1, 'the detail lists the attempt');
    await page.screenshot({ path: SHOT, fullPage: true });
    const other = model === 'cheap' ? 'strong' : 'cheap';
    await page.selectOption('#filter-model', other);
    await row.waitFor({ state: 'detached' });
    check(true, `filtering by model ${other} hides it`);
    await page.selectOption('#filter-model', model);
    await row.waitFor();
    check(true, `filtering by model ${model} shows it`);
    await row.click();
    await page.locator('#decision-reasoning').waitFor();
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `the list and the detail fit a phone (${overflow}px too wide)`);
    await page.screenshot({ path: SHOT.replace(/\.png$/, '-phone.png'), fullPage: true });
  },

  // The `cheap` upstream answers 503 (forced by the test); one routed request opens its
  // breaker, and the executors page turns it red by itself.
  async breaker(page) {
    await signIn(page);
    await page.click('#nav a[data-view=executors]');
    const cheap = page.locator('#executors-table tr[data-model=cheap]');
    await cheap.waitFor();
    check((await cheap.getAttribute('data-health')) === 'healthy', 'cheap starts healthy');
    const dot = async (loc) => loc.locator('.health').evaluate((el) => getComputedStyle(el).color);
    const green = await dot(cheap);
    const { model } = await route(PROMPT);
    check(model === 'strong', `the request fell back to strong (${model})`);
    await page.locator('#executors-table tr[data-model=cheap][data-health=cooling_down]').waitFor({ timeout: 15_000 });
    check(true, 'cheap turns cooling_down without a reload');
    const red = await dot(cheap);
    const rgb = red.match(/\d+/g).map(Number);
    check(red !== green && rgb[0] > 150 && rgb[1] < 100, `its health is drawn red (${red}, was ${green})`);
    const strong = page.locator('#executors-table tr[data-model=strong]');
    check((await strong.getAttribute('data-health')) === 'healthy', 'strong stays healthy');
    check((await cheap.locator('td').last().textContent()).includes('ago'), 'its last check is shown');
    await page.screenshot({ path: SHOT, fullPage: true });
    // The same page on a phone: nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `no sideways scrolling on a phone (${overflow}px)`);
    await page.screenshot({ path: SHOT.replace(/\.png$/, '-phone.png'), fullPage: true });
  },

  // Charts from routed traffic and feedback; then MIRT: a bad upload named by its row, a good
  // one, a refit on it with progress, and activation (a 409 refusal shown with its force button).
  async mirt(page) {
    await signIn(page);
    const ids = [];
    for (const p of [PROMPT, 'what colour is a plum?', 'say hello to Grace',
      'prove that there are infinitely many primes of the form 5n+1 using cyclotomic polynomials, and give every step of the number-theoretic argument rigorously']) {
      ids.push((await route(p)).id);
    }
    const fb = await fetch(`${PROXY}/v1/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ decision_id: ids[0], score: 0.8 }),
    });
    check(fb.ok, `feedback accepted (${fb.status})`);
    await page.click('#nav a[data-view=decisions]');
    await page.locator(`#decisions-table tr[data-id="${ids[3]}"]`).waitFor({ timeout: 20_000 });
    await page.click('#nav a[data-view=overview]');
    await page.locator('#tile-requests .v', { hasText: /^4$/ }).waitFor();
    check(true, 'the overview counts the four requests');
    check(await page.locator('#chart-requests svg polyline').count() >= 1, 'requests per model are drawn');
    check(await page.locator('#chart-cost svg polyline').count() >= 1, 'cost per model is drawn');
    check(await page.locator('#chart-savings svg rect').count() >= 2, 'savings against the dearest are drawn');
    check(await page.locator('#chart-feedback svg rect').count() === 1, 'the mean feedback of the scored model is drawn');
    const saved = await page.textContent('#tile-savings .v');
    check(saved !== '$0', `routing to cheap saved something (${saved})`);
    await page.screenshot({ path: SHOT.replace(/\.png$/, '-overview.png'), fullPage: true });

    await page.click('#nav a[data-view=mirt]');
    await page.locator('#checkpoints-table tr[data-version="1"] .badge', { hasText: 'active' }).waitFor();
    check(true, 'the active checkpoint is marked');
    const v1 = await page.textContent('#checkpoints-table tr[data-version="1"]');
    check(/test split: AIQ 0\.\d{4}/.test(v1), `its test-split figures are shown (${v1})`);
    await page.setInputFiles('#upload-file', { name: 'bad.csv', mimeType: 'text/csv', buffer: Buffer.from('prompt,cheap,strong\nhi,1,0\nyo,2,1\n') });
    await page.click('#upload-send');
    const err = page.locator('#upload-form .field-error[data-field=body]');
    await err.filter({ hasText: 'row 2' }).waitFor();
    check((await err.textContent()).startsWith('row 2: column `cheap`'), `a bad file is refused naming its row (${await err.textContent()})`);
    const lines = [];
    for (let i = 0; i < 30; i++) {
      lines.push({ prompt: `say hello to friend number ${i}`, model: 'cheap', score: 1 });
      lines.push({ prompt: `say hello to friend number ${i}`, model: 'strong', score: 1 });
      lines.push({ prompt: `prove theorem ${i} about primes of the form ${i}n+1 rigorously, every step`, model: 'cheap', score: 0 });
      lines.push({ prompt: `prove theorem ${i} about primes of the form ${i}n+1 rigorously, every step`, model: 'strong', score: 1 });
    }
    await page.setInputFiles('#upload-file', { name: 'evals.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from(lines.map((l) => JSON.stringify(l)).join('\n')) });
    await page.fill('#upload-name', 'evals-1');
    await page.click('#upload-send');
    await page.locator('#upload-result', { hasText: '60 rows' }).waitFor();
    check(true, 'a good file is uploaded');
    check((await page.inputValue('#train-data')) === 'evals-1', 'and chosen as the base data');
    await page.click('#train-start');
    await page.locator('#train-status').waitFor();
    await page.locator('#train-text', { hasText: 'running' }).waitFor();
    check(true, 'the job is shown running');
    await page.locator('#train-text', { hasText: /: done/ }).waitFor({ timeout: 120_000 });
    check(await page.$eval('#train-progress', (el) => el.value) === 1, 'the progress bar is full when done');
    const row = page.locator('#checkpoints-table tr[data-version="2"]');
    await row.waitFor();
    check((await row.textContent()).includes('base_rows 60'), 'the new checkpoint was fitted on the upload');
    // The held-out check refuses it (the answer the API gives when it is worse)...
    const refusal = 'checkpoint v2 is worse than the active checkpoint on the held-out slice (mean BCE 0.7000 vs 0.3000 over 12 outcomes); not activated (activate with force to override)';
    await page.route('**/api/mirt/checkpoints/2/activate', (r) => r.fulfill({
      status: 409, contentType: 'application/json', body: JSON.stringify({ error: { type: 'conflict', message: refusal } }),
    }));
    await row.locator('button.activate').click();
    await row.locator('.cp-msg', { hasText: 'worse than the active' }).waitFor();
    check(true, 'a 409 refusal is shown on the checkpoint');
    // ...and force goes to the real API.
    await row.locator('button.force').click();
    await page.locator('#checkpoints-table tr[data-version="2"] .badge', { hasText: 'active' }).waitFor();
    check((await page.textContent('#banner')).includes('activated'), 'forced activation succeeds');
    const cps = await adminGet('/api/mirt/checkpoints');
    check(cps.body.find((c) => c.version === 2).active === true, 'the API has v2 active');
    await page.screenshot({ path: SHOT, fullPage: true });
  },

  // Virtual keys from the Keys page: make one (its secret shown once), see it listed with its
  // budget, edit its rate limit, see its spend after a request made with it, revoke it, and
  // the proxy then answers that key with 401.
  async keys(page) {
    await signIn(page);
    await page.click('#nav a[data-view=keys]');
    await page.locator('#keys-table td', { hasText: 'No virtual keys yet' }).waitFor();
    check(true, 'the Keys page starts empty');
    await page.fill('#kf-name', 'ci-bot');
    await page.fill('#kf-team', 'platform');
    await page.fill('#kf-budget', '5');
    await page.selectOption('#kf-period', 'day');
    await page.fill('#kf-rpm', '100');
    await page.click('#key-create');
    await page.locator('#key-secret').waitFor({ state: 'visible' });
    const secret = (await page.textContent('#key-secret-text')).trim();
    check(/^sk-dr-[0-9a-f]{48}$/.test(secret), 'the new key\'s secret is shown');
    const row = page.locator('#keys-table tr', { hasText: 'ci-bot' });
    await row.waitFor();
    const id = await row.getAttribute('data-key');
    check(!!id && id.startsWith('key_'), `the key is listed (${id})`);
    check((await row.textContent()).includes('$5.00 / day'), `its budget is listed (${await row.textContent()})`);
    check((await row.textContent()).includes('100 req/min'), 'and its rate limit');
    check((await row.textContent()).includes(secret.slice(0, 10)), 'and the start of its secret');
    check(!(await row.textContent()).includes(secret), 'but not the secret itself');
    const listed = await adminGet('/api/keys');
    check(!JSON.stringify(listed.body).includes(secret.slice(10)), 'the API listing does not show the secret');
    await page.click('#key-secret-done');
    check(await page.locator('#key-secret').isHidden(), 'the secret card closes');
    check(!(await page.content()).includes(secret.slice(10)), 'and the secret is gone from the page');

    // Edit a limit: the form opens on the key, the new rpm is listed and stored.
    await row.locator('button.edit').click();
    check((await page.textContent('#key-form-title')).includes('ci-bot'), 'the form edits the key');
    check((await page.inputValue('#kf-budget')) === '5' && (await page.inputValue('#kf-rpm')) === '100',
      'with its settings filled in');
    await page.fill('#kf-rpm', '7');
    await page.click('#key-create');
    await page.locator('#banner', { hasText: 'Key ci-bot saved' }).waitFor();
    await row.locator('td', { hasText: '7 req/min' }).waitFor();
    check(true, 'the edited limit is listed');
    check((await page.textContent('#key-form-title')) === 'New key', 'the form goes back to making keys');
    const stored = (await adminGet(`/api/keys/${id}`)).body;
    check(stored.rate_limit.rpm === 7 && stored.budget.usd === 5 && stored.budget.period === 'day' && stored.team === 'platform',
      `the API has the edit and kept the rest (${JSON.stringify(stored.rate_limit)}, ${JSON.stringify(stored.budget)})`);

    // A request with the key: served under the new limit, and its spend appears by itself.
    const ask = (key) => fetch(`${PROXY}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
      body: JSON.stringify({ model: 'cheap', max_tokens: 16, messages: [{ role: 'user', content: PROMPT }] }),
    });
    const none = await ask(null);
    check(none.status === 401, `a request without a key is refused (${none.status})`);
    const r = await ask(secret);
    const text = await r.text();
    check(r.status === 200, `a request with the key is served (${r.status}: ${text.slice(0, 200)})`);
    check(r.headers.get('x-ratelimit-limit-requests') === '7', 'under the edited limit');
    const spendCell = row.locator('td.num', { hasText: '1 req' });
    await spendCell.waitFor({ timeout: 20_000 });
    check(!(await spendCell.textContent()).startsWith('$0 '), `its spend is shown (${await spendCell.textContent()})`);
    const spend = (await adminGet('/api/spend?by=key&since=1h')).body.data.find((x) => x.group === id);
    check(spend && spend.requests === 1 && spend.cost_usd > 0, 'the API has the same spend');
    await page.screenshot({ path: SHOT.replace(/\.png$/, '-listed.png'), fullPage: true });

    // Revoke: two clicks, then the key is refused.
    await row.locator('button.danger', { hasText: 'Revoke' }).click();
    await row.locator('button.danger', { hasText: 'Really revoke?' }).click();
    await row.locator('td', { hasText: 'revoked' }).waitFor();
    check((await page.textContent('#banner')).includes('revoked'), 'the page says the key is revoked');
    check(await row.locator('button').count() === 0, 'a revoked key offers no actions');
    const after = await ask(secret);
    const body = await after.json();
    check(after.status === 401 && body.error.code === 'invalid_api_key' && body.error.message.includes('revoked'),
      `the revoked key gets 401 (${after.status}: ${JSON.stringify(body.error)})`);
    check((await adminGet(`/api/keys/${id}`)).body.status === 'revoked', 'the API has it revoked');
    await page.screenshot({ path: SHOT, fullPage: true });
  },
};

async function main() {
  const run = scenarios[name];
  if (!run) throw new Error(`unknown scenario '${name}' (${Object.keys(scenarios).join(', ')})`);
  const browser = await chromium.launch({
    executablePath: env.DASH_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    timeout: 60_000,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`console: ${m.text()}`); });
  page.on('request', (r) => { if (!r.url().startsWith(ADMIN)) problems.push(`request outside the admin listener: ${r.url()}`); });
  try {
    await run(page);
    const junk = await page.evaluate(() => (document.body.innerText.match(/\[object \w+\]|\bundefined\b|\bNaN\b|\bnull\b/) || [''])[0]);
    check(junk === '', `no placeholder text on the page${junk ? ` (found '${junk}')` : ''}`);
    check(problems.length === 0, `no script errors or outside requests${problems.length ? `: ${problems.join('; ')}` : ''}`);
  } catch (e) {
    try { await page.screenshot({ path: SHOT.replace(/\.png$/, '-failed.png'), fullPage: true }); } catch { /* ignore */ }
    throw e;
  } finally {
    await browser.close();
  }
  clearTimeout(hardStop);
}

main().then(() => process.exit(0), (e) => { console.error(e && e.stack ? e.stack : e); process.exit(1); });
