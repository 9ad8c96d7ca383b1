//! Content objects in archive-z2 form (`.filez`): a length-prefixed `(tuuuusa(ayay))` header
//! followed by the raw-deflated file content.
//!
//! The object's name is the checksum of the *canonical* stream: the 8-byte prefix and
//! `(uuuusa(ayay))` header (no size) followed by the uncompressed content. [`checksum_filez`]
//! computes it while streaming, so memory stays bounded whatever size the header declares.

use std::io::{self, BufRead, BufReader, Read, Write};

use flate2::bufread::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;
use gvariant::{gv, Marker, Structure};
use sha2::{Digest, Sha256};

use super::dirs::{S_IFLNK, S_IFMT, S_IFREG};
use super::gv::aligned;
use super::{Checksum, FormatError};

/// Headers are a few dozen bytes; anything near this is hostile.
pub const MAX_HEADER_LEN: u32 = 1 << 20;
/// Symlink targets longer than PATH_MAX are refused, as the kernel would.
const MAX_SYMLINK_TARGET: usize = 4096;

/// The archive header of a content object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// Uncompressed content length (0 for symlinks).
    pub size: u64,
    pub uid: u32,
    pub gid: u32,
    /// Full `st_mode`, type bits included.
    pub mode: u32,
    pub symlink_target: String,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl FileHeader {
    /// A root-owned regular file as flatpak exports it (`0o644` or `0o755`).
    pub fn regular(size: u64, permissions: u32) -> Self {
        Self { size, uid: 0, gid: 0, mode: S_IFREG | permissions, symlink_target: String::new(), xattrs: Vec::new() }
    }

    /// A root-owned symlink (`0o120777`).
    pub fn symlink(target: &str) -> Self {
        Self { size: 0, uid: 0, gid: 0, mode: S_IFLNK | 0o777, symlink_target: target.to_owned(), xattrs: Vec::new() }
    }

    pub fn is_regular(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    fn xattr_tuples(&self) -> Vec<(&[u8], &[u8])> {
        self.xattrs.iter().map(|(n, v)| (&n[..], &v[..])).collect()
    }

    /// The bytes hashed before the content: BE length, 4 zero bytes, `(uuuusa(ayay))`.
    pub fn checksum_prefix(&self) -> Vec<u8> {
        let xattrs = self.xattr_tuples();
        let header = gv!("(uuuusa(ayay))").serialize_to_vec(&(
            self.uid.to_be(),
            self.gid.to_be(),
            self.mode.to_be(),
            0u32,
            self.symlink_target.as_str(),
            &xattrs[..],
        ));
        length_prefixed(header)
    }

    /// The bytes a `.filez` starts with: BE length, 4 zero bytes, `(tuuuusa(ayay))`.
    pub fn archive_prefix(&self) -> Vec<u8> {
        let xattrs = self.xattr_tuples();
        let header = gv!("(tuuuusa(ayay))").serialize_to_vec(&(
            self.size.to_be(),
            self.uid.to_be(),
            self.gid.to_be(),
            self.mode.to_be(),
            0u32,
            self.symlink_target.as_str(),
            &xattrs[..],
        ));
        length_prefixed(header)
    }

    fn parse_archive(bytes: &[u8]) -> Result<Self, FormatError> {
        let buf = aligned(bytes);
        let (size, uid, gid, mode, rdev, target, xattrs) = gv!("(tuuuusa(ayay))").cast(buf.as_ref()).to_tuple();
        let header = Self {
            size: u64::from_be(*size),
            uid: u32::from_be(*uid),
            gid: u32::from_be(*gid),
            mode: u32::from_be(*mode),
            symlink_target: target.to_str().to_owned(),
            xattrs: xattrs
                .iter()
                .map(|x| {
                    let (n, v) = x.to_tuple();
                    (n.to_vec(), v.to_vec())
                })
                .collect(),
        };
        if *rdev != 0 {
            return Err(FormatError::Malformed("content object with a device number".into()));
        }
        if header.archive_prefix()[8..] != *bytes {
            return Err(FormatError::NotNormalForm);
        }
        header.validate()?;
        Ok(header)
    }

    /// Only regular files and symlinks are content; symlinks carry a sane target and no size.
    fn validate(&self) -> Result<(), FormatError> {
        match self.mode & S_IFMT {
            S_IFREG if self.symlink_target.is_empty() => Ok(()),
            S_IFLNK
                if self.size == 0
                    && !self.symlink_target.is_empty()
                    && self.symlink_target.len() <= MAX_SYMLINK_TARGET =>
            {
                Ok(())
            }
            S_IFREG | S_IFLNK => Err(FormatError::Malformed("inconsistent size or symlink target".into())),
            other => Err(FormatError::Malformed(format!("content object of file type {other:o}"))),
        }
    }
}

fn length_prefixed(header: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 8);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&header);
    out
}

/// What reading a `.filez` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub checksum: Checksum,
    pub header: FileHeader,
    /// Length of the `.filez` object itself (what flatpak counts as download size).
    pub stored_size: u64,
}

/// Why a `.filez` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FilezError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("reading failed: {0}")]
    Io(#[from] io::Error),
}

/// Streams a `.filez`, checking its structure and computing its object checksum.
pub fn checksum_filez(reader: impl Read) -> Result<FileSummary, FilezError> {
    let mut input = BufReader::with_capacity(64 * 1024, Counting { inner: reader, count: 0 });
    let header = read_header(&mut input)?;
    let mut hasher = Sha256::new();
    hasher.update(header.checksum_prefix());
    if header.is_regular() {
        let mut decoder = DeflateDecoder::new(input);
        let content_len = hash_bounded(&mut decoder, &mut hasher, header.size)?;
        if content_len != header.size {
            return Err(FormatError::Malformed(format!(
                "header declares {} bytes but the content has {content_len}",
                header.size
            ))
            .into());
        }
        input = decoder.into_inner();
    }
    if !input.fill_buf()?.is_empty() {
        return Err(FormatError::Malformed("trailing bytes after the content".into()).into());
    }
    Ok(FileSummary { checksum: hasher.into(), header, stored_size: input.get_ref().count })
}

