// A one-line progress bar on stderr: redrawn in place on a terminal, a plain line at most every
// few seconds otherwise (logs, CI), so long runs always show they are alive.

export class ProgressBar {
  private lastDraw = 0;
  private drawn = false;
  private readonly tty = process.stderr.isTTY === true;

  constructor(private readonly label: string, private readonly minIntervalMs = 5000) {}

  update(done: number, total: number, detail: string): void {
    const now = Date.now();
    if (now - this.lastDraw < (this.tty ? 100 : this.minIntervalMs) && done < total) return;
    this.lastDraw = now;
    const width = 24;
    const fraction = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(fraction * width);
    const bar = "█".repeat(filled) + "░".repeat(width - filled);
    const line = `${this.label} ${bar} ${(fraction * 100).toFixed(0).padStart(3)}% ${detail}`;
    if (this.tty) {
      process.stderr.write(`\r\x1b[2K${line}`);
      this.drawn = true;
    } else {
      process.stderr.write(line + "\n");
    }
  }

  /** Ends the bar's line so that other output starts on a fresh one. */
  done(): void {
    if (this.tty && this.drawn) process.stderr.write("\n");
    this.drawn = false;
  }
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "?";
  if (s < 60) return `${s.toFixed(0)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.round((s % 3600) / 60)).padStart(2, "0")}m`;
}
