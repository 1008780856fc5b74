/*
 * rostrum listener page: lists the live spaces from /status-json.xsl (Icecast 2.4's shape)
 * and plays them with the browser's own <audio> element.
 *
 * - Polls every 2 s (15 s while the tab is hidden: at a million listeners the poll is most
 *   of the page's cost to the server). One request at a time, with a timeout, so a slow
 *   server never piles up requests.
 * - A card is keyed by its mount path and built once: refreshes only change its text, so a
 *   playing <audio> is never rebuilt or moved. Cards of ended mounts are removed.
 * - Addresses are resolved against the page, not taken from listenurl, so the page works
 *   behind any host, port or path prefix a proxy puts in front of it.
 * - Server text goes into the page with textContent only.
 * - Stage spaces: each card also asks for /state/<mount>.json (the stage's state document,
 *   cacheable for a second, so the browser's cache and any HTTP cache in front answer most
 *   polls) and shows who is on stage and who is talking. A 404 means a plain relay mount:
 *   that card never asks again.
 */
'use strict';

(function () {
  const POLL_MS = 2000;
  const POLL_HIDDEN_MS = 15000;
  const FETCH_TIMEOUT_MS = 5000;
  /* Icecast fills unset stream metadata with these; show nothing instead */
  const PLACEHOLDERS = new Set(['', 'Unspecified name', 'Unspecified description',
                                'no name', 'no description', 'various', '(none)']);

  const listEl = document.getElementById('spaces');
  const emptyEl = document.getElementById('empty');
  const statusEl = document.getElementById('status');
  const cards = new Map(); /* mount path ("/live") -> card object */
  const ROLE_LABEL = {host: 'host', cohost: 'co-host', speaker: 'speaker'};
  let timer = 0;
  let inFlight = false;

  function setText(el, text) {
    if (el.textContent !== text)
      el.textContent = text;
  }

  function field(src, key) {
    const v = src[key];
    if (typeof v !== 'string' && typeof v !== 'number')
      return '';
    const s = String(v).trim();
    return PLACEHOLDERS.has(s) ? '' : s;
  }

  /* The mount path of a source ("/live"), or '' if listenurl is missing or odd. */
  function mountOf(src) {
    if (!src || typeof src.listenurl !== 'string')
      return '';
    try {
      const path = new URL(src.listenurl, location.href).pathname;
      return path.length > 1 ? path : '';
    } catch (e) {
      return '';
    }
  }

  /* "./live" resolves to "/live" on a page served at "/", and to "/radio/live" behind a
   * proxy that serves the page at "/radio/". The "./" keeps "a:b" from reading as a scheme. */
  function streamUrl(mount) {
    return new URL('.' + mount, location.href).href;
  }

  /* Icecast writes "2024-05-01T10:00:00+0000"; Date wants "+00:00". */
  function parseIso(s) {
    if (typeof s !== 'string')
      return NaN;
    return Date.parse(s.replace(/([+-]\d\d)(\d\d)$/, '$1:$2'));
  }

  function liveFor(ms) {
    const min = Math.floor(ms / 60000);
    if (!(min >= 0))
      return '';
    if (min < 1)
      return 'live for under a minute';
    if (min < 60)
      return 'live for ' + min + ' min';
    return 'live for ' + Math.floor(min / 60) + ' h ' + (min % 60) + ' min';
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls)
      e.className = cls;
    if (text)
      e.textContent = text;
    return e;
  }

  function createCard(mount) {
    const root = el('li', 'card');
    root.dataset.mount = mount;
    const id = 'space-' + (cards.size + 1) + '-' + mount.replace(/[^A-Za-z0-9_-]/g, '_');

    const head = el('div', 'card-head');
    const title = el('h2', 'title');
    title.id = id + '-title';
    const badge = el('span', 'badge', 'Live');
    head.append(title, badge);

    const desc = el('p', 'desc');
    const meta = el('p', 'meta');
    const count = el('span', 'listeners', '0');
    const countLabel = el('span', 'listeners-label', ' listening');
    const since = el('span', 'since');
    const genre = el('span', 'genre');
    meta.append(count, countLabel, since, genre);

    const controls = el('div', 'controls');
    const button = el('button', 'listen', 'Listen');
    button.type = 'button';
    const state = el('span', 'state');
    state.setAttribute('role', 'status');
    controls.append(button, state);

    const audio = el('audio', 'player');
    audio.controls = true;
    audio.preload = 'none';
    audio.src = streamUrl(mount);
    audio.setAttribute('aria-labelledby', title.id);

    /* the address for VLC, mpv or a phone's player */
    const link = el('p', 'url');
    const a = el('a', '', audio.src);
    a.href = audio.src;
    link.append('Stream: ', a);

    /* who is on stage (stage spaces only, filled in by refreshStages) */
    const onstage = el('div', 'onstage');
    onstage.hidden = true;
    const onstageLabel = el('p', 'onstage-label', 'On stage');
    onstageLabel.id = id + '-onstage';
    const chips = el('ul', 'chips');
    chips.setAttribute('aria-labelledby', onstageLabel.id);
    onstage.append(onstageLabel, chips);

    root.append(head, desc, meta, onstage, controls, audio, link);
    const card = {root, title, desc, count, countLabel, since, genre, button, state, audio,
                  name: mount.slice(1), mount: mount.slice(1), onstage, chips,
                  stageMode: 'unknown', stageBusy: false,
                  stageTitle: '', stageSig: ''};

    button.addEventListener('click', () => toggle(card));
    audio.addEventListener('playing', () => {
      labelButton(card);
      setText(state, 'Playing');
      root.classList.add('playing');
    });
    audio.addEventListener('waiting', () => setText(state, 'Buffering…'));
    audio.addEventListener('pause', () => {
      labelButton(card);
      if (!audio.error)
        setText(state, '');
      root.classList.remove('playing');
      /* A paused live stream goes stale, and the server drops a listener that stops
       * reading. Detach the source so the connection closes, then put it back: the element
       * keeps its src (native controls still work) and the next play starts at the live
       * edge. Chromium reconnects at once on a plain load(), but not after this. */
      setTimeout(() => {
        if (audio.paused && audio.isConnected && audio.getAttribute('src'))
          disconnect(audio, audio.getAttribute('src'));
      }, 0);
    });
    audio.addEventListener('ended', () => setText(state, 'Stream ended'));
    audio.addEventListener('error', () => {
      labelButton(card);
      root.classList.remove('playing');
      if (!retryLater(card))
        setText(state, 'Stream error, press Listen to retry');
    });
    audio.addEventListener('playing', () => { card.retries = 0; });
    return card;
  }

  /* The button says what a press will do; its accessible name adds the space's name. */
  function labelButton(card) {
    const verb = card.audio.paused || card.audio.error ? 'Listen' : 'Stop';
    setText(card.button, verb);
    const label = verb + (verb === 'Listen' ? ' to ' : ' ') + card.name;
    if (card.button.getAttribute('aria-label') !== label)
      card.button.setAttribute('aria-label', label);
  }

  /* Closes the element's connection; with <src>, leaves it ready to play again. */
  function disconnect(audio, src) {
    audio.removeAttribute('src');
    audio.load();
    if (src)
      audio.setAttribute('src', src);
  }

  /* Admission: ask the waiting room first. With it off (or room now) no ticket is needed;
   * otherwise wait for the ticket's admit time, plus a little jitter so a storm of
   * browsers does not come back in lockstep. */
  async function admit(card) {
    const base = streamUrl('/' + card.mount);
    try {
      const r = await fetch(new URL('join/' + encodeURIComponent(card.mount), location.href),
                            {cache: 'no-store'});
      if (!r.ok)
        return base;
      const j = await r.json();
      /* A full or stopping server sends /join with a 307 to a relay with room (fetch follows
       * it): the stream is then the relay's, named relative to where the answer came from. */
      const from = r.redirected ? r.url : null;
      if (!j.ticket)
        return from ? new URL(j.stream, from).href : base;
      const wait = j.admit_at_ms - Date.now();
      if (wait > 0) {
        setText(card.state, 'In the waiting room: ' + j.position + ' ahead of you');
        await new Promise((ok) => setTimeout(ok, wait + Math.random() * 500));
      }
      return from ? new URL(j.stream, from).href
                  : new URL(j.stream.replace(/^\//, ''), location.href).href;
    } catch (e) {
      return base;
    }
  }

  /* Refused (503 or 429 come back as a media error) or cut: try again after a jittered,
   * growing delay, as long as the listener still wants to listen. */
  function retryLater(card) {
    card.retries = (card.retries || 0) + 1;
    if (card.retries > 8 || !card.wanted)
      return false;
    const delay = Math.min(30000, 1000 * 2 ** (card.retries - 1)) * (0.5 + Math.random());
    setText(card.state, 'Busy, retrying in ' + Math.round(delay / 1000) + ' s…');
    clearTimeout(card.retryTimer);
    card.retryTimer = setTimeout(() => start(card), delay);
    return true;
  }

  async function start(card) {
    const audio = card.audio;
    setText(card.state, 'Connecting…');
    const src = await admit(card);
    if (!card.wanted)
      return;
    if (audio.getAttribute('src') !== src || audio.error || audio.ended)
      disconnect(audio, src);
    const p = audio.play();
    if (p && p.catch) {
      p.catch((e) => {
        if (e && e.name === 'AbortError')
          return; /* a pause or reload beat the play: not an error */
        if (e && e.name === 'NotAllowedError') {
          card.wanted = false;
          setText(card.state, 'The browser blocked playback: press Listen again');
        } else if (!retryLater(card)) {
          setText(card.state, 'Could not play this stream');
        }
      });
    }
  }

  function toggle(card) {
    const audio = card.audio;
    if (!audio.paused) {
      card.wanted = false;
      clearTimeout(card.retryTimer);
      audio.pause();
      return;
    }
    card.wanted = true;
    card.retries = 0;
    start(card);
  }

  function updateCard(card, src, mount, now) {
    const name = card.stageTitle || field(src, 'server_name') || mount.slice(1);
    setText(card.title, name);
    card.name = name;
    labelButton(card);
    const desc = field(src, 'server_description');
    setText(card.desc, desc);
    card.desc.hidden = !desc;

    /* the whole tree's count (this server and its relays), or Icecast's own figure */
    const n = Number(src.tree_listeners !== undefined ? src.tree_listeners : src.listeners);
    const known = Number.isFinite(n) && n >= 0;
    setText(card.count, known ? Math.floor(n).toLocaleString('en') : '–');
    card.count.dataset.count = known ? String(Math.floor(n)) : '';
    setText(card.countLabel, ' listening');

    const start = parseIso(src.stream_start_iso8601);
    const since = Number.isFinite(start) ? liveFor(now - start) : '';
    setText(card.since, since);
    card.since.hidden = !since;
    const genre = field(src, 'genre');
    setText(card.genre, genre);
    card.genre.hidden = !genre;
  }

  function removeCard(mount, card) {
    const audio = card.audio;
    audio.pause();
    disconnect(audio, null); /* now rather than at garbage collection */
    card.root.remove();
    cards.delete(mount);
  }

  /* <source> is absent (no mount live), an object (one) or an array (several). */
  function sourcesOf(data) {
    const stats = data && data.icestats;
    if (!stats || typeof stats !== 'object')
      throw new Error('no icestats');
    const s = stats.source;
    if (s === undefined || s === null)
      return [];
    /* a space's AAC and MP3 renditions are listed as mounts of their own (as Icecast lists
     * separate mounts); the page plays the Ogg stream of each space, so they get no card */
    return (Array.isArray(s) ? s : [s]).filter(
        (src) => !src || !src.server_type || src.server_type === 'audio/ogg');
  }

  function render(sources) {
    const now = Date.now();
    const seen = new Set();
    for (const src of sources) {
      const mount = mountOf(src);
      if (!mount || seen.has(mount))
        continue;
      seen.add(mount);
      let card = cards.get(mount);
      if (!card) {
        card = createCard(mount);
        cards.set(mount, card);
        listEl.append(card.root); /* new cards go last: existing ones never move */
      }
      updateCard(card, src, mount, now);
    }
    for (const [mount, card] of cards) {
      if (!seen.has(mount))
        removeCard(mount, card);
    }
    emptyEl.hidden = cards.size !== 0;
    const n = cards.size;
    setText(statusEl, n === 0 ? '' : n === 1 ? '1 live space' : n + ' live spaces');
    statusEl.classList.remove('error');
  }

  /* ---- stage spaces ---- */

  function stateUrl(mount) {
    return new URL('./state' + mount + '.json', location.href).href;
  }

  function renderStage(card, doc) {
    const title = typeof doc.title === 'string' ? doc.title.trim() : '';
    if (title && title !== card.stageTitle) {
      card.stageTitle = title;
      card.name = title;
      setText(card.title, title);
      labelButton(card);
    }
    const members = Array.isArray(doc.stage) ? doc.stage.filter((m) => m && typeof m === 'object')
                                             : [];
    const sig = JSON.stringify(members.map((m) => [m.id, m.name, m.role, !!m.muted,
                                                   !!m.talking]));
    card.onstage.hidden = false;
    if (sig === card.stageSig)
      return;
    card.stageSig = sig;
    const items = members.map((m) => {
      const name = typeof m.name === 'string' && m.name ? m.name : 'speaker';
      const role = ROLE_LABEL[m.role] || '';
      const talking = !!m.talking && !m.muted;
      const li = el('li', 'chip' + (talking ? ' talking' : '') + (m.muted ? ' muted' : ''));
      li.append(el('span', 'chip-name', name));
      const extra = [role, talking ? 'talking' : m.muted ? 'muted' : ''].filter(Boolean);
      if (extra.length)
        li.append(el('span', 'chip-role', extra.join(' · ')));
      return li;
    });
    if (!items.length)
      items.push(el('li', 'chip empty-stage', 'Nobody on stage yet'));
    card.chips.replaceChildren(...items);
  }

  async function fetchStage(mount, card) {
    card.stageBusy = true;
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      /* the default cache mode honours the document's max-age=1 */
      const res = await fetch(stateUrl(mount), {signal: ctl.signal});
      if (cards.get(mount) !== card)
        return;
      if (res.status === 404) {
        /* never a stage: a plain relay mount, stop asking. A stage that answered before and
         * now does not is ending: hide it, the card goes with the next status. */
        if (card.stageMode === 'unknown')
          card.stageMode = 'plain';
        card.onstage.hidden = true;
        return;
      }
      if (!res.ok)
        return;
      const doc = await res.json();
      if (cards.get(mount) !== card || !doc || typeof doc !== 'object')
        return;
      card.stageMode = 'stage';
      renderStage(card, doc);
    } catch (e) {
      /* try again on the next poll */
    } finally {
      clearTimeout(t);
      card.stageBusy = false;
    }
  }

  function refreshStages() {
    const jobs = [];
    for (const [mount, card] of cards) {
      if (card.stageMode !== 'plain' && !card.stageBusy)
        jobs.push(fetchStage(mount, card));
    }
    return Promise.all(jobs);
  }

  async function refresh() {
    if (inFlight)
      return; /* the request in flight schedules the next one */
    inFlight = true;
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      const res = await fetch('status-json.xsl', {cache: 'no-store', signal: ctl.signal});
      if (!res.ok)
        throw new Error('HTTP ' + res.status);
      render(sourcesOf(await res.json()));
      document.body.classList.remove('unreachable');
      await refreshStages();
    } catch (e) {
      /* keep the cards: a player may still be playing from its buffer */
      setText(statusEl, 'server unreachable, retrying');
      statusEl.classList.add('error');
      document.body.classList.add('unreachable');
    } finally {
      clearTimeout(t);
      inFlight = false;
      schedule();
    }
  }

  function schedule() {
    clearTimeout(timer);
    const base = document.hidden ? POLL_HIDDEN_MS : POLL_MS;
    /* a little jitter so a crowd that loaded the page together does not poll together */
    timer = setTimeout(refresh, base + Math.floor(Math.random() * base * 0.1));
  }

  /* back in view: show fresh counts now rather than after the slow hidden-tab delay */
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      clearTimeout(timer);
      refresh();
    }
  });

  refresh();
})();
