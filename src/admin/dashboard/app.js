// dualrouter dashboard. Plain JavaScript, no dependencies. The admin token lives in this tab's
// sessionStorage and goes out only as `Authorization: Bearer` on same-origin API calls.
'use strict';

const TOKEN_KEY = 'dualrouter.adminToken';
const POLL_MS = { executors: 2000, decisions: 2000, overview: 30000, train: 1000, keys: 3000 };
const PALETTE = ['#1f6feb', '#e8590c', '#2f9e44', '#ae3ec9', '#f08c00', '#0c8599', '#e03131', '#5c7cfa'];

// ---- small DOM helpers ------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);

/** Builds an element: attrs may hold class, text, on{Event} handlers, dataset, hidden, others. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'hidden' || k === 'disabled' || k === 'checked' || k === 'selected') el[k] = true;
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
}

/** Replaces an element's children, skipping null/false and flattening arrays. */
function fill(el, ...xs) {
  el.replaceChildren(...xs.flat(Infinity).filter((x) => x !== null && x !== undefined && x !== false));
}

const SVGNS = 'http://www.w3.org/2000/svg';
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c) el.append(c);
  return el;
}

function fmtUsd(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  if (a === 0) return '$0';
  if (a < 0.01) return '$' + v.toPrecision(2);
  if (a < 100) return '$' + v.toFixed(2);
  return '$' + Math.round(v).toLocaleString();
}
const fmtNum = (v, d = 2) => (v === null || v === undefined ? '–' : Number(v).toFixed(d));
const fmtMs = (v) => (v === null || v === undefined ? '–' : v < 1000 ? `${Math.round(v)} ms` : `${(v / 1000).toFixed(2)} s`);
function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}
function fmtAgo(iso) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
const route = (d) => (d.domain ? `${d.domain}/${d.action || ''}` : '–');

// ---- API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `HTTP ${status}`);
    this.status = status;
    this.type = error && error.type;
    this.field = error && error.field;
  }
}

async function api(method, path, body, contentType) {
  const headers = { Accept: 'application/json' };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string') {
      headers['Content-Type'] = contentType || 'text/plain';
      payload = body;
    } else {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
  }
  let r;
  try {
    r = await fetch(path, { method, headers, body: payload, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    throw new ApiError(0, { type: 'network', message: 'the admin listener is not answering' });
  }
  const text = r.status === 204 ? '' : await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (r.status === 401) {
    signedOut(token ? 'The admin token was refused; sign in again.' : '');
    throw new ApiError(401, data && data.error);
  }
  if (!r.ok) throw new ApiError(r.status, (data && data.error) || { type: 'http', message: text || r.statusText });
  return data;
}

function banner(msg, kind) {
  const b = $('#banner');
  b.textContent = msg || '';
  b.className = 'banner' + (kind === 'info' ? ' info' : '');
  b.hidden = !msg;
}

// ---- sign-in -----------------------------------------------------------------------------

const state = { view: null, timer: null, executors: [], policies: [], signedIn: false };

function signedOut(message) {
  state.signedIn = false;
  stopPolling();
  sessionStorage.removeItem(TOKEN_KEY);
  document.querySelectorAll('.view').forEach((v) => { v.hidden = true; });
  $('#nav').hidden = true;
  $('#signout').hidden = true;
  $('#mode').textContent = '';
  banner('');
  $('#signin-view').hidden = false;
  $('#signin-error').textContent = message || '';
  $('#token').focus();
}

async function start() {
  try {
    state.executors = await api('GET', '/api/executors');
  } catch (e) {
    if (e.status !== 401) banner(`Cannot reach the admin API: ${e.message}`);
    if (e.status === 401) signedOut('');
    return;
  }
  state.signedIn = true;
  $('#signin-view').hidden = true;
  $('#nav').hidden = false;
  const hasToken = !!sessionStorage.getItem(TOKEN_KEY);
  $('#signout').hidden = !hasToken;
  $('#mode').textContent = hasToken ? 'signed in' : 'open: no admin token configured (loopback only)';
  show(location.hash.slice(1) || 'overview');
}

$('#signin').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('#token');
  const token = input.value.trim();
  input.value = '';
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('#signin-error').textContent = '';
  try {
    await api('GET', '/api/executors');
  } catch (e) {
    if (e.status === 401) { signedOut('That token was not accepted.'); return; }
    $('#signin-error').textContent = e.message;
    return;
  }
  await start();
});

$('#signout').addEventListener('click', () => signedOut('Signed out.'));

// ---- views and polling -------------------------------------------------------------------

const VIEWS = {};

function stopPolling() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

function poll(view, fn, ms) {
  stopPolling();
  const tick = async () => {
    if (state.view !== view || !state.signedIn) return;
    try { await fn(); } catch (e) { if (e.status !== 401) banner(e.message); }
    if (state.view === view && state.signedIn && !document.hidden) state.timer = setTimeout(tick, ms);
  };
  state.timer = setTimeout(tick, ms);
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && state.signedIn && state.view) show(state.view);
});

async function show(name) {
  if (!VIEWS[name]) name = 'overview';
  state.view = name;
  stopPolling();
  banner('');
  document.querySelectorAll('.view').forEach((v) => { v.hidden = v.id !== `view-${name}`; });
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.view === name));
  try {
    await VIEWS[name]();
  } catch (e) {
    if (e.status !== 401) banner(e.message);
  }
}

