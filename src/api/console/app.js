// The hokrajai console: plain modern JavaScript, no framework, no build step, nothing fetched
// from anywhere but this box. Every string comes from i18n.js; every date is shown in the box's
// zone (from /api/v1/status), in Thai with the Buddhist-era year unless English is chosen.
//
// Data from the API (titles, scripts, names) is only ever put in the page as text (`h()` below
// never parses HTML), so an announcement title cannot inject markup.

import { STRINGS, MONTHS, WEEKDAYS } from './i18n.js';

const TOKEN_KEY = 'hokrajai.token';
const LANG_KEY = 'hokrajai.lang';
const STATUS_EVERY_MS = 3000;
const ALL_ROLES = ['uploader', 'approver', 'auditor', 'admin'];
const AIRTIME_STATUSES = ['playing', 'completed', 'interrupted', 'failed', 'missed'];

const S = {
  token: null,
  me: null, // {name, role}
  lang: 'th',
  tz: 'Asia/Bangkok',
  skewMs: 0, // box clock minus this browser's clock
  view: null,
  outputs: [], // output names, from /api/v1/status
  data: {},
  week: { offset: 0, output: null },
  objectUrls: [],
  reportAvailable: null,
};

// ---------------------------------------------------------------------------------------------
// Small helpers

const $ = (sel) => document.querySelector(sel);

/** Build an element. Children that are strings become text nodes; null/false are skipped. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replace an element's children (null/false skipped, unlike replaceChildren, which prints "null"). */
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function t(key, vars) {
  let s = STRINGS[S.lang][key] ?? STRINGS.th[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

function has(key) {
  return key in STRINGS[S.lang] || key in STRINGS.th;
}

const outputName = (name) => (has(`output.${name}`) ? t(`output.${name}`) : name);
// Slot names are the box's own words, except the one the daemon uses for emergencies.
const slotName = (name) => (name === 'emergency' ? t('slot.emergency') : name);
const roleName = (role) => (has(`role.${role}`) ? t(`role.${role}`) : role);
const canDo = (roles) => !!S.me && roles.includes(S.me.role);

function fmtNumber(n) {
  return new Intl.NumberFormat(S.lang === 'th' ? 'th-TH' : 'en-GB').format(n);
}

// ---------------------------------------------------------------------------------------------
// Time: everything is shown in the box's zone. Civil dates are {y, m, d} (Gregorian).

const dtfCache = new Map();
function dtf(tz) {
  let f = dtfCache.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: tz, hourCycle: 'h23', weekday: 'short', year: 'numeric', month: 'numeric',
      day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
    });
    dtfCache.set(tz, f);
  }
  return f;
}
const WD_INDEX = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

function setTimezone(tz) {
  try {
    dtf(tz).format(new Date());
    S.tz = tz;
  } catch {
    S.tz = 'Asia/Bangkok';
  }
}

/** The wall-clock fields of an instant in the box's zone. */
function parts(x) {
  const d = x instanceof Date ? x : new Date(x);
  const o = {};
  for (const p of dtf(S.tz).formatToParts(d)) o[p.type] = p.value;
  return {
    y: +o.year, m: +o.month, d: +o.day, hh: (+o.hour) % 24, mi: +o.minute, ss: +o.second,
    wd: WD_INDEX[o.weekday],
  };
}

function boxNow() {
  return new Date(Date.now() + S.skewMs);
}

const pad2 = (n) => String(n).padStart(2, '0');
const civilKey = (c) => `${c.y}-${pad2(c.m)}-${pad2(c.d)}`;

function civilFromKey(key) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(key || '');
  return m ? { y: +m[1], m: +m[2], d: +m[3] } : null;
}

function addDays(c, n) {
  const d = new Date(Date.UTC(c.y, c.m - 1, c.d + n));
  return { y: d.getUTCFullYear(), m: d.getUTCMonth() + 1, d: d.getUTCDate() };
}

const weekdayOf = (c) => new Date(Date.UTC(c.y, c.m - 1, c.d)).getUTCDay();

function todayCivil() {
  const p = parts(boxNow());
  return { y: p.y, m: p.m, d: p.d };
}

/** Offset of the box's zone from UTC at instant `ms`, in ms. */
function zoneOffsetMs(ms) {
  const p = parts(new Date(ms));
  return Date.UTC(p.y, p.m - 1, p.d, p.hh, p.mi, p.ss) - Math.floor(ms / 1000) * 1000;
}

/** The instant when the box's wall clock shows this civil date and time. */
function zonedToUtc(c, hh = 0, mi = 0, ss = 0) {
  const guess = Date.UTC(c.y, c.m - 1, c.d, hh, mi, ss);
  let ms = guess - zoneOffsetMs(guess);
  const again = guess - zoneOffsetMs(ms);
  if (again !== ms) ms = again;
  return new Date(ms);
}

function fmtCivil(c) {
  const year = S.lang === 'th' ? c.y + 543 : c.y;
  return `${c.d} ${MONTHS[S.lang][c.m - 1]} ${year}`;
}

function fmtDate(x) {
  return fmtCivil(parts(x));
}

function fmtTime(x, seconds = false) {
  const p = parts(x);
  return `${pad2(p.hh)}:${pad2(p.mi)}${seconds ? `:${pad2(p.ss)}` : ''}`;
}

function fmtDateTime(x, seconds = false) {
  return `${fmtDate(x)} ${fmtTime(x, seconds)}`;
}

/** "HH:MM" with seconds only when they are not zero. */
function fmtTimeAuto(x) {
  return fmtTime(x, parts(x).ss !== 0);
}

/** "06:00–06:30", or with seconds on both ends when either needs them. */
function fmtRange(start, end) {
  if (!end) return fmtTimeAuto(start);
  const secs = parts(start).ss !== 0 || parts(end).ss !== 0;
  return `${fmtTime(start, secs)}–${fmtTime(end, secs)}`;
}

function fmtDuration(ms) {
  const total = Math.round((ms || 0) / 1000);
  if (total < 60) return t('unit.s', { n: total });
  const m = Math.floor(total / 60);
  if (total % 60 === 0) return m >= 60 ? t('unit.hm', { h: Math.floor(m / 60), m: m % 60 }) : t('unit.m', { m });
  return t('unit.min', { m, s: pad2(total % 60) });
}

function fmtUptime(s) {
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  if (d > 0) return t('unit.uptime_d', { d, h: hh });
  if (hh > 0) return t('unit.uptime_h', { h: hh, m: mm });
  return t('unit.uptime_m', { m: mm });
}

/** A `datetime-local` value read as the box's wall clock → RFC 3339 (UTC). */
function localInputToRfc3339(v) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?$/.exec(v || '');
  if (!m) return null;
  return zonedToUtc({ y: +m[1], m: +m[2], d: +m[3] }, +m[4], +m[5], +(m[6] || 0)).toISOString();
}

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Read an error body `{"error", "message"}` into an ApiError. */
async function errorFrom(res) {
  let body = {};
  try {
    body = await res.json();
  } catch {
    // not JSON: keep the status
  }
  return new ApiError(res.status, body.error || `http_${res.status}`, body.message || res.statusText || '');
}

