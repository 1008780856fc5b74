// The operator's dashboard (issue 9): polls /dashboard.json (the server's bounded history,
// one sample a second for the last 10 minutes) and draws each group as a plain SVG line
// chart. No library, no build step. Each chart says how many points it drew in
// data-points (the browser test reads it).

const CHARTS = [
  ['listeners', 'Listeners per space', ''],
  ['joins_per_s', 'Joins per second, by outcome', '/s'],
  ['refusals_per_s', 'Refusals per second, by reason', '/s'],
  ['stalls_per_s', 'Stalls per second', '/s'],
  ['bytes_out_per_s', 'Bytes out per second', 'B/s'],
  ['worker_pressure', 'Worker load (pressure, 0–1)', ''],
  ['loop_lag_ms', 'Event loop lag by process', 'ms'],
  ['stage', 'Stage: speakers and members', ''],
  ['stage_health', 'Stage health: mixer frame max (ms), overruns, drops, closes, queued bytes', ''],
];
const COLOURS = ['#1a5fb4', '#b3261e', '#26a269', '#c64600', '#613583', '#865e3c', '#1c71d8',
                 '#e5a50a', '#5e5c64', '#2ec27e'];
const SVGNS = 'http://www.w3.org/2000/svg';
const W = 600, H = 160, PAD_L = 44, PAD_B = 14, PAD_T = 6;

// The key as the server reads ?key=: percent-decoded with '+' kept (URLSearchParams would make
// it a space, and a base64 key pasted into the address bar has '+' in it).
function queryKey() {
  const m = /[?&]key=([^&]*)/.exec(location.search);
  if (!m) return '';
  try { return decodeURIComponent(m[1]); } catch (e) { return ''; }
}
const key = queryKey();
const status = document.getElementById('status');
const root = document.getElementById('charts');
const boxes = {};

function el(name, attrs, parent) {
  const e = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + 'G';
  if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(0) + 'k';
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(2);
}

function box(id, title) {
  if (boxes[id]) return boxes[id];
  const sec = document.createElement('section');
  sec.className = 'chart';
  sec.id = 'chart-' + id;
  sec.dataset.points = '0';
  const h = document.createElement('h2');
  h.textContent = title;
  const svg = el('svg', {viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img'});
  svg.setAttribute('aria-label', title);
  const legend = document.createElement('div');
  legend.className = 'legend';
  sec.append(h, svg, legend);
  root.appendChild(sec);
  return (boxes[id] = {sec, svg, legend});
}

function draw(b, t, series, unit) {
  const names = Object.keys(series);
  b.svg.replaceChildren();
  b.legend.replaceChildren();
  let max = 0, points = 0;
  for (const n of names) for (const v of series[n]) max = Math.max(max, v);
  if (max <= 0) max = 1;
  const t0 = t.length ? t[0] : 0, t1 = t.length ? t[t.length - 1] : 1;
  const span = Math.max(t1 - t0, 1);
  const x = (s) => PAD_L + (W - PAD_L - 4) * ((s - t0) / span);
  const y = (v) => PAD_T + (H - PAD_T - PAD_B) * (1 - v / max);
  for (const f of [0, 0.5, 1]) {
    el('line', {class: 'grid', x1: PAD_L, x2: W - 4, y1: y(max * f), y2: y(max * f)}, b.svg);
    el('text', {x: 2, y: y(max * f) + 3}, b.svg).textContent = fmt(max * f) + unit;
  }
  el('text', {x: PAD_L, y: H - 2}, b.svg).textContent = `${Math.round(span)} s`;
  names.forEach((n, i) => {
    const vals = series[n];
    const c = COLOURS[i % COLOURS.length];
    let d = '';
    vals.forEach((v, k) => { d += (k ? 'L' : 'M') + x(t[k]).toFixed(1) + ',' + y(v).toFixed(1); });
    if (vals.length)
      el('path', {d, fill: 'none', stroke: c, 'stroke-width': 1.6,
                  'vector-effect': 'non-scaling-stroke'}, b.svg);
    points += vals.length;
    const item = document.createElement('span');
    const sw = document.createElement('i');
    sw.style.background = c;
    item.append(sw, `${n}: ${vals.length ? fmt(vals[vals.length - 1]) : '–'}`);
    b.legend.appendChild(item);
  });
  b.sec.dataset.points = String(points);
  b.sec.dataset.series = String(names.length);
}

async function update() {
  try {
    const headers = key ? {Authorization: 'Bearer ' + key} : {};
    const r = await fetch('dashboard.json', {headers, cache: 'no-store'});
    if (!r.ok) {
      status.textContent = r.status === 401 || r.status === 403
        ? 'The dashboard needs the admin key: add ?key=… to the address'
        : `Server answered ${r.status}`;
      return;
    }
    const j = await r.json();
    for (const [id, title, unit] of CHARTS)
      draw(box(id, title), j.t, j.charts[id] || {}, unit);
    root.dataset.updates = String(Number(root.dataset.updates) + 1);
    root.dataset.samples = String(j.points);
    const rec = j.recordings || {active: 0, errors: 0, failed: []};
    root.dataset.recordingErrors = String(rec.errors);
    status.textContent = `${j.points} samples of ${j.capacity} (1 per second), updated ` +
                         new Date().toLocaleTimeString() + ` · recordings: ${rec.active} active` +
                         (rec.errors ? `, ${rec.errors} stopped by a write error` +
                          (rec.failed.length ? ` (${rec.failed.map((m) => '/' + m).join(', ')})` : '') +
                          ' — check the disk' : '');
  } catch (e) {
    status.textContent = 'Cannot reach the server: ' + e;
  }
}

update();
setInterval(update, 2000);
