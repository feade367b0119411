// Reads of stored workflows the builder needs beside api.js's JSON calls.

import { api, ApiError } from 'console:api';

/** The stored text of a version (the active one when `version` is null), byte for byte (the export's body, whatever its type). */
export async function exportText(name, version) {
  const q = version ? `?version=${version}` : '';
  const res = await fetch(`api/v1/workflows/${encodeURIComponent(name)}/export${q}`, { credentials: 'same-origin' });
  if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => ({})));
  return { text: await res.text(), json: (res.headers.get('content-type') || '').includes('json') };
}

export async function versionsOf(name) {
  const items = [];
  let cursor = '';
  for (let i = 0; i < 50; i += 1) {
    let page;
    try {
      page = await api('GET', `/workflows/${encodeURIComponent(name)}/versions?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, undefined, { quiet: true });
    } catch (e) {
      if (e.status === 404) return [];
      throw e;
    }
    items.push(...page.items);
    if (!page.next_cursor) break;
    cursor = page.next_cursor;
  }
  return items;
}