async function api(path, { method = 'GET', json, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${S.token}` };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'network', t('err.network'));
  }
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 401 && S.me) signOut(t('signin.expired'));
    throw err;
  }
  return raw ? res : res.json();
}

/** "ไทย / English" messages from the API, split into the two languages. */
function splitMessage(msg) {
  const thai = /[\u0E00-\u0E7F]/;
  const i = msg.indexOf(' / ');
  if (i > 0 && thai.test(msg.slice(0, i))) return { th: msg.slice(0, i), en: msg.slice(i + 3) };
  return thai.test(msg) ? { th: msg, en: '' } : { th: '', en: msg };
}

/** The plain-language lines for an error: a headline, and the box's own words as detail. */
function errorLines(err) {
  if (err.code === 'network') return { head: t('err.network'), detail: '' };
  const split = splitMessage(err.message || '');
  const known = has(`err.${err.code}`) ? t(`err.${err.code}`) : '';
  const mine = S.lang === 'th' ? split.th || split.en : split.en || split.th;
  const head = known || mine || t('err.generic', { status: err.status });
  let detail = known ? split.en || split.th : (S.lang === 'th' && split.th ? split.en : '');
  if (detail === head) detail = '';
  return { head, detail };
}

function showError(el, err) {
  if (!(err instanceof ApiError)) {
    console.error(err);
    err = new ApiError(0, 'script', String(err && err.message ? err.message : err));
  }
  const { head, detail } = errorLines(err);
  fill(el,
    h('p', { class: 'msg-head' }, head),
    detail ? h('p', { class: 'msg-detail' }, `${t('err.details')}: ${detail}`) : null);
  el.hidden = false;
}

function hideMsg(el) {
  el.hidden = true;
  el.replaceChildren();
}

/** A short success or error message in a role=status region. */
function say(el, text, kind = 'ok') {
  el.replaceChildren(h('p', { class: `msg ${kind}` }, text));
}

function sayError(el, err) {
  const box = h('div', { class: 'msg bad' });
  showError(box, err);
  el.replaceChildren(box);
}

// ---------------------------------------------------------------------------------------------
// Language

function applyStatic() {
  document.documentElement.lang = S.lang;
  document.title = t('app.title');
  for (const el of document.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll('[data-i18n-aria]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nAria));
  }
  const toggle = $('#lang-toggle');
  toggle.textContent = t('app.lang_other');
  toggle.lang = S.lang === 'th' ? 'en' : 'th';
  $('#up-tz-help').textContent = t('upload.tz_help', { tz: S.tz });
  renderWho();
  renderClock();
}

function setLang(lang) {
  S.lang = lang === 'en' ? 'en' : 'th';
  try {
    localStorage.setItem(LANG_KEY, S.lang);
  } catch {
    // storage may be off; the choice then lasts for this page only
  }
  applyStatic();
  if (S.view && VIEWS[S.view] && S.me) VIEWS[S.view].render();
}

// ---------------------------------------------------------------------------------------------
// Signing in and out

function renderWho() {
  const who = $('#who');
  if (!S.me) {
    who.hidden = true;
    return;
  }
  $('#who-name').textContent = S.me.name;
  const role = $('#who-role');
  role.textContent = roleName(S.me.role);
  role.className = `badge role role-${S.me.role}`;
  who.hidden = false;
}

async function signIn(token) {
  S.token = token;
  const me = await api('/api/v1/whoami');
  const status = await api('/api/v1/status');
  S.me = me;
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    // without session storage the token lasts until the page is reloaded
  }
  takeStatus(status);
  enterApp();
}

function signOut(message) {
  S.token = null;
  S.me = null;
  S.data = {};
  S.reportAvailable = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing kept
  }
  revokeObjectUrls();
  renderWho();
  $('#tabs').hidden = true;
  $('#signout').hidden = true;
  for (const v of Object.keys(VIEWS)) $(`#view-${v}`).hidden = true;
  S.view = null;
  $('#view-signin').hidden = false;
  const err = $('#signin-error');
  if (message) {
    err.replaceChildren(h('p', { class: 'msg-head' }, message));
    err.hidden = false;
  } else hideMsg(err);
  $('#token').value = '';
  if (location.hash) history.replaceState(null, '', location.pathname);
}

function enterApp() {
  $('#view-signin').hidden = true;
  hideMsg($('#signin-error'));
  $('#signout').hidden = false;
  for (const li of document.querySelectorAll('#tabs li')) {
    li.hidden = !canDo(VIEWS[li.dataset.view].roles);
  }
  $('#tabs').hidden = false;
  applyStatic();
  route(false);
}

async function onSignIn(ev) {
  ev.preventDefault();
  const token = $('#token').value.trim();
  const err = $('#signin-error');
  if (!token) {
    err.replaceChildren(h('p', { class: 'msg-head' }, t('signin.empty')));
    err.hidden = false;
    $('#token').focus();
    return;
  }
  try {
    await signIn(token);
  } catch (e) {
    S.token = null;
    if (e.status === 401) {
      err.replaceChildren(h('p', { class: 'msg-head' }, t('signin.bad')));
      err.hidden = false;
    } else showError(err, e);
    $('#token').focus();
  }
}

// ---------------------------------------------------------------------------------------------
// Views and the router (#now, #upload, ...)

const VIEWS = {
  now: { roles: ALL_ROLES, load: loadNow, render: renderNow },
  upload: { roles: ['uploader', 'admin'], load: loadUpload, render: renderUpload },
  queue: { roles: ['approver', 'admin'], load: loadQueue, render: renderQueue },
  week: { roles: ALL_ROLES, load: loadWeek, render: renderWeek },
  log: { roles: ['auditor', 'approver', 'admin'], load: loadLog, render: renderLog },
  emergency: { roles: ['approver', 'admin'], load: loadEmergency, render: renderEmergency },
};

function route(moveFocus = true) {
  if (!S.me) return;
  let view = location.hash.slice(1);
  if (!VIEWS[view] || !canDo(VIEWS[view].roles)) {
    view = 'now';
    if (location.hash && location.hash !== '#now') history.replaceState(null, '', '#now');
  }
  S.view = view;
  for (const v of Object.keys(VIEWS)) $(`#view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll('#tabs a')) {
    if (a.getAttribute('href') === `#${view}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (moveFocus) $(`#view-${view} h1`).focus();
  busy(view, VIEWS[view].load());
}

/** Mark a view busy while it loads (screen readers wait; the tests wait for it too). */
function busy(view, promise) {
  const section = $(`#view-${view}`);
  section.setAttribute('aria-busy', 'true');
  return promise.catch((e) => console.error(e)).finally(() => section.removeAttribute('aria-busy'));
}

/** "A and B" in the page's language. */
function listOf(items) {
  try {
    return new Intl.ListFormat(S.lang === 'th' ? 'th' : 'en', { type: 'conjunction' }).format(items);
  } catch {
    return items.join(', ');
  }
}

// ---------------------------------------------------------------------------------------------
// Now playing

function takeStatus(st) {
  S.data.status = st;
  S.data.statusAt = Date.now();
  if (st.timezone) setTimezone(st.timezone);
  if (st.now) S.skewMs = Date.parse(st.now) - Date.now();
  S.outputs = (st.outputs || []).map((o) => o.name);
  if (!S.week.output || !S.outputs.includes(S.week.output)) S.week.output = S.outputs[0] || null;
}

async function loadNow() {
  try {
    // Signing in has just fetched it: do not ask the box twice in a row.
    if (!S.data.statusAt || Date.now() - S.data.statusAt > 1500) takeStatus(await api('/api/v1/status'));
    S.data.statusError = null;
  } catch (e) {
    S.data.statusError = e;
  }
  renderNow();
}

let lastNowSignature = '';
let lastOnAir = '';

function renderNow(force = true) {
  const st = S.data.status;
  const msg = $('#now-msg');
  if (S.data.statusError) sayError(msg, S.data.statusError);
  else if (msg.querySelector('.msg.bad')) msg.replaceChildren();
  if (!st) return;
  // Re-draw only what changed, so a screen reader is not told the same thing every few seconds.
  const signature = JSON.stringify([S.lang, st.outputs, st.next_slot, S.me && S.me.role]);
  if (!force && signature === lastNowSignature) {
    renderNowFacts(st);
    return;
  }
  lastNowSignature = signature;
  $('#now-outputs').replaceChildren(...(st.outputs || []).map(outputCard));
  // One steady live region says what changed on air (the cards themselves are re-drawn).
  const onAir = (st.outputs || []).map((o) => `${outputName(o.name)}: ${o.now_playing ? `${t('now.on_air')} ${o.now_playing.announcement_id == null ? t('now.chime') : o.now_playing.title}` : t('now.idle')}`).join('. ');
  if (!force && onAir !== lastOnAir) $('#now-live').textContent = onAir;
  lastOnAir = onAir;
  renderNowFacts(st);
  renderNowActions();
}

function outputCard(o) {
  const np = o.now_playing;
  const onAir = !!np;
  const title = onAir ? (np.announcement_id == null ? t('now.chime') : np.title) : t('now.idle_text');
  const next = o.next;
  return h('article', { class: `out card ${onAir ? 'on' : 'idle'}`, 'data-output': o.name, 'aria-labelledby': `out-${o.name}` },
    h('div', { class: 'out-head' },
      h('h2', { id: `out-${o.name}` }, outputName(o.name)),
      h('span', { class: `badge ${o.device_ok ? 'ok' : 'bad'}` }, o.device_ok ? t('now.device_ok') : t('now.device_bad'))),
    !o.device_ok && o.device_error ? h('p', { class: 'msg bad small' }, o.device_error) : null,
    h('div', { class: 'np' },
      h('span', { class: `badge onair-badge ${onAir ? 'onair' : 'idle'}` }, onAir ? t('now.on_air') : t('now.idle')),
      h('p', { class: 'np-title' }, title),
      onAir ? h('p', { class: 'muted' }, `${t('now.slot', { slot: slotName(np.slot) })} · ${t('now.since', { time: fmtTime(np.started_at, true) })}`) : null),
    h('p', { class: 'next' },
      h('strong', {}, `${t('now.next')}: `),
      next ? `${next.title} — ${fmtDateTime(next.start, parts(next.start).ss !== 0)}` : t('now.next_none')),
    h('p', { class: 'muted small device' }, deviceText(o)));
}

/** What the output plays into, without jargon where it can be avoided. */
function deviceText(o) {
  const device = o.device || '';
  if (o.kind === 'null') return t('device.null');
  if (o.kind === 'wav') return t('device.wav', { device });
  if (o.kind === 'alsa' && !/^null\b/.test(device)) return t('device.alsa', { device });
  return [o.kind, device].filter(Boolean).join(': ');
}

function renderNowFacts(st) {
  const rows = [];
  const ns = st.next_slot;
  rows.push([t('now.next_slot'), ns ? `${ns.slot} — ${fmtDateTime(ns.at, parts(ns.at).ss !== 0)}` : t('now.no_slot')]);
  if (st.now) rows.push([t('app.box_time'), `${fmtDateTime(st.now, true)} (${st.timezone || S.tz})`]);
  if (typeof st.uptime_s === 'number') rows.push([t('now.uptime'), fmtUptime(st.uptime_s)]);
  const pulled = (st.sync && st.sync.last_pull_at) || (st.province && st.province.last_pull_at) || st.last_pull_at;
  rows.push([t('now.province'), pulled ? fmtDateTime(pulled) : t('now.province_none')]);
  if (st.sync && st.sync.last_error) rows.push([t('now.province_error'), st.sync.last_error]);
  if (st.sync && typeof st.sync.report_queued === 'number' && st.sync.reporting) {
    rows.push([t('now.report_queued'), String(st.sync.report_queued)]);
  }
  $('#now-facts').replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

let nowActionsFor = '';

function renderNowActions() {
  // Kept across refreshes, so a button that has focus is not replaced under the user.
  const key = `${S.lang}|${S.me && S.me.role}`;
  if (key === nowActionsFor) return;
  nowActionsFor = key;
  const box = $('#now-actions');
  box.replaceChildren();
  if (canDo(VIEWS.emergency.roles)) {
    box.append(h('a', { class: 'btn danger big', href: '#emergency', id: 'now-emergency' }, t('now.emergency')));
  }
  if (canDo(['admin'])) {
    box.append(h('button', { type: 'button', class: 'btn big', id: 'now-stop', onclick: stopAll }, t('now.stop')));
  }
}

async function stopAll() {
  const ok = await confirmDialog(t('now.stop_title'), t('now.stop_text'), t('now.stop'));
  if (!ok) return;
  const msg = $('#now-msg');
  try {
    await api('/api/v1/playout/stop', { method: 'POST', json: {} });
    say(msg, t('now.stopped'));
    loadNow();
  } catch (e) {
    if (isUnavailable(e)) say(msg, t('em.unavailable'), 'warn');
    else sayError(msg, e);
  }
}

/** An endpoint this build of the daemon does not have yet. */
function isUnavailable(e) {
  return (e.status === 404 || e.status === 405 || e.status === 501)
    && /not implemented|no such endpoint/i.test(e.message || '');
}

// ---------------------------------------------------------------------------------------------
// Upload

async function loadUpload() {
  renderUpload();
  try {
    const list = await api('/api/v1/announcements');
    S.data.mine = list.announcements.filter((a) => a.uploaded_by === S.me.name);
    S.data.mineError = null;
  } catch (e) {
    S.data.mineError = e;
  }
  renderMine();
}

function renderUpload() {
  outputChoices($('#up-outputs'), 'up-out');
  $('#up-tz-help').textContent = t('upload.tz_help', { tz: S.tz });
  const res = $('#up-result');
  res.replaceChildren();
  if (S.data.uploadResult) res.append(uploadResultCard(S.data.uploadResult));
  renderMine();
}

/** Checkboxes for the outputs, all ticked at first; keeps the ticks across re-draws. */
function outputChoices(box, prefix) {
  const was = new Map([...box.querySelectorAll('input')].map((i) => [i.value, i.checked]));
  box.replaceChildren(...S.outputs.map((name) => h('label', { class: 'choice' },
    h('input', { type: 'checkbox', name: prefix, value: name, checked: was.has(name) ? was.get(name) : true }),
    ` ${outputName(name)}`)));
}

function checkedValues(box) {
  return [...box.querySelectorAll('input:checked')].map((i) => i.value);
}

function uploadResultCard(a) {
  return h('article', { class: 'card result ok-card', 'data-id': a.id, id: 'up-result-card' },
    h('h2', {}, t('upload.done')),
    h('p', { class: 'res-title' }, a.title),
    annFacts(a, true));
}

function formatFacts(a) {
  const khz = a.sample_rate ? `${(a.sample_rate / 1000).toLocaleString('en-US')} kHz` : '';
  const ch = a.channels === 1 ? 'mono' : a.channels === 2 ? 'stereo' : a.channels ? `${a.channels} ch` : '';
  return [a.codec, khz, ch].filter(Boolean).join(' · ');
}

/** The facts of an announcement as a definition list. */
function annFacts(a, probe = false) {
  const rows = [
    [t('ann.duration'), fmtDuration(a.duration_ms), 'duration'],
    [t('ann.loudness'), a.loudness_lufs == null ? '—' : `${a.loudness_lufs.toFixed(1)} LUFS`, 'loudness'],
    [t('ann.format'), formatFacts(a), 'format'],
  ];
  if (!probe) {
    if (a.agency) rows.push([t('ann.agency'), a.agency, 'agency']);
    if (a.source && a.source !== 'local') rows.push([t('ann.source'), t(`ann.source_${a.source}`), 'source']);
    rows.push([t('ann.by'), a.uploaded_by, 'by']);
    rows.push([t('ann.uploaded'), fmtDateTime(a.created_at), 'uploaded']);
  }
  const valid = a.valid_from || a.valid_until
    ? `${a.valid_from ? fmtDateTime(a.valid_from) : '…'} – ${a.valid_until ? fmtDateTime(a.valid_until) : '…'}`
    : t('ann.valid_any');
  rows.push([t('ann.valid'), valid, 'valid']);
  rows.push([t('ann.plays'), String(a.plays_per_day), 'plays']);
  rows.push([t('ann.outputs'), (a.outputs || []).map(outputName).join(', '), 'outputs']);
  return h('dl', { class: 'facts' }, rows.flatMap(([k, v, cls]) => [h('dt', {}, k), h('dd', { class: `f-${cls}` }, v)]));
}

function statusBadge(status) {
  return h('span', { class: `badge st-${status}` }, t(`status.${status}`));
}

function renderMine() {
  const box = $('#mine');
  if (S.data.mineError) {
    sayError(box, S.data.mineError);
    return;
  }
  const list = S.data.mine;
  if (!list) {
    box.replaceChildren(h('p', { class: 'muted' }, t('app.loading')));
    return;
  }
  if (!list.length) {
    box.replaceChildren(h('p', { class: 'muted' }, t('upload.mine_none')));
    return;
  }
  box.replaceChildren(...list.slice(0, 30).map((a) => annCard(a, 'mine')));
}

function onUpload(ev) {
  ev.preventDefault();
  const err = $('#up-error');
  hideMsg(err);
  const file = $('#up-audio').files[0];
  const title = $('#up-title').value.trim();
  const plays = $('#up-plays').value.trim();
  const outputs = checkedValues($('#up-outputs'));
  const problem = !file ? ['upload.need_file', '#up-audio']
    : !title ? ['upload.need_title', '#up-title']
      : plays && !(/^\d+$/.test(plays) && +plays >= 1 && +plays <= 48) ? ['upload.bad_plays', '#up-plays']
        : !outputs.length ? ['upload.need_output', '#up-outputs input'] : null;
  if (problem) {
    err.replaceChildren(h('p', { class: 'msg-head' }, t(problem[0])));
    err.hidden = false;
    $(problem[1]).focus();
    return;
  }
  const fd = new FormData();
  fd.append('title', title);
  fd.append('script', $('#up-script').value);
  fd.append('agency', $('#up-agency').value.trim());
  fd.append('priority', document.querySelector('input[name=priority]:checked').value);
  if (plays) fd.append('plays_per_day', plays);
  fd.append('outputs', outputs.join(','));
  const from = localInputToRfc3339($('#up-from').value);
  const until = localInputToRfc3339($('#up-until').value);
  if (from) fd.append('valid_from', from);
  if (until) fd.append('valid_until', until);
  fd.append('audio', file, file.name);

  const submit = $('#up-submit');
  const bar = $('#up-bar');
  const pct = $('#up-pct');
  const label = $('#up-bar-label');
  submit.disabled = true;
  $('#up-progress').hidden = false;
  label.textContent = t('upload.sending');
  bar.value = 0;
  pct.textContent = '0%';
  S.data.uploadResult = null;
  $('#up-result').replaceChildren();

  // XMLHttpRequest rather than fetch: only it reports upload progress.
  const xhr = new XMLHttpRequest();
  xhr.open('POST', '/api/v1/announcements');
  xhr.setRequestHeader('Authorization', `Bearer ${S.token}`);
  xhr.upload.addEventListener('progress', (e) => {
    if (!e.lengthComputable) return;
    const p = Math.round((e.loaded / e.total) * 100);
    bar.value = p;
    pct.textContent = `${p}%`;
  });
  xhr.upload.addEventListener('load', () => {
    bar.value = 100;
    pct.textContent = '100%';
    label.textContent = t('upload.checking');
  });
  const done = () => {
    submit.disabled = false;
    $('#up-progress').hidden = true;
  };
  xhr.addEventListener('load', () => {
    done();
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      // not JSON
    }
    if (xhr.status === 201 && body) {
      S.data.uploadResult = body;
      $('#up-result').replaceChildren(uploadResultCard(body));
      $('#up-audio').value = '';
      $('#up-title').value = '';
      $('#up-script').value = '';
      loadUpload();
      return;
    }
    if (xhr.status === 401) {
      signOut(t('signin.expired'));
      return;
    }
    showError(err, new ApiError(xhr.status, (body && body.error) || `http_${xhr.status}`, (body && body.message) || xhr.statusText));
  });
  xhr.addEventListener('error', () => {
    done();
    showError(err, new ApiError(0, 'network', ''));
  });
  xhr.send(fd);
}

// ---------------------------------------------------------------------------------------------
// Announcement cards (queue, my uploads)

function revokeObjectUrls() {
  for (const u of S.objectUrls) URL.revokeObjectURL(u);
  S.objectUrls = [];
}

function annCard(a, mode) {
  const actions = h('div', { class: 'actions' });
  const msg = h('div', { class: 'card-msg', role: 'status' });
  const card = h('article', { class: `ann card st-${a.status}`, 'data-id': a.id, 'aria-labelledby': `ann-${mode}-${a.id}` },
    h('div', { class: 'ann-head' },
      h('h3', { id: `ann-${mode}-${a.id}` }, a.title),
      h('span', { class: 'badges' },
        statusBadge(a.status),
        a.priority === 'high' ? h('span', { class: 'badge high' }, t('priority.high')) : null)),
    annFacts(a),
    mode === 'mine' ? null : h('div', { class: 'script' },
      h('h4', {}, t('ann.script')),
      h('p', { class: a.script ? 'script-text' : 'muted' }, a.script || t('ann.no_script'))),
    a.decided_by && a.decided_at
      ? h('p', { class: 'muted' }, t('ann.decided', { status: t(`status.${a.status}`), who: a.decided_by, time: fmtDateTime(a.decided_at) }))
      : null,
    a.reason ? h('p', { class: 'reason' }, h('strong', {}, `${t('ann.reason')}: `), a.reason) : null,
    actions,
    msg);

  const button = (cls, label, onclick, extra = {}) => h('button', { type: 'button', class: `btn ${cls}`, onclick, ...extra }, label);

  if (mode === 'pending' || mode === 'approved') {
    const listen = button('listen', t('queue.listen'), () => listenTo(a, listen, msg));
    actions.append(listen);
  }
  if (mode === 'pending') {
    const own = a.uploaded_by === S.me.name;
    actions.append(button('primary approve', t('queue.approve'), () => decide(a, 'approve', msg), own ? { disabled: true, 'aria-describedby': `own-${a.id}` } : {}));
    actions.append(button('reject', t('queue.reject'), () => openReject(a, card, msg)));
    if (own) card.insertBefore(h('p', { class: 'msg warn small', id: `own-${a.id}` }, t('queue.own')), actions);
  }
  if (mode === 'approved' || (mode === 'mine' && (a.status === 'pending' || a.status === 'approved'))) {
    actions.append(button('withdraw', t('queue.withdraw'), () => withdraw(a, msg)));
  }
  return card;
}

async function listenTo(a, btn, msg) {
  btn.disabled = true;
  btn.textContent = t('queue.loading_audio');
  try {
    // <audio src> cannot send the token, so fetch the bytes with it and play them from memory.
    const res = await api(`/api/v1/announcements/${a.id}/audio`, { raw: true });
    const url = URL.createObjectURL(await res.blob());
    S.objectUrls.push(url);
    const audio = h('audio', { controls: true, preload: 'auto', src: url, class: 'player', 'aria-label': t('queue.audio_label', { title: a.title }) });
    btn.replaceWith(audio);
    audio.focus();
  } catch (e) {
    btn.disabled = false;
    btn.textContent = t('queue.listen');
    sayError(msg, e);
  }
}

async function decide(a, action, msg, reason) {
  try {
    await api(`/api/v1/announcements/${a.id}/${action}`, { method: 'POST', json: reason === undefined ? {} : { reason } });
    const key = { approve: 'queue.approved_msg', reject: 'queue.rejected_msg', withdraw: 'queue.withdrawn_msg' }[action];
    S.data.flash = t(key, { title: a.title });
    await VIEWS[S.view].load();
    // The card that had focus may be gone: continue from the view's heading.
    if (!document.activeElement || document.activeElement === document.body) $(`#view-${S.view} h1`).focus();
  } catch (e) {
    sayError(msg, e);
  }
}

function openReject(a, card, msg) {
  if (card.querySelector('.reject-form')) {
    card.querySelector('.reject-form textarea').focus();
    return;
  }
  const id = `reason-${a.id}`;
  const area = h('textarea', { id, rows: 3, required: true });
  const form = h('form', { class: 'reject-form', novalidate: true },
    h('label', { for: id }, t('queue.reason')),
    area,
    h('div', { class: 'buttons' },
      h('button', { type: 'submit', class: 'btn danger reject-confirm' }, t('queue.reject_confirm')),
      h('button', { type: 'button', class: 'btn', onclick: () => form.remove() }, t('queue.cancel'))));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const reason = area.value.trim();
    if (!reason) {
      say(msg, t('queue.need_reason'), 'bad');
      area.focus();
      return;
    }
    decide(a, 'reject', msg, reason);
  });
  card.querySelector('.actions').after(form);
  area.focus();
}

