//! A hand-written SVG of the cost-quality plane: each router's points and hull, single models as labelled squares.

use std::fmt::Write as _;

use super::{hull, Point};

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const MAX_MARKED: usize = 200;

/// Draw `routers` (name, points) and `singles` (name, point). `log_cost` puts cost on a log10 axis.
pub fn plot(
    title: &str,
    routers: &[(String, Vec<Point>)],
    singles: &[(String, Point)],
    log_cost: bool,
) -> String {
    let (w, h) = (900.0, 560.0);
    let (ml, mr, mt, mb) = (70.0, 230.0, 40.0, 50.0);
    let tx = |c: f64| if log_cost { c.max(1e-300).log10() } else { c };
    let all: Vec<Point> = routers
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .chain(singles.iter().map(|(_, p)| *p))
        .filter(|p| p.cost.is_finite() && p.quality.is_finite())
        .collect();
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in &all {
        x0 = x0.min(tx(p.cost));
        x1 = x1.max(tx(p.cost));
        y0 = y0.min(p.quality);
        y1 = y1.max(p.quality);
    }
    if !x0.is_finite() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let padx = ((x1 - x0) * 0.05).max(1e-9);
    let pady = ((y1 - y0) * 0.05).max(1e-3);
    let (x0, x1, y0, y1) = (x0 - padx, x1 + padx, y0 - pady, y1 + pady);
    let px = |c: f64| ml + (tx(c) - x0) / (x1 - x0) * (w - ml - mr);
    let py = |q: f64| mt + (y1 - q) / (y1 - y0) * (h - mt - mb);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{ml}" y="24" font-size="15">{}</text>"#,
        esc(title)
    );
    // axes and ticks
    let (ax0, ay0, ax1, ay1) = (ml, h - mb, w - mr, mt);
    let _ = writeln!(
        s,
        r##"<path d="M{ax0},{ay1} L{ax0},{ay0} L{ax1},{ay0}" stroke="#333" fill="none"/>"##
    );
    for i in 0..=5 {
        let q = y0 + (y1 - y0) * f64::from(i) / 5.0;
        let y = py(q);
        let _ = writeln!(
            s,
            r##"<line x1="{ax0}" y1="{y:.1}" x2="{ax1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{q:.3}</text>"##,
            ax0 - 6.0,
            y + 4.0
        );
        let xv = x0 + (x1 - x0) * f64::from(i) / 5.0;
        let cost = if log_cost { 10f64.powf(xv) } else { xv };
        let xp = ml + (xv - x0) / (x1 - x0) * (w - ml - mr);
        let _ = writeln!(
            s,
            r##"<line x1="{xp:.1}" y1="{ay0}" x2="{xp:.1}" y2="{}" stroke="#333"/><text x="{xp:.1}" y="{}" text-anchor="middle">{cost:.2e}</text>"##,
            ay0 + 5.0,
            ay0 + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">mean cost per query{}</text>"#,
        (ax0 + ax1) / 2.0,
        h - 12.0,
        if log_cost { " (log scale)" } else { "" }
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">mean quality</text>"#,
        (ay0 + ay1) / 2.0
    );
    // routers
    for (i, (name, pts)) in routers.iter().enumerate() {
        let col = COLORS[i % COLORS.len()];
        let hv = hull(pts);
        let mut d = String::new();
        for (j, p) in hv.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1} ",
                if j == 0 { "M" } else { "L" },
                px(p.cost),
                py(p.quality)
            );
        }
        if let Some(last) = hv.last() {
            let _ = write!(d, "L{:.1},{:.1}", ax1, py(last.quality));
        }
        let _ = writeln!(
            s,
            r#"<path d="{d}" stroke="{col}" stroke-width="2" fill="none"/>"#
        );
        // Every knob value's point while they are few; an exact sweep has thousands, of
        // which the hull's vertices are drawn.
        let marked = if pts.len() <= MAX_MARKED { pts } else { &hv };
        for p in marked {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{col}" fill-opacity="0.6"/>"#,
                px(p.cost),
                py(p.quality)
            );
        }
        let ly = mt + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{col}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            w - mr + 15.0,
            w - mr + 35.0,
            w - mr + 40.0,
            ly + 4.0,
            esc(name)
        );
    }
    // single models
    for (name, p) in singles {
        let (x, y) = (px(p.cost), py(p.quality));
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="7" height="7" fill="#000"/><text x="{:.1}" y="{:.1}" font-size="10" fill="#444">{}</text>"##,
            x - 3.5,
            y - 3.5,
            x + 6.0,
            y - 5.0,
            esc(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A line chart: `series` (name, (x, y) points) and horizontal `levels` (name, y) on the left
/// axis, `right` (name, points in [0, 1]) dashed on a right axis from 0 to 1.
pub fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    levels: &[(String, f64)],
    right: Option<(String, Vec<(f64, f64)>)>,
) -> String {
    let (w, h) = (900.0, 560.0);
    let (ml, mr, mt, mb) = (70.0, 230.0, 40.0, 50.0);
    let xs = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .chain(right.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)));
    let ys = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .chain(levels.iter().map(|l| l.1));
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in xs.filter(|v| v.is_finite()) {
        x0 = x0.min(x);
        x1 = x1.max(x);
    }
    let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
    for y in ys.filter(|v| v.is_finite()) {
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() || x1 <= x0 {
        (x0, x1) = (0.0, x0.max(0.0) + 1.0);
    }
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    let pady = ((y1 - y0) * 0.05).max(1e-3);
    let (y0, y1) = (y0 - pady, y1 + pady);
    let px = |x: f64| ml + (x - x0) / (x1 - x0) * (w - ml - mr);
    let py = |y: f64| mt + (y1 - y) / (y1 - y0) * (h - mt - mb);
    let pr = |y: f64| mt + (1.0 - y) * (h - mt - mb);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{ml}" y="24" font-size="15">{}</text>"#,
        esc(title)
    );
    let (bx, by) = (w - mr, h - mb);
    let _ = writeln!(
        s,
        r#"<rect x="{ml}" y="{mt}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        bx - ml,
        by - mt
    );
    for i in 0..=5 {
        let t = i as f64 / 5.0;
        let (xv, yv) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#444">{:.0}</text>"##,
            px(xv),
            by + 16.0,
            xv
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{:.3}</text>"##,
            ml - 6.0,
            py(yv) + 4.0,
            yv
        );
        if right.is_some() {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" fill="#888">{:.1}</text>"##,
                bx + 4.0,
                pr(t) + 4.0,
                t
            );
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (ml + bx) / 2.0,
        h - 12.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">{}</text>"#,
        (mt + by) / 2.0,
        (mt + by) / 2.0,
        esc(y_label)
    );
    let mut legend = 0usize;
    let mut key = |s: &mut String, name: &str, color: &str, dash: &str| {
        let y = mt + 10.0 + legend as f64 * 18.0;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            bx + 34.0,
            bx + 58.0,
            bx + 62.0,
            y + 4.0,
            esc(name)
        );
        legend += 1;
    };
    for (i, (name, y)) in levels.iter().enumerate() {
        let color = COLORS[(series.len() + i) % COLORS.len()];
        let _ = writeln!(
            s,
            r#"<line x1="{ml}" y1="{:.1}" x2="{bx}" y2="{:.1}" stroke="{color}" stroke-dasharray="2 3"/>"#,
            py(*y),
            py(*y)
        );
        key(&mut s, &format!("{name} {y:.4}"), color, "2 3");
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            path.join(" ")
        );
        key(&mut s, name, color, "none");
    }
    if let Some((name, pts)) = &right {
        let path: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), pr(y.clamp(0.0, 1.0))))
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#888" stroke-width="1.5" stroke-dasharray="6 4"/>"##,
            path.join(" ")
        );
        key(&mut s, name, "#888", "6 4");
    }
    s.push_str("</svg>\n");
    s
}
