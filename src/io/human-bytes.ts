/** "1536 B (1.5 KiB)": exact bytes plus a binary-unit rounding, for `inspect` reports. */
export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${n} B (${v.toFixed(1)} ${units[i]})`;
}
