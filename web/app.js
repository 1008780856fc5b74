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
 *   that card never asks again. Stage cards also carry the reactions and the raised hand
 *   (hands.js, issue 12), whose summaries come back in the same document.
 * - Players (issue 11), chosen once per page, or forced with ?player=web|hls|hlsjs|audio:
 *     web    where WebCodecs' AudioDecoder exists: player.js fetches and decodes the Ogg
 *            stream itself (starts in well under a second, about a second behind live,
 *            reconnects gaplessly with from=);
 *     hls    else, where <audio> plays HLS (Safari): /<space>.m3u8; where it does not (asked
 *            for with ?player=hls), or with ?player=hlsjs, hls.js in low-latency mode on a
 *            MediaSource, loaded from /hls.min.js when the server was built with it. An HLS
 *            player may sit
 *            behind a cache rostrum never sees: while it plays it sends beacons
 *            (beacon.js), so it is counted as an HLS listener;
 *     audio  else <audio> on the Ogg stream, asking for a burst (?burst=) large enough that
 *            the browser, which waits for bytes rather than seconds, starts at once.
 *   The card says the stream's state in words: connecting, reconnecting, "the host is away,
 *   waiting for them" (the status says the source is gone: a grace), "the space has ended".
 */
import {startBeacon} from './beacon.js';
import {WebPlayer, webPlayerSupported} from './player.js';
import {ListenerHands} from './hands.js';
import {LiveCaptions} from './captions.js';

