import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, Progress } from '../../src/eval/progress.js';
import { InternalError } from '../../src/core/errors.js';

/** A stream that records writes, and a clock the test moves by hand. */
function fakes(isTTY: boolean, columns?: number) {
  const writes: string[] = [];
  const stream = { isTTY, columns, write: (s: string) => writes.push(s) };
  const clock = { t: 1000 };
  return { writes, stream, clock, now: () => clock.t };
}

test('TTY: redraws one line in place with done/total, tokens/s and ETA, at most every 200 ms', () => {
  const f = fakes(true);
  const p = new Progress({ total: 10, label: 'fidelity', stream: f.stream, now: f.now, env: {} });
  assert.equal(p.interactive, true);
  f.clock.t += 1000;
  p.tick(1, 50); // 1 item in 1 s, 50 tokens: draws (first draw)
  assert.equal(f.writes.length, 1);
  assert.equal(f.writes[0], '\rfidelity  1/10 10% · 50.0 tok/s · ETA 9s\x1b[K');
  f.clock.t += 100;
  p.tick(1, 50); // 100 ms after the last draw: throttled
  f.clock.t += 50;
  p.tick(1, 50); // 150 ms: still throttled
  assert.equal(f.writes.length, 1);
  f.clock.t += 50;
  p.tick(1, 50); // 200 ms since the last draw: draws; 4 items, 200 tokens in 1.2 s
  assert.equal(f.writes.length, 2);
  // ETA: 1.2 s / 4 items x 6 left = 1.8 s -> 2s
  assert.equal(f.writes[1], '\rfidelity  4/10 40% · 166.7 tok/s · ETA 2s\x1b[K');
  assert.ok(f.writes.every((w) => w.startsWith('\r') && !w.includes('\n')), 'no newline before done()');
  // the last item always draws, even inside the 200 ms window
  f.clock.t += 10;
  p.tick(6, 300);
  assert.equal(f.writes.length, 3);
  assert.match(f.writes[2]!, /^\rfidelity {2}10\/10 100% · .* · in 1s\x1b\[K$/);
  p.done();
  assert.equal(f.writes.at(-1), '\n');
  const count = f.writes.length;
  p.done(); // idempotent
  p.tick();
  assert.equal(f.writes.length, count);
});

test('TTY: a burst of ticks inside 200 ms draws once, and the line is clipped to the terminal width', () => {
  const f = fakes(true, 20);
  const p = new Progress({ total: 1000, label: 'a-long-label-for-math', stream: f.stream, now: f.now, env: {} });
  for (let i = 0; i < 100; i++) {
    f.clock.t += 1; // 100 ticks over 100 ms
    p.tick();
  }
  assert.equal(f.writes.length, 1);
  const text = f.writes[0]!.slice(1).replace('\x1b[K', '');
  assert.equal(text.length, 19);
  assert.equal(text, 'a-long-label-for-ma');
});

test('items/s replaces tok/s when no tokens are given; skipped items do not count toward speed or ETA', () => {
  const f = fakes(true);
  const p = new Progress({ total: 10, label: 'math', stream: f.stream, now: f.now, env: {} });
  p.skip(4); // earlier run's items: drawn (first draw) without a speed
  assert.equal(f.writes[0], '\rmath  4/10 40%\x1b[K');
  f.clock.t += 4000;
  p.tick(2); // 2 worked items in 4 s: 0.5 items/s, 4 left -> 8 s
  assert.equal(f.writes[1], '\rmath  6/10 60% · 0.50 items/s · ETA 8s\x1b[K');
  assert.equal(p.completed, 6);
});

test('not a TTY: one line per 10% crossed, nothing in between, and no \\r', () => {
  const f = fakes(false);
  const p = new Progress({ total: 20, label: 'needle', stream: f.stream, now: f.now, env: {} });
  assert.equal(p.interactive, false);
  p.tick(); // 5%: nothing
  assert.equal(f.writes.length, 0);
  f.clock.t += 2000;
  p.tick(1, 100); // 10%
  assert.deepEqual(f.writes, ['needle  2/20 10% · 50.0 tok/s · ETA 18s\n']);
  p.tick(5); // 35%: one line for crossing 20% and 30% together
  assert.equal(f.writes.length, 2);
  assert.match(f.writes[1]!, /^needle {2}7\/20 35% /);
  for (let i = 7; i < 20; i++) p.tick();
  assert.equal(f.writes.length, 9); // 10% ... 100%: at most ten lines (two steps shared one)
  assert.match(f.writes.at(-1)!, /^needle {2}20\/20 100% · .* · in 2s\n$/);
  p.done(); // already at 100%: nothing more
  assert.equal(f.writes.length, 9);
  assert.ok(f.writes.every((w) => !w.includes('\r') && w.endsWith('\n')));
});

test('not a TTY: done() short of 100% writes one final line', () => {
  const f = fakes(false);
  const p = new Progress({ total: 100, label: 'run', stream: f.stream, now: f.now, env: {} });
  p.tick(15);
  assert.equal(f.writes.length, 1);
  p.done();
  assert.equal(f.writes.length, 2);
  assert.match(f.writes[1]!, /^run {2}15\/100 15%/);
});

test('CI set on a TTY behaves like a log; CI=false or empty does not', () => {
  for (const [ci, interactive] of [['true', false], ['1', false], ['false', true], ['', true], ['0', true]] as const) {
    const f = fakes(true);
    const p = new Progress({ total: 10, label: 'x', stream: f.stream, now: f.now, env: { CI: ci } });
    assert.equal(p.interactive, interactive, `CI=${ci}`);
    p.tick();
    assert.equal(f.writes[0]!.startsWith('\r'), interactive, `CI=${ci}: ${JSON.stringify(f.writes[0])}`);
  }
});

test('total 0 prints nothing; a bad total is an InternalError (totals come from the runners, not from input)', () => {
  for (const isTTY of [true, false]) {
    const f = fakes(isTTY);
    const p = new Progress({ total: 0, label: 'empty', stream: f.stream, now: f.now, env: {} });
    p.done();
    assert.deepEqual(f.writes, []);
  }
  assert.throws(() => new Progress({ total: -1, label: 'x' }), (e: unknown) => e instanceof InternalError && /total/.test(e.message));
  assert.throws(() => new Progress({ total: 2.5, label: 'x' }), InternalError);
});

test('formatDuration', () => {
  assert.equal(formatDuration(0.4), '0s');
  assert.equal(formatDuration(42), '42s');
  assert.equal(formatDuration(185), '3m05s');
  assert.equal(formatDuration(7620), '2h07m');
  assert.equal(formatDuration(Infinity), '?');
});
