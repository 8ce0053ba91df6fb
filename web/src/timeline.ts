// The timeline above the graph: per step, stacked bars of thread time by state (on CPU, run queue, disk, other,
// sleeping), in the state colours. Dragging brushes a sub-range; a double click clears it.

import type { TimelineResponse, TimelineStep } from './api';
import { css, STATE_LABEL, STATE_RGB, type StateName } from './colours';
import { clock, dateTime, esc, formatSeconds } from './format';
import type { Renderable, Scheduler } from './sched';
import type { Tooltip } from './tooltip';

const HEIGHT = 96;
const PLOT_TOP = 6;
const PLOT_BOTTOM = 74;
const LEFT = 56;
const RIGHT = 8;

/** Bottom to top. */
const LAYERS: ReadonlyArray<{ state: StateName; key: keyof TimelineStep }> = [
  { state: 'running', key: 'cpu_s' },
  { state: 'runnable', key: 'runqueue_s' },
  { state: 'disk', key: 'disk_s' },
  { state: 'other', key: 'other_s' },
  { state: 'sleeping', key: 'sleeping_s' },
];

const TICKS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

export interface TimelineEvents {
  /** A brushed range in Unix seconds, or null when cleared. */
  onBrush(sel: [number, number] | null): void;
}

export class Timeline implements Renderable {
  readonly root: HTMLElement;
  readonly canvas: HTMLCanvasElement;
  private readonly ctx: CanvasRenderingContext2D;
  private readonly sched: Scheduler;
  private readonly events: TimelineEvents;
  private readonly tooltip: Tooltip;
  private data: TimelineResponse | null = null;
  private message = '';
  private hidden: ReadonlySet<StateName> = new Set();
  private shown: ReadonlySet<StateName> = new Set(LAYERS.map((l) => l.state));
  private brush: [number, number] | null = null;
  private drag: { x0: number; x1: number } | null = null;
  private cssW = 0;
  private dpr = 1;

  constructor(root: HTMLElement, sched: Scheduler, tooltip: Tooltip, events: TimelineEvents) {
    this.root = root;
    this.sched = sched;
    this.events = events;
    this.tooltip = tooltip;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'timeline-canvas';
    this.canvas.dataset.testid = 'timeline-canvas';
    root.append(this.canvas);
    const ctx = this.canvas.getContext('2d');
    if (!ctx) throw new Error('no 2D canvas');
    this.ctx = ctx;
    new ResizeObserver(() => this.invalidate()).observe(root);

    this.canvas.addEventListener('mousedown', (ev) => {
      if (ev.button !== 0 || !this.range()) return;
      ev.preventDefault();
      const x = this.clampX(ev.offsetX);
      this.drag = { x0: x, x1: x };
      const box = this.canvas.getBoundingClientRect();
      const move = (e: MouseEvent): void => {
        if (!this.drag) return;
        this.drag.x1 = this.clampX(e.clientX - box.left);
        this.invalidate();
      };
      const up = (e: MouseEvent): void => {
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
        const d = this.drag;
        this.drag = null;
        if (!d) return;
        d.x1 = this.clampX(e.clientX - box.left);
        if (Math.abs(d.x1 - d.x0) >= 3) {
          const a = this.timeAt(Math.min(d.x0, d.x1));
          const b = this.timeAt(Math.max(d.x0, d.x1));
          this.brush = [a, b];
          this.events.onBrush([a, b]);
        }
        this.invalidate();
      };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    });
    this.canvas.addEventListener('dblclick', (ev) => {
      ev.preventDefault();
      this.drag = null;
      if (this.brush) {
        this.brush = null;
        this.events.onBrush(null);
        this.invalidate();
      }
    });
    this.canvas.addEventListener('mousemove', (ev) => this.hover(ev));
    this.canvas.addEventListener('mouseleave', () => this.tooltip.hide());
  }

  invalidate(): void {
    this.sched.invalidate(this);
  }

