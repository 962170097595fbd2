// Turns per-round samples into the results table (terminal and Markdown) with machine details.
import { execFileSync } from 'node:child_process';
import { cpus, release, totalmem } from 'node:os';

export const METRICS = [
  { key: 'pushMono', label: 'push, monolithic POST+PUT (MiB/s)', target: { ratio: 1.3 } },
  { key: 'pushChunked', label: 'push, chunked PATCH (MiB/s)', target: { ratio: 1.3 } },
  { key: 'pull', label: 'pull, digest verified (MiB/s)', target: { ratio: 1.0 } },
  { key: 'pushMonoCpu', label: 'server CPU per GiB, monolithic push (s)', lowerIsBetter: true },
  { key: 'pushChunkedCpu', label: 'server CPU per GiB, chunked push (s)', lowerIsBetter: true },
  { key: 'pullCpu', label: 'server CPU per GiB, pull (s)', lowerIsBetter: true },
  { key: 'manifestRps', label: 'manifest GET by tag (req/s)', target: { ratio: 4 } },
  { key: 'manifestP99', label: 'manifest GET p99 (ms)', lowerIsBetter: true },
  { key: 'headRps', label: 'blob HEAD (req/s)', target: { ratio: 4 } },
  { key: 'headP99', label: 'blob HEAD p99 (ms)', lowerIsBetter: true },
  {
    key: 'peakRssProcess',
    label: 'peak RSS during pushes, per process (MB)',
    target: { below: 200 },
    aggregate: 'max',
    lowerIsBetter: true,
  },
  { key: 'peakRss', label: 'peak memory during pushes, all processes (MB)', aggregate: 'max', lowerIsBetter: true },
];

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

/** samples[server][metric] = number[] → summary[server][metric] = median (or max for RSS). */
export function summarize(samples, metricList = METRICS) {
  const summary = {};
  for (const [server, metrics] of Object.entries(samples)) {
    summary[server] = {};
    for (const metric of metricList) {
      const values = metrics[metric.key] ?? [];
      if (values.length === 0) continue;
      summary[server][metric.key] = metric.aggregate === 'max' ? Math.max(...values) : median(values);
    }
  }
  return summary;
}

const fmt = (value) =>
  value === undefined ? '–' : value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(value >= 10 ? 1 : 2);

function verdict(metric, value, reference) {
  if (value === undefined || !metric.target) return '';
  if (metric.target.below !== undefined) return value < metric.target.below ? ' ✓' : ' ✗';
  if (reference === undefined) return '';
  return value / reference >= metric.target.ratio ? ' ✓' : ' ✗';
}

function targetText(metric) {
  if (!metric.target) return '';
  return metric.target.below !== undefined ? `< ${metric.target.below} MB` : `≥ ${metric.target.ratio}×`;
}

/** Rows of cells: metric, Distribution, Berth, ratio, cluster, ratio, target. */
export function tableRows(summary) {
  const dist = summary.distribution ?? {};
  const rows = [['metric', 'Distribution 2.8', 'Berth', 'Berth / Dist', 'Berth cluster (2)', 'cluster / Dist', 'target']];
  for (const metric of METRICS) {
    const d = dist[metric.key];
    const cells = [metric.label, fmt(d)];
    for (const server of ['berth', 'cluster']) {
      const value = summary[server]?.[metric.key];
      cells.push(fmt(value));
      cells.push(
        value !== undefined && d
          ? `${(value / d).toFixed(2)}×${verdict(metric, value, d)}`
          : value !== undefined
            ? verdict(metric, value, d).trim()
            : '–',
      );
    }
    cells.push(targetText(metric));
    rows.push(cells);
  }
  return rows;
}

const GATEWAY = '(radosgw + ceph-osd + ceph-mon)';

