// The noise page: `/api/v1/noise` over the range, in either format the API answers: the continuous tier's report
// (per CPU softirq, hard IRQ and steal time from /proc/stat, and the sources the on-CPU samples saw) or, in
// `tailprof serve`, a deep capture's noise.json (every source measured by hooks, and the victim view). Then noise
// by source as a flame graph (built here from the JSON), the victims, and the timeline's noise per CPU and step.

import { ApiError, type DeepNoiseCpu, type Estimate, getJson, type NoiseCpu, type NoiseResponse, type Params, type TimelineResponse } from '../api';
import { css, FOLDED_RGB, GROUP_RGB, hashUnit, mix, type Rgb, ROOT_RGB } from '../colours';
import { FlameGraph } from '../flame';
import { clock, dateTime, esc, formatNs, formatPercent } from '../format';
import { cpuTimes, isDeepCpu, noiseFormat, type NoiseFormat, noiseTree, victims, type VictimRow } from '../noise-tree';
import type { Renderable, Scheduler } from '../sched';
import type { Tooltip } from '../tooltip';
import { F_OTHER, F_ROOT, type FlatTree, flatten, nodeName } from '../tree';
import { Page } from './page';

const PARTS = [
  { key: 'softirq_s', label: 'softirq', colour: '#0072b2' },
  { key: 'irq_s', label: 'hard IRQ', colour: '#e69f00' },
  { key: 'steal_s', label: 'steal', colour: '#cc79a7' },
] as const;

const ROW_H = 24;
const LEFT = 56;
const RIGHT = 8;
const MAX_CPUS = 64;

function estimate(e: Estimate | undefined): string {
  if (!e || !e.samples) return '–';
  const ci = e.ci95_ns ? ` <small>[${esc(formatNs(e.ci95_ns[0]))}, ${esc(formatNs(e.ci95_ns[1]))}]</small>` : '';
  return `${esc(formatNs(e.ns))}${ci}`;
}

function cpuList(cpus: number[]): string {
  const out: string[] = [];
  const s = [...cpus].sort((a, b) => a - b);
  for (let i = 0; i < s.length; ) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j]! + 1) j++;
    out.push(j > i ? `${s[i]}-${s[j]}` : String(s[i]));
    i = j + 1;
  }
  return out.join(',');
}

/** Colours of the noise flame graph's source kinds (Okabe–Ito, as the timeline's parts). */
const KIND_RGB: Record<string, Rgb> = {
  '[irq]': [0xe6, 0x9f, 0x00],
  '[softirq]': [0x00, 0x72, 0xb2],
  '[thread]': [0x00, 0x9e, 0x73],
  '[nmi]': [0xd5, 0x5e, 0x00],
  '[steal]': [0xcc, 0x79, 0xa7],
};
const WHITE: Rgb = [255, 255, 255];

function noiseColours(t: FlatTree): { fill: Rgb[] } {
  const fill: Rgb[] = new Array(t.n);
  for (let i = 0; i < t.n; i++) {
    const d = t.depth[i]!;
    if (t.flags[i]! & F_ROOT) fill[i] = ROOT_RGB;
    else if (t.flags[i]! & F_OTHER) fill[i] = FOLDED_RGB;
    else if (d === 1) fill[i] = GROUP_RGB;
    else {
      let k = i;
      while (t.depth[k]! > 2) k = t.parent[k]!;
      const base = KIND_RGB[nodeName(t, k)] ?? FOLDED_RGB;
      fill[i] = d === 2 ? base : mix(base, WHITE, 0.2 + 0.35 * hashUnit(nodeName(t, i)));
    }
  }
  return { fill };
}

function stats(ns: number | undefined, count?: number): string {
  if (!ns) return '–';
  return `${esc(formatNs(ns))}${count ? ` <small>×${count.toLocaleString('en-US')}</small>` : ''}`;
}

