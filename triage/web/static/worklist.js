/* The worklist: refreshes itself from /api/worklist, announces newly flagged studies, keyboard use. */
(function () {
  'use strict';
  const T = window.triage;
  const el = T.el;
  const table = document.getElementById('worklist');
  if (!table) return;
  const body = document.getElementById('worklist-body');
  const form = document.getElementById('filters');
  const live = document.getElementById('live-status');
  const announce = document.getElementById('announce');
  const soundButton = document.getElementById('sound-toggle');
  const count = document.getElementById('worklist-count');
  const POLL_MS = (Number(table.dataset.pollSeconds) || 5) * 1000;
  const ABBR = { any: 'ICH', epidural: 'EDH', intraparenchymal: 'IPH', intraventricular: 'IVH', subarachnoid: 'SAH', subdural: 'SDH' };
  const STATUS = { receiving: 'receiving', queued: 'queued', processing: 'processing', classified: 'classified', failed: 'failed', not_analysed: 'not analysed' };
  const UTC = new Intl.DateTimeFormat('en-GB', { timeZone: 'UTC', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });

  // Studies already seen flagged and unacknowledged: only others are announced as new.
  const seen = new Set(Array.from(body.querySelectorAll('tr.is-critical')).map(function (r) { return r.dataset.uid; }));
  let sound = window.localStorage.getItem('triage.sound') === 'on';
  let audio = null;
  let timer = null;
  let busy = false;

  function pct(p) { return p === null || p === undefined ? '—' : Math.round(p * 100) + ' %'; }

  function query() {
    const params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) { if (value) params.append(key, value); });
    return params;
  }

  function apiQuery() {
    const params = query();
    if (params.get('flagged') === '1') params.set('flagged', 'true');
    return params;
  }

  function rowClass(s) {
    if (s.flagged && !s.acknowledged) return 'is-critical';
    return s.flagged ? 'is-acked' : 'is-routine';
  }

  function priorityBadge(s) {
    if (s.flagged && !s.acknowledged) return el('span', { class: 'badge badge-critical', title: 'flagged, not acknowledged', text: 'Critical' });
    if (s.flagged) return el('span', { class: 'badge badge-acked', title: 'flagged and acknowledged', text: 'Critical · ack' });
    return el('span', { class: 'badge badge-routine', text: 'Routine' });
  }

  function findings(s) {
    const cell = el('td', { class: 'col-findings' });
    const p = s.probabilities;
    if (p.any === null || p.any === undefined) cell.append(el('span', { class: 'muted', text: '—' }));
    else if (s.flagged) {
      cell.append(el('span', { class: 'finding finding-any', title: 'any hemorrhage', text: ABBR.any + ' ' + pct(p.any) }));
      s.subtypes.forEach(function (name) {
        cell.append(el('span', { class: 'finding finding-' + name, title: name, text: ABBR[name] + ' ' + pct(p[name]) }));
      });
    } else cell.append(el('span', { class: 'finding finding-none', text: 'No ICH · ' + pct(p.any) }));
    if (s.error && s.error !== s.status_reason) cell.append(el('div', { class: 'reason small', title: s.error, text: s.error.length > 80 ? s.error.slice(0, 77) + '...' : s.error }));
    return cell;
  }

  function ackCell(s) {
    const cell = el('td', { class: 'col-action' });
    if (s.acknowledged) {
      cell.append(el('span', { class: 'acked', title: s.acknowledged_at, text: '✓ ' + (s.acknowledged_by || '') }));
    } else if (s.flagged) {
      cell.append(el('form', { method: 'post', action: '/studies/' + s.study_uid + '/ack', class: 'inline ack-form', 'data-uid': s.study_uid },
        el('input', { type: 'hidden', name: 'csrf_token', value: T.csrf() }),
        el('input', { type: 'hidden', name: 'next', value: '/' }),
        el('button', { type: 'submit', class: 'btn btn-ack', text: 'Acknowledge' })));
    }
    return cell;
  }

  function received(iso) {
    const date = new Date(iso);
    const cell = el('td', { class: 'col-received' });
    cell.append(el('time', { class: 'age', datetime: iso, title: UTC.format(date) + ' UTC', text: T.relAge(date) }));
    cell.append(el('div', { class: 'muted small' }, el('time', { class: 'local', datetime: iso, text: T.localTime(date) })));
    return cell;
  }

  function row(s, isNew) {
    const status = el('td', { class: 'col-status' },
      el('span', { class: 'status status-' + s.status, text: STATUS[s.status] + (s.provisional && s.status !== 'classified' ? ' · provisional' : '') }));
    if (s.status_reason) status.append(el('div', { class: 'reason small', text: s.status_reason }));
    return el('tr', { class: 'study ' + rowClass(s) + (isNew ? ' is-new' : ''), 'data-uid': s.study_uid, tabindex: '0' },
      el('td', { class: 'col-priority' }, priorityBadge(s)),
      el('td', { class: 'col-patient' }, el('div', { class: 'patient-name', text: s.patient_name || '—' }), el('div', { class: 'muted small mono', text: s.patient_id })),
      el('td', { class: 'col-accession mono', text: s.accession_number || '—' }),
      el('td', { class: 'col-study' },
        el('a', { class: 'study-link', href: '/studies/' + s.study_uid, text: s.study_description || 'Study' }),
        el('div', { class: 'muted small', text: s.num_series + ' series · ' + s.num_instances + ' images' })),
      received(s.received_at),
      status,
      findings(s),
      ackCell(s));
  }

  function render(data) {
    const focused = document.activeElement && document.activeElement.closest ? document.activeElement.closest('tr.study') : null;
    const focusedUid = focused ? focused.dataset.uid : null;
    const urgent = data.studies.filter(function (s) { return s.flagged && !s.acknowledged; });
    const fresh = urgent.filter(function (s) { return !seen.has(s.study_uid); });
    urgent.forEach(function (s) { seen.add(s.study_uid); });
    const freshUids = new Set(fresh.map(function (s) { return s.study_uid; }));
    const rows = data.studies.map(function (s) { return row(s, freshUids.has(s.study_uid)); });
    if (!rows.length) rows.push(el('tr', { class: 'empty' }, el('td', { colspan: '8', text: 'No studies match.' })));
    body.replaceChildren.apply(body, rows);
    if (focusedUid) {
      const again = body.querySelector('tr[data-uid="' + CSS.escape(focusedUid) + '"]');
      if (again) again.focus({ preventScroll: true });
    }
    count.textContent = String(data.total);
    document.title = (urgent.length ? '(' + urgent.length + ') ' : '') + 'Worklist · triage';
    if (fresh.length) notify(fresh);
  }

  function notify(fresh) {
    const first = fresh[0];
    const what = first.subtypes.length ? first.subtypes.join(', ') : 'hemorrhage';
    announce.textContent = (fresh.length > 1 ? fresh.length + ' new critical studies' : 'New critical study') +
      ': ' + (first.accession_number || first.study_description || first.study_uid) + ' (' + what + ')';
    announce.hidden = false;
    if (sound) beep();
  }

  function beep() {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      [0, 0.25].forEach(function (offset) {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.frequency.value = 880;
        gain.gain.setValueAtTime(0.15, audio.currentTime + offset);
        gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + offset + 0.2);
        osc.connect(gain).connect(audio.destination);
        osc.start(audio.currentTime + offset);
        osc.stop(audio.currentTime + offset + 0.21);
      });
    } catch (e) { /* no audio */ }
  }

  function setLive(ok, message) {
    live.classList.toggle('is-offline', !ok);
    live.textContent = ok ? 'Live · updated ' + new Date().toLocaleTimeString() : 'Connection lost, retrying (' + message + ')';
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const response = await fetch('/api/worklist?' + apiQuery().toString(), { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (response.status === 401) {
        window.location.href = '/login?next=' + encodeURIComponent(window.location.pathname + window.location.search);
        return;
      }
      if (!response.ok) throw new Error('HTTP ' + response.status);
      render(await response.json());
      setLive(true);
    } catch (e) {
      setLive(false, e.message);
    } finally {
      busy = false;
    }
  }

  function schedule() {
    window.clearInterval(timer);
    timer = window.setInterval(refresh, POLL_MS);
  }

  function applyFilters() {
    const params = query().toString();
    window.history.replaceState(null, '', params ? '/?' + params : '/');
    refresh();
    schedule();
  }

  form.addEventListener('submit', function (event) { event.preventDefault(); applyFilters(); });
  form.addEventListener('change', applyFilters);

  body.addEventListener('submit', async function (event) {
    const ack = event.target.closest('form.ack-form');
    if (!ack) return;
    event.preventDefault();
    const button = ack.querySelector('button');
    button.disabled = true;
    try {
      await T.post('/api/studies/' + encodeURIComponent(ack.dataset.uid) + '/ack');
      await refresh();
    } catch (e) {
      button.disabled = false;
      setLive(false, e.message);
    }
  });

  body.addEventListener('click', function (event) {
    if (event.target.closest('a, button, input, form')) return;
    const tr = event.target.closest('tr.study');
    if (tr) window.location.href = '/studies/' + tr.dataset.uid;
  });

  function rowsList() { return Array.from(body.querySelectorAll('tr.study')); }

  function move(delta) {
    const rows = rowsList();
    if (!rows.length) return;
    const current = rows.indexOf(document.activeElement && document.activeElement.closest ? document.activeElement.closest('tr.study') : null);
    const next = current < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, current + delta));
    rows[next].focus();
  }

  document.addEventListener('keydown', function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    if (target.matches && target.matches('input, select, textarea')) {
      if (event.key === 'Escape') target.blur();
      return;
    }
    const tr = target.closest ? target.closest('tr.study') : null;
    switch (event.key) {
      case 'j': case 'ArrowDown': move(1); break;
      case 'k': case 'ArrowUp': move(-1); break;
      case 'Enter': case 'o':
        if (!tr || target.matches('a, button')) return;
        window.location.href = '/studies/' + tr.dataset.uid; break;
      case 'a': {
        const button = tr && tr.querySelector('form.ack-form button');
        if (button) button.click(); else return;
        break;
      }
      case 'f': {
        const box = form.querySelector('input[name="flagged"]');
        box.checked = !box.checked; applyFilters(); break;
      }
      case '/': form.querySelector('input[name="q"]').focus(); break;
      default: return;
    }
    event.preventDefault();
  });

  function showSound() {
    soundButton.textContent = 'Sound: ' + (sound ? 'on' : 'off');
    soundButton.setAttribute('aria-pressed', String(sound));
  }
  soundButton.addEventListener('click', function () {
    sound = !sound;
    window.localStorage.setItem('triage.sound', sound ? 'on' : 'off');
    showSound();
    if (sound) beep();
  });
  showSound();

  announce.addEventListener('click', function () { announce.hidden = true; });
  document.addEventListener('visibilitychange', function () { if (!document.hidden) refresh(); });
  setLive(true);
  schedule();
})();
