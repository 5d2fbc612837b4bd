//! A named shared-memory mapping in `/dev/shm`.
//!
//! Layout: a [`RegionHeader`] of [`HEADER_SIZE`] bytes, then the body that a
//! structure (ring, queue, pipe, semaphore…) lays itself out in.
//!
//! Life cycle:
//! 1. [`Region::create`] makes the file (`O_EXCL`, mode 0600), sizes it, maps
//!    it, touches every page, and writes the header *except* `ready`.
//! 2. The structure initialises its body, then calls [`Region::publish`],
//!    which writes `ready` (the layout version) last, with Release.
//! 3. [`Region::open`] maps an existing file and refuses it with a typed
//!    error when the magic, the layout version, the kind or the sizes are
//!    wrong, or when `ready` is still 0 (half-initialised).
//! 4. Only the creator owns the name: dropping the creator's `Region` unlinks
//!    it; dropping an opener's only unmaps.
//!
//! Every name starts with [`NAME_PREFIX`] so `ipcbench clean` can find
//! leftovers; [`unique_name`] adds a per-process, per-call part so that runs
//! and tests never collide.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
// Through shm::sync like every atomic of the core; a region is never
// model-checked (loom's models run over heap backings).
use crate::shm::sync::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};

use super::liveness::PeerId;

/// Where regions live.
pub const SHM_DIR: &str = "/dev/shm";
/// Every region name starts with this.
pub const NAME_PREFIX: &str = "ipcbench-";
/// `b"IPCBENCH"` as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"IPCBENCH");
/// Bumped whenever any structure's shared layout, or the meaning of a
/// shared word, changes (2: a notifier's sleepers word carries a
/// generation and a ticket beside the count).
pub const LAYOUT_VERSION: u32 = 2;
/// Bytes before the body; the body starts 128-byte aligned.
pub const HEADER_SIZE: usize = 256;
/// How long [`Region::open`] waits for a creator that is still initialising.
pub const OPEN_GRACE: Duration = Duration::from_millis(500);

/// What a region holds; written in the header so a ring is never opened as a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// Plain bytes for the user (counters, arrays).
    Raw = 1,
    /// An SPSC frame ring.
    Ring = 2,
    /// An MPMC queue.
    Queue = 3,
    /// A duplex pipe.
    Pipe = 4,
    /// A counting semaphore.
    Semaphore = 5,
    /// A lock.
    Lock = 6,
    /// An event.
    Event = 7,
    /// A floor's protocol (spin, park, or a copy floor's slots).
    Floor = 8,
    /// A re-entrant lock.
    RLock = 9,
    /// A condition variable with its lock.
    Condition = 10,
    /// A barrier.
    Barrier = 11,
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            1 => Kind::Raw,
            2 => Kind::Ring,
            3 => Kind::Queue,
            4 => Kind::Pipe,
            5 => Kind::Semaphore,
            6 => Kind::Lock,
            7 => Kind::Event,
            8 => Kind::Floor,
            9 => Kind::RLock,
            10 => Kind::Condition,
            11 => Kind::Barrier,
            _ => return None,
        })
    }
}

/// The first bytes of every region. All fields are atomics because another
/// process may read them while the creator is still writing them; all but
/// `ready` are written Relaxed and published by `ready`'s Release store.
#[repr(C)]
pub struct RegionHeader {
    magic: AtomicU64,
    /// A [`Kind`].
    kind: AtomicU32,
    /// The creator's pid.
    creator_pid: AtomicU32,
    /// The creator's start time (see [`PeerId`]).
    creator_start: AtomicU64,
    /// The size of the whole file.
    total_size: AtomicU64,
    /// The size of the body (the file less the header).
    body_size: AtomicU64,
    /// The structure's own parameters (capacity, slot size, waiting strategy…).
    params: [AtomicU64; 6],
    /// 0 while initialising, then [`LAYOUT_VERSION`], written last with Release.
    ready: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<RegionHeader>() <= HEADER_SIZE);
