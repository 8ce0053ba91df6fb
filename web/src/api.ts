// The agent's JSON API (docs/api.md): types of its answers, and one way to ask it.
// Every request goes to the same origin; nothing else is ever fetched.

export interface ProfileNode {
  name: string;
  value: number;
  self?: number;
  children?: ProfileNode[];
  /** Children the node budget left out, folded into one node per parent. */
  other?: boolean;
}

export type View = 'cpu' | 'offcpu' | 'wall';
export const VIEWS: readonly View[] = ['cpu', 'offcpu', 'wall'];

export interface ProfileResponse {
  from_unix_ns: number;
  to_unix_ns: number;
  windows: number;
  covered_from_unix_ns: number;
  covered_to_unix_ns: number;
  view: View;
  unit: string;
  root: ProfileNode;
}

export interface TimelineStep {
  start_unix_ns: number;
  end_unix_ns: number;
  segments?: number;
  cpu_s: number;
  runqueue_s: number;
  sleeping_s: number;
  disk_s: number;
  other_s: number;
  threads?: number;
  samples?: number;
  lost_samples?: number;
  dropped_events?: number;
  noise?: StepNoise | null;
}

export interface TimelineResponse {
  from_unix_ns: number;
  to_unix_ns: number;
  step_ns?: number;
  steps: TimelineStep[];
}

export interface StatusResponse {
  /** `agent` (collecting now) or `serve` (`tailprof serve DIR`: captures on disk, read-only). */
  mode?: 'agent' | 'serve' | string;
  tier?: string;
  ready?: boolean;
  window_s?: number;
  collecting?: { windows?: number; last_window_end_unix_ns?: number };
  // serve mode:
  dir?: string;
  /** The span the captures' data covers (0 or absent when there is none). */
  from_unix_ns?: number;
  to_unix_ns?: number;
  captures?: number;
  segments?: number;
  /** Capture directories that could not be read, and why. */
  skipped?: Array<{ path: string; reason: string }>;
}

/** Parameters the profile endpoint takes besides the range and the view. */
export const FILTER_KEYS = ['pid', 'comm', 'cgroup', 'container', 'unit', 'pod', 'state', 'syscall'] as const;
export type FilterKey = (typeof FILTER_KEYS)[number];

export type Params = Record<string, string | undefined>;

export type ApiErrorKind = 'unreachable' | 'api' | 'auth';

/** A failure shown to a person as one sentence. */
export class ApiError extends Error {
  readonly kind: ApiErrorKind;
  readonly status: number;
  constructor(kind: ApiErrorKind, message: string, status = 0) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

/** Where the API lives: `<meta name="tailprof-api" content="/">` may move it (default: this origin's root). */
export function apiBase(): string {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="tailprof-api"]');
  let base = meta?.content || '/';
  if (!base.endsWith('/')) base += '/';
  return base;
}

export function agentName(): string {
  return new URL(apiBase(), location.href).href.replace(/\/$/, '');
}

export function apiUrl(path: string, params: Params): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== '') q.set(k, v);
  }
  const qs = q.toString();
  return `${apiBase()}api/v1/${path}${qs ? '?' + qs : ''}`;
}

function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === 'AbortError';
}

export { isAbort };

// ---- the bearer token ----

const TOKEN_KEY = 'tailprof-token';

/** The agent's bearer token pasted into the page (kept for this tab only), or null. */
export function getToken(): string | null {
  try {
    const t = sessionStorage.getItem(TOKEN_KEY);
    return t ? t : null;
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // No storage (a sandboxed frame): the token lives as long as nothing asks again.
  }
}

