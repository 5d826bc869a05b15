/* The admin page: shows what a threshold change would flag before it is saved. */
(function () {
  'use strict';
  const form = document.getElementById('threshold-form');
  if (!form) return;
  let timer = null;

  async function preview() {
    const params = new URLSearchParams();
    form.querySelectorAll('input.threshold-input').forEach(function (input) {
      const value = Number(input.value);
      if (input.value !== '' && value >= 0 && value <= 1) params.set(input.dataset.class, String(value));
    });
    const off = [];
    form.querySelectorAll('input.enabled-input').forEach(function (input) {
      if (!input.checked) off.push(input.dataset.class);
    });
    params.set('disabled', off.join(','));
    params.set('days', form.dataset.effectDays || '30');
    try {
      const response = await fetch('/api/admin/threshold-effect?' + params.toString(), { credentials: 'same-origin' });
      if (!response.ok) return;
      const effect = await response.json();
      form.querySelectorAll('.effect').forEach(function (span) {
        span.textContent = String(effect.per_class[span.dataset.class]);
      });
      document.getElementById('effect-flagged').textContent = String(effect.flagged);
    } catch (e) { /* keep the last figures */ }
  }

  form.addEventListener('input', function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(preview, 250);
  });
  form.addEventListener('change', preview);
})();
