//! TEMPORARY until core::format lands.
use wire_core::spec::FileFormat;
use wire_core::{BatchView, Schema};

pub(crate) struct TextWriter;
impl TextWriter {
    pub(crate) fn new(_format: FileFormat, _schema: &Schema) -> TextWriter {
        TextWriter
    }
    pub(crate) fn header(&self, _out: &mut Vec<u8>) {}
    pub(crate) fn rows(&self, view: &BatchView<'_>, out: &mut Vec<u8>) {
        for row in view.rows() {
            out.extend_from_slice(format!("{:?}\n", row.to_values()).as_bytes());
        }
    }
}
