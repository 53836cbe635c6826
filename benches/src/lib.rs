//! Helpers shared by drp's benchmarks; see `benches/README.md` for what is measured and how.
//!
//! The criterion benchmarks (`benches/*.rs`) measure the library in-process; `compare.sh`
//! measures the `drp` binary against `tar | zstd | gpg`, restic and duplicity.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// The line repeated in the compressible half of [`write_mixed_file`].
pub const TEXT_LINE: &[u8] = b"drp benchmark: a line of plain, very compressible text 0123456789\n";

/// Writes a new file of `len` bytes at `path`: the first half pseudo-random (incompressible,
/// like media or already-compressed archives), the second half [`TEXT_LINE`] repeated (which
/// zstd shrinks to almost nothing). The content is the same on every call, so runs compare.
pub fn write_mixed_file(path: &Path, len: u64) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create_new(path)?);
    let random_len = len / 2;
    let mut rng = XorShift64Star(0x9E37_79B9_7F4A_7C15);
    let mut block = vec![0u8; 1 << 20];
    let mut left = random_len;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            word.copy_from_slice(&rng.next().to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    let mut left = len - random_len;
    while left > 0 {
        let n = left.min(TEXT_LINE.len() as u64) as usize;
        out.write_all(&TEXT_LINE[..n])?;
        left -= n as u64;
    }
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()
}

/// The text of a valid recovery plan with `stacks` stacks in chains of ten (each stack but the
/// first of a chain depends on the previous one), two sources, a start command and an HTTP
/// probe each, all recovered onto one spare. Key files are named but not needed: check it
/// with `CheckOptions { files: false }`.
pub fn plan_with_stacks(stacks: usize) -> String {
    let mut text = String::from(
        "format = 1\n[storage]\nurl = \"memory://\"\n\n[customers.c]\n\
         certificates = [\"c.pub.asc\"]\n\n[datacenters.dc]\n\n\
         [[hosts]]\nname = \"spare\"\ndatacenter = \"dc\"\naddress = \"10.0.0.1\"\n\
         roles = [\"app\"]\nspare = true\n\n[recovery]\ntarget_datacenter = \"dc\"\n",
    );
    for i in 0..stacks {
        let depends = if i % 10 == 0 {
            String::new()
        } else {
            format!("depends_on = [\"s{:04}\"]\n", i - 1)
        };
        text.push_str(&format!(
            "\n[stacks.s{i:04}]\ncustomer = \"c\"\nrole = \"app\"\n{depends}\
             sources = [\"www=/srv/www\", \"db=cmd:pg_dump\"]\nrestore_to = \"/srv\"\n\
             start_commands = [\"systemctl start s\"]\n\
             [stacks.s{i:04}.probes.home]\nkind = \"http\"\nurl = \"http://{{host}}/\"\n\
             conditions = [\"[STATUS] == 200\"]\n"
        ));
    }
    text
}

/// xorshift64*: fast, deterministic, and not compressible by zstd (not for cryptography).
struct XorShift64Star(u64);

impl XorShift64Star {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_file_has_the_size_and_halves_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mixed");
        write_mixed_file(&path, 1_000_001).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 1_000_001);
        assert!(data[500_000..].starts_with(TEXT_LINE));
        assert!(
            !data[..500_000]
                .windows(TEXT_LINE.len())
                .any(|w| w == TEXT_LINE)
        );
    }
}
