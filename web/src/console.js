// The clinician's side of the waiting room (the same page, by role): who waits,
// with Admit and Deny; who is in the call, with "To waiting room" and "Remove"
// for those who are not clinicians.  The patient's side is the waiting notice.

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
    return promise.catch((error) => this.showError(`Could not ${what}: ${error.message}`));
  }

  renderWaiting(waiting) {
    this.waitingList.replaceChildren();
    for (const person of waiting) {
      const item = document.createElement('li');
      item.dataset.peerId = person.peerId;
      const label = document.createElement('span');
      label.textContent = `${nameOf(person)} (${person.role})`;
      item.append(
        label,
        button('Admit', `Let ${nameOf(person)} in`, () => this.act('admit', this.call.admit(person.peerId))),
        button('Deny', `Do not let ${nameOf(person)} in`, () => this.act('deny', this.call.deny(person.peerId))),
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
      label.textContent = `${nameOf(person)} (${person.role})`;
      item.append(label);
      if (!CLINICIAN_ROLES.has(person.role)) {
        item.append(
          button('To waiting room', `Send ${nameOf(person)} back to the waiting room`, () =>
            this.act('move', this.call.removeParticipant(person.peerId, 'waiting')),
          ),
          button('Remove', `Remove ${nameOf(person)} from the consultation`, () =>
            this.act('remove', this.call.removeParticipant(person.peerId, 'out')),
          ),
        );
      }
      this.peopleList.append(item);
    }
  }
}
