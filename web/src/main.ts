// The page: controls, URL state, requests, and the wiring between the timeline, the graph, the table and the
// sandwich. Also window.__tailprof, read-only hooks for tests.

import {
  ApiError,
  apiUrl,
  type CaptureRecord,
  captureSpan,
  type CapturesResponse,
  downloadWithToken,
  FILTER_KEYS,
  type FilterKey,
  getJson,
  getToken,
  isAbort,
  nsToParam,
  onAuthNeeded,
  type Params,
  type ProfileNode,
  type ProfileResponse,
  setToken,
  type StatusResponse,
  type TimelineResponse,
  timings,
  type View,
  VIEWS,
} from './api';
import {
  baselineRange,
  type DiffKind,
  DIFF_GONE,
  DIFF_LESS,
  DIFF_MORE,
  DIFF_NEW,
  DIFF_SAME,
  diffArrays,
  diffColours,
  diffGradientCss,
  type DiffNode,
  kindOf,
  mergeDiff,
  resolveTime,
  withoutStates,
} from './diff';
import { CapturesPage } from './pages/captures';
import { LatencyPage } from './pages/latency';
import { NoisePage } from './pages/noise';
import { css, frameColours, KERNEL_SAMPLE, STATE_LABEL, STATE_RGB, STATES, type StateName, USER_SAMPLE, viewStates } from './colours';
import { FlameGraph } from './flame';
import { clock, dateTime, esc, formatPercent, formatValue } from './format';
import { withoutIdle } from './idle';
import { actionOf, helpHtml, isGraphAction, type KeyAction, KEYMAP } from './keys';
import { SandwichView } from './sandwich';
import { Scheduler } from './sched';
import {
  cloneState,
  DEFAULT_STATE,
  type DiffSpec,
  diffText,
  hasExplicitRange,
  type Mode,
  type Page,
  PAGES,
  parseDiff,
  parseLocation,
  toHash,
  type UrlState,
  writeLocation,
} from './state/url';
import { TopTable } from './table';
import { Timeline } from './timeline';
import { Tooltip } from './tooltip';
import {
  ancestors,
  childrenOf,
  F_OTHER,
  F_ROOT,
  F_TRIMMED,
  type FlatTree,
  findPath,
  flatten,
  type FnRow,
  graft,
  hasFoldedChild,
  nodeName,
  nodeState,
  pathOf,
  search,
  type SearchResult,
  topFunctions,
} from './tree';

// ---- helpers ----

function el<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`missing #${id}`);
  return e as T;
}

function isView(v: string): v is View {
  return (VIEWS as readonly string[]).includes(v);
}

function sentence(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error && e.message) return `something went wrong: ${e.message.split('\n')[0]}`;
  return 'something went wrong';
}

function isRelative(s: string): boolean {
  return s.trim() === 'now' || s.trim().startsWith('-');
}

const STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** About 150 bars over the range, on a round step. */
function stepFor(spanS: number): string {
  const want = spanS / 150;
  const s = STEPS_S.find((x) => x >= want) ?? Math.ceil(want / 86400) * 86400;
  return `${s}s`;
}

function parseFilters(text: string): { filters: Partial<Record<FilterKey, string>> } | { error: string } {
  const filters: Partial<Record<FilterKey, string>> = {};
  for (const tok of text.trim().split(/\s+/).filter(Boolean)) {
    const m = /^([a-z_]+)[=:](.+)$/.exec(tok);
    if (!m) return { error: `write filters as key=value, for example comm=nginx (not '${tok}')` };
    const key = m[1]!;
    if (!(FILTER_KEYS as readonly string[]).includes(key)) {
      return { error: `'${key}' is not a filter: use ${FILTER_KEYS.join(', ')}` };
    }
    const k = key as FilterKey;
    filters[k] = k === 'pid' && filters.pid ? `${filters.pid},${m[2]}` : m[2]!;
  }
  return { filters };
}

/** A change of share in percentage points, signed. */
function formatPoints(d: number): string {
  const p = d * 100;
  const a = Math.abs(p);
  const txt = a === 0 ? '0' : a < 0.01 ? '<0.01' : a < 10 ? a.toFixed(2) : a.toFixed(1);
  return `${p > 0 ? '+' : p < 0 ? '−' : '±'}${txt} points`;
}

function filtersText(f: Partial<Record<FilterKey, string>>): string {
  return FILTER_KEYS.filter((k) => f[k]).map((k) => `${k}=${f[k]}`).join(' ');
}

const EXPORTS: ReadonlyArray<{ id: string; format: string; ext: string }> = [
  { id: 'export-svg', format: 'svg', ext: 'svg' },
  { id: 'export-pprof', format: 'pprof', ext: 'pb.gz' },
  { id: 'export-folded', format: 'folded', ext: 'folded' },
  { id: 'export-json', format: 'json', ext: 'json' },
];

type Message = { kind: 'error' | 'empty'; text: string } | null;

// ---- the page ----

class App {
  state: UrlState;
  readonly sched = new Scheduler();
  readonly tooltip = new Tooltip(el('tooltip'));
  readonly graph: FlameGraph;
  readonly timeline: Timeline;
  readonly table: TopTable;
  readonly sand: SandwichView;

  profile: ProfileResponse | null = null;
  /** The diff view's baseline answer, and the sources the merged tree is made of. */
  baseProfile: ProfileResponse | null = null;
  private diffSources: { after: ProfileNode; before: ProfileNode } | null = null;
  diffArr: { before: Float64Array; after: Float64Array } | null = null;
  /** The totals of the two trees after hidden states. */
  diffTotals = { after: 0, before: 0 };
  readonly noisePage: NoisePage;
  readonly latencyPage: LatencyPage;
  readonly capturesPage: CapturesPage;
  /** Pages whose data is older than the range and filters. */
  private readonly stale = new Set<Page>(PAGES);
  lastTimeline: TimelineResponse | null = null;
  authNeeded = false;
  raw: ProfileNode | null = null;
  tree: FlatTree | null = null;
  rows: FnRow[] = [];
  searchRe: RegExp | null = null;
  searchRes: SearchResult | null = null;
  matchPos = -1;
  marked: string | null = null;
  message: Message = null;
  rebuildMs = 0;
  private gen = 0;
  private profileCtl: AbortController | null = null;
  private timelineCtl: AbortController | null = null;
  private readonly fetched = new Set<string>();
  private searchTimer = 0;

  private readonly search = el<HTMLInputElement>('search');
  /** `/api/v1/status` as last answered (null before, or when it failed). */
  status: StatusResponse | null = null;
  /** The captures `/api/v1/captures` lists, for the diff's capture baselines (null until asked). */
  captureList: CaptureRecord[] | null = null;
  /** The idle waits the preset took out of the current tree, and the total before. */
  idleHidden = { value: 0, before: 0 };

  constructor() {
    this.state = parseLocation(location);
    this.graph = new FlameGraph(el('flame'), this.sched, {
      testid: 'flame-canvas',
      orientation: this.state.mode,
      maxHeight: () => Math.max(240, Math.floor(window.innerHeight * 0.68)),
      events: {
        onClick: (i) => void this.clickFrame(i),
        onContext: (i) => {
          const t = this.tree;
          if (t && !(t.flags[i]! & F_OTHER) && i > 0) this.openSandwich(nodeName(t, i));
        },
        onHover: (i, ev) => this.hoverFrame(this.graph, i, ev, this.tree?.total ?? 0, 'of total'),
        onLeave: () => this.tooltip.hide(),
      },
    });
    this.timeline = new Timeline(el('timeline'), this.sched, this.tooltip, { onBrush: (sel) => this.brushed(sel) });
    this.table = new TopTable(el('top-table'), this.sched, {
      onSelect: (id) => this.selectFunction(id),
      onSandwich: (id) => {
        const t = this.tree;
        if (t) this.openSandwich(t.names[id]!);
      },
    });
    this.sand = new SandwichView(el('sandwich'), this.sched, {
      onHover: (g, i, ev) => this.hoverFrame(g, i, ev, this.sand.total, 'of the function’s total'),
      onLeave: () => this.tooltip.hide(),
      onContext: (g, i) => {
        if (g.tree) this.openSandwich(nodeName(g.tree, i));
      },
      onClose: () => {
        this.state.sandwich = null;
        this.sand.clear('');
        this.writeUrl();
      },
    });
    this.noisePage = new NoisePage(el('page-noise'), this.sched, this.tooltip);
    this.latencyPage = new LatencyPage(el('page-latency'), this.sched);
    this.capturesPage = new CapturesPage(
      el('page-captures'),
      this.sched,
      (from, to) => {
        this.state = this.openState(from, to);
        this.loadAll();
      },
      (from, to) => location.pathname + toHash(this.openState(from, to)),
      (list) => this.setCaptureList(list),
    );
    this.wireControls();
    this.wirePages();
    this.buildLegend();
    this.timelineStates();
    window.addEventListener('hashchange', () => {
      const s = parseLocation(location);
      if (toHash(s) === toHash(this.state)) return;
      this.state = s;
      this.loadAll();
    });
  }