async function withdraw(a, msg) {
  const ok = await confirmDialog(t('queue.withdraw_title'), t('queue.withdraw_text', { title: a.title }), t('queue.withdraw').replace('…', ''));
  if (ok) decide(a, 'withdraw', msg);
}

// ---------------------------------------------------------------------------------------------
// Approval queue

async function loadQueue() {
  try {
    const [pending, approved] = await Promise.all([
      api('/api/v1/announcements?status=pending'),
      api('/api/v1/announcements?status=approved'),
    ]);
    S.data.queue = { pending: pending.announcements, approved: approved.announcements };
    S.data.queueError = null;
  } catch (e) {
    S.data.queueError = e;
  }
  renderQueue();
}

function renderQueue() {
  revokeObjectUrls();
  const msg = $('#queue-msg');
  if (S.data.queueError) sayError(msg, S.data.queueError);
  else if (S.data.flash) {
    say(msg, S.data.flash);
    S.data.flash = null;
  } else msg.replaceChildren();
  const q = S.data.queue;
  if (!q) return;
  $('#queue-pending').replaceChildren(...(q.pending.length
    ? q.pending.map((a) => annCard(a, 'pending'))
    : [h('p', { class: 'muted empty' }, t('queue.none'))]));
  $('#queue-approved').replaceChildren(...(q.approved.length
    ? q.approved.map((a) => annCard(a, 'approved'))
    : [h('p', { class: 'muted empty' }, t('queue.approved_none'))]));
}

