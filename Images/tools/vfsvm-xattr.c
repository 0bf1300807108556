/*
 * vfsvm-xattr: tiny extended-attribute tool for the guest initramfs, because
 * busybox has no setfattr/getfattr. Built static by Images/Makefile.
 *
 *   vfsvm-xattr set FILE NAME VALUE
 *   vfsvm-xattr get FILE NAME        prints the value (no newline added)
 *   vfsvm-xattr list FILE            prints one name per line
 *   vfsvm-xattr remove FILE NAME
 *
 * Acts on the link itself (l*xattr). Exit 0 on success; on failure prints
 * "vfsvm-xattr: OP FILE: strerror" and exits 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

static int fail(const char *op, const char *file)
{
	fprintf(stderr, "vfsvm-xattr: %s %s: %s\n", op, file, strerror(errno));
	return 1;
}

static int usage(void)
{
	fputs("usage: vfsvm-xattr set FILE NAME VALUE | get FILE NAME | "
	      "list FILE | remove FILE NAME\n", stderr);
	return 2;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return usage();
	const char *op = argv[1], *file = argv[2];

	if (strcmp(op, "set") == 0 && argc == 5) {
		if (lsetxattr(file, argv[3], argv[4], strlen(argv[4]), 0) != 0)
			return fail(op, file);
		return 0;
	}
	if (strcmp(op, "remove") == 0 && argc == 4) {
		if (lremovexattr(file, argv[3]) != 0)
			return fail(op, file);
		return 0;
	}
	if ((strcmp(op, "get") == 0 && argc == 4) ||
	    (strcmp(op, "list") == 0 && argc == 3)) {
		int get = op[0] == 'g';
		/* ask for the size, then read; retry if it grew in between */
		for (int attempt = 0; attempt < 4; attempt++) {
			ssize_t n = get ? lgetxattr(file, argv[3], NULL, 0)
					: llistxattr(file, NULL, 0);
			if (n < 0)
				return fail(op, file);
			char *buf = malloc((size_t)n + 1);
			if (buf == NULL)
				return fail(op, file);
			ssize_t m = get ? lgetxattr(file, argv[3], buf, (size_t)n)
					: llistxattr(file, buf, (size_t)n);
			if (m < 0) {
				free(buf);
				if (errno == ERANGE)
					continue;
				return fail(op, file);
			}
			if (get) {
				fwrite(buf, 1, (size_t)m, stdout);
			} else {
				/* NUL-separated names -> one per line */
				for (ssize_t i = 0; i < m; i++)
					putchar(buf[i] == '\0' ? '\n' : buf[i]);
			}
			free(buf);
			return fflush(stdout) == 0 ? 0 : 1;
		}
		errno = ERANGE;
		return fail(op, file);
	}
	return usage();
}