(function () {
  const POLL_MS = 2000;
  const POLL_HIDDEN_MS = 15000;
  const FETCH_TIMEOUT_MS = 5000;
  /* Icecast fills unset stream metadata with these; show nothing instead */
  const PLACEHOLDERS = new Set(['', 'Unspecified name', 'Unspecified description',
                                'no name', 'no description', 'various', '(none)']);

  const FALLBACK_BURST_MS = 6000; /* <audio> starts within 0.3 s with 6 s, 3.5-5 s with 1 s */
  const ENDED_KEEP_MS = 60000; /* a card whose space ended while heard says so this long */
  const MODE = (() => {
    const asked = new URLSearchParams(location.search).get('player');
    if (asked === 'web' || asked === 'hls' || asked === 'hlsjs' || asked === 'audio')
      return asked;
    if (webPlayerSupported())
      return 'web';
    const probe = document.createElement('audio');
    return probe.canPlayType('application/vnd.apple.mpegurl') ? 'hls' : 'audio';
  })();
  document.documentElement.dataset.player = MODE;
  const HLS = MODE === 'hls' || MODE === 'hlsjs';

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

    let audio = null, web = null, playerEl;
    if (MODE === 'web') {
      playerEl = el('div', 'player webplayer');
      playerEl.setAttribute('aria-labelledby', title.id);
    } else {
      audio = el('audio', 'player');
      audio.controls = true;
      audio.preload = 'none';
      audio.src = fallbackUrl(streamUrl(mount));
      audio.setAttribute('aria-labelledby', title.id);
      playerEl = audio;
    }
    playerEl.dataset.state = 'idle';

    /* the address for VLC, mpv or a phone's player */
    const link = el('p', 'url');
    const a = el('a', '', streamUrl(mount));
    a.href = streamUrl(mount);
    link.append('Stream: ', a);

    /* who is on stage (stage spaces only, filled in by refreshStages) */
    const onstage = el('div', 'onstage');
    onstage.hidden = true;
    const onstageLabel = el('p', 'onstage-label', 'On stage');
    onstageLabel.id = id + '-onstage';
    const chips = el('ul', 'chips');
    chips.setAttribute('aria-labelledby', onstageLabel.id);
    onstage.append(onstageLabel, chips);

    const captionsBox = el('div', 'captions-box');
    root.append(head, desc, meta, onstage, controls, playerEl, captionsBox, link);
    const card = {root, title, desc, count, countLabel, since, genre, button, state, audio,
                  web, playerEl, badge,
                  name: mount.slice(1), mount: mount.slice(1), onstage, chips,
                  stageMode: 'unknown', stageBusy: false,
                  stageTitle: '', stageSig: '', sourceGone: false, endedAt: 0};

    button.addEventListener('click', () => toggle(card));
    /* issue 12: live captions, shown in step with what this player plays */
    card.captions = new LiveCaptions(captionsBox, card.mount, () => behindLive(card));
    if (MODE === 'web') {
      card.web = new WebPlayer(playerEl, () => admit(card));
      card.web.addEventListener('state', () => showState(card));
      return card;
    }
    trackAudio(card);
    audio.addEventListener('playing', () => {
      labelButton(card);
      setText(state, 'Playing');
      root.classList.add('playing');
    });
    audio.addEventListener('waiting', () => {
      audio.dataset.state = 'stalled';
      setText(state, card.sourceGone ? HOST_AWAY : 'Buffering…');
    });
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
        if (card.hls) { /* hls.js: let go of the stream, the next play starts at the edge */
          card.hls.destroy();
          card.hls = null;
          return;
        }
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

  const HOST_AWAY = 'The host is away, waiting for them…';

  /* How far behind live the card's player is (ms), or null while it plays nothing: the web
   * player measures it; hls.js estimates it; <audio> is about its burst behind. */
  function behindLive(card) {
    if (card.web) {
      const s = card.web.stats;
      return s.state === 'playing' ? (s.latency_ms === null ? 1000 : s.latency_ms) : null;
    }
    const audio = card.audio;
    if (audio.paused || audio.readyState < 3)
      return null;
    if (card.hls && Number.isFinite(card.hls.latency) && card.hls.latency > 0)
      return card.hls.latency * 1000;
    return HLS ? 3000 : FALLBACK_BURST_MS + 500;
  }

  /* <audio>: the burst it needs (HLS as it is) */
  function fallbackUrl(src) {
    if (HLS)
      return src.replace(/(\?.*)?$/, '.m3u8$1');
    const u = new URL(src);
    u.searchParams.set('burst', String(FALLBACK_BURST_MS));
    return u.href;
  }

  /* <audio>: the same data-* state as the web player (state, played seconds) */
  function trackAudio(card) {
    const audio = card.audio;
    let prev = null, prevAt = 0, played = 0;
    audio.addEventListener('playing', () => { audio.dataset.state = 'playing'; });
    if (HLS) { /* counted by beacons while it plays (a cache may hide it) */
      const stop = () => {
        if (card.beacon)
          card.beacon();
        card.beacon = null;
      };
      audio.addEventListener('playing', () => {
        card.beacon = card.beacon || startBeacon(card.mount);
      });
      for (const ev of ['pause', 'ended', 'error'])
        audio.addEventListener(ev, stop);
    }
    audio.addEventListener('timeupdate', () => {
      const now = performance.now();
      if (prev !== null && !audio.paused) {
        const step = audio.currentTime - prev;
        if (step > 0 && step <= (now - prevAt) / 1000 + 0.25)
          played += step;
      }
      prev = audio.currentTime;
      prevAt = now;
      audio.dataset.playedS = played.toFixed(2);
    });
    audio.addEventListener('ended', () => { audio.dataset.state = 'ended'; });
    audio.addEventListener('pause', () => { audio.dataset.state = 'idle'; prev = null; });
  }

  /* The web player's state, in words. */
  function showState(card) {
    const s = card.web.stats;
    labelButton(card);
    card.root.classList.toggle('playing', s.state === 'playing');
    let words = '';
    if (s.state === 'ended')
      words = s.detail === 'stopped' ? '' : 'The space has ended';
    else if (card.sourceGone)
      words = HOST_AWAY;
    else if (s.detail === 'reconnecting')
      words = 'Reconnecting…';
    else if (s.detail === 'refused')
      words = 'Busy, retrying…';
    else if (s.state === 'connecting')
      words = 'Connecting…';
    else if (s.state === 'stalled')
      words = 'Waiting for audio…';
    else if (s.state === 'playing')
      words = s.latency_ms === null ? 'Playing'
                                    : 'Playing · ' + (s.latency_ms / 1000).toFixed(1) + ' s behind live';
    setText(card.state, words);
  }

  function isPlaying(card) {
    return card.web ? card.web.playing : !(card.audio.paused || card.audio.error);
  }

  /* The button says what a press will do; its accessible name adds the space's name. */
  function labelButton(card) {
    const verb = isPlaying(card) ? 'Stop' : 'Listen';
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
    const src = fallbackUrl(await admit(card));
    if (!card.wanted)
      return;
    const native = audio.canPlayType('application/vnd.apple.mpegurl') !== '';
    if (MODE === 'hlsjs' || (MODE === 'hls' && !native)) {
      if (!await hlsJs(card, src))
        return;
    } else if (audio.getAttribute('src') !== src || audio.error || audio.ended) {
      disconnect(audio, src);
    }
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

  /* hls.js, loaded once from the server (/hls.min.js: there when rostrum was built with it). */
  let hlsLoad = null;
  function loadHlsJs() {
    if (!hlsLoad)
      hlsLoad = new Promise((ok) => {
        if (window.Hls)
          return ok(window.Hls);
        const s = document.createElement('script');
        s.src = new URL('hls.min.js', location.href).href;
        s.onload = () => ok(window.Hls && window.Hls.isSupported() ? window.Hls : null);
        s.onerror = () => ok(null);
        document.head.appendChild(s);
      });
    return hlsLoad;
  }

  /* Attaches hls.js to the card's <audio> on <src>. Returns false where it cannot. */
  async function hlsJs(card, src) {
    if (card.hls)
      return true;
    const Hls = await loadHlsJs();
    if (!Hls) {
      card.wanted = false;
      setText(card.state, 'This browser cannot play HLS');
      return false;
    }
    const hls = new Hls({lowLatencyMode: true});
    hls.on(Hls.Events.ERROR, (_, d) => {
      if (d.fatal && card.hls === hls) {
        hls.destroy();
        card.hls = null;
        if (!retryLater(card))
          setText(card.state, 'Stream error, press Listen to retry');
      }
    });
    card.hls = hls;
    card.audio.removeAttribute('src');
    hls.loadSource(src);
    hls.attachMedia(card.audio);
    return true;
  }

  function toggle(card) {
    if (card.web) {
      if (card.web.playing) {
        card.wanted = false;
        card.web.stop();
      } else if (!card.endedAt) {
        card.wanted = true;
        card.web.start();
      }
      labelButton(card);
      return;
    }
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
    if (card.endedAt) { /* back (the same mount, a new stream) */
      card.endedAt = 0;
      card.root.classList.remove('ended');
      setText(card.badge, 'Live');
      card.button.disabled = false;
      setText(card.state, '');
    }
    /* a studio source gone, the space in its grace: say so rather than "Buffering" */
    const gone = src.source_connected === false && card.stageMode !== 'stage';
    if (gone !== card.sourceGone) {
      card.sourceGone = gone;
      card.playerEl.dataset.sourceGone = gone ? '1' : '';
      if (card.web)
        showState(card);
      else if (gone && !card.audio.paused)
        setText(card.state, HOST_AWAY);
      else if (!gone && !card.audio.paused)
        setText(card.state, 'Playing');
    }
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
    /* a scheduled space (issue 12) counts down to its start; its stream is the lobby */
    const since = typeof src.starts_in_s === 'number' && src.starts_in_s >= 0
      ? 'starts in ' + (src.starts_in_s >= 60 ? Math.floor(src.starts_in_s / 60) + ' min'
                                              : src.starts_in_s + ' s')
      : Number.isFinite(start) ? liveFor(now - start) : '';
    setText(card.since, since);
    card.since.hidden = !since;
    const genre = field(src, 'genre');
    setText(card.genre, genre);
    card.genre.hidden = !genre;
  }

  function removeCard(mount, card) {
    card.captions.stop();
    if (card.web) {
      card.web.stop();
    } else {
      card.audio.pause();
      disconnect(card.audio, null); /* now rather than at garbage collection */
    }
    card.root.remove();
    cards.delete(mount);
  }

  /* Its space is gone from the status. A card that was being heard says so for a while
   * (its player finds the same when it reconnects: 404); others go at once. */
  function endCard(mount, card, now) {
    if (!card.wanted || (card.endedAt && now - card.endedAt > ENDED_KEEP_MS)) {
      removeCard(mount, card);
      return;
    }
    if (!card.endedAt) {
      card.endedAt = now;
      card.root.classList.add('ended');
      setText(card.badge, 'Ended');
      card.button.disabled = true;
      if (card.web)
        card.web.stop();
      else
        card.audio.pause();
      card.playerEl.dataset.state = 'ended';
      setText(card.state, 'The space has ended');
    }
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
    let ended = 0;
    for (const [mount, card] of cards) {
      if (!seen.has(mount))
        endCard(mount, card, now);
      if (cards.get(mount) === card && card.endedAt)
        ended++;
    }
    emptyEl.hidden = cards.size !== 0;
    const n = cards.size - ended;
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
      /* issue 12: reactions and raised hands, built the first time the space is a stage */
      if (!card.hands)
        card.hands = new ListenerHands(card.onstage, card.mount,
                                       {stage: new URLSearchParams(location.search).get('stage')});
      card.hands.update(doc);
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
