/** How busy the machine is, for benchmarks that report the load they ran under. */
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';

export interface CpuTimes {
  busy: number;
  total: number;
}

/** Jiffies (USER_HZ, 100/s) the whole machine spent busy and in all, or null without /proc/stat. */
export function cpuTimes(): CpuTimes | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Busy cores (0 .. cores) over `ms`, from /proc/stat, or the 1-minute load average without it. */
export async function sampleBusyCores(ms: number): Promise<number> {
  const a = cpuTimes();
  await sleep(ms);
  const b = cpuTimes();
  if (!a || !b || b.total === a.total) return loadavg()[0]!;
  return ((b.busy - a.busy) / (b.total - a.total)) * availableParallelism();
}

