//! Deterministic SVG rendering of an ECG on standard paper.
//!
//! One SVG user unit is one millimetre (`width="…mm"` with a matching `viewBox`), so a
//! printed or 100 %-zoom page has the true paper scale: 1 mm minor / 5 mm major grid, time
//! at `speed_mm_s` (25 or 50 mm/s) and amplitude at `gain_mm_mv` (5, 10 or 20 mm/mV). Each
//! row starts with a 1 mV calibration pulse 0.2 s wide. The same input always gives the same
//! bytes (coordinates are written with two decimals, no clocks, no randomness).

use std::fmt::Write;

use huren_model::ecg::{EcgBody, SeriesKind, WaveLead, WaveSeries, Waveform};

/// SVG user units per millimetre (1: the drawing is in millimetres).
pub const PX_PER_MM: f64 = 1.0;

/// Lead arrangement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    /// 3 rows × 4 columns of 2.5 s, plus a 10 s rhythm strip.
    #[default]
    ThreeByFour,
    /// 6 rows × 2 columns of 5 s, plus a 10 s rhythm strip.
    SixByTwo,
    /// 12 rows of 10 s, plus a 10 s rhythm strip.
    TwelveByOne,
}

impl Layout {
    /// Parses `3x4`, `6x2`, `12x1`.
    pub fn parse(s: &str) -> Option<Layout> {
        match s {
            "3x4" => Some(Layout::ThreeByFour),
            "6x2" => Some(Layout::SixByTwo),
            "12x1" => Some(Layout::TwelveByOne),
            _ => None,
        }
    }
    fn grid(self) -> (usize, usize) {
        match self {
            Layout::ThreeByFour => (3, 4),
            Layout::SixByTwo => (6, 2),
            Layout::TwelveByOne => (12, 1),
        }
    }
}

/// Rendering options.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderOptions {
    /// Lead arrangement.
    pub layout: Layout,
    /// Paper speed, mm/s (25 standard, 50 for fast rhythms).
    pub speed_mm_s: f64,
    /// Gain, mm/mV (10 standard; 5 or 20).
    pub gain_mm_mv: f64,
    /// Lead of the 10 s rhythm strip.
    pub rhythm_lead: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            layout: Layout::ThreeByFour,
            speed_mm_s: 25.0,
            gain_mm_mv: 10.0,
            rhythm_lead: "II".into(),
        }
    }
}

const STANDARD: [&str; 12] = [
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
];
/// Left margin holding the calibration pulse, mm.
pub const CAL_MARGIN_MM: f64 = 10.0;
/// Header height, mm.
pub const HEADER_MM: f64 = 34.0;
/// Strip length, seconds.
const STRIP_S: f64 = 10.0;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            c if (c as u32) < 0x20 && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

struct Pen<'a> {
    out: String,
    opts: &'a RenderOptions,
}

impl Pen<'_> {
    /// A trace of `lead` from `t0` for `dur` seconds, starting at x, centred on `base_y`.
    fn trace(&mut self, lead: &WaveLead, rate: f64, t0: f64, dur: f64, x: f64, base_y: f64) {
        if rate <= 0.0 || !rate.is_finite() {
            return;
        }
        let first = (t0 * rate).round().max(0.0) as usize;
        let last = (((t0 + dur) * rate).round().max(0.0) as usize).min(lead.samples.len());
        if first >= last {
            return;
        }
        let _ = write!(self.out, r#"<polyline class="trace" points=""#);
        for i in first..last {
            let t = i as f64 / rate - t0;
            let px = x + t * self.opts.speed_mm_s;
            let uv = lead.uv(i).unwrap_or(0.0);
            let py = base_y - uv / 1000.0 * self.opts.gain_mm_mv;
            let _ = write!(self.out, "{:.2},{:.2} ", px, py);
        }
        self.out.push_str("\"/>\n");
    }

    /// The 1 mV calibration pulse, 0.2 s wide, at the left of a row.
    fn calibration(&mut self, base_y: f64) {
        let x0 = 2.0;
        let w = 0.2 * self.opts.speed_mm_s;
        let h = self.opts.gain_mm_mv;
        let _ = writeln!(
            self.out,
            r#"<path class="cal" d="M{:.2},{:.2} h1 v{:.2} h{:.2} v{:.2} h1"/>"#,
            x0, base_y, -h, w, h
        );
    }

    fn label(&mut self, x: f64, y: f64, s: &str) {
        let _ = writeln!(
            self.out,
            r#"<text class="lead" x="{:.2}" y="{:.2}">{}</text>"#,
            x,
            y,
            esc(s)
        );
    }
}

