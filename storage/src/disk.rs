//! The seam under the write-ahead log's writes: [`Disk`] opens segment files and syncs
//! directories, [`DiskFile`] writes, syncs, truncates and closes one file.
//!
//! [`DmaDisk`] is the real one: glommio's io_uring with O_DIRECT and `fdatasync`, exactly what
//! the log did before the seam existed. The log is generic over its disk
//! (`SegmentLog<D = DmaDisk>`), so production code pays no dynamic dispatch per write.
//! [`sim::SimDisk`] is a simulated disk for tests: it keeps written-but-unsynced data apart from
//! synced data, can crash (dropping, keeping a prefix of, or tearing the unsynced writes), and
//! injects `EIO` on a chosen write or sync.
//!
//! Reads are not part of the seam: the log reads what it wrote through the file's
//! [`DiskFile::dma`] handle and maps sealed segments, so a simulated disk keeps the real file
//! equal to what the process has written (the page cache's view) and models durability beside it.
// Every future here runs on the one glommio executor that owns the log; none is ever sent to
// another thread, so `Send` bounds on them would only forbid the real implementation.
#![allow(async_fn_in_trait)]

use std::io;
use std::path::Path;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use crate::error::{Error, Result};

pub mod sim;

/// Opens segment files and makes directory changes durable.
pub trait Disk: Clone + 'static {
    /// An open segment file.
    type File: DiskFile;

    /// Opens a segment file for O_DIRECT reads and writes; with `create`, creates it and fails
    /// if it exists.
    async fn open(&self, path: &Path, create: bool) -> Result<Self::File>;

    /// Syncs directory `dir`, so that file creations and deletions in it are durable.
    async fn sync_dir(&self, dir: &Path) -> Result<()>;
}

/// One open segment file.
pub trait DiskFile: 'static {
    /// Writes `buf` (block-aligned) at `position`; returns the bytes written.
    async fn write_at(&self, buf: Rc<DmaBuffer>, position: u64) -> io::Result<usize>;

    /// `fdatasync`: everything written so far is on stable storage when this returns `Ok`.
    async fn fdatasync(&self) -> io::Result<()>;

    /// Sets the file's length.
    async fn truncate(&self, len: u64) -> io::Result<()>;

    /// Closes the file once this is the last handle to it.
    async fn close(self: Rc<Self>) -> io::Result<()>;

    /// The real file, for reads.
    fn dma(&self) -> &DmaFile;
}

/// The real disk: glommio DMA files (io_uring, O_DIRECT) and `fdatasync`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DmaDisk;

impl Disk for DmaDisk {
    type File = DmaFile;

    async fn open(&self, path: &Path, create: bool) -> Result<DmaFile> {
        open_dma(path, create).await
    }

    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        let handle = glommio::io::Directory::open(dir)
            .await
            .map_err(|e| Error::io("opening directory", dir, e))?;
        handle
            .sync()
            .await
            .map_err(|e| Error::io("syncing directory", dir, e))?;
        handle
            .close()
            .await
            .map_err(|e| Error::io("closing directory", dir, e))
    }
}

impl DiskFile for DmaFile {
    async fn write_at(&self, buf: Rc<DmaBuffer>, position: u64) -> io::Result<usize> {
        Ok(self.write_rc_at(buf, position).await?)
    }

    async fn fdatasync(&self) -> io::Result<()> {
        Ok(DmaFile::fdatasync(self).await?)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        Ok(DmaFile::truncate(self, len).await?)
    }

    async fn close(self: Rc<Self>) -> io::Result<()> {
        self.close_rc().await?;
        Ok(())
    }

    fn dma(&self) -> &DmaFile {
        self
    }
}

/// Opens a segment file for O_DIRECT reads and writes, creating it if `create`.
pub(crate) async fn open_dma(path: &Path, create: bool) -> Result<DmaFile> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(create);
    options.dma_open(path).await.map_err(|e| {
        let err = io::Error::from(e);
        if err.kind() == io::ErrorKind::InvalidInput {
            Error::DirectIoUnsupported {
                path: path.to_owned(),
            }
        } else {
            Error::io("opening segment", path, err)
        }
    })
}
