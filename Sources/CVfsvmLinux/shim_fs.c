// File-system wrappers that need _GNU_SOURCE or raw syscalls; see
// include/vfsvm_fs.h.
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/openat2.h>

#include "vfsvm_fs.h"

int vfsvm_openat2_beneath(int dirfd, const char *path, int flags, mode_t mode) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned int)(flags | O_CLOEXEC);
    // The kernel refuses a non-zero mode without O_CREAT/O_TMPFILE.
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) how.mode = mode;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int vfsvm_openat2_present(void) {
    // An empty path is ENOENT where the call exists, before any file
    // system is asked. ENOSYS: no openat2 (an old kernel, valgrind); EPERM:
    // a seccomp profile that refuses it, which a real openat2 never answers
    // to these arguments.
    struct open_how how;
    memset(&how, 0, sizeof how);
    long r = syscall(SYS_openat2, AT_FDCWD, "", &how, sizeof how);
    return !(r == -1 && (errno == ENOSYS || errno == EPERM));
}

int vfsvm_name_to_handle_fd(int fd, unsigned char *bytes, unsigned int *size, int *type, int *mount_id) {
    union {
        struct file_handle fh;
        unsigned char raw[sizeof(struct file_handle) + VFSVM_MAX_HANDLE_SZ];
    } buf;
    buf.fh.handle_bytes = VFSVM_MAX_HANDLE_SZ;
    int mnt = 0;
    int r = name_to_handle_at(fd, "", &buf.fh, &mnt, AT_EMPTY_PATH);
    if (r < 0) return r;
    if (buf.fh.handle_bytes > VFSVM_MAX_HANDLE_SZ) { errno = EOVERFLOW; return -1; }
    memcpy(bytes, buf.fh.f_handle, buf.fh.handle_bytes);
    *size = buf.fh.handle_bytes;
    *type = buf.fh.handle_type;
    *mount_id = mnt;
    return 0;
}

int vfsvm_open_by_handle(int mount_fd, const unsigned char *bytes, unsigned int size, int type, int flags) {
    union {
        struct file_handle fh;
        unsigned char raw[sizeof(struct file_handle) + VFSVM_MAX_HANDLE_SZ];
    } buf;
    if (size > VFSVM_MAX_HANDLE_SZ) { errno = EINVAL; return -1; }
    buf.fh.handle_bytes = size;
    buf.fh.handle_type = type;
    memcpy(buf.fh.f_handle, bytes, size);
    return open_by_handle_at(mount_fd, &buf.fh, flags | O_CLOEXEC);
}

int vfsvm_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

long vfsvm_getdents64(int fd, void *buffer, size_t count) {
    return syscall(SYS_getdents64, fd, buffer, count);
}

long vfsvm_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len, unsigned int flags) {
    loff_t in = *off_in, out = *off_out;
    ssize_t r = copy_file_range(fd_in, &in, fd_out, &out, len, flags);
    *off_in = in;
    *off_out = out;
    return r;
}

int vfsvm_fallocate(int fd, int mode, int64_t offset, int64_t len) { return fallocate(fd, mode, offset, len); }
int vfsvm_syncfs(int fd) { return syncfs(fd); }

int vfsvm_dio_alignment(int fd, uint32_t *mem_align, uint32_t *offset_align) {
    struct statx sx;
    memset(&sx, 0, sizeof sx);
    int r = statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx);
    if (r < 0) return r;
    if (sx.stx_mask & STATX_DIOALIGN) {
        *mem_align = sx.stx_dio_mem_align;
        *offset_align = sx.stx_dio_offset_align;
    } else {
        *mem_align = 0;
        *offset_align = 0;
    }
    return 0;
}