window.addEventListener('hashchange', () => { if (state.signedIn) show(location.hash.slice(1)); });

// ---- charts (SVG) ------------------------------------------------------------------------

const colorOf = (i) => PALETTE[i % PALETTE.length];

function legend(names) {
  return h('div', { class: 'legend' }, names.map((n, i) => {
    const sw = h('span', { class: 'sw' });
    sw.style.background = colorOf(i);
    return h('span', {}, sw, n);
  }));
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Lines over time: series = [{name, values}], one value per bucket start in `times`. */
function lineChart(times, series, fmt) {
  const W = 560, H = 190, L = 52, R = 8, T = 8, B = 24;
  const max = niceMax(Math.max(0, ...series.flatMap((x) => x.values)));
  const n = times.length;
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img' });
  for (const f of [0, 0.5, 1]) {
    svg.append(s('line', { class: 'axis', x1: L, x2: W - R, y1: y(max * f), y2: y(max * f) }));
    svg.append(s('text', { x: L - 6, y: y(max * f) + 4, 'text-anchor': 'end', text: fmt(max * f) }));
  }
  const lab = (i) => {
    const d = new Date(times[i]);
    return (Date.now() - d > 36 * 3600e3) ? d.toLocaleDateString() : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  };
  for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
    if (i < 0) continue;
    svg.append(s('text', { x: x(i), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle', text: lab(i) }));
  }
  series.forEach((sr, k) => {
    const pts = sr.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    svg.append(s('polyline', { class: 'line', points: pts, stroke: colorOf(k) }));
    sr.values.forEach((v, i) => {
      if (v > 0) {
        svg.append(s('circle', { cx: x(i), cy: y(v), r: 2.5, fill: colorOf(k) },
          s('title', { text: `${sr.name} · ${lab(i)} · ${fmt(v)}` })));
      }
    });
  });
  return [svg, legend(series.map((x) => x.name))];
}

/** Horizontal bars: rows = [{label, bars: [{value, color, title}], note}]. */
function barChart(rows, max, fmt) {
  const W = 560, L = 120, R = 90, rowH = 16, gap = 10;
  const per = Math.max(1, ...rows.map((r) => r.bars.length));
  const H = rows.length * (per * rowH + gap) + 4;
  const svg = s('svg', { viewBox: `0 0 ${W} ${Math.max(H, 24)}`, role: 'img' });
  const m = max > 0 ? max : 1;
  rows.forEach((r, i) => {
    const y0 = i * (per * rowH + gap);
    svg.append(s('text', { x: L - 8, y: y0 + (per * rowH) / 2 + 4, 'text-anchor': 'end', text: r.label }));
    r.bars.forEach((b, j) => {
      const w = Math.max(1, ((W - L - R) * Math.max(0, b.value)) / m);
      svg.append(s('rect', { x: L, y: y0 + j * rowH, width: w, height: rowH - 3, rx: 3, fill: b.color },
        s('title', { text: b.title })));
      svg.append(s('text', { x: L + w + 6, y: y0 + j * rowH + rowH - 5, text: fmt(b.value) }));
    });
  });
  return svg;
}

function emptyChart(el, text) {
  el.replaceChildren(h('p', { class: 'muted' }, text));
}

// ---- overview ----------------------------------------------------------------------------

VIEWS.overview = async () => {
  await loadStats();
  poll('overview', loadStats, POLL_MS.overview);
};
$('#stats-window').addEventListener('change', () => show('overview'));

async function loadStats() {
  const w = $('#stats-window').value;
  const st = await api('GET', `/api/stats?window=${encodeURIComponent(w)}`);
  const ms = st.models;
  const total = (k) => ms.reduce((a, m) => a + (m[k] || 0), 0);
  const fbN = total('feedback_n');
  const fbMean = fbN ? ms.reduce((a, m) => a + (m.feedback_mean || 0) * m.feedback_n, 0) / fbN : null;
  const dear = total('dearest_est_usd');
  const saved = total('savings_usd');
  const tile = (k, v, id) => h('div', { class: 'tile', id }, h('div', { class: 'v' }, v), h('div', { class: 'k' }, k));
  $('#tiles').replaceChildren(
    tile('requests', total('requests').toLocaleString(), 'tile-requests'),
    tile('spent', fmtUsd(total('cost_usd')), 'tile-spent'),
    tile(`estimated savings${dear > 0 ? ` (${Math.round((100 * saved) / dear)}% of dearest)` : ''}`, fmtUsd(saved), 'tile-savings'),
    tile(`mean feedback (${fbN} scored)`, fbMean === null ? '–' : fbMean.toFixed(2), 'tile-feedback'),
  );
  const names = ms.map((m) => m.model);
  if (!ms.length) {
    for (const id of ['#chart-requests', '#chart-cost', '#chart-savings', '#chart-feedback']) {
      emptyChart($(id), 'No routed requests in this window.');
    }
    return;
  }
  $('#chart-requests').replaceChildren(...lineChart(st.buckets,
    ms.map((m) => ({ name: m.model, values: m.series_requests })), (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1))));
  $('#chart-cost').replaceChildren(...lineChart(st.buckets,
    ms.map((m) => ({ name: m.model, values: m.series_cost_usd })), fmtUsd));
  const routed = ms.filter((m) => m.routed > 0);
  if (routed.length) {
    const max = Math.max(...routed.map((m) => Math.max(m.dearest_est_usd, m.est_cost_usd)));
    $('#chart-savings').replaceChildren(
      barChart(routed.map((m) => ({
        label: m.model,
        bars: [
          { value: m.est_cost_usd, color: colorOf(names.indexOf(m.model)), title: `${m.model}: estimated cost of ${m.routed} routed requests` },
          { value: m.dearest_est_usd, color: '#adb5bd', title: `the dearest candidate for the same ${m.routed} requests` },
        ],
      })), max, fmtUsd),
      h('p', { class: 'small' }, `Saved ${fmtUsd(saved)} of ${fmtUsd(dear)} (grey: the dearest candidate for the same requests).`),
    );
  } else {
    emptyChart($('#chart-savings'), 'No routed requests with candidates in this window.');
  }
  const scored = ms.filter((m) => m.feedback_n > 0);
  if (scored.length) {
    $('#chart-feedback').replaceChildren(barChart(scored.map((m) => ({
      label: m.model,
      bars: [{ value: m.feedback_mean, color: colorOf(names.indexOf(m.model)), title: `${m.model}: mean of ${m.feedback_n} scores` }],
    })), 1, (v) => v.toFixed(2)));
  } else {
    emptyChart($('#chart-feedback'), 'No feedback yet (POST /v1/feedback on the proxy port).');
  }
}

// ---- policies ----------------------------------------------------------------------------

const pf = { id: null, models: [] };

VIEWS.policies = async () => {
  const [policies, executors] = await Promise.all([
    api('GET', '/api/routing/policies'),
    api('GET', '/api/executors'),
  ]);
  state.policies = policies;
  state.executors = executors;
  renderPolicies();
};

function renderPolicies() {
  const body = $('#policies-table tbody');
  body.replaceChildren(...state.policies.map((p) => {
    const del = h('button', { type: 'button', class: 'danger', text: 'Delete' });
    del.addEventListener('click', async () => {
      if (del.dataset.armed !== '1') {
        del.dataset.armed = '1';
        del.textContent = 'Really delete?';
        setTimeout(() => { del.dataset.armed = ''; del.textContent = 'Delete'; }, 4000);
        return;
      }
      try {
        await api('DELETE', `/api/routing/policies/${p.id}`);
        banner(`Policy ${p.domain}/${p.action} deleted.`, 'info');
        await VIEWS.policies();
      } catch (e) { banner(e.message); }
    });
    return h('tr', { dataset: { route: `${p.domain}/${p.action}` } },
      h('td', { class: 'num' }, p.priority),
      h('td', {}, h('strong', {}, `${p.domain}/${p.action}`), p.budget_usd !== null && p.budget_usd !== undefined ? h('div', { class: 'muted small' }, `budget ${fmtUsd(p.budget_usd)}`) : null),
      h('td', { class: 'wide-only' }, p.description),
      h('td', {}, h('div', { class: 'chips' }, p.models.map((m) => h('span', { class: 'chip' }, m)))),
      h('td', { class: 'wide-only small muted' }, p.examples.length ? p.examples.slice(0, 3).join(' · ') + (p.examples.length > 3 ? ' …' : '') : '–'),
      h('td', {}, h('div', { class: 'row' },
        h('button', { type: 'button', text: 'Edit', onclick: () => openPolicyForm(p) }), del)),
    );
  }));
  if (!state.policies.length) body.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No policies: every request uses the default route.')));
}

function clearErrors(form) {
  form.querySelectorAll('.field-error').forEach((e) => { e.textContent = ''; });
  form.querySelectorAll('.invalid').forEach((e) => e.classList.remove('invalid'));
}

/** Puts an API error next to its field (`models[1]` → that model's row), else at `fallback`. */
function showFieldError(form, err, fallback) {
  const field = err.field || '';
  const m = /^([a-z_]+)(?:\[(\d+)\])?/.exec(field);
  let slot = null;
  if (m && m[2] !== undefined) slot = form.querySelector(`.field-error[data-field="${m[1]}[${m[2]}]"]`);
  if (!slot && m) slot = form.querySelector(`.field-error[data-field="${m[1]}"]`);
  if (slot) {
    // Next to its field, the message need not name the field again.
    const prefix = `${field}: `;
    slot.textContent = field && err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    const input = slot.parentElement && slot.parentElement.querySelector('input, textarea, select');
    if (input) input.classList.add('invalid');
    const row = slot.closest('li');
    if (row) row.classList.add('invalid');
  } else {
    fallback.textContent = err.message;
  }
}

function openPolicyForm(p) {
  const form = $('#policy-form');
  clearErrors(form);
  $('#policy-form-error').textContent = '';
  pf.id = p ? p.id : null;
  pf.models = p ? [...p.models] : [];
  $('#policy-form-title').textContent = p ? `Edit ${p.domain}/${p.action}` : 'New policy';
  $('#pf-domain').value = p ? p.domain : '';
  $('#pf-action').value = p ? p.action : '';
  $('#pf-description').value = p ? p.description : '';
  $('#pf-examples').value = p ? p.examples.join('\n') : '';
  $('#pf-priority').value = p ? p.priority : 0;
  $('#pf-budget').value = p && p.budget_usd !== null && p.budget_usd !== undefined ? p.budget_usd : '';
  renderModelPicker();
  form.hidden = false;
  $('#pf-domain').focus();
  form.scrollIntoView({ block: 'nearest' });
}

function renderModelPicker() {
  const list = $('#pf-models');
  list.replaceChildren(...pf.models.map((m, i) => {
    const known = state.executors.some((e) => e.id === m);
    const move = (d) => () => {
      const j = i + d;
      if (j < 0 || j >= pf.models.length) return;
      [pf.models[i], pf.models[j]] = [pf.models[j], pf.models[i]];
      renderModelPicker();
    };
    return h('li', { dataset: { model: m } },
      h('span', { class: 'name' }, m, known ? null : h('span', { class: 'muted small' }, ' (not served)')),
      h('button', { type: 'button', title: 'Move up', 'aria-label': `Move ${m} up`, onclick: move(-1), disabled: i === 0 }, '↑'),
      h('button', { type: 'button', title: 'Move down', 'aria-label': `Move ${m} down`, onclick: move(1), disabled: i === pf.models.length - 1 }, '↓'),
      h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${m}`, onclick: () => { pf.models.splice(i, 1); renderModelPicker(); } }, 'Remove'),
      h('div', { class: 'field-error', dataset: { field: `models[${i}]` } }),
    );
  }));
  const pick = $('#pf-model-pick');
  const free = state.executors.filter((e) => !pf.models.includes(e.id));
  pick.replaceChildren(...free.map((e) => h('option', { value: e.id },
    `${e.id} (${e.provider}, $${e.cost_per_mtok.input}/$${e.cost_per_mtok.output} per Mtok)`)));
  if (!free.length) pick.replaceChildren(h('option', { value: '' }, 'every model is listed'));
  pick.disabled = !free.length;
  $('#pf-model-add').disabled = !free.length;
}

$('#policy-new').addEventListener('click', () => openPolicyForm(null));
$('#policy-cancel').addEventListener('click', () => { $('#policy-form').hidden = true; });
$('#pf-model-add').addEventListener('click', () => {
  const v = $('#pf-model-pick').value;
  if (v && !pf.models.includes(v)) pf.models.push(v);
  renderModelPicker();
});

$('#policy-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = $('#policy-form');
  clearErrors(form);
  const errBox = $('#policy-form-error');
  errBox.textContent = '';
  const budget = $('#pf-budget').value.trim();
  const priority = $('#pf-priority').value.trim();
  const body = {
    domain: $('#pf-domain').value,
    action: $('#pf-action').value,
    description: $('#pf-description').value,
    examples: $('#pf-examples').value.split('\n').map((x) => x.trim()).filter(Boolean),
    models: pf.models,
    priority: priority === '' ? 0 : Number(priority),
  };
  if (!Number.isInteger(body.priority)) {
    showFieldError(form, { field: 'priority', message: 'must be a whole number' }, errBox);
    return;
  }
  if (budget !== '') body.budget_usd = Number(budget);
  const save = $('#policy-save');
  save.disabled = true;
  try {
    const saved = pf.id === null
      ? await api('POST', '/api/routing/policies', body)
      : await api('PUT', `/api/routing/policies/${pf.id}`, body);
    form.hidden = true;
    banner(`Policy ${saved.domain}/${saved.action} saved.`, 'info');
    await VIEWS.policies();
  } catch (e) {
    if (e.status !== 401) showFieldError(form, e, errBox);
  } finally {
    save.disabled = false;
  }
});

// ---- executors ---------------------------------------------------------------------------

VIEWS.executors = async () => {
  await loadExecutors();
  poll('executors', loadExecutors, POLL_MS.executors);
};

const HEALTH_TEXT = { healthy: 'healthy', cooling_down: 'cooling down', probing: 'probing', unknown: 'unknown' };

async function loadExecutors() {
  const ex = await api('GET', '/api/executors');
  state.executors = ex;
  $('#executors-table tbody').replaceChildren(...ex.map((e) => h('tr', { dataset: { model: e.id, health: e.health } },
    h('td', {}, h('strong', {}, e.id)),
    h('td', {}, h('span', { class: `health ${e.health}` }, HEALTH_TEXT[e.health] || e.health)),
    h('td', { class: 'wide-only' }, e.provider),
    h('td', { class: 'wide-only' }, e.source),
    h('td', { class: 'num' }, `$${e.cost_per_mtok.input} · $${e.cost_per_mtok.output}`),
    h('td', { class: 'wide-only num' }, e.context_tokens ? e.context_tokens.toLocaleString() : '–'),
    h('td', { class: 'wide-only' }, e.tier || '–'),
    h('td', { title: e.last_check || '' }, fmtAgo(e.last_check)),
  )));
  $('#executors-updated').textContent = `updated ${new Date().toLocaleTimeString()} · refreshes every ${POLL_MS.executors / 1000}s`;
}

$('#reload').addEventListener('click', async () => {
  const btn = $('#reload');
  btn.disabled = true;
  try {
    const r = await api('POST', '/api/reload');
    const restart = r.restart_needed && r.restart_needed.length ? `; a restart is needed for ${r.restart_needed.join(', ')}` : '';
    banner(`Config reloaded (generation ${r.generation}: ${r.policies} policies, ${r.models} models${restart}).`, 'info');
    await loadExecutors();
  } catch (e) {
    if (e.status !== 401) banner(e.message);
  } finally {
    btn.disabled = false;
  }
});

// ---- decisions ---------------------------------------------------------------------------

const dec = { seen: new Set(), selected: null, first: true };

VIEWS.decisions = async () => {
  const [policies, executors] = await Promise.all([
    api('GET', '/api/routing/policies'),
    api('GET', '/api/executors'),
  ]);
  fillSelect($('#filter-domain'), [...new Set(['default', ...policies.map((p) => p.domain)])].sort());
  fillSelect($('#filter-model'), executors.map((e) => e.id));
  dec.first = true;
  await loadDecisions();
  poll('decisions', async () => { if ($('#decisions-live').checked) await loadDecisions(); }, POLL_MS.decisions);
};

function fillSelect(sel, values) {
  const keep = sel.value;
  sel.replaceChildren(h('option', { value: '' }, 'all'), ...values.map((v) => h('option', { value: v }, v)));
  sel.value = values.includes(keep) ? keep : '';
}

for (const id of ['#filter-domain', '#filter-model']) {
  $(id).addEventListener('change', () => { dec.first = true; loadDecisions().catch((e) => banner(e.message)); });
}

async function loadDecisions() {
  const q = new URLSearchParams({ limit: '50' });
  if ($('#filter-domain').value) q.set('domain', $('#filter-domain').value);
  if ($('#filter-model').value) q.set('model', $('#filter-model').value);
  const list = await api('GET', `/api/decisions?${q}`);
  const rows = list.map((d) => {
    const fresh = !dec.first && !dec.seen.has(d.decision_id);
    dec.seen.add(d.decision_id);
    const cands = h('div', { class: 'chips' }, d.candidates.slice(0, 4).map((c) => h('span', {
      class: 'chip' + (c.model === d.selected_model ? ' sel' : ''),
      title: `P(success) ${fmtNum(c.p_success)} · est. ${fmtUsd(c.cost)} · $${fmtNum(c.cost_per_mtok)}/Mtok`,
    }, `${c.model} ${fmtNum(c.p_success)} ${fmtUsd(c.cost)}`)));
    const tr = h('tr', {
      class: 'clickable' + (fresh ? ' fresh' : '') + (dec.selected === d.decision_id ? ' selected' : ''),
      dataset: { id: d.decision_id },
      tabindex: '0',
    },
    h('td', { title: d.created_at }, fmtTime(d.created_at)),
    h('td', {}, route(d)),
    h('td', {}, h('strong', {}, d.selected_model || '–')),
    h('td', { class: 'wide-only' }, d.candidates.length ? cands : h('span', { class: 'muted' }, d.route_source === 'explicit' ? 'explicit model' : '–')),
    h('td', { class: 'num' }, fmtMs(d.total_latency_ms)),
    h('td', { class: `status-${d.status}` }, d.http_status ? `${d.status} ${d.http_status}` : d.status),
    );
    const open = () => openDecision(d.decision_id);
    tr.addEventListener('click', open);
    tr.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') open(); });
    return tr;
  });
  dec.first = false;
  $('#decisions-table tbody').replaceChildren(...rows);
  $('#decisions-empty').hidden = list.length > 0;
}

async function openDecision(id) {
  dec.selected = id;
  document.querySelectorAll('#decisions-table tr.selected').forEach((r) => r.classList.remove('selected'));
  const row = document.querySelector(`#decisions-table tr[data-id="${CSS.escape(id)}"]`);
  if (row) row.classList.add('selected');
  const pane = $('#decision-detail');
  pane.hidden = false;
  pane.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let d;
  try {
    d = await api('GET', `/api/decisions/${encodeURIComponent(id)}`);
  } catch (e) {
    pane.replaceChildren(h('p', { class: 'msg-bad' }, e.message));
    return;
  }
  const det = d.details || {};
  const table = (heads, rows) => h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, heads.map((x) => h('th', {}, x)))),
    h('tbody', {}, rows)));
  const dl = (pairs) => h('dl', {}, pairs.filter(([, v]) => v !== null && v !== undefined && v !== '').flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  const lat = Object.entries(d.latencies_ms || {}).map(([k, v]) => `${k} ${fmtMs(v)}`).join(' · ');
  fill(pane,
    h('div', { class: 'toolbar' }, h('h2', {}, 'Decision'), h('button', { type: 'button', class: 'link', onclick: () => { pane.hidden = true; dec.selected = null; } }, 'Close')),
    dl([
      ['id', h('span', { class: 'mono' }, d.decision_id)],
      ['time', fmtTime(d.created_at)],
      ['route', `${route(d)}${d.route_source ? ` (${d.route_source}${d.route_confidence !== null && d.route_confidence !== undefined ? `, ${fmtNum(d.route_confidence)}` : ''})` : ''}`],
      ['policy', det.policy],
      ['model', d.selected_model ? `${d.selected_model}${d.provider ? ` via ${d.provider}` : ''}${det.affinity ? ' (session affinity)' : ''}` : '–'],
      ['status', `${d.status}${d.http_status ? ` ${d.http_status}` : ''}${d.error_kind ? ` (${d.error_kind})` : ''}`],
      ['tokens', d.input_tokens !== null || d.output_tokens !== null ? `${d.input_tokens ?? '–'} in · ${d.output_tokens ?? '–'} out` : null],
      ['cost', d.cost_usd !== null && d.cost_usd !== undefined ? fmtUsd(d.cost_usd) : null],
      ['latency', `${fmtMs(d.total_latency_ms)}${lat ? ` (${lat})` : ''}`],
      ['feedback', d.feedback_score !== null && d.feedback_score !== undefined ? fmtNum(d.feedback_score) : null],
      ['checkpoint', det.checkpoint_version ? `v${det.checkpoint_version}` : null],
      ['fallbacks', det.fallbacks && det.fallbacks.length ? det.fallbacks.join(' → ') : null],
    ]),
    det.reasoning ? [h('h3', {}, 'Reasoning'), h('div', { class: 'reasoning mono', id: 'decision-reasoning' }, det.reasoning)] : null,
    h('h3', {}, 'Candidates'),
    d.candidates.length ? table(['model', 'P', 'est. $', '$/Mtok', 'score'], d.candidates.map((c) => h('tr', { class: c.model === d.selected_model ? 'selected' : '' },
      h('td', {}, c.model), h('td', { class: 'num' }, fmtNum(c.p_success, 3)), h('td', { class: 'num' }, fmtUsd(c.cost)),
      h('td', { class: 'num' }, fmtNum(c.cost_per_mtok, 4)), h('td', { class: 'num' }, fmtNum(c.score, 3)))))
      : h('p', { class: 'muted' }, 'none (not routed)'),
    h('h3', {}, 'Attempts'),
    det.attempts && det.attempts.length ? table(['model', 'provider', 'outcome', 'status', 'time'], det.attempts.map((a) => h('tr', {},
      h('td', {}, a.model), h('td', {}, a.provider), h('td', { class: a.outcome === 'ok' ? 'status-ok' : 'status-error' }, a.outcome),
      h('td', {}, a.status ?? '–'), h('td', { class: 'num' }, fmtMs(a.ms)))))
      : h('p', { class: 'muted' }, 'none recorded'),
    det.excluded && det.excluded.length ? [h('h3', {}, 'Excluded'), table(['model', 'reason'], det.excluded.map((x) => h('tr', {}, h('td', {}, x.model), h('td', {}, x.reason))))] : null,
  );
}

// ---- MIRT --------------------------------------------------------------------------------

VIEWS.mirt = async () => {
  await Promise.all([loadCheckpoints(), loadUploads(), loadTrainStatus()]);
};

function metricsText(m) {
  if (!m || typeof m !== 'object') return '';
  const parts = [];
  const num = (v) => (typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(4) : v);
  // A checkpoint `dualrouter train` scored on its file's test split: the router's headline figures first.
  const ev = m.eval && typeof m.eval === 'object' ? m.eval : null;
  const mirt = ev && ev.routers && ev.routers.mirt;
  if (mirt) {
    parts.push(`${ev.split} split: AIQ ${num(mirt.aiq_linear)}`);
    if (typeof mirt.savings_at_parity === 'number') parts.push(`savings at parity ${(100 * mirt.savings_at_parity).toFixed(1)}%`);
    parts.push(`max quality ${num(mirt.max_quality)}`);
    for (const [name, label] of [['knn', 'kNN'], ['logistic', 'logistic']]) {
      const r = ev.routers[name];
      if (r && typeof r.aiq_linear === 'number') parts.push(`${label} AIQ ${num(r.aiq_linear)}`);
    }
  }
  const pick = (k, v) => { if (v !== null && v !== undefined && typeof v !== 'object') parts.push(`${k} ${num(v)}`); };
  for (const [k, v] of Object.entries(m)) {
    if (k === 'eval' && mirt) continue;
    if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k2, v2] of Object.entries(v)) pick(`${k}.${k2}`, v2);
    else pick(k, v);
  }
  return parts.join(' · ');
}

async function loadCheckpoints() {
  let cps;
  try {
    cps = await api('GET', '/api/mirt/checkpoints');
  } catch (e) {
    if (e.status === 401) throw e;
    $('#checkpoints-table tbody').replaceChildren(h('tr', {}, h('td', { colspan: 5, class: 'msg-bad' }, e.message)));
    return;
  }
  $('#checkpoints-table tbody').replaceChildren(...cps.map((c) => {
    const msg = h('div', { class: 'cp-msg' });
    const cell = h('td', {});
    const act = (force) => async () => {
      msg.className = 'cp-msg';
      msg.textContent = 'Checking on the held-out slice…';
      try {
        const a = await api('POST', `/api/mirt/checkpoints/${c.version}/activate${force ? '?force=true' : ''}`);
        banner(a.message, 'info');
        await loadCheckpoints();
      } catch (e) {
        if (e.status === 401) return;
        msg.className = 'cp-msg msg-bad';
        msg.textContent = e.message;
        if (e.status === 409 && !force) {
          msg.append(' ', h('button', { type: 'button', class: 'danger force', onclick: act(true) }, 'Activate anyway (force)'));
        }
      }
    };
    if (c.active) cell.append(h('span', { class: 'badge' }, 'active'));
    else cell.append(h('button', { type: 'button', class: 'activate', onclick: act(false) }, 'Activate'));
    cell.append(msg);
    return h('tr', { dataset: { version: String(c.version) } },
      h('td', {}, h('strong', {}, `v${c.version}`), h('div', { class: 'muted small' }, `${c.models.length} models · ${c.train_rows} rows`)),
      h('td', {}, fmtTime(c.created_at)),
      h('td', { class: 'wide-only mono small', title: c.path }, c.path.split('/').pop()),
      h('td', { class: 'small' }, metricsText(c.metrics)),
      cell);
  }));
  if (!cps.length) $('#checkpoints-table tbody').replaceChildren(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No checkpoints registered.')));
}

async function loadUploads() {
  let ups = [];
  try { ups = await api('GET', '/api/training-data'); } catch (e) { if (e.status === 401) throw e; }
  const sel = $('#train-data');
  const keep = sel.value;
  sel.replaceChildren(h('option', { value: '' }, "the config's (mirt.base_data)"),
    ...ups.map((u) => h('option', { value: u.name }, `${u.name}.${u.format}`)));
  sel.value = ups.some((u) => u.name === keep) ? keep : '';
  $('#uploads').replaceChildren(...ups.map((u) => h('li', {}, h('strong', {}, u.name), ` ${u.format}, ${(u.bytes / 1024).toFixed(1)} KiB, ${fmtTime(u.modified)}`)));
}

function renderJob(j) {
  const box = $('#train-status');
  box.hidden = false;
  const members = Math.max(1, j.members || 1);
  const maxEp = Math.max(1, j.max_epochs || 1);
  const frac = j.state === 'running' ? Math.min(1, ((j.member || 0) + Math.min(j.epoch, maxEp) / maxEp) / members) : 1;
  const bar = $('#train-progress');
  bar.value = frac;
  bar.dataset.state = j.state;
  const parts = [`job ${j.id}: ${j.state}`];
  if (j.state === 'running') parts.push(`member ${(j.member || 0) + 1}/${members}, epoch ${j.epoch}/${j.max_epochs}`);
  if (j.val_bce !== null && j.val_bce !== undefined) parts.push(`validation BCE ${j.val_bce.toFixed(4)}`);
  if (j.version) parts.push(`checkpoint v${j.version}${j.activated === true ? ' (activated)' : j.activated === false ? ' (not activated)' : ''}`);
  const text = $('#train-text');
  fill(text, parts.join(' · '), j.message ? h('div', { class: j.state === 'failed' ? 'msg-bad' : '' }, j.message) : null);
  $('#train-start').disabled = j.state === 'running';
}

async function loadTrainStatus() {
  let j;
  try { j = await api('GET', '/api/mirt/train'); } catch (e) {
    if (e.status === 401) throw e;
    return; // 404: no job yet
  }
  renderJob(j);
  if (j.state === 'running') {
    poll('mirt', async () => {
      const k = await api('GET', '/api/mirt/train');
      renderJob(k);
      if (k.state !== 'running') {
        stopPolling();
        await loadCheckpoints();
      }
    }, POLL_MS.train);
  }
}

$('#train-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = $('#train-form');
  clearErrors(form);
  const body = { activate: $('#train-activate').checked };
  if ($('#train-data').value) body.data = $('#train-data').value;
  try {
    const j = await api('POST', '/api/mirt/train', body);
    renderJob(j);
    await loadTrainStatus();
  } catch (e) {
    if (e.status !== 401) showFieldError(form, { field: e.field || 'data', message: e.message }, $('#train-text'));
  }
});

$('#upload-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = $('#upload-form');
  clearErrors(form);
  $('#upload-error').textContent = '';
  $('#upload-result').textContent = '';
  const file = $('#upload-file').files[0];
  if (!file) {
    showFieldError(form, { field: 'body', message: 'choose a CSV or JSONL file' }, $('#upload-error'));
    return;
  }
  const name = $('#upload-name').value.trim() || file.name.replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  const type = /\.(jsonl|ndjson)$/i.test(file.name) ? 'application/x-ndjson' : 'text/csv';
  const send = $('#upload-send');
  send.disabled = true;
  try {
    const text = await file.text();
    const u = await api('POST', `/api/training-data${name ? `?name=${encodeURIComponent(name)}` : ''}`, text, type);
    $('#upload-result').replaceChildren(h('span', { class: 'msg-ok' }, `Uploaded ${u.name}: ${u.rows} rows, models ${u.models.join(', ')}.`));
    form.reset();
    await loadUploads();
    $('#train-data').value = u.name;
  } catch (e) {
    if (e.status !== 401) showFieldError(form, e, $('#upload-error'));
  } finally {
    send.disabled = false;
  }
});