  // ---- pages, token ----

  private wirePages(): void {
    for (const b of document.querySelectorAll<HTMLButtonElement>('[data-page]')) {
      b.addEventListener('click', () => this.setPage(b.dataset.page as Page));
    }
    onAuthNeeded(() => this.showAuth(true));
    el<HTMLFormElement>('auth').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = el<HTMLInputElement>('token');
      const t = input.value.trim();
      if (!t) {
        input.focus();
        return;
      }
      setToken(t);
      input.value = '';
      this.showAuth(false);
      void this.start();
    });
    // Links cannot carry the token: with one, exports are fetched and saved from a blob.
    el('exports').addEventListener('click', (ev) => {
      const a = (ev.target as HTMLElement).closest<HTMLAnchorElement>('a[download]');
      if (!a || !getToken()) return;
      ev.preventDefault();
      this.sched.begin();
      downloadWithToken(a.href, a.download)
        .catch((e: unknown) => this.setMessage('error', sentence(e)))
        .finally(() => this.sched.end());
    });
    const diff = el<HTMLSelectElement>('diff');
    diff.addEventListener('change', () => {
      const v = diff.value;
      if (v === 'range') {
        el('diff-custom').hidden = false;
        el<HTMLInputElement>('diff-from').focus();
        return;
      }
      this.setDiff(v ? parseDiff(v) : null);
    });
    const applyDiff = (): void => {
      const f = el<HTMLInputElement>('diff-from').value.trim();
      const t = el<HTMLInputElement>('diff-to').value.trim();
      if (f && t) this.setDiff({ kind: 'range', from: f, to: t });
    };
    el('diff-apply').addEventListener('click', applyDiff);
    for (const id of ['diff-from', 'diff-to']) {
      el(id).addEventListener('keydown', (ev) => {
        if ((ev as KeyboardEvent).key === 'Enter') applyDiff();
      });
    }
  }

  private showAuth(on: boolean): void {
    this.authNeeded = on;
    el('auth').hidden = !on;
    if (on) {
      const input = el<HTMLInputElement>('token');
      if (document.activeElement !== input) input.focus();
    }
  }

  setDiff(d: DiffSpec | null): void {
    this.state.diff = d;
    this.state.focus = [];
    this.applyControls();
    this.buildLegend();
    this.writeUrl();
    void this.loadProfile();
  }

  setPage(p: Page): void {
    if (p === this.state.page) return;
    this.state.page = p;
    this.writeUrl();
    this.showPage();
  }

  /** Shows the page of the state, loading it when its data is stale. */
  private showPage(): void {
    const p = this.state.page;
    for (const b of document.querySelectorAll<HTMLButtonElement>('[data-page]')) b.setAttribute('aria-selected', String(b.dataset.page === p));
    for (const q of PAGES) el(`page-${q}`).hidden = q !== p;
    for (const e of document.querySelectorAll<HTMLElement>('[data-page-with]')) e.hidden = !e.dataset.pageWith!.split(' ').includes(p);
    document.body.classList.toggle('page-other', p !== 'profile');
    document.body.classList.toggle('no-graph', p === 'profile' && this.message !== null);
    this.capturesPage.setActive(p === 'captures');
    if (this.stale.has(p)) this.loadPage(p);
  }

  private loadPage(p: Page): void {
    this.stale.delete(p);
    const range = this.rangeParams();
    if (p === 'profile') void this.loadProfile();
    else if (p === 'noise') void this.noisePage.load(range);
    else if (p === 'latency') void this.latencyPage.load(range);
    else void this.capturesPage.load();
  }

  /** The range the pages ask for: the brushed selection, else the range. */
  rangeParams(): Params {
    const s = this.state;
    return s.sel ? { from: s.sel[0].toFixed(3), to: s.sel[1].toFixed(3) } : { from: s.from, to: s.to };
  }

  /** The sentence the page shown says, if any. */
  pageMessage(): Message {
    const p = this.state.page;
    const m = p === 'profile' ? this.message : p === 'noise' ? this.noisePage.message : p === 'latency' ? this.latencyPage.message : this.capturesPage.message;
    return m ? { ...m } : null;
  }

  /** Asks the status first: `tailprof serve` shows past captures, so without a range in the address the first
   * screen shows their whole span instead of an empty last 15 minutes. */
  async start(): Promise<void> {
    const explicit = hasExplicitRange(location);
    this.sched.begin();
    try {
      await this.loadStatus();
      const ext = this.extent();
      if (this.serving()) {
        this.serveControls();
        if (!explicit && ext) {
          this.state.from = ext[0];
          this.state.to = ext[1];
          this.state.sel = null;
        }
        if ((this.status?.captures ?? 0) >= 2 || this.state.diff?.kind === 'capture') void this.loadCaptureList();
      }
      this.loadAll();
    } finally {
      this.sched.end();
    }
  }

  /** Whether the page is served by `tailprof serve` (captures on disk, read-only). */
  serving(): boolean {
    return this.status?.mode === 'serve';
  }

  /** The span of the served captures' data as the API takes times (Unix seconds), or null. */
  extent(): [string, string] | null {
    const st = this.status;
    const a = st?.from_unix_ns ?? 0;
    const b = st?.to_unix_ns ?? 0;
    if (!(a > 0 && b > a)) return null;
    return [(Math.floor(a / 1e6) / 1e3).toFixed(3), (Math.ceil(b / 1e6) / 1e3).toFixed(3)];
  }

  /** In serve mode the range offers the captures' whole span, and the presets say they count back from now. */
  private serveControls(): void {
    const range = el<HTMLSelectElement>('range');
    if (!range.querySelector('option[value="all"]')) {
      const o = document.createElement('option');
      o.value = 'all';
      o.textContent = 'all the captures';
      range.insertBefore(o, range.firstChild);
    }
    for (const o of range.options) {
      if (o.value.startsWith('-') && !o.dataset.now) {
        o.dataset.now = '1';
        o.textContent = `${o.textContent} (before now)`;
      }
    }
  }

  /** The state that shows a span (Unix seconds) on the Profile tab: a capture's "open". */
  openState(from: number, to: number): UrlState {
    const s = cloneState(this.state);
    s.from = from.toFixed(3);
    s.to = to.toFixed(3);
    s.sel = null;
    s.focus = [];
    s.page = 'profile';
    // Comparing a capture with itself shows nothing: opening the baseline's own capture ends the diff.
    const d = s.diff;
    const base = d?.kind === 'capture' ? this.captureList?.find((c) => c.id === d.id) : undefined;
    if (base && Math.abs(captureSpan(base)[0] - from) < 0.002) s.diff = null;
    return s;
  }

  private async loadCaptureList(): Promise<void> {
    this.sched.begin();
    try {
      this.setCaptureList(await getJson<CapturesResponse>('captures', {}));
    } catch {
      // The captures page says why when it is shown; the diff simply offers no capture.
    } finally {
      this.sched.end();
    }
  }

  private setCaptureList(d: CapturesResponse): void {
    this.captureList = [...(d.captures ?? [])].sort((a, b) => a.started_unix_ns - b.started_unix_ns);
    this.updateDiffOptions();
  }

  /** The diff's capture baselines: one per capture but the one whose span is the range shown (serve mode, ≥ 2). */
  private updateDiffOptions(): void {
    const select = el<HTMLSelectElement>('diff');
    let group = select.querySelector<HTMLOptGroupElement>('optgroup[data-captures]');
    if (!group) {
      group = document.createElement('optgroup');
      group.dataset.captures = '1';
      group.label = 'a capture';
      select.insertBefore(group, select.querySelector('option[value="range"]'));
    }
    const r = this.rangeParams();
    const now = Date.now() / 1000;
    const from = resolveTime(r.from ?? '', now);
    const to = resolveTime(r.to ?? '', now);
    const list = this.captureList ?? [];
    const opts: string[] = [];
    const cur = this.state.diff?.kind === 'capture' ? this.state.diff.id : null;
    if (this.serving() && list.length >= 2) {
      for (const c of list) {
        const [a, b] = captureSpan(c);
        const shown = from !== null && to !== null && Math.abs(a - from) < 0.002 && Math.abs(b - to) < 0.002;
        if (shown && c.id !== cur) continue;
        opts.push(`<option value="capture:${esc(c.id)}" data-testid="diff-capture" title="${esc(c.reason ?? '')}">capture ${esc(c.id)} (${esc(dateTime(a))})</option>`);
      }
    }
    if (cur && !list.some((c) => c.id === cur)) opts.push(`<option value="capture:${esc(cur)}" data-testid="diff-capture">capture ${esc(cur)}</option>`);
    group.innerHTML = opts.join('');
    group.hidden = opts.length === 0;
    // Rebuilding the options unselects one of them: select the state's baseline again.
    const d = this.state.diff;
    if (d) select.value = d.kind === 'capture' ? diffText(d) : d.kind;
  }

  /** A capture's span, asking for the list when it is not known yet; null when no capture has that id. */
  private async captureSpanOf(id: string, signal: AbortSignal): Promise<[number, number] | null> {
    let c = this.captureList?.find((x) => x.id === id);
    if (!c) {
      const d = await getJson<CapturesResponse>('captures', {}, signal);
      this.setCaptureList(d);
      c = this.captureList?.find((x) => x.id === id);
    }
    return c ? captureSpan(c) : null;
  }

  // ---- URL and controls ----

  writeUrl(): void {
    writeLocation(this.state);
    this.updateExports();
  }

  applyControls(): void {
    const s = this.state;
    const view = el<HTMLSelectElement>('view');
    view.value = isView(s.view) ? s.view : '';
    const range = el<HTMLSelectElement>('range');
    const ext = this.serving() ? this.extent() : null;
    const all = ext !== null && s.from === ext[0] && s.to === ext[1];
    const preset = all || (s.to === 'now' && [...range.options].some((o) => o.value === s.from && o.value !== 'custom' && o.value !== 'all'));
    range.value = all ? 'all' : preset ? s.from : 'custom';
    el('custom-range').hidden = preset;
    this.updateRangeNote();
    el<HTMLInputElement>('from').value = s.from;
    el<HTMLInputElement>('to').value = s.to;
    const gb = el<HTMLSelectElement>('group-by');
    if (![...gb.options].some((o) => o.value === s.groupBy)) {
      const o = document.createElement('option');
      o.value = o.textContent = s.groupBy;
      gb.append(o);
    }
    gb.value = s.groupBy;
    el<HTMLInputElement>('filter').value = filtersText(s.filters);
    el('filter-error').hidden = true;
    const mn = el<HTMLSelectElement>('max-nodes');
    const mv = s.maxNodes === null ? '' : String(s.maxNodes);
    if (![...mn.options].some((o) => o.value === mv)) {
      const o = document.createElement('option');
      o.value = mv;
      o.textContent = Number(mv).toLocaleString('en-US');
      mn.append(o);
    }
    mn.value = mv;
    for (const b of document.querySelectorAll<HTMLButtonElement>('[data-mode]')) {
      b.setAttribute('aria-pressed', String(b.dataset.mode === s.mode));
    }
    if (this.search.value !== s.search) this.search.value = s.search;
    this.updateDiffOptions();
    const diff = el<HTMLSelectElement>('diff');
    diff.value = s.diff ? (s.diff.kind === 'capture' ? diffText(s.diff) : s.diff.kind) : '';
    el('diff-custom').hidden = s.diff?.kind !== 'range';
    if (s.diff?.kind === 'range') {
      el<HTMLInputElement>('diff-from').value = s.diff.from;
      el<HTMLInputElement>('diff-to').value = s.diff.to;
    }
    document.body.classList.toggle('diff-mode', s.diff !== null);
    el<HTMLInputElement>('idle').checked = s.idle;
    el('idle-control').hidden = !this.byState();
    this.updateIdleNote();
  }

  /** Serve mode: a relative range counts back from now, and captures are in the past; say so. */
  private updateRangeNote(): void {
    const note = el('range-note');
    const ext = this.serving() ? this.extent() : null;
    const relative = isRelative(this.state.from) || isRelative(this.state.to);
    note.hidden = !(ext && relative);
    note.textContent = ext && relative ? `counts back from now; the captures span ${dateTime(Number(ext[0]))} – ${dateTime(Number(ext[1]))}` : '';
  }

  private updateIdleNote(): void {
    const note = el('idle-note');
    const h = this.idleHidden;
    const on = this.state.idle && this.byState() && this.tree !== null;
    note.hidden = !on;
    if (!on) {
      note.textContent = '';
      return;
    }
    const unit = this.unit();
    note.textContent = this.state.hide.includes('sleeping')
      ? 'hidden idle waits: none (the sleeping state is hidden)'
      : `hidden idle waits: ${formatValue(h.value, unit)} (${formatPercent(h.before > 0 ? h.value / h.before : 0)} of total)`;
  }

  private wireControls(): void {
    el<HTMLFormElement>('controls').addEventListener('submit', (ev) => ev.preventDefault());
    el<HTMLSelectElement>('view').addEventListener('change', (ev) => {
      this.state.view = (ev.target as HTMLSelectElement).value;
      this.state.focus = [];
      el('idle-control').hidden = !this.byState();
      this.buildLegend();
      this.timelineStates();
      this.writeUrl();
      void this.loadProfile();
    });
    el<HTMLSelectElement>('range').addEventListener('change', (ev) => {
      const v = (ev.target as HTMLSelectElement).value;
      if (v === 'custom') {
        el('custom-range').hidden = false;
        el<HTMLInputElement>('from').focus();
        return;
      }
      const ext = this.extent();
      if (v === 'all' && ext) [this.state.from, this.state.to] = ext;
      else {
        this.state.from = v;
        this.state.to = 'now';
      }
      this.state.sel = null;
      this.loadAll();
    });
    const applyRange = (): void => {
      this.state.from = el<HTMLInputElement>('from').value.trim() || DEFAULT_STATE.from;
      this.state.to = el<HTMLInputElement>('to').value.trim() || 'now';
      this.state.sel = null;
      this.loadAll();
    };
    el('apply-range').addEventListener('click', applyRange);
    for (const id of ['from', 'to']) {
      el(id).addEventListener('keydown', (ev) => {
        if ((ev as KeyboardEvent).key === 'Enter') applyRange();
      });
    }
    el<HTMLSelectElement>('group-by').addEventListener('change', (ev) => {
      this.state.groupBy = (ev.target as HTMLSelectElement).value;
      this.state.focus = [];
      this.writeUrl();
      void this.loadProfile();
    });
    const filter = el<HTMLInputElement>('filter');
    const applyFilter = (): void => {
      const r = parseFilters(filter.value);
      const err = el('filter-error');
      if ('error' in r) {
        err.textContent = r.error;
        err.hidden = false;
        filter.classList.add('invalid');
        return;
      }
      err.hidden = true;
      filter.classList.remove('invalid');
      if (filtersText(r.filters) === filtersText(this.state.filters)) return;
      this.state.filters = r.filters;
      this.writeUrl();
      void this.loadProfile();
    };
    filter.addEventListener('change', applyFilter);
    filter.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') applyFilter();
    });
    el<HTMLSelectElement>('max-nodes').addEventListener('change', (ev) => {
      const v = (ev.target as HTMLSelectElement).value;
      this.state.maxNodes = v ? Number(v) : null;
      this.writeUrl();
      void this.loadProfile();
    });
    el('refresh').addEventListener('click', () => this.loadAll());
    for (const b of document.querySelectorAll<HTMLButtonElement>('[data-mode]')) {
      b.addEventListener('click', () => this.setMode(b.dataset.mode as Mode));
    }
    el('reset').addEventListener('click', () => this.resetZoom());
    el<HTMLInputElement>('idle').addEventListener('change', (ev) => this.setIdle((ev.target as HTMLInputElement).checked));
    el('help-button').addEventListener('click', () => this.toggleHelp());
    el('help').addEventListener('click', (ev) => {
      const t = ev.target as HTMLElement;
      if (t === el('help') || t.closest('[data-close]')) this.toggleHelp(false);
    });
    el('export-png').addEventListener('click', () => {
      const a = document.createElement('a');
      a.href = this.graph.toPng();
      a.download = `tailprof-${this.state.view}.png`;
      document.body.append(a);
      a.click();
      a.remove();
    });
    el('breadcrumbs').addEventListener('click', (ev) => {
      const b = (ev.target as HTMLElement).closest<HTMLElement>('[data-node]');
      if (b) this.setZoom(Number(b.dataset.node));
    });

    // Search.
    this.search.addEventListener('input', () => {
      if (this.searchTimer) clearTimeout(this.searchTimer);
      else this.sched.begin();
      this.searchTimer = window.setTimeout(() => {
        this.searchTimer = 0;
        this.state.search = this.search.value;
        this.applySearch();
        this.writeUrl();
        this.sched.end();
      }, 120);
    });
    this.search.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        this.flushSearch();
        this.cycle(ev.shiftKey ? -1 : 1);
      }
    });
    document.addEventListener('keydown', (ev) => {
      const a = actionOf(ev);
      if (!a) return;
      const t = ev.target;
      const typing = t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
      if (a === 'escape' && typing && t !== this.search) return;
      if (isGraphAction(a) && (this.state.page !== 'profile' || this.helpOpen())) return;
      if (this.key(a)) ev.preventDefault();
    });
  }

  /** Does what a key stands for (keys.ts); false when it did nothing (the browser then keeps the key). */
  key(a: KeyAction): boolean {
    const g = this.graph;
    const t = this.tree;
    switch (a) {
      case 'help':
        this.toggleHelp();
        return true;
      case 'escape':
        this.tooltip.hide();
        if (this.helpOpen()) this.toggleHelp(false);
        else if (this.search.value) {
          this.search.value = '';
          this.flushSearch(true);
        } else {
          this.resetZoom();
          if (document.activeElement === this.search) this.search.blur();
        }
        return true;
      case 'search':
        this.search.focus();
        this.search.select();
        return true;
      case 'next-match':
      case 'prev-match':
        this.flushSearch();
        if (!this.searchRes?.top.length) return false;
        this.cycle(a === 'next-match' ? 1 : -1);
        return true;
      case 'flip':
        this.setMode(this.state.mode === 'flame' ? 'icicle' : 'flame');
        return true;
      case 'reset-zoom':
        this.resetZoom();
        return true;
      default:
        break;
    }
    if (!t) return false;
    const z = g.zoom;
    switch (a) {
      case 'zoom-in':
        return g.zoomBy(0.5);
      case 'zoom-out': {
        if (g.zoomBy(2)) return true;
        const p = t.parent[z]!;
        if (p < 0) return false;
        // Out to the parent, keeping the frame in the middle of a window twice its width.
        const w = t.value[z]! * 2;
        this.setZoom(p);
        g.setWindow(t.x[z]! + t.value[z]! / 2 - w / 2, w);
        return true;
      }
      case 'pan-left':
      case 'pan-right': {
        const dir = a === 'pan-left' ? -1 : 1;
        if (g.pan(dir * 0.25)) return true;
        const p = t.parent[z]!;
        if (p < 0) return false;
        const sibs = childrenOf(t, p).filter((i) => !(t.flags[i]! & F_OTHER) && t.value[i]! > 0);
        const k = sibs.indexOf(z) + dir;
        if (k < 0 || k >= sibs.length) return false;
        this.setZoom(sibs[k]!);
        return true;
      }
      case 'up':
      case 'down': {
        const towardChildren = (a === 'up') === (this.state.mode === 'flame');
        if (!towardChildren) {
          const p = t.parent[z]!;
          if (p < 0) return false;
          this.setZoom(p);
          return true;
        }
        const kids = childrenOf(t, z).filter((i) => t.value[i]! > 0);
        if (!kids.length) return false;
        const real = kids.filter((i) => !(t.flags[i]! & F_OTHER));
        const pick = (real.length ? real : kids).reduce((b, i) => (t.value[i]! > t.value[b]! ? i : b));
        void this.clickFrame(pick);
        return true;
      }
      default:
        return false;
    }
  }

  setMode(m: Mode): void {
    this.state.mode = m;
    this.graph.setOrientation(m);
    this.applyControls();
    this.writeUrl();
  }

  helpOpen(): boolean {
    return !el('help').hidden;
  }

  toggleHelp(on = !this.helpOpen()): void {
    const h = el('help');
    if (on && !h.innerHTML) h.innerHTML = helpHtml();
    h.hidden = !on;
  }

  setIdle(on: boolean): void {
    this.state.idle = on;
    this.writeUrl();
    if (this.raw && this.tree) {
      this.sched.begin();
      this.rebuild();
      this.sched.end();
    }
    this.applyControls();
  }

  private flushSearch(force = false): void {
    if (!this.searchTimer && !force) return;
    if (this.searchTimer) {
      clearTimeout(this.searchTimer);
      this.searchTimer = 0;
      this.sched.end();
    }
    this.state.search = this.search.value;
    this.applySearch();
    this.writeUrl();
  }

  private buildLegend(): void {
    const legend = el('legend');
    const byState = this.state.view !== 'cpu';
    const hidden = new Set(this.state.hide);
    const parts: string[] = [];
    for (const s of viewStates(this.state.view)) {
      parts.push(
        `<button type="button" class="legend-item" data-state="${s}" data-testid="legend-${s}" aria-pressed="${!hidden.has(s)}" title="${byState ? 'Show or hide this state in the graph and the timeline' : 'Show or hide this state in the timeline'}">` +
          `<span class="swatch" style="background:${css(STATE_RGB[s])}"></span>${esc(STATE_LABEL[s])}</button>`,
      );
    }
    if (!byState) {
      parts.push(
        `<span class="legend-note"><span class="swatch" style="background:${css(USER_SAMPLE)}"></span>user` +
          `<span class="swatch" style="background:${css(KERNEL_SAMPLE)}"></span>kernel</span>`,
      );
    }
    legend.innerHTML = parts.join('');
    const dl = el('diff-legend');
    dl.hidden = !this.state.diff;
    dl.innerHTML = this.state.diff
      ? `<span class="legend-note" title="Each frame's share of its range's total, now minus in the baseline">less <span class="diff-gradient" style="background:${diffGradientCss()}"></span> more</span>` +
        `<span class="legend-note" data-testid="diff-legend-new"><span class="swatch" style="background:${css(DIFF_NEW)}"></span>new</span>` +
        `<span class="legend-note" data-testid="diff-legend-gone"><span class="swatch" style="background:${css(DIFF_GONE)}"></span>gone</span>`
      : '';
    for (const b of legend.querySelectorAll<HTMLButtonElement>('[data-state]')) {
      b.addEventListener('click', () => this.toggleState(b.dataset.state as StateName));
    }
  }

  private timelineStates(): void {
    this.timeline.setStates(viewStates(this.state.view), new Set(this.state.hide));
  }

  private toggleState(s: StateName): void {
    const hide = new Set(this.state.hide);
    if (hide.has(s)) hide.delete(s);
    else hide.add(s);
    this.state.hide = STATES.filter((x) => hide.has(x));
    this.buildLegend();
    this.timelineStates();
    this.writeUrl();
    if (this.state.view !== 'cpu' && this.raw && this.tree) {
      this.sched.begin();
      this.rebuild();
      this.sched.end();
    }
  }

  // ---- requests ----

  loadAll(): void {
    this.applyControls();
    this.buildLegend();
    this.timelineStates();
    this.writeUrl();
    void this.loadTimeline();
    for (const p of PAGES) this.stale.add(p);
    this.showPage();
  }

  /** The range or the selection changed: every page's data is stale, the one shown loads again. */
  private rangeChanged(): void {
    for (const p of PAGES) this.stale.add(p);
    this.loadPage(this.state.page);
  }

  private async loadStatus(): Promise<void> {
    const out = el('agent-status');
    out.title = '';
    try {
      const s = await getJson<StatusResponse>('status', {});
      this.status = s;
      if (s.mode === 'serve') {
        const n = (k: number | undefined, what: string): string => (k === undefined ? '' : `${k} ${what}${k === 1 ? '' : 's'}`);
        const skipped = s.skipped ?? [];
        const bits = [`serving ${s.dir ?? 'captures'}`, n(s.captures, 'capture'), n(s.segments, 'segment'), skipped.length ? `${skipped.length} skipped` : ''];
        out.textContent = bits.filter(Boolean).join(' · ');
        out.title = skipped.length ? `Not read:\n${skipped.map((x) => `${x.path}: ${x.reason}`).join('\n')}` : 'tailprof serve: captures on disk, read-only';
      } else {
        const bits = [s.tier ? `${s.tier} tier` : '', s.window_s ? `${s.window_s} s windows` : '', s.ready === false ? 'starting' : ''];
        out.textContent = bits.filter(Boolean).join(' · ');
      }
      document.body.classList.toggle('serve-mode', s.mode === 'serve');
    } catch {
      this.status = null;
      out.textContent = '';
    }
  }

  /** The profile's parameters: `absolute` pins the range to what the last answer resolved. */
  profileParams(absolute = false): Params {
    const s = this.state;
    const p: Params = { view: s.view };
    if (absolute && this.profile) {
      p.from = nsToParam(this.profile.from_unix_ns);
      p.to = nsToParam(this.profile.to_unix_ns);
    } else if (s.sel) {
      p.from = s.sel[0].toFixed(3);
      p.to = s.sel[1].toFixed(3);
    } else {
      p.from = s.from;
      p.to = s.to;
    }
    if (s.groupBy && s.groupBy !== 'comm') p.group_by = s.groupBy;
    for (const k of FILTER_KEYS) if (s.filters[k]) p[k] = s.filters[k];
    if (s.maxNodes !== null) p.max_nodes = String(s.maxNodes);
    return p;
  }

  private async loadTimeline(): Promise<void> {
    this.timelineCtl?.abort();
    const ctl = new AbortController();
    this.timelineCtl = ctl;
    const now = Date.now() / 1000;
    const from = resolveTime(this.state.from, now);
    const to = resolveTime(this.state.to, now);
    const params: Params = { from: this.state.from, to: this.state.to };
    if (from !== null && to !== null && to > from) params.step = stepFor(to - from);
    this.sched.begin();
    try {
      const tl = await getJson<TimelineResponse>('timeline', params, ctl.signal);
      this.lastTimeline = tl;
      this.timeline.setData(tl);
      this.timeline.setBrush(this.state.sel);
      this.noisePage.setTimeline(tl);
    } catch (e) {
      if (isAbort(e)) return;
      this.lastTimeline = null;
      this.timeline.setData(null, sentence(e));
      this.noisePage.setTimeline(null);
    } finally {
      this.sched.end();
    }
  }

  async loadProfile(): Promise<void> {
    this.profileCtl?.abort();
    const ctl = new AbortController();
    this.profileCtl = ctl;
    const gen = ++this.gen;
    this.fetched.clear();
    this.stale.delete('profile');
    this.baseProfile = null;
    this.diffSources = null;
    if (!isView(this.state.view)) {
      this.profile = null;
      this.clearGraph();
      this.setMessage('error', `the view '${this.state.view}' in the address is not one of cpu, offcpu or wall`);
      return;
    }
    this.sched.begin();
    try {
      if (this.state.diff) {
        await this.loadDiff(this.state.diff, gen, ctl.signal);
        return;
      }
      const resp = await getJson<ProfileResponse>('profile', this.profileParams(), ctl.signal);
      if (gen !== this.gen) return;
      this.graph.markLoad(timings.profile?.body ?? performance.now());
      this.profile = resp;
      this.raw = resp.root;
      if (!resp.windows || !(resp.root.value > 0)) {
        this.clearGraph();
        const filtered = FILTER_KEYS.some((k) => this.state.filters[k]);
        this.setMessage('empty', filtered ? 'no data in this range for these filters' : 'no data in this range');
        this.updateSummary();
        return;
      }
      this.setMessage(null);
      this.rebuild();
      await this.zoomToPath(this.state.focus, gen);
    } catch (e) {
      if (isAbort(e) || gen !== this.gen) return;
      this.profile = null;
      this.clearGraph();
      this.setMessage('error', sentence(e));
    } finally {
      this.sched.end();
    }
  }

  /** The diff view: the range and its baseline, merged. */
  private async loadDiff(spec: DiffSpec, gen: number, signal: AbortSignal): Promise<void> {
    const cur = this.profileParams();
    let base: { from: string; to: string } | { error: string };
    if (spec.kind === 'capture') {
      const span = await this.captureSpanOf(spec.id, signal);
      if (gen !== this.gen) return;
      base = span ? { from: span[0].toFixed(3), to: span[1].toFixed(3) } : { error: `there is no capture ${spec.id} to compare with` };
    } else base = baselineRange(spec, cur.from!, cur.to!);
    if ('error' in base) {
      this.profile = null;
      this.clearGraph();
      this.setMessage('error', base.error);
      return;
    }
    const [a, b] = await Promise.all([
      getJson<ProfileResponse>('profile', cur, signal),
      getJson<ProfileResponse>('profile', { ...cur, from: base.from, to: base.to }, signal),
    ]);
    if (gen !== this.gen) return;
    this.graph.markLoad(performance.now());
    this.profile = a;
    this.baseProfile = b;
    const hasA = a.windows > 0 && a.root.value > 0;
    const hasB = b.windows > 0 && b.root.value > 0;
    if (!hasA && !hasB) {
      this.clearGraph();
      this.setMessage('empty', 'no data in this range nor in the baseline to compare it with');
      this.updateSummary();
      return;
    }
    this.diffSources = { after: a.root, before: b.root };
    this.raw = a.root;
    this.setMessage(null);
    this.rebuild();
    const t = this.tree;
    if (t) this.setZoom(findPath(t, this.state.focus).node);
  }

  /** Asks for the full detail under a path and grafts it into the tree; false when nothing changed. */
  private async fetchDetail(path: string[], gen: number): Promise<boolean> {
    const key = path.join(';');
    this.fetched.add(key);
    const ctl = this.profileCtl;
    this.sched.begin();
    try {
      const params = { ...this.profileParams(true), focus: key };
      const resp = await getJson<ProfileResponse>('profile', params, ctl?.signal);
      if (gen !== this.gen || !this.raw) return false;
      if (!graft(this.raw, path, resp.root)) return false;
      this.rebuild();
      return true;
    } catch (e) {
      if (!isAbort(e) && gen === this.gen) this.setMessage('error', sentence(e));
      return false;
    } finally {
      this.sched.end();
    }
  }

  // ---- the tree ----

  private clearGraph(): void {
    this.tree = null;
    this.raw = null;
    this.diffArr = null;
    this.diffSources = null;
    this.updateDiffTable();
    this.rows = [];
    this.searchRes = null;
    this.graph.setTree(null, null);
    this.table.setData([], 0, this.unit());
    this.sand.clear('');
    this.updateSearchInfo();
    this.updateSummary();
    this.updateBreadcrumbs();
    this.idleHidden = { value: 0, before: 0 };
    this.updateIdleNote();
  }

  unit(): string {
    return this.profile?.unit ?? 'samples';
  }

  private byState(): boolean {
    return this.state.view !== 'cpu';
  }

  /** Re-derives everything from the source tree (after a load, a graft or a state toggle). */
  rebuild(): void {
    const raw = this.raw;
    if (!raw) return;
    const t0 = performance.now();
    const dims = this.state.groupBy.split(',').filter(Boolean).length || 1;
    const byState = this.byState();
    const hidden = byState ? new Set(this.state.hide) : new Set<StateName>();
    let tree: FlatTree;
    const ds = this.diffSources;
    // The idle-wait preset (idle.ts) cuts sleeping stacks first; hidden states then leave what remains.
    const idleDepth = this.state.idle && byState && !hidden.has('sleeping') ? dims + 1 : 0;
    const idle = withoutIdle(ds ? ds.after : raw, idleDepth);
    if (ds) {
      const stateDepth = byState ? dims + 1 : 0;
      const after = withoutStates(idle.root, hidden, stateDepth);
      const before = withoutStates(withoutIdle(ds.before, idleDepth).root, hidden, stateDepth);
      this.diffTotals = { after: after.value, before: before.value };
      const merged: DiffNode = mergeDiff(after, before);
      tree = flatten(merged, { stateDepth, groupDepth: dims, hidden: new Set() });
      this.diffArr = diffArrays(merged, tree.n);
      this.tree = tree;
      this.graph.setTree(tree, diffColours(tree, this.diffArr.before, this.diffArr.after));
    } else {
      tree = flatten(idle.root, { stateDepth: byState ? dims + 1 : 0, groupDepth: dims, hidden });
      this.diffArr = null;
      this.tree = tree;
      this.graph.setTree(tree, frameColours(tree, byState));
    }
    this.idleHidden = { value: idle.hidden, before: (ds ? this.diffTotals.after : tree.total) + idle.hidden };
    this.updateIdleNote();
    this.rows = topFunctions(tree);
    this.table.setData(this.rows, tree.total, this.unit());
    this.applySearch(false);
    const markedId = this.marked === null ? undefined : tree.nameIndex.get(this.marked);
    this.graph.setMarked(markedId ?? -1);
    this.table.setSelected(markedId ?? -1);
    this.graph.setZoom(findPath(tree, this.state.focus).node);
    this.refreshSandwich();
    this.updateDiffTable();
    this.rebuildMs = performance.now() - t0;
    this.updateSummary();
    this.updateBreadcrumbs();
    this.updateExports();
  }

  setZoom(i: number): void {
    const t = this.tree;
    if (!t) return;
    this.graph.setZoom(i);
    this.state.focus = pathOf(t, this.graph.zoom);
    this.writeUrl();
    this.updateBreadcrumbs();
  }

  resetZoom(): void {
    this.matchPos = -1;
    this.updateSearchInfo();
    this.setZoom(0);
  }

  /** Zooms to a path, asking the server for what its node budget folded on the way. */
  private async zoomToPath(path: string[], gen: number): Promise<void> {
    for (let tries = 0; tries <= path.length; tries++) {
      const t = this.tree;
      if (!t || gen !== this.gen) return;
      const { node, matched } = findPath(t, path);
      if (matched === path.length) break;
      const at = pathOf(t, node);
      if (node === 0 || !hasFoldedChild(t, node) || this.fetched.has(at.join(';'))) break;
      if (!(await this.fetchDetail(at, gen))) break;
    }
    const t = this.tree;
    if (t && gen === this.gen) this.setZoom(findPath(t, path).node);
  }

  private async clickFrame(i: number): Promise<void> {
    const t = this.tree;
    if (!t) return;
    if (this.diffArr) {
      // The diff merges two answers: nothing to graft, the frame itself is the zoom.
      this.setZoom(i);
      return;
    }
    const folded = (t.flags[i]! & F_OTHER) !== 0;
    const target = folded ? t.parent[i]! : i;
    const path = pathOf(t, target);
    const trimmed = folded || (t.flags[target]! & F_TRIMMED) !== 0;
    if (trimmed && !this.fetched.has(path.join(';'))) {
      if (target === 0) {
        if (folded) this.growBudget();
        else this.setZoom(0);
        return;
      }
      const gen = this.gen;
      await this.fetchDetail(path, gen);
      if (gen !== this.gen || !this.tree) return;
    }
    this.setZoom(findPath(this.tree!, path).node);
  }

  /** The root's [other]: only a larger node budget shows more of it. */
  private growBudget(): void {
    const cur = this.state.maxNodes ?? 2000;
    if (cur >= 100000) return;
    this.state.maxNodes = Math.min(100000, cur * 5);
    this.applyControls();
    this.writeUrl();
    void this.loadProfile();
  }

  private hoverFrame(g: FlameGraph, i: number, ev: MouseEvent, total: number, ofTotal: string): void {
    const t = g.tree;
    if (!t || i < 0) {
      this.tooltip.hide();
      return;
    }
    const unit = this.unit();
    const v = t.value[i]!;
    const p = t.parent[i]!;
    const rows: string[] = [`<div class="tt-title">${esc(nodeName(t, i))}</div>`];
    const da = g === this.graph ? this.diffArr : null;
    if (da) {
      const before = da.before[i]!;
      const after = da.after[i]!;
      const kind = kindOf(before, after);
      rows.push(`<div>now: ${formatPercent(after)} of the total</div>`);
      rows.push(`<div>baseline: ${formatPercent(before)} of its total</div>`);
      rows.push(`<div><span class="swatch" style="background:${this.graph.fillOf(i) ?? ''}"></span>${kind === 'new' ? 'new: absent from the baseline' : kind === 'gone' ? 'gone: absent now' : `change: ${formatPoints(after - before)}`}</div>`);
      const st = nodeState(t, i);
      if (st) rows.push(`<div class="tt-dim">state: ${esc(st)}</div>`);
      rows.push('<div class="tt-hint">click to zoom</div>');
      this.tooltip.show(rows.join(''), ev.clientX, ev.clientY);
      return;
    }
    rows.push(`<div>${esc(formatValue(v, unit))}</div>`);
    rows.push(`<div>${formatPercent(total > 0 ? v / total : 0)} ${ofTotal}</div>`);
    if (p >= 0) rows.push(`<div>${formatPercent(t.value[p]! > 0 ? v / t.value[p]! : 0)} of its parent (${esc(nodeName(t, p))})</div>`);
    const self = t.self[i]!;
    if (self > 0 && !(t.flags[i]! & F_OTHER)) rows.push(`<div class="tt-dim">self: ${esc(formatValue(self, unit))}</div>`);
    const st = nodeState(t, i);
    if (st) rows.push(`<div><span class="swatch" style="background:${css(STATE_RGB[st])}"></span>state: ${esc(st)}</div>`);
    if (t.flags[i]! & F_OTHER) rows.push('<div class="tt-hint">frames folded by the node budget: click to load them</div>');
    else if (g === this.graph) rows.push('<div class="tt-hint">click to zoom · right-click for the sandwich</div>');
    else rows.push('<div class="tt-hint">click to zoom · right-click for its own sandwich</div>');
    this.tooltip.show(rows.join(''), ev.clientX, ev.clientY);
  }

  // ---- search ----

  applySearch(resetPos = true): void {
    const q = this.state.search;
    let err = false;
    this.searchRe = null;
    if (q) {
      try {
        this.searchRe = new RegExp(q);
      } catch {
        err = true;
      }
    }
    this.search.classList.toggle('invalid', err);
    this.searchRes = this.tree && this.searchRe ? search(this.tree, this.searchRe) : null;
    this.graph.setHighlight(this.searchRes ? this.searchRes.nodeMatch : null);
    this.table.setFilter(this.searchRe);
    if (resetPos) this.matchPos = -1;
    this.updateSearchInfo(err);
  }

  private updateSearchInfo(invalid = false): void {
    const share = el('search-share');
    const pos = el('search-pos');
    const r = this.searchRes;
    if (invalid) share.textContent = 'not a regular expression';
    else if (r) share.textContent = `matches: ${formatPercent(r.share)} of total`;
    else share.textContent = '';
    share.title = r ? formatValue(r.matchedValue, this.unit()) : '';
    pos.textContent = r && r.top.length ? (this.matchPos >= 0 ? `${this.matchPos + 1}/${r.top.length}` : `${r.top.length} found, Enter to visit`) : '';
  }

  private cycle(dir: number): void {
    const r = this.searchRes;
    if (!r || !r.top.length) return;
    const n = r.top.length;
    this.matchPos = this.matchPos < 0 ? (dir > 0 ? 0 : n - 1) : (this.matchPos + dir + n) % n;
    this.setZoom(r.top[this.matchPos]!);
    this.updateSearchInfo();
  }

  // ---- table, sandwich ----

  private selectFunction(id: number): void {
    const t = this.tree;
    if (!t) return;
    const name = t.names[id]!;
    if (this.marked === name) {
      this.marked = null;
      this.graph.setMarked(-1);
      this.table.setSelected(-1);
      return;
    }
    this.marked = name;
    this.graph.setMarked(id);
    this.table.setSelected(id);
    // Zoom to the closest common ancestor of its frames, so all of them are in view.
    let lca = -1;
    for (let i = 1; i < t.n; i++) {
      if (t.nameId[i] !== id || t.flags[i]! & F_OTHER) continue;
      if (lca < 0) lca = i;
      else while (lca > 0 && !(lca <= i && i < t.end[lca]!)) lca = t.parent[lca]!;
    }
    if (lca >= 0) this.setZoom(lca);
  }

  openSandwich(name: string): void {
    this.state.sandwich = name;
    this.writeUrl();
    this.refreshSandwich();
    this.sand.root.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  }

  private refreshSandwich(): void {
    const t = this.tree;
    const name = this.state.sandwich;
    if (!name || !t) {
      this.sand.clear('');
      return;
    }
    this.sand.show(t, name, this.byState(), this.unit());
  }

  // ---- summary bits ----

  setMessage(kind: 'error' | 'empty' | null, text = ''): void {
    this.message = kind ? { kind, text } : null;
    const err = el('error');
    const empty = el('empty');
    err.hidden = kind !== 'error';
    err.textContent = kind === 'error' ? text : '';
    empty.hidden = kind !== 'empty';
    empty.textContent = kind === 'empty' ? text : '';
    document.body.classList.toggle('no-graph', kind !== null);
  }

  /** Every merged frame but the root, by how much its share changed, largest first. */
  diffChanges(): Array<{ node: number; name: string; path: string[]; before: number; after: number; delta: number; kind: DiffKind }> {
    const t = this.tree;
    const d = this.diffArr;
    if (!t || !d) return [];
    const out: Array<{ node: number; name: string; path: string[]; before: number; after: number; delta: number; kind: DiffKind }> = [];
    for (let i = 1; i < t.n; i++) {
      const before = d.before[i]!;
      const after = d.after[i]!;
      out.push({ node: i, name: nodeName(t, i), path: [], before, after, delta: after - before, kind: kindOf(before, after) });
    }
    out.sort((a, b) => Math.abs(b.delta) - Math.abs(a.delta) || b.after - a.after);
    for (const r of out) r.path = pathOf(t, r.node);
    return out;
  }

  private updateDiffTable(): void {
    const box = el('diff-table');
    const t = this.tree;
    if (!this.diffArr || !t) {
      box.hidden = true;
      box.innerHTML = '';
      return;
    }
    box.hidden = false;
    // Per function (frames of one name summed over their outermost occurrences would double count recursion;
    // the merged frames themselves are what the colours show).
    const rows = this.diffChanges()
      .filter((r) => !(t.flags[r.node]! & (F_OTHER | F_ROOT)))
      .slice(0, 40)
      .map((r) => {
        const cls = r.delta > 0 ? 'up' : r.delta < 0 ? 'down' : '';
        const label = r.kind === 'new' ? 'new' : r.kind === 'gone' ? 'gone' : formatPoints(r.delta);
        return (
          `<tr data-testid="diff-row" data-node="${r.node}"><td class="fn" title="${esc(r.path.join(' › '))}"><span class="swatch" style="background:${this.graph.fillOf(r.node) ?? ''}"></span><span class="fn-name">${esc(r.name)}</span></td>` +
          `<td class="num">${formatPercent(r.before)}</td><td class="num">${formatPercent(r.after)}</td><td class="num ${cls}">${esc(label)}</td></tr>`
        );
      })
      .join('');
    box.innerHTML =
      '<div class="panel-head"><h2>Largest changes</h2><span class="panel-note">share of each total, baseline → now; click a row to zoom to the frame</span></div>' +
      '<div class="table-wrap"><table class="top"><thead><tr><th>frame</th><th class="num">baseline</th><th class="num">now</th><th class="num">change</th></tr></thead>' +
      `<tbody>${rows || '<tr><td colspan="4" class="none">nothing changed</td></tr>'}</tbody></table></div>`;
    box.querySelectorAll<HTMLElement>('tr[data-node]').forEach((tr) => tr.addEventListener('click', () => this.setZoom(Number(tr.dataset.node))));
  }

  private updateSummary(): void {
    const total = el('total');
    const covered = el('covered');
    const p = this.profile;
    const t = this.tree;
    if (!p) {
      total.textContent = '';
      covered.textContent = '';
      return;
    }
    const bp = this.baseProfile;
    if (this.state.diff && bp) {
      const dt = this.diffArr ? this.diffTotals : { after: p.root.value, before: bp.root.value };
      total.textContent = `now: ${formatValue(dt.after, p.unit)} · baseline: ${formatValue(dt.before, bp.unit)}`;
      total.dataset.value = String(dt.after);
    } else {
      total.textContent = t ? `total: ${formatValue(t.total, p.unit)}` : '';
      total.dataset.value = t ? String(t.total) : '0';
    }
    const bits: string[] = [];
    if (this.state.diff && bp) {
      const cap = this.state.diff.kind === 'capture' ? `capture ${this.state.diff.id}, ` : '';
      bits.push(`compared with ${cap}${dateTime(bp.from_unix_ns / 1e9)} – ${clock(bp.to_unix_ns / 1e9)} (${bp.windows} window${bp.windows === 1 ? '' : 's'}${bp.windows ? '' : ': every frame is new'})`);
    }
    bits.push(`${p.windows} window${p.windows === 1 ? '' : 's'}`);
    if (p.covered_to_unix_ns > p.covered_from_unix_ns) {
      bits.push(`covering ${dateTime(p.covered_from_unix_ns / 1e9)} – ${clock(p.covered_to_unix_ns / 1e9)}`);
    }
    if (this.state.sel) bits.push(`selected ${clock(this.state.sel[0])} – ${clock(this.state.sel[1])} (double-click the timeline to clear)`);
    const hidden = this.byState() ? this.state.hide : [];
    if (hidden.length) bits.push(`hidden: ${hidden.join(', ')}`);
    covered.textContent = bits.join(' · ');
  }

  private updateBreadcrumbs(): void {
    const nav = el('breadcrumbs');
    const t = this.tree;
    if (!t) {
      nav.innerHTML = '';
      return;
    }
    const chain = ancestors(t, this.graph.zoom);
    const items: Array<number | null> = chain.length > 14 ? [...chain.slice(0, 3), null, ...chain.slice(-9)] : chain;
    const html: string[] = [];
    items.forEach((i, k) => {
      if (k > 0) html.push('<span class="sep">›</span>');
      if (i === null) html.push('<span class="gap">…</span>');
      else if (i === this.graph.zoom) {
        const share = t.total > 0 ? t.value[i]! / t.total : 0;
        html.push(`<span class="crumb current" data-testid="crumb-current" aria-current="true">${esc(nodeName(t, i))} <small>${formatPercent(share)}</small></span>`);
      } else html.push(`<button type="button" class="crumb" data-testid="crumb" data-node="${i}">${esc(nodeName(t, i))}</button>`);
    });
    nav.innerHTML = html.join('');
  }

  updateExports(): void {
    const view = isView(this.state.view) ? this.state.view : 'cpu';
    const params: Params = { ...this.profileParams(this.profile !== null && this.tree !== null && !this.state.sel) };
    params.view = view;
    if (this.state.focus.length) params.focus = this.state.focus.join(';');
    for (const e of EXPORTS) {
      const a = el<HTMLAnchorElement>(e.id);
      const q: Params = { ...params, format: e.format };
      if (e.format === 'svg' || e.format === 'pprof' || e.format === 'folded') delete q.max_nodes;
      a.href = apiUrl('profile', q);
      a.download = `tailprof-${view}.${e.ext}`;
    }
  }

  private brushed(sel: [number, number] | null): void {
    if (sel) {
      const r = this.timeline.range();
      if (r && (isRelative(this.state.from) || isRelative(this.state.to))) {
        // Pin the range, so the link reproduces this very selection.
        this.state.from = r[0].toFixed(3);
        this.state.to = r[1].toFixed(3);
        this.applyControls();
      }
    }
    this.state.sel = sel;
    this.writeUrl();
    this.rangeChanged();
  }
}

