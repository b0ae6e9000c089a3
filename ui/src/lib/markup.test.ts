// Checks of every component's markup that the type checker cannot make:
// - Svelte drops the whitespace at the start and end of a block (`{#if …} text`), so
//   `confirm.{#if tauri} Dropped files…` renders "confirm.Dropped files…" and
//   `{size}{#if gzip} (gzip…)` renders "65.3 KiB(gzip…": a space that must show is written `{' '}`.
// - A table header cell has text (for screen readers, a visually hidden one): axe's
//   `empty-table-header`.

import { describe, expect, it } from 'vitest';
import { parse } from 'svelte/compiler';

const sources = import.meta.glob('/src/**/*.svelte', { query: '?raw', import: 'default', eager: true }) as Record<string, string>;

interface Node {
  type: string;
  start: number;
  data?: string;
  name?: string;
  attributes?: { type: string; name?: string }[];
  fragment?: { nodes: Node[] };
  [k: string]: unknown;
}

const BLOCK_FRAGMENTS = ['consequent', 'alternate', 'body', 'fallback', 'pending', 'then', 'catch'];

function lineOf(src: string, at: number): number {
  return src.slice(0, at).split('\n').length;
}

/** Blocks whose first or last text would lose a space the author meant to show. */
function lostSpaces(src: string): string[] {
  const found: string[] = [];
  const ast = parse(src, { modern: true }) as unknown as { fragment: { nodes: Node[] } };
  const checkBlock = (nodes: Node[]) => {
    if (!nodes.length) return;
    const first = nodes[0];
    const last = nodes[nodes.length - 1];
    if (first.type === 'Text' && /^[ \t]+(?=\S)|^[ \t]+$/.test(first.data!) && (nodes.length > 1 || /\S/.test(first.data!)))
      found.push(`line ${lineOf(src, first.start)}: a block starts with a space Svelte drops: ${JSON.stringify(first.data!.slice(0, 30))}`);
    if (last.type === 'Text' && /\S[ \t]+$|^[ \t]+$/.test(last.data!) && (nodes.length > 1 || /\S/.test(last.data!)))
      found.push(`line ${lineOf(src, last.start)}: a block ends with a space Svelte drops: ${JSON.stringify(last.data!.slice(-30))}`);
  };
  const walk = (n: unknown) => {
    if (!n || typeof n !== 'object') return;
    if (Array.isArray(n)) return n.forEach(walk);
    const node = n as Node;
    if (/Block$/.test(node.type)) {
      for (const k of BLOCK_FRAGMENTS) {
        const f = node[k] as { nodes?: Node[] } | null | undefined;
        if (f?.nodes) checkBlock(f.nodes);
      }
      if (node.type === 'KeyBlock' || node.type === 'SnippetBlock') checkBlock(node.fragment?.nodes ?? []);
    }
    for (const [k, v] of Object.entries(node)) if (k !== 'parent' && v && typeof v === 'object') walk(v);
  };
  walk(ast.fragment);
  return found;
}

/** `<th>` cells with neither text nor an aria-label. */
function emptyHeaders(src: string): string[] {
  const found: string[] = [];
  const ast = parse(src, { modern: true }) as unknown as { fragment: { nodes: Node[] } };
  const hasContent = (nodes: Node[]): boolean =>
    nodes.some((c) => (c.type === 'Text' ? /\S/.test(c.data!) : c.type !== 'Comment'));
  const walk = (n: unknown) => {
    if (!n || typeof n !== 'object') return;
    if (Array.isArray(n)) return n.forEach(walk);
    const node = n as Node;
    if (node.type === 'RegularElement' && node.name === 'th') {
      const labelled = node.attributes?.some((a) => a.type === 'Attribute' && (a.name === 'aria-label' || a.name === 'aria-labelledby'));
      if (!labelled && !hasContent(node.fragment?.nodes ?? [])) found.push(`line ${lineOf(src, node.start)}: <th> without text`);
    }
    for (const [k, v] of Object.entries(node)) if (k !== 'parent' && v && typeof v === 'object') walk(v);
  };
  walk(ast.fragment);
  return found;
}

describe('markup of every component', () => {
  it('finds the components', () => {
    expect(Object.keys(sources).length).toBeGreaterThan(15);
  });
  for (const [file, src] of Object.entries(sources)) {
    it(`${file}: no space lost at the edge of a block, no empty table header`, () => {
      expect([...lostSpaces(src), ...emptyHeaders(src)]).toEqual([]);
    });
  }
  it('catches what it is for', () => {
    expect(lostSpaces('<p>confirm.{#if a} Dropped files.{/if}</p>')).toHaveLength(1);
    expect(lostSpaces('<p>{size}{#if gz} (gzip){/if}</p>')).toHaveLength(1);
    expect(lostSpaces('<p>Wave 1{#if c} <b>current</b>{/if}</p>')).toHaveLength(1);
    expect(lostSpaces('<p>{#if c}<b>x</b> more {/if}end</p>')).toHaveLength(1);
    expect(lostSpaces("<p>{size}{#if gz}{' '}(gzip){/if}</p>")).toEqual([]);
    expect(lostSpaces('{#if a}\n  <p>x</p>\n{/if}')).toEqual([]);
    expect(emptyHeaders('<table><tr><th></th><th>A</th></tr></table>')).toHaveLength(1);
    expect(emptyHeaders('<table><tr><th><span class="sr-only">Actions</span></th></tr></table>')).toEqual([]);
  });
});
