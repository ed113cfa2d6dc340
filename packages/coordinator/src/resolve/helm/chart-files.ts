/**
 * `.Files` in a chart's templates: the chart's other files, with the methods Helm gives them
 * (`Get`, `GetBytes`, `Glob`, `Lines`, `AsConfig`, `AsSecrets`). A map, as Helm's `Files` is a
 * `map[string][]byte`, so `range $path, $bytes := .Files.Glob "…"` and `index .Files "x"` work; the
 * methods have Go's names, because templates call them by those names.
 */
import path from 'node:path';
import { stringify as toYaml } from 'yaml';

export class ChartFiles extends Map<string, Uint8Array> {
  /** The file's text, or "" when there is none (as Helm). */
  Get(name: unknown): string {
    const content = this.get(String(name));
    return content === undefined ? '' : Buffer.from(content).toString('utf8');
  }

  GetBytes(name: unknown): Uint8Array {
    return this.get(String(name)) ?? new Uint8Array();
  }

  /** The files whose paths match a glob (`*` within a folder, `**` across folders). */
  Glob(pattern: unknown): ChartFiles {
    const matcher = globToRegExp(String(pattern));
    return new ChartFiles([...this].filter(([name]) => matcher.test(name)));
  }

  Lines(name: unknown): string[] {
    const text = this.Get(name);
    return text === '' ? [] : text.split('\n');
  }

  /** A ConfigMap's `data`: base names to contents, as YAML. */
  AsConfig(): string {
    return this.#asYaml((content) => Buffer.from(content).toString('utf8'));
  }

  /** A Secret's `data`: base names to base64 contents, as YAML. */
  AsSecrets(): string {
    return this.#asYaml((content) => Buffer.from(content).toString('base64'));
  }

  #asYaml(encode: (content: Uint8Array) => string): string {
    if (this.size === 0) return '';
    const entries = [...this].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, content]) => [path.posix.basename(name), encode(content)]);
    return toYaml(Object.fromEntries(entries), { lineWidth: 0 }).replace(/\n$/, '');
  }
}

function globToRegExp(glob: string): RegExp {
  let out = '';
  let braces = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      out += '.*';
      i++;
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else if (c === '{') {
      braces++;
      out += '(?:';
    } else if (c === '}' && braces > 0) {
      braces--;
      out += ')';
    } else if (c === ',' && braces > 0) out += '|';
    else if (c === '[' || c === ']') out += c;
    else out += c.replace(/[.+^$()|\\{}]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}