/** The headers every API request carries. */
export function authHeaders(extra: Record<string, string> = {}): Record<string, string> {
  const t = getToken();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

/** When each request of a path last started, got its headers, its body, and was parsed (performance.now()). */
export interface RequestTiming {
  start: number;
  headers: number;
  body: number;
  parsed: number;
  bytes: number;
}
export const timings: Record<string, RequestTiming> = {};

/** Listeners told when the agent asks for a token (401). */
const authListeners: Array<(sentence: string) => void> = [];
export function onAuthNeeded(f: (sentence: string) => void): void {
  authListeners.push(f);
}

function unreachable(status = 0): ApiError {
  return new ApiError('unreachable', `the agent at ${agentName()} is not answering`, status);
}

/** Any request to the API; failures become an ApiError with one sentence. */
async function request(path: string, params: Params, init: RequestInit & { accept?: string }): Promise<{ res: Response; text: string; t: RequestTiming }> {
  const url = apiUrl(path, params);
  const t: RequestTiming = { start: performance.now(), headers: 0, body: 0, parsed: 0, bytes: 0 };
  let res: Response;
  try {
    res = await fetch(url, { ...init, headers: authHeaders({ Accept: init.accept ?? 'application/json', ...((init.headers as Record<string, string>) ?? {}) }) });
  } catch (e) {
    if (isAbort(e)) throw e;
    throw unreachable();
  }
  t.headers = performance.now();
  let text: string;
  try {
    text = await res.text();
  } catch (e) {
    if (isAbort(e)) throw e;
    throw unreachable();
  }
  t.body = performance.now();
  t.bytes = text.length;
  return { res, text, t };
}

function failure(path: string, res: Response, body: unknown): ApiError {
  const sentence = errorSentence(body);
  if (res.status === 401) {
    const s = sentence ? `${sentence.replace(/\.$/, '')}.` : 'the agent wants its bearer token.';
    for (const f of authListeners) f(s);
    return new ApiError('auth', getToken() ? 'the agent refused this token: paste the right one above' : 'the agent wants its bearer token: paste it above', 401);
  }
  if (sentence) return new ApiError('api', sentence, res.status);
  if (res.status === 502 || res.status === 504) return unreachable(res.status);
  return new ApiError('api', `the agent answered ${res.status}${res.statusText ? ' ' + res.statusText : ''} to ${path}`, res.status);
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** GET a JSON answer; throws ApiError with a sentence for a person (or the AbortError untouched). */
export async function getJson<T>(path: string, params: Params, signal?: AbortSignal): Promise<T> {
  const { res, text, t } = await request(path, params, { signal: signal ?? null });
  const body = parse(text);
  t.parsed = performance.now();
  timings[path] = t;
  if (!res.ok) throw failure(path, res, body);
  if (body === undefined) {
    throw new ApiError('api', `the agent's answer to ${path} is not JSON`, res.status);
  }
  return body as T;
}

/** POST a JSON body; the answer's status and body (an error status is an answer, not an exception, but 401 and
 * an unreachable agent are). */
export async function postJson<T>(path: string, payload: unknown): Promise<{ status: number; body: T | null; error: string | null; retryAfter: string | null }> {
  const { res, text } = await request(path, {}, { method: 'POST', body: JSON.stringify(payload), headers: { 'Content-Type': 'application/json' } });
  const body = parse(text);
  if (res.ok) return { status: res.status, body: (body as T) ?? null, error: null, retryAfter: null };
  if (res.status === 401 || res.status === 502 || res.status === 504) throw failure(path, res, body);
  const e = failure(path, res, body);
  return { status: res.status, body: null, error: e.message, retryAfter: res.headers.get('Retry-After') };
}

/** Downloads an API URL with the token as a file (a link cannot carry the Authorization header). */
export async function downloadWithToken(href: string, filename: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(href, { headers: authHeaders() });
  } catch {
    throw unreachable();
  }
  if (!res.ok) {
    const text = await res.text().catch(() => '');
    throw failure(href, res, parse(text));
  }
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function errorSentence(body: unknown): string | null {
  if (body && typeof body === 'object' && 'error' in body) {
    const e = (body as { error: unknown }).error;
    if (typeof e === 'string' && e) return e;
  }
  return null;
}

/** Unix nanoseconds to the API's seconds-with-decimals form (microsecond precision is plenty here). */
export function nsToParam(ns: number): string {
  return (ns / 1e9).toFixed(6);
}

// ---- noise, histograms, captures ----

export interface Estimate {
  samples: number;
  ns: number;
  ci95_ns?: [number, number];
}

export interface NoiseCpu {
  cpu: number;
  runtime_ns: number;
  procfs_time: { softirq_ns: number; softirq_pct: number; hardirq_ns: number | null; steal_ns: number };
  procfs_counts?: { softirq_total?: number; irq_total?: number };
  sampled?: {
    periods?: number;
    samples?: number;
    noise?: Estimate;
    irq?: Estimate;
    softirq?: Estimate;
    nmi?: Estimate;
    thread?: Estimate;
    sources?: Array<Estimate & { source: string; kind: string; name: string }>;
  };
}

/** Count, own time and the longest single event of a source (deep tier). */
export interface NoiseStats {
  count?: number;
  ns: number;
  max_ns?: number;
}

/** One CPU of a deep capture's noise.json: every figure measured by hooks. */
export interface DeepNoiseCpu {
  cpu: number;
  runtime_ns: number;
  noise_ns: number;
  noise_pct?: number;
  max_single_ns?: number;
  max_single_source?: string | null;
  irq?: NoiseStats;
  softirq?: NoiseStats;
  nmi?: NoiseStats;
  thread?: NoiseStats;
  steal_ns?: number;
  /** IRQ lines by number (`"36"`), then vectors by /proc/interrupts row (`"LOC"`). */
  irqs?: Record<string, NoiseStats & { name?: string | null }>;
  softirqs?: Record<string, NoiseStats>;
  threads?: Record<string, NoiseStats>;
}

export interface VictimThread {
  tid: number;
  tgid: number;
  comm?: string | null;
  interrupted?: { count: number; ns: number; by_source?: Array<{ source: string; count: number; ns: number; max_ns?: number }> };
  runnable_behind_ns?: number;
  behind?: Array<{ tid: number; comm: string; ns: number; count: number }>;
  behind_unknown_ns?: number;
}

export type NoiseSource = Partial<Estimate> & { source: string; kind: string; name: string; ns: number; count?: number; max_ns?: number; cpus?: number[] };

/**
 * `/api/v1/noise`: the continuous tier's report (per CPU `procfs_time`, `procfs_counts` and `sampled`), or in
 * `tailprof serve` a capture's noise.json, which for a deep capture is the deep report (per CPU hook-measured
 * sources, and `victims` with `--pid`).
 */
export interface NoiseResponse {
  tier?: string;
  duration_ns?: number;
  cannot_show?: string[];
  accounting?: { hardirq_time?: string; softirq_time?: string; note?: string };
  sampling?: { frequency_hz?: number; samples?: number; lost_samples?: number };
  cpus: Array<NoiseCpu | DeepNoiseCpu>;
  top_sources?: NoiseSource[];
  windows_without_noise?: number;
  // deep:
  threshold_ns?: number;
  victims?: { pids: number[]; threads: VictimThread[] } | null;
  dropped?: Record<string, number>;
  missing_hooks?: string[];
  /** serve mode: the capture whose noise.json this is. */
  capture?: string;
}

export interface StepNoise {
  cpus: Record<string, { softirq_s: number; irq_s: number | null; steal_s: number }>;
  sources: Record<string, number>;
}

export interface LatencyHistogram {
  kind: string;
  id: number;
  name: string;
  aggregate: boolean;
  count: number;
  sum_ns: number;
  mean_ns: number;
  p50_ns: number;
  p90_ns: number;
  p99_ns: number;
  p999_ns: number;
  p9999_ns: number;
  max_ns: number;
  buckets: Array<[number, number, number]>;
}

export interface SloResult {
  spec: string;
  kind: string;
  target: string;
  threshold_ns: number;
  events: number;
  exceeding: number;
  fraction: number;
}

export interface HistogramsDoc {
  duration_ns?: number;
  precision?: string;
  dropped?: number;
  histograms?: LatencyHistogram[];
  slo?: SloResult[];
  /** The continuous tier's histograms.json says they are absent, and why. */
  absent?: boolean;
  reason?: string;
}

export interface HistogramsResponse {
  from_unix_ns: number;
  to_unix_ns: number;
  note?: string;
  captures: Array<{ capture: string; reason: string; started_unix_ns: number; ended_unix_ns: number | null; histograms: HistogramsDoc }>;
}

export interface CaptureRecord {
  id: string;
  reason: string;
  trigger?: string;
  tier?: string;
  target?: Record<string, string | number>;
  duration_s?: number;
  started_unix_ns: number;
  ended_unix_ns?: number | null;
  state?: string;
  error?: string | null;
  files?: string[];
}

export interface CapturesResponse {
  /** `tailprof serve`: the captures are shown, none can be started. */
  read_only?: boolean;
  limits?: { max_duration?: string; cooldown?: string; default_duration?: string; keep?: number };
  running?: boolean;
  deleted?: number;
  captures: CaptureRecord[];
}

/** A capture's span in Unix seconds: started..ended (a running one: started + its duration). */
export function captureSpan(c: CaptureRecord): [number, number] {
  const from = c.started_unix_ns / 1e9;
  const end = c.ended_unix_ns ?? (c.duration_s ? c.started_unix_ns + c.duration_s * 1e9 : c.started_unix_ns);
  return [from, Math.max(from, end / 1e9)];
}
