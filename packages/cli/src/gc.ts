// `berth gc`, `berth usage`, and the collections `berth serve` runs on a schedule. The commands
// take every `berth serve` flag and variable, so they run against a live registry's data dir,
// database and bucket exactly as it is configured.
import { createRegistry, formatBytes, type CollectProgress, type CollectReport, type MetadataStore, type Registry } from '@berthjs/core';
import type { Logger } from 'pino';
import { commandHelp, duration, parseCommandConfig, type CommandOptions, type GcConfig, type ServeConfig } from './config.js';
import { openStores, registryOptions } from './stores.js';

export const GC_OPTIONS: CommandOptions = {
  'grace-period': { type: 'string', help: 'spare what was pushed more recently than this (default --gc-grace-period, 24h)' },
  untagged: { type: 'boolean', help: 'also delete manifests no tag, index or kept subject reaches (default --gc-untagged)' },
  'dry-run': { type: 'boolean', help: 'report what would be deleted; delete nothing' },
  json: { type: 'boolean', help: 'print the report as JSON' },
};

export const USAGE_OPTIONS: CommandOptions = {
  tenant: { type: 'string', help: 'only this tenant (a first path segment)' },
  repository: { type: 'string', help: 'only this repository' },
  recompute: { type: 'boolean', help: 'recompute every figure from scratch, correct and report what differed' },
  json: { type: 'boolean', help: 'print JSON' },
};

type Out = { write(text: string): unknown };

/** Collect every `intervalMs` (0: never); one collection at a time across replicas (the lease). */
export function scheduleCollections(registry: Registry, gc: GcConfig, log: Logger): { stop(): void } {
  if (gc.intervalMs <= 0) return { stop: () => undefined };
  const timer = setInterval(() => {
    registry.collectGarbage({ gracePeriodMs: gc.gracePeriodMs, untagged: gc.untagged }).then(
      (report) => {
        if (report.skipped) log.debug({ holder: report.skipped.holder }, 'garbage collection skipped: another process is collecting');
        else log.info(summary(report), 'garbage collected');
      },
      (error) => log.error({ err: error }, 'garbage collection failed'),
    );
  }, gc.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** `berth gc`: exit 0 when done, 3 when another collection holds the lease. */
export async function runGc(args: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out.write(commandHelp('berth gc [--grace-period 24h] [--untagged] [--dry-run] [serve flags]', GC_OPTIONS));
    return 0;
  }
  const { config, flags } = parseCommandConfig(args, process.env, GC_OPTIONS);
  const gracePeriodMs =
    flags['grace-period'] === undefined ? config.gc.gracePeriodMs : duration('grace-period', String(flags['grace-period']));
  const { registry } = await openRegistry(config);
  try {
    const progress = throttled(err);
    const report = await registry.collectGarbage({
      gracePeriodMs,
      untagged: flags.untagged === true || config.gc.untagged,
      dryRun: flags['dry-run'] === true,
      onProgress: progress.report,
    });
    progress.done();
    if (report.skipped) {
      err.write(
        `berth gc: another collection is running (holder ${report.skipped.holder}, lease until ${new Date(report.skipped.until).toISOString()})\n`,
      );
      return 3;
    }
    out.write(flags.json ? `${JSON.stringify(report)}\n` : formatReport(report));
    return 0;
  } finally {
    await registry.close();
  }
}

/** `berth usage [--tenant T | --repository R] [--recompute]`. */
export async function runUsage(args: string[], out: Out = process.stdout, err: Out = process.stderr): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    out.write(commandHelp('berth usage [--tenant T | --repository R] [--recompute] [serve flags]', USAGE_OPTIONS));
    return 0;
  }
  const { config, flags } = parseCommandConfig(args, process.env, USAGE_OPTIONS);
  const { registry, metadata } = await openRegistry(config);
  try {
    const lines: string[] = [];
    const json: Record<string, unknown> = {};
    if (flags.recompute) {
      const recompute = await registry.recomputeUsage({
        onProgress: (done, total) => err.write(`\rberth usage: recomputed ${done}/${total} tenants`),
      });
      err.write('\n');
      json.recompute = recompute;
      lines.push(
        `recomputed ${recompute.tenants} tenants, ${recompute.repositories} repositories: ${recompute.corrections.length} figures corrected`,
      );
      for (const c of recompute.corrections) {
        lines.push(
          `  ${c.scope} ${c.name || '(none)'}: ${c.running.bytes} bytes, ${c.running.blobs} blobs -> ${c.recomputed.bytes} bytes, ${c.recomputed.blobs} blobs`,
        );
      }
    }
    if (typeof flags.repository === 'string') {
      const usage = await registry.usage({ repository: flags.repository });
      if (!usage) {
        err.write(`berth usage: no repository ${flags.repository}\n`);
        return 1;
      }
      json.repository = { repository: flags.repository, ...usage };
      lines.push(`${flags.repository} (tenant ${usage.tenant || '(none)'}): ${formatBytes(usage.bytes)} in ${usage.blobs} blobs`);
    } else {
      const tenants = typeof flags.tenant === 'string' ? [flags.tenant] : await allTenants(metadata);
      const figures = await Promise.all(tenants.map(async (tenant) => ({ tenant, ...(await registry.usage({ tenant })) })));
      json.tenants = figures;
      if (config.quota !== undefined) json.quota = config.quota;
      for (const f of figures) {
        const quota = config.quota === undefined ? '' : ` of ${formatBytes(config.quota)}`;
        const reserved = f.reserved > 0 ? ` (+${formatBytes(f.reserved)} being uploaded)` : '';
        lines.push(`${(f.tenant || '(none)').padEnd(24)} ${formatBytes(f.bytes)}${quota} in ${f.blobs} blobs${reserved}`);
      }
    }
    out.write(flags.json ? `${JSON.stringify(json)}\n` : `${lines.join('\n')}\n`);
    return 0;
  } finally {
    await registry.close();
  }
}

