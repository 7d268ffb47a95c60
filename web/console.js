// The operator's console: every live call as GET /api/events streams it (a snapshot, then each
// change), one call's chart, levels and timeline, and listen / hang up / transfer.
import uPlot from '/vendor/uplot.js';
import { appendEvent, formatQuality, reasonText } from '/timeline.js';
import { listenWhep, readEventStream } from '/client.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'voxgate.adminToken';
/** What the server keeps per call (src/call/call-monitor.ts): the page keeps no more. */
const MAX_POINTS = 720;
const MAX_ENTRIES = 200;
/** What tests (and a curious operator in devtools) can read. */
const state = (window.voxgateConsole = { status: 'idle', node: '', calls: new Map(), fleet: new Map(), recent: [], selected: undefined, listening: undefined, chart: undefined });

// The token: from `#token=` once (then out of the address bar), else what this tab kept.
const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
if (fromHash) {
  sessionStorage.setItem(TOKEN_KEY, fromHash);
  history.replaceState(null, '', location.pathname + location.search);
}
let token = sessionStorage.getItem(TOKEN_KEY) ?? '';

function setStatus(s, text) {
  state.status = s;
  $('status').dataset.state = s;
  $('status').textContent = text;
}

const seconds = (ms) => {
  const s = Math.max(0, Math.round(ms / 1000));
  return s >= 3600 ? `${Math.floor(s / 3600)}:${String(Math.floor(s / 60) % 60).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}` : `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
};
const cell = (text, cls) => {
  const td = document.createElement('td');
  td.textContent = text ?? '–';
  if (cls) td.className = cls;
  return td;
};
const short = (id) => (id.length > 14 ? `${id.slice(0, 14)}…` : id);

// ---- live calls -------------------------------------------------------------------------

/** Each live call's row, by id (looked up on every levels message: no selector per call). */
const rows = new Map();
function rowOf(id) {
  return rows.get(id);
}

function renderRow(c) {
  const s = c.session;
  let tr = rowOf(s.id);
  if (!tr) {
    tr = document.createElement('tr');
    tr.dataset.id = s.id;
    tr.onclick = () => select(s.id);
    rows.set(s.id, tr);
    $('live').tBodies[0].append(tr);
  }
  const meters = document.createElement('td');
  meters.className = 'meters';
  for (const side of ['in', 'out']) {
    const m = document.createElement('meter');
    Object.assign(m, { min: -60, max: 0, value: c.levels?.[side] ?? -60 });
    m.dataset.side = side;
    meters.append(m);
  }
  const duration = cell(seconds(Date.now() - Date.parse(s.createdAt)), 'duration');
  tr.replaceChildren(cell(short(s.id), 'id'), cell(s.sessionKind), cell(s.source), cell(s.agent), cell(s.codec), cell(s.state, 'state'), duration, cell(String(s.listeners.length)), meters);
  tr.title = s.id;
  tr.setAttribute('aria-selected', String(state.selected === s.id));
  renderEmpty();
}

/** A table's "nothing here" row: shown while the table has no other row. */
function emptyRow(table, text) {
  const body = $(table).tBodies[0];
  body.querySelector('.empty')?.remove();
  if (body.rows.length > 0) return;
  const tr = document.createElement('tr');
  tr.className = 'empty';
  const td = cell(text);
  td.colSpan = 9;
  tr.append(td);
  body.append(tr);
}

function renderEmpty() {
  emptyRow('live', 'No live calls on this node.');
}

// The durations tick here, in the page: the stream sends changes, not clock ticks.
setInterval(() => {
  for (const c of state.calls.values()) {
    const td = rowOf(c.session.id)?.querySelector('.duration');
    if (td) td.textContent = seconds(Date.now() - Date.parse(c.session.createdAt));
  }
}, 1000);

// ---- one call ----------------------------------------------------------------------------

const SERIES = [
  { key: 'mos', label: 'MOS', scale: 'mos', stroke: '#1a7f37' },
  { key: 'lossPercent', label: 'loss %', scale: 'ms', stroke: '#b42318' },
  { key: 'jitterMs', label: 'jitter ms', scale: 'ms', stroke: '#0969da' },
  { key: 'rttMs', label: 'RTT ms', scale: 'ms', stroke: '#8250df' },
  { key: 'jitterBufferMs', label: 'buffer ms', scale: 'ms', stroke: '#bf8700' },
  // A bridged call's other side (a person or phone the caller was transferred to), dashed.
  { key: 'calleeMos', label: 'callee MOS', scale: 'mos', stroke: '#1a7f37', dash: [6, 4] },
  { key: 'calleeLossPercent', label: 'callee loss %', scale: 'ms', stroke: '#b42318', dash: [6, 4] },
];

function chartData(series) {
  return [series.map((p) => p.t), ...SERIES.map((s) => series.map((p) => p[s.key] ?? null))];
}

function makeChart(c) {
  state.chart?.destroy();
  const el = $('chart');
  el.replaceChildren();
  state.chart = new uPlot({
    width: Math.max(320, el.clientWidth || 640),
    height: 220,
    scales: { x: { time: false }, mos: { range: [1, 5] }, ms: { range: (u, min, max) => [0, Math.max(10, max * 1.15)] } },
    series: [{ label: 's into the call' }, ...SERIES.map((s) => ({ label: s.label, scale: s.scale, stroke: s.stroke, width: 1.5, spanGaps: true, ...(s.dash ? { dash: s.dash } : {}) }))],
    axes: [{ label: 'seconds into the call' }, { scale: 'mos', label: 'MOS' }, { scale: 'ms', side: 1, label: 'ms · loss %', grid: { show: false } }],
  }, chartData(c.series), el);
}

function select(id) {
  const c = state.calls.get(id);
  if (!c) return;
  if (state.selected !== id) stopListening();
  state.selected = id;
  for (const tr of $('live').tBodies[0].querySelectorAll('tr[data-id]')) tr.setAttribute('aria-selected', String(tr.dataset.id === id));
  $('detail').hidden = false;
  $('detail').dataset.id = id;
  $('message').textContent = '';
  for (const b of ['listen', 'hangup', 'transfer']) $(b).disabled = false;
  renderDetail(c);
  makeChart(c);
  $('timeline').replaceChildren();
  for (const e of c.timeline) appendEvent($('timeline'), e.event, new Date(e.at));
  loadUsers();
}

function renderDetail(c) {
  const s = c.session;
  $('detail-title').textContent = `${s.sessionKind} call ${s.id} · ${s.state}`;
  const parts = [`source ${s.source}`, s.agent && `agent ${s.agent}`, s.codec && `codec ${s.codec}`, s.remoteAddress && `from ${s.remoteAddress}`, s.trunk && `trunk ${s.trunk.name} ${s.trunk.from} → ${s.trunk.to}`, s.listeners.length > 0 && `listeners: ${s.listeners.map((l) => `${l.name} (${l.track})`).join(', ')}`, s.pipeline];
  $('detail-info').textContent = parts.filter(Boolean).join(' · ');
  if (s.quality) $('quality-now').textContent = formatQuality(s.quality);
}

function showLevels(id, l) {
  const tr = rowOf(id);
  if (tr) for (const m of tr.querySelectorAll('meter')) m.value = l[m.dataset.side];
  if (state.selected !== id) return;
  $('level-in').value = l.in;
  $('level-out').value = l.out;
  $('level-in-text').textContent = `${l.in.toFixed(0)} dBFS`;
  $('level-out-text').textContent = `${l.out.toFixed(0)} dBFS`;
}

async function loadUsers() {
  const res = await fetch('/api/registrations', { headers: { Authorization: `Bearer ${token}` } }).catch(() => undefined);
  if (!res?.ok) return;
  const { registrations } = await res.json();
  $('users').replaceChildren(...[...new Set(registrations.map((r) => r.user))].map((u) => Object.assign(document.createElement('option'), { value: u })));
}

function stopListening() {
  const l = state.listening;
  state.listening = undefined;
  $('listen').textContent = 'Listen';
  void l?.stop();
}

$('listen').onclick = async () => {
  if (state.listening) return stopListening();
  const id = state.selected;
  $('listen').disabled = true;
  try {
    state.listening = await listenWhep({ session: id, token, audio: $('audio') });
    $('listen').textContent = 'Stop listening';
  } catch (err) {
    $('message').textContent = err.message;
  } finally {
    $('listen').disabled = false;
  }
};

/** An admin request on the selected call; the problem's detail is shown when it is refused. */
async function act(method, path, body) {
  $('message').textContent = '';
  const res = await fetch(path, { method, headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
  if (!res.ok) $('message').textContent = (await res.json().catch(() => ({}))).detail ?? `${res.status} ${res.statusText}`;
  return res.ok;
}

$('hangup').onclick = () => act('DELETE', `/api/sessions/${encodeURIComponent(state.selected)}`);
$('transfer').onclick = async () => {
  const to = $('transfer-to').value.trim();
  if (!to) return void ($('message').textContent = 'Say who to transfer to: a registered user, a sip: URI or a number.');
  $('transfer').disabled = true;
  try {
    if (await act('POST', `/api/sessions/${encodeURIComponent(state.selected)}/transfer`, { to })) $('message').textContent = `transferred to ${to}`;
  } finally {
    $('transfer').disabled = false;
  }
};

// ---- fleet and recent calls ---------------------------------------------------------------

function renderFleet() {
  const rows = [...state.fleet.values()].map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.id = r.id;
    tr.append(cell(short(r.id), 'id'), cell(r.node), cell(r.kind), cell(r.source), cell(r.state), cell(new Date(r.createdAt).toLocaleTimeString()));
    return tr;
  });
  $('fleet').tBodies[0].replaceChildren(...rows);
  $('fleet').hidden = $('fleet-title').hidden = rows.length === 0;
}

function addRecent(r) {
  state.recent.unshift(r);
  state.recent.length = Math.min(state.recent.length, 100);
  $('recent').tBodies[0].querySelector('.empty')?.remove();
  $('recent').tBodies[0].prepend(recentRow(r));
  while ($('recent').tBodies[0].rows.length > 100) $('recent').tBodies[0].lastElementChild.remove();
}

function renderNoRecent() {
  emptyRow('recent', 'No call has ended since the gateway started (or within admin.recentCalls).');
}

function recentRow(r) {
  const tr = document.createElement('tr');
  tr.dataset.id = r.id;
  tr.title = r.id;
  const q = r.summary ?? {};
  tr.append(cell(r.endedAt ? new Date(r.endedAt).toLocaleTimeString() : ''), cell(short(r.id), 'id'), cell(r.kind), cell(r.source), cell(r.durationMs == null ? null : seconds(r.durationMs)), cell(r.codec), cell(q.mos == null ? null : q.mos.toFixed(2)), cell(q.lossPercent == null ? null : `${q.lossPercent.toFixed(1)} %`), cell(reasonText(r.reason), 'reason'));
  return tr;
}

// ---- the stream ---------------------------------------------------------------------------

const handlers = {
  snapshot(d) {
    state.node = d.node;
    $('node').textContent = `node ${d.node}`;
    state.calls = new Map(d.calls.map((c) => [c.session.id, { ...c, levels: undefined }]));
    $('live').tBodies[0].replaceChildren();
    rows.clear();
    for (const c of state.calls.values()) renderRow(c);
    renderEmpty();
    state.fleet = new Map(d.fleet.map((r) => [r.id, r]));
    renderFleet();
    state.recent = [...d.recent];
    $('recent').tBodies[0].replaceChildren(...d.recent.map(recentRow));
    renderNoRecent();
    if (state.selected && state.calls.has(state.selected)) select(state.selected);
    else if (state.selected) {
      // It ended while the stream was down: its panel stays, with nothing left to press.
      stopListening();
      $('detail-title').textContent = `call ${state.selected} · ended while the console was disconnected`;
      for (const b of ['listen', 'hangup', 'transfer']) $(b).disabled = true;
    }
  },
  session({ session }) {
    const c = state.calls.get(session.id) ?? { series: [], timeline: [] };
    c.session = session;
    state.calls.set(session.id, c);
    renderRow(c);
    if (state.selected === session.id) renderDetail(c);
  },
  quality({ id, point }) {
    const c = state.calls.get(id);
    if (!c) return;
    c.series.push(point);
    // As the server keeps it: past MAX_POINTS every other point goes, the first and last stay.
    if (c.series.length > MAX_POINTS) c.series = c.series.filter((_, i) => i % 2 === 0);
    if (state.selected !== id) return;
    state.chart?.setData(chartData(c.series));
    $('quality-now').textContent = formatQuality(point);
  },
  event({ id, entry }) {
    const c = state.calls.get(id);
    if (!c) return;
    c.timeline.push(entry);
    if (c.timeline.length > MAX_ENTRIES) c.timeline.shift();
    if (state.selected === id) appendEvent($('timeline'), entry.event, new Date(entry.at));
  },
  levels({ levels }) {
    for (const [id, l] of Object.entries(levels)) {
      const c = state.calls.get(id);
      if (c) c.levels = l;
      showLevels(id, l);
    }
  },
  ended({ id, call }) {
    state.calls.delete(id);
    rowOf(id)?.remove();
    rows.delete(id);
    renderEmpty();
    addRecent(call);
    if (state.selected !== id) return;
    stopListening();
    appendEvent($('timeline'), { type: 'ended', reason: call.reason });
    $('detail-title').textContent = `${call.kind ?? ''} call ${id} · ended: ${reasonText(call.reason)}`;
    showLevels(id, { in: -60, out: -60 });
    $('level-in-text').textContent = $('level-out-text').textContent = '';
    for (const b of ['listen', 'hangup', 'transfer']) $(b).disabled = true;
  },
  fleet({ event }) {
    if (event.type === 'created') state.fleet.set(event.session.id, event.session);
    else if (event.type === 'connected') Object.assign(state.fleet.get(event.id) ?? {}, { state: 'connected' });
    else if (event.type === 'ended') {
      state.fleet.delete(event.id);
      addRecent({ ...event, endedAt: new Date(event.at).toISOString(), codec: null });
    }
    renderFleet();
  },
};

let running = false;
async function run() {
  $('login').hidden = true;
  if (running) return;
  running = true;
  try {
    await follow();
  } finally {
    running = false;
  }
}

async function follow() {
  for (;;) {
    setStatus('connecting', 'connecting…');
    const abort = new AbortController();
    try {
      let first = true;
      await readEventStream('/api/events', token, (name, data) => {
        if (first) setStatus('live', 'live');
        first = false;
        handlers[name]?.(data);
      }, abort.signal);
      setStatus('down', 'the stream ended; reconnecting');
    } catch (err) {
      if (err.status === 401) {
        setStatus('down', 'not signed in');
        $('login-error').textContent = err.message;
        $('login').hidden = false;
        return;
      }
      setStatus('down', `disconnected (${err.message}); reconnecting`);
    } finally {
      abort.abort(); // a stream left after a handler threw is not left open and unread
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

$('login').onsubmit = (e) => {
  e.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  void run();
};

renderEmpty();
renderNoRecent();
if (token) void run();
else $('login').hidden = false;
