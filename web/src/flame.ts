// A flame graph (root at the bottom) or icicle (root at the top) on a Canvas 2D. Only the rows inside the scroll
// viewport and the frames at least MIN_PX wide are drawn, so a tree of 100k nodes or a stack thousands of frames
// deep costs what is on screen. The canvas stays in view (position: sticky) while a spacer gives the scroll height.

import { css, MUTED_RGB, MUTED_TEXT, type Rgb, textOn } from './colours';
import type { Renderable, Scheduler } from './sched';
import { F_OTHER, type FlatTree } from './tree';

export type Orientation = 'flame' | 'icicle';

const MIN_PX = 0.5;
const FONT_PX = 12;
const FONT = `${FONT_PX}px ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace`;
const MUTED_FILL = css(MUTED_RGB);

export interface FlameEvents {
  onClick?(i: number, ev: MouseEvent): void;
  onContext?(i: number, ev: MouseEvent): void;
  onHover?(i: number, ev: MouseEvent): void;
  onLeave?(): void;
}

export interface FrameRect {
  x: number;
  y: number;
  width: number;
  height: number;
  node: number;
  depth: number;
  value: number;
}

export class FlameGraph implements Renderable {
  readonly root: HTMLDivElement;
  readonly canvas: HTMLCanvasElement;
  private readonly spacer: HTMLDivElement;
  private readonly ctx: CanvasRenderingContext2D;
  private readonly sched: Scheduler;
  private readonly events: FlameEvents;

  tree: FlatTree | null = null;
  private fills: string[] = [];
  private texts: string[] = [];
  zoom = 0;
  private zoomMaxDepth = 0;
  /** The zoom window inside the zoomed node (keyboard zoom and pan), in value units; ww 0: the whole node. */
  private wx0 = 0;
  private ww = 0;
  orientation: Orientation;
  readonly rowH = 18;
  private highlight: Uint8Array | null = null;
  private marked = -1;
  private hover = -1;
  private pendingScroll: 'root' | null = 'root';
  private cssW = 0;
  private viewH = 0;
  private contentH = 0;
  private dpr = 1;
  private charW = 7.2;
  private maxHeight: () => number;
  /** Milliseconds the last draw took, and how many frames it drew. */
  lastRenderMs = 0;
  lastDrawn = 0;
  /** performance.now() at the end of the last draw. */
  lastRenderAt = 0;
  /** Set by `markLoad`: when data arrived; the next draw records how long until it was on screen. */
  private loadMark = -1;
  loadToRenderMs = -1;

  constructor(parent: HTMLElement, sched: Scheduler, opts: { testid: string; orientation: Orientation; maxHeight: () => number; events: FlameEvents }) {
    this.sched = sched;
    this.events = opts.events;
    this.orientation = opts.orientation;
    this.maxHeight = opts.maxHeight;
    this.root = document.createElement('div');
    this.root.className = 'flame-scroll';
    this.root.dataset.testid = opts.testid + '-scroll';
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'flame-canvas';
    this.canvas.dataset.testid = opts.testid;
    this.spacer = document.createElement('div');
    this.spacer.className = 'flame-spacer';
    this.root.append(this.canvas, this.spacer);
    parent.append(this.root);
    const ctx = this.canvas.getContext('2d', { alpha: false });
    if (!ctx) throw new Error('no 2D canvas');
    this.ctx = ctx;
    this.ctx.font = FONT;
    this.charW = this.ctx.measureText('MMMMMMMMMM').width / 10 || 7.2;

    this.root.addEventListener('scroll', () => this.invalidate(), { passive: true });
    new ResizeObserver(() => this.invalidate()).observe(this.root);
    this.canvas.addEventListener('mousemove', (ev) => {
      const i = this.nodeAt(ev.offsetX, ev.offsetY);
      if (i !== this.hover) {
        this.hover = i;
        this.canvas.style.cursor = i >= 0 ? 'pointer' : 'default';
        this.invalidate();
      }
      this.events.onHover?.(i, ev);
    });
    this.canvas.addEventListener('mouseleave', () => {
      if (this.hover !== -1) {
        this.hover = -1;
        this.invalidate();
      }
      this.events.onLeave?.();
    });
    this.canvas.addEventListener('click', (ev) => {
      const i = this.nodeAt(ev.offsetX, ev.offsetY);
      if (i >= 0) this.events.onClick?.(i, ev);
    });
    this.canvas.addEventListener('contextmenu', (ev) => {
      const i = this.nodeAt(ev.offsetX, ev.offsetY);
      if (i >= 0 && this.events.onContext) {
        ev.preventDefault();
        this.events.onContext(i, ev);
      }
    });
  }

