//! Charts drawn on the server as SVG: horizontal bars and the 2×2 customer grid. No script, no
//! inline style (the console's Content-Security-Policy allows neither): presentation
//! attributes and classes from console.css only. Every chart has a title for screen readers,
//! and the figures are also in a table next to it.

use maud::{Markup, html};

/// One bar: its label, its value, and the text printed at its end.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub text: String,
}

/// Horizontal bars, longest = full width.
pub fn bars(title: &str, bars: &[Bar], class: &str) -> Markup {
    let row = 26.0;
    let label_w = 190.0;
    let bar_w = 300.0;
    let text_w = 120.0;
    let width = label_w + bar_w + text_w;
    let height = row * bars.len().max(1) as f64 + 4.0;
    let max = bars.iter().map(|b| b.value).fold(0.0f64, f64::max);
    html! {
        svg class={"chart " (class)} role="img" viewBox={"0 0 " (width) " " (height)}
            width=(width) height=(height) xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            @for (i, b) in bars.iter().enumerate() {
                @let y = i as f64 * row + 2.0;
                @let w = if max > 0.0 { (b.value / max * bar_w).max(if b.value > 0.0 { 2.0 } else { 0.0 }) } else { 0.0 };
                text x=(label_w - 8.0) y=(y + row * 0.65) text-anchor="end" class="label" { (b.label) }
                rect x=(label_w) y=(y + 4.0) width=(format!("{w:.1}")) height=(row - 8.0) class="bar" {}
                text x=(label_w + w + 6.0) y=(y + row * 0.65) class="value" { (b.text) }
            }
        }
    }
}

/// A 2×2 grid cell: label, count and its CSS class. (The cells are not links: an image's
/// content is not interactive; the table under the picture links each cell to its queue.)
#[derive(Debug, Clone)]
pub struct Cell {
    pub label: String,
    pub count: String,
    pub class: &'static str,
}

/// The customer grid: attitude up (promoter) / down (detractor), profitability left (low) /
/// right (high). `cells` in the order angel, loyal, rebel, hostage.
pub fn grid(title: &str, axis: [&str; 4], cells: &[Cell; 4]) -> Markup {
    let (w, h) = (520.0, 340.0);
    let (x0, y0) = (60.0, 20.0);
    let (cw, ch) = ((w - x0 - 10.0) / 2.0, (h - y0 - 50.0) / 2.0);
    html! {
        svg class="chart grid" role="img" viewBox={"0 0 " (w) " " (h)} width=(w) height=(h)
            xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            @for (i, cell) in cells.iter().enumerate() {
                @let x = x0 + (i % 2) as f64 * cw;
                @let y = y0 + (i / 2) as f64 * ch;
                rect x=(x + 2.0) y=(y + 2.0) width=(cw - 4.0) height=(ch - 4.0) rx="6" class={"cell " (cell.class)} {}
                text x=(x + cw / 2.0) y=(y + ch / 2.0 - 6.0) text-anchor="middle" class="cell-label" { (cell.label) }
                text x=(x + cw / 2.0) y=(y + ch / 2.0 + 22.0) text-anchor="middle" class="cell-count" { (cell.count) }
            }
            // Axes: attitude (vertical), profitability (horizontal).
            text x="14" y=(y0 + ch / 2.0) text-anchor="middle" class="axis" transform={"rotate(-90 14 " (y0 + ch / 2.0) ")"} { (axis[0]) }
            text x="14" y=(y0 + ch * 1.5) text-anchor="middle" class="axis" transform={"rotate(-90 14 " (y0 + ch * 1.5) ")"} { (axis[1]) }
            text x=(x0 + cw / 2.0) y=(y0 + 2.0 * ch + 30.0) text-anchor="middle" class="axis" { (axis[2]) }
            text x=(x0 + cw * 1.5) y=(y0 + 2.0 * ch + 30.0) text-anchor="middle" class="axis" { (axis[3]) }
        }
    }
}