export class NoisePage extends Page implements Renderable {
  data: NoiseResponse | null = null;
  private timeline: TimelineResponse | null = null;
  private canvas: HTMLCanvasElement | null = null;
  /** Noise by source: a flame graph of a tree built from the JSON. */
  readonly graph: FlameGraph;
  private readonly flameBox: HTMLElement;
  private victimView: { rows: VictimRow[]; pids: number[] } | { note: string } | null = null;

  constructor(root: HTMLElement, sched: Scheduler, private readonly tooltip: Tooltip) {
    super(root, sched, 'noise');
    this.flameBox = document.createElement('div');
    this.flameBox.className = 'flame noise-flame';
    this.flameBox.dataset.testid = 'noise-flame';
    this.graph = new FlameGraph(this.flameBox, sched, {
      testid: 'noise-flame-canvas',
      orientation: 'icicle',
      maxHeight: () => 400,
      events: {
        onClick: (i) => this.graph.setZoom(i === this.graph.zoom ? Math.max(0, this.graph.tree?.parent[i] ?? 0) : i),
        onHover: (i, ev) => this.hover(i, ev),
        onLeave: () => this.tooltip.hide(),
      },
    });
  }

  setTimeline(tl: TimelineResponse | null): void {
    this.timeline = tl;
    this.sched.invalidate(this);
  }

  load(range: Params): Promise<void> {
    return this.run(async (signal) => {
      this.data = null;
      this.victimView = null;
      this.graph.setTree(null, null);
      let data: NoiseResponse;
      try {
        data = await getJson<NoiseResponse>('noise', { from: range.from, to: range.to }, signal);
      } catch (e) {
        // 404: no stored window (or capture) with noise overlaps the range: an empty range rather than a failure.
        if (e instanceof ApiError && e.status === 404) {
          this.body.innerHTML = '';
          this.setMessage('empty', e.message);
          return;
        }
        throw e;
      }
      this.data = data;
      this.show();
    });
  }

  format(): NoiseFormat | null {
    return this.data ? noiseFormat(this.data) : null;
  }

  private hover(i: number, ev: MouseEvent): void {
    const t = this.graph.tree;
    if (!t || i < 0) {
      this.tooltip.hide();
      return;
    }
    const v = t.value[i]!;
    const p = t.parent[i]!;
    const rows = [`<div class="tt-title">${esc(nodeName(t, i))}</div>`, `<div>${esc(formatNs(v))}</div>`, `<div>${formatPercent(t.total > 0 ? v / t.total : 0)} of all noise shown</div>`];
    if (p >= 0) rows.push(`<div>${formatPercent(t.value[p]! > 0 ? v / t.value[p]! : 0)} of ${esc(nodeName(t, p))}</div>`);
    rows.push('<div class="tt-hint">click to zoom, click again to go back up</div>');
    this.tooltip.show(rows.join(''), ev.clientX, ev.clientY);
  }

