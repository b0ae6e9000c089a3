// A selection of devices travels to the review and the wizard in the URL (`devices=<mac>,…`);
// a big one (more than fits a readable URL) through sessionStorage, as `devices=@selection` (or
// `@selection:<slot>` when one page links several selections, like the review's per-model choice).

const KEY = 'flotilla.selection';
const MAX_IN_URL = 100;

const slotKey = (slot: string) => (slot ? `${KEY}.${slot}` : KEY);

/** The `devices` route parameter for a selection (pair it with `rememberSelection` on click). */
export function selectionParam(macs: readonly string[], slot = ''): string[] {
  return macs.length <= MAX_IN_URL ? [...macs] : [slot ? `@selection:${slot}` : '@selection'];
}

/** Keeps a big selection for the page the link opens. */
export function rememberSelection(macs: readonly string[], slot = ''): void {
  if (macs.length <= MAX_IN_URL) return;
  try {
    sessionStorage.setItem(slotKey(slot), JSON.stringify(macs));
  } catch {
    /* storage disabled: the review finds no selection and says so */
  }
}

/** The MACs a `devices` route parameter stands for. */
export function selectionFrom(param: readonly string[] | undefined): string[] {
  if (!param?.length) return [];
  const m = param.length === 1 ? /^@selection(?::(.+))?$/.exec(param[0]) : null;
  if (m) {
    try {
      const v = JSON.parse(sessionStorage.getItem(slotKey(m[1] ?? '')) ?? '[]') as unknown;
      return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
    } catch {
      return [];
    }
  }
  return [...param];
}
