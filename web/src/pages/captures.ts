// The captures page: `/api/v1/captures` (every capture kept: why, what started it, its state, span, target and
// files, and an "open" link to its span on the Profile tab) and a form that starts one (POST /api/v1/captures),
// showing the new record or the agent's refusal. `tailprof serve` answers `read_only`: the form is hidden.

import { apiUrl, type CaptureRecord, captureSpan, type CapturesResponse, downloadWithToken, getJson, getToken, postJson } from '../api';
import { clock, dateTime, esc } from '../format';
import type { Scheduler } from '../sched';
import { Page, sentence } from './page';

const TARGETS = ['pid', 'comm', 'unit', 'cgroup', 'container', 'pod'] as const;
const OPEN_IN_TAB = /\.(svg|json|txt|folded|html)$/;

export interface CaptureResult {
  status: number;
  record: CaptureRecord | null;
  error: string | null;
}

function targetText(t: CaptureRecord['target'] | undefined): string {
  const parts = Object.entries(t ?? {}).map(([k, v]) => `${k}=${v}`);
  return parts.length ? parts.join(' ') : 'whole host';
}

export class CapturesPage extends Page {
  data: CapturesResponse | null = null;
  result: CaptureResult | null = null;
  active = false;
  private readonly form: HTMLFormElement;
  private readonly out: HTMLElement;
  private readonly list: HTMLElement;
  private poll = 0;
  private posting = false;

  private readonly roNote: HTMLElement;

