/*
 * rostrum host console: host.html[?stage=HOST:PORT]
 *
 * Creates a space (POST /api/spaces with the host key), shows the links to hand out, then
 * joins the stage as its host (the host token) with the same client as speak.html: the
 * console is the host on stage, with a microphone, and buttons to mute, promote, demote,
 * remove and end. The host key stays in this page's memory only.
 */
import {HostHands} from './hands.js';
import {StageClient, StageView, makeAudioContext, stageAddress, setText, copyText}
  from './stage.js';

const q = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const form = $('create-form'), createBtn = $('create-btn'), rejoinBtn = $('rejoin-btn');
const errEl = $('create-error'), statusEl = $('status'), viewRoot = $('stage-view');
const linksNote = $('links-note');

let ac = null;
let client = null;
let view = null;
let hostHands = null;
let session = null; /* {addr, stageLabel, space, hostToken, key} */
window.rostrumStats = {sent: 0, received: 0, role: null, encoder: null, connected: false};

$('stage').value = (() => {
  try {
    return stageAddress(q.get('stage')).label;
  } catch (e) {
    return q.get('stage') || '';
  }
})();
$('name').value = sessionStorage.getItem('rostrum-name') || '';

function showError(text) {
  setText(errEl, text || '');
  errEl.hidden = !text;
}

function setStatus(text, kind) {
  setText(statusEl, text);
  statusEl.dataset.kind = kind || '';
}

function speakLink(params) {
  const u = new URL('speak.html', location.href);
  u.searchParams.set('stage', session.stageLabel);
  u.searchParams.set('space', session.space);
  for (const [k, v] of Object.entries(params))
    u.searchParams.set(k, v);
  return u.href;
}

function showLinks(hostToken, speakerToken) {
  $('links').hidden = false;
  setText($('links-space'), session.space);
  $('host-link').value = hostToken ? speakLink({token: hostToken})
                                   : '(joined with the host key: no host link)';
  if (speakerToken)
    $('speaker-link').value = speakLink({token: speakerToken});
  $('listen-link').value = new URL('./' + session.space, location.href).href;
  $('audience-link').value = speakLink({});
}

async function api(method, path) {
  const headers = {};
  const bearer = session.hostToken || session.key;
  if (bearer)
    headers.Authorization = 'Bearer ' + bearer;
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), 8000);
  try {
    const r = await fetch(session.addr.http + path, {method, headers, cache: 'no-store',
                                                     signal: ctl.signal});
    let body = null;
    try {
      body = await r.json();
    } catch (e) { /* not JSON */ }
    return {status: r.status, ok: r.ok, body};
  } finally {
    clearTimeout(t);
  }
}

async function newInvite(role) {
  linksNote.textContent = 'Making a ' + role + ' link…';
  try {
    /* an invite seats one person (at a time) unless the host asks for a reusable link */
    const reusable = $('reusable-link').checked;
    const r = await api('POST', '/api/spaces/' + encodeURIComponent(session.space) +
                                '/invites?role=' + role + (reusable ? '&reusable=1' : ''));
    if (!r.ok || !r.body || typeof r.body.token !== 'string')
      throw new Error((r.body && r.body.error) || 'HTTP ' + r.status);
    const link = speakLink({token: r.body.token});
    if (role === 'speaker')
      $('speaker-link').value = link;
    const copied = await copyText(link, role === 'speaker' ? $('speaker-link') : null);
    linksNote.textContent = (role === 'cohost' ? 'Co-host' : 'Speaker') +
      (r.body.reusable ? ' link (reusable) ' : ' link (seats one person) ') +
      (copied ? 'copied to the clipboard' : 'ready') + (role === 'cohost' ? ': ' + link : '.');
  } catch (e) {
    linksNote.textContent = 'Could not make an invite: ' + e.message;
  }
}

document.addEventListener('click', async (e) => {
  const b = e.target.closest('button[data-copy]');
  if (!b)
    return;
  const input = $(b.dataset.copy);
  if (!input.value)
    return;
  const ok = await copyText(input.value, input);
  const was = b.dataset.label || b.textContent;
  b.dataset.label = was;
  b.textContent = ok ? 'Copied' : 'Select and copy';
  setTimeout(() => {
    b.textContent = was;
  }, 1500);
});
$('new-speaker').addEventListener('click', () => newInvite('speaker'));
$('new-cohost').addEventListener('click', () => newInvite('cohost'));

function readForm() {
  showError('');
  const space = $('space').value.trim();
  const key = $('key').value;
  if (!space || !key || !$('space').checkValidity()) {
    form.reportValidity();
    return null;
  }
  let addr;
  try {
    addr = stageAddress($('stage').value);
  } catch (e) {
    showError('The stage server address is not valid.');
    return null;
  }
  const starts = $('starts').value ? Math.floor(new Date($('starts').value).getTime() / 1000) : 0;
  return {addr, stageLabel: addr.label, space, key, title: $('title').value.trim(), starts,
          description: $('description').value.trim(),
          name: $('name').value.trim().slice(0, 40) || 'Host'};
}

function busy(on) {
  createBtn.disabled = rejoinBtn.disabled = on;
}

