//! A zip writer laid out as libtorch's `PyTorchStreamWriter` lays out `torch.save` files: stored (uncompressed)
//! records whose data starts on a 64-byte boundary (padded by an `FB` extra field of `Z`s), a zip64 end record
//! always present, and zip64 sizes and offsets where a record or the archive passes 4 GiB.
use std::io::{self, Write};

const ALIGNMENT: u64 = 64;
const LIMIT32: u64 = 0xffff_ffff;

struct Entry {
    name: String,
    crc: u32,
    size: u64,
    offset: u64,
}

pub(crate) struct ZipWriter<W: Write> {
    out: W,
    offset: u64,
    entries: Vec<Entry>,
    /// Sizes and offsets at or above this use zip64 fields (4 GiB; lower in tests).
    zip64_from: u64,
}

fn u16le(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn u32le(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn u64le(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

impl<W: Write> ZipWriter<W> {
    pub fn new(out: W) -> Self {
        ZipWriter { out, offset: 0, entries: Vec::new(), zip64_from: LIMIT32 }
    }
    #[cfg(test)]
    pub fn with_zip64_from(out: W, zip64_from: u64) -> Self {
        ZipWriter { out, offset: 0, entries: Vec::new(), zip64_from }
    }

    /// Appends a stored record.
    pub fn add(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let size = data.len() as u64;
        let big = size >= self.zip64_from;
        let mut h = Vec::with_capacity(30 + name.len() + 20 + 4 + ALIGNMENT as usize);
        u32le(&mut h, 0x0403_4b50);
        u16le(&mut h, if big { 45 } else { 20 });
        u16le(&mut h, 0); // flags
        u16le(&mut h, 0); // stored
        u16le(&mut h, 0); // time 00:00
        u16le(&mut h, 0x21); // date 1980-01-01
        u32le(&mut h, crc.sum());
        let size32 = if big { LIMIT32 as u32 } else { size as u32 };
        u32le(&mut h, size32);
        u32le(&mut h, size32);
        u16le(&mut h, name.len() as u16);
        let zip64_len = if big { 20 } else { 0 };
        let before_pad = self.offset + 30 + name.len() as u64 + zip64_len + 4;
        let pad = (ALIGNMENT - before_pad % ALIGNMENT) % ALIGNMENT;
        u16le(&mut h, (zip64_len + 4 + pad) as u16);
        h.extend_from_slice(name.as_bytes());
        if big {
            u16le(&mut h, 0x0001);
            u16le(&mut h, 16);
            u64le(&mut h, size);
            u64le(&mut h, size);
        }
        h.extend_from_slice(b"FB");
        u16le(&mut h, pad as u16);
        h.resize(h.len() + pad as usize, b'Z');
        self.out.write_all(&h)?;
        self.out.write_all(data)?;
        self.entries.push(Entry { name: name.to_string(), crc: crc.sum(), size, offset: self.offset });
        self.offset += h.len() as u64 + size;
        Ok(())
    }

    /// Writes the central directory and the end records; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let cd_start = self.offset;
        let mut cd = Vec::new();
        for e in &self.entries {
            let big = e.size >= self.zip64_from || e.offset >= self.zip64_from;
            u32le(&mut cd, 0x0201_4b50);
            u16le(&mut cd, if big { 45 } else { 20 }); // made by
            u16le(&mut cd, if big { 45 } else { 20 }); // needed
            u16le(&mut cd, 0);
            u16le(&mut cd, 0);
            u16le(&mut cd, 0);
            u16le(&mut cd, 0x21);
            u32le(&mut cd, e.crc);
            let (size32, offset32) =
                if big { (LIMIT32 as u32, LIMIT32 as u32) } else { (e.size as u32, e.offset as u32) };
            u32le(&mut cd, size32);
            u32le(&mut cd, size32);
            u16le(&mut cd, e.name.len() as u16);
            u16le(&mut cd, if big { 28 } else { 0 });
            u16le(&mut cd, 0); // comment
            u16le(&mut cd, 0); // disk
            u16le(&mut cd, 0); // internal attributes
            u32le(&mut cd, 0); // external attributes
            u32le(&mut cd, offset32);
            cd.extend_from_slice(e.name.as_bytes());
            if big {
                u16le(&mut cd, 0x0001);
                u16le(&mut cd, 24);
                u64le(&mut cd, e.size);
                u64le(&mut cd, e.size);
                u64le(&mut cd, e.offset);
            }
        }
        let cd_size = cd.len() as u64;
        let n = self.entries.len() as u64;
        let eocd64_at = cd_start + cd_size;
        // zip64 end of central directory record and its locator.
        u32le(&mut cd, 0x0606_4b50);
        u64le(&mut cd, 44);
        u16le(&mut cd, 45);
        u16le(&mut cd, 45);
        u32le(&mut cd, 0);
        u32le(&mut cd, 0);
        u64le(&mut cd, n);
        u64le(&mut cd, n);
        u64le(&mut cd, cd_size);
        u64le(&mut cd, cd_start);
        u32le(&mut cd, 0x0706_4b50);
        u32le(&mut cd, 0);
        u64le(&mut cd, eocd64_at);
        u32le(&mut cd, 1);
        // End of central directory.
        u32le(&mut cd, 0x0605_4b50);
        u16le(&mut cd, 0);
        u16le(&mut cd, 0);
        u16le(&mut cd, n.min(0xffff) as u16);
        u16le(&mut cd, n.min(0xffff) as u16);
        u32le(&mut cd, cd_size.min(LIMIT32) as u32);
        u32le(&mut cd, cd_start.min(LIMIT32) as u32);
        u16le(&mut cd, 0);
        self.out.write_all(&cd)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn roundtrip(zip64_from: u64) {
        let mut w = ZipWriter::with_zip64_from(std::io::Cursor::new(Vec::new()), zip64_from);
        let records: Vec<(String, Vec<u8>)> =
            (0..5).map(|i| (format!("archive/data/{i}"), (0..(i * 37 + 1) as u8).collect())).collect();
        for (name, data) in &records {
            w.add(name, data).unwrap();
        }
        let bytes = w.finish().unwrap().into_inner();
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(z.len(), records.len());
        for (name, data) in &records {
            let mut f = z.by_name(name).unwrap();
            assert_eq!(f.data_start() % ALIGNMENT, 0, "{name} is not aligned");
            let mut got = Vec::new();
            f.read_to_end(&mut got).unwrap();
            assert_eq!(&got, data);
        }
    }

    #[test]
    fn records_are_aligned_and_read_back() {
        roundtrip(LIMIT32);
    }

    #[test]
    fn zip64_fields_read_back() {
        roundtrip(0);
    }
}