// ---- keys --------------------------------------------------------------------------------

VIEWS.keys = async () => {
  await loadKeys();
  poll('keys', () => loadKeys(true), POLL_MS.keys);
};

/** The keys and their spend; `polled`: not while a button waits for its confirming click. */
async function loadKeys(polled) {
  if (polled && document.querySelector('#keys-table button[data-armed="1"]')) return;
  const [keys, spend] = await Promise.all([
    api('GET', '/api/keys'),
    api('GET', `/api/spend?by=key&since=${encodeURIComponent($('#spend-window').value)}`),
  ]);
  const spent = new Map(spend.data.map((r) => [r.group, r]));
  const body = $('#keys-table tbody');
  body.replaceChildren(...keys.data.map((k) => {
    const act = (label, cls, fn) => {
      const b = h('button', { type: 'button', class: cls, text: label });
      b.addEventListener('click', async () => {
        if (b.dataset.armed !== '1') {
          b.dataset.armed = '1';
          b.textContent = `Really ${label.toLowerCase()}?`;
          setTimeout(() => { b.dataset.armed = ''; b.textContent = label; }, 4000);
          return;
        }
        try { await fn(); await loadKeys(); } catch (e) { if (e.status !== 401) banner(e.message); }
      });
      return b;
    };
    const edit = h('button', { type: 'button', class: 'edit', text: 'Edit' });
    edit.addEventListener('click', () => editKey(k));
    const rotate = act('Rotate', '', async () => showSecret((await api('POST', `/api/keys/${k.id}/rotate`)).key));
    const revoke = act('Revoke', 'danger', async () => { await api('DELETE', `/api/keys/${k.id}`); banner(`Key ${k.name} revoked.`, 'info'); });
    const limits = [k.rate_limit.rpm ? `${k.rate_limit.rpm} req/min` : null, k.rate_limit.tpm ? `${k.rate_limit.tpm} tok/min` : null,
      k.max_cost_per_request_usd !== null ? `≤ ${fmtUsd(k.max_cost_per_request_usd)}/req` : null].filter(Boolean).join(' · ') || '–';
    const sp = spent.get(k.id);
    return h('tr', { dataset: { key: k.id } },
      h('td', {}, h('strong', {}, k.name), h('div', { class: 'muted small' }, `${k.prefix}…`),
        k.models ? h('div', { class: 'chips' }, k.models.map((m) => h('span', { class: 'chip' }, m))) : null),
      h('td', { class: `status-${k.status === 'active' ? 'ok' : 'error'}` }, k.status),
      h('td', { class: 'wide-only' }, k.team || '–'),
      h('td', {}, k.budget ? `${fmtUsd(k.budget.usd)} / ${k.budget.period}` : '–'),
      h('td', { class: 'wide-only small' }, limits),
      h('td', { class: 'num' }, sp ? `${fmtUsd(sp.cost_usd)} · ${sp.requests} req` : '–'),
      h('td', {}, k.status === 'revoked' ? null : h('div', { class: 'row' }, edit, rotate, revoke)),
    );
  }));
  if (!keys.data.length) body.replaceChildren(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No virtual keys yet (auth.virtual_keys: true turns them on).')));
}

function showSecret(secret) {
  $('#key-secret-text').textContent = secret;
  $('#key-secret').hidden = false;
}

$('#key-secret-done').addEventListener('click', () => {
  $('#key-secret-text').textContent = '';
  $('#key-secret').hidden = true;
});

$('#spend-window').addEventListener('change', () => { loadKeys().catch((e) => banner(e.message)); });

/** The key being edited in the form (null: the form makes a new key). */
let editing = null;

function keyFormMode(key) {
  editing = key;
  $('#key-form-title').textContent = key ? `Edit key ${key.name}` : 'New key';
  $('#key-create').textContent = key ? 'Save changes' : 'Create key';
  $('#key-cancel').hidden = !key;
}

/** Opens the form on a key's settings; saving sends them with PATCH. */
function editKey(k) {
  const form = $('#key-form');
  clearErrors(form);
  $('#key-form-error').textContent = '';
  form.reset();
  keyFormMode(k);
  $('#kf-name').value = k.name;
  $('#kf-team').value = k.team || '';
  $('#kf-models').value = k.models ? k.models.join(', ') : '';
  $('#kf-budget').value = k.budget ? String(k.budget.usd) : '';
  if (k.budget) $('#kf-period').value = k.budget.period;
  $('#kf-rpm').value = k.rate_limit.rpm ? String(k.rate_limit.rpm) : '';
  $('#kf-tpm').value = k.rate_limit.tpm ? String(k.rate_limit.tpm) : '';
  $('#kf-cap').value = k.max_cost_per_request_usd !== null ? String(k.max_cost_per_request_usd) : '';
  form.scrollIntoView({ block: 'nearest' });
  $('#kf-name').focus();
}

$('#key-cancel').addEventListener('click', () => {
  $('#key-form').reset();
  clearErrors($('#key-form'));
  $('#key-form-error').textContent = '';
  keyFormMode(null);
});

$('#key-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = $('#key-form');
  clearErrors(form);
  $('#key-form-error').textContent = '';
  const num = (id) => ($(id).value.trim() === '' ? null : Number($(id).value));
  // A new key names only what is set; an edit sends every field (null clears one).
  const body = { name: $('#kf-name').value.trim() };
  const team = $('#kf-team').value.trim();
  const models = $('#kf-models').value.split(',').map((m) => m.trim()).filter(Boolean);
  const rl = {};
  if (num('#kf-rpm') !== null) rl.rpm = num('#kf-rpm');
  if (num('#kf-tpm') !== null) rl.tpm = num('#kf-tpm');
  const fields = {
    team: team || null,
    models: models.length ? models : null,
    budget: num('#kf-budget') !== null ? { usd: num('#kf-budget'), period: $('#kf-period').value } : null,
    rate_limit: Object.keys(rl).length ? rl : null,
    max_cost_per_request_usd: num('#kf-cap'),
  };
  for (const [f, v] of Object.entries(fields)) if (v !== null || editing) body[f] = v;
  try {
    if (editing) {
      const k = await api('PATCH', `/api/keys/${editing.id}`, body);
      form.reset();
      keyFormMode(null);
      banner(`Key ${k.name} saved.`, 'info');
    } else {
      const k = await api('POST', '/api/keys', body);
      form.reset();
      showSecret(k.key);
    }
    await loadKeys();
  } catch (e) {
    if (e.status !== 401) showFieldError(form, e, $('#key-form-error'));
  }
});

// ---- go ----------------------------------------------------------------------------------

start();
