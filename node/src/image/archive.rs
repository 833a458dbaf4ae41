//! Image archives on disk: OCI image layouts and `docker save` tarballs, plain or gzip-compressed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Seek as _};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::oci::Descriptor;

mod docker;
mod layout;

/// How much of an entry is read at once when hashing it.
const CHUNK: usize = 1 << 20;
/// How many symbolic or hard links are followed to find an entry.
const MAX_LINKS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path}: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)"
    )]
    NotAnImage { path: PathBuf },
    #[error("{path}: no image in it has a name")]
    Unnamed { path: PathBuf },
    #[error("{path}: {entry} is missing")]
    Missing { path: PathBuf, entry: String },
    #[error("{path}: {entry} is a link loop or a sparse file")]
    Unreadable { path: PathBuf, entry: String },
    #[error("{path}: {entry}: {source}")]
    Json {
        path: PathBuf,
        entry: String,
        source: serde_json::Error,
    },
    #[error("{path}: {entry} is {size} bytes, its descriptor says {expected}")]
    Size {
        path: PathBuf,
        entry: String,
        size: u64,
        expected: u64,
    },
    #[error("{path}: {entry} hashes to {actual}")]
    Digest {
        path: PathBuf,
        entry: String,
        actual: String,
    },
    #[error("{path}: {digest:?} is not a digest")]
    BadDigest { path: PathBuf, digest: String },
    #[error(
        "{path}: {digest} is neither an image index nor a manifest (media type {media_type:?})"
    )]
    NotAManifest {
        path: PathBuf,
        digest: String,
        media_type: String,
    },
    #[error("{path}: index {digest} has no manifest for linux/{architecture}")]
    NoPlatform {
        path: PathBuf,
        digest: String,
        architecture: &'static str,
    },
}

/// An image archive, indexed: where each file's bytes are in a plain tar.
pub struct Archive {
    path: PathBuf,
    /// The tar itself, or a decompressed copy of it in an anonymous temporary file.
    file: File,
    entries: HashMap<String, Node>,
}

#[derive(Clone, Debug)]
enum Node {
    File { offset: u64, size: u64 },
    Link(String),
}

/// Where a blob's bytes come from.
#[derive(Debug)]
pub enum Source {
    /// At `offset` of the (plain) archive, as long as its descriptor says.
    Entry { offset: u64 },
    /// Made during the import, like the manifest for a `docker save` image.
    Bytes(Vec<u8>),
}

/// One blob to put into the content store, with the GC labels that keep its children.
#[derive(Debug)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub labels: HashMap<String, String>,
    pub source: Source,
}

/// What importing an archive writes: blobs in an order where children come before parents,
/// and the names with their targets.
#[derive(Debug, Default)]
pub struct Plan {
    pub blobs: Vec<Blob>,
    pub images: Vec<(String, Descriptor)>,
}

// === impl Archive ===

