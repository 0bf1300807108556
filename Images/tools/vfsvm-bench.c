/*
 * vfsvm-bench: small file-system benchmark for the guest initramfs (and the
 * host: the same static binary runs on both, so guest and host-native figures
 * come from the same code). Built static by Images/Makefile.
 *
 *   vfsvm-bench DIR [--quick] [--no-drop] [--meta N] [--tree-dirs N]
 *               [--tree-files N] [--tar N] [--mib N] [--rand N]
 *
 * Works in DIR/vfsvm-bench.PID (removed at the end) and prints one line per
 * result on stdout:
 *
 *   BENCH <name> <value> <unit> n=<count> secs=<seconds>
 *
 * Names and units (timed with clock_gettime(CLOCK_MONOTONIC)):
 *   meta-create-stat-unlink  files/s    open(O_CREAT)+close, stat, unlink
 *   tree-walk-lstat          entries/s  readdir + lstat of every entry of a
 *                                       prebuilt tree (built untimed, caches
 *                                       dropped before the walk)
 *   tar-extract              files/s    mkdir as needed, open+write 1-8 KiB+
 *                                       close, chmod, utimensat, nested dirs
 *   seq-write                MiB/s      1 MiB writes, fsync + close timed
 *   seq-read-cold            MiB/s      1 MiB reads after dropping caches
 *   randread-4k-qd1          IOPS       4 KiB preads at distinct random page
 *                                       offsets of the seq-write file, caches
 *                                       dropped first, POSIX_FADV_RANDOM so no
 *                                       readahead: every read misses the page
 *                                       cache (no O_DIRECT: see below)
 * Other lines: "BENCH-NOTE text", "BENCH-CONFIG ...", "BENCH-DONE" at the end.
 *
 * Caches are dropped with sync + "3" > /proc/sys/vm/drop_caches; --no-drop
 * skips that (used on the host, where the backend's reads come from the warm
 * host page cache too). If dropping fails a BENCH-NOTE says so.
 *
 * Random reads do not use O_DIRECT: virtiofsd drops O_DIRECT from the guest's
 * open flags while a backend that kept it would read the host disk, which
 * would compare different things. Distinct page offsets + no readahead +
 * dropped caches make every 4 KiB read one FUSE READ instead.
 *
 * Every page of the data file starts with its page number; seq-read-cold and
 * randread-4k-qd1 check it, so a wrong offset or short read fails the run.
 * Exit 0 on success; on failure "vfsvm-bench: OP PATH: strerror", exit 1;
 * 2 for bad arguments.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024 * 1024)
#define PAGE 4096

struct opts {
	const char *dir;
	long meta, tree_dirs, tree_files, tar, mib, rand;
	int drop;
};

static char work[PATH_MAX];

static void die(const char *op, const char *path)
{
	fprintf(stderr, "vfsvm-bench: %s %s: %s\n", op, path, strerror(errno));
	exit(1);
}

static void fail(const char *what)
{
	fprintf(stderr, "vfsvm-bench: %s\n", what);
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		die("clock_gettime", "CLOCK_MONOTONIC");
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: reproducible sizes and offsets, same on every run */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

static void path_of(char *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void path_of(char *out, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(out, PATH_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= PATH_MAX)
		fail("path too long");
}

static void report(const char *name, double count, double secs, const char *unit)
{
	if (secs <= 0)
		secs = 1e-9;
	printf("BENCH %s %.1f %s n=%.0f secs=%.4f\n", name, count / secs, unit, count, secs);
	fflush(stdout);
}

static int drop_warned;
static void drop_caches(const struct opts *o)
{
	sync();
	if (!o->drop)
		return;
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0 || write(fd, "3\n", 2) != 2) {
		if (!drop_warned)
			printf("BENCH-NOTE cannot drop caches (%s): reads may be cached\n",
			       strerror(errno));
		drop_warned = 1;
	}
	if (fd >= 0)
		close(fd);
}

static void write_all(int fd, const char *buf, size_t len, const char *path)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("write", path);
		}
		if (n == 0) {
			errno = EIO;
			die("write (no progress)", path);
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* Removes a tree (depth-first, names from readdir). */
static void remove_tree(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		die("opendir", path);
	struct dirent *e;
	char child[PATH_MAX];
	for (;;) {
		errno = 0;
		e = readdir(d);
		if (e == NULL)
			break;
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		path_of(child, "%s/%s", path, e->d_name);
		struct stat st;
		if (lstat(child, &st) != 0)
			die("lstat", child);
		if (S_ISDIR(st.st_mode))
			remove_tree(child);
		else if (unlink(child) != 0)
			die("unlink", child);
	}
	if (errno != 0)
		die("readdir", path);
	closedir(d);
	if (rmdir(path) != 0)
		die("rmdir", path);
}

static void bench_meta(const struct opts *o)
{
	char dir[PATH_MAX], p[PATH_MAX];
	path_of(dir, "%s/meta", work);
	if (mkdir(dir, 0755) != 0)
		die("mkdir", dir);
	double t0 = now();
	for (long i = 0; i < o->meta; i++) {
		path_of(p, "%s/f%ld", dir, i);
		int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0)
			die("create", p);
		if (close(fd) != 0)
			die("close", p);
		struct stat st;
		if (stat(p, &st) != 0)
			die("stat", p);
		if (!S_ISREG(st.st_mode) || st.st_size != 0)
			fail("meta: stat of a new file is not an empty regular file");
		if (unlink(p) != 0)
			die("unlink", p);
	}
	double t1 = now();
	if (rmdir(dir) != 0)
		die("rmdir", dir);
	report("meta-create-stat-unlink", (double)o->meta, t1 - t0, "files/s");
}

