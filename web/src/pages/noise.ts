// The noise page: `/api/v1/noise` over the range (per CPU softirq, hard IRQ and steal time from /proc/stat, and
// the sources the on-CPU samples saw, as the report prints them), and the timeline's noise per CPU and step.

import { ApiError, type Estimate, getJson, type NoiseResponse, type Params, type TimelineResponse } from '../api';
import { clock, dateTime, esc, formatNs } from '../format';
import type { Renderable, Scheduler } from '../sched';
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

export class NoisePage extends Page implements Renderable {
  data: NoiseResponse | null = null;
  private timeline: TimelineResponse | null = null;
  private canvas: HTMLCanvasElement | null = null;

  constructor(root: HTMLElement, sched: Scheduler) {
    super(root, sched, 'noise');
  }

  setTimeline(tl: TimelineResponse | null): void {
    this.timeline = tl;
    this.sched.invalidate(this);
  }

  load(range: Params): Promise<void> {
    return this.run(async (signal) => {
      this.data = null;
      let data: NoiseResponse;
      try {
        data = await getJson<NoiseResponse>('noise', { from: range.from, to: range.to }, signal);
      } catch (e) {
        // 404: no stored window with noise overlaps the range, which is an empty range rather than a failure.
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

  private show(): void {
    const d = this.data;
    if (!d || !d.cpus?.length) {
      this.body.innerHTML = '';
      this.setMessage('empty', 'no noise was measured in this range');
      return;
    }
    this.setMessage(null);
    const hardirq = (c: NoiseResponse['cpus'][number]): string =>
      c.procfs_time.hardirq_ns === null || c.procfs_time.hardirq_ns === undefined
        ? `<span class="dim" title="${esc(d.accounting?.note ?? '')}">not accounted</span>`
        : esc(formatNs(c.procfs_time.hardirq_ns));
    const rows = d.cpus
      .map(
        (c) =>
          `<tr data-testid="noise-row" data-cpu="${c.cpu}"><td>${c.cpu}</td><td class="num">${esc(formatNs(c.runtime_ns))}</td>` +
          `<td class="num">${esc(formatNs(c.procfs_time.softirq_ns))}</td><td class="num">${(c.procfs_time.softirq_pct ?? 0).toFixed(2)}%</td>` +
          `<td class="num">${hardirq(c)}</td><td class="num">${esc(formatNs(c.procfs_time.steal_ns))}</td>` +
          `<td class="num">${estimate(c.sampled?.irq)}</td><td class="num">${estimate(c.sampled?.softirq)}</td><td class="num">${estimate(c.sampled?.thread)}</td>` +
          `<td class="num">${c.sampled?.samples ?? 0} / ${c.sampled?.periods ?? 0}</td></tr>`,
      )
      .join('');
    const top = d.top_sources ?? [];
    const topRows = top.length
      ? top
          .map(
            (t) =>
              `<tr data-testid="noise-source"><td class="fn">${esc(t.source)}</td><td class="num">${t.samples}</td><td class="num">${estimate(t)}</td><td>${esc(cpuList(t.cpus ?? []))}</td></tr>`,
          )
          .join('')
      : '<tr><td colspan="4" class="none">no sample landed in interrupt context or a kernel thread on these CPUs</td></tr>';
    const hz = d.sampling?.frequency_hz;
    const span = d.duration_ns ? `over ${esc(formatNs(d.duration_ns))} ` : '';
    const skipped = d.windows_without_noise ? ` · ${d.windows_without_noise} window${d.windows_without_noise === 1 ? '' : 's'} without noise left out` : '';
    this.body.innerHTML =
      `<p class="page-note" data-testid="noise-summary">OS noise ${span}on ${d.cpus.length} CPU${d.cpus.length === 1 ? '' : 's'}` +
      `${d.tier ? ` (${esc(d.tier)} tier)` : ''}${skipped}. ${esc(d.accounting?.note ?? '')}</p>` +
      `<h2>Per CPU</h2><div class="table-wrap"><table class="top noise" data-testid="noise-table"><thead><tr>` +
      `<th>CPU</th><th class="num">runtime</th><th class="num">softirq</th><th class="num">%</th><th class="num">hard IRQ</th><th class="num">steal</th>` +
      `<th class="num">sampled IRQ</th><th class="num">sampled softirq</th><th class="num">sampled kthreads</th><th class="num">samples / periods</th>` +
      `</tr></thead><tbody>${rows}</tbody></table></div>` +
      `<p class="page-note">From /proc/stat: softirq, hard IRQ and steal time; sampled${hz ? ` at ${hz} Hz` : ''}: estimates with their 95% intervals.</p>` +
      `<h2>Top sampled sources</h2><div class="table-wrap"><table class="top noise" data-testid="noise-sources"><thead><tr><th>source</th><th class="num">samples</th><th class="num">time [95% interval]</th><th>CPUs</th></tr></thead><tbody>${topRows}</tbody></table></div>` +
      `<h2>Noise per CPU over time</h2><div class="noise-legend">${PARTS.map((p) => `<span><span class="swatch" style="background:${p.colour}"></span>${p.label}</span>`).join('')}</div>`;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'noise-timeline';
    this.canvas.dataset.testid = 'noise-timeline';
    this.body.append(this.canvas);
    this.sched.invalidate(this);
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
  summary(): { cpus: Array<{ cpu: number; softirq_ns: number; hardirq_ns: number | null; steal_ns: number }>; sources: Array<{ source: string; ns: number }>; timelineSteps: number; timelineCpus: number[] } | null {
    const d = this.data;
    if (!d) return null;
    const { cpus, steps } = this.steps();
    return {
      cpus: d.cpus.map((c) => ({ cpu: c.cpu, softirq_ns: c.procfs_time.softirq_ns, hardirq_ns: c.procfs_time.hardirq_ns ?? null, steal_ns: c.procfs_time.steal_ns })),
      sources: (d.top_sources ?? []).map((t) => ({ source: t.source, ns: t.ns })),
      timelineSteps: steps.length,
      timelineCpus: cpus,
    };
  }
}