  private show(): void {
    const d = this.data;
    if (!d || !d.cpus?.length) {
      this.body.innerHTML = '';
      this.setMessage('empty', 'no noise was measured in this range');
      return;
    }
    this.setMessage(null);
    const deep = noiseFormat(d) === 'deep';
    const span = d.duration_ns ? `over ${esc(formatNs(d.duration_ns))} ` : '';
    const skipped = d.windows_without_noise ? ` · ${d.windows_without_noise} window${d.windows_without_noise === 1 ? '' : 's'} without noise left out` : '';
    const from = d.capture ? ` from capture <b>${esc(d.capture)}</b>` : '';
    const notes: string[] = [];
    if (deep && d.threshold_ns) notes.push(`events shorter than ${esc(formatNs(d.threshold_ns))} are in no count`);
    if (deep && d.missing_hooks?.length) notes.push(`hooks this kernel lacks (their sources are absent): ${esc(d.missing_hooks.join(', '))}`);
    const dropped = Object.entries(d.dropped ?? {}).filter(([, n]) => n > 0);
    if (dropped.length) notes.push(`dropped: ${dropped.map(([k, n]) => `${n} ${esc(k)}`).join(', ')}`);
    const html: string[] = [
      `<p class="page-note" data-testid="noise-summary">OS noise ${span}on ${d.cpus.length} CPU${d.cpus.length === 1 ? '' : 's'}${from}` +
        `${d.tier ? ` (${esc(d.tier)} tier)` : ''}${skipped}. ${deep ? 'Every figure measured by hooks.' : esc(d.accounting?.note ?? '')}${notes.length ? ` ${notes.join('; ')}.` : ''}</p>`,
      '<h2>Per CPU</h2>',
      deep ? this.deepTable(d.cpus.filter(isDeepCpu)) : this.continuousTable(d, d.cpus.filter((c): c is NoiseCpu => !isDeepCpu(c))),
      this.sourcesTable(d, deep),
      `<h2>Noise by source <small>${deep ? 'measured, per CPU and kind' : 'estimated from on-CPU samples, per CPU and kind'}</small></h2>`,
    ];
    this.body.innerHTML = html.join('');
    const tree = noiseTree(d);
    if (tree.value > 0) {
      this.body.append(this.flameBox);
      const t = flatten(tree, { stateDepth: 0, groupDepth: 1, hidden: new Set() });
      this.graph.setTree(t, noiseColours(t));
      const legend = Object.entries(KIND_RGB)
        .map(([k, c]) => `<span><span class="swatch" style="background:${css(c)}"></span>${esc(k.slice(1, -1))}</span>`)
        .join('');
      this.body.insertAdjacentHTML('beforeend', `<div class="noise-legend" data-testid="noise-flame-legend">${legend}</div>`);
    } else {
      this.graph.setTree(null, null);
      this.body.insertAdjacentHTML('beforeend', `<p class="message empty" data-testid="noise-flame-empty">${deep ? 'the hooks measured no noise on these CPUs' : 'no sample landed in interrupt context or a kernel thread on these CPUs'}</p>`);
    }
    this.victimView = victims(d);
    this.body.insertAdjacentHTML('beforeend', `<h2>Victims <small>which threads lost time, to what</small></h2>${this.victimHtml()}`);
    this.body.insertAdjacentHTML('beforeend', `<h2>Noise per CPU over time</h2><div class="noise-legend">${PARTS.map((p) => `<span><span class="swatch" style="background:${p.colour}"></span>${p.label}</span>`).join('')}</div>`);
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'noise-timeline';
    this.canvas.dataset.testid = 'noise-timeline';
    this.body.append(this.canvas);
    this.sched.invalidate(this);
  }

  private continuousTable(d: NoiseResponse, cpus: NoiseCpu[]): string {
    const hardirq = (c: NoiseCpu): string =>
      c.procfs_time?.hardirq_ns === null || c.procfs_time?.hardirq_ns === undefined
        ? `<span class="dim" title="${esc(d.accounting?.note ?? '')}">not accounted</span>`
        : esc(formatNs(c.procfs_time.hardirq_ns));
    const rows = cpus
      .map((c) => {
        const t = cpuTimes(c);
        return (
          `<tr data-testid="noise-row" data-cpu="${c.cpu}"><td>${c.cpu}</td><td class="num">${esc(formatNs(c.runtime_ns))}</td>` +
          `<td class="num">${esc(formatNs(t.softirq_ns))}</td><td class="num">${(c.procfs_time?.softirq_pct ?? 0).toFixed(2)}%</td>` +
          `<td class="num">${hardirq(c)}</td><td class="num">${esc(formatNs(t.steal_ns))}</td>` +
          `<td class="num">${estimate(c.sampled?.irq)}</td><td class="num">${estimate(c.sampled?.softirq)}</td><td class="num">${estimate(c.sampled?.thread)}</td>` +
          `<td class="num">${c.sampled?.samples ?? 0} / ${c.sampled?.periods ?? 0}</td></tr>`
        );
      })
      .join('');
    const hz = d.sampling?.frequency_hz;
    return (
      `<div class="table-wrap"><table class="top noise" data-testid="noise-table"><thead><tr>` +
      `<th>CPU</th><th class="num">runtime</th><th class="num">softirq</th><th class="num">%</th><th class="num">hard IRQ</th><th class="num">steal</th>` +
      `<th class="num">sampled IRQ</th><th class="num">sampled softirq</th><th class="num">sampled kthreads</th><th class="num">samples / periods</th>` +
      `</tr></thead><tbody>${rows}</tbody></table></div>` +
      `<p class="page-note">From /proc/stat: softirq, hard IRQ and steal time; sampled${hz ? ` at ${hz} Hz` : ''}: estimates with their 95% intervals.</p>`
    );
  }

