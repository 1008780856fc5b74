/*
 * Reactions and raised hands (issue 12), for the listener page (ListenerHands) and the host
 * console (HostHands). The listener page never opens a socket for them: each click is one
 * small POST to the audience port (/react/<space>, /hand/<space>), and what everyone sees
 * comes back in the space's state document, which the page polls anyway (cacheable).
 *
 * - A listener id (POST /hand/<space>?op=hello) is asked for once and kept for the tab
 *   (sessionStorage); a 403 (expired, or another address) asks for a new one.
 * - A raised hand is refreshed (op=keep) every ttl / 3 so it does not lapse; lowering it
 *   says so.
 * - When the host invites the hand ("invited" in the document), the page asks for its stage
 *   token (op=accept), offers the link to the speaker page and lowers the hand.
 * Server text goes into the page with textContent only.
 */
export const REACTIONS = [['clap', '\u{1F44F}'], ['heart', '\u2764\uFE0F'], ['laugh', '\u{1F602}'],
                          ['wow', '\u{1F62E}'], ['fire', '\u{1F525}'], ['up', '\u{1F44D}']];

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls)
    e.className = cls;
  if (text !== undefined)
    e.textContent = text;
  return e;
}

export class ListenerHands {
  constructor(root, space, opts = {}) {
    this.space = space;
    this.stage = opts.stage || '';
    this.key = 'rostrum-listener-' + space;
    this.id = null;
    this.hand = null;
    this.raised = false;
    this.timer = null;
    this.token = null;
    this.box = el('div', 'reactions');
    const row = el('div', 'reaction-row');
    row.setAttribute('role', 'group');
    row.setAttribute('aria-label', 'React');
    this.counts = {};
    for (const [name, emoji] of REACTIONS) {
      const b = el('button', 'react small', emoji);
      b.type = 'button';
      b.dataset.reaction = name;
      b.setAttribute('aria-label', name);
      const n = el('span', 'react-count', '');
      this.counts[name] = n;
      b.append(n);
      b.addEventListener('click', () => this.react(name));
      row.append(b);
    }
    this.handBtn = el('button', 'hand small', '\u270B Raise hand');
    this.handBtn.type = 'button';
    this.handBtn.addEventListener('click', () => this.toggleHand());
    this.status = el('span', 'hand-status');
    this.status.setAttribute('role', 'status');
    this.link = el('a', 'hand-join', 'Join the stage');
    this.link.hidden = true;
    this.nameIn = el('input', 'hand-name-input');
    this.nameIn.maxLength = 30;
    this.nameIn.placeholder = 'Your name (optional)';
    this.nameIn.setAttribute('aria-label', 'Your name, for the host');
    try {
      this.nameIn.value = sessionStorage.getItem('rostrum-name') || '';
    } catch (e) { /* storage off */ }
    this.box.append(row, this.nameIn, this.handBtn, this.status, this.link);
    root.append(this.box);
    try {
      const saved = JSON.parse(sessionStorage.getItem(this.key) || 'null');
      if (saved && saved.id) {
        this.id = saved.id;
        this.hand = saved.hand;
      }
    } catch (e) { /* storage off */ }
  }

  url(path, params) {
    const u = new URL('./' + path + '/' + encodeURIComponent(this.space), location.href);
    for (const [k, v] of Object.entries(params))
      u.searchParams.set(k, v);
    return u.href;
  }

  async post(path, params) {
    const r = await fetch(this.url(path, params), {method: 'POST', cache: 'no-store'});
    let body = null;
    try {
      body = await r.json();
    } catch (e) { /* an empty answer */ }
    return {status: r.status, body};
  }

  async ensureId() {
    if (this.id)
      return this.id;
    const r = await this.post('hand', {op: 'hello'});
    if (r.status !== 200 || !r.body)
      throw new Error('no listener id (' + r.status + ')');
    this.id = r.body.id;
    this.hand = r.body.hand;
    this.ttl = r.body.ttl_s || 120;
    try {
      sessionStorage.setItem(this.key, JSON.stringify({id: this.id, hand: this.hand}));
    } catch (e) { /* storage off */ }
    return this.id;
  }

  /* one retry with a new id if the server no longer takes ours */
  async withId(path, params) {
    await this.ensureId();
    let r = await this.post(path, {...params, id: this.id});
    if (r.status === 403) {
      this.id = null;
      await this.ensureId();
      r = await this.post(path, {...params, id: this.id});
    }
    return r;
  }

  async react(name) {
    try {
      const r = await this.withId('react', {r: name});
      if (r.status === 429)
        this.say('Easy — too many reactions');
    } catch (e) {
      this.say('Could not send the reaction');
    }
  }

  say(text) {
    this.status.textContent = text;
  }

