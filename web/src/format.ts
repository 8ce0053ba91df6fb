// Numbers and times for people.

const grouped = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

export function isTime(unit: string): boolean {
  return unit === 'nanoseconds' || unit === 'ns';
}

/** A duration in nanoseconds: µs, ms or s with three significant digits or so. */
export function formatNs(ns: number): string {
  const a = Math.abs(ns);
  if (a === 0) return '0 s';
  if (a < 1e3) return `${ns.toFixed(0)} ns`;
  if (a < 1e6) return `${trim(ns / 1e3)} µs`;
  if (a < 1e9) return `${trim(ns / 1e6)} ms`;
  if (a < 1e12) return `${trim(ns / 1e9)} s`;
  return `${grouped.format(ns / 1e9)} s`;
}

export function formatSeconds(s: number): string {
  return formatNs(s * 1e9);
}

function trim(v: number): string {
  const a = Math.abs(v);
  return v.toFixed(a < 10 ? 2 : a < 100 ? 1 : 0);
}

export function formatValue(v: number, unit: string): string {
  if (isTime(unit)) return formatNs(v);
  const n = grouped.format(v);
  return unit === 'samples' ? `${n} sample${v === 1 ? '' : 's'}` : `${n} ${unit}`;
}

/** A short number for tables: no unit word for samples. */
export function formatShort(v: number, unit: string): string {
  return isTime(unit) ? formatNs(v) : grouped.format(v);
}

export function formatPercent(share: number): string {
  if (!Number.isFinite(share)) return '–';
  const p = share * 100;
  if (p === 0) return '0%';
  if (p < 0.01) return '<0.01%';
  return `${p < 10 ? p.toFixed(2) : p.toFixed(1)}%`;
}

function pad(n: number): string {
  return n < 10 ? '0' + n : String(n);
}

/** Local wall-clock time of a Unix time in seconds: HH:MM:SS. */
export function clock(unixS: number): string {
  const d = new Date(unixS * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Local date and time: YYYY-MM-DD HH:MM:SS. */
export function dateTime(unixS: number): string {
  const d = new Date(unixS * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(unixS)}`;
}

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe to put inside HTML. */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c]!);
}
