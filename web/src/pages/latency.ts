// The latency page: `/api/v1/histograms` over the range. Latency histograms come from deep captures only; per
// capture, its percentile table and a percentile plot per kind (run queue, off-CPU, syscalls, IRQs, …), with the
// `--slo` thresholds as lines. Without any capture, the API's own sentence (`note`).

import { getJson, type HistogramsResponse, type LatencyHistogram, type Params, type SloResult } from '../api';
import { dateTime, clock, esc, formatNs, formatPercent } from '../format';
import type { Scheduler } from '../sched';
import { Page } from './page';

const KIND_LABEL: Record<string, string> = {
  runq: 'run queue',
  off_cpu: 'off-CPU',
  syscall: 'syscalls',
  irq: 'hard IRQs',
  vector: 'vectors',
  softirq: 'softirqs',
};
const LINE_COLOURS = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#000000', '#8c6d31'];
const MAX_LINES = 8;
const POINTS: ReadonlyArray<{ label: string; key: keyof LatencyHistogram; x: number }> = [
  { label: 'p50', key: 'p50_ns', x: Math.log10(2) },
  { label: 'p90', key: 'p90_ns', x: 1 },
  { label: 'p99', key: 'p99_ns', x: 2 },
  { label: 'p99.9', key: 'p999_ns', x: 3 },
  { label: 'p99.99', key: 'p9999_ns', x: 4 },
  { label: 'max', key: 'max_ns', x: 5 },
];

export class LatencyPage extends Page {
  data: HistogramsResponse | null = null;
  /** The kind shown per capture. */
  private readonly kind = new Map<string, string>();

  constructor(root: HTMLElement, sched: Scheduler) {
    super(root, sched, 'latency');
    this.body.addEventListener('click', (ev) => {
      const b = (ev.target as HTMLElement).closest<HTMLButtonElement>('button[data-kind]');
      if (!b) return;
      this.kind.set(b.dataset.capture!, b.dataset.kind!);
      this.show();
    });
  }

  load(range: Params): Promise<void> {
    return this.run(async (signal) => {
      this.data = null;
      this.data = await getJson<HistogramsResponse>('histograms', { from: range.from, to: range.to }, signal);
      this.show();
    });
  }

  private show(): void {
    const d = this.data;
    if (!d) return;
    if (!d.captures?.length) {
      this.body.innerHTML = '';
      this.setMessage('empty', d.note || 'no deep capture overlaps this range');
      return;
    }
    this.setMessage(null);
    const parts: string[] = [];
    if (d.note) parts.push(`<p class="page-note" data-testid="latency-note">${esc(d.note)}</p>`);
    for (const c of d.captures) {
      const h = c.histograms ?? {};
      const span = `${dateTime(c.started_unix_ns / 1e9)} – ${c.ended_unix_ns ? clock(c.ended_unix_ns / 1e9) : 'running'}`;
      parts.push(`<section class="capture-card" data-testid="latency-capture" data-capture="${esc(c.capture)}">`);
      parts.push(`<h2>${esc(c.capture)} <small>${esc(c.reason)} · ${esc(span)}${h.dropped ? ` · ${h.dropped} events dropped` : ''}</small></h2>`);
      if (h.absent || !h.histograms) {
        parts.push(`<p class="message empty">${esc(h.reason ?? 'this capture has no latency histograms')}</p></section>`);
        continue;
      }
      const kinds = [...new Set(h.histograms.map((x) => x.kind))];
      if (!kinds.length) {
        parts.push('<p class="message empty">this capture counted no latency</p></section>');
        continue;
      }
      let kind = this.kind.get(c.capture);
      if (!kind || !kinds.includes(kind)) kind = kinds.includes('syscall') ? 'syscall' : kinds[0]!;
      parts.push('<div class="seg kinds" role="group" aria-label="Kind">');
      for (const k of kinds) {
        parts.push(`<button type="button" data-testid="latency-kind-${esc(k)}" data-kind="${esc(k)}" data-capture="${esc(c.capture)}" aria-pressed="${k === kind}">${esc(KIND_LABEL[k] ?? k)}</button>`);
      }
      parts.push('</div>');
      const hs = h.histograms.filter((x) => x.kind === kind).sort((a, b) => Number(b.aggregate) - Number(a.aggregate) || b.count - a.count);
      const slo = (h.slo ?? []).filter((s) => s.kind === kind);
      parts.push(plot(hs.slice(0, MAX_LINES), slo));
      parts.push(table(hs));
      if (h.slo?.length) parts.push(sloTable(h.slo));
      if (h.precision) parts.push(`<p class="page-note">${esc(h.precision)}</p>`);
      parts.push('</section>');
    }
    this.body.innerHTML = parts.join('');
  }

  summary(): { note: string | null; captures: Array<{ id: string; reason: string; histograms: number; kinds: string[]; slo: SloResult[]; absent: string | null }> } | null {
    const d = this.data;
    if (!d) return null;
    return {
      note: d.note ?? null,
      captures: d.captures.map((c) => ({
        id: c.capture,
        reason: c.reason,
        histograms: c.histograms?.histograms?.length ?? 0,
        kinds: [...new Set((c.histograms?.histograms ?? []).map((x) => x.kind))],
        slo: c.histograms?.slo ?? [],
        absent: c.histograms?.absent ? (c.histograms.reason ?? '') : null,
      })),
    };
  }
}