  async toggleHand() {
    this.raised = !this.raised;
    clearInterval(this.timer);
    try {
      const name = this.nameIn.value.trim().slice(0, 30);
      try {
        sessionStorage.setItem('rostrum-name', name);
      } catch (e) { /* storage off */ }
      const r = await this.withId('hand', this.raised ? {op: 'up', name} : {op: 'down'});
      if (r.status !== 200) {
        this.raised = false;
        this.say((r.body && r.body.error) || 'The host cannot take more hands now');
      } else if (this.raised) {
        this.say('Hand raised: the host sees it');
        const every = Math.max(2, (r.body.ttl_s || 120) / 3) * 1000;
        this.timer = setInterval(() => this.withId('hand', {op: 'keep', name}).catch(() => {}),
                                 every);
      } else {
        this.say('Hand lowered');
      }
    } catch (e) {
      this.raised = false;
      this.say('Could not reach the server');
    }
    this.handBtn.textContent = this.raised ? '\u270B Lower hand' : '\u270B Raise hand';
    this.handBtn.setAttribute('aria-pressed', String(this.raised));
  }

  /* the state document: counts of the last second, our hand's place and invitation */
  async update(doc) {
    const per = doc && typeof doc.reactions === 'object' && doc.reactions ? doc.reactions : {};
    for (const [name] of REACTIONS) {
      const n = Number(per[name]) || 0;
      this.counts[name].textContent = n ? ' ' + n : '';
    }
    const hands = Array.isArray(doc && doc.hands) ? doc.hands : [];
    const i = this.hand ? hands.findIndex((x) => x && x.hand === this.hand) : -1;
    if (i >= 0 && this.raised && !hands[i].invited)
      this.say('Hand raised: ' + (i ? i + ' before you' : 'you are first'));
    if (i >= 0 && hands[i].invited && !this.token) {
      this.token = 'asking';
      try {
        const r = await this.withId('hand', {op: 'accept'});
        if (r.status === 200 && r.body && r.body.token) {
          this.token = r.body.token;
          const u = new URL('speak.html', location.href);
          if (this.stage)
            u.searchParams.set('stage', this.stage);
          u.searchParams.set('space', this.space);
          u.searchParams.set('token', this.token);
          this.link.href = u.href;
          this.link.hidden = false;
          this.say('The host invites you on stage');
          /* the hand has done its work: off the host's list (and its invitation with it) */
          clearInterval(this.timer);
          this.raised = false;
          this.handBtn.textContent = '\u270B Raise hand';
          this.handBtn.setAttribute('aria-pressed', 'false');
          this.withId('hand', {op: 'down'}).catch(() => {});
        } else {
          this.token = null;
        }
      } catch (e) {
        this.token = null;
      }
    }
  }
}

/* The host console's list of raised hands, in order, with Invite and Dismiss. */
export class HostHands {
  constructor(root, client) {
    this.client = client;
    this.panel = el('section', 'panel hands');
    this.panel.setAttribute('aria-label', 'Raised hands');
    const head = el('div', 'panel-head');
    this.title = el('h2', '', 'Raised hands');
    this.totals = el('p', 'hint reaction-totals');
    head.append(this.title);
    this.list = el('ol', 'hands-list');
    this.panel.append(head, this.totals, this.list);
    root.append(this.panel);
    this.sig = '';
  }

  destroy() {
    this.panel.remove();
  }

  update(state) {
    if (!state)
      return;
    const tot = state.reactions_total || {};
    this.totals.textContent = REACTIONS.map(([n, e]) => e + ' ' + (Number(tot[n]) || 0))
      .join('  ');
    const hands = Array.isArray(state.hands) ? state.hands : [];
    const count = Number(state.hands_count) || 0;
    this.title.textContent = 'Raised hands (' + count + ')';
    const sig = JSON.stringify(hands.map((x) => [x.hand, x.name, x.invited]));
    if (sig === this.sig)
      return;
    this.sig = sig;
    const items = hands.map((x) => {
      const li = el('li', 'hand-item');
      li.dataset.hand = x.hand;
      li.append(el('span', 'hand-name', x.name || 'A listener'));
      if (x.invited) {
        li.append(el('span', 'hand-invited', ' invited'));
      } else {
        const inv = el('button', 'small primary hand-invite', 'Invite');
        inv.type = 'button';
        inv.addEventListener('click', () => this.client.send({type: 'invite_hand', hand: x.hand}));
        li.append(inv);
      }
      const dis = el('button', 'small hand-dismiss', 'Dismiss');
      dis.type = 'button';
      dis.addEventListener('click', () => this.client.send({type: 'dismiss_hand', hand: x.hand}));
      li.append(dis);
      return li;
    });
    if (!items.length)
      items.push(el('li', 'hand-item empty', 'No hands raised'));
    this.list.replaceChildren(...items);
  }
}
