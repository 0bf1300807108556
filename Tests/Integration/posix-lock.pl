#!/usr/bin/perl
# posix-lock.pl FILE try | wait CMD...  — a POSIX (fcntl) write lock on all
# of FILE (Debian's minbase has perl-base but no tool for fcntl locks).
#   try       F_SETLK: exit 0 if it was free (released again at once),
#             11 (EAGAIN) if another process holds a conflicting lock
#   wait CMD  F_SETLKW, then run CMD while this process holds the lock;
#             exits with CMD's status, the lock ends with the process
use strict;
use Fcntl qw(F_SETLK F_SETLKW F_WRLCK SEEK_SET O_RDWR O_CREAT);
use POSIX qw(EAGAIN EACCES);
my ($file, $mode, @cmd) = @ARGV;
die "usage: posix-lock.pl FILE try|wait CMD...\n" unless defined $mode;
sysopen(my $fh, $file, O_RDWR | O_CREAT) or die "posix-lock: open $file: $!\n";
# struct flock on x86_64: short l_type, short l_whence, (pad), off_t l_start,
# off_t l_len (0 = to the end), pid_t l_pid, (pad)
my $lk = pack("s s x4 q q i x4", F_WRLCK, SEEK_SET, 0, 0, 0);
if ($mode eq "try") {
    exit 0 if fcntl($fh, F_SETLK, $lk);
    exit 11 if $! == EAGAIN || $! == EACCES;
    die "posix-lock: F_SETLK $file: $!\n";
}
fcntl($fh, F_SETLKW, $lk) or die "posix-lock: F_SETLKW $file: $!\n";
exit(system(@cmd) >> 8);