// ---------------------------------------------------------------------------------------------
// Week view. Slot times come from each slot's cron line, expanded here in the box's zone (the
// API lists only the next few starts); the expansion is checked against the starts the daemon
// itself reports, and a slot that does not agree is listed without its times rather than shown
// wrong.

const CRON_RANGES = [[0, 59], [0, 59], [0, 23], [1, 31], [1, 12], [1, 7], [1970, 2099]];
const CRON_MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
// The cron crate counts days of the week from 1 = Sunday.
const CRON_DAYS = { sun: 1, mon: 2, tue: 3, tues: 3, wed: 4, thu: 5, thurs: 5, fri: 6, sat: 7 };
const FULL_DAYS = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
const FULL_MONTHS = ['january', 'february', 'march', 'april', 'may', 'june', 'july', 'august', 'september', 'october', 'november', 'december'];

function cronValue(text, field) {
  const s = text.toLowerCase();
  if (/^\d+$/.test(s)) return +s;
  if (field === 4) {
    const i = CRON_MONTHS.indexOf(s) >= 0 ? CRON_MONTHS.indexOf(s) : FULL_MONTHS.indexOf(s);
    if (i >= 0) return i + 1;
  }
  if (field === 5) {
    if (s in CRON_DAYS) return CRON_DAYS[s];
    const i = FULL_DAYS.indexOf(s);
    if (i >= 0) return i + 1;
  }
  throw new Error(`cron value ${text}`);
}