  setData(data: TimelineResponse | null, message = ''): void {
    this.data = data;
    this.message = message;
    this.invalidate();
  }

  /** `shown`: the states of the view; `hidden`: those the legend turned off. */
  setStates(shown: readonly StateName[], hidden: ReadonlySet<StateName>): void {
    this.shown = new Set(shown);
    this.hidden = hidden;
    this.invalidate();
  }

  private drawn(s: StateName): boolean {
    return this.shown.has(s) && !this.hidden.has(s);
  }

  setBrush(sel: [number, number] | null): void {
    this.brush = sel;
    this.invalidate();
  }

  /** Unix seconds of the whole range shown. */
  range(): [number, number] | null {
    const d = this.data;
    if (!d || !(d.to_unix_ns > d.from_unix_ns)) return null;
    return [d.from_unix_ns / 1e9, d.to_unix_ns / 1e9];
  }

  private plotW(): number {
    return Math.max(1, this.cssW - LEFT - RIGHT);
  }

  private clampX(x: number): number {
    return Math.max(LEFT, Math.min(LEFT + this.plotW(), x));
  }

  private timeAt(x: number): number {
    const r = this.range()!;
    return r[0] + ((x - LEFT) / this.plotW()) * (r[1] - r[0]);
  }

  private xAt(t: number): number {
    const r = this.range()!;
    return LEFT + ((t - r[0]) / (r[1] - r[0])) * this.plotW();
  }

  /** A step's end: its segments' (a step is never finer than them), up to where the next step starts. */
  private stepEnd(s: TimelineStep, next?: TimelineStep): number {
    const end = next ? Math.min(s.end_unix_ns, next.start_unix_ns) : s.end_unix_ns;
    return Math.max(end, s.start_unix_ns) / 1e9;
  }

  private stepEndAt(i: number): number {
    const steps = this.data!.steps;
    return this.stepEnd(steps[i], steps[i + 1]);
  }

  private stackOf(s: TimelineStep): number {
    let sum = 0;
    for (const l of LAYERS) if (this.drawn(l.state)) sum += Number(s[l.key]) || 0;
    return sum;
  }

