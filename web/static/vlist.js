// A windowed list: only the rows in view (plus a margin) exist in the DOM, so a
// session of 10,000 messages scrolls as smoothly as one of 50.
//
// Rows have one fixed height (the CSS custom property --row-h on the viewport);
// long texts are clamped by CSS. Positions are set through the CSSOM
// (element.style.transform), which the Content-Security-Policy allows, unlike
// style attributes in markup. A row is rebuilt only when its key changes.

const MARGIN_ROWS = 8;

export class VirtualList {
  /**
   * @param {HTMLElement} viewport  the scrolling element
   * @param {(id) => HTMLElement} renderRow  builds one row
   * @param {(id) => string} rowKey  changes whenever the row must be rebuilt
   */
  constructor(viewport, renderRow, rowKey) {
    this.viewport = viewport;
    this.sizer = viewport.querySelector(".feed-sizer");
    this.renderRow = renderRow;
    this.rowKey = rowKey;
    this.ids = [];
    this.rows = new Map(); // id -> {el, key, index}
    this.rowHeight = parseFloat(getComputedStyle(viewport).getPropertyValue("--row-h")) || 96;
    this.frame = 0;
    this.onRange = null; // (first, last) after each render: used to load older pages
    this.decorate = null; // (element, id) on every visible row, each render: cursor, selection
    viewport.addEventListener("scroll", () => this.schedule(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(viewport);
  }

  /** Replace the list. `shift`: rows added (or, negative, removed) above the view;
   * when the moderator reads further down, the rows they read stay where they are.
   * At the top, new rows simply push the others down. */
  setIds(ids, { shift = 0 } = {}) {
    this.ids = ids;
    this.sizer.style.height = `${ids.length * this.rowHeight}px`;
    if (shift !== 0 && this.viewport.scrollTop > this.rowHeight / 2) {
      this.viewport.scrollTop = Math.max(0, this.viewport.scrollTop + shift * this.rowHeight);
    }
    this.render();
  }

  /** Forget every rendered row (their ids may mean other messages now). */
  reset() {
    for (const row of this.rows.values()) row.el.remove();
    this.rows.clear();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  /** Rebuild visible rows whose key changed (after moderation, a count, a filter). */
  refresh() {
    this.render();
  }

  visibleRange() {
    const top = this.viewport.scrollTop;
    const height = this.viewport.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / this.rowHeight) - MARGIN_ROWS);
    const last = Math.min(this.ids.length - 1, Math.ceil((top + height) / this.rowHeight) + MARGIN_ROWS);
    return [first, last];
  }

  render() {
    const [first, last] = this.visibleRange();
    const keep = new Set();
    const fragment = document.createDocumentFragment();
    for (let i = first; i <= last; i += 1) {
      const id = this.ids[i];
      keep.add(id);
      const key = this.rowKey(id);
      let row = this.rows.get(id);
      if (!row || row.key !== key) {
        const el = this.renderRow(id);
        if (row) row.el.replaceWith(el);
        else fragment.append(el);
        row = { el, key, index: -1, size: -1 };
        this.rows.set(id, row);
      }
      if (row.index !== i) {
        row.index = i;
        row.el.style.transform = `translateY(${i * this.rowHeight}px)`;
        row.el.setAttribute("aria-posinset", String(i + 1));
      }
      if (row.size !== this.ids.length) {
        row.size = this.ids.length;
        row.el.setAttribute("aria-setsize", String(row.size));
      }
      if (this.decorate) this.decorate(row.el, id);
    }
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    if (fragment.childNodes.length) this.viewport.append(fragment);
    if (this.onRange) this.onRange(first, last);
  }

  indexOf(id) {
    const row = this.rows.get(id);
    if (row && this.ids[row.index] === id) return row.index;
    return this.ids.indexOf(id);
  }

  /** Scroll just enough for row `index` to be fully visible. */
  reveal(index) {
    if (index < 0) return;
    const top = index * this.rowHeight;
    const view = this.viewport;
    if (top < view.scrollTop) view.scrollTop = top;
    else if (top + this.rowHeight > view.scrollTop + view.clientHeight) {
      view.scrollTop = top + this.rowHeight - view.clientHeight;
    }
    this.render();
  }

  rowElement(id) {
    return this.rows.get(id)?.el ?? null;
  }
}
