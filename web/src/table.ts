// The top functions: self and total per function (total counted once per stack), sortable, filtered by the search.
// Clicking a row marks the function in the graph; its button opens the sandwich.

import { esc, formatPercent, formatShort } from './format';
import type { Renderable, Scheduler } from './sched';
import type { FnRow } from './tree';
import { panelHead } from './dom';

type SortKey = 'name' | 'self' | 'total';

const MAX_ROWS = 300;

export interface TableEvents {
  onSelect(nameId: number): void;
  onSandwich(nameId: number): void;
}

export class TopTable implements Renderable {
  readonly root: HTMLElement;
  private readonly sched: Scheduler;
  private readonly events: TableEvents;
  private rows: FnRow[] = [];
  private total = 0;
  private unit = 'samples';
  private filter: RegExp | null = null;
  private selected = -1;
  private sortKey: SortKey = 'self';
  private sortDesc = true;
  private readonly caption: HTMLElement;
  private readonly body: HTMLTableSectionElement;
  private readonly head: HTMLTableSectionElement;
  /** The rows shown, in order (for tests). */
  shown: FnRow[] = [];

  constructor(root: HTMLElement, sched: Scheduler, events: TableEvents) {
    this.root = root;
    this.sched = sched;
    this.events = events;
    root.innerHTML = '';
    const { head: h, note } = panelHead('Top functions', 'top-table-caption');
    this.caption = note;
    const wrap = document.createElement('div');
    wrap.className = 'table-wrap';
    const table = document.createElement('table');
    table.className = 'top';
    this.head = table.createTHead();
    this.body = table.createTBody();
    wrap.append(table);
    root.append(h, wrap);
    this.head.addEventListener('click', (ev) => {
      const th = (ev.target as HTMLElement).closest<HTMLElement>('th[data-sort]');
      if (!th) return;
      const key = th.dataset.sort as SortKey;
      if (key === this.sortKey) this.sortDesc = !this.sortDesc;
      else {
        this.sortKey = key;
        this.sortDesc = key !== 'name';
      }
      this.invalidate();
    });
    this.body.addEventListener('click', (ev) => {
      const target = ev.target as HTMLElement;
      const tr = target.closest<HTMLTableRowElement>('tr[data-id]');
      if (!tr) return;
      const id = Number(tr.dataset.id);
      if (target.closest('button.sandwich-btn')) this.events.onSandwich(id);
      else this.events.onSelect(id);
    });
  }

  invalidate(): void {
    this.sched.invalidate(this);
  }

  setData(rows: FnRow[], total: number, unit: string): void {
    this.rows = rows;
    this.total = total;
    this.unit = unit;
    this.invalidate();
  }

  setFilter(re: RegExp | null): void {
    this.filter = re;
    this.invalidate();
  }

  setSelected(nameId: number): void {
    this.selected = nameId;
    this.invalidate();
  }

  render(): void {
    const arrow = (k: SortKey): string => (k === this.sortKey ? (this.sortDesc ? ' ▼' : ' ▲') : '');
    this.head.innerHTML =
      `<tr><th data-sort="name" data-testid="sort-name">Function${arrow('name')}</th>` +
      `<th data-sort="self" class="num" data-testid="sort-self">Self${arrow('self')}</th>` +
      `<th data-sort="total" class="num" data-testid="sort-total">Total${arrow('total')}</th><th></th></tr>`;
    const re = this.filter;
    let list = re
      ? this.rows.filter((r) => {
          re.lastIndex = 0;
          return re.test(r.name);
        })
      : this.rows.slice();
    const k = this.sortKey;
    const dir = this.sortDesc ? -1 : 1;
    list.sort((a, b) => {
      const c = k === 'name' ? a.name.localeCompare(b.name) : a[k] - b[k];
      return c !== 0 ? c * dir : b.total - a.total;
    });
    const count = list.length;
    list = list.slice(0, MAX_ROWS);
    this.shown = list;
    this.caption.textContent = this.rows.length
      ? `${count} function${count === 1 ? '' : 's'}${re ? ' matching' : ''}${count > MAX_ROWS ? `, first ${MAX_ROWS} shown` : ''}`
      : '';
    const total = this.total || 1;
    const html: string[] = [];
    for (const r of list) {
      const share = r.total / total;
      const cls = [r.nameId === this.selected ? 'selected' : '', r.synthetic ? 'synthetic' : '', r.kernel ? 'kernel' : '']
        .filter(Boolean)
        .join(' ');
      html.push(
        `<tr data-id="${r.nameId}" data-name="${esc(r.name)}" data-testid="top-row"${cls ? ` class="${cls}"` : ''}>` +
          `<td class="fn" title="${esc(r.name)}"><span class="bar" style="width:${(share * 100).toFixed(2)}%"></span><span class="fn-name">${esc(r.name)}</span></td>` +
          `<td class="num" data-testid="cell-self">${formatShort(r.self, this.unit)} <small>${formatPercent(r.self / total)}</small></td>` +
          `<td class="num" data-testid="cell-total">${formatShort(r.total, this.unit)} <small>${formatPercent(share)}</small></td>` +
          `<td><button class="sandwich-btn" data-testid="sandwich-button" title="Callers and callees of this function">sandwich</button></td></tr>`,
      );
    }
    if (!list.length && this.rows.length) html.push('<tr><td colspan="4" class="none">no function matches the search</td></tr>');
    this.body.innerHTML = html.join('');
  }
}
