// One floating tooltip for the whole page.

export class Tooltip {
  readonly el: HTMLElement;

  constructor(el: HTMLElement) {
    this.el = el;
  }

  show(html: string, clientX: number, clientY: number): void {
    const el = this.el;
    el.innerHTML = html;
    el.hidden = false;
    const pad = 14;
    const w = el.offsetWidth;
    const h = el.offsetHeight;
    let x = clientX + pad;
    let y = clientY + pad;
    if (x + w > window.innerWidth - 4) x = Math.max(4, clientX - pad - w);
    if (y + h > window.innerHeight - 4) y = Math.max(4, clientY - pad - h);
    el.style.left = `${x}px`;
    el.style.top = `${y}px`;
  }

  hide(): void {
    this.el.hidden = true;
  }
}
