//! A writer for the "newc" cpio format, the one the kernel unpacks as an
//! initramfs.
//!
//! Each entry is a 110-byte ASCII header, the NUL-terminated name padded to
//! four bytes, then the data padded to four bytes. The archive ends with an
//! entry named `TRAILER!!!`. Hard links are written as separate files: the
//! kernel does not need them and the archive stays simple.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{bail, Context, Result};

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Ownership and permission bits of one entry.
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    /// Permission bits, without the file type.
    pub perm: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
}

impl Owner {
    /// Owned by root with the given permission bits.
    pub fn root(perm: u32) -> Owner {
        Owner {
            perm,
            uid: 0,
            gid: 0,
        }
    }
}

/// A newc archive being written to `W`.
pub struct Archive<W: Write> {
    out: W,
    offset: u64,
    next_ino: u32,
}

struct Header<'a> {
    name: &'a str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
}

impl<W: Write> Archive<W> {
    /// Starts an archive; entries follow with the methods below.
    pub fn new(out: W) -> Archive<W> {
        Archive {
            out,
            offset: 0,
            next_ino: 1,
        }
    }

    /// Adds a regular file holding `data`.
    pub fn file(&mut self, name: &str, owner: Owner, data: &[u8]) -> Result<()> {
        let mut h = header(name, S_IFREG, owner, (0, 0));
        h.size = size32(data.len() as u64, name)?;
        self.header(&h)?;
        self.data(data)
    }

    /// Adds a symbolic link pointing at `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<()> {
        let mut h = header(name, S_IFLNK, Owner::root(0o777), (0, 0));
        h.size = size32(target.len() as u64, name)?;
        self.header(&h)?;
        self.data(target.as_bytes())
    }

    /// Adds a character device node.
    pub fn char_device(&mut self, name: &str, owner: Owner, major: u32, minor: u32) -> Result<()> {
        self.header(&header(name, S_IFCHR, owner, (major, minor)))
    }

    /// Adds `src` and everything below it as `dest` (a path inside the
    /// archive, no leading slash; empty for the archive root), keeping
    /// modes, owners, symlinks and device nodes. Sockets and fifos are
    /// skipped: nothing in an image needs them at boot.
    pub fn tree(&mut self, src: &Path, dest: &str) -> Result<()> {
        let meta =
            fs::symlink_metadata(src).with_context(|| format!("reading {}", src.display()))?;
        let ft = meta.file_type();
        let owner = Owner {
            perm: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        };
        let rdev = (major(meta.rdev()), minor(meta.rdev()));
        let mut h = header(dest, meta.mode() & 0o170000, owner, rdev);
        h.mtime = u32::try_from(meta.mtime()).unwrap_or(0);

        if ft.is_dir() {
            if !dest.is_empty() {
                self.header(&h)?;
            }
            let mut names: Vec<_> = fs::read_dir(src)
                .with_context(|| format!("listing {}", src.display()))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()
                .with_context(|| format!("listing {}", src.display()))?;
            names.sort();
            for name in names {
                let name = name
                    .to_str()
                    .with_context(|| format!("non-UTF-8 name under {}", src.display()))?;
                let child = if dest.is_empty() {
                    name.to_string()
                } else {
                    format!("{dest}/{name}")
                };
                self.tree(&src.join(name), &child)?;
            }
        } else if ft.is_symlink() {
            let target =
                fs::read_link(src).with_context(|| format!("reading link {}", src.display()))?;
            let target = target
                .to_str()
                .with_context(|| format!("non-UTF-8 link {}", src.display()))?;
            h.size = size32(target.len() as u64, dest)?;
            self.header(&h)?;
            self.data(target.as_bytes())?;
        } else if ft.is_file() {
            h.size = size32(meta.len(), dest)?;
            self.header(&h)?;
            let mut file = File::open(src).with_context(|| format!("opening {}", src.display()))?;
            let copied = io::copy(&mut (&mut file).take(meta.len()), &mut self.out)
                .with_context(|| format!("copying {}", src.display()))?;
            if copied != meta.len() {
                bail!("{} changed size while being archived", src.display());
            }
            self.offset += copied;
            self.pad()?;
        } else if ft.is_char_device() || ft.is_block_device() {
            self.header(&h)?;
        }
        Ok(())
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        self.header(&header(TRAILER, 0, Owner::root(0), (0, 0)))?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(&mut self, h: &Header) -> Result<()> {
        let ino = if h.name == TRAILER { 0 } else { self.next_ino };
        self.next_ino += 1;
        let nlink = if h.mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        let (rmajor, rminor) = h.rdev;
        let fields = [
            ino,
            h.mode,
            h.uid,
            h.gid,
            nlink,
            h.mtime,
            h.size,
            0,
            0,
            rmajor,
            rminor,
            h.name.len() as u32 + 1,
            0,
        ];
        let mut text = String::with_capacity(110 + h.name.len() + 4);
        text.push_str(MAGIC);
        for f in fields {
            text.push_str(&format!("{f:08x}"));
        }
        text.push_str(h.name);
        text.push('\0');
        self.out.write_all(text.as_bytes())?;
        self.offset += text.len() as u64;
        self.pad()
    }

    fn data(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(data)?;
        self.offset += data.len() as u64;
        self.pad()
    }

    fn pad(&mut self) -> Result<()> {
        let fill = (4 - self.offset % 4) % 4;
        self.out.write_all(&[0u8; 3][..fill as usize])?;
        self.offset += fill;
        Ok(())
    }
}

fn header(name: &str, kind: u32, owner: Owner, rdev: (u32, u32)) -> Header<'_> {
    Header {
        name,
        mode: kind | owner.perm,
        uid: owner.uid,
        gid: owner.gid,
        mtime: 0,
        size: 0,
        rdev,
    }
}

fn size32(len: u64, name: &str) -> Result<u32> {
    u32::try_from(len)
        .with_context(|| format!("{name} is too large for a newc archive ({len} bytes)"))
}

// The glibc encoding of dev_t.
fn major(dev: u64) -> u32 {
    (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32
}

fn minor(dev: u64) -> u32 {
    (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_end_with_a_trailer() {
        let mut a = Archive::new(Vec::new());
        a.char_device("dev", Owner::root(0o600), 5, 1).unwrap();
        a.file("bin/hi", Owner::root(0o755), b"hello").unwrap();
        a.symlink("sh", "bin/hi").unwrap();
        let bytes = a.finish().unwrap();

        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("070701"));
        assert_eq!(&text[78..94], "0000000500000001", "device numbers of dev");
        // The second header starts on a four-byte boundary after "dev\0".
        let second = text.match_indices(MAGIC).nth(1).unwrap().0;
        assert_eq!(second, 116);
        assert_eq!(
            &text[second + 6..second + 14],
            "00000002",
            "inode of bin/hi"
        );
        assert_eq!(
            &text[second + 14..second + 22],
            "000081ed",
            "mode of bin/hi"
        );
        assert_eq!(
            &text[second + 54..second + 62],
            "00000005",
            "size of bin/hi"
        );
        assert!(text.contains("hello"));
        assert!(text.contains("TRAILER!!!\0"));
    }

    #[test]
    fn device_numbers_split_like_glibc() {
        // makedev(195, 255) and makedev(259, 1).
        assert_eq!((major(0xc3ff), minor(0xc3ff)), (195, 255));
        let dev = (259u64 << 8) | 1;
        assert_eq!((major(dev), minor(dev)), (259, 1));
    }
}
