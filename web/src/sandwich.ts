// The sandwich of one function: its callers above it (inverted, the function at the bottom) and its callees below
// it (every call's subtree merged). Built from the tree on screen, so it follows the range, view and filters.

import { frameColours } from './colours';
import { FlameGraph } from './flame';
import { esc, formatPercent, formatValue } from './format';
import type { Scheduler } from './sched';
import { flatten, type FlatTree, sandwich } from './tree';
import { panelHead } from './dom';

export interface SandwichEvents {
  onHover(graph: FlameGraph, i: number, ev: MouseEvent): void;
  onLeave(): void;
  onContext(graph: FlameGraph, i: number): void;
  onClose(): void;
}

export class SandwichView {
  readonly root: HTMLElement;
  readonly callers: FlameGraph;
  readonly callees: FlameGraph;
  private readonly title: HTMLElement;
  private readonly body: HTMLElement;
  /** The function shown, or null. */
  name: string | null = null;
  total = 0;

  constructor(root: HTMLElement, sched: Scheduler, events: SandwichEvents) {
    this.root = root;
    root.innerHTML = '';
    const { head, note } = panelHead('Sandwich', 'sandwich-title');
    this.title = note;
    const close = document.createElement('button');
    close.textContent = 'close';
    close.dataset.testid = 'sandwich-close';
    close.addEventListener('click', () => events.onClose());
    head.append(this.title, close);
    this.body = document.createElement('div');
    this.body.className = 'sandwich-body';
    const l1 = document.createElement('div');
    l1.className = 'sandwich-label';
    l1.textContent = 'callers ↑';
    const l2 = document.createElement('div');
    l2.className = 'sandwich-label';
    l2.textContent = 'callees ↓';
    root.append(head, this.body);
    const maxHeight = (): number => Math.max(160, Math.floor(window.innerHeight * 0.32));
    const mk = (testid: string, orientation: 'flame' | 'icicle'): FlameGraph => {
      const g: FlameGraph = new FlameGraph(this.body, sched, {
        testid,
        orientation,
        maxHeight,
        events: {
          onClick: (i) => g.setZoom(i === g.zoom ? 0 : i),
          onHover: (i, ev) => events.onHover(g, i, ev),
          onLeave: () => events.onLeave(),
          onContext: (i) => events.onContext(g, i),
        },
      });
      return g;
    };
    this.body.append(l1);
    this.callers = mk('sandwich-callers', 'flame');
    this.body.append(l2);
    this.callees = mk('sandwich-callees', 'icicle');
    this.clear('');
  }

  /** Shows the sandwich of a function of `tree`; false when the function is not in it. */
  show(tree: FlatTree, name: string, byState: boolean, unit: string): boolean {
    const id = tree.nameIndex.get(name);
    const s = id === undefined ? null : sandwich(tree, id);
    if (!s) {
      this.clear(`${name} does not appear in this profile`);
      this.name = name;
      return false;
    }
    const opts = { stateDepth: 0, groupDepth: 0, hidden: new Set<never>() };
    const callers = flatten(s.callers, opts);
    const callees = flatten(s.callees, opts);
    this.callers.setTree(callers, frameColours(callers, byState, true));
    this.callees.setTree(callees, frameColours(callees, byState, true));
    this.name = name;
    this.total = s.total;
    this.body.hidden = false;
    this.root.classList.add('active');
    this.title.innerHTML = `<b>${esc(name)}</b>: ${esc(formatValue(s.total, unit))}, ${formatPercent(tree.total > 0 ? s.total / tree.total : 0)} of total, ${s.occurrences} call path${s.occurrences === 1 ? '' : 's'}`;
    return true;
  }

  clear(message: string): void {
    this.name = null;
    this.total = 0;
    this.callers.setTree(null, null);
    this.callees.setTree(null, null);
    this.body.hidden = true;
    this.root.classList.remove('active');
    this.title.textContent = message || 'right-click a frame, or a row’s “sandwich” button, to see its callers and callees';
  }
}