int vfsvm_birth_time(int fd, int64_t *sec, uint32_t *nsec) {
    struct statx sx;
    memset(&sx, 0, sizeof sx);
    int r = statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx);
    if (r < 0) return r;
    if (!(sx.stx_mask & STATX_BTIME)) { errno = ENODATA; return -1; }
    *sec = sx.stx_btime.tv_sec;
    *nsec = sx.stx_btime.tv_nsec;
    return 0;
}
int vfsvm_statx_stat(int dirfd, const char *name, int flags, struct stat *st, int64_t *birth_ns) {
    struct statx sx;
    memset(&sx, 0, sizeof sx);
    // AT_NO_AUTOMOUNT, as fstatat implies and an O_PATH open does: a stat of
    // a name must not mount an automount point below the share (a map to an
    // unreachable server would block the request's thread).
    int r = statx(dirfd, name, flags | AT_NO_AUTOMOUNT, STATX_BASIC_STATS | STATX_BTIME, &sx);
    if (r < 0) return r;
    memset(st, 0, sizeof *st);
    // makedev is the kernel's own encoding for its 12-bit majors (what
    // newfstatat puts in st_dev): keys built from statx equal fstat's.
    st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
    st->st_ino = sx.stx_ino;
    st->st_mode = sx.stx_mode;
    st->st_nlink = sx.stx_nlink;
    st->st_uid = sx.stx_uid;
    st->st_gid = sx.stx_gid;
    st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
    st->st_size = (off_t)sx.stx_size;
    st->st_blksize = sx.stx_blksize;
    st->st_blocks = (blkcnt_t)sx.stx_blocks;
    st->st_atim.tv_sec = sx.stx_atime.tv_sec; st->st_atim.tv_nsec = sx.stx_atime.tv_nsec;
    st->st_mtim.tv_sec = sx.stx_mtime.tv_sec; st->st_mtim.tv_nsec = sx.stx_mtime.tv_nsec;
    st->st_ctim.tv_sec = sx.stx_ctime.tv_sec; st->st_ctim.tv_nsec = sx.stx_ctime.tv_nsec;
    *birth_ns = (sx.stx_mask & STATX_BTIME)
        // Wrapping, as Swift's birthTime() computes it: a file system below
        // the share may report any btime.
        ? (int64_t)((uint64_t)sx.stx_btime.tv_sec * 1000000000u + (uint64_t)sx.stx_btime.tv_nsec) : 0;
    return 0;
}
int vfsvm_flock(int fd, int operation) { return flock(fd, operation); }

// Raw syscalls: glibc's setfsuid is per thread as well, but returns the old
// value on error too; the raw call keeps the contract plain.
int vfsvm_setfsuid(uint32_t uid) { return (int)syscall(SYS_setfsuid, uid); }
int vfsvm_setfsgid(uint32_t gid) { return (int)syscall(SYS_setfsgid, gid); }

int vfsvm_ofd_lock(int fd, int cmd, short *type, int64_t *start, int64_t *len, int32_t *pid) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = *type;
    fl.l_whence = SEEK_SET;
    fl.l_start = *start;
    fl.l_len = *len;
    fl.l_pid = 0; // must be 0 for OFD locks
    int r = fcntl(fd, cmd, &fl);
    if (r < 0) return r;
    *type = fl.l_type;
    *start = fl.l_start;
    *len = fl.l_len;
    *pid = fl.l_pid;
    return r;
}

int vfsvm_f_ofd_getlk(void) { return F_OFD_GETLK; }
int vfsvm_f_ofd_setlk(void) { return F_OFD_SETLK; }
int vfsvm_f_ofd_setlkw(void) { return F_OFD_SETLKW; }

int vfsvm_posix_lock(int fd, int cmd, short type, int64_t start, int64_t len) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = len;
    return fcntl(fd, cmd, &fl);
}

int vfsvm_o_path(void) { return O_PATH; }
int vfsvm_o_tmpfile(void) { return O_TMPFILE; }
int vfsvm_o_direct(void) { return O_DIRECT; }
int vfsvm_o_noatime(void) { return O_NOATIME; }
int vfsvm_seek_data(void) { return SEEK_DATA; }
int vfsvm_seek_hole(void) { return SEEK_HOLE; }
int vfsvm_at_empty_path(void) { return AT_EMPTY_PATH; }
int vfsvm_rename_noreplace(void) { return RENAME_NOREPLACE; }
int vfsvm_rename_exchange(void) { return RENAME_EXCHANGE; }
int vfsvm_rename_whiteout(void) { return RENAME_WHITEOUT; }

int vfsvm_set_thread_groups(size_t count, const uint32_t *groups) {
    return (int)syscall(SYS_setgroups, count, groups);
}

int vfsvm_get_thread_groups(int count, uint32_t *groups) {
    return (int)syscall(SYS_getgroups, count, groups);
}