/** One cron field → a sorted array of values, or null for "every value". */
function cronField(text, field) {
  const [lo, hi] = CRON_RANGES[field];
  if (text === '*' || text === '?') return null;
  const set = new Set();
  for (const part of text.split(',')) {
    const pieces = part.split('/');
    if (pieces.length > 2) throw new Error('cron step');
    const [range, stepText] = pieces;
    const step = stepText === undefined ? 1 : cronValue(stepText, -1);
    if (!(step >= 1)) throw new Error('cron step');
    let a;
    let b;
    if (range === '*' || range === '?') [a, b] = [lo, hi];
    else if (range.includes('-')) [a, b] = range.split('-').map((x) => cronValue(x, field));
    else {
      a = cronValue(range, field);
      b = stepText === undefined ? a : hi;
    }
    if (!(a >= lo && b <= hi && a <= b)) throw new Error('cron range');
    for (let v = a; v <= b; v += step) set.add(v);
  }
  return [...set].sort((x, y) => x - y);
}

function parseCron(expr) {
  const f = (expr || '').trim().split(/\s+/);
  if (f.length !== 6 && f.length !== 7) return null;
  try {
    const c = f.map((x, i) => cronField(x, i));
    const all = (i) => { const [lo, hi] = CRON_RANGES[i]; return Array.from({ length: hi - lo + 1 }, (_, k) => lo + k); };
    return {
      sec: c[0] || all(0), min: c[1] || all(1), hour: c[2] || all(2),
      dom: c[3], mon: c[4], dow: c[5], year: c[6] || null,
    };
  } catch {
    return null;
  }
}

function cronDay(c, day) {
  return (!c.mon || c.mon.includes(day.m)) && (!c.dom || c.dom.includes(day.d))
    && (!c.dow || c.dow.includes(weekdayOf(day) + 1)) && (!c.year || c.year.includes(day.y));
}

function cronMatches(c, instant) {
  const p = parts(instant);
  return cronDay(c, p) && c.hour.includes(p.hh) && c.min.includes(p.mi) && c.sec.includes(p.ss);
}

const cronPerDay = (c) => c.hour.length * c.min.length * c.sec.length;

function cronStarts(c, day) {
  const out = [];
  for (const hh of c.hour) for (const mi of c.min) for (const ss of c.sec) out.push(zonedToUtc(day, hh, mi, ss));
  return out;
}

/** Quiet hours "21:00-05:00" → [[start, end]] in minutes of the day (end may be < start). */
function parseQuiet(list) {
  return (list || []).map((r) => /^(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})$/.exec(r))
    .filter(Boolean).map((m) => [+m[1] * 60 + +m[2], +m[3] * 60 + +m[4]]);
}

/** Does [start, start + lengthS) touch quiet hours? (Such an occurrence does not air.) */
function overlapsQuiet(quiet, start, lengthS) {
  const p = parts(start);
  return overlapsQuietLocal(quiet, p.hh, p.mi, p.ss, lengthS);
}

function overlapsQuietLocal(quiet, hh, mi, ss, lengthS) {
  const s = hh * 60 + mi + ss / 60;
  const e = s + Math.max(lengthS, 1) / 60;
  return quiet.some(([a, b]) => {
    if (a === b) return false;
    // On a two-day line, so ranges across midnight need no special case.
    const ranges = a < b ? [[a, b], [a + 1440, b + 1440]] : [[a - 1440, b], [a, b + 1440]];
    return ranges.some(([x, y]) => s < y && e > x);
  });
}

/** Does a slot run on this day (its `days` and `months`)? null when it cannot be told. */
function slotRunsOn(slot, day, cal) {
  if (slot.months && slot.months.length && !slot.months.includes(day.m)) return false;
  const days = slot.days || 'every';
  if (days === 'every') return true;
  if (!cal) return null;
  if (days === 'working') return cal.working !== false;
  if (days === 'holidays') return !!cal.holiday;
  return null;
}

/** Holidays and quiet hours, if this daemon has a calendar (`to` is exclusive). */
function loadCalendar(first, last) {
  return api(`/api/v1/calendar?from=${civilKey(first)}&to=${civilKey(addDays(last, 1))}`);
}

