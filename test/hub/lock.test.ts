import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { withFileLock, type LockMethod } from '../../src/hub/lock.js';
import { tempDir } from '../helpers.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** util-linux's flock command (Debian and Ubuntu always have it); without it kvsieve uses the directory lock. */
const noFlock = spawnSync('flock', ['--version']).error ? 'no flock command on this machine' : false;

for (const method of ['flock', 'dir'] as LockMethod[]) {
  test(`withFileLock (${method}): holders of one path never overlap; other paths do not wait; the lock file stays`, { skip: method === 'flock' && noFlock }, async () => {
    const t = tempDir();
    try {
      const path = join(t.dir, '.locks', 'models--a--b', 'blob.lock');
      let inside = 0;
      let most = 0;
      const order: number[] = [];
      const waits: number[] = [];
      const work = (i: number) =>
        withFileLock(
          path,
          async () => {
            inside++;
            most = Math.max(most, inside);
            await sleep(30);
            order.push(i);
            inside--;
          },
          { method, onWait: () => waits.push(i) },
        );
      const other = withFileLock(join(t.dir, 'other.lock'), async () => 'free', { method });
      await Promise.all([work(0), work(1), work(2), other]);
      assert.equal(most, 1);
      assert.deepEqual(order.sort(), [0, 1, 2]);
      assert.ok(waits.length >= 2, `waiters told: ${waits.join(',')}`);
      assert.equal(await other, 'free');
      // flock leaves its lock file (as Python's filelock does); the directory lock is gone.
      if (method === 'flock') assert.ok(existsSync(path));
      assert.equal(existsSync(`${path}.kvsieve`), false);
    } finally {
      t.cleanup();
    }
  });
}

test('withFileLock (dir): a lock left by a dead process of this host is taken over; an abort stops the wait', async () => {
  const t = tempDir();
  try {
    const path = join(t.dir, 'x.lock');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    mkdirSync(`${path}.kvsieve`);
    writeFileSync(join(`${path}.kvsieve`, 'owner'), JSON.stringify({ pid: Number(dead.stdout), host: hostname() }));
    assert.equal(await withFileLock(path, async () => 'taken over', { method: 'dir' }), 'taken over');

    // A live owner (this process) holds it: the wait ends only by abort.
    mkdirSync(`${path}.kvsieve`);
    writeFileSync(join(`${path}.kvsieve`, 'owner'), JSON.stringify({ pid: process.pid, host: hostname() }));
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('gave up')), 300);
    await assert.rejects(withFileLock(path, async () => 'never', { method: 'dir', signal: ac.signal }), /gave up/);
  } finally {
    t.cleanup();
  }
});

test('withFileLock (flock): an abort while another process holds the lock ends the wait and the flock child', { skip: noFlock }, async () => {
  const t = tempDir();
  try {
    const path = join(t.dir, 'y.lock');
    const release = await new Promise<() => void>((resolve) => {
      void withFileLock(path, () => new Promise<void>((done) => resolve(done)), { method: 'flock' });
    });
    const ac = new AbortController();
    // In this process a second holder queues on the first; the abort must end that wait too.
    setTimeout(() => ac.abort(new Error('stop waiting')), 200);
    await assert.rejects(withFileLock(path, async () => 'never', { method: 'flock', signal: ac.signal }), /stop waiting/);
    release();
    assert.equal(await withFileLock(path, async () => 'after', { method: 'flock' }), 'after');
  } finally {
    t.cleanup();
  }
});