const _: () = assert!(HEADER_SIZE.is_multiple_of(128));

/// Why a region could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// The name is not one of ours or not a plain file name.
    #[error("invalid region name `{name}`: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file of that name is already there.
    #[error("{} already exists; if no ipcbench run is going on, remove leftovers with `ipcbench clean`", .0.display())]
    Exists(PathBuf),
    /// No file of that name.
    #[error("{} does not exist: its creator has not made it yet, or has exited", .0.display())]
    NotFound(PathBuf),
    /// The file is smaller than a header or than its header says.
    #[error("{path} is {size} bytes, too small for a region header (truncated or not ours)", path = .path.display())]
    TooSmall {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The creator never finished initialising it.
    #[error("{} is half-initialised: its creator did not finish setting it up (crashed?); run `ipcbench clean`", .0.display())]
    NotReady(PathBuf),
    /// Not an ipcbench region.
    #[error("{path} is not an ipcbench region (magic {found:#018x})", path = .path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic found.
        found: u64,
    },
    /// Made by another version of ipcbench.
    #[error("{path} has layout version {found}, this build expects {expected}: both sides must run the same ipcbench build", path = .path.display())]
    VersionMismatch {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The version this build writes.
        expected: u32,
    },
    /// Holds another kind of structure.
    #[error("{path} holds a {found}, not a {expected:?}", path = .path.display())]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// What it holds.
        found: String,
        /// What was asked for.
        expected: Kind,
    },
    /// Its sizes disagree with each other or with the file.
    #[error("{path}: header says {header} bytes but the file has {file}", path = .path.display())]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// The size the header states.
        header: u64,
        /// The file's size.
        file: u64,
    },
    /// The structure's parameters are impossible.
    #[error("{path}: {reason}", path = .path.display())]
    BadParams {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is not one this process may trust with its memory.
    #[error("{path} {why}: a region is opened only if it is a regular file of this user's that no other user can write; if it is a leftover, remove it", path = .path.display())]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The shared-memory filesystem has no room for the region.
    #[error("no space in {dir} for {}: {needed} bytes needed, {free} free; remove leftovers with `ipcbench clean`, free some space, or measure smaller messages", .path.display(), dir = SHM_DIR)]
    NoSpace {
        /// The file.
        path: PathBuf,
        /// The bytes the region needs.
        needed: u64,
        /// The bytes free in the filesystem when it was refused.
        free: u64,
    },
    /// A system call failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A name no other run or test uses: `ipcbench-<pid>-<n>-<label>`.
pub fn unique_name(label: &str) -> String {
    use super::sync::AtomicU64 as StdAtomicU64;
    static NEXT: StdAtomicU64 = StdAtomicU64::new(0);
    // Relaxed: only uniqueness matters, which the RMW gives.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{NAME_PREFIX}{}-{n}{nanos:x}-{label}", std::process::id())
}

/// Checks that `name` is one of ours and a plain file name; returns its path.
pub fn region_path(name: &str) -> Result<PathBuf, RegionError> {
    let bad = |reason| RegionError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if !name.starts_with(NAME_PREFIX) {
        return Err(bad("must start with `ipcbench-`"));
    }
    if name.len() > 200 {
        return Err(bad("longer than 200 bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad(
            "only ASCII letters, digits, '-', '_' and '.' are allowed",
        ));
    }
    Ok(Path::new(SHM_DIR).join(name))
}

/// A mapped region.
pub struct Region {
    name: String,
    path: PathBuf,
    map: MmapRaw,
    owner: bool,
}

// SAFETY: the mapping is plain memory shared by design; every access to it
// goes through atomics or through structures that order their accesses.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("name", &self.name)
            .field("len", &self.map.len())
            .field("owner", &self.owner)
            .finish()
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> RegionError + 'a {
    move |source| RegionError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Sizes `file` to `len` bytes with every page allocated
/// (`posix_fallocate`), or says why not (`ENOSPC` when the filesystem is
/// full).
fn reserve(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: a valid open descriptor; the call touches no memory of ours.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        // A filesystem that cannot reserve: size it, as before.
        libc::EOPNOTSUPP => file.set_len(len as u64),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Bytes free for an unprivileged writer in the filesystem at `dir` (0 if
/// it cannot be asked).
fn free_bytes(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs is plain data; statvfs fills it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_bavail as u64 * st.f_frsize as u64
}

impl Region {
    /// Makes a new region with a body of `body_size` bytes. The caller
    /// initialises the body and then calls [`Region::publish`].
    pub fn create(
        name: &str,
        kind: Kind,
        body_size: usize,
        params: [u64; 6],
    ) -> Result<Region, RegionError> {
        let path = region_path(name)?;
        let total = HEADER_SIZE + body_size;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    RegionError::Exists(path.clone())
                } else {
                    RegionError::Io {
                        what: "creating",
                        path: path.clone(),
                        source: e,
                    }
                }
            })?;
        // From here on the file is ours: a failure below unlinks it on drop
        // of this guard, unless it is disarmed.
        struct Unlink<'a>(&'a Path, bool);
        impl Drop for Unlink<'_> {
            fn drop(&mut self) {
                if self.1 {
                    let _ = std::fs::remove_file(self.0);
                }
            }
        }
        let mut guard = Unlink(&path, true);
        // Reserve every page now: on tmpfs a file only sized is sparse, and
        // touching a page that cannot be allocated is a SIGBUS, not an error.
        reserve(&file, total as u64).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSPC) => RegionError::NoSpace {
                path: path.clone(),
                needed: total as u64,
                free: free_bytes(Path::new(SHM_DIR)),
            },
            _ => RegionError::Io {
                what: "reserving",
                path: path.clone(),
                source: e,
            },
        })?;
        let map = MmapOptions::new()
            .len(total)
            .populate()
            .map_raw(&file)
            .map_err(io_err("mapping", &path))?;
        let region = Region {
            name: name.to_owned(),
            path: path.clone(),
            map,
            owner: true,
        };
        region.prefault(true);
        let me = PeerId::current();
        let h = region.header();
        // Relaxed: every header field is published by `ready` (see `publish`).
        h.magic.store(MAGIC, Ordering::Relaxed);
        h.kind.store(kind as u32, Ordering::Relaxed);
        h.creator_pid.store(me.pid, Ordering::Relaxed);
        h.creator_start.store(me.start, Ordering::Relaxed);
        h.total_size.store(total as u64, Ordering::Relaxed);
        h.body_size.store(body_size as u64, Ordering::Relaxed);
        for (slot, v) in h.params.iter().zip(params) {
            slot.store(v, Ordering::Relaxed);
        }
        guard.1 = false;
        Ok(region)
    }

    /// Marks the region initialised: call once the body is set up.
    pub fn publish(&self) {
        // SYNC POINT: region ready — the header and the body become visible
        // to every opener that reads `ready` with Acquire.
        self.header().ready.store(LAYOUT_VERSION, Ordering::Release);
    }

    /// Opens an existing region of `kind`, waiting up to [`OPEN_GRACE`] for
    /// a creator that is still initialising it.
    pub fn open(name: &str, kind: Kind) -> Result<Region, RegionError> {
        Self::open_within(name, kind, Duration::ZERO)
    }

    /// Opens like [`Region::open`], also waiting up to [`OPEN_GRACE`] for a
    /// file that does not exist yet: the second region of a structure whose
    /// creator was seen to make the first.
    pub fn open_made_next(name: &str, kind: Kind) -> Result<Region, RegionError> {
        Self::open_within(name, kind, OPEN_GRACE)
    }

    fn open_within(name: &str, kind: Kind, absent_grace: Duration) -> Result<Region, RegionError> {
        let path = region_path(name)?;
        let t0 = Instant::now();
        let file = loop {
            match Self::open_file(&path) {
                Err(RegionError::NotFound(_)) if t0.elapsed() < absent_grace => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                other => break other?,
            }
        };
        let t0 = Instant::now();
        loop {
            match Self::try_map(name, &path, &file, kind) {
                Err(RegionError::NotReady(_)) | Err(RegionError::TooSmall { .. })
                    if t0.elapsed() < OPEN_GRACE =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                other => return other,
            }
        }
    }

    /// Opens the file of a region for reading and writing, if it is one
    /// this process may trust: not through a symbolic link, a regular
    /// file, this user's, and not writable by other users.
    fn open_file(path: &Path) -> Result<File, RegionError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let untrusted = |why: String| RegionError::Untrusted {
            path: path.to_owned(),
            why,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => RegionError::NotFound(path.to_owned()),
                _ if e.raw_os_error() == Some(libc::ELOOP) => {
                    untrusted("is a symbolic link".into())
                }
                _ => RegionError::Io {
                    what: "opening",
                    path: path.to_owned(),
                    source: e,
                },
            })?;
        // Of the file opened (fstat), not of whatever the name now is.
        let meta = file
            .metadata()
            .map_err(io_err("reading the owner of", path))?;
        let t = meta.file_type();
        if !t.is_file() {
            let what = if t.is_dir() {
                "a directory"
            } else if t.is_fifo() || t.is_socket() || t.is_char_device() || t.is_block_device() {
                "a special file"
            } else {
                "not a regular file"
            };
            return Err(untrusted(format!("is {what}")));
        }
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(untrusted(format!(
                "belongs to uid {}, not to this user (uid {me})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(untrusted(format!(
                "can be written by other users (mode {:o})",
                meta.mode() & 0o777
            )));
        }
        Ok(file)
    }

    fn try_map(name: &str, path: &Path, file: &File, kind: Kind) -> Result<Region, RegionError> {
        let size = file
            .metadata()
            .map_err(io_err("reading the size of", path))?
            .len();
        if size < HEADER_SIZE as u64 {
            return Err(RegionError::TooSmall {
                path: path.to_owned(),
                size,
            });
        }
        let map = MmapOptions::new()
            .len(size as usize)
            .populate()
            .map_raw(file)
            .map_err(io_err("mapping", path))?;
        let region = Region {
            name: name.to_owned(),
            path: path.to_owned(),
            map,
            owner: false,
        };
        let h = region.header();
        // SYNC POINT: region ready (see `publish`).
        let ready = h.ready.load(Ordering::Acquire);
        let magic = h.magic.load(Ordering::Relaxed);
        if ready == 0 {
            return Err(if magic == MAGIC || magic == 0 {
                RegionError::NotReady(path.to_owned())
            } else {
                RegionError::BadMagic {
                    path: path.to_owned(),
                    found: magic,
                }
            });
        }
        if magic != MAGIC {
            return Err(RegionError::BadMagic {
                path: path.to_owned(),
                found: magic,
            });
        }
        if ready != LAYOUT_VERSION {
            return Err(RegionError::VersionMismatch {
                path: path.to_owned(),
                found: ready,
                expected: LAYOUT_VERSION,
            });
        }
        let found = h.kind.load(Ordering::Relaxed);
        if found != kind as u32 {
            return Err(RegionError::WrongKind {
                path: path.to_owned(),
                found: Kind::from_u32(found)
                    .map_or_else(|| format!("unknown kind {found}"), |k| format!("{k:?}")),
                expected: kind,
            });
        }
        let total = h.total_size.load(Ordering::Relaxed);
        let body = h.body_size.load(Ordering::Relaxed);
        if total != size || body.checked_add(HEADER_SIZE as u64) != Some(total) {
            return Err(RegionError::SizeMismatch {
                path: path.to_owned(),
                header: total,
                file: size,
            });
        }
        region.prefault(false);
        Ok(region)
    }

    /// Touches every page so that no page fault is ever timed: the creator
    /// writes (allocating the pages), openers read (mapping them).
    fn prefault(&self, write: bool) {
        let page = 4096;
        let base = self.map.as_mut_ptr();
        let mut off = 0;
        while off < self.map.len() {
            // SAFETY: `off` is inside the mapping. The creator writes 0 into
            // a page nobody else can see yet (the file is new and not
            // published), volatile so the write is not elided. An opener
            // reads a byte another process may be writing at that moment:
            // an atomic load (any bits are a valid u8), kept by black_box.
            unsafe {
                if write {
                    std::ptr::write_volatile(base.add(off), 0);
                } else {
                    let byte = &*(base.add(off) as *const AtomicU8);
                    std::hint::black_box(byte.load(Ordering::Relaxed));
                }
            }
            off += page;
        }
    }

    fn header(&self) -> &RegionHeader {
        // SAFETY: the mapping is at least HEADER_SIZE bytes (checked on open,
        // made so on create), page-aligned, and the header is all atomics,
        // valid for any bit pattern.
        unsafe { &*(self.map.as_ptr() as *const RegionHeader) }
    }

    /// The region's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file behind it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this handle unlinks the name on drop.
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// The creator, as recorded in the header.
    pub fn creator(&self) -> PeerId {
        let h = self.header();
        PeerId {
            pid: h.creator_pid.load(Ordering::Relaxed),
            start: h.creator_start.load(Ordering::Relaxed),
        }
    }

    /// The structure's parameters, as given to [`Region::create`].
    pub fn params(&self) -> [u64; 6] {
        let mut p = [0; 6];
        for (v, slot) in p.iter_mut().zip(&self.header().params) {
            *v = slot.load(Ordering::Relaxed);
        }
        p
    }

    /// A pointer to the body, 128-byte aligned.
    pub fn body_ptr(&self) -> *mut u8 {
        // SAFETY: the mapping is at least HEADER_SIZE bytes.
        unsafe { self.map.as_mut_ptr().add(HEADER_SIZE) }
    }

    /// The body's size in bytes.
    pub fn body_len(&self) -> usize {
        self.map.len() - HEADER_SIZE
    }

    /// A `BadParams` error for this region.
    pub fn bad_params(&self, reason: impl Into<String>) -> RegionError {
        RegionError::BadParams {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.owner {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A region file found in [`SHM_DIR`], as `ipcbench clean` sees it.
#[derive(Debug)]
pub struct Leftover {
    /// The file's name.
    pub name: String,
    /// Its creator, from its header or, failing that, its name.
    pub creator: Option<PeerId>,
    /// Whether its creator is alive.
    pub creator_alive: bool,
    /// How long ago it was last modified.
    pub age: Duration,
    /// Set when the entry is not a regular file (a directory, a link, a
    /// FIFO): nothing ipcbench makes, so never removed; says what it is.
    pub not_a_file: Option<&'static str>,
}

/// Lists every entry named like ours in [`SHM_DIR`]. Nothing in it is
/// trusted: /dev/shm is writable by everyone, so a directory, a symbolic
/// link or a FIFO may carry one of our names; they are listed as such and
/// never opened (opening a FIFO would wait for a writer for ever).
pub fn list_leftovers() -> io::Result<Vec<Leftover>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(NAME_PREFIX) {
            continue;
        }
        // The entry itself, not what a link points to.
        let meta = entry.metadata().ok();
        let age = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        let not_a_file = meta.as_ref().map(|m| m.file_type()).and_then(|t| {
            if t.is_file() {
                None
            } else if t.is_dir() {
                Some("a directory")
            } else if t.is_symlink() {
                Some("a symbolic link")
            } else {
                Some("a FIFO, socket or device")
            }
        });
        let creator = if not_a_file.is_some() {
            None
        } else {
            read_creator(&entry.path()).or_else(|| creator_in_name(&name))
        };
        let creator_alive = creator.is_some_and(|c| c.is_alive());
        out.push(Leftover {
            name,
            creator,
            creator_alive,
            age,
            not_a_file,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The creator named in a file's name: [`unique_name`]'s, or the Python
/// baseline's `ipcbench-py-<pid>-…`. For a file whose header was never
/// written (its creator killed between making the file and writing the
/// header), or that has none (the Python baseline's). Its start time is
/// unknown: a pid the kernel has handed to another process since counts
/// as alive, and the file is kept (the safe side).
fn creator_in_name(name: &str) -> Option<PeerId> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let pid = rest
        .strip_prefix("py-")
        .unwrap_or(rest)
        .split('-')
        .next()?
        .parse()
        .ok()?;
    (pid != 0).then_some(PeerId { pid, start: 0 })
}

/// Reads the creator from a region file's header without mapping it; the
/// file is opened without following a link and without waiting.
fn read_creator(path: &Path) -> Option<PeerId> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut buf = [0u8; 32];
    f.read_exact(&mut buf).ok()?;
    let magic = u64::from_le_bytes(buf[0..8].try_into().ok()?);
    if magic != MAGIC {
        return None;
    }
    let pid = u32::from_le_bytes(buf[12..16].try_into().ok()?);
    let start = u64::from_le_bytes(buf[16..24].try_into().ok()?);
    (pid != 0).then_some(PeerId { pid, start })
}

/// Whether `clean` removes a leftover: a regular file whose creator is
/// dead, or whose creator cannot be told and that is older than `min_age`
/// (a creator still initialising it would have finished long before).
pub fn is_stale(l: &Leftover, min_age: Duration) -> bool {
    match (l.not_a_file, l.creator) {
        (Some(_), _) => false,
        (None, Some(_)) => !l.creator_alive,
        (None, None) => l.age >= min_age,
    }
}

/// Removes a leftover by name.
pub fn remove_leftover(name: &str) -> Result<(), RegionError> {
    let path = region_path(name)?;
    std::fs::remove_file(&path).map_err(io_err("removing", &path))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_file_whose_header_was_never_written_is_stale_once_its_creator_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let name = format!("{NAME_PREFIX}{gone}-0-headerless-test");
        let path = region_path(&name).unwrap();
        std::fs::write(&path, b"").unwrap();
        let found = list_leftovers()
            .unwrap()
            .into_iter()
            .find(|l| l.name == name)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(found.creator.map(|c| c.pid), Some(gone));
        // Unless the kernel gave the pid to a new process meanwhile.
        if !found.creator_alive {
            assert!(is_stale(&found, Duration::from_secs(60)));
        }
        // The pid a name carries is the one unique_name wrote, or the
        // Python baseline's.
        assert_eq!(
            creator_in_name(&unique_name("x")).map(|c| c.pid),
            Some(std::process::id())
        );
        assert_eq!(
            creator_in_name("ipcbench-py-4242-0a1b2c3d").map(|c| c.pid),
            Some(4242)
        );
        assert_eq!(creator_in_name("ipcbench-py-x-0a1b2c3d"), None);
    }

    #[test]
    fn create_open_and_owner_unlinks() {
        let name = unique_name("region-test");
        let r = Region::create(&name, Kind::Raw, 8192, [7, 0, 0, 0, 0, 0]).unwrap();
        // Not published yet: an opener sees it as half-initialised.
        let t0 = Instant::now();
        assert!(matches!(
            Region::open(&name, Kind::Raw),
            Err(RegionError::NotReady(_))
        ));
        assert!(t0.elapsed() >= OPEN_GRACE);
        r.publish();
        let o = Region::open(&name, Kind::Raw).unwrap();
        assert_eq!(o.params()[0], 7);
        assert_eq!(o.body_len(), 8192);
        assert_eq!(o.creator(), PeerId::current());
        assert!(!o.is_owner());
        assert!(matches!(
            Region::open(&name, Kind::Ring),
            Err(RegionError::WrongKind { .. })
        ));
        drop(o);
        assert!(r.path().exists(), "an opener must not unlink");
        let path = r.path().to_owned();
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(r);
        assert!(!path.exists(), "the owner must unlink");
    }

    #[test]
    fn wrong_magic_and_version_are_refused() {
        let name = unique_name("region-bad");
        let r = Region::create(&name, Kind::Raw, 64, [0; 6]).unwrap();
        r.publish();
        r.header().magic.store(0xdead_beef, Ordering::Relaxed);
        let e = Region::open(&name, Kind::Raw).unwrap_err();
        assert!(matches!(e, RegionError::BadMagic { .. }), "{e}");
        assert!(e.to_string().contains("not an ipcbench region"));
        r.header().magic.store(MAGIC, Ordering::Relaxed);
        r.header()
            .ready
            .store(LAYOUT_VERSION + 1, Ordering::Release);
        let e = Region::open(&name, Kind::Raw).unwrap_err();
        assert!(matches!(e, RegionError::VersionMismatch { .. }), "{e}");
        assert!(e.to_string().contains("same ipcbench build"));
    }

    #[test]
    fn exists_and_not_found_and_bad_names() {
        let name = unique_name("region-dup");
        let _r = Region::create(&name, Kind::Raw, 64, [0; 6]).unwrap();
        let e = Region::create(&name, Kind::Raw, 64, [0; 6]).unwrap_err();
        assert!(e.to_string().contains("ipcbench clean"), "{e}");
        let e = Region::open(&unique_name("nobody"), Kind::Raw).unwrap_err();
        assert!(matches!(e, RegionError::NotFound(_)));
        assert!(region_path("other-name").is_err());
        assert!(region_path("ipcbench-../../etc").is_err());
    }

    #[test]
    fn links_strangers_and_open_modes_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let name = unique_name("region-trust");
        let r = Region::create(&name, Kind::Raw, 64, [0; 6]).unwrap();
        r.publish();
        // A symbolic link to a good region.
        let link = unique_name("region-link");
        let link_path = region_path(&link).unwrap();
        std::os::unix::fs::symlink(r.path(), &link_path).unwrap();
        let e = Region::open(&link, Kind::Raw).unwrap_err();
        std::fs::remove_file(&link_path).unwrap();
        assert!(matches!(e, RegionError::Untrusted { .. }), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        // Writable by others.
        std::fs::set_permissions(r.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = Region::open(&name, Kind::Raw).unwrap_err();
        assert!(
            e.to_string().contains("written by other users (mode 666)"),
            "{e}"
        );
        std::fs::set_permissions(r.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        Region::open(&name, Kind::Raw).unwrap();
        // Another user's (needs root to give it away).
        let path = std::ffi::CString::new(r.path().as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; chown has no memory effects.
        if unsafe { libc::chown(path.as_ptr(), 65534, 65534) } == 0 {
            let e = Region::open(&name, Kind::Raw).unwrap_err();
            assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
        } else {
            eprintln!("not root: the other user's file is not tried");
        }
        // A directory of a region's name.
        let dir = unique_name("region-dir");
        let dir_path = region_path(&dir).unwrap();
        std::fs::create_dir(&dir_path).unwrap();
        let e = Region::open(&dir, Kind::Raw).unwrap_err();
        std::fs::remove_dir(&dir_path).unwrap();
        assert!(!matches!(e, RegionError::TooSmall { .. }), "{e}");
    }

    #[test]
    fn a_region_made_next_is_waited_for() {
        let name = unique_name("region-next");
        let t0 = Instant::now();
        assert!(matches!(
            Region::open_made_next(&name, Kind::Raw),
            Err(RegionError::NotFound(_))
        ));
        assert!(t0.elapsed() >= OPEN_GRACE);
        let n = name.clone();
        let opener = std::thread::spawn(move || Region::open_made_next(&n, Kind::Raw));
        std::thread::sleep(Duration::from_millis(50));
        let r = Region::create(&name, Kind::Raw, 64, [0; 6]).unwrap();
        r.publish();
        opener.join().unwrap().unwrap();
    }

    #[test]
    fn truncated_file_is_refused() {
        let name = unique_name("region-trunc");
        let path = region_path(&name).unwrap();
        std::fs::write(&path, b"short").unwrap();
        let e = Region::open(&name, Kind::Raw).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(e, RegionError::TooSmall { size: 5, .. }), "{e}");
    }
}