  private deepTable(cpus: DeepNoiseCpu[]): string {
    const rows = cpus
      .map(
        (c) =>
          `<tr data-testid="noise-row" data-cpu="${c.cpu}"><td>${c.cpu}</td><td class="num">${esc(formatNs(c.runtime_ns ?? 0))}</td>` +
          `<td class="num">${esc(formatNs(c.noise_ns ?? 0))}</td><td class="num">${(c.noise_pct ?? 0).toFixed(2)}%</td>` +
          `<td class="num" title="${esc(c.max_single_source ?? '')}">${c.max_single_ns ? `${esc(formatNs(c.max_single_ns))} <small>${esc(c.max_single_source ?? '')}</small>` : '–'}</td>` +
          `<td class="num">${stats(c.irq?.ns, c.irq?.count)}</td><td class="num">${stats(c.softirq?.ns, c.softirq?.count)}</td>` +
          `<td class="num">${stats(c.nmi?.ns, c.nmi?.count)}</td><td class="num">${stats(c.thread?.ns, c.thread?.count)}</td><td class="num">${stats(c.steal_ns)}</td></tr>`,
      )
      .join('');
    return (
      `<div class="table-wrap"><table class="top noise" data-testid="noise-table"><thead><tr>` +
      `<th>CPU</th><th class="num">runtime</th><th class="num">noise</th><th class="num">%</th><th class="num">longest event</th>` +
      `<th class="num">IRQs and vectors</th><th class="num">softirqs</th><th class="num">NMIs</th><th class="num">kernel threads</th><th class="num">steal</th>` +
      `</tr></thead><tbody>${rows}</tbody></table></div>` +
      '<p class="page-note">Own time of each kind (nested interrupts are not counted twice) and how many events; steal from /proc/stat.</p>'
    );
  }

  private sourcesTable(d: NoiseResponse, deep: boolean): string {
    const top = d.top_sources ?? [];
    const rows = top.length
      ? top
          .map((t) =>
            deep
              ? `<tr data-testid="noise-source"><td class="fn">${esc(t.source)}</td><td class="num">${(t.count ?? 0).toLocaleString('en-US')}</td><td class="num">${esc(formatNs(t.ns))}</td><td class="num">${t.max_ns ? esc(formatNs(t.max_ns)) : '–'}</td><td>${esc(cpuList(t.cpus ?? []))}</td></tr>`
              : `<tr data-testid="noise-source"><td class="fn">${esc(t.source)}</td><td class="num">${t.samples ?? 0}</td><td class="num">${estimate(t as Estimate)}</td><td>${esc(cpuList(t.cpus ?? []))}</td></tr>`,
          )
          .join('')
      : `<tr><td colspan="${deep ? 5 : 4}" class="none">${deep ? 'the hooks measured no noise on these CPUs' : 'no sample landed in interrupt context or a kernel thread on these CPUs'}</td></tr>`;
    const head = deep
      ? '<th>source</th><th class="num">events</th><th class="num">time</th><th class="num">longest</th><th>CPUs</th>'
      : '<th>source</th><th class="num">samples</th><th class="num">time [95% interval]</th><th>CPUs</th>';
    return `<h2>Top ${deep ? '' : 'sampled '}sources</h2><div class="table-wrap"><table class="top noise" data-testid="noise-sources"><thead><tr>${head}</tr></thead><tbody>${rows}</tbody></table></div>`;
  }