/** The S3 scenario: Berth and Distribution on one gateway, against the gateway itself ("raw"). */
export const S3_METRICS = [
  { key: 's3Push4', label: 'push, 4 × 64 MiB, POST+PUT (MiB/s)', target: { ratio: 0.75 } },
  { key: 's3Chunked4', label: 'push, 4 × 64 MiB, 8 MiB PATCHes (MiB/s; raw: its PUT)', reference: 's3Push4' },
  { key: 's3Push1', label: 'push, 1 × 256 MiB, POST+PUT (MiB/s)', target: { ratio: 0.75 } },
  { key: 's3Pull4', label: 'pull, 4 × 64 MiB, digest verified (MiB/s)', target: { ratio: 0.95 } },
  { key: 's3Pull1', label: 'pull, 1 × 256 MiB, digest verified (MiB/s)', target: { ratio: 0.95 } },
  { key: 's3Push4Cpu', label: 'registry CPU per GiB, push 4 × 64 MiB (s)', lowerIsBetter: true },
  { key: 's3Chunked4Cpu', label: 'registry CPU per GiB, chunked push (s)', lowerIsBetter: true },
  { key: 's3Push1Cpu', label: 'registry CPU per GiB, push 1 × 256 MiB (s)', lowerIsBetter: true },
  { key: 's3Pull4Cpu', label: 'registry CPU per GiB, pull 4 × 64 MiB (s)', lowerIsBetter: true },
  { key: 's3Push4GatewayCpu', label: `gateway CPU per GiB ${GATEWAY}, push 4 × 64 MiB (s)`, lowerIsBetter: true },
  { key: 's3Chunked4GatewayCpu', label: 'gateway CPU per GiB, chunked push (s)', lowerIsBetter: true },
  { key: 's3Pull4GatewayCpu', label: 'gateway CPU per GiB, pull 4 × 64 MiB (s)', lowerIsBetter: true },
  { key: 's3PeakRss', label: 'peak RSS during pushes (MB)', aggregate: 'max', lowerIsBetter: true },
];

/** Rows of cells: metric, raw, Berth, ratio, Distribution, ratio, target; then Berth's chunked/monolithic. */
export function s3TableRows(summary) {
  const raw = summary.raw ?? {};
  const rows = [['metric', 'raw S3', 'Berth', 'Berth / raw', 'Distribution 2.8', 'Dist / raw', 'target']];
  for (const metric of S3_METRICS) {
    const reference = raw[metric.reference ?? metric.key];
    const cells = [metric.label, fmt(raw[metric.key])];
    for (const server of ['berth', 'distribution']) {
      const value = summary[server]?.[metric.key];
      cells.push(fmt(value));
      const ratio = value !== undefined && reference ? value / reference : undefined;
      const ok = metric.target && ratio !== undefined ? (ratio >= metric.target.ratio ? ' ✓' : ' ✗') : '';
      cells.push(ratio === undefined || metric.key.endsWith('Rss') ? '–' : `${ratio.toFixed(2)}×${server === 'berth' ? ok : ''}`);
    }
    cells.push(metric.target ? `≥ ${metric.target.ratio}× raw` : metric.reference ? 'see below' : '');
    rows.push(cells);
  }
  const cells = ['chunked / monolithic, 4 × 64 MiB'];
  cells.push('–');
  for (const server of ['berth', 'distribution']) {
    const s = summary[server] ?? {};
    const ratio = s.s3Chunked4 && s.s3Push4 ? s.s3Chunked4 / s.s3Push4 : undefined;
    cells.push(
      ratio === undefined ? '–' : `${ratio.toFixed(2)}×`,
      server === 'berth' && ratio !== undefined ? (ratio >= 0.9 ? '✓' : '✗') : '',
    );
  }
  cells.push('≥ 0.9×');
  rows.push(cells);
  return rows;
}

export function printTable(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const [n, row] of rows.entries()) {
    console.log(row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  '));
    if (n === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
}

export function machine() {
  let distribution = 'unknown';
  try {
    distribution = execFileSync('docker-registry', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    // reported as unknown
  }
  const cpu = cpus();
  return {
    date: new Date().toISOString(),
    cpu: cpu[0]?.model ?? 'unknown',
    cores: cpu.length,
    memory: `${Math.round(totalmem() / 2 ** 30)} GiB`,
    kernel: release(),
    node: process.version,
    distribution,
  };
}

/**
 * The results file: machine details, then one section per scenario group
 * ({ title, settings, rows, notes, samples }).
 */
export function markdown({ info, sections }) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  const out = [
    '# Berth vs CNCF Distribution: benchmark results',
    '',
    `Generated by \`pnpm bench\` (bench/run.mjs) on ${info.date}.`,
    '',
    `- Machine: ${info.cpu}, ${info.cores} cores, ${info.memory} RAM, Linux ${info.kernel}`,
    `- Node ${info.node}; reference: ${info.distribution}`,
    `- Load average (1, 5, 15 min) at the start and the end: ${info.load}`,
    '',
  ];
  for (const { title, settings, rows, notes, samples } of sections) {
    out.push(
      `## ${title}`,
      '',
      `Settings: ${settings}`,
      '',
      line(rows[0]),
      line(rows[0].map((_, i) => (i === 0 ? '---' : '---:'))),
      ...rows.slice(1).map(line),
      '',
      ...notes.map((n) => `- ${n}`),
      '',
      '<details><summary>Every round</summary>',
      '',
      '```json',
      JSON.stringify(samples, (_k, v) => (typeof v === 'number' ? Math.round(v * 100) / 100 : v), 2),
      '```',
      '',
      '</details>',
      '',
    );
  }
  return out.join('\n');
}