// ---- test hooks ----

export interface FrameRectOut {
  x: number;
  y: number;
  width: number;
  height: number;
  value: number;
  depth: number;
  path: string[];
  /** A frame folding what the server's node budget left out (not the `[other]` thread state). */
  folded: boolean;
}

export interface TailprofHooks {
  readonly ready: boolean;
  readonly readyPromise: Promise<void>;
  whenReady(): Promise<void>;
  readonly renders: number;
  total(): number | null;
  unit(): string | null;
  focused(): { name: string; path: string[]; value: number; share: number } | null;
  frameRects(name: string, graph?: 'flame' | 'callers' | 'callees' | 'noise'): FrameRectOut[];
  searchShare(): number | null;
  matches(): { frames: number; outermost: number; value: number } | null;
  state(): UrlState;
  message(): Message;
  tableRows(): Array<{ name: string; self: number; total: number }>;
  sandwich(): { name: string; total: number } | null;
  renderStats(): { renderMs: number; rebuildMs: number; drawn: number; nodes: number; renderedAt: number };
  /** The page shown: profile, noise, latency or captures. */
  page(): Page;
  /** The diff view: its baseline (Unix seconds as the agent resolved them) and every merged frame by |change|. */
  diff(): {
    spec: string;
    current: { from: number; to: number };
    baseline: { from: number; to: number };
    changed: Array<{ name: string; path: string[]; before: number; after: number; delta: number; kind: DiffKind }>;
  } | null;
  /** The CSS colour the graph drew the largest frame of a function in (any view), or null. */
  frameColour(name: string): string | null;
  /** The CSS colour of the frame at a path from the root (the root excluded), or null when no frame is there. */
  frameColourAt(path: string[]): string | null;
  /** The palettes: thread states, and the diff's less / same / more / new / gone. */
  palette(): { states: Record<StateName, string>; diff: { less: string; same: string; more: string; new: string; gone: string } };
  noise(): ReturnType<NoisePage['summary']>;
  latency(): ReturnType<LatencyPage['summary']>;
  captures(): ReturnType<CapturesPage['summary']>;
  /** Whether the page asks for the agent's token, and whether one is set (never the token itself). */
  auth(): { needed: boolean; tokenSet: boolean };
  /** Milliseconds: the last profile request (start to parsed), and from its arrival to the graph on screen. */
  timings(): { profile: { requestMs: number; bodyMs: number; parseMs: number; bytes: number } | null; loadToRenderMs: number; rebuildMs: number; renderMs: number };
  /** `agent` or `serve`, serve mode's directory and the span of its data (Unix seconds), and the capture ids the
   * diff offers as baselines. */
  status(): { mode: string | null; dir: string | null; extent: { from: number; to: number } | null; diffCaptures: string[] };
  /** The idle-wait preset: on (in the URL), whether it applies to the view, and what it hid (value and share). */
  idle(): { on: boolean; applies: boolean; hidden: number; share: number };
  /** The zoomed frame's path and the part of its width on screen (0..1 each; [0, 1] unless zoomed by keys). */
  viewport(): { focus: string[]; from: number; to: number; mode: Mode };
  /** Whether the key help overlay is open, and the key map it lists. */
  help(): { open: boolean; keys: Array<{ keys: string[]; action: string; what: string }> };
}