async function loadWeek() {
  const start = addDays(todayCivil(), S.week.offset * 7);
  const days = Array.from({ length: 7 }, (_, i) => addDays(start, i));
  const from = new Date(Math.max(zonedToUtc(start).getTime(), boxNow().getTime()));
  const to = zonedToUtc(addDays(start, 7));
  if (!S.data.week) renderWeekShell(days);
  try {
    const [slots, plan, cal] = await Promise.all([
      api('/api/v1/slots'),
      api(`/api/v1/plan?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`),
      loadCalendar(days[0], days[6]).catch(() => null),
    ]);
    S.data.week = { days, slots: slots.slots, airings: plan.airings, cal };
    S.data.weekError = null;
  } catch (e) {
    S.data.weekError = e;
  }
  renderWeek();
}

function renderWeekShell(days) {
  $('#week-range').textContent = t('week.range', { from: fmtCivil(days[0]), to: fmtCivil(days[6]) });
  $('#week-grid').replaceChildren(h('p', { class: 'muted' }, t('app.loading')));
}

function renderWeek() {
  // The output switch.
  const outs = $('#week-outputs');
  outs.replaceChildren(...S.outputs.map((name) => h('label', { class: 'choice' },
    h('input', { type: 'radio', name: 'week-output', value: name, checked: name === S.week.output }),
    ` ${outputName(name)}`)));
  $('#week-prev').disabled = S.week.offset <= 0;
  const w = S.data.week;
  if (S.data.weekError) {
    sayError($('#week-grid'), S.data.weekError);
    return;
  }
  if (!w) return;
  const out = S.week.output;
  $('#week-range').textContent = t('week.range', { from: fmtCivil(w.days[0]), to: fmtCivil(w.days[6]) });
  const quiet = parseQuiet(w.cal && w.cal.quiet_hours);
  const now = boxNow();
  const today = civilKey(todayCivil());

  // Slots on this output, with their cron expanded when the daemon's own next starts agree.
  const slots = (w.slots || []).filter((s) => !s.outputs || !s.outputs.length || s.outputs.includes(out)).map((s) => {
    const cron = parseCron(s.cron);
    const trusted = cron && (s.next_starts || []).every((x) => cronMatches(cron, x))
      && (w.cal || !s.days || s.days === 'every');
    return { ...s, cronParsed: trusted ? cron : null };
  });

  // Legend: the slots and what the shading means.
  fill($('#week-legend'),
    h('h2', { class: 'sr-only' }, t('week.legend_slots')),
    h('ul', { class: 'slot-list' }, slots.map((s) => h('li', {},
      h('strong', {}, s.name),
      ` · ${t('week.length', { len: fmtDuration(s.length_s * 1000) })}`,
      s.next_starts && s.next_starts[0] ? ` · ${t('now.next')} ${fmtDateTime(s.next_starts[0], parts(s.next_starts[0]).ss !== 0)}` : ''))),
    h('ul', { class: 'keys' },
      h('li', {}, h('span', { class: 'swatch sw-item', 'aria-hidden': 'true' }), t('week.legend_item')),
      h('li', {}, h('span', { class: 'swatch sw-holiday', 'aria-hidden': 'true' }), t('week.legend_holiday')),
      h('li', {}, h('span', { class: 'swatch sw-quiet', 'aria-hidden': 'true' }), t('week.legend_quiet'))),
    w.cal ? null : h('p', { class: 'muted small' }, t('week.no_calendar')));

  const airings = (w.airings || []).filter((a) => a.output === out);
  const columns = w.days.map((day) => {
    const key = civilKey(day);
    const cal = w.cal && (w.cal.days || []).find((d) => d.date === key);
    const often = [];
    const occ = new Map(); // `${slot}|${ms}` → {slot, start, end, items}
    for (const s of slots) {
      const c = s.cronParsed;
      if (!c || !cronDay(c, day) || slotRunsOn(s, day, cal) === false) continue;
      let n = cronPerDay(c);
      if (n > 24) {
        if (quiet.length) {
          // Count on the wall clock: no zone conversion for thousands of starts.
          n = 0;
          for (const hh of c.hour) for (const mi of c.min) for (const ss of c.sec) if (!overlapsQuietLocal(quiet, hh, mi, ss, s.length_s)) n += 1;
        }
        const starts = cronStarts({ ...c, hour: c.hour.slice(0, 1), min: c.min.slice(0, 2) }, day);
        const every = starts.length > 1 ? (starts[1] - starts[0]) / 1000 : 86400;
        often.push(t('week.often', { slot: s.name, count: fmtNumber(n), every: fmtDuration(every * 1000) }));
        continue;
      }
      for (const st of cronStarts(c, day)) {
        const quietOcc = quiet.length > 0 && overlapsQuiet(quiet, st, s.length_s);
        occ.set(`${s.name}|${st.getTime()}`, { slot: s.name, start: st, end: new Date(st.getTime() + s.length_s * 1000), items: [], quiet: quietOcc });
      }
    }
    for (const a of airings) {
      const start = new Date(a.start);
      if (civilKey(parts(start)) !== key) continue;
      const os = new Date(a.occurrence_start || a.start);
      const k = `${a.slot}|${os.getTime()}`;
      if (!occ.has(k)) {
        const slot = slots.find((s) => s.name === a.slot);
        occ.set(k, { slot: a.slot, start: os, end: slot ? new Date(os.getTime() + slot.length_s * 1000) : null, items: [] });
      }
      occ.get(k).items.push(a);
    }
    const list = [...occ.values()].sort((x, y) => x.start - y.start);
    const holiday = cal && ((S.lang === 'en' && cal.holiday_en) || cal.holiday);
    const off = cal && cal.working === false;
    const classes = ['day', key === today ? 'today' : '', holiday ? 'holiday' : '', off && !holiday ? 'off' : ''].filter(Boolean).join(' ');
    const items = list.map((o) => occurrenceItem(o, now));
    const SHOWN = 12;
    return h('section', { class: classes, 'data-date': key, 'aria-labelledby': `day-${key}` },
      h('h2', { id: `day-${key}`, class: 'day-head' },
        h('span', { class: 'wd' }, WEEKDAYS[S.lang][weekdayOf(day)]),
        h('span', { class: 'dt' }, fmtCivil(day))),
      h('div', { class: 'day-badges' },
        key === today ? h('span', { class: 'badge today-badge' }, t('week.today_badge')) : null,
        holiday ? h('span', { class: 'badge holiday-badge' }, holiday) : null,
        off && !holiday ? h('span', { class: 'badge off-badge' }, t('week.day_off')) : null),
      quiet.length ? h('p', { class: 'quiet-note' }, t('week.quiet', { ranges: (w.cal.quiet_hours || []).join(', ') })) : null,
      often.map((x) => h('p', { class: 'often' }, x)),
      list.length || often.length ? null : h('p', { class: 'muted' }, t('week.empty')),
      items.length ? h('ol', { class: 'occs' }, items.slice(0, SHOWN)) : null,
      items.length > SHOWN ? h('details', { class: 'more' },
        h('summary', {}, t('week.more', { count: fmtNumber(items.length - SHOWN) })),
        h('ol', { class: 'occs' }, items.slice(SHOWN))) : null);
  });
  $('#week-grid').replaceChildren(...columns);
}

function occurrenceItem(o, now) {
  const isQuiet = !!o.quiet;
  const past = o.end ? o.end < now : o.start < now;
  const cls = ['occ', isQuiet ? 'quiet' : '', past ? 'past' : '', o.items.length ? 'has-items' : ''].filter(Boolean).join(' ');
  return h('li', { class: cls },
    h('div', { class: 'occ-head' },
      h('span', { class: 'time' }, fmtRange(o.start, o.end)),
      ' ',
      h('span', { class: 'slot-name' }, o.slot),
      isQuiet ? h('span', { class: 'badge quiet-badge' }, t('week.quiet_item')) : null),
    o.items.length ? h('ul', { class: 'items' }, o.items.map((a) => h('li', { class: 'item', 'data-announcement': a.announcement_id },
      h('span', { class: 'time' }, fmtTimeAuto(a.start)),
      ' ',
      h('span', { class: 'item-title' }, a.title),
      ' ',
      h('span', { class: 'muted' }, `(${fmtDuration(a.duration_ms)})`)))) : null);
}

