/**
 * A progress bar on stderr for long CLI work (writing or loading weights), drawn only when
 * stderr is a terminal so that pipes, CI logs and --json output stay clean.
 */
import cliProgress from 'cli-progress';

export interface ProgressBar {
  /** Report `done` of `total` units; `detail` names the item in progress. */
  update(done: number, total: number, detail?: string): void;
  /** Remove the bar (idempotent). */
  stop(): void;
}

/** `label` starts the line; `unit` follows the counts (e.g. 'MiB', 'tensors'). */
export function progressBar(label: string, unit: string): ProgressBar {
  if (process.stderr.isTTY !== true) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} {bar} {percentage}% | {value}/{total} ${unit} | {detail}`, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let stopped = false;
  return {
    update(done, total, detail = '') {
      if (stopped) return;
      if (!started) {
        bar.start(total, 0, { detail });
        started = true;
      }
      bar.setTotal(total);
      bar.update(done, { detail });
    },
    stop() {
      if (started && !stopped) bar.stop();
      stopped = true;
    },
  };
}
