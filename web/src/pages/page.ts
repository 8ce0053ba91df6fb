// What the pages besides the profile share: a root element, one sentence for an empty or failed answer, and a
// request that the scheduler counts (so tests can wait for the page to settle).

import { ApiError, isAbort } from '../api';
import type { Scheduler } from '../sched';

export type PageMessage = { kind: 'error' | 'empty'; text: string } | null;

export function sentence(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error && e.message) return `something went wrong: ${e.message.split('\n')[0]}`;
  return 'something went wrong';
}

export abstract class Page {
  readonly root: HTMLElement;
  protected readonly sched: Scheduler;
  protected readonly msg: HTMLElement;
  protected readonly body: HTMLElement;
  message: PageMessage = null;
  private ctl: AbortController | null = null;

  constructor(root: HTMLElement, sched: Scheduler, testid: string) {
    this.root = root;
    this.sched = sched;
    this.msg = document.createElement('p');
    this.msg.className = 'message';
    this.msg.dataset.testid = `${testid}-message`;
    this.msg.hidden = true;
    this.body = document.createElement('div');
    this.body.className = 'page-body';
    this.body.dataset.testid = `${testid}-body`;
    root.append(this.msg, this.body);
  }

  setMessage(kind: 'error' | 'empty' | null, text = ''): void {
    this.message = kind ? { kind, text } : null;
    this.msg.hidden = kind === null;
    this.msg.textContent = text;
    this.msg.classList.toggle('error', kind === 'error');
    this.msg.classList.toggle('empty', kind === 'empty');
    if (kind) this.msg.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  }

  /** Runs one load; an older one still under way is aborted. Errors become the page's sentence. */
  protected async run(work: (signal: AbortSignal) => Promise<void>): Promise<void> {
    this.ctl?.abort();
    const ctl = new AbortController();
    this.ctl = ctl;
    this.sched.begin();
    try {
      await work(ctl.signal);
    } catch (e) {
      if (isAbort(e) || ctl !== this.ctl) return;
      this.body.innerHTML = '';
      this.setMessage('error', sentence(e));
    } finally {
      this.sched.end();
    }
  }
}
