/* The study page: acknowledge without a reload. */
(function () {
  'use strict';
  const T = window.triage;
  const area = document.getElementById('ack-area');
  const header = document.getElementById('study');
  if (!area || !header) return;

  // While the study is still in flight, reload once its status or result changes.
  const ACTIVE = ['receiving', 'queued', 'processing'];
  if (ACTIVE.indexOf(header.dataset.status) >= 0) {
    const poll = window.setInterval(async function () {
      try {
        const response = await fetch('/api/studies/' + encodeURIComponent(header.dataset.uid), { credentials: 'same-origin' });
        if (!response.ok) return;
        const study = await response.json();
        const classified = study.classified_at ? new Date(study.classified_at).toISOString().slice(0, 19) + 'Z' : '';
        if (study.status !== header.dataset.status || classified !== header.dataset.classified) {
          window.clearInterval(poll);
          window.location.reload();
        }
      } catch (e) { /* try again at the next tick */ }
    }, 5000);
  }

  area.addEventListener('submit', async function (event) {
    const form = event.target.closest('form.ack-form');
    if (!form) return;
    event.preventDefault();
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const ack = await T.post('/api/studies/' + encodeURIComponent(form.dataset.uid) + '/ack');
      const time = T.el('time', { class: 'age', datetime: ack.acknowledged_at, text: T.relAge(new Date(ack.acknowledged_at)) });
      area.replaceChildren(T.el('span', { class: 'acked' }, '✓ Acknowledged by ' + ack.acknowledged_by + ' ', time));
      if (header.classList.contains('is-critical')) {
        header.classList.replace('is-critical', 'is-acked');
        const badge = header.querySelector('.badge-critical');
        if (badge) { badge.className = 'badge badge-acked'; badge.textContent = 'Critical · ack'; }
      }
    } catch (e) {
      button.disabled = false;
      area.append(T.el('p', { class: 'alert alert-error', text: 'Could not acknowledge: ' + e.message }));
    }
  });
})();