  /** `onOpen`: show the profile of a capture's span (Unix seconds); `hrefFor`: the address that shows it. */
  constructor(
    root: HTMLElement,
    sched: Scheduler,
    private readonly onOpen: (from: number, to: number) => void,
    private readonly hrefFor: (from: number, to: number) => string,
    private readonly onList?: (d: CapturesResponse) => void,
  ) {
    super(root, sched, 'captures');
    this.form = document.createElement('form');
    this.form.className = 'capture-form';
    this.form.dataset.testid = 'capture-form';
    this.form.autocomplete = 'off';
    this.form.innerHTML =
      '<h2>Start a capture</h2>' +
      '<label>Duration <input name="duration" data-testid="capture-duration" size="7" placeholder="30s"></label>' +
      `<label>Target <select name="kind" data-testid="capture-target-kind"><option value="">whole host</option>${TARGETS.map((t) => `<option value="${t}">${t}</option>`).join('')}</select></label>` +
      '<input name="target" data-testid="capture-target" size="22" placeholder="e.g. 1234, nginx.service" disabled>' +
      '<label>Reason <input name="reason" data-testid="capture-reason" size="28" placeholder="why (kept with the capture)"></label>' +
      '<button type="submit" data-testid="capture-submit">Start</button>';
    this.out = document.createElement('div');
    this.out.className = 'capture-result';
    this.out.dataset.testid = 'capture-result';
    this.out.hidden = true;
    this.list = this.body;
    this.roNote = document.createElement('p');
    this.roNote.className = 'page-note';
    this.roNote.dataset.testid = 'captures-read-only';
    this.roNote.hidden = true;
    root.insertBefore(this.out, this.msg);
    root.insertBefore(this.form, this.out);
    root.insertBefore(this.roNote, this.form);
    const kind = this.form.elements.namedItem('kind') as HTMLSelectElement;
    const target = this.form.elements.namedItem('target') as HTMLInputElement;
    kind.addEventListener('change', () => {
      target.disabled = !kind.value;
      if (kind.value) target.focus();
    });
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.submit();
    });
    this.body.addEventListener('click', (ev) => {
      const me = ev as MouseEvent;
      const open = (ev.target as HTMLElement).closest<HTMLAnchorElement>('a[data-from]');
      if (open) {
        // A plain click opens it here; a middle or modified click opens the link's address elsewhere.
        if (me.button !== 0 || me.ctrlKey || me.metaKey || me.shiftKey || me.altKey) return;
        ev.preventDefault();
        this.onOpen(Number(open.dataset.from), Number(open.dataset.to));
        return;
      }
      const a = (ev.target as HTMLElement).closest<HTMLAnchorElement>('a[data-file]');
      if (!a || !getToken()) return;
      ev.preventDefault();
      downloadWithToken(a.href, a.dataset.file!).catch((e: unknown) => this.setMessage('error', sentence(e)));
    });
  }

  setActive(on: boolean): void {
    this.active = on;
    if (!on && this.poll) {
      clearTimeout(this.poll);
      this.poll = 0;
    }
  }

  load(): Promise<void> {
    if (this.poll) {
      clearTimeout(this.poll);
      this.poll = 0;
    }
    return this.run(async (signal) => {
      const data = await getJson<CapturesResponse>('captures', {}, signal);
      this.data = data;
      this.onList?.(data);
      this.show();
      // While one runs, look again now and then: its state and files change when it ends.
      if (data.running && this.active) this.poll = window.setTimeout(() => void this.load(), 2000);
    });
  }

  private show(): void {
    const d = this.data;
    if (!d) return;
    const ro = d.read_only === true;
    this.form.hidden = ro;
    if (ro) this.out.hidden = true;
    this.roNote.hidden = !ro;
    this.roNote.textContent = ro ? 'Read-only: tailprof serve shows the captures in its directory; it cannot start one (tailprof record or an agent does).' : '';
    const lim = ro ? undefined : d.limits;
    const dur = this.form.elements.namedItem('duration') as HTMLInputElement;
    if (lim?.default_duration) dur.placeholder = lim.default_duration;
    const limits = lim
      ? `<p class="page-note" data-testid="captures-limits">One capture at a time${lim.max_duration ? `, at most ${esc(lim.max_duration)} long` : ''}${lim.cooldown ? `, ${esc(lim.cooldown)} apart` : ''}${lim.keep ? `; the newest ${lim.keep} are kept` : ''}${d.deleted ? ` (${d.deleted} deleted so far)` : ''}.${d.running ? ' One is running now.' : ''}</p>`
      : '';
    if (!d.captures.length) {
      this.list.innerHTML = limits;
      this.setMessage('empty', ro ? 'no capture in this directory' : 'no capture yet: start one with the form above, an Alertmanager alert or a local rule');
      return;
    }
    this.setMessage(null);
    const rows = [...d.captures]
      .sort((a, b) => b.started_unix_ns - a.started_unix_ns)
      .map((c) => {
        const files = (c.files ?? [])
          .map((f) => {
            const href = apiUrl(`captures/${encodeURIComponent(c.id)}/files/${f.split('/').map(encodeURIComponent).join('/')}`, {});
            const how = OPEN_IN_TAB.test(f) ? 'target="_blank" rel="noopener"' : `download="${esc(c.id + '-' + f.replace(/\//g, '-'))}"`;
            return `<a href="${esc(href)}" ${how} data-file="${esc(c.id + '-' + f.replace(/\//g, '-'))}" data-testid="capture-file">${esc(f)}</a>`;
          })
          .join(' ');
        const st = c.state ?? '';
        const end = c.ended_unix_ns ? clock(c.ended_unix_ns / 1e9) : st === 'running' ? 'running' : '–';
        const [from, to] = captureSpan(c);
        const title = ro ? "This capture's profile: the range set to its span" : "The profile over this capture's span";
        const open = `<a class="open" href="${esc(this.hrefFor(from, to))}" data-testid="capture-open" data-from="${from.toFixed(3)}" data-to="${to.toFixed(3)}" title="${title}">open</a>`;
        const state = c.error ? `<span title="${esc(c.error)}">${esc(st)}</span>: ${esc(c.error)}` : esc(st || '–');
        return (
          `<tr data-testid="capture-row" data-id="${esc(c.id)}"><td class="fn">${esc(c.id)} ${open}</td><td>${esc(c.reason ?? '')}</td><td>${esc(c.trigger ?? '–')}</td><td>${esc(c.tier ?? '–')}</td>` +
          `<td class="state-${esc(st)}">${state}</td><td>${esc(dateTime(from))}</td><td>${esc(end)}</td><td>${esc(targetText(c.target))}</td><td class="files">${files || '–'}</td></tr>`
        );
      })
      .join('');
    this.list.innerHTML =
      limits +
      '<div class="table-wrap tall"><table class="top captures" data-testid="captures-table"><thead><tr><th>id</th><th>reason</th><th>trigger</th><th>tier</th><th>state</th><th>started</th><th>ended</th><th>target</th><th>files</th></tr></thead>' +
      `<tbody>${rows}</tbody></table></div>`;
  }

  private async submit(): Promise<void> {
    if (this.posting) return;
    const f = this.form.elements;
    const duration = (f.namedItem('duration') as HTMLInputElement).value.trim();
    const kind = (f.namedItem('kind') as HTMLSelectElement).value;
    const target = (f.namedItem('target') as HTMLInputElement).value.trim();
    const reason = (f.namedItem('reason') as HTMLInputElement).value.trim();
    const body: Record<string, unknown> = {};
    if (duration) body.duration = /^\d+(\.\d+)?$/.test(duration) ? Number(duration) : duration;
    if (kind) {
      if (!target) {
        this.showResult({ status: 0, record: null, error: `write the ${kind} to capture, or choose the whole host` });
        return;
      }
      if (kind === 'pid') {
        if (!/^\d+$/.test(target)) {
          this.showResult({ status: 0, record: null, error: `a pid is a number, not '${target}'` });
          return;
        }
        body.pid = Number(target);
      } else body[kind] = target;
    }
    if (reason) body.reason = reason;
    this.posting = true;
    this.sched.begin();
    try {
      const r = await postJson<CaptureRecord>('captures', body);
      let error = r.error;
      if (error && r.retryAfter && !/retry/i.test(error)) error = `${error} (retry in ${r.retryAfter} s)`;
      this.showResult({ status: r.status, record: r.body, error });
      if (r.status === 201) void this.load();
    } catch (e) {
      this.showResult({ status: 0, record: null, error: sentence(e) });
    } finally {
      this.posting = false;
      this.sched.end();
    }
  }

  private showResult(r: CaptureResult): void {
    this.result = r;
    this.out.hidden = false;
    this.out.classList.toggle('error', !!r.error);
    if (r.error) {
      this.out.innerHTML = `<p class="message error" role="alert" data-testid="capture-error">${esc(r.error)}</p>`;
      return;
    }
    const c = r.record;
    this.out.innerHTML = c
      ? `<p class="message" data-testid="capture-started">Started capture <b>${esc(c.id)}</b> (${esc(c.tier ?? '')}, ${c.duration_s ?? '?'} s, ${esc(targetText(c.target))}): ${esc(c.reason ?? '')}.</p>` +
        `<pre class="record" data-testid="capture-record">${esc(JSON.stringify(c, null, 2))}</pre>`
      : `<p class="message">The agent answered ${r.status}.</p>`;
  }

  summary(): {
    running: boolean;
    readOnly: boolean;
    formShown: boolean;
    rows: Array<{ id: string; reason: string; trigger: string; state: string; files: string[]; span: [number, number] }>;
    result: CaptureResult | null;
  } | null {
    const d = this.data;
    return {
      running: !!d?.running,
      readOnly: d?.read_only === true,
      formShown: !this.form.hidden,
      rows: (d?.captures ?? []).map((c) => ({ id: c.id, reason: c.reason ?? '', trigger: c.trigger ?? '', state: c.state ?? '', files: c.files ?? [], span: captureSpan(c) })),
      result: this.result,
    };
  }
}