  invalidate(): void {
    this.sched.invalidate(this);
  }

  setTree(tree: FlatTree | null, colours: { fill: Rgb[] } | null): void {
    this.tree = tree;
    this.fills = [];
    this.texts = [];
    if (tree && colours) {
      const cache = new Map<Rgb, [string, string]>();
      for (let i = 0; i < tree.n; i++) {
        const c = colours.fill[i]!;
        let s = cache.get(c);
        if (!s) {
          s = [css(c), textOn(c)];
          cache.set(c, s);
        }
        this.fills.push(s[0]);
        this.texts.push(s[1]);
      }
    }
    this.highlight = null;
    this.marked = -1;
    this.hover = -1;
    this.setZoom(0);
  }

  setZoom(i: number): void {
    const t = this.tree;
    this.zoom = t && i >= 0 && i < t.n ? i : 0;
    let md = 0;
    if (t && t.n) {
      const e = t.end[this.zoom]!;
      for (let j = this.zoom; j < e; j++) if (t.depth[j]! > md) md = t.depth[j]!;
    }
    this.zoomMaxDepth = md;
    this.ww = 0;
    this.pendingScroll = 'root';
    this.invalidate();
  }

  /** The span drawn across the width: the zoom window, or the whole zoomed node. */
  private win(): [number, number] {
    const t = this.tree;
    if (!t || !t.n) return [0, 1];
    const z = this.zoom;
    const nw = t.value[z]! || 1;
    return this.ww > 0 && this.ww < nw ? [this.wx0, this.ww] : [t.x[z]!, nw];
  }

  /** Whether a zoom window narrower than the zoomed node is shown. */
  zoomedIn(): boolean {
    const t = this.tree;
    return !!t && t.n > 0 && this.ww > 0 && this.ww < (t.value[this.zoom]! || 1);
  }

  /** The window as fractions of the zoomed node's width. */
  windowShare(): [number, number] {
    const t = this.tree;
    if (!t || !t.n) return [0, 1];
    const [x0, w] = this.win();
    const nx = t.x[this.zoom]!;
    const nw = t.value[this.zoom]! || 1;
    return [(x0 - nx) / nw, (x0 + w - nx) / nw];
  }

  /** Shows `[x0, x0 + w)` (value units) of the zoomed node, clamped inside it. */
  setWindow(x0: number, w: number): void {
    const t = this.tree;
    if (!t || !t.n) return;
    const nx = t.x[this.zoom]!;
    const nw = t.value[this.zoom]! || 1;
    const ww = Math.max(nw * 1e-6, Math.min(nw, w));
    this.ww = ww >= nw ? 0 : ww;
    this.wx0 = Math.max(nx, Math.min(nx + nw - ww, x0));
    this.invalidate();
  }

  /** Zooms the window about its centre by `factor` (< 1 in, > 1 out); false when already the whole node. */
  zoomBy(factor: number): boolean {
    const [x0, w] = this.win();
    if (factor > 1 && !this.zoomedIn()) return false;
    const w2 = w * factor;
    this.setWindow(x0 + w / 2 - w2 / 2, w2);
    return true;
  }

  /** Moves the window by a fraction of its width; false when there is no window to move. */
  pan(frac: number): boolean {
    if (!this.zoomedIn()) return false;
    const [x0, w] = this.win();
    this.setWindow(x0 + frac * w, w);
    return true;
  }

  setOrientation(o: Orientation): void {
    if (o === this.orientation) return;
    this.orientation = o;
    this.pendingScroll = 'root';
    this.invalidate();
  }

  /** Per node: 1 to draw in colour, 0 to mute; null draws everything in colour. */
  setHighlight(h: Uint8Array | null): void {
    this.highlight = h;
    this.invalidate();
  }

  /** Outlines every frame of one function (a name id), -1 for none. */
  setMarked(nameId: number): void {
    this.marked = nameId;
    this.invalidate();
  }

  private rowY(d: number): number {
    return this.orientation === 'icicle' ? d * this.rowH : this.contentH - (d + 1) * this.rowH;
  }

