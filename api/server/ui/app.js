// Corral's dashboard: reads the /v1 API with the token the user gives,
// polls it with If-None-Match (an unchanged answer is a bodiless 304), and
// renders with textContent only: nothing the API returns is parsed as HTML.
'use strict';

const POLL_MS = 3000;          // while the tab is visible
const POLL_HIDDEN_MS = 30000;  // while it is hidden
const CATALOGUE_EVERY = 10;    // polls between re-reads of names (regions, flavors…)
const MAX_PAGES = 20;          // of 1000 objects each
const CONSOLE_TAIL = 200;

const st = {
  token: sessionStorage.getItem('corral.token') || '',
  etags: new Map(),   // URL → ETag of the last 200
  bodies: new Map(),  // URL → body of the last 200
  infra: true,        // may read hosts, nodes and alerts
  timer: 0,
  polls: 0,
  gen: 0,             // bumps on log in / out, so that a stale poll stops
  d: { servers: [], hosts: [], nodes: [], alerts: [], regions: [], zones: [], aggregates: [], groups: [], flavors: [], projects: [] },
  server: null, events: [], nodeEvents: null, consoleText: '',
};

const $ = (id) => document.getElementById(id);

class APIError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

// api GETs path; it answers {body, changed}. A 304 gives the body kept
// from the last 200. 401 logs out.
async function api(path) {
  const headers = { 'Authorization': 'Bearer ' + st.token, 'Accept': 'application/json' };
  const etag = st.etags.get(path);
  if (etag) headers['If-None-Match'] = etag;
  const res = await fetch(path, { headers, cache: 'no-store', credentials: 'omit', redirect: 'error' });
  if (res.status === 304 && st.bodies.has(path)) return { body: st.bodies.get(path), changed: false };
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    const msg = body && body.error ? body.error.message : res.statusText;
    if (res.status === 401) logout('Your token was refused: ' + msg);
    throw new APIError(res.status, msg);
  }
  const tag = res.headers.get('ETag');
  if (tag) { st.etags.set(path, tag); st.bodies.set(path, body); }
  return { body, changed: true };
}

