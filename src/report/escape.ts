// Escaping for the report page: text from files (generations, prompts, token texts, paths) is
// untrusted and may hold markup, "</script>", "<!--" or control characters.

/** C0/C1 control characters other than tab and newline are shown as visible symbols (␀ …), not emitted raw. */
export function visible(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x20 ? String.fromCharCode(0x2400 + code) : code === 0x7f ? "\u2421" : "\ufffd";
  });
}

/** Text for an HTML text node or a quoted attribute value. */
export function escapeHtml(text: string): string {
  return visible(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** Text that came from a file: escaped and wrapped, so that it is told apart from the page's own markup. */
export function userText(text: string): string {
  return `<span class="ut">${escapeHtml(text)}</span>`;
}

/**
 * JSON for a <script type="application/json"> block: "<" is written as \u003c so that no
 * "</script>" or "<!--" can end or change the block; U+2028/2029 likewise, for old parsers.
 */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c").replace(/\u2028/g, "\\u2028").replace(/\u2029/g, "\\u2029");
}

/** A token's text as a short quoted literal (spaces and newlines visible): " the" → "␣the". */
export function tokenText(text: string): string {
  return JSON.stringify(text.replace(/ /g, "\u2423")).slice(1, -1);
}
