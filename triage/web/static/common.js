/* Shared by every page: local times, relative ages, the CSRF token, JSON POSTs. No inline script (CSP). */
(function () {
  'use strict';

  function csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : '';
  }

  function relAge(date, now) {
    const seconds = Math.max(0, Math.floor(((now || Date.now()) - date.getTime()) / 1000));
    if (seconds < 60) return 'just now';
    if (seconds < 3600) return Math.floor(seconds / 60) + ' min ago';
    if (seconds < 86400) {
      const minutes = Math.floor((seconds % 3600) / 60);
      return Math.floor(seconds / 3600) + ' h ' + String(minutes).padStart(2, '0') + ' min ago';
    }
    return Math.floor(seconds / 86400) + ' d ago';
  }

  const LOCAL = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });

  function localTime(date) { return LOCAL.format(date); }

  function refreshTimes(root) {
    const scope = root || document;
    const now = Date.now();
    scope.querySelectorAll('time.age[datetime]').forEach(function (el) {
      const date = new Date(el.getAttribute('datetime'));
      if (!isNaN(date)) el.textContent = relAge(date, now);
    });
    scope.querySelectorAll('time.local[datetime]').forEach(function (el) {
      const date = new Date(el.getAttribute('datetime'));
      if (!isNaN(date)) el.textContent = localTime(date);
    });
  }

  async function post(url, body) {
    const headers = { 'X-CSRF-Token': csrf(), 'Accept': 'application/json' };
    const init = { method: 'POST', credentials: 'same-origin', headers: headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (response.status === 401) {
      window.location.href = '/login?next=' + encodeURIComponent(window.location.pathname + window.location.search);
      throw new Error('not logged in');
    }
    if (!response.ok) {
      let detail = 'HTTP ' + response.status;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(detail);
    }
    return response.json();
  }

  function el(tag, attrs) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(function ([key, value]) {
      if (value === null || value === undefined || value === false) return;
      if (key === 'text') node.textContent = value;
      else if (key === 'class') node.className = value;
      else node.setAttribute(key, value === true ? '' : value);
    });
    for (let i = 2; i < arguments.length; i++) {
      const child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  window.triage = { csrf: csrf, relAge: relAge, localTime: localTime, refreshTimes: refreshTimes, post: post, el: el };
  refreshTimes();
  window.setInterval(refreshTimes, 30000);
})();