/* readdir + lstat of every entry under path; returns the number of entries */
static long walk(const char *path)
{
	DIR *d = opendir(path);
	if (d == NULL)
		die("opendir", path);
	int dfd = dirfd(d);
	long count = 0;
	char child[PATH_MAX];
	struct dirent *e;
	for (;;) {
		errno = 0;
		e = readdir(d);
		if (e == NULL)
			break;
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			die("lstat", e->d_name);
		count++;
		if (S_ISDIR(st.st_mode)) {
			path_of(child, "%s/%s", path, e->d_name);
			count += walk(child);
		}
	}
	if (errno != 0)
		die("readdir", path);
	closedir(d);
	return count;
}

static void bench_tree(const struct opts *o)
{
	char root[PATH_MAX], p[PATH_MAX];
	path_of(root, "%s/tree", work);
	if (mkdir(root, 0755) != 0)
		die("mkdir", root);
	for (long d = 0; d < o->tree_dirs; d++) {
		path_of(p, "%s/d%03ld", root, d);
		if (mkdir(p, 0755) != 0)
			die("mkdir", p);
		for (long f = 0; f < o->tree_files; f++) {
			path_of(p, "%s/d%03ld/file-%04ld.txt", root, d, f);
			int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
			if (fd < 0)
				die("create", p);
			write_all(fd, "x\n", 2, p);
			if (close(fd) != 0)
				die("close", p);
		}
	}
	drop_caches(o);
	double t0 = now();
	long n = walk(root);
	double t1 = now();
	long want = o->tree_dirs * (1 + o->tree_files);
	if (n != want) {
		fprintf(stderr, "vfsvm-bench: tree walk saw %ld entries, expected %ld\n", n, want);
		exit(1);
	}
	report("tree-walk-lstat", (double)n, t1 - t0, "entries/s");
	remove_tree(root);
}

static void bench_tar(const struct opts *o)
{
	char root[PATH_MAX], p[PATH_MAX];
	static char buf[8192];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (char)('a' + i % 26);
	path_of(root, "%s/tar", work);
	/* a fixed mtime, as tar restores the archive's */
	struct timespec times[2] = { { 1600000000, 0 }, { 1600000000, 0 } };
	double t0 = now();
	if (mkdir(root, 0755) != 0)
		die("mkdir", root);
	for (long i = 0; i < o->tar; i++) {
		/* 10 top dirs, a new subdir every 25 files: root/pI/sJ/fileK */
		long top = i % 10, sub = i / 25;
		if (i < 10) {
			path_of(p, "%s/p%ld", root, top);
			if (mkdir(p, 0755) != 0)
				die("mkdir", p);
		}
		path_of(p, "%s/p%ld/s%ld", root, top, sub);
		if (i % 25 < 10 && mkdir(p, 0755) != 0)
			die("mkdir", p);
		path_of(p, "%s/p%ld/s%ld/file%ld.c", root, top, sub, i);
		size_t len = 1024 + (size_t)(rng() % (7 * 1024 + 1));
		int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0600);
		if (fd < 0)
			die("create", p);
		write_all(fd, buf, len, p);
		if (close(fd) != 0)
			die("close", p);
		if (chmod(p, 0644) != 0)
			die("chmod", p);
		if (utimensat(AT_FDCWD, p, times, 0) != 0)
			die("utimensat", p);
	}
	double t1 = now();
	report("tar-extract", (double)o->tar, t1 - t0, "files/s");
	remove_tree(root);
}

static void stamp_pages(char *buf, uint64_t first_page)
{
	for (uint64_t k = 0; k < MIB / PAGE; k++) {
		uint64_t v = first_page + k;
		memcpy(buf + k * PAGE, &v, sizeof v);
	}
}

static void check_page(const char *page, uint64_t want, const char *what)
{
	uint64_t got;
	memcpy(&got, page, sizeof got);
	if (got != want) {
		fprintf(stderr, "vfsvm-bench: %s: page %llu holds stamp %llu\n", what,
			(unsigned long long)want, (unsigned long long)got);
		exit(1);
	}
}

