// Keyboard shortcuts, speedscope-like: one table (KEYMAP) drives both the dispatch and the `?` help overlay.
// Keys are ignored while an input, select or text area has the focus (but Esc there still clears the search), and
// with Ctrl, Alt or Meta held. The graph's keys act on the Profile tab only.

import { esc } from './format';

export type KeyAction =
  | 'zoom-in'
  | 'zoom-out'
  | 'reset-zoom'
  | 'pan-left'
  | 'pan-right'
  | 'up'
  | 'down'
  | 'flip'
  | 'search'
  | 'next-match'
  | 'prev-match'
  | 'escape'
  | 'help';

export interface KeyBinding {
  keys: readonly string[];
  action: KeyAction;
  what: string;
  /** Acts on the Profile tab only. */
  graph: boolean;
}

export const KEYMAP: readonly KeyBinding[] = [
  { keys: ['+', '='], action: 'zoom-in', what: 'zoom in (the window about its centre)', graph: true },
  { keys: ['-', '_'], action: 'zoom-out', what: 'zoom out; at the whole frame, out to its parent', graph: true },
  { keys: ['0'], action: 'reset-zoom', what: 'reset the zoom to the root', graph: true },
  { keys: ['ArrowLeft', 'a'], action: 'pan-left', what: 'pan left when zoomed in; else the previous sibling frame', graph: true },
  { keys: ['ArrowRight', 'd'], action: 'pan-right', what: 'pan right when zoomed in; else the next sibling frame', graph: true },
  { keys: ['ArrowUp', 'w'], action: 'up', what: 'focus one frame up the screen: the largest child in the flame graph, the parent in the icicle', graph: true },
  { keys: ['ArrowDown', 's'], action: 'down', what: 'focus one frame down the screen: the parent in the flame graph, the largest child in the icicle', graph: true },
  { keys: ['f'], action: 'flip', what: 'flame graph / icicle', graph: true },
  { keys: ['/'], action: 'search', what: 'search (a regular expression)', graph: true },
  { keys: ['n', 'Enter'], action: 'next-match', what: 'next search match, largest first', graph: true },
  { keys: ['N', 'Shift+Enter'], action: 'prev-match', what: 'previous search match', graph: true },
  { keys: ['Escape'], action: 'escape', what: 'close this help; else clear the search; else reset the zoom', graph: false },
  { keys: ['?'], action: 'help', what: 'show or hide this help', graph: false },
];

const LABEL: Record<string, string> = { ArrowLeft: '←', ArrowRight: '→', ArrowUp: '↑', ArrowDown: '↓', Escape: 'Esc' };

/** The action of a key event, or null (typing, modifiers, or no binding). Enter is the search box's own. */
export function actionOf(ev: KeyboardEvent): KeyAction | null {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return null;
  if (ev.key === 'Escape') return 'escape';
  const t = ev.target;
  if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement || (t instanceof HTMLElement && t.isContentEditable)) return null;
  for (const b of KEYMAP) if (b.keys.includes(ev.key) && ev.key !== 'Enter') return b.action;
  return null;
}

export function isGraphAction(a: KeyAction): boolean {
  return KEYMAP.some((b) => b.action === a && b.graph);
}

/** The help overlay's content. */
export function helpHtml(): string {
  const rows = KEYMAP.map(
    (b) => `<tr><td class="keys">${b.keys.map((k) => `<kbd>${esc(LABEL[k] ?? k)}</kbd>`).join(' ')}</td><td>${esc(b.what)}</td></tr>`,
  ).join('');
  return (
    '<div class="help-box"><div class="panel-head"><h2>Keyboard</h2><span class="panel-note">ignored while typing in a field (Enter and Shift+Enter there visit the matches)</span>' +
    '<button type="button" class="small" data-testid="help-close" data-close>close</button></div>' +
    `<table class="help-keys">${rows}</table>` +
    '<p class="page-note">Mouse: click a frame to zoom, right-click for its callers and callees, drag on the timeline to select.</p></div>'
  );
}
