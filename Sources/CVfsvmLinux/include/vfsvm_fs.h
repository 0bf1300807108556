// File-system calls for the passthrough FUSE file system (VfsvmPassthroughFS
// through VfsvmSys/HostFS.swift): *at() calls, openat2, file handles, OFD
// locks, xattrs, per-thread fs credentials. Everything that needs
// _GNU_SOURCE is defined out of line in shim_fs.c.
#ifndef VFSVM_FS_H
#define VFSVM_FS_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <sys/file.h>
#include <time.h>
#include <dirent.h>

/// openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS |
/// RESOLVE_NO_SYMLINKS (and O_CLOEXEC added). Returns -1/errno; ENOSYS when
/// the kernel lacks openat2.
int vfsvm_openat2_beneath(int dirfd, const char *path, int flags, mode_t mode);

/// 1 when the kernel (and any seccomp filter above us) lets us use openat2,
/// 0 when it answers ENOSYS or EPERM; asked with a call no file system sees.
int vfsvm_openat2_present(void);

/// Largest handle name_to_handle_at can return (MAX_HANDLE_SZ).
#define VFSVM_MAX_HANDLE_SZ 128

/// name_to_handle_at(fd, "", AT_EMPTY_PATH): writes the opaque handle bytes
/// into `bytes` (room for VFSVM_MAX_HANDLE_SZ), its size to *size, its type
/// to *type and the mount id to *mount_id.
int vfsvm_name_to_handle_fd(int fd, unsigned char *bytes, unsigned int *size, int *type, int *mount_id);

/// open_by_handle_at(mount_fd, handle, flags | O_CLOEXEC).
int vfsvm_open_by_handle(int mount_fd, const unsigned char *bytes, unsigned int size, int type, int flags);

int vfsvm_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
long vfsvm_getdents64(int fd, void *buffer, size_t count);
long vfsvm_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned int flags);
int vfsvm_fallocate(int fd, int mode, int64_t offset, int64_t len);
int vfsvm_syncfs(int fd);
/// statx(fd, STATX_DIOALIGN): the memory and file-offset alignment direct
/// I/O on `fd` needs, both 0 when the file system does not do direct I/O
/// (or the kernel cannot say). -1/errno when statx fails.
int vfsvm_dio_alignment(int fd, uint32_t *mem_align, uint32_t *offset_align);
/// statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BTIME): the birth
/// time, or -1 with errno ENODATA when the file system does not record it.
int vfsvm_birth_time(int fd, int64_t *sec, uint32_t *nsec);
// One statx (STATX_BASIC_STATS | STATX_BTIME) of (dirfd, name, flags |
// AT_NO_AUTOMOUNT) as a
// struct stat plus the birth time in ns since the epoch (0 where the file
// system records none): a stat and vfsvm_birth_time in one system call.
int vfsvm_statx_stat(int dirfd, const char *name, int flags, struct stat *st, int64_t *birth_ns);
int vfsvm_flock(int fd, int operation);
int vfsvm_setfsuid(uint32_t uid);
int vfsvm_setfsgid(uint32_t gid);
/// setgroups(2) of the calling thread only: the raw system call. (glibc's
/// setgroups() changes every thread of the process, signalling each one.)
int vfsvm_set_thread_groups(size_t count, const uint32_t *groups);
/// getgroups(2) of the calling thread: with `count` 0, only how many.
int vfsvm_get_thread_groups(int count, uint32_t *groups);

/// OFD locks (F_OFD_GETLK / F_OFD_SETLK / F_OFD_SETLKW). `type` is
/// F_RDLCK/F_WRLCK/F_UNLCK; `len` 0 means to end of file. For GETLK the
/// conflicting lock (or F_UNLCK) is written back through the pointers.
int vfsvm_ofd_lock(int fd, int cmd, short *type, int64_t *start, int64_t *len, int32_t *pid);
/// The command numbers (they need _GNU_SOURCE).
int vfsvm_f_ofd_getlk(void);
int vfsvm_f_ofd_setlk(void);
int vfsvm_f_ofd_setlkw(void);

/// Classic process-associated POSIX lock via fcntl(F_SETLK/F_GETLK), for
/// tests that play a host process holding a lock.
int vfsvm_posix_lock(int fd, int cmd, short type, int64_t start, int64_t len);

int vfsvm_o_path(void);
int vfsvm_o_tmpfile(void);
int vfsvm_o_direct(void);
int vfsvm_o_noatime(void);
int vfsvm_seek_data(void);
int vfsvm_seek_hole(void);
int vfsvm_at_empty_path(void);
int vfsvm_rename_noreplace(void);
int vfsvm_rename_exchange(void);
int vfsvm_rename_whiteout(void);

#endif
