/**
 * Draws horizontal bar charts into an RGB raster and encodes them as PNG: one panel per figure,
 * one bar per path, each labelled with its value and its ratio to the peers.
 *
 * @module
 */

import { GLYPH_HEIGHT, GLYPH_WIDTH, glyphRows } from "./bitmap_font.ts";
import { encodePng } from "./png.ts";

/** An RGB colour. */
export type Rgb = readonly [number, number, number];

/** One bar: its label, its length (absent: nothing measured), and the text printed after it. */
export interface Bar {
  label: string;
  value: number | undefined;
  text: string;
  color: Rgb;
}

/** One panel: a title over its bars, all scaled to the panel's largest value. */
export interface Panel {
  title: string;
  bars: Bar[];
}

/** An RGB image that can be drawn on. */
export class Raster {
  readonly pixels: Uint8Array;

  /** A `width` × `height` image filled with `background`. */
  constructor(readonly width: number, readonly height: number, background: Rgb = [255, 255, 255]) {
    this.pixels = new Uint8Array(width * height * 3);
    this.fillRect(0, 0, width, height, background);
  }

  /** Fills the rectangle (clipped to the image). */
  fillRect(x: number, y: number, w: number, h: number, color: Rgb): void {
    const x0 = Math.max(0, Math.floor(x)), x1 = Math.min(this.width, Math.floor(x + w));
    const y0 = Math.max(0, Math.floor(y)), y1 = Math.min(this.height, Math.floor(y + h));
    for (let yy = y0; yy < y1; yy++) {
      for (let xx = x0; xx < x1; xx++) this.pixels.set(color, (yy * this.width + xx) * 3);
    }
  }

  /** Draws `text` with its top left corner at (x, y), each font pixel `scale` pixels wide. */
  text(x: number, y: number, text: string, color: Rgb, scale = 2): void {
    for (const ch of text) {
      const rows = glyphRows(ch);
      for (let r = 0; r < GLYPH_HEIGHT; r++) {
        for (let c = 0; c < GLYPH_WIDTH; c++) {
          if (rows[r] & (1 << (GLYPH_WIDTH - 1 - c))) {
            this.fillRect(x + c * scale, y + r * scale, scale, scale, color);
          }
        }
      }
      x += (GLYPH_WIDTH + 1) * scale;
    }
  }
}

/** Pixel width of `text` drawn at `scale`. */
export function textWidth(text: string, scale = 2): number {
  return [...text].length * (GLYPH_WIDTH + 1) * scale;
}

const SCALE = 2;
const LINE = (GLYPH_HEIGHT + 3) * SCALE;
const MARGIN = 12;
const BAR_AREA = 420;
const INK: Rgb = [20, 20, 20];
const GRID: Rgb = [225, 225, 225];

/** Lays out `panels` under `title` and returns the picture as PNG bytes with its size. */
export function renderBarChart(
  title: string,
  panels: Panel[],
): { png: Uint8Array; width: number; height: number } {
  const labelWidth = Math.max(...panels.flatMap((p) => p.bars.map((b) => textWidth(b.label))), 0);
  const textArea = Math.max(...panels.flatMap((p) => p.bars.map((b) => textWidth(b.text))), 0);
  const barX = MARGIN + labelWidth + MARGIN;
  const width = Math.max(
    barX + BAR_AREA + MARGIN + textArea + MARGIN,
    ...[title, ...panels.map((p) => p.title)].map((t) => textWidth(t) + 2 * MARGIN),
  );
  const panelHeight = (p: Panel) => LINE + p.bars.length * LINE + MARGIN;
  const height = MARGIN + 2 * LINE + panels.reduce((n, p) => n + panelHeight(p), 0);
  const img = new Raster(width, height);
  img.text(MARGIN, MARGIN, title, INK, SCALE);
  let y = MARGIN + 2 * LINE;
  for (const panel of panels) {
    img.text(MARGIN, y, panel.title, INK, SCALE);
    img.fillRect(MARGIN, y + LINE - 4, width - 2 * MARGIN, 1, GRID);
    const max = Math.max(...panel.bars.map((b) => b.value ?? 0), 0);
    let row = y + LINE;
    for (const bar of panel.bars) {
      img.text(MARGIN, row, bar.label, INK, SCALE);
      const length = bar.value !== undefined && max > 0
        ? Math.max(1, (bar.value / max) * BAR_AREA)
        : 0;
      img.fillRect(barX, row, length, GLYPH_HEIGHT * SCALE, bar.color);
      img.text(barX + length + MARGIN, row, bar.text, INK, SCALE);
      row += LINE;
    }
    y += panelHeight(panel);
  }
  return { png: encodePng(width, height, img.pixels), width, height };
}