async function openRegistry(config: ServeConfig): Promise<{ registry: Registry; metadata: MetadataStore }> {
  const stores = await openStores(config);
  return { registry: createRegistry({ ...registryOptions(config), ...stores }), metadata: stores.metadata };
}

/** Every tenant with usage or reservations, page by page. */
async function allTenants(metadata: MetadataStore): Promise<string[]> {
  const names: string[] = [];
  let last: string | undefined;
  for (;;) {
    const page = await metadata.listTenants({ limit: 1000, last });
    names.push(...page.map((t) => t.tenant));
    if (page.length < 1000) return names;
    last = names[names.length - 1];
  }
}

/** Progress on stderr: when a phase starts, then at most once a second, and a last line when done. */
function throttled(err: Out): { report(progress: CollectProgress): void; done(): void } {
  let last = 0;
  let latest: CollectProgress | undefined;
  const line = (p: CollectProgress) =>
    `\rberth gc: ${p.phase} ${p.done}, manifests deleted ${p.manifestsDeleted}, blobs deleted ${p.blobsDeleted} (${formatBytes(p.bytesFreed)})   `;
  return {
    report(progress) {
      const phaseChanged = progress.phase !== latest?.phase;
      latest = progress;
      if (!phaseChanged && Date.now() - last < 1000) return;
      last = Date.now();
      err.write(line(progress));
    },
    done() {
      if (latest && last > 0) err.write(`${line(latest)}\n`);
    },
  };
}

function summary(report: CollectReport) {
  const { durationMs, manifestsDeleted, linksDeleted, blobsDeleted, bytesFreed, uploadsSwept } = report;
  return { durationMs, manifestsDeleted, linksDeleted, blobsDeleted, bytesFreed, uploadsSwept };
}

export function formatReport(report: CollectReport): string {
  const verb = report.dryRun ? 'would delete' : 'deleted';
  const lines = [
    `${report.dryRun ? 'dry run: ' : ''}${verb} ${report.blobsDeleted} blobs (${formatBytes(report.bytesFreed)}), ${report.manifestsDeleted} manifests, ${report.linksDeleted} blob links; ${report.uploadsSwept} upload leftovers swept; ${report.repositories} repositories in ${(report.durationMs / 1000).toFixed(1)} s`,
  ];
  const tenants = Object.entries(report.tenants).filter(([, t]) => t.manifestsDeleted + t.linksDeleted + t.blobsReleased > 0);
  if (tenants.length > 0) {
    lines.push(`${'tenant'.padEnd(24)} ${'manifests'.padStart(9)} ${'links'.padStart(7)} ${'blobs'.padStart(7)} ${'bytes'.padStart(10)}`);
    for (const [name, t] of tenants) {
      lines.push(
        `${(name || '(none)').padEnd(24)} ${String(t.manifestsDeleted).padStart(9)} ${String(t.linksDeleted).padStart(7)} ${String(t.blobsReleased).padStart(7)} ${formatBytes(t.bytesReleased).padStart(10)}`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
