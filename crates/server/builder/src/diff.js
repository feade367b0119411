// A line diff (longest common subsequence between the common head and tail) shown as hunks
// with three lines of context, like `diff -u`.

export function lineDiff(a, b) {
  const A = a === '' ? [] : a.split('\n');
  const B = b === '' ? [] : b.split('\n');
  let head = 0;
  while (head < A.length && head < B.length && A[head] === B[head]) head += 1;
  let tail = 0;
  while (tail < A.length - head && tail < B.length - head && A[A.length - 1 - tail] === B[B.length - 1 - tail]) tail += 1;
  const a2 = A.slice(head, A.length - tail);
  const b2 = B.slice(head, B.length - tail);
  const n = a2.length;
  const m = b2.length;
  const ops = [];
  for (let i = 0; i < head; i += 1) ops.push({ op: ' ', text: A[i] });
  if (n * m > 4e6) {
    for (const l of a2) ops.push({ op: '-', text: l });
    for (const l of b2) ops.push({ op: '+', text: l });
  } else {
    const dp = new Uint32Array((n + 1) * (m + 1));
    for (let i = n - 1; i >= 0; i -= 1) {
      for (let j = m - 1; j >= 0; j -= 1) {
        dp[i * (m + 1) + j] = a2[i] === b2[j] ? dp[(i + 1) * (m + 1) + j + 1] + 1 : Math.max(dp[(i + 1) * (m + 1) + j], dp[i * (m + 1) + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && a2[i] === b2[j]) { ops.push({ op: ' ', text: a2[i] }); i += 1; j += 1; }
      else if (j < m && (i >= n || dp[i * (m + 1) + j + 1] > dp[(i + 1) * (m + 1) + j])) { ops.push({ op: '+', text: b2[j] }); j += 1; }
      else { ops.push({ op: '-', text: a2[i] }); i += 1; }
    }
  }
  for (let i = A.length - tail; i < A.length; i += 1) ops.push({ op: ' ', text: A[i] });
  let la = 1;
  let lb = 1;
  for (const o of ops) {
    o.a = o.op === '+' ? null : la;
    o.b = o.op === '-' ? null : lb;
    if (o.op !== '+') la += 1;
    if (o.op !== '-') lb += 1;
  }
  return ops;
}

/** The changed lines with `context` lines around them, as hunks. */
export function hunks(ops, context = 3) {
  const out = [];
  let cur = null;
  let lastChange = -Infinity;
  ops.forEach((o, i) => {
    if (o.op === ' ') return;
    if (cur && i - lastChange <= context * 2 + 1) {
      for (let k = lastChange + 1; k <= i; k += 1) cur.lines.push(ops[k]);
    } else {
      if (cur) cur.lines.push(...ops.slice(lastChange + 1, Math.min(ops.length, lastChange + 1 + context)));
      cur = { lines: ops.slice(Math.max(0, i - context), i + 1) };
      out.push(cur);
    }
    lastChange = i;
  });
  if (cur) cur.lines.push(...ops.slice(lastChange + 1, Math.min(ops.length, lastChange + 1 + context)));
  for (const h of out) {
    const first = h.lines[0];
    h.a = first.a ?? (h.lines.find((l) => l.a) || {}).a ?? 0;
    h.b = first.b ?? (h.lines.find((l) => l.b) || {}).b ?? 0;
  }
  return out;
}
