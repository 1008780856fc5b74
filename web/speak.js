/*
 * rostrum speaker page: speak.html?stage=HOST:PORT&space=NAME&token=T[&name=NAME]
 * (or &key=HOST_KEY). Joins the stage on a click (a click lets the page use the microphone
 * and play sound), then shows who is on stage, your microphone and your controls.
 * ?encoder=pcm forces the PCM path (for tests).
 *
 * window.rostrumStats is the live client's counters: {sent, received, role, encoder, ...}.
 */
import {StageClient, StageView, makeAudioContext, stageAddress, tokenInfo, setText, ROLE_LABEL}
  from './stage.js';

const q = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const form = $('join-form'), joinPanel = $('join'), joinBtn = $('join-btn');
const joinError = $('join-error'), statusEl = $('status'), viewRoot = $('stage-view');
const nameInput = $('name'), spaceInput = $('space');

let space = (q.get('space') || '').trim();
const token = q.get('token') || '';
const key = q.get('key') || '';
let addr;
try {
  addr = stageAddress(q.get('stage'));
  setText($('stage-addr'), addr.label);
} catch (e) {
  addr = null;
  setText($('stage-addr'), '(bad address)');
}

let ac = null;
let client = null;
let view = null;
window.rostrumStats = {sent: 0, received: 0, role: null, encoder: null, connected: false};

/* the name as the server takes it: no control characters, at most 47 bytes of UTF-8 */
function cleanName(s) {
  let n = String(s || '').replace(/[\u0000-\u001f\u007f]/g, '').trim();
  const enc = new TextEncoder();
  while (enc.encode(n).length > 47)
    n = n.slice(0, -1);
  return n;
}

function hint() {
  const ti = token ? tokenInfo(token) : null;
  let t;
  if (key)
    t = 'You join with the host key: you take the next free place on stage.';
  else if (ti && ROLE_LABEL[ti.role])
    t = 'You are invited as ' + ROLE_LABEL[ti.role].toLowerCase() +
        (ti.role === 'listener' ? ': you can ask to speak.' : ': you will be live on stage.');
  else if (token)
    t = 'You join with an invite.';
  else
    t = 'You join the audience; you can ask to speak.';
  if (ti && ti.expires && ti.expires < Date.now())
    t += ' This invite has expired.';
  if (!window.isSecureContext)
    t += ' Note: this page is not on https, so the browser will not give it a microphone.';
  return t;
}

function setStatus(text, kind) {
  setText(statusEl, text);
  statusEl.dataset.kind = kind || '';
}

function showSpace() {
  setText($('join-title'), space ? 'Join “' + space + '”' : 'Join a space');
  document.title = (space ? space + ' — ' : '') + 'rostrum stage';
}

nameInput.value = cleanName(q.get('name') || sessionStorage.getItem('rostrum-name') || '');
if (!space) {
  $('space-field').hidden = false;
  spaceInput.required = true;
}
showSpace();
setText($('join-hint'), hint());

function showError(text) {
  setText(joinError, text);
  joinError.hidden = !text;
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  if (client)
    return;
  if (!space) {
    space = spaceInput.value.trim();
    if (!space)
      return;
    showSpace();
  }
  if (!addr) {
    showError('The stage address in this link is not valid.');
    return;
  }
  showError('');
  const name = cleanName(nameInput.value);
  try {
    sessionStorage.setItem('rostrum-name', name);
  } catch (err) { /* storage off */ }
  if (!ac)
    ac = makeAudioContext(); /* now, inside the click */
  joinBtn.disabled = true;
  client = new StageClient({stage: q.get('stage'), space, token, key, name, audioContext: ac,
                            forcePcm: q.get('encoder') === 'pcm'});
  window.rostrumStats = client.stats;
  if (view)
    view.destroy();
  view = new StageView(viewRoot, client, {listenUrl: new URL('./' + space, location.href).href});
  client.addEventListener('status', (ev) => setStatus(ev.detail.text, ev.detail.kind));
  client.addEventListener('welcome', () => {
    joinPanel.hidden = true;
  });
  client.addEventListener('state', (ev) => {
    const t = ev.detail.state && ev.detail.state.title;
    setText($('space-title'), typeof t === 'string' && t ? t : space);
  });
  client.addEventListener('closed', (ev) => {
    const d = ev.detail;
    const c = client;
    client = null;
    joinBtn.disabled = false;
    if (c.ended) {
      view.destroy();
      viewRoot.replaceChildren();
      $('ended').hidden = false;
      joinPanel.hidden = true;
      setStatus('Ended', 'closed');
      return;
    }
    setText(joinBtn, 'Join again');
    joinPanel.hidden = false;
    showError(d.why);
    /* what the view shows is no longer true */
    view.destroy();
    viewRoot.replaceChildren();
  });
  client.connect();
});