static void bench_data(const struct opts *o)
{
	char p[PATH_MAX];
	path_of(p, "%s/data.bin", work);
	char *buf = malloc(MIB);
	if (buf == NULL)
		fail("out of memory");
	for (size_t i = 0; i < MIB; i++)
		buf[i] = (char)rng();

	/* sequential write */
	double t0 = now();
	int fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0644);
	if (fd < 0)
		die("create", p);
	for (long m = 0; m < o->mib; m++) {
		stamp_pages(buf, (uint64_t)m * (MIB / PAGE));
		write_all(fd, buf, MIB, p);
	}
	if (fsync(fd) != 0)
		die("fsync", p);
	if (close(fd) != 0)
		die("close", p);
	double t1 = now();
	report("seq-write", (double)o->mib, t1 - t0, "MiB/s");

	/* sequential read, caches dropped */
	drop_caches(o);
	t0 = now();
	fd = open(p, O_RDONLY);
	if (fd < 0)
		die("open", p);
	long total = 0;
	for (;;) {
		size_t have = 0;
		while (have < MIB) {
			ssize_t n = read(fd, buf + have, MIB - have);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				die("read", p);
			}
			if (n == 0)
				break;
			have += (size_t)n;
		}
		for (size_t k = 0; k + PAGE <= have; k += PAGE)
			check_page(buf + k, (uint64_t)(total + (long)k) / PAGE, "seq-read");
		total += (long)have;
		if (have < MIB)
			break;
	}
	close(fd);
	t1 = now();
	if (total != o->mib * MIB) {
		fprintf(stderr, "vfsvm-bench: seq-read got %ld bytes, expected %ld\n",
			total, o->mib * MIB);
		exit(1);
	}
	report("seq-read-cold", (double)o->mib, t1 - t0, "MiB/s");

	/* random 4 KiB reads at distinct pages (a shuffled prefix of all pages) */
	uint64_t pages = (uint64_t)o->mib * (MIB / PAGE);
	long nread = o->rand < (long)pages ? o->rand : (long)pages;
	uint32_t *order = malloc(pages * sizeof *order);
	if (order == NULL)
		fail("out of memory");
	for (uint64_t i = 0; i < pages; i++)
		order[i] = (uint32_t)i;
	for (long i = 0; i < nread; i++) {
		uint64_t j = (uint64_t)i + rng() % (pages - (uint64_t)i);
		uint32_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	drop_caches(o);
	fd = open(p, O_RDONLY);
	if (fd < 0)
		die("open", p);
	errno = posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	if (errno != 0)
		die("posix_fadvise", p);
	t0 = now();
	for (long i = 0; i < nread; i++) {
		off_t off = (off_t)order[i] * PAGE;
		ssize_t n = pread(fd, buf, PAGE, off);
		if (n < 0)
			die("pread", p);
		if (n != PAGE) {
			fprintf(stderr, "vfsvm-bench: pread at %lld returned %zd\n",
				(long long)off, n);
			exit(1);
		}
		check_page(buf, order[i], "randread");
	}
	t1 = now();
	close(fd);
	report("randread-4k-qd1", (double)nread, t1 - t0, "IOPS");
	free(order);
	free(buf);
	if (unlink(p) != 0)
		die("unlink", p);
}

static int usage(void)
{
	fputs("usage: vfsvm-bench DIR [--quick] [--no-drop] [--meta N] [--tree-dirs N]\n"
	      "                   [--tree-files N] [--tar N] [--mib N] [--rand N]\n", stderr);
	return 2;
}

static int number(const char *s, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 10000000)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o = { NULL, 2000, 20, 100, 500, 64, 2000, 1 };
	/* --quick first, so explicit counts override it wherever they appear */
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--quick") == 0) {
			o.meta = 200; o.tree_dirs = 5; o.tree_files = 40;
			o.tar = 100; o.mib = 8; o.rand = 300;
		}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		long *slot = NULL;
		if (strcmp(a, "--quick") == 0)
			continue;
		if (strcmp(a, "--no-drop") == 0) {
			o.drop = 0;
			continue;
		}
		if (strcmp(a, "--meta") == 0) slot = &o.meta;
		else if (strcmp(a, "--tree-dirs") == 0) slot = &o.tree_dirs;
		else if (strcmp(a, "--tree-files") == 0) slot = &o.tree_files;
		else if (strcmp(a, "--tar") == 0) slot = &o.tar;
		else if (strcmp(a, "--mib") == 0) slot = &o.mib;
		else if (strcmp(a, "--rand") == 0) slot = &o.rand;
		else if (a[0] == '-' || o.dir != NULL)
			return usage();
		else {
			o.dir = a;
			continue;
		}
		if (i + 1 >= argc || number(argv[i + 1], slot) != 0)
			return usage();
		i++;
	}
	if (o.dir == NULL)
		return usage();
	if (o.mib > 4096) {
		fputs("vfsvm-bench: --mib at most 4096\n", stderr);
		return 2;
	}
	path_of(work, "%s/vfsvm-bench.%ld", o.dir, (long)getpid());
	if (mkdir(work, 0755) != 0)
		die("mkdir", work);
	printf("BENCH-CONFIG meta=%ld tree=%ldx%ld tar=%ld mib=%ld rand=%ld drop=%d\n",
	       o.meta, o.tree_dirs, o.tree_files, o.tar, o.mib, o.rand, o.drop);
	fflush(stdout);
	bench_meta(&o);
	bench_tree(&o);
	bench_tar(&o);
	bench_data(&o);
	remove_tree(work);
	puts("BENCH-DONE");
	return fflush(stdout) == 0 ? 0 : 1;
}