// listAll reads every page of a list.
async function listAll(path) {
  let items = [], changed = false, cursor = '';
  for (let i = 0; i < MAX_PAGES; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const r = await api(path + sep + 'limit=1000' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    changed = changed || r.changed;
    items = items.concat(r.body.items || []);
    cursor = r.body.next_cursor || '';
    if (!cursor) break;
  }
  return { items, changed };
}

// ---- polling ----

async function poll() {
  const gen = st.gen;
  let changed = false;
  try {
    const reads = [['servers', '/v1/servers']];
    if (st.polls % CATALOGUE_EVERY === 0) {
      reads.push(['regions', '/v1/regions'], ['zones', '/v1/zones'], ['aggregates', '/v1/aggregates'],
        ['flavors', '/v1/flavors'], ['groups', '/v1/groups'], ['projects', '/v1/projects']);
    }
    if (st.infra) reads.push(['hosts', '/v1/hosts'], ['nodes', '/v1/nodes']);
    const results = await Promise.all(reads.map(([k, p]) => listAll(p).then((r) => [k, r]).catch((e) => {
      if (e instanceof APIError && e.status === 403 && (k === 'hosts' || k === 'nodes')) { st.infra = false; return [k, { items: [], changed: true }]; }
      throw e;
    })));
    if (st.infra) {
      try {
        const r = await api('/v1/alerts');
        if (r.changed) { st.d.alerts = r.body.items || []; changed = true; }
      } catch (e) {
        if (!(e instanceof APIError && e.status === 403)) throw e;
        st.infra = false; st.d.alerts = []; changed = true;
      }
    }
    if (gen !== st.gen) return;
    for (const [k, r] of results) {
      if (r.changed) { st.d[k] = r.items; changed = true; }
    }
    if (currentView().name === 'server') changed = (await pollServer()) || changed;
    if (gen !== st.gen) return;
    st.polls++;
    setStatus('updated ' + new Date().toLocaleTimeString(), false);
    if (changed || st.polls === 1) render();
  } catch (e) {
    if (gen !== st.gen) return;
    setStatus('update failed: ' + e.message + ' (retrying)', true);
  }
  schedule();
}

function schedule() {
  clearTimeout(st.timer);
  if (!st.token) return;
  st.timer = setTimeout(poll, document.hidden ? POLL_HIDDEN_MS : POLL_MS);
}

// pollServer reads the server page's server, events and console; it
// reports whether anything changed.
async function pollServer() {
  const id = currentView().id;
  let changed = false;
  try {
    const r = await api('/v1/servers/' + encodeURIComponent(id));
    if (r.changed || !st.server || st.server.id !== r.body.id) { st.server = r.body; changed = true; }
  } catch (e) {
    if (e instanceof APIError && e.status === 404) { st.server = { missing: id }; return true; }
    throw e;
  }
  const ev = await listAll('/v1/servers/' + encodeURIComponent(st.server.id) + '/events');
  if (ev.changed) { st.events = ev.items; changed = true; }
  if (st.server.node_id && st.infra) {
    try {
      const ne = await listAll('/v1/nodes/' + encodeURIComponent(st.server.node_id) + '/events');
      if (ne.changed) { st.nodeEvents = ne.items; changed = true; }
    } catch (e) { st.nodeEvents = null; }
  } else {
    st.nodeEvents = null;
  }
  let text;
  try {
    const c = await api('/v1/servers/' + encodeURIComponent(st.server.id) + '/console?tail=' + CONSOLE_TAIL);
    const lines = (c.body && c.body.lines) || [];
    text = (c.body && c.body.truncated ? '… (earlier lines left out)\n' : '') + lines.join('\n');
    if (!lines.length) text = '(the console log is empty)';
  } catch (e) {
    if (!(e instanceof APIError)) throw e;
    text = 'console not available' + (e.status === 404 || e.status === 501 ? '' : ' (' + e.status + ': ' + e.message + ')');
  }
  if (text !== st.consoleText) { st.consoleText = text; changed = true; }
  return changed;
}

// ---- views ----

function currentView() {
  const h = location.hash.replace(/^#/, '');
  if (h.startsWith('server/')) return { name: 'server', id: decodeURIComponent(h.slice(7)) };
  if (h === 'racks') return { name: 'racks' };
  return { name: 'servers' };
}

function show(id) {
  for (const v of ['login-view', 'servers-view', 'racks-view', 'server-view']) $(v).hidden = v !== id;
}

function render() {
  if (!st.token) { show('login-view'); return; }
  const v = currentView();
  $('nav-servers').classList.toggle('active', v.name === 'servers');
  $('nav-racks').classList.toggle('active', v.name === 'racks');
  if (v.name === 'racks') { show('racks-view'); renderRacks(); return; }
  if (v.name === 'server') { show('server-view'); renderServer(); return; }
  show('servers-view');
  renderServers();
}

function byID(list) { const m = new Map(); for (const o of list) m.set(o.id, o); return m; }
function nameOf(m, id) { const o = id && m.get(id); return o ? o.name : (id || ''); }

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function link(text, hash) { const a = el('a', text); a.href = hash; return a; }

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

// setOptions refills a select, keeping its choice.
function setOptions(sel, options) {
  const keep = sel.value;
  const want = [['', 'all']].concat(options);
  const have = Array.from(sel.options).map((o) => o.value + '\u0000' + o.textContent).join('\u0001');
  if (have === want.map(([v, t]) => v + '\u0000' + t).join('\u0001')) return;
  clear(sel);
  for (const [v, t] of want) { const o = el('option', t); o.value = v; sel.appendChild(o); }
  sel.value = want.some(([v]) => v === keep) ? keep : '';
}

// rows joins each server with where it runs and what is wrong there.
function rows() {
  const m = {
    regions: byID(st.d.regions), zones: byID(st.d.zones), aggs: byID(st.d.aggregates), groups: byID(st.d.groups),
    hosts: byID(st.d.hosts), nodes: byID(st.d.nodes),
  };
  const alerts = new Map(); // host or node ID → alerts
  for (const a of st.d.alerts) {
    if (!alerts.has(a.object_id)) alerts.set(a.object_id, []);
    alerts.get(a.object_id).push(a);
  }
  return st.d.servers.map((s) => {
    const host = s.host_id ? m.hosts.get(s.host_id) : null;
    const node = s.node_id ? m.nodes.get(s.node_id) : null;
    const where = host || node;
    let aggIDs = s.aggregate_id ? [s.aggregate_id] : [];
    if (!aggIDs.length && host) aggIDs = host.aggregate_ids || [];
    if (!aggIDs.length && node && node.aggregate_id) aggIDs = [node.aggregate_id];
    const zone = s.zone_id || (where && where.zone_id) || '';
    const region = s.region_id || (where && where.region_id) || '';
    const g = s.group_id ? m.groups.get(s.group_id) : null;
    const al = (alerts.get(s.host_id || s.node_id || '') || []).map((a) => ({ kind: a.kind, text: a.kind.replace(/_/g, ' '), title: a.name + ': ' + a.message }));
    if (s.state === 'error') al.unshift({ kind: 'server_error', text: 'error', title: s.fault || 'server in error' });
    return {
      s, host, node, zone, region, aggIDs,
      group: g ? g.role + ': ' + g.name : (s.group_id ? s.group_id : ''),
      aggregate: aggIDs.map((id) => nameOf(m.aggs, id)).join(', '),
      regionName: nameOf(m.regions, region), zoneName: nameOf(m.zones, zone),
      runsOn: host ? host.name : node ? node.name : (s.host_id || s.node_id || ''),
      addresses: (s.addresses || []).map((a) => a.ip).join(', '),
      alerts: al,
    };
  });
}

function renderServers() {
  const regions = byID(st.d.regions);
  setOptions($('filter-region'), st.d.regions.map((r) => [r.id, r.name]));
  setOptions($('filter-rack'), st.d.zones.map((z) => [z.id, z.name + ' (' + nameOf(regions, z.region_id) + ')']));
  setOptions($('filter-aggregate'), st.d.aggregates.map((a) => [a.id, a.name]));
  const states = Array.from(new Set(st.d.servers.map((s) => s.state))).sort();
  setOptions($('filter-state'), states.map((s) => [s, s]));
  $('infra-note').hidden = st.infra;

  const f = {
    kind: $('filter-kind').value, state: $('filter-state').value, region: $('filter-region').value,
    rack: $('filter-rack').value, agg: $('filter-aggregate').value, q: $('search').value.trim().toLowerCase(),
  };
  const all = rows();
  const shown = all.filter((r) => (!f.kind || r.s.kind === f.kind) && (!f.state || r.s.state === f.state) &&
    (!f.region || r.region === f.region) && (!f.rack || r.zone === f.rack) && (!f.agg || r.aggIDs.includes(f.agg)) &&
    (!f.q || [r.s.name, r.s.id, r.addresses, r.runsOn, r.group, r.aggregate, r.zoneName, r.regionName].join(' ').toLowerCase().includes(f.q)));
  shown.sort((a, b) => a.zoneName.localeCompare(b.zoneName) || a.s.name.localeCompare(b.s.name));

  const tbody = document.querySelector('#servers tbody');
  clear(tbody);
  for (const r of shown) {
    const tr = document.createElement('tr');
    tr.dataset.id = r.s.id;
    tr.dataset.kind = r.s.kind;
    const name = el('td'); name.className = 'name'; name.appendChild(link(r.s.name, '#server/' + encodeURIComponent(r.s.id)));
    tr.appendChild(name);
    for (const [text, cls] of [[r.s.kind, 'kind'], [r.group, 'group'], [r.aggregate, 'aggregate'], [r.regionName, 'region'],
      [r.zoneName, 'rack'], [r.runsOn, 'runs-on'], [r.addresses, 'addresses']]) tr.appendChild(el('td', text, cls));
    tr.appendChild(stateCell(r.s));
    const a = el('td', null, 'alerts');
    for (const x of r.alerts) { const sp = el('span', x.text, 'alert'); sp.title = x.title; sp.dataset.kind = x.kind; a.appendChild(sp); }
    tr.appendChild(a);
    tbody.appendChild(tr);
  }
  $('count').textContent = shown.length + ' of ' + all.length + ' servers';
}

function stateCell(s) {
  const td = el('td', null, 'state-cell');
  td.appendChild(el('span', s.state, 'state state-' + s.state));
  if (s.desired_state && s.desired_state !== s.state) td.appendChild(el('span', ' → ' + s.desired_state, 'wants'));
  return td;
}

// ---- racks ----

function bar(alloc, meas, total) {
  const b = el('span', null, 'bar');
  const pct = (v) => Math.max(0, Math.min(100, total > 0 ? (100 * v) / total : 0)) + '%';
  const a = el('span', null, 'alloc'); a.style.width = pct(alloc); b.appendChild(a);
  if (meas !== null) { const m = el('span', null, 'meas'); m.style.width = pct(meas); b.appendChild(m); }
  return b;
}

function resourceCell(label, alloc, meas, total, unit) {
  const td = el('td', null, 'num');
  td.appendChild(bar(alloc, meas, total));
  td.appendChild(el('span', ' ' + label + ' ' + alloc + '/' + total + ' ' + unit + (meas === null ? '' : ', measured ' + meas)));
  return td;
}

function renderRacks() {
  const box = $('racks');
  clear(box);
  if (!st.infra) { box.appendChild(el('p', 'Hosts and nodes are shown to admins and cloud-wide readers only.', 'note')); return; }
  const regions = byID(st.d.regions), servers = byID(st.d.servers);
  const zones = st.d.zones.slice().sort((a, b) => a.name.localeCompare(b.name));
  for (const z of zones) {
    const hosts = st.d.hosts.filter((h) => h.zone_id === z.id);
    const nodes = st.d.nodes.filter((n) => n.zone_id === z.id);
    const div = el('div', null, 'rack-card');
    div.dataset.id = z.id;
    div.appendChild(el('h2', z.name + ' — ' + nameOf(regions, z.region_id) + ' (' + hosts.length + ' hosts, ' + nodes.length + ' nodes)'));
    const t = el('table');
    const head = el('tr');
    for (const h of ['Machine', 'Kind', 'State', 'CPU', 'Memory (MiB)', 'Disk (GiB)', 'Guests / server']) head.appendChild(el('th', h));
    t.appendChild(head);
    for (const h of hosts) {
      const tr = el('tr'); tr.dataset.id = h.id;
      const inv = h.inventory || {}, use = h.usage || {}, al = h.allocated || {};
      const age = Math.round((Date.now() - Date.parse(h.last_heartbeat)) / 1000);
      tr.appendChild(el('td', h.name));
      tr.appendChild(el('td', 'host'));
      const sc = el('td'); sc.appendChild(el('span', h.state, 'state state-' + h.state)); sc.appendChild(el('span', ' heartbeat ' + age + ' s ago', 'wants'));
      tr.appendChild(sc);
      tr.appendChild(resourceCell('vCPU', al.vcpus || 0, null, inv.cpus || 0, ''));
      tr.lastChild.appendChild(el('span', ' load ' + (use.load1 || 0).toFixed(2), 'wants'));
      tr.appendChild(resourceCell('', al.ram_mib || 0, Math.max(0, (inv.ram_mib || 0) - (use.mem_free_mib || 0)), inv.ram_mib || 0, 'MiB'));
      tr.appendChild(resourceCell('', al.disk_gib || 0, Math.max(0, (inv.disk_gib || 0) - (use.disk_free_gib || 0)), inv.disk_gib || 0, 'GiB'));
      tr.appendChild(el('td', (al.guests || 0) + ' claimed, ' + (use.guests || 0) + ' running'));
      t.appendChild(tr);
    }
    for (const n of nodes) {
      const tr = el('tr'); tr.dataset.id = n.id;
      const hw = n.hardware || {};
      const used = n.server_id ? 1 : 0;
      const disk = Math.max(0, ...(hw.disks || []).map((d) => Math.floor(d.size_bytes / 1073741824)));
      tr.appendChild(el('td', n.name));
      tr.appendChild(el('td', 'bare metal'));
      const sc = el('td'); sc.appendChild(el('span', n.state, 'state state-' + n.state)); sc.appendChild(el('span', ' power ' + n.power_state + (n.bmc_fault ? ', BMC unreachable' : ''), 'wants'));
      tr.appendChild(sc);
      tr.appendChild(resourceCell('cores', used * (hw.cpus || 0), null, hw.cpus || 0, ''));
      tr.appendChild(resourceCell('', used * (hw.ram_mib || 0), null, hw.ram_mib || 0, 'MiB'));
      tr.appendChild(resourceCell('', used * disk, null, disk, 'GiB'));
      const srv = n.server_id ? servers.get(n.server_id) : null;
      const td = el('td');
      if (n.server_id) td.appendChild(link(srv ? srv.name : n.server_id, '#server/' + encodeURIComponent(n.server_id)));
      else td.textContent = 'free';
      tr.appendChild(td);
      t.appendChild(tr);
    }
    div.appendChild(t);
    box.appendChild(div);
  }
}

// ---- one server ----

function renderServer() {
  const s = st.server;
  const v = currentView();
  if (!s || (s.id !== v.id && s.name !== v.id && s.missing !== v.id)) { $('server-name').textContent = 'loading…'; return; }
  if (s.missing) { $('server-name').textContent = 'server ' + s.missing + ' not found'; clear($('server-details')); return; }
  const r = rows().find((x) => x.s.id === s.id) || { group: '', aggregate: '', regionName: s.region_id, zoneName: s.zone_id, runsOn: s.host_id || s.node_id, addresses: '', alerts: [] };
  const flavors = byID(st.d.flavors), projects = byID(st.d.projects);
  $('server-name').textContent = s.name + ' (' + s.kind + ')';
  const dl = $('server-details');
  clear(dl);
  const add = (k, v) => { if (v === undefined || v === null || v === '') return; dl.appendChild(el('dt', k)); const dd = el('dd', v); dd.dataset.field = k; dl.appendChild(dd); };
  add('ID', s.id);
  add('state', s.state);
  add('desired state', s.desired_state);
  add('fault', s.fault);
  add('project', nameOf(projects, s.project_id));
  add('flavor', nameOf(flavors, s.flavor_id));
  add('group', r.group);
  add('aggregate', r.aggregate);
  add('region', r.regionName);
  add('rack', r.zoneName);
  add(s.kind === 'baremetal' ? 'node' : 'host', r.runsOn);
  add('addresses', (s.addresses || []).map((a) => a.ip + (a.mac ? ' (' + a.mac + ')' : '')).join(', '));
  add('launched', s.launched_at);
  add('revision', s.revision);
  if (s.observed) add('domain', [s.observed.domain, s.observed.domain_type].filter(Boolean).join(', '));
  const ul = $('server-alerts');
  clear(ul);
  for (const a of r.alerts) ul.appendChild(el('li', a.title, 'alert'));
  if (!r.alerts.length) ul.appendChild(el('li', st.infra ? 'none' : 'shown to admins and cloud-wide readers only', 'note'));
  const tb = document.querySelector('#server-events tbody');
  clear(tb);
  for (const e of st.events) {
    const tr = el('tr');
    tr.appendChild(el('td', e.at));
    tr.appendChild(el('td', e.method + ' ' + e.path));
    tr.appendChild(el('td', e.status + (e.count > 1 ? ' ×' + e.count : '')));
    tr.appendChild(el('td', e.role + ' ' + e.token_id));
    tb.appendChild(tr);
  }
  $('node-events-box').hidden = !st.nodeEvents;
  const nb = document.querySelector('#node-events tbody');
  clear(nb);
  for (const e of st.nodeEvents || []) {
    const tr = el('tr');
    for (const x of [e.at, e.from, e.to, e.reason || '', e.actor]) tr.appendChild(el('td', x));
    nb.appendChild(tr);
  }
  $('console').textContent = st.consoleText;
}

// ---- log in / out ----

function setStatus(text, bad) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('stale', !!bad);
}

function resetData() {
  st.etags.clear(); st.bodies.clear();
  st.polls = 0; st.infra = true; st.server = null; st.events = []; st.nodeEvents = null; st.consoleText = '';
  for (const k of Object.keys(st.d)) st.d[k] = [];
}

function logout(why) {
  st.gen++;
  clearTimeout(st.timer);
  st.token = '';
  sessionStorage.removeItem('corral.token');
  resetData();
  $('nav').hidden = true; $('logout').hidden = true;
  $('login-error').textContent = why || '';
  setStatus('', false);
  render();
}

async function login(token) {
  st.gen++;
  st.token = token;
  resetData();
  try {
    await api('/v1/servers?limit=1');
  } catch (e) {
    st.token = '';
    if (!$('login-error').textContent) $('login-error').textContent = 'Log in failed: ' + e.message;
    render();
    return;
  }
  sessionStorage.setItem('corral.token', token);
  $('login-error').textContent = '';
  $('nav').hidden = false; $('logout').hidden = false;
  poll();
}

function init() {
  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    $('token').value = '';
    $('login-error').textContent = '';
    if (t) login(t);
  });
  $('logout').addEventListener('click', () => logout(''));
  for (const id of ['filter-kind', 'filter-state', 'filter-region', 'filter-rack', 'filter-aggregate']) $(id).addEventListener('change', render);
  $('search').addEventListener('input', render);
  window.addEventListener('hashchange', () => {
    st.server = null; st.events = []; st.nodeEvents = null; st.consoleText = '';
    render();
    if (st.token) { st.gen++; clearTimeout(st.timer); poll(); }
  });
  document.addEventListener('visibilitychange', () => { if (!document.hidden && st.token) { st.gen++; clearTimeout(st.timer); poll(); } });
  if (st.token) login(st.token); else render();
}

init();
