// One place that batches renders into an animation frame and knows when the page is settled (no request under way,
// no render pending): tests wait on that through window.__tailprof.

export interface Renderable {
  render(): void;
}

export class Scheduler {
  private dirty = new Set<Renderable>();
  private frame = 0;
  private timer = 0;
  private busy = 0;
  private resolveReady: (() => void) | null = null;
  private promise: Promise<void> = Promise.resolve();
  renders = 0;

  get ready(): boolean {
    return this.busy === 0 && this.dirty.size === 0;
  }

  /** Resolves the next time the page is settled (at once when it is). */
  get readyPromise(): Promise<void> {
    return this.promise;
  }

  invalidate(r: Renderable): void {
    this.dirty.add(r);
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => this.flush());
      // A page in the background gets no animation frames; render anyway, later.
      this.timer = window.setTimeout(() => this.flush(), 250);
    }
    this.update();
  }

  /** Renders what is pending now (also used before reading layout for a test hook). */
  flush(): void {
    if (this.frame) cancelAnimationFrame(this.frame);
    if (this.timer) clearTimeout(this.timer);
    this.frame = 0;
    this.timer = 0;
    const list = [...this.dirty];
    this.dirty.clear();
    for (const r of list) {
      try {
        r.render();
      } catch (e) {
        console.error('render failed', e);
      }
    }
    if (list.length) this.renders++;
    this.update();
  }

  begin(): void {
    this.busy++;
    this.update();
  }

  end(): void {
    this.busy = Math.max(0, this.busy - 1);
    this.update();
  }

  private update(): void {
    if (this.ready) {
      if (this.resolveReady) {
        const r = this.resolveReady;
        this.resolveReady = null;
        r();
      }
    } else if (!this.resolveReady) {
      this.promise = new Promise<void>((resolve) => {
        this.resolveReady = resolve;
      });
    }
  }
}
