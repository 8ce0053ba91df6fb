// Palettes. Thread states use the Okabe–Ito colours (safe for the common kinds of colour blindness); the CPU view
// uses a warm palette with kernel frames in a cool hue of their own.

import { F_GROUP, F_KERNEL, F_OTHER, F_ROOT, F_STATE, type FlatTree } from './tree';

export const STATES = ['running', 'runnable', 'sleeping', 'disk', 'other'] as const;
export type StateName = (typeof STATES)[number];

export type Rgb = readonly [number, number, number];

export const STATE_RGB: Readonly<Record<StateName, Rgb>> = {
  running: [0x00, 0x9e, 0x73], // bluish green
  runnable: [0xd5, 0x5e, 0x00], // vermillion
  sleeping: [0x56, 0xb4, 0xe9], // sky blue
  disk: [0xe6, 0x9f, 0x00], // orange
  other: [0xcc, 0x79, 0xa7], // reddish purple
};

/** The states a view holds: the timeline and the legend show these. */
export function viewStates(view: string): readonly StateName[] {
  if (view === 'cpu') return ['running', 'runnable'];
  if (view === 'offcpu') return ['runnable', 'sleeping', 'disk', 'other'];
  return STATES;
}

export const STATE_LABEL: Readonly<Record<StateName, string>> = {
  running: 'running',
  runnable: 'runnable (run queue)',
  sleeping: 'sleeping',
  disk: 'disk',
  other: 'other',
};

export const GROUP_RGB: Rgb = [0xc9, 0xcd, 0xd3];
export const ROOT_RGB: Rgb = [0xb4, 0xb9, 0xc1];
export const FOLDED_RGB: Rgb = [0xe4, 0xe4, 0xe4];
export const MUTED_RGB: Rgb = [0xe8, 0xe9, 0xeb];
export const MUTED_TEXT = '#9aa0a6';
/** Sample swatches of the CPU palette, for the legend. */
export const USER_SAMPLE: Rgb = hsl(20, 0.8, 0.6);
export const KERNEL_SAMPLE: Rgb = hsl(200, 0.55, 0.62);

export function css(c: Rgb): string {
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

/** A stable number in [0, 1) for a name, so a function keeps its shade between renders. */
export function hashUnit(name: string): number {
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return ((h >>> 0) % 10007) / 10007;
}

export function mix(a: Rgb, b: Rgb, t: number): Rgb {
  return [
    Math.round(a[0] + (b[0] - a[0]) * t),
    Math.round(a[1] + (b[1] - a[1]) * t),
    Math.round(a[2] + (b[2] - a[2]) * t),
  ];
}

const WHITE: Rgb = [255, 255, 255];

export function hsl(h: number, s: number, l: number): Rgb {
  const k = (n: number): number => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n: number): number => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [Math.round(f(0) * 255), Math.round(f(8) * 255), Math.round(f(4) * 255)];
}

/** A frame under a state frame: the state's hue, a shade per function. */
export function stateFrame(state: StateName, name: string): Rgb {
  return mix(STATE_RGB[state], WHITE, 0.12 + 0.3 * hashUnit(name));
}

/** CPU view: warm (red to yellow) for user frames, a blue hue for kernel frames. */
export function cpuFrame(name: string, kernel: boolean): Rgb {
  const u = hashUnit(name);
  if (kernel) return hsl(190 + 25 * u, 0.5 + 0.15 * u, 0.6 + 0.08 * (1 - u));
  return hsl(5 + 45 * u, 0.75 + 0.15 * (1 - u), 0.58 + 0.06 * u);
}

function luminance(c: Rgb): number {
  const ch = (v: number): number => {
    const x = v / 255;
    return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * ch(c[0]) + 0.7152 * ch(c[1]) + 0.0722 * ch(c[2]);
}

/** Black or white, whichever reads better on the colour. */
export function textOn(c: Rgb): string {
  return luminance(c) > 0.22 ? '#111' : '#fff';
}

// ---- colours of a whole tree ----

/**
 * One colour per node. `byState`: frames under a state frame take the state's hue (wall-clock and off-CPU views);
 * otherwise the warm CPU palette, kernel frames apart.
 */
export function frameColours(t: FlatTree, byState: boolean, rootIsFrame = false): { fill: Rgb[] } {
  const fill: Rgb[] = new Array(t.n);
  const cpu: Array<Rgb | undefined> = new Array(t.names.length);
  const perState: Array<Array<Rgb | undefined>> = STATES.map(() => new Array<Rgb | undefined>(t.names.length));
  for (let i = 0; i < t.n; i++) {
    const f = t.flags[i]!;
    const id = t.nameId[i]!;
    const st = t.state[i]!;
    let c: Rgb | undefined;
    if (f & F_ROOT && !rootIsFrame) c = ROOT_RGB;
    else if (f & F_OTHER) c = FOLDED_RGB;
    else if (f & F_STATE) c = STATE_RGB[STATES[st]!];
    else if (f & F_GROUP) c = GROUP_RGB;
    else if (byState && st >= 0) {
      const cache = perState[st]!;
      c = cache[id] ??= stateFrame(STATES[st]!, t.names[id]!);
    } else {
      c = cpu[id] ??= cpuFrame(t.names[id]!, (f & F_KERNEL) !== 0);
    }
    fill[i] = c;
  }
  return { fill };
}
