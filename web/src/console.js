// The clinician's side of the waiting room (the same page, by role): who waits,
// with Admit and Deny; who is in the call, with "To waiting room" and "Remove"
// for those who are not clinicians.  The patient's side is the waiting notice.

import { t } from './i18n.js';

export const CLINICIAN_ROLES = new Set(['physician', 'nurse', 'specialist']);

function button(text, label, onClick) {
  const element = document.createElement('button');
  element.type = 'button';
  element.textContent = text;
  element.setAttribute('aria-label', label);
  element.addEventListener('click', async () => {
    element.disabled = true;
    try {
      await onClick();
    } finally {
      element.disabled = false;
    }
  });
  return element;
}

function nameOf(person) {
  return person.displayName || person.peerId;
}

export class ClinicianConsole {
  constructor(root, call, showError) {
    this.panel = root.querySelector('#console');
    this.waitingList = root.querySelector('#waiting-list');
    this.peopleList = root.querySelector('#people-list');
    this.call = call;
    this.showError = showError;
  }

  show() {
    this.panel.hidden = false;
  }

  act(what, promise) {
    return promise.catch((error) => this.showError(t('error.action', { code: error.code || what })));
  }

  renderWaiting(waiting) {
    this.waitingList.replaceChildren();
    for (const person of waiting) {
      const item = document.createElement('li');
      item.dataset.peerId = person.peerId;
      const label = document.createElement('span');
      label.textContent = `${nameOf(person)} (${t(`role.${person.role}`)})`;
      item.append(
        label,
        button(t('console.admit'), t('console.admitLabel', { name: nameOf(person) }), () => this.act('admit', this.call.admit(person.peerId))),
        button(t('console.deny'), t('console.denyLabel', { name: nameOf(person) }), () => this.act('deny', this.call.deny(person.peerId))),
      );
      this.waitingList.append(item);
    }
    this.waitingList.dataset.count = String(waiting.length);
  }

  renderPeople() {
    this.peopleList.replaceChildren();
    for (const person of this.call.peers.values()) {
      const item = document.createElement('li');
      item.dataset.peerId = person.peerId;
      const label = document.createElement('span');
      label.textContent = `${nameOf(person)} (${t(`role.${person.role}`)})`;
      item.append(label);
      if (!CLINICIAN_ROLES.has(person.role)) {
        item.append(
          button(t('console.toWaiting'), t('console.toWaitingLabel', { name: nameOf(person) }), () =>
            this.act('move', this.call.removeParticipant(person.peerId, 'waiting')),
          ),
          button(t('console.remove'), t('console.removeLabel', { name: nameOf(person) }), () =>
            this.act('remove', this.call.removeParticipant(person.peerId, 'out')),
          ),
        );
      }
      this.peopleList.append(item);
    }
  }
}

const WARN_BEFORE_S = 5 * 60;

function clock(seconds) {
  const whole = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(whole / 3600);
  const minutes = String(Math.floor((whole % 3600) / 60)).padStart(2, '0');
  const rest = String(whole % 60).padStart(2, '0');
  return hours ? `${hours}:${minutes}:${rest}` : `${minutes}:${rest}`;
}

// The consultation's clock, the end button and the clinical forms (the session's
// physician writes through the REST API with the room token).
export class SessionTools {
  constructor(root, call, showError) {
    this.root = root;
    this.call = call;
    this.showError = showError;
    this.timer = root.querySelector('#timer');
    this.timeLeft = root.querySelector('#time-left');
    this.tools = root.querySelector('#physician-tools');
    this.form = root.querySelector('#record-form');
    this.kind = root.querySelector('#record-kind');
    this.text = root.querySelector('#record-text');
    this.due = root.querySelector('#record-due');
    this.status = root.querySelector('#record-status');
    this.ticker = null;
  }

  start(session, role) {
    this.session = session; // the latest (a rejoin brings a fresh clock)
    if (this.ticker) clearInterval(this.ticker);
    const tick = () => this.tick(this.session);
    tick();
    this.ticker = setInterval(tick, 1000);
    if (role !== 'physician' || this.wired) return;
    this.wired = true;
    this.tools.hidden = false;
    this.kind.addEventListener('change', () => {
      const followup = this.kind.value === 'followup';
      this.due.hidden = !followup;
      this.due.previousElementSibling.hidden = !followup;
      this.due.required = followup;
    });
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.save(this.session);
    });
    this.root.querySelector('#end-consultation').addEventListener('click', () => this.end(this.session));
  }

  tick(session) {
    const elapsed = session.elapsedSeconds + (Date.now() - session.receivedAt) / 1000;
    const left = session.maxDurationSeconds - elapsed;
    this.timer.textContent = clock(elapsed);
    this.timeLeft.textContent = left <= WARN_BEFORE_S ? t('console.left', { time: clock(left) }) : t('console.max', { time: clock(session.maxDurationSeconds) });
    this.timeLeft.dataset.warning = String(left <= WARN_BEFORE_S);
  }

  async save(session) {
    const body = { sessionId: session.sessionId, text: this.text.value };
    if (this.kind.value === 'followup') body.dueAt = new Date(this.due.value).toISOString();
    this.status.textContent = t('console.saving');
    try {
      await this.call.api(this.kind.value, body);
      this.status.textContent = t('console.saved');
      this.text.value = '';
    } catch (error) {
      this.status.textContent = '';
      this.showError(t('error.action', { code: error.code || error.name }));
    }
  }

  async end(session) {
    try {
      await this.call.api('session/end', { sessionId: session.sessionId, reason: 'ended' });
    } catch (error) {
      this.showError(t('error.action', { code: error.code || error.name }));
    }
  }
}