  private victimHtml(): string {
    const v = this.victimView;
    if (!v) return '';
    if ('note' in v) return `<p class="message empty" data-testid="noise-victims-note">${esc(v.note)}</p>`;
    const top = <T,>(xs: T[], f: (x: T) => string): string => xs.slice(0, 3).map(f).join('<br>') + (xs.length > 3 ? `<br><small>and ${xs.length - 3} more</small>` : '');
    const rows = v.rows
      .map(
        (r) =>
          `<tr data-testid="noise-victim" data-tid="${r.tid}"><td class="fn">${esc(r.comm)} <small>tid ${r.tid}${r.pid !== r.tid ? `, pid ${r.pid}` : ''}</small></td>` +
          `<td class="num">${esc(formatNs(r.lostNs))}</td><td class="num">${stats(r.interruptedNs, r.interruptions)}</td>` +
          `<td>${top(r.bySource, (b) => `${esc(b.source)} <small>${esc(formatNs(b.ns))} ×${b.count}${b.maxNs ? `, longest ${esc(formatNs(b.maxNs))}` : ''}</small>`) || '–'}</td>` +
          `<td class="num">${stats(r.runnableNs)}</td>` +
          `<td>${top(r.behind, (b) => `${esc(b.comm)} <small>${b.tid ? `tid ${b.tid}` : 'idle task'}: ${esc(formatNs(b.ns))} ×${b.count}</small>`) || '–'}` +
          `${r.behindUnknownNs ? `<br><small>before the run log: ${esc(formatNs(r.behindUnknownNs))}</small>` : ''}</td></tr>`,
      )
      .join('');
    return (
      `<p class="page-note">Threads of pid ${esc(v.pids.join(', '))}, most time lost first: on CPU but interrupted, and runnable while others ran.</p>` +
      '<div class="table-wrap"><table class="top noise victims" data-testid="noise-victims"><thead><tr><th>thread</th><th class="num">lost</th><th class="num">interrupted</th><th>by</th><th class="num">runnable</th><th>behind</th></tr></thead>' +
      `<tbody>${rows}</tbody></table></div>`
    );
  }

  /** Steps of the timeline with noise, and the CPUs they name. */
  private steps(): { cpus: number[]; steps: NonNullable<TimelineResponse['steps']> } {
    const tl = this.timeline;
    const cpus = new Set<number>();
    const steps = (tl?.steps ?? []).filter((s) => s.noise && s.noise.cpus);
    for (const s of steps) for (const c of Object.keys(s.noise!.cpus)) cpus.add(Number(c));
    return { cpus: [...cpus].sort((a, b) => a - b).slice(0, MAX_CPUS), steps };
  }