// ---------------------------------------------------------------------------------------------
// Airtime log and the daily report

function logQuery() {
  const from = civilFromKey($('#log-from').value);
  const to = civilFromKey($('#log-to').value);
  const q = new URLSearchParams();
  if (from) q.set('from', zonedToUtc(from).toISOString());
  if (to) q.set('to', zonedToUtc(addDays(to, 1)).toISOString());
  const output = $('#log-output').value;
  const ann = $('#log-ann').value;
  const status = $('#log-status').value;
  if (output) q.set('output', output);
  if (ann) q.set('announcement', ann);
  if (status) q.set('status', status);
  return { q, from, to };
}

function fillSelect(sel, options) {
  const was = sel.value;
  sel.replaceChildren(...options.map(([v, label]) => h('option', { value: v }, label)));
  if (options.some(([v]) => v === was)) sel.value = was;
}

function renderLogFilters() {
  fillSelect($('#log-output'), [['', t('log.all')], ...S.outputs.map((o) => [o, outputName(o)])]);
  fillSelect($('#log-status'), [['', t('log.all')], ...AIRTIME_STATUSES.map((s) => [s, t(`air.${s}`)])]);
  const anns = S.data.logAnnouncements || [];
  fillSelect($('#log-ann'), [['', t('log.all')], ...anns.map((a) => [String(a.id), `${a.id} · ${a.title}`])]);
}

async function loadLog() {
  if (!$('#log-from').value) {
    const today = todayCivil();
    $('#log-from').value = civilKey(addDays(today, -6));
    $('#log-to').value = civilKey(today);
    $('#report-day').value = civilKey(today);
  }
  try {
    S.data.logAnnouncements = (await api('/api/v1/announcements')).announcements;
  } catch {
    S.data.logAnnouncements = S.data.logAnnouncements || [];
  }
  renderLogFilters();
  await searchLog();
  await probeReport();
}

async function searchLog(more = false) {
  const msg = $('#log-msg');
  const { q, from, to } = logQuery();
  if (from && to && civilKey(to) < civilKey(from)) {
    say(msg, t('log.bad_range'), 'bad');
    return;
  }
  q.set('limit', '100');
  if (more && S.data.log && S.data.log.next != null) q.set('cursor', String(S.data.log.next));
  try {
    const page = await api(`/api/v1/airtime?${q}`);
    const rows = more && S.data.log ? S.data.log.rows.concat(page.rows) : page.rows;
    S.data.log = { rows, next: page.next_cursor, from, to };
    S.data.logError = null;
  } catch (e) {
    S.data.logError = e;
  }
  renderLog();
}

function renderLog() {
  renderLogFilters();
  const msg = $('#log-msg');
  if (S.data.logError) {
    sayError(msg, S.data.logError);
    return;
  }
  const log = S.data.log;
  if (!log) return;
  $('#log-range').textContent = log.from && log.to ? t('log.range', { from: fmtCivil(log.from), to: fmtCivil(log.to) }) : '';
  const more = log.next != null;
  say(msg, log.rows.length ? t(more ? 'log.count_more' : 'log.count', { count: fmtNumber(log.rows.length) }) : t('log.none'), 'info');
  const cols = ['log.col.time', 'log.col.title', 'log.col.output', 'log.col.slot', 'log.col.duration', 'log.col.status'].map((k) => t(k));
  $('#log-rows').replaceChildren(...log.rows.map((r) => {
    const when = r.started_at || r.scheduled_at;
    const title = r.announcement_id == null && r.title === 'chime' ? t('log.chime') : r.title;
    const cells = [
      fmtDateTime(when, true),
      title,
      outputName(r.output),
      slotName(r.slot),
      r.duration_ms == null ? '—' : fmtDuration(r.duration_ms),
      h('span', { class: `badge air-${r.status}` }, has(`air.${r.status}`) ? t(`air.${r.status}`) : r.status),
    ];
    return h('tr', { 'data-status': r.status, 'data-id': r.id },
      cells.map((c, i) => h(i === 1 ? 'th' : 'td', { 'data-label': cols[i], scope: i === 1 ? 'row' : null }, c,
        i === 5 && r.detail ? h('span', { class: 'detail muted small' }, ` ${r.detail}`) : null)));
  }));
  $('#log-more').hidden = !more;
}

async function downloadCsv() {
  const msg = $('#log-msg');
  const { q, from, to } = logQuery();
  q.set('format', 'csv');
  try {
    const res = await api(`/api/v1/airtime?${q}`, { raw: true });
    const blob = await res.blob();
    const name = `airtime-${from ? civilKey(from) : 'start'}-${to ? civilKey(to) : 'now'}.csv`;
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    say(msg, t('log.csv_done', { file: name }));
  } catch (e) {
    sayError(msg, e);
  }
}

/** The daily report is shown only once the daemon answers it. */
async function probeReport() {
  if (S.reportAvailable === false) return;
  await showReport();
}

async function showReport() {
  const day = $('#report-day').value || civilKey(todayCivil());
  const body = $('#report-body');
  try {
    const r = await api(`/api/v1/audit/report?day=${encodeURIComponent(day)}`);
    S.reportAvailable = true;
    $('#report').hidden = false;
    body.replaceChildren(renderReport(r));
  } catch (e) {
    if (S.reportAvailable) sayError(body, e);
    else {
      S.reportAvailable = false;
      $('#report').hidden = true;
    }
  }
}

const REPORT_TOTALS = ['owed', 'completed', 'interrupted', 'failed', 'missed', 'not_aired', 'upcoming'];

/** The planned-vs-aired report of one day: totals, then one row per announcement and output. */
function renderReport(r) {
  if (!r || !Array.isArray(r.items)) return renderGeneric(r);
  const tot = r.totals || {};
  const day = civilFromKey(r.day);
  const cols = ['report.col.title', 'report.col.output', 'report.col.aired', 'air.interrupted', 'air.failed', 'air.missed', 'report.upcoming', 'report.not_aired'].map((k) => t(k));
  const count = (x) => (Array.isArray(x) ? x.length : x || 0);
  const SHOWN = 5;
  const rows = r.items.map((it) => {
    const notAired = it.not_aired || [];
    const cells = [
      it.title,
      outputName(it.output),
      `${fmtNumber(it.completed || 0)} / ${fmtNumber(it.owed || 0)}`,
      fmtNumber(it.interrupted || 0),
      fmtNumber(it.failed || 0),
      fmtNumber(it.missed || 0),
      fmtNumber(count(it.upcoming)),
      notAired.length ? h('ul', { class: 'reasons' },
        notAired.slice(0, SHOWN).map((x) => h('li', {}, `${x.planned_start ? fmtTime(x.planned_start) : ''} ${slotName(x.slot || '')}: ${x.reason || ''}`)),
        notAired.length > SHOWN ? h('li', { class: 'muted' }, t('report.more', { count: fmtNumber(notAired.length - SHOWN) })) : null) : '—',
    ];
    const short = (it.completed || 0) < (it.owed || 0) && count(it.upcoming) === 0;
    return h('tr', { class: short ? 'short' : null, 'data-announcement': it.announcement_id },
      cells.map((c, i) => h(i === 0 ? 'th' : 'td', { 'data-label': cols[i], scope: i === 0 ? 'row' : null }, c)));
  });
  return h('div', { class: 'report-body' },
    h('p', { class: 'range' }, t('report.for', { day: day ? fmtCivil(day) : r.day })),
    h('ul', { class: 'totals' }, REPORT_TOTALS.map((k) => h('li', { class: `tot tot-${k}${tot[k] ? '' : ' zero'}` },
      h('span', { class: 'num' }, fmtNumber(tot[k] || 0)), ' ', t(`report.${k}`)))),
    rows.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'log report-table' },
      h('caption', { class: 'sr-only' }, t('report.title')),
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, rows))) : h('p', { class: 'muted' }, t('report.empty')));
}

