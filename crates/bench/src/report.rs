//! The table printed at the end of a run (and stored in the JSON next to the raw figures).

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Row {
    pub figure: String,
    pub metric: String,
    pub value: String,
    pub target: String,
    /// `Some(true)` when the figure meets its target, `None` when it has none.
    pub met: Option<bool>,
}

impl Row {
    pub fn new(figure: &str, metric: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            figure: figure.into(),
            metric: metric.into(),
            value: value.into(),
            target: String::new(),
            met: None,
        }
    }

    pub fn target(mut self, target: impl Into<String>, met: bool) -> Row {
        self.target = target.into();
        self.met = Some(met);
        self
    }

    pub fn json(&self) -> Value {
        json!({ "figure": self.figure, "metric": self.metric, "value": self.value, "target": self.target,
                "met": self.met })
    }
}

pub fn table(rows: &[Row]) -> String {
    let head = ["figure", "measurement", "value", "target", ""];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let verdict = match r.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            [
                r.figure.clone(),
                r.metric.clone(),
                r.value.clone(),
                r.target.clone(),
                verdict.to_string(),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: [&str; 5]| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in c.iter().zip(width).enumerate() {
            if i > 0 {
                s.push_str(" | ");
            }
            s.push_str(cell);
            for _ in cell.chars().count()..w {
                s.push(' ');
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(head);
    out.push('\n');
    out.push_str(
        &width
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-|-"),
    );
    out.push('\n');
    for c in &cells {
        out.push_str(&line([&c[0], &c[1], &c[2], &c[3], &c[4]]));
        out.push('\n');
    }
    out
}