/// Reads only the header of a `.filez` (size, mode, symlink target), not its content.
pub fn read_filez_header(mut reader: impl Read) -> Result<FileHeader, FilezError> {
    read_header(&mut reader)
}

fn read_header(input: &mut impl Read) -> Result<FileHeader, FilezError> {
    let mut prefix = [0u8; 8];
    input.read_exact(&mut prefix).map_err(truncated)?;
    let len = u32::from_be_bytes(prefix[..4].try_into().expect("4 bytes"));
    if prefix[4..] != [0; 4] {
        return Err(FormatError::Malformed("non-zero header padding".into()).into());
    }
    if len > MAX_HEADER_LEN {
        return Err(
            FormatError::TooLarge { what: "file header", size: len.into(), limit: MAX_HEADER_LEN.into() }.into()
        );
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes).map_err(truncated)?;
    Ok(FileHeader::parse_archive(&bytes)?)
}

/// Hashes decompressed content, stopping one byte past `limit` so a lying header cannot make us
/// inflate without end.
fn hash_bounded(decoder: &mut impl Read, hasher: &mut Sha256, limit: u64) -> Result<u64, FilezError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput | io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Err(FormatError::Malformed(format!("corrupt compressed content: {e}")).into())
            }
            Err(e) => return Err(e.into()),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        if total > limit {
            return Ok(total);
        }
    }
}

fn truncated(e: io::Error) -> FilezError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => FormatError::Malformed("truncated header".into()).into(),
        _ => e.into(),
    }
}

struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Builds a complete `.filez` in memory and returns its name with it.
pub fn encode_filez(header: &FileHeader, content: &[u8], level: u32) -> (Checksum, Vec<u8>) {
    let mut hasher = Sha256::new();
    hasher.update(header.checksum_prefix());
    hasher.update(content);
    let mut out = header.archive_prefix();
    if header.is_regular() {
        let mut encoder = DeflateEncoder::new(&mut out, Compression::new(level));
        encoder.write_all(content).expect("writing to a Vec cannot fail");
        encoder.finish().expect("writing to a Vec cannot fail");
    }
    (hasher.into(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_of(header: &FileHeader, content: &[u8]) -> String {
        let (sum, bytes) = encode_filez(header, content, 6);
        let summary = checksum_filez(&bytes[..]).unwrap();
        assert_eq!(summary.checksum, sum);
        assert_eq!(summary.stored_size, bytes.len() as u64);
        sum.to_hex()
    }

    #[test]
    fn matches_ostree_test_vectors() {
        assert_eq!(
            checksum_of(&FileHeader::regular(12, 0o644), b"hello world\n"),
            "81381808c56d4f3d643ec12f6a18fcf2993af8daba7c2a1b2cbfc315b39424c6"
        );
        assert_eq!(
            checksum_of(&FileHeader::regular(0, 0o644), b""),
            "cc700d46f407c6c5ab2d5dde474366a928b7398277e61162e7f8ec06f469f07e"
        );
        assert_eq!(
            checksum_of(&FileHeader::regular(18, 0o755), b"#!/bin/sh\necho hi\n"),
            "89b350d278ff59ba4780bc377b8ebfee8ade6b55c99fab1ec84e133bc6ea52c5"
        );
        assert_eq!(
            checksum_of(&FileHeader::symlink("../share/hello.txt"), b""),
            "8c411054c8db313e87cb9402bdef1099ed5d489d954a9ec32cca6511583d6cb1"
        );
    }

    #[test]
    fn empty_file_layout_matches_ostree() {
        let (_, bytes) = encode_filez(&FileHeader::regular(0, 0o644), b"", 6);
        let expected = concat!(
            "0000001a",
            "00000000",
            "0000000000000000",
            "00000000",
            "00000000",
            "000081a4",
            "00000000",
            "00",
            "19",
            "0300"
        );
        assert_eq!(hex::encode(bytes), expected);
    }

    #[test]
    fn rejects_a_size_that_lies_in_either_direction() {
        for declared in [11, 13, u64::MAX] {
            let (_, bytes) = encode_filez(&FileHeader::regular(declared, 0o644), b"hello world\n", 6);
            let err = checksum_filez(&bytes[..]).unwrap_err();
            assert!(err.to_string().contains("declares"), "{err}");
        }
    }

    #[test]
    fn rejects_truncation_garbage_and_trailing_bytes() {
        let (_, bytes) = encode_filez(&FileHeader::regular(12, 0o644), b"hello world\n", 6);
        for cut in [3, 8, 20, bytes.len() - 1] {
            assert!(checksum_filez(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(7);
        assert!(checksum_filez(&trailing[..]).is_err());
        let mut garbage = bytes.clone();
        let last = garbage.len() - 3;
        garbage[last] ^= 0xff;
        assert!(checksum_filez(&garbage[..]).is_err());
    }

    #[test]
    fn rejects_devices_and_huge_headers() {
        let fifo = FileHeader { mode: 0o010644, ..FileHeader::regular(0, 0o644) };
        let (_, bytes) = encode_filez(&fifo, b"", 6);
        assert!(checksum_filez(&bytes[..]).is_err());
        let mut huge = vec![0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0];
        huge.extend_from_slice(&[0; 64]);
        assert!(matches!(checksum_filez(&huge[..]), Err(FilezError::Format(FormatError::TooLarge { .. }))));
    }
}