declare global {
  interface Window {
    __tailprof: TailprofHooks;
  }
}

function installHooks(app: App): void {
  const hooks: TailprofHooks = {
    get ready() {
      return app.sched.ready;
    },
    get readyPromise() {
      return app.sched.readyPromise;
    },
    whenReady: () => app.sched.readyPromise,
    get renders() {
      return app.sched.renders;
    },
    total: () => (app.tree ? app.tree.total : app.profile ? 0 : null),
    unit: () => app.profile?.unit ?? null,
    focused: () => {
      const t = app.tree;
      if (!t) return null;
      const z = app.graph.zoom;
      return { name: nodeName(t, z), path: pathOf(t, z), value: t.value[z]!, share: t.total > 0 ? t.value[z]! / t.total : 0 };
    },
    frameRects: (name, which = 'flame') => {
      app.sched.flush();
      const g = which === 'callers' ? app.sand.callers : which === 'callees' ? app.sand.callees : which === 'noise' ? app.noisePage.graph : app.graph;
      const t = g.tree;
      if (!t) return [];
      return g.frameRects(name).map((r) => ({ x: r.x, y: r.y, width: r.width, height: r.height, value: r.value, depth: r.depth, path: pathOf(t, r.node), folded: (t.flags[r.node]! & F_OTHER) !== 0 }));
    },
    searchShare: () => (app.searchRes ? app.searchRes.share : null),
    matches: () => (app.searchRes ? { frames: app.searchRes.count, outermost: app.searchRes.top.length, value: app.searchRes.matchedValue } : null),
    state: () => cloneState(app.state),
    message: () => app.pageMessage(),
    tableRows: () => app.table.shown.map((r) => ({ name: r.name, self: r.self, total: r.total })),
    sandwich: () => (app.sand.name && app.sand.total > 0 ? { name: app.sand.name, total: app.sand.total } : null),
    renderStats: () => ({ renderMs: app.graph.lastRenderMs, rebuildMs: app.rebuildMs, drawn: app.graph.lastDrawn, nodes: app.tree?.n ?? 0, renderedAt: app.graph.lastRenderAt }),
    page: () => app.state.page,
    diff: () => {
      const a = app.profile;
      const b = app.baseProfile;
      if (!app.state.diff || !a || !b || !app.diffArr) return null;
      return {
        spec: diffText(app.state.diff),
        current: { from: a.from_unix_ns / 1e9, to: a.to_unix_ns / 1e9 },
        baseline: { from: b.from_unix_ns / 1e9, to: b.to_unix_ns / 1e9 },
        changed: app.diffChanges().map((r) => ({ name: r.name, path: r.path, before: r.before, after: r.after, delta: r.delta, kind: r.kind })),
      };
    },
    frameColour: (name) => {
      app.sched.flush();
      return app.graph.colourOf(name);
    },
    frameColourAt: (path) => {
      app.sched.flush();
      const t = app.tree;
      if (!t) return null;
      const { node, matched } = findPath(t, path);
      return matched === path.length && path.length > 0 ? app.graph.fillOf(node) : null;
    },
    palette: () => ({
      states: Object.fromEntries(STATES.map((s) => [s, css(STATE_RGB[s])])) as Record<StateName, string>,
      diff: { less: css(DIFF_LESS), same: css(DIFF_SAME), more: css(DIFF_MORE), new: css(DIFF_NEW), gone: css(DIFF_GONE) },
    }),
    noise: () => app.noisePage.summary(),
    latency: () => app.latencyPage.summary(),
    captures: () => app.capturesPage.summary(),
    auth: () => ({ needed: app.authNeeded, tokenSet: getToken() !== null }),
    timings: () => {
      const t = timings.profile;
      return {
        profile: t ? { requestMs: t.parsed - t.start, bodyMs: t.body - t.start, parseMs: t.parsed - t.body, bytes: t.bytes } : null,
        loadToRenderMs: app.graph.loadToRenderMs,
        rebuildMs: app.rebuildMs,
        renderMs: app.graph.lastRenderMs,
      };
    },
    status: () => {
      const st = app.status;
      const ext = app.extent();
      return {
        mode: st ? (st.mode ?? 'agent') : null,
        dir: st?.dir ?? null,
        extent: ext ? { from: Number(ext[0]), to: Number(ext[1]) } : null,
        diffCaptures: [...document.querySelectorAll<HTMLOptionElement>('#diff option[value^="capture:"]')].map((o) => o.value.slice('capture:'.length)),
      };
    },
    idle: () => {
      const applies = app.state.view !== 'cpu';
      const h = app.idleHidden;
      return { on: app.state.idle, applies, hidden: applies && app.state.idle ? h.value : 0, share: applies && app.state.idle && h.before > 0 ? h.value / h.before : 0 };
    },
    viewport: () => {
      app.sched.flush();
      const t = app.tree;
      const [from, to] = app.graph.windowShare();
      return { focus: t ? pathOf(t, app.graph.zoom) : [], from, to, mode: app.state.mode };
    },
    help: () => ({ open: app.helpOpen(), keys: KEYMAP.map((k) => ({ keys: [...k.keys], action: k.action, what: k.what })) }),
  };
  Object.defineProperty(window, '__tailprof', { value: Object.freeze(hooks), writable: false, configurable: false });
}

const app = new App();
installHooks(app);
void app.start();
