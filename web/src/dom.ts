// Small DOM builders the panels share.

/** A panel's head: its title and a note (the caption beside it, tagged `testid`). */
export function panelHead(title: string, testid: string): { head: HTMLDivElement; note: HTMLSpanElement } {
  const head = document.createElement('div');
  head.className = 'panel-head';
  const h2 = document.createElement('h2');
  h2.textContent = title;
  const note = document.createElement('span');
  note.className = 'panel-note';
  note.dataset.testid = testid;
  head.append(h2, note);
  return { head, note };
}