  render(): void {
    const cv = this.canvas;
    if (!cv || !cv.isConnected) return;
    const tl = this.timeline;
    const { cpus, steps } = this.steps();
    const w = Math.max(200, this.body.clientWidth);
    const h = Math.max(1, cpus.length) * ROW_H + 22;
    const dpr = window.devicePixelRatio || 1;
    cv.width = Math.round(w * dpr);
    cv.height = Math.round(h * dpr);
    cv.style.width = `${w}px`;
    cv.style.height = `${h}px`;
    const ctx = cv.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    ctx.fillStyle = '#666';
    if (!tl || !steps.length || !(tl.to_unix_ns > tl.from_unix_ns)) {
      ctx.textAlign = 'center';
      ctx.fillText('the timeline has no noise in this range', w / 2, h / 2);
      return;
    }
    const t0 = tl.from_unix_ns;
    const span = tl.to_unix_ns - tl.from_unix_ns;
    const plotW = w - LEFT - RIGHT;
    const xAt = (ns: number): number => LEFT + ((ns - t0) / span) * plotW;
    let max = 0;
    for (const s of steps) {
      for (const c of Object.values(s.noise!.cpus)) max = Math.max(max, (c.softirq_s || 0) + (c.irq_s || 0) + (c.steal_s || 0));
    }
    cpus.forEach((cpu, row) => {
      const y0 = row * ROW_H;
      ctx.fillStyle = '#555';
      ctx.textAlign = 'right';
      ctx.fillText(`CPU ${cpu}`, LEFT - 6, y0 + ROW_H / 2);
      ctx.fillStyle = '#f3f4f6';
      ctx.fillRect(LEFT, y0 + 2, plotW, ROW_H - 4);
      if (max <= 0) return;
      for (const s of steps) {
        const c = s.noise!.cpus[String(cpu)];
        if (!c) continue;
        const x0 = Math.max(LEFT, xAt(s.start_unix_ns));
        const end = tl.step_ns ? Math.min(s.end_unix_ns, s.start_unix_ns + tl.step_ns) : s.end_unix_ns;
        const x1 = Math.min(LEFT + plotW, xAt(end));
        const bw = Math.max(1, x1 - x0 - (x1 - x0 > 3 ? 1 : 0));
        let y = y0 + ROW_H - 2;
        for (const p of PARTS) {
          const v = Number(c[p.key]) || 0;
          if (v <= 0) continue;
          const bh = (v / max) * (ROW_H - 4);
          ctx.fillStyle = p.colour;
          ctx.fillRect(x0, y - bh, bw, bh);
          y -= bh;
        }
      }
    });
    const yAxis = cpus.length * ROW_H + 11;
    ctx.fillStyle = '#555';
    ctx.textAlign = 'left';
    ctx.fillText(dateTime(t0 / 1e9), LEFT, yAxis);
    ctx.textAlign = 'right';
    ctx.fillText(`${clock(tl.to_unix_ns / 1e9)} · tallest bar ${formatNs(max * 1e9)}`, LEFT + plotW, yAxis);
  }

  /** For tests: what the page shows. */
  summary(): {
    format: NoiseFormat;
    capture: string | null;
    cpus: Array<{ cpu: number; softirq_ns: number; hardirq_ns: number | null; steal_ns: number }>;
    sources: Array<{ source: string; ns: number }>;
    flame: { total: number; nodes: number; leaves: Array<{ path: string[]; ns: number }> } | null;
    victims: Array<{ tid: number; pid: number; comm: string; lost_ns: number; interrupted_ns: number; runnable_ns: number }> | null;
    victimsNote: string | null;
    timelineSteps: number;
    timelineCpus: number[];
  } | null {
    const d = this.data;
    if (!d) return null;
    const { cpus, steps } = this.steps();
    const t = this.graph.tree;
    const leaves: Array<{ path: string[]; ns: number }> = [];
    if (t) {
      for (let i = 1; i < t.n; i++) {
        if (t.end[i] !== i + 1) continue;
        const path: string[] = [];
        for (let j = i; j > 0; j = t.parent[j]!) path.push(nodeName(t, j));
        leaves.push({ path: path.reverse(), ns: t.value[i]! });
      }
    }
    const v = this.victimView;
    return {
      format: noiseFormat(d),
      capture: d.capture ?? null,
      cpus: d.cpus.map((c) => ({ cpu: c.cpu, ...cpuTimes(c) })),
      sources: (d.top_sources ?? []).map((s) => ({ source: s.source, ns: s.ns })),
      flame: t ? { total: t.total, nodes: t.n, leaves } : null,
      victims: v && 'rows' in v ? v.rows.map((r) => ({ tid: r.tid, pid: r.pid, comm: r.comm, lost_ns: r.lostNs, interrupted_ns: r.interruptedNs, runnable_ns: r.runnableNs })) : null,
      victimsNote: v && 'note' in v ? v.note : null,
      timelineSteps: steps.length,
      timelineCpus: cpus,
    };
  }
}