form.addEventListener('submit', async (e) => {
  e.preventDefault();
  if (client)
    return;
  const f = readForm();
  if (!f)
    return;
  showError('');
  if (!ac)
    ac = makeAudioContext(); /* inside the click, so it may play sound */
  busy(true);
  session = {addr: f.addr, stageLabel: f.stageLabel, space: f.space, key: f.key, hostToken: ''};
  let r;
  try {
    const qs = 'name=' + encodeURIComponent(f.space) +
               (f.title ? '&title=' + encodeURIComponent(f.title) : '') +
               (f.starts ? '&start=' + f.starts + '&description=' +
                           encodeURIComponent(f.description) : '');
    r = await api('POST', '/api/spaces?' + qs);
  } catch (err) {
    busy(false);
    showError('Cannot reach the stage server at ' + f.stageLabel + '.');
    return;
  }
  if (r.status === 409) {
    busy(false);
    showError('A space called “' + f.space + '” already exists. “Join existing with the key” ' +
              'joins it (as host if its host is not on stage).');
    return;
  }
  if (!r.ok || !r.body || typeof r.body.host_token !== 'string') {
    busy(false);
    const msg = r.body && r.body.error ? r.body.error : 'HTTP ' + r.status;
    showError(r.status === 401 ? 'The host key was refused.' : 'Could not create: ' + msg);
    return;
  }
  session.hostToken = r.body.host_token;
  session.key = ''; /* from here on, the host token does everything */
  showLinks(r.body.host_token, r.body.speaker_token);
  join({token: r.body.host_token, name: f.name});
});

rejoinBtn.addEventListener('click', () => {
  if (client)
    return;
  if (session && session.hostToken && $('space').value.trim() === session.space) {
    /* back on stage after a lost connection: the host token still works */
    showError('');
    busy(true);
    join({token: session.hostToken, name: $('name').value.trim().slice(0, 40) || 'Host'});
    return;
  }
  const f = readForm();
  if (!f)
    return;
  showError('');
  if (!ac)
    ac = makeAudioContext();
  session = {addr: f.addr, stageLabel: f.stageLabel, space: f.space, key: f.key, hostToken: ''};
  busy(true);
  showLinks('', '');
  $('speaker-link').value = '';
  join({key: f.key, name: f.name});
});

function join(opts) {
  try {
    sessionStorage.setItem('rostrum-name', opts.name);
  } catch (e) { /* storage off */ }
  client = new StageClient({stage: session.stageLabel, space: session.space, token: opts.token,
                            key: opts.key, name: opts.name, audioContext: ac,
                            forcePcm: q.get('encoder') === 'pcm'});
  window.rostrumStats = client.stats;
  if (view)
    view.destroy();
  view = new StageView(viewRoot, client,
                       {listenUrl: new URL('./' + session.space, location.href).href});
  if (hostHands)
    hostHands.destroy();
  const hands = hostHands = new HostHands(viewRoot, client); /* issue 12: raised hands */
  client.addEventListener('status', (ev) => setStatus(ev.detail.text, ev.detail.kind));
  client.addEventListener('welcome', (ev) => {
    $('create').hidden = true;
    if (ev.detail.role !== 'host')
      linksNote.textContent = 'Note: you joined as ' + ev.detail.role +
                              ', not host (the host is already on stage).';
    if (!session.hostToken && (ev.detail.role === 'host' || ev.detail.role === 'cohost'))
      client.invite('speaker'); /* joined by key: get a speaker link over the socket */
  });
  client.addEventListener('invite', (ev) => {
    if (ev.detail.role === 'speaker' && !$('speaker-link').value)
      $('speaker-link').value = speakLink({token: ev.detail.token});
  });
  client.addEventListener('state', (ev) => {
    hands.update(ev.detail.state);
    const t = ev.detail.state && ev.detail.state.title;
    setText($('space-title'), typeof t === 'string' && t ? t : session.space);
    const st = ev.detail.state || {};
    $('lobby').hidden = st.lobby !== true; /* a scheduled space before it goes live */
    if (st.lobby === true)
      setText($('countdown'), 'Starts in ' + st.starts_in_s + ' s.');
  });
  client.addEventListener('closed', (ev) => {
    const c = client, d = ev.detail;
    client = null;
    busy(false);
    view.destroy(); /* what it shows is no longer true */
    viewRoot.replaceChildren();
    $('create').hidden = false;
    if (c.ended) {
      const name = session ? session.space : '';
      session = null;
      $('links').hidden = true;
      setText($('space-title'), 'host console');
      setStatus('Ended', 'closed');
      showError('The space “' + name + '” has ended. Start another one?');
    } else {
      showError(d.why + (d.wasOpen ? ' “Join existing” takes you back on stage.' : ''));
    }
  });
  client.connect();
}

/* Go live now (a scheduled space's lobby ends; it would at its start time anyway). */
$('go-live').addEventListener('click', async () => {
  if (!session)
    return;
  const r = await api('POST', '/api/spaces/' + encodeURIComponent(session.space) + '/live');
  if (!r.ok)
    linksNote.textContent = 'Could not go live: ' + ((r.body && r.body.error) || 'HTTP ' + r.status);
});