  render(): void {
    const w = this.root.clientWidth;
    const dpr = window.devicePixelRatio || 1;
    if (w !== this.cssW || dpr !== this.dpr) {
      this.cssW = w;
      this.dpr = dpr;
      this.canvas.width = Math.max(1, Math.round(w * dpr));
      this.canvas.height = Math.round(HEIGHT * dpr);
      this.canvas.style.width = `${w}px`;
      this.canvas.style.height = `${HEIGHT}px`;
    }
    const ctx = this.ctx;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, HEIGHT);
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    const plotH = PLOT_BOTTOM - PLOT_TOP;
    ctx.strokeStyle = '#d0d4d9';
    ctx.lineWidth = 1;
    ctx.strokeRect(LEFT - 0.5, PLOT_TOP - 0.5, this.plotW() + 1, plotH + 1);
    const r = this.range();
    const d = this.data;
    if (!d || !r) {
      if (this.message) this.centerText(this.message);
      return;
    }
    let max = 0;
    for (const s of d.steps) max = Math.max(max, this.stackOf(s));
    if (max > 0) {
      for (const [i, s] of d.steps.entries()) {
        const x0 = Math.max(LEFT, this.xAt(s.start_unix_ns / 1e9));
        const x1 = Math.min(LEFT + this.plotW(), this.xAt(this.stepEndAt(i)));
        const bw = Math.max(1, x1 - x0 - (x1 - x0 > 3 ? 1 : 0));
        let y = PLOT_BOTTOM;
        for (const l of LAYERS) {
          if (!this.drawn(l.state)) continue;
          const v = Number(s[l.key]) || 0;
          if (v <= 0) continue;
          const h = (v / max) * plotH;
          ctx.fillStyle = css(STATE_RGB[l.state]);
          ctx.fillRect(x0, y - h, bw, h);
          y -= h;
        }
      }
    }
    // Axes: the largest stack, and clock ticks.
    ctx.fillStyle = '#555';
    ctx.textAlign = 'right';
    ctx.fillText(max > 0 ? formatSeconds(max) : '0 s', LEFT - 4, PLOT_TOP + 5);
    ctx.fillText('0', LEFT - 4, PLOT_BOTTOM - 4);
    ctx.textAlign = 'center';
    const span = r[1] - r[0];
    const tick = TICKS_S.find((t) => span / t <= this.plotW() / 90) ?? TICKS_S[TICKS_S.length - 1]!;
    const tz = new Date().getTimezoneOffset() * 60;
    for (let t = Math.ceil((r[0] - tz) / tick) * tick + tz; t <= r[1]; t += tick) {
      const x = this.xAt(t);
      ctx.fillStyle = '#d0d4d9';
      ctx.fillRect(Math.round(x), PLOT_BOTTOM, 1, 4);
      ctx.fillStyle = '#555';
      ctx.fillText(tick >= 86400 ? dateTime(t).slice(5, 10) : clock(t).slice(0, tick >= 60 ? 5 : 8), x, PLOT_BOTTOM + 12);
    }
    if (!d.steps.length || max === 0) this.centerText(this.message || 'no data in this range');
    // The brush, or the drag under way: dim what is outside.
    let sel: [number, number] | null = null;
    if (this.drag) sel = [Math.min(this.drag.x0, this.drag.x1), Math.max(this.drag.x0, this.drag.x1)];
    else if (this.brush) sel = [this.clampX(this.xAt(this.brush[0])), this.clampX(this.xAt(this.brush[1]))];
    if (sel) {
      ctx.fillStyle = 'rgba(255,255,255,0.65)';
      ctx.fillRect(LEFT, PLOT_TOP, sel[0] - LEFT, plotH);
      ctx.fillRect(sel[1], PLOT_TOP, LEFT + this.plotW() - sel[1], plotH);
      ctx.strokeStyle = '#1f4e8c';
      ctx.lineWidth = 1.5;
      ctx.strokeRect(sel[0], PLOT_TOP, Math.max(1, sel[1] - sel[0]), plotH);
    }
    ctx.textAlign = 'left';
  }

  private centerText(text: string): void {
    const ctx = this.ctx;
    ctx.fillStyle = '#666';
    ctx.textAlign = 'center';
    ctx.fillText(text, LEFT + this.plotW() / 2, (PLOT_TOP + PLOT_BOTTOM) / 2);
    ctx.textAlign = 'left';
  }

  private hover(ev: MouseEvent): void {
    const d = this.data;
    if (!d || !this.range() || this.drag) {
      this.tooltip.hide();
      return;
    }
    const t = this.timeAt(this.clampX(ev.offsetX));
    const i = d.steps.findIndex((st, k) => st.start_unix_ns / 1e9 <= t && t < this.stepEndAt(k));
    const s = i >= 0 ? d.steps[i] : undefined;
    if (!s) {
      this.tooltip.hide();
      return;
    }
    const lines = LAYERS.map(
      (l) =>
        `<div class="tt-row${this.drawn(l.state) ? '' : ' tt-hidden'}"><span class="swatch" style="background:${css(STATE_RGB[l.state])}"></span>${esc(STATE_LABEL[l.state])}: ${formatSeconds(Number(s[l.key]) || 0)}</div>`,
    ).join('');
    const extra = s.samples !== undefined ? `<div class="tt-dim">${s.samples} samples${s.threads !== undefined ? `, ${s.threads} threads` : ''}</div>` : '';
    this.tooltip.show(
      `<div class="tt-title">${esc(dateTime(s.start_unix_ns / 1e9))} – ${esc(clock(this.stepEndAt(i)))}</div>${lines}${extra}<div class="tt-hint">drag to select a range, double-click to clear</div>`,
      ev.clientX,
      ev.clientY,
    );
  }
}
