/** A markdown table (what BENCHMARKS.md holds), from a header row and data rows. */
export function mdTable(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const line = (cells: readonly (string | number)[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n') + '\n';
}

/** A number with `digits` significant digits, for tables. */
export function sig(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  return Math.abs(x) >= 10 ** digits ? x.toFixed(0) : x.toPrecision(digits);
}