  private measure(): void {
    const rows = this.tree && this.tree.n ? this.zoomMaxDepth + 1 : 0;
    this.contentH = rows * this.rowH;
    const viewH = Math.max(0, Math.min(this.contentH, Math.floor(this.maxHeight())));
    if (viewH !== this.viewH) {
      this.viewH = viewH;
      this.root.style.height = `${viewH}px`;
    }
    this.spacer.style.height = `${Math.max(0, this.contentH - viewH)}px`;
    const w = this.root.clientWidth;
    const dpr = window.devicePixelRatio || 1;
    if (w !== this.cssW || dpr !== this.dpr || this.canvas.height !== Math.round(viewH * dpr)) {
      this.cssW = w;
      this.dpr = dpr;
      this.canvas.width = Math.max(1, Math.round(w * dpr));
      this.canvas.height = Math.max(1, Math.round(viewH * dpr));
      this.canvas.style.width = `${w}px`;
      this.canvas.style.height = `${viewH}px`;
    }
    if (this.pendingScroll) {
      this.pendingScroll = null;
      this.root.scrollTop = this.orientation === 'flame' ? this.contentH : 0;
    }
  }

  render(): void {
    const t0 = performance.now();
    this.measure();
    const ctx = this.ctx;
    const W = this.cssW;
    const H = this.viewH;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, W, H);
    const t = this.tree;
    let drawn = 0;
    if (t && t.n && W > 0 && H > 0) {
      ctx.font = FONT;
      ctx.textBaseline = 'middle';
      const scrollTop = this.root.scrollTop;
      const rowH = this.rowH;
      const z = this.zoom;
      const [zx0, zw] = this.win();
      const zx1 = zx0 + zw;
      const eps = zw * 1e-9;
      const k = W / zw;
      const zd = t.depth[z]!;
      let dLo: number;
      let dHi: number;
      if (this.orientation === 'icicle') {
        dLo = Math.floor(scrollTop / rowH);
        dHi = Math.ceil((scrollTop + H) / rowH);
      } else {
        dLo = Math.floor((this.contentH - scrollTop - H) / rowH);
        dHi = Math.ceil((this.contentH - scrollTop) / rowH);
      }
      dLo = Math.max(0, dLo);
      dHi = Math.min(this.zoomMaxDepth, dHi);
      const hl = this.highlight;
      const marked = this.marked;
      const maxChars = (w: number): number => Math.floor((w - 6) / this.charW);
      const outlines: number[] = [];
      for (let d = dLo; d <= dHi; d++) {
        const ids: Int32Array | undefined = t.byDepth[d];
        if (!ids) continue;
        const y = this.rowY(d) - scrollTop;
        // First node whose right edge is past the zoomed range's left edge.
        let lo = 0;
        let hi = ids.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          const i = ids[mid]!;
          if (t.x[i]! + t.value[i]! <= zx0 + eps) lo = mid + 1;
          else hi = mid;
        }
        ctx.globalAlpha = d < zd ? 0.6 : 1;
        for (let j = lo; j < ids.length; j++) {
          const i = ids[j]!;
          const xi = t.x[i]!;
          if (xi >= zx1 - eps) break;
          const w = t.value[i]! * k;
          if (w < MIN_PX) continue;
          const left = Math.max(0, (xi - zx0) * k);
          const right = Math.min(W, (xi - zx0) * k + w);
          const width = right - left;
          if (width < MIN_PX) continue;
          drawn++;
          const muted = hl !== null && !hl[i];
          ctx.fillStyle = muted ? MUTED_FILL : this.fills[i]!;
          ctx.fillRect(left, y, width > 2 ? width - 1 : width, rowH - 1);
          if (t.flags[i]! & F_OTHER && width > 4) {
            // Folded frames: a dashed line marks "more detail on click".
            ctx.fillStyle = muted ? MUTED_TEXT : '#888';
            for (let sx = left + 2; sx < right - 3; sx += 6) ctx.fillRect(sx, y + rowH - 3, 3, 1);
          }
          if (width > 3 * this.charW) {
            const name = t.names[t.nameId[i]!]!;
            const m = maxChars(width);
            if (m >= 2) {
              const label = name.length <= m ? name : name.slice(0, m - 1) + '…';
              ctx.fillStyle = muted ? MUTED_TEXT : this.texts[i]!;
              ctx.fillText(label, left + 3, y + rowH / 2);
            }
          }
          if ((marked >= 0 && t.nameId[i] === marked) || i === this.hover) outlines.push(i, left, y, width);
        }
      }
      ctx.globalAlpha = 1;
      for (let o = 0; o < outlines.length; o += 4) {
        const i = outlines[o]!;
        const isHover = i === this.hover;
        ctx.strokeStyle = isHover ? '#000' : '#1a1a1a';
        ctx.lineWidth = isHover ? 1.5 : 2;
        ctx.strokeRect(outlines[o + 1]! + 0.75, outlines[o + 2]! + 0.75, Math.max(1, outlines[o + 3]! - 2.5), rowH - 2.5);
      }
    }
    this.lastDrawn = drawn;
    const end = performance.now();
    this.lastRenderMs = end - t0;
    this.lastRenderAt = end;
    if (this.loadMark >= 0 && t && t.n) {
      this.loadToRenderMs = end - this.loadMark;
      this.loadMark = -1;
    }
  }

  /** Starts the clock for `loadToRenderMs` (the time from data arrival to the first draw of it). */
  markLoad(t: number): void {
    this.loadMark = t;
  }

  /** The CSS colour of the largest frame of a function, or null when it is not in the tree. */
  colourOf(name: string): string | null {
    const t = this.tree;
    if (!t) return null;
    const id = t.nameIndex.get(name);
    if (id === undefined) return null;
    let best = -1;
    for (let i = 0; i < t.n; i++) if (t.nameId[i] === id && (best < 0 || t.value[i]! > t.value[best]!)) best = i;
    return best >= 0 ? (this.fills[best] ?? null) : null;
  }

  /** The CSS colour of one node. */
  fillOf(i: number): string | null {
    return this.fills[i] ?? null;
  }

  /** The node under a point of the canvas (CSS pixels), or -1. */
  nodeAt(px: number, py: number): number {
    const t = this.tree;
    if (!t || !t.n || this.cssW <= 0) return -1;
    const cy = py + this.root.scrollTop;
    const d = this.orientation === 'icicle' ? Math.floor(cy / this.rowH) : Math.floor((this.contentH - cy) / this.rowH);
    if (d < 0 || d > this.zoomMaxDepth) return -1;
    const ids: Int32Array | undefined = t.byDepth[d];
    if (!ids) return -1;
    const z = this.zoom;
    const [zx0, zw] = this.win();
    const vx = zx0 + (px / this.cssW) * zw;
    let lo = 0;
    let hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const i = ids[mid]!;
      if (t.x[i]! + t.value[i]! <= vx) lo = mid + 1;
      else hi = mid;
    }
    const i = ids[lo];
    if (i === undefined || t.x[i]! > vx) return -1;
    if ((t.value[i]! / zw) * this.cssW < MIN_PX) return -1;
    // Only the zoomed node's ancestors and subtree are shown.
    if (i < z && t.end[i]! <= z) return -1;
    if (i > z && i >= t.end[z]!) return -1;
    return i;
  }

  /** Rectangles (viewport CSS pixels) of the drawn frames of a function, largest first. */
  frameRects(name: string): FrameRect[] {
    const t = this.tree;
    if (!t) return [];
    const id = t.nameIndex.get(name);
    if (id === undefined) return [];
    const box = this.canvas.getBoundingClientRect();
    const z = this.zoom;
    const [zx0, zw] = this.win();
    const k = this.cssW / zw;
    const scrollTop = this.root.scrollTop;
    const out: FrameRect[] = [];
    for (let i = 0; i < t.n; i++) {
      if (t.nameId[i] !== id) continue;
      const inside = (i <= z && t.end[i]! > z) || (i > z && i < t.end[z]!);
      if (!inside) continue;
      const d = t.depth[i]!;
      if (d > this.zoomMaxDepth) continue;
      const left = Math.max(0, (t.x[i]! - zx0) * k);
      const right = Math.min(this.cssW, (t.x[i]! - zx0) * k + t.value[i]! * k);
      const y = this.rowY(d) - scrollTop;
      if (right - left < MIN_PX || y + this.rowH <= 0 || y >= this.viewH) continue;
      out.push({ x: box.left + left, y: box.top + y, width: right - left, height: this.rowH - 1, node: i, depth: d, value: t.value[i]! });
    }
    return out.sort((a, b) => b.value - a.value);
  }

  toPng(): string {
    return this.canvas.toDataURL('image/png');
  }
}