impl Archive {
    /// Opens and indexes the archive at `path`, decompressing it first when it is gzipped.
    pub fn open(path: &Path) -> Result<Archive, ArchiveError> {
        let io_error = |source| ArchiveError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io_error)?;
        let mut magic = [0u8; 2];
        let read = file.read_at(&mut magic, 0).map_err(io_error)?;
        if read == 2 && magic == [0x1f, 0x8b] {
            let mut plain = tempfile::tempfile().map_err(io_error)?;
            let mut decoder = flate2::read::MultiGzDecoder::new(BufReader::new(&file));
            io::copy(&mut decoder, &mut plain).map_err(io_error)?;
            plain.rewind().map_err(io_error)?;
            file = plain;
        }
        let entries = index(&file).map_err(io_error)?;
        Ok(Archive {
            path: path.to_path_buf(),
            file,
            entries,
        })
    }

    /// What to write into containerd for every named image in the archive.
    pub fn plan(&self) -> Result<Plan, ArchiveError> {
        let plan = if self.entries.contains_key("index.json") {
            self.plan_layout()?
        } else if self.entries.contains_key("manifest.json") {
            self.plan_docker()?
        } else {
            return Err(ArchiveError::NotAnImage {
                path: self.path.clone(),
            });
        };
        if plan.images.is_empty() {
            return Err(ArchiveError::Unnamed {
                path: self.path.clone(),
            });
        }
        Ok(plan)
    }

    /// `len` bytes at `offset` of the plain tar.
    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, ArchiveError> {
        let mut buffer = vec![0; len];
        self.file
            .read_exact_at(&mut buffer, offset)
            .map_err(|source| self.io(source))?;
        Ok(buffer)
    }

    fn io(&self, source: io::Error) -> ArchiveError {
        ArchiveError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The position and size of the file at `entry`, links followed; None when absent.
    fn find(&self, entry: &str) -> Result<Option<(u64, u64)>, ArchiveError> {
        let mut name = clean(entry);
        for _ in 0..MAX_LINKS {
            match self.entries.get(&name) {
                None => return Ok(None),
                Some(Node::File { offset, size }) => return Ok(Some((*offset, *size))),
                Some(Node::Link(target)) => name = target.clone(),
            }
        }
        Err(ArchiveError::Unreadable {
            path: self.path.clone(),
            entry: entry.to_string(),
        })
    }

    fn require(&self, entry: &str) -> Result<(u64, u64), ArchiveError> {
        self.find(entry)?.ok_or_else(|| ArchiveError::Missing {
            path: self.path.clone(),
            entry: entry.to_string(),
        })
    }

    fn read(&self, entry: &str) -> Result<Vec<u8>, ArchiveError> {
        let (offset, size) = self.require(entry)?;
        let len = usize::try_from(size).map_err(|_| ArchiveError::Unreadable {
            path: self.path.clone(),
            entry: entry.to_string(),
        })?;
        self.read_at(offset, len)
    }

    fn json<T: for<'de> Deserialize<'de>>(
        &self,
        entry: &str,
        data: &[u8],
    ) -> Result<T, ArchiveError> {
        serde_json::from_slice(data).map_err(|source| ArchiveError::Json {
            path: self.path.clone(),
            entry: entry.to_string(),
            source,
        })
    }

    /// The sha256 digest of an entry, and its first bytes (to tell compressions apart).
    fn hash(&self, offset: u64, size: u64) -> Result<(String, Vec<u8>), ArchiveError> {
        let mut hasher = Sha256::new();
        let mut head = Vec::new();
        let mut done = 0u64;
        while done < size {
            let len = usize::try_from((size - done).min(CHUNK as u64)).unwrap_or(CHUNK);
            let chunk = self.read_at(offset + done, len)?;
            if head.is_empty() {
                head = chunk.iter().take(4).copied().collect();
            }
            hasher.update(&chunk);
            done += len as u64;
        }
        Ok((format!("sha256:{:x}", hasher.finalize()), head))
    }
}

fn stripped(d: &Descriptor) -> Descriptor {
    Descriptor::new(&d.media_type, d.digest.clone(), d.size)
}

/// Every file and link of the tar `file`, by cleaned path.
fn index(file: &File) -> io::Result<HashMap<String, Node>> {
    let mut entries = HashMap::new();
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let name = clean(&entry.path()?.to_string_lossy());
        let kind = entry.header().entry_type();
        let node = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => Node::File {
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let Some(target) = entry.link_name()? else {
                    continue;
                };
                let target = target.to_string_lossy();
                let target = match (kind, name.rsplit_once('/')) {
                    // A symbolic link is relative to its directory, a hard link to the archive.
                    (tar::EntryType::Symlink, Some((dir, _))) if !target.starts_with('/') => {
                        clean(&format!("{dir}/{target}"))
                    }
                    _ => clean(&target),
                };
                Node::Link(target)
            }
            _ => continue,
        };
        entries.insert(name, node);
    }
    Ok(entries)
}

/// `path` without `.`, `..` (resolved), empty components or leading and trailing slashes.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests;