function table(hs: LatencyHistogram[]): string {
  const rows = hs
    .map(
      (x) =>
        `<tr data-testid="latency-row"><td class="fn">${esc(x.name)}${x.aggregate ? ' <small>(all)</small>' : ''}</td><td class="num">${x.count.toLocaleString('en-US')}</td>` +
        `<td class="num">${esc(formatNs(x.mean_ns))}</td>` +
        POINTS.map((p) => `<td class="num">${esc(formatNs(Number(x[p.key]) || 0))}</td>`).join('') +
        '</tr>',
    )
    .join('');
  return (
    '<div class="table-wrap"><table class="top latency" data-testid="latency-table"><thead><tr><th>name</th><th class="num">count</th><th class="num">mean</th>' +
    POINTS.map((p) => `<th class="num">${p.label}</th>`).join('') +
    `</tr></thead><tbody>${rows}</tbody></table></div>`
  );
}

function sloTable(slo: SloResult[]): string {
  const rows = slo
    .map((s) => `<tr data-testid="latency-slo"><td class="fn">${esc(s.spec)}</td><td class="num">${s.events.toLocaleString('en-US')}</td><td class="num">${s.exceeding.toLocaleString('en-US')}</td><td class="num">${formatPercent(s.fraction)}</td></tr>`)
    .join('');
  return `<h3>SLO thresholds</h3><table class="top latency"><thead><tr><th>threshold</th><th class="num">events</th><th class="num">above it</th><th class="num">share</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** Latency (log scale) against the percentile (log scale of 1 / (1 - q)), one line per histogram. */
function plot(hs: LatencyHistogram[], slo: SloResult[]): string {
  const W = 640;
  const H = 260;
  const L = 64;
  const R = 150;
  const T = 10;
  const B = 28;
  const values: number[] = [];
  for (const x of hs) for (const p of POINTS) if (Number(x[p.key]) > 0) values.push(Number(x[p.key]));
  for (const s of slo) if (s.threshold_ns > 0) values.push(s.threshold_ns);
  if (!values.length) return '<p class="message empty">no values to plot</p>';
  let lo = Math.floor(Math.log10(Math.min(...values)));
  let hi = Math.ceil(Math.log10(Math.max(...values)));
  if (hi <= lo) hi = lo + 1;
  const xAt = (x: number): number => L + ((x - POINTS[0]!.x) / (POINTS[POINTS.length - 1]!.x - POINTS[0]!.x)) * (W - L - R);
  const yAt = (ns: number): number => T + (1 - (Math.log10(Math.max(ns, 10 ** lo)) - lo) / (hi - lo)) * (H - T - B);
  const out: string[] = [`<svg class="latency-plot" data-testid="latency-plot" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="latency percentiles">`];
  for (let e = lo; e <= hi; e++) {
    const y = yAt(10 ** e);
    out.push(`<line x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#e3e5e8"/><text x="${L - 6}" y="${y + 4}" text-anchor="end" font-size="11" fill="#555">${esc(formatNs(10 ** e))}</text>`);
  }
  for (const p of POINTS) {
    const x = xAt(p.x);
    out.push(`<line x1="${x}" x2="${x}" y1="${T}" y2="${H - B}" stroke="#eef0f2"/><text x="${x}" y="${H - B + 16}" text-anchor="middle" font-size="11" fill="#555">${p.label}</text>`);
  }
  for (const s of slo) {
    const y = yAt(s.threshold_ns);
    out.push(
      `<line data-testid="latency-slo-line" x1="${L}" x2="${W - R}" y1="${y}" y2="${y}" stroke="#b3261e" stroke-dasharray="5 4"/>` +
        `<text x="${L + 4}" y="${y - 4}" font-size="11" fill="#b3261e">${esc(s.spec)} (${formatPercent(s.fraction)} above)</text>`,
    );
  }
  hs.forEach((x, k) => {
    const colour = LINE_COLOURS[k % LINE_COLOURS.length]!;
    const pts = POINTS.filter((p) => Number(x[p.key]) > 0).map((p) => `${xAt(p.x).toFixed(1)},${yAt(Number(x[p.key])).toFixed(1)}`);
    if (!pts.length) return;
    out.push(`<polyline fill="none" stroke="${colour}" stroke-width="1.8" points="${pts.join(' ')}"/>`);
    for (const pt of pts) out.push(`<circle cx="${pt.split(',')[0]}" cy="${pt.split(',')[1]}" r="2.5" fill="${colour}"/>`);
    const label = x.name.length > 22 ? x.name.slice(0, 21) + '…' : x.name;
    out.push(`<text x="${W - R + 4}" y="${T + 12 + k * 14}" font-size="11" fill="${colour}">${esc(label)}</text>`);
  });
  out.push('</svg>');
  return out.join('');
}