/** Any JSON as lists and tables, for a report whose exact shape this page does not assume. */
function renderGeneric(v, depth = 0) {
  const scalar = (x) => {
    if (x === null || x === undefined) return '—';
    if (typeof x === 'string' && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(x) && !Number.isNaN(Date.parse(x))) return fmtDateTime(x, true);
    if (typeof x === 'object') return JSON.stringify(x);
    return String(x);
  };
  if (Array.isArray(v)) {
    if (!v.length) return h('p', { class: 'muted' }, t('report.empty'));
    if (v.every((x) => x && typeof x === 'object' && !Array.isArray(x))) {
      const keys = [...new Set(v.flatMap((x) => Object.keys(x)))];
      return h('div', { class: 'table-wrap' }, h('table', { class: 'generic' },
        h('thead', {}, h('tr', {}, keys.map((k) => h('th', { scope: 'col' }, k)))),
        h('tbody', {}, v.map((x) => h('tr', {}, keys.map((k) => h('td', { 'data-label': k }, scalar(x[k]))))))));
    }
    return h('ul', {}, v.map((x) => h('li', {}, scalar(x))));
  }
  if (v && typeof v === 'object') {
    const dl = h('dl', { class: 'facts' });
    const nested = [];
    for (const [k, x] of Object.entries(v)) {
      if (x && typeof x === 'object' && depth < 3) nested.push(h('section', {}, h(depth ? 'h4' : 'h3', {}, k), renderGeneric(x, depth + 1)));
      else dl.append(h('dt', {}, k), h('dd', {}, scalar(x)));
    }
    return h('div', {}, dl.childNodes.length ? dl : null, nested);
  }
  return h('p', {}, scalar(v));
}

// ---------------------------------------------------------------------------------------------
// Emergency

async function loadEmergency() {
  try {
    S.data.emergency = (await api('/api/v1/announcements?status=approved')).announcements;
    S.data.emergencyError = null;
  } catch (e) {
    S.data.emergencyError = e;
  }
  renderEmergency();
}

function renderEmergency() {
  const list = $('#em-list');
  outputChoices($('#em-outputs'), 'em-out');
  if (S.data.emergencyError) {
    sayError(list, S.data.emergencyError);
    return;
  }
  const anns = S.data.emergency;
  if (!anns) return;
  const was = (document.querySelector('input[name=em-ann]:checked') || {}).value;
  list.replaceChildren(...(anns.length ? anns.map((a) => h('label', { class: 'choice block' },
    h('input', { type: 'radio', name: 'em-ann', value: a.id, checked: String(a.id) === was }),
    h('span', {}, h('strong', {}, a.title), h('span', { class: 'muted' }, ` · ${fmtDuration(a.duration_ms)}${a.agency ? ` · ${a.agency}` : ''}`))))
    : [h('p', { class: 'muted' }, t('em.none'))]));
  $('#em-go').disabled = !anns.length;
}

async function onEmergency(ev) {
  ev.preventDefault();
  const err = $('#em-error');
  hideMsg(err);
  const picked = document.querySelector('input[name=em-ann]:checked');
  const outputs = checkedValues($('#em-outputs'));
  if (!picked || !outputs.length) {
    err.replaceChildren(h('p', { class: 'msg-head' }, t(picked ? 'em.need_output' : 'em.need_pick')));
    err.hidden = false;
    (picked ? $('#em-outputs input') : $('#em-list input') || $('#em-go')).focus();
    return;
  }
  const a = S.data.emergency.find((x) => String(x.id) === picked.value);
  const repeat = +$('#em-repeat').value;
  const names = listOf(outputs.map(outputName));
  const ok = await confirmDialog(t('em.confirm_title'), t('em.confirm_text', { title: a.title, repeat, outputs: names }), t('em.confirm_ok'));
  if (!ok) {
    $('#em-go').focus();
    return;
  }
  const result = $('#em-result');
  try {
    const r = await api('/api/v1/emergency', { method: 'POST', json: { announcement_id: a.id, outputs, repeat } });
    const when = r && r.accepted_at ? fmtTime(r.accepted_at, true) : fmtTime(boxNow(), true);
    const outs = listOf((r && r.outputs ? r.outputs : outputs).map(outputName));
    result.replaceChildren(h('div', { class: 'msg ok', id: 'em-accepted' },
      h('p', { class: 'msg-head' }, t('em.accepted', { time: when, outputs: outs })),
      h('p', {}, h('a', { href: '#now' }, t('nav.now')))));
  } catch (e) {
    result.replaceChildren();
    if (isUnavailable(e)) {
      err.replaceChildren(h('p', { class: 'msg-head' }, t('em.unavailable')));
      err.hidden = false;
    } else showError(err, e);
  }
}

// ---------------------------------------------------------------------------------------------
// A confirmation step (native <dialog>: focus stays inside, Escape cancels)

function confirmDialog(title, text, okLabel) {
  const d = $('#confirm');
  $('#confirm-h').textContent = title;
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel || t('confirm.ok');
  $('#confirm-cancel').textContent = t('confirm.cancel');
  d.returnValue = '';
  const back = document.activeElement;
  d.showModal();
  $('#confirm-cancel').focus();
  return new Promise((resolve) => {
    d.addEventListener('close', () => {
      if (back && back.focus) back.focus();
      resolve(d.returnValue === 'ok');
    }, { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Footer clock and the status refresh

function renderClock() {
  const el = $('#foot-clock');
  el.textContent = S.me ? `${t('app.box_time')}: ${fmtDateTime(boxNow(), true)} (${S.tz})` : '';
}

function tick() {
  renderClock();
}

async function refreshStatus() {
  if (!S.me || S.view !== 'now' || document.hidden) return;
  try {
    takeStatus(await api('/api/v1/status'));
    S.data.statusError = null;
  } catch (e) {
    S.data.statusError = e;
  }
  if (S.view === 'now') renderNow(false);
}

// ---------------------------------------------------------------------------------------------
// Start

function init() {
  let lang = 'th';
  try {
    lang = localStorage.getItem(LANG_KEY) || 'th';
  } catch {
    // default language
  }
  S.lang = lang === 'en' ? 'en' : 'th';
  applyStatic();

  $('#lang-toggle').addEventListener('click', () => setLang(S.lang === 'th' ? 'en' : 'th'));
  $('#signout').addEventListener('click', () => signOut(t('signin.signed_out')));
  $('#signin-form').addEventListener('submit', onSignIn);
  $('#upload-form').addEventListener('submit', onUpload);
  $('#log-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    searchLog();
  });
  $('#log-more').addEventListener('click', () => searchLog(true));
  $('#log-csv').addEventListener('click', downloadCsv);
  $('#report-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    showReport();
  });
  $('#em-form').addEventListener('submit', onEmergency);
  $('#week-outputs').addEventListener('change', (ev) => {
    S.week.output = ev.target.value;
    renderWeek();
  });
  const week = (offset) => {
    S.week.offset = Math.max(0, offset);
    busy('week', loadWeek());
  };
  $('#week-prev').addEventListener('click', () => week(S.week.offset - 1));
  $('#week-next').addEventListener('click', () => week(S.week.offset + 1));
  $('#week-today').addEventListener('click', () => week(0));
  window.addEventListener('hashchange', () => route(true));
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) refreshStatus();
  });
  setInterval(refreshStatus, STATUS_EVERY_MS);
  setInterval(tick, 1000);

  let token = null;
  try {
    token = sessionStorage.getItem(TOKEN_KEY);
  } catch {
    // no stored session
  }
  if (token) {
    signIn(token).catch(() => signOut(null));
  } else signOut(null);
}

init();