/// Renders the ECG as an SVG document: header (patient, time, measurements, statements),
/// the leads in `opts.layout`, a 10 s rhythm strip, and a second panel with any extra leads
/// (V7–V9, right-sided…). Uses the rhythm series, else the representative beat.
pub fn render_svg(body: &EcgBody, wave: &Waveform, opts: &RenderOptions) -> String {
    let speed = if opts.speed_mm_s.is_finite() && opts.speed_mm_s > 0.0 {
        opts.speed_mm_s
    } else {
        25.0
    };
    let gain = if opts.gain_mm_mv.is_finite() && opts.gain_mm_mv > 0.0 {
        opts.gain_mm_mv
    } else {
        10.0
    };
    let opts = &RenderOptions {
        speed_mm_s: speed,
        gain_mm_mv: gain,
        ..opts.clone()
    };
    let empty = WaveSeries {
        kind: SeriesKind::Rhythm,
        sample_rate_hz: 0.0,
        leads: vec![],
    };
    let s = wave
        .series(SeriesKind::Rhythm)
        .or(wave.series.first())
        .unwrap_or(&empty);
    let (rows, cols) = opts.layout.grid();
    let col_s = STRIP_S / cols as f64;
    let row_h = 3.0 * gain;
    let body_w = STRIP_S * speed;
    let width = CAL_MARGIN_MM + body_w + 5.0;
    let extras: Vec<&WaveLead> = s
        .leads
        .iter()
        .filter(|l| !STANDARD.contains(&l.name.as_str()))
        .collect();
    let extra_rows = extras.len().div_ceil(cols);
    let main_h = (rows + 1) as f64 * row_h;
    let extra_h = if extra_rows > 0 {
        8.0 + extra_rows as f64 * row_h
    } else {
        0.0
    };
    let height = HEADER_MM + main_h + extra_h + 5.0;

    let mut pen = Pen {
        out: String::with_capacity(64 * 1024),
        opts,
    };
    let o = &mut pen.out;
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.2}mm" height="{h:.2}mm" viewBox="0 0 {w:.2} {h:.2}" data-speed-mm-s="{speed}" data-gain-mm-mv="{gain}">"#,
        w = width,
        h = height
    );
    o.push_str(concat!(
        "<defs>\n",
        "<pattern id=\"g1\" width=\"1\" height=\"1\" patternUnits=\"userSpaceOnUse\">",
        "<path d=\"M1,0 V1 H0\" fill=\"none\" stroke=\"#f6c6c6\" stroke-width=\"0.05\"/></pattern>\n",
        "<pattern id=\"g5\" width=\"5\" height=\"5\" patternUnits=\"userSpaceOnUse\">",
        "<rect width=\"5\" height=\"5\" fill=\"url(#g1)\"/>",
        "<path d=\"M5,0 V5 H0\" fill=\"none\" stroke=\"#e88\" stroke-width=\"0.15\"/></pattern>\n",
        "<style>text{font-family:'Noto Sans CJK SC','Source Han Sans SC','Microsoft YaHei','PingFang SC',sans-serif;fill:#000}",
        ".h{font-size:3px}.lead{font-size:3px}",
        ".trace{fill:none;stroke:#000;stroke-width:0.25;stroke-linejoin:round}",
        ".cal{fill:none;stroke:#000;stroke-width:0.25}</style>\n",
        "</defs>\n",
    ));
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#fff"/>"##);

    // Header.
    let p = &body.patient;
    let mut lines = Vec::new();
    lines.push(format!(
        "{}  ID {}  {}  {}",
        p.name.as_deref().unwrap_or("—"),
        p.id.as_deref().unwrap_or("—"),
        p.sex.as_deref().unwrap_or(""),
        p.birth_date.as_deref().unwrap_or("")
    ));
    lines.push(format!(
        "{}  {} {}  {} mm/s  {} mm/mV",
        body.acquired_at.as_deref().unwrap_or("time unknown"),
        body.device.manufacturer.as_deref().unwrap_or(""),
        body.device.model.as_deref().unwrap_or(""),
        crate::decimal(speed),
        crate::decimal(gain)
    ));
    let m = &body.measurements;
    let f = |v: Option<i32>| v.map_or("—".to_string(), |x| x.to_string());
    lines.push(format!(
        "HR {} bpm  PR {} ms  QRS {} ms  QT/QTc {}/{} ms  P/QRS/T {}/{}/{}°",
        f(m.heart_rate_bpm),
        f(m.pr_ms),
        f(m.qrs_ms),
        f(m.qt_ms),
        f(m.qtc_ms),
        f(m.p_axis_deg),
        f(m.qrs_axis_deg),
        f(m.t_axis_deg)
    ));
    for st in body.statements.iter().take(4) {
        lines.push(crate::statement_line(st));
    }
    if let Some(c) = &body.critical {
        lines.push(format!("CRITICAL: {} — {}", c.label, c.statement));
    }
    for (i, l) in lines.iter().take(8).enumerate() {
        let _ = writeln!(
            o,
            r#"<text class="h" x="5" y="{:.2}">{}</text>"#,
            5.0 + i as f64 * 4.0,
            esc(l)
        );
    }

    // Grid over the trace area.
    let _ = writeln!(
        o,
        r##"<rect id="grid" x="0" y="{:.2}" width="{:.2}" height="{:.2}" fill="url(#g5)"/>"##,
        HEADER_MM,
        width,
        main_h + extra_h
    );

    // Main panel: column c holds STANDARD[c*rows .. (c+1)*rows], shown over its time window.
    let lead = |n: &str| s.leads.iter().find(|l| l.name == n);
    for r in 0..rows {
        let base = HEADER_MM + (r as f64 + 0.5) * row_h;
        pen.calibration(base);
        for c in 0..cols {
            let name = STANDARD[c * rows + r];
            let x = CAL_MARGIN_MM + c as f64 * col_s * speed;
            pen.label(x + 1.0, base - row_h * 0.35, name);
            if let Some(l) = lead(name) {
                pen.trace(l, s.sample_rate_hz, c as f64 * col_s, col_s, x, base);
            }
        }
    }
    // Rhythm strip.
    let base = HEADER_MM + (rows as f64 + 0.5) * row_h;
    pen.calibration(base);
    pen.label(CAL_MARGIN_MM + 1.0, base - row_h * 0.35, &opts.rhythm_lead);
    if let Some(l) = lead(&opts.rhythm_lead) {
        pen.trace(l, s.sample_rate_hz, 0.0, STRIP_S, CAL_MARGIN_MM, base);
    }
    // Extra leads panel.
    if !extras.is_empty() {
        let top = HEADER_MM + main_h;
        let _ = writeln!(
            pen.out,
            r#"<text class="h" x="5" y="{:.2}">Extra leads</text>"#,
            top + 5.0
        );
        for (k, l) in extras.iter().enumerate() {
            let (r, c) = (k / cols, k % cols);
            let base = top + 8.0 + (r as f64 + 0.5) * row_h;
            if c == 0 {
                pen.calibration(base);
            }
            let x = CAL_MARGIN_MM + c as f64 * col_s * speed;
            pen.label(x + 1.0, base - row_h * 0.35, &l.name);
            pen.trace(l, s.sample_rate_hz, c as f64 * col_s, col_s, x, base);
        }
    }
    pen.out.push_str("</svg>\n");
    pen.out
}
