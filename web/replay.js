/*
 * rostrum listener page: past spaces (issue 12, item 2). Lists /recordings.json under the live
 * spaces, newest first, each with a replay player: an <audio> on the recording's Ogg file,
 * which the browser seeks with HTTP Range requests (the server answers 206). Recordings that
 * still grow are left out (their space is live above). Refreshed every 30 s.
 */
(function () {
  'use strict';
  const list = document.getElementById('past');
  const section = document.getElementById('past-section');
  if (!list || !section)
    return;

  function when(id) {
    /* the id is <mount>-<YYYYmmddTHHMMSSZ>-<serial> */
    const m = /-(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z-[0-9a-f]{8}$/.exec(id);
    if (!m)
      return '';
    const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
    return d.toLocaleString();
  }

  function card(rec) {
    const li = document.createElement('li');
    li.className = 'card past';
    li.dataset.id = rec.id;
    const h = document.createElement('h2');
    h.textContent = rec.mount;
    const p = document.createElement('p');
    p.className = 'meta';
    p.textContent = `Recorded ${when(rec.id)} · ${Math.round(rec.bytes / 1024)} KiB`;
    const audio = document.createElement('audio');
    audio.controls = true;
    audio.preload = 'none';
    audio.src = rec.url;
    audio.setAttribute('aria-label', `Replay of ${rec.mount}`);
    li.append(h, p, audio);
    return li;
  }

  async function refresh() {
    try {
      const r = await fetch('recordings.json', {cache: 'no-store'});
      if (!r.ok)
        return;
      const recs = (await r.json()).recordings.filter((x) => !x.growing);
      recs.sort((a, b) => b.modified - a.modified);
      const have = new Set([...list.children].map((li) => li.dataset.id));
      const want = new Set(recs.map((x) => x.id));
      for (const li of [...list.children])
        if (!want.has(li.dataset.id))
          li.remove();
      for (const rec of recs)
        if (!have.has(rec.id))
          list.append(card(rec));
      section.hidden = recs.length === 0;
    } catch (e) {
      /* the live list says when the server cannot be reached */
    }
  }

  refresh();
  setInterval(refresh, 30000);
})();
