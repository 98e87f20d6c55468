/** "1.5 KiB": bytes in a binary unit, one decimal ("512 B" below 1 KiB). */
export function shortBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** "1536 B (1.5 KiB)": exact bytes plus a binary-unit rounding, for `inspect` reports. */
export function humanBytes(n: number): string {
  return n < 1024 ? `${n} B` : `${n} B (${shortBytes(n)})`;
}
