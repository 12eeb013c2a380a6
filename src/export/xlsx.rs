//! A report as an .xlsx workbook: one sheet per table, the report's heading (period, time,
//! audit head) on top, bold headers and totals, number formats for quantities and money.

use rust_decimal::prelude::ToPrimitive;
use rust_xlsxwriter::{Format, Workbook, XlsxError};

use crate::domain::report::{Cell, ColumnKind, Report};

fn sheet_name(i: usize, name: &str) -> String {
    let clean: String = name.chars().filter(|c| !"[]:*?/\\".contains(*c)).collect();
    let full = format!("{} {}", i + 1, clean);
    full.chars().take(31).collect()
}

pub fn render(r: &Report) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let title = Format::new().set_bold().set_font_size(14);
    let qty = Format::new().set_num_format("#,##0.###");
    let money = Format::new().set_num_format("#,##0.00");
    let qty_bold = Format::new().set_num_format("#,##0.###").set_bold();
    let money_bold = Format::new().set_num_format("#,##0.00").set_bold();
    for (i, t) in r.tables.iter().enumerate() {
        let ws = wb.add_worksheet();
        ws.set_name(sheet_name(i, &t.name))?;
        ws.write_string_with_format(0, 0, &r.title, &title)?;
        let mut head = vec![("Table", t.name.clone())];
        if let Some(f) = r.from {
            head.push(("From", f.to_string()));
        }
        if let Some(to) = r.to {
            head.push(("To", to.to_string()));
        }
        head.push((
            "Computed at",
            crate::domain::audit::timestamp(r.computed_at),
        ));
        head.push((
            "Audit head",
            format!("{} {}", r.audit_head.seq, r.audit_head.hash),
        ));
        for (k, (label, value)) in head.iter().enumerate() {
            ws.write_string_with_format(1 + k as u32, 0, *label, &bold)?;
            ws.write_string(1 + k as u32, 1, value)?;
        }
        let header_row = 2 + head.len() as u32;
        for (c, col) in t.columns.iter().enumerate() {
            ws.write_string_with_format(header_row, c as u16, &col.label, &bold)?;
            let width = match col.kind {
                ColumnKind::Text => 24.0,
                ColumnKind::Time => 28.0,
                _ => 14.0,
            };
            ws.set_column_width(c as u16, width)?;
        }
        let rows = t
            .rows
            .iter()
            .map(|r| (r, false))
            .chain(t.totals.iter().map(|r| (r, true)));
        for (n, (row, total)) in rows.enumerate() {
            let y = header_row + 1 + n as u32;
            for (c, cell) in row.iter().enumerate() {
                let x = c as u16;
                match cell {
                    Cell::Empty => {}
                    Cell::Qty(q) => {
                        let f = if total { &qty_bold } else { &qty };
                        ws.write_number_with_format(y, x, q.value().to_f64().unwrap_or(0.0), f)?;
                    }
                    Cell::Money(m) => {
                        let f = if total { &money_bold } else { &money };
                        ws.write_number_with_format(y, x, m.value().to_f64().unwrap_or(0.0), f)?;
                    }
                    Cell::Int(v) => {
                        ws.write_number(y, x, *v as f64)?;
                    }
                    other if total => {
                        ws.write_string_with_format(y, x, other.text(), &bold)?;
                    }
                    other => {
                        ws.write_string(y, x, other.text())?;
                    }
                }
            }
        }
    }
    if r.tables.is_empty() {
        wb.add_worksheet().write_string(0, 0, &r.title)?;
    }
    wb.save_to_buffer()
}
