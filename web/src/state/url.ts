// The viewer's state as it lives in the address (`#view=wall&from=-15m&…`), so that reloading or sharing a link
// reproduces the view. Parsing never throws: what does not parse falls back to the default, except an unknown view,
// which is kept so the page can say so.

import { FILTER_KEYS, type FilterKey } from '../api';
import { STATES, type StateName } from '../colours';

export type Mode = 'flame' | 'icicle';

export const PAGES = ['profile', 'noise', 'latency', 'captures'] as const;
export type Page = (typeof PAGES)[number];

/**
 * The baseline a diff compares with: `hour` the same span an hour earlier, `day` a day earlier, `prev` the span of
 * the same length just before, explicit times (as the API takes them), or a capture's span (`capture:ID`, its
 * started..ended as `/api/v1/captures` lists it).
 */
export type DiffSpec =
  | { kind: 'hour' }
  | { kind: 'day' }
  | { kind: 'prev' }
  | { kind: 'range'; from: string; to: string }
  | { kind: 'capture'; id: string };

export function parseDiff(v: string | null): DiffSpec | null {
  if (!v) return null;
  const t = v.trim();
  if (t === 'hour' || t === 'day' || t === 'prev') return { kind: t };
  if (t.startsWith('capture:')) {
    const id = t.slice('capture:'.length).trim();
    return id ? { kind: 'capture', id } : null;
  }
  const parts = t.split(',');
  if (parts.length === 2 && parts[0]!.trim() && parts[1]!.trim()) return { kind: 'range', from: parts[0]!.trim(), to: parts[1]!.trim() };
  return null;
}

export function diffText(d: DiffSpec | null): string {
  if (!d) return '';
  if (d.kind === 'range') return `${d.from},${d.to}`;
  if (d.kind === 'capture') return `capture:${d.id}`;
  return d.kind;
}

export interface UrlState {
  /** As written in the address; checked against the known views by the page. */
  view: string;
  from: string;
  to: string;
  /** A brushed sub-range (Unix seconds) the profile is asked for; the timeline keeps from..to. */
  sel: [number, number] | null;
  groupBy: string;
  filters: Partial<Record<FilterKey, string>>;
  /** Frames from the root (the root itself excluded) of the zoomed node. */
  focus: string[];
  search: string;
  mode: Mode;
  hide: StateName[];
  maxNodes: number | null;
  /** The function whose sandwich is shown. */
  sandwich: string | null;
  page: Page;
  /** The baseline of the diff view, or null for no diff. */
  diff: DiffSpec | null;
  /** Hide idle waits (`idle=hide`; wall-clock and off-CPU views, see idle.ts). */
  idle: boolean;
}

export const DEFAULT_STATE: Readonly<UrlState> = {
  view: 'cpu',
  from: '-15m',
  to: 'now',
  sel: null,
  groupBy: 'comm',
  filters: {},
  focus: [],
  search: '',
  mode: 'flame',
  hide: [],
  maxNodes: null,
  sandwich: null,
  page: 'profile',
  diff: null,
  idle: false,
};

export function cloneState(s: UrlState): UrlState {
  return { ...s, sel: s.sel ? [s.sel[0], s.sel[1]] : null, filters: { ...s.filters }, focus: [...s.focus], hide: [...s.hide], diff: s.diff ? { ...s.diff } : null };
}

/** Whether the address names a range itself (`from`, `to` or `sel`), in its query string or hash. */
export function hasExplicitRange(loc: { search: string; hash: string }): boolean {
  const q = new URLSearchParams(loc.search);
  const h = new URLSearchParams(loc.hash.replace(/^#/, ''));
  return ['from', 'to', 'sel'].some((k) => !!(q.get(k) || h.get(k)));
}

/** Reads the query string, then the hash (which wins). */
export function parseLocation(loc: { search: string; hash: string }): UrlState {
  const p = new URLSearchParams(loc.search);
  const h = new URLSearchParams(loc.hash.replace(/^#/, ''));
  for (const [k, v] of h) p.set(k, v);
  return parseParams(p);
}

export function parseParams(p: URLSearchParams): UrlState {
  const s = cloneState(DEFAULT_STATE);
  const get = (k: string): string | null => {
    const v = p.get(k);
    return v === null ? null : v.trim();
  };
  const view = get('view');
  if (view !== null && view !== '') s.view = view;
  const from = get('from');
  if (from) s.from = from;
  const to = get('to');
  if (to) s.to = to;
  const sel = get('sel');
  if (sel) {
    const parts = sel.split(/[,~]/).map(Number);
    if (parts.length === 2 && parts.every((x) => Number.isFinite(x)) && parts[0]! < parts[1]!) {
      s.sel = [parts[0]!, parts[1]!];
    }
  }
  const groupBy = get('group_by');
  if (groupBy) s.groupBy = groupBy;
  for (const k of FILTER_KEYS) {
    const v = get(k);
    if (v) s.filters[k] = v;
  }
  const focus = p.get('focus');
  if (focus) s.focus = focus.split(';').filter((f) => f !== '');
  const search = p.get('search');
  if (search) s.search = search;
  const mode = get('mode');
  if (mode === 'icicle' || mode === 'flame') s.mode = mode;
  const hide = get('hide');
  if (hide) s.hide = hide.split(',').filter((x): x is StateName => (STATES as readonly string[]).includes(x));
  const maxNodes = get('max_nodes');
  if (maxNodes) {
    const n = Number(maxNodes);
    if (Number.isInteger(n) && n >= 1 && n <= 100000) s.maxNodes = n;
  }
  const sandwich = p.get('sandwich');
  if (sandwich) s.sandwich = sandwich;
  const page = get('page');
  if (page && (PAGES as readonly string[]).includes(page)) s.page = page as Page;
  s.diff = parseDiff(get('diff'));
  s.idle = get('idle') === 'hide';
  return s;
}

/** The hash for a state, defaults left out so links stay short. */
export function toHash(s: UrlState): string {
  const p = new URLSearchParams();
  const d = DEFAULT_STATE;
  if (s.view !== d.view) p.set('view', s.view);
  if (s.from !== d.from) p.set('from', s.from);
  if (s.to !== d.to) p.set('to', s.to);
  if (s.sel) p.set('sel', `${s.sel[0].toFixed(3)},${s.sel[1].toFixed(3)}`);
  if (s.groupBy !== d.groupBy) p.set('group_by', s.groupBy);
  for (const k of FILTER_KEYS) {
    const v = s.filters[k];
    if (v) p.set(k, v);
  }
  if (s.focus.length) p.set('focus', s.focus.join(';'));
  if (s.search) p.set('search', s.search);
  if (s.mode !== d.mode) p.set('mode', s.mode);
  if (s.hide.length) p.set('hide', s.hide.join(','));
  if (s.maxNodes !== null) p.set('max_nodes', String(s.maxNodes));
  if (s.sandwich) p.set('sandwich', s.sandwich);
  if (s.page !== d.page) p.set('page', s.page);
  if (s.diff) p.set('diff', diffText(s.diff));
  if (s.idle) p.set('idle', 'hide');
  const str = p.toString();
  return str ? '#' + str : '';
}

/** Writes the state into the address without adding a history entry or reloading. */
export function writeLocation(s: UrlState): void {
  // The query string is dropped: the hash then says everything, so a default left out of it cannot be
  // overridden by a stale query parameter.
  const url = location.pathname + toHash(s);
  if (url !== location.pathname + location.search + location.hash) {
    history.replaceState(null, '', url);
  }
}
